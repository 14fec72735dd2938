-- +goose Up
-- The audit log of the API: every write request and every refused request,
-- who made it and how it ended. Written by package services/audit.
--
-- It is append-only. Nobody but the table's owner keeps UPDATE, DELETE or
-- TRUNCATE on it (whatever default privileges granted), and a trigger
-- refuses those to the owner as well: removing rows, for retention, takes a
-- deliberate ALTER TABLE auth.audit DISABLE TRIGGER by the owner.
CREATE TABLE auth.audit (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL,
    -- The token the request carried, when it was valid; its name as it was
    -- then (names may change or be reused, ids never are).
    token_id       uuid        NULL,
    actor          text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    role           text        NOT NULL CHECK (role IN ('admin', 'monitor', 'secretariat', 'anonymous')),
    iscm           text        NULL,
    method         text        NOT NULL CHECK (length(method) BETWEEN 1 AND 20),
    -- The path without its query string, which may carry anything.
    path           text        NOT NULL CHECK (length(path) <= 1000),
    route          text        NOT NULL CHECK (length(route) <= 200),
    status         smallint    NOT NULL CHECK (status BETWEEN 100 AND 599),
    outcome        text        NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
    -- The problem type's short name of a refusal or error, such as forbidden.
    reason         text        NOT NULL DEFAULT '' CHECK (length(reason) <= 100),
    -- The stream position a successful write reached.
    position       bigint      NULL,
    correlation_id text        NOT NULL CHECK (length(correlation_id) <= 100),
    client_addr    text        NOT NULL CHECK (length(client_addr) <= 100)
);

-- Listing is newest first, keyset-paginated by (at, id).
CREATE INDEX audit_at_idx ON auth.audit (at, id);

-- +goose StatementBegin
CREATE FUNCTION auth.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'auth.audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

-- A statement trigger: it refuses even a statement that would touch no row.
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON auth.audit
    FOR EACH STATEMENT EXECUTE FUNCTION auth.audit_append_only();

-- +goose StatementBegin
DO $$
DECLARE
    g text;
BEGIN
    FOR g IN
        SELECT DISTINCT a.grantee::regrole::text
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'auth.audit'::regclass
          AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
          AND a.grantee NOT IN (0, c.relowner)
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON auth.audit FROM %s', g);
    END LOOP;
    REVOKE UPDATE, DELETE, TRUNCATE ON auth.audit FROM PUBLIC;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE auth.audit;
DROP FUNCTION auth.audit_append_only();
