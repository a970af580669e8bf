//! What sig-match does with a flow's bytes, apart from the ABI: keeps each direction's stream
//! (up to a depth), recognises the application protocol, feeds the protocol parsers, and asks
//! the engine which rules match the stream and the protocol buffers. Matches come out through a
//! callback; each rule alerts at most once per flow and direction.

use mbox_abi::app;
use mbox_proto::{dns, http, ssh, tls, Parse};
use mbox_sig::{Buffer, Buffers, Direction, Engine, Proto, Rule};
use std::net::IpAddr;

/// Limits and choices, from the plugin's arguments.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Stream bytes kept and inspected per direction (Suricata: `stream.reassembly.depth`).
    pub stream_depth: usize,
    /// HTTP body bytes inspected per message (Suricata: `response-body-limit`).
    pub body_limit: usize,
    /// Inspect connections picked up without their handshake (Suricata: `stream.midstream`).
    pub midstream: bool,
    /// Stream bytes kept by all flows together.
    pub memory_limit: usize,
}

/// Spare buffers kept for new flows, and the largest kept (bigger ones are freed).
const SPARE_BUFFERS: usize = 1024;
const SPARE_MAX: usize = 64 << 10;

/// Bytes of a client's stream after which an unrecognised protocol is given up.
const DETECT_LIMIT: usize = 8192;

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
    /// look at the stream there, compiled on their own: a direction no stream rule applies to
    /// is not scanned (nor kept), one few rules apply to is scanned for few patterns.
    contexts: Vec<Option<StreamRules>>,
    /// Which protocol parsers some rule needs.
    needs: Needs,
    settings: Settings,
    candidates: Vec<u32>,
    /// Longest fast pattern among stream rules, less one: how far back a scan of new stream
    /// bytes starts, so a pattern split across two deliveries is found.
    overlap: usize,
    /// Recycled stream and body buffers (a flow's buffers go back here when it ends).
    spare: Vec<Vec<u8>>,
    /// Stream bytes kept by every flow together (bounded by `Settings::memory_limit`).
    kept_bytes: usize,
    /// The HTTP host being inspected, lower-cased (reused).
    host: Vec<u8>,
    pub stats: Stats,
}

/// The stream rules of one context, and their indices among all rules.
struct StreamRules {
    engine: Engine,
    global: Vec<u32>,
}

/// Which buffers the loaded rules look at (parsers nobody needs do not run).
#[derive(Debug, Default, Clone, Copy)]
struct Needs {
    http_request: bool,
    file_data: bool,
    tls_sni: bool,
    ssh_software: bool,
    dns_query: bool,
}

/// The index of a stream context: an application protocol (`app::*`, `app::UNKNOWN` while
/// unknown or for none this NF parses) and a direction.
fn context(app: u8, dir: u8) -> usize {
    usize::from(app) * 2 + usize::from(dir.min(1))
}

/// Whether `rule` looks at the stream of a TCP connection of `app` in direction `dir`.
fn applies_to_stream(rule: &Rule, app: u8, dir: u8) -> bool {
    if !rule.items.iter().any(|(b, _)| *b == Buffer::Stream) || rule.flow.to_server.is_some_and(|t| t != (dir == 0)) {
        return false;
    }
    match rule.proto {
        Proto::Tcp => rule.app_proto().is_none_or(|p| app_code(p) == app),
        Proto::Udp => false,
        p => app_code(p) == app,
    }
}

/// Counters for the NF's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub bytes_inspected: u64,
    pub bytes_beyond_depth: u64,
    /// Bytes not inspected because every flow's kept bytes reached the memory limit.
    pub bytes_over_memory: u64,
    pub directions_with_gaps: u64,
    pub midstream_flows_skipped: u64,
    pub alerts: u64,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
struct Side {
    /// The stream from its start, up to the depth.
    stream: Vec<u8>,
    /// Next stream offset expected; data elsewhere (a gap, or events lost) ends inspection.
    next: u64,
    broken: bool,
    /// Scanned for rules that need no protocol, and for rules that do (only once it is known).
    scanned_any: usize,
    scanned_app: usize,
    /// Where the protocol parser goes on.
    parsed: usize,
    /// HTTP: the body being read (decoder and the bytes kept for inspection).
    body: Option<(http::BodyDecoder, Vec<u8>)>,
    /// SSH: the identification line was read.
    banner_done: bool,
    /// Nothing more of this direction is needed (no rule looks there): not kept.
    ignored: bool,
    /// Stream rules whose fast pattern was seen but whose other steps did not hold yet (they
    /// may once more bytes come): checked again with every new piece of the stream.
    pending: Vec<u32>,
}

