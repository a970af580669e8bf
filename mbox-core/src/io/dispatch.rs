//! The input thread: reads packets from a capture or the generator into pool buffers and steers
//! each to its shard's RX ring by the symmetric flow hash — a software NIC doing RSS.
//!
//! Fragments carry ports only in the first fragment, so the first fragment's shard is
//! remembered (by addresses and IP id) for the fragments that follow; a fragment that arrives
//! before its first goes to the shard of its address pair and is counted as unsteered.

use super::capture::{CaptureError, CaptureReader};
use super::generator::{Generator, GeneratorConfig};
use super::pool::Allocator;
use super::RxPacket;
use crate::config::InputConfig;
use crate::sys::clock::thread_cpu_time;
use crate::sys::park::{IdlePolicy, Idler, Waker};
use mbox_stack::flow_key::{shard_of, FlowKey};
use mbox_stack::wire::{parse_frame, LinkType, Packet, ParseOptions, Parsed};
use rtrb::Producer;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where packets come from.
pub enum Source {
    Captures(Box<Captures>),
    Generator(Box<Generator>),
    /// DPDK ports: mbufs are lent to the pool, not copied.
    #[cfg(feature = "dpdk")]
    Dpdk(Box<super::dpdk::DpdkInput>),
}

/// What the next read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A packet is in the slot: its link type, length captured and on the wire, time, and the
    /// input port it came from.
    Packet { link: LinkType, len: u32, wire_len: u32, ts_ns: u64, port: u16 },
    /// Nothing now (a live input): try again.
    Idle,
    /// The input is over.
    End,
}

/// Captures read one after the other, as one input (see `[input]` in docs/config.md).
pub struct Captures {
    reader: CaptureReader,
    /// Every file, and the position of the current one in the sequence of `repeat` passes.
    paths: Vec<PathBuf>,
    position: usize,
    repeat: usize,
    description: String,
    /// Bytes of the files already read, and of all passes over all files (for progress).
    done_bytes: u64,
    total_bytes: u64,
    /// Packets skipped by the readers of the files already read.
    skipped_before: u64,
    first_link: LinkType,
    /// `retime`: the pause before each file, the shift applied to the current file's times
    /// (set at its first packet), and the last time handed out (`None` before the first packet).
    retime_ns: Option<u64>,
    shift_ns: Option<i128>,
    last_ts_ns: Option<u64>,
}

impl Source {
    /// Opens the captures of `[input]`. Every file is opened (and its header checked) here, so
    /// a missing or foreign file stops the run before it starts.
    pub fn captures(input: &InputConfig) -> Result<Source, CaptureError> {
        let (first, rest) = input.pcap.split_first().expect("validated: at least one capture");
        let reader = CaptureReader::open(first)?;
        let mut file_bytes = reader.progress().1;
        for path in rest {
            file_bytes += CaptureReader::open(path)?.progress().1;
        }
        let repeat = input.repeat.max(1) as usize;
        let mut description = match rest.len() {
            0 => first.display().to_string(),
            n => format!("{} and {n} more captures", first.display()),
        };
        if repeat > 1 {
            description.push_str(&format!(", {repeat} times"));
        }
        let first_link = reader.first_link().unwrap_or(LinkType::Ethernet);
        Ok(Source::Captures(Box::new(Captures {
            reader,
            paths: input.pcap.clone(),
            position: 0,
            repeat,
            description,
            done_bytes: 0,
            total_bytes: file_bytes.saturating_mul(repeat as u64),
            skipped_before: 0,
            first_link,
            retime_ns: input.retime.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            shift_ns: None,
            last_ts_ns: None,
        })))
    }

    /// Starts the generator.
    pub fn generator(cfg: GeneratorConfig) -> Source {
        Source::Generator(Box::new(Generator::new(cfg)))
    }

    /// Reads the next packet into pool slot `idx` (copied into its buffer, or lent to it).
    pub fn next_into(&mut self, pool: &super::pool::PacketPool, idx: u32) -> Result<Next, CaptureError> {
        #[cfg(feature = "dpdk")]
        if let Source::Dpdk(d) = self {
            return Ok(d.next_into(pool, idx));
        }
        // SAFETY: the caller holds `idx` and has not handed it on.
        let buf = unsafe { pool.buf_mut(idx) };
        Ok(match self.next(buf)? {
            Some((link, wire_len, ts_ns)) => Next::Packet { link, len: buf.len() as u32, wire_len, ts_ns, port: 0 },
            None => Next::End,
        })
    }

