//! The control plane: what a running mbox tells `mboxctl`, and how.
//!
//! - [`live`]: the shards' and NFs' counters, published while they run.
//! - [`reload`]: swapping in a rebuilt plugin while traffic runs.
//! - [`server`]: the control socket and its requests.

pub mod live;
pub mod reload;
pub mod server;
