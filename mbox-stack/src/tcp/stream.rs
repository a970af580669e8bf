//! One direction of a TCP connection as a bytestream: in-order bytes are reported at once,
//! out-of-order segments are kept until the hole before them fills, and holes that will never
//! fill are reported as gaps.
//!
//! Nothing is copied here. A segment's bytes stay in its packet: the stream reports ranges of
//! "the current packet" or of a segment kept earlier (the sink keeps the packet alive and gives
//! a token for it). Offsets count from the stream's first byte and include gaps.
//!
//! Policy, chosen to agree with the reference (tshark 4.0's `follow`, see
//! testdata/pcaps/README.md) on every capture without holes:
//! - The stream starts at the first segment seen in this direction (+1 for a SYN); data before
//!   that start that arrives later is old and dropped (counted).
//! - Data on a SYN (without ACK) is held until the receiver's SYN+ACK: one that acknowledges
//!   the data (TCP Fast Open) releases it, one that acknowledges the SYN alone means the
//!   receiver dropped it (as a server does without a Fast Open cookie for it), so it is not
//!   reported: the client sends those bytes again after the handshake, and what it sends then is
//!   what the server reads (Suricata does the same; counted as `not_accepted`).
//! - A segment that arrived out of order beyond the receiver's window (the connection decides,
//!   see `tcp`) was dropped by the receiver: it is kept but not reported, even once the hole
//!   before it fills, until the receiver acknowledges bytes from its start on (it took it: the
//!   monitor's idea of the window was wrong); a copy arriving in the window wins, and one
//!   never acknowledged is let go (`not_accepted`).
//! - Retransmissions and overlaps: bytes already reported are never reported again. Among kept
//!   segments, the earliest to arrive that reaches the next expected byte is used first, so for
//!   overlapping copies the first copy wins; a segment arriving in order wins over copies kept
//!   beyond it.
//! - A hole is given up (a gap, reason `not_captured`) when the other side acknowledges data
//!   beyond it and a later segment is kept: the receiver got the bytes, the capture did not.
//! - A segment cut short by the capture's snaplen reports its captured bytes and a gap
//!   (`truncated`) for the rest.
//! - When the flow ends, kept data behind holes is reported after gaps (`at_end`), rather than
//!   lost; the reference drops such data (it lists it as `stuck`).
//! - Keeping is bounded (per flow here, per shard by the sink): a segment that cannot be kept is
//!   dropped and its bytes are reported as a gap (`memory`) once the stream moves past them, or
//!   when the flow ends. A sink that keeps copies may grow a kept segment with the segments that
//!   continue it, so that a hole costs one kept entry (see `StreamSinkKeep::extend_kept`).

use mbox_abi::{GAP_AT_END, GAP_MEMORY, GAP_NOT_CAPTURED, GAP_TRUNCATED};

/// Where the bytes of a reported range are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// In the packet being processed: from byte `start` of its TCP payload.
    Current { start: u32 },
    /// In a segment kept earlier: from byte `start` of its payload.
    Kept { token: u32, start: u32 },
}

/// Keeping segments: the part of a [`StreamSink`] that owns packets.
pub trait StreamSinkKeep {
    /// Keeps the current packet for later (its payload is out of order). `None` when a bound
    /// is reached; the segment is then dropped.
    fn keep(&mut self) -> Option<u32>;
    /// Lets go of a kept segment.
    fn unkeep(&mut self, token: u32);
    /// Appends the current packet's payload to kept segment `token`, whose bytes it continues
    /// exactly. Only a sink that keeps copies can (a held packet cannot grow); `false` when it
    /// cannot or a bound is reached, and the segment is then kept on its own.
    fn extend_kept(&mut self, _token: u32) -> bool {
        false
    }
    /// Appends kept segment `next`'s bytes to kept segment `token`, whose bytes they continue
    /// exactly (the stream lets go of `next` itself afterwards). `false` as for `extend_kept`.
    fn merge_kept(&mut self, _token: u32, _next: u32) -> bool {
        false
    }
}

/// What the stream reports to; the host's shard, or an NF running its own stack.
pub trait StreamSink: StreamSinkKeep {
    /// Bytes `[offset, offset + len)` of direction `dir` are ready, at `source`.
    fn data(&mut self, dir: u8, offset: u64, len: u32, source: Source);
    /// Bytes `[offset, offset + len)` of direction `dir` will never be reported.
    fn gap(&mut self, dir: u8, offset: u64, len: u64, reason: u8);
    /// Direction `dir`'s stream is complete at `offset` (`END_FIN` or `END_RST`); reported once.
    fn end(&mut self, _dir: u8, _offset: u64, _reason: u8) {}
}

