package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
)

// item is what the reader hands the applier: a decoded event, or one that
// could not be decoded (err set) and will be parked.
type item struct {
	ev   Event
	data []byte
	err  error
	skip bool // not handled by the projection: counts toward the checkpoint only
}

// run applies the stream to the build until ctx ends or the build is
// retired. It holds the build's advisory lock while it writes.
func (r *runner) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	defer r.e.cfg.Metrics.lag.DeleteLabelValues(r.b.name, r.label)
	for ctx.Err() == nil {
		err := r.lead(ctx)
		switch {
		case err == nil, ctx.Err() != nil:
			return
		case errors.Is(err, errRetired):
			return
		case errors.Is(err, errNotLeader):
			backoff = 100 * time.Millisecond
			sleep(ctx, r.e.cfg.Standby)
			continue
		}
		r.e.cfg.Logger.Warn("projection runner stopped; retrying from its checkpoint",
			"projection", r.b.name, "generation", r.b.generation, "err", err, "backoff", backoff)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

var (
	errRetired   = errors.New("build retired")
	errNotLeader = errors.New("another instance holds the build")
	// errStalled ends a lead whose reader delivers nothing although the
	// stream holds events beyond the build's position (an ordered
	// consumer created while a clustered stream was still electing its
	// leader can wait that way); leading again starts a new reader.
	errStalled = errors.New("stream reader stalled")
)

// stallAfter is how long a reader may deliver nothing while the stream
// holds events the build has not applied.
const stallAfter = 3 * time.Second

// lead takes the build's lock on one connection and applies batches on it.
func (r *runner) lead(ctx context.Context) error {
	conn, err := r.e.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	// The lock lives and dies with this connection; never hand it back to
	// the pool holding the lock.
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('gcm.projection'), hashtext($1))`, r.lockKey()).Scan(&locked); err != nil {
		return fmt.Errorf("take lock: %w", err)
	}
	if !locked {
		if st, err := buildStatus(ctx, conn, r.b); err == nil && st == statusRetired {
			return errRetired
		}
		return errNotLeader
	}
	defer func() {
		// Unlock with a fresh context: ctx may be done already.
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtext('gcm.projection'), hashtext($1))`, r.lockKey()); err != nil {
			conn.Conn().Close(uctx) // a lock we cannot release goes with its connection
		}
	}()
	var pos int64
	var status string
	if err := conn.QueryRow(ctx, `SELECT position, status FROM gcm.projection_builds WHERE name = $1 AND generation = $2`, r.b.name, r.b.generation).Scan(&pos, &status); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return errRetired
		}
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if status == statusRetired {
		return errRetired
	}
	r.b.status = status
	r.position.Store(uint64(pos))
	if _, err := r.e.lastPosition(ctx); err == nil {
		r.reportLag()
	}
	r.e.cfg.Metrics.position.WithLabelValues(r.b.name, r.label).Set(float64(pos))
	r.state.Store(runnerLeading)
	defer r.state.CompareAndSwap(runnerLeading, runnerWaiting)
	r.e.cfg.Logger.Info("projection runner leading", "projection", r.b.name, "generation", r.b.generation, "status", status, "position", pos)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan item, r.e.cfg.BatchSize)
	readErr := make(chan error, 1)
	go func() { readErr <- r.read(rctx, uint64(pos)+1, items) }()

	batch := make([]item, 0, r.e.cfg.BatchSize)
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	catchUp := time.NewTicker(200 * time.Millisecond)
	defer catchUp.Stop()
	for {
		batch = batch[:0]
		idleSince := time.Now()
		// Wait for the first event, checking now and then whether a
		// building generation has caught up with an idle stream, and
		// whether the reader has stalled behind it.
	first:
		for {
			select {
			case <-ctx.Done():
				return nil
			case err := <-readErr:
				return fmt.Errorf("read stream: %w", err)
			case it := <-items:
				batch = append(batch, it)
				break first
			case <-catchUp.C:
				if done, err := r.maybeActivate(ctx, conn); err != nil || done {
					return err
				}
				if last := r.e.cfg.Metrics.lastSeq.Load(); last > r.position.Load() && time.Since(idleSince) > stallAfter {
					return fmt.Errorf("%w: nothing read for %s while the stream holds position %d and the build is at %d",
						errStalled, stallAfter, last, r.position.Load())
				}
			}
		}
		linger.Reset(r.e.cfg.Linger)
	fill:
		for len(batch) < cap(batch) {
			select {
			case it := <-items:
				batch = append(batch, it)
			default:
				select {
				case it := <-items:
					batch = append(batch, it)
				case <-linger.C:
					break fill
				case <-ctx.Done():
					return nil
				}
			}
		}
		if err := r.applyBatch(ctx, conn, batch); err != nil {
			return err
		}
		if done, err := r.maybeActivate(ctx, conn); err != nil || done {
			return err
		}
	}
}

