#!/usr/bin/env bash
# How mbox scales with shards: the same generated traffic replayed with 1, 2, 4 and 8 shards,
# with no NF and with flow-stats, one run, plus how often the input waited for a shard (which
# says whether the input or the shards limit the rate). Usage: tools/bench-shards.sh [FLOWS]
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-100000}
cargo build --release --workspace --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
./target/release/mbox gen --out "$dir/t.pcap" --flows "$flows" --udp-flows $((flows / 10)) --response-bytes 8192 --concurrency 2048 2> /dev/null
printf 'shards\tchain\tpackets\tcpu_s_per_Mpkt\tMpps\tinput_waits\n'
for shards in 1 2 4 8; do
    for chain in none flow-stats; do
        nf=""
        if [ "$chain" = flow-stats ]; then
            nf=$(printf '[[nf]]\nplugin = "flow-stats"\nargs = { output = "%s/flows.jsonl" }' "$dir")
        fi
        printf '[input]\npcap = "%s"\n[runtime]\nshards = %s\n%s\n' "$dir/t.pcap" "$shards" "$nf" > "$dir/run.toml"
        ./target/release/mbox run "$dir/run.toml" --quiet --report "$dir/r.json" > /dev/null
        jq -r --arg s "$shards" --arg c "$chain" \
            '[$s, $c, .input.packets, (.cpu_s_per_mpkt * 100 | floor / 100), (.input.packets / .wall_s / 1e4 | floor / 100), .input.ring_waits] | @tsv' "$dir/r.json"
    done
done
