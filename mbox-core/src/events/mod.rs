//! The event plane's host side: the type registry and the per-shard event memory.
//! (Event layouts themselves are ABI: see the `mbox-abi` crate.)

pub mod arena;
pub mod registry;
