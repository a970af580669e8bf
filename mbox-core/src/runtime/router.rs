//! The service graph at run time: moves each event of a shard through the stages of its type's
//! route — the paper's central mechanism — as a state machine over event handles, with no
//! threads, rings or packets in it (the shard feeds it and acts on what it says).
//!
//! - **Stages.** An event is ready for the NFs of one stage at a time; read-only NFs of a stage
//!   get it in parallel, and the next stage opens when all of them are done with it.
//! - **Emission order per NF.** Each NF sees the events meant for it in the order the shard
//!   emitted them: an event that waits for an upstream stage holds back, for this NF, every
//!   event emitted after it — so a flow's end never overtakes its packets.
//! - **Per-flow mutes.** An NF that unsubscribed from a type for one flow is left out of that
//!   flow's events of the type (and a stage left empty is skipped). A type an NF gets on
//!   demand (`subscribe_per_flow`) starts muted for every flow until it subscribes.
//! - **Fail closed.** An event an NF of a stage drops skips the later stages; the caller marks
//!   an event dropped when an NF that may drop could not see it (its ring was full).
//!
//! An event is finished once its last stage is done and no NF's order queue holds it any more;
//! [`Router::next_finished`] hands it back (with whether it was dropped) for the shard to free
//! its slot and let its packet go.

use crate::controller::{NfIndex, ServiceGraph};
use crate::runtime::lane::FlowSubscription;
use mbox_abi::{EventHeader, EventType};
use std::collections::VecDeque;
use std::sync::Arc;

/// Marks an event that points into no held packet.
pub const NO_HELD: u32 = u32::MAX;

/// Where an event is on its route.
#[derive(Clone, Copy)]
struct EventMeta {
    route: u32,
    stage: u16,
    /// NFs of the current stage that have not finished.
    pending: u16,
    /// NFs whose order queue still holds the event.
    queued: u16,
    /// NFs (by bit) the event is ready for: their stage has been reached.
    ready: u64,
    /// NFs (by bit) that will never see the event: an upstream NF dropped it.
    skipped: u64,
    /// NFs (by bit) that unsubscribed from this event's type for its flow.
    excluded: u64,
    /// The held packet the event points into, or [`NO_HELD`].
    held: u32,
    published: bool,
    dropped: bool,
}

impl EventMeta {
    const IDLE: EventMeta = EventMeta {
        route: 0,
        stage: 0,
        pending: 0,
        queued: 0,
        ready: 0,
        skipped: 0,
        excluded: 0,
        held: NO_HELD,
        published: false,
        dropped: false,
    };
}

/// An event whose route is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub handle: u32,
    /// The held packet it pointed into ([`NO_HELD`] if none).
    pub held: u32,
    /// Its slot came from the NFs' publications, not the stack's.
    pub published: bool,
    /// An NF dropped it: its packet must not be sent.
    pub dropped: bool,
}

/// One type's mutes in one flow.
#[derive(Debug, Clone, Copy, Default)]
struct Mute {
    ty: EventType,
    /// NFs (by bit) left out of the flow's events of `ty`: they unsubscribed, or get `ty` on
    /// demand and have not subscribed.
    excluded: u64,
    /// NFs (by bit) that said they do not want them (unsubscribed): the stack may stop the
    /// work for the flow once all of its NFs did. An NF that merely has not subscribed yet may
    /// still, so it does not count.
    declined: u64,
}

/// The mutes of the flow with id `id` in a slot.
#[derive(Debug, Clone, Copy, Default)]
struct FlowMutes {
    id: u64,
    len: u8,
    entries: [Mute; MAX_MUTES],
}

/// Distinct types one flow's NFs may unsubscribe from, on-demand types included (further ones
/// are counted and ignored).
pub const MAX_MUTES: usize = 8;

/// `FlowSubscription::slot` of a change for every flow of the shard
/// ([`mbox_abi::FlowRef::every_flow`]).
pub const EVERY_FLOW: u32 = u32::MAX;

