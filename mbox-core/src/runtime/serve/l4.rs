//! The L4 load balancer's NAT on a shard (`[[service]] stack = "l4"`): no TCP state, only a
//! table of flows. The first packet of a TCP or UDP flow to a service address and port starts
//! a flow: its NFs get `FLOW/TCP/NEW` or `FLOW/UDP/NEW` (with the flow's tuple) and the packet
//! waits, copied, for one of them to answer `Host::bind(flow, backend)`. Once the backend's
//! MAC is known (ARP, shared with the splicers' neighbour table) the waiting packet goes to the
//! backend, and from then on every packet of the flow, both ways, is translated in place
//! (`mbox_stack::nat`: addresses, ports, checksums updated incrementally) and sent on out of
//! the pair's other port; the NFs see no packet, only the flow's end.
//!
//! The flow is pinned to its backend for its life: the NF's choice is asked once, so a change
//! in its backend set moves no established flow. With `source` (source NAT) packets reach the
//! backend from that address and a port picked so that the backend's answers steer to this
//! shard; without it only the destination is translated, the backend answers the client's own
//! address, and mbox (on the path) translates the answer's source back to the service's.
//!
//! A TCP flow bound from its SYN waits for the backend's SYN-ACK (`connect_timeout`): a RST or
//! silence is the bind's failure, and the NFs get `FLOW/TCP/BOUND` either way (their passive
//! health reads it). A TCP flow ends `time_wait` after FINs both ways or a RST, or after
//! `idle_timeout` of silence; a UDP flow after `udp_idle_timeout`. Fragments to a service
//! address are dropped, counted (a non-first fragment carries no ports to translate by).

use super::{ConnEventKind, ConnInfo, ServeSink, Served, Taken, L2};
use crate::config::{ServiceConfig, ServiceStack};
use mbox_abi::{FlowTuple, BIND_CONNECTED, BIND_NOT_DONE, BIND_REFUSED, BIND_TIMED_OUT, BIND_UNRESOLVED};
use mbox_abi::{REASON_END_OF_INPUT, REASON_FIN, REASON_RST, REASON_TIMEOUT};
use mbox_stack::nat::{self, Located, NatError};
use mbox_stack::splicer::set_macs;
use mbox_stack::wire::ethernet::EthernetAddress;
use mbox_stack::wire::ip_proto;
use mbox_stack::wire::tcp_flags::{ACK, FIN, RST, SYN};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

#[cfg(test)]
mod tests;

/// The most bytes of a flow's waiting packet: a full 1,500-byte packet with two VLAN tags
/// fits. A longer one is dropped, counted (the flow still starts; TCP's SYNs are short, and a
/// UDP sender's next datagram goes once the flow is bound), so that a table of waiting flows
/// holds at most this much per flow.
const MAX_WAITING_FRAME: usize = 2048;

/// An L4 service's settings (from its `[[service]]`).
#[derive(Debug, Clone, Copy)]
pub struct L4Spec {
    /// Source NAT's address, if any.
    pub source: Option<Ipv4Addr>,
    pub connect_timeout_ns: u64,
    pub tcp_idle_ns: u64,
    pub udp_idle_ns: u64,
    pub linger_ns: u64,
}

impl L4Spec {
    /// The settings of `cfg`, `None` unless it is an l4 service.
    pub fn new(cfg: &ServiceConfig) -> Option<L4Spec> {
        if cfg.stack != ServiceStack::L4 {
            return None;
        }
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Some(L4Spec {
            source: cfg.source.and_then(|s| match s {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None, // refused by the config's validation
            }),
            connect_timeout_ns: ns(cfg.connect_timeout),
            tcp_idle_ns: ns(cfg.idle_timeout),
            udp_idle_ns: ns(cfg.udp_idle_timeout),
            linger_ns: ns(cfg.time_wait),
        })
    }
}

type FlowIndex = HashMap<NatKey, u32, foldhash::fast::RandomState>;

/// A flow's key as its packets arrive: protocol, source, destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NatKey {
    proto: u8,
    src: SocketAddrV4,
    dst: SocketAddrV4,
}

impl NatKey {
    fn of(at: &Located) -> NatKey {
        NatKey { proto: at.proto, src: at.src, dst: at.dst }
    }
}

