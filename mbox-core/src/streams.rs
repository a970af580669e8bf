//! `mbox streams`: every TCP connection of a capture reassembled, each direction written to a
//! file, with an index. It runs the same stack as the shards (L2/3 and the TCP monitor), on one
//! thread, with the flow definition of the bundled references (no idle timeout, VLAN tags not in
//! the flow key), so its output can be checked byte for byte against them.
//!
//! The files hold the delivered bytes only: a gap leaves no placeholder (the index counts gaps
//! and their bytes).

use crate::io::capture::{CaptureError, CaptureReader};
use mbox_abi::kit::ts_epoch;
use mbox_abi::TcpSnapshot;
use mbox_stack::flow_table::{FlowEntry, FlowTable, Timeouts};
use mbox_stack::l23::{L23Stack, MidstreamClient, StackConfig, StackPacket, StackSink, StreamContext};
use mbox_stack::tcp::stream::{Source, StreamLimits};
use mbox_stack::tcp::Depth;
use mbox_stack::wire::{ip_proto, ParseOptions};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What can stop `mbox streams`.
#[derive(Debug, Error)]
pub enum StreamsError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One direction's bytes and counts, while its flow is open.
#[derive(Default)]
struct Direction {
    bytes: Vec<u8>,
    gaps: u64,
    gap_bytes: u64,
}

/// The sink: keeps copies of out-of-order payloads (this tool owns no packet buffers) and
/// collects each direction's bytes until its flow ends.
struct Collector {
    out: PathBuf,
    index: String,
    current: Vec<u8>,
    kept: Vec<Option<Vec<u8>>>,
    free: Vec<u32>,
    open: HashMap<(u64, u8), Direction>,
    flows: u64,
    error: Option<StreamsError>,
}

impl Collector {
    fn direction(&mut self, ctx: &StreamContext<'_>, dir: u8) -> &mut Direction {
        self.open.entry((ctx.flow.id, dir)).or_default()
    }

    fn write_flow(&mut self, flow: &FlowEntry) -> Result<(), StreamsError> {
        // Like the reference: both directions of every connection that carried anything.
        if !self.open.contains_key(&(flow.id, 0)) && !self.open.contains_key(&(flow.id, 1)) {
            return Ok(());
        }
        for dir in 0..2u8 {
            let d = self.open.remove(&(flow.id, dir)).unwrap_or_default();
            let (src, dst) = (usize::from(dir), usize::from(1 - dir));
            let name = format!("{:06}-{}.bin", flow.id & 0xffff_ffff_ffff, if dir == 0 { "orig" } else { "reply" });
            let path = self.out.join(&name);
            std::fs::write(&path, &d.bytes).map_err(|source| StreamsError::Write { path, source })?;
            let hash = Sha256::digest(&d.bytes);
            let _ = writeln!(
                self.index,
                "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                flow.tuple.addr(src),
                flow.tuple.ports[src],
                flow.tuple.addr(dst),
                flow.tuple.ports[dst],
                d.bytes.len(),
                hex(&hash),
                d.gaps,
                d.gap_bytes,
                ts_epoch(flow.stats[0].first_ts_ns.min(if flow.stats[1].pkts > 0 { flow.stats[1].first_ts_ns } else { u64::MAX })),
                if dir == 0 { "orig" } else { "reply" },
            );
        }
        self.flows += 1;
        Ok(())
    }
}

