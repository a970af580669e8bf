//! Where forwarded packets go: a shard's transmit path ([`Tx`]: back to the pool, into the
//! output thread's ring, or into a sink of the shard's own), the output thread that drains the
//! shards' rings into a sink ([`OutputThread`]), and the pcap file sink ([`PcapSink`]). Packets
//! a shard builds itself ([`Tx::originate`], from its [`Origin`]) take the same ways out, on a
//! ring of their own to the output thread.

use super::capture::{CaptureError, PcapWriter};
use super::device::{OutputStats, RxPacket, Sink};
use super::origin::{Origin, OriginStats};
use super::pool::{PacketPool, Releaser};
use crate::sys::park::{IdlePolicy, Idler, Waker};
use mbox_stack::wire::LinkType;
use rtrb::{Consumer, Producer, RingBuffer};
use std::path::Path;
use std::sync::Arc;

/// A shard's transmit path, and where it gives back buffers of packets it drops.
pub struct Tx {
    path: TxPath,
    releaser: Releaser,
    /// The shard's pool for packets it builds, and the ring that takes them to the output
    /// thread (when the path is [`TxPath::Ring`]); none when the shard serves nothing.
    origin: Option<(Origin, Option<Producer<RxPacket>>)>,
}

enum TxPath {
    /// No output configured: the buffer goes back to the pool.
    Discard,
    /// To the output thread.
    Ring { ring: Producer<RxPacket>, writer: Arc<Waker> },
    /// Into a sink of the shard's own (a DPDK queue pair per shard), and the pool its
    /// packets' bytes are in.
    Own { sink: Box<dyn Sink>, pool: Arc<PacketPool> },
    /// After [`Tx::close`]: nothing is sent any more.
    Closed,
}

impl Tx {
    /// A path that forwards nowhere (offline analysis): buffers go straight back.
    pub fn discard(releaser: Releaser) -> Tx {
        Tx { path: TxPath::Discard, releaser, origin: None }
    }

    /// A path to an output thread through `ring` (the thread is woken through `writer`).
    pub fn ring(ring: Producer<RxPacket>, writer: Arc<Waker>, releaser: Releaser) -> Tx {
        Tx { path: TxPath::Ring { ring, writer }, releaser, origin: None }
    }

    /// A path straight into `sink`, which the shard drives itself.
    pub fn own(sink: Box<dyn Sink>, pool: Arc<PacketPool>, releaser: Releaser) -> Tx {
        Tx { path: TxPath::Own { sink, pool }, releaser, origin: None }
    }

    /// Gives the path a pool for packets the shard builds; `ring` takes them to the output
    /// thread when the path has one (see [`OutputThread::add_origin`]).
    pub fn set_origin(&mut self, origin: Origin, ring: Option<Producer<RxPacket>>) {
        self.origin = Some((origin, ring));
    }

    /// Builds a packet (`fill` writes the Ethernet frame into an emptied buffer) and sends it
    /// out of `port` — the port itself, not its pair's other one. False, counted, when no
    /// buffer was free or the path has no pool (a shard that serves nothing).
    pub fn originate(&mut self, port: u16, ts_ns: u64, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some((origin, ring)) = &mut self.origin else { return false };
        let Some(pkt) = origin.build(port, ts_ns, fill) else { return false };
        match (&mut self.path, ring) {
            (TxPath::Ring { writer, .. }, Some(ring)) => {
                if let Some(back) = push_waiting(ring, pkt, writer) {
                    origin.free(back.buf);
                    origin.stats.dropped += 1;
                    return false;
                }
            }
            (TxPath::Own { sink, .. }, _) => {
                sink.originate(origin.pool(), &pkt);
                origin.free(pkt.buf);
            }
            // No way out (an offline run without `[output] pcap`): built, counted, let go.
            _ => origin.free(pkt.buf),
        }
        true
    }

    /// What the path's pool for built packets counted (zero when it has none).
    pub fn origin_stats(&self) -> OriginStats {
        self.origin.as_ref().map(|(o, _)| o.stats).unwrap_or_default()
    }

