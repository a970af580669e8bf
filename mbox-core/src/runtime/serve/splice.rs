//! The Splicer on a shard (`[[service]] stack = "splicer"`): a connection starts as an
//! Endpoint connection whose client bytes are kept (the hold: the client's window is
//! `hold_bytes` and never reopens); an NF's bind picks the backend; mbox finds the backend's
//! MAC (ARP), opens the backend's connection from its source address with the client's ISN and
//! options (`mbox_stack::splicer::Opener`), and once the backend answers, every frame of
//! either connection is translated into the other in place (`mbox_stack::splicer::translate`)
//! and sent on out of the other port of the pair: no payload is copied after the bind.
//!
//! What a splice is, phase by phase ([`Phase`]): holding (NFs read the first bytes), resolving
//! the backend's MAC, opening (SYN sent; the client's connection is still mbox's), spliced
//! (mbox's connection with the client is silent; its NFs get only the end), lingering (both
//! FINs seen: late retransmissions still translate until `time_wait` passes). A backend that
//! cannot be reached, refuses, or never acknowledges what was held ends the splice; a client
//! still there is answered as the service's `refuse` says (HTTP 503 and a FIN, or a RST).
//!
//! Backends are reached through the pair's other port (mbox sits between clients and
//! servers, as in the testbed). A backend's answers must reach this shard: the source port is
//! picked so that the backend side's flow hashes to it, as the input steers in software (a NIC
//! steering with its own hash would need a port picked for that hash).

use super::neighbors::Neighbors;
use super::tap::{Tap, TAP_EVENTS_PER_FRAME};
use super::{ConnEventKind, ConnInfo, ConnKey, Events, Out, ServeSink, Served, Taken, REASON_FIN, REASON_RST, REASON_TIMEOUT};
use crate::config::{Refusal, ServiceConfig, ServiceStack};
use mbox_abi::{BIND_CONNECTED, BIND_LOST, BIND_NOT_DONE, BIND_REFUSED, BIND_TIMED_OUT, BIND_UNRESOLVED};
use mbox_stack::endpoint::{ConnSink, Payload, SegmentIn, SegmentOut};
use mbox_stack::splicer::{set_macs, translate, BackendSource, Dir, OpenConfig, OpenFailure, OpenPhase, Opener, SpliceMap};
use mbox_stack::wire::arp::{ArpPacket, ArpRepr, Operation};
use mbox_stack::wire::ethernet::{ethertype, EthernetAddress, EthernetRepr, VlanTags, HEADER_LEN as ETHERNET_LEN};
use mbox_stack::wire::frame::TcpFrame;
use mbox_stack::wire::ip_proto;
use mbox_stack::wire::tcp::TcpOptions;
use mbox_stack::wire::tcp_flags::{ACK, FIN, RST, SYN};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// How often an ARP request for a backend goes again while no reply came.
pub(super) const ARP_RETRY_NS: u64 = 1_000_000_000;
/// What a client refused with `refuse = "http-503"` gets.
pub(super) const HTTP_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A Splicer service's settings (from its `[[service]]`).
#[derive(Debug, Clone, Copy)]
pub struct SplicerSpec {
    /// The address backends see connections come from.
    pub source: IpAddr,
    pub open: OpenConfig,
    pub hold_timeout_ns: u64,
    pub idle_timeout_ns: u64,
    pub linger_ns: u64,
    pub refuse: Refusal,
}

impl SplicerSpec {
    /// The settings of `cfg`, `None` unless it is a splicer (validated: it has a source).
    pub fn new(cfg: &ServiceConfig) -> Option<SplicerSpec> {
        if cfg.stack != ServiceStack::Splicer {
            return None;
        }
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Some(SplicerSpec {
            source: cfg.source?,
            open: OpenConfig { connect_timeout_ns: ns(cfg.connect_timeout), ..OpenConfig::default() },
            hold_timeout_ns: ns(cfg.hold_timeout),
            idle_timeout_ns: ns(cfg.idle_timeout),
            linger_ns: ns(cfg.time_wait),
            refuse: cfg.refuse,
        })
    }
}

/// Where a splice is (see the module documentation). Lingering's `reset`: a RST ended the
/// splice (counted aborted at the end), not both FINs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Holding { until: u64 },
    Resolving { next_arp: u64, give_up: u64 },
    Opening,
    Spliced,
    Lingering { until: u64, reset: bool },
}

/// [`Splice::fins`]' bits: the client's FIN crossed to the backend, the backend's to the client.
const CLIENT_FIN: u8 = 1;
const BACKEND_FIN: u8 = 2;

/// The backend side of a bound splice.
#[derive(Debug, Clone, Copy)]
struct Backend {
    addr: SocketAddr,
    source: SocketAddr,
    /// Its frames' key as the table keys connections: remote = the backend.
    key: ConnKey,
    /// The backend's MAC (once resolved), and mbox's on the backend's port.
    mac: EthernetAddress,
    mac_ours: EthernetAddress,
    /// The port it is reached by (the client's port's pair).
    port: u16,
}

