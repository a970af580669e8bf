//! The events NFs receive and publish: `#[repr(C)]` structs, each beginning with its parent's.
//!
//! An event of type `PKT/TCP/SYN` is laid out as a [`PktTcpEvent`], which begins with a
//! [`PktEvent`], which begins with an [`EventHeader`]. A subscriber of `PKT` can therefore read any
//! `PKT/*` event as a `PktEvent`: [`EventHeader::view`] checks the type and the size, then casts.
//! Events are read in place in the host's memory for the duration of a call; nothing is copied.

use crate::event_type::{builtin, EventType};
use abi_stable::StableAbi;
use core::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Direction of a packet: sent by the flow's originator (the sender of its first packet).
pub const DIR_ORIG: u8 = 0;
/// Direction of a packet: sent by the other side.
pub const DIR_REPLY: u8 = 1;
/// The event is not about one direction.
pub const DIR_NONE: u8 = 2;

/// Which flow an event belongs to.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct FlowRef {
    /// Unique for the whole run; 0 when the event belongs to no flow (ARP, malformed IP...).
    pub id: u64,
    /// Index of the flow in its shard's table: dense, so NFs can keep per-flow state in a
    /// `Vec` indexed by it. Reused after the flow's TERMINATE event.
    pub slot: u32,
    /// The stack shard that owns the flow.
    pub shard: u16,
    /// [`DIR_ORIG`], [`DIR_REPLY`] or [`DIR_NONE`].
    pub dir: u8,
    /// Read it with [`FlowRef::side`] (0 unless the flow is a split proxy's; named as it was
    /// before it had a use, so that plugins built before still load).
    pub _reserved: u8,
}

impl FlowRef {
    /// True when the event belongs to a flow.
    pub fn is_some(&self) -> bool {
        self.id != 0
    }

    /// Every flow of shard `shard`, present and future: for [`Host::unsubscribe`] and
    /// [`Host::subscribe`](crate::Host::subscribe) of a type for all of them at once.
    ///
    /// [`Host::unsubscribe`]: crate::Host::unsubscribe
    pub const fn every_flow(shard: u16) -> FlowRef {
        FlowRef { id: 0, slot: u32::MAX, shard, dir: DIR_NONE, _reserved: 0 }
    }

    /// True for [`FlowRef::every_flow`].
    pub fn is_every_flow(&self) -> bool {
        self.id == 0 && self.slot == u32::MAX
    }

    /// The same flow, direction `dir` (a split proxy's side to write: `DIR_ORIG` the client,
    /// `DIR_REPLY` the server).
    pub const fn toward(self, dir: u8) -> FlowRef {
        FlowRef { dir, ..self }
    }

    /// On a split proxy's events, which of the flow's binds the event is about: the binds are
    /// numbered from 1 (after 255, 1 again), and a server side's events (`DIR_REPLY` bytes and
    /// ends, `BOUND`) carry its bind's number, the client's events the latest bind's. An NF
    /// that binds again tells a late event of a server side it closed from the new one's by
    /// it. 0 on any other flow, and before the first bind.
    pub const fn side(&self) -> u8 {
        self._reserved
    }
}

/// What every event begins with.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
#[cfg(not(feature = "simulate-old-abi"))]
pub struct EventHeader {
    /// The event's type; the layout after the header is that of the type's struct.
    pub ty: EventType,
    /// Size in bytes of the whole event struct, header included.
    pub size: u32,
    /// 0 when the stack published the event, otherwise the publishing NF's number (1-based,
    /// in config order).
    pub publisher: u16,
    /// Reserved for the host; 0.
    pub flags: u16,
    /// Timestamp of the packet that caused the event, in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The flow the event belongs to.
    pub flow: FlowRef,
}

/// The header as an older ABI laid it out; exists only so a test can build a mismatched plugin.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
#[cfg(feature = "simulate-old-abi")]
pub struct EventHeader {
    pub ty: EventType,
    pub size: u32,
    pub publisher: u32,
    pub ts_ns: u64,
    pub flow: FlowRef,
}

/// Marks a struct that may be sent as an event.
///
/// # Safety
/// The implementing type must be `#[repr(C)]` and begin with an [`EventHeader`], directly or
/// through the struct of its parent type, and its `header().size` must be `size_of::<Self>()`.
pub unsafe trait Event: Sized {
    /// The header at the start of the event.
    fn header(&self) -> &EventHeader {
        // SAFETY: the trait's contract puts an EventHeader at offset 0.
        unsafe { &*(self as *const Self as *const EventHeader) }
    }
}

/// A built-in event struct and the type whose subtree it describes.
///
/// # Safety
/// Every event whose type is `TYPE` or below must begin with this struct's layout.
pub unsafe trait EventView: Event {
    /// The type (and subtree) this struct describes.
    const TYPE: EventType;
}

impl EventHeader {
    /// A header for an event of type `ty` whose struct is `T`.
    pub fn new<T: Event>(ty: EventType, ts_ns: u64, flow: FlowRef) -> EventHeader {
        EventHeader {
            ty,
            size: size_of::<T>() as u32,
            #[cfg(not(feature = "simulate-old-abi"))]
            publisher: 0,
            #[cfg(not(feature = "simulate-old-abi"))]
            flags: 0,
            #[cfg(feature = "simulate-old-abi")]
            publisher: 0,
            ts_ns,
            flow,
        }
    }

