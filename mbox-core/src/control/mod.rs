//! The control plane: what a running mbox tells `mboxctl`, and how.
//!
//! - [`live`]: the shards' and NFs' counters, published while they run.
//! - [`listen`]: accepting clients on a thread, each served by a thread of its own.
//! - [`metrics`]: the same counters over HTTP, in Prometheus' text format.
//! - [`reload`]: swapping in a rebuilt plugin while traffic runs.
//! - [`server`]: the control socket and its requests.

pub mod listen;
pub mod live;
pub mod metrics;
pub mod reload;
pub mod server;
