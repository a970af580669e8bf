#!/usr/bin/env python3
"""Builds the IDS evasion captures (testdata/pcaps/evasion/): one small pcap per classic case of
Suricata's and Snort's stream tests, each a whole client->server HTTP exchange on a fresh TCP
connection (198.18.0.1 -> 198.19.0.1:80, the benchmarking range) with the evasion applied.

The attack is the string `EVIL-EVASION-<case>` in the request, as the server's stack would
read it; where a case sends two versions of the same bytes, the one the server does not take
(the decoy) says `GOOD-EVASION-<case>` instead (same length, same offsets). The rules in
testdata/rules/evasion.rules alert on each, so an engine's alerts say which copy it took. What
each case sends, and what the server's stack (Linux) takes, is in the CASES table below and in
docs/evasion.md. Only the standard library is used; the output is the same on every run (fixed
times, numbers and addresses).

    tools/evasion-captures.py [OUTDIR]     # default: testdata/pcaps/evasion
    tools/evasion-captures.py --suricata   # also run Suricata 7 on them: writes
                                           # testdata/rules/EXPECTED-suricata-alerts-evasion.tsv

With --suricata, every capture is run twice (one process each, the stock Debian suricata.yaml,
only testdata/rules/evasion.rules): `default`, with the options of the other Suricata references
(testdata/rules/README.md: `-k none`, no checksum validation), and `checksums`, the same without
`-k none`, so that the stock `stream.checksum-validation: yes` holds (the generated packets'
checksums are right, but for the one bad-checksum decoy). One row per capture, run and rule that
alerted; a capture without alerts in a run gets one row with sid `-` and count 0.
"""
import collections
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

CLIENT = bytes([198, 18, 0, 1])
SERVER = bytes([198, 19, 0, 1])
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
EPOCH = 1767225600  # 2026-01-01T00:00:00Z

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def words(data):
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def checksum(data):
    return 0xFFFF - fold(words(data))


class Conn:
    """One TCP connection's packets, in capture order. Sequence numbers are tracked per side
    (`nxt`: the next byte each has sent); a segment given its own `seq` does not move them."""

    def __init__(self, number, swin=64240, cwin=64240):
        self.frames = []
        self.usec = (EPOCH + 60 * number) * 1_000_000  # capture time, microseconds
        self.port = 40000 + number
        self.isn = {0: 1_000_000 * number + 1000, 1: 7_000_000 + 1_000_000 * number}
        self.nxt = dict(self.isn)
        self.win = {0: cwin, 1: swin}
        self.ip_id = 1

    def send(self, side, flags, payload=b"", seq=None, ack=None, ttl=64, bad_checksum=False, urgent=0, window=None, options=b""):
        """Appends one segment sent by `side` (0: client, 1: server)."""
        if seq is None:
            seq = self.nxt[side]
            self.nxt[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        if ack is None:
            ack = self.nxt[1 - side] if flags & ACK else 0
        src, dst = (CLIENT, SERVER) if side == 0 else (SERVER, CLIENT)
        sport, dport = (self.port, 80) if side == 0 else (80, self.port)
        header_len = 20 + len(options)
        assert header_len % 4 == 0
        tcp = struct.pack(
            "!HHIIBBHHH", sport, dport, seq, ack, (header_len // 4) << 4, flags, self.win[side] if window is None else window, 0, urgent
        )
        segment = tcp + options + payload
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment))
        csum = checksum(pseudo + segment)
        if bad_checksum:
            csum ^= 0x5A5A  # wrong, whatever the bytes
        segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), self.ip_id, 0x4000, ttl, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        self.ip_id += 1
        eth = (SERVER_MAC + CLIENT_MAC if side == 0 else CLIENT_MAC + SERVER_MAC) + b"\x08\x00"
        self.frames.append((self.usec, eth + ip + segment))
        self.usec += 1000

    def handshake(self, syn_payload=b"", syn_options=b"", synack_ack=None):
        mss = b"\x02\x04\x05\xb4"  # MSS 1460
        self.send(0, SYN, syn_payload, options=mss + syn_options)
        if synack_ack is not None:
            # The server acknowledges only what it took of the SYN.
            self.send(1, SYN | ACK, ack=synack_ack, options=mss)
            self.nxt[0] = synack_ack
        else:
            self.send(1, SYN | ACK, options=mss)
        self.send(0, ACK)

    def respond_and_close(self):
        """The server acknowledges everything the client sent, answers, and both close."""
        self.send(1, ACK)
        self.send(1, PSH | ACK, RESPONSE)
        self.send(0, ACK)
        self.send(0, FIN | ACK)
        self.send(1, FIN | ACK)
        self.send(0, ACK)


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def request(word, case, pad=0):
    """An HTTP request whose URI carries `<word>-EVASION-<case>`."""
    head = f"GET /{word}-EVASION-{case} HTTP/1.1\r\nHost: evasion.test\r\nUser-Agent: evasion-captures\r\n"
    if pad:
        head += "X-Pad: " + "p" * (pad - len(head) - len("X-Pad: \r\n\r\n")) + "\r\n"
    return (head + "\r\n").encode()


