//! A shard: one thread owning an L2/3 µStack and the events it publishes.
//!
//! The shard takes packets from its RX ring, runs them through its stack, writes the events
//! the stack reports into its arena and routes each through the service graph, stage by
//! stage, over its lanes to the NFs. It retires what the NFs finish, routes what they publish,
//! and forwards (or drops) a packet once every event holding it is done. Nothing in it is
//! shared with other shards; all of its bookkeeping is plain (non-atomic) state.

use super::lane::LaneTx;
use super::live::{Publisher, Snapshot};
use super::quic::{FirstFlight, QuicFlows};
use super::router::{Router, NO_HELD};
use super::serve::{ConnEventKind, ConnInfo, ServeSink, ServeStats, Served, Taken};
use crate::config::RingFullPolicy;
use crate::controller::ServiceGraph;
use crate::events::arena::EventArena;
use crate::events::registry::TypeRegistry;
use crate::io::origin::OriginStats;
use crate::io::output::Tx;
use crate::io::pool::PacketPool;
use crate::io::{Read, RxPacket, ShardInput};
use crate::sys::park::{IdlePolicy, Idler, Waker};
use mbox_abi::{
    builtin, EventHeader, EventType, FlowEvent, FlowQuicEvent, FlowRef, FlowTcpEvent, PktEvent, PktTcpEvent, QuicHeader, StreamDataEvent,
    StreamEndEvent, StreamGapEvent, TcpSnapshot, DIR_NONE, PKT_REASSEMBLED, PKT_TUNNELLED, QUIC_HELLO_READ, REASON_NONE,
};
use mbox_stack::flow_table::{FlowEntry, FlowTable};
use mbox_stack::l23::{Disposition, L23Stack, StackConfig, StackPacket, StackSink, StackStats, StreamContext};
use mbox_stack::tcp::stream::Source;
use mbox_stack::wire::{ip_proto, tcp_flags, LinkType, Parsed};
use std::collections::VecDeque;
use std::sync::Arc;

/// Everything a shard thread needs; built by the pipeline.
pub struct ShardSetup {
    pub id: u16,
    pub rx: ShardInput,
    pub pool: Arc<PacketPool>,
    pub tx: Tx,
    pub stack: StackConfig,
    pub graph: Arc<ServiceGraph>,
    pub registry: Arc<TypeRegistry>,
    pub arena: Arc<EventArena>,
    /// Arena slots for stack events; the rest are kept for NF publications, so that draining
    /// publications never waits for packet events (which could wait for the publisher).
    pub stack_slots: usize,
    pub lanes: Vec<LaneTx>,
    pub policy: RingFullPolicy,
    pub waker: Arc<Waker>,
    pub idle: IdlePolicy,
    /// Packets kept at once for out-of-order TCP data (a bound on held packet buffers).
    pub max_kept: usize,
    /// Copy out-of-order segments' payloads instead of holding their packets (live inputs).
    pub copy_kept: bool,
    /// Bytes of out-of-order payload copied at once (with `copy_kept`).
    pub max_copied_bytes: usize,
    /// Where the shard publishes its report while it runs (for the control socket).
    pub live: Arc<Snapshot<ShardReport>>,
    /// What the shard serves itself (`[[service]]`), if anything.
    pub served: Option<Served>,
}

/// Event slots per shard reserved for NF publications (when some NF publishes), besides
/// `[runtime] event_slots` for the stack's events.
pub const PUBLICATION_SLOTS: usize = 4096;

/// What one copy grows to at most when segments continuing it are appended: a kept range is
/// reported as one event, and its buffer is reused by later copies.
const MAX_COPY_RANGE: usize = 64 * 1024;

/// What a shard counted, returned when it ends.
#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    pub id: u16,
    pub stack: StackStats,
    /// Events emitted, by dense type index.
    pub events_by_type: Vec<u64>,
    /// Per NF: events delivered, and events not delivered because its ring was full.
    pub delivered: Vec<u64>,
    pub ring_full_drops: Vec<u64>,
    /// Per NF, by dense type index: events delivered.
    pub delivered_by_type: Vec<Vec<u64>>,
    /// Per NF: events in its ring when the report was made (in flight to, or being handled by,
    /// the NF).
    pub ring_used: Vec<u64>,
    /// Per NF: events its ring holds at most (`ring_used` against it says how close to full).
    pub ring_capacity: Vec<u64>,
    pub forwarded: u64,
    /// Packets dropped by an NF's verdict.
    pub dropped_by_nf: u64,
    /// Events given up because their NF's thread was gone.
    pub lost_to_dead_nf: u64,
    /// Unsubscriptions that arrived after their flow ended (or past the per-flow limit).
    pub stale_unsubscriptions: u64,
    pub fragments_forwarded: u64,
    pub publications: u64,
    /// Stack events lost for want of a free event slot. The stack is promised room for a
    /// packet's worst case before it starts (`mbox_stack::l23::events_per_packet`), so this
    /// stays 0 unless that bound is wrong; counted rather than silent if it ever is.
    pub events_without_slot: u64,
    /// QUIC first flights refused because too many waited at once (reported unreadable), and
    /// those read whose `FLOW/UDP/QUIC` found no copy budget left (not reported).
    pub quic_flights_refused: u64,
    pub quic_flights_unreported: u64,
    /// With a queue pair per shard, what the shard received and sent itself.
    pub input: Option<crate::io::device::InputReport>,
    pub output: Option<crate::io::device::OutputStats>,
    /// What the shard's services did, and the packets it built (when it serves).
    pub serve: Option<ServeStats>,
    pub originated: OriginStats,
    /// Connections the shard's services hold now.
    pub connections: u64,
}

impl ShardReport {
    /// A report with nothing counted yet, for `types` registered types and `nfs` NFs.
    pub fn new(id: u16, types: usize, nfs: usize) -> ShardReport {
        ShardReport {
            id,
            events_by_type: vec![0; types],
            delivered: vec![0; nfs],
            ring_full_drops: vec![0; nfs],
            delivered_by_type: vec![vec![0; types]; nfs],
            ring_used: vec![0; nfs],
            ring_capacity: vec![0; nfs],
            ..Default::default()
        }
    }
}

