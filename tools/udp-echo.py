#!/usr/bin/env python3
"""A UDP echo for the L4 load balancer's live test (addresses from 198.18.0.0/15 only).

  udp-echo.py serve ADDR PORT      answer each datagram with "ADDR|<its bytes>", until killed
  udp-echo.py ask HOST PORT N      send N datagrams to HOST:PORT, each from a socket (a source
                                   port) of its own, and print one JSON object: per datagram
                                   the address the answer came from and its text (null: none
                                   within 2 s)
"""
import json
import socket
import sys


def serve(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(addr.encode() + b"|" + data, peer)


def ask(host, port, n):
    answers = []
    for k in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2.0)
        s.sendto(b"q%d" % k, (host, port))
        try:
            data, peer = s.recvfrom(65535)
            answers.append({"from": "%s:%d" % peer, "text": data.decode(errors="replace")})
        except socket.timeout:
            answers.append(None)
        s.close()
    print(json.dumps({"answers": answers}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "ask":
        ask(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
