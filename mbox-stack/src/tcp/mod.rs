//! The TCP Monitor µStack: both sides' state of every connection, and both directions
//! reassembled (see [`stream`]), as a passive observer (mOS's "monitor" stack).
//!
//! For each segment the monitor updates the sender's and the receiver's state (RFC 9293 names,
//! inferred from what crosses the wire: handshake, simultaneous open, connections picked up
//! mid-stream, half-close, FIN and RST teardown, TIME-WAIT), their sequence and acknowledgment
//! numbers, windows (scaled when both SYNs carried a window scale), and retransmissions; then it
//! hands the payload to the sender's stream. [`TcpConn::snapshot`] is the copy of that state
//! events carry.
//!
//! A segment that arrives out of order and starts at or beyond the right edge of the window its
//! receiver advertised (the furthest acknowledgment plus window seen from it: RFC 9293
//! 3.10.7.4, as Linux and Suricata check it) is dropped by the receiver, so its bytes are no
//! part of the stream the receiver reads: the stream holds it back until the receiver acknowledges its bytes (then the
//! monitor's idea of the window was wrong, and it was taken after all), and lets it go when a
//! copy arrives in the window or nothing acknowledges it (counted as `not_accepted`; it does not
//! move the sender's next sequence number either). The edge is known once both SYNs were seen
//! (the window scale is then known); on connections picked up later nothing is checked, and
//! state-only tracking does not check. How the monitor meets the classic IDS evasions is in
//! docs/evasion.md.

pub mod stream;

use mbox_abi::events::tcp_state::*;
use mbox_abi::{
    TcpSideSnapshot, TcpSnapshot, END_FIN, END_RST, TCP_MIDSTREAM, TCP_SEG_OUT_OF_ORDER, TCP_SEG_RETRANSMISSION, TCP_SIMULTANEOUS_OPEN,
};
use stream::{seq_diff, Stream, StreamLimits, StreamSink};

/// TCP flag bits (as in `wire::tcp_flags`).
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The fields of one TCP segment the monitor uses.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Payload length declared by the headers, and the part of it that was captured.
    pub len: u32,
    pub captured: u32,
    /// The TCP options (what was captured of them).
    pub options: &'a [u8],
}

/// How much of the monitor a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// State of both sides; streams only counted.
    State,
    /// State and both streams reassembled.
    Reassembly,
}

/// One side of a connection.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    state: u8,
    seen: bool,
    /// Window scale from this side's SYN (None: none announced).
    wscale: Option<u8>,
    isn: u32,
    /// Highest sequence number sent so far, plus its length (SYN and FIN count one).
    next_seq: u32,
    ack: u32,
    window: u16,
    fin_seq: Option<u32>,
    syn_seen: bool,
    /// The right edge of the window this side advertised (for the peer's bytes): the furthest
    /// `ack + window` it sent. `None` while the window scale is not known.
    right_edge: Option<u32>,
    retransmissions: u32,
}

/// The monitor's state of one connection. Reused for the next flow of the same slot.
#[derive(Debug, Clone, Default)]
pub struct TcpConn {
    sides: [Side; 2],
    streams: [Stream; 2],
    flags: u32,
    /// Flags about the last segment (retransmission, out of order).
    segment_flags: u32,
    /// Per direction: its stream's end was reported.
    ended: [bool; 2],
    /// The last segment was an RST the receiver would accept: both streams end.
    reset: bool,
}

/// Reads the window scale option (kind 3) from TCP options, if present and well formed.
pub fn window_scale(options: &[u8]) -> Option<u8> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None, // end of options
            1 => i += 1,      // no-op
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None; // malformed: stop rather than guess
                }
                if kind == 3 && len == 3 {
                    return Some(options[i + 2].min(14)); // RFC 7323: at most 14
                }
                i += len;
            }
        }
    }
    None
}

impl TcpConn {
    /// Resets for a new flow in this slot (keeping the streams' allocations).
    pub fn reset(&mut self) {
        self.sides = [Side::default(); 2];
        for s in &mut self.streams {
            s.reset();
        }
        self.flags = 0;
        self.segment_flags = 0;
        self.ended = [false; 2];
        self.reset = false;
    }

    /// The stream of direction `dir` (0: the originator's bytes).
    pub fn stream(&self, dir: usize) -> &Stream {
        &self.streams[dir]
    }

