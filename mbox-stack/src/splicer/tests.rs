//! Frames built with [`TcpFrame::emit`], spliced, and read back with their checksums verified;
//! each test names the rule it follows.

use super::map::MAX_WINDOW_SHIFT;
use super::*;
use crate::wire::ethernet::{ethertype, EthernetAddress, VlanTags};
use crate::wire::frame::{Checksums, IpRepr, TcpFrame};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::tcp::{SackBlocks, TcpOptions, TcpPacket, TcpRepr};
use crate::wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::wire::{checksum, ip_proto, WireError};
use std::net::{IpAddr, SocketAddr};

pub(super) const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
pub(super) const MBOX_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The module doc's worked example.
fn example_bind() -> Bind {
    Bind {
        client: sa("192.0.2.10:40000"),
        service: sa("198.51.100.1:80"),
        backend: sa("10.0.0.5:8080"),
        source: BackendSource::Snat(sa("10.0.0.1:61000")),
        client_isn: 1000,
        mbox_isn_to_client: 5000,
        backend_isn: 9000,
        mbox_isn_to_backend: 1000,
        clocks: TsClocks { client_syn_tsval: 700, mbox_syn_tsval: 700, mbox_tsval_to_client: 3_000_000, backend_syn_ack_tsval: 50 },
        window_scales: WindowScales { client_syn: Some(7), mbox_syn_ack: Some(9), mbox_syn: Some(7), backend_syn_ack: Some(2) },
    }
}

fn example() -> SpliceMap {
    SpliceMap::new(&example_bind()).unwrap()
}

/// A TCP header as values with no options.
pub(super) fn repr(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8, window: u16) -> TcpRepr {
    TcpRepr { src_port, dst_port, seq, ack, flags, window, urgent: 0, options: TcpOptions::default(), payload_len: 0 }
}

/// An Ethernet frame from `src` to `dst` with `tcp` (its `payload_len` set from `payload`),
/// tagged with `vlan`; `raw_options` (a multiple of 4 bytes, at most 40), when given, replace
/// `tcp.options` byte for byte, for layouts [`TcpOptions::emit`] does not write.
pub(super) fn build(
    src: SocketAddr,
    dst: SocketAddr,
    mut tcp: TcpRepr,
    raw_options: Option<&[u8]>,
    payload: &[u8],
    vlan: VlanTags,
) -> Vec<u8> {
    tcp.src_port = src.port();
    tcp.dst_port = dst.port();
    let mut body = Vec::new();
    if let Some(raw) = raw_options {
        assert!(raw.len() % 4 == 0 && raw.len() <= 40);
        tcp.options = TcpOptions::default();
        body.extend_from_slice(raw);
    }
    body.extend_from_slice(payload);
    tcp.payload_len = body.len();
    let frame =
        TcpFrame { src_mac: CLIENT_MAC, dst_mac: MBOX_MAC, vlan, ip: IpRepr::new(src.ip(), dst.ip(), ip_proto::TCP, 0, 64).unwrap(), tcp };
    let mut buf = vec![0u8; frame.len()];
    buf[frame.payload_offset()..].copy_from_slice(&body);
    frame.emit(&mut buf).unwrap();
    if let Some(raw) = raw_options {
        // The option bytes went in as payload: make them header, and sum again.
        let at = frame.l2_len() + frame.ip.header_len();
        let mut ip = frame.ip;
        ip.set_payload_len(buf.len() - at);
        let mut segment = TcpPacket::new_unchecked(&mut buf[at..]);
        segment.set_header_len(20 + raw.len());
        segment.fill_checksum(ip.pseudo_header());
    }
    buf
}

/// Reads a frame back, both checksums verified.
pub(super) fn read(frame: &[u8]) -> (TcpFrame, Vec<u8>) {
    let (f, payload) = TcpFrame::parse(frame, Checksums::Verify).expect("the spliced frame parses and its checksums verify");
    (f, payload.to_vec())
}

fn ts(value: u32, echo: u32) -> TcpOptions {
    TcpOptions { timestamps: Some((value, echo)), ..TcpOptions::default() }
}

