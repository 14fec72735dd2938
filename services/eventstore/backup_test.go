package eventstore_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

// newNATS starts an empty JetStream server, fsyncing as production does.
func newNATS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, nc := testenv.NATS(t, testenv.WithSyncAlways())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// content decodes a record's JSON as the API would.
func content[C events.Content](t *testing.T, js string) events.Content {
	t.Helper()
	var c C
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// writeHistory writes a realistic mix through the product's command
// services: the catalog's registrations, memberships coming and going,
// records of several kinds taken through their lifecycle and revised, and
// questionnaire answers.
func writeHistory(t *testing.T, store *eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	cat := catalog.Default()
	reg := registry.NewService(store, cat)
	rec := records.NewService(store, cat, reg)
	n := 0
	meta := func() command.Meta {
		n++
		return command.Meta{Actor: "token:backup-test", CorrelationID: fmt.Sprintf("c-%d", n), MsgID: fmt.Sprintf("backup-test-%d", n)}
	}
	must := func(res command.Result, err error) command.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if _, err := reg.RegisterCatalog(ctx, command.Meta{Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	var iscms []string
	for _, c := range cat.ISCMs[:12] {
		iscms = append(iscms, c.Slug)
	}
	states := []string{"MEX", "GTM", "HND", "SLV", "CRI", "PAN", "ARG", "BRA", "CHL", "COL", "ECU", "PER"}
	for i, slug := range iscms {
		for j, st := range states {
			status := events.StatusMember
			if (i+j)%4 == 0 {
				status = events.StatusObserver
			}
			must(reg.Join(ctx, slug, registry.AddMember{State: st, Status: status, Since: "2010-05-01"}, meta()))
		}
		must(reg.Leave(ctx, slug, states[len(states)-1-i], "2020-01-31", meta()))
		other := events.StatusObserver
		if i%4 == 0 {
			other = events.StatusMember
		}
		must(reg.Join(ctx, slug, registry.AddMember{State: states[0], Status: other}, meta())) // a status change
	}
	bodies := []events.Content{
		content[events.Activity](t, `{"kind":"capacity_building","form":"training_workshop","title":"Workshop on data","start_date":"2019-03-01","end_date":"2019-03-02","states":["MEX"],"objectives":[1],"principles":[9],"partners":["IOM"],"url":"https://example.org/w"}`),
		content[events.Partnership](t, `{"partner":"ECLAC","category":"un_regional_commission","nature":"data","since":"2018-01-01"}`),
		content[events.AgendaItem](t, `{"meeting":{"title":"Vice-ministerial meeting","date":"2019-06-12","place":"Guatemala City"},"standing":"standard","objectives":[1]}`),
		content[events.Submission](t, `{"forum":"gfmd","title":"Outcome","date":"2018-12-05"}`),
		content[events.ActionPlan](t, `{"status":"yes","title":"GCM action plan","period_from":"2020-01-01","period_to":"2022-12-31","objectives":[5,6],"milestones":[{"id":"m1","title":"Adopt"},{"id":"m2","title":"Review"}]}`),
		content[events.Position](t, `{"status":"in_process","themes":["T2"],"principles":[2],"objectives":[1,23]}`),
	}
	for i, slug := range iscms {
		for j, c := range bodies {
			res := must(rec.Create(ctx, slug, c, meta()))
			kind := c.RecordKind()
			if (i+j)%3 == 0 {
				continue // stays a draft
			}
			must(rec.Transition(ctx, slug, kind, res.ID, records.ActionSubmit, "", meta()))
			if (i+j)%3 == 1 {
				must(rec.Transition(ctx, slug, kind, res.ID, records.ActionPublish, "approved", meta()))
			}
			if kind == events.KindActivity {
				must(rec.Revise(ctx, slug, kind, res.ID, content[events.Activity](t, `{"kind":"capacity_building","form":"training_workshop","title":"Regional workshop on data","start_date":"2019-03-01","end_date":"2019-03-03","states":["MEX"],"objectives":[1,3],"principles":[9]}`), meta()))
			}
			if i == 3 && j == 1 {
				must(rec.Transition(ctx, slug, kind, res.ID, records.ActionWithdraw, "entered twice", meta()))
			}
		}
		var a events.Answers
		if err := json.Unmarshal([]byte(`{"channel":"questionnaire","submitted_on":"2018-09-30","position":{"status":"yes","themes":["T2","T4"],"principles":[2,4],"objectives":[1,2,23]},"agenda_item":"yes","capacity_building":[{"title":"Training on data","form":"training_workshop"}],"partnerships":[{"partner":"IOM","category":"igo"}],"hindering_factors":["resources"]}`), &a); err != nil {
			t.Fatal(err)
		}
		must(rec.Answer(ctx, slug, 2018, "questionnaire", a, false, meta())) // submitted at once
		if i%2 == 0 {
			must(rec.Transition(ctx, slug, events.KindQuestionnaire, events.QuestionnaireID(2018, "questionnaire"), records.ActionPublish, "", meta()))
		}
	}
}

// message is a stored message, as compared between two streams.
type message struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

func readStream(t *testing.T, js jetstream.JetStream) []message {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []message
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("position %d: %v", seq, err)
		}
		// A direct get adds where and when the message is stored; keep the
		// headers it was stored with.
		for _, k := range []string{"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending", "Nats-Last-Sequence"} {
			m.Header.Del(k)
		}
		out = append(out, message{Seq: m.Sequence, Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

// readModels rebuilds the registry and records projections from a stream
// into a fresh database and returns their contents.
func readModels(t *testing.T, js jetstream.JetStream) map[string]map[string][]string {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Up(ctx, pool, migrations.Engine()); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(pool, s, engine.Config{}, projregistry.Projection{}, projrecords.Projection{})
	if err := eng.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eng.Rebuild(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for _, name := range eng.Names() {
		c, err := engine.Contents(ctx, pool, name)
		if err != nil {
			t.Fatal(err)
		}
		rows := 0
		for _, r := range c {
			rows += len(r)
		}
		if len(c) == 0 || rows == 0 {
			t.Fatalf("projection %s has %d tables and %d rows: nothing to compare", name, len(c), rows)
		}
		out[name] = c
	}
	return out
}

func TestBackupRestoresIdenticalPositionsBytesAndReadModels(t *testing.T) {
	ctx := context.Background()
	src := newNATS(t)
	store, err := eventstore.Open(ctx, src, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	writeHistory(t, store)
	original := readStream(t, src)
	if len(original) < 300 {
		t.Fatalf("only %d events written", len(original))
	}
	// The event store's headers are stored with each message, and a backup
	// must carry them.
	if h := original[len(original)-1].Header; h.Get(jetstream.MsgIDHeader) == "" || h.Get(events.HeaderEventType) == "" {
		t.Fatalf("stored headers lack the message id or event type: %v", h)
	}

	file := filepath.Join(t.TempDir(), "gcm.backup.jsonl.gz")
	began := time.Now()
	var calls int
	h, err := eventstore.BackupToFile(ctx, store.Stream(), file, func(done, total uint64) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	backupTook := time.Since(began)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if h.Count != uint64(len(original)) || h.First != 1 || h.Last != uint64(len(original)) || calls != len(original) {
		t.Fatalf("header %+v after %d progress calls, want %d messages from 1", h, calls, len(original))
	}
	if _, err := eventstore.VerifyBackup(file); err != nil {
		t.Fatal(err)
	}

	dst := newNATS(t)
	began = time.Now()
	res, err := eventstore.Restore(ctx, dst, file, eventstore.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	restoreTook := time.Since(began)
	if res.Restored != h.Count || len(res.WithoutMsgID) != 0 {
		t.Fatalf("restore result %+v", res)
	}
	t.Logf("%d events: backup %d bytes (%d uncompressed) in %v, restore in %v",
		h.Count, st.Size(), h.Bytes, backupTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond))

	restored := readStream(t, dst)
	if len(restored) != len(original) {
		t.Fatalf("%d messages restored, want %d", len(restored), len(original))
	}
	for i, o := range original {
		r := restored[i]
		// The restore's own precondition is the one header it adds.
		if got := r.Header.Get(jetstream.ExpectedLastSeqHeader); got != fmt.Sprint(o.Seq-1) {
			t.Fatalf("position %d: %s = %q", o.Seq, jetstream.ExpectedLastSeqHeader, got)
		}
		r.Header.Del(jetstream.ExpectedLastSeqHeader)
		if r.Seq != o.Seq || r.Subject != o.Subject || !bytes.Equal(r.Data, o.Data) || !reflect.DeepEqual(r.Header, o.Header) {
			t.Fatalf("position %d differs after the restore:\n got %d %s %v %s\nwant %d %s %v %s", o.Seq, r.Seq, r.Subject, r.Header, r.Data, o.Seq, o.Subject, o.Header, o.Data)
		}
	}

	// Read models rebuilt from either stream are the same, table by table.
	want, got := readModels(t, src), readModels(t, dst)
	for name := range want {
		if d := engine.DiffContents(want[name], got[name], 10); d != nil {
			t.Errorf("%s read model differs after the restore:\n%s", name, strings.Join(d, "\n"))
		}
	}

	// A second restore finds the stream in use.
	if _, err := eventstore.Restore(ctx, dst, file, eventstore.Config{}, nil); !errors.Is(err, eventstore.ErrStreamNotEmpty) {
		t.Fatalf("restore into a stream with events: %v, want ErrStreamNotEmpty", err)
	}
	// Commands work on the restored stream: the aggregates' versions carried
	// over, so the next append's expected version matches.
	restoredStore, err := eventstore.Open(ctx, dst, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	res2, err := registry.NewService(restoredStore, catalog.Default()).Join(ctx, "sacm", registry.AddMember{State: "URY"}, command.Meta{Actor: "test"})
	if err != nil {
		t.Fatalf("a command on the restored stream: %v", err)
	}
	if res2.Position != h.Last+1 {
		t.Fatalf("the first event after the restore is at position %d, want %d", res2.Position, h.Last+1)
	}
}

// rewriteBackup decompresses a backup, lets edit change its message lines,
// and writes it back with a header that matches them (count, last position,
// size and checksum) when fixHeader is set, as a careful forger would.
func rewriteBackup(t *testing.T, from, to string, fixHeader bool, edit func(lines []string) []string) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 16<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var h eventstore.BackupHeader
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
		t.Fatal(err)
	}
	body := edit(lines[1:])
	var buf bytes.Buffer
	for _, l := range body {
		buf.WriteString(l + "\n")
	}
	if fixHeader {
		sum := sha256.Sum256(buf.Bytes())
		h.SHA256, h.Bytes, h.Count = hex.EncodeToString(sum[:]), int64(buf.Len()), uint64(len(body))
		var last eventstore.BackupMessage
		if err := json.Unmarshal([]byte(body[len(body)-1]), &last); err != nil {
			t.Fatal(err)
		}
		h.Last = last.Position
	}
	head, _ := json.Marshal(h)
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	zw.Write(append(head, '\n'))
	zw.Write(buf.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRefusesDamagedBackups(t *testing.T) {
	ctx := context.Background()
	src := newNATS(t)
	store, err := eventstore.Open(ctx, src, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.NewService(store, catalog.Default()).RegisterCatalog(ctx, command.Meta{Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gz")
	if _, err := eventstore.BackupToFile(ctx, store.Stream(), good, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		fixHeader bool
		edit      func([]string) []string
		want      string
	}{
		{"a changed byte", false, func(l []string) []string {
			l[3] = strings.Replace(l[3], "Process", "Progress", 1)
			return l
		}, "checksum mismatch"},
		{"a missing message", true, func(l []string) []string { return append(l[:5:5], l[6:]...) }, "gap"},
		{"messages out of order", true, func(l []string) []string { l[4], l[5] = l[5], l[4]; return l }, "gap or a disorder"},
		{"the end cut off", false, func(l []string) []string { return l[:len(l)-2] }, "checksum mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".gz")
			rewriteBackup(t, good, bad, c.fixHeader, c.edit)
			dst := newNATS(t)
			_, err := eventstore.Restore(ctx, dst, bad, eventstore.Config{}, nil)
			if !errors.Is(err, eventstore.ErrBadBackup) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore of a backup with %s: %v, want ErrBadBackup mentioning %q", c.name, err, c.want)
			}
			// Nothing was written: the file is checked before the stream is touched.
			if _, err := dst.Stream(ctx, events.StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Fatalf("the stream exists after a refused restore: %v", err)
			}
		})
	}
	// Truncated compressed bytes.
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.gz")
	if err := os.WriteFile(cut, b[:len(b)-20], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.VerifyBackup(cut); err == nil {
		t.Fatal("a truncated file verified")
	}
}

func TestRestoreKeepsAMessageWhoseIDRepeats(t *testing.T) {
	// Two events may share a message id when they were appended further
	// apart than the duplicate window; replayed within seconds, JetStream
	// would drop the second as a retry of the first.
	ctx := context.Background()
	src := newNATS(t)
	store, err := eventstore.Open(ctx, src, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.NewService(store, catalog.Default()).RegisterCatalog(ctx, command.Meta{Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, edited := filepath.Join(dir, "good.gz"), filepath.Join(dir, "edited.gz")
	if _, err := eventstore.BackupToFile(ctx, store.Stream(), good, nil); err != nil {
		t.Fatal(err)
	}
	rewriteBackup(t, good, edited, true, func(l []string) []string {
		var a, b eventstore.BackupMessage
		if err := json.Unmarshal([]byte(l[4]), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(l[5]), &b); err != nil {
			t.Fatal(err)
		}
		b.Headers[jetstream.MsgIDHeader] = a.Headers[jetstream.MsgIDHeader]
		line, _ := json.Marshal(b)
		l[5] = string(line)
		return l
	})
	res, err := eventstore.Restore(ctx, newNATS(t), edited, eventstore.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.WithoutMsgID, []uint64{6}) || res.Restored != res.Header.Count {
		t.Fatalf("restore result %+v, want every message restored and position 6 without its message id", res)
	}
}
