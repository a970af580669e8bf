//! sig-match: a signature IDS on mbox's reassembled streams. It loads rules in a subset of
//! Suricata's syntax (see mbox-sig; rules it cannot support are counted and the first reasons
//! printed at load), recognises HTTP, TLS, SSH, SMTP and DNS, matches the rules against each
//! direction's stream (across segment boundaries) and the protocols' buffers, and publishes
//! `ALERT/SIG_MATCH` (`mbox_abi::SigMatchEvent`) once per rule, flow and direction. TCP packet
//! rules (`flags`, `dsize`, `tcp-pkt`) are checked on `PKT/TCP`: a flow no packet rule can
//! match (any more) is unsubscribed from its packets, and a rule set without packet rules
//! unsubscribes every flow's at once.
//!
//! Arguments: `rules` (a rule file or a list of them, loaded in order into one set; a sid is
//! taken once, a later duplicate refused naming both); `vars` (a table overriding address and
//! port variables, e.g. `{ HOME_NET = "any" }`; names ending in `_PORTS` are ports);
//! `port_vars` (port variables whatever their names); `classification` (a
//! classification.config giving classtypes their priority, the alerts' severity; default the
//! stock list);
//! `stream_depth` (stream bytes inspected per direction, default 1 MiB as Suricata's
//! `stream.reassembly.depth`); `body_limit` (HTTP body bytes, default 100 KiB); `midstream`
//! (inspect connections picked up without a handshake, default false as in Suricata);
//! `memory_limit` (stream bytes kept by all flows together, default 256 MiB: beyond it, new
//! directions are not inspected, and the bytes are counted); `inspect_window` (stream bytes a
//! match may span, default 64 KiB: each direction keeps that much of its stream). What is kept
//! and the work spent per byte are bounded: see [`inspect`].

mod http_fields;
pub mod inspect;

use inspect::{Endpoints, FlowInspection, Hit, Matcher, Settings, TcpPacket};
use mbox_abi::kit::{Args, PublishQueue};
use mbox_abi::{
    builtin, export_nf, AlertEvent, Counters, EventHeader, EventType, FlowEvent, FlowQuicEvent, FlowRef, FlowTcpEvent, FlowTuple, Host,
    LogLevel, NetworkFunction, NfInit, PktEvent, PktQuicEvent, PktTcpEvent, Plugin, PluginInfo, SigMatchEvent, StreamDataEvent,
    StreamEndEvent, StreamGapEvent, TcpSnapshot, UnsubscribeStatus, Verdict, QUIC_SHORT, QUIC_VERSION_NEGOTIATION, SIG_MATCH_PATH,
    TCP_MIDSTREAM,
};
use mbox_sig::threshold::Thresholds;
use mbox_sig::{Classifications, Loaded, RuleSet, Vars};

/// Per flow: the inspection state, the tuple to report and when the flow started.
struct Tracked {
    inspection: FlowInspection,
    tuple: FlowTuple,
    start_ns: u64,
    /// The host was asked to stop this flow's `PKT/TCP` for this NF.
    packets_stopped: bool,
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
    /// The warning that memory_limit was reached went to the host's log.
    memory_warned: bool,
    /// Rules' thresholds: how many of their matches alert.
    thresholds: Thresholds,
    /// By shard: the host was told that no flow's `PKT/TCP` is wanted (no packet rules).
    packets_declined: Vec<bool>,
}

/// What an event says about the flow it belongs to, for starting its inspection.
struct FlowFacts<'a> {
    tuple: &'a FlowTuple,
    start_ns: u64,
    tcp: bool,
    midstream: bool,
}

