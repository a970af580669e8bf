//! A shard's stack: parse a packet, reassemble fragments, find or create its flow, count it,
//! run the TCP monitor on TCP segments when configured, and tell the shard what happened
//! through a [`StackSink`].
//!
//! The stack owns the flow table, the IP reassembler and the TCP connections of one shard. It
//! drives flow expiry with packet time (a clock that never goes back), and reports in the order
//! NFs must see things: an expired flow's end before the next packet, a new flow's start before
//! its first packet, a packet before the stream bytes it carries, a flow's last bytes before its
//! end.

use crate::flow_key::FlowKey;
use crate::flow_table::{close_bits, FlowClass, FlowEntry, FlowTable, Timeouts};
use crate::fragments::{FragmentOutcome, FragmentStats, Reassembler};
use crate::tcp::stream::{Source, StreamLimits, StreamSink, StreamSinkKeep, StreamStats};
use crate::tcp::{Depth, Segment, TcpConn};
use crate::wire::{ip_proto, parse, parse_into, tcp_flags, Frame, LinkType, Packet, ParseError, ParseOptions, Parsed};
use mbox_abi::{FlowTuple, TcpSnapshot, REASON_END_OF_INPUT, REASON_EVICTED, REASON_FIN, REASON_RST, REASON_TIMEOUT};

/// Settings of the L2/3 µStack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StackConfig {
    pub flow_slots: usize,
    pub timeouts: Timeouts,
    pub vlan_in_key: bool,
    pub parse: ParseOptions,
    pub max_fragmented_datagrams: usize,
    pub fragment_timeout_ns: u64,
    /// The TCP monitor: `None` when nobody needs TCP state; else how deep it goes.
    pub tcp: Option<Depth>,
    pub stream_limits: StreamLimits,
    /// The monitor leaves out TCP segments whose checksum is wrong (the receiver drops them);
    /// off, it trusts them, as captures taken where checksums are offloaded need.
    pub verify_tcp_checksums: bool,
    /// Who is the client of a TCP connection picked up mid-stream (its SYN and SYN+ACK not
    /// seen).
    pub midstream_client: MidstreamClient,
}

/// The client of a TCP connection whose first packet seen is neither a SYN nor a SYN+ACK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MidstreamClient {
    /// The sender of that first packet (tshark's conversations, Suricata without
    /// `stream.midstream`).
    #[default]
    First,
    /// The side that does not look like the server, as Suricata with `stream.midstream` turns
    /// such a flow round: a first packet that opens a server's message (an HTTP response, a
    /// TLS ServerHello) was sent by the server; one without payload was, when it goes from a
    /// well-known port (below 1024) to another; else its sender is the client.
    Detect,
}

/// Whether the packet that starts a flow picked up mid-stream (`payload`: its captured TCP
/// payload; `ports`: source, destination) was sent by the server (see
/// [`MidstreamClient::Detect`]).
fn sent_by_server(payload: &[u8], ports: [u16; 2]) -> bool {
    match payload {
        [] => ports[0] < 1024 && ports[1] >= 1024,
        _ => payload.starts_with(b"HTTP/1.") || matches!(payload, [0x16, 3, _, _, _, 2, ..]),
    }
}

/// Events one packet may cause at most, so the sink can promise room before the stack starts.
/// With reassembly (`max_kept` segments per direction), the worst is a packet whose new flow
/// evicts an old one: the old flow's streams finish (per direction, per kept segment a gap, its
/// data and a truncation gap, then a hole and a memory gap: 3k + 2), its end, the new flow, the
/// packet, the packet's data and truncation gap, and both streams' ends: 6k + 11. A packet of an
/// existing flow causes at most 4k + 6 (the peer's stream released by its ACK, its own by its
/// data, both ends).
pub fn events_per_packet(tcp: Option<Depth>, max_kept: usize) -> usize {
    match tcp {
        Some(Depth::Reassembly) => max_kept.saturating_mul(6).saturating_add(11),
        _ => 6,
    }
}

