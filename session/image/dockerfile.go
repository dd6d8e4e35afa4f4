// Package image owns a project's Dockerfile: the default template, and the
// build context that carries only what the Dockerfile names.
package image

import (
	"bytes"
	"fmt"
	"text/template"
)

// Ref is the image of a user's project, DS01's naming.
func Ref(uid int, project string) string {
	return fmt.Sprintf("ds01-%d/%s:latest", uid, project)
}

// Block markers: image-update rewrites only what lies between a begin and
// an end marker and leaves every other line of the user's file alone.
const (
	SystemBegin = "# >>> ds01 system packages (apt; edit with: image-update --add-system)"
	SystemEnd   = "# <<< ds01 system packages"
	PipBegin    = "# >>> ds01 Custom additional packages (pip; edit with: image-update --add)"
	PipEnd      = "# <<< ds01 Custom additional packages"
)

var tmpl = template.Must(template.New("Dockerfile").Parse(`# DS01 image for project {{.Project}} of {{.User}}.
# This file is yours: edit it in /workspace with VS Code or sftp, then rebuild
# (image-update {{.Project}} --rebuild). image-update itself only rewrites the
# lines between the ">>> ds01" and "<<< ds01" markers.
# The container runs as your own uid:gid; the gateway adds your user entry
# at launch, so no USER line is needed.
FROM {{.Base}}

` + SystemBegin + `
` + SystemEnd + `

` + PipBegin + `
` + PipEnd + `

ENV PYTHONUNBUFFERED=1 \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    HF_HOME=/workspace/.cache/huggingface \
    TORCH_HOME=/workspace/.cache/torch \
    MPLCONFIGDIR=/workspace/.cache/matplotlib
WORKDIR /workspace
`))

// DefaultDockerfile is the Dockerfile a new project starts with. The
// arguments are validated names, so they cannot break out of the file.
func DefaultDockerfile(base, user, project string) []byte {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, struct{ Base, User, Project string }{base, user, project}); err != nil {
		panic(err) // the template is static
	}
	return b.Bytes()
}
