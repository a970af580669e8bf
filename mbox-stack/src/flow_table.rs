//! A shard's flow table: fixed capacity, keyed by the bidirectional 5-tuple, expiring idle flows
//! by packet time.
//!
//! Entries live in a preallocated slab; their slot number is the `FlowRef::slot` NFs index their
//! own state by. Each timeout class (open TCP, closed TCP, UDP, other IP) keeps its flows in a
//! least-recently-seen list: a packet moves its flow to the tail, so each head is the next flow
//! to expire. Expiry is therefore O(1) per flow however far packet time jumps (some captures span
//! years), and the same lists give the eviction victim when the table is full.

use crate::flow_key::{FlowKey, Side};
use core::hash::BuildHasher;
use hashbrown::HashTable;
use mbox_abi::{DirStats, FlowTuple};

const NIL: u32 = u32::MAX;

/// Timeout classes: which idle timeout applies to a flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum FlowClass {
    /// TCP, not closed.
    TcpOpen = 0,
    /// TCP after a RST or a FIN from both sides: only a short linger remains.
    TcpClosed = 1,
    Udp = 2,
    /// Other IP protocols.
    Other = 3,
}

const CLASSES: usize = 4;

/// Idle timeouts by class, in nanoseconds; 0 means never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_open_ns: u64,
    pub tcp_closed_ns: u64,
    pub udp_ns: u64,
    pub other_ns: u64,
}

impl Timeouts {
    /// No flow ever expires (the reference flow definition).
    pub const NEVER: Timeouts = Timeouts { tcp_open_ns: 0, tcp_closed_ns: 0, udp_ns: 0, other_ns: 0 };

    fn by_class(&self) -> [u64; CLASSES] {
        [self.tcp_open_ns, self.tcp_closed_ns, self.udp_ns, self.other_ns]
    }
}

/// TCP close bits kept per flow.
pub mod close_bits {
    pub const FIN_SIDE0: u8 = 1;
    pub const FIN_SIDE1: u8 = 2;
    pub const RST: u8 = 4;
}

/// One flow.
#[derive(Clone, Debug)]
pub struct FlowEntry {
    pub key: FlowKey,
    hash: u64,
    /// Unique id for the run (never 0).
    pub id: u64,
    /// Addresses and ports, originator first.
    pub tuple: FlowTuple,
    /// The canonical side of the key that sent the first packet.
    pub orig_side: Side,
    /// Counters by direction: 0 originator -> responder, 1 the reverse.
    pub stats: [DirStats; 2],
    /// [`close_bits`] seen so far (TCP only).
    pub close: u8,
    /// Sequence number of the originator's first SYN, to tell port reuse from retransmission.
    pub syn_seq: Option<u32>,
    /// Shard clock when the flow was last touched; orders the class lists.
    last_seen: u64,
    class: FlowClass,
    prev: u32,
    next: u32,
    live: bool,
}

impl FlowEntry {
    fn vacant() -> FlowEntry {
        FlowEntry {
            key: FlowKey::default(),
            hash: 0,
            id: 0,
            tuple: FlowTuple::default(),
            orig_side: 0,
            stats: [DirStats::default(); 2],
            close: 0,
            syn_seq: None,
            last_seen: 0,
            class: FlowClass::Other,
            prev: NIL,
            next: NIL,
            live: false,
        }
    }

    /// The direction (0 orig, 1 reply) of a packet sent by canonical side `side`.
    #[inline]
    pub fn dir_of(&self, side: Side) -> usize {
        usize::from(side != self.orig_side)
    }

    /// Its current timeout class.
    pub fn class(&self) -> FlowClass {
        self.class
    }
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// The table. See the module documentation.
pub struct FlowTable {
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    entries: Vec<FlowEntry>,
    free: Vec<u32>,
    lists: [List; CLASSES],
    timeouts: [u64; CLASSES],
    /// Ids are `shard << 48 | counter`, unique across shards.
    next_id: u64,
}

impl FlowTable {
    /// A table of `capacity` flows for shard `shard`.
    pub fn new(capacity: usize, timeouts: Timeouts, shard: u16) -> FlowTable {
        let capacity = capacity.max(1);
        FlowTable {
            // Twice the flows: deletions leave tombstones, and with this much spare room hashbrown
            // rehashes in place instead of allocating while flows churn.
            index: HashTable::with_capacity(2 * capacity),
            // Randomly seeded: flow keys come from the network, so the hash must not be guessable.
            hasher: foldhash::fast::RandomState::default(),
            entries: (0..capacity).map(|_| FlowEntry::vacant()).collect(),
            free: (0..capacity as u32).rev().collect(),
            lists: [List { head: NIL, tail: NIL }; CLASSES],
            timeouts: timeouts.by_class(),
            next_id: (u64::from(shard) << 48) | 1,
        }
    }

