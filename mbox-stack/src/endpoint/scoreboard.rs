//! The sender's SACK scoreboard (RFC 6675 3): which ranges above the first unacknowledged byte
//! the peer reported holding, so that loss recovery retransmits only the holes and counts
//! SACKed bytes out of the pipe.

use super::segment::{seq_diff, seq_ge, seq_gt, seq_le, seq_lt};

/// Ranges kept at most: a peer reports four per ACK; older ones merge or fall off.
const MAX_RANGES: usize = 8;

/// SACKed ranges, sorted and disjoint, as sequence numbers `[start, end)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scoreboard {
    ranges: [(u32, u32); MAX_RANGES],
    len: usize,
}

impl Scoreboard {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges[..self.len]
    }

    /// Adds a block the peer reported, if it lies within `[snd_una, snd_max]` (RFC 2018 5:
    /// anything else is stale or forged and ignored).
    pub fn add(&mut self, (start, end): (u32, u32), snd_una: u32, snd_max: u32) {
        if !seq_lt(start, end) || seq_le(end, snd_una) || seq_gt(end, snd_max) {
            return;
        }
        let start = if seq_lt(start, snd_una) { snd_una } else { start };
        let (mut start, mut end) = (start, end);
        // Merge every range it touches, then insert in order.
        let mut kept = [(0u32, 0u32); MAX_RANGES];
        let mut n = 0;
        for &(s, e) in self.ranges() {
            if seq_le(s, end) && seq_ge(e, start) {
                if seq_lt(s, start) {
                    start = s;
                }
                if seq_gt(e, end) {
                    end = e;
                }
            } else {
                kept[n] = (s, e);
                n += 1;
            }
        }
        let at = kept[..n].iter().position(|&(s, _)| seq_gt(s, start)).unwrap_or(n);
        if n == MAX_RANGES {
            // Full: the highest range falls off (the lowest matter first for recovery).
            if at == MAX_RANGES {
                return;
            }
            n -= 1;
        }
        kept.copy_within(at..n, at + 1);
        kept[at] = (start, end);
        self.ranges = kept;
        self.len = n + 1;
    }

    /// The peer acknowledged everything below `snd_una`.
    pub fn advance(&mut self, snd_una: u32) {
        let mut kept = [(0u32, 0u32); MAX_RANGES];
        let mut n = 0;
        for &(s, e) in self.ranges() {
            if seq_gt(e, snd_una) {
                kept[n] = (if seq_lt(s, snd_una) { snd_una } else { s }, e);
                n += 1;
            }
        }
        self.ranges = kept;
        self.len = n;
    }

    /// Bytes SACKed (out of the pipe: they arrived).
    pub fn sacked_bytes(&self) -> u32 {
        self.ranges().iter().map(|&(s, e)| e.wrapping_sub(s)).sum()
    }

    /// The highest sequence number SACKed, if any.
    pub fn highest(&self) -> Option<u32> {
        self.ranges().last().map(|&(_, e)| e)
    }

    /// The first hole at or after `from` below the highest SACKed byte: `[start, end)` where
    /// `end` is the next SACKed range's start (RFC 6675 4's NextSeg, rule 1).
    pub fn next_hole(&self, from: u32) -> Option<(u32, u32)> {
        let mut at = from;
        for &(s, e) in self.ranges() {
            if seq_le(e, at) {
                continue;
            }
            if seq_lt(at, s) {
                return Some((at, s));
            }
            at = e;
        }
        None
    }

    /// Bytes SACKed above `seq` (RFC 6675 IsLost: DupThresh segments' worth above a byte means
    /// it is lost).
    pub fn sacked_above(&self, seq: u32) -> u32 {
        self.ranges()
            .iter()
            .map(|&(s, e)| {
                if seq_ge(s, seq) {
                    e.wrapping_sub(s)
                } else if seq_gt(e, seq) {
                    seq_diff(e, seq) as u32
                } else {
                    0
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_merge_sort_and_leave_holes() {
        let mut b = Scoreboard::default();
        b.add((300, 400), 100, 1000);
        b.add((500, 600), 100, 1000);
        b.add((400, 450), 100, 1000);
        assert_eq!(b.ranges(), &[(300, 450), (500, 600)]);
        assert_eq!(b.sacked_bytes(), 250);
        assert_eq!(b.next_hole(100), Some((100, 300)));
        assert_eq!(b.next_hole(300), Some((450, 500)));
        assert_eq!(b.next_hole(550), None, "nothing SACKed above: not a hole");
        assert_eq!(b.sacked_above(420), 30 + 100);
        b.advance(520);
        assert_eq!(b.ranges(), &[(520, 600)]);
    }

    /// RFC 2018 5: blocks below SND.UNA or beyond what was sent are not believed.
    #[test]
    fn stale_and_forged_blocks_are_ignored() {
        let mut b = Scoreboard::default();
        b.add((10, 90), 100, 1000);
        b.add((900, 1100), 100, 1000);
        b.add((500, 400), 100, 1000);
        assert!(b.is_empty());
        b.add((u32::MAX - 10, 20), u32::MAX - 20, 100);
        assert_eq!(b.sacked_bytes(), 31, "across the wrap");
    }

    #[test]
    fn a_full_board_keeps_the_lowest_ranges() {
        let mut b = Scoreboard::default();
        for i in 0..10u32 {
            b.add((1000 + i * 100, 1050 + i * 100), 0, 10_000);
        }
        assert_eq!(b.len, MAX_RANGES);
        assert_eq!(b.ranges()[0], (1000, 1050));
        b.add((10, 20), 0, 10_000);
        assert_eq!(b.ranges()[0], (10, 20));
        assert_eq!(b.highest(), Some(1650));
    }
}
