package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
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

// apiDatabase is a fresh database with the product's migrations and an
// admin token.
type apiDatabase struct {
	pool  *pgxpool.Pool
	url   string // as the harness's role
	admin string // the token's secret
	close func()
}

// newAPIDatabase creates and migrates a database as `gcmtrack run` does and
// issues an admin token in it.
func (r *runner) newAPIDatabase(ctx context.Context) (*apiDatabase, error) {
	url, drop, err := r.env.newDatabase(ctx, "api")
	if err != nil {
		return nil, err
	}
	pool, err := openPool(ctx, url, 8)
	if err != nil {
		drop()
		return nil, err
	}
	db := &apiDatabase{pool: pool, url: url, close: func() { pool.Close(); drop() }}
	if err := migrations.Up(ctx, pool, migrations.Engine(), auth.Migrations(), web.Migrations()); err != nil {
		db.close()
		return nil, err
	}
	db.admin, _, err = auth.NewStore(pool).Create(ctx, auth.NewToken{Name: "bench admin", Role: auth.RoleAdmin, TTL: 24 * time.Hour})
	if err != nil {
		db.close()
		return nil, err
	}
	return db, nil
}

// apiStack is the product as `gcmtrack run` wires it, on a fresh embedded
// NATS server: the event store, the idempotency keys, the registry service
// with the catalog registered, the API on a loopback listener and, when
// asked for, the projector.
type apiStack struct {
	node   *natsNode
	store  *eventstore.Store
	url    string // http://127.0.0.1:port
	stream jetstream.Stream
	names  []string // the projector's projections, when it runs
	log    string   // the API's log file
	stop   func()
}

// firstError is the first error the API logged, or "".
func (st *apiStack) firstError() string {
	b, err := os.ReadFile(st.log)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, `"level":"ERROR"`) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// stackOptions choose the variant of the stack.
type stackOptions struct {
	// syncAlways makes JetStream fsync every write, as `gcmtrack run` does
	// by default.
	syncAlways bool
	// engine adds the projector (--target all); without it the process is
	// the API alone (--target api).
	engine bool
	// listen opens a loopback listener on the NATS server, for child
	// processes.
	listen bool
}

// startStack builds the stack as cmd/gcmtrack/run.go does (keep the two in
// step when the API gains dependencies). The API logs as the product does,
// at info level in JSON, into a file of the run's working directory.
func (r *runner) startStack(ctx context.Context, db *apiDatabase, o stackOptions) (*apiStack, error) {
	node, err := r.env.startNATS("api", o.listen, o.syncAlways)
	if err != nil {
		return nil, err
	}
	st := &apiStack{node: node}
	var closers []func()
	st.stop = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		node.close()
	}
	fail := func(err error) (*apiStack, error) {
		st.stop()
		return nil, err
	}
	st.log = filepath.Join(node.dir, "api.log")
	logFile, err := os.Create(st.log)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = logFile.Close() })
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	js, err := jetstream.New(node.nc)
	if err != nil {
		return fail(err)
	}
	cat := catalog.Default()
	store, err := eventstore.Open(ctx, js, eventstore.Config{Replicas: 1, Registerer: reg})
	if err != nil {
		return fail(err)
	}
	st.store, st.stream = store, store.Stream()
	keys, err := idempotency.Open(ctx, js, idempotency.Config{Replicas: 1})
	if err != nil {
		return fail(err)
	}
	regSvc := registry.NewService(store, cat)
	if _, err := regSvc.RegisterCatalog(ctx, command.Meta{Actor: "system", CorrelationID: "startup"}); err != nil {
		return fail(fmt.Errorf("register catalog ISCMs: %w", err))
	}
	ready := func(ctx context.Context) error {
		if !node.nc.IsConnected() {
			return errors.New("NATS not connected")
		}
		return db.pool.Ping(ctx)
	}
	tokens := auth.NewStore(db.pool)
	lctx, stopListen := context.WithCancel(ctx)
	listening := make(chan struct{})
	go func() { defer close(listening); tokens.Listen(lctx, log.With("component", "auth")) }()
	closers = append(closers, func() { stopListen(); <-listening })
	// Writes and refusals are audited as `gcmtrack run` audits them; the
	// log is closed (its buffer written) after the HTTP server has stopped.
	auditLog := audit.Open(db.pool, audit.Config{Registerer: reg, Logger: log.With("component", "audit")})
	closers = append(closers, func() {
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = auditLog.Close(actx)
	})
	recSvc := records.NewService(store, cat, regSvc)
	// One reports store for the pages and the API, as in gcmtrack run.
	reportStore := reports.NewStore(db.pool)
	pages, err := web.New(web.Deps{
		Catalog: cat, Pool: db.pool, Tokens: tokens, Records: recSvc, RecordsQ: projrecords.NewQueries(db.pool),
		RegistryQ: projregistry.NewQueries(db.pool), Reports: reportStore, PositionAt: store.PositionAt,
		Logger: log.With("component", "web"), Registerer: reg,
	})
	if err != nil {
		return fail(err)
	}
	handler := api.New(api.Deps{
		Catalog: cat, Auth: tokens, Keys: keys, Registry: regSvc, RegistryQ: projregistry.NewQueries(db.pool),
		Records: recSvc, RecordsQ: projrecords.NewQueries(db.pool),
		Reports: reportStore, Store: store,
		Pool: db.pool, Gatherer: reg, Registerer: reg, Logger: log.With("component", "api"), Ready: ready,
		Audit: auditLog, Pages: pages,
	})
	if o.engine {
		ps := productProjections()
		eng := engine.New(db.pool, st.stream, engine.Config{Metrics: engine.NewMetrics(reg), Logger: log.With("component", "projector")}, ps...)
		if err := eng.Prepare(ctx); err != nil {
			return fail(err)
		}
		ectx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = eng.Run(ectx) }()
		closers = append(closers, func() { cancel(); <-done })
		st.names = engineNames(ps)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	})
	st.url = "http://" + ln.Addr().String()
	return st, nil
}
