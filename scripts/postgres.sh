#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 for the tests,
# installing and starting Debian's package when needed. Prints the URL the
# tests should use as their maintenance connection.
set -euo pipefail

url="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

answers() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1; then
  echo "scripts/postgres.sh: installing PostgreSQL (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi

if ! answers; then
  echo "scripts/postgres.sh: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start >&2 || true
  for _ in $(seq 1 30); do answers && break; sleep 1; done
fi
answers || { echo "scripts/postgres.sh: PostgreSQL does not answer at 127.0.0.1:5432" >&2; exit 1; }

# A fresh Debian install asks for a password over TCP; give the postgres
# role a throwaway one for this machine's tests if trust is not configured.
if ! psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  if command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >&2
    url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  fi
fi
psql "$url" -Atqc 'select 1' >/dev/null
echo "$url"
