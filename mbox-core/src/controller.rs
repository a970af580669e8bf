//! The controller: turns the NFs' subscriptions and publications into the service graph.
//!
//! For every event type the graph holds a route: the NFs that get the event, grouped in stages.
//! Consecutive read-only subscribers (in config order) form one stage and get the event in
//! parallel; an NF that may drop or modify is a stage of its own, so it sees the event only
//! after the stages before it have passed it, and the stages after it only if it passes it.
//! Routing an event is then a table lookup by its type's dense index.
//!
//! A config that cannot work is refused here: a subscription to a type nobody publishes, or a
//! cycle of NFs each subscribing to what the next publishes.

use crate::events::registry::TypeRegistry;
use mbox_abi::EventType;
use std::fmt::Write as _;
use thiserror::Error;

/// What the controller needs to know about one NF instance.
#[derive(Debug, Clone)]
pub struct NfSpec {
    /// Instance name, unique in the config.
    pub name: String,
    pub read_only: bool,
    pub subscribes: Vec<(String, EventType)>,
    /// Types the NF gets only for flows it subscribes to (`Host::subscribe`): on its routes,
    /// muted for every flow until then.
    pub on_demand: Vec<(String, EventType)>,
    pub publishes: Vec<(String, EventType)>,
}

impl NfSpec {
    /// Everything routed to the NF: its subscriptions and its on-demand types.
    pub fn routed(&self) -> impl Iterator<Item = &(String, EventType)> {
        self.subscribes.iter().chain(&self.on_demand)
    }
}

/// Index of an NF in config order.
pub type NfIndex = u16;

/// The NFs one event type goes to, stage by stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub stages: Vec<Vec<NfIndex>>,
}

impl Route {
    /// True when nobody subscribes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
}

/// Why a config's NFs do not form a usable graph.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GraphError {
    /// `hint`: the bundled NFs that would publish it (`registry::bundled_publishers_hint`).
    #[error("NF `{nf}` subscribes to `{path}`, but neither the stack nor any NF publishes it or a type below it{hint}")]
    Unpublished { nf: String, path: String, hint: String },
    #[error("the NFs form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("two NFs are named `{0}`; give each instance a unique `name`")]
    DuplicateName(String),
    #[error(
        "NF `{nf}` gets `{path}` per flow (`subscribe_per_flow`) but also subscribes to it or a type above it; list it in one of the two"
    )]
    OnDemandSubscribed { nf: String, path: String },
    #[error("the NFs get {count} distinct types per flow (`subscribe_per_flow`); at most {max}")]
    TooManyOnDemand { count: usize, max: usize },
}

/// Who publishes an event: the stack or an NF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    Stack,
    Nf(NfIndex),
}

/// The compiled service graph. See the module documentation.
#[derive(Debug, Clone)]
pub struct ServiceGraph {
    routes: Vec<Route>,
    nfs: Vec<NfSpec>,
    stack_publishes: Vec<EventType>,
    /// Each on-demand type, with the NFs (by bit) that get it.
    on_demand: Vec<(EventType, u64)>,
    /// The `[[service]]`s: name, what they serve (for the graph), and their NFs (by bit).
    services: Vec<(String, String, u64)>,
}

