package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/projections/reports"
	"gcmtrack/services/api"
	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/idempotency"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
	"gcmtrack/services/web"
)

// projectionSet is every projection the product maintains.
func projectionSet() []engine.Projection {
	return []engine.Projection{projregistry.Projection{}, projrecords.Projection{}}
}

func cmdRun(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg.bind(fs)
	demo := fs.Bool("demo", demoEnabled(), "load the demonstration data set at start, once (env GCM_DEMO)")
	limits := bindRateLimits(fs)
	proxyList := fs.String("trusted-proxies", env("GCM_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDR prefixes of reverse proxies whose X-Forwarded-For names the client (env GCM_TRUSTED_PROXIES)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	proxies, err := parsePrefixes(*proxyList)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	if err := limits.Validate(); err != nil {
		return err
	}
	log := cfg.logger()
	log.Info("starting GCM Tracker", cfg.logAttrs()...)

	p, err := openPlatform(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer p.close()
	if err := migrate(ctx, p.pool); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	js, err := jetstream.New(p.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	cat := catalog.Default()
	g, gctx := errgroup.WithContext(ctx)

	var handler http.Handler
	var stream jetstream.Stream
	if cfg.Target == "all" || cfg.Target == "api" {
		store, err := eventstore.Open(ctx, js, eventstore.Config{Replicas: cfg.Replicas, Registerer: reg})
		if err != nil {
			return err
		}
		stream = store.Stream()
		keys, err := idempotency.Open(ctx, js, idempotency.Config{Replicas: cfg.Replicas})
		if err != nil {
			return err
		}
		regSvc := registry.NewService(store, cat)
		n, err := regSvc.RegisterCatalog(ctx, command.Meta{Actor: "system", CorrelationID: "startup"})
		if err != nil {
			return fmt.Errorf("register catalog ISCMs: %w", err)
		}
		log.Info("catalog ISCMs registered", "new", n, "catalog", len(cat.ISCMs))
		recSvc := records.NewService(store, cat, regSvc)
		if *demo {
			if _, err := loadDemo(ctx, regSvc, recSvc, cat, log); err != nil {
				return fmt.Errorf("load demonstration data: %w", err)
			}
		}
		tokens := auth.NewStore(p.pool)
		// Verified tokens are kept in memory while a listener hears of
		// every revocation; without it, every request reads the table.
		g.Go(func() error { tokens.Listen(gctx, log.With("component", "auth")); return nil })
		auditLog := audit.Open(p.pool, audit.Config{Registerer: reg, Logger: log.With("component", "audit")})
		// Deferred after p.close: it runs first, once the HTTP server has
		// stopped, and writes what is still buffered.
		defer closeAudit(auditLog, log)
		// One reports store for the pages and the API: they share its
		// snapshots and computed reports.
		reportStore := reports.NewStore(p.pool)
		pages, err := web.New(web.Deps{
			Catalog: cat, Pool: p.pool, Tokens: tokens, Records: recSvc, RecordsQ: projrecords.NewQueries(p.pool),
			RegistryQ: projregistry.NewQueries(p.pool), Reports: reportStore, PositionAt: store.PositionAt,
			Logger: log.With("component", "web"), Registerer: reg,
		})
		if err != nil {
			return err
		}
		handler = api.New(api.Deps{
			Catalog: cat, Auth: tokens, Keys: keys, Registry: regSvc, RegistryQ: projregistry.NewQueries(p.pool),
			Records: recSvc, RecordsQ: projrecords.NewQueries(p.pool),
			Reports: reportStore, Store: store,
			Pool: p.pool, Gatherer: reg, Registerer: reg, Logger: log.With("component", "api"), Ready: p.ready,
			Pages: pages, Audit: auditLog, RateLimits: *limits, TrustedProxies: proxies,
		})
		if err := announceAdmin(ctx, cfg, tokens); err != nil {
			return err
		}
	} else {
		stream, err = awaitStream(ctx, js)
		if err != nil {
			return err
		}
		handler = api.New(api.Deps{Gatherer: reg, Registerer: reg, Logger: log.With("component", "api"), Ready: p.ready})
	}

	if cfg.Target == "all" || cfg.Target == "projector" {
		eng := engine.New(p.pool, stream, engine.Config{Metrics: engine.NewMetrics(reg), Logger: log.With("component", "projector")}, projectionSet()...)
		if err := eng.Prepare(ctx); err != nil {
			return err
		}
		g.Go(func() error { return eng.Run(gctx) })
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	fmt.Fprintf(os.Stderr, "\nGCM Tracker (%s) is listening on http://%s\n", cfg.Target, ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "target", cfg.Target)
	err = g.Wait()
	log.Info("stopping")
	return err
}

// awaitStream waits for the API side to create the stream.
func awaitStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	for {
		s, err := js.Stream(ctx, events.StreamName)
		if err == nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for stream %s: %w", events.StreamName, err)
		case <-time.After(time.Second):
		}
	}
}

// announceAdmin prints a login token for the first user, as a notebook
// server does: the bootstrap token when one is set, else a new admin token
// valid for a day on every start.
func announceAdmin(ctx context.Context, cfg config, tokens *auth.Store) error {
	if cfg.BootstrapAdminToken != "" {
		exists, err := tokens.Exists(ctx, cfg.BootstrapAdminToken)
		if err != nil {
			return err
		}
		if !exists {
			if _, _, err := tokens.Create(ctx, auth.NewToken{Name: "bootstrap admin", Role: auth.RoleAdmin, Secret: cfg.BootstrapAdminToken}); err != nil {
				return fmt.Errorf("bootstrap admin token: %w", err)
			}
		}
		fmt.Fprintln(os.Stderr, "Admin token: the one in GCM_BOOTSTRAP_ADMIN_TOKEN")
		return nil
	}
	secret, _, err := tokens.Create(ctx, auth.NewToken{Name: "console " + time.Now().UTC().Format(time.RFC3339), Role: auth.RoleAdmin, TTL: 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	fmt.Fprintf(os.Stderr, "Admin token (valid 24 h; `gcmtrack token create` issues more):\n\n    %s\n\n", secret)
	return nil
}

// bindRateLimits declares the API's rate limits on fs (rates per second,
// bursts in requests; a rate of 0 turns that limit off).
func bindRateLimits(fs *flag.FlagSet) *api.RateLimits {
	l := api.DefaultRateLimits()
	rate := func(r *api.Rate, name, env, what string) {
		fs.Float64Var(&r.PerSecond, "rate-"+name, envFloat("GCM_RATE_"+env, r.PerSecond),
			fmt.Sprintf("%s per second; 0 for no limit (env GCM_RATE_%s)", what, env))
		fs.IntVar(&r.Burst, "rate-"+name+"-burst", envInt("GCM_RATE_"+env+"_BURST", r.Burst),
			fmt.Sprintf("burst of --rate-%s (env GCM_RATE_%s_BURST)", name, env))
	}
	rate(&l.TokenWrites, "token-writes", "TOKEN_WRITES", "write requests of one token")
	rate(&l.TokenReads, "token-reads", "TOKEN_READS", "other requests of one token")
	rate(&l.Anonymous, "anonymous", "ANONYMOUS", "requests of one client address without a valid token")
	return &l
}

func envFloat(key string, def float64) float64 {
	f, err := strconv.ParseFloat(env(key, ""), 64)
	if err != nil {
		return def
	}
	return f
}

// parsePrefixes reads a comma-separated list of addresses and CIDR prefixes.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// closeAudit writes the audit entries still buffered, for at most a few
// seconds.
func closeAudit(l *audit.Log, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		log.Warn("audit log not fully written", "err", err)
	}
}
