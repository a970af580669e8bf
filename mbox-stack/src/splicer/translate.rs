//! One frame rewritten in place into the other connection of a splice: the headers are found
//! and checked first, then every field is written and both checksums moved by the words that
//! changed (RFC 1624 equation 3, [`checksum::update`]); the payload is neither read nor copied.
//!
//! Frames: Ethernet, untagged or with up to two VLAN tags (kept as they are); IPv4 with or
//! without options (not a fragment) or IPv6 with TCP as the next header (no extension
//! headers); TCP with any options. Padding after the IP packet is left alone. Checksums are
//! not verified (the port did, or the receiver will): a wrong one stays wrong by the same
//! amount, so the receiver still discards the segment.

use super::map::{Addrs, Rewrite, SpliceMap};
use super::options;
use super::{Dir, SpliceError};
use crate::wire::ethernet::{ethertype, EthernetAddress, VlanTags};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
use crate::wire::{checksum, get16, get32, ip_proto, put16, put32, WireError};

/// What [`translate`] did to a frame: the segment as it now is, for the caller's teardown
/// tracking (FIN, RST) and for NFs that read the payload in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translated {
    /// The TCP flags ([`crate::wire::tcp_flags`]), unchanged.
    pub flags: u8,
    /// SEQ as written.
    pub seq: u32,
    /// ACK as written (as it was when the ACK flag is not set).
    pub ack: u32,
    /// The window field as written.
    pub window: u16,
    /// (TSval, TSecr) as written, of the last timestamps option (the one a receiver reads).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks found (shifted when the ACK flag and [`Rewrite::shift_sack`] are set).
    pub sack_blocks: u8,
    /// Where the TCP header starts in the frame.
    pub tcp_offset: usize,
    /// Where the TCP payload starts in the frame.
    pub payload_offset: usize,
    /// Bytes of TCP payload.
    pub payload_len: usize,
}

impl Translated {
    pub fn is_syn(&self) -> bool {
        self.flags & SYN != 0
    }

    pub fn is_fin(&self) -> bool {
        self.flags & FIN != 0
    }

    pub fn is_rst(&self) -> bool {
        self.flags & RST != 0
    }

    pub fn has_ack(&self) -> bool {
        self.flags & ACK != 0
    }

    /// The sequence space the segment takes: its payload, and one each for SYN and FIN
    /// (RFC 9293 3.4: SEG.LEN).
    pub fn seq_len(&self) -> u32 {
        self.payload_len as u32 + u32::from(self.is_syn()) + u32::from(self.is_fin())
    }
}

/// Rewrites `frame`, a segment travelling `dir`, in place with `map`'s rewrite for that
/// direction. On an error the frame is as it was (nothing is written before everything is
/// checked).
#[inline]
pub fn translate(map: &SpliceMap, dir: Dir, frame: &mut [u8]) -> Result<Translated, SpliceError> {
    map.rewrite(dir).apply(frame)
}

/// Writes the Ethernet addresses of `frame` (the caller's, from its neighbour tables).
pub fn set_macs(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) -> Result<(), SpliceError> {
    let Some(header) = frame.get_mut(..12) else { return Err(WireError::Truncated("Ethernet header").into()) };
    header[..6].copy_from_slice(&dst.0);
    header[6..].copy_from_slice(&src.0);
    Ok(())
}

/// Where a frame's headers are, found and checked before anything is written.
struct Layout {
    l3: usize,
    ipv4: bool,
    tcp: usize,
    header_len: usize,
    segment_end: usize,
    options: options::Found,
}

fn locate(frame: &[u8]) -> Result<Layout, SpliceError> {
    let (eth, _, l3) = VlanTags::parse_header(frame)?;
    let (ipv4, tcp, segment_end) = match eth.ethertype {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(&frame[l3..])?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Err(SpliceError::Fragment);
            }
            if ip.protocol() != ip_proto::TCP {
                return Err(SpliceError::NotTcp(ip.protocol()));
            }
            (true, l3 + ip.header_len(), l3 + usize::from(ip.total_len()))
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(&frame[l3..])?;
            if ip.next_header() != ip_proto::TCP {
                return Err(SpliceError::NotTcp(ip.next_header()));
            }
            (false, l3 + ipv6::HEADER_LEN, l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        }
        other => return Err(SpliceError::NotIp(other)),
    };
    let segment = TcpPacket::new_checked(&frame[tcp..segment_end])?;
    let options = options::scan(segment.options())?;
    Ok(Layout { l3, ipv4, tcp, header_len: segment.header_len(), segment_end, options })
}

/// A 32-bit field at `at` moved by `delta`: written, and its checksum term added to `sum`.
#[inline(always)]
fn shift32(frame: &mut [u8], at: usize, delta: u32, sum: &mut u64) -> u32 {
    let old = get32(frame, at);
    let new = old.wrapping_add(delta);
    put32(frame, at, new);
    *sum += checksum::delta32(old, new);
    new
}

