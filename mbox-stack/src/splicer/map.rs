//! What a spliced connection's segments become: per direction the addresses and ports to write
//! and the offsets to add ([`Rewrite`]), both directions ([`SpliceMap`]), and the bind-time
//! facts they are made from ([`Bind`]).
//!
//! # Conventions
//!
//! All offsets are `u32` added with wrapping (modulo 2^32, RFC 9293 3.4's sequence space and
//! RFC 7323 3's timestamp clocks): an offset of `-d` is `d.wrapping_neg()`. In one direction:
//!
//! - `seq_delta` is added to SEQ: it moves the sender's sequence space into the one the
//!   receiver was told in its handshake;
//! - `ack_delta` is added to ACK and to every SACK edge (both count the *other* side's bytes,
//!   RFC 2018 3), only in segments with the ACK flag: it is the other direction's `seq_delta`
//!   negated;
//! - `ts_val_delta` is added to TSval; `ts_ecr_delta` to TSecr (with ACK only: RFC 7323 3.2,
//!   TSecr means nothing without it): the other direction's `ts_val_delta` negated;
//! - the window field `w` becomes `min(0xffff, (w << from_shift) >> to_shift)` in segments
//!   without SYN ([`WindowRescale`]).
//!
//! # A worked example
//!
//! A client 192.0.2.10:40000 connects to the service 198.51.100.1:80 with ISN 1000, TSval 700
//! and window scale 7; mbox answers from ISN 5000 with its own window scale 9. At bind time
//! mbox last sent the client TSval 3,000,000. It sends the backend 10.0.0.5:8080 a SYN from
//! its SNAT address 10.0.0.1:61000 with the client's ISN 1000, TSval 700 and window scale 7; the
//! backend answers from ISN 9000 with TSval 50 and window scale 2. Then:
//!
//! | | client → backend (`C2B`) | backend → client (`B2C`) |
//! |---|---|---|
//! | addresses | 10.0.0.1:61000 → 10.0.0.5:8080 | 198.51.100.1:80 → 192.0.2.10:40000 |
//! | `seq_delta` | 1000 − 1000 = 0 | 5000 − 9000 = −4000 |
//! | `ack_delta` | 9000 − 5000 = 4000 | 1000 − 1000 = 0 |
//! | `ts_val_delta` | 700 − 700 = 0 | 3,000,000 − 50 = 2,999,950 |
//! | `ts_ecr_delta` | −2,999,950 | 0 |
//! | window | × 2^7 / 2^7: as it is | × 2^2 / 2^9: w >> 7 |
//!
//! The client's segment SEQ 1001, ACK 5001, TSval 710, TSecr 3,000,000, SACK 5101-5201 reaches
//! the backend as SEQ 1001, ACK 9001, TSval 710, TSecr 50, SACK 9101-9201. The backend's
//! answer SEQ 9001, ACK 1101, TSval 60, TSecr 710, window 1000 (4000 bytes) reaches the client
//! as SEQ 5001, ACK 1101, TSval 3,000,010, TSecr 710, window 7 (3584 bytes: rounded down); a
//! backend window of 100 (400 bytes) becomes 1 (512 bytes), not 0.
//!
//! ```
//! use mbox_stack::splicer::{BackendSource, Bind, Dir, SpliceMap, TsClocks, WindowScales};
//!
//! let map = SpliceMap::new(&Bind {
//!     client: "192.0.2.10:40000".parse().unwrap(),
//!     service: "198.51.100.1:80".parse().unwrap(),
//!     backend: "10.0.0.5:8080".parse().unwrap(),
//!     source: BackendSource::Snat("10.0.0.1:61000".parse().unwrap()),
//!     client_isn: 1000,
//!     mbox_isn_to_client: 5000,
//!     backend_isn: 9000,
//!     mbox_isn_to_backend: 1000,
//!     clocks: TsClocks { client_syn_tsval: 700, mbox_syn_tsval: 700, mbox_tsval_to_client: 3_000_000, backend_syn_ack_tsval: 50 },
//!     window_scales: WindowScales { client_syn: Some(7), mbox_syn_ack: Some(9), mbox_syn: Some(7), backend_syn_ack: Some(2) },
//! })
//! .unwrap();
//! let (c2b, b2c) = (map.rewrite(Dir::C2B), map.rewrite(Dir::B2C));
//! assert_eq!((c2b.seq_delta, c2b.ack_delta), (0, 4000));
//! assert_eq!((b2c.seq_delta, b2c.ack_delta), (4000u32.wrapping_neg(), 0));
//! assert_eq!(9001u32.wrapping_add(b2c.seq_delta), 5001);
//! assert_eq!(60u32.wrapping_add(b2c.ts_val_delta), 3_000_010);
//! assert_eq!(3_000_000u32.wrapping_add(c2b.ts_ecr_delta), 50);
//! assert_eq!((b2c.window.apply(1000), b2c.window.apply(100), c2b.window.apply(1000)), (7, 1, 1000));
//! ```