/// A packet as the stack hands it to the shard.
pub struct StackPacket<'a> {
    /// The bytes NFs see: the frame, or a reassembled datagram (from its IP header).
    pub data: &'a [u8],
    /// `None` for non-IP frames.
    pub parsed: Option<&'a Parsed>,
    /// Flow slot and direction (0 originator, 1 responder); `None` without a flow.
    pub flow: Option<(u32, u8)>,
    /// The reassembly slot whose buffer `data` is, to release when NFs are done.
    pub datagram: Option<u32>,
    /// Length on the wire of the frame (for a reassembled datagram: of the completing fragment).
    pub wire_len: u32,
    /// The TCP monitor's state after this segment (TCP packets, when the monitor runs).
    pub tcp: Option<&'a TcpSnapshot>,
}

/// Where a stream event belongs: the flow, its slot and the connection's state.
pub struct StreamContext<'a> {
    pub flow: &'a FlowEntry,
    pub slot: u32,
    pub snapshot: &'a TcpSnapshot,
}

/// Where the stack reports what it found; implemented by the shard.
pub trait StackSink {
    /// True when `events` more events can be emitted now.
    fn has_room(&self, events: usize) -> bool;
    /// A flow started (before its first packet is reported).
    fn flow_started(&mut self, flow: &FlowEntry, slot: u32, ts_ns: u64);
    /// A flow ended; `flow` has already left the table (its slot may be reused next). `tcp` is
    /// the connection's last state when the TCP monitor ran.
    fn flow_ended(&mut self, flow: &FlowEntry, slot: u32, reason: u8, ts_ns: u64, tcp: Option<&TcpSnapshot>);
    /// A packet to deliver and then forward.
    fn packet(&mut self, pkt: &StackPacket<'_>, flows: &FlowTable);
    /// False when nobody wants the stream bytes of the flow in `slot` any more (its NFs
    /// unsubscribed): the stack then stops reassembling it.
    fn wants_streams(&self, _slot: u32) -> bool {
        true
    }
    /// Keeps the packet last reported for later: its TCP payload arrived out of order and its
    /// bytes will be reported when the hole before them fills. `None` when a bound is reached
    /// (the default: a sink that does not reassemble keeps nothing).
    fn keep(&mut self) -> Option<u32> {
        None
    }
    /// Lets go of a kept packet.
    fn unkeep(&mut self, _token: u32) {}
    /// Appends the current payload to kept entry `token` (a sink that keeps copies); see
    /// [`StreamSinkKeep::extend_kept`].
    fn extend_kept(&mut self, _token: u32) -> bool {
        false
    }
    /// Appends kept entry `next` to kept entry `token`; see [`StreamSinkKeep::merge_kept`].
    fn merge_kept(&mut self, _token: u32, _next: u32) -> bool {
        false
    }
    /// Bytes `[offset, offset + len)` of the stream of direction `dir` are ready at `source`.
    fn stream_data(&mut self, _ctx: &StreamContext<'_>, _dir: u8, _offset: u64, _len: u32, _source: Source) {}
    /// Bytes `[offset, offset + len)` of the stream of direction `dir` will never be reported.
    fn stream_gap(&mut self, _ctx: &StreamContext<'_>, _dir: u8, _offset: u64, _len: u64, _reason: u8) {}
    /// The stream of direction `dir` is complete at `offset` (`END_FIN` or `END_RST`).
    fn stream_end(&mut self, _ctx: &StreamContext<'_>, _dir: u8, _offset: u64, _reason: u8) {}
}

/// Forwards a connection's stream reports to the stack's sink, with their flow.
struct StreamAdapter<'a, S> {
    sink: &'a mut S,
    ctx: StreamContext<'a>,
}

impl<S: StackSink> StreamSinkKeep for StreamAdapter<'_, S> {
    fn keep(&mut self) -> Option<u32> {
        self.sink.keep()
    }
    fn unkeep(&mut self, token: u32) {
        self.sink.unkeep(token)
    }
    fn extend_kept(&mut self, token: u32) -> bool {
        self.sink.extend_kept(token)
    }
    fn merge_kept(&mut self, token: u32, next: u32) -> bool {
        self.sink.merge_kept(token, next)
    }
}

/// The keeping part of a stack sink, for letting go of kept segments.
struct Keeper<'a, S>(&'a mut S);

impl<S: StackSink> StreamSinkKeep for Keeper<'_, S> {
    fn keep(&mut self) -> Option<u32> {
        self.0.keep()
    }
    fn unkeep(&mut self, token: u32) {
        self.0.unkeep(token)
    }
    fn extend_kept(&mut self, token: u32) -> bool {
        self.0.extend_kept(token)
    }
    fn merge_kept(&mut self, token: u32, next: u32) -> bool {
        self.0.merge_kept(token, next)
    }
}

