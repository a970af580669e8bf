//! The retransmission timer's value (RFC 6298): smoothed round-trip time and its variation
//! from samples, an RTO of SRTT + 4 RTTVAR clamped to configured bounds, doubled on each
//! timeout (back-off) until a new sample comes. Samples follow Karn's rule — never from a
//! retransmitted segment — which the caller ensures (timestamps, or timing a fresh segment).

/// RFC 6298 2.1: the RTO before any sample.
pub const INITIAL_RTO_NS: u64 = 1_000_000_000;

/// The estimator of one connection.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    srtt_ns: Option<u64>,
    rttvar_ns: u64,
    rto_ns: u64,
    /// Times the current RTO was doubled since the last sample.
    backoffs: u32,
    min_rto_ns: u64,
    max_rto_ns: u64,
}

impl RttEstimator {
    pub fn new(min_rto_ns: u64, max_rto_ns: u64) -> RttEstimator {
        RttEstimator {
            srtt_ns: None,
            rttvar_ns: 0,
            rto_ns: INITIAL_RTO_NS.clamp(min_rto_ns, max_rto_ns),
            backoffs: 0,
            min_rto_ns,
            max_rto_ns,
        }
    }

    /// A round-trip time measured (RFC 6298 2.2 and 2.3; α = 1/8, β = 1/4, K = 4, and a clock
    /// granularity of 1 ms for G).
    pub fn sample(&mut self, rtt_ns: u64) {
        const G: u64 = 1_000_000;
        match self.srtt_ns {
            None => {
                self.srtt_ns = Some(rtt_ns);
                self.rttvar_ns = rtt_ns / 2;
            }
            Some(srtt) => {
                self.rttvar_ns = (3 * self.rttvar_ns + srtt.abs_diff(rtt_ns)) / 4;
                self.srtt_ns = Some((7 * srtt + rtt_ns) / 8);
            }
        }
        let srtt = self.srtt_ns.unwrap_or(rtt_ns);
        self.rto_ns = (srtt + G.max(4 * self.rttvar_ns)).clamp(self.min_rto_ns, self.max_rto_ns);
        self.backoffs = 0;
    }

    /// The retransmission timer expired (RFC 6298 5.5): the RTO doubles, up to its maximum.
    pub fn back_off(&mut self) {
        self.rto_ns = self.rto_ns.saturating_mul(2).min(self.max_rto_ns);
        self.backoffs += 1;
    }

    /// Sets the RTO to `rto_ns` (within the bounds) as if no sample had come yet: RFC 6298
    /// 5.7's 3 s after a handshake that was retransmitted.
    pub fn reinitialize(&mut self, rto_ns: u64) {
        self.rto_ns = rto_ns.clamp(self.min_rto_ns, self.max_rto_ns);
        self.backoffs = 0;
    }

    pub fn rto_ns(&self) -> u64 {
        self.rto_ns
    }

    pub fn srtt_ns(&self) -> Option<u64> {
        self.srtt_ns
    }

    /// Consecutive timeouts without progress.
    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_first_sample_sets_srtt_and_half_of_it_as_variation_rfc6298_2_2() {
        let mut r = RttEstimator::new(200 * MS, 60_000 * MS);
        assert_eq!(r.rto_ns(), INITIAL_RTO_NS);
        r.sample(100 * MS);
        // RTO = 100 + 4 * 50 = 300 ms.
        assert_eq!((r.srtt_ns(), r.rto_ns()), (Some(100 * MS), 300 * MS));
        // RFC 6298 2.3: RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5; SRTT = 112.5.
        r.sample(200 * MS);
        assert_eq!(r.srtt_ns(), Some(112_500_000));
        assert_eq!(r.rto_ns(), 112_500_000 + 4 * 62_500_000);
    }

    #[test]
    fn timeouts_double_the_rto_up_to_its_bound_and_a_sample_resets_it_rfc6298_5_5() {
        let mut r = RttEstimator::new(200 * MS, 4_000 * MS);
        r.back_off();
        r.back_off();
        assert_eq!((r.rto_ns(), r.backoffs()), (4_000 * MS, 2));
        r.back_off();
        assert_eq!(r.rto_ns(), 4_000 * MS);
        r.sample(10 * MS);
        assert_eq!((r.rto_ns(), r.backoffs()), (200 * MS, 0), "clamped to the minimum");
    }
}
