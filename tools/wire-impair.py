#!/usr/bin/env python3
"""A lossy, reordering, duplicating wire between pairs of interfaces: what `tc netem` would do,
for kernels without it. tools/testbed.sh runs it in the testbed's wire namespace.

Each pair (A, B) is relayed both ways through AF_PACKET sockets: every frame that arrives on A
leaves on B and the other way round, except that, independently per frame,

  --loss P       drops it (P percent),
  --duplicate P  sends it twice,
  --reorder P    holds it back and sends it after the next frame in the same direction (or
                 after --hold-ms if none comes): adjacent frames swap places.

The random choices come from --seed, so a run can be repeated. At SIGTERM or SIGINT it writes
what it did, per direction, as one JSON object to --stats (and stderr), and exits.
"""

import argparse
import json
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+: do not read back what this socket sends
SO_RCVBUFFORCE = 33
MAX_FRAME = 65535


def open_port(iface):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    # Room for bursts while the relay is descheduled (root may exceed rmem_max).
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setblocking(False)
    return sock


class Direction:
    """Frames from one interface to another, with what was done to them."""

    def __init__(self, name, src, dst):
        self.name, self.src, self.dst = name, src, dst
        self.held = None  # (frame, time held)
        self.counts = {"frames": 0, "sent": 0, "lost": 0, "duplicated": 0, "reordered": 0, "send_errors": 0}

    def send(self, frame):
        try:
            self.dst.send(frame)
            self.counts["sent"] += 1
        except OSError:
            # The peer's queue is full: the frame is lost, as on a congested link.
            self.counts["send_errors"] += 1

    def release_held(self):
        if self.held is not None:
            frame, self.held = self.held[0], None
            self.send(frame)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", action="append", required=True, metavar="A:B", help="interfaces to join")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--duplicate", type=float, default=0.0)
    ap.add_argument("--hold-ms", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stats", help="file for the final counts (JSON)")
    ap.add_argument("--ready", help="file written once the sockets are open")
    args = ap.parse_args()
    for name in ("loss", "reorder", "duplicate"):
        value = getattr(args, name)
        if not 0.0 <= value <= 100.0:
            sys.exit(f"wire-impair: --{name} wants a percentage 0-100, got {value}")

    directions = []
    by_fd = {}
    for pair in args.pair:
        a_name, sep, b_name = pair.partition(":")
        if not sep or not a_name or not b_name:
            sys.exit(f"wire-impair: --pair wants A:B, got {pair!r}")
        a, b = open_port(a_name), open_port(b_name)
        for (src, src_name, dst, dst_name) in ((a, a_name, b, b_name), (b, b_name, a, a_name)):
            d = Direction(f"{src_name}->{dst_name}", src, dst)
            directions.append(d)
            by_fd[src.fileno()] = d

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")

    rng = random.Random(args.seed)
    loss, reorder, dup = args.loss / 100.0, args.reorder / 100.0, args.duplicate / 100.0
    hold_s = args.hold_ms / 1000.0
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)

    while not stop:
        holding = any(d.held is not None for d in directions)
        try:
            ready = poller.poll(args.hold_ms if holding else 100)
        except InterruptedError:
            continue
        for fd, _ in ready:
            d = by_fd[fd]
            # Drain what is there (bounded, so one busy direction cannot starve the other).
            for _ in range(64):
                try:
                    frame = d.src.recv(MAX_FRAME)
                except BlockingIOError:
                    break
                d.counts["frames"] += 1
                if rng.random() < loss:
                    d.counts["lost"] += 1
                    continue
                copies = 2 if rng.random() < dup else 1
                d.counts["duplicated"] += copies - 1
                if d.held is None and rng.random() < reorder:
                    d.counts["reordered"] += 1
                    d.held = (frame, time.monotonic())
                    # A duplicate of a held frame goes now: it arrives before and after.
                    if copies == 2:
                        d.send(frame)
                    continue
                for _ in range(copies):
                    d.send(frame)
                d.release_held()
        now = time.monotonic()
        for d in directions:
            if d.held is not None and now - d.held[1] >= hold_s:
                d.release_held()

    for d in directions:
        d.release_held()
    stats = {d.name: d.counts for d in directions}
    text = json.dumps(stats)
    print(text, file=sys.stderr)
    if args.stats:
        with open(args.stats, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
