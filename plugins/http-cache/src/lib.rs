//! http-cache: an HTTP cache in front of the L7 load balancer, on the TCP Splicer — the
//! paper's "L7 LB + cache". It reads each connection's first request before the balancer
//! does: a request whose response it holds (fresh) is answered by mbox itself — the
//! connection becomes the Endpoint's, no backend is opened — and the balancer never sees it
//! (the cache drops that connection's events for the NFs after it); any other request goes
//! on to the balancer, which binds it, and when it was cacheable the cache reads the
//! backend's answer from the splice (`FLOW/TCP/BACKEND_DATA`) and stores it if HTTP lets a
//! shared cache (see `http`).
//!
//! Arguments: `max_bytes` (the store's bound, default 64 MiB; the least recently used goes
//! first), `max_object` (the largest response stored, default 8 MiB), `default_ttl` (how long
//! a 200 without max-age stays fresh, default "60s"), `hit_ratio` (percent of the requests
//! the store could answer that it does, default 100: the others go to a backend, for the
//! paper's 50% experiment), `max_head` (the longest request head read, default 16 KiB).
//!
//! Caveats: only the first request of a connection is looked at (the splicer keeps a
//! kept-alive connection on its backend; a hit is answered with `Connection: close`); a head
//! that came in more than one piece reached the balancer in part before the cache decided.

mod http;
mod store;

use http::{NotStorable, RequestKind};
use mbox_abi::kit::{Args, FlowMap, StreamBuffer};
use mbox_abi::{
    builtin, export_nf, Counters, EventHeader, FlowRef, Host, NetworkFunction, NfInit, Plugin, PluginInfo, StreamDataEvent, StreamStatus,
    Verdict, DIR_ORIG,
};
use mbox_proto::http::{BodyDecoder, BodyLength};
use std::sync::Arc;
use store::Store;

const MAX_TTL_NS: u64 = 365 * 24 * 3_600_000_000_000;

/// What the cache is doing with one connection.
enum Conn {
    /// Its request head is not whole yet.
    Reading(StreamBuffer),
    /// Answered from the store: `sent` bytes of `response` are out; then a close. Its events
    /// stop here.
    Answering { response: Arc<[u8]>, sent: usize },
    /// Gone to a backend; its answer is read to be stored under `key`.
    Filling(Fill),
    /// Gone to a backend, nothing more to do.
    Passed,
}

/// A backend's answer on its way into the store.
struct Fill {
    key: Vec<u8>,
    bytes: Vec<u8>,
    /// The head, once whole, and the body's decoder (chunked) or end (a length).
    head: Option<http::Storable>,
    body: Option<BodyDecoder>,
    end: Option<usize>,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    hits: u64,
    misses: u64,
    /// Misses the store could have answered, sent on for `hit_ratio`.
    skipped_for_ratio: u64,
    bypassed: u64,
    bad_requests: u64,
    stored: u64,
    not_storable: u64,
    /// Fills given up: the answer too large, a hole or a lost event in it, the connection
    /// gone before it was whole.
    fills_abandoned: u64,
    hit_bytes: u64,
}

pub struct HttpCache {
    conns: FlowMap<Conn>,
    store: Store,
    max_object: usize,
    default_ttl_ns: u64,
    hit_ratio: u64,
    max_head: usize,
    /// Requests the store could answer so far (what `hit_ratio` spreads its hits over).
    answerable: u64,
    stats: Stats,
}

impl HttpCache {
    fn new(args_json: &str, shards: usize, flow_slots: usize) -> Result<HttpCache, String> {
        let args = Args::parse(args_json, &["max_bytes", "max_object", "default_ttl", "hit_ratio", "max_head"])?;
        let hit_ratio = args.u64("hit_ratio", 100)?;
        if hit_ratio > 100 {
            return Err(format!("argument `hit_ratio` is a percentage (0 to 100), not {hit_ratio}"));
        }
        let max_bytes = usize::try_from(args.u64("max_bytes", 64 << 20)?).map_err(|e| e.to_string())?;
        let max_object = usize::try_from(args.u64("max_object", 8 << 20)?).map_err(|e| e.to_string())?.min(max_bytes);
        Ok(HttpCache {
            conns: FlowMap::new(shards, flow_slots),
            store: Store::new(max_bytes),
            max_object,
            default_ttl_ns: args.duration_ns("default_ttl", 60_000_000_000, MAX_TTL_NS)?,
            hit_ratio,
            max_head: usize::try_from(args.u64("max_head", 16 << 10)?).map_err(|e| e.to_string())?.max(64),
            answerable: 0,
            stats: Stats::default(),
        })
    }

