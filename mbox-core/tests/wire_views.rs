//! The typed wire views on every bundled capture: checksums computed by the views equal the
//! ones the sending kernels wrote, TCP headers read by the views agree with the dissector's,
//! and every captured TCP header emitted from its Repr reads back as the same Repr.

mod common;

use common::*;
use mbox_core::io::capture::CaptureReader;
use mbox_stack::wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6};
use mbox_stack::wire::ipv4::Ipv4Packet;
use mbox_stack::wire::tcp::{TcpPacket, TcpRepr};
use mbox_stack::wire::udp::UdpPacket;
use mbox_stack::wire::{ip_proto, parse_frame, Packet, ParseOptions, Parsed};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Checksums the views recomputed, against the captured ones.
#[derive(Default, Debug, Clone, Copy)]
struct Sums {
    equal: u64,
    /// Left to the NIC by a sender captured before it (checksum offload): the field holds zero
    /// or, for TCP/UDP, the folded pseudo-header sum the NIC starts from.
    offloaded: u64,
    /// Neither: captures whose addresses were anonymised, or crafted with bad checksums.
    other: u64,
}

impl Sums {
    fn count(&mut self, mine: u16, captured: u16, partial: Option<u16>) {
        if mine == captured {
            self.equal += 1;
        } else if captured == 0 || Some(captured) == partial {
            self.offloaded += 1;
        } else {
            self.other += 1;
        }
    }

    fn add(&mut self, other: Sums) {
        self.equal += other.equal;
        self.offloaded += other.offloaded;
        self.other += other.other;
    }
}

#[derive(Default, Debug)]
struct Tally {
    ipv4: Sums,
    tcp_v4: Sums,
    tcp_v6: Sums,
    udp: Sums,
    /// TCP headers read back from their emitted Repr, and headers with malformed options.
    tcp_round_trips: u64,
    tcp_bad_options: u64,
}

fn pseudo(p: &Parsed, len: usize) -> u64 {
    if p.ip_version == 4 {
        let a = |b: &[u8; 16]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        pseudo_header_v4(a(&p.src), a(&p.dst), p.ip_proto, len as u32)
    } else {
        pseudo_header_v6(Ipv6Addr::from(p.src), Ipv6Addr::from(p.dst), p.ip_proto, len as u32)
    }
}

fn check_packet(data: &[u8], p: &Parsed, tally: &mut Tally) {
    let l3 = p.l3_offset as usize;
    let ip_end = l3 + p.ip_len as usize;
    if ip_end > data.len() {
        return;
    }
    if p.ip_version == 4 {
        let mut packet = data[l3..ip_end].to_vec();
        let Ok(mut packet) = Ipv4Packet::new_checked(&mut packet[..]) else { return };
        let captured = packet.checksum();
        packet.fill_checksum();
        tally.ipv4.count(packet.checksum(), captured, None);
    }
    let segment = &data[p.l4_offset as usize..ip_end];
    let sum = pseudo(p, segment.len());
    match p.ip_proto {
        ip_proto::TCP => {
            let packet = TcpPacket::new_checked(segment).expect("the dissector accepted this header");
            let mut copy = segment.to_vec();
            let mut mine = TcpPacket::new_unchecked(&mut copy[..]);
            mine.fill_checksum(sum);
            let sums = if p.ip_version == 4 { &mut tally.tcp_v4 } else { &mut tally.tcp_v6 };
            sums.count(mine.checksum(), packet.checksum(), Some(fold(sum)));
            assert_eq!(packet.verify_checksum(sum), mine.checksum() == packet.checksum());
            assert_eq!(
                (packet.src_port(), packet.dst_port(), packet.seq_number(), packet.ack_number(), packet.window_len()),
                (p.src_port, p.dst_port, p.tcp.seq, p.tcp.ack, p.tcp.window),
                "the view and the dissector read the same header"
            );
            assert_eq!((packet.flags() & 0x3f, packet.payload().len()), (p.tcp.flags, p.payload_len as usize));
            let Ok(repr) = TcpRepr::parse(&packet) else {
                tally.tcp_bad_options += 1;
                return;
            };
            let mut out = vec![0u8; repr.buffer_len()];
            out[repr.header_len()..].copy_from_slice(packet.payload());
            let sum = pseudo(p, out.len());
            repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), sum);
            let back = TcpPacket::new_checked(&out[..]).unwrap();
            assert!(back.verify_checksum(sum));
            assert_eq!(TcpRepr::parse(&back).unwrap(), repr);
            tally.tcp_round_trips += 1;
        }
        ip_proto::UDP => {
            let Ok(packet) = UdpPacket::new_checked(segment) else { return };
            if packet.checksum() == 0 || usize::from(packet.len()) != segment.len() {
                return; // no checksum sent, or a length the IP header disagrees with
            }
            let mut copy = segment.to_vec();
            let mut mine = UdpPacket::new_unchecked(&mut copy[..]);
            mine.fill_checksum(sum);
            tally.udp.count(mine.checksum(), packet.checksum(), Some(fold(sum)));
        }
        _ => {}
    }
}

/// Share of `sums` where the views agree with the sender, among those the sender computed.
fn agreement(sums: Sums) -> f64 {
    sums.equal as f64 / (sums.equal + sums.other).max(1) as f64
}

#[test]
fn views_recompute_the_kernels_checksums_and_round_trip_every_captured_tcp_header() {
    let mut total = Tally::default();
    let mut captures: Vec<_> = std::fs::read_dir(pcaps()).unwrap().map(|e| e.unwrap().path()).collect();
    captures.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")));
    captures.sort();
    let mut buf = Vec::new();
    for path in &captures {
        let mut tally = Tally::default();
        let mut reader = CaptureReader::open(path).unwrap();
        while let Some(meta) = reader.next_packet(&mut buf).unwrap() {
            if buf.len() != meta.wire_len as usize {
                continue; // cut by a snaplen: no whole packet to sum
            }
            let Ok(Packet::Ip(p)) = parse_frame(&buf, meta.wire_len, meta.link, ParseOptions { decap_tunnels: false }) else {
                continue;
            };
            if p.fragment.is_none() {
                check_packet(&buf, &p, &mut tally);
            }
        }
        eprintln!("{}: {tally:?}", path.file_name().unwrap().to_string_lossy());
        total.ipv4.add(tally.ipv4);
        total.tcp_v4.add(tally.tcp_v4);
        total.tcp_v6.add(tally.tcp_v6);
        total.udp.add(tally.udp);
        total.tcp_round_trips += tally.tcp_round_trips;
        total.tcp_bad_options += tally.tcp_bad_options;
    }
    eprintln!("all: {total:?}");
    // Where a sender computed a checksum, the views compute the same one: the few that differ
    // come from captures anonymised or crafted after the fact.
    for (name, sums) in [("IPv4", total.ipv4), ("TCP/IPv4", total.tcp_v4), ("TCP/IPv6", total.tcp_v6), ("UDP", total.udp)] {
        assert!(sums.equal > 0, "{name}: no checksum to compare");
        assert!(agreement(sums) > 0.99, "{name}: {sums:?}");
    }
    // Every TCP header with well-formed options comes back from its Repr; malformed ones are
    // rare (an anonymised capture) and refused, not misread.
    assert!(total.tcp_round_trips > 10_000);
    assert!(total.tcp_bad_options * 1000 < total.tcp_round_trips, "{total:?}");
}
