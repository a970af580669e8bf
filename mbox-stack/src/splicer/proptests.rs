//! Property tests: random valid frames (built with [`TcpFrame::emit`]: either family, any
//! ports, SEQ, ACK, flags, window, options in Linux's layout or any other valid one, payload
//! up to 1500 bytes, 0 to 2 VLAN tags) through random rewrites.

use super::tests::{build, repr};
use super::*;
use crate::wire::ethernet::{ethertype, VlanTags};
use crate::wire::frame::{Checksums, TcpFrame};
use crate::wire::tcp::{option_kind, SackBlocks, TcpOptions, TcpRepr};
use crate::wire::tcp_flags::{ACK, SYN};
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};

/// One option of a hand-made layout.
#[derive(Debug, Clone)]
enum Opt {
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    Timestamps(u32, u32),
    Sack(Vec<(u32, u32)>),
    Unknown(u8, Vec<u8>),
}

/// A header's options: as [`TcpOptions::emit`] lays them out, or any valid list.
#[derive(Debug, Clone)]
enum Options {
    Linux(TcpOptions),
    Raw(Vec<Opt>),
}

/// How a rewrite moves the values inside options: (TSval, TSecr), and a SACK edge.
struct Shift<'a> {
    ts: &'a dyn Fn(u32, u32) -> (u32, u32),
    sack: &'a dyn Fn(u32) -> u32,
}

impl Options {
    /// The header's options with `shift` applied: the TcpOptions, or raw bytes (the options
    /// that fit in 40 bytes, padded with end-of-list to a multiple of 4).
    fn render(&self, shift: &Shift) -> (TcpOptions, Option<Vec<u8>>) {
        match self {
            Options::Linux(o) => {
                let mut o = *o;
                o.timestamps = o.timestamps.map(|(v, e)| (shift.ts)(v, e));
                let mut sack = SackBlocks::default();
                for &(l, r) in o.sack.as_slice() {
                    sack.push(((shift.sack)(l), (shift.sack)(r)));
                }
                o.sack = sack;
                (o, None)
            }
            Options::Raw(items) => {
                let mut out = Vec::new();
                for item in items {
                    let bytes: Vec<u8> = match item {
                        Opt::Nop => vec![option_kind::NO_OPERATION],
                        Opt::Mss(m) => [&[option_kind::MSS, 4][..], &m.to_be_bytes()].concat(),
                        Opt::WindowScale(s) => vec![option_kind::WINDOW_SCALE, 3, *s],
                        Opt::SackPermitted => vec![option_kind::SACK_PERMITTED, 2],
                        Opt::Timestamps(v, e) => {
                            let (v, e) = (shift.ts)(*v, *e);
                            [&[option_kind::TIMESTAMPS, 10][..], &v.to_be_bytes(), &e.to_be_bytes()].concat()
                        }
                        Opt::Sack(blocks) => {
                            let mut b = vec![option_kind::SACK, 2 + 8 * blocks.len() as u8];
                            for &(l, r) in blocks {
                                b.extend_from_slice(&(shift.sack)(l).to_be_bytes());
                                b.extend_from_slice(&(shift.sack)(r).to_be_bytes());
                            }
                            b
                        }
                        Opt::Unknown(kind, data) => [&[*kind, 2 + data.len() as u8][..], data].concat(),
                    };
                    if out.len() + bytes.len() > 40 {
                        break;
                    }
                    out.extend_from_slice(&bytes);
                }
                while out.len() % 4 != 0 {
                    out.push(option_kind::END_OF_LIST);
                }
                (TcpOptions::default(), Some(out))
            }
        }
    }
}

fn opt() -> impl Strategy<Value = Opt> {
    let unknown_kinds: Vec<u8> = (6u8..=255).filter(|&k| k != option_kind::TIMESTAMPS).collect();
    prop_oneof![
        Just(Opt::Nop),
        any::<u16>().prop_map(Opt::Mss),
        any::<u8>().prop_map(Opt::WindowScale),
        Just(Opt::SackPermitted),
        (any::<u32>(), any::<u32>()).prop_map(|(v, e)| Opt::Timestamps(v, e)),
        prop::collection::vec((any::<u32>(), any::<u32>()), 1..=4).prop_map(Opt::Sack),
        (prop::sample::select(unknown_kinds), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(k, d)| Opt::Unknown(k, d)),
    ]
}

