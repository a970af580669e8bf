//! What NFs write to the connections mbox terminates (`Host::send`, `close`, `reset`): the
//! per-lane rings that carry the requests and their bytes from an NF's thread to the shard, in
//! order, and the send credits that bound them.
//!
//! A shard publishes, per connection, how far NFs may write: `limit` = the bytes it has moved
//! into the connection's send buffer + the room left there. An NF's request reserves bytes
//! below the limit (one atomic compare-and-swap per call, not per event) and copies them into
//! its lane's byte ring; the shard moves them into the send buffer on its next round, where
//! they always fit. A request that got less than it asked for marks the connection, and the
//! shard sends `FLOW/TCP/SEND_ROOM` once acknowledgements raise the limit again: a large answer
//! streams without busy-waiting and without an unbounded queue.
//!
//! The handshake between a refused NF and the shard is sequentially consistent: the NF sets its
//! flag and then reads the limit again, the shard stores the limit and then takes the flag, so
//! one of them sees the other (no lost SEND_ROOM). `queued` only grows, across the slot's
//! connections: a writer that reserved on a connection that ended meanwhile (its slot reused)
//! gives the bytes back, and the new connection's credit counts from where `queued` stood when
//! it opened. When a lane's rings are full, a send is refused (room is announced once the shard
//! has drained them) and a close or reset is left in the connection's flags for the shard to
//! find, so that neither is ever lost.
//!
//! A Splicer's bind (`Host::bind`) rides the same rings, its backend's address as the command's
//! bytes; when they are full it waits in the connection's credit (an address fits in three
//! atomics), so it is never lost either. A connection is bound once.

use crate::sys::park::Waker;
use mbox_abi::{BindStatus, FlowRef, StreamOp, StreamStatus};
use rtrb::{Consumer, Producer, RingBuffer};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Requests a lane carries at once.
pub const COMMAND_RING: usize = 4096;
/// Bytes a lane carries at once (NFs' writes on their way into send buffers).
pub const BYTE_RING: usize = 4 << 20;

/// One request, its bytes (for a send) following in the byte ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommand {
    /// The connection's index in the shard's table, and its flow id (a reused index is told
    /// apart by the id).
    pub conn: u32,
    pub id: u64,
    pub op: Request,
    pub len: u32,
}

/// What a command asks of a connection: the ABI's stream operations, and the Splicer's bind
/// (its bytes: the backend, [`BACKEND_LEN`] bytes that [`decode_backend`] reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Send,
    Close,
    Reset,
    Bind,
}

impl From<StreamOp> for Request {
    fn from(op: StreamOp) -> Request {
        match op {
            StreamOp::Send => Request::Send,
            StreamOp::Close => Request::Close,
            StreamOp::Reset => Request::Reset,
        }
    }
}

/// A request the rings had no room for, left in a connection's credit for the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Close,
    Reset,
    Bind(SocketAddr),
}

/// Bytes of a bind command: the port (big-endian), then the address as IPv6 (IPv4 mapped).
pub const BACKEND_LEN: usize = 18;

fn encode_backend(backend: SocketAddr) -> [u8; BACKEND_LEN] {
    let mut b = [0; BACKEND_LEN];
    b[..2].copy_from_slice(&backend.port().to_be_bytes());
    let v6 = match backend.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    b[2..].copy_from_slice(&v6.octets());
    b
}

/// The backend of a bind command, its bytes in two pieces (the ring may wrap).
pub fn decode_backend(first: &[u8], second: &[u8]) -> Option<SocketAddr> {
    let mut b = [0; BACKEND_LEN];
    if first.len() + second.len() != BACKEND_LEN {
        return None;
    }
    b[..first.len()].copy_from_slice(first);
    b[first.len()..].copy_from_slice(second);
    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&b[2..]).ok()?);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    Some(SocketAddr::new(ip, u16::from_be_bytes([b[0], b[1]])))
}

/// A connection's credit. `id` 0: no connection there.
#[derive(Debug, Default)]
struct Credit {
    id: AtomicU64,
    limit: AtomicU64,
    queued: AtomicU64,
    flags: AtomicU8,
    /// A bind the rings had no room for (with `PENDING_BIND`): the backend's address and port.
    bind_addr: [AtomicU64; 2],
    bind_port: AtomicU32,
    /// The flow id the pending flags were left for: the shard applies them only while it is
    /// still the slot's (an NF may mark a connection the slot has just been given away from).
    pending_id: AtomicU64,
    /// A split proxy's client connection: the table index of its server side (`NO_PEER`:
    /// none), where an NF's requests on the flow's `DIR_REPLY` go.
    peer: AtomicU32,
}