/// RFC 9293 3.4: the client's data segment, in mbox's sequence space, reaches the backend in
/// the backend's (the worked example's first segment), from the SNAT address to the backend.
#[test]
fn a_data_segment_from_the_client_reaches_the_backend_rfc9293_3_4() {
    let map = example();
    let mut options = ts(710, 3_000_000);
    options.sack.push((5101, 5201));
    let tcp = TcpRepr { options, ..repr(0, 0, 1001, 5001, ACK | PSH, 502) };
    let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), tcp, None, b"GET / HTTP/1.1\r\n\r\n", VlanTags::NONE);
    let done = translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, payload) = read(&frame);
    assert_eq!((f.ip.src(), f.ip.dst()), (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 5])));
    assert_eq!((f.tcp.src_port, f.tcp.dst_port, f.tcp.seq, f.tcp.ack), (61000, 8080, 1001, 9001));
    assert_eq!(f.tcp.options.timestamps, Some((710, 50)));
    assert_eq!(f.tcp.options.sack.as_slice(), &[(9101, 9201)]);
    assert_eq!(f.tcp.window, 502, "both sides of this direction scale by 2^7");
    assert_eq!(payload, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!((f.src_mac, f.dst_mac), (CLIENT_MAC, MBOX_MAC), "MACs are the caller's");
    assert_eq!(
        done,
        Translated {
            flags: ACK | PSH,
            seq: 1001,
            ack: 9001,
            window: 502,
            timestamps: Some((710, 50)),
            sack_blocks: 1,
            tcp_offset: 34,
            payload_offset: 34 + f.tcp.header_len(),
            payload_len: 18,
        }
    );
    assert_eq!(&frame[done.payload_offset..][..done.payload_len], b"GET / HTTP/1.1\r\n\r\n");
}

/// RFC 9293 3.4 and RFC 7323 2.3: the backend's answer reaches the client in mbox's sequence
/// space and clock, from the service address, its window moved from scale 2 to scale 9.
#[test]
fn a_data_segment_from_the_backend_reaches_the_client_rfc9293_3_4() {
    let map = example();
    let tcp = TcpRepr { options: ts(60, 710), ..repr(0, 0, 9001, 1101, ACK | PSH, 1000) };
    let mut frame = build(sa("10.0.0.5:8080"), sa("10.0.0.1:61000"), tcp, None, &[0x55; 1400], VlanTags::NONE);
    let done = translate(&map, Dir::B2C, &mut frame).unwrap();
    let (f, payload) = read(&frame);
    assert_eq!((f.ip.src(), f.ip.dst()), (IpAddr::from([198, 51, 100, 1]), IpAddr::from([192, 0, 2, 10])));
    assert_eq!((f.tcp.src_port, f.tcp.dst_port, f.tcp.seq, f.tcp.ack, f.tcp.window), (80, 40000, 5001, 1101, 7));
    assert_eq!(f.tcp.options.timestamps, Some((3_000_010, 710)));
    assert_eq!(payload, vec![0x55; 1400]);
    assert_eq!((done.seq_len(), done.is_fin(), done.is_rst(), done.is_syn(), done.has_ack()), (1400, false, false, false, true));
}

/// RFC 9293 3.4: a pure ACK moves its SEQ and ACK and carries no payload.
#[test]
fn a_pure_ack_moves_only_its_sequence_numbers_rfc9293_3_4() {
    let map = example();
    let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1101, 6001, ACK, 300), None, b"", VlanTags::NONE);
    let done = translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, payload) = read(&frame);
    assert_eq!((f.tcp.seq, f.tcp.ack, f.tcp.window, f.tcp.flags), (1101, 10001, 300, ACK));
    assert!(payload.is_empty());
    assert_eq!((done.payload_len, done.seq_len(), done.timestamps, done.sack_blocks), (0, 0, None, 0));
}

/// RFC 9293 3.6: a FIN (no SYN) is shifted like data and reported, and takes one sequence
/// number.
#[test]
fn a_fin_is_shifted_and_reported_rfc9293_3_6() {
    let map = example();
    let tcp = TcpRepr { options: ts(90, 710), ..repr(0, 0, 9501, 1101, FIN | ACK, 1000) };
    let mut frame = build(sa("10.0.0.5:8080"), sa("10.0.0.1:61000"), tcp, None, b"bye", VlanTags::NONE);
    let done = translate(&map, Dir::B2C, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.seq, f.tcp.ack, f.tcp.flags), (5501, 1101, FIN | ACK));
    assert!(done.is_fin() && !done.is_syn());
    assert_eq!(done.seq_len(), 4, "three bytes and the FIN");
}

