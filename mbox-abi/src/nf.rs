//! The network-function interface: the trait NF authors implement, and the FFI-safe object the
//! host calls, with the panic guard between them.
//!
//! Authors implement [`NetworkFunction`] (plain Rust). The plugin glue wraps it in a guard that
//! implements [`NfObject`], the `#[sabi_trait]` the host calls through a vtable once per batch.
//! A panic in the NF is caught by the guard, on the plugin's side of the boundary (a panic that
//! crossed it would abort the host), and comes back to the host as an error.

#![allow(non_local_definitions)] // `#[sabi_trait]` expands to impls of foreign traits inside a const block.

use crate::event_type::EventType;
use crate::events::{Event, EventHeader, FlowRef};
use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RResult, RSlice, RSliceMut, RStr, RString, RVec},
    StableAbi,
};
use core::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An NF's answer about one event. Read-only NFs' answers are ignored.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Let the event (and its packet) go on.
    #[default]
    Pass = 0,
    /// Stop it: later NFs do not see it, and its packet is not transmitted.
    Drop = 1,
}

/// The outcome of [`Host::publish`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PublishStatus {
    /// Queued for the event's subscribers.
    Published = 0,
    /// The type is not among the publications the NF declared.
    NotDeclared = 1,
    /// The event's size is smaller than its type's struct or larger than the host carries.
    BadSize = 2,
    /// Publishing is only possible while handling events.
    NotNow = 3,
    /// Nobody subscribes to the type; nothing was queued.
    NoSubscriber = 4,
    /// The host's queue for this NF's publications is full (its subscribers lag); the event
    /// was not published, and the host counts it.
    Full = 5,
}

/// The services the host lends an NF during a call. Built by the host; NFs use it via [`Host`].
#[repr(C)]
#[derive(StableAbi)]
pub struct HostCalls {
    state: *mut c_void,
    /// `event` points to an object of `size` bytes (the event struct the NF built).
    publish: unsafe extern "C" fn(state: *mut c_void, event: *const EventHeader, size: u32) -> PublishStatus,
    /// Stops the events of `ty` (and below) of one flow for the calling NF.
    unsubscribe: unsafe extern "C" fn(state: *mut c_void, flow: &FlowRef, ty: EventType) -> UnsubscribeStatus,
}

/// The outcome of [`Host::unsubscribe`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum UnsubscribeStatus {
    /// Queued: events of the type that the flow's shard emits from now on skip this NF (events
    /// already on their way still arrive).
    Done = 0,
    /// The event is not about a flow, or not about one of this batch's shard.
    NoFlow = 1,
    /// The host's queue of such requests is full; try again with a later event.
    Full = 2,
}

/// A request to the host carried by the publish call; its type is [`HOST_REQUEST`] and the
/// host writes its answer into `answer` (a [`SubscribeStatus`] as a byte).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct SubscribeRequest {
    pub header: EventHeader,
    pub flow: FlowRef,
    pub ty: EventType,
    pub answer: u8,
    pub _reserved: [u8; 7],
}

/// The type of requests to the host (never routed to NFs): a child of the root no built-in or
/// registered type uses.
pub const HOST_REQUEST: EventType = match EventType::ROOT.child(255) {
    Some(t) => t,
    None => EventType::ROOT,
};

/// What `answer` holds before the host answers (a host that predates the request leaves it).
const UNANSWERED: u8 = 0xff;

impl SubscribeRequest {
    fn new(flow: FlowRef, ty: EventType) -> SubscribeRequest {
        SubscribeRequest {
            header: EventHeader::new::<SubscribeRequest>(HOST_REQUEST, 0, flow),
            flow,
            ty,
            answer: UNANSWERED,
            _reserved: [0; 7],
        }
    }
}

// SAFETY: `#[repr(C)]` and begins with an `EventHeader`.
unsafe impl Event for SubscribeRequest {}

impl SubscribeStatus {
    /// The status a host wrote into a request's `answer`.
    pub fn from_answer(answer: u8) -> SubscribeStatus {
        match answer {
            0 => SubscribeStatus::Done,
            1 => SubscribeStatus::NoFlow,
            2 => SubscribeStatus::Full,
            3 => SubscribeStatus::NotRouted,
            _ => SubscribeStatus::Unsupported,
        }
    }
}