impl FlowSubscription {
    /// Applies this change of NF `nf` to one flow's mutes; false when it had no room left.
    fn apply(&self, m: &mut FlowMutes, nf: usize) -> bool {
        let bit = 1u64 << nf;
        let len = usize::from(m.len);
        if self.subscribe {
            for mute in m.entries[..len].iter_mut().filter(|mute| mute.ty.is_a(self.ty) || self.ty.is_a(mute.ty)) {
                mute.excluded &= !bit;
                mute.declined &= !bit;
            }
        } else if let Some(mute) = m.entries[..len].iter_mut().find(|mute| mute.ty == self.ty) {
            mute.excluded |= bit;
            mute.declined |= bit;
        } else if len < MAX_MUTES {
            m.entries[len] = Mute { ty: self.ty, excluded: bit, declined: bit };
            m.len += 1;
        } else {
            return false;
        }
        true
    }
}

impl FlowMutes {
    fn entries(&self) -> &[Mute] {
        &self.entries[..usize::from(self.len)]
    }

    /// NFs that do not get events of type `ty` of this flow.
    #[inline]
    fn excluded(&self, ty: EventType) -> u64 {
        self.entries().iter().filter(|m| ty.is_a(m.ty)).fold(0, |acc, m| acc | m.excluded)
    }

    /// NFs that declined events of type `ty` of this flow.
    fn declined(&self, ty: EventType) -> u64 {
        self.entries().iter().filter(|m| ty.is_a(m.ty)).fold(0, |acc, m| acc | m.declined)
    }
}

/// The run-time service graph of one shard. See the module documentation.
pub struct Router {
    graph: Arc<ServiceGraph>,
    meta: Vec<EventMeta>,
    /// Per NF: handles of the events it will see (or skip), in emission order.
    order: Vec<VecDeque<u32>>,
    /// Per route (dense type index), the NFs (by bit) on it.
    route_nfs: Vec<u64>,
    /// Mutes by flow slot (grown as slots are used).
    mutes: Vec<FlowMutes>,
    /// What every new flow starts with: the on-demand types, muted for the NFs that get them.
    initial_mutes: FlowMutes,
    /// Finished events not yet taken, oldest first (their packets go out in that order).
    finished: VecDeque<Finished>,
    /// Unsubscriptions that came after their flow ended (or past the per-flow limit).
    pub stale_unsubscriptions: u64,
}

impl Router {
    /// Bytes the router keeps per event slot.
    pub const SLOT_BYTES: usize = std::mem::size_of::<EventMeta>() + std::mem::size_of::<Finished>();

    /// A router for `slots` event handles and the NFs of `graph`; `backlog` is the expected
    /// length of an NF's order queue (its capacity, to avoid growing it while running).
    pub fn new(graph: Arc<ServiceGraph>, slots: usize, backlog: usize) -> Router {
        let nfs = graph.nfs().len();
        let mut initial_mutes = FlowMutes::default();
        for &(ty, nfs) in graph.on_demand().iter().take(MAX_MUTES) {
            initial_mutes.entries[usize::from(initial_mutes.len)] = Mute { ty, excluded: nfs, declined: 0 };
            initial_mutes.len += 1;
        }
        // Asked for every packet event: worked out once.
        let route_nfs =
            (0..graph.route_count()).map(|r| graph.route(r).stages.iter().flatten().fold(0, |acc, &nf| acc | 1 << nf)).collect();
        Router {
            initial_mutes,
            route_nfs,
            graph,
            meta: vec![EventMeta::IDLE; slots],
            order: (0..nfs).map(|_| VecDeque::with_capacity(backlog)).collect(),
            mutes: Vec::new(),
            finished: VecDeque::with_capacity(slots),
            stale_unsubscriptions: 0,
        }
    }

    pub fn graph(&self) -> &ServiceGraph {
        &self.graph
    }

