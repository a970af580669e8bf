//! The L2/3 µStack's dissector: link layer, VLAN/MPLS/PPPoE, IPv4/IPv6, tunnels, TCP/UDP in one pass.
//!
//! Every length is checked before it is read, so garbage yields a [`ParseError`] naming the
//! cause (the shard counts it and drops the packet), never a panic. A packet whose capture was cut
//! short (snaplen) still parses as long as the headers themselves were captured: the lengths
//! reported are the ones the headers declare, as tshark reports them.

use super::ethernet::ethertype;
use super::ip_proto;
use super::ipv4::{self, Ipv4Packet};
use super::tcp::{self, TcpPacket};
use thiserror::Error;

/// How a capture or port frames its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LinkType {
    /// IEEE 802.3 Ethernet (pcap LINKTYPE_ETHERNET, 1).
    Ethernet,
    /// Linux "cooked" capture v1 (113).
    LinuxSll,
    /// Linux "cooked" capture v2 (276).
    LinuxSll2,
    /// Raw IP, version taken from the first nibble (101, and DLT_RAW 12/14).
    RawIp,
    /// Raw IPv4 (228).
    Ipv4,
    /// Raw IPv6 (229).
    Ipv6,
    /// BSD loopback: a 4-byte address family in host byte order (0, and 108 in network order).
    Null,
}

impl LinkType {
    /// The link type for a pcap/pcapng LINKTYPE value, if mbox can parse it.
    pub fn from_linktype(value: u32) -> Option<LinkType> {
        Some(match value {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 | 108 => LinkType::Null,
            _ => return None,
        })
    }

    /// The LINKTYPE value written to pcap files.
    pub fn to_linktype(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Null => 0,
        }
    }
}

/// Why a packet could not be parsed. Each variant is a drop cause in the run summary.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    #[error("link-layer header truncated")]
    TruncatedLink,
    #[error("more than {MAX_VLAN_TAGS} VLAN tags")]
    TooManyVlanTags,
    #[error("MPLS label stack truncated or too deep")]
    BadMpls,
    #[error("IP header truncated")]
    TruncatedIp,
    #[error("IP version does not match the link layer")]
    BadIpVersion,
    #[error("IPv4 header length below 20 bytes")]
    BadIpv4HeaderLength,
    #[error("IPv4 total length smaller than its header")]
    BadIpv4TotalLength,
    #[error("IPv6 extension header truncated or chain too long")]
    BadIpv6Extension,
    #[error("TCP/UDP header truncated")]
    TruncatedL4,
    #[error("TCP data offset below 20 bytes or beyond the IP payload")]
    BadTcpDataOffset,
    #[error("UDP length below 8 bytes")]
    BadUdpLength,
    #[error("tunnel header truncated or tunnels nested too deep")]
    BadTunnel,
}

impl ParseError {
    /// Every cause, for summaries that list them all.
    pub const ALL: [ParseError; 12] = [
        ParseError::TruncatedLink,
        ParseError::TooManyVlanTags,
        ParseError::BadMpls,
        ParseError::TruncatedIp,
        ParseError::BadIpVersion,
        ParseError::BadIpv4HeaderLength,
        ParseError::BadIpv4TotalLength,
        ParseError::BadIpv6Extension,
        ParseError::TruncatedL4,
        ParseError::BadTcpDataOffset,
        ParseError::BadUdpLength,
        ParseError::BadTunnel,
    ];

    /// A short snake_case name for counters.
    pub fn name(self) -> &'static str {
        match self {
            ParseError::TruncatedLink => "truncated_link",
            ParseError::TooManyVlanTags => "too_many_vlan_tags",
            ParseError::BadMpls => "bad_mpls",
            ParseError::TruncatedIp => "truncated_ip",
            ParseError::BadIpVersion => "bad_ip_version",
            ParseError::BadIpv4HeaderLength => "bad_ipv4_header_length",
            ParseError::BadIpv4TotalLength => "bad_ipv4_total_length",
            ParseError::BadIpv6Extension => "bad_ipv6_extension",
            ParseError::TruncatedL4 => "truncated_l4",
            ParseError::BadTcpDataOffset => "bad_tcp_data_offset",
            ParseError::BadUdpLength => "bad_udp_length",
            ParseError::BadTunnel => "bad_tunnel",
        }
    }

    /// Dense index of the cause, for counter arrays.
    pub fn index(self) -> usize {
        ParseError::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

/// Most VLAN tags accepted in one frame (QinQ and a few more).
pub const MAX_VLAN_TAGS: usize = 8;
/// Most tunnel layers decapsulated before the packet is refused.
pub const MAX_TUNNEL_DEPTH: usize = 4;
const MAX_MPLS_LABELS: usize = 16;
const MAX_IPV6_EXTENSIONS: usize = 16;

/// What parsing should do beyond plain headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Look inside GTP-U, VXLAN, GRE and IP-in-IP and report the innermost headers.
    pub decap_tunnels: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { decap_tunnels: true }
    }
}

