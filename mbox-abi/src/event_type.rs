//! Event types as paths in a tree, packed so that "is a descendant of" is one xor and one mask.
//!
//! A type such as `PKT/TCP/SYN` is stored as its child index at each level: the top byte holds
//! the first level, the next byte the second, and so on for up to [`MAX_DEPTH`] levels; the
//! lowest byte holds the depth. Levels below the depth are zero. Because a type's code begins
//! with its ancestors' codes, `t.is_a(a)` only compares the first `a.depth()` bytes, which is the
//! test every event delivery runs.

use abi_stable::StableAbi;

/// How many levels a type path may have (`A/B/C/D/E/F/G`).
pub const MAX_DEPTH: u32 = 7;

/// A node of the event type tree. See the module documentation for the encoding.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventType(u64);

impl EventType {
    /// The root of the tree: every type is a descendant of it.
    pub const ROOT: EventType = EventType(0);

    /// The raw packed code, as carried in events.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Rebuilds a type from its raw code, refusing codes that no path encodes.
    pub const fn from_raw(raw: u64) -> Option<EventType> {
        let depth = (raw & 0xff) as u32;
        if depth > MAX_DEPTH {
            return None;
        }
        let mut level = 0;
        while level < MAX_DEPTH {
            let component = (raw >> (56 - 8 * level)) & 0xff;
            // Levels within the depth are non-zero child indices; levels below it are zero.
            if (level < depth) != (component != 0) {
                return None;
            }
            level += 1;
        }
        Some(EventType(raw))
    }

    /// Number of path components (0 for the root).
    #[inline]
    pub const fn depth(self) -> u32 {
        (self.0 & 0xff) as u32
    }

    /// The child index at `level` (0-based), or 0 beyond the depth.
    #[inline]
    pub const fn component(self, level: u32) -> u8 {
        if level >= MAX_DEPTH {
            return 0;
        }
        (self.0 >> (56 - 8 * level)) as u8
    }

    /// The `index`-th child of this node (`index` from 1), if the tree is not too deep.
    pub const fn child(self, index: u8) -> Option<EventType> {
        let depth = self.depth();
        if index == 0 || depth >= MAX_DEPTH {
            return None;
        }
        let code = (self.0 & !0xff) | ((index as u64) << (56 - 8 * depth)) | (depth as u64 + 1);
        Some(EventType(code))
    }

    /// The parent node, or `None` for the root.
    pub const fn parent(self) -> Option<EventType> {
        let depth = self.depth();
        if depth == 0 {
            return None;
        }
        let keep = prefix_mask(depth - 1);
        Some(EventType((self.0 & keep) | (depth as u64 - 1)))
    }

    /// True when `self` is `ancestor` or lies below it. Runs for every event delivered.
    #[inline(always)]
    pub const fn is_a(self, ancestor: EventType) -> bool {
        self.depth() >= ancestor.depth() && (self.0 ^ ancestor.0) & prefix_mask(ancestor.depth()) == 0
    }
}

/// Mask selecting the first `depth` path bytes.
#[inline(always)]
const fn prefix_mask(depth: u32) -> u64 {
    // `checked_shl` keeps depth 0 (shift by 64) defined: the root matches everything.
    match u64::MAX.checked_shl(64 - 8 * depth) {
        Some(mask) => mask,
        None => 0,
    }
}

impl core::fmt::Debug for EventType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EventType(")?;
        for level in 0..self.depth() {
            if level > 0 {
                write!(f, ".")?;
            }
            write!(f, "{}", self.component(level))?;
        }
        write!(f, ")")
    }
}

/// `parent.child(index)` for constants: a bad index fails the build, not the run.
const fn node(parent: EventType, index: u8) -> EventType {
    match parent.child(index) {
        Some(t) => t,
        None => panic!("event type tree too deep or child index 0"),
    }
}

/// The built-in event types. NFs register their own under any of these.
pub mod builtin {
    use super::{node, EventType};

