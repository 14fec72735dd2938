package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/projections/migrations"
	"gcmtrack/services/auth"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// newStore returns a store on a fresh, migrated database, and its pool for
// inspecting the table directly.
func newStore(t *testing.T) (*auth.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Up(ctx, pool, auth.Migrations()); err != nil {
		t.Fatal(err)
	}
	return auth.NewStore(pool), pool
}

func mustCreate(t *testing.T, s *auth.Store, nt auth.NewToken) (string, auth.Token) {
	t.Helper()
	secret, tok, err := s.Create(t.Context(), nt)
	if err != nil {
		t.Fatalf("Create(%+v): %v", nt, err)
	}
	return secret, tok
}

func TestCreateVerify(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()

	secret, tok := mustCreate(t, s, auth.NewToken{Name: "Lusaka secretariat", Role: auth.RoleSecretariat, ISCM: "zambia-2"})
	if tok.ID == uuid.Nil || tok.CreatedAt.IsZero() || tok.ExpiresAt != nil || tok.RevokedAt != nil {
		t.Errorf("new token = %+v", tok)
	}
	id, err := s.Verify(ctx, secret)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := auth.Identity{TokenID: tok.ID, Name: "Lusaka secretariat", Role: auth.RoleSecretariat, ISCM: "zambia-2"}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if got, want := id.Actor(), "token:"+tok.ID.String(); got != want {
		t.Errorf("Actor() = %q, want %q", got, want)
	}

	// The first use is recorded.
	toks, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].LastUsedAt == nil {
		t.Errorf("after Verify, List = %+v; want one token with LastUsedAt", toks)
	}

	for _, bad := range []string{"", "gcm_nope", secret + "x", strings.TrimPrefix(secret, auth.SecretPrefix)} {
		if _, err := s.Verify(ctx, bad); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(%q) = %v, want ErrInvalidToken", bad, err)
		}
	}
}

