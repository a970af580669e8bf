//! What a shard serves itself (`[[service]]`): it answers ARP for the services' addresses and
//! terminates their TCP connections with the Endpoint µStack (`mbox_stack::endpoint`) — the
//! connection table and its bounds, the shard's timer wheel, the segments connections send
//! (built into the shard's own buffers, out of the port the client is on), and the events the
//! services' NFs get, in the same arena and over the same lanes as the stack's.
//!
//! Connections are flows of their own: their flow slots follow the flow table's, their ids are
//! marked apart from the table's, and only their service's NFs see their events (and those NFs
//! see no other flow's). What NFs write comes back through `stream_out`.
//!
//! A service on the Splicer (`stack = "splicer"`) starts the same way; [`splice`] takes its
//! connections on from an NF's bind: the backend's connection, then both translated into each
//! other frame by frame. A service on the L4 NAT (`stack = "l4"`) has no connections of
//! mbox's own: [`l4`] keeps a table of flows, bound once by an NF and then translated.

mod l4;
mod neighbors;
mod proxy;
mod source_ports;
mod splice;
mod tap;
pub use l4::L4Spec;
pub use neighbors::Neighbors;
pub use proxy::ProxySpec;
pub use splice::SplicerSpec;

use super::buffer_budget::{BufferBudget, ConnMemory, PROMISE_STEP};
use super::stream_out::{decode_backend, Pending, Request, SendCredits, StreamCommand, StreamReader};
use crate::config::{copy_room, parse_mac, ServiceConfig};
use mbox_abi::{
    FlowTuple, BIND_CONNECTED, DIR_ORIG, DIR_REPLY, END_FIN, END_RST, REASON_END_OF_INPUT, REASON_FIN, REASON_RST, REASON_TIMEOUT,
};
use mbox_stack::endpoint::isn::{cookie_mss_fits, FourTuple, IsnSecret};
use mbox_stack::endpoint::{CloseReason, ConnEvent, ConnSink, Connection, Payload, SegmentIn, SegmentOut, State};
use mbox_stack::timer_wheel::TimerWheel;
use mbox_stack::wire::arp::{ArpPacket, ArpRepr, Operation};
use mbox_stack::wire::ethernet::{ethertype, EthernetAddress, EthernetRepr, VlanTags, HEADER_LEN as ETHERNET_LEN};
use mbox_stack::wire::frame::{Checksums, IpRepr, TcpFrame};
use mbox_stack::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use mbox_stack::wire::tcp::TcpRepr;
use mbox_stack::wire::tcp_flags::{ACK, RST, SYN};
use mbox_stack::wire::{ip_proto, ndp, WireError};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// The MAC an offline run answers with when a service names none (locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// How often, while connections wait for buffer memory, idle connections' buffers are freed
/// for them (a pass over the table).
const RECLAIM_EVERY_NS: u64 = 10_000_000;

/// Flow ids of connections have this bit set: the flow table's ids (`shard << 48 | n`) never
/// reach it.
const CONN_ID_BIT: u64 = 1 << 47;

/// Events one connection operation causes at most: its segment's data and the ranges it
/// completes (one per kept range, 64 at most), the handshake, the peer's close, room, the end.
pub const EVENTS_PER_OPERATION: usize = crate::config::SERVICE_EVENTS_PER_OPERATION;

/// A service as the shards run it.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub ports: Vec<u16>,
    pub mac: Option<[u8; 6]>,
    /// NFs (by bit) that get its events.
    pub nfs: u64,
    pub endpoint: mbox_stack::endpoint::Config,
    /// Connections per shard at most, and half-open ones before SYNs get cookies.
    pub max_connections: usize,
    pub syn_backlog: usize,
    /// Bytes its connections' buffers may hold per shard, promises to NFs included.
    pub buffer_memory: u64,
    /// A Splicer service's own settings (`None`: the Endpoint).
    pub splicer: Option<SplicerSpec>,
    /// An l4 service's own settings.
    pub l4: Option<L4Spec>,
    /// A Split Proxy service's own settings.
    pub proxy: Option<ProxySpec>,
}

/// The window a splicer's client connection sizes its window-scale shift for (see
/// `ServiceSpec::new`).
const SPLICED_SCALE_WINDOW: u32 = 8 << 20;

impl ServiceSpec {
    /// The spec of `cfg`, whose NFs are `nfs` (by bit, resolved from their names).
    pub fn new(cfg: &ServiceConfig, nfs: u64) -> ServiceSpec {
        let splicer = SplicerSpec::new(cfg);
        // A splicer's client may send what is held and no more before the bind.
        let window = if splicer.is_some() { cfg.hold_bytes } else { cfg.receive_window };
        let endpoint = mbox_stack::endpoint::Config {
            send_buffer: cfg.send_buffer.min(u64::from(u32::MAX)) as u32,
            recv_window: window.min(u64::from(u32::MAX)) as u32,
            // Once spliced, the client sees the backend's windows in mbox's scale: sized as
            // Linux's default (shift 7, windows to 8 MiB), not for the hold.
            scale_window: if splicer.is_some() { SPLICED_SCALE_WINDOW } else { 0 },
            time_wait_ns: u64::try_from(cfg.time_wait.as_nanos()).unwrap_or(u64::MAX),
            ..mbox_stack::endpoint::Config::default()
        };
        ServiceSpec {
            name: cfg.display_name(),
            addrs: cfg.address.clone(),
            ports: cfg.port.clone(),
            mac: cfg.mac.as_deref().and_then(|m| parse_mac(m).ok()),
            nfs,
            endpoint,
            max_connections: cfg.max_connections,
            syn_backlog: cfg.syn_backlog(),
            buffer_memory: cfg.buffer_memory,
            splicer,
            l4: L4Spec::new(cfg),
            proxy: ProxySpec::new(cfg),
        }
    }
}

/// Declares [`ServeStats`] from one list of counters: the struct, its names (as the report's
/// `services` object and the metrics call them) and the sum over shards.
macro_rules! serve_stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// What the services of one shard counted (the run's report sums the shards).
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct ServeStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl ServeStats {
            /// Every count with its name.
            pub fn named(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// Adds another shard's counts.
            pub fn add(&mut self, o: &ServeStats) {
                $(self.$name += o.$name;)*
            }
        }
    };
}

serve_stats! {
    arp_requests,
    arp_replies,
    /// IPv6 neighbour solicitations for service addresses, and the advertisements answering.
    nd_solicitations,
    nd_advertisements,
    segments_in,
    segments_out,
    accepted,
    established,
    closed,
    /// Connections that ended by a reset (either side) or a timeout.
    aborted,
    /// SYNs refused with a RST: the service's connections were at `max_connections`.
    refused_full,
    /// Connections in TIME-WAIT ended early to make room for new ones (the service was full).
    time_wait_recycled,
    /// SYNs answered with a cookie (the half-open connections were at `syn_backlog`), and the
    /// connections their ACKs opened.
    cookies_sent,
    cookies_accepted,
    /// SYNs past `syn_backlog` announcing an MSS below what a cookie can carry (536): dropped,
    /// the client sends them again.
    cookies_refused_mss,
    /// Segments answered with a RST: a closed port, or no connection.
    resets_sent,
    /// Frames to a service address dropped as malformed (bad checksum, truncated).
    malformed,
    /// Client bytes that found no copy room and were not delivered (0 unless the room check is
    /// wrong: counted rather than silent).
    bytes_not_delivered,
    /// NF requests for connections that had ended, and their bytes (dropped).
    writes_to_ended,
    bytes_to_ended,
    bytes_sent,
    bytes_received,
    /// Segments not sent for want of a buffer (TCP sends them again).
    no_buffer,
    /// Times a connection's NFs had to wait to send because the service's `buffer_memory` was
    /// all held (they get `SEND_ROOM` once some is free).
    send_waits_memory,
    /// Out-of-order segments not kept because the service's `buffer_memory` was all held (the
    /// client sends them again); counted as each connection ends.
    out_of_order_refused_memory,
    /// Idle connections' buffers freed to make room when memory ran short.
    buffers_released,
    /// The most bytes the service's connections' buffers held at once (per shard; the report
    /// sums the shards' peaks).
    buffer_bytes_peak,
    /// Splicer: binds taken, and those refused (not a splicer's connection, bound already,
    /// mbox sent it bytes, or no source port free).
    binds,
    binds_refused,
    /// Splicer: backends whose MAC no ARP reply gave, that answered the SYN with a RST, or
    /// did not answer it in `connect_timeout`.
    backends_unresolved,
    backends_refused,
    backends_timed_out,
    /// Splicer: connections spliced (the backend answered), and splices lost after (held bytes
    /// never acknowledged, or a RST before they were).
    spliced,
    splices_lost,
    /// Splicer: connections no bind came for in `hold_timeout`, and clients refused (503 or
    /// RST) for any of these reasons.
    hold_timeouts,
    clients_refused,
    /// Splicer: frames translated and sent on, client to backend and back.
    spliced_to_backend,
    spliced_to_client,
    /// Splicer: frames of a splice that could not be translated (dropped), and splices
    /// forgotten after `idle_timeout` of silence.
    splice_errors,
    splice_idle_timeouts,
    /// Splicer: RSTs that fell outside their receiver's window (sent on, the splice kept).
    splice_rsts_out_of_window,
    /// Splicer: backends' bytes copied for NFs that read them (`FLOW/TCP/BACKEND_DATA`), and
    /// those reported as gaps (no copy buffer left, or kept out of order beyond the bound).
    backend_bytes_read,
    backend_gap_bytes,
    /// Splicer: splices whose backend's bytes were no longer read for want of event room or
    /// copy buffers (the splice goes on; the NFs see no more of them).
    backend_reads_given_up,
    /// Splicer and L4: ARP requests sent for backends, and replies taken.
    arp_requests_sent,
    arp_replies_taken,
    /// Splicer and L4: ARP replies for a source or l4 service address that answered nothing
    /// mbox asked (out of that port): ignored.
    arp_replies_unasked,
    /// Splicer and L4: ARP requests not sent, the neighbour table full of answered addresses
    /// (`neighbors::MAX_NEIGHBORS`): their binds end unresolved.
    neighbors_full,
    /// L4: flows started (their NFs asked for a bind), and those whose backend took them (a
    /// TCP backend's SYN-ACK, or the first packet sent).
    l4_flows,
    l4_bound,
    /// L4: packets translated and sent on, client to backend and back.
    l4_to_backend,
    l4_to_client,
    /// L4: packets of a flow dropped while it waited for its bind or its backend's MAC (the
    /// newest one waits instead), and flows no bind came for in `connect_timeout`.
    l4_dropped_before_bind,
    l4_bind_timeouts,
    /// Proxy: server sides opened (binds whose backend's MAC was known), and those the
    /// backend accepted; server sides that ended closed, and reset or timed out.
    proxy_connects,
    proxy_connected,
    proxy_server_closes,
    proxy_server_aborts,
    /// L4: flows forgotten after their idle timeout, and fragments to a service or source
    /// NAT address (dropped: a non-first fragment carries no ports to translate by).
    l4_idle_timeouts,
    l4_fragments_dropped,
    /// L4: packets to a service or source NAT address that are neither TCP nor UDP (ICMP:
    /// its errors quote a header mbox would have to translate too): dropped.
    l4_untranslated,
    /// L4: RSTs that fell outside their receiver's window (sent on, the flow kept), and
    /// packets of a flow that came in on the other side's port (dropped).
    l4_rsts_out_of_window,
    l4_wrong_port,
}

/// How far past the receiver's last ACK a RST may lie and still end a splice or an l4 flow: a
/// window as large as Linux lets one grow (a RST at random has 1 chance in 256 of falling
/// there).
const RST_REACH: u32 = 16 << 20;

/// Whether a RST with sequence number `seq` lies within reach of `receiver_ack`, the last ACK
/// its receiver sent (its RCV.NXT, as RFC 5961 3.2 checks); with none seen, it does.
fn rst_in_reach(seq: u32, receiver_ack: Option<u32>) -> bool {
    receiver_ack.is_none_or(|a| seq.wrapping_sub(a) < RST_REACH)
}

/// Where the services report: the shard's event machinery and its way out.
pub trait ServeSink {
    /// Whether `events` more events, each possibly holding a copy, and `bytes` of copies fit
    /// now.
    fn has_room(&self, events: usize, bytes: usize) -> bool;
    /// A connection's flow starts: only `nfs` see its events.
    fn conn_started(&mut self, slot: u32, id: u64, nfs: u64);
    /// Emits a `FlowTcpEvent` of kind `kind` about a connection.
    fn conn_event(&mut self, kind: ConnEventKind, conn: &ConnInfo, reason: u8, ts_ns: u64);
    /// Emits `FLOW/TCP/DATA_RDY` with a copy of `bytes` (from `offset` of the stream of
    /// `conn.dir`: the client's, or a proxy's server side's); the copy is `conn`'s until the
    /// NFs are done with it, then reported read.
    fn conn_data(&mut self, conn: &ConnInfo, offset: u64, bytes: &[u8], ts_ns: u64) -> bool;
    /// Whether some NF of `conn` reads its backend's bytes (`FLOW/TCP/BACKEND_DATA`) now: a
    /// splice copies them only then.
    fn wants_backend_data(&self, conn: &ConnInfo) -> bool;
    /// Emits `FLOW/TCP/BACKEND_DATA` with a copy of `bytes` (a splice's backend to its
    /// client, from `offset` of the backend's stream); false when no copy could be made.
    fn backend_data(&mut self, conn: &ConnInfo, offset: u64, bytes: &[u8], ts_ns: u64) -> bool;
    /// Emits `FLOW/TCP/GAP` for the backend's direction: those bytes will never be reported.
    fn backend_gap(&mut self, conn: &ConnInfo, offset: u64, len: u64, reason: u8, ts_ns: u64);
    /// Emits `FLOW/TCP/STREAM_END` for the direction of `conn.dir`.
    fn conn_end(&mut self, conn: &ConnInfo, offset: u64, reason: u8, ts_ns: u64);
    /// Builds a frame in a fresh buffer and sends it out of `port`.
    fn originate(&mut self, port: u16, ts_ns: u64, fill: &mut dyn FnMut(&mut Vec<u8>)) -> bool;
}

/// The `FlowTcpEvent`s a connection's NFs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEventKind {
    New,
    SendRoom,
    /// A Splicer connection's bind has its outcome (`reason`: a `BIND_*`).
    Bound,
    Terminate,
}

/// A connection as its events and segments name it.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub id: u64,
    /// Its index in the table, and its flow slot.
    pub index: u32,
    pub slot: u32,
    /// Client first (the originator).
    pub tuple: FlowTuple,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_mac: EthernetAddress,
    pub remote_mac: EthernetAddress,
    /// The VLAN tags the client's frames came with (its answers carry them).
    pub vlan: VlanTags,
    /// The port the client is on (segments leave by it).
    pub port: u16,
    pub service: u16,
    /// Whose connection it is: the client's (`DIR_ORIG`), or a proxy's server side
    /// (`DIR_REPLY`, its flow the client's).
    pub dir: u8,
    /// A proxy's: the number of the bind its server side (or the client's latest) came from
    /// (`FlowRef::side`); 0 otherwise.
    pub side: u8,
}

/// Where a frame came from below IP: what an answer that keeps no state goes back by.
struct L2 {
    client_mac: EthernetAddress,
    vlan: VlanTags,
    port: u16,
}

/// The table's key: the client's address and port, the service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    remote: IpAddr,
    remote_port: u16,
    local: IpAddr,
    local_port: u16,
}

/// A slot of the table.
struct Slot {
    info: ConnInfo,
    conn: Option<Connection>,
    key: ConnKey,
    /// Bytes NFs wrote that went into the send buffer, in all.
    written: u64,
    /// Client bytes delivered, in all (the next DATA_RDY offset).
    delivered: u64,
    /// Its NFs got `FLOW/TCP/NEW` (so they get the end too), and the client's stream ended
    /// (`FLOW/TCP/STREAM_END` sent: once per connection).
    announced: bool,
    client_ended: bool,
    /// Counted among its service's half-open connections (until established or gone).
    half_open: bool,
    /// In its service's TIME-WAIT queue.
    in_time_wait: bool,
    /// Where its send credit counts from (`SendCredits::open`), and how far the credit
    /// published reaches (the promise: bytes the NFs may still write are reserved).
    credit_base: u64,
    promised: u64,
    /// What it holds against its service's `buffer_memory` (see `buffer_budget`), and
    /// whether the budget kept its promise short (it is in `Served::short`).
    holding: u64,
    short: bool,
    /// NFs' bytes were queued on it this round (it is in `Served::to_flush`).
    queued: bool,
    /// A Splicer service's connection: what it holds, and its backend once bound.
    splice: Option<Box<splice::Splice>>,
    /// A Split Proxy service's slot: a client's connection or a server side.
    proxy: Option<proxy::ProxySide>,
}

/// A shard's services. See the module documentation.
pub struct Served {
    specs: Arc<[ServiceSpec]>,
    /// Per port: its MAC (none offline).
    macs: Vec<[u8; 6]>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<ConnKey, u32>,
    /// Live connections per service, and those of them not established yet.
    per_service: Vec<usize>,
    half_open: Vec<usize>,
    /// Per service: connections (index, id) in the order they entered TIME-WAIT (or a splice's
    /// or an L4 flow's linger after both FINs), the oldest first; entries of connections gone
    /// since are skipped.
    time_wait: Vec<VecDeque<(u32, u64)>>,
    wheel: TimerWheel,
    due: Vec<u32>,
    isn: IsnSecret,
    next_id: u64,
    credits: Arc<SendCredits>,
    readers: Vec<StreamReader>,
    /// The services' buffer memory, the connections it kept short of a promise (index, id),
    /// and when idle connections' buffers were last freed for them.
    budget: BufferBudget,
    short: Vec<(u32, u64)>,
    /// Connections with bytes queued this round, to send once the requests are applied.
    to_flush: Vec<u32>,
    last_reclaim_ns: u64,
    /// The splicers' connections by their backend side's key.
    splices: splice::Splices,
    /// The backends' MACs (this shard's copy of the run's table), and the addresses learned
    /// whose waiting connections and flows have yet to go on (event room ran out).
    neighbors: neighbors::NeighborCache,
    learned: Vec<IpAddr>,
    /// Source ports toward backends (the splicers', source NAT's).
    ports: source_ports::SourcePorts,
    /// The l4 services' flows.
    l4: l4::L4Flows,
    /// The clock: packet time offline, the wall clock on a live wire.
    live: bool,
    now: u64,
    pub stats: ServeStats,
}

/// What became of a packet offered to the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Not for a service: the stack handles it as usual.
    No,
    /// Handled (answered, or dropped and counted): its buffer can go.
    Consumed,
    /// Rewritten in place (a spliced connection's frame): send it on, out of the pair's other
    /// port.
    Forward,
    /// Not enough event room: offer it again later.
    Blocked,
}

impl Served {
    /// The services of shard `shard`: connections' flow slots start at `slot_base`.
    pub fn new(shard: u16, specs: Arc<[ServiceSpec]>, macs: Vec<[u8; 6]>, credits: Arc<SendCredits>, live: bool) -> Served {
        let total: usize = specs.iter().map(|s| s.max_connections).sum();
        // The l4 services' flows take the connection indices after the others'.
        let l4_base: usize = specs.iter().filter(|s| s.l4.is_none()).map(|s| s.max_connections).sum();
        let l4_flows = l4::L4Flows::new(&specs, l4_base as u32);
        let budget = BufferBudget::new(specs.iter().map(|s| s.buffer_memory).collect());
        Served {
            per_service: vec![0; specs.len()],
            half_open: vec![0; specs.len()],
            time_wait: specs.iter().map(|s| VecDeque::with_capacity(s.max_connections)).collect(),
            specs,
            macs,
            slots: Vec::with_capacity(total),
            free: Vec::new(),
            index: HashMap::with_capacity(total),
            wheel: TimerWheel::new(total, 0),
            due: Vec::new(),
            isn: IsnSecret::from_system(),
            next_id: (u64::from(shard) << 48) | CONN_ID_BIT | 1,
            credits,
            readers: Vec::new(),
            budget,
            short: Vec::new(),
            to_flush: Vec::new(),
            last_reclaim_ns: 0,
            splices: splice::Splices::default(),
            neighbors: neighbors::NeighborCache::new(),
            learned: Vec::new(),
            ports: source_ports::SourcePorts::new(shard),
            l4: l4_flows,
            live,
            now: 0,
            stats: ServeStats::default(),
        }
    }

    /// Connections a shard holds at most for `specs`.
    pub fn capacity(specs: &[ServiceSpec]) -> usize {
        specs.iter().map(|s| s.max_connections).sum()
    }

    /// Adds the shard's end of an NF's stream rings (for the NFs that serve).
    pub fn add_reader(&mut self, reader: StreamReader) {
        self.readers.push(reader);
    }

    /// Live connections.
    pub fn connections(&self) -> usize {
        self.index.len() + self.l4.live()
    }

    /// Whether a timer is armed, or connections wait for memory (the shard then sleeps only
    /// briefly).
    pub fn has_timers(&self) -> bool {
        !self.wheel.is_empty() || !self.short.is_empty()
    }

    /// Whether NFs' requests wait, or memory was freed for connections kept short.
    pub fn has_work(&self) -> bool {
        self.readers.iter().any(StreamReader::has_work) || (!self.short.is_empty() && self.budget.has_freed())
    }

