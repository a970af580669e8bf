//! Spin briefly, then park: how idle pipeline threads wait without burning a core.
//!
//! Spinning only pays when the spinning thread has a core to itself: on a machine with fewer
//! cores than busy pipeline threads (2 cores, a shard and 8 NFs), a spinning thread takes the
//! core from a thread with work. So [`IdlePolicy`] spins only when the run's threads fit the
//! cores; otherwise an idle thread yields twice and parks.
//!
//! Every thread that waits for work owns a [`Waker`]. Before parking it announces itself
//! (`sleeping = true`), re-checks its inputs, and only then parks; a producer publishes its
//! item, then checks `sleeping` and unparks. Both sides put a SeqCst fence between their write
//! and their read, so either the producer sees the flag or the consumer sees the item: no
//! wakeup is lost. Unparking costs a syscall only when the consumer really sleeps.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::Duration;

/// The sleeping flag and thread handle of one waiting thread.
#[derive(Default, Debug)]
pub struct Waker {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Waker {
    pub fn new() -> Waker {
        Waker::default()
    }

    /// Binds the waker to the calling thread; call once at the start of the owner's loop.
    pub fn bind_current(&self) {
        let _ = self.thread.set(thread::current());
    }

    /// Wakes the owner if it sleeps. Call after publishing work for it.
    #[inline]
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// How an idle thread waits: from `[runtime] idle` and whether the run's threads fit the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Never park (`idle = "spin"`).
    spin_forever: bool,
    /// Rounds of `spin_loop` before yielding, and of yielding before parking.
    spin_rounds: u32,
    yield_rounds: u32,
}

impl IdlePolicy {
    /// The policy for a run of `threads` busy threads (input, shards, NFs, output) on this
    /// machine; `spin_forever` when the user gave them dedicated cores (`idle = "spin"`).
    pub fn new(spin_forever: bool, threads: usize) -> IdlePolicy {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        IdlePolicy::for_cores(spin_forever, threads, cores)
    }

    /// Whether idle threads never sleep (`idle = "spin"`: dedicated cores).
    pub fn spins_forever(&self) -> bool {
        self.spin_forever
    }

    fn for_cores(spin_forever: bool, threads: usize, cores: usize) -> IdlePolicy {
        if threads <= cores {
            IdlePolicy { spin_forever, spin_rounds: 32, yield_rounds: 8 }
        } else {
            IdlePolicy { spin_forever, spin_rounds: 0, yield_rounds: 2 }
        }
    }
}

/// The owner's side: how long to spin, yield and then park between checks for work.
pub struct Idler {
    idle_rounds: u32,
    policy: IdlePolicy,
    /// The thread parked in this idle period and came back without work.
    slept: bool,
    /// Parks in a row while polling a device ([`Idler::idle_polling`]).
    polls_parked: u32,
}
/// A parked thread re-checks its inputs at least this often, as a safety net.
const PARK_TIMEOUT: Duration = Duration::from_millis(20);
/// With `idle = "spin"` (never parks), rounds of spinning after which the input counts as quiet
/// (a few milliseconds).
const QUIET_SPIN_ROUNDS: u32 = 1 << 14;

impl Idler {
    pub fn new(policy: IdlePolicy) -> Idler {
        Idler { idle_rounds: 0, policy, slept: false, polls_parked: 0 }
    }

    /// Work was found: the next idle period starts with spinning again.
    #[inline]
    pub fn reset(&mut self) {
        self.idle_rounds = 0;
        self.slept = false;
        self.polls_parked = 0;
    }

    /// No work was found. `has_work` re-checks the inputs after the thread announced that it
    /// sleeps; it is only called on the way to parking.
    pub fn idle(&mut self, waker: &Waker, has_work: impl FnOnce() -> bool) {
        self.idle_rounds = self.idle_rounds.saturating_add(1);
        let p = self.policy;
        if p.spin_forever || self.idle_rounds <= p.spin_rounds {
            for _ in 0..16 {
                std::hint::spin_loop();
            }
            return;
        }
        if self.idle_rounds <= p.spin_rounds + p.yield_rounds {
            thread::yield_now();
            return;
        }
        self.slept |= park(waker, has_work, PARK_TIMEOUT);
    }

    /// As [`Idler::idle`], for a thread that also polls a device nobody wakes it for (a NIC
    /// queue): it parks for 10 us at first, doubling up to 1 ms while nothing comes, so that an
    /// idle wire costs almost no CPU and traffic is seen within a millisecond; a waker still
    /// ends the park at once.
    pub fn idle_polling(&mut self, waker: &Waker, has_work: impl FnOnce() -> bool) {
        let p = self.policy;
        if p.spin_forever || self.idle_rounds < p.spin_rounds + p.yield_rounds {
            self.idle(waker, has_work);
            return;
        }
        let micros = 10u64 << self.polls_parked.min(7);
        if park(waker, has_work, Duration::from_micros(micros.min(1000))) {
            self.polls_parked = self.polls_parked.saturating_add(1);
            self.slept = true;
        }
    }

    /// True once the input has gone quiet: the thread slept and found no work on waking (a
    /// producer with work wakes it, and then work resets the idler), or, when it never sleeps,
    /// spun for a while. Used to flush buffered output lazily, not between every two batches
    /// of a busy run.
    pub fn is_long_idle(&self) -> bool {
        self.slept || (self.policy.spin_forever && self.idle_rounds > QUIET_SPIN_ROUNDS)
    }
}

/// Announces that the thread sleeps, re-checks `has_work`, and parks for at most `timeout`
/// unless work came meanwhile. Returns whether it parked.
fn park(waker: &Waker, has_work: impl FnOnce() -> bool, timeout: Duration) -> bool {
    waker.sleeping.store(true, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    if has_work() {
        waker.sleeping.store(false, Ordering::Relaxed);
        return false;
    }
    thread::park_timeout(timeout);
    waker.sleeping.store(false, Ordering::Relaxed);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn a_parked_thread_is_woken_by_new_work() {
        let waker = Arc::new(Waker::new());
        let work = Arc::new(AtomicU64::new(0));
        let (w, k) = (waker.clone(), work.clone());
        let consumer = thread::spawn(move || {
            w.bind_current();
            let mut idler = Idler::new(IdlePolicy::new(false, 2));
            let mut seen = 0;
            while seen < 1000 {
                let now = k.load(Ordering::Acquire);
                if now > seen {
                    seen = now;
                    idler.reset();
                } else {
                    idler.idle(&w, || k.load(Ordering::Acquire) > seen);
                }
            }
        });
        for i in 1..=1000 {
            work.store(i, Ordering::Release);
            waker.wake();
            if i % 100 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        consumer.join().unwrap();
    }

    #[test]
    fn threads_spin_only_when_they_fit_the_cores() {
        let fits = IdlePolicy::for_cores(false, 4, 16);
        assert!(fits.spin_rounds > 0 && !fits.spin_forever);
        let crowded = IdlePolicy::for_cores(false, 11, 2);
        assert_eq!((crowded.spin_rounds, crowded.spin_forever), (0, false));
        assert!(IdlePolicy::for_cores(true, 11, 2).spin_forever, "`spin` is the user's call");
    }
}
