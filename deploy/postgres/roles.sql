-- Roles and privileges of the GCM Tracker database.
--
-- Run as a superuser, connected to the application database, before the
-- first `gcmtrack migrate` (running it again is harmless):
--
--   createdb gcmtrack
--   psql -v ON_ERROR_STOP=1 -d gcmtrack -f roles.sql
--
-- Passwords are not set here; set them afterwards (psql: \password gcm_api).
--
--   gcm_owner      owns the schemas gcm and auth and the migration version
--                  tables (public.goose_*); `gcmtrack migrate` connects as it.
--   gcm_projector  `gcmtrack run --target=projector` and `gcmtrack rebuild`:
--                  creates and writes the projection schemas, writes gcm.*.
--   gcm_api        `gcmtrack run --target=api`: reads projections and gcm.*,
--                  reads and writes auth.tokens (token checks record
--                  last_used_at; a start without GCM_BOOTSTRAP_ADMIN_TOKEN
--                  issues a console token), appends to and reads the audit
--                  log auth.audit.
--
-- Every process runs `migrate` at start; with nothing pending that only reads
-- the version tables, so the API and projector roles need SELECT on them and
-- nothing more. Apply new migrations with `gcmtrack migrate` as gcm_owner
-- before rolling out a binary that brings them.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['gcm_owner', 'gcm_projector', 'gcm_api'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
    END LOOP;
END
$$;

-- Sessions that hold a transaction open block vacuum and view switches.
ALTER ROLE gcm_api SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE gcm_api SET statement_timeout = '30s';
ALTER ROLE gcm_projector SET idle_in_transaction_session_timeout = '5min';

-- Database: nobody else connects. gcm_owner creates gcm and auth. The
-- projector needs CREATE too: projections create their schemas at run time
-- (p_<name>_<generation> for each build, and <name> for the views readers
-- use), so they cannot be created here in advance.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO gcm_owner, gcm_projector, gcm_api', current_database());
    EXECUTE format('GRANT CREATE ON DATABASE %I TO gcm_owner, gcm_projector', current_database());
END
$$;

-- public holds only the migration version tables (goose_engine, goose_auth).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO gcm_owner;
GRANT USAGE ON SCHEMA public TO gcm_projector, gcm_api;

-- The migrations create these schemas if missing; creating them here lets the
-- grants below name them before the first migration.
CREATE SCHEMA IF NOT EXISTS gcm AUTHORIZATION gcm_owner;
CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION gcm_owner;
REVOKE ALL ON SCHEMA gcm, auth FROM PUBLIC;
GRANT USAGE ON SCHEMA gcm TO gcm_projector, gcm_api;
GRANT USAGE ON SCHEMA auth TO gcm_api;

-- Tables the migrations (gcm_owner) create, now and later. The schema-scoped
-- default privileges cover tables created after this script; the GRANT ... ON
-- ALL TABLES lines cover those that already exist when it is run again.
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_owner IN SCHEMA public
    GRANT SELECT ON TABLES TO gcm_projector, gcm_api;
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_owner IN SCHEMA gcm
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gcm_projector;
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_owner IN SCHEMA gcm
    GRANT USAGE, SELECT ON SEQUENCES TO gcm_projector;
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_owner IN SCHEMA gcm
    GRANT SELECT ON TABLES TO gcm_api;
-- auth holds the tokens and the audit log. No DELETE: tokens are revoked, not
-- removed. The audit log is append-only: its migration takes UPDATE, DELETE
-- and TRUNCATE on auth.audit back from every role but its owner (and a
-- trigger refuses them to the owner), so gcm_api keeps SELECT and INSERT.
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_owner IN SCHEMA auth
    GRANT SELECT, INSERT, UPDATE ON TABLES TO gcm_api;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO gcm_projector, gcm_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA gcm TO gcm_projector;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA gcm TO gcm_projector;
GRANT SELECT ON ALL TABLES IN SCHEMA gcm TO gcm_api;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA auth TO gcm_api;
DO $$
BEGIN
    IF to_regclass('auth.audit') IS NOT NULL THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON auth.audit FROM gcm_api;
        GRANT SELECT, INSERT ON auth.audit TO gcm_api;
    END IF;
END
$$;

-- Projection schemas and their tables and views belong to gcm_projector,
-- which creates them while running. The API reads them through default
-- privileges granted FOR ROLE gcm_projector: every schema the projector
-- creates gets USAGE, every table and view SELECT. Nothing gives the API
-- INSERT, UPDATE or DELETE there.
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_projector
    GRANT USAGE ON SCHEMAS TO gcm_api;
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_projector
    GRANT SELECT ON TABLES TO gcm_api;
ALTER DEFAULT PRIVILEGES FOR ROLE gcm_projector
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
