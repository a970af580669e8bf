//! The L4 balancer's decisions, apart from the NF glue: its backends (address, optional port,
//! weight, drained, passive health), a Maglev table over those that take new flows, and the
//! pick for a flow's tuple. Operators add, remove, drain and undrain backends at run time; a
//! removed backend keeps its index (flows pinned to it still name it) and a backend's slot
//! order follows its name, so the table moves as few keys as Maglev allows.

use mbox_abi::kit::{duration_ns, fnv1a, mix64, Maglev};
use mbox_abi::FlowTuple;
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// The table's slots at least: Maglev's 100 per backend is met up to 655 backends, and
/// shares stay within a few in 100,000 of the weights.
const MIN_TABLE: usize = 65_537;
const MAX_WEIGHT: u32 = 1000;
const MAX_BACKENDS: usize = 4096;
const MAX_DOWN_FOR_NS: u64 = 86_400 * 1_000_000_000;

/// What a flow's hash is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOn {
    /// Protocol, both addresses, both ports: flows spread over backends one by one.
    FiveTuple,
    /// The client's address only: all of a client's flows go to one backend.
    Source,
}

/// One backend. `up` false: passive health has it out until `down_until`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub ip: IpAddr,
    /// The port flows go to; `None`: the port they came to.
    pub port: Option<u16>,
    pub weight: u32,
    pub drained: bool,
    pub removed: bool,
    pub down_until: Option<u64>,
    /// Failed binds in a row, in all, flows picked, flows open now.
    pub failing: u32,
    pub failures: u64,
    pub picked: u64,
    pub open: u64,
    key: u64,
}

impl Backend {
    /// Whether it takes new flows at `now_ns`.
    fn usable(&self, now_ns: u64) -> bool {
        !self.drained && !self.removed && self.down_until.is_none_or(|t| now_ns >= t)
    }

