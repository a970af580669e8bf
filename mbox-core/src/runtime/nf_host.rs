//! The thread that runs one NF instance: pops event handles from its lanes (one per shard),
//! hands them to the plugin a batch at a time, records verdicts and reports completions.
//!
//! A plugin that fails (returns an error or panics; the panic is caught on its side of the
//! boundary) is disabled: the thread keeps draining its lanes so nothing upstream stalls, counts
//! those events as dropped, and never calls the plugin again (nor drops it: its state may be
//! broken, and its destructor runs plugin code) — unless a reload replaces it.
//!
//! A reload (`mboxctl reload`, see `control::reload`) swaps in a new instance between two
//! batches: the old instance first handles every event that was queued for it when the request
//! came, then hands its state to the new one (or finishes, when it has none to hand). Shards
//! keep queueing meanwhile and no other NF waits; under the default back-pressure policy
//! nothing is dropped (with `ring_full = "drop"`, what overflows the NF's ring during the swap
//! is dropped and counted, as whenever the NF is slow).

use super::lane::{FlowSubscription, LaneRx};
use super::live::{Publisher, Snapshot};
use crate::controller::ServiceGraph;
use crate::events::arena::EventBytes;
use crate::events::registry::TypeRegistry;
use crate::sys::park::{IdlePolicy, Idler, Waker};
use abi_stable::std_types::{ROption, RResult, RSlice, RSliceMut, RVec};
use mbox_abi::{
    builtin_min_size, BindRequest, BindStatus, CommandEvent, CommandReply, Counter, EventHeader, EventType, FlowRef, HostCalls, LogRequest,
    NfBox, PktEvent, PublishStatus, StreamOp, StreamRequest, StreamStatus, SubscribeRequest, SubscribeStatus, UnsubscribeStatus, Verdict,
    BIND_REQUEST, COMMAND_REPLY, DIR_NONE, HOST_REQUEST, LOG_REQUEST, MAX_EVENT_SIZE, NF_COMMAND, STREAM_REQUEST,
};
use rtrb::Producer;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Reload requests from the control socket.
    pub control: Arc<NfControl>,
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
    /// Per-flow unsubscriptions and subscriptions the NF asked for.
    pub unsubscriptions: u64,
    pub subscriptions: u64,
    /// Subscriptions refused: a type nothing routes to the NF.
    pub subscribe_not_routed: u64,
    /// Requests on connections mbox terminates (`Host::send`, `close`, `reset`), bytes taken,
    /// sends that got less than they asked, and requests for connections that had ended.
    pub stream_requests: u64,
    pub bytes_sent: u64,
    pub sends_partial: u64,
    pub stream_ended: u64,
    /// Lines logged through `Host::log`, and those dropped past the budget per second.
    pub log_lines: u64,
    pub log_lines_dropped: u64,
    /// Time spent inside the plugin.
    pub busy_ns: u64,
    /// Why the plugin was disabled, if it is (a reload that replaced it clears it).
    pub failure: Option<String>,
    /// Times an instance was disabled during the run (reloads do not take them back).
    pub failures: u64,
    /// An error the plugin returned when finishing.
    pub finish_error: Option<String>,
    /// Times a new build replaced the instance (`mboxctl reload`).
    pub reloads: u64,
    /// The NF's own counters (`NetworkFunction::counters`), as of the last time it was asked.
    pub counters: Vec<(String, u64)>,
}

impl NfReport {
    /// A report with nothing counted yet, for `types` registered types.
    pub fn new(name: &str, read_only: bool, plugin: String, version: String, types: usize) -> NfReport {
        NfReport { name: name.to_string(), read_only, plugin, version, published_by_type: vec![0; types], ..Default::default() }
    }

    /// The instance failed (`message`) and is disabled from now on.
    fn disable(&mut self, message: String) {
        self.failure = Some(message);
        self.failures += 1;
    }
}

