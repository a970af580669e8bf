#!/usr/bin/env bash
# The live testbed: a client and a server, each in a network namespace of its own, joined to
# the namespace mbox runs in through a "wire" namespace. The ends in mbox's namespace carry
# nothing until mbox bridges them through DPDK af_packet ports. nginx serves files in the
# server namespace.
#
#   tools/testbed.sh up [DIR]              create it (DIR: nginx's files, config and logs, and
#                                          the impairment's log and counts)
#   tools/testbed.sh impair LOSS REORDER DUP
#                                          percentages of frames crossing the wire (both ways,
#                                          both sides) to lose, swap with the next, and send
#                                          twice; `impair off` restores a clean wire and
#                                          writes what was done to DIR/impair-stats.json
#   tools/testbed.sh backends N            N more nginx servers (1 to 9) in the server
#                                          namespace, backend K at 198.18.1.1K port 80 with
#                                          its own process, files (DIR/backend-K: `name`
#                                          holds "backend-K"; 8k, 64k, 1m) and access log
#                                          (DIR/nginx/backend-K.access.log): load balancers'
#                                          backends
#   tools/testbed.sh backend-stop K        stop backend K's nginx (its address stays: a
#                                          connection to it is refused)
#   tools/testbed.sh down                  tear it down (also what `up` does first, and on
#                                          any failure)
#   tools/testbed.sh env                   print the variables describing it
#
#   client ns mbox-tb-c: mb-c0 198.18.1.1/24 <-> [wire ns mbox-tb-w] <-> mb-c1 (mbox port 0)
#   server ns mbox-tb-s: mb-s0 198.18.1.2/24 <-> [wire ns mbox-tb-w] <-> mb-s1 (mbox port 1)
#
# In the wire namespace a bridge joins each side's two veth ends; `impair` replaces the
# bridges with tools/wire-impair.py, a relay that does what `tc netem` would (this kernel has
# no netem, and a drop inside the sender's own stack is reported back to TCP, which just sends
# again: mbox would never see a hole). Addresses come from 198.18.0.0/15 only. Checksum offload
# is off on the endpoints (af_packet would otherwise carry unfinished checksums). Needs root,
# iproute2, ethtool, nginx, and python3 for `impair`.
set -euo pipefail

CLIENT_NS=mbox-tb-c
SERVER_NS=mbox-tb-s
WIRE_NS=mbox-tb-w
CLIENT_IP=198.18.1.1
SERVER_IP=198.18.1.2
PIDFILE=/run/mbox-testbed-nginx.pid
IMPAIR_PIDFILE=/run/mbox-testbed-impair.pid
# Where `up` put its files, for `impair` to find.
DIRFILE=/run/mbox-testbed.dir
TOOLS=$(cd "$(dirname "$0")" && pwd)

down() {
    stop_impair
    for pidfile in "$PIDFILE" /run/mbox-testbed-backend-*.pid; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2> /dev/null || true
            rm -f "$pidfile"
        fi
    done
    # Deleting a namespace deletes its veth ends, and with them their peers.
    ip netns del "$CLIENT_NS" 2> /dev/null || true
    ip netns del "$SERVER_NS" 2> /dev/null || true
    ip netns del "$WIRE_NS" 2> /dev/null || true
    ip link del mb-c1 2> /dev/null || true
    ip link del mb-s1 2> /dev/null || true
    rm -f "$DIRFILE"
}

# Stops the process whose pid PIDFILE holds, waiting up to 5 s for it to end, and removes
# the file.
stop_pidfile() {
    local pid
    pid=$(cat "$1")
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    rm -f "$1"
}

# Stops the impairing relay (it writes its counts as it exits).
stop_impair() {
    if [ -f "$IMPAIR_PIDFILE" ]; then
        stop_pidfile "$IMPAIR_PIDFILE"
    fi
}

