package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/observe/metrics"
	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// startMetrics serves /metrics on metrics_listen, when set: it subscribes
// the exporter to the store's events, keeps the session state fresh in the
// background, and returns the observer for the gateway (nil when off).
// The listener is opened here, so a taken port stops the start.
func startMetrics(ctx context.Context, cfg Config, log *slog.Logger, st *store.Store, mgr *session.Manager) (gateway.Observer, error) {
	if cfg.MetricsListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen: %w", err)
	}
	m := metrics.New(metrics.Sources{GPUs: mgr.GPUs(), Containers: mgr})
	st.OnEvent(m.OnEvent)
	go m.Run(ctx, metrics.DefaultRefresh)
	go func() {
		if err := m.Serve(ctx, ln, log); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	if !metrics.Loopback(cfg.MetricsListen) {
		// Anyone who reaches it reads user names, projects and who holds
		// which GPU; /metrics has no authentication.
		log.Warn("metrics served on a non-loopback address: anyone who reaches it sees user names and GPU holders; firewall it or use 127.0.0.1", "addr", ln.Addr().String())
	}
	log.Info("metrics listening", "addr", ln.Addr().String(), "path", "/metrics")
	return m, nil
}

// validateMetrics checks metrics_listen: "" or host:port.
func (c *Config) validateMetrics() error {
	if c.MetricsListen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(c.MetricsListen)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		return fmt.Errorf("metrics_listen: want host:port like 127.0.0.1:9101, got %q", c.MetricsListen)
	}
	if c.MetricsListen == c.Listen {
		return fmt.Errorf("metrics_listen: must differ from listen (%s)", c.Listen)
	}
	return nil
}