    /// Reads this event as the built-in struct `T` when its type lies in `T::TYPE`'s subtree.
    #[inline]
    pub fn view<T: EventView>(&self) -> Option<&T> {
        self.view_as(T::TYPE)
    }

    /// Reads this event as `T` when its type lies under `ty`: for NF-defined types, whose codes
    /// are assigned at load time (see `NfInit::type_of`).
    #[inline]
    pub fn view_as<T: Event>(&self, ty: EventType) -> Option<&T> {
        if self.ty.is_a(ty) && self.size as usize >= size_of::<T>() {
            // SAFETY: the host only delivers events whose struct begins with the layout of
            // every ancestor type's struct, and the size check keeps the read in bounds.
            Some(unsafe { &*(self as *const EventHeader as *const T) })
        } else {
            None
        }
    }

    /// True when the event's type is `ancestor` or lies below it.
    #[inline]
    pub fn is_a(&self, ancestor: EventType) -> bool {
        self.ty.is_a(ancestor)
    }
}

/// `PktEvent::pkt_flags`: the packet is an IP datagram reassembled from fragments. `data` holds
/// the reassembled datagram (starting at its IP header); `wire_len` and `ip_len` describe the
/// fragment that completed it.
pub const PKT_REASSEMBLED: u8 = 1;
/// `PktEvent::pkt_flags`: the addresses and ports are those of a tunnelled (inner) packet.
pub const PKT_TUNNELLED: u8 = 2;

/// `PKT`: a packet, with the offsets the stack found while parsing it.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct PktEvent {
    pub header: EventHeader,
    data: *const u8,
    /// Bytes available at `data`.
    pub cap_len: u32,
    /// Length of the frame on the wire (may exceed `cap_len` for truncated captures).
    pub wire_len: u32,
    /// Offset of the innermost IP header; equal to `cap_len` for non-IP packets.
    pub l3_offset: u32,
    /// Offset of the TCP/UDP header (or of the IP payload for other protocols).
    pub l4_offset: u32,
    /// Offset of the L4 payload.
    pub payload_offset: u32,
    /// The innermost IP header's declared length (IPv4 Total Length, IPv6 Payload Length + 40).
    pub ip_len: u32,
    /// L4 payload length declared by the headers; the captured part may be shorter.
    pub payload_len: u32,
    /// Port (interface) the packet came in on.
    pub port: u16,
    /// Outermost VLAN ID, 0 when untagged.
    pub vlan: u16,
    pub src_port: u16,
    pub dst_port: u16,
    /// 4 or 6; 0 for non-IP packets.
    pub ip_version: u8,
    /// IP protocol number of the innermost header (6 TCP, 17 UDP, ...).
    pub ip_proto: u8,
    /// TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20); 0 otherwise.
    pub tcp_flags: u8,
    /// [`PKT_REASSEMBLED`], [`PKT_TUNNELLED`].
    pub pkt_flags: u8,
    /// How `bytes()` is framed: the pcap LINKTYPE (1 Ethernet, 113 Linux SLL, 101 raw IP, ...;
    /// for a reassembled datagram 228 or 229, raw IPv4 or IPv6).
    pub link_type: u16,
    #[cfg(not(feature = "simulate-event-layout-change"))]
    pub _reserved: [u8; 6],
    /// The same bytes typed otherwise: a layout change in an event struct the root module does
    /// not reach, for the test that the load-time check covers event structs too.
    #[cfg(feature = "simulate-event-layout-change")]
    pub _reserved: [u16; 3],
}

unsafe impl Event for PktEvent {}
unsafe impl EventView for PktEvent {
    const TYPE: EventType = builtin::PKT;
}

impl PktEvent {
    /// A packet event over `data`, which must stay valid while the event is in flight.
    pub fn new(header: EventHeader, data: &[u8]) -> PktEvent {
        PktEvent {
            header,
            data: data.as_ptr(),
            cap_len: data.len() as u32,
            wire_len: data.len() as u32,
            l3_offset: data.len() as u32,
            l4_offset: data.len() as u32,
            payload_offset: data.len() as u32,
            ip_len: 0,
            payload_len: 0,
            port: 0,
            vlan: 0,
            src_port: 0,
            dst_port: 0,
            ip_version: 0,
            ip_proto: 0,
            tcp_flags: 0,
            pkt_flags: 0,
            link_type: 1,
            #[cfg(not(feature = "simulate-event-layout-change"))]
            _reserved: [0; 6],
            #[cfg(feature = "simulate-event-layout-change")]
            _reserved: [0; 3],
        }
    }

    /// Forgets the packet bytes (the event then has none): the host does this to events of
    /// `PKT` types that NFs publish, whose pointers it cannot keep alive.
    pub fn detach_bytes(&mut self) {
        self.data = core::ptr::NonNull::<u8>::dangling().as_ptr();
        self.cap_len = 0;
    }