/// RFC 9293 3.10.7.1 / 3.5.3: a RST without ACK has its SEQ shifted and its ACK field (and a
/// TSecr) left as it is: neither means anything without the ACK flag. With ACK, both move.
#[test]
fn a_rst_without_ack_keeps_its_ack_field_rfc9293_3_5_3() {
    let map = example();
    let tcp = TcpRepr { options: ts(800, 1234), ..repr(0, 0, 1201, 77_777, RST, 0) };
    let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), tcp, None, b"", VlanTags::NONE);
    let done = translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.seq, f.tcp.ack, f.tcp.window, f.tcp.flags), (1201, 77_777, 0, RST));
    assert_eq!(f.tcp.options.timestamps, Some((800, 1234)), "TSecr kept without ACK");
    assert!(done.is_rst() && !done.has_ack());
    let tcp = TcpRepr { options: ts(800, 3_000_000), ..repr(0, 0, 1201, 5001, RST | ACK, 0) };
    let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), tcp, None, b"", VlanTags::NONE);
    translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.seq, f.tcp.ack, f.tcp.options.timestamps), (1201, 9001, Some((800, 50))));
}

/// RFC 2018 3: SACK blocks report the other side's bytes, so every edge moves by the ACK's
/// offset (four blocks alone, three beside timestamps); with `shift_sack` off they stay.
#[test]
fn sack_blocks_move_into_the_receivers_space_rfc2018_3() {
    let mut map = example();
    let mut options = TcpOptions::default();
    for i in 0..4u32 {
        options.sack.push((5101 + 1000 * i, 5601 + 1000 * i));
    }
    let tcp = TcpRepr { options, ..repr(0, 0, 1101, 5001, ACK, 300) };
    let client = (sa("192.0.2.10:40000"), sa("198.51.100.1:80"));
    let mut frame = build(client.0, client.1, tcp, None, b"", VlanTags::NONE);
    let done = translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    let want: Vec<(u32, u32)> = (0..4u32).map(|i| (9101 + 1000 * i, 9601 + 1000 * i)).collect();
    assert_eq!(f.tcp.options.sack.as_slice(), &want[..]);
    assert_eq!(done.sack_blocks, 4);
    // The backend's SACK of the client's bytes, under a bind whose SYN to the backend did not
    // carry the client's ISN (so that this direction's ACK offset is not 0).
    let mut bind = example_bind();
    bind.mbox_isn_to_backend = 700_000;
    let map2 = SpliceMap::new(&bind).unwrap();
    let mut options = ts(61, 710);
    options.sack.push((701_200, 701_300));
    options.sack.push((701_400, 701_500));
    options.sack.push((701_600, 701_700));
    let tcp = TcpRepr { options, ..repr(0, 0, 9001, 700_101, ACK, 1000) };
    let mut frame = build(sa("10.0.0.5:8080"), sa("10.0.0.1:61000"), tcp, None, b"", VlanTags::NONE);
    translate(&map2, Dir::B2C, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!(f.tcp.ack, 1101);
    assert_eq!(f.tcp.options.sack.as_slice(), &[(2200, 2300), (2400, 2500), (2600, 2700)]);
    // Not shifted when the caller says so.
    map.c2b.shift_sack = false;
    let mut options = TcpOptions::default();
    options.sack.push((5101, 5201));
    let mut frame = build(client.0, client.1, TcpRepr { options, ..repr(0, 0, 1101, 5001, ACK, 300) }, None, b"", VlanTags::NONE);
    translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.ack, f.tcp.options.sack.as_slice()), (9001, &[(5101, 5201)][..]));
}

/// RFC 7323 3.2 and 5.3: the backend's TSval reaches the client in the clock the client saw
/// from mbox, continued from mbox's last one (PAWS sees no step back), and the client's echo
/// goes back into the backend's clock; the client's TSval passes as it is.
#[test]
fn timestamps_move_between_the_two_clocks_rfc7323_3() {
    let map = example();
    let from_backend = build(
        sa("10.0.0.5:8080"),
        sa("10.0.0.1:61000"),
        TcpRepr { options: ts(50, 700), ..repr(0, 0, 9001, 1001, ACK, 1000) },
        None,
        b"",
        VlanTags::NONE,
    );
    let mut frame = from_backend.clone();
    translate(&map, Dir::B2C, &mut frame).unwrap();
    assert_eq!(read(&frame).0.tcp.options.timestamps, Some((3_000_000, 700)), "the backend's SYN-ACK TSval meets mbox's last");
    let mut frame = build(
        sa("192.0.2.10:40000"),
        sa("198.51.100.1:80"),
        TcpRepr { options: ts(720, 3_000_000), ..repr(0, 0, 1001, 5001, ACK, 502) },
        None,
        b"",
        VlanTags::NONE,
    );
    translate(&map, Dir::C2B, &mut frame).unwrap();
    assert_eq!(read(&frame).0.tcp.options.timestamps, Some((720, 50)));
    // Across the clock's wrap: the backend's TSval near 2^32.
    let mut bind = example_bind();
    bind.clocks.backend_syn_ack_tsval = u32::MAX - 5;
    let map = SpliceMap::new(&bind).unwrap();
    let mut frame = build(
        sa("10.0.0.5:8080"),
        sa("10.0.0.1:61000"),
        TcpRepr { options: ts(4, 700), ..repr(0, 0, 9001, 1001, ACK, 1000) },
        None,
        b"",
        VlanTags::NONE,
    );
    translate(&map, Dir::B2C, &mut frame).unwrap();
    assert_eq!(read(&frame).0.tcp.options.timestamps, Some((3_000_010, 700)));
}

