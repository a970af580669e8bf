//! Congestion control: NewReno (RFC 5681 slow start and congestion avoidance, RFC 6582 fast
//! recovery) with an initial window of ten segments (RFC 6928), so an 8 KB answer leaves in
//! the first round trip.

use super::segment::{seq_ge, seq_gt};

/// What the sender should do after an acknowledgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Send what the window allows.
    Send,
    /// Retransmit the first unacknowledged segment now (fast retransmit, or a partial ACK in
    /// recovery), then send what the window allows.
    Retransmit,
}

/// The congestion state of one connection.
#[derive(Debug, Clone, Copy)]
pub struct NewReno {
    mss: u32,
    cwnd: u32,
    ssthresh: u32,
    dupacks: u32,
    /// Fast recovery: the highest sequence number sent when it began (RFC 6582 "recover").
    recovery: Option<u32>,
    /// After a timeout, no fast retransmit until this is acknowledged (RFC 6582 4.1).
    recover_floor: Option<u32>,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew.
    acked_in_ca: u32,
}

/// Duplicate ACKs that start a fast retransmit.
const DUPACK_THRESHOLD: u32 = 3;

impl NewReno {
    pub fn new(mss: u32) -> NewReno {
        let mss = mss.max(1);
        NewReno { mss, cwnd: initial_window(mss), ssthresh: u32::MAX, dupacks: 0, recovery: None, recover_floor: None, acked_in_ca: 0 }
    }

    pub fn window(&self) -> u32 {
        self.cwnd
    }

    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    pub fn in_recovery(&self) -> bool {
        self.recovery.is_some()
    }

    /// An ACK that advanced `snd_una` by `acked` bytes to `ack`; `flight` is what was in flight
    /// before it.
    pub fn on_ack(&mut self, acked: u32, ack: u32, flight: u32) -> Reaction {
        self.dupacks = 0;
        if self.recover_floor.is_some_and(|f| seq_ge(ack, f)) {
            self.recover_floor = None;
        }
        if let Some(recover) = self.recovery {
            if seq_gt(ack, recover) {
                // A full ACK (RFC 6582 3.2 step 3): leave recovery with cwnd = ssthresh, or
                // what remains in flight plus one segment if less.
                let remaining = flight.saturating_sub(acked);
                self.cwnd = self.ssthresh.min(remaining.max(self.mss) + self.mss);
                self.recovery = None;
                return Reaction::Send;
            }
            // A partial ACK (step 4): retransmit the next hole, deflate by what it acked, and
            // add back a segment if it acked at least one.
            self.cwnd = self.cwnd.saturating_sub(acked);
            if acked >= self.mss {
                self.cwnd += self.mss;
            }
            return Reaction::Retransmit;
        }
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 5681 3.1, with appropriate byte counting, L = 1 SMSS).
            self.cwnd = self.cwnd.saturating_add(acked.min(self.mss));
        } else {
            // Congestion avoidance: one segment per window's worth acknowledged.
            self.acked_in_ca = self.acked_in_ca.saturating_add(acked);
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
        }
        Reaction::Send
    }

    /// A duplicate ACK (RFC 5681 2: no data, no window change, `snd_una` unchanged, data in
    /// flight). `snd_una` is what it acknowledges, `snd_max` one past the highest sequence
    /// number sent.
    pub fn on_dupack(&mut self, snd_una: u32, snd_max: u32, flight: u32) -> Option<Reaction> {
        if self.recovery.is_some() {
            // Each further duplicate means a segment left the network: inflate.
            self.cwnd = self.cwnd.saturating_add(self.mss);
            return Some(Reaction::Send);
        }
        self.dupacks += 1;
        if self.dupacks != DUPACK_THRESHOLD {
            return None;
        }
        self.on_loss(snd_una, snd_max, flight)
    }

    /// A segment at `snd_una` is lost: three duplicate ACKs, or (RFC 6675 5) that many
    /// segments' worth SACKed above it. Starts fast retransmit and recovery (RFC 6582 3.2
    /// steps 1-2) unless already recovering, or the loss is of what a timeout already resent.
    /// `snd_max` is one past the highest sequence number sent: RFC 6582's "recover" is the
    /// byte before it, so an ACK of everything sent is a full ACK.
    pub fn on_loss(&mut self, snd_una: u32, snd_max: u32, flight: u32) -> Option<Reaction> {
        if self.recovery.is_some() || self.recover_floor.is_some_and(|f| seq_gt(f, snd_una)) {
            return None;
        }
        self.dupacks = self.dupacks.max(DUPACK_THRESHOLD);
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh + DUPACK_THRESHOLD * self.mss;
        self.recovery = Some(snd_max.wrapping_sub(1));
        Some(Reaction::Retransmit)
    }

    /// The retransmission timer expired with `flight` bytes out (RFC 5681 3.1 eq. 4): back
    /// to a window of one segment, half the flight as threshold. `snd_max` is one past
    /// the highest sequence number sent: no fast retransmit until an ACK reaches it.
    pub fn on_timeout(&mut self, flight: u32, snd_max: u32) {
        if self.recovery.is_none() || self.dupacks == 0 {
            self.ssthresh = (flight / 2).max(2 * self.mss);
        }
        self.cwnd = self.mss;
        self.dupacks = 0;
        self.recovery = None;
        self.acked_in_ca = 0;
        self.recover_floor = Some(snd_max);
    }

    /// After an idle period longer than an RTO, the window restarts (RFC 5681 4.1).
    pub fn restart_after_idle(&mut self) {
        self.cwnd = self.cwnd.min(initial_window(self.mss));
    }
}