impl<S: StackSink> StreamSink for StreamAdapter<'_, S> {
    fn data(&mut self, dir: u8, offset: u64, len: u32, source: Source) {
        self.sink.stream_data(&self.ctx, dir, offset, len, source)
    }
    fn gap(&mut self, dir: u8, offset: u64, len: u64, reason: u8) {
        self.sink.stream_gap(&self.ctx, dir, offset, len, reason)
    }
    fn end(&mut self, dir: u8, offset: u64, reason: u8) {
        self.sink.stream_end(&self.ctx, dir, offset, reason)
    }
}

/// What became of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Reported to the sink.
    Delivered,
    /// An IP fragment stored for reassembly (or refused by it): forward it as it is.
    Fragment,
    /// Not enough event room: call again with the same packet later.
    Blocked,
    /// Unparsable: drop it.
    Malformed(ParseError),
}

/// Counters of the stack, reported in the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    pub packets: u64,
    pub non_ip: u64,
    pub malformed: [u64; ParseError::ALL.len()],
    pub flows_tcp: u64,
    pub flows_udp: u64,
    pub flows_other: u64,
    /// Flows ended, by `REASON_*` value.
    pub ended: [u64; 8],
    pub port_reuse: u64,
    /// TCP segments the monitor left out for a wrong checksum (`verify_tcp_checksums`).
    pub tcp_bad_checksums: u64,
    pub fragments: FragmentStats,
    /// Both directions of every TCP connection that ended, summed.
    pub streams: StreamStats,
    /// Flows in the table now.
    pub active_flows: u64,
}

/// The L2/3 µStack of one shard.
pub struct L23Stack {
    cfg: StackConfig,
    pub flows: FlowTable,
    frags: Reassembler,
    /// TCP connections by flow slot (grown as slots are used).
    tcp: Vec<TcpConn>,
    /// Packet time: the latest timestamp seen, never going back.
    clock_ns: u64,
    stats: StackStats,
}

impl L23Stack {
    pub fn new(cfg: StackConfig, shard: u16) -> L23Stack {
        L23Stack {
            flows: FlowTable::new(cfg.flow_slots, cfg.timeouts, shard),
            frags: Reassembler::new(cfg.max_fragmented_datagrams, cfg.fragment_timeout_ns),
            tcp: Vec::new(),
            cfg,
            clock_ns: 0,
            stats: StackStats::default(),
        }
    }

    pub fn stats(&self) -> StackStats {
        StackStats { fragments: self.frags.stats, active_flows: self.flows.len() as u64, ..self.stats }
    }

    /// Frees a reassembled datagram once no event points at it.
    pub fn release_datagram(&mut self, slot: u32) {
        self.frags.release(slot);
    }

