#!/usr/bin/env bash
# Answering inside mbox against going through it, side by side in the testbed
# (tools/testbed.sh), the same client (wrk) and the same 8 KB answer:
#   mbox-serve       mbox terminates TCP for 198.18.1.80 (a [[service]]) and http-server answers
#   nginx-via-mbox   nginx in the server namespace, reached through an mbox L2/3 forward
#   nginx-direct     the same nginx, the two ports bridged by the kernel (no mbox)
# wrk runs at 64 connections (1 thread) and at 4,000 (2 threads), SECONDS each, rows interleaved
# in ROUNDS rounds; each figure is the median of its rounds: requests/s, p50 and p99, and CPU
# seconds per million requests of the serving side (mbox for mbox-serve, nginx's processes
# otherwise) and of mbox (the forward, for nginx-via-mbox). Writes OUT/endpoint.md (default
# docs/bench). Needs root, DPDK, wrk, nginx.
# Usage: sudo tools/bench-endpoint.sh [SECONDS] [ROUNDS] [OUT]   (defaults: 10 3 docs/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/bench-common.sh
seconds=${1:-10}
rounds=${2:-3}
out=${3:-docs/bench}
[ "$(id -u)" = 0 ] || { echo "bench-endpoint: needs root (network namespaces)" >&2; exit 1; }
for tool in wrk nginx; do
    command -v "$tool" > /dev/null || { echo "bench-endpoint: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$out"
cargo build --release --workspace --features mbox-core/dpdk --quiet
dir=$(mktemp -d)
chmod 755 "$dir"
mbox=
cleanup() {
    [ -n "$mbox" ] && kill -INT "$mbox" 2> /dev/null && wait "$mbox" 2> /dev/null || true
    ip link del br-direct 2> /dev/null || true
    tools/testbed.sh down
    rm -rf "$dir"
}
trap cleanup EXIT
tools/testbed.sh up "$dir/tb" > "$dir/testbed.env"
. "$dir/testbed.env"
service=198.18.1.80
# The same bytes nginx serves as http-server generates: byte i is (i * 31 + 7) % 251.
python3 -c "import sys; sys.stdout.buffer.write(bytes((i * 31 + 7) % 251 for i in range(8192)))" > "$dir/tb/www/8k"
client() { ip netns exec "$TESTBED_CLIENT_NS" "$@"; }

eal='"--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "-l", "0", "--log-level", "error", "--vdev=net_af_packet0,iface=mb-c1,framecnt=8192", "--vdev=net_af_packet1,iface=mb-s1,framecnt=8192"'
common=$(printf 'plugin_dir = "%s"\n[dpdk]\neal = [%s]\nports = [0, 1]\n' "$PWD/target/release" "$eal")
printf '%s\n' "$common" > "$dir/forward.toml"
printf '%s\n[[nf]]\nname = "web"\nplugin = "http-server"\nargs = { generated = { "/8k" = 8192 } }\n[[service]]\naddress = "%s"\nport = 80\nnfs = ["web"]\n' \
    "$common" "$service" > "$dir/serve.toml"

url_of() { case $1 in mbox-serve) echo "http://$service/8k" ;; *) echo "http://$TESTBED_SERVER_IP/8k" ;; esac; }
start() { # ROW
    case $1 in
        nginx-direct)
            ip link add br-direct type bridge
            ip link set mb-c1 master br-direct
            ip link set mb-s1 master br-direct
            ip link set br-direct up
            ;;
        mbox-serve) ./target/release/mbox run "$dir/serve.toml" --quiet > "$dir/$1.log" 2>&1 & mbox=$! ;;
        nginx-via-mbox) ./target/release/mbox run "$dir/forward.toml" --quiet > "$dir/$1.log" 2>&1 & mbox=$! ;;
    esac
    for _ in $(seq 100); do
        client curl -sf -o /dev/null -m 1 "$(url_of "$1")" && return
        sleep 0.2
    done
    echo "bench-endpoint: no answer in $1: $(cat "$dir/$1.log" 2> /dev/null)" >&2
    exit 1
}
stop() { # ROW
    if [ -n "$mbox" ]; then
        kill -INT "$mbox"
        wait "$mbox" || { echo "bench-endpoint: mbox failed: $(cat "$dir/$1.log")" >&2; exit 1; }
        mbox=
    else
        ip link set mb-c1 nomaster
        ip link set mb-s1 nomaster
        ip link del br-direct
    fi
}
# User + system CPU ticks of processes (their threads included).
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
nginx_pids() { local master; master=$(cat /run/mbox-testbed-nginx.pid); echo "$master" $(pgrep -P "$master"); }
hz=$(getconf CLK_TCK)
load() { # ROW CONNECTIONS
    local row=$1 conns=$2 threads=1 n0 m0 key=$1-$2
    [ "$conns" -gt 64 ] && threads=2
    n0=$(ticks $(nginx_pids))
    m0=0; [ -n "$mbox" ] && m0=$(ticks "$mbox")
    client sh -c "ulimit -n 16384 && wrk -t$threads -c$conns -d${seconds}s --timeout 20s --latency $(url_of "$row")" > "$dir/wrk.txt"
    if grep -q -E "Non-2xx|Socket errors" "$dir/wrk.txt"; then
        echo "bench-endpoint: wrk saw errors in $key:" >&2
        cat "$dir/wrk.txt" >&2
        exit 1
    fi
    local requests nginx_t mbox_t=0
    requests=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
    nginx_t=$(($(ticks $(nginx_pids)) - n0))
    [ -n "$mbox" ] && mbox_t=$(($(ticks "$mbox") - m0))
    awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt" >> "$dir/$key.rps"
    awk '$1 == "50%" { print $2 }' "$dir/wrk.txt" | micros >> "$dir/$key.p50"
    awk '$1 == "99%" { print $2 }' "$dir/wrk.txt" | micros >> "$dir/$key.p99"
    local serving=$nginx_t
    [ "$row" = mbox-serve ] && serving=$mbox_t
    awk -v t="$serving" -v r="$requests" -v hz="$hz" 'BEGIN { printf "%.2f\n", t / hz / (r / 1e6) }' >> "$dir/$key.cpu"
    awk -v t="$mbox_t" -v r="$requests" -v hz="$hz" 'BEGIN { printf "%.2f\n", t / hz / (r / 1e6) }' >> "$dir/$key.mbox"
}

