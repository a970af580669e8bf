//! Where forwarded packets go: back to the pool (offline analysis) or to a pcap file written
//! by an output thread that merges the shards' TX rings.

use super::capture::{CaptureError, PcapWriter};
use super::pool::PacketPool;
use super::RxPacket;
use crate::config::IdleMode;
use crate::runtime::park::{Idler, Waker};
use crate::stack::wire::LinkType;
use rtrb::{Consumer, Producer, RingBuffer};
use std::path::PathBuf;

use std::sync::Arc;

/// A shard's transmit path.
pub enum Tx {
    /// No output configured: the buffer goes back to the pool.
    Discard(Arc<PacketPool>),
    /// To the output thread.
    Ring { ring: Producer<RxPacket>, writer: Arc<Waker>, pool: Arc<PacketPool> },
    /// After [`Tx::close`]: nothing is sent any more.
    Closed,
}

impl Tx {
    /// Sends a packet on (the caller gives up its buffer). Call [`Tx::notify`] after a batch.
    #[inline]
    pub fn send(&mut self, pkt: RxPacket) {
        match self {
            Tx::Discard(pool) => pool.free(pkt.buf),
            Tx::Ring { ring, writer, pool } => {
                let mut item = pkt;
                // The writer always drains, so waiting here is bounded by a file write; a
                // writer that is gone (it failed) gets nothing more.
                while let Err(rtrb::PushError::Full(back)) = ring.push(item) {
                    if ring.is_abandoned() {
                        pool.free(back.buf);
                        return;
                    }
                    item = back;
                    writer.wake();
                    std::thread::yield_now();
                }
            }
            Tx::Closed => debug_assert!(false, "send on a closed TX path"),
        }
    }

    /// Wakes the output thread if it sleeps (once per batch of sends, not per packet).
    pub fn notify(&self) {
        if let Tx::Ring { writer, .. } = self {
            writer.wake();
        }
    }

    /// Closes the path; the output thread is woken to notice once it has drained the ring.
    pub fn close(&mut self) {
        if let Tx::Ring { ring, writer, .. } = std::mem::replace(self, Tx::Closed) {
            drop(ring);
            writer.wake();
        }
    }
}

/// The output thread: writes what the shards forward, then returns buffers to the pool.
pub struct PcapOutput {
    writer: PcapWriter,
    pub link: LinkType,
    rings: Vec<Consumer<RxPacket>>,
    pool: Arc<PacketPool>,
    waker: Arc<Waker>,
}

/// Counters of the output thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutputStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets whose link type differs from the file's (a pcap has one link type).
    pub link_mismatch: u64,
}

impl PcapOutput {
    /// The output thread (its file created now, so that a bad path stops the run before it
    /// starts) and one TX path per shard.
    pub fn new(path: PathBuf, link: LinkType, shards: usize, pool: Arc<PacketPool>) -> Result<(PcapOutput, Vec<Tx>), CaptureError> {
        let writer = PcapWriter::create(&path, link)?;
        let waker = Arc::new(Waker::new());
        let mut rings = Vec::new();
        let mut txs = Vec::new();
        for _ in 0..shards {
            let (p, c) = RingBuffer::new(4096);
            rings.push(c);
            txs.push(Tx::Ring { ring: p, writer: waker.clone(), pool: pool.clone() });
        }
        Ok((PcapOutput { writer, link, rings, pool, waker }, txs))
    }

    /// Runs until every shard has dropped its TX path and the rings are empty.
    pub fn run(mut self, idle: IdleMode) -> Result<OutputStats, CaptureError> {
        self.waker.bind_current();
        let mut stats = OutputStats::default();
        let mut idler = Idler::new(idle);
        let mut result = Ok(());
        loop {
            let mut moved = 0;
            for ring in &mut self.rings {
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
                    self.pool.free(pkt.buf);
                }
            }
            if moved > 0 {
                // Buffers went back to the pool: the input may be waiting for one.
                self.pool.allocator_waker().wake();
                idler.reset();
                continue;
            }
            if self.rings.iter().all(|r| r.is_abandoned() && r.is_empty()) {
                break;
            }
            let rings = &self.rings;
            idler.idle(&self.waker, || rings.iter().any(|r| !r.is_empty() || r.is_abandoned()));
        }
        result?;
        self.writer.finish()?;
        Ok(stats)
    }
}
