package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/eventstore"
)

// warmUp is how long load runs before its measurement window opens.
const warmUp = time.Second

// window tells load generators whether an operation that ends now counts:
// not during the warm-up, not after the measurement.
type window struct {
	phase atomic.Int32 // 0 warm-up, 1 measuring, 2 over
	// clock, when set, is read as the window opens and closes: cpu is then
	// the CPU time the window took, without the warm-up's and the set-up's.
	clock *cpuClock
	cpu   cpuUse
}

func (w *window) measuring() bool { return w.phase.Load() == 1 }
func (w *window) over() bool      { return w.phase.Load() == 2 }

// run opens the window after the warm-up and closes it after d.
func (w *window) run(ctx context.Context, d time.Duration) time.Duration {
	sleepCtx(ctx, warmUp)
	var c0 cpuSample
	if w.clock != nil {
		c0 = w.clock.now()
	}
	w.phase.Store(1)
	start := time.Now()
	sleepCtx(ctx, d)
	w.phase.Store(2)
	elapsed := time.Since(start)
	if w.clock != nil {
		w.cpu = w.clock.now().since(c0)
	}
	return elapsed
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// loadResult is what one load run counted within its window.
type loadResult struct {
	ok, conflicts, other int
	elapsed              time.Duration
	latencies            []float64 // ms, of the successful operations
	firstOther           string    // the first unexpected answer, for the report
	cpu                  cpuUse    // the CPU time of the window, when its clock was set
}

// cpuPerOp is the CPU time of the harness and PostgreSQL in the window per
// successful operation, in microseconds (NaN without a clock or an
// operation).
func (l loadResult) cpuPerOp() float64 {
	if l.ok == 0 || l.cpu.Wall == 0 {
		return math.NaN()
	}
	return 1e6 * (l.cpu.Harness + l.cpu.PostgreSQL) / float64(l.ok)
}

func (l loadResult) rate() float64 { return PerSecond(l.ok, l.elapsed) }

// conflictRate is the share of answers that were 409.
func (l loadResult) conflictRate() float64 {
	return Ratio(float64(l.conflicts), float64(l.ok+l.conflicts+l.other))
}

// tally merges the counts of concurrent workers.
type tally struct {
	mu sync.Mutex
	loadResult
}

func (t *tally) add(w loadResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ok += w.ok
	t.conflicts += w.conflicts
	t.other += w.other
	t.latencies = append(t.latencies, w.latencies...)
	if t.firstOther == "" {
		t.firstOther = w.firstOther
	}
}

// newHTTPClient is a keep-alive client for many concurrent requests to one
// host.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// member is one client's view of the API: it joins States to its ISCM and
// has them leave again.
type member struct {
	http   *http.Client
	base   string
	token  string
	slug   string
	states []string
	idem   bool // send an Idempotency-Key with every write
}

// answer is what the API answered to one write.
type answer struct {
	status   int
	problem  string // the problem type's last path segment, on errors
	position string // Gcm-Position, on success
	detail   string
}

// write joins state to the client's ISCM, or has it leave.
func (m *member) write(ctx context.Context, state string, join bool) (answer, error) {
	var req *http.Request
	var err error
	if join {
		body := `{"state":"` + state + `","status":"member"}`
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, m.base+"/v1/iscms/"+m.slug+"/members", strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodDelete, m.base+"/v1/iscms/"+m.slug+"/members/"+state, nil)
	}
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+m.token)
	if m.idem {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, position: resp.Header.Get("Gcm-Position")}
	if resp.StatusCode >= 300 {
		var p struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(body, &p)
		a.problem = p.Type[strings.LastIndexByte(p.Type, '/')+1:]
		a.detail = p.Detail
	}
	return a, nil
}

