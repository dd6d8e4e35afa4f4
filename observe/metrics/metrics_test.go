package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/store"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// fakeSession is the session layer as the refresher reads it, counting
// the reads.
type fakeSession struct {
	mu         sync.Mutex
	slots      []gpu.SlotState
	queue      []gpu.Waiter
	util       map[string]int
	containers []session.ContainerState
	reads      atomic.Int64
}

func (f *fakeSession) GPUStatus() ([]gpu.SlotState, []gpu.Waiter) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gpu.SlotState(nil), f.slots...), append([]gpu.Waiter(nil), f.queue...)
}

func (f *fakeSession) GPUUtilization(uuid string) (int, bool) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	pct, ok := f.util[uuid]
	return pct, ok
}

func (f *fakeSession) ContainerStates() []session.ContainerState {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]session.ContainerState(nil), f.containers...)
}

// twoGPUs: GPU 0 held by alice's "thesis", GPU 1 split in two MIG
// instances, one held by bob; carol waits since 20 minutes.
func twoGPUs() *fakeSession {
	g0 := gpu.Slot{UUID: "GPU-0", Index: "0", Name: "A100"}
	m1 := gpu.Slot{UUID: "MIG-1a", Index: "1:0", Name: "A100 MIG 3g.20gb", Slices: 3, Parent: "GPU-1"}
	m2 := gpu.Slot{UUID: "MIG-1b", Index: "1:1", Name: "A100 MIG 4g.20gb", Slices: 4, Parent: "GPU-1"}
	return &fakeSession{
		slots: []gpu.SlotState{
			{Slot: g0, Holder: &gpu.Holder{User: "alice", UID: 1001, Project: "thesis"}},
			{Slot: m1, Holder: &gpu.Holder{User: "bob", UID: 1002, Project: "nlp"}},
			{Slot: m2},
		},
		queue: []gpu.Waiter{{User: "carol", Project: "cv", Slots: 1, Since: t0.Add(-20 * time.Minute)}, {User: "dan", Project: "x", Slots: 1, Since: t0.Add(-time.Minute)}},
		util:  map[string]int{"GPU-0": 2, "MIG-1a": 87, "MIG-1b": 87},
		containers: []session.ContainerState{
			{User: "alice", Project: "thesis", Name: "ds01-alice.thesis-abc123", Status: session.StatusRunning, Connections: 2},
			{User: "bob", Project: "nlp", Name: "ds01-bob.nlp-def456", Status: session.StatusDetached},
			{Project: "cv", Status: session.StatusLaunching, Connections: 1},
		},
	}
}

func newTestMetrics(src *fakeSession) *Metrics {
	m := New(Sources{GPUs: src, Containers: src})
	m.now = func() time.Time { return t0 }
	return m
}

