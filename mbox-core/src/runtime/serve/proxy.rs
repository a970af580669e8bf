//! The Split Proxy on a shard (`[[service]] stack = "proxy"`): two Endpoint connections per
//! flow. The client's is accepted as the Endpoint's; an NF's bind opens a second one, from the
//! service's source address to the backend it names (`Connection::connect`, after ARP).
//! Both are slots of the shard's table and share the client's flow: the client's bytes reach
//! the NFs as `DATA_RDY` of direction `DIR_ORIG`, the server's as `DIR_REPLY`, and an NF
//! writes a side with `Host::send` on the flow with that side's direction (`DIR_REPLY`: the
//! server). Nothing crosses on its own: what one side sends reaches the other only as the NFs
//! write it, transformed or not.
//!
//! Back-pressure: each side's receive window is capped at the other side's free send buffer
//! (`Connection::set_window_cap`), so a slow reader on one side closes the other side's
//! window instead of growing any buffer. A side's outcome is the NFs' to act on: the server
//! connection's handshake is told as `FLOW/TCP/BOUND` (connected, refused, timed out,
//! unresolved), its end as `FLOW/TCP/STREAM_END` of `DIR_REPLY`; once it is gone the flow may
//! be bound again (per-request routing on a kept-alive client). The flow ends with the
//! client's connection; a server side the NFs left open then is reset, one they closed
//! finishes its close on its own, unheard.

use super::splice::ARP_RETRY_NS;
use super::{ConnEventKind, ConnInfo, ConnKey, Events, Out, ServeSink, Served};
use crate::config::{ServiceConfig, ServiceStack};
use mbox_abi::{BIND_NOT_DONE, BIND_REFUSED, BIND_TIMED_OUT, BIND_UNRESOLVED, DIR_REPLY};
use mbox_stack::endpoint::{CloseReason, Connection, State};
use mbox_stack::wire::ethernet::{EthernetAddress, VlanTags};
use mbox_stack::wire::ip_proto;
use std::net::{IpAddr, SocketAddr};

/// A proxy service's settings (from its `[[service]]`).
#[derive(Debug, Clone, Copy)]
pub struct ProxySpec {
    /// The address backends see connections come from.
    pub source: IpAddr,
    /// How long the backend's MAC may take to learn (the handshake's own retries and give-up
    /// are the Endpoint's).
    pub connect_timeout_ns: u64,
}

impl ProxySpec {
    /// The settings of `cfg`, `None` unless it is a proxy (validated: it has a source).
    pub fn new(cfg: &ServiceConfig) -> Option<ProxySpec> {
        if cfg.stack != ServiceStack::Proxy {
            return None;
        }
        Some(ProxySpec { source: cfg.source?, connect_timeout_ns: u64::try_from(cfg.connect_timeout.as_nanos()).unwrap_or(u64::MAX) })
    }
}

/// What a proxy service's table slot is.
#[derive(Debug, Clone, Copy)]
pub(super) enum ProxySide {
    /// The client's connection: its server side's index once one is open, or the bind that
    /// waits for the backend's MAC.
    Client { server: Option<u32>, resolving: Option<Resolving> },
    /// A server side, and the client connection it serves (`None`: detached, its flow gone or
    /// bound elsewhere; its events are no longer told).
    Server { client: Option<u32> },
}

/// A bind waiting for the backend's MAC.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resolving {
    backend: SocketAddr,
    source: SocketAddr,
    /// mbox's MAC on the backends' port, and that port.
    mac_ours: EthernetAddress,
    port: u16,
    next_arp: u64,
    give_up: u64,
}

impl ProxySide {
    pub(super) const fn client() -> ProxySide {
        ProxySide::Client { server: None, resolving: None }
    }
}

impl Served {
    /// Whether `ip` is a proxy's source address.
    pub(super) fn is_proxy_source(&self, ip: IpAddr) -> bool {
        self.specs.iter().any(|s| s.proxy.is_some_and(|p| p.source == ip))
    }

    /// The other side of proxy slot `i`, if it is linked to one.
    pub(super) fn proxy_peer(&self, i: u32) -> Option<u32> {
        match self.slots[i as usize].proxy? {
            ProxySide::Client { server, .. } => server,
            ProxySide::Server { client } => client,
        }
    }