/// `Credit::peer` of a connection with no server side.
const NO_PEER: u32 = u32::MAX;

/// `Credit::flags`: mbox's side is closed (no more sends), an NF got less than it asked, and a
/// close or reset that found the lane's rings full waits for the shard.
const CLOSED: u8 = 1;
const WANTS_ROOM: u8 = 2;
const PENDING_CLOSE: u8 = 4;
const PENDING_RESET: u8 = 8;
/// The connection was bound (`Host::bind` once), and a bind waits in the credit.
const BOUND: u8 = 16;
const PENDING_BIND: u8 = 32;
/// A split proxy's client connection: bound once per request, so `BOUND` refuses nothing (the
/// shard refuses a bind while a server side the NFs have not closed is open).
const REBINDS: u8 = 64;

/// The send credits of one shard's connections, shared by the shard and the NFs' threads.
#[derive(Debug)]
pub struct SendCredits {
    /// The flow slot of connection 0 (connections' flow slots follow the flow table's).
    slot_base: u32,
    credits: Box<[Credit]>,
}

impl SendCredits {
    pub fn new(slot_base: u32, connections: usize) -> SendCredits {
        let credits = (0..connections).map(|_| Credit { peer: AtomicU32::new(NO_PEER), ..Credit::default() }).collect();
        SendCredits { slot_base, credits }
    }

    /// Bytes the table takes for `connections` connections.
    pub fn footprint(connections: usize) -> usize {
        connections * std::mem::size_of::<Credit>()
    }

    /// The flow slot of connection `conn`.
    pub fn slot_of(&self, conn: u32) -> u32 {
        self.slot_base + conn
    }

    /// The connection index of a flow slot, if it is one.
    pub fn conn_of(&self, slot: u32) -> Option<u32> {
        slot.checked_sub(self.slot_base).filter(|&c| (c as usize) < self.credits.len())
    }

    /// Shard: requests on the `DIR_REPLY` side of client connection `conn`'s flow go to
    /// connection `server` from now on (a split proxy's server side; `None`: it has none, and
    /// the flow may be bound again).
    pub fn set_peer(&self, conn: u32, server: Option<u32>) {
        let c = &self.credits[conn as usize];
        c.peer.store(server.unwrap_or(NO_PEER), Ordering::SeqCst);
        if server.is_none() {
            c.flags.fetch_and(!BOUND, Ordering::SeqCst);
        }
    }

    /// Shard: whether an NF was refused room on connection `conn` and waits for it (its
    /// `SEND_ROOM` not sent yet): it holds bytes it could not write.
    pub fn waits_for_room(&self, conn: u32) -> bool {
        self.credits[conn as usize].flags.load(Ordering::SeqCst) & WANTS_ROOM != 0
    }

    /// Shard: connection `conn` is a split proxy's client connection, bound as often as its NFs
    /// route a request.
    pub fn allow_rebinds(&self, conn: u32) {
        self.credits[conn as usize].flags.fetch_or(REBINDS, Ordering::SeqCst);
    }

    /// Shard: connection `conn` (flow `id`) opens with no room yet. Returns its base: the
    /// credit's limits count from it ([`SendCredits::raise`] with base + bytes).
    pub fn open(&self, conn: u32, id: u64) -> u64 {
        let c = &self.credits[conn as usize];
        let base = c.queued.load(Ordering::SeqCst);
        c.limit.store(base, Ordering::SeqCst);
        c.flags.store(0, Ordering::SeqCst);
        c.peer.store(NO_PEER, Ordering::SeqCst);
        // Last: an NF that sees the id sees the rest.
        c.id.store(id, Ordering::SeqCst);
        base
    }

    /// Shard: NFs may now write up to `limit` (from the connection's base) in all. Returns
    /// whether an NF was refused room before and the limit now leaves some (the flag is
    /// cleared: one event per refusal).
    pub fn raise(&self, conn: u32, limit: u64) -> bool {
        let c = &self.credits[conn as usize];
        c.limit.store(limit, Ordering::SeqCst);
        let room = limit > c.queued.load(Ordering::SeqCst);
        room && c.flags.fetch_and(!WANTS_ROOM, Ordering::SeqCst) & WANTS_ROOM != 0
    }