    /// A new flow took slot `slot`: the previous flow's (un)subscriptions no longer apply.
    pub fn flow_started(&mut self, slot: u32, flow_id: u64) {
        let slot = slot as usize;
        if self.mutes.len() <= slot {
            self.mutes.resize(slot + 1, FlowMutes::default());
        }
        self.mutes[slot] = FlowMutes { id: flow_id, ..self.initial_mutes };
    }

    /// A flow that only the NFs of `nfs` (by bit) see — a connection a service terminates,
    /// whose events go to the service's NFs alone.
    pub fn flow_started_only(&mut self, slot: u32, flow_id: u64, nfs: u64) {
        self.flow_started(slot, flow_id);
        let m = &mut self.mutes[slot as usize];
        // The service's NFs may be muted for other flows (`mute_for_other_flows`, the only
        // mutes of the root type): not here. Their on-demand types stay muted until asked for.
        let mut kept = 0;
        for i in 0..usize::from(m.len) {
            if m.entries[i].ty != EventType::ROOT {
                m.entries[kept] = m.entries[i];
                kept += 1;
            }
        }
        if kept < MAX_MUTES {
            m.entries[kept] = Mute { ty: EventType::ROOT, excluded: !nfs, declined: !nfs };
            kept += 1;
        }
        m.len = kept as u8;
    }

    /// Leaves the NFs of `nfs` (by bit) out of every flow's events from now on (the NFs that
    /// serve a `[[service]]` get only its connections': see [`Router::flow_started_only`]).
    pub fn mute_for_other_flows(&mut self, nfs: u64) {
        if nfs == 0 {
            return;
        }
        let m = &mut self.initial_mutes;
        if usize::from(m.len) < MAX_MUTES {
            m.entries[usize::from(m.len)] = Mute { ty: EventType::ROOT, excluded: nfs, declined: nfs };
            m.len += 1;
        }
    }

    /// Applies NF `nf`'s unsubscription or subscription (counted, and ignored, when its flow
    /// has ended). A subscription undoes the mutes of the type's subtree and of the types above
    /// it: subscribing to `FLOW/TCP/DATA_RDY` after unsubscribing from `FLOW/TCP` turns all of
    /// `FLOW/TCP` back on.
    /// A change for [`EVERY_FLOW`] applies to every flow the shard has and to those it will
    /// have (what new flows start with).
    pub fn change_subscription(&mut self, nf: usize, change: FlowSubscription) {
        if change.slot == EVERY_FLOW {
            let mut applied = change.apply(&mut self.initial_mutes, nf);
            for m in &mut self.mutes {
                applied &= change.apply(m, nf);
            }
            if !applied {
                self.stale_unsubscriptions += 1;
            }
            return;
        }
        let Some(m) = self.mutes.get_mut(change.slot as usize).filter(|m| m.id == change.flow_id) else {
            self.stale_unsubscriptions += 1;
            return;
        };
        if !change.apply(m, nf) {
            self.stale_unsubscriptions += 1;
        }
    }

    /// NFs (by bit) that unsubscribed from this event's type for its flow.
    #[inline]
    fn excluded(&self, header: &EventHeader) -> u64 {
        match self.mutes.get(header.flow.slot as usize) {
            Some(m) if m.len > 0 && header.flow.is_some() && m.id == header.flow.id => m.excluded(header.ty),
            _ => 0,
        }
    }

    /// False once every NF of `nfs` (by bit) unsubscribed from `ty` for the flow in `slot`
    /// (true while nobody unsubscribed from anything there; an NF that gets `ty` on demand and
    /// has not subscribed yet still may).
    pub fn still_wanted(&self, slot: u32, ty: EventType, nfs: u64) -> bool {
        match self.mutes.get(slot as usize).filter(|m| m.len > 0) {
            Some(m) => nfs & !m.declined(ty) != 0,
            None => true,
        }
    }

