//! Source ports for the connections mbox opens toward backends (the splicer's, and an l4
//! service's source NAT): picked as RFC 6056 algorithm 3 does (a keyed hash of the addresses
//! picks where the search starts, a counter moves it on), so that an off-path host cannot
//! guess a flow's port to forge its packets, and kept only where the input's flow hash steers
//! the backend's answers to the shard that picked it. Algorithm 3 rather than a random port
//! per connection (algorithm 1): toward one backend the ports still go round the whole range
//! before one comes back, so a new connection does not land on a port whose last connection
//! the backend still holds in TIME-WAIT (a random pick did, a few times in a thousand
//! connections, and the backend answered those SYNs with an ACK for the old one).

use mbox_stack::flow_key::{shard_of, FlowKey};
use std::hash::BuildHasher as _;
use std::net::SocketAddr;

/// The first port picked (the registered ports' start); the range runs to 65535.
pub(super) const FIRST_SOURCE_PORT: u16 = 1024;
const SPAN: u32 = (u16::MAX - FIRST_SOURCE_PORT) as u32 + 1;

/// A shard's source port picker.
#[derive(Debug)]
pub(super) struct SourcePorts {
    shard: usize,
    shards: usize,
    /// Whether the input's flow hash keys on the outer VLAN id (`[flow] vlan_in_key`).
    vlan_in_key: bool,
    /// RFC 6056's secret key (random per process), and its `next_ephemeral`, which moves on
    /// with every port tried.
    secret: foldhash::fast::RandomState,
    next: u32,
}

impl SourcePorts {
    pub(super) fn new(shard: u16) -> SourcePorts {
        SourcePorts { shard: usize::from(shard), shards: 1, vlan_in_key: false, secret: Default::default(), next: 0 }
    }

    /// The input steers between `shards` shards by the flow hash, with or without the VLAN id.
    pub(super) fn set_steering(&mut self, shards: usize, vlan_in_key: bool) {
        (self.shards, self.vlan_in_key) = (shards.max(1), vlan_in_key);
    }

    /// A port on `source` toward `backend` (protocol `proto`; the backend's answers come with
    /// outer VLAN id `vlan`, 0 for none) that `taken` does not refuse and whose answers the
    /// input steers to this shard; `None` when no port of the range is left.
    pub(super) fn pick(
        &mut self,
        proto: u8,
        source: std::net::IpAddr,
        backend: SocketAddr,
        vlan: u16,
        taken: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        // RFC 6056 3.3.3: offset = F(local address, remote address and port, secret key).
        let offset = (self.secret.hash_one((proto, source, backend)) % u64::from(SPAN)) as u32;
        for _ in 0..SPAN {
            let port = FIRST_SOURCE_PORT + ((offset + self.next % SPAN) % SPAN) as u16;
            self.next = self.next.wrapping_add(1);
            if taken(port) {
                continue;
            }
            let mut key = FlowKey::between(proto, SocketAddr::new(source, port), backend);
            key.vlan = if self.vlan_in_key { vlan } else { 0 };
            if self.shards <= 1 || shard_of(key.shard_hash(), self.shards) == self.shard {
                return Some(port);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_stack::wire::ip_proto;

    #[test]
    fn ports_steer_to_the_picking_shard_and_do_not_follow_one_another() {
        let source = "198.18.1.21".parse().unwrap();
        let backend: SocketAddr = "198.18.1.11:8080".parse().unwrap();
        for vlan_in_key in [false, true] {
            let mut ports = SourcePorts::new(2);
            ports.set_steering(4, vlan_in_key);
            let picked: Vec<u16> = (0..64).map(|_| ports.pick(ip_proto::TCP, source, backend, 100, |_| false).unwrap()).collect();
            for &port in &picked {
                let mut key = FlowKey::between(ip_proto::TCP, SocketAddr::new(source, port), backend);
                key.vlan = if vlan_in_key { 100 } else { 0 };
                assert_eq!(shard_of(key.shard_hash(), 4), 2, "port {port}");
            }
        }
        // Not a counter from a known start: the first port depends on the picker's secret.
        let fresh: Vec<Option<u16>> = (0..8).map(|_| SourcePorts::new(0).pick(ip_proto::TCP, source, backend, 0, |_| false)).collect();
        assert!(fresh.iter().any(|p| *p != fresh[0]), "every picker starts at {:?}", fresh[0]);
        let mut ports = SourcePorts::new(0);
        assert_eq!(ports.pick(ip_proto::UDP, source, backend, 0, |_| true), None, "every port taken");
        assert_eq!(ports.pick(ip_proto::UDP, source, backend, 0, |p| p != 5000), Some(5000), "the one left is found");
    }
}
