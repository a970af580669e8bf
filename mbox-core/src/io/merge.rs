//! Many captures into one Ethernet pcap that any tool reads (`mbox merge`): an input on which to
//! compare mbox with Suricata or ndpiReader. Every packet is re-framed as Ethernet (the captures
//! come with several link types; a pcap has one), the captures are read `repeat` times, each
//! pass's IP addresses are moved (so that a pass makes new flows rather than continue the
//! previous pass's), and each capture is moved in time to follow the one before (`retime`).
//!
//! Moving an address changes the IPv4 header checksum and the TCP/UDP checksum; both are
//! updated (RFC 1624), so checksum-validating tools still accept the packets. Tunnelled packets
//! keep their inner addresses.

use super::capture::{CaptureError, PcapWriter};
use super::replay::Captures;
use crate::config::InputConfig;
use mbox_stack::wire::{checksum, ip_proto, parse_frame, LinkType, Packet, ParseOptions, Parsed};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to merge.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub repeat: u32,
    /// Pause between one capture's last packet and the next capture's first.
    pub retime: Duration,
    /// Move each pass's addresses.
    pub remap: bool,
}

/// What was written and what could not be.
#[derive(Debug, Default, Clone, Copy)]
pub struct MergeReport {
    pub packets: u64,
    pub bytes: u64,
    /// Non-IP frames of link types other than Ethernet (nothing to re-frame them as).
    pub skipped_non_ip: u64,
    /// Frames the parser refused; written unchanged when already Ethernet, else skipped.
    pub malformed: u64,
}

