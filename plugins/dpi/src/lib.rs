//! dpi: classifies each flow's application protocol — HTTP (with its host), TLS (with its
//! server name), SSH, SMTP, IMAP, POP3 (and their TLS forms), FTP, DNS over TCP and UDP,
//! BitTorrent, QUIC (with the server name of the client's first flight: the stack's
//! `FLOW/UDP/QUIC`), mDNS,
//! LLMNR, SSDP, NetBIOS, DHCP, DHCPv6, STUN, NTP — publishes
//! `FLOW/TYPE` (`mbox_abi::FlowTypeEvent`) once per flow, and then unsubscribes from the flow's
//! data, so that the stack stops reassembling it when no other NF wants its bytes. A flow
//! whose content said nothing is reported at its end with the protocol of its port
//! (confidence `port`), as nDPI guesses.
//!
//! No arguments.

pub mod classify;

use classify::Verdict;
use mbox_abi::kit::{Args, PublishQueue};
use mbox_abi::{
    app, builtin, export_nf, Counters, DirStats, EventHeader, EventType, FlowEvent, FlowQuicEvent, FlowRef, FlowTuple, FlowTypeEvent, Host,
    NetworkFunction, NfInit, PktEvent, PktQuicEvent, Plugin, PluginInfo, StreamDataEvent, UnsubscribeStatus, Verdict as NfVerdict,
    CONFIDENCE_DPI, CONFIDENCE_PORT, FLOW_TYPE_PATH, QUIC_INITIAL, REASON_NONE,
};

/// What dpi keeps per flow until it is classified.
#[derive(Default)]
struct Flow {
    id: u64,
    /// The first bytes of each direction (TCP), up to the classification limit.
    start: [Vec<u8>; 2],
    /// Stream offsets expected next: data elsewhere (a gap) ends the attempt.
    next: [u64; 2],
    /// Published (by content or, at the end, by port).
    done: bool,
    /// The content said "none of mine": wait for the end to guess by port.
    unknown: bool,
    /// Data still comes although this NF is done with it: its unsubscription is to be sent
    /// (again, if the host's queue for it was full).
    unsubscribe: bool,
    /// QUIC: the client sent an Initial; the stack's `FLOW/UDP/QUIC` will say what its first
    /// flight named (the datagrams meanwhile say nothing more).
    quic_pending: bool,
}

pub struct Dpi {
    flow_type: EventType,
    /// By shard, then flow slot.
    flows: Vec<Vec<Flow>>,
    /// Classifications waiting for room in the host's queue.
    queue: PublishQueue<FlowTypeEvent>,
    counts: [u64; 256],
}

impl Dpi {
    fn flow(&mut self, flow: FlowRef) -> &mut Flow {
        let shard = usize::from(flow.shard).min(self.flows.len() - 1);
        let table = &mut self.flows[shard];
        let slot = flow.slot as usize;
        if table.len() <= slot {
            table.resize_with(slot + 1, Flow::default);
        }
        let f = &mut table[slot];
        if f.id != flow.id {
            *f = Flow { id: flow.id, ..Flow::default() };
        }
        f
    }

    fn publish(&mut self, flow: &FlowEvent, app: u8, confidence: u8, host_name: &[u8], host: &mut Host<'_>) {
        self.counts[usize::from(app)] += 1;
        let ev = FlowTypeEvent::new(self.flow_type, flow, app, confidence, host_name);
        self.queue.publish(host, ev);
    }

    fn on_stream_data(&mut self, ev: &StreamDataEvent, host: &mut Host<'_>) {
        let flow_ev = &ev.tcp.flow;
        let r = flow_ev.header.flow;
        let dir = usize::from(r.dir.min(1));
        let server_port = flow_ev.tuple.ports[1];
        let f = self.flow(r);
        if f.done || f.unknown {
            // Data after this NF let go of the flow: events already on their way, or an
            // unsubscription the host could not take; ask again in the latter case.
            if std::mem::take(&mut f.unsubscribe) && host.unsubscribe(&r, builtin::FLOW_TCP_DATA_RDY) == UnsubscribeStatus::Full {
                self.flow(r).unsubscribe = true;
            }
            return;
        }
        if ev.offset != f.next[dir] {
            // A gap before the protocol showed: give up on the content.
            f.unknown = true;
        } else {
            f.next[dir] += u64::from(ev.len);
            let room = classify::TCP_LIMIT.saturating_sub(f.start[dir].len());
            f.start[dir].extend_from_slice(&ev.bytes()[..room.min(ev.bytes().len())]);
            match classify::tcp(&f.start[0], &f.start[1], server_port) {
                Verdict::Known(app, host_name) => {
                    f.done = true;
                    self.publish(flow_ev, app, CONFIDENCE_DPI, &host_name, host);
                }
                Verdict::Unknown => f.unknown = true,
                Verdict::Undecided => return,
            }
        }
        // Classified, or hopeless: this NF needs no more of the flow's bytes (nor its buffers).
        let full = host.unsubscribe(&r, builtin::FLOW_TCP_DATA_RDY) == UnsubscribeStatus::Full;
        let f = self.flow(r);
        f.unsubscribe = full;
        f.start = Default::default();
    }

