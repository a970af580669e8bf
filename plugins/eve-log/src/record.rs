//! eve.json records and fast.log lines in Suricata 7's formats: the fields every record
//! starts with (time, flow id, type, VLAN, addresses, ports, protocol), Suricata's way of
//! writing addresses, and the `flow` record of a flow that ended.

use mbox_abi::kit::{proto_name, ts_iso8601};
use mbox_abi::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
use mbox_abi::{FlowEvent, FlowTuple, REASON_END_OF_INPUT, REASON_EVICTED, REASON_FIN, REASON_RST};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// Who a record is between: its source first.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub addrs: [IpAddr; 2],
    pub ports: [u16; 2],
    pub proto: u8,
    pub vlan: u16,
}

impl Endpoints {
    /// A flow's endpoints, its client (originator) first.
    pub fn of(t: &FlowTuple) -> Endpoints {
        Endpoints { addrs: [t.addr(0), t.addr(1)], ports: t.ports, proto: t.ip_proto, vlan: t.vlan }
    }

    pub fn reversed(self) -> Endpoints {
        Endpoints { addrs: [self.addrs[1], self.addrs[0]], ports: [self.ports[1], self.ports[0]], ..self }
    }

    fn has_ports(&self) -> bool {
        matches!(self.proto, mbox_abi::ip_proto::TCP | mbox_abi::ip_proto::UDP | mbox_abi::ip_proto::SCTP)
    }
}

/// An address as Suricata writes it: IPv4 dotted, IPv6 as eight groups of four hex digits.
pub fn ip(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let g = a.segments();
            format!("{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}", g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7])
        }
    }
}

/// One eve.json record.
pub struct Record {
    pub event_type: &'static str,
    fields: Map<String, Value>,
}

impl Record {
    /// A record with the common fields.
    pub fn new(ts_ns: u64, flow_id: u64, event_type: &'static str, ends: &Endpoints) -> Record {
        let mut fields = Map::new();
        fields.insert("timestamp".into(), json!(ts_iso8601(ts_ns)));
        fields.insert("flow_id".into(), json!(flow_id));
        fields.insert("event_type".into(), json!(event_type));
        if ends.vlan != 0 {
            fields.insert("vlan".into(), json!([ends.vlan]));
        }
        fields.insert("src_ip".into(), json!(ip(ends.addrs[0])));
        if ends.has_ports() {
            fields.insert("src_port".into(), json!(ends.ports[0]));
        }
        fields.insert("dest_ip".into(), json!(ip(ends.addrs[1])));
        if ends.has_ports() {
            fields.insert("dest_port".into(), json!(ends.ports[1]));
        }
        fields.insert("proto".into(), json!(proto_name(ends.proto)));
        Record { event_type, fields }
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.fields.insert(key.to_string(), value);
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.fields.get_mut(key)
    }

    pub fn to_json(&self) -> String {
        // A map of JSON values always serialises.
        serde_json::to_string(&self.fields).unwrap_or_default()
    }
}

