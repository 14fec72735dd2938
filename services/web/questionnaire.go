package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"gcmtrack/events"
	"gcmtrack/services/api"
	"gcmtrack/services/command"
)

// The questionnaire (IOM review 2019, Annex 3) as four steps, one per
// section; each step saves the whole answer set as a draft, the last one
// submits it.
var questionnaireSteps = [][]input{
	{ // I. General information
		{Name: "respondent.chair.country", Kind: "text"}, {Name: "respondent.chair.name", Kind: "text"}, {Name: "respondent.chair.title", Kind: "text"},
		{Name: "respondent.secretariat_head.name", Kind: "text"}, {Name: "respondent.secretariat_head.title", Kind: "text"},
		{Name: "submitted_on", Kind: "date"},
	},
	{ // II. Positions
		{Name: "position.status", Kind: "enum", Enum: "position.status"}, {Name: "position.document.title", Kind: "text"},
		{Name: "position.document.url", Kind: "url"}, {Name: "position.meeting.title", Kind: "text"}, {Name: "position.meeting.date", Kind: "date"},
		{Name: "position.revised_after_agreed_outcome", Kind: "bool"}, {Name: "position.plans_refinement", Kind: "bool"},
		{Name: "position.themes", Kind: "themes"}, {Name: "position.principles", Kind: "principles"}, {Name: "position.objectives", Kind: "objectives"},
		{Name: "position.pursuit", Kind: "textarea"},
	},
	{ // III. Plans
		{Name: "agenda_item", Kind: "enum", Enum: "agenda_item"}, {Name: "influence", Kind: "textarea"},
		{Name: "stocktaking.status", Kind: "enum", Enum: "stocktaking.status"}, {Name: "stocktaking.document.title", Kind: "text"},
		{Name: "action_plan.status", Kind: "enum", Enum: "action_plan.status"}, {Name: "action_plan.planned_for", Kind: "text"},
		{Name: "data_exchange", Kind: "titles"}, {Name: "awareness_raising", Kind: "titles"},
		{Name: "capacity_building", Kind: "pairs", Enum: "form|title"}, {Name: "assistance", Kind: "textarea"},
		{Name: "whole_of_government", Kind: "titles"}, {Name: "sdg_practices", Kind: "lines"},
		{Name: "resources", Kind: "pairs", Enum: "kind|description"},
	},
	{ // IV. Partnering
		{Name: "partnerships", Kind: "pairs", Enum: "category|partner|nature"}, {Name: "submissions", Kind: "pairs", Enum: "forum|title"},
		{Name: "expansion.status", Kind: "enum", Enum: "expansion.status"}, {Name: "expansion.with", Kind: "pairs", Enum: "modality|entity"},
		{Name: "hindering_factors", Kind: "factors", Enum: "hindering_factor"},
	},
}

var stepTitles = []string{"q.s1", "q.s2", "q.s3", "q.s4"}

// answersToForm flattens answers into the step's form values.
func answersToForm(m map[string]any, fields []input) formValues {
	out := fromContent(mustJSON(m), plain(fields))
	for _, f := range fields {
		v := lookupPath(m, f.Name)
		arr, _ := v.([]any)
		switch f.Kind {
		case "titles":
			var lines []string
			for _, x := range arr {
				if mm, ok := x.(map[string]any); ok {
					lines = append(lines, fmt.Sprint(mm["title"]))
				}
			}
			out[f.Name] = strings.Join(lines, "\n")
		case "pairs":
			keys := strings.Split(f.Enum, "|")
			var lines []string
			for _, x := range arr {
				mm, _ := x.(map[string]any)
				var parts []string
				for _, k := range keys {
					if s, ok := mm[k].(string); ok {
						parts = append(parts, s)
					} else {
						parts = append(parts, "")
					}
				}
				lines = append(lines, strings.TrimRight(strings.Join(parts, " | "), " |"))
			}
			out[f.Name] = strings.Join(lines, "\n")
		case "factors":
			var list []string
			for _, x := range arr {
				list = append(list, fmt.Sprint(x))
			}
			out[f.Name] = list
		}
	}
	return out
}

// plain keeps the fields the record form helpers understand.
func plain(fields []input) []input {
	var out []input
	for _, f := range fields {
		switch f.Kind {
		case "titles", "pairs", "factors":
		default:
			out = append(out, f)
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// formToAnswers merges a posted step into the answers.
func formToAnswers(m map[string]any, post map[string][]string, fields []input) formValues {
	vals, body, _ := fromForm(post, plain(fields))
	var step map[string]any
	_ = json.Unmarshal(body, &step)
	for _, f := range plain(fields) {
		v := lookupPath(step, f.Name)
		if v == nil {
			deletePath(m, f.Name)
		} else {
			setPath(m, f.Name, v)
		}
	}
	for _, f := range fields {
		text := ""
		if len(post[f.Name]) > 0 {
			text = post[f.Name][0]
		}
		switch f.Kind {
		case "titles":
			vals[f.Name] = text
			var list []map[string]any
			for _, l := range splitLines(text) {
				list = append(list, map[string]any{"title": l})
			}
			setPath(m, f.Name, orEmpty(list))
		case "pairs":
			vals[f.Name] = text
			keys := strings.Split(f.Enum, "|")
			var list []map[string]any
			for _, l := range splitLines(text) {
				parts := strings.SplitN(l, "|", len(keys))
				e := map[string]any{}
				for i, k := range keys {
					if i < len(parts) && strings.TrimSpace(parts[i]) != "" {
						e[k] = strings.TrimSpace(parts[i])
					}
				}
				list = append(list, e)
			}
			setPath(m, f.Name, orEmpty(list))
		case "factors":
			vals[f.Name] = post[f.Name]
			setPath(m, f.Name, orEmpty(post[f.Name]))
		}
	}
	pruneEmpty(m)
	return vals
}

// pruneEmpty removes nested objects left with nothing in them (an
// unanswered expansion), so they do not read as answers missing a status.
func pruneEmpty(m map[string]any) bool {
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			if pruneEmpty(x) {
				delete(m, k)
			}
		case []any:
			if len(x) == 0 {
				delete(m, k)
			}
		case []map[string]any:
			if len(x) == 0 {
				delete(m, k)
			}
		case []string:
			if len(x) == 0 {
				delete(m, k)
			}
		case nil:
			delete(m, k)
		}
	}
	return len(m) == 0
}

func deletePath(m map[string]any, path string) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, keys[len(keys)-1])
}