/// IPv4/IPv6 fragmentation fields of a packet that is a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragmentInfo {
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Offset of this fragment's data in the datagram's payload, in bytes.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
    /// Offset of the fragment's data in the packet, and its declared length.
    pub data_offset: u32,
    pub data_len: u32,
    /// Length of the IP header(s) before the fragment data (IPv4 header, or IPv6 base header
    /// plus extensions up to and including the fragment header).
    pub header_len: u32,
}

/// TCP header fields the stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFields {
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub flags: u8,
    /// Header length in bytes (data offset * 4).
    pub header_len: u8,
}

/// The result of parsing an IP packet: the innermost IP header and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Outermost VLAN ID (0 when untagged) and number of tags.
    pub vlan: u16,
    pub vlan_tags: u8,
    /// Offset of the innermost IP header.
    pub l3_offset: u32,
    /// 4 or 6.
    pub ip_version: u8,
    /// Protocol of the innermost IP payload (after IPv6 extension headers).
    pub ip_proto: u8,
    /// Addresses; IPv4 uses the first 4 bytes, the rest are zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Declared length of the innermost IP packet (Total Length, or Payload Length + 40).
    pub ip_len: u32,
    /// Offset of the L4 header (or of the IP payload for other protocols).
    pub l4_offset: u32,
    /// Ports (0 when the protocol has none or the packet is a non-first fragment).
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset and declared length of the L4 payload.
    pub payload_offset: u32,
    pub payload_len: u32,
    /// Set for TCP.
    pub tcp: TcpFields,
    /// Set when the packet is an IP fragment.
    pub fragment: Option<FragmentInfo>,
    /// The headers above are those of a tunnelled packet.
    pub tunnelled: bool,
}

impl Parsed {
    /// True when the L4 header (ports, TCP fields) was parsed.
    pub fn has_l4_header(&self) -> bool {
        match self.fragment {
            Some(f) => f.offset == 0 && (self.ip_proto == ip_proto::TCP || self.ip_proto == ip_proto::UDP),
            None => self.ip_proto == ip_proto::TCP || self.ip_proto == ip_proto::UDP,
        }
    }

    /// The L4 payload's captured bytes in `data` (the packet these offsets were parsed from):
    /// at most `payload_len`, fewer where the capture cut the packet.
    pub fn captured_payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = (self.payload_offset as usize).min(data.len());
        &data[start..start + (data.len() - start).min(self.payload_len as usize)]
    }
}

/// A parsed packet: IP (with its headers) or something the stack only forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    Ip(Parsed),
    /// ARP, LLDP, STP and other non-IP frames; carries the EtherType (or 0 for 802.3/LLC).
    NonIp {
        ethertype: u16,
    },
}

const UDP_PORT_GTPU: u16 = 2152;
const UDP_PORT_VXLAN: u16 = 4789;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses `data` framed as `link`, when `data` is the whole frame.
pub fn parse(data: &[u8], link: LinkType, opts: ParseOptions) -> Result<Packet, ParseError> {
    parse_frame(data, data.len() as u32, link, opts)
}

/// Parses the captured bytes `data` of a frame that was `wire_len` bytes long on the wire.
///
/// Lengths follow the headers, bounded by the frame: an IP packet that claims more than the
/// frame carried has its payload cut at the frame's end (as tshark does), while a capture cut
/// short by a snaplen still reports the declared lengths.
pub fn parse_frame(data: &[u8], wire_len: u32, link: LinkType, opts: ParseOptions) -> Result<Packet, ParseError> {
    let mut out = Parsed::default();
    match parse_into(data, wire_len, link, opts, &mut out)? {
        Frame::Ip => Ok(Packet::Ip(out)),
        Frame::NonIp { ethertype } => Ok(Packet::NonIp { ethertype }),
    }
}

