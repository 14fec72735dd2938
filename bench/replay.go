package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
)

// productProjections is every projection the product maintains, rebuilt
// together by the "product projections" row. Keep it in step with
// projectionSet in cmd/gcmtrack/run.go: a projection added there belongs
// here too.
func productProjections() []engine.Projection {
	return []engine.Projection{projregistry.Projection{}, projrecords.Projection{}}
}

// replayBatch is the batch size of the engine and of the baselines.
const replayBatch = 1000

// oneTableColumns is the shape of the table both the bench projection and
// the raw baseline fill: one row per event.
var oneTableColumns = []string{"position", "iscm", "type", "occurred_at"}

const oneTableDDL = `
CREATE TABLE events (
    position    bigint      PRIMARY KEY,
    iscm        text        NOT NULL,
    type        text        NOT NULL,
    occurred_at timestamptz NOT NULL
)`

// oneTable is the bench's own projection: it copies one row per event into
// one table, the same table the raw baseline fills, so that the pair
// measures the engine and not a projection's SQL.
type oneTable struct{}

// Name implements engine.Projection.
func (oneTable) Name() string { return "bench_events" }

// Version implements engine.Projection.
func (oneTable) Version() int { return 1 }

// Setup implements engine.Projection.
func (oneTable) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, oneTableDDL)
	return err
}

// Apply implements engine.Projection with one COPY per batch.
func (oneTable) Apply(ctx context.Context, tx pgx.Tx, batch []engine.Event) error {
	rows := make([][]any, len(batch))
	for i, ev := range batch {
		rows[i] = []any{int64(ev.Position), ev.ISCM, ev.Type, ev.OccurredAt}
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, oneTableColumns, pgx.CopyFromRows(rows))
	return err
}

// rebuildRun is one timed rebuild.
type rebuildRun struct {
	wall time.Duration
	// engine is the time from the new build's creation to its activation,
	// as PostgreSQL recorded them: the rebuild without the status polling
	// of Engine.Rebuild.
	engine time.Duration
	cpu    cpuUse
}