/// The outcome of [`Host::subscribe`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SubscribeStatus {
    /// Queued: the flow's events of the type that its shard emits from now on reach this NF.
    Done = 0,
    /// The event is not about a flow, or not about one of this batch's shard.
    NoFlow = 1,
    /// The host's queue of such requests is full; try again with a later event.
    Full = 2,
    /// The NF can get that type neither by subscription nor on demand (its config's
    /// `subscribe` and `subscribe_per_flow` lists lack it): nothing routes it there.
    NotRouted = 3,
    /// The host predates this call.
    Unsupported = 4,
}

impl HostCalls {
    /// # Safety
    /// The functions must be safe to call with `state` for as long as this value is lent to NFs.
    pub unsafe fn new(
        state: *mut c_void,
        publish: unsafe extern "C" fn(*mut c_void, *const EventHeader, u32) -> PublishStatus,
        unsubscribe: unsafe extern "C" fn(*mut c_void, &FlowRef, EventType) -> UnsubscribeStatus,
    ) -> HostCalls {
        HostCalls { state, publish, unsubscribe }
    }
}

/// What an NF can ask of the host while it handles events.
pub struct Host<'a> {
    calls: &'a mut HostCalls,
}

impl<'a> Host<'a> {
    /// Wraps the host's calls; the plugin glue does this for every batch.
    pub fn new(calls: &'a mut HostCalls) -> Host<'a> {
        Host { calls }
    }

    /// Publishes `event` to its type's subscribers. The host copies it (at most
    /// `MAX_EVENT_SIZE` bytes), so it may live on the stack. The copy's size is the size of
    /// `E`, whatever the header says. Events of `PKT` types carry no packet bytes once published.
    pub fn publish<E: Event>(&mut self, event: &E) -> PublishStatus {
        let size = core::mem::size_of::<E>() as u32;
        // SAFETY: the host built `calls` for the duration of this call, and reads at most
        // `size` bytes from `event`.
        unsafe { (self.calls.publish)(self.calls.state, event as *const E as *const EventHeader, size) }
    }

    /// Stops events of type `ty` (and its subtree) of `flow` for this NF: a classifier done
    /// with a flow unsubscribes from its data, and when no NF wants a flow's bytes any more the
    /// stack stops reassembling it. Lasts until the flow ends. With
    /// [`FlowRef::every_flow`]`(shard)` (the shard of the event being handled), for every flow
    /// of that shard, present and future: an NF whose arguments leave it no use for a type it
    /// subscribes to by default says so at its first event from each shard (a host that
    /// predates it answers `NoFlow`).
    pub fn unsubscribe(&mut self, flow: &FlowRef, ty: EventType) -> UnsubscribeStatus {
        // SAFETY: as for `publish`.
        unsafe { (self.calls.unsubscribe)(self.calls.state, flow, ty) }
    }

    /// Starts events of type `ty` (and its subtree) of `flow` for this NF — the other half of
    /// [`Host::unsubscribe`], the paper's dynamic subscriptions: an IDS that learns from a
    /// classifier that a flow is HTTP turns on that flow's bytes (`ty` must be in its
    /// `subscribe_per_flow` list, or one it subscribes to and unsubscribed from). Lasts until
    /// the flow ends; events already emitted are not replayed.
    pub fn subscribe(&mut self, flow: &FlowRef, ty: EventType) -> SubscribeStatus {
        // A request on the publish call: no struct or vtable that plugins were built against
        // changes (abi_stable refuses a plugin whose root module or vtables have fewer fields
        // than the host's), and a host that predates it refuses the type (`NotDeclared`).
        let mut request = SubscribeRequest::new(*flow, ty);
        let size = core::mem::size_of::<SubscribeRequest>() as u32;
        // SAFETY: `request` lives across the call and the host writes only its `answer`.
        unsafe { (self.calls.publish)(self.calls.state, &mut request as *mut SubscribeRequest as *const EventHeader, size) };
        SubscribeStatus::from_answer(request.answer)
    }

    /// Queues `bytes` on a connection mbox terminates (a `[[service]]` on the Endpoint), behind
    /// what was sent before; the host copies what it takes. Takes at most the connection's
    /// free send buffer: when [`Sent::accepted`] is short ([`StreamStatus::Partial`]), write
    /// the rest on the flow's `FLOW/TCP/SEND_ROOM` event, so that a large answer streams
    /// without busy-waiting.
    ///
    /// On a split proxy (`stack = "proxy"`) the flow's direction picks the side: `DIR_REPLY`
    /// writes to the server side (what the backend gets), any other to the client; a
    /// `SEND_ROOM` event's flow names the side with room. With no server side open, a write
    /// to `DIR_REPLY` is [`StreamStatus::Ended`]. [`Host::close`] and [`Host::reset`] pick
    /// the side alike.
    pub fn send(&mut self, flow: &FlowRef, bytes: &[u8]) -> Sent {
        // At most 4 GiB per call: the rest is refused as if the buffer were full.
        let len = bytes.len().min(u32::MAX as usize) as u32;
        let mut request = self.stream_request(flow, StreamOp::Send, bytes.as_ptr(), len);
        let status = StreamStatus::from_answer(request.answer);
        if status == StreamStatus::Unsupported {
            request.accepted = 0;
        }
        Sent { accepted: request.accepted.min(len) as usize, status }
    }

    /// Closes mbox's side of a connection it terminates once what was sent before is out (a
    /// FIN); the peer may still send until it closes too.
    pub fn close(&mut self, flow: &FlowRef) -> StreamStatus {
        StreamStatus::from_answer(self.stream_request(flow, StreamOp::Close, core::ptr::null(), 0).answer)
    }

    /// Resets a connection mbox terminates (an RST); what was queued and not sent is dropped.
    pub fn reset(&mut self, flow: &FlowRef) -> StreamStatus {
        StreamStatus::from_answer(self.stream_request(flow, StreamOp::Reset, core::ptr::null(), 0).answer)
    }

    /// Joins a connection of a `[[service]]` on the Splicer to `backend`: mbox opens a
    /// connection to it with the client's options, sends it what the client sent so far, and
    /// from then on only translates the two connections' segments into each other (the NF
    /// gets no more of the connection's bytes: the bind's outcome, `FLOW/TCP/BOUND`, and the
    /// connection's `TERMINATE`). Once per connection, before the NF has sent or closed on it;
    /// a backend that refuses or does not answer is counted and the client is answered as the
    /// service's `refuse` says.
    ///
    /// On a split proxy the bind opens a server side: a connection from the service's source
    /// address to `backend`, whose bytes come as `DATA_RDY` of `DIR_REPLY` and which the NF
    /// writes with [`Host::send`] on that direction; `FLOW/TCP/BOUND` tells its handshake's
    /// outcome. Once the NF has closed it (or it ended), the flow may be bound again.
    pub fn bind(&mut self, flow: &FlowRef, backend: core::net::SocketAddr) -> BindStatus {
        let (family, addr) = match backend.ip() {
            core::net::IpAddr::V4(a) => (4, a.to_ipv6_mapped().octets()),
            core::net::IpAddr::V6(a) => (6, a.octets()),
        };
        let mut request = BindRequest {
            header: EventHeader::new::<BindRequest>(BIND_REQUEST, 0, *flow),
            flow: *flow,
            family,
            answer: UNANSWERED,
            port: backend.port(),
            _reserved: 0,
            addr,
        };
        let size = core::mem::size_of::<BindRequest>() as u32;
        // SAFETY: `request` lives across the call and the host writes only its `answer`. A
        // host that predates the type refuses it as undeclared and leaves `answer` unanswered.
        unsafe { (self.calls.publish)(self.calls.state, &mut request as *mut BindRequest as *const EventHeader, size) };
        BindStatus::from_answer(request.answer)
    }

    /// Logs `message` through the host's logger, under the NF's instance name, at `level`
    /// (what `RUST_LOG` lets through is written; the rest costs one call). A plugin's own
    /// `log` crate would log nowhere: its logger is the library's, never set. False when the
    /// host dropped the line: too many per second (counted in the NF's report), or a host that
    /// predates the call.
    pub fn log(&mut self, level: LogLevel, message: &str) -> bool {
        let mut request = LogRequest {
            header: EventHeader::new::<LogRequest>(
                LOG_REQUEST,
                0,
                FlowRef { id: 0, slot: 0, shard: 0, dir: crate::DIR_NONE, _reserved: 0 },
            ),
            level,
            answer: UNANSWERED,
            _reserved: [0; 2],
            len: message.len().min(u32::MAX as usize) as u32,
            text: message.as_ptr(),
        };
        let size = core::mem::size_of::<LogRequest>() as u32;
        // SAFETY: `request` lives across the call; the host reads `len` bytes at `text` and
        // writes only `answer`.
        unsafe { (self.calls.publish)(self.calls.state, &mut request as *mut LogRequest as *const EventHeader, size) };
        request.answer == 0
    }

    /// Makes a stream request through the publish call and returns it as the host answered.
    fn stream_request(&mut self, flow: &FlowRef, op: StreamOp, bytes: *const u8, len: u32) -> StreamRequest {
        let mut request = StreamRequest {
            header: EventHeader::new::<StreamRequest>(STREAM_REQUEST, 0, *flow),
            flow: *flow,
            op,
            answer: UNANSWERED,
            _reserved: [0; 2],
            len,
            accepted: 0,
            _reserved2: 0,
            bytes,
        };
        let size = core::mem::size_of::<StreamRequest>() as u32;
        // SAFETY: `request` lives across the call; the host reads `len` bytes at `bytes` and
        // writes only `answer` and `accepted`. A host that predates the type refuses it as
        // undeclared and leaves `answer` unanswered.
        unsafe { (self.calls.publish)(self.calls.state, &mut request as *mut StreamRequest as *const EventHeader, size) };
        request
    }
}

/// What a [`StreamRequest`] asks of a connection mbox terminates.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum StreamOp {
    /// Queue `len` bytes from `bytes` behind what was sent before.
    Send = 0,
    /// Close mbox's side once the queued bytes are sent (a FIN).
    Close = 1,
    /// Reset the connection (an RST); queued bytes are dropped.
    Reset = 2,
}