    /// Processes one packet. On [`Disposition::Blocked`] nothing about the packet was recorded.
    pub fn process<S: StackSink>(&mut self, data: &[u8], link: LinkType, wire_len: u32, ts_ns: u64, sink: &mut S) -> Disposition {
        self.clock_ns = self.clock_ns.max(ts_ns);
        if !self.expire(sink) || !sink.has_room(self.events_per_packet()) {
            return Disposition::Blocked;
        }
        self.stats.packets += 1;
        let mut parsed = Parsed::default();
        match parse_into(data, wire_len, link, self.cfg.parse, &mut parsed) {
            Ok(Frame::Ip) => {}
            Ok(Frame::NonIp { .. }) => {
                self.stats.non_ip += 1;
                sink.packet(&StackPacket { data, parsed: None, flow: None, datagram: None, wire_len, tcp: None }, &self.flows);
                return Disposition::Delivered;
            }
            Err(e) => {
                self.stats.malformed[e.index()] += 1;
                return Disposition::Malformed(e);
            }
        }
        let Some(frag) = parsed.fragment else {
            self.deliver(data, &parsed, None, wire_len, ts_ns, sink);
            return Disposition::Delivered;
        };
        match self.frags.add(data, &parsed, &frag, self.clock_ns) {
            FragmentOutcome::Complete { slot, len } => {
                let link = if parsed.ip_version == 4 { LinkType::Ipv4 } else { LinkType::Ipv6 };
                // The datagram parses like a packet; it is reported with the completing
                // fragment's lengths on the wire, as tshark counts it.
                let datagram = self.frags.datagram(slot, len);
                match parse(datagram, link, self.cfg.parse) {
                    Ok(Packet::Ip(mut whole)) => {
                        whole.vlan = parsed.vlan;
                        whole.vlan_tags = parsed.vlan_tags;
                        whole.ip_len = parsed.ip_len;
                        let (frags, mut stack) = self.split();
                        let datagram = frags.datagram(slot, len);
                        stack.deliver(datagram, &whole, Some(slot), wire_len, ts_ns, sink);
                        Disposition::Delivered
                    }
                    _ => {
                        // Complete but unparsable (e.g. no whole TCP header): forwarded as
                        // fragments, counted with the refused ones.
                        self.frags.release(slot);
                        self.frags.stats.invalid += 1;
                        Disposition::Fragment
                    }
                }
            }
            FragmentOutcome::Incomplete | FragmentOutcome::Dropped => Disposition::Fragment,
        }
    }

    /// Events one packet may cause at most (see [`events_per_packet`]).
    fn events_per_packet(&self) -> usize {
        events_per_packet(self.cfg.tcp, self.cfg.stream_limits.max_kept)
    }

    /// Splits borrows: the reassembler (read) and the rest of the stack (write).
    fn split(&mut self) -> (&Reassembler, StackParts<'_>) {
        (
            &self.frags,
            StackParts { flows: &mut self.flows, tcp: &mut self.tcp, stats: &mut self.stats, cfg: &self.cfg, clock_ns: self.clock_ns },
        )
    }

    fn deliver<S: StackSink>(&mut self, data: &[u8], p: &Parsed, datagram: Option<u32>, wire_len: u32, ts_ns: u64, sink: &mut S) {
        let (_, mut parts) = self.split();
        parts.deliver(data, p, datagram, wire_len, ts_ns, sink);
    }

    /// Ends flows idle past their timeout. False when the sink ran out of room first.
    fn expire<S: StackSink>(&mut self, sink: &mut S) -> bool {
        let now = self.clock_ns;
        self.end_flows(sink, REASON_TIMEOUT, |flows| flows.next_expired(now))
    }

    /// Ends every flow (the input is over). False when the sink ran out of room first; call
    /// again once events have retired.
    pub fn drain<S: StackSink>(&mut self, sink: &mut S) -> bool {
        self.end_flows(sink, REASON_END_OF_INPUT, FlowTable::oldest)
    }

    /// Ends the flows `next` picks, one by one, with `reason` (or FIN/RST for closed TCP).
    fn end_flows<S: StackSink>(&mut self, sink: &mut S, reason: u8, next: impl Fn(&FlowTable) -> Option<u32>) -> bool {
        let (_, mut parts) = self.split();
        while let Some(slot) = next(parts.flows) {
            let pending = parts.tcp.get(slot as usize).map_or(0, TcpConn::events_to_finish);
            if !sink.has_room(pending + 1) {
                return false;
            }
            parts.end_flow(slot, EndReason::UnlessClosed(reason), sink);
        }
        true
    }
}

/// Why a flow ends.
#[derive(Debug, Clone, Copy)]
enum EndReason {
    Exactly(u8),
    /// This reason, unless the TCP connection closed (then FIN or RST).
    UnlessClosed(u8),
}

/// Whether a TCP segment's checksum is wrong. `false` when it cannot be told: the capture cut
/// the segment short.
fn wrong_tcp_checksum(data: &[u8], p: &Parsed) -> bool {
    use crate::wire::checksum::{pseudo_header_v4, pseudo_header_v6, sum, verifies};
    let end = p.payload_offset as usize + p.payload_len as usize;
    let Some(segment) = data.get(p.l4_offset as usize..end) else { return false };
    let len = segment.len() as u32;
    let pseudo = if p.ip_version == 4 {
        let v4 = |a: &[u8; 16]| std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        pseudo_header_v4(v4(&p.src), v4(&p.dst), ip_proto::TCP, len)
    } else {
        pseudo_header_v6(p.src.into(), p.dst.into(), ip_proto::TCP, len)
    };
    !verifies(pseudo + sum(segment))
}

