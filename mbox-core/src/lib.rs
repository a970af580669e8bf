//! mbox-core: the host side of mbox, a Rust implementation of Microboxes.
//!
//! Data flows one way: [`io`] (packets in) -> [`runtime`] shards running the µStacks of the
//! `mbox-stack` crate -> [`events`] routed by the [`controller`]'s service graph -> NFs loaded by
//! [`plugin`] -> verdicts -> [`io`] (packets out). [`config`] describes a run and
//! [`summary`] reports it.

pub mod config;
pub mod controller;
pub mod events;
pub mod io;
pub mod plugin;
pub mod runtime;
pub mod streams;
pub mod summary;
