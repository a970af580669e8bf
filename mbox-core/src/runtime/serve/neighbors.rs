//! Backends' MACs, for what mbox sends toward backends (splices, l4 flows): learned only from
//! ARP replies for addresses mbox asked about, arriving on the port it asked out of, in a
//! bounded table the run's shards share. An unasked reply (anybody's, or a forged one) is
//! counted and changes nothing; a reply for an address mbox knows on that port updates it, as
//! Linux takes a gratuitous ARP for an address it already has (a backend that moved to a new
//! NIC announces itself).

use mbox_stack::wire::ethernet::EthernetAddress;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The most addresses the table holds, asked about or known. When full, the oldest address
/// that never answered makes room; with every one answered, a new address is not asked about
/// (its binds end unresolved, counted).
pub const MAX_NEIGHBORS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: Option<EthernetAddress>,
    /// The port mbox asked out of, where the reply must come.
    port: u16,
    asked_ns: u64,
}

/// The table the run's shards share: an ARP reply reaches one shard (the input steers it as
/// any frame), while the connections and flows waiting for that backend may be on any. A shard
/// looks the generation up once a round (one atomic load) and copies the table into its own
/// only when it moved.
#[derive(Debug, Default)]
pub struct Neighbors {
    table: RwLock<HashMap<IpAddr, Entry>>,
    generation: AtomicU64,
}

impl Neighbors {
    pub fn new() -> Arc<Neighbors> {
        Arc::new(Neighbors::default())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<IpAddr, Entry>> {
        // A poisoned lock (a shard panicked while writing) still holds a usable table.
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// mbox asks for `ip`'s MAC out of `port` at `now_ns`: a reply from there will be taken.
    /// False when the table is full of answered addresses (the request is not worth sending).
    fn ask(&self, ip: IpAddr, port: u16, now_ns: u64) -> bool {
        let mut table = self.write();
        if let Some(e) = table.get_mut(&ip) {
            (e.port, e.asked_ns) = (port, now_ns);
            return true;
        }
        if table.len() >= MAX_NEIGHBORS {
            let unanswered = table.iter().filter(|(_, e)| e.mac.is_none()).min_by_key(|(_, e)| e.asked_ns).map(|(&ip, _)| ip);
            let Some(old) = unanswered else { return false };
            table.remove(&old);
        }
        table.insert(ip, Entry { mac: None, port, asked_ns: now_ns });
        true
    }

    /// An ARP reply on `port` says `ip` is at `mac`: whether it was taken (mbox asked for
    /// `ip` out of that port, or knows it there).
    fn answer(&self, ip: IpAddr, mac: EthernetAddress, port: u16) -> bool {
        let mut table = self.write();
        let Some(e) = table.get_mut(&ip).filter(|e| e.port == port) else { return false };
        if e.mac != Some(mac) {
            e.mac = Some(mac);
            self.generation.fetch_add(1, Ordering::Release);
        }
        true
    }
}

/// A shard's copy of the shared table, read on every bind without a lock.
#[derive(Debug)]
pub(super) struct NeighborCache {
    known: HashMap<IpAddr, EthernetAddress>,
    shared: Arc<Neighbors>,
    /// The shared table's generation this copy has.
    seen: u64,
}

impl NeighborCache {
    pub(super) fn new() -> NeighborCache {
        NeighborCache { known: HashMap::new(), shared: Neighbors::new(), seen: 0 }
    }

    /// Shares the table with the run's other shards (each has one of its own unless told).
    pub(super) fn share(&mut self, shared: Arc<Neighbors>) {
        self.shared = shared;
    }

    /// `ip`'s MAC, if known.
    pub(super) fn mac(&self, ip: IpAddr) -> Option<EthernetAddress> {
        self.known.get(&ip).copied()
    }

    /// See [`Neighbors::ask`].
    pub(super) fn ask(&self, ip: IpAddr, port: u16, now_ns: u64) -> bool {
        self.shared.ask(ip, port, now_ns)
    }

    /// An ARP reply on `port` says `ip` is at `mac`: whether it was taken ([`Neighbors::answer`]);
    /// this copy has it at once.
    pub(super) fn answer(&mut self, ip: IpAddr, mac: EthernetAddress, port: u16) -> bool {
        let taken = self.shared.answer(ip, mac, port);
        if taken {
            self.known.insert(ip, mac);
        }
        taken
    }

    /// Takes what the other shards learned since the last look, into `learned` (addresses
    /// whose MAC is new here). One atomic load when nothing changed.
    pub(super) fn sync(&mut self, learned: &mut Vec<IpAddr>) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return;
        }
        self.seen = generation;
        let table = self.shared.table.read().unwrap_or_else(|e| e.into_inner());
        for (&ip, e) in table.iter() {
            let Some(mac) = e.mac else { continue };
            if self.known.insert(ip, mac) != Some(mac) {
                learned.push(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb1]);

    #[test]
    fn only_replies_to_what_was_asked_out_of_their_port_are_taken_in_a_bounded_table() {
        let shared = Neighbors::new();
        let (mut a, mut b) = (NeighborCache::new(), NeighborCache::new());
        a.share(shared.clone());
        b.share(shared.clone());
        let ip: IpAddr = "198.18.1.11".parse().unwrap();
        assert!(!a.answer(ip, MAC, 1), "not asked: a reply nobody asked for changes nothing");
        assert!(a.ask(ip, 1, 0));
        assert!(!a.answer(ip, MAC, 0), "asked out of port 1, answered on 0");
        assert!(a.answer(ip, MAC, 1));
        assert_eq!(a.mac(ip), Some(MAC));
        let mut learned = Vec::new();
        b.sync(&mut learned);
        assert_eq!((learned.as_slice(), b.mac(ip)), (&[ip][..], Some(MAC)), "the other shard has it");
        learned.clear();
        b.sync(&mut learned);
        assert!(learned.is_empty(), "nothing new");
        // A known address that moves is updated (a gratuitous ARP), on its port.
        let moved = EthernetAddress([2, 0, 0, 0, 0, 0xb2]);
        assert!(b.answer(ip, moved, 1));
        a.sync(&mut learned);
        assert_eq!(a.mac(ip), Some(moved));

        // Full: the oldest unanswered address makes room; with all answered, no more asks.
        let nth = |n: usize| IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        for n in 1..MAX_NEIGHBORS {
            assert!(a.ask(nth(n), 1, n as u64));
        }
        assert!(a.ask(nth(MAX_NEIGHBORS), 1, 1 << 20));
        assert!(!a.answer(nth(1), MAC, 1), "the oldest unanswered made room");
        assert!(a.answer(ip, MAC, 1), "the answered one stays");
        for n in 2..=MAX_NEIGHBORS {
            assert!(a.answer(nth(n), MAC, 1));
        }
        assert!(!a.ask(nth(MAX_NEIGHBORS + 1), 1, 1 << 21), "every address answered: none is dropped for a new one");
        assert_eq!(shared.table.read().unwrap().len(), MAX_NEIGHBORS);
    }
}