/// Dense indices of the built-in types the stack emits.
struct StackTypes {
    pkt: usize,
    pkt_tcp: usize,
    pkt_tcp_syn: usize,
    pkt_tcp_fin: usize,
    pkt_tcp_rst: usize,
    pkt_udp: usize,
    pkt_udp_quic: usize,
    flow_udp_quic: usize,
    /// By flow kind: TCP, UDP, other IP.
    flow_new: [usize; 3],
    flow_end: [usize; 3],
    data_rdy: usize,
    gap: usize,
    stream_end: usize,
    send_room: usize,
    bound: usize,
    backend_data: usize,
}

impl StackTypes {
    fn new(reg: &TypeRegistry) -> StackTypes {
        let idx = |ty| reg.index_of_type(ty).unwrap_or(0);
        StackTypes {
            pkt: idx(builtin::PKT),
            pkt_tcp: idx(builtin::PKT_TCP),
            pkt_tcp_syn: idx(builtin::PKT_TCP_SYN),
            pkt_tcp_fin: idx(builtin::PKT_TCP_FIN),
            pkt_tcp_rst: idx(builtin::PKT_TCP_RST),
            pkt_udp: idx(builtin::PKT_UDP),
            pkt_udp_quic: idx(builtin::PKT_UDP_QUIC),
            flow_udp_quic: idx(builtin::FLOW_UDP_QUIC),
            flow_new: [idx(builtin::FLOW_TCP_NEW), idx(builtin::FLOW_UDP_NEW), idx(builtin::FLOW_IP_NEW)],
            flow_end: [idx(builtin::FLOW_TCP_TERMINATE), idx(builtin::FLOW_UDP_TERMINATE), idx(builtin::FLOW_IP_TERMINATE)],
            data_rdy: idx(builtin::FLOW_TCP_DATA_RDY),
            gap: idx(builtin::FLOW_TCP_GAP),
            stream_end: idx(builtin::FLOW_TCP_STREAM_END),
            send_room: idx(builtin::FLOW_TCP_SEND_ROOM),
            bound: idx(builtin::FLOW_TCP_BOUND),
            backend_data: idx(builtin::FLOW_TCP_BACKEND_DATA),
        }
    }
}

/// A packet kept alive (not forwarded yet) because events point into it — or, with
/// `copy_kept`, a copy of an out-of-order segment's payload (the packet itself went on).
struct Held {
    rx: RxPacket,
    datagram: Option<u32>,
    /// The packet's TCP payload (captured bytes), for stream data reported from it later.
    payload: (*const u8, u32),
    refs: u32,
    dropped: bool,
    /// The copy's bytes, when this entry is a copy (kept with its capacity for reuse).
    copy: Vec<u8>,
    is_copy: bool,
}

/// The event machinery of a shard: what the stack reports into.
struct Plane {
    shard: u16,
    graph: Arc<ServiceGraph>,
    registry: Arc<TypeRegistry>,
    types: StackTypes,
    arena: Arc<EventArena>,
    /// Where each event is on its route (stages, emission order, per-flow mutes).
    router: Router,
    free_stack: Vec<u32>,
    free_published: Vec<u32>,
    stack_slots: usize,
    held: Vec<Held>,
    free_held: Vec<u32>,
    lanes: Vec<LaneTx>,
    policy: RingFullPolicy,
    tx: Tx,
    /// The packet being processed, its reassembled datagram and TCP payload as the stack
    /// reported them, and its held entry once an event holds it.
    current: Option<RxPacket>,
    current_datagram: Option<u32>,
    current_payload: (*const u8, u32),
    /// What each UDP flow's QUIC long headers and first flight told.
    quic: QuicFlows,
    /// Where a first flight's server name and ALPN are put together (reused).
    flight_bytes: Vec<u8>,
    current_held: u32,
    /// Packets kept for out-of-order TCP data, and the bound.
    kept: usize,
    max_kept: usize,
    copy_kept: bool,
    /// Capacity of the copies' buffers (in use or kept for reuse), and the bound on it.
    copy_capacity: usize,
    max_copied_bytes: usize,
    /// Reassembled datagrams nobody points at any more, to hand back to the stack.
    release_datagrams: Vec<u32>,
    /// NFs (by bit) subscribed to stream data or gaps: a flow whose NFs all unsubscribed from
    /// both needs no reassembly.
    stream_nfs: (u64, u64),
    /// Per stack event slot: the served connection whose client bytes it carries (index, id,
    /// length), to report read once the NFs are done; `NO_READ` for other events.
    conn_reads: Vec<(u32, u64, u32)>,
    /// Reads the NFs finished, for the services to open their windows by.
    reads_done: Vec<(u32, u64, u32)>,
    report: ShardReport,
}

/// `Plane::conn_reads` of an event that carries no served connection's bytes.
const NO_READ: (u32, u64, u32) = (u32::MAX, 0, 0);

/// A running shard.
pub struct Shard {
    stack: L23Stack,
    plane: Plane,
    /// The packet pool, to read packets' bytes.
    pool: Arc<PacketPool>,
    rx: ShardInput,
    waker: Arc<Waker>,
    idle: IdlePolicy,
    live: Publisher<ShardReport>,
    served: Option<Served>,
    /// Reads finished by NFs, on their way from the plane to the services.
    reads: Vec<(u32, u64, u32)>,
}

/// Packets taken from the RX ring per round.
const RX_BATCH: usize = 32;

impl Shard {
    /// Bytes a shard's event bookkeeping allocates for `slots` event slots, `stack_slots` of
    /// them for stack events (each may hold a packet), besides its arena and lanes.
    pub fn footprint(slots: usize, stack_slots: usize) -> usize {
        let index = std::mem::size_of::<u32>();
        slots * (Router::SLOT_BYTES + index) + stack_slots * (std::mem::size_of::<Held>() + index)
    }

