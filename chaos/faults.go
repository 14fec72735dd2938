package chaos

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"
)

// Fault kinds, injected in this order, round after round.
const (
	FaultProjectorKill = "projector kill -9"
	FaultAPIKill       = "API kill -9"
	FaultNATSKill      = "NATS node kill -9"
	FaultNATSStop      = "NATS node SIGSTOP 10 s"
	FaultPGRestart     = "PostgreSQL restart"
)

var faultOrder = []string{FaultProjectorKill, FaultAPIKill, FaultNATSKill, FaultNATSStop, FaultPGRestart}

// Fault is one injected fault and what it took the system to recover.
type Fault struct {
	Kind   string
	Target string
	// At is when it was injected, from the start of the run.
	At time.Duration
	// Took is, for a projector kill, the time from the kill until the
	// standby held every build the killed one led and had moved each one's
	// checkpoint; for the others, from the fault until the system was
	// whole again (the process serving, the stream's replicas current, the
	// database answering).
	Took   time.Duration
	Detail string
	Err    string
}

// injectFaults injects a fault every FaultEvery while sched lasts, the
// first after half that; recoveries may outlast sched (they end with hard).
func (h *harness) injectFaults(sched, hard context.Context) error {
	first := time.Now().Add(h.cfg.FaultEvery / 2)
	count := map[string]int{}
	for i := 0; ; i++ {
		at := first.Add(time.Duration(i) * h.cfg.FaultEvery)
		deadline, _ := sched.Deadline()
		if !deadline.IsZero() && deadline.Sub(at) < h.cfg.FaultEvery/2 {
			return nil // too close to the end to recover under load
		}
		select {
		case <-sched.Done():
			return nil
		case <-time.After(time.Until(at)):
		}
		kind := faultOrder[i%len(faultOrder)]
		f := Fault{Kind: kind, At: time.Since(h.start)}
		var err error
		switch kind {
		case FaultProjectorKill:
			err = h.killLeadingProjector(hard, &f)
		case FaultAPIKill:
			err = h.killAPI(hard, &f, count[kind])
		case FaultNATSKill:
			err = h.killNATS(hard, &f, count[kind])
		case FaultNATSStop:
			err = h.pauseNATS(hard, &f, count[kind])
		case FaultPGRestart:
			err = h.restartPostgres(hard, &f)
		}
		count[kind]++
		if err != nil {
			f.Err = err.Error()
		}
		if herr := h.reviveExited(hard); herr != nil && f.Err == "" {
			f.Err = herr.Error()
		}
		h.report.Faults = append(h.report.Faults, f)
		if f.Err != "" {
			h.logf("fault %-22s %-12s FAILED: %s", kind, f.Target, f.Err)
		} else {
			h.logf("fault %-22s %-12s recovered in %s %s", kind, f.Target, f.Took.Round(time.Millisecond), f.Detail)
		}
		if err != nil {
			return fmt.Errorf("%s of %s: %w", kind, f.Target, err)
		}
	}
}

// reviveExited restarts a gcmtrack process that exited on its own: that is
// a finding (a process should ride out its dependencies' faults), and the
// run goes on with it restarted.
func (h *harness) reviveExited(ctx context.Context) error {
	var dead []string
	for _, p := range append(append([]*process(nil), h.apis...), h.projectors...) {
		if p.running() {
			continue
		}
		dead = append(dead, p.name)
		if err := p.restart(ctx, readyTimeout); err != nil {
			return err
		}
	}
	if len(dead) > 0 {
		return fmt.Errorf("%v exited by themselves (see their logs); restarted", dead)
	}
	return nil
}

// buildLock is who leads an active projection build, and its checkpoint.
type buildLock struct {
	name     string
	position int64
	holder   string // application name of the session holding the lock
}

// holdersSQL finds the session holding each active build's advisory lock,
// taken by the runner as pg_try_advisory_lock(hashtext('gcm.projection'),
// hashtext('<name>:<generation>')): two int4 keys show in pg_locks as
// classid and objid (unsigned), objsubid 2.
const holdersSQL = `
SELECT b.name, b.position, coalesce(a.application_name, '')
FROM gcm.projection_builds b
LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = (hashtext('gcm.projection')::bigint + 4294967296) % 4294967296
  AND l.objid::bigint = (hashtext(b.name || ':' || b.generation)::bigint + 4294967296) % 4294967296
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE b.status = 'active'
ORDER BY b.name`