    /// Shard: takes what a refused NF left in connection `conn`'s flags: whether it waits for
    /// room (cleared only when there is room), and a close or reset the rings had no room for.
    pub fn take_pending(&self, conn: u32) -> (bool, Option<Pending>) {
        let c = &self.credits[conn as usize];
        let mut flags = c.flags.fetch_and(!(PENDING_CLOSE | PENDING_RESET | PENDING_BIND), Ordering::SeqCst);
        if c.pending_id.load(Ordering::SeqCst) != c.id.load(Ordering::SeqCst) {
            // Left for the connection the slot had before: not this one's.
            flags &= !(PENDING_CLOSE | PENDING_RESET | PENDING_BIND);
        }
        let op = match flags {
            f if f & PENDING_RESET != 0 => Some(Pending::Reset),
            f if f & PENDING_CLOSE != 0 => Some(Pending::Close),
            f if f & PENDING_BIND != 0 => {
                let mut b = [0u8; BACKEND_LEN];
                b[..2].copy_from_slice(&(c.bind_port.load(Ordering::SeqCst) as u16).to_be_bytes());
                b[2..10].copy_from_slice(&c.bind_addr[0].load(Ordering::SeqCst).to_be_bytes());
                b[10..].copy_from_slice(&c.bind_addr[1].load(Ordering::SeqCst).to_be_bytes());
                decode_backend(&b, &[]).map(Pending::Bind)
            }
            _ => None,
        };
        let room = c.limit.load(Ordering::SeqCst) > c.queued.load(Ordering::SeqCst);
        let wants = room && c.flags.fetch_and(!WANTS_ROOM, Ordering::SeqCst) & WANTS_ROOM != 0;
        (wants, op)
    }

    /// Shard: the connection is gone (or mbox's side closed): requests are refused from now.
    pub fn end(&self, conn: u32) {
        self.credits[conn as usize].id.store(0, Ordering::Release);
    }

    /// NF: reserves up to `want` bytes for a send on `flow`, marking the connection as wanting
    /// room when it gets less; `Err` says why none.
    fn reserve(&self, conn: u32, id: u64, want: u64) -> Result<u64, StreamStatus> {
        let c = &self.credits[conn as usize];
        let mut granted = 0;
        // Twice at most: once, and again if the limit rose while the flag was being set.
        for _ in 0..2 {
            if c.id.load(Ordering::SeqCst) != id || c.flags.load(Ordering::SeqCst) & CLOSED != 0 {
                return if granted > 0 { Ok(granted) } else { Err(StreamStatus::Ended) };
            }
            let limit = c.limit.load(Ordering::SeqCst);
            let mut queued = c.queued.load(Ordering::SeqCst);
            let n = loop {
                let n = (want - granted).min(limit.saturating_sub(queued));
                match c.queued.compare_exchange_weak(queued, queued + n, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => break n,
                    Err(now) => queued = now,
                }
            };
            if c.id.load(Ordering::SeqCst) != id {
                // The slot went to another connection meanwhile: these bytes are not its.
                c.queued.fetch_sub(n, Ordering::SeqCst);
                return if granted > 0 { Ok(granted) } else { Err(StreamStatus::Ended) };
            }
            granted += n;
            if granted == want {
                return Ok(granted);
            }
            c.flags.fetch_or(WANTS_ROOM, Ordering::SeqCst);
            if c.limit.load(Ordering::SeqCst) <= c.queued.load(Ordering::SeqCst) {
                break; // the shard will see the flag when it raises the limit
            }
        }
        Ok(granted)
    }

    /// NF: leaves `flag` (and CLOSED for a close or reset) in connection `conn`'s flags.
    fn mark(&self, conn: u32, flag: u8) {
        self.credits[conn as usize].flags.fetch_or(flag, Ordering::SeqCst);
    }

    /// NF: [`mark`](Self::mark) for flow `id` only. False, with the flags it set taken back,
    /// when the slot went to another connection between the NF's check and the mark: a close,
    /// reset or bind meant for a connection that ended must not land on the next one.
    fn mark_for(&self, conn: u32, id: u64, flag: u8) -> bool {
        let c = &self.credits[conn as usize];
        c.pending_id.store(id, Ordering::SeqCst);
        let before = c.flags.fetch_or(flag, Ordering::SeqCst);
        if c.id.load(Ordering::SeqCst) != id {
            c.flags.fetch_and(!(flag & !before), Ordering::SeqCst);
            return false;
        }
        true
    }