/// RFC 7323 2.3: where the two connections' scales differ the window field is moved between
/// them, down (truncating, a small open window kept open at 1) and up (clamped at 0xffff);
/// a zero window stays zero.
#[test]
fn windows_rescale_down_and_up_and_stay_open_rfc7323_2_3() {
    let down = WindowRescale::new(2, 9);
    assert_eq!((down.apply(1000), down.apply(128), down.apply(127), down.apply(1), down.apply(0)), (7, 1, 1, 1, 0));
    assert_eq!(down.apply(0xffff), 0x1ff);
    let up = WindowRescale::new(9, 2);
    assert_eq!((up.apply(7), up.apply(0x1ff), up.apply(0x200), up.apply(0xffff), up.apply(0)), (896, 0xff80, 0xffff, 0xffff, 0));
    assert!(WindowRescale::new(5, 5).is_identity() && WindowRescale::new(5, 5).apply(12345) == 12345);
    assert_eq!(WindowRescale::new(200, 0), WindowRescale::new(MAX_WINDOW_SHIFT, 0), "RFC 7323 2.3: at most 14");
    assert_eq!((WindowRescale::new(14, 0).apply(3), WindowRescale::new(14, 0).apply(4)), (0xc000, 0xffff));
    assert_eq!(WindowRescale::new(0, 14).apply(3), 1);
    // In frames: the backend (scale 2) to the client (scale 9), and a bind the other way.
    let map = example();
    for (window, want) in [(1000u16, 7u16), (100, 1), (0, 0)] {
        let mut frame = build(sa("10.0.0.5:8080"), sa("10.0.0.1:61000"), repr(0, 0, 9001, 1001, ACK, window), None, b"", VlanTags::NONE);
        let done = translate(&map, Dir::B2C, &mut frame).unwrap();
        assert_eq!((read(&frame).0.tcp.window, done.window), (want, want), "window {window}");
    }
    let mut bind = example_bind();
    bind.window_scales = WindowScales { client_syn: Some(7), mbox_syn_ack: Some(7), mbox_syn: Some(7), backend_syn_ack: Some(10) };
    let map = SpliceMap::new(&bind).unwrap();
    let mut frame = build(sa("10.0.0.5:8080"), sa("10.0.0.1:61000"), repr(0, 0, 9001, 1001, ACK, 100), None, b"", VlanTags::NONE);
    translate(&map, Dir::B2C, &mut frame).unwrap();
    assert_eq!(read(&frame).0.tcp.window, 800);
}

/// RFC 7323 2.2: scaling is in effect on a connection only where both of its SYNs carried the
/// option; otherwise windows are unscaled both ways.
#[test]
fn only_both_syns_enable_scaling_rfc7323_2_2() {
    let mut bind = example_bind();
    bind.window_scales.backend_syn_ack = None;
    let s = bind.window_scales.effective();
    assert_eq!((s.client, s.mbox_to_client, s.mbox_to_backend, s.backend), (7, 9, 0, 0));
    let map = SpliceMap::new(&bind).unwrap();
    assert_eq!((map.c2b.window, map.b2c.window), (WindowRescale::new(7, 0), WindowRescale::new(0, 9)));
    bind.window_scales = WindowScales { client_syn: None, mbox_syn_ack: Some(9), mbox_syn: None, backend_syn_ack: Some(3) };
    let map = SpliceMap::new(&bind).unwrap();
    assert!(map.c2b.window.is_identity() && map.b2c.window.is_identity());
}

