package eventstore

// Backup and restore of the event stream, the system's source of truth.
//
// A backup file is gzip-compressed JSON Lines. The first line is a
// BackupHeader: the format and its version, the stream's name, the first
// and last positions, the number of messages and the SHA-256 of every line
// after the header. Each further line is one BackupMessage, in position
// order: its position, subject, stored time, headers and data. A backup is
// written in one pass over the stream with bounded memory; the header comes
// first all the same because the messages are compressed into a temporary
// file first and appended to the header as a second gzip member (a gzip
// reader reads the members as one stream).
//
// A restore republishes every message, in order, into a stream that has
// none, each with Nats-Expected-Last-Sequence set to the position before
// it: JetStream then stores it at exactly its old position or refuses it.

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
)

// Backup file format.
const (
	// BackupFormat names the format in a backup's header line.
	BackupFormat = "gcmtrack-stream-backup"
	// BackupVersion is the version of the format this code writes and reads.
	BackupVersion = 1
)

// Errors of restores.
var (
	// ErrStreamNotEmpty: a restore goes only into a stream without messages.
	ErrStreamNotEmpty = errors.New("the event stream is not empty")
	// ErrBadBackup: the file is not a complete, intact backup.
	ErrBadBackup = errors.New("invalid backup")
)

// BackupHeader is the first line of a backup file.
type BackupHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Stream  string `json:"stream"`
	// First and Last are the positions of the first and last message; both
	// are 0 for an empty stream.
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	// Count is the number of messages, Last-First+1 when the stream has no
	// gaps (it denies deletes, so it has none).
	Count uint64 `json:"count"`
	// Bytes is the uncompressed size of the message lines.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the message lines: every byte after the
	// header line.
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// BackupMessage is one stream message in a backup file.
type BackupMessage struct {
	Position uint64 `json:"position"`
	Subject  string `json:"subject"`
	// Time is when JetStream stored the message. A restore cannot carry it
	// over: restored messages are stamped with the time of the restore.
	Time    time.Time           `json:"time"`
	Headers map[string][]string `json:"headers,omitempty"`
	// Data holds the message's bytes when they are valid UTF-8 (events are
	// JSON, so always); DataBase64 holds them otherwise.
	Data       string `json:"data"`
	DataBase64 []byte `json:"data_base64,omitempty"`
}

// bytes returns the message's data as stored.
func (m BackupMessage) bytes() []byte {
	if m.DataBase64 != nil {
		return m.DataBase64
	}
	return []byte(m.Data)
}

// Progress reports how many of total messages a backup or restore has
// handled.
type Progress func(done, total uint64)

