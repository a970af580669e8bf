//! mbox-core: the host side of mbox, a Rust implementation of Microboxes.
//!
//! Data flows one way: [`io`] (packets in, from a device) -> [`runtime`] shards running the
//! µStacks of the `mbox-stack` crate -> [`events`] routed by the [`controller`]'s service graph
//! (`runtime::router` at run time) -> NFs loaded by [`plugin`] -> verdicts -> [`io`] (packets
//! out). [`config`] describes a run, [`run`] assembles and runs it, [`report`] and [`summary`]
//! report it, [`control`] answers `mboxctl` while it runs, and [`sys`] is what they all need of
//! the operating system.

pub mod config;
pub mod control;
pub mod controller;
pub mod elf;
pub mod events;
pub mod files;
pub mod hint;
pub mod ids;
pub mod io;
pub mod plugin;
pub mod report;
pub mod run;
pub mod runtime;
pub mod streams;
pub mod summary;
pub mod sys;
pub mod testing;
