//! l7-lb: an HTTP/1.x load balancer on the TCP Splicer. For each connection of its
//! `[[service]]` (`stack = "splicer"`) it reads the head of the client's first request, picks a
//! backend by ordered, HAProxy-like rules (Host, path prefix, a header) and a balancing method
//! per rule (smooth weighted round robin, least connections, or consistent hashing over a
//! Maglev table), and answers `Host::bind(flow, backend)`: mbox opens the backend connection
//! and splices the two, and the NF sees only the bind's outcome (`FLOW/TCP/BOUND`) and the end.
//! What no rule routes, or no backend can take, gets a 503; what is not an HTTP request (or a
//! head longer than `max_head`) a 400; both written by the NF on mbox's own connection, before
//! any backend is opened. Backends that fail to connect `health.failures` times in a row are
//! skipped for `health.down_for`; operators drain them (`mboxctl nf NAME drain BACKEND`).
//!
//! The decisions live in [`policy`] (arguments, rules, balancing, health) and [`request`]
//! (parsing the request head); this module is the NF glue: per-connection state by flow, the
//! events, the counters, the commands and the state a reload hands over.
//!
//! Counters: per backend `backend_NAME_picked`, `_open`, `_failures`, `_up` (1 while it takes
//! new connections: up or on trial, not drained), `_drained`; and `connections`, `bound`,
//! `bind_failed` (the backend could not be had), `bind_not_done` (mbox could not carry a bind
//! out), `refused_no_rule`, `refused_no_backend`, `bad_requests`, `client_gone` (the client left
//! before its head was complete), `bind_calls_refused` (the host answered the call with
//! anything but `Done`), `heads_lost` (a head whose start never reached this instance: a 503),
//! `panic_picks` (connections sent to a down backend because every backend of their rule that
//! is not drained was down: Envoy's panic routing, rather than a 503 for each).
//!
//! On a splicer a kept-alive connection stays on the backend its first request picked (the
//! splicer never reads the bytes after the bind). With `mode = "proxy"`, on a split proxy,
//! every request is routed on its own by an `mbox_http::Proxy` asking the same policy.

pub mod policy;
/// Request heads are parsed by mbox-http (shared with the exchanges of full proxy mode).
pub use mbox_http::request;
#[cfg(test)]
mod tests;

use mbox_abi::kit::{static_name, FlowMap};
use mbox_abi::{
    bind_failed, builtin, export_nf, BindStatus, Counters, EventHeader, FlowRef, FlowTcpEvent, Host, NetworkFunction, NfInit, Plugin,
    PluginInfo, StreamDataEvent, Verdict, BIND_NOT_DONE, DIR_ORIG,
};
use mbox_http::{Proxy, Refused, Route, Target};
use policy::{BackendState, Policy, Refuse};
use request::{parse_request, Header, EMPTY_HEADER};
use serde_json::{json, Value};

/// Headers a request head may have (more: a 400).
const MAX_HEADERS: usize = 64;
use mbox_http::exchange::{BAD_REQUEST, UNAVAILABLE};
/// The default `max_head`: the splicer's default `hold_bytes`.
const DEFAULT_MAX_HEAD: usize = 16 << 10;

/// Where one client connection is.
#[derive(Debug)]
enum Conn {
    /// Its head has not all come: the bytes so far (empty while each event held a whole head).
    Reading(Vec<u8>),
    /// Bound to a backend (index into the policy's); `counted` while the policy counts it open.
    Bound { backend: usize, counted: bool },
    /// Answered by the NF (400 or 503): nothing more to do.
    Refused,
}

/// Counter names of one backend, made once.
struct BackendNames {
    picked: &'static str,
    open: &'static str,
    failures: &'static str,
    up: &'static str,
    drained: &'static str,
}

#[derive(Default)]
struct Stats {
    connections: u64,
    bound: u64,
    bind_failed: u64,
    bind_not_done: u64,
    refused_no_rule: u64,
    refused_no_backend: u64,
    bad_requests: u64,
    client_gone: u64,
    bind_calls_refused: u64,
    heads_lost: u64,
}

pub struct L7Lb {
    policy: Policy,
    names: Vec<BackendNames>,
    conns: FlowMap<Conn>,
    max_head: usize,
    /// Full proxy mode (`mode = "proxy"`): every request routed on its own, by these exchanges.
    proxy: Option<Proxy>,
    stats: Stats,
}

