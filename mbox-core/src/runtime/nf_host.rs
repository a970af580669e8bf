//! The thread that runs one NF instance: pops event handles from its lanes (one per shard),
//! hands them to the plugin a batch at a time, records verdicts and reports completions.
//!
//! A plugin that fails (returns an error or panics; the panic is caught on its side of the
//! boundary) is disabled: the thread keeps draining its lanes so nothing upstream stalls, counts
//! those events as dropped, and never calls the plugin again (nor drops it: its state may be
//! broken, and its destructor runs plugin code).

use super::lane::{LaneRx, Unsubscribe};
use super::park::{IdlePolicy, Idler, Waker};
use crate::control::live::{Publisher, Snapshot};
use crate::controller::ServiceGraph;
use crate::events::arena::EventBytes;
use crate::events::registry::TypeRegistry;
use abi_stable::std_types::{RResult, RSlice, RSliceMut};
use mbox_abi::{
    builtin_min_size, EventHeader, EventType, FlowRef, HostCalls, NfBox, PktEvent, PublishStatus, UnsubscribeStatus, Verdict,
    MAX_EVENT_SIZE,
};
use rtrb::Producer;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Events handed to the plugin per call.
pub const NF_BATCH: usize = 64;

/// Everything an NF thread needs; built by the pipeline.
pub struct NfWorker {
    pub name: String,
    pub read_only: bool,
    pub nf: NfBox,
    pub lanes: Vec<LaneRx>,
    pub waker: Arc<Waker>,
    pub idle: IdlePolicy,
    /// Types the NF declared it publishes.
    pub publishes: Vec<EventType>,
    pub registry: Arc<TypeRegistry>,
    pub graph: Arc<ServiceGraph>,
    /// The plugin's library and version, for reports.
    pub plugin: String,
    pub version: String,
    /// Where the thread publishes its report while it runs (for the control socket).
    pub live: Arc<Snapshot<NfReport>>,
}

/// What an NF thread counted.
#[derive(Debug, Clone, Default)]
pub struct NfReport {
    pub name: String,
    pub read_only: bool,
    /// The plugin library it runs, and the version the plugin declares.
    pub plugin: String,
    pub version: String,
    /// Events handed to the plugin.
    pub events: u64,
    pub batches: u64,
    /// Events not handed to the plugin because it had been disabled.
    pub dropped_disabled: u64,
    /// Events the NF answered with `Drop`.
    pub verdict_drops: u64,
    pub published: u64,
    /// Publications by dense type index.
    pub published_by_type: Vec<u64>,
    /// Publications refused, by reason.
    pub publish_not_declared: u64,
    pub publish_bad_size: u64,
    pub publish_no_subscriber: u64,
    /// Publications refused because the queue to the shard was full.
    pub publish_full: u64,
    /// Per-flow unsubscriptions the NF asked for.
    pub unsubscriptions: u64,
    /// Time spent inside the plugin.
    pub busy_ns: u64,
    /// Why the plugin was disabled, if it was.
    pub failure: Option<String>,
    /// An error the plugin returned when finishing.
    pub finish_error: Option<String>,
}

impl NfReport {
    /// A report with nothing counted yet, for `types` registered types.
    pub fn new(name: &str, read_only: bool, plugin: String, version: String, types: usize) -> NfReport {
        NfReport { name: name.to_string(), read_only, plugin, version, published_by_type: vec![0; types], ..Default::default() }
    }
}

/// The publication context lent to the plugin for one batch.
struct PublishCtx<'a> {
    ring: Option<&'a mut Producer<EventBytes>>,
    unsubscriptions: &'a mut Producer<Unsubscribe>,
    shard: u16,
    shard_waker: &'a Waker,
    declared: &'a [EventType],
    registry: &'a TypeRegistry,
    graph: &'a ServiceGraph,
    report: &'a mut NfReport,
}

