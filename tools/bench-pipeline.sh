#!/usr/bin/env bash
# Whole-pipeline cost: CPU seconds per million packets of `mbox run` on the same generated
# traffic with growing NF chains, measured back to back in one run (the machine is shared and
# noisy: compare rows of one run, not runs).
#
# Usage: tools/bench-pipeline.sh [FLOWS] [SHARDS]
#   ROUNDS=N   run every row N times, interleaved, and report the median (default 1)
#   BASE=DIR   also run each row with the mbox and plugins in DIR (another build's
#              target/release, e.g. of an older commit), interleaved with this build's: an A/B
#              comparison measured in the same run
#   CAPTURES=N replay every bundled capture merged N times over (`mbox merge`: real TCP,
#              UDP, DNS, QUIC) instead of generated traffic (FLOWS is then unused)
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-20000}
shards=${2:-1}
rounds=${ROUNDS:-1}
cargo build --release --workspace --quiet
builds=("$PWD/target/release")
[ -n "${BASE:-}" ] && builds+=("$(cd "$BASE" && pwd)")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Generate once, replay from the page cache: the rows then measure mbox, not the generator.
if [ -n "${CAPTURES:-}" ]; then
    ./target/release/mbox merge --out "$dir/traffic.pcap" --repeat "$CAPTURES" testdata/pcaps/*.pcap testdata/pcaps/*.pcapng 2> /dev/null
else
    ./target/release/mbox gen --out "$dir/traffic.pcap" --flows "$flows" --udp-flows $((flows / 10)) --response-bytes 8192 --concurrency 256 2> /dev/null
fi
gen="pcap = \"$dir/traffic.pcap\""
rules="$PWD/testdata/rules/custom.rules"
names=("stack only (no NF)" "flow-stats" "flow-stats + heavy-hitter + logger" "dpi + sig-match (demo rules)")
chains=(
    ""
    '[[nf]]\nplugin = "flow-stats"\nargs = { output = "'"$dir"'/flows.jsonl" }\n'
    '[[nf]]\nplugin = "flow-stats"\nargs = { output = "'"$dir"'/flows.jsonl" }\n[[nf]]\nplugin = "heavy-hitter"\n[[nf]]\nplugin = "logger"\nsubscribe = ["ALERT", "FLOW/TCP/NEW", "FLOW/TCP/TERMINATE", "FLOW/UDP"]\nargs = { output = "'"$dir"'/events.jsonl" }\n'
    '[[nf]]\nplugin = "dpi"\n[[nf]]\nplugin = "sig-match"\nargs = { rules = "'"$rules"'" }\n'
)
# One run of chain $1 with build $2; appends "cpu_s cpu_s_per_Mpkt kpps packets" to a file.
run() {
    local chain=$1 build=$2
    printf 'plugin_dir = "%s"\n[input]\n%s\n[runtime]\nshards = %s\n%b' "${builds[$build]}" "$gen" "$shards" "${chains[$chain]}" > "$dir/run.toml"
    "${builds[$build]}/mbox" run "$dir/run.toml" --quiet --report "$dir/report.json" > /dev/null
    jq -r '"\(.cpu_s) \(.cpu_s_per_mpkt) \(.input.packets / .wall_s / 1000) \(.input.packets)"' "$dir/report.json" >> "$dir/$chain-$build.runs"
}
for _ in $(seq 1 "$rounds"); do
    for chain in "${!chains[@]}"; do
        for build in "${!builds[@]}"; do
            run "$chain" "$build"
        done
    done
done
# The median run (by CPU seconds) of each row.
median() { sort -g "$dir/$1.runs" | awk -v n="$rounds" 'NR == int((n + 1) / 2) { print }'; }
printf 'chain\tbuild\tpackets\tcpu_s\tcpu_s_per_Mpkt\tkpps\n'
for chain in "${!chains[@]}"; do
    for build in "${!builds[@]}"; do
        read -r cpu per kpps packets <<< "$(median "$chain-$build")"
        label=this
        [ "$build" = 1 ] && label=base
        printf '%s\t%s\t%s\t%.3f\t%.2f\t%.0f\n' "${names[$chain]}" "$label" "$packets" "$cpu" "$per" "$kpps"
    done
done