/// Where a flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its first packet waits for the NFs' bind until then.
    Waiting { until: u64 },
    /// Bound; the backend's MAC is asked for (again at `next_arp`) until `give_up`.
    Resolving { next_arp: u64, give_up: u64 },
    /// TCP bound from a SYN: the SYN went to the backend, its SYN-ACK is awaited.
    Opening { give_up: u64 },
    /// Translated both ways.
    Open,
    /// TCP: FINs both ways or a RST crossed; late packets still translate until then.
    Closing { until: u64, reset: bool },
}

/// [`Flow::fins`]' bits: the client's FIN crossed, the backend's.
const CLIENT_FIN: u8 = 1;
const BACKEND_FIN: u8 = 2;

/// A bound flow's backend side.
#[derive(Debug, Clone, Copy)]
struct Backend {
    addr: SocketAddrV4,
    /// What the backend sees packets come from: the client, or source NAT's address and port.
    from: SocketAddrV4,
    mac: EthernetAddress,
    /// mbox's MAC on the backend's port, and that port.
    mac_ours: EthernetAddress,
    port: u16,
}

/// One flow of the table.
#[derive(Debug)]
struct Flow {
    info: ConnInfo,
    live: bool,
    phase: Phase,
    /// The client's side: the client, the service's address and port.
    client: SocketAddrV4,
    service_addr: SocketAddrV4,
    backend: Option<Backend>,
    /// The frame waiting for the bind (its buffer kept for the slot's next flows).
    waiting: Vec<u8>,
    fins: u8,
    /// Its TCP flow began with a SYN (so the backend's SYN-ACK is the bind's outcome), and
    /// that SYN's sequence number (a RST refusing it must acknowledge it).
    from_syn: bool,
    syn_seq: u32,
    /// TCP: the last ACK number each side sent (client, backend), what a RST toward it must
    /// reach.
    acks: [Option<u32>; 2],
    last_seen: u64,
}

/// A shard's L4 flows. Their connection indices (send credits, flow slots, timers) start at
/// `base`, after the other services' connections.
#[derive(Debug)]
pub(super) struct L4Flows {
    base: u32,
    flows: Vec<Flow>,
    free: Vec<u32>,
    /// Flows by their client side's key, and by their backend side's (as its packets come):
    /// looked up for every packet, so hashed with foldhash (randomly seeded per process), not
    /// SipHash.
    by_client: FlowIndex,
    by_backend: FlowIndex,
    /// Service addresses and ports, for the per-packet check: (address, port, service).
    served: Vec<(SocketAddrV4, u16)>,
    /// Source NAT's addresses.
    sources: Vec<Ipv4Addr>,
    live: usize,
}

impl L4Flows {
    /// The l4 services' flows among `specs`, their indices from `base` on.
    pub(super) fn new(specs: &[super::ServiceSpec], base: u32) -> L4Flows {
        let capacity: usize = specs.iter().filter(|s| s.l4.is_some()).map(|s| s.max_connections).sum();
        let mut served = Vec::new();
        let sources = specs.iter().filter_map(|s| s.l4.and_then(|l4| l4.source)).collect();
        for (svc, spec) in specs.iter().enumerate().filter(|(_, s)| s.l4.is_some()) {
            for addr in &spec.addrs {
                if let IpAddr::V4(a) = addr {
                    served.extend(spec.ports.iter().map(|&p| (SocketAddrV4::new(*a, p), svc as u16)));
                }
            }
        }
        L4Flows {
            base,
            flows: Vec::with_capacity(capacity),
            free: Vec::new(),
            by_client: FlowIndex::with_capacity_and_hasher(capacity, Default::default()),
            by_backend: FlowIndex::with_capacity_and_hasher(capacity, Default::default()),
            served,
            sources,
            live: 0,
        }
    }

    /// Whether some service is an l4 one (else no packet is looked at).
    pub(super) fn any(&self) -> bool {
        !self.served.is_empty()
    }

    /// Whether connection index `i` is an L4 flow's.
    pub(super) fn owns(&self, i: u32) -> bool {
        i >= self.base
    }

    /// Live flows.
    pub(super) fn live(&self) -> usize {
        self.live
    }

    fn flow(&self, i: u32) -> Option<&Flow> {
        self.flows.get((i - self.base) as usize).filter(|f| f.live)
    }