    pub fn new(s: ShardSetup) -> Shard {
        let slots = s.arena.len();
        let stack_slots = s.stack_slots.min(slots);
        let held_cap = stack_slots;
        let report = ShardReport::new(s.id, s.registry.len(), s.lanes.len());
        let placeholder = RxPacket { buf: 0, len: 0, wire_len: 0, port: 0, link: mbox_stack::wire::LinkType::Ethernet, ts_ns: 0 };
        let plane = Plane {
            shard: s.id,
            types: StackTypes::new(&s.registry),
            router: Router::new(s.graph.clone(), slots, slots),
            graph: s.graph,
            registry: s.registry,
            free_stack: (0..stack_slots as u32).rev().collect(),
            free_published: (stack_slots as u32..slots as u32).rev().collect(),
            stack_slots,
            arena: s.arena,
            held: (0..held_cap)
                .map(|_| Held {
                    rx: placeholder,
                    datagram: None,
                    payload: (std::ptr::null(), 0),
                    refs: 0,
                    dropped: false,
                    copy: Vec::new(),
                    is_copy: false,
                })
                .collect(),
            free_held: (0..held_cap as u32).rev().collect(),
            lanes: s.lanes,
            policy: s.policy,
            tx: s.tx,
            current: None,
            current_datagram: None,
            current_payload: (std::ptr::null(), 0),
            quic: QuicFlows::default(),
            flight_bytes: Vec::new(),
            current_held: NO_HELD,
            kept: 0,
            max_kept: s.max_kept,
            copy_kept: s.copy_kept,
            copy_capacity: 0,
            max_copied_bytes: s.max_copied_bytes,
            release_datagrams: Vec::new(),
            stream_nfs: (0, 0),
            conn_reads: vec![NO_READ; stack_slots],
            reads_done: Vec::new(),
            report,
        };
        let mut plane = plane;
        // NFs that serve a service read only its connections: they do not keep other flows'
        // streams reassembled.
        let serving = plane.graph.serving_nfs();
        plane.router.mute_for_other_flows(serving);
        plane.stream_nfs = (plane.router.nfs_of(plane.types.data_rdy) & !serving, plane.router.nfs_of(plane.types.gap) & !serving);
        Shard {
            stack: L23Stack::new(s.stack, s.id),
            pool: s.pool,
            plane,
            rx: s.rx,
            waker: s.waker,
            idle: s.idle,
            live: Publisher::new(s.live),
            served: s.served,
            reads: Vec::new(),
        }
    }

    /// Runs until the input ends and every event has been retired.
    pub fn run(mut self) -> ShardReport {
        self.waker.bind_current();
        let mut idler = Idler::new(self.idle);
        let mut inbox: VecDeque<RxPacket> = VecDeque::with_capacity(RX_BATCH);
        let mut input_over = false;
        let mut drained = false;
        let mut nudged = false;
        loop {
            let mut progress = self.plane.retire();
            progress |= self.plane.route_publications();
            if let Some(served) = self.served.as_mut() {
                std::mem::swap(&mut self.reads, &mut self.plane.reads_done);
                progress |= served.poll(0, &mut self.reads, &mut self.plane);
            }
            for slot in self.plane.release_datagrams.drain(..) {
                self.stack.release_datagram(slot);
            }
            if !self.plane.backlogged() {
                if inbox.is_empty() && !input_over {
                    input_over = self.rx.read(&mut inbox, RX_BATCH) == Read::Over;
                }
                while let Some(&pkt) = inbox.front() {
                    if !self.handle(pkt) {
                        break;
                    }
                    inbox.pop_front();
                    progress = true;
                    if self.plane.backlogged() {
                        break;
                    }
                }
                if input_over && inbox.is_empty() && !drained {
                    // The services' connections end first (they hold no stack state).
                    drained = self.served.as_mut().is_none_or(|s| s.drain(&mut self.plane)) && self.stack.drain(&mut self.plane);
                    progress = true;
                }
            }
            progress |= self.plane.flush_lanes();
            // Once per round, not per packet: give buffers back, wake the output.
            self.plane.tx.notify();
            if drained && self.plane.all_done() {
                break;
            }
            if self.live.due() {
                self.update_report();
                self.live.publish(&self.plane.report);
            }
            if progress {
                idler.reset();
                nudged = false;
            } else {
                if !nudged {
                    // About to idle: NFs must not wait for a fuller batch that will not come,
                    // and readers of the live report should not wait for the next period.
                    for lane in &self.plane.lanes {
                        lane.nudge(1);
                    }
                    nudged = true;
                    self.update_report();
                    self.live.publish(&self.plane.report);
                }
                let (plane, rx, served) = (&self.plane, &self.rx, &self.served);
                // New input only counts when the shard may take it; the end of the input only
                // once (after that, `input_over` is set and there is nothing more to read).
                let may_read = !input_over && !plane.backlogged();
                // NFs' writes to served connections wake the shard like their publications.
                let requests = || served.as_ref().is_some_and(Served::has_work);
                if (may_read && rx.polled()) || served.as_ref().is_some_and(Served::has_timers) {
                    // A NIC queue wakes nobody, nor does a timer: sleep only briefly.
                    idler.idle_polling(&self.waker, || plane.has_work() || requests());
                } else {
                    idler.idle(&self.waker, || plane.has_work() || requests() || (may_read && rx.waiting()));
                }
            }
        }
        self.update_report();
        let mut report = std::mem::take(&mut self.plane.report);
        for lane in self.plane.lanes.drain(..) {
            lane.close();
        }
        report.output = self.plane.tx.close();
        report.input = self.rx.into_report();
        report
    }

    /// Brings the report up to date with what the stack, the lanes and the input count.
    fn update_report(&mut self) {
        let report = &mut self.plane.report;
        report.stack = self.stack.stats();
        report.quic_flights_refused = self.plane.quic.flights_refused();
        for (i, lane) in self.plane.lanes.iter().enumerate() {
            report.delivered[i] = lane.delivered;
            report.ring_full_drops[i] = lane.ring_full_drops;
            report.ring_used[i] = lane.occupancy() as u64;
            report.ring_capacity[i] = lane.capacity() as u64;
        }
        report.input = self.rx.report();
        if let Some(served) = &self.served {
            report.serve = Some(served.stats);
            report.connections = served.connections() as u64;
        }
        report.originated = self.plane.tx.origin_stats();
    }