impl SigMatch {
    /// Takes the state of the flow an event belongs to out of the table, creating it if the flow
    /// is new (or the slot holds an older flow whose end this NF did not see). Put it back with
    /// [`SigMatch::put`].
    fn take(&mut self, header: &EventHeader, facts: &FlowFacts<'_>) -> Box<Tracked> {
        let flow = header.flow;
        let shard = self.shard_index(flow.shard);
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
                let t = facts.tuple;
                let ends = Endpoints { addrs: [t.addr(0), t.addr(1)], ports: t.ports };
                let inspection = self.matcher.flow(flow.id, ends, facts.tcp, facts.midstream);
                Box::new(Tracked { inspection, tuple: *t, start_ns: facts.start_ns, packets_stopped: false })
            }
        }
    }

    /// The state of the flow an event belongs to, if the table has it.
    fn tracked_mut(&mut self, header: &EventHeader) -> Option<&mut Tracked> {
        let flow = header.flow;
        let shard = self.shard_index(flow.shard);
        self.flows[shard].get_mut(flow.slot as usize)?.as_deref_mut().filter(|t| t.inspection.id == flow.id)
    }

    /// The table of shard `shard` (the last for a shard number beyond them).
    fn shard_index(&self, shard: u16) -> usize {
        usize::from(shard).min(self.flows.len() - 1)
    }

    /// An older flow in a slot whose end this NF did not see (its TERMINATE was lost): what it
    /// still had pending is inspected, and alerts go out under that flow's identity. They are
    /// published with the next event that lets this NF publish.
    fn finish_stale(&mut self, cause: &EventHeader, old: Tracked) {
        let Tracked { inspection, tuple, start_ns, .. } = old;
        let mut header = *cause;
        header.flow.id = inspection.id;
        let mut hits = Vec::new();
        self.matcher.end(inspection, &mut |h| hits.push(h));
        for h in hits {
            if let Some(event) = self.alert(&header, &tuple, start_ns, h) {
                self.stale.push(event);
            }
        }
    }

    fn put(&mut self, header: &EventHeader, tracked: Box<Tracked>) {
        let shard = self.shard_index(header.flow.shard);
        self.flows[shard][header.flow.slot as usize] = Some(tracked);
    }

    fn end(&mut self, header: &EventHeader, host: &mut Host<'_>) {
        let flow = header.flow;
        let shard = self.shard_index(flow.shard);
        let Some(table) = self.flows.get_mut(shard) else { return };
        let Some(entry) = table.get_mut(flow.slot as usize) else { return };
        let Some(tracked) = entry.take_if(|t| t.inspection.id == flow.id) else { return };
        let Tracked { inspection, tuple, start_ns, .. } = *tracked;
        let mut hits = Vec::new();
        self.matcher.end(inspection, &mut |h| hits.push(h));
        for h in hits {
            self.publish(header, &tuple, start_ns, h, host);
        }
    }

    fn publish(&mut self, cause: &EventHeader, tuple: &FlowTuple, start_ns: u64, hit: Hit, host: &mut Host<'_>) {
        if let Some(event) = self.alert(cause, tuple, start_ns, hit) {
            self.queue.publish(host, event);
        }
    }

    /// The event for a match, unless the rule's threshold keeps it from alerting.
    fn alert(&mut self, cause: &EventHeader, tuple: &FlowTuple, start_ns: u64, hit: Hit) -> Option<SigMatchEvent> {
        let rule = &self.matcher.rules()[hit.rule as usize];
        if let Some(t) = &rule.threshold {
            // The match's source is the sender of the bytes that matched.
            let (src, dst) = (tuple.addr(usize::from(hit.dir.min(1))), tuple.addr(usize::from(hit.dir.min(1) ^ 1)));
            if !self.thresholds.alerts(hit.rule, t, src, dst, cause.ts_ns) {
                return None;
            }
        }
        Some(SigMatchEvent {
            alert: AlertEvent::new::<SigMatchEvent>(self.alert_type, cause, rule.sid, rule.info.severity, &rule.msg),
            tuple: *tuple,
            rev: rule.rev,
            dir: hit.dir,
            app_proto: hit.app,
            _reserved: [0; 2],
            stream_offset: hit.stream_offset,
            flow_start_ns: start_ns,
        })
    }

    /// Publishes what an inspection step found.
    fn report(&mut self, cause: &EventHeader, tracked: &Tracked, hits: &mut Vec<Hit>, host: &mut Host<'_>) {
        for h in hits.drain(..) {
            self.publish(cause, &tracked.tuple, tracked.start_ns, h, host);
        }
    }

    /// Runs `step` on the inspection of the flow an event belongs to (creating it if new), and
    /// publishes what it found.
    fn inspect<R>(
        &mut self,
        header: &EventHeader,
        facts: FlowFacts<'_>,
        host: &mut Host<'_>,
        step: impl FnOnce(&mut Matcher, &mut FlowInspection, &mut dyn FnMut(Hit)) -> R,
    ) -> R {
        let mut tracked = self.take(header, &facts);
        let mut hits = std::mem::take(&mut self.hits);
        let result = step(&mut self.matcher, &mut tracked.inspection, &mut |h| hits.push(h));
        self.report(header, &tracked, &mut hits, host);
        self.hits = hits;
        self.put(header, tracked);
        result
    }

    /// [`SigMatch::inspect`] for an event of a TCP connection.
    fn inspect_tcp(
        &mut self,
        tcp: &FlowTcpEvent,
        host: &mut Host<'_>,
        step: impl FnOnce(&mut Matcher, &mut FlowInspection, &mut dyn FnMut(Hit)),
    ) {
        let midstream = tcp.snapshot.flags & TCP_MIDSTREAM != 0;
        let facts = FlowFacts { tuple: &tcp.flow.tuple, start_ns: flow_start(&tcp.flow), tcp: true, midstream };
        let sizes = stream_sizes(&tcp.snapshot);
        self.inspect(&tcp.flow.header, facts, host, |m, flow, hit| {
            flow.set_stream_sizes(sizes);
            step(m, flow, hit)
        });
    }

    /// A TCP packet, for the packet rules; a flow none of them can match any more stops
    /// sending its packets here.
    fn on_tcp_packet(&mut self, ev: &PktTcpEvent, host: &mut Host<'_>) {
        let (pkt, header) = (&ev.pkt, ev.pkt.header);
        if !header.flow.is_some() {
            return;
        }
        // The tuple (from the addresses) only for a flow seen first now.
        let tuple = match self.tracked_mut(&header) {
            Some(_) => FlowTuple::default(),
            None => {
                let Some(tuple) = packet_tuple(pkt) else { return };
                tuple
            }
        };
        let midstream = ev.snapshot.flags & TCP_MIDSTREAM != 0;
        let facts = FlowFacts { tuple: &tuple, start_ns: header.ts_ns, tcp: true, midstream };
        let packet = TcpPacket { flags: tcp_flags_byte(pkt), payload: pkt.payload(), established: is_established(&ev.snapshot) };
        let (dir, sizes) = (header.flow.dir, stream_sizes(&ev.snapshot));
        let wanted = self.inspect(&header, facts, host, |m, flow, hit| {
            flow.set_stream_sizes(sizes);
            m.packet(flow, dir, &packet, hit)
        });
        if let Some(tracked) = self.tracked_mut(&header).filter(|t| !wanted && !t.packets_stopped) {
            // Refused for a full queue: asked again at the next packet.
            tracked.packets_stopped = host.unsubscribe(&header.flow, builtin::PKT_TCP) != UnsubscribeStatus::Full;
        }
    }

    fn on_datagram(&mut self, pkt: &PktEvent, host: &mut Host<'_>) {
        let header = pkt.header;
        if !header.flow.is_some() {
            return;
        }
        let Some(tuple) = packet_tuple(pkt) else { return };
        let dir = header.flow.dir;
        let facts = FlowFacts { tuple: &tuple, start_ns: header.ts_ns, tcp: false, midstream: false };
        // A long header's version (a version negotiation's 0 or a short header's none).
        let long = |q: &&PktQuicEvent| q.quic.packet_type != QUIC_SHORT && q.quic.packet_type != QUIC_VERSION_NEGOTIATION;
        let quic_version = pkt.header.view::<PktQuicEvent>().filter(long).map(|q| q.quic.version);
        self.inspect(&header, facts, host, |m, flow, hit| m.datagram(flow, dir, pkt.payload(), quic_version, hit));
    }
}