    /// Takes one segment sent in direction `dir` (0: by the flow's originator): updates the
    /// state ([`TcpConn::update`]), then the streams ([`TcpConn::streams`]).
    pub fn segment<S: StreamSink>(&mut self, dir: usize, seg: &Segment<'_>, depth: Depth, limits: StreamLimits, sink: &mut S) {
        self.update(dir, seg, depth);
        self.streams(dir, seg, depth, limits, sink);
    }

    /// Updates both sides' state for a segment sent in direction `dir`.
    pub fn update(&mut self, dir: usize, seg: &Segment<'_>, depth: Depth) {
        let (me, peer) = (dir, 1 - dir);
        let flags = seg.flags;
        self.segment_flags = 0;
        self.reset = flags & RST != 0 && self.acceptable_reset(me, seg.seq);
        if !self.sides[me].seen && !self.sides[peer].seen {
            self.first_segment(me, flags);
        }
        // Bytes the receiver drops are not sent as far as it is concerned (the window policy
        // needs the streams: state-only tracking has none).
        let reassembly = depth == Depth::Reassembly;
        let taken = !reassembly || !self.beyond_window(me, seg);
        // Retransmission: bytes (or a SYN/FIN) at or below what this side already sent.
        let seg_len = seg.len + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        let end = seg.seq.wrapping_add(seg_len);
        {
            let side = &mut self.sides[me];
            if side.seen && seg_len > 0 && seq_diff(end, side.next_seq) <= 0 {
                side.retransmissions += 1;
                self.segment_flags |= TCP_SEG_RETRANSMISSION;
            }
            if !side.seen || (taken && seq_diff(end, side.next_seq) > 0) {
                side.next_seq = end;
            }
            side.seen = true;
            side.window = seg.window;
            if flags & ACK != 0 {
                side.ack = seg.ack;
            }
        }
        let stream = &self.streams[me];
        let data_seq = seg.seq.wrapping_add(u32::from(flags & SYN != 0));
        if depth == Depth::Reassembly && seg.len > 0 && stream.started() && seq_diff(data_seq, stream.next_seq()) > 0 {
            self.segment_flags |= TCP_SEG_OUT_OF_ORDER;
        }
        if flags & RST != 0 {
            self.sides[me].state = CLOSED;
            self.sides[peer].state = CLOSED;
        } else {
            if flags & SYN != 0 {
                self.syn(me, peer, seg);
            }
            if flags & ACK != 0 {
                self.acknowledged(me, peer, seg.ack);
            }
            if flags & FIN != 0 {
                self.fin(me, peer, seg.seq.wrapping_add(seg.len).wrapping_add(u32::from(flags & SYN != 0)));
            }
            if flags & ACK != 0 && reassembly {
                self.advertised(me, seg);
            }
        }
    }

    /// `me` sent an acknowledgment and a window: the right edge of what it takes moves on (it
    /// never moves back: RFC 9293 3.8.6 forbids shrinking, and a sender may send up to the
    /// furthest edge it was shown). The window is scaled as both SYNs agreed, except on a SYN.
    fn advertised(&mut self, me: usize, seg: &Segment<'_>) {
        let [a, b] = &self.sides;
        if !(a.syn_seen && b.syn_seen) {
            return; // the window scale is not known
        }
        let scaled = seg.flags & SYN == 0 && a.wscale.is_some() && b.wscale.is_some();
        let shift = if scaled { self.sides[me].wscale.unwrap_or(0) } else { 0 };
        let edge = seg.ack.wrapping_add(u32::from(seg.window) << shift);
        let side = &mut self.sides[me];
        side.right_edge = Some(match side.right_edge {
            Some(old) if seq_diff(old, edge) > 0 => old,
            _ => edge,
        });
    }

    /// Whether the receiver of a segment from `me` may drop its payload: it arrives out of order
    /// and starts at or beyond the right edge of the receiver's window (a segment starting
    /// inside it is taken whole). Data in order is always taken: receivers differ there
    /// (Windows takes bytes beyond a zero window, and `zeek__http__206_example_b` shows it
    /// SACKing them), and so would the monitor's streams from what tshark's follow reports.
    fn beyond_window(&self, me: usize, seg: &Segment<'_>) -> bool {
        let Some(edge) = self.sides[1 - me].right_edge.filter(|_| seg.len > 0) else { return false };
        let data_seq = seg.seq.wrapping_add(u32::from(seg.flags & SYN != 0));
        let stream = &self.streams[me];
        stream.started() && seq_diff(data_seq, stream.next_seq()) > 0 && seq_diff(data_seq, edge) >= 0
    }