impl ServiceGraph {
    /// Checks and compiles the graph for the types in `registry`.
    pub fn compile(registry: &TypeRegistry, stack_publishes: &[EventType], nfs: Vec<NfSpec>) -> Result<ServiceGraph, GraphError> {
        for (i, nf) in nfs.iter().enumerate() {
            if nfs[..i].iter().any(|other| other.name == nf.name) {
                return Err(GraphError::DuplicateName(nf.name.clone()));
            }
        }
        let mut on_demand: Vec<(EventType, u64)> = Vec::new();
        for (i, nf) in nfs.iter().enumerate() {
            for (path, ty) in &nf.on_demand {
                if nf.subscribes.iter().any(|(_, s)| ty.is_a(*s) || s.is_a(*ty)) {
                    return Err(GraphError::OnDemandSubscribed { nf: nf.name.clone(), path: path.clone() });
                }
                match on_demand.iter_mut().find(|(t, _)| t == ty) {
                    Some((_, mask)) => *mask |= 1 << i,
                    None => on_demand.push((*ty, 1 << i)),
                }
            }
        }
        if on_demand.len() > crate::runtime::router::MAX_MUTES / 2 {
            // Half the per-flow mutes stay free for unsubscriptions.
            return Err(GraphError::TooManyOnDemand { count: on_demand.len(), max: crate::runtime::router::MAX_MUTES / 2 });
        }
        let graph = ServiceGraph { routes: Vec::new(), nfs, stack_publishes: stack_publishes.to_vec(), on_demand, services: Vec::new() };
        for nf in &graph.nfs {
            for (path, sub) in nf.routed() {
                if graph.publishers_of(*sub).next().is_none() {
                    let hint = crate::events::registry::bundled_publishers_hint(path);
                    return Err(GraphError::Unpublished { nf: nf.name.clone(), path: path.clone(), hint });
                }
            }
        }
        graph.check_acyclic()?;
        let routes = registry.types().iter().map(|t| graph.route_for(t.ty)).collect();
        Ok(ServiceGraph { routes, ..graph })
    }

    /// The route of the type with dense index `idx`.
    #[inline]
    pub fn route(&self, idx: usize) -> &Route {
        &self.routes[idx]
    }

    /// How many routes there are (one per registered type).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// True when anybody subscribes to the type with dense index `idx`.
    #[inline]
    pub fn wants(&self, idx: usize) -> bool {
        !self.routes[idx].is_empty()
    }

    /// The NFs, in config order.
    pub fn nfs(&self) -> &[NfSpec] {
        &self.nfs
    }

    /// Records a `[[service]]`: its name, what it serves (addresses and ports, for the graph)
    /// and the NFs (by bit) that get its connections' events — and no other flow's.
    pub fn add_service(&mut self, name: String, serves: String, nfs: u64) {
        self.services.push((name, serves, nfs));
    }

    /// NFs (by bit) that serve a `[[service]]`.
    pub fn serving_nfs(&self) -> u64 {
        self.services.iter().fold(0, |acc, (_, _, nfs)| acc | nfs)
    }

    /// True when an NF that serves no service subscribes to the type with dense index `idx`
    /// (what decides the monitor's depth: a service's NFs read only its connections).
    pub fn wants_beyond_services(&self, idx: usize) -> bool {
        let serving = self.serving_nfs();
        self.routes[idx].stages.iter().flatten().any(|&nf| serving & (1 << nf) == 0)
    }

    /// The on-demand types, each with the NFs (by bit) that get it per flow.
    pub fn on_demand(&self) -> &[(EventType, u64)] {
        &self.on_demand
    }

    /// True when events of `ty` (or of a type below or above it) can reach NF `nf`: what
    /// `Host::subscribe` may turn on.
    pub fn may_route(&self, nf: usize, ty: EventType) -> bool {
        self.nfs.get(nf).is_some_and(|spec| spec.routed().any(|(_, s)| ty.is_a(*s) || s.is_a(ty)))
    }

