//! A tracer around a device: every frame it carries is also written to a pcap (`[input] trace`,
//! `[dpdk] trace`), as smoltcp's `Tracer` does for its devices. What the device does is
//! unchanged; a trace that cannot be written stops being written, and says so at the end.

use super::capture::{CaptureError, PcapWriter};
use super::device::{DeviceLosses, Next, OutputStats, RxPacket, Sink, Source};
use super::pool::PacketPool;
use mbox_stack::wire::LinkType;
use std::path::Path;

/// Device `D` with a pcap of what it carries.
pub struct Traced<D> {
    inner: D,
    writer: PcapWriter,
    link: LinkType,
    /// Frames not written: of another link type than the file's (a pcap has one).
    pub other_link: u64,
    error: Option<CaptureError>,
}

impl<D> Traced<D> {
    /// Traces `inner` into a new file at `path`, of `link` frames.
    pub fn new(inner: D, path: &Path, link: LinkType) -> Result<Traced<D>, CaptureError> {
        Ok(Traced { inner, writer: PcapWriter::create(path, link)?, link, other_link: 0, error: None })
    }

    fn trace(&mut self, link: LinkType, ts_ns: u64, wire_len: u32, data: &[u8]) {
        if link != self.link {
            self.other_link += 1;
        } else if self.error.is_none() {
            if let Err(e) = self.writer.write(ts_ns, wire_len, data) {
                log::error!("trace: {e}; the trace stops here");
                self.error = Some(e);
            }
        }
    }

    /// The first error writing the trace, or its final flush's.
    fn finish_trace(&mut self) -> Option<CaptureError> {
        match self.error.take() {
            Some(e) => Some(e),
            None => self.writer.flush().err(),
        }
    }
}

impl<S: Source> Source for Traced<S> {
    fn next_into(&mut self, pool: &PacketPool, idx: u32) -> Result<Next, CaptureError> {
        let next = self.inner.next_into(pool, idx);
        match next {
            Ok(Next::Packet { link, len, wire_len, ts_ns, .. }) => {
                // SAFETY: the caller holds `idx`, just filled.
                let data = unsafe { pool.bytes(idx, len) };
                self.trace(link, ts_ns, wire_len, data);
            }
            Ok(Next::End) | Err(_) => {
                if let Some(e) = self.finish_trace() {
                    log::error!("trace: {e}");
                }
            }
            Ok(Next::Idle) => {}
        }
        next
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn link(&self) -> LinkType {
        self.inner.link()
    }
    fn progress(&self) -> (u64, u64) {
        self.inner.progress()
    }
    fn missed(&self) -> DeviceLosses {
        self.inner.missed()
    }
    fn skipped(&self) -> u64 {
        self.inner.skipped()
    }
    fn impaired(&self) -> Option<mbox_stack::sim::WireStats> {
        self.inner.impaired()
    }
}

impl<K: Sink> Sink for Traced<K> {
    fn send(&mut self, pool: &PacketPool, pkt: &RxPacket) {
        // SAFETY: the caller holds the buffer until this returns.
        let data = unsafe { pool.bytes(pkt.buf, pkt.len) };
        self.trace(pkt.link, pkt.ts_ns, pkt.wire_len, data);
        self.inner.send(pool, pkt);
    }
    fn flush(&mut self, drain: bool) {
        self.inner.flush(drain);
    }
    fn stats(&self) -> OutputStats {
        self.inner.stats()
    }
    fn finish(&mut self) -> Option<CaptureError> {
        let traced = self.finish_trace();
        self.inner.finish().or(traced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::capture::CaptureReader;
    use crate::io::output::PcapSink;
    use crate::io::pool::lending_pool;

    #[test]
    fn a_traced_sink_writes_what_it_sends_and_the_sink_still_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let (out, trace) = (dir.path().join("out.pcap"), dir.path().join("trace.pcap"));
        let (pool, mut alloc, _) = lending_pool(4, 2048, 1, None);
        let sink = PcapSink::create(&out, LinkType::Ethernet).unwrap();
        let mut traced = Traced::new(sink, &trace, LinkType::Ethernet).unwrap();
        for (i, link) in [LinkType::Ethernet, LinkType::RawIp, LinkType::Ethernet].into_iter().enumerate() {
            let buf = alloc.alloc().unwrap();
            // SAFETY: just allocated, not handed on.
            let bytes = unsafe { pool.buf_mut(buf) };
            bytes.clear();
            bytes.extend(std::iter::repeat_n(i as u8, 60));
            traced.send(&pool, &RxPacket { buf, len: 60, wire_len: 60, port: 0, link, ts_ns: 1_000 * i as u64 });
            alloc.free(buf);
        }
        assert!(traced.finish().is_none());
        assert_eq!((traced.stats().packets, traced.stats().link_mismatch, traced.other_link), (2, 1, 1));
        let read = |path: &Path| {
            let mut r = CaptureReader::open(path).unwrap();
            let (mut buf, mut firsts) = (Vec::new(), Vec::new());
            while let Some(m) = r.next_packet(&mut buf).unwrap() {
                firsts.push((m.ts_ns, buf[0]));
            }
            firsts
        };
        assert_eq!(read(&trace), [(0, 0), (2_000, 2)]);
        assert_eq!(read(&out), read(&trace));
    }
}