/// The tuple of the flow a packet belongs to, its originator first.
fn packet_tuple(pkt: &PktEvent) -> Option<FlowTuple> {
    let (src, dst) = (pkt.src_addr()?, pkt.dst_addr()?);
    let (addrs, ports) =
        if pkt.header.flow.dir == 0 { ([src, dst], [pkt.src_port, pkt.dst_port]) } else { ([dst, src], [pkt.dst_port, pkt.src_port]) };
    Some(FlowTuple::new(pkt.ip_proto, pkt.vlan, addrs, ports))
}

/// The TCP header's whole flags byte (the event's `tcp_flags` lacks CWR and ECE).
fn tcp_flags_byte(pkt: &PktEvent) -> u8 {
    pkt.bytes().get(pkt.l4_offset as usize + 13).copied().unwrap_or(pkt.tcp_flags)
}

/// Each side's stream size as Suricata's `stream_size` counts it: the next sequence number
/// less the initial one (`[client, server]`; 0 for a side not seen yet).
fn stream_sizes(s: &TcpSnapshot) -> [u32; 2] {
    s.sides.map(|side| side.next_seq.wrapping_sub(side.isn))
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
        let shard = self.shard_index(event.flow.shard);
        if !self.packets_declined[shard] && !self.matcher.has_packet_rules() {
            // Without packet rules, no flow's packets are of use: said once per shard, at its
            // first event (a full queue: at the next one).
            let every = FlowRef::every_flow(event.flow.shard);
            self.packets_declined[shard] = host.unsubscribe(&every, builtin::PKT_TCP) != UnsubscribeStatus::Full;
        }
        for stale in std::mem::take(&mut self.stale) {
            self.queue.publish(host, stale);
        }
        if let Some(ev) = event.view::<StreamDataEvent>() {
            let (dir, established) = (ev.tcp.flow.header.flow.dir, is_established(&ev.tcp.snapshot));
            self.inspect_tcp(&ev.tcp, host, |m, flow, hit| m.stream_data(flow, dir, ev.offset, ev.bytes(), established, hit));
        } else if let Some(ev) = event.view::<StreamGapEvent>() {
            // The bytes after a gap are not where the stream's offsets say: stop inspecting.
            let dir = ev.tcp.flow.header.flow.dir;
            self.inspect_tcp(&ev.tcp, host, |m, flow, hit| m.gap(flow, dir, hit));
        } else if let Some(ev) = event.view::<StreamEndEvent>() {
            // Nothing more of this direction will come: decide it and let its bytes go now,
            // not when the flow's TERMINATE comes (after the close linger time).
            let dir = ev.tcp.flow.header.flow.dir;
            self.inspect_tcp(&ev.tcp, host, |m, flow, hit| m.stream_end(flow, dir, hit));
        } else if event.is_a(builtin::FLOW_TCP_TERMINATE) || event.is_a(builtin::FLOW_UDP_TERMINATE) {
            self.end(event, host);
        } else if let Some(q) = event.view::<FlowQuicEvent>() {
            let facts = FlowFacts { tuple: &q.flow.tuple, start_ns: flow_start(&q.flow), tcp: false, midstream: false };
            self.inspect(&q.flow.header, facts, host, |m, flow, hit| m.quic_first_flight(flow, q.version, q.sni(), hit));
        } else if let Some(pkt) = event.view::<PktTcpEvent>() {
            self.on_tcp_packet(pkt, host);
        } else if let Some(pkt) = event.view::<PktEvent>() {
            self.on_datagram(pkt, host);
        }
        if !self.memory_warned && self.matcher.stats.directions_over_memory > 0 {
            self.memory_warned = true;
            let limit = self.matcher.settings().memory_limit;
            host.log(
                LogLevel::Warn,
                &format!("memory_limit ({limit} bytes) reached: new stream bytes go uninspected (counted as bytes_over_memory)"),
            );
        }
        Verdict::Pass
    }

    fn counters(&self, out: &mut Counters<'_>) {
        let s = &self.matcher.stats;
        for (name, value) in [
            // Matches that alerted: thresholds kept the others (counted below) from it.
            ("alerts", s.alerts.saturating_sub(self.thresholds.suppressed)),
            ("bytes_inspected", s.bytes_inspected),
            ("work", s.work),
            ("bytes_beyond_depth", s.bytes_beyond_depth),
            ("bytes_over_memory", s.bytes_over_memory),
            ("directions_over_memory", s.directions_over_memory),
            ("rules_given_up", s.rules_given_up),
            ("directions_with_gaps", s.directions_with_gaps),
            ("directions_released", s.directions_released),
            ("midstream_flows_skipped", s.midstream_flows_skipped),
            ("packets_inspected", s.packets_inspected),
            ("flows_without_packet_rules", s.flows_without_packet_rules),
            ("kept_bytes", self.matcher.kept_bytes() as u64),
            ("alerts_not_published", self.queue.dropped),
            ("alerts_thresholded", self.thresholds.suppressed),
            ("threshold_untracked", self.thresholds.untracked),
        ] {
            out.set(name, value);
        }
    }

    fn on_finish(&mut self) -> Result<(), String> {
        let s = self.matcher.stats;
        let lost = self.queue.dropped + (self.queue.waiting() + self.stale.len()) as u64;
        eprintln!(
            "sig-match: {} alerts{}; {} stream bytes inspected ({:.1} units of work per byte), {} beyond the depth, {} over the memory limit ({} directions); {} rule checks given up for work; {} directions stopped at a gap; {} connections picked up mid-stream not inspected{}",
            s.alerts.saturating_sub(self.thresholds.suppressed),
            match self.thresholds.suppressed {
                0 => String::new(),
                n => format!(" ({n} more matches kept from alerting by their rules' thresholds)"),
            },
            s.bytes_inspected,
            s.work as f64 / s.bytes_inspected.max(1) as f64,
            s.bytes_beyond_depth,
            s.bytes_over_memory,
            s.directions_over_memory,
            s.rules_given_up,
            s.directions_with_gaps,
            s.midstream_flows_skipped,
            if lost > 0 { format!("; {lost} alerts not published (the host's queue stayed full)") } else { String::new() }
        );
        Ok(())
    }
}