/// One Splicer connection's state beside its Endpoint connection.
#[derive(Debug)]
pub(super) struct Splice {
    spec: SplicerSpec,
    phase: Phase,
    /// The client's bytes taken before the splice (handed to the opener once the backend
    /// answers).
    held: Vec<u8>,
    backend: Option<Backend>,
    opener: Option<Opener>,
    map: Option<SpliceMap>,
    /// FINs that crossed: [`CLIENT_FIN`] (sent on, or held and acknowledged by the backend)
    /// and [`BACKEND_FIN`].
    fins: u8,
    idle_until: u64,
    /// The last ACK each side sent, as it sent it (index: `Dir::C2B`, `Dir::B2C`): where the
    /// other side's RST must fall to end the splice.
    acks: [Option<u32>; 2],
    /// Client bytes its NFs finished reading (their `DATA_RDY` events retired): not reported
    /// to the connection, whose window stays closed past the hold, unless an NF answers the
    /// client itself and the connection becomes the Endpoint's.
    read: u64,
    /// The backend's bytes read for NFs that want them (`FLOW/TCP/BACKEND_DATA`), from the
    /// splice's start while they do (see `tap`).
    tap: Option<Box<Tap>>,
}

impl Splice {
    /// A new connection of a splicer service: holding until `hold_timeout`.
    pub(super) fn holding(spec: &SplicerSpec, now: u64) -> Box<Splice> {
        Box::new(Splice {
            spec: *spec,
            phase: Phase::Holding { until: now.saturating_add(spec.hold_timeout_ns) },
            held: Vec::new(),
            backend: None,
            opener: None,
            map: None,
            fins: 0,
            acks: [None; 2],
            idle_until: u64::MAX,
            read: 0,
            tap: None,
        })
    }

    /// Whether the splice carries the connection (mbox's own is silent).
    /// Both FINs (or a RST) have crossed: only late retransmissions are still translated.
    pub(super) fn lingers(&self) -> bool {
        matches!(self.phase, Phase::Lingering { .. })
    }

    pub(super) fn carries(&self) -> bool {
        matches!(self.phase, Phase::Spliced | Phase::Lingering { .. })
    }

    /// Its NFs finished reading `len` more client bytes.
    pub(super) fn read_while_held(&mut self, len: u32) {
        self.read += u64::from(len);
    }

    /// Where the client's bytes go before the splice.
    pub(super) fn held_mut(&mut self) -> &mut Vec<u8> {
        &mut self.held
    }

    /// When its timer is due.
    pub(super) fn deadline(&self) -> Option<u64> {
        match self.phase {
            Phase::Holding { until } => Some(until),
            Phase::Resolving { next_arp, give_up } => Some(next_arp.min(give_up)),
            Phase::Opening => self.opener.as_ref().and_then(Opener::deadline),
            Phase::Spliced => [self.opener.as_ref().and_then(Opener::deadline), Some(self.idle_until)].into_iter().flatten().min(),
            Phase::Lingering { until, .. } => Some(until),
        }
    }
}

/// A shard's splices by their backend side.
#[derive(Debug, Default)]
pub(super) struct Splices {
    by_backend: HashMap<ConnKey, u32>,
}

impl Splices {
    /// Forgets a splice's backend side (its connection is gone).
    pub(super) fn forget(&mut self, splice: &Splice) {
        if let Some(b) = splice.backend {
            self.by_backend.remove(&b.key);
        }
    }
}

impl Served {
    /// Tells the services how the input steers between shards: by the flow hash over
    /// `shards` shards (1 unless told), with the VLAN id in the key or not.
    pub fn set_steering(&mut self, shards: usize, vlan_in_key: bool) {
        self.ports.set_steering(shards, vlan_in_key);
    }

    /// Shares the backends' MACs with the run's other shards (each has a table of its own
    /// unless told).
    pub fn share_neighbors(&mut self, neighbors: Arc<Neighbors>) {
        self.neighbors.share(neighbors);
    }

    /// Takes what other shards learned of backends' MACs since the last look: waiting
    /// connections and flows go on. One atomic load when nothing changed; with too little
    /// event room for what waits, it looks again next round.
    pub(super) fn sync_neighbors<S: ServeSink>(&mut self, sink: &mut S) {
        let mut learned = std::mem::take(&mut self.learned);
        self.neighbors.sync(&mut learned);
        while let Some(&ip) = learned.last() {
            if !self.neighbor_known(ip, sink) {
                break;
            }
            learned.pop();
        }
        self.learned = learned;
    }

    /// Whether `ip` is a splicer's source address.
    pub(super) fn is_source(&self, ip: IpAddr) -> bool {
        self.specs.iter().any(|s| s.splicer.is_some_and(|p| p.source == ip))
    }

