//! stream-hash: reads every reassembled byte of every TCP connection and hashes each direction.
//! At the connection's end it writes one JSON line per direction: sender, receiver, bytes, hash,
//! gaps. It is the "NF that reads every byte" of the chain-length experiment, and a check of the
//! reassembly the host delivers.
//!
//! Two ways to get the bytes:
//! - `mode = "events"` (default): from the host's consolidated stack, as `FLOW/TCP/DATA_RDY`
//!   events read in place.
//! - `mode = "own-stack"`: the mOS-style baseline. The NF subscribes to raw packets (`PKT`;
//!   set `subscribe = ["PKT"]` in the config) and runs a stack of its own (the same
//!   `mbox-stack` code: parsing, flow table, TCP monitor, reassembly), as an NF that links its
//!   own stack does. Out-of-order data is copied: the NF cannot keep the host's packets.
//!
//! Arguments: `mode`; `output` (file, `-` for stdout; default: no output); `algorithm`
//! (`sha256`, `fold` — a 64-bit multiply-xor chain — or `sum`, a word sum that reads 8 bytes
//! at a time and vectorizes; default `sum`); `stop_after_bytes` (events mode: unsubscribe from
//! a connection's bytes after that many; default 0 = never); `flow_slots` (own-stack mode: the
//! stack's flow table size; default 65536); `subscribe_ports` (events mode: hash only the
//! connections to these server ports, turning their bytes on per flow with `Host::subscribe`
//! when `FLOW/TCP/NEW` arrives — the config subscribes to `FLOW/TCP/NEW` and
//! `FLOW/TCP/TERMINATE` and lists the byte events in `subscribe_per_flow`; default: every
//! connection, by plain subscription).

use mbox_abi::kit::{Args, LineWriter, StreamCursor};
use mbox_abi::{
    builtin, export_nf, Counters, EventHeader, FlowRef, FlowTcpEvent, FlowTuple, Host, NetworkFunction, NfInit, PktEvent, Plugin,
    PluginInfo, StreamDataEvent, StreamGapEvent, SubscribeStatus, TcpSnapshot, Verdict,
};
use mbox_stack::flow_table::{FlowEntry, FlowTable, Timeouts};
use mbox_stack::l23::{L23Stack, StackConfig, StackPacket, StackSink, StreamContext};
use mbox_stack::tcp::stream::{Source, StreamLimits};
use mbox_stack::tcp::Depth;
use mbox_stack::wire::{ip_proto, LinkType, ParseOptions};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha256,
    Fold,
    Sum,
}

