//! The runtime, mbox's data plane: the shard and NF threads and the channels between them
//! (assembled from a config by `run`).
//!
//! - [`lane`]: the shard-to-NF channels (event handles out, a completion counter back).
//! - [`live`]: the copies of their reports the threads publish while they run.
//! - [`router`]: the service graph at run time (stages, emission order, mutes, fail-closed).
//! - [`shard`]: a stack shard's loop: packets through the stack, events through the router.
//! - [`serve`]: what a shard serves itself (`[[service]]`): ARP answers and the connections
//!   the Endpoint µStack terminates.
//! - [`buffer_budget`]: how much memory those connections' buffers may hold and promise.
//! - [`stream_out`]: what NFs write to those connections, from their threads to the shard.
//! - [`nf_host`]: an NF instance's loop.
//! - [`quic`]: which UDP datagrams are QUIC packets, and what a connection's first flight
//!   says (`PKT/UDP/QUIC`, `FLOW/UDP/QUIC`).

pub mod buffer_budget;
pub mod lane;
pub mod live;
pub mod nf_host;
pub mod quic;
pub mod router;
pub mod serve;
pub mod shard;
pub mod stream_out;