type questionnairePage struct {
	Slug, Channel     string
	Cycle, Step, Last int
	StepTitle         string
	Fields            []input
	Values            formValues
	Errors            map[string]string
	Message           string
	Status            string
	Themes            []string
	Steps             []string
}

func (s *Server) questionnairePath(r *http.Request, u *user) (string, int, string, int, error) {
	slug := r.PathValue("slug")
	if _, ok := s.d.Catalog.ISCM(slug); !ok {
		return "", 0, "", 0, s.notFound()
	}
	cycle, err := strconv.Atoi(r.PathValue("cycle"))
	ch := r.PathValue("channel")
	step, serr := strconv.Atoi(r.PathValue("step"))
	if err != nil || cycle < 2000 || cycle > 2100 || (ch != events.ChannelQuestionnaire && ch != events.ChannelInterview) || serr != nil || step < 1 || step > len(questionnaireSteps) {
		return "", 0, "", 0, s.notFound()
	}
	if !u.CanWrite(slug) {
		return "", 0, "", 0, s.forbidden()
	}
	return slug, cycle, ch, step, nil
}

// loadAnswers reads the current answers from the questionnaire aggregate
// (not the read model: the next step must see the previous one at once).
func (s *Server) loadAnswers(r *http.Request, slug string, cycle int, ch string) (map[string]any, string, uint64, error) {
	rec, err := s.d.Records.Load(r.Context(), slug, events.KindQuestionnaire, events.QuestionnaireID(cycle, ch))
	if err != nil {
		return nil, "", 0, err
	}
	m := map[string]any{}
	if rec.Answers != nil {
		_ = json.Unmarshal(mustJSON(rec.Answers.Answers), &m)
	}
	return m, rec.Status, rec.Version, nil
}

func (s *Server) themeIDs() []string {
	var out []string
	for _, t := range s.d.Catalog.Themes {
		out = append(out, t.ID)
	}
	return out
}

func (s *Server) stepTitles() []string {
	out := make([]string, len(stepTitles))
	for i, k := range stepTitles {
		out[i] = s.t(k)
	}
	return out
}

func (s *Server) questionnaireStep(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	slug, cycle, ch, step, err := s.questionnairePath(r, u)
	if err != nil {
		return view{}, err
	}
	m, status, _, err := s.loadAnswers(r, slug, cycle, ch)
	if err != nil {
		return view{}, err
	}
	fields := withOptions(questionnaireSteps[step-1])
	return view{Template: "questionnaire", Title: s.t("ws.questionnaire"), Data: questionnairePage{
		Slug: slug, Cycle: cycle, Channel: ch, Step: step, Last: len(questionnaireSteps), StepTitle: s.t(stepTitles[step-1]),
		Fields: fields, Values: answersToForm(m, fields), Status: status, Themes: s.themeIDs(), Steps: s.stepTitles(),
	}}, nil
}

func (s *Server) questionnaireSave(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	slug, cycle, ch, step, err := s.questionnairePath(r, u)
	if err != nil {
		return view{}, err
	}
	m, status, version, err := s.loadAnswers(r, slug, cycle, ch)
	if err != nil {
		return view{}, err
	}
	fields := withOptions(questionnaireSteps[step-1])
	vals := formToAnswers(m, r.PostForm, fields)
	m["channel"] = ch
	final := step == len(questionnaireSteps) && r.PostFormValue("submit") != ""
	// Drafts until the end; answers already submitted are re-submitted.
	draft := !final && (status == "" || status == events.StatusDraft)
	var a events.Answers
	dec := json.NewDecoder(strings.NewReader(string(mustJSON(m))))
	dec.DisallowUnknownFields()
	err = dec.Decode(&a)
	if err == nil {
		var res command.Result
		res, err = s.d.Records.Answer(r.Context(), slug, cycle, ch, a, draft, command.Meta{Actor: u.Actor(), CorrelationID: "web", IfMatch: &version})
		api.Wrote(r, res.Position)
	}
	if err != nil {
		if fe, ok := fieldErrors(err); ok {
			return view{Template: "questionnaire", Title: s.t("ws.questionnaire"), Status: http.StatusUnprocessableEntity, Data: questionnairePage{
				Slug: slug, Cycle: cycle, Channel: ch, Step: step, Last: len(questionnaireSteps), StepTitle: s.t(stepTitles[step-1]),
				Fields: fields, Values: vals, Errors: fe, Message: s.t("ws.errors"), Status: status, Themes: s.themeIDs(), Steps: s.stepTitles(),
			}}, nil
		}
		return view{}, err
	}
	next := step + 1
	if r.PostFormValue("back") != "" {
		next = max(step-1, 1)
	}
	if final {
		return view{Redirect: "/workspace/" + slug + "?saved=1"}, nil
	}
	return view{Redirect: fmt.Sprintf("/workspace/%s/questionnaire/%d/%s/%d", slug, cycle, ch, min(next, len(questionnaireSteps)))}, nil
}
