//! Ethernet II frames (IEEE 802.3 clause 3.1.1; the diagram is in `docs/wire.md`): addresses and
//! EtherType, and the 802.1Q / 802.1ad VLAN tags between them ([`VlanTags`]), which the
//! Endpoint reads off what a client sent and puts on its answers (the dissector unwraps tags
//! on its own way in).

use super::{get16, put16, WireError};
use std::fmt;

/// Bytes of an Ethernet II header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

/// EtherType values (IEEE registry) the parsers and builders use.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MULTICAST: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ outer tag some switches still send.
    pub const QINQ_OLD: u16 = 0x9100;
    /// Transparent Ethernet bridging (an Ethernet frame inside GRE).
    pub const TEB: u16 = 0x6558;
}

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    #[inline]
    /// The group bit: broadcast and multicast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    #[inline]
    /// The IPv6 multicast MAC for `group` (RFC 2464 7: 33:33 and the low 32 bits).
    pub fn ipv6_multicast(group: std::net::Ipv6Addr) -> EthernetAddress {
        let o = group.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for EthernetAddress {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// A buffer holding an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    #[inline]
    /// Wraps `buffer` without checking it: accessors panic if it is shorter than
    /// [`HEADER_LEN`]. For buffers the caller sized itself.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    #[inline]
    /// Wraps `buffer` once it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated("Ethernet header"));
        }
        Ok(EthernetFrame { buffer })
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        let b = self.buffer.as_ref();
        EthernetAddress([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        let b = self.buffer.as_ref();
        EthernetAddress([b[6], b[7], b[8], b[9], b[10], b[11]])
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        get16(self.buffer.as_ref(), 12)
    }

    #[inline]
    /// What follows the header (the rest of the buffer, padding included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[0..6].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[6..12].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        put16(self.buffer.as_mut(), 12, value);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An Ethernet II header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src: EthernetAddress,
    pub dst: EthernetAddress,
    pub ethertype: u16,
}

impl EthernetRepr {
    #[inline]
    /// Reads the header; an 802.3 length field (below 0x0600) is refused: no EtherType.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, WireError> {
        let ethertype = frame.ethertype();
        if ethertype < 0x0600 {
            return Err(WireError::Unsupported("Ethernet header", "an 802.3 length field"));
        }
        Ok(EthernetRepr { src: frame.src_addr(), dst: frame.dst_addr(), ethertype })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

/// VLAN tags a frame carries at most: a customer tag, or a service tag over one (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

/// Bytes of one VLAN tag: its TPID and its TCI (priority, drop eligibility, VLAN id).
pub const VLAN_TAG_LEN: usize = 4;

/// The 802.1Q / 802.1ad tags between a frame's addresses and its EtherType, outermost first:
/// kept from what a client sent so that the answer goes back on the same VLAN(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTags {
    /// (TPID, TCI) per tag.
    tags: [(u16, u16); MAX_VLAN_TAGS],
    count: u8,
}

impl VlanTags {
    /// An untagged frame.
    pub const NONE: VlanTags = VlanTags { tags: [(0, 0); MAX_VLAN_TAGS], count: 0 };

    /// Whether `ethertype` is a TPID: a VLAN tag follows, not the payload.
    pub fn is_tpid(ethertype: u16) -> bool {
        matches!(ethertype, self::ethertype::VLAN | self::ethertype::QINQ | self::ethertype::QINQ_OLD)
    }

    /// Tags `[(TPID, TCI)]`, outermost first; an error past [`MAX_VLAN_TAGS`].
    pub fn new(tags: &[(u16, u16)]) -> Result<VlanTags, WireError> {
        if tags.len() > MAX_VLAN_TAGS {
            return Err(WireError::Unsupported("VLAN tags", "more than two"));
        }
        let mut t = VlanTags::NONE;
        t.tags[..tags.len()].copy_from_slice(tags);
        t.count = tags.len() as u8;
        Ok(t)
    }

    /// The tags, outermost first, as (TPID, TCI).
    pub fn tags(&self) -> &[(u16, u16)] {
        &self.tags[..usize::from(self.count)]
    }

    /// The innermost tag's VLAN id (the one the frame's network is on), if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.tags().last().map(|&(_, tci)| tci & 0x0fff)
    }

    /// The outermost tag's VLAN id, 0 when untagged: the one a flow key takes
    /// (`Parsed::vlan`, `[flow] vlan_in_key`).
    pub fn outer_id(&self) -> u16 {
        self.tags().first().map_or(0, |&(_, tci)| tci & 0x0fff)
    }

    /// Bytes the tags take in a frame.
    pub fn len(&self) -> usize {
        usize::from(self.count) * VLAN_TAG_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Reads a frame's header: its addresses, its tags (two at most; more is an error) and the
    /// EtherType after them (in the returned header); also where the payload starts.
    pub fn parse_header(frame: &[u8]) -> Result<(EthernetRepr, VlanTags, usize), WireError> {
        let mut repr = EthernetRepr::parse(&EthernetFrame::new_checked(frame)?)?;
        let mut tags = VlanTags::NONE;
        let mut at = HEADER_LEN;
        while VlanTags::is_tpid(repr.ethertype) {
            if usize::from(tags.count) == MAX_VLAN_TAGS {
                return Err(WireError::Unsupported("VLAN tags", "more than two"));
            }
            let Some(tag) = frame.get(at..at + VLAN_TAG_LEN) else { return Err(WireError::Truncated("VLAN tag")) };
            tags.tags[usize::from(tags.count)] = (repr.ethertype, get16(tag, 0));
            tags.count += 1;
            repr.ethertype = get16(tag, 2);
            at += VLAN_TAG_LEN;
        }
        if repr.ethertype < 0x0600 {
            return Err(WireError::Unsupported("Ethernet header", "an 802.3 length field"));
        }
        Ok((repr, tags, at))
    }

    /// Writes `repr` into the start of `buffer` with these tags between its addresses and its
    /// EtherType; returns the header's length (where the payload goes). `buffer` must hold
    /// [`HEADER_LEN`] + [`VlanTags::len`] bytes.
    pub fn emit_header(&self, repr: &EthernetRepr, buffer: &mut [u8]) -> usize {
        let mut frame = EthernetFrame::new_unchecked(&mut buffer[..]);
        frame.set_dst_addr(repr.dst);
        frame.set_src_addr(repr.src);
        let mut at = 12;
        for &(tpid, tci) in self.tags() {
            put16(buffer, at, tpid);
            put16(buffer, at + 2, tci);
            at += VLAN_TAG_LEN;
        }
        put16(buffer, at, repr.ethertype);
        at + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tags_are_read_and_written_back_outermost_first_ieee_802_1q() {
        let repr =
            EthernetRepr { src: EthernetAddress([2, 0, 0, 0, 0, 1]), dst: EthernetAddress([2, 0, 0, 0, 0, 2]), ethertype: ethertype::IPV4 };
        let tags = VlanTags::new(&[(ethertype::QINQ, 0x0064), (ethertype::VLAN, 0x2005)]).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(tags.emit_header(&repr, &mut buf), 22);
        assert_eq!(&buf[12..22], &[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x20, 0x05, 0x08, 0x00]);
        let (back, back_tags, at) = VlanTags::parse_header(&buf).unwrap();
        assert_eq!((back, back_tags, at), (repr, tags, 22));
        assert_eq!(back_tags.vlan_id(), Some(5), "the inner tag's id, without the priority bits");
        // Untagged: the plain header.
        assert_eq!(VlanTags::NONE.emit_header(&repr, &mut buf), HEADER_LEN);
        assert_eq!(VlanTags::parse_header(&buf).unwrap(), (repr, VlanTags::NONE, HEADER_LEN));
        // Three tags, a cut tag, a length field after the tags: errors, not guesses.
        let mut three = [0u8; 64];
        let t = VlanTags::new(&[(ethertype::VLAN, 1), (ethertype::VLAN, 2)]).unwrap();
        let at = t.emit_header(&EthernetRepr { ethertype: ethertype::VLAN, ..repr }, &mut three);
        assert!(matches!(VlanTags::parse_header(&three), Err(WireError::Unsupported(..))), "{at}");
        tags.emit_header(&repr, &mut buf);
        assert!(matches!(VlanTags::parse_header(&buf[..19]), Err(WireError::Truncated(_))));
        tags.emit_header(&EthernetRepr { ethertype: 0x0100, ..repr }, &mut buf);
        assert!(VlanTags::parse_header(&buf).is_err());
        assert!(VlanTags::new(&[(ethertype::VLAN, 1); 3]).is_err());
    }

    #[test]
    fn emit_then_parse_gives_back_the_header() {
        let repr = EthernetRepr { src: EthernetAddress([2, 0, 0, 0, 0, 1]), dst: EthernetAddress::BROADCAST, ethertype: ethertype::ARP };
        let mut buf = [0u8; 60];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..14], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
        assert_eq!(frame.payload().len(), 46);
        assert!(frame.dst_addr().is_broadcast() && frame.dst_addr().is_multicast());
        assert_eq!(repr.src.to_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn short_buffers_and_length_fields_are_refused() {
        assert_eq!(EthernetFrame::new_checked(&[0u8; 13][..]).err(), Some(WireError::Truncated("Ethernet header")));
        let frame = EthernetFrame::new_checked(&[0u8; 14][..]).unwrap();
        assert!(matches!(EthernetRepr::parse(&frame), Err(WireError::Unsupported(..))));
    }

    #[test]
    fn ipv6_multicast_macs_follow_rfc2464() {
        let group: std::net::Ipv6Addr = "ff02::1:ff00:1234".parse().unwrap();
        assert_eq!(EthernetAddress::ipv6_multicast(group), EthernetAddress([0x33, 0x33, 0xff, 0x00, 0x12, 0x34]));
    }
}
