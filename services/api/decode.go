package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"gcmtrack/events"
)

// Limits of a request body: its size, and the shape of its JSON, which is
// checked before anything decodes it.
const (
	maxBody  = 1 << 20 // bytes
	maxDepth = 32      // nested objects and arrays
	maxArray = 1000    // elements of any one array
)

// readBody reads a JSON request body within the size cap, after checking
// its content type, and checks its shape. A body announced larger than the
// cap is refused unread; one that turns out larger is read no further than
// the cap, so an oversized body costs at most maxBody bytes of memory.
func readBody(r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, problem(http.StatusUnsupportedMediaType, "unsupported-media-type",
			fmt.Sprintf("Content-Type %q is not accepted: send application/json", ct))
	}
	tooLarge := problem(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("the body is larger than %d bytes", maxBody))
	if r.ContentLength > maxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge
		}
		return nil, problem(http.StatusBadRequest, "bad-body", "the body could not be read")
	}
	if err := checkShape(body); err != nil {
		return nil, err
	}
	return body, nil
}

// checkShape walks the body's JSON tokens, without decoding values into
// anything, and refuses nesting deeper than maxDepth and arrays longer than
// maxArray: the decoders that follow then never work on such input. It also
// refuses strings holding a NUL character (\u0000), which PostgreSQL's text
// cannot store: an event carrying one could never be projected. A syntax
// error ends the walk quietly; the decoder reports it with its position.
func checkShape(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers stay text: nothing is converted
	// counts[i] is the number of elements seen so far in the array open at
	// depth i, or -1 for an object.
	var counts []int
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or malformed JSON the decoder reports
		}
		if str, ok := tok.(string); ok && strings.ContainsRune(str, 0) {
			return problem(http.StatusBadRequest, "nul-character", `a string holds a NUL character (\u0000), which is not accepted`)
		}
		d, isDelim := tok.(json.Delim)
		if isDelim && (d == '}' || d == ']') {
			counts = counts[:len(counts)-1]
			continue
		}
		if n := len(counts); n > 0 && counts[n-1] >= 0 {
			counts[n-1]++
			if counts[n-1] > maxArray {
				return problem(http.StatusBadRequest, "too-many-elements",
					fmt.Sprintf("an array holds more than %d elements, the limit", maxArray))
			}
		}
		if isDelim {
			if len(counts) == maxDepth {
				return problem(http.StatusBadRequest, "too-deep",
					fmt.Sprintf("the JSON nests objects and arrays deeper than %d levels, the limit", maxDepth))
			}
			if d == '[' {
				counts = append(counts, 0)
			} else {
				counts = append(counts, -1)
			}
		}
	}
}

// decodeStrict decodes one JSON object into dst, refusing unknown fields and
// trailing data.
func decodeStrict(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return problem(http.StatusBadRequest, "malformed-json", jsonDetail(err))
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return problem(http.StatusBadRequest, "malformed-json", "the body holds data after the JSON object")
	}
	return nil
}

// jsonDetail says what is wrong with a body in terms a client can act on.
func jsonDetail(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ) && typ.Type == reflect.TypeFor[events.Date]():
		return fmt.Sprintf("field %q: %s is not a date: want YYYY-MM-DD", typ.Field, typ.Value)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q: expected %s, got JSON %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("expected %s, got JSON %s", typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "the body is empty: send a JSON object"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON: " + err.Error()
}