    /// Hands a segment sent in direction `dir` to the streams: the peer's may give up a hole
    /// this segment's ACK passes (or learn whether its SYN's data was taken, from a SYN+ACK);
    /// then this segment's payload goes to its own stream, unless the receiver drops it (beyond
    /// its window).
    pub fn streams<S: StreamSink>(&mut self, dir: usize, seg: &Segment<'_>, depth: Depth, limits: StreamLimits, sink: &mut S) {
        let (me, peer) = (dir, 1 - dir);
        let syn = seg.flags & SYN != 0;
        match depth {
            Depth::State => self.streams[me].track(seg.seq, syn, seg.len),
            Depth::Reassembly => {
                if seg.flags & ACK != 0 {
                    if syn {
                        self.streams[peer].syn_answered(peer as u8, seg.ack, sink);
                    }
                    self.streams[peer].peer_ack(peer as u8, seg.ack, sink);
                }
                let beyond = self.beyond_window(me, seg);
                let stream = &mut self.streams[me];
                if syn && seg.flags & ACK == 0 && !beyond {
                    stream.syn_segment(me as u8, seg.seq, seg.len, seg.captured, limits, sink);
                } else {
                    stream.segment_in(me as u8, seg.seq, syn, seg.len, seg.captured, beyond, limits, sink);
                }
            }
        }
        self.report_ends(sink);
    }

    /// Whether the receiver would take an RST from `me` at `seq`: exactly at the next sequence
    /// number it expects (RFC 5961 3.2, as Linux does: anything else in the window only draws a
    /// challenge ACK), counting a FIN already sent; an RST before anything was sent is taken.
    /// An injected RST with a guessed sequence number must not end the streams here when the
    /// endpoint would ignore it.
    fn acceptable_reset(&self, me: usize, seq: u32) -> bool {
        let (side, stream) = (&self.sides[me], &self.streams[me]);
        !side.seen || seq == side.next_seq || (stream.started() && seq == stream.next_seq())
    }

    /// Reports the end of each stream that just completed: its FIN reached in order (every
    /// byte before it reported, as data or gaps), or an acceptable reset.
    fn report_ends<S: StreamSink>(&mut self, sink: &mut S) {
        for dir in 0..2 {
            if self.ended[dir] {
                continue;
            }
            let stream = &self.streams[dir];
            let fin_reached = self.sides[dir].fin_seq.is_some_and(|fin| stream.started() && seq_diff(stream.next_seq(), fin) >= 0);
            let reason = if fin_reached {
                END_FIN
            } else if self.reset {
                END_RST
            } else {
                continue;
            };
            self.ended[dir] = true;
            sink.end(dir as u8, stream.next_offset(), reason);
        }
    }

    /// The connection's first segment sets what the monitor assumes about the other side.
    fn first_segment(&mut self, me: usize, flags: u8) {
        let peer = 1 - me;
        match (flags & SYN != 0, flags & ACK != 0) {
            (true, false) => self.sides[peer].state = LISTEN,
            // A SYN+ACK first: the SYN was missed; the peer is waiting for it.
            (true, true) => self.sides[peer].state = SYN_SENT,
            _ => {
                // Picked up mid-stream.
                self.flags |= TCP_MIDSTREAM;
                self.sides[me].state = ESTABLISHED;
                self.sides[peer].state = ESTABLISHED;
            }
        }
    }

    fn syn(&mut self, me: usize, peer: usize, seg: &Segment<'_>) {
        // The window the peer advertised was over this side's old sequence numbers.
        self.sides[peer].right_edge = None;
        let side = &mut self.sides[me];
        side.isn = seg.seq;
        side.syn_seen = true;
        side.wscale = window_scale(seg.options);
        if seg.flags & ACK == 0 {
            if side.state == CLOSED || side.state == LISTEN {
                side.state = SYN_SENT;
            }
            if self.sides[peer].state == SYN_SENT {
                // Both sent a SYN without ACK: simultaneous open (RFC 9293 3.5).
                self.flags |= TCP_SIMULTANEOUS_OPEN;
                self.sides[me].state = SYN_RECEIVED;
                self.sides[peer].state = SYN_RECEIVED;
            }
        } else if matches!(side.state, CLOSED | LISTEN | SYN_SENT) {
            side.state = SYN_RECEIVED;
        }
    }

