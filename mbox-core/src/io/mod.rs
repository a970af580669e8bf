//! Packet I/O: where packets come from and where they go.
//!
//! - [`pool`]: the packet buffers (a software mempool).
//! - [`capture`]: pcap/pcapng reading and pcap writing.
//! - [`generator`]: synthetic TCP/UDP traffic.
//! - [`dispatch`]: the input thread, a software NIC that reads a source and steers each packet
//!   to its shard's RX ring by the symmetric flow hash (what RSS does in hardware).
//! - [`output`]: the output thread writing forwarded packets to a pcap.
//! - [`merge`]: many captures into one Ethernet pcap (`mbox merge`), for other tools to read.
//! - `dpdk` (feature `dpdk`): the EAL, mempools, ports and mbuf bursts behind a safe layer.
//!
//! Shards see only [`RxPacket`] handles on rings, whatever the source; a DPDK backend feeds
//! the same rings' consumers.

pub mod capture;
pub mod dispatch;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod generator;
pub mod merge;
pub mod output;
pub mod pool;

use mbox_stack::wire::LinkType;

/// A received packet in flight between I/O and a shard: a handle to its buffer, not its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPacket {
    /// Buffer index in the packet pool.
    pub buf: u32,
    /// Captured bytes in the buffer.
    pub len: u32,
    /// Length on the wire.
    pub wire_len: u32,
    /// Input port.
    pub port: u16,
    pub link: LinkType,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
}

/// What a shard's read of its input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Packets were added to the inbox.
    Got,
    /// Nothing now.
    Nothing,
    /// The input is over.
    Over,
}

/// Where a shard's packets come from.
pub enum ShardInput {
    /// The ring the input thread steers this shard's packets into.
    Ring(rtrb::Consumer<RxPacket>),
    /// The shard's own RX queue of every port (DPDK with a queue pair per shard).
    #[cfg(feature = "dpdk")]
    Queue(Box<dpdk::QueueInput>),
}

impl ShardInput {
    /// Moves up to `max` packets into `inbox`.
    pub fn read(&mut self, inbox: &mut std::collections::VecDeque<RxPacket>, max: usize) -> Read {
        match self {
            ShardInput::Ring(rx) => {
                let n = rx.slots().min(max);
                if n > 0 {
                    if let Ok(chunk) = rx.read_chunk(n) {
                        inbox.extend(chunk);
                    }
                    Read::Got
                } else if rx.is_abandoned() && rx.is_empty() {
                    Read::Over
                } else {
                    Read::Nothing
                }
            }
            #[cfg(feature = "dpdk")]
            ShardInput::Queue(q) => q.read(inbox, max),
        }
    }

    /// Whether input is waiting, checked before the shard parks: the input thread wakes a
    /// parked shard when it fills its ring, so this says whether to stay awake.
    pub fn waiting(&self) -> bool {
        match self {
            ShardInput::Ring(rx) => !rx.is_empty() || rx.is_abandoned(),
            #[cfg(feature = "dpdk")]
            ShardInput::Queue(_) => false,
        }
    }

    /// True when nobody wakes the shard for new input: it must poll (a NIC queue).
    pub fn polled(&self) -> bool {
        match self {
            ShardInput::Ring(_) => false,
            #[cfg(feature = "dpdk")]
            ShardInput::Queue(_) => true,
        }
    }

    /// What the shard's own input counted so far (`None` for a ring: the input thread reports).
    pub fn report(&self) -> Option<dispatch::InputReport> {
        match self {
            ShardInput::Ring(_) => None,
            #[cfg(feature = "dpdk")]
            ShardInput::Queue(q) => Some(q.report().clone()),
        }
    }

    /// What the shard's own input counted (`None` for a ring: the input thread reports).
    pub fn into_report(self) -> Option<dispatch::InputReport> {
        match self {
            ShardInput::Ring(_) => None,
            #[cfg(feature = "dpdk")]
            ShardInput::Queue(q) => Some(q.into_report()),
        }
    }
}