/// [`shift32`] for a field in the options, `odd` when it starts at an odd offset of the
/// segment (options need not be aligned, RFC 9293 3.1). There each byte adds into the other
/// half of a 16-bit word than it would at an even offset: the term is the even one times 2^8,
/// modulo 2^16 - 1 a byte swap of its folded value (RFC 1071 2(B), byte order independence).
#[inline(always)]
fn shift32_in_options(frame: &mut [u8], at: usize, odd: bool, delta: u32, sum: &mut u64) -> u32 {
    if !odd {
        return shift32(frame, at, delta, sum);
    }
    let mut term = 0;
    let new = shift32(frame, at, delta, &mut term);
    *sum += u64::from(checksum::fold(term).rotate_left(8));
    new
}

/// A 16-bit field at `at` set to `new`, its checksum term added to `sum`.
#[inline(always)]
fn set16(frame: &mut [u8], at: usize, new: u16, sum: &mut u64) {
    *sum += checksum::delta16(get16(frame, at), new);
    put16(frame, at, new);
}

/// A 16-byte IPv6 address at `at` set to `new`, its checksum terms added to `sum`.
#[inline(always)]
fn set_addr16(frame: &mut [u8], at: usize, new: &[u8; 16], sum: &mut u64) {
    for (i, word) in new.chunks_exact(2).enumerate() {
        set16(frame, at + 2 * i, u16::from_be_bytes([word[0], word[1]]), sum);
    }
}

impl Rewrite {
    /// Rewrites one frame in place (see [`translate`], which picks the direction's rewrite).
    pub fn apply(&self, frame: &mut [u8]) -> Result<Translated, SpliceError> {
        let at = locate(frame)?;
        if at.ipv4 != self.tuple.addrs.is_ipv4() {
            return Err(SpliceError::FamilyMismatch);
        }
        // Nothing is refused from here on.
        let mut ip_sum = 0u64;
        let mut tcp_sum = 0u64;
        match self.tuple.addrs {
            Addrs::V4 { src, dst } => {
                for (field, addr) in [(12, src), (16, dst)] {
                    let old = get32(frame, at.l3 + field);
                    let new = u32::from(addr);
                    put32(frame, at.l3 + field, new);
                    ip_sum += checksum::delta32(old, new);
                }
                // The pseudo-header's addresses changed by the same words.
                tcp_sum += ip_sum;
            }
            Addrs::V6 { src, dst } => {
                set_addr16(frame, at.l3 + 8, &src.octets(), &mut tcp_sum);
                set_addr16(frame, at.l3 + 24, &dst.octets(), &mut tcp_sum);
            }
        }
        let t = at.tcp;
        set16(frame, t, self.tuple.src_port, &mut tcp_sum);
        set16(frame, t + 2, self.tuple.dst_port, &mut tcp_sum);
        let flags = frame[t + 13];
        let acks = flags & ACK != 0;
        let seq = shift32(frame, t + 4, self.seq_delta, &mut tcp_sum);
        let ack = if acks { shift32(frame, t + 8, self.ack_delta, &mut tcp_sum) } else { get32(frame, t + 8) };
        // RFC 7323 2.2: a SYN's window is never scaled.
        let mut window = get16(frame, t + 14);
        if flags & SYN == 0 {
            window = self.window.apply(window);
            set16(frame, t + 14, window, &mut tcp_sum);
        }
        let options = t + tcp::HEADER_LEN;
        let mut timestamps = None;
        // The options start 20 bytes into the segment: an option's offset in them has the
        // parity of its offset in the segment.
        for ts in at.options.timestamps() {
            let odd = ts % 2 == 1;
            let value = shift32_in_options(frame, options + ts, odd, self.ts_val_delta, &mut tcp_sum);
            let echo = if acks {
                shift32_in_options(frame, options + ts + 4, odd, self.ts_ecr_delta, &mut tcp_sum)
            } else {
                get32(frame, options + ts + 4)
            };
            timestamps = Some((value, echo));
        }
        if acks && self.shift_sack {
            for edge in at.options.sack_edges() {
                shift32_in_options(frame, options + edge, edge % 2 == 1, self.ack_delta, &mut tcp_sum);
            }
        }
        let check = get16(frame, t + 16);
        put16(frame, t + 16, checksum::update(check, tcp_sum));
        if at.ipv4 {
            let check = get16(frame, at.l3 + 10);
            put16(frame, at.l3 + 10, checksum::update(check, ip_sum));
        }
        Ok(Translated {
            flags,
            seq,
            ack,
            window,
            timestamps,
            sack_blocks: at.options.sack_blocks() as u8,
            tcp_offset: t,
            payload_offset: t + at.header_len,
            payload_len: at.segment_end - t - at.header_len,
        })
    }
}