func (r *runner) lockKey() string { return fmt.Sprintf("%s:%d", r.b.name, r.b.generation) }

func buildStatus(ctx context.Context, q querier, b build) (string, error) {
	var st string
	err := q.QueryRow(ctx, `SELECT status FROM gcm.projection_builds WHERE name = $1 AND generation = $2`, b.name, b.generation).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return statusRetired, nil
	}
	return st, err
}

// maybeActivate switches a building generation in once it has reached the
// stream's last position. It reports done when this runner's work is over.
func (r *runner) maybeActivate(ctx context.Context, conn *pgxpool.Conn) (bool, error) {
	if r.b.status != statusBuilding {
		return false, nil
	}
	// The stream's last position only grows: while the build is behind the
	// last one seen, it is behind, and the stream need not be asked.
	if r.position.Load() < r.e.cfg.Metrics.lastSeq.Load() {
		return false, nil
	}
	last, err := r.e.lastPosition(ctx)
	if err != nil {
		return false, nil // try again later
	}
	if r.position.Load() < last {
		return false, nil
	}
	if err := buildIndexes(ctx, r.e.pool, conn, r.p, r.b); err != nil {
		return false, fmt.Errorf("activate %s generation %d: %w", r.b.name, r.b.generation, err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return activate(ctx, tx, r.b) }); err != nil {
		return false, fmt.Errorf("activate %s generation %d: %w", r.b.name, r.b.generation, err)
	}
	r.b.status = statusActive
	r.state.Store(runnerActivated)
	r.e.cfg.Logger.Info("projection generation activated", "projection", r.b.name, "generation", r.b.generation, "position", r.position.Load())
	select {
	case r.e.activated <- struct{}{}:
	default: // a wake-up is pending already
	}
	return false, nil
}

func (e *Engine) lastPosition(ctx context.Context) (uint64, error) {
	info, err := e.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	e.cfg.Metrics.lastSeq.Store(info.State.LastSeq)
	return info.State.LastSeq, nil
}

// read streams events from position from on, decoded, into out.
func (r *runner) read(ctx context.Context, from uint64, out chan<- item) error {
	cons, err := r.e.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * r.e.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	filter, _ := r.p.(Filter)
	// Decoding JSON is the reader's main cost: two workers decode while a
	// forwarder hands the items on in stream order.
	type slot struct {
		msg  jetstream.Msg
		it   item
		done chan struct{}
	}
	work := make(chan *slot, 512)
	ordered := make(chan *slot, 512)
	var wg sync.WaitGroup
	for range decodeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				s.it = decodeItem(s.msg, filter)
				close(s.done)
			}
		}()
	}
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for s := range ordered {
			select {
			case <-s.done:
			case <-ctx.Done():
				return
			}
			select {
			case out <- s.it:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		close(work)
		close(ordered)
		wg.Wait()
		<-forwarded
	}()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s := &slot{msg: msg, done: make(chan struct{})}
		select {
		case ordered <- s:
		case <-ctx.Done():
			return nil
		}
		work <- s
	}
}

// decodeWorkers decode stream messages in parallel for one runner.
const decodeWorkers = 2

func decodeItem(msg jetstream.Msg, filter Filter) item {
	if filter != nil {
		if t := msg.Headers().Get(events.HeaderEventType); t != "" && !filter.Handles(t) {
			md, err := msg.Metadata()
			if err == nil {
				return item{ev: Event{Record: events.Record{Position: md.Sequence.Stream, Subject: msg.Subject()}}, skip: true}
			}
		}
	}
	rec, err := decodeRecord(msg)
	if err != nil {
		md, mdErr := msg.Metadata()
		if mdErr != nil {
			return item{err: err, data: msg.Data()}
		}
		return item{ev: Event{Record: events.Record{Position: md.Sequence.Stream, Subject: msg.Subject()}}, data: msg.Data(), err: err}
	}
	if filter != nil && !filter.Handles(rec.Type) {
		return item{ev: Event{Record: rec}, skip: true}
	}
	p, err := events.Decode(rec.Envelope)
	if err != nil {
		return item{ev: Event{Record: rec}, data: msg.Data(), err: err}
	}
	return item{ev: Event{Record: rec, Payload: p}, data: msg.Data()}
}