/// A request on a connection of a `[[service]]` that mbox terminates (the Endpoint µStack),
/// carried by the publish call like [`SubscribeRequest`]; its type is [`STREAM_REQUEST`]. The
/// host writes a [`StreamStatus`] into `answer` and, for a send, how many bytes it took into
/// `accepted` (it copies them: `bytes` need only live across the call).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct StreamRequest {
    pub header: EventHeader,
    pub flow: FlowRef,
    pub op: StreamOp,
    pub answer: u8,
    pub _reserved: [u8; 2],
    pub len: u32,
    pub accepted: u32,
    pub _reserved2: u32,
    pub bytes: *const u8,
}

/// The type of [`StreamRequest`]s (never routed to NFs).
pub const STREAM_REQUEST: EventType = match HOST_REQUEST.child(1) {
    Some(t) => t,
    None => EventType::ROOT,
};

// SAFETY: `#[repr(C)]` and begins with an `EventHeader`.
unsafe impl Event for StreamRequest {}

/// A request to join a Splicer connection to a backend ([`Host::bind`]), carried by the
/// publish call; its type is [`BIND_REQUEST`]. The host writes a [`BindStatus`] into `answer`.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct BindRequest {
    pub header: EventHeader,
    pub flow: FlowRef,
    /// 4 or 6: how to read `addr`.
    pub family: u8,
    pub answer: u8,
    pub port: u16,
    pub _reserved: u32,
    /// The backend's address: IPv6, or IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub addr: [u8; 16],
}