/// What [`parse_into`] found; for [`Frame::Ip`] the headers are in its `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Ip,
    NonIp { ethertype: u16 },
}

/// [`parse_frame`] writing into the caller's `out`, which the hot path keeps on its stack so
/// the headers are not copied around on return.
pub fn parse_into(data: &[u8], wire_len: u32, link: LinkType, opts: ParseOptions, out: &mut Parsed) -> Result<Frame, ParseError> {
    let wire = (wire_len as usize).max(data.len());
    out.vlan = 0;
    out.vlan_tags = 0;
    out.tunnelled = false;
    let (offset, ethertype) = match link {
        LinkType::Ethernet => match ethernet(data, 0, out)? {
            Some(found) => found,
            None => return Ok(Frame::NonIp { ethertype: 0 }),
        },
        LinkType::LinuxSll => {
            let proto = be16(data, 14).ok_or(ParseError::TruncatedLink)?;
            after_ethertype(data, 16, proto, out)?
        }
        LinkType::LinuxSll2 => {
            let proto = be16(data, 0).ok_or(ParseError::TruncatedLink)?;
            if data.len() < 20 {
                return Err(ParseError::TruncatedLink);
            }
            after_ethertype(data, 20, proto, out)?
        }
        LinkType::RawIp => (0, version_ethertype(data, 0)?),
        LinkType::Ipv4 => (0, ethertype::IPV4),
        LinkType::Ipv6 => (0, ethertype::IPV6),
        LinkType::Null => {
            let family = data.get(0..4).ok_or(ParseError::TruncatedLink)?;
            // Written in the capturing host's byte order: accept either.
            let family =
                u32::from_le_bytes(family.try_into().unwrap_or([0; 4])).min(u32::from_be_bytes(family.try_into().unwrap_or([0; 4])));
            match family {
                2 => (4, ethertype::IPV4),
                24 | 28 | 30 => (4, ethertype::IPV6),
                _ => return Ok(Frame::NonIp { ethertype: 0 }),
            }
        }
    };
    match ethertype {
        ethertype::IPV4 | ethertype::IPV6 => {
            ip(data, wire, offset, ethertype, opts, 0, out)?;
            Ok(Frame::Ip)
        }
        other => Ok(Frame::NonIp { ethertype: other }),
    }
}

/// Parses an Ethernet header at `at` (with VLAN tags and what `after_ethertype` unwraps).
/// Returns the offset and EtherType of the payload, or `None` for 802.3/LLC frames.
fn ethernet(data: &[u8], at: usize, out: &mut Parsed) -> Result<Option<(usize, u16)>, ParseError> {
    let ethertype = be16(data, at + 12).ok_or(ParseError::TruncatedLink)?;
    if ethertype < 0x0600 {
        return Ok(None); // an 802.3 length field: LLC/SNAP follows, not IP
    }
    after_ethertype(data, at + 14, ethertype, out).map(Some)
}

