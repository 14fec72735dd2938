package configtest

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"gcmtrack/deploy/embedded/pgcluster"
)

// pgServer is a private PostgreSQL cluster with its superuser, which
// roles.sql needs (the shared test databases' role may not create roles).
type pgServer struct {
	host    string // 127.0.0.1:port
	superPW string
}

// startPostgres starts a cluster in a temporary directory and stops it when
// the test ends.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	tmp, err := os.MkdirTemp("", "gcmtrack-configtest-pg-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	// The server may run as another OS user (postgres, when the tests run
	// as root) that must traverse the directory.
	if err := os.Chmod(tmp, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "pg")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: dir})
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	// The package keeps the superuser's password in superuser.pw.
	pw, err := os.ReadFile(filepath.Join(dir, "superuser.pw"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	return &pgServer{host: u.Host, superPW: strings.TrimSpace(string(pw))}
}

func (p *pgServer) url(user, password, database string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: p.host, Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

func (p *pgServer) superURL(database string) string { return p.url("postgres", p.superPW, database) }

func pgConnect(t *testing.T, connURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func pgExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// The database roles of deploy/postgres, as the deployment uses them.
var pgRoles = []string{"gcm_owner", "gcm_projector", "gcm_api"}

// pgDatabase is the application database; the cluster's own "gcmtrack"
// database belongs to its embedded set-up.
const pgDatabase = "gcmtrack_prod"

func pgPassword(role string) string { return "pw-" + role }

// setUpDatabase creates the application database, runs roles.sql in it twice
// (it must be idempotent) and gives the roles passwords. It returns the
// connection URL of each role.
func setUpDatabase(t *testing.T, pg *pgServer) map[string]string {
	t.Helper()
	admin := pgConnect(t, pg.superURL("postgres"))
	pgExec(t, admin, "CREATE DATABASE "+pgDatabase)
	conn := pgConnect(t, pg.superURL(pgDatabase))
	script := string(readFile(t, deployPath("postgres", "roles.sql")))
	for range 2 {
		pgExec(t, conn, script)
	}
	urls := map[string]string{}
	for _, role := range pgRoles {
		pgExec(t, conn, "ALTER ROLE "+role+" PASSWORD '"+pgPassword(role)+"'")
		urls[role] = pg.url(role, pgPassword(role), pgDatabase)
	}
	return urls
}

// pgAllowed runs stmt as the connection's role in a transaction that is
// rolled back, and reports whether PostgreSQL allowed it. An error other
// than a refused privilege fails the test.
func pgAllowed(t *testing.T, conn *pgx.Conn, stmt string) bool {
	t.Helper()
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(t.Context(), stmt)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return true
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		return false
	default:
		t.Fatalf("%s: %v", stmt, err)
		return false
	}
}

// checkPrivileges asserts what each role may do once the system has run:
// the migrations applied by gcm_owner, the projection schemas created by
// the projector.
func checkPrivileges(t *testing.T, urls map[string]string, buildSchema string) {
	t.Helper()
	view := "registry.iscms"
	table := pgx.Identifier{buildSchema, "iscms"}.Sanitize()
	row := `('x', 'x', 'x', 'rcp', 'x', 1, now(), now())`
	cases := []struct {
		role, stmt string
		allowed    bool
	}{
		{"gcm_api", "SELECT count(*) FROM " + view, true},
		{"gcm_api", "SELECT count(*) FROM registry.memberships", true},
		{"gcm_api", "SELECT count(*) FROM " + table, true},
		{"gcm_api", "SELECT count(*) FROM gcm.projection_builds", true},
		{"gcm_api", "SELECT count(*) FROM gcm.dead_letters", true},
		{"gcm_api", "SELECT count(*) FROM public.goose_engine", true},
		{"gcm_api", "UPDATE auth.tokens SET last_used_at = now()", true},
		{"gcm_api", "INSERT INTO auth.audit (at, actor, role, method, path, route, status, outcome, correlation_id, client_addr) VALUES (now(), 'anonymous', 'anonymous', 'POST', '/v1/x', 'unmatched', 404, 'refused', 'c', '127.0.0.1')", true},
		{"gcm_api", "SELECT count(*) FROM auth.audit", true},
		{"gcm_api", "UPDATE auth.audit SET status = 200", false},
		{"gcm_api", "DELETE FROM auth.audit", false},
		{"gcm_api", "TRUNCATE auth.audit", false},
		{"gcm_api", "INSERT INTO " + view + " VALUES " + row, false},
		{"gcm_api", "INSERT INTO " + table + " VALUES " + row, false},
		{"gcm_api", "UPDATE " + view + " SET version = 0", false},
		{"gcm_api", "DELETE FROM " + table, false},
		{"gcm_api", "UPDATE gcm.projection_builds SET position = 0", false},
		{"gcm_api", "DELETE FROM gcm.dead_letters", false},
		{"gcm_api", "DELETE FROM auth.tokens", false},
		{"gcm_api", "DELETE FROM public.goose_engine", false},
		{"gcm_api", "CREATE SCHEMA p_registry_99", false},
		{"gcm_api", "CREATE TABLE public.x (i int)", false},
		{"gcm_api", "DROP VIEW " + view, false},

		{"gcm_projector", "SELECT count(*) FROM auth.tokens", false},
		{"gcm_projector", "SELECT count(*) FROM auth.audit", false},
		{"gcm_projector", "UPDATE gcm.projection_builds SET updated_at = now()", true},
		{"gcm_projector", "INSERT INTO gcm.dead_letters (name, generation, position, subject, event_id, event_type, error, data) VALUES ('x', 1, 1, 's', 'e', 't', 'err', '')", true},
		{"gcm_projector", "DELETE FROM gcm.dead_letters", true},
		{"gcm_projector", "CREATE SCHEMA p_registry_99", true},
		{"gcm_projector", "DROP TABLE gcm.dead_letters", false},
		{"gcm_projector", "CREATE TABLE public.x (i int)", false},
		{"gcm_projector", "DELETE FROM public.goose_engine", false},

		{"gcm_owner", "SELECT count(*) FROM " + table, false},
		// The owner may change its tables, but the audit log's trigger
		// refuses to change or remove entries.
		{"gcm_owner", "DELETE FROM auth.audit", false},
		{"gcm_owner", "UPDATE auth.audit SET status = 200", false},
		{"gcm_owner", "TRUNCATE auth.audit", false},
		{"gcm_owner", "CREATE ROLE intruder", false},
	}
	conns := map[string]*pgx.Conn{}
	for _, role := range pgRoles {
		conns[role] = pgConnect(t, urls[role])
	}
	for _, c := range cases {
		if got := pgAllowed(t, conns[c.role], c.stmt); got != c.allowed {
			t.Errorf("%s: %s: allowed %v, want %v", c.role, c.stmt, got, c.allowed)
		}
	}
}

// confLineRE is one setting of a postgresql.conf file: name = value, with an
// optional comment.
var confLineRE = regexp.MustCompile(`^([a-z_]+)\s*=\s*('(?:[^']|'')*'|[^\s#']+)\s*(?:#.*)?$`)

// TestPostgresConf checks deploy/postgres/postgresql.conf against the
// parameters of a running server: every name exists, enum and boolean
// values are among those it accepts, numbers carry units it knows.
func TestPostgresConf(t *testing.T) {
	path := deployPath("postgres", "postgresql.conf")
	settings := map[string]string{}
	for i, line := range strings.Split(string(readFile(t, path)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := confLineRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s:%d: not a setting: %s", path, i+1, line)
			continue
		}
		if _, dup := settings[m[1]]; dup {
			t.Errorf("%s:%d: %s set twice", path, i+1, m[1])
		}
		settings[m[1]] = strings.ReplaceAll(strings.Trim(m[2], "'"), "''", "'")
	}
	for name, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "password_encryption": "scram-sha-256"} {
		if settings[name] != want {
			t.Errorf("%s: %s = %q, want %q", path, name, settings[name], want)
		}
	}

	pg := startPostgres(t)
	conn := pgConnect(t, pg.superURL("postgres"))
	numRE := regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?\s*(B|kB|MB|GB|TB|us|ms|s|min|h|d)?$`)
	for name, value := range settings {
		var vartype string
		var enumvals []string
		err := conn.QueryRow(t.Context(), `SELECT vartype, coalesce(enumvals, '{}') FROM pg_settings WHERE lower(name) = lower($1)`, name).Scan(&vartype, &enumvals)
		if err != nil {
			t.Errorf("%s: %s: unknown to PostgreSQL: %v", path, name, err)
			continue
		}
		ok := true
		switch vartype {
		case "bool":
			ok = slices.Contains([]string{"on", "off", "true", "false", "yes", "no", "1", "0"}, strings.ToLower(value))
		case "enum":
			ok = slices.ContainsFunc(enumvals, func(v string) bool { return strings.EqualFold(v, value) })
		case "integer", "real":
			ok = numRE.MatchString(value)
		}
		if !ok {
			t.Errorf("%s: %s = %q is not a valid %s %v", path, name, value, vartype, enumvals)
		}
	}
}

// TestPgHBA checks the shape of deploy/postgres/pg_hba.conf: known
// connection types and methods, SCRAM for every password login, and a
// final reject.
func TestPgHBA(t *testing.T) {
	path := deployPath("postgres", "pg_hba.conf")
	var last []string
	for i, line := range strings.Split(string(readFile(t, path)), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		want := 5 // type database user address method
		if f[0] == "local" {
			want = 4
		}
		if !slices.Contains([]string{"local", "host", "hostssl", "hostnossl"}, f[0]) || len(f) != want {
			t.Errorf("%s:%d: not a pg_hba rule: %s", path, i+1, line)
			continue
		}
		method := f[len(f)-1]
		if !slices.Contains([]string{"scram-sha-256", "peer", "reject"}, method) {
			t.Errorf("%s:%d: method %s, want scram-sha-256 (or peer locally, reject)", path, i+1, method)
		}
		last = f
	}
	if last == nil || last[len(last)-1] != "reject" {
		t.Errorf("%s: the last rule should reject everything else", path)
	}
}
