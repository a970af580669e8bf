//! A fixed pool of packet buffers shared by the input thread and the shards (the software
//! analogue of a DPDK mempool).
//!
//! Buffers are allocated once; a packet travels as the buffer's index. Whoever holds the index
//! owns the buffer: the input fills it, a shard reads it, and the last user returns it through a
//! lock-free queue. A buffer grows only if a packet is larger than it, and keeps that size, so
//! the steady state allocates nothing.

use crate::runtime::park::Waker;
use crossbeam_queue::ArrayQueue;
use std::cell::UnsafeCell;

/// See the module documentation.
pub struct PacketPool {
    bufs: Box<[UnsafeCell<Vec<u8>>]>,
    free: ArrayQueue<u32>,
    /// The allocating thread, woken when a buffer comes back to an empty pool.
    allocator: Waker,
}

// SAFETY: a buffer is only touched by the holder of its index, and indices move between threads
// through queues and rings whose release/acquire ordering publishes the buffer's contents.
unsafe impl Sync for PacketPool {}
unsafe impl Send for PacketPool {}

impl PacketPool {
    /// `count` buffers of `buf_size` bytes each.
    pub fn new(count: usize, buf_size: usize) -> PacketPool {
        let free = ArrayQueue::new(count.max(1));
        for i in 0..count as u32 {
            let _ = free.push(i);
        }
        PacketPool { bufs: (0..count).map(|_| UnsafeCell::new(Vec::with_capacity(buf_size))).collect(), free, allocator: Waker::new() }
    }

    /// Number of buffers.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Takes a free buffer.
    #[inline]
    pub fn alloc(&self) -> Option<u32> {
        self.free.pop()
    }

    /// The buffer to fill.
    ///
    /// # Safety
    /// The caller must hold `idx` (from [`PacketPool::alloc`]) and not have handed it on.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub unsafe fn buf_mut(&self, idx: u32) -> &mut Vec<u8> {
        unsafe { &mut *self.bufs[idx as usize].get() }
    }

    /// The first `len` bytes of a filled buffer.
    ///
    /// # Safety
    /// The caller must hold `idx`, received after the buffer was filled.
    #[inline]
    pub unsafe fn bytes(&self, idx: u32, len: u32) -> &[u8] {
        let buf = unsafe { &*self.bufs[idx as usize].get() };
        &buf[..(len as usize).min(buf.len())]
    }

    /// Returns a buffer; the caller gives up `idx`. Callers wake the allocator
    /// ([`PacketPool::allocator_waker`]) once per batch of frees, not per packet.
    #[inline]
    pub fn free(&self, idx: u32) {
        // Cannot fail: there are never more indices than slots.
        let _ = self.free.push(idx);
    }

    /// The waker of the thread that allocates (it parks when the pool runs dry).
    pub fn allocator_waker(&self) -> &Waker {
        &self.allocator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_circulate() {
        let pool = PacketPool::new(2, 16);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        unsafe {
            let buf = pool.buf_mut(a);
            buf.clear();
            buf.extend_from_slice(&[1; 100]); // larger than the initial size: grows once
            assert_eq!(pool.bytes(a, 100).len(), 100);
        }
        pool.free(a);
        pool.free(b);
        assert_eq!(pool.available(), 2);
    }
}
