package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
)

// GPUSource is the GPU state the refresher reads; *session.GPUs
// implements it. Both calls are cheap: a copy under the allocator's lock,
// and one NVML (or fake file) reading per slot.
type GPUSource interface {
	GPUStatus() ([]gpu.SlotState, []gpu.Waiter)
	GPUUtilization(uuid string) (pct int, ok bool)
}

// ContainerSource is the container slots the refresher reads;
// *session.Manager implements it without asking the engine.
type ContainerSource interface {
	ContainerStates() []session.ContainerState
}

var (
	_ GPUSource       = (*session.GPUs)(nil)
	_ ContainerSource = (*session.Manager)(nil)
)

// Sources are the session parts the refresher reads; a nil one is not
// read (its metrics show nothing held and nothing running).
type Sources struct {
	GPUs       GPUSource
	Containers ContainerSource
}

// DefaultRefresh is how often Run reads the session state.
const DefaultRefresh = 5 * time.Second

// state is one reading of the session layer. It is never changed once
// stored: a scrape reads it without a lock.
type state struct {
	slots      []slotState
	queueLen   int
	oldestWait time.Time // when the first waiter queued; zero when none
	containers map[string]int
}

type slotState struct {
	index, uuid, name string
	eq                float64
	util              float64 // 0..1
	hasUtil           bool
	user, container   string // "" when free
}

type stateCache struct{ p atomic.Pointer[state] }

// Refresh reads the session state now. Run calls it every interval; tests
// call it directly.
func (m *Metrics) Refresh() {
	st := &state{containers: map[string]int{
		session.StatusRunning: 0, session.StatusDetached: 0, session.StatusLaunching: 0,
	}}
	// A holder's container by (user, project): the allocator knows
	// holders, the Manager knows their containers' names.
	names := map[[2]string]string{}
	if c := m.src.Containers; c != nil {
		for _, cs := range c.ContainerStates() {
			st.containers[cs.Status]++
			if cs.Name != "" {
				names[[2]string{cs.User, cs.Project}] = cs.Name
			}
		}
	}
	if g := m.src.GPUs; g != nil {
		slots, queue := g.GPUStatus()
		for _, s := range slots {
			ss := slotState{index: s.Slot.Index, uuid: s.Slot.UUID, name: s.Slot.Name, eq: s.Slot.GPUEq()}
			if pct, ok := g.GPUUtilization(s.Slot.UUID); ok {
				ss.util, ss.hasUtil = float64(pct)/100, true
			}
			if h := s.Holder; h != nil {
				ss.user, ss.container = h.User, names[[2]string{h.User, h.Project}]
			}
			st.slots = append(st.slots, ss)
		}
		st.queueLen = len(queue)
		for _, w := range queue {
			if st.oldestWait.IsZero() || w.Since.Before(st.oldestWait) {
				st.oldestWait = w.Since
			}
		}
	}
	m.state.p.Store(st)
}

// Run refreshes the state every interval until ctx ends; the first
// reading is taken at once.
func (m *Metrics) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultRefresh
	}
	m.Refresh()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Refresh()
		}
	}
}

// activeSessions counts each user's open sessions; a user with none has
// no series, so users who left do not linger.
type activeSessions struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *activeSessions) add(user string, d int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[user] += d; a.n[user] <= 0 {
		delete(a.n, user)
	}
}

func (a *activeSessions) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.n))
	for u, n := range a.n {
		out[u] = n
	}
	return out
}

var (
	descAllocated = prometheus.NewDesc("ds01_gpu_allocated",
		"1 for each GPU slot held by a container: the slot, its holder, and the container's name (empty while it launches).",
		[]string{"gpu_slot", "user", "container"}, nil)
	descGPUEq = prometheus.NewDesc("ds01_gpu_equivalents",
		"GPU-equivalents allocated in all (a full GPU is 1, a MIG instance its slices/7).", nil, nil)
	descUserEq = prometheus.NewDesc("ds01_user_gpu_equivalents",
		"GPU-equivalents each user holds.", []string{"user"}, nil)
	descSlotInfo = prometheus.NewDesc("ds01_gpu_slot_info",
		"1 for each GPU slot of the inventory, with its UUID and model.", []string{"gpu_slot", "uuid", "name"}, nil)
	descUtil = prometheus.NewDesc("ds01_gpu_utilization_ratio",
		"GPU utilisation of each slot, 0 to 1 (a MIG instance reports its GPU's), as of the last refresh.", []string{"gpu_slot"}, nil)
	descQueue = prometheus.NewDesc("ds01_gpu_queue_length",
		"Requests waiting in the GPU queue.", nil, nil)
	descOldest = prometheus.NewDesc("ds01_gpu_queue_oldest_wait_seconds",
		"How long the first request in the GPU queue has waited; 0 when none waits.", nil, nil)
	descContainers = prometheus.NewDesc("ds01_containers_total",
		"Project containers by status: running (connections open), detached (none open), launching.", []string{"status"}, nil)
	descSessions = prometheus.NewDesc("ds01_ssh_sessions_active",
		"Open SSH sessions running in a container, per user.", []string{"user"}, nil)
)

// stateCollector turns the cached state into metrics at each scrape. It
// reads only the cache and the session counts: no lock on the session
// layer, no engine, no NVML.
type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAllocated, descGPUEq, descUserEq, descSlotInfo, descUtil, descQueue, descOldest, descContainers, descSessions} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for u, n := range c.m.sessions.snapshot() {
		gauge(descSessions, float64(n), u)
	}
	st := c.m.state.p.Load()
	if st == nil {
		return // before the first refresh
	}
	total := 0.0
	users := map[string]float64{}
	for _, s := range st.slots {
		gauge(descSlotInfo, 1, s.index, s.uuid, s.name)
		if s.hasUtil {
			gauge(descUtil, s.util, s.index)
		}
		if s.user != "" {
			gauge(descAllocated, 1, s.index, s.user, s.container)
			total += s.eq
			users[s.user] += s.eq
		}
	}
	gauge(descGPUEq, gpu.RoundEq(total))
	for u, eq := range users {
		gauge(descUserEq, gpu.RoundEq(eq), u)
	}
	gauge(descQueue, float64(st.queueLen))
	wait := 0.0
	if !st.oldestWait.IsZero() {
		wait = max(c.m.now().Sub(st.oldestWait).Seconds(), 0)
	}
	gauge(descOldest, wait)
	// Untyped: DS01's name ends in _total, which promtool allows a gauge
	// only when it is not typed as one; it is a count that goes down.
	for s, n := range st.containers {
		ch <- prometheus.MustNewConstMetric(descContainers, prometheus.UntypedValue, float64(n), s)
	}
}
