//! A shard's budget for its served connections' buffers (`[[service]] buffer_memory`): how
//! much of its send buffer a connection may promise its NFs, and how far its send and receive
//! rings may grow, so that all of a service's connections together stay within the budget.
//!
//! NFs write asynchronously, against credit the shard published earlier; the bytes must fit
//! when they arrive, so a promise is memory reserved. A connection's holding is therefore what
//! its rings hold, or what its send ring would hold once every promised byte came, whichever
//! is more. A promise reaches at most [`PROMISE_STEP`] past what the NFs wrote (a large answer
//! is written step by step, each step announced by `SEND_ROOM`), so that an idle connection
//! reserves at most a step once its rings are freed. Connections the budget could not give a
//! step to are told once memory is free again (the shard keeps them in a list).

/// What a promise reaches beyond what NFs wrote, at most: a response of this size is written
/// in one go.
pub const PROMISE_STEP: usize = 32 << 10;

/// A connection's memory as the budget weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMemory {
    /// Bytes its send buffer could take within its configured size (0 once it cannot send).
    pub send_free: usize,
    /// Bytes in the send buffer (written, not acknowledged).
    pub send_len: usize,
    /// Heap the send ring and the receive ring hold.
    pub send_allocated: usize,
    pub receive_allocated: usize,
    /// Bytes promised to the NFs and not written yet.
    pub outstanding: usize,
    /// It still takes writes: once it does not (closing, closed), what it promised is void
    /// (a late write is refused, and counted) and reserves nothing.
    pub writable: bool,
    /// How far a promise may reach past what the NFs wrote: [`PROMISE_STEP`], or more for a
    /// connection that streams what another one receives (a split proxy's side, whose peer's
    /// window is what its NFs are promised).
    pub step: usize,
}

impl ConnMemory {
    /// What the send ring holds or must be able to hold: the promised bytes included.
    fn send_reserved(&self) -> usize {
        let promised = if self.writable { self.outstanding } else { 0 };
        self.send_allocated.max(self.send_len + promised)
    }

    /// The connection's holding against the budget.
    pub fn holding(&self) -> u64 {
        (self.receive_allocated + self.send_reserved()) as u64
    }
}

/// What [`BufferBudget::settle`] decided for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Room to promise beyond what the NFs wrote (the credit's new reach; never lowers one).
    pub promise: usize,
    /// Its holding now, promise included.
    pub holding: u64,
    /// The budget kept the promise below what the send buffer had room for.
    pub short: bool,
}

/// Per service of a shard: the budget and what its connections hold.
#[derive(Debug, Default)]
pub struct BufferBudget {
    budget: Vec<u64>,
    held: Vec<u64>,
    /// The most held at once, per service.
    peak: Vec<u64>,
    /// Some holding went down since [`BufferBudget::take_freed`].
    freed: bool,
}

impl BufferBudget {
    /// Budgets per service, in bytes.
    pub fn new(budgets: Vec<u64>) -> BufferBudget {
        let n = budgets.len();
        BufferBudget { budget: budgets, held: vec![0; n], peak: vec![0; n], freed: false }
    }

    /// What a connection of `service` holding `holding` may hold in all: its own and what
    /// the others leave.
    fn room_for(&self, service: usize, holding: u64) -> usize {
        let others = self.held[service].saturating_sub(holding);
        self.budget[service].saturating_sub(others) as usize
    }

    /// The limits for a connection's send and receive rings while it works (its holding
    /// `mem.holding()`, as last settled): the send ring may grow to what it was promised, the
    /// receive ring into what is left of the budget.
    pub fn limits(&self, service: usize, mem: &ConnMemory) -> (usize, usize) {
        let all = self.room_for(service, mem.holding());
        let send = mem.send_reserved();
        (send, all.saturating_sub(send).max(mem.receive_allocated))
    }

    /// After an operation on a connection whose holding was `was` and whose memory is now
    /// `mem`: the room it may promise (a step at most, within the budget) and its holding,
    /// counted.
    pub fn settle(&mut self, service: usize, was: u64, mem: &ConnMemory) -> Settled {
        let all = self.room_for(service, was);
        let want = mem.send_free.min(mem.step);
        // The send ring may hold what the budget leaves once the receive ring is counted.
        let for_send = all.saturating_sub(mem.receive_allocated);
        let promise = want.min(for_send.saturating_sub(mem.send_len));
        let promised = ConnMemory { outstanding: mem.outstanding.max(promise), ..*mem };
        let holding = promised.holding();
        self.account(service, was, holding);
        Settled { promise, holding, short: promise < want }
    }

    /// A connection of `service` holding `holding` ended.
    pub fn release(&mut self, service: usize, holding: u64) {
        self.account(service, holding, 0);
    }

    fn account(&mut self, service: usize, was: u64, now: u64) {
        self.held[service] = self.held[service].saturating_sub(was) + now;
        self.peak[service] = self.peak[service].max(self.held[service]);
        self.freed |= now < was;
    }

