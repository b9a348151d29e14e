#!/usr/bin/env bash
# Starts a release build of latchkey on a throwaway database (sqlite or
# postgres), drives it with latchkey-bench, and stops it.
# Usage: scripts/bench.sh [sqlite|postgres] [latchkey-bench options...]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"; shift || true
cargo build --release -q -p latchkey -p latchkey-bench
bin="${CARGO_TARGET_DIR:-target}/release"
dir="$(mktemp -d)"
case "$backend" in
  sqlite) dsn="sqlite://$dir/bench.db" ;;
  postgres)
    base="$(scripts/postgres.sh)"
    db="latchkey_bench_$$"
    psql "$base" -qc "CREATE DATABASE $db"
    dsn="${base%/*}/$db"
    "$bin/latchkey" migrate sql --yes "$dsn" >/dev/null ;;
  *) echo "usage: scripts/bench.sh [sqlite|postgres] [options]" >&2; exit 2 ;;
esac
cleanup() {
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  [ "$backend" = postgres ] && psql "$base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$dir"
}
# The driver is one client address recovering a few addresses over and over
# (the send limits would refuse it within the first second), and claims a
# client address per login client (and the attacker's and user's in
# login-attack) in X-Forwarded-For; trusting loopback lets login throttling
# count them apart, as it would app users behind a proxy. The journeys and
# login-code need LATCHKEY_BENCH_DEV=1; login-code also passwordless login,
# which the server takes from SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED=true
# in this script's environment.
DSN="$dsn" SERVE_PUBLIC_PORT=14433 SERVE_ADMIN_PORT=14434 LOG_LEVEL=warn SECURITY_SEND_LIMITS_ENABLED=false \
  SERVE_PUBLIC_TRUSTED_PROXIES=127.0.0.1 \
  "$bin/latchkey" serve -c contrib/quickstart/latchkey.yml ${LATCHKEY_BENCH_DEV:+--dev} >"$dir/server.log" 2>&1 &
pid=$!
trap cleanup EXIT
until curl -fsS http://127.0.0.1:14434/health/ready >/dev/null 2>&1; do sleep 0.05; done
"$bin/latchkey-bench" --public http://127.0.0.1:14433 --admin http://127.0.0.1:14434 \
  --hasher argon2:m=65536,t=2,p=2 "$@"
