#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a set time each and keeps the
# corpus in the repository.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; no TARGET means all of them. For each
# target it first replays fuzz/regressions/<target>/ (inputs that crashed
# once), then fuzzes with fuzz/corpus/<target>/ as seeds, prints the
# executions done and whether it crashed, and adds the inputs that found new
# coverage to the corpus. Crashing inputs are copied to
# fuzz/regressions/<target>/ (commit them once the bug is understood) and
# make the script exit non-zero.
#
# Environment: FUZZ_TIMEOUT (seconds one input may take, default 10),
# FUZZ_RSS_MB (memory limit, default 2048), FUZZ_NICE (niceness, default
# 15), FUZZ_MINIMISE=1 (rebuild the corpus minimised after the run).
# To use more cores, run several copies with different targets.
# Needs the nightly toolchain (`rustup toolchain install nightly`).
set -uo pipefail

seconds=${1:-60}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
timeout_s=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
nice_n=${FUZZ_NICE:-15}
run() { nice -n "$nice_n" "$@"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    run cargo install cargo-fuzz --locked || exit 2
fi

# Release mode with debug assertions (cargo-fuzz's default), so integer
# overflows are found as panics rather than wrapping silently.
if [ $# -gt 0 ]; then
    targets=("$@")
    for t in "${targets[@]}"; do
        run cargo +nightly fuzz build "$t" || { echo "build of $t failed"; exit 2; }
    done
else
    mapfile -t targets < <(cargo +nightly fuzz list)
    run cargo +nightly fuzz build || { echo "build failed"; exit 2; }
fi
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="$root/fuzz/target/$triple/release"

# Submit bodies are read up to the server's body limit; the rest are small.
max_len() {
    case $1 in
        submit_body) echo 1048576 ;;
        config|identity_schema|template) echo 65536 ;;
        *) echo 4096 ;;
    esac
}

failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "regressions/$t" "artifacts/$t"
    still=0
    for input in "regressions/$t"/*; do
        [ -f "$input" ] || continue
        if ! run "$bin_dir/$t" -rss_limit_mb="$rss_mb" -timeout="$timeout_s" "$input" >"artifacts/$t/replay.log" 2>&1; then
            echo "$t: regression $input still fails:"
            grep -m3 -E "panicked|ERROR: libFuzzer|overflowed|SUMMARY" "artifacts/$t/replay.log" | sed 's/^/    /'
            still=$((still + 1))
        fi
    done

    # New inputs go to a scratch directory first; only those that add
    # coverage are merged into the committed corpus afterwards.
    scratch="$root/fuzz/target/new-corpus/$t"
    rm -rf "$scratch" && mkdir -p "$scratch"
    log="artifacts/$t/fuzz.log"
    before=$(ls "artifacts/$t" | grep -cE '^(crash|timeout|oom|leak|slow-unit)-' || true)
    run "$bin_dir/$t" "$scratch" "corpus/$t" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout="$timeout_s" \
        -rss_limit_mb="$rss_mb" -max_len="$(max_len "$t")" \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}' | tail -n 1)
    # A crash can cut the final stats short; the last status line has a count.
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    after=$(ls "artifacts/$t" | grep -cE '^(crash|timeout|oom|leak|slow-unit)-' || true)
    outcome=ok
    if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
        outcome=CRASHED
        failed=1
        for a in $(ls -t "artifacts/$t" | grep -E '^(crash|timeout|oom|leak)-' | head -n $((after - before > 0 ? after - before : 1))); do
            cp "artifacts/$t/$a" "regressions/$t/"
            echo "$t: crashing input kept as fuzz/regressions/$t/$a"
        done
        grep -m5 -E "panicked|ERROR: libFuzzer|SUMMARY|overflowed|ALARM|out-of-memory" "$log" | sed 's/^/    /'
    fi
    [ "$still" -gt 0 ] && failed=1

    # New inputs that reach features the corpus does not are added to it;
    # with FUZZ_MINIMISE=1 the corpus is instead rebuilt as the smallest set
    # covering every feature of both (what `cargo fuzz cmin` does), which
    # renames files, so do that only now and then.
    before_n=$(find "corpus/$t" -type f | wc -l)
    if [ "${FUZZ_MINIMISE:-0}" = 1 ]; then
        fresh="$root/fuzz/target/min-corpus/$t"
        rm -rf "$fresh" && mkdir -p "$fresh"
        if run "$bin_dir/$t" -set_cover_merge=1 -rss_limit_mb="$rss_mb" -timeout="$timeout_s" \
            -max_len="$(max_len "$t")" "$fresh" "corpus/$t" "$scratch" >"artifacts/$t/merge.log" 2>&1 \
            && [ -n "$(ls -A "$fresh")" ]; then
            rm -rf "corpus/$t" && mv "$fresh" "corpus/$t"
        else
            echo "$t: corpus minimisation failed (see fuzz/artifacts/$t/merge.log); corpus left as it was"
        fi
    elif [ -n "$(ls -A "$scratch")" ]; then
        run "$bin_dir/$t" -merge=1 -rss_limit_mb="$rss_mb" -timeout="$timeout_s" -max_len="$(max_len "$t")" \
            "corpus/$t" "$scratch" >"artifacts/$t/merge.log" 2>&1 \
            || echo "$t: corpus merge failed (see fuzz/artifacts/$t/merge.log)"
    fi
    after_n=$(find "corpus/$t" -type f | wc -l)
    summary+=("$(printf '%-16s %12s execs  %-8s corpus %5s -> %-5s files  regressions still failing: %s' \
        "$t" "$execs" "$outcome" "$before_n" "$after_n" "$still")")
done

echo
echo "fuzzing summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
echo "corpus: $(du -sb corpus | cut -f1) bytes in $(find corpus -type f | wc -l) files under fuzz/corpus"
exit "$failed"
