//! Address translation of one frame in place, for an L4 load balancer (`[[service]] stack =
//! "l4"`): the IPv4 addresses and the TCP or UDP ports are written over, and the IPv4 header's
//! and the TCP or UDP checksum moved by the words that changed (RFC 1624 equation 3); nothing
//! else of the frame is read or written. [`locate`] finds and checks the headers first, so that
//! the caller can look the frame's tuple up before deciding what to write.
//!
//! Frames: Ethernet, untagged or with up to two VLAN tags (kept); IPv4 with or without options,
//! not a fragment (a non-first fragment has no ports to translate by; [`NatError::Fragment`]);
//! TCP or UDP. A UDP datagram sent without a checksum (0, RFC 768) is left without one; a UDP
//! checksum that comes out 0 is written 0xffff (RFC 768: 0 means none). Checksums are not
//! verified: a wrong one stays wrong by the same amount, and the receiver drops the frame as it
//! would have without mbox.

use crate::wire::ethernet::{ethertype, VlanTags};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{checksum, get16, get32, ip_proto, put16, put32, WireError};
use std::net::SocketAddrV4;

/// Why a frame cannot be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("not IPv4 (ethertype {0:#06x})")]
    NotIpv4(u16),
    #[error("an IPv4 fragment")]
    Fragment,
    #[error("neither TCP nor UDP (protocol {0})")]
    NotTcpOrUdp(u8),
}

/// Where a frame's headers are and what its tuple is, found by [`locate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// `ip_proto::TCP` or `ip_proto::UDP`.
    pub proto: u8,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// The TCP flags, sequence and acknowledgment numbers (0 for UDP).
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    l3: usize,
    l4: usize,
}

impl Located {
    /// Where the IPv4 header starts in the frame.
    pub fn l3_offset(&self) -> usize {
        self.l3
    }

    /// Where the TCP or UDP header starts in the frame.
    pub fn l4_offset(&self) -> usize {
        self.l4
    }
}

/// Finds `frame`'s IPv4 and TCP or UDP headers and reads its tuple; nothing is written.
pub fn locate(frame: &[u8]) -> Result<Located, NatError> {
    let (eth, _, l3) = VlanTags::parse_header(frame)?;
    if eth.ethertype != ethertype::IPV4 {
        return Err(NatError::NotIpv4(eth.ethertype));
    }
    let ip = Ipv4Packet::new_checked(&frame[l3..])?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(NatError::Fragment);
    }
    let proto = ip.protocol();
    let l4 = l3 + ip.header_len();
    let end = l3 + usize::from(ip.total_len());
    let need = match proto {
        ip_proto::TCP => 20,
        ip_proto::UDP => 8,
        other => return Err(NatError::NotTcpOrUdp(other)),
    };
    if end < l4 + need {
        return Err(WireError::Truncated(if proto == ip_proto::TCP { "TCP header" } else { "UDP header" }).into());
    }
    let (tcp_flags, tcp_seq, tcp_ack) =
        if proto == ip_proto::TCP { (frame[l4 + 13], get32(frame, l4 + 4), get32(frame, l4 + 8)) } else { (0, 0, 0) };
    Ok(Located {
        proto,
        src: SocketAddrV4::new(ip.src_addr(), get16(frame, l4)),
        dst: SocketAddrV4::new(ip.dst_addr(), get16(frame, l4 + 2)),
        tcp_flags,
        tcp_seq,
        tcp_ack,
        l3,
        l4,
    })
}

