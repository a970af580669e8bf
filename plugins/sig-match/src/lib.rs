//! sig-match: a signature IDS on mbox's reassembled streams. It loads rules in a subset of
//! Suricata's syntax (see mbox-sig; rules it cannot support are counted and the first reasons
//! printed at load), recognises HTTP, TLS, SSH, SMTP and DNS, matches the rules against each
//! direction's stream (across segment boundaries) and the protocols' buffers, and publishes
//! `ALERT/SIG_MATCH` (`mbox_abi::SigMatchEvent`) once per rule, flow and direction.
//!
//! Arguments: `rules` (a rule file; required); `vars` (a table overriding address and port
//! variables, e.g. `{ HOME_NET = "any" }`; names ending in `_PORTS` are ports);
//! `stream_depth` (stream bytes inspected per direction, default 1 MiB as Suricata's
//! `stream.reassembly.depth`); `body_limit` (HTTP body bytes, default 100 KiB); `midstream`
//! (inspect connections picked up without a handshake, default false as in Suricata);
//! `memory_limit` (stream bytes kept by all flows together, default 256 MiB: beyond it, new
//! directions are not inspected, and the bytes are counted).

pub mod inspect;

use inspect::{Endpoints, FlowInspection, Hit, Matcher, Settings};
use mbox_abi::kit::{Args, PublishQueue};
use mbox_abi::{
    builtin, export_nf, AlertEvent, EventHeader, EventType, FlowEvent, FlowTuple, Host, NetworkFunction, NfInit, PktEvent, Plugin,
    PluginInfo, SigMatchEvent, StreamDataEvent, StreamGapEvent, TcpSnapshot, Verdict, SIG_MATCH_PATH, TCP_MIDSTREAM,
};
use mbox_sig::{parse_rules, Vars};

/// Per flow: the inspection state, the tuple to report and when the flow started.
struct Tracked {
    inspection: FlowInspection,
    tuple: FlowTuple,
    start_ns: u64,
}

pub struct SigMatch {
    matcher: Matcher,
    alert_type: EventType,
    /// By shard, then flow slot.
    flows: Vec<Vec<Option<Box<Tracked>>>>,
    /// Alerts waiting for room in the host's queue.
    queue: PublishQueue<SigMatchEvent>,
    /// Matches of the current event, reused.
    hits: Vec<Hit>,
    /// Alerts of flows whose end was not seen, waiting for a moment to publish.
    stale: Vec<SigMatchEvent>,
}

impl SigMatch {
    /// Takes the state of the flow an event belongs to out of the table, creating it if the flow
    /// is new (or the slot holds an older flow whose end this NF did not see). Put it back with
    /// [`SigMatch::put`].
    fn take(&mut self, header: &EventHeader, tuple: &FlowTuple, start_ns: u64, tcp: bool, midstream: bool) -> Box<Tracked> {
        let flow = header.flow;
        let shard = usize::from(flow.shard).min(self.flows.len() - 1);
        let slot = flow.slot as usize;
        let table = &mut self.flows[shard];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        match table[slot].take() {
            Some(t) if t.inspection.id == flow.id => t,
            old => {
                if let Some(old) = old {
                    self.finish_stale(header, *old);
                }
                let ends = Endpoints { addrs: [tuple.addr(0), tuple.addr(1)], ports: tuple.ports };
                Box::new(Tracked { inspection: self.matcher.flow(flow.id, ends, tcp, midstream), tuple: *tuple, start_ns })
            }
        }
    }

    /// An older flow in a slot whose end this NF did not see (its TERMINATE was lost): what it
    /// still had pending is inspected, and alerts go out under that flow's identity. They are
    /// published with the next event that lets this NF publish.
    fn finish_stale(&mut self, cause: &EventHeader, old: Tracked) {
        let Tracked { inspection, tuple, start_ns } = old;
        let mut header = *cause;
        header.flow.id = inspection.id;
        let mut hits = Vec::new();
        self.matcher.end(inspection, &mut |h| hits.push(h));
        for h in hits {
            let event = self.alert(&header, &tuple, start_ns, h);
            self.stale.push(event);
        }
    }

    fn put(&mut self, header: &EventHeader, tracked: Box<Tracked>) {
        let shard = usize::from(header.flow.shard).min(self.flows.len() - 1);
        self.flows[shard][header.flow.slot as usize] = Some(tracked);
    }

