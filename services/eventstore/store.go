// Package eventstore keeps GCM Tracker's events in one NATS JetStream stream:
// it appends with optimistic concurrency (the expected last sequence of the
// aggregate's subject) and idempotency (Nats-Msg-Id), and loads an
// aggregate's events back. The stream sequence is the global position; an
// aggregate's version is the position of its last event.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"gcmtrack/events"
)

// Errors callers branch on.
var (
	// ErrConflict: the aggregate moved on since the version the command decided
	// on. The error is a *ConflictError carrying the current version.
	ErrConflict = errors.New("version conflict")
	// ErrUnavailable: the event store could not be reached in time.
	ErrUnavailable = errors.New("event store unavailable")
)

// ConflictError is returned when the expected version does not match.
type ConflictError struct {
	Subject string
	Current uint64 // the aggregate's version now; 0 when unknown
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: %s is at version %d", ErrConflict, e.Subject, e.Current)
}

// Unwrap lets errors.Is(err, ErrConflict) match.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Config sets up the stream.
type Config struct {
	// Replicas of the stream: 1 embedded, 3 in production.
	Replicas int
	// DuplicateWindow is how long JetStream remembers message ids. Longer
	// windows cost server memory; the services keep idempotency keys for a
	// day on their own and use this window only against concurrent retries.
	DuplicateWindow time.Duration
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Store appends and loads events.
type Store struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	metrics *metrics
}

// Open creates the stream, or updates its settings, and returns a store on it.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	sc := jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "GCM Tracker events: the source of truth",
		Subjects:    []string{events.SubjectWildcard},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		AllowDirect: true,
		DenyDelete:  true,
		DenyPurge:   true,
		Discard:     jetstream.DiscardNew,
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", sc.Name, err)
	}
	return &Store{js: js, stream: s, metrics: newMetrics(cfg.Registerer)}, nil
}

// Stream is the underlying JetStream stream, for readers that consume it.
func (s *Store) Stream() jetstream.Stream { return s.stream }

// Appended reports where an event landed.
type Appended struct {
	Position uint64
	// Duplicate is true when JetStream had already stored a message with the
	// same id: Position is then the original event's.
	Duplicate bool
}

