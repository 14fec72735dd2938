-- +goose Up
CREATE SCHEMA IF NOT EXISTS auth;

-- API tokens. Only the SHA-256 of each secret is kept: the secret itself is
-- shown once when the token is issued and cannot be recovered from here.
CREATE TABLE auth.tokens (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text        NOT NULL CHECK (role IN ('admin', 'monitor', 'secretariat')),
    iscm         text        NULL CHECK (iscm ~ '^[a-z0-9-]+$'),
    hash         bytea       NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NULL,
    revoked_at   timestamptz NULL,
    last_used_at timestamptz NULL,
    -- A secretariat token is bound to exactly one ISCM; the other roles span
    -- all of them and must not carry one.
    CONSTRAINT tokens_iscm_matches_role CHECK ((role = 'secretariat') = (iscm IS NOT NULL))
);

-- +goose Down
DROP TABLE auth.tokens;
DROP SCHEMA auth;