func TestSessionState(t *testing.T) {
	src := twoGPUs()
	m := newTestMetrics(src)
	m.Refresh()
	want := `
# HELP ds01_gpu_allocated 1 for each GPU slot held by a container: the slot, its holder, and the container's name (empty while it launches).
# TYPE ds01_gpu_allocated gauge
ds01_gpu_allocated{container="ds01-alice.thesis-abc123",gpu_slot="0",user="alice"} 1
ds01_gpu_allocated{container="ds01-bob.nlp-def456",gpu_slot="1:0",user="bob"} 1
# HELP ds01_gpu_equivalents GPU-equivalents allocated in all (a full GPU is 1, a MIG instance its slices/7).
# TYPE ds01_gpu_equivalents gauge
ds01_gpu_equivalents 1.43
# HELP ds01_user_gpu_equivalents GPU-equivalents each user holds.
# TYPE ds01_user_gpu_equivalents gauge
ds01_user_gpu_equivalents{user="alice"} 1
ds01_user_gpu_equivalents{user="bob"} 0.43
# HELP ds01_gpu_utilization_ratio GPU utilisation of each slot, 0 to 1 (a MIG instance reports its GPU's), as of the last refresh.
# TYPE ds01_gpu_utilization_ratio gauge
ds01_gpu_utilization_ratio{gpu_slot="0"} 0.02
ds01_gpu_utilization_ratio{gpu_slot="1:0"} 0.87
ds01_gpu_utilization_ratio{gpu_slot="1:1"} 0.87
# HELP ds01_gpu_queue_length Requests waiting in the GPU queue.
# TYPE ds01_gpu_queue_length gauge
ds01_gpu_queue_length 2
# HELP ds01_gpu_queue_oldest_wait_seconds How long the first request in the GPU queue has waited; 0 when none waits.
# TYPE ds01_gpu_queue_oldest_wait_seconds gauge
ds01_gpu_queue_oldest_wait_seconds 1200
# HELP ds01_containers_total Project containers by status: running (connections open), detached (none open), launching.
# TYPE ds01_containers_total untyped
ds01_containers_total{status="detached"} 1
ds01_containers_total{status="launching"} 1
ds01_containers_total{status="running"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"ds01_gpu_allocated", "ds01_gpu_equivalents", "ds01_user_gpu_equivalents", "ds01_gpu_utilization_ratio",
		"ds01_gpu_queue_length", "ds01_gpu_queue_oldest_wait_seconds", "ds01_containers_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(stateCollector{m}, "ds01_gpu_slot_info"); n != 3 {
		t.Errorf("slot info series: %d, want 3", n)
	}
}

// A holder who releases its GPU leaves no series behind: only current
// holders are exported, so the label values stay bounded.
func TestReleasedGPUHasNoSeries(t *testing.T) {
	src := twoGPUs()
	m := newTestMetrics(src)
	m.Refresh()
	src.mu.Lock()
	src.slots[0].Holder = nil
	src.queue = nil
	src.mu.Unlock()
	m.Refresh()
	want := `
# HELP ds01_gpu_allocated 1 for each GPU slot held by a container: the slot, its holder, and the container's name (empty while it launches).
# TYPE ds01_gpu_allocated gauge
ds01_gpu_allocated{container="ds01-bob.nlp-def456",gpu_slot="1:0",user="bob"} 1
# HELP ds01_user_gpu_equivalents GPU-equivalents each user holds.
# TYPE ds01_user_gpu_equivalents gauge
ds01_user_gpu_equivalents{user="bob"} 0.43
# HELP ds01_gpu_queue_oldest_wait_seconds How long the first request in the GPU queue has waited; 0 when none waits.
# TYPE ds01_gpu_queue_oldest_wait_seconds gauge
ds01_gpu_queue_oldest_wait_seconds 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ds01_gpu_allocated", "ds01_user_gpu_equivalents", "ds01_gpu_queue_oldest_wait_seconds"); err != nil {
		t.Error(err)
	}
}

// A scrape reads the cache only: the session layer is read by Refresh,
// never by a scrape.
func TestScrapeReadsNoSource(t *testing.T) {
	src := twoGPUs()
	m := newTestMetrics(src)
	m.Refresh()
	reads := src.reads.Load()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for range 3 {
		scrape(t, srv.URL)
	}
	if n := src.reads.Load(); n != reads {
		t.Errorf("scrapes read the session layer %d times", n-reads)
	}
}

// Before the first refresh a scrape works and shows no session state.
func TestScrapeBeforeRefresh(t *testing.T) {
	m := newTestMetrics(twoGPUs())
	if n := testutil.CollectAndCount(stateCollector{m}, "ds01_gpu_allocated", "ds01_containers_total"); n != 0 {
		t.Errorf("%d series before the first refresh", n)
	}
	m = New(Sources{}) // no GPUs, no containers: still valid
	m.Refresh()
	want := `
# HELP ds01_gpu_equivalents GPU-equivalents allocated in all (a full GPU is 1, a MIG instance its slices/7).
# TYPE ds01_gpu_equivalents gauge
ds01_gpu_equivalents 0
# HELP ds01_gpu_queue_length Requests waiting in the GPU queue.
# TYPE ds01_gpu_queue_length gauge
ds01_gpu_queue_length 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ds01_gpu_equivalents", "ds01_gpu_queue_length", "ds01_gpu_allocated"); err != nil {
		t.Error(err)
	}
}

func TestSessionsPerUser(t *testing.T) {
	m := newTestMetrics(twoGPUs())
	var o gateway.Observer = m
	o.SessionStarted("alice")
	o.SessionStarted("alice")
	o.SessionStarted("bob")
	o.SessionEnded("bob")
	want := `
# HELP ds01_ssh_sessions_active Open SSH sessions running in a container, per user.
# TYPE ds01_ssh_sessions_active gauge
ds01_ssh_sessions_active{user="alice"} 2
# HELP ds01_ssh_sessions_total SSH sessions whose process started in a project container.
# TYPE ds01_ssh_sessions_total counter
ds01_ssh_sessions_total 3
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ds01_ssh_sessions_active", "ds01_ssh_sessions_total"); err != nil {
		t.Error(err)
	}
}

