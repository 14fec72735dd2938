package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gcmtrack/events/catalog"
	"gcmtrack/services/idempotency"
)

// outcome is what a write finally got.
type outcome int

const (
	// unresolved: no definite answer before the write's deadline; its
	// event may or may not exist.
	unresolved outcome = iota
	// acked: a 2xx, with the position the event is at.
	acked
	// refused: a final 4xx; the write must have left no event.
	refused
)

// op is one logical write: the same request, with the same Idempotency-Key,
// sent until it gets a definite answer.
type op struct {
	n      int
	kind   string // join, leave, record, transition, answer
	key    string // the Idempotency-Key
	msgID  string // the Nats-Msg-Id the API derives from it
	method string
	path   string
	body   []byte
	lock   string // the aggregate it writes

	result   outcome
	status   int
	problem  string // the final problem's type and detail, for refusals
	position uint64
	id       string // of a created record
	attempts int
	// ambiguous: an attempt ended without a definite answer (transport
	// error, time-out, 5xx), so an earlier attempt may have been applied.
	ambiguous bool
	took      time.Duration
	done      func(*op) // updates the model, under its lock
}

// record is a record (or questionnaire) the load takes through its
// lifecycle.
type record struct {
	iscm    string
	segment string // activities, … ; "" for a questionnaire
	id      string
	cycle   int
	status  string
}

func (r *record) lock() string {
	if r.segment == "" {
		return fmt.Sprintf("q/%s/%d", r.iscm, r.cycle)
	}
	return "r/" + r.iscm + "/" + r.segment + "/" + r.id
}

func (r *record) base() string {
	if r.segment == "" {
		return fmt.Sprintf("/v1/iscms/%s/questionnaires/%d/questionnaire", r.iscm, r.cycle)
	}
	return "/v1/iscms/" + r.iscm + "/" + r.segment + "/" + r.id
}

// iscm is what the load knows for sure of an ISCM's membership: States
// whose joining was acknowledged, and every State it ever tried, which it
// never tries again (after an unanswered join it cannot know the state).
type iscm struct {
	slug    string
	members map[string]string
	tried   map[string]bool
}

// model is the load's view of the system, from acknowledged writes only.
// Writes to one aggregate are sent one at a time, so that refusals mean
// something: a write the model allows is refused only if the system is
// wrong or the model is uncertain (and then the aggregate is left alone).
type model struct {
	mu        sync.Mutex
	rng       *rand.Rand
	countries []string
	iscms     []*iscm
	records   []*record
	answers   map[string]*record // questionnaires by lock key
	busy      map[string]bool
	seq       int
	run       string
	actor     string
}

func newModel(cat *catalog.Catalog, seed uint64, run, actor string) *model {
	m := &model{rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), answers: map[string]*record{}, busy: map[string]bool{}, run: run, actor: actor}
	for _, c := range cat.Countries {
		m.countries = append(m.countries, c.Alpha3)
	}
	for _, c := range cat.ISCMs {
		m.iscms = append(m.iscms, &iscm{slug: c.Slug, members: map[string]string{}, tried: map[string]bool{}})
	}
	return m
}

// next chooses the next write and marks its aggregate busy; nil when
// nothing is possible right now.
func (m *model) next() *op {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range 20 {
		var o *op
		switch r := m.rng.IntN(100); {
		case r < 30:
			o = m.join()
		case r < 38:
			o = m.leave()
		case r < 65:
			o = m.create()
		case r < 90:
			o = m.transition()
		default:
			o = m.answer()
		}
		if o != nil {
			m.seq++
			o.n = m.seq
			o.key = fmt.Sprintf("chaos-%s-%d-%s", m.run, o.n, o.kind)
			o.msgID = idempotency.Key(m.actor, o.key)
			m.busy[o.lock] = true
			return o
		}
	}
	return nil
}

