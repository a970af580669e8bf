//! The load balancer's decisions, apart from the NF glue: its arguments (backends, rules,
//! health), which rule a request falls under, which of the rule's backends gets it, and the
//! backends' health, drain state and counters.
//!
//! ```json
//! {
//!   "backends": [
//!     {"name": "web1", "address": "198.18.2.11:80", "weight": 1},
//!     {"name": "web2", "address": "198.18.2.12:80", "weight": 2},
//!     {"name": "img1", "address": "[2001:db8::13]:80"}
//!   ],
//!   "rules": [
//!     {"host": "img.example", "backends": ["img1"]},
//!     {"path_prefix": "/api/", "header": {"name": "X-Tenant", "value": "blue"},
//!      "backends": ["web2"], "balance": "hash", "hash_on": "header:X-Tenant"},
//!     {"backends": ["web1", "web2"], "balance": "round-robin"}
//!   ],
//!   "health": {"failures": 3, "down_for": "10s"}
//! }
//! ```
//!
//! - `backends`: `name` (unique), `address` (`ip:port`, `[v6]:port`: no names, nothing here
//!   resolves them), `weight` (1 to 1000; default 1).
//! - `rules`, in order: the first whose every match holds decides; none matching refuses the
//!   request. Matches, all optional: `host` (one or a list; any case; the request's host
//!   without its port, from an absolute-form target or else the Host header), `path_prefix`
//!   (bytes the path, before `?`, starts with; case matters and nothing is percent-decoded),
//!   `header` (`{"name", "value"}` for an exact value, `{"name", "prefix"}`; the name in any
//!   case; any of the header's occurrences may match). `backends`: the names the rule uses.
//!   `balance`: `round-robin` (the default: smooth weighted round robin, nginx's, so weights
//!   1:2 split exactly 1:2), `least-connections` (fewest open connections for the weight; ties
//!   go by smooth weighted round robin), `hash` (a [`Maglev`] table over the rule's backends:
//!   one going down moves only the keys it had). `hash_on` (with `hash` only): `source` (the
//!   client's address; the default), `host`, `path`, `header:NAME`; a request without the key
//!   (no host, no such header) is hashed on its source. Without `rules`, one rule sends
//!   everything to all backends by round robin.
//! - `health`: `failures` (consecutive failed connections that take a backend down; 1 to 100,
//!   default 3), `down_for` (`"500ms"`, `"10s"`, `"2m"`, `"1h"`, or seconds as a number; up to a
//!   day; default 10 s). A down backend gets no requests until `down_for` has passed; then it
//!   is tried again: a connection that succeeds brings it up, one that fails takes it down for
//!   another `down_for`.
//!
//! Unknown keys are errors that name them, as every error names the rule (from 1) or backend.

use crate::request::Request;
use mbox_abi::kit::{duration_ns, fnv1a, mix64 as mix, Maglev};
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// Highest backend weight.
const MAX_WEIGHT: u32 = 1000;

/// Most consecutive failures `health.failures` may ask for.
const MAX_FAILURES: u32 = 100;

/// Longest `health.down_for`: a day (longer is a typo, or a drain).
const MAX_DOWN_FOR_NS: u64 = 86_400 * 1_000_000_000;

/// Fewest slots in a hash rule's Maglev table. At Maglev's minimum of 100 slots per backend, a
/// backend going down moved 2-3% of the others' keys (measured with 5 backends); at 65,537 it
/// moves about 0.1%, for 256 KiB per hash rule.
const MIN_MAGLEV_SIZE: usize = 65_537;

/// What is wrong with the arguments, or with an operator's command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The arguments as a whole (not JSON, not a table, an unknown or mistyped top-level key).
    #[error("arguments: {0}")]
    Args(String),
    /// A backend: `which` is its name in quotes, or its position (from 1) when it has none yet.
    #[error("backend {which}: {problem}")]
    Backend { which: String, problem: String },
    /// A rule, by its position (from 1).
    #[error("rule {rule}: {problem}")]
    Rule { rule: usize, problem: String },
    #[error("health: {0}")]
    Health(String),
    /// An operator named a backend that is not configured.
    #[error("no backend is called \"{0}\"")]
    NoSuchBackend(String),
}

/// Why a request gets no backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    /// No rule matches it.
    NoRule,
    /// Its rule's backends are all down or drained.
    NoBackend,
    /// It is not a request this NF routes (see [`crate::request::BadRequest`]).
    BadRequest,
}

impl Refuse {
    /// The refusal as counters and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Refuse::NoRule => "no_rule",
            Refuse::NoBackend => "no_backend",
            Refuse::BadRequest => "bad_request",
        }
    }
}

impl From<crate::request::BadRequest> for Refuse {
    fn from(_: crate::request::BadRequest) -> Refuse {
        Refuse::BadRequest
    }
}

/// The backend a request goes to, and the rule that sent it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index into the backends as configured (and as [`Policy::backends`] lists them).
    pub backend: usize,
    pub address: SocketAddr,
    /// Index into the rules as configured (messages number them from 1).
    pub rule: usize,
}

/// A backend's state, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    Up,
    /// Taken down by failures; no requests until its time is up.
    Down,
    /// Its time down is up and it gets requests again; the next outcome decides.
    Retrying,
    /// Drained by an operator (whatever its health): no new requests.
    Drained,
}

impl BackendState {
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Retrying => "retrying",
            BackendState::Drained => "drained",
        }
    }
}

/// A backend and its counters, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendView<'a> {
    pub name: &'a str,
    pub address: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
    /// Connections picked for it and not yet [`Policy::closed`].
    pub open: u64,
    /// Connections ever picked for it.
    pub picked: u64,
    /// Connections to it that ever failed.
    pub failures: u64,
}