/// RFC 7323 2.2: the window of a SYN is never scaled. The held client SYN, spliced, is mbox's
/// SYN to the backend: the client's ISN and options, the SNAT source, the window as sent.
#[test]
fn a_syn_keeps_its_window_and_options_rfc7323_2_2() {
    // A backend that will not scale: the client's windows are moved from 2^7 to 2^0.
    let mut bind = example_bind();
    bind.window_scales.backend_syn_ack = None;
    let map = SpliceMap::new(&bind).unwrap();
    assert!(!map.c2b.window.is_identity());
    let options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((700, 0)),
        sack: SackBlocks::default(),
    };
    let mut frame = build(
        sa("192.0.2.10:40000"),
        sa("198.51.100.1:80"),
        TcpRepr { options, ..repr(0, 0, 1000, 0, SYN, 64240) },
        None,
        b"",
        VlanTags::NONE,
    );
    let done = translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!(
        (f.ip.src(), f.tcp.src_port, f.ip.dst(), f.tcp.dst_port),
        (IpAddr::from([10, 0, 0, 1]), 61000, IpAddr::from([10, 0, 0, 5]), 8080)
    );
    assert_eq!((f.tcp.seq, f.tcp.ack, f.tcp.window, f.tcp.flags), (1000, 0, 64240, SYN));
    assert_eq!(f.tcp.options, options, "MSS, window scale, SACK-permitted as the client sent them; TSecr 0 kept without ACK");
    assert_eq!(done.seq_len(), 1);
}

/// RFC 9293 3.4: sequence numbers are modulo 2^32; SEQ, ACK and SACK edges cross the wrap.
#[test]
fn sequence_numbers_wrap_across_2_32_rfc9293_3_4() {
    let mut bind = example_bind();
    bind.client_isn = 0xffff_ff00;
    bind.mbox_isn_to_backend = 0x0000_0100;
    bind.mbox_isn_to_client = 0xffff_fff0;
    bind.backend_isn = 0x7fff_ffff;
    let map = SpliceMap::new(&bind).unwrap();
    assert_eq!(map.c2b.seq_delta, 0x200);
    assert_eq!(map.b2c.ack_delta, 0x200u32.wrapping_neg());
    let mut options = TcpOptions::default();
    options.sack.push((0xffff_fff8, 0x0000_0010));
    let tcp = TcpRepr { options, ..repr(0, 0, 0xffff_fff0, 0xffff_fff1, ACK, 10) };
    let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), tcp, None, b"x", VlanTags::NONE);
    translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.seq, f.tcp.ack), (0x0000_01f0, 0x8000_0000));
    assert_eq!(f.tcp.options.sack.as_slice(), &[(0x8000_0007, 0x8000_001f)]);
    let mut frame =
        build(sa("10.0.0.5:8080"), sa("10.0.0.1:61000"), repr(0, 0, 0x8000_0010, 0x0000_01f1, ACK, 10), None, b"y", VlanTags::NONE);
    translate(&map, Dir::B2C, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.seq, f.tcp.ack), (0x0000_0001, 0xffff_fff1));
}

/// RFC 8200 8.1: IPv6 has no header checksum; the TCP checksum covers all 32 address bytes
/// of the pseudo-header, all of them rewritten here.
#[test]
fn ipv6_frames_rewrite_all_address_bytes_rfc8200_8_1() {
    let bind = Bind {
        client: sa("[2001:db8:c::10]:40000"),
        service: sa("[2001:db8:5e::1]:443"),
        backend: sa("[fd00::5]:8443"),
        source: BackendSource::Snat(sa("[fd00::ffff:1]:61000")),
        ..example_bind()
    };
    let map = SpliceMap::new(&bind).unwrap();
    let mut options = ts(710, 3_000_000);
    options.sack.push((5101, 5201));
    let tcp = TcpRepr { options, ..repr(0, 0, 1001, 5001, ACK | PSH, 502) };
    let mut frame = build(bind.client, bind.service, tcp, None, &[7; 999], VlanTags::NONE);
    translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, payload) = read(&frame);
    assert_eq!((f.ip.src(), f.ip.dst()), ("fd00::ffff:1".parse::<IpAddr>().unwrap(), "fd00::5".parse::<IpAddr>().unwrap()));
    assert_eq!((f.tcp.src_port, f.tcp.dst_port, f.tcp.seq, f.tcp.ack), (61000, 8443, 1001, 9001));
    assert_eq!((f.tcp.options.timestamps, f.tcp.options.sack.as_slice()), (Some((710, 50)), &[(9101, 9201)][..]));
    assert_eq!(payload, vec![7; 999]);
    // And back.
    let mut frame = build(bind.backend, sa("[fd00::ffff:1]:61000"), repr(0, 0, 9001, 1101, ACK, 1000), None, b"ok", VlanTags::NONE);
    translate(&map, Dir::B2C, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.ip.src(), f.tcp.src_port, f.ip.dst(), f.tcp.dst_port), (bind.service.ip(), 443, bind.client.ip(), 40000));
}