/// Ethernet addresses of the re-framed packets (locally administered).
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Merges `captures` into `out`.
pub fn merge(captures: &[PathBuf], opts: &MergeOptions, out: &Path) -> Result<MergeReport, CaptureError> {
    let input = InputConfig { pcap: captures.to_vec(), repeat: opts.repeat.max(1), retime: Some(opts.retime), ..InputConfig::default() };
    let mut source = Captures::open(&input)?;
    let mut writer = PcapWriter::create(out, LinkType::Ethernet)?;
    let mut report = MergeReport::default();
    let (mut buf, mut frame) = (Vec::new(), Vec::new());
    while let Some((link, wire_len, ts)) = source.next(&mut buf)? {
        let pass = source.pass();
        let parsed = parse_frame(&buf, wire_len, link, ParseOptions { decap_tunnels: false });
        let wire_len = match (parsed, link) {
            (Ok(Packet::Ip(p)), LinkType::Ethernet) => {
                frame.clear();
                frame.extend_from_slice(&buf);
                if opts.remap && pass > 0 {
                    remap(&mut frame, &p, pass);
                }
                wire_len
            }
            (Ok(Packet::Ip(p)), _) => {
                let l3 = (p.l3_offset as usize).min(buf.len());
                frame.clear();
                frame.extend_from_slice(&DST_MAC);
                frame.extend_from_slice(&SRC_MAC);
                frame.extend_from_slice(if p.ip_version == 4 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
                frame.extend_from_slice(&buf[l3..]);
                let mut moved = p;
                let shift = l3 as i64 - 14;
                moved.l3_offset = 14;
                moved.l4_offset = (i64::from(p.l4_offset) - shift) as u32;
                if opts.remap && pass > 0 {
                    remap(&mut frame, &moved, pass);
                }
                (i64::from(wire_len) - shift) as u32
            }
            (Ok(Packet::NonIp { .. }), LinkType::Ethernet) => {
                frame.clear();
                frame.extend_from_slice(&buf);
                wire_len
            }
            (Ok(Packet::NonIp { .. }), _) => {
                report.skipped_non_ip += 1;
                continue;
            }
            (Err(_), LinkType::Ethernet) => {
                report.malformed += 1;
                frame.clear();
                frame.extend_from_slice(&buf);
                wire_len
            }
            (Err(_), _) => {
                report.malformed += 1;
                continue;
            }
        };
        writer.write(ts, wire_len, &frame)?;
        report.packets += 1;
        report.bytes += u64::from(wire_len);
    }
    writer.finish()?;
    Ok(report)
}

/// Moves the outer IP header's addresses for pass `pass`: the last 16 bits of each address are
/// XORed with the pass number (a bijection, the same for source and destination, so both
/// directions of a flow stay one flow), and the checksums follow.
fn remap(frame: &mut [u8], p: &Parsed, pass: u32) {
    let key = (pass as u16).to_be_bytes();
    let l3 = p.l3_offset as usize;
    let (src_end, dst_end) = match p.ip_version {
        4 => (l3 + 16, l3 + 20),
        6 => (l3 + 24, l3 + 40),
        _ => return,
    };
    if frame.len() < dst_end {
        return;
    }
    // The L4 checksum (TCP and UDP cover the addresses), when its header is in this packet.
    let l4 = p.l4_offset as usize;
    let first_fragment = p.fragment.is_none_or(|f| f.offset == 0);
    let l4_sum = match p.ip_proto {
        ip_proto::TCP if p.has_l4_header() => Some(l4 + 16),
        ip_proto::UDP if p.has_l4_header() => Some(l4 + 6),
        // ICMPv6's checksum covers the addresses too (ICMPv4's does not).
        ip_proto::ICMPV6 if p.ip_version == 6 && first_fragment => Some(l4 + 2),
        _ => None,
    }
    .filter(|&at| at + 2 <= frame.len());
    // A zero UDP checksum means "none": leave it.
    let l4_sum = l4_sum.filter(|&at| !(p.ip_proto == ip_proto::UDP && frame[at] == 0 && frame[at + 1] == 0));
    for end in [src_end, dst_end] {
        let old = u16::from_be_bytes([frame[end - 2], frame[end - 1]]);
        let new = old ^ u16::from_be_bytes(key);
        frame[end - 2..end].copy_from_slice(&new.to_be_bytes());
        if p.ip_version == 4 {
            update_checksum(frame, l3 + 10, old, new);
        }
        if let Some(at) = l4_sum {
            update_checksum(frame, at, old, new);
            // A UDP checksum that comes out as 0 is sent as 0xffff (0 means "none").
            if p.ip_proto == ip_proto::UDP && frame[at..at + 2] == [0, 0] {
                frame[at..at + 2].copy_from_slice(&[0xff, 0xff]);
            }
        }
    }
}

/// Updates the Internet checksum at `at` for one 16-bit word changed from `old` to `new`.
fn update_checksum(frame: &mut [u8], at: usize, old: u16, new: u16) {
    let hc = u16::from_be_bytes([frame[at], frame[at + 1]]);
    frame[at..at + 2].copy_from_slice(&checksum::update16(hc, old, new).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Internet checksum of `data` (for checking the incremental updates).
    fn checksum(data: &[u8]) -> u16 {
        super::checksum::finish(super::checksum::sum(data))
    }

    #[test]
    fn remapped_packets_keep_valid_checksums() {
        // Ethernet + IPv4 + UDP with correct checksums.
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let payload = b"hello";
        let mut ip = vec![0x45, 0, 0, (20 + 8 + payload.len()) as u8, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 2, 3, 192, 168, 7, 9];
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut udp = vec![0x30, 0x39, 0, 53, 0, (8 + payload.len()) as u8, 0, 0];
        udp.extend_from_slice(payload);
        let pseudo = |ip: &[u8], udp: &[u8]| {
            let mut p = ip[12..20].to_vec();
            p.extend_from_slice(&[0, 17, 0, udp.len() as u8]);
            p.extend_from_slice(udp);
            checksum(&p)
        };
        let c = pseudo(&ip, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp);
        let Ok(Packet::Ip(p)) = parse_frame(&f, f.len() as u32, LinkType::Ethernet, ParseOptions::default()) else { panic!() };
        remap(&mut f, &p, 0x0102);
        let (ip, udp) = (&f[14..34], &f[34..]);
        assert_eq!(&ip[12..20], &[10, 1, 3, 1, 192, 168, 6, 11]);
        assert_eq!(checksum(ip), 0, "IPv4 header checksum");
        assert_eq!(pseudo(ip, udp), 0, "UDP checksum");
    }
}