rows=(mbox-serve nginx-via-mbox nginx-direct)
for round in $(seq 1 "$rounds"); do
    for row in "${rows[@]}"; do
        echo "bench-endpoint: round $round/$rounds: $row" >&2
        start "$row"
        load "$row" 64
        load "$row" 4000
        stop "$row"
    done
done

median() { median_file "$dir/$1"; }
{
    echo "# Answering inside mbox: http-server on the Endpoint against nginx"
    echo
    echo "\`sudo tools/bench-endpoint.sh $seconds $rounds\`, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
    echo "medians of $rounds rounds, rows interleaved; an 8 KB answer. Client, servers and mbox share the machine."
    echo
    echo "| row | connections | req/s | p50 µs | p99 µs | serving side CPU-s per M requests | mbox CPU-s per M requests |"
    echo "|---|---|---|---|---|---|---|"
    for conns in 64 4000; do
        for row in "${rows[@]}"; do
            key=$row-$conns
            printf '| %s | %s | %.0f | %.0f | %.0f | %s | %s |\n' "$row" "$conns" "$(median "$key.rps")" "$(median "$key.p50")" \
                "$(median "$key.p99")" "$(median "$key.cpu")" "$(median "$key.mbox")"
        done
    done
    echo
    echo "Every round's req/s:"
    echo
    for conns in 64 4000; do
        for row in "${rows[@]}"; do
            echo "- $row, $conns connections: $(awk '{ printf "%s%.0f", sep, $1; sep = " " }' "$dir/$row-$conns.rps")"
        done
    done
} > "$out/endpoint.md"
cat "$out/endpoint.md"