    /// The client's bytes: the request head, once whole, decides. Returns the verdict for
    /// the NFs after the cache (the balancer): a hit's events stop here.
    fn request_data(&mut self, flow: &FlowRef, ev: &StreamDataEvent, host: &mut Host<'_>) -> Verdict {
        let max_head = self.max_head;
        let Some(conn) = self.conns.get_or_insert_with(flow, || Conn::Reading(StreamBuffer::new(max_head))) else { return Verdict::Pass };
        // Decided already (an answered connection's events stop in `on_event`).
        let Conn::Reading(buffer) = conn else { return Verdict::Pass };
        buffer.push(ev);
        let decided = match http::request(buffer.bytes(), max_head) {
            Ok(None) if buffer.dropped == 0 => return Verdict::Pass,
            Ok(Some(request)) => request.kind,
            // Not HTTP, too long, or its start lost: the balancer answers it.
            _ => {
                self.stats.bad_requests += 1;
                RequestKind::Bypass
            }
        };
        self.stats.requests += 1;
        let now = ev.tcp.flow.header.ts_ns;
        let (key, refresh) = match decided {
            RequestKind::Cacheable { key, refresh } => (key, refresh),
            RequestKind::Bypass => {
                self.stats.bypassed += 1;
                self.pass(flow, host);
                return Verdict::Pass;
            }
        };
        if !refresh {
            if let Some(response) = self.store.get(&key, now) {
                self.answerable += 1;
                // Bresenham over the answerable requests: exactly hit_ratio% of them, spread.
                let hit = (self.answerable * self.hit_ratio) / 100 != ((self.answerable - 1) * self.hit_ratio) / 100;
                if hit {
                    self.stats.hits += 1;
                    self.conns.insert(flow, Conn::Answering { response, sent: 0 });
                    self.send_more(flow, host);
                    return Verdict::Drop;
                }
                self.stats.skipped_for_ratio += 1;
                self.stats.misses += 1;
                self.pass(flow, host);
                return Verdict::Pass;
            }
        }
        self.stats.misses += 1;
        self.conns.insert(flow, Conn::Filling(Fill { key, bytes: Vec::new(), head: None, body: None, end: None }));
        Verdict::Pass
    }

    /// The connection goes to a backend and its answer is not wanted.
    fn pass(&mut self, flow: &FlowRef, host: &mut Host<'_>) {
        self.conns.insert(flow, Conn::Passed);
        host.unsubscribe(flow, builtin::FLOW_TCP_BACKEND_DATA);
    }

    /// Sends what of a hit's answer the connection takes; closes once all of it is out.
    fn send_more(&mut self, flow: &FlowRef, host: &mut Host<'_>) {
        let Some(Conn::Answering { response, sent }) = self.conns.get_mut(flow) else { return };
        while *sent < response.len() {
            let out = host.send(flow, &response[*sent..]);
            *sent += out.accepted;
            self.stats.hit_bytes += out.accepted as u64;
            if out.status != StreamStatus::Done || out.accepted == 0 {
                // The rest on SEND_ROOM (Partial), or never (the connection is gone).
                return;
            }
        }
        host.close(flow);
    }

    /// The backend's bytes of a connection being filled.
    fn backend_data(&mut self, flow: &FlowRef, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let Some(Conn::Filling(fill)) = self.conns.get_mut(flow) else { return };
        let bytes = ev.bytes();
        if ev.offset != fill.bytes.len() as u64 || fill.bytes.len() + bytes.len() > self.max_object {
            // A hole or a lost event, or larger than the store takes.
            self.stats.fills_abandoned += 1;
            self.pass(flow, host);
            return;
        }
        let from = fill.bytes.len();
        fill.bytes.extend_from_slice(bytes);
        if fill.head.is_none() {
            match http::response(&fill.bytes, self.default_ttl_ns) {
                Ok(head) => {
                    fill.end = match head.body {
                        BodyLength::None => Some(head.head_len),
                        BodyLength::Length(n) => usize::try_from(n).ok().and_then(|n| n.checked_add(head.head_len)),
                        _ => None,
                    };
                    if head.body == BodyLength::Chunked {
                        fill.body = Some(BodyDecoder::new(BodyLength::Chunked));
                    }
                    let from_body = head.head_len;
                    fill.head = Some(head);
                    if !Self::follow_body(fill, from_body) {
                        self.stats.not_storable += 1;
                        self.pass(flow, host);
                        return;
                    }
                }
                Err(NotStorable::Partial) => return,
                Err(_) => {
                    self.stats.not_storable += 1;
                    self.pass(flow, host);
                    return;
                }
            }
        } else if !Self::follow_body(fill, from) {
            self.stats.not_storable += 1;
            self.pass(flow, host);
            return;
        }
        let Some(end) = fill.end.filter(|&e| e <= fill.bytes.len()) else {
            if fill.end.is_some_and(|e| e > self.max_object) {
                self.stats.fills_abandoned += 1;
                self.pass(flow, host);
            }
            return;
        };
        // Whole: stored with the head a hit sends.
        let head = fill.head.take().expect("the head is parsed before the end is known");
        let mut response = Vec::with_capacity(head.client_head.len() + end - head.head_len);
        response.extend_from_slice(&head.client_head);
        response.extend_from_slice(&fill.bytes[head.head_len..end]);
        let key = std::mem::take(&mut fill.key);
        if self.store.insert(key, response.into(), ev.tcp.flow.header.ts_ns.saturating_add(head.fresh_for_ns)) {
            self.stats.stored += 1;
        } else {
            self.stats.not_storable += 1;
        }
        self.pass(flow, host);
    }