    /// Sends a packet on (the caller gives up its buffer). Call [`Tx::notify`] after a batch.
    #[inline]
    pub fn send(&mut self, pkt: RxPacket) {
        match &mut self.path {
            TxPath::Discard => self.releaser.release(pkt.buf),
            TxPath::Ring { ring, writer } => {
                if let Some(back) = push_waiting(ring, pkt, writer) {
                    self.releaser.release(back.buf);
                }
            }
            TxPath::Own { sink, pool } => {
                sink.send(pool, &pkt);
                self.releaser.release(pkt.buf);
            }
            TxPath::Closed => debug_assert!(false, "send on a closed TX path"),
        }
    }

    /// Drops a packet: its buffer goes back to the pool.
    #[inline]
    pub fn drop_packet(&mut self, buf: u32) {
        self.releaser.release(buf);
    }

    /// Hands released buffers back and wakes the output thread if it sleeps (or sends what a
    /// sink of the shard's own holds): once per batch of sends, not per packet.
    pub fn notify(&mut self) {
        match &mut self.path {
            TxPath::Ring { writer, .. } => writer.wake(),
            TxPath::Own { sink, .. } => sink.flush(false),
            _ => {}
        }
        self.releaser.flush();
    }

    /// Closes the path; the output thread is woken to notice once it has drained the ring.
    /// Returns what the path sent itself (a sink of the shard's own), `None` otherwise.
    pub fn close(&mut self) -> Option<OutputStats> {
        if let Some((_, ring)) = &mut self.origin {
            // The output thread sees the ring abandoned once it has drained it.
            ring.take();
        }
        let stats = match std::mem::replace(&mut self.path, TxPath::Closed) {
            TxPath::Ring { ring, writer } => {
                drop(ring);
                writer.wake();
                None
            }
            TxPath::Own { mut sink, .. } => {
                sink.flush(true);
                let _ = sink.finish();
                Some(sink.stats())
            }
            _ => None,
        };
        self.releaser.flush();
        stats
    }
}

/// Pushes `pkt` into the output thread's `ring`, waking the thread while the ring is full: the
/// writer always drains, so the wait is bounded by a file write. A writer that is gone (it
/// failed) gets nothing more: the packet comes back.
fn push_waiting(ring: &mut Producer<RxPacket>, pkt: RxPacket, writer: &Waker) -> Option<RxPacket> {
    let mut item = pkt;
    while let Err(rtrb::PushError::Full(back)) = ring.push(item) {
        if ring.is_abandoned() {
            return Some(back);
        }
        item = back;
        writer.wake();
        std::thread::yield_now();
    }
    None
}

/// A pcap file as a sink: every packet of its link type is written; the first write error
/// stops the writing (the packets after it are counted, not written) and is reported at the
/// end.
pub struct PcapSink {
    writer: PcapWriter,
    link: LinkType,
    stats: OutputStats,
    error: Option<CaptureError>,
}

impl PcapSink {
    /// Creates the file now, so that a bad path stops the run before it starts.
    pub fn create(path: &Path, link: LinkType) -> Result<PcapSink, CaptureError> {
        Ok(PcapSink { writer: PcapWriter::create(path, link)?, link, stats: OutputStats::default(), error: None })
    }
}

impl Sink for PcapSink {
    fn send(&mut self, pool: &PacketPool, pkt: &RxPacket) {
        if pkt.link != self.link {
            self.stats.link_mismatch += 1;
            return;
        }
        if self.error.is_none() {
            // SAFETY: the caller holds the buffer until this returns.
            let data = unsafe { pool.bytes(pkt.buf, pkt.len) };
            if let Err(e) = self.writer.write(pkt.ts_ns, pkt.wire_len, data) {
                self.error = Some(e);
            }
            self.stats.packets += 1;
            self.stats.bytes += u64::from(pkt.len);
        }
    }

    fn flush(&mut self, _drain: bool) {}

    fn stats(&self) -> OutputStats {
        self.stats
    }

    fn finish(&mut self) -> Option<CaptureError> {
        match self.error.take() {
            Some(e) => Some(e),
            None => self.writer.flush().err(),
        }
    }
}

/// Capacity of each shard's ring into the output thread.
pub const TX_RING: usize = 4096;

