package events

import (
	"encoding/json"
	"errors"
	"fmt"
	fastjson "github.com/segmentio/encoding/json"
	"reflect"
	"sort"
)

// Payload is the body of one kind of event. Each payload type is registered
// with its current schema version in the type registry.
type Payload interface {
	EventType() string
}

// Upcaster turns a payload of schema version v into version v+1.
type Upcaster func(json.RawMessage) (json.RawMessage, error)

// Errors of decoding.
var (
	// ErrUnknownType: the event's type is not in the registry.
	ErrUnknownType = errors.New("unknown event type")
	// ErrFutureSchema: the event was written by a newer schema than this
	// binary knows; it can be applied only after an upgrade.
	ErrFutureSchema = errors.New("event schema version newer than supported")
)

type typeInfo struct {
	version   int
	goType    reflect.Type
	upcasters map[int]Upcaster // from version k to k+1
}

// registry is built once from the package's own table (types_list.go) and
// never changed afterwards, so it needs no lock.
var registry = buildRegistry(definitions())

func buildRegistry(defs []definition) map[string]typeInfo {
	r := make(map[string]typeInfo)
	for _, d := range defs {
		t := reflect.TypeOf(d.payload)
		if _, dup := r[d.payload.EventType()]; dup {
			panic("events: duplicate type " + d.payload.EventType()) // programming error in definitions()
		}
		r[d.payload.EventType()] = typeInfo{version: d.version, goType: t, upcasters: d.upcasters}
	}
	return r
}

type definition struct {
	payload   Payload
	version   int
	upcasters map[int]Upcaster
}

func lookup(name string) (typeInfo, bool) {
	t, ok := registry[name]
	return t, ok
}

// Types lists the registered event types, sorted.
func Types() []string {
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CurrentVersion is the schema version new events of the type are written in.
func CurrentVersion(eventType string) (int, bool) {
	t, ok := lookup(eventType)
	return t.version, ok
}

// Decode upcasts the envelope's payload to its type's current schema version
// and decodes it into the registered payload type.
func Decode(e Envelope) (Payload, error) {
	return decodeWith(registry, e)
}

func decodeWith(reg map[string]typeInfo, e Envelope) (Payload, error) {
	t, ok := reg[e.Type]
	if !ok {
		return nil, fmt.Errorf("decode %s: %w", e.Type, ErrUnknownType)
	}
	if e.SchemaVersion > t.version {
		return nil, fmt.Errorf("decode %s v%d (this binary knows v%d): %w", e.Type, e.SchemaVersion, t.version, ErrFutureSchema)
	}
	if e.SchemaVersion < 1 {
		return nil, fmt.Errorf("decode %s: schema version %d", e.Type, e.SchemaVersion)
	}
	raw := e.Payload
	for v := e.SchemaVersion; v < t.version; v++ {
		up, ok := t.upcasters[v]
		if !ok {
			return nil, fmt.Errorf("decode %s: no upcaster from v%d", e.Type, v)
		}
		var err error
		if raw, err = up(raw); err != nil {
			return nil, fmt.Errorf("decode %s: upcast v%d: %w", e.Type, v, err)
		}
	}
	ptr := reflect.New(t.goType)
	if err := fastjson.Unmarshal(raw, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", e.Type, err)
	}
	return ptr.Elem().Interface().(Payload), nil
}
