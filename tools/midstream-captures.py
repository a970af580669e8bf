#!/usr/bin/env python3
"""Builds the mid-stream captures (testdata/pcaps/midstream/): one HTTP exchange per capture on
a fresh TCP connection (198.18.0.1 -> 198.19.0.1:80), its beginning not captured, so that an
engine must decide who the client is from what is left: the SYN+ACK, the client's first
bytes, or the server's. The request carries `GET /MID-<case>` and the response `MID-RESP-<case>`;
testdata/rules/midstream.rules alerts on each in either direction, so an engine's alerts say
which side it took for the client. Packets are built as tools/evasion-captures.py builds them
(its `Conn`); the output is the same on every run.

    tools/midstream-captures.py [OUTDIR]     # default: testdata/pcaps/midstream
    tools/midstream-captures.py --suricata   # also run Suricata 7 on them, with
                                             # stream.midstream=true: writes
                                             # testdata/rules/EXPECTED-suricata-alerts-midstream.tsv
"""
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("evasion_captures", os.path.join(HERE, "evasion-captures.py"))
evasion = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evasion)
Conn, write_pcap = evasion.Conn, evasion.write_pcap
SYN, ACK, PSH, FIN = evasion.SYN, evasion.ACK, evasion.PSH, evasion.FIN

REPO = os.path.normpath(os.path.join(HERE, ".."))
RULES = os.path.join(REPO, "testdata", "rules", "midstream.rules")
EXPECTED = os.path.join(REPO, "testdata", "rules", "EXPECTED-suricata-alerts-midstream.tsv")


def exchange(c, case):
    """The whole connection: handshake, request, response, close. Returns how many packets of
    it precede the request and the response, for the cases to cut at."""
    request = f"GET /MID-{case} HTTP/1.1\r\nHost: midstream.test\r\nUser-Agent: midstream-captures\r\n\r\n".encode()
    body = f"MID-RESP-{case}".encode()
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    c.handshake()
    at_request = len(c.frames)
    c.send(0, PSH | ACK, request)
    c.send(1, ACK)
    at_response = len(c.frames)
    c.send(1, PSH | ACK, response)
    c.send(0, ACK)
    c.send(0, FIN | ACK)
    c.send(1, FIN | ACK)
    c.send(0, ACK)
    return at_request, at_response


# name -> (the first frame kept, given (request, response) positions; what is missing)
CASES = [
    ("no-syn", lambda req, resp: 1, "the SYN: the capture starts at the SYN+ACK"),
    ("no-handshake", lambda req, resp: 2, "SYN and SYN+ACK: it starts at the client's ACK"),
    ("from-request", lambda req, resp: req, "the handshake: it starts with the request"),
    ("from-server-ack", lambda req, resp: req + 1, "the handshake and the request: it starts with the server's ACK of it"),
    ("from-response", lambda req, resp: resp, "the handshake, the request and its ACK: it starts with the response"),
]


def run_suricata(paths):
    version = subprocess.run(["suricata", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    rows = ["pcap\tsid\tsignature\tsrc_port\tcount"]
    for path in paths:
        counts = evasion.suricata_alerts(path, ["-k", "none", "--set", "stream.midstream=true"], rules=RULES)
        name = os.path.basename(path)
        for sid, signature, port in sorted(counts):
            rows.append(f"{name}\t{sid}\t{signature}\t{port}\t{counts[(sid, signature, port)]}")
        if not counts:
            rows.append(f"{name}\t-\t-\t-\t0")
    with open(EXPECTED, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{EXPECTED}: {len(rows) - 1} rows ({version})")


def main():
    args = [a for a in sys.argv[1:] if a != "--suricata"]
    out = args[0] if args else os.path.join(REPO, "testdata", "pcaps", "midstream")
    os.makedirs(out, exist_ok=True)
    paths = []
    for number, (name, first, what) in enumerate(CASES, start=1):
        conn = Conn(100 + number)
        at = first(*exchange(conn, name))
        path = os.path.join(out, f"{name}.pcap")
        write_pcap(path, conn.frames[at:])
        paths.append(path)
        print(f"{path}\t{len(conn.frames) - at} packets\tmissing: {what}")
    if "--suricata" in sys.argv[1:]:
        run_suricata(paths)


if __name__ == "__main__":
    main()
