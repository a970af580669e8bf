#!/usr/bin/env bash
# How long a live reload pauses an NF: mbox (release) runs flow-stats on generated traffic
# with a control socket; flow-stats is reloaded RELOADS times, SPACING seconds apart, and each
# reload's answer gives the events the old instance drained, the state it handed over, and the
# pause (the time the NF's thread spent on the swap, while its queue waited). Then the run is
# stopped and its report checked for lost events.
# Usage: tools/bench-reload.sh [RELOADS] [SPACING] [SHARDS]   (defaults: 5 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
reloads=${1:-5}
spacing=${2:-1}
shards=${3:-2}
cargo build --release --workspace --quiet
dir=$(mktemp -d)
mbox_pid=
cleanup() {
    [ -n "$mbox_pid" ] && kill "$mbox_pid" 2> /dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
cat > "$dir/run.toml" << END
[input]
generator = { flows = 1000000000, concurrency = 5000 }
[runtime]
shards = $shards
[control]
socket = "$dir/mbox.sock"
[[nf]]
plugin = "flow-stats"
args = { output = "$dir/flows.jsonl" }
END
./target/release/mbox run "$dir/run.toml" --quiet --report "$dir/report.json" > /dev/null &
mbox_pid=$!
for _ in $(seq 100); do [ -S "$dir/mbox.sock" ] && break; sleep 0.05; done
printf 'reload\tdrained_events\tstate_bytes\tpause_ms\n'
for i in $(seq 1 "$reloads"); do
    sleep "$spacing"
    ./target/release/mboxctl -s "$dir/mbox.sock" --json reload flow-stats |
        jq -r --arg i "$i" '[$i, .drained, .state_bytes, (.pause_ms * 100 | round / 100)] | @tsv'
done
kill -INT "$mbox_pid"
wait "$mbox_pid"
mbox_pid=
jq -r '.nfs[0] | "flow-stats: \(.events) events handled of \(.delivered) delivered, \(.dropped_ring_full) lost to a full ring, \(.reloads) reloads"' "$dir/report.json"
jq -r '"run: \(.input.packets) packets in \(.wall_s * 100 | round / 100) s"' "$dir/report.json"
