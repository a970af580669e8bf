//! eve-log: Suricata-compatible output. It writes `eve.json` — `alert` records for sig-match's
//! alerts (the rule's gid, rev, full message, category and severity from the classification
//! file, metadata, the flow's application protocol and its `http` or `tls` context), `http`,
//! `dns`, `tls`, `ssh` and `smtp` records from mbox-proto's parsers, `flow` records when a
//! flow ends (packets, bytes, state, reason, whether it alerted), and `anomaly` records for
//! stream gaps and protocol parsers that had to give up — and, if asked, Suricata's
//! `fast.log` line per alert. Field names and formats are Suricata 7's (IPv6 addresses
//! written out in full, times with microseconds and `+0000`); docs/ids.md lists where the
//! records differ and why. `mbox ids` runs it.
//!
//! Arguments: `eve` (path, default `eve.json`; `-` for standard output); `fast` (path of a
//! fast.log, default none); `rules` (the rule files sig-match loads, for the alerts'
//! descriptions) and `classification` (as sig-match's); `types` (the record types to write,
//! default all: `alert`, `http`, `dns`, `tls`, `ssh`, `smtp`, `flow`, `anomaly`); `hold` (events
//! a flow's record waits for after its end, default 8,192: see [`DEFAULT_HOLD_EVENTS`]);
//! `stream_depth` (bytes of each direction parsed, default 1 MiB: Suricata's
//! `stream.reassembly.depth`, as sig-match's, past which Suricata's parsers see nothing).

mod app;
mod dns;
mod record;

use app::{AppRecord, Conn};
use mbox_abi::kit::{Args, FlowMap, LineWriter, Results};
use mbox_abi::{
    app as app_code, builtin, export_nf, gap_reason_name, Counters, EventHeader, FlowEvent, FlowTcpEvent, Host, NetworkFunction, NfInit,
    PktEvent, Plugin, PluginInfo, SigMatchEvent, StreamDataEvent, StreamGapEvent, Verdict, GAP_AT_END, SIG_MATCH_PATH, TCP_MIDSTREAM,
};
use mbox_sig::{Classifications, RuleIndex};
use record::{Endpoints, Record};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;

/// Bytes of a direction parsed when `stream_depth` is not given: Suricata's stock depth.
pub const DEFAULT_STREAM_DEPTH: u64 = 1 << 20;

/// Events of a shard a flow's record waits for after the flow's end (the `hold` argument's
/// default), so that every alert sig-match raises on the flow has come and counts in its
/// `alerted`. sig-match runs on its own thread and publishes an alert when it has handled
/// the event that decided it, which may be after this NF saw the flow end. But each event
/// sig-match has yet to handle keeps one of its shard's event slots (`[runtime] event_slots`,
/// 4,096 by default), and sig-match handles events in order: once more events than there are
/// slots, of the types sig-match also gets, came after the end, sig-match had handled the end
/// (and so published every alert of the flow) before the last of them was sent, and the
/// router delivers each NF its events in the order they were sent. The default is twice the
/// default slots: a config whose `event_slots` is larger sets `hold` to at least twice it.
const DEFAULT_HOLD_EVENTS: u64 = 8192;

/// The record types, in the order `types` names them.
const TYPES: [&str; 8] = ["alert", "http", "dns", "tls", "ssh", "smtp", "flow", "anomaly"];

/// Per TCP connection.
struct TcpFlow {
    conn: Conn,
    ends: Endpoints,
    alerted: bool,
}

/// Per UDP flow.
struct UdpFlow {
    dns: dns::Transactions,
    alerted: bool,
    dns_seen: bool,
}

/// A flow record waiting out [`DEFAULT_HOLD_EVENTS`].
struct Closing {
    flow_id: u64,
    /// The shard's count of events when the flow ended.
    ended_at: u64,
    app_proto: Option<&'static str>,
    record: Record,
    alerted: bool,
}

pub struct EveLog {
    eve: LineWriter,
    fast: Option<LineWriter>,
    rules: RuleIndex,
    sig_match: Results<SigMatchEvent>,
    tcp: FlowMap<TcpFlow>,
    udp: FlowMap<UdpFlow>,
    /// By shard, in the order the flows ended.
    closing: Vec<VecDeque<Closing>>,
    /// By shard: events seen of the types sig-match gets too.
    seen: Vec<u64>,
    /// Events a flow's record waits for.
    hold: u64,
    /// Bytes of each direction the protocol parsers read (Suricata's stream.reassembly.depth).
    stream_depth: u64,
    /// Which of [`TYPES`] to write.
    enabled: [bool; TYPES.len()],
    /// Records written, by type.
    written: [u64; TYPES.len()],
    /// Alerts of rules not in the rule files given (described by their event alone).
    alerts_undescribed: u64,
}