    /// Moves the clock: to a packet's time offline (never back), to the wall clock live.
    fn tick(&mut self, ts_ns: u64) {
        let t = if self.live { wall_ns() } else { ts_ns };
        self.now = self.now.max(t);
    }

    /// Offers a received frame (`port`, time `ts_ns`) to the services.
    /// Frames may carry up to two VLAN tags; answers go back with the same tags.
    pub fn take<S: ServeSink>(&mut self, data: &mut [u8], port: u16, ts_ns: u64, sink: &mut S) -> Taken {
        let Ok((eth, vlan, l3)) = VlanTags::parse_header(data) else { return Taken::No };
        let l2 = L2 { client_mac: eth.src, vlan, port };
        if self.l4.any() && eth.ethertype == ethertype::IPV4 {
            if let Some(taken) = self.l4_take(data, &l2, ts_ns, sink) {
                return taken;
            }
        }
        if eth.ethertype == ethertype::IPV6 && data.len() >= l3 + 40 && data[l3 + 6] == ndp::ICMPV6 {
            if let Some(taken) = self.neighbor_solicitation(&data[l3..], &l2, ts_ns, sink) {
                return taken;
            }
        }
        let dst: Option<IpAddr> = match eth.ethertype {
            ethertype::ARP => return self.arp(&data[l3..], &l2, ts_ns, sink),
            ethertype::IPV4 if data.len() >= l3 + 20 => {
                Some(IpAddr::from(<[u8; 4]>::try_from(&data[l3 + 16..l3 + 20]).unwrap_or_default()))
            }
            ethertype::IPV6 if data.len() >= l3 + 40 => {
                Some(IpAddr::from(<[u8; 16]>::try_from(&data[l3 + 24..l3 + 40]).unwrap_or_default()))
            }
            _ => None,
        };
        let to_source = dst.is_some_and(|d| self.is_source(d) || self.is_proxy_source(d));
        if !to_source && !dst.is_some_and(|d| self.specs.iter().any(|s| s.addrs.contains(&d))) {
            return Taken::No;
        }
        if !sink.has_room(EVENTS_PER_OPERATION, self.copy_room_needed()) {
            return Taken::Blocked;
        }
        self.tick(ts_ns);
        // The payload as a range: a spliced frame is rewritten in place after parsing.
        let base = data.as_ptr() as usize;
        let parsed = TcpFrame::parse(data, Checksums::Trust).map(|(frame, p)| (frame, p.as_ptr() as usize - base, p.len()));
        // A frame that only crosses a splice is not verified: its checksums are updated
        // incrementally (RFC 1624), so a wrong one stays wrong and the end host drops the frame
        // as it would without mbox, while verifying would read every payload byte, which the
        // splice otherwise never touches. A frame mbox itself acts on is verified first.
        if let Ok((frame, ..)) = &parsed {
            if !self.crosses_splice(frame, to_source) && TcpFrame::parse(data, Checksums::Verify).is_err() {
                self.stats.malformed += 1;
                return Taken::Consumed;
            }
        }
        match parsed {
            // A proxy's server side is a connection of the table like a client's.
            Ok((frame, at, len)) if to_source && self.index.contains_key(&ConnKey::of(&frame)) => {
                self.segment(&frame, &data[at..at + len], port, sink);
                Taken::Consumed
            }
            Ok((frame, at, len)) if to_source => self.backend_segment(&frame, (at, len), data, port, sink),
            Ok((frame, at, len)) => {
                if let Some(taken) = self.spliced_client_segment(&frame, data, sink) {
                    return taken;
                }
                self.segment(&frame, &data[at..at + len], port, sink);
                Taken::Consumed
            }
            // Not TCP (ICMP, UDP to the address): the stack handles it as any packet.
            Err(WireError::Unsupported(..)) => Taken::No,
            Err(_) => {
                self.stats.malformed += 1;
                Taken::Consumed
            }
        }
    }

    /// Copy bytes one operation may need at most: a receive window delivered, each piece's
    /// copy rounded up to a power of two (so up to twice the window) and at least 2 KiB.
    fn copy_room_needed(&self) -> usize {
        let window = self.specs.iter().map(|s| s.endpoint.recv_window as usize).max().unwrap_or(0);
        copy_room(window)
    }

    /// The port a frame came in on or goes out of, where the run's ports come in pairs
    /// (DPDK's: a client side and a backend side); 0 for every frame otherwise (a capture's
    /// frames all come in on 0, whichever side sent them).
    fn wire_port(&self, port: u16) -> u16 {
        if self.macs.len() >= 2 {
            port
        } else {
            0
        }
    }

    /// The MAC a service answers on `port` with: its own, the port's, or the default.
    fn service_mac(&self, spec: &ServiceSpec, port: u16) -> EthernetAddress {
        EthernetAddress(spec.mac.or_else(|| self.macs.get(usize::from(port)).copied()).unwrap_or(DEFAULT_MAC))
    }

    /// Answers an ARP request (`arp`, after the Ethernet header) for a service's IPv4 address.
    fn arp<S: ServeSink>(&mut self, arp: &[u8], l2: &L2, ts_ns: u64, sink: &mut S) -> Taken {
        let Ok(packet) = ArpPacket::new_checked(arp) else { return Taken::No };
        let Ok(arp) = ArpRepr::parse(&packet) else { return Taken::No };
        if let Some(taken) = self.source_arp(&arp, l2, ts_ns, sink) {
            return taken;
        }
        let target = IpAddr::V4(arp.target_ip);
        let Some(spec) = self.specs.iter().find(|s| s.addrs.contains(&target)) else { return Taken::No };
        if arp.operation != Operation::Request {
            if spec.l4.is_none() {
                return Taken::No;
            }
            // Without source NAT an l4 service asks for its backends' MACs from its own address.
            return self.learn_neighbor(&arp, l2.port, sink);
        }
        let mac = self.service_mac(spec, l2.port);
        self.answer_arp(&arp, mac, l2, ts_ns, sink);
        Taken::Consumed
    }

    /// Answers ARP request `arp` with `mac`, on the port and VLAN tags it came with; counted.
    fn answer_arp<S: ServeSink>(&mut self, arp: &ArpRepr, mac: EthernetAddress, l2: &L2, ts_ns: u64, sink: &mut S) {
        self.stats.arp_requests += 1;
        let reply = arp.reply_from(mac);
        let eth = EthernetRepr { src: mac, dst: arp.sender_mac, ethertype: ethertype::ARP };
        let sent = sink.originate(l2.port, ts_ns, &mut |buf| {
            buf.resize(ETHERNET_LEN + l2.vlan.len() + reply.buffer_len(), 0);
            let at = l2.vlan.emit_header(&eth, buf);
            reply.emit(&mut ArpPacket::new_unchecked(&mut buf[at..]));
        });
        if sent {
            self.stats.arp_replies += 1;
        } else {
            self.stats.no_buffer += 1;
        }
    }

    /// Answers an IPv6 neighbour solicitation (`packet`, from the IPv6 header on) for a
    /// service's address (RFC 4861 7.2.4); `None` for any other ICMPv6 message (the stack
    /// handles it as any packet).
    fn neighbor_solicitation<S: ServeSink>(&mut self, packet: &[u8], l2: &L2, ts_ns: u64, sink: &mut S) -> Option<Taken> {
        let ip = Ipv6Packet::new_checked(packet).ok()?;
        let (src, dst, hop_limit) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
        let payload = ip.payload();
        let ns = ndp::Solicitation::parse(payload, src, dst, hop_limit).ok()?;
        let spec = self.specs.iter().find(|s| s.addrs.contains(&IpAddr::V6(ns.target)))?;
        self.stats.nd_solicitations += 1;
        let mac = self.service_mac(spec, l2.port);
        let client_mac = l2.client_mac;
        // From `::` (duplicate address detection): to all nodes.
        let to = if src.is_unspecified() { Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1) } else { src };
        let eth_dst = if src.is_unspecified() { EthernetAddress::ipv6_multicast(to) } else { ns.source_mac.unwrap_or(client_mac) };
        let ip =
            IpRepr::V6(Ipv6Repr { src: ns.target, dst: to, next_header: ndp::ICMPV6, payload_len: ndp::ADVERTISEMENT_LEN, hop_limit: 255 });
        let sent = sink.originate(l2.port, ts_ns, &mut |buf| {
            buf.resize(ETHERNET_LEN + l2.vlan.len() + 40 + ndp::ADVERTISEMENT_LEN, 0);
            let at = l2.vlan.emit_header(&EthernetRepr { src: mac, dst: eth_dst, ethertype: ethertype::IPV6 }, buf);
            ndp::emit_advertisement(&mut buf[at + 40..], ns.target, mac, ns.target, to);
            ip.emit(&mut buf[at..]);
        });
        if sent {
            self.stats.nd_advertisements += 1;
        } else {
            self.stats.no_buffer += 1;
        }
        Some(Taken::Consumed)
    }

    /// One TCP segment to a service address.
    fn segment<S: ServeSink>(&mut self, frame: &TcpFrame, payload: &[u8], port: u16, sink: &mut S) {
        self.stats.segments_in += 1;
        let t = &frame.tcp;
        let seg = SegmentIn { seq: t.seq, ack: t.ack, flags: t.flags, window: t.window, options: t.options, payload };
        let key = ConnKey::of(frame);
        if let Some(&i) = self.index.get(&key) {
            if !self.slots[i as usize].conn.as_ref().is_some_and(|c| c.reopened_by(&seg)) {
                self.operate(i, sink, |conn, now, out| conn.on_segment(&seg, now, out));
                return;
            }
            // A client reusing its port while mbox still holds the old connection in TIME-WAIT:
            // the old one ends (its NFs told, as at the end of TIME-WAIT), the SYN opens anew.
            self.stats.closed += 1;
            self.end_quietly(i, REASON_FIN, sink);
        }
        let service = self.specs.iter().position(|s| s.addrs.contains(&key.local) && s.ports.contains(&key.local_port));
        match service {
            Some(svc) if seg.has(SYN) && !seg.has(ACK) && !seg.has(RST) => self.accept(svc, key, frame, &seg, port, sink),
            Some(svc) if seg.has(ACK) && !seg.has(SYN) && !seg.has(RST) => self.cookie_ack(svc, key, frame, &seg, port, sink),
            // RFC 9293 3.10.7.1: a segment for no connection gets a RST (never a RST itself).
            _ if !seg.has(RST) => self.reset_for(frame, &seg, port, sink),
            _ => {}
        }
    }

    /// A SYN for a service: a new connection; a SYN cookie (RFC 4987) when its half-open
    /// connections are at `syn_backlog`; a RST when it is full.
    fn accept<S: ServeSink>(&mut self, svc: usize, key: ConnKey, frame: &TcpFrame, seg: &SegmentIn<'_>, port: u16, sink: &mut S) {
        if self.per_service[svc] >= self.specs[svc].max_connections && !self.recycle_time_wait(svc, sink) {
            self.stats.refused_full += 1;
            return self.reset_for(frame, seg, port, sink);
        }
        let spec = &self.specs[svc];
        let four = four_tuple(&key);
        if self.half_open[svc] >= spec.syn_backlog {
            // No state: the cookie is the ISN, and the ACK that echoes it opens the connection.
            let mss = seg.options.mss.unwrap_or(536);
            if !cookie_mss_fits(mss) {
                // A cookie cannot carry an MSS this small: its connection would send segments
                // larger than the client takes. Dropped; the client's SYN comes again.
                self.stats.cookies_refused_mss += 1;
                return;
            }
            let cookie = self.isn.cookie(&four, seg.seq, mss, self.now);
            let syn_ack = Connection::cookie_syn_ack(&spec.endpoint, seg, cookie);
            self.stats.cookies_sent += 1;
            let info = self.stranger(frame, port);
            let now = self.now;
            Out::new(sink, &info, &mut self.stats, Events::default(), now).transmit(&syn_ack, Payload::EMPTY);
            return;
        }
        let iss = self.isn.isn(&four, self.now);
        let (cfg, now) = (spec.endpoint, self.now);
        self.open(svc, key, frame, port, true, sink, |out| Connection::accept(&cfg, seg, iss, now, out));
    }

    /// An ACK for no connection of a service: one completing a cookie's handshake opens it;
    /// anything else gets a RST.
    fn cookie_ack<S: ServeSink>(&mut self, svc: usize, key: ConnKey, frame: &TcpFrame, seg: &SegmentIn<'_>, port: u16, sink: &mut S) {
        let mss = self.isn.check_cookie(&four_tuple(&key), seg.seq, seg.ack, self.now);
        let spec = &self.specs[svc];
        match mss {
            Some(mss) if self.per_service[svc] < spec.max_connections || self.recycle_time_wait(svc, sink) => {
                let spec = &self.specs[svc];
                self.stats.cookies_accepted += 1;
                let (cfg, now, iss) = (spec.endpoint, self.now, seg.ack.wrapping_sub(1));
                self.open(svc, key, frame, port, false, sink, |out| Connection::from_cookie(&cfg, seg, iss, mss, now, out));
            }
            Some(_) => {
                self.stats.refused_full += 1;
                self.reset_for(frame, seg, port, sink);
            }
            None => self.reset_for(frame, seg, port, sink),
        }
    }

    /// Ends the service's oldest connection in TIME-WAIT to make room for a new one (what Linux
    /// does past `tcp_max_tw_buckets`: a connection mbox closed first must not keep clients
    /// out for 2 MSL). A splice lingering after both FINs is as good as gone too. False when
    /// none is in TIME-WAIT.
    fn recycle_time_wait<S: ServeSink>(&mut self, svc: usize, sink: &mut S) -> bool {
        while let Some((i, id)) = self.time_wait[svc].pop_front() {
            if !self.lingers(i, id) {
                continue;
            }
            self.stats.time_wait_recycled += 1;
            if self.l4.owns(i) {
                self.l4_recycle(i, sink);
            } else {
                self.stats.closed += 1;
                self.end_quietly(i, REASON_FIN, sink);
            }
            return true;
        }
        false
    }

    /// Whether connection `i` is still the one numbered `id`, finished but lingering: in
    /// TIME-WAIT, a splice or an L4 flow after FINs both ways.
    fn lingers(&self, i: u32, id: u64) -> bool {
        if self.l4.owns(i) {
            return self.l4_lingers(i, id);
        }
        let s = &self.slots[i as usize];
        let waiting = s.conn.as_ref().is_some_and(|c| c.state() == State::TimeWait) || s.splice.as_ref().is_some_and(|sp| sp.lingers());
        s.info.id == id && waiting
    }

    /// Connection `i` (numbered `id`) of service `svc` started to linger: the queue that
    /// [`Served::recycle_time_wait`] ends the oldest of. Entries of connections gone since
    /// go when the queue is as long as the service's connections may be.
    fn note_lingering(&mut self, svc: usize, i: u32, id: u64) {
        let mut queue = std::mem::take(&mut self.time_wait[svc]);
        if queue.len() >= self.specs[svc].max_connections {
            queue.retain(|&(j, id)| self.lingers(j, id));
        }
        queue.push_back((i, id));
        self.time_wait[svc] = queue;
    }

    /// Takes a slot for a new connection of service `svc` and makes it with `make`.
    #[allow(clippy::too_many_arguments)]
    fn open<S: ServeSink>(
        &mut self,
        svc: usize,
        key: ConnKey,
        frame: &TcpFrame,
        port: u16,
        half_open: bool,
        sink: &mut S,
        make: impl FnOnce(&mut Out<'_, S>) -> Connection,
    ) {
        let index = self.take_slot(self.stranger(frame, port), key);
        let tuple = FlowTuple::new(ip_proto::TCP, 0, [key.remote, key.local], [key.remote_port, key.local_port]);
        let info = self.conn_info(index, svc, tuple, self.stranger(frame, port));
        let id = info.id;
        let s = &mut self.slots[index as usize];
        s.reset_for(info, key, half_open);
        s.splice = self.specs[svc].splicer.as_ref().map(|sp| splice::Splice::holding(sp, self.now));
        s.proxy = self.specs[svc].proxy.map(|_| proxy::ProxySide::client());
        self.index.insert(key, index);
        self.per_service[svc] += 1;
        self.half_open[svc] += usize::from(half_open);
        self.stats.accepted += 1;
        sink.conn_started(info.slot, id, self.specs[svc].nfs);
        let mut out = Out::new(sink, &info, &mut self.stats, Events::default(), self.now);
        let conn = make(&mut out);
        let events = out.events();
        self.slots[index as usize].conn = Some(conn);
        let base = self.credits.open(index, id);
        if self.specs[svc].proxy.is_some() {
            self.credits.allow_rebinds(index);
        }
        (self.slots[index as usize].credit_base, self.slots[index as usize].promised) = (base, base);
        self.after(index, events, sink);
    }

    /// A free slot's index for a new connection (`info` and `key` in it until the caller sets
    /// them): one freed before, or a new one, the table grown slot by slot up to its bound
    /// (the capacity was reserved at start).
    fn take_slot(&mut self, info: ConnInfo, key: ConnKey) -> u32 {
        if let Some(i) = self.free.pop() {
            return i;
        }
        self.slots.push(Slot {
            info,
            conn: None,
            key,
            written: 0,
            delivered: 0,
            announced: false,
            client_ended: false,
            half_open: false,
            in_time_wait: false,
            credit_base: 0,
            promised: 0,
            holding: 0,
            short: false,
            queued: false,
            splice: None,
            proxy: None,
        });
        self.slots.len() as u32 - 1
    }

    /// A new connection's (or l4 flow's) info at table index `index` of service `svc`: a fresh
    /// flow id, its flow slot, `tuple`; its addresses, MACs and port from `from`.
    fn conn_info(&mut self, index: u32, svc: usize, tuple: FlowTuple, from: ConnInfo) -> ConnInfo {
        let id = self.next_id;
        self.next_id += 1;
        ConnInfo { id, index, slot: self.credits.slot_of(index), tuple, service: svc as u16, ..from }
    }

    /// Who a frame came from and went to, as a connection of no table slot (for answers that
    /// keep no state: RSTs, cookies).
    fn stranger(&self, frame: &TcpFrame, port: u16) -> ConnInfo {
        ConnInfo {
            id: 0,
            index: u32::MAX,
            slot: 0,
            tuple: FlowTuple::default(),
            local: frame.ip.dst(),
            remote: frame.ip.src(),
            local_port: frame.tcp.dst_port,
            remote_port: frame.tcp.src_port,
            local_mac: frame.dst_mac,
            remote_mac: frame.src_mac,
            vlan: frame.vlan,
            port,
            service: 0,
            dir: DIR_ORIG,
            side: 0,
        }
    }

    /// A RST answering `seg` (RFC 9293 3.10.7.1).
    fn reset_for<S: ServeSink>(&mut self, frame: &TcpFrame, seg: &SegmentIn<'_>, port: u16, sink: &mut S) {
        let rst = SegmentOut::reset_for(seg);
        let info = self.stranger(frame, port);
        self.stats.resets_sent += 1;
        let now = self.now;
        Out::new(sink, &info, &mut self.stats, Events::default(), now).transmit(&rst, Payload::EMPTY);
    }

    /// Runs `op` on connection `i` and handles what it reported.
    fn operate<S: ServeSink>(&mut self, i: u32, sink: &mut S, op: impl FnOnce(&mut Connection, u64, &mut Out<'_, S>)) {
        self.operate_writing(i, 0, sink, op)
    }

    /// [`Served::operate`] for an operation that writes `writing` bytes the NFs were promised
    /// (already counted in `written`: the send ring may still grow to hold them).
    fn operate_writing<S: ServeSink>(
        &mut self,
        i: u32,
        writing: usize,
        sink: &mut S,
        op: impl FnOnce(&mut Connection, u64, &mut Out<'_, S>),
    ) {
        let now = self.now;
        let cap = self.proxy_window_cap(i);
        let step = self.promise_step(i);
        let slot = &mut self.slots[i as usize];
        let info = slot.info;
        let kept = Events { closed: None, announced: slot.announced, client_ended: slot.client_ended, delivered: slot.delivered };
        let outstanding = slot.outstanding() + writing;
        if slot.splice.as_ref().is_some_and(|s| s.carries()) {
            // The splice carries the client's segments now: mbox's connection is silent.
            return;
        }
        let Some(conn) = slot.conn.as_mut() else { return };
        let held = slot.splice.as_deref_mut().map(splice::Splice::held_mut);
        // Its rings may grow to what was promised and into what the budget leaves.
        let (send, receive) = self.budget.limits(usize::from(info.service), &conn_memory(outstanding, conn, step));
        conn.set_memory_limits(send, receive);
        let mut out = Out::new(sink, &info, &mut self.stats, kept, now);
        out.held = held;
        if let Some(cap) = cap {
            conn.set_window_cap(cap, now, &mut out);
        }
        op(conn, now, &mut out);
        let events = out.events();
        self.after(i, events, sink);
    }

    /// After an operation on connection `i`: its end, or its credit and its timer.
    fn after<S: ServeSink>(&mut self, i: u32, events: Events, sink: &mut S) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        let Some(conn) = slot.conn.as_ref() else { return };
        (slot.announced, slot.client_ended, slot.delivered) = (events.announced, events.client_ended, events.delivered);
        if slot.half_open && slot.announced {
            slot.half_open = false;
            self.half_open[usize::from(slot.info.service)] -= 1;
        }
        if let Some(reason) = events.closed {
            if self.proxy_server_closed(i, reason, sink) {
                return;
            }
            self.splice_client_gone(i, sink);
            self.proxy_client_gone(i, sink);
            let slot = &mut self.slots[i as usize];
            let info = slot.info;
            if slot.announced {
                let why = match reason {
                    CloseReason::Graceful => REASON_FIN,
                    CloseReason::TimedOut => REASON_TIMEOUT,
                    _ => REASON_RST,
                };
                sink.conn_event(ConnEventKind::Terminate, &info, why, now);
            }
            if reason == CloseReason::Graceful {
                self.stats.closed += 1;
            } else {
                self.stats.aborted += 1;
            }
            return self.release(i);
        }
        if conn.state() == State::TimeWait && !slot.in_time_wait {
            slot.in_time_wait = true;
            let (svc, id) = (usize::from(slot.info.service), slot.info.id);
            self.note_lingering(svc, i, id);
        }
        // NFs may write a step beyond what they wrote, as far as the send buffer and the
        // service's buffer memory allow.
        let step = self.promise_step(i);
        let slot = &mut self.slots[i as usize];
        let Some(conn) = slot.conn.as_ref() else { return };
        let settled = self.budget.settle(usize::from(slot.info.service), slot.holding, &conn_memory(slot.outstanding(), conn, step));
        slot.holding = settled.holding;
        self.stats.buffer_bytes_peak = self.budget.peak();
        if settled.short && !slot.short {
            self.short.push((i, slot.info.id));
            self.stats.send_waits_memory += 1;
        }
        slot.short = settled.short;
        let limit = slot.credit_base + slot.written + settled.promise as u64;
        slot.promised = slot.promised.max(limit);
        if self.credits.raise(i, limit) && slot.announced {
            sink.conn_event(ConnEventKind::SendRoom, &slot.info, 0, now);
        }
        let deadline = self.deadline_of(i);
        self.wheel.set(i, deadline);
        self.proxy_follow(i, sink);
    }

    /// When connection `i` wants its timer: its own, or its splice's, or its proxy bind's.
    fn deadline_of(&self, i: u32) -> Option<u64> {
        let slot = &self.slots[i as usize];
        let own = [slot.conn.as_ref().and_then(Connection::deadline), self.proxy_deadline(i)].into_iter().flatten().min();
        match slot.splice.as_deref() {
            Some(s) if s.carries() => s.deadline(),
            Some(s) => [own, s.deadline()].into_iter().flatten().min(),
            None => own,
        }
    }

    /// Frees connection `i`'s slot.
    fn release(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if let Some(conn) = slot.conn.take() {
            self.stats.out_of_order_refused_memory += conn.stats().out_of_order_refused_memory;
        }
        self.budget.release(usize::from(slot.info.service), slot.holding);
        (slot.holding, slot.short) = (0, false);
        if let Some(sp) = slot.splice.take() {
            self.splices.forget(&sp);
        }
        slot.in_time_wait = false;
        let key = slot.key;
        self.proxy_forget(i);
        let slot = &mut self.slots[i as usize];
        self.credits.end(i);
        self.index.remove(&key);
        self.per_service[usize::from(slot.info.service)] -= 1;
        if slot.half_open {
            slot.half_open = false;
            self.half_open[usize::from(slot.info.service)] -= 1;
        }
        self.wheel.set(i, None);
        self.free.push(i);
    }

    /// One round of work that needs no packet: NFs' requests, timers due, reads finished.
    /// True if anything was done.
    pub fn poll<S: ServeSink>(&mut self, ts_ns: u64, reads: &mut Vec<(u32, u64, u32)>, sink: &mut S) -> bool {
        self.tick(ts_ns);
        self.sync_neighbors(sink);
        let mut any = false;
        // NFs' requests before the reads they finished: a proxy's NF writes what it read to
        // the other side, then is done with it, and the window its read reopens must already
        // be capped by the room that write took.
        // Out of `self` for the while: applying a request needs the rest of it.
        let mut readers = std::mem::take(&mut self.readers);
        for reader in &mut readers {
            while sink.has_room(EVENTS_PER_OPERATION, 0) && reader.next(|c, a, b| self.command(c, a, b, sink)) {
                any = true;
            }
            if !reader.has_work_queued() && reader.take_refused() {
                // A request found the rings full: now that they are drained, room for the
                // sends refused, and the closes and resets that waited in the flags.
                any = true;
                if !self.pending_requests(sink) {
                    reader.refuse_again();
                }
            }
        }
        self.readers = readers;
        // Each operation may emit events: without room, what is left waits for the next round.
        let mut taken = 0;
        while taken < reads.len() && sink.has_room(EVENTS_PER_OPERATION, 0) {
            let (conn, id, len) = reads[taken];
            taken += 1;
            let Some(slot) = self.slots.get_mut(conn as usize).filter(|s| s.info.id == id && s.conn.is_some()) else { continue };
            match slot.splice.as_deref_mut() {
                // A splicer's client bytes stay unread: its window never reopens past what is
                // held. Counted, for the NF that answers the client itself (`answered_by_nf`).
                Some(sp) => sp.read_while_held(len),
                None => self.operate(conn, sink, |c, now, out| c.consumed(u64::from(len), now, out)),
            }
            any = true;
        }
        reads.drain(..taken);
        self.flush_queued(sink);
        any |= self.feed_short(sink);
        self.wheel.advance(self.now, &mut self.due);
        let mut due = std::mem::take(&mut self.due);
        for (k, &i) in due.iter().enumerate() {
            if !sink.has_room(EVENTS_PER_OPERATION, 0) {
                // No event room now: these timers run at the next round.
                for &j in &due[k..] {
                    self.wheel.set(j, Some(self.now));
                }
                break;
            }
            any = true;
            if self.l4.owns(i) {
                self.l4_timer(i, sink);
            } else {
                self.timer(i, sink);
            }
        }
        due.clear();
        self.due = due;
        any
    }

    /// Sends what this round's requests queued on each connection.
    fn flush_queued<S: ServeSink>(&mut self, sink: &mut S) {
        let mut to_flush = std::mem::take(&mut self.to_flush);
        for &i in &to_flush {
            self.slots[i as usize].queued = false;
            self.operate(i, sink, |conn, now, out| conn.flush(now, out));
        }
        to_flush.clear();
        self.to_flush = to_flush;
    }

    /// Connections the budget kept short of a promise get one once memory is free again: when
    /// a holding went down, and, while some wait, by freeing idle connections' buffers (at
    /// most every [`RECLAIM_EVERY_NS`]). True if anything was done.
    fn feed_short<S: ServeSink>(&mut self, sink: &mut S) -> bool {
        if self.short.is_empty() {
            return false;
        }
        let mut any = false;
        if self.now >= self.last_reclaim_ns + RECLAIM_EVERY_NS {
            self.last_reclaim_ns = self.now;
            any = self.reclaim_idle(sink);
        }
        if !self.budget.take_freed() {
            return any;
        }
        let mut waiting = std::mem::take(&mut self.short);
        let mut k = 0;
        while k < waiting.len() && sink.has_room(EVENTS_PER_OPERATION, 0) {
            let (i, id) = waiting[k];
            k += 1;
            let slot = &mut self.slots[i as usize];
            if slot.info.id == id && slot.conn.is_some() && slot.short {
                // Settled again (a no-op operation): a promise if the budget now has one.
                slot.short = false;
                self.operate(i, sink, |_, _, _| {});
                any = true;
            }
        }
        // Those not reached for want of event room wait for the next round.
        self.short.extend(waiting.drain(k..));
        any
    }

    /// Frees the buffers of the connections of short services that hold nothing in them
    /// (what they promised stays reserved). True if some were freed.
    fn reclaim_idle<S: ServeSink>(&mut self, sink: &mut S) -> bool {
        let mut freed = false;
        for i in 0..self.slots.len() as u32 {
            let slot = &mut self.slots[i as usize];
            let Some(conn) = slot.conn.as_mut() else { continue };
            if !self.budget.is_short(usize::from(slot.info.service)) || !sink.has_room(EVENTS_PER_OPERATION, 0) {
                continue;
            }
            if conn.release_idle_memory() > 0 {
                self.stats.buffers_released += 1;
                freed = true;
                self.operate(i, sink, |_, _, _| {});
            }
        }
        freed
    }

    /// Applies what refused NFs left in the connections' flags (see `stream_out`). False when
    /// event room ran out first (the caller looks again later).
    fn pending_requests<S: ServeSink>(&mut self, sink: &mut S) -> bool {
        for i in 0..self.slots.len() as u32 {
            if self.slots[i as usize].conn.is_none() {
                continue;
            }
            if !sink.has_room(EVENTS_PER_OPERATION, 0) {
                return false;
            }
            let (wants_room, op) = self.credits.take_pending(i);
            match op {
                Some(Pending::Close) => {
                    let read = self.answered_by_nf(i);
                    self.operate(i, sink, |conn, now, out| {
                        report_read(conn, read, now, out);
                        conn.close(now, out)
                    })
                }
                Some(Pending::Reset) => self.reset(i, sink),
                Some(Pending::Bind(backend)) => self.bind(i, backend, sink),
                None => {}
            }
            let s = &self.slots[i as usize];
            if wants_room && s.announced && s.conn.is_some() {
                sink.conn_event(ConnEventKind::SendRoom, &s.info, 0, self.now);
            }
        }
        self.l4_pending_binds(sink)
    }

    /// Applies one NF request to its connection; a send's bytes come in two pieces (the ring
    /// wraps).
    fn command<S: ServeSink>(&mut self, c: StreamCommand, first: &[u8], second: &[u8], sink: &mut S) {
        let len = first.len() + second.len();
        if self.l4.owns(c.conn) {
            // An l4 flow takes only its bind: mbox has no connection of its own to write on.
            match (c.op, c.id == self.l4_id(c.conn)) {
                (Request::Bind, true) => match decode_backend(first, second) {
                    Some(backend) => self.l4_bind(c.conn, backend, sink),
                    None => self.stats.binds_refused += 1,
                },
                (Request::Bind, false) => self.stats.binds_refused += 1,
                _ => {
                    self.stats.writes_to_ended += 1;
                    self.stats.bytes_to_ended += len as u64;
                }
            }
            return;
        }
        let live = self.slots.get(c.conn as usize).is_some_and(|s| s.info.id == c.id && s.conn.is_some());
        if !live {
            self.stats.writes_to_ended += 1;
            self.stats.bytes_to_ended += len as u64;
            return;
        }
        if self.slots[c.conn as usize].splice.as_ref().is_some_and(|s| s.carries()) && matches!(c.op, Request::Send | Request::Close) {
            // mbox no longer speaks on a spliced connection.
            self.stats.writes_to_ended += 1;
            self.stats.bytes_to_ended += len as u64;
            return;
        }
        // A held connection its NF answers is the Endpoint's from now on: what the NF read of
        // it while held opens the client's window again.
        let read = if matches!(c.op, Request::Send | Request::Close) { self.answered_by_nf(c.conn) } else { 0 };
        match c.op {
            Request::Send => {
                // Counted written before the operation, whose end computes the credit from it.
                self.slots[c.conn as usize].written += len as u64;
                let mut wrote = 0;
                // Queued: the round's sends to a connection leave together, in full segments,
                // when the round ends (`flush_queued`).
                self.operate_writing(c.conn, len, sink, |conn, now, out| {
                    report_read(conn, read, now, out);
                    wrote = conn.queue(first);
                    if wrote == first.len() {
                        wrote += conn.queue(second);
                    }
                });
                if let Some(s) = self.slots.get_mut(c.conn as usize).filter(|s| s.info.id == c.id && !s.queued) {
                    s.queued = true;
                    self.to_flush.push(c.conn);
                }
                if let Some(s) = self.slots.get_mut(c.conn as usize).filter(|s| s.info.id == c.id) {
                    s.written -= (len - wrote) as u64;
                }
                if wrote < len {
                    // The credit promised room: only a connection that closed meanwhile.
                    self.stats.writes_to_ended += 1;
                    self.stats.bytes_to_ended += (len - wrote) as u64;
                }
            }
            Request::Close => self.operate(c.conn, sink, |conn, now, out| {
                report_read(conn, read, now, out);
                conn.close(now, out)
            }),
            Request::Reset => self.reset(c.conn, sink),
            Request::Bind => match decode_backend(first, second) {
                Some(backend) => self.bind(c.conn, backend, sink),
                None => self.stats.binds_refused += 1,
            },
        }
    }

    /// The input is over (offline): every connection ends where it is, its NFs told.
    /// On a live wire the clients are told: each connection is reset (RFC 9293 3.10.5), so
    /// that none waits for answers that will not come; its NFs get `TERMINATE` (reset). One
    /// in TIME-WAIT is closed already: it ends as closed (counted so, `TERMINATE` with FIN),
    /// without a RST.
    pub fn drain<S: ServeSink>(&mut self, sink: &mut S) -> bool {
        if !self.l4_drain(sink) {
            return false;
        }
        for i in 0..self.slots.len() as u32 {
            if self.slots[i as usize].conn.is_none() {
                continue;
            }
            if !sink.has_room(EVENTS_PER_OPERATION, 0) {
                return false;
            }
            // One in TIME-WAIT is closed already: it ends as closed, and its peer gets no RST.
            let closed = self.slots[i as usize].conn.as_ref().is_some_and(|c| c.state() == State::TimeWait);
            if self.live && !closed {
                self.operate(i, sink, |conn, _, out| conn.abort(out));
            }
            if self.slots[i as usize].conn.is_some() {
                if closed && self.slots[i as usize].info.dir == DIR_REPLY {
                    self.stats.proxy_server_closes += 1;
                } else if closed {
                    self.stats.closed += 1;
                }
                self.end_quietly(i, if closed { REASON_FIN } else { REASON_END_OF_INPUT }, sink);
            }
        }
        true
    }

    /// Ends connection `i` without a segment: its NFs get `TERMINATE` with `reason` (a
    /// proxy's server side has no flow of its own to end).
    fn end_quietly<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        self.proxy_client_gone(i, sink);
        let s = &self.slots[i as usize];
        if s.announced && s.info.dir == DIR_ORIG {
            sink.conn_event(ConnEventKind::Terminate, &s.info, reason, self.now);
        }
        self.release(i);
    }
}

