package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gcmtrack/events"
	"gcmtrack/services/command"
	"gcmtrack/services/records"
)

// input is one form field: its JSON path in the record, how it is entered,
// and (for enumerations) the allowed values.
type input struct {
	Name    string // JSON path: "meeting.title"
	Kind    string // text, textarea, date, url, enum, bool, objectives, principles, themes, states, lines, milestones
	Enum    string // key of records.Enums()
	Options []string
}

// recordType is one kind of record as the pages name it.
type recordType struct {
	segment, kind string
	fields        []input
	decode        func([]byte) (events.Content, error)
}

func decodeInto[C events.Content](b []byte) (events.Content, error) {
	var c C
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&c)
	return c, err
}

var recordTypes = []recordType{
	{"positions", events.KindPosition, []input{
		{Name: "status", Kind: "enum", Enum: "position.status"}, {Name: "document.title", Kind: "text"}, {Name: "document.url", Kind: "url"},
		{Name: "document.description", Kind: "textarea"}, {Name: "meeting.title", Kind: "text"}, {Name: "meeting.date", Kind: "date"},
		{Name: "revised_after_agreed_outcome", Kind: "bool"}, {Name: "plans_refinement", Kind: "bool"},
		{Name: "themes", Kind: "themes"}, {Name: "principles", Kind: "principles"}, {Name: "objectives", Kind: "objectives"},
		{Name: "pursuit", Kind: "textarea"}}, decodeInto[events.Position]},
	{"agenda-items", events.KindAgendaItem, []input{
		{Name: "meeting.title", Kind: "text"}, {Name: "meeting.date", Kind: "date"}, {Name: "meeting.place", Kind: "text"},
		{Name: "standing", Kind: "enum", Enum: "agenda_item.standing"}, {Name: "objectives", Kind: "objectives"}, {Name: "notes", Kind: "textarea"}}, decodeInto[events.AgendaItem]},
	{"stocktakings", events.KindStocktaking, []input{
		{Name: "status", Kind: "enum", Enum: "stocktaking.status"}, {Name: "document.title", Kind: "text"}, {Name: "document.url", Kind: "url"},
		{Name: "planned_for", Kind: "date"}}, decodeInto[events.Stocktaking]},
	{"action-plans", events.KindActionPlan, []input{
		{Name: "status", Kind: "enum", Enum: "action_plan.status"}, {Name: "title", Kind: "text"}, {Name: "period_from", Kind: "date"},
		{Name: "period_to", Kind: "date"}, {Name: "planned_for", Kind: "text"}, {Name: "objectives", Kind: "objectives"},
		{Name: "milestones", Kind: "milestones"}}, decodeInto[events.ActionPlan]},
	{"activities", events.KindActivity, []input{
		{Name: "kind", Kind: "enum", Enum: "activity.kind"}, {Name: "form", Kind: "enum", Enum: "capacity_building.form"}, {Name: "title", Kind: "text"},
		{Name: "start_date", Kind: "date"}, {Name: "end_date", Kind: "date"}, {Name: "states", Kind: "states"},
		{Name: "objectives", Kind: "objectives"}, {Name: "principles", Kind: "principles"}, {Name: "partners", Kind: "lines"},
		{Name: "url", Kind: "url"}, {Name: "summary", Kind: "textarea"}}, decodeInto[events.Activity]},
	{"partnerships", events.KindPartnership, []input{
		{Name: "partner", Kind: "text"}, {Name: "category", Kind: "enum", Enum: "partnership.category"}, {Name: "nature", Kind: "textarea"},
		{Name: "since", Kind: "date"}, {Name: "until", Kind: "date"}}, decodeInto[events.Partnership]},
	{"submissions", events.KindSubmission, []input{
		{Name: "forum", Kind: "enum", Enum: "submission.forum"}, {Name: "title", Kind: "text"}, {Name: "date", Kind: "date"}, {Name: "url", Kind: "url"}}, decodeInto[events.Submission]},
	{"hindering-factors", events.KindHinderingFactor, []input{
		{Name: "factor", Kind: "enum", Enum: "hindering_factor"}, {Name: "description", Kind: "textarea"}}, decodeInto[events.HinderingFactor]},
	{"resources", events.KindResource, []input{
		{Name: "kind", Kind: "enum", Enum: "resource.kind"}, {Name: "description", Kind: "textarea"}}, decodeInto[events.Resource]},
	{"expansions", events.KindExpansion, []input{
		{Name: "entity", Kind: "text"}, {Name: "modality", Kind: "enum", Enum: "expansion.modality"}, {Name: "notes", Kind: "textarea"}}, decodeInto[events.Expansion]},
}

func typeBySegment(seg string) (recordType, bool) {
	for _, rt := range recordTypes {
		if rt.segment == seg {
			return rt, true
		}
	}
	return recordType{}, false
}

