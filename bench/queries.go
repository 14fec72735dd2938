package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	projrecords "gcmtrack/projections/records"
)

// The query pairs: the read side must stay flat as the log grows. Each
// size gets a fresh stack (API and projector, as `gcmtrack run`), a stream
// of that many events drawn from the replay mix (so the records grow with
// it), the same set of published records and 2019 questionnaire answers
// written through the API, and then each endpoint is read by queryClients
// clients for queryWindow; the p99 counts.

const (
	queryClients  = 8
	queryWindow   = 2 * time.Second
	feedRecords   = 600
	answeredISCMs = 12
	queryWrites   = 20
	// deepFeedOffset is how many feed entries before the end the deep
	// feed page starts.
	deepFeedOffset = 1000
)

// queryStack is one size's stack with its data in place.
type queryStack struct {
	st      *apiStack
	db      *apiDatabase
	half    uint64 // a position halfway through, for as-of reads
	deep    string // a feed page deep in the stream
	deepPos int64  // the position its cursor names
	close   func()
}

func (r *runner) queryStack(ctx context.Context, events int) (*queryStack, error) {
	db, err := r.newAPIDatabase(ctx)
	if err != nil {
		return nil, err
	}
	st, err := r.startStack(ctx, db, stackOptions{engine: true, listen: true})
	if err != nil {
		db.close()
		return nil, err
	}
	q := &queryStack{st: st, db: db, close: func() { st.stop(); db.close() }}
	if _, err := generateHistory(ctx, st.node.nc, events, r.cfg.Seed); err != nil {
		q.close()
		return nil, fmt.Errorf("generate %d events: %w", events, err)
	}
	c := newHTTPClient(queryClients)
	call := func(method, path, body string) (map[string]any, error) {
		req, err := http.NewRequestWithContext(ctx, method, st.url+path, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+db.admin)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode/100 != 2 {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m, nil
	}
	catISCMs := []string{"puebla-process", "sacm", "cmc", "ocam", "rabat-process", "arcp", "igad-rcp", "igc", "eap-panel", "pafom", "abu-dhabi-dialogue", "colombo-process"}
	for i, slug := range catISCMs[:answeredISCMs] {
		body := fmt.Sprintf(`{"channel":"questionnaire","position":{"status":%q,"objectives":[%d,%d]},"agenda_item":"yes","action_plan":{"status":"not_known"},"capacity_building":[{"title":"w","form":"training_workshop"}],"partnerships":[{"partner":"IOM","category":"igo"}]}`,
			[]string{"yes", "no", "in_process"}[i%3], 1+i%23, 1+(i+5)%23)
		path := "/v1/iscms/" + slug + "/questionnaires/2019/questionnaire"
		if _, err := call("PUT", path, body); err != nil {
			q.close()
			return nil, err
		}
		if _, err := call("POST", path+"/publish", ""); err != nil {
			q.close()
			return nil, err
		}
	}
	var last uint64
	for i := range feedRecords {
		slug := catISCMs[i%len(catISCMs)]
		m, err := call("POST", "/v1/iscms/"+slug+"/resources", fmt.Sprintf(`{"kind":"human","description":"staff time %d"}`, i))
		if err != nil {
			q.close()
			return nil, err
		}
		base := "/v1/iscms/" + slug + "/resources/" + m["id"].(string)
		if _, err := call("POST", base+"/submit", ""); err != nil {
			q.close()
			return nil, err
		}
		m, err = call("POST", base+"/publish", "")
		if err != nil {
			q.close()
			return nil, err
		}
		last = uint64(m["position"].(float64))
	}
	if err := waitPosition(ctx, db, st.names, last, 5*time.Minute); err != nil {
		q.close()
		return nil, err
	}
	q.half = last / 2
	// A page deep in the stream: the feed's entries are in stream order,
	// the 600 records published through the API last; the page starts
	// deepFeedOffset entries before the feed's end (or halfway through a
	// short feed), among the bulk's publications, whose entries weigh
	// what the first page's do.
	var deep struct {
		pos            int64
		iscm, kind, id string
	}
	err = db.pool.QueryRow(ctx, `SELECT position, iscm, kind, id FROM records.feed
		ORDER BY position DESC, iscm || '/' || kind || '/' || id DESC
		OFFSET (SELECT least($1, count(*) / 2) FROM records.feed) LIMIT 1`, deepFeedOffset).Scan(&deep.pos, &deep.iscm, &deep.kind, &deep.id)
	if err != nil {
		q.close()
		return nil, fmt.Errorf("a cursor deep in the feed: %w", err)
	}
	q.deep = "/v1/feeds/published.json?limit=50&after=" + projrecords.FeedCursor(deep.pos, deep.iscm, deep.kind, deep.id)
	q.deepPos = deep.pos
	// Measure the steady state, not the aftermath of a bulk load: vacuum
	// and analyze what the load wrote, as autovacuum would in time (left
	// to it, a vacuum of the larger stack's tables ran during its
	// measurement and not during the smaller one's).
	if _, err := db.pool.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		q.close()
		return nil, fmt.Errorf("vacuum: %w", err)
	}
	// And write out what the load and the vacuum left dirty: otherwise the
	// checkpoint they call for comes during the first windows measured
	// (the objectives'), at the larger size more than the smaller.
	if err := r.env.cluster.Checkpoint(ctx); err != nil {
		q.close()
		return nil, err
	}
	return q, nil
}