    /// Every packet the stack hands to NFs.
    pub const PKT: EventType = node(EventType::ROOT, 1);
    /// A TCP segment.
    pub const PKT_TCP: EventType = node(PKT, 1);
    /// A TCP segment with SYN set.
    pub const PKT_TCP_SYN: EventType = node(PKT_TCP, 1);
    /// A TCP segment with FIN set (and not SYN).
    pub const PKT_TCP_FIN: EventType = node(PKT_TCP, 2);
    /// A TCP segment with RST set (and neither SYN nor FIN).
    pub const PKT_TCP_RST: EventType = node(PKT_TCP, 3);
    /// A UDP datagram.
    pub const PKT_UDP: EventType = node(PKT, 2);
    /// A UDP datagram that begins with a QUIC packet (the seed's `PKT/QUIC`, under `PKT/UDP`
    /// so that a UDP subscriber still gets every datagram): a long header of an IETF or Google
    /// version, or a short header on a flow whose long headers were seen (which gave the
    /// connection ID lengths). A `PktQuicEvent`.
    pub const PKT_UDP_QUIC: EventType = node(PKT_UDP, 1);

    /// Flow-level events: carry the 5-tuple and per-direction counters.
    pub const FLOW: EventType = node(EventType::ROOT, 2);
    /// A TCP connection.
    pub const FLOW_TCP: EventType = node(FLOW, 1);
    /// The stack saw the first packet of a TCP connection.
    pub const FLOW_TCP_NEW: EventType = node(FLOW_TCP, 1);
    /// A TCP connection ended; the event says why.
    pub const FLOW_TCP_TERMINATE: EventType = node(FLOW_TCP, 2);
    /// New in-order bytes of one direction's reassembled stream: an offset range, read in place.
    pub const FLOW_TCP_DATA_RDY: EventType = node(FLOW_TCP, 3);
    /// Bytes of one direction's stream that will never arrive: an offset range and why.
    pub const FLOW_TCP_GAP: EventType = node(FLOW_TCP, 4);
    /// One direction's stream reached its end: every byte before its FIN was reported (as data
    /// or gaps), or the connection was reset (an RST its receiver takes). Bytes that still
    /// arrive after it are reported too: data in flight, or a FIN or RST that never reached
    /// its receiver (an evasion an NF should not let blind it).
    pub const FLOW_TCP_STREAM_END: EventType = node(FLOW_TCP, 5);
    /// A connection mbox terminates (a `[[service]]` on the Endpoint µStack) has send room
    /// again after a [`Host::send`](crate::Host::send) took less than it was given: write the
    /// rest. A `FlowTcpEvent`.
    pub const FLOW_TCP_SEND_ROOM: EventType = node(FLOW_TCP, 6);
    /// A Splicer connection's bind ([`Host::bind`](crate::Host::bind)) has an outcome: the
    /// backend took the held bytes and the two are spliced, or it could not be had (refused,
    /// no answer, not resolved; the client is refused). A `FlowTcpEvent` whose `reason` is one
    /// of the `BIND_*` constants; what a load balancer's passive health check reads.
    pub const FLOW_TCP_BOUND: EventType = node(FLOW_TCP, 7);
    /// Bytes a spliced connection's backend sent its client (a
    /// [`StreamDataEvent`](crate::StreamDataEvent), direction 1, offsets from the backend's
    /// first byte), in order, for the NFs of a Splicer service that want them — a cache
    /// storing what a miss fetched. Copied out of the frames only while some NF of the
    /// connection subscribes (list it in `subscribe_per_flow` and turn it on with
    /// [`Host::subscribe`](crate::Host::subscribe), or subscribe and turn it off with
    /// [`Host::unsubscribe`](crate::Host::unsubscribe)); a splice nobody reads stays a pure
    /// translation. Not under `DATA_RDY`: an NF reading requests does not get responses. Read
    /// it with `view_as::<StreamDataEvent>(FLOW_TCP_BACKEND_DATA)`; bytes that will never come
    /// are a `FLOW/TCP/GAP` of direction 1.
    pub const FLOW_TCP_BACKEND_DATA: EventType = node(FLOW_TCP, 8);
    /// A UDP flow.
    pub const FLOW_UDP: EventType = node(FLOW, 2);
    /// The stack saw the first datagram of a UDP flow.
    pub const FLOW_UDP_NEW: EventType = node(FLOW_UDP, 1);
    /// A UDP flow ended; the event says why.
    pub const FLOW_UDP_TERMINATE: EventType = node(FLOW_UDP, 2);
    /// A QUIC connection's first flight was read (the seed's `FLOW/QUIC`, under `FLOW/UDP`):
    /// the server name and ALPN of the client's ClientHello, from its Initial packets
    /// decrypted as RFC 9001 says (or Google's cleartext hello). Once per flow, right after
    /// the datagram that completed it. A `FlowQuicEvent`.
    pub const FLOW_UDP_QUIC: EventType = node(FLOW_UDP, 3);
    /// A flow of another IP protocol (ICMP, GRE, ...), keyed by addresses and protocol.
    pub const FLOW_IP: EventType = node(FLOW, 3);
    /// The first packet of such a flow.
    pub const FLOW_IP_NEW: EventType = node(FLOW_IP, 1);
    /// Such a flow ended.
    pub const FLOW_IP_TERMINATE: EventType = node(FLOW_IP, 2);