    fn flow_mut(&mut self, i: u32) -> Option<&mut Flow> {
        self.flows.get_mut((i - self.base) as usize).filter(|f| f.live)
    }

    fn service_of(&self, dst: SocketAddrV4) -> Option<u16> {
        self.served.iter().find(|(a, _)| *a == dst).map(|&(_, svc)| svc)
    }

    /// Whether `ip` is an l4 service's address or source NAT's: mbox's own, so what comes
    /// to it and cannot be translated is dropped rather than sent on.
    fn is_own_addr(&self, ip: Ipv4Addr) -> bool {
        self.served.iter().any(|(a, _)| *a.ip() == ip) || self.sources.contains(&ip)
    }
}

impl Served {
    /// Offers a frame to the l4 services: `None` when it is none of theirs (the caller goes on
    /// as without them).
    pub(super) fn l4_take<S: ServeSink>(&mut self, data: &mut [u8], l2: &L2, ts_ns: u64, sink: &mut S) -> Option<Taken> {
        let at = match nat::locate(data) {
            Ok(at) => at,
            Err(e @ (NatError::Fragment | NatError::NotTcpOrUdp(_))) => {
                // A fragment has no ports (a first one's flow may not be its rest's), ICMP no
                // flow to translate by (its errors quote the inner header; not translated).
                if !nat_dst(data).is_some_and(|dst| self.l4.is_own_addr(dst)) {
                    return None;
                }
                if e == NatError::Fragment {
                    self.stats.l4_fragments_dropped += 1;
                } else {
                    self.stats.l4_untranslated += 1;
                }
                return Some(Taken::Consumed);
            }
            Err(_) => return None,
        };
        let key = NatKey::of(&at);
        if let Some(&i) = self.l4.by_backend.get(&key) {
            self.tick(ts_ns);
            return Some(self.l4_from_backend(i, &at, data, l2.port, sink));
        }
        let svc = self.l4.service_of(at.dst)?;
        // A flow's start or end emits events: without room, the frame waits.
        if !sink.has_room(2, 0) {
            return Some(Taken::Blocked);
        }
        self.tick(ts_ns);
        if let Some(&i) = self.l4.by_client.get(&key) {
            let f = self.l4.flow(i).expect("indexed flows live");
            let new_syn = at.tcp_flags & (SYN | ACK) == SYN;
            if !(new_syn && matches!(f.phase, Phase::Closing { .. })) {
                return Some(self.l4_from_client(i, &at, data, l2.port, sink));
            }
            // The client reuses its port while the old flow lingers: the old one ends.
            let reason = if matches!(f.phase, Phase::Closing { reset: true, .. }) { REASON_RST } else { REASON_FIN };
            self.l4_end(i, reason, sink);
        }
        Some(self.l4_start(usize::from(svc), &at, data, l2, sink))
    }

    /// The first packet of a flow to service `svc`: the flow starts and its NFs are told.
    fn l4_start<S: ServeSink>(&mut self, svc: usize, at: &Located, data: &[u8], l2: &L2, sink: &mut S) -> Taken {
        if at.proto == ip_proto::TCP && at.tcp_flags & RST != 0 {
            return Taken::Consumed; // a RST for no flow starts none
        }
        if self.per_service[svc] >= self.specs[svc].max_connections && !self.recycle_time_wait(svc, sink) {
            self.stats.refused_full += 1;
            return Taken::Consumed;
        }
        let spec = &self.specs[svc];
        let Some(l4) = spec.l4 else { return Taken::No };
        let index = match self.l4.free.pop() {
            Some(i) => i,
            None => {
                let i = self.l4.base + self.l4.flows.len() as u32;
                self.l4.flows.push(Flow {
                    info: self.stranger_l4(at, l2),
                    live: false,
                    phase: Phase::Open,
                    client: at.src,
                    service_addr: at.dst,
                    backend: None,
                    waiting: Vec::new(),
                    fins: 0,
                    from_syn: false,
                    syn_seq: 0,
                    acks: [None; 2],
                    last_seen: 0,
                });
                i
            }
        };
        let tuple = FlowTuple::new(at.proto, 0, [IpAddr::V4(*at.src.ip()), IpAddr::V4(*at.dst.ip())], [at.src.port(), at.dst.port()]);
        let local_mac = self.service_mac(spec, l2.port);
        let info = self.conn_info(index, svc, tuple, ConnInfo { local_mac, ..self.stranger_l4(at, l2) });
        let id = info.id;
        let now = self.now;
        let until = now.saturating_add(l4.connect_timeout_ns);
        let base = self.l4.base;
        let f = &mut self.l4.flows[(index - base) as usize];
        f.info = info;
        f.live = true;
        f.phase = Phase::Waiting { until };
        (f.client, f.service_addr, f.backend, f.fins, f.last_seen) = (at.src, at.dst, None, 0, now);
        f.from_syn = at.proto == ip_proto::TCP && at.tcp_flags & (SYN | ACK) == SYN;
        f.syn_seq = at.tcp_seq;
        f.acks = [None; 2];
        f.waiting.clear();
        if data.len() <= MAX_WAITING_FRAME {
            f.waiting.extend_from_slice(data);
        } else {
            self.stats.l4_dropped_before_bind += 1;
        }
        self.l4.by_client.insert(NatKey::of(at), index);
        self.l4.live += 1;
        self.per_service[svc] += 1;
        self.stats.accepted += 1;
        self.stats.l4_flows += 1;
        self.credits.open(index, id);
        sink.conn_started(info.slot, id, self.specs[svc].nfs);
        sink.conn_event(ConnEventKind::New, &info, 0, now);
        self.wheel.set(index, Some(until));
        Taken::Consumed
    }