// BackupToFile writes every message of stream, up to its last position when
// the backup starts, to a new backup file at path (replaced atomically when
// complete). It reads the stream through an ordered consumer, which it
// deletes when done.
func BackupToFile(ctx context.Context, stream jetstream.Stream, path string, progress Progress) (BackupHeader, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return BackupHeader{}, fmt.Errorf("backup: stream info: %w", err)
	}
	h := BackupHeader{
		Format: BackupFormat, Version: BackupVersion, Stream: info.Config.Name,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if info.State.Msgs > 0 {
		h.First, h.Last = info.State.FirstSeq, info.State.LastSeq
	}

	dir := filepath.Dir(path)
	body, err := os.CreateTemp(dir, "."+filepath.Base(path)+".body-*")
	if err != nil {
		return BackupHeader{}, fmt.Errorf("backup: %w", err)
	}
	defer func() {
		body.Close()
		os.Remove(body.Name())
	}()
	// The messages: gzip(lines), hashed and counted before compression.
	sum := sha256.New()
	counter := &countingWriter{}
	zw := gzip.NewWriter(body)
	bw := bufio.NewWriterSize(io.MultiWriter(zw, sum, counter), 256<<10)
	if h.Last > 0 {
		if err := readMessages(ctx, stream, h.First, h.Last, func(m BackupMessage) error {
			line, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if _, err := bw.Write(append(line, '\n')); err != nil {
				return err
			}
			h.Count++
			if progress != nil {
				progress(m.Position-h.First+1, h.Last-h.First+1)
			}
			return nil
		}); err != nil {
			return BackupHeader{}, fmt.Errorf("backup: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return BackupHeader{}, fmt.Errorf("backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return BackupHeader{}, fmt.Errorf("backup: %w", err)
	}
	h.Bytes = counter.n
	h.SHA256 = hex.EncodeToString(sum.Sum(nil))

	// The file: gzip(header line), then the messages' gzip member as is.
	out, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return BackupHeader{}, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(out.Name()) // fails harmlessly once renamed
	err = writeBackupFile(out, body, h)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(out.Name(), path)
	}
	if err != nil {
		return BackupHeader{}, fmt.Errorf("backup: write %s: %w", path, err)
	}
	return h, nil
}

func writeBackupFile(out *os.File, body *os.File, h BackupHeader) error {
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	if _, err := zw.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(out, body); err != nil {
		return err
	}
	return out.Sync()
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// readMessages calls fn with every message of positions [from, to], in
// order, read through an ordered consumer that is deleted afterwards.
func readMessages(ctx context.Context, stream jetstream.Stream, from, to uint64, fn func(BackupMessage) error) error {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if info := cons.CachedInfo(); info != nil {
			_ = stream.DeleteConsumer(dctx, info.Name)
		}
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("next message: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		m := BackupMessage{Position: md.Sequence.Stream, Subject: msg.Subject(), Time: md.Timestamp.UTC()}
		if hdr := msg.Headers(); len(hdr) > 0 {
			m.Headers = hdr
		}
		if data := msg.Data(); utf8.Valid(data) {
			m.Data = string(data)
		} else {
			m.DataBase64 = data
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Position >= to {
			return nil
		}
	}
}

// backupReader reads a backup file: its header, then its messages, hashing
// the message lines as they go by.
type backupReader struct {
	f      *os.File
	zr     *gzip.Reader
	br     *bufio.Reader
	sum    hash.Hash
	n      int64
	header BackupHeader
}

func openBackup(path string) (*backupReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrBadBackup, path, err)
	}
	r := &backupReader{f: f, zr: zr, br: bufio.NewReaderSize(zr, 256<<10), sum: sha256.New()}
	line, err := r.br.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &r.header)
	}
	if err != nil {
		r.close()
		return nil, fmt.Errorf("%w: %s: header line: %w", ErrBadBackup, path, err)
	}
	if r.header.Format != BackupFormat {
		r.close()
		return nil, fmt.Errorf("%w: %s is not a GCM Tracker stream backup (format %q)", ErrBadBackup, path, r.header.Format)
	}
	if r.header.Version != BackupVersion {
		r.close()
		return nil, fmt.Errorf("%w: %s has format version %d; this binary reads version %d", ErrBadBackup, path, r.header.Version, BackupVersion)
	}
	return r, nil
}

// next returns the next message, or io.EOF after the last.
func (r *backupReader) next() (BackupMessage, error) {
	line, err := r.br.ReadBytes('\n')
	if len(line) == 0 && err != nil {
		if errors.Is(err, io.EOF) {
			return BackupMessage{}, io.EOF
		}
		return BackupMessage{}, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	if err != nil {
		return BackupMessage{}, fmt.Errorf("%w: the last line is cut short", ErrBadBackup)
	}
	r.sum.Write(line)
	r.n += int64(len(line))
	var m BackupMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return BackupMessage{}, fmt.Errorf("%w: line after position %d: %w", ErrBadBackup, r.n, err)
	}
	return m, nil
}

func (r *backupReader) close() {
	r.zr.Close()
	r.f.Close()
}

