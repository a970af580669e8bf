//! The device interface: every input and output of mbox behind two traits, so that the input
//! thread, the shards and the output thread read and send the same way whatever the device.
//!
//! - A [`Source`] yields frames one at a time into a pool slot its reader holds: a replay of
//!   captures, the generator, a DPDK port's RX queue (its mbufs lent to the slot, not copied).
//! - A [`Sink`] takes frames out: a pcap file, a DPDK port pair's TX queues.
//!
//! What reads and sends through them: the input thread (`dispatch`) reads a source and steers
//! each frame to its shard; a shard with a queue pair of its own reads a source itself
//! ([`OwnInput`]) and sends into a sink itself (`output::Tx`); the output thread
//! (`output::OutputThread`) drains the shards' rings into a sink. Wrappers in smoltcp's manner work
//! on any of them: [`trace`](super::trace) writes what a device carries to a pcap, and
//! [`impair`](super::impair) loses, reorders, duplicates and delays a source's frames with a
//! seeded generator (a deterministic wire for tests).

use super::capture::CaptureError;
use super::pool::{Allocator, PacketPool};
use mbox_stack::sim::WireStats;
use mbox_stack::wire::LinkType;
use std::time::Duration;

/// What the next read of a source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A frame is in the slot: its link type, length captured and on the wire, time, and the
    /// input port it came from.
    Packet { link: LinkType, len: u32, wire_len: u32, ts_ns: u64, port: u16 },
    /// Nothing now (a live input): try again.
    Idle,
    /// The input is over.
    End,
}

/// Where frames come from. See the module documentation.
pub trait Source: Send {
    /// Reads the next frame into pool slot `idx`, which the caller holds (copied into its
    /// buffer, or lent to it).
    fn next_into(&mut self, pool: &PacketPool, idx: u32) -> Result<Next, CaptureError>;
    /// Reads frames into the pool slots of `slots`, in order, until they are all filled or
    /// the source has nothing more now: appends what each got to `got` and returns what
    /// stopped it (`Next::Idle`, `Next::End`, or the last frame's `Next::Packet` when every
    /// slot was filled). One call per burst: through a `dyn Source`, the frames of a burst are
    /// read by the concrete source's own loop (this default, compiled for each source).
    fn next_burst(&mut self, pool: &PacketPool, slots: &[u32], got: &mut Vec<Next>) -> Result<Next, CaptureError> {
        let mut last = Next::Idle;
        for &idx in slots {
            last = self.next_into(pool, idx)?;
            if !matches!(last, Next::Packet { .. }) {
                break;
            }
            got.push(last);
        }
        Ok(last)
    }
    /// Human description for the summary.
    fn describe(&self) -> String;
    /// The link type an output pcap should use.
    fn link(&self) -> LinkType {
        LinkType::Ethernet
    }
    /// Work done and total, for progress (bytes of captures, conversations of the generator).
    fn progress(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Frames the device dropped on arrival or received with errors, or put on another queue
    /// than their flow's (live ports).
    fn missed(&self) -> DeviceLosses {
        DeviceLosses::default()
    }
    /// Frames the reader skipped (pcapng interfaces of unsupported link types).
    fn skipped(&self) -> u64 {
        0
    }
    /// What a simulated wire in front of the device did to its frames (`[input] impair`).
    fn impaired(&self) -> Option<WireStats> {
        None
    }
}

/// Where frames leave. See the module documentation.
pub trait Sink: Send {
    /// Takes `pkt` (its bytes in `pool`) to send. The caller gives the slot back to the pool
    /// afterwards: a sink that needs the bytes for longer takes them now (a file writes them,
    /// a port takes its mbuf).
    fn send(&mut self, pool: &PacketPool, pkt: &RxPacket);
    /// Takes a packet mbox built (an ARP answer, an Endpoint segment) to send out of port
    /// `pkt.port` itself, not its pair's other port. The default suits a file: it is written
    /// as any packet is.
    fn originate(&mut self, pool: &PacketPool, pkt: &RxPacket) {
        self.send(pool, pkt)
    }
    /// Sends what waits for a burst; with `drain` (the end), retries a little and drops
    /// (counted) what a device will not take.
    fn flush(&mut self, drain: bool);
    /// What it sent.
    fn stats(&self) -> OutputStats;
    /// At the end: the first error that kept it from sending everything, if any (a file that
    /// could not be written in full).
    fn finish(&mut self) -> Option<CaptureError> {
        None
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn next_into(&mut self, pool: &PacketPool, idx: u32) -> Result<Next, CaptureError> {
        (**self).next_into(pool, idx)
    }
    fn next_burst(&mut self, pool: &PacketPool, slots: &[u32], got: &mut Vec<Next>) -> Result<Next, CaptureError> {
        (**self).next_burst(pool, slots, got)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn link(&self) -> LinkType {
        (**self).link()
    }
    fn progress(&self) -> (u64, u64) {
        (**self).progress()
    }
    fn missed(&self) -> DeviceLosses {
        (**self).missed()
    }
    fn skipped(&self) -> u64 {
        (**self).skipped()
    }
    fn impaired(&self) -> Option<WireStats> {
        (**self).impaired()
    }
}

impl<K: Sink + ?Sized> Sink for Box<K> {
    fn send(&mut self, pool: &PacketPool, pkt: &RxPacket) {
        (**self).send(pool, pkt)
    }
    fn originate(&mut self, pool: &PacketPool, pkt: &RxPacket) {
        (**self).originate(pool, pkt)
    }
    fn flush(&mut self, drain: bool) {
        (**self).flush(drain)
    }
    fn stats(&self) -> OutputStats {
        (**self).stats()
    }
    fn finish(&mut self) -> Option<CaptureError> {
        (**self).finish()
    }
}

/// What a sink or the output thread sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutputStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets whose link type differs from the file's (a pcap has one link type).
    pub link_mismatch: u64,
    /// Packets a port would not take even after retries (counted, freed).
    pub tx_dropped: u64,
}

/// A shard's own input: a source the shard reads itself, into a pool of its own (DPDK with a
/// queue pair per shard). No input thread stands between the device and the shard.
pub struct OwnInput {
    source: Box<dyn Source>,
    alloc: Allocator,
    report: InputReport,
}

impl OwnInput {
    pub fn new(source: Box<dyn Source>, alloc: Allocator) -> OwnInput {
        let report = InputReport { description: source.describe(), ..Default::default() };
        OwnInput { source, alloc, report }
    }