/// The shards' rings into an output thread, and the waker that rouses it.
pub struct ShardRings {
    pub rings: Vec<Consumer<RxPacket>>,
    waker: Arc<Waker>,
}

impl ShardRings {
    /// One ring per shard releaser, and the shards' TX paths into them.
    pub fn new(shard_releasers: Vec<Releaser>) -> (ShardRings, Vec<Tx>) {
        let waker = Arc::new(Waker::new());
        let mut rings = Vec::new();
        let mut txs = Vec::new();
        for shard_releaser in shard_releasers {
            let (p, c) = RingBuffer::new(TX_RING);
            rings.push(c);
            txs.push(Tx::ring(p, waker.clone(), shard_releaser));
        }
        (ShardRings { rings, waker }, txs)
    }
}

/// The output thread: drains what the shards forward into a sink, then gives the buffers back.
pub struct OutputThread {
    shards: ShardRings,
    sink: Box<dyn Sink>,
    pool: Arc<PacketPool>,
    releaser: Releaser,
    /// Per serving shard: the ring of packets it built, their pool, and the releaser that
    /// gives their buffers back.
    originated: Vec<(Consumer<RxPacket>, Arc<PacketPool>, Releaser)>,
}

/// Packets taken from the shards' rings between two bursts to the sink.
const OUTPUT_BURST: usize = 32;

impl OutputThread {
    /// The output thread over `sink`, and one TX path per shard releaser.
    pub fn new(sink: Box<dyn Sink>, pool: Arc<PacketPool>, releaser: Releaser, shard_releasers: Vec<Releaser>) -> (OutputThread, Vec<Tx>) {
        let (shards, txs) = ShardRings::new(shard_releasers);
        (OutputThread { shards, sink, pool, releaser, originated: Vec::new() }, txs)
    }

    /// Adds the way out of a shard's built packets: the ring's producer for [`Tx::set_origin`].
    pub fn add_origin(&mut self, pool: Arc<PacketPool>, releaser: Releaser) -> Producer<RxPacket> {
        let (p, c) = RingBuffer::new(TX_RING);
        self.originated.push((c, pool, releaser));
        p
    }

    /// Runs until every shard has closed its TX path and the rings are empty. Returns what the
    /// sink sent, and the first error that kept it from sending everything.
    pub fn run(mut self, idle: IdlePolicy) -> (OutputStats, Option<CaptureError>) {
        self.shards.waker.bind_current();
        let mut idler = Idler::new(idle);
        loop {
            let mut moved = 0;
            for ring in &mut self.shards.rings {
                while let Ok(pkt) = ring.pop() {
                    moved += 1;
                    self.sink.send(&self.pool, &pkt);
                    self.releaser.release(pkt.buf);
                    if moved % OUTPUT_BURST == 0 {
                        self.sink.flush(false);
                    }
                }
            }
            for (ring, pool, releaser) in &mut self.originated {
                while let Ok(pkt) = ring.pop() {
                    moved += 1;
                    self.sink.originate(pool, &pkt);
                    releaser.release(pkt.buf);
                    if moved % OUTPUT_BURST == 0 {
                        self.sink.flush(false);
                    }
                }
            }
            // Everything taken this round goes out now (a port that will not take it within a
            // few retries drops it, counted): the next round may wait for the shards.
            self.sink.flush(true);
            if moved > 0 {
                // Buffers back now: the input may be waiting for one.
                self.releaser.flush();
                for (_, _, releaser) in &mut self.originated {
                    releaser.flush();
                }
                idler.reset();
                continue;
            }
            let rings = &self.shards.rings;
            let built = &self.originated;
            if rings.iter().all(|r| r.is_abandoned() && r.is_empty()) && built.iter().all(|(r, ..)| r.is_abandoned() && r.is_empty()) {
                break;
            }
            idler.idle(&self.shards.waker, || {
                rings.iter().any(|r| !r.is_empty() || r.is_abandoned()) || built.iter().any(|(r, ..)| !r.is_empty())
            });
        }
        self.releaser.flush();
        let error = self.sink.finish();
        (self.sink.stats(), error)
    }
}
