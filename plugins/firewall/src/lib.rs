//! firewall: a stateful packet filter on the L2/3 µStack's packets — ordered rules over
//! protocols, CIDRs (IPv4 and IPv6), port ranges and the port a packet arrived on; the first rule
//! that matches decides, else the default policy. With `established` (the default) it decides
//! once per flow, on the flow's first packet, and remembers the decision in the flow's slot:
//! every later packet of an allowed flow passes, in both directions, and every later packet of a
//! denied flow is dropped, without the rules being read again; the flow's `TERMINATE` (or a new
//! flow id in the slot) forgets it. Packets that are not IP (ARP, ...) pass. It may drop, so the
//! service graph runs it in order: NFs listed after it see only what it passes.
//!
//! Arguments: `rules` (a rule file) and/or `rule` (a list of rules, or one; evaluated before the
//! file's), `default` (`"allow"` or `"deny"`; default `"deny"`), `established` (default true).
//! The rule syntax is in [`rules`] and docs/config.md.
//!
//! Counters: `rule_N_allow` / `rule_N_deny` for rule N (1-based, in evaluation order), packets
//! the rule decided (with `established`: one per flow); `default_allow` or `default_deny`, those
//! no rule matched; `established_passed` and `denied_flow_dropped`, later packets of flows
//! already decided; `non_ip_passed`.
//!
//! On a reload (`mboxctl reload firewall`, which reads the rules again) the allowed flows are
//! handed over and keep passing; denied flows are forgotten, so the new rules decide them at
//! their next packet.

pub mod rules;
#[cfg(test)]
mod tests;

use mbox_abi::kit::{static_name, Args, FlowMap};
use mbox_abi::{
    builtin, export_nf, Counters, EventHeader, FlowEvent, FlowRef, Host, NetworkFunction, NfInit, PktEvent, Plugin, PluginInfo, Verdict,
};
use rules::{Action, Addr, Packet, Rule};
use std::net::IpAddr;

pub struct Firewall {
    rules: Vec<Rule>,
    /// Counter names, one per rule (`rule_N_ACTION`).
    names: Vec<&'static str>,
    hits: Vec<u64>,
    default: Action,
    default_hits: u64,
    established: bool,
    established_passed: u64,
    denied_flow_dropped: u64,
    non_ip_passed: u64,
    /// Per flow: whether its first packet was allowed.
    flows: FlowMap<bool>,
}

impl Firewall {
    /// A firewall over `rules` (already in evaluation order).
    pub fn new(rules: Vec<Rule>, default: Action, established: bool, shards: usize, flow_slots: usize) -> Firewall {
        let names = rules.iter().enumerate().map(|(i, r)| static_name(&format!("rule_{}_{}", i + 1, r.action.name()))).collect();
        Firewall {
            hits: vec![0; rules.len()],
            rules,
            names,
            default,
            default_hits: 0,
            established,
            established_passed: 0,
            denied_flow_dropped: 0,
            non_ip_passed: 0,
            flows: FlowMap::new(shards, flow_slots),
        }
    }

    /// Evaluates the rules for `pkt`, counting the rule (or the default) that decided.
    fn decide(&mut self, pkt: &PktEvent) -> Action {
        let ported = matches!(pkt.ip_proto, 6 | 17);
        let p = Packet {
            proto: pkt.ip_proto,
            src: addr(pkt.src_addr()),
            dst: addr(pkt.dst_addr()),
            src_port: if ported { pkt.src_port } else { 0 },
            dst_port: if ported { pkt.dst_port } else { 0 },
            on: pkt.port,
        };
        match rules::first_match(&self.rules, &p) {
            Some(i) => {
                self.hits[i] += 1;
                self.rules[i].action
            }
            None => {
                self.default_hits += 1;
                self.default
            }
        }
    }

    fn packet(&mut self, pkt: &PktEvent) -> Verdict {
        if pkt.ip_version == 0 {
            self.non_ip_passed += 1;
            return Verdict::Pass;
        }
        let flow = &pkt.header.flow;
        if let Some(&allowed) = self.flows.get(flow).filter(|_| self.established) {
            return if allowed {
                self.established_passed += 1;
                Verdict::Pass
            } else {
                self.denied_flow_dropped += 1;
                Verdict::Drop
            };
        }
        let action = self.decide(pkt);
        if self.established {
            self.flows.insert(flow, action == Action::Allow);
        }
        match action {
            Action::Allow => Verdict::Pass,
            Action::Deny => Verdict::Drop,
        }
    }

    fn flow_ended(&mut self, flow: &FlowEvent) {
        self.flows.remove(&flow.header.flow);
    }
}

fn addr(a: Option<IpAddr>) -> Addr {
    match a {
        Some(IpAddr::V4(a)) => Addr::V4(u32::from(a)),
        Some(IpAddr::V6(a)) => Addr::V6(u128::from(a)),
        None => Addr::Unknown,
    }
}

fn is_termination(h: &EventHeader) -> bool {
    h.is_a(builtin::FLOW_TCP_TERMINATE) || h.is_a(builtin::FLOW_UDP_TERMINATE) || h.is_a(builtin::FLOW_IP_TERMINATE)
}

impl NetworkFunction for Firewall {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        if let Some(pkt) = event.view::<PktEvent>() {
            return self.packet(pkt);
        }
        if is_termination(event) {
            if let Some(flow) = event.view::<FlowEvent>() {
                self.flow_ended(flow);
            }
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        for (name, hits) in self.names.iter().zip(&self.hits) {
            out.set(name, *hits);
        }
        out.set(if self.default == Action::Allow { "default_allow" } else { "default_deny" }, self.default_hits);
        out.set("established_passed", self.established_passed);
        out.set("denied_flow_dropped", self.denied_flow_dropped);
        out.set("non_ip_passed", self.non_ip_passed);
    }

