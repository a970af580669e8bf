//! The input thread: reads packets from a capture or the generator into pool buffers and steers
//! each to its shard's RX ring by the symmetric flow hash — a software NIC doing RSS.
//!
//! Fragments carry ports only in the first fragment, so the first fragment's shard is
//! remembered (by addresses and IP id) for the fragments that follow; a fragment that arrives
//! before its first goes to the shard of its address pair and is counted as unsteered.

use super::device::{InputReport, Next, Source};
use super::pool::Allocator;
use super::RxPacket;
use crate::sys::clock::thread_cpu_time;
use crate::sys::park::{IdlePolicy, Idler, Waker};
use mbox_stack::flow_key::{shard_of, FlowKey};
use mbox_stack::wire::{parse_frame, LinkType, Packet, ParseOptions, Parsed};
use rtrb::Producer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Counters shared with the progress display while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub done_units: AtomicU64,
    pub total_units: AtomicU64,
}

/// How packets are steered to shards.
#[derive(Debug, Clone, Copy)]
pub struct Steering {
    pub vlan_in_key: bool,
    pub parse: ParseOptions,
}

const FRAG_CACHE: usize = 1024;
/// Frames read from the source per call (the pool's buffers for them taken beforehand).
const BURST: usize = 32;
/// Packets waiting in a shard's ring before the input wakes the shard (see `nudge`).
const WAKE_BATCH: usize = 64;

/// The input thread. See the module documentation.
pub struct Dispatcher {
    pub source: Box<dyn Source>,
    pub alloc: Allocator,
    pub rings: Vec<Producer<RxPacket>>,
    pub shard_wakers: Vec<Arc<Waker>>,
    pub steering: Steering,
    pub progress: Arc<Progress>,
    pub stop: Arc<AtomicBool>,
    pub idle: IdlePolicy,
}

impl Dispatcher {
    /// Reads the source to its end (or until `stop`), then drops the rings, which tells the
    /// shards the input is over.
    pub fn run(mut self) -> InputReport {
        let pool = self.alloc.pool().clone();
        pool.allocator_waker().bind_current();
        let mut report = InputReport { description: self.source.describe(), ..Default::default() };
        let mut frag_cache = vec![(0u64, 0u16); FRAG_CACHE];
        let mut idler = Idler::new(self.idle);
        let mut staged: Vec<Vec<RxPacket>> = (0..self.rings.len()).map(|_| Vec::with_capacity(32)).collect();
        // Free buffers for the next burst, and what the source put in them.
        let mut slots: Vec<u32> = Vec::with_capacity(BURST);
        let mut got: Vec<Next> = Vec::with_capacity(BURST);
        while !self.stop.load(Ordering::Relaxed) && !crate::sys::stop::requested() {
            // A burst's worth of buffers: one at least (waiting for it), then what is free now.
            if slots.is_empty() {
                let Some(buf) = self.alloc(&mut idler, &mut report, &mut staged) else { break };
                slots.push(buf);
            }
            while slots.len() < BURST {
                let Some(buf) = self.alloc.alloc() else { break };
                slots.push(buf);
            }
            got.clear();
            let last = self.source.next_burst(&pool, &slots, &mut got);
            let filled = got.len();
            for (&buf, next) in slots.iter().zip(&got) {
                let Next::Packet { link, len, wire_len, ts_ns, port } = *next else { continue };
                let pkt = RxPacket { buf, len, wire_len, port, link, ts_ns };
                let shard = if self.rings.len() == 1 {
                    0
                } else {
                    // SAFETY: we hold `buf`, just filled.
                    let bytes = unsafe { pool.bytes(buf, len) };
                    self.steer(bytes, wire_len, link, &mut frag_cache, &mut report)
                };
                report.packets += 1;
                report.bytes += u64::from(wire_len);
                staged[shard].push(pkt);
                if staged[shard].len() == staged[shard].capacity() {
                    self.flush(shard, &mut staged[shard], &mut idler, &mut report);
                }
                if report.packets % 256 == 0 {
                    self.publish_progress(&report);
                }
            }
            slots.drain(..filled);
            match last {
                Ok(Next::Packet { .. }) => idler.reset(),
                Ok(Next::Idle) if filled > 0 => idler.reset(),
                Ok(Next::Idle) => {
                    // A live input with nothing now: hand over what is staged, publish the
                    // exact counts (the control plane's, which otherwise lag by a batch), then
                    // back off.
                    self.publish_progress(&report);
                    for (shard, batch) in staged.iter_mut().enumerate() {
                        let mut b = std::mem::take(batch);
                        self.flush(shard, &mut b, &mut idler, &mut report);
                        *batch = b;
                    }
                    // Nobody wakes this thread for the device: poll with growing pauses.
                    idler.idle_polling(pool.allocator_waker(), || false);
                }
                Ok(Next::End) => break,
                Err(e) => {
                    report.error = Some(e.to_string());
                    break;
                }
            }
        }
        for buf in slots.drain(..) {
            self.alloc.free(buf);
        }
        for (shard, batch) in staged.iter_mut().enumerate() {
            let mut batch = std::mem::take(batch);
            self.flush(shard, &mut batch, &mut idler, &mut report);
        }
        report.skipped = self.source.skipped();
        let losses = self.source.missed();
        (report.missed, report.rolled_over) = (losses.missed, losses.rolled_over);
        report.impaired = self.source.impaired();
        report.cpu = thread_cpu_time();
        self.publish_progress(&report);
        // Dropping the rings tells the shards the input is over; wake them to notice.
        self.rings.clear();
        for waker in &self.shard_wakers {
            waker.wake();
        }
        report
    }

