#!/usr/bin/env bash
# Measures how long `latchkey serve` takes from exec to answering
# /health/ready, and its resident memory once idle, on a fresh SQLite file.
# Usage: scripts/measure-startup.sh [path/to/latchkey]   (default: release build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/latchkey}"
[ -x "$bin" ] || cargo build --release -p latchkey
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

start=$(date +%s%N)
DSN="sqlite://$dir/latchkey.db" SERVE_PUBLIC_PORT=14433 SERVE_ADMIN_PORT=14434 LOG_LEVEL=warn \
  "$bin" serve -c contrib/quickstart/latchkey.yml >/dev/null 2>&1 &
pid=$!
until curl -fsS http://127.0.0.1:14434/health/ready >/dev/null 2>&1; do sleep 0.002; done
ready=$(date +%s%N)
echo "start-up to ready: $(( (ready - start) / 1000000 )) ms (fresh database, migrations included)"
sleep 2
echo "idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
echo "idle threads: $(awk '/Threads/ {print $2}' /proc/$pid/status)"
