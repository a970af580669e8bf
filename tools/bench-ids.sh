#!/usr/bin/env bash
# The IDS side by side: one input, one run — mbox's IDS chain (dpi + sig-match + flow-stats +
# logger, one shard) against `suricata -r` with the same rules (the demo rules, and ET Open
# with HOME_NET and EXTERNAL_NET any on both) and against `ndpiReader`. The
# input is every bundled capture merged into one Ethernet pcap, PASSES times over, each pass
# with moved addresses and times (`mbox merge`), so all three read exactly the same packets.
# Each tool runs REPEAT times (default 3) in rounds; the run with the median wall time is kept.
# Then the ET Open rules: how many load and how long loading takes, next to Suricata, and the
# alerts they raise on every capture next to Suricata's.
# Writes OUT/ids.md (default docs/bench). Needs suricata (bookworm-backports) and ndpiReader
# (libndpi-bin); see docs/ids.md.
# Usage: tools/bench-ids.sh [PASSES] [OUT]   (defaults: 20 docs/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
passes=${1:-20}
out=${2:-docs/bench}
repeat=${REPEAT:-3}
for tool in suricata ndpiReader jq /usr/bin/time; do
    command -v "$tool" > /dev/null || { echo "bench-ids: $tool is not installed (see docs/ids.md)" >&2; exit 1; }
done
mkdir -p "$out"
cargo build --release --workspace --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

