package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
)

// serverOwned are fields the server sets; a body may not (mass assignment).
var serverOwned = []string{"iscm", "status", "actor", "version", "id", "position", "created_at", "updated_at", "published_at", "source", "kind"}

// refuseServerFields answers 400 naming the first server-owned field a
// request body tries to set, unless the content type has a field of that
// name itself (a position's "status" is its stance on the GCM). The strict
// decoder would refuse these as unknown fields too; this says why.
func refuseServerFields(body []byte, content any) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil // the decoder reports malformed bodies
	}
	own := jsonFields(reflect.TypeOf(content))
	for _, f := range serverOwned {
		if _, sent := top[f]; sent && !own[f] {
			return problem(http.StatusBadRequest, "server-owned-field", "field \""+f+"\" is set by the server and may not be sent")
		}
	}
	return nil
}

func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}
