//! Properties of the reassembler: any segmentation, order, duplication and overlap of a
//! stream gives back the stream; lost segments give gaps at the right offsets, never wrong bytes;
//! with a sink that holds packets and with one that grows copies of contiguous segments.

use mbox_stack::tcp::stream::{Source, Stream, StreamLimits, StreamSink, StreamSinkKeep};
use proptest::prelude::*;

/// Rebuilds what the stream reports, checking that offsets are contiguous.
#[derive(Default)]
struct Rebuild {
    /// Keeps copies it can grow (up to `GROW_LIMIT` bytes), as a live shard does.
    copies: bool,
    current: Vec<u8>,
    kept: Vec<Option<Vec<u8>>>,
    /// Bytes by offset (None: a gap).
    out: Vec<Option<u8>>,
}

impl StreamSinkKeep for Rebuild {
    fn keep(&mut self) -> Option<u32> {
        self.kept.push(Some(self.current.clone()));
        Some(self.kept.len() as u32 - 1)
    }
    fn unkeep(&mut self, token: u32) {
        assert!(self.kept[token as usize].take().is_some(), "let go twice");
    }
    fn extend_kept(&mut self, token: u32) -> bool {
        let kept = self.kept[token as usize].as_mut().expect("extends a kept segment");
        if !self.copies || kept.len() + self.current.len() > GROW_LIMIT {
            return false;
        }
        kept.extend_from_slice(&self.current);
        true
    }
    fn merge_kept(&mut self, token: u32, next: u32) -> bool {
        let tail = self.kept[next as usize].clone().expect("merges a kept segment");
        let kept = self.kept[token as usize].as_mut().expect("merges into a kept segment");
        if !self.copies || kept.len() + tail.len() > GROW_LIMIT {
            return false;
        }
        kept.extend_from_slice(&tail);
        true
    }
}

/// Small, so that the properties also cover a copy that cannot grow further.
const GROW_LIMIT: usize = 600;

impl StreamSink for Rebuild {
    fn data(&mut self, _dir: u8, offset: u64, len: u32, source: Source) {
        assert_eq!(offset, self.out.len() as u64, "data at the next offset");
        let (buf, start) = match source {
            Source::Current { start } => (&self.current, start),
            Source::Kept { token, start } => (self.kept[token as usize].as_ref().expect("kept"), start),
        };
        let bytes: Vec<Option<u8>> = buf[start as usize..start as usize + len as usize].iter().map(|b| Some(*b)).collect();
        self.out.extend(bytes);
    }
    fn gap(&mut self, _dir: u8, offset: u64, len: u64, _reason: u8) {
        assert_eq!(offset, self.out.len() as u64, "gap at the next offset");
        self.out.extend(std::iter::repeat_n(None, len as usize));
    }
}

const LIMITS: StreamLimits = StreamLimits { max_kept: 100_000, max_distance: u32::MAX / 2 };

/// Segments (offset, len) covering the stream, plus retransmissions with other boundaries.
fn segments(len: usize, cuts: &[prop::sample::Index], extra: &[(prop::sample::Index, prop::sample::Index)]) -> Vec<(usize, usize)> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    bounds.push(0);
    bounds.push(len);
    bounds.sort();
    bounds.dedup();
    let mut segs: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
    for (a, b) in extra {
        let (x, y) = (a.index(len + 1), b.index(len + 1));
        let (lo, hi) = (x.min(y), x.max(y));
        if hi > lo {
            segs.push((lo, hi - lo));
        }
    }
    segs
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn feed(stream: &mut Stream, sink: &mut Rebuild, isn: u32, data: &[u8], (off, len): (usize, usize)) {
    sink.current = data[off..off + len].to_vec();
    stream.segment(0, isn.wrapping_add(1).wrapping_add(off as u32), false, len as u32, len as u32, LIMITS, sink);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn any_segmentation_order_and_duplication_rebuilds_the_stream(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        isn in any::<u32>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        extra in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..10),
        order in any::<u64>(),
        copies in any::<bool>(),
    ) {
        let mut segs = segments(data.len(), &cuts, &extra);
        shuffle(&mut segs, order);
        let fed: usize = segs.iter().map(|&(_, len)| len).sum();
        let (mut stream, mut sink) = (Stream::default(), Rebuild { copies, ..Rebuild::default() });
        // The SYN comes first: it fixes where the stream starts.
        stream.segment(0, isn, true, 0, 0, LIMITS, &mut sink);
        for seg in segs {
            feed(&mut stream, &mut sink, isn, &data, seg);
        }
        stream.finish(0, &mut sink);
        let out: Vec<u8> = sink.out.iter().map(|b| b.expect("no gap")).collect();
        prop_assert_eq!(out, data);
        // Every byte fed is accounted for: reported once, or counted as old.
        prop_assert_eq!(stream.stats.delivered + stream.stats.old_bytes, fed as u64);
        prop_assert!(sink.kept.iter().all(Option::is_none), "every kept segment was let go");
    }

    #[test]
    fn lost_segments_become_gaps_and_every_reported_byte_is_right(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        isn in any::<u32>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 1..40),
        lost in proptest::collection::vec(any::<bool>(), 40),
        order in any::<u64>(),
        ack_every in 1usize..6,
        copies in any::<bool>(),
    ) {
        let mut segs = segments(data.len(), &cuts, &[]);
        let last = *segs.last().unwrap();
        // Lose some segments (never the last, so the stream's end is known).
        let mut kept_segs: Vec<_> = segs.drain(..).enumerate().filter(|(i, s)| *s == last || !lost[i % lost.len()]).map(|(_, s)| s).collect();
        shuffle(&mut kept_segs, order);
        let (mut stream, mut sink) = (Stream::default(), Rebuild { copies, ..Rebuild::default() });
        stream.segment(0, isn, true, 0, 0, LIMITS, &mut sink);
        let mut high = 0;
        for (i, seg) in kept_segs.into_iter().enumerate() {
            feed(&mut stream, &mut sink, isn, &data, seg);
            high = high.max(seg.0 + seg.1);
            if i % ack_every == 0 {
                // The receiver acknowledges what it got (it got everything up to `high`).
                stream.peer_ack(0, isn.wrapping_add(1).wrapping_add(high as u32), &mut sink);
            }
        }
        stream.finish(0, &mut sink);
        prop_assert!(sink.out.len() <= data.len());
        for (i, b) in sink.out.iter().enumerate() {
            if let Some(b) = b {
                prop_assert_eq!(*b, data[i], "byte {} is the stream's byte", i);
            }
        }
        prop_assert_eq!(sink.out.len(), data.len(), "data and gaps reach the end");
        prop_assert!(sink.kept.iter().all(Option::is_none));
    }
}