func (h *harness) holders(ctx context.Context) ([]buildLock, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := h.pool.Query(ctx, holdersSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []buildLock
	for rows.Next() {
		var b buildLock
		if err := rows.Scan(&b.name, &b.position, &b.holder); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// awaitLeaders waits until a projector holds every active build.
func (h *harness) awaitLeaders(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for {
		bs, err := h.holders(ctx)
		if err == nil && len(bs) > 0 && !slices.ContainsFunc(bs, func(b buildLock) bool { return b.holder == "" }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no projector leads every build after a minute: %+v %v", bs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) projector(name string) *process {
	for _, p := range h.projectors {
		if p.name == name {
			return p
		}
	}
	return nil
}

// killLeadingProjector kills -9 the projector that leads the most builds
// and measures how long the other takes to lead them and move their
// checkpoints; then starts the killed one again, as the new standby.
func (h *harness) killLeadingProjector(ctx context.Context, f *Fault) error {
	bs, err := h.holders(ctx)
	if err != nil {
		return err
	}
	led := map[string]int{}
	for _, b := range bs {
		led[b.holder]++
	}
	leader := ""
	for name, n := range led {
		if h.projector(name) != nil && (leader == "" || n > led[leader]) {
			leader = name
		}
	}
	p := h.projector(leader)
	if p == nil {
		return fmt.Errorf("no projector leads a build: %+v", bs)
	}
	f.Target = leader
	before := map[string]int64{}
	for _, b := range bs {
		if b.holder == leader {
			before[b.name] = b.position
		}
	}
	t0 := time.Now()
	if err := p.kill(); err != nil {
		return err
	}
	for {
		bs, err := h.holders(ctx)
		done := err == nil
		for _, b := range bs {
			if pos, ok := before[b.name]; ok && (b.holder == "" || b.holder == leader || b.position <= pos) {
				done = false
			}
		}
		if done {
			f.Took = time.Since(t0)
			f.Detail = fmt.Sprintf("(builds taken over: %d)", len(before))
			h.report.Takeovers = append(h.report.Takeovers, f.Took)
			break
		}
		if time.Since(t0) > takeoverTimeout {
			return fmt.Errorf("the standby had not taken over %v within %s: %+v", before, takeoverTimeout, bs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.restart(ctx, readyTimeout)
}

// killAPI kills -9 an API process while it serves writes, then starts it
// again.
func (h *harness) killAPI(ctx context.Context, f *Fault, n int) error {
	i := n % len(h.apis)
	p := h.apis[i]
	f.Target = p.name
	deadline := time.Now().Add(5 * time.Second)
	for h.load.inflight[i].Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	inflight := h.load.inflight[i].Load()
	t0 := time.Now()
	if err := p.kill(); err != nil {
		return err
	}
	f.Detail = fmt.Sprintf("(%d requests in flight at the kill)", inflight)
	time.Sleep(time.Second)
	if err := p.restart(ctx, readyTimeout); err != nil {
		return err
	}
	f.Took = time.Since(t0)
	return nil
}

// natsTarget picks a node: the stream's leader every other time, else
// another.
func (h *harness) natsTarget(ctx context.Context, n int) int {
	leader, _ := streamLeader(ctx, h.js)
	for i, name := range h.nats.names {
		if (n%2 == 0) == (name == leader) {
			return i
		}
	}
	return n % len(h.nats.names)
}

// killNATS kills -9 a NATS node and starts it again on its store.
func (h *harness) killNATS(ctx context.Context, f *Fault, n int) error {
	i := h.natsTarget(ctx, n)
	p := h.nats.nodes[i]
	f.Target = h.nats.names[i]
	if n%2 == 0 {
		f.Detail = "(the stream leader)"
	}
	t0 := time.Now()
	if err := p.kill(); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if err := p.start(); err != nil {
		return err
	}
	if err := h.nats.awaitNode(ctx, i, time.Minute); err != nil {
		return err
	}
	if err := awaitStreamHealthy(ctx, h.js, time.Minute); err != nil {
		return err
	}
	f.Took = time.Since(t0)
	return nil
}

// pauseNATS stops a NATS node for ten seconds with SIGSTOP, then lets it
// go on.
func (h *harness) pauseNATS(ctx context.Context, f *Fault, n int) error {
	i := h.natsTarget(ctx, n)
	p := h.nats.nodes[i]
	f.Target = h.nats.names[i]
	if n%2 == 0 {
		f.Detail = "(the stream leader)"
	}
	t0 := time.Now()
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	if err := p.signal(syscall.SIGCONT); err != nil {
		return err
	}
	if err := awaitStreamHealthy(ctx, h.js, time.Minute); err != nil {
		return err
	}
	f.Took = time.Since(t0)
	return nil
}

// restartPostgres restarts the database server (fast shutdown: every
// session is cut) and waits until the projectors lead every build again.
func (h *harness) restartPostgres(ctx context.Context, f *Fault) error {
	f.Target = "postgres"
	t0 := time.Now()
	took, err := h.pg.restart(ctx)
	if err != nil {
		return err
	}
	f.Detail = fmt.Sprintf("(pg_ctl restart %s)", took.Round(time.Millisecond))
	if err := h.awaitLeaders(ctx); err != nil {
		return err
	}
	f.Took = time.Since(t0)
	return nil
}
