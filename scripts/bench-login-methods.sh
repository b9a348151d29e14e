#!/usr/bin/env bash
# Password login against passwordless login by emailed code, on one server
# per database: starts a release build of latchkey once per database (a
# throwaway one, the quickstart config as scripts/bench.sh uses it, plus
# --dev and passwordless_enabled), runs latchkey-bench's `login` and
# `login-code` scenarios back to back at each client count, and prints a
# table with the code/password ratio.
# Usage: scripts/bench-login-methods.sh [sqlite] [postgres]
# Environment: CLIENTS ("8 32"), DURATION (10s), WARMUP (2s), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
databases=("$@"); [ ${#databases[@]} -gt 0 ] || databases=(sqlite postgres)
clients="${CLIENTS:-8 32}"
duration="${DURATION:-10s}"
warmup="${WARMUP:-2s}"
bin="${CARGO_TARGET_DIR:-target}/release"
cargo build --release -q -p latchkey -p latchkey-bench
dir="$(mktemp -d)"
pid=""
db=""
stop_server() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  pid=""
  [ -n "$db" ] && { psql "$base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; }
  db=""
}
trap 'stop_server; rm -rf "$dir"' EXIT

rows=()
for backend in "${databases[@]}"; do
  case "$backend" in
    sqlite) dsn="sqlite://$dir/bench.db" ;;
    postgres)
      base="$(scripts/postgres.sh)"
      db="latchkey_login_methods_$$"
      psql "$base" -qc "CREATE DATABASE $db"
      dsn="${base%/*}/$db"
      "$bin/latchkey" migrate sql --yes "$dsn" >/dev/null ;;
    *) echo "usage: scripts/bench-login-methods.sh [sqlite] [postgres]" >&2; exit 2 ;;
  esac
  # As scripts/bench.sh: no send limits (one driver address mails each user
  # many codes an hour; off, the per-address cap admits every code mail too),
  # and loopback trusted as a proxy so each client's X-Forwarded-For address
  # is throttled apart. --dev shows the codes in the admin courier API.
  DSN="$dsn" SERVE_PUBLIC_PORT=14433 SERVE_ADMIN_PORT=14434 LOG_LEVEL=warn SECURITY_SEND_LIMITS_ENABLED=false \
    SERVE_PUBLIC_TRUSTED_PROXIES=127.0.0.1 SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED=true \
    "$bin/latchkey" serve -c contrib/quickstart/latchkey.yml --dev >"$dir/server-$backend.log" 2>&1 &
  pid=$!
  until curl -fsS http://127.0.0.1:14434/health/ready >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/server-$backend.log" >&2; exit 1; }
    sleep 0.05
  done
  for n in $clients; do
    echo "== $backend, $n clients" >&2
    out="$("$bin/latchkey-bench" --public http://127.0.0.1:14433 --admin http://127.0.0.1:14434 \
      --clients "$n" --duration "$duration" --warmup "$warmup" --scenario login login-code || true)"
    echo "$out" >&2
    # From the running log: "login: 812 ok in 10.00s = 81.2 logins/s, p50 97.1ms, p99 …, 0 errors (8 clients)"
    field() { sed -n "s/^$1: .* = \([0-9.]*\) logins\/s, p50 \([^,]*\), p99 \([^,]*\), .*, \([0-9]*\) errors .*/\\$2/p" <<<"$out"; }
    rows+=("$(printf '%-9s %7s %10s %9s %9s %10s %9s %9s %6s %7s' "$backend" "$n" \
      "$(field login 1)" "$(field login 2)" "$(field login 3)" \
      "$(field login-code 1)" "$(field login-code 2)" "$(field login-code 3)" \
      "$(field login 4)/$(field login-code 4)" \
      "$(awk -v c="$(field login-code 1)" -v p="$(field login 1)" 'BEGIN { if (p > 0) printf "%.3f", c / p; else print "n/a" }')")")
  done
  stop_server
done

printf '\n%-9s %7s %10s %9s %9s %10s %9s %9s %6s %7s\n' database clients "password/s" p50 p99 "code/s" p50 p99 errors "code/pw"
printf '%s\n' "${rows[@]}"
