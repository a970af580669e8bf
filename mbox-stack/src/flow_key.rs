//! The bidirectional flow key: both directions of a conversation map to one key.
//!
//! The two endpoints are stored in a canonical order (the smaller `(address, port)` first), so a
//! packet and its reply build the same key; [`FlowKey::from_parsed`] also says which canonical
//! side sent the packet. The same key, hashed with a fixed seed, picks the shard, which makes
//! the shard choice symmetric by construction.

use crate::wire::{ip_proto, Parsed};
use core::hash::{BuildHasher, Hash, Hasher};

/// Addresses, ports, protocol (and optionally the VLAN) of a flow, endpoints in canonical order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FlowKey {
    pub addrs: [[u8; 16]; 2],
    pub ports: [u16; 2],
    pub ip_proto: u8,
    pub ip_version: u8,
    /// Outermost VLAN ID when VLANs are part of the key, else 0.
    pub vlan: u16,
}

impl Hash for FlowKey {
    /// Five words instead of field by field: the key is hashed for every packet.
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        for addr in &self.addrs {
            let (hi, lo) = addr.split_at(8);
            h.write_u64(u64::from_ne_bytes(hi.try_into().unwrap_or_default()));
            h.write_u64(u64::from_ne_bytes(lo.try_into().unwrap_or_default()));
        }
        h.write_u64(
            u64::from(self.ports[0])
                | u64::from(self.ports[1]) << 16
                | u64::from(self.ip_proto) << 32
                | u64::from(self.ip_version) << 40
                | u64::from(self.vlan) << 48,
        );
    }
}

/// Which canonical side of a [`FlowKey`] an endpoint is.
pub type Side = u8;

impl FlowKey {
    /// The key of `p`'s flow, and the side that sent `p`. Ports count only for TCP and UDP.
    pub fn from_parsed(p: &Parsed, vlan_in_key: bool) -> (FlowKey, Side) {
        let has_ports = p.ip_proto == ip_proto::TCP || p.ip_proto == ip_proto::UDP;
        let (sport, dport) = if has_ports { (p.src_port, p.dst_port) } else { (0, 0) };
        let src_first = (p.src, sport) <= (p.dst, dport);
        let (addrs, ports, side) = if src_first { ([p.src, p.dst], [sport, dport], 0) } else { ([p.dst, p.src], [dport, sport], 1) };
        let key = FlowKey { addrs, ports, ip_proto: p.ip_proto, ip_version: p.ip_version, vlan: if vlan_in_key { p.vlan } else { 0 } };
        (key, side)
    }

    /// The key of a TCP connection between `a` and `b` (either way round), as
    /// [`FlowKey::from_parsed`] makes it for its packets without VLANs in the key.
    pub fn tcp(a: std::net::SocketAddr, b: std::net::SocketAddr) -> FlowKey {
        FlowKey::between(ip_proto::TCP, a, b)
    }

    /// [`FlowKey::tcp`] for any protocol with ports (TCP, UDP).
    pub fn between(proto: u8, a: std::net::SocketAddr, b: std::net::SocketAddr) -> FlowKey {
        let bytes = |ip: std::net::IpAddr| {
            let mut out = [0u8; 16];
            match ip {
                std::net::IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
                std::net::IpAddr::V6(v6) => out = v6.octets(),
            }
            out
        };
        let (x, y) = ((bytes(a.ip()), a.port()), (bytes(b.ip()), b.port()));
        let ((a0, p0), (a1, p1)) = if x <= y { (x, y) } else { (y, x) };
        FlowKey { addrs: [a0, a1], ports: [p0, p1], ip_proto: proto, ip_version: if a.is_ipv4() { 4 } else { 6 }, vlan: 0 }
    }

    /// Hash used to pick a shard: fixed-seeded, so a capture spreads the same way on every run.
    pub fn shard_hash(&self) -> u64 {
        SHARD_HASHER.hash_one(self)
    }
}

const SHARD_HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x6d62_6f78_7273_7331);

/// Maps a hash onto `0..shards` without the bias of `%` (multiply-shift).
pub fn shard_of(hash: u64, shards: usize) -> usize {
    ((u128::from(hash) * shards as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(src: u8, sport: u16, dst: u8, dport: u16) -> Parsed {
        let mut p = Parsed { ip_version: 4, ip_proto: ip_proto::TCP, src_port: sport, dst_port: dport, ..Default::default() };
        p.src[..4].copy_from_slice(&[10, 0, 0, src]);
        p.dst[..4].copy_from_slice(&[10, 0, 0, dst]);
        p
    }

    #[test]
    fn both_directions_build_one_key_and_one_shard() {
        let (a, side_a) = FlowKey::from_parsed(&parsed(1, 5000, 2, 80), false);
        let (b, side_b) = FlowKey::from_parsed(&parsed(2, 80, 1, 5000), false);
        assert_eq!(a, b);
        assert_ne!(side_a, side_b);
        assert_eq!(shard_of(a.shard_hash(), 7), shard_of(b.shard_hash(), 7));
    }

    #[test]
    fn vlan_is_in_the_key_only_when_asked() {
        let mut p = parsed(1, 1, 2, 2);
        p.vlan = 10;
        let mut q = p;
        q.vlan = 20;
        assert_eq!(FlowKey::from_parsed(&p, false).0, FlowKey::from_parsed(&q, false).0);
        assert_ne!(FlowKey::from_parsed(&p, true).0, FlowKey::from_parsed(&q, true).0);
    }

    #[test]
    fn shard_of_stays_in_range() {
        for h in [0, 1, u64::MAX, 1 << 63, 12345] {
            for n in 1..9 {
                assert!(shard_of(h, n) < n);
            }
        }
    }
}