func TestObserverCounters(t *testing.T) {
	m := newTestMetrics(twoGPUs())
	m.AuthFailed(gateway.AuthUnknownKey)
	m.AuthFailed(gateway.AuthUnknownKey)
	m.AuthFailed(gateway.AuthTimeout)
	m.Login(gateway.LoginWarm, 300*time.Millisecond)
	m.Login(gateway.LoginCold, 42*time.Second)
	m.TransferBytes(gateway.TransferIn, 1000)
	m.TransferBytes(gateway.TransferIn, 24)
	m.TransferBytes(gateway.TransferOut, 7)
	for reason, want := range map[string]float64{gateway.AuthUnknownKey: 2, gateway.AuthTimeout: 1, gateway.AuthBadSignature: 0} {
		if got := testutil.ToFloat64(m.authFailures.WithLabelValues(reason)); got != want {
			t.Errorf("auth failures %s: %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(m.transfer.WithLabelValues(gateway.TransferIn)); got != 1024 {
		t.Errorf("bytes in: %v", got)
	}
	out := scrapeText(t, m)
	for _, line := range []string{
		`ds01_login_duration_seconds_bucket{kind="warm",le="0.5"} 1`,
		`ds01_login_duration_seconds_bucket{kind="cold",le="30"} 0`,
		`ds01_login_duration_seconds_bucket{kind="cold",le="60"} 1`,
		`ds01_transfer_bytes_total{direction="out"} 7`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
}

// Builds count by result with their duration; every event counts under
// its type, and a type that is not one of ours cannot add label values.
func TestEvents(t *testing.T) {
	m := newTestMetrics(twoGPUs())
	m.OnEvent(store.Event{Type: "image.build", Duration: 90 * time.Second, Details: "ok sha256:abc"})
	m.OnEvent(store.Event{Type: "image.build", Duration: 3 * time.Second, Details: "failed: step 2: apt-get: exit 100"})
	m.OnEvent(store.Event{Type: "container.idle_stop"})
	m.OnEvent(store.Event{Type: "container.idle_stop"})
	m.OnEvent(store.Event{Type: "gpu.allocate"})
	for _, bad := range []string{"", "Container.Launch", "a.b.c", "x" + strings.Repeat("y", 60) + ".z", "user.名前", "no_dot"} {
		m.OnEvent(store.Event{Type: bad})
	}
	want := `
# HELP ds01_builds_total Image builds by result (ok, failed).
# TYPE ds01_builds_total counter
ds01_builds_total{result="failed"} 1
ds01_builds_total{result="ok"} 1
# HELP ds01_lifecycle_events_total Events recorded by the gateway (container launches, retires, idle stops, GPU allocations, builds...), by event type.
# TYPE ds01_lifecycle_events_total counter
ds01_lifecycle_events_total{action="container.idle_stop"} 2
ds01_lifecycle_events_total{action="gpu.allocate"} 1
ds01_lifecycle_events_total{action="image.build"} 2
ds01_lifecycle_events_total{action="other"} 6
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ds01_builds_total", "ds01_lifecycle_events_total"); err != nil {
		t.Error(err)
	}
	out := scrapeText(t, m)
	for _, line := range []string{
		`ds01_build_duration_seconds_bucket{result="ok",le="60"} 0`,
		`ds01_build_duration_seconds_bucket{result="ok",le="120"} 1`,
		`ds01_build_duration_seconds_sum{result="failed"} 3`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
}

// The exposition passes client_golang's linter (promlint, what `promtool
// check metrics` runs) and, where it is installed, promtool itself.
func TestExpositionLint(t *testing.T) {
	src := twoGPUs()
	m := newTestMetrics(src)
	m.Refresh()
	m.SessionStarted("alice")
	m.Login(gateway.LoginWarm, time.Second)
	m.OnEvent(store.Event{Type: "image.build", Duration: time.Minute, Details: "ok"})
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "ds01_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	promtool := lookPromtool(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrapeText(t, m))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// lookPromtool finds promtool (Debian's prometheus package). Without it
// the test skips, except in CI, which installs it (.ci/run).
func lookPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found: install Debian's prometheus package")
		}
		t.Skip("promtool not found (Debian package prometheus)")
	}
	return p
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// scrapeText is the text exposition a scraper without content
// negotiation gets.
func scrapeText(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}