    /// The captured bytes of the packet, from its link-layer header on.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the host keeps the packet's memory alive and unchanged until every NF that
        // received the event has returned from the call; the borrow cannot outlive that call.
        unsafe { core::slice::from_raw_parts(self.data, self.cap_len as usize) }
    }

    /// The captured part of the L4 payload (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        let bytes = self.bytes();
        let start = (self.payload_offset as usize).min(bytes.len());
        let end = start.saturating_add(self.payload_len as usize).min(bytes.len());
        &bytes[start..end]
    }

    /// The innermost IP header and what follows it.
    pub fn l3(&self) -> &[u8] {
        let bytes = self.bytes();
        &bytes[(self.l3_offset as usize).min(bytes.len())..]
    }

    /// Source address of the innermost IP header.
    pub fn src_addr(&self) -> Option<IpAddr> {
        ip_addr(self.l3(), self.ip_version, true)
    }

    /// Destination address of the innermost IP header.
    pub fn dst_addr(&self) -> Option<IpAddr> {
        ip_addr(self.l3(), self.ip_version, false)
    }
}

fn ip_addr(l3: &[u8], version: u8, source: bool) -> Option<IpAddr> {
    match version {
        4 => {
            let at = if source { 12 } else { 16 };
            let b: [u8; 4] = l3.get(at..at + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let at = if source { 8 } else { 24 };
            let b: [u8; 16] = l3.get(at..at + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// TCP states of one side of a connection, as the monitor infers them (RFC 9293 names).
pub mod tcp_state {
    pub const CLOSED: u8 = 0;
    pub const LISTEN: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECEIVED: u8 = 3;
    pub const ESTABLISHED: u8 = 4;
    pub const FIN_WAIT_1: u8 = 5;
    pub const FIN_WAIT_2: u8 = 6;
    pub const CLOSING: u8 = 7;
    pub const TIME_WAIT: u8 = 8;
    pub const CLOSE_WAIT: u8 = 9;
    pub const LAST_ACK: u8 = 10;

    /// The state's name, as logs print it.
    pub fn name(state: u8) -> &'static str {
        match state {
            CLOSED => "closed",
            LISTEN => "listen",
            SYN_SENT => "syn_sent",
            SYN_RECEIVED => "syn_received",
            ESTABLISHED => "established",
            FIN_WAIT_1 => "fin_wait_1",
            FIN_WAIT_2 => "fin_wait_2",
            CLOSING => "closing",
            TIME_WAIT => "time_wait",
            CLOSE_WAIT => "close_wait",
            LAST_ACK => "last_ack",
            _ => "unknown",
        }
    }
}

/// One side of a TCP connection as the monitor sees it (index 0: the flow's originator).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct TcpSideSnapshot {
    /// One of the [`tcp_state`] constants.
    pub state: u8,
    /// Window scale shift this side announced, or 0xff when it announced none.
    pub wscale: u8,
    pub _reserved: [u8; 2],
    /// Initial sequence number (when the SYN was seen; else the first sequence number seen).
    pub isn: u32,
    /// The next sequence number this side will send (highest seen + length).
    pub next_seq: u32,
    /// The last acknowledgment number this side sent.
    pub ack: u32,
    /// The receive window this side last advertised, scaled when both sides agreed a scale.
    pub window: u32,
    /// Retransmitted segments this side sent.
    pub retransmissions: u32,
    /// Bytes of this side's stream accounted for so far (delivered plus gaps).
    pub stream_bytes: u64,
}

/// `TcpSnapshot::flags`: the connection was picked up without seeing its handshake.
pub const TCP_MIDSTREAM: u32 = 1;
/// `TcpSnapshot::flags`: both sides sent a SYN without ACK (simultaneous open).
pub const TCP_SIMULTANEOUS_OPEN: u32 = 2;
/// `TcpSnapshot::flags`: the segment this snapshot is about repeated bytes already sent.
pub const TCP_SEG_RETRANSMISSION: u32 = 4;
/// `TcpSnapshot::flags`: the segment this snapshot is about arrived beyond a hole.
pub const TCP_SEG_OUT_OF_ORDER: u32 = 8;

/// The TCP monitor's view of a connection as of one packet: events carry a copy, so an NF that
/// lags behind still sees a consistent state while the stack moves on.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct TcpSnapshot {
    /// Index 0: the flow's originator; 1: the other side.
    pub sides: [TcpSideSnapshot; 2],
    /// `TCP_*` flags.
    pub flags: u32,
    pub _reserved: u32,
}

/// `PKT/TCP`: a TCP segment, and the connection's state after it.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct PktTcpEvent {
    pub pkt: PktEvent,
    pub seq: u32,
    pub ack: u32,
    /// The raw window field (unscaled).
    pub window: u16,
    pub _reserved: u16,
    /// All zero when nobody needs TCP state (the monitor does not run then).
    pub snapshot: TcpSnapshot,
}

unsafe impl Event for PktTcpEvent {}
unsafe impl EventView for PktTcpEvent {
    const TYPE: EventType = builtin::PKT_TCP;
}

/// `PktQuicEvent::packet_type`: the datagram's first QUIC packet is an Initial.
pub const QUIC_INITIAL: u8 = 1;
/// A 0-RTT packet.
pub const QUIC_ZERO_RTT: u8 = 2;
/// A Handshake packet.
pub const QUIC_HANDSHAKE: u8 = 3;
/// A Retry.
pub const QUIC_RETRY: u8 = 4;
/// A version negotiation (version 0: the server's list of versions).
pub const QUIC_VERSION_NEGOTIATION: u8 = 5;
/// A short header (1-RTT): its destination connection ID is as long as the one its receiver
/// gave in its long headers; it has no source connection ID.
pub const QUIC_SHORT: u8 = 6;

/// The name of a `QUIC_*` packet type (`"?"` for another value).
pub fn quic_packet_type_name(packet_type: u8) -> &'static str {
    match packet_type {
        QUIC_INITIAL => "initial",
        QUIC_ZERO_RTT => "0rtt",
        QUIC_HANDSHAKE => "handshake",
        QUIC_RETRY => "retry",
        QUIC_VERSION_NEGOTIATION => "version_negotiation",
        QUIC_SHORT => "short",
        _ => "?",
    }
}