/// IEEE 802.1Q / 802.1ad: one tag or two (QinQ), kept as they are; the headers behind them
/// are found and rewritten.
#[test]
fn vlan_tagged_frames_keep_their_tags_ieee_802_1q() {
    let map = example();
    for tags in [
        &[(ethertype::VLAN, 0x2064)][..],
        &[(ethertype::QINQ, 7), (ethertype::VLAN, 100)][..],
        &[(ethertype::QINQ_OLD, 1), (ethertype::VLAN, 2)][..],
    ] {
        let vlan = VlanTags::new(tags).unwrap();
        let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1001, 5001, ACK, 502), None, b"tagged", vlan);
        let done = translate(&map, Dir::C2B, &mut frame).unwrap();
        let (f, payload) = read(&frame);
        assert_eq!(f.vlan, vlan);
        assert_eq!((f.ip.dst(), f.tcp.ack, payload.as_slice()), (IpAddr::from([10, 0, 0, 5]), 9001, &b"tagged"[..]));
        assert_eq!(done.tcp_offset, 14 + vlan.len() + 20);
    }
}

/// RFC 791 3.1 and RFC 1624: the IPv4 header checksum follows the addresses (and nothing
/// else of the header changes), options in the header included; Ethernet padding after the
/// packet is left alone.
#[test]
fn the_ipv4_header_checksum_stays_valid_rfc1624() {
    let map = example();
    let frame0 = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1001, 5001, ACK, 502), None, b"", VlanTags::NONE);
    let mut frame = frame0.clone();
    frame.extend_from_slice(&[0xee; 6]); // padding to 60 bytes
    translate(&map, Dir::C2B, &mut frame).unwrap();
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(&frame[14..24], &frame0[14..24], "version to TTL and protocol as they were");
    assert_eq!(&frame[frame.len() - 6..], &[0xee; 6]);
    // A header with 4 bytes of options (NOP NOP NOP EOL): the TCP header is found behind them.
    let mut with = frame0[..14].to_vec();
    let mut ip = frame0[14..34].to_vec();
    ip[0] = 0x46;
    let total = u16::from_be_bytes([ip[2], ip[3]]) + 4;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[1, 1, 1, 0]);
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::finish(checksum::sum(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    with.extend_from_slice(&ip);
    with.extend_from_slice(&frame0[34..]);
    let done = translate(&map, Dir::C2B, &mut with).unwrap();
    assert_eq!(done.tcp_offset, 38);
    let (f, _) = read(&with);
    assert_eq!((f.ip.dst(), f.tcp.dst_port, f.tcp.ack), (IpAddr::from([10, 0, 0, 5]), 8080, 9001));
    assert_eq!(&with[34..38], &[1, 1, 1, 0], "IP options kept");
}

/// RFC 1624: checksums are moved, not recomputed: a segment whose checksum was wrong is still
/// wrong by the same amount (the receiver drops it as it would have), and splicing it back
/// gives the original bytes.
#[test]
fn a_wrong_checksum_stays_wrong_rfc1624() {
    let map = example();
    let original = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1001, 5001, ACK, 502), None, b"data", VlanTags::NONE);
    let mut frame = original.clone();
    let last = frame.len() - 1;
    frame[last] ^= 0x01; // payload corrupted after the sender's checksum
    let corrupted = frame.clone();
    translate(&map, Dir::C2B, &mut frame).unwrap();
    assert!(matches!(TcpFrame::parse(&frame, Checksums::Verify), Err(WireError::Malformed("TCP header", _))));
    assert!(TcpFrame::parse(&frame, Checksums::Trust).is_ok());
    let back = map.c2b.inverse(Tuple::new(sa("192.0.2.10:40000"), sa("198.51.100.1:80")).unwrap());
    back.apply(&mut frame).unwrap();
    assert_eq!(frame, corrupted);
}

