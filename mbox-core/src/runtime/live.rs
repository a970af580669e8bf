//! Live counters of a running pipeline, the data plane's side: each shard and NF thread
//! publishes a copy of its report now and then into a [`Snapshot`] that readers (the control
//! plane, `control::live`) take copies of.
//!
//! The threads keep counting in plain fields of their own (no atomic or lock per event); at
//! most once per [`PUBLISH_EVERY`] they copy their report into a [`Snapshot`] with `try_lock`,
//! skipping the copy if a reader holds the lock at that moment. So `mboxctl stats` is at most
//! a few milliseconds behind, and the final report (at the end of the run) stays exact.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a thread copies its report for readers.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(5);

/// The latest copy of a thread's report.
#[derive(Default)]
pub struct Snapshot<T> {
    latest: Mutex<T>,
}

impl<T: Clone> Snapshot<T> {
    /// A snapshot holding `initial` until its thread publishes.
    pub fn new(initial: T) -> Snapshot<T> {
        Snapshot { latest: Mutex::new(initial) }
    }

    /// The latest copy.
    pub fn get(&self) -> T {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The writer's side: publishes into a snapshot when it is due.
pub struct Publisher<T> {
    snapshot: Arc<Snapshot<T>>,
    last: Instant,
    /// Rounds since the clock was last read (reading it every round would cost more than the
    /// copies).
    rounds: u32,
}

impl<T: Clone> Publisher<T> {
    pub fn new(snapshot: Arc<Snapshot<T>>) -> Publisher<T> {
        Publisher { snapshot, last: Instant::now(), rounds: 0 }
    }

    /// Whether a copy is due: true at most once per [`PUBLISH_EVERY`]; call once per round of
    /// the thread's loop, and always `publish` when it says yes.
    #[inline]
    pub fn due(&mut self) -> bool {
        self.rounds += 1;
        if self.rounds < 64 {
            return false;
        }
        self.rounds = 0;
        self.last.elapsed() >= PUBLISH_EVERY
    }

    /// Copies `report` for readers (reusing the copy's allocations), unless a reader holds it
    /// right now.
    pub fn publish(&mut self, report: &T) {
        self.last = Instant::now();
        self.rounds = 0;
        if let Ok(mut latest) = self.snapshot.latest.try_lock() {
            latest.clone_from(report);
        }
    }

    /// Publishes whatever the clock says (a thread about to idle, or a reload).
    pub fn publish_now(&mut self, report: &T) {
        if let Ok(mut latest) = self.snapshot.latest.lock() {
            latest.clone_from(report);
        }
        self.last = Instant::now();
        self.rounds = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publisher_copies_at_most_once_per_period_and_skips_a_held_snapshot() {
        let snapshot = Arc::new(Snapshot::<Vec<u64>>::default());
        let mut publisher = Publisher::new(snapshot.clone());
        // Not due until 64 rounds and the period have passed.
        assert!((0..63).all(|_| !publisher.due()));
        std::thread::sleep(PUBLISH_EVERY);
        assert!(publisher.due());
        publisher.publish(&vec![1, 2]);
        assert_eq!(snapshot.get(), [1, 2]);
        // A reader holding the lock: the copy is skipped, not waited for.
        let held = snapshot.latest.lock().unwrap();
        publisher.publish(&vec![3]);
        drop(held);
        assert_eq!(snapshot.get(), [1, 2]);
        publisher.publish_now(&vec![4]);
        assert_eq!(snapshot.get(), [4]);
    }
}