    /// The window cap slot `i` should have: none for a slot not a proxy's; where it has a
    /// peer, what the NFs may still write there (the promise of the peer's credit, which is
    /// its free send buffer as far as the memory budget allows), so that what `i` takes its
    /// NFs can pass on at once, and nothing while an NF waits for room there (it holds bytes
    /// it could not write); closed while its bind waits for the backend's MAC; otherwise
    /// uncapped (it reads as an Endpoint's connection).
    pub(super) fn proxy_window_cap(&self, i: u32) -> Option<u32> {
        let side = self.slots[i as usize].proxy?;
        if let ProxySide::Client { server: None, resolving: Some(_) } = side {
            return Some(0);
        }
        let Some(p) = self.proxy_peer(i) else { return Some(u32::MAX) };
        if self.credits.waits_for_room(p) {
            return Some(0);
        }
        let peer = &self.slots[p as usize];
        let free = peer.conn.as_ref().map_or(0, Connection::send_buffer_free);
        Some(free.min(peer.outstanding()).min(u32::MAX as usize) as u32)
    }

    /// How far slot `i`'s promise to its NFs may reach past what they wrote: a proxy side's
    /// whole send buffer (its peer's window is that promise), any other connection's a step.
    pub(super) fn promise_step(&self, i: u32) -> usize {
        let slot = &self.slots[i as usize];
        match (slot.proxy, slot.conn.as_ref()) {
            (Some(_), Some(conn)) => conn.send_buffer_free().max(super::PROMISE_STEP),
            _ => super::PROMISE_STEP,
        }
    }

    /// After an operation on slot `i`: its peer's window follows `i`'s send buffer. Operates
    /// on the peer only when the cap changes (which ends the recursion: the peer's operation
    /// leaves `i`'s cap as it was).
    pub(super) fn proxy_follow(&mut self, i: u32, sink: &mut impl ServeSink) {
        let Some(p) = self.proxy_peer(i) else { return };
        let cap = self.proxy_window_cap(p);
        let current = self.slots[p as usize].conn.as_ref().map(Connection::window_cap);
        if cap.is_some() && current.is_some() && cap != current {
            self.operate(p, sink, |_, _, _| {});
        }
    }

    /// An NF bound proxy connection `i` to `backend`: a server side is opened (once the
    /// backend's MAC is known). Refused (`FLOW/TCP/BOUND` with `BIND_NOT_DONE`) while a server
    /// side the NFs have not closed is open or a bind waits; one they closed is detached.
    pub(super) fn proxy_bind<S: ServeSink>(&mut self, i: u32, backend: SocketAddr, sink: &mut S) {
        let Some(ProxySide::Client { server, resolving }) = self.slots[i as usize].proxy else { return };
        // Numbered whatever becomes of it: the NF counts its binds alike.
        let side = &mut self.slots[i as usize].info.side;
        *side = side.checked_add(1).unwrap_or(1);
        let info = self.slots[i as usize].info;
        let svc = usize::from(info.service);
        let Some(spec) = self.specs[svc].proxy else { return };
        let open_server = server.and_then(|j| self.slots[j as usize].conn.as_ref()).is_some_and(Connection::can_write);
        let full = self.per_service[svc] >= self.specs[svc].max_connections;
        let source = spec.source;
        let index = &self.index;
        let taken =
            |port| index.contains_key(&ConnKey { remote: backend.ip(), remote_port: backend.port(), local: source, local_port: port });
        let port =
            if source.is_ipv4() == backend.is_ipv4() && !full { self.ports.pick(ip_proto::TCP, source, backend, 0, taken) } else { None };
        let (Some(port), false, None) = (port, open_server, resolving) else {
            self.stats.binds_refused += 1;
            return self.proxy_bind_failed(i, BIND_NOT_DONE, sink);
        };
        if let Some(j) = server {
            self.proxy_detach(i, j);
        }
        self.stats.binds += 1;
        let out_port = info.port ^ 1;
        let mac_ours = self.service_mac(&self.specs[svc], out_port);
        let now = self.now;
        let res = Resolving {
            backend,
            source: SocketAddr::new(source, port),
            mac_ours,
            port: out_port,
            next_arp: now,
            give_up: now.saturating_add(spec.connect_timeout_ns),
        };
        self.slots[i as usize].proxy = Some(ProxySide::Client { server: None, resolving: Some(res) });
        if self.neighbors.mac(backend.ip()).is_some() {
            self.open_server(i, sink);
        } else {
            self.proxy_arp(i, sink);
            // Its window closes until the server side can take bytes.
            self.operate(i, sink, |_, _, _| {});
        }
    }

