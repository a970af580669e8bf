//! The run's I/O as the other steps see it: where each shard's packets come from and go, and
//! the input and output threads that feed and drain them. Offline runs (captures, the
//! generator) build it in [`super::offline`], live ones (DPDK ports) in `super::live`; either
//! way the pieces are devices (`io::device`), and assembling only picks and wires them.

use crate::io::device::{MissedFrames, Sink, Source};
use crate::io::output::{OutputThread, Tx};
use crate::io::pool::{lending_pool, Allocator, PacketPool, INITIAL_BUFFER};
use crate::io::{RxPacket, ShardInput, RX_RING};
use rtrb::{Producer, RingBuffer};
use std::sync::Arc;

/// Where each shard's packets come from and go, and the threads that feed and drain them.
pub(super) struct Io {
    /// Per shard: its input, the pool its packets live in, and its way out.
    pub shards: Vec<(ShardInput, Arc<PacketPool>, Tx)>,
    /// What the input thread reads and where it steers to; none when each shard reads a
    /// source of its own.
    pub dispatcher: Option<InputThread>,
    /// The output thread, when one writes or sends what the shards forward.
    pub output: Option<OutputThread>,
    /// Frames the devices dropped on arrival so far (a port's count covers all its queues):
    /// read while the run goes on (the control plane's counters) and at its end.
    pub missed: Option<MissedFrames>,
    /// The input, for the summary when the shards read it themselves.
    pub description: String,
    /// Per port: its MAC address (DPDK ports; none offline), what services answer ARP with.
    pub macs: Vec<[u8; 6]>,
}

/// What the input thread needs: its source, its allocator, and its rings to the shards.
pub(super) struct InputThread {
    pub source: Box<dyn Source>,
    pub alloc: Allocator,
    pub rings: Vec<Producer<RxPacket>>,
}

/// An input thread that reads `source` and steers its frames into the shards' rings, and an
/// output thread that drains what they forward into `sink` (without one, the shards give the
/// buffers back themselves). `give_back` returns a lent buffer (an mbuf) to its device.
pub(super) fn through_threads(
    source: Box<dyn Source>,
    sink: Option<Box<dyn Sink>>,
    packet_buffers: usize,
    shards: usize,
    give_back: Option<unsafe fn(*mut std::ffi::c_void)>,
) -> Io {
    // One releaser per shard, and one for the output thread when there is one.
    let (pool, alloc, mut releasers) = lending_pool(packet_buffers, INITIAL_BUFFER, shards + usize::from(sink.is_some()), give_back);
    let (output, txs) = match sink {
        Some(sink) => {
            let own = releasers.pop().expect("a releaser for the output thread");
            let (out, txs) = OutputThread::new(sink, pool.clone(), own, releasers);
            (Some(out), txs)
        }
        None => (None, releasers.into_iter().map(Tx::discard).collect()),
    };
    let mut producers = Vec::new();
    let mut shard_io = Vec::new();
    for tx in txs {
        let (producer, consumer) = RingBuffer::<RxPacket>::new(RX_RING);
        producers.push(producer);
        shard_io.push((ShardInput::Ring(consumer), pool.clone(), tx));
    }
    let description = source.describe();
    Io {
        shards: shard_io,
        description,
        dispatcher: Some(InputThread { source, alloc, rings: producers }),
        output,
        missed: None,
        macs: Vec::new(),
    }
}