/// Skips VLAN tags, MPLS labels and PPPoE after an EtherType; returns the payload's offset and
/// EtherType (IPv4 or IPv6 for MPLS payloads, guessed from the version nibble as routers do).
fn after_ethertype(data: &[u8], mut at: usize, mut ethertype: u16, out: &mut Parsed) -> Result<(usize, u16), ParseError> {
    let mut tags = 0usize;
    while matches!(ethertype, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD) {
        if tags == MAX_VLAN_TAGS {
            return Err(ParseError::TooManyVlanTags);
        }
        let tci = be16(data, at).ok_or(ParseError::TruncatedLink)?;
        ethertype = be16(data, at + 2).ok_or(ParseError::TruncatedLink)?;
        if tags == 0 {
            out.vlan = tci & 0x0fff;
        }
        tags += 1;
        at += 4;
    }
    out.vlan_tags = tags as u8;
    match ethertype {
        ethertype::MPLS | ethertype::MPLS_MULTICAST => {
            for _ in 0..MAX_MPLS_LABELS {
                let label = be32(data, at).ok_or(ParseError::BadMpls)?;
                at += 4;
                if label & 0x100 != 0 {
                    // Bottom of stack: MPLS does not say what follows; the version nibble does
                    // (anything else, e.g. a pseudowire control word, is not IP).
                    let ethertype = match data.get(at).ok_or(ParseError::BadMpls)? >> 4 {
                        4 => ethertype::IPV4,
                        6 => ethertype::IPV6,
                        _ => 0,
                    };
                    return Ok((at, ethertype));
                }
            }
            Err(ParseError::BadMpls)
        }
        ethertype::PPPOE_SESSION => {
            // 6-byte PPPoE header, then a 2-byte PPP protocol number.
            let ppp = be16(data, at + 6).ok_or(ParseError::TruncatedLink)?;
            let inner = match ppp {
                0x0021 => ethertype::IPV4,
                0x0057 => ethertype::IPV6,
                _ => 0,
            };
            Ok((at + 8, inner))
        }
        _ => Ok((at, ethertype)),
    }
}

/// The EtherType implied by the IP version nibble at `at`.
fn version_ethertype(data: &[u8], at: usize) -> Result<u16, ParseError> {
    match data.get(at).ok_or(ParseError::TruncatedIp)? >> 4 {
        4 => Ok(ethertype::IPV4),
        6 => Ok(ethertype::IPV6),
        _ => Err(ParseError::BadIpVersion),
    }
}