    /// Publishers of some type at or below `sub`.
    fn publishers_of(&self, sub: EventType) -> impl Iterator<Item = Publisher> + '_ {
        let stack = self.stack_publishes.iter().any(|p| p.is_a(sub)).then_some(Publisher::Stack);
        let nfs = self
            .nfs
            .iter()
            .enumerate()
            .filter(move |(_, nf)| nf.publishes.iter().any(|(_, p)| p.is_a(sub)))
            .map(|(i, _)| Publisher::Nf(i as NfIndex));
        stack.into_iter().chain(nfs)
    }

    /// NFs that subscribe to something NF `from` publishes.
    fn downstream(&self, from: usize) -> impl Iterator<Item = usize> + '_ {
        let publishes = &self.nfs[from].publishes;
        self.nfs
            .iter()
            .enumerate()
            .filter(move |(_, nf)| nf.routed().any(|(_, s)| publishes.iter().any(|(_, p)| p.is_a(*s))))
            .map(|(i, _)| i)
    }

    fn check_acyclic(&self) -> Result<(), GraphError> {
        // Depth-first search with an explicit path; 0 = unvisited, 1 = on the path, 2 = done.
        let mut state = vec![0u8; self.nfs.len()];
        let mut path = Vec::new();
        for start in 0..self.nfs.len() {
            if state[start] == 0 {
                self.visit(start, &mut state, &mut path)?;
            }
        }
        Ok(())
    }

    fn visit(&self, node: usize, state: &mut [u8], path: &mut Vec<usize>) -> Result<(), GraphError> {
        state[node] = 1;
        path.push(node);
        for next in self.downstream(node) {
            match state[next] {
                1 => {
                    let from = path.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..].iter().map(|&n| self.nfs[n].name.clone()).collect();
                    cycle.push(self.nfs[next].name.clone());
                    return Err(GraphError::Cycle(cycle));
                }
                0 => self.visit(next, state, path)?,
                _ => {}
            }
        }
        path.pop();
        state[node] = 2;
        Ok(())
    }

    fn route_for(&self, ty: EventType) -> Route {
        let mut stages: Vec<Vec<NfIndex>> = Vec::new();
        let mut open_parallel = false;
        for (i, nf) in self.nfs.iter().enumerate() {
            if !nf.routed().any(|(_, s)| ty.is_a(*s)) {
                continue;
            }
            if nf.read_only && open_parallel {
                if let Some(stage) = stages.last_mut() {
                    stage.push(i as NfIndex);
                }
            } else {
                stages.push(vec![i as NfIndex]);
            }
            open_parallel = nf.read_only;
        }
        Route { stages }
    }

    /// The graph in Graphviz DOT: publishers to subscribers, edges labelled with the
    /// subscriptions they serve, and every route's stages as comments.
    pub fn to_dot(&self, registry: &TypeRegistry) -> String {
        let mut dot = String::from("digraph mbox {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
        dot.push_str("  stack [label=\"stack\\n(L2/3 µStack)\", shape=box3d, style=\"\"];\n");
        for (i, (name, serves, nfs)) in self.services.iter().enumerate() {
            let _ = writeln!(dot, "  service{i} [label=\"service {name}\\n{serves}\\n(Endpoint µStack)\", shape=box3d, style=\"\"];");
            for nf in (0..self.nfs.len()).filter(|n| nfs & (1 << n) != 0) {
                let _ = writeln!(dot, "  service{i} -> nf{nf} [label=\"its connections' events\", style=dashed];");
            }
        }
        for (i, nf) in self.nfs.iter().enumerate() {
            let role = if nf.read_only { "read-only" } else { "may drop or modify" };
            let _ =
                writeln!(dot, "  nf{i} [label=\"{}\\n{role}\"{}];", nf.name, if nf.read_only { "" } else { ", style=\"rounded,bold\"" });
        }
        let node = |p: Publisher| match p {
            Publisher::Stack => "stack".to_string(),
            Publisher::Nf(i) => format!("nf{i}"),
        };
        let mut edges: Vec<(String, String, Vec<String>)> = Vec::new();
        for (i, nf) in self.nfs.iter().enumerate() {
            let per_flow = nf.on_demand.iter().map(|(path, ty)| (format!("{path} (per flow)"), ty));
            for (label, sub) in nf.subscribes.iter().map(|(path, ty)| (path.clone(), ty)).chain(per_flow) {
                for publisher in self.publishers_of(*sub) {
                    let (from, to) = (node(publisher), format!("nf{i}"));
                    match edges.iter_mut().find(|(f, t, _)| *f == from && *t == to) {
                        Some((_, _, labels)) => labels.push(label.clone()),
                        None => edges.push((from, to, vec![label.clone()])),
                    }
                }
            }
        }
        for (from, to, labels) in edges {
            let _ = writeln!(dot, "  {from} -> {to} [label=\"{}\"];", labels.join("\\n"));
        }
        dot.push_str("  // routes: event type: stage -> stage (NFs in one stage run in parallel)\n");
        for (idx, route) in self.routes.iter().enumerate() {
            if route.is_empty() {
                continue;
            }
            let stages: Vec<String> = route
                .stages
                .iter()
                .map(|s| format!("[{}]", s.iter().map(|&n| self.nfs[usize::from(n)].name.as_str()).collect::<Vec<_>>().join(", ")))
                .collect();
            let _ = writeln!(dot, "  // {}: {}", registry.path(idx), stages.join(" -> "));
        }
        dot.push_str("}\n");
        dot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_abi::builtin;

    fn spec(reg: &mut TypeRegistry, name: &str, read_only: bool, subs: &[&str], pubs: &[&str]) -> NfSpec {
        let publishes = pubs
            .iter()
            .map(|p| {
                let idx = reg.register(p).unwrap();
                (p.to_string(), reg.types()[idx].ty)
            })
            .collect();
        let subscribes = subs.iter().map(|s| (s.to_string(), reg.type_of(s).unwrap())).collect();
        NfSpec { name: name.into(), read_only, subscribes, on_demand: Vec::new(), publishes }
    }

    fn stack() -> Vec<EventType> {
        builtin::ALL.iter().map(|(_, t)| *t).filter(|t| t.is_a(builtin::PKT) || t.is_a(builtin::FLOW)).collect()
    }

    #[test]
    fn readers_share_a_stage_and_writers_get_their_own() {
        let mut reg = TypeRegistry::with_builtins();
        let nfs = vec![
            spec(&mut reg, "a", true, &["PKT"], &[]),
            spec(&mut reg, "b", true, &["PKT/TCP"], &[]),
            spec(&mut reg, "fw", false, &["PKT"], &[]),
            spec(&mut reg, "c", true, &["PKT"], &[]),
            spec(&mut reg, "d", true, &["PKT/UDP"], &[]),
        ];
        let g = ServiceGraph::compile(&reg, &stack(), nfs).unwrap();
        let tcp = g.route(reg.index_of("PKT/TCP/SYN").unwrap());
        assert_eq!(tcp.stages, vec![vec![0, 1], vec![2], vec![3]]);
        let udp = g.route(reg.index_of("PKT/UDP").unwrap());
        assert_eq!(udp.stages, vec![vec![0], vec![2], vec![3, 4]]);
        assert!(!g.wants(reg.index_of("FLOW/TCP/NEW").unwrap()));
    }

    #[test]
    fn unpublished_subscriptions_and_cycles_are_refused() {
        let mut reg = TypeRegistry::with_builtins();
        let nfs = vec![spec(&mut reg, "logger", true, &["ALERT"], &[])];
        let err = ServiceGraph::compile(&reg, &stack(), nfs).unwrap_err();
        assert!(matches!(err, GraphError::Unpublished { ref path, .. } if path == "ALERT"), "{err}");

        let mut reg = TypeRegistry::with_builtins();
        reg.register("ALERT/A").unwrap();
        reg.register("ALERT/B").unwrap();
        let nfs = vec![spec(&mut reg, "x", true, &["PKT", "ALERT/B"], &["ALERT/A"]), spec(&mut reg, "y", true, &["ALERT/A"], &["ALERT/B"])];
        let err = ServiceGraph::compile(&reg, &stack(), nfs).unwrap_err();
        assert_eq!(err, GraphError::Cycle(vec!["x".into(), "y".into(), "x".into()]));

        let mut reg = TypeRegistry::with_builtins();
        let nfs = vec![spec(&mut reg, "self", true, &["ALERT"], &["ALERT/SELF"])];
        assert!(matches!(ServiceGraph::compile(&reg, &stack(), nfs), Err(GraphError::Cycle(_))));
    }

    #[test]
    fn dot_names_publishers_subscribers_and_routes() {
        let mut reg = TypeRegistry::with_builtins();
        let nfs = vec![
            spec(&mut reg, "hh", true, &["FLOW/TCP/TERMINATE"], &["ALERT/HEAVY_HITTER"]),
            spec(&mut reg, "logger", true, &["ALERT"], &[]),
        ];
        let g = ServiceGraph::compile(&reg, &stack(), nfs).unwrap();
        let dot = g.to_dot(&reg);
        assert!(dot.contains("stack -> nf0 [label=\"FLOW/TCP/TERMINATE\"]"), "{dot}");
        assert!(dot.contains("nf0 -> nf1 [label=\"ALERT\"]"), "{dot}");
        assert!(dot.contains("// ALERT/HEAVY_HITTER: [logger]"), "{dot}");
    }

    #[test]
    fn services_show_in_the_graph_and_their_nfs_do_not_count_for_other_flows() {
        let mut reg = TypeRegistry::with_builtins();
        let nfs = vec![
            spec(&mut reg, "ids", true, &["FLOW/TCP/DATA_RDY"], &[]),
            spec(&mut reg, "web", true, &["FLOW/TCP/DATA_RDY", "FLOW/TCP/SEND_ROOM"], &[]),
        ];
        let mut g = ServiceGraph::compile(&reg, &stack(), nfs).unwrap();
        let data = reg.index_of("FLOW/TCP/DATA_RDY").unwrap();
        let room = reg.index_of("FLOW/TCP/SEND_ROOM").unwrap();
        assert!(g.wants_beyond_services(room));
        g.add_service("site".into(), "198.18.0.80 port 80".into(), 0b10);
        assert_eq!(g.serving_nfs(), 0b10);
        assert!(g.wants_beyond_services(data), "the IDS still reads other flows' bytes");
        assert!(!g.wants_beyond_services(room), "only the service's NF wants room events");
        let dot = g.to_dot(&reg);
        assert!(dot.contains("service site\\n198.18.0.80 port 80") && dot.contains("service0 -> nf1"), "{dot}");
    }

    #[test]
    fn on_demand_types_are_routed_checked_and_bounded() {
        let mut reg = TypeRegistry::with_builtins();
        let stack = [builtin::FLOW_TCP_NEW, builtin::FLOW_TCP_DATA_RDY];
        let mut ids = spec(&mut reg, "ids", true, &["FLOW/TCP/NEW"], &[]);
        ids.on_demand = vec![("FLOW/TCP/DATA_RDY".into(), builtin::FLOW_TCP_DATA_RDY)];
        let graph = ServiceGraph::compile(&reg, &stack, vec![ids.clone()]).unwrap();
        assert_eq!(graph.on_demand(), &[(builtin::FLOW_TCP_DATA_RDY, 1)]);
        assert!(graph.may_route(0, builtin::FLOW_TCP_DATA_RDY) && !graph.may_route(0, builtin::PKT));
        let data = reg.index_of("FLOW/TCP/DATA_RDY").unwrap();
        assert_eq!(graph.route(data).stages, vec![vec![0]]);
        assert!(graph.to_dot(&reg).contains("FLOW/TCP/DATA_RDY (per flow)"));
        let mut both = ids.clone();
        both.subscribes.push(("FLOW/TCP".into(), builtin::FLOW_TCP));
        assert!(matches!(ServiceGraph::compile(&reg, &stack, vec![both]), Err(GraphError::OnDemandSubscribed { .. })));
        let mut unpublished = ids;
        unpublished.on_demand = vec![("ALERT".into(), builtin::ALERT)];
        assert!(matches!(ServiceGraph::compile(&reg, &stack, vec![unpublished]), Err(GraphError::Unpublished { .. })));
    }
}
