//! A lane: the channels between one shard and one NF.
//!
//! - Events go out as handles (slot indices of the shard's arena) on an rtrb SPSC ring.
//! - Completions come back as a single counter: the NF handles a ring's events in order and
//!   adds how many it finished, so the shard retires that many from the front of its own
//!   in-order record of what it sent. No message per event travels back.
//! - Events the NF publishes come back on a second SPSC ring, as bytes (publications are rare),
//!   and its per-flow (un)subscriptions on a third, as small records.
//!
//! Which events go to the NF, and when, is the router's business (`runtime::router`: stages,
//! emission order, per-flow mutes); the lane carries what the router lets through.

use crate::events::arena::{EventArena, EventBytes};
use crate::sys::park::Waker;
use crossbeam_utils::CachePadded;
use mbox_abi::EventType;
use rtrb::{Consumer, Producer, RingBuffer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Events waiting in a ring before the shard wakes a sleeping NF (see [`LaneTx::nudge`]).
pub const WAKE_BATCH: usize = 32;

/// Publications an NF may have queued for one shard before it is told `Full`.
pub const PUBLICATION_RING: usize = 4096;
/// Per-flow (un)subscriptions an NF may have queued for one shard before it is told `Full`.
pub const CONTROL_RING: usize = 256;

/// An NF's request to stop (`Host::unsubscribe`) or start (`Host::subscribe`) the events of
/// `ty` (and below) of one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSubscription {
    pub flow_id: u64,
    pub slot: u32,
    pub ty: EventType,
    pub subscribe: bool,
}

/// The shard's end of a lane.
pub struct LaneTx {
    ring: Producer<u32>,
    /// Handles waiting for room in the ring, oldest first.
    pending: VecDeque<u32>,
    /// Handles in the ring or being handled, in the order they were pushed.
    in_flight: VecDeque<u32>,
    done: Arc<CachePadded<AtomicU64>>,
    /// The completion count already read, and how many of those are not yet retired.
    retired: u64,
    retirable: usize,
    nf_waker: Arc<Waker>,
    publications: Option<Consumer<EventBytes>>,
    flow_subscriptions: Consumer<FlowSubscription>,
    /// Events pushed to the NF.
    pub delivered: u64,
    /// Events not delivered because the ring was full under the `drop` policy (counted by
    /// the shard).
    pub ring_full_drops: u64,
}

/// The NF's end of a lane.
pub struct LaneRx {
    pub ring: Consumer<u32>,
    pub done: Arc<CachePadded<AtomicU64>>,
    pub arena: Arc<EventArena>,
    pub shard_waker: Arc<Waker>,
    /// Where the NF's publications for this shard go (only for NFs that publish).
    pub publications: Option<Producer<EventBytes>>,
    /// Where the NF's per-flow (un)subscriptions of this shard's flows go.
    pub flow_subscriptions: Producer<FlowSubscription>,
    /// The shard this lane comes from.
    pub shard: u16,
    /// For an NF that serves a `[[service]]`: its writes to the shard's connections.
    pub streams: Option<super::stream_out::StreamWriter>,
}

/// Bytes a lane's rings allocate when it is made: its ring of `capacity` handles (and room
/// for as many in flight), its unsubscription ring, and the publication ring when the NF
/// `publishes`. [`backlog_footprint`] adds the queues sized by the shard's event slots.
pub fn footprint(capacity: usize, publishes: bool) -> usize {
    2 * capacity * std::mem::size_of::<u32>()
        + CONTROL_RING * std::mem::size_of::<FlowSubscription>()
        + if publishes { PUBLICATION_RING * std::mem::size_of::<EventBytes>() } else { 0 }
}

/// Bytes of the queues of one shard-to-NF path sized by the shard's event slots, `backlog`
/// events each: the router's emission-order queue for the NF, and the lane's pending and
/// in-flight queues.
pub fn backlog_footprint(backlog: usize) -> usize {
    3 * backlog * std::mem::size_of::<u32>()
}

/// Creates a lane whose ring holds `capacity` handles; `backlog` bounds what may wait outside it.
pub fn lane(
    capacity: usize,
    backlog: usize,
    arena: Arc<EventArena>,
    shard: u16,
    shard_waker: Arc<Waker>,
    nf_waker: Arc<Waker>,
    publishes: bool,
) -> (LaneTx, LaneRx) {
    let (unsub_tx, unsub_rx) = RingBuffer::new(CONTROL_RING);
    let (tx, rx) = RingBuffer::new(capacity);
    let done = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let (pub_tx, pub_rx) = if publishes {
        let (p, c) = RingBuffer::new(PUBLICATION_RING);
        (Some(p), Some(c))
    } else {
        (None, None)
    };
    (
        LaneTx {
            ring: tx,
            pending: VecDeque::with_capacity(backlog),
            in_flight: VecDeque::with_capacity(capacity + backlog),
            done: done.clone(),
            retired: 0,
            retirable: 0,
            nf_waker,
            publications: pub_rx,
            flow_subscriptions: unsub_rx,
            delivered: 0,
            ring_full_drops: 0,
        },
        LaneRx { ring: rx, done, arena, shard_waker, publications: pub_tx, flow_subscriptions: unsub_tx, shard, streams: None },
    )
}

