#!/usr/bin/env bash
# Installs PostgreSQL's server binaries (initdb, pg_ctl, postgres) when the
# machine has none: gcmtrack runs its own cluster from them.
set -euo pipefail
for d in /usr/lib/postgresql/*/bin; do
  if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then exit 0; fi
done
if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found and apt-get is not available: install PostgreSQL (initdb, pg_ctl) and retry." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "Installing PostgreSQL (apt-get install -y postgresql)…" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
# The packaged cluster is not used: gcmtrack initialises its own.
$SUDO service postgresql stop >/dev/null 2>&1 || true