/// The `flow` record of a flow that ended (`alerted` is set when it is written).
pub fn flow_record(flow: &FlowEvent, tcp: bool, ends: &Endpoints, app_proto: Option<&str>) -> Record {
    let h = &flow.header;
    let mut record = Record::new(h.ts_ns, h.flow.id, "flow", ends);
    if let Some(app) = app_proto {
        record.set("app_proto", json!(app));
    }
    let [ts, tc] = flow.stats;
    let start = [ts.first_ts_ns, tc.first_ts_ns].into_iter().filter(|&t| t > 0).min().unwrap_or(h.ts_ns);
    let end = ts.last_ts_ns.max(tc.last_ts_ns).max(start);
    let state = match tcp {
        true => tcp_flow_state(ts.tcp_flags, tc.tcp_flags, matches!(flow.reason, REASON_FIN | REASON_RST)),
        false if ts.pkts > 0 && tc.pkts > 0 => "established",
        false => "new",
    };
    let reason = match flow.reason {
        REASON_END_OF_INPUT => "shutdown",
        REASON_EVICTED => "forced",
        _ => "timeout",
    };
    record.set(
        "flow",
        json!({
            "pkts_toserver": ts.pkts, "pkts_toclient": tc.pkts,
            "bytes_toserver": ts.frame_bytes, "bytes_toclient": tc.frame_bytes,
            "start": ts_iso8601(start), "end": ts_iso8601(end), "age": (end - start) / 1_000_000_000,
            "state": state, "reason": reason, "alerted": false,
        }),
    );
    if tcp {
        let mut t = Map::new();
        t.insert("tcp_flags".into(), json!(format!("{:02x}", ts.tcp_flags | tc.tcp_flags)));
        t.insert("tcp_flags_ts".into(), json!(format!("{:02x}", ts.tcp_flags)));
        t.insert("tcp_flags_tc".into(), json!(format!("{:02x}", tc.tcp_flags)));
        for (bit, name) in [(SYN, "syn"), (FIN, "fin"), (RST, "rst"), (PSH, "psh"), (ACK, "ack"), (URG, "urg")] {
            if (ts.tcp_flags | tc.tcp_flags) & bit != 0 {
                t.insert(name.into(), json!(true));
            }
        }
        record.set("tcp", Value::Object(t));
    }
    record
}

/// Suricata's flow state for a TCP connection, from the flags each side sent and whether the
/// stack saw it close (a RST it accepted, or the FIN exchange): `closed` once a connection
/// whose SYN was seen closed (a SYN answered by a RST included), else `established` once its
/// three-way handshake completed (FINs that did not close it, as at the end of a capture,
/// leave it so), else `new` (a connection picked up without its SYN among them).
fn tcp_flow_state(client: u8, server: u8, closed: bool) -> &'static str {
    let handshake = client & SYN != 0 && server & (SYN | ACK) == SYN | ACK && client & ACK != 0;
    if closed && client & SYN != 0 {
        "closed"
    } else if handshake {
        "established"
    } else {
        "new"
    }
}

/// A fast.log line: `MM/DD/YYYY-HH:MM:SS.uuuuuu  [**] [gid:sid:rev] msg [**] [Classification: c]
/// [Priority: p] {PROTO} src:port -> dst:port`; `[wDrop]` marks a drop rule that only alerted.
#[allow(clippy::too_many_arguments)]
pub fn fast_line(
    ts_ns: u64,
    drop: bool,
    gid: u32,
    sid: u32,
    rev: u32,
    msg: &str,
    category: &str,
    severity: u8,
    ends: &Endpoints,
) -> String {
    let iso = ts_iso8601(ts_ns); // YYYY-MM-DDTHH:MM:SS.uuuuuu+0000
    let time = format!("{}/{}/{}-{}", &iso[5..7], &iso[8..10], &iso[0..4], &iso[11..26]);
    let class = if category.is_empty() { "(null)" } else { category };
    let action = if drop { "[wDrop] " } else { "" };
    let end = |i: usize| if ends.has_ports() { format!("{}:{}", ip(ends.addrs[i]), ends.ports[i]) } else { ip(ends.addrs[i]) };
    format!(
        "{time}  {action}[**] [{gid}:{sid}:{rev}] {msg} [**] [Classification: {class}] [Priority: {severity}] {{{}}} {} -> {}",
        proto_name(ends.proto),
        end(0),
        end(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_suricata_writes_them() {
        assert_eq!(ip("2003:de:2016:125::53".parse().unwrap()), "2003:00de:2016:0125:0000:0000:0000:0053");
        assert_eq!(ip("10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    #[test]
    fn a_fast_log_line() {
        let ends =
            Endpoints { addrs: ["192.168.115.8".parse().unwrap(), "8.8.8.8".parse().unwrap()], ports: [51024, 53], proto: 17, vlan: 0 };
        let line = fast_line(1_470_104_377_734_137_000, false, 1, 9_000_009, 1, "PEERS DNS query", "", 3, &ends);
        assert_eq!(
            line,
            "08/02/2016-02:19:37.734137  [**] [1:9000009:1] PEERS DNS query [**] [Classification: (null)] [Priority: 3] {UDP} 192.168.115.8:51024 -> 8.8.8.8:53"
        );
    }
}
