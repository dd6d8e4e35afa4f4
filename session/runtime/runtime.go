// Package runtime declares what the session layer needs from a container
// runtime. Docker implements it today (session/docker); a Kubernetes runtime
// for many nodes can implement the same contract later.
package runtime

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/ds01/ds01-gateway/session/ptymodes"
)

// IOMountPoint is where a container sees its ContainerSpec.IODir.
const IOMountPoint = "/run/ds01"

// ErrNotRunning is returned when an operation needs a running container and
// the container has stopped or disappeared underneath us.
var ErrNotRunning = errors.New("container is not running")

// ErrNetworkGone marks a build or launch that failed because the engine did
// not find the user's network right after it was ensured (seen once, on a
// first build). Building again ensures the network again, so the caller
// retries once.
var ErrNetworkGone = errors.New("the engine did not find the user's network")

// Runtime runs project containers and processes inside them.
type Runtime interface {
	// Launch creates and starts a container from spec and returns its ID.
	Launch(ctx context.Context, spec ContainerSpec) (string, error)
	// Exec starts a process inside a running container.
	Exec(ctx context.Context, containerID string, spec ExecSpec) (Process, error)
	// Running reports whether the container exists and runs.
	Running(ctx context.Context, containerID string) (bool, error)
	// Retire stops and removes the container. Bind-mounted data is untouched.
	Retire(ctx context.Context, containerID string) error
	// List returns every container carrying the given label key=value pairs,
	// running or not.
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// Dial connects to address as seen from inside the container: its own
	// loopback, its own network.
	Dial(ctx context.Context, containerID, network, address string) (net.Conn, error)
	// Listen listens on address inside the container's network.
	Listen(ctx context.Context, containerID, network, address string) (net.Listener, error)
}

// StopWatcher is what a runtime with an event stream offers besides
// Runtime: it reports containers as they stop, so that the session layer
// need not list every container periodically to find the dead ones. It is
// optional; a runtime without it is swept by listing.
type StopWatcher interface {
	// WatchStops follows the stops of the containers carrying every label
	// given (label=value, or the key alone for ""). It calls ready once the
	// stream is open, so that the caller can look for what stopped before
	// (a sweep), then stopped with the ID of each container that died, was
	// removed or hit its memory limit (it may still run: the caller checks),
	// until ctx ends or the stream breaks; it returns why it ended. Neither
	// callback may block for long: the stream waits for them.
	WatchStops(ctx context.Context, labels map[string]string, ready func(), stopped func(id string)) error
}

// Usage is one container's resource use as its cgroup counts it.
type Usage struct {
	CPU       time.Duration // cumulative CPU time of every process of the container
	UserProcs int           // processes other than the container's init and keeper
}

// Sampler reads containers' resource use cheaply (cgroup files, not the engine's stats API).
type Sampler interface {
	Usage(ctx context.Context, containerID string) (Usage, error)
	// UserProcs counts the user processes alone, more cheaply than Usage:
	// detached containers are watched for the end of their work often.
	UserProcs(ctx context.Context, containerID string) (int, error)
	// TerminateUser sends SIGTERM to every user process and waits up to grace for them to end.
	TerminateUser(ctx context.Context, containerID string, grace time.Duration) error
	// Forget drops what the sampler cached about a retired container.
	Forget(containerID string)
}

// Builder builds and looks up images.
type Builder interface {
	// ImageID returns the ID of ref, or "" if it does not exist.
	ImageID(ctx context.Context, ref string) (string, error)
	// Image describes ref; its ID is "" when ref does not exist.
	Image(ctx context.Context, ref string) (Image, error)
	// Build builds spec.Ref from spec.Context, streaming human-readable
	// progress to out, one whole line per write, without terminal codes:
	// a "Step N/M : INSTRUCTION" line per step, then the step's own
	// output. A failed build leaves the old image at Ref.
	Build(ctx context.Context, spec BuildSpec, out io.Writer) (string, error)
	// RemoveImage untags ref and removes the image unless a container
	// still uses it. A missing image is not an error.
	RemoveImage(ctx context.Context, ref string) error
	// ImageFiles reads regular files out of an image; a missing file
	// reads as empty.
	ImageFiles(ctx context.Context, image string, paths ...string) (map[string][]byte, error)

	// Images lists the images carrying every one of labels, tagged or not.
	Images(ctx context.Context, labels map[string]string) ([]Image, error)
	// RemoveUnused removes the untagged image id unless a container of
	// any state uses it or another image builds on it, and reports
	// whether it did. A tagged or missing image is left alone.
	RemoveUnused(ctx context.Context, id string) (bool, error)
	// PruneBuildCache removes build cache beyond keep bytes (keep > 0),
	// least recently used first, and returns the bytes freed.
	PruneBuildCache(ctx context.Context, keep int64) (int64, error)
	// BuildCacheSize is the build cache's size in bytes.
	BuildCacheSize(ctx context.Context) (int64, error)
}

