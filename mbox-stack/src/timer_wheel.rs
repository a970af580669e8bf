//! A shard's timer wheel: one deadline per item (an Endpoint connection's next timer), found
//! when due without scanning every item.
//!
//! A hashed wheel (Varghese and Lauck, "Hashed and Hierarchical Timing Wheels", 1987): time is
//! cut into ticks, and an item armed for tick `t` sits in bucket `t mod N`. Each advance visits
//! the buckets of the ticks that passed; an entry whose deadline lies a turn or more ahead
//! stays. Re-arming does not look for the old entry: the wheel keeps each item's current
//! deadline, and an entry that no longer matches it is stale and dropped when its bucket is
//! visited. Buckets keep their capacity, so a steady state allocates nothing.

/// Ticks of 1 ms (the Endpoint's timers are tens of ms at least: delayed ACKs, RTOs).
pub const TICK_NS: u64 = 1_000_000;
/// Buckets: one turn of the wheel is about a second.
const BUCKETS: usize = 1024;

/// The wheel. Items are `u32` indices below the capacity it was made with.
#[derive(Debug)]
pub struct TimerWheel {
    buckets: Vec<Vec<(u32, u64)>>,
    /// Per item: its armed deadline (ns), `u64::MAX` when none.
    armed: Vec<u64>,
    /// The next tick to visit.
    next_tick: u64,
    /// Items armed (not stale entries).
    len: usize,
}

impl TimerWheel {
    /// A wheel for items `0..items`, starting at time `now_ns`.
    pub fn new(items: usize, now_ns: u64) -> TimerWheel {
        TimerWheel {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            armed: vec![u64::MAX; items],
            next_tick: now_ns / TICK_NS,
            len: 0,
        }
    }

    /// Items with a deadline.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms `item` for `deadline_ns` (or disarms it with `None`), replacing what it had.
    pub fn set(&mut self, item: u32, deadline_ns: Option<u64>) {
        let Some(armed) = self.armed.get_mut(item as usize) else {
            debug_assert!(false, "timer item {item} beyond the wheel");
            return;
        };
        let deadline = deadline_ns.unwrap_or(u64::MAX);
        if *armed == deadline {
            return;
        }
        match (*armed == u64::MAX, deadline == u64::MAX) {
            (true, false) => self.len += 1,
            (false, true) => self.len -= 1,
            _ => {}
        }
        *armed = deadline;
        if deadline != u64::MAX {
            // A deadline already past fires at the next advance.
            let tick = (deadline / TICK_NS).max(self.next_tick);
            self.buckets[(tick % BUCKETS as u64) as usize].push((item, deadline));
        }
    }

    /// The deadline `item` is armed for.
    pub fn deadline(&self, item: u32) -> Option<u64> {
        self.armed.get(item as usize).copied().filter(|&d| d != u64::MAX)
    }