// p99 reads one path with queryClients clients for queryWindow and returns
// the 99th percentile latency in ms and the number of requests served.
func p99(ctx context.Context, url string, headers map[string]string) (float64, int, int, error) {
	return p99Of(ctx, func() string { return url }, headers, queryWindow)
}

// p99Unkept is p99 for a feed page read from the read model every time:
// each request's URL differs by a parameter the API ignores, so none is
// answered from the pages the API keeps per URL.
func p99Unkept(ctx context.Context, url string) (float64, error) {
	var n atomic.Int64
	v, _, _, err := p99Of(ctx, func() string { return url + "&poll=" + strconv.FormatInt(n.Add(1), 10) }, nil, queryWindow)
	return v, err
}

// p99Of is p99 for the URLs next gives, one per request.
func p99Of(ctx context.Context, next func() string, headers map[string]string, window time.Duration) (float64, int, int, error) {
	c := newHTTPClient(queryClients)
	// One read before the window, then one more by every client at once:
	// the window measures the steady state of a polled endpoint, not the
	// first computation after a change (measured on its own by
	// readAfterWrite), nor the connections the first concurrent reads open
	// (the clients' to the API, the API's to PostgreSQL).
	if _, _, err := timedGet(ctx, c, next()); err != nil {
		return 0, 0, 0, err
	}
	warm := make(chan error, queryClients)
	for range queryClients {
		go func() {
			_, _, err := timedGet(ctx, c, next())
			warm <- err
		}()
	}
	for range queryClients {
		if err := <-warm; err != nil {
			return 0, 0, 0, err
		}
	}
	var mu sync.Mutex
	var lat []float64
	var notModified, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(window)
	var wg sync.WaitGroup
	for range queryClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				url := next()
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				for k, v := range headers {
					req.Header.Set(k, v)
				}
				t0 := time.Now()
				res, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				d := float64(time.Since(t0).Microseconds()) / 1000
				switch {
				case res.StatusCode == http.StatusNotModified:
					notModified.Add(1)
				case res.StatusCode != http.StatusOK:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %d", url, res.StatusCode))
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return 0, 0, 0, fmt.Errorf("%d failed reads, first: %v", failed.Load(), firstErr.Load())
	}
	return Percentile(lat, 99), len(lat), int(notModified.Load()), nil
}

// timedGet reads url once and returns how long it took and the length of
// its body.
func timedGet(ctx context.Context, c *http.Client, url string) (float64, int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	res, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %d", url, res.StatusCode)
	}
	if err != nil {
		return 0, 0, err
	}
	return float64(time.Since(t0).Microseconds()) / 1000, n, nil
}

