#!/usr/bin/env bash
# Whole-pipeline cost: CPU seconds per million packets of `mbox run` on the same generated
# traffic with growing NF chains, measured back to back in one run (the machine is shared and
# noisy: compare rows of one run, not runs). Usage: tools/bench-pipeline.sh [FLOWS] [SHARDS]
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-20000}
shards=${2:-1}
cargo build --release --workspace --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Generate once, replay from the page cache: the rows then measure mbox, not the generator.
./target/release/mbox gen --out "$dir/traffic.pcap" --flows "$flows" --udp-flows $((flows / 10)) --response-bytes 8192 --concurrency 256 2> /dev/null
gen="pcap = \"$dir/traffic.pcap\""
row() {
    local name=$1 nfs=$2
    printf '[input]\n%s\n[runtime]\nshards = %s\n%b' "$gen" "$shards" "$nfs" > "$dir/run.toml"
    ./target/release/mbox run "$dir/run.toml" --quiet --report "$dir/report.json" > /dev/null
    jq -r --arg name "$name" '[$name, .input.packets, (.cpu_s * 1000 | floor / 1000), (.cpu_s_per_mpkt * 100 | floor / 100), (.input.packets / .wall_s / 1000 | floor)] | @tsv' "$dir/report.json"
}
printf 'chain\tpackets\tcpu_s\tcpu_s_per_Mpkt\tkpps\n'
row "stack only (no NF)" ""
row "flow-stats" '[[nf]]\nplugin = "flow-stats"\nargs = { output = "'"$dir"'/flows.jsonl" }\n'
row "flow-stats + heavy-hitter + logger" '[[nf]]\nplugin = "flow-stats"\nargs = { output = "'"$dir"'/flows.jsonl" }\n[[nf]]\nplugin = "heavy-hitter"\n[[nf]]\nplugin = "logger"\nsubscribe = ["ALERT", "FLOW/TCP/NEW", "FLOW/TCP/TERMINATE", "FLOW/UDP"]\nargs = { output = "'"$dir"'/events.jsonl" }\n'