/// What one direction's stream counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes reported as data.
    pub delivered: u64,
    /// Bytes reported as gaps, and how many gaps.
    pub gap_bytes: u64,
    pub gaps: u64,
    /// Of the gaps, those the receiver acknowledged past: bytes it got that the monitor never
    /// saw (lost before the capture, or on another shard's queue).
    pub gaps_acknowledged: u64,
    /// Bytes dropped because they lay before the stream's start or were already reported.
    pub old_bytes: u64,
    /// Segments kept out of order.
    pub kept: u64,
    /// Segments that could not be kept (a bound).
    pub not_kept: u64,
    /// Bytes the receiver did not take, so never reported: data on a SYN its SYN+ACK did not
    /// acknowledge, and segments starting beyond the window it advertised (see `tcp`).
    pub not_accepted: u64,
}

impl std::ops::AddAssign for StreamStats {
    fn add_assign(&mut self, o: StreamStats) {
        self.delivered += o.delivered;
        self.gap_bytes += o.gap_bytes;
        self.gaps += o.gaps;
        self.gaps_acknowledged += o.gaps_acknowledged;
        self.old_bytes += o.old_bytes;
        self.kept += o.kept;
        self.not_kept += o.not_kept;
        self.not_accepted += o.not_accepted;
    }
}

/// A segment kept out of order: stream offsets of its payload, and what of it was captured.
#[derive(Debug, Clone, Copy)]
struct Kept {
    /// Offset of the segment's first payload byte (which may lie before `next` by now).
    origin: u64,
    /// End of its payload, and end of the captured part.
    end: u64,
    captured_end: u64,
    token: u32,
    /// It arrived beyond the receiver's window: held back until the receiver acknowledges
    /// bytes from its start on (see [`Stream::segment_in`]).
    beyond_window: bool,
}

/// The state of one direction. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    started: bool,
    /// Sequence number and stream offset of the next byte expected.
    next_seq: u32,
    next_off: u64,
    /// Kept segments in arrival order. The vector keeps its capacity across flows (the
    /// connection slot is reused), so keeping allocates only while the table warms up.
    kept: Vec<Kept>,
    /// Range covering the data dropped for want of room: a later gap over it is `memory`.
    lost_to_memory: Option<(u64, u64)>,
    /// A SYN's payload waiting for the receiver's answer, and the sequence number of its first
    /// byte (see [`Stream::syn_segment`]).
    syn_data: Option<(u32, Kept)>,
    pub stats: StreamStats,
}

/// Bounds on what a stream keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Segments kept out of order per direction.
    pub max_kept: usize,
    /// How far beyond the next expected byte a segment may start and still be kept.
    pub max_distance: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits { max_kept: 256, max_distance: 1 << 24 }
    }
}