impl EveLog {
    fn enabled(&self, event_type: &str) -> bool {
        TYPES.iter().position(|t| *t == event_type).is_some_and(|i| self.enabled[i])
    }

    fn write(&mut self, record: Record) {
        let Some(i) = TYPES.iter().position(|t| *t == record.event_type) else { return };
        if self.enabled[i] {
            self.written[i] += 1;
            self.eve.line(&record.to_json());
        }
    }

    /// An application record of a connection (client first, as Suricata writes them).
    fn write_app(&mut self, header: &EventHeader, ends: &Endpoints, r: AppRecord) {
        if !self.enabled(r.event_type) {
            return;
        }
        let mut record = Record::new(header.ts_ns, header.flow.id, r.event_type, ends);
        if let Some(tx) = r.tx_id {
            record.set("tx_id", json!(tx));
        }
        record.set(r.event_type, r.body);
        self.write(record);
    }

    fn on_stream(&mut self, tcp: &FlowTcpEvent, header: &EventHeader, step: impl FnOnce(&mut Conn, &mut dyn FnMut(AppRecord))) {
        let midstream = tcp.snapshot.flags & TCP_MIDSTREAM != 0;
        let stream_depth = self.stream_depth;
        let tuple = tcp.flow.tuple;
        let Some(flow) = self.tcp.get_or_insert_with(&header.flow, || TcpFlow {
            conn: Conn::new(tuple.ports, midstream, stream_depth),
            ends: Endpoints::of(&tuple),
            alerted: false,
        }) else {
            return;
        };
        let mut records = Vec::new();
        step(&mut flow.conn, &mut |r| records.push(r));
        let ends = flow.ends;
        for r in records {
            self.write_app(header, &ends, r);
        }
    }

    fn on_datagram(&mut self, pkt: &PktEvent) {
        let header = &pkt.header;
        if !(pkt.src_port == 53 || pkt.dst_port == 53) || !header.flow.is_some() {
            return;
        }
        let (Some(src), Some(dst)) = (pkt.src_addr(), pkt.dst_addr()) else { return };
        let Some(flow) =
            self.udp.get_or_insert_with(&header.flow, || UdpFlow { dns: dns::Transactions::default(), alerted: false, dns_seen: false })
        else {
            return;
        };
        let mut records = Vec::new();
        flow.dns.message(pkt.payload(), &mut |r| records.push(r));
        flow.dns_seen |= !records.is_empty();
        // DNS records name the flow's client first, queries and answers alike (as Suricata).
        let ends = Endpoints { addrs: [src, dst], ports: [pkt.src_port, pkt.dst_port], proto: pkt.ip_proto, vlan: pkt.vlan };
        let ends = if header.flow.dir == 0 { ends } else { ends.reversed() };
        for r in records {
            self.write_app(header, &ends, r);
        }
    }

    fn on_alert(&mut self, alert: &SigMatchEvent) {
        let header = alert.alert.header;
        let sid = alert.alert.id;
        let flow_ends = Endpoints::of(&alert.tuple);
        // The alert names the matching data's direction: its source sent it.
        let ends = if alert.dir == 0 { flow_ends } else { flow_ends.reversed() };
        // The protocol the alert was raised in, as sig-match recognised it (a connection may
        // have changed since: STARTTLS, a CONNECT tunnel), else the connection's.
        let alerted_in = (alert.app_proto != app_code::UNKNOWN).then(|| app_code::name(alert.app_proto));
        let (app_proto, context) = match self.tcp.get_mut(&header.flow) {
            Some(f) => {
                f.alerted = true;
                (alerted_in.or(f.conn.app_proto(true)), f.conn.alert_context())
            }
            None => {
                if let Some(f) = self.udp.get_mut(&header.flow) {
                    f.alerted = true;
                }
                // A flow that ended: its record (waiting) knows what it spoke.
                let shard = self.shard(&header);
                let closing = self.closing[shard].iter_mut().find(|c| c.flow_id == header.flow.id);
                let ended_as = closing.and_then(|c| {
                    c.alerted = true;
                    c.app_proto
                });
                (alerted_in.or(ended_as), None)
            }
        };
        let info = self.rules.get(1, sid);
        if info.is_none() {
            self.alerts_undescribed += 1;
        }
        let msg = info.map_or_else(|| alert.alert.message().to_string(), |i| i.msg.clone());
        let category = info.map_or("", |i| i.category.as_str());
        let severity = info.map_or(alert.alert.severity, |i| i.severity);
        let drop = info.is_some_and(|i| i.action == mbox_sig::Action::Drop);
        if let Some(fast) = &mut self.fast {
            fast.line(&record::fast_line(header.ts_ns, drop, info.map_or(1, |i| i.gid), sid, alert.rev, &msg, category, severity, &ends));
        }
        if !self.enabled("alert") {
            return;
        }
        let mut a = Map::new();
        a.insert("action".into(), json!("allowed"));
        a.insert("gid".into(), json!(info.map_or(1, |i| i.gid)));
        a.insert("signature_id".into(), json!(sid));
        a.insert("rev".into(), json!(alert.rev));
        a.insert("signature".into(), json!(msg));
        a.insert("category".into(), json!(category));
        a.insert("severity".into(), json!(severity));
        if let Some(i) = info.filter(|i| !i.metadata.is_empty()) {
            let mut m: Map<String, Value> = Map::new();
            for (k, v) in &i.metadata {
                let list = m.entry(k.clone()).or_insert_with(|| json!([]));
                if let Value::Array(values) = list {
                    values.push(json!(v));
                }
            }
            a.insert("metadata".into(), Value::Object(m));
        }
        let mut record = Record::new(header.ts_ns, header.flow.id, "alert", &ends);
        record.set("alert", Value::Object(a));
        if let Some((name, body)) = context {
            record.set(name, body);
        }
        if let Some(app) = app_proto {
            record.set("app_proto", json!(app));
        }
        record.set("direction", json!(if alert.dir == 0 { "to_server" } else { "to_client" }));
        let flow = json!({
            "start": mbox_abi::kit::ts_iso8601(alert.flow_start_ns),
            "src_ip": record::ip(flow_ends.addrs[0]), "dest_ip": record::ip(flow_ends.addrs[1]),
            "src_port": flow_ends.ports[0], "dest_port": flow_ends.ports[1],
        });
        record.set("flow", flow);
        self.write(record);
    }

