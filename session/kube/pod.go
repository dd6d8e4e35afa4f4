package kube

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// mainContainer is the pod's container that sessions run in.
const mainContainer = "project"

// idleCmd keeps the pod alive between sessions, as with Docker. The pod
// shares one PID namespace, so the pause process is PID 1 and reaps the
// orphans of exec'd processes, as docker-init does.
var idleCmd = []string{"sleep", "infinity"}

// retireGrace is the pod's termination grace for deletions by others
// (kubectl, node drains); Retire itself deletes with none.
const retireGrace = 2

// buildPod maps a ContainerSpec onto a pod running image (a reference the
// node can pull).
func (k *Kube) buildPod(spec runtime.ContainerSpec, image string) (*corev1.Pod, error) {
	uid, gid, err := parseUser(spec.User)
	if err != nil {
		return nil, err
	}
	node, gpus, err := gpuPlacement(spec.GPUs)
	if err != nil {
		return nil, err
	}
	annotations := map[string]string{annoImage: spec.Image, annoName: spec.Name}
	if annotations[annoLabels], err = encodeLabels(spec.Labels); err != nil {
		return nil, err
	}
	volumes, mounts, err := hostMounts(spec.Mounts)
	if err != nil {
		return nil, err
	}
	if spec.Limits.ShmSize > 0 {
		volumes = append(volumes, corev1.Volume{Name: "dshm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(spec.Limits.ShmSize, resource.BinarySI),
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "dshm", MountPath: "/dev/shm"})
	}
	res := resources(spec.Limits)
	for name, q := range gpus {
		res[name] = q
	}
	ps := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		ShareProcessNamespace:         ptr(true),
		Hostname:                      hostname(spec.Hostname),
		AutomountServiceAccountToken:  ptr(false),
		EnableServiceLinks:            ptr(false),
		TerminationGracePeriodSeconds: ptr(int64(retireGrace)),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsUser: ptr(uid), RunAsGroup: ptr(gid), RunAsNonRoot: ptr(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:            mainContainer,
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         idleCmd,
			Env:             envVars(spec.Env),
			WorkingDir:      spec.Workdir,
			VolumeMounts:    mounts,
			// Requests equal to limits: the node reserves what the limits
			// file grants, and GPUs (extended resources) must be equal.
			Resources:       corev1.ResourceRequirements{Limits: res, Requests: res.DeepCopy()},
			SecurityContext: hardened(uid, gid),
		}},
		Volumes: volumes,
	}
	// The allocator chose the GPUs' node: the scheduler must not choose
	// another. Without GPUs the admin's node selection applies.
	if node != "" {
		ps.NodeName = node
	} else if len(k.cfg.NodeSelector) > 0 {
		ps.NodeSelector = k.cfg.NodeSelector
	}
	k.addHelper(&ps, uid, gid)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        podName(spec.Name),
			Namespace:   k.cfg.Namespace,
			Labels:      podLabels(spec.Labels, strconv.FormatInt(uid, 10)),
			Annotations: annotations,
		},
		Spec: ps,
	}, nil
}

// hardened is the security context of every container of a project pod:
// the user's uid, never root, no privilege escalation, no capabilities,
// the runtime's default seccomp profile.
func hardened(uid, gid int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr(uid),
		RunAsGroup:               ptr(gid),
		RunAsNonRoot:             ptr(true),
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// parseUser reads ContainerSpec.User ("uid:gid"). Root is refused: the pod
// runs with runAsNonRoot.
func parseUser(s string) (uid, gid int64, err error) {
	u, g, ok := strings.Cut(s, ":")
	uid, uerr := strconv.ParseInt(u, 10, 64)
	gid, gerr := strconv.ParseInt(g, 10, 64)
	if !ok || uerr != nil || gerr != nil || gid < 0 {
		return 0, 0, fmt.Errorf("container user %q: want numeric uid:gid", s)
	}
	if uid <= 0 {
		return 0, 0, fmt.Errorf("container user %q: pods never run as root", s)
	}
	return uid, gid, nil
}

// resources are the pod's limits. Kubernetes has no per-pod pids limit
// (only the kubelet's podPidsLimit for every pod of a node), so
// Limits.PidsLimit is not applied here.
func resources(l runtime.Limits) corev1.ResourceList {
	res := corev1.ResourceList{}
	if l.Memory > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(l.Memory, resource.BinarySI)
	}
	if l.NanoCPUs > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(1, l.NanoCPUs/1e6), resource.DecimalSI)
	}
	return res
}

// envVars maps "K=V" entries. The kubelet expands $(VAR) in values, which
// Docker does not: "$$" keeps a '$' literal.
func envVars(env []string) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(env))
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		out = append(out, corev1.EnvVar{Name: k, Value: strings.ReplaceAll(v, "$", "$$")})
	}
	return out
}

// hostMounts turns bind mounts into hostPath volumes. Their sources are on
// storage every node reaches at the same path, so the gateway's own view
// tells a directory from a file; the type makes the kubelet refuse a
// missing source instead of creating an empty directory there.
func hostMounts(ms []runtime.Mount) ([]corev1.Volume, []corev1.VolumeMount, error) {
	vols := make([]corev1.Volume, 0, len(ms)+1)
	mounts := make([]corev1.VolumeMount, 0, len(ms)+1)
	for i, m := range ms {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", m.Target, err)
		}
		typ := corev1.HostPathFile
		if fi.IsDir() {
			typ = corev1.HostPathDirectory
		}
		name := "mount-" + strconv.Itoa(i)
		vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: m.Source, Type: ptr(typ)},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: m.Target, ReadOnly: m.ReadOnly})
	}
	return vols, mounts, nil
}

func ptr[T any](v T) *T { return &v }