def overlap_retransmit(c, case, first, second):
    """In order, then the same bytes again with other data (a retransmission that differs)."""
    c.handshake()
    a, b = request(first, case), request(second, case)
    seq = c.nxt[0]
    c.send(0, PSH | ACK, a)
    c.send(0, PSH | ACK, b, seq=seq)
    c.respond_and_close()


def overlap_out_of_order(c, case, first, second):
    """A hole at the start; two copies of the bytes after it, with different data; the hole."""
    c.handshake()
    a, b = request(first, case), request(second, case)
    seq = c.nxt[0]
    c.send(0, PSH | ACK, a[5:], seq=seq + 5)
    c.send(0, PSH | ACK, b[5:], seq=seq + 5)
    c.send(0, ACK, a[:5], seq=seq)
    c.nxt[0] = seq + len(a)
    c.respond_and_close()


def overlap_partial(c, case):
    """Out of order: the request's tail with the attack, then a later segment starting before it
    that rewrites the attack's first bytes (`/EVIL` -> `/GOOD`), then the hole. The segment
    with the lower sequence number wins its bytes at Linux (it is delivered first), so the
    server reads GOOD: the later segment changed the matched string."""
    c.handshake()
    evil, good = request("EVIL", case), request("GOOD", case)
    seq = c.nxt[0]
    c.send(0, PSH | ACK, evil[5:], seq=seq + 5)  # "EVIL-EVASION-..." onwards
    c.send(0, ACK, good[3:9], seq=seq + 3)  # " /GOOD": starts before, overlaps "EVIL"
    c.send(0, ACK, evil[:3], seq=seq)  # "GET"
    c.nxt[0] = seq + len(evil)
    c.respond_and_close()


def tiny_segments(c, case):
    c.handshake()
    for i, byte in enumerate(request("EVIL", case)):
        c.send(0, ACK | (PSH if i % 16 == 15 else 0), bytes([byte]))
    c.respond_and_close()


def urgent(c, case):
    """One segment with URG: its urgent byte `X` sits inside the string (BSD/Linux semantics:
    the urgent pointer points one past it). An application that does not ask for urgent data
    inline (no SO_OOBINLINE) reads the stream without `X`: `EVIL-EVASION-urgent`; read inline,
    it is `EVIL-EVASION-urgXent`."""
    c.handshake()
    data = request("EVIL", "urgXent")
    x = data.index(b"X")
    c.send(0, PSH | ACK | URG, data, urgent=x + 1)
    c.respond_and_close()


def bad_checksum(c, case):
    """The decoy with a wrong TCP checksum (the server drops it), then the attack."""
    c.handshake()
    seq = c.nxt[0]
    c.send(0, PSH | ACK, request("GOOD", case), seq=seq, bad_checksum=True)
    c.send(0, PSH | ACK, request("EVIL", case))
    c.respond_and_close()