// productRebuild rebuilds the projections into a fresh database with the
// product's engine and times Engine.Rebuild. When rows is the name of a
// table, it checks that the table holds last rows afterwards.
func (r *runner) productRebuild(ctx context.Context, stream jetstream.Stream, ps []engine.Projection, last uint64, rows string) (rebuildRun, error) {
	url, drop, err := r.env.newDatabase(ctx, "rebuild")
	if err != nil {
		return rebuildRun{}, err
	}
	defer drop()
	pool, err := openPool(ctx, url, 8)
	if err != nil {
		return rebuildRun{}, err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, migrations.Engine()); err != nil {
		return rebuildRun{}, err
	}
	eng := engine.New(pool, stream, engine.Config{BatchSize: replayBatch}, ps...)
	if err := eng.Prepare(ctx); err != nil {
		return rebuildRun{}, err
	}
	c0 := r.cpu.now()
	start := time.Now()
	if err := eng.Rebuild(ctx, nil, nil); err != nil {
		return rebuildRun{}, fmt.Errorf("rebuild: %w", err)
	}
	run := rebuildRun{wall: time.Since(start), cpu: r.cpu.now().since(c0)}
	var secs float64
	err = pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM max(activated_at - created_at)), 0)::float8
		FROM gcm.projection_builds WHERE status = 'active'`).Scan(&secs)
	if err != nil {
		return rebuildRun{}, err
	}
	run.engine = time.Duration(secs * float64(time.Second))
	if rows != "" {
		if err := checkRows(ctx, pool, rows, last); err != nil {
			return rebuildRun{}, err
		}
	}
	return run, nil
}

// rebuildCeiling sets the CPU time the product's projections take per event
// (the harness, where the engine and the NATS server run, and PostgreSQL)
// against the raw baseline's, repetition by repetition, and turns it into
// the rate the product's rebuild would reach with every core of the machine
// busy at that CPU time per event: what any parallelism of the same work
// could reach at best.
func rebuildCeiling(path string, prodCPU, rawCPU []cpuUse, rawRate []float64, events uint64) (Row, Row) {
	cores := float64(runtime.NumCPU())
	cpuRow := Row{
		Path: "rebuild, CPU per event: the product's projections vs the raw baseline", Unit: "µs",
		BaselineName: "the raw baseline of the one-table row (the same runs)",
		Notes:        []string{"CPU time of the harness (engine, embedded NATS server) and PostgreSQL over the rebuild, divided by the events"},
	}
	ceilRow := Row{
		Path:         fmt.Sprintf("rebuild ceiling: the product's projections with all %d cores busy at their CPU per event", int(cores)),
		Unit:         "events/s",
		BaselineName: "the raw baseline of the one-table row (the same runs)",
	}
	perEvent := func(u cpuUse) float64 { return 1e6 * (u.Harness + u.PostgreSQL) / float64(events) }
	for i := range min(len(prodCPU), len(rawCPU), len(rawRate)) {
		p := perEvent(prodCPU[i])
		if events == 0 || p == 0 {
			continue // no events or no clock: nothing to divide by
		}
		cpuRow.Product = append(cpuRow.Product, p)
		cpuRow.Baseline = append(cpuRow.Baseline, perEvent(rawCPU[i]))
		ceilRow.Product = append(ceilRow.Product, cores*1e6/p)
		ceilRow.Baseline = append(ceilRow.Baseline, rawRate[i])
	}
	ceilRow.Notes = []string{fmt.Sprintf("the cores divided by the CPU time per event of %q: running its work in parallel cannot pass this; "+
		"where the ratio is below that row's target, only less work per event can reach it", path)}
	return cpuRow, ceilRow
}

// checkRows fails unless table holds want rows.
func checkRows(ctx context.Context, pool *pgxpool.Pool, table string, want uint64) error {
	var n int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return fmt.Errorf("count %s: %w", table, err)
	}
	if uint64(n) != want {
		return fmt.Errorf("%s holds %d rows, want %d", table, n, want)
	}
	return nil
}

// head is what the baselines read of an envelope: the fields of their row.
type head struct {
	Type       string    `json:"type"`
	ISCM       string    `json:"iscm"`
	OccurredAt time.Time `json:"occurred_at"`
}

// orderedReader reads a stream from position 1 through an ordered
// consumer, as the engine does, with the engine's pull size.
func orderedReader(ctx context.Context, stream jetstream.Stream) (jetstream.MessagesContext, error) {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * replayBatch))
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	return it, nil
}

// nextRow reads the next message and turns it into a row.
func nextRow(ctx context.Context, it jetstream.MessagesContext) (uint64, []any, error) {
	msg, err := it.Next(jetstream.NextContext(ctx))
	if err != nil {
		return 0, nil, fmt.Errorf("next: %w", err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return 0, nil, err
	}
	var h head
	if err := json.Unmarshal(msg.Data(), &h); err != nil {
		return 0, nil, fmt.Errorf("position %d: %w", md.Sequence.Stream, err)
	}
	pos := md.Sequence.Stream
	return pos, []any{int64(pos), h.ISCM, h.Type, h.OccurredAt}, nil
}

const (
	checkpointDDL = `CREATE TABLE checkpoint (name text PRIMARY KEY, position bigint NOT NULL);