/// The rule set the arguments name: every file of `rules` in order (a sid taken once), with
/// the `vars` overrides and the `classification` file (default: the stock list).
fn load_rules(args: &Args) -> Result<Loaded, String> {
    let files = args.strings("rules")?;
    if files.is_empty() {
        return Err("argument `rules` (a rule file, or a list of them) is required".into());
    }
    let mut set = RuleSet::new(vars_of(args)?, classifications_of(args)?);
    for path in &files {
        set.add_file(std::path::Path::new(path)).map_err(|e| format!("cannot read rules `{path}`: {e}"))?;
    }
    let loaded = set.finish();
    let reasons: Vec<String> = loaded.refused.iter().take(3).map(|e| e.to_string()).collect();
    eprintln!(
        "sig-match: {}: {} rules loaded, {} refused{}",
        files.join(", "),
        loaded.rules.len(),
        loaded.refused.len(),
        if reasons.is_empty() { String::new() } else { format!(" (first: {}; all: mbox rules check)", reasons.join("; ")) }
    );
    Ok(loaded)
}

/// Suricata's stock address and port variables with the `vars` argument's overrides (names
/// ending in `_PORTS` are ports) and `port_vars`' (all ports, as a suricata.yaml's
/// `port-groups`).
pub fn vars_of(args: &Args) -> Result<Vars, String> {
    let mut vars = Vars::default();
    for (name, value) in args.string_map("vars")? {
        let table = if name.ends_with("_PORTS") { &mut vars.ports } else { &mut vars.addresses };
        table.insert(name, value);
    }
    vars.ports.extend(args.string_map("port_vars")?);
    Ok(vars)
}

