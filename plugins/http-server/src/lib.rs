//! http-server: a sample NF that answers HTTP/1.1 clients itself, on the connections mbox
//! terminates for a `[[service]]` (the TCP Endpoint µStack). It reads each connection's
//! requests from `FLOW/TCP/DATA_RDY`, answers with `Host::send`, continues large answers on
//! `FLOW/TCP/SEND_ROOM`, and closes with `Host::close`.
//!
//! It serves GET and HEAD from memory (everything else is 405): the files of a directory and
//! generated bodies, loaded when the NF starts (see [`content`]). Requests may be pipelined and
//! split at any byte; answers go out in order. HTTP/1.1 connections persist unless the client
//! sends `Connection: close`, HTTP/1.0 ones only with `Connection: keep-alive`; a malformed or
//! over-long head (8 KiB), a `Transfer-Encoding`, or a target with a `..` segment is answered
//! 400 and closes the connection. When the client closes its side, the answers still queued go
//! out and then mbox closes its side.
//!
//! Arguments:
//! - `root`: a directory whose regular files are served, `/a/b.html` from `root/a/b.html`
//!   (`/` and any path ending in `/` serve that directory's `index.html`); symbolic links and
//!   names beginning with `.` are skipped.
//! - `generated`: a table of path to size in bytes (`{ "/8k" = 8192 }`) of generated bodies,
//!   whose byte `i` is `(i * 31 + 7) % 251`.
//! - `max_bytes`: bound on all bodies together, 256 MiB by default; a start beyond it fails.
//!
//! At least one of `root` and `generated` is needed. Counters: `requests`, `responses_2xx`,
//! `responses_4xx`, `bytes_sent`, `connections`, `bad_requests`, `sends_partial`,
//! `sends_ended`, `resets` (see [`conn::Stats`]).
//!
//! Per-connection state lives in a table indexed by the flow's shard and slot, checked against
//! the flow's id: no hashing, and no allocation per event once a slot's buffers have grown.

pub mod conn;
pub mod content;
pub mod request;

use conn::{Conn, Server, Stats};
use content::{Content, DEFAULT_MAX_BYTES};
use mbox_abi::kit::Args;
use mbox_abi::{
    builtin, export_nf, Counters, EventHeader, FlowRef, Host, NetworkFunction, NfInit, Plugin, PluginInfo, StreamDataEvent, StreamEndEvent,
    Verdict, DIR_ORIG, END_RST,
};
use std::path::Path;

/// Connection slots beyond the flow table's that the NF keeps state for at most (a bound on
/// its memory whatever slot an event names; mbox's own bound is 2^20 per service).
const MAX_HIGH_SLOTS: u32 = 1 << 24;

pub struct HttpServer {
    content: Content,
    /// By shard, then by flow slot. mbox numbers the connections it terminates after its flow
    /// table's slots (`flow_slots`), so the table has two parts: slots below `flow_slots`,
    /// and slots from it on, indexed from 0. Each grows on demand, and a slot's state, once
    /// made, is reused by the connections that take the slot later.
    conns: Vec<[Vec<Option<Box<Conn>>>; 2]>,
    flow_slots: u32,
    /// Scratch for decoded request paths.
    path: Vec<u8>,
    stats: Stats,
}

impl HttpServer {
    /// Where `flow`'s state lives: the part of the table and the index in it.
    fn place(&self, flow: &FlowRef) -> Option<(usize, usize)> {
        match flow.slot.checked_sub(self.flow_slots) {
            None => Some((0, flow.slot as usize)),
            Some(i) if i < MAX_HIGH_SLOTS => Some((1, i as usize)),
            Some(_) => None,
        }
    }

    /// The connection at `flow`'s slot if it is this flow's.
    fn conn(&mut self, flow: &FlowRef) -> Option<&mut Conn> {
        let (part, i) = self.place(flow)?;
        let conn = self.conns.get_mut(usize::from(flow.shard))?[part].get_mut(i)?.as_deref_mut()?;
        (conn.id == flow.id).then_some(conn)
    }

    /// The connection at `flow`'s slot, made fresh when the slot held none or another flow's
    /// (a TERMINATE that never came). None for a flow outside the table's bounds.
    fn conn_or_new(&mut self, flow: &FlowRef) -> Option<&mut Conn> {
        let (part, i) = self.place(flow)?;
        let table = &mut self.conns.get_mut(usize::from(flow.shard))?[part];
        if table.len() <= i {
            table.resize_with(i + 1, || None);
        }
        let conn = table[i].get_or_insert_with(Box::default);
        if conn.id != flow.id {
            conn.reset(flow.id);
            self.stats.connections += 1;
        }
        Some(conn)
    }

    /// Serves `flow`'s connection, if it has one, after an event (with the client bytes it
    /// brought).
    fn serve(&mut self, flow: &FlowRef, host: &mut Host<'_>, incoming: &[u8]) {
        let Some((part, i)) = self.place(flow) else { return };
        let HttpServer { content, conns, path, stats, .. } = self;
        let Some(Some(conn)) = conns.get_mut(usize::from(flow.shard)).and_then(|t| t[part].get_mut(i)) else { return };
        if conn.id != flow.id || conn.done {
            return;
        }
        Server { content, stats, path }.serve(conn, flow, host, incoming);
    }