/// Rules a direction keeps waiting at most (the rest are not retried).
const MAX_PENDING: usize = 64;

/// What checking a rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    Alerted,
    /// Its steps do not hold (yet); more bytes or a later state may change that.
    NotYet,
    /// Never for this flow and direction (already alerted, other protocol or addresses).
    Never,
}

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
    skipped: bool,
    /// Transport: TCP or UDP.
    tcp: bool,
}

impl Matcher {
    pub fn new(rules: Vec<Rule>, settings: Settings) -> Matcher {
        let overlap = rules
            .iter()
            .flat_map(|r| r.items.iter())
            .filter(|(b, _)| *b == Buffer::Stream)
            .filter_map(|(_, i)| match i {
                mbox_sig::rule::Item::Content(c) => Some(c.pattern.len()),
                _ => None,
            })
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        let mut needs = Needs::default();
        for (buffer, _) in rules.iter().flat_map(|r| r.items.iter()) {
            match buffer {
                Buffer::HttpUri | Buffer::HttpHost | Buffer::HttpMethod | Buffer::HttpUserAgent => needs.http_request = true,
                Buffer::FileData => needs.file_data = true,
                Buffer::TlsSni => needs.tls_sni = true,
                Buffer::SshSoftware => needs.ssh_software = true,
                Buffer::DnsQuery => needs.dns_query = true,
                Buffer::Stream => {}
            }
        }
        let max_app = app::ALL.iter().copied().max().unwrap_or(0);
        let contexts = (0..=context(max_app, 1))
            .map(|c| {
                let (app, dir) = ((c / 2) as u8, (c % 2) as u8);
                let global: Vec<u32> = (0..rules.len() as u32).filter(|&r| applies_to_stream(&rules[r as usize], app, dir)).collect();
                (!global.is_empty())
                    .then(|| StreamRules { engine: Engine::new(global.iter().map(|&r| rules[r as usize].clone()).collect()), global })
            })
            .collect();
        Matcher {
            engine: Engine::new(rules),
            contexts,
            needs,
            settings,
            candidates: Vec::new(),
            overlap,
            spare: Vec::new(),
            kept_bytes: 0,
            host: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        self.engine.rules()
    }

    /// State for a new flow.
    pub fn flow(&mut self, id: u64, ends: Endpoints, tcp: bool, midstream: bool) -> FlowInspection {
        let skipped = tcp && midstream && !self.settings.midstream;
        if skipped {
            self.stats.midstream_flows_skipped += 1;
        }
        FlowInspection {
            id,
            ends,
            app: App::Unknown,
            sides: [Side::default(), Side::default()],
            pending_methods: Default::default(),
            alerted: Vec::new(),
            skipped,
            tcp,
        }
    }

    /// Takes a flow's state back at its end: inspects what is still pending (a body the
    /// connection's close ended) and recycles its buffers.
    pub fn end(&mut self, mut flow: FlowInspection, hit: &mut dyn FnMut(Hit)) {
        for dir in 0..2 {
            if let Some((_, body)) = flow.sides[dir].body.take() {
                self.inspect_body(&mut flow, dir as u8, &body, hit);
                self.recycle(body);
            }
        }
        for side in flow.sides {
            self.recycle(side.stream);
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
        if side.broken || side.ignored {
            return;
        }
        if offset != side.next {
            // A gap (or events that never came): later bytes are not where they seem.
            side.broken = true;
            self.stats.directions_with_gaps += 1;
            return;
        }
        side.next += bytes.len() as u64;
        if side.stream.capacity() == 0 {
            side.stream = self.spare.pop().unwrap_or_default();
        }
        let room = self.settings.stream_depth.saturating_sub(side.stream.len());
        let take = room.min(bytes.len());
        if self.kept_bytes + take > self.settings.memory_limit {
            // Every flow's kept bytes together are bounded: this direction is not inspected
            // further (counted).
            self.stats.bytes_over_memory += bytes.len() as u64;
            side.ignored = true;
            let buf = std::mem::take(&mut side.stream);
            self.recycle(buf);
            return;
        }
        side.stream.extend_from_slice(&bytes[..take]);
        self.kept_bytes += take;
        self.stats.bytes_inspected += take as u64;
        self.stats.bytes_beyond_depth += (bytes.len() - take) as u64;
        if take == 0 {
            return;
        }
        if flow.app == App::Unknown {
            flow.app = detect(flow);
        }
        self.parse_app(flow, dir, hit);
        self.scan_stream(flow, dir, established, hit);
        if flow.app != App::Unknown && !self.wants(flow, dir) {
            let side = &mut flow.sides[d];
            side.ignored = true;
            let buf = std::mem::take(&mut side.stream);
            self.recycle(buf);
        }
    }

    /// Whether anything still needs direction `dir` of `flow` (once its protocol is decided):
    /// stream rules of its context, or a parser some rule needs.
    fn wants(&self, flow: &FlowInspection, dir: u8) -> bool {
        let a = flow_app(flow);
        if self.contexts[context(a, dir)].is_some() {
            return true;
        }
        let side = &flow.sides[usize::from(dir.min(1))];
        match a {
            app::HTTP if dir == 0 => self.needs.http_request || self.needs.file_data,
            app::HTTP => self.needs.file_data,
            app::TLS => dir == 0 && self.needs.tls_sni && side.parsed == 0,
            app::SSH => self.needs.ssh_software && !side.banner_done,
            app::DNS => dir == 0 && self.needs.dns_query,
            _ => false,
        }
    }

    /// Bytes of direction `dir` are missing for good: what follows is not inspected.
    pub fn gap(&mut self, flow: &mut FlowInspection, dir: u8) {
        let side = &mut flow.sides[usize::from(dir.min(1))];
        if !side.broken {
            side.broken = true;
            self.stats.directions_with_gaps += 1;
        }
    }

    /// A UDP datagram's payload, sent in direction `dir`.
    pub fn datagram(&mut self, flow: &mut FlowInspection, dir: u8, payload: &[u8], hit: &mut dyn FnMut(Hit)) {
        let (sport, dport) = ports(&flow.ends, dir);
        let direction = Direction { to_server: dir == 0, established: true };
        let is_dns = (sport == 53 || dport == 53) && dns::header(payload).is_some();
        if is_dns {
            flow.app = App::Known(app::DNS);
            if dns::header(payload).is_some_and(|h| !h.is_response) {
                dns::for_each_question(payload, |name| {
                    let mut b = Buffers::default();
                    b.set(Buffer::DnsQuery, name);
                    self.evaluate(flow, dir, direction, &b, hit);
                });
            }
        }
        let mut b = Buffers::default();
        b.set(Buffer::Stream, payload);
        self.evaluate(flow, dir, direction, &b, hit);
    }

    /// Runs the protocol parser on what came in direction `dir`.
    fn parse_app(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        match flow.app {
            App::Known(app::HTTP) => self.parse_http(flow, dir, hit),
            App::Known(app::TLS) if dir == 0 && flow.sides[0].parsed == 0 => {
                if let Parse::Done(hello) = tls::client_hello(&flow.sides[0].stream) {
                    flow.sides[0].parsed = flow.sides[0].stream.len();
                    if let Some(sni) = hello.sni {
                        let mut b = Buffers::default();
                        b.set(Buffer::TlsSni, &sni);
                        self.evaluate(flow, 0, Direction { to_server: true, established: true }, &b, hit);
                    }
                }
            }
            App::Known(app::SSH) if !flow.sides[d].banner_done => {
                let stream = std::mem::take(&mut flow.sides[d].stream);
                if let Parse::Done(banner) = ssh::banner(&stream) {
                    flow.sides[d].banner_done = true;
                    let mut b = Buffers::default();
                    b.set(Buffer::SshSoftware, banner.software);
                    self.evaluate(flow, dir, Direction { to_server: dir == 0, established: true }, &b, hit);
                }
                flow.sides[d].stream = stream;
            }
            App::Known(app::DNS) if dir == 0 => {
                let stream = std::mem::take(&mut flow.sides[0].stream);
                let from = flow.sides[0].parsed.min(stream.len());
                let used = dns::tcp_messages(&stream[from..], |msg| {
                    if dns::header(msg).is_some_and(|h| !h.is_response) {
                        dns::for_each_question(msg, |name| {
                            let mut b = Buffers::default();
                            b.set(Buffer::DnsQuery, name);
                            self.evaluate(flow, 0, Direction { to_server: true, established: true }, &b, hit);
                        });
                    }
                });
                flow.sides[0].parsed = from + used;
                flow.sides[0].stream = stream;
            }
            _ => {}
        }
    }

    /// HTTP: requests (client) and responses (server) one after another, bodies included.
    fn parse_http(&mut self, flow: &mut FlowInspection, dir: u8, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        let stream = std::mem::take(&mut flow.sides[d].stream);
        let direction = Direction { to_server: dir == 0, established: true };
        loop {
            let at = flow.sides[d].parsed.min(stream.len());
            if let Some((mut decoder, mut body)) = flow.sides[d].body.take() {
                let limit = self.settings.body_limit;
                let before = body.len();
                let fed = decoder.feed(&stream[at..], &mut |chunk| {
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
                        flow.sides[d].parsed = usize::MAX;
                        break;
                    }
                };
                flow.sides[d].parsed = at + consumed;
                if decoder.is_done() {
                    self.inspect_body(flow, dir, &body, hit);
                    self.recycle(body);
                    continue;
                }
                flow.sides[d].body = Some((decoder, body));
                break;
            }
            if at >= stream.len() {
                break;
            }
            let rest = &stream[at..];
            let length = if dir == 0 {
                match http::request_head(rest) {
                    Parse::Done(head) => {
                        let mut b = Buffers::default();
                        b.set(Buffer::HttpMethod, head.method).set(Buffer::HttpUri, head.uri);
                        // Suricata's http.host is lower-cased.
                        let mut host = std::mem::take(&mut self.host);
                        host.clear();
                        if let Some(h) = head.host {
                            host.extend(h.iter().map(u8::to_ascii_lowercase));
                            b.set(Buffer::HttpHost, &host);
                        }
                        if let Some(ua) = head.user_agent {
                            b.set(Buffer::HttpUserAgent, ua);
                        }
                        self.evaluate(flow, dir, direction, &b, hit);
                        self.host = host;
                        flow.pending_methods.push_back(head.method.eq_ignore_ascii_case(b"HEAD"));
                        flow.sides[d].parsed = at + head.head_len;
                        head.body
                    }
                    Parse::Partial => break,
                    Parse::Invalid => {
                        flow.sides[d].parsed = usize::MAX;
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
                        flow.sides[d].parsed = at + head.head_len;
                        head.body
                    }
                    Parse::Partial => break,
                    Parse::Invalid => {
                        flow.sides[d].parsed = usize::MAX;
                        break;
                    }
                }
            };
            if length != http::BodyLength::None {
                flow.sides[d].body = Some((http::BodyDecoder::new(length), self.buffer()));
            }
        }
        flow.sides[d].stream = stream;
    }

    fn inspect_body(&mut self, flow: &mut FlowInspection, dir: u8, body: &[u8], hit: &mut dyn FnMut(Hit)) {
        if body.is_empty() {
            return;
        }
        let mut b = Buffers::default();
        b.set(Buffer::FileData, body);
        self.evaluate(flow, dir, Direction { to_server: dir == 0, established: true }, &b, hit);
    }

    /// Rules on the stream itself: the new bytes (and an overlap before them) go through the
    /// prefilter; candidates are verified against the whole stream kept so far.
    fn scan_stream(&mut self, flow: &mut FlowInspection, dir: u8, established: bool, hit: &mut dyn FnMut(Hit)) {
        let d = usize::from(dir.min(1));
        let direction = Direction { to_server: dir == 0, established };
        let app_known = flow.app != App::Unknown;
        let Some(ctx) = self.contexts[context(flow_app(flow), dir)].as_ref() else {
            flow.sides[d].scanned_any = flow.sides[d].stream.len();
            return;
        };
        let stream = std::mem::take(&mut flow.sides[d].stream);
        // While the protocol is unknown, the context holds only rules that need none; once it
        // is known, its context's rules see the stream from the start.
        let from = if app_known { flow.sides[d].scanned_app } else { flow.sides[d].scanned_any };
        let start = from.saturating_sub(self.overlap);
        let mut b = Buffers::default();
        b.set(Buffer::Stream, &stream[start..]);
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        ctx.engine.candidates(&b, &mut candidates);
        // The context engine's rule numbers, as rule numbers of all rules.
        for r in candidates.iter_mut() {
            *r = ctx.global[*r as usize];
        }
        let mut whole = Buffers::default();
        whole.set(Buffer::Stream, &stream);
        let mut pending = std::mem::take(&mut flow.sides[d].pending);
        for &r in &candidates {
            // A rule whose fast pattern is here but whose other steps do not hold yet is
            // checked again as more of the stream comes.
            match self.check(flow, r, dir, direction, &whole, hit) {
                Checked::NotYet if !pending.contains(&r) && pending.len() < MAX_PENDING => pending.push(r),
                Checked::NotYet => {}
                Checked::Alerted | Checked::Never => pending.retain(|&p| p != r),
            }
        }
        // Rules waiting since earlier bytes, whose fast pattern is not in these new ones.
        pending.retain(|&r| candidates.contains(&r) || self.check(flow, r, dir, direction, &whole, hit) == Checked::NotYet);
        flow.sides[d].pending = pending;
        self.candidates = candidates;
        flow.sides[d].scanned_any = stream.len();
        if app_known {
            flow.sides[d].scanned_app = stream.len();
        }
        flow.sides[d].stream = stream;
    }

    /// Verifies the candidates for `buffers` and reports the rules that match.
    fn evaluate(&mut self, flow: &mut FlowInspection, dir: u8, direction: Direction, buffers: &Buffers<'_>, hit: &mut dyn FnMut(Hit)) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.engine.candidates(buffers, &mut candidates);
        for &r in &candidates {
            self.check(flow, r, dir, direction, buffers, hit);
        }
        self.candidates = candidates;
    }

    /// Protocol, header and flow options of rule `r`, then its contents.
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
        let addresses_ok =
            rule.header_matches(flow.ends.addrs[d], sport, flow.ends.addrs[1 - d], dport, Direction { established: true, ..direction })
                || rule.header_matches(
                    flow.ends.addrs[d],
                    sport,
                    flow.ends.addrs[1 - d],
                    dport,
                    Direction { established: false, ..direction },
                );
        if !addresses_ok {
            return Checked::Never;
        }
        if !rule.header_matches(flow.ends.addrs[d], sport, flow.ends.addrs[1 - d], dport, direction) {
            return Checked::NotYet;
        }
        let Some(end) = self.engine.verify(r, buffers) else { return Checked::NotYet };
        flow.alerted.push((r, dir));
        self.stats.alerts += 1;
        hit(Hit { rule: r, dir, app: flow_app, stream_offset: end as u64 });
        Checked::Alerted
    }
}

/// The ports of data sent in direction `dir`: (sender's, receiver's).
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
        Proto::Tcp | Proto::Udp => app::UNKNOWN,
    }
}

