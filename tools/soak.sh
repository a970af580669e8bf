#!/usr/bin/env bash
# The soak (docs/performance.md, "Soak"): live traffic through the IDS chain for MINUTES in the
# testbed (tools/testbed.sh) — wrk keeping 16 connections busy on an 8 KB file, a curl loop
# fetching a 1 MB file and checking every body's SHA-256, a new connection every few
# milliseconds from a second curl loop — while, every minute, flow-stats and the logger are
# reloaded and test-faults, which panics after a number of events, is revived by a reload.
# mbox's RSS is sampled every 10 s. It fails unless: no request failed (wrk's non-2xx and socket
# errors, curl's failures and wrong bodies), the RSS after the first two minutes grew less than
# 16 MiB and 1 MiB per reload (the library copies, never unmapped), every NF's events balance (delivered = handled + dropped while disabled + lost to a
# full ring), and the packets balance (received = forwarded + dropped by NFs + malformed +
# non-IP dropped). Writes OUT/soak.md (default docs/bench). Needs root, wrk, nginx, curl, jq.
# Usage: sudo tools/soak.sh [MINUTES] [OUT]   (defaults: 30 docs/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
out=${2:-docs/bench}
[ "$(id -u)" = 0 ] || { echo "soak: needs root (network namespaces)" >&2; exit 1; }
for tool in wrk nginx curl jq; do
    command -v "$tool" > /dev/null || { echo "soak: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$out"
cargo build --release --workspace --features mbox-core/dpdk --quiet
dir=$(mktemp -d)
chmod 755 "$dir"
mbox_pid=
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    [ -n "$mbox_pid" ] && kill -INT "$mbox_pid" 2> /dev/null && wait "$mbox_pid" 2> /dev/null || true
    tools/testbed.sh down
    rm -rf "$dir"
}
trap cleanup EXIT
tools/testbed.sh up "$dir/tb" > "$dir/testbed.env"
. "$dir/testbed.env"
head -c 8192 /dev/urandom > "$dir/tb/www/8k"
head -c 1048576 /dev/urandom > "$dir/tb/www/1m"
want=$(sha256sum < "$dir/tb/www/1m" | cut -d' ' -f1)
client() { ip netns exec "$TESTBED_CLIENT_NS" "$@"; }
sock=$dir/mbox.sock
ctl() { ./target/release/mboxctl -s "$sock" "$@"; }

# The IDS chain of configs/testbed.toml, its outputs here, and test-faults panicking after
# 2,000,000 events (about every minute under this load).
{
    printf 'plugin_dir = "%s"\n' "$PWD/target/release"
    sed -n '/^\[dpdk\]/,/^ports/p' configs/testbed.toml
    printf '[control]\nsocket = "%s"\n' "$sock"
    sed -n '/^\[\[nf\]\]/,$p' configs/testbed.toml |
        sed "s|out/testbed-flows.jsonl|$dir/flows.jsonl|; s|out/testbed-eve.jsonl|$dir/eve.jsonl|; s|testdata/rules|$PWD/testdata/rules|"
    printf '[[nf]]\nplugin = "test-faults"\nargs = { panic_after = 2000000 }\n'
} > "$dir/soak.toml"
./target/release/mbox run "$dir/soak.toml" --quiet --report "$dir/report.json" > "$dir/mbox.log" 2>&1 &
mbox_pid=$!
url=http://$TESTBED_SERVER_IP
for _ in $(seq 100); do
    client curl -sf -o /dev/null -m 1 "$url/8k" && break
    kill -0 "$mbox_pid" 2> /dev/null || { echo "soak: mbox ended: $(cat "$dir/mbox.log")" >&2; exit 1; }
    sleep 0.2
done

