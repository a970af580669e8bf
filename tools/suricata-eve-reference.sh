#!/usr/bin/env bash
# Regenerates testdata/suricata-eve/EXPECTED-eve-keys.tsv: Suricata's own eve.json on every bundled
# capture, reduced to the key fields that mbox-core/tests/reference_eve.rs compares with `mbox ids`
# (tools/eve-keys.py says which). Needs Suricata (7.0.x: Debian bookworm-backports has 7.0.10) with
# its stock /etc/suricata/suricata.yaml; CI does not run this, it compares with the kept file.
#
# Usage: tools/suricata-eve-reference.sh [OUT_DIR]   (OUT_DIR keeps each capture's eve.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
rules=testdata/rules/custom.rules
args=()
for pcap in testdata/pcaps/*.pcap testdata/pcaps/*.pcapng; do
    name=$(basename "$pcap"); name=${name%.pcapng}; name=${name%.pcap}
    mkdir -p "$out/$name"
    # single runmode and no checksum checks: one thread sees packets in capture order, as mbox's
    # pcap source does; the stock yaml otherwise (HOME_NET, stream depth, midstream off).
    suricata -r "$pcap" -c /etc/suricata/suricata.yaml -S "$rules" -l "$out/$name" \
        --runmode single -k none >/dev/null 2>&1
    args+=("$name=$out/$name/eve.json")
done
suricata -V | sed 's/^/# /' > testdata/suricata-eve/EXPECTED-eve-keys.tsv
tools/eve-keys.py "${args[@]}" >> testdata/suricata-eve/EXPECTED-eve-keys.tsv
echo "wrote testdata/suricata-eve/EXPECTED-eve-keys.tsv (eve.json files in $out)"