func TestLastUsedThrottled(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	secret, tok := mustCreate(t, s, auth.NewToken{Name: "busy", Role: auth.RoleMonitor})
	lastUsed := func() time.Time {
		t.Helper()
		var at time.Time
		if err := pool.QueryRow(ctx, `SELECT last_used_at FROM auth.tokens WHERE id = $1`, tok.ID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if _, err := s.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	first := lastUsed()
	if _, err := s.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(first) {
		t.Errorf("last_used_at moved from %v to %v within a minute", first, got)
	}
	// Once the recorded use is over a minute old, the next use is recorded.
	if _, err := pool.Exec(ctx, `UPDATE auth.tokens SET last_used_at = now() - interval '2 minutes' WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.After(first) {
		t.Errorf("last_used_at = %v after a use following a stale record, want later than %v", got, first)
	}
}

func TestSecretShape(t *testing.T) {
	s, _ := newStore(t)
	secret, _ := mustCreate(t, s, auth.NewToken{Name: "ops", Role: auth.RoleAdmin})
	rest, ok := strings.CutPrefix(secret, "gcm_")
	if !ok {
		t.Fatalf("secret %q lacks the gcm_ prefix", secret)
	}
	if len(rest) < 43 {
		t.Errorf("secret body has %d characters, want at least 43", len(rest))
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != 32 {
		t.Errorf("secret body %q: %d bytes, %v; want 32 bytes of unpadded base64url", rest, len(b), err)
	}
	other, _ := mustCreate(t, s, auth.NewToken{Name: "ops 2", Role: auth.RoleAdmin})
	if other == secret {
		t.Error("two tokens got the same secret")
	}
}

func TestOnlyHashStored(t *testing.T) {
	s, pool := newStore(t)
	secret, _ := mustCreate(t, s, auth.NewToken{Name: "watcher", Role: auth.RoleMonitor})
	var dump string
	if err := pool.QueryRow(t.Context(), `SELECT string_agg(t::text, ' ') FROM auth.tokens t`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	body := strings.TrimPrefix(secret, auth.SecretPrefix)
	if strings.Contains(dump, body) || strings.Contains(dump, secret) {
		t.Errorf("stored row %q contains the secret", dump)
	}
	var h []byte
	if err := pool.QueryRow(t.Context(), `SELECT hash FROM auth.tokens`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	if len(h) != 32 || bytes.Contains(h, []byte(secret)) {
		t.Errorf("stored hash %x is not a 32-byte digest", h)
	}
}

func TestExpired(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()

	short, _ := mustCreate(t, s, auth.NewToken{Name: "brief", Role: auth.RoleMonitor, TTL: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	if _, err := s.Verify(ctx, short); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify(expired by TTL) = %v, want ErrInvalidToken", err)
	}

	past, tok := mustCreate(t, s, auth.NewToken{Name: "old", Role: auth.RoleAdmin, TTL: time.Hour})
	if tok.ExpiresAt == nil || tok.ExpiresAt.Sub(tok.CreatedAt) != time.Hour {
		t.Errorf("ExpiresAt = %v, want CreatedAt + 1h (%v)", tok.ExpiresAt, tok.CreatedAt.Add(time.Hour))
	}
	if _, err := s.Verify(ctx, past); err != nil {
		t.Fatalf("Verify(live) = %v", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE auth.tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, past); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify(expired) = %v, want ErrInvalidToken", err)
	}
	if ok, err := s.HasActiveAdmin(ctx); err != nil || ok {
		t.Errorf("HasActiveAdmin with only an expired admin = %v, %v; want false", ok, err)
	}
}

func TestRevoke(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()

	secret, tok := mustCreate(t, s, auth.NewToken{Name: "admin", Role: auth.RoleAdmin})
	if ok, err := s.HasActiveAdmin(ctx); err != nil || !ok {
		t.Fatalf("HasActiveAdmin = %v, %v; want true", ok, err)
	}
	if _, err := s.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	got, err := s.Revoke(ctx, tok.ID.String())
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got.ID != tok.ID || got.RevokedAt == nil {
		t.Errorf("Revoke returned %+v", got)
	}
	if _, err := s.Verify(ctx, secret); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify(revoked) = %v, want ErrInvalidToken", err)
	}
	if ok, err := s.HasActiveAdmin(ctx); err != nil || ok {
		t.Errorf("HasActiveAdmin after revoke = %v, %v; want false", ok, err)
	}
	// Revoking again is harmless and keeps the first time.
	again, err := s.Revoke(ctx, tok.ID.String())
	if err != nil || !again.RevokedAt.Equal(*got.RevokedAt) {
		t.Errorf("second Revoke = %+v, %v; want RevokedAt %v", again, err, got.RevokedAt)
	}
}

func TestRevokeByPrefix(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()

	secret, tok := mustCreate(t, s, auth.NewToken{Name: "a", Role: auth.RoleMonitor})
	keep, _ := mustCreate(t, s, auth.NewToken{Name: "b", Role: auth.RoleMonitor})

	if _, err := s.Revoke(ctx, tok.ID.String()[:7]); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("Revoke(7-digit prefix) = %v, want ErrNotFound", err)
	}
	if _, err := s.Revoke(ctx, "zzzzzzzz"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("Revoke(non-hex) = %v, want ErrNotFound", err)
	}
	if _, err := s.Revoke(ctx, uuid.NewString()); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("Revoke(unknown id) = %v, want ErrNotFound", err)
	}
	got, err := s.Revoke(ctx, strings.ToUpper(tok.ID.String()[:8]))
	if err != nil {
		t.Fatalf("Revoke(prefix): %v", err)
	}
	if got.ID != tok.ID {
		t.Errorf("Revoke(prefix) revoked %s, want %s", got.ID, tok.ID)
	}
	if _, err := s.Verify(ctx, secret); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify(revoked) = %v, want ErrInvalidToken", err)
	}
	if _, err := s.Verify(ctx, keep); err != nil {
		t.Errorf("Verify(other token) = %v", err)
	}

	// Two tokens whose ids share their first ten digits.
	ids := []string{"deadbeef-0000-4000-8000-000000000001", "deadbeef-0000-4000-8000-000000000002"}
	for i, id := range ids {
		_, tk := mustCreate(t, s, auth.NewToken{Name: "twin", Role: auth.RoleMonitor})
		if _, err := pool.Exec(ctx, `UPDATE auth.tokens SET id = $1 WHERE id = $2`, id, tk.ID); err != nil {
			t.Fatalf("set id %d: %v", i, err)
		}
	}
	for _, p := range []string{"deadbeef", "deadbeef-00", "deadbeef00"} {
		if _, err := s.Revoke(ctx, p); !errors.Is(err, auth.ErrAmbiguous) {
			t.Errorf("Revoke(%q) = %v, want ErrAmbiguous", p, err)
		}
	}
	got, err = s.Revoke(ctx, "DEADBEEF000040008000000000000002")
	if err != nil || got.ID.String() != ids[1] {
		t.Errorf("Revoke(unique hex prefix) = %v, %v; want %s", got.ID, err, ids[1])
	}
}

func TestCreateValidation(t *testing.T) {
	s, pool := newStore(t)
	tests := []struct {
		name string
		nt   auth.NewToken
		want error
	}{
		{"unknown role", auth.NewToken{Name: "x", Role: "root"}, auth.ErrBadRole},
		{"empty role", auth.NewToken{Name: "x"}, auth.ErrBadRole},
		{"secretariat without ISCM", auth.NewToken{Name: "x", Role: auth.RoleSecretariat}, auth.ErrBadRole},
		{"admin with ISCM", auth.NewToken{Name: "x", Role: auth.RoleAdmin, ISCM: "zambia"}, auth.ErrBadRole},
		{"monitor with ISCM", auth.NewToken{Name: "x", Role: auth.RoleMonitor, ISCM: "zambia"}, auth.ErrBadRole},
		{"uppercase ISCM", auth.NewToken{Name: "x", Role: auth.RoleSecretariat, ISCM: "Zambia"}, auth.ErrInvalidInput},
		{"ISCM with space", auth.NewToken{Name: "x", Role: auth.RoleSecretariat, ISCM: "za mbia"}, auth.ErrInvalidInput},
		{"no name", auth.NewToken{Name: " ", Role: auth.RoleAdmin}, auth.ErrInvalidInput},
		{"long name", auth.NewToken{Name: strings.Repeat("é", 201), Role: auth.RoleAdmin}, auth.ErrInvalidInput},
		{"short secret", auth.NewToken{Name: "x", Role: auth.RoleAdmin, Secret: "0123456789012345678"}, auth.ErrInvalidInput},
		{"negative TTL", auth.NewToken{Name: "x", Role: auth.RoleAdmin, TTL: -time.Second}, auth.ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.Create(t.Context(), tt.nt); !errors.Is(err, tt.want) {
				t.Errorf("Create(%+v) = %v, want %v", tt.nt, err, tt.want)
			}
		})
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM auth.tokens`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d tokens stored after refused creations", n)
	}
	// The longest acceptable name, counted in characters.
	mustCreate(t, s, auth.NewToken{Name: strings.Repeat("é", 200), Role: auth.RoleAdmin})
}

func TestBootstrapSecret(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const given = "bootstrap-secret-from-the-operator"

	if ok, err := s.Exists(ctx, given); err != nil || ok {
		t.Fatalf("Exists before creation = %v, %v; want false", ok, err)
	}
	if ok, err := s.HasActiveAdmin(ctx); err != nil || ok {
		t.Fatalf("HasActiveAdmin on empty store = %v, %v; want false", ok, err)
	}
	secret, tok := mustCreate(t, s, auth.NewToken{Name: "bootstrap", Role: auth.RoleAdmin, Secret: given})
	if secret != given {
		t.Errorf("Create returned secret %q, want the given %q", secret, given)
	}
	if ok, err := s.Exists(ctx, given); err != nil || !ok {
		t.Errorf("Exists after creation = %v, %v; want true", ok, err)
	}
	id, err := s.Verify(ctx, given)
	if err != nil || id.TokenID != tok.ID || id.Role != auth.RoleAdmin {
		t.Errorf("Verify(given) = %+v, %v", id, err)
	}
	if _, _, err := s.Create(ctx, auth.NewToken{Name: "again", Role: auth.RoleAdmin, Secret: given}); !errors.Is(err, auth.ErrDuplicateSecret) {
		t.Errorf("second Create with the same secret = %v, want ErrDuplicateSecret", err)
	}
	// Revoked secrets still exist: bootstrapping must not resurrect them.
	if _, err := s.Revoke(ctx, tok.ID.String()); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(ctx, given); err != nil || !ok {
		t.Errorf("Exists after revocation = %v, %v; want true", ok, err)
	}
}

func TestListNewestFirst(t *testing.T) {
	s, _ := newStore(t)
	var want []uuid.UUID
	for _, name := range []string{"first", "second", "third"} {
		_, tok := mustCreate(t, s, auth.NewToken{Name: name, Role: auth.RoleMonitor})
		want = append([]uuid.UUID{tok.ID}, want...)
	}
	toks, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []uuid.UUID
	for _, tk := range toks {
		got = append(got, tk.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List order (-want +got):\n%s", diff)
	}
}