/// A backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Up, after this many consecutive failures.
    Up(u32),
    /// Down until this time (ns).
    Down(u64),
    Retrying,
}

#[derive(Debug)]
struct Backend {
    name: String,
    address: SocketAddr,
    weight: u32,
    /// Keys its slots in Maglev tables: a hash of its name, so that its slots do not depend on
    /// where it is listed.
    key: u64,
    health: Health,
    drained: bool,
    open: u64,
    picked: u64,
    failures: u64,
}

impl Backend {
    /// Whether it may get new requests.
    fn usable(&self) -> bool {
        !self.drained && !matches!(self.health, Health::Down(_))
    }
}

/// What of the request a hash rule hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HashOn {
    Source,
    Host,
    Path,
    /// A header, by its name (compared in any case).
    Header(String),
}

#[derive(Debug)]
enum Balance {
    /// Smooth weighted round robin: each rule backend's current weight.
    RoundRobin(Vec<i64>),
    /// Least connections, ties by smooth weighted round robin (current weights).
    LeastConnections(Vec<i64>),
    Hash {
        on: HashOn,
        table: Maglev,
        /// Which of the rule's backends the table was built with.
        built_for: Vec<bool>,
        /// The policy's `epoch` when `built_for` was last checked.
        epoch: u64,
    },
}

/// A header a rule matches.
#[derive(Debug)]
struct HeaderMatch {
    name: String,
    value: Vec<u8>,
    prefix: bool,
}

#[derive(Debug)]
struct Rule {
    /// Lowercase; empty: any host.
    hosts: Vec<Vec<u8>>,
    path_prefix: Option<Vec<u8>>,
    header: Option<HeaderMatch>,
    /// Indexes into the backends.
    backends: Vec<usize>,
    balance: Balance,
}

impl Rule {
    fn matches(&self, req: &Request<'_>) -> bool {
        if !self.hosts.is_empty() {
            let Some(host) = req.host() else { return false };
            if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if !req.path().starts_with(prefix) {
                return false;
            }
        }
        if let Some(m) = &self.header {
            let hit = |v: &[u8]| if m.prefix { v.starts_with(&m.value) } else { v == m.value.as_slice() };
            if !req.header_values(&m.name).any(hit) {
                return false;
            }
        }
        true
    }
}

/// Backends, rules and health settings, with the state they need between requests.
#[derive(Debug)]
pub struct Policy {
    backends: Vec<Backend>,
    rules: Vec<Rule>,
    failures: u32,
    down_for_ns: u64,
    /// Earliest time a down backend is due to be retried (`u64::MAX`: none is down).
    next_retry_ns: u64,
    /// Bumped whenever a backend becomes usable or unusable, so that hash rules check whether
    /// their table needs rebuilding only then.
    epoch: u64,
    /// Picks made while every backend of their rule not drained was down (panic routing).
    panic_picks: u64,
}

