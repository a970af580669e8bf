//! A fixed pool of packet buffers shared by the input thread and the shards (the software
//! analogue of a DPDK mempool).
//!
//! Buffers are allocated once; a packet travels as the buffer's index. Whoever holds the index
//! owns the buffer: the input fills it, a shard reads it, and the last user gives it back.
//! Giving back goes through an SPSC ring per releasing thread (a shard, the output thread),
//! in batches, to the one allocating thread: no cache line is shared by more than two threads
//! and nothing is written per packet across cores. A buffer grows only if a packet is larger
//! than it, and keeps that size, so the steady state allocates nothing.
//!
//! A slot can also hold a buffer a driver lent (a DPDK mbuf): the packet's bytes stay where the
//! NIC wrote them, the slot only points at them, and when the slot comes back to the allocator
//! the buffer goes back to the driver (unless an output took it to transmit). Packets move as
//! handles either way.

use crate::sys::park::Waker;
use rtrb::{Consumer, Producer, RingBuffer};
use std::cell::UnsafeCell;
use std::sync::Arc;

/// The buffers. See the module documentation.
pub struct PacketPool {
    bufs: Box<[UnsafeCell<Vec<u8>>]>,
    /// Per slot, a lent buffer (its bytes and the driver's token for it), or none.
    lent: Box<[UnsafeCell<Option<Lent>>]>,
    /// Gives a lent buffer back to its driver (set by the input that lends them).
    give_back: Option<unsafe fn(*mut std::ffi::c_void)>,
    /// The allocating thread, woken when buffers come back while it waits for one.
    allocator: Waker,
}

/// A buffer a driver lent: where its bytes are, how many, and the driver's handle for it.
#[derive(Debug, Clone, Copy)]
pub struct Lent {
    pub data: *const u8,
    pub len: u32,
    pub token: *mut std::ffi::c_void,
}

// SAFETY: a buffer is only touched by the holder of its index, and indices move between threads
// through rings whose release/acquire ordering publishes the buffer's contents.
unsafe impl Sync for PacketPool {}
unsafe impl Send for PacketPool {}

/// Creates `count` buffers of `buf_size` bytes, the allocator's end, and `releasers` ends for
/// threads that give buffers back.
pub fn packet_pool(count: usize, buf_size: usize, releasers: usize) -> (Arc<PacketPool>, Allocator, Vec<Releaser>) {
    lending_pool(count, buf_size, releasers, None)
}

/// [`packet_pool`] for an input that lends its own buffers: `give_back` returns one to its
/// driver.
pub fn lending_pool(
    count: usize,
    buf_size: usize,
    releasers: usize,
    give_back: Option<unsafe fn(*mut std::ffi::c_void)>,
) -> (Arc<PacketPool>, Allocator, Vec<Releaser>) {
    let pool = Arc::new(PacketPool {
        bufs: (0..count).map(|_| UnsafeCell::new(Vec::with_capacity(if give_back.is_some() { 0 } else { buf_size }))).collect(),
        lent: (0..count).map(|_| UnsafeCell::new(None)).collect(),
        give_back,
        allocator: Waker::new(),
    });
    let mut returns = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..releasers {
        // Room for every buffer: a release never waits.
        let (p, c) = RingBuffer::new(count.max(1));
        returns.push(c);
        ends.push(Releaser { ring: p, batch: Vec::with_capacity(RELEASE_BATCH), pool: pool.clone() });
    }
    let allocator = Allocator { pool: pool.clone(), free: (0..count as u32).rev().collect(), returns };
    (pool, allocator, ends)
}

/// Packet buffer size before any growth (a jumbo-free Ethernet frame fits).
pub const INITIAL_BUFFER: usize = 2048;

/// Bytes a pool of `count` buffers of `buf_size` bytes with `releasers` release rings
/// allocates when it is made (a pool whose input lends its own buffers allocates none).
pub fn footprint(count: usize, buf_size: usize, releasers: usize, lends: bool) -> usize {
    // The allocator's free list and every release ring hold a u32 per buffer.
    let per_buffer = std::mem::size_of::<UnsafeCell<Vec<u8>>>()
        + std::mem::size_of::<UnsafeCell<Option<Lent>>>()
        + (1 + releasers) * std::mem::size_of::<u32>();
    // Each buffer is an allocation of its own, with the allocator's header (16 bytes in glibc).
    let buffer = if lends { 0 } else { buf_size + 16 };
    count * (per_buffer + buffer)
}

