//! Whole frames: Ethernet + IPv4 or IPv6 + TCP, built in one call into a buffer whose payload
//! the caller has placed (a send buffer's bytes copied once into the mbuf), and read back the
//! same way. What the Endpoint and Splicer send and what their tests check.

use super::ethernet::{ethertype, EthernetAddress, EthernetRepr, VlanTags, HEADER_LEN as ETHERNET_LEN};
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::tcp::{TcpPacket, TcpRepr};
use super::{ip_proto, WireError};
use std::net::IpAddr;

/// An IPv4 or IPv6 header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl IpRepr {
    /// The header for `payload_len` bytes of `protocol` from `src` to `dst`; `None` when the
    /// two addresses are of different families.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, payload_len: usize, hop_limit: u8) -> Option<IpRepr> {
        Some(match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => IpRepr::V4(Ipv4Repr { src, dst, protocol, payload_len, ttl: hop_limit }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpRepr::V6(Ipv6Repr { src, dst, next_header: protocol, payload_len, hop_limit }),
            _ => return None,
        })
    }

    pub fn src(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => r.src.into(),
            IpRepr::V6(r) => r.src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => r.dst.into(),
            IpRepr::V6(r) => r.dst.into(),
        }
    }

    pub fn protocol(&self) -> u8 {
        match self {
            IpRepr::V4(r) => r.protocol,
            IpRepr::V6(r) => r.next_header,
        }
    }

    pub fn payload_len(&self) -> usize {
        match self {
            IpRepr::V4(r) => r.payload_len,
            IpRepr::V6(r) => r.payload_len,
        }
    }

    pub fn set_payload_len(&mut self, len: usize) {
        match self {
            IpRepr::V4(r) => r.payload_len = len,
            IpRepr::V6(r) => r.payload_len = len,
        }
    }

    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(r) => r.header_len(),
            IpRepr::V6(r) => r.header_len(),
        }
    }

    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => ethertype::IPV4,
            IpRepr::V6(_) => ethertype::IPV6,
        }
    }

    pub fn pseudo_header(&self) -> u64 {
        match self {
            IpRepr::V4(r) => r.pseudo_header(),
            IpRepr::V6(r) => r.pseudo_header(),
        }
    }

    /// Writes the header at the start of `buffer` (which holds the payload after it).
    pub fn emit(&self, buffer: &mut [u8]) {
        match self {
            IpRepr::V4(r) => r.emit(&mut Ipv4Packet::new_unchecked(buffer)),
            IpRepr::V6(r) => r.emit(&mut Ipv6Packet::new_unchecked(buffer)),
        }
    }
}

/// Whether [`TcpFrame::parse`] checks the IPv4 and TCP checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    Verify,
    /// For frames whose checksums the port has verified (or a capture taken on a sender with
    /// offload, where they were never filled).
    Trust,
}

/// An Ethernet + IP + TCP frame's headers as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFrame {
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    /// The VLAN tags between the addresses and the EtherType (none on most frames).
    pub vlan: VlanTags,
    /// Its `payload_len` is set by [`TcpFrame::emit`] from the TCP segment's length.
    pub ip: IpRepr,
    pub tcp: TcpRepr,
}

impl TcpFrame {
    /// Where the TCP payload starts in the frame: copy it there before [`TcpFrame::emit`].
    pub fn payload_offset(&self) -> usize {
        self.l2_len() + self.ip.header_len() + self.tcp.header_len()
    }

    /// The Ethernet header's length with its VLAN tags: where the IP header starts.
    pub fn l2_len(&self) -> usize {
        ETHERNET_LEN + self.vlan.len()
    }

    /// The whole frame's length.
    pub fn len(&self) -> usize {
        self.payload_offset() + self.tcp.payload_len
    }