// cycle makes one client's writes until the window is over: join a State,
// have it leave, go on with the next State. A 409 version conflict (another
// client moved the aggregate) is retried; a 409 state conflict corrects the
// client's idea of the membership.
func (m *member) cycle(ctx context.Context, w *window) loadResult {
	var res loadResult
	k, joined := 0, false
	for !w.over() && ctx.Err() == nil {
		state := m.states[k%len(m.states)]
		start := time.Now()
		a, err := m.write(ctx, state, !joined)
		counts := w.measuring()
		switch {
		case err != nil:
			if counts {
				res.other++
				if res.firstOther == "" {
					res.firstOther = err.Error()
				}
			}
			sleepCtx(ctx, 10*time.Millisecond)
		case a.status >= 200 && a.status < 300:
			if counts {
				res.ok++
				res.latencies = append(res.latencies, Millis(time.Since(start)))
			}
			if joined {
				k++
			}
			joined = !joined
		case a.status == http.StatusConflict:
			if counts {
				res.conflicts++
			}
			if a.problem == "state-conflict" {
				if joined {
					k++
				}
				joined = !joined
			}
		default:
			if counts {
				res.other++
				if res.firstOther == "" {
					res.firstOther = fmt.Sprintf("%d %s: %s", a.status, a.problem, a.detail)
				}
			}
			sleepCtx(ctx, 10*time.Millisecond)
		}
	}
	return res
}

// assignment is the ISCM a client writes to and the States it uses.
type assignment struct {
	slug   string
	states []string
}

// assign gives each of n clients an ISCM of the catalog, round robin, and
// the States it writes: clients sharing an ISCM take disjoint States.
func assign(cat *catalog.Catalog, n int) []assignment {
	out := make([]assignment, n)
	iscms := len(cat.ISCMs)
	for c := range n {
		share := (n - c%iscms + iscms - 1) / iscms // clients on this ISCM
		a := assignment{slug: cat.ISCMs[c%iscms].Slug}
		for j, country := range cat.Countries {
			if j%share == c/iscms {
				a.states = append(a.states, country.Alpha3)
			}
		}
		out[c] = a
	}
	return out
}

// driveAPI runs clients concurrent writers against the API for the window.
func driveAPI(ctx context.Context, clock *cpuClock, base, token string, clients int, d time.Duration, idem bool) loadResult {
	hc := newHTTPClient(clients)
	defer hc.CloseIdleConnections()
	w := window{clock: clock}
	var t tally
	var wg sync.WaitGroup
	for _, a := range assign(catalog.Default(), clients) {
		m := &member{http: hc, base: base, token: token, slug: a.slug, states: a.states, idem: idem}
		wg.Go(func() { t.add(m.cycle(ctx, &w)) })
	}
	t.elapsed = w.run(ctx, d)
	wg.Wait()
	t.cpu = w.cpu
	return t.loadResult
}

// driveRaw is the baseline of the append path: publishers concurrent
// JetStream publishes on one connection, each publisher on its own
// subject, with the headers the event store sets (event type, expected
// stream, Nats-Msg-Id, Nats-Expected-Last-Subject-Sequence chained from its
// own acks) and an envelope of the product's shape.
func driveRaw(ctx context.Context, clock *cpuClock, nc *nats.Conn, publishers int, d time.Duration) (loadResult, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return loadResult{}, err
	}
	if _, err := eventstore.Open(ctx, js, eventstore.Config{}); err != nil {
		return loadResult{}, err
	}
	w := window{clock: clock}
	var t tally
	var wg sync.WaitGroup
	for i := range publishers {
		id := fmt.Sprintf("raw-%02d", i)
		env, err := events.New(id, events.KindISCM, id, events.MemberJoined{State: "MEX", Status: events.StatusMember}, time.Now(), time.Now())
		if err != nil {
			return loadResult{}, err
		}
		env.Actor, env.CorrelationID = "token:"+uuid.NewString(), uuid.NewString()
		data, err := env.Marshal()
		if err != nil {
			return loadResult{}, err
		}
		wg.Go(func() {
			var res loadResult
			var last uint64
			for !w.over() && ctx.Err() == nil {
				msgID, _ := uuid.NewV7()
				msg := &nats.Msg{Subject: env.Subject(), Data: data, Header: nats.Header{}}
				msg.Header.Set(events.HeaderEventType, env.Type)
				start := time.Now()
				ack, err := js.PublishMsg(ctx, msg,
					jetstream.WithExpectStream(events.StreamName),
					jetstream.WithExpectLastSequencePerSubject(last),
					jetstream.WithMsgID(msgID.String()))
				counts := w.measuring()
				if err != nil {
					if counts {
						res.other++
						if res.firstOther == "" {
							res.firstOther = err.Error()
						}
					}
					continue
				}
				last = ack.Sequence
				if counts {
					res.ok++
					res.latencies = append(res.latencies, Millis(time.Since(start)))
				}
			}
			t.add(res)
		})
	}
	t.elapsed = w.run(ctx, d)
	wg.Wait()
	t.cpu = w.cpu
	return t.loadResult, nil
}

