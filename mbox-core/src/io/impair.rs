//! A fault injector around a source (`[input] impair`): its frames cross a simulated wire
//! (`mbox_stack::sim::Wire`) that loses, reorders, duplicates and delays them, decided by a
//! seeded generator — the same frames in the same order on every run with the same seed, a
//! deterministic bad network for tests of the stacks. Every frame is copied once to cross
//! the wire: a test tool, not a fast path. Sources that lend their buffers (DPDK ports) cannot
//! be impaired; the live testbed impairs its wire itself (`tools/wire-impair.py`).

use super::capture::CaptureError;
use super::device::{Next, Source};
use super::pool::PacketPool;
use mbox_stack::sim::{Impairment, Wire, WireStats};
use mbox_stack::wire::LinkType;

/// A frame crossing the wire: its bytes and what the source said of it.
#[derive(Debug, Clone)]
struct Frame {
    bytes: Vec<u8>,
    link: LinkType,
    wire_len: u32,
    port: u16,
}

/// Source `S` behind a simulated wire.
pub struct Impaired<S> {
    inner: S,
    wire: Wire<Frame>,
    inner_done: bool,
}

impl<S: Source> Impaired<S> {
    pub fn new(inner: S, impairment: Impairment) -> Impaired<S> {
        Impaired { inner, wire: Wire::new(impairment), inner_done: false }
    }
}

impl<S: Source> Source for Impaired<S> {
    fn next_into(&mut self, pool: &PacketPool, idx: u32) -> Result<Next, CaptureError> {
        loop {
            let crossed = if self.inner_done { self.wire.drain() } else { self.wire.recv() };
            if let Some((frame, ts_ns)) = crossed {
                // SAFETY: the caller holds `idx` and has not handed it on.
                let buf = unsafe { pool.buf_mut(idx) };
                buf.clear();
                buf.extend_from_slice(&frame.bytes);
                let len = buf.len() as u32;
                return Ok(Next::Packet { link: frame.link, len, wire_len: frame.wire_len, ts_ns, port: frame.port });
            }
            if self.inner_done {
                return Ok(Next::End);
            }
            match self.inner.next_into(pool, idx)? {
                Next::Packet { link, len, wire_len, ts_ns, port } => {
                    // SAFETY: the caller holds `idx`, just filled.
                    let bytes = unsafe { pool.bytes(idx, len) }.to_vec();
                    self.wire.send(Frame { bytes, link, wire_len, port }, ts_ns);
                }
                Next::Idle => return Ok(Next::Idle),
                Next::End => {
                    log::info!("impaired wire: {:?}", self.wire.stats);
                    self.inner_done = true;
                }
            }
        }
    }
    fn describe(&self) -> String {
        format!("{}, impaired", self.inner.describe())
    }
    fn link(&self) -> LinkType {
        self.inner.link()
    }
    fn progress(&self) -> (u64, u64) {
        self.inner.progress()
    }
    fn skipped(&self) -> u64 {
        self.inner.skipped()
    }
    fn impaired(&self) -> Option<WireStats> {
        Some(self.wire.stats)
    }
}