INSERT INTO checkpoint VALUES ('events', 0)`
	// checkpointSQL moves the checkpoint with a compare-and-set, as the
	// engine does.
	checkpointSQL = `UPDATE checkpoint SET position = $1 WHERE name = 'events' AND position = $2`
)

// rawTables prepares a fresh database for a baseline and returns a pool on
// it and a function that closes the pool and drops the database.
func (r *runner) rawTables(ctx context.Context) (*pgxpool.Pool, func(), error) {
	url, drop, err := r.env.newDatabase(ctx, "raw")
	if err != nil {
		return nil, nil, err
	}
	pool, err := openPool(ctx, url, 2)
	if err != nil {
		drop()
		return nil, nil, err
	}
	done := func() { pool.Close(); drop() }
	if _, err := pool.Exec(ctx, oneTableDDL+";\n"+checkpointDDL); err != nil {
		done()
		return nil, nil, err
	}
	return pool, done, nil
}

// rawReplay is the baseline of the rebuild: an ordered pull consume of the
// stream, each batch of replayBatch events copied into the table with the
// checkpoint update in one transaction. A reader goroutine decodes the next
// batch while the current one is written, as the engine's reader does.
func (r *runner) rawReplay(ctx context.Context, stream jetstream.Stream, last uint64) (rebuildRun, error) {
	pool, done, err := r.rawTables(ctx)
	if err != nil {
		return rebuildRun{}, err
	}
	defer done()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return rebuildRun{}, err
	}
	defer conn.Release()
	c0 := r.cpu.now()
	start := time.Now()
	it, err := orderedReader(ctx, stream)
	if err != nil {
		return rebuildRun{}, err
	}
	defer it.Stop()
	type batch struct {
		rows [][]any
		to   uint64
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batch, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		var pos uint64
		for pos < last {
			b := batch{rows: make([][]any, 0, replayBatch)}
			for len(b.rows) < replayBatch && pos < last {
				p, row, err := nextRow(rctx, it)
				if err != nil {
					readErr <- err
					return
				}
				pos = p
				b.rows = append(b.rows, row)
			}
			b.to = pos
			select {
			case batches <- b:
			case <-rctx.Done():
				return
			}
		}
	}()
	var from uint64
	for b := range batches {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, oneTableColumns, pgx.CopyFromRows(b.rows)); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, checkpointSQL, int64(b.to), int64(from))
			if err == nil && tag.RowsAffected() != 1 {
				err = fmt.Errorf("checkpoint moved")
			}
			return err
		})
		if err != nil {
			return rebuildRun{}, fmt.Errorf("raw replay batch to %d: %w", b.to, err)
		}
		from = b.to
	}
	select {
	case err := <-readErr:
		return rebuildRun{}, fmt.Errorf("raw replay read: %w", err)
	default:
	}
	run := rebuildRun{wall: time.Since(start), cpu: r.cpu.now().since(c0)}
	return run, checkRows(ctx, pool, "events", last)
}

// naiveReplay is the naive projector: one transaction per event, each
// inserting its row and moving the checkpoint, over the first count events.
func (r *runner) naiveReplay(ctx context.Context, stream jetstream.Stream, count uint64) (time.Duration, error) {
	pool, done, err := r.rawTables(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	start := time.Now()
	it, err := orderedReader(ctx, stream)
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	var pos uint64
	for pos < count {
		p, row, err := nextRow(ctx, it)
		if err != nil {
			return 0, err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO events (position, iscm, type, occurred_at) VALUES ($1, $2, $3, $4)`, row...); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, checkpointSQL, int64(p), int64(pos))
			if err == nil && tag.RowsAffected() != 1 {
				err = fmt.Errorf("checkpoint moved")
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("naive replay of %d: %w", p, err)
		}
		pos = p
	}
	took := time.Since(start)
	return took, checkRows(ctx, pool, "events", count)
}