    /// True while some NF of `nfs` (by bit) gets `ty`'s events of the flow `flow_id` in `slot`:
    /// it neither unsubscribed nor waits to subscribe (an on-demand type). Work done only for
    /// such NFs (copying a splice's bytes) stops when this turns false.
    pub fn wanted_now(&self, slot: u32, flow_id: u64, ty: EventType, nfs: u64) -> bool {
        match self.mutes.get(slot as usize).filter(|m| m.len > 0 && m.id == flow_id) {
            Some(m) => nfs & !m.excluded(ty) != 0,
            // A flow the slot does not know (yet): what every flow starts with.
            None => nfs & !self.initial_mutes.excluded(ty) != 0,
        }
    }

    /// NFs (by bit) on the route of the type with dense index `route`.
    #[inline]
    pub fn nfs_of(&self, route: usize) -> u64 {
        self.route_nfs[route]
    }

    /// Takes event `handle` (of the type with dense index `route`, described by `header`) onto
    /// its route: every NF of the route but those that unsubscribed from it for its flow will
    /// see it, in emission order; its first stage opens.
    #[inline]
    pub fn admit(&mut self, handle: u32, route: usize, header: &EventHeader, held: u32, published: bool) {
        let excluded = self.excluded(header);
        let mut queued = 0;
        for &nf in self.graph.route(route).stages.iter().flatten().filter(|&&nf| excluded & 1 << nf == 0) {
            self.order[usize::from(nf)].push_back(handle);
            queued += 1;
        }
        self.meta[handle as usize] = EventMeta { route: route as u32, queued, excluded, held, published, ..EventMeta::IDLE };
        self.start_stage(handle);
    }

    /// The next event NF `nf` may see now, in emission order, or `None` while the oldest event
    /// meant for it still waits for an upstream stage (later ones wait behind it). Events an
    /// upstream NF dropped are passed over. The caller sends what this returns to the NF and
    /// calls [`Router::done`] when the NF is finished with it.
    #[inline]
    pub fn next_for(&mut self, nf: usize) -> Option<u32> {
        let bit = 1u64 << nf;
        while let Some(&h) = self.order[nf].front() {
            let meta = &mut self.meta[h as usize];
            let skipped = meta.skipped & bit != 0;
            if !skipped && meta.ready & bit == 0 {
                return None;
            }
            self.order[nf].pop_front();
            meta.queued -= 1;
            self.try_finish(h);
            if !skipped {
                return Some(h);
            }
        }
        None
    }

    /// The dense type index of live event `handle`'s route.
    #[inline]
    pub fn route_of(&self, handle: u32) -> usize {
        self.meta[handle as usize].route as usize
    }

    /// True while NF `nf` still has events to see or pass over.
    pub fn has_queued(&self, nf: usize) -> bool {
        !self.order[nf].is_empty()
    }

    /// One NF of `handle`'s current stage is finished with it; `dropped` says whether the event
    /// stands dropped now (an NF's verdict, or the caller failing it closed).
    #[inline]
    pub fn done(&mut self, handle: u32, dropped: bool) {
        let meta = &mut self.meta[handle as usize];
        meta.pending -= 1;
        if meta.pending > 0 {
            return;
        }
        if dropped {
            // The NFs of later stages pass it over (in their emission order).
            let route = self.graph.route(meta.route as usize);
            for &nf in route.stages.iter().skip(usize::from(meta.stage) + 1).flatten() {
                meta.skipped |= 1 << nf & !meta.excluded;
            }
            meta.stage = route.stages.len() as u16;
            meta.dropped = true;
            self.try_finish(handle);
        } else {
            meta.stage += 1;
            self.start_stage(handle);
        }
    }

    /// Makes `handle` ready for the NFs of its current stage (skipping stages whose NFs all
    /// unsubscribed), or finishes it after the last.
    fn start_stage(&mut self, handle: u32) {
        let route = self.graph.route(self.meta[handle as usize].route as usize);
        let meta = &mut self.meta[handle as usize];
        while let Some(stage) = route.stages.get(usize::from(meta.stage)) {
            let mut pending = 0;
            for &nf in stage.iter().filter(|&&nf| meta.excluded & 1 << nf == 0) {
                meta.ready |= 1 << nf;
                pending += 1;
            }
            if pending > 0 {
                meta.pending = pending;
                return;
            }
            meta.stage += 1;
        }
        self.try_finish(handle);
    }

