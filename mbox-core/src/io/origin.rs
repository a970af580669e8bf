//! Packets a shard builds itself — ARP answers, the Endpoint µStack's segments — in a small
//! pool of its own.
//!
//! The run's packet pool has one allocating thread (the input), so a shard cannot take buffers
//! from it; each shard that serves (`[[service]]`) gets a pool of its own instead, allocated by
//! the shard alone. Its packets leave like forwarded ones (the output thread's ring, or the
//! shard's own sink) and their buffers come back through a releaser, as every other buffer
//! does: nothing is allocated per packet once the buffers have grown to their frames' size.

use super::device::RxPacket;
use super::pool::{packet_pool, Allocator, PacketPool, Releaser, INITIAL_BUFFER};
use mbox_stack::wire::LinkType;
use std::sync::Arc;

/// Buffers of a shard's own pool (`[runtime] originated_buffers` could make it configurable).
/// A segment is sent and gone within a round, but under a SYN flood the output thread falls
/// behind the cookies: with 2,048, a million spoofed SYNs in the testbed left tens of
/// thousands of cookies unsent (legitimate clients then resend after a second); with 8,192,
/// none. About 16 MiB per serving shard.
pub const ORIGIN_BUFFERS: usize = 8192;

/// A shard's pool for the packets it builds. See the module documentation.
pub struct Origin {
    alloc: Allocator,
    /// What it built and could not build.
    pub stats: OriginStats,
}

/// What a shard's origin counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OriginStats {
    /// Packets built and handed to the way out, and their bytes.
    pub packets: u64,
    pub bytes: u64,
    /// Packets not built because every buffer was in flight (TCP resends what this loses).
    pub no_buffer: u64,
    /// Packets built but not sent: the way out was full or gone.
    pub dropped: u64,
}

impl OriginStats {
    /// Adds another shard's counts.
    pub fn add(&mut self, o: &OriginStats) {
        (self.packets, self.bytes, self.no_buffer, self.dropped) =
            (self.packets + o.packets, self.bytes + o.bytes, self.no_buffer + o.no_buffer, self.dropped + o.dropped);
    }
}

impl Origin {
    /// A pool of `buffers` buffers, and `releasers` ends for the threads that give them back
    /// (the output thread, when one sends the shard's packets).
    pub fn new(buffers: usize, releasers: usize) -> (Origin, Vec<Releaser>) {
        let (_, alloc, releasers) = packet_pool(buffers, INITIAL_BUFFER, releasers);
        (Origin { alloc, stats: OriginStats::default() }, releasers)
    }

    /// The pool its packets' bytes are in.
    pub fn pool(&self) -> &Arc<PacketPool> {
        self.alloc.pool()
    }

    /// Builds an Ethernet frame in a free buffer: `fill` gets the buffer, emptied, and writes
    /// the frame into it. `None` (counted) when no buffer is free. The packet leaves by `port`.
    pub fn build(&mut self, port: u16, ts_ns: u64, fill: impl FnOnce(&mut Vec<u8>)) -> Option<RxPacket> {
        let Some(buf) = self.alloc.alloc() else {
            self.stats.no_buffer += 1;
            return None;
        };
        // SAFETY: `buf` came from the allocator: this shard holds it until it hands it on.
        let bytes = unsafe { self.alloc.pool().buf_mut(buf) };
        bytes.clear();
        fill(bytes);
        let len = bytes.len() as u32;
        self.stats.packets += 1;
        self.stats.bytes += u64::from(len);
        Some(RxPacket { buf, len, wire_len: len, port, link: LinkType::Ethernet, ts_ns })
    }

    /// Gives back a buffer this shard built into and did not hand on (or took back).
    pub fn free(&mut self, buf: u32) {
        self.alloc.free(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_exhaustion_is_counted() {
        let (mut origin, _releasers) = Origin::new(2, 1);
        let a = origin.build(1, 5, |b| b.extend_from_slice(&[7; 60])).unwrap();
        assert_eq!((a.len, a.port, a.ts_ns), (60, 1, 5));
        // SAFETY: the test holds `a`.
        assert_eq!(unsafe { origin.pool().bytes(a.buf, a.len) }, &[7; 60]);
        let b = origin.build(0, 5, |b| b.push(1)).unwrap();
        assert!(origin.build(0, 5, |_| {}).is_none());
        assert_eq!(origin.stats.no_buffer, 1);
        origin.free(a.buf);
        let c = origin.build(0, 6, |b| b.extend_from_slice(&[9; 10])).unwrap();
        assert_eq!(c.buf, a.buf, "the freed buffer is the next one");
        // SAFETY: the test holds `c`; the buffer was emptied before it was filled again.
        assert_eq!(unsafe { origin.pool().bytes(c.buf, c.len) }, &[9; 10]);
        assert_ne!(b.buf, c.buf);
        assert_eq!((origin.stats.packets, origin.stats.bytes), (3, 71));
    }
}
