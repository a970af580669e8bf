//! FFI bindings to the system DPDK (22.11): EAL, ethdev, mbufs, mempools, plus `mbox_rte_*`
//! wrappers for the functions DPDK defines inline or as macros (rx/tx bursts, mbuf access,
//! `rte_errno`). Empty unless the `bind` feature is on (mbox-core's `dpdk` feature turns it
//! on); see mbox-core's `io::dpdk` for the safe layer.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, clippy::all, unnecessary_transmutes)]

#[cfg(feature = "bind")]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