// readAfterWrite times the objectives coverage read first after a write
// (with min_position, as a dashboard refreshing after an edit would): the
// reports' snapshot catches up with the write and the report is computed
// anew. The median of queryWrites such reads is returned.
func readAfterWrite(ctx context.Context, q *queryStack) (float64, error) {
	c := newHTTPClient(1)
	var lat []float64
	for i := range queryWrites {
		req, err := http.NewRequestWithContext(ctx, "POST", q.st.url+"/v1/iscms/puebla-process/resources", strings.NewReader(fmt.Sprintf(`{"kind":"human","description":"read after write %d"}`, i)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+q.db.admin)
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		var w struct {
			Position uint64 `json:"position"`
		}
		err = json.NewDecoder(res.Body).Decode(&w)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusCreated {
			return 0, fmt.Errorf("write before a read: %d %v", res.StatusCode, err)
		}
		d, _, err := timedGet(ctx, c, fmt.Sprintf("%s/v1/progress/objectives?min_position=%d", q.st.url, w.Position))
		if err != nil {
			return 0, err
		}
		lat = append(lat, d)
	}
	return Percentile(lat, 50), nil
}

// asOfFirstReads times the first read of the objectives coverage as of
// positions no read asked for before (each snapshot rebuilt from the
// history), at the given fractions of the stream, and returns the median.
func asOfFirstReads(ctx context.Context, q *queryStack, fractions []float64) (float64, error) {
	c := newHTTPClient(1)
	var lat []float64
	for _, f := range fractions {
		d, _, err := timedGet(ctx, c, fmt.Sprintf("%s/v1/progress/objectives?as_of_position=%d", q.st.url, uint64(f*float64(2*q.half))))
		if err != nil {
			return 0, err
		}
		lat = append(lat, d)
	}
	return Percentile(lat, 50), nil
}

// The positions as_of first reads ask for, as fractions of the stream.
var (
	earlyFractions = []float64{1. / 3, 1. / 4, 1. / 5, 1. / 6, 1. / 7}
	lateFractions  = []float64{0.8, 0.85, 0.9, 0.95, 0.99}
)

func fractionList(fs []float64) string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%.2f", f))
	}
	return strings.Join(out, ", ")
}

