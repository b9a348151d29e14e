#!/usr/bin/env bash
# The test command: every test on SQLite and on PostgreSQL. PostgreSQL is
# installed and started by scripts/postgres.sh when it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_POSTGRES_URL="$(scripts/postgres.sh)"
export TEST_POSTGRES_URL
exec cargo test --workspace --no-fail-fast "$@"
