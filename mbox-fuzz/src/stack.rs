//! The L2/3 µStack: the header parser on any bytes, the TCP reassembler on any sequence of
//! segments and acknowledgments, and the whole stack (parsing, fragments, flows, the TCP
//! monitor with reassembly) on any sequence of packets. (Moved from mbox-stack/fuzz.)

use mbox_abi::TcpSnapshot;
use mbox_stack::flow_table::{FlowEntry, FlowTable, Timeouts};
use mbox_stack::l23::{L23Stack, StackConfig, StackPacket, StackSink};
use mbox_stack::tcp::stream::{Source, Stream, StreamLimits, StreamSink, StreamSinkKeep};
use mbox_stack::tcp::Depth;
use mbox_stack::wire::{parse_frame, LinkType, Packet, ParseOptions};

/// The link types a `parse` input's first byte picks from (its index modulo 7).
pub const LINKS: [LinkType; 7] =
    [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Ipv4, LinkType::Ipv6, LinkType::Null];

/// The header parser on arbitrary bytes, every link type, any wire length: it returns a parse
/// or a counted error, never panics, and the offsets it reports never run backwards.
///
/// Input: a selector byte (link type `LINKS[b % 7]`, tunnels decapsulated when `b & 0x80`,
/// `b >> 3` bytes more on the wire than captured), then the frame.
pub fn fuzz_parse(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else { return };
    let link = LINKS[usize::from(selector % 7)];
    let decap = selector & 0x80 != 0;
    let wire = data.len() as u32 + u32::from(selector >> 3);
    if let Ok(Packet::Ip(p)) = parse_frame(data, wire, link, ParseOptions { decap_tunnels: decap }) {
        assert!(p.l3_offset <= p.l4_offset && p.l4_offset <= p.payload_offset, "{p:?}");
        assert!((p.l3_offset as usize) < data.len(), "the IP header was read, so it starts inside the frame: {p:?}");
        assert!(p.ip_version == 4 || p.ip_version == 6, "{p:?}");
    }
}

struct Check {
    next: u64,
    stopped: bool,
    events: usize,
    live: Vec<bool>,
    current_len: u32,
    lens: Vec<u32>,
}

impl StreamSinkKeep for Check {
    fn keep(&mut self) -> Option<u32> {
        if self.live.iter().filter(|l| **l).count() >= 8 {
            return None;
        }
        self.live.push(true);
        self.lens.push(self.current_len);
        Some(self.live.len() as u32 - 1)
    }
    fn unkeep(&mut self, token: u32) {
        assert!(std::mem::take(&mut self.live[token as usize]), "let go twice");
    }
}

impl StreamSink for Check {
    fn data(&mut self, _dir: u8, offset: u64, len: u32, source: Source) {
        assert!(!self.stopped, "data after reassembly stopped");
        assert_eq!(offset, self.next);
        self.events += 1;
        let (start, available) = match source {
            Source::Current { start } => (start, self.current_len),
            Source::Kept { token, start } => {
                assert!(self.live[token as usize], "data from a segment let go");
                (start, self.lens[token as usize])
            }
        };
        assert!(start + len <= available, "range inside its segment's captured payload");
        self.next += u64::from(len);
    }
    fn gap(&mut self, _dir: u8, offset: u64, len: u64, _reason: u8) {
        assert!(!self.stopped, "gap after reassembly stopped");
        assert_eq!(offset, self.next);
        self.events += 1;
        self.next += len;
    }
}

