//! What the TCP Endpoint reads and writes: a segment as fields (the shard parses and builds the
//! headers; the endpoint never sees packet bytes), and sequence-number arithmetic modulo 2^32
//! (RFC 9293 3.4).

pub use crate::wire::tcp::{SackBlocks, TcpOptions};
use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};

/// `a - b` on the sequence-number circle.
#[inline]
pub fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    seq_diff(a, b) < 0
}

#[inline]
pub fn seq_le(a: u32, b: u32) -> bool {
    seq_diff(a, b) <= 0
}

#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    seq_diff(a, b) > 0
}

#[inline]
pub fn seq_ge(a: u32, b: u32) -> bool {
    seq_diff(a, b) >= 0
}

/// A segment as the endpoint reads it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentIn<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The window field as sent (unscaled).
    pub window: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl SegmentIn<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space it occupies: its bytes, and one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }
}

/// A segment the endpoint asks to send; its payload is `payload_len` bytes of the send
/// buffer from the stream position that `seq` names (handed to the sink with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentOut {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The window field to send (already scaled down).
    pub window: u16,
    pub options: TcpOptions,
    pub payload_len: u32,
}

impl SegmentOut {
    /// A bare RST answering `seg` (RFC 9293 3.10.7.1: an unacceptable segment to a closed or
    /// listening port): `seq` = its ACK when it has one, else an ACK of everything it
    /// occupied.
    pub fn reset_for(seg: &SegmentIn<'_>) -> SegmentOut {
        let mut out = SegmentOut { seq: 0, ack: 0, flags: RST, window: 0, options: TcpOptions::default(), payload_len: 0 };
        if seg.has(ACK) {
            out.seq = seg.ack;
        } else {
            out.ack = seg.seq.wrapping_add(seg.seq_len());
            out.flags |= ACK;
        }
        out
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_across_the_wrap() {
        assert!(seq_lt(u32::MAX - 1, 3));
        assert!(seq_gt(3, u32::MAX - 1));
        assert!(seq_le(7, 7) && seq_ge(7, 7));
        assert_eq!(seq_diff(2, u32::MAX), 3);
    }

    #[test]
    fn a_reset_answers_with_the_ack_or_acks_what_came() {
        let base = SegmentIn { seq: 100, ack: 500, flags: ACK, window: 0, options: TcpOptions::default(), payload: b"abc" };
        let r = SegmentOut::reset_for(&base);
        assert_eq!((r.seq, r.flags), (500, RST));
        let syn = SegmentIn { flags: SYN, ..base };
        let r = SegmentOut::reset_for(&syn);
        assert_eq!((r.seq, r.ack, r.flags), (0, 104, RST | ACK));
    }
}
