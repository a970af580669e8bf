//! flow-stats: per-flow, per-direction packets and bytes, first and last timestamp, written as
//! one JSON line when the flow ends.
//!
//! It counts the `PKT` events it receives itself (it does not copy the stack's counters), so its
//! output is also a check that every packet event reached it exactly once. Flows are oriented
//! client -> server the way the reference tools do it: the sender of the first SYN without ACK,
//! else the receiver of the first SYN+ACK, else the sender of the first packet.
//!
//! Arguments: `output` (a file path, `-` for standard output; default `-`).
//!
//! On a reload (`mboxctl reload flow-stats`) it hands its open flows to the new instance, which
//! appends to the same output: no flow is written twice or in parts.

use mbox_abi::kit::{proto_name, tcp_flag_letters, ts_epoch, Args, LineWriter};
use mbox_abi::tcp_flags::{ACK, SYN};
use mbox_abi::{
    export_nf, reason_name, Counters, EventHeader, FlowEvent, Host, NetworkFunction, NfInit, PktEvent, Plugin, PluginInfo, Verdict,
};
use std::fmt::Write as _;

/// What flow-stats counts in one direction.
#[derive(Default, Clone, Copy)]
struct Dir {
    pkts: u64,
    frame_bytes: u64,
    ip_bytes: u64,
    payload_bytes: u64,
    tcp_flags: u8,
}

/// One flow's counters, kept in the slot the stack gave the flow.
#[derive(Clone, Copy)]
struct FlowCounters {
    id: u64,
    dirs: [Dir; 2],
    first_ts: u64,
    last_ts: u64,
    monotonic: bool,
    /// Direction of the first SYN without ACK, and of the first SYN+ACK.
    first_syn: Option<u8>,
    first_synack: Option<u8>,
}

impl FlowCounters {
    fn new(id: u64, ts: u64) -> FlowCounters {
        FlowCounters { id, dirs: [Dir::default(); 2], first_ts: ts, last_ts: ts, monotonic: true, first_syn: None, first_synack: None }
    }
}

pub struct FlowStats {
    out: LineWriter,
    /// The line being written (reused).
    line: String,
    /// By shard, then by flow slot.
    flows: Vec<Vec<Option<FlowCounters>>>,
    /// Slots per shard's flow table (saved state naming another slot is refused).
    flow_slots: usize,
    /// Flow records written.
    flows_written: u64,
    /// Flows with counters held (a gauge).
    flows_open: u64,
    /// Flows whose slot a newer flow took before their end came: no record for them.
    flows_overwritten: u64,
}

impl FlowStats {
    fn slot(&mut self, shard: u16, slot: u32) -> &mut Option<FlowCounters> {
        let table = &mut self.flows[usize::from(shard)];
        let i = slot as usize;
        if table.len() <= i {
            table.resize(i + 1, None);
        }
        &mut table[i]
    }

    fn count(&mut self, pkt: &PktEvent) {
        let h = &pkt.header;
        let dir = h.flow.dir.min(1);
        let ts = h.ts_ns;
        match self.slot(h.flow.shard, h.flow.slot) {
            Some(c) if c.id == h.flow.id => {}
            Some(_) => self.flows_overwritten += 1,
            None => self.flows_open += 1,
        }
        let entry = self.slot(h.flow.shard, h.flow.slot);
        let c = match entry {
            Some(c) if c.id == h.flow.id => c,
            _ => entry.insert(FlowCounters::new(h.flow.id, ts)),
        };
        if ts < c.last_ts {
            c.monotonic = false;
        }
        c.last_ts = ts;
        let d = &mut c.dirs[usize::from(dir)];
        d.pkts += 1;
        d.frame_bytes += u64::from(pkt.wire_len);
        d.ip_bytes += u64::from(pkt.ip_len);
        d.payload_bytes += u64::from(pkt.payload_len);
        d.tcp_flags |= pkt.tcp_flags;
        if pkt.tcp_flags & (SYN | ACK) == SYN && c.first_syn.is_none() {
            c.first_syn = Some(dir);
        }
        if pkt.tcp_flags & (SYN | ACK) == SYN | ACK && c.first_synack.is_none() {
            c.first_synack = Some(dir);
        }
    }

