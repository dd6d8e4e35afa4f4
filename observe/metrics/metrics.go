// Package metrics is the gateway's Prometheus exporter: DS01's metric names
// where DS01's exporter has them (ds01_gpu_allocated, ds01_containers_total,
// ...), and the gateway's own (login latency, builds, auth failures,
// transfers).
//
// Three sources feed it, none of which a scrape waits for:
//   - the gateway calls its Observer methods (atomic counters);
//   - the store's events (store.OnEvent) count builds and lifecycle actions;
//   - a refresher (Run) reads the session layer's GPU and container state
//     every few seconds into a cache that a scrape only reads, so a scrape
//     never reaches Docker or NVML.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ds01/ds01-gateway/gateway"
)

// Metrics is the exporter. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	src Sources
	now func() time.Time

	state    *stateCache
	sessions *activeSessions

	authFailures  *prometheus.CounterVec
	sessionsTotal prometheus.Counter
	logins        *prometheus.HistogramVec
	transfer      *prometheus.CounterVec
	builds        *prometheus.CounterVec
	buildSeconds  *prometheus.HistogramVec
	events        *prometheus.CounterVec
}

var _ gateway.Observer = (*Metrics)(nil)

// Buckets of the latency histograms. A warm login takes a fraction of a
// second; a cold one may build an image or wait for a GPU for many
// minutes. A build runs from seconds (cached) to build_timeout (30 min).
var (
	loginBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800}
	buildBuckets = []float64{5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}
)

// New builds the exporter on a registry of its own (not the global one),
// with the process and Go runtime collectors. Call Run to keep the
// session state fresh and Handler to serve it.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		src:      src,
		now:      time.Now,
		state:    &stateCache{},
		sessions: &activeSessions{n: map[string]int{}},
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ds01_auth_failures_total",
			Help: "Connections that ended without authenticating, or were refused before, by reason.",
		}, []string{"reason"}),
		sessionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ds01_ssh_sessions_total",
			Help: "SSH sessions whose process started in a project container.",
		}),
		logins: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ds01_login_duration_seconds",
			Help:    "From authentication to the first session's process started in the container; kind is cold when the container had to be launched, warm when it ran.",
			Buckets: loginBuckets,
		}, []string{"kind"}),
		transfer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ds01_transfer_bytes_total",
			Help: "Bytes moved by file transfers (SFTP, scp, rsync), into the workspace (in) or out of it (out).",
		}, []string{"direction"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ds01_builds_total",
			Help: "Image builds by result (ok, failed).",
		}, []string{"result"}),
		buildSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ds01_build_duration_seconds",
			Help:    "Duration of image builds by result (ok, failed).",
			Buckets: buildBuckets,
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ds01_lifecycle_events_total",
			Help: "Events recorded by the gateway (container launches, retires, idle stops, GPU allocations, builds...), by event type.",
		}, []string{"action"}),
	}
	// Series that exist from the start: a rate over a counter that
	// appears only at its first increment misses that increment.
	for _, r := range []string{gateway.AuthUnknownKey, gateway.AuthTooManyTries, gateway.AuthBadSignature, gateway.AuthMaxStartups} {
		m.authFailures.WithLabelValues(r)
	}
	for _, k := range []string{gateway.LoginCold, gateway.LoginWarm} {
		m.logins.WithLabelValues(k)
	}
	for _, d := range []string{gateway.TransferIn, gateway.TransferOut} {
		m.transfer.WithLabelValues(d)
	}
	for _, r := range []string{buildOK, buildFailed} {
		m.builds.WithLabelValues(r)
		m.buildSeconds.WithLabelValues(r)
	}
	m.reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.authFailures, m.sessionsTotal, m.logins, m.transfer, m.builds, m.buildSeconds, m.events,
		stateCollector{m},
	)
	return m
}

// Registry is the exporter's registry, for tests and for collectors of
// other parts.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' text format (or
// OpenMetrics/protobuf when the scraper asks). A scrape gathers only
// counters and the cached state.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// AuthFailed counts a connection that did not authenticate.
func (m *Metrics) AuthFailed(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// SessionStarted counts a session of user, now open.
func (m *Metrics) SessionStarted(user string) {
	m.sessionsTotal.Inc()
	m.sessions.add(user, 1)
}

// SessionEnded counts a session of user closed.
func (m *Metrics) SessionEnded(user string) { m.sessions.add(user, -1) }

// Login records a login's latency.
func (m *Metrics) Login(kind string, d time.Duration) {
	m.logins.WithLabelValues(kind).Observe(d.Seconds())
}

// TransferBytes counts bytes a transfer moved.
func (m *Metrics) TransferBytes(direction string, n int64) {
	m.transfer.WithLabelValues(direction).Add(float64(n))
}