/// Connection IDs are at most 20 bytes (RFC 9000 section 17.2); longer ones (Google's own
/// versions, version negotiation) are cut to this in a [`PktQuicEvent`], their length kept.
pub const QUIC_MAX_CID: usize = 20;

/// `PKT/UDP/QUIC`: a UDP datagram that begins with a QUIC packet, and what its header says.
/// Coalesced packets after the first are not described (their bytes are in the datagram).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct PktQuicEvent {
    pub pkt: PktEvent,
    pub quic: QuicHeader,
}

/// What a QUIC packet's header says, as a [`PktQuicEvent`] carries it.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct QuicHeader {
    /// The long header's version; for a short header, the last version the flow's long
    /// headers named.
    pub version: u32,
    /// `QUIC_*`.
    pub packet_type: u8,
    /// Connection ID lengths as the header gives them (a short header has no source ID: 0);
    /// the IDs' first [`QUIC_MAX_CID`] bytes are in `dcid` and `scid`.
    pub dcid_len: u8,
    pub scid_len: u8,
    pub _reserved: u8,
    pub dcid: [u8; QUIC_MAX_CID],
    pub scid: [u8; QUIC_MAX_CID],
}

unsafe impl Event for PktQuicEvent {}
unsafe impl EventView for PktQuicEvent {
    const TYPE: EventType = builtin::PKT_UDP_QUIC;
}

impl QuicHeader {
    /// The destination connection ID (as much of it as the event holds).
    pub fn dcid(&self) -> &[u8] {
        &self.dcid[..usize::from(self.dcid_len).min(QUIC_MAX_CID)]
    }

    /// The source connection ID (as much of it as the event holds).
    pub fn scid(&self) -> &[u8] {
        &self.scid[..usize::from(self.scid_len).min(QUIC_MAX_CID)]
    }
}

/// `FlowEvent::reason`: the event is not a termination.
pub const REASON_NONE: u8 = 0;
/// Closed by FIN in both directions, then idle past the close linger time.
pub const REASON_FIN: u8 = 1;
/// Reset, then idle past the close linger time.
pub const REASON_RST: u8 = 2;
/// No packet within the idle timeout.
pub const REASON_TIMEOUT: u8 = 3;
/// Evicted to make room in a full flow table.
pub const REASON_EVICTED: u8 = 4;
/// The input ended (end of a capture or shutdown) while the flow was open.
pub const REASON_END_OF_INPUT: u8 = 5;

/// `FLOW/TCP/BOUND`'s `reason`: the backend took the held bytes; the connection is spliced.
pub const BIND_CONNECTED: u8 = 1;
/// The backend answered mbox's SYN with a RST (nothing listens there).
pub const BIND_REFUSED: u8 = 2;
/// The backend did not answer mbox's SYN within the service's `connect_timeout`.
pub const BIND_TIMED_OUT: u8 = 3;
/// The backend's MAC address could not be found (no ARP reply within `connect_timeout`).
pub const BIND_UNRESOLVED: u8 = 4;
/// The backend answered but did not take the held bytes (it reset, or stopped answering).
pub const BIND_LOST: u8 = 5;
/// mbox could not carry the bind out (another address family than the service's `source`,
/// no source port free).
pub const BIND_NOT_DONE: u8 = 6;

/// Whether a `FLOW/TCP/BOUND` reason counts against the backend's health (all but
/// [`BIND_CONNECTED`] and [`BIND_NOT_DONE`], which is mbox's, not the backend's).
pub fn bind_failed(reason: u8) -> bool {
    !matches!(reason, BIND_CONNECTED | BIND_NOT_DONE)
}

/// Name of a termination reason, as logs print it.
pub fn reason_name(reason: u8) -> &'static str {
    match reason {
        REASON_NONE => "none",
        REASON_FIN => "fin",
        REASON_RST => "rst",
        REASON_TIMEOUT => "timeout",
        REASON_EVICTED => "evicted",
        REASON_END_OF_INPUT => "end_of_input",
        _ => "unknown",
    }
}

/// Addresses, ports and protocol of a flow; index 0 is the originator (sender of the first
/// packet), index 1 the other side.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct FlowTuple {
    /// 4 or 6.
    pub ip_version: u8,
    pub ip_proto: u8,
    /// Outermost VLAN ID of the first packet (0 when untagged).
    pub vlan: u16,
    pub ports: [u16; 2],
    /// IPv4 addresses use the first 4 bytes.
    pub addrs: [[u8; 16]; 2],
}