    fn on_gap(&mut self, gap: &StreamGapEvent) {
        let header = gap.tcp.flow.header;
        let dir = usize::from(header.flow.dir);
        let ends = Endpoints::of(&gap.tcp.flow.tuple);
        if let Some(f) = self.tcp.get_mut(&header.flow) {
            let mut records = Vec::new();
            f.conn.gap(dir, gap.len, gap.reason == GAP_AT_END, &mut |r| records.push(r));
            let ends = f.ends;
            for r in records {
                self.write_app(&header, &ends, r);
            }
        }
        if self.enabled("anomaly") {
            let mut record = Record::new(header.ts_ns, header.flow.id, "anomaly", &ends);
            let anomaly = json!({
                "type": "stream", "event": "REASSEMBLY_GAP", "layer": "stream",
                "direction": if dir == 0 { "to_server" } else { "to_client" },
                "offset": gap.offset, "len": gap.len, "reason": gap_reason_name(gap.reason),
            });
            record.set("anomaly", anomaly);
            self.write(record);
        }
    }

    /// A flow ended: its open transactions are logged, and its record waits a moment.
    fn on_end(&mut self, flow: &FlowEvent, tcp: Option<&FlowTcpEvent>) {
        let header = flow.header;
        let ends = Endpoints::of(&flow.tuple);
        let (app_proto, alerted) = if tcp.is_some() {
            match self.tcp.remove(&header.flow) {
                Some(mut f) => {
                    let mut records = Vec::new();
                    f.conn.end(&mut |r| records.push(r));
                    for r in records {
                        self.write_app(&header, &f.ends, r);
                    }
                    let saw_data = flow.stats.iter().any(|s| s.payload_bytes > 0);
                    (f.conn.app_proto(saw_data), f.alerted)
                }
                None => (None, false),
            }
        } else {
            match self.udp.remove(&header.flow) {
                Some(f) => (if f.dns_seen { Some("dns") } else { Some("failed") }, f.alerted),
                // A UDP flow with data that is not DNS; other IP protocols have no app_proto.
                None => {
                    let udp = flow.tuple.ip_proto == mbox_abi::ip_proto::UDP;
                    ((udp && flow.stats.iter().any(|s| s.payload_bytes > 0)).then_some("failed"), false)
                }
            }
        };
        let record = record::flow_record(flow, tcp.is_some(), &ends, app_proto);
        let shard = self.shard(&header);
        let ended_at = self.seen[shard];
        self.closing[shard].push_back(Closing { flow_id: header.flow.id, ended_at, app_proto, record, alerted });
    }

    fn shard(&self, header: &EventHeader) -> usize {
        usize::from(header.flow.shard).min(self.seen.len() - 1)
    }

    /// Writes the flow records of `shard` whose wait is over (every shard's, all of them,
    /// with `None`).
    fn flush_flows(&mut self, shard: Option<usize>) {
        let shards = match shard {
            Some(s) => s..s + 1,
            None => 0..self.closing.len(),
        };
        for s in shards {
            while let Some(c) = self.closing[s].front() {
                if shard.is_some() && self.seen[s] - c.ended_at <= self.hold {
                    break;
                }
                let Some(mut c) = self.closing[s].pop_front() else { break };
                if let Some(Value::Object(f)) = c.record.get_mut("flow") {
                    f.insert("alerted".into(), json!(c.alerted));
                }
                self.write(c.record);
            }
        }
    }
}