    /// Tells connection `i`'s NFs its bind failed (`reason`, a `BIND_*`); it may bind again.
    fn proxy_bind_failed<S: ServeSink>(&mut self, i: u32, reason: u8, sink: &mut S) {
        let info = self.slots[i as usize].info;
        self.credits.set_peer(i, None);
        sink.conn_event(ConnEventKind::Bound, &info, reason, self.now);
    }

    /// Asks for the MAC of connection `i`'s waiting backend (IPv6: not yet, given up as
    /// unresolved at the deadline).
    fn proxy_arp<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let now = self.now;
        let Some(ProxySide::Client { resolving: Some(mut r), server }) = self.slots[i as usize].proxy else { return };
        r.next_arp = now.saturating_add(ARP_RETRY_NS);
        if let (IpAddr::V4(target), IpAddr::V4(sender)) = (r.backend.ip(), r.source.ip()) {
            self.request_mac(target, sender, r.mac_ours, r.port, sink);
        } else {
            r.next_arp = r.give_up;
        }
        self.slots[i as usize].proxy = Some(ProxySide::Client { server, resolving: Some(r) });
        let deadline = self.deadline_of(i);
        self.wheel.set(i, deadline);
    }

    /// When proxy connection `i`'s bind wants its timer (a retry of its ARP, or giving up).
    pub(super) fn proxy_deadline(&self, i: u32) -> Option<u64> {
        match self.slots[i as usize].proxy? {
            ProxySide::Client { resolving: Some(r), .. } => Some(r.next_arp.min(r.give_up)),
            _ => None,
        }
    }

    /// Connection `i`'s timer: its bind's ARP is asked again, or given up (`BIND_UNRESOLVED`).
    pub(super) fn proxy_timer<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let Some(ProxySide::Client { resolving: Some(r), server }) = self.slots[i as usize].proxy else { return };
        if self.now >= r.give_up {
            self.stats.backends_unresolved += 1;
            self.slots[i as usize].proxy = Some(ProxySide::Client { server, resolving: None });
            self.proxy_bind_failed(i, BIND_UNRESOLVED, sink);
        } else if self.now >= r.next_arp {
            self.proxy_arp(i, sink);
        }
    }

    /// Backends whose MAC is `ip`: their waiting binds open their server sides. False when
    /// event room ran out first (the caller comes back for the rest).
    pub(super) fn proxy_resolved<S: ServeSink>(&mut self, ip: IpAddr, sink: &mut S) -> bool {
        for i in 0..self.slots.len() as u32 {
            let waiting =
                matches!(self.slots[i as usize].proxy, Some(ProxySide::Client { resolving: Some(r), .. }) if r.backend.ip() == ip);
            if !waiting || self.slots[i as usize].conn.is_none() {
                continue;
            }
            if !sink.has_room(super::EVENTS_PER_OPERATION, 0) {
                return false;
            }
            self.open_server(i, sink);
        }
        true
    }

    /// Opens connection `i`'s server side: a slot of the table of its own, sharing `i`'s flow.
    fn open_server<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let client = self.slots[i as usize].info;
        let Some(ProxySide::Client { resolving: Some(r), .. }) = self.slots[i as usize].proxy else { return };
        let Some(mac) = self.neighbors.mac(r.backend.ip()) else { return };
        let key = ConnKey { remote: r.backend.ip(), remote_port: r.backend.port(), local: r.source.ip(), local_port: r.source.port() };
        let svc = usize::from(client.service);
        let info = ConnInfo {
            index: 0,
            local: r.source.ip(),
            remote: r.backend.ip(),
            local_port: r.source.port(),
            remote_port: r.backend.port(),
            local_mac: r.mac_ours,
            remote_mac: mac,
            vlan: VlanTags::default(),
            port: r.port,
            dir: DIR_REPLY,
            ..client
        };
        let j = self.take_slot(info, key);
        let info = ConnInfo { index: j, ..info };
        let s = &mut self.slots[j as usize];
        s.reset_for(info, key, false);
        s.proxy = Some(ProxySide::Server { client: Some(i) });
        self.index.insert(key, j);
        self.per_service[svc] += 1;
        self.stats.proxy_connects += 1;
        self.slots[i as usize].proxy = Some(ProxySide::Client { server: Some(j), resolving: None });
        let iss = self.isn.isn(&super::four_tuple(&key), self.now);
        let (cfg, now) = (self.specs[svc].endpoint, self.now);
        let mut out = Out::new(sink, &info, &mut self.stats, Events::default(), now);
        let conn = Connection::connect(&cfg, iss, now, &mut out);
        let events = out.events();
        self.slots[j as usize].conn = Some(conn);
        let base = self.credits.open(j, client.id);
        (self.slots[j as usize].credit_base, self.slots[j as usize].promised) = (base, base);
        self.credits.set_peer(i, Some(j));
        self.after(j, events, sink);
    }

    /// Unlinks server side `j` from client connection `i`: its events are no longer told, and
    /// `i` may be bound again.
    fn proxy_detach(&mut self, i: u32, j: u32) {
        let s = &mut self.slots[j as usize];
        s.proxy = Some(ProxySide::Server { client: None });
        s.announced = false;
        if let Some(ProxySide::Client { server: Some(k), resolving }) = self.slots[i as usize].proxy {
            if k == j {
                self.slots[i as usize].proxy = Some(ProxySide::Client { server: None, resolving });
                self.credits.set_peer(i, None);
            }
        }
    }

    /// Server side `j` closed (`reason`): a handshake that never completed is the bind's
    /// outcome, told as `BOUND`; its client may bind again; the slot is freed. False when `j`
    /// is not a server side (the caller ends it as a client connection).
    pub(super) fn proxy_server_closed<S: ServeSink>(&mut self, j: u32, reason: CloseReason, sink: &mut S) -> bool {
        let slot = &self.slots[j as usize];
        let Some(ProxySide::Server { client }) = slot.proxy else { return false };
        if let Some(i) = client {
            if !slot.announced {
                let why = match reason {
                    CloseReason::TimedOut => {
                        self.stats.backends_timed_out += 1;
                        BIND_TIMED_OUT
                    }
                    _ => {
                        self.stats.backends_refused += 1;
                        BIND_REFUSED
                    }
                };
                sink.conn_event(ConnEventKind::Bound, &slot.info, why, self.now);
            }
            self.proxy_detach(i, j);
        }
        if reason == CloseReason::Graceful {
            self.stats.proxy_server_closes += 1;
        } else {
            self.stats.proxy_server_aborts += 1;
        }
        self.release(j);
        if let Some(i) = client {
            // Its window no longer follows a server side.
            self.operate(i, sink, |_, _, _| {});
        }
        true
    }

    /// Client connection `i` is ending: a server side its NFs left open is reset, one they
    /// closed finishes on its own, unheard.
    pub(super) fn proxy_client_gone<S: ServeSink>(&mut self, i: u32, sink: &mut S) {
        let Some(ProxySide::Client { server: Some(j), .. }) = self.slots[i as usize].proxy else { return };
        self.proxy_detach(i, j);
        let Some(conn) = self.slots[j as usize].conn.as_ref() else { return };
        if conn.state() == State::TimeWait {
            self.stats.proxy_server_closes += 1;
            self.release(j);
        } else if conn.can_write() {
            self.operate(j, sink, |c, _, out| c.abort(out));
        }
    }

    /// [`Served::release`]'s part for a proxy slot: the other side forgets it.
    pub(super) fn proxy_forget(&mut self, i: u32) {
        match self.slots[i as usize].proxy {
            Some(ProxySide::Client { server: Some(j), .. }) => self.proxy_detach(i, j),
            Some(ProxySide::Server { client: Some(c) }) => self.proxy_detach(c, i),
            _ => {}
        }
        self.slots[i as usize].proxy = None;
    }
}

#[cfg(test)]
mod tests;
