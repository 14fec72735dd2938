-- +goose Up
CREATE SCHEMA IF NOT EXISTS web;

-- Browser sessions: the cookie holds a random id; only its hash is kept,
-- with the token the user signed in with (its id, not its secret) and the
-- session's CSRF secret.
CREATE TABLE web.sessions (
    id_hash    bytea PRIMARY KEY,
    token_id   uuid NOT NULL,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON web.sessions (expires_at);

-- +goose Down
DROP TABLE web.sessions;