    /// ARP for a splicer's or an l4 service's source address: a request is answered (on any
    /// port), a reply gives a backend's MAC. `None`: not about a source address.
    pub(super) fn source_arp<S: ServeSink>(&mut self, arp: &ArpRepr, l2: &super::L2, ts_ns: u64, sink: &mut S) -> Option<Taken> {
        let target = IpAddr::V4(arp.target_ip);
        let spec = self.specs.iter().find(|s| {
            s.splicer.is_some_and(|p| p.source == target)
                || s.proxy.is_some_and(|p| p.source == target)
                || s.l4.is_some_and(|l| l.source.map(IpAddr::V4) == Some(target))
        })?;
        let mac = self.service_mac(spec, l2.port);
        match arp.operation {
            Operation::Request => self.answer_arp(arp, mac, l2, ts_ns, sink),
            Operation::Reply => return Some(self.learn_neighbor(arp, l2.port, sink)),
        }
        Some(Taken::Consumed)
    }

    /// An ARP reply on `port`: if it answers what mbox asked (there), splices and l4 flows
    /// waiting for that backend go on, here and (through the shared table) on the other
    /// shards; another reply is counted and changes nothing.
    pub(super) fn learn_neighbor<S: ServeSink>(&mut self, arp: &ArpRepr, port: u16, sink: &mut S) -> Taken {
        let ip = IpAddr::V4(arp.sender_ip);
        if !self.neighbors.answer(ip, arp.sender_mac, self.wire_port(port)) {
            self.stats.arp_replies_unasked += 1;
            return Taken::Consumed;
        }
        if !self.neighbor_known(ip, sink) {
            // Out of event room: the rest goes on at the next round's sync.
            self.learned.push(ip);
        }
        self.stats.arp_replies_taken += 1;
        Taken::Consumed
    }