/// Recognises the application protocol from the first bytes of both directions, the way
/// Suricata's probing parsers do: by content, with the port only for DNS over TCP.
fn detect(flow: &FlowInspection) -> App {
    let (client, server) = (&flow.sides[0].stream, &flow.sides[1].stream);
    for side in [client, server] {
        if matches!(ssh::banner(side), Parse::Done(_)) && side.starts_with(b"SSH-") {
            return App::Known(app::SSH);
        }
    }
    if !client.is_empty() {
        // A valid start of a request or hello: wait for the rest, within the limit.
        let wait = client.len() < DETECT_LIMIT;
        match http::request_head(client) {
            Parse::Done(_) => return App::Known(app::HTTP),
            Parse::Partial if wait => return App::Unknown,
            _ => {}
        }
        match tls::client_hello(client) {
            Parse::Done(_) => return App::Known(app::TLS),
            Parse::Partial if wait => return App::Unknown,
            _ => {}
        }
        let word = |s: &[u8], w: &[u8]| s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w);
        if word(client, b"EHLO") || word(client, b"HELO") {
            return App::Known(app::SMTP);
        }
        if flow.ends.ports.contains(&53) && client.len() >= 14 {
            let len = usize::from(u16::from_be_bytes([client[0], client[1]]));
            if len >= 12 && dns::header(&client[2..]).is_some_and(|h| !h.is_response && h.questions > 0) {
                return App::Known(app::DNS);
            }
        }
    }
    if server.starts_with(b"220") && client.is_empty() {
        // An SMTP (or FTP) greeting: wait for the client's first command.
        return App::Unknown;
    }
    if client.len() >= DETECT_LIMIT || (!client.is_empty() && !server.is_empty()) {
        App::Other
    } else {
        App::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_sig::{parse_rules, Vars};

    fn matcher(rules: &str) -> Matcher {
        let loaded = parse_rules(rules, &Vars::default());
        assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
        Matcher::new(loaded.rules, Settings { stream_depth: 1 << 20, body_limit: 100 << 10, midstream: false, memory_limit: 1 << 30 })
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
}
