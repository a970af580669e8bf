//! UDP headers (RFC 768; the diagram is in `docs/wire.md`).

use super::checksum;
use super::{get16, put16, WireError};

/// Bytes of a UDP header.
pub const HEADER_LEN: usize = 8;

/// A buffer holding a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    #[inline]
    /// Wraps `buffer` once it holds the header and the length the header declares (at least
    /// 8; more is padding).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = UdpPacket { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated("UDP header"));
        }
        let declared = usize::from(packet.len());
        if declared < HEADER_LEN {
            return Err(WireError::Malformed("UDP header", "length below 8 bytes"));
        }
        if len < declared {
            return Err(WireError::Truncated("UDP datagram"));
        }
        Ok(packet)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), 0)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), 2)
    }

    #[inline]
    /// The length field: header and payload.
    pub fn len(&self) -> u16 {
        get16(self.buffer.as_ref(), 4)
    }

    #[inline]
    /// True when the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), 6)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    #[inline]
    /// True when the checksum over `pseudo_header`, header and payload is right, or absent
    /// (zero) where `optional` (IPv4, RFC 768; IPv6 requires one, RFC 8200 8.1).
    pub fn verify_checksum(&self, pseudo_header: u64, optional: bool) -> bool {
        if self.checksum() == 0 {
            return optional;
        }
        checksum::verifies(pseudo_header + checksum::sum(&self.buffer.as_ref()[..usize::from(self.len())]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 0, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 2, value);
    }

    #[inline]
    pub fn set_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 4, value);
    }

    #[inline]
    /// Computes and writes the checksum; a computed zero is sent as all ones (RFC 768).
    pub fn fill_checksum(&mut self, pseudo_header: u64) {
        put16(self.buffer.as_mut(), 6, 0);
        let end = usize::from(self.len());
        let value = match checksum::finish(pseudo_header + checksum::sum(&self.buffer.as_ref()[..end])) {
            0 => 0xffff,
            v => v,
        };
        put16(self.buffer.as_mut(), 6, value);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A UDP header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr, WireError> {
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port(), payload_len: usize::from(packet.len()) - HEADER_LEN })
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
    /// Writes the header into `packet`, whose payload is already in place, then the
    /// checksum over `pseudo_header`, header and payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>, pseudo_header: u64) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        packet.fill_checksum(pseudo_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{pseudo_header_v4, pseudo_header_v6};
    use crate::wire::ip_proto;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn emit_then_parse_gives_back_the_repr_and_the_checksum_verifies() {
        let repr = UdpRepr { src_port: 5353, dst_port: 53, payload_len: 5 };
        let mut buf = vec![0u8; repr.buffer_len() + 4]; // with trailing padding
        buf[8..13].copy_from_slice(b"hello");
        let pseudo = pseudo_header_v6("2001:db8::1".parse::<Ipv6Addr>().unwrap(), "2001:db8::2".parse().unwrap(), ip_proto::UDP, 13);
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), pseudo);
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p), Ok(repr));
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum(pseudo, false));
        assert!(!p.verify_checksum(pseudo + 1, false));
    }

    #[test]
    fn a_zero_checksum_is_absent_only_where_optional() {
        let buf = [0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        let pseudo = pseudo_header_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, ip_proto::UDP, 8);
        assert!(p.verify_checksum(pseudo, true) && !p.verify_checksum(pseudo, false));
    }

    #[test]
    fn short_buffers_and_lengths_are_refused() {
        let buf = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 1, 2];
        for cut in 0..buf.len() {
            assert!(UdpPacket::new_checked(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut low = buf;
        low[5] = 7;
        assert!(matches!(UdpPacket::new_checked(&low[..]), Err(WireError::Malformed(..))));
    }
}
