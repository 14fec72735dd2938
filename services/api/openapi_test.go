package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// validator checks JSON values against the OpenAPI document's schemas:
// types, required properties, enums, and no undocumented properties.
type validator struct {
	schemas map[string]any
}

// check validates val against schema. strict refuses properties the schema
// does not document; parts of an allOf are checked leniently and the whole
// strictly.
func (v validator) check(path string, schema map[string]any, val any, strict bool) []string {
	schema = v.resolve(schema)
	if branches, ok := schema["anyOf"].([]any); ok {
		var first []string
		for i, b := range branches {
			errs := v.check(path, b.(map[string]any), val, strict)
			if len(errs) == 0 {
				return nil
			}
			if i == 0 {
				first = errs
			}
		}
		return first
	}
	if all, ok := schema["allOf"].([]any); ok {
		var errs []string
		for _, part := range all {
			errs = append(errs, v.check(path, part.(map[string]any), val, false)...)
		}
		if obj, ok := val.(map[string]any); ok && strict {
			known := v.properties(schema)
			for k := range obj {
				if _, ok := known[k]; !ok {
					errs = append(errs, path+": undocumented property "+k)
				}
			}
		}
		return errs
	}
	if enum, ok := schema["enum"].([]any); ok {
		for _, e := range enum {
			if e == val {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s: %v is not in the enum %v", path, val, enum)}
	}
	var types []string
	switch t := schema["type"].(type) {
	case string:
		types = append(types, t)
	case []any:
		for _, x := range t {
			types = append(types, x.(string))
		}
	}
	if len(types) == 0 {
		return nil
	}
	for _, t := range types {
		if matches(t, val) {
			return v.inner(path, t, schema, val, strict)
		}
	}
	return []string{fmt.Sprintf("%s: %T is not %v", path, val, types)}
}

func (v validator) resolve(s map[string]any) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		return v.resolve(v.schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any))
	}
	return s
}

// properties collects the properties a schema allows, through allOf.
func (v validator) properties(s map[string]any) map[string]any {
	s = v.resolve(s)
	out := map[string]any{}
	if ps, ok := s["properties"].(map[string]any); ok {
		for k, x := range ps {
			out[k] = x
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, part := range all {
			for k, x := range v.properties(part.(map[string]any)) {
				out[k] = x
			}
		}
	}
	return out
}

func matches(t string, val any) bool {
	switch t {
	case "null":
		return val == nil
	case "object":
		_, ok := val.(map[string]any)
		return ok
	case "array":
		_, ok := val.([]any)
		return ok
	case "string":
		_, ok := val.(string)
		return ok
	case "integer":
		f, ok := val.(float64)
		return ok && f == float64(int64(f))
	case "number":
		_, ok := val.(float64)
		return ok
	case "boolean":
		_, ok := val.(bool)
		return ok
	}
	return false
}

func (v validator) inner(path, t string, schema map[string]any, val any, strict bool) []string {
	var errs []string
	switch t {
	case "object":
		obj := val.(map[string]any)
		props, _ := schema["properties"].(map[string]any)
		if req, ok := schema["required"].([]any); ok {
			for _, r := range req {
				if _, ok := obj[r.(string)]; !ok {
					errs = append(errs, path+": missing required "+r.(string))
				}
			}
		}
		for k, x := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, v.check(path+"."+k, ps, x, true)...)
			} else if ap, ok := schema["additionalProperties"].(map[string]any); ok {
				errs = append(errs, v.check(path+"."+k, ap, x, true)...)
			} else if strict && schema["additionalProperties"] == false {
				errs = append(errs, path+": undocumented property "+k)
			}
		}
	case "array":
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range val.([]any) {
				errs = append(errs, v.check(path+"["+strconv.Itoa(i)+"]", items, x, true)...)
			}
		}
	}
	return errs
}