impl FlowTuple {
    /// The tuple of a flow between `addrs[0]:ports[0]` (the originator) and `addrs[1]:ports[1]`
    /// (both of one IP version; a mixed pair is taken as IPv6).
    pub fn new(ip_proto: u8, vlan: u16, addrs: [IpAddr; 2], ports: [u16; 2]) -> FlowTuple {
        let v4 = addrs.iter().all(IpAddr::is_ipv4);
        let bytes = |a: IpAddr| -> [u8; 16] {
            match a {
                IpAddr::V4(v) if v4 => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&v.octets());
                    b
                }
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                IpAddr::V6(v) => v.octets(),
            }
        };
        FlowTuple { ip_version: if v4 { 4 } else { 6 }, ip_proto, vlan, ports, addrs: [bytes(addrs[0]), bytes(addrs[1])] }
    }

    /// The address of side `i` (0 originator, 1 responder).
    pub fn addr(&self, i: usize) -> IpAddr {
        if self.ip_version == 4 {
            let a = &self.addrs[i];
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addrs[i]))
        }
    }
}

/// What the stack counted in one direction of a flow.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct DirStats {
    pub pkts: u64,
    /// Sum of frame lengths on the wire (link header included).
    pub frame_bytes: u64,
    /// Sum of the innermost IP header's declared lengths.
    pub ip_bytes: u64,
    /// Sum of declared L4 payload lengths.
    pub payload_bytes: u64,
    /// Timestamps of the first and last packet in this direction (ns; 0 when none).
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    /// OR of the TCP flags seen.
    pub tcp_flags: u8,
    pub _reserved: [u8; 7],
}

/// `FLOW` and every `FLOW/*` event.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct FlowEvent {
    pub header: EventHeader,
    pub tuple: FlowTuple,
    /// Index 0: sent by the originator; 1: sent by the responder.
    pub stats: [DirStats; 2],
    /// For `*/TERMINATE`: one of the `REASON_*` constants.
    pub reason: u8,
    pub _reserved: [u8; 7],
}

unsafe impl Event for FlowEvent {}
unsafe impl EventView for FlowEvent {
    const TYPE: EventType = builtin::FLOW;
}

/// `FlowQuicEvent::flags`: the first flight held a ClientHello, read: `sni` and `alpn` are
/// its. Without it the flight was QUIC but could not be read (a version whose Initials have
/// keys mbox does not know, a flight that does not parse, or too many flights waiting at
/// once), and both are empty.
pub const QUIC_HELLO_READ: u8 = 1;

/// `FLOW/UDP/QUIC`: what the client's first flight of a QUIC connection said.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct FlowQuicEvent {
    pub flow: FlowEvent,
    /// The version of the client's long headers (0 for Google's public header, which does not
    /// name it where mbox reads it).
    pub version: u32,
    /// Lengths of the server name and of the ALPN list at `data`.
    pub sni_len: u16,
    pub alpn_len: u16,
    /// The server name, then the ALPN protocols as the hello lists them (each a length byte
    /// and the name): read with [`FlowQuicEvent::sni`] and [`FlowQuicEvent::alpn`].
    data: *const u8,
    /// [`QUIC_HELLO_READ`].
    pub flags: u8,
    pub _reserved: [u8; 7],
}

unsafe impl Event for FlowQuicEvent {}
unsafe impl EventView for FlowQuicEvent {
    const TYPE: EventType = builtin::FLOW_UDP_QUIC;
}

impl FlowQuicEvent {
    /// An event over `bytes` (the server name, then `alpn_len` bytes of ALPN list), which must
    /// stay valid while the event is in flight.
    pub fn new(flow: FlowEvent, version: u32, flags: u8, bytes: &[u8], sni_len: u16) -> FlowQuicEvent {
        let sni_len = sni_len.min(bytes.len() as u16);
        let alpn_len = (bytes.len() - usize::from(sni_len)).min(usize::from(u16::MAX)) as u16;
        FlowQuicEvent { flow, version, sni_len, alpn_len, data: bytes.as_ptr(), flags, _reserved: [0; 7] }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: as for `PktEvent::bytes`: the host keeps the bytes alive and unchanged until
        // every NF that received the event has returned from the call.
        unsafe { core::slice::from_raw_parts(self.data, usize::from(self.sni_len) + usize::from(self.alpn_len)) }
    }

    /// The server name the ClientHello asked for (empty when it named none).
    pub fn sni(&self) -> &[u8] {
        &self.bytes()[..usize::from(self.sni_len)]
    }

    /// The ALPN protocols the ClientHello offered, in its order.
    pub fn alpn(&self) -> impl Iterator<Item = &[u8]> {
        let mut list = &self.bytes()[usize::from(self.sni_len)..];
        core::iter::from_fn(move || {
            let (&len, rest) = list.split_first()?;
            let name = rest.get(..usize::from(len))?;
            list = &rest[usize::from(len)..];
            Some(name)
        })
    }
}

/// `FLOW/TCP` and every `FLOW/TCP/*` event: a flow event and the connection's state.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct FlowTcpEvent {
    pub flow: FlowEvent,
    /// All zero when the TCP monitor does not run (see `[tcp] monitor` in docs/config.md).
    pub snapshot: TcpSnapshot,
}

