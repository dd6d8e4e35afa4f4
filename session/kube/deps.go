package kube

// The streaming parts of client-go the runtime is built on; pinned here
// until the files that use them land (remove this file then).
import (
	_ "k8s.io/client-go/tools/portforward"
	_ "k8s.io/client-go/tools/remotecommand"
	_ "k8s.io/client-go/transport/spdy"
)