    /// Runs one packet through the stack; false when it must wait for event room.
    fn handle(&mut self, pkt: RxPacket) -> bool {
        if let Some(served) = self.served.as_mut() {
            // SAFETY: the input handed this buffer to the shard with the packet; nothing else
            // points into it while the services look.
            let data = unsafe { self.pool.bytes_mut(pkt.buf, pkt.len) };
            match served.take(data, pkt.port, pkt.ts_ns, &mut self.plane) {
                Taken::No => {}
                Taken::Forward => {
                    // A spliced frame, rewritten in place: on out of the other port.
                    self.plane.forward(pkt);
                    return true;
                }
                Taken::Consumed => {
                    // Answered (or dropped, counted) by the services: never forwarded.
                    self.plane.tx.drop_packet(pkt.buf);
                    return true;
                }
                Taken::Blocked => return false,
            }
        }
        // SAFETY: the input handed this buffer to the shard with the packet.
        let data = unsafe { self.pool.bytes(pkt.buf, pkt.len) };
        self.plane.current = Some(pkt);
        self.plane.current_datagram = None;
        self.plane.current_held = NO_HELD;
        let outcome = self.stack.process(data, pkt.link, pkt.wire_len, pkt.ts_ns, &mut self.plane);
        self.plane.current = None;
        // Only a delivered packet is held (the stack checks for room before it reports anything).
        debug_assert!(matches!(outcome, Disposition::Delivered) || self.plane.current_held == NO_HELD);
        match outcome {
            Disposition::Blocked => return false,
            Disposition::Delivered => {
                if self.plane.current_held == NO_HELD {
                    // Nothing points into the packet (or its reassembled datagram): let it go.
                    if let Some(slot) = self.plane.current_datagram {
                        self.plane.release_datagrams.push(slot);
                    }
                    self.plane.forward(pkt);
                } else {
                    // The stack is done with it: its own reference goes, and the packet with it
                    // once no event holds it any more.
                    let held = std::mem::replace(&mut self.plane.current_held, NO_HELD);
                    self.plane.release_held(held);
                }
            }
            Disposition::Fragment => {
                self.plane.report.fragments_forwarded += 1;
                self.plane.forward(pkt);
            }
            Disposition::Malformed(_) => self.plane.tx.drop_packet(pkt.buf),
        }
        true
    }
}

impl Plane {
    /// Writes an event into a free slot and sends it to its route's first stage.
    fn emit<E: mbox_abi::Event>(&mut self, route: usize, event: &E, held: u32) {
        self.emit_read(route, event, held, NO_READ)
    }

    /// [`Plane::emit`] for an event that carries a served connection's bytes (`read`).
    fn emit_read<E: mbox_abi::Event>(&mut self, route: usize, event: &E, held: u32, read: (u32, u64, u32)) {
        let Some(h) = self.free_stack.pop() else {
            // `has_room` is checked before the stack reports anything, so this is a bug guard.
            self.report.events_without_slot += 1;
            debug_assert!(false, "event slots exhausted despite has_room");
            return;
        };
        // SAFETY: `h` came from the free list, so no NF holds it.
        unsafe { self.arena.write(h, event) };
        // Before it is admitted: an event no NF gets finishes at once.
        self.conn_reads[h as usize] = read;
        if held != NO_HELD {
            self.held[held as usize].refs += 1;
        }
        self.report.events_by_type[route] += 1;
        self.router.admit(h, route, event.header(), held, false);
        self.free_finished();
    }

    /// Frees the events the router finished: their slots go back to their free lists, and
    /// the packets they held go on (or are dropped) once no event holds them.
    fn free_finished(&mut self) {
        while let Some(f) = self.router.next_finished() {
            if f.held != NO_HELD {
                if f.dropped {
                    self.held[f.held as usize].dropped = true;
                }
                self.release_held(f.held);
            }
            if f.published {
                self.free_published.push(f.handle);
            } else {
                let read = std::mem::replace(&mut self.conn_reads[f.handle as usize], NO_READ);
                if read.0 != u32::MAX {
                    self.reads_done.push(read);
                }
                self.free_stack.push(f.handle);
            }
        }
    }

    fn release_held(&mut self, idx: u32) {
        let held = &mut self.held[idx as usize];
        held.refs -= 1;
        if held.refs > 0 {
            return;
        }
        if held.is_copy {
            // A copy: nothing to forward, the entry (and its buffer) goes back for reuse.
            held.is_copy = false;
            if self.copy_capacity > self.max_copied_bytes / 2 {
                // Past half the bound, buffers are not kept for reuse: what stays allocated
                // idle never keeps later copies from the other half.
                self.copy_capacity -= held.copy.capacity();
                held.copy = Vec::new();
            }
            self.free_held.push(idx);
            return;
        }
        let (rx, dropped, datagram) = (held.rx, held.dropped, held.datagram.take());
        if let Some(slot) = datagram {
            self.release_datagrams.push(slot);
        }
        if dropped {
            self.report.dropped_by_nf += 1;
            self.tx.drop_packet(rx.buf);
        } else {
            self.forward(rx);
        }
        self.free_held.push(idx);
    }

    fn forward(&mut self, rx: RxPacket) {
        self.report.forwarded += 1;
        self.tx.send(rx);
    }

    /// Appends the current packet's payload to copy `idx`; see [`Plane::append`].
    fn append_current(&mut self, idx: u32) -> bool {
        let (base, len) = self.current_payload;
        if base.is_null() {
            return true;
        }
        // SAFETY: the current packet's payload is valid while the stack processes it.
        self.append(idx, unsafe { std::slice::from_raw_parts(base, len as usize) })
    }

    /// Appends `bytes` to copy `idx`; false (nothing appended) when its buffer would have to
    /// grow past `max_copied_bytes` of copies in all.
    fn append(&mut self, idx: u32, bytes: &[u8]) -> bool {
        let h = &mut self.held[idx as usize];
        let (need, capacity) = (h.copy.len() + bytes.len(), h.copy.capacity());
        if need > capacity {
            // Powers of two up to MAX_COPY_RANGE: a buffer never outgrows a range, and a
            // reused one usually has room already.
            let target = need.next_power_of_two().clamp(2048, MAX_COPY_RANGE.max(need));
            if self.copy_capacity + (target - capacity) > self.max_copied_bytes {
                return false;
            }
            h.copy.reserve_exact(target - h.copy.len());
            self.copy_capacity += h.copy.capacity() - capacity;
        }
        h.copy.extend_from_slice(bytes);
        h.payload = (h.copy.as_ptr(), h.copy.len() as u32);
        true
    }

    /// The held entry of the packet being processed, creating it on first use. It starts with
    /// one reference, the stack's own, released when the stack is done with the packet: an
    /// event of the packet that no NF gets finishes at once, and must not let the packet go
    /// while the stack may still point later events into it.
    fn hold_current(&mut self) -> u32 {
        if self.current_held == NO_HELD {
            let (Some(rx), Some(idx)) = (self.current, self.free_held.pop()) else { return NO_HELD };
            let h = &mut self.held[idx as usize];
            (h.rx, h.datagram, h.payload, h.refs, h.dropped, h.is_copy) =
                (rx, self.current_datagram, self.current_payload, 1, false, false);
            self.current_held = idx;
        }
        self.current_held
    }

