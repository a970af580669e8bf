//! stream-hash: reads every reassembled byte of every TCP connection (from `FLOW/TCP/DATA_RDY`
//! events, in place) and hashes each direction. At the connection's end it writes one JSON line
//! per direction: sender, receiver, bytes, hash, gaps. It is the "NF that reads every byte" of
//! the chain-length experiment, and a check of the reassembly the host delivers.
//!
//! Arguments: `output` (file, `-` for stdout; default: no output), `algorithm` (`sha256`, or
//! `fold`, a cheap 64-bit multiply-xor over 8-byte words; default `fold`), `stop_after_bytes`
//! (unsubscribe from a connection's bytes after that many; default 0 = never).

use mbox_abi::kit::{Args, LineWriter};
use mbox_abi::{
    builtin, export_nf, EventHeader, FlowRef, FlowTcpEvent, Host, NetworkFunction, NfInit, Plugin, PluginInfo, StreamDataEvent,
    StreamGapEvent, Verdict,
};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Fold(u64),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Fold(acc) => {
                let mut chunks = bytes.chunks_exact(8);
                for c in &mut chunks {
                    let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
                    *acc = (*acc ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
                }
                for &b in chunks.remainder() {
                    *acc = (*acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            Hasher::Fold(acc) => format!("{acc:016x}"),
        }
    }
}

/// One direction of a connection.
#[derive(Clone)]
struct Direction {
    hasher: Hasher,
    bytes: u64,
    gaps: u64,
    gap_bytes: u64,
    /// Next offset expected; a data event elsewhere means events were lost on the way (the
    /// host's drop policy), counted here.
    next: u64,
    lost_bytes: u64,
}

#[derive(Clone)]
struct Conn {
    id: u64,
    dirs: [Direction; 2],
    unsubscribed: bool,
}

pub struct StreamHash {
    out: Option<LineWriter>,
    sha256: bool,
    stop_after: u64,
    /// By shard, then flow slot.
    conns: Vec<Vec<Option<Conn>>>,
}

impl StreamHash {
    fn conn(&mut self, flow: &FlowRef) -> &mut Conn {
        let table = &mut self.conns[usize::from(flow.shard)];
        let slot = flow.slot as usize;
        if table.len() <= slot {
            table.resize(slot + 1, None);
        }
        let hasher = if self.sha256 { Hasher::Sha256(Sha256::new()) } else { Hasher::Fold(0) };
        let fresh = || Direction { hasher: hasher.clone(), bytes: 0, gaps: 0, gap_bytes: 0, next: 0, lost_bytes: 0 };
        let entry = &mut table[slot];
        if entry.as_ref().is_none_or(|c| c.id != flow.id) {
            *entry = Some(Conn { id: flow.id, dirs: [fresh(), fresh()], unsubscribed: false });
        }
        entry.as_mut().unwrap_or_else(|| unreachable!("just set"))
    }

    fn data(&mut self, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let flow = ev.tcp.flow.header.flow;
        let stop_after = self.stop_after;
        let conn = self.conn(&flow);
        let d = &mut conn.dirs[usize::from(flow.dir.min(1))];
        if ev.offset > d.next {
            d.lost_bytes += ev.offset - d.next;
        }
        d.hasher.update(ev.bytes());
        d.bytes += u64::from(ev.len);
        d.next = ev.offset + u64::from(ev.len);
        if stop_after > 0 && !conn.unsubscribed && conn.dirs[0].bytes + conn.dirs[1].bytes >= stop_after {
            conn.unsubscribed = true;
            host.unsubscribe(&flow, builtin::FLOW_TCP_DATA_RDY);
            host.unsubscribe(&flow, builtin::FLOW_TCP_GAP);
        }
    }

    fn gap(&mut self, ev: &StreamGapEvent) {
        let flow = ev.tcp.flow.header.flow;
        let d = &mut self.conn(&flow).dirs[usize::from(flow.dir.min(1))];
        d.gaps += 1;
        d.gap_bytes += ev.len;
        d.next = ev.offset + ev.len;
    }

    fn end(&mut self, ev: &FlowTcpEvent) {
        let flow = ev.flow.header.flow;
        let Some(conn) = self.conns[usize::from(flow.shard)].get_mut(flow.slot as usize).and_then(Option::take) else { return };
        if conn.id != flow.id {
            return;
        }
        let Some(out) = &mut self.out else { return };
        let t = &ev.flow.tuple;
        for (dir, d) in conn.dirs.into_iter().enumerate() {
            let line = json!({
                "flow_id": conn.id,
                "direction": if dir == 0 { "orig" } else { "reply" },
                "src_ip": t.addr(dir).to_string(),
                "src_port": t.ports[dir],
                "dst_ip": t.addr(1 - dir).to_string(),
                "dst_port": t.ports[1 - dir],
                "bytes": d.bytes,
                "hash": d.hasher.finish(),
                "gaps": d.gaps,
                "gap_bytes": d.gap_bytes,
                "lost_bytes": d.lost_bytes,
                "unsubscribed": conn.unsubscribed,
            });
            out.line(&line.to_string());
        }
    }
}

impl NetworkFunction for StreamHash {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        if let Some(ev) = event.view::<StreamDataEvent>() {
            self.data(ev, host);
        } else if let Some(ev) = event.view::<StreamGapEvent>() {
            self.gap(ev);
        } else if let Some(ev) = event.view::<FlowTcpEvent>() {
            self.end(ev);
        }
        Verdict::Pass
    }

    fn on_idle(&mut self) {
        if let Some(out) = &mut self.out {
            out.flush();
        }
    }

    fn on_finish(&mut self) -> Result<(), String> {
        self.out.as_mut().map_or(Ok(()), LineWriter::finish)
    }
}

impl Plugin for StreamHash {
    const INFO: PluginInfo = PluginInfo {
        name: "stream-hash",
        version: env!("CARGO_PKG_VERSION"),
        description: "hashes every reassembled byte of each TCP direction",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/GAP", "FLOW/TCP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["output", "algorithm", "stop_after_bytes"])?;
        let out = match args.string("output", "")?.as_str() {
            "" => None,
            path => Some(LineWriter::open(path).map_err(|e| format!("cannot open output `{path}`: {e}"))?),
        };
        let sha256 = match args.string("algorithm", "fold")?.as_str() {
            "sha256" => true,
            "fold" => false,
            other => return Err(format!("argument `algorithm` must be `sha256` or `fold`, not `{other}`")),
        };
        Ok(StreamHash { out, sha256, stop_after: args.u64("stop_after_bytes", 0)?, conns: (0..init.shards).map(|_| Vec::new()).collect() })
    }
}

export_nf!(StreamHash);