env_vars() {
    printf 'TESTBED_CLIENT_NS=%s\nTESTBED_SERVER_NS=%s\nTESTBED_CLIENT_IP=%s\nTESTBED_SERVER_IP=%s\n' "$CLIENT_NS" "$SERVER_NS" "$CLIENT_IP" "$SERVER_IP"
    printf 'TESTBED_WIRE_NS=%s\n' "$WIRE_NS"
    printf 'TESTBED_PORT0_IFACE=mb-c1\nTESTBED_PORT1_IFACE=mb-s1\n'
}

up() {
    local dir=${1:-/tmp/mbox-testbed}
    [ "$(id -u)" = 0 ] || { echo "testbed: needs root (network namespaces)" >&2; exit 1; }
    for tool in ip ethtool nginx; do
        command -v "$tool" > /dev/null || { echo "testbed: $tool is not installed" >&2; exit 1; }
    done
    down
    trap 'down' ERR
    ip netns add "$CLIENT_NS"
    ip netns add "$SERVER_NS"
    ip netns add "$WIRE_NS"
    ip netns exec "$WIRE_NS" ip link set lo up
    # Each side: endpoint <-> wire bridge <-> mbox's port.
    for side in c s; do
        local ns=$CLIENT_NS
        [ "$side" = s ] && ns=$SERVER_NS
        ip link add "mb-${side}0" type veth peer name "mb-${side}0w"
        ip link add "mb-${side}1" type veth peer name "mb-${side}1w"
        ip link set "mb-${side}0" netns "$ns"
        ip link set "mb-${side}0w" netns "$WIRE_NS"
        ip link set "mb-${side}1w" netns "$WIRE_NS"
        ip netns exec "$WIRE_NS" ip link add "br-$side" type bridge
        for port in "mb-${side}0w" "mb-${side}1w"; do
            ip netns exec "$WIRE_NS" sysctl -qw "net.ipv6.conf.$port.disable_ipv6=1" || true
            ip netns exec "$WIRE_NS" ip link set "$port" master "br-$side" up
        done
        ip netns exec "$WIRE_NS" sysctl -qw "net.ipv6.conf.br-$side.disable_ipv6=1" || true
        ip netns exec "$WIRE_NS" ip link set "br-$side" up
    done
    ip netns exec "$CLIENT_NS" ip addr add "$CLIENT_IP/24" dev mb-c0
    ip netns exec "$SERVER_NS" ip addr add "$SERVER_IP/24" dev mb-s0
    for ns_if in "$CLIENT_NS mb-c0" "$SERVER_NS mb-s0"; do
        set -- $ns_if
        ip netns exec "$1" ip link set lo up
        ip netns exec "$1" ip link set "$2" up
        ip netns exec "$1" ethtool -K "$2" tx off rx off > /dev/null 2>&1 || true
    done
    for i in mb-c1 mb-s1; do
        # Nothing of the kernel's own on the bridged ends: no IPv6 autoconfiguration chatter.
        sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1" || true
        ip link set "$i" up
    done

    # nginx in the server namespace, serving $dir/www.
    mkdir -p "$dir/www" "$dir/nginx"
    (cd "$dir" && pwd) > "$DIRFILE"
    nginx_conf "$dir" "$SERVER_IP" "$dir/www" "$PIDFILE" off > "$dir/nginx/nginx.conf"
    ip netns exec "$SERVER_NS" nginx -c "$dir/nginx/nginx.conf"
    trap - ERR
    env_vars
}

# Writes an nginx config serving ROOT on ADDR:80 (pid in PIDFILE, access log ACCESS, or off).
nginx_conf() {
    local dir=$1 addr=$2 root=$3 pidfile=$4 access=$5
    cat << EOF
worker_processes 1;
pid $pidfile;
error_log $dir/nginx/error.log;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log $access;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server {
        listen $addr:80;
        root $root;
    }
}
EOF
}