    /// Finishes `handle` once its last stage is done and no order queue holds it.
    fn try_finish(&mut self, handle: u32) {
        let meta = self.meta[handle as usize];
        let past_last = usize::from(meta.stage) >= self.graph.route(meta.route as usize).stages.len();
        if meta.queued == 0 && past_last {
            self.finished.push_back(Finished { handle, held: meta.held, published: meta.published, dropped: meta.dropped });
        }
    }

    /// The oldest finished event not taken yet.
    pub fn next_finished(&mut self) -> Option<Finished> {
        self.finished.pop_front()
    }

    /// Whether NF `nf` only reads (an event it could not see need not fail closed).
    pub fn is_read_only(&self, nf: NfIndex) -> bool {
        self.graph.nfs()[usize::from(nf)].read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::NfSpec;
    use crate::events::registry::TypeRegistry;
    use mbox_abi::{builtin, FlowEvent, FlowRef};

    /// A shard's worth of routing with NFs simulated: each NF has an inbox of the events sent
    /// to it, handled when the test says, with the verdict the test gives.
    struct Sim {
        router: Router,
        reg: TypeRegistry,
        inbox: Vec<VecDeque<u32>>,
        finished: Vec<Finished>,
    }

    impl Sim {
        /// NFs by (read-only, subscriptions), in config order.
        fn new(nfs: &[(bool, &[&str])]) -> Sim {
            let with_none: Vec<(bool, &[&str], &[&str])> = nfs.iter().map(|&(r, subs)| (r, subs, &[][..])).collect();
            Sim::with_on_demand(&with_none)
        }

        /// NFs by (read-only, subscriptions, on-demand types), in config order.
        fn with_on_demand(nfs: &[(bool, &[&str], &[&str])]) -> Sim {
            let reg = TypeRegistry::with_builtins();
            let paths = |list: &[&str]| list.iter().map(|s| (s.to_string(), reg.type_of(s).unwrap())).collect();
            let specs = nfs
                .iter()
                .enumerate()
                .map(|(i, (read_only, subs, on_demand))| NfSpec {
                    name: format!("nf{i}"),
                    read_only: *read_only,
                    subscribes: paths(subs),
                    on_demand: paths(on_demand),
                    publishes: Vec::new(),
                })
                .collect();
            let stack: Vec<EventType> = builtin::ALL.iter().map(|(_, t)| *t).filter(|t| !t.is_a(builtin::ALERT)).collect();
            let graph = ServiceGraph::compile(&reg, &stack, specs).unwrap();
            Sim { router: Router::new(Arc::new(graph), 64, 64), reg, inbox: vec![VecDeque::new(); nfs.len()], finished: Vec::new() }
        }

        /// Emits event `h` of type `path` for flow `flow` (id = slot).
        fn emit(&mut self, h: u32, path: &str, flow: u32) {
            let route = self.reg.index_of(path).unwrap();
            let ty = self.reg.types()[route].ty;
            let header =
                EventHeader::new::<FlowEvent>(ty, 0, FlowRef { id: u64::from(flow) + 1, slot: flow, shard: 0, dir: 0, _reserved: 0 });
            self.router.admit(h, route, &header, h + 100, false);
            self.deliver();
        }

        /// Moves every event that may go now into the NFs' inboxes.
        fn deliver(&mut self) {
            for nf in 0..self.inbox.len() {
                while let Some(h) = self.router.next_for(nf) {
                    self.inbox[nf].push_back(h);
                }
            }
            while let Some(f) = self.router.next_finished() {
                self.finished.push(f);
            }
        }

        /// NF `nf` handles the oldest event in its inbox, dropping it or not.
        fn handle(&mut self, nf: usize, drop: bool) -> u32 {
            let h = self.inbox[nf].pop_front().expect("an event waits");
            self.router.done(h, drop);
            self.deliver();
            h
        }

        fn inbox(&self, nf: usize) -> Vec<u32> {
            self.inbox[nf].iter().copied().collect()
        }

        fn finished(&self) -> Vec<u32> {
            self.finished.iter().map(|f| f.handle).collect()
        }
    }

    #[test]
    fn readers_see_an_event_in_parallel_and_it_finishes_after_both() {
        let mut s = Sim::new(&[(true, &["PKT"]), (true, &["PKT"])]);
        s.emit(1, "PKT/TCP", 0);
        s.emit(2, "PKT/UDP", 0);
        assert_eq!((s.inbox(0), s.inbox(1)), (vec![1, 2], vec![1, 2]));
        s.handle(1, false);
        assert!(s.finished().is_empty(), "nf0 still holds event 1");
        s.handle(0, false);
        assert_eq!(s.finished(), [1]);
        s.handle(0, false);
        s.handle(1, false);
        assert_eq!(s.finished(), [1, 2]);
        assert_eq!(s.finished[0], Finished { handle: 1, held: 101, published: false, dropped: false });
    }

    #[test]
    fn a_drop_in_stage_n_keeps_the_event_from_later_stages() {
        // nf0 reads, nf1 may drop, nf2 reads after it.
        let mut s = Sim::new(&[(true, &["PKT"]), (false, &["PKT"]), (true, &["PKT"])]);
        s.emit(1, "PKT/TCP", 0);
        s.emit(2, "PKT/TCP", 0);
        assert_eq!((s.inbox(0), s.inbox(1), s.inbox(2)), (vec![1, 2], vec![], vec![]), "stage 2 waits for stage 1");
        s.handle(0, false);
        assert_eq!(s.inbox(1), [1]);
        s.handle(1, true);
        assert!(s.inbox(2).is_empty(), "dropped: nf2 passes event 1 over, and 2 has not reached it");
        assert_eq!(s.finished, [Finished { handle: 1, held: 101, published: false, dropped: true }]);
        s.handle(0, false);
        s.handle(1, false);
        assert_eq!(s.inbox(2), [2]);
        s.handle(2, false);
        assert_eq!(s.finished(), [1, 2]);
        assert!(!s.finished[1].dropped);
    }

    #[test]
    fn each_nf_sees_events_in_emission_order_across_routes() {
        // nf1 gets PKT after the filter nf0, and FLOW at once: a flow's end emitted after its
        // packet must not overtake it.
        let mut s = Sim::new(&[(false, &["PKT"]), (true, &["PKT", "FLOW"])]);
        s.emit(1, "PKT/TCP", 0);
        s.emit(2, "FLOW/TCP/TERMINATE", 0);
        assert!(s.inbox(1).is_empty(), "the flow's end waits behind its packet");
        s.handle(0, false);
        assert_eq!(s.inbox(1), [1, 2]);
        // Dropped upstream, the packet is passed over and the end goes on.
        s.emit(3, "PKT/TCP", 0);
        s.emit(4, "FLOW/TCP/TERMINATE", 0);
        s.handle(0, true);
        assert_eq!(s.inbox(1), [1, 2, 4]);
    }

    #[test]
    fn an_nf_that_unsubscribed_from_a_flow_is_left_out_of_its_events() {
        let mut s = Sim::new(&[(true, &["FLOW/TCP/DATA_RDY"]), (true, &["FLOW/TCP/DATA_RDY"])]);
        s.router.flow_started(0, 1);
        s.router.flow_started(1, 2);
        let data = s.reg.type_of("FLOW/TCP/DATA_RDY").unwrap();
        s.router.change_subscription(0, FlowSubscription { flow_id: 1, slot: 0, ty: data, subscribe: false });
        s.emit(1, "FLOW/TCP/DATA_RDY", 0);
        s.emit(2, "FLOW/TCP/DATA_RDY", 1);
        assert_eq!((s.inbox(0), s.inbox(1)), (vec![2], vec![1, 2]), "only flow 0's events skip nf0");
        assert!(s.router.still_wanted(0, data, s.router.nfs_of(s.reg.index_of("FLOW/TCP/DATA_RDY").unwrap())));
        s.router.change_subscription(1, FlowSubscription { flow_id: 1, slot: 0, ty: data, subscribe: false });
        assert!(!s.router.still_wanted(0, data, 0b11), "nobody wants flow 0's bytes now");
        // An event nobody on its route wants finishes at once.
        s.emit(3, "FLOW/TCP/DATA_RDY", 0);
        assert_eq!(s.finished(), [3]);
        // The slot's next flow starts with nobody unsubscribed; a late request is stale.
        s.router.flow_started(0, 7);
        s.router.change_subscription(0, FlowSubscription { flow_id: 1, slot: 0, ty: data, subscribe: false });
        assert_eq!(s.router.stale_unsubscriptions, 1);
        assert!(s.router.still_wanted(0, data, 0b11));
    }

    #[test]
    fn an_unsubscription_for_every_flow_covers_the_flows_there_are_and_those_to_come() {
        let mut s = Sim::new(&[(true, &["PKT/TCP", "FLOW/TCP/DATA_RDY"]), (true, &["PKT/TCP"])]);
        s.router.flow_started(0, 1);
        let pkt = s.reg.type_of("PKT/TCP").unwrap();
        let route = s.reg.index_of("PKT/TCP").unwrap();
        s.router.change_subscription(0, FlowSubscription { flow_id: 0, slot: EVERY_FLOW, ty: pkt, subscribe: false });
        s.router.flow_started(1, 2);
        s.emit(1, "PKT/TCP", 0);
        s.emit(2, "PKT/TCP", 1);
        s.emit(3, "FLOW/TCP/DATA_RDY", 1);
        assert_eq!((s.inbox(0), s.inbox(1)), (vec![3], vec![1, 2]), "nf0's packets gone for the old flow and the new");
        assert!(s.router.wanted_now(1, 2, pkt, s.router.nfs_of(route)), "nf1 still gets them");
        assert!(!s.router.wanted_now(1, 2, pkt, 0b01));
        assert!(!s.router.wanted_now(5, 9, pkt, 0b01), "a flow the slot does not know yet starts without them");
        // And back for every flow.
        s.router.change_subscription(0, FlowSubscription { flow_id: 0, slot: EVERY_FLOW, ty: pkt, subscribe: true });
        s.router.flow_started(2, 3);
        s.emit(4, "PKT/TCP", 0);
        s.emit(5, "PKT/TCP", 2);
        assert_eq!(s.inbox(0), vec![3, 4, 5]);
    }

    /// A type an NF gets on demand reaches it only for the flows it subscribed to, from the
    /// subscription on; until then the stack's work for the flow stays wanted (it may still
    /// subscribe), and an unsubscription after it declines again.
    #[test]
    fn on_demand_types_reach_an_nf_only_for_the_flows_it_subscribed_to() {
        let mut s = Sim::with_on_demand(&[(true, &["FLOW/TCP/NEW"], &["FLOW/TCP/DATA_RDY"]), (true, &["FLOW/TCP/DATA_RDY"], &[])]);
        let data = s.reg.type_of("FLOW/TCP/DATA_RDY").unwrap();
        let data_route = s.reg.index_of("FLOW/TCP/DATA_RDY").unwrap();
        assert_eq!(s.router.nfs_of(data_route), 0b11, "the on-demand NF is on the route");
        s.router.flow_started(0, 1);
        s.router.flow_started(1, 2);
        s.emit(1, "FLOW/TCP/DATA_RDY", 0);
        assert_eq!((s.inbox(0), s.inbox(1)), (vec![], vec![1]), "muted until it asks");
        assert!(s.router.still_wanted(0, data, 0b01), "not asked yet is not declined");
        s.router.change_subscription(0, FlowSubscription { flow_id: 1, slot: 0, ty: data, subscribe: true });
        s.emit(2, "FLOW/TCP/DATA_RDY", 0);
        s.emit(3, "FLOW/TCP/DATA_RDY", 1);
        assert_eq!(s.inbox(0), vec![2], "flow 0's bytes from the subscription on, not flow 1's");
        s.router.change_subscription(0, FlowSubscription { flow_id: 1, slot: 0, ty: data, subscribe: false });
        assert!(!s.router.still_wanted(0, data, 0b01), "unsubscribed again: declined");
        // The slot's next flow (the test's ids follow the slot) starts muted again.
        s.router.flow_started(0, 1);
        s.emit(4, "FLOW/TCP/DATA_RDY", 0);
        assert_eq!(s.inbox(0), vec![2]);
        // Subscribing to the parent of an unsubscribed type turns it back on.
        s.router.change_subscription(1, FlowSubscription { flow_id: 1, slot: 0, ty: data, subscribe: false });
        s.emit(6, "FLOW/TCP/DATA_RDY", 0);
        s.router.change_subscription(1, FlowSubscription { flow_id: 1, slot: 0, ty: builtin::FLOW_TCP, subscribe: true });
        s.emit(5, "FLOW/TCP/DATA_RDY", 0);
        assert_eq!(s.inbox(1), vec![1, 2, 3, 4, 5], "event 6 came while nf1 was unsubscribed");
    }

    #[test]
    fn a_service_connection_keeps_its_nfs_on_demand_types_muted_until_asked() {
        // nf0 serves a service and gets its backends' bytes on demand; nf1 watches the rest.
        let mut s = Sim::with_on_demand(&[(true, &["FLOW/TCP/DATA_RDY"], &["FLOW/TCP/BACKEND_DATA"]), (true, &["FLOW/TCP/DATA_RDY"], &[])]);
        let backend = builtin::FLOW_TCP_BACKEND_DATA;
        s.router.mute_for_other_flows(0b01);
        s.router.flow_started_only(0, 1, 0b01);
        assert!(!s.router.wanted_now(0, 1, backend, 0b01), "on demand: not before it asks");
        s.emit(1, "FLOW/TCP/BACKEND_DATA", 0);
        s.emit(2, "FLOW/TCP/DATA_RDY", 0);
        assert_eq!((s.inbox(0), s.inbox(1)), (vec![2], vec![]), "the service's NF alone, its bytes on demand");
        s.router.change_subscription(0, FlowSubscription { flow_id: 1, slot: 0, ty: backend, subscribe: true });
        assert!(s.router.wanted_now(0, 1, backend, 0b01));
        assert!(!s.router.wanted_now(0, 2, backend, 0b01), "another flow in the slot starts muted");
        s.emit(3, "FLOW/TCP/BACKEND_DATA", 0);
        assert_eq!(s.inbox(0), vec![2, 3]);
        s.router.change_subscription(0, FlowSubscription { flow_id: 1, slot: 0, ty: backend, subscribe: false });
        assert!(!s.router.wanted_now(0, 1, backend, 0b01), "unsubscribed: the copying stops");
    }

    #[test]
    fn a_lagging_reader_holds_only_its_own_queue() {
        let mut s = Sim::new(&[(true, &["PKT"]), (true, &["PKT"])]);
        for h in 0..10 {
            s.emit(h, "PKT/UDP", 0);
            s.handle(1, false);
        }
        assert_eq!(s.inbox(0).len(), 10, "nf0 has not handled any");
        assert!(s.inbox(1).is_empty(), "nf1 kept up regardless");
        assert!(s.finished().is_empty(), "nothing is finished while nf0 holds it");
        for _ in 0..10 {
            s.handle(0, false);
        }
        assert_eq!(s.finished(), (0..10).collect::<Vec<_>>());
        assert!(!s.router.has_queued(0) && !s.router.has_queued(1));
    }
}