/// Buffers a releaser collects before handing them back.
const RELEASE_BATCH: usize = 64;

impl PacketPool {
    /// The buffer to fill.
    ///
    /// # Safety
    /// The caller must hold `idx` (from [`Allocator::alloc`]) and not have handed it on.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub unsafe fn buf_mut(&self, idx: u32) -> &mut Vec<u8> {
        unsafe { &mut *self.bufs[idx as usize].get() }
    }

    /// The first `len` bytes of a filled buffer (or of the buffer lent to the slot).
    ///
    /// # Safety
    /// The caller must hold `idx`, received after the buffer was filled.
    #[inline]
    pub unsafe fn bytes(&self, idx: u32, len: u32) -> &[u8] {
        if let Some(l) = unsafe { *self.lent[idx as usize].get() } {
            // SAFETY: the driver keeps a lent buffer valid until it is given back, which only
            // the slot's holder can make happen.
            return unsafe { std::slice::from_raw_parts(l.data, (len.min(l.len)) as usize) };
        }
        let buf = unsafe { &*self.bufs[idx as usize].get() };
        &buf[..(len as usize).min(buf.len())]
    }

    /// [`PacketPool::bytes`], writable: for a frame rewritten in place before it is sent on.
    ///
    /// # Safety
    /// As for [`PacketPool::bytes`]; and no other reference into the buffer may live.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub unsafe fn bytes_mut(&self, idx: u32, len: u32) -> &mut [u8] {
        if let Some(l) = unsafe { *self.lent[idx as usize].get() } {
            // SAFETY: as in `bytes`; the driver's buffer is the holder's to write.
            return unsafe { std::slice::from_raw_parts_mut(l.data as *mut u8, (len.min(l.len)) as usize) };
        }
        let buf = unsafe { &mut *self.bufs[idx as usize].get() };
        let n = (len as usize).min(buf.len());
        &mut buf[..n]
    }

    /// Puts a buffer a driver lent into slot `idx`.
    ///
    /// # Safety
    /// The caller must hold `idx` (not handed on yet), and the buffer must stay valid until the
    /// pool gives it back (or [`PacketPool::take_lent`] takes it).
    #[inline]
    pub unsafe fn lend(&self, idx: u32, lent: Lent) {
        unsafe { *self.lent[idx as usize].get() = Some(lent) };
    }

    /// Takes the lent buffer out of slot `idx` (an output about to transmit it): the pool will
    /// not give it back to the driver.
    ///
    /// # Safety
    /// The caller must hold `idx`.
    #[inline]
    pub unsafe fn take_lent(&self, idx: u32) -> Option<Lent> {
        unsafe { (*self.lent[idx as usize].get()).take() }
    }

    /// Gives the lent buffer of slot `idx`, if any, back to its driver.
    fn give_back(&self, idx: u32) {
        // SAFETY: called by the allocator for a slot that came back to it: nobody else holds it.
        if let Some(l) = unsafe { (*self.lent[idx as usize].get()).take() } {
            if let Some(f) = self.give_back {
                // SAFETY: the token is the one the input lent with this slot, given back once.
                unsafe { f(l.token) };
            }
        }
    }

    /// The waker of the thread that allocates (it parks when the pool runs dry).
    pub fn allocator_waker(&self) -> &Waker {
        &self.allocator
    }
}

/// The allocating thread's end: free buffers, refilled from the releasers' rings.
pub struct Allocator {
    pool: Arc<PacketPool>,
    free: Vec<u32>,
    returns: Vec<Consumer<u32>>,
}

impl Allocator {
    /// Takes a free buffer.
    #[inline]
    pub fn alloc(&mut self) -> Option<u32> {
        if self.free.is_empty() {
            self.collect();
        }
        self.free.pop()
    }

