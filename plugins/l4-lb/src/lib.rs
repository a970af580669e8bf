//! l4-lb: an L4 (TCP and UDP) load balancer on mbox's L4 NAT (`[[service]] stack = "l4"`).
//! For each new flow of its service it looks a Maglev table up by a hash of the flow's tuple
//! (or of the client's address alone, `hash = "source"`) and answers
//! `Host::bind(flow, backend)`; mbox pins the flow to that backend for its life and translates
//! every packet of it, so the NF sees only the flow's start, its bind's outcome (TCP) and its
//! end, and a change of backends moves no established flow. TCP backends that fail to take a
//! flow (`FLOW/TCP/BOUND`: refused, silent, unresolved) `health.failures` times in a row are
//! out for `health.down_for`.
//!
//! Arguments: `backends` (`name`, `address` as "IP" — flows keep their port — or "IP:PORT",
//! `weight`), `hash` ("5-tuple" or "source"), `health` (`failures`, `down_for`).
//! Commands (`mboxctl nf NAME ...`): `backends`, `drain B`, `undrain B`, `add B ADDRESS
//! [WEIGHT]`, `remove B`; a reload keeps what they changed.
//!
//! Counters: per backend `backend_NAME_picked`, `_open`, `_failures`, `_up` (1 while it is up
//! or on trial; 0 while down, even when panic routing sends it new flows); `flows`, `bound`, `bind_failed`, `bind_not_done`, `no_backend` (no backend
//! took new flows: the flow's first packet times out in mbox), `bind_calls_refused`, `panic` (1
//! while every backend not drained is down: new flows go to them all anyway).

pub mod balancer;
#[cfg(test)]
mod tests;

use balancer::Balancer;
use mbox_abi::kit::{static_name, FlowMap};
use mbox_abi::{
    bind_failed, builtin, export_nf, BindStatus, Counters, EventHeader, FlowEvent, FlowRef, Host, NetworkFunction, NfInit, Plugin,
    PluginInfo, Verdict, BIND_CONNECTED, BIND_NOT_DONE,
};
use serde_json::{json, Value};

/// Counter names of one backend, made once.
struct Names {
    picked: &'static str,
    open: &'static str,
    failures: &'static str,
    up: &'static str,
}

impl Names {
    fn of(backend: &str) -> Names {
        let name = |what: &str| static_name(&format!("backend_{backend}_{what}"));
        Names { picked: name("picked"), open: name("open"), failures: name("failures"), up: name("up") }
    }
}

#[derive(Default)]
struct Stats {
    flows: u64,
    bound: u64,
    bind_failed: u64,
    bind_not_done: u64,
    no_backend: u64,
    bind_calls_refused: u64,
}

/// A flow this instance bound: its backend (an index, stable while the process runs).
#[derive(Debug, Clone, Copy)]
struct Bound {
    backend: usize,
}

pub struct L4Lb {
    balancer: Balancer,
    names: Vec<Names>,
    flows: FlowMap<Bound>,
    /// The backends the arguments named, to tell what commands changed (for a reload).
    from_args: Vec<String>,
    /// The latest event's time: commands have none of their own.
    now_ns: u64,
    stats: Stats,
}

impl L4Lb {
    pub fn new(args: &str, shards: usize, flow_slots: usize) -> Result<L4Lb, String> {
        let balancer = Balancer::from_json(args)?;
        let names = balancer.backends().iter().map(|b| Names::of(&b.name)).collect();
        let from_args = balancer.backends().iter().map(|b| b.name.clone()).collect();
        Ok(L4Lb { balancer, names, flows: FlowMap::new(shards, flow_slots), from_args, now_ns: 0, stats: Stats::default() })
    }