/// A direction's running hash. SHA-256's state is boxed so that the word hashes' connection
/// table stays small (an NF reading every byte touches one entry per segment).
#[derive(Clone)]
enum Hasher {
    Sha256(Box<Sha256>),
    Word(u64),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Box::new(Sha256::new())),
            _ => Hasher::Word(0),
        }
    }

    fn update(&mut self, algorithm: Algorithm, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Word(acc) => {
                let mut chunks = bytes.chunks_exact(8);
                if algorithm == Algorithm::Fold {
                    for c in &mut chunks {
                        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
                        *acc = (*acc ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
                    }
                } else {
                    // Independent additions: the compiler vectorizes this loop.
                    let sum = (&mut chunks).fold(0u64, |s, c| s.wrapping_add(u64::from_le_bytes(c.try_into().unwrap_or_default())));
                    *acc = acc.wrapping_add(sum);
                }
                for &b in chunks.remainder() {
                    *acc = (*acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            Hasher::Word(acc) => format!("{acc:016x}"),
        }
    }
}

/// One direction of a connection.
#[derive(Clone)]
struct Direction {
    hasher: Hasher,
    bytes: u64,
    gaps: u64,
    gap_bytes: u64,
    /// Bytes whose events never came (the host's drop policy with a lagging NF).
    cursor: StreamCursor,
    lost_bytes: u64,
}

#[derive(Clone)]
struct Conn {
    id: u64,
    dirs: [Direction; 2],
    unsubscribed: bool,
}

impl Conn {
    fn new(id: u64, algorithm: Algorithm) -> Conn {
        let fresh = || Direction {
            hasher: Hasher::new(algorithm),
            bytes: 0,
            gaps: 0,
            gap_bytes: 0,
            cursor: StreamCursor::default(),
            lost_bytes: 0,
        };
        Conn { id, dirs: [fresh(), fresh()], unsubscribed: false }
    }
}

/// The per-connection hashes and the output, whichever way the bytes come.
struct Tables {
    out: Option<LineWriter>,
    algorithm: Algorithm,
    stop_after: u64,
    /// By shard (0 for the NF's own stack), then flow slot.
    conns: Vec<Vec<Option<Conn>>>,
    /// Only connections to these server ports, subscribed per flow (empty: all).
    ports: Vec<u16>,
    /// Per-flow subscriptions the host refused (it answers why; counted, not fatal).
    subscribe_refused: u64,
}

impl Tables {
    fn conn(&mut self, shard: u16, slot: u32, id: u64) -> &mut Conn {
        let table = &mut self.conns[usize::from(shard)];
        let slot = slot as usize;
        if table.len() <= slot {
            table.resize(slot + 1, None);
        }
        let entry = &mut table[slot];
        if entry.as_ref().is_none_or(|c| c.id != id) {
            *entry = Some(Conn::new(id, self.algorithm));
        }
        entry.as_mut().unwrap_or_else(|| unreachable!("just set"))
    }

    /// Hashes bytes of direction `dir`; true when the connection has had enough (stop_after).
    fn data(&mut self, shard: u16, slot: u32, id: u64, dir: u8, offset: u64, bytes: &[u8]) -> bool {
        let (algorithm, stop_after) = (self.algorithm, self.stop_after);
        let conn = self.conn(shard, slot, id);
        let d = &mut conn.dirs[usize::from(dir.min(1))];
        d.lost_bytes += d.cursor.advance(offset, bytes.len() as u64);
        d.hasher.update(algorithm, bytes);
        d.bytes += bytes.len() as u64;
        if stop_after > 0 && !conn.unsubscribed && conn.dirs[0].bytes + conn.dirs[1].bytes >= stop_after {
            conn.unsubscribed = true;
            return true;
        }
        false
    }

    fn gap(&mut self, shard: u16, slot: u32, id: u64, dir: u8, offset: u64, len: u64) {
        let d = &mut self.conn(shard, slot, id).dirs[usize::from(dir.min(1))];
        d.gaps += 1;
        d.gap_bytes += len;
        d.lost_bytes += d.cursor.advance(offset, len);
    }

    /// The connection ended; `snapshot` (its state at the end) says how long each stream was.
    fn end(&mut self, shard: u16, slot: u32, id: u64, tuple: &FlowTuple, snapshot: &TcpSnapshot) {
        let entry = self.conns[usize::from(shard)].get_mut(slot as usize).filter(|e| e.as_ref().is_some_and(|c| c.id == id));
        let conn = match entry.and_then(Option::take) {
            Some(conn) => conn,
            // Not one of the connections asked for.
            None if !self.ports.is_empty() => return,
            // No event of a connection that carried bytes came: all were lost (drop policy).
            None if snapshot.sides.iter().any(|s| s.stream_bytes > 0) => Conn::new(id, self.algorithm),
            None => return,
        };
        let Some(out) = self.out.as_mut() else { return };
        for (dir, mut d) in conn.dirs.into_iter().enumerate() {
            if !conn.unsubscribed {
                d.lost_bytes += d.cursor.finish(snapshot.sides[dir].stream_bytes);
            }
            let line = json!({
                "flow_id": conn.id,
                "direction": if dir == 0 { "orig" } else { "reply" },
                "src_ip": tuple.addr(dir).to_string(),
                "src_port": tuple.ports[dir],
                "dst_ip": tuple.addr(1 - dir).to_string(),
                "dst_port": tuple.ports[1 - dir],
                "bytes": d.bytes,
                "hash": d.hasher.finish(),
                "gaps": d.gaps,
                "gap_bytes": d.gap_bytes,
                "lost_bytes": d.lost_bytes,
                "unsubscribed": conn.unsubscribed,
            });
            out.line(&line.to_string());
        }
    }
}

/// The baseline's own stack, and copies of the out-of-order payloads it keeps.
struct OwnStack {
    stack: L23Stack,
    kept: Vec<Vec<u8>>,
    free: Vec<u32>,
}

/// The own stack's sink: hashes what it reports.
struct OwnSink<'a> {
    tables: &'a mut Tables,
    kept: &'a mut Vec<Vec<u8>>,
    free: &'a mut Vec<u32>,
    /// The TCP payload of the packet the stack reported last (the frame, or a datagram it
    /// reassembled): valid until `L23Stack::process` returns, which is when stream reports
    /// about it are made.
    payload: (*const u8, usize),
}

/// The bytes `payload` points at.
///
/// # Safety
/// `payload` must be the last packet's payload as `OwnSink::payload` describes, read during the
/// `L23Stack::process` call that reported it.
unsafe fn payload<'x>(payload: (*const u8, usize)) -> &'x [u8] {
    if payload.0.is_null() {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(payload.0, payload.1) }
}

impl StackSink for OwnSink<'_> {
    fn has_room(&self, _events: usize) -> bool {
        true
    }
    fn flow_started(&mut self, _flow: &FlowEntry, _slot: u32, _ts_ns: u64) {}
    fn flow_ended(&mut self, flow: &FlowEntry, slot: u32, _reason: u8, _ts_ns: u64, tcp: Option<&TcpSnapshot>) {
        if let Some(snapshot) = tcp.filter(|_| flow.tuple.ip_proto == ip_proto::TCP) {
            self.tables.end(0, slot, flow.id, &flow.tuple, snapshot);
        }
    }
    fn packet(&mut self, pkt: &StackPacket<'_>, _flows: &FlowTable) {
        self.payload = match pkt.parsed {
            Some(p) => {
                let start = (p.payload_offset as usize).min(pkt.data.len());
                let end = (start + p.payload_len as usize).min(pkt.data.len());
                (pkt.data[start..].as_ptr(), end - start)
            }
            None => (std::ptr::null(), 0),
        };
    }
    fn keep(&mut self) -> Option<u32> {
        // SAFETY: called by the stack while it processes the packet it last reported.
        let bytes = unsafe { payload(self.payload) };
        Some(match self.free.pop() {
            Some(i) => {
                let v = &mut self.kept[i as usize];
                v.clear();
                v.extend_from_slice(bytes);
                i
            }
            None => {
                self.kept.push(bytes.to_vec());
                self.kept.len() as u32 - 1
            }
        })
    }
    fn unkeep(&mut self, token: u32) {
        self.free.push(token);
    }
    fn stream_data(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u32, source: Source) {
        let (buf, start) = match source {
            // SAFETY: as in `keep`.
            Source::Current { start } => (unsafe { payload(self.payload) }, start),
            Source::Kept { token, start } => (&self.kept[token as usize][..], start),
        };
        let bytes = &buf[start as usize..(start as usize + len as usize).min(buf.len())];
        self.tables.data(0, ctx.slot, ctx.flow.id, dir, offset, bytes);
    }
    fn stream_gap(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u64, _reason: u8) {
        self.tables.gap(0, ctx.slot, ctx.flow.id, dir, offset, len);
    }
}