// applyBatch applies a batch in one transaction with the checkpoint. When
// the projection refuses the batch, it applies the events one at a time
// under savepoints and parks those that fail.
func (r *runner) applyBatch(ctx context.Context, conn *pgxpool.Conn, batch []item) error {
	start := time.Now()
	from := r.position.Load()
	to := batch[len(batch)-1].ev.Position
	evs := make([]Event, 0, len(batch))
	var bad []item
	for _, it := range batch {
		switch {
		case it.err != nil:
			bad = append(bad, it)
		case !it.skip:
			evs = append(evs, it.ev)
		}
	}
	err := r.inTx(ctx, conn, from, to, func(tx pgx.Tx) error {
		if len(evs) > 0 {
			if err := r.p.Apply(ctx, tx, evs); err != nil {
				return err
			}
		}
		return r.park(ctx, tx, bad)
	})
	if err != nil && !Transient(err) && !errors.Is(err, errFenced) && !conn.Conn().IsClosed() {
		r.e.cfg.Logger.Warn("projection batch refused; applying its events one by one", "projection", r.b.name, "from", from+1, "to", to, "err", err)
		err = r.inTx(ctx, conn, from, to, func(tx pgx.Tx) error { return r.applyEach(ctx, tx, batch) })
	}
	if err != nil {
		return err
	}
	r.position.Store(to)
	m := r.e.cfg.Metrics
	m.batchSize.WithLabelValues(r.b.name).Observe(float64(len(batch)))
	m.applySeconds.WithLabelValues(r.b.name).Observe(time.Since(start).Seconds())
	m.applied.WithLabelValues(r.b.name).Add(float64(len(batch)))
	m.position.WithLabelValues(r.b.name, r.label).Set(float64(to))
	r.reportLag()
	return nil
}

func (r *runner) applyEach(ctx context.Context, tx pgx.Tx, batch []item) error {
	for _, it := range batch {
		if it.skip {
			continue
		}
		if it.err != nil {
			if err := r.park(ctx, tx, []item{it}); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT one_event"); err != nil {
			return err
		}
		if err := r.p.Apply(ctx, tx, []Event{it.ev}); err != nil {
			if Transient(err) {
				return err
			}
			if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT one_event"); rbErr != nil {
				return rbErr
			}
			it.err = err
			if err := r.park(ctx, tx, []item{it}); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT one_event"); err != nil {
			return err
		}
	}
	return nil
}

const parkSQL = `
INSERT INTO gcm.dead_letters (name, generation, position, subject, event_id, event_type, error, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (name, generation, position) DO UPDATE SET error = EXCLUDED.error, parked_at = now(), resolved_at = NULL`

func (r *runner) park(ctx context.Context, tx pgx.Tx, bad []item) error {
	for _, it := range bad {
		id := ""
		if it.ev.ID.String() != "00000000-0000-0000-0000-000000000000" {
			id = it.ev.ID.String()
		}
		if _, err := tx.Exec(ctx, parkSQL, r.b.name, r.b.generation, int64(it.ev.Position), it.ev.Subject, id, it.ev.Type, it.err.Error(), it.data); err != nil {
			return fmt.Errorf("park event %d: %w", it.ev.Position, err)
		}
		r.e.cfg.Metrics.parked.WithLabelValues(r.b.name).Inc()
		r.e.cfg.Logger.Error("projection parked an event it cannot apply", "projection", r.b.name, "position", it.ev.Position, "type", it.ev.Type, "err", it.err)
	}
	return nil
}

const checkpointSQL = `
UPDATE gcm.projection_builds SET position = $3, updated_at = now()
WHERE name = $1 AND generation = $2 AND position = $4 AND status <> 'retired'`

// inTx runs fn in a transaction on the build's schema and moves the
// checkpoint from..to in the same transaction. A generation being built
// commits without waiting for its WAL to reach the disk: nothing reads it
// yet, and a batch lost to a crash is lost with its checkpoint, so the
// build resumes before it; its activation commits synchronously, which
// makes every batch before it durable. The records projection's commits in
// a rebuild of 100,000 events waited 0.28 s in all, and 0.06 s this way.
func (r *runner) inTx(ctx context.Context, conn *pgxpool.Conn, from, to uint64, fn func(pgx.Tx) error) error {
	set := "SET LOCAL search_path TO " + pgx.Identifier{r.b.schema}.Sanitize() + ", public"
	if r.b.status == statusBuilding {
		set += "; SET LOCAL synchronous_commit = off"
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, set); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, checkpointSQL, r.b.name, r.b.generation, int64(to), int64(from))
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return errFenced
		}
		return nil
	})
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// decodeRecord reads a stream message's envelope and position.
func decodeRecord(msg jetstream.Msg) (events.Record, error) {
	md, err := msg.Metadata()
	if err != nil {
		return events.Record{}, fmt.Errorf("message metadata: %w", err)
	}
	env, err := events.Unmarshal(msg.Data())
	if err != nil {
		return events.Record{}, fmt.Errorf("position %d: %w", md.Sequence.Stream, err)
	}
	return events.Record{Position: md.Sequence.Stream, Subject: msg.Subject(), Envelope: env}, nil
}