    /// Moves time to `now_ns` and appends the items due by then to `due` (each once, disarmed:
    /// the caller runs their timers and arms them again).
    pub fn advance(&mut self, now_ns: u64, due: &mut Vec<u32>) {
        let now_tick = now_ns / TICK_NS;
        if self.len == 0 {
            // Every entry left is stale: dropped, so that idle buckets do not keep growing.
            for bucket in &mut self.buckets {
                bucket.clear();
            }
            self.next_tick = self.next_tick.max(now_tick);
            return;
        }
        // After a long pause, a turn visits every bucket once.
        let last = now_tick.min(self.next_tick + BUCKETS as u64 - 1);
        while self.next_tick <= last {
            let bucket = &mut self.buckets[(self.next_tick % BUCKETS as u64) as usize];
            let mut i = 0;
            while i < bucket.len() {
                let (item, deadline) = bucket[i];
                let armed = &mut self.armed[item as usize];
                if *armed != deadline {
                    bucket.swap_remove(i); // stale: re-armed or disarmed since
                } else if deadline <= now_ns {
                    bucket.swap_remove(i);
                    *armed = u64::MAX;
                    self.len -= 1;
                    due.push(item);
                } else {
                    i += 1; // a later turn (or later within this tick)
                }
            }
            if self.next_tick == now_tick {
                break; // this tick's later deadlines stay for the next advance
            }
            self.next_tick += 1;
        }
        if self.next_tick < now_tick {
            self.next_tick = now_tick;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(w: &mut TimerWheel, now: u64) -> Vec<u32> {
        let mut v = Vec::new();
        w.advance(now, &mut v);
        v.sort_unstable();
        v
    }

    #[test]
    fn items_fire_when_due_and_not_before() {
        let ms = TICK_NS;
        let mut w = TimerWheel::new(8, 0);
        w.set(1, Some(40 * ms));
        w.set(2, Some(200 * ms + 5));
        w.set(3, Some(5 * ms));
        assert_eq!(due(&mut w, 4 * ms), Vec::<u32>::new());
        assert_eq!(due(&mut w, 40 * ms), vec![1, 3]);
        assert_eq!(due(&mut w, 200 * ms), Vec::<u32>::new(), "within the tick, before its deadline");
        assert_eq!(due(&mut w, 200 * ms + 5), vec![2]);
        assert!(w.is_empty());
    }

    #[test]
    fn rearming_and_disarming_leave_only_the_current_deadline() {
        let ms = TICK_NS;
        let mut w = TimerWheel::new(4, 0);
        w.set(0, Some(10 * ms));
        w.set(0, Some(30 * ms));
        w.set(1, Some(20 * ms));
        w.set(1, None);
        assert_eq!(w.len(), 1);
        assert_eq!(due(&mut w, 25 * ms), Vec::<u32>::new(), "the old entries are stale");
        assert_eq!(due(&mut w, 30 * ms), vec![0]);
        assert_eq!(w.deadline(0), None);
    }

    #[test]
    fn deadlines_beyond_a_turn_and_long_pauses_are_kept_right() {
        let ms = TICK_NS;
        let mut w = TimerWheel::new(4, 0);
        w.set(0, Some(60_000 * ms)); // a minute: many turns
        w.set(1, Some(1500 * ms));
        assert_eq!(due(&mut w, 1000 * ms), Vec::<u32>::new());
        assert_eq!(due(&mut w, 59_999 * ms), vec![1], "a pause longer than a turn still finds what was due");
        assert_eq!(due(&mut w, 60_000 * ms), vec![0]);
        // A deadline in the past fires at the next advance.
        w.set(2, Some(ms));
        assert_eq!(due(&mut w, 60_001 * ms), vec![2]);
    }

    #[test]
    fn a_random_schedule_fires_each_item_exactly_at_its_last_deadline() {
        // A small deterministic generator: what fires must be what a plain scan says.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let n = 64;
        let mut w = TimerWheel::new(n, 0);
        let mut model: Vec<Option<u64>> = vec![None; n];
        let mut now = 0u64;
        for _ in 0..20_000 {
            let r = next();
            match r % 4 {
                0 | 1 => {
                    let item = (r >> 8) as usize % n;
                    let deadline = now + (r >> 20) % 3_000_000_000;
                    w.set(item as u32, Some(deadline));
                    model[item] = Some(deadline);
                }
                2 => {
                    let item = (r >> 8) as usize % n;
                    w.set(item as u32, None);
                    model[item] = None;
                }
                _ => {
                    now += (r >> 16) % 50_000_000;
                    let got = due(&mut w, now);
                    let mut want: Vec<u32> = (0..n).filter(|&i| model[i].is_some_and(|d| d <= now)).map(|i| i as u32).collect();
                    want.sort_unstable();
                    for &i in &want {
                        model[i as usize] = None;
                    }
                    assert_eq!(got, want, "at {now}");
                }
            }
        }
    }
}