use super::{Dir, SpliceError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The two addresses of an IP header, one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addrs {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl Addrs {
    /// Both addresses; [`SpliceError::FamilyMismatch`] when one is IPv4 and the other IPv6.
    pub fn new(src: IpAddr, dst: IpAddr) -> Result<Addrs, SpliceError> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ok(Addrs::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(Addrs::V6 { src, dst }),
            _ => Err(SpliceError::FamilyMismatch),
        }
    }

    pub fn src(&self) -> IpAddr {
        match *self {
            Addrs::V4 { src, .. } => src.into(),
            Addrs::V6 { src, .. } => src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match *self {
            Addrs::V4 { dst, .. } => dst.into(),
            Addrs::V6 { dst, .. } => dst.into(),
        }
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self, Addrs::V4 { .. })
    }

    /// Source and destination swapped.
    pub fn reversed(&self) -> Addrs {
        match *self {
            Addrs::V4 { src, dst } => Addrs::V4 { src: dst, dst: src },
            Addrs::V6 { src, dst } => Addrs::V6 { src: dst, dst: src },
        }
    }
}

/// A segment's addresses and ports: (source address, source port, destination address,
/// destination port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub addrs: Addrs,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Tuple {
    /// From `src` to `dst`; [`SpliceError::FamilyMismatch`] when their families differ.
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Result<Tuple, SpliceError> {
        Ok(Tuple { addrs: Addrs::new(src.ip(), dst.ip())?, src_port: src.port(), dst_port: dst.port() })
    }

    pub fn src(&self) -> SocketAddr {
        SocketAddr::new(self.addrs.src(), self.src_port)
    }

    pub fn dst(&self) -> SocketAddr {
        SocketAddr::new(self.addrs.dst(), self.dst_port)
    }

    /// The answer's tuple: source and destination swapped.
    pub fn reversed(&self) -> Tuple {
        Tuple { addrs: self.addrs.reversed(), src_port: self.dst_port, dst_port: self.src_port }
    }
}

/// Largest shift count a receiver uses (RFC 7323 2.3: a larger one received is taken as 14).
pub const MAX_WINDOW_SHIFT: u8 = 14;

/// A window field moved from the sender's window scale to the one the receiver applies
/// (RFC 7323 2): `w` becomes `(w << from_shift) >> to_shift`, at most 0xffff.
///
/// Rounding: scaling down truncates (the receiver is offered at most what the sender's
/// receiver offered, never more, so the sender cannot overrun it), except that a non-zero
/// window never becomes 0 — it becomes 1, at most `2^to_shift - 1` bytes more than offered —
/// so that a small open window is not mistaken for a closed one (which would leave the sender
/// probing, RFC 9293 3.8.6.1). Scaling up past 0xffff clamps there (less than offered, as
/// the receiving side's own scale cannot say more). Shifts are taken at most 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WindowRescale {
    from_shift: u8,
    to_shift: u8,
}

impl WindowRescale {
    /// The window as it is.
    pub const IDENTITY: WindowRescale = WindowRescale { from_shift: 0, to_shift: 0 };

    /// From the sender's shift to the receiver's, each taken at most 14.
    pub fn new(from_shift: u8, to_shift: u8) -> WindowRescale {
        WindowRescale { from_shift: from_shift.min(MAX_WINDOW_SHIFT), to_shift: to_shift.min(MAX_WINDOW_SHIFT) }
    }

    pub fn from_shift(&self) -> u8 {
        self.from_shift
    }

    pub fn to_shift(&self) -> u8 {
        self.to_shift
    }

    /// True when every window field stays as it is.
    pub fn is_identity(&self) -> bool {
        self.from_shift == self.to_shift
    }