def ttl_decoy(c, case):
    """The decoy with TTL 1 (it expires at the first router, before the server), then the attack
    with the usual TTL. A monitor on the wire cannot know how many hops the server is away."""
    c.handshake()
    seq = c.nxt[0]
    c.send(0, PSH | ACK, request("GOOD", case), seq=seq, ttl=1)
    c.send(0, PSH | ACK, request("EVIL", case))
    c.respond_and_close()


def syn_data_refused(c, case):
    """Data on the SYN (no Fast Open cookie): the server's SYN+ACK acknowledges only the SYN,
    so it did not take the data (as Linux does); the client then sends other bytes there."""
    isn = c.isn[0]
    c.handshake(syn_payload=request("GOOD", case), synack_ack=isn + 1)
    c.send(0, PSH | ACK, request("EVIL", case))
    c.respond_and_close()


def syn_data_accepted(c, case):
    """TCP Fast Open: the SYN carries a cookie and the request, and the server's SYN+ACK
    acknowledges the data (it took it)."""
    tfo = b"\x22\x0a" + bytes(range(1, 9)) + b"\x01\x01"  # Fast Open option, 8-byte cookie, NOP NOP
    c.handshake(syn_payload=request("EVIL", case), syn_options=tfo)
    c.respond_and_close()


def rst_injection(c, case, offset):
    """The request in two segments split inside the string; between them an RST as if from the
    server, `offset` bytes past the sequence number the client expects (0: exactly there). The
    server never sent it (it is spoofed: the server goes on, acknowledges and answers) and the
    client ignores it."""
    c.handshake()
    data = request("EVIL", case)
    cut = data.index(b"-EVASION") + 4
    c.send(0, ACK, data[:cut])
    c.send(1, RST | ACK, seq=(c.nxt[1] + offset) & 0xFFFFFFFF)
    c.send(0, PSH | ACK, data[cut:])
    c.respond_and_close()


def out_of_window_far(c, case):
    """The attack 1,000,000 bytes beyond what the server acknowledged, far outside its window
    (64,240): the server drops it. Then a harmless request in order."""
    c.handshake()
    seq = c.nxt[0]
    c.send(0, PSH | ACK, request("EVIL", case), seq=seq + 1_000_000)
    c.send(0, PSH | ACK, request("GOOD", case))
    c.respond_and_close()


def out_of_window_filled(c, case):
    """The server's window is 512 bytes. The client sends the second of two pipelined requests
    (the attack, at stream offset 1,024) beyond it: the server drops it. Then the first request
    (1,024 bytes, in two window-sized segments, each acknowledged), and then at offset 1,024
    the decoy, in the window. The server reads the decoy; a monitor that kept the out-of-window
    segment delivers the attack when the hole before it fills."""
    c.handshake()
    seq = c.nxt[0]
    first = request("PAD", case, pad=1024)
    assert len(first) == 1024
    c.send(0, PSH | ACK, request("EVIL", case), seq=seq + 1024)
    c.send(0, ACK, first[:512])
    c.send(1, ACK)
    c.send(0, PSH | ACK, first[512:])
    c.send(1, ACK)
    c.send(0, PSH | ACK, request("GOOD", case))
    c.send(1, ACK)
    c.send(1, PSH | ACK, RESPONSE)
    c.respond_and_close()


