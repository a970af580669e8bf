//! What sig-match does with a flow's bytes, apart from the ABI: keeps a window of each
//! direction's stream, recognises the application protocol, feeds the protocol parsers, and
//! asks the engine which rules match the stream and the protocol buffers; checks TCP packet
//! rules (`flags`, `dsize`, `tcp-pkt`) on each packet of the flows they may apply to. Matches
//! come out through a callback; each rule alerts at most once per flow and direction.
//!
//! What it keeps and what it spends are bounded, so that no traffic can make it blind without
//! saying so, or stall it:
//! - **Memory.** A direction keeps the last `inspect_window` bytes of its stream (up to twice
//!   that before the window slides), only while some rule or parser can still use them: not
//!   after the stream's end (FIN or RST), not beyond the furthest byte its rules can reach (their
//!   `depth`/`within` bounds), not beyond `stream_depth`. All flows together keep at most
//!   `memory_limit`; a direction refused for it is counted (and the first refusal warned about).
//! - **Work.** Every direction earns a budget of verification work per stream byte
//!   ([`WORK_PER_BYTE`] units, about a byte through an automaton each, on top of
//!   [`INITIAL_WORK`]). Prefilter scans and rule
//!   verifications spend it; when it runs short, they wait for more bytes (the window keeps
//!   what they need), and a rule that cannot be decided within its share is given up, counted.
//!   So the cost per inspected byte has a fixed bound whatever the rules and the bytes.

use crate::http_fields::{decode_body, BodyEncoding, HttpFields};
use mbox_abi::app;
use mbox_proto::detect::{AppProto, Detected};
use mbox_proto::quic;
use mbox_proto::{dns, http, ssh, tls, x509, Parse};
use mbox_sig::engine::Verification;
use mbox_sig::{Buffer, Buffers, Direction, Engine, Proto, Rule};
use std::net::IpAddr;

/// Limits and choices, from the plugin's arguments.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Stream bytes inspected per direction (Suricata: `stream.reassembly.depth`).
    pub stream_depth: usize,
    /// HTTP body bytes inspected per message (Suricata: `response-body-limit`).
    pub body_limit: usize,
    /// Inspect connections picked up without their handshake (Suricata: `stream.midstream`).
    pub midstream: bool,
    /// Stream and body bytes kept by all flows together.
    pub memory_limit: usize,
    /// Stream bytes a match may span: the window of each direction kept for verification.
    pub inspect_window: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { stream_depth: 1 << 20, body_limit: 100 << 10, midstream: false, memory_limit: 256 << 20, inspect_window: 64 << 10 }
    }
}

/// Work a direction earns per stream byte it delivers, in the engine's units (about a byte
/// through an automaton; see `mbox_sig::engine`). A plain stream costs about one per byte: the
/// prefilter's scan.
pub const WORK_PER_BYTE: u64 = 16;
/// Verification work a direction starts with: small flows never wait for it.
pub const INITIAL_WORK: u64 = 1 << 20;
/// The most one verification of one rule may spend, as a multiple of its buffer's length (on
/// top of a constant): a rule that cannot be decided within it is given up for the direction.
const VERIFY_WORK_PER_BYTE: u64 = 4;
const VERIFY_WORK_MIN: u64 = 64 << 10;

/// Spare buffers kept for new flows, and the largest kept (bigger ones are freed).
const SPARE_BUFFERS: usize = 1024;
const SPARE_MAX: usize = 64 << 10;

/// An HTTP head still incomplete beyond this many bytes is parsed again only when a blank line
/// may have arrived (parsing from its start on every segment would cost its length each time).
const HEAD_REPARSE_LIMIT: usize = 8192;

/// `Side::parsed` once the protocol parser stopped for good.
const PARSE_STOPPED: u64 = u64::MAX;

/// The endpoints of a flow, originator first.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub addrs: [IpAddr; 2],
    pub ports: [u16; 2],
}

/// A match: the rule (an index into the engine's rules), the direction and where it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub rule: u32,
    pub dir: u8,
    pub app: u8,
    pub stream_offset: u64,
}

/// Matching shared by every flow: the engines and scratch space.
pub struct Matcher {
    /// Every rule: protocol buffers (URIs, SNIs, ...) are matched against it.
    engine: Engine,
    /// Per stream context (application protocol x direction, see [`context`]), the rules that
    /// look at the stream there, as an index into `stream_rules`: a direction no stream rule
    /// applies to is not scanned (nor kept), one few rules apply to is scanned for few patterns.
    contexts: Vec<Option<usize>>,
    /// The distinct sets of stream rules, each compiled once (contexts of protocols no rule
    /// names share the set of the rules that name none).
    stream_rules: Vec<StreamRules>,
    /// The TCP packet rules, compiled on their own (their prefilter finds candidates in a
    /// packet's payload), and their indices among all rules.
    packet_rules: StreamRules,
    /// Which protocol parsers some rule needs.
    needs: Needs,
    settings: Settings,
    candidates: Vec<u32>,
    /// The packet prefilter's finds, reused.
    found: Vec<u32>,
    /// Longest fast pattern among stream rules, less one: how far back a scan of new stream
    /// bytes starts, so a pattern split across two deliveries is found.
    overlap: usize,
    /// Recycled stream and body buffers (a flow's buffers go back here when it ends).
    spare: Vec<Vec<u8>>,
    /// Stream and body bytes kept by every flow together (bounded by `Settings::memory_limit`).
    kept_bytes: usize,
    /// Per rule, its flowbits with the bits numbered.
    flowbits: Vec<Vec<Bit>>,
    /// The HTTP buffers of the head being inspected, and a decoded body (both reused).
    fields: HttpFields,
    decoded: Vec<u8>,
    /// A name with a dot before it (`dotprefix`), reused.
    dotted: Vec<u8>,
    pub stats: Stats,
}

/// Some of the rules compiled on their own — the stream rules of one or more contexts, or the
/// packet rules — and their indices among all rules.
struct StreamRules {
    engine: Engine,
    global: Vec<u32>,
    /// The furthest stream byte any of them can look at (`None`: no bound).
    reach: Option<u64>,
}

/// Which buffers the loaded rules look at (parsers nobody needs do not run).
#[derive(Debug, Default, Clone, Copy)]
struct Needs {
    /// HTTP requests, responses (which need the requests parsed too: a HEAD's answer has no
    /// body).
    http: [bool; 2],
    tls_sni: bool,
    /// The server's certificates (`tls.certs`), and the leaf's fields (subject, ...).
    tls_certs: bool,
    tls_cert_fields: bool,
    /// `http.start` / `http.header.raw` (copies of the head).
    http_raw: bool,
    /// `dotprefix` on the SNI or a DNS name.
    tls_sni_dotted: bool,
    dns_query_dotted: bool,
    ssh_software: bool,
    dns_query: bool,
    /// `quic.version`, `quic.sni` (the first flight decrypted).
    quic_version: bool,
    quic_sni: bool,
}

/// The index of a stream context: an application protocol (`app::*`, `app::UNKNOWN` while
/// unknown or for none this NF parses) and a direction.
fn context(app: u8, dir: u8) -> usize {
    usize::from(app) * 2 + usize::from(dir.min(1))
}

/// Whether `rule` looks at the stream of a TCP connection of `app` in direction `dir`.
fn applies_to_stream(rule: &Rule, app: u8, dir: u8) -> bool {
    if rule.packet.is_some()
        || !rule.items.iter().any(|(b, _)| *b == Buffer::Stream)
        || rule.flow.to_server.is_some_and(|t| t != (dir == 0))
    {
        return false;
    }
    match rule.proto {
        Proto::Tcp => rule.app_proto().is_none_or(|p| app_code(p) == app),
        Proto::Udp => false,
        p => app_code(p) == app,
    }
}

/// Counters for the NF's report (and, live, for `mboxctl stats` and the metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub bytes_inspected: u64,
    pub bytes_beyond_depth: u64,
    /// Bytes not inspected because every flow's kept bytes reached the memory limit, and the
    /// directions that happened to.
    pub bytes_over_memory: u64,
    pub directions_over_memory: u64,
    pub directions_with_gaps: u64,
    pub midstream_flows_skipped: u64,
    pub alerts: u64,
    /// Rule checks that could not be decided within their share of the work budget.
    pub rules_given_up: u64,
    /// Work spent on prefilter scans and verification (the engine's units).
    pub work: u64,
    /// Directions whose bytes were let go before the flow ended: at the stream's end, or once
    /// no rule could reach further.
    pub directions_released: u64,
    /// TCP packets checked against packet rules, and the flows whose packets were no longer
    /// wanted (no packet rule could match them any more, or they are not inspected).
    pub packets_inspected: u64,
    pub flows_without_packet_rules: u64,
}

/// A packet rule that fits a flow: its index in the packet engine and the directions it fits
/// (bit 0: the client's packets, bit 1: the server's).
#[derive(Debug, Clone, Copy)]
struct FlowPacketRule {
    local: u32,
    directions: u8,
}

/// What a TCP packet rule is checked on: one packet of a flow.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<'a> {
    /// The header's flags byte (CWR and ECE included).
    pub flags: u8,
    pub payload: &'a [u8],
    /// The handshake is over.
    pub established: bool,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
struct Side {
    /// Stream bytes `[base, next)` (or up to the depth): the window rules are verified in.
    window: Vec<u8>,
    base: u64,
    /// Next stream offset expected; data elsewhere (a gap, or events lost) ends inspection.
    next: u64,
    state: SideState,
    /// Scanned up to here (stream offsets) for rules that need no protocol, and for rules that
    /// do (only once it is known).
    scanned_any: u64,
    scanned_app: u64,
    /// Where the protocol parser goes on (a stream offset; [`PARSE_STOPPED`]).
    parsed: u64,
    /// The window's end when an incomplete HTTP head (or TLS flight) was last parsed.
    head_tried_at: u64,
    /// HTTP: the body being read (decoder and the bytes kept for inspection), and the buffers
    /// of its message's head (rules may look at both).
    body: Option<(http::BodyDecoder, Vec<u8>)>,
    head_fields: HttpFields,
    /// SSH: the identification line was read.
    banner_done: bool,
    /// TLS: the side's first message (hello, or the server's flight) starts at `parsed` and
    /// is not parsed yet.
    tls_pending: bool,
    /// Stream rules whose fast pattern was seen but that are not decided yet: their other
    /// steps do not hold yet, or their verification waits for work budget. Checked again as
    /// the stream grows.
    pending: Vec<Pending>,
    /// Work this direction may still spend (the engine's units).
    credit: u64,
}

