package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gcmtrack/events"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/projections/reports"
	"gcmtrack/services/audit"
	"gcmtrack/services/command"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

// The OpenAPI document is built from the Go types the API decodes and
// encodes, so its schemas cannot drift from them; the operations are listed
// here beside the routes, and a test checks both against the router.

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.openAPIJSON()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err = w.Write(doc)
	return err
}

func (s *Server) openAPIJSON() ([]byte, error) {
	s.docOnce.Do(func() { s.doc, s.docErr = json.MarshalIndent(s.openAPIDocument(), "", " ") })
	return s.doc, s.docErr
}

// operation describes one route for the document.
type operation struct {
	method, path, summary, tag string
	auth                       string // "", "admin", "writer" (admin or the ISCM's secretariat)
	params                     []map[string]any
	body                       any // a value of the request body's type
	status                     int
	resp                       any // a value of the response's type; nil for no body
	errors                     []int
	media                      string // the success media type when not application/json
}

type schemas struct {
	defs  map[string]any
	types map[string]reflect.Type // which Go type each name stands for
}

// ref returns a $ref to the schema of v's type, defining it on first use.
func (sc *schemas) ref(v any) map[string]any {
	return sc.of(reflect.TypeOf(v))
}

var (
	dateType = reflect.TypeFor[events.Date]()
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// enums maps "Type.field" to its allowed values.
func enums() map[string][]string {
	e := records.Enums()
	return map[string][]string{
		"Position.status": e["position.status"], "AgendaItem.standing": e["agenda_item.standing"],
		"Stocktaking.status": e["stocktaking.status"], "ActionPlan.status": e["action_plan.status"],
		"Activity.kind": e["activity.kind"], "Activity.form": e["capacity_building.form"],
		"Partnership.category": e["partnership.category"], "Submission.forum": e["submission.forum"],
		"HinderingFactor.factor": e["hindering_factor"], "Resource.kind": e["resource.kind"],
		"Expansion.modality": e["expansion.modality"], "Answers.channel": e["channel"],
		"Answers.agenda_item": e["agenda_item"], "QStocktaking.status": e["stocktaking.status"],
		"QActionPlan.status": e["action_plan.status"], "QActivity.form": e["capacity_building.form"],
		"QPartnership.category": e["partnership.category"], "QExpansion.status": e["expansion.status"],
		"QExpansionWith.modality": e["expansion.modality"], "Progress.progress": e["milestone.progress"],
		"AddMember.status": {"member", "observer"},
	}
}

// required lists the fields validation requires, per type.
var required = map[string][]string{
	"Position": {"status"}, "AgendaItem": {"meeting", "standing"}, "Meeting": {"title"}, "Stocktaking": {"status"},
	"ActionPlan": {"status"}, "Activity": {"kind", "title"}, "Partnership": {"partner", "category"},
	"Submission": {"forum", "title"}, "HinderingFactor": {"factor"}, "Resource": {"kind", "description"},
	"Expansion": {"entity", "modality"}, "Answers": {"channel"}, "QActivity": {"title"},
	"QPartnership": {"partner", "category"}, "AddMember": {"state"}, "Progress": {"progress"}, "Milestone": {"title"},
	"Result": {"position", "version"}, "Problem": {"type", "title", "status"},
}

func (sc *schemas) of(t reflect.Type) map[string]any {
	switch {
	case t == dateType:
		return map[string]any{"type": []string{"string", "null"}, "format": "date"}
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer: // nil encodes as null
		inner := sc.of(t.Elem())
		if _, isRef := inner["$ref"]; isRef {
			return map[string]any{"anyOf": []any{inner, map[string]any{"type": "null"}}}
		}
		if typ, ok := inner["type"].(string); ok {
			c := map[string]any{}
			for k, v := range inner {
				c[k] = v
			}
			c["type"] = []string{typ, "null"}
			return c
		}
		return inner
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Int32:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": sc.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": sc.of(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := t.Name()
		if name != "" {
			name = strings.ToUpper(name[:1]) + name[1:]
		}
		if i := strings.Index(name, "["); i >= 0 { // Page[T]: named after its items
			name = name[:i] + "Of" + t.Field(0).Type.Elem().Name()
		}
		anonymous := name == ""
		if other, ok := sc.types[name]; ok && other != t {
			// Two packages name a type alike (catalog.ISCM, registry.ISCM).
			pkg := t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]
			name = strings.ToUpper(pkg[:1]) + pkg[1:] + name
		}
		ref := map[string]any{"$ref": "#/components/schemas/" + name}
		if _, ok := sc.defs[name]; ok && !anonymous {
			return ref
		}
		if !anonymous {
			sc.types[name] = t
			sc.defs[name] = nil // break cycles
		}
		props := map[string]any{}
		var allOf []any
		en := enums()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			jname, _, _ := strings.Cut(tag, ",")
			if jname == "-" {
				continue
			}
			if f.Anonymous && jname == "" {
				allOf = append(allOf, sc.of(f.Type))
				continue
			}
			if jname == "" {
				jname = f.Name
			}
			p := sc.of(f.Type)
			if vals, ok := en[name+"."+jname]; ok {
				p = map[string]any{"type": "string", "enum": vals}
				if f.Type.Kind() == reflect.Slice {
					p = map[string]any{"type": "array", "items": p}
				}
			}
			props[jname] = p
		}
		def := map[string]any{"type": "object", "properties": props}
		if req, ok := required[name]; ok {
			def["required"] = req
		}
		if len(allOf) > 0 {
			def = map[string]any{"allOf": append(allOf, def)}
		} else {
			def["additionalProperties"] = false // unknown fields are refused
		}
		if anonymous { // inline: {items: […]} wrappers and the like
			return def
		}
		sc.defs[name] = def
		return ref
	}
	return map[string]any{}
}