/// Lowercase hex, as `streams.tsv` writes SHA-256 digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl StackSink for Collector {
    fn has_room(&self, _events: usize) -> bool {
        true
    }

    fn flow_started(&mut self, _flow: &FlowEntry, _slot: u32, _ts_ns: u64) {}

    fn flow_ended(&mut self, flow: &FlowEntry, _slot: u32, _reason: u8, _ts_ns: u64, _tcp: Option<&TcpSnapshot>) {
        if flow.tuple.ip_proto == ip_proto::TCP && self.error.is_none() {
            if let Err(e) = self.write_flow(flow) {
                self.error = Some(e);
            }
        }
    }

    fn packet(&mut self, pkt: &StackPacket<'_>, _flows: &FlowTable) {
        self.current.clear();
        if let Some(p) = pkt.parsed {
            let start = (p.payload_offset as usize).min(pkt.data.len());
            let end = (start + p.payload_len as usize).min(pkt.data.len());
            self.current.extend_from_slice(&pkt.data[start..end]);
        }
    }

    fn keep(&mut self) -> Option<u32> {
        let copy = self.current.clone();
        Some(match self.free.pop() {
            Some(i) => {
                self.kept[i as usize] = Some(copy);
                i
            }
            None => {
                self.kept.push(Some(copy));
                self.kept.len() as u32 - 1
            }
        })
    }

    fn unkeep(&mut self, token: u32) {
        self.kept[token as usize] = None;
        self.free.push(token);
    }

    fn stream_data(&mut self, ctx: &StreamContext<'_>, dir: u8, _offset: u64, len: u32, source: Source) {
        let (buf, start) = match source {
            Source::Current { start } => (std::mem::take(&mut self.current), start),
            Source::Kept { token, start } => (self.kept[token as usize].take().unwrap_or_default(), start),
        };
        let range = start as usize..(start as usize + len as usize).min(buf.len());
        self.direction(ctx, dir).bytes.extend_from_slice(&buf[range]);
        match source {
            Source::Current { .. } => self.current = buf,
            Source::Kept { token, .. } => self.kept[token as usize] = Some(buf),
        }
    }

    fn stream_gap(&mut self, ctx: &StreamContext<'_>, dir: u8, _offset: u64, len: u64, _reason: u8) {
        let d = self.direction(ctx, dir);
        d.gaps += 1;
        d.gap_bytes += len;
    }
}

/// Summary of a `streams` run.
#[derive(Debug, Clone, Copy)]
pub struct StreamsReport {
    pub packets: u64,
    pub connections: u64,
}

/// Reassembles every TCP connection of `capture` into `out` (created if needed), writing
/// `out/streams.tsv` as the index. `max_flows` bounds the flows open at once (the least recent
/// is ended when a new one needs room); `midstream_client` orients the connections picked up
/// mid-stream, as `[flow] midstream_client` does for a run.
pub fn write_streams(
    capture: &Path,
    out: &Path,
    max_flows: usize,
    midstream_client: MidstreamClient,
) -> Result<StreamsReport, StreamsError> {
    std::fs::create_dir_all(out).map_err(|source| StreamsError::Write { path: out.to_path_buf(), source })?;
    let mut reader = CaptureReader::open(capture)?;
    let mut stack = L23Stack::new(
        StackConfig {
            flow_slots: max_flows,
            timeouts: Timeouts::NEVER,
            vlan_in_key: false,
            parse: ParseOptions { decap_tunnels: true },
            max_fragmented_datagrams: 1024,
            fragment_timeout_ns: 30_000_000_000,
            tcp: Some(Depth::Reassembly),
            // An offline tool keeps whatever a capture holds out of order.
            stream_limits: StreamLimits { max_kept: 1 << 20, max_distance: u32::MAX / 2 },
            verify_tcp_checksums: false,
            midstream_client,
        },
        0,
    );
    let mut sink = Collector {
        out: out.to_path_buf(),
        index: String::from("file\tsrc_ip\tsrc_port\tdst_ip\tdst_port\tbytes\tsha256\tgaps\tgap_bytes\tflow_first_ts\tdirection\n"),
        current: Vec::new(),
        kept: Vec::new(),
        free: Vec::new(),
        open: HashMap::new(),
        flows: 0,
        error: None,
    };
    let mut buf = Vec::new();
    let mut packets = 0;
    while let Some(meta) = reader.next_packet(&mut buf)? {
        packets += 1;
        let _ = stack.process(&buf, meta.link, meta.wire_len, meta.ts_ns, &mut sink);
        if let Some(e) = sink.error.take() {
            return Err(e);
        }
    }
    stack.drain(&mut sink);
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    let index = out.join("streams.tsv");
    std::fs::File::create(&index)
        .and_then(|mut f| f.write_all(sink.index.as_bytes()))
        .map_err(|source| StreamsError::Write { path: index, source })?;
    Ok(StreamsReport { packets, connections: sink.flows })
}