    fn publish_progress(&self, report: &InputReport) {
        let (done, total) = self.source.progress();
        self.progress.packets.store(report.packets, Ordering::Relaxed);
        self.progress.bytes.store(report.bytes, Ordering::Relaxed);
        self.progress.done_units.store(done, Ordering::Relaxed);
        self.progress.total_units.store(total, Ordering::Relaxed);
    }

    /// A free buffer, waiting (and flushing staged packets) while the shards hold them all.
    fn alloc(&mut self, idler: &mut Idler, report: &mut InputReport, staged: &mut [Vec<RxPacket>]) -> Option<u32> {
        let mut waited = false;
        loop {
            if let Some(buf) = self.alloc.alloc() {
                // Only a wait that ended starts the backoff afresh: resetting on every buffer
                // would keep a live input polling an idle device from ever parking.
                if waited {
                    idler.reset();
                }
                return Some(buf);
            }
            waited = true;
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            report.pool_waits += 1;
            // Staged packets hold buffers too: hand them over before waiting.
            for (shard, batch) in staged.iter_mut().enumerate() {
                let mut b = std::mem::take(batch);
                self.flush(shard, &mut b, idler, report);
                *batch = b;
                self.nudge(shard, 1);
            }
            let alloc = &self.alloc;
            idler.idle(alloc.pool().allocator_waker(), || alloc.has_returns());
        }
    }

    /// Pushes staged packets into a shard's ring, waiting for room.
    fn flush(&mut self, shard: usize, batch: &mut Vec<RxPacket>, idler: &mut Idler, report: &mut InputReport) {
        let mut sent = 0;
        while sent < batch.len() {
            if self.rings[shard].is_abandoned() {
                // The shard's thread is gone (a bug, reported when the run ends): its packets
                // go back to the pool rather than wait forever.
                for pkt in &batch[sent..] {
                    self.alloc.free(pkt.buf);
                }
                self.stop.store(true, Ordering::Relaxed);
                break;
            }
            let (pushed, _) = self.rings[shard].push_partial_slice(&batch[sent..]);
            if !pushed.is_empty() {
                // Progress: the next wait starts with spinning again, not with parking.
                idler.reset();
            }
            sent += pushed.len();
            if sent < batch.len() {
                // The shard is behind: let it run.
                report.ring_waits += 1;
                self.shard_wakers[shard].wake();
                let ring = &self.rings[shard];
                idler.idle(self.alloc.pool().allocator_waker(), || !ring.is_full());
            } else {
                self.nudge(shard, WAKE_BATCH);
            }
        }
        batch.clear();
    }

    /// Wakes a shard if at least `min` packets wait in its ring: a wake-up is a system call
    /// when the shard sleeps, too dear for every small batch. Before the input itself waits,
    /// it nudges every shard with anything queued.
    fn nudge(&self, shard: usize, min: usize) {
        let ring = &self.rings[shard];
        if ring.buffer().capacity() - ring.slots() >= min {
            self.shard_wakers[shard].wake();
        }
    }

    fn steer(&self, data: &[u8], wire_len: u32, link: LinkType, frag_cache: &mut [(u64, u16)], report: &mut InputReport) -> usize {
        let shards = self.rings.len();
        let Ok(Packet::Ip(p)) = parse_frame(data, wire_len, link, self.steering.parse) else { return 0 };
        let Some(frag) = p.fragment else {
            let (key, _) = FlowKey::from_parsed(&p, self.steering.vlan_in_key);
            return shard_of(key.shard_hash(), shards);
        };
        let tag = fragment_tag(&p, frag.id);
        let entry = &mut frag_cache[(tag % FRAG_CACHE as u64) as usize];
        if frag.offset == 0 {
            let (key, _) = FlowKey::from_parsed(&p, self.steering.vlan_in_key);
            let shard = shard_of(key.shard_hash(), shards);
            *entry = (tag, shard as u16);
            return shard;
        }
        if entry.0 == tag {
            return usize::from(entry.1);
        }
        report.fragments_unsteered += 1;
        let addresses_only = Parsed { ip_proto: 0, src_port: 0, dst_port: 0, ..p };
        let (key, _) = FlowKey::from_parsed(&addresses_only, self.steering.vlan_in_key);
        shard_of(key.shard_hash(), shards)
    }
}

/// A tag for a fragmented datagram: its addresses and IP id, hashed.
fn fragment_tag(p: &Parsed, id: u32) -> u64 {
    use std::hash::BuildHasher as _;
    let (lo, hi) = if p.src <= p.dst { (p.src, p.dst) } else { (p.dst, p.src) };
    foldhash::fast::FixedState::with_seed(7).hash_one((lo, hi, id)) | 1 // never 0, the empty-entry tag
}
