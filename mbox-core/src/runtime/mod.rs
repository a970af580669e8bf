//! The runtime: threads and the channels between them.
//!
//! - [`park`]: how idle threads spin, then park, and are woken.
//! - [`cores`]: pinning threads to cores (`[runtime] cores`, and undoing the EAL's pinning).
//! - [`lane`]: the shard-to-NF channels (event handles out, a completion counter back).
//! - [`router`]: the service graph at run time (stages, emission order, mutes, fail-closed).
//! - [`shard`]: a stack shard's loop: packets through the stack, events through the router.
//! - [`nf_host`]: an NF instance's loop.
//! - [`pipeline`]: assembling and running all of it from a config.
//! - [`memory`]: what a run preallocates, estimated from its config, and its limit.
//! - [`stop`]: stopping a run from outside (Ctrl-C, SIGTERM).

pub mod cores;
pub mod lane;
pub mod memory;
pub mod nf_host;
pub mod park;
pub mod pipeline;
pub mod router;
pub mod shard;
pub mod stop;