    /// Who a frame came from and went to, before its flow has a table slot.
    fn stranger_l4(&self, at: &Located, l2: &L2) -> ConnInfo {
        ConnInfo {
            id: 0,
            index: u32::MAX,
            slot: 0,
            tuple: FlowTuple::default(),
            local: IpAddr::V4(*at.dst.ip()),
            remote: IpAddr::V4(*at.src.ip()),
            local_port: at.dst.port(),
            remote_port: at.src.port(),
            local_mac: EthernetAddress([0; 6]),
            remote_mac: l2.client_mac,
            vlan: l2.vlan,
            port: l2.port,
            service: 0,
            dir: mbox_abi::DIR_ORIG,
            side: 0,
        }
    }

    /// A client's packet of flow `i`, come in on `port`.
    fn l4_from_client<S: ServeSink>(&mut self, i: u32, at: &Located, data: &mut [u8], port: u16, sink: &mut S) -> Taken {
        let now = self.now;
        let expected = self.l4.flow(i).map_or(port, |f| f.info.port);
        if self.wire_port(port) != self.wire_port(expected) {
            // The client's key from the backends' side: forged, or a loop. Not translated.
            self.stats.l4_wrong_port += 1;
            return Taken::Consumed;
        }
        let f = self.l4.flow_mut(i).expect("indexed flows live");
        f.last_seen = now;
        let Some(b) = f.backend.filter(|_| !matches!(f.phase, Phase::Waiting { .. } | Phase::Resolving { .. })) else {
            // Before the bind (or the backend's MAC): the newest packet waits instead.
            self.stats.l4_dropped_before_bind += 1;
            if data.len() <= MAX_WAITING_FRAME {
                f.waiting.clear();
                f.waiting.extend_from_slice(data);
            }
            return Taken::Consumed;
        };
        nat::rewrite(data, at, b.from, b.addr);
        // Cannot fail: locate read the Ethernet header.
        let _ = set_macs(data, b.mac_ours, b.mac);
        self.stats.l4_to_backend += 1;
        if at.proto == ip_proto::TCP {
            self.l4_track(i, at, CLIENT_FIN, sink);
        }
        Taken::Forward
    }