pub struct StreamHash {
    tables: Tables,
    own: Option<Box<OwnStack>>,
}

impl StreamHash {
    fn data(&mut self, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let flow: FlowRef = ev.tcp.flow.header.flow;
        if self.tables.data(flow.shard, flow.slot, flow.id, flow.dir, ev.offset, ev.bytes()) {
            host.unsubscribe(&flow, builtin::FLOW_TCP_DATA_RDY);
            host.unsubscribe(&flow, builtin::FLOW_TCP_GAP);
        }
    }

    /// A connection began: one to a listed port gets its bytes turned on (the host applies it
    /// asynchronously, so its first bytes may already have gone by: they count as lost).
    fn new_connection(&mut self, ev: &FlowTcpEvent, host: &mut Host<'_>) {
        let flow = ev.flow.header.flow;
        if self.tables.ports.is_empty() || !self.tables.ports.contains(&ev.flow.tuple.ports[1]) {
            return;
        }
        for ty in [builtin::FLOW_TCP_DATA_RDY, builtin::FLOW_TCP_GAP] {
            if host.subscribe(&flow, ty) != SubscribeStatus::Done {
                self.tables.subscribe_refused += 1;
            }
        }
        self.tables.conn(flow.shard, flow.slot, flow.id);
    }

    fn own_packet(&mut self, pkt: &PktEvent) {
        let Some(own) = self.own.as_mut() else { return };
        let Some(link) = LinkType::from_linktype(u32::from(pkt.link_type)) else { return };
        let OwnStack { stack, kept, free } = &mut **own;
        let mut sink = OwnSink { tables: &mut self.tables, kept, free, payload: (std::ptr::null(), 0) };
        let _ = stack.process(pkt.bytes(), link, pkt.wire_len, pkt.header.ts_ns, &mut sink);
    }