// finish records the outcome of o in the model and frees its aggregate.
func (m *model) finish(o *op) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.busy, o.lock)
	if o.done != nil {
		o.done(o)
	}
}

func (m *model) date(from, to int) string {
	y := from + m.rng.IntN(to-from+1)
	return fmt.Sprintf("%04d-%02d-%02d", y, 1+m.rng.IntN(12), 1+m.rng.IntN(28))
}

func (m *model) freeISCM() *iscm {
	for range 10 {
		c := m.iscms[m.rng.IntN(len(m.iscms))]
		if !m.busy["i/"+c.slug] {
			return c
		}
	}
	return nil
}

func (m *model) join() *op {
	c := m.freeISCM()
	if c == nil {
		return nil
	}
	var state string
	for range 10 {
		s := m.countries[m.rng.IntN(len(m.countries))]
		if !c.tried[s] {
			state = s
			break
		}
	}
	if state == "" {
		return nil
	}
	c.tried[state] = true
	status := "member"
	if m.rng.IntN(5) == 0 {
		status = "observer"
	}
	body, _ := json.Marshal(map[string]string{"state": state, "status": status, "since": m.date(1990, 2019)})
	return &op{kind: "join", method: http.MethodPost, path: "/v1/iscms/" + c.slug + "/members", body: body, lock: "i/" + c.slug,
		done: func(o *op) {
			if o.result == acked {
				c.members[state] = status
			}
		}}
}

func (m *model) leave() *op {
	c := m.freeISCM()
	if c == nil || len(c.members) == 0 {
		return nil
	}
	var state string
	for s := range c.members {
		state = s
		break
	}
	// Gone from the model whatever happens: a member whose leaving got no
	// answer is in an unknown state.
	delete(c.members, state)
	return &op{kind: "leave", method: http.MethodDelete, path: "/v1/iscms/" + c.slug + "/members/" + state + "?until=" + m.date(2020, 2024), lock: "i/" + c.slug}
}

// recordBodies are record contents by segment; %s is a title suffix.
var recordBodies = map[string][]string{
	"activities": {
		`{"kind":"capacity_building","form":"training_workshop","title":"Workshop on migration data %s","start_date":"2019-03-01","end_date":"2019-03-02","states":[],"objectives":[1,3],"principles":[9],"partners":["IOM"],"url":"https://example.org/w"}`,
		`{"kind":"data_exchange","title":"Exchange of labour migration statistics %s","start_date":"2021-05-10","states":[],"objectives":[1],"principles":[],"partners":[]}`,
		`{"kind":"awareness_raising","title":"Campaign on safe migration %s","start_date":"2022-09-01","end_date":"2022-12-01","states":[],"objectives":[3,7],"principles":[5],"partners":["UNHCR"]}`,
	},
	"partnerships": {
		`{"partner":"ECLAC %s","category":"un_regional_commission","nature":"data","since":"2018-01-01"}`,
		`{"partner":"IOM %s","category":"igo","nature":"technical secretariat","since":"2016-06-01"}`,
	},
	"agenda-items": {
		`{"meeting":{"title":"Vice-ministerial meeting %s","date":"2019-06-12","place":"Guatemala City"},"standing":"standard","objectives":[1]}`,
		`{"meeting":{"title":"Regional consultation %s","date":"2023-03-20"},"standing":"planned","objectives":[2,23]}`,
	},
	"submissions": {
		`{"forum":"gfmd","title":"Outcome %s","date":"2018-12-05"}`,
		`{"forum":"imrf","title":"Report to the IMRF %s","date":"2022-05-17","url":"https://example.org/o"}`,
	},
	"hindering-factors": {`{"factor":"resources","description":"Limited secretariat capacity %s"}`},
	"resources":         {`{"kind":"human","description":"Secretariat staff time %s"}`},
}

var segments = []string{"activities", "activities", "activities", "partnerships", "agenda-items", "submissions", "hindering-factors", "resources"}