/// The reassembler driven by arbitrary segment and acknowledgment sequences: whatever arrives,
/// reported ranges are contiguous (data and gaps cover each offset once), kept segments are
/// all let go, `finish` stays within the events it promised, and nothing panics. Reassembly
/// may stop midway (the flow's last subscriber left): from then on segments are only counted,
/// and nothing more is reported.
///
/// Input: 8-byte records: kind, seq (u32 from bytes 1, 2, 3, 7, in a small range around a
/// base close to the wrap, so sequence numbers wrap), len (u16), captured (x16).
pub fn fuzz_reassembly(input: &[u8]) {
    let mut stream = Stream::default();
    let mut check = Check { next: 0, stopped: false, events: 0, live: Vec::new(), current_len: 0, lens: Vec::new() };
    let limits = StreamLimits { max_kept: 6, max_distance: 1 << 16 };
    for r in input.chunks_exact(8) {
        let seq = (u32::MAX - 30_000).wrapping_add(u32::from_le_bytes([r[1], r[2], r[3], r[7]]) % 70_000);
        let len = u32::from(u16::from_le_bytes([r[4], r[5]])) % 3000;
        let captured = len.min(u32::from(r[6]) * 16);
        let syn = r[0] & 0x10 != 0;
        match r[0] % 4 {
            0 | 3 if check.stopped => stream.track(seq, syn, len),
            0 => {
                check.current_len = captured;
                stream.segment(0, seq, syn, len, captured, limits, &mut check);
            }
            1 => stream.peer_ack(0, seq, &mut check),
            2 if r[0] & 0xe0 == 0xe0 && !check.stopped => {
                stream.abandon(&mut check);
                check.stopped = true;
            }
            2 => {}
            _ => {
                check.current_len = captured;
                stream.segment(0, seq.wrapping_sub(5), false, len, captured, limits, &mut check);
            }
        }
    }
    // The stack reserves event room for `finish` from this bound: it must hold.
    let (promised, before) = (stream.events_to_finish(), check.events);
    stream.finish(0, &mut check);
    assert!(check.events - before <= promised, "finish emitted {} events, promised {promised}", check.events - before);
    assert!(check.live.iter().all(|l| !l), "every kept segment was let go");
}

#[derive(Default)]
struct Counter {
    started: u64,
    ended: u64,
    kept: i64,
}

impl StackSink for Counter {
    fn has_room(&self, _events: usize) -> bool {
        true
    }
    fn flow_started(&mut self, _: &FlowEntry, _: u32, _: u64) {
        self.started += 1;
    }
    fn flow_ended(&mut self, _: &FlowEntry, _: u32, _: u8, _: u64, _: Option<&TcpSnapshot>) {
        self.ended += 1;
    }
    fn packet(&mut self, _: &StackPacket<'_>, _: &FlowTable) {}
    fn keep(&mut self) -> Option<u32> {
        self.kept += 1;
        Some(0)
    }
    fn unkeep(&mut self, _: u32) {
        self.kept -= 1;
    }
}

/// The whole stack on arbitrary packet sequences: flows that start end, kept segments are let
/// go, nothing panics.
///
/// Input: packets, each prefixed by its length (one byte); a packet's first byte picks its
/// link type (even: Ethernet, odd: raw IP) and advances the clock by 7 ns per unit.
pub fn fuzz_stack(input: &[u8]) {
    let mut stack = L23Stack::new(
        StackConfig {
            flow_slots: 8,
            timeouts: Timeouts { tcp_open_ns: 1000, tcp_closed_ns: 10, udp_ns: 100, other_ns: 100 },
            vlan_in_key: true,
            parse: ParseOptions::default(),
            max_fragmented_datagrams: 2,
            fragment_timeout_ns: 100,
            tcp: Some(Depth::Reassembly),
            stream_limits: StreamLimits { max_kept: 4, max_distance: 1 << 20 },
            verify_tcp_checksums: false,
            midstream_client: Default::default(),
        },
        0,
    );
    let mut sink = Counter::default();
    let mut rest = input;
    let mut ts = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (pkt, after) = tail.split_at(n);
        rest = after;
        let Some((&sel, bytes)) = pkt.split_first() else { continue };
        let link = if sel & 1 == 0 { LinkType::Ethernet } else { LinkType::RawIp };
        ts += u64::from(sel) * 7;
        let _ = stack.process(bytes, link, bytes.len() as u32, ts, &mut sink);
    }
    assert!(stack.drain(&mut sink));
    assert_eq!(sink.started, sink.ended);
    assert_eq!(sink.kept, 0);
}
