#!/usr/bin/env bash
# The load balancers, side by side (the first bars of the Microboxes paper's latency figure):
# in the testbed (tools/testbed.sh, two nginx backends from `tools/testbed.sh backends 2`), wrk
# in the client namespace fetches an 8 KB file through each middlebox in turn:
#   testpmd        dpdk-testpmd, io forwarding between mbox's two ports: the client fetches
#                  from backend 1 directly (the floor: no balancing at all)
#   haproxy-tcp    HAProxy 2.6 `mode tcp`, round robin over both backends
#   haproxy-http   HAProxy 2.6 `mode http` (keep-alive both sides), round robin
#   mbox-l4        mbox, the l4-lb NF on the L4 NAT (destination NAT: the backends answer
#                  the client through mbox), Maglev over the 5-tuple
#   mbox-l7        mbox, the l7-lb NF on the TCP Splicer, round robin
#   mbox-cache50   mbox, the http-cache NF before l7-lb with hit_ratio 50: half the requests
#                  answered by mbox's Endpoint from the store, half spliced to a backend
#   mbox-cache100  the same with every request a hit (after the first): no backend involved.
#                  A hit closes its connection (Connection: close), so wrk opens one per hit
# HAProxy runs where mbox runs: mbox's two veth ends are moved into a namespace of their own
# holding the service address (198.18.1.80) and the source address (198.18.1.20), so that the
# client, the wire and the backends are the same for every row. One thread each (HAProxy
# nbthread 1; mbox one shard, and its NF and control threads).
# Each row runs wrk (2 threads) at 64 and at 4,000 connections for SECONDS; rows run in
# ROUNDS rounds, interleaved, and each figure is the median of its rounds: requests/s, p50 and
# p99 latency, the middlebox's CPU per request (user + system of its process over the window,
# /proc), and failed requests (non-2xx answers and socket errors, summed over the rounds).
# Writes OUT/lb.md, OUT/lb.tsv and OUT/lb.svg (default docs/bench). Needs root, dpdk-testpmd, haproxy,
# wrk, nginx.
# Usage: sudo tools/bench-lb.sh [SECONDS] [ROUNDS] [OUT]   (defaults: 10 3 docs/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/bench-common.sh
seconds=${1:-10}
rounds=${2:-3}
out=${3:-docs/bench}
[ "$(id -u)" = 0 ] || { echo "bench-lb: needs root (network namespaces)" >&2; exit 1; }
for tool in dpdk-testpmd haproxy wrk nginx; do
    command -v "$tool" > /dev/null || { echo "bench-lb: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$out"
cargo build --release --workspace --features mbox-core/dpdk --quiet
dir=$(mktemp -d)
chmod 755 "$dir"
LB_NS=mbox-tb-lb
VIP=198.18.1.80
SOURCE=198.18.1.20
middlebox=
cleanup() {
    [ -n "$middlebox" ] && kill -TERM "$middlebox" 2> /dev/null && wait "$middlebox" 2> /dev/null || true
    lb_ns_down
    tools/testbed.sh down
    rm -rf "$dir"
}
trap cleanup EXIT
tools/testbed.sh up "$dir/tb" > "$dir/testbed.env"
. "$dir/testbed.env"
tools/testbed.sh backends 2
client() { ip netns exec "$TESTBED_CLIENT_NS" "$@"; }

# HAProxy's place: mbox's ports, with the service and source addresses, in a namespace.
lb_ns_up() {
    ip netns add "$LB_NS"
    for i in mb-c1 mb-s1; do ip link set "$i" netns "$LB_NS"; done
    lb() { ip netns exec "$LB_NS" "$@"; }
    lb ip link set lo up
    lb ip addr add "$VIP/32" dev mb-c1
    lb ip addr add "$SOURCE/32" dev mb-s1
    for i in mb-c1 mb-s1; do
        lb ip link set "$i" up
        lb ethtool -K "$i" tx off rx off > /dev/null 2>&1 || true
    done
    lb ip route add "$TESTBED_CLIENT_IP/32" dev mb-c1 src "$VIP"
    for k in 1 2; do lb ip route add "198.18.1.1$k/32" dev mb-s1 src "$SOURCE"; done
    lb sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
    lb sysctl -qw net.ipv4.tcp_tw_reuse=1
}
# mbox's ports back where mbox takes them (as tools/testbed.sh left them).
lb_ns_down() {
    ip netns list | grep -qw "$LB_NS" || return 0
    for i in mb-c1 mb-s1; do
        ip netns exec "$LB_NS" ip link set "$i" netns 1 2> /dev/null || true
        sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1" || true
        ip link set "$i" up || true
    done
    ip netns del "$LB_NS"
}

eal='"--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry", "-l", "0", "--log-level", "error", "--vdev=net_af_packet0,iface=mb-c1,framecnt=8192", "--vdev=net_af_packet1,iface=mb-s1,framecnt=8192"'
# An mbox config: the NF PLUGIN with backends at PORT_SUFFIX (":80", or "" to keep the flow's
# port) on a service of STACK, with EXTRA service keys.
mbox_config() { # PLUGIN PORT_SUFFIX STACK EXTRA
    cat << EOF
plugin_dir = "$PWD/target/release"
[dpdk]
eal = [$eal]
ports = [0, 1]
[[nf]]
name = "lb"
plugin = "$1"
args = { backends = [{ name = "web1", address = "198.18.1.11$2" }, { name = "web2", address = "198.18.1.12$2" }] }
[[service]]
address = "$VIP"
port = 80
stack = "$3"
$4
nfs = ["lb"]
EOF
}
mbox_config l7-lb :80 splicer "source = \"$SOURCE\"" > "$dir/mbox-l7.toml"
# The l7 row with the http-cache NF before the balancer (first in the chain: NFs run in the
# order of their [[nf]] tables), at hit ratio RATIO.
cache_config() { # RATIO
    mbox_config l7-lb :80 splicer "source = \"$SOURCE\"" | awk -v ratio="$1" '
        /^\[\[nf\]\]$/ && !done { printf "[[nf]]\nname = \"cache\"\nplugin = \"http-cache\"\nargs = { hit_ratio = %s }\n", ratio; done = 1 }
        /^nfs = / { print "nfs = [\"cache\", \"lb\"]"; next }
        { print }'
}
cache_config 50 > "$dir/mbox-cache50.toml"
cache_config 100 > "$dir/mbox-cache100.toml"
mbox_config l4-lb "" l4 "" > "$dir/mbox-l4.toml"
haproxy_config() { # MODE
    cat << EOF
global
    # 4,000 clients and as many server connections, within the 20,000 descriptors a process gets here.
    maxconn 9000
    nbthread 1
defaults
    mode $1
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend lb
    bind $VIP:80
    default_backend web
backend web
    balance roundrobin
    source $SOURCE
    server web1 198.18.1.11:80
    server web2 198.18.1.12:80
EOF
}
haproxy_config tcp > "$dir/haproxy-tcp.cfg"
haproxy_config http > "$dir/haproxy-http.cfg"

url_of() { [ "$1" = testpmd ] && echo "http://198.18.1.11/8k" || echo "http://$VIP/8k"; }
start() { # ROW
    # Every middlebox has its own MAC for the addresses: nobody keeps the last one's (an entry
    # the kernel is probing at that moment stays; it resolves again by itself).
    ip -n "$TESTBED_CLIENT_NS" neigh flush all > /dev/null 2>&1 || true
    ip -n "$TESTBED_SERVER_NS" neigh flush all > /dev/null 2>&1 || true
    case "$1" in
        testpmd)
            dpdk-testpmd --no-huge -m 512 --no-pci --no-shconf --no-telemetry --log-level error \
                --vdev=net_af_packet0,iface=mb-c1,framecnt=8192 --vdev=net_af_packet1,iface=mb-s1,framecnt=8192 \
                -l 0,1 -- --forward-mode=io --auto-start --stats-period 3600 --total-num-mbufs=32768 \
                < /dev/null > "$dir/$1.log" 2>&1 &
            ;;
        haproxy-*)
            lb_ns_up
            ip netns exec "$LB_NS" haproxy -db -f "$dir/$1.cfg" > "$dir/$1.log" 2>&1 &
            ;;
        mbox-*) ./target/release/mbox run "$dir/$1.toml" --quiet > "$dir/$1.log" 2>&1 & ;;
    esac
    middlebox=$!
    for _ in $(seq 100); do
        client curl -sf -o /dev/null -m 1 "$(url_of "$1")" && return
        kill -0 "$middlebox" 2> /dev/null || break
        sleep 0.2
    done
    echo "bench-lb: no traffic through $1: $(cat "$dir/$1.log")" >&2
    exit 1
}
stop() { # ROW
    # HAProxy in the foreground (-db) stops on SIGTERM; mbox and testpmd end cleanly on SIGINT.
    case "$1" in
        haproxy-*) kill -TERM "$middlebox" ;;
        *) kill -INT "$middlebox" ;;
    esac
    wait "$middlebox" || true
    middlebox=
    lb_ns_down
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$middlebox/stat"; }
hz=$(getconf CLK_TCK)
# wrk at CONNS connections through ROW: appends requests/s, p50, p99 (µs) and the middlebox's
# CPU µs per request to $dir/ROW-CONNS.{rps,p50,p99,cpu}.
load() { # ROW CONNS
    local t0 f=$dir/$1-$2
    t0=$(cpu_ticks)
    client sh -c "ulimit -n 16384 && wrk -t2 -c$2 -d${seconds}s --timeout 10s --latency $(url_of "$1")" > "$dir/wrk.txt"
    local ticks=$(($(cpu_ticks) - t0))
    # Failed requests are counted, not fatal: a row that fails some at 4,000 connections is a
    # figure too (the table's last column, every round's count).
    local errors
    errors=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { for (i = 4; i <= NF; i += 2) n += $i } END { print n + 0 }' "$dir/wrk.txt")
    if [ "$errors" != 0 ]; then
        echo "bench-lb: wrk saw $errors failed requests through $1 at $2 connections:" >&2
        grep -E "Non-2xx|Socket errors" "$dir/wrk.txt" >&2
    fi
    echo "$errors" >> "$f.err"
    awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt" >> "$f.rps"
    awk '$1 == "50%" { print $2 }' "$dir/wrk.txt" | micros >> "$f.p50"
    awk '$1 == "99%" { print $2 }' "$dir/wrk.txt" | micros >> "$f.p99"
    local requests
    requests=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
    awk -v t="$ticks" -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.2f\n", t / hz / n * 1e6 }' >> "$f.cpu"
}