unsafe impl Event for FlowTcpEvent {}
unsafe impl EventView for FlowTcpEvent {
    const TYPE: EventType = builtin::FLOW_TCP;
}

/// `FLOW/TCP/DATA_RDY`: bytes `[offset, offset + len)` of one direction's stream
/// (`header.flow.dir`), read in place with [`StreamDataEvent::bytes`]. Offsets count from the
/// stream's first byte and include gaps, so consecutive events of a direction are contiguous
/// unless a `FLOW/TCP/GAP` (or a lost event, see `kit::StreamCursor`) lies between them.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct StreamDataEvent {
    pub tcp: FlowTcpEvent,
    data: *const u8,
    pub offset: u64,
    pub len: u32,
    pub _reserved: u32,
}

unsafe impl Event for StreamDataEvent {}
unsafe impl EventView for StreamDataEvent {
    const TYPE: EventType = builtin::FLOW_TCP_DATA_RDY;
}

impl StreamDataEvent {
    /// A data event over `bytes`, which must stay valid while the event is in flight.
    pub fn new(tcp: FlowTcpEvent, offset: u64, bytes: &[u8]) -> StreamDataEvent {
        StreamDataEvent { tcp, data: bytes.as_ptr(), offset, len: bytes.len() as u32, _reserved: 0 }
    }

    /// The stream bytes this event announces.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as for `PktEvent::bytes`: the host keeps the bytes alive and unchanged until
        // every NF that received the event has returned from the call.
        unsafe { core::slice::from_raw_parts(self.data, self.len as usize) }
    }

    /// Forgets the bytes (see `PktEvent::detach_bytes`).
    pub fn detach_bytes(&mut self) {
        self.data = core::ptr::NonNull::<u8>::dangling().as_ptr();
        self.len = 0;
    }
}

/// `StreamGapEvent::reason`: the receiver acknowledged data the capture never held.
pub const GAP_NOT_CAPTURED: u8 = 1;
/// The capture holds only part of a segment (snaplen).
pub const GAP_TRUNCATED: u8 = 2;
/// Data beyond a hole could not be kept (the per-flow or per-shard bound on held segments).
pub const GAP_MEMORY: u8 = 3;
/// The flow ended with a hole before data that had arrived.
pub const GAP_AT_END: u8 = 4;

/// Name of a gap reason, as logs print it.
pub fn gap_reason_name(reason: u8) -> &'static str {
    match reason {
        GAP_NOT_CAPTURED => "not_captured",
        GAP_TRUNCATED => "truncated",
        GAP_MEMORY => "memory",
        GAP_AT_END => "at_end",
        _ => "unknown",
    }
}

/// `FLOW/TCP/GAP`: bytes `[offset, offset + len)` of one direction's stream are missing for good.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct StreamGapEvent {
    pub tcp: FlowTcpEvent,
    pub offset: u64,
    pub len: u64,
    /// One of the `GAP_*` constants.
    pub reason: u8,
    pub _reserved: [u8; 7],
}

unsafe impl Event for StreamGapEvent {}
unsafe impl EventView for StreamGapEvent {
    const TYPE: EventType = builtin::FLOW_TCP_GAP;
}

/// `StreamEndEvent::reason`: the stream reached its FIN.
pub const END_FIN: u8 = 1;
/// The connection was reset (an RST at exactly the sequence number its receiver expects).
pub const END_RST: u8 = 2;

/// Name of a stream end's reason, as logs print it.
pub fn end_reason_name(reason: u8) -> &'static str {
    match reason {
        END_FIN => "fin",
        END_RST => "rst",
        _ => "unknown",
    }
}

/// `FLOW/TCP/STREAM_END`: direction `header.flow.dir`'s stream reached its end at `offset`
/// bytes (data and gaps), once per direction: NFs can decide what they kept for it and let it
/// go without waiting for the flow's `TERMINATE` (which comes only after the close linger
/// time). Bytes may still follow (see `builtin::FLOW_TCP_STREAM_END`).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct StreamEndEvent {
    pub tcp: FlowTcpEvent,
    pub offset: u64,
    /// [`END_FIN`] or [`END_RST`].
    pub reason: u8,
    pub _reserved: [u8; 7],
}

unsafe impl Event for StreamEndEvent {}
unsafe impl EventView for StreamEndEvent {
    const TYPE: EventType = builtin::FLOW_TCP_STREAM_END;
}

/// Longest message an [`AlertEvent`] carries; longer ones are cut at a character boundary.
pub const ALERT_MSG_MAX: usize = 120;

/// `ALERT`: a finding published by an NF.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct AlertEvent {
    pub header: EventHeader,
    /// Rule or signature number, NF-defined.
    pub id: u32,
    /// 1 (highest) to 255.
    pub severity: u8,
    msg_len: u8,
    pub _reserved: [u8; 2],
    msg: [u8; ALERT_MSG_MAX],
}

unsafe impl Event for AlertEvent {}
unsafe impl EventView for AlertEvent {
    const TYPE: EventType = builtin::ALERT;
}

