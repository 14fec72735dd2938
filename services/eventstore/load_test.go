package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
)

// fillInterleaved publishes n events on the aggregate of slug, each followed
// by one on another aggregate, and returns the aggregate's version. The
// aggregate's i-th event is MemberJoined of State S%05d.
func fillInterleaved(tb testing.TB, s *Store, slug string, n int) uint64 {
	tb.Helper()
	ctx := context.Background()
	js, err := jetstream.New(s.js.Conn(), jetstream.WithPublishAsyncMaxPending(512))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		for _, iscm := range []string{slug, fmt.Sprintf("other%d", i%29)} {
			env, err := events.New(iscm, events.KindISCM, iscm, events.MemberJoined{State: fmt.Sprintf("S%05d", i), Status: events.StatusMember}, time.Time{}, now)
			if err != nil {
				tb.Fatal(err)
			}
			env.Actor = "test"
			data, err := env.Marshal()
			if err != nil {
				tb.Fatal(err)
			}
			msg := &nats.Msg{Subject: env.Subject(), Data: data, Header: nats.Header{}}
			msg.Header.Set(events.HeaderEventType, env.Type)
			if _, err := js.PublishMsgAsync(msg); err != nil {
				tb.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		tb.Fatal("publish timed out")
	}
	v, err := s.Version(ctx, events.Subject(slug, events.KindISCM, slug))
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func BenchmarkLoad10000(b *testing.B) {
	s := openStore(b)
	fillInterleaved(b, s, "big", 10000)
	ctx := context.Background()
	b.Run("store", func(b *testing.B) {
		for b.Loop() {
			h, err := s.Load(ctx, "big", events.KindISCM, "big")
			if err != nil || len(h.Records) != 10000 {
				b.Fatal(len(h.Records), err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.Subject("big", events.KindISCM, "big")}})
			if err != nil {
				b.Fatal(err)
			}
			it, err := cons.Messages(jetstream.PullMaxMessages(1000))
			if err != nil {
				b.Fatal(err)
			}
			for {
				msg, err := it.Next(jetstream.NextContext(ctx))
				if err != nil {
					b.Fatal(err)
				}
				md, err := msg.Metadata()
				if err != nil {
					b.Fatal(err)
				}
				if md.NumPending == 0 {
					break
				}
			}
			it.Stop()
			b.StopTimer()
			_ = s.stream.DeleteConsumer(ctx, cons.CachedInfo().Name)
			b.StartTimer()
		}
	})
}

// checkHistory fails unless recs are the aggregate's events first..n-1 as
// fillInterleaved wrote them, in order.
func checkHistory(t *testing.T, recs []events.Record, subject string, first, n int) {
	t.Helper()
	if len(recs) != n-first {
		t.Fatalf("loaded %d events, want %d", len(recs), n-first)
	}
	for i, r := range recs {
		if r.Subject != subject {
			t.Fatalf("event %d on %s, want %s", i, r.Subject, subject)
		}
		if i > 0 && r.Position <= recs[i-1].Position {
			t.Fatalf("positions out of order: %d after %d", r.Position, recs[i-1].Position)
		}
		p, err := events.Decode(r.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.(events.MemberJoined).State, fmt.Sprintf("S%05d", first+i); got != want {
			t.Fatalf("event %d: State %s, want %s", first+i, got, want)
		}
	}
}

// Histories around the direct batch's size and the consumer's pull size,
// interleaved with other aggregates, load whole and in order, from the
// start and from positions in their middle.
func TestLoadAcrossBatchBoundaries(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for _, n := range []int{1, directBatchSize - 1, directBatchSize, directBatchSize + 1, 1000 + directBatchSize + 1, 2500} {
		slug := fmt.Sprintf("agg%d", n)
		subject := events.Subject(slug, events.KindISCM, slug)
		v := fillInterleaved(t, s, slug, n)
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h, err := s.Load(ctx, slug, events.KindISCM, slug)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != v {
				t.Fatalf("version %d, want %d", h.Version, v)
			}
			checkHistory(t, h.Records, subject, 0, n)
			for _, k := range []int{n / 2, n - 1, directBatchSize, directBatchSize + 1} {
				if k >= n {
					continue
				}
				// From the k-th event's position, and from the position
				// just before it, which another aggregate holds.
				for _, from := range []uint64{h.Records[k].Position, h.Records[k].Position - 1} {
					if k > 0 && from == h.Records[k-1].Position {
						continue
					}
					recs, ver, err := s.LoadFrom(ctx, slug, events.KindISCM, slug, from)
					if err != nil {
						t.Fatal(err)
					}
					if ver != v {
						t.Fatalf("from %d: version %d, want %d", from, ver, v)
					}
					checkHistory(t, recs, subject, k, n)
				}
			}
			recs, ver, err := s.LoadFrom(ctx, slug, events.KindISCM, slug, v+1)
			if err != nil || len(recs) != 0 || ver != v {
				t.Fatalf("from past the version: %d events at version %d, %v", len(recs), ver, err)
			}
		})
	}
	info, err := s.Stream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left on the stream after loads", info.State.Consumers)
	}
}

// A load returns the history up to the version it read first, even while
// the aggregate grows under it.
func TestLoadWhileAppending(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	const n = 1500
	fillInterleaved(t, s, "grow", n)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			env, err := events.New("grow", events.KindISCM, "grow", events.MemberJoined{State: fmt.Sprintf("S%05d", n+i), Status: events.StatusMember}, time.Time{}, time.Now())
			var v uint64
			if err == nil {
				v, err = s.Version(ctx, env.Subject())
			}
			if err == nil {
				env.Actor = "test"
				_, err = s.Append(ctx, env, v, "")
			}
			if err != nil && !errors.Is(err, ErrConflict) {
				done <- err
				return
			}
		}
	}()
	for range 10 {
		h, err := s.Load(ctx, "grow", events.KindISCM, "grow")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(h.Records); h.Records[n-1].Position != h.Version {
			t.Fatalf("history ends at %d, version %d", h.Records[n-1].Position, h.Version)
		}
		checkHistory(t, h.Records, events.Subject("grow", events.KindISCM, "grow"), 0, len(h.Records))
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLoadStopsAtAnUndecodableEvent: a message the store cannot decode,
// past the direct batch (so on the consumer path, where reading and
// decoding run side by side), fails the load with its position; an error
// of the reader's callback stops a full read and is returned as it is.
func TestLoadStopsAtAnUndecodableEvent(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	fillInterleaved(t, s, "long", 2*directBatchSize)
	subject := events.Subject("long", events.KindISCM, "long")
	ack, err := s.js.Publish(ctx, subject, []byte("not an envelope"))
	if err != nil {
		t.Fatal(err)
	}
	fillInterleaved(t, s, "long", 10)
	_, err = s.Load(ctx, "long", events.KindISCM, "long")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("position %d", ack.Sequence)) {
		t.Fatalf("load over an undecodable event at %d: %v", ack.Sequence, err)
	}

	stop := errors.New("enough")
	seen := 0
	err = s.ReadAll(ctx, 1, func(events.Record) error {
		seen++
		if seen == 100 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 100 {
		t.Fatalf("read stopped by its callback after %d records: %v", seen, err)
	}
}
