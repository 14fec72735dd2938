package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A schema evolution, played through the code that decodes every event
// (decodeWith, which Decode calls with the production registry). Every
// production type is at schema version 1 today, so the scenario uses types
// of its own, registered in a registry of the test only:
//
//	v1 {"country":"MEX","observer":false}     as first written
//	v2 {"state":"MEX","observer":false}       country renamed state
//	v3 {"state":"MEX","status":"member","since":null}
//	                                          observer became status; since added
//
// testdata/evolution/stream.jsonl is a stream written over those years, in
// every version: golden files of old events, never rewritten. Read today,
// each event is upcast on read to v3 and folded into the current read model,
// which must equal testdata/evolution/read_model.golden.

// evoJoined is the current (v3) member-joined payload of the scenario.
type evoJoined struct {
	State  string `json:"state"`
	Status string `json:"status"`
	Since  Date   `json:"since"`
}

func (evoJoined) EventType() string { return "evolution.member_joined" }

type evoLeft struct {
	State string `json:"state"`
	Until Date   `json:"until"`
}

func (evoLeft) EventType() string { return "evolution.member_left" }

type evoRegistered struct {
	Slug string `json:"slug"`
	Name string `json:"name"`
}

func (evoRegistered) EventType() string { return "evolution.registered" }

// evolutionRegistry is the registry of a binary that writes v3.
func evolutionRegistry() map[string]typeInfo {
	edit := func(f func(m map[string]any)) Upcaster {
		return func(raw json.RawMessage) (json.RawMessage, error) {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, err
			}
			f(m)
			return json.Marshal(m)
		}
	}
	return buildRegistry([]definition{
		{payload: evoRegistered{}, version: 1},
		{payload: evoLeft{}, version: 1},
		{payload: evoJoined{}, version: 3, upcasters: map[int]Upcaster{
			1: edit(func(m map[string]any) {
				m["state"] = m["country"]
				delete(m, "country")
			}),
			2: edit(func(m map[string]any) {
				m["status"] = StatusMember
				if obs, _ := m["observer"].(bool); obs {
					m["status"] = StatusObserver
				}
				delete(m, "observer")
			}),
		}},
	})
}

// evoMember and evoISCM are the scenario's read model: the current members
// of each ISCM, and the position it reflects.
type evoMember struct {
	Status string `json:"status"`
	Since  Date   `json:"since"`
}

type evoISCM struct {
	Name     string               `json:"name"`
	Members  map[string]evoMember `json:"members"`
	Position uint64               `json:"position"`
}

// evoProject applies one decoded event to the read model, as a projection
// applies a batch.
func evoProject(rm map[string]*evoISCM, rec Record, p Payload) error {
	m := rm[rec.ISCM]
	if m == nil {
		m = &evoISCM{Members: map[string]evoMember{}}
		rm[rec.ISCM] = m
	}
	switch p := p.(type) {
	case evoRegistered:
		m.Name = p.Name
	case evoJoined:
		if p.State == "" || (p.Status != StatusMember && p.Status != StatusObserver) {
			return fmt.Errorf("position %d: upcast to an invalid payload %+v", rec.Position, p)
		}
		m.Members[p.State] = evoMember{Status: p.Status, Since: p.Since}
	case evoLeft:
		delete(m.Members, p.State)
	default:
		return fmt.Errorf("position %d: unexpected %T", rec.Position, p)
	}
	m.Position = rec.Position
	return nil
}

func TestOldSchemaVersionsAreUpcastOnReadAndProjectToTheCurrentModel(t *testing.T) {
	reg := evolutionRegistry()
	f, err := os.Open(filepath.Join("testdata", "evolution", "stream.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rm := map[string]*evoISCM{}
	versions := map[int]int{}
	sc := bufio.NewScanner(f)
	var pos uint64
	for sc.Scan() {
		pos++
		stored := append([]byte(nil), sc.Bytes()...)
		env, err := Unmarshal(stored)
		if err != nil {
			t.Fatalf("position %d: %v", pos, err)
		}
		p, err := decodeWith(reg, env)
		if err != nil {
			t.Fatalf("position %d (v%d): %v", pos, env.SchemaVersion, err)
		}
		if !bytes.Equal(stored, sc.Bytes()) {
			t.Fatalf("position %d: decoding changed the stored bytes", pos)
		}
		versions[env.SchemaVersion]++
		if err := evoProject(rm, Record{Position: pos, Subject: env.Subject(), Envelope: env}, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if versions[1] == 0 || versions[2] == 0 || versions[3] == 0 {
		t.Fatalf("the golden stream should hold every schema version: %v", versions)
	}
	got, err := json.MarshalIndent(rm, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "evolution", "read_model.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(want), got) {
		t.Fatalf("read model of the old stream:\n%s\nwant:\n%s", got, want)
	}

	// The same fact written in v1 and in v3 decodes to the same payload.
	v1 := Envelope{Type: "evolution.member_joined", SchemaVersion: 1, Payload: json.RawMessage(`{"country":"GTM","observer":true}`)}
	v3 := Envelope{Type: "evolution.member_joined", SchemaVersion: 3, Payload: json.RawMessage(`{"state":"GTM","status":"observer","since":null}`)}
	a, errA := decodeWith(reg, v1)
	b, errB := decodeWith(reg, v3)
	if errA != nil || errB != nil || a != b {
		t.Fatalf("v1 decodes to %+v (%v), v3 to %+v (%v)", a, errA, b, errB)
	}
	// A v4 event, from a binary newer than this one, is refused (the
	// projection engine parks it until an upgrade).
	if _, err := decodeWith(reg, Envelope{Type: "evolution.member_joined", SchemaVersion: 4, Payload: json.RawMessage(`{}`)}); err == nil {
		t.Fatal("a v4 event decoded with a v3 registry")
	}
}
