//! The cache's store: whole responses by key, each fresh until its expiry, within a bound on
//! their bytes, the least recently used evicted first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A stored response: the bytes a hit sends (head rewritten for the client, then the body as
/// the backend framed it) and when it stops being fresh.
#[derive(Debug, Clone)]
pub struct Entry {
    pub response: Arc<[u8]>,
    pub expires_ns: u64,
    /// Its place in the use order (a key of `Store::by_use`).
    used: u64,
}

/// Responses by key (see `http::cache_key`), bounded in bytes.
#[derive(Debug, Default)]
pub struct Store {
    entries: HashMap<Vec<u8>, Entry>,
    /// Keys by last use, oldest first.
    by_use: BTreeMap<u64, Vec<u8>>,
    next_use: u64,
    bytes: usize,
    max_bytes: usize,
    pub evicted: u64,
}

impl Store {
    pub fn new(max_bytes: usize) -> Store {
        Store { max_bytes, ..Store::default() }
    }

    /// The response stored for `key` if it is fresh at `now_ns` (a stale one is let go),
    /// marked used.
    pub fn get(&mut self, key: &[u8], now_ns: u64) -> Option<Arc<[u8]>> {
        let entry = self.entries.get_mut(key)?;
        if entry.expires_ns <= now_ns {
            self.remove(key);
            return None;
        }
        let used = self.next_use;
        self.next_use += 1;
        if let Some(k) = self.by_use.remove(&entry.used) {
            self.by_use.insert(used, k);
        }
        entry.used = used;
        Some(entry.response.clone())
    }

    /// Stores `response` under `key` until `expires_ns`, evicting the least recently used
    /// until it fits; false (nothing stored) when it alone exceeds the bound.
    pub fn insert(&mut self, key: Vec<u8>, response: Arc<[u8]>, expires_ns: u64) -> bool {
        if response.len() > self.max_bytes {
            return false;
        }
        self.remove(&key);
        while self.bytes + response.len() > self.max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.response.len();
                self.evicted += 1;
            }
        }
        let used = self.next_use;
        self.next_use += 1;
        self.bytes += response.len();
        self.by_use.insert(used, key.clone());
        self.entries.insert(key, Entry { response, expires_ns, used });
        true
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.remove(key) {
            self.by_use.remove(&e.used);
            self.bytes -= e.response.len();
        }
    }

    /// Responses stored, and their bytes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Arc<[u8]> {
        vec![7u8; n].into()
    }

    #[test]
    fn the_least_recently_used_goes_first_and_the_bound_holds() {
        let mut s = Store::new(100);
        assert!(s.insert(b"a".to_vec(), body(40), 1_000));
        assert!(s.insert(b"b".to_vec(), body(40), 1_000));
        assert!(s.get(b"a", 0).is_some(), "a used after b");
        assert!(s.insert(b"c".to_vec(), body(40), 1_000));
        assert!(s.get(b"b", 0).is_none(), "b was the least recently used");
        assert!(s.get(b"a", 0).is_some() && s.get(b"c", 0).is_some());
        assert_eq!((s.len(), s.bytes(), s.evicted), (2, 80, 1));
        assert!(!s.insert(b"d".to_vec(), body(101), 1_000), "larger than the whole store");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_stale_entry_is_a_miss_and_let_go() {
        let mut s = Store::new(100);
        s.insert(b"a".to_vec(), body(10), 500);
        assert!(s.get(b"a", 499).is_some());
        assert!(s.get(b"a", 500).is_none());
        assert_eq!((s.len(), s.bytes()), (0, 0));
        // Stored again: replaces, counted once.
        s.insert(b"a".to_vec(), body(10), 900);
        s.insert(b"a".to_vec(), body(20), 900);
        assert_eq!((s.len(), s.bytes(), s.evicted), (1, 20, 0));
    }
}