func (m *model) create() *op {
	c := m.iscms[m.rng.IntN(len(m.iscms))]
	seg := segments[m.rng.IntN(len(segments))]
	bodies := recordBodies[seg]
	body := fmt.Sprintf(bodies[m.rng.IntN(len(bodies))], strconv.Itoa(m.seq+1))
	return &op{kind: "record", method: http.MethodPost, path: "/v1/iscms/" + c.slug + "/" + seg, body: []byte(body),
		lock: "new/" + strconv.Itoa(m.seq+1),
		done: func(o *op) {
			if o.result == acked && o.id != "" {
				m.records = append(m.records, &record{iscm: c.slug, segment: seg, id: o.id, status: "draft"})
			}
		}}
}

func (m *model) transition() *op {
	if len(m.records) == 0 {
		return nil
	}
	i := m.rng.IntN(len(m.records))
	r := m.records[i]
	if m.busy[r.lock()] {
		return nil
	}
	var action, next string
	switch r.status {
	case "draft":
		action, next = "submit", "submitted"
	case "submitted":
		action, next = "publish", "published"
	case "published":
		if m.rng.IntN(10) != 0 {
			return nil
		}
		action, next = "withdraw", "withdrawn"
	default:
		return nil
	}
	return &op{kind: "transition", method: http.MethodPost, path: r.base() + "/" + action, lock: r.lock(),
		done: func(o *op) {
			switch {
			case o.result == acked:
				r.status = next
			default:
				// Unknown state now: leave the record alone.
				r.status = "unknown"
			}
			if r.status == "withdrawn" || r.status == "unknown" {
				if j := indexOf(m.records, r); j >= 0 {
					m.records = append(m.records[:j], m.records[j+1:]...)
				}
			}
		}}
}

func indexOf(rs []*record, r *record) int {
	for i, x := range rs {
		if x == r {
			return i
		}
	}
	return -1
}

var answerBodies = []string{
	`{"channel":"questionnaire","submitted_on":"%d-09-30","position":{"status":"yes","themes":["T2","T4"],"principles":[2,4],"objectives":[1,2,23]},"agenda_item":"yes","capacity_building":[{"title":"Training on data","form":"training_workshop"}],"partnerships":[{"partner":"IOM","category":"igo"}],"hindering_factors":["resources"]}`,
	`{"channel":"questionnaire","submitted_on":"%d-10-15","position":{"status":"no","plans_refinement":true},"agenda_item":"planned","data_exchange":[{"title":"Statistics exchange"}],"hindering_factors":["no_mandate"]}`,
	`{"channel":"questionnaire","submitted_on":"%d-11-02","position":{"status":"in_process","themes":["T6"],"principles":[7],"objectives":[5,10]},"agenda_item":"not_known","sdg_practices":["Labour migration governance"]}`,
}

func (m *model) answer() *op {
	c := m.iscms[m.rng.IntN(len(m.iscms))]
	cycle := 2018 + m.rng.IntN(6)
	q := &record{iscm: c.slug, cycle: cycle}
	if old, ok := m.answers[q.lock()]; ok {
		if m.busy[old.lock()] || old.status != "submitted" {
			return nil // answers are replaced while submitted only
		}
		q = old
	}
	body := fmt.Sprintf(answerBodies[m.rng.IntN(len(answerBodies))], cycle)
	return &op{kind: "answer", method: http.MethodPut, path: q.base(), body: []byte(body), lock: q.lock(),
		done: func(o *op) {
			if o.result == acked {
				q.status = "submitted"
				if _, ok := m.answers[q.lock()]; !ok {
					m.answers[q.lock()] = q
					m.records = append(m.records, q)
				}
				return
			}
			q.status = "unknown"
			m.answers[q.lock()] = q
			if j := indexOf(m.records, q); j >= 0 {
				m.records = append(m.records[:j], m.records[j+1:]...)
			}
		}}
}