fn options() -> impl Strategy<Value = Options> {
    prop_oneof![
        crate::wire::tcp::strategies::options().prop_map(Options::Linux),
        prop::collection::vec(opt(), 0..10).prop_map(Options::Raw)
    ]
}

fn vlan() -> impl Strategy<Value = VlanTags> {
    let tag = (prop::sample::select(vec![ethertype::VLAN, ethertype::QINQ, ethertype::QINQ_OLD]), any::<u16>());
    prop::collection::vec(tag, 0..=2).prop_map(|tags| VlanTags::new(&tags).unwrap())
}

/// Two endpoints of one family (`v4`) from raw bytes.
fn endpoints(v4: bool, a: [u8; 16], b: [u8; 16], ports: (u16, u16)) -> (SocketAddr, SocketAddr) {
    let ip = |x: [u8; 16]| if v4 { IpAddr::from([x[0], x[1], x[2], x[3]]) } else { IpAddr::from(x) };
    (SocketAddr::new(ip(a), ports.0), SocketAddr::new(ip(b), ports.1))
}

/// A frame's headers and payload, before or after a rewrite.
#[derive(Debug, Clone)]
struct Segment {
    src: SocketAddr,
    dst: SocketAddr,
    tcp: TcpRepr,
    options: Options,
    payload: Vec<u8>,
    vlan: VlanTags,
}

impl Segment {
    fn frame(&self, shift: &Shift) -> Vec<u8> {
        let (options, raw) = self.options.render(shift);
        build(self.src, self.dst, TcpRepr { options, ..self.tcp }, raw.as_deref(), &self.payload, self.vlan)
    }

    /// The frame `rw` should make of this one, computed from the fields: what the module's
    /// conventions say each becomes.
    fn expected(&self, rw: &Rewrite) -> Vec<u8> {
        let acks = self.tcp.flags & ACK != 0;
        let mut tcp = self.tcp;
        tcp.seq = tcp.seq.wrapping_add(rw.seq_delta);
        if acks {
            tcp.ack = tcp.ack.wrapping_add(rw.ack_delta);
        }
        if tcp.flags & SYN == 0 {
            tcp.window = rw.window.apply(tcp.window);
        }
        let ts = |v: u32, e: u32| (v.wrapping_add(rw.ts_val_delta), if acks { e.wrapping_add(rw.ts_ecr_delta) } else { e });
        let sack = |edge: u32| if acks && rw.shift_sack { edge.wrapping_add(rw.ack_delta) } else { edge };
        let moved = Segment { src: rw.tuple.src(), dst: rw.tuple.dst(), tcp, ..self.clone() };
        moved.frame(&Shift { ts: &ts, sack: &sack })
    }
}

const AS_IS: Shift<'static> = Shift { ts: &|v, e| (v, e), sack: &|edge| edge };