seconds=$((minutes * 60))
end=$((SECONDS + seconds))
client wrk -t1 -c16 -d"${seconds}s" --timeout 10s --latency "$url/8k" > "$dir/wrk.txt" 2>&1 &
pids+=($!)
wrk_pid=$!
# Bodies checked one by one, and short connections.
(
    ok=0 bad=0
    while [ $SECONDS -lt $end ]; do
        got=$(client curl -sf -m 30 "$url/1m" | sha256sum | cut -d' ' -f1) || true
        if [ "$got" = "$want" ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
        echo "$ok $bad" > "$dir/bodies"
    done
) &
pids+=($!)
(
    ok=0 bad=0
    while [ $SECONDS -lt $end ]; do
        if client curl -sf -o /dev/null -m 10 "$url/8k"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
        echo "$ok $bad" > "$dir/short"
        sleep 0.005
    done
) &
pids+=($!)

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$mbox_pid/status"; }
: > "$dir/rss"
reloads=0 revived=0 minute=0
next_reload=$((SECONDS + 60))
while [ $SECONDS -lt $end ]; do
    sleep 10
    rss >> "$dir/rss"
    if [ $SECONDS -ge $next_reload ] && [ $SECONDS -lt $((end - 5)) ]; then
        minute=$((minute + 1))
        next_reload=$((next_reload + 60))
        ctl reload flow-stats > /dev/null
        ctl reload logger > /dev/null
        reloads=$((reloads + 2))
        if ctl --json status | jq -e '.nfs[] | select(.name == "test-faults") | .state == "disabled"' > /dev/null; then
            ctl reload test-faults > /dev/null
            ctl --json status | jq -e '.nfs[] | select(.name == "test-faults") | .state == "running"' > /dev/null ||
                { echo "soak: test-faults was not revived by its reload" >&2; exit 1; }
            revived=$((revived + 1))
        fi
        echo "soak: minute $minute: $reloads reloads, $revived revivals, RSS $(($(rss) >> 20)) MiB" >&2
    fi
done
wait "$wrk_pid" || true
for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
pids=()
kill -INT "$mbox_pid"
wait "$mbox_pid" || true
mbox_pid=

# The checks.
fail=()
requests=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
grep -q -E "Non-2xx|Socket errors" "$dir/wrk.txt" && fail+=("wrk saw errors: $(grep -E 'Non-2xx|Socket errors' "$dir/wrk.txt")")
read -r bodies_ok bodies_bad < "$dir/bodies"
read -r short_ok short_bad < "$dir/short"
[ "$bodies_bad" = 0 ] || fail+=("$bodies_bad of $((bodies_ok + bodies_bad)) 1 MB bodies failed or differed")
[ "$short_bad" = 0 ] || fail+=("$short_bad of $((short_ok + short_bad)) short connections failed")
# RSS: after the first two minutes (12 samples), growth from the first to the last.
warm=$(sed -n '13p' "$dir/rss")
last=$(tail -1 "$dir/rss")
[ -z "$warm" ] && warm=$(head -1 "$dir/rss")
grown=$(((last - warm) >> 20))
# Each reload maps a fresh copy of the library and none is ever unmapped (abi_stable's design,
# docs/control.md): up to 1 MiB a reload is theirs; beyond that, 16 MiB in all.
allowed=$((16 + reloads + revived))
[ "$grown" -lt "$allowed" ] || fail+=("RSS grew by $grown MiB after the first two minutes (allowed: $allowed MiB for $((reloads + revived)) reloads)")
r=$dir/report.json
events=$(jq '[.nfs[] | (.delivered - .events - .dropped_disabled - .dropped_ring_full)] | map(select(. != 0)) | length' "$r")
[ "$events" = 0 ] || fail+=("events do not balance for $events NFs: $(jq -c '[.nfs[] | {name, delivered, events, dropped_disabled, dropped_ring_full}]' "$r")")
packets=$(jq '.input.packets - .packets.forwarded - .packets.dropped_by_nf - ([.packets.malformed[]] | add // 0)' "$r")
[ "$packets" = 0 ] || fail+=("packets do not balance: $packets received and neither forwarded, dropped nor malformed ($(jq -c '{input: .input.packets, packets}' "$r"))")
{
    echo "# Soak: $minutes minutes of live traffic through the IDS chain"
    echo
    echo "\`sudo tools/soak.sh $minutes\`, $(date -u +%Y-%m-%d), $(nproc) cores. wrk (16 connections, 8 KB): $requests requests,"
    echo "$(awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt") req/s, p99 $(awk '$1 == "99%" { print $2 }' "$dir/wrk.txt");"
    echo "1 MB bodies checked: $bodies_ok good, $bodies_bad bad; short connections: $short_ok good, $short_bad failed."
    echo "Reloads: $reloads (flow-stats and logger every minute); test-faults panicked and was revived $revived times."
    echo "mbox's RSS (MiB, every 10 s): $(awk '{ printf "%s%d", sep, $1 / 1048576; sep = " " }' "$dir/rss")."
    echo "Packets: $(jq -c '{input: .input.packets, forwarded: .packets.forwarded, dropped_by_nf: .packets.dropped_by_nf, malformed: ([.packets.malformed[]] | add // 0)}' "$r")."
    echo "Events per NF (delivered, handled, dropped while disabled, lost to a full ring):"
    jq -r '.nfs[] | "- \(.name): \(.delivered), \(.events), \(.dropped_disabled), \(.dropped_ring_full); reloads \(.reloads), failures \(.failures)"' "$r"
    echo
    if [ ${#fail[@]} -eq 0 ]; then echo "Every check passed."; else printf 'FAILED: %s\n' "${fail[@]}"; fi
} > "$out/soak.md"
cat "$out/soak.md"
[ ${#fail[@]} -eq 0 ]
