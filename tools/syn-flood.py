#!/usr/bin/env python3
"""Spoofed SYNs for the testbed's flood tests: COUNT SYNs to ADDRESS:PORT, sent on IFACE (an
AF_PACKET socket: run it in the client namespace) to DST_MAC, from sources in 198.18.128.0/17
(the benchmarking range, as the testbed's rules ask) and every source port, as fast as the
socket takes them. Prints one JSON line: frames sent and seconds.

    tools/syn-flood.py IFACE DST_MAC ADDRESS PORT COUNT
"""
import json
import socket
import struct
import sys
import time

from inet_checksum import fold, words


def main():
    iface, dst_mac, address, port, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    dst = socket.inet_aton(address)
    mac = bytes.fromhex(dst_mac.replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    src_mac = sock.getsockname()[4][:6]
    eth = mac + src_mac + b"\x08\x00"
    sent = 0
    start = time.monotonic()
    host = 0
    while sent < count:
        # 198.18.128.0/17: the next source address; every source port from it.
        src = struct.pack("!I", (198 << 24 | 18 << 16 | 128 << 8) + host % (1 << 15))
        host += 1
        ip_wo_sum = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 44, 0, 0x4000, 64, 6, 0, src, dst)
        ip_sum = 0xFFFF - fold(words(ip_wo_sum))
        ip = ip_wo_sum[:10] + struct.pack("!H", ip_sum) + ip_wo_sum[12:]
        # TCP: SYN, MSS 1460; the checksum without the source port, which is added per frame.
        pseudo = src + dst + struct.pack("!BBH", 0, 6, 24)
        base = words(pseudo) + words(struct.pack("!HIIBBHHH", port, 12345, 0, 6 << 4, 0x02, 64240, 0, 0)) + words(b"\x02\x04\x05\xb4")
        for sport in range(1024, 65536):
            if sent >= count:
                break
            tcp_sum = 0xFFFF - fold(base + sport)
            tcp = struct.pack("!HHIIBBHHH", sport, port, 12345, 0, 6 << 4, 0x02, 64240, tcp_sum, 0) + b"\x02\x04\x05\xb4"
            try:
                sock.send(eth + ip + tcp)
                sent += 1
            except BlockingIOError:
                time.sleep(0.0001)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