    /// Gives back a buffer the allocating thread itself did not hand on.
    pub fn free(&mut self, idx: u32) {
        self.pool.give_back(idx);
        self.free.push(idx);
    }

    /// True when released buffers wait to be collected.
    pub fn has_returns(&self) -> bool {
        self.returns.iter().any(|r| !r.is_empty())
    }

    /// The pool this allocator serves.
    pub fn pool(&self) -> &Arc<PacketPool> {
        &self.pool
    }

    fn collect(&mut self) {
        for ring in &mut self.returns {
            let n = ring.slots();
            if let Ok(chunk) = ring.read_chunk(n) {
                for idx in chunk {
                    // A lent buffer goes back to its driver with its slot.
                    self.pool.give_back(idx);
                    self.free.push(idx);
                }
            }
        }
    }
}

/// A releasing thread's end.
pub struct Releaser {
    ring: Producer<u32>,
    batch: Vec<u32>,
    pool: Arc<PacketPool>,
}

impl Releaser {
    /// Gives a buffer back (the caller gives up `idx`); batched, see [`Releaser::flush`].
    #[inline]
    pub fn release(&mut self, idx: u32) {
        self.batch.push(idx);
        if self.batch.len() >= RELEASE_BATCH {
            self.flush();
        }
    }

    /// Hands the collected buffers to the allocator and wakes it if it waits. Call once per
    /// round of work.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // Cannot fail: the ring holds every buffer of the pool.
        let _ = self.ring.push_partial_slice(&self.batch);
        self.batch.clear();
        self.pool.allocator.wake();
    }
}

impl Drop for Releaser {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_circulate_through_releasers() {
        let (pool, mut alloc, mut releasers) = packet_pool(2, 16, 1);
        let a = alloc.alloc().unwrap();
        let b = alloc.alloc().unwrap();
        assert!(alloc.alloc().is_none());
        unsafe {
            let buf = pool.buf_mut(a);
            buf.clear();
            buf.extend_from_slice(&[1; 100]); // larger than the initial size: grows once
            assert_eq!(pool.bytes(a, 100).len(), 100);
        }
        releasers[0].release(a);
        assert!(alloc.alloc().is_none(), "released buffers travel in batches");
        releasers[0].flush();
        assert!(alloc.has_returns());
        assert_eq!(alloc.alloc(), Some(a));
        alloc.free(b);
        assert_eq!(alloc.alloc(), Some(b));
        releasers[0].release(a);
        drop(releasers);
        assert_eq!(alloc.alloc(), Some(a), "a releaser hands back what it holds when it goes");
    }

    static GIVEN_BACK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn lent_buffers_go_back_to_their_driver_unless_taken() {
        unsafe fn give_back(token: *mut std::ffi::c_void) {
            GIVEN_BACK.fetch_add(token as usize, std::sync::atomic::Ordering::SeqCst);
        }
        let (pool, mut alloc, mut releasers) = lending_pool(1, 16, 1, Some(give_back));
        let frame = b"a frame the NIC wrote".to_vec();
        let a = alloc.alloc().unwrap();
        unsafe { pool.lend(a, Lent { data: frame.as_ptr(), len: frame.len() as u32, token: std::ptr::without_provenance_mut(1) }) };
        assert_eq!(unsafe { pool.bytes(a, 7) }, b"a frame");
        releasers[0].release(a);
        releasers[0].flush();
        assert_eq!(alloc.alloc(), Some(a));
        assert_eq!(GIVEN_BACK.load(std::sync::atomic::Ordering::SeqCst), 1, "given back when its slot returned");
        // An output that takes the buffer to transmit it: the pool does not give it back.
        unsafe { pool.lend(a, Lent { data: frame.as_ptr(), len: frame.len() as u32, token: std::ptr::without_provenance_mut(10) }) };
        assert_eq!(unsafe { pool.take_lent(a) }.map(|l| l.token as usize), Some(10));
        releasers[0].release(a);
        releasers[0].flush();
        assert_eq!(alloc.alloc(), Some(a));
        assert_eq!(GIVEN_BACK.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
