-- +goose Up
CREATE SCHEMA IF NOT EXISTS gcm;

-- One row per build of a projection: a generation of its tables in a schema
-- of their own, the code version that builds it, and how far it has applied
-- the stream. The active build is the one the read views point to.
CREATE TABLE gcm.projection_builds (
    name         text        NOT NULL,
    generation   integer     NOT NULL,
    version      integer     NOT NULL,
    schema_name  text        NOT NULL UNIQUE,
    position     bigint      NOT NULL DEFAULT 0,
    status       text        NOT NULL CHECK (status IN ('building', 'active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    PRIMARY KEY (name, generation)
);
CREATE UNIQUE INDEX projection_builds_one_active ON gcm.projection_builds (name) WHERE status = 'active';

-- Events a projection could not apply, kept with their error so that the
-- events after them go on and an operator can re-apply them after a fix.
CREATE TABLE gcm.dead_letters (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    generation  integer     NOT NULL,
    position    bigint      NOT NULL,
    subject     text        NOT NULL,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    data        bytea       NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    UNIQUE (name, generation, position)
);

-- +goose Down
DROP TABLE gcm.dead_letters;
DROP TABLE gcm.projection_builds;
