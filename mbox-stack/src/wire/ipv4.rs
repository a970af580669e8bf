//! IPv4 headers (RFC 791 3.1; the diagram is in `docs/wire.md`).

use super::checksum;
use super::{get16, put16, WireError};
use std::net::Ipv4Addr;

/// Bytes of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// A buffer holding an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    #[inline]
    /// Wraps `buffer` without checking it: accessors panic on a buffer shorter than the
    /// fields they read.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    #[inline]
    /// Wraps `buffer` once its version is 4, its header length at least 20 bytes and the
    /// buffer holds the whole packet its total length declares (more is padding).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Ipv4Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated("IPv4 header"));
        }
        if packet.version() != 4 {
            return Err(WireError::Malformed("IPv4 header", "version is not 4"));
        }
        let header = packet.header_len();
        if header < HEADER_LEN {
            return Err(WireError::Malformed("IPv4 header", "header length below 20 bytes"));
        }
        if usize::from(packet.total_len()) < header {
            return Err(WireError::Malformed("IPv4 header", "total length below the header length"));
        }
        if len < usize::from(packet.total_len()) {
            return Err(WireError::Truncated("IPv4 packet"));
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
    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[1] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[1] & 0x03
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get16(self.buffer.as_ref(), 2)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get16(self.buffer.as_ref(), 4)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[6] & 0x40 != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[6] & 0x20 != 0
    }

    #[inline]
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get16(self.buffer.as_ref(), 6) & 0x1fff) << 3
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), 10)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    #[inline]
    /// The header's options (empty for a 20-byte header).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    #[inline]
    /// True when the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::sum(&self.buffer.as_ref()[..self.header_len()]))
    }

    #[inline]
    /// The payload the total length declares (padding after it excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[0] = 0x40 | (header_len / 4) as u8;
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[1] = (dscp << 2) | (ecn & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 2, value);
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 4, value);
    }

    #[inline]
    /// Sets the flags and fragment offset: don't-fragment, no more fragments, offset 0.
    pub fn set_unfragmented(&mut self) {
        put16(self.buffer.as_mut(), 6, 0x4000);
    }

    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[8] = value;
    }

    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[9] = value;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[12..16].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[16..20].copy_from_slice(&addr.octets());
    }

    #[inline]
    /// Computes and writes the header checksum over the header as it now is.
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let b = self.buffer.as_mut();
        put16(b, 10, 0);
        let value = checksum::finish(checksum::sum(&b[..header_len]));
        put16(b, 10, value);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

/// An unfragmented IPv4 header as values (options are not kept; emit writes none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
}

impl Ipv4Repr {
    #[inline]
    /// Reads a checked packet's header. Fragments are unsupported: the L2/3 µStack reassembles
    /// them before any stack reads a header this way. The checksum is not verified here
    /// (a capture taken on a sender with offload carries none): [`Ipv4Packet::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, WireError> {
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(WireError::Unsupported("IPv4 header", "a fragment"));
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
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
    /// Writes the header (don't-fragment set, identification 0 as RFC 6864 4.1 allows for
    /// atomic datagrams) and its checksum. `payload_len` must fit the 16-bit total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_dscp_ecn(0, 0);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        packet.set_unfragmented();
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }

    #[inline]
    /// The TCP/UDP pseudo-header's sum for this packet's payload.
    pub fn pseudo_header(&self) -> u64 {
        checksum::pseudo_header_v4(self.src, self.dst, self.protocol, self.payload_len as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    /// The header of a UDP datagram as a Linux kernel sent it, checksum included.
    const HEADER: [u8; 20] =
        [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];

    fn packet() -> Vec<u8> {
        let mut p = HEADER.to_vec();
        p.resize(0x73, 0xaa);
        p
    }

    #[test]
    fn accessors_read_the_fields_rfc791_places() {
        let buf = packet();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len(), p.ttl()), (4, 20, 0x73, 64));
        assert!(p.dont_frag() && !p.more_frags() && p.frag_offset() == 0);
        assert_eq!(
            (p.protocol(), p.src_addr(), p.dst_addr()),
            (ip_proto::UDP, Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(192, 168, 0, 199))
        );
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn emit_writes_the_kernels_header_and_parse_gives_back_the_repr() {
        let buf = packet();
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).unwrap()).unwrap();
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..20], &HEADER[..], "same fields, same checksum as the kernel's");
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn bad_versions_lengths_and_fragments_are_refused() {
        let good = packet();
        for cut in 0..0x73 {
            assert!(Ipv4Packet::new_checked(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert!(matches!(Ipv4Packet::new_checked(&v6[..]), Err(WireError::Malformed(..))));
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&short_ihl[..]).is_err());
        let mut short_total = good.clone();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&short_total[..]).is_err());
        let mut fragment = good;
        fragment[6] = 0x20; // more fragments
        let p = Ipv4Packet::new_checked(&fragment[..]).unwrap();
        assert!(matches!(Ipv4Repr::parse(&p), Err(WireError::Unsupported(..))));
        assert!(!p.verify_checksum());
    }
}