/// The publication context lent to the plugin for one batch.
struct PublishCtx<'a> {
    ring: Option<&'a mut Producer<EventBytes>>,
    flow_subscriptions: &'a mut Producer<FlowSubscription>,
    shard: u16,
    /// The NF's index in the graph.
    nf: usize,
    shard_waker: &'a Waker,
    declared: &'a [EventType],
    registry: &'a TypeRegistry,
    graph: &'a ServiceGraph,
    report: &'a mut NfReport,
    /// Its writes to the shard's connections, when the NF serves a `[[service]]`.
    streams: Option<&'a mut crate::runtime::stream_out::StreamWriter>,
    log_target: &'a str,
    log_budget: &'a std::cell::Cell<LogBudget>,
}

/// Lines an NF may log per second through `Host::log`; more are dropped and counted, so that
/// an NF logging per packet cannot flood the host's log or slow the run.
const LOG_LINES_PER_SECOND: u32 = 100;

/// What an NF logged in the current second.
#[derive(Debug, Default, Clone, Copy)]
struct LogBudget {
    second: u64,
    lines: u32,
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
        if ty == HOST_REQUEST {
            // SAFETY: the caller's contract, and `Host::subscribe` passes a request it owns
            // mutably, whose `answer` the host writes.
            return unsafe { self.host_request(event as *mut SubscribeRequest, size) };
        }
        if ty == STREAM_REQUEST {
            // SAFETY: as above, for `Host::send`, `close` and `reset`.
            return unsafe { self.stream_request(event as *mut StreamRequest, size) };
        }
        if ty == LOG_REQUEST {
            // SAFETY: as above, for `Host::log`.
            return unsafe { self.log_request(event as *mut LogRequest, size) };
        }
        if ty == BIND_REQUEST {
            // SAFETY: as above, for `Host::bind`.
            return unsafe { self.bind_request(event as *mut BindRequest, size) };
        }
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
    /// Answers a request the NF made through the publish call ([`mbox_abi::Host::subscribe`]).
    ///
    /// # Safety
    /// `request` must point to `size` bytes the NF lent mutably for the call.
    unsafe fn host_request(&mut self, request: *mut SubscribeRequest, size: usize) -> PublishStatus {
        if size < std::mem::size_of::<SubscribeRequest>() {
            self.report.publish_bad_size += 1;
            return PublishStatus::BadSize;
        }
        // SAFETY: the caller's contract, size checked.
        let (flow, ty) = unsafe { ((*request).flow, (*request).ty) };
        let status = self.subscribe(&flow, ty);
        // SAFETY: as above.
        unsafe { (*request).answer = status as u8 };
        PublishStatus::Published
    }

