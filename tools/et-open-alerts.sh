#!/usr/bin/env bash
# ET Open's alerts on every bundled capture, next to Suricata 7's
# (testdata/rules/EXPECTED-*et-open*.tsv): a run per capture of sig-match with the 5,434 rules
# (release build), and the (capture, sid) pairs found, missed and extra, with the stock
# variables and with HOME_NET and EXTERNAL_NET set to any. Prints one line per variable set;
# with KEEP=DIR, leaves each set's pairs in DIR/et-{stock,any}.tsv. tools/bench-ids.sh runs it.
# Usage: tools/et-open-alerts.sh   (after cargo build --release --workspace)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq > /dev/null || { echo "et-open-alerts: jq is not installed" >&2; exit 1; }
[ -x target/release/mbox ] || { echo "et-open-alerts: build first: cargo build --release --workspace" >&2; exit 1; }
dir=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT

et_alerts() {
    local vars=$1 capture name
    for capture in testdata/pcaps/*.pcap testdata/pcaps/*.pcapng; do
        name=$(basename "$capture")
        printf 'plugin_dir = "target/release"\n[input]\npcap = "%s"\n[[nf]]\nplugin = "sig-match"\nargs = { rules = "testdata/rules/et-open/et-open.rules"%s }\n[[nf]]\nplugin = "logger"\nsubscribe = ["ALERT"]\nargs = { output = "%s/et.jsonl" }\n' \
            "$capture" "$vars" "$dir" > "$dir/et-run.toml"
        ./target/release/mbox run "$dir/et-run.toml" --quiet > /dev/null 2>&1
        jq -r --arg p "$name" '"\($p)\t\(.alert.signature_id)"' "$dir/et.jsonl"
    done | sort -u
}

et_compare() {
    local ours=$1 expected=$2
    tail -n +2 "$expected" | cut -f1,2 | sort -u > "$dir/et-expected.tsv"
    printf '%s of %s (capture, sid) pairs of Suricata found, %s extra' \
        "$(comm -12 "$ours" "$dir/et-expected.tsv" | wc -l)" "$(wc -l < "$dir/et-expected.tsv")" "$(comm -23 "$ours" "$dir/et-expected.tsv" | wc -l)"
    comm -23 "$ours" "$dir/et-expected.tsv" | awk 'NR == 1 { printf " (" } { printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 } END { if (NR) printf ")" }'
    echo
}

et_alerts "" > "$dir/et-stock.tsv"
et_alerts ', vars = { HOME_NET = "any", EXTERNAL_NET = "any" }' > "$dir/et-any.tsv"
printf 'stock variables: %s' "$(et_compare "$dir/et-stock.tsv" testdata/rules/EXPECTED-suricata-alerts-et-open.tsv)"
echo
printf 'HOME_NET and EXTERNAL_NET any: %s' "$(et_compare "$dir/et-any.tsv" testdata/rules/EXPECTED-suricata-alerts-et-open-anynet.tsv)"
echo