    /// Client bytes at stream `offset`.
    fn data(&mut self, flow: &FlowRef, offset: u64, bytes: &[u8], host: &mut Host<'_>) {
        let Some(conn) = self.conn_or_new(flow) else { return };
        if conn.done {
            return;
        }
        let next = conn.next_offset;
        if offset > next {
            // Bytes the NF never got (a lost event): the requests cannot be told apart any
            // more. A connection picked up mid-stream (no NEW, first bytes past 0) is the same.
            conn.finish();
            host.reset(flow);
            self.stats.resets += 1;
            return;
        }
        // Bytes already read (a repeat) are not read twice.
        let already = (next - offset).min(bytes.len() as u64) as usize;
        let bytes = &bytes[already..];
        conn.next_offset = next + bytes.len() as u64;
        if !bytes.is_empty() {
            self.serve(flow, host, bytes);
        }
    }

    /// The client closed its side (FIN), or reset the connection.
    fn stream_end(&mut self, flow: &FlowRef, reason: u8, host: &mut Host<'_>) {
        let Some(conn) = self.conn(flow) else { return };
        if reason == END_RST {
            // Nothing sent from now on would arrive.
            conn.finish();
            return;
        }
        conn.peer_done = true;
        self.serve(flow, host, &[]);
    }

    /// Counters as a struct, for tests.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

impl NetworkFunction for HttpServer {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        let flow = event.flow;
        if !flow.is_some() {
            return Verdict::Pass;
        }
        if let Some(ev) = event.view::<StreamDataEvent>() {
            // Only the client's bytes are requests (mbox's own direction is what it sent).
            if flow.dir == DIR_ORIG {
                self.data(&flow, ev.offset, ev.bytes(), host);
            }
        } else if let Some(ev) = event.view::<StreamEndEvent>() {
            if flow.dir == DIR_ORIG {
                self.stream_end(&flow, ev.reason, host);
            }
        } else if event.is_a(builtin::FLOW_TCP_NEW) {
            self.conn_or_new(&flow);
        } else if event.is_a(builtin::FLOW_TCP_SEND_ROOM) {
            self.serve(&flow, host, &[]);
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) {
            if let Some(conn) = self.conn(&flow) {
                conn.reset(0);
            }
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        let s = &self.stats;
        out.set("requests", s.requests);
        out.set("responses_2xx", s.responses_2xx);
        out.set("responses_4xx", s.responses_4xx);
        out.set("bytes_sent", s.bytes_sent);
        out.set("connections", s.connections);
        out.set("bad_requests", s.bad_requests);
        out.set("sends_partial", s.sends_partial);
        out.set("sends_ended", s.sends_ended);
        out.set("resets", s.resets);
    }
}

/// The `generated` argument: a table of path to size. `Args` has no accessor for a table of
/// numbers, so the JSON is read again here (`Args::parse` has already refused unknown keys).
fn generated_arg(args_json: &str) -> Result<Vec<(String, u64)>, String> {
    let value: serde_json::Value = serde_json::from_str(args_json).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
    match value.get("generated") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Object(items)) => items
            .iter()
            .map(|(path, size)| match size.as_u64() {
                Some(n) => Ok((path.clone(), n)),
                None => Err(format!("argument `generated.{path}` must be a size in bytes (a non-negative integer), not {size}")),
            })
            .collect(),
        Some(other) => Err(format!("argument `generated` must be a table of path = size in bytes, not {other}")),
    }
}

impl Plugin for HttpServer {
    const INFO: PluginInfo = PluginInfo {
        name: "http-server",
        version: env!("CARGO_PKG_VERSION"),
        description: "answers HTTP/1.1 GET and HEAD on the connections of a [[service]] from files and generated bodies in memory",
        subscribes: &["FLOW/TCP/NEW", "FLOW/TCP/DATA_RDY", "FLOW/TCP/STREAM_END", "FLOW/TCP/SEND_ROOM", "FLOW/TCP/TERMINATE"],
        publishes: &[],
        // It never drops or modifies an event; its answers go through Host::send.
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let json = init.args_json.as_str();
        let args = Args::parse(json, &["root", "generated", "max_bytes"])?;
        let root = args.string("root", "")?;
        let generated = generated_arg(json)?;
        let max_bytes = args.u64("max_bytes", DEFAULT_MAX_BYTES)?;
        if root.is_empty() && generated.is_empty() {
            return Err("nothing to serve: give `root` (a directory) and/or `generated` (a table of path = size)".into());
        }
        let root = (!root.is_empty()).then(|| Path::new(&root));
        let content = Content::load(root, &generated, max_bytes)?;
        Ok(HttpServer {
            content,
            conns: (0..init.shards).map(|_| [Vec::new(), Vec::new()]).collect(),
            flow_slots: init.flow_slots,
            path: Vec::new(),
            stats: Stats::default(),
        })
    }
}

export_nf!(HttpServer);

#[cfg(test)]
mod tests;
