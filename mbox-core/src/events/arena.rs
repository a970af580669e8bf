//! A shard's event memory: fixed slots NF threads read in place, addressed by handle.
//!
//! The shard writes an event into a free slot, then pushes the slot's handle (its index) to the
//! rings of the event's subscribers; the ring's release/acquire ordering publishes the bytes.
//! NFs only read a slot, except for the verdict byte an NF that may drop writes before it
//! reports the event done. The slot is rewritten only after every subscriber reported it done,
//! which the shard learns from their completion counters (see `runtime::lane`).

use mbox_abi::{Event, EventHeader, Verdict, MAX_EVENT_SIZE};
use std::cell::UnsafeCell;
use std::mem::{size_of, MaybeUninit};
use std::sync::atomic::{AtomicU8, Ordering};

/// The bytes of one event, as carried in slots and in NF publication rings.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct EventBytes(MaybeUninit<[u8; MAX_EVENT_SIZE]>);

impl EventBytes {
    /// Copies the `size`-byte event at `event` (at most `MAX_EVENT_SIZE`), and sets the copy's
    /// header size to it.
    ///
    /// # Safety
    /// `event` must point to `size` readable bytes that begin with an `EventHeader`, and `size`
    /// must be at least the header's size.
    pub unsafe fn copy_from(event: *const EventHeader, size: usize) -> EventBytes {
        let mut out = EventBytes(MaybeUninit::uninit());
        let size = size.min(MAX_EVENT_SIZE);
        unsafe { std::ptr::copy_nonoverlapping(event as *const u8, out.0.as_mut_ptr() as *mut u8, size) };
        out.header_mut().size = size as u32;
        out
    }

    /// Reads the event as the built-in struct `T`, for in-place fixes by the host.
    pub fn view_mut<T: mbox_abi::EventView>(&mut self) -> Option<&mut T> {
        let header = self.header();
        if header.ty.is_a(T::TYPE) && header.size as usize >= std::mem::size_of::<T>() {
            // SAFETY: type and size checked as `EventHeader::view` does; the bytes are ours.
            Some(unsafe { &mut *(self.0.as_mut_ptr() as *mut T) })
        } else {
            None
        }
    }

    /// The header at the start of the bytes.
    pub fn header(&self) -> &EventHeader {
        // SAFETY: only built by `copy_from`, which copies at least a whole header.
        unsafe { &*(self.0.as_ptr() as *const EventHeader) }
    }

    /// Mutable header, for the host to stamp fields (e.g. the publisher).
    pub fn header_mut(&mut self) -> &mut EventHeader {
        // SAFETY: as for `header`.
        unsafe { &mut *(self.0.as_mut_ptr() as *mut EventHeader) }
    }
}

const _: () = assert!(size_of::<EventHeader>() <= MAX_EVENT_SIZE);

/// See the module documentation.
pub struct EventArena {
    slots: Box<[UnsafeCell<EventBytes>]>,
    verdicts: Box<[AtomicU8]>,
}

// SAFETY: slots are written only by the owning shard while no NF holds their handle, and read
// by NFs only between receiving the handle and reporting it done (see the module docs).
unsafe impl Sync for EventArena {}
unsafe impl Send for EventArena {}

impl EventArena {
    pub fn new(slots: usize) -> EventArena {
        EventArena {
            slots: (0..slots).map(|_| UnsafeCell::new(EventBytes(MaybeUninit::uninit()))).collect(),
            verdicts: (0..slots).map(|_| AtomicU8::new(Verdict::Pass as u8)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes an arena of `slots` allocates.
    pub fn footprint(slots: usize) -> usize {
        slots * (size_of::<EventBytes>() + size_of::<AtomicU8>())
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Writes `event` into slot `idx` and resets its verdict.
    ///
    /// # Safety
    /// The caller (the owning shard) must hold `idx` with no NF holding its handle.
    #[inline]
    pub unsafe fn write<E: Event>(&self, idx: u32, event: &E) {
        const { assert!(size_of::<E>() <= MAX_EVENT_SIZE) };
        let dst = self.slots[idx as usize].get() as *mut u8;
        unsafe { std::ptr::copy_nonoverlapping(event as *const E as *const u8, dst, size_of::<E>()) };
        self.verdicts[idx as usize].store(Verdict::Pass as u8, Ordering::Relaxed);
    }

    /// Writes published bytes into slot `idx`.
    ///
    /// # Safety
    /// As for [`EventArena::write`].
    #[inline]
    pub unsafe fn write_bytes(&self, idx: u32, bytes: &EventBytes) {
        unsafe { *self.slots[idx as usize].get() = *bytes };
        self.verdicts[idx as usize].store(Verdict::Pass as u8, Ordering::Relaxed);
    }

    /// The event in slot `idx`.
    ///
    /// # Safety
    /// The slot must have been written and its handle received (not yet reported done).
    #[inline]
    pub unsafe fn header(&self, idx: u32) -> &EventHeader {
        unsafe { (*self.slots[idx as usize].get()).header() }
    }

    /// Records an NF's drop verdict (ordered NFs only; one NF at a time holds such an event).
    #[inline]
    pub fn set_drop(&self, idx: u32) {
        self.verdicts[idx as usize].store(Verdict::Drop as u8, Ordering::Relaxed);
    }

    /// True when an NF dropped the event in slot `idx`.
    #[inline]
    pub fn is_dropped(&self, idx: u32) -> bool {
        self.verdicts[idx as usize].load(Ordering::Relaxed) == Verdict::Drop as u8
    }
}
