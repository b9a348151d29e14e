#!/usr/bin/env bash
# Runs Kratos's own Playwright specs for native apps (test/e2e/playwright/tests/mobile/)
# unchanged against Latchkey: Ory's React Native example app, served for the web on
# port 19006 as Kratos's test/e2e/run.sh does, drives a Latchkey started with Kratos's
# e2e config. Kratos's fixtures rewrite that config before each test and poll
# /admin/health/config, so Latchkey's hot reload is exercised too.
#
# Pinned sources (override the remotes with KRATOS_GIT / RN_GIT, e.g. a local mirror):
#   ory/kratos (test/e2e only) and ory/kratos-selfservice-ui-react-native.
# Needs: node + npm, Debian's chromium (CHROMIUM), free ports 4433 4434 8025 8081 19006.
# Work tree: target/kratos-e2e/ (KRATOS_E2E_DIR); logs and reports land there.
# Usage: scripts/kratos-e2e.sh [spec ...]   (default: app_recovery and app_login)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
start_time=$(date +%s)

KRATOS_COMMIT=b86338da04a040247a07f46100a86dcfb3875909
RN_COMMIT=44256317c20d6b95abbcc94cfdd6c519cfa4baff
KRATOS_GIT="${KRATOS_GIT:-https://github.com/ory/kratos}"
RN_GIT="${RN_GIT:-https://github.com/ory/kratos-selfservice-ui-react-native}"
work="${KRATOS_E2E_DIR:-$root/target/kratos-e2e}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || { echo "kratos-e2e: no Chromium at $CHROMIUM (apt-get install chromium)" >&2; exit 1; }

if [ -z "${LATCHKEY_BIN:-}" ]; then
  echo "== cargo build -p latchkey"
  cargo build -p latchkey
  LATCHKEY_BIN="$root/target/debug/latchkey"
fi
[ -x "$LATCHKEY_BIN" ] || { echo "kratos-e2e: no server binary at '$LATCHKEY_BIN'" >&2; exit 1; }

for port in 4433 4434 8025 8081 19006; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "kratos-e2e: port $port is in use; stop what listens there first" >&2
    exit 1
  fi
done

# fetch DIR REMOTE COMMIT [SPARSE-PATH]: a checkout of exactly COMMIT, blobs fetched on demand.
fetch() {
  local dir=$1 remote=$2 commit=$3 sparse=${4:-}
  if [ "$(git -C "$dir" rev-parse HEAD 2>/dev/null)" = "$commit" ]; then return; fi
  echo "== fetching $remote at $commit"
  rm -rf "$dir"
  git init -q "$dir"
  git -C "$dir" remote add origin "$remote"
  [ -z "$sparse" ] || git -C "$dir" sparse-checkout set "$sparse"
  git -C "$dir" fetch -q --depth 1 --filter=blob:none origin "$commit"
  git -C "$dir" -c advice.detachedHead=false checkout -q FETCH_HEAD
}
mkdir -p "$work"
fetch "$work/kratos" "$KRATOS_GIT" "$KRATOS_COMMIT" test/e2e
fetch "$work/app" "$RN_GIT" "$RN_COMMIT"

e2e="$work/kratos/test/e2e"
npm_ci() {
  if [ ! -f "$1/node_modules/.package-lock.json" ]; then
    echo "== npm ci ($1)"
    (cd "$1" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 CYPRESS_INSTALL_BINARY=0 npm ci --no-audit --no-fund >"$work/npm.log" 2>&1) ||
      { tail -20 "$work/npm.log" >&2; exit 1; }
  fi
}
npm_ci "$e2e"
npm_ci "$work/app"
# Kratos's own config starts Kratos, MailHog and Hydra; this one uses what is started below.
cp "$root/scripts/kratos-e2e/playwright.config.ts" "$e2e/latchkey.playwright.config.ts"

logs="$work/logs"
rm -rf "$logs" && mkdir -p "$logs"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  # So that the ports are free when this script returns.
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM
# start NAME DIR CMD...: in DIR, in a process group of its own, so that stopping it stops its children.
start() {
  local name=$1 dir=$2
  shift 2
  (cd "$dir" && exec setsid "$@") >"$logs/$name.log" 2>&1 &
  pids+=($!)
}
wait_for() {
  local name=$1 url=$2 seconds=$3
  for _ in $(seq "$seconds"); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return
    sleep 1
  done
  echo "kratos-e2e: $name did not answer $url in ${seconds}s; see $logs/$name.log" >&2
  tail -20 "$logs/$name.log" >&2
  exit 1
}

echo "== starting the mail API stand-in, Latchkey and the app"
start mailhog "$work" node "$root/scripts/kratos-e2e/mailhog.mjs"
# Kratos's e2e config, served from the checkout's root as Kratos serves it (file:// paths are relative).
cp "$e2e/playwright/kratos.base-config.json" "$e2e/playwright/kratos.config.json"
start latchkey "$work/kratos" env DSN=memory DEV_DISABLE_API_FLOW_ENFORCEMENT=true \
  "$LATCHKEY_BIN" serve --dev -c test/e2e/playwright/kratos.config.json
# As test/e2e/run.sh: `npm run web` (expo start --web; webpack on 19006).
start app "$work/app" env KRATOS_URL=http://localhost:4433 CI=1 EXPO_OFFLINE=1 EXPO_NO_TELEMETRY=1 \
  npm run web
wait_for mailhog http://127.0.0.1:8025/ 30
wait_for latchkey http://127.0.0.1:4433/health/ready 30
wait_for app http://127.0.0.1:19006/ 600

if [ $# -gt 0 ]; then specs=("$@"); else specs=(app_recovery app_login); fi
status=0
for spec in "${specs[@]}"; do
  file="playwright/tests/mobile/$spec.spec.ts"
  echo "== $file"
  report="$work/$spec.report.json"
  rm -f "$report"
  # The Hydra client ids only fill the OIDC provider in Kratos's config; no Hydra runs here.
  (cd "$e2e" && OIDC_HYDRA_CLIENT_ID=no-hydra OIDC_HYDRA_CLIENT_SECRET=no-hydra KRATOS_E2E_REPORT="$report" \
    npx playwright test -c latchkey.playwright.config.ts --output "$work/results/$spec" "$file") || status=1
  [ -f "$report" ] && node "$root/scripts/kratos-e2e/summary.mjs" "$report"
done
echo "== total $(($(date +%s) - start_time))s; logs in $logs"
exit "$status"