    /// `me` acknowledged `ack`: what that completes on either side.
    fn acknowledged(&mut self, me: usize, peer: usize, ack: u32) {
        if self.sides[peer].syn_seen && ack == self.sides[peer].isn.wrapping_add(1) {
            // The peer's SYN is acknowledged: a SYN_RECEIVED peer is now established, and a
            // SYN_SENT side sending this ACK completes the three-way handshake.
            if self.sides[peer].state == SYN_RECEIVED {
                self.sides[peer].state = ESTABLISHED;
            }
            if self.sides[me].state == SYN_SENT {
                self.sides[me].state = ESTABLISHED;
            }
        }
        // The peer's FIN acknowledged.
        if let Some(fin) = self.sides[peer].fin_seq {
            if seq_diff(ack, fin.wrapping_add(1)) >= 0 {
                let p = &mut self.sides[peer];
                p.state = match p.state {
                    FIN_WAIT_1 => FIN_WAIT_2,
                    CLOSING => TIME_WAIT,
                    LAST_ACK => CLOSED,
                    s => s,
                };
            }
        }
    }

    /// `me` sent a FIN at sequence number `fin_seq`.
    fn fin(&mut self, me: usize, peer: usize, fin_seq: u32) {
        self.sides[me].fin_seq = Some(fin_seq);
        let m = &mut self.sides[me];
        m.state = match m.state {
            CLOSE_WAIT => LAST_ACK,
            LAST_ACK | FIN_WAIT_1 | FIN_WAIT_2 | CLOSING | TIME_WAIT | CLOSED => m.state,
            _ => FIN_WAIT_1,
        };
        let p = &mut self.sides[peer];
        p.state = match p.state {
            FIN_WAIT_1 => CLOSING,
            FIN_WAIT_2 => TIME_WAIT,
            LAST_ACK | CLOSING | TIME_WAIT | CLOSED | CLOSE_WAIT => p.state,
            _ => CLOSE_WAIT,
        };
    }

    /// Stops reassembling: lets go of whatever the streams keep, without reporting it (nobody
    /// wants it). The streams then only count.
    pub fn stop_reassembly<S: stream::StreamSinkKeep>(&mut self, sink: &mut S) {
        for stream in &mut self.streams {
            stream.abandon(sink);
        }
    }

    /// The flow ended: reports what its streams still keep (after gaps) and lets it go.
    pub fn finish<S: StreamSink>(&mut self, sink: &mut S) {
        for (dir, stream) in self.streams.iter_mut().enumerate() {
            stream.finish(dir as u8, sink);
        }
    }

    /// Events [`TcpConn::finish`] may emit at most.
    pub fn events_to_finish(&self) -> usize {
        self.streams.iter().map(Stream::events_to_finish).sum()
    }

    /// The copy of the connection's state that events carry.
    pub fn snapshot(&self) -> TcpSnapshot {
        let scaled = self.sides[0].wscale.is_some() && self.sides[1].wscale.is_some();
        let side = |i: usize| {
            let s = &self.sides[i];
            let shift = if scaled { s.wscale.unwrap_or(0) } else { 0 };
            TcpSideSnapshot {
                state: s.state,
                wscale: s.wscale.unwrap_or(0xff),
                _reserved: [0; 2],
                isn: s.isn,
                next_seq: s.next_seq,
                ack: s.ack,
                window: u32::from(s.window) << shift,
                retransmissions: s.retransmissions,
                stream_bytes: self.streams[i].next_offset(),
            }
        };
        TcpSnapshot { sides: [side(0), side(1)], flags: self.flags | self.segment_flags, _reserved: 0 }
    }

    /// True once both sides are closed (or one reset the connection).
    pub fn is_closed(&self) -> bool {
        self.sides.iter().all(|s| matches!(s.state, CLOSED | TIME_WAIT))
    }
}

#[cfg(test)]
mod tests {
    use super::stream::Source;
    use super::*;

    struct Null;
    impl stream::StreamSinkKeep for Null {
        fn keep(&mut self) -> Option<u32> {
            Some(0)
        }
        fn unkeep(&mut self, _: u32) {}
    }