func pathParam(name, desc string) map[string]any {
	return map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}, "description": desc}
}

func queryParam(name, typ, desc string) map[string]any {
	return map[string]any{"name": name, "in": "query", "schema": map[string]any{"type": typ}, "description": desc}
}

var (
	slugParam    = pathParam("slug", "ISCM slug, as listed by /v1/catalog")
	idParam      = pathParam("id", "record id")
	minPosParam  = map[string]any{"$ref": "#/components/parameters/MinPosition"}
	idemParam    = map[string]any{"$ref": "#/components/parameters/IdempotencyKey"}
	ifMatchParam = map[string]any{"$ref": "#/components/parameters/IfMatch"}
	cycleParams  = []map[string]any{slugParam, pathParam("cycle", "reporting year, such as 2018"), pathParam("channel", "questionnaire or interview")}
)

// listParams are the list endpoints' filters.
func listParams() []map[string]any {
	return []map[string]any{
		queryParam("iscm", "string", "ISCM slug"), queryParam("objective", "integer", "GCM objective 1-23"),
		queryParam("principle", "integer", "guiding principle 1-10"), queryParam("theme", "string", "theme T1-T6"),
		queryParam("kind", "string", "the record's own kind or status field: activity kind, forum, position status, …"),
		queryParam("category", "string", "partner category or capacity-building form"),
		queryParam("status", "string", "draft, submitted, published or withdrawn (what the caller may see)"),
		queryParam("source", "string", "manual or questionnaire"), queryParam("state", "string", "ISO 3166-1 alpha-3 of a participating State"),
		queryParam("from", "string", "date YYYY-MM-DD: records whose dates end on or after it"),
		queryParam("to", "string", "date YYYY-MM-DD: records whose dates start on or before it"),
		queryParam("cursor", "string", "next_cursor of the previous page"), queryParam("limit", "integer", "page size, 1-200 (default 50)"),
		minPosParam,
	}
}

