//! logger: writes every event it subscribes to as one JSON line, with Suricata eve.json field
//! names where they exist (`timestamp`, `flow_id`, `event_type`, `src_ip`, `src_port`, `dest_ip`,
//! `dest_port`, `proto`, `alert.signature_id`, ...), so jq and log shippers read it unchanged.
//! `mbox_type` adds the event's full type path.
//!
//! Default subscription: `FLOW`; list `ALERT` (when an NF publishes alerts) or `PKT` in the
//! config to log those too.
//! Arguments: `output` (a file path, `-` for standard output; default `-`).

use mbox_abi::events::tcp_state;
use mbox_abi::kit::{proto_name, ts_iso8601, Args, LineWriter, Results};
use mbox_abi::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
use mbox_abi::{
    app, end_reason_name, export_nf, gap_reason_name, quic_packet_type_name, reason_name, AlertEvent, EventHeader, EventType, FlowEvent,
    FlowQuicEvent, FlowTcpEvent, FlowTuple, FlowTypeEvent, Host, NetworkFunction, NfInit, PktEvent, PktQuicEvent, PktTcpEvent, Plugin,
    PluginInfo, SigMatchEvent, StreamDataEvent, StreamEndEvent, StreamGapEvent, TcpSnapshot, Verdict, CONFIDENCE_DPI, CONFIDENCE_PORT,
    FLOW_TYPE_PATH, QUIC_HELLO_READ, REASON_NONE, SIG_MATCH_PATH,
};

/// A flow's addresses, ports, protocol and VLAN, as eve.json names them.
fn insert_tuple(line: &mut Map<String, Value>, t: &FlowTuple) {
    line.insert("src_ip".into(), json!(t.addr(0).to_string()));
    line.insert("src_port".into(), json!(t.ports[0]));
    line.insert("dest_ip".into(), json!(t.addr(1).to_string()));
    line.insert("dest_port".into(), json!(t.ports[1]));
    line.insert("proto".into(), json!(proto_name(t.ip_proto)));
    if t.vlan != 0 {
        line.insert("vlan".into(), json!([t.vlan]));
    }
}

/// The TCP monitor's view of a connection, for logs.
fn snapshot_json(s: &TcpSnapshot) -> Value {
    let side = |i: usize| {
        let d = &s.sides[i];
        json!({ "state": tcp_state::name(d.state), "next_seq": d.next_seq, "ack": d.ack, "window": d.window, "retransmissions": d.retransmissions, "stream_bytes": d.stream_bytes })
    };
    json!({ "orig": side(0), "reply": side(1), "flags": s.flags })
}
use serde_json::{json, Map, Value};

pub struct Logger {
    out: LineWriter,
    /// Type paths by code, from the host's registry.
    paths: Vec<(EventType, String)>,
    /// `ALERT/SIG_MATCH` and `FLOW/TYPE`, when NFs of the run publish them.
    sig_match: Results<SigMatchEvent>,
    flow_type: Results<FlowTypeEvent>,
}

impl Logger {
    fn path(&self, ty: EventType) -> &str {
        self.paths.iter().find(|(t, _)| *t == ty).map_or("?", |(_, p)| p.as_str())
    }