#[allow(clippy::type_complexity)]
fn segment_and_rewrite() -> impl Strategy<Value = (Segment, Rewrite)> {
    let addrs = (any::<bool>(), any::<[u8; 16]>(), any::<[u8; 16]>(), any::<[u8; 16]>(), any::<[u8; 16]>(), any::<[u16; 4]>());
    let tcp = (any::<u32>(), any::<u32>(), any::<u8>(), any::<u16>(), any::<u16>());
    let deltas = (any::<[u32; 4]>(), 0u8..=16, 0u8..=16, any::<bool>());
    (addrs, tcp, options(), prop::collection::vec(any::<u8>(), 0..1500), vlan(), deltas).prop_map(
        |((v4, a, b, c, d, ports), (seq, ack, flags, window, urgent), options, payload, vlan, (delta, from, to, shift_sack))| {
            let (src, dst) = endpoints(v4, a, b, (ports[0], ports[1]));
            let (new_src, new_dst) = endpoints(v4, c, d, (ports[2], ports[3]));
            let tcp = TcpRepr { urgent, ..repr(0, 0, seq, ack, flags, window) };
            let rw = Rewrite {
                tuple: Tuple::new(new_src, new_dst).unwrap(),
                seq_delta: delta[0],
                ack_delta: delta[1],
                ts_val_delta: delta[2],
                ts_ecr_delta: delta[3],
                window: WindowRescale::new(from, to),
                shift_sack,
            };
            (Segment { src, dst, tcp, options, payload, vlan }, rw)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// RFC 9293 3.4 (SEQ, ACK), RFC 7323 2-3 (window, timestamps), RFC 2018 3 (SACK) and
    /// RFC 1624 (checksums): the spliced frame is byte for byte the one built from scratch
    /// with each field moved as the conventions say, both checksums verify, and what
    /// translate reports matches; the inverse rewrite gives the original back (its window
    /// as rounded there and back, which is the original where rescaling neither rounded nor
    /// clamped).
    #[test]
    fn translate_does_the_arithmetic_and_the_inverse_undoes_it((seg, rw) in segment_and_rewrite()) {
        let original = seg.frame(&AS_IS);
        let mut frame = original.clone();
        let done = rw.apply(&mut frame).unwrap();
        let expected = seg.expected(&rw);
        prop_assert_eq!(&frame, &expected);
        let (f, payload) = TcpFrame::parse(&frame, Checksums::Verify).unwrap();
        prop_assert_eq!(payload, &seg.payload[..]);
        prop_assert_eq!((done.flags, done.seq, done.ack, done.window), (f.tcp.flags, f.tcp.seq, f.tcp.ack, f.tcp.window));
        prop_assert_eq!((done.timestamps, usize::from(done.sack_blocks)), (f.tcp.options.timestamps, f.tcp.options.sack.len()));
        prop_assert_eq!((done.payload_offset, done.payload_len), (frame.len() - seg.payload.len(), seg.payload.len()));
        prop_assert_eq!(done.tcp_offset, f.l2_len() + f.ip.header_len());

        let back = rw.inverse(Tuple::new(seg.src, seg.dst).unwrap());
        back.apply(&mut frame).unwrap();
        let mut there_and_back = seg.clone();
        if seg.tcp.flags & SYN == 0 {
            there_and_back.tcp.window = back.window.apply(rw.window.apply(seg.tcp.window));
        }
        prop_assert_eq!(&frame, &there_and_back.frame(&AS_IS));
        if there_and_back.tcp.window == seg.tcp.window {
            prop_assert_eq!(&frame, &original);
        }
    }

    /// RFC 9293 3.4 and RFC 7323 3.2 through a whole bind: what the client sends reaches the
    /// backend, whose acknowledgment, SACK and echo of it reach the client in the client's own
    /// sequence space and clock; and the same the other way.
    #[test]
    fn a_bind_carries_acknowledgments_and_echoes_back(
        v4 in any::<bool>(), a in any::<[[u8; 16]; 4]>(), ports in any::<[u16; 4]>(), transparent in any::<bool>(),
        isns in any::<[u32; 4]>(), clocks in any::<[u32; 4]>(), seq in any::<u32>(), tsval in any::<u32>(), len in 1u32..1500,
    ) {
        let (client, service) = endpoints(v4, a[0], a[1], (ports[0], ports[1]));
        let (backend, snat) = endpoints(v4, a[2], a[3], (ports[2], ports[3]));
        let bind = Bind {
            client, service, backend,
            source: if transparent { BackendSource::Transparent } else { BackendSource::Snat(snat) },
            client_isn: isns[0], mbox_isn_to_client: isns[1], backend_isn: isns[2], mbox_isn_to_backend: isns[3],
            clocks: TsClocks { client_syn_tsval: clocks[0], mbox_syn_tsval: clocks[1], mbox_tsval_to_client: clocks[2], backend_syn_ack_tsval: clocks[3] },
            window_scales: WindowScales::default(),
        };
        let map = SpliceMap::new(&bind).unwrap();
        let source = if transparent { client } else { snat };
        // The client's segment [seq, seq + len) with TSval `tsval`; ACK and TSecr arbitrary.
        let options = TcpOptions { timestamps: Some((tsval, 0)), ..TcpOptions::default() };
        let mut frame = build(client, service, TcpRepr { options, ..repr(0, 0, seq, 0, ACK, 100) }, None, &vec![1; len as usize], VlanTags::NONE);
        translate(&map, Dir::C2B, &mut frame).unwrap();
        let (at_backend, _) = TcpFrame::parse(&frame, Checksums::Verify).unwrap();
        prop_assert_eq!((at_backend.ip.src(), at_backend.tcp.src_port), (source.ip(), source.port()));
        prop_assert_eq!((at_backend.ip.dst(), at_backend.tcp.dst_port), (backend.ip(), backend.port()));
        let (b_seq, (b_tsval, _)) = (at_backend.tcp.seq, at_backend.tcp.options.timestamps.unwrap());
        // The backend acknowledges the second half, SACKs the first, echoes the TSval, and
        // sends its own TSval 0.
        let half = len / 2;
        let mut options = TcpOptions { timestamps: Some((0, b_tsval)), ..TcpOptions::default() };
        options.sack.push((b_seq, b_seq.wrapping_add(half)));
        let reply = TcpRepr { options, ..repr(0, 0, 777, b_seq.wrapping_add(len), ACK, 100) };
        let mut frame = build(backend, source, reply, None, b"", VlanTags::NONE);
        translate(&map, Dir::B2C, &mut frame).unwrap();
        let (at_client, _) = TcpFrame::parse(&frame, Checksums::Verify).unwrap();
        prop_assert_eq!((at_client.ip.src(), at_client.tcp.src_port, at_client.ip.dst(), at_client.tcp.dst_port),
                        (service.ip(), service.port(), client.ip(), client.port()));
        prop_assert_eq!(at_client.tcp.ack, seq.wrapping_add(len));
        prop_assert_eq!(at_client.tcp.options.sack.as_slice(), &[(seq, seq.wrapping_add(half))]);
        let (c_sees_tsval, c_sees_echo) = at_client.tcp.options.timestamps.unwrap();
        prop_assert_eq!(c_sees_echo, tsval);
        // The client echoes the backend's TSval as it saw it: the backend gets its own back.
        let options = TcpOptions { timestamps: Some((tsval, c_sees_tsval)), ..TcpOptions::default() };
        let mut frame = build(client, service, TcpRepr { options, ..repr(0, 0, seq, at_client.tcp.seq, ACK, 100) }, None, b"", VlanTags::NONE);
        translate(&map, Dir::C2B, &mut frame).unwrap();
        let (f, _) = TcpFrame::parse(&frame, Checksums::Verify).unwrap();
        prop_assert_eq!((f.tcp.ack, f.tcp.options.timestamps.unwrap().1), (777, 0));
        // The backend's SYN-ACK TSval meets mbox's last one.
        prop_assert_eq!(bind.clocks.backend_syn_ack_tsval.wrapping_add(map.b2c.ts_val_delta), bind.clocks.mbox_tsval_to_client);
    }

    /// Whatever the bytes and the rewrite: no panic; an error leaves the frame as it was; a
    /// frame spliced parses, and if its checksums verified before they still do. The bytes
    /// are a valid frame with some bytes changed and maybe cut or extended, or plain noise.
    #[test]
    fn damaged_frames_never_panic_and_errors_leave_them_untouched(
        (seg, rw) in segment_and_rewrite(), damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<prop::sample::Index>()), extend in 0usize..8, noise in prop::collection::vec(any::<u8>(), 0..120),
        use_noise in prop::bool::weighted(0.1),
    ) {
        let mut bytes = if use_noise { noise } else { seg.frame(&AS_IS) };
        if !bytes.is_empty() {
            for (at, value) in damage {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        bytes.extend(std::iter::repeat_n(0xa5, extend));
        let before = bytes.clone();
        let verified = TcpFrame::parse(&before, Checksums::Verify).is_ok();
        match rw.apply(&mut bytes) {
            Ok(_) => {
                prop_assert!(TcpFrame::parse(&bytes, Checksums::Trust).is_ok());
                prop_assert!(!verified || TcpFrame::parse(&bytes, Checksums::Verify).is_ok());
            }
            Err(_) => prop_assert_eq!(&bytes, &before),
        }
    }
}