impl NetworkFunction for EveLog {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        let shard = self.shard(event);
        // FLOW/IP/TERMINATE is the one type here sig-match does not get (see DEFAULT_HOLD_EVENTS).
        if event.publisher == 0 && !event.is_a(builtin::FLOW_IP_TERMINATE) {
            self.seen[shard] += 1;
        }
        if let Some(alert) = self.sig_match.view(event) {
            self.on_alert(alert);
        } else if let Some(data) = event.view::<StreamDataEvent>() {
            let dir = usize::from(event.flow.dir);
            self.on_stream(&data.tcp, event, |conn, out| conn.data(dir, data.offset, data.bytes(), out));
        } else if let Some(gap) = event.view::<StreamGapEvent>() {
            self.on_gap(gap);
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) {
            if let Some(tcp) = event.view::<FlowTcpEvent>() {
                self.on_end(&tcp.flow, Some(tcp));
            }
        } else if event.is_a(builtin::FLOW_UDP_TERMINATE) || event.is_a(builtin::FLOW_IP_TERMINATE) {
            if let Some(flow) = event.view::<FlowEvent>() {
                self.on_end(flow, None);
            }
        } else if let Some(pkt) = event.view::<PktEvent>() {
            self.on_datagram(pkt);
        }
        self.flush_flows(Some(shard));
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        for (name, n) in TYPES.iter().zip(self.written) {
            out.set(name, n);
        }
        out.set("alerts_undescribed", self.alerts_undescribed);
        out.set("flow_records_waiting", self.closing.iter().map(VecDeque::len).sum::<usize>() as u64);
    }

    fn on_finish(&mut self) -> Result<(), String> {
        self.flush_flows(None);
        if let Some(fast) = &mut self.fast {
            fast.finish()?;
        }
        self.eve.finish()
    }

    fn reopen_outputs(&mut self) -> Result<String, String> {
        let mut reopened = self.eve.reopen()?;
        if let Some(fast) = &mut self.fast {
            reopened = format!("{reopened}, {}", fast.reopen()?);
        }
        Ok(reopened)
    }
}

impl Plugin for EveLog {
    const INFO: PluginInfo = PluginInfo {
        name: "eve-log",
        version: env!("CARGO_PKG_VERSION"),
        description: "Suricata-compatible eve.json (alert, http, dns, tls, ssh, smtp, flow, anomaly) and fast.log",
        subscribes: &[
            "FLOW/TCP/DATA_RDY",
            "FLOW/TCP/GAP",
            "FLOW/TCP/TERMINATE",
            "PKT/UDP",
            "FLOW/UDP/TERMINATE",
            "FLOW/IP/TERMINATE",
            SIG_MATCH_PATH,
        ],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["eve", "fast", "rules", "classification", "types", "hold", "stream_depth"])?;
        let eve_path = args.string("eve", "eve.json")?;
        let eve = LineWriter::open(&eve_path, init.replacing).map_err(|e| format!("cannot open `{eve_path}`: {e}"))?;
        let fast = match args.string("fast", "")?.as_str() {
            "" => None,
            path => Some(LineWriter::open(path, init.replacing).map_err(|e| format!("cannot open `{path}`: {e}"))?),
        };
        let classification = args.string("classification", "")?;
        let classes =
            Classifications::from_file_or_stock(Some(std::path::Path::new(&classification)).filter(|_| !classification.is_empty()))?;
        let mut rules = RuleIndex::default();
        for path in args.strings("rules")? {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read rules `{path}`: {e}"))?;
            rules.add_text(&text, &classes);
        }
        let types = args.strings("types")?;
        let mut enabled = [types.is_empty(); TYPES.len()];
        for t in &types {
            let i = TYPES
                .iter()
                .position(|k| k == t)
                .ok_or_else(|| format!("unknown record type `{t}` in `types` (known: {})", TYPES.join(", ")))?;
            enabled[i] = true;
        }
        let (shards, slots) = (init.shards as usize, init.flow_slots as usize);
        Ok(EveLog {
            eve,
            fast,
            rules,
            sig_match: Results::new(init, SIG_MATCH_PATH),
            tcp: FlowMap::new(shards, slots),
            udp: FlowMap::new(shards, slots),
            closing: (0..shards.max(1)).map(|_| VecDeque::new()).collect(),
            seen: vec![0; shards.max(1)],
            hold: args.u64("hold", DEFAULT_HOLD_EVENTS)?,
            stream_depth: args.u64("stream_depth", DEFAULT_STREAM_DEPTH)?,
            enabled,
            written: [0; TYPES.len()],
            alerts_undescribed: 0,
        })
    }
}

export_nf!(EveLog);