/// The type of [`BindRequest`]s (never routed to NFs).
pub const BIND_REQUEST: EventType = match HOST_REQUEST.child(2) {
    Some(t) => t,
    None => EventType::ROOT,
};

// SAFETY: `#[repr(C)]` and begins with an `EventHeader`.
unsafe impl Event for BindRequest {}

/// The outcome of [`Host::bind`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BindStatus {
    /// Queued: mbox opens the backend connection (its outcome is counted in the service's
    /// statistics; a failure answers the client as the service's `refuse` says).
    Done = 0,
    /// The connection has ended, was bound already, or the NF closed it: nothing was done. (A
    /// bind after the NF sent the client bytes is refused by the shard, counted
    /// `binds_refused`: the NF answered the client itself.)
    Ended = 1,
    /// The flow is not a connection of a Splicer service, or not one of this batch's shard.
    NoFlow = 2,
    /// The request named no address mbox can read. (A backend of another family than the
    /// service's `source` is refused by the shard, after the call: the client is refused and
    /// `binds_refused` counts it.)
    BadBackend = 3,
    /// The host predates the call.
    Unsupported = 4,
}

impl BindStatus {
    /// The status a host wrote into a request's `answer`.
    pub fn from_answer(answer: u8) -> BindStatus {
        match answer {
            0 => BindStatus::Done,
            1 => BindStatus::Ended,
            2 => BindStatus::NoFlow,
            3 => BindStatus::BadBackend,
            _ => BindStatus::Unsupported,
        }
    }
}