    /// Answers a request on a connection mbox terminates ([`mbox_abi::Host::send`], `close`,
    /// `reset`). Must not panic.
    ///
    /// # Safety
    /// `request` must point to `size` bytes the NF lent mutably for the call, whose `bytes`
    /// point to `len` readable bytes.
    unsafe fn stream_request(&mut self, request: *mut StreamRequest, size: usize) -> PublishStatus {
        if size < std::mem::size_of::<StreamRequest>() {
            self.report.publish_bad_size += 1;
            return PublishStatus::BadSize;
        }
        // SAFETY: the caller's contract, size checked. Fields are read through raw pointers:
        // `op` is read as its byte, since a plugin may have written any value there, and a
        // reference to the struct with a wrong discriminant would already be undefined.
        let (flow, op, len, ptr) = unsafe {
            (
                std::ptr::addr_of!((*request).flow).read_unaligned(),
                std::ptr::addr_of!((*request).op).cast::<u8>().read(),
                std::ptr::addr_of!((*request).len).read_unaligned(),
                std::ptr::addr_of!((*request).bytes).read_unaligned(),
            )
        };
        let op = match op {
            0 => StreamOp::Send,
            1 => StreamOp::Close,
            2 => StreamOp::Reset,
            _ => {
                self.report.publish_bad_size += 1;
                return PublishStatus::BadSize;
            }
        };
        self.report.stream_requests += 1;
        let bytes: &[u8] = if ptr.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract: `len` bytes at `bytes` live across the call.
            unsafe { std::slice::from_raw_parts(ptr, len as usize) }
        };
        let (status, accepted) = match self.streams.as_deref_mut() {
            Some(w) if flow.shard == self.shard => w.request(&flow, op, bytes),
            _ => (StreamStatus::NoFlow, 0),
        };
        match status {
            StreamStatus::Partial => self.report.sends_partial += 1,
            StreamStatus::Ended => self.report.stream_ended += 1,
            _ => {}
        }
        self.report.bytes_sent += u64::from(accepted);
        // SAFETY: as above; the plugin lent the request mutably.
        unsafe {
            std::ptr::addr_of_mut!((*request).answer).write(status as u8);
            std::ptr::addr_of_mut!((*request).accepted).write_unaligned(accepted);
        }
        PublishStatus::Published
    }

    /// Answers a Splicer's bind ([`mbox_abi::Host::bind`]). Must not panic.
    ///
    /// # Safety
    /// `request` must point to `size` bytes the NF lent mutably for the call.
    unsafe fn bind_request(&mut self, request: *mut BindRequest, size: usize) -> PublishStatus {
        if size < std::mem::size_of::<BindRequest>() {
            self.report.publish_bad_size += 1;
            return PublishStatus::BadSize;
        }
        // SAFETY: the caller's contract, size checked; read field by field, unaligned.
        let (flow, family, port, addr) = unsafe {
            (
                std::ptr::addr_of!((*request).flow).read_unaligned(),
                std::ptr::addr_of!((*request).family).read(),
                std::ptr::addr_of!((*request).port).read_unaligned(),
                std::ptr::addr_of!((*request).addr).read_unaligned(),
            )
        };
        let v6 = std::net::Ipv6Addr::from(addr);
        let ip = match (family, v6.to_ipv4_mapped()) {
            (4, Some(v4)) => Some(std::net::IpAddr::V4(v4)),
            (6, _) => Some(std::net::IpAddr::V6(v6)),
            _ => None,
        };
        self.report.stream_requests += 1;
        let status = match (ip, self.streams.as_deref_mut()) {
            (None, _) => BindStatus::BadBackend,
            (Some(ip), Some(w)) if flow.shard == self.shard => w.bind(&flow, std::net::SocketAddr::new(ip, port)),
            _ => BindStatus::NoFlow,
        };
        if status == BindStatus::Ended {
            self.report.stream_ended += 1;
        }
        // SAFETY: as above; the plugin lent the request mutably.
        unsafe { std::ptr::addr_of_mut!((*request).answer).write(status as u8) };
        PublishStatus::Published
    }

    /// A line an NF logs (`Host::log`): written through the host's logger under `nf::NAME`
    /// when its level is enabled and the NF's budget for this second is not spent. Must not
    /// panic.
    ///
    /// # Safety
    /// `request` must point to `size` bytes the NF lent mutably for the call, whose `text`
    /// points to `len` readable bytes.
    unsafe fn log_request(&mut self, request: *mut LogRequest, size: usize) -> PublishStatus {
        if size < std::mem::size_of::<LogRequest>() {
            self.report.publish_bad_size += 1;
            return PublishStatus::BadSize;
        }
        // SAFETY: the caller's contract, size checked; the level is read as its byte (a plugin
        // may have written any value there).
        let (level, len, ptr) = unsafe {
            (
                std::ptr::addr_of!((*request).level).cast::<u8>().read(),
                std::ptr::addr_of!((*request).len).read_unaligned(),
                std::ptr::addr_of!((*request).text).read_unaligned(),
            )
        };
        let level = match level {
            1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Info,
            4 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        let metadata = log::Metadata::builder().level(level).target(self.log_target).build();
        let mut answer = 0u8;
        if log::logger().enabled(&metadata) {
            let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let mut budget = self.log_budget.get();
            if budget.second != second {
                budget = LogBudget { second, lines: 0 };
            }
            if budget.lines < LOG_LINES_PER_SECOND {
                budget.lines += 1;
                let bytes: &[u8] = if ptr.is_null() || len == 0 {
                    &[]
                } else {
                    // SAFETY: the caller's contract: `len` bytes at `text` live across the call.
                    unsafe { std::slice::from_raw_parts(ptr, len as usize) }
                };
                let text = String::from_utf8_lossy(bytes);
                log::logger().log(&log::Record::builder().metadata(metadata).args(format_args!("{text}")).build());
                self.report.log_lines += 1;
            } else {
                self.report.log_lines_dropped += 1;
                answer = 1;
            }
            self.log_budget.set(budget);
        }
        // SAFETY: as above; the plugin lent the request mutably.
        unsafe { std::ptr::addr_of_mut!((*request).answer).write(answer) };
        PublishStatus::Published
    }

    /// Queues an unsubscription for the lane's shard (for one flow, or every flow of it). Must
    /// not panic (runs inside a plugin call).
    fn unsubscribe(&mut self, flow: &FlowRef, ty: EventType) -> UnsubscribeStatus {
        if !(flow.is_some() || flow.is_every_flow()) || flow.shard != self.shard {
            return UnsubscribeStatus::NoFlow;
        }
        if !self.queue(flow, ty, false) {
            return UnsubscribeStatus::Full;
        }
        self.report.unsubscriptions += 1;
        UnsubscribeStatus::Done
    }

    /// Queues a subscription for the lane's shard, if anything routes `ty` to the NF. Must not
    /// panic.
    fn subscribe(&mut self, flow: &FlowRef, ty: EventType) -> SubscribeStatus {
        if !(flow.is_some() || flow.is_every_flow()) || flow.shard != self.shard {
            return SubscribeStatus::NoFlow;
        }
        if !self.graph.may_route(self.nf, ty) {
            self.report.subscribe_not_routed += 1;
            return SubscribeStatus::NotRouted;
        }
        if !self.queue(flow, ty, true) {
            return SubscribeStatus::Full;
        }
        self.report.subscriptions += 1;
        SubscribeStatus::Done
    }

    fn queue(&mut self, flow: &FlowRef, ty: EventType, subscribe: bool) -> bool {
        let pushed = self.flow_subscriptions.push(FlowSubscription { flow_id: flow.id, slot: flow.slot, ty, subscribe }).is_ok();
        self.shard_waker.wake();
        pushed
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

/// What the batch call of a command answered through the publish call.
struct CommandCtx {
    reply: Option<Result<String, String>>,
}

/// The publish call during a command: it takes the reply and nothing else (a command has no
/// shard or flow to act on).
unsafe extern "C" fn command_publish(state: *mut c_void, event: *const EventHeader, size: u32) -> PublishStatus {
    // SAFETY: `state` is the CommandCtx `run_command` lent for the call; the glue passes the
    // event's own size, checked before the reply is read.
    unsafe {
        let ctx = &mut *(state as *mut CommandCtx);
        if (size as usize) < std::mem::size_of::<CommandReply>() || (*event).ty != COMMAND_REPLY {
            return PublishStatus::NotNow;
        }
        let reply = &*(event as *const CommandReply);
        let text = String::from_utf8_lossy(std::slice::from_raw_parts(reply.text, reply.len as usize)).into_owned();
        ctx.reply = Some(if reply.ok == 1 { Ok(text) } else { Err(text) });
        PublishStatus::Published
    }
}

unsafe extern "C" fn command_unsubscribe(_: *mut c_void, _: &FlowRef, _: EventType) -> UnsubscribeStatus {
    UnsubscribeStatus::NoFlow
}

/// Hands `nf` the command `line` as a [`CommandEvent`] in a batch of its own (the plugin glue
/// answers with a `CommandReply`; a plugin built before commands answers nothing). `Err`: the
/// NF failed (a panic or an error from the batch call).
fn run_command(nf: &mut NfBox, line: &str) -> Result<Result<String, String>, String> {
    let event = CommandEvent {
        header: EventHeader::new::<CommandEvent>(NF_COMMAND, 0, FlowRef { id: 0, slot: 0, shard: 0, dir: DIR_NONE, _reserved: 0 }),
        len: u32::try_from(line.len()).map_err(|_| "a command over 4 GiB".to_string())?,
        _reserved: 0,
        text: line.as_ptr(),
    };
    let mut ctx = CommandCtx { reply: None };
    // SAFETY: the trampolines cast `state` back to this CommandCtx, which outlives the call.
    let mut calls = unsafe { HostCalls::new(&mut ctx as *mut CommandCtx as *mut c_void, command_publish, command_unsubscribe) };
    let events = [&event.header];
    let mut verdicts = [Verdict::Pass];
    if let RResult::RErr(message) = nf.handle_batch(RSlice::from_slice(&events), RSliceMut::from_mut_slice(&mut verdicts), &mut calls) {
        return Err(message.into_string());
    }
    Ok(ctx.reply.unwrap_or_else(|| Err("this NF takes no commands (its plugin was built before NF commands existed)".into())))
}

/// A reload waiting for an NF thread: the new instance, and where to say how it went.
pub struct Reload {
    pub nf: NfBox,
    /// The library the new instance comes from, and its declared version (for reports).
    pub plugin: String,
    pub version: String,
    pub reply: mpsc::Sender<Result<Reloaded, String>>,
}

/// How a reload went.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// Events queued for the NF when the reload was asked, handled by the old instance (or,
    /// when it had failed, counted as dropped).
    pub drained: u64,
    /// The old instance had failed (and was replaced as it was).
    pub replaced_failed: bool,
    /// What the old instance's `on_finish` reported, when it had no state to hand over.
    pub finish_error: Option<String>,
    /// The size of the state the old instance handed to the new one (`None`: it handed none,
    /// and finished instead).
    pub state_bytes: Option<usize>,
    /// How long the NF's thread was busy with the swap (draining included): the time its
    /// queue waited.
    pub pause: Duration,
}

/// An operator's command for an NF (`mboxctl nf`), and where its answer goes.
pub struct NfCommand {
    pub line: String,
    pub reply: mpsc::Sender<Result<String, String>>,
}

/// What the control thread asks of an NF thread.
pub enum ControlRequest {
    Reload(Reload),
    Command(NfCommand),
}

impl ControlRequest {
    /// Answers the request with `error` (it will not be carried out).
    fn refuse(self, error: &str) {
        // A requester that gave up waiting has dropped its receiver: nobody to tell.
        match self {
            ControlRequest::Reload(r) => drop(r.reply.send(Err(error.into()))),
            ControlRequest::Command(c) => drop(c.reply.send(Err(error.into()))),
        }
    }
}

/// How the control thread reaches an NF thread: a reload or a command, checked once per round
/// of the thread's loop (one relaxed load; no lock unless a request waits).
#[derive(Default)]
pub struct NfControl {
    pending: AtomicBool,
    request: Mutex<RequestSlot>,
}

#[derive(Default)]
struct RequestSlot {
    request: Option<ControlRequest>,
    /// The NF thread has ended: nobody would take a request.
    closed: bool,
}

/// What a request that comes once the NF thread has ended is told.
const THREAD_ENDED: &str = "the run is ending: the NF's thread has stopped";

impl NfControl {
    /// Queues a request and wakes the NF thread; refused while another is under way, or once
    /// the thread has ended.
    pub fn request(&self, request: ControlRequest, waker: &Waker) -> Result<(), String> {
        let mut slot = self.request.lock().unwrap_or_else(|e| e.into_inner());
        if slot.closed {
            return Err(THREAD_ENDED.into());
        }
        if slot.request.is_some() {
            return Err("a reload or command of this NF is already under way".into());
        }
        slot.request = Some(request);
        self.pending.store(true, Ordering::Release);
        waker.wake();
        Ok(())
    }

    /// Takes back a request the NF thread has not started on (`None` once it has).
    pub fn withdraw(&self) -> Option<ControlRequest> {
        let withdrawn = self.request.lock().unwrap_or_else(|e| e.into_inner()).request.take();
        if withdrawn.is_some() {
            self.pending.store(false, Ordering::Relaxed);
        }
        withdrawn
    }

    fn take(&self) -> Option<ControlRequest> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        self.pending.store(false, Ordering::Relaxed);
        self.request.lock().unwrap_or_else(|e| e.into_inner()).request.take()
    }

    /// The NF thread ends: refuses later requests, and answers one that came too late.
    fn close(&self) {
        let mut slot = self.request.lock().unwrap_or_else(|e| e.into_inner());
        slot.closed = true;
        if let Some(late) = slot.request.take() {
            late.refuse(THREAD_ENDED);
        }
    }
}