    /// Results published by NFs.
    pub const ALERT: EventType = node(EventType::ROOT, 3);

    /// Every built-in type with its path, parents before children.
    pub const ALL: &[(&str, EventType)] = &[
        ("PKT", PKT),
        ("PKT/TCP", PKT_TCP),
        ("PKT/TCP/SYN", PKT_TCP_SYN),
        ("PKT/TCP/FIN", PKT_TCP_FIN),
        ("PKT/TCP/RST", PKT_TCP_RST),
        ("PKT/UDP", PKT_UDP),
        ("PKT/UDP/QUIC", PKT_UDP_QUIC),
        ("FLOW", FLOW),
        ("FLOW/TCP", FLOW_TCP),
        ("FLOW/TCP/NEW", FLOW_TCP_NEW),
        ("FLOW/TCP/TERMINATE", FLOW_TCP_TERMINATE),
        ("FLOW/TCP/DATA_RDY", FLOW_TCP_DATA_RDY),
        ("FLOW/TCP/GAP", FLOW_TCP_GAP),
        ("FLOW/TCP/STREAM_END", FLOW_TCP_STREAM_END),
        ("FLOW/TCP/SEND_ROOM", FLOW_TCP_SEND_ROOM),
        ("FLOW/TCP/BOUND", FLOW_TCP_BOUND),
        ("FLOW/TCP/BACKEND_DATA", FLOW_TCP_BACKEND_DATA),
        ("FLOW/UDP", FLOW_UDP),
        ("FLOW/UDP/NEW", FLOW_UDP_NEW),
        ("FLOW/UDP/TERMINATE", FLOW_UDP_TERMINATE),
        ("FLOW/UDP/QUIC", FLOW_UDP_QUIC),
        ("FLOW/IP", FLOW_IP),
        ("FLOW/IP/NEW", FLOW_IP_NEW),
        ("FLOW/IP/TERMINATE", FLOW_IP_TERMINATE),
        ("ALERT", ALERT),
    ];
}

#[cfg(test)]
mod tests {
    use super::builtin::*;
    use super::*;

    #[test]
    fn descendant_test_follows_the_paths() {
        assert!(PKT_TCP_SYN.is_a(PKT_TCP));
        assert!(PKT_TCP_SYN.is_a(PKT));
        assert!(PKT_TCP_SYN.is_a(EventType::ROOT));
        assert!(PKT_TCP.is_a(PKT_TCP));
        assert!(!PKT_TCP.is_a(PKT_TCP_SYN));
        assert!(!PKT_UDP.is_a(PKT_TCP));
        assert!(!FLOW_TCP.is_a(PKT));
        assert!(!PKT.is_a(FLOW));
        // Same child index under different parents must not match.
        assert!(!FLOW_TCP_NEW.is_a(PKT_TCP));
    }

    #[test]
    fn parent_and_child_round_trip() {
        assert_eq!(PKT_TCP_SYN.parent(), Some(PKT_TCP));
        assert_eq!(PKT.parent(), Some(EventType::ROOT));
        assert_eq!(EventType::ROOT.parent(), None);
        assert_eq!(PKT_TCP.child(1), Some(PKT_TCP_SYN));
        let mut t = EventType::ROOT;
        for _ in 0..MAX_DEPTH {
            t = t.child(255).unwrap();
        }
        assert_eq!(t.child(1), None);
        assert_eq!(t.depth(), MAX_DEPTH);
        assert!(t.is_a(EventType::ROOT.child(255).unwrap()));
    }

    #[test]
    fn raw_codes_are_validated() {
        for (_, t) in builtin::ALL {
            assert_eq!(EventType::from_raw(t.raw()), Some(*t));
        }
        assert_eq!(EventType::from_raw(8), None); // depth beyond the maximum
        assert_eq!(EventType::from_raw(1), None); // depth 1 but no component
        assert_eq!(EventType::from_raw(PKT.raw() | 0x0001_0000_0000_0000), None);
        // stray level
    }
}