/// How much a [`Host::log`] line matters (the `log` crate's levels).
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// A line for the host's log ([`Host::log`]), carried by the publish call; its type is
/// [`LOG_REQUEST`]. The host writes 0 into `answer` when it took the line.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct LogRequest {
    pub header: EventHeader,
    pub level: LogLevel,
    pub answer: u8,
    pub _reserved: [u8; 2],
    pub len: u32,
    pub text: *const u8,
}

/// The type of [`LogRequest`]s (never routed to NFs).
pub const LOG_REQUEST: EventType = match HOST_REQUEST.child(3) {
    Some(t) => t,
    None => EventType::ROOT,
};

// SAFETY: `#[repr(C)]` and begins with an `EventHeader`.
unsafe impl Event for LogRequest {}

/// An operator's command for an NF ([`NetworkFunction::command`]), delivered by the host in a
/// batch of its own; the plugin glue answers it with a [`CommandReply`] and never hands it to
/// `on_event`. (A plugin built before commands existed gets it as an event of a type it knows
/// nothing of, and answers nothing: the host then says the NF takes no commands.)
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct CommandEvent {
    pub header: EventHeader,
    pub len: u32,
    pub _reserved: u32,
    /// The command's UTF-8 text, `len` bytes, valid during the batch call.
    pub text: *const u8,
}

/// The type of [`CommandEvent`]s (never routed through the service graph).
pub const NF_COMMAND: EventType = match HOST_REQUEST.child(4) {
    Some(t) => t,
    None => EventType::ROOT,
};

// SAFETY: `#[repr(C)]` and begins with an `EventHeader`.
unsafe impl Event for CommandEvent {}

/// The answer to a [`CommandEvent`], carried by the publish call; its type is
/// [`COMMAND_REPLY`]. The host copies the text during the call.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct CommandReply {
    pub header: EventHeader,
    /// 1: the command was done (`text` is its answer); 0: refused (`text` says why).
    pub ok: u8,
    pub _reserved: [u8; 3],
    pub len: u32,
    pub text: *const u8,
}

/// The type of [`CommandReply`]s (never routed to NFs).
pub const COMMAND_REPLY: EventType = match HOST_REQUEST.child(5) {
    Some(t) => t,
    None => EventType::ROOT,
};

// SAFETY: `#[repr(C)]` and begins with an `EventHeader`.
unsafe impl Event for CommandReply {}

/// The command the host sends every NF on SIGHUP (log rotation): the glue answers it with
/// [`NetworkFunction::reopen_outputs`], never [`NetworkFunction::command`].
pub const REOPEN_COMMAND: &str = "reopen";