    /// NF: the connection index of the side of `flow` that a request goes to: the flow's own
    /// connection, or on `DIR_REPLY` a split proxy's server side (`None` when it has none).
    fn side(&self, flow: &FlowRef) -> Option<u32> {
        let conn = self.conn_of(flow.slot)?;
        if flow.dir != mbox_abi::DIR_REPLY {
            return Some(conn);
        }
        let peer = self.credits[conn as usize].peer.load(Ordering::SeqCst);
        (peer != NO_PEER && (peer as usize) < self.credits.len()).then_some(peer)
    }

    /// NF: the index of `flow`'s side ([`SendCredits::side`]) if it is a live connection.
    fn live(&self, flow: &FlowRef) -> Option<u32> {
        let conn = self.side(flow)?;
        (self.credits[conn as usize].id.load(Ordering::Acquire) == flow.id).then_some(conn)
    }
}

/// The NF's end of a lane's stream rings.
pub struct StreamWriter {
    commands: Producer<StreamCommand>,
    bytes: Producer<u8>,
    credits: Arc<SendCredits>,
    shard_waker: Arc<Waker>,
    /// Set when a request found the rings full: the shard looks at every connection's flags.
    refused: Arc<std::sync::atomic::AtomicBool>,
}

/// The shard's end of a lane's stream rings.
pub struct StreamReader {
    commands: Consumer<StreamCommand>,
    bytes: Consumer<u8>,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

/// The two ends of one lane's stream rings.
pub fn stream_rings(credits: Arc<SendCredits>, shard_waker: Arc<Waker>) -> (StreamWriter, StreamReader) {
    let (cp, cc) = RingBuffer::new(COMMAND_RING);
    let (bp, bc) = RingBuffer::new(BYTE_RING);
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    (
        StreamWriter { commands: cp, bytes: bp, credits, shard_waker, refused: refused.clone() },
        StreamReader { commands: cc, bytes: bc, refused },
    )
}

/// Bytes one lane's stream rings take.
pub fn footprint() -> usize {
    COMMAND_RING * std::mem::size_of::<StreamCommand>() + BYTE_RING
}

impl StreamWriter {
    /// Queues one request of an NF for the shard; returns its status and, for a send, the
    /// bytes taken. Must not panic: it runs inside a plugin call.
    pub fn request(&mut self, flow: &FlowRef, op: StreamOp, bytes: &[u8]) -> (StreamStatus, u32) {
        if self.credits.conn_of(flow.slot).is_none() || !flow.is_some() {
            return (StreamStatus::NoFlow, 0);
        }
        // A proxy flow's reply side with no server connection: nothing to write to.
        let Some(conn) = self.credits.side(flow) else { return (StreamStatus::Ended, 0) };
        let closed = self.credits.credits[conn as usize].flags.load(Ordering::SeqCst) & CLOSED != 0;
        if self.credits.live(flow).is_none() || (closed && op == StreamOp::Send) {
            return (StreamStatus::Ended, 0);
        }
        if self.commands.slots() == 0 || (op == StreamOp::Send && self.bytes.slots() == 0) {
            // The shard is behind on this lane. A send takes nothing (room is announced once the
            // shard has drained the rings); a close or reset waits in the connection's flags.
            let flag = match op {
                StreamOp::Send => WANTS_ROOM,
                StreamOp::Close => PENDING_CLOSE | CLOSED,
                StreamOp::Reset => PENDING_RESET | CLOSED,
            };
            if !self.credits.mark_for(conn, flow.id, flag) {
                return (StreamStatus::Ended, 0);
            }
            self.refused.store(true, Ordering::SeqCst);
            self.shard_waker.wake();
            return (if op == StreamOp::Send { StreamStatus::Partial } else { StreamStatus::Done }, 0);
        }
        let mut status = StreamStatus::Done;
        let mut len = 0u32;
        match op {
            StreamOp::Send => {
                let want = bytes.len().min(self.bytes.slots()).min(u32::MAX as usize) as u64;
                let granted = match self.credits.reserve(conn, flow.id, want) {
                    Ok(n) => n as usize,
                    Err(s) => return (s, 0),
                };
                if granted < bytes.len() {
                    status = StreamStatus::Partial;
                    if granted == want as usize {
                        // Short because of the byte ring, not the credit: room is announced
                        // once the shard has drained it.
                        self.credits.mark(conn, WANTS_ROOM);
                        self.refused.store(true, Ordering::SeqCst);
                    }
                }
                if granted == 0 {
                    return (status, 0);
                }
                let Ok(mut chunk) = self.bytes.write_chunk_uninit(granted) else { return (StreamStatus::Partial, 0) };
                let (first, second) = chunk.as_mut_slices();
                let split = first.len();
                // SAFETY: MaybeUninit<u8> has u8's layout; exactly `granted` bytes are written
                // before the commit.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), first.as_mut_ptr() as *mut u8, split);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().add(split), second.as_mut_ptr() as *mut u8, granted - split);
                    chunk.commit_all();
                }
                len = granted as u32;
            }
            StreamOp::Close | StreamOp::Reset => {
                if !self.credits.mark_for(conn, flow.id, CLOSED) {
                    return (StreamStatus::Ended, 0);
                }
            }
        }
        // Cannot fail: a slot was free above and only this thread pushes.
        let _ = self.commands.push(StreamCommand { conn, id: flow.id, op: op.into(), len });
        self.shard_waker.wake();
        (status, len)
    }

