#!/usr/bin/env bash
# Suricata's alerts on every bundled capture with one rule file, as the TSV that
# mbox-core/tests/reference_alerts.rs compares sig-match with (one row per capture, rule, flow and
# direction, with how many times it fired and the first packet's number). Needs Suricata 7.0.x
# (Debian bookworm-backports has 7.0.10) with its stock /etc/suricata/suricata.yaml; CI does not
# run this, it compares with the kept file.
#
# Usage: tools/suricata-alerts-reference.sh RULES OUT.tsv [SURICATA_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 RULES OUT.tsv [SURICATA_ARGS...]" >&2; exit 2; }
rules=$1 tsv=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for pcap in testdata/pcaps/*.pcap testdata/pcaps/*.pcapng; do
    name=$(basename "$pcap")
    mkdir -p "$work/$name"
    # As for the eve reference: one thread in capture order, no checksum checks, the stock yaml.
    suricata -r "$pcap" -c /etc/suricata/suricata.yaml -S "$rules" -l "$work/$name" \
        --runmode single -k none "$@" >/dev/null 2>&1
    jq -c --arg pcap "$name" 'select(.event_type == "alert") | {pcap: $pcap, a: .alert, f: .flow, proto, direction, app_proto, pcap_cnt, flow_ids: .flow_id}' \
        "$work/$name/eve.json"
done | python3 -c '
import json, sys
rows = {}
for line in sys.stdin:
    e = json.loads(line)
    a, f = e["a"], e["f"]
    key = (e["pcap"], a["signature_id"], a["rev"], a["signature"], e["proto"], f["src_ip"], f["src_port"], f["dest_ip"], f["dest_port"], f["start"], e["direction"], e.get("app_proto", ""))
    pcap_cnt = e.get("pcap_cnt")
    count, first = rows.get(key, (0, "" if pcap_cnt is None else pcap_cnt))
    rows[key] = (count + 1, first)
print("pcap\tsid\trev\tsignature\tproto\tflow_src_ip\tflow_src_port\tflow_dest_ip\tflow_dest_port\tflow_start\tdirection\tapp_proto\tcount\tfirst_pcap_cnt")
for key in sorted(rows, key=lambda k: tuple(str(x) for x in k)):
    print("\t".join(str(x) for x in key + rows[key]))
' > "$tsv"
echo "wrote $tsv ($(($(wc -l < "$tsv") - 1)) rows)"