// VerifyBackup reads a backup file through and checks it: its header, the
// checksum of its messages, their number, and that their positions run
// from First to Last without a gap. It reports what the header says.
func VerifyBackup(path string) (BackupHeader, error) {
	r, err := openBackup(path)
	if err != nil {
		return BackupHeader{}, err
	}
	defer r.close()
	h := r.header
	var count, prev uint64
	for {
		m, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h, err
		}
		count++
		want := prev + 1
		if prev == 0 {
			want = h.First
		}
		if m.Position != want {
			if prev == 0 {
				return h, fmt.Errorf("%w: the first message is at position %d, the header says %d", ErrBadBackup, m.Position, h.First)
			}
			return h, fmt.Errorf("%w: position %d follows %d: a gap or a disorder", ErrBadBackup, m.Position, prev)
		}
		prev = m.Position
	}
	if got := hex.EncodeToString(r.sum.Sum(nil)); got != h.SHA256 || r.n != h.Bytes {
		return h, fmt.Errorf("%w: checksum mismatch: the messages hash to %s (%d bytes), the header says %s (%d bytes)", ErrBadBackup, got, r.n, h.SHA256, h.Bytes)
	}
	if count != h.Count || prev != h.Last {
		return h, fmt.Errorf("%w: %d messages up to position %d, the header says %d up to %d", ErrBadBackup, count, prev, h.Count, h.Last)
	}
	if h.Count > 0 && h.Count != h.Last-h.First+1 {
		return h, fmt.Errorf("%w: %d messages between positions %d and %d", ErrBadBackup, h.Count, h.First, h.Last)
	}
	return h, nil
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	Header BackupHeader
	// Restored is the number of messages published.
	Restored uint64
	// WithoutMsgID lists the positions whose Nats-Msg-Id repeated an
	// earlier message's within the stream's duplicate window during the
	// restore (JetStream would have dropped them as duplicates): they were
	// restored without that header. Normally empty.
	WithoutMsgID []uint64
}

// Restores publish restoreWindow messages before they wait for their
// acknowledgements (a cluster's round trips would otherwise bound the
// rate); restoreAttempts bounds the publishes of one message whose outcome
// was unknown (a time-out while the cluster elects a leader, say).
const (
	restoreWindow   = 256
	restoreAttempts = 10
)