impl Served {
    /// Checks the table's bookkeeping: the index, the per-service and half-open counts and the
    /// bounds agree with the slots. For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let live: Vec<&Slot> = self.slots.iter().filter(|s| s.conn.is_some()).collect();
        if live.len() != self.index.len() {
            return Err(format!("{} live slots, {} indexed", live.len(), self.index.len()));
        }
        self.l4_check()?;
        for (svc, spec) in self.specs.iter().enumerate().filter(|(_, s)| s.l4.is_none()) {
            let n = live.iter().filter(|s| usize::from(s.info.service) == svc).count();
            let half = live.iter().filter(|s| usize::from(s.info.service) == svc && s.half_open).count();
            if n != self.per_service[svc] || half != self.half_open[svc] {
                return Err(format!(
                    "service {svc}: {n} live / {} counted, {half} half-open / {} counted",
                    self.per_service[svc], self.half_open[svc]
                ));
            }
            if n > spec.max_connections || half > spec.syn_backlog {
                return Err(format!("service {svc}: {n} connections, {half} half-open: over the bounds"));
            }
            // The buffers, promises included, within the service's memory.
            let of_svc = || live.iter().filter(|s| usize::from(s.info.service) == svc);
            let held: u64 = of_svc().map(|s| s.conn.as_ref().map_or(0, |c| c.buffer_bytes() as u64)).sum();
            let holding: u64 = of_svc().map(|s| s.holding).sum();
            if held > holding || holding > spec.buffer_memory {
                return Err(format!("service {svc}: buffers hold {held}, counted {holding}, of {} bytes", spec.buffer_memory));
            }
        }
        for s in &live {
            if self.index.get(&s.key) != Some(&s.info.index) {
                return Err(format!("slot {} not indexed by its key", s.info.index));
            }
        }
        Ok(())
    }
}

/// What one operation on a connection leaves for its slot, besides the events it emitted.
#[derive(Debug, Default, Clone, Copy)]
struct Events {
    closed: Option<CloseReason>,
    announced: bool,
    client_ended: bool,
    delivered: u64,
}

/// A connection's sink for one operation: segments out through the shard, bytes in as events
/// (emitted as they come, so that NFs see the start, the bytes and the client's close in order).
struct Out<'a, S> {
    sink: &'a mut S,
    info: &'a ConnInfo,
    stats: &'a mut ServeStats,
    events: Events,
    /// Whether its NFs got `FLOW/TCP/NEW` and the client's `STREAM_END`, and the client bytes
    /// delivered so far in all.
    announced: bool,
    client_ended: bool,
    delivered: u64,
    now: u64,
    /// A splicer's connection before its splice: the client's bytes are kept for the backend.
    held: Option<&'a mut Vec<u8>>,
}

/// Reports `n` client bytes read to `conn` (those its NFs read while it was held, once an NF
/// answers it itself); nothing when there are none, so that no window update goes out for them.
fn report_read<S: ServeSink>(conn: &mut Connection, n: u64, now: u64, out: &mut Out<'_, S>) {
    if n > 0 {
        conn.consumed(n, now, out);
    }
}

impl<'a, S: ServeSink> Out<'a, S> {
    /// `kept`: what the slot kept of earlier operations (none for a new connection).
    fn new(sink: &'a mut S, info: &'a ConnInfo, stats: &'a mut ServeStats, kept: Events, now: u64) -> Self {
        let Events { announced, client_ended, delivered, .. } = kept;
        Out { sink, info, stats, events: Events::default(), announced, client_ended, delivered, now, held: None }
    }

    /// What the operation leaves for the slot to keep.
    fn events(&self) -> Events {
        Events { announced: self.announced, client_ended: self.client_ended, delivered: self.delivered, ..self.events }
    }

    /// The peer's stream ended (its FIN, or a reset): its NFs are told once. The peer is the
    /// client, or a proxy's server side's backend (`STREAM_END` of `DIR_REPLY`).
    fn client_end(&mut self, reason: u8) {
        if self.announced && !self.client_ended {
            self.sink.conn_end(self.info, self.delivered, reason, self.now);
        }
        self.client_ended = true;
    }
}

impl<S: ServeSink> ConnSink for Out<'_, S> {
    fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>) {
        let i = self.info;
        let Some(ip) = IpRepr::new(i.local, i.remote, ip_proto::TCP, 0, 64) else { return };
        let tcp = TcpRepr {
            src_port: i.local_port,
            dst_port: i.remote_port,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            window: seg.window,
            urgent: 0,
            options: seg.options,
            payload_len: payload.len(),
        };
        let frame = TcpFrame { src_mac: i.local_mac, dst_mac: i.remote_mac, vlan: i.vlan, ip, tcp };
        let sent = self.sink.originate(i.port, self.now, &mut |buf| {
            buf.resize(frame.len(), 0);
            let at = frame.payload_offset();
            buf[at..at + payload.first.len()].copy_from_slice(payload.first);
            buf[at + payload.first.len()..at + payload.len()].copy_from_slice(payload.second);
            // Cannot fail: the buffer was sized for the frame, and segments are within an MSS.
            let _ = frame.emit(buf);
        });
        if sent {
            self.stats.segments_out += 1;
            self.stats.bytes_sent += payload.len() as u64;
        } else {
            self.stats.no_buffer += 1;
        }
    }

    fn deliver(&mut self, offset: u64, bytes: &[u8]) {
        self.stats.bytes_received += bytes.len() as u64;
        if let Some(held) = self.held.as_deref_mut() {
            // Within the hold: the window was never more (see `SplicerSpec`).
            held.extend_from_slice(bytes);
        }
        self.delivered = offset + bytes.len() as u64;
        // Room for the copy was checked before the operation began (`EVENTS_PER_OPERATION`
        // and a window's bytes); bytes come only once the handshake is done.
        if self.announced && !self.sink.conn_data(self.info, offset, bytes, self.now) {
            // Room was promised before the operation; counted if that promise ever fails (the
            // bytes count as read, so the window does not shrink for good).
            self.stats.bytes_not_delivered += bytes.len() as u64;
        }
    }

    fn event(&mut self, event: ConnEvent) {
        match event {
            // A proxy's server side: its handshake is its bind's outcome.
            ConnEvent::Established if self.info.dir == DIR_REPLY => {
                if !self.announced {
                    self.announced = true;
                    self.stats.proxy_connected += 1;
                    self.sink.conn_event(ConnEventKind::Bound, self.info, BIND_CONNECTED, self.now);
                }
            }
            ConnEvent::Established if !self.announced => {
                self.announced = true;
                self.stats.established += 1;
                self.sink.conn_event(ConnEventKind::New, self.info, 0, self.now);
            }
            ConnEvent::Established => {}
            ConnEvent::PeerClosed => self.client_end(END_FIN),
            ConnEvent::Closed(reason) => {
                if reason != CloseReason::Graceful {
                    self.client_end(END_RST);
                }
                self.events.closed = Some(reason);
            }
            // Writes are bounded by the credit; room is announced from it (see `after`).
            ConnEvent::SendRoom => {}
        }
    }
}

