#!/usr/bin/env bash
# Runs the measurements behind docs/performance.md and keeps their raw output
# in docs/perf-raw/<UTC date>/. Parts (default: all, in this order):
#   sqlite, postgres  one release server per database, driven by latchkey-bench at 1, 8 and 32
#                     clients (health, whoami, login, registration, whoami-under-login,
#                     journey-recovery, and the hasher alone); start-up time, idle and peak
#                     memory, and the server's CPU time sampled every 100 ms (CPU per request)
#   mail              verification emails queued with no relay, then a server with a local SMTP
#                     sink (scripts/smtp-sink.py) started on that database: delivered per second
#   long              the hashing scenarios again at 32 clients, PERF_LONG_DURATION (20s) each: the
#                     driver counts only requests that start and end inside the measured window,
#                     so a window a few latencies long (2 s at 32 clients) undercounts them
#   two               two servers on one PostgreSQL database: whoami against one, then against
#                     both at once (one driver per server; the rates add up)
# Usage: scripts/perf.sh [sqlite|postgres|long|mail|two ...]
# PERF_DURATION (5s) and PERF_WARMUP (1s): each scenario's measured and unmeasured load.
# PERF_OUT: where the raw output goes (default docs/perf-raw/<UTC date>).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${PERF_DURATION:-5s}"
warmup="${PERF_WARMUP:-1s}"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(sqlite postgres long mail two)
out="${PERF_OUT:-docs/perf-raw/$(date -u +%F)}"
mkdir -p "$out"
cargo build --release -q -p latchkey -p latchkey-bench
bin=target/release/latchkey
bench=target/release/latchkey-bench
hasher=argon2:m=65536,t=2,p=2 # the quickstart's parameters
tmp="$(mktemp -d)"
pids=()
dbs=()
base=""

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for db in "${dbs[@]}"; do psql "$base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

{
  echo "== scripts/perf.sh ${parts[*]}"
  date -u
  git rev-parse HEAD
  uname -srm
  echo "CPUs: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo || true
  grep MemTotal /proc/meminfo
  echo "duration $duration, warm-up $warmup, hasher $hasher"
} >>"$out/machine.txt"

# Sets $dsn to a fresh, migrated database of the given kind.
fresh_db() {
  case "$1" in
    sqlite) dsn="sqlite://$tmp/$2.db" ;;
    postgres)
      [ -n "$base" ] || base="$(scripts/postgres.sh)"
      local db="latchkey_perf_$$_$2"
      db="${db//[^a-zA-Z0-9_]/_}"
      psql "$base" -qc "CREATE DATABASE $db"
      dbs+=("$db")
      dsn="${base%/*}/$db"
      "$bin" migrate sql --yes "$dsn" >/dev/null ;;
  esac
}