    /// A backend's packet of flow `i`, come in on `port`.
    fn l4_from_backend<S: ServeSink>(&mut self, i: u32, at: &Located, data: &mut [u8], port: u16, sink: &mut S) -> Taken {
        if !sink.has_room(2, 0) {
            return Taken::Blocked;
        }
        let now = self.now;
        let expected = self.l4.flow(i).and_then(|f| f.backend).map_or(port, |b| b.port);
        if self.wire_port(port) != self.wire_port(expected) {
            // The backend side's key from the clients' side: forged (a client that guessed
            // source NAT's port), or a loop. Not translated.
            self.stats.l4_wrong_port += 1;
            return Taken::Consumed;
        }
        let f = self.l4.flow_mut(i).expect("indexed flows live");
        f.last_seen = now;
        let (client, service, info) = (f.client, f.service_addr, f.info);
        let flags = at.tcp_flags;
        let mut track = at.proto == ip_proto::TCP;
        if let Phase::Opening { .. } = f.phase {
            // RFC 793's SYN-SENT check: a RST refuses the SYN only if it acknowledges it.
            let refuses = flags & (RST | ACK) == RST | ACK && at.tcp_ack == f.syn_seq.wrapping_add(1);
            if refuses {
                self.stats.backends_refused += 1;
                sink.conn_event(ConnEventKind::Bound, &info, BIND_REFUSED, now);
            } else if flags & RST != 0 {
                // Sent on for the client to judge (it drops it: the ACK is not its SYN's);
                // the flow goes on opening.
                self.stats.l4_rsts_out_of_window += 1;
                track = false;
            } else if flags & (SYN | ACK) == SYN | ACK {
                self.stats.l4_bound += 1;
                f.phase = Phase::Open;
                self.wheel.set(i, self.l4_deadline(i));
                sink.conn_event(ConnEventKind::Bound, &info, BIND_CONNECTED, now);
            }
        }
        nat::rewrite(data, at, service, client);
        let _ = set_macs(data, info.local_mac, info.remote_mac);
        self.stats.l4_to_client += 1;
        if track {
            self.l4_track(i, at, BACKEND_FIN, sink);
        }
        Taken::Forward
    }

    /// A TCP packet `at` crossed flow `i` (`fin`: whose FIN it would be, so which side sent
    /// it): FINs both ways or a RST start the flow's linger; its NFs are told at once (a
    /// balancer counts it gone). A RST beyond its receiver's reach (RFC 5961 3.2: forged, or
    /// stray) went on for the receiver to judge, and the flow stays.
    fn l4_track<S: ServeSink>(&mut self, i: u32, at: &Located, fin: u8, sink: &mut S) {
        let flags = at.tcp_flags;
        let (mine, theirs) = if fin == CLIENT_FIN { (0, 1) } else { (1, 0) };
        let Some(f) = self.l4.flow_mut(i) else { return };
        if flags & ACK != 0 {
            f.acks[mine] = Some(at.tcp_ack);
        }
        if flags & (FIN | RST) == 0 {
            return;
        }
        let reset = flags & RST != 0;
        if reset && !super::rst_in_reach(at.tcp_seq, f.acks[theirs]) {
            self.stats.l4_rsts_out_of_window += 1;
            return;
        }
        let now = self.now;
        let svc = usize::from(f.info.service);
        let Some(l4) = self.specs[svc].l4 else { return };
        let f = self.l4.flow_mut(i).expect("tracked flows live");
        if matches!(f.phase, Phase::Closing { .. }) {
            return;
        }
        if !reset {
            f.fins |= fin;
            if f.fins != CLIENT_FIN | BACKEND_FIN {
                return;
            }
        }
        f.phase = Phase::Closing { until: now.saturating_add(l4.linger_ns), reset };
        let info = f.info;
        self.note_lingering(svc, i, info.id);
        if reset {
            self.stats.aborted += 1;
        } else {
            self.stats.closed += 1;
        }
        sink.conn_event(ConnEventKind::Terminate, &info, if reset { REASON_RST } else { REASON_FIN }, now);
        self.wheel.set(i, self.l4_deadline(i));
    }