    /// A new flow: picked and bound.
    fn start(&mut self, flow: &FlowRef, ev: &FlowEvent, host: &mut Host<'_>) {
        self.stats.flows += 1;
        let Some((backend, to)) = self.balancer.pick(&ev.tuple, ev.header.ts_ns) else {
            self.stats.no_backend += 1;
            return;
        };
        if host.bind(flow, to) != BindStatus::Done {
            self.stats.bind_calls_refused += 1;
            self.balancer.closed(backend);
            return;
        }
        if !self.flows.insert(flow, Bound { backend }) {
            // Outside the flow map (not a flow of this host's shape): not counted open.
            self.balancer.closed(backend);
        }
    }

    /// A TCP flow's bind has its outcome: the backend's health.
    fn bound(&mut self, flow: &FlowRef, reason: u8, ts_ns: u64) {
        let Some(&Bound { backend }) = self.flows.get(flow) else { return };
        match reason {
            BIND_CONNECTED => {
                self.stats.bound += 1;
                self.balancer.outcome(backend, true, ts_ns);
            }
            BIND_NOT_DONE => self.stats.bind_not_done += 1,
            r if bind_failed(r) => {
                self.stats.bind_failed += 1;
                self.balancer.outcome(backend, false, ts_ns);
            }
            _ => {}
        }
    }

    fn ended(&mut self, flow: &FlowRef) {
        if let Some(Bound { backend }) = self.flows.remove(flow) {
            self.balancer.closed(backend);
        }
    }

    /// `backends`: one line per backend.
    fn backends_text(&self) -> String {
        let mut text = String::new();
        for (i, b) in self.balancer.backends().iter().enumerate() {
            let address = match b.port {
                Some(p) => std::net::SocketAddr::new(b.ip, p).to_string(),
                None => b.ip.to_string(),
            };
            text.push_str(&format!(
                "{:<16} {:<24} weight {:<4} {:<9} open {:<6} picked {:<10} failures {:<6} slots {}\n",
                b.name,
                address,
                b.weight,
                b.state(self.now_ns),
                b.open,
                b.picked,
                b.failures,
                self.balancer.slots_of(i)
            ));
        }
        text.trim_end().to_string()
    }

    /// Keeps the counter names in step with the backends (an `add` makes a new one).
    fn name_backends(&mut self) {
        for b in &self.balancer.backends()[self.names.len()..] {
            self.names.push(Names::of(&b.name));
        }
    }
}

impl Plugin for L4Lb {
    const INFO: PluginInfo = PluginInfo {
        name: "l4-lb",
        version: env!("CARGO_PKG_VERSION"),
        description: "L4 (TCP and UDP) load balancer on mbox's L4 NAT: Maglev consistent hashing, flows pinned to their backend, passive health, drain, backends added and removed live",
        subscribes: &["FLOW/TCP/NEW", "FLOW/UDP/NEW", "FLOW/TCP/BOUND", "FLOW/TCP/TERMINATE", "FLOW/UDP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        L4Lb::new(init.args_json.as_str(), init.shards as usize, init.flow_slots as usize)
    }
}

impl NetworkFunction for L4Lb {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        let flow = event.flow;
        let Some(ev) = event.view::<FlowEvent>().filter(|_| flow.is_some()) else { return Verdict::Pass };
        self.now_ns = self.now_ns.max(event.ts_ns);
        if event.is_a(builtin::FLOW_TCP_NEW) || event.is_a(builtin::FLOW_UDP_NEW) {
            self.start(&flow, ev, host);
        } else if event.is_a(builtin::FLOW_TCP_BOUND) {
            self.bound(&flow, ev.reason, event.ts_ns);
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) || event.is_a(builtin::FLOW_UDP_TERMINATE) {
            self.ended(&flow);
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        for (b, n) in self.balancer.backends().iter().zip(&self.names) {
            out.set(n.picked, b.picked);
            out.set(n.open, b.open);
            out.set(n.failures, b.failures);
            out.set(n.up, u64::from(b.state(self.now_ns) == "up" || b.state(self.now_ns) == "retrying"));
        }
        let s = &self.stats;
        out.set("flows", s.flows);
        out.set("bound", s.bound);
        out.set("bind_failed", s.bind_failed);
        out.set("bind_not_done", s.bind_not_done);
        out.set("no_backend", s.no_backend);
        out.set("bind_calls_refused", s.bind_calls_refused);
        out.set("panic", u64::from(self.balancer.panicking()));
    }

