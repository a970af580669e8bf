//! A connection's bytes in transit: the send buffer (what the NF wrote and the peer has not
//! acknowledged, bounded) and the receive side's out-of-order segments (copied once into a
//! ring indexed by stream offset until the hole before them fills, bounded, and described to
//! the peer as SACK blocks).

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

    /// Grows the ring to hold `need` bytes (within the capacity and `max_alloc`, which `need`
    /// does not pass), its bytes moved to the front.
    fn grow(&mut self, need: usize, max_alloc: usize) {
        let size = need.max(FIRST_RING).max(self.ring.len() * 2).min(self.capacity).min(max_alloc.max(need));
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

    /// What [`SendBuffer::write_within`] takes at most with `max_alloc`: the free room within
    /// the capacity, and within what the ring holds allocated or may grow to under `max_alloc`.
    pub fn room_within(&self, max_alloc: usize) -> usize {
        self.capacity.min(self.ring.len().max(max_alloc)) - self.len
    }

    /// Appends as much of `bytes` as fits; returns how much.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        self.write_within(bytes, usize::MAX)
    }

    /// Appends as much of `bytes` as fits without growing the ring past `max_alloc` bytes
    /// (all of them when there are at most [`SendBuffer::room_within`]); returns how much.
    pub fn write_within(&mut self, bytes: &[u8], max_alloc: usize) -> usize {
        let n = bytes.len().min(self.room_within(max_alloc));
        if n == 0 {
            return 0;
        }
        if self.len + n > self.ring.len() {
            self.grow(self.len + n, max_alloc);
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

    /// Frees the ring when it holds nothing; returns the bytes freed (a write allocates again).
    pub fn release(&mut self) -> usize {
        if self.len > 0 {
            return 0;
        }
        let freed = self.ring.len();
        self.ring = Vec::new();
        self.head = 0;
        freed
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

/// Out-of-order bytes kept: stream offsets `[start, end)`, and when a segment last fell in the
/// range (the order SACK blocks are reported in).
#[derive(Debug, Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    stamp: u64,
}

impl Range {
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
}

/// Segments received beyond a hole, bounded in ranges and bytes; stream offsets count from the
/// peer's first data byte. Like smoltcp's assembler: a ring of bytes indexed by stream offset
/// from the next expected byte (allocated when first needed and grown, doubling, only as far
/// as the data kept reaches, at most the receive window), and a short sorted list of the
/// ranges it holds. Each byte is copied into the ring once and delivered from it in at most
/// two pieces (the ring wraps); once warm, keeping a segment allocates nothing.
#[derive(Debug)]
pub struct Reassembly {
    ring: Vec<u8>,
    /// The bound the ring may grow to (the receive window).
    capacity: usize,
    /// Index in `ring` of stream offset `base`; `base` is at or before every range kept.
    head: usize,
    base: u64,
    /// Sorted by `start`, never overlapping nor adjacent (ranges that meet are one).
    ranges: Vec<Range>,
    bytes: usize,
    /// Counts segments kept: the stamp of the range the latest one fell in.
    stamp: u64,
}

impl Default for Reassembly {
    fn default() -> Reassembly {
        Reassembly::with_capacity(usize::MAX)
    }
}

/// Ranges of out-of-order data a connection keeps at most (each one SACK block).
pub const MAX_OUT_OF_ORDER: usize = 64;

/// What [`Reassembly::keep_within`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Kept as far as the window reaches (or it held nothing new).
    Kept,
    /// Not kept: it starts a range and [`MAX_OUT_OF_ORDER`] are held.
    Refused,
    /// Not kept, or only its start: the ring would have had to grow past the memory allowed.
    NoMemory,
}

impl Reassembly {
    /// Out-of-order data within `capacity` bytes of the next expected byte (the ring never
    /// grows past it).
    pub fn with_capacity(capacity: usize) -> Reassembly {
        Reassembly { ring: Vec::new(), capacity, head: 0, base: 0, ranges: Vec::new(), bytes: 0, stamp: 0 }
    }

    /// Ranges kept (each one SACK block).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes of heap held: the ring and the range list.
    pub fn allocated(&self) -> usize {
        self.ring.len() + self.ranges.capacity() * std::mem::size_of::<Range>()
    }

    /// The most [`Reassembly::allocated`] can reach.
    pub fn max_allocation(&self) -> usize {
        self.capacity.saturating_add(MAX_OUT_OF_ORDER * std::mem::size_of::<Range>())
    }

    /// The stream offset of the first byte kept.
    pub fn first_kept(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.start)
    }

    /// Drops what is kept and frees the memory (the connection is over).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.bytes = 0;
        self.release();
    }

    /// Frees the ring and the range list when nothing is kept; returns the bytes freed.
    pub fn release(&mut self) -> usize {
        if !self.is_empty() {
            return 0;
        }
        let freed = self.allocated();
        self.ring = Vec::new();
        self.ranges = Vec::new();
        self.head = 0;
        freed
    }

    /// Where stream offset `offset` (at or after `base`, within the ring) lies in the ring.
    fn index(&self, offset: u64) -> usize {
        (self.head + (offset - self.base) as usize) % self.ring.len()
    }

    /// Copies `bytes` into the ring from stream offset `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) {
        let at = self.index(offset);
        let first = bytes.len().min(self.ring.len() - at);
        self.ring[at..at + first].copy_from_slice(&bytes[..first]);
        self.ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
    }

    /// The ring's bytes `[offset, offset + len)`, in at most two pieces.
    fn read_at(&self, offset: u64, len: usize) -> (&[u8], &[u8]) {
        let at = self.index(offset);
        let first = len.min(self.ring.len() - at);
        (&self.ring[at..at + first], &self.ring[..len - first])
    }

    /// Grows the ring to `size` bytes, what it holds moved to the front in stream order.
    fn grow(&mut self, size: usize) {
        let mut ring = vec![0; size];
        if !self.ring.is_empty() {
            let old = self.ring.len();
            let (a, b) = self.read_at(self.base, old);
            ring[..a.len()].copy_from_slice(a);
            ring[a.len()..old].copy_from_slice(b);
        }
        self.ring = ring;
        self.head = 0;
    }

    /// Moves the ring's start to `next` (bytes before it were delivered): ranges and parts of
    /// ranges before it are dropped.
    fn advance(&mut self, next: u64) {
        if next <= self.base {
            return;
        }
        if !self.ring.is_empty() {
            let len = self.ring.len();
            self.head = (self.head + ((next - self.base) % len as u64) as usize) % len;
        }
        self.base = next;
        let gone = self.ranges.partition_point(|r| r.end <= next);
        for r in self.ranges.drain(..gone) {
            self.bytes -= r.len();
        }
        if let Some(r) = self.ranges.first_mut() {
            if r.start < next {
                self.bytes -= (next - r.start) as usize;
                r.start = next;
            }
        }
        if self.ranges.is_empty() {
            self.head = 0;
        }
    }

    /// Keeps `data` (from stream offset `start`, beyond the next expected byte `next`) as far
    /// as it is new and `room` (bytes beyond `next` the window allows) reaches. False when it
    /// could not be kept (the bound on ranges): the peer will send it again.
    pub fn keep(&mut self, next: u64, start: u64, data: &[u8], room: u64) -> bool {
        self.keep_within(next, start, data, room, usize::MAX) != Keep::Refused
    }

    /// [`Reassembly::keep`], the ring and range list never grown past `max_alloc` bytes in all
    /// (what does not fit in what is allocated then is not kept).
    pub fn keep_within(&mut self, next: u64, start: u64, data: &[u8], room: u64, max_alloc: usize) -> Keep {
        self.advance(next);
        let (mut start, mut data) = (start, data);
        if start < next {
            let skip = (next - start).min(data.len() as u64) as usize;
            (start, data) = (start + skip as u64, &data[skip..]);
        }
        let window_end = next.saturating_add(room.min(self.capacity as u64));
        let mut end = (start + data.len() as u64).min(window_end);
        if end <= start {
            return Keep::Kept;
        }
        // The range list may have to grow (by doubling): its growth is reserved first.
        let list_grown = if self.ranges.len() == self.ranges.capacity() && self.ranges.len() < MAX_OUT_OF_ORDER {
            (self.ranges.capacity() * 2).clamp(4, MAX_OUT_OF_ORDER)
        } else {
            self.ranges.capacity()
        };
        let list_bytes = list_grown * std::mem::size_of::<Range>();
        let mut short = false;
        let need = (end - self.base) as usize;
        let mut size = self.ring.len();
        if need > size {
            let ring_max = max_alloc.saturating_sub(list_bytes).min(self.capacity);
            let grown = need.max(FIRST_RING).max(size * 2).min(ring_max);
            if grown < need {
                short = true;
                end = self.base + grown.max(size) as u64;
                if end <= start {
                    return Keep::NoMemory;
                }
            }
            size = size.max(grown);
        }
        // The ranges it overlaps or meets: `[first, last)`.
        let first = self.ranges.partition_point(|r| r.end < start);
        let last = self.ranges.partition_point(|r| r.start <= end);
        if first == last {
            if self.ranges.len() >= MAX_OUT_OF_ORDER {
                return Keep::Refused;
            }
            if self.ranges.len() == self.ranges.capacity() {
                if size + list_bytes > max_alloc {
                    return Keep::NoMemory;
                }
                self.ranges.reserve_exact(list_grown - self.ranges.len());
            }
        }
        if size > self.ring.len() {
            self.grow(size);
        }
        // Copy what the ranges do not hold already, gap by gap.
        let mut at = start;
        for i in first..last {
            let r = self.ranges[i];
            if r.start > at {
                let to = r.start.min(end);
                self.write_at(at, &data[(at - start) as usize..(to - start) as usize]);
                self.bytes += (to - at) as usize;
            }
            at = at.max(r.end);
        }
        if at < end {
            self.write_at(at, &data[(at - start) as usize..(end - start) as usize]);
            self.bytes += (end - at) as usize;
        }
        self.stamp += 1;
        let mut joined = Range { start, end, stamp: self.stamp };
        if first < last {
            joined.start = joined.start.min(self.ranges[first].start);
            joined.end = joined.end.max(self.ranges[last - 1].end);
            self.ranges[first] = joined;
            self.ranges.drain(first + 1..last);
        } else {
            self.ranges.insert(first, joined);
        }
        if short {
            Keep::NoMemory
        } else {
            Keep::Kept
        }
    }

    /// Hands `deliver` the kept bytes that now continue the stream at `next` (the hole before
    /// them filled), in at most two pieces, dropping what lies before it; returns the new next
    /// offset.
    pub fn drain(&mut self, next: u64, deliver: &mut dyn FnMut(u64, &[u8])) -> u64 {
        self.advance(next);
        let Some(&r) = self.ranges.first() else { return next };
        if r.start > next {
            return next;
        }
        let (a, b) = self.read_at(r.start, r.len());
        deliver(r.start, a);
        if !b.is_empty() {
            deliver(r.start + a.len() as u64, b);
        }
        self.ranges.remove(0);
        self.bytes -= r.len();
        self.advance(r.end);
        r.end
    }

    /// SACK blocks for what is kept, as stream offsets mapped to sequence numbers by `to_seq`,
    /// at most `max` (RFC 2018 4): the block holding the latest segment first, then the most
    /// recently reported ones — each range ranks by the last segment that fell in it, which is
    /// when it was last reported first — newest first, so that a block reported once is
    /// repeated in the next ACKs, and the one left out is the one reported longest ago.
    pub fn sack(&self, max: usize, to_seq: impl Fn(u64) -> u32) -> SackBlocks {
        let mut sack = SackBlocks::default();
        // Stamps are distinct: the newest below the last one taken, `max` (at most 4) times.
        let mut below = u64::MAX;
        while sack.len() < max {
            let Some(r) = self.ranges.iter().filter(|r| r.stamp < below).max_by_key(|r| r.stamp) else { break };
            if !sack.push((to_seq(r.start), to_seq(r.end))) {
                break;
            }
            below = r.stamp;
        }
        sack
    }

    /// The relations between the ring and the ranges (for [`super::Connection::check_invariants`]).
    pub fn check(&self) -> Result<(), String> {
        if self.ranges.len() > MAX_OUT_OF_ORDER || self.ring.len() > self.capacity {
            return Err(format!("{} ranges, a ring of {} (bound {})", self.ranges.len(), self.ring.len(), self.capacity));
        }
        let mut at = self.base;
        let mut bytes = 0;
        for (i, r) in self.ranges.iter().enumerate() {
            let apart = i == 0 || r.start > at;
            if r.start < at || !apart || r.end <= r.start {
                return Err(format!("out-of-order ranges out of order, overlapping or meeting: {:?}", self.ranges));
            }
            if (r.end - self.base) as usize > self.ring.len() {
                return Err(format!("a range beyond the ring: {r:?} from {} in {}", self.base, self.ring.len()));
            }
            bytes += r.len();
            at = r.end;
        }
        if bytes != self.bytes {
            return Err(format!("out-of-order bytes counted {} but the ranges hold {bytes}", self.bytes));
        }
        let stamps_distinct = self.ranges.iter().enumerate().all(|(i, r)| self.ranges[..i].iter().all(|q| q.stamp != r.stamp));
        if !stamps_distinct || self.ranges.iter().any(|r| r.stamp > self.stamp) {
            return Err(format!("out-of-order ranges' stamps not distinct or ahead of {}: {:?}", self.stamp, self.ranges));
        }
        Ok(())
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
    fn the_send_ring_grows_within_the_memory_allowed_and_gives_it_back_when_empty() {
        let mut b = SendBuffer::with_capacity(100_000);
        assert_eq!(b.room_within(6000), 6000, "what the ring may grow to");
        assert_eq!(b.write_within(&[1; 2000], 6000), 2000);
        assert_eq!(b.allocated(), 4096);
        assert_eq!(b.room_within(6000), 4000);
        assert_eq!(b.write_within(&[2; 5000], 6000), 4000, "grown to the allowance, no further");
        assert_eq!((b.allocated(), b.room_within(6000)), (6000, 0));
        b.ack(1000);
        assert_eq!(b.room_within(100), 1000, "a lower allowance: what is allocated still counts");
        assert_eq!(b.write_within(&[3; 1000], 100), 1000);
        assert_eq!(b.release(), 0, "holds data");
        b.ack(6000);
        assert_eq!((b.release(), b.allocated()), (6000, 0));
        assert_eq!(b.write(b"again"), 5);
        let mut out = Vec::new();
        b.slice(0, 5).copy_to(&mut out);
        assert_eq!(out, b"again");
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

    /// What `drain` handed over: (offset, bytes) per piece.
    fn drained(r: &mut Reassembly, next: u64) -> (u64, Vec<(u64, Vec<u8>)>) {
        let mut got = Vec::new();
        let next = r.drain(next, &mut |at, b| got.push((at, b.to_vec())));
        (next, got)
    }

    #[test]
    fn a_hole_filled_backwards_is_kept_in_one_ring_and_delivered_in_one_piece() {
        // The peer sends a window's segments last first: each joins the range after it.
        let window = 64 << 10;
        let mut r = Reassembly::with_capacity(window);
        let data: Vec<u8> = (0..window as u32).map(|i| (i % 253) as u8).collect();
        for i in (1..64).rev() {
            assert!(r.keep(0, i * 1024, &data[i as usize * 1024..(i as usize + 1) * 1024], window as u64));
            assert_eq!(r.ranges(), 1, "one range, however many segments joined it");
        }
        assert_eq!(r.bytes(), 63 * 1024);
        assert!(r.allocated() <= window + MAX_OUT_OF_ORDER * std::mem::size_of::<Range>(), "{}", r.allocated());
        // The first segment went to the owner directly; the ring continues it.
        let (next, got) = drained(&mut r, 1024);
        assert_eq!(next, window as u64);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, &got[0].1[..]), (1024, &data[1024..]));
        assert!(r.is_empty() && r.bytes() == 0);
    }

    #[test]
    fn the_receive_ring_wraps_and_delivers_in_two_pieces() {
        let mut r = Reassembly::with_capacity(4096);
        assert_eq!(r.allocated(), 0, "nothing before the first out-of-order segment");
        assert!(r.keep(0, 100, &[1; 100], 4096));
        assert!(r.keep(0, 3000, &[5; 50], 4096));
        assert_eq!(r.ring.len(), 4096);
        assert_eq!(drained(&mut r, 100).0, 200);
        // The ring now starts at offset 200 in its middle: the next range wraps round its end.
        let data: Vec<u8> = (0..3990u32).map(|i| i as u8).collect();
        assert!(r.keep(200, 300, &data, 4096));
        assert_eq!((r.ring.len(), r.ranges()), (4096, 1), "no growth (it fits), one range with what it overlapped");
        let (next, got) = drained(&mut r, 300);
        assert_eq!(next, 4290);
        assert_eq!(got.len(), 2, "two pieces");
        assert_eq!(got[1].0, 300 + got[0].1.len() as u64);
        let mut expected = data.clone();
        expected[2700..2750].fill(5); // kept first: not copied again
        assert_eq!([got[0].1.clone(), got[1].1.clone()].concat(), expected);
        r.check().unwrap();
    }

    #[test]
    fn the_receive_ring_grows_only_as_far_as_the_data_reaches_and_a_warm_one_allocates_nothing() {
        let mut r = Reassembly::with_capacity(100_000);
        assert!(r.keep(0, 10, &[1; 10], 100_000));
        assert_eq!(r.ring.len(), 4096);
        assert!(r.keep(0, 20_000, &[2; 10], 100_000));
        assert_eq!(r.ring.len(), 20_010, "grown to what the data reaches");
        assert!(r.keep(0, 99_000, &[3; 5000], 100_000));
        assert_eq!((r.ring.len(), r.bytes()), (100_000, 1020), "never beyond the bound (the window)");
        r.check().unwrap();
        // Rounds of a window's segments arriving last first, then the first: once warm, the
        // allocation stays as it is.
        let mut next = 100_000;
        let mut warm = None;
        for round in 0..50u64 {
            next += round % 7;
            for k in (1..40u64).rev() {
                assert!(r.keep(next, next + k * 1000, &[9; 1000], 100_000));
            }
            r.check().unwrap();
            assert_eq!(drained(&mut r, next + 1000).0, next + 40_000);
            next += 40_000;
            assert!(r.is_empty());
            assert_eq!(*warm.get_or_insert(r.allocated()), r.allocated(), "round {round}");
        }
    }

    #[test]
    fn keeping_is_bounded_by_the_memory_allowed() {
        let mut r = Reassembly::with_capacity(1 << 20);
        assert_eq!(r.keep_within(0, 100, &[1; 100], 1 << 20, 100), Keep::NoMemory, "not even the range list fits");
        assert_eq!(r.allocated(), 0);
        assert_eq!(r.keep_within(0, 100, &[1; 100], 1 << 20, 5000), Keep::Kept);
        assert_eq!(r.ring.len(), 4096);
        // Beyond what the ring can reach within the allowance: the start kept, the rest not.
        assert_eq!(r.keep_within(0, 3000, &[2; 3000], 1 << 20, 5000), Keep::NoMemory);
        assert!(r.allocated() <= 5000 && r.ring.len() > 4096, "grown as far as allowed: {}", r.allocated());
        assert_eq!(r.bytes(), 100 + r.ring.len() - 3000);
        assert_eq!(r.keep_within(0, 100_000, &[3; 10], 1 << 20, 5000), Keep::NoMemory, "nothing of it fits");
        r.check().unwrap();
        assert_eq!(r.release(), 0, "holds data: not released");
    }

    #[test]
    fn an_empty_reassembly_gives_its_memory_back() {
        let mut r = Reassembly::with_capacity(1 << 16);
        assert!(r.keep(0, 10, b"abc", 1 << 16));
        let (next, _) = drained(&mut r, 10);
        assert!(r.is_empty() && r.allocated() > 0);
        assert_eq!(r.release(), 4096 + 4 * std::mem::size_of::<Range>());
        assert_eq!(r.allocated(), 0);
        assert!(r.keep(next, next + 5, b"again", 1 << 16));
        assert_eq!(drained(&mut r, next + 5), (next + 10, vec![(next + 5, b"again".to_vec())]));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The stream's byte at `offset`.
        fn byte(offset: u64) -> u8 {
            (offset * 7 % 251) as u8
        }

        proptest! {
            /// Whatever segments arrive, in whatever order, within whatever memory: the bytes
            /// come out in order, once, as sent; the ring never outgrows its bounds; and once
            /// the sender fills every hole in order, everything was delivered.
            #[test]
            fn any_arrival_order_delivers_each_byte_once_in_order(
                segments in prop::collection::vec((0u64..30_000, 1usize..3000, prop::option::of(200usize..20_000)), 1..200),
            ) {
                const WINDOW: usize = 16_384;
                let stream: Vec<u8> = (0..40_000).map(byte).collect();
                let mut r = Reassembly::with_capacity(WINDOW);
                let mut next = 0u64;
                let check = |next: &mut u64, r: &mut Reassembly| {
                    let mut at = *next;
                    let new = r.drain(*next, &mut |offset, bytes| {
                        assert_eq!(offset, at, "in order, once");
                        assert_eq!(bytes, &stream[offset as usize..offset as usize + bytes.len()]);
                        at += bytes.len() as u64;
                    });
                    assert_eq!(new, at);
                    *next = new;
                };
                for (i, &(start, len, memory)) in segments.iter().enumerate() {
                    let end = (start as usize + len).min(stream.len());
                    let data = &stream[start as usize..end];
                    if i % 5 == 4 || start <= next {
                        // In order (or overlapping what was delivered): the owner has it directly.
                        let to = next.max(end as u64);
                        next = to;
                        check(&mut next, &mut r);
                    } else {
                        let before = r.allocated();
                        let max = memory.unwrap_or(usize::MAX);
                        let kept = r.keep_within(next, start, data, WINDOW as u64, max);
                        prop_assert!(r.allocated() <= max.max(before), "{} allocated, {max} allowed", r.allocated());
                        prop_assert!(memory.is_some() || kept != Keep::NoMemory);
                    }
                    prop_assert!(r.check().is_ok(), "{:?}", r.check());
                    prop_assert!(r.bytes() <= WINDOW && r.ring.len() <= WINDOW);
                }
                // The sender fills the holes in order.
                while next < stream.len() as u64 {
                    next += 1;
                    check(&mut next, &mut r);
                }
                prop_assert!(r.is_empty());
            }
        }
    }
}
