//! Reading a splice's backend bytes for its NFs (`FLOW/TCP/BACKEND_DATA`): a cache that
//! stores what a miss fetched needs the backend's answer as a bytestream, which the splice
//! otherwise never reads. The backend's direction runs through the monitor's reassembly
//! (`mbox_stack::tcp::stream`): bytes in order are copied into events at once; a segment
//! beyond a hole is copied here until the hole fills (the frame itself goes on at once, as a
//! splice's frames do), within [`TAP_KEPT_BYTES`] per splice.
//!
//! The tap is made when a splice starts, only if some NF of the connection wants the bytes
//! then, and dropped as soon as none does any more (the cache unsubscribes once it has the
//! whole answer): a splice nobody reads stays a pure translation, and its copies go with it.
//! The splice never waits for a copy: without room for one, the reading is given up (see
//! `Served::tap_backend`).
//! Bytes still behind a hole when the splice ends are not reported: the NFs see the
//! connection's `TERMINATE`.

use super::{ConnInfo, ServeSink, ServeStats};
use mbox_stack::tcp::stream::{Source, Stream, StreamLimits, StreamSink, StreamSinkKeep};

/// Out-of-order bytes one splice's tap keeps at most; a segment beyond is not kept (its bytes
/// become a gap if the stream ever moves past them).
pub(super) const TAP_KEPT_BYTES: usize = 1 << 20;

/// Holes one tap keeps segments behind (a run continuing a kept segment grows it), and how
/// far past the next expected byte a kept segment may start.
const TAP_LIMITS: StreamLimits = StreamLimits { max_kept: 16, max_distance: TAP_KEPT_BYTES as u32 };

/// Events one tapped frame may cause at most: its own bytes, then each kept segment it lets
/// through with a gap before it and one for a cut tail.
pub(super) const TAP_EVENTS_PER_FRAME: usize = 1 + 3 * TAP_LIMITS.max_kept;

/// One splice's reading of its backend's stream.
#[derive(Debug, Default)]
pub(super) struct Tap {
    stream: Stream,
    copies: Copies,
}

/// Copies of out-of-order segments, by token (a slot index; freed slots keep their capacity).
#[derive(Debug, Default)]
struct Copies {
    slots: Vec<Vec<u8>>,
    free: Vec<u32>,
    bytes: usize,
}

impl Tap {
    /// A tap on a backend stream whose SYN-ACK had sequence number `backend_isn`.
    pub(super) fn new(backend_isn: u32) -> Box<Tap> {
        let mut tap = Box::<Tap>::default();
        tap.stream.start_if_new(backend_isn, true);
        tap
    }

    /// Bytes of copies it holds now (what draining them may copy again into events).
    pub(super) fn kept_bytes(&self) -> usize {
        self.copies.bytes
    }

    /// Takes one backend segment (`seq`, `payload`, before translation): in-order bytes and
    /// the kept ones they let through go to `sink` as `FLOW/TCP/BACKEND_DATA` of `conn`.
    pub(super) fn segment<S: ServeSink>(
        &mut self,
        conn: &ConnInfo,
        seq: u32,
        payload: &[u8],
        now: u64,
        stats: &mut ServeStats,
        sink: &mut S,
    ) {
        let mut to = TapSink { copies: &mut self.copies, current: payload, conn, now, stats, sink };
        let len = payload.len() as u32;
        self.stream.segment(1, seq, false, len, len, TAP_LIMITS, &mut to);
    }
}

impl Copies {
    /// Whether `len` more bytes stay within [`TAP_KEPT_BYTES`].
    fn fits(&self, len: usize) -> bool {
        self.bytes + len <= TAP_KEPT_BYTES
    }

    /// Appends `bytes` to copy `token` (which [`Copies::fits`] said may grow).
    fn append(&mut self, token: u32, bytes: &[u8]) {
        self.slots[token as usize].extend_from_slice(bytes);
        self.bytes += bytes.len();
    }

    fn unkeep(&mut self, token: u32) {
        if let Some(copy) = self.slots.get_mut(token as usize) {
            self.bytes -= copy.len();
            copy.clear();
            self.free.push(token);
        }
    }
}

/// The stream's sink while a tapped frame is taken: copies come from `current`, reported
/// bytes go to the shard as events.
struct TapSink<'a, S: ServeSink> {
    copies: &'a mut Copies,
    current: &'a [u8],
    conn: &'a ConnInfo,
    now: u64,
    stats: &'a mut ServeStats,
    sink: &'a mut S,
}

impl<S: ServeSink> StreamSinkKeep for TapSink<'_, S> {
    fn keep(&mut self) -> Option<u32> {
        let c = &mut *self.copies;
        if !c.fits(self.current.len()) {
            return None;
        }
        let token = c.free.pop().unwrap_or_else(|| {
            c.slots.push(Vec::new());
            (c.slots.len() - 1) as u32
        });
        c.append(token, self.current);
        Some(token)
    }

    fn unkeep(&mut self, token: u32) {
        self.copies.unkeep(token);
    }

    fn extend_kept(&mut self, token: u32) -> bool {
        let fits = self.copies.fits(self.current.len());
        if fits {
            self.copies.append(token, self.current);
        }
        fits
    }

    fn merge_kept(&mut self, token: u32, next: u32) -> bool {
        let c = &mut *self.copies;
        if !c.fits(c.slots[next as usize].len()) {
            return false;
        }
        let moved = std::mem::take(&mut c.slots[next as usize]);
        c.append(token, &moved);
        // The stream lets go of `next` itself (`unkeep`, which counts its bytes off): its slot
        // gets its buffer back.
        c.slots[next as usize] = moved;
        true
    }
}

impl<S: ServeSink> StreamSink for TapSink<'_, S> {
    fn data(&mut self, _dir: u8, offset: u64, len: u32, source: Source) {
        let bytes = match source {
            Source::Current { start } => &self.current[start as usize..(start + len) as usize],
            Source::Kept { token, start } => &self.copies.slots[token as usize][start as usize..(start + len) as usize],
        };
        if self.sink.backend_data(self.conn, offset, bytes, self.now) {
            self.stats.backend_bytes_read += u64::from(len);
        } else {
            // No copy buffer left: said as a gap, never silently missing.
            self.stats.backend_gap_bytes += u64::from(len);
            self.sink.backend_gap(self.conn, offset, u64::from(len), mbox_abi::GAP_MEMORY, self.now);
        }
    }

    fn gap(&mut self, _dir: u8, offset: u64, len: u64, reason: u8) {
        self.stats.backend_gap_bytes += len;
        self.sink.backend_gap(self.conn, offset, len, reason, self.now);
    }
}