    /// Receives up to `max` frames into `inbox`.
    pub fn read(&mut self, inbox: &mut std::collections::VecDeque<RxPacket>, max: usize) -> Read {
        if crate::sys::stop::requested() {
            return Read::Over;
        }
        let mut got = 0;
        while got < max {
            let Some(buf) = self.alloc.alloc() else {
                // Every slot is held (by NFs, or on its way out): the shard frees them first.
                self.report.pool_waits += 1;
                break;
            };
            match self.source.next_into(self.alloc.pool(), buf) {
                Ok(Next::Packet { link, len, wire_len, ts_ns, port }) => {
                    inbox.push_back(RxPacket { buf, len, wire_len, port, link, ts_ns });
                    self.report.packets += 1;
                    self.report.bytes += u64::from(wire_len);
                    got += 1;
                }
                Ok(Next::Idle) => {
                    self.alloc.free(buf);
                    break;
                }
                Ok(Next::End) | Err(_) => {
                    self.alloc.free(buf);
                    if got == 0 {
                        return Read::Over;
                    }
                    break;
                }
            }
        }
        if got > 0 {
            Read::Got
        } else {
            Read::Nothing
        }
    }

    /// What it counted so far.
    pub fn report(&self) -> &InputReport {
        &self.report
    }

    /// What it received (a port's missed frames are counted once, for all its queues).
    pub fn into_report(self) -> InputReport {
        self.report
    }
}

/// A received packet in flight between I/O and a shard: a handle to its buffer, not its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPacket {
    /// Buffer index in the packet pool.
    pub buf: u32,
    /// Captured bytes in the buffer.
    pub len: u32,
    /// Length on the wire.
    pub wire_len: u32,
    /// Input port.
    pub port: u16,
    pub link: LinkType,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
}

/// What a shard's read of its input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Packets were added to the inbox.
    Got,
    /// Nothing now.
    Nothing,
    /// The input is over.
    Over,
}

