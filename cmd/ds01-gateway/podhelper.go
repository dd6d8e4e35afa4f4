package main

import (
	"os"

	"github.com/ds01/ds01-gateway/session/kube/podhelper"
)

// podHelper is `ds01-gateway pod-helper ...`: internal, it runs inside a
// project pod's ds01-helper sidecar (the Kubernetes runtime's helper
// image holds this very binary), exec'd by the gateway.
func podHelper(args []string) {
	os.Exit(podhelper.Main(args))
}