impl AlertEvent {
    /// An alert of type `ty` (ALERT or below) about the flow and time of `cause`.
    pub fn new<T: Event>(ty: EventType, cause: &EventHeader, id: u32, severity: u8, msg: &str) -> AlertEvent {
        let mut cut = msg.len().min(ALERT_MSG_MAX);
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut buf = [0u8; ALERT_MSG_MAX];
        buf[..cut].copy_from_slice(&msg.as_bytes()[..cut]);
        AlertEvent {
            header: EventHeader::new::<T>(ty, cause.ts_ns, cause.flow),
            id,
            severity,
            msg_len: cut as u8,
            _reserved: [0; 2],
            msg: buf,
        }
    }

    /// The message (empty if a publisher wrote invalid UTF-8).
    pub fn message(&self) -> &str {
        let len = (self.msg_len as usize).min(ALERT_MSG_MAX);
        core::str::from_utf8(&self.msg[..len]).unwrap_or("")
    }
}

/// Application protocols, as NFs that classify flows or match signatures name them.
pub mod app {
    pub const UNKNOWN: u8 = 0;
    pub const HTTP: u8 = 1;
    pub const TLS: u8 = 2;
    pub const SSH: u8 = 3;
    pub const SMTP: u8 = 4;
    pub const IMAP: u8 = 5;
    pub const POP3: u8 = 6;
    pub const FTP: u8 = 7;
    pub const DNS: u8 = 8;
    pub const BITTORRENT: u8 = 9;
    pub const QUIC: u8 = 10;
    /// SMTP, IMAP and POP3 over TLS (implicit, or after STARTTLS/STLS).
    pub const SMTPS: u8 = 11;
    pub const IMAPS: u8 = 12;
    pub const POPS: u8 = 13;
    /// DNS-format name resolution on the local link.
    pub const MDNS: u8 = 14;
    pub const LLMNR: u8 = 15;
    pub const SSDP: u8 = 16;
    pub const NETBIOS: u8 = 17;
    pub const DHCP: u8 = 18;
    pub const DHCPV6: u8 = 19;
    pub const STUN: u8 = 20;
    pub const NTP: u8 = 21;
    /// HTTP to a proxy: a request for an absolute URI (`GET http://...`), or to a proxy port
    /// (8080, 3128) where the content said nothing more.
    pub const HTTP_PROXY: u8 = 22;
    /// HTTP's `CONNECT`: a tunnel through a proxy.
    pub const HTTP_CONNECT: u8 = 23;

    /// Every protocol, for tables.
    pub const ALL: [u8; 24] = [
        UNKNOWN,
        HTTP,
        TLS,
        SSH,
        SMTP,
        IMAP,
        POP3,
        FTP,
        DNS,
        BITTORRENT,
        QUIC,
        SMTPS,
        IMAPS,
        POPS,
        MDNS,
        LLMNR,
        SSDP,
        NETBIOS,
        DHCP,
        DHCPV6,
        STUN,
        NTP,
        HTTP_PROXY,
        HTTP_CONNECT,
    ];

    /// The protocol's name as logs print it (Suricata's `app_proto` names where they exist).
    pub fn name(app: u8) -> &'static str {
        match app {
            HTTP => "http",
            TLS => "tls",
            SSH => "ssh",
            SMTP => "smtp",
            IMAP => "imap",
            POP3 => "pop3",
            FTP => "ftp",
            DNS => "dns",
            BITTORRENT => "bittorrent",
            QUIC => "quic",
            SMTPS => "smtps",
            IMAPS => "imaps",
            POPS => "pops",
            MDNS => "mdns",
            LLMNR => "llmnr",
            SSDP => "ssdp",
            NETBIOS => "netbios",
            DHCP => "dhcp",
            DHCPV6 => "dhcpv6",
            STUN => "stun",
            NTP => "ntp",
            HTTP_PROXY => "http_proxy",
            HTTP_CONNECT => "http_connect",
            _ => "unknown",
        }
    }
}

/// The type path under which flow classifications are published.
pub const FLOW_TYPE_PATH: &str = "FLOW/TYPE";

/// `FlowTypeEvent::confidence`: the content identified the protocol.
pub const CONFIDENCE_DPI: u8 = 1;
/// The flow carried too little to tell; the protocol is the one its port is registered for.
pub const CONFIDENCE_PORT: u8 = 2;

/// Longest host name or SNI a [`FlowTypeEvent`] carries.
pub const FLOW_TYPE_HOST_MAX: usize = 64;

/// `FLOW/TYPE`: a flow's application protocol, once known (published by a classifier NF).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct FlowTypeEvent {
    pub flow: FlowEvent,
    /// `app::*`.
    pub app: u8,
    /// `CONFIDENCE_*`.
    pub confidence: u8,
    host_len: u8,
    pub _reserved: [u8; 5],
    /// The HTTP host or the TLS server name, when the protocol has one.
    host: [u8; FLOW_TYPE_HOST_MAX],
}

// SAFETY: repr(C), begins with FlowEvent (which begins with EventHeader); the classifier sets
// the header's size from this type.
unsafe impl Event for FlowTypeEvent {}

