#!/usr/bin/env python3
"""A flood of small flows for the testbed's bound tests: COUNT flows to ADDRESS, each one frame
from its own source (198.18.128.0/17, the benchmarking range, as the testbed's rules ask, and a
port of its own): in turn a UDP datagram, a TCP SYN, and a TCP data segment with no handshake
before it (a connection picked up mid-stream: the monitor keeps state and reassembles for it).
Sent on IFACE (an AF_PACKET socket: run it in the client namespace) to DST_MAC, as fast as the
socket takes them. Prints one JSON line: frames sent and seconds.

    tools/flow-flood.py IFACE DST_MAC ADDRESS COUNT
"""
import json
import os
import socket
import struct
import sys
import time

from inet_checksum import fold, words


def ipv4(src, dst, proto, payload):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", 0xFFFF - fold(words(header))) + header[12:] + payload


def with_checksum(src, dst, proto, segment, at):
    """`segment` with its checksum (at byte `at`) over the pseudo-header."""
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    csum = 0xFFFF - fold(words(pseudo) + words(segment))
    if proto == 17 and csum == 0:
        csum = 0xFFFF
    return segment[:at] + struct.pack("!H", csum) + segment[at + 2 :]


def main():
    iface, dst_mac, address, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    dst = socket.inet_aton(address)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    eth = bytes.fromhex(dst_mac.replace(":", "")) + sock.getsockname()[4][:6] + b"\x08\x00"
    payload = os.urandom(100)
    sent = 0
    start = time.monotonic()
    while sent < count:
        n = sent
        src = struct.pack("!I", (198 << 24 | 18 << 16 | 128 << 8) + (n >> 6) % (1 << 15))
        sport = 1024 + n % 64 * 997 % 64000
        kind = n % 3
        if kind == 0:
            udp = struct.pack("!HHHH", sport, 5000 + n % 1000, 8 + 16, 0) + payload[:16]
            frame = eth + ipv4(src, dst, 17, with_checksum(src, dst, 17, udp, 6))
        else:
            flags, data = (0x02, b"") if kind == 1 else (0x18, payload)
            seq = (n * 2654435761) & 0xFFFFFFFF
            tcp = struct.pack("!HHIIBBHHH", sport, 8000 + n % 1000, seq, 1, 5 << 4, flags, 64240, 0, 0) + data
            frame = eth + ipv4(src, dst, 6, with_checksum(src, dst, 6, tcp, 16))
        try:
            sock.send(frame)
            sent += 1
        except BlockingIOError:
            time.sleep(0.0001)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