    impl StreamSink for Null {
        fn data(&mut self, _: u8, _: u64, _: u32, _: Source) {}
        fn gap(&mut self, _: u8, _: u64, _: u64, _: u8) {}
    }

    fn seg(c: &mut TcpConn, dir: usize, flags: u8, seq: u32, ack: u32, len: u32) {
        let s = Segment { seq, ack, flags, window: 1000, len, captured: len, options: &[] };
        c.segment(dir, &s, Depth::Reassembly, StreamLimits::default(), &mut Null);
    }

    fn states(c: &TcpConn) -> (u8, u8) {
        let s = c.snapshot();
        (s.sides[0].state, s.sides[1].state)
    }

    #[test]
    fn handshake_data_and_fin_teardown() {
        let mut c = TcpConn::default();
        seg(&mut c, 0, SYN, 100, 0, 0);
        assert_eq!(states(&c), (SYN_SENT, LISTEN));
        seg(&mut c, 1, SYN | ACK, 500, 101, 0);
        assert_eq!(states(&c), (SYN_SENT, SYN_RECEIVED));
        seg(&mut c, 0, ACK, 101, 501, 0);
        assert_eq!(states(&c), (ESTABLISHED, ESTABLISHED));
        seg(&mut c, 0, ACK, 101, 501, 10);
        seg(&mut c, 0, ACK, 101, 501, 10);
        assert_eq!(c.snapshot().sides[0].retransmissions, 1);
        assert_ne!(c.snapshot().flags & TCP_SEG_RETRANSMISSION, 0);
        seg(&mut c, 0, FIN | ACK, 111, 501, 0);
        assert_eq!(states(&c), (FIN_WAIT_1, CLOSE_WAIT));
        seg(&mut c, 1, ACK, 501, 112, 0);
        assert_eq!(states(&c), (FIN_WAIT_2, CLOSE_WAIT));
        seg(&mut c, 1, FIN | ACK, 501, 112, 0);
        assert_eq!(states(&c), (TIME_WAIT, LAST_ACK));
        seg(&mut c, 0, ACK, 112, 502, 0);
        assert_eq!(states(&c), (TIME_WAIT, CLOSED));
        assert!(c.is_closed());
        assert_eq!(c.snapshot().sides[0].stream_bytes, 10);
    }

    /// Records the stream ends the connection reports.
    #[derive(Default)]
    struct Ends(Vec<(u8, u64, u8)>);
    impl stream::StreamSinkKeep for Ends {
        fn keep(&mut self) -> Option<u32> {
            Some(0)
        }
        fn unkeep(&mut self, _: u32) {}
    }
    impl StreamSink for Ends {
        fn data(&mut self, _: u8, _: u64, _: u32, _: Source) {}
        fn gap(&mut self, _: u8, _: u64, _: u64, _: u8) {}
        fn end(&mut self, dir: u8, offset: u64, reason: u8) {
            self.0.push((dir, offset, reason));
        }
    }

    fn seg_to(c: &mut TcpConn, sink: &mut Ends, dir: usize, flags: u8, seq: u32, ack: u32, len: u32) {
        let s = Segment { seq, ack, flags, window: 1000, len, captured: len, options: &[] };
        c.segment(dir, &s, Depth::Reassembly, StreamLimits::default(), sink);
    }

    #[test]
    fn a_stream_ends_once_its_fin_is_reached_in_order() {
        let (mut c, mut e) = (TcpConn::default(), Ends::default());
        seg_to(&mut c, &mut e, 0, SYN, 100, 0, 0);
        seg_to(&mut c, &mut e, 1, SYN | ACK, 500, 101, 0);
        seg_to(&mut c, &mut e, 0, ACK, 101, 501, 10);
        // The FIN comes before the segment in front of it.
        seg_to(&mut c, &mut e, 0, FIN | ACK, 121, 501, 5);
        assert!(e.0.is_empty(), "bytes 10..20 are still missing");
        seg_to(&mut c, &mut e, 0, ACK, 111, 501, 10);
        assert_eq!(e.0, [(0, 25, END_FIN)]);
        // A retransmitted FIN ends nothing twice; the other side ends with its own FIN.
        seg_to(&mut c, &mut e, 0, FIN | ACK, 121, 501, 5);
        seg_to(&mut c, &mut e, 1, FIN | ACK, 501, 127, 0);
        assert_eq!(e.0, [(0, 25, END_FIN), (1, 0, END_FIN)]);
    }