    fn own_finish(&mut self) {
        if let Some(own) = self.own.as_mut() {
            let OwnStack { stack, kept, free } = &mut **own;
            let mut sink = OwnSink { tables: &mut self.tables, kept, free, payload: (std::ptr::null(), 0) };
            stack.drain(&mut sink);
        }
    }
}

impl NetworkFunction for StreamHash {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        if self.own.is_some() {
            if let Some(pkt) = event.view::<PktEvent>() {
                self.own_packet(pkt);
            }
        } else if let Some(ev) = event.view::<StreamDataEvent>() {
            self.data(ev, host);
        } else if let Some(ev) = event.view::<StreamGapEvent>() {
            let flow = ev.tcp.flow.header.flow;
            self.tables.gap(flow.shard, flow.slot, flow.id, flow.dir, ev.offset, ev.len);
        } else if let Some(ev) = event.view::<FlowTcpEvent>() {
            let flow = ev.flow.header.flow;
            if event.ty.is_a(builtin::FLOW_TCP_NEW) {
                self.new_connection(ev, host);
            } else {
                self.tables.end(flow.shard, flow.slot, flow.id, &ev.flow.tuple, &ev.snapshot);
            }
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        if !self.tables.ports.is_empty() {
            out.set("subscribe_refused", self.tables.subscribe_refused);
        }
    }

    fn on_idle(&mut self) {
        if let Some(out) = &mut self.tables.out {
            out.flush();
        }
    }

    fn on_finish(&mut self) -> Result<(), String> {
        self.own_finish();
        self.tables.out.as_mut().map_or(Ok(()), LineWriter::finish)
    }

    fn reopen_outputs(&mut self) -> Result<String, String> {
        self.tables.out.as_mut().map_or(Ok("no output file".into()), LineWriter::reopen)
    }
}

impl Plugin for StreamHash {
    const INFO: PluginInfo = PluginInfo {
        name: "stream-hash",
        version: env!("CARGO_PKG_VERSION"),
        description: "hashes every reassembled byte of each TCP direction (from events, or with a stack of its own)",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/GAP", "FLOW/TCP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };
    const OUTPUTS: &'static [&'static str] = &["output"];

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args =
            Args::parse(init.args_json.as_str(), &["output", "algorithm", "stop_after_bytes", "mode", "flow_slots", "subscribe_ports"])?;
        let out = match args.string("output", "")?.as_str() {
            "" => None,
            path => Some(LineWriter::open(path, init.replacing).map_err(|e| format!("cannot open output `{path}`: {e}"))?),
        };
        let algorithm = match args.string("algorithm", "sum")?.as_str() {
            "sha256" => Algorithm::Sha256,
            "fold" => Algorithm::Fold,
            "sum" => Algorithm::Sum,
            other => return Err(format!("argument `algorithm` must be `sha256`, `fold` or `sum`, not `{other}`")),
        };
        let own = match args.string("mode", "events")?.as_str() {
            "events" => None,
            "own-stack" => {
                let slots = args.u64("flow_slots", 65_536)?.clamp(1, 1 << 24) as usize;
                let flow = Timeouts {
                    tcp_open_ns: 600_000_000_000,
                    tcp_closed_ns: 10_000_000_000,
                    udp_ns: 120_000_000_000,
                    other_ns: 60_000_000_000,
                };
                let cfg = StackConfig {
                    flow_slots: slots,
                    timeouts: flow,
                    vlan_in_key: true,
                    parse: ParseOptions::default(),
                    max_fragmented_datagrams: 256,
                    fragment_timeout_ns: 30_000_000_000,
                    tcp: Some(Depth::Reassembly),
                    stream_limits: StreamLimits::default(),
                    verify_tcp_checksums: false,
                    midstream_client: Default::default(),
                };
                Some(Box::new(OwnStack { stack: L23Stack::new(cfg, 0), kept: Vec::new(), free: Vec::new() }))
            }
            other => return Err(format!("argument `mode` must be `events` or `own-stack`, not `{other}`")),
        };
        let shards = if own.is_some() { 1 } else { init.shards as usize };
        let mut ports = Vec::new();
        for port in args.u64_list("subscribe_ports")? {
            ports.push(u16::try_from(port).map_err(|_| format!("argument `subscribe_ports`: {port} is not a port"))?);
        }
        let tables = Tables {
            out,
            algorithm,
            stop_after: args.u64("stop_after_bytes", 0)?,
            conns: (0..shards).map(|_| Vec::new()).collect(),
            ports,
            subscribe_refused: 0,
        };
        Ok(StreamHash { tables, own })
    }
}

export_nf!(StreamHash);
