#!/usr/bin/env bash
# Instructions per benchmark of a criterion bench, counted by cachegrind: deterministic where
# wall-clock figures on a shared machine swing by 2x. A criterion binary run without `--bench`
# runs each benchmark once (its test mode); the count of a run that matches no benchmark (the
# inputs' setup) is subtracted, which leaves one iteration's instructions.
#
# Usage: tools/bench-instructions.sh [BENCH] [NAME...]
#   BENCH      a bench of mbox-core (default l23_stack)
#   NAME       benchmarks by exact name (default: every benchmark the bench lists)
#   BASE=DIR   also count another checkout's build of the same bench (a worktree of an older
#              commit; built here with `cargo bench --no-run` when missing): an A/B
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-l23_stack}
shift || true
command -v valgrind > /dev/null || { echo "bench-instructions: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

binary() { # the bench's executable in checkout $1
    (cd "$1" && cargo bench -p mbox-core --bench "$bench" --no-run --message-format=json 2> /dev/null) |
        jq -r 'select(.executable != null and .target.name == "'"$bench"'") | .executable' | tail -n 1
}
instructions() { # checkout $1, filter $2: instructions of one run
    (cd "$1/mbox-core" && valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$2" --exact "$3" 2>&1 > /dev/null) |
        awk '/I[ ]+refs/ { gsub(",", "", $4); last = $4 } END { print last }'
}
# Criterion writes its reports under the working directory unless told otherwise.
export CRITERION_HOME
CRITERION_HOME=$(mktemp -d)
trap 'rm -rf "$CRITERION_HOME"' EXIT
sides=("$PWD")
[ -n "${BASE:-}" ] && sides+=("$(cd "$BASE" && pwd)")
bins=()
for side in "${sides[@]}"; do bins+=("$(binary "$side")"); done
filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
    mapfile -t filters < <("${bins[0]}" --list 2> /dev/null | sed -n 's/: benchmark$//p')
fi
printf '%-40s' "benchmark"
for side in "${sides[@]}"; do printf '%18s' "$(basename "$side")"; done
[ ${#sides[@]} -eq 2 ] && printf '%10s' "change"
echo
declare -a setup
for i in "${!sides[@]}"; do setup[$i]=$(instructions "${sides[$i]}" "${bins[$i]}" "no benchmark is named this"); done
for filter in "${filters[@]}"; do
    printf '%-40s' "$filter"
    counts=()
    for i in "${!sides[@]}"; do
        total=$(instructions "${sides[$i]}" "${bins[$i]}" "$filter")
        counts+=($((total - setup[i])))
        printf '%18s' "${counts[$i]}"
    done
    [ ${#sides[@]} -eq 2 ] && awk -v a="${counts[0]}" -v b="${counts[1]}" 'BEGIN { printf "%+9.2f%%", (a - b) * 100 / b }'
    echo
done