impl L7Lb {
    /// The balancer `args` (a JSON object: policy::Policy's keys, and `max_head`) describe.
    pub fn new(args: &str, shards: usize, flow_slots: usize) -> Result<L7Lb, String> {
        let mut value: Value = serde_json::from_str(args).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
        let max_head = match value.as_object_mut().and_then(|o| o.remove("max_head")) {
            None => DEFAULT_MAX_HEAD,
            Some(v) => match v.as_u64() {
                Some(n @ 256..=1_048_576) => n as usize,
                _ => return Err(format!("argument `max_head` must be a byte count from 256 to 1048576, not {v}")),
            },
        };
        let proxy = match value.as_object_mut().and_then(|o| o.remove("mode")) {
            None => None,
            Some(v) => match v.as_str() {
                Some("splice") => None,
                Some("proxy") => Some(Proxy::new(shards, flow_slots, max_head, None)),
                _ => return Err(format!("argument `mode` must be \"splice\" (a splicer service) or \"proxy\" (a proxy service), not {v}")),
            },
        };
        let policy = Policy::from_args(&value).map_err(|e| e.to_string())?;
        let names = policy
            .backends()
            .map(|b| {
                let name = |what: &str| static_name(&format!("backend_{}_{what}", b.name));
                BackendNames {
                    picked: name("picked"),
                    open: name("open"),
                    failures: name("failures"),
                    up: name("up"),
                    drained: name("drained"),
                }
            })
            .collect();
        Ok(L7Lb { policy, names, conns: FlowMap::new(shards, flow_slots), max_head, proxy, stats: Stats::default() })
    }