// appendVariant is one way of driving the API.
type appendVariant struct {
	path   string
	idem   bool // an Idempotency-Key on every request
	floor  bool // a server that only answers, instead of the API
	target Target
	note   string
}

// appendRows measures the append path against raw publishes, with fsync on
// every write and with the server's default, and (fsync always) once more
// with an Idempotency-Key on every request.
func (r *runner) appendRows(ctx context.Context) []Row {
	db, err := r.newAPIDatabase(ctx)
	if err != nil {
		return []Row{{Path: "append", Err: err.Error()}}
	}
	defer db.close()
	n := r.cfg.Clients
	var rows []Row
	for _, syncAlways := range []bool{true, false} {
		mode := "fsync default"
		if syncAlways {
			mode = "fsync always"
		}
		variants := []appendVariant{
			{path: fmt.Sprintf("append: HTTP join/leave, %d clients, %s", n, mode), target: AtLeast(0.60),
				note: "the API as `gcmtrack run --target api` builds it, on a fresh server per run; only 2xx count"},
		}
		if syncAlways {
			variants = append(variants, appendVariant{path: "append: same + Idempotency-Key, fsync always", idem: true,
				note: "a fresh Idempotency-Key on every request: a key-value create and update per write"})
		} else {
			variants = append(variants, appendVariant{path: "append: HTTP alone, same clients, a handler that only answers", floor: true,
				note: "no NATS, no validation, no store: a net/http server on 127.0.0.1 whose handler reads the body and answers as the API does; " +
					"what HTTP/1.1 request by request costs on this machine, the ceiling of any API that takes one write per request"})
		}
		results := make([][]loadResult, len(variants))
		cpus := make([][]cpuUse, len(variants))
		failures := make([]error, len(variants))
		var raw []loadResult
		var rawCPU []cpuUse
		var rawFailure error
		for i := range r.cfg.Reps {
			jobs := len(variants) + 1
			line := fmt.Sprintf("append %s %d/%d", mode, i+1, r.cfg.Reps)
			for k := range jobs {
				j := (i + k) % jobs
				c0 := r.cpu.now()
				if j == len(variants) {
					if rawFailure != nil {
						continue
					}
					res, err := r.appendRaw(ctx, syncAlways)
					if err != nil {
						rawFailure = fmt.Errorf("raw publishes: %w", err)
						continue
					}
					raw = append(raw, res)
					rawCPU = append(rawCPU, r.cpu.now().since(c0))
					line += fmt.Sprintf("; raw %s/s", FormatValue(res.rate()))
					continue
				}
				v := variants[j]
				if failures[j] != nil {
					continue
				}
				var res loadResult
				var err error
				if v.floor {
					res, err = r.appendFloor(ctx)
				} else {
					res, err = r.appendProduct(ctx, db, stackOptions{syncAlways: syncAlways}, v.idem)
				}
				if err != nil {
					failures[j] = err
					continue
				}
				results[j] = append(results[j], res)
				cpus[j] = append(cpus[j], r.cpu.now().since(c0))
				line += fmt.Sprintf("; %s: %s/s (409 %.1f%%, other answers %d)", strings.TrimPrefix(v.path, "append: "),
					FormatValue(res.rate()), 100*res.conflictRate(), res.other)
			}
			r.logf("%s", line)
		}
		for j, v := range variants {
			failure := failures[j]
			if failure == nil {
				failure = rawFailure
			}
			row := Row{
				Path: v.path, Unit: "writes/s", Target: v.target, Notes: []string{v.note},
				BaselineName: fmt.Sprintf("%d concurrent raw JetStream publishes on one in-process connection, each on its own subject, with the event store's headers "+
					"(Nats-Expected-Last-Subject-Sequence chained from own acks, Nats-Msg-Id), same durability, fresh server per run", n),
				Extra: map[string]any{"cpu_product": cpus[j], "cpu_raw": rawCPU},
			}
			if j > 0 {
				row.BaselineName = "the raw publishes of the " + mode + " rows (the same runs)"
			}
			if failure != nil {
				row.Err = failure.Error()
				rows = append(rows, row)
				continue
			}
			for _, res := range results[j] {
				row.Product = append(row.Product, res.rate())
			}
			for _, res := range raw {
				row.Baseline = append(row.Baseline, res.rate())
			}
			describeLoad(&row, results[j], raw)
			row.Notes = append(row.Notes, disturbance(cpus[j], rawCPU))
			rows = append(rows, row)
		}
		if !syncAlways && failures[0] == nil && failures[1] == nil && rawFailure == nil {
			rows = append(rows, appendCeiling(results[0], results[1], raw)...)
		}
	}
	for i, syncAlways := range []bool{true, false} {
		name := "cpu-append-fsync-always.pprof"
		if !syncAlways {
			name = "cpu-append-fsync-default.pprof"
		}
		if err := r.profile(name, func() error {
			_, err := r.appendProduct(ctx, db, stackOptions{syncAlways: syncAlways}, false)
			return err
		}); err != nil {
			// The fsync-default row follows the two fsync-always ones.
			row := 0
			if i == 1 && len(rows) > 2 {
				row = 2
			}
			rows[row].Err = "profile: " + err.Error()
		}
	}
	return rows
}

