#!/usr/bin/env bash
# An HTTP fuzzing campaign with schemathesis (PyPI) against a Latchkey it
# starts itself, driven by the OpenAPI document the server publishes at
# /.well-known/ory/openapi.json.
#
#   scripts/schemathesis.sh [MAX_EXAMPLES] [SECONDS_PER_PORT]
#
# MAX_EXAMPLES (default 100) is schemathesis's test cases per operation and
# phase (100 gives about 10,000 requests in all). With SECONDS_PER_PORT the
# fuzzing and stateful phases repeat until that time is spent on each port,
# for long campaigns. The server is the release build with the quickstart configuration
# in --dev mode, on a fresh SQLite database and free loopback ports. The
# public operations are run against the public port and the admin ones
# (/admin/*, /version) against the admin port. Prints the requests sent and
# the 5xx answers per port, and scans the server's log for panics; exits
# non-zero on any 5xx, panic or server death.
#
# Environment: ST_CHECKS (schemathesis checks, default not_a_server_error),
# ST_WORKERS (default 1: with more, hypothesis on CPython 3.11 can fail in
# ast.parse), ST_ARGS (extra `st run` arguments), NICE (default 15).
set -uo pipefail

max_examples=${1:-100}
max_time=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work="$root/.schemathesis"
venv="$work/venv"
checks=${ST_CHECKS:-not_a_server_error}
workers=${ST_WORKERS:-1}
nice_n=${NICE:-15}
mkdir -p "$work"

if [ ! -x "$venv/bin/st" ]; then
    echo "installing schemathesis into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis || exit 2
fi
echo "schemathesis $("$venv/bin/st" --version | awk '{print $NF}')"

nice -n "$nice_n" cargo build --release -p latchkey || exit 2
bin="${CARGO_TARGET_DIR:-$root/target}/release/latchkey"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
public_port=${SERVE_PUBLIC_PORT:-$(free_port)}
admin_port=${SERVE_ADMIN_PORT:-$(free_port)}
public="http://127.0.0.1:$public_port"
admin="http://127.0.0.1:$admin_port"
run_dir=$(mktemp -d)
log="$work/server.log"

DSN="sqlite://$run_dir/latchkey.db?_fk=true" \
    SERVE_PUBLIC_PORT="$public_port" SERVE_ADMIN_PORT="$admin_port" \
    SERVE_PUBLIC_BASE_URL="$public/" SERVE_ADMIN_BASE_URL="$admin/" \
    nice -n "$nice_n" "$bin" serve -c contrib/quickstart/latchkey.yml --dev >"$log" 2>&1 &
server=$!
stop() {
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$run_dir"
}
trap stop EXIT

for _ in $(seq 1 100); do
    curl -fs "$public/health/ready" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { echo "the server did not start:"; cat "$log"; exit 2; }
    sleep 0.2
done
curl -fs "$public/.well-known/ory/openapi.json" -o "$work/openapi.json" || { echo "no OpenAPI document"; exit 2; }

campaign() { # NAME BASE_URL FILTER...
    local name=$1 base=$2
    shift 2
    rm -rf "$work/$name-report"
    nice -n "$nice_n" "$venv/bin/st" run "$work/openapi.json" --url "$base" "$@" \
        --checks "$checks" --max-examples "$max_examples" --workers "$workers" \
        --request-timeout 30 --suppress-health-check all --warnings off \
        --report har --report-dir "$work/$name-report" ${max_time:+--max-time "$max_time"} ${ST_ARGS:-} \
        >"$work/$name.log" 2>&1
    echo "$name: schemathesis exit $? (output in .schemathesis/$name.log)"
}
campaign public "$public" --exclude-path-regex '^/admin/|^/version$'
campaign admin "$admin" --include-path-regex '^/admin/|^/version$'

alive=yes
kill -0 "$server" 2>/dev/null || alive=no
stop
trap - EXIT

"$venv/bin/python" - "$work" <<'PY'
import glob, json, sys
work = sys.argv[1]
total = errors = 0
for name in ("public", "admin"):
    entries = []
    for har in glob.glob(f"{work}/{name}-report/*.json"):
        entries += json.load(open(har))["log"]["entries"]
    fives = [e for e in entries if e["response"]["status"] >= 500]
    total += len(entries)
    errors += len(fives)
    print(f"{name}: {len(entries)} requests, {len(fives)} with a 5xx answer")
    for e in fives[:10]:
        body = (e["request"].get("postData") or {}).get("text", "")[:200]
        print(f"    {e['response']['status']} {e['request']['method']} {e['request']['url'][:200]} {body!r}")
print(f"total: {total} requests, {errors} 5xx")
open(f"{work}/counts", "w").write(f"{total} {errors}\n")
PY
read -r total fives <"$work/counts"
panics=$(grep -c "panicked" "$log" || true)
echo "server log: $panics panics; server alive at the end: $alive (log in .schemathesis/server.log)"
grep -m5 -A2 "panicked" "$log" | sed 's/^/    /'
[ "$fives" = 0 ] && [ "$panics" = 0 ] && [ "$alive" = yes ]