    /// Never true: a frame has headers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the headers and both checksums into `buffer`, whose bytes from
    /// [`TcpFrame::payload_offset`] hold the payload; returns the frame's length. A buffer
    /// too short, or a segment too long for the IP length field, is an error.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, WireError> {
        let len = self.len();
        let segment_len = self.tcp.buffer_len();
        if buffer.len() < len {
            return Err(WireError::Truncated("frame buffer"));
        }
        if segment_len + self.ip.header_len() > usize::from(u16::MAX) {
            return Err(WireError::Malformed("TCP frame", "segment longer than an IP packet holds"));
        }
        let buffer = &mut buffer[..len];
        let eth = EthernetRepr { src: self.src_mac, dst: self.dst_mac, ethertype: self.ip.ethertype() };
        let ip_at = self.vlan.emit_header(&eth, buffer);
        let mut ip = self.ip;
        ip.set_payload_len(segment_len);
        ip.emit(&mut buffer[ip_at..]);
        let tcp_at = ip_at + ip.header_len();
        self.tcp.emit(&mut TcpPacket::new_unchecked(&mut buffer[tcp_at..]), ip.pseudo_header());
        Ok(len)
    }

    /// Reads an Ethernet frame (untagged, or with up to two VLAN tags) carrying TCP in IPv4
    /// (no fragment) or IPv6 (no extension headers); returns the headers and the payload.
    /// Padding after the IP packet is ignored.
    pub fn parse(frame: &[u8], checksums: Checksums) -> Result<(TcpFrame, &[u8]), WireError> {
        let (eth, vlan, l3_at) = VlanTags::parse_header(frame)?;
        let l3 = &frame[l3_at..];
        let (ip, segment) = match eth.ethertype {
            ethertype::IPV4 => {
                let packet = Ipv4Packet::new_checked(l3)?;
                if checksums == Checksums::Verify && !packet.verify_checksum() {
                    return Err(WireError::Malformed("IPv4 header", "checksum wrong"));
                }
                let repr = Ipv4Repr::parse(&packet)?;
                let end = usize::from(packet.total_len());
                (IpRepr::V4(repr), &l3[packet.header_len()..end])
            }
            ethertype::IPV6 => {
                let packet = Ipv6Packet::new_checked(l3)?;
                let repr = Ipv6Repr::parse(&packet)?;
                (IpRepr::V6(repr), &l3[super::ipv6::HEADER_LEN..super::ipv6::HEADER_LEN + repr.payload_len])
            }
            _ => return Err(WireError::Unsupported("TCP frame", "an EtherType other than IPv4 or IPv6")),
        };
        if ip.protocol() != ip_proto::TCP {
            return Err(WireError::Unsupported("TCP frame", "an IP payload other than TCP"));
        }
        let packet = TcpPacket::new_checked(segment)?;
        if checksums == Checksums::Verify && !packet.verify_checksum(ip.pseudo_header()) {
            return Err(WireError::Malformed("TCP header", "checksum wrong"));
        }
        let tcp = TcpRepr::parse(&packet)?;
        let payload = &segment[packet.header_len()..];
        Ok((TcpFrame { src_mac: eth.src, dst_mac: eth.dst, vlan, ip, tcp }, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::TcpOptions;
    use crate::wire::tcp_flags::{ACK, PSH};
    use crate::wire::{parse, LinkType, Packet, ParseOptions};

    fn frame(src: IpAddr, dst: IpAddr, payload_len: usize) -> TcpFrame {
        TcpFrame {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            vlan: VlanTags::NONE,
            ip: IpRepr::new(src, dst, ip_proto::TCP, 0, 64).unwrap(),
            tcp: TcpRepr {
                src_port: 80,
                dst_port: 40000,
                seq: 7,
                ack: 9,
                flags: ACK | PSH,
                window: 512,
                urgent: 0,
                options: TcpOptions { timestamps: Some((5, 6)), ..TcpOptions::default() },
                payload_len,
            },
        }
    }

    #[test]
    fn a_built_frame_reads_back_and_the_dissector_agrees() {
        for (src, dst) in [
            (IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2])),
            ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
        ] {
            let f = frame(src, dst, 5);
            let mut buf = vec![0u8; 128];
            buf[f.payload_offset()..f.len()].copy_from_slice(b"hello");
            let len = f.emit(&mut buf).unwrap();
            let (back, payload) = TcpFrame::parse(&buf[..len], Checksums::Verify).unwrap();
            assert_eq!(payload, b"hello");
            assert_eq!(back.tcp, f.tcp);
            assert_eq!((back.ip.src(), back.ip.dst(), back.ip.payload_len()), (src, dst, f.tcp.buffer_len()));
            let Ok(Packet::Ip(p)) = parse(&buf[..len], LinkType::Ethernet, ParseOptions::default()) else { panic!() };
            assert_eq!((p.src_port, p.dst_port, p.tcp.seq, p.payload_len), (80, 40000, 7, 5));
            buf[len - 1] ^= 0x20;
            assert!(TcpFrame::parse(&buf[..len], Checksums::Verify).is_err(), "a flipped payload bit fails the checksum");
            assert!(TcpFrame::parse(&buf[..len], Checksums::Trust).is_ok());
        }
    }

    /// A tagged frame keeps its tags both ways, and the dissector (which unwraps tags on its
    /// own) reads the same packet.
    #[test]
    fn a_vlan_tagged_frame_reads_back_with_its_tags_ieee_802_1q() {
        let mut f = frame(IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2]), 3);
        f.vlan = VlanTags::new(&[(ethertype::QINQ, 7), (ethertype::VLAN, 100)]).unwrap();
        assert_eq!(f.l2_len(), 22);
        let mut buf = vec![0u8; 128];
        buf[f.payload_offset()..f.len()].copy_from_slice(b"abc");
        let len = f.emit(&mut buf).unwrap();
        assert_eq!(len, 22 + 20 + f.tcp.header_len() + 3);
        let (back, payload) = TcpFrame::parse(&buf[..len], Checksums::Verify).unwrap();
        assert_eq!((back.vlan, back.src_mac, back.dst_mac, back.tcp, payload), (f.vlan, f.src_mac, f.dst_mac, f.tcp, &b"abc"[..]));
        let Ok(Packet::Ip(p)) = parse(&buf[..len], LinkType::Ethernet, ParseOptions::default()) else { panic!() };
        assert_eq!((p.src_port, p.dst_port, p.payload_len), (80, 40000, 3));
    }

    #[test]
    fn short_buffers_and_mixed_families_are_refused() {
        let f = frame(IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2]), 10);
        let mut short = vec![0u8; f.len() - 1];
        assert!(f.emit(&mut short).is_err());
        assert!(IpRepr::new(IpAddr::from([198, 18, 0, 1]), "2001:db8::1".parse().unwrap(), ip_proto::TCP, 0, 64).is_none());
    }
}