    fn end(&mut self, flow: &FlowEvent) {
        let h = &flow.header;
        let Some(c) = self.slot(h.flow.shard, h.flow.slot).take().filter(|c| c.id == h.flow.id) else {
            return; // no packet of this flow was delivered (e.g. a subscription without PKT)
        };
        self.flows_open -= 1;
        self.flows_written += 1;
        // The client's direction: 0 when the originator is the client.
        let (client, client_by) = match (c.first_syn, c.first_synack) {
            (Some(d), _) => (d, "syn"),
            (None, Some(d)) => (1 - d, "synack"),
            (None, None) => (0, "first"),
        };
        let (cs, sc) = (c.dirs[usize::from(client)], c.dirs[usize::from(1 - client)]);
        let t = &flow.tuple;
        // Written field by field into a reused buffer: one line per flow, no allocation (every
        // value is a number or a name that needs no JSON escaping).
        let tcp = t.ip_proto == mbox_abi::ip_proto::TCP;
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let _ = write!(
            line,
            r#"{{"flow_id":{},"proto":"{}","vlan":{},"client_ip":"{}","client_port":{},"server_ip":"{}","server_port":{},"client_by":"{}","c2s":"#,
            c.id,
            proto_name(t.ip_proto),
            t.vlan,
            t.addr(usize::from(client)),
            t.ports[usize::from(client)],
            t.addr(usize::from(1 - client)),
            t.ports[usize::from(1 - client)],
            client_by
        );
        write_dir(&mut line, cs, tcp);
        line.push_str(r#","s2c":"#);
        write_dir(&mut line, sc, tcp);
        let _ = write!(
            line,
            r#","first_ts":"{}","last_ts":"{}","ts_monotonic":{},"end_reason":"{}"}}"#,
            ts_epoch(c.first_ts),
            ts_epoch(c.last_ts),
            c.monotonic,
            reason_name(flow.reason)
        );
        self.out.line(&line);
        self.line = line;
    }
}

/// One direction's counters as a JSON object.
fn write_dir(line: &mut String, d: Dir, tcp: bool) {
    let _ = write!(
        line,
        r#"{{"pkts":{},"frame_bytes":{},"ip_bytes":{},"payload_bytes":{},"tcp_flags":"{}"}}"#,
        d.pkts,
        d.frame_bytes,
        d.ip_bytes,
        d.payload_bytes,
        if tcp { tcp_flag_letters(d.tcp_flags) } else { "-".into() }
    );
}

impl NetworkFunction for FlowStats {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        if let Some(pkt) = event.view::<PktEvent>() {
            if pkt.header.flow.is_some() {
                self.count(pkt);
            }
        } else if let Some(flow) = event.view::<FlowEvent>() {
            self.end(flow);
        }
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

    /// Every open flow's counters, so that a reloaded flow-stats writes whole flows.
    fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        // What this instance wrote is on disk before the new one appends.
        self.out.finish()?;
        Ok(Some(state::save(&self.flows)))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        state::restore(bytes, &mut self.flows, self.flow_slots)?;
        self.flows_open = self.flows.iter().flatten().filter(|c| c.is_some()).count() as u64;
        Ok(())
    }

    fn counters(&self, out: &mut Counters<'_>) {
        out.set("flows_written", self.flows_written);
        out.set("flows_open", self.flows_open);
        out.set("flows_overwritten", self.flows_overwritten);
    }
}

/// Saved state as a reload hands it over, restored into an instance of a run with `shards`
/// shards of `flow_slots` slots that has seen nothing yet, then saved again. For the fuzz
/// targets (mbox-fuzz): whatever the bytes, they are refused or taken without a panic, and
/// what is taken saves to bytes that restore to the same.
#[doc(hidden)]
pub fn restore_then_save(bytes: &[u8], shards: usize, flow_slots: usize) -> Result<Vec<u8>, String> {
    let mut flows = vec![Vec::new(); shards];
    state::restore(bytes, &mut flows, flow_slots)?;
    Ok(state::save(&flows))
}

/// The counters of open flows as bytes: a version byte, the shard count, then per flow its
/// shard, slot and counters, little-endian.
mod state {
    use super::{Dir, FlowCounters};

    const VERSION: u8 = 1;
    /// shard, slot, id, first/last ts, monotonic, first_syn, first_synack, 2 directions.
    const FLOW_BYTES: usize = 2 + 4 + 8 * 3 + 3 + 2 * (8 * 4 + 1);