// operations lists every route the server serves.
func (s *Server) operations() []operation {
	writeErrs := []int{400, 401, 403, 404, 409, 412, 413, 415, 422, 503}
	ops := []operation{
		{method: "GET", path: "/openapi.json", summary: "This document", tag: "meta", status: 200, resp: map[string]any{}},
		{method: "GET", path: "/healthz", summary: "Liveness", tag: "meta", status: 200, resp: map[string]string{}},
		{method: "GET", path: "/readyz", summary: "Readiness: NATS and PostgreSQL reachable", tag: "meta", status: 200, resp: map[string]string{}, errors: []int{503}},
		{method: "GET", path: "/metrics", summary: "Prometheus metrics (text exposition format)", tag: "meta", status: 200},
		{method: "GET", path: "/v1/catalog", summary: "The GCM catalog: objectives, principles, themes, ISCMs, partner categories, recommendations", tag: "registry", status: 200, resp: catalogDoc{}},
		{method: "GET", path: "/v1/iscms", summary: "Registered ISCMs", tag: "registry", params: []map[string]any{minPosParam}, status: 200, resp: struct {
			Items []projregistry.ISCM `json:"items"`
		}{}, errors: []int{400, 503}},
		{method: "GET", path: "/v1/iscms/{slug}", summary: "One ISCM: members and engagement summary; ETag is the registry version", tag: "registry", params: []map[string]any{slugParam, minPosParam}, status: 200, resp: iscmProfile{}, errors: []int{404, 503}},
		{method: "POST", path: "/v1/iscms/{slug}/members", summary: "A State joins the ISCM, or moves between member and observer", tag: "registry", auth: "admin", params: []map[string]any{slugParam, idemParam, ifMatchParam}, body: registry.AddMember{}, status: 201, resp: command.Result{}, errors: writeErrs},
		{method: "DELETE", path: "/v1/iscms/{slug}/members/{state}", summary: "A State leaves the ISCM", tag: "registry", auth: "admin", params: []map[string]any{slugParam, pathParam("state", "ISO 3166-1 alpha-3"), queryParam("until", "string", "date YYYY-MM-DD"), idemParam, ifMatchParam}, status: 200, resp: command.Result{}, errors: writeErrs},
		{method: "GET", path: "/v1/states/{iso3}", summary: "The ISCMs a State takes part in", tag: "registry", params: []map[string]any{pathParam("iso3", "ISO 3166-1 alpha-3"), minPosParam}, status: 200, resp: stateDoc{}, errors: []int{404, 503}},
	}
	if s.d.Audit != nil {
		ops = append(ops, operation{method: "GET", path: "/v1/audit", summary: "The audit log, newest first: every write and every refused request, with who, what and how it ended", tag: "audit", auth: "admin",
			params: []map[string]any{
				queryParam("actor", "string", "a token id, a token name, or anonymous"),
				queryParam("status", "string", "a status class such as 4xx, or a status such as 403"),
				queryParam("outcome", "string", "ok, refused or error"),
				queryParam("route", "string", "a route pattern, such as POST /v1/iscms/{slug}/members"),
				queryParam("cursor", "string", "next_cursor of the previous page"), queryParam("limit", "integer", "page size, 1-200 (default 50)"),
			}, status: 200, resp: audit.Page{}, errors: []int{400, 403}})
	}
	if s.d.Records == nil {
		return ops
	}
	for _, rt := range recordTypes {
		base := "/v1/iscms/{slug}/" + rt.segment
		content := rt.zero()
		tag := rt.segment
		ops = append(ops,
			operation{method: "GET", path: "/v1/" + rt.segment, summary: rt.title + "s of all ISCMs, newest first", tag: tag, params: listParams(), status: 200, resp: projrecords.Page[projrecords.Record]{}, errors: []int{400, 503}},
			operation{method: "GET", path: base, summary: rt.title + "s of one ISCM, newest first", tag: tag, params: append([]map[string]any{slugParam}, listParams()...), status: 200, resp: projrecords.Page[projrecords.Record]{}, errors: []int{400, 404, 503}},
			operation{method: "POST", path: base, summary: "Record a " + strings.ToLower(rt.title) + " (as a draft)", tag: tag, auth: "writer", params: []map[string]any{slugParam, idemParam}, body: content, status: 201, resp: command.Result{}, errors: writeErrs},
			operation{method: "GET", path: base + "/{id}", summary: "One " + strings.ToLower(rt.title) + "; ETag is its version", tag: tag, params: []map[string]any{slugParam, idParam, minPosParam}, status: 200, resp: projrecords.Record{}, errors: []int{404, 503}},
			operation{method: "PUT", path: base + "/{id}", summary: "Revise it: the whole new content; If-Match required", tag: tag, auth: "writer", params: []map[string]any{slugParam, idParam, idemParam, ifMatchParam}, body: content, status: 200, resp: command.Result{}, errors: append(writeErrs, 428)},
			operation{method: "GET", path: base + "/{id}/history", summary: "The events behind it, with actor and time", tag: tag, params: []map[string]any{slugParam, idParam, minPosParam}, status: 200, resp: struct {
				Items []projrecords.Entry `json:"items"`
			}{}, errors: []int{404, 503}},
		)
		for _, a := range []string{records.ActionSubmit, records.ActionPublish, records.ActionWithdraw} {
			auth := "writer"
			if a == records.ActionPublish {
				auth = "admin"
			}
			ops = append(ops, operation{method: "POST", path: base + "/{id}/" + a, summary: strings.ToUpper(a[:1]) + a[1:] + " it", tag: tag, auth: auth, params: []map[string]any{slugParam, idParam, idemParam, ifMatchParam}, body: note{}, status: 200, resp: command.Result{}, errors: writeErrs})
		}
	}
	if s.d.Reports != nil {
		ops = append(ops, s.reportOperations()...)
	}
	q := "/v1/iscms/{slug}/questionnaires/{cycle}/{channel}"
	ops = append(ops,
		operation{method: "POST", path: "/v1/iscms/{slug}/action-plans/{id}/milestones/{milestone}/progress", summary: "Report progress on a milestone", tag: "action-plans", auth: "writer", params: []map[string]any{slugParam, idParam, pathParam("milestone", "milestone id"), idemParam, ifMatchParam}, body: records.Progress{}, status: 201, resp: command.Result{}, errors: writeErrs},
		operation{method: "GET", path: "/v1/iscms/{slug}/timeline", summary: "Everything the ISCM recorded, newest first", tag: "records", params: []map[string]any{slugParam, queryParam("cursor", "string", "next_cursor of the previous page"), queryParam("limit", "integer", "1-200"), minPosParam}, status: 200, resp: projrecords.Page[projrecords.Entry]{}, errors: []int{400, 404, 503}},
		operation{method: "PUT", path: q, summary: "Answer the questionnaire for a cycle (the whole answer set, one atomic event; replaces earlier answers). ?draft=true saves a draft.", tag: "questionnaires", auth: "writer", params: append(append([]map[string]any{}, cycleParams...), queryParam("draft", "boolean", "save as a draft"), idemParam, ifMatchParam), body: events.Answers{}, status: 200, resp: command.Result{}, errors: writeErrs},
		operation{method: "GET", path: q, summary: "The latest answers", tag: "questionnaires", params: append(append([]map[string]any{}, cycleParams...), minPosParam), status: 200, resp: projrecords.Questionnaire{}, errors: []int{404, 503}},
		operation{method: "GET", path: q + "/history", summary: "Every answer set and transition", tag: "questionnaires", params: append(append([]map[string]any{}, cycleParams...), minPosParam), status: 200, resp: struct {
			Items []projrecords.Entry `json:"items"`
		}{}, errors: []int{404, 503}},
	)
	for _, a := range []string{records.ActionSubmit, records.ActionPublish, records.ActionWithdraw} {
		auth := "writer"
		if a == records.ActionPublish {
			auth = "admin"
		}
		ops = append(ops, operation{method: "POST", path: q + "/" + a, summary: strings.ToUpper(a[:1]) + a[1:] + " the answers", tag: "questionnaires", auth: auth, params: append(append([]map[string]any{}, cycleParams...), idemParam, ifMatchParam), body: note{}, status: 200, resp: command.Result{}, errors: writeErrs})
	}
	return ops
}

