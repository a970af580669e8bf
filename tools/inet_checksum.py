"""The Internet checksum (RFC 1071) for the testbed's packet tools (syn-flood.py, flow-flood.py,
vlan-client.py), which build IPv4, TCP and UDP headers by hand: `words` sums 16-bit words,
`fold` folds carries, and the checksum field is 0xFFFF - fold(sum)."""
import struct


def fold(s):
    """Folds the carries of a one's-complement sum into 16 bits."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def words(data):
    """The sum of `data`'s 16-bit big-endian words (an odd last byte padded with zero)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))
