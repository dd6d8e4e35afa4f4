package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/hostkeys"
	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/docker"
	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.register(fs)
	listen := fs.String("listen", "", "address to listen on (overrides listen)")
	dev := fs.Bool("dev", false, "developer mode: register the invoking user's SSH keys and print how to connect")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return errUsage
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log, level := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	ctx, sig := handleSignals(log)
	defer sig.stop()

	dataDir, err := cfg.absDataDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	st, err := store.Open(ctx, filepath.Join(dataDir, "ds01.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	events, err := openEvents(cfg, st, log)
	if err != nil {
		return err
	}
	defer events.close()
	signers, err := hostkeys.LoadOrGenerate(dataDir)
	if err != nil {
		return err
	}
	instance, err := st.InstanceID(ctx)
	if err != nil {
		return err
	}
	dk, err := docker.New(ctx, log, netip.MustParsePrefix(cfg.NetworkPool)) // validated
	if err != nil {
		return err
	}
	defer dk.Close()
	// With kubernetes too: image builds still run on this host's Docker,
	// in the per-user networks the firewall keeps off the host.
	if err := startHostFirewall(ctx, cfg, log); err != nil {
		return err
	}
	rt, kc, err := openRuntime(ctx, cfg, dk, log)
	if err != nil {
		return err
	}

	gpus, err := openGPUs(ctx, cfg, kc, log)
	if err != nil {
		return err
	}
	defer gpus.close()
	// A broken exemptions file stops the start, like a broken limits
	// file: running on without it could stop an exempt user's work.
	if p := cfg.exemptionsPath(); p != "" {
		if _, err := lifecycle.LoadExemptions(p); err != nil {
			return err
		}
	}

	mgr := session.New(session.Config{
		Inventory:        gpus.inv,
		Alloc:            gpus.alloc,
		Policy:           gpus.policy,
		LimitsFromPolicy: cfg.LimitsFile != "",
		MaxNanoCPUs:      int64(goruntime.NumCPU()) * 1e9,
		QueueTimeout:     cfg.GPUQueueTimeout.Duration,
		TransferTimeout:  cfg.TransferTimeout.Duration,
		WorkspaceRoot:    cfg.WorkspaceRoot,
		BaseImage:        cfg.BaseImage,
		AllowedBases:     cfg.AllowedBases,
		BuildTimeout:     cfg.BuildTimeout.Duration,
		BuildCacheMax:    int64(cfg.BuildCacheMax),
		RetireAfter:      cfg.RetireAfter.Duration,
		Instance:         instance,
		RunDir:           filepath.Join(dataDir, "run"),
		UserDir:          filepath.Join(dataDir, "users"),
		Limits: runtime.Limits{
			Memory:    int64(cfg.Limits.Memory),
			NanoCPUs:  cfg.Limits.nanoCPUs(),
			PidsLimit: cfg.Limits.PidsLimit,
			ShmSize:   int64(cfg.Limits.ShmSize),
		},
		Lifecycle:   cfg.lifecycleConfig(sampler(rt, log)),
		NoSocketDir: cfg.kubernetes(),

		NetworkLinger:     cfg.NetworkLinger.Duration,
		NetworkHoldersMax: cfg.NetworkHoldersMax,
	}, rt, dk, st, log)
	defer mgr.Close()
	if err := mgr.Reconcile(ctx); err != nil {
		return err
	}
	go mgr.Watch(ctx, cfg.WatchInterval.Duration)
	if r := mgr.Reaper(); r != nil {
		go r.Run(ctx)
	}
	users, keys, hostDir := accountsFor(ctx, cfg, st, log)
	var member memberOf
	if hostDir != nil {
		member = hostDir.InGroup
	}
	obs, err := startMetrics(ctx, cfg, log, st, mgr)
	if err != nil {
		return err
	}
	srv, err := gateway.New(gateway.Options{
		// Through /proc, so a user who cannot reach the binary's path can
		// still run it as the transfer child.
		Self:              "/proc/self/exe",
		HostSigners:       signers,
		CommandLogin:      cfg.CommandLogin,
		PublicName:        cfg.publicName(),
		HandshakeTimeout:  cfg.HandshakeTimeout.Duration,
		MaxAuthTries:      cfg.MaxAuthTries,
		KeepaliveInterval: cfg.KeepaliveInterval.Duration,
		KeepaliveCount:    cfg.KeepaliveCount,
		ForwardAllow:      cfg.ForwardAllow,
		Ciphers:           cfg.Ciphers,
		MACs:              cfg.MACs,
		KeyExchanges:      cfg.KexAlgorithms,
		HostKeyAlgorithms: cfg.HostKeyAlgorithms,

		MaxSessions:          cfg.MaxSessions,
		MaxForwardChannels:   cfg.MaxForwardChannels,
		MaxStartups:          cfg.MaxStartups,
		MaxStartupsPerSource: cfg.MaxStartupsPerSource,
		IsAdmin:              isAdmin(cfg.AdminGroup, member, log),
		Events:               st,
		Observer:             obs,
	}, users, gateway.NewSessions(mgr, mgr.Transfers()), commands.Parts{
		Catalog:    mgr.Catalog(),
		Images:     mgr.Images(),
		Workspaces: mgr.Workspaces(),
		Retirer:    mgr,
		GPUs:       mgr.GPUs(),
		Keeper:     mgr.Reaper(),
		Admin:      mgr.Admin(),
		EventLog:   st,
		Keys:       keys,
		Disk:       mgr.Disk(),
	}, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("ds01 gateway listening", "addr", ln.Addr().String(), "data_dir", dataDir, "instance", instance)
	if *dev {
		if err := devRegister(ctx, st, cfg, ln.Addr().String()); err != nil {
			ln.Close()
			return err
		}
	}

	rl := newReloader(cfg, func() (Config, error) { return c.reload(*listen) }, level, mgr, events, log)
	go sig.reloads(ctx, rl.reload)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return shutdown(srv, mgr, cfg.ShutdownTimeout.Duration, sig, log)
}