// stateDoc is the answer of GET /v1/states/{iso3}.
type stateDoc struct {
	State     string                       `json:"state"`
	Name      string                       `json:"name"`
	ISCMCount int                          `json:"iscm_count"`
	ISCMs     []projregistry.Participation `json:"iscms"`
}

func (s *Server) openAPIDocument() map[string]any {
	sc := &schemas{defs: map[string]any{}, types: map[string]reflect.Type{}}
	problemRef := sc.ref(Problem{})
	paths := map[string]map[string]any{}
	for _, op := range s.operations() {
		o := map[string]any{
			"summary":     op.summary,
			"operationId": operationID(op),
			"tags":        []string{op.tag},
		}
		if len(op.params) > 0 {
			o["parameters"] = op.params
		}
		switch op.auth {
		case "admin":
			o["security"] = []any{map[string]any{"bearer": []string{}}}
			o["description"] = "Needs an admin token."
		case "writer":
			o["security"] = []any{map[string]any{"bearer": []string{}}}
			o["description"] = "Needs an admin token, or a secretariat token of this ISCM."
		}
		if op.body != nil {
			o["requestBody"] = map[string]any{"required": reflect.TypeOf(op.body) != reflect.TypeFor[note](), // a transition's note is optional
				"content": map[string]any{"application/json": map[string]any{"schema": sc.ref(op.body)}}}
		}
		resp := map[string]any{}
		ok := map[string]any{"description": http.StatusText(op.status)}
		media := op.media
		if media == "" {
			media = "application/json"
		}
		switch {
		case op.path == "/metrics":
			ok["content"] = map[string]any{"text/plain": map[string]any{}}
		case op.resp != nil:
			ok["content"] = map[string]any{media: map[string]any{"schema": sc.ref(op.resp)}}
		case op.media != "":
			ok["content"] = map[string]any{media: map[string]any{}}
		}
		resp[strconv.Itoa(op.status)] = ok
		if op.method == "GET" && op.path != "/metrics" {
			resp["304"] = map[string]any{"description": "Not Modified (If-None-Match matched the ETag)"}
		}
		errs := append([]int{http.StatusBadRequest}, op.errors...) // any route: a path or query of unprintable bytes
		if !unlimitedRoutes[op.method+" "+op.path] {
			errs = append(errs, http.StatusTooManyRequests)
		}
		for _, e := range errs {
			resp[strconv.Itoa(e)] = map[string]any{"description": http.StatusText(e), "content": map[string]any{"application/problem+json": map[string]any{"schema": problemRef}}}
		}
		if op.auth != "" {
			resp["401"] = map[string]any{"description": "no or bad token", "content": map[string]any{"application/problem+json": map[string]any{"schema": problemRef}}}
		}
		o["responses"] = resp
		if paths[op.path] == nil {
			paths[op.path] = map[string]any{}
		}
		paths[op.path][strings.ToLower(op.method)] = o
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "GCM Tracker API",
			"version": "1",
			"description": "Record and report how inter-State consultation mechanisms on migration (ISCMs) implement the Global Compact for Safe, Orderly and Regular Migration. " +
				"Every write answers with the stream position it reached (Gcm-Position) and the record's version (ETag); every read accepts min_position to read its own writes. " +
				"Errors are RFC 9457 problem details. Unknown fields are refused; bodies are capped at 1 MiB, 32 levels of nesting and 1000 elements per array. " +
				"Requests are rate-limited per token and, without a valid token, per client address: past the limit the answer is 429 with Retry-After.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "A token issued by `gcmtrack token create`."}},
			"parameters": map[string]any{
				"MinPosition":    map[string]any{"name": "min_position", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 0}, "description": "Wait (up to 5 s) until the read models reflect this stream position; the header Gcm-Min-Position works too. 503 with Retry-After otherwise."},
				"IdempotencyKey": map[string]any{"name": "Idempotency-Key", "in": "header", "schema": map[string]any{"type": "string", "maxLength": 255}, "description": "Retrying with the same key answers as before and appends nothing (kept 48 h); the same key with another body is a 422."},
				"IfMatch":        map[string]any{"name": "If-Match", "in": "header", "schema": map[string]any{"type": "string"}, "description": "The version (ETag) the client saw; a stale one is a 412 with the current version."},
			},
			"schemas": sc.defs,
		},
	}
}

