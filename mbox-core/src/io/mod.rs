//! Packet I/O: where packets come from and where they go.
//!
//! - [`device`]: the device interface every input and output implements ([`device::Source`],
//!   [`device::Sink`]), a shard's own input, and the output thread.
//! - [`pool`]: the packet buffers (a software mempool).
//! - [`capture`]: pcap/pcapng reading and pcap writing.
//! - [`replay`]: captures replayed as one source (`[input] pcap`, `repeat`, `retime`).
//! - [`generator`]: synthetic TCP/UDP traffic, a source.
//! - [`trace`] and [`impair`]: wrappers that write what a device carries to a pcap, and that
//!   lose, reorder, duplicate and delay a source's frames.
//! - [`dispatch`]: the input thread, a software NIC that reads a source and steers each packet
//!   to its shard's RX ring by the symmetric flow hash (what RSS does in hardware).
//! - [`output`]: a shard's transmit path, and the pcap file sink.
//! - [`origin`]: a serving shard's pool for the packets it builds (ARP answers, segments).
//! - [`merge`]: many captures into one Ethernet pcap (`mbox merge`), for other tools to read.
//! - `dpdk` (feature `dpdk`): the EAL, mempools, ports and mbuf bursts behind a safe layer.
//!
//! Shards see only [`RxPacket`] handles, whatever the device: from the input thread's ring, or
//! from a source they read themselves (a DPDK queue pair per shard).

pub mod capture;
pub mod device;
pub mod dispatch;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod generator;
pub mod impair;
pub mod merge;
pub mod origin;
pub mod output;
pub mod pool;
pub mod replay;
pub mod trace;

pub use device::{Read, RxPacket, ShardInput, RX_RING};