/// RFC 6928: min(10 * MSS, max(2 * MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14_600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_window_is_ten_segments_rfc6928() {
        assert_eq!(NewReno::new(1460).window(), 14_600);
        assert_eq!(NewReno::new(536).window(), 5_360);
        assert_eq!(NewReno::new(9000).window(), 18_000, "two jumbo segments");
    }

    #[test]
    fn slow_start_then_congestion_avoidance_rfc5681_3_1() {
        let mut c = NewReno::new(1000);
        let start = c.window();
        c.on_ack(1000, 1000, start);
        assert_eq!(c.window(), start + 1000);
        c.on_timeout(20_000, 1);
        assert_eq!((c.window(), c.ssthresh()), (1000, 10_000));
        // Slow start to ssthresh, then one segment per window acknowledged.
        while c.window() < c.ssthresh() {
            c.on_ack(1000, 2, 1000);
        }
        let w = c.window();
        for _ in 0..(w / 1000) {
            c.on_ack(1000, 3, w);
        }
        assert_eq!(c.window(), w + 1000);
    }

    #[test]
    fn three_duplicates_start_recovery_and_a_full_ack_ends_it_rfc6582() {
        let mut c = NewReno::new(1000);
        assert_eq!(c.on_dupack(100, 20_100, 20_000), None);
        assert_eq!(c.on_dupack(100, 20_100, 20_000), None);
        assert_eq!(c.on_dupack(100, 20_100, 20_000), Some(Reaction::Retransmit));
        assert_eq!((c.ssthresh(), c.window()), (10_000, 13_000));
        assert_eq!(c.on_dupack(100, 20_100, 20_000), Some(Reaction::Send));
        assert_eq!(c.window(), 14_000, "inflated by a segment");
        // A partial ACK: retransmit the next hole, deflate.
        assert_eq!(c.on_ack(5_000, 5_100, 20_000), Reaction::Retransmit);
        assert_eq!(c.window(), 14_000 - 5_000 + 1_000);
        assert!(c.in_recovery());
        // The ACK covering what was sent when recovery began ends it.
        assert_eq!(c.on_ack(15_000, 20_101, 15_000), Reaction::Send);
        assert!(!c.in_recovery());
        assert_eq!(c.window(), 1_000 + 1_000, "what remains in flight (none) plus a segment, at most ssthresh");
    }

    #[test]
    fn no_fast_retransmit_for_data_sent_before_a_timeout_rfc6582_4_1() {
        let mut c = NewReno::new(1000);
        c.on_timeout(10_000, 50_000);
        for _ in 0..3 {
            assert_eq!(c.on_dupack(10_000, 50_000, 5_000), None);
        }
    }
}
