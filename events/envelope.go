package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	fastjson "github.com/segmentio/encoding/json"
)

// Stream naming shared by the event store and the projectors.
const (
	// StreamName is the JetStream stream that holds every event.
	StreamName = "GCM"
	// SubjectPrefix starts every event subject.
	SubjectPrefix = "gcm.events"
	// SubjectWildcard matches every event subject.
	SubjectWildcard = SubjectPrefix + ".>"
	// SystemTenant is the tenant token of facts owned by no single ISCM.
	SystemTenant = "_system"
	// HeaderEventType is the message header that carries the envelope's
	// type, so readers can skip events without decoding them.
	HeaderEventType = "Gcm-Event-Type"
)

// Envelope is one event as stored: who did what to which aggregate, when, and
// the payload that says what happened.
type Envelope struct {
	ID            uuid.UUID       `json:"id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	AggregateKind string          `json:"aggregate_kind"`
	AggregateID   string          `json:"aggregate_id"`
	ISCM          string          `json:"iscm"`
	OccurredAt    time.Time       `json:"occurred_at"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Actor         string          `json:"actor"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	CausationID   string          `json:"causation_id,omitempty"`
	Payload       json.RawMessage `json:"payload"`
}

// Record is an envelope read back from the stream with the position the
// stream assigned to it. Position is the global order; an aggregate's version
// is the position of its last event.
type Record struct {
	Position uint64
	Subject  string
	Envelope
}

// Subject is where the envelope's aggregate lives in the stream.
func (e Envelope) Subject() string {
	return Subject(e.ISCM, e.AggregateKind, e.AggregateID)
}

// Subject builds the stream subject of one aggregate.
func Subject(iscm, kind, id string) string {
	return SubjectPrefix + "." + iscm + "." + kind + "." + id
}

// ErrBadToken reports a subject token that NATS cannot carry.
var ErrBadToken = errors.New("invalid subject token")

// ValidToken reports whether s can be one token of a subject: non-empty,
// printable ASCII without '.', '*', '>' or whitespace.
func ValidToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '.' || r == '*' || r == '>' {
			return false
		}
	}
	return true
}

// New builds an envelope around a payload, encoding it at its type's current
// schema version. The caller sets Actor, CorrelationID and CausationID.
func New(iscm, kind, id string, p Payload, occurredAt, now time.Time) (Envelope, error) {
	for _, tok := range []string{iscm, kind, id} {
		if !ValidToken(tok) {
			return Envelope{}, fmt.Errorf("new event %s: %w: %q", p.EventType(), ErrBadToken, tok)
		}
	}
	t, ok := lookup(p.EventType())
	if !ok {
		return Envelope{}, fmt.Errorf("new event: %w: %s", ErrUnknownType, p.EventType())
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return Envelope{}, fmt.Errorf("new event %s: encode payload: %w", p.EventType(), err)
	}
	evID, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event %s: id: %w", p.EventType(), err)
	}
	if occurredAt.IsZero() {
		occurredAt = now
	}
	return Envelope{
		ID:            evID,
		Type:          p.EventType(),
		SchemaVersion: t.version,
		AggregateKind: kind,
		AggregateID:   id,
		ISCM:          iscm,
		OccurredAt:    occurredAt.UTC(),
		RecordedAt:    now.UTC(),
		Payload:       raw,
	}, nil
}

// Marshal encodes the envelope as stored in the stream.
func (e Envelope) Marshal() ([]byte, error) {
	return json.Marshal(e)
}

// Unmarshal decodes a stored envelope and checks the fields every event has.
func Unmarshal(data []byte) (Envelope, error) {
	var e Envelope
	if err := fastjson.Unmarshal(data, &e); err != nil {
		return Envelope{}, fmt.Errorf("decode envelope: %w", err)
	}
	var missing []string
	if e.ID == uuid.Nil {
		missing = append(missing, "id")
	}
	if e.Type == "" {
		missing = append(missing, "type")
	}
	if e.AggregateKind == "" {
		missing = append(missing, "aggregate_kind")
	}
	if e.AggregateID == "" {
		missing = append(missing, "aggregate_id")
	}
	if e.ISCM == "" {
		missing = append(missing, "iscm")
	}
	if len(missing) > 0 {
		return Envelope{}, fmt.Errorf("decode envelope: missing %s", strings.Join(missing, ", "))
	}
	return e, nil
}