/// The `classification` argument's file, or the stock list.
pub fn classifications_of(args: &Args) -> Result<Classifications, String> {
    let path = args.string("classification", "")?;
    Classifications::from_file_or_stock(Some(std::path::Path::new(&path)).filter(|_| !path.is_empty()))
}

impl Plugin for SigMatch {
    const INFO: PluginInfo = PluginInfo {
        name: "sig-match",
        version: env!("CARGO_PKG_VERSION"),
        description: "signature IDS: Suricata-subset rules on reassembled streams and HTTP/TLS/SSH/DNS buffers",
        subscribes: &[
            "FLOW/TCP/DATA_RDY",
            "FLOW/TCP/GAP",
            "FLOW/TCP/STREAM_END",
            "FLOW/TCP/TERMINATE",
            "PKT/TCP",
            "PKT/UDP",
            "FLOW/UDP/QUIC",
            "FLOW/UDP/TERMINATE",
        ],
        publishes: &[SIG_MATCH_PATH],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let args = Args::parse(
            init.args_json.as_str(),
            &["rules", "vars", "port_vars", "classification", "stream_depth", "body_limit", "midstream", "memory_limit", "inspect_window"],
        )?;
        let loaded = load_rules(&args)?;
        let settings = Settings {
            stream_depth: args.u64("stream_depth", 1 << 20)?.min(1 << 30) as usize,
            body_limit: args.u64("body_limit", 100 << 10)?.min(1 << 30) as usize,
            midstream: args.bool("midstream", false)?,
            memory_limit: args.u64("memory_limit", 256 << 20)?.min(1 << 40) as usize,
            inspect_window: args.u64("inspect_window", 64 << 10)?.clamp(1 << 10, 1 << 30) as usize,
        };
        let alert_type = init.type_of(SIG_MATCH_PATH).ok_or("the host did not register ALERT/SIG_MATCH")?;
        Ok(SigMatch {
            matcher: Matcher::new(loaded.rules, settings),
            alert_type,
            flows: (0..init.shards.max(1)).map(|_| Vec::new()).collect(),
            queue: PublishQueue::new(1 << 16),
            hits: Vec::new(),
            stale: Vec::new(),
            memory_warned: false,
            thresholds: Thresholds::default(),
            packets_declined: vec![false; init.shards.max(1) as usize],
        })
    }
}

export_nf!(SigMatch);