// Append stores one event if its aggregate is still at expected (0 for a new
// aggregate). msgID, when not empty, makes a retried append a no-op within
// the stream's duplicate window.
func (s *Store) Append(ctx context.Context, env events.Envelope, expected uint64, msgID string) (Appended, error) {
	start := time.Now()
	data, err := env.Marshal()
	if err != nil {
		return Appended{}, fmt.Errorf("append %s: %w", env.Type, err)
	}
	subject := env.Subject()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderEventType, env.Type)
	opts := []jetstream.PublishOpt{
		jetstream.WithExpectStream(events.StreamName),
		jetstream.WithExpectLastSequencePerSubject(expected),
	}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := s.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			// JetStream checks the expected sequence before duplicates: a
			// retry of an append that went through conflicts with its own
			// first attempt. Recognise that case by the message id.
			if msgID != "" {
				if seq, hdr, err := s.lastOnLeader(ctx, subject); err == nil && hdr.Get(jetstream.MsgIDHeader) == msgID {
					return Appended{Position: seq, Duplicate: true}, nil
				}
			}
			s.metrics.conflicts.Inc()
			return Appended{}, &ConflictError{Subject: subject, Current: s.currentVersion(ctx, subject, apiErr.Description)}
		}
		s.metrics.errors.Inc()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrNoResponders) {
			return Appended{}, fmt.Errorf("append %s: %w: %w", env.Type, ErrUnavailable, err)
		}
		return Appended{}, fmt.Errorf("append %s: %w", env.Type, err)
	}
	s.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	if !ack.Duplicate {
		s.metrics.appends.WithLabelValues(env.Type).Inc()
	}
	return Appended{Position: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// currentVersion reads the version a conflict was against: from the error
// text JetStream sends ("wrong last sequence: N"), else from the stream.
func (s *Store) currentVersion(ctx context.Context, subject, desc string) uint64 {
	if i := strings.LastIndex(desc, ":"); i >= 0 {
		if n, err := strconv.ParseUint(strings.TrimSpace(desc[i+1:]), 10, 64); err == nil {
			return n
		}
	}
	v, err := s.Version(ctx, subject)
	if err != nil {
		return 0
	}
	return v
}

// Version is the position of the last event on subject, 0 if there is none.
func (s *Store) Version(ctx context.Context, subject string) (uint64, error) {
	seq, _, err := s.lastOnLeader(ctx, subject)
	if err != nil {
		return 0, fmt.Errorf("version of %s: %w", subject, err)
	}
	return seq, nil
}

// lastOnLeader asks the stream's leader for the last message of a subject:
// its position and headers (0 and nil when there is none). Commands decide
// on this version. A direct get may be answered by a replica that lags
// behind the leader after a fault, which would turn good commands into
// conflicts; the leader has every acknowledged write.
func (s *Store) lastOnLeader(ctx context.Context, subject string) (uint64, nats.Header, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return 0, nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+events.StreamName, req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, nil, fmt.Errorf("last message of %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return 0, nil, nil
	case resp.Error != nil:
		return 0, nil, fmt.Errorf("last message of %s: %s (%d)", subject, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, nil, fmt.Errorf("last message of %s: empty answer", subject)
	}
	var hdr nats.Header
	if len(resp.Message.Hdrs) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(resp.Message.Hdrs); err != nil {
			return 0, nil, fmt.Errorf("last message of %s: headers: %w", subject, err)
		}
	}
	return resp.Message.Seq, hdr, nil
}

// History is an aggregate's events, oldest first, and its version.
type History struct {
	Records []events.Record
	Version uint64
}

// Load reads every event of one aggregate.
func (s *Store) Load(ctx context.Context, iscm, kind, id string) (History, error) {
	recs, v, err := s.LoadFrom(ctx, iscm, kind, id, 1)
	return History{Records: recs, Version: v}, err
}

// LoadFrom reads an aggregate's events from position from on, and its
// version: a caller that holds the aggregate as of an earlier version reads
// only what came after.
func (s *Store) LoadFrom(ctx context.Context, iscm, kind, id string, from uint64) ([]events.Record, uint64, error) {
	start := time.Now()
	defer func() { s.metrics.loadSeconds.Observe(time.Since(start).Seconds()) }()
	subject := events.Subject(iscm, kind, id)
	version, _, err := s.lastOnLeader(ctx, subject)
	if err != nil {
		return nil, 0, fmt.Errorf("load %s: %w", subject, err)
	}
	if version == 0 {
		return nil, 0, nil
	}
	if from > version {
		return nil, version, nil
	}
	// Most aggregates hold a few events: one batched direct get reads them
	// without creating anything on the server.
	out, err := s.directBatch(ctx, subject, from, version)
	if err != nil {
		return nil, 0, fmt.Errorf("load %s: %w", subject, err)
	}
	// What the batch did not reach (a long history, or a replica behind the
	// leader) comes through an ordered consumer, which the leader serves and
	// which is removed when done. Per message, it costs the server and this
	// client less than direct gets, whose answers carry six more headers.
	if n := len(out); n == 0 || out[n-1].Position < version {
		next := from
		if n > 0 {
			next = out[n-1].Position + 1
		}
		err := s.readPending(ctx, []string{subject}, next, version, func(r events.Record, pending uint64) error {
			if len(out) == cap(out) {
				// The consumer says how many messages remain: room for
				// all of them at once (pending may count events appended
				// after version; the read stops at version).
				out = slices.Grow(out, int(min(pending, version-r.Position))+1)
			}
			out = append(out, r)
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("load %s: %w", subject, err)
		}
	}
	if n := len(out); n == 0 || out[n-1].Position != version {
		return nil, 0, fmt.Errorf("load %s: read stopped before version %d", subject, version)
	}
	return out, version, nil
}

// directBatchSize is how many messages one direct read asks for: enough
// for most aggregates. Longer histories continue through an ordered
// consumer, cheaper per message than further direct gets, so a larger batch
// would only slow them down.
const directBatchSize = 128

// numPendingHeader carries, on each message of a batched direct get, how
// many more messages match the request in the stream.
const numPendingHeader = "Nats-Num-Pending"

// directBatch reads up to directBatchSize messages of one subject from
// position from on, up to position to, with one batched direct get: no
// consumer is created, so loading aggregates leaves nothing behind on the
// server.
func (s *Store) directBatch(ctx context.Context, subject string, from, to uint64) ([]events.Record, error) {
	nc := s.js.Conn()
	inbox := nc.NewRespInbox()
	// A channel subscription sized for one batch and its end marker, so
	// nothing is dropped; SubscribeSync would allocate its default
	// 64k-message channel on every load.
	ch := make(chan *nats.Msg, directBatchSize+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(map[string]any{"seq": from, "next_by_subj": subject, "batch": directBatchSize})
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+events.StreamName, inbox, req); err != nil {
		return nil, err
	}
	var out []events.Record
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		var msg *nats.Msg
		select {
		case msg = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout.C:
			return nil, fmt.Errorf("direct get: %w", ErrUnavailable)
		}
		if n, _ := sub.Dropped(); n > 0 {
			return nil, fmt.Errorf("direct get: %d messages dropped", n)
		}
		switch st := msg.Header.Get("Status"); st {
		case "":
		case "204": // end of batch
			return out, nil
		case "404":
			return out, nil
		default:
			return nil, fmt.Errorf("direct get: status %s %s", st, msg.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("direct get: sequence header %q", msg.Header.Get(jetstream.SequenceHeader))
		}
		env, err := events.Unmarshal(msg.Data)
		if err != nil {
			return nil, fmt.Errorf("position %d: %w", seq, err)
		}
		if out == nil {
			// The first answer says how many more match: size the
			// result for them, and for what a consumer will add.
			pending, _ := strconv.ParseUint(msg.Header.Get(numPendingHeader), 10, 64)
			out = make([]events.Record, 0, int(min(pending, to-seq))+1)
		}
		out = append(out, events.Record{Position: seq, Subject: subject, Envelope: env})
		if seq >= to {
			// Drain nothing more: the batch may hold later messages the
			// caller did not ask for; the unsubscribe drops them.
			return out, nil
		}
	}
}

// LastPosition is the stream's last sequence.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// ReadAll calls fn for every event from position from (1 for all) up to the
// stream's last position when the call starts.
func (s *Store) ReadAll(ctx context.Context, from uint64, fn func(events.Record) error) error {
	last, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	if from == 0 {
		from = 1
	}
	if last < from {
		return nil
	}
	return s.read(ctx, nil, from, last, fn)
}

// read delivers the messages on subjects (all when nil) with sequence in
// [from, to] through an ordered consumer, which keeps no server state.
func (s *Store) read(ctx context.Context, subjects []string, from, to uint64, fn func(events.Record) error) error {
	return s.readPending(ctx, subjects, from, to, func(r events.Record, _ uint64) error { return fn(r) })
}

// readPending is read that also tells fn how many messages on subjects the
// stream holds after each one.
func (s *Store) readPending(ctx context.Context, subjects []string, from, to uint64, fn func(r events.Record, pending uint64) error) error {
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer func() {
		// Ordered consumers outlive their reader on the server for their
		// inactivity threshold; remove this one now.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if info := cons.CachedInfo(); info != nil {
			_ = s.stream.DeleteConsumer(dctx, info.Name)
		}
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	// This goroutine takes messages off the consumer while a second one
	// decodes the earlier ones and hands them to fn, in order: decoding a
	// long history no longer waits for its reading, nor reading for it.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type message struct {
		data             []byte
		subject          string
		position, remain uint64
	}
	msgs := make(chan message, 256)
	decoded := make(chan error, 1)
	go func() {
		var err error
		for m := range msgs {
			if err != nil || rctx.Err() != nil {
				continue // drain what the reader sent before it saw the cancel
			}
			var env events.Envelope
			if env, err = events.Unmarshal(m.data); err != nil {
				err = fmt.Errorf("position %d: %w", m.position, err)
			} else {
				err = fn(events.Record{Position: m.position, Subject: m.subject, Envelope: env}, m.remain)
			}
			if err != nil {
				cancel()
			}
		}
		decoded <- err
	}()
	readErr := func() (err error) {
		defer func() {
			if err != nil {
				cancel() // the decoder hands fn nothing more
			}
			close(msgs)
		}()
		for {
			if err := rctx.Err(); err != nil {
				return err
			}
			msg, err := it.Next(jetstream.NextContext(rctx))
			if err != nil {
				return fmt.Errorf("next: %w", err)
			}
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("message metadata: %w", err)
			}
			select {
			case msgs <- message{data: msg.Data(), subject: msg.Subject(), position: md.Sequence.Stream, remain: md.NumPending}:
			case <-rctx.Done():
				return rctx.Err()
			}
			if md.Sequence.Stream >= to {
				return nil
			}
		}
	}()
	// The decoder's error explains a cancel the reader only saw.
	if err := <-decoded; err != nil {
		return err
	}
	return readErr
}

