#!/usr/bin/env bash
# The browser suites: headless Debian Chromium driven by playwright-core,
# against the debug build of Latchkey. Installs what it needs (Chromium from
# Debian, the suites' npm packages from their lockfile), then runs every
# tests/browser/suites/*.test.mjs (or the files given) with `node --test`.
# Each suite starts its own Latchkey, SMTP server and app on loopback ports.
# Screenshots: target/browser-screenshots/<suite>/; logs: target/browser-tests/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "browser-tests: need root to run: $*" >&2
    exit 1
  fi
}
install_debian() {
  echo "== installing $* from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || install_debian chromium
command -v node >/dev/null && command -v npm >/dev/null || install_debian nodejs npm

# .ci/run passes the binary its tests built; alone, build it.
if [ -z "${LATCHKEY_BIN:-}" ]; then
  echo "== cargo build -p latchkey"
  cargo build -p latchkey
  LATCHKEY_BIN="$root/target/debug/latchkey"
fi
[ -x "$LATCHKEY_BIN" ] || { echo "browser-tests: no server binary at '$LATCHKEY_BIN'" >&2; exit 1; }
export LATCHKEY_BIN

echo "== npm ci (tests/browser)"
modules=tests/browser/node_modules/.package-lock.json
if [ ! -f "$modules" ] || [ tests/browser/package-lock.json -nt "$modules" ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

export BROWSER_SCREENSHOTS="$root/target/browser-screenshots"
export BROWSER_TESTS_OUT="$root/target/browser-tests"
rm -rf "$BROWSER_SCREENSHOTS" "$BROWSER_TESTS_OUT"
mkdir -p "$BROWSER_SCREENSHOTS" "$BROWSER_TESTS_OUT"
# The suites list every process they start here; whatever is still running
# when this script ends (a suite crashed, ^C) is stopped by pid.
export BROWSER_TESTS_PIDS="$BROWSER_TESTS_OUT/pids"
: >"$BROWSER_TESTS_PIDS"
runner=
stop_children() {
  # The runner leads its own process group: its test processes and what they started.
  [ -z "$runner" ] || kill -- "-$runner" 2>/dev/null || true
  while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done <"$BROWSER_TESTS_PIDS"
}
trap stop_children EXIT
trap 'exit 130' INT TERM

if [ $# -gt 0 ]; then suites=("$@"); else suites=(tests/browser/suites/*.test.mjs); fi
echo "== node --test ${suites[*]}"
# In the background, so that a signal to this script is handled at once, and
# in a process group of its own, so that stopping it stops everything it began.
setsid node --test --test-concurrency=1 "${suites[@]}" &
runner=$!
set +e
wait "$runner"
status=$?
set -e
runner=
shots=$(find "$BROWSER_SCREENSHOTS" -name '*.png' | wc -l)
echo "== $shots screenshots in target/browser-screenshots/, logs in target/browser-tests/logs/"
[ "$status" = 0 ] || echo "browser tests failed; the logs above name what to read" >&2
exit "$status"