/// What happens to a direction's bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum SideState {
    /// Kept and inspected.
    #[default]
    Inspecting,
    /// Let go: no rule or parser needs them, or the stream ended.
    Released,
    /// Beyond `stream_depth` (counted).
    BeyondDepth,
    /// Refused for the memory limit (counted).
    OverMemory,
    /// After a gap: not where the stream's offsets say.
    Broken,
}

/// A stream rule waiting to be decided.
#[derive(Debug, Clone, Copy)]
struct Pending {
    rule: u32,
    /// The end of the last scan that found its fast pattern: once the window starts beyond
    /// it, the pattern is gone and so is the rule's chance.
    seen_to: u64,
    /// Checked again once the window reaches this offset: an expensive check waits for more
    /// bytes in proportion to its cost.
    retry_at: u64,
}

/// Packet rules admitted by a packet's flags and size that are verified one by one; beyond
/// it, the packet prefilter (one pass over the payload for all of them) picks the candidates
/// (not for a packet without payload, where every content fails at once).
const PACKET_RULES_WITHOUT_PREFILTER: usize = 4;

/// Stream bytes a pending rule waits before its next check, per unit of work its last check
/// cost: re-checking the pending rules costs at most a quarter of a unit per byte each.
const RETRY_BYTES_PER_WORK: u64 = 4;

impl Side {
    /// The window's end: one past the last stream byte kept.
    fn end(&self) -> u64 {
        self.base + self.window.len() as u64
    }

    /// TLS: the first message is still to be parsed, and the window holds where it starts (a
    /// parser stopped, or a window that slid past it, gives it up).
    fn tls_waits(&self) -> bool {
        self.tls_pending && self.base <= self.parsed && self.parsed <= self.end()
    }
}

/// The part of `window` (which starts at stream offset `base`) from stream offset `from` on.
fn window_from(window: &[u8], base: u64, from: u64) -> &[u8] {
    &window[from.saturating_sub(base).min(window.len() as u64) as usize..]
}

/// A TLS side's start parsed again with every new segment up to this many bytes; beyond, only
/// once it grew by half (certificate chains are a few KB; a huge one would be parsed anew for
/// every segment).
const TLS_EAGER_BYTES: u64 = 32 * 1024;

/// `.` and `name`, in `scratch`: Suricata's `dotprefix` transform.
fn dotted<'s>(scratch: &'s mut Vec<u8>, name: &[u8]) -> &'s [u8] {
    scratch.clear();
    scratch.push(b'.');
    scratch.extend_from_slice(name);
    scratch
}

/// Certificates of a server's chain inspected at most (chains are 2 to 4 long; the rest of an
/// absurd one is not looked at).
const MAX_CERTIFICATES: usize = 16;

/// Rules a direction keeps waiting at most (the rest are given up, counted).
const MAX_PENDING: usize = 64;

/// What checking a rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    Alerted,
    /// Its steps do not hold (yet); more bytes or a later state may change that.
    NotYet,
    /// Never for this flow and direction (already alerted, other protocol or addresses).
    Never,
    /// Its verification may cost more than the direction has left now: it waits for more.
    Deferred,
    /// Its verification may cost more than a rule's share: it is given up.
    OutOfBudget,
}

/// SMTP's STARTTLS, followed so that the TLS after it is parsed as TLS (as Suricata does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartTls {
    /// Looking for the client's command (in its first [`STARTTLS_WATCH`] bytes).
    Watching,
    /// The client asked: its TLS starts at `client`; the server's answer is its first line
    /// from `server` on.
    Asked { client: u64, server: u64 },
    /// Not (any more) looked for.
    Done,
}

/// Client bytes of an SMTP session searched for STARTTLS (it comes after the greeting and
/// EHLO, in the first few hundred bytes).
const STARTTLS_WATCH: u64 = 16 * 1024;

/// The application protocol as recognised so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Unknown,
    Known(u8),
    /// Not one this NF parses: only rules without a protocol apply.
    Other,
}

/// What sig-match keeps per TCP connection or UDP flow.
pub struct FlowInspection {
    pub id: u64,
    ends: Endpoints,
    app: App,
    sides: [Side; 2],
    /// HTTP: methods of requests whose responses have not come yet (HEAD means no body).
    pending_methods: std::collections::VecDeque<bool>,
    /// (rule, direction) pairs that alerted.
    alerted: Vec<(u32, u8)>,
    /// The flowbits set on the flow (numbers from [`Matcher`]'s names), in no order.
    bits: Vec<u32>,
    /// SMTP: where STARTTLS stands.
    starttls: StartTls,
    /// Each side's stream size as of the flow's latest event, as Suricata's `stream_size`
    /// counts it (`[client, server]`).
    stream_sizes: [u32; 2],
    /// The packet rules that may still match this flow's packets (`None`: not worked out yet,
    /// until its first packet), in the packet engine's order.
    packet_rules: Option<Vec<FlowPacketRule>>,
    skipped: bool,
    /// Transport: TCP or UDP.
    tcp: bool,
}

impl FlowInspection {
    /// Each side's stream size (`[client, server]`, Suricata's `stream_size` counting) as of
    /// the event being handled.
    pub fn set_stream_sizes(&mut self, sizes: [u32; 2]) {
        self.stream_sizes = sizes;
    }
}

