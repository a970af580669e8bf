#!/usr/bin/env python3
"""A minimal HTTP client on a VLAN, over a raw AF_PACKET socket, for the testbed (whose kernel may
have no VLAN devices): it resolves ADDRESS by ARP, opens a TCP connection, sends
`GET PATH HTTP/1.1` (Connection: close) and reads the answer to its FIN, every frame it sends
carrying the tags TAGS (a VLAN id, or "OUTER,INNER" for QinQ: 802.1ad over 802.1Q). Answers
must come back with the same tags: one without them, or with others, is counted and ignored.
Prints one JSON line: the status line, the body's length and SHA-256, frames taken and frames
ignored for their tags. For a clean wire only (it resends nothing; it stops after a timeout).

    tools/vlan-client.py IFACE TAGS ADDRESS PORT PATH

It sends from a MAC and an address of its own (02:00:00:00:03:01, 198.18.3.1) so that the
namespace's kernel leaves its connection alone.
"""
import ctypes
import hashlib
import json
import socket
import struct
import sys
import time

from inet_checksum import fold, words


ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
CLIENT_MAC = bytes.fromhex("020000000301")
CLIENT_IP = socket.inet_aton("198.18.3.1")
SYN, ACK, FIN, PSH, RST = 0x02, 0x10, 0x01, 0x08, 0x04


class AuxData(ctypes.Structure):
    """struct tpacket_auxdata: where the kernel puts the outer tag it took off the frame."""

    _fields_ = [
        ("tp_status", ctypes.c_uint32),
        ("tp_len", ctypes.c_uint32),
        ("tp_snaplen", ctypes.c_uint32),
        ("tp_mac", ctypes.c_uint16),
        ("tp_net", ctypes.c_uint16),
        ("tp_vlan_tci", ctypes.c_uint16),
        ("tp_vlan_tpid", ctypes.c_uint16),
    ]



def tag_bytes(tags):
    """The tags as they sit between the addresses and the EtherType."""
    return b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in tags)


def parse_tags(spec):
    ids = [int(x) for x in spec.split(",")]
    if len(ids) == 1:
        return [(0x8100, ids[0])]
    return [(0x88A8, ids[0]), (0x8100, ids[1])]


class Wire:
    def __init__(self, iface, tags):
        self.tags = tags
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.2)
        self.taken = 0
        self.wrong_tags = 0

    def send(self, dst_mac, ethertype, payload):
        frame = dst_mac + CLIENT_MAC + tag_bytes(self.tags) + struct.pack("!H", ethertype) + payload
        self.sock.send(frame.ljust(60, b"\0"))  # the minimum frame; IP and ARP ignore padding

    def recv(self, ethertype, deadline):
        """The payload of the next frame to us of `ethertype` on our tags, or None at the deadline."""
        while time.monotonic() < deadline:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(ctypes.sizeof(AuxData)))
            except socket.timeout:
                continue
            if data[6:12] == CLIENT_MAC:
                continue  # our own frame, seen going out
            if data[0:6] != CLIENT_MAC and data[0:6] != b"\xff" * 6:
                continue
            tags = []
            for level, kind, value in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    aux = AuxData.from_buffer_copy(value.ljust(ctypes.sizeof(AuxData), b"\0"))
                    if aux.tp_status & TP_STATUS_VLAN_VALID:
                        tpid = aux.tp_vlan_tpid if aux.tp_status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                        tags.append((tpid, aux.tp_vlan_tci))
            at = 12
            while struct.unpack("!H", data[at : at + 2])[0] in (0x8100, 0x88A8, 0x9100):
                tags.append(struct.unpack("!HH", data[at : at + 4]))
                at += 4
            ty = struct.unpack("!H", data[at : at + 2])[0]
            if ty != ethertype:
                continue
            if tags != self.tags:
                # Others' broadcasts may come untagged; a frame to us must not.
                self.wrong_tags += data[0:6] == CLIENT_MAC
                continue
            self.taken += 1
            return data[at + 2 :]
        return None


def arp(wire, address, deadline):
    target = socket.inet_aton(address)
    request = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, CLIENT_MAC, CLIENT_IP, b"\0" * 6, target)
    wire.send(b"\xff" * 6, 0x0806, request)
    while True:
        reply = wire.recv(0x0806, deadline)
        if reply is None:
            return None
        op, sender_mac, sender_ip = struct.unpack("!6xH6s4s", reply[:18])
        if op == 2 and sender_ip == target:
            return sender_mac


def tcp_frame(src_port, dst, port, seq, ack, flags, payload=b""):
    options = b"\x02\x04\x05\xb4" if flags & SYN else b""
    offset = (20 + len(options)) // 4
    length = 20 + len(options) + len(payload)
    header = struct.pack("!HHIIBBHHH", src_port, port, seq, ack, offset << 4, flags, 65535, 0, 0) + options
    pseudo = CLIENT_IP + dst + struct.pack("!BBH", 0, 6, length)
    csum = 0xFFFF - fold(words(pseudo) + words(header + payload))
    tcp = header[:16] + struct.pack("!H", csum) + header[18:] + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 6, 0, CLIENT_IP, dst)
    ip = ip[:10] + struct.pack("!H", 0xFFFF - fold(words(ip))) + ip[12:]
    return ip + tcp


def main():
    iface, tags, address, port, path = sys.argv[1], parse_tags(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    wire = Wire(iface, tags)
    deadline = time.monotonic() + 20
    mac = arp(wire, address, deadline)
    if mac is None:
        print(json.dumps({"error": "no ARP answer", "wrong_tags": wire.wrong_tags}))
        return 1
    dst = socket.inet_aton(address)
    sport, iss = 40000 + int(time.time()) % 20000, 1000
    wire.send(mac, 0x0800, tcp_frame(sport, dst, port, iss, 0, SYN))
    received = bytearray()
    rcv_nxt = None
    snd_nxt = iss + 1
    request = f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
    closed = False
    while not closed and time.monotonic() < deadline:
        packet = wire.recv(0x0800, deadline)
        if packet is None:
            break
        ihl = (packet[0] & 0xF) * 4
        if packet[9] != 6 or packet[12:16] != dst:
            continue
        total = struct.unpack("!H", packet[2:4])[0]
        seg = packet[ihl:total]
        src_port, dst_port, seq, ack, off, flags = struct.unpack("!HHIIBB", seg[:14])
        if dst_port != sport or src_port != port:
            continue
        data = seg[(off >> 4) * 4 :]
        if flags & RST:
            break
        if flags & SYN:
            rcv_nxt = (seq + 1) & 0xFFFFFFFF
            wire.send(mac, 0x0800, tcp_frame(sport, dst, port, snd_nxt, rcv_nxt, ACK | PSH, request))
            snd_nxt += len(request)
            continue
        if rcv_nxt is None:
            continue
        if seq == rcv_nxt:
            received += data
            rcv_nxt = (rcv_nxt + len(data)) & 0xFFFFFFFF
            if flags & FIN:
                rcv_nxt = (rcv_nxt + 1) & 0xFFFFFFFF
                wire.send(mac, 0x0800, tcp_frame(sport, dst, port, snd_nxt, rcv_nxt, ACK | FIN))
                snd_nxt += 1
                closed = True
                continue
        wire.send(mac, 0x0800, tcp_frame(sport, dst, port, snd_nxt, rcv_nxt, ACK))
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    print(
        json.dumps(
            {
                "status": head.split(b"\r\n")[0].decode(errors="replace"),
                "closed": closed,
                "body_bytes": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "taken": wire.taken,
                "wrong_tags": wire.wrong_tags,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