    /// Whether a holding went down since the last call (connections kept short may get more).
    pub fn take_freed(&mut self) -> bool {
        std::mem::take(&mut self.freed)
    }

    /// Whether a holding went down since [`BufferBudget::take_freed`] (without taking it).
    pub fn has_freed(&self) -> bool {
        self.freed
    }

    /// Whether `service`'s connections hold all but less than a step of its budget.
    pub fn is_short(&self, service: usize) -> bool {
        self.held[service] + PROMISE_STEP as u64 > self.budget[service]
    }

    /// Bytes held now, and the most held at once, summed over the services.
    pub fn held(&self) -> u64 {
        self.held.iter().sum()
    }

    pub fn peak(&self) -> u64 {
        self.peak.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(send_free: usize, send_len: usize, send_allocated: usize, outstanding: usize) -> ConnMemory {
        ConnMemory { send_free, send_len, send_allocated, receive_allocated: 0, outstanding, writable: true, step: PROMISE_STEP }
    }

    #[test]
    fn a_promise_is_a_step_at_most_and_reserved_until_written() {
        let mut b = BufferBudget::new(vec![100 << 10]);
        // A new connection with a 64 KiB send buffer: one step promised, reserved.
        let s = b.settle(0, 0, &mem(64 << 10, 0, 0, 0));
        assert_eq!((s.promise, s.holding, s.short), (PROMISE_STEP, PROMISE_STEP as u64, false));
        assert_eq!(b.held(), PROMISE_STEP as u64);
        // While it works, its send ring may grow to the promise; the receive ring into the rest.
        let m = mem(64 << 10, 0, 0, PROMISE_STEP);
        assert_eq!(b.limits(0, &m), (PROMISE_STEP, (100 << 10) - PROMISE_STEP));
        // It wrote the step (its ring grew to hold it): the next step is reserved beyond it.
        let s = b.settle(0, s.holding, &mem(32 << 10, PROMISE_STEP, PROMISE_STEP, 0));
        assert_eq!((s.promise, s.holding), (PROMISE_STEP, 2 * PROMISE_STEP as u64));
    }

    #[test]
    fn at_the_budget_promises_shrink_and_grow_again_once_memory_is_freed() {
        let mut b = BufferBudget::new(vec![48 << 10]);
        let first = b.settle(0, 0, &mem(64 << 10, 0, 0, 0));
        let second = b.settle(0, 0, &mem(64 << 10, 0, 0, 0));
        assert_eq!((second.promise, second.short), (16 << 10, true), "what the first left");
        assert!(b.is_short(0));
        let third = b.settle(0, 0, &mem(64 << 10, 0, 0, 0));
        assert_eq!((third.promise, third.holding, third.short), (0, 0, true));
        assert!(!b.take_freed());
        b.release(0, first.holding);
        assert!(b.take_freed(), "the one kept short is told");
        let again = b.settle(0, third.holding, &mem(64 << 10, 0, 0, 0));
        assert_eq!((again.promise, again.short), (PROMISE_STEP, false));
        assert_eq!(b.held(), (16 << 10) + PROMISE_STEP as u64);
        assert_eq!(b.peak(), 48 << 10);
    }

    #[test]
    fn a_promise_already_made_stays_reserved_whatever_the_budget_says_now() {
        let mut b = BufferBudget::new(vec![40 << 10]);
        let s = b.settle(0, 0, &mem(64 << 10, 0, 0, 0));
        let other = b.settle(0, 0, &mem(64 << 10, 0, 0, 0));
        assert_eq!(other.promise, 8 << 10);
        // The first connection still owes its whole step: its holding keeps it, and its send
        // ring may still grow to it.
        let m = mem(64 << 10, 0, 0, PROMISE_STEP);
        let again = b.settle(0, s.holding, &m);
        assert_eq!((again.promise, again.holding), (PROMISE_STEP, PROMISE_STEP as u64));
        assert_eq!(b.limits(0, &m).0, PROMISE_STEP);
        assert!(b.held() <= 40 << 10);
        // Once it takes no more writes (it closed), its promise reserves nothing.
        let closed = ConnMemory { writable: false, ..mem(0, 0, 0, PROMISE_STEP) };
        assert_eq!(b.settle(0, again.holding, &closed).holding, 0);
        assert_eq!(b.held(), other.holding);
    }

    #[test]
    fn the_receive_ring_grows_only_into_what_the_budget_leaves() {
        let mut b = BufferBudget::new(vec![64 << 10]);
        let busy = b.settle(0, 0, &ConnMemory { receive_allocated: 16 << 10, ..mem(64 << 10, 0, 0, 0) });
        assert_eq!(busy.holding, (16 << 10) + PROMISE_STEP as u64);
        let held_by_new = b.settle(0, 0, &mem(64 << 10, 0, 0, 0)).holding;
        assert_eq!(held_by_new, 16 << 10, "the step cut to what is left");
        // A third one at the full budget: its receive ring stays where it is.
        let idle = ConnMemory { receive_allocated: 0, ..mem(0, 0, 0, 0) };
        assert_eq!(b.limits(0, &idle), (0, 0));
    }
}
