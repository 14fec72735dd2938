// Package auth issues, stores and verifies GCM Tracker's API tokens.
//
// A token grants one access role: admin (IOM), monitor (reads everything,
// drafts included, writes nothing) or secretariat (bound to one ISCM).
// Requests without a token are anonymous. Tokens are issued by the command
// line, their secret is shown once, and only its SHA-256 is stored: a leaked
// table does not leak usable credentials.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"gcmtrack/projections/migrations"
)

// Roles a token can carry.
const (
	// RoleAdmin is IOM staff: full access.
	RoleAdmin = "admin"
	// RoleMonitor reads everything, drafts included, and writes nothing.
	RoleMonitor = "monitor"
	// RoleSecretariat is an ISCM secretariat, bound to that ISCM's slug.
	RoleSecretariat = "secretariat"
)

// SecretPrefix starts every generated secret, so that leaked tokens are easy
// to recognise in logs and by secret scanners.
const SecretPrefix = "gcm_"

const (
	secretBytes     = 32  // 256 bits of entropy
	minSecretLen    = 20  // shortest secret a caller may supply
	maxNameLen      = 200 // characters
	minPrefixDigits = 8   // shortest id prefix Revoke accepts
	// lastUsedEvery bounds how often Verify writes last_used_at, so that a
	// busy token does not turn every request into a row update.
	lastUsedEvery = time.Minute
)

