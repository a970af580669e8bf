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
    if [ -f "$PIDFILE" ]; then
        kill "$(cat "$PIDFILE")" 2> /dev/null || true
        rm -f "$PIDFILE"
    fi
    # Deleting a namespace deletes its veth ends, and with them their peers.
    ip netns del "$CLIENT_NS" 2> /dev/null || true
    ip netns del "$SERVER_NS" 2> /dev/null || true
    ip netns del "$WIRE_NS" 2> /dev/null || true
    ip link del mb-c1 2> /dev/null || true
    ip link del mb-s1 2> /dev/null || true
    rm -f "$DIRFILE"
}

# Stops the impairing relay (it writes its counts as it exits).
stop_impair() {
    if [ -f "$IMPAIR_PIDFILE" ]; then
        local pid
        pid=$(cat "$IMPAIR_PIDFILE")
        kill "$pid" 2> /dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        rm -f "$IMPAIR_PIDFILE"
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
    cat > "$dir/nginx/nginx.conf" << EOF
worker_processes 1;
pid $PIDFILE;
error_log $dir/nginx/error.log;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server {
        listen $SERVER_IP:80;
        root $dir/www;
    }
}
EOF
    ip netns exec "$SERVER_NS" nginx -c "$dir/nginx/nginx.conf"
    trap - ERR
    env_vars
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
    down) down ;;
    env) env_vars ;;
    *)
        echo "usage: $0 up [DIR] | impair LOSS REORDER DUP | impair off | down | env" >&2
        exit 2
        ;;
esac