    fn on_datagram(&mut self, pkt: &PktEvent, host: &mut Host<'_>) {
        let r = pkt.header.flow;
        if !r.is_some() {
            return;
        }
        let f = self.flow(r);
        if f.done {
            return;
        }
        if f.quic_pending {
            return; // the first flight's names come with FLOW/UDP/QUIC
        }
        let initial = pkt.header.view::<PktQuicEvent>().is_some_and(|q| q.quic.packet_type == QUIC_INITIAL);
        if r.dir == 0 && initial {
            f.quic_pending = true;
            return;
        }
        match classify::udp(pkt.payload(), pkt.src_port, pkt.dst_port) {
            Verdict::Known(app, host_name) => {
                let (Some(src), Some(dst)) = (pkt.src_addr(), pkt.dst_addr()) else { return };
                let (addrs, ports) =
                    if r.dir == 0 { ([src, dst], [pkt.src_port, pkt.dst_port]) } else { ([dst, src], [pkt.dst_port, pkt.src_port]) };
                let flow = FlowEvent {
                    header: pkt.header,
                    tuple: FlowTuple::new(pkt.ip_proto, pkt.vlan, addrs, ports),
                    stats: [DirStats::default(); 2],
                    reason: REASON_NONE,
                    _reserved: [0; 7],
                };
                self.classified_datagram_flow(&flow, app, &host_name, host);
            }
            Verdict::Unknown | Verdict::Undecided => {}
        }
    }

    /// The stack read a QUIC connection's first flight: QUIC, with the server name it asked
    /// for (none where the flight could not be read).
    fn on_first_flight(&mut self, q: &FlowQuicEvent, host: &mut Host<'_>) {
        if self.flow(q.flow.header.flow).done {
            return;
        }
        self.classified_datagram_flow(&q.flow, app::QUIC, q.sni(), host);
    }

    /// Publishes the protocol of a UDP (or other datagram) flow, and lets go of its datagrams.
    fn classified_datagram_flow(&mut self, flow: &FlowEvent, app: u8, host_name: &[u8], host: &mut Host<'_>) {
        let r = flow.header.flow;
        self.flow(r).done = true;
        self.publish(flow, app, CONFIDENCE_DPI, host_name, host);
        host.unsubscribe(&r, builtin::PKT_UDP);
    }

    /// A flow ended: if nothing was published, the port's protocol, if it has one (flows of
    /// no known protocol are not reported).
    fn on_end(&mut self, flow: &FlowEvent, host: &mut Host<'_>) {
        let r = flow.header.flow;
        let f = self.flow(r);
        if f.done {
            return;
        }
        // A QUIC flight that never became whole: the port says QUIC.
        f.done = true;
        let guess = classify::by_port(flow.tuple.ip_proto == mbox_abi::ip_proto::TCP, flow.tuple.ports);
        if guess == app::UNKNOWN {
            self.counts[usize::from(app::UNKNOWN)] += 1;
        } else {
            self.publish(flow, guess, CONFIDENCE_PORT, b"", host);
        }
    }
}

impl NetworkFunction for Dpi {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> NfVerdict {
        self.queue.retry(host);
        if let Some(ev) = event.view::<StreamDataEvent>() {
            self.on_stream_data(ev, host);
        } else if let Some(q) = event.view::<FlowQuicEvent>() {
            self.on_first_flight(q, host);
        } else if let Some(flow) = event.view::<FlowEvent>().filter(|f| f.reason != REASON_NONE) {
            self.on_end(flow, host);
        } else if let Some(pkt) = event.view::<PktEvent>() {
            self.on_datagram(pkt, host);
        }
        NfVerdict::Pass
    }

    /// Flows classified, by protocol (the names `FLOW/TYPE` uses), and classifications lost.
    fn counters(&self, out: &mut Counters<'_>) {
        for a in app::ALL {
            out.set(app::name(a), self.counts[usize::from(a)]);
        }
        out.set("not_published", self.queue.dropped + self.queue.waiting() as u64);
    }

    fn on_finish(&mut self) -> Result<(), String> {
        let mut parts: Vec<String> = app::ALL
            .iter()
            .filter(|&&a| self.counts[usize::from(a)] > 0)
            .map(|&a| format!("{} {}", app::name(a), self.counts[usize::from(a)]))
            .collect();
        let lost = self.queue.dropped + self.queue.waiting() as u64;
        if lost > 0 {
            parts.push(format!("{lost} classifications not published (the host's queue stayed full)"));
        }
        eprintln!("dpi: {}", parts.join(", "));
        Ok(())
    }
}

impl Plugin for Dpi {
    const INFO: PluginInfo = PluginInfo {
        name: "dpi",
        version: env!("CARGO_PKG_VERSION"),
        description: "classifies flows (HTTP, TLS, SSH, mail, FTP, DNS, BitTorrent, QUIC, ...) and publishes FLOW/TYPE",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/TERMINATE", "PKT/UDP", "FLOW/UDP/TERMINATE", "FLOW/UDP/QUIC"],
        publishes: &[FLOW_TYPE_PATH],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        Args::parse(init.args_json.as_str(), &[])?;
        let flow_type = init.type_of(FLOW_TYPE_PATH).ok_or("the host did not register FLOW/TYPE")?;
        Ok(Dpi {
            flow_type,
            flows: (0..init.shards.max(1)).map(|_| Vec::new()).collect(),
            queue: PublishQueue::new(1 << 16),
            counts: [0; 256],
        })
    }
}

export_nf!(Dpi);
