//! Packets on the wire: the L2/3 µStack's dissector, and typed header views that parse and emit.
//!
//! - [`dissect`] (re-exported here): one pass from the link layer to TCP/UDP through VLAN, MPLS,
//!   PPPoE and tunnels into a flat [`Parsed`], tolerant of captures cut short; the hot path.
//! - [`ethernet`], [`arp`], [`ipv4`], [`ipv6`], [`tcp`], [`udp`]: one header each, in smoltcp's
//!   shape. A `…Packet<T>` wraps a buffer (`&[u8]`, `&mut [u8]`, `Vec<u8>`): `new_checked`
//!   checks the lengths once, then the accessors read fields by name and, on a mutable buffer,
//!   the setters write them. A `…Repr` is the header as plain values: `parse` reads one from a
//!   packet, `emit` writes one into a buffer and fills the checksum. RFC diagrams are in
//!   `docs/wire.md`.
//! - [`checksum`]: the Internet checksum (RFC 1071), pseudo-headers, incremental updates
//!   (RFC 1624).
//! - [`frame`]: a whole Ethernet + IPv4/IPv6 + TCP frame built in one call, as the stacks that
//!   originate packets (Endpoint, Splicer) send them.

pub mod arp;
pub mod checksum;
pub mod dissect;
pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod ipv6;
pub mod ndp;
pub mod tcp;
pub mod udp;

pub use dissect::*;
pub use mbox_abi::{ip_proto, tcp_flags};

use thiserror::Error;

/// Why a header view or representation refused a buffer.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ends before the header (or the length it declares) does.
    #[error("{0} truncated")]
    Truncated(&'static str),
    /// A field holds a value the header cannot have (a version, a length, an option).
    #[error("{0}: {1}")]
    Malformed(&'static str, &'static str),
    /// Valid, but not something the representation covers (IPv4 fragments, other ARP
    /// hardware).
    #[error("{0}: {1} not supported")]
    Unsupported(&'static str, &'static str),
}

/// Reads the big-endian u16 at `at` of a buffer whose length a view has checked.
#[inline(always)]
pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