    /// Retires what the NFs finished. True if anything was retired.
    fn retire(&mut self) -> bool {
        let mut any = false;
        for nf in 0..self.lanes.len() {
            if self.lanes[nf].is_dead() {
                // Nothing will ever report these done: give them up (see `flush_lanes`).
                self.lanes[nf].abandon_in_flight();
            }
            if !self.lanes[nf].poll_done() {
                continue;
            }
            any = true;
            // One at a time: finishing a stage may send the event to this lane again.
            while let Some(h) = self.lanes[nf].next_retired() {
                self.router.done(h, self.arena.is_dropped(h));
            }
        }
        self.free_finished();
        any
    }

    /// Routes events the NFs published. True if any was routed.
    fn route_publications(&mut self) -> bool {
        let mut any = false;
        for nf in 0..self.lanes.len() {
            while let Some(change) = self.lanes[nf].next_flow_subscription() {
                self.router.change_subscription(nf, change);
                any = true;
            }
            while !self.free_published.is_empty() {
                let Some(mut bytes) = self.lanes[nf].next_publication() else { break };
                let Some(route) = self.registry.index_of_type(bytes.header().ty) else { continue };
                bytes.header_mut().publisher = nf as u16 + 1;
                let h = self.free_published.pop().unwrap_or_default();
                // SAFETY: `h` came from the free list, so no NF holds it.
                unsafe { self.arena.write_bytes(h, &bytes) };
                self.report.events_by_type[route] += 1;
                self.report.publications += 1;
                self.router.admit(h, route, bytes.header(), NO_HELD, true);
                any = true;
            }
        }
        self.free_finished();
        any
    }

    /// Moves the events each NF may now see, in emission order, into its ring; under the drop
    /// policy, gives up on those that do not fit. True if anything moved.
    fn flush_lanes(&mut self) -> bool {
        let mut any = false;
        for nf in 0..self.lanes.len() {
            let dead = self.lanes[nf].is_dead();
            while let Some(h) = self.router.next_for(nf) {
                if dead {
                    // Its NF's thread is gone (a host bug, reported when the run ends): the
                    // event passes, so that the rest of the pipeline can finish.
                    self.report.lost_to_dead_nf += 1;
                    self.router.done(h, self.arena.is_dropped(h));
                } else {
                    self.lanes[nf].send(h);
                }
                any = true;
            }
            // Counted by type as they enter the ring, as the lane counts them delivered, so
            // that the two agree at every moment (not only once the queue is empty).
            let moved = self.lanes[nf].flush();
            for h in self.lanes[nf].newest_in_flight(moved) {
                self.report.delivered_by_type[nf][self.router.route_of(h)] += 1;
            }
            any |= moved > 0;
            let read_only = self.router.is_read_only(nf as u16);
            while let Some(h) = self.lanes[nf].next_dropped(self.policy == RingFullPolicy::Drop || dead) {
                if dead {
                    self.report.lost_to_dead_nf += 1;
                } else {
                    self.lanes[nf].ring_full_drops += 1;
                }
                if !dead && !read_only {
                    // An NF that may drop did not see it: fail closed.
                    self.arena.set_drop(h);
                }
                self.router.done(h, self.arena.is_dropped(h));
                any = true;
            }
        }
        self.free_finished();
        any
    }

    /// True while events wait for room in some NF's ring (back-pressure: take no packets).
    fn backlogged(&self) -> bool {
        self.lanes.iter().any(LaneTx::has_pending)
    }

    /// True when something could progress without new packets.
    fn has_work(&self) -> bool {
        self.lanes.iter().any(|l| l.has_completions() || l.has_publication() || (l.has_pending() && l.has_room()) || l.is_dead())
    }

    /// True when no event is in flight and no publication waits.
    fn all_done(&self) -> bool {
        self.free_stack.len() == self.stack_slots
            && self.free_published.len() == self.arena.len() - self.stack_slots
            && self.lanes.iter().enumerate().all(|(nf, l)| !self.router.has_queued(nf) && !l.is_busy() && !l.has_publication())
    }

    fn flow_event(&self, ty: EventType, flow: &FlowEntry, slot: u32, reason: u8, ts_ns: u64) -> FlowEvent {
        FlowEvent {
            header: EventHeader::new::<FlowEvent>(ty, ts_ns, FlowRef { id: flow.id, slot, shard: self.shard, dir: DIR_NONE, _reserved: 0 }),
            tuple: flow.tuple,
            stats: flow.stats,
            reason,
            _reserved: [0; 7],
        }
    }

    /// A `FLOW/TCP/*` event's common part, sized for the event struct `E` it begins.
    fn flow_tcp_event<E: mbox_abi::Event>(&self, ty: EventType, ctx: &StreamContext<'_>, dir: u8) -> FlowTcpEvent {
        let ts_ns = self.current.map_or(0, |c| c.ts_ns);
        let mut flow = self.flow_event(ty, ctx.flow, ctx.slot, REASON_NONE, ts_ns);
        flow.header.size = std::mem::size_of::<E>() as u32;
        flow.header.flow.dir = dir;
        FlowTcpEvent { flow, snapshot: *ctx.snapshot }
    }

    /// Emits a flow's start or end: a `FlowTcpEvent` for TCP (the snapshot is zero when the
    /// monitor does not run), a `FlowEvent` otherwise.
    fn emit_flow(&mut self, route: usize, flow: &FlowEntry, slot: u32, reason: u8, ts_ns: u64, tcp: Option<&TcpSnapshot>) {
        if !self.graph.wants(route) {
            return;
        }
        let ty = self.registry.types()[route].ty;
        let mut ev = self.flow_event(ty, flow, slot, reason, ts_ns);
        if flow.tuple.ip_proto == ip_proto::TCP {
            ev.header.size = std::mem::size_of::<FlowTcpEvent>() as u32;
            let ev = FlowTcpEvent { flow: ev, snapshot: tcp.copied().unwrap_or_default() };
            self.emit(route, &ev, NO_HELD);
        } else {
            self.emit(route, &ev, NO_HELD);
        }
    }
}

fn flow_kind(proto: u8) -> usize {
    match proto {
        ip_proto::TCP => 0,
        ip_proto::UDP => 1,
        _ => 2,
    }
}