    /// The rescaled window field (see the type's rounding).
    #[inline]
    pub fn apply(&self, window: u16) -> u16 {
        if self.is_identity() {
            return window;
        }
        let bytes = u32::from(window) << self.from_shift;
        match (bytes >> self.to_shift).min(0xffff) as u16 {
            0 if window != 0 => 1,
            w => w,
        }
    }

    /// The other way (exact only where [`WindowRescale::apply`] neither rounded nor clamped).
    pub fn inverse(&self) -> WindowRescale {
        WindowRescale { from_shift: self.to_shift, to_shift: self.from_shift }
    }
}

/// What one direction's segments become: the tuple written over theirs, and the offsets
/// added (see the module's conventions). [`Rewrite::apply`] rewrites a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rewrite {
    /// The addresses and ports written; the frame must be of the same IP family.
    pub tuple: Tuple,
    /// Added to SEQ.
    pub seq_delta: u32,
    /// Added to ACK (with the ACK flag), and to SACK edges when `shift_sack`.
    pub ack_delta: u32,
    /// Added to the timestamps option's TSval.
    pub ts_val_delta: u32,
    /// Added to TSecr (with the ACK flag).
    pub ts_ecr_delta: u32,
    /// Applied to the window field of segments without SYN.
    pub window: WindowRescale,
    /// Whether SACK blocks are shifted by `ack_delta` (with the ACK flag). [`SpliceMap::new`]
    /// sets it; false only for a caller that rewrites or removes the blocks itself.
    pub shift_sack: bool,
}

impl Rewrite {
    /// A rewrite that writes `tuple` and changes nothing else.
    pub fn addresses_only(tuple: Tuple) -> Rewrite {
        Rewrite { tuple, seq_delta: 0, ack_delta: 0, ts_val_delta: 0, ts_ecr_delta: 0, window: WindowRescale::IDENTITY, shift_sack: true }
    }

    /// The rewrite that takes this one's output back to `original` (the tuple its input
    /// segments carried): offsets negated, window shifts swapped. Exact for every field but
    /// a window this one rounded or clamped.
    pub fn inverse(&self, original: Tuple) -> Rewrite {
        Rewrite {
            tuple: original,
            seq_delta: self.seq_delta.wrapping_neg(),
            ack_delta: self.ack_delta.wrapping_neg(),
            ts_val_delta: self.ts_val_delta.wrapping_neg(),
            ts_ecr_delta: self.ts_ecr_delta.wrapping_neg(),
            window: self.window.inverse(),
            shift_sack: self.shift_sack,
        }
    }
}

/// Both directions of a splice: a `Copy` value of about 120 bytes, kept in a flow's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpliceMap {
    pub c2b: Rewrite,
    pub b2c: Rewrite,
}

impl SpliceMap {
    /// The map for a bind (see the module's worked example). Every address must be of one
    /// family ([`SpliceError::FamilyMismatch`] otherwise).
    pub fn new(bind: &Bind) -> Result<SpliceMap, SpliceError> {
        let from_client = Tuple::new(bind.client, bind.service)?;
        let source = match bind.source {
            BackendSource::Transparent => bind.client,
            BackendSource::Snat(source) => source,
        };
        let to_backend = Tuple::new(source, bind.backend)?;
        if from_client.addrs.is_ipv4() != to_backend.addrs.is_ipv4() {
            return Err(SpliceError::FamilyMismatch);
        }
        // Client's space -> the backend's view of it; mbox's space toward the client -> the
        // backend's own.
        let c2b_seq = bind.mbox_isn_to_backend.wrapping_sub(bind.client_isn);
        let c2b_ack = bind.backend_isn.wrapping_sub(bind.mbox_isn_to_client);
        let clocks = &bind.clocks;
        let client_clock = clocks.mbox_syn_tsval.wrapping_sub(clocks.client_syn_tsval);
        let backend_clock = clocks.mbox_tsval_to_client.wrapping_sub(clocks.backend_syn_ack_tsval);
        let s = bind.window_scales.effective();
        Ok(SpliceMap {
            c2b: Rewrite {
                tuple: to_backend,
                seq_delta: c2b_seq,
                ack_delta: c2b_ack,
                ts_val_delta: client_clock,
                ts_ecr_delta: backend_clock.wrapping_neg(),
                window: WindowRescale::new(s.client, s.mbox_to_backend),
                shift_sack: true,
            },
            b2c: Rewrite {
                tuple: from_client.reversed(),
                seq_delta: c2b_ack.wrapping_neg(),
                ack_delta: c2b_seq.wrapping_neg(),
                ts_val_delta: backend_clock,
                ts_ecr_delta: client_clock.wrapping_neg(),
                window: WindowRescale::new(s.backend, s.mbox_to_client),
                shift_sack: true,
            },
        })
    }