    /// Its state's name, as `backends` lists it.
    pub fn state(&self, now_ns: u64) -> &'static str {
        match (self.removed, self.drained, self.down_until) {
            (true, ..) => "removed",
            (_, true, _) => "drained",
            (_, _, Some(t)) if now_ns < t => "down",
            (_, _, Some(_)) => "retrying",
            _ => "up",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    backends: Vec<Value>,
    hash: Option<String>,
    health: Option<HealthArgs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthArgs {
    failures: Option<u32>,
    down_for: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendArgs {
    name: String,
    address: String,
    weight: Option<u32>,
}

/// The backends and their table.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    table: Maglev,
    hash_on: HashOn,
    failures: u32,
    down_for_ns: u64,
    /// The earliest time a down backend comes back (the table is rebuilt then).
    next_retry_ns: u64,
    /// Every backend that is neither drained nor removed is down: the table holds them all
    /// anyway (Envoy's panic routing), since a backend that failed a few binds under load
    /// may take the next flow, while no backend at all refuses every flow for `down_for`.
    panic: bool,
    /// Times the table was built (each is `100 × backends` slots filled).
    rebuilds: u64,
}

impl Balancer {
    /// The balancer its arguments (a JSON object) describe.
    pub fn from_json(args: &str) -> Result<Balancer, String> {
        let args: Args = serde_json::from_str(args).map_err(|e| format!("arguments: {e}"))?;
        let hash_on = match args.hash.as_deref() {
            None | Some("5-tuple") => HashOn::FiveTuple,
            Some("source") => HashOn::Source,
            Some(other) => return Err(format!("argument `hash` must be \"5-tuple\" or \"source\", not {other:?}")),
        };
        let health = args.health.unwrap_or(HealthArgs { failures: None, down_for: None });
        let failures = health.failures.unwrap_or(3);
        if !(1..=1000).contains(&failures) {
            return Err(format!("argument `health.failures` must be 1 to 1000, not {failures}"));
        }
        let down_for_ns = match &health.down_for {
            None => 10_000_000_000,
            Some(v) => duration_ns(v, MAX_DOWN_FOR_NS).map_err(|e| format!("argument `health.down_for` {e}"))?,
        };
        if args.backends.is_empty() {
            return Err("argument `backends` lists no backend".into());
        }
        let mut b = Balancer {
            backends: Vec::new(),
            table: Maglev::new(&[], 2),
            hash_on,
            failures,
            down_for_ns,
            next_retry_ns: u64::MAX,
            panic: false,
            rebuilds: 0,
        };
        for (i, v) in args.backends.iter().enumerate() {
            let a = BackendArgs::deserialize(v).map_err(|e| format!("backend {}: {e}", i + 1))?;
            b.add(&a.name, &a.address, a.weight.unwrap_or(1)).map_err(|e| format!("backend {}: {e}", i + 1))?;
        }
        Ok(b)
    }

    /// Adds backend `name` at `address` ("198.18.1.11" or "198.18.1.11:8080") with `weight`;
    /// a name removed before comes back under its old index.
    pub fn add(&mut self, name: &str, address: &str, weight: u32) -> Result<(), String> {
        if name.is_empty() || name.contains(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_') {
            return Err(format!("{name:?} is not a backend name (letters, digits, - and _)"));
        }
        let (ip, port) = match address.parse::<SocketAddr>() {
            Ok(sa) => (sa.ip(), Some(sa.port())),
            Err(_) => match address.parse::<IpAddr>() {
                Ok(ip) => (ip, None),
                Err(_) => return Err(format!("{name}: {address:?} is not an IP address, with or without a port")),
            },
        };
        if ip.is_ipv6() {
            // mbox's l4 services translate IPv4 only: every bind to it would fail.
            return Err(format!("{name}: {ip} is IPv6, and an l4 service translates IPv4 only"));
        }
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(format!("{name}: weight must be 1 to {MAX_WEIGHT}, not {weight} (drain a backend to send it nothing)"));
        }
        let count = self.backends.len();
        match self.backends.iter_mut().find(|b| b.name == name) {
            Some(b) if !b.removed => return Err(format!("{name} is a backend already")),
            Some(b) => (b.ip, b.port, b.weight, b.removed, b.drained, b.down_until, b.failing) = (ip, port, weight, false, false, None, 0),
            None if count >= MAX_BACKENDS => return Err(format!("at most {MAX_BACKENDS} backends")),
            None => self.backends.push(Backend {
                name: name.to_string(),
                ip,
                port,
                weight,
                drained: false,
                removed: false,
                down_until: None,
                failing: 0,
                failures: 0,
                picked: 0,
                open: 0,
                key: mix64(fnv1a(name.as_bytes(), false)),
            }),
        }
        self.rebuild(0);
        Ok(())
    }

    /// Takes backend `name` out: no new flows; flows pinned to it go on (mbox keeps them).
    pub fn remove(&mut self, name: &str) -> Result<(), String> {
        let b = self.live_mut(name)?;
        b.removed = true;
        self.rebuild(0);
        Ok(())
    }

    /// Drains (`true`) or undrains backend `name`.
    pub fn drain(&mut self, name: &str, drained: bool) -> Result<(), String> {
        self.live_mut(name)?.drained = drained;
        self.rebuild(0);
        Ok(())
    }

    fn live_mut(&mut self, name: &str) -> Result<&mut Backend, String> {
        self.backends.iter_mut().find(|b| b.name == name && !b.removed).ok_or_else(|| format!("no backend {name:?}"))
    }

    /// Rebuilds the table over the backends usable at `now_ns`.
    fn rebuild(&mut self, now_ns: u64) {
        self.rebuilds += 1;
        let keys: Vec<u64> = self.backends.iter().map(|b| b.key).collect();
        let weights: Vec<u32> = self.backends.iter().map(|b| b.weight).collect();
        let mut usable: Vec<bool> = self.backends.iter().map(|b| b.usable(now_ns)).collect();
        self.panic = !usable.contains(&true);
        if self.panic {
            usable = self.backends.iter().map(|b| !b.drained && !b.removed).collect();
        }
        let size = MIN_TABLE.max(100 * self.backends.len());
        self.table = Maglev::with_keys(&keys, &weights, &usable, size);
        self.next_retry_ns = self.backends.iter().filter_map(|b| b.down_until.filter(|&t| t > now_ns)).min().unwrap_or(u64::MAX);
    }

    /// The hash of a flow's tuple the table is looked up by.
    pub fn hash(&self, t: &FlowTuple) -> u64 {
        let n = if t.ip_version == 4 { 4 } else { 16 };
        let mut key = [0u8; 37];
        key[0] = t.ip_proto;
        key[1..1 + n].copy_from_slice(&t.addrs[0][..n]);
        let len = match self.hash_on {
            HashOn::Source => 1 + n,
            HashOn::FiveTuple => {
                key[1 + n..1 + 2 * n].copy_from_slice(&t.addrs[1][..n]);
                key[1 + 2 * n..3 + 2 * n].copy_from_slice(&t.ports[0].to_be_bytes());
                key[3 + 2 * n..5 + 2 * n].copy_from_slice(&t.ports[1].to_be_bytes());
                5 + 2 * n
            }
        };
        // The source alone hashes the same for TCP and UDP.
        let from = usize::from(self.hash_on == HashOn::Source);
        mix64(fnv1a(&key[from..len], false))
    }

    /// The backend for a new flow with `tuple` at `now_ns` and where it goes (the flow's own
    /// port unless the backend names one); counted picked and open until [`Balancer::closed`].
    /// `None`: no backend takes new flows.
    pub fn pick(&mut self, tuple: &FlowTuple, now_ns: u64) -> Option<(usize, SocketAddr)> {
        if now_ns >= self.next_retry_ns {
            self.rebuild(now_ns);
        }
        let i = self.table.lookup(self.hash(tuple))?;
        let b = &mut self.backends[i];
        b.picked += 1;
        b.open += 1;
        Some((i, SocketAddr::new(b.ip, b.port.unwrap_or(tuple.ports[1]))))
    }

    /// A flow of backend `i` ended.
    pub fn closed(&mut self, i: usize) {
        if let Some(b) = self.backends.get_mut(i) {
            b.open = b.open.saturating_sub(1);
        }
    }

    /// A flow a previous instance picked is open on backend `name` (a reload's handover).
    pub fn opened(&mut self, name: &str) -> Option<usize> {
        let i = self.backends.iter().position(|b| b.name == name)?;
        self.backends[i].open += 1;
        Some(i)
    }

    /// The backend of bind `i` took the flow (`connected`) or could not be had, at `now_ns`:
    /// `failures` in a row take it out for `down_for`; one failure while retrying, again.
    pub fn outcome(&mut self, i: usize, connected: bool, now_ns: u64) {
        let (failures, down_for) = (self.failures, self.down_for_ns);
        let Some(b) = self.backends.get_mut(i) else { return };
        if connected {
            b.failing = 0;
            if b.down_until.take().is_some() {
                // Up again: back in the table (and out of panic routing, if it was on).
                self.rebuild(now_ns);
            }
            return;
        }
        b.failures += 1;
        b.failing += 1;
        if !b.usable(now_ns) {
            // Down already (a flow panic routing sent it, or one picked before it went down):
            // the table stays as it is; rebuilding it for each such failure would cost a
            // 65,537-slot table per failed flow while every backend is down.
            return;
        }
        let retrying = b.down_until.is_some();
        if b.failing >= failures || retrying {
            b.down_until = Some(now_ns.saturating_add(down_for));
            self.rebuild(now_ns);
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Whether every backend taking part is down, so that new flows go to them all anyway.
    pub fn panicking(&self) -> bool {
        self.panic && self.backends.iter().any(|b| !b.drained && !b.removed)
    }

    /// The slots backend `i` holds in the table now.
    pub fn slots_of(&self, i: usize) -> usize {
        self.table.slots_of(i)
    }

    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Times the table was built.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn balancer(args: Value) -> Balancer {
        Balancer::from_json(&args.to_string()).unwrap()
    }

    fn three() -> Balancer {
        balancer(json!({"backends": [
            {"name": "a", "address": "198.18.1.11"},
            {"name": "b", "address": "198.18.1.12", "weight": 2},
            {"name": "c", "address": "198.18.1.13:8080"}
        ]}))
    }

    /// The tuple of the `n`th flow of a spread of clients.
    fn tuple(n: u32, proto: u8) -> FlowTuple {
        let client: IpAddr = std::net::Ipv4Addr::from(0xc612_0000 | (n >> 10)).into();
        FlowTuple::new(proto, 0, [client, "198.18.1.80".parse().unwrap()], [1024 + (n & 1023) as u16 * 50, 80])
    }

    #[test]
    fn shares_over_100000_flows_are_within_1_percent_of_the_weights() {
        let mut b = three();
        let mut counts = [0u32; 3];
        for n in 0..100_000 {
            let (i, _) = b.pick(&tuple(n, 6), 0).unwrap();
            counts[i] += 1;
        }
        for (i, want) in [0.25, 0.5, 0.25].into_iter().enumerate() {
            let share = f64::from(counts[i]) / 100_000.0;
            assert!((share - want).abs() < 0.01, "backend {i}: {share} of flows, weight share {want}");
            let slots = b.slots_of(i) as f64 / b.table_size() as f64;
            assert!((slots - want).abs() < 0.001, "backend {i}: {slots} of the slots");
        }
        assert_eq!(b.backends()[1].picked, u64::from(counts[1]));
    }

    #[test]
    fn a_pick_goes_to_the_backends_port_or_the_flows_own() {
        let mut b = three();
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..200 {
            seen.insert(b.pick(&tuple(n, 17), 0).unwrap().1.to_string());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["198.18.1.11:80", "198.18.1.12:80", "198.18.1.13:8080"]);
    }

    #[test]
    fn removing_or_adding_a_backend_moves_only_the_keys_it_held_and_little_else() {
        let mut b = three();
        let before: Vec<usize> = (0..20_000).map(|n| b.pick(&tuple(n, 6), 0).unwrap().0).collect();
        b.remove("c").unwrap();
        let after: Vec<usize> = (0..20_000).map(|n| b.pick(&tuple(n, 6), 0).unwrap().0).collect();
        let moved_others = before.iter().zip(&after).filter(|(x, y)| **x != 2 && x != y).count();
        assert!(after.iter().all(|&i| i != 2), "a removed backend gets no new flow");
        assert!(moved_others < 20_000 / 50, "{moved_others} flows of the others moved");
        b.add("c", "198.18.1.13:8080", 1).unwrap();
        let again: Vec<usize> = (0..20_000).map(|n| b.pick(&tuple(n, 6), 0).unwrap().0).collect();
        assert_eq!(again, before, "the same backends give the same table");
        assert_eq!(b.add("c", "198.18.1.99", 1).unwrap_err(), "c is a backend already");
    }

    #[test]
    fn draining_and_passive_health_take_a_backend_out_and_bring_it_back() {
        let mut b = balancer(json!({
            "backends": [{"name": "a", "address": "198.18.1.11"}, {"name": "b", "address": "198.18.1.12"}],
            "health": {"failures": 2, "down_for": "5s"}
        }));
        b.drain("a", true).unwrap();
        assert!((0..100).all(|n| b.pick(&tuple(n, 6), 0).unwrap().0 == 1));
        b.drain("a", false).unwrap();
        b.outcome(1, false, 10);
        assert_eq!(b.backends()[1].state(10), "up", "one failure of two");
        b.outcome(1, false, 20);
        assert_eq!(b.backends()[1].state(20), "down");
        assert!((0..100).all(|n| b.pick(&tuple(n, 6), 30).unwrap().0 == 0));
        let back = 20 + 5_000_000_000;
        assert!((0..100).any(|n| b.pick(&tuple(n, 6), back).unwrap().0 == 1), "back on trial after down_for");
        assert_eq!(b.backends()[1].state(back), "retrying");
        b.outcome(1, false, back + 1);
        assert_eq!(b.backends()[1].state(back + 1), "down", "one failure on trial: down again");
        // Every backend down: new flows go to them all anyway (panic routing), not nowhere.
        b.outcome(0, false, back + 2);
        b.outcome(0, false, back + 3);
        assert!(b.panicking());
        let picked: std::collections::BTreeSet<usize> = (0..100).map(|n| b.pick(&tuple(n, 6), back + 4).unwrap().0).collect();
        assert_eq!(picked.into_iter().collect::<Vec<_>>(), [0, 1]);
        // The flows panic routing sent fail too: the backends stay down, the table as it is.
        let built = b.rebuilds();
        for n in 0..1000 {
            b.outcome(n % 2, false, back + 4);
        }
        assert_eq!(b.rebuilds(), built, "a failure of a backend that is down changes nothing");
        assert!(b.panicking());
        b.outcome(0, true, back + 5);
        assert!(!b.panicking(), "one came back");
        b.drain("b", true).unwrap();
        b.drain("a", true).unwrap();
        assert_eq!(b.pick(&tuple(1, 6), back + 6), None, "nothing takes new flows: all drained");
        assert!(!b.panicking());
    }

    #[test]
    fn source_hashing_sends_a_clients_flows_to_one_backend() {
        let b = balancer(
            json!({"hash": "source", "backends": [{"name": "a", "address": "198.18.1.11"}, {"name": "b", "address": "198.18.1.12"}]}),
        );
        let t = |port, proto| FlowTuple::new(proto, 0, ["198.18.7.7".parse().unwrap(), "198.18.1.80".parse().unwrap()], [port, 80]);
        let h = b.hash(&t(1000, 6));
        assert!((1001..1100).all(|p| b.hash(&t(p, 6)) == h && b.hash(&t(p, 17)) == h));
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = |v: Value| Balancer::from_json(&v.to_string()).unwrap_err();
        assert!(err(json!({"backends": []})).contains("lists no backend"));
        assert!(err(json!({"backends": [{"name": "a", "address": "web"}]})).contains("not an IP address"));
        assert!(err(json!({"backends": [{"name": "a", "address": "[2001:db8::1]:80"}]})).contains("translates IPv4 only"));
        assert!(err(json!({"backends": [{"name": "a b", "address": "198.18.1.1"}]})).contains("not a backend name"));
        assert!(err(json!({"backends": [{"name": "a", "address": "198.18.1.1", "weight": 0}]})).contains("weight must be 1 to 1000"));
        assert!(err(json!({"backends": [{"name": "a", "address": "198.18.1.1"}, {"name": "a", "address": "198.18.1.2"}]}))
            .contains("a backend already"));
        assert!(err(json!({"hash": "dest", "backends": [{"name": "a", "address": "198.18.1.1"}]})).contains("`hash` must be"));
        assert!(err(json!({"backend": []})).contains("unknown field"));
        assert!(err(json!({"backends": [{"name": "a", "address": "198.18.1.1"}], "health": {"down_for": "2d"}})).contains("down_for"));
    }
}
