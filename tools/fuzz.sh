#!/usr/bin/env bash
# Runs every fuzz target of mbox-fuzz (docs/fuzzing.md) for SECONDS each (default 20), one
# process at a time, starting from its kept seeds (mbox-fuzz/seeds/TARGET, never written to)
# in a scratch working corpus; a target that crashes, hangs or runs out of memory fails the
# run once all have run, its input in mbox-fuzz/fuzz/artifacts/TARGET/. tools/test.sh (and so
# CI) runs it for a few seconds a target.
#
# It needs cargo-fuzz (cargo install cargo-fuzz --locked), and no nightly toolchain: without
# a sanitizer (`-s none`) cargo-fuzz passes rustc only stable flags (-Cpasses=sancov-module,
# -Cllvm-args=..., --cfg fuzzing) and libfuzzer-sys builds libFuzzer with the C++ compiler, so
# the default (stable) toolchain builds and runs the targets as they are; RUSTC_BOOTSTRAP is
# not needed (checked with cargo-fuzz 0.13.2 and rustc 1.95). Only a sanitizer (cargo-fuzz's
# default, `-s address`) needs -Zsanitizer, that is nightly: `cargo +nightly fuzz run TARGET`.
# Where cargo-fuzz is missing it says loudly that it skipped and exits 0 (a check that cannot
# run here), or fails where MBOX_REQUIRE_FUZZ=1 (tools/test.sh sets it as root, as in CI).
#
# The instrumented build lives in mbox-fuzz/fuzz/target (a workspace of its own, git-ignored)
# and is kept between runs, so a second run rebuilds only what changed.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# MBOX_FUZZ_RUNS=N ends each target after N executions if that comes before SECONDS (the long
# runs of docs/fuzzing.md: MBOX_FUZZ_RUNS=10000000 tools/fuzz.sh 1800).
set -euo pipefail
cd "$(dirname "$0")/../mbox-fuzz"
seconds=${1:-20}
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${MBOX_REQUIRE_FUZZ:-}" = 1 ]; then
        echo "tools/fuzz.sh: FAILED: cargo-fuzz is missing (cargo install cargo-fuzz --locked) and MBOX_REQUIRE_FUZZ=1" >&2
        exit 1
    fi
    echo "tools/fuzz.sh: SKIPPED, no fuzzing done: it needs cargo-fuzz (cargo install cargo-fuzz --locked)." >&2
    echo "tools/fuzz.sh:   The kept seeds still run in the tests: cargo nextest run -p mbox-fuzz" >&2
    if [ -n "${MBOX_SKIP_LOG:-}" ]; then
        echo "fuzz targets (tools/fuzz.sh): no cargo-fuzz" >>"$MBOX_SKIP_LOG"
    fi
    exit 0
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
started=$SECONDS
# Build every target first, so that each one's SECONDS are spent fuzzing.
cargo fuzz build -s none
built=$((SECONDS - started))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
printf '%-14s %12s %10s %8s\n' target executions exec/s result
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "fuzz/artifacts/$target"
    log="$work/$target.log"
    if cargo fuzz run -s none "$target" "$work/$target" "seeds/$target" -- \
        -max_total_time="$seconds" ${MBOX_FUZZ_RUNS:+-runs="$MBOX_FUZZ_RUNS"} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        failed+=("$target")
        tail -40 "$log" >&2
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    printf '%-14s %12s %10s %8s\n' "$target" "${runs:-?}" "${rate:-?}" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "tools/fuzz.sh: ${#failed[@]} of ${#targets[@]} targets FAILED: ${failed[*]} (inputs in mbox-fuzz/fuzz/artifacts/)" >&2
    exit 1
fi
echo "tools/fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no failure, in $((SECONDS - started)) s (${built} s of it building)"
