//! Where forwarded packets go: back to the pool (offline analysis) or to a pcap file written
//! by an output thread that merges the shards' TX rings.

use super::capture::{CaptureError, PcapWriter};
use super::pool::{PacketPool, Releaser};
use super::RxPacket;
use crate::sys::park::{IdlePolicy, Idler, Waker};
use mbox_stack::wire::LinkType;
use rtrb::{Consumer, Producer, RingBuffer};
use std::path::PathBuf;

use std::sync::Arc;

/// A shard's transmit path, and where it gives back buffers of packets it drops.
pub struct Tx {
    path: TxPath,
    releaser: Releaser,
}

enum TxPath {
    /// No output configured: the buffer goes back to the pool.
    Discard,
    /// To the output thread.
    Ring { ring: Producer<RxPacket>, writer: Arc<Waker> },
    /// Out of the shard's own TX queue (DPDK with a queue pair per shard).
    #[cfg(feature = "dpdk")]
    Queue(Box<super::dpdk::QueueTx>),
    /// After [`Tx::close`]: nothing is sent any more.
    Closed,
}

impl Tx {
    /// A path that forwards nowhere (offline analysis): buffers go straight back.
    pub fn discard(releaser: Releaser) -> Tx {
        Tx { path: TxPath::Discard, releaser }
    }

    /// A path to an output thread through `ring` (the thread is woken through `writer`).
    pub fn ring(ring: Producer<RxPacket>, writer: Arc<Waker>, releaser: Releaser) -> Tx {
        Tx { path: TxPath::Ring { ring, writer }, releaser }
    }

    /// A path out of the shard's own TX queue.
    #[cfg(feature = "dpdk")]
    pub fn queue(queue: super::dpdk::QueueTx, releaser: Releaser) -> Tx {
        Tx { path: TxPath::Queue(Box::new(queue)), releaser }
    }

    /// Sends a packet on (the caller gives up its buffer). Call [`Tx::notify`] after a batch.
    #[inline]
    pub fn send(&mut self, pkt: RxPacket) {
        match &mut self.path {
            TxPath::Discard => self.releaser.release(pkt.buf),
            TxPath::Ring { ring, writer } => {
                let mut item = pkt;
                // The writer always drains, so waiting here is bounded by a file write; a
                // writer that is gone (it failed) gets nothing more.
                while let Err(rtrb::PushError::Full(back)) = ring.push(item) {
                    if ring.is_abandoned() {
                        self.releaser.release(back.buf);
                        return;
                    }
                    item = back;
                    writer.wake();
                    std::thread::yield_now();
                }
            }
            #[cfg(feature = "dpdk")]
            TxPath::Queue(q) => {
                q.push(&pkt);
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

    /// Hands released buffers back and wakes the output thread if it sleeps: once per batch
    /// of sends, not per packet.
    pub fn notify(&mut self) {
        match &mut self.path {
            TxPath::Ring { writer, .. } => writer.wake(),
            #[cfg(feature = "dpdk")]
            TxPath::Queue(q) => q.flush(false),
            _ => {}
        }
        self.releaser.flush();
    }

    /// Closes the path; the output thread is woken to notice once it has drained the ring.
    /// Returns what the path sent itself (a shard's own TX queue), `None` otherwise.
    pub fn close(&mut self) -> Option<OutputStats> {
        let stats = match std::mem::replace(&mut self.path, TxPath::Closed) {
            TxPath::Ring { ring, writer } => {
                drop(ring);
                writer.wake();
                None
            }
            #[cfg(feature = "dpdk")]
            TxPath::Queue(mut q) => {
                q.flush(true);
                Some(q.stats)
            }
            _ => None,
        };
        self.releaser.flush();
        stats
    }
}

/// The output thread: writes what the shards forward, then returns buffers to the pool.
pub struct PcapOutput {
    writer: PcapWriter,
    pub link: LinkType,
    shards: ShardRings,
    pool: Arc<PacketPool>,
    releaser: Releaser,
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

    /// Call on the output thread before its loop.
    pub fn bind_current(&self) {
        self.waker.bind_current();
    }

    /// Ends a round of the output loop that took `moved` packets: gives buffers back (the input
    /// may be waiting for one) or waits for the next packet. False once every shard has closed
    /// its ring and the rings are empty.
    pub fn end_round(&self, moved: usize, releaser: &mut Releaser, idler: &mut Idler) -> bool {
        if moved > 0 {
            releaser.flush();
            idler.reset();
            return true;
        }
        let rings = &self.rings;
        if rings.iter().all(|r| r.is_abandoned() && r.is_empty()) {
            return false;
        }
        idler.idle(&self.waker, || rings.iter().any(|r| !r.is_empty() || r.is_abandoned()));
        true
    }
}

/// Counters of the output thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutputStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets whose link type differs from the file's (a pcap has one link type).
    pub link_mismatch: u64,
    /// Packets a port would not take even after retries (counted, freed).
    pub tx_dropped: u64,
}

impl PcapOutput {
    /// The output thread (its file created now, so that a bad path stops the run before it
    /// starts) and one TX path per shard releaser.
    pub fn new(
        path: PathBuf,
        link: LinkType,
        pool: Arc<PacketPool>,
        releaser: Releaser,
        shard_releasers: Vec<Releaser>,
    ) -> Result<(PcapOutput, Vec<Tx>), CaptureError> {
        let writer = PcapWriter::create(&path, link)?;
        let (shards, txs) = ShardRings::new(shard_releasers);
        Ok((PcapOutput { writer, link, shards, pool, releaser }, txs))
    }

    /// Runs until every shard has dropped its TX path and the rings are empty. Returns what it
    /// wrote, and the first write error if the file could not be written in full (the packets
    /// after it are drained and counted, not written).
    pub fn run(mut self, idle: IdlePolicy) -> (OutputStats, Option<CaptureError>) {
        self.shards.bind_current();
        let mut stats = OutputStats::default();
        let mut idler = Idler::new(idle);
        let mut result = Ok(());
        loop {
            let mut moved = 0;
            for ring in &mut self.shards.rings {
                while let Ok(pkt) = ring.pop() {
                    moved += 1;
                    if pkt.link != self.link {
                        stats.link_mismatch += 1;
                    } else if result.is_ok() {
                        // SAFETY: the shard handed the buffer over with the packet.
                        let data = unsafe { self.pool.bytes(pkt.buf, pkt.len) };
                        result = self.writer.write(pkt.ts_ns, pkt.wire_len, data);
                        stats.packets += 1;
                        stats.bytes += u64::from(pkt.len);
                    }
                    self.releaser.release(pkt.buf);
                }
            }
            if !self.shards.end_round(moved, &mut self.releaser, &mut idler) {
                break;
            }
        }
        let error = match result {
            Ok(()) => self.writer.finish().err(),
            Err(e) => Some(e),
        };
        (stats, error)
    }
}
