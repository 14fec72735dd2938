package api

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// The API never logs a request's Authorization header. In case a value
// holding a token secret reaches a log record all the same (an error that
// quotes its input, a panic value), the API's logger masks secrets in every
// record: anything shaped like a generated secret, and the secret of the
// request the record is logged for, whatever its shape (operators may
// choose bootstrap secrets).

// secretRE matches a generated token secret (auth.SecretPrefix and the
// base64url of 32 bytes), or anything long enough that looks like one.
var secretRE = regexp.MustCompile(`gcm_[A-Za-z0-9_-]{16,}`)

const redacted = "[redacted]"

// redactSecrets masks what looks like a generated token secret in s.
func redactSecrets(s string) string {
	if !strings.Contains(s, "gcm_") {
		return s
	}
	return secretRE.ReplaceAllString(s, redacted)
}

// redactingHandler masks token secrets in every record it passes on.
type redactingHandler struct {
	next slog.Handler
}

// newRedactingLogger wraps a logger's handler, once.
func newRedactingLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(redactingHandler); ok {
		return l
	}
	return slog.New(redactingHandler{next: l.Handler()})
}

func (h redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	bearer := ""
	if ex, ok := ctx.Value(exchangeKey).(*exchange); ok {
		bearer = ex.bearer
	}
	out := slog.NewRecord(rec.Time, rec.Level, redactString(rec.Message, bearer), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a, bearer))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = redactAttr(a, "")
	}
	return redactingHandler{next: h.next.WithAttrs(clean)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{next: h.next.WithGroup(name)}
}

func redactString(s, bearer string) string {
	if bearer != "" && strings.Contains(s, bearer) {
		s = strings.ReplaceAll(s, bearer, redacted)
	}
	return redactSecrets(s)
}

// redactAttr masks secrets in an attribute's value. Values of other kinds
// than strings and groups are formatted as a string only when that string
// holds a secret.
func redactAttr(a slog.Attr, bearer string) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redactString(v.String(), bearer))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, ga := range g {
			out[i] = redactAttr(ga, bearer)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		s := fmt.Sprint(v.Any())
		if r := redactString(s, bearer); r != s {
			return slog.String(a.Key, r)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