impl StackSink for Plane {
    fn has_room(&self, events: usize) -> bool {
        // Two held entries: the packet's own, and a copy for a QUIC first flight's names.
        self.free_stack.len() >= events && self.free_held.len() >= 2
    }

    fn flow_started(&mut self, flow: &FlowEntry, slot: u32, ts_ns: u64) {
        self.router.flow_started(slot, flow.id);
        let route = self.types.flow_new[flow_kind(flow.tuple.ip_proto)];
        self.emit_flow(route, flow, slot, REASON_NONE, ts_ns, None);
    }

    fn flow_ended(&mut self, flow: &FlowEntry, slot: u32, reason: u8, ts_ns: u64, tcp: Option<&TcpSnapshot>) {
        if flow.tuple.ip_proto == ip_proto::UDP {
            self.quic.ended(slot);
        }
        let route = self.types.flow_end[flow_kind(flow.tuple.ip_proto)];
        self.emit_flow(route, flow, slot, reason, ts_ns, tcp);
    }

    fn wants_streams(&self, slot: u32) -> bool {
        let (data, gap) = self.stream_nfs;
        self.router.still_wanted(slot, builtin::FLOW_TCP_DATA_RDY, data) || self.router.still_wanted(slot, builtin::FLOW_TCP_GAP, gap)
    }

    fn keep(&mut self) -> Option<u32> {
        if self.kept >= self.max_kept {
            return None;
        }
        if self.copy_kept {
            // A live input: the packet goes on now (holding it until the hole fills would hold
            // back the very segments whose acknowledgments make the sender resend the hole);
            // its payload is copied into a reused buffer instead.
            let idx = self.free_held.pop()?;
            let h = &mut self.held[idx as usize];
            h.copy.clear();
            h.payload = (h.copy.as_ptr(), 0);
            if !self.append_current(idx) {
                self.free_held.push(idx);
                return None;
            }
            let h = &mut self.held[idx as usize];
            (h.refs, h.dropped, h.datagram, h.is_copy) = (1, false, None, true);
            self.kept += 1;
            return Some(idx);
        }
        let held = self.hold_current();
        if held == NO_HELD {
            return None;
        }
        self.held[held as usize].refs += 1;
        self.kept += 1;
        Some(held)
    }

    fn unkeep(&mut self, token: u32) {
        self.kept -= 1;
        self.release_held(token);
    }

    fn extend_kept(&mut self, token: u32) -> bool {
        let h = &self.held[token as usize];
        if !h.is_copy || h.copy.len() + self.current_payload.1 as usize > MAX_COPY_RANGE {
            return false;
        }
        // Kept and not reported yet, so no event points into the buffer that may move.
        debug_assert_eq!(h.refs, 1);
        self.append_current(token)
    }

    fn merge_kept(&mut self, token: u32, next: u32) -> bool {
        let (h, n) = (&self.held[token as usize], &self.held[next as usize]);
        if !h.is_copy || !n.is_copy || h.copy.len() + n.copy.len() > MAX_COPY_RANGE {
            return false;
        }
        debug_assert_eq!((h.refs, n.refs), (1, 1));
        // Out of its entry for the while: the two buffers are distinct, but the borrow of
        // `self.held` is not.
        let bytes = std::mem::take(&mut self.held[next as usize].copy);
        let merged = self.append(token, &bytes);
        self.held[next as usize].copy = bytes;
        merged
    }

    fn stream_data(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u32, source: Source) {
        let route = self.types.data_rdy;
        if !self.graph.wants(route) {
            return;
        }
        let (held, (base, available), start) = match source {
            Source::Current { start } => (self.hold_current(), self.current_payload, start),
            Source::Kept { token, start } => (token, self.held[token as usize].payload, start),
        };
        if held == NO_HELD || start.saturating_add(len) > available {
            debug_assert!(false, "stream range outside its packet");
            return;
        }
        // SAFETY: `base` points at the held packet's captured payload of `available` bytes,
        // alive while the event holds the packet; the range was checked against it.
        let bytes = unsafe { std::slice::from_raw_parts(base.add(start as usize), len as usize) };
        let ty = self.registry.types()[route].ty;
        let ev = StreamDataEvent::new(self.flow_tcp_event::<StreamDataEvent>(ty, ctx, dir), offset, bytes);
        self.emit(route, &ev, held);
    }

    fn stream_gap(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, len: u64, reason: u8) {
        let route = self.types.gap;
        if !self.graph.wants(route) {
            return;
        }
        let ty = self.registry.types()[route].ty;
        let ev = StreamGapEvent { tcp: self.flow_tcp_event::<StreamGapEvent>(ty, ctx, dir), offset, len, reason, _reserved: [0; 7] };
        self.emit(route, &ev, NO_HELD);
    }

    fn stream_end(&mut self, ctx: &StreamContext<'_>, dir: u8, offset: u64, reason: u8) {
        let route = self.types.stream_end;
        if !self.graph.wants(route) {
            return;
        }
        let ty = self.registry.types()[route].ty;
        let ev = StreamEndEvent { tcp: self.flow_tcp_event::<StreamEndEvent>(ty, ctx, dir), offset, reason, _reserved: [0; 7] };
        self.emit(route, &ev, NO_HELD);
    }

    fn packet(&mut self, pkt: &StackPacket<'_>, flows: &FlowTable) {
        self.current_datagram = pkt.datagram;
        let payload = pkt.parsed.map(|p| p.captured_payload(pkt.data));
        self.current_payload = payload.map_or((std::ptr::null(), 0), |b| (b.as_ptr(), b.len() as u32));
        let tcp = pkt.parsed.filter(|p| p.ip_proto == ip_proto::TCP && p.has_l4_header());
        let udp = pkt.parsed.is_some_and(|p| p.ip_proto == ip_proto::UDP && p.has_l4_header());
        // A datagram of a flow that starts with a QUIC packet is PKT/UDP/QUIC (its header read
        // when someone gets those, as a PKT/UDP subscriber does, or FLOW/UDP/QUIC), and the
        // client's first flight becomes FLOW/UDP/QUIC (decrypted only when someone gets that).
        let first_flight_wanted = self.graph.wants(self.types.flow_udp_quic);
        let (quic, first_flight) = match (udp, pkt.flow) {
            (true, Some((slot, dir))) if first_flight_wanted || self.graph.wants(self.types.pkt_udp_quic) => {
                let (id, payload) = (flows.get(slot).id, payload.unwrap_or_default());
                let quic = self.quic.recognise(slot, id, dir, payload);
                let flight = first_flight_wanted.then(|| self.quic.first_flight(slot, id, dir, payload, quic.as_ref())).flatten();
                (quic, flight)
            }
            _ => (None, None),
        };
        self.emit_packet(pkt, flows, tcp, udp, quic);
        if let (Some(flight), Some((slot, _))) = (first_flight, pkt.flow) {
            self.emit_first_flight(flows.get(slot), slot, flight);
        }
    }
}