// replayRows measures the rebuild pairs on the replay stream: the engine
// with the one-table projection and with the product's projections against
// the raw baseline, and the engine against the naive projector.
func (r *runner) replayRows(ctx context.Context, node *natsNode) []Row {
	// Every side of the rebuild pairs runs at the collector setting
	// `gcmtrack rebuild` takes (unless GOGC says otherwise).
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(engine.RebuildGCPercent))
	}
	ps := productProjections()
	one := Row{
		Path: "rebuild: one-table projection via engine", Unit: "events/s", Target: AtLeast(0.80),
		BaselineName: "ordered pull consume (decoding the next batch while one is written) + COPY of each batch of 1000 into the same table + checkpoint compare-and-set, one transaction per batch (bench/replay.go rawReplay)",
		Notes:        []string{"product = wall time of Engine.Rebuild with engine.Config{BatchSize: 1000}, up to the switch to the new tables (extra.engine_events_per_s: from the build's creation to its activation)"},
		Extra:        map[string]any{},
	}
	prod := Row{
		Path: "rebuild: product projections (" + strings.Join(engineNames(ps), ", ") + ")", Unit: "events/s", Target: AtLeast(0.50),
		BaselineName: "the raw baseline of the one-table row (the same runs)",
		Extra:        map[string]any{},
	}
	naive := Row{
		Path: "rebuild: engine vs naive projector", Unit: "events/s", Target: AtLeast(10),
		BaselineName: "naive projector: ordered consume, one transaction per event (INSERT of its row + checkpoint update)",
		Extra:        map[string]any{},
	}
	rows := []*Row{&one, &prod, &naive}
	result := func(err error) []Row {
		out := make([]Row, len(rows))
		for i, row := range rows {
			if err != nil {
				row.Err = err.Error()
			}
			out[i] = *row
		}
		return out
	}
	stream, last, err := streamOf(ctx, node)
	if err != nil {
		return result(err)
	}
	// One untimed read of the whole stream first, so that no side of the
	// first repetition pays for a cold store.
	if _, err := r.rawReplay(ctx, stream, last); err != nil {
		return result(err)
	}
	var oneEngine, prodEngine []float64
	var oneCPU, prodCPU, rawCPU []cpuUse
	for i := range r.cfg.Reps {
		for k := range 3 {
			switch (i + k) % 3 {
			case 0:
				run, err := r.rawReplay(ctx, stream, last)
				if err != nil {
					return result(fmt.Errorf("raw replay: %w", err))
				}
				v := PerSecond(int(last), run.wall)
				one.Baseline = append(one.Baseline, v)
				prod.Baseline = append(prod.Baseline, v)
				rawCPU = append(rawCPU, run.cpu)
			case 1:
				run, err := r.productRebuild(ctx, stream, []engine.Projection{oneTable{}}, last, "bench_events.events")
				if err != nil {
					return result(fmt.Errorf("engine, one-table projection: %w", err))
				}
				one.Product = append(one.Product, PerSecond(int(last), run.wall))
				oneEngine = append(oneEngine, PerSecond(int(last), run.engine))
				oneCPU = append(oneCPU, run.cpu)
			case 2:
				run, err := r.productRebuild(ctx, stream, ps, last, "")
				if err != nil {
					return result(fmt.Errorf("engine, product projections: %w", err))
				}
				prod.Product = append(prod.Product, PerSecond(int(last), run.wall))
				prodEngine = append(prodEngine, PerSecond(int(last), run.engine))
				prodCPU = append(prodCPU, run.cpu)
			}
		}
		r.logf("rebuild %d/%d: raw %s, engine one-table %s, engine product projections %s events/s", i+1, r.cfg.Reps,
			FormatValue(one.Baseline[i]), FormatValue(one.Product[i]), FormatValue(prod.Product[i]))
	}
	one.Extra["engine_events_per_s"] = oneEngine
	one.Extra["cpu_engine"] = oneCPU
	one.Extra["cpu_raw"] = rawCPU
	one.Extra["events"] = last
	one.Notes = append(one.Notes, disturbance(oneCPU, rawCPU))
	prod.Extra["engine_events_per_s"] = prodEngine
	prod.Extra["cpu_engine"] = prodCPU
	prod.Notes = append(prod.Notes, disturbance(prodCPU, rawCPU))
	cpuRow, ceilRow := rebuildCeiling(prod.Path, prodCPU, rawCPU, prod.Baseline, last)
	rows = append(rows, &cpuRow, &ceilRow)

	naiveN := min(uint64(r.cfg.NaiveEvents), last)
	naive.Product = slices.Clone(one.Product)
	naive.Notes = append(naive.Notes, fmt.Sprintf("product = the one-table rebuild over all %d events; the naive projector replays the first %d", last, naiveN))
	var naiveCPU []cpuUse
	for i := range r.cfg.Reps {
		c0 := r.cpu.now()
		took, err := r.naiveReplay(ctx, stream, naiveN)
		if err != nil {
			return result(err)
		}
		naiveCPU = append(naiveCPU, r.cpu.now().since(c0))
		naive.Baseline = append(naive.Baseline, PerSecond(int(naiveN), took))
		r.logf("naive projector %d/%d: %s events/s over %d events", i+1, r.cfg.Reps, FormatValue(naive.Baseline[i]), naiveN)
	}
	naive.Extra["naive_events"] = naiveN
	naive.Extra["cpu_naive"] = naiveCPU
	naive.Notes = append(naive.Notes, disturbance(oneCPU, naiveCPU))

	err = r.profile("cpu-rebuild-one-table.pprof", func() error {
		_, err := r.productRebuild(ctx, stream, []engine.Projection{oneTable{}}, last, "bench_events.events")
		return err
	})
	if err == nil {
		err = r.profile("cpu-rebuild-product.pprof", func() error {
			_, err := r.productRebuild(ctx, stream, ps, last, "")
			return err
		})
	}
	return result(err)
}