    /// `backends`, `drain B`, `undrain B`, `add B ADDRESS [WEIGHT]`, `remove B`.
    fn command(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let open = |lb: &L4Lb, name: &str| lb.balancer.backends().iter().find(|b| b.name == name).map_or(0, |b| b.open);
        match words.as_slice() {
            ["backends"] => Ok(self.backends_text()),
            [verb @ ("drain" | "undrain"), name] => {
                self.balancer.drain(name, *verb == "drain")?;
                Ok(match *verb {
                    "drain" => format!("{name} drained: no new flows ({} open ones go on)", open(self, name)),
                    _ => format!("{name} takes new flows again"),
                })
            }
            ["add", name, address, weight @ ..] if weight.len() <= 1 => {
                let weight = match weight.first() {
                    None => 1,
                    Some(w) => w.parse().map_err(|_| format!("weight {w:?} is not a number"))?,
                };
                self.balancer.add(name, address, weight)?;
                self.name_backends();
                Ok(format!("{name} added: it takes its share of new flows (open ones stay where they are)"))
            }
            ["remove", name] => {
                self.balancer.remove(name)?;
                Ok(format!("{name} removed: no new flows ({} open ones go on)", open(self, name)))
            }
            _ => Err(format!(
                "unknown command `{line}`: l4-lb takes `backends`, `drain B`, `undrain B`, `add B ADDRESS [WEIGHT]` and `remove B`"
            )),
        }
    }

    /// What commands changed (backends added, removed, drained) and every bound flow's
    /// backend by name, so that a reload keeps the backend set and counts what is open.
    fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        let backends = self.balancer.backends();
        let added: Vec<Value> = backends
            .iter()
            .filter(|b| !b.removed && !self.from_args.contains(&b.name))
            .map(|b| {
                let address = b.port.map_or(b.ip.to_string(), |p| std::net::SocketAddr::new(b.ip, p).to_string());
                json!([b.name, address, b.weight])
            })
            .collect();
        let removed: Vec<&str> = backends.iter().filter(|b| b.removed).map(|b| b.name.as_str()).collect();
        let drained: Vec<&str> = backends.iter().filter(|b| b.drained && !b.removed).map(|b| b.name.as_str()).collect();
        let bound: Vec<Value> =
            self.flows.iter().map(|((shard, slot, id), f)| json!([shard, slot, id, backends[f.backend].name])).collect();
        let state = json!({ "version": 1, "added": added, "removed": removed, "drained": drained, "bound": bound });
        Ok(Some(state.to_string().into_bytes()))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        let v: Value = serde_json::from_slice(state).map_err(|e| format!("saved state is not l4-lb's: {e}"))?;
        if v["version"] != 1 {
            return Err(format!("saved state of another version: {}", v["version"]));
        }
        for a in v["added"].as_array().into_iter().flatten() {
            if let (Some(name), Some(address), Some(weight)) = (a[0].as_str(), a[1].as_str(), a[2].as_u64()) {
                // One the new arguments list already stays as they say.
                let _ = self.balancer.add(name, address, weight as u32);
            }
        }
        for name in v["removed"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let _ = self.balancer.remove(name);
        }
        for name in v["drained"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let _ = self.balancer.drain(name, true);
        }
        self.name_backends();
        for entry in v["bound"].as_array().into_iter().flatten() {
            let (Some(shard), Some(slot), Some(id), Some(name)) =
                (entry[0].as_u64(), entry[1].as_u64(), entry[2].as_u64(), entry[3].as_str())
            else {
                continue;
            };
            let Some(backend) = self.balancer.opened(name) else { continue };
            let flow = FlowRef { id, slot: slot as u32, shard: shard as u16, dir: 0, _reserved: 0 };
            if !self.flows.insert(&flow, Bound { backend }) {
                self.balancer.closed(backend);
            }
        }
        Ok(())
    }
}

export_nf!(L4Lb);