// The arguments as written; checked and turned into a Policy by `from_args`. Each backend and
// rule is read on its own, so that an error in one names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgsIn {
    backends: Option<Vec<Value>>,
    rules: Option<Vec<Value>>,
    health: Option<HealthIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendIn {
    name: String,
    address: String,
    weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleIn {
    host: Option<Value>,
    path_prefix: Option<String>,
    header: Option<HeaderIn>,
    backends: Vec<String>,
    balance: Option<BalanceIn>,
    hash_on: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    name: String,
    value: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum BalanceIn {
    RoundRobin,
    LeastConnections,
    Hash,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthIn {
    failures: Option<u32>,
    down_for: Option<Value>,
}

impl Policy {
    /// Reads the NF's arguments as JSON text.
    pub fn from_json(args: &str) -> Result<Policy, PolicyError> {
        let value: Value = serde_json::from_str(args).map_err(|e| PolicyError::Args(format!("not valid JSON: {e}")))?;
        Policy::from_args(&value)
    }

    /// Reads the NF's arguments (a JSON object; the module's documentation has its keys).
    pub fn from_args(args: &Value) -> Result<Policy, PolicyError> {
        if !args.is_object() {
            return Err(PolicyError::Args(format!("must be a table, not {args}")));
        }
        let args = ArgsIn::deserialize(args).map_err(|e| PolicyError::Args(e.to_string()))?;
        let backends = args.backends.unwrap_or_default();
        if backends.is_empty() {
            return Err(PolicyError::Args("`backends` lists no backend".into()));
        }
        let backends = backends.iter().enumerate().map(|(i, b)| backend(i, b)).collect::<Result<Vec<_>, _>>()?;
        for (i, b) in backends.iter().enumerate() {
            if backends[..i].iter().any(|o| o.name == b.name) {
                return Err(PolicyError::Backend { which: format!("{:?}", b.name), problem: "is listed twice".into() });
            }
        }
        let rules = match args.rules {
            None => vec![Rule {
                hosts: Vec::new(),
                path_prefix: None,
                header: None,
                backends: (0..backends.len()).collect(),
                balance: Balance::RoundRobin(vec![0; backends.len()]),
            }],
            Some(rules) if rules.is_empty() => return Err(PolicyError::Args("`rules` lists no rule: nothing could be routed".into())),
            Some(rules) => rules.iter().enumerate().map(|(i, r)| rule(i + 1, r, &backends)).collect::<Result<_, _>>()?,
        };
        let health = args.health.unwrap_or(HealthIn { failures: None, down_for: None });
        let failures = health.failures.unwrap_or(3);
        if !(1..=MAX_FAILURES).contains(&failures) {
            return Err(PolicyError::Health(format!("`failures` must be 1 to {MAX_FAILURES}, not {failures}")));
        }
        let down_for_ns = match &health.down_for {
            None => 10_000_000_000,
            Some(v) => duration_ns(v, MAX_DOWN_FOR_NS).map_err(|e| PolicyError::Health(format!("`down_for` {e}")))?,
        };
        Ok(Policy { backends, rules, failures, down_for_ns, next_retry_ns: u64::MAX, epoch: 0, panic_picks: 0 })
    }

    /// Picks a backend for `request` from `client` (its IP address) at `now_ns` (a monotonic
    /// clock, in ns). The pick counts as an open connection of the backend until [`closed`]:
    /// every `Ok` must be matched by one `closed`, whether the connection succeeded or not.
    /// Allocates nothing (but for rebuilding a hash rule's table after a backend's state
    /// changed).
    ///
    /// [`closed`]: Policy::closed
    pub fn pick(&mut self, request: &Request<'_>, client: IpAddr, now_ns: u64) -> Result<Pick, Refuse> {
        if now_ns >= self.next_retry_ns {
            self.retry_due(now_ns);
        }
        let rule_index = self.rules.iter().position(|r| r.matches(request)).ok_or(Refuse::NoRule)?;
        let rule = &mut self.rules[rule_index];
        let backends = &self.backends;
        let chosen = match &mut rule.balance {
            Balance::RoundRobin(current) => smooth_wrr(&rule.backends, current, backends, |_| true),
            Balance::LeastConnections(current) => {
                // The fewest open for the weight (a/wa < b/wb as a·wb < b·wa: no division), then
                // smooth round robin among those tied, so that idle backends share by weight.
                let load = |b: &Backend| (b.open, u64::from(b.weight));
                let least = rule.backends.iter().map(|&i| &backends[i]).filter(|b| b.usable()).map(load).reduce(|best, l| {
                    if l.0 * best.1 < best.0 * l.1 {
                        l
                    } else {
                        best
                    }
                });
                match least {
                    None => None,
                    Some((open, weight)) => {
                        smooth_wrr(&rule.backends, current, backends, |b| b.open * weight == open * u64::from(b.weight))
                    }
                }
            }
            Balance::Hash { on, table, built_for, epoch } => {
                if *epoch != self.epoch {
                    *epoch = self.epoch;
                    let usable = rule.backends.iter().map(|&i| backends[i].usable());
                    if !usable.clone().eq(built_for.iter().copied()) {
                        built_for.clear();
                        built_for.extend(usable);
                        *table = maglev(&rule.backends, backends, built_for);
                    }
                }
                table.lookup(hash_key(on, request, client)).map(|i| rule.backends[i])
            }
        };
        // Every backend of the rule that is not drained is down: they all take requests anyway
        // (Envoy's panic routing). A backend that failed a few connections under a burst may
        // take the next one, while refusing every request for `down_for` is certain to fail.
        let chosen = chosen.or_else(|| {
            let rule = &mut self.rules[rule_index];
            let backends = &self.backends;
            let panic = match &mut rule.balance {
                Balance::RoundRobin(current) | Balance::LeastConnections(current) => {
                    smooth_wrr_of(&rule.backends, current, backends, |b| !b.drained)
                }
                Balance::Hash { on, .. } => {
                    // No table for the few moments all are down: the hash over those not drained.
                    let alive = || rule.backends.iter().copied().filter(|&i| !backends[i].drained);
                    let n = alive().count() as u64;
                    (n > 0).then(|| hash_key(on, request, client) % n).and_then(|k| alive().nth(k as usize))
                }
            };
            self.panic_picks += u64::from(panic.is_some());
            panic
        });
        let backend = chosen.ok_or(Refuse::NoBackend)?;
        let b = &mut self.backends[backend];
        b.open += 1;
        b.picked += 1;
        Ok(Pick { backend, address: b.address, rule: rule_index })
    }

    /// Down backends whose time is up are retried.
    fn retry_due(&mut self, now_ns: u64) {
        self.next_retry_ns = u64::MAX;
        for b in &mut self.backends {
            match b.health {
                Health::Down(until) if until <= now_ns => {
                    b.health = Health::Retrying;
                    self.epoch += 1;
                }
                Health::Down(until) => self.next_retry_ns = self.next_retry_ns.min(until),
                _ => {}
            }
        }
    }

    /// The connection to `backend` (a [`Pick::backend`]) was made (`connected`) or failed
    /// (refused, timed out, unreachable), at `now_ns`. An index out of range is ignored.
    pub fn outcome(&mut self, backend: usize, connected: bool, now_ns: u64) {
        let (failures, down_for_ns) = (self.failures, self.down_for_ns);
        let Some(b) = self.backends.get_mut(backend) else { return };
        let was_usable = b.usable();
        b.health = match (connected, b.health) {
            (true, _) => Health::Up(0),
            (false, Health::Up(n)) if n + 1 < failures => Health::Up(n + 1),
            // The last failure allowed, or one while down or on trial: down (again) from now.
            (false, _) => Health::Down(now_ns.saturating_add(down_for_ns)),
        };
        if !connected {
            b.failures += 1;
        }
        if let Health::Down(until) = b.health {
            self.next_retry_ns = self.next_retry_ns.min(until);
        }
        if b.usable() != was_usable {
            self.epoch += 1;
        }
    }

    /// A connection to `backend` a previous instance picked is open (a reload's handover):
    /// counted as [`Policy::pick`] counts its own. An index out of range is ignored.
    pub fn opened(&mut self, backend: usize) {
        if let Some(b) = self.backends.get_mut(backend) {
            b.open += 1;
        }
    }

    /// A connection picked for `backend` is gone (see [`Policy::pick`]). An index out of range,
    /// or a backend with none open, is ignored.
    pub fn closed(&mut self, backend: usize) {
        if let Some(b) = self.backends.get_mut(backend) {
            b.open = b.open.saturating_sub(1);
        }
    }

    /// Drains the backend called `name` (no new requests; open connections go on) or, with
    /// `drained` false, takes it back.
    pub fn drain(&mut self, name: &str, drained: bool) -> Result<(), PolicyError> {
        let b = self.backends.iter_mut().find(|b| b.name == name).ok_or_else(|| PolicyError::NoSuchBackend(name.to_string()))?;
        if b.drained != drained {
            b.drained = drained;
            self.epoch += 1;
        }
        Ok(())
    }

    /// The backends as configured, with their state and counters.
    pub fn backends(&self) -> impl Iterator<Item = BackendView<'_>> {
        self.backends.iter().map(|b| BackendView {
            name: &b.name,
            address: b.address,
            weight: b.weight,
            state: match b.health {
                _ if b.drained => BackendState::Drained,
                Health::Up(_) => BackendState::Up,
                Health::Down(_) => BackendState::Down,
                Health::Retrying => BackendState::Retrying,
            },
            open: b.open,
            picked: b.picked,
            failures: b.failures,
        })
    }

    /// How many rules there are ([`Pick::rule`] is below it).
    /// Picks made by panic routing: every backend of the rule not drained was down.
    pub fn panic_picks(&self) -> u64 {
        self.panic_picks
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// Smooth weighted round robin (nginx's) over the rule's usable backends that `eligible`
/// takes: each gains its weight, the one with the most current weight wins (the first listed
/// on a tie) and loses the total. Weights 1:2 give the order b, a, b: an exact split, spread.
fn smooth_wrr(rule_backends: &[usize], current: &mut [i64], backends: &[Backend], eligible: impl Fn(&Backend) -> bool) -> Option<usize> {
    smooth_wrr_of(rule_backends, current, backends, |b| b.usable() && eligible(b))
}

/// [`smooth_wrr`] among the backends `takes` admits, usable or not (panic routing's).
fn smooth_wrr_of(rule_backends: &[usize], current: &mut [i64], backends: &[Backend], takes: impl Fn(&Backend) -> bool) -> Option<usize> {
    let (mut best, mut total) = (None::<usize>, 0i64);
    for (slot, &i) in rule_backends.iter().enumerate() {
        let b = &backends[i];
        if !takes(b) {
            continue;
        }
        let w = i64::from(b.weight);
        current[slot] += w;
        total += w;
        if best.is_none_or(|s| current[slot] > current[s]) {
            best = Some(slot);
        }
    }
    let slot = best?;
    current[slot] -= total;
    Some(rule_backends[slot])
}

/// A Maglev table over the rule's backends that are `usable`.
fn maglev(rule_backends: &[usize], backends: &[Backend], usable: &[bool]) -> Maglev {
    let keys: Vec<u64> = rule_backends.iter().map(|&i| backends[i].key).collect();
    let weights: Vec<u32> = rule_backends.iter().map(|&i| backends[i].weight).collect();
    let total: usize = weights.iter().map(|&w| w as usize).sum();
    // Enough slots for every backend's share to be close to its weight's (16 per unit of
    // weight), within memory reason (4 Mi slots), and never under Maglev's 100 per backend.
    let size = MIN_MAGLEV_SIZE.max(16 * total).min(1 << 22).max(100 * weights.len());
    Maglev::with_keys(&keys, &weights, usable, size)
}

/// The hash a hash rule looks its table up by; the source's when the request lacks the key.
fn hash_key(on: &HashOn, req: &Request<'_>, client: IpAddr) -> u64 {
    let key = match on {
        HashOn::Source => None,
        HashOn::Host => req.host().map(|h| fnv1a(h, true)),
        HashOn::Path => Some(fnv1a(req.path(), false)),
        HashOn::Header(name) => req.header(name).map(|v| fnv1a(v, false)),
    };
    mix(key.unwrap_or_else(|| match client.to_canonical() {
        IpAddr::V4(a) => fnv1a(&a.octets(), false),
        IpAddr::V6(a) => fnv1a(&a.octets(), false),
    }))
}

/// Backend `index` (from 0) of the arguments.
fn backend(index: usize, value: &Value) -> Result<Backend, PolicyError> {
    let b = BackendIn::deserialize(value).map_err(|e| PolicyError::Backend { which: (index + 1).to_string(), problem: e.to_string() })?;
    let problem = |problem: String| PolicyError::Backend { which: format!("{:?}", b.name), problem };
    if b.name.is_empty() {
        return Err(PolicyError::Backend { which: (index + 1).to_string(), problem: "`name` is empty".into() });
    }
    let address: SocketAddr = b
        .address
        .parse()
        .map_err(|_| problem(format!("`address` {:?} is not an IP address and port (198.18.2.11:80, [2001:db8::1]:80)", b.address)))?;
    let weight = b.weight.unwrap_or(1);
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(problem(format!("`weight` must be 1 to {MAX_WEIGHT}, not {weight} (drain a backend to stop sending it requests)")));
    }
    Ok(Backend {
        key: mix(fnv1a(b.name.as_bytes(), false)),
        name: b.name,
        address,
        weight,
        health: Health::Up(0),
        drained: false,
        open: 0,
        picked: 0,
        failures: 0,
    })
}

/// Rule `number` (from 1) of the arguments, over `backends`.
fn rule(number: usize, value: &Value, backends: &[Backend]) -> Result<Rule, PolicyError> {
    let problem = |problem: String| PolicyError::Rule { rule: number, problem };
    let r = RuleIn::deserialize(value).map_err(|e| problem(e.to_string()))?;
    let hosts = match &r.host {
        None => Vec::new(),
        Some(Value::String(h)) => vec![host(h).map_err(problem)?],
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|h| match h {
                Value::String(h) => host(h).map_err(problem),
                other => Err(problem(format!("`host` must list strings, not {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(problem(format!("`host` must be a host name or a list of them, not {other}"))),
    };
    if let Some(p) = &r.path_prefix {
        if !p.starts_with('/') {
            return Err(problem(format!("`path_prefix` {p:?} does not start with /")));
        }
    }
    let header = match r.header {
        None => None,
        Some(h) => {
            if !is_token(&h.name) {
                return Err(problem(format!("`header.name` {:?} is not a header name", h.name)));
            }
            let (value, prefix) = match (h.value, h.prefix) {
                (Some(v), None) => (v, false),
                (None, Some(p)) => (p, true),
                _ => return Err(problem("`header` needs one of `value` (exact) and `prefix`".into())),
            };
            Some(HeaderMatch { name: h.name.to_ascii_lowercase(), value: value.into_bytes(), prefix })
        }
    };
    if r.backends.is_empty() {
        return Err(problem("`backends` lists no backend".into()));
    }
    let mut indexes = Vec::with_capacity(r.backends.len());
    for name in &r.backends {
        let i = backends.iter().position(|b| &b.name == name).ok_or_else(|| problem(format!("backend {name:?} is not in backends")))?;
        if indexes.contains(&i) {
            return Err(problem(format!("backend {name:?} is listed twice (give it a weight instead)")));
        }
        indexes.push(i);
    }
    let balance = r.balance.unwrap_or(BalanceIn::RoundRobin);
    if r.hash_on.is_some() && balance != BalanceIn::Hash {
        return Err(problem("`hash_on` needs `balance` \"hash\"".into()));
    }
    let balance = match balance {
        BalanceIn::RoundRobin => Balance::RoundRobin(vec![0; indexes.len()]),
        BalanceIn::LeastConnections => Balance::LeastConnections(vec![0; indexes.len()]),
        BalanceIn::Hash => {
            let on = match r.hash_on.as_deref() {
                None | Some("source") => HashOn::Source,
                Some("host") => HashOn::Host,
                Some("path") => HashOn::Path,
                Some(h) => match h.strip_prefix("header:") {
                    Some(name) if is_token(name) => HashOn::Header(name.to_ascii_lowercase()),
                    _ => return Err(problem(format!("`hash_on` {h:?} is not source, host, path or header:NAME"))),
                },
            };
            let built_for = vec![true; indexes.len()];
            Balance::Hash { on, table: maglev(&indexes, backends, &built_for), built_for, epoch: 0 }
        }
    };
    Ok(Rule { hosts, path_prefix: r.path_prefix.map(String::into_bytes), header, backends: indexes, balance })
}

/// A rule's host, lowercased; refused with a port (rules match the host without one) or blanks.
fn host(h: &str) -> Result<Vec<u8>, String> {
    if h.is_empty() || h.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("`host` {h:?} is not a host name"));
    }
    if crate::request::without_port(h.as_bytes()).len() != h.len() {
        return Err(format!("`host` {h:?} has a port: hosts match without theirs"));
    }
    Ok(h.to_ascii_lowercase().into_bytes())
}

/// Whether `s` is an HTTP token (what header names are made of).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_request, EMPTY_HEADER};
    use serde_json::json;
    use std::net::Ipv4Addr;

    const S: u64 = 1_000_000_000;

    fn client(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, n))
    }

    fn policy(args: Value) -> Policy {
        Policy::from_args(&args).unwrap()
    }

    fn error(args: Value) -> String {
        Policy::from_args(&args).unwrap_err().to_string()
    }

    /// Picks for the request in `head` (a request line and headers, without the blank line).
    fn pick(p: &mut Policy, head: &str, from: IpAddr, now_ns: u64) -> Result<Pick, Refuse> {
        let buf = format!("{head}\r\n\r\n");
        let mut headers = [EMPTY_HEADER; 16];
        let req = parse_request(buf.as_bytes(), 4096, &mut headers).unwrap().unwrap();
        p.pick(&req, from, now_ns)
    }

    /// The name of the backend picked, or the refusal.
    fn name(p: &mut Policy, head: &str) -> Result<String, Refuse> {
        let pick = pick(p, head, client(1), 0)?;
        Ok(p.backends().nth(pick.backend).unwrap().name.to_string())
    }

    fn three() -> Value {
        json!([
            {"name": "web1", "address": "198.18.2.11:80", "weight": 1},
            {"name": "web2", "address": "198.18.2.12:80", "weight": 2},
            {"name": "img1", "address": "[2001:db8::13]:80"}
        ])
    }

    #[test]
    fn argument_errors_name_the_rule_or_backend() {
        let b = three();
        assert!(error(json!({"backends": b, "helth": {}})).contains("unknown field `helth`"));
        let e = error(json!({"backends": b, "rules": [{"backends": ["web1"]}, {"hots": "a", "backends": ["web1"]}]}));
        assert!(e.starts_with("rule 2: unknown field `hots`"), "{e}");
        assert_eq!(
            error(json!({"backends": b, "rules": [{"backends": ["web1"]}, {"backends": ["web9"]}]})),
            "rule 2: backend \"web9\" is not in backends"
        );
        let e = error(json!({"backends": [{"name": "a", "address": "198.18.2.1:80"}, {"name": "a", "address": "198.18.2.2:80"}]}));
        assert_eq!(e, "backend \"a\": is listed twice");
        let e = error(json!({"backends": [{"name": "a", "address": "web.example:80"}]}));
        assert!(e.starts_with("backend \"a\": `address` \"web.example:80\" is not an IP address and port"), "{e}");
        assert!(error(json!({"backends": [{"name": "a", "address": "198.18.2.1"}]})).contains("is not an IP address and port"));
        assert!(error(json!({"backends": [{"name": "a", "address": "198.18.2.1:80", "weight": 0}]}))
            .starts_with("backend \"a\": `weight` must be 1 to 1000, not 0"));
        assert!(error(json!({"backends": [{"name": "a", "address": "198.18.2.1:80", "weight": 1001}]})).contains("not 1001"));
        assert!(error(json!({"backends": [{"name": "a", "address": "198.18.2.1:80", "wieght": 2}]}))
            .starts_with("backend 1: unknown field `wieght`"));
        assert_eq!(error(json!({"backends": []})), "arguments: `backends` lists no backend");
        assert_eq!(error(json!({"rules": []})), "arguments: `backends` lists no backend");
        assert!(error(json!([1])).starts_with("arguments: must be a table"));
        assert!(Policy::from_json("{").unwrap_err().to_string().starts_with("arguments: not valid JSON"));
        let rule_error = |rule: Value| error(json!({"backends": b, "rules": [rule]}));
        assert_eq!(rule_error(json!({"backends": []})), "rule 1: `backends` lists no backend");
        assert!(rule_error(json!({"backends": ["web1", "web1"]})).contains("listed twice"));
        assert!(rule_error(json!({"host": "a:80", "backends": ["web1"]})).contains("has a port"));
        assert!(rule_error(json!({"host": [], "backends": ["web1"]})).contains("`host` must be"));
        assert!(rule_error(json!({"path_prefix": "api", "backends": ["web1"]})).contains("does not start with /"));
        assert!(rule_error(json!({"header": {"name": "X-A"}, "backends": ["web1"]})).contains("needs one of"));
        assert!(rule_error(json!({"header": {"name": "X A", "value": "b"}, "backends": ["web1"]})).contains("not a header name"));
        assert!(rule_error(json!({"balance": "random", "backends": ["web1"]})).starts_with("rule 1: unknown variant `random`"));
        assert!(rule_error(json!({"hash_on": "host", "backends": ["web1"]})).contains("needs `balance` \"hash\""));
        assert!(rule_error(json!({"balance": "hash", "hash_on": "cookie", "backends": ["web1"]})).contains("not source, host, path"));
        let health = |h: Value| error(json!({"backends": b, "health": h}));
        assert_eq!(health(json!({"failures": 0})), "health: `failures` must be 1 to 100, not 0");
        assert!(health(json!({"down_for": "10 s"})).contains("not a duration"));
        assert!(health(json!({"down_for": "0s"})).contains("more than 0"));
        assert!(health(json!({"down_for": -1})).contains("must be 0 to 86400 seconds"));
        assert!(health(json!({"down_for": "2d"})).contains("not a duration"));
        for (d, ns) in
            [(json!("500ms"), S / 2), (json!("10s"), 10 * S), (json!("2m"), 120 * S), (json!("1h"), 3600 * S), (json!(1.5), 3 * S / 2)]
        {
            assert_eq!(policy(json!({"backends": b, "health": {"down_for": d}})).down_for_ns, ns);
        }
    }

    #[test]
    fn rules_match_host_path_and_header() {
        let mut p = policy(json!({
            "backends": three(),
            "rules": [
                {"host": ["img.example", "static.example"], "backends": ["img1"]},
                {"path_prefix": "/api/", "header": {"name": "X-Tenant", "value": "blue"}, "backends": ["web2"]},
                {"header": {"name": "user-agent", "prefix": "curl/"}, "backends": ["web1"]},
                {"path_prefix": "/only/", "backends": ["web1"]}
            ]
        }));
        let n = |p: &mut Policy, head: &str| name(p, head);
        assert_eq!(n(&mut p, "GET / HTTP/1.1\r\nHost: IMG.Example:8080").unwrap(), "img1", "any case, port dropped");
        assert_eq!(n(&mut p, "GET / HTTP/1.1\r\nHost: static.example").unwrap(), "img1", "a list of hosts");
        assert_eq!(n(&mut p, "GET http://img.example/x HTTP/1.1\r\nHost: other").unwrap(), "img1", "the absolute URI's host");
        assert_eq!(n(&mut p, "GET /api/v1?t=1 HTTP/1.1\r\nx-tenant: blue").unwrap(), "web2");
        assert_eq!(n(&mut p, "GET /api/v1 HTTP/1.1\r\nX-Tenant: Blue"), Err(Refuse::NoRule), "values are exact");
        assert_eq!(n(&mut p, "GET /api/v1 HTTP/1.1\r\nX-Tenant: red\r\nX-Tenant: blue").unwrap(), "web2", "any occurrence");
        assert_eq!(n(&mut p, "GET /API/v1 HTTP/1.1\r\nX-Tenant: blue"), Err(Refuse::NoRule), "paths keep their case");
        assert_eq!(n(&mut p, "GET http://a.example/api/x HTTP/1.1\r\nX-Tenant: blue").unwrap(), "web2", "the absolute URI's path");
        assert_eq!(n(&mut p, "GET /?/api/ HTTP/1.1\r\nX-Tenant: blue"), Err(Refuse::NoRule), "the query is not the path");
        assert_eq!(n(&mut p, "GET / HTTP/1.1\r\nUser-Agent: curl/8.5").unwrap(), "web1", "a prefix");
        assert_eq!(n(&mut p, "GET /only/a?b HTTP/1.0").unwrap(), "web1");
        assert_eq!(n(&mut p, "GET /only HTTP/1.0"), Err(Refuse::NoRule));
        assert_eq!(n(&mut p, "GET / HTTP/1.1\r\nHost: img.example.org"), Err(Refuse::NoRule), "hosts are whole");
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let mut p = policy(json!({
            "backends": three(),
            "rules": [
                {"path_prefix": "/img/", "backends": ["img1"]},
                {"host": "img.example", "backends": ["web1"]},
                {"backends": ["web2"]}
            ]
        }));
        assert_eq!(pick(&mut p, "GET /img/a HTTP/1.1\r\nHost: img.example", client(1), 0).unwrap().rule, 0);
        assert_eq!(name(&mut p, "GET /img/a HTTP/1.1\r\nHost: img.example").unwrap(), "img1");
        assert_eq!(name(&mut p, "GET /a HTTP/1.1\r\nHost: img.example").unwrap(), "web1");
        assert_eq!(pick(&mut p, "GET /a HTTP/1.1", client(1), 0).unwrap().rule, 2);
        // Without rules: everything, to every backend.
        let mut p = policy(json!({"backends": three()}));
        let names: Vec<_> = (0..4).map(|_| name(&mut p, "GET / HTTP/1.1").unwrap()).collect();
        assert_eq!(names, ["web2", "web1", "img1", "web2"]);
    }

    #[test]
    fn round_robin_splits_exactly_by_weight() {
        let mut p = policy(json!({"backends": three(), "rules": [{"backends": ["web1", "web2"], "balance": "round-robin"}]}));
        let names: Vec<_> = (0..300).map(|_| name(&mut p, "GET / HTTP/1.1").unwrap()).collect();
        assert_eq!(names[..3], ["web2", "web1", "web2"], "smooth: spread, not web2 twice in a row each time");
        assert_eq!(names.iter().filter(|n| *n == "web1").count(), 100);
        assert_eq!(names.iter().filter(|n| *n == "web2").count(), 200);
        let v: Vec<_> = p.backends().map(|b| (b.picked, b.open)).collect();
        assert_eq!(v, [(100, 100), (200, 200), (0, 0)]);
    }

    #[test]
    fn least_connections_follows_closed() {
        let mut p = policy(json!({"backends": three(), "rules": [{"backends": ["web1", "web2"], "balance": "least-connections"}]}));
        // Nothing open: by weight (web2 first), then whichever has fewer for its weight.
        let picks: Vec<_> = (0..3).map(|_| pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap().backend).collect();
        assert_eq!(picks, [1, 0, 1], "1/1 against 2/2: even");
        // web1 has 1 open for weight 1, web2 2 for 2: tied; close both of web2's.
        p.closed(1);
        p.closed(1);
        assert_eq!(pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap().backend, 1);
        assert_eq!(pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap().backend, 1, "2/2 against 1/1: tied, web2's turn");
        p.closed(0);
        assert_eq!(pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap().backend, 0, "0 open");
        p.closed(7);
        for _ in 0..5 {
            p.closed(0);
        }
        assert_eq!(p.backends().map(|b| b.open).collect::<Vec<_>>(), [0, 2, 0], "closing none open is ignored");
        // With connections held open, the split follows the weights.
        let mut p = policy(json!({"backends": three(), "rules": [{"backends": ["web1", "web2"], "balance": "least-connections"}]}));
        for _ in 0..300 {
            pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap();
        }
        assert_eq!(p.backends().map(|b| b.open).collect::<Vec<_>>(), [100, 200, 0]);
    }

    #[test]
    fn hash_is_stable_per_key_and_spread() {
        let mut p = policy(json!({
            "backends": [
                {"name": "a", "address": "198.18.2.1:80"}, {"name": "b", "address": "198.18.2.2:80"},
                {"name": "c", "address": "198.18.2.3:80"}, {"name": "d", "address": "198.18.2.4:80"}
            ],
            "rules": [
                {"path_prefix": "/t/", "backends": ["a", "b", "c", "d"], "balance": "hash", "hash_on": "header:X-Tenant"},
                {"path_prefix": "/h/", "backends": ["a", "b", "c", "d"], "balance": "hash", "hash_on": "host"},
                {"backends": ["a", "b", "c", "d"], "balance": "hash"}
            ]
        }));
        let mut by_source = [0; 4];
        for n in 0..=255u8 {
            let first = pick(&mut p, "GET / HTTP/1.1", client(n), 0).unwrap().backend;
            assert_eq!(pick(&mut p, "GET /x HTTP/1.1", client(n), 5 * S).unwrap().backend, first, "the same source, the same backend");
            by_source[first] += 1;
        }
        assert!(by_source.iter().all(|&n| (32..=96).contains(&n)), "spread: {by_source:?}");
        let mut by_tenant = [0; 4];
        for t in 0..256 {
            let head = format!("GET /t/ HTTP/1.1\r\nX-Tenant: tenant{t}");
            let first = pick(&mut p, &head, client(1), 0).unwrap().backend;
            assert_eq!(pick(&mut p, &head, client(2), 0).unwrap().backend, first, "the header decides, not the source");
            by_tenant[first] += 1;
        }
        assert!(by_tenant.iter().all(|&n| (32..=96).contains(&n)), "spread: {by_tenant:?}");
        let a = pick(&mut p, "GET /h/ HTTP/1.1\r\nHost: Shop.Example", client(1), 0).unwrap().backend;
        assert_eq!(pick(&mut p, "GET /h/ HTTP/1.1\r\nHost: shop.example:80", client(9), 0).unwrap().backend, a, "hosts hash in any case");
        // Without the key: the source's hash.
        let s = pick(&mut p, "GET / HTTP/1.1", client(3), 0).unwrap().backend;
        assert_eq!(pick(&mut p, "GET /t/ HTTP/1.1", client(3), 0).unwrap().backend, s);
        // A backend drained: only its keys move; back again, they return.
        let before: Vec<_> = (0..=255u8).map(|n| pick(&mut p, "GET / HTTP/1.1", client(n), 0).unwrap().backend).collect();
        p.drain("b", true).unwrap();
        let during: Vec<_> = (0..=255u8).map(|n| pick(&mut p, "GET / HTTP/1.1", client(n), 0).unwrap().backend).collect();
        for (was, now) in before.iter().zip(&during) {
            assert_ne!(*now, 1);
            if *was != 1 {
                assert_eq!(was, now, "a key not on the drained backend stayed");
            }
        }
        p.drain("b", false).unwrap();
        let after: Vec<_> = (0..=255u8).map(|n| pick(&mut p, "GET / HTTP/1.1", client(n), 0).unwrap().backend).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn failures_take_a_backend_down_until_retried() {
        let mut p =
            policy(json!({"backends": three(), "rules": [{"backends": ["web1", "web2"]}], "health": {"failures": 3, "down_for": "10s"}}));
        let state = |p: &Policy, i: usize| p.backends().nth(i).unwrap().state;
        p.outcome(1, false, 0);
        p.outcome(1, false, S);
        p.outcome(1, true, S);
        p.outcome(1, false, 2 * S);
        p.outcome(1, false, 2 * S);
        assert_eq!(state(&p, 1), BackendState::Up, "a success in between restarts the count");
        p.outcome(1, false, 3 * S);
        assert_eq!(state(&p, 1), BackendState::Down, "3 in a row");
        assert_eq!(p.backends().nth(1).unwrap().failures, 5);
        for t in 3..13 {
            assert_eq!(pick(&mut p, "GET / HTTP/1.1", client(1), t * S).unwrap().backend, 0, "down: skipped");
        }
        // Weights 1:2: back in the rotation, it is picked within two requests.
        let tried = |p: &mut Policy, now_ns| (0..2).any(|_| pick(p, "GET / HTTP/1.1", client(1), now_ns).unwrap().backend == 1);
        assert!(tried(&mut p, 13 * S), "down_for passed: tried again");
        assert_eq!(state(&p, 1), BackendState::Retrying);
        p.outcome(1, false, 14 * S);
        assert_eq!(state(&p, 1), BackendState::Down, "one failure on trial: down again");
        assert_eq!(pick(&mut p, "GET / HTTP/1.1", client(1), 23 * S).unwrap().backend, 0, "for down_for from that failure");
        p.outcome(1, false, 23 * S);
        assert!(
            (0..3).all(|_| pick(&mut p, "GET / HTTP/1.1", client(1), 32 * S).unwrap().backend == 0),
            "failures while down restart the timer"
        );
        assert!(tried(&mut p, 33 * S));
        p.outcome(1, true, 33 * S);
        assert_eq!(state(&p, 1), BackendState::Up, "one success: up");
        p.outcome(1, false, 34 * S);
        p.outcome(1, false, 34 * S);
        assert_eq!(state(&p, 1), BackendState::Up, "and it takes 3 failures again");
        // Out of range: ignored.
        p.outcome(99, false, 0);
    }

    #[test]
    fn all_backends_down_take_requests_anyway_and_all_drained_refuses() {
        let mut p = policy(json!({"backends": three(), "rules": [
            {"path_prefix": "/h", "backends": ["web1", "web2"], "balance": "hash"},
            {"path_prefix": "/l", "backends": ["web1", "web2"], "balance": "least-connections"},
            {"backends": ["web1", "web2"]}
        ], "health": {"failures": 1}}));
        p.outcome(0, false, 0);
        p.drain("web2", true).unwrap();
        // web1 is down and web2 drained: panic routing sends each rule's requests to web1.
        for head in ["GET /h HTTP/1.1", "GET /l HTTP/1.1", "GET / HTTP/1.1"] {
            assert_eq!(pick(&mut p, head, client(1), S).map(|k| k.backend), Ok(0), "{head}");
        }
        assert_eq!(p.panic_picks(), 3);
        assert_eq!(pick(&mut p, "GET /h HTTP/1.1", client(1), 10 * S).unwrap().backend, 0, "the hash table takes it back when retried");
        assert_eq!(p.panic_picks(), 3, "retried: no panic");
        assert_eq!(p.backends().map(|b| b.state.name()).collect::<Vec<_>>(), ["retrying", "drained", "up"]);
        // Both drained: nothing takes new requests.
        p.drain("web1", true).unwrap();
        for head in ["GET /h HTTP/1.1", "GET /l HTTP/1.1", "GET / HTTP/1.1"] {
            assert_eq!(pick(&mut p, head, client(1), 11 * S), Err(Refuse::NoBackend), "{head}");
        }
    }

    #[test]
    fn drained_backends_get_no_new_requests() {
        let mut p = policy(json!({"backends": three(), "rules": [{"backends": ["web1", "web2"]}]}));
        let first = pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap();
        assert_eq!(first.backend, 1);
        assert_eq!(first.address, "198.18.2.12:80".parse().unwrap());
        p.drain("web2", true).unwrap();
        assert!((0..10).all(|_| pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap().backend == 0));
        let web2 = p.backends().nth(1).unwrap();
        assert_eq!((web2.state, web2.open, web2.picked), (BackendState::Drained, 1, 1), "its open connection goes on");
        p.drain("web2", false).unwrap();
        let names: Vec<_> = (0..30).map(|_| pick(&mut p, "GET / HTTP/1.1", client(1), 0).unwrap().backend).collect();
        assert_eq!(names.iter().filter(|&&b| b == 1).count(), 20, "undrained: its share again");
        assert_eq!(p.drain("web9", true), Err(PolicyError::NoSuchBackend("web9".into())));
        assert_eq!(p.rule_count(), 1);
    }
}