/// A connection's addresses and ports as the ISN and cookie hash reads them.
/// A connection's memory as the budget weighs it; `outstanding` from [`Slot::outstanding`].
fn conn_memory(outstanding: usize, conn: &Connection, step: usize) -> ConnMemory {
    let send_allocated = conn.send_allocated();
    ConnMemory {
        send_free: conn.send_buffer_free(),
        send_len: conn.unacknowledged(),
        send_allocated,
        receive_allocated: conn.buffer_bytes() - send_allocated,
        outstanding,
        writable: conn.can_write(),
        step,
    }
}

impl ConnKey {
    /// The key of the connection `frame` belongs to (its sender is the remote end).
    fn of(frame: &TcpFrame) -> ConnKey {
        ConnKey { remote: frame.ip.src(), remote_port: frame.tcp.src_port, local: frame.ip.dst(), local_port: frame.tcp.dst_port }
    }
}

impl Slot {
    /// Makes the slot a fresh connection's: `info`, `key`, counters at zero.
    fn reset_for(&mut self, info: ConnInfo, key: ConnKey, half_open: bool) {
        (self.info, self.key, self.written, self.delivered, self.announced, self.client_ended, self.half_open, self.in_time_wait) =
            (info, key, 0, 0, false, false, half_open, false);
        (self.splice, self.proxy) = (None, None);
    }

    /// Bytes promised to its NFs that they have not written yet.
    fn outstanding(&self) -> usize {
        self.promised.saturating_sub(self.credit_base + self.written) as usize
    }
}

fn four_tuple(key: &ConnKey) -> FourTuple {
    FourTuple { local: mapped(key.local), local_port: key.local_port, remote: mapped(key.remote), remote_port: key.remote_port }
}

/// An address as the ISN hash reads it (IPv4 as IPv4-mapped IPv6).
fn mapped(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Wall-clock time in ns since the epoch: what live packets are stamped with.
fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::stream_out::stream_rings;
    use crate::sys::park::Waker;
    use mbox_abi::{FlowRef, StreamOp, StreamStatus};

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];

    /// What the services reported.
    #[derive(Default)]
    pub(super) struct FakeShard {
        pub(super) frames: Vec<(u16, Vec<u8>)>,
        pub(super) events: Vec<(ConnEventKind, u64, u8)>,
        pub(super) data: Vec<u8>,
        pub(super) ends: Vec<(u64, u8)>,
        /// A proxy's server sides' bytes (`DIR_REPLY`) and their ends.
        pub(super) server_data: Vec<u8>,
        pub(super) server_ends: Vec<(u64, u8)>,
        pub(super) reads: Vec<(u32, u64, u32)>,
        /// With `hold_reads`, the reads of bytes delivered wait here until the test's NF is
        /// done with them (moves them to `reads`); without, they are done at once.
        pub(super) hold_reads: bool,
        pub(super) held_reads: Vec<(u32, u64, u32)>,
        pub(super) started: Vec<(u32, u64, u64)>,
        pub(super) room: bool,
        /// Whether the NFs read the backends' bytes, and what they got of them (in order,
        /// checked by offset) and the gaps.
        pub(super) wants_backend: bool,
        /// Events the shard has room for (`None`: any).
        pub(super) event_room: Option<usize>,
        pub(super) backend_data: Vec<u8>,
        pub(super) backend_gaps: Vec<(u64, u64, u8)>,
    }

    impl ServeSink for FakeShard {
        fn has_room(&self, events: usize, _bytes: usize) -> bool {
            self.room && self.event_room.is_none_or(|room| events <= room)
        }
        fn conn_started(&mut self, slot: u32, id: u64, nfs: u64) {
            self.started.push((slot, id, nfs));
        }
        fn conn_event(&mut self, kind: ConnEventKind, conn: &ConnInfo, reason: u8, _ts: u64) {
            self.events.push((kind, conn.id, reason));
        }
        fn conn_data(&mut self, conn: &ConnInfo, offset: u64, bytes: &[u8], _ts: u64) -> bool {
            let data = if conn.dir == DIR_REPLY { &mut self.server_data } else { &mut self.data };
            assert_eq!(offset, data.len() as u64, "in order, by offset");
            data.extend_from_slice(bytes);
            let reads = if self.hold_reads { &mut self.held_reads } else { &mut self.reads };
            reads.push((conn.index, conn.id, bytes.len() as u32));
            true
        }
        fn conn_end(&mut self, conn: &ConnInfo, offset: u64, reason: u8, _ts: u64) {
            if conn.dir == DIR_REPLY {
                self.server_ends.push((offset, reason));
            } else {
                self.ends.push((offset, reason));
            }
        }
        fn wants_backend_data(&self, _conn: &ConnInfo) -> bool {
            self.wants_backend
        }
        fn backend_data(&mut self, _conn: &ConnInfo, offset: u64, bytes: &[u8], _ts: u64) -> bool {
            let reported = self.backend_data.len() as u64 + self.backend_gaps.iter().map(|g| g.1).sum::<u64>();
            assert_eq!(offset, reported, "in order, by offset");
            self.backend_data.extend_from_slice(bytes);
            true
        }
        fn backend_gap(&mut self, _conn: &ConnInfo, offset: u64, len: u64, reason: u8, _ts: u64) {
            self.backend_gaps.push((offset, len, reason));
        }
        fn originate(&mut self, port: u16, _ts: u64, fill: &mut dyn FnMut(&mut Vec<u8>)) -> bool {
            let mut buf = Vec::new();
            fill(&mut buf);
            self.frames.push((port, buf));
            true
        }
    }

    /// A client built from mbox's own Endpoint, its segments as frames.
    #[derive(Default)]
    struct Client {
        /// Its port (40000 when 0).
        port: u16,
        /// The tags its frames carry (and answers must).
        vlan: VlanTags,
        frames: Vec<Vec<u8>>,
        received: Vec<u8>,
        closed: Option<CloseReason>,
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1));
    const SERVICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 80));

    impl ConnSink for Client {
        fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>) {
            let ip = IpRepr::new(CLIENT, SERVICE, ip_proto::TCP, 0, 64).unwrap();
            let tcp = TcpRepr {
                src_port: if self.port == 0 { 40000 } else { self.port },
                dst_port: 80,
                seq: seg.seq,
                ack: seg.ack,
                flags: seg.flags,
                window: seg.window,
                urgent: 0,
                options: seg.options,
                payload_len: payload.len(),
            };
            let frame = TcpFrame { src_mac: EthernetAddress(CLIENT_MAC), dst_mac: EthernetAddress(DEFAULT_MAC), vlan: self.vlan, ip, tcp };
            let mut buf = vec![0; frame.len()];
            let at = frame.payload_offset();
            let mut bytes = Vec::new();
            payload.copy_to(&mut bytes);
            buf[at..at + bytes.len()].copy_from_slice(&bytes);
            frame.emit(&mut buf).unwrap();
            self.frames.push(buf);
        }
        fn deliver(&mut self, _offset: u64, bytes: &[u8]) {
            self.received.extend_from_slice(bytes);
        }
        fn event(&mut self, event: ConnEvent) {
            if let ConnEvent::Closed(r) = event {
                self.closed = Some(r);
            }
        }
    }

    fn spec(max_connections: usize) -> Arc<[ServiceSpec]> {
        let endpoint = mbox_stack::endpoint::Config { send_buffer: 16 << 10, ..Default::default() };
        vec![ServiceSpec {
            name: "web".into(),
            addrs: vec![SERVICE],
            ports: vec![80],
            mac: None,
            nfs: 0b10,
            endpoint,
            max_connections,
            syn_backlog: 16,
            buffer_memory: 1 << 30,
            splicer: None,
            l4: None,
            proxy: None,
        }]
        .into()
    }

    /// Moves frames both ways until neither side sends, the clock at `now`.
    fn exchange(served: &mut Served, shard: &mut FakeShard, client: &mut Connection, c: &mut Client, now: u64) {
        exchange_all(served, shard, &mut [(client, c)], now)
    }

    /// [`exchange`] with several clients, each frame to the client of its port.
    fn exchange_all(served: &mut Served, shard: &mut FakeShard, clients: &mut [(&mut Connection, &mut Client)], now: u64) {
        for _ in 0..1000 {
            let to_mbox: Vec<Vec<u8>> = clients.iter_mut().flat_map(|(_, c)| c.frames.drain(..).collect::<Vec<_>>()).collect();
            for f in &to_mbox {
                assert_eq!(served.take(&mut f.clone(), 0, now, shard), Taken::Consumed);
            }
            let mut reads = std::mem::take(&mut shard.reads);
            served.poll(now, &mut reads, shard);
            let to_client: Vec<(u16, Vec<u8>)> = shard.frames.drain(..).collect();
            for (port, f) in &to_client {
                assert_eq!(*port, 0, "out of the port the client is on");
                let (frame, payload) = TcpFrame::parse(f, Checksums::Verify).expect("a valid frame, checksums right");
                let t = frame.tcp;
                let (client, c) = clients
                    .iter_mut()
                    .find(|(_, c)| t.dst_port == if c.port == 0 { 40000 } else { c.port })
                    .expect("a frame to one of the clients");
                assert_eq!((frame.dst_mac, frame.src_mac), (EthernetAddress(CLIENT_MAC), EthernetAddress(DEFAULT_MAC)));
                assert_eq!(frame.vlan, c.vlan, "answers go back on the client's VLAN(s)");
                let seg = SegmentIn { seq: t.seq, ack: t.ack, flags: t.flags, window: t.window, options: t.options, payload };
                client.on_segment(&seg, now, &mut **c);
            }
            if to_mbox.is_empty() && to_client.is_empty() && shard.reads.is_empty() {
                return;
            }
        }
        panic!("the exchange never settled");
    }

    #[test]
    fn a_client_gets_its_answer_through_the_nf_writes_and_both_close() {
        let credits = Arc::new(SendCredits::new(1000, 4));
        let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let mut served = Served::new(0, spec(4), Vec::new(), credits, false);
        served.add_reader(reader);
        let mut shard = FakeShard { room: true, ..Default::default() };
        let mut c = Client::default();
        let cfg = mbox_stack::endpoint::Config::default();
        let mut client = Connection::connect(&cfg, 12345, 0, &mut c);
        exchange(&mut served, &mut shard, &mut client, &mut c, 1_000);
        assert_eq!(client.state(), State::Established);
        let (slot, id, nfs) = shard.started[0];
        assert_eq!((slot, nfs), (1000, 0b10), "its flow slot follows the table's; only the service's NFs");
        assert!(id & CONN_ID_BIT != 0);
        assert_eq!(shard.events, [(ConnEventKind::New, id, 0)]);

        client.write(b"GET / HTTP/1.1\r\n\r\n", 2_000, &mut c);
        exchange(&mut served, &mut shard, &mut client, &mut c, 2_000);
        assert_eq!(shard.data, b"GET / HTTP/1.1\r\n\r\n");

        // The NF answers with more than the send buffer holds: it gets what fits, then room.
        let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
        let answer: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut rounds = 0;
        while sent < answer.len() {
            let (status, n) = writer.request(&flow, StreamOp::Send, &answer[sent..]);
            sent += n as usize;
            assert!(status == StreamStatus::Done || status == StreamStatus::Partial);
            exchange(&mut served, &mut shard, &mut client, &mut c, 3_000 + rounds);
            rounds += 1;
            assert!(rounds < 100);
        }
        assert!(rounds > 1, "the answer did not fit at once");
        assert!(shard.events.iter().any(|e| e.0 == ConnEventKind::SendRoom), "room was announced");
        assert_eq!(c.received, answer, "byte for byte");

        // mbox closes, then the client: both ends reach CLOSED (mbox through TIME-WAIT).
        assert_eq!(writer.request(&flow, StreamOp::Close, &[]).0, StreamStatus::Done);
        exchange(&mut served, &mut shard, &mut client, &mut c, 10_000_000);
        assert!(shard.ends.is_empty(), "the client has not closed yet");
        client.close(20_000_000, &mut c);
        exchange(&mut served, &mut shard, &mut client, &mut c, 20_000_000);
        assert_eq!(shard.ends, [(18, END_FIN)]);
        assert_eq!(served.connections(), 1, "in TIME-WAIT");
        let later = 20_000_000 + 61_000_000_000; // past the 60 s TIME-WAIT
        exchange(&mut served, &mut shard, &mut client, &mut c, later);
        assert_eq!(served.connections(), 0);
        assert_eq!(shard.events.last(), Some(&(ConnEventKind::Terminate, id, REASON_FIN)));
        assert_eq!(writer.request(&flow, StreamOp::Send, b"late").0, StreamStatus::Ended);
        assert_eq!((served.stats.accepted, served.stats.established, served.stats.closed), (1, 1, 1));
    }

    /// The service's `buffer_memory` bounds its connections' buffers, promises to NFs
    /// included: a second connection's NF waits while the first holds the memory, is told
    /// (`SEND_ROOM`) once the first's memory is free, and both answers arrive whole.
    #[test]
    fn buffer_memory_bounds_the_connections_and_a_waiting_nf_is_told_when_it_frees() {
        let credits = Arc::new(SendCredits::new(0, 4));
        let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let endpoint = mbox_stack::endpoint::Config { send_buffer: 64 << 10, ..Default::default() };
        let specs: Arc<[ServiceSpec]> = vec![ServiceSpec { endpoint, buffer_memory: 48 << 10, ..spec(4)[0].clone() }].into();
        let mut served = Served::new(0, specs, Vec::new(), credits, false);
        served.add_reader(reader);
        let mut shard = FakeShard { room: true, ..Default::default() };
        let cfg = mbox_stack::endpoint::Config::default();
        let (mut a, mut b) = (Client { port: 40001, ..Client::default() }, Client { port: 40002, ..Client::default() });
        let mut ca = Connection::connect(&cfg, 1, 0, &mut a);
        exchange(&mut served, &mut shard, &mut ca, &mut a, 1_000);
        let mut cb = Connection::connect(&cfg, 2, 0, &mut b);
        exchange(&mut served, &mut shard, &mut cb, &mut b, 1_000);
        let flows: Vec<FlowRef> = shard.started.iter().map(|&(slot, id, _)| FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 }).collect();
        let answer: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
        // A's NF writes a step; the frames wait (the client acknowledges nothing yet).
        let (status, n) = writer.request(&flows[0], StreamOp::Send, &answer);
        assert_eq!((status, n as usize), (StreamStatus::Partial, PROMISE_STEP));
        let mut reads = Vec::new();
        served.poll(2_000, &mut reads, &mut shard);
        served.check_invariants().unwrap();
        // B's NF finds the memory held: it may write a little or nothing, and waits.
        let (_, got_b) = writer.request(&flows[1], StreamOp::Send, &answer);
        served.poll(2_000, &mut reads, &mut shard);
        served.check_invariants().unwrap();
        assert!((got_b as usize) < PROMISE_STEP, "B got {got_b}");
        assert!(served.stats.send_waits_memory >= 1);
        // Both stream to the end, each NF writing when told of room.
        let (mut sent, mut rounds) = ([n as usize, got_b as usize], 0);
        while sent != [answer.len(); 2] {
            exchange_all(&mut served, &mut shard, &mut [(&mut ca, &mut a), (&mut cb, &mut b)], 3_000 + rounds);
            for k in 0..2 {
                if sent[k] < answer.len() {
                    let (_, n) = writer.request(&flows[k], StreamOp::Send, &answer[sent[k]..]);
                    sent[k] += n as usize;
                }
            }
            served.poll(3_000 + rounds, &mut reads, &mut shard);
            served.check_invariants().unwrap();
            rounds += 1;
            assert!(rounds < 2_000, "stalled at {sent:?}");
        }
        exchange_all(&mut served, &mut shard, &mut [(&mut ca, &mut a), (&mut cb, &mut b)], 10_000_000);
        assert_eq!((a.received.len(), b.received.len()), (answer.len(), answer.len()));
        assert!(a.received == answer && b.received == answer, "byte for byte");
        assert!(shard.events.iter().filter(|e| e.0 == ConnEventKind::SendRoom).count() >= 2);
        assert!(served.stats.buffer_bytes_peak <= 48 << 10 && served.stats.buffer_bytes_peak > 32 << 10, "{:?}", served.stats);
    }

    /// A client on a VLAN (one 802.1Q tag, or QinQ) is answered on it: ARP, the handshake, its
    /// request and the answer all carry its tags.
    #[test]
    fn a_client_on_a_vlan_is_answered_on_its_vlan_ieee_802_1q() {
        for tags in [&[(ethertype::VLAN, 0x2064)][..], &[(ethertype::QINQ, 7), (ethertype::VLAN, 100)]] {
            let vlan = VlanTags::new(tags).unwrap();
            let credits = Arc::new(SendCredits::new(0, 2));
            let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
            let mut served = Served::new(0, spec(2), Vec::new(), credits, false);
            served.add_reader(reader);
            let mut shard = FakeShard { room: true, ..Default::default() };
            let (request, mut frame) = arp_request(vlan);
            assert_eq!(served.take(&mut frame.clone(), 0, 0, &mut shard), Taken::Consumed);
            let (eth, reply_tags, at) = VlanTags::parse_header(&shard.frames.pop().unwrap().1).unwrap();
            assert_eq!((eth.ethertype, reply_tags, eth.dst), (ethertype::ARP, vlan, request.sender_mac));
            assert!(at > ETHERNET_LEN);
            frame.truncate(ETHERNET_LEN + vlan.len() + 10);
            assert_eq!(served.take(&mut frame.clone(), 0, 0, &mut shard), Taken::No, "a cut ARP request is the stack's");

            let mut c = Client { vlan, ..Client::default() };
            let cfg = mbox_stack::endpoint::Config::default();
            let mut client = Connection::connect(&cfg, 99, 0, &mut c);
            exchange(&mut served, &mut shard, &mut client, &mut c, 1_000);
            assert_eq!(client.state(), State::Established);
            client.write(b"GET /", 2_000, &mut c);
            exchange(&mut served, &mut shard, &mut client, &mut c, 2_000);
            assert_eq!(shard.data, b"GET /");
            let (slot, id, _) = shard.started[0];
            let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
            assert_eq!(writer.request(&flow, StreamOp::Send, b"200 OK").0, StreamStatus::Done);
            exchange(&mut served, &mut shard, &mut client, &mut c, 3_000);
            assert_eq!(c.received, b"200 OK");
        }
    }

    /// An ARP request from the client for the service's address, on `vlan`'s tags.
    fn arp_request(vlan: VlanTags) -> (ArpRepr, Vec<u8>) {
        let request = ArpRepr {
            operation: Operation::Request,
            sender_mac: EthernetAddress(CLIENT_MAC),
            sender_ip: std::net::Ipv4Addr::new(198, 18, 0, 1),
            target_mac: EthernetAddress([0; 6]),
            target_ip: std::net::Ipv4Addr::new(198, 18, 0, 80),
        };
        let mut frame = vec![0; ETHERNET_LEN + vlan.len() + request.buffer_len()];
        let eth = EthernetRepr { src: EthernetAddress(CLIENT_MAC), dst: EthernetAddress::BROADCAST, ethertype: ethertype::ARP };
        let at = vlan.emit_header(&eth, &mut frame);
        request.emit(&mut ArpPacket::new_unchecked(&mut frame[at..]));
        (request, frame)
    }

    #[test]
    fn a_live_run_that_ends_resets_its_clients_and_an_offline_one_ends_quietly() {
        for live in [true, false] {
            let mut served = Served::new(0, spec(2), Vec::new(), Arc::new(SendCredits::new(0, 2)), live);
            let mut shard = FakeShard { room: true, ..Default::default() };
            let (mut c, cfg) = (Client::default(), mbox_stack::endpoint::Config::default());
            let mut client = Connection::connect(&cfg, 7, 0, &mut c);
            exchange(&mut served, &mut shard, &mut client, &mut c, 1_000);
            assert_eq!(served.connections(), 1);
            assert!(served.drain(&mut shard));
            assert_eq!(served.connections(), 0);
            let resets = shard
                .frames
                .iter()
                .filter_map(|(_, f)| TcpFrame::parse(f, Checksums::Verify).ok())
                .filter(|(t, _)| t.tcp.flags & RST != 0)
                .count();
            let reason = shard.events.last().unwrap().2;
            assert_eq!((resets, reason), if live { (1, REASON_RST) } else { (0, REASON_END_OF_INPUT) }, "live: {live}");
        }
    }

    #[test]
    fn a_new_syn_reopens_a_connection_in_time_wait_rfc6191() {
        let credits = Arc::new(SendCredits::new(0, 4));
        let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let mut served = Served::new(0, spec(4), Vec::new(), credits, false);
        served.add_reader(reader);
        let mut shard = FakeShard { room: true, ..Default::default() };
        let (mut c, cfg) = (Client::default(), mbox_stack::endpoint::Config::default());
        let mut client = Connection::connect(&cfg, 7, 0, &mut c);
        exchange(&mut served, &mut shard, &mut client, &mut c, 1_000);
        let (slot, id, _) = shard.started[0];
        let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
        writer.request(&flow, StreamOp::Close, &[]);
        exchange(&mut served, &mut shard, &mut client, &mut c, 2_000);
        client.close(3_000, &mut c);
        exchange(&mut served, &mut shard, &mut client, &mut c, 3_000);
        assert_eq!((served.connections(), served.stats.closed), (1, 0), "mbox closed first: TIME-WAIT");
        // The client comes back from the same port at once, its ISN further on.
        let mut c2 = Client::default();
        let mut again = Connection::connect(&mbox_stack::endpoint::Config { timestamps: false, ..cfg }, 7 + 1_000_000, 4_000, &mut c2);
        exchange(&mut served, &mut shard, &mut again, &mut c2, 4_000);
        assert_eq!(again.state(), State::Established, "a new incarnation, not an old duplicate");
        assert_eq!((served.connections(), served.stats.accepted, served.stats.closed), (1, 2, 1));
        let kinds: Vec<ConnEventKind> = shard.events.iter().map(|e| e.0).collect();
        assert_eq!(kinds, [ConnEventKind::New, ConnEventKind::Terminate, ConnEventKind::New]);
        assert_eq!(shard.events[1].1, id, "the old connection ended first");

        // Full (4 connections, the last in TIME-WAIT): a fifth client's SYN ends it rather than
        // being refused.
        for port in [40001, 40002] {
            let mut ci = Client { port, ..Client::default() };
            let mut conn = Connection::connect(&cfg, 99, 5_000, &mut ci);
            exchange(&mut served, &mut shard, &mut conn, &mut ci, 5_000);
        }
        let mut ci = Client { port: 40003, ..Client::default() };
        let mut conn = Connection::connect(&cfg, 99, 5_000, &mut ci);
        exchange(&mut served, &mut shard, &mut conn, &mut ci, 5_000);
        let (slot, id, _) = *shard.started.last().unwrap();
        let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
        writer.request(&flow, StreamOp::Close, &[]);
        exchange(&mut served, &mut shard, &mut conn, &mut ci, 6_000);
        conn.close(6_000, &mut ci);
        exchange(&mut served, &mut shard, &mut conn, &mut ci, 6_000);
        assert_eq!(served.connections(), 4, "one of them in TIME-WAIT");
        let mut late = Client { port: 40009, ..Client::default() };
        let mut conn = Connection::connect(&cfg, 99, 7_000, &mut late);
        exchange(&mut served, &mut shard, &mut conn, &mut late, 7_000);
        assert_eq!(conn.state(), State::Established);
        assert_eq!((served.connections(), served.stats.time_wait_recycled, served.stats.refused_full), (4, 1, 0));
    }

    #[test]
    fn past_the_syn_backlog_a_cookie_answers_and_its_ack_opens_the_connection_rfc4987() {
        let credits = Arc::new(SendCredits::new(0, 4));
        let specs: Arc<[ServiceSpec]> = vec![ServiceSpec { syn_backlog: 1, ..spec(4)[0].clone() }].into();
        let mut served = Served::new(0, specs, Vec::new(), credits, false);
        let mut shard = FakeShard { room: true, ..Default::default() };
        let cfg = mbox_stack::endpoint::Config::default();
        // The first SYN takes the one half-open place (its client never answers).
        let mut first = Client::default();
        let _ = Connection::connect(&cfg, 1, 0, &mut first);
        assert_eq!(served.take(&mut (first.frames.pop().unwrap()).clone(), 0, 0, &mut shard), Taken::Consumed);
        assert_eq!((served.connections(), served.stats.cookies_sent), (1, 0));
        // The second gets a cookie: no state, a SYN-ACK offering the MSS alone.
        let mut c = Client::default();
        let mut client = Connection::connect(&cfg, 5000, 0, &mut c);
        let mut syn = c.frames.pop().unwrap();
        syn[ETHERNET_LEN + 20 + 1] ^= 2; // another client port than the first's
        let (mut f, _) = TcpFrame::parse(&syn, Checksums::Trust).unwrap();
        f.tcp.src_port = 40002;
        let mut syn = vec![0; f.len()];
        f.emit(&mut syn).unwrap();
        shard.frames.clear();
        assert_eq!(served.take(&mut syn.clone(), 0, 0, &mut shard), Taken::Consumed);
        assert_eq!((served.connections(), served.stats.cookies_sent), (1, 1), "a cookie keeps no state");
        let (syn_ack, _) = TcpFrame::parse(&shard.frames[0].1, Checksums::Verify).unwrap();
        let o = syn_ack.tcp.options;
        assert!(o.mss.is_some() && o.window_scale.is_none() && !o.sack_permitted && o.timestamps.is_none());
        // The client's ACK (to port 40002: rebuild the client's frames with that port).
        let t = syn_ack.tcp;
        let seg = SegmentIn { seq: t.seq, ack: t.ack, flags: t.flags, window: t.window, options: t.options, payload: &[] };
        client.on_segment(&seg, 1, &mut c);
        client.write(b"hello", 1, &mut c);
        assert_eq!(client.state(), State::Established);
        let mut last = None;
        for frame in c.frames.drain(..) {
            let (mut f, payload) = TcpFrame::parse(&frame, Checksums::Verify).unwrap();
            f.tcp.src_port = 40002;
            last = Some(f);
            let mut buf = vec![0; f.len()];
            let at = f.payload_offset();
            buf[at..].copy_from_slice(payload);
            f.emit(&mut buf).unwrap();
            assert_eq!(served.take(&mut buf.clone(), 0, 1, &mut shard), Taken::Consumed);
        }
        assert_eq!((served.connections(), served.stats.cookies_accepted), (2, 1));
        assert_eq!(shard.events.iter().filter(|e| e.0 == ConnEventKind::New).count(), 1, "the cookie's connection is established");
        assert_eq!(shard.data, b"hello");
        // An ACK of a cookie from another tuple (forged) opens nothing: a RST.
        let mut forged = last.unwrap();
        forged.tcp.src_port = 40003;
        let mut buf = vec![0; forged.len()];
        forged.emit(&mut buf).unwrap();
        let resets = served.stats.resets_sent;
        assert_eq!(served.take(&mut buf.clone(), 0, 1, &mut shard), Taken::Consumed);
        assert_eq!((served.connections(), served.stats.resets_sent), (2, resets + 1));
        // A SYN announcing an MSS below what a cookie carries: dropped, counted, not answered.
        f.tcp.src_port = 40004;
        f.tcp.options.mss = Some(200);
        let mut small = vec![0; f.len()];
        f.emit(&mut small).unwrap();
        shard.frames.clear();
        assert_eq!(served.take(&mut small.clone(), 0, 1, &mut shard), Taken::Consumed);
        assert_eq!((shard.frames.len(), served.stats.cookies_refused_mss, served.stats.cookies_sent), (0, 1, 1));
    }

    #[test]
    fn an_ipv6_service_answers_neighbour_solicitations_and_connections_rfc4861() {
        let v6: IpAddr = "2001:db8::80".parse().unwrap();
        let client: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let specs: Arc<[ServiceSpec]> = vec![ServiceSpec { addrs: vec![v6], ..spec(1)[0].clone() }].into();
        let mut served = Served::new(0, specs, vec![[2, 0, 0, 0, 0, 0x66]], Arc::new(SendCredits::new(0, 1)), false);
        let mut shard = FakeShard { room: true, ..Default::default() };
        // Who has 2001:db8::80? To its solicited-node group, with the client's MAC.
        let group: Ipv6Addr = "ff02::1:ff00:80".parse().unwrap();
        let mut ns = vec![0u8; 32];
        ns[0] = 135;
        ns[8..24].copy_from_slice(&"2001:db8::80".parse::<Ipv6Addr>().unwrap().octets());
        ns[24..26].copy_from_slice(&[1, 1]);
        ns[26..32].copy_from_slice(&CLIENT_MAC);
        let check = mbox_stack::wire::checksum::finish(
            mbox_stack::wire::checksum::pseudo_header_v6(client, group, ndp::ICMPV6, 32) + mbox_stack::wire::checksum::sum(&ns),
        );
        ns[2..4].copy_from_slice(&check.to_be_bytes());
        let mut frame = vec![0u8; ETHERNET_LEN + 40 + ns.len()];
        VlanTags::NONE.emit_header(
            &EthernetRepr { src: EthernetAddress(CLIENT_MAC), dst: EthernetAddress::ipv6_multicast(group), ethertype: ethertype::IPV6 },
            &mut frame,
        );
        frame[ETHERNET_LEN + 40..].copy_from_slice(&ns);
        IpRepr::V6(Ipv6Repr { src: client, dst: group, next_header: ndp::ICMPV6, payload_len: 32, hop_limit: 255 })
            .emit(&mut frame[ETHERNET_LEN..]);
        assert_eq!(served.take(&mut frame.clone(), 0, 0, &mut shard), Taken::Consumed);
        let (_, na) = &shard.frames[0];
        let ip = Ipv6Packet::new_checked(&na[ETHERNET_LEN..]).unwrap();
        assert_eq!((&na[0..6], &na[6..12]), (&CLIENT_MAC[..], &[2, 0, 0, 0, 0, 0x66][..]), "to the solicitor, from the port's MAC");
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit(), ip.next_header()), ("2001:db8::80".parse().unwrap(), client, 255, 58));
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[4], &icmp[26..32]), (136, 0x60, &[2, 0, 0, 0, 0, 0x66][..]), "solicited, override, our MAC");
        assert!(mbox_stack::wire::checksum::verifies(
            mbox_stack::wire::checksum::pseudo_header_v6(ip.src_addr(), client, 58, icmp.len() as u32)
                + mbox_stack::wire::checksum::sum(icmp)
        ));
        assert_eq!(served.stats.nd_advertisements, 1);
        // Another target is not the services' business.
        let mut other = frame.clone();
        other[ETHERNET_LEN + 40 + 23] = 0x81;
        assert_eq!(served.take(&mut other.clone(), 0, 0, &mut shard), Taken::No);
        // And a SYN to the IPv6 service gets a SYN-ACK.
        let syn = TcpFrame {
            src_mac: EthernetAddress(CLIENT_MAC),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 0x66]),
            vlan: VlanTags::NONE,
            ip: IpRepr::new(IpAddr::V6(client), v6, ip_proto::TCP, 0, 64).unwrap(),
            tcp: TcpRepr {
                src_port: 40000,
                dst_port: 80,
                seq: 5,
                ack: 0,
                flags: SYN,
                window: 1000,
                urgent: 0,
                options: Default::default(),
                payload_len: 0,
            },
        };
        let mut buf = vec![0; syn.len()];
        syn.emit(&mut buf).unwrap();
        assert_eq!(served.take(&mut buf.clone(), 0, 0, &mut shard), Taken::Consumed);
        let (reply, _) = TcpFrame::parse(&shard.frames.last().unwrap().1, Checksums::Verify).unwrap();
        assert_eq!((reply.tcp.flags, reply.tcp.ack, reply.ip.dst()), (SYN | ACK, 6, IpAddr::V6(client)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// Whatever arrives — segments with any flags, numbers and options from a few clients,
        /// truncated or bit-flipped frames, NF requests, time passing, no event room — nothing
        /// panics, every frame to a service is consumed or refused, and the table's bookkeeping
        /// and bounds hold after each step.
        #[test]
        fn any_input_keeps_the_table_consistent_and_bounded(
            steps in proptest::collection::vec((0u8..9, proptest::prelude::any::<u64>(), proptest::prelude::any::<[u8; 8]>()), 1..200)
        ) {
            let credits = Arc::new(SendCredits::new(0, 3));
            let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
            // Less buffer memory than three connections could fill: the budget binds.
            let specs: Arc<[ServiceSpec]> = vec![ServiceSpec { syn_backlog: 2, buffer_memory: 40 << 10, ..spec(3)[0].clone() }].into();
            let mut served = Served::new(0, specs, Vec::new(), credits, false);
            served.add_reader(reader);
            let mut shard = FakeShard { room: true, ..Default::default() };
            let mut now = 0u64;
            // A well-behaved client too (its own port), so that established connections, data
            // both ways and closes are among what happens.
            let cfg = mbox_stack::endpoint::Config::default();
            let mut c = Client { port: 41000, ..Client::default() };
            let mut client = Connection::connect(&cfg, 77, 0, &mut c);
            for (kind, r, bytes) in steps {
                let port = 40000 + (r % 5) as u16;
                let flags = bytes[0] & 0x3f;
                let tcp = TcpRepr {
                    src_port: port,
                    dst_port: if bytes[1] % 8 == 0 { 81 } else { 80 },
                    seq: (r >> 8) as u32 % 4096,
                    ack: (r >> 24) as u32,
                    flags,
                    window: u16::from_le_bytes([bytes[2], bytes[3]]),
                    urgent: 0,
                    options: mbox_stack::wire::tcp::TcpOptions {
                        mss: (bytes[4] & 1 == 1).then_some(u16::from(bytes[5]) * 8),
                        window_scale: (bytes[4] & 2 == 2).then_some(bytes[6] % 20),
                        sack_permitted: bytes[4] & 4 == 4,
                        timestamps: (bytes[4] & 8 == 8).then_some((r as u32, 0)),
                        ..Default::default()
                    },
                    payload_len: usize::from(bytes[7] % 4) * 300,
                };
                let frame = TcpFrame { src_mac: EthernetAddress(CLIENT_MAC), dst_mac: EthernetAddress(DEFAULT_MAC), vlan: VlanTags::NONE, ip: IpRepr::new(CLIENT, SERVICE, ip_proto::TCP, 0, 64).unwrap(), tcp };
                let mut buf = vec![0u8; frame.len()];
                frame.emit(&mut buf).unwrap();
                match kind {
                    0 | 1 => { served.take(&mut buf.clone(), 0, now, &mut shard); }
                    2 => {
                        // Damaged: cut short, or a flipped bit.
                        let at = (r as usize) % buf.len();
                        if bytes[0] & 1 == 0 { buf.truncate(at) } else { buf[at] ^= 1 << (bytes[1] % 8) }
                        let t = served.take(&mut buf.clone(), 0, now, &mut shard);
                        proptest::prop_assert!(t != Taken::Blocked || !shard.room);
                    }
                    3 => {
                        // An NF's request on one of the connections it was told of.
                        if let Some(&(slot, id, _)) = shard.started.get((r as usize) % shard.started.len().max(1)) {
                            let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
                            let op = [StreamOp::Send, StreamOp::Send, StreamOp::Close, StreamOp::Reset][(bytes[0] % 4) as usize];
                            writer.request(&flow, op, &[b'x'; 5000]);
                        }
                    }
                    4 => now += r % 3_000_000_000,
                    5 => shard.room = !shard.room,
                    6 => {
                        // The client's segments reach mbox (some lost), and mbox's reach it.
                        for f in c.frames.drain(..) {
                            if r % 7 != 0 {
                                served.take(&mut f.clone(), 0, now, &mut shard);
                            }
                        }
                    }
                    7 => { client.write(&[b'q'; 3000][..usize::from(bytes[0]) * 11], now, &mut c); }
                    _ => if bytes[0] % 4 == 0 { client.close(now, &mut c) } else { client.on_timer(now, &mut c) },
                }
                let mut reads = std::mem::take(&mut shard.reads);
                served.poll(now, &mut reads, &mut shard);
                for (_, f) in shard.frames.drain(..) {
                    if let Ok((frame, payload)) = TcpFrame::parse(&f, Checksums::Verify) {
                        let t = frame.tcp;
                        if t.dst_port == 41000 {
                            let seg = SegmentIn { seq: t.seq, ack: t.ack, flags: t.flags, window: t.window, options: t.options, payload };
                            client.on_segment(&seg, now, &mut c);
                        }
                    }
                }
                if let Err(e) = served.check_invariants() {
                    proptest::prop_assert!(false, "{e}");
                }
            }
            // And everything ends cleanly.
            proptest::prop_assert!(client.check_invariants().is_ok());
            shard.room = true;
            proptest::prop_assert!(served.drain(&mut shard));
            proptest::prop_assert_eq!(served.connections(), 0);
        }
    }

    #[test]
    fn arp_is_answered_and_strangers_get_resets() {
        let credits = Arc::new(SendCredits::new(0, 1));
        let mut served = Served::new(0, spec(1), vec![[2, 0, 0, 0, 0, 0x99]], credits, false);
        let mut shard = FakeShard { room: true, ..Default::default() };
        // ARP: who has the service's address?
        let (request, frame) = arp_request(VlanTags::NONE);
        assert_eq!(served.take(&mut frame.clone(), 0, 0, &mut shard), Taken::Consumed);
        let (port, reply) = &shard.frames[0];
        let arp = ArpRepr::parse(&ArpPacket::new_checked(&reply[ETHERNET_LEN..]).unwrap()).unwrap();
        assert_eq!(*port, 0);
        assert_eq!(
            (arp.operation, arp.sender_mac, arp.sender_ip),
            (Operation::Reply, EthernetAddress([2, 0, 0, 0, 0, 0x99]), request.target_ip)
        );
        assert_eq!((arp.target_mac, arp.target_ip), (request.sender_mac, request.sender_ip));
        // Another address's ARP is not the services' business.
        let mut other = frame.clone();
        other[ETHERNET_LEN + 27] = 81;
        assert_eq!(served.take(&mut other.clone(), 0, 0, &mut shard), Taken::No);

        // A SYN to a port not served, and a second connection beyond the bound: RSTs.
        let mut c = Client::default();
        let cfg = mbox_stack::endpoint::Config::default();
        let _first = Connection::connect(&cfg, 1, 0, &mut c);
        let syn = c.frames.pop().unwrap();
        assert_eq!(served.take(&mut syn.clone(), 0, 0, &mut shard), Taken::Consumed);
        assert_eq!(served.connections(), 1);
        let mut second = syn.clone();
        second[ETHERNET_LEN + 20 + 1] ^= 1; // another client port (the checksum now wrong)
        assert_eq!(served.take(&mut second.clone(), 0, 0, &mut shard), Taken::Consumed);
        assert_eq!(served.stats.malformed, 1, "a bad checksum is dropped, counted");
        let (frame, _) = TcpFrame::parse(&syn, Checksums::Verify).unwrap();
        let mut other_port = frame;
        other_port.tcp.dst_port = 81;
        let mut buf = vec![0; other_port.len()];
        other_port.emit(&mut buf).unwrap();
        assert_eq!(served.take(&mut buf.clone(), 0, 0, &mut shard), Taken::Consumed);
        let (rst, _) = TcpFrame::parse(&shard.frames.last().unwrap().1, Checksums::Verify).unwrap();
        assert_eq!((rst.tcp.src_port, rst.tcp.flags & RST, rst.tcp.ack), (81, RST, frame.tcp.seq + 1));
        let mut full = frame;
        full.tcp.src_port = 40001;
        let mut buf = vec![0; full.len()];
        full.emit(&mut buf).unwrap();
        assert_eq!(served.take(&mut buf.clone(), 0, 0, &mut shard), Taken::Consumed);
        assert_eq!((served.stats.refused_full, served.stats.resets_sent), (1, 2));
        // Without event room, a segment waits.
        shard.room = false;
        assert_eq!(served.take(&mut syn.clone(), 0, 0, &mut shard), Taken::Blocked);
    }
}

