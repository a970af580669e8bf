#!/usr/bin/env bash
# Live forwarding, side by side: in the testbed (tools/testbed.sh), the same client and server
# through each forwarder in turn, on the same af_packet ports:
#   testpmd        dpdk-testpmd, io forwarding (no parsing at all), one forwarding lcore
#   forward        mbox, L2/3 µStack only (no NF), idle threads park
#   forward-spin   mbox, L2/3 only, the shard busy-polls pinned to core 1 (as testpmd's lcore)
#   ids            mbox, TCP monitor + dpi + sig-match + flow-stats + logger (configs/testbed.toml)
# Each forwarder carries iperf3 (one TCP stream, Gbit/s received) and then wrk (1 thread, 16
# connections, a 1 KiB file: requests/s, p50 and p99 latency), SECONDS each. Rows run in
# ROUNDS rounds, interleaved, and each figure is the median of its rounds. The forwarder's CPU
# time over the window (/proc) and the frames its ports received (the veths' counters) give
# CPU-s per million packets and the cores it kept busy; 3 s without traffic, the cores it
# keeps busy idle. Writes OUT/live.md (default docs/bench). Needs root, DPDK
# (dpdk-testpmd), iperf3, wrk, nginx, jq.
# Usage: sudo tools/bench-live.sh [SECONDS] [ROUNDS] [OUT]   (defaults: 10 3 docs/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/bench-common.sh
seconds=${1:-10}
rounds=${2:-3}
out=${3:-docs/bench}
[ "$(id -u)" = 0 ] || { echo "bench-live: needs root (network namespaces)" >&2; exit 1; }
for tool in dpdk-testpmd iperf3 wrk nginx jq; do
    command -v "$tool" > /dev/null || { echo "bench-live: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$out"
cargo build --release --workspace --features mbox-core/dpdk --quiet
dir=$(mktemp -d)
# nginx's workers (www-data) read the files in here.
chmod 755 "$dir"
forwarder=
iperf_pidfile=$dir/iperf3.pid
cleanup() {
    [ -n "$forwarder" ] && kill -INT "$forwarder" 2> /dev/null && wait "$forwarder" 2> /dev/null || true
    [ -f "$iperf_pidfile" ] && kill "$(cat "$iperf_pidfile")" 2> /dev/null || true
    tools/testbed.sh down
    rm -rf "$dir"
}
trap cleanup EXIT
tools/testbed.sh up "$dir/tb" > "$dir/testbed.env"
. "$dir/testbed.env"
head -c 1024 /dev/urandom > "$dir/tb/www/f1k"
url=http://$TESTBED_SERVER_IP/f1k
client() { ip netns exec "$TESTBED_CLIENT_NS" "$@"; }
ip netns exec "$TESTBED_SERVER_NS" iperf3 -s -B "$TESTBED_SERVER_IP" -D --pidfile "$iperf_pidfile"

eal_common='"--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "-l", "0", "--log-level", "error", "--vdev=net_af_packet0,iface=mb-c1,framecnt=8192", "--vdev=net_af_packet1,iface=mb-s1,framecnt=8192"'
mbox_config() { # NAME RUNTIME_LINES NF_LINES
    printf 'plugin_dir = "%s"\n[dpdk]\neal = [%s]\nports = [0, 1]\n[runtime]\n%s\n%s\n' \
        "$PWD/target/release" "$eal_common" "$2" "$3" > "$dir/$1.toml"
}
mbox_config forward 'idle = "park"' ''
mbox_config forward-spin $'idle = "spin"\ncores = [1]' ''
sed -n '/^\[\[nf\]\]/,$p' configs/testbed.toml |
    sed "s|out/testbed-flows.jsonl|$dir/flows.jsonl|; s|out/testbed-eve.jsonl|$dir/eve.jsonl|; s|testdata/rules|$PWD/testdata/rules|" > "$dir/ids-nfs.toml"
mbox_config ids 'idle = "park"' "$(cat "$dir/ids-nfs.toml")"

start() { # ROW
    if [ "$1" = testpmd ]; then
        # testpmd's default pool is sized for 32 ports; without hugepages that does not fit.
        dpdk-testpmd --no-huge -m 512 --no-pci --no-shconf --no-telemetry --log-level error \
            --vdev=net_af_packet0,iface=mb-c1,framecnt=8192 --vdev=net_af_packet1,iface=mb-s1,framecnt=8192 \
            -l 0,1 -- --forward-mode=io --auto-start --stats-period 3600 --total-num-mbufs=32768 \
            < /dev/null > "$dir/$1.log" 2>&1 &
    else
        ./target/release/mbox run "$dir/$1.toml" --quiet > "$dir/$1.log" 2>&1 &
    fi
    forwarder=$!
    for _ in $(seq 100); do
        client curl -sf -o /dev/null -m 1 "$url" && return
        kill -0 "$forwarder" 2> /dev/null || break
        sleep 0.2
    done
    echo "bench-live: no traffic through $1: $(cat "$dir/$1.log")" >&2
    exit 1
}
stop() {
    kill -INT "$forwarder"
    wait "$forwarder" || { echo "bench-live: the forwarder failed: $(cat "$dir/$row.log")" >&2; exit 1; }
    forwarder=
}
# The forwarder's user + system CPU ticks, and the frames both its ports received.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$forwarder/stat"; }
frames() { echo $(($(cat /sys/class/net/mb-c1/statistics/rx_packets) + $(cat /sys/class/net/mb-s1/statistics/rx_packets))); }
hz=$(getconf CLK_TCK)
# Runs a load (the rest of the line); appends, for its window, the forwarder's CPU-s per Mpkt
# to $dir/$row.cpu and the cores it kept busy to $dir/$row.busy.
measured() {
    local t0 f0 w0
    t0=$(cpu_ticks)
    f0=$(frames)
    w0=$(date +%s.%N)
    "$@"
    awk -v t="$(($(cpu_ticks) - t0))" -v f="$(($(frames) - f0))" -v hz="$hz" -v w="$(date +%s.%N)" -v w0="$w0" \
        -v cpu="$dir/$row.cpu" -v busy="$dir/$row.busy" \
        'BEGIN { printf "%.3f\n", t / hz / (f / 1e6) >> cpu; printf "%.2f\n", t / hz / (w - w0) >> busy }'
}
# The cores the forwarder keeps busy with no traffic (after the readiness check's request).
idle() {
    local t0
    sleep 1
    t0=$(cpu_ticks)
    sleep 3
    awk -v t="$(($(cpu_ticks) - t0))" -v hz="$hz" 'BEGIN { printf "%.3f\n", t / hz / 3 }' >> "$dir/$row.idle"
}
iperf() {
    client iperf3 -c "$TESTBED_SERVER_IP" -t "$seconds" -J > "$dir/iperf.json"
    jq -r '.end.sum_received.bits_per_second / 1e9' "$dir/iperf.json" >> "$dir/$row.gbit"
}
http() {
    client wrk -t1 -c16 -d"${seconds}s" --latency "$url" > "$dir/wrk.txt"
    if grep -q -E "Non-2xx|Socket errors" "$dir/wrk.txt"; then
        echo "bench-live: wrk saw errors through $row:" >&2
        cat "$dir/wrk.txt" >&2
        exit 1
    fi
    awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt" >> "$dir/$row.rps"
    awk '$1 == "50%" { print $2 }' "$dir/wrk.txt" | micros >> "$dir/$row.p50"
    awk '$1 == "99%" { print $2 }' "$dir/wrk.txt" | micros >> "$dir/$row.p99"
}

rows=(testpmd forward forward-spin ids)
for round in $(seq 1 "$rounds"); do
    for row in "${rows[@]}"; do
        echo "bench-live: round $round/$rounds: $row" >&2
        start "$row"
        idle
        measured iperf
        measured http
        stop
    done
done

median() { median_file "$dir/$1"; }
base_gbit=$(median testpmd.gbit)
base_rps=$(median testpmd.rps)
{
    echo "# Live forwarding: testpmd and mbox in the testbed"
    echo
    echo "\`sudo tools/bench-live.sh $seconds $rounds\`, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
    echo "medians of $rounds rounds, rows interleaved. Client, server, and forwarder share the machine."
    echo
    echo "| forwarder | iperf3 Gbit/s | vs testpmd | wrk req/s | vs testpmd | p50 µs | p99 µs | forwarder CPU-s per Mpkt (iperf3 / wrk) | forwarder cores busy (iperf3 / wrk / idle) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for row in "${rows[@]}"; do
        gbit=$(median "$row.gbit")
        rps=$(median "$row.rps")
        # The CPU lines alternate iperf3, wrk.
        awk 'NR % 2 == 1' "$dir/$row.cpu" > "$dir/$row.cpu-iperf"
        awk 'NR % 2 == 0' "$dir/$row.cpu" > "$dir/$row.cpu-wrk"
        awk 'NR % 2 == 1' "$dir/$row.busy" > "$dir/$row.busy-iperf"
        awk 'NR % 2 == 0' "$dir/$row.busy" > "$dir/$row.busy-wrk"
        printf '| %s | %.2f | %.2f | %.0f | %.2f | %.0f | %.0f | %s / %s | %s / %s / %s |\n' "$row" "$gbit" \
            "$(ratio "$gbit" "$base_gbit")" "$rps" "$(ratio "$rps" "$base_rps")" \
            "$(median "$row.p50")" "$(median "$row.p99")" "$(median "$row.cpu-iperf")" "$(median "$row.cpu-wrk")" \
            "$(median "$row.busy-iperf")" "$(median "$row.busy-wrk")" "$(median "$row.idle")"
    done
    echo
    echo "Every round's figures (iperf3 Gbit/s; wrk req/s):"
    echo
    for row in "${rows[@]}"; do
        echo "- $row: $(awk '{ printf "%s%.3f", sep, $1; sep = " " }' "$dir/$row.gbit"); $(awk '{ printf "%s%.0f", sep, $1; sep = " " }' "$dir/$row.rps")"
    done
} > "$out/live.md"
cat "$out/live.md"