/// RFC 9293 3.1 (MUST-7): an option with an illegal length is handled, not a crash: the
/// segment is refused whole, its bytes untouched, with where the option is.
#[test]
fn malformed_options_refuse_the_frame_untouched_rfc9293_must_7() {
    let map = example();
    #[rustfmt::skip]
    let cases: [(&[u8], u8); 9] = [
        (&[1, 1, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0], 2),        // timestamps of length 9
        (&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 5, 9, 0, 0, 0, 0, 0, 0, 0, 1], 10), // SACK of length 9
        (&[5, 2, 0, 0], 0),                                 // SACK with no block
        (&[1, 1, 1, 30], 3),                                // kind without a length
        (&[30, 0, 0, 0], 0),                                // length 0
        (&[30, 1, 0, 0], 0),                                // length 1
        (&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 30, 4], 10),      // past the header
        (&[2, 3, 5, 1], 0),                                 // MSS of length 3
        (&[1, 3, 4, 7, 1, 4, 3, 0], 1),                     // window scale of length 4
    ];
    for (options, at) in cases {
        let mut frame =
            build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1001, 5001, ACK, 502), Some(options), b"p", VlanTags::NONE);
        let before = frame.clone();
        assert_eq!(translate(&map, Dir::C2B, &mut frame), Err(SpliceError::MalformedOption { at }), "{options:?}");
        assert_eq!(frame, before, "{options:?}: untouched");
        // The views refuse the same options.
        assert!(TcpFrame::parse(&before, Checksums::Verify).is_err(), "{options:?}");
    }
}

/// RFC 9293 3.1: unknown kinds are skipped whatever their contents, NOP padding anywhere,
/// options in any order and alignment (here the SACK edges start at odd offsets, where each
/// byte adds into the other half of a checksum word: RFC 1071 2(B)); bytes after end-of-list
/// are padding, not read.
#[test]
fn unknown_options_and_odd_layouts_pass_as_they_are_rfc9293_3_1() {
    let map = example();
    #[rustfmt::skip]
    let options: [u8; 40] = [
        30, 6, 0, 0, 0x13, 0x88,               // an unknown kind (MPTCP-like) with 4 bytes
        8, 10, 0, 0, 2, 0xc6, 0, 0x2d, 0xc6, 0xc0, // timestamps 710, 3,000,000 (unaligned)
        1,                                     // a NOP
        5, 10, 0, 0, 0x13, 0xed, 0, 0, 0x14, 0x51, // SACK 5101-5201 (unaligned)
        4, 2,                                  // SACK-permitted out of place
        0,                                     // end of list, then garbage
        8, 10, 0, 0, 0, 1, 0, 0, 0, 2,
    ];
    let mut frame =
        build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1001, 5001, ACK, 502), Some(&options), b"q", VlanTags::NONE);
    let before = frame.clone();
    let done = translate(&map, Dir::C2B, &mut frame).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.tcp.options.timestamps, f.tcp.options.sack.as_slice()), (Some((710, 50)), &[(9101, 9201)][..]));
    assert_eq!((done.timestamps, done.sack_blocks), (Some((710, 50)), 1));
    let opts = 34 + 20;
    assert_eq!(&frame[opts..opts + 6], &before[opts..opts + 6], "the unknown option untouched");
    assert_eq!(&frame[opts + 29..opts + 40], &before[opts + 29..opts + 40], "after end-of-list untouched");
}

/// Frames that are not TCP over IPv4/IPv6 on Ethernet, or cut short anywhere, are typed
/// errors and are left as they were; no length panics.
#[test]
fn other_and_truncated_frames_are_typed_errors() {
    let map = example();
    let good = build(
        sa("192.0.2.10:40000"),
        sa("198.51.100.1:80"),
        TcpRepr { options: ts(1, 2), ..repr(0, 0, 1, 2, ACK, 3) },
        None,
        b"abc",
        VlanTags::NONE,
    );
    for cut in 0..good.len() {
        let mut frame = good[..cut].to_vec();
        assert!(matches!(translate(&map, Dir::C2B, &mut frame), Err(SpliceError::Wire(_))), "cut at {cut}");
        assert_eq!(frame, &good[..cut]);
    }
    let mut udp = good.clone();
    udp[14 + 9] = ip_proto::UDP;
    assert_eq!(translate(&map, Dir::C2B, &mut udp), Err(SpliceError::NotTcp(ip_proto::UDP)));
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
    assert_eq!(translate(&map, Dir::C2B, &mut arp), Err(SpliceError::NotIp(ethertype::ARP)));
    let mut fragment = good.clone();
    fragment[14 + 6] |= 0x20; // more fragments
    assert_eq!(translate(&map, Dir::C2B, &mut fragment), Err(SpliceError::Fragment));
    let mut later = good.clone();
    later[14 + 7] = 1; // offset 8
    assert_eq!(translate(&map, Dir::C2B, &mut later), Err(SpliceError::Fragment));
    let mut v6 = build(sa("[2001:db8::1]:1"), sa("[2001:db8::2]:2"), repr(0, 0, 1, 2, ACK, 3), None, b"", VlanTags::NONE);
    let before = v6.clone();
    assert_eq!(translate(&map, Dir::C2B, &mut v6), Err(SpliceError::FamilyMismatch), "an IPv4 map on an IPv6 frame");
    assert_eq!(v6, before);
    v6[14 + 6] = 0; // a hop-by-hop options header first
    assert_eq!(translate(&map, Dir::C2B, &mut v6), Err(SpliceError::NotTcp(0)));
    let three = VlanTags::new(&[(ethertype::VLAN, 1), (ethertype::VLAN, 2)]).unwrap();
    let mut tagged = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1, 2, ACK, 3), None, b"", three);
    tagged.splice(12..12, [0x81, 0x00, 0, 3]);
    assert!(matches!(translate(&map, Dir::C2B, &mut tagged), Err(SpliceError::Wire(WireError::Unsupported("VLAN tags", _)))));
    let mut low = good.clone();
    low[14 + 20 + 12] = 0x40; // data offset 16 bytes
    assert!(matches!(translate(&map, Dir::C2B, &mut low), Err(SpliceError::Wire(WireError::Malformed("TCP header", _)))));
}