#[cfg(test)]
mod splice_tests {
    //! A client and a backend, both mbox's own Endpoint, spliced through a shard's services.
    use super::tests::FakeShard;
    use super::*;
    use crate::config::Refusal;
    use crate::runtime::stream_out::stream_rings;
    use crate::sys::park::Waker;
    use mbox_abi::{BindStatus, FlowRef};
    use mbox_stack::splicer::OpenConfig;
    use std::net::{Ipv4Addr, SocketAddr};

    pub(super) const CLIENT: (Ipv4Addr, u16, [u8; 6]) = (Ipv4Addr::new(198, 18, 0, 1), 40000, [2, 0, 0, 0, 0, 0xc1]);
    pub(super) const BACKEND: (Ipv4Addr, u16, [u8; 6]) = (Ipv4Addr::new(198, 18, 1, 5), 8080, [2, 0, 0, 0, 0, 0xb1]);
    pub(super) const SERVICE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 80);
    pub(super) const SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 90);

    /// One TCP end: its connection (a backend's is made by the first SYN), its frames out.
    pub(super) struct Peer {
        me: (Ipv4Addr, u16, [u8; 6]),
        /// Where its segments go (the backend answers whoever connected).
        to: (Ipv4Addr, u16),
        cfg: mbox_stack::endpoint::Config,
        pub(super) conn: Option<Connection>,
        pub(super) frames: Vec<Vec<u8>>,
        pub(super) received: Vec<u8>,
        pub(super) closed: Option<CloseReason>,
        /// A backend with no listener: a SYN gets a RST.
        pub(super) refuses: bool,
        /// The ISN a backend accepts with.
        isn: u32,
    }

    pub(super) struct PeerSink<'a> {
        me: (Ipv4Addr, u16, [u8; 6]),
        to: (Ipv4Addr, u16),
        frames: &'a mut Vec<Vec<u8>>,
        received: &'a mut Vec<u8>,
        closed: &'a mut Option<CloseReason>,
    }

    impl ConnSink for PeerSink<'_> {
        fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>) {
            let ip = IpRepr::new(IpAddr::V4(self.me.0), IpAddr::V4(self.to.0), ip_proto::TCP, 0, 64).unwrap();
            let tcp = TcpRepr {
                src_port: self.me.1,
                dst_port: self.to.1,
                seq: seg.seq,
                ack: seg.ack,
                flags: seg.flags,
                window: seg.window,
                urgent: 0,
                options: seg.options,
                payload_len: payload.len(),
            };
            let frame =
                TcpFrame { src_mac: EthernetAddress(self.me.2), dst_mac: EthernetAddress(DEFAULT_MAC), vlan: VlanTags::default(), ip, tcp };
            let mut buf = vec![0; frame.len()];
            let at = frame.payload_offset();
            let mut bytes = Vec::new();
            payload.copy_to(&mut bytes);
            buf[at..at + bytes.len()].copy_from_slice(&bytes);
            frame.emit(&mut buf).unwrap();
            self.frames.push(buf);
        }
        fn deliver(&mut self, _offset: u64, bytes: &[u8]) {
            self.received.extend_from_slice(bytes);
        }
        fn event(&mut self, event: ConnEvent) {
            if let ConnEvent::Closed(r) = event {
                *self.closed = Some(r);
            }
        }
    }

    impl Peer {
        pub(super) fn new(me: (Ipv4Addr, u16, [u8; 6]), to: (Ipv4Addr, u16), cfg: mbox_stack::endpoint::Config) -> Peer {
            Peer { me, to, cfg, conn: None, frames: Vec::new(), received: Vec::new(), closed: None, refuses: false, isn: 777_000 }
        }

        pub(super) fn with<R>(&mut self, f: impl FnOnce(&mut Option<Connection>, &mut PeerSink<'_>) -> R) -> R {
            let mut sink =
                PeerSink { me: self.me, to: self.to, frames: &mut self.frames, received: &mut self.received, closed: &mut self.closed };
            f(&mut self.conn, &mut sink)
        }

        /// A frame for it: checked (checksums, addresses, MAC) and taken.
        fn take(&mut self, f: &[u8], now: u64) {
            let (frame, payload) = TcpFrame::parse(f, Checksums::Verify).expect("a valid frame, checksums right");
            assert_eq!((frame.dst_mac.0, frame.ip.dst(), frame.tcp.dst_port), (self.me.2, IpAddr::V4(self.me.0), self.me.1));
            let t = frame.tcp;
            let seg = SegmentIn { seq: t.seq, ack: t.ack, flags: t.flags, window: t.window, options: t.options, payload };
            self.to = (
                match frame.ip.src() {
                    IpAddr::V4(a) => a,
                    _ => unreachable!(),
                },
                t.src_port,
            );
            let (cfg, refuses, isn) = (self.cfg, self.refuses, self.isn);
            self.with(|conn, sink| match conn {
                Some(c) => c.on_segment(&seg, now, sink),
                None if seg.has(SYN) && refuses => {
                    let rst = SegmentOut {
                        seq: 0,
                        ack: seg.seq.wrapping_add(1),
                        flags: RST | ACK,
                        window: 0,
                        options: Default::default(),
                        payload_len: 0,
                    };
                    sink.transmit(&rst, Payload::EMPTY);
                }
                None if seg.has(SYN) => *conn = Some(Connection::accept(&cfg, &seg, isn, now, sink)),
                None => {}
            });
        }
    }

    fn splicer_spec(refuse: Refusal) -> Arc<[ServiceSpec]> {
        // As ServiceSpec::new makes a splicer's: the hold's window, the spliced window's shift.
        let endpoint = mbox_stack::endpoint::Config { recv_window: 16 << 10, scale_window: SPLICED_SCALE_WINDOW, ..Default::default() };
        let open = OpenConfig { connect_timeout_ns: 3_000_000_000, ..OpenConfig::default() };
        let splicer = SplicerSpec {
            source: IpAddr::V4(SOURCE),
            open,
            hold_timeout_ns: 5_000_000_000,
            idle_timeout_ns: 60_000_000_000,
            linger_ns: 2_000_000_000,
            refuse,
        };
        vec![ServiceSpec {
            name: "lb".into(),
            addrs: vec![IpAddr::V4(SERVICE)],
            ports: vec![80],
            mac: None,
            nfs: 0b1,
            endpoint,
            max_connections: 4,
            syn_backlog: 4,
            buffer_memory: 1 << 30,
            splicer: Some(splicer),
            l4: None,
            proxy: None,
        }]
        .into()
    }

    /// Moves frames until nothing moves: the peers' frames through the services, what the
    /// services send or forward to the peer it is addressed to, ARP requests for the backend
    /// answered when `arp` says so.
    fn run(served: &mut Served, shard: &mut FakeShard, client: &mut Peer, backend: &mut Peer, arp: bool, now: u64) {
        run_dropping(served, shard, client, backend, arp, now, &mut |_| false);
    }

    /// [`run`], with the TCP frames `drop` says are lost (each frame is shown to it once: on
    /// its way from a peer to the services, or from the services to a peer) not delivered.
    pub(super) fn run_dropping(
        served: &mut Served,
        shard: &mut FakeShard,
        client: &mut Peer,
        backend: &mut Peer,
        arp: bool,
        now: u64,
        drop: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        for _ in 0..10_000 {
            let mut moved = false;
            let mut out: Vec<Vec<u8>> = Vec::new();
            for (from_backend, peer) in [(false, &mut *client), (true, &mut *backend)] {
                for mut f in peer.frames.drain(..) {
                    moved = true;
                    if drop(&f) {
                        continue;
                    }
                    let port = u16::from(from_backend);
                    match served.take(&mut f, port, now, shard) {
                        Taken::Forward => out.push(f),
                        Taken::Consumed => {}
                        t => panic!("{t:?} for a frame from the {}", if from_backend { "backend" } else { "client" }),
                    }
                }
            }
            let mut reads = std::mem::take(&mut shard.reads);
            moved |= served.poll(now, &mut reads, shard);
            let originated: Vec<(u16, Vec<u8>)> = shard.frames.drain(..).collect();
            for (port, f) in originated {
                moved = true;
                if u16::from_be_bytes([f[12], f[13]]) == ethertype::ARP {
                    assert_eq!(port, 1, "ARP for the backend on the backends' side");
                    let req = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap();
                    assert_eq!((req.operation, req.sender_ip, req.target_ip), (Operation::Request, SOURCE, BACKEND.0));
                    if arp {
                        let reply = req.reply_from(EthernetAddress(BACKEND.2));
                        let mut buf = vec![0; 14 + reply.buffer_len()];
                        VlanTags::default().emit_header(
                            &EthernetRepr { src: EthernetAddress(BACKEND.2), dst: req.sender_mac, ethertype: ethertype::ARP },
                            &mut buf,
                        );
                        reply.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
                        assert_eq!(served.take(&mut buf, 1, now, shard), Taken::Consumed);
                    }
                    continue;
                }
                out.push(f);
            }
            for f in out {
                if drop(&f) {
                    continue;
                }
                let (frame, _) = TcpFrame::parse(&f, Checksums::Verify).expect("valid, checksums right");
                if frame.ip.dst() == IpAddr::V4(BACKEND.0) {
                    assert_eq!((frame.ip.src(), frame.src_mac.0), (IpAddr::V4(SOURCE), DEFAULT_MAC), "from mbox's source address");
                    backend.take(&f, now);
                } else {
                    assert_eq!((frame.ip.src(), frame.tcp.src_port), (IpAddr::V4(SERVICE), 80), "from the service address");
                    client.take(&f, now);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the exchange never settled");
    }

    fn bind(writer: &mut crate::runtime::stream_out::StreamWriter, shard: &FakeShard) -> BindStatus {
        bind_to(writer, shard, SocketAddr::new(IpAddr::V4(BACKEND.0), BACKEND.1))
    }

    fn bind_to(writer: &mut crate::runtime::stream_out::StreamWriter, shard: &FakeShard, backend: SocketAddr) -> BindStatus {
        let (slot, id, _) = shard.started[0];
        let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
        writer.bind(&flow, backend)
    }

    /// A splicer shard with one client connection established (and `request` sent on it).
    fn held_connection(
        refuse: Refusal,
        request: &[u8],
        backend_refuses: bool,
    ) -> (Served, FakeShard, crate::runtime::stream_out::StreamWriter, Peer, Peer) {
        let credits = Arc::new(SendCredits::new(100, 4));
        let (writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let mut served = Served::new(0, splicer_spec(refuse), vec![DEFAULT_MAC, DEFAULT_MAC], credits, false);
        served.add_reader(reader);
        let mut shard = FakeShard { room: true, ..Default::default() };
        let cfg = mbox_stack::endpoint::Config::default();
        let mut client = Peer::new(CLIENT, (SERVICE, 80), cfg);
        let mut backend = Peer::new(BACKEND, (SOURCE, 0), cfg);
        backend.refuses = backend_refuses;
        client.with(|conn, sink| *conn = Some(Connection::connect(&cfg, 5, 0, sink)));
        run(&mut served, &mut shard, &mut client, &mut backend, true, 0);
        if !request.is_empty() {
            client.with(|conn, sink| conn.as_mut().unwrap().write(request, 0, sink));
            run(&mut served, &mut shard, &mut client, &mut backend, true, 0);
        }
        (served, shard, writer, client, backend)
    }

    type EndpointConfig = mbox_stack::endpoint::Config;

    /// A splicer shard with its NF's stream writer, a client and a backend, and the clock:
    /// what the tests of the splice's corner cases drive.
    struct World {
        served: Served,
        shard: FakeShard,
        writer: crate::runtime::stream_out::StreamWriter,
        client: Peer,
        backend: Peer,
        now: u64,
    }

    impl World {
        /// The client's SYN (ISN `client_isn`) sent, not yet delivered; the backend accepts with
        /// `backend_isn`.
        fn new(refuse: Refusal, client_cfg: EndpointConfig, backend_cfg: EndpointConfig, client_isn: u32, backend_isn: u32) -> World {
            let credits = Arc::new(SendCredits::new(100, 4));
            let (writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
            let mut served = Served::new(0, splicer_spec(refuse), vec![DEFAULT_MAC, DEFAULT_MAC], credits, false);
            served.add_reader(reader);
            let shard = FakeShard { room: true, ..Default::default() };
            let mut client = Peer::new(CLIENT, (SERVICE, 80), client_cfg);
            let mut backend = Peer::new(BACKEND, (SOURCE, 0), backend_cfg);
            backend.isn = backend_isn;
            let now = 1_000_000;
            client.with(|conn, sink| *conn = Some(Connection::connect(&client_cfg, client_isn, now, sink)));
            World { served, shard, writer, client, backend, now }
        }

        /// Default ends, the client's ISN near the top (its sequence numbers wrap), its
        /// handshake done and `request` sent and held.
        fn held(refuse: Refusal, request: &[u8]) -> World {
            let mut w = World::new(refuse, EndpointConfig::default(), EndpointConfig::default(), u32::MAX - 100, 777_000);
            w.run();
            if !request.is_empty() {
                w.client_write(request);
                w.run();
            }
            w
        }

        fn run(&mut self) {
            self.run_dropping(&mut |_| false);
        }

        fn run_dropping(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) {
            run_dropping(&mut self.served, &mut self.shard, &mut self.client, &mut self.backend, true, self.now, drop);
        }

        /// `dt` later: both peers' timers run, then frames move.
        fn step(&mut self, dt: u64, drop: &mut dyn FnMut(&[u8]) -> bool) {
            self.now += dt;
            self.tick(drop);
        }

        /// Both peers' timers run (now), then frames move.
        fn tick(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) {
            let now = self.now;
            for p in [&mut self.client, &mut self.backend] {
                p.with(|conn, sink| {
                    if let Some(c) = conn.as_mut() {
                        c.on_timer(now, sink)
                    }
                });
            }
            self.run_dropping(drop);
        }

        /// Steps of `dt` until `done` (checked first) or until `limit` ns have passed: whether
        /// it is done.
        fn step_until(&mut self, dt: u64, limit: u64, drop: &mut dyn FnMut(&[u8]) -> bool, done: impl Fn(&World) -> bool) -> bool {
            let end = self.now + limit;
            while !done(self) {
                if self.now >= end {
                    return false;
                }
                self.step(dt, drop);
            }
            true
        }

        fn bind(&mut self) -> BindStatus {
            bind(&mut self.writer, &self.shard)
        }

        /// The first connection's index in the table (while it is there).
        fn conn_index(&self) -> u32 {
            let (_, id, _) = self.shard.started[0];
            let live = |&i: &u32| self.served.slots[i as usize].info.id == id;
            self.served.index.values().copied().find(live).expect("the connection is in the table")
        }

        fn client_write(&mut self, bytes: &[u8]) {
            let now = self.now;
            let n = self.client.with(|conn, sink| conn.as_mut().expect("connected").write(bytes, now, sink));
            assert_eq!(n, bytes.len(), "the client's send buffer takes it all");
        }

        fn backend_write(&mut self, bytes: &[u8]) -> usize {
            let now = self.now;
            self.backend.with(|conn, sink| conn.as_mut().expect("accepted").write(bytes, now, sink))
        }

        fn terminations(&self) -> usize {
            self.shard.events.iter().filter(|e| e.0 == ConnEventKind::Terminate).count()
        }
    }

    /// The TCP header and payload length of a frame in the tests' traffic (`None`: ARP).
    fn tcp_of(f: &[u8]) -> Option<(TcpRepr, IpAddr, IpAddr, usize)> {
        TcpFrame::parse(f, Checksums::Trust).ok().map(|(t, p)| (t.tcp, t.ip.src(), t.ip.dst(), p.len()))
    }

    /// The two ends of a splice: their settings and ISNs, what the client sends after the
    /// bind, the size of the backend's answer.
    struct Sides {
        client: EndpointConfig,
        backend: EndpointConfig,
        client_isn: u32,
        backend_isn: u32,
        more: Vec<u8>,
        answer: usize,
        /// The NFs read the backend's bytes (`FLOW/TCP/BACKEND_DATA`).
        tap: bool,
    }

    impl Default for Sides {
        fn default() -> Sides {
            Sides {
                client: EndpointConfig { recv_window: 1 << 20, ..Default::default() },
                backend: EndpointConfig::default(),
                // Wrapping sequence numbers on the client's side.
                client_isn: u32::MAX - 100,
                backend_isn: 777_000,
                more: b"and more".to_vec(),
                answer: 200_000,
                tap: false,
            }
        }
    }

    /// The client's request is held and read by the NF, the backend gets it from mbox, and
    /// the answer and both closes cross the splice; each side's options differ.
    fn splice_with(backend_cfg: mbox_stack::endpoint::Config) {
        splice_through(Sides { backend: backend_cfg, ..Sides::default() }, &mut |_| false);
    }

    /// [`splice_with`] for any two ends, the frames `drop` says are lost not delivered: the
    /// request held and read by the NF, the backend given it by mbox, the answer and the
    /// client's bytes after the bind byte-exact, both closes, the linger, `TERMINATE` once.
    fn splice_through(sides: Sides, drop: &mut dyn FnMut(&[u8]) -> bool) -> World {
        let mut wire = Wire::default();
        let held_end = sides.client_isn.wrapping_add(1 + 3000);
        let w = splice_observed(&sides, &mut |f| {
            let lost = drop(f);
            if !lost {
                wire.note(f, held_end);
            }
            lost
        });
        // What each end was shown, against what it agreed to in its own handshake.
        let view = |p: &Peer| p.conn.as_ref().expect("connected").splice_view(w.now);
        let (client, backend) = (view(&w.client), view(&w.backend));
        if client.timestamps.is_none() {
            assert_eq!(wire.ts_to_client, 0, "no timestamps to a client that did not agree to them");
        }
        if backend.timestamps.is_none() {
            assert_eq!(wire.ts_held_to_backend, 0, "mbox's own segments carry no timestamps the backend did not agree to");
        }
        if !client.sack {
            assert_eq!(wire.sack_to_client, 0, "no SACK blocks to a client that did not agree to them");
        }
        // The windows each end was shown: the other's, rescaled (RFC 7323 2.3), never more
        // than it offered, never less by more than the receiver's scale can say.
        let shift = |s: Option<u8>| s.map_or(0, u32::from);
        for (dir, from, from_shift, to, to_shift) in [
            (
                "to the client",
                &wire.from_backend,
                shift(backend.our_window_scale),
                &wire.to_client_spliced,
                shift(client.peer_window_scale),
            ),
            ("to the backend", &wire.from_client, shift(client.our_window_scale), &wire.to_backend, shift(backend.peer_window_scale)),
        ] {
            let offered = from.iter().map(|&w| u64::from(w) << from_shift).max().unwrap_or(0);
            let shown = to.iter().map(|&w| u64::from(w) << to_shift).max().unwrap_or(0);
            assert!(shown <= offered, "{dir}: shown {shown} bytes of window, offered {offered}");
            let expressible = offered.min(0xffff << to_shift);
            assert!(shown + (1 << to_shift) > expressible, "{dir}: shown {shown}, offered {offered} (shift {to_shift})");
        }
        w
    }

    /// What a splice's frames showed each end (those delivered).
    #[derive(Default)]
    struct Wire {
        /// Window fields (SYNs left out) the backend sent, and the client was sent once the
        /// backend had (mbox's own connection with the client is silent by then).
        from_backend: Vec<u16>,
        to_client_spliced: Vec<u16>,
        /// Window fields (SYNs left out) the client sent, and the backend was sent.
        from_client: Vec<u16>,
        to_backend: Vec<u16>,
        ts_to_client: usize,
        sack_to_client: usize,
        /// mbox's segments of held bytes to the backend with a timestamps option.
        ts_held_to_backend: usize,
    }

    impl Wire {
        fn note(&mut self, f: &[u8], held_end: u32) {
            let Some((t, src, dst, len)) = tcp_of(f) else { return };
            let (client, backend) = (IpAddr::V4(CLIENT.0), IpAddr::V4(BACKEND.0));
            if src == backend && t.flags & SYN == 0 {
                self.from_backend.push(t.window);
            }
            if dst == client && !self.from_backend.is_empty() && t.flags & SYN == 0 {
                self.to_client_spliced.push(t.window);
            }
            if src == client && t.flags & SYN == 0 {
                self.from_client.push(t.window);
            }
            if dst == backend && t.flags & SYN == 0 {
                self.to_backend.push(t.window);
            }
            if dst == client {
                self.ts_to_client += usize::from(t.options.timestamps.is_some());
                self.sack_to_client += usize::from(!t.options.sack.is_empty());
            }
            // Held bytes lie before `held_end` in the client's sequence space (which is the
            // backend's: mbox's SYN to it carries the client's ISN).
            if dst == backend && len > 0 && (held_end.wrapping_sub(t.seq) as i32) > 0 {
                self.ts_held_to_backend += usize::from(t.options.timestamps.is_some());
            }
        }
    }

    /// [`splice_through`]'s exchange, each frame shown to `drop` (which may observe it).
    fn splice_observed(sides: &Sides, drop: &mut dyn FnMut(&[u8]) -> bool) -> World {
        const MS: u64 = 1_000_000;
        let mut w = World::new(Refusal::Http503, sides.client, sides.backend, sides.client_isn, sides.backend_isn);
        w.shard.wants_backend = sides.tap;
        w.run_dropping(drop);
        let request: Vec<u8> = b"GET /big HTTP/1.1\r\nHost: example\r\n\r\n".iter().copied().cycle().take(3000).collect();
        w.client_write(&request);
        w.run_dropping(drop);
        assert!(w.step_until(MS, 5_000 * MS, drop, |w| w.shard.data.len() >= request.len()), "the request is held");
        assert_eq!(w.shard.data, request, "the NF read the held request");
        assert!(w.backend.conn.is_none(), "no backend before the bind");
        assert_eq!(w.bind(), BindStatus::Done);
        assert_eq!(w.bind(), BindStatus::Ended, "once");
        w.now += MS;
        w.run_dropping(drop);
        // Lost frames are sent again on timers: the bind is over once the opener has had every
        // held byte acknowledged.
        let i = w.conn_index();
        let bound = w.step_until(MS, 10_000 * MS, drop, |w| w.served.splice_settled(i) && w.backend.received.len() >= request.len());
        assert!(bound, "{:?}", w.served.stats);
        assert_eq!(w.served.stats.spliced, 1);
        assert_eq!(w.backend.received, request, "mbox sent the backend what it held");
        // The backend's answer, bigger than any window, and more from the client after.
        let answer: Vec<u8> = (0..sides.answer as u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut sent = 0;
        for round in 0..20_000 {
            w.now += MS;
            let now = w.now;
            if sent < answer.len() {
                sent += w.backend_write(&answer[sent..]);
                if sent == answer.len() {
                    w.backend.with(|conn, sink| conn.as_mut().unwrap().close(now, sink));
                }
            }
            if round == 3 {
                w.client_write(&sides.more);
            }
            w.tick(drop);
            if w.client.received.len() == answer.len() && w.backend.received.len() == request.len() + sides.more.len() {
                break;
            }
        }
        assert_eq!(w.client.received.len(), answer.len());
        assert!(w.client.received == answer, "the answer byte-exact through the splice");
        assert_eq!(w.backend.received.len(), request.len() + sides.more.len(), "{:?}", w.served.stats);
        assert!(w.backend.received[request.len()..] == sides.more[..], "the client's bytes after the bind byte-exact");
        assert_eq!(w.shard.data.len(), request.len(), "the NF gets no client bytes after the bind");
        if sides.tap {
            assert!(w.shard.backend_data == answer, "the backend's bytes reported byte-exact, in order, once");
            assert_eq!((w.shard.backend_gaps.len(), w.served.stats.backend_bytes_read), (0, answer.len() as u64));
        } else {
            assert_eq!((w.shard.backend_data.len(), w.served.stats.backend_bytes_read), (0, 0), "nobody asked for them");
        }
        assert_eq!(w.served.budget.held(), 0, "a splice that carries reserves no buffer memory");
        w.served.check_invariants().unwrap();
        let now = w.now;
        w.client.with(|conn, sink| conn.as_mut().unwrap().close(now, sink));
        w.run_dropping(drop);
        // Both FINs crossed: the NF is told at once (a balancer counts it gone), while the
        // splice lingers for late retransmissions; then it is gone, told once.
        assert!(w.step_until(MS, 5_000 * MS, drop, |w| w.terminations() > 0), "{:?}", w.shard.events);
        assert!(w.served.stats.spliced_to_client > 100 && w.served.stats.spliced_to_backend > 10, "{:?}", w.served.stats);
        assert_eq!(w.served.stats.splice_errors, 0);
        assert_eq!(w.terminations(), 1, "{:?}", w.shard.events);
        assert_eq!(w.served.connections(), 1, "lingering");
        w.now += 3_000_000_000;
        let now = w.now;
        for p in [&mut w.client, &mut w.backend] {
            p.with(|conn, sink| conn.as_mut().unwrap().on_timer(now, sink));
        }
        w.run_dropping(drop);
        assert_eq!(w.served.connections(), 0);
        assert_eq!(w.served.splice_backends(), 0, "the backend side forgotten with it");
        assert_eq!(w.terminations(), 1, "{:?}", w.shard.events);
        w.served.check_invariants().unwrap();
        w
    }

    #[test]
    fn a_request_held_and_bound_reaches_the_backend_and_its_answer_the_client() {
        splice_with(mbox_stack::endpoint::Config::default());
    }

    #[test]
    fn a_splice_joins_sides_with_other_window_scales_and_no_sack() {
        // The backend: a 4 MiB window (another scale), no SACK, a smaller MSS.
        splice_with(mbox_stack::endpoint::Config { recv_window: 4 << 20, sack: false, mss: 1200, ..Default::default() });
    }

    #[test]
    fn the_source_port_steers_the_backends_answers_to_the_binding_shard() {
        use mbox_stack::flow_key::{shard_of, FlowKey};
        use mbox_stack::wire::{parse_frame, LinkType, Packet, ParseOptions};
        for shard in 0..4u16 {
            let credits = Arc::new(SendCredits::new(100, 4));
            let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
            let mut served = Served::new(shard, splicer_spec(Refusal::Rst), vec![DEFAULT_MAC, DEFAULT_MAC], credits, false);
            served.set_steering(4, true);
            served.add_reader(reader);
            let mut fake = FakeShard { room: true, ..Default::default() };
            let cfg = mbox_stack::endpoint::Config::default();
            let mut client = Peer::new(CLIENT, (SERVICE, 80), cfg);
            let mut backend = Peer::new(BACKEND, (SOURCE, 0), cfg);
            client.with(|conn, sink| *conn = Some(Connection::connect(&cfg, 5, 0, sink)));
            run(&mut served, &mut fake, &mut client, &mut backend, true, 0);
            assert_eq!(bind(&mut writer, &fake), BindStatus::Done);
            run(&mut served, &mut fake, &mut client, &mut backend, true, 0);
            // A frame from the backend to where mbox's SYN came from, as the input would steer it.
            assert!(backend.conn.is_some(), "the backend got mbox's SYN");
            let seg = SegmentOut { seq: 1, ack: 1, flags: ACK, window: 1, options: Default::default(), payload_len: 0 };
            backend.with(|_, sink| sink.transmit(&seg, Payload::EMPTY));
            let syn_ack = backend.frames.pop().unwrap();
            let Ok(Packet::Ip(p)) = parse_frame(&syn_ack, syn_ack.len() as u32, LinkType::Ethernet, ParseOptions::default()) else {
                panic!()
            };
            assert_eq!(shard_of(FlowKey::from_parsed(&p, false).0.shard_hash(), 4), usize::from(shard));
        }
    }

    #[test]
    fn a_backend_nobody_answers_for_gets_the_client_a_503() {
        let credits = Arc::new(SendCredits::new(100, 4));
        let (mut writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let mut served = Served::new(0, splicer_spec(Refusal::Http503), vec![DEFAULT_MAC, DEFAULT_MAC], credits, false);
        served.add_reader(reader);
        let mut shard = FakeShard { room: true, ..Default::default() };
        let cfg = mbox_stack::endpoint::Config::default();
        let mut client = Peer::new(CLIENT, (SERVICE, 80), cfg);
        let mut backend = Peer::new(BACKEND, (SOURCE, 0), cfg);
        client.with(|conn, sink| *conn = Some(Connection::connect(&cfg, 5, 0, sink)));
        run(&mut served, &mut shard, &mut client, &mut backend, false, 0);
        client.with(|conn, sink| conn.as_mut().unwrap().write(b"GET / HTTP/1.0\r\n\r\n", 0, sink));
        run(&mut served, &mut shard, &mut client, &mut backend, false, 0);
        assert_eq!(bind(&mut writer, &shard), BindStatus::Done);
        let mut now = 0;
        for _ in 0..10 {
            now += 500_000_000;
            run(&mut served, &mut shard, &mut client, &mut backend, false, now);
        }
        assert_eq!(served.stats.backends_unresolved, 1, "{:?}", served.stats);
        assert!(served.stats.arp_requests_sent >= 3);
        assert_eq!(client.received, splice::HTTP_503);
        assert!(backend.conn.is_none());
        served.check_invariants().unwrap();
    }

    #[test]
    fn a_backend_that_refuses_gets_the_client_a_rst_when_so_configured() {
        let (mut served, mut shard, mut writer, mut client, mut backend) =
            held_connection(Refusal::Rst, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true);
        assert_eq!(bind(&mut writer, &shard), BindStatus::Done);
        run(&mut served, &mut shard, &mut client, &mut backend, true, 1_000_000);
        assert_eq!((served.stats.backends_refused, served.stats.clients_refused, served.stats.spliced), (1, 1, 0), "{:?}", served.stats);
        assert_eq!(client.closed, Some(CloseReason::PeerReset), "the client was reset");
        assert!(client.received.is_empty() && backend.conn.is_none());
        served.check_invariants().unwrap();
    }

    #[test]
    fn a_client_that_gets_no_bind_is_answered_503_at_the_hold_timeout() {
        // It sent nothing: the NF has nothing to decide on, and the hold runs out (5 s here).
        let (mut served, mut shard, _writer, mut client, mut backend) = held_connection(Refusal::Http503, b"", false);
        run(&mut served, &mut shard, &mut client, &mut backend, true, 4_000_000_000);
        assert!(client.received.is_empty(), "still held at 4 s");
        run(&mut served, &mut shard, &mut client, &mut backend, true, 5_100_000_000);
        assert_eq!((served.stats.hold_timeouts, served.stats.clients_refused), (1, 1), "{:?}", served.stats);
        assert_eq!(client.received, splice::HTTP_503);
        assert!(backend.conn.is_none() && backend.frames.is_empty(), "no backend was opened");
        served.check_invariants().unwrap();
    }

    #[test]
    fn a_bind_to_another_family_refuses_the_client_at_once() {
        let (mut served, mut shard, mut writer, mut client, mut backend) =
            held_connection(Refusal::Http503, b"GET / HTTP/1.0\r\n\r\n", false);
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(bind_to(&mut writer, &shard, v6), BindStatus::Done, "queued: the shard decides");
        run(&mut served, &mut shard, &mut client, &mut backend, true, 1_000_000);
        assert_eq!((served.stats.binds_refused, served.stats.clients_refused, served.stats.binds), (1, 1, 0), "{:?}", served.stats);
        assert_eq!(client.received, splice::HTTP_503);
        assert!(backend.frames.is_empty() && backend.conn.is_none());
        served.check_invariants().unwrap();
    }

    const MS: u64 = 1_000_000;
    /// The request the corner cases' clients send.
    const REQUEST: &[u8] = b"GET /corner HTTP/1.1\r\nHost: example\r\n\r\n";

    fn is(addr: IpAddr, who: (Ipv4Addr, u16, [u8; 6])) -> bool {
        addr == IpAddr::V4(who.0)
    }

    /// Bytes for one direction (distinct per `salt`, so that a misplaced byte shows).
    fn pattern(len: usize, salt: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(31).wrapping_add(i / 509).wrapping_add(salt)) as u8).collect()
    }

    impl World {
        /// [`World::held`], bound and spliced: the backend acknowledged every held byte.
        fn spliced(refuse: Refusal, request: &[u8]) -> World {
            let mut w = World::held(refuse, request);
            assert_eq!(w.bind(), BindStatus::Done);
            w.run();
            let i = w.conn_index();
            assert!(w.step_until(MS, 1_000 * MS, &mut |_| false, |w| w.served.splice_settled(i)), "{:?}", w.served.stats);
            assert_eq!(w.backend.received, request);
            w
        }

        fn terminations_for(&self, reason: u8) -> usize {
            self.shard.events.iter().filter(|e| e.0 == ConnEventKind::Terminate && e.2 == reason).count()
        }
    }

    // 1. Options that differ between the client's side and the backend's.

    #[test]
    fn timestamps_on_the_clients_side_only_splice_byte_exact_both_ways() {
        let backend = EndpointConfig { timestamps: false, ..Default::default() };
        let w = splice_through(Sides { backend, more: pattern(20_000, 1), ..Sides::default() }, &mut |_| false);
        let view = |p: &Peer| p.conn.as_ref().unwrap().splice_view(w.now);
        assert!(view(&w.client).timestamps.is_some() && view(&w.backend).timestamps.is_none(), "one side with timestamps");
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn timestamps_on_the_backends_side_only_splice_byte_exact_both_ways() {
        // mbox's SYN carries the client's options: the backend, able to, does not use them.
        let client = EndpointConfig { timestamps: false, recv_window: 1 << 20, ..Default::default() };
        let w = splice_through(Sides { client, more: pattern(20_000, 2), ..Sides::default() }, &mut |_| false);
        let view = |p: &Peer| p.conn.as_ref().unwrap().splice_view(w.now);
        assert!(view(&w.client).timestamps.is_none() && view(&w.backend).timestamps.is_none(), "{:?}", view(&w.backend));
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_client_without_sack_gets_no_sack_blocks_from_the_backend_after_a_loss() {
        // The client's first segment after the bind is lost: the backend holds the rest out of
        // order, and would report them in SACK blocks had mbox's SYN offered it SACK.
        let client = EndpointConfig { sack: false, recv_window: 1 << 20, ..Default::default() };
        let after_held = (u32::MAX - 100).wrapping_add(1 + 3000);
        let mut lost = 0;
        let w = splice_through(Sides { client, more: pattern(20_000, 3), ..Sides::default() }, &mut |f| {
            let Some((t, src, _, len)) = tcp_of(f) else { return false };
            let lose = is(src, CLIENT) && len > 0 && t.seq == after_held && lost == 0;
            lost += usize::from(lose);
            lose
        });
        assert_eq!(lost, 1, "the client's first segment after the bind was lost");
        let view = |p: &Peer| p.conn.as_ref().unwrap().splice_view(w.now);
        assert!(!view(&w.client).sack && !view(&w.backend).sack, "neither side uses SACK");
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_client_without_window_scaling_splices_to_a_backend_with_a_large_window() {
        let client = EndpointConfig { window_scaling: false, recv_window: 1 << 20, ..Default::default() };
        let backend = EndpointConfig { recv_window: 4 << 20, ..Default::default() };
        let w = splice_through(Sides { client, backend, more: pattern(20_000, 4), ..Sides::default() }, &mut |_| false);
        let view = |p: &Peer| p.conn.as_ref().unwrap().splice_view(w.now);
        assert_eq!((view(&w.client).peer_window_scale, view(&w.backend).our_window_scale), (None, None), "no scaling either side");
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_backend_without_window_scaling_splices_to_a_client_that_scales() {
        // The client's side scales (its own shift: a 1 MiB window); the backend's does not:
        // the client's windows reach the backend shifted down to fit 16 bits.
        let backend = EndpointConfig { window_scaling: false, ..Default::default() };
        let w = splice_through(Sides { backend, more: pattern(20_000, 5), ..Sides::default() }, &mut |_| false);
        let view = |p: &Peer| p.conn.as_ref().unwrap().splice_view(w.now);
        assert!(view(&w.client).our_window_scale.is_some_and(|s| s > 0), "{:?}", view(&w.client));
        assert_eq!((view(&w.backend).our_window_scale, view(&w.backend).peer_window_scale), (None, None));
        w.served.check_invariants().unwrap();
    }

    // 2. Retransmissions from the client.

    #[test]
    fn a_retransmitted_syn_opens_one_connection_and_one_backend() {
        let cfg = EndpointConfig::default();
        let mut w = World::new(Refusal::Http503, cfg, cfg, 5, 777_000);
        // The same SYN twice before the handshake completes.
        let syn = w.client.frames[0].clone();
        w.client.frames.push(syn.clone());
        w.run();
        assert_eq!((w.served.connections(), w.served.stats.accepted, w.served.stats.established), (1, 1, 1), "{:?}", w.served.stats);
        assert_eq!(w.shard.started.len(), 1, "the NF was told of one connection");
        assert_eq!(w.client.conn.as_ref().unwrap().state(), State::Established);
        w.client_write(REQUEST);
        w.run();
        // Once more after the handshake: a challenge ACK (RFC 5961 4), nothing new.
        w.client.frames.push(syn);
        w.run();
        assert_eq!((w.served.connections(), w.shard.started.len()), (1, 1));
        assert_eq!(w.shard.data, REQUEST);
        assert_eq!(w.bind(), BindStatus::Done);
        w.run();
        let i = w.conn_index();
        assert!(w.step_until(MS, 1_000 * MS, &mut |_| false, |w| w.served.splice_settled(i)));
        assert_eq!((w.served.stats.binds, w.served.stats.spliced), (1, 1));
        assert_eq!(w.backend.received, REQUEST, "the request, once");
        assert_eq!(w.served.splice_backends(), 1);
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_retransmitted_request_before_during_and_after_the_bind_reaches_the_backend_once() {
        let request = pattern(3000, 6);
        let cfg = EndpointConfig::default();
        let mut w = World::new(Refusal::Http503, cfg, cfg, u32::MAX - 1000, 777_000);
        w.run();
        w.client_write(&request);
        let copies: Vec<Vec<u8>> = w.client.frames.clone();
        assert!(copies.len() >= 2, "the request in segments");
        w.run();
        // Before the bind: mbox's own connection has them already.
        w.client.frames.extend(copies.iter().cloned());
        w.run();
        assert_eq!(w.shard.data, request, "the NF read the request once");
        assert_eq!(w.bind(), BindStatus::Done);
        // While the backend's SYN-ACK is lost (opening): mbox's connection still answers.
        let mut syn_acks_lost = 0;
        w.run_dropping(&mut |f| {
            let lost = tcp_of(f).is_some_and(|(t, src, _, _)| is(src, BACKEND) && t.flags & SYN != 0);
            syn_acks_lost += usize::from(lost);
            lost
        });
        assert_eq!((syn_acks_lost, w.served.stats.spliced), (1, 0));
        w.client.frames.extend(copies.iter().cloned());
        w.run();
        let i = w.conn_index();
        // The opener's SYN again (1 s) or the backend's SYN-ACK again: spliced.
        assert!(w.step_until(10 * MS, 3_000 * MS, &mut |_| false, |w| w.served.splice_settled(i)), "{:?}", w.served.stats);
        assert_eq!(w.backend.received, request, "the held request, once");
        // After the splice: translated and sent on; the backend's connection drops them.
        let before = w.served.stats.spliced_to_backend;
        w.client.frames.extend(copies.iter().cloned());
        w.run();
        assert_eq!(w.served.stats.spliced_to_backend, before + copies.len() as u64);
        assert_eq!(w.backend.received, request, "still once");
        // And the connection carries on, byte-exact.
        let more = pattern(5000, 7);
        w.client_write(&more);
        assert!(w.step_until(MS, 1_000 * MS, &mut |_| false, |w| w.backend.received.len() == request.len() + more.len()));
        assert!(w.backend.received[..request.len()] == request[..] && w.backend.received[request.len()..] == more[..]);
        assert_eq!((w.served.connections(), w.served.stats.splice_errors), (1, 0));
        w.served.check_invariants().unwrap();
    }

    // 3. Resets from either side, before, during and after the bind.

    #[test]
    fn a_client_reset_while_held_opens_no_backend() {
        let mut w = World::held(Refusal::Http503, REQUEST);
        w.client.with(|conn, sink| conn.as_mut().unwrap().abort(sink));
        w.run();
        assert_eq!((w.served.connections(), w.served.stats.aborted), (0, 1), "{:?}", w.served.stats);
        assert_eq!(w.terminations_for(REASON_RST), 1, "{:?}", w.shard.events);
        // A bind that comes after finds the connection gone.
        assert_eq!(w.bind(), BindStatus::Ended);
        w.step(6_000 * MS, &mut |_| false);
        let s = w.served.stats;
        assert_eq!((s.binds, s.arp_requests_sent, s.hold_timeouts, s.clients_refused), (0, 0, 0, 0), "{s:?}");
        assert!(w.backend.conn.is_none() && w.backend.frames.is_empty(), "no backend opened");
        assert_eq!((w.served.splice_backends(), w.terminations()), (0, 1));
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_client_reset_while_the_backends_syn_is_out_leaves_no_splice() {
        let mut w = World::held(Refusal::Http503, REQUEST);
        assert_eq!(w.bind(), BindStatus::Done);
        // A slow backend: its SYN-ACK comes after the client gave up.
        let mut late = Vec::new();
        w.run_dropping(&mut |f| {
            let from_backend = tcp_of(f).is_some_and(|(_, src, _, _)| is(src, BACKEND));
            if from_backend {
                late.push(f.to_vec());
            }
            from_backend
        });
        assert!(w.backend.conn.is_some() && late.len() == 1, "the backend got mbox's SYN");
        w.client.with(|conn, sink| conn.as_mut().unwrap().abort(sink));
        w.run();
        assert_eq!((w.served.connections(), w.served.splice_backends()), (0, 0));
        assert_eq!(w.terminations_for(REASON_RST), 1, "{:?}", w.shard.events);
        // The SYN-ACK finds no splice: RFC 9293 3.10.7.1, a RST.
        w.backend.frames.append(&mut late);
        w.run();
        assert_eq!(w.backend.closed, Some(CloseReason::PeerReset));
        assert_eq!((w.served.stats.resets_sent, w.served.stats.spliced), (1, 0));
        // Nothing of the opener is left: no SYN again, no more frames either way.
        let mut to_backend = 0;
        w.step_until(
            100 * MS,
            6_000 * MS,
            &mut |f| {
                to_backend += usize::from(tcp_of(f).is_some_and(|(_, _, dst, _)| is(dst, BACKEND)));
                false
            },
            |_| false,
        );
        assert_eq!(to_backend, 0);
        assert!(w.backend.received.is_empty() && w.client.received.is_empty());
        assert_eq!((w.served.connections(), w.terminations()), (0, 1));
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_client_reset_after_the_bind_reaches_the_backend_and_ends_the_splice() {
        let mut w = World::spliced(Refusal::Http503, REQUEST);
        w.client.with(|conn, sink| conn.as_mut().unwrap().abort(sink));
        w.run();
        assert_eq!(w.backend.closed, Some(CloseReason::PeerReset), "the RST passed on, in the backend's sequence space");
        assert_eq!(w.terminations_for(REASON_RST), 1, "{:?}", w.shard.events);
        w.step(10 * MS, &mut |_| false);
        assert_eq!((w.served.connections(), w.served.splice_backends(), w.terminations()), (0, 0, 1));
        assert_eq!(w.served.stats.aborted, 1, "a splice reset counts as aborted: {:?}", w.served.stats);
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_backend_reset_after_the_bind_reaches_the_client_and_ends_the_splice() {
        let mut w = World::spliced(Refusal::Http503, REQUEST);
        let answer = pattern(5000, 8);
        assert_eq!(w.backend_write(&answer), answer.len());
        w.run();
        assert_eq!(w.client.received, answer);
        w.backend.with(|conn, sink| conn.as_mut().unwrap().abort(sink));
        w.run();
        assert_eq!(w.client.closed, Some(CloseReason::PeerReset), "the RST passed on, in the client's sequence space");
        assert_eq!(w.terminations_for(REASON_RST), 1, "{:?}", w.shard.events);
        w.step(10 * MS, &mut |_| false);
        assert_eq!((w.served.connections(), w.served.splice_backends(), w.terminations()), (0, 0, 1));
        assert_eq!(w.served.stats.aborted, 1, "{:?}", w.served.stats);
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_client_the_nf_answers_itself_is_not_refused_again_at_the_hold_timeout() {
        let mut w = World::held(Refusal::Rst, b"GET / HTTP/1.1\r\nHost: nobody\r\n\r\n");
        // The NF routes nothing there: its own 503, then a close.
        let (slot, id, _) = w.shard.started[0];
        let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
        assert_eq!(w.writer.request(&flow, mbox_abi::StreamOp::Send, splice::HTTP_503).0, mbox_abi::StreamStatus::Done);
        assert_eq!(w.writer.request(&flow, mbox_abi::StreamOp::Close, &[]).0, mbox_abi::StreamStatus::Done);
        w.run();
        assert_eq!(w.client.received, splice::HTTP_503);
        // Past the hold (5 s here): no refusal of mbox's own on top (with refuse = "rst", a RST).
        w.step(6_000 * MS, &mut |_| false);
        assert_eq!((w.served.stats.hold_timeouts, w.served.stats.clients_refused), (0, 0), "{:?}", w.served.stats);
        assert_ne!(w.client.closed, Some(CloseReason::PeerReset));
        assert_eq!(bind(&mut w.writer, &w.shard), BindStatus::Ended, "answered: no bind now");
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_held_connection_its_nf_answers_reopens_its_window_for_what_the_nf_read_while_held() {
        // 15 KiB of the 16 KiB hold read by the NF before it answers (a cache's hit, a 413):
        // from then on the connection is the Endpoint's, and those bytes count as read.
        let first = pattern(15 << 10, 3);
        let mut w = World::held(Refusal::Http503, &first);
        assert!(w.shard.data == first, "{} of {} bytes held", w.shard.data.len(), first.len());
        let (slot, id, _) = w.shard.started[0];
        let flow = FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 };
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(w.writer.request(&flow, mbox_abi::StreamOp::Send, answer).0, mbox_abi::StreamStatus::Done);
        w.run();
        assert_eq!(w.client.received, answer);
        // 10 KiB more: the hold left less than a segment's window, so the client crawls unless
        // the bytes read while held were reported to the connection.
        let more = pattern(10 << 10, 4);
        w.client_write(&more);
        // At once: with only the hold's last KiB of window, the rest would wait for the
        // client's window probes, a KiB each.
        w.run();
        assert_eq!(w.shard.data.len(), first.len() + more.len(), "all sent in the open window, no probe needed");
        assert!(w.shard.data[first.len()..] == more[..], "the bytes after the answer, in order");
        assert_eq!((w.served.stats.hold_timeouts, w.served.stats.clients_refused), (0, 0), "{:?}", w.served.stats);
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_forged_rst_far_from_the_window_is_sent_on_and_the_splice_stays() {
        let mut w = World::spliced(Refusal::Http503, REQUEST);
        let answer = pattern(5000, 9);
        assert_eq!(w.backend_write(&answer), answer.len());
        w.run();
        assert_eq!(w.client.received, answer);
        // A RST in the client's name whose sequence number is nowhere near what the backend
        // expects (an off-path guess): the backend judges it; mbox keeps the splice.
        let v = w.client.conn.as_ref().unwrap().splice_view(w.now);
        let forged =
            SegmentOut { seq: v.snd_nxt.wrapping_add(1 << 30), ack: 0, flags: RST, window: 0, options: Default::default(), payload_len: 0 };
        w.client.with(|_, sink| sink.transmit(&forged, Payload::EMPTY));
        w.run();
        w.step(10 * MS, &mut |_| false);
        assert_eq!((w.served.stats.splice_rsts_out_of_window, w.served.connections()), (1, 1), "{:?}", w.served.stats);
        assert_eq!(w.terminations(), 0, "the NF was not told of an end");
        assert_eq!(w.backend.closed, None, "the backend refused it too (RFC 5961)");
        // The splice still carries both ways.
        let more = pattern(3000, 10);
        assert_eq!(w.backend_write(&more), more.len());
        w.run();
        assert_eq!(&w.client.received[answer.len()..], &more[..]);
        w.served.check_invariants().unwrap();
    }

    // 4. The backend's bytes read for the NFs (a cache filling).

    #[test]
    fn the_backends_bytes_reach_nfs_that_read_them_byte_exact() {
        splice_through(Sides { tap: true, ..Sides::default() }, &mut |_| false);
    }

    #[test]
    fn the_backends_bytes_reach_nfs_byte_exact_through_loss_and_sack() {
        // Every 9th data frame from the backend lost before mbox and every 13th after it,
        // on the way to the client: the backend sends holes again (the client SACKs what
        // came), and what mbox kept out of order fills in behind them.
        let (mut seen, mut lost) = (0, 0);
        let w = splice_through(Sides { tap: true, ..Sides::default() }, &mut |f| {
            let Some((_, src, dst, len)) = tcp_of(f) else { return false };
            if len == 0 || !(is(src, BACKEND) || (is(dst, CLIENT) && seen > 0)) {
                return false;
            }
            seen += 1;
            let lose = (is(src, BACKEND) && seen % 9 == 4) || (is(dst, CLIENT) && seen % 13 == 6);
            lost += usize::from(lose);
            lose
        });
        assert!(lost > 20, "{lost} frames lost");
        assert_eq!(w.served.stats.backend_gap_bytes, 0);
    }

    #[test]
    fn a_splice_whose_nfs_stop_reading_stops_copying() {
        let (mut w, answer) = spliced_world(true);
        let half = answer.len() / 2;
        let mut sent = 0;
        while sent < half {
            sent += w.backend_write(&answer[sent..half]);
            w.step(1_000_000, &mut |_| false);
        }
        w.step(1_000_000, &mut |_| false);
        assert_eq!(w.shard.backend_data, answer[..half]);
        // The NF has what it wanted and unsubscribes: no more copies, the splice goes on.
        w.shard.wants_backend = false;
        while sent < answer.len() {
            sent += w.backend_write(&answer[sent..]);
            w.step(1_000_000, &mut |_| false);
        }
        assert!(w.step_until(1_000_000, 5_000_000_000, &mut |_| false, |w| w.client.received.len() == answer.len()));
        assert!(w.client.received == answer);
        assert_eq!(w.shard.backend_data.len(), half, "nothing copied once nobody reads");
        assert_eq!(w.served.stats.backend_bytes_read, half as u64);
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_splice_without_event_room_for_the_copies_goes_on_without_them() {
        let (mut w, answer) = spliced_world(true);
        let mut sent = w.backend_write(&answer[..10_000]);
        w.step(1_000_000, &mut |_| false);
        assert_eq!(w.shard.backend_data, answer[..10_000]);
        // The shard is short of event room (its NFs lag): the splice does not wait for the
        // copies, though there is room for what the splice itself does.
        w.shard.event_room = Some(EVENTS_PER_OPERATION);
        while sent < answer.len() {
            sent += w.backend_write(&answer[sent..]);
            w.step(1_000_000, &mut |_| false);
        }
        assert!(w.step_until(1_000_000, 5_000_000_000, &mut |_| false, |w| w.client.received.len() == answer.len()));
        assert!(w.client.received == answer);
        assert_eq!((w.shard.backend_data.len(), w.served.stats.backend_reads_given_up), (10_000, 1));
    }

    /// A held request bound and spliced (the NFs read the backend's bytes if `tap`), and the
    /// answer the backend will send.
    fn spliced_world(tap: bool) -> (World, Vec<u8>) {
        let mut w = World::held(Refusal::Http503, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
        w.shard.wants_backend = tap;
        assert_eq!(w.bind(), BindStatus::Done);
        let i = w.conn_index();
        assert!(w.step_until(1_000_000, 5_000_000_000, &mut |_| false, |w| w.served.splice_settled(i)));
        (w, pattern(100_000, 9))
    }

    // 5. Loss while the bind completes.

    #[test]
    fn a_lost_syn_ack_is_answered_by_the_openers_syn_again() {
        // Every SYN-ACK is lost until mbox has sent its SYN twice: the backend's own
        // retransmissions do not save it, the opener's does.
        let mut syns = 0;
        let mut lost = 0;
        splice_through(Sides::default(), &mut |f| {
            let Some((t, src, dst, _)) = tcp_of(f) else { return false };
            syns += usize::from(is(dst, BACKEND) && t.flags & (SYN | ACK) == SYN);
            let lose = is(src, BACKEND) && t.flags & SYN != 0 && syns < 2;
            lost += usize::from(lose);
            lose
        });
        assert_eq!(syns, 2, "the SYN once more, at the opener's timeout");
        assert!(lost >= 1);
    }

    #[test]
    fn a_lost_segment_of_the_held_bytes_is_sent_again_go_back_n() {
        let first_held = (u32::MAX - 100).wrapping_add(1);
        let (mut sends, mut lost) = (0, 0);
        splice_through(Sides::default(), &mut |f| {
            let Some((t, _, dst, len)) = tcp_of(f) else { return false };
            let first = is(dst, BACKEND) && len > 0 && t.seq == first_held;
            sends += usize::from(first);
            let lose = first && lost == 0;
            lost += usize::from(lose);
            lose
        });
        assert_eq!(lost, 1);
        assert_eq!(sends, 2, "the held bytes' first segment again, at the opener's timeout");
    }

    #[test]
    fn a_lost_acknowledgement_of_the_held_bytes_gets_them_sent_again() {
        let held_end = (u32::MAX - 100).wrapping_add(1 + 3000);
        let (mut held_sends, mut lost) = (0, 0);
        splice_through(Sides::default(), &mut |f| {
            let Some((t, src, dst, len)) = tcp_of(f) else { return false };
            if is(dst, BACKEND) && len > 0 && (held_end.wrapping_sub(t.seq) as i32) > 0 {
                held_sends += 1;
            }
            let lose = is(src, BACKEND) && t.flags & (SYN | ACK) == ACK && t.ack == held_end && lost == 0;
            lost += usize::from(lose);
            lose
        });
        assert_eq!(lost, 1);
        assert!(held_sends > 3, "3000 bytes in 3 segments, and again: {held_sends}");
    }

    // 6. Sequence numbers that wrap after the bind.

    #[test]
    fn a_spliced_client_is_shown_the_backends_window_past_64_kib() {
        // mbox's window toward the client is the hold's (16 KiB), but the shift it offered is
        // sized for after the splice: the backend's 1 MiB window reaches the client whole.
        let sides = Sides { backend: EndpointConfig { recv_window: 1 << 20, ..Default::default() }, ..Sides::default() };
        let w = splice_through(sides, &mut |_| false);
        let v = w.client.conn.as_ref().expect("connected").splice_view(w.now);
        let window = u32::from(v.peer_window) << v.peer_window_scale.unwrap_or(0);
        assert!(window > 512 << 10, "the client may send {window} bytes ahead: {v:?}");
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_backend_isn_near_the_top_wraps_after_the_bind_byte_exact() {
        let backend_isn = u32::MAX - 2000;
        assert!(backend_isn.checked_add(200_000).is_none(), "the answer wraps the backend's sequence numbers");
        splice_through(Sides { backend_isn, more: pattern(20_000, 9), ..Sides::default() }, &mut |_| false);
    }

    #[test]
    fn a_client_isn_near_the_top_wraps_after_the_bind_byte_exact() {
        // The request (3000 bytes) fits below the top: the wrap comes 2000 bytes into what the
        // client sends after the bind.
        let client_isn = u32::MAX - 5000;
        assert!(client_isn.checked_add(1 + 3000).is_some() && client_isn.checked_add(1 + 3000 + 20_000).is_none());
        splice_through(Sides { client_isn, more: pattern(20_000, 10), ..Sides::default() }, &mut |_| false);
    }

    // 7. Bad input.

    #[test]
    fn a_client_ignoring_the_window_gets_no_more_than_hold_bytes_held() {
        let mut w = World::held(Refusal::Http503, b"");
        let hold = 16 << 10; // the service's receive window in `splicer_spec`: what mbox holds
        let v = w.client.conn.as_ref().unwrap().splice_view(w.now);
        assert_eq!(u32::from(v.peer_window) << v.peer_window_scale.unwrap_or(0), hold as u32, "the client's window is the hold");
        // Made by hand: in order, 1400 bytes each, well past the window (and one far beyond).
        let bytes = pattern(hold + 8000, 11);
        let ts = v.timestamps.map(|(recent, ours)| (ours, recent));
        let options = mbox_stack::wire::tcp::TcpOptions { timestamps: ts, ..Default::default() };
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + 1400).min(bytes.len());
            let seg =
                SegmentOut { seq: v.snd_nxt.wrapping_add(at as u32), ack: v.rcv_nxt, flags: ACK, window: 1000, options, payload_len: 0 };
            w.client.with(|_, sink| sink.transmit(&seg, Payload { first: &bytes[at..end], second: &[] }));
            at = end;
        }
        // The client's own connection knows nothing of them: it is set aside, the client a
        // sender of frames only (what mbox sends it is dropped).
        w.client.conn = None;
        let far = SegmentOut { seq: v.snd_nxt.wrapping_add(1 << 20), ack: v.rcv_nxt, flags: ACK, window: 1000, options, payload_len: 0 };
        w.client.with(|_, sink| sink.transmit(&far, Payload { first: b"far away", second: &[] }));
        w.run();
        let i = w.conn_index();
        assert_eq!(w.shard.data.len(), hold, "the NF got what the window allowed");
        assert!(w.shard.data == bytes[..hold]);
        assert_eq!(w.served.stats.bytes_received, hold as u64, "the rest never taken");
        let unacceptable = w.served.slots[i as usize].conn.as_ref().unwrap().stats().unacceptable;
        assert!(unacceptable >= 5, "segments past the window counted unacceptable: {unacceptable}");
        // Bound: the backend gets exactly what was held.
        assert_eq!(w.bind(), BindStatus::Done);
        w.run();
        assert!(w.step_until(MS, 1_000 * MS, &mut |_| false, |w| w.served.splice_settled(i)), "{:?}", w.served.stats);
        assert_eq!(w.backend.received.len(), hold);
        assert!(w.backend.received == bytes[..hold], "the held bytes, byte-exact");
        w.served.check_invariants().unwrap();
    }

    /// Rewrites a frame's TCP checksum after a test changed its bytes (IPv4, no VLAN tag).
    fn refill_tcp_checksum(f: &mut [u8], pseudo_header: u64) {
        let total = usize::from(u16::from_be_bytes([f[ETHERNET_LEN + 2], f[ETHERNET_LEN + 3]]));
        let segment = &mut f[ETHERNET_LEN + 20..ETHERNET_LEN + total];
        mbox_stack::wire::tcp::TcpPacket::new_unchecked(segment).fill_checksum(pseudo_header);
    }

    #[test]
    fn malformed_frames_from_the_backends_side_are_dropped_and_counted_and_a_bad_checksum_crosses_still_bad() {
        let mut w = World::spliced(Refusal::Http503, REQUEST);
        // A frame of the backend's own, and broken copies of it.
        assert_eq!(w.backend_write(b"hello"), 5);
        let good = w.backend.frames.pop().expect("the backend sent it");
        assert!(w.backend.frames.is_empty());
        let (frame, _) = TcpFrame::parse(&good, Checksums::Verify).unwrap();
        let pseudo = frame.ip.pseudo_header();
        let tcp_at = ETHERNET_LEN + 20;
        let mut broken: Vec<(&str, Vec<u8>)> = Vec::new();
        // A payload byte changed: the splice does not read payload, so the frame crosses with
        // its checksum still wrong (updated incrementally), for the client to drop.
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().unwrap() ^= 0x55;
        assert_eq!(w.served.take(&mut bad_sum, 1, w.now, &mut w.shard), Taken::Forward);
        assert!(TcpFrame::parse(&bad_sum, Checksums::Trust).is_ok(), "translated");
        assert!(TcpFrame::parse(&bad_sum, Checksums::Verify).is_err(), "and its checksum still wrong");
        // Truncated: the IPv4 total length says 20 + 12 bytes (its header checksum right).
        let mut short = good[..tcp_at + 12].to_vec();
        let mut ip = mbox_stack::wire::ipv4::Ipv4Packet::new_unchecked(&mut short[ETHERNET_LEN..]);
        ip.set_total_len(32);
        ip.fill_checksum();
        broken.push(("a truncated TCP header", short));
        // The buffer ends before the IP total length does.
        broken.push(("a frame cut short", good[..good.len() - 3].to_vec()));
        // A data offset past the segment, and one below the fixed header (checksums right).
        for offset in [15u8, 3] {
            let mut f = good.clone();
            f[tcp_at + 12] = (f[tcp_at + 12] & 0x0f) | (offset << 4);
            refill_tcp_checksum(&mut f, pseudo);
            broken.push(("a TCP data offset out of bounds", f));
        }
        // An option of illegal length (RFC 9293 MUST-7), checksum right.
        let mut f = good.clone();
        let options = &mut f[tcp_at + 20..tcp_at + usize::from(good[tcp_at + 12] >> 4) * 4];
        let ts = options.iter().position(|&b| b == 8).expect("the backend's frames carry timestamps");
        options[ts + 1] = 1;
        refill_tcp_checksum(&mut f, pseudo);
        broken.push(("an option of length 1", f));
        let n = broken.len() as u64;
        for (what, mut f) in broken {
            assert_eq!(w.served.take(&mut f, 1, w.now, &mut w.shard), Taken::Consumed, "{what}");
            assert!(w.shard.frames.is_empty(), "{what}: nothing sent or answered");
        }
        assert_eq!(w.served.stats.malformed, n, "each counted: {:?}", w.served.stats);
        // A frame too short for an IPv4 header is not a service's to judge (the L2/3 stack's).
        let mut stub = good[..ETHERNET_LEN + 10].to_vec();
        assert_eq!(w.served.take(&mut stub, 1, w.now, &mut w.shard), Taken::No);
        // The splice goes on: the good frame crosses.
        w.backend.frames.push(good);
        w.run();
        assert_eq!(w.client.received, b"hello");
        assert_eq!((w.served.stats.splice_errors, w.served.connections()), (0, 1));
        w.served.check_invariants().unwrap();
    }

    #[test]
    fn a_backend_frame_for_no_splice_gets_a_rst_and_a_rst_gets_nothing() {
        let mut w = World::spliced(Refusal::Http503, REQUEST);
        // Frames from the backend to the source address on a port no splice holds.
        let mut stray = Peer::new(BACKEND, (SOURCE, 5555), EndpointConfig::default());
        let segs = [
            SegmentOut { seq: 100, ack: 200, flags: ACK, window: 1000, options: Default::default(), payload_len: 0 },
            SegmentOut { seq: 100, ack: 0, flags: SYN, window: 1000, options: Default::default(), payload_len: 0 },
            SegmentOut { seq: 100, ack: 200, flags: RST | ACK, window: 0, options: Default::default(), payload_len: 0 },
            SegmentOut { seq: 100, ack: 0, flags: RST, window: 0, options: Default::default(), payload_len: 0 },
        ];
        for seg in &segs {
            stray.with(|_, sink| sink.transmit(seg, Payload::EMPTY));
        }
        let mut resets = Vec::new();
        for mut f in stray.frames.drain(..) {
            assert_eq!(w.served.take(&mut f, 1, w.now, &mut w.shard), Taken::Consumed);
            resets.append(&mut w.shard.frames);
        }
        assert_eq!(resets.len(), 2, "the ACK and the SYN answered, the RSTs not (RFC 9293 3.10.7.1)");
        let answers: Vec<(u16, u32, u32, u8)> = resets
            .iter()
            .map(|(port, f)| {
                let (r, _) = TcpFrame::parse(f, Checksums::Verify).unwrap();
                assert_eq!(
                    (r.ip.src(), r.ip.dst(), r.tcp.src_port, r.tcp.dst_port),
                    (IpAddr::V4(SOURCE), IpAddr::V4(BACKEND.0), 5555, BACKEND.1)
                );
                (*port, r.tcp.seq, r.tcp.ack, r.tcp.flags)
            })
            .collect();
        assert_eq!(answers, vec![(1, 200, 0, RST), (1, 0, 101, RST | ACK)]);
        assert_eq!(w.served.stats.resets_sent, 2);
        // The splice that is there is untouched.
        assert_eq!((w.served.connections(), w.served.splice_backends(), w.terminations()), (1, 1, 0));
        assert_eq!(w.backend_write(b"still here"), 10);
        w.run();
        assert_eq!(w.client.received, b"still here");
        w.served.check_invariants().unwrap();
    }

    // And a close before the bind.

    #[test]
    fn a_client_that_closes_before_the_bind_is_told_the_end_at_the_backends_fin() {
        // HTTP/1.0 style: the request, then the client's FIN, both held; mbox's connection
        // acknowledged the FIN, the opener sends it on with the request.
        let mut w = World::held(Refusal::Http503, REQUEST);
        let now = w.now;
        w.client.with(|conn, sink| conn.as_mut().unwrap().close(now, sink));
        w.run();
        assert_eq!(w.shard.ends.len(), 1, "the NF was told the client's stream ended");
        assert_eq!(w.bind(), BindStatus::Done);
        w.run();
        let i = w.conn_index();
        assert!(w.step_until(MS, 1_000 * MS, &mut |_| false, |w| w.served.splice_settled(i)), "{:?}", w.served.stats);
        assert_eq!(w.backend.received, REQUEST);
        assert_eq!(w.backend.conn.as_ref().unwrap().state(), State::CloseWait, "the FIN reached the backend");
        let answer = pattern(10_000, 12);
        assert_eq!(w.backend_write(&answer), answer.len());
        let now = w.now;
        w.backend.with(|conn, sink| conn.as_mut().unwrap().close(now, sink));
        assert!(w.step_until(MS, 1_000 * MS, &mut |_| false, |w| w.client.received.len() == answer.len() && w.terminations() > 0));
        assert!(w.client.received == answer);
        // Both FINs have crossed: told at once, then the linger.
        assert_eq!(w.terminations_for(REASON_FIN), 1, "{:?}", w.shard.events);
        assert_eq!(w.served.connections(), 1, "lingering");
        w.step(3_000 * MS, &mut |_| false);
        assert_eq!((w.served.connections(), w.served.splice_backends(), w.terminations()), (0, 0, 1));
        assert_eq!(w.served.stats.splice_idle_timeouts, 0);
        w.served.check_invariants().unwrap();
    }
}