    /// Feeds a chunked body's decoder the bytes from `from` on; false when its framing is
    /// bad. A body with a length needs nothing (its end is known).
    fn follow_body(fill: &mut Fill, from: usize) -> bool {
        let Some(decoder) = fill.body.as_mut() else { return true };
        match decoder.feed(&fill.bytes[from..], &mut |_| {}) {
            Ok(used) if decoder.is_done() => {
                fill.end = Some(from + used);
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// The connection ended: a fill not whole by now is given up.
    fn terminated(&mut self, flow: &FlowRef) {
        if let Some(Conn::Filling(_)) = self.conns.remove(flow) {
            self.stats.fills_abandoned += 1;
        }
    }
}

impl NetworkFunction for HttpCache {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        let flow = event.flow;
        if !flow.is_some() {
            return Verdict::Pass;
        }
        if event.is_a(builtin::FLOW_TCP_TERMINATE) {
            self.terminated(&flow);
            return Verdict::Pass;
        }
        if matches!(self.conns.get(&flow), Some(Conn::Answering { .. })) {
            // An answered connection is the cache's: the balancer sees none of it but its end
            // (not even a kept-alive client's next request: it never saw the first).
            if event.is_a(builtin::FLOW_TCP_SEND_ROOM) {
                self.send_more(&flow, host);
            }
            return Verdict::Drop;
        }
        if let Some(ev) = event.view_as::<StreamDataEvent>(builtin::FLOW_TCP_BACKEND_DATA) {
            self.backend_data(&flow, ev, host);
        } else if let Some(ev) = event.view::<StreamDataEvent>() {
            if flow.dir == DIR_ORIG {
                return self.request_data(&flow, ev, host);
            }
        } else if event.is_a(builtin::FLOW_TCP_GAP) && flow.dir != DIR_ORIG && matches!(self.conns.get(&flow), Some(Conn::Filling(_))) {
            self.stats.fills_abandoned += 1;
            self.pass(&flow, host);
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        let s = &self.stats;
        out.set("requests", s.requests);
        out.set("hits", s.hits);
        out.set("misses", s.misses);
        out.set("skipped_for_ratio", s.skipped_for_ratio);
        out.set("bypassed", s.bypassed);
        out.set("bad_requests", s.bad_requests);
        out.set("stored", s.stored);
        out.set("not_storable", s.not_storable);
        out.set("fills_abandoned", s.fills_abandoned);
        out.set("evicted", self.store.evicted);
        out.set("hit_bytes", s.hit_bytes);
        out.set("objects", self.store.len() as u64);
        out.set("store_bytes", self.store.bytes() as u64);
    }
}

impl Plugin for HttpCache {
    const INFO: PluginInfo = PluginInfo {
        name: "http-cache",
        version: env!("CARGO_PKG_VERSION"),
        description: "HTTP cache before the L7 load balancer: hits answered by mbox's Endpoint, misses stored from the splice",
        subscribes: &[
            "FLOW/TCP/DATA_RDY",
            "FLOW/TCP/BACKEND_DATA",
            "FLOW/TCP/GAP",
            "FLOW/TCP/STREAM_END",
            "FLOW/TCP/SEND_ROOM",
            "FLOW/TCP/TERMINATE",
        ],
        publishes: &[],
        // It drops a hit's events so that the balancer after it never binds them.
        read_only: false,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        HttpCache::new(init.args_json.as_str(), init.shards as usize, init.flow_slots as usize)
    }
}

export_nf!(HttpCache);

#[cfg(test)]
mod tests;
