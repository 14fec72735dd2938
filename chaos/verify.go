package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
)

// streamMsg is what the checks need of a stored event.
type streamMsg struct {
	position uint64
	subject  string
	msgID    string
	// expected is the Nats-Expected-Last-Subject-Sequence the event was
	// appended with: the aggregate version its command decided on.
	expected string
	envOK    bool // the envelope decodes and names the subject's aggregate
}

// readAll reads the whole stream through an ordered consumer.
func readAll(ctx context.Context, stream jetstream.Stream) ([]streamMsg, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	if last == 0 {
		return nil, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			_ = stream.DeleteConsumer(context.WithoutCancel(ctx), ci.Name)
		}
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	var out []streamMsg
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, err
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		sm := streamMsg{position: md.Sequence.Stream, subject: m.Subject(),
			msgID: m.Headers().Get(jetstream.MsgIDHeader), expected: m.Headers().Get(jetstream.ExpectedLastSubjSeqHeader)}
		if env, err := events.Unmarshal(m.Data()); err == nil && env.Subject() == m.Subject() {
			sm.envOK = true
		}
		out = append(out, sm)
		if sm.position >= last {
			return out, nil
		}
	}
}

// verify waits for the projectors to catch up, then checks the stream
// against what the load was told and the read models against a rebuild.
func (h *harness) verify(ctx context.Context) error {
	r := h.report
	ops, skipped := h.load.snapshot()
	r.Skipped = skipped
	for _, o := range ops {
		r.Writes++
		switch o.result {
		case acked:
			r.Acked++
		case refused:
			r.Refused++
			if len(r.RefusalSamples) < 5 {
				r.RefusalSamples = append(r.RefusalSamples, fmt.Sprintf("%s %s → %d %s", o.method, o.path, o.status, o.problem))
			}
		default:
			r.Unresolved++
		}
		if o.attempts > 1 {
			r.Retried++
		}
		if o.ambiguous {
			r.Ambiguous++
		}
		r.Latencies = append(r.Latencies, o.took)
	}

	stream, err := h.js.Stream(ctx, events.StreamName)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	r.StreamLast = last
	began := time.Now()
	for {
		bs, err := h.holders(ctx)
		caught := err == nil && len(bs) > 0
		for _, b := range bs {
			caught = caught && uint64(b.position) >= last
		}
		if caught {
			break
		}
		if time.Since(began) > catchUpTimeout {
			r.fail("the projectors did not reach position %d within %s: %+v (%v)", last, catchUpTimeout, bs, err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.CatchUp = time.Since(began)
	h.logf("projectors at the stream's last position %d after %s; reading the stream", last, r.CatchUp.Round(time.Millisecond))

	msgs, err := readAll(ctx, stream)
	if err != nil {
		return fmt.Errorf("read the stream: %w", err)
	}
	r.StreamEvents = len(msgs)
	h.checkStream(msgs, ops)

	h.logf("rebuilding the read models from the stream into a fresh database")
	if err := h.compareWithRebuild(ctx, stream); err != nil {
		return err
	}
	var parked int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM gcm.dead_letters WHERE resolved_at IS NULL`).Scan(&parked); err != nil {
		return err
	}
	r.Parked = parked
	return h.backupAndRestore(ctx)
}

// backupAndRestore backs the stream up with gcmtrack backup as the NATS
// user backup, as the runbook has operators do, and restores the file into
// a fresh embedded NATS server, which checks every event's position.
func (h *harness) backupAndRestore(ctx context.Context) error {
	r := h.report
	file := filepath.Join(h.dir, "GCM.jsonl.gz")
	began := time.Now()
	out, err := exec.CommandContext(ctx, h.cfg.Gcmtrack, "backup", "--nats-url", h.nats.url("backup"),
		"--data-dir", filepath.Join(h.dir, "backup"), "--log-level", "warn", file).Output()
	if err != nil {
		return fmt.Errorf("gcmtrack backup as user backup: %w: %s", err, stderrOf(err))
	}
	r.BackupTook = time.Since(began)
	var count, first, last uint64
	if _, err := fmt.Sscanf(string(out), "backed up %d events (positions %d to %d)", &count, &first, &last); err != nil {
		return fmt.Errorf("gcmtrack backup printed %q: %w", out, err)
	}
	if st, err := os.Stat(file); err == nil {
		r.BackupBytes = st.Size()
	}
	if count != uint64(r.StreamEvents) || last != r.StreamLast {
		r.fail("the backup holds %d events up to position %d; the stream %d up to %d", count, last, r.StreamEvents, r.StreamLast)
	}
	began = time.Now()
	out, err = exec.CommandContext(ctx, h.cfg.Gcmtrack, "restore", "--no-rebuild", "--data-dir", filepath.Join(h.dir, "restored"),
		"--log-level", "warn", file).Output()
	if err != nil {
		r.fail("gcmtrack restore of the backup into a fresh embedded NATS: %v: %s", err, stderrOf(err))
		return nil
	}
	r.RestoreTook = time.Since(began)
	if !strings.Contains(string(out), fmt.Sprintf("restored %d events", count)) {
		r.fail("gcmtrack restore printed %q", out)
	}
	r.BackupEvents = int(count)
	return nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// checkStream checks the events against the writes' outcomes and each
// aggregate's version chain.
func (h *harness) checkStream(msgs []streamMsg, ops []*op) {
	r := h.report
	byID := map[string][]uint64{}
	lastOf := map[string]uint64{}
	for i, m := range msgs {
		if i > 0 && m.position <= msgs[i-1].position {
			r.fail("position %d follows %d", m.position, msgs[i-1].position)
		}
		if !m.envOK {
			r.fail("position %d: the envelope does not decode or names another aggregate than %s", m.position, m.subject)
		}
		if m.msgID != "" {
			byID[m.msgID] = append(byID[m.msgID], m.position)
		}
		// The version chain: each event was appended expecting the
		// subject's previous event, so none was decided on stale state.
		prev := lastOf[m.subject]
		if m.expected != strconv.FormatUint(prev, 10) {
			r.ChainBreaks++
			r.fail("%s at position %d was appended expecting version %q, but the previous event of the aggregate is at %d", m.subject, m.position, m.expected, prev)
		}
		lastOf[m.subject] = m.position
	}
	r.Aggregates = len(lastOf)
	for id, ps := range byID {
		if len(ps) > 1 {
			r.Duplicates++
			r.fail("message id %s… is on %d events: positions %v", id[:min(12, len(id))], len(ps), ps)
		}
	}
	for _, o := range ops {
		ps := byID[o.msgID]
		switch o.result {
		case acked:
			switch {
			case len(ps) == 0:
				r.Lost++
				r.fail("write %d (%s %s) was acknowledged at position %d but is not in the stream", o.n, o.method, o.path, o.position)
			case !slices.Contains(ps, o.position):
				r.Misplaced++
				r.fail("write %d (%s %s) was acknowledged at position %d but its event is at %v", o.n, o.method, o.path, o.position, ps)
			default:
				r.AckedInStream++
			}
		case refused:
			if len(ps) > 0 {
				r.RefusedWritten++
				how := "at its first attempt"
				if o.ambiguous {
					r.RefusedAfterAmbiguous++
					how = "after an attempt without an answer"
				}
				r.fail("write %d (%s %s) was refused %s (%d %s) but its event is at %v", o.n, o.method, o.path, how, o.status, o.problem, ps)
			}
		default:
			if len(ps) > 0 {
				r.UnresolvedWritten++
			}
		}
	}
}

// compareWithRebuild rebuilds the projections from the stream into a new
// database and compares every table with the live read models. The
// projections are the product's (cmd/gcmtrack's projectionSet).
func (h *harness) compareWithRebuild(ctx context.Context, stream jetstream.Stream) error {
	const db = "chaos_rebuild"
	if _, err := h.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	pool, err := pgxpool.New(ctx, h.pg.cluster.URLFor(db))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, migrations.Engine()); err != nil {
		return err
	}
	eng := engine.New(pool, stream, engine.Config{}, projregistry.Projection{}, projrecords.Projection{})
	if err := eng.Prepare(ctx); err != nil {
		return err
	}
	began := time.Now()
	if err := eng.Rebuild(ctx, nil, nil); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	h.report.RebuildTook = time.Since(began)
	for _, name := range eng.Names() {
		live, err := engine.Contents(ctx, h.pool, name)
		if err != nil {
			return err
		}
		fresh, err := engine.Contents(ctx, pool, name)
		if err != nil {
			return err
		}
		rows := 0
		for _, t := range fresh {
			rows += len(t)
		}
		h.report.ReadModels = append(h.report.ReadModels, fmt.Sprintf("%s: %d tables, %d rows", name, len(fresh), rows))
		if d := engine.DiffContents(live, fresh, 10); d != nil {
			h.report.ReadModelDiffs++
			h.report.fail("read model %s differs from a fresh rebuild (left: live, right: rebuilt):\n    %s", name, strings.Join(d, "\n    "))
		}
	}
	return nil
}