    /// Bytes a table of `capacity` flows allocates when it is made (entries, free list and
    /// index), for estimating a run's memory before it starts.
    pub fn footprint(capacity: usize) -> usize {
        let capacity = capacity.max(1);
        // hashbrown's buckets for `2 * capacity` items: a power of two above 8/7 of them, each
        // with a control byte, plus one group of trailing control bytes.
        let buckets = (2 * capacity).saturating_mul(8).div_ceil(7).next_power_of_two();
        capacity * (std::mem::size_of::<FlowEntry>() + std::mem::size_of::<u32>()) + buckets * (std::mem::size_of::<u32>() + 1) + 16
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Number of live flows.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// The hash this table uses for `key`.
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key`'s flow.
    pub fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        self.index.find(hash, |&slot| self.entries[slot as usize].key == *key).copied()
    }

    /// Adds a flow; the caller makes room first (see [`FlowTable::lru_victim`]).
    /// Returns `None` only when the table is full.
    pub fn insert(&mut self, key: FlowKey, hash: u64, tuple: FlowTuple, orig_side: Side, class: FlowClass, now: u64) -> Option<u32> {
        let slot = self.free.pop()?;
        let id = self.next_id;
        self.next_id += 1;
        let entries = &self.entries;
        self.index.insert_unique(hash, slot, |&s| entries[s as usize].hash);
        let e = &mut self.entries[slot as usize];
        *e = FlowEntry::vacant();
        e.key = key;
        e.hash = hash;
        e.id = id;
        e.tuple = tuple;
        e.orig_side = orig_side;
        e.class = class;
        e.last_seen = now;
        e.live = true;
        self.push_tail(slot);
        Some(slot)
    }

    /// The flow in `slot`.
    #[inline]
    pub fn get(&self, slot: u32) -> &FlowEntry {
        &self.entries[slot as usize]
    }

    /// The flow in `slot`, for updating counters.
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut FlowEntry {
        &mut self.entries[slot as usize]
    }

    /// Records activity at shard time `now`, possibly in a new timeout class.
    pub fn touch(&mut self, slot: u32, now: u64, class: FlowClass) {
        if !self.entries[slot as usize].live {
            debug_assert!(false, "touch of a vacant flow slot");
            return;
        }
        self.unlink(slot);
        let e = &mut self.entries[slot as usize];
        e.last_seen = now;
        e.class = class;
        self.push_tail(slot);
    }

    /// The flow whose idle timeout ran out first, if any has run out at time `now`.
    pub fn next_expired(&self, now: u64) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for (class, list) in self.lists.iter().enumerate() {
            let timeout = self.timeouts[class];
            if timeout == 0 || list.head == NIL {
                continue;
            }
            // Each list is in last-seen order and has one timeout: its head expires first.
            let deadline = self.entries[list.head as usize].last_seen.saturating_add(timeout);
            if now > deadline && best.is_none_or(|(first, _)| deadline < first) {
                best = Some((deadline, list.head));
            }
        }
        best.map(|(_, slot)| slot)
    }

    /// The least recently seen flow: the one to evict when the table is full. Closed TCP flows go
    /// first, since they are finished anyway.
    pub fn lru_victim(&self) -> Option<u32> {
        let closed = self.lists[FlowClass::TcpClosed as usize].head;
        if closed != NIL {
            return Some(closed);
        }
        self.lists.iter().filter(|l| l.head != NIL).map(|l| l.head).min_by_key(|&slot| self.entries[slot as usize].last_seen)
    }

    /// A live flow to end when draining the table (the input is over): of the flows at the
    /// heads of the class lists, the one created first, so draining is deterministic.
    pub fn oldest(&self) -> Option<u32> {
        self.lists.iter().filter(|l| l.head != NIL).map(|l| l.head).min_by_key(|&slot| self.entries[slot as usize].id)
    }

    /// Removes the flow in `slot`, returning it; the slot is reused by a later flow.
    pub fn remove(&mut self, slot: u32) -> FlowEntry {
        if !self.entries[slot as usize].live {
            // Removing twice would corrupt the lists and the free list.
            debug_assert!(false, "removal of a vacant flow slot");
            return self.entries[slot as usize].clone();
        }
        self.unlink(slot);
        let hash = self.entries[slot as usize].hash;
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        let e = &mut self.entries[slot as usize];
        e.live = false;
        let removed = e.clone();
        self.free.push(slot);
        removed
    }

    fn push_tail(&mut self, slot: u32) {
        let class = self.entries[slot as usize].class as usize;
        let tail = self.lists[class].tail;
        {
            let e = &mut self.entries[slot as usize];
            e.prev = tail;
            e.next = NIL;
        }
        if tail == NIL {
            self.lists[class].head = slot;
        } else {
            self.entries[tail as usize].next = slot;
        }
        self.lists[class].tail = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next, class) = {
            let e = &self.entries[slot as usize];
            (e.prev, e.next, e.class as usize)
        };
        if prev == NIL {
            self.lists[class].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[class].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[slot as usize];
        e.prev = NIL;
        e.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(n: u16) -> FlowKey {
        FlowKey { ports: [n, 80], ip_proto: 17, ip_version: 4, ..Default::default() }
    }

    fn table(cap: usize) -> FlowTable {
        FlowTable::new(cap, Timeouts { tcp_open_ns: 100 * SEC, tcp_closed_ns: 5 * SEC, udp_ns: 30 * SEC, other_ns: 30 * SEC }, 3)
    }

    fn add(t: &mut FlowTable, n: u16, now: u64) -> u32 {
        let k = key(n);
        let h = t.hash(&k);
        t.insert(k, h, FlowTuple::default(), 0, FlowClass::Udp, now).unwrap()
    }

    #[test]
    fn finds_inserted_flows_and_forgets_removed_ones() {
        let mut t = table(4);
        let a = add(&mut t, 1, 0);
        let b = add(&mut t, 2, 0);
        assert_ne!(a, b);
        assert_eq!(t.find(&key(1), t.hash(&key(1))), Some(a));
        t.remove(a);
        assert_eq!(t.find(&key(1), t.hash(&key(1))), None);
        assert_eq!(t.find(&key(2), t.hash(&key(2))), Some(b));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(b).id >> 48, 3, "ids carry the shard");
    }

    #[test]
    fn expiry_follows_last_activity_even_across_huge_time_jumps() {
        let mut t = table(8);
        let a = add(&mut t, 1, 0);
        let b = add(&mut t, 2, 10 * SEC);
        t.touch(a, 20 * SEC, FlowClass::Udp);
        assert_eq!(t.next_expired(35 * SEC), None);
        assert_eq!(t.next_expired(41 * SEC), Some(b));
        t.remove(b);
        // Years later: everything expires, one flow at a time, without walking the gap.
        let later = 6 * 365 * 24 * 3600 * SEC;
        assert_eq!(t.next_expired(later), Some(a));
        t.remove(a);
        assert_eq!(t.next_expired(later), None);
    }

    #[test]
    fn closed_tcp_flows_use_their_own_timeout_and_are_evicted_first() {
        let mut t = table(2);
        let a = add(&mut t, 1, 0);
        let b = add(&mut t, 2, SEC);
        assert!(t.is_full());
        assert_eq!(t.lru_victim(), Some(a));
        t.touch(b, 2 * SEC, FlowClass::TcpClosed);
        assert_eq!(t.lru_victim(), Some(b));
        assert_eq!(t.next_expired(8 * SEC), Some(b));
    }

    #[test]
    fn zero_timeouts_never_expire() {
        let mut t = FlowTable::new(2, Timeouts::NEVER, 0);
        let k = key(1);
        let h = t.hash(&k);
        t.insert(k, h, FlowTuple::default(), 0, FlowClass::Udp, 0);
        assert_eq!(t.next_expired(u64::MAX), None);
    }
}