/// The per-batch scratch arrays.
struct Batch {
    events: [*const EventHeader; NF_BATCH],
    handles: [u32; NF_BATCH],
    verdicts: [Verdict; NF_BATCH],
}

/// What stays the same for the NF's whole run.
struct NfContext {
    name: String,
    /// `Host::log`'s target (`nf::NAME`) and what this second's lines used of the budget.
    log_target: String,
    log_budget: std::cell::Cell<LogBudget>,
    /// Its index in the graph.
    index: usize,
    read_only: bool,
    publishes: Vec<EventType>,
    registry: Arc<TypeRegistry>,
    graph: Arc<ServiceGraph>,
}

/// Hands at most `max` of the events waiting in `lane` to the NF (or, once it failed, counts
/// them as dropped) and reports them done. Returns how many it took.
fn serve(lane: &mut LaneRx, max: usize, nf: &mut NfBox, batch: &mut Batch, report: &mut NfReport, cx: &NfContext) -> usize {
    let LaneRx { ring, done, arena, shard_waker, publications, flow_subscriptions, shard, streams } = lane;
    let n = ring.slots().min(max).min(NF_BATCH);
    if n == 0 {
        return 0;
    }
    let Ok(chunk) = ring.read_chunk(n) else { return 0 };
    let (a, b) = chunk.as_slices();
    for (k, &h) in a.iter().chain(b).enumerate() {
        batch.handles[k] = h;
        // SAFETY: the shard wrote slot `h` before pushing its handle.
        batch.events[k] = unsafe { arena.header(h) };
    }
    if report.failure.is_none() {
        batch.verdicts[..n].fill(Verdict::Pass);
        let mut ctx = PublishCtx {
            ring: publications.as_mut(),
            flow_subscriptions,
            shard: *shard,
            nf: cx.index,
            shard_waker,
            declared: &cx.publishes,
            registry: &cx.registry,
            graph: &cx.graph,
            report,
            streams: streams.as_mut(),
            log_target: &cx.log_target,
            log_budget: &cx.log_budget,
        };
        // SAFETY: the trampoline casts `state` back to this PublishCtx, which outlives the call.
        let mut calls =
            unsafe { HostCalls::new(&mut ctx as *mut PublishCtx<'_> as *mut c_void, publish_trampoline, unsubscribe_trampoline) };
        // SAFETY: the first `n` pointers are non-null references into the arena, valid until
        // the completion below; `*const T` and `&T` share a layout.
        let events: &[&EventHeader] = unsafe { std::slice::from_raw_parts(batch.events.as_ptr() as *const &EventHeader, n) };
        let started = Instant::now();
        let outcome = nf.handle_batch(RSlice::from_slice(events), RSliceMut::from_mut_slice(&mut batch.verdicts[..n]), &mut calls);
        report.busy_ns += started.elapsed().as_nanos() as u64;
        report.batches += 1;
        match outcome {
            RResult::ROk(()) => {
                report.events += n as u64;
                if !cx.read_only {
                    for k in 0..n {
                        if batch.verdicts[k] == Verdict::Drop {
                            arena.set_drop(batch.handles[k]);
                            report.verdict_drops += 1;
                        }
                    }
                }
            }
            RResult::RErr(message) => {
                log::error!("NF `{}` failed and is disabled; its events are counted as dropped from now on: {message}", cx.name);
                report.disable(message.into_string());
                report.dropped_disabled += n as u64;
            }
        }
    } else {
        report.dropped_disabled += n as u64;
    }
    chunk.commit_all();
    done.fetch_add(n as u64, Ordering::Release);
    shard_waker.wake();
    n
}

/// Asks the plugin for its own counters and records them in `report` (reusing its entries
/// while the names stay the same). A disabled plugin is not asked: its state may be broken.
fn read_counters(nf: &mut NfBox, scratch: &mut RVec<Counter>, report: &mut NfReport, name: &str) {
    if report.failure.is_some() {
        return;
    }
    scratch.clear();
    if let RResult::RErr(message) = nf.counters(scratch) {
        log::error!("NF `{name}` failed reporting its counters and is disabled: {message}");
        report.disable(message.into_string());
        return;
    }
    let same = report.counters.len() == scratch.len() && report.counters.iter().zip(scratch.iter()).all(|((n, _), c)| n == c.name.as_str());
    if same {
        for ((_, value), c) in report.counters.iter_mut().zip(scratch.iter()) {
            *value = c.value;
        }
    } else {
        report.counters = scratch.iter().map(|c| (c.name.as_str().to_string(), c.value)).collect();
    }
}

impl NfWorker {
    /// Runs until every shard has closed its lane and the lanes are empty.
    pub fn run(self) -> NfReport {
        let NfWorker { name, read_only, mut nf, mut lanes, waker, idle, publishes, registry, graph, plugin, version, live, control } = self;
        waker.bind_current();
        let mut report = NfReport::new(&name, read_only, plugin, version, registry.len());
        let index = graph.nfs().iter().position(|nf| nf.name == name).unwrap_or(usize::MAX);
        let log_target = format!("nf::{name}");
        let cx = NfContext { name, log_target, log_budget: Default::default(), index, read_only, publishes, registry, graph };
        let mut live = Publisher::new(live);
        let mut idler = Idler::new(idle);
        let mut batch = Batch { events: [std::ptr::null(); NF_BATCH], handles: [0; NF_BATCH], verdicts: [Verdict::Pass; NF_BATCH] };
        let mut idle_told = true;
        let mut counters = RVec::new();
        loop {
            match control.take() {
                Some(ControlRequest::Reload(request)) => {
                    let outcome = reload(&mut nf, request.nf, &mut lanes, &mut batch, &mut report, &cx);
                    if outcome.is_ok() {
                        (report.plugin, report.version) = (request.plugin, request.version);
                        report.reloads += 1;
                    }
                    live.publish_now(&report);
                    let _ = request.reply.send(outcome);
                }
                Some(ControlRequest::Command(command)) => {
                    let answer = if report.failure.is_some() {
                        Err("the NF is disabled (it failed): it takes no commands".to_string())
                    } else {
                        let answer = run_command(&mut nf, &command.line).unwrap_or_else(|failure| {
                            log::error!("NF `{}` failed in a command and is disabled: {failure}", cx.name);
                            report.disable(failure.clone());
                            Err(format!("the NF failed and is disabled: {failure}"))
                        });
                        // A command may change what the NF counts (a drained backend).
                        read_counters(&mut nf, &mut counters, &mut report, &cx.name);
                        live.publish_now(&report);
                        answer
                    };
                    let _ = command.reply.send(answer);
                }
                None => {}
            }
            let mut progress = false;
            for lane in lanes.iter_mut() {
                progress |= serve(lane, NF_BATCH, &mut nf, &mut batch, &mut report, &cx) > 0;
            }
            if live.due() {
                read_counters(&mut nf, &mut counters, &mut report, &cx.name);
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
                read_counters(&mut nf, &mut counters, &mut report, &cx.name);
                live.publish(&report);
                if report.failure.is_none() {
                    if let RResult::RErr(message) = nf.idle() {
                        log::error!("NF `{}` failed while idle and is disabled: {message}", cx.name);
                        report.disable(message.into_string());
                    }
                }
            }
            let (lanes, control) = (&lanes, &control);
            idler.idle(&waker, || {
                lanes.iter().any(|l| !l.ring.is_empty())
                    || lanes.iter().all(|l| l.ring.is_abandoned())
                    || control.pending.load(Ordering::Relaxed)
            });
        }
        control.close();
        if report.failure.is_none() {
            if let RResult::RErr(message) = nf.finish() {
                log::error!("NF `{}` failed to finish: {message}", cx.name);
                // The first loss is kept (an instance a reload replaced may have failed first).
                report.finish_error.get_or_insert(message.into_string());
            }
            // What finishing decided counts too.
            read_counters(&mut nf, &mut counters, &mut report, &cx.name);
        }
        if report.failure.is_some() {
            // A failed plugin's state may be inconsistent and its destructor is plugin code.
            std::mem::forget(nf);
        }
        report
    }
}

/// Replaces `nf` by `new`: the old instance first handles every event already queued for it,
/// then hands its state over (or finishes, when it has none to hand). A failed old instance
/// is replaced without either (its state may be broken). On an error the old instance stays.
fn reload(
    nf: &mut NfBox,
    mut new: NfBox,
    lanes: &mut [LaneRx],
    batch: &mut Batch,
    report: &mut NfReport,
    cx: &NfContext,
) -> Result<Reloaded, String> {
    let started = Instant::now();
    // What was queued when the request came; later events wait for the new instance.
    let mut drained = 0u64;
    for lane in lanes.iter_mut() {
        let mut owed = lane.ring.slots();
        while owed > 0 {
            let n = serve(lane, owed, nf, batch, report, cx);
            if n == 0 {
                break;
            }
            owed -= n;
            drained += n as u64;
        }
    }
    let failed = report.failure.is_some();
    let mut state_bytes = None;
    let mut finish_error = None;
    if !failed {
        match nf.save_state() {
            RResult::ROk(ROption::RSome(state)) => {
                if let RResult::RErr(e) = new.restore_state(RSlice::from_slice(state.as_slice())) {
                    return Err(format!("the new instance refused the old one's state ({e}); the old instance keeps running"));
                }
                state_bytes = Some(state.len());
            }
            RResult::ROk(ROption::RNone) => {
                if let RResult::RErr(e) = nf.finish() {
                    // Lost output of the old instance: the run's report says so at the end too.
                    let reload = report.reloads + 1;
                    report.finish_error.get_or_insert_with(|| format!("before reload {reload}: {e}"));
                    finish_error = Some(e.into_string());
                }
            }
            RResult::RErr(e) => return Err(format!("the old instance could not save its state ({e}); it keeps running")),
        }
    }
    let old = std::mem::replace(nf, new);
    if failed {
        std::mem::forget(old);
        report.failure = None;
    } else {
        drop(old);
    }
    Ok(Reloaded { drained, replaced_failed: failed, finish_error, state_bytes, pause: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::RString;
    use mbox_abi::nf::{Guarded, NfObject, NfObject_TO};
    use mbox_abi::{Host, NetworkFunction};

    /// An NF with commands: `ping` answers, `boom` panics, anything else is refused.
    struct Commanded;

    impl NetworkFunction for Commanded {
        fn on_event(&mut self, _: &EventHeader, _: &mut Host<'_>) -> Verdict {
            panic!("a command must not reach on_event");
        }

        fn command(&mut self, line: &str) -> Result<String, String> {
            match line {
                "ping" => Ok("pong".into()),
                "boom" => panic!("boom"),
                other => Err(format!("no `{other}`")),
            }
        }
    }

    /// A plugin built before commands existed: its glue hands every event to the NF, which
    /// answers nothing.
    struct Older;

    impl NfObject for Older {
        fn handle_batch(&mut self, _: RSlice<'_, &EventHeader>, _: RSliceMut<'_, Verdict>, _: &mut HostCalls) -> RResult<(), RString> {
            RResult::ROk(())
        }
        fn idle(&mut self) -> RResult<(), RString> {
            RResult::ROk(())
        }
        fn finish(&mut self) -> RResult<(), RString> {
            RResult::ROk(())
        }
        fn save_state(&mut self) -> RResult<ROption<RVec<u8>>, RString> {
            RResult::ROk(ROption::RNone)
        }
        fn restore_state(&mut self, _: RSlice<'_, u8>) -> RResult<(), RString> {
            RResult::ROk(())
        }
    }

    #[test]
    fn a_command_reaches_the_nf_through_a_batch_and_its_answer_comes_back() {
        let mut nf: NfBox = NfObject_TO::from_value(Guarded(Commanded), TD_Opaque);
        assert_eq!(run_command(&mut nf, "ping"), Ok(Ok("pong".to_string())));
        assert_eq!(run_command(&mut nf, "pong"), Ok(Err("no `pong`".to_string())));
        let failed = run_command(&mut nf, "boom").unwrap_err();
        assert!(failed.contains("panicked: boom"), "{failed}");
        let mut older: NfBox = NfObject_TO::from_value(Older, TD_Opaque);
        let answer = run_command(&mut older, "drain web1").unwrap().unwrap_err();
        assert!(answer.contains("built before NF commands existed"), "{answer}");
    }
}