    /// `ip`'s MAC is known: what waited for it goes on. False when event room ran out first
    /// (the caller comes back for the rest).
    fn neighbor_known<S: ServeSink>(&mut self, ip: IpAddr, sink: &mut S) -> bool {
        let waiting: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| {
                let s = self.slots[i as usize].splice.as_deref();
                s.is_some_and(|s| matches!(s.phase, Phase::Resolving { .. }) && s.backend.is_some_and(|b| b.addr.ip() == ip))
            })
            .collect();
        for i in waiting {
            if !sink.has_room(2, 0) {
                return false;
            }
            self.open_backend(i, sink);
        }
        self.proxy_resolved(ip, sink) && self.l4_resolved(ip, sink)
    }

    /// An NF answers held connection `i` itself (it sends or closes: a 400 or a 503 of its
    /// own, or a cache's stored answer): the connection will not be spliced, so its hold is
    /// over (no `hold_timeout` refusal later, its window reopens as the NF reads) and a later
    /// bind is refused.
    /// Returns the client bytes its NFs finished reading while it was held, for the caller to
    /// report read (0 when it was not held).
    pub(super) fn answered_by_nf(&mut self, i: u32) -> u64 {
        let slot = &mut self.slots[i as usize];
        if slot.splice.as_deref().is_some_and(|s| matches!(s.phase, Phase::Holding { .. })) {
            if let Some(sp) = slot.splice.take() {
                self.splices.forget(&sp);
                return sp.read;
            }
        }
        0
    }

    /// An NF bound connection `i` to `backend` (`Host::bind`).
    pub(super) fn bind<S: ServeSink>(&mut self, i: u32, backend: SocketAddr, sink: &mut S) {
        if self.slots[i as usize].proxy.is_some() {
            return self.proxy_bind(i, backend, sink);
        }
        let now = self.now;
        let slot = &self.slots[i as usize];
        let fresh = slot.conn.as_ref().is_some_and(|c| {
            let v = c.splice_view(now);
            c.state().is_synchronized() && v.snd_nxt == v.iss.wrapping_add(1)
        });
        let Some(sp) = slot.splice.as_deref().filter(|s| fresh && matches!(s.phase, Phase::Holding { .. })) else {
            self.stats.binds_refused += 1;
            return;
        };
        // A bind that cannot be carried out (another family than the source's, no source
        // port left) is the NF's choice failing: the client is refused now, not at the hold's
        // end.
        let source = sp.spec.source;
        let by_backend = &self.splices.by_backend;
        let taken =
            |port| by_backend.contains_key(&ConnKey { remote: backend.ip(), remote_port: backend.port(), local: source, local_port: port });
        // mbox sends the backend side untagged: its answers come without a VLAN id.
        let port = if source.is_ipv4() == backend.is_ipv4() { self.ports.pick(ip_proto::TCP, source, backend, 0, taken) } else { None };
        let Some(port) = port else {
            self.stats.binds_refused += 1;
            return self.bind_failed(i, BIND_NOT_DONE, sink);
        };
        self.stats.binds += 1;
        let key = ConnKey { remote: backend.ip(), remote_port: backend.port(), local: source, local_port: port };
        let out_port = slot.info.port ^ 1;
        let spec = &self.specs[usize::from(slot.info.service)];
        let mac = self.service_mac(spec, out_port);
        self.splices.by_backend.insert(key, i);
        let sp = self.slots[i as usize].splice.as_deref_mut().expect("checked above");
        let unknown = EthernetAddress([0; 6]);
        sp.backend =
            Some(Backend { addr: backend, source: SocketAddr::new(source, port), key, mac: unknown, mac_ours: mac, port: out_port });
        sp.phase = Phase::Resolving { next_arp: now, give_up: now.saturating_add(sp.spec.open.connect_timeout_ns) };
        if self.neighbors.mac(backend.ip()).is_some() {
            self.open_backend(i, sink);
        } else {
            self.arp_backend(i, sink);
            let deadline = self.deadline_of(i);
            self.wheel.set(i, deadline);
        }
    }

    /// Asks for connection `i`'s backend's MAC (IPv6 backends: not yet, given up as unresolved).
    fn arp_backend<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let Some(sp) = self.slots[i as usize].splice.as_deref_mut() else { return };
        let (Some(b), Phase::Resolving { give_up, .. }) = (sp.backend, sp.phase) else { return };
        sp.phase = Phase::Resolving { next_arp: now.saturating_add(ARP_RETRY_NS), give_up };
        let (IpAddr::V4(target), IpAddr::V4(sender)) = (b.addr.ip(), b.source.ip()) else {
            sp.phase = Phase::Resolving { next_arp: give_up, give_up };
            return;
        };
        self.request_mac(target, sender, b.mac_ours, b.port, sink);
    }

    /// Broadcasts an ARP request for `target`'s MAC from `sender` (mbox's `mac` on `port`),
    /// noted in the neighbour table so that its reply is taken. Not sent when the table is
    /// full (counted).
    pub(super) fn request_mac<S: ServeSink>(&mut self, target: Ipv4Addr, sender: Ipv4Addr, mac: EthernetAddress, port: u16, sink: &mut S) {
        if !self.neighbors.ask(IpAddr::V4(target), self.wire_port(port), self.now) {
            self.stats.neighbors_full += 1;
            return;
        }
        let request = ArpRepr {
            operation: Operation::Request,
            sender_mac: mac,
            sender_ip: sender,
            target_mac: EthernetAddress([0; 6]),
            target_ip: target,
        };
        let eth = EthernetRepr { src: mac, dst: EthernetAddress([0xff; 6]), ethertype: ethertype::ARP };
        let sent = sink.originate(port, self.now, &mut |buf| {
            buf.resize(ETHERNET_LEN + request.buffer_len(), 0);
            let at = VlanTags::default().emit_header(&eth, buf);
            request.emit(&mut ArpPacket::new_unchecked(&mut buf[at..]));
        });
        if sent {
            self.stats.arp_requests_sent += 1;
        } else {
            self.stats.no_buffer += 1;
        }
    }

    /// The backend's MAC is known: mbox's SYN goes to it.
    fn open_backend<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        let (Some(conn), Some(sp)) = (slot.conn.as_ref(), slot.splice.as_deref_mut()) else { return };
        let Some(mut b) = sp.backend else { return };
        let Some(mac) = self.neighbors.mac(b.addr.ip()) else { return };
        b.mac = mac;
        sp.backend = Some(b);
        let view = conn.splice_view(now);
        let info = slot.info;
        let addrs = (SocketAddr::new(info.remote, info.remote_port), SocketAddr::new(info.local, info.local_port), b.addr);
        let binfo = backend_info(&info, &b);
        let spec = sp.spec.open;
        let mut out = Out::new(sink, &binfo, &mut self.stats, Events::default(), now);
        let opener = Opener::start(spec, view, addrs, BackendSource::Snat(b.source), Vec::new(), false, now, &mut out);
        let sp = self.slots[i as usize].splice.as_deref_mut().expect("checked above");
        sp.opener = Some(opener);
        sp.phase = Phase::Opening;
        let deadline = self.deadline_of(i);
        self.wheel.set(i, deadline);
    }

    /// Whether `frame` (to a splicer's source address when `to_source`, else to a service's)
    /// belongs to a splice that carries it with nothing of mbox's own left to do: its opener
    /// done, so that mbox only translates the frame and reads nothing of it.
    pub(super) fn crosses_splice(&self, frame: &TcpFrame, to_source: bool) -> bool {
        let t = &frame.tcp;
        let key = ConnKey { remote: frame.ip.src(), remote_port: t.src_port, local: frame.ip.dst(), local_port: t.dst_port };
        let i = if to_source { self.splices.by_backend.get(&key) } else { self.index.get(&key) };
        let sp = i.and_then(|&i| self.slots[i as usize].splice.as_deref());
        // SYN, FIN and RST frames are rare and end or change a splice: they are verified. So
        // is a backend frame whose bytes NFs read: a damaged copy would be what they get.
        sp.is_some_and(|sp| {
            sp.carries()
                && sp.opener.as_ref().is_none_or(Opener::is_done)
                && t.flags & (SYN | FIN | RST) == 0
                && !(to_source && sp.tap.is_some())
        })
    }

    /// A frame to a splicer's source address: a backend's.
    pub(super) fn backend_segment<S: ServeSink>(
        &mut self,
        frame: &TcpFrame,
        payload: (usize, usize),
        data: &mut [u8],
        port: u16,
        sink: &mut S,
    ) -> Taken {
        let t = &frame.tcp;
        let key = ConnKey { remote: frame.ip.src(), remote_port: t.src_port, local: frame.ip.dst(), local_port: t.dst_port };
        let seg = SegmentIn {
            seq: t.seq,
            ack: t.ack,
            flags: t.flags,
            window: t.window,
            options: t.options,
            payload: &data[payload.0..payload.0 + payload.1],
        };
        let Some(&i) = self.splices.by_backend.get(&key) else {
            // No splice: RFC 9293 3.10.7.1 (never a RST for a RST).
            if t.flags & RST == 0 {
                self.reset_for(frame, &seg, port, sink);
            }
            return Taken::Consumed;
        };
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        let info = slot.info;
        let (Some(conn), Some(sp)) = (slot.conn.as_ref(), slot.splice.as_deref_mut()) else { return Taken::Consumed };
        let Some(b) = sp.backend else { return Taken::Consumed };
        let binfo = backend_info(&info, &b);
        if sp.phase == Phase::Opening {
            // The client's bytes so far, with the client's latest clock, go to the opener.
            let view = conn.splice_view(now);
            let held = std::mem::take(&mut sp.held);
            let Some(opener) = sp.opener.as_mut() else { return Taken::Consumed };
            opener.hold(view, &held, view.peer_closed);
            let mut out = Out::new(sink, &binfo, &mut self.stats, Events::default(), now);
            opener.on_backend(&seg, now, &mut out);
            match opener.phase() {
                OpenPhase::Failed(why) => {
                    self.backend_failed(i, why, sink);
                }
                OpenPhase::Established | OpenPhase::Done => {
                    let made = opener.bind().map(|bind| (SpliceMap::new(&bind), bind.backend_isn));
                    match made {
                        Some((Ok(map), backend_isn)) => {
                            sp.map = Some(map);
                            sp.phase = Phase::Spliced;
                            if sink.wants_backend_data(&info) {
                                sp.tap = Some(Tap::new(backend_isn));
                            }
                            sp.idle_until = now.saturating_add(sp.spec.idle_timeout_ns);
                            self.stats.spliced += 1;
                            // mbox's connection with the client is silent from now on: its
                            // buffers and what the budget reserved for it are given back.
                            let slot = &mut self.slots[i as usize];
                            if let Some(conn) = slot.conn.as_mut() {
                                conn.release_idle_memory();
                            }
                            self.budget.release(usize::from(slot.info.service), slot.holding);
                            slot.holding = 0;
                            let info = slot.info;
                            sink.conn_event(ConnEventKind::Bound, &info, BIND_CONNECTED, now);
                        }
                        _ => self.backend_failed(i, OpenFailure::Lost, sink),
                    }
                }
                OpenPhase::SynSent => {}
            }
            let deadline = self.deadline_of(i);
            self.wheel.set(i, deadline);
            return Taken::Consumed;
        }
        if !sp.carries() {
            return Taken::Consumed;
        }
        sp.idle_until = now.saturating_add(sp.spec.idle_timeout_ns);
        if let Some(opener) = sp.opener.as_mut().filter(|o| !o.is_done()) {
            let resent_syn = seg.flags & SYN != 0;
            let mut out = Out::new(sink, &binfo, &mut self.stats, Events::default(), now);
            opener.on_backend(&seg, now, &mut out);
            let mut held_fin_in = false;
            match opener.phase() {
                OpenPhase::Failed(_) => {
                    // Reset before the held bytes were in: the client is told by the RST sent on.
                    self.stats.splices_lost += 1;
                }
                OpenPhase::Done => {
                    // A FIN the client sent before the splice never crosses it: mbox's own
                    // connection took it, the opener sent it on. Acknowledged now, it counts
                    // as crossed (without this, a client that closed before the bind —
                    // HTTP/1.0's request and FIN — left the splice open after the backend's
                    // FIN until `idle_timeout`, and its NFs told late, as a timeout).
                    held_fin_in = opener.held_fin();
                    sp.opener = None;
                }
                _ => {}
            }
            if held_fin_in {
                self.fin_crossed(i, CLIENT_FIN, sink);
            }
            if resent_syn {
                return Taken::Consumed; // the SYN-ACK again: answered by the opener
            }
        }
        let Some(map) = self.slots[i as usize].splice.as_deref().and_then(|s| s.map) else { return Taken::Consumed };
        self.tap_backend(i, t.seq, &data[payload.0..payload.0 + payload.1], sink);
        self.forward_spliced(i, map, Dir::B2C, (t.flags & ACK != 0).then_some(t.ack), data, sink)
    }

    /// Splice `i`'s backend sent `payload` at `seq`: read for its NFs while they want it.
    fn tap_backend<S: ServeSink>(&mut self, i: u32, seq: u32, payload: &[u8], sink: &mut S) {
        let slot = &mut self.slots[i as usize];
        let Some(sp) = slot.splice.as_deref_mut() else { return };
        if sp.tap.is_none() {
            return;
        }
        if !sink.wants_backend_data(&slot.info) {
            // Nobody reads any more (a cache has its whole answer): a pure splice again.
            sp.tap = None;
            return;
        }
        let Some(tap) = sp.tap.as_mut() else { return };
        // Room for every event and copy the frame may let through. The splice's traffic
        // never waits for an NF's copy: without room the reading is given up (counted; its
        // NFs see no more of the answer, and a cache fills nothing from this one).
        let bytes = 2 * (payload.len() + tap.kept_bytes()) + TAP_EVENTS_PER_FRAME * 2048;
        if !sink.has_room(TAP_EVENTS_PER_FRAME + super::EVENTS_PER_OPERATION, bytes) {
            sp.tap = None;
            self.stats.backend_reads_given_up += 1;
            return;
        }
        tap.segment(&slot.info, seq, payload, self.now, &mut self.stats, sink);
    }

    /// A frame from a client whose connection is spliced: translated and sent on. `None` when
    /// the connection is not spliced (mbox's own handles it).
    pub(super) fn spliced_client_segment<S: ServeSink>(&mut self, frame: &TcpFrame, data: &mut [u8], sink: &mut S) -> Option<Taken> {
        let t = &frame.tcp;
        let key = ConnKey { remote: frame.ip.src(), remote_port: t.src_port, local: frame.ip.dst(), local_port: t.dst_port };
        let &i = self.index.get(&key)?;
        let sp = self.slots[i as usize].splice.as_deref_mut().filter(|s| s.carries())?;
        if t.flags & SYN != 0 && t.flags & ACK == 0 {
            // A new SYN on the address and port: the old splice must have ended (lingering);
            // mbox's own connection logic decides.
            if let Phase::Lingering { reset, .. } = sp.phase {
                self.end_splice(i, if reset { REASON_RST } else { REASON_FIN }, sink);
                return None;
            }
        }
        sp.idle_until = self.now.saturating_add(sp.spec.idle_timeout_ns);
        let map = sp.map?;
        Some(self.forward_spliced(i, map, Dir::C2B, (t.flags & ACK != 0).then_some(t.ack), data, sink))
    }

    /// Translates one frame of splice `i` in place and sends it on; tracks its end: once both
    /// FINs (or a RST) have crossed, the NFs get `TERMINATE` at once (a load balancer counts the
    /// connection gone), while the splice lingers for late retransmissions.
    fn forward_spliced<S: ServeSink>(
        &mut self,
        i: u32,
        map: SpliceMap,
        dir: Dir,
        ack: Option<u32>,
        data: &mut [u8],
        sink: &mut S,
    ) -> Taken {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        let info = slot.info;
        let Some(sp) = slot.splice.as_deref_mut() else { return Taken::Consumed };
        let Some(b) = sp.backend else { return Taken::Consumed };
        let translated = match translate(&map, dir, data) {
            Ok(t) => t,
            Err(_) => {
                self.stats.splice_errors += 1;
                return Taken::Consumed;
            }
        };
        let macs = match dir {
            Dir::C2B => (b.mac_ours, b.mac),
            Dir::B2C => (info.local_mac, info.remote_mac),
        };
        // Cannot fail: translate read the Ethernet header already.
        let _ = set_macs(data, macs.0, macs.1);
        match dir {
            Dir::C2B => {
                self.stats.spliced_to_backend += 1;
                if let Some(o) = sp.opener.as_mut() {
                    o.note_client(translated.timestamps.map(|t| t.0), translated.has_ack().then_some(translated.ack), translated.window);
                }
            }
            Dir::B2C => self.stats.spliced_to_client += 1,
        }
        let (mine, theirs) = match dir {
            Dir::C2B => (0, 1),
            Dir::B2C => (1, 0),
        };
        if ack.is_some() {
            sp.acks[mine] = ack;
        }
        // A RST ends the splice only where its receiver could take it: within reach of the
        // last ACK that receiver sent (its RCV.NXT, as RFC 5961 3.2 checks). A forged or stray
        // one is sent on for the receiver to judge, and the splice stays.
        let in_window = super::rst_in_reach(translated.seq, sp.acks[theirs]);
        if translated.is_rst() && !in_window {
            self.stats.splice_rsts_out_of_window += 1;
        } else if translated.is_rst() {
            // Sent on; the splice ends with it (one that both FINs closed stays closed).
            let reset = !matches!(sp.phase, Phase::Lingering { reset: false, .. });
            sp.phase = Phase::Lingering { until: now, reset };
            self.announce_end(i, REASON_RST, sink);
        } else if translated.is_fin() {
            self.fin_crossed(i, if dir == Dir::C2B { CLIENT_FIN } else { BACKEND_FIN }, sink);
        }
        let deadline = self.deadline_of(i);
        self.wheel.set(i, deadline);
        Taken::Forward
    }

    /// Connection `i`'s timer ran out: its splice's, then its own (unless spliced).
    pub(super) fn timer<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let Some(sp) = self.slots[i as usize].splice.as_deref_mut() else {
            self.proxy_timer(i, sink);
            return self.operate(i, sink, |c, now, out| c.on_timer(now, out));
        };
        match sp.phase {
            Phase::Holding { until } if now >= until => {
                self.stats.hold_timeouts += 1;
                return self.refuse_client(i, sink);
            }
            Phase::Resolving { give_up, .. } if now >= give_up => {
                self.stats.backends_unresolved += 1;
                return self.bind_failed(i, BIND_UNRESOLVED, sink);
            }
            Phase::Resolving { next_arp, .. } if now >= next_arp => self.arp_backend(i, sink),
            Phase::Opening | Phase::Spliced => {
                let info = self.slots[i as usize].info;
                let sp = self.slots[i as usize].splice.as_deref_mut().expect("matched above");
                if sp.phase == Phase::Spliced && now >= sp.idle_until {
                    self.stats.splice_idle_timeouts += 1;
                    return self.end_splice(i, REASON_TIMEOUT, sink);
                }
                if let (Some(o), Some(b)) = (sp.opener.as_mut(), sp.backend) {
                    let binfo = backend_info(&info, &b);
                    let mut out = Out::new(sink, &binfo, &mut self.stats, Events::default(), now);
                    o.on_timer(now, &mut out);
                    if let OpenPhase::Failed(why) = o.phase() {
                        if sp.phase == Phase::Opening {
                            return self.backend_failed(i, why, sink);
                        }
                        self.stats.splices_lost += 1;
                        return self.end_splice(i, REASON_RST, sink);
                    }
                }
            }
            Phase::Lingering { until, reset } if now >= until => {
                return self.end_splice(i, if reset { REASON_RST } else { REASON_FIN }, sink);
            }
            _ => {}
        }
        if !self.slots[i as usize].splice.as_ref().is_some_and(|s| s.carries()) {
            self.operate(i, sink, |c, now, out| c.on_timer(now, out));
        } else {
            let deadline = self.deadline_of(i);
            self.wheel.set(i, deadline);
        }
    }

    /// The backend could not be had: counted, the client refused.
    fn backend_failed<S: ServeSink>(&mut self, i: u32, why: OpenFailure, sink: &mut S) {
        let reason = match why {
            OpenFailure::Refused => {
                self.stats.backends_refused += 1;
                BIND_REFUSED
            }
            OpenFailure::TimedOut => {
                self.stats.backends_timed_out += 1;
                BIND_TIMED_OUT
            }
            OpenFailure::Lost => {
                self.stats.splices_lost += 1;
                BIND_LOST
            }
        };
        self.bind_failed(i, reason, sink);
    }

    /// Connection `i`'s bind failed (`reason`, a `BIND_*`): its NFs are told (their passive
    /// health checks read it), the client refused.
    fn bind_failed<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        let info = self.slots[i as usize].info;
        sink.conn_event(ConnEventKind::Bound, &info, reason, self.now);
        self.refuse_client(i, sink);
    }

    /// Answers a client whose splice will not be, as its service's `refuse` says; the
    /// connection is mbox's own from then on, and ends as such.
    fn refuse_client<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let slot = &mut self.slots[i as usize];
        let Some(sp) = slot.splice.take() else { return };
        self.splices.forget(&sp);
        self.stats.clients_refused += 1;
        match sp.spec.refuse {
            Refusal::Http503 => self.operate(i, sink, |c, now, out| {
                c.write(HTTP_503, now, out);
                c.close(now, out);
            }),
            Refusal::Rst => self.operate(i, sink, |c, _, out| c.abort(out)),
        }
    }

    /// An NF's reset: a spliced connection is reset both ways; any other as mbox's own.
    pub(super) fn reset<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let carries = self.slots[i as usize].splice.as_ref().is_some_and(|s| s.carries());
        if !carries {
            self.splice_client_gone(i, sink);
            return self.operate(i, sink, |conn, _, out| conn.abort(out));
        }
        let now = self.now;
        let slot = &self.slots[i as usize];
        let (info, sp) = (slot.info, slot.splice.as_deref().expect("carries"));
        if let (Some(b), Some(map)) = (sp.backend, sp.map) {
            // What the client last acknowledged is unknown here: each side gets a RST in the
            // sequence space it expects next, as mbox's own connection left it.
            let binfo = backend_info(&info, &b);
            let view = slot.conn.as_ref().map(|c| c.splice_view(now));
            if let Some(v) = view {
                let to_backend = SegmentOut {
                    seq: v.rcv_nxt.wrapping_add(map.c2b.seq_delta),
                    ack: 0,
                    flags: RST,
                    window: 0,
                    options: TcpOptions::default(),
                    payload_len: 0,
                };
                Out::new(sink, &binfo, &mut self.stats, Events::default(), now).transmit(&to_backend, Payload::EMPTY);
                let to_client =
                    SegmentOut { seq: v.snd_nxt, ack: 0, flags: RST, window: 0, options: TcpOptions::default(), payload_len: 0 };
                Out::new(sink, &info, &mut self.stats, Events::default(), now).transmit(&to_client, Payload::EMPTY);
            }
        }
        self.end_splice(i, REASON_RST, sink);
    }

    /// The client's connection ended before its splice carried it: a backend that answered
    /// already is reset.
    pub(super) fn splice_client_gone<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let slot = &self.slots[i as usize];
        let Some(sp) = slot.splice.as_deref().filter(|s| !s.carries()) else { return };
        let (Some(b), Some(rst)) = (sp.backend, sp.opener.as_ref().and_then(Opener::reset_segment)) else { return };
        let binfo = backend_info(&slot.info, &b);
        Out::new(sink, &binfo, &mut self.stats, Events::default(), now).transmit(&rst, Payload::EMPTY);
    }

    /// Ends splice `i` and its connection: its NFs get `TERMINATE` (`reason`) unless told
    /// already. Counted as mbox's own connections are: closed by both FINs, aborted by a RST,
    /// a backend lost or silence (a splice reset used to be counted closed at its linger's end).
    fn end_splice<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        if reason == REASON_FIN {
            self.stats.closed += 1;
        } else {
            self.stats.aborted += 1;
        }
        self.end_quietly(i, reason, sink);
    }

    /// A FIN crossed splice `i` (`fin`: [`CLIENT_FIN`] or [`BACKEND_FIN`]). Once both have, its
    /// NFs are told at once (a load balancer counts the connection gone), while the splice
    /// lingers `time_wait` for late retransmissions, recyclable as a connection in TIME-WAIT.
    fn fin_crossed<S: ServeSink>(&mut self, i: u32, fin: u8, sink: &mut S) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        let Some(sp) = slot.splice.as_deref_mut() else { return };
        sp.fins |= fin;
        if sp.fins != CLIENT_FIN | BACKEND_FIN || sp.phase != Phase::Spliced {
            return;
        }
        sp.phase = Phase::Lingering { until: now.saturating_add(sp.spec.linger_ns), reset: false };
        slot.in_time_wait = true;
        let (id, service) = (slot.info.id, slot.info.service);
        self.note_lingering(usize::from(service), i, id);
        self.announce_end(i, REASON_FIN, sink);
        let deadline = self.deadline_of(i);
        self.wheel.set(i, deadline);
    }

    /// Splice `i` ended (`reason`): its NFs are told once (the slot's own end later stays
    /// quiet).
    fn announce_end<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        let slot = &mut self.slots[i as usize];
        if slot.announced {
            slot.announced = false;
            sink.conn_event(ConnEventKind::Terminate, &slot.info, reason, self.now);
        }
    }
}

