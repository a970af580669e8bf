//! A connection's bytes in transit: the send buffer (what the NF wrote and the peer has not
//! acknowledged, bounded) and the receive side's out-of-order segments (kept as copies until
//! the hole before them fills, bounded, and described to the peer as SACK blocks).

use crate::wire::tcp::SackBlocks;

/// What the NF wrote that the peer has not acknowledged yet: a ring of bytes that starts at the
/// first unacknowledged byte. Its capacity is fixed when the connection is made and bounds
/// what a connection holds; the ring itself grows (doubling) only as far as writes need, so a
/// connection that sends little holds little.
#[derive(Debug, Default)]
pub struct SendBuffer {
    ring: Vec<u8>,
    /// The bound the ring may grow to.
    capacity: usize,
    /// Index of the first byte in `ring`, and how many bytes it holds.
    head: usize,
    len: usize,
}

/// What a ring starts at once something is written.
const FIRST_RING: usize = 4096;

/// Bytes of the send buffer, in at most two pieces (the ring wraps).
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub first: &'a [u8],
    pub second: &'a [u8],
}

impl Payload<'_> {
    pub const EMPTY: Payload<'static> = Payload { first: &[], second: &[] };

    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the bytes to `out`.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.first);
        out.extend_from_slice(self.second);
    }
}

