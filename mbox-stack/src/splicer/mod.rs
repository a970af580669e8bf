//! The TCP Splicer µStack's per-packet core: once a client's connection is bound to a backend's,
//! every segment of either is rewritten in place into the other's (addresses, ports, sequence
//! space, timestamp clock, window scale, checksums), sans-IO and without copying payload.
//!
//! mbox completes the client's handshake itself (its own ISN, timestamp clock, window scale and
//! MSS), holds the first request while an NF picks a backend, then opens the backend connection
//! with a SYN that carries the client's ISN and options. From then on the two connections are
//! one: [`SpliceMap::new`] turns what the splicer knows at bind time ([`Bind`]) into per
//! direction offsets, and [`translate()`] applies them to one Ethernet frame:
//!
//! - addresses and ports rewritten (the IPv4 header checksum follows);
//! - SEQ, and ACK when the ACK flag is set, shifted by wrapping offsets (RFC 9293 3.4);
//! - TSval shifted into the clock the receiver saw, TSecr (with ACK) back into the sender's
//!   (RFC 7323 3), SACK blocks (with ACK) into the receiver's sequence space (RFC 2018 3);
//! - the window field rescaled where the two connections' window scales differ (RFC 7323 2),
//!   except in SYNs, whose window is never scaled;
//! - the TCP checksum updated incrementally for all of that and the pseudo-header's addresses
//!   (RFC 1624 equation 3): never recomputed over the payload.
//!
//! Linux's `nf_conntrack_seqadj` and SYNPROXY do the same with one offset per direction; here
//! the offsets are fixed at bind time (mbox never inserts or removes bytes).
//!
//! - [`map`]: the per-direction rewrite ([`Rewrite`]), both directions ([`SpliceMap`]) and the
//!   bind-time inputs ([`Bind`]), with a worked example of the arithmetic.
//! - [`translate`](mod@translate): the in-place rewrite of one frame ([`translate()`],
//!   [`Rewrite::apply`]), what it saw ([`Translated`]), the MAC helper [`set_macs`].
//! - [`options`]: the TCP option walk that finds timestamps and SACK blocks.
//! - [`open`]: the backend's connection until the splice carries it ([`Opener`]: the SYN with
//!   the client's ISN and options, the held bytes sent and resent until acknowledged).
//!
//! What is left to the caller: the handshakes before the bind, teardown (from
//! [`Translated`]'s flags), MAC addresses, TTL / hop limit. Options that sign the header
//! (TCP-MD5, RFC 2385; TCP-AO, RFC 5925) cannot survive any rewrite and are passed as they are.

pub mod map;
pub mod open;
pub mod options;
pub mod translate;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use map::{Addrs, BackendSource, Bind, EffectiveShifts, Rewrite, SpliceMap, TsClocks, Tuple, WindowRescale, WindowScales};
pub use open::{OpenConfig, OpenFailure, OpenPhase, Opener};
pub use translate::{set_macs, translate, Translated};

use crate::wire::WireError;
use thiserror::Error;

/// Which way a segment travels through a splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the client (to the service address) toward the backend.
    C2B,
    /// From the backend toward the client (from the service address).
    B2C,
}

impl Dir {
    /// The other direction.
    #[inline]
    pub fn reverse(self) -> Dir {
        match self {
            Dir::C2B => Dir::B2C,
            Dir::B2C => Dir::C2B,
        }
    }
}

/// Why a frame (or a bind) could not be spliced. [`translate()`] leaves the frame as it was
/// whenever it returns one: the caller drops the frame (and counts it by cause).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SpliceError {
    /// A header is truncated or malformed (the views' own checks: lengths, versions, more
    /// than two VLAN tags, an 802.3 length field).
    #[error("not a spliceable frame: {0}")]
    Wire(#[from] WireError),
    /// The EtherType after the VLAN tags is neither IPv4 nor IPv6.
    #[error("EtherType {0:#06x} is neither IPv4 nor IPv6")]
    NotIp(u16),
    /// The IP payload is not TCP (IPv6 extension headers are not followed: their next header
    /// is reported).
    #[error("IP protocol / next header {0} is not TCP")]
    NotTcp(u8),
    /// An IPv4 fragment (the L2/3 µStack reassembles before any stack rewrites).
    #[error("an IPv4 fragment")]
    Fragment,
    /// The frame's IP family is not the rewrite's, or a bind mixes IPv4 and IPv6 (a splice
    /// keeps the family).
    #[error("IPv4 and IPv6 mixed")]
    FamilyMismatch,
    /// A TCP option with an illegal length (below 2, past the header, or wrong for its kind:
    /// the lengths [`crate::wire::tcp::TcpOptionIter`] refuses), `at` bytes into the options.
    /// The segment is refused whole rather than forwarded with timestamps or SACK blocks left
    /// in the wrong space (RFC 9293 MUST-7: an illegal length is handled, never a crash).
    #[error("malformed TCP option {at} bytes into the options")]
    MalformedOption { at: u8 },
}
