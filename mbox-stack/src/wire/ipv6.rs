//! IPv6 fixed headers (RFC 8200 3; the diagram is in `docs/wire.md`). Extension headers are
//! the dissector's business; the stacks send none.

use super::checksum;
use super::{get16, put16, WireError};
use std::net::Ipv6Addr;

/// Bytes of the IPv6 fixed header.
pub const HEADER_LEN: usize = 40;

/// A buffer holding an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    #[inline]
    /// Wraps `buffer` once its version is 6 and it holds the fixed header and the payload
    /// length declared (a zero length, a jumbogram's, is refused: RFC 2675 is not supported).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Ipv6Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated("IPv6 header"));
        }
        if packet.version() != 6 {
            return Err(WireError::Malformed("IPv6 header", "version is not 6"));
        }
        if len < HEADER_LEN + usize::from(packet.payload_len()) {
            return Err(WireError::Truncated("IPv6 packet"));
        }
        Ok(packet)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        (u32::from(b[1] & 0x0f) << 16) | u32::from(get16(b, 2))
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        get16(self.buffer.as_ref(), 4)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr_at(self.buffer.as_ref(), 8))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr_at(self.buffer.as_ref(), 24))
    }

    #[inline]
    /// The payload the payload length declares.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

fn addr_at(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    /// Sets version 6, the traffic class and the 20-bit flow label.
    pub fn set_version_class_label(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[0..4].copy_from_slice(&word.to_be_bytes());
    }

    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 4, value);
    }

    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[6] = value;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[7] = value;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[8..24].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[24..40].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// An IPv6 fixed header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, WireError> {
        Ok(Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    #[inline]
    /// Writes the header with traffic class and flow label 0. `payload_len` must fit 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_version_class_label(0, 0);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
    }

    #[inline]
    /// The upper-layer pseudo-header's sum for this packet's payload (RFC 8200 8.1).
    pub fn pseudo_header(&self) -> u64 {
        checksum::pseudo_header_v6(self.src, self.dst, self.next_header, self.payload_len as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    fn packet() -> Vec<u8> {
        let mut p = vec![0x60, 0x0a, 0xbc, 0xde, 0x00, 0x08, ip_proto::UDP, 64];
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        p
    }

    #[test]
    fn accessors_read_the_fields_rfc8200_places() {
        let buf = packet();
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0x00, 0xabcde));
        assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (8, ip_proto::UDP, 64));
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn emit_then_parse_gives_back_the_repr() {
        let buf = packet();
        let repr = Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()).unwrap();
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&out[..]).unwrap()), Ok(repr));
        assert_eq!(&out[4..40], &buf[4..40]);
    }

    #[test]
    fn short_buffers_and_other_versions_are_refused() {
        let good = packet();
        for cut in 0..good.len() {
            assert!(Ipv6Packet::new_checked(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut v4 = good;
        v4[0] = 0x45;
        assert!(matches!(Ipv6Packet::new_checked(&v4[..]), Err(WireError::Malformed(..))));
    }
}