// queryRows measures the query pairs.
func (r *runner) queryRows(ctx context.Context) []Row {
	small, large := max(r.cfg.Events/10, 2000), r.cfg.Events
	paths := []struct{ name, path string }{
		{"objectives coverage", "/v1/progress/objectives"},
		{"review figures", "/v1/reports/figures?cycle=2018"},
		{"ISCM profile", "/v1/iscms/puebla-process"},
		{"States view", "/v1/progress/states"},
	}
	// The pairs with a target read an API process as a replica is
	// deployed (the child of the memory pair); the same endpoints read in
	// the harness's process, beside the embedded NATS server, the
	// projector and the load's clients (as `make run` runs, plus the
	// harness), are shown for information.
	rows, inproc := make([]Row, len(paths)), make([]Row, len(paths))
	for i, p := range paths {
		rows[i] = Row{Path: "query p99: " + p.name + " at N vs N/10", Unit: "ms", BaselineName: fmt.Sprintf("p99 of the same endpoint with %d events", small), Target: AtMost(1.5), Err: r.missingProduct()}
		inproc[i] = Row{Path: "query p99 in the harness's process: " + p.name + " at N vs N/10", Unit: "ms", BaselineName: fmt.Sprintf("the same with %d events", small)}
	}
	feed := Row{Path: "query p99: feed page deep in the stream vs first page", Unit: "ms", BaselineName: "p99 of the feed's first page (limit 50), same stack", Target: AtMost(1.5)}
	fresh := Row{Path: "query: objectives read first after a write at N vs N/10", Unit: "ms", BaselineName: fmt.Sprintf("the same with %d events", small)}
	asofFirst := Row{Path: "query: objectives as_of_position read first vs live read first after a write", Unit: "ms", BaselineName: "the live objectives read first after a write, same stack"}
	asofLate := Row{Path: "query: the same, as of positions late in the stream", Unit: "ms", BaselineName: "the live objectives read first after a write, same stack"}
	asof := Row{Path: "query p99: objectives as_of_position vs live", Unit: "ms", BaselineName: "p99 of the live objectives coverage, same stack", Target: AtMost(10)}
	public := Row{Path: "public read load: JSON feed first page", Unit: "req/s", BaselineName: "(informational)"}
	page := Row{Path: "public read load: objectives page (HTML, not signed in)", Unit: "req/s", BaselineName: "(informational)"}
	apiMem := Row{Path: "API memory: peak RSS serving the read load at N vs N/10", Unit: "MiB", Target: AtMost(1.3),
		BaselineName: fmt.Sprintf("peak RSS of the same API process over the stack of %d events", small), Err: r.missingProduct()}
	fail := func(err error) []Row {
		for i := range rows {
			rows[i].Err, inproc[i].Err = err.Error(), err.Error()
		}
		feed.Err, asof.Err, public.Err, fresh.Err, asofFirst.Err, asofLate.Err, page.Err = err.Error(), err.Error(), err.Error(), err.Error(), err.Error(), err.Error(), err.Error()
		if apiMem.Err == "" {
			apiMem.Err = err.Error()
		}
		return append(append(rows, inproc...), fresh, feed, asof, asofFirst, asofLate, public, page, apiMem)
	}
	sizes := make([][]string, len(paths)) // each endpoint's document, at each size
	for rep := range r.cfg.Reps {
		for _, size := range []int{small, large} {
			r.logf("queries %d/%d: building a stack of %d events", rep+1, r.cfg.Reps, size)
			q, err := r.queryStack(ctx, size)
			if err != nil {
				return fail(err)
			}
			for i, p := range paths {
				v, _, _, err := p99(ctx, q.st.url+p.path, nil)
				if err != nil {
					q.close()
					return fail(err)
				}
				if rep == 0 {
					_, n, err := timedGet(ctx, http.DefaultClient, q.st.url+p.path)
					if err != nil {
						q.close()
						return fail(err)
					}
					sizes[i] = append(sizes[i], fmt.Sprintf("%s bytes at %d events", FormatValue(float64(n)), size))
				}
				if size == large {
					inproc[i].Product = append(inproc[i].Product, v)
				} else {
					inproc[i].Baseline = append(inproc[i].Baseline, v)
				}
			}
			v, err := readAfterWrite(ctx, q)
			if err != nil {
				q.close()
				return fail(err)
			}
			if size == large {
				fresh.Product = append(fresh.Product, v)
				past, err := asOfFirstReads(ctx, q, earlyFractions)
				if err == nil {
					asofFirst.Product, asofFirst.Baseline = append(asofFirst.Product, past), append(asofFirst.Baseline, v)
					past, err = asOfFirstReads(ctx, q, lateFractions)
					asofLate.Product, asofLate.Baseline = append(asofLate.Product, past), append(asofLate.Baseline, v)
				}
				if err != nil {
					q.close()
					return fail(err)
				}
			} else {
				fresh.Baseline = append(fresh.Baseline, v)
			}
			if size == large {
				first, err := p99Unkept(ctx, q.st.url+"/v1/feeds/published.json?limit=50")
				if err == nil {
					var deep float64
					deep, err = p99Unkept(ctx, q.st.url+q.deep)
					feed.Product, feed.Baseline = append(feed.Product, deep), append(feed.Baseline, first)
					if rep == 0 {
						feed.Notes = append(feed.Notes, fmt.Sprintf("the deep page starts %d entries before the feed's end, after position %d of the stack's stream", deepFeedOffset, q.deepPos))
					}
				}
				if err == nil {
					var live, past float64
					live, _, _, err = p99(ctx, q.st.url+"/v1/progress/objectives", nil)
					if err == nil {
						past, _, _, err = p99(ctx, q.st.url+fmt.Sprintf("/v1/progress/objectives?as_of_position=%d", q.half), nil)
					}
					asof.Product, asof.Baseline = append(asof.Product, past), append(asof.Baseline, live)
				}
				if err == nil {
					err = r.publicLoad(ctx, q, "/v1/feeds/published.json?limit=50", &public)
				}
				if err == nil {
					err = r.publicLoad(ctx, q, "/objectives", &page)
				}
				if err == nil && rep == r.cfg.Reps-1 {
					err = r.profilePublic(ctx, q)
				}
				if err != nil {
					q.close()
					return fail(err)
				}
			}
			if apiMem.Err == "" {
				label := "tenth"
				if size == large {
					label = "n"
				}
				reads, err := r.apiMemory(ctx, q, label)
				switch {
				case err != nil:
					apiMem.Err = err.Error()
					for i := range rows {
						rows[i].Err = err.Error()
					}
				case size == large:
					apiMem.Product = append(apiMem.Product, reads.peakMiB)
					for i, p := range paths {
						rows[i].Product = append(rows[i].Product, reads.p99[p.path])
					}
				default:
					apiMem.Baseline = append(apiMem.Baseline, reads.peakMiB)
					for i, p := range paths {
						rows[i].Baseline = append(rows[i].Baseline, reads.p99[p.path])
					}
				}
			}
			q.close()
		}
	}
	public.Notes = append(public.Notes, fmt.Sprintf("%d clients polling the feed's first page for %s each repetition, half of them with If-None-Match (the feed's ETag)", 2*queryClients, queryWindow))
	for i := range rows {
		rows[i].Notes = append(rows[i].Notes, fmt.Sprintf("%d events of the replay mix at N, %d at N/10; each with %d published records and %d ISCMs' 2019 answers written through the API; each stack vacuumed, analyzed and checkpointed once built; "+
			"read from `gcmtrack run --target api` as a child process on the stack's NATS and database, as a replica is deployed (the API memory pair's process, in its first windows); %d clients for %s per endpoint, after one read and one more by each client that are not counted; rate limits off", large, small, feedRecords, answeredISCMs, queryClients, childWindow))
		if len(sizes[i]) > 0 {
			rows[i].Notes = append(rows[i].Notes, "document: "+strings.Join(sizes[i], ", "))
		}
		inproc[i].Notes = append(inproc[i].Notes, "the same stacks and clients, read from the API in the harness's process: beside the embedded NATS server (whose state of every subject the collector scans at N), the stack's projector and the load's clients")
	}
	feed.Notes = append(feed.Notes, "every request's URL differs by a parameter the API ignores (poll=n): each page is read from the read model and encoded, none comes from the pages the API keeps per URL until the read models move")
	fresh.Notes = append(fresh.Notes, fmt.Sprintf("median of %d reads, each right after a write through the API, one client; the other query rows read without writes, after one read that is not counted", queryWrites))
	asofFirst.Notes = append(asofFirst.Notes, fmt.Sprintf("median of %d reads as of positions no read asked for before, at %s of the stream, each snapshot rebuilt from the history (most records changed since: rebuilt forward); the p99 row above reads one position repeatedly, as a dashboard polling a past date does", len(earlyFractions), fractionList(earlyFractions)))
	asofLate.Notes = append(asofLate.Notes, fmt.Sprintf("median of %d reads as at %s of the stream (few records changed since: the live snapshot taken back)", len(lateFractions), fractionList(lateFractions)))
	page.Notes = append(page.Notes, fmt.Sprintf("%d clients reading the objectives page for %s each repetition, half of them with If-None-Match (the page's ETag)", 2*queryClients, queryWindow))
	apiMem.Notes = append(apiMem.Notes, fmt.Sprintf("`gcmtrack run --target api` as a child process on each query stack's NATS and database (its projector keeps the read models current), rate limits off; "+
		"read by %d clients for %s at each of %s and %s<halfway>, then %d writes each read back with min_position; peak RSS = the child's VmHWM from /proc when that is done",
		queryClients, childWindow, strings.Join(apiReadPaths, ", "), apiAsOfPath, queryWrites))
	return append(append(rows, inproc...), fresh, feed, asof, asofFirst, asofLate, public, page, apiMem)
}