// Restore verifies the backup at path and republishes its messages, in
// order, into the event stream, which it creates with cfg's settings if
// missing. It refuses a stream that holds messages or ever held any
// (ErrStreamNotEmpty). Each message is published expecting the stream's
// last position to be the one before it, and each acknowledgement must
// name the message's position in the backup, so positions come out
// identical; data and headers are copied byte for byte.
func Restore(ctx context.Context, js jetstream.JetStream, path string, cfg Config, progress Progress) (RestoreResult, error) {
	h, err := VerifyBackup(path)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	res := RestoreResult{Header: h}
	if h.Stream != events.StreamName {
		return res, fmt.Errorf("restore: the backup is of stream %q, this system's is %q", h.Stream, events.StreamName)
	}
	if h.Count > 0 && h.First != 1 {
		return res, fmt.Errorf("restore: %w: the backup starts at position %d; a restore reproduces positions from 1", ErrBadBackup, h.First)
	}
	if s, err := js.Stream(ctx, events.StreamName); err == nil {
		info, err := s.Info(ctx)
		if err != nil {
			return res, fmt.Errorf("restore: stream info: %w", err)
		}
		if info.State.Msgs > 0 || info.State.LastSeq > 0 {
			return res, fmt.Errorf("restore: %w: stream %s holds %d messages (last position %d)", ErrStreamNotEmpty, events.StreamName, info.State.Msgs, info.State.LastSeq)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return res, fmt.Errorf("restore: stream %s: %w", events.StreamName, err)
	}
	store, err := Open(ctx, js, cfg)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	r, err := openBackup(path)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer r.close()
	window := make([]BackupMessage, 0, restoreWindow)
	flush := func() error {
		dropped, err := store.restoreWindow(ctx, window)
		res.WithoutMsgID = append(res.WithoutMsgID, dropped...)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		res.Restored += uint64(len(window))
		window = window[:0]
		if progress != nil {
			progress(res.Restored, h.Count)
		}
		return nil
	}
	for {
		m, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		window = append(window, m)
		if len(window) == cap(window) {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if len(window) > 0 {
		if err := flush(); err != nil {
			return res, err
		}
	}
	// The file was verified before; check again what was read now.
	if got := hex.EncodeToString(r.sum.Sum(nil)); got != h.SHA256 || res.Restored != h.Count {
		return res, fmt.Errorf("restore: %w: the file changed while it was restored", ErrBadBackup)
	}
	return res, nil
}

// restoreWindow publishes the messages of a window without waiting, then
// checks their acknowledgements in order. From the first that is missing,
// refused or elsewhere than expected (each message expects the one before
// it, so the rest of the window fails with it), it goes on one message at
// a time, looking at the stream where an outcome is unknown. It returns the
// positions restored without their Nats-Msg-Id.
func (s *Store) restoreWindow(ctx context.Context, window []BackupMessage) ([]uint64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(window))
	for _, m := range window {
		f, err := s.js.PublishMsgAsync(restoreMsg(m, false), jetstream.WithExpectLastSequence(m.Position-1))
		if err != nil {
			break
		}
		futures = append(futures, f)
	}
	ok := 0
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
acks:
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate || ack.Sequence != window[i].Position {
				break acks
			}
			ok++
		case <-f.Err():
			break acks
		case <-timeout.C:
			break acks
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var dropped []uint64
	for _, m := range window[ok:] {
		d, err := s.restoreOne(ctx, m)
		if err != nil {
			return dropped, fmt.Errorf("position %d: %w", m.Position, err)
		}
		if d {
			dropped = append(dropped, m.Position)
		}
	}
	return dropped, nil
}

// restoreMsg is the message to publish for m, with or without its
// Nats-Msg-Id.
func restoreMsg(m BackupMessage, dropMsgID bool) *nats.Msg {
	msg := &nats.Msg{Subject: m.Subject, Data: m.bytes(), Header: nats.Header{}}
	for k, vs := range m.Headers {
		if dropMsgID && k == jetstream.MsgIDHeader {
			continue
		}
		msg.Header[k] = append([]string(nil), vs...)
	}
	return msg
}

// restoreOne publishes m at its position. It reports whether m had to be
// published without its Nats-Msg-Id.
func (s *Store) restoreOne(ctx context.Context, m BackupMessage) (bool, error) {
	dropMsgID := false
	for attempt := 1; ; attempt++ {
		// Already there? An earlier attempt, or the window's asynchronous
		// publish, may have stored it.
		if stored, err := s.storedAt(ctx, m); err == nil && stored {
			return dropMsgID, nil
		} else if err != nil && !errors.Is(err, errNotYet) {
			if errors.Is(err, errDiverged) || attempt >= restoreAttempts {
				return false, err
			}
			sleep(ctx, time.Duration(attempt)*250*time.Millisecond)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ack, err := s.js.PublishMsg(pctx, restoreMsg(m, dropMsgID), jetstream.WithExpectLastSequence(m.Position-1))
		cancel()
		switch {
		case err == nil && ack.Duplicate:
			// JetStream took the message for a retry of an earlier one
			// with the same id and stored nothing.
			if dropMsgID {
				return false, fmt.Errorf("refused as a duplicate even without its message id")
			}
			dropMsgID = true
			continue
		case err == nil && ack.Sequence != m.Position:
			return false, fmt.Errorf("stored at position %d", ack.Sequence)
		case err == nil:
			return dropMsgID, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence &&
			apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			return false, err
		}
		// The outcome is unknown (a time-out), or the expected position did
		// not match: the next round looks at the stream.
		if attempt >= restoreAttempts {
			return false, err
		}
		sleep(ctx, time.Duration(attempt)*250*time.Millisecond)
	}
}

// Answers of storedAt besides yes: errNotYet, the stream ends just before
// the message, which is not stored; errDiverged, the stream holds something
// else than the backup where the message should be, or ends earlier.
var (
	errNotYet   = errors.New("not stored yet")
	errDiverged = errors.New("the stream and the backup diverge: was something else writing to the stream?")
)

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// storedAt reports whether m is in the stream at its position (true), or
// whether the stream ends just before it (errNotYet). Another message at
// its position, or a stream that ends earlier, is errDiverged.
func (s *Store) storedAt(ctx context.Context, m BackupMessage) (bool, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := s.stream.Info(ictx)
	if err != nil {
		return false, err
	}
	switch last := info.State.LastSeq; {
	case last+1 == m.Position:
		return false, errNotYet
	case last >= m.Position:
		got, err := s.stream.GetMsg(ictx, m.Position)
		if err != nil {
			return false, err
		}
		if got.Subject != m.Subject || string(got.Data) != string(m.bytes()) {
			return false, fmt.Errorf("%w: position %d holds another message than the backup's", errDiverged, m.Position)
		}
		return true, nil
	default:
		return false, fmt.Errorf("%w: its last position is %d while restoring position %d", errDiverged, last, m.Position)
	}
}