    /// Queues a bind of `flow` to `backend` for the shard (`Host::bind`). The shard checks
    /// that the connection is a Splicer's and not spliced yet; here only that it lives, was
    /// not bound before and took no close. Must not panic.
    pub fn bind(&mut self, flow: &FlowRef, backend: SocketAddr) -> BindStatus {
        let Some(conn) = self.credits.conn_of(flow.slot).filter(|_| flow.is_some()) else { return BindStatus::NoFlow };
        if self.credits.live(flow).is_none() {
            return BindStatus::Ended;
        }
        let c = &self.credits.credits[conn as usize];
        let flags = c.flags.load(Ordering::SeqCst);
        let bound = flags & BOUND != 0 && flags & REBINDS == 0;
        if bound || flags & CLOSED != 0 || !self.credits.mark_for(conn, flow.id, BOUND) {
            return BindStatus::Ended;
        }
        let bytes = encode_backend(backend);
        if self.commands.slots() == 0 || self.bytes.slots() < BACKEND_LEN {
            // The shard is behind on this lane: the bind waits in the credit.
            c.bind_port.store(u32::from(backend.port()), Ordering::SeqCst);
            c.bind_addr[0].store(u64::from_be_bytes(bytes[2..10].try_into().unwrap_or_default()), Ordering::SeqCst);
            c.bind_addr[1].store(u64::from_be_bytes(bytes[10..].try_into().unwrap_or_default()), Ordering::SeqCst);
            if !self.credits.mark_for(conn, flow.id, PENDING_BIND) {
                return BindStatus::Ended;
            }
            self.refused.store(true, Ordering::SeqCst);
            self.shard_waker.wake();
            return BindStatus::Done;
        }
        let Ok(mut chunk) = self.bytes.write_chunk_uninit(BACKEND_LEN) else { return BindStatus::Ended };
        let (first, second) = chunk.as_mut_slices();
        let split = first.len();
        // SAFETY: MaybeUninit<u8> has u8's layout; exactly BACKEND_LEN bytes are written
        // before the commit.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), first.as_mut_ptr() as *mut u8, split);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(split), second.as_mut_ptr() as *mut u8, BACKEND_LEN - split);
            chunk.commit_all();
        }
        let _ = self.commands.push(StreamCommand { conn, id: flow.id, op: Request::Bind, len: BACKEND_LEN as u32 });
        self.shard_waker.wake();
        BindStatus::Done
    }
}

impl StreamReader {
    /// Takes the next request, handing `apply` the command and its bytes (two pieces where the
    /// ring wraps). False when none waits.
    pub fn next(&mut self, apply: impl FnOnce(StreamCommand, &[u8], &[u8])) -> bool {
        let Ok(cmd) = self.commands.pop() else { return false };
        let len = cmd.len as usize;
        match self.bytes.read_chunk(len) {
            Ok(chunk) => {
                let (a, b) = chunk.as_slices();
                apply(cmd, a, b);
                chunk.commit_all();
            }
            // The writer commits the bytes before the command: they are there.
            Err(_) => apply(StreamCommand { len: 0, ..cmd }, &[], &[]),
        }
        true
    }