impl SendBuffer {
    /// A buffer of at most `capacity` bytes (allocated as writes need it).
    pub fn with_capacity(capacity: usize) -> SendBuffer {
        SendBuffer { ring: Vec::new(), capacity, head: 0, len: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the ring holds allocated now.
    pub fn allocated(&self) -> usize {
        self.ring.len()
    }

    /// Grows the ring to hold `need` bytes (within the capacity), its bytes moved to the front.
    fn grow(&mut self, need: usize) {
        let size = need.max(FIRST_RING).max(self.ring.len() * 2).min(self.capacity);
        let mut ring = vec![0; size];
        let old = self.slice(0, self.len);
        ring[..old.first.len()].copy_from_slice(old.first);
        ring[old.first.len()..self.len].copy_from_slice(old.second);
        self.ring = ring;
        self.head = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Appends as much of `bytes` as fits; returns how much.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        if n == 0 {
            return 0;
        }
        if self.len + n > self.ring.len() {
            self.grow(self.len + n);
        }
        let cap = self.ring.len();
        let tail = (self.head + self.len) % cap;
        let first = n.min(cap - tail);
        self.ring[tail..tail + first].copy_from_slice(&bytes[..first]);
        self.ring[..n - first].copy_from_slice(&bytes[first..n]);
        self.len += n;
        n
    }

    /// The bytes `[from, from + len)` counted from the first unacknowledged one (clipped to
    /// what the buffer holds).
    pub fn slice(&self, from: usize, len: usize) -> Payload<'_> {
        let cap = self.ring.len();
        if from >= self.len || cap == 0 {
            return Payload::EMPTY;
        }
        let len = len.min(self.len - from);
        let start = (self.head + from) % cap;
        let first = len.min(cap - start);
        Payload { first: &self.ring[start..start + first], second: &self.ring[..len - first] }
    }

    /// The peer acknowledged the first `n` bytes: they leave the buffer.
    pub fn ack(&mut self, n: usize) {
        let n = n.min(self.len);
        if !self.ring.is_empty() {
            self.head = (self.head + n) % self.ring.len();
        }
        self.len -= n;
    }
}

/// A segment received beyond a hole: its copy, from stream offset `start`.
#[derive(Debug)]
struct OutOfOrder {
    start: u64,
    bytes: Vec<u8>,
}

/// Segments received beyond a hole, bounded in count and bytes; stream offsets count from the
/// peer's first data byte.
#[derive(Debug, Default)]
pub struct Reassembly {
    /// Sorted by `start`, never overlapping.
    kept: Vec<OutOfOrder>,
    bytes: usize,
    /// The start of the range the last kept segment joined (reported first in SACK blocks,
    /// RFC 2018 4).
    latest: Option<u64>,
    /// Buffers of segments delivered, for the next ones (no allocation once warm).
    spare: Vec<Vec<u8>>,
}

/// Out-of-order segments a connection keeps at most.
pub const MAX_OUT_OF_ORDER: usize = 64;

impl Reassembly {
    /// Ranges kept (each one SACK block).
    pub fn ranges(&self) -> usize {
        self.kept.len()
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Keeps `data` (from stream offset `start`, beyond the next expected byte `next`) as far
    /// as it is new and `room` (bytes beyond `next` the window allows) reaches. False when it
    /// could not be kept (the bound): the peer will send it again.
    pub fn keep(&mut self, next: u64, start: u64, data: &[u8], room: u64) -> bool {
        let end = (start + data.len() as u64).min(next + room);
        if end <= start || start < next {
            return end <= start;
        }
        // What the kept segments do not cover already, piece by piece.
        let mut pieces: [(u64, u64); 2] = [(0, 0); 2];
        let mut n = 0;
        let mut at = start;
        for k in self.kept.iter().filter(|k| k.start + k.bytes.len() as u64 > start && k.start < end) {
            if k.start > at && n < 2 {
                pieces[n] = (at, k.start);
                n += 1;
            }
            at = at.max(k.start + k.bytes.len() as u64);
        }
        if at < end && n < 2 {
            pieces[n] = (at, end);
            n += 1;
        }
        let mut kept_any = n == 0;
        for &(from, to) in &pieces[..n] {
            if self.kept.len() >= MAX_OUT_OF_ORDER {
                break;
            }
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            self.bytes += buf.len();
            let at = self.kept.partition_point(|k| k.start < from);
            self.kept.insert(at, OutOfOrder { start: from, bytes: buf });
            kept_any = true;
        }
        self.latest = Some(start);
        self.merge_adjacent();
        kept_any
    }

    /// Joins kept segments that continue one another (one SACK block, one delivery).
    fn merge_adjacent(&mut self) {
        let mut i = 0;
        while i + 1 < self.kept.len() {
            if self.kept[i].start + self.kept[i].bytes.len() as u64 == self.kept[i + 1].start {
                let next = self.kept.remove(i + 1);
                self.kept[i].bytes.extend_from_slice(&next.bytes);
                self.spare.push(next.bytes);
            } else {
                i += 1;
            }
        }
    }

    /// Hands `deliver` the kept bytes that now continue the stream at `next` (the hole before
    /// them filled), dropping what lies before it; returns the new next offset.
    pub fn drain(&mut self, mut next: u64, deliver: &mut dyn FnMut(u64, &[u8])) -> u64 {
        while let Some(first) = self.kept.first() {
            let end = first.start + first.bytes.len() as u64;
            if first.start > next {
                break;
            }
            let k = self.kept.remove(0);
            self.bytes -= k.bytes.len();
            if end > next {
                deliver(next, &k.bytes[(next - k.start) as usize..]);
                next = end;
            }
            self.spare.push(k.bytes);
        }
        if self.kept.is_empty() {
            self.latest = None;
        }
        next
    }

    /// SACK blocks for what is kept, as stream offsets relative to `next` mapped to sequence
    /// numbers by `to_seq`: the block holding the latest segment first (RFC 2018 4), then the
    /// others from the highest down, at most `max`.
    pub fn sack(&self, max: usize, to_seq: impl Fn(u64) -> u32) -> SackBlocks {
        let mut sack = SackBlocks::default();
        let block = |k: &OutOfOrder| (to_seq(k.start), to_seq(k.start + k.bytes.len() as u64));
        let latest = self.latest.and_then(|l| self.kept.iter().position(|k| k.start <= l && l < k.start + k.bytes.len() as u64));
        if let Some(i) = latest {
            sack.push(block(&self.kept[i]));
        }
        for (i, k) in self.kept.iter().enumerate().rev() {
            if sack.len() >= max {
                break;
            }
            if Some(i) != latest {
                sack.push(block(k));
            }
        }
        sack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_ring_wraps_and_hands_out_two_pieces() {
        let mut b = SendBuffer::with_capacity(8);
        assert_eq!(b.write(b"abcdef"), 6);
        b.ack(4);
        assert_eq!(b.write(b"ghijklmn"), 6, "only what fits");
        let p = b.slice(0, 8);
        let mut out = Vec::new();
        p.copy_to(&mut out);
        assert_eq!(out, b"efghijkl");
        assert_eq!((p.first.len(), p.second.len()), (4, 4));
        let mut mid = Vec::new();
        b.slice(3, 2).copy_to(&mut mid);
        assert_eq!(mid, b"hi");
        assert!(b.slice(8, 1).is_empty());
    }

    #[test]
    fn the_send_ring_grows_only_as_writes_need_and_keeps_the_order() {
        let mut b = SendBuffer::with_capacity(20_000);
        assert_eq!(b.allocated(), 0, "nothing before the first write");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(b.write(&data[..3000]), 3000);
        assert_eq!(b.allocated(), 4096);
        b.ack(2500);
        // Wraps in the small ring, then grows: the bytes stay in stream order.
        assert_eq!(b.write(&data[3000..4000]), 1000);
        assert_eq!(b.write(&data[4000..12_000]), 8000);
        assert!(b.allocated() >= 8500 && b.allocated() <= 20_000);
        let mut out = Vec::new();
        b.slice(0, b.len()).copy_to(&mut out);
        assert_eq!(out, &data[2500..12_000]);
        assert_eq!(b.write(&data[12_000..]), 8000);
        assert_eq!(b.write(&[0; 5000]), 20_000 - 17_500, "never beyond the capacity");
        assert_eq!(b.allocated(), 20_000);
    }

    #[test]
    fn out_of_order_data_is_kept_once_and_delivered_when_the_hole_fills() {
        let mut r = Reassembly::default();
        assert!(r.keep(0, 10, b"klmno", 1000));
        assert!(r.keep(0, 12, b"mnopqr", 1000), "overlapping: only the new tail is kept");
        assert!(r.keep(0, 30, b"xyz", 1000));
        assert_eq!(r.bytes(), 8 + 3);
        let sack = r.sack(4, |o| o as u32 + 1000);
        assert_eq!(sack.as_slice(), [(1030, 1033), (1010, 1018)], "the latest block first");
        let mut got = Vec::new();
        let next = r.drain(10, &mut |at, b| got.push((at, b.to_vec())));
        assert_eq!((next, got), (18, vec![(10, b"klmnopqr".to_vec())]));
        // Delivered past part of a kept range: only the rest comes out.
        let mut got = Vec::new();
        let next = r.drain(31, &mut |at, b| got.push((at, b.to_vec())));
        assert_eq!((next, got), (33, vec![(31, b"yz".to_vec())]));
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn keeping_stops_at_the_window_and_the_bound() {
        let mut r = Reassembly::default();
        assert!(r.keep(0, 10, &[7; 100], 50));
        assert_eq!(r.bytes(), 40, "clipped at the window's edge");
        for i in 0..MAX_OUT_OF_ORDER as u64 {
            r.keep(0, 1000 + 10 * i, b"x", 1 << 20);
        }
        assert!(!r.keep(0, 5000, b"y", 1 << 20), "the bound");
    }
}