/// `a - b` on the sequence-number circle, as a signed distance.
#[inline]
pub fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl Stream {
    /// Resets for a new flow, keeping the kept-segment vector's capacity.
    pub fn reset(&mut self) {
        let kept = std::mem::take(&mut self.kept);
        *self = Stream { kept, ..Stream::default() };
        self.kept.clear();
    }

    /// True once a segment of this direction was seen.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Stream offset of the next byte expected (bytes reported plus gaps).
    pub fn next_offset(&self) -> u64 {
        self.next_off
    }

    /// Sequence number of the next byte expected.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Number of kept segments (held SYN data included).
    pub fn kept_len(&self) -> usize {
        self.kept.len() + usize::from(self.syn_data.is_some())
    }

    /// Starts the stream at the first segment seen: `seq`, +1 for a SYN. A SYN seen before any
    /// byte of the direction restarts it (a repeated SYN+ACK with a new sequence number, or a
    /// SYN after a reset: the last SYN defines the stream, as the reference has it).
    pub fn start_if_new(&mut self, seq: u32, syn: bool) {
        let restart = syn && self.next_off == 0 && self.kept.is_empty();
        if !self.started || restart {
            self.started = true;
            self.next_seq = seq.wrapping_add(u32::from(syn));
            self.next_off = 0;
            // Offsets of the stream before the restart mean nothing now.
            self.lost_to_memory = None;
        }
    }

    /// Only counts: moves `next` past in-order data without reporting it (no subscriber wants
    /// this flow's bytes).
    pub fn track(&mut self, seq: u32, syn: bool, len: u32) {
        self.start_if_new(seq, syn);
        let data_seq = seq.wrapping_add(u32::from(syn));
        let end_seq = data_seq.wrapping_add(len);
        let ahead = seq_diff(end_seq, self.next_seq);
        if len > 0 && ahead > 0 {
            self.next_off += ahead as u64;
            self.next_seq = end_seq;
        }
    }

    /// Takes a SYN without ACK: `len` payload bytes declared from `seq + 1`, of which the first
    /// `captured` are in the packet. Data that would be the stream's first bytes is held until
    /// the receiver answers ([`Stream::syn_answered`], or an ACK past it in
    /// [`Stream::peer_ack`]; the flow's end reports it): a server without a Fast Open cookie
    /// for it acknowledges the SYN alone and drops the bytes, and the client sends the stream
    /// again after the handshake — maybe other bytes, which are what the server reads.
    pub fn syn_segment<S: StreamSink>(&mut self, dir: u8, seq: u32, len: u32, captured: u32, limits: StreamLimits, sink: &mut S) {
        let data_seq = seq.wrapping_add(1);
        if let Some((held_seq, held)) = self.syn_data {
            if held_seq == data_seq {
                // The SYN again: the copy held first wins.
                self.stats.old_bytes += u64::from(len);
                return;
            }
            // Another ISN: the last SYN defines the stream, the old one's bytes mean nothing.
            self.syn_data = None;
            self.stats.old_bytes += held.end - held.origin;
            sink.unkeep(held.token);
        }
        let first_bytes = !self.started || (self.next_off == 0 && self.kept.is_empty());
        if len == 0 || !first_bytes {
            self.segment(dir, seq, true, len, captured, limits, sink);
            return;
        }
        self.start_if_new(seq, true);
        match sink.keep() {
            Some(token) => {
                self.stats.kept += 1;
                let (end, captured_end) = (u64::from(len), u64::from(captured.min(len)));
                self.syn_data = Some((data_seq, Kept { origin: 0, end, captured_end, token, beyond_window: false }));
            }
            // Nowhere to hold it: reported now (what the receiver does with it is not known).
            None => self.segment(dir, seq, true, len, captured, limits, sink),
        }
    }

    /// The receiver's SYN+ACK acknowledged `ack`: held SYN data is released when the answer
    /// acknowledges any of it, and dropped (counted as `not_accepted`) when it acknowledges the
    /// SYN alone.
    pub fn syn_answered<S: StreamSink>(&mut self, dir: u8, ack: u32, sink: &mut S) {
        let Some((seq, held)) = self.syn_data else { return };
        if ack == seq {
            self.syn_data = None;
            self.stats.not_accepted += held.end - held.origin;
            sink.unkeep(held.token);
        } else {
            self.release_syn_data(dir, sink);
        }
    }

    /// Reports held SYN data (now, or as soon as the stream reaches it).
    fn release_syn_data<S: StreamSink>(&mut self, dir: u8, sink: &mut S) {
        if let Some((_, held)) = self.syn_data.take() {
            self.kept.push(held);
            self.drain(dir, sink);
        }
    }

    /// Takes one segment: `len` payload bytes declared from `seq` (+1 for a SYN), of which the
    /// first `captured` are in the packet.
    #[allow(clippy::too_many_arguments)]
    pub fn segment<S: StreamSink>(&mut self, dir: u8, seq: u32, syn: bool, len: u32, captured: u32, limits: StreamLimits, sink: &mut S) {
        self.segment_in(dir, seq, syn, len, captured, false, limits, sink);
    }

    /// [`Stream::segment`] for a segment that may have arrived beyond the window its receiver
    /// advertised (`beyond_window`, which the connection knows): the receiver dropped it, unless
    /// the monitor's idea of the window is wrong. Such a segment is kept even in order, and
    /// reported only once the receiver acknowledges bytes from its start on ([`Stream::peer_ack`]:
    /// it took them after all). A copy of its bytes that arrives in the window wins; what is
    /// never acknowledged is let go (counted as `not_accepted`), even at the flow's end.
    #[allow(clippy::too_many_arguments)]
    pub fn segment_in<S: StreamSink>(
        &mut self,
        dir: u8,
        seq: u32,
        syn: bool,
        len: u32,
        captured: u32,
        beyond_window: bool,
        limits: StreamLimits,
        sink: &mut S,
    ) {
        self.start_if_new(seq, syn);
        if len == 0 {
            return;
        }
        let data_seq = seq.wrapping_add(u32::from(syn));
        let rel = seq_diff(data_seq, self.next_seq);
        let end_rel = rel + i64::from(len);
        if end_rel <= 0 {
            self.stats.old_bytes += u64::from(len);
            return;
        }
        let end = self.next_off + end_rel as u64;
        if rel <= 0 && !beyond_window {
            // In order (possibly starting with bytes already reported, which are skipped).
            let skip = (-rel) as u64;
            self.stats.old_bytes += skip;
            let captured_end = (self.next_off + u64::from(captured.min(len))).saturating_sub(skip).max(self.next_off);
            self.deliver(dir, skip, end, captured_end, None, sink);
            self.drain(dir, sink);
            return;
        }
        let Some(origin) = self.next_off.checked_add_signed(rel) else {
            // Beyond the window and reaching back before the stream's start: nothing to keep.
            self.stats.not_accepted += u64::from(len);
            return;
        };
        let captured_end = origin + u64::from(captured.min(len));
        if rel > i64::from(limits.max_distance) {
            self.not_kept_in(origin, end, len, beyond_window);
            return;
        }
        // Beyond a hole. The usual case after a loss is a run of segments, each continuing one
        // kept before: a copying sink grows that one, so a hole costs one kept entry however
        // many segments follow it (and the kept bound counts holes, not segments).
        if captured == len && self.only_copy_of(origin, end, None) {
            let continued = |k: &Kept| k.end == origin && k.captured_end == k.end && k.beyond_window == beyond_window;
            if let Some(i) = self.kept.iter().position(continued) {
                if sink.extend_kept(self.kept[i].token) {
                    self.stats.kept += 1;
                    (self.kept[i].end, self.kept[i].captured_end) = (end, captured_end);
                    self.absorb_following(i, sink);
                    return;
                }
            }
        }
        let kept = if self.kept_len() >= limits.max_kept { None } else { sink.keep() };
        match kept {
            Some(token) => {
                self.stats.kept += 1;
                self.kept.push(Kept { origin, end, captured_end, token, beyond_window });
                self.absorb_following(self.kept.len() - 1, sink);
            }
            None => self.not_kept_in(origin, end, len, beyond_window),
        }
    }

    /// A segment that could not be kept: a `memory` gap later, unless it was beyond the
    /// receiver's window (then most likely dropped by the receiver too: only counted).
    fn not_kept_in(&mut self, origin: u64, end: u64, len: u32, beyond_window: bool) {
        if beyond_window {
            self.stats.not_accepted += u64::from(len);
        } else {
            self.not_kept(origin, end);
        }
    }

    /// True if no kept segment but `except` holds bytes of `[origin, end)`. Growing a kept copy
    /// over bytes another one holds would change which copy wins (the first to arrive).
    fn only_copy_of(&self, origin: u64, end: u64, except: Option<usize>) -> bool {
        self.kept.iter().enumerate().all(|(j, k)| Some(j) == except || k.origin >= end || k.end <= origin)
    }

    /// Merges into kept segment `i` the kept segments that continue it exactly (a reordered
    /// run fills in between them), while the sink can grow it.
    fn absorb_following<S: StreamSinkKeep>(&mut self, mut i: usize, sink: &mut S) {
        loop {
            let k = self.kept[i];
            if k.captured_end != k.end {
                return;
            }
            let continues = |o: &Kept| o.origin == k.end && o.captured_end == o.end && o.beyond_window == k.beyond_window;
            let Some(j) = self.kept.iter().position(continues) else { return };
            let o = self.kept[j];
            if !self.only_copy_of(o.origin, o.end, Some(j)) || !sink.merge_kept(k.token, o.token) {
                return;
            }
            (self.kept[i].end, self.kept[i].captured_end) = (o.end, o.captured_end);
            self.kept.remove(j);
            sink.unkeep(o.token);
            if j < i {
                i -= 1;
            }
        }
    }

    /// A segment beyond a hole could not be kept: its bytes become a `memory` gap later.
    fn not_kept(&mut self, origin: u64, end: u64) {
        self.stats.not_kept += 1;
        let (lo, hi) = self.lost_to_memory.unwrap_or((origin, end));
        self.lost_to_memory = Some((lo.min(origin), hi.max(end)));
    }

    /// The other side acknowledged `ack`: if that is beyond a hole with data kept after it,
    /// the hole was not captured; report it and go on.
    pub fn peer_ack<S: StreamSink>(&mut self, dir: u8, ack: u32, sink: &mut S) {
        if self.syn_data.is_some_and(|(seq, _)| seq_diff(ack, seq) > 0) {
            // The receiver has held SYN data (its SYN+ACK was not captured).
            self.release_syn_data(dir, sink);
        }
        if self.kept.is_empty() {
            return; // the usual case: nothing kept, nothing to look at
        }
        // Segments that arrived beyond the window and whose bytes the receiver acknowledges:
        // it took them.
        let (next_seq, next_off) = (self.next_seq, self.next_off);
        let mut taken = false;
        for k in self.kept.iter_mut().filter(|k| k.beyond_window) {
            let start = next_seq.wrapping_add(k.origin.wrapping_sub(next_off) as u32);
            if seq_diff(ack, start) > 0 {
                k.beyond_window = false;
                taken = true;
            }
        }
        if taken {
            self.drain(dir, sink);
        }
        let Some(lowest) = self.kept.iter().map(|k| k.origin).min() else { return };
        if lowest <= self.next_off {
            return;
        }
        let lowest_seq = self.next_seq.wrapping_add((lowest - self.next_off) as u32);
        if seq_diff(ack, lowest_seq) > 0 {
            self.stats.gaps_acknowledged += 1;
            self.skip_to(dir, lowest, GAP_NOT_CAPTURED, sink);
            self.drain(dir, sink);
        }
    }

    /// The flow ended: reports kept data after gaps, and lets go of every kept segment.
    pub fn finish<S: StreamSink>(&mut self, dir: u8, sink: &mut S) {
        // SYN data nobody answered: reported as seen. Segments beyond the window that the
        // receiver never acknowledged: it did not take them.
        if let Some((_, held)) = self.syn_data.take() {
            self.kept.push(held);
        }
        let mut i = 0;
        while i < self.kept.len() {
            if self.kept[i].beyond_window {
                let k = self.kept.remove(i);
                self.stats.not_accepted += k.end - k.origin;
                sink.unkeep(k.token);
            } else {
                i += 1;
            }
        }
        while let Some(lowest) = self.kept.iter().map(|k| k.origin).min() {
            if lowest > self.next_off {
                self.skip_to(dir, lowest, GAP_AT_END, sink);
            }
            let before = self.kept.len();
            self.drain(dir, sink);
            if self.kept.len() == before {
                break; // cannot happen (drain consumes what starts at `next`); stay finite
            }
        }
        for k in self.kept.drain(..) {
            sink.unkeep(k.token);
        }
        // Data seen but not kept and never sent again: a gap, so that the loss is explicit (and
        // the hole before it, never seen at all, one of its own).
        if let Some((lo, hi)) = self.lost_to_memory.filter(|&(_, hi)| hi > self.next_off) {
            if lo > self.next_off {
                self.skip_to(dir, lo, GAP_AT_END, sink);
            }
            self.skip_to(dir, hi, GAP_MEMORY, sink);
        }
    }

    /// Lets go of every kept segment without reporting it (reassembly stopped for this flow).
    pub fn abandon<S: StreamSinkKeep>(&mut self, sink: &mut S) {
        let held = self.syn_data.take().map(|(_, k)| k);
        for k in self.kept.drain(..).chain(held) {
            sink.unkeep(k.token);
        }
        // Nothing is reported from now on, not even what was lost before.
        self.lost_to_memory = None;
    }

    /// Events `finish` may emit at most: per kept segment a gap before it, its data and a gap
    /// for a truncated tail; then a hole and a gap over data that could not be kept.
    pub fn events_to_finish(&self) -> usize {
        3 * (self.kept.len() + usize::from(self.syn_data.is_some())) + 2 * usize::from(self.lost_to_memory.is_some())
    }

    /// Reports a gap up to `to` and moves `next` there.
    fn skip_to<S: StreamSink>(&mut self, dir: u8, to: u64, default_reason: u8, sink: &mut S) {
        let len = to - self.next_off;
        let memory = self.lost_to_memory.is_some_and(|(lo, hi)| lo < to && hi > self.next_off);
        let reason = if memory { GAP_MEMORY } else { default_reason };
        sink.gap(dir, self.next_off, len, reason);
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        self.next_off = to;
    }

    /// Reports `[next, end)` of a segment whose payload byte `start` is the next expected
    /// byte: the captured part (up to `captured_end`) as data, the rest as a truncation gap.
    /// `kept` names the kept segment, or `None` for the current packet.
    fn deliver<S: StreamSink>(&mut self, dir: u8, start: u64, end: u64, captured_end: u64, kept: Option<u32>, sink: &mut S) {
        debug_assert!(self.next_off < end);
        if captured_end > self.next_off {
            // Segments are at most 64 KiB (IP) and a sink bounds what it grows a kept one to,
            // so a range always fits a u32.
            let len = (captured_end - self.next_off) as u32;
            let start = start as u32;
            let source = match kept {
                Some(token) => Source::Kept { token, start },
                None => Source::Current { start },
            };
            sink.data(dir, self.next_off, len, source);
            self.stats.delivered += u64::from(len);
            self.next_seq = self.next_seq.wrapping_add(len);
            self.next_off = captured_end;
        }
        if end > self.next_off {
            self.skip_to(dir, end, GAP_TRUNCATED, sink);
        }
    }

    /// Reports kept segments that now reach `next`, earliest arrival first (those beyond the
    /// window wait), and lets go of those entirely behind it.
    fn drain<S: StreamSink>(&mut self, dir: u8, sink: &mut S) {
        loop {
            let next = self.next_off;
            let Some(i) = self.kept.iter().position(|k| k.origin <= next && k.end > next && !k.beyond_window) else { break };
            let k = self.kept.remove(i);
            // Its head overlapped bytes reported already (a retransmission or another copy).
            self.stats.old_bytes += next - k.origin;
            self.deliver(dir, next - k.origin, k.end, k.captured_end, Some(k.token), sink);
            sink.unkeep(k.token);
        }
        let next = self.next_off;
        let mut i = 0;
        while i < self.kept.len() {
            if self.kept[i].end <= next {
                let k = self.kept.remove(i);
                if k.beyond_window {
                    // Its bytes came again in the window: the receiver took that copy.
                    self.stats.not_accepted += k.end - k.origin;
                } else {
                    self.stats.old_bytes += k.end - k.origin;
                }
                sink.unkeep(k.token);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that rebuilds the stream from the payloads the test hands it.
    #[derive(Default)]
    struct Rebuild {
        /// Payload of the current packet, and of kept packets by token.
        current: Vec<u8>,
        kept: Vec<Option<Vec<u8>>>,
        out: Vec<u8>,
        gaps: Vec<(u64, u64, u8)>,
        data_events: usize,
        capacity: usize,
        /// Grows kept copies (as a live shard does) instead of keeping each segment alone.
        copies: bool,
        /// Offsets must be contiguous: data and gaps together cover the stream exactly once.
        expect: u64,
    }

    impl StreamSinkKeep for Rebuild {
        fn keep(&mut self) -> Option<u32> {
            if self.kept.iter().filter(|k| k.is_some()).count() >= self.capacity {
                return None;
            }
            self.kept.push(Some(self.current.clone()));
            Some(self.kept.len() as u32 - 1)
        }
        fn unkeep(&mut self, token: u32) {
            assert!(self.kept[token as usize].take().is_some(), "unkept twice");
        }
        fn extend_kept(&mut self, token: u32) -> bool {
            if self.copies {
                self.kept[token as usize].as_mut().unwrap().extend_from_slice(&self.current);
            }
            self.copies
        }
        fn merge_kept(&mut self, token: u32, next: u32) -> bool {
            if self.copies {
                let tail = self.kept[next as usize].clone().unwrap();
                self.kept[token as usize].as_mut().unwrap().extend_from_slice(&tail);
            }
            self.copies
        }
    }

    impl StreamSink for Rebuild {
        fn data(&mut self, _dir: u8, offset: u64, len: u32, source: Source) {
            assert_eq!(offset, self.expect);
            let bytes = match source {
                Source::Current { start } => &self.current[start as usize..start as usize + len as usize],
                Source::Kept { token, start } => {
                    &self.kept[token as usize].as_ref().unwrap()[start as usize..start as usize + len as usize]
                }
            };
            self.out.extend_from_slice(bytes);
            self.data_events += 1;
            self.expect += u64::from(len);
        }
        fn gap(&mut self, _dir: u8, offset: u64, len: u64, reason: u8) {
            assert_eq!(offset, self.expect);
            self.gaps.push((offset, len, reason));
            self.expect += len;
        }
    }

    fn seg(s: &mut Stream, sink: &mut Rebuild, seq: u32, payload: &[u8]) {
        sink.current = payload.to_vec();
        let n = payload.len() as u32;
        s.segment(0, seq, false, n, n, StreamLimits::default(), sink);
    }

    #[test]
    fn out_of_order_segments_wait_for_the_hole() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        s.segment(0, 999, true, 0, 0, StreamLimits::default(), &mut k); // SYN: starts at 1000
        seg(&mut s, &mut k, 1006, b"world");
        seg(&mut s, &mut k, 1011, b"!");
        assert_eq!(k.out, b"");
        seg(&mut s, &mut k, 1000, b"hello ");
        assert_eq!(k.out, b"hello world!");
        assert_eq!(s.kept_len(), 0);
        assert!(k.kept.iter().all(Option::is_none), "every kept segment was let go");
    }

    #[test]
    fn a_copying_sink_keeps_a_run_after_a_hole_as_one_range() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, copies: true, ..Default::default() });
        s.segment(0, 999, true, 0, 0, StreamLimits::default(), &mut k);
        for (i, part) in [b"wo", b"rl", b"d!"].iter().enumerate() {
            seg(&mut s, &mut k, 1006 + 2 * i as u32, *part);
        }
        seg(&mut s, &mut k, 1020, b"z"); // after a second hole: a range of its own
        assert_eq!((s.kept_len(), s.stats.kept), (2, 4));
        seg(&mut s, &mut k, 1000, b"hello ");
        assert_eq!(k.out, b"hello world!");
        assert_eq!(k.data_events, 2, "the range came as one event");
        // A reordered run after a hole: the ranges it leaves between them merge as it fills in.
        seg(&mut s, &mut k, 1032, b"ij");
        seg(&mut s, &mut k, 1028, b"ef");
        seg(&mut s, &mut k, 1030, b"gh"); // joins "ef" and "ij"
        seg(&mut s, &mut k, 1026, b"cd"); // and "cd" joins them too
        assert_eq!(s.kept_len(), 2, "the run and \"z\"");
        // A copy never grows over bytes another kept copy holds, which arrived first and wins.
        seg(&mut s, &mut k, 1014, b"AA");
        seg(&mut s, &mut k, 1015, b"BBB"); // overlaps "AA": kept alone
        seg(&mut s, &mut k, 1016, b"NN"); // continues "AA", but "BBB" holds these bytes
        seg(&mut s, &mut k, 1012, b"ef");
        assert_eq!(k.out, b"hello world!efAABB");
        seg(&mut s, &mut k, 1018, b"XX");
        // In order, over the run kept at 1026..1034: it wins, the run gives the rest.
        seg(&mut s, &mut k, 1021, b"0123456789");
        assert_eq!(k.out, b"hello world!efAABBXXz0123456789hij");
        assert_eq!(s.kept_len(), 0);
    }

    #[test]
    fn retransmissions_and_overlaps_report_each_byte_once_first_copy_wins() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, 0, b"abcd");
        seg(&mut s, &mut k, 0, b"abcd"); // retransmission
        seg(&mut s, &mut k, 2, b"cdef"); // overlap: only "ef" is new
        seg(&mut s, &mut k, 10, b"XXXX"); // kept first
        seg(&mut s, &mut k, 10, b"kkkk"); // a later copy of the same bytes
        seg(&mut s, &mut k, 6, b"ghij");
        assert_eq!(k.out, b"abcdefghijXXXX");
        assert_eq!(s.stats.old_bytes, 4 + 2 + 4);
    }

    #[test]
    fn an_acknowledged_hole_becomes_a_gap_and_the_stream_goes_on() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, 0, b"ab");
        seg(&mut s, &mut k, 5, b"fg");
        s.peer_ack(0, 5, &mut k); // not beyond the kept data's start
        assert!(k.gaps.is_empty());
        s.peer_ack(0, 6, &mut k);
        assert_eq!(k.gaps, vec![(2, 3, GAP_NOT_CAPTURED)]);
        assert_eq!(k.out, b"abfg");
        seg(&mut s, &mut k, 7, b"h");
        assert_eq!(k.out, b"abfgh");
    }

    #[test]
    fn truncated_segments_and_memory_bounds_are_explicit_gaps() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 1, ..Default::default() });
        k.current = b"abcd".to_vec();
        s.segment(0, 0, false, 10, 4, StreamLimits::default(), &mut k);
        assert_eq!(k.gaps, vec![(4, 6, GAP_TRUNCATED)]);
        seg(&mut s, &mut k, 20, b"uv"); // kept (capacity 1)
        seg(&mut s, &mut k, 30, b"yz"); // cannot be kept
        s.finish(0, &mut k);
        assert_eq!(k.out, b"abcduv");
        assert_eq!(k.gaps[1], (10, 10, GAP_AT_END));
        // "yz" was seen but not kept: the stream still accounts for it, as a memory gap, after
        // the hole before it (never seen).
        assert_eq!(k.gaps[2..], [(22, 8, GAP_AT_END), (30, 2, GAP_MEMORY)]);
        assert_eq!(s.stats.not_kept, 1);
    }

    #[test]
    fn after_reassembly_stops_nothing_is_reported_not_even_old_losses() {
        // Found by the reassembly fuzz target.
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 0, ..Default::default() });
        seg(&mut s, &mut k, 0, b"ab");
        seg(&mut s, &mut k, 10, b"xy"); // cannot be kept
        s.abandon(&mut k);
        s.finish(0, &mut k);
        assert_eq!((k.out.as_slice(), k.gaps.len()), (&b"ab"[..], 0));
    }

    #[test]
    fn a_restart_forgets_what_the_old_stream_could_not_keep() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 0, ..Default::default() });
        s.segment(0, 999, true, 0, 0, StreamLimits::default(), &mut k);
        seg(&mut s, &mut k, 5000, b"xy"); // cannot be kept
        s.segment(0, 1999, true, 0, 0, StreamLimits::default(), &mut k); // a new SYN: restart
        seg(&mut s, &mut k, 2000, b"abc");
        s.finish(0, &mut k);
        assert_eq!((k.out.as_slice(), k.gaps.len(), s.next_offset()), (&b"abc"[..], 0, 3));
    }

    #[test]
    fn finishing_emits_no_more_events_than_it_said() {
        // Kept segments behind holes and cut short by the snaplen: a gap, data and a gap each.
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 3, ..Default::default() });
        seg(&mut s, &mut k, 0, b"a");
        for start in [10u32, 200, 400] {
            k.current = vec![b'x'; 10];
            s.segment(0, start, false, 100, 10, StreamLimits::default(), &mut k);
        }
        k.current = b"yz".to_vec();
        s.segment(0, 600, false, 2, 2, StreamLimits::default(), &mut k); // not kept
        let promised = s.events_to_finish();
        let before = k.gaps.len() + k.data_events;
        s.finish(0, &mut k);
        assert_eq!(k.gaps.len() + k.data_events - before, promised);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, u32::MAX - 1, b"ab");
        seg(&mut s, &mut k, 2, b"ef");
        seg(&mut s, &mut k, 0, b"cd");
        assert_eq!(k.out, b"abcdef");
    }

    #[test]
    fn a_segment_reaching_back_before_the_start_is_clipped() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, 100, b"ab");
        seg(&mut s, &mut k, 95, b"0123456789"); // bytes 95..102: only 102.. is new
        assert_eq!(k.out, b"ab789");
    }

    #[test]
    fn a_new_syn_before_any_data_restarts_the_stream() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        s.segment(0, 500, true, 0, 0, StreamLimits::default(), &mut k);
        s.segment(0, 9000, true, 0, 0, StreamLimits::default(), &mut k); // another SYN+ACK
        seg(&mut s, &mut k, 9001, b"data");
        assert_eq!(k.out, b"data");
        s.segment(0, 100, true, 0, 0, StreamLimits::default(), &mut k); // too late: data was seen
        seg(&mut s, &mut k, 9005, b"more");
        assert_eq!(k.out, b"datamore");
    }

    #[test]
    fn data_before_the_start_is_old() {
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, 100, b"late");
        seg(&mut s, &mut k, 90, b"0123456789");
        assert_eq!(k.out, b"late");
        assert_eq!(s.stats.old_bytes, 10);
    }

    #[test]
    fn syn_data_waits_for_the_syn_ack_which_takes_or_refuses_it() {
        // Refused: the SYN+ACK acknowledges the SYN alone; what comes after the handshake wins.
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        k.current = b"decoy".to_vec();
        s.syn_segment(0, 999, 5, 5, StreamLimits::default(), &mut k);
        assert_eq!((k.out.as_slice(), s.kept_len()), (&b""[..], 1), "held, not reported");
        s.syn_answered(0, 1000, &mut k);
        assert_eq!((s.kept_len(), s.stats.not_accepted), (0, 5));
        seg(&mut s, &mut k, 1000, b"real!");
        assert_eq!(k.out, b"real!");
        assert!(k.kept.iter().all(Option::is_none), "the held SYN was let go");
        // Taken (Fast Open): the SYN+ACK acknowledges the data; it comes then, in order.
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        k.current = b"GET /".to_vec();
        s.syn_segment(0, 999, 5, 5, StreamLimits::default(), &mut k);
        k.current = b"SYN again".to_vec();
        s.syn_segment(0, 999, 9, 9, StreamLimits::default(), &mut k); // a retransmitted SYN: the first copy wins
        s.syn_answered(0, 1005, &mut k);
        seg(&mut s, &mut k, 1005, b" HTTP");
        assert_eq!(k.out, b"GET / HTTP");
        // Unanswered (the SYN+ACK not captured): an ACK past it releases it, or else the end.
        for release_by_ack in [true, false] {
            let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
            k.current = b"abc".to_vec();
            s.syn_segment(0, 999, 3, 3, StreamLimits::default(), &mut k);
            seg(&mut s, &mut k, 1003, b"def"); // beyond the held bytes: waits for them
            if release_by_ack {
                s.peer_ack(0, 1006, &mut k);
            } else {
                s.finish(0, &mut k);
            }
            assert_eq!((k.out.as_slice(), k.gaps.len()), (&b"abcdef"[..], 0), "released by an ack: {release_by_ack}");
        }
    }

    #[test]
    fn a_segment_beyond_the_window_waits_for_an_ack_and_loses_to_a_copy_in_the_window() {
        let limits = StreamLimits::default();
        let beyond = |s: &mut Stream, k: &mut Rebuild, seq: u32, payload: &[u8]| {
            k.current = payload.to_vec();
            let n = payload.len() as u32;
            s.segment_in(0, seq, false, n, n, true, limits, k);
        };
        // The hole before it fills, but it waits; the copy sent later in the window wins.
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, 0, b"ab");
        beyond(&mut s, &mut k, 4, b"EVIL");
        seg(&mut s, &mut k, 2, b"cd");
        assert_eq!(k.out, b"abcd", "not reported when the stream reaches it");
        s.peer_ack(0, 4, &mut k); // up to its start, not into it
        seg(&mut s, &mut k, 4, b"GOOD");
        assert_eq!(k.out, b"abcdGOOD");
        assert_eq!((s.kept_len(), s.stats.not_accepted), (0, 4));
        // Acknowledged: the receiver took it after all (its window was wider than it looked).
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, copies: true, ..Default::default() });
        seg(&mut s, &mut k, 0, b"ab");
        beyond(&mut s, &mut k, 4, b"ef");
        beyond(&mut s, &mut k, 6, b"gh"); // grows the one beyond the window, like it
        seg(&mut s, &mut k, 10, b"kl"); // in the window, beyond another hole: apart
        seg(&mut s, &mut k, 2, b"cd");
        s.peer_ack(0, 5, &mut k);
        assert_eq!(k.out, b"abcdefgh");
        seg(&mut s, &mut k, 8, b"ij");
        assert_eq!(k.out, b"abcdefghijkl");
        // Never acknowledged: let go at the end, with no gap (the receiver has no such bytes).
        let (mut s, mut k) = (Stream::default(), Rebuild { capacity: 8, ..Default::default() });
        seg(&mut s, &mut k, 0, b"ab");
        beyond(&mut s, &mut k, 1_000_000, b"far");
        s.finish(0, &mut k);
        assert_eq!((k.out.as_slice(), k.gaps.len(), s.stats.not_accepted), (&b"ab"[..], 0, 3));
        assert!(k.kept.iter().all(Option::is_none));
    }
}
