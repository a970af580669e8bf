//! Protocol numbers NF authors compare against: IP protocol numbers (IANA "Assigned Internet
//! Protocol Numbers") and the TCP header's flag bits (RFC 9293 3.1, RFC 3168 for ECE and CWR).
//! The host's own parser uses these same constants, so an NF and the stack cannot disagree.

/// IP protocol numbers (IPv4 Protocol, IPv6 Next Header), as in [`crate::FlowTuple::ip_proto`]
/// and [`crate::PacketEvent::ip_proto`].
pub mod ip_proto {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    /// IPv4 in IP (RFC 2003).
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv6 in IP (RFC 2473).
    pub const IPV6: u8 = 41;
    pub const IPV6_ROUTING: u8 = 43;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NO_NEXT: u8 = 59;
    pub const IPV6_DEST_OPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

/// TCP flag bits of the header's 14th byte, as in [`crate::PacketEvent::tcp_flags`].
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}