    pub fn save(flows: &[Vec<Option<FlowCounters>>]) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&(flows.len() as u32).to_le_bytes());
        for (shard, table) in flows.iter().enumerate() {
            for (slot, c) in table.iter().enumerate() {
                let Some(c) = c else { continue };
                out.extend_from_slice(&(shard as u16).to_le_bytes());
                out.extend_from_slice(&(slot as u32).to_le_bytes());
                for v in [c.id, c.first_ts, c.last_ts] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                let dir = |d: Option<u8>| d.unwrap_or(0xff);
                out.extend_from_slice(&[u8::from(c.monotonic), dir(c.first_syn), dir(c.first_synack)]);
                for d in &c.dirs {
                    for v in [d.pkts, d.frame_bytes, d.ip_bytes, d.payload_bytes] {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                    out.push(d.tcp_flags);
                }
            }
        }
        out
    }

    /// Refuses state that does not fit this run (`flow_slots` per shard) rather than trust it.
    pub fn restore(bytes: &[u8], flows: &mut [Vec<Option<FlowCounters>>], flow_slots: usize) -> Result<(), String> {
        let (&version, rest) = bytes.split_first().ok_or("empty state")?;
        if version != VERSION {
            return Err(format!("state version {version}, this build reads {VERSION}"));
        }
        let (shards, mut rest) = rest.split_first_chunk::<4>().ok_or("state cut short")?;
        let shards = u32::from_le_bytes(*shards) as usize;
        if shards != flows.len() {
            return Err(format!("state of {shards} shards, this run has {}", flows.len()));
        }
        if rest.len() % FLOW_BYTES != 0 {
            return Err("state cut short".into());
        }
        while !rest.is_empty() {
            let (flow, next) = rest.split_at(FLOW_BYTES);
            rest = next;
            let mut at = 0;
            let mut take = |n: usize| {
                let mut word = [0u8; 8];
                word[..n].copy_from_slice(&flow[at..at + n]);
                at += n;
                u64::from_le_bytes(word)
            };
            let (shard, slot) = (take(2) as usize, take(4) as usize);
            let (id, first_ts, last_ts) = (take(8), take(8), take(8));
            let (monotonic, first_syn, first_synack) = (take(1) == 1, take(1) as u8, take(1) as u8);
            let mut dirs = [Dir::default(); 2];
            for d in &mut dirs {
                *d = Dir { pkts: take(8), frame_bytes: take(8), ip_bytes: take(8), payload_bytes: take(8), tcp_flags: take(1) as u8 };
            }
            let table = flows.get_mut(shard).ok_or("a flow of a shard this run does not have")?;
            if slot >= flow_slots {
                return Err(format!("a flow in slot {slot}, this run has {flow_slots} per shard"));
            }
            if [first_syn, first_synack].iter().any(|&d| d > 1 && d != 0xff) {
                return Err("a flow with a direction other than 0 or 1".into());
            }
            if table.len() <= slot {
                table.resize(slot + 1, None);
            }
            let dir = |d: u8| (d != 0xff).then_some(d);
            table[slot] =
                Some(FlowCounters { id, dirs, first_ts, last_ts, monotonic, first_syn: dir(first_syn), first_synack: dir(first_synack) });
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn counters_survive_a_save_and_restore_and_bad_state_is_refused() {
            let mut c = FlowCounters::new(42, 1_000);
            c.dirs[1] = Dir { pkts: 3, frame_bytes: 300, ip_bytes: 280, payload_bytes: 100, tcp_flags: 0x12 };
            c.first_synack = Some(1);
            c.monotonic = false;
            let flows = vec![vec![None, Some(c)], vec![Some(FlowCounters::new(7, 5))]];
            let bytes = save(&flows);
            let mut back = vec![Vec::new(), Vec::new()];
            restore(&bytes, &mut back, 2).unwrap();
            let got = back[0][1].unwrap();
            assert_eq!((got.id, got.dirs[1].pkts, got.dirs[1].payload_bytes, got.first_synack, got.first_syn), (42, 3, 100, Some(1), None));
            assert!(!got.monotonic && back[0][0].is_none() && back[1][0].unwrap().id == 7);
            assert!(restore(&bytes[..bytes.len() - 1], &mut back, 2).is_err());
            assert!(restore(&[9], &mut back, 2).is_err());
            assert!(restore(&bytes, &mut [Vec::new()], 2).unwrap_err().contains("2 shards"));
            // Hostile state: a slot past the table (would allocate without bound), a direction
            // that would index out of range when the flow ends.
            assert!(restore(&bytes, &mut back, 1).unwrap_err().contains("slot 1"));
            let mut bad = bytes.clone();
            let syn_at = 1 + 4 + 2 + 4 + 24 + 1;
            bad[syn_at] = 7;
            assert!(restore(&bad, &mut back, 2).unwrap_err().contains("direction"));
        }
    }
}

impl Plugin for FlowStats {
    const INFO: PluginInfo = PluginInfo {
        name: "flow-stats",
        version: env!("CARGO_PKG_VERSION"),
        description: "per-flow, per-direction packet and byte counters as JSON lines at flow end",
        subscribes: &["PKT", "FLOW/TCP/TERMINATE", "FLOW/UDP/TERMINATE", "FLOW/IP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };
    const OUTPUTS: &'static [&'static str] = &["output"];

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["output"])?;
        let path = args.string("output", "-")?;
        let out = LineWriter::open(&path, init.replacing).map_err(|e| format!("cannot open output `{path}`: {e}"))?;
        Ok(FlowStats {
            out,
            line: String::new(),
            flows: (0..init.shards).map(|_| Vec::new()).collect(),
            flow_slots: init.flow_slots as usize,
            flows_written: 0,
            flows_open: 0,
            flows_overwritten: 0,
        })
    }
}

export_nf!(FlowStats);