    /// The allowed flows, so that a reload keeps established connections passing.
    fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(state::save(&self.flows)))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let allowed = state::restore(bytes, self.flows.shards(), self.flows.flow_slots())?;
        if !self.established {
            return Ok(()); // nothing is remembered: every packet meets the rules
        }
        for (shard, slot, id) in allowed {
            self.flows.insert(&FlowRef { id, slot: slot as u32, shard: shard as u16, dir: 0, _reserved: 0 }, true);
        }
        Ok(())
    }
}

mod state {
    //! Allowed flows as bytes, for a reload: a version byte, the shard count (u32), then per flow
    //! its shard (u16), slot (u32) and id (u64), little-endian.

    use mbox_abi::kit::FlowMap;

    const VERSION: u8 = 1;
    const FLOW_BYTES: usize = 2 + 4 + 8;

    pub fn save(flows: &FlowMap<bool>) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&(flows.shards() as u32).to_le_bytes());
        for ((shard, slot, id), _) in flows.iter().filter(|(_, &allowed)| allowed) {
            out.extend_from_slice(&shard.to_le_bytes());
            out.extend_from_slice(&slot.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// The (shard, slot, id) of every allowed flow; state that does not fit this run is refused.
    pub fn restore(bytes: &[u8], shards: usize, flow_slots: usize) -> Result<Vec<(usize, usize, u64)>, String> {
        let (&version, rest) = bytes.split_first().ok_or("empty state")?;
        if version != VERSION {
            return Err(format!("state version {version}, this build reads {VERSION}"));
        }
        let (n, rest) = rest.split_first_chunk::<4>().ok_or("state cut short")?;
        let n = u32::from_le_bytes(*n) as usize;
        if n != shards {
            return Err(format!("state of {n} shards, this run has {shards}"));
        }
        if rest.len() % FLOW_BYTES != 0 {
            return Err("state cut short".into());
        }
        let mut flows = Vec::with_capacity(rest.len() / FLOW_BYTES);
        for flow in rest.chunks_exact(FLOW_BYTES) {
            let shard = usize::from(u16::from_le_bytes([flow[0], flow[1]]));
            let slot = u32::from_le_bytes(flow[2..6].try_into().unwrap()) as usize;
            let id = u64::from_le_bytes(flow[6..14].try_into().unwrap());
            if shard >= shards {
                return Err(format!("a flow of shard {shard}, this run has {shards}"));
            }
            if slot >= flow_slots {
                return Err(format!("a flow in slot {slot}, this run has {flow_slots} per shard"));
            }
            if id == 0 {
                return Err("a flow with id 0".into());
            }
            flows.push((shard, slot, id));
        }
        Ok(flows)
    }
}

/// The `rule` argument: a list of strings, or one string. `Args` has no accessor for a list of
/// strings, so the JSON is read again here (`Args::parse` has already refused unknown keys).
fn inline_rules(args_json: &str) -> Result<Option<Vec<String>>, String> {
    let value: serde_json::Value = serde_json::from_str(args_json).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
    match value.get("rule") {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("argument `rule` must list strings (rules), not {v}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("argument `rule` must be a rule or a list of rules (strings), not {other}")),
    }
}

/// At most this many bad lines are named in the error; the rest are counted.
const ERRORS_SHOWN: usize = 10;

fn rule_errors(errors: Vec<rules::ParseError>) -> String {
    let mut shown: Vec<String> = errors.iter().take(ERRORS_SHOWN).map(ToString::to_string).collect();
    if errors.len() > ERRORS_SHOWN {
        shown.push(format!("and {} more bad rules", errors.len() - ERRORS_SHOWN));
    }
    shown.join("; ")
}

impl Plugin for Firewall {
    const INFO: PluginInfo = PluginInfo {
        name: "firewall",
        version: env!("CARGO_PKG_VERSION"),
        description: "stateful packet filter: ordered allow/deny rules over protocols, CIDRs and ports",
        subscribes: &["PKT", "FLOW/TCP/TERMINATE", "FLOW/UDP/TERMINATE", "FLOW/IP/TERMINATE"],
        publishes: &[],
        read_only: false,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let json = init.args_json.as_str();
        let args = Args::parse(json, &["rules", "rule", "default", "established"])?;
        let path = args.string("rules", "")?;
        let inline = inline_rules(json)?;
        if path.is_empty() && inline.is_none() {
            return Err("give `rules` (a rule file) or `rule` (a list of rules), or both".into());
        }
        let default = match args.string("default", "deny")?.as_str() {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            other => return Err(format!("argument `default` must be \"allow\" or \"deny\", not {other:?}")),
        };
        let established = args.bool("established", true)?;
        let mut all = match &inline {
            Some(items) => rules::parse_list(items.iter().map(String::as_str)).map_err(rule_errors)?,
            None => Vec::new(),
        };
        let from_list = all.len();
        if !path.is_empty() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read rules `{path}`: {e}"))?;
            all.extend(rules::parse_file(&text, &path).map_err(rule_errors)?);
        }
        let from_file = all.len() - from_list;
        let sources = match (inline.is_some(), path.is_empty()) {
            (true, false) => format!(" ({from_list} from `rule`, then {from_file} from {path})"),
            (false, false) => format!(" from {path}"),
            _ => String::new(),
        };
        eprintln!(
            "firewall: {} rules{sources}; default {}; established flows {}",
            all.len(),
            default.name(),
            if established { "pass without the rules" } else { "not tracked: every packet meets the rules" }
        );
        Ok(Firewall::new(all, default, established, init.shards.max(1) as usize, init.flow_slots as usize))
    }
}

export_nf!(Firewall);