    fn line(&self, event: &EventHeader) -> Value {
        let path = self.path(event.ty);
        let mut line = Map::new();
        line.insert("timestamp".into(), json!(ts_iso8601(event.ts_ns)));
        if event.flow.is_some() {
            line.insert("flow_id".into(), json!(event.flow.id));
        }
        if let Some(pkt) = event.view::<PktEvent>() {
            line.insert("event_type".into(), json!("packet"));
            if let (Some(src), Some(dst)) = (pkt.src_addr(), pkt.dst_addr()) {
                line.insert("src_ip".into(), json!(src.to_string()));
                line.insert("src_port".into(), json!(pkt.src_port));
                line.insert("dest_ip".into(), json!(dst.to_string()));
                line.insert("dest_port".into(), json!(pkt.dst_port));
                line.insert("proto".into(), json!(proto_name(pkt.ip_proto)));
            }
            line.insert("packet_info".into(), json!({ "len": pkt.wire_len, "cap_len": pkt.cap_len, "payload_len": pkt.payload_len }));
            if let Some(tcp) = event.view::<PktTcpEvent>() {
                let f = tcp.pkt.tcp_flags;
                let mut t = json!({ "tcp_flags": format!("{f:02x}"), "seq": tcp.seq, "ack": tcp.ack, "window": tcp.window });
                if tcp.snapshot != TcpSnapshot::default() {
                    t["mbox_state"] = snapshot_json(&tcp.snapshot);
                }
                for (bit, name) in [(SYN, "syn"), (FIN, "fin"), (RST, "rst"), (PSH, "psh"), (ACK, "ack"), (URG, "urg")] {
                    if f & bit != 0 {
                        t[name] = json!(true);
                    }
                }
                line.insert("tcp".into(), t);
            }
            if let Some(q) = event.view::<PktQuicEvent>().map(|e| &e.quic) {
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                let quic = json!({
                    "version": format!("{:08x}", q.version),
                    "packet_type": quic_packet_type_name(q.packet_type),
                    "dcid": hex(q.dcid()),
                    "scid": hex(q.scid()),
                });
                line.insert("quic".into(), quic);
            }
        } else if let Some(gap) = event.view::<StreamGapEvent>() {
            // Stream events before other flow events: they are flow events too.
            line.insert("event_type".into(), json!("stream_gap"));
            let g = json!({ "direction": gap.tcp.flow.header.flow.dir, "offset": gap.offset, "len": gap.len, "reason": gap_reason_name(gap.reason) });
            line.insert("stream".into(), g);
        } else if let Some(end) = event.view::<StreamEndEvent>() {
            line.insert("event_type".into(), json!("stream_end"));
            let e = json!({ "direction": end.tcp.flow.header.flow.dir, "offset": end.offset, "reason": end_reason_name(end.reason) });
            line.insert("stream".into(), e);
        } else if let Some(data) = event.view::<StreamDataEvent>() {
            line.insert("event_type".into(), json!("stream_data"));
            line.insert("stream".into(), json!({ "direction": data.tcp.flow.header.flow.dir, "offset": data.offset, "len": data.len }));
        } else if let Some(q) = event.view::<FlowQuicEvent>() {
            // A QUIC connection's first flight, as Suricata's `quic` records name its fields.
            let t = &q.flow.tuple;
            line.insert("event_type".into(), json!("quic"));
            insert_tuple(&mut line, t);
            let alpn: Vec<String> = q.alpn().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let quic = json!({
                "version": format!("{:08x}", q.version),
                "sni": String::from_utf8_lossy(q.sni()),
                "alpn": alpn,
                "hello_read": q.flags & QUIC_HELLO_READ != 0,
            });
            line.insert("quic".into(), quic);
        } else if let Some(t) = self.flow_type.view(event) {
            // A classification: the flow and its application protocol.
            let tuple = &t.flow.tuple;
            line.insert("event_type".into(), json!("flow_type"));
            insert_tuple(&mut line, tuple);
            line.insert("app_proto".into(), json!(app::name(t.app)));
            let confidence = match t.confidence {
                CONFIDENCE_DPI => "dpi",
                CONFIDENCE_PORT => "port",
                _ => "none",
            };
            line.insert("confidence".into(), json!(confidence));
            let name = String::from_utf8_lossy(t.host());
            if !name.is_empty() {
                match t.app {
                    app::HTTP | app::HTTP_PROXY | app::HTTP_CONNECT => line.insert("http".into(), json!({ "hostname": name })),
                    // As Suricata's eve.json names them: the server name of a QUIC connection.
                    app::QUIC => line.insert("quic".into(), json!({ "sni": name })),
                    _ => line.insert("tls".into(), json!({ "sni": name })),
                };
            }
        } else if let Some(flow) = event.view::<FlowEvent>() {
            let t = &flow.tuple;
            let ended = flow.reason != REASON_NONE;
            line.insert("event_type".into(), json!(if ended { "flow" } else { "flow_start" }));
            insert_tuple(&mut line, t);
            let [o, r] = flow.stats;
            let start = [o.first_ts_ns, r.first_ts_ns].into_iter().filter(|&x| x != 0).min().unwrap_or(event.ts_ns);
            let end = o.last_ts_ns.max(r.last_ts_ns).max(start);
            let mut f = json!({
                "pkts_toserver": o.pkts,
                "pkts_toclient": r.pkts,
                "bytes_toserver": o.frame_bytes,
                "bytes_toclient": r.frame_bytes,
                "start": ts_iso8601(start),
            });
            if ended {
                f["end"] = json!(ts_iso8601(end));
                f["reason"] = json!(reason_name(flow.reason));
            }
            line.insert("flow".into(), f);
            if let Some(tcp) = event.view::<FlowTcpEvent>().filter(|t| t.snapshot != TcpSnapshot::default()) {
                line.insert("tcp".into(), json!({ "mbox_state": snapshot_json(&tcp.snapshot) }));
            }
        } else if let Some(m) = self.sig_match.view(event) {
            // A signature match: the fields Suricata's eve.json alerts have.
            let t = &m.tuple;
            let (src, dst) = if m.dir == 0 { (0, 1) } else { (1, 0) };
            line.insert("event_type".into(), json!("alert"));
            line.insert("src_ip".into(), json!(t.addr(src).to_string()));
            line.insert("src_port".into(), json!(t.ports[src]));
            line.insert("dest_ip".into(), json!(t.addr(dst).to_string()));
            line.insert("dest_port".into(), json!(t.ports[dst]));
            line.insert("proto".into(), json!(proto_name(t.ip_proto)));
            if m.app_proto != app::UNKNOWN {
                line.insert("app_proto".into(), json!(app::name(m.app_proto)));
            }
            line.insert("direction".into(), json!(if m.dir == 0 { "to_server" } else { "to_client" }));
            line.insert(
                "alert".into(),
                json!({ "action": "allowed", "gid": 1, "signature_id": m.alert.id, "rev": m.rev, "signature": m.alert.message(), "severity": m.alert.severity }),
            );
            line.insert(
                "flow".into(),
                json!({ "src_ip": t.addr(0).to_string(), "src_port": t.ports[0], "dest_ip": t.addr(1).to_string(), "dest_port": t.ports[1], "start": ts_iso8601(m.flow_start_ns) }),
            );
            line.insert("stream_offset".into(), json!(m.stream_offset));
        } else if let Some(alert) = event.view::<AlertEvent>() {
            line.insert("event_type".into(), json!("alert"));
            line.insert(
                "alert".into(),
                json!({ "signature_id": alert.id, "signature": alert.message(), "severity": alert.severity, "category": path }),
            );
        } else {
            let leaf = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
            line.insert("event_type".into(), json!(leaf));
        }
        line.insert("mbox_type".into(), json!(path));
        Value::Object(line)
    }
}

impl NetworkFunction for Logger {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        let line = self.line(event).to_string();
        self.out.line(&line);
        Verdict::Pass
    }

    fn on_idle(&mut self) {
        self.out.flush();
    }

    fn on_finish(&mut self) -> Result<(), String> {
        self.out.finish()
    }

    fn reopen_outputs(&mut self) -> Result<String, String> {
        self.out.reopen()
    }
}

impl Plugin for Logger {
    const INFO: PluginInfo = PluginInfo {
        name: "logger",
        version: env!("CARGO_PKG_VERSION"),
        description: "writes the events it subscribes to as eve.json-style JSON lines",
        subscribes: &["FLOW"],
        publishes: &[],
        read_only: true,
    };
    const OUTPUTS: &'static [&'static str] = &["output"];

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["output"])?;
        let path = args.string("output", "-")?;
        let out = LineWriter::open(&path, init.replacing).map_err(|e| format!("cannot open output `{path}`: {e}"))?;
        let paths = init.types.iter().map(|b| (b.ty, b.path.to_string())).collect();
        Ok(Logger { out, paths, sig_match: Results::new(init, SIG_MATCH_PATH), flow_type: Results::new(init, FLOW_TYPE_PATH) })
    }
}

export_nf!(Logger);