// profilePublic profiles one more run of each public read load, not
// counted, when profiles are asked for.
func (r *runner) profilePublic(ctx context.Context, q *queryStack) error {
	for _, p := range []struct{ name, path string }{
		{"cpu-public-feed.pprof", "/v1/feeds/published.json?limit=50"},
		{"cpu-public-objectives.pprof", "/objectives"},
	} {
		if err := r.profile(p.name, func() error {
			var scratch Row
			return r.publicLoad(ctx, q, p.path, &scratch)
		}); err != nil {
			return fmt.Errorf("profile %s: %w", p.path, err)
		}
	}
	return nil
}

// publicLoad drives a public path (the feed's first page, a progress
// page) as hard as the harness can for queryWindow, half the clients
// repeating its ETag, and records the rate, the p99 and the share of 304
// answers.
func (r *runner) publicLoad(ctx context.Context, q *queryStack, path string, row *Row) error {
	url := q.st.url + path
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	etag := res.Header.Get("ETag")
	res.Body.Close()
	type out struct {
		p99     float64
		n, n304 int
		err     error
	}
	results := make(chan out, 2)
	for _, h := range []map[string]string{nil, {"If-None-Match": etag}} {
		go func() {
			p, n, n304, err := p99(ctx, url, h)
			results <- out{p, n, n304, err}
		}()
	}
	total, total304, worst := 0, 0, 0.0
	for range 2 {
		o := <-results
		if o.err != nil {
			return o.err
		}
		total, total304, worst = total+o.n, total304+o.n304, max(worst, o.p99)
	}
	row.Product = append(row.Product, PerSecond(total, queryWindow))
	row.Notes = append(row.Notes, fmt.Sprintf("repetition: %.0f req/s, p99 %.1f ms, %.0f%% answered 304 Not Modified", PerSecond(total, queryWindow), worst, 100*float64(total304)/float64(max(total, 1))))
	return nil
}