// Errors callers branch on.
var (
	// ErrInvalidToken is returned by Verify for a secret that is unknown,
	// revoked or expired. The cases are deliberately not told apart so that
	// the answer reveals nothing about which secrets once existed.
	ErrInvalidToken = errors.New("invalid token")
	// ErrNotFound means no token matches the given id or prefix.
	ErrNotFound = errors.New("token not found")
	// ErrAmbiguous means an id prefix matches more than one token.
	ErrAmbiguous = errors.New("token id prefix is ambiguous")
	// ErrBadRole means the role is unknown or does not fit the ISCM binding:
	// a secretariat token needs an ISCM, admin and monitor tokens must not
	// have one.
	ErrBadRole = errors.New("bad role")
	// ErrInvalidInput means another field of a new token is unacceptable: a
	// missing or overlong name, a malformed ISCM slug, a short secret or a
	// negative lifetime.
	ErrInvalidInput = errors.New("invalid token input")
	// ErrDuplicateSecret means a supplied secret is already stored.
	ErrDuplicateSecret = errors.New("secret already in use")
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// Migrations is the package's migration set: schema auth and its tables.
func Migrations() migrations.Set {
	// fs.Sub fails only for an invalid path name, and "sql" is a valid one.
	sub, _ := fs.Sub(sqlFiles, "sql")
	return migrations.Set{Name: "auth", Files: sub}
}

// Identity is who a verified token speaks for.
type Identity struct {
	TokenID uuid.UUID
	Name    string
	Role    string
	ISCM    string // the bound ISCM's slug; set only for secretariat
}

// Actor is the identity as events record it: "token:<uuid>". The token id is
// stable and never reused, unlike its display name.
func (i Identity) Actor() string { return "token:" + i.TokenID.String() }

// Token is a stored token, without its secret.
type Token struct {
	ID         uuid.UUID
	Name       string
	Role       string
	ISCM       string // set only for secretariat
	CreatedAt  time.Time
	ExpiresAt  *time.Time // nil: never expires
	RevokedAt  *time.Time // nil: not revoked
	LastUsedAt *time.Time // nil: never used; updated at most once a minute
}

// NewToken describes a token to issue.
type NewToken struct {
	Name string
	Role string
	ISCM string        // required for secretariat, empty otherwise
	TTL  time.Duration // lifetime; 0 means no expiry
	// Secret, when set, is used instead of a random secret. It exists for
	// bootstrapping an installation from a secret the operator provides.
	Secret string
}

// Store keeps tokens in PostgreSQL. While Listen runs, it also keeps the
// tokens it verified in memory (see Listen).
type Store struct {
	pool        *pgxpool.Pool
	cache       tokenCache
	listenRetry time.Duration
}

// NewStore returns a store on pool; the auth migrations must have been
// applied.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool, listenRetry: listenRetry} }

// tokenColumns is what scanToken reads, in order.
const tokenColumns = `id, name, role, coalesce(iscm, ''), created_at, expires_at, revoked_at, last_used_at`

func scanToken(row pgx.Row) (Token, error) {
	var t Token
	err := row.Scan(&t.ID, &t.Name, &t.Role, &t.ISCM, &t.CreatedAt, &t.ExpiresAt, &t.RevokedAt, &t.LastUsedAt)
	return t, err
}

// Create issues a token and returns its secret, which is not stored and
// cannot be shown again.
func (s *Store) Create(ctx context.Context, nt NewToken) (string, Token, error) {
	if err := validate(nt); err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	secret := nt.Secret
	if secret == "" {
		var err error
		if secret, err = newSecret(); err != nil {
			return "", Token{}, fmt.Errorf("create token: %w", err)
		}
	}
	// Random (version 4) ids rather than time-ordered ones: tokens are
	// revoked by id prefix, and time-ordered ids issued in the same weeks
	// share their first digits.
	id, err := uuid.NewRandom()
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	var iscm *string
	if nt.ISCM != "" {
		iscm = &nt.ISCM
	}
	ttl := nt.TTL.Microseconds()
	if nt.TTL > 0 && ttl == 0 {
		ttl = 1 // a sub-microsecond lifetime must still expire, not mean "never"
	}
	h := hash(secret)
	row := s.pool.QueryRow(ctx, `
		INSERT INTO auth.tokens (id, name, role, iscm, hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, now(),
		        CASE WHEN $6::bigint > 0 THEN now() + $6::bigint * interval '1 microsecond' END)
		RETURNING `+tokenColumns,
		id, nt.Name, nt.Role, iscm, h[:], ttl)
	tok, err := scanToken(row)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "tokens_hash_key" {
			return "", Token{}, fmt.Errorf("create token: %w", ErrDuplicateSecret)
		}
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	return secret, tok, nil
}

// validate checks a new token's fields before they reach the database,
// whose constraints repeat the essential ones.
func validate(nt NewToken) error {
	switch nt.Role {
	case RoleAdmin, RoleMonitor:
		if nt.ISCM != "" {
			return fmt.Errorf("%w: %s tokens are not bound to an ISCM", ErrBadRole, nt.Role)
		}
	case RoleSecretariat:
		if nt.ISCM == "" {
			return fmt.Errorf("%w: secretariat tokens need an ISCM", ErrBadRole)
		}
		if !validSlug(nt.ISCM) {
			return fmt.Errorf("%w: ISCM %q is not a slug of a-z, 0-9 and -", ErrInvalidInput, nt.ISCM)
		}
	default:
		return fmt.Errorf("%w: %q (want %s, %s or %s)", ErrBadRole, nt.Role, RoleAdmin, RoleMonitor, RoleSecretariat)
	}
	if strings.TrimSpace(nt.Name) == "" {
		return fmt.Errorf("%w: name is required", ErrInvalidInput)
	}
	if utf8.RuneCountInString(nt.Name) > maxNameLen {
		return fmt.Errorf("%w: name is longer than %d characters", ErrInvalidInput, maxNameLen)
	}
	if nt.Secret != "" && len(nt.Secret) < minSecretLen {
		return fmt.Errorf("%w: secret is shorter than %d characters", ErrInvalidInput, minSecretLen)
	}
	if nt.TTL < 0 {
		return fmt.Errorf("%w: negative lifetime %s", ErrInvalidInput, nt.TTL)
	}
	return nil
}

// validSlug reports whether s is a non-empty run of [a-z0-9-]. Whether the
// ISCM exists is the caller's business.
func validSlug(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// hash is the stored form of a secret. A plain SHA-256 suffices: secrets
// carry at least 20 characters (generated ones 256 bits), far beyond what a
// slow password hash would protect against guessing.
func hash(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// List returns every token, revoked and expired ones included, newest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM auth.tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	toks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return toks, nil
}

// Revoke revokes the token whose id is idOrPrefix, or starts with it (at
// least 8 hex digits; hyphens are ignored). It takes effect at once in this
// process, and in the others as soon as PostgreSQL delivers the
// notification its transaction sends (see Listen). Revoking a revoked token
// keeps the original revocation time.
func (s *Store) Revoke(ctx context.Context, idOrPrefix string) (Token, error) {
	prefix, err := idPrefix(idOrPrefix)
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	var tok Token
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT id FROM auth.tokens WHERE replace(id::text, '-', '') LIKE $1 || '%' LIMIT 2`, prefix)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		switch len(ids) {
		case 0:
			return fmt.Errorf("%w: %s", ErrNotFound, idOrPrefix)
		case 1:
		default:
			return fmt.Errorf("%w: %s", ErrAmbiguous, idOrPrefix)
		}
		tok, err = scanToken(tx.QueryRow(ctx, `
			UPDATE auth.tokens SET revoked_at = coalesce(revoked_at, now())
			WHERE id = $1 RETURNING `+tokenColumns, ids[0]))
		return err
	})
	// Whatever the outcome, this process's cache must not outlive a
	// revocation that may have committed.
	s.cache.invalidate()
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	return tok, nil
}

// idPrefix turns a full id or an id prefix into lowercase hex digits without
// hyphens, which also keeps LIKE wildcards out of the query.
func idPrefix(s string) (string, error) {
	if id, err := uuid.Parse(s); err == nil {
		return strings.ReplaceAll(id.String(), "-", ""), nil
	}
	p := strings.ToLower(strings.ReplaceAll(s, "-", ""))
	for _, c := range p {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: %q is not a token id", ErrNotFound, s)
		}
	}
	if len(p) < minPrefixDigits {
		return "", fmt.Errorf("%w: %q: give the full id or at least %d hex digits", ErrNotFound, s, minPrefixDigits)
	}
	return p, nil
}

// Verify returns the identity of a live token's secret, or ErrInvalidToken.
// The lookup is by the secret's hash through a unique index, so no secret
// comparison happens in Go where its timing could leak. While Listen keeps
// the cache, a token verified in the last minute is answered from memory,
// its expiry checked against the clock.
func (s *Store) Verify(ctx context.Context, secret string) (Identity, error) {
	if secret == "" {
		return Identity{}, fmt.Errorf("verify token: %w", ErrInvalidToken)
	}
	h := hash(secret)
	now := time.Now()
	if id, ok := s.cache.get(h, now); ok {
		return id, nil
	}
	gen, cacheable := s.cache.begin(now)
	// One round trip: find the live token and, when its last use is older
	// than lastUsedEvery, record this one. Recent uses write nothing.
	var id Identity
	var expires *time.Time
	err := s.pool.QueryRow(ctx, `
		WITH t AS (
			SELECT id, name, role, iscm, expires_at, last_used_at FROM auth.tokens
			WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
		), touched AS (
			UPDATE auth.tokens SET last_used_at = now() FROM t
			WHERE auth.tokens.id = t.id
			  AND (t.last_used_at IS NULL OR t.last_used_at < now() - $2::bigint * interval '1 microsecond')
		)
		SELECT id, name, role, coalesce(iscm, ''), expires_at FROM t`,
		h[:], lastUsedEvery.Microseconds()).Scan(&id.TokenID, &id.Name, &id.Role, &id.ISCM, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Identity{}, fmt.Errorf("verify token: %w", ErrInvalidToken)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("verify token: %w", err)
	}
	if cacheable {
		e := cachedToken{id: id, read: now}
		if expires != nil {
			e.expires = *expires
		}
		s.cache.put(h, gen, e)
	}
	return id, nil
}

// HasActiveAdmin reports whether some admin token is neither revoked nor
// expired, which tells whether an installation still needs bootstrapping.
func (s *Store) HasActiveAdmin(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM auth.tokens
		               WHERE role = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))`,
		RoleAdmin).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check admin tokens: %w", err)
	}
	return ok, nil
}

// Exists reports whether this exact secret is stored, live or not, so that
// bootstrapping from a given secret can be repeated harmlessly.
func (s *Store) Exists(ctx context.Context, secret string) (bool, error) {
	h := hash(secret)
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.tokens WHERE hash = $1)`, h[:]).Scan(&ok); err != nil {
		return false, fmt.Errorf("check token: %w", err)
	}
	return ok, nil
}