    /// Client bytes of connection `flow`: once its head is whole, a backend is picked and
    /// bound (or the client answered).
    fn data(&mut self, flow: &FlowRef, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let bytes = ev.bytes();
        let Some(conn) = self.conns.get_or_insert_with(flow, || Conn::Reading(Vec::new())) else { return };
        let Conn::Reading(kept) = conn else { return };
        if ev.offset != kept.len() as u64 {
            // The head's start is not here (an event lost, or the bytes went to an instance
            // before a reload): what is, is no request's start. The client may try again.
            self.stats.heads_lost += 1;
            let refused = self.refuse(flow, UNAVAILABLE, host);
            self.conns.insert(flow, refused);
            return;
        }
        // Most heads come whole in the first event: parsed where they lie, nothing copied.
        let mut taken = std::mem::take(kept);
        let buf: &[u8] = if taken.is_empty() && ev.offset == 0 {
            bytes
        } else {
            taken.extend_from_slice(bytes);
            &taken
        };
        let mut headers: [Header<'_>; MAX_HEADERS] = [EMPTY_HEADER; MAX_HEADERS];
        let client = ev.tcp.flow.tuple.addr(0);
        let next = match parse_request(buf, self.max_head, &mut headers) {
            Ok(None) => {
                let mut kept = taken;
                if kept.is_empty() {
                    kept.extend_from_slice(bytes);
                }
                Conn::Reading(kept)
            }
            Ok(Some(request)) => match self.policy.pick(&request, client, ev.tcp.flow.header.ts_ns) {
                Ok(pick) => match host.bind(flow, pick.address) {
                    BindStatus::Done => Conn::Bound { backend: pick.backend, counted: true },
                    _ => {
                        self.stats.bind_calls_refused += 1;
                        self.policy.closed(pick.backend);
                        self.refuse(flow, UNAVAILABLE, host)
                    }
                },
                Err(why) => {
                    self.count_refusal(why);
                    self.refuse(flow, if why == Refuse::BadRequest { BAD_REQUEST } else { UNAVAILABLE }, host)
                }
            },
            Err(_) => {
                self.stats.bad_requests += 1;
                self.refuse(flow, BAD_REQUEST, host)
            }
        };
        self.conns.insert(flow, next);
    }

    /// The per-backend counters.
    fn backend_counters(&self, out: &mut Counters<'_>) {
        for (b, n) in self.policy.backends().zip(&self.names) {
            out.set(n.picked, b.picked);
            out.set(n.open, b.open);
            out.set(n.failures, b.failures);
            out.set(n.up, u64::from(matches!(b.state, BackendState::Up | BackendState::Retrying)));
            out.set(n.drained, u64::from(b.state == BackendState::Drained));
        }
    }

    /// Counts why a request was refused.
    fn count_refusal(&mut self, why: Refuse) {
        match why {
            Refuse::NoRule => self.stats.refused_no_rule += 1,
            Refuse::NoBackend => self.stats.refused_no_backend += 1,
            Refuse::BadRequest => self.stats.bad_requests += 1,
        }
    }

    /// Answers the client itself (a 400 or 503 on mbox's connection) and closes.
    fn refuse(&mut self, flow: &FlowRef, answer: &[u8], host: &mut Host<'_>) -> Conn {
        // The send buffer takes a short answer whole; one that has ended takes nothing, and
        // nothing is lost: the client is gone.
        host.send(flow, answer);
        host.close(flow);
        Conn::Refused
    }

    /// The bind's outcome (`FLOW/TCP/BOUND`): the backend's health.
    fn bound(&mut self, flow: &FlowRef, ev: &FlowTcpEvent) {
        let Some(Conn::Bound { backend, counted }) = self.conns.get_mut(flow) else { return };
        let (backend, reason) = (*backend, ev.flow.reason);
        if !bind_failed(reason) && reason != BIND_NOT_DONE {
            self.stats.bound += 1;
            self.policy.outcome(backend, true, ev.flow.header.ts_ns);
            return;
        }
        // mbox refuses the client (its `refuse`): the connection no longer counts as open.
        if std::mem::replace(counted, false) {
            self.policy.closed(backend);
        }
        if reason == BIND_NOT_DONE {
            self.stats.bind_not_done += 1;
        } else {
            self.stats.bind_failed += 1;
            self.policy.outcome(backend, false, ev.flow.header.ts_ns);
        }
    }

    /// The client's stream ended: one whose head never completed is closed (it gets nothing).
    fn stream_end(&mut self, flow: &FlowRef, host: &mut Host<'_>) {
        if let Some(conn @ Conn::Reading(_)) = self.conns.get_mut(flow) {
            self.stats.client_gone += 1;
            *conn = Conn::Refused;
            host.close(flow);
        }
    }

    fn terminated(&mut self, flow: &FlowRef) {
        if let Some(Conn::Bound { backend, counted: true }) = self.conns.remove(flow) {
            self.policy.closed(backend);
        }
    }

    /// `backends`: one line per backend.
    fn backends_text(&self) -> String {
        let mut text = String::new();
        for b in self.policy.backends() {
            text.push_str(&format!(
                "{:<16} {:<24} weight {:<4} {:<9} open {:<6} picked {:<10} failures {}\n",
                b.name,
                b.address.to_string(),
                b.weight,
                b.state.name(),
                b.open,
                b.picked,
                b.failures
            ));
        }
        text.trim_end().to_string()
    }
}

impl Plugin for L7Lb {
    const INFO: PluginInfo = PluginInfo {
        name: "l7-lb",
        version: env!("CARGO_PKG_VERSION"),
        description: "HTTP load balancer on the TCP Splicer: rules by Host, path and header; round robin, least connections or consistent hash; passive health; drain",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/STREAM_END", "FLOW/TCP/BOUND", "FLOW/TCP/SEND_ROOM", "FLOW/TCP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        L7Lb::new(init.args_json.as_str(), init.shards as usize, init.flow_slots as usize)
    }
}

impl NetworkFunction for L7Lb {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        let flow = event.flow;
        if !flow.is_some() {
            return Verdict::Pass;
        }
        if let Some(proxy) = self.proxy.as_mut() {
            let mut route = PolicyRoute { policy: &mut self.policy, stats: &mut self.stats };
            return proxy.on_event(event, host, &mut route);
        }
        if let Some(ev) = event.view::<StreamDataEvent>() {
            // Only the client's bytes are requests (the other direction is mbox's own 400/503).
            if flow.dir == DIR_ORIG {
                if self.conns.get(&flow).is_none() {
                    self.stats.connections += 1;
                }
                self.data(&flow, ev, host);
            }
        } else if event.is_a(builtin::FLOW_TCP_STREAM_END) {
            if flow.dir == DIR_ORIG {
                self.stream_end(&flow, host);
            }
        } else if event.is_a(builtin::FLOW_TCP_BOUND) {
            if let Some(ev) = event.view::<FlowTcpEvent>() {
                self.bound(&flow, ev);
            }
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) {
            self.terminated(&flow);
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        if let Some(proxy) = &self.proxy {
            // The exchanges count the connections, binds and requests; the policy its own.
            self.backend_counters(out);
            proxy.counters(out);
            out.set("refused_no_rule", self.stats.refused_no_rule);
            out.set("refused_no_backend", self.stats.refused_no_backend);
            out.set("panic_picks", self.policy.panic_picks());
            return;
        }
        self.backend_counters(out);
        let s = &self.stats;
        out.set("connections", s.connections);
        out.set("bound", s.bound);
        out.set("bind_failed", s.bind_failed);
        out.set("bind_not_done", s.bind_not_done);
        out.set("refused_no_rule", s.refused_no_rule);
        out.set("refused_no_backend", s.refused_no_backend);
        out.set("bad_requests", s.bad_requests);
        out.set("client_gone", s.client_gone);
        out.set("bind_calls_refused", s.bind_calls_refused);
        out.set("heads_lost", s.heads_lost);
        out.set("panic_picks", self.policy.panic_picks());
    }

