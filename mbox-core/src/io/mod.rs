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