/// Connection `info`'s backend side as segments to the backend name it.
fn backend_info(info: &ConnInfo, b: &Backend) -> ConnInfo {
    ConnInfo {
        local: b.source.ip(),
        remote: b.addr.ip(),
        local_port: b.source.port(),
        remote_port: b.addr.port(),
        local_mac: b.mac_ours,
        remote_mac: b.mac,
        vlan: VlanTags::default(),
        port: b.port,
        ..*info
    }
}

#[cfg(test)]
impl Served {
    /// Whether connection `i`'s splice carries it and its opener has nothing left to send (every
    /// held byte acknowledged, or given up). For tests.
    pub(super) fn splice_settled(&self, i: u32) -> bool {
        let sp = self.slots.get(i as usize).and_then(|s| s.splice.as_deref());
        sp.is_some_and(|s| {
            s.carries() && s.opener.as_ref().is_none_or(|o| !matches!(o.phase(), OpenPhase::SynSent | OpenPhase::Established))
        })
    }

    /// How many backend sides the shard knows (each a live splice's). For tests.
    pub(super) fn splice_backends(&self) -> usize {
        let stale = self.splices.by_backend.iter().find(|&(key, &i)| {
            let slot = &self.slots[i as usize];
            slot.conn.is_none() || !slot.splice.as_ref().is_some_and(|s| s.backend.is_some_and(|b| b.key == *key))
        });
        assert!(stale.is_none(), "a backend side without its splice: {stale:?}");
        self.splices.by_backend.len()
    }
}