    fn end(&mut self, header: &EventHeader, host: &mut Host<'_>) {
        let flow = header.flow;
        let shard = usize::from(flow.shard).min(self.flows.len() - 1);
        let Some(table) = self.flows.get_mut(shard) else { return };
        let Some(entry) = table.get_mut(flow.slot as usize) else { return };
        let Some(tracked) = entry.take_if(|t| t.inspection.id == flow.id) else { return };
        let Tracked { inspection, tuple, start_ns } = *tracked;
        let mut hits = Vec::new();
        self.matcher.end(inspection, &mut |h| hits.push(h));
        for h in hits {
            self.publish(header, &tuple, start_ns, h, host);
        }
    }

    fn publish(&mut self, cause: &EventHeader, tuple: &FlowTuple, start_ns: u64, hit: Hit, host: &mut Host<'_>) {
        let event = self.alert(cause, tuple, start_ns, hit);
        self.queue.publish(host, event);
    }

    /// The event for a match.
    fn alert(&self, cause: &EventHeader, tuple: &FlowTuple, start_ns: u64, hit: Hit) -> SigMatchEvent {
        let rule = &self.matcher.rules()[hit.rule as usize];
        SigMatchEvent {
            alert: AlertEvent::new::<SigMatchEvent>(self.alert_type, cause, rule.sid, 3, &rule.msg),
            tuple: *tuple,
            rev: rule.rev,
            dir: hit.dir,
            app_proto: hit.app,
            _reserved: [0; 2],
            stream_offset: hit.stream_offset,
            flow_start_ns: start_ns,
        }
    }

    /// Publishes what an inspection step found.
    fn report(&mut self, cause: &EventHeader, tracked: &Tracked, hits: &mut Vec<Hit>, host: &mut Host<'_>) {
        for h in hits.drain(..) {
            self.publish(cause, &tracked.tuple, tracked.start_ns, h, host);
        }
    }

    fn on_stream_data(&mut self, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let header = ev.tcp.flow.header;
        let snapshot = &ev.tcp.snapshot;
        let midstream = snapshot.flags & TCP_MIDSTREAM != 0;
        let mut tracked = self.take(&header, &ev.tcp.flow.tuple, flow_start(&ev.tcp.flow), true, midstream);
        let mut hits = std::mem::take(&mut self.hits);
        self.matcher
            .stream_data(&mut tracked.inspection, header.flow.dir, ev.offset, ev.bytes(), is_established(snapshot), &mut |h| hits.push(h));
        self.report(&header, &tracked, &mut hits, host);
        self.hits = hits;
        self.put(&header, tracked);
    }

    fn on_gap(&mut self, ev: &StreamGapEvent) {
        let header = ev.tcp.flow.header;
        let midstream = ev.tcp.snapshot.flags & TCP_MIDSTREAM != 0;
        let mut tracked = self.take(&header, &ev.tcp.flow.tuple, flow_start(&ev.tcp.flow), true, midstream);
        self.matcher.gap(&mut tracked.inspection, header.flow.dir);
        self.put(&header, tracked);
    }

    fn on_datagram(&mut self, pkt: &PktEvent, host: &mut Host<'_>) {
        let header = pkt.header;
        if !header.flow.is_some() {
            return;
        }
        let (Some(src), Some(dst)) = (pkt.src_addr(), pkt.dst_addr()) else { return };
        let dir = header.flow.dir;
        let (addrs, ports) = if dir == 0 { ([src, dst], [pkt.src_port, pkt.dst_port]) } else { ([dst, src], [pkt.dst_port, pkt.src_port]) };
        let tuple = FlowTuple::new(pkt.ip_proto, pkt.vlan, addrs, ports);
        let mut tracked = self.take(&header, &tuple, header.ts_ns, false, false);
        let mut hits = std::mem::take(&mut self.hits);
        self.matcher.datagram(&mut tracked.inspection, dir, pkt.payload(), &mut |h| hits.push(h));
        self.report(&header, &tracked, &mut hits, host);
        self.hits = hits;
        self.put(&header, tracked);
    }
}