# name -> (builder, what it does). The numbers give each capture its own port, ISNs and time.
CASES = [
    ("overlap-retransmit-first", lambda c, n: overlap_retransmit(c, n, "EVIL", "GOOD"), "in order: attack, then a retransmission of the same bytes with the decoy"),
    ("overlap-retransmit-last", lambda c, n: overlap_retransmit(c, n, "GOOD", "EVIL"), "in order: decoy, then a retransmission of the same bytes with the attack"),
    ("overlap-ooo-first", lambda c, n: overlap_out_of_order(c, n, "EVIL", "GOOD"), "out of order: attack, then the same range with the decoy, then the hole"),
    ("overlap-ooo-last", lambda c, n: overlap_out_of_order(c, n, "GOOD", "EVIL"), "out of order: decoy, then the same range with the attack, then the hole"),
    ("overlap-ooo-partial", overlap_partial, "out of order: attack, then a segment starting before it that rewrites its first bytes into the decoy, then the hole"),
    ("tiny-segments", tiny_segments, "the request one byte per segment"),
    ("urgent", urgent, "URG with the urgent byte inside the string"),
    ("bad-checksum", bad_checksum, "decoy with a wrong TCP checksum, then the attack"),
    ("ttl-decoy", ttl_decoy, "decoy with TTL 1, then the attack"),
    ("syn-data-refused", syn_data_refused, "decoy on the SYN, not acknowledged; then the attack"),
    ("syn-data-accepted", syn_data_accepted, "attack on a Fast Open SYN, acknowledged"),
    ("rst-exact", lambda c, n: rst_injection(c, n, 0), "spoofed server RST at the exact sequence number inside the string"),
    ("rst-in-window", lambda c, n: rst_injection(c, n, 1000), "spoofed server RST in the window (not exact) inside the string"),
    ("rst-out-of-window", lambda c, n: rst_injection(c, n, 10_000_000), "spoofed server RST outside the window inside the string"),
    ("out-of-window-far", out_of_window_far, "attack far beyond the window, then a harmless request"),
    ("out-of-window-filled", out_of_window_filled, "attack beyond a 512-byte window; the hole before it filled; the decoy in its place"),
]


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for usec, frame in frames:
            f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)))
            f.write(frame)


REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RULES = os.path.join(REPO, "testdata", "rules", "evasion.rules")
EXPECTED = os.path.join(REPO, "testdata", "rules", "EXPECTED-suricata-alerts-evasion.tsv")
# The runs: name and the options added to the command (see the docstring).
RUNS = [("default", ["-k", "none"]), ("checksums", [])]


def suricata_command(capture, outdir, extra, rules=RULES):
    """The exact command each run uses."""
    return ["suricata", "-r", capture, "-c", "/etc/suricata/suricata.yaml", "-S", rules, "-l", outdir, "--runmode", "single", *extra]


def suricata_alerts(capture, extra, rules=RULES):
    """Suricata's alerts on `capture` (one process, only `rules`, the stock suricata.yaml and the
    options `extra`): a Counter of (sid, signature, the sending port)."""
    outdir = tempfile.mkdtemp(prefix="suricata-")
    try:
        done = subprocess.run(suricata_command(capture, outdir, extra, rules), capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"suricata failed on {capture}: {done.stderr or done.stdout}")
        alerts = collections.Counter()
        with open(os.path.join(outdir, "eve.json")) as eve:
            for line in eve:
                event = json.loads(line)
                if event.get("event_type") == "alert":
                    alerts[(event["alert"]["signature_id"], event["alert"]["signature"], event["src_port"])] += 1
        return alerts
    finally:
        shutil.rmtree(outdir)


def run_suricata(paths):
    version = subprocess.run(["suricata", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    rows = ["pcap\trun\tsid\tsignature\tcount"]
    for path in paths:
        for run, extra in RUNS:
            counts = collections.Counter()
            names = {}
            for (sid, signature, _), n in suricata_alerts(path, extra).items():
                counts[sid] += n
                names[sid] = signature
            name = os.path.basename(path)
            for sid in sorted(counts):
                rows.append(f"{name}\t{run}\t{sid}\t{names[sid]}\t{counts[sid]}")
            if not counts:
                rows.append(f"{name}\t{run}\t-\t-\t0")
    with open(EXPECTED, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{EXPECTED}: {len(rows) - 1} rows ({version})")


def main():
    args = [a for a in sys.argv[1:] if a != "--suricata"]
    out = args[0] if args else os.path.join(REPO, "testdata", "pcaps", "evasion")
    os.makedirs(out, exist_ok=True)
    paths = []
    for number, (name, build, what) in enumerate(CASES, start=1):
        conn = Conn(number, swin=512 if name == "out-of-window-filled" else 64240)
        build(conn, name)
        path = os.path.join(out, f"{name}.pcap")
        write_pcap(path, conn.frames)
        paths.append(path)
        print(f"{path}\t{len(conn.frames)} packets\t{what}")
    if "--suricata" in sys.argv[1:]:
        run_suricata(paths)


if __name__ == "__main__":
    main()
