package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The runtime's own pod metadata. Kubernetes label values are short and
// restricted, so the gateway's labels are kept exactly in one annotation,
// and labels hold selector-safe copies that List can select by.
const (
	// annoLabels holds the ContainerSpec's labels as a JSON object.
	annoLabels = "ds01.kube/labels"
	// annoImage is the local image ID the pod was launched from.
	annoImage = "ds01.kube/image-id"
	// annoName is the container's name before it became a pod name.
	annoName = "ds01.kube/name"
	// labelUID selects a user's pods for the user's NetworkPolicy.
	labelUID = "ds01.kube/uid"
	// LabelNode is where List reports the node a pod runs on.
	LabelNode = "ds01.node"
)

// labelValue is v as a label value: v itself when the API accepts it,
// else a hash of it. List encodes a wanted value the same way and then
// compares the exact values from the annotation, so a value that happens
// to look like another's hash selects too much, never too little.
func labelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "h-" + hex.EncodeToString(sum[:12])
}

// podLabels are the selector-safe copies of spec labels (keys that are
// not valid label keys are only in the annotation), plus the runtime's own.
func podLabels(spec map[string]string, uid string) map[string]string {
	out := make(map[string]string, len(spec)+1)
	for k, v := range spec {
		if len(validation.IsQualifiedName(k)) == 0 {
			out[k] = labelValue(v)
		}
	}
	out[labelUID] = uid
	return out
}

func encodeLabels(spec map[string]string) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode labels: %w", err)
	}
	return string(b), nil
}

// decodeLabels reads the annotation back; a pod without one (not made by
// this runtime) has its own labels instead.
func decodeLabels(annotations, fallback map[string]string) map[string]string {
	out := map[string]string{}
	if s, ok := annotations[annoLabels]; ok && json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	for k, v := range fallback {
		out[k] = v
	}
	return out
}

// selector is the label selector for List's wanted labels: an empty value
// asks for the key to exist, as with Docker's label filter.
func selector(want map[string]string) string {
	sel := labels.NewSelector()
	for k, v := range want {
		if len(validation.IsQualifiedName(k)) != 0 {
			continue // only in the annotation: matches() checks it
		}
		var r *labels.Requirement
		var err error
		if v == "" {
			r, err = labels.NewRequirement(k, selection.Exists, nil)
		} else {
			r, err = labels.NewRequirement(k, selection.Equals, []string{labelValue(v)})
		}
		if err == nil {
			sel = sel.Add(*r)
		}
	}
	return sel.String()
}

// matches checks the wanted labels against the exact values.
func matches(have, want map[string]string) bool {
	for k, v := range want {
		hv, ok := have[k]
		if !ok || (v != "" && hv != v) {
			return false
		}
	}
	return true
}