/// The part of the stack that flow handling mutates, borrowed apart from the reassembler.
struct StackParts<'a> {
    flows: &'a mut FlowTable,
    tcp: &'a mut Vec<TcpConn>,
    stats: &'a mut StackStats,
    cfg: &'a StackConfig,
    clock_ns: u64,
}

impl StackParts<'_> {
    #[allow(clippy::too_many_arguments)]
    fn deliver<S: StackSink>(&mut self, data: &[u8], p: &Parsed, datagram: Option<u32>, wire_len: u32, ts_ns: u64, sink: &mut S) {
        let (key, side) = FlowKey::from_parsed(p, self.cfg.vlan_in_key);
        let hash = self.flows.hash(&key);
        let is_tcp = p.ip_proto == ip_proto::TCP && p.has_l4_header();
        let flags = if is_tcp { p.tcp.flags } else { 0 };
        let fresh_syn = flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let mut slot = self.flows.find(&key, hash);
        if let Some(s) = slot {
            let e = self.flows.get(s);
            // A new SYN with another ISN on a closed connection: the port was reused.
            if fresh_syn && e.class() == FlowClass::TcpClosed && e.syn_seq != Some(p.tcp.seq) {
                self.stats.port_reuse += 1;
                self.end_flow(s, EndReason::UnlessClosed(REASON_FIN), sink);
                slot = None;
            }
        }
        let slot = match slot {
            Some(s) => s,
            None => {
                let server_sent = is_tcp
                    && flags & tcp_flags::SYN == 0
                    && self.cfg.midstream_client == MidstreamClient::Detect
                    && sent_by_server(p.captured_payload(data), [p.src_port, p.dst_port]);
                self.new_flow(key, hash, side, p, server_sent, sink)
            }
        };
        let entry = self.flows.get_mut(slot);
        let dir = entry.dir_of(side);
        let stats = &mut entry.stats[dir];
        if stats.pkts == 0 {
            stats.first_ts_ns = ts_ns;
        }
        stats.pkts += 1;
        stats.last_ts_ns = ts_ns;
        stats.frame_bytes += u64::from(wire_len);
        stats.ip_bytes += u64::from(p.ip_len);
        stats.payload_bytes += u64::from(p.payload_len);
        stats.tcp_flags |= flags;
        let class = if is_tcp {
            if fresh_syn && entry.syn_seq.is_none() && dir == 0 {
                entry.syn_seq = Some(p.tcp.seq);
            }
            if flags & tcp_flags::RST != 0 {
                entry.close |= close_bits::RST;
            }
            if flags & tcp_flags::FIN != 0 {
                entry.close |= if side == 0 { close_bits::FIN_SIDE0 } else { close_bits::FIN_SIDE1 };
            }
            if close_reason(entry).is_some() {
                FlowClass::TcpClosed
            } else {
                FlowClass::TcpOpen
            }
        } else {
            entry.class()
        };
        self.flows.touch(slot, self.clock_ns, class);
        let (Some(depth), true) = (self.cfg.tcp, is_tcp) else {
            sink.packet(&StackPacket { data, parsed: Some(p), flow: Some((slot, dir as u8)), datagram, wire_len, tcp: None }, self.flows);
            return;
        };
        if self.cfg.verify_tcp_checksums && wrong_tcp_checksum(data, p) {
            // The receiver drops it: not part of the connection as its ends see it.
            self.stats.tcp_bad_checksums += 1;
            sink.packet(&StackPacket { data, parsed: Some(p), flow: Some((slot, dir as u8)), datagram, wire_len, tcp: None }, self.flows);
            return;
        }
        // The TCP monitor: state first, so the packet's event carries it; then the streams.
        let options =
            data.get(p.l4_offset as usize + 20..(p.l4_offset as usize + usize::from(p.tcp.header_len)).min(data.len())).unwrap_or(&[]);
        let captured = p.captured_payload(data).len() as u32;
        let seg = Segment { seq: p.tcp.seq, ack: p.tcp.ack, flags, window: p.tcp.window, len: p.payload_len, captured, options };
        let Some(conn) = self.tcp.get_mut(slot as usize) else {
            // Cannot happen (new TCP flows get a connection); report the packet without state.
            sink.packet(&StackPacket { data, parsed: Some(p), flow: Some((slot, dir as u8)), datagram, wire_len, tcp: None }, self.flows);
            return;
        };
        // Customized per flow: once its subscribers no longer want its bytes, only its state is
        // tracked (what it still keeps is let go).
        let depth = if depth == Depth::Reassembly && !sink.wants_streams(slot) {
            conn.stop_reassembly(&mut Keeper(&mut *sink));
            Depth::State
        } else {
            depth
        };
        conn.update(dir, &seg, depth);
        let snapshot = conn.snapshot();
        let pkt = StackPacket { data, parsed: Some(p), flow: Some((slot, dir as u8)), datagram, wire_len, tcp: Some(&snapshot) };
        sink.packet(&pkt, self.flows);
        let ctx = StreamContext { flow: self.flows.get(slot), slot, snapshot: &snapshot };
        let mut adapter = StreamAdapter { sink, ctx };
        self.tcp[slot as usize].streams(dir, &seg, depth, self.cfg.stream_limits, &mut adapter);
    }

    /// Ends the flow in `slot`: its streams report what they still keep, then the flow's end
    /// with `reason` — or, for `Reason::UnlessClosed`, FIN/RST when the connection closed.
    fn end_flow<S: StackSink>(&mut self, slot: u32, reason: EndReason, sink: &mut S) {
        let is_tcp = self.flows.get(slot).tuple.ip_proto == ip_proto::TCP;
        let mut last_state = None;
        if let Some(conn) = self.tcp.get_mut(slot as usize).filter(|_| self.cfg.tcp.is_some() && is_tcp) {
            let snapshot = conn.snapshot();
            let ctx = StreamContext { flow: self.flows.get(slot), slot, snapshot: &snapshot };
            conn.finish(&mut StreamAdapter { sink: &mut *sink, ctx });
            // The end's state counts what `finish` reported (data kept behind holes, gaps).
            last_state = Some(conn.snapshot());
            for dir in 0..2 {
                self.stats.streams += conn.stream(dir).stats;
            }
        }
        let entry = self.flows.remove(slot);
        let reason = match reason {
            EndReason::Exactly(r) => r,
            EndReason::UnlessClosed(r) => close_reason(&entry).unwrap_or(r),
        };
        self.stats.ended[usize::from(reason)] += 1;
        sink.flow_ended(&entry, slot, reason, self.clock_ns, last_state.as_ref());
    }

    /// A new flow for the packet `p`; `server_sent`: it was sent by the flow's server (a
    /// mid-stream pickup, [`MidstreamClient::Detect`]).
    fn new_flow<S: StackSink>(&mut self, key: FlowKey, hash: u64, side: u8, p: &Parsed, server_sent: bool, sink: &mut S) -> u32 {
        if self.flows.is_full() {
            if let Some(victim) = self.flows.lru_victim() {
                self.end_flow(victim, EndReason::Exactly(REASON_EVICTED), sink);
            }
        }
        let (ports, class) = match p.ip_proto {
            ip_proto::TCP => {
                self.stats.flows_tcp += 1;
                ([p.src_port, p.dst_port], FlowClass::TcpOpen)
            }
            ip_proto::UDP => {
                self.stats.flows_udp += 1;
                ([p.src_port, p.dst_port], FlowClass::Udp)
            }
            _ => {
                self.stats.flows_other += 1;
                ([0, 0], FlowClass::Other)
            }
        };
        let mut tuple = FlowTuple { ip_version: p.ip_version, ip_proto: p.ip_proto, vlan: p.vlan, ports, addrs: [p.src, p.dst] };
        // The originator is the client: a TCP connection first seen at its SYN+ACK (its SYN not
        // captured) was opened by the packet's receiver, and one picked up later by the side
        // `[flow] midstream_client` names. Decided here once, so that every part of mbox (flow
        // records, the monitor's directions, NFs' to_server) orients it alike.
        let mut side = side;
        let synack = p.ip_proto == ip_proto::TCP
            && p.has_l4_header()
            && p.tcp.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK;
        if synack || server_sent {
            tuple.addrs.swap(0, 1);
            tuple.ports.swap(0, 1);
            side ^= 1;
        }
        // Cannot fail: a slot was freed above if the table was full.
        let slot = self.flows.insert(key, hash, tuple, side, class, self.clock_ns).unwrap_or(0);
        if self.cfg.tcp.is_some() && p.ip_proto == ip_proto::TCP {
            if self.tcp.len() <= slot as usize {
                self.tcp.resize_with(slot as usize + 1, TcpConn::default);
            }
            self.tcp[slot as usize].reset();
        }
        sink.flow_started(self.flows.get(slot), slot, self.clock_ns);
        slot
    }
}