// Decode turns a stream message into a record.
func Decode(msg jetstream.Msg) (events.Record, error) {
	md, err := msg.Metadata()
	if err != nil {
		return events.Record{}, fmt.Errorf("message metadata: %w", err)
	}
	return decode(msg, md)
}

// decode turns a stream message, whose metadata the caller has read, into
// a record.
func decode(msg jetstream.Msg, md *jetstream.MsgMetadata) (events.Record, error) {
	env, err := events.Unmarshal(msg.Data())
	if err != nil {
		return events.Record{}, fmt.Errorf("position %d: %w", md.Sequence.Stream, err)
	}
	return events.Record{Position: md.Sequence.Stream, Subject: msg.Subject(), Envelope: env}, nil
}

// PositionAt is the position of the last event stored at or before t (0 if
// none): JetStream stamps every message at commit, in position order, so a
// binary search over positions finds it in a few reads.
func (s *Store) PositionAt(ctx context.Context, t time.Time) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	lo, hi := info.State.FirstSeq, info.State.LastSeq
	if hi == 0 || info.State.LastTime.IsZero() {
		return 0, nil
	}
	if !info.State.LastTime.After(t) {
		return hi, nil
	}
	if info.State.FirstTime.After(t) {
		return 0, nil
	}
	// Invariant: the message at lo is at or before t; the one at hi after.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		m, err := s.stream.GetMsg(ctx, mid)
		if err != nil {
			return 0, fmt.Errorf("position at %s: %w", t.Format(time.RFC3339), err)
		}
		if m.Time.After(t) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo, nil
}

// Last is the position and message id of the last event on subject (0 and
// "" when there is none), as the stream leader holds them.
func (s *Store) Last(ctx context.Context, subject string) (uint64, string, error) {
	seq, hdr, err := s.lastOnLeader(ctx, subject)
	if err != nil {
		return 0, "", err
	}
	return seq, hdr.Get(jetstream.MsgIDHeader), nil
}