impl Plane {
    /// The packet's own event (`PKT` or a child), unless nobody gets it.
    fn emit_packet(&mut self, pkt: &StackPacket<'_>, flows: &FlowTable, tcp: Option<&Parsed>, udp: bool, quic: Option<QuicHeader>) {
        let t = &self.types;
        let route = match (pkt.parsed, tcp) {
            (_, Some(p)) if p.tcp.flags & tcp_flags::SYN != 0 => t.pkt_tcp_syn,
            (_, Some(p)) if p.tcp.flags & tcp_flags::FIN != 0 => t.pkt_tcp_fin,
            (_, Some(p)) if p.tcp.flags & tcp_flags::RST != 0 => t.pkt_tcp_rst,
            (_, Some(_)) => t.pkt_tcp,
            _ if quic.is_some() => t.pkt_udp_quic,
            _ if udp => t.pkt_udp,
            _ => t.pkt,
        };
        if !self.graph.wants(route) {
            return;
        }
        let flow = match pkt.flow {
            Some((slot, dir)) => FlowRef { id: flows.get(slot).id, slot, shard: self.shard, dir, _reserved: 0 },
            None => FlowRef { shard: self.shard, dir: DIR_NONE, ..FlowRef::default() },
        };
        let ty = self.registry.types()[route].ty;
        // Every NF of the route unsubscribed from the flow's packets (or from every flow's):
        // no event at all rather than one that finishes at once.
        if flow.is_some() && !self.router.wanted_now(flow.slot, flow.id, ty, self.router.nfs_of(route)) {
            return;
        }
        let held = self.hold_current();
        let ts_ns = self.current.map_or(0, |c| c.ts_ns);
        let mut ev = PktEvent::new(EventHeader::new::<PktEvent>(ty, ts_ns, flow), pkt.data);
        ev.wire_len = pkt.wire_len;
        ev.port = self.current.map_or(0, |c| c.port);
        ev.link_type = match (pkt.datagram, pkt.parsed) {
            (Some(_), Some(p)) if p.ip_version == 6 => LinkType::Ipv6.to_linktype() as u16,
            (Some(_), _) => LinkType::Ipv4.to_linktype() as u16,
            (None, _) => self.current.map_or(1, |c| c.link.to_linktype() as u16),
        };
        if let Some(p) = pkt.parsed {
            ev.l3_offset = p.l3_offset;
            ev.l4_offset = p.l4_offset;
            ev.payload_offset = p.payload_offset;
            ev.ip_len = p.ip_len;
            ev.payload_len = p.payload_len;
            ev.vlan = p.vlan;
            ev.src_port = p.src_port;
            ev.dst_port = p.dst_port;
            ev.ip_version = p.ip_version;
            ev.ip_proto = p.ip_proto;
            ev.tcp_flags = if tcp.is_some() { p.tcp.flags } else { 0 };
            ev.pkt_flags = if pkt.datagram.is_some() { PKT_REASSEMBLED } else { 0 } | if p.tunnelled { PKT_TUNNELLED } else { 0 };
        }
        match tcp {
            Some(p) => {
                ev.header.size = std::mem::size_of::<PktTcpEvent>() as u32;
                let tcp_ev = PktTcpEvent {
                    pkt: ev,
                    seq: p.tcp.seq,
                    ack: p.tcp.ack,
                    window: p.tcp.window,
                    _reserved: 0,
                    snapshot: pkt.tcp.copied().unwrap_or_default(),
                };
                self.emit(route, &tcp_ev, held);
            }
            None => match quic {
                Some(h) => self.emit(route, &super::quic::event(ev, h), held),
                None => self.emit(route, &ev, held),
            },
        }
    }

    /// `FLOW/UDP/QUIC` for a flow whose first flight was decided (read only when some NF gets
    /// the type): its server name and ALPN list in a copy the event holds.
    fn emit_first_flight(&mut self, flow: &FlowEntry, slot: u32, flight: FirstFlight) {
        let route = self.types.flow_udp_quic;
        let (hello, version, flags) = match flight {
            FirstFlight::Read(hello, version) => (Some(hello), version, QUIC_HELLO_READ),
            FirstFlight::Unreadable(version) => (None, version, 0),
        };
        // The copy: the server name, then the ALPN protocols (a length byte and the name each).
        let mut bytes = std::mem::take(&mut self.flight_bytes);
        bytes.clear();
        let sni = hello.as_ref().and_then(|h| h.sni.as_deref()).unwrap_or_default();
        let sni = &sni[..sni.len().min(usize::from(u16::MAX))];
        bytes.extend_from_slice(sni);
        for name in hello.iter().flat_map(|h| &h.alpn).filter(|n| n.len() <= 255) {
            bytes.push(name.len() as u8);
            bytes.extend_from_slice(name);
        }
        let sni_len = sni.len() as u16;
        let copied = self.copy_of(&bytes);
        self.flight_bytes = bytes;
        let Some(idx) = copied else {
            self.report.quic_flights_unreported += 1;
            return;
        };
        let ts_ns = self.current.map_or(0, |c| c.ts_ns);
        let ty = self.registry.types()[route].ty;
        let mut ev = self.flow_event(ty, flow, slot, REASON_NONE, ts_ns);
        ev.header.size = std::mem::size_of::<FlowQuicEvent>() as u32;
        let ev = FlowQuicEvent::new(ev, version, flags, self.copied(idx), sni_len);
        self.emit(route, &ev, idx);
    }

    /// A held entry whose copy is `bytes`, for an event to hold and point at; `None` when no
    /// entry or copy budget is left.
    fn copy_of(&mut self, bytes: &[u8]) -> Option<u32> {
        let idx = self.free_held.pop()?;
        let h = &mut self.held[idx as usize];
        h.copy.clear();
        (h.refs, h.dropped, h.datagram, h.is_copy) = (0, false, None, true);
        if !self.append(idx, bytes) {
            self.held[idx as usize].is_copy = false;
            self.free_held.push(idx);
            return None;
        }
        Some(idx)
    }