    /// `backends`, `drain NAME`, `undrain NAME`.
    fn command(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["backends"] => Ok(self.backends_text()),
            [verb @ ("drain" | "undrain"), name] => {
                let drained = *verb == "drain";
                self.policy.drain(name, drained).map_err(|e| e.to_string())?;
                let open = self.policy.backends().find(|b| b.name == *name).map_or(0, |b| b.open);
                Ok(match drained {
                    true => format!("{name} drained: no new connections ({open} open ones go on)"),
                    false => format!("{name} takes new connections again"),
                })
            }
            _ => Err(format!("unknown command `{line}`: l7-lb takes `backends`, `drain BACKEND` and `undrain BACKEND`")),
        }
    }

    /// The drained backends and every bound connection's backend, by name, so that a reload
    /// keeps draining and counting what is open.
    fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        let drained: Vec<&str> = self.policy.backends().filter(|b| b.state == BackendState::Drained).map(|b| b.name).collect();
        let names: Vec<&str> = self.policy.backends().map(|b| b.name).collect();
        let bound: Vec<Value> = self
            .conns
            .iter()
            .filter_map(|((shard, slot, id), c)| match c {
                Conn::Bound { backend, counted } => Some(json!([shard, slot, id, names[*backend], counted])),
                _ => None,
            })
            .collect();
        // Heads still coming: their bytes so far, so that the new instance reads on from them.
        let reading: Vec<Value> = self
            .conns
            .iter()
            .filter_map(|((shard, slot, id), c)| match c {
                Conn::Reading(kept) => Some(json!([shard, slot, id, kept])),
                _ => None,
            })
            .collect();
        Ok(Some(json!({ "version": 1, "drained": drained, "bound": bound, "reading": reading }).to_string().into_bytes()))
    }

    /// Takes over what [`save_state`](Self::save_state) wrote; backends the new arguments no
    /// longer have are left out (their connections go on, uncounted).
    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        let v: Value = serde_json::from_slice(state).map_err(|e| format!("saved state is not l7-lb's: {e}"))?;
        if v["version"] != 1 {
            return Err(format!("saved state of another version: {}", v["version"]));
        }
        for name in v["drained"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let _ = self.policy.drain(name, true);
        }
        let index: Vec<String> = self.policy.backends().map(|b| b.name.to_string()).collect();
        for entry in v["bound"].as_array().into_iter().flatten() {
            let (Some(shard), Some(slot), Some(id), Some(name), counted) =
                (entry[0].as_u64(), entry[1].as_u64(), entry[2].as_u64(), entry[3].as_str(), entry[4].as_bool() == Some(true))
            else {
                continue;
            };
            let Some(backend) = index.iter().position(|n| n == name) else { continue };
            let flow = FlowRef { id, slot: slot as u32, shard: shard as u16, dir: 0, _reserved: 0 };
            if self.conns.insert(&flow, Conn::Bound { backend, counted }) && counted {
                self.policy.opened(backend);
            }
        }
        for entry in v["reading"].as_array().into_iter().flatten() {
            let (Some(shard), Some(slot), Some(id), Some(bytes)) =
                (entry[0].as_u64(), entry[1].as_u64(), entry[2].as_u64(), entry[3].as_array())
            else {
                continue;
            };
            let kept: Vec<u8> = bytes.iter().filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect();
            let flow = FlowRef { id, slot: slot as u32, shard: shard as u16, dir: 0, _reserved: 0 };
            self.conns.insert(&flow, Conn::Reading(kept));
        }
        Ok(())
    }
}

/// The policy as the exchanges of full proxy mode ask it (`mbox_http::Route`).
struct PolicyRoute<'a> {
    policy: &'a mut Policy,
    stats: &'a mut Stats,
}

impl Route for PolicyRoute<'_> {
    fn route(&mut self, request: &request::Request<'_>, client: std::net::IpAddr, now_ns: u64) -> Result<Target, Refused> {
        match self.policy.pick(request, client, now_ns) {
            Ok(pick) => Ok(Target { backend: pick.backend, address: pick.address }),
            Err(Refuse::BadRequest) => Err(Refused::BadRequest),
            Err(why) => {
                if why == Refuse::NoRule {
                    self.stats.refused_no_rule += 1;
                } else {
                    self.stats.refused_no_backend += 1;
                }
                Err(Refused::Unavailable)
            }
        }
    }

    fn outcome(&mut self, backend: usize, connected: bool, now_ns: u64) {
        self.policy.outcome(backend, connected, now_ns);
    }

    fn closed(&mut self, backend: usize) {
        self.policy.closed(backend);
    }
}

export_nf!(L7Lb);