impl PublishCtx<'_> {
    /// Checks and queues the `size`-byte event at `event`. Must not panic: it runs inside a
    /// plugin call. Never waits: when the queue to the shard is full (the publication's
    /// subscribers lag, possibly behind events this very NF still has to finish), the event is
    /// refused and counted, because waiting could deadlock.
    ///
    /// # Safety
    /// `event` must point to `size` readable bytes (the plugin glue passes the object's size).
    unsafe fn publish(&mut self, event: *const EventHeader, size: usize) -> PublishStatus {
        if size < std::mem::size_of::<EventHeader>() || size > MAX_EVENT_SIZE {
            self.report.publish_bad_size += 1;
            return PublishStatus::BadSize;
        }
        // SAFETY: at least a header's bytes are readable (checked above).
        let ty = unsafe { (*event).ty };
        if !self.declared.contains(&ty) {
            self.report.publish_not_declared += 1;
            return PublishStatus::NotDeclared;
        }
        if size < builtin_min_size(ty) {
            self.report.publish_bad_size += 1;
            return PublishStatus::BadSize;
        }
        let Some(route) = self.registry.index_of_type(ty) else {
            self.report.publish_not_declared += 1;
            return PublishStatus::NotDeclared;
        };
        if !self.graph.wants(route) {
            self.report.publish_no_subscriber += 1;
            return PublishStatus::NoSubscriber;
        }
        let Some(ring) = self.ring.as_deref_mut() else { return PublishStatus::NotNow };
        // SAFETY: `size` bytes are readable and begin with a header (the caller's contract).
        let mut bytes = unsafe { EventBytes::copy_from(event, size) };
        if let Some(pkt) = bytes.view_mut::<PktEvent>() {
            // The host cannot keep whatever the NF's pointer points at alive.
            pkt.detach_bytes();
        }
        let pushed = ring.push(bytes).is_ok();
        self.shard_waker.wake();
        if !pushed {
            self.report.publish_full += 1;
            return PublishStatus::Full;
        }
        self.report.published += 1;
        self.report.published_by_type[route] += 1;
        PublishStatus::Published
    }
}

impl PublishCtx<'_> {
    /// Queues an unsubscription for the lane's shard. Must not panic (runs inside a plugin call).
    fn unsubscribe(&mut self, flow: &FlowRef, ty: EventType) -> UnsubscribeStatus {
        if !flow.is_some() || flow.shard != self.shard {
            return UnsubscribeStatus::NoFlow;
        }
        let pushed = self.unsubscriptions.push(Unsubscribe { flow_id: flow.id, slot: flow.slot, ty }).is_ok();
        self.shard_waker.wake();
        if pushed {
            self.report.unsubscriptions += 1;
            UnsubscribeStatus::Done
        } else {
            UnsubscribeStatus::Full
        }
    }
}