# Starts backends 1..N (see the usage above).
backends() {
    [ -f "$DIRFILE" ] || { echo "testbed: not up" >&2; exit 1; }
    local n=${1:-}
    [[ "$n" =~ ^[1-9]$ ]] || { echo "testbed: backends wants 1 to 9, got '$n'" >&2; exit 2; }
    local dir
    dir=$(cat "$DIRFILE")
    for k in $(seq "$n"); do
        local addr=198.18.1.1$k root=$dir/backend-$k pidfile=/run/mbox-testbed-backend-$k.pid
        ip netns exec "$SERVER_NS" ip addr replace "$addr/24" dev mb-s0
        mkdir -p "$root"
        echo "backend-$k" > "$root/name"
        # Bodies that differ per backend, so that a body's hash names its server.
        for size in 8k:8192 64k:65536 1m:1048576; do
            python3 -c "import sys; k, n = int(sys.argv[1]), int(sys.argv[2]); sys.stdout.buffer.write(bytes((i * 31 + k) % 251 for i in range(n)))" \
                "$k" "${size#*:}" > "$root/${size%%:*}"
        done
        nginx_conf "$dir" "$addr" "$root" "$pidfile" "$dir/nginx/backend-$k.access.log" > "$dir/nginx/backend-$k.conf"
        if [ -f "$pidfile" ]; then
            stop_pidfile "$pidfile"
        fi
        ip netns exec "$SERVER_NS" nginx -c "$dir/nginx/backend-$k.conf"
    done
}

backend_stop() {
    local pidfile=/run/mbox-testbed-backend-${1:-}.pid
    [ -f "$pidfile" ] || { echo "testbed: no backend '${1:-}' is running" >&2; exit 1; }
    stop_pidfile "$pidfile"
}

# Replaces the wire's bridges with the impairing relay, or puts them back.
impair() {
    local w=$WIRE_NS
    [ -f "$DIRFILE" ] || { echo "testbed: not up" >&2; exit 1; }
    local dir
    dir=$(cat "$DIRFILE")
    stop_impair
    if [ "${1:-}" = off ]; then
        for side in c s; do
            for port in "mb-${side}0w" "mb-${side}1w"; do
                ip netns exec "$w" ip link set "$port" master "br-$side"
            done
        done
        return
    fi
    [ $# = 3 ] || { echo "usage: $0 impair LOSS REORDER DUP | impair off" >&2; exit 2; }
    for pct in "$@"; do
        [[ "$pct" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "testbed: impair wants percentages, got '$pct'" >&2; exit 2; }
    done
    command -v python3 > /dev/null || { echo "testbed: python3 is not installed" >&2; exit 1; }
    for side in c s; do
        for port in "mb-${side}0w" "mb-${side}1w"; do
            ip netns exec "$w" ip link set "$port" nomaster
        done
    done
    rm -f "$dir/impair.ready" "$dir/impair-stats.json"
    ip netns exec "$w" python3 "$TOOLS/wire-impair.py" --pair mb-c0w:mb-c1w --pair mb-s0w:mb-s1w \
        --loss "$1" --reorder "$2" --duplicate "$3" \
        --stats "$dir/impair-stats.json" --ready "$dir/impair.ready" > "$dir/impair.log" 2>&1 &
    echo $! > "$IMPAIR_PIDFILE"
    for _ in $(seq 50); do
        [ -f "$dir/impair.ready" ] && return
        kill -0 "$(cat "$IMPAIR_PIDFILE")" 2> /dev/null || break
        sleep 0.1
    done
    echo "testbed: the impairing relay did not start: $(cat "$dir/impair.log")" >&2
    exit 1
}

case "${1:-}" in
    up) up "${2:-}" ;;
    impair)
        shift
        impair "$@"
        ;;
    backends) backends "${2:-}" ;;
    backend-stop) backend_stop "${2:-}" ;;
    down) down ;;
    env) env_vars ;;
    *)
        echo "usage: $0 up [DIR] | backends N | backend-stop K | impair LOSS REORDER DUP | impair off | down | env" >&2
        exit 2
        ;;
esac