/// Binds mixing families are refused; a transparent source is the client's own address and
/// port; the worked example's offsets.
#[test]
fn binds_follow_the_worked_example_and_keep_one_family() {
    let map = example();
    assert_eq!(
        (map.c2b.seq_delta, map.c2b.ack_delta, map.c2b.ts_val_delta, map.c2b.ts_ecr_delta),
        (0, 4000, 0, 2_999_950u32.wrapping_neg())
    );
    assert_eq!(
        (map.b2c.seq_delta, map.b2c.ack_delta, map.b2c.ts_val_delta, map.b2c.ts_ecr_delta),
        (4000u32.wrapping_neg(), 0, 2_999_950, 0)
    );
    assert_eq!((map.c2b.window, map.b2c.window), (WindowRescale::new(7, 7), WindowRescale::new(2, 9)));
    assert_eq!((map.c2b.tuple.src(), map.c2b.tuple.dst()), (sa("10.0.0.1:61000"), sa("10.0.0.5:8080")));
    assert_eq!((map.b2c.tuple.src(), map.b2c.tuple.dst()), (sa("198.51.100.1:80"), sa("192.0.2.10:40000")));
    assert_eq!(*map.rewrite(Dir::C2B), map.c2b);
    assert_eq!(Dir::C2B.reverse(), Dir::B2C);
    let transparent = SpliceMap::new(&Bind { source: BackendSource::Transparent, ..example_bind() }).unwrap();
    assert_eq!(transparent.c2b.tuple.src(), sa("192.0.2.10:40000"));
    for bad in [
        Bind { backend: sa("[fd00::5]:80"), source: BackendSource::Transparent, ..example_bind() },
        Bind { backend: sa("[fd00::5]:80"), source: BackendSource::Snat(sa("[fd00::1]:1")), ..example_bind() },
        Bind { source: BackendSource::Snat(sa("[fd00::1]:1")), ..example_bind() },
        Bind { service: sa("[2001:db8::1]:80"), ..example_bind() },
    ] {
        assert_eq!(SpliceMap::new(&bad), Err(SpliceError::FamilyMismatch));
    }
    // Segments of the client in both directions follow the offsets for any mbox SYN ISN.
    let bind = Bind { mbox_isn_to_backend: 123_456_789, ..example_bind() };
    let map = SpliceMap::new(&bind).unwrap();
    assert_eq!(1001u32.wrapping_add(map.c2b.seq_delta), 123_456_790);
    assert_eq!(123_456_890u32.wrapping_add(map.b2c.ack_delta), 1101);
}

#[test]
fn a_splice_map_is_small_and_copy() {
    fn copy<T: Copy>() {}
    copy::<SpliceMap>();
    assert!(std::mem::size_of::<SpliceMap>() <= 128, "{}", std::mem::size_of::<SpliceMap>());
}

#[test]
fn set_macs_writes_only_the_addresses() {
    let mut frame = build(sa("192.0.2.10:40000"), sa("198.51.100.1:80"), repr(0, 0, 1, 2, ACK, 3), None, b"", VlanTags::NONE);
    let before = frame.clone();
    let (src, dst) = (EthernetAddress([2, 0, 0, 0, 0, 9]), EthernetAddress([2, 0, 0, 0, 0, 8]));
    set_macs(&mut frame, src, dst).unwrap();
    let (f, _) = read(&frame);
    assert_eq!((f.src_mac, f.dst_mac), (src, dst));
    assert_eq!(&frame[12..], &before[12..]);
    assert!(set_macs(&mut [0u8; 11], src, dst).is_err());
}