// appendCeiling compares the CPU time the product takes per write with the
// CPU time of its two unavoidable parts, each measured alone in the same
// repetitions: an HTTP request answered by a handler that does nothing
// (client and server) and a raw JetStream publish (publisher and server).
// Their sum bounds the writes a second any API taking one write per
// request can reach on this machine's cores; the second row sets that
// bound against the raw publishes. Both are CPU-bound only with the
// server's default fsync, where the clients keep the cores busy.
func appendCeiling(product, floor, raw []loadResult) []Row {
	n := min(len(product), len(floor), len(raw))
	cores := float64(runtime.NumCPU())
	cpuRow := Row{
		Path: "append, CPU per write in the window, fsync default: the API vs HTTP alone + a raw publish",
		Unit: "µs", BaselineName: "CPU per request of HTTP alone plus CPU per raw publish, each measured alone in the same repetition",
		Extra: map[string]any{},
	}
	ceilRow := Row{
		Path: fmt.Sprintf("append ceiling, fsync default: what the CPU of HTTP alone + a raw publish allows on %d cores", int(cores)),
		Unit: "writes/s", BaselineName: "the raw publishes of the fsync default rows (the same runs)",
		Extra: map[string]any{},
	}
	var httpUS, pubUS []float64
	for i := range n {
		api, h, p := product[i].cpuPerOp(), floor[i].cpuPerOp(), raw[i].cpuPerOp()
		if math.IsNaN(api) || math.IsNaN(h) || math.IsNaN(p) {
			continue
		}
		httpUS, pubUS = append(httpUS, h), append(pubUS, p)
		cpuRow.Product = append(cpuRow.Product, api)
		cpuRow.Baseline = append(cpuRow.Baseline, h+p)
		ceilRow.Product = append(ceilRow.Product, cores*1e6/(h+p))
		ceilRow.Baseline = append(ceilRow.Baseline, raw[i].rate())
	}
	if len(httpUS) == 0 {
		msg := "no repetition measured the CPU time of all three runs"
		return []Row{{Path: cpuRow.Path, Err: msg}, {Path: ceilRow.Path, Err: msg}}
	}
	cpuRow.Extra["http_alone_us"], cpuRow.Extra["raw_publish_us"] = httpUS, pubUS
	cpuRow.Notes = []string{fmt.Sprintf("HTTP alone %.0f µs a request, a raw publish %.0f µs (medians); the API's writes also validate, "+
		"load the aggregate, log, audit and are projected, all counted", Median(httpUS), Median(pubUS))}
	ceilRow.Notes = []string{"the cores divided by the CPU time of HTTP alone plus a raw publish: no API that takes one write per request " +
		"and publishes it reaches more here; where this ratio is below an append target, the target is out of reach on this machine"}
	return []Row{cpuRow, ceilRow}
}