func operationID(op operation) string {
	parts := strings.FieldsFunc(op.path, func(r rune) bool { return r == '/' || r == '{' || r == '}' || r == '-' || r == '.' })
	id := strings.ToLower(op.method)
	for _, p := range parts {
		if p == "v1" {
			continue
		}
		id += strings.ToUpper(p[:1]) + p[1:]
	}
	return id
}

var asOfParams = []map[string]any{
	queryParam("as_of", "string", "a date YYYY-MM-DD: the report as the data stood at the end of that day (UTC)"),
	queryParam("as_of_position", "integer", "a stream position: the report as the data stood then"),
	minPosParam,
}

func (s *Server) reportOperations() []operation {
	reportErrs := []int{400, 404, 409, 503}
	with := func(ps ...map[string]any) []map[string]any { return append(ps, asOfParams...) }
	feedParams := []map[string]any{queryParam("after", "string", "the cursor of next_url: items changed after it"),
		queryParam("iscm", "string", "only this ISCM"), queryParam("kind", "string", "only this record type, e.g. activities"),
		queryParam("limit", "integer", "1-200 (default 50)"), minPosParam}
	return []operation{
		{method: "GET", path: "/v1/reports/figures", summary: "The 2019 review's figures 2-5, 7 and 8, computed from a cycle's questionnaire answers; each count lists its ISCMs", tag: "reports", params: with(queryParam("cycle", "integer", "reporting year, e.g. 2018")), status: 200, resp: reports.Figures{}, errors: reportErrs},
		{method: "GET", path: "/v1/reports/review", summary: "What a region's ISCMs recorded in a review cycle's period", tag: "reports", params: with(queryParam("cycle", "string", "imrf-2026, regional-2024, …"), queryParam("region", "string", "e.g. Americas; empty for all")), status: 200, resp: reports.Review{}, errors: reportErrs},
		{method: "GET", path: "/v1/progress/objectives", summary: "The 23 objectives × ISCMs: position, action plan, activities; member States reached", tag: "progress", params: with(), status: 200, resp: reports.Objectives{}, errors: reportErrs},
		{method: "GET", path: "/v1/progress/states", summary: "Per State: ISCM memberships (the review's Figure 1) and their engagement", tag: "progress", params: with(), status: 200, resp: reports.States{}, errors: reportErrs},
		{method: "GET", path: "/v1/progress/states/{iso3}", summary: "One State's ISCMs and their engagement", tag: "progress", params: with(pathParam("iso3", "ISO 3166-1 alpha-3")), status: 200, resp: struct {
			Position uint64 `json:"position"`
			Scope    string `json:"scope"`
			reports.StateProgress
		}{}, errors: reportErrs},
		{method: "GET", path: "/v1/progress/recommendations", summary: "Evidence toward the review's recommendations (a)-(j) per ISCM, graded none/some/strong by the rules given", tag: "progress", params: with(), status: 200, resp: reports.Recommendations{}, errors: reportErrs},
		{method: "GET", path: "/v1/review-cycles", summary: "Regional reviews and IMRF cycles, and whether IOM closed them", tag: "reports", params: []map[string]any{minPosParam}, status: 200, resp: struct {
			Items []cycleDoc `json:"items"`
		}{}, errors: []int{503}},
		{method: "POST", path: "/v1/review-cycles/{cycle}/close", summary: "Close a cycle: records dated in its period can no longer change (423)", tag: "reports", auth: "admin", params: []map[string]any{pathParam("cycle", "imrf-2026, regional-2024, …"), idemParam, ifMatchParam}, body: note{}, status: 200, resp: command.Result{}, errors: []int{400, 401, 403, 404, 409, 412, 503}},
		{method: "POST", path: "/v1/review-cycles/{cycle}/reopen", summary: "Reopen a closed cycle", tag: "reports", auth: "admin", params: []map[string]any{pathParam("cycle", "imrf-2026, regional-2024, …"), idemParam, ifMatchParam}, body: note{}, status: 200, resp: command.Result{}, errors: []int{400, 401, 403, 404, 409, 412, 503}},
		{method: "GET", path: "/v1/feeds/published.json", summary: "JSON Feed 1.1 of published records, oldest change first, keyset-paginated by position (next_url)", tag: "feeds", params: feedParams, status: 200, resp: jsonFeedDoc{}, errors: []int{400, 503}, media: "application/feed+json"},
		{method: "GET", path: "/v1/exports/{name}", summary: "CSV or XLSX export, streamed: <record type>.csv|.xlsx (e.g. activities.xlsx) with the list filters, or figures.csv|.xlsx?cycle=YYYY", tag: "feeds", params: append([]map[string]any{pathParam("name", "activities.csv, positions.xlsx, figures.csv, …"), queryParam("cycle", "integer", "figures only: the reporting year")}, listParams()...), status: 200, errors: []int{400, 404, 503}, media: "text/csv"},
		{method: "GET", path: "/v1/feeds/published.atom", summary: "The same as Atom (RFC 4287)", tag: "feeds", params: feedParams, status: 200, errors: []int{400, 503}, media: "application/atom+xml"},
	}
}
