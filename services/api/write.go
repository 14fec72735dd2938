package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gcmtrack/projections/engine"
	"gcmtrack/services/auth"
	"gcmtrack/services/command"
	"gcmtrack/services/idempotency"
)

// maxSecret bounds the length of a bearer token looked up: generated
// secrets have 47 characters, chosen ones rarely more than a hundred.
const maxSecret = 512

// bearer returns the secret of an Authorization header of the Bearer scheme
// (whose name is case-insensitive, RFC 9110 section 11.1).
func bearer(h string) (string, bool) {
	scheme, secret, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	secret = strings.TrimSpace(secret)
	return secret, secret != ""
}

// identity authenticates the request's bearer token, if any. No token is
// the anonymous caller (ok=false); a bad token is an error. Use
// authenticate, which does it once per request.
func (s *Server) identity(r *http.Request) (auth.Identity, bool, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Identity{}, false, nil
	}
	secret, ok := bearer(h)
	if !ok {
		return auth.Identity{}, false, unauthenticated("use Authorization: Bearer <token>")
	}
	if len(secret) > maxSecret || strings.ContainsFunc(secret, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return auth.Identity{}, false, unauthenticated("the token is unknown, expired or revoked")
	}
	if s.d.Auth == nil {
		return auth.Identity{}, false, unauthenticated("this server accepts no tokens")
	}
	id, err := s.d.Auth.Verify(r.Context(), secret)
	if errors.Is(err, auth.ErrInvalidToken) {
		return auth.Identity{}, false, unauthenticated("the token is unknown, expired or revoked")
	}
	if err != nil {
		return auth.Identity{}, false, fmt.Errorf("verify token: %w", err)
	}
	return id, true, nil
}

func unauthenticated(detail string) *Problem {
	return problem(http.StatusUnauthorized, "unauthenticated", detail)
}

// ifMatch reads the version the client saw from If-Match ("12" or 12).
func ifMatch(r *http.Request) (*uint64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return nil, nil
	}
	v = strings.TrimPrefix(v, "W/")
	n, err := strconv.ParseUint(strings.Trim(v, `"`), 10, 64)
	if err != nil {
		return nil, problem(http.StatusBadRequest, "bad-if-match", `If-Match must be a version as sent in ETag, such as "42"`)
	}
	return &n, nil
}

// command runs a write for an authenticated identity, with the request's
// idempotency key honoured: a retried request answers as before and appends
// nothing; the same key with another body is refused.
func (s *Server) command(w http.ResponseWriter, r *http.Request, id auth.Identity, name string, body []byte, status int,
	do func(ctx context.Context, m command.Meta) (command.Result, error)) error {
	start := time.Now()
	im, err := ifMatch(r)
	if err != nil {
		return err
	}
	m := command.Meta{Actor: id.Actor(), CorrelationID: correlationID(r.Context()), IfMatch: im}
	clientKey := r.Header.Get("Idempotency-Key")
	var claim *idempotency.Claim
	if clientKey != "" {
		if len(clientKey) > 255 || strings.ContainsFunc(clientKey, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
			return problem(http.StatusBadRequest, "bad-idempotency-key", "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
		}
		key := idempotency.Key(id.Actor(), clientKey)
		c, replay, err := s.d.Keys.Begin(r.Context(), key, idempotency.RequestHash(r.Method, r.URL.Path, body))
		switch {
		case errors.Is(err, idempotency.ErrMismatch):
			return problem(http.StatusUnprocessableEntity, "idempotency-key-reused", "this Idempotency-Key was used with a different request")
		case errors.Is(err, idempotency.ErrInProgress):
			w.Header().Set("Retry-After", "1")
			return problem(http.StatusConflict, "idempotency-in-progress", "a request with this Idempotency-Key is still in progress; retry shortly")
		case err != nil:
			return fmt.Errorf("idempotency: %w", err)
		case replay != nil:
			for k, v := range replay.Header {
				w.Header().Set(k, v)
			}
			notePosition(r, replay.Header["Gcm-Position"])
			var p Problem
			if replay.Status >= 400 && json.Unmarshal(replay.Body, &p) == nil {
				noteProblem(r, &p)
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(replay.Status)
			_, err := w.Write(replay.Body)
			return err
		}
		claim = c
		m.MsgID = key
	}

	res, cmdErr := do(r.Context(), m)
	outcome := "ok"
	var out idempotency.Outcome
	if cmdErr != nil {
		outcome = "refused"
		p := errProblem(cmdErr)
		p.Instance = r.URL.Path
		if p.Status >= 500 {
			outcome = "error"
			s.d.Logger.ErrorContext(r.Context(), "command failed", "command", name, "err", cmdErr, "correlation_id", m.CorrelationID)
		}
		noteProblem(r, p)
		out = idempotency.Outcome{Status: p.Status, Header: map[string]string{"Content-Type": "application/problem+json"}}
		out.Body, _ = marshalLine(p)
	} else {
		out = idempotency.Outcome{Status: status, Header: map[string]string{
			"Content-Type": "application/json",
			"ETag":         etag(res.Version),
			"Gcm-Position": strconv.FormatUint(res.Position, 10),
		}}
		out.Body, err = marshalLine(res)
		if err != nil {
			return err
		}
		exchangeOf(r).position = res.Position
	}
	s.metrics.commands.WithLabelValues(name, outcome).Observe(time.Since(start).Seconds())
	if claim != nil {
		// A server-side failure may be retried with the same key; any other
		// answer is final and replayed.
		ctx := context.WithoutCancel(r.Context())
		if out.Status >= 500 {
			if err := s.d.Keys.Release(ctx, claim); err != nil {
				s.d.Logger.WarnContext(ctx, "release idempotency key", "err", err)
			}
		} else if err := s.d.Keys.Finish(ctx, claim, out); err != nil {
			s.d.Logger.WarnContext(ctx, "store idempotency outcome", "err", err)
		}
	}
	for k, v := range out.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(out.Status)
	_, err = w.Write(out.Body)
	return err
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// minPosition reads the position a read must reflect, from the query
// parameter min_position or the Gcm-Min-Position header.
func minPosition(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("min_position")
	if v == "" {
		v = r.Header.Get("Gcm-Min-Position")
	}
	if v == "" {
		return 0, nil
	}
	return parseUint("min_position", v)
}

// awaitPosition waits, bounded, until the named projections have applied the
// stream up to the request's min_position: a client reads its own writes.
func (s *Server) awaitPosition(r *http.Request, names ...string) error {
	want, err := minPosition(r)
	if err != nil || want == 0 {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), s.d.WaitTimeout)
	defer cancel()
	delay := 2 * time.Millisecond
	for {
		have, err := engine.ActivePosition(ctx, s.d.Pool, names)
		if err == nil && have >= want {
			s.metrics.waits.WithLabelValues("reached").Observe(time.Since(start).Seconds())
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			s.metrics.waits.WithLabelValues("timeout").Observe(time.Since(start).Seconds())
			return problem(http.StatusServiceUnavailable, "not-yet-visible",
				fmt.Sprintf("the read models have not reached position %d yet; retry shortly", want))
		case <-t.C:
		}
		delay = min(delay*2, 25*time.Millisecond)
	}
}
