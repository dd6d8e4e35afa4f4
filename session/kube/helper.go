package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// The pod helper: a sidecar running the gateway's own binary as the user
// (`ds01-gateway pod-helper idle`), which the gateway execs for whatever
// must happen inside the pod's network or see its processes (see package
// podhelper). Both containers mount an emptyDir at runtime.IOMountPoint,
// so the unix sockets the helper creates there (agent forwarding) reach
// the user's processes.
const (
	helperContainer = "ds01-helper"
	projectName     = "project" // the main container, as the pod builder names it
	runVolume       = "ds01-run"
	helperBinary    = "/ds01-gateway"
)

// addHelper adds the helper sidecar and the shared socket directory to a
// project pod. Without a helper image (PrepareHelper not run or failed)
// the pod gets neither, and listening, dials beyond the pod's loopback
// and the process count fail with a clear error.
func (k *Kube) addHelper(spec *corev1.PodSpec, uid, gid int64) {
	image := k.fwd.helperImage()
	if image == "" {
		return
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name: runVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(1<<20, resource.BinarySI),
		}},
	})
	for i := range spec.Containers {
		if spec.Containers[i].Name == projectName {
			// Read-only, as the Docker runtime's socket directory: the user
			// connects to the sockets and cannot plant files for the helper.
			spec.Containers[i].VolumeMounts = append(spec.Containers[i].VolumeMounts, corev1.VolumeMount{
				Name: runVolume, MountPath: runtime.IOMountPoint, ReadOnly: true,
			})
		}
	}
	yes, no := true, false
	// Small requests: every pod has a helper, and what it requests is
	// reserved on the node whether used or not. A CPU limit of a whole
	// core lets a busy -R forward relay at the exec stream's speed (23
	// MB/s here; 14 at 250m). The pod's QoS class is Burstable therefore.
	requests := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	}
	limits := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1"),
		corev1.ResourceMemory: resource.MustParse("128Mi"),
	}
	spec.Containers = append(spec.Containers, corev1.Container{
		Name:            helperContainer,
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{helperBinary, "pod-helper", "idle"},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsGroup:               &gid,
			RunAsNonRoot:             &yes,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Resources:                corev1.ResourceRequirements{Limits: limits, Requests: requests},
		VolumeMounts:             []corev1.VolumeMount{{Name: runVolume, MountPath: runtime.IOMountPoint}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	})
}
