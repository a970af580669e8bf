//! ARP for IPv4 over Ethernet (RFC 826; the diagram is in `docs/wire.md`): what mbox needs to
//! answer who-has requests for the addresses it serves and to learn its peers' MACs.

use super::ethernet::{ethertype, EthernetAddress};
use super::{get16, put16, WireError};
use std::net::Ipv4Addr;

/// Bytes of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

const HARDWARE_ETHERNET: u16 = 1;

/// ARP operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
}

impl Operation {
    #[inline]
    fn code(self) -> u16 {
        match self {
            Operation::Request => 1,
            Operation::Reply => 2,
        }
    }
}

/// A buffer holding an ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    #[inline]
    /// Wraps `buffer` once it holds the fixed part and the addresses its lengths declare.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < 8 {
            return Err(WireError::Truncated("ARP packet"));
        }
        let addrs = 2 * (usize::from(b[4]) + usize::from(b[5]));
        if b.len() < 8 + addrs {
            return Err(WireError::Truncated("ARP packet"));
        }
        Ok(ArpPacket { buffer })
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        get16(self.buffer.as_ref(), 0)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        get16(self.buffer.as_ref(), 2)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[4]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[5]
    }

    #[inline]
    pub fn operation(&self) -> u16 {
        get16(self.buffer.as_ref(), 6)
    }

    #[inline]
    /// The sender's and target's addresses, valid for Ethernet/IPv4 only (lengths 6 and 4).
    fn eth_at(&self, at: usize) -> EthernetAddress {
        let b = self.buffer.as_ref();
        EthernetAddress([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]])
    }

    #[inline]
    fn ip_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    fn put_eth(&mut self, at: usize, addr: EthernetAddress) {
        self.buffer.as_mut()[at..at + 6].copy_from_slice(&addr.0);
    }

    #[inline]
    fn put_ip(&mut self, at: usize, addr: Ipv4Addr) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&addr.octets());
    }
}

/// An Ethernet/IPv4 ARP packet as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: Operation,
    pub sender_mac: EthernetAddress,
    pub sender_ip: Ipv4Addr,
    pub target_mac: EthernetAddress,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    #[inline]
    /// Reads an Ethernet/IPv4 request or reply; other hardware, protocols and operations
    /// (RARP, InARP) are refused as unsupported.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != ethertype::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported("ARP packet", "a hardware or protocol other than Ethernet/IPv4"));
        }
        let operation = match packet.operation() {
            1 => Operation::Request,
            2 => Operation::Reply,
            _ => return Err(WireError::Unsupported("ARP packet", "an operation other than request or reply")),
        };
        Ok(ArpRepr {
            operation,
            sender_mac: packet.eth_at(8),
            sender_ip: packet.ip_at(14),
            target_mac: packet.eth_at(18),
            target_ip: packet.ip_at(24),
        })
    }

    #[inline]
    /// The reply to this request from the owner of `target_ip`, whose MAC is `mac`
    /// (RFC 826, "Packet Reception": swap sender and target, fill in our address).
    pub fn reply_from(&self, mac: EthernetAddress) -> ArpRepr {
        ArpRepr {
            operation: Operation::Reply,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    #[inline]
    /// Writes the packet into the first [`PACKET_LEN`] bytes of `packet`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        let b = packet.buffer.as_mut();
        put16(b, 0, HARDWARE_ETHERNET);
        put16(b, 2, ethertype::IPV4);
        b[4] = 6;
        b[5] = 4;
        put16(b, 6, self.operation.code());
        packet.put_eth(8, self.sender_mac);
        packet.put_ip(14, self.sender_ip);
        packet.put_eth(18, self.target_mac);
        packet.put_ip(24, self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A who-has request as Linux sends it: 198.18.0.1 asks for 198.18.0.2.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2,
    ];

    #[test]
    fn a_request_parses_and_its_reply_emits_and_parses_back() {
        let req = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(req.operation, Operation::Request);
        assert_eq!((req.sender_ip, req.target_ip), (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)));
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let reply = req.reply_from(mac);
        let mut buf = [0u8; PACKET_LEN];
        reply.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(reply));
        assert_eq!((reply.sender_mac, reply.target_mac, reply.target_ip), (mac, req.sender_mac, req.sender_ip));
        assert_eq!(&buf[6..8], &[0, 2]);
    }

    #[test]
    fn truncated_and_foreign_packets_are_refused() {
        for cut in 0..PACKET_LEN {
            assert!(ArpPacket::new_checked(&REQUEST[..cut]).is_err(), "cut at {cut}");
        }
        let mut rarp = REQUEST;
        rarp[7] = 3;
        assert!(matches!(ArpRepr::parse(&ArpPacket::new_checked(&rarp[..]).unwrap()), Err(WireError::Unsupported(..))));
        let mut other_hw = REQUEST;
        other_hw[1] = 6;
        assert!(ArpRepr::parse(&ArpPacket::new_checked(&other_hw[..]).unwrap()).is_err());
    }
}