    /// Whether a request waits (or one was refused for want of ring room).
    pub fn has_work(&self) -> bool {
        !self.commands.is_empty() || self.refused.load(Ordering::Relaxed)
    }

    /// Whether a request waits in the rings.
    pub fn has_work_queued(&self) -> bool {
        !self.commands.is_empty()
    }

    /// Looks at the connections' flags again next round (event room ran out).
    pub fn refuse_again(&self) {
        self.refused.store(true, Ordering::SeqCst);
    }

    /// Whether a request found the rings full since the last call: the shard then looks at
    /// every connection's flags ([`SendCredits::take_pending`]) once it has drained the rings.
    pub fn take_refused(&self) -> bool {
        self.refused.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(conn: u32, id: u64) -> FlowRef {
        FlowRef { id, slot: 100 + conn, shard: 0, dir: 0, _reserved: 0 }
    }

    #[test]
    fn sends_are_bounded_by_the_credit_and_room_is_announced_once() {
        let credits = Arc::new(SendCredits::new(100, 4));
        let (mut w, mut r) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        assert_eq!(w.request(&flow(1, 7), StreamOp::Send, b"x").0, StreamStatus::Ended, "no connection yet");
        assert_eq!(w.request(&FlowRef { slot: 3, ..flow(0, 7) }, StreamOp::Send, b"x").0, StreamStatus::NoFlow);
        credits.open(1, 7);
        credits.raise(1, 10);
        assert_eq!(w.request(&flow(1, 7), StreamOp::Send, b"hello"), (StreamStatus::Done, 5));
        assert_eq!(w.request(&flow(1, 7), StreamOp::Send, b"world, again"), (StreamStatus::Partial, 5));
        assert_eq!(w.request(&flow(1, 7), StreamOp::Send, b"more"), (StreamStatus::Partial, 0));
        let mut got = Vec::new();
        while r.next(|c, a, b| {
            assert_eq!((c.conn, c.id), (1, 7));
            got.extend_from_slice(a);
            got.extend_from_slice(b);
        }) {}
        assert_eq!(got, b"helloworld", "in order, within the credit");
        assert!(!credits.raise(1, 10), "no room yet");
        assert!(credits.raise(1, 16), "room again after a refusal");
        assert!(!credits.raise(1, 20), "once per refusal");
        assert_eq!(w.request(&flow(1, 7), StreamOp::Close, &[]).0, StreamStatus::Done);
        assert_eq!(w.request(&flow(1, 7), StreamOp::Send, b"late").0, StreamStatus::Ended, "closed: no more sends");
        credits.end(1);
        let base = credits.open(1, 8);
        credits.raise(1, base + 10);
        assert_eq!(w.request(&flow(1, 7), StreamOp::Send, b"old").0, StreamStatus::Ended, "a reused index is another flow");
        assert_eq!(w.request(&flow(1, 8), StreamOp::Send, b"new"), (StreamStatus::Done, 3));
    }

    #[test]
    fn with_the_rings_full_a_send_waits_for_room_and_a_close_is_kept_not_lost() {
        let credits = Arc::new(SendCredits::new(0, 2));
        let (mut w, mut r) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        credits.open(0, 1);
        credits.raise(0, u64::MAX / 2);
        let f = FlowRef { id: 1, slot: 0, shard: 0, dir: 0, _reserved: 0 };
        for _ in 0..COMMAND_RING {
            assert_eq!(w.request(&f, StreamOp::Send, b"x").0, StreamStatus::Done);
        }
        assert_eq!(w.request(&f, StreamOp::Send, b"y"), (StreamStatus::Partial, 0), "no ring room: nothing taken");
        assert_eq!(w.request(&f, StreamOp::Close, &[]).0, StreamStatus::Done, "a close is never refused");
        assert_eq!(w.request(&f, StreamOp::Send, b"z").0, StreamStatus::Ended, "closed: no more sends");
        assert!(r.has_work());
        while r.next(|_, _, _| {}) {}
        assert!(r.take_refused(), "the shard is told to look at the flags");
        assert_eq!(credits.take_pending(0), (true, Some(Pending::Close)), "room for the refused send, the close applied");
        assert_eq!(credits.take_pending(0), (false, None), "once");
    }

    #[test]
    fn a_mark_for_a_connection_the_slot_was_given_away_from_does_not_land_on_the_next() {
        let credits = SendCredits::new(100, 4);
        credits.open(1, 7);
        // The NF checked flow 7 live; then the shard ended it and gave the slot to flow 8.
        credits.end(1);
        credits.open(1, 8);
        assert!(!credits.mark_for(1, 7, PENDING_CLOSE | CLOSED), "too late for flow 7");
        assert_eq!(credits.credits[1].flags.load(Ordering::SeqCst), 0, "flow 8's flags untouched");
        assert_eq!(credits.take_pending(1), (false, None));
        // A mark left while 7 still held the slot is not applied to 8 either.
        credits.open(1, 9);
        assert!(credits.mark_for(1, 9, PENDING_RESET | CLOSED));
        credits.credits[1].id.store(10, Ordering::SeqCst); // as `open` would, racing the shard
        assert_eq!(credits.take_pending(1).1, None, "pending for 9, not 10");
        // Its own marks do apply.
        credits.open(1, 11);
        assert!(credits.mark_for(1, 11, PENDING_CLOSE | CLOSED));
        assert_eq!(credits.take_pending(1).1, Some(Pending::Close));
    }

    #[test]
    fn a_bind_is_carried_once_through_the_rings_or_the_credit_when_they_are_full() {
        let credits = Arc::new(SendCredits::new(0, 2));
        let (mut w, mut r) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let backend: SocketAddr = "198.18.2.7:8080".parse().unwrap();
        let f = |conn: u32, id| FlowRef { id, slot: conn, shard: 0, dir: 0, _reserved: 0 };
        assert_eq!(w.bind(&f(0, 1), backend), BindStatus::Ended, "no connection yet");
        assert_eq!(w.bind(&f(5, 1), backend), BindStatus::NoFlow);
        credits.open(0, 1);
        assert_eq!(w.bind(&f(0, 1), backend), BindStatus::Done);
        assert_eq!(w.bind(&f(0, 1), backend), BindStatus::Ended, "bound once");
        let mut got = None;
        assert!(r.next(|c, a, b| got = Some((c.op, c.conn, decode_backend(a, b)))));
        assert_eq!(got, Some((Request::Bind, 0, Some(backend))));
        // With the rings full, the bind (an IPv6 backend this time) waits in the credit.
        credits.open(1, 2);
        credits.raise(1, u64::MAX / 2);
        while w.request(&f(1, 2), StreamOp::Send, b"x").1 == 1 {}
        let v6: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
        assert_eq!(w.bind(&f(1, 2), v6), BindStatus::Done);
        while r.next(|_, _, _| {}) {}
        assert!(r.take_refused());
        assert_eq!(credits.take_pending(1), (true, Some(Pending::Bind(v6))));
        assert_eq!(credits.take_pending(1).1, None, "once");
    }

    #[test]
    fn a_writer_on_a_reused_slot_gives_its_reservation_back() {
        let credits = SendCredits::new(0, 1);
        let base = credits.open(0, 1);
        credits.raise(0, base + 100);
        assert_eq!(credits.reserve(0, 1, 60), Ok(60));
        credits.end(0);
        let base = credits.open(0, 2);
        assert_eq!(base, 60, "the new connection's credit counts from where the old one stopped");
        credits.raise(0, base + 100);
        assert_eq!(credits.reserve(0, 1, 10), Err(StreamStatus::Ended), "the old id is refused");
        assert_eq!(credits.reserve(0, 2, 500), Ok(100), "all of the new connection's credit");
    }

    #[test]
    fn writers_on_two_threads_never_exceed_the_limit() {
        let credits = Arc::new(SendCredits::new(0, 1));
        credits.open(0, 1);
        credits.raise(0, 100_000);
        let f = FlowRef { id: 1, slot: 0, shard: 0, dir: 0, _reserved: 0 };
        let spawned: Vec<_> = (0..2)
            .map(|_| {
                let (mut w, r) = stream_rings(credits.clone(), Arc::new(Waker::new()));
                std::thread::spawn(move || {
                    let mut total = 0u64;
                    for _ in 0..10_000 {
                        total += u64::from(w.request(&f, StreamOp::Send, &[0u8; 17]).1);
                    }
                    drop(r);
                    total
                })
            })
            .collect();
        let taken: u64 = spawned.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken, 100_000, "together exactly the credit");
    }
}