// describeLoad adds the conflict rates, latencies and unexpected answers of
// load runs to a row.
func describeLoad(row *Row, prod, raw []loadResult) {
	var conflicts, p50, p99, rawP50, rawP99 []float64
	other, answers := 0, 0
	firstOther := ""
	for _, l := range prod {
		answers += l.ok + l.conflicts + l.other
		conflicts = append(conflicts, 100*l.conflictRate())
		p50 = append(p50, Percentile(l.latencies, 50))
		p99 = append(p99, Percentile(l.latencies, 99))
		other += l.other
		if firstOther == "" {
			firstOther = l.firstOther
		}
	}
	for _, l := range raw {
		rawP50 = append(rawP50, Percentile(l.latencies, 50))
		rawP99 = append(rawP99, Percentile(l.latencies, 99))
		other += l.other
		if firstOther == "" {
			firstOther = l.firstOther
		}
	}
	row.Extra["conflict_pct"] = conflicts
	row.Extra["latency_ms_p50"], row.Extra["latency_ms_p99"] = p50, p99
	row.Extra["raw_latency_ms_p50"], row.Extra["raw_latency_ms_p99"] = rawP50, rawP99
	row.Notes = append(row.Notes, fmt.Sprintf("409 answers: median %.2f%% of writes; latency median p50 %.1f ms, p99 %.1f ms (raw: p50 %.2f ms, p99 %.2f ms)",
		Median(conflicts), Median(p50), Median(p99), Median(rawP50), Median(rawP99)))
	if other > 0 {
		row.Notes = append(row.Notes, fmt.Sprintf("%d answers neither 2xx nor 409 (%.1f%% of the API's answers), first: %s",
			other, 100*Ratio(float64(other), float64(answers)), firstOther))
	}
}

// appendProduct runs the API on a fresh server and drives it.
func (r *runner) appendProduct(ctx context.Context, db *apiDatabase, o stackOptions, idem bool) (loadResult, error) {
	st, err := r.startStack(ctx, db, o)
	if err != nil {
		return loadResult{}, err
	}
	defer st.stop()
	res := driveAPI(ctx, &r.cpu, st.url, db.admin, r.cfg.Clients, r.cfg.AppendDuration, idem)
	if res.other > 0 {
		if e := st.firstError(); e != "" {
			res.firstOther += "; the API logged: " + e
		}
	}
	if res.ok+res.conflicts+res.other == 0 {
		return res, fmt.Errorf("the API answered nothing within %s", r.cfg.AppendDuration)
	}
	return res, nil
}

// appendFloor drives the same clients against an HTTP server that does
// nothing but answer: 201 with a position to a join, 200 to a leave.
func (r *runner) appendFloor(ctx context.Context) (loadResult, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, err
	}
	var position atomic.Uint64
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		pos := strconv.FormatUint(position.Add(1), 10)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Gcm-Position", pos)
		status := http.StatusOK
		if req.Method == http.MethodPost {
			status = http.StatusCreated
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"position":`+pos+`}`)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	res := driveAPI(ctx, &r.cpu, "http://"+ln.Addr().String(), "floor", r.cfg.Clients, r.cfg.AppendDuration, false)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return res, err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return res, err
	}
	if res.ok == 0 {
		return res, fmt.Errorf("the server answered nothing within %s; first error: %s", r.cfg.AppendDuration, res.firstOther)
	}
	return res, nil
}

// appendRaw runs the raw publishers on a fresh server.
func (r *runner) appendRaw(ctx context.Context, syncAlways bool) (loadResult, error) {
	node, err := r.env.startNATS("raw", false, syncAlways)
	if err != nil {
		return loadResult{}, err
	}
	defer node.close()
	res, err := driveRaw(ctx, &r.cpu, node.nc, r.cfg.Clients, r.cfg.AppendDuration)
	if err == nil && res.ok == 0 {
		err = fmt.Errorf("no publish succeeded; first error: %s", res.firstOther)
	}
	return res, err
}
