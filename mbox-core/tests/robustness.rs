//! Garbage in, counted drops out: the parser, the L2/3 stack and the capture reader on random
//! and mutated input never panic, and IP reassembly rebuilds any fragmentation of a datagram.

mod common;

use common::pcaps;
use mbox_abi::TcpSnapshot;
use mbox_core::io::capture::{read_all, CaptureReader};
use mbox_stack::flow_table::{FlowEntry, FlowTable, Timeouts};
use mbox_stack::l23::{Disposition, L23Stack, StackConfig, StackPacket, StackSink, StreamContext};
use mbox_stack::tcp::stream::{Source, StreamLimits};
use mbox_stack::tcp::Depth;
use mbox_stack::wire::{parse, parse_frame, LinkType, Packet, ParseOptions};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const LINKS: [LinkType; 7] =
    [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Ipv4, LinkType::Ipv6, LinkType::Null];

/// Real packets to mutate: a few captures with IPv6, VLANs, GTP, SLL and fragments.
fn samples() -> &'static Vec<(LinkType, Vec<u8>)> {
    static SAMPLES: OnceLock<Vec<(LinkType, Vec<u8>)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut out = Vec::new();
        for name in [
            "ndpi__http_ipv6.pcap",
            "ndpi__reasm_segv_anon.pcapng",
            "ndpi__dns_fragmented.pcap",
            "ndpi__log4j-webapp-exploit.pcap",
            "ndpi__psiphon3.pcap",
            "ndpi__sites.pcapng",
        ] {
            for (meta, bytes) in read_all(&pcaps().join(name)).unwrap() {
                out.push((meta.link, bytes));
            }
        }
        out
    })
}

/// A sink that accepts everything and checks the stack's promises.
#[derive(Default)]
struct Checker {
    started: u64,
    ended: u64,
    packets: u64,
    /// Kept segments not yet let go, and the next stream offset expected per (flow id, dir).
    kept: HashSet<u32>,
    next_token: u32,
    stream_next: HashMap<(u64, u8), u64>,
}

impl Checker {
    fn stream_at(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u64) {
        let next = self.stream_next.entry((ctx.flow.id, dir)).or_insert(0);
        assert_eq!(*next, offset, "stream ranges are contiguous: data and gaps cover each offset once");
        *next += len;
    }
}

impl StackSink for Checker {
    fn has_room(&self, _events: usize) -> bool {
        true
    }
    fn flow_started(&mut self, flow: &FlowEntry, _slot: u32, _ts: u64) {
        assert_ne!(flow.id, 0);
        self.started += 1;
    }
    fn flow_ended(&mut self, _flow: &FlowEntry, _slot: u32, _reason: u8, _ts: u64, _tcp: Option<&TcpSnapshot>) {
        self.ended += 1;
    }
    fn keep(&mut self) -> Option<u32> {
        self.next_token += 1;
        self.kept.insert(self.next_token);
        Some(self.next_token)
    }
    fn unkeep(&mut self, token: u32) {
        assert!(self.kept.remove(&token), "let go of a segment never kept (or twice)");
    }
    fn stream_data(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u32, source: Source) {
        if let Source::Kept { token, .. } = source {
            assert!(self.kept.contains(&token), "data from a segment not kept");
        }
        self.stream_at(ctx, dir, offset, u64::from(len));
    }
    fn stream_gap(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u64, _reason: u8) {
        self.stream_at(ctx, dir, offset, len);
    }
    fn packet(&mut self, pkt: &StackPacket<'_>, flows: &FlowTable) {
        if let Some((slot, dir)) = pkt.flow {
            assert!(dir < 2);
            assert_ne!(flows.get(slot).id, 0);
        }
        if let Some(p) = pkt.parsed {
            // Offsets stay inside what the headers declare; payload may exceed the capture.
            assert!(p.l3_offset <= p.l4_offset && p.l4_offset <= p.payload_offset);
        }
        self.packets += 1;
    }
}