impl LaneTx {
    /// Closes the lane: the NF sees it abandoned once it has drained it, and is woken to notice.
    pub fn close(self) {
        let waker = self.nf_waker.clone();
        drop(self);
        waker.wake();
    }

    /// Sends an event to the NF: [`LaneTx::flush`] moves it into the ring.
    #[inline]
    pub fn send(&mut self, handle: u32) {
        self.pending.push_back(handle);
    }

    /// True when handles wait for room in the ring.
    #[inline]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// True when the NF holds, or has waiting for it, events of this lane.
    pub fn is_busy(&self) -> bool {
        !self.pending.is_empty() || !self.in_flight.is_empty()
    }

    /// Moves queued handles into the ring, oldest first, and wakes the NF once enough wait for
    /// it (see [`LaneTx::nudge`]). Returns the number moved.
    pub fn flush(&mut self) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        let mut moved = 0;
        for _ in 0..2 {
            let (front, _) = self.pending.as_slices();
            let (pushed, _) = self.ring.push_partial_slice(front);
            let n = pushed.len();
            self.in_flight.extend(self.pending.drain(..n));
            moved += n;
            if n == 0 || self.pending.is_empty() {
                break;
            }
        }
        if moved > 0 {
            self.delivered += moved as u64;
            self.nudge(WAKE_BATCH);
        }
        moved
    }

    /// Wakes the NF if at least `min` events wait in its ring. Waking a parked thread is a
    /// system call: doing it for every small batch would cost more than the events, so the
    /// shard wakes an NF when a batch's worth waits, and wakes every NF with anything
    /// waiting before it goes idle itself.
    pub fn nudge(&self, min: usize) {
        if self.ring.buffer().capacity() - self.ring.slots() >= min.min(self.ring.buffer().capacity()) {
            self.nf_waker.wake();
        }
    }

    /// Gives up on a handle that did not fit in the ring when `give_up` holds (the `drop`
    /// policy, or a dead NF), so the shard can finish it without this NF. Call until `None`.
    pub fn next_dropped(&mut self, give_up: bool) -> Option<u32> {
        if !give_up {
            return None;
        }
        self.pending.pop_front()
    }

    /// True when the NF's thread is gone: nothing will consume the ring again.
    pub fn is_dead(&self) -> bool {
        self.ring.is_abandoned()
    }

    /// Events in the ring: pushed, not yet taken by the NF.
    pub fn occupancy(&self) -> usize {
        self.ring.buffer().capacity() - self.ring.slots()
    }

    /// Handles the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.ring.buffer().capacity()
    }

    /// True when the ring has room for another handle.
    pub fn has_room(&self) -> bool {
        self.ring.slots() > 0
    }

    /// After the NF died: treats everything it held as finished, so the shard can retire it.
    pub fn abandon_in_flight(&mut self) {
        self.poll_done();
        self.retirable = self.in_flight.len();
    }

    /// Reads the NF's completion counter; [`LaneTx::next_retired`] then yields what it finished.
    pub fn poll_done(&mut self) -> bool {
        let done = self.done.load(Ordering::Acquire);
        self.retirable += (done - self.retired) as usize;
        self.retired = done;
        self.retirable > 0
    }

    /// The `n` handles moved into the ring last, oldest first: those the latest
    /// [`LaneTx::flush`] delivered when it returned `n`.
    pub fn newest_in_flight(&self, n: usize) -> impl Iterator<Item = u32> + '_ {
        self.in_flight.range(self.in_flight.len() - n..).copied()
    }

    /// The next handle the NF has finished, oldest first.
    #[inline]
    pub fn next_retired(&mut self) -> Option<u32> {
        if self.retirable == 0 {
            return None;
        }
        self.retirable -= 1;
        self.in_flight.pop_front()
    }

    /// The next publication of the NF, if any.
    pub fn next_publication(&mut self) -> Option<EventBytes> {
        self.publications.as_mut()?.pop().ok()
    }

    /// True when a publication waits.
    pub fn has_publication(&self) -> bool {
        self.publications.as_ref().is_some_and(|c| !c.is_empty()) || !self.flow_subscriptions.is_empty()
    }

    /// The next per-flow (un)subscription request of the NF, if any.
    pub fn next_flow_subscription(&mut self) -> Option<FlowSubscription> {
        self.flow_subscriptions.pop().ok()
    }

    /// True when the NF finished events the shard has not retired yet.
    pub fn has_completions(&self) -> bool {
        self.retirable > 0 || self.done.load(Ordering::Acquire) != self.retired
    }
}