    /// An NF bound flow `i` to `backend` (`Host::bind`).
    pub(super) fn l4_bind<S: ServeSink>(&mut self, i: u32, backend: SocketAddr, sink: &mut S) {
        let now = self.now;
        let Some(f) = self.l4.flow(i).filter(|f| matches!(f.phase, Phase::Waiting { .. })) else {
            self.stats.binds_refused += 1;
            return;
        };
        let (info, client) = (f.info, f.client);
        let svc = usize::from(info.service);
        let Some(l4) = self.specs[svc].l4 else { return };
        let SocketAddr::V4(addr) = backend else {
            // Another family than the flow's: the NF's choice cannot be carried out.
            self.stats.binds_refused += 1;
            return self.l4_bind_failed(i, BIND_NOT_DONE, sink);
        };
        let proto = info.tuple.ip_proto;
        let from = match l4.source {
            None => Some(client),
            Some(source) => {
                let by_backend = &self.l4.by_backend;
                let taken = |port| by_backend.contains_key(&NatKey { proto, src: addr, dst: SocketAddrV4::new(source, port) });
                // The backend's answers carry the client's VLAN tags: the frame is rewritten in place.
                let port = self.ports.pick(proto, IpAddr::V4(source), SocketAddr::V4(addr), info.vlan.outer_id(), taken);
                port.map(|p| SocketAddrV4::new(source, p))
            }
        };
        // The backend side's key must name one flow: with no source port left, or the client
        // already reaching that backend from the same port through another service address,
        // the bind cannot be carried out.
        let reply_key = from.map(|from| NatKey { proto, src: addr, dst: from });
        let Some((from, reply_key)) = from.zip(reply_key).filter(|(_, k)| !self.l4.by_backend.contains_key(k)) else {
            self.stats.binds_refused += 1;
            return self.l4_bind_failed(i, BIND_NOT_DONE, sink);
        };
        self.stats.binds += 1;
        let port = info.port ^ 1;
        let mac_ours = self.service_mac(&self.specs[svc], port);
        self.l4.by_backend.insert(reply_key, i);
        let f = self.l4.flow_mut(i).expect("checked above");
        f.backend = Some(Backend { addr, from, mac: EthernetAddress([0; 6]), mac_ours, port });
        f.phase = Phase::Resolving { next_arp: now, give_up: now.saturating_add(l4.connect_timeout_ns) };
        if self.neighbors.mac(IpAddr::V4(*addr.ip())).is_some() {
            self.l4_send_waiting(i, sink);
        } else {
            self.l4_arp(i, sink);
        }
    }