fn small_stack() -> L23Stack {
    L23Stack::new(
        StackConfig {
            flow_slots: 16,
            timeouts: Timeouts { tcp_open_ns: 1_000, tcp_closed_ns: 10, udp_ns: 100, other_ns: 100 },
            vlan_in_key: true,
            parse: ParseOptions::default(),
            max_fragmented_datagrams: 4,
            fragment_timeout_ns: 1_000,
            tcp: Some(Depth::Reassembly),
            stream_limits: StreamLimits { max_kept: 4, max_distance: 100_000 },
            verify_tcp_checksums: false,
            midstream_client: Default::default(),
        },
        0,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), link in 0usize..7, wire in 0u32..2000) {
        let _ = parse(&bytes, LINKS[link], ParseOptions::default());
        let _ = parse_frame(&bytes, wire, LINKS[link], ParseOptions { decap_tunnels: false });
    }

    #[test]
    fn mutated_real_packets_never_panic_the_stack(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), 0u32..3000, 0u64..10_000), 1..40)
    ) {
        let mut stack = small_stack();
        let mut sink = Checker::default();
        for (pick, mutations, wire, ts) in picks {
            let (link, original) = &samples()[pick.index(samples().len())];
            let mut pkt = original.clone();
            for (at, byte) in mutations {
                if !pkt.is_empty() {
                    let i = at.index(pkt.len());
                    pkt[i] = byte;
                }
            }
            let outcome = stack.process(&pkt, *link, wire, ts, &mut sink);
            prop_assert_ne!(outcome, Disposition::Blocked, "an always-open sink never blocks");
        }
        prop_assert!(stack.drain(&mut sink));
        prop_assert_eq!(sink.started, sink.ended, "every flow that started ended");
        prop_assert!(stack.flows.is_empty());
        prop_assert!(sink.kept.is_empty(), "every kept segment was let go");
    }

    #[test]
    fn mutated_captures_read_to_an_end_without_panicking(
        name in prop::sample::select(vec!["ndpi__ftp.pcap", "ndpi__git.pcap", "ndpi__ocsp.pcapng", "ndpi__tls_2_reasms_b.pcapng", "zeek__tcp__miss_end_data.pcap"]),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = std::fs::read(pcaps().join(name)).unwrap();
        let len = cut.index(bytes.len()) + 1;
        bytes.truncate(len);
        for (at, b) in mutations {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        if let Ok(mut reader) = CaptureReader::open(file.path()) {
            let mut buf = Vec::new();
            // Every step consumes bytes, so the loop ends; an error ends it too.
            for _ in 0..100_000 {
                match reader.next_packet(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn any_fragmentation_of_a_datagram_reassembles_to_it(
        payload_len in 16usize..6000,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        order in any::<u64>(),
        duplicate in any::<Option<prop::sample::Index>>(),
    ) {
        // A UDP datagram, cut at 8-byte boundaries into fragments sent in a shuffled order.
        let mut datagram = vec![0u8; 8 + payload_len];
        datagram[0..2].copy_from_slice(&1000u16.to_be_bytes());
        datagram[2..4].copy_from_slice(&53u16.to_be_bytes());
        datagram[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
        for (i, b) in datagram[8..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let units = datagram.len().div_ceil(8);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(units) * 8).filter(|&b| b > 0).collect();
        bounds.push(0);
        bounds.push(8); // at least two fragments
        bounds.push(datagram.len());
        bounds.sort();
        bounds.dedup();
        let mut frags: Vec<Vec<u8>> = bounds.windows(2).map(|w| {
            let mut ip = vec![0x45, 0, 0, 0, 0xbe, 0xef, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 19, 0, 1];
            ip[2..4].copy_from_slice(&((20 + w[1] - w[0]) as u16).to_be_bytes());
            let more = if w[1] < datagram.len() { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&(((w[0] / 8) as u16) | more).to_be_bytes());
            ip.extend_from_slice(&datagram[w[0]..w[1]]);
            ip
        }).collect();
        let mut rng = mbox_core::io::generator::Rng::new(order);
        for i in (1..frags.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            frags.swap(i, j);
        }
        if let Some(d) = duplicate {
            let copy = frags[d.index(frags.len())].clone();
            frags.insert(0, copy);
        }
        let mut stack = small_stack();
        struct Grab(Option<Vec<u8>>);
        impl StackSink for Grab {
            fn has_room(&self, _: usize) -> bool { true }
            fn flow_started(&mut self, _: &FlowEntry, _: u32, _: u64) {}
            fn flow_ended(&mut self, _: &FlowEntry, _: u32, _: u8, _: u64, _: Option<&TcpSnapshot>) {}
            fn packet(&mut self, pkt: &StackPacket<'_>, _: &FlowTable) {
                if pkt.datagram.is_some() { self.0 = Some(pkt.data.to_vec()); }
            }
        }
        let mut grab = Grab(None);
        for f in &frags {
            let _ = stack.process(f, LinkType::RawIp, f.len() as u32, 1, &mut grab);
        }
        let whole = grab.0.expect("the datagram completes");
        prop_assert_eq!(&whole[20..], &datagram[..]);
        let Ok(Packet::Ip(p)) = parse(&whole, LinkType::RawIp, ParseOptions::default()) else { panic!("reparse") };
        prop_assert_eq!(p.payload_len as usize, payload_len);
    }
}