    #[test]
    fn only_a_reset_the_receiver_would_take_ends_the_streams() {
        let (mut c, mut e) = (TcpConn::default(), Ends::default());
        seg_to(&mut c, &mut e, 0, SYN, 100, 0, 0);
        seg_to(&mut c, &mut e, 1, SYN | ACK, 500, 101, 0);
        seg_to(&mut c, &mut e, 0, ACK, 101, 501, 10);
        // Injected with a sequence number other than the one the receiver expects (far off, or
        // in its window but not exact: RFC 5961's challenge-ACK case): ignored.
        seg_to(&mut c, &mut e, 0, RST, 90_000, 0, 0);
        seg_to(&mut c, &mut e, 0, RST, 105, 0, 0);
        seg_to(&mut c, &mut e, 1, RST, 400, 0, 0);
        assert!(e.0.is_empty());
        seg_to(&mut c, &mut e, 0, ACK, 111, 501, 10);
        // Exactly where the receiver is: both directions end where they are.
        seg_to(&mut c, &mut e, 1, RST | ACK, 501, 121, 0);
        assert_eq!(e.0, [(0, 20, END_RST), (1, 0, END_RST)]);
    }

    #[test]
    fn simultaneous_open_midstream_and_reset() {
        let mut c = TcpConn::default();
        seg(&mut c, 0, SYN, 1, 0, 0);
        seg(&mut c, 1, SYN, 9, 0, 0);
        assert_eq!(states(&c), (SYN_RECEIVED, SYN_RECEIVED));
        assert_ne!(c.snapshot().flags & TCP_SIMULTANEOUS_OPEN, 0);
        seg(&mut c, 0, SYN | ACK, 1, 10, 0);
        seg(&mut c, 1, SYN | ACK, 9, 2, 0);
        assert_eq!(states(&c), (ESTABLISHED, ESTABLISHED));

        let mut m = TcpConn::default();
        seg(&mut m, 1, ACK, 7000, 300, 100);
        assert_eq!(states(&m), (ESTABLISHED, ESTABLISHED));
        assert_ne!(m.snapshot().flags & TCP_MIDSTREAM, 0);
        seg(&mut m, 0, RST, 300, 0, 0);
        assert_eq!(states(&m), (CLOSED, CLOSED));
    }

    #[test]
    fn windows_scale_only_when_both_sides_agree() {
        let mut c = TcpConn::default();
        let opts = [1, 3, 3, 7]; // NOP, window scale 7
        let syn = Segment { seq: 0, ack: 0, flags: SYN, window: 100, len: 0, captured: 0, options: &opts };
        c.segment(0, &syn, Depth::State, StreamLimits::default(), &mut Null);
        let synack = Segment { seq: 50, ack: 1, flags: SYN | ACK, window: 200, len: 0, captured: 0, options: &[3, 3, 2] };
        c.segment(1, &synack, Depth::State, StreamLimits::default(), &mut Null);
        seg(&mut c, 0, ACK, 1, 51, 0);
        let s = c.snapshot();
        assert_eq!((s.sides[0].wscale, s.sides[1].wscale), (7, 2));
        assert_eq!(s.sides[0].window, 1000 << 7);
        assert_eq!(window_scale(&[3, 3, 20]), Some(14));
        assert_eq!(window_scale(&[2, 4, 5, 180, 3]), None, "truncated option list");
        assert_eq!(window_scale(&[8, 0]), None, "zero-length option");
    }

    /// Records the data the connection reports (direction, offset, length) and how it keeps.
    #[derive(Default)]
    struct Ranges {
        data: Vec<(u8, u64, u32)>,
        kept: u32,
    }
    impl stream::StreamSinkKeep for Ranges {
        fn keep(&mut self) -> Option<u32> {
            self.kept += 1;
            Some(self.kept)
        }
        fn unkeep(&mut self, _: u32) {}
    }
    impl StreamSink for Ranges {
        fn data(&mut self, dir: u8, offset: u64, len: u32, _: Source) {
            self.data.push((dir, offset, len));
        }
        fn gap(&mut self, _: u8, _: u64, _: u64, _: u8) {}
    }