/// Parses the IP header at `at` and everything inside it, tunnels included. `wire` is the
/// frame's length on the wire.
fn ip(data: &[u8], wire: usize, at: usize, ethertype: u16, opts: ParseOptions, depth: usize, out: &mut Parsed) -> Result<(), ParseError> {
    if depth > MAX_TUNNEL_DEPTH {
        return Err(ParseError::BadTunnel);
    }
    out.l3_offset = at as u32;
    out.fragment = None;
    // Declared end of the IP packet; L4 lengths are derived from it, never from the capture.
    let (proto, l4_at, l4_len) = if ethertype == ethertype::IPV4 { ipv4(data, wire, at, out)? } else { ipv6(data, wire, at, out)? };
    out.ip_proto = proto;
    out.l4_offset = l4_at as u32;
    out.payload_offset = l4_at as u32;
    out.payload_len = l4_len;
    out.src_port = 0;
    out.dst_port = 0;
    out.tcp = TcpFields::default();

    if let Some(frag) = out.fragment {
        if frag.offset != 0 {
            return Ok(()); // no L4 header in this fragment
        }
    }
    match proto {
        ip_proto::TCP => tcp(data, l4_at, l4_len, out),
        ip_proto::UDP => {
            udp(data, l4_at, l4_len, out)?;
            if opts.decap_tunnels && out.fragment.is_none() {
                udp_tunnel(data, wire, opts, depth, out);
            }
            Ok(())
        }
        ip_proto::IPIP | ip_proto::IPV6 if opts.decap_tunnels && out.fragment.is_none() => {
            let inner = if proto == ip_proto::IPIP { ethertype::IPV4 } else { ethertype::IPV6 };
            decap(out, |out| {
                out.tunnelled = true;
                ip(data, wire, l4_at, inner, opts, depth + 1, out)
            });
            Ok(())
        }
        ip_proto::GRE if opts.decap_tunnels && out.fragment.is_none() => {
            decap(out, |out| gre(data, wire, l4_at, opts, depth, out));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Parses a tunnel's inner packet into `out`; when the inner packet cannot be parsed (cut
/// short, garbage, nested too deep), `out` stays the outer packet, which is still valid.
fn decap(out: &mut Parsed, inner: impl FnOnce(&mut Parsed) -> Result<(), ParseError>) {
    let outer = *out;
    if inner(out).is_err() {
        *out = outer;
    }
}

/// IPv4 header: returns (protocol, L4 offset, L4 length).
fn ipv4(data: &[u8], wire: usize, at: usize, out: &mut Parsed) -> Result<(u8, usize, u32), ParseError> {
    let h = Ipv4Packet::new_unchecked(data.get(at..at + ipv4::HEADER_LEN).ok_or(ParseError::TruncatedIp)?);
    if h.version() != 4 {
        return Err(ParseError::BadIpVersion);
    }
    let ihl = h.header_len();
    if ihl < ipv4::HEADER_LEN {
        return Err(ParseError::BadIpv4HeaderLength);
    }
    if data.len() < at + ihl {
        return Err(ParseError::TruncatedIp); // options cut off
    }
    // What the frame really carried from this header on.
    let carried = (wire.saturating_sub(at) as u32).max(ihl as u32);
    let total = match u32::from(h.total_len()) {
        // 0: segmentation offload left the length unset; the frame tells it.
        0 => carried,
        t if (t as usize) < ihl => return Err(ParseError::BadIpv4TotalLength),
        t => t,
    };
    out.ip_version = 4;
    out.ip_len = total;
    out.src = [0; 16];
    out.dst = [0; 16];
    out.src[..4].copy_from_slice(&h.src_addr().octets());
    out.dst[..4].copy_from_slice(&h.dst_addr().octets());
    let more = h.more_frags();
    let offset = u32::from(h.frag_offset());
    // What the frame carried bounds the payload (`total` stays as declared in ip_len).
    let l4_len = total.min(carried) - ihl as u32;
    if more || offset != 0 {
        out.fragment = Some(FragmentInfo {
            id: u32::from(h.ident()),
            offset,
            more,
            data_offset: (at + ihl) as u32,
            data_len: l4_len,
            header_len: ihl as u32,
        });
    }
    Ok((h.protocol(), at + ihl, l4_len))
}

/// IPv6 header and extension headers: returns (upper protocol, its offset, its length).
fn ipv6(data: &[u8], wire: usize, at: usize, out: &mut Parsed) -> Result<(u8, usize, u32), ParseError> {
    let h = data.get(at..at + 40).ok_or(ParseError::TruncatedIp)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    let payload_len = match u32::from(u16::from_be_bytes([h[4], h[5]])) {
        // 0: a jumbogram or segmentation offload; the frame tells the length.
        0 => wire.saturating_sub(at + 40) as u32,
        n => n,
    };
    out.ip_version = 6;
    out.ip_len = payload_len + 40;
    out.src.copy_from_slice(&h[8..24]);
    out.dst.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut pos = at + 40;
    let end = (at as u64 + 40 + u64::from(payload_len)).min((wire as u64).max(at as u64 + 40));
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            // Hop-by-hop, routing, destination options, mobility: (next, len in 8-byte units - 1).
            0 | 43 | 60 | 135 | 139 | 140 => {
                let e = data.get(pos..pos + 2).ok_or(ParseError::BadIpv6Extension)?;
                next = e[0];
                pos += (usize::from(e[1]) + 1) * 8;
            }
            // Authentication header: length in 4-byte units - 2.
            51 => {
                let e = data.get(pos..pos + 2).ok_or(ParseError::BadIpv6Extension)?;
                next = e[0];
                pos += (usize::from(e[1]) + 2) * 4;
            }
            44 => {
                let e = data.get(pos..pos + 8).ok_or(ParseError::BadIpv6Extension)?;
                next = e[0];
                let field = u16::from_be_bytes([e[2], e[3]]);
                let header_len = (pos + 8 - at) as u32;
                let data_len = (end.saturating_sub((pos + 8) as u64)) as u32;
                let offset = u32::from(field & 0xfff8);
                out.fragment = Some(FragmentInfo {
                    id: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                    offset,
                    more: field & 1 != 0,
                    data_offset: (pos + 8) as u32,
                    data_len,
                    header_len,
                });
                pos += 8;
                if offset != 0 {
                    // A later fragment: what follows is data, not headers.
                    if pos as u64 > end {
                        return Err(ParseError::BadIpv6Extension);
                    }
                    return Ok((next, pos, data_len));
                }
            }
            _ => {
                if pos as u64 > end {
                    return Err(ParseError::BadIpv6Extension);
                }
                return Ok((next, pos, (end - pos as u64) as u32));
            }
        }
        if pos as u64 > end {
            return Err(ParseError::BadIpv6Extension);
        }
    }
    Err(ParseError::BadIpv6Extension)
}

fn tcp(data: &[u8], at: usize, l4_len: u32, out: &mut Parsed) -> Result<(), ParseError> {
    let h = TcpPacket::new_unchecked(data.get(at..at + tcp::HEADER_LEN).ok_or(ParseError::TruncatedL4)?);
    let header_len = h.header_len() as u32;
    if header_len < tcp::HEADER_LEN as u32 || header_len > l4_len {
        return Err(ParseError::BadTcpDataOffset);
    }
    out.src_port = h.src_port();
    out.dst_port = h.dst_port();
    out.tcp = TcpFields {
        seq: h.seq_number(),
        ack: h.ack_number(),
        window: h.window_len(),
        // ECE and CWR are left out: flows and events carry the six RFC 793 flags.
        flags: h.flags() & 0x3f,
        header_len: header_len as u8,
    };
    out.payload_offset = at as u32 + header_len;
    out.payload_len = l4_len - header_len;
    Ok(())
}

fn udp(data: &[u8], at: usize, l4_len: u32, out: &mut Parsed) -> Result<(), ParseError> {
    let h = data.get(at..at + 8).ok_or(ParseError::TruncatedL4)?;
    let len = u32::from(u16::from_be_bytes([h[4], h[5]]));
    if len < 8 {
        return Err(ParseError::BadUdpLength);
    }
    out.src_port = u16::from_be_bytes([h[0], h[1]]);
    out.dst_port = u16::from_be_bytes([h[2], h[3]]);
    out.payload_offset = at as u32 + 8;
    // The UDP header's own length (as tshark reports `udp.length - 8`), within what the IP
    // packet carried.
    out.payload_len = (len - 8).min(l4_len.saturating_sub(8));
    Ok(())
}

/// Looks inside GTP-U and VXLAN; leaves `out` as the outer UDP packet when the payload is not a
/// tunnel it understands or cannot be parsed.
fn udp_tunnel(data: &[u8], wire: usize, opts: ParseOptions, depth: usize, out: &mut Parsed) {
    if out.dst_port == UDP_PORT_GTPU || out.src_port == UDP_PORT_GTPU || out.dst_port == UDP_PORT_VXLAN {
        decap(out, |out| udp_tunnel_inner(data, wire, opts, depth, out));
    }
}

fn udp_tunnel_inner(data: &[u8], wire: usize, opts: ParseOptions, depth: usize, out: &mut Parsed) -> Result<(), ParseError> {
    let at = out.payload_offset as usize;
    if out.dst_port == UDP_PORT_GTPU || out.src_port == UDP_PORT_GTPU {
        let Some(flags) = data.get(at) else { return Ok(()) };
        let msg_type = data.get(at + 1).copied().unwrap_or(0);
        // GTPv1 (version bits 001, protocol type 1) carrying a T-PDU (message type 255).
        if flags >> 5 != 1 || flags & 0x10 == 0 || msg_type != 0xff {
            return Ok(());
        }
        let mut inner = at + 8;
        if flags & 0x07 != 0 {
            // Sequence number, N-PDU number and next-extension-type fields are present.
            let mut next_ext = *data.get(inner + 3).ok_or(ParseError::BadTunnel)?;
            inner += 4;
            while next_ext != 0 {
                let units = usize::from(*data.get(inner).ok_or(ParseError::BadTunnel)?);
                if units == 0 {
                    return Err(ParseError::BadTunnel);
                }
                inner += units * 4;
                next_ext = *data.get(inner - 1).ok_or(ParseError::BadTunnel)?;
            }
        }
        let Ok(ethertype) = version_ethertype(data, inner) else { return Ok(()) };
        out.tunnelled = true;
        return ip(data, wire, inner, ethertype, opts, depth + 1, out);
    }
    if out.dst_port == UDP_PORT_VXLAN {
        // 8-byte VXLAN header with the I flag, then an Ethernet frame.
        let Some(&flags) = data.get(at) else { return Ok(()) };
        if flags & 0x08 == 0 {
            return Ok(());
        }
        let mut inner = *out;
        let Some((l3, ethertype)) = ethernet(data, at + 8, &mut inner)? else { return Ok(()) };
        if ethertype == ethertype::IPV4 || ethertype == ethertype::IPV6 {
            // Keep the outer VLAN: it is the one the flow key may use.
            let vlan = (out.vlan, out.vlan_tags);
            out.tunnelled = true;
            ip(data, wire, l3, ethertype, opts, depth + 1, out)?;
            (out.vlan, out.vlan_tags) = vlan;
        }
    }
    Ok(())
}

/// GRE (RFC 2784/2890): IPv4, IPv6 or Ethernet inside.
fn gre(data: &[u8], wire: usize, at: usize, opts: ParseOptions, depth: usize, out: &mut Parsed) -> Result<(), ParseError> {
    let Some(h) = data.get(at..at + 4) else { return Ok(()) };
    let flags = u16::from_be_bytes([h[0], h[1]]);
    if flags & 0x0007 != 0 {
        return Ok(()); // version 1 (PPTP) or unknown: not unwrapped
    }
    let proto = u16::from_be_bytes([h[2], h[3]]);
    let mut inner = at + 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        // checksum+reserved, key, sequence number: 4 bytes each when present
        if flags & bit != 0 {
            inner += 4;
        }
    }
    match proto {
        ethertype::IPV4 | ethertype::IPV6 => {
            if data.len() <= inner {
                return Err(ParseError::BadTunnel);
            }
            out.tunnelled = true;
            ip(data, wire, inner, proto, opts, depth + 1, out)
        }
        ethertype::TEB => {
            let mut scratch = *out;
            let Some((l3, ethertype)) = ethernet(data, inner, &mut scratch)? else { return Ok(()) };
            if ethertype == ethertype::IPV4 || ethertype == ethertype::IPV6 {
                out.tunnelled = true;
                ip(data, wire, l3, ethertype, opts, depth + 1, out)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::tcp_flags;

    /// Builds an Ethernet/IPv4/TCP frame for tests.
    pub(crate) fn eth_ipv4_tcp(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 14];
        p[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        let total = 20 + 20 + payload.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        p.extend_from_slice(&tcp);
        p.extend_from_slice(payload);
        p
    }

    fn ip_of(p: Result<Packet, ParseError>) -> Parsed {
        match p {
            Ok(Packet::Ip(parsed)) => parsed,
            other => panic!("expected IP, got {other:?}"),
        }
    }

    #[test]
    fn parses_ethernet_ipv4_tcp() {
        let pkt = eth_ipv4_tcp(b"hello", tcp_flags::SYN);
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions::default()));
        assert_eq!(p.ip_version, 4);
        assert_eq!(p.ip_proto, ip_proto::TCP);
        assert_eq!((p.src_port, p.dst_port), (1234, 80));
        assert_eq!(p.payload_len, 5);
        assert_eq!(p.payload_offset, 54);
        assert_eq!(p.tcp.flags, tcp_flags::SYN);
        assert_eq!(p.ip_len, 45);
    }

    #[test]
    fn padding_is_not_payload_and_snaplen_truncation_is_not_an_error() {
        let mut pkt = eth_ipv4_tcp(b"", tcp_flags::ACK);
        pkt.extend_from_slice(&[0; 6]); // Ethernet padding to 60 bytes
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions::default()));
        assert_eq!(p.payload_len, 0);
        let full = eth_ipv4_tcp(&[7; 100], tcp_flags::ACK);
        let p = ip_of(parse_frame(&full[..60], full.len() as u32, LinkType::Ethernet, ParseOptions::default()));
        assert_eq!(p.payload_len, 100, "declared length survives a snaplen cut");
        // A header claiming more than the frame carried on the wire: the frame's end wins.
        let p = ip_of(parse(&full[..60], LinkType::Ethernet, ParseOptions::default()));
        assert_eq!((p.payload_len, p.ip_len), (6, 140));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let pkt = eth_ipv4_tcp(b"payload", tcp_flags::ACK);
        for cut in 0..54 {
            let r = parse(&pkt[..cut], LinkType::Ethernet, ParseOptions::default());
            assert!(r.is_err(), "cut at {cut} parsed as {r:?}");
        }
    }

    #[test]
    fn oversized_header_lengths_are_refused() {
        let mut pkt = eth_ipv4_tcp(b"", 0);
        pkt[14] = 0x4f; // IHL 60 bytes: options beyond the packet
        assert_eq!(parse(&pkt, LinkType::Ethernet, ParseOptions::default()), Err(ParseError::TruncatedIp));
        let mut pkt = eth_ipv4_tcp(b"", 0);
        pkt[14 + 20 + 12] = 0xf0; // TCP data offset 60 > IP payload 20
        assert_eq!(parse(&pkt, LinkType::Ethernet, ParseOptions::default()), Err(ParseError::BadTcpDataOffset));
        let mut pkt = eth_ipv4_tcp(b"", 0);
        pkt[14] = 0x44; // IHL 16 bytes
        assert_eq!(parse(&pkt, LinkType::Ethernet, ParseOptions::default()), Err(ParseError::BadIpv4HeaderLength));
        let mut pkt = eth_ipv4_tcp(b"", 0);
        pkt[16..18].copy_from_slice(&10u16.to_be_bytes()); // total length below the header
        assert_eq!(parse(&pkt, LinkType::Ethernet, ParseOptions::default()), Err(ParseError::BadIpv4TotalLength));
    }

    #[test]
    fn vlan_stacks_are_bounded() {
        let inner = eth_ipv4_tcp(b"", 0);
        let mut pkt = inner[..12].to_vec();
        for _ in 0..3 {
            pkt.extend_from_slice(&ethertype::VLAN.to_be_bytes());
            pkt.extend_from_slice(&42u16.to_be_bytes());
        }
        pkt.extend_from_slice(&inner[12..]);
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions::default()));
        assert_eq!((p.vlan, p.vlan_tags), (42, 3));
        let mut deep = inner[..12].to_vec();
        for _ in 0..MAX_VLAN_TAGS + 1 {
            deep.extend_from_slice(&ethertype::VLAN.to_be_bytes());
            deep.extend_from_slice(&1u16.to_be_bytes());
        }
        deep.extend_from_slice(&inner[12..]);
        assert_eq!(parse(&deep, LinkType::Ethernet, ParseOptions::default()), Err(ParseError::TooManyVlanTags));
    }

    #[test]
    fn non_ip_frames_are_reported_not_refused() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp, LinkType::Ethernet, ParseOptions::default()), Ok(Packet::NonIp { ethertype: 0x0806 }));
    }

    #[test]
    fn a_broken_tunnel_payload_leaves_the_outer_packet() {
        // UDP to the VXLAN port with the I flag, but no room for an inner Ethernet header.
        let mut pkt = eth_ipv4_tcp(b"", 0);
        pkt.truncate(34);
        pkt[14 + 9] = ip_proto::UDP;
        pkt.extend_from_slice(&[0x12, 0x34, 0x12, 0xb5, 0, 16, 0, 0]); // ports 4660 -> 4789, length 16
        pkt.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
        let ip_len = (pkt.len() - 14) as u16;
        pkt[16..18].copy_from_slice(&ip_len.to_be_bytes());
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions::default()));
        assert!(!p.tunnelled);
        assert_eq!((p.ip_proto, p.dst_port, p.payload_len), (ip_proto::UDP, 4789, 8));
    }

    #[test]
    fn zero_lengths_from_segmentation_offload_use_the_frame() {
        let mut pkt = eth_ipv4_tcp(&[1; 3000], tcp_flags::ACK);
        pkt[16..18].copy_from_slice(&0u16.to_be_bytes());
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions::default()));
        assert_eq!((p.ip_len, p.payload_len), (3040, 3000));
    }

    #[test]
    fn ipv4_in_ipv4_reports_the_inner_header() {
        let outer = eth_ipv4_tcp(b"xy", 0);
        let mut pkt = outer[..34].to_vec();
        pkt[14 + 9] = ip_proto::IPIP;
        let inner_ip = &outer[14..];
        let total = 20 + inner_ip.len();
        pkt[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        pkt[14 + 12..14 + 16].copy_from_slice(&[192, 0, 2, 1]);
        pkt.extend_from_slice(inner_ip);
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions::default()));
        assert!(p.tunnelled);
        assert_eq!(&p.src[..4], &[10, 0, 0, 1]);
        assert_eq!(p.payload_len, 2);
        let p = ip_of(parse(&pkt, LinkType::Ethernet, ParseOptions { decap_tunnels: false }));
        assert!(!p.tunnelled);
        assert_eq!(p.ip_proto, ip_proto::IPIP);
    }
}
