#!/usr/bin/env bash
# Runs every fuzz target of mbox-fuzz (docs/fuzzing.md) for SECONDS each (default 20), one
# process at a time, starting from its kept seeds (mbox-fuzz/seeds/TARGET, never written to)
# in a scratch working corpus; a target that crashes fails the run once all have run, its
# input in mbox-fuzz/fuzz/artifacts/TARGET/. Needs `cargo +nightly` and cargo-fuzz; without
# them it says loudly that it skipped (and exits 0, as a check that cannot run here).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../mbox-fuzz"
seconds=${1:-20}
shift || true

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "tools/fuzz.sh: SKIPPED, no fuzzing done: it needs a nightly toolchain and cargo-fuzz" >&2
    echo "tools/fuzz.sh:   (rustup toolchain install nightly; cargo install cargo-fuzz)." >&2
    echo "tools/fuzz.sh:   The kept seeds still run on stable: cargo nextest run -p mbox-fuzz" >&2
    if [ -n "${MBOX_SKIP_LOG:-}" ]; then
        echo "fuzz targets (tools/fuzz.sh): no nightly toolchain or cargo-fuzz" >>"$MBOX_SKIP_LOG"
    fi
    exit 0
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
started=$SECONDS
# Build every target first, so that each one's SECONDS are spent fuzzing.
cargo +nightly fuzz build -s none

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
printf '%-14s %12s %10s %8s\n' target executions exec/s result
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "fuzz/artifacts/$target"
    log="$work/$target.log"
    if cargo +nightly fuzz run -s none "$target" "$work/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
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
echo "tools/fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no failure, in $((SECONDS - started)) s"