./target/release/mbox merge --out "$dir/replay.pcap" --repeat "$passes" testdata/pcaps/*.pcap testdata/pcaps/*.pcapng 2> "$dir/merge.txt"
packets=$(grep -o 'wrote [0-9]*' "$dir/merge.txt" | grep -o '[0-9]*')
rules=testdata/rules/custom.rules
sed "s|pcap = \"testdata/pcaps/ndpi__log4j-webapp-exploit.pcap\"|pcap = \"$dir/replay.pcap\"|; s|out/ids-flows.jsonl|$dir/flows.jsonl|; s|out/eve.jsonl|$dir/eve.jsonl|" \
    configs/ids.toml > "$dir/ids.toml"
# The same chain with ET Open, its network variables `any` (as Suricata's run below).
et=testdata/rules/et-open/et-open.rules
sed "s|rules = \"testdata/rules/custom.rules\"|rules = \"$et\", vars = { HOME_NET = \"any\", EXTERNAL_NET = \"any\" }|; s|$dir/eve.jsonl|$dir/et-eve.jsonl|" \
    "$dir/ids.toml" > "$dir/ids-et.toml"

# One run of a tool; appends "wall_s cpu_s" to $dir/<tool>.runs. $1: the config's name suffix
# ("" or "-et"); ET Open's run also appends sig-match's stream bytes inspected and its busy
# seconds to $dir/sig-et.runs.
run_mbox() {
    ./target/release/mbox run "$dir/ids$1.toml" --quiet --report "$dir/report.json" > /dev/null 2> "$dir/mbox.err"
    jq -r '"\(.wall_s) \(.cpu_s)"' "$dir/report.json" >> "$dir/mbox$1.runs"
    [ -n "$1" ] && jq -r '.nfs[] | select(.name == "sig-match") | "\(.counters.bytes_inspected) \(.busy_s)"' "$dir/report.json" >> "$dir/sig$1.runs"
    return 0
}
# $1: Suricata's runmode: single (one thread, as the reference alerts were made) or autofp
# (its default for files: a reader and a worker per core). $2: the rules; $3: a suffix for the
# runs' file; further arguments go to Suricata.
run_suricata() {
    local mode=$1 with=$2 suffix=$3
    shift 3
    rm -rf "$dir/suri$suffix" && mkdir "$dir/suri$suffix"
    /usr/bin/time -f "%e %U %S" -o "$dir/time.txt" \
        suricata -r "$dir/replay.pcap" -S "$with" -k none --runmode "$mode" -l "$dir/suri$suffix" -c /etc/suricata/suricata.yaml "$@" > /dev/null 2>&1
    awk '{ print $1, $2 + $3 }' "$dir/time.txt" >> "$dir/suricata-$mode$suffix.runs"
}
any=(--set vars.address-groups.HOME_NET=any --set vars.address-groups.EXTERNAL_NET=any)
run_ndpi() {
    /usr/bin/time -f "%e %U %S" -o "$dir/time.txt" ndpiReader -i "$dir/replay.pcap" -q > /dev/null 2>&1
    awk '{ print $1, $2 + $3 }' "$dir/time.txt" >> "$dir/ndpi.runs"
}
for round in $(seq 1 "$repeat"); do
    run_mbox ""
    run_suricata autofp "$rules" ""
    run_suricata single "$rules" ""
    run_ndpi
    run_mbox -et
    run_suricata autofp "$et" -et "${any[@]}"
    run_suricata single "$et" -et "${any[@]}"
done
median() { sort -g "$dir/$1.runs" | awk -v n="$repeat" 'NR == int((n + 1) / 2) { print }'; }
read -r mbox_wall mbox_cpu <<< "$(median mbox)"
read -r suri_wall suri_cpu <<< "$(median suricata-single)"
read -r fp_wall fp_cpu <<< "$(median suricata-autofp)"
read -r ndpi_wall ndpi_cpu <<< "$(median ndpi)"
read -r et_wall et_cpu <<< "$(median mbox-et)"
read -r et_suri_wall et_suri_cpu <<< "$(median suricata-single-et)"
read -r et_fp_wall et_fp_cpu <<< "$(median suricata-autofp-et)"
# sig-match's own rate with ET Open: stream bytes it inspected per second of its thread's work.
read -r sig_bytes sig_busy <<< "$(sort -k2 -g "$dir/sig-et.runs" | awk -v n="$repeat" 'NR == int((n + 1) / 2) { print }')"
mbox_alerts=$(grep -c '"event_type":"alert"' "$dir/eve.jsonl" || true)
suri_alerts=$(grep -c '"event_type":"alert"' "$dir/suri/eve.json" || true)
et_alerts=$(grep -c '"event_type":"alert"' "$dir/et-eve.jsonl" || true)
et_suri_alerts=$(grep -c '"event_type":"alert"' "$dir/suri-et/eve.json" || true)

# ET Open: rules loaded and load time (a run on the smallest capture is almost all loading).
small=testdata/pcaps/ndpi__smtp.pcap
printf 'plugin_dir = "target/release"\n[input]\npcap = "%s"\n[[nf]]\nplugin = "sig-match"\nargs = { rules = "testdata/rules/et-open/et-open.rules" }\n' "$small" > "$dir/et.toml"
/usr/bin/time -f "%e" -o "$dir/et-time.txt" ./target/release/mbox run "$dir/et.toml" --quiet > /dev/null 2> "$dir/et.err"
et_loaded=$(grep -o '[0-9]* rules loaded, [0-9]* \(not supported\|refused\)' "$dir/et.err" | head -1)
et_mbox=$(cat "$dir/et-time.txt")
/usr/bin/time -f "%e" -o "$dir/et-suri.txt" suricata -T -S testdata/rules/et-open/et-open.rules -l "$dir/suri" -c /etc/suricata/suricata.yaml > /dev/null 2>&1 || true
et_suri=$(cat "$dir/et-suri.txt")

# ET Open's alerts on every capture, next to Suricata's (tools/et-open-alerts.sh).
et_lines=$(tools/et-open-alerts.sh)
et_stock=$(printf '%s\n' "$et_lines" | sed -n 's/^stock variables: //p')
et_any=$(printf '%s\n' "$et_lines" | sed -n 's/^HOME_NET and EXTERNAL_NET any: //p')

{
    printf 'Input: %s packets (every bundled capture, %s passes, `mbox merge`). Median of %s runs in rounds.\n\n' "$packets" "$passes" "$repeat"
    printf '| tool | wall s | packets/s | CPU-s per Mpkt | alerts |\n|---|---|---|---|---|\n'
    awk -v p="$packets" -v w="$mbox_wall" -v c="$mbox_cpu" -v a="$mbox_alerts" 'BEGIN { printf "| mbox (dpi + sig-match + flow-stats + logger, 1 shard) | %.2f | %.0f | %.3f | %s |\n", w, p / w, c / p * 1e6, a }'
    awk -v p="$packets" -v w="$suri_wall" -v c="$suri_cpu" -v a="$suri_alerts" 'BEGIN { printf "| suricata -r (custom.rules, --runmode single) | %.2f | %.0f | %.3f | %s |\n", w, p / w, c / p * 1e6, a }'
    awk -v p="$packets" -v w="$fp_wall" -v c="$fp_cpu" 'BEGIN { printf "| suricata -r (custom.rules, --runmode autofp, its default) | %.2f | %.0f | %.3f | |\n", w, p / w, c / p * 1e6 }'
    awk -v p="$packets" -v w="$ndpi_wall" -v c="$ndpi_cpu" 'BEGIN { printf "| ndpiReader | %.2f | %.0f | %.3f | - |\n", w, p / w, c / p * 1e6 }'
    awk -v p="$packets" -v w="$et_wall" -v c="$et_cpu" -v a="$et_alerts" 'BEGIN { printf "| mbox, the same chain with ET Open (any/any) | %.2f | %.0f | %.3f | %s |\n", w, p / w, c / p * 1e6, a }'
    awk -v p="$packets" -v w="$et_suri_wall" -v c="$et_suri_cpu" -v a="$et_suri_alerts" 'BEGIN { printf "| suricata -r (ET Open, any/any, --runmode single) | %.2f | %.0f | %.3f | %s |\n", w, p / w, c / p * 1e6, a }'
    awk -v p="$packets" -v w="$et_fp_wall" -v c="$et_fp_cpu" 'BEGIN { printf "| suricata -r (ET Open, any/any, --runmode autofp) | %.2f | %.0f | %.3f | |\n", w, p / w, c / p * 1e6 }'
    awk -v mw="$mbox_wall" -v sw="$suri_wall" -v fw="$fp_wall" -v nw="$ndpi_wall" 'BEGIN { printf "\nmbox packets/s: %.2fx Suricata'"'"'s (single), %.2fx (autofp), %.2fx ndpiReader'"'"'s.\n", sw / mw, fw / mw, nw / mw }'
    awk -v mw="$et_wall" -v sw="$et_suri_wall" -v fw="$et_fp_wall" -v b="$sig_bytes" -v t="$sig_busy" 'BEGIN { printf "With ET Open: %.2fx Suricata'"'"'s (single), %.2fx (autofp); sig-match inspected %.0f MB of stream at %.0f MB per busy second.\n", sw / mw, fw / mw, b / 1e6, b / t / 1e6 }'
    printf '\nET Open (5,434 rules): mbox: %s; load and a run on a small capture %s s; `suricata -T`: %s s.\n' "$et_loaded" "$et_mbox" "$et_suri"
    printf '(Alerts are counted as each tool logs them: Suricata once per match, mbox once per rule, flow and direction.)\n'
    printf '\nET Open alerts on the 67 captures, a run each: stock variables: %s; HOME_NET and EXTERNAL_NET any: %s.\n' "$et_stock" "$et_any"
} > "$out/ids.md"
cat "$out/ids.md"