    /// Asks for flow `i`'s backend's MAC, from source NAT's address or the service's.
    fn l4_arp<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let f = self.l4.flow_mut(i).expect("resolving flows live");
        let (Some(b), Phase::Resolving { give_up, .. }) = (f.backend, f.phase) else { return };
        f.phase = Phase::Resolving { next_arp: now.saturating_add(super::splice::ARP_RETRY_NS), give_up };
        let sender = if b.from == f.client { *f.service_addr.ip() } else { *b.from.ip() };
        self.request_mac(*b.addr.ip(), sender, b.mac_ours, b.port, sink);
        self.wheel.set(i, self.l4_deadline(i));
    }

    /// A neighbour's MAC is known: flows waiting for it send their first packet. False when
    /// event room ran out first (the caller comes back for the rest).
    pub(super) fn l4_resolved<S: ServeSink>(&mut self, ip: IpAddr, sink: &mut S) -> bool {
        let waiting: Vec<u32> = (0..self.l4.flows.len() as u32)
            .map(|k| k + self.l4.base)
            .filter(|&i| {
                let f = self.l4.flow(i);
                f.is_some_and(|f| matches!(f.phase, Phase::Resolving { .. }) && f.backend.is_some_and(|b| IpAddr::V4(*b.addr.ip()) == ip))
            })
            .collect();
        for i in waiting {
            if !sink.has_room(2, 0) {
                return false;
            }
            self.l4_send_waiting(i, sink);
        }
        true
    }

    /// Flow `i`'s backend MAC is known: its waiting packet goes, translated.
    fn l4_send_waiting<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let Some(l4) = self.l4.flow(i).and_then(|f| self.specs[usize::from(f.info.service)].l4) else { return };
        let Some(mac) = self.l4.flow(i).and_then(|f| f.backend).and_then(|b| self.neighbors.mac(IpAddr::V4(*b.addr.ip()))) else {
            return;
        };
        let f = self.l4.flow_mut(i).expect("checked above");
        let Some(mut b) = f.backend else { return };
        b.mac = mac;
        f.backend = Some(b);
        let opening = f.from_syn;
        f.phase = if opening { Phase::Opening { give_up: now.saturating_add(l4.connect_timeout_ns) } } else { Phase::Open };
        let mut frame = std::mem::take(&mut f.waiting);
        if let Ok(at) = nat::locate(&frame) {
            nat::rewrite(&mut frame, &at, b.from, b.addr);
            let _ = set_macs(&mut frame, b.mac_ours, b.mac);
            let sent = sink.originate(b.port, now, &mut |buf| buf.extend_from_slice(&frame));
            if sent {
                self.stats.l4_to_backend += 1;
            } else {
                self.stats.no_buffer += 1;
            }
            if at.proto == ip_proto::TCP {
                self.l4_track(i, &at, CLIENT_FIN, sink);
            }
        }
        frame.clear();
        let Some(f) = self.l4.flow_mut(i) else { return };
        f.waiting = frame;
        if !opening {
            self.stats.l4_bound += 1;
            let info = f.info;
            if info.tuple.ip_proto == ip_proto::TCP {
                sink.conn_event(ConnEventKind::Bound, &info, BIND_CONNECTED, now);
            }
        }
        self.wheel.set(i, self.l4_deadline(i));
    }

    /// Flow `i`'s bind failed (`reason`, a `BIND_*`): its NFs are told, the flow ends.
    fn l4_bind_failed<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        let Some(f) = self.l4.flow(i) else { return };
        let info = f.info;
        if info.tuple.ip_proto == ip_proto::TCP {
            sink.conn_event(ConnEventKind::Bound, &info, reason, self.now);
        }
        self.stats.aborted += 1;
        self.l4_end(i, REASON_TIMEOUT, sink);
    }

    /// When flow `i`'s timer is due.
    fn l4_deadline(&self, i: u32) -> Option<u64> {
        let f = self.l4.flow(i)?;
        let l4 = self.specs[usize::from(f.info.service)].l4?;
        Some(match f.phase {
            Phase::Waiting { until } => until,
            Phase::Resolving { next_arp, give_up } => next_arp.min(give_up),
            Phase::Opening { give_up } => give_up,
            Phase::Open if f.info.tuple.ip_proto == ip_proto::UDP => f.last_seen.saturating_add(l4.udp_idle_ns),
            Phase::Open => f.last_seen.saturating_add(l4.tcp_idle_ns),
            Phase::Closing { until, .. } => until,
        })
    }

    /// Flow `i`'s timer: a bind that did not come, a backend that did not answer, silence, the
    /// end of a linger. An open flow's silence is measured from its last packet (packets do not
    /// move the timer; a timer that finds a packet since comes back later).
    pub(super) fn l4_timer<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let Some(f) = self.l4.flow(i) else { return };
        match f.phase {
            Phase::Waiting { until } if now >= until => {
                self.stats.l4_bind_timeouts += 1;
                self.stats.aborted += 1;
                return self.l4_end(i, REASON_TIMEOUT, sink);
            }
            Phase::Resolving { give_up, .. } if now >= give_up => {
                self.stats.backends_unresolved += 1;
                return self.l4_bind_failed(i, BIND_UNRESOLVED, sink);
            }
            Phase::Resolving { next_arp, .. } if now >= next_arp => return self.l4_arp(i, sink),
            Phase::Opening { give_up } if now >= give_up => {
                self.stats.backends_timed_out += 1;
                return self.l4_bind_failed(i, BIND_TIMED_OUT, sink);
            }
            Phase::Closing { until, reset } if now >= until => {
                return self.l4_end(i, if reset { REASON_RST } else { REASON_FIN }, sink);
            }
            Phase::Open if self.l4_deadline(i).is_some_and(|d| now >= d) => {
                self.stats.l4_idle_timeouts += 1;
                self.stats.aborted += 1;
                return self.l4_end(i, REASON_TIMEOUT, sink);
            }
            _ => {}
        }
        self.wheel.set(i, self.l4_deadline(i));
    }

    /// Whether L4 flow `i` is still the one numbered `id`, in its linger after FINs both ways
    /// or a RST.
    pub(super) fn l4_lingers(&self, i: u32, id: u64) -> bool {
        self.l4.flow(i).is_some_and(|f| f.info.id == id && matches!(f.phase, Phase::Closing { .. }))
    }

    /// Ends lingering flow `i` before its time: its service is full, and a flow that is over
    /// must not keep a new client out (as the Endpoint recycles TIME-WAIT). Its NFs were told
    /// when it closed; the translation of a late retransmission of its last segments is lost.
    pub(super) fn l4_recycle<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let reset = self.l4.flow(i).is_some_and(|f| matches!(f.phase, Phase::Closing { reset: true, .. }));
        self.l4_end(i, if reset { REASON_RST } else { REASON_FIN }, sink);
    }

    /// Flow `i` is forgotten; its NFs get `TERMINATE` with `reason` unless they had it already
    /// (at the start of its linger).
    pub(super) fn l4_end<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        let now = self.now;
        let base = self.l4.base;
        let Some(f) = self.l4.flow_mut(i) else { return };
        f.live = false;
        let (info, told) = (f.info, matches!(f.phase, Phase::Closing { .. }));
        let client_key = NatKey { proto: info.tuple.ip_proto, src: f.client, dst: f.service_addr };
        let reply_key = f.backend.map(|b| NatKey { proto: info.tuple.ip_proto, src: b.addr, dst: b.from });
        f.waiting.clear();
        if !told {
            sink.conn_event(ConnEventKind::Terminate, &info, reason, now);
        }
        self.l4.by_client.remove(&client_key);
        if let Some(k) = reply_key {
            self.l4.by_backend.remove(&k);
        }
        self.l4.live -= 1;
        self.per_service[usize::from(info.service)] -= 1;
        self.credits.end(i);
        self.wheel.set(i, None);
        debug_assert!(i >= base);
        self.l4.free.push(i);
    }

    /// Runs `op` on every live flow, while event room lasts; false when it ran out first (the
    /// caller comes back later).
    fn l4_each<S: ServeSink>(&mut self, sink: &mut S, mut op: impl FnMut(&mut Served, u32, &mut S)) -> bool {
        for k in 0..self.l4.flows.len() as u32 {
            let i = k + self.l4.base;
            if self.l4.flow(i).is_none() {
                continue;
            }
            if !sink.has_room(2, 0) {
                return false;
            }
            op(self, i, sink);
        }
        true
    }

    /// The input is over: every flow ends where it is.
    pub(super) fn l4_drain<S: ServeSink>(&mut self, sink: &mut S) -> bool {
        self.l4_each(sink, |served, i, sink| served.l4_end(i, REASON_END_OF_INPUT, sink))
    }

    /// Binds that waited in the flows' credits (the lanes' rings were full).
    pub(super) fn l4_pending_binds<S: ServeSink>(&mut self, sink: &mut S) -> bool {
        self.l4_each(sink, |served, i, sink| {
            if let (_, Some(super::Pending::Bind(backend))) = served.credits.take_pending(i) {
                served.l4_bind(i, backend, sink);
            }
        })
    }

    /// The flow id of l4 connection index `i` (0: none there).
    pub(super) fn l4_id(&self, i: u32) -> u64 {
        self.l4.flow(i).map_or(0, |f| f.info.id)
    }

    /// Checks the flows' bookkeeping: both indices name live flows, the counts agree. For tests.
    pub(super) fn l4_check(&self) -> Result<(), String> {
        let live = self.l4.flows.iter().filter(|f| f.live).count();
        if live != self.l4.live || live != self.l4.by_client.len() {
            return Err(format!("l4: {live} live flows, {} counted, {} indexed", self.l4.live, self.l4.by_client.len()));
        }
        for &i in self.l4.by_client.values().chain(self.l4.by_backend.values()) {
            if self.l4.flow(i).is_none() {
                return Err(format!("l4: index {i} names no live flow"));
            }
        }
        for (svc, spec) in self.specs.iter().enumerate().filter(|(_, s)| s.l4.is_some()) {
            let n = self.l4.flows.iter().filter(|f| f.live && usize::from(f.info.service) == svc).count();
            if n != self.per_service[svc] || n > spec.max_connections {
                return Err(format!("l4 service {svc}: {n} live, {} counted, {} at most", self.per_service[svc], spec.max_connections));
            }
        }
        Ok(())
    }
}

/// The IPv4 destination of an Ethernet frame, if it is IPv4.
fn nat_dst(data: &[u8]) -> Option<Ipv4Addr> {
    let (eth, _, l3) = mbox_stack::wire::ethernet::VlanTags::parse_header(data).ok()?;
    if eth.ethertype != mbox_stack::wire::ethernet::ethertype::IPV4 || data.len() < l3 + 20 {
        return None;
    }
    Some(Ipv4Addr::new(data[l3 + 16], data[l3 + 17], data[l3 + 18], data[l3 + 19]))
}
