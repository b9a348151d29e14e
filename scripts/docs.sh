#!/usr/bin/env bash
# Runs the documentation: every ```sh block of docs/*.md, in order, in one
# bash per page (set -euo pipefail), against a fresh server for that page
# (the quickstart config with --dev on a new SQLite file, at 127.0.0.1:4433
# and :4434 as the docs say). A page passes when all its blocks exit 0.
# Pages of measurements (marked <!-- docs.sh: measurements -->) are skipped:
# their commands are the benchmark runs themselves.
#   scripts/docs.sh [docs/page.md ...]
# LATCHKEY_BIN names the binary (default: target/debug/latchkey, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bin="${LATCHKEY_BIN:-$root/target/debug/latchkey}"
if [ ! -x "$bin" ]; then
  cargo build -p latchkey --bin latchkey >&2
fi
for tool in curl jq; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scripts/docs.sh: installing $tool (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >&2
  fi
done
bindir="$(mktemp -d)"
ln -s "$bin" "$bindir/latchkey"
export PATH="$bindir:$PATH"

pages=("$@")
[ ${#pages[@]} -gt 0 ] || pages=(docs/*.md)
failed=0
for page in "${pages[@]}"; do
  script="$(python3 - "$page" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
# A page of measurements names the long benchmark runs that made it; they
# are their own checks, not steps to follow.
if "<!-- docs.sh: measurements -->" in text:
    sys.exit(0)
blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
print("\n".join(blocks))
PY
)"
  [ -n "$script" ] || continue
  work="$(mktemp -d)"
  DSN="sqlite://$work/docs.db" SERVE_PUBLIC_PORT=4433 SERVE_ADMIN_PORT=4434 NO_COLOR=1 \
    latchkey serve -c contrib/quickstart/latchkey.yml --dev >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:4434/health/ready >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if ! curl -sf http://127.0.0.1:4434/health/ready >/dev/null 2>&1; then
    echo "FAIL $page: the server did not start (is something else on 4433/4434?)"
    cat "$work/server.log"
    failed=1
    continue
  fi
  if (cd "$root" && DSN="sqlite://$work/docs.db" bash -euo pipefail -c "$script") >"$work/out.log" 2>&1; then
    echo "ok   $page"
  else
    echo "FAIL $page"
    tail -n 40 "$work/out.log"
    echo "--- server log"
    tail -n 20 "$work/server.log"
    failed=1
  fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
done
rm -rf "$bindir"
exit "$failed"