# Starts `latchkey serve` (quickstart config, --dev so the driver reads codes
# from the outbox) and sets $server to its pid; records time to ready.
serve() { # name public-port admin-port [VAR=value ...]
  local name=$1 public=$2 admin=$3
  shift 3
  local t0
  t0=$(date +%s%N)
  env DSN="$dsn" SERVE_PUBLIC_PORT="$public" SERVE_ADMIN_PORT="$admin" LOG_LEVEL=warn \
    SECURITY_SEND_LIMITS_ENABLED=false SERVE_PUBLIC_TRUSTED_PROXIES=127.0.0.1 "$@" \
    "$bin" serve -c contrib/quickstart/latchkey.yml --dev >"$out/$name.server.log" 2>&1 &
  server=$!
  pids+=("$server")
  until curl -fsS "http://127.0.0.1:$admin/health/ready" >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { echo "perf.sh: $name did not start, see $out/$name.server.log" >&2; exit 1; }
    sleep 0.002
  done
  echo "start-up to ready: $((($(date +%s%N) - t0) / 1000000)) ms" >"$out/$name.startup.txt"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

memory() {
  grep -E '^(VmRSS|VmHWM|Threads)' "/proc/$1/status"
  awk -v tck="$(getconf CLK_TCK)" '{ printf "CPU so far: user %.2fs, system %.2fs\n", $14 / tck, $15 / tck }' "/proc/$1/stat"
}

# Every 100 ms: time, the process's utime+stime and the machine's busy and
# total time, all in clock ticks.
sample() { # pid
  local f m
  while read -ra f 2>/dev/null <"/proc/$1/stat" && read -ra m </proc/stat; do
    printf '%s %d %d %d\n' "$EPOCHREALTIME" $((f[13] + f[14])) \
      $((m[1] + m[2] + m[3] + m[6] + m[7] + m[8])) $((m[1] + m[2] + m[3] + m[4] + m[5] + m[6] + m[7] + m[8]))
    sleep 0.1
  done
}

# Runs latchkey-bench with each output line stamped with the time it appeared.
drive() { # label public-port admin-port [latchkey-bench options...]
  local label=$1 public=$2 admin=$3
  shift 3
  { "$bench" --public "http://127.0.0.1:$public" --admin "http://127.0.0.1:$admin" \
    --duration "$duration" --warmup "$warmup" "$@" 2>&1 || echo "latchkey-bench: exit status $?"; } |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$out/$label.txt"
}

# Server CPU per request for a scenario line ("whoami: N ok in Ws = ..."):
# the CPU the server used per second of that scenario's load (samples within
# its measured window, which ends when its line is printed) over its rate.
cpu_per_request() { # samples bench-output scenario
  awk -v tck="$(getconf CLK_TCK)" -v want="$3:" '
    FNR == NR { t[NR] = $1; c[NR] = $2; b[NR] = $3; a[NR] = $4; n = NR; next }
    $2 == want {
      end = $1; ok = $3; w = $6; sub(/s$/, "", w); start = end - w
      i = 0; j = 0
      for (k = 1; k <= n; k++) { if (t[k] >= start && !i) i = k; if (t[k] <= end) j = k }
      if (!i || j <= i) { print want " no samples"; next }
      cores = (c[j] - c[i]) / tck / (t[j] - t[i])
      printf "%s %.1f us server CPU per request (server %.2f of %d cores, machine %.0f%% busy, %.0f req/s)\n",
        want, cores / (ok / w) * 1e6, cores, ncpu, 100 * (b[j] - b[i]) / (a[j] - a[i]), ok / w
    }' ncpu="$(nproc)" "$1" "$2"
}

matrix() { # sqlite|postgres
  local kind=$1 pid
  fresh_db "$kind" "$kind"
  serve "$kind" 14533 14534
  pid=$server
  sleep 2
  memory "$pid" >"$out/$kind.memory-idle.txt"
  sample "$pid" >"$out/$kind.cpu-samples.txt" &
  pids+=("$!")
  for n in 1 8 32; do
    echo "perf.sh: $kind, $n clients" >&2
    drive "$kind.c$n" 14533 14534 --hasher "$hasher" --clients "$n" \
      --scenario health whoami login registration whoami-under-login journey-recovery
    for s in health whoami; do
      cpu_per_request "$out/$kind.cpu-samples.txt" "$out/$kind.c$n.txt" "$s"
    done >>"$out/$kind.cpu-per-request.txt"
  done
  memory "$pid" >"$out/$kind.memory-after.txt"
  stop "$pid"
}

mail() { # sqlite|postgres
  local kind=$1 pid sink count last=-1 stable=0
  fresh_db "$kind" "mail_$kind"
  serve "mail.$kind.queue" 14533 14534
  echo "perf.sh: mail on $kind: queueing" >&2
  drive "mail.$kind.queue" 14533 14534 --clients 32 --scenario journey-verification
  stop "$server"
  python3 scripts/smtp-sink.py 14525 "$out/mail.$kind.sink.txt" &
  sink=$!
  pids+=("$sink")
  sleep 0.5
  date +%s.%N >"$out/mail.$kind.started.txt"
  serve "mail.$kind.send" 14533 14534 COURIER_SMTP_CONNECTION_URI="smtp://127.0.0.1:14525/?disable_starttls=true"
  pid=$server
  echo "perf.sh: mail on $kind: sending" >&2
  for _ in $(seq 1 240); do # until nothing arrives for 3 s, at most 2 minutes
    sleep 0.5
    count=$(wc -l <"$out/mail.$kind.sink.txt")
    if [ "$count" = "$last" ]; then stable=$((stable + 1)); else stable=0; fi
    last=$count
    [ "$stable" -lt 6 ] || break
  done
  stop "$pid"
  stop "$sink"
  awk -v t0="$(cat "$out/mail.$kind.started.txt")" 'NR == 1 { first = $1 } { last = $1 } END {
    printf "%d delivered; %.1f/s first to last delivery (%.2fs); %.2fs from server start to last\n",
      NR, (NR > 1 ? (NR - 1) / (last - first) : 0), last - first, last - t0 }' \
    "$out/mail.$kind.sink.txt" >"$out/mail.$kind.rate.txt"
}

long() { # sqlite|postgres
  local kind=$1 duration="${PERF_LONG_DURATION:-20s}"
  fresh_db "$kind" "long_$kind"
  serve "$kind.long" 14533 14534
  echo "perf.sh: $kind, 32 clients, $duration per hashing scenario" >&2
  drive "$kind.c32-long" 14533 14534 --hasher "$hasher" --clients 32 \
    --scenario login registration whoami-under-login journey-recovery
  memory "$server" >"$out/$kind.long.memory-after.txt"
  stop "$server"
}

two() {
  local a b p warmup=2s # the two drivers start their setups together; a longer warm-up lines them up
  fresh_db postgres two
  serve two.a 14533 14534
  a=$server
  serve two.b 14543 14544
  b=$server
  for n in 16 32; do
    echo "perf.sh: two servers, $n clients each" >&2
    drive "two.one-server.c$((2 * n))" 14533 14534 --clients $((2 * n)) --scenario health whoami
    drive "two.both-a.c$n" 14533 14534 --clients "$n" --scenario whoami &
    p=$!
    drive "two.both-b.c$n" 14543 14544 --clients "$n" --scenario whoami
    wait "$p" || true
  done
  memory "$a" >"$out/two.a.memory.txt"
  memory "$b" >"$out/two.b.memory.txt"
  stop "$a"
  stop "$b"
}

scripts/measure-startup.sh "$bin" >"$out/measure-startup.txt" 2>&1 || true
for part in "${parts[@]}"; do
  case "$part" in
    sqlite | postgres) matrix "$part" ;;
    long) long sqlite; long postgres ;;
    mail) mail sqlite; mail postgres ;;
    two) two ;;
    *) echo "usage: scripts/perf.sh [sqlite|postgres|long|mail|two ...]" >&2; exit 2 ;;
  esac
done
echo "perf.sh: raw output in $out" >&2