/// FIN or RST when a TCP flow has closed, else `None`.
fn close_reason(e: &FlowEntry) -> Option<u8> {
    if e.close & close_bits::RST != 0 {
        Some(REASON_RST)
    } else if e.close & (close_bits::FIN_SIDE0 | close_bits::FIN_SIDE1) == close_bits::FIN_SIDE0 | close_bits::FIN_SIDE1 {
        Some(REASON_FIN)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EthernetAddress, VlanTags};
    use crate::wire::frame::{IpRepr, TcpFrame};
    use crate::wire::parse_frame;
    use crate::wire::tcp::{TcpOptions, TcpRepr};
    use std::net::IpAddr;

    #[test]
    fn a_wrong_tcp_checksum_is_told_apart_over_ipv4_and_ipv6_unless_the_segment_was_cut() {
        for (src, dst) in [
            (IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 19, 0, 1])),
            ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
        ] {
            let f = TcpFrame {
                src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                vlan: VlanTags::NONE,
                ip: IpRepr::new(src, dst, ip_proto::TCP, 0, 64).unwrap(),
                tcp: TcpRepr {
                    src_port: 40000,
                    dst_port: 80,
                    seq: 7,
                    ack: 9,
                    flags: tcp_flags::ACK,
                    window: 512,
                    urgent: 0,
                    options: TcpOptions::default(),
                    payload_len: 5,
                },
            };
            let mut buf = vec![0u8; f.len()];
            buf[f.payload_offset()..].copy_from_slice(b"hello");
            f.emit(&mut buf).unwrap();
            let wire_len = buf.len() as u32;
            let parsed = |b: &[u8]| match parse_frame(b, wire_len, LinkType::Ethernet, ParseOptions::default()) {
                Ok(Packet::Ip(p)) => p,
                other => panic!("{other:?}"),
            };
            assert!(!wrong_tcp_checksum(&buf, &parsed(&buf)), "{src}: as sent");
            buf[f.payload_offset()] ^= 0x20;
            assert!(wrong_tcp_checksum(&buf, &parsed(&buf)), "{src}: a payload bit flipped");
            let cut = &buf[..buf.len() - 1];
            assert!(!wrong_tcp_checksum(cut, &parsed(cut)), "{src}: cut by the snaplen, nothing to tell");
        }
    }

    #[test]
    fn a_midstream_first_packet_is_the_servers_when_it_opens_a_servers_message_or_leaves_a_low_port_empty() {
        assert!(sent_by_server(b"HTTP/1.1 200 OK\r\n", [8080, 50000]), "an HTTP response, whatever the ports");
        assert!(sent_by_server(&[0x16, 3, 3, 0, 80, 2, 0, 0, 76], [50000, 50001]), "a TLS ServerHello");
        assert!(!sent_by_server(&[0x16, 3, 1, 0, 80, 1, 0, 0, 76], [50000, 443]), "a ClientHello");
        assert!(!sent_by_server(b"GET / HTTP/1.1\r\n", [80, 50000]), "a request, whatever the ports");
        assert!(sent_by_server(b"", [443, 50000]), "an empty segment from a well-known port to an ephemeral one");
        assert!(!sent_by_server(b"", [50000, 443]));
        assert!(!sent_by_server(b"", [8080, 50000]), "no port below 1024: the sender stays the client");
        assert!(!sent_by_server(b"\x17\x03\x03\x00\x10", [443, 50000]), "data that says nothing: the sender stays the client");
    }
}
