#!/bin/sh
# Runs once, after 10-roles.sql, when the postgres container initialises an
# empty data directory: sets the passwords of the gcmtrack roles.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner="$GCM_DB_OWNER_PASSWORD" \
  -v projector="$GCM_DB_PROJECTOR_PASSWORD" \
  -v api="$GCM_DB_API_PASSWORD" <<'SQL'
ALTER ROLE gcm_owner PASSWORD :'owner';
ALTER ROLE gcm_projector PASSWORD :'projector';
ALTER ROLE gcm_api PASSWORD :'api';
SQL