    /// Reads the next packet into `buf`: (link, wire length, timestamp), `None` at the end.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<(LinkType, u32, u64)>, CaptureError> {
        match self {
            Source::Captures(c) => c.next(buf),
            Source::Generator(g) => Ok(g.next_packet(buf).map(|ts| (LinkType::Ethernet, buf.len() as u32, ts))),
            #[cfg(feature = "dpdk")]
            Source::Dpdk(_) => Ok(None),
        }
    }

    /// Which pass over the captures the last packet came from (0 for the generator).
    pub fn pass(&self) -> u32 {
        match self {
            Source::Captures(c) => (c.position / c.paths.len()) as u32,
            _ => 0,
        }
    }

    /// Work done and total (bytes of the captures, conversations of the generator).
    pub fn progress(&self) -> (u64, u64) {
        match self {
            Source::Captures(c) => (c.done_bytes + c.reader.progress().0, c.total_bytes),
            Source::Generator(g) => g.progress(),
            #[cfg(feature = "dpdk")]
            Source::Dpdk(_) => (0, 0),
        }
    }

    /// The link type an output pcap should use (the first capture's).
    pub fn link(&self) -> LinkType {
        match self {
            Source::Captures(c) => c.first_link,
            Source::Generator(g) => g.link(),
            #[cfg(feature = "dpdk")]
            Source::Dpdk(_) => LinkType::Ethernet,
        }
    }

    /// Human description for the summary.
    pub fn describe(&self) -> String {
        match self {
            Source::Captures(c) => c.description.clone(),
            Source::Generator(_) => "generator".to_string(),
            #[cfg(feature = "dpdk")]
            Source::Dpdk(d) => d.describe(),
        }
    }

    /// Packets the live ports dropped on arrival or received with errors.
    pub fn missed(&self) -> u64 {
        match self {
            #[cfg(feature = "dpdk")]
            Source::Dpdk(d) => d.missed(),
            _ => 0,
        }
    }

    /// Packets skipped by the readers (pcapng interfaces of unsupported link types).
    pub fn skipped(&self) -> u64 {
        match self {
            Source::Captures(c) => c.skipped_before + c.reader.skipped_unsupported,
            _ => 0,
        }
    }
}

impl Captures {
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<(LinkType, u32, u64)>, CaptureError> {
        loop {
            if let Some(m) = self.reader.next_packet(buf)? {
                return Ok(Some((m.link, m.wire_len, self.retimed(m.ts_ns))));
            }
            self.position += 1;
            if self.position >= self.paths.len() * self.repeat {
                return Ok(None);
            }
            let next = CaptureReader::open(&self.paths[self.position % self.paths.len()])?;
            let done = std::mem::replace(&mut self.reader, next);
            self.done_bytes += done.progress().1;
            self.skipped_before += done.skipped_unsupported;
            self.shift_ns = None;
        }
    }

    /// A packet's time, moved when `retime` is on: the file's first packet comes `retime` after
    /// the previous file's last, and the rest keep their distance from it.
    fn retimed(&mut self, ts_ns: u64) -> u64 {
        let Some(pause) = self.retime_ns else { return ts_ns };
        let last = self.last_ts_ns;
        let shift = *self.shift_ns.get_or_insert_with(|| match last {
            None => 0,
            Some(last) => i128::from(last) + i128::from(pause) - i128::from(ts_ns),
        });
        let ts = (i128::from(ts_ns) + shift).clamp(0, i128::from(u64::MAX)) as u64;
        self.last_ts_ns = Some(last.map_or(ts, |l| l.max(ts)));
        ts
    }
}

/// Counters shared with the progress display while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub packets: AtomicU64,
    pub done_units: AtomicU64,
    pub total_units: AtomicU64,
}

/// What the input thread reports at the end.
#[derive(Debug, Default, Clone)]
pub struct InputReport {
    pub description: String,
    pub packets: u64,
    pub bytes: u64,
    /// Packets the reader skipped (unsupported link type).
    pub skipped: u64,
    /// Packets the ports dropped on arrival, or received with errors: the RX ring was full
    /// because the input did not read in time (live ports only).
    pub missed: u64,
    /// Fragments that arrived before their first fragment (steered by addresses only).
    pub fragments_unsteered: u64,
    /// Times the input waited for a free buffer, or for room in a shard's ring: back-pressure
    /// from the shards (the input is not what limits the rate when these are high).
    pub pool_waits: u64,
    pub ring_waits: u64,
    /// An error that ended the input early; the packets before it were processed.
    pub error: Option<String>,
    /// CPU time of the input thread: reading the capture (or generating), steering, waiting.
    /// A NIC does this work in a live deployment, so benches report the run with and without it.
    pub cpu: Duration,
}

/// How packets are steered to shards.
#[derive(Debug, Clone, Copy)]
pub struct Steering {
    pub vlan_in_key: bool,
    pub parse: ParseOptions,
}

const FRAG_CACHE: usize = 1024;
/// Packets waiting in a shard's ring before the input wakes the shard (see `nudge`).
const WAKE_BATCH: usize = 64;

/// The input thread. See the module documentation.
pub struct Dispatcher {
    pub source: Source,
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
        while !self.stop.load(Ordering::Relaxed) && !crate::sys::stop::requested() {
            let Some(buf) = self.alloc(&mut idler, &mut report, &mut staged) else { break };
            let (link, len, wire_len, ts_ns, port) = match self.source.next_into(&pool, buf) {
                Ok(Next::Packet { link, len, wire_len, ts_ns, port }) => (link, len, wire_len, ts_ns, port),
                Ok(Next::Idle) => {
                    // A live input with nothing now: hand over what is staged, then back off.
                    self.alloc.free(buf);
                    for (shard, batch) in staged.iter_mut().enumerate() {
                        let mut b = std::mem::take(batch);
                        self.flush(shard, &mut b, &mut idler, &mut report);
                        *batch = b;
                    }
                    // Nobody wakes this thread for the device: poll with growing pauses.
                    idler.idle_polling(pool.allocator_waker(), || false);
                    continue;
                }
                Ok(Next::End) => {
                    self.alloc.free(buf);
                    break;
                }
                Err(e) => {
                    self.alloc.free(buf);
                    report.error = Some(e.to_string());
                    break;
                }
            };
            idler.reset();
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
        for (shard, batch) in staged.iter_mut().enumerate() {
            let mut batch = std::mem::take(batch);
            self.flush(shard, &mut batch, &mut idler, &mut report);
        }
        report.skipped = self.source.skipped();
        report.missed = self.source.missed();
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
