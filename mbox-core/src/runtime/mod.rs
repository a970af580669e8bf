//! The runtime: threads and the channels between them.
//!
//! - [`lane`]: the shard-to-NF channels (event handles out, a completion counter back).
//! - [`live`]: the copies of their reports the threads publish while they run.
//! - [`router`]: the service graph at run time (stages, emission order, mutes, fail-closed).
//! - [`shard`]: a stack shard's loop: packets through the stack, events through the router.
//! - [`nf_host`]: an NF instance's loop.
//! - [`pipeline`]: assembling and running all of it from a config.
//! - [`memory`]: what a run preallocates, estimated from its config, and its limit.

pub mod lane;
pub mod live;
pub mod memory;
pub mod nf_host;
pub mod pipeline;
pub mod router;
pub mod shard;