    /// One direction's rewrite.
    #[inline]
    pub fn rewrite(&self, dir: Dir) -> &Rewrite {
        match dir {
            Dir::C2B => &self.c2b,
            Dir::B2C => &self.b2c,
        }
    }
}

/// Where mbox's connection to the backend comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendSource {
    /// The client's own address and port (transparent: the backend routes its answers back
    /// through mbox).
    Transparent,
    /// A source NAT address and port of mbox's.
    Snat(SocketAddr),
}

/// What a splicer knows when it binds a client's connection to a backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The address and port the client connected to (the VIP).
    pub service: SocketAddr,
    /// The backend the NF picked.
    pub backend: SocketAddr,
    /// mbox's source toward the backend.
    pub source: BackendSource,
    /// The client's SYN's sequence number.
    pub client_isn: u32,
    /// The sequence number of mbox's SYN-ACK to the client.
    pub mbox_isn_to_client: u32,
    /// The sequence number of the backend's SYN-ACK.
    pub backend_isn: u32,
    /// The sequence number of mbox's SYN to the backend: normally `client_isn` (offset 0).
    pub mbox_isn_to_backend: u32,
    /// The two timestamp clocks (all zero where timestamps are not in use).
    pub clocks: TsClocks,
    pub window_scales: WindowScales,
}

/// Where the timestamp clocks meet at bind time (RFC 7323 3). The client's TSvals reach the
/// backend in the clock of mbox's SYN to it (normally the client's own: `mbox_syn_tsval ==
/// client_syn_tsval`, offset 0); the backend's reach the client in the clock the client saw
/// from mbox, continued from the last TSval mbox sent it, so the client's clock of its peer
/// never runs backwards (RFC 7323 5's PAWS). As Linux's SYNPROXY, the backend's SYN-ACK TSval
/// is taken to meet mbox's last one; the backend's clock then runs on from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TsClocks {
    /// TSval of the client's SYN.
    pub client_syn_tsval: u32,
    /// TSval of mbox's SYN to the backend.
    pub mbox_syn_tsval: u32,
    /// The latest TSval mbox sent the client from its own clock (its SYN-ACK's, or a later
    /// ACK's).
    pub mbox_tsval_to_client: u32,
    /// TSval of the backend's SYN-ACK.
    pub backend_syn_ack_tsval: u32,
}

/// The window scale options of the four SYNs (`None`: no option; RFC 7323 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowScales {
    /// The client's SYN.
    pub client_syn: Option<u8>,
    /// mbox's SYN-ACK to the client.
    pub mbox_syn_ack: Option<u8>,
    /// mbox's SYN to the backend (normally the client's).
    pub mbox_syn: Option<u8>,
    /// The backend's SYN-ACK.
    pub backend_syn_ack: Option<u8>,
}

/// The shift each side applies to the window fields it sends (RFC 7323 2.2, 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EffectiveShifts {
    pub client: u8,
    pub mbox_to_client: u8,
    pub mbox_to_backend: u8,
    pub backend: u8,
}

impl WindowScales {
    /// The shifts in effect: a connection scales only where both of its SYNs carried the
    /// option (RFC 7323 2.2), each shift at most 14 (2.3); otherwise 0 both ways.
    pub fn effective(&self) -> EffectiveShifts {
        let pair = |a: Option<u8>, b: Option<u8>| match (a, b) {
            (Some(a), Some(b)) => (a.min(MAX_WINDOW_SHIFT), b.min(MAX_WINDOW_SHIFT)),
            _ => (0, 0),
        };
        let (client, mbox_to_client) = pair(self.client_syn, self.mbox_syn_ack);
        let (mbox_to_backend, backend) = pair(self.mbox_syn, self.backend_syn_ack);
        EffectiveShifts { client, mbox_to_client, mbox_to_backend, backend }
    }
}