unsafe extern "C" fn unsubscribe_trampoline(state: *mut c_void, flow: &FlowRef, ty: EventType) -> UnsubscribeStatus {
    // SAFETY: `state` is the PublishCtx the NF thread built for the current call.
    let ctx = unsafe { &mut *(state as *mut PublishCtx<'_>) };
    ctx.unsubscribe(flow, ty)
}

unsafe extern "C" fn publish_trampoline(state: *mut c_void, event: *const EventHeader, size: u32) -> PublishStatus {
    // SAFETY: `state` is the PublishCtx the NF thread built for the current call, and the
    // plugin glue passes the event's own size.
    unsafe {
        let ctx = &mut *(state as *mut PublishCtx<'_>);
        ctx.publish(event, size as usize)
    }
}

impl NfWorker {
    /// Runs until every shard has closed its lane and the lanes are empty.
    pub fn run(self) -> NfReport {
        let NfWorker { name, read_only, mut nf, mut lanes, waker, idle, publishes, registry, graph, plugin, version, live } = self;
        waker.bind_current();
        let mut report = NfReport::new(&name, read_only, plugin, version, registry.len());
        let mut live = Publisher::new(live);
        let mut idler = Idler::new(idle);
        let mut events: [*const EventHeader; NF_BATCH] = [std::ptr::null(); NF_BATCH];
        let mut handles = [0u32; NF_BATCH];
        let mut verdicts = [Verdict::Pass; NF_BATCH];
        let mut idle_told = true;
        loop {
            let mut progress = false;
            for lane in lanes.iter_mut() {
                let LaneRx { ring, done, arena, shard_waker, publications, unsubscriptions, shard } = lane;
                let n = ring.slots().min(NF_BATCH);
                if n == 0 {
                    continue;
                }
                let Ok(chunk) = ring.read_chunk(n) else { continue };
                let (a, b) = chunk.as_slices();
                for (k, &h) in a.iter().chain(b).enumerate() {
                    handles[k] = h;
                    // SAFETY: the shard wrote slot `h` before pushing its handle.
                    events[k] = unsafe { arena.header(h) };
                }
                if report.failure.is_none() {
                    verdicts[..n].fill(Verdict::Pass);
                    let mut ctx = PublishCtx {
                        ring: publications.as_mut(),
                        unsubscriptions,
                        shard: *shard,
                        shard_waker,
                        declared: &publishes,
                        registry: &registry,
                        graph: &graph,
                        report: &mut report,
                    };
                    // SAFETY: the trampoline casts `state` back to this PublishCtx, which
                    // outlives the call.
                    let mut calls = unsafe {
                        HostCalls::new(&mut ctx as *mut PublishCtx<'_> as *mut c_void, publish_trampoline, unsubscribe_trampoline)
                    };
                    // SAFETY: the first `n` pointers are non-null references into the arena,
                    // valid until the completion below; `*const T` and `&T` share a layout.
                    let batch: &[&EventHeader] = unsafe { std::slice::from_raw_parts(events.as_ptr() as *const &EventHeader, n) };
                    let started = Instant::now();
                    let outcome = nf.handle_batch(RSlice::from_slice(batch), RSliceMut::from_mut_slice(&mut verdicts[..n]), &mut calls);
                    report.busy_ns += started.elapsed().as_nanos() as u64;
                    report.batches += 1;
                    match outcome {
                        RResult::ROk(()) => {
                            report.events += n as u64;
                            if !read_only {
                                for k in 0..n {
                                    if verdicts[k] == Verdict::Drop {
                                        arena.set_drop(handles[k]);
                                        report.verdict_drops += 1;
                                    }
                                }
                            }
                        }
                        RResult::RErr(message) => {
                            log::error!("NF `{name}` failed and is disabled; its events are counted as dropped from now on: {message}");
                            report.failure = Some(message.into_string());
                            report.dropped_disabled += n as u64;
                        }
                    }
                } else {
                    report.dropped_disabled += n as u64;
                }
                chunk.commit_all();
                done.fetch_add(n as u64, Ordering::Release);
                shard_waker.wake();
                progress = true;
            }
            if live.due() {
                live.publish(&report);
            }
            if progress {
                idler.reset();
                idle_told = false;
                continue;
            }
            if lanes.iter().all(|l| l.ring.is_abandoned() && l.ring.is_empty()) {
                break;
            }
            if idler.is_long_idle() && !idle_told {
                idle_told = true;
                live.publish(&report);
                if report.failure.is_none() {
                    if let RResult::RErr(message) = nf.idle() {
                        log::error!("NF `{name}` failed while idle and is disabled: {message}");
                        report.failure = Some(message.into_string());
                    }
                }
            }
            let lanes = &lanes;
            idler.idle(&waker, || lanes.iter().any(|l| !l.ring.is_empty()) || lanes.iter().all(|l| l.ring.is_abandoned()));
        }
        if report.failure.is_none() {
            if let RResult::RErr(message) = nf.finish() {
                log::error!("NF `{name}` failed to finish: {message}");
                report.finish_error = Some(message.into_string());
            }
        } else {
            // A failed plugin's state may be inconsistent and its destructor is plugin code.
            std::mem::forget(nf);
        }
        report
    }
}