impl Matcher {
    /// The settings the matcher runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn new(rules: Vec<Rule>, settings: Settings) -> Matcher {
        let mut needs = Needs::default();
        for (buffer, _) in rules.iter().flat_map(|r| r.items.iter()) {
            let (requests, responses) = buffer.http_sides();
            needs.http[0] |= requests || responses;
            needs.http[1] |= responses;
            match buffer {
                Buffer::TlsSni => needs.tls_sni = true,
                Buffer::TlsSniDotted => {
                    needs.tls_sni = true;
                    needs.tls_sni_dotted = true;
                }
                Buffer::DnsQueryDotted => {
                    needs.dns_query = true;
                    needs.dns_query_dotted = true;
                }
                Buffer::HttpStart | Buffer::HttpHeaderRaw => needs.http_raw = true,
                Buffer::TlsCerts => needs.tls_certs = true,
                Buffer::TlsCertSubject | Buffer::TlsCertIssuer | Buffer::TlsCertSerial | Buffer::TlsCertFingerprint => {
                    needs.tls_certs = true;
                    needs.tls_cert_fields = true;
                }
                Buffer::SshSoftware => needs.ssh_software = true,
                Buffer::DnsQuery => needs.dns_query = true,
                Buffer::QuicVersion => needs.quic_version = true,
                Buffer::QuicSni => needs.quic_sni = true,
                _ => {}
            }
        }
        let max_app = app::ALL.iter().copied().max().unwrap_or(0);
        let mut stream_rules: Vec<StreamRules> = Vec::new();
        let contexts = (0..=context(max_app, 1))
            .map(|c| {
                let (app, dir) = ((c / 2) as u8, (c % 2) as u8);
                let global: Vec<u32> = (0..rules.len() as u32).filter(|&r| applies_to_stream(&rules[r as usize], app, dir)).collect();
                if global.is_empty() {
                    return None;
                }
                if let Some(i) = stream_rules.iter().position(|s| s.global == global) {
                    return Some(i);
                }
                let reach = global.iter().map(|&r| rules[r as usize].stream_reach()).try_fold(0, |m, r| r.map(|r| m.max(r)));
                let engine = Engine::new(global.iter().map(|&r| rules[r as usize].clone()).collect());
                stream_rules.push(StreamRules { engine, global, reach });
                Some(stream_rules.len() - 1)
            })
            .collect();
        let settings = Settings { inspect_window: settings.inspect_window.max(1), ..settings };
        let flowbits = number_flowbits(&rules);
        let global: Vec<u32> = (0..rules.len() as u32).filter(|&r| rules[r as usize].packet.is_some()).collect();
        let engine = Engine::new(global.iter().map(|&r| rules[r as usize].clone()).collect());
        let packet_rules = StreamRules { engine, global, reach: None };
        let overlap = stream_rules.iter().map(|s| s.engine.longest_fast_pattern(Buffer::Stream)).max().unwrap_or(1).saturating_sub(1);
        Matcher {
            engine: Engine::new(rules),
            contexts,
            stream_rules,
            packet_rules,
            needs,
            settings,
            candidates: Vec::new(),
            found: Vec::new(),
            overlap,
            spare: Vec::new(),
            kept_bytes: 0,
            fields: HttpFields::default(),
            decoded: Vec::new(),
            dotted: Vec::new(),
            flowbits,
            stats: Stats::default(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        self.engine.rules()
    }

    /// Whether some rule is a TCP packet rule (else no TCP packet is of use).
    pub fn has_packet_rules(&self) -> bool {
        !self.packet_rules.global.is_empty()
    }

    /// Stream and body bytes kept by all flows now.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// State for a new flow.
    pub fn flow(&mut self, id: u64, ends: Endpoints, tcp: bool, midstream: bool) -> FlowInspection {
        let skipped = tcp && midstream && !self.settings.midstream;
        if skipped {
            self.stats.midstream_flows_skipped += 1;
        }
        let side = || Side { credit: INITIAL_WORK, ..Side::default() };
        FlowInspection {
            id,
            ends,
            app: App::Unknown,
            sides: [side(), side()],
            pending_methods: Default::default(),
            alerted: Vec::new(),
            bits: Vec::new(),
            starttls: StartTls::Watching,
            stream_sizes: [0; 2],
            packet_rules: None,
            skipped,
            tcp,
        }
    }

    /// Takes a flow's state back at its end: decides what is still pending (rules waiting for
    /// work, a body the connection's close ended) and recycles its buffers.
    pub fn end(&mut self, mut flow: FlowInspection, hit: &mut dyn FnMut(Hit)) {
        for dir in 0..2 {
            self.finish_side(&mut flow, dir, hit);
        }
    }

    /// Direction `dir`'s stream reached its end (its FIN, or a reset): what is pending is
    /// decided now and its bytes are let go. Bytes that still come (data in flight, or a FIN or
    /// RST that never reached the receiver — an evasion) are inspected afresh: only matches
    /// spanning the end are lost.
    pub fn stream_end(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        if flow.sides[d].state == SideState::Inspecting {
            self.finish_side(flow, d as u8, hit);
            self.stats.directions_released += 1;
        }
    }

    /// Decides what direction `dir` still has pending and lets its buffers go.
    fn finish_side(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        if !flow.skipped && flow.sides[d].state == SideState::Inspecting {
            if flow.app == App::Known(app::TLS) {
                self.parse_tls(flow, dir, true, hit);
            }
            self.scan_stream(flow, dir, true, true, hit);
        }
        if let Some((_, body)) = flow.sides[d].body.take() {
            self.inspect_body(flow, dir, &body, hit);
            self.recycle(body);
            // What follows the body's bytes so far is not a message head.
            flow.sides[d].parsed = PARSE_STOPPED;
        }
        self.release(&mut flow.sides[d]);
    }

    /// Lets go of a direction's bytes (its state says what happens to later ones; bytes that
    /// are still inspected start a new window).
    fn release(&mut self, side: &mut Side) {
        side.pending.clear();
        let window = std::mem::take(&mut side.window);
        side.base = side.next;
        if side.parsed < side.base {
            // The parser was in the middle of something it can no longer see.
            side.parsed = PARSE_STOPPED;
        }
        self.recycle(window);
        if let Some((_, body)) = side.body.take() {
            self.recycle(body);
        }
        self.recycle_fields(std::mem::take(&mut side.head_fields));
    }

    /// Takes back a head's buffers kept across its body: they no longer count against the
    /// memory limit, and serve the next head if the matcher's own have no room yet.
    fn recycle_fields(&mut self, mut fields: HttpFields) {
        self.kept_bytes = self.kept_bytes.saturating_sub(fields.len());
        fields.clear();
        if fields.capacity() > self.fields.capacity() {
            self.fields = fields;
        }
    }

    /// Takes back a buffer: its bytes no longer count against the memory limit, and small
    /// buffers are kept for the next flow (big ones go back to the allocator).
    fn recycle(&mut self, mut buf: Vec<u8>) {
        self.kept_bytes = self.kept_bytes.saturating_sub(buf.len());
        if buf.capacity() > 0 && buf.capacity() <= SPARE_MAX && self.spare.len() < SPARE_BUFFERS {
            buf.clear();
            self.spare.push(buf);
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// New bytes `[offset, offset + bytes.len())` of a TCP connection's direction `dir`.
    pub fn stream_data(
        &mut self,
        flow: &mut FlowInspection,
        dir: u8,
        offset: u64,
        bytes: &[u8],
        established: bool,
        hit: &mut dyn FnMut(Hit),
    ) {
        if flow.skipped {
            return;
        }
        let d = usize::from(dir.min(1));
        let side = &mut flow.sides[d];
        match side.state {
            SideState::Inspecting => {}
            SideState::BeyondDepth => {
                self.stats.bytes_beyond_depth += bytes.len() as u64;
                return;
            }
            SideState::OverMemory => {
                self.stats.bytes_over_memory += bytes.len() as u64;
                return;
            }
            SideState::Released | SideState::Broken => return,
        }
        if offset != side.next {
            // A gap (or events that never came): later bytes are not where they seem.
            self.broken(flow, dir, hit);
            return;
        }
        side.next += bytes.len() as u64;
        let room = (self.settings.stream_depth as u64).saturating_sub(offset).min(bytes.len() as u64) as usize;
        self.stats.bytes_beyond_depth += (bytes.len() - room) as u64;
        if room == 0 {
            // Beyond the depth: what the window still holds is decided, then let go.
            self.finish_side(flow, dir, hit);
            flow.sides[d].state = SideState::BeyondDepth;
            return;
        }
        if self.kept_bytes + room > self.settings.memory_limit {
            // Every flow's kept bytes together are bounded: this direction is not inspected
            // further (counted, and the NF warns once through the host's log: an operator
            // must know the IDS is not seeing everything).
            self.stats.directions_over_memory += 1;
            self.stats.bytes_over_memory += bytes.len() as u64;
            self.finish_side(flow, dir, hit);
            flow.sides[d].state = SideState::OverMemory;
            return;
        }
        let side = &mut flow.sides[d];
        if side.window.capacity() == 0 {
            side.window = self.spare.pop().unwrap_or_default();
        }
        side.window.extend_from_slice(&bytes[..room]);
        side.credit = side.credit.saturating_add(WORK_PER_BYTE * room as u64);
        self.kept_bytes += room;
        self.stats.bytes_inspected += room as u64;
        if flow.app == App::Unknown {
            flow.app = detect(flow);
            if flow.app == App::Known(app::TLS) {
                // Each side starts with its hello (parsed from offset 0).
                flow.sides.iter_mut().for_each(|s| s.tls_pending = true);
            }
        }
        self.parse_app(flow, dir, hit);
        // Bytes about to leave the window are scanned whatever the budget says.
        let window = self.settings.inspect_window;
        let side = &flow.sides[d];
        let slide = side.window.len() > 2 * window && !Self::keeps_start(flow, side);
        self.scan_stream(flow, dir, established, slide, hit);
        if slide {
            self.slide(&mut flow.sides[d]);
        }
        if flow.app != App::Unknown && !self.wants(flow, dir) {
            self.release(&mut flow.sides[d]);
            flow.sides[d].state = SideState::Released;
            self.stats.directions_released += 1;
        }
    }

    /// Keeps the last `inspect_window` bytes of a direction's window. Pending rules whose fast
    /// pattern was only seen in bytes that leave are dropped (they can no longer match).
    fn slide(&mut self, side: &mut Side) {
        let keep = self.settings.inspect_window;
        let drop = side.window.len().saturating_sub(keep);
        side.window.drain(..drop);
        side.base += drop as u64;
        self.kept_bytes = self.kept_bytes.saturating_sub(drop);
        let base = side.base;
        side.pending.retain(|p| p.seen_to > base);
        if side.parsed < base {
            // A head longer than the window: the parser cannot go on.
            side.parsed = PARSE_STOPPED;
        }
    }

    /// Whether anything still needs direction `dir` of `flow` (once its protocol is decided):
    /// stream rules of its context that can still reach its next bytes (or are pending), or a
    /// parser some rule needs.
    fn wants(&self, flow: &FlowInspection, dir: u8) -> bool {
        let a = flow_app(flow);
        let side = &flow.sides[usize::from(dir.min(1))];
        if let Some(rules) = self.contexts[context(a, dir)].map(|i| &self.stream_rules[i]) {
            if rules.reach.is_none_or(|reach| side.scanned_app < reach) || !side.pending.is_empty() {
                return true;
            }
        }
        match a {
            app::HTTP => self.needs.http[usize::from(dir.min(1))],
            app::TLS => side.tls_waits() && if dir == 0 { self.needs.tls_sni } else { self.needs.tls_certs },
            app::SMTP => self.follows_starttls() && flow.starttls != StartTls::Done,
            app::SSH => self.needs.ssh_software && !side.banner_done,
            app::DNS => dir == 0 && self.needs.dns_query,
            _ => false,
        }
    }

    /// Bytes of direction `dir` are missing for good: what came before is decided, what
    /// follows is not inspected.
    pub fn gap(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        if flow.sides[usize::from(dir.min(1))].state == SideState::Inspecting {
            self.broken(flow, dir, hit);
        }
    }

    /// The stream of direction `dir` is not where its offsets say any more.
    fn broken(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        self.finish_side(flow, dir, hit);
        flow.sides[usize::from(dir.min(1))].state = SideState::Broken;
        self.stats.directions_with_gaps += 1;
    }

    /// A UDP datagram's payload, sent in direction `dir`; `quic_version` is the version of the
    /// QUIC long header it starts with, as the stack read it (`PKT/UDP/QUIC`).
    pub fn datagram(&mut self, flow: &mut FlowInspection, dir: u8, payload: &[u8], quic_version: Option<u32>, hit: &mut dyn FnMut(Hit)) {
        let (sport, dport) = ports(&flow.ends, dir);
        let direction = Direction { to_server: dir == 0, established: true };
        let d = usize::from(dir.min(1));
        flow.sides[d].credit = flow.sides[d].credit.saturating_add(WORK_PER_BYTE * payload.len() as u64);
        let is_dns = (sport == 53 || dport == 53) && dns::header(payload).is_some();
        if is_dns {
            flow.app = App::Known(app::DNS);
            self.inspect_dns_query(flow, dir, payload, hit);
        } else if flow.app == App::Unknown || flow.app == App::Known(app::QUIC) {
            if let Some(version) = quic_version {
                self.inspect_quic(flow, dir, version, hit);
            }
        }
        let mut b = Buffers::default();
        b.set(Buffer::Stream, payload);
        self.evaluate(flow, dir, direction, &b, hit);
    }

    /// A TCP packet sent in direction `dir`: the packet rules that may apply to the flow are
    /// checked on it (flags and payload size first, then their contents on its payload, within
    /// the work its bytes earn). Returns whether a packet rule may still match a later packet
    /// of the flow: when none can, its packets need not come.
    pub fn packet(&mut self, flow: &mut FlowInspection, dir: u8, packet: &TcpPacket<'_>, hit: &mut dyn FnMut(Hit)) -> bool {
        if flow.skipped {
            if flow.packet_rules.replace(Vec::new()).is_none() {
                self.stats.flows_without_packet_rules += 1;
            }
            return false;
        }
        let (mut rules, had_rules) = match flow.packet_rules.take() {
            Some(rules) => {
                let had = !rules.is_empty();
                (rules, had)
            }
            None => (self.packet_rules_for(&flow.ends), true),
        };
        let bit = 1u8 << dir.min(1);
        if rules.iter().any(|r| r.directions & bit != 0) {
            self.stats.packets_inspected += 1;
            let d = usize::from(dir.min(1));
            flow.sides[d].credit = flow.sides[d].credit.saturating_add(WORK_PER_BYTE * packet.payload.len() as u64);
            let direction = Direction { to_server: dir == 0, established: packet.established };
            let mut b = Buffers::default();
            b.set(Buffer::Stream, packet.payload);
            // The rules this packet's flags and size admit; with more than a few, the
            // prefilter's pass over the payload (for all of them at once) keeps those whose
            // fast pattern is there.
            let mut admitted = std::mem::take(&mut self.candidates);
            admitted.clear();
            let engine = &self.packet_rules.engine;
            admitted.extend(rules.iter().filter(|r| r.directions & bit != 0).map(|r| r.local).filter(|&local| {
                engine.rules()[local as usize].packet.is_some_and(|opts| opts.admits(packet.flags, packet.payload.len()))
            }));
            if admitted.len() > PACKET_RULES_WITHOUT_PREFILTER && !packet.payload.is_empty() {
                let mut found = std::mem::take(&mut self.found);
                found.clear();
                engine.candidates(&b, &mut found);
                admitted.retain(|r| found.binary_search(r).is_ok());
                self.found = found;
            }
            // An alert says where the packet ends in its direction's stream (the SYN counts
            // one in the size), not where in the packet the match ended.
            let packet_end = u64::from(flow.stream_sizes[d].saturating_sub(1));
            let hit = &mut |h: Hit| hit(Hit { stream_offset: packet_end, ..h });
            for &local in &admitted {
                let global = self.packet_rules.global[local as usize];
                if matches!(self.check(flow, global, dir, direction, &b, hit), Checked::Deferred | Checked::OutOfBudget) {
                    self.stats.rules_given_up += 1;
                }
            }
            self.candidates = admitted;
        }
        rules.retain_mut(|r| {
            r.directions = self.directions_left(flow, r, packet.established);
            r.directions != 0
        });
        if had_rules && rules.is_empty() {
            self.stats.flows_without_packet_rules += 1;
        }
        let wanted = !rules.is_empty();
        flow.packet_rules = Some(rules);
        wanted
    }

    /// The packet rules whose addresses, ports and direction fit a flow between `ends` one way
    /// or the other, with the directions they fit.
    fn packet_rules_for(&self, ends: &Endpoints) -> Vec<FlowPacketRule> {
        let rules = self.packet_rules.engine.rules();
        (0..rules.len() as u32)
            .filter_map(|local| {
                let directions = (0..2).filter(|&d| fits_direction(&rules[local as usize], ends, d)).fold(0, |m, d| m | 1 << d);
                (directions != 0).then_some(FlowPacketRule { local, directions })
            })
            .collect()
    }

    /// The directions in which packet rule `r` may still alert on a later packet of `flow`:
    /// none once it alerted in every direction it fits, its `stream_size` bound is passed or
    /// its `not_established` is over.
    fn directions_left(&self, flow: &FlowInspection, r: &FlowPacketRule, established: bool) -> u8 {
        let global = self.packet_rules.global[r.local as usize];
        let rule = &self.engine.rules()[global as usize];
        if rule.stream_size.is_some_and(|s| !s.may_hold_later(flow.stream_sizes)) || (established && rule.flow.established == Some(false)) {
            return 0;
        }
        (0..2u8).filter(|&d| r.directions & (1 << d) != 0 && !flow.alerted.contains(&(global, d))).fold(0, |m, d| m | 1 << d)
    }

    /// A datagram with a QUIC long header of `version`: an IETF version makes the flow QUIC's
    /// and is its `quic.version` (as Suricata, Google QUIC's own versions fill it not;
    /// `quic.sni` comes from [`Matcher::quic_first_flight`]).
    fn inspect_quic(&mut self, flow: &mut FlowInspection, dir: u8, version: u32, hit: &mut dyn FnMut(Hit)) {
        if !quic::is_ietf_version(version) {
            return;
        }
        flow.app = App::Known(app::QUIC);
        let direction = Direction { to_server: dir == 0, established: true };
        if self.needs.quic_version {
            let version = version.to_be_bytes();
            let mut b = Buffers::default();
            b.set(Buffer::QuicVersion, &version);
            self.evaluate(flow, dir, direction, &b, hit);
        }
    }

    /// The client's first flight of a QUIC connection of an IETF `version`, read (its Initial
    /// packets decrypted, over as many datagrams as its ClientHello took: the stack's
    /// `FLOW/UDP/QUIC`): its server name is `quic.sni`, sent to the server. As Suricata,
    /// Google QUIC's own versions fill it not.
    pub fn quic_first_flight(&mut self, flow: &mut FlowInspection, version: u32, sni: &[u8], hit: &mut dyn FnMut(Hit)) {
        if !quic::is_ietf_version(version) {
            return;
        }
        flow.app = App::Known(app::QUIC);
        if !self.needs.quic_sni || sni.is_empty() {
            return;
        }
        let mut b = Buffers::default();
        b.set(Buffer::QuicSni, sni);
        self.evaluate(flow, 0, Direction { to_server: true, established: true }, &b, hit);
    }

    /// A DNS message sent in direction `dir`: if a query, each question's name in `dns.query`
    /// (and dotted, for `dotprefix`).
    fn inspect_dns_query(&mut self, flow: &mut FlowInspection, dir: u8, msg: &[u8], hit: &mut dyn FnMut(Hit)) {
        if dns::header(msg).is_none_or(|h| h.is_response) {
            return;
        }
        let mut scratch = std::mem::take(&mut self.dotted);
        let direction = Direction { to_server: dir == 0, established: true };
        let with_dot = self.needs.dns_query_dotted;
        dns::for_each_question(msg, |name| {
            let mut b = Buffers::default();
            b.set(Buffer::DnsQuery, name);
            if with_dot {
                b.set(Buffer::DnsQueryDotted, dotted(&mut scratch, name));
            }
            self.evaluate(flow, dir, direction, &b, hit);
        });
        self.dotted = scratch;
    }

    /// Runs the protocol parser on what came in direction `dir`.
    fn parse_app(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        match flow.app {
            App::Known(app::HTTP) => self.parse_http(flow, dir, hit),
            App::Known(app::TLS) => self.parse_tls(flow, dir, false, hit),
            App::Known(app::SMTP) if self.follows_starttls() => self.watch_starttls(flow, dir, hit),
            App::Known(app::SSH) if !flow.sides[d].banner_done && flow.sides[d].base == 0 => {
                let window = std::mem::take(&mut flow.sides[d].window);
                if let Parse::Done(banner) = ssh::banner(&window) {
                    flow.sides[d].banner_done = true;
                    let mut b = Buffers::default();
                    b.set(Buffer::SshSoftware, banner.software);
                    self.evaluate(flow, dir, Direction { to_server: dir == 0, established: true }, &b, hit);
                }
                flow.sides[d].window = window;
            }
            App::Known(app::DNS) if dir == 0 && flow.sides[0].parsed != PARSE_STOPPED => {
                let window = std::mem::take(&mut flow.sides[0].window);
                let (from, base) = (flow.sides[0].parsed, flow.sides[0].base);
                let used = dns::tcp_messages(window_from(&window, base, from), |msg| self.inspect_dns_query(flow, 0, msg, hit));
                flow.sides[0].parsed = from.max(base) + used as u64;
                flow.sides[0].window = window;
            }
            _ => {}
        }
    }

    /// TLS: the client's hello and the server's first flight, each parsed while the window holds
    /// where it starts (the stream's start, or after STARTTLS; the window waits for it: see
    /// [`Matcher::keeps_start`]). A flight
    /// beyond [`TLS_EAGER_BYTES`] is parsed again only once it grew by half (`force`: at the
    /// stream's end), so that a huge one costs a bounded number of passes per byte.
    fn parse_tls(&mut self, flow: &mut FlowInspection, dir: u8, force: bool, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        let side = &mut flow.sides[d];
        if !side.tls_waits() {
            return;
        }
        let (from, end) = (side.parsed, side.end());
        let (had, tried) = (end - from, side.head_tried_at.saturating_sub(from));
        if !force && had > TLS_EAGER_BYTES && had - tried < tried / 2 {
            return;
        }
        side.head_tried_at = end;
        let start = window_from(&side.window, side.base, from);
        if dir == 0 {
            match tls::client_hello(start) {
                Parse::Done(hello) => {
                    side.tls_pending = false;
                    side.parsed = end;
                    if let Some(sni) = hello.sni {
                        let mut scratch = std::mem::take(&mut self.dotted);
                        let mut b = Buffers::default();
                        b.set(Buffer::TlsSni, &sni);
                        if self.needs.tls_sni_dotted {
                            b.set(Buffer::TlsSniDotted, dotted(&mut scratch, &sni));
                        }
                        self.evaluate(flow, 0, Direction { to_server: true, established: true }, &b, hit);
                        self.dotted = scratch;
                    }
                }
                Parse::Partial => {}
                Parse::Invalid => (side.tls_pending, side.parsed) = (false, PARSE_STOPPED),
            }
        } else {
            match tls::server_flight(start) {
                Parse::Done(flight) => {
                    side.tls_pending = false;
                    side.parsed = end;
                    self.inspect_certificates(flow, &flight.certificates, hit);
                }
                Parse::Partial => {}
                Parse::Invalid => (side.tls_pending, side.parsed) = (false, PARSE_STOPPED),
            }
        }
    }

    /// Whether SMTP sessions are followed through STARTTLS: some rule looks at TLS's buffers.
    fn follows_starttls(&self) -> bool {
        self.needs.tls_sni || self.needs.tls_certs
    }

    /// SMTP: the client's STARTTLS and the server's answer; a `220` makes the rest of both
    /// streams TLS, from the bytes after the command and after the answer.
    fn watch_starttls(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        match flow.starttls {
            StartTls::Watching if d == 0 => {
                let side = &mut flow.sides[0];
                let from = side.parsed;
                if from == PARSE_STOPPED || from >= STARTTLS_WATCH {
                    flow.starttls = StartTls::Done;
                    return;
                }
                let rest = window_from(&side.window, side.base, from);
                let mut at = 0;
                while let Some(len) = memchr::memchr(b'\n', &rest[at..]).map(|i| i + 1) {
                    let line = rest[at..at + len].trim_ascii_end();
                    at += len;
                    if line.eq_ignore_ascii_case(b"STARTTLS") {
                        // The answer comes after what the server has sent so far.
                        flow.starttls = StartTls::Asked { client: from + at as u64, server: flow.sides[1].end() };
                        break;
                    }
                }
                flow.sides[0].parsed = from + at as u64;
            }
            StartTls::Asked { client, server } if d == 1 => {
                let side = &flow.sides[1];
                if side.base > server {
                    flow.starttls = StartTls::Done;
                    return;
                }
                let rest = window_from(&side.window, side.base, server);
                let Some(len) = memchr::memchr(b'\n', rest).map(|i| i + 1) else { return };
                if !rest.starts_with(b"220") {
                    // Refused: the session goes on in the clear (the client may ask again).
                    flow.starttls = StartTls::Watching;
                    return;
                }
                flow.starttls = StartTls::Done;
                flow.app = App::Known(app::TLS);
                for (side, at) in flow.sides.iter_mut().zip([client, server + len as u64]) {
                    (side.parsed, side.tls_pending, side.head_tried_at) = (at, true, 0);
                }
                // The client's hello may have come already.
                self.parse_tls(flow, 0, false, hit);
                self.parse_tls(flow, 1, false, hit);
            }
            _ => {}
        }
    }

    /// Whether a direction's window must keep the start of a message a parser still waits for
    /// (a TLS hello or flight, up to its bound).
    fn keeps_start(flow: &FlowInspection, side: &Side) -> bool {
        flow.app == App::Known(app::TLS) && side.tls_waits() && side.end() - side.parsed <= tls::MAX_FLIGHT as u64
    }

    /// The server's certificates, each in `tls.certs` with the leaf's subject, issuer, serial and
    /// fingerprint beside it.
    fn inspect_certificates(&mut self, flow: &mut FlowInspection, certificates: &[Vec<u8>], hit: &mut dyn FnMut(Hit)) {
        let leaf = certificates.first().filter(|_| self.needs.tls_cert_fields).and_then(|der| x509::certificate_fields(der));
        for der in certificates.iter().take(MAX_CERTIFICATES) {
            let mut b = Buffers::default();
            b.set(Buffer::TlsCerts, der);
            if let Some(leaf) = &leaf {
                b.set(Buffer::TlsCertSubject, leaf.subject.as_bytes())
                    .set(Buffer::TlsCertIssuer, leaf.issuer.as_bytes())
                    .set(Buffer::TlsCertSerial, leaf.serial.as_bytes())
                    .set(Buffer::TlsCertFingerprint, leaf.fingerprint.as_bytes());
            }
            self.evaluate(flow, 1, Direction { to_server: false, established: true }, &b, hit);
        }
    }

    /// HTTP: requests (client) and responses (server) one after another, bodies included.
    fn parse_http(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        let window = std::mem::take(&mut flow.sides[d].window);
        let base = flow.sides[d].base;
        let end = base + window.len() as u64;
        let direction = Direction { to_server: dir == 0, established: true };
        loop {
            let parsed = flow.sides[d].parsed;
            if parsed == PARSE_STOPPED {
                break;
            }
            let rest = window_from(&window, base, parsed);
            if let Some((mut decoder, mut body)) = flow.sides[d].body.take() {
                let limit = self.settings.body_limit;
                let before = body.len();
                let fed = decoder.feed(rest, &mut |chunk| {
                    let room = limit.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                });
                // Body bytes count against the memory limit as stream bytes do.
                self.kept_bytes += body.len() - before;
                let consumed = match fed {
                    Ok(n) => n,
                    Err(_) => {
                        // Bad chunk framing: inspect what there is and stop parsing.
                        self.inspect_body(flow, dir, &body, hit);
                        self.recycle(body);
                        flow.sides[d].parsed = PARSE_STOPPED;
                        break;
                    }
                };
                flow.sides[d].parsed = parsed + consumed as u64;
                if decoder.is_done() {
                    self.inspect_body(flow, dir, &body, hit);
                    self.recycle(body);
                    continue;
                }
                flow.sides[d].body = Some((decoder, body));
                break;
            }
            if rest.is_empty() || !worth_parsing_head(rest, flow.sides[d].head_tried_at.saturating_sub(parsed) as usize) {
                break;
            }
            flow.sides[d].head_tried_at = end;
            let length = if dir == 0 {
                match http::request_head(rest) {
                    Parse::Done(head) => {
                        let mut fields = std::mem::take(&mut self.fields);
                        fields.request(&rest[..head.head_len], &head, self.needs.http_raw);
                        self.evaluate(flow, dir, direction, &fields.buffers(), hit);
                        self.fields = fields;
                        flow.pending_methods.push_back(head.method.eq_ignore_ascii_case(b"HEAD"));
                        flow.sides[d].parsed = parsed + head.head_len as u64;
                        head.body
                    }
                    Parse::Partial => break,
                    Parse::Invalid => {
                        flow.sides[d].parsed = PARSE_STOPPED;
                        break;
                    }
                }
            } else {
                let head_request = flow.pending_methods.front().copied().unwrap_or(false);
                match http::response_head(rest, head_request) {
                    Parse::Done(head) => {
                        // Interim (1xx) responses do not answer the request.
                        if !(100..200).contains(&head.status) {
                            flow.pending_methods.pop_front();
                        }
                        let mut fields = std::mem::take(&mut self.fields);
                        fields.response(&rest[..head.head_len], self.needs.http_raw);
                        self.evaluate(flow, dir, direction, &fields.buffers(), hit);
                        self.fields = fields;
                        flow.sides[d].parsed = parsed + head.head_len as u64;
                        head.body
                    }
                    Parse::Partial => break,
                    Parse::Invalid => {
                        flow.sides[d].parsed = PARSE_STOPPED;
                        break;
                    }
                }
            };
            if length != http::BodyLength::None {
                flow.sides[d].body = Some((http::BodyDecoder::new(length), self.buffer()));
                // The head's buffers wait with the body (counted as kept bytes).
                self.kept_bytes += self.fields.len();
                std::mem::swap(&mut self.fields, &mut flow.sides[d].head_fields);
            }
        }
        flow.sides[d].window = window;
    }

    /// A message's body, with its head's buffers: `file.data`, and `http.request_body` for a
    /// request's.
    fn inspect_body(&mut self, flow: &mut FlowInspection, dir: u8, body: &[u8], hit: &mut dyn FnMut(Hit)) {
        let fields = std::mem::take(&mut flow.sides[usize::from(dir.min(1))].head_fields);
        let mut decoded = std::mem::take(&mut self.decoded);
        let body = match fields.encoding {
            BodyEncoding::Identity => body,
            encoding => {
                decode_body(encoding, body, self.settings.body_limit, &mut decoded);
                &decoded[..]
            }
        };
        if !body.is_empty() {
            let mut b = fields.buffers();
            b.set(Buffer::FileData, body);
            if dir == 0 {
                b.set(Buffer::HttpRequestBody, body);
            }
            self.evaluate(flow, dir, Direction { to_server: dir == 0, established: true }, &b, hit);
        }
        self.decoded = decoded;
        self.recycle_fields(fields);
    }

    /// Rules on the stream itself: bytes not scanned yet (and an overlap before them) go
    /// through the prefilter, whose candidates join the direction's pending rules; pending
    /// rules are verified against the window. Each costs work: what the direction cannot
    /// pay for now waits for more bytes, unless `force` (the bytes are about to leave the
    /// window, or nothing more will come), when what still cannot be paid for is given up.
    fn scan_stream(&mut self, flow: &mut FlowInspection, dir: u8, established: bool, force: bool, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        let app_known = flow.app != App::Unknown;
        let Some(ctx) = self.contexts[context(flow_app(flow), dir)] else {
            let side = &mut flow.sides[d];
            (side.scanned_any, side.scanned_app) = (side.end(), side.end());
            return;
        };
        let window = std::mem::take(&mut flow.sides[d].window);
        let side = &mut flow.sides[d];
        let end = side.base + window.len() as u64;
        // While the protocol is unknown, the context holds only rules that need none; once it
        // is known, its context's rules see the window from its start.
        let from = if app_known { side.scanned_app } else { side.scanned_any };
        let start = from.saturating_sub(self.overlap as u64).max(side.base);
        if from < end {
            // A scan repeats the overlap before its new bytes: with tiny segments and a short
            // budget, new bytes wait until they are at least as many (the scans then cost at
            // most twice the bytes).
            let cost = end - start;
            let batching = side.credit < INITIAL_WORK / 2 && end - from < self.overlap as u64;
            if (side.credit < cost || batching) && !force {
                flow.sides[d].window = window;
                return;
            }
            side.credit = side.credit.saturating_sub(cost);
            self.stats.work += cost;
            let mut b = Buffers::default();
            b.set(Buffer::Stream, &window[(start - side.base) as usize..]);
            let mut candidates = std::mem::take(&mut self.candidates);
            candidates.clear();
            let rules = &self.stream_rules[ctx];
            rules.engine.candidates(&b, &mut candidates);
            for &r in &candidates {
                // The context engine's rule number, as a rule number of all rules.
                let rule = rules.global[r as usize];
                match side.pending.iter().position(|p| p.rule == rule) {
                    // Found again in new bytes: checked at its next turn (which comes before
                    // these bytes leave the window).
                    Some(i) => side.pending[i].seen_to = end,
                    None if side.pending.len() < MAX_PENDING => side.pending.push(Pending { rule, seen_to: end, retry_at: 0 }),
                    None => self.stats.rules_given_up += 1,
                }
            }
            self.candidates = candidates;
            side.scanned_any = end;
            if app_known {
                side.scanned_app = end;
            }
        }
        let direction = Direction { to_server: dir == 0, established };
        let mut whole = Buffers::default();
        whole.set_stream_window(&window, flow.sides[d].base);
        let mut pending = std::mem::take(&mut flow.sides[d].pending);
        let mut i = 0;
        while i < pending.len() {
            let p = pending[i];
            if p.retry_at > end && !force {
                i += 1;
                continue;
            }
            let credit = flow.sides[d].credit;
            match self.check(flow, p.rule, dir, direction, &whole, hit) {
                Checked::NotYet => {
                    // Waiting longer than half a window could let a new occurrence of its
                    // pattern leave before it is checked.
                    let spent = credit - flow.sides[d].credit;
                    pending[i].retry_at = end + (spent * RETRY_BYTES_PER_WORK).min(self.settings.inspect_window as u64 / 2);
                    i += 1;
                }
                Checked::Alerted | Checked::Never => {
                    pending.swap_remove(i);
                }
                Checked::Deferred if !force => break,
                Checked::Deferred | Checked::OutOfBudget => {
                    self.stats.rules_given_up += 1;
                    pending.swap_remove(i);
                }
            }
        }
        flow.sides[d].pending = pending;
        flow.sides[d].window = window;
    }

    /// Verifies the candidates for `buffers` (a protocol buffer or a datagram: decided now) and
    /// reports the rules that match.
    fn evaluate(&mut self, flow: &mut FlowInspection, dir: u8, direction: Direction, buffers: &Buffers<'_>, hit: &mut dyn FnMut(Hit)) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.engine.candidates(buffers, &mut candidates);
        for &r in &candidates {
            // Packet rules see packets only (one without contents is a candidate anywhere).
            if self.engine.rules()[r as usize].packet.is_some() {
                continue;
            }
            if matches!(self.check(flow, r, dir, direction, buffers, hit), Checked::Deferred | Checked::OutOfBudget) {
                self.stats.rules_given_up += 1;
            }
        }
        self.candidates = candidates;
    }

    /// Protocol, header and flow options of rule `r`, then its contents, within the work the
    /// direction has left (and a rule's share of it).
    fn check(
        &mut self,
        flow: &mut FlowInspection,
        r: u32,
        dir: u8,
        direction: Direction,
        buffers: &Buffers<'_>,
        hit: &mut dyn FnMut(Hit),
    ) -> Checked {
        if flow.alerted.contains(&(r, dir)) {
            return Checked::Never;
        }
        let rule = &self.engine.rules()[r as usize];
        let flow_app = match flow.app {
            App::Known(a) => a,
            _ => app::UNKNOWN,
        };
        let proto_ok = match rule.proto {
            Proto::Tcp => flow.tcp && rule.app_proto().is_none_or(|p| app_code(p) == flow_app),
            Proto::Udp => !flow.tcp,
            p => app_code(p) == flow_app,
        };
        if !proto_ok {
            return Checked::Never;
        }
        let d = usize::from(dir.min(1));
        let (sport, dport) = ports(&flow.ends, dir);
        if !fits_direction(rule, &flow.ends, dir) {
            return Checked::Never;
        }
        if !rule.header_matches(flow.ends.addrs[d], sport, flow.ends.addrs[1 - d], dport, direction) {
            return Checked::NotYet;
        }
        // Its flowbit conditions may hold later (another rule sets or unsets them).
        let bits = &self.flowbits[r as usize];
        if !bits.iter().all(|b| b.holds(&flow.bits)) {
            return Checked::NotYet;
        }
        if let Some(size) = rule.stream_size.filter(|s| !s.holds(flow.stream_sizes)) {
            return if size.may_hold_later(flow.stream_sizes) { Checked::NotYet } else { Checked::Never };
        }
        let longest = rule.items.iter().filter_map(|(b, _)| buffers.get(*b)).map(<[u8]>::len).max().unwrap_or(0) as u64;
        let share = VERIFY_WORK_MIN + VERIFY_WORK_PER_BYTE * longest;
        let credit = &mut flow.sides[d].credit;
        let mut budget = share.min(*credit);
        let given = budget;
        let verified = self.engine.verify(r, buffers, &mut budget);
        *credit -= given - budget;
        self.stats.work += given - budget;
        let limited_by_credit = given < share;
        match verified {
            Verification::Match(end) => {
                flow.alerted.push((r, dir));
                let mut alert = true;
                for b in &self.flowbits[r as usize] {
                    alert &= b.apply(&mut flow.bits);
                }
                if !alert {
                    return Checked::Alerted; // noalert: its bits are set, and it is done
                }
                self.stats.alerts += 1;
                let base = if rule.items.iter().any(|(b, _)| *b == Buffer::Stream) { buffers.stream_base() } else { 0 };
                hit(Hit { rule: r, dir, app: flow_app, stream_offset: base + end as u64 });
                Checked::Alerted
            }
            Verification::NoMatch => Checked::NotYet,
            Verification::OutOfBudget if limited_by_credit => Checked::Deferred,
            Verification::OutOfBudget => Checked::OutOfBudget,
        }
    }
}

/// A rule's `flowbits` option with its bit numbered (see [`number_flowbits`]).
#[derive(Debug, Clone)]
enum Bit {
    IsSet(Vec<u32>),
    IsNotSet(u32),
    Set(u32),
    Unset(u32),
    Toggle(u32),
    NoAlert,
}

impl Bit {
    /// Whether the condition holds for a flow with `bits` set (what is not a condition does).
    fn holds(&self, bits: &[u32]) -> bool {
        match self {
            Bit::IsSet(any) => any.iter().any(|b| bits.contains(b)),
            Bit::IsNotSet(b) => !bits.contains(b),
            _ => true,
        }
    }

    /// Does to `bits` what a match does; false for `noalert`.
    fn apply(&self, bits: &mut Vec<u32>) -> bool {
        match *self {
            Bit::Set(b) if !bits.contains(&b) => bits.push(b),
            Bit::Unset(b) => bits.retain(|&x| x != b),
            Bit::Toggle(b) if bits.contains(&b) => bits.retain(|&x| x != b),
            Bit::Toggle(b) => bits.push(b),
            Bit::NoAlert => return false,
            _ => {}
        }
        true
    }
}

/// Every rule's flowbits, the bits' names numbered in the order they first appear.
fn number_flowbits(rules: &[Rule]) -> Vec<Vec<Bit>> {
    use mbox_sig::rule::Flowbit;
    let mut names: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut number = |name: &String| -> u32 {
        let next = names.len() as u32;
        *names.entry(name.clone()).or_insert(next)
    };
    rules
        .iter()
        .map(|rule| {
            rule.flowbits
                .iter()
                .map(|f| match f {
                    Flowbit::IsSet(any) => Bit::IsSet(any.iter().map(&mut number).collect()),
                    Flowbit::IsNotSet(n) => Bit::IsNotSet(number(n)),
                    Flowbit::Set(n) => Bit::Set(number(n)),
                    Flowbit::Unset(n) => Bit::Unset(number(n)),
                    Flowbit::Toggle(n) => Bit::Toggle(number(n)),
                    Flowbit::NoAlert => Bit::NoAlert,
                })
                .collect()
        })
        .collect()
}

/// Whether an incomplete HTTP head (`rest`, of which the first `tried` bytes were parsed
/// before) is worth parsing again: always while it is short, then only once a blank line may
/// have arrived.
fn worth_parsing_head(rest: &[u8], tried: usize) -> bool {
    if tried == 0 || rest.len() <= HEAD_REPARSE_LIMIT {
        return true;
    }
    let new = &rest[tried.saturating_sub(3).min(rest.len())..];
    memchr::memmem::find(new, b"\n\n").is_some() || memchr::memmem::find(new, b"\n\r\n").is_some()
}

/// The ports of data sent in direction `dir`: (sender's, receiver's).
/// Whether `rule`'s addresses, ports and direction fit what is sent in direction `dir` between
/// `ends`, before or after the handshake.
fn fits_direction(rule: &Rule, ends: &Endpoints, dir: u8) -> bool {
    let d = usize::from(dir.min(1));
    let (sport, dport) = ports(ends, dir);
    [true, false].into_iter().any(|established| {
        let direction = Direction { to_server: d == 0, established };
        rule.header_matches(ends.addrs[d], sport, ends.addrs[1 - d], dport, direction)
    })
}

fn ports(ends: &Endpoints, dir: u8) -> (u16, u16) {
    let d = usize::from(dir.min(1));
    (ends.ports[d], ends.ports[1 - d])
}

/// The protocol a flow is known to have (`app::UNKNOWN` while unknown, or for none parsed here).
fn flow_app(flow: &FlowInspection) -> u8 {
    match flow.app {
        App::Known(a) => a,
        _ => app::UNKNOWN,
    }
}

fn app_code(p: Proto) -> u8 {
    match p {
        Proto::Http => app::HTTP,
        Proto::Tls => app::TLS,
        Proto::Ssh => app::SSH,
        Proto::Smtp => app::SMTP,
        Proto::Dns => app::DNS,
        Proto::Quic => app::QUIC,
        Proto::Tcp | Proto::Udp => app::UNKNOWN,
    }
}

/// Recognises the application protocol from the first bytes of both directions
/// (`mbox_proto::detect`, shared with eve-log).
fn detect(flow: &FlowInspection) -> App {
    if flow.sides.iter().any(|s| s.base > 0) {
        // The starts of the streams are gone (a window slid before anything was recognised).
        return App::Other;
    }
    match mbox_proto::detect::tcp(&flow.sides[0].window, &flow.sides[1].window, flow.ends.ports) {
        Detected::Proto(p) => App::Known(match p {
            AppProto::Http => app::HTTP,
            AppProto::Tls => app::TLS,
            AppProto::Ssh => app::SSH,
            AppProto::Smtp => app::SMTP,
            AppProto::Dns => app::DNS,
        }),
        Detected::Wait => App::Unknown,
        Detected::Other => App::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_sig::{parse_rules, Vars};

    fn matcher(rules: &str) -> Matcher {
        let loaded = parse_rules(rules, &Vars::default());
        assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
        Matcher::new(loaded.rules, Settings { memory_limit: 1 << 30, ..Settings::default() })
    }

    fn ends() -> Endpoints {
        Endpoints { addrs: ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()], ports: [40000, 8000] }
    }

    /// Feeds client segments; returns the sids that alerted.
    fn feed(m: &mut Matcher, segments: &[&[u8]]) -> Vec<u32> {
        let mut flow = m.flow(1, ends(), true, false);
        let (mut offset, mut hits) = (0u64, Vec::new());
        for seg in segments {
            m.stream_data(&mut flow, 0, offset, seg, true, &mut |h| hits.push(h.rule));
            offset += seg.len() as u64;
        }
        m.end(flow, &mut |h| hits.push(h.rule));
        hits.into_iter().map(|r| m.rules()[r as usize].sid).collect()
    }

    /// A ClientHello record naming `sni`.
    fn client_hello(sni: &[u8]) -> Vec<u8> {
        let mut name = vec![0u8];
        name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        name.extend_from_slice(sni);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(name.len() as u16 + 2).to_be_bytes());
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(&name);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut record = vec![22, 3, 1, 0, 0, 1, 0, (body.len() >> 8) as u8, body.len() as u8];
        record[3..5].copy_from_slice(&(body.len() as u16 + 4).to_be_bytes());
        record.extend_from_slice(&body);
        record
    }

    #[test]
    fn smtp_is_followed_through_starttls_once_the_server_agrees() {
        let mut m = matcher(r#"alert tls any any -> any any (msg:"sni"; tls.sni; content:"mx.example"; sid:1;)"#);
        let hello = client_hello(b"mx.example");
        for (answer, alerts) in [(&b"220 2.0.0 Ready to start TLS\r\n"[..], vec![1]), (&b"454 4.7.0 TLS not available\r\n"[..], vec![])] {
            let mut flow = m.flow(1, Endpoints { ports: [40000, 25], ..ends() }, true, false);
            let (mut at, mut hits) = ([0u64; 2], Vec::new());
            let conversation: [(u8, &[u8]); 6] = [
                (1, b"220 mx.example ESMTP\r\n"),
                (0, b"EHLO c.example\r\n"),
                (1, b"250-mx.example\r\n250 STARTTLS\r\n"),
                (0, b"STARTTLS\r\n"),
                (1, answer),
                (0, &hello),
            ];
            for (dir, bytes) in conversation {
                m.stream_data(&mut flow, dir, at[usize::from(dir)], bytes, true, &mut |h| hits.push(h.rule));
                at[usize::from(dir)] += bytes.len() as u64;
            }
            m.end(flow, &mut |h| hits.push(h.rule));
            let sids: Vec<u32> = hits.into_iter().map(|r| m.rules()[r as usize].sid).collect();
            assert_eq!(sids, alerts, "answered {:?}", String::from_utf8_lossy(answer));
        }
    }

    /// A request from the client, then the server's response; returns the sids that alerted.
    fn exchange(m: &mut Matcher, request: &[u8], response: &[u8]) -> Vec<u32> {
        let mut flow = m.flow(1, ends(), true, false);
        let mut hits = Vec::new();
        m.stream_data(&mut flow, 0, 0, request, true, &mut |h| hits.push(h.rule));
        m.stream_data(&mut flow, 1, 0, response, true, &mut |h| hits.push(h.rule));
        m.end(flow, &mut |h| hits.push(h.rule));
        let mut sids: Vec<u32> = hits.into_iter().map(|r| m.rules()[r as usize].sid).collect();
        sids.sort_unstable();
        sids
    }

    #[test]
    fn http_buffers_of_a_head_and_its_body_match_together() {
        let rules = r#"alert http any any -> any any (msg:"h"; flow:to_server; http.header; content:"X-Evil: 1|0d 0a|"; sid:1;)
alert http any any -> any any (msg:"c"; http.cookie; content:"session=1"; http.header; content:!"session"; sid:2;)
alert http any any -> any any (msg:"b"; http.method; content:"POST"; http.uri; content:"/up"; http.request_body; content:"payload"; sid:3;)
alert http any any -> any any (msg:"s"; flow:from_server,established; http.stat_code; content:"200"; file.data; content:"SQL syntax"; sid:4;)
alert http any any -> any any (msg:"n"; http.header_names; content:"|0d 0a|Host|0d 0a|Cookie|0d 0a|"; sid:5;)
alert http any any -> any any (msg:"z"; http.stat_code; content:"200"; bsize:3; http.content_type; content:"text/html"; sid:6;)
alert http any any -> any any (msg:"never"; http.stat_code; content:"404"; file.data; content:"SQL"; sid:7;)
alert http any any -> any any (msg:"never"; http.request_body; content:"SQL syntax"; sid:8;)"#;
        let mut m = matcher(rules);
        let request = b"POST /up HTTP/1.1\r\nHost: a\r\nCookie: session=1\r\nX-Evil: 1\r\nContent-Length: 7\r\n\r\npayload";
        let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\n\r\nerror in SQL syntax!";
        assert_eq!(exchange(&mut m, request, response), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn flowbits_set_by_one_rule_gate_another_and_noalert_stays_quiet() {
        let rules = r#"alert http any any -> any any (msg:"set"; flow:to_server; http.user_agent; content:"Java/1.8"; flowbits:set,java; flowbits:noalert; sid:1;)
alert http any any -> any any (msg:"gated"; flow:to_client; flowbits:isset,other|java; file.data; content:"CAFE"; sid:2;)
alert http any any -> any any (msg:"not if java"; flow:to_client; flowbits:isnotset,java; file.data; content:"CAFE"; sid:3;)
alert http any any -> any any (msg:"never set"; flow:to_client; flowbits:isset,other; file.data; content:"CAFE"; sid:4;)"#;
        let mut m = matcher(rules);
        let java = b"GET /a HTTP/1.1\r\nUser-Agent: Java/1.8.0_40\r\n\r\n";
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nCAFE";
        assert_eq!(exchange(&mut m, java, response), [2], "the setter raises nothing; the bit lets sid 2 through, keeps sid 3 out");
        let curl = b"GET /a HTTP/1.1\r\nUser-Agent: curl\r\n\r\n";
        assert_eq!(exchange(&mut m, curl, response), [3], "another flow: no bit");
    }

    /// A packet of `flow` with these flags and payload, the stream sizes as they stand after
    /// it; returns the sids that alerted and whether the flow's packets are still wanted.
    fn packet(m: &mut Matcher, flow: &mut FlowInspection, dir: u8, flags: u8, payload: &[u8], sizes: [u32; 2]) -> (Vec<u32>, bool) {
        flow.set_stream_sizes(sizes);
        let mut hits = Vec::new();
        let established = sizes[1] > 0;
        let wanted = m.packet(flow, dir, &TcpPacket { flags, payload, established }, &mut |h| hits.push(h.rule));
        (hits.into_iter().map(|r| m.rules()[r as usize].sid).collect(), wanted)
    }

    #[test]
    fn packet_rules_see_each_packet_its_flags_size_and_payload() {
        use mbox_abi::tcp_flags::*;
        // ET Open's SYN-scan rule (its threshold is the plugin's), the LDAP anonymous bind pair
        // (packet rules with dsize, stream_size and a flowbit between them), a stream rule the
        // flowbit gates, and a tcp-pkt rule.
        let rules = r#"alert tcp any any -> any 8000 (msg:"syn"; flow:to_server; flags:S,12; sid:1;)
alert tcp any any -> any any (msg:"bind"; flow:established,to_server; flowbits:set,bind; flowbits:isnotset,bind; stream_size:server,<,5; dsize:14; content:"|30 0c 02 01|"; startswith; content:"|60 07 02 01 03 04 00 80 00|"; endswith; sid:2;)
alert tcp any any -> any any (msg:"bound"; flow:established,to_client; flowbits:isset,bind; stream_size:server,<,50; dsize:14; content:"|30 0c 02 01|"; startswith; content:"|61 07 0a 01 00 04 00 04 00|"; endswith; sid:3;)
alert tcp any any -> any any (msg:"java"; flow:established,to_client; flowbits:isset,bind; content:"javaClassName"; sid:4;)
alert tcp-pkt any any -> any 8000 (msg:"pkt"; content:"PKTONLY"; sid:5;)"#;
        let mut m = matcher(rules);
        let mut flow = m.flow(1, ends(), true, false);
        assert_eq!(packet(&mut m, &mut flow, 0, SYN | ECE | CWR, b"", [1, 0]), (vec![1], true), "an ECN-setup SYN is flags:S,12");
        assert_eq!(packet(&mut m, &mut flow, 1, SYN | ACK, b"", [1, 1]).0, Vec::<u32>::new());
        let bind = b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00";
        assert_eq!(packet(&mut m, &mut flow, 0, PSH | ACK, bind, [15, 1]).0, vec![2], "isnotset holds before the set");
        let answer = b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00";
        assert_eq!(packet(&mut m, &mut flow, 1, PSH | ACK, answer, [15, 15]).0, vec![3]);
        // The stream rule the bit gates, on the stream.
        let mut hits = Vec::new();
        m.stream_data(&mut flow, 1, 0, b"..javaClassName..", true, &mut |h| hits.push(h.rule));
        m.stream_end(&mut flow, 1, &mut |h| hits.push(h.rule));
        assert_eq!(hits.iter().map(|&r| m.rules()[r as usize].sid).collect::<Vec<_>>(), [4]);
        // Packet rules are not stream rules: the tcp-pkt content in the stream is not an alert.
        let mut hits = Vec::new();
        m.stream_data(&mut flow, 0, 14, b"PKTONLY", true, &mut |h| hits.push(h.rule));
        m.stream_end(&mut flow, 0, &mut |h| hits.push(h.rule));
        assert!(hits.is_empty());
        // The same rule on a packet alerts; then every packet rule has alerted or is past its
        // stream_size bound: the flow's packets are no longer wanted.
        let (sids, wanted) = packet(&mut m, &mut flow, 0, PSH | ACK, b"xPKTONLYx", [60, 60]);
        assert_eq!(sids, [5]);
        assert!(!wanted, "every packet rule alerted or is past its stream_size");
        // Another flow's wrong sizes, flags and directions.
        let mut other = m.flow(2, ends(), true, false);
        assert_eq!(packet(&mut m, &mut other, 0, SYN | ACK, b"", [1, 0]).0, Vec::<u32>::new(), "not exactly S");
        assert_eq!(packet(&mut m, &mut other, 1, SYN, b"", [1, 1]).0, Vec::<u32>::new(), "to_server only");
        assert_eq!(packet(&mut m, &mut other, 0, PSH | ACK, bind, [15, 6]).0, Vec::<u32>::new(), "the server spoke first");
        let mut long = bind.to_vec();
        long.push(0);
        assert_eq!(packet(&mut m, &mut other, 0, PSH | ACK, &long, [16, 1]).0, Vec::<u32>::new(), "dsize:14");
    }

    #[test]
    fn a_flow_no_packet_rule_fits_is_let_go_at_its_first_packet() {
        let mut m = matcher(
            r#"alert tcp any any -> any 5432 (msg:"syn"; flow:to_server; flags:S; sid:1;)
alert tcp any any -> any any (msg:"stream"; content:"x"; sid:2;)"#,
        );
        let mut flow = m.flow(1, ends(), true, false);
        assert_eq!(packet(&mut m, &mut flow, 0, mbox_abi::tcp_flags::SYN, b"", [1, 0]), (vec![], false));
        // A packet that was on its way when the flow was let go: nothing more counted.
        assert_eq!(packet(&mut m, &mut flow, 1, mbox_abi::tcp_flags::SYN, b"", [1, 1]), (vec![], false));
        assert_eq!((m.stats.packets_inspected, m.stats.flows_without_packet_rules), (0, 1));
        assert!(m.has_packet_rules());
        // A stream rule with stream_size decides it when it matches.
        let mut m =
            matcher(r#"alert tcp any any -> any any (msg:"first words"; flow:to_server; stream_size:server,<,5; content:"hello"; sid:1;)"#);
        for (server, alerts) in [(1, 1), (9, 0)] {
            let mut flow = m.flow(1, ends(), true, false);
            flow.set_stream_sizes([7, server]);
            let mut hits = Vec::new();
            m.stream_data(&mut flow, 0, 0, b"hello!", true, &mut |h| hits.push(h.rule));
            m.end(flow, &mut |h| hits.push(h.rule));
            assert_eq!(hits.len(), alerts, "server stream size {server}");
        }
    }

    #[test]
    fn quic_buffers_come_from_long_headers_and_the_first_flight() {
        let mut m = matcher(
            r#"alert quic any any -> any any (msg:"sni"; quic.sni; content:"big.example"; sid:1;)
alert quic any any -> any any (msg:"v1"; flow:to_client; quic.version; content:"|00 00 00 01|"; sid:2;)"#,
        );
        let mut flow = m.flow(1, ends(), false, false);
        let mut hits = Vec::new();
        // The server's long header (any packet of it: the version is in the clear).
        let mut server = vec![0xe0, 0, 0, 0, 1, 0, 8];
        server.extend_from_slice(&[5; 8]);
        server.extend_from_slice(&[0x40, 0x20]);
        server.extend_from_slice(&[0; 40]);
        m.datagram(&mut flow, 1, &server, Some(1), &mut |h| hits.push(h.rule));
        m.quic_first_flight(&mut flow, u32::from_be_bytes(*b"Q050"), b"big.example", &mut |h| hits.push(h.rule));
        assert_eq!(hits.len(), 1, "a Google version's hello fills no quic.sni");
        m.quic_first_flight(&mut flow, 1, b"big.example", &mut |h| hits.push(h.rule));
        let sids: Vec<u32> = hits.iter().map(|&r| m.rules()[r as usize].sid).collect();
        assert_eq!(sids, [2, 1], "the server's version, then the name of the first flight");
    }

    #[test]
    fn a_rule_completed_by_a_later_segment_alerts() {
        let mut m = matcher(r#"alert tcp any any -> any any (msg:"x"; content:"LONGPATTERN"; content:"X"; distance:0; sid:1;)"#);
        assert_eq!(feed(&mut m, &[b"LONGPATTERN..X"]), [1]);
        assert_eq!(feed(&mut m, &[b"LONGPATTERN..", b"..X"]), [1], "the fast pattern came first, the rest later");
        assert_eq!(feed(&mut m, &[b"LONGPAT", b"TERN..X"]), [1], "a pattern split across segments");
        assert!(feed(&mut m, &[b"LONGPATTERN..", b"..Y"]).is_empty());
    }

    #[test]
    fn a_client_that_never_finishes_a_request_line_costs_little() {
        let mut m = matcher(r#"alert http any any -> any any (msg:"x"; content:"jndi:"; sid:1;)"#);
        let chunk = vec![b'A'; 1460];
        let segments: Vec<&[u8]> = (0..700).map(|_| chunk.as_slice()).collect();
        let started = std::time::Instant::now();
        assert!(feed(&mut m, &segments).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    fn with(rules: &str, settings: Settings) -> Matcher {
        let loaded = parse_rules(rules, &Vars::default());
        assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
        Matcher::new(loaded.rules, settings)
    }

    /// Feeds `total` client bytes of `fill` in `segment`-byte pieces into an open flow.
    fn stream(m: &mut Matcher, flow: &mut FlowInspection, offset: &mut u64, bytes: &[u8], hits: &mut Vec<u32>) {
        for piece in bytes.chunks(1448) {
            m.stream_data(flow, 0, *offset, piece, true, &mut |h| hits.push(h.rule));
            *offset += piece.len() as u64;
        }
    }

    #[test]
    fn matches_are_found_within_the_window_and_not_beyond_it() {
        let rules = r#"alert tcp any any -> any any (msg:"x"; content:"LONGPATTERN"; content:"X"; distance:0; sid:1;)"#;
        let mut m = with(rules, Settings { inspect_window: 4096, ..Settings::default() });
        let near = [b"LONGPATTERN".as_slice(), &vec![b'.'; 3000], b"X"].concat();
        assert_eq!(feed(&mut m, &[&near]), [1]);
        // Far apart, the pattern leaves the window before its rule can hold.
        let mut flow = m.flow(2, ends(), true, false);
        let (mut offset, mut hits) = (0, Vec::new());
        stream(&mut m, &mut flow, &mut offset, b"LONGPATTERN", &mut hits);
        stream(&mut m, &mut flow, &mut offset, &vec![b'.'; 20_000], &mut hits);
        assert!(flow.sides[0].pending.is_empty(), "the rule whose pattern left is no longer pending");
        assert!(flow.sides[0].window.len() <= 2 * 4096);
        stream(&mut m, &mut flow, &mut offset, b"X", &mut hits);
        m.end(flow, &mut |h| hits.push(h.rule));
        assert!(hits.is_empty());
        assert_eq!(m.kept_bytes(), 0);
    }

    #[test]
    fn a_stream_end_decides_what_is_pending_and_lets_its_bytes_go() {
        let rules = "alert tcp any any -> any any (msg:\"x\"; content:\"evil\"; content:\"!\"; distance:0; sid:1;)\n\
                     alert tcp any any -> any any (msg:\"y\"; content:\"later\"; sid:2;)";
        let mut m = matcher(rules);
        let mut flow = m.flow(1, ends(), true, false);
        let (mut offset, mut hits) = (0, Vec::new());
        stream(&mut m, &mut flow, &mut offset, b"evil", &mut hits);
        stream(&mut m, &mut flow, &mut offset, b" then !", &mut hits);
        assert_eq!(hits, [0]);
        assert!(m.kept_bytes() > 0);
        m.stream_end(&mut flow, 0, &mut |h| hits.push(h.rule));
        assert_eq!(m.kept_bytes(), 0, "the ended direction's window is let go while the flow lives on");
        // Bytes after the end (a FIN that never reached the server?) are still inspected.
        stream(&mut m, &mut flow, &mut offset, b"later", &mut hits);
        assert_eq!(hits, [0, 1]);
        m.end(flow, &mut |_| {});
        assert_eq!((m.stats.directions_released, m.kept_bytes()), (1, 0));
    }

    #[test]
    fn a_direction_is_let_go_once_no_rule_can_reach_further() {
        let rules = r#"alert tcp any any -> any any (msg:"x"; content:"GET"; depth:3; content:"admin"; distance:0; within:100; sid:1;)"#;
        let mut m = matcher(rules);
        let mut flow = m.flow(1, ends(), true, false);
        let (mut offset, mut hits) = (0, Vec::new());
        // Recognised as HTTP, whose stream rules reach at most 103 bytes in.
        stream(&mut m, &mut flow, &mut offset, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", &mut hits);
        stream(&mut m, &mut flow, &mut offset, &vec![b'.'; 4000], &mut hits);
        assert_eq!(m.kept_bytes(), 0, "nothing can match beyond byte 103");
        assert_eq!(m.stats.directions_released, 1);
        m.end(flow, &mut |_| {});
        assert_eq!(feed(&mut m, &[b"GET /admin"]), [1]);
    }

    #[test]
    fn the_memory_limit_refuses_new_directions_and_counts_them() {
        let rules = r#"alert tcp any any -> any any (msg:"x"; content:"evil"; sid:1;)"#;
        let mut m = with(rules, Settings { memory_limit: 3000, ..Settings::default() });
        let mut first = m.flow(1, ends(), true, false);
        let (mut a, mut hits) = (0, Vec::new());
        stream(&mut m, &mut first, &mut a, &[b'.'; 2000], &mut hits);
        let mut second = m.flow(2, ends(), true, false);
        let mut b = 0;
        stream(&mut m, &mut second, &mut b, &[b'.'; 1500], &mut hits);
        stream(&mut m, &mut second, &mut b, b"evil", &mut hits);
        assert!(hits.is_empty());
        assert_eq!((m.stats.directions_over_memory, m.stats.bytes_over_memory), (1, 1504));
        m.end(second, &mut |_| {});
        m.end(first, &mut |_| {});
        assert_eq!(m.kept_bytes(), 0);
        // Memory is back: new directions are inspected again.
        assert_eq!(feed(&mut m, &[b"evil"]), [1]);
    }
}
