//! A simulated network for tests and replays: a seeded random generator ([`Rng`]) and a wire
//! ([`Wire`]) that loses, reorders, duplicates and delays what crosses it — the same decisions
//! wherever mbox simulates a network (`[input] impair` in the host, the active stacks' tests),
//! repeatable from the seed.
//!
//! The wire works on packet time, not the clock: a frame sent at `ts` with a delay `d` comes
//! out once a frame of time `ts + d` or later has been sent (or when the wire is drained), so
//! a replay gives the same frames in the same order every time.

use std::collections::VecDeque;

/// A small, fast, seeded generator (SplitMix64): the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What a [`Wire`] does to the frames that cross it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame comes out after the next one to three frames.
    pub reorder: f64,
    /// Probability a frame comes out twice (the copy right after it).
    pub duplicate: f64,
    /// Each frame takes up to this long more to cross (uniformly, in packet time): frames
    /// closer together than that may overtake one another.
    pub delay_ns: u64,
    pub seed: u64,
}

impl Impairment {
    /// Checks the probabilities.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("reorder", self.reorder), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability from 0 to 1, not {p}"));
            }
        }
        if self.loss >= 1.0 {
            return Err("loss must be below 1: nothing would cross".into());
        }
        Ok(())
    }
}

/// What a wire did, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WireStats {
    pub sent: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
    /// Frames that came out later than a frame sent after them, by delay alone.
    pub overtaken: u64,
}

/// A frame on the wire.
#[derive(Debug)]
struct InFlight<T> {
    item: T,
    /// When it comes out (packet time), and the frames still to be sent before it may (for
    /// reordering).
    due_ns: u64,
    after: u32,
    /// Order of sending, to keep the line stable.
    seq: u64,
}

/// Frames in, frames out, impaired as its [`Impairment`] says. See the module documentation.
#[derive(Debug)]
pub struct Wire<T> {
    cfg: Impairment,
    rng: Rng,
    /// Frames in flight, ordered by when they come out.
    line: VecDeque<InFlight<T>>,
    /// The latest time of a frame sent: the wire's clock.
    now_ns: u64,
    sent: u64,
    pub stats: WireStats,
}

impl<T: Clone> Wire<T> {
    pub fn new(cfg: Impairment) -> Wire<T> {
        Wire { rng: Rng::new(cfg.seed), cfg, line: VecDeque::new(), now_ns: 0, sent: 0, stats: WireStats::default() }
    }

    /// Sends `item`, stamped `ts_ns`: it is lost, or comes out of [`Wire::recv`] later
    /// (possibly twice, possibly after frames sent after it).
    pub fn send(&mut self, item: T, ts_ns: u64) {
        self.now_ns = self.now_ns.max(ts_ns);
        self.sent += 1;
        self.stats.sent += 1;
        for f in self.line.iter_mut() {
            f.after = f.after.saturating_sub(1);
        }
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let delay = if self.cfg.delay_ns > 0 { self.rng.below(self.cfg.delay_ns + 1) } else { 0 };
        let after = if self.rng.chance(self.cfg.reorder) {
            self.stats.reordered += 1;
            1 + self.rng.below(3) as u32
        } else {
            0
        };
        let duplicate = self.rng.chance(self.cfg.duplicate);
        if duplicate {
            self.stats.duplicated += 1;
            self.insert(InFlight { item: item.clone(), due_ns: ts_ns + delay, after, seq: self.sent * 2 });
        }
        self.insert(InFlight { item, due_ns: ts_ns + delay, after, seq: self.sent * 2 + 1 });
    }

    fn insert(&mut self, f: InFlight<T>) {
        let at = self.line.iter().position(|o| (o.due_ns, o.seq) > (f.due_ns, f.seq)).unwrap_or(self.line.len());
        if at < self.line.len() && f.after == 0 {
            self.stats.overtaken += 1;
        }
        self.line.insert(at, f);
    }

    /// The next frame that has crossed, with its time on arrival: one whose time has come and
    /// that no longer waits for later frames.
    pub fn recv(&mut self) -> Option<(T, u64)> {
        let at = self.line.iter().position(|f| f.due_ns <= self.now_ns && f.after == 0)?;
        self.line.remove(at).map(|f| (f.item, f.due_ns))
    }

    /// The next frame still in flight, whatever it waits for (the input ended: the wire
    /// drains in order).
    pub fn drain(&mut self) -> Option<(T, u64)> {
        self.line.pop_front().map(|f| (f.item, f.due_ns))
    }

    /// Moves the wire's clock to `now_ns` (when nothing is sent for a while, frames whose
    /// delay has passed still come out).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// Frames in flight.
    pub fn in_flight(&self) -> usize {
        self.line.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames 0..n sent 1 µs apart through a wire; what comes out, in order.
    fn cross(cfg: Impairment, n: u64) -> (Vec<u64>, WireStats) {
        let mut wire = Wire::new(cfg);
        let mut out = Vec::new();
        for i in 0..n {
            wire.send(i, i * 1000);
            while let Some((item, _)) = wire.recv() {
                out.push(item);
            }
        }
        while let Some((item, _)) = wire.drain() {
            out.push(item);
        }
        (out, wire.stats)
    }

    #[test]
    fn a_clean_wire_passes_everything_in_order() {
        let (out, stats) = cross(Impairment::default(), 1000);
        assert_eq!(out, (0..1000).collect::<Vec<_>>());
        assert_eq!(stats, WireStats { sent: 1000, ..Default::default() });
    }

    #[test]
    fn impairments_happen_at_their_rates_and_repeat_from_the_seed() {
        let cfg = Impairment { loss: 0.02, reorder: 0.1, duplicate: 0.01, delay_ns: 0, seed: 7 };
        let (out, stats) = cross(cfg, 100_000);
        let near = |count: u64, p: f64| (count as f64 - p * 100_000.0).abs() < p * 100_000.0 * 0.15;
        assert!(near(stats.lost, 0.02) && near(stats.reordered, 0.1 * 0.98) && near(stats.duplicated, 0.01 * 0.98), "{stats:?}");
        assert_eq!(out.len() as u64, 100_000 - stats.lost + stats.duplicated);
        let late = out.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        assert!(late > 0 && late <= stats.reordered + stats.duplicated, "{late} out of order");
        // Never more than three frames late.
        let mut seen = std::collections::HashSet::new();
        for (pos, &f) in out.iter().enumerate() {
            if seen.insert(f) {
                assert!(pos as u64 <= f + 4 + (stats.duplicated), "frame {f} at {pos}");
            }
        }
        assert_eq!(cross(cfg, 100_000).0, out, "the same seed, the same frames");
        assert_ne!(cross(Impairment { seed: 8, ..cfg }, 100_000).0, out);
    }

    #[test]
    fn delay_lets_close_frames_overtake_and_keeps_times_in_order_of_arrival() {
        let cfg = Impairment { delay_ns: 5_000, seed: 3, ..Default::default() };
        let mut wire = Wire::new(cfg);
        let mut out = Vec::new();
        for i in 0..10_000u64 {
            wire.send(i, i * 1000);
            while let Some(x) = wire.recv() {
                out.push(x);
            }
        }
        while let Some(x) = wire.drain() {
            out.push(x);
        }
        assert_eq!(out.len(), 10_000);
        assert!(out.windows(2).all(|w| w[0].1 <= w[1].1), "arrival times never go back");
        assert!(out.windows(2).any(|w| w[1].0 < w[0].0), "some frames overtook others");
        assert!(out.iter().all(|&(i, t)| t >= i * 1000 && t <= i * 1000 + 5_000));
        assert!(wire.stats.overtaken > 0);
    }
}