/// Writes `src` and `dst` over the tuple of `frame`, which [`locate`] found at `at`, and moves
/// the checksums by what changed. `at` must come from this frame, unchanged since.
pub fn rewrite(frame: &mut [u8], at: &Located, src: SocketAddrV4, dst: SocketAddrV4) {
    let mut ip_sum = 0u64;
    for (field, old, new) in [(12, at.src.ip(), src.ip()), (16, at.dst.ip(), dst.ip())] {
        let (old, new) = (u32::from(*old), u32::from(*new));
        if old != new {
            put32(frame, at.l3 + field, new);
            ip_sum += checksum::delta32(old, new);
        }
    }
    // The pseudo-header's addresses changed by the same words as the IP header's.
    let mut l4_sum = ip_sum;
    for (field, old, new) in [(0, at.src.port(), src.port()), (2, at.dst.port(), dst.port())] {
        if old != new {
            put16(frame, at.l4 + field, new);
            l4_sum += checksum::delta16(old, new);
        }
    }
    if ip_sum != 0 {
        let check = get16(frame, at.l3 + 10);
        put16(frame, at.l3 + 10, checksum::update(check, ip_sum));
    }
    let check_at = at.l4 + if at.proto == ip_proto::TCP { 16 } else { 6 };
    let check = get16(frame, check_at);
    if at.proto == ip_proto::UDP && check == 0 {
        return; // sent without a checksum: it stays without one
    }
    if l4_sum != 0 {
        let new = checksum::update(check, l4_sum);
        put16(frame, check_at, if at.proto == ip_proto::UDP && new == 0 { 0xffff } else { new });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{finish, pseudo_header_v4, sum};

    /// An Ethernet + IPv4 + `proto` frame from `src` to `dst` with `payload`, its checksums
    /// computed in full (`udp_check`: false leaves a UDP checksum 0).
    fn frame(proto: u8, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], vlan: bool, udp_check: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let l3 = f.len();
        let l4_len = if proto == ip_proto::TCP { 20 } else { 8 } + payload.len();
        // IHL 6: an options word, so that the L4 header does not sit at 20 bytes.
        let total = 24 + l4_len;
        f.extend_from_slice(&[0x46, 0, (total >> 8) as u8, total as u8, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src.ip().octets());
        f.extend_from_slice(&dst.ip().octets());
        f.extend_from_slice(&[1, 1, 1, 0]);
        let l4 = f.len();
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        if proto == ip_proto::TCP {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        f.extend_from_slice(payload);
        let ip_check = finish(sum(&f[l3..l4]));
        f[l3 + 10..l3 + 12].copy_from_slice(&ip_check.to_be_bytes());
        if proto == ip_proto::TCP || udp_check {
            let mut c = finish(pseudo_header_v4(*src.ip(), *dst.ip(), proto, l4_len as u32) + sum(&f[l4..]));
            if proto == ip_proto::UDP && c == 0 {
                c = 0xffff;
            }
            let at = l4 + if proto == ip_proto::TCP { 16 } else { 6 };
            f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn a_rewritten_frame_is_the_frame_built_with_the_new_tuple_tcp_and_udp_tagged_or_not() {
        let (c, vip, b, snat) = (sa("198.18.1.1:40000"), sa("198.18.1.80:80"), sa("198.18.1.11:8080"), sa("198.18.1.21:1025"));
        for proto in [ip_proto::TCP, ip_proto::UDP] {
            for vlan in [false, true] {
                for payload in [&b""[..], b"x", b"GET / HTTP/1.1\r\n\r\n"] {
                    for (new_src, new_dst) in [(c, b), (snat, b)] {
                        let mut f = frame(proto, c, vip, payload, vlan, true);
                        let at = locate(&f).unwrap();
                        assert_eq!((at.proto, at.src, at.dst), (proto, c, vip));
                        rewrite(&mut f, &at, new_src, new_dst);
                        assert_eq!(f, frame(proto, new_src, new_dst, payload, vlan, true), "{proto} vlan {vlan} {payload:?}");
                        // And back, as the replies go.
                        let mut r = frame(proto, new_dst, new_src, payload, vlan, true);
                        let at = locate(&r).unwrap();
                        rewrite(&mut r, &at, vip, c);
                        assert_eq!(r, frame(proto, vip, c, payload, vlan, true));
                    }
                }
            }
        }
    }

    #[test]
    fn a_udp_datagram_without_a_checksum_stays_without_one_rfc768() {
        let (c, vip, b) = (sa("198.18.1.1:5353"), sa("198.18.1.80:53"), sa("198.18.1.12:53"));
        let mut f = frame(ip_proto::UDP, c, vip, b"query", false, false);
        let at = locate(&f).unwrap();
        rewrite(&mut f, &at, c, b);
        assert_eq!(f, frame(ip_proto::UDP, c, b, b"query", false, false));
    }

    #[test]
    fn a_udp_checksum_that_comes_out_zero_is_written_all_ones_rfc768() {
        // Search for a payload whose datagram to `b` sums to a zero checksum, then translate to
        // it from another tuple: the incremental update must write 0xffff, as a full one does.
        let (c, vip, b) = (sa("198.18.1.1:5353"), sa("198.18.1.80:53"), sa("198.18.1.12:53"));
        let zero = (0..=u16::MAX)
            .map(|w| w.to_be_bytes())
            .find(|p| {
                let f = frame(ip_proto::UDP, c, b, p, false, true);
                let l4 = f.len() - 10;
                f[l4 + 6..l4 + 8] == [0xff, 0xff]
            })
            .expect("some two bytes make the sum zero");
        let mut f = frame(ip_proto::UDP, c, vip, &zero, false, true);
        let at = locate(&f).unwrap();
        rewrite(&mut f, &at, c, b);
        assert_eq!(f, frame(ip_proto::UDP, c, b, &zero, false, true));
    }

    #[test]
    fn fragments_other_protocols_and_short_frames_are_refused_before_anything_is_written() {
        let (c, vip) = (sa("198.18.1.1:40000"), sa("198.18.1.80:80"));
        let mut f = frame(ip_proto::TCP, c, vip, b"abc", false, true);
        let mut frag = f.clone();
        frag[14 + 6] = 0x20; // more fragments
        assert_eq!(locate(&frag), Err(NatError::Fragment));
        let mut icmp = f.clone();
        icmp[14 + 9] = 1;
        assert_eq!(locate(&icmp), Err(NatError::NotTcpOrUdp(1)));
        let short = &f[..14 + 24 + 10];
        assert!(matches!(locate(short), Err(NatError::Wire(_))));
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(locate(&f), Err(NatError::NotIpv4(0x86dd)));
    }
}