rows=(testpmd haproxy-tcp haproxy-http mbox-l4 mbox-l7 mbox-cache50 mbox-cache100)
conns=(64 4000)
for round in $(seq 1 "$rounds"); do
    for row in "${rows[@]}"; do
        echo "bench-lb: round $round/$rounds: $row" >&2
        start "$row"
        for c in "${conns[@]}"; do load "$row" "$c"; done
        stop "$row"
    done
done

{
    echo "# Load balancers: HAProxy and mbox in the testbed"
    echo
    echo "\`sudo tools/bench-lb.sh $seconds $rounds\`, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
    echo "medians of $rounds rounds, rows interleaved; wrk (2 threads, 8 KB file, keep-alive), the"
    echo "middlebox, two nginx backends and the client share the machine. CPU: the middlebox"
    echo "process's user + system time per request."
    echo
    for c in "${conns[@]}"; do
        base=$(median_file "$dir/haproxy-http-$c.rps")
        echo "**$c connections**"
        echo
        echo "| middlebox | req/s | vs haproxy-http | p50 µs | p99 µs | CPU µs per request | failed requests |"
        echo "|---|---|---|---|---|---|---|"
        for row in "${rows[@]}"; do
            rps=$(median_file "$dir/$row-$c.rps")
            printf '| %s | %.0f | %.2f | %.0f | %.0f | %.1f | %d |\n' "$row" "$rps" "$(ratio "$rps" "$base")" \
                "$(median_file "$dir/$row-$c.p50")" "$(median_file "$dir/$row-$c.p99")" "$(median_file "$dir/$row-$c.cpu")" \
                "$(awk '{ n += $1 } END { print n + 0 }' "$dir/$row-$c.err")"
        done
        echo
    done
    echo "Every round's req/s:"
    echo
    for c in "${conns[@]}"; do
        for row in "${rows[@]}"; do
            echo "- $row, $c connections: $(awk '{ printf "%s%.0f", sep, $1; sep = " " }' "$dir/$row-$c.rps") (failed: $(paste -sd' ' "$dir/$row-$c.err"))"
        done
    done
} > "$out/lb.md"
{
    printf 'middlebox\tconnections\treq_s\tp50_us\tp99_us\tcpu_us_per_request\tfailed\n'
    for c in "${conns[@]}"; do
        for row in "${rows[@]}"; do
            printf '%s\t%s\t%.0f\t%.0f\t%.0f\t%.1f\t%d\n' "$row" "$c" "$(median_file "$dir/$row-$c.rps")" "$(median_file "$dir/$row-$c.p50")" \
                "$(median_file "$dir/$row-$c.p99")" "$(median_file "$dir/$row-$c.cpu")" "$(awk '{ n += $1 } END { print n + 0 }' "$dir/$row-$c.err")"
        done
    done
} > "$out/lb.tsv"
# The plot: requests/s per middlebox, one panel per connection count, each bar labelled with
# the middlebox's CPU µs per request.
awk -F'\t' '
NR == 1 { next }
{ n[$2]++; row[$2, n[$2]] = $1; rps[$2, n[$2]] = $3; cpu[$2, n[$2]] = $6; if ($3 > top[$2]) top[$2] = $3; if (!($2 in seen)) { seen[$2] = 1; conns[++nc] = $2 } }
END {
    w = 420; h = 300; l = 60; b = 60
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", nc * w, h + 30
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    split("#7f7f7f #ff7f0e #d62728 #2ca02c #1f77b4 #9467bd #8c564b", colors, " ")
    for (p = 1; p <= nc; p++) {
        c = conns[p]; x0 = (p - 1) * w; ymax = top[c] * 1.15; y0 = h - b + 30; span = h - b - 10
        printf "<text x=\"%d\" y=\"18\" font-weight=\"bold\">%s connections: requests/s (label: CPU µs per request)</text>\n", x0 + 10, c
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0 + l, y0, x0 + w - 20, y0
        printf "<line x1=\"%d\" y1=\"30\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0 + l, x0 + l, y0
        for (t = 0; t <= 4; t++)
            printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f</text>\n", x0 + l - 5, y0 - t * span / 4 + 4, ymax * t / 4
        slot = (w - l - 20) / n[c]
        for (k = 1; k <= n[c]; k++) {
            x = x0 + l + (k - 1) * slot + slot * 0.15; bh = rps[c, k] / ymax * span
            printf "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x, y0 - bh, slot * 0.7, bh, colors[(k - 1) % 7 + 1]
            printf "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x + slot * 0.35, y0 - bh - 4, cpu[c, k]
            printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"end\" transform=\"rotate(-35 %.1f %d)\">%s</text>\n", x + slot * 0.35, y0 + 14, x + slot * 0.35, y0 + 14, row[c, k]
        }
    }
    print "</svg>"
}' "$out/lb.tsv" > "$out/lb.svg"
cat "$out/lb.md"