// loadGen sends the model's writes at a fixed rate and keeps every op.
type loadGen struct {
	model    *model
	apis     []string // base URLs
	token    string
	client   *http.Client
	rate     float64
	deadline time.Duration // per op
	inflight []atomic.Int64
	log      func(format string, args ...any)

	mu      sync.Mutex
	ops     []*op
	skipped int // ticks with nothing possible
	wg      sync.WaitGroup
}

func newLoadGen(m *model, apis []string, token string, rate float64, deadline time.Duration, log func(string, ...any)) *loadGen {
	return &loadGen{
		model: m, apis: apis, token: token, rate: rate, deadline: deadline, log: log,
		inflight: make([]atomic.Int64, len(apis)),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 10 * time.Second,
		}},
	}
}

// run starts a write every 1/rate seconds until ctx ends. Writes under way
// go on; wait waits for them.
func (l *loadGen) run(ctx, hard context.Context) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o := l.model.next()
		if o == nil {
			l.mu.Lock()
			l.skipped++
			l.mu.Unlock()
			continue
		}
		l.mu.Lock()
		l.ops = append(l.ops, o)
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.execute(hard, o)
			l.model.finish(o)
		}()
	}
}

// wait waits for the writes under way, each bounded by its deadline.
func (l *loadGen) wait() {
	l.wg.Wait()
}

// execute sends o until it gets a definite answer or its deadline passes,
// alternating between the APIs.
func (l *loadGen) execute(ctx context.Context, o *op) {
	start := time.Now()
	defer func() { o.took = time.Since(start) }()
	api := o.n % len(l.apis)
	backoff := 200 * time.Millisecond
	for {
		o.attempts++
		status, body, retryAfter, err := l.send(ctx, api, o)
		wait := backoff
		switch {
		case err != nil:
			o.ambiguous = true
		case status >= 200 && status < 300:
			var res struct {
				Position uint64 `json:"position"`
				ID       string `json:"id"`
			}
			if jerr := json.Unmarshal(body, &res); jerr != nil || res.Position == 0 {
				o.ambiguous = true // a 2xx without a position is not an answer
				break
			}
			o.result, o.status, o.position, o.id = acked, status, res.Position, res.ID
			return
		case status == http.StatusConflict && strings.Contains(string(body), "idempotency-in-progress"),
			status == http.StatusTooManyRequests:
			// Not an answer yet: the first attempt's claim is still held
			// (it goes stale after 30 s if its API died), or a rate limit.
			wait = max(wait, retryAfter)
		case status >= 500:
			o.ambiguous = true
		default:
			o.result, o.status = refused, status
			var p struct{ Type, Detail string }
			_ = json.Unmarshal(body, &p)
			o.problem = strings.TrimPrefix(p.Type, "https://gcmtrack.example/problems/") + ": " + p.Detail
			return
		}
		if time.Since(start)+wait > l.deadline || ctx.Err() != nil {
			o.result = unresolved
			if err != nil {
				o.problem = err.Error()
			} else {
				o.problem = fmt.Sprintf("last answer %d %s", status, bytes.TrimSpace(body))
			}
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 2*time.Second)
		api = (api + 1) % len(l.apis)
	}
}

func (l *loadGen) send(ctx context.Context, api int, o *op) (int, []byte, time.Duration, error) {
	l.inflight[api].Add(1)
	defer l.inflight[api].Add(-1)
	var body io.Reader
	if o.body != nil {
		body = bytes.NewReader(o.body)
	}
	req, err := http.NewRequestWithContext(ctx, o.method, l.apis[api]+o.path, body)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	req.Header.Set("Idempotency-Key", o.key)
	if o.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := l.client.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return 0, nil, 0, err
	}
	var retry time.Duration
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
		retry = time.Duration(s) * time.Second
	}
	return res.StatusCode, b, retry, nil
}

// snapshot copies the ops so far.
func (l *loadGen) snapshot() ([]*op, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*op(nil), l.ops...), l.skipped
}