// formValues are a form's current values by field name: strings, or
// string lists for multi-choice fields.
type formValues map[string]any

// Str returns a single value.
func (v formValues) Str(name string) string {
	s, _ := v[name].(string)
	return s
}

// Has reports whether a multi-choice field holds a value.
func (v formValues) Has(name, val string) bool {
	list, _ := v[name].([]string)
	for _, x := range list {
		if x == val {
			return true
		}
	}
	return false
}

// fromContent flattens a record's JSON into form values.
func fromContent(raw []byte, fields []input) formValues {
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	out := formValues{}
	for _, f := range fields {
		v := lookupPath(m, f.Name)
		switch f.Kind {
		case "objectives", "principles", "themes", "states":
			var list []string
			if arr, ok := v.([]any); ok {
				for _, x := range arr {
					list = append(list, fmt.Sprint(x))
				}
			}
			out[f.Name] = list
		case "lines":
			var lines []string
			if arr, ok := v.([]any); ok {
				for _, x := range arr {
					lines = append(lines, fmt.Sprint(x))
				}
			}
			out[f.Name] = strings.Join(lines, "\n")
		case "milestones":
			var lines []string
			if arr, ok := v.([]any); ok {
				for _, x := range arr {
					ms, _ := x.(map[string]any)
					line := fmt.Sprint(ms["title"])
					if d, ok := ms["due"].(string); ok && d != "" {
						line += " | " + d
					}
					lines = append(lines, line)
				}
			}
			out[f.Name] = strings.Join(lines, "\n")
		case "bool":
			switch v {
			case true:
				out[f.Name] = "true"
			case false:
				out[f.Name] = "false"
			}
		default:
			if v != nil {
				out[f.Name] = fmt.Sprint(v)
			}
		}
	}
	return out
}

func lookupPath(m map[string]any, path string) any {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func setPath(m map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// fromForm reads a posted form into form values and the record's JSON.
func fromForm(post map[string][]string, fields []input) (formValues, []byte, error) {
	vals := formValues{}
	m := map[string]any{}
	for _, f := range fields {
		got := post[f.Name]
		first := ""
		if len(got) > 0 {
			first = strings.TrimSpace(got[0])
		}
		switch f.Kind {
		case "objectives", "principles":
			var nums []int
			for _, g := range got {
				var n int
				if _, err := fmt.Sscan(g, &n); err == nil {
					nums = append(nums, n)
				}
			}
			vals[f.Name] = got
			setPath(m, f.Name, orEmpty(nums))
		case "themes", "states":
			vals[f.Name] = got
			setPath(m, f.Name, orEmpty(got))
		case "lines":
			vals[f.Name] = first
			setPath(m, f.Name, orEmpty(splitLines(first)))
		case "milestones":
			vals[f.Name] = first
			var ms []map[string]any
			for i, l := range splitLines(first) {
				title, due, _ := strings.Cut(l, "|")
				e := map[string]any{"id": fmt.Sprintf("m%d", i+1), "title": strings.TrimSpace(title)}
				if d := strings.TrimSpace(due); d != "" {
					e["due"] = d
				}
				ms = append(ms, e)
			}
			setPath(m, f.Name, orEmpty(ms))
		case "bool":
			vals[f.Name] = first
			switch first {
			case "true":
				setPath(m, f.Name, true)
			case "false":
				setPath(m, f.Name, false)
			}
		default:
			vals[f.Name] = first
			if first != "" {
				setPath(m, f.Name, first)
			}
		}
	}
	b, err := json.Marshal(m)
	return vals, b, err
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

var indexSuffix = regexp.MustCompile(`(\[\d+\])+`)

// fieldErrors maps a refusal to messages by form field. A problem's field
// "objectives[0]" is shown at "objectives".
func fieldErrors(err error) (map[string]string, bool) {
	var ve *command.ValidationError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &ve):
		out := map[string]string{}
		for _, p := range ve.Problems {
			f := indexSuffix.ReplaceAllString(p.Field, "")
			if prev, ok := out[f]; ok {
				out[f] = prev + "; " + p.Detail
			} else {
				out[f] = p.Detail
			}
		}
		return out, true
	case errors.As(err, &te):
		msg := "has the wrong form"
		if te.Type == reflect.TypeFor[events.Date]() {
			msg = "must be a date (YYYY-MM-DD)"
		}
		return map[string]string{te.Field: msg}, true
	}
	return nil, false
}

// options fills in each enumeration's values.
func withOptions(fields []input) []input {
	enums := records.Enums()
	out := make([]input, len(fields))
	for i, f := range fields {
		if f.Kind == "enum" || f.Kind == "factors" {
			f.Options = enums[f.Enum]
		}
		out[i] = f
	}
	return out
}

func sortedStates(members map[string]string) []string {
	out := make([]string, 0, len(members))
	for k := range members {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