/// Runs the command `event` carries on `nf` and publishes its answer.
fn command<N: NetworkFunction>(nf: &mut N, event: &EventHeader, host: &mut Host<'_>) {
    let answer = match event.view_as::<CommandEvent>(NF_COMMAND) {
        Some(c) => {
            // SAFETY: the host lends `len` bytes of text for the call.
            let bytes = unsafe { core::slice::from_raw_parts(c.text, c.len as usize) };
            match core::str::from_utf8(bytes) {
                Ok(REOPEN_COMMAND) => nf.reopen_outputs(),
                Ok(line) => nf.command(line),
                Err(_) => Err("the command is not UTF-8".to_string()),
            }
        }
        None => Err("a command event too short to read".to_string()),
    };
    let (ok, text) = match &answer {
        Ok(t) => (1, t.as_str()),
        Err(t) => (0, t.as_str()),
    };
    let mut reply = CommandReply {
        header: EventHeader::new::<CommandReply>(
            COMMAND_REPLY,
            0,
            FlowRef { id: 0, slot: 0, shard: 0, dir: crate::DIR_NONE, _reserved: 0 },
        ),
        ok,
        _reserved: [0; 3],
        len: text.len() as u32,
        text: text.as_ptr(),
    };
    let size = core::mem::size_of::<CommandReply>() as u32;
    // SAFETY: `reply` and its text live across the call; the host copies the text.
    unsafe { (host.calls.publish)(host.calls.state, &mut reply as *mut CommandReply as *const EventHeader, size) };
}

/// The outcome of [`Host::send`], [`Host::close`] and [`Host::reset`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    /// Queued: a send took every byte; a close or reset will be done in order after the sends
    /// before it.
    Done = 0,
    /// The connection's send buffer took only `accepted` bytes: a `FLOW/TCP/SEND_ROOM` event
    /// comes when it has room again.
    Partial = 1,
    /// The connection has ended, or mbox's side is closed: nothing was queued (counted).
    Ended = 2,
    /// The flow is not a connection mbox terminates, or not one of this batch's shard.
    NoFlow = 3,
    /// The host predates the call.
    Unsupported = 4,
}

impl StreamStatus {
    /// The status a host wrote into a request's `answer`.
    pub fn from_answer(answer: u8) -> StreamStatus {
        match answer {
            0 => StreamStatus::Done,
            1 => StreamStatus::Partial,
            2 => StreamStatus::Ended,
            3 => StreamStatus::NoFlow,
            _ => StreamStatus::Unsupported,
        }
    }
}

/// What [`Host::send`] did: bytes taken (copied) and why not more.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub accepted: usize,
    pub status: StreamStatus,
}

/// One of an NF's own counters: a name (`snake_case`, unique within the NF) and its value, as
/// `mboxctl stats`, the metrics endpoint and the run's report show it.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub name: RStr<'static>,
    pub value: u64,
}

/// Where an NF writes its counters (see [`NetworkFunction::counters`]).
pub struct Counters<'a> {
    pub(crate) out: &'a mut RVec<Counter>,
}

impl Counters<'_> {
    /// Reports counter `name` at `value`.
    pub fn set(&mut self, name: &'static str, value: u64) {
        self.out.push(Counter { name: RStr::from_str(name), value });
    }
}

/// What an NF author implements.
pub trait NetworkFunction: Send + 'static {
    /// Handles one event. The event and anything it points to are valid only during the call.
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict;

    /// The NF's input went idle: a good time to flush buffered output.
    fn on_idle(&mut self) {}

    /// The input ended and every event was delivered: write final results.
    fn on_finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// A new build of this NF replaces this instance (`mboxctl reload`): return the state the
    /// new instance should continue from, as bytes (and flush any output: the new instance
    /// appends to it). `Ok(None)` (the default) hands nothing over; the host then calls
    /// [`on_finish`](Self::on_finish) on this instance instead, and the new one starts afresh.
    /// An error refuses the reload: this instance keeps running.
    fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    /// Takes over the state a previous instance saved with [`save_state`](Self::save_state) —
    /// possibly an older build, so put a version in the bytes. An error leaves the previous
    /// instance running. The default refuses any state.
    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        Err(format!("this NF does not take over saved state ({} bytes offered)", state.len()))
    }

    /// Reports the NF's own counters — what an operator must see while it runs, such as bytes
    /// it could not inspect. Called on the NF's thread between batches, every few milliseconds
    /// and at the end; keep it cheap (copy fields, no formatting).
    fn counters(&self, _out: &mut Counters<'_>) {}

    /// An operator's command for this NF (`mboxctl nf NAME WORDS...`, e.g. `drain web1`), run
    /// on the NF's thread between batches (it reaches the plugin as a [`CommandEvent`] in a
    /// batch of its own, which the glue turns into this call): the answer is shown to the
    /// operator, an error as a failure. The default takes none.
    fn command(&mut self, line: &str) -> Result<String, String> {
        Err(format!("this NF takes no commands (got `{line}`)"))
    }

    /// Closes and opens again, appending, the files the NF writes, on the NF's thread between
    /// batches: mbox got SIGHUP, the conventional "logs were rotated" (logrotate's
    /// `postrotate`; `kit::LineWriter::reopen` does it for one file). The answer says what was
    /// reopened. The default has nothing to reopen.
    fn reopen_outputs(&mut self) -> Result<String, String> {
        Ok("no output files".into())
    }
}