/// When the flow's first packet was seen.
fn flow_start(flow: &FlowEvent) -> u64 {
    let starts = flow.stats.iter().map(|s| s.first_ts_ns).filter(|&t| t > 0);
    starts.min().unwrap_or(flow.header.ts_ns)
}

/// The handshake is over (no side is still opening the connection).
fn is_established(s: &TcpSnapshot) -> bool {
    use mbox_abi::tcp_state::{LISTEN, SYN_RECEIVED, SYN_SENT};
    s.sides.iter().all(|side| !matches!(side.state, LISTEN | SYN_SENT | SYN_RECEIVED))
}

impl NetworkFunction for SigMatch {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        self.queue.retry(host);
        for stale in std::mem::take(&mut self.stale) {
            self.queue.publish(host, stale);
        }
        if let Some(ev) = event.view::<StreamDataEvent>() {
            self.on_stream_data(ev, host);
        } else if let Some(ev) = event.view::<StreamGapEvent>() {
            // The bytes after a gap are not where the stream's offsets say: stop inspecting.
            self.on_gap(ev);
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) || event.is_a(builtin::FLOW_UDP_TERMINATE) {
            self.end(event, host);
        } else if let Some(pkt) = event.view::<PktEvent>() {
            self.on_datagram(pkt, host);
        }
        Verdict::Pass
    }

    fn on_finish(&mut self) -> Result<(), String> {
        let s = self.matcher.stats;
        let lost = self.queue.dropped + (self.queue.waiting() + self.stale.len()) as u64;
        eprintln!(
            "sig-match: {} alerts; {} stream bytes inspected, {} beyond the depth, {} over the memory limit; {} directions stopped at a gap; {} connections picked up mid-stream not inspected{}",
            s.alerts,
            s.bytes_inspected,
            s.bytes_beyond_depth,
            s.bytes_over_memory,
            s.directions_with_gaps,
            s.midstream_flows_skipped,
            if lost > 0 { format!("; {lost} alerts not published (the host's queue stayed full)") } else { String::new() }
        );
        Ok(())
    }
}

impl Plugin for SigMatch {
    const INFO: PluginInfo = PluginInfo {
        name: "sig-match",
        version: env!("CARGO_PKG_VERSION"),
        description: "signature IDS: Suricata-subset rules on reassembled streams and HTTP/TLS/SSH/DNS buffers",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/GAP", "FLOW/TCP/TERMINATE", "PKT/UDP", "FLOW/UDP/TERMINATE"],
        publishes: &[SIG_MATCH_PATH],
        read_only: true,
        outputs: &[],
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(init.args_json.as_str(), &["rules", "vars", "stream_depth", "body_limit", "midstream", "memory_limit"])?;
        let path = args.string("rules", "")?;
        if path.is_empty() {
            return Err("argument `rules` (a rule file) is required".into());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read rules `{path}`: {e}"))?;
        let mut vars = Vars::default();
        for (name, value) in args.string_map("vars")? {
            let table = if name.ends_with("_PORTS") { &mut vars.ports } else { &mut vars.addresses };
            table.insert(name, value);
        }
        let loaded = parse_rules(&text, &vars);
        let reasons: Vec<String> = loaded.refused.iter().take(3).map(|e| e.to_string()).collect();
        eprintln!(
            "sig-match: {path}: {} rules loaded, {} not supported{}",
            loaded.rules.len(),
            loaded.refused.len(),
            if reasons.is_empty() { String::new() } else { format!(" (first: {})", reasons.join("; ")) }
        );
        let settings = Settings {
            stream_depth: args.u64("stream_depth", 1 << 20)?.min(1 << 30) as usize,
            body_limit: args.u64("body_limit", 100 << 10)?.min(1 << 30) as usize,
            midstream: args.bool("midstream", false)?,
            memory_limit: args.u64("memory_limit", 256 << 20)?.min(1 << 40) as usize,
        };
        let alert_type = init.type_of(SIG_MATCH_PATH).ok_or("the host did not register ALERT/SIG_MATCH")?;
        Ok(SigMatch {
            matcher: Matcher::new(loaded.rules, settings),
            alert_type,
            flows: (0..init.shards.max(1)).map(|_| Vec::new()).collect(),
            queue: PublishQueue::new(1 << 16),
            hits: Vec::new(),
            stale: Vec::new(),
        })
    }
}

export_nf!(SigMatch);