/// Capacity of each input-to-shard ring.
pub const RX_RING: usize = 1024;

/// Where a shard's packets come from.
pub enum ShardInput {
    /// The ring the input thread steers this shard's packets into.
    Ring(rtrb::Consumer<RxPacket>),
    /// A source the shard reads itself (a DPDK queue pair per shard).
    Own(Box<OwnInput>),
}

impl ShardInput {
    /// Moves up to `max` packets into `inbox`.
    pub fn read(&mut self, inbox: &mut std::collections::VecDeque<RxPacket>, max: usize) -> Read {
        match self {
            ShardInput::Ring(rx) => {
                let n = rx.slots().min(max);
                if n > 0 {
                    if let Ok(chunk) = rx.read_chunk(n) {
                        inbox.extend(chunk);
                    }
                    Read::Got
                } else if rx.is_abandoned() && rx.is_empty() {
                    Read::Over
                } else {
                    Read::Nothing
                }
            }
            ShardInput::Own(own) => own.read(inbox, max),
        }
    }

    /// Whether input is waiting, checked before the shard parks: the input thread wakes a
    /// parked shard when it fills its ring, so this says whether to stay awake.
    pub fn waiting(&self) -> bool {
        match self {
            ShardInput::Ring(rx) => !rx.is_empty() || rx.is_abandoned(),
            ShardInput::Own(_) => false,
        }
    }

    /// True when nobody wakes the shard for new input: it must poll (a device of its own).
    pub fn polled(&self) -> bool {
        matches!(self, ShardInput::Own(_))
    }

    /// What the shard's own input counted so far (`None` for a ring: the input thread reports).
    pub fn report(&self) -> Option<InputReport> {
        match self {
            ShardInput::Ring(_) => None,
            ShardInput::Own(own) => Some(own.report().clone()),
        }
    }

    /// What the shard's own input counted (`None` for a ring: the input thread reports).
    pub fn into_report(self) -> Option<InputReport> {
        match self {
            ShardInput::Ring(_) => None,
            ShardInput::Own(own) => Some(own.into_report()),
        }
    }
}

/// Reads what the devices lost on arrival so far (running totals, readable from any thread
/// while the run goes on).
pub type MissedFrames = std::sync::Arc<dyn Fn() -> DeviceLosses + Send + Sync>;

/// What devices lost on arrival, as running totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLosses {
    /// Frames dropped on arrival (a full RX ring) or received with errors.
    pub missed: u64,
    /// Frames put on another queue than the one their flow hashes to (af_packet's fanout rolls
    /// a frame over when that queue's ring is nearly full): another shard than their flow's
    /// saw them, and the flow's own shard has a hole where they were.
    pub rolled_over: u64,
}

/// What an input counted: the input thread's report at the end, or a shard's own input's.
#[derive(Debug, Default, Clone)]
pub struct InputReport {
    pub description: String,
    pub packets: u64,
    pub bytes: u64,
    /// Packets the reader skipped (unsupported link type).
    pub skipped: u64,
    /// Packets the ports dropped on arrival, or received with errors: the RX ring was full
    /// because the input did not read in time (live ports only).
    pub missed: u64,
    /// Packets a shard other than their flow's received (see [`DeviceLosses::rolled_over`]).
    pub rolled_over: u64,
    /// Fragments that arrived before their first fragment (steered by addresses only).
    pub fragments_unsteered: u64,
    /// Times the input waited for a free buffer, or for room in a shard's ring: back-pressure
    /// from the shards (the input is not what limits the rate when these are high).
    pub pool_waits: u64,
    pub ring_waits: u64,
    /// An error that ended the input early; the packets before it were processed.
    pub error: Option<String>,
    /// What the simulated wire did (`[input] impair`).
    pub impaired: Option<WireStats>,
    /// CPU time of the input thread: reading the capture (or generating), steering, waiting.
    /// A NIC does this work in a live deployment, so benches report the run with and without it.
    pub cpu: Duration,
}