impl FlowTypeEvent {
    /// A classification of the flow `flow` describes (its header's type set to `ty`).
    pub fn new(ty: EventType, flow: &FlowEvent, app: u8, confidence: u8, host: &[u8]) -> FlowTypeEvent {
        let mut ev = FlowTypeEvent { flow: *flow, app, confidence, host_len: 0, _reserved: [0; 5], host: [0; FLOW_TYPE_HOST_MAX] };
        ev.flow.header.ty = ty;
        ev.flow.header.size = size_of::<FlowTypeEvent>() as u32;
        ev.flow.header.publisher = 0;
        let n = host.len().min(FLOW_TYPE_HOST_MAX);
        ev.host[..n].copy_from_slice(&host[..n]);
        ev.host_len = n as u8;
        ev
    }

    /// The host name or server name (possibly cut to [`FLOW_TYPE_HOST_MAX`] bytes).
    pub fn host(&self) -> &[u8] {
        &self.host[..usize::from(self.host_len).min(FLOW_TYPE_HOST_MAX)]
    }
}

/// The type path under which signature matches are published.
pub const SIG_MATCH_PATH: &str = "ALERT/SIG_MATCH";

/// `ALERT/SIG_MATCH`: a signature matched. The alert's `id` is the rule's sid and its message
/// the rule's `msg`; the rest is what a log line about it needs without tracking the flow.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct SigMatchEvent {
    pub alert: AlertEvent,
    /// The flow, originator (client) first.
    pub tuple: FlowTuple,
    pub rev: u32,
    /// Direction of the data that matched: 0 from the originator (to the server), 1 back.
    pub dir: u8,
    /// The flow's application protocol as the matcher saw it (`app::*`).
    pub app_proto: u8,
    pub _reserved: [u8; 2],
    /// Where the match ended in that direction's stream (bytes from its start); for a TCP
    /// packet rule, where the packet ends in it; 0 for a datagram.
    pub stream_offset: u64,
    /// Time of the flow's first packet (ns since the epoch).
    pub flow_start_ns: u64,
}

// SAFETY: repr(C), begins with AlertEvent (which begins with EventHeader); its header's size is
// set from this type by `AlertEvent::new::<SigMatchEvent>`.
unsafe impl Event for SigMatchEvent {}

/// Size of the largest event the host carries; published events must fit.
pub const MAX_EVENT_SIZE: usize = 320;

const _: () = assert!(size_of::<PktTcpEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<PktQuicEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<FlowQuicEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<StreamDataEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<StreamGapEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<StreamEndEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<FlowEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<SigMatchEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<FlowTypeEvent>() <= MAX_EVENT_SIZE);
const _: () = assert!(size_of::<AlertEvent>() <= MAX_EVENT_SIZE);

/// The struct size every event of a built-in type must have at least, by type.
pub fn builtin_min_size(ty: EventType) -> usize {
    if ty.is_a(builtin::PKT_TCP) {
        size_of::<PktTcpEvent>()
    } else if ty.is_a(builtin::PKT_UDP_QUIC) {
        size_of::<PktQuicEvent>()
    } else if ty.is_a(builtin::PKT) {
        size_of::<PktEvent>()
    } else if ty.is_a(builtin::FLOW_TCP_DATA_RDY) || ty.is_a(builtin::FLOW_TCP_BACKEND_DATA) {
        size_of::<StreamDataEvent>()
    } else if ty.is_a(builtin::FLOW_TCP_GAP) {
        size_of::<StreamGapEvent>()
    } else if ty.is_a(builtin::FLOW_TCP_STREAM_END) {
        size_of::<StreamEndEvent>()
    } else if ty.is_a(builtin::FLOW_TCP) {
        size_of::<FlowTcpEvent>()
    } else if ty.is_a(builtin::FLOW_UDP_QUIC) {
        size_of::<FlowQuicEvent>()
    } else if ty.is_a(builtin::FLOW) {
        size_of::<FlowEvent>()
    } else if ty.is_a(builtin::ALERT) {
        size_of::<AlertEvent>()
    } else {
        size_of::<EventHeader>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_check_type_and_size() {
        let data = [0u8; 60];
        let hdr = EventHeader::new::<PktTcpEvent>(builtin::PKT_TCP_SYN, 7, FlowRef::default());
        let ev = PktTcpEvent { pkt: PktEvent::new(hdr, &data), seq: 1, ack: 2, window: 3, _reserved: 0, snapshot: TcpSnapshot::default() };
        let h = ev.header();
        assert!(h.view::<PktEvent>().is_some());
        assert_eq!(h.view::<PktTcpEvent>().unwrap().seq, 1);
        assert!(h.view::<FlowEvent>().is_none());
        // A PKT/TCP-typed event that claims a short size cannot be read as a PktTcpEvent.
        let mut short = ev;
        short.pkt.header.size = size_of::<PktEvent>() as u32;
        assert!(short.header().view::<PktTcpEvent>().is_none());
        assert!(short.header().view::<PktEvent>().is_some());
    }

    #[test]
    fn alert_messages_are_cut_on_char_boundaries() {
        let cause = EventHeader::new::<AlertEvent>(builtin::ALERT, 1, FlowRef::default());
        let long = "é".repeat(100);
        let a = AlertEvent::new::<AlertEvent>(builtin::ALERT, &cause, 9, 1, &long);
        assert_eq!(a.message().len(), 120);
        assert!(a.message().chars().all(|c| c == 'é'));
        let b = AlertEvent::new::<AlertEvent>(builtin::ALERT, &cause, 9, 1, "short");
        assert_eq!(b.message(), "short");
    }
}
