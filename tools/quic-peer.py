#!/usr/bin/env python3
"""A real QUIC client and server (aioquic) for the testbed's QUIC test (198.18.0.0/15 only).

  quic-peer.py serve ADDR PORT DIR     answer every stream with its bytes (an echo), ALPN
                                       "mbox-echo", a self-signed certificate made in DIR;
                                       writes DIR/quic.ready once listening; until killed
  quic-peer.py fetch HOST PORT SNI N   connect asking for server name SNI, send N bytes on a
                                       stream, read them back, and print one JSON object:
                                       {"sent", "received", "same", "alpn"}

Needs aioquic (`python3 -m pip install aioquic`; tools/test.sh installs it).
"""
import asyncio
import datetime
import json
import os
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived

ALPN = "mbox-echo"


def certificate(dir):
    """A self-signed certificate and its key, written to DIR."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quic.mbox.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(dir, "quic-cert.pem"), os.path.join(dir, "quic-key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, end_stream=event.end_stream)
            self.transmit()


async def run_server(addr, port, dir):
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    config.load_cert_chain(*certificate(dir))
    await serve(addr, port, configuration=config, create_protocol=Echo)
    open(os.path.join(dir, "quic.ready"), "w").close()
    await asyncio.Future()


async def fetch(host, port, sni, n):
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name=sni, verify_mode=ssl.CERT_NONE)
    data = bytes((i * 7 + 3) % 251 for i in range(n))
    async with connect(host, port, configuration=config) as client:
        reader, writer = await client.create_stream()
        writer.write(data)
        writer.write_eof()
        got = await asyncio.wait_for(reader.read(), 20)
        alpn = client._quic.tls.alpn_negotiated
    return {"sent": n, "received": len(got), "same": got == data, "alpn": alpn}


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        asyncio.run(run_server(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    elif len(sys.argv) == 6 and sys.argv[1] == "fetch":
        print(json.dumps(asyncio.run(fetch(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