    #[allow(clippy::too_many_arguments)]
    fn seg_w(c: &mut TcpConn, sink: &mut Ranges, dir: usize, flags: u8, seq: u32, ack: u32, window: u16, len: u32, options: &[u8]) {
        let s = Segment { seq, ack, flags, window, len, captured: len, options };
        c.segment(dir, &s, Depth::Reassembly, StreamLimits::default(), sink);
    }

    #[test]
    fn data_out_of_order_beyond_the_receivers_window_is_not_taken_unless_acknowledged() {
        let (mut c, mut r) = (TcpConn::default(), Ranges::default());
        // The server's window: 1,000 << 2 bytes (both SYNs scale); the SYN+ACK's own is unscaled.
        seg_w(&mut c, &mut r, 0, SYN, 100, 0, 1000, 0, &[3, 3, 0]);
        seg_w(&mut c, &mut r, 1, SYN | ACK, 500, 101, 1000, 0, &[3, 3, 2]);
        seg_w(&mut c, &mut r, 0, ACK, 101, 501, 1000, 0, &[]);
        assert_eq!(c.sides[1].right_edge, Some(101 + 1000), "from the SYN+ACK, unscaled");
        seg_w(&mut c, &mut r, 1, ACK, 501, 101, 1000, 0, &[]);
        assert_eq!(c.sides[1].right_edge, Some(101 + 4000));
        // Beyond the edge, out of order: held back, even once the hole before it fills.
        seg_w(&mut c, &mut r, 0, ACK, 4101, 501, 1000, 10, &[]);
        assert_eq!(c.sides[0].next_seq, 101, "not sent as far as the server is concerned");
        seg_w(&mut c, &mut r, 0, ACK, 101, 501, 1000, 4000, &[]);
        assert_eq!(r.data, [(0, 0, 4000)]);
        // A copy in the window (the edge moved on) wins; the held one is let go.
        seg_w(&mut c, &mut r, 1, ACK, 501, 4101, 1000, 0, &[]);
        seg_w(&mut c, &mut r, 0, ACK, 4101, 501, 1000, 10, &[]);
        assert_eq!(r.data, [(0, 0, 4000), (0, 4000, 10)]);
        assert_eq!(c.stream(0).stats.not_accepted, 10);
        // In order, data is taken whatever the window (receivers differ there).
        seg_w(&mut c, &mut r, 0, ACK, 4111, 501, 1000, 9000, &[]);
        assert_eq!(r.data.last(), Some(&(0, 4010, 9000)));
        // Beyond the edge, then acknowledged by the server: it took it.
        seg_w(&mut c, &mut r, 0, ACK, 20_000, 501, 1000, 100, &[]);
        seg_w(&mut c, &mut r, 0, ACK, 13_111, 501, 1000, 6889, &[]);
        assert_eq!(r.data.last(), Some(&(0, 4010 + 9000, 6889)), "the held segment waits");
        seg_w(&mut c, &mut r, 1, ACK, 501, 20_050, 1000, 0, &[]);
        assert_eq!(r.data.last(), Some(&(0, 19_899, 100)));
    }

    #[test]
    fn syn_data_counts_only_when_the_syn_ack_acknowledges_it() {
        // Refused (no Fast Open): the SYN+ACK acknowledges the SYN alone.
        let (mut c, mut r) = (TcpConn::default(), Ranges::default());
        seg_w(&mut c, &mut r, 0, SYN, 100, 0, 1000, 50, &[]);
        seg_w(&mut c, &mut r, 1, SYN | ACK, 500, 101, 1000, 0, &[]);
        seg_w(&mut c, &mut r, 0, ACK, 101, 501, 1000, 0, &[]);
        assert!(r.data.is_empty());
        seg_w(&mut c, &mut r, 0, ACK | 0x08, 101, 501, 1000, 60, &[]);
        assert_eq!(r.data, [(0, 0, 60)], "the bytes sent after the handshake are the stream");
        assert_eq!(c.stream(0).stats.not_accepted, 50);
        // Taken (Fast Open): reported when the SYN+ACK acknowledges it.
        let (mut c, mut r) = (TcpConn::default(), Ranges::default());
        seg_w(&mut c, &mut r, 0, SYN, 100, 0, 1000, 50, &[]);
        assert!(r.data.is_empty());
        seg_w(&mut c, &mut r, 1, SYN | ACK, 500, 151, 1000, 0, &[]);
        assert_eq!(r.data, [(0, 0, 50)]);
    }
}