    /// The bytes of held entry `idx`'s copy.
    fn copied(&self, idx: u32) -> &[u8] {
        let (base, len) = self.held[idx as usize].payload;
        // SAFETY: the copy's buffer holds `len` bytes, and lives unchanged while an event
        // holds the entry (it returns to the free list only when none does).
        unsafe { std::slice::from_raw_parts(base, len as usize) }
    }

    /// Emits a stream data event of `route` about a served connection (direction `dir`) with
    /// a copy of `bytes`, which the event holds until the NFs are done; `read` as for
    /// [`Plane::emit_read`]. False when no copy buffer or room is left (nothing emitted).
    #[allow(clippy::too_many_arguments)]
    fn emit_copy(&mut self, route: usize, conn: &ConnInfo, dir: u8, offset: u64, bytes: &[u8], ts_ns: u64, read: (u32, u64, u32)) -> bool {
        let Some(idx) = self.copy_of(bytes) else { return false };
        let ty = self.registry.types()[route].ty;
        let ev = StreamDataEvent::new(self.conn_tcp_event::<StreamDataEvent>(ty, conn, dir, REASON_NONE, ts_ns), offset, self.copied(idx));
        self.emit_read(route, &ev, idx, read);
        true
    }

    /// A `FlowTcpEvent` about a served connection, sized for the event struct `E` it begins.
    fn conn_tcp_event<E: mbox_abi::Event>(&self, ty: EventType, conn: &ConnInfo, dir: u8, reason: u8, ts_ns: u64) -> FlowTcpEvent {
        let flow = FlowRef { id: conn.id, slot: conn.slot, shard: self.shard, dir, _reserved: conn.side };
        let mut header = EventHeader::new::<FlowEvent>(ty, ts_ns, flow);
        header.size = std::mem::size_of::<E>() as u32;
        let flow = FlowEvent { header, tuple: conn.tuple, stats: Default::default(), reason, _reserved: [0; 7] };
        FlowTcpEvent { flow, snapshot: TcpSnapshot::default() }
    }
}

impl ServeSink for Plane {
    fn has_room(&self, events: usize, bytes: usize) -> bool {
        self.free_stack.len() >= events && self.free_held.len() >= events && self.copy_capacity + bytes <= self.max_copied_bytes
    }

    fn conn_started(&mut self, slot: u32, id: u64, nfs: u64) {
        self.router.flow_started_only(slot, id, nfs);
    }

    fn conn_event(&mut self, kind: ConnEventKind, conn: &ConnInfo, reason: u8, ts_ns: u64) {
        // An l4 service's UDP flows start and end as UDP flows do (`FlowEvent`s).
        let kind_of_flow = flow_kind(conn.tuple.ip_proto);
        let route = match kind {
            ConnEventKind::New => self.types.flow_new[kind_of_flow],
            ConnEventKind::SendRoom => self.types.send_room,
            ConnEventKind::Bound => self.types.bound,
            ConnEventKind::Terminate => self.types.flow_end[kind_of_flow],
        };
        if !self.graph.wants(route) {
            return;
        }
        let ty = self.registry.types()[route].ty;
        // Room is a side's: a proxy's NFs write the side it names (`Host::send` on that
        // direction); the rest are the flow's.
        let dir = if kind == ConnEventKind::SendRoom { conn.dir } else { DIR_NONE };
        let ev = self.conn_tcp_event::<FlowTcpEvent>(ty, conn, dir, reason, ts_ns);
        if kind_of_flow == 0 {
            self.emit(route, &ev, NO_HELD);
        } else {
            let mut flow = ev.flow;
            flow.header.size = std::mem::size_of::<FlowEvent>() as u32;
            self.emit(route, &flow, NO_HELD);
        }
    }

    fn conn_data(&mut self, conn: &ConnInfo, offset: u64, bytes: &[u8], ts_ns: u64) -> bool {
        let route = self.types.data_rdy;
        let read = (conn.index, conn.id, bytes.len() as u32);
        if !self.graph.wants(route) {
            // Nobody reads: the bytes count as read at once.
            self.reads_done.push(read);
            return true;
        }
        if !self.emit_copy(route, conn, conn.dir, offset, bytes, ts_ns, read) {
            // Not delivered (counted by the caller): read, so that the window opens again.
            self.reads_done.push(read);
            return false;
        }
        true
    }

    fn wants_backend_data(&self, conn: &ConnInfo) -> bool {
        let route = self.types.backend_data;
        self.graph.wants(route) && self.router.wanted_now(conn.slot, conn.id, builtin::FLOW_TCP_BACKEND_DATA, self.router.nfs_of(route))
    }

    fn backend_data(&mut self, conn: &ConnInfo, offset: u64, bytes: &[u8], ts_ns: u64) -> bool {
        self.emit_copy(self.types.backend_data, conn, 1, offset, bytes, ts_ns, NO_READ)
    }

    fn backend_gap(&mut self, conn: &ConnInfo, offset: u64, len: u64, reason: u8, ts_ns: u64) {
        let route = self.types.gap;
        if !self.graph.wants(route) {
            return;
        }
        let ty = self.registry.types()[route].ty;
        let ev = StreamGapEvent {
            tcp: self.conn_tcp_event::<StreamGapEvent>(ty, conn, 1, REASON_NONE, ts_ns),
            offset,
            len,
            reason,
            _reserved: [0; 7],
        };
        self.emit(route, &ev, NO_HELD);
    }

    fn conn_end(&mut self, conn: &ConnInfo, offset: u64, reason: u8, ts_ns: u64) {
        let route = self.types.stream_end;
        if !self.graph.wants(route) {
            return;
        }
        let ty = self.registry.types()[route].ty;
        let ev = StreamEndEvent {
            tcp: self.conn_tcp_event::<StreamEndEvent>(ty, conn, conn.dir, REASON_NONE, ts_ns),
            offset,
            reason,
            _reserved: [0; 7],
        };
        self.emit(route, &ev, NO_HELD);
    }

    fn originate(&mut self, port: u16, ts_ns: u64, fill: &mut dyn FnMut(&mut Vec<u8>)) -> bool {
        self.tx.originate(port, ts_ns, fill)
    }
}