/// The object the host calls, once per batch of events.
#[sabi_trait]
pub trait NfObject: Send {
    /// Handles `events` in order, writing one verdict per event.
    fn handle_batch(
        &mut self,
        events: RSlice<'_, &EventHeader>,
        verdicts: RSliceMut<'_, Verdict>,
        host: &mut HostCalls,
    ) -> RResult<(), RString>;

    /// See [`NetworkFunction::on_idle`].
    fn idle(&mut self) -> RResult<(), RString>;

    /// See [`NetworkFunction::on_finish`].
    fn finish(&mut self) -> RResult<(), RString>;

    /// See [`NetworkFunction::save_state`].
    fn save_state(&mut self) -> RResult<ROption<RVec<u8>>, RString>;

    /// See [`NetworkFunction::restore_state`].
    #[sabi(last_prefix_field)]
    fn restore_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), RString>;

    /// See [`NetworkFunction::counters`]: appends them to `out`. The vtable takes no more
    /// methods: abi_stable refuses a plugin whose vtable has fewer fields than the host's
    /// (`tests/fixtures/previous-abi` checks that plugins built before still load), so later
    /// calls ride `handle_batch` and the publish call instead, as commands do
    /// ([`CommandEvent`]).
    fn counters(&mut self, _out: &mut RVec<Counter>) -> RResult<(), RString> {
        RResult::ROk(())
    }
}

/// A boxed NF as the host holds it.
pub type NfBox = NfObject_TO<'static, RBox<()>>;

/// Wraps an author's NF so that its panics become errors on the plugin's side.
pub struct Guarded<N>(pub N);

impl<N: NetworkFunction> NfObject for Guarded<N> {
    fn handle_batch(
        &mut self,
        events: RSlice<'_, &EventHeader>,
        mut verdicts: RSliceMut<'_, Verdict>,
        host: &mut HostCalls,
    ) -> RResult<(), RString> {
        let nf = &mut self.0;
        guard(|| {
            let mut host = Host::new(host);
            for (event, verdict) in events.iter().zip(verdicts.iter_mut()) {
                *verdict = match event.ty == NF_COMMAND {
                    // An operator's command rides the batch call (no vtable method, so that
                    // plugins built before it still load): answered through the publish call.
                    true => {
                        command(nf, event, &mut host);
                        Verdict::Pass
                    }
                    false => nf.on_event(event, &mut host),
                };
            }
            Ok(())
        })
    }

    fn idle(&mut self) -> RResult<(), RString> {
        let nf = &mut self.0;
        guard(|| {
            nf.on_idle();
            Ok(())
        })
    }

    fn finish(&mut self) -> RResult<(), RString> {
        let nf = &mut self.0;
        guard(|| nf.on_finish())
    }

    fn save_state(&mut self) -> RResult<ROption<RVec<u8>>, RString> {
        let nf = &mut self.0;
        guard(|| Ok(nf.save_state()?.map(RVec::from).into()))
    }

    fn restore_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), RString> {
        let nf = &mut self.0;
        guard(|| nf.restore_state(state.as_slice()))
    }

    fn counters(&mut self, out: &mut RVec<Counter>) -> RResult<(), RString> {
        let nf = &self.0;
        guard(|| {
            nf.counters(&mut Counters { out });
            Ok(())
        })
    }
}

/// Runs `f`, turning an error or a panic into an `RErr` with a message.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(message)) => RResult::RErr(message.into()),
        Err(payload) => RResult::RErr(format!("panicked: {}", panic_message(&*payload)).into()),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