// TestResponsesMatchTheOpenAPIDocument sends real requests and checks each
// answer's status is documented for its route and its body matches the
// documented schema.
func TestResponsesMatchTheOpenAPIDocument(t *testing.T) {
	s := newStack(t)
	var doc struct {
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(s.do(t, "GET", "/openapi.json", "", "", nil).Body, &doc); err != nil {
		t.Fatal(err)
	}
	v := validator{schemas: doc.Components.Schemas}
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX"}`, nil), 201)
	act := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities", s.secret2, recordBodies["activities"][0], nil), 201)
	plan := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/action-plans", s.secret2, recordBodies["action-plans"][0], nil), 201)
	q := s.mustOK(t, s.do(t, "PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", s.secret2, exampleResponse(t), nil), 200)
	pos := uint64(q["position"].(float64))
	calls := []struct{ method, path, route, body, token string }{
		{"GET", "/v1/catalog", "/v1/catalog", "", ""},
		{"GET", "/healthz", "/healthz", "", ""},
		{"GET", fmt.Sprintf("/v1/iscms?min_position=%d", pos), "/v1/iscms", "", ""},
		{"GET", "/v1/iscms/puebla-process", "/v1/iscms/{slug}", "", s.admin},
		{"GET", "/v1/iscms/nope", "/v1/iscms/{slug}", "", ""},
		{"GET", "/v1/states/MEX", "/v1/states/{iso3}", "", ""},
		{"GET", "/v1/activities", "/v1/activities", "", s.admin},
		{"GET", "/v1/iscms/puebla-process/activities/" + act["id"].(string), "/v1/iscms/{slug}/activities/{id}", "", s.admin},
		{"GET", "/v1/iscms/puebla-process/action-plans/" + plan["id"].(string), "/v1/iscms/{slug}/action-plans/{id}", "", s.admin},
		{"GET", "/v1/iscms/puebla-process/activities/" + act["id"].(string) + "/history", "/v1/iscms/{slug}/activities/{id}/history", "", s.admin},
		{"GET", "/v1/iscms/puebla-process/timeline", "/v1/iscms/{slug}/timeline", "", s.admin},
		{"GET", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", "/v1/iscms/{slug}/questionnaires/{cycle}/{channel}", "", s.admin},
		{"POST", "/v1/iscms/puebla-process/partnerships", "/v1/iscms/{slug}/partnerships", recordBodies["partnerships"][0], s.secret2},
		{"POST", "/v1/iscms/puebla-process/partnerships", "/v1/iscms/{slug}/partnerships", `{"partner":""}`, s.secret2},
		{"POST", "/v1/iscms/puebla-process/activities/" + act["id"].(string) + "/submit", "/v1/iscms/{slug}/activities/{id}/submit", "", s.secret2},
		{"POST", "/v1/iscms/puebla-process/activities/" + act["id"].(string) + "/submit", "/v1/iscms/{slug}/activities/{id}/submit", "", s.secret2},
	}
	for _, c := range calls {
		r := s.do(t, c.method, c.path, c.token, c.body, nil)
		op, ok := doc.Paths[c.route][strings.ToLower(c.method)]
		if !ok {
			t.Errorf("%s %s: not documented", c.method, c.route)
			continue
		}
		resp, ok := op["responses"].(map[string]any)[strconv.Itoa(r.Status)].(map[string]any)
		if !ok {
			t.Errorf("%s %s answered %d, which is not documented", c.method, c.path, r.Status)
			continue
		}
		content, _ := resp["content"].(map[string]any)
		ct := strings.Split(r.Header.Get("Content-Type"), ";")[0]
		media, ok := content[ct].(map[string]any)
		if !ok {
			t.Errorf("%s %s: %d with %s is not documented (have %v)", c.method, c.path, r.Status, ct, content)
			continue
		}
		schema, _ := media["schema"].(map[string]any)
		if schema == nil {
			continue
		}
		var body any
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Errorf("%s %s: %v", c.method, c.path, err)
			continue
		}
		for _, e := range v.check("body", schema, body, true) {
			t.Errorf("%s %s (%d): %s", c.method, c.path, r.Status, e)
		}
	}
}