// BuildSpec describes one image build.
type BuildSpec struct {
	Ref string
	// Context is a tar stream holding the Dockerfile at its root.
	Context io.Reader
	Labels  map[string]string
	NoCache bool
	// Limits bound the build's containers like the user's own; PidsLimit,
	// Memory and NanoCPUs also bound all the builds of Group together.
	Limits Limits
	// Network is the network the build's RUN steps join, created like
	// ContainerSpec.Network (with NetworkLabels) if it does not exist.
	Network       string
	NetworkLabels map[string]string
	// Group names the cgroup all of one user's builds share; "" for none.
	Group string
	// Bases are the images the Dockerfile's FROM lines name. Build pulls
	// the missing ones, then shows each one's labels and ONBUILD triggers
	// to CheckBase before any step runs.
	Bases     []string
	CheckBase func(ref string, labels map[string]string, onBuild []string) error
}

// Image is an image as the runtime describes it.
type Image struct {
	ID      string
	Created time.Time
	Size    int64 // bytes
	Labels  map[string]string
	// Tags are the references naming it; empty for an untagged image.
	// Only Images fills them in.
	Tags []string
}

// ContainerSpec describes one project container.
type ContainerSpec struct {
	Name     string
	Image    string
	Hostname string
	Labels   map[string]string
	// User is "uid:gid"; every process of the container runs as it.
	User    string
	Env     []string
	Workdir string
	Mounts  []Mount
	// Network is the name of the network the container joins; it must exist.
	Network string
	// NetworkLabels are put on Network if Launch has to create it.
	NetworkLabels map[string]string
	Limits        Limits
	// GPUs are the UUIDs of the GPUs (or MIG instances) passed through;
	// empty for none. Fake GPUs are never passed here.
	GPUs []string
	// IODir is a host directory mounted read-only at IOMountPoint in the
	// container: the runtime passes processes' standard streams through
	// FIFOs in it, bypassing the engine's own stream relay (the bottleneck
	// for bulk data), and the gateway puts forwarded agent sockets there.
	IODir string
	// NetworkHolder, when set, is the ID of a holder (NetworkHolders)
	// whose network namespace, and so hostname, the container joins
	// instead of joining Network itself; Hostname is then the holder's.
	// Only a runtime that implements NetworkHolders is given one.
	NetworkHolder string
}

// NetworkHolders is implemented by a runtime whose start on a network
// costs much more than joining an existing network namespace (Docker: the
// embedded DNS setup of a user-defined network). A holder is a small idle
// container that owns one project's namespace on the user's network; the
// project's container joins it through ContainerSpec.NetworkHolder. A
// holder is listed (List, by its labels) and removed (Retire) as any
// container.
type NetworkHolders interface {
	// LaunchHolder creates and starts a holder and returns its ID,
	// creating spec.Network first if it is missing.
	LaunchHolder(ctx context.Context, spec HolderSpec) (string, error)
	// RemoveNetwork removes the network name if its labels include
	// labels; false if there was none. A holder made for a user removed
	// meanwhile takes the network it re-created with it.
	RemoveNetwork(ctx context.Context, name string, labels map[string]string) (bool, error)
}

// HolderSpec describes one network holder. The runtime locks it down
// itself: no capabilities, an unprivileged user, no mounts, tiny limits.
type HolderSpec struct {
	Name string
	// Image must hold sleep(1); never a user's image.
	Image    string
	Hostname string
	Labels   map[string]string
	// Network and NetworkLabels as in ContainerSpec.
	Network       string
	NetworkLabels map[string]string
}

// Mount is a bind mount from the host.
type Mount struct {
	Source, Target string
	ReadOnly       bool
}

// Limits are the container's resource limits; zero means unlimited.
type Limits struct {
	Memory    int64 // bytes
	NanoCPUs  int64
	PidsLimit int64
	ShmSize   int64 // bytes
}

// Container is a runtime container as listed.
type Container struct {
	ID      string
	Name    string
	Labels  map[string]string
	ImageID string
	Running bool
	Created time.Time
}

// ExecSpec describes a process to start in a container.
type ExecSpec struct {
	Cmd  []string
	User string
	Env  []string
	Dir  string
	Tty  bool
	// Rows and Cols give the initial terminal size when Tty is set.
	Rows, Cols uint32
	// Modes are the client's terminal modes, set on the terminal before
	// the process starts when Tty is set, as sshd sets them.
	Modes ptymodes.Modes
}

// Process is a running exec. Output must be consumed with Stream; Wait
// returns the exit status once the output has ended.
type Process interface {
	// Stdin is the process's standard input; Close delivers EOF.
	Stdin() io.WriteCloser
	// Stream copies the process's output until it ends. Without a TTY,
	// stderr is kept separate; with one, everything arrives on stdout.
	Stream(stdout, stderr io.Writer) error
	// Wait returns the exit status after Stream has returned.
	Wait(ctx context.Context) (ExitStatus, error)
	// Signal delivers sig to the process.
	Signal(sig syscall.Signal) error
	// Hangup sends SIGHUP to the process group, as sshd does when a
	// terminal session's channel closes.
	Hangup() error
	Resize(ctx context.Context, rows, cols uint32) error
	// Close releases the connection to the process.
	Close() error
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code int
	// Signal is set when the process was killed by a signal.
	Signal syscall.Signal
}
