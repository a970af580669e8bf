//! One TCP connection's application layer as eve.json logs it: the protocol recognised from
//! its first bytes (`mbox_proto::detect`), then each protocol's transactions as records —
//! HTTP requests with their responses, the TLS hello's server name and chosen version, the
//! SSH identification lines, SMTP transactions and DNS over TCP. Records are JSON bodies
//! (`"http": {...}`) handed to the caller, which adds the common fields.

use crate::dns;
use mbox_abi::kit::StreamBuffer;
use mbox_proto::detect::{self, AppProto, Detected};
use mbox_proto::http::{self, BodyDecoder};
use mbox_proto::{smtp, ssh, tls, x509, Parse};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;

/// Bytes of one direction held while a message head is incomplete.
pub const HEAD_LIMIT: usize = 64 << 10;

/// A record's body: its `event_type` and the object under that name.
pub struct AppRecord {
    pub event_type: &'static str,
    pub body: Value,
    /// `tx_id`, for the protocols that number transactions.
    pub tx_id: Option<u64>,
}

/// What a connection speaks, as far as the log knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Still looking at its first bytes.
    Detecting,
    Known(AppProto),
    /// None of the protocols logged here (Suricata's `failed`).
    Failed,
    /// Its start was not seen (picked up mid-stream, or a gap before anything was recognised).
    Unseen,
}

/// An HTTP request and, once it came, its response.
struct HttpTx {
    id: u64,
    fields: Map<String, Value>,
    head_request: bool,
    /// A CONNECT: a 2xx answer turns the connection into a tunnel.
    connect: bool,
    /// Response body bytes so far, as sent (`length`).
    length: u64,
    responded: bool,
}

#[derive(Default)]
struct HttpState {
    txs: VecDeque<HttpTx>,
    next_tx: u64,
    /// The body each side is in, if any.
    bodies: [Option<BodyDecoder>; 2],
    /// The latest request's fields, for alerts.
    last: Option<Map<String, Value>>,
    /// A gap took a response's head: the server's bytes are skipped up to the next line that
    /// starts a response (libhtp takes them for the body of the response it lost).
    resync: bool,
}

impl HttpState {
    /// A request seen: a transaction waiting for its response.
    fn push_tx(&mut self, fields: Map<String, Value>, head_request: bool, connect: bool) {
        let id = self.next_tx;
        self.next_tx += 1;
        self.txs.push_back(HttpTx { id, fields, head_request, connect, length: 0, responded: false });
    }
}

#[derive(Default)]
struct TlsState {
    /// After SMTP's STARTTLS: the server's reply line comes before its hello.
    reply_first: bool,
    sni: Option<String>,
    version: Option<u16>,
    /// The server's (leaf) certificate, from its first flight before TLS 1.3.
    certificate: Option<x509::CertificateFields>,
    decided: [bool; 2],
    logged: bool,
}

#[derive(Default)]
struct SshState {
    banners: [Option<Value>; 2],
    logged: bool,
}

#[derive(Default)]
struct SmtpState {
    helo: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    in_data: bool,
    next_tx: u64,
}

/// One TCP connection's application layer.
pub struct Conn {
    pub app: App,
    sides: [StreamBuffer; 2],
    /// A side whose protocol broke: nothing more of it is parsed.
    broken: [bool; 2],
    ports: [u16; 2],
    /// Bytes of each direction parsed; past them the direction is left alone.
    depth: u64,
    http: HttpState,
    tls: TlsState,
    ssh: SshState,
    smtp: SmtpState,
    dns: dns::Transactions,
}

/// Lossy text of protocol bytes (eve.json is UTF-8; Suricata escapes what is not).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Conn {
    pub fn new(ports: [u16; 2], midstream: bool, depth: u64) -> Conn {
        Conn {
            depth,
            app: if midstream { App::Unseen } else { App::Detecting },
            sides: [StreamBuffer::new(HEAD_LIMIT), StreamBuffer::new(HEAD_LIMIT)],
            broken: [false; 2],
            ports,
            http: HttpState::default(),
            tls: TlsState::default(),
            ssh: SshState::default(),
            smtp: SmtpState::default(),
            dns: dns::Transactions::default(),
        }
    }

    /// The `app_proto` an alert or flow record names (`None`: no data was seen to decide).
    pub fn app_proto(&self, saw_data: bool) -> Option<&'static str> {
        match self.app {
            App::Known(p) => Some(p.name()),
            App::Failed => Some("failed"),
            App::Detecting => saw_data.then_some("failed"),
            // Not parsed (Suricata's stream.midstream = false): no protocol to name.
            App::Unseen => None,
        }
    }

    /// The context an alert on this connection carries (`http` or `tls` object).
    pub fn alert_context(&self) -> Option<(&'static str, Value)> {
        match self.app {
            App::Known(AppProto::Http) => self.http.last.clone().map(|m| ("http", Value::Object(m))),
            App::Known(AppProto::Tls) => Some(("tls", self.tls_body())),
            _ => None,
        }
    }

    /// Bytes of one direction's stream, in order.
    pub fn data(&mut self, dir: usize, offset: u64, bytes: &[u8], out: &mut dyn FnMut(AppRecord)) {
        let d = dir.min(1);
        if self.broken[d] || matches!(self.app, App::Failed | App::Unseen) || self.done_with(d) {
            return;
        }
        let room = self.depth.saturating_sub(offset).min(bytes.len() as u64) as usize;
        self.sides[d].push_bytes(offset, &bytes[..room]);
        if room < bytes.len() {
            // Past the depth: what is held is parsed, nothing after it.
            self.broken[d] = true;
        }
        if self.app == App::Detecting {
            match detect::tcp(self.sides[0].bytes(), self.sides[1].bytes(), self.ports) {
                Detected::Proto(p) => self.app = App::Known(p),
                Detected::Wait => return,
                Detected::Other => {
                    self.app = App::Failed;
                    self.sides.iter_mut().for_each(StreamBuffer::clear);
                    return;
                }
            }
            // The side that came first may hold a message too.
            self.parse(1 - d, out);
        }
        self.parse(d, out);
    }

    /// A gap in one direction: what is held cannot be completed. An HTTP server's side goes
    /// on at the next response (as libhtp does): the response the gap cut, or the one it
    /// swallowed whole, leaves its request without one.
    ///
    /// A gap `at_end` (bytes missing when the connection ended) ends the direction's parsing:
    /// what came after it is not parsed, as Suricata never hands it to its parsers.
    pub fn gap(&mut self, dir: usize, len: u64, at_end: bool, out: &mut dyn FnMut(AppRecord)) {
        let d = dir.min(1);
        if self.app == App::Detecting {
            self.app = App::Unseen;
        }
        if at_end {
            self.broken[d] = true;
            self.sides[d].clear();
            return;
        }
        let http = self.app == App::Known(AppProto::Http) && !self.broken[d];
        if http && self.sides[d].bytes().is_empty() {
            // Bytes lost inside a body: the body goes on after them (libhtp's gap handling).
            if let Some(body) = self.http.bodies[d].as_mut().and_then(|b| b.skip(len).then_some(b)) {
                if d == 1 {
                    if let Some(tx) = self.http.txs.iter_mut().find(|t| t.responded) {
                        tx.length = body.message_len();
                    }
                    if body.is_done() {
                        self.http.bodies[1] = None;
                        self.finish_response(out);
                    }
                } else if body.is_done() {
                    self.http.bodies[0] = None;
                }
                return;
            }
        }
        self.sides[d].clear();
        if http && d == 1 {
            let cut = match self.http.bodies[1].take() {
                Some(body) if !body.is_done() => self.http.txs.iter().position(|t| t.responded),
                _ => self.http.txs.iter().position(|t| !t.responded),
            };
            if let Some(tx) = cut.and_then(|at| self.http.txs.remove(at)) {
                out(http_record(tx));
            }
            self.http.resync = true;
            return;
        }
        self.broken[d] = true;
    }

    /// The parser of direction `d` gave up (`event`: what broke, in Suricata's words): nothing
    /// more of it is parsed, and an `anomaly` record says so.
    fn fail(&mut self, d: usize, event: &'static str, out: &mut dyn FnMut(AppRecord)) {
        self.broken[d] = true;
        self.sides[d].clear();
        self.anomaly(event, out);
    }

    /// An `anomaly` record of the application layer (`event`: Suricata's name for it).
    fn anomaly(&self, event: &'static str, out: &mut dyn FnMut(AppRecord)) {
        let app = self.app_proto(true).unwrap_or("failed");
        let body = json!({ "app_proto": app, "type": "applayer", "event": event, "layer": "proto_parser" });
        out(AppRecord { event_type: "anomaly", body, tx_id: None });
    }

    /// Whether nothing more of direction `d` is of use.
    fn done_with(&self, d: usize) -> bool {
        match self.app {
            App::Known(AppProto::Tls) => self.tls.decided[d],
            App::Known(AppProto::Ssh) => self.ssh.banners[d].is_some(),
            App::Known(AppProto::Smtp) => d == 1,
            _ => false,
        }
    }

    fn parse(&mut self, d: usize, out: &mut dyn FnMut(AppRecord)) {
        match self.app {
            App::Known(AppProto::Http) => self.parse_http(d, out),
            App::Known(AppProto::Tls) => self.parse_tls(d, out),
            App::Known(AppProto::Ssh) => self.parse_ssh(d, out),
            App::Known(AppProto::Smtp) if d == 0 => self.parse_smtp(out),
            App::Known(AppProto::Dns) => {
                let side = &mut self.sides[d];
                let used = mbox_proto::dns::tcp_messages(side.bytes(), |msg| self.dns.message(msg, &mut |r| out(r)));
                side.consume(used);
            }
            _ => {}
        }
    }

    fn parse_http(&mut self, d: usize, out: &mut dyn FnMut(AppRecord)) {
        loop {
            if let Some(mut body) = self.http.bodies[d].take() {
                let fed = body.feed(self.sides[d].bytes(), &mut |_| {});
                self.sides[d].consume(fed.unwrap_or(usize::MAX));
                if d == 1 {
                    // Suricata's `length` is the body as sent, chunk framing included.
                    if let Some(tx) = self.http.txs.iter_mut().find(|t| t.responded) {
                        tx.length = body.message_len();
                    }
                }
                match fed {
                    Err(_) => {
                        self.fail(d, if d == 0 { "INVALID_REQUEST_CHUNK_LEN" } else { "INVALID_RESPONSE_CHUNK_LEN" }, out);
                        return;
                    }
                    Ok(_) if !body.is_done() => {
                        self.http.bodies[d] = Some(body);
                        return;
                    }
                    Ok(_) => {
                        if d == 1 {
                            self.finish_response(out);
                        }
                    }
                }
            }
            if d == 1 && self.http.resync && !self.resync_response() {
                return;
            }
            let bytes = self.sides[d].bytes();
            if bytes.is_empty() {
                return;
            }
            let (used, body) = if d == 0 {
                match http::request_head(bytes) {
                    Parse::Done(head) => {
                        let mut f = Map::new();
                        if let Some(host) = head.host {
                            // Suricata logs the host lower-cased, its port apart.
                            let host = text(host).to_ascii_lowercase();
                            match host.rsplit_once(':').filter(|(name, _)| !name.contains(':') || name.ends_with(']')) {
                                Some((name, port)) => {
                                    f.insert("hostname".into(), json!(name));
                                    if let Ok(port) = port.parse::<u16>() {
                                        f.insert("http_port".into(), json!(port));
                                    }
                                }
                                None => {
                                    f.insert("hostname".into(), json!(host));
                                }
                            }
                        }
                        f.insert("url".into(), json!(text(head.uri)));
                        if let Some(ua) = head.user_agent {
                            f.insert("http_user_agent".into(), json!(text(ua)));
                        }
                        if let Some(r) = head.referer {
                            f.insert("http_refer".into(), json!(text(r)));
                        }
                        f.insert("http_method".into(), json!(text(head.method)));
                        f.insert("protocol".into(), json!(format!("HTTP/1.{}", head.version)));
                        self.http.last = Some(f.clone());
                        let head_request = head.method.eq_ignore_ascii_case(b"HEAD");
                        let connect = head.method.eq_ignore_ascii_case(b"CONNECT");
                        self.http.push_tx(f, head_request, connect);
                        (head.head_len, head.body)
                    }
                    Parse::Partial => return,
                    Parse::Invalid => {
                        self.fail(d, "INVALID_REQUEST_HEADER", out);
                        return;
                    }
                }
            } else {
                let head_request = self.http.txs.iter().find(|t| !t.responded).is_some_and(|t| t.head_request);
                match http::response_head(bytes, head_request) {
                    Parse::Done(head) if (100..200).contains(&head.status) => {
                        // 100 Continue and the like: the final response is still to come.
                        self.sides[d].consume(head.head_len);
                        continue;
                    }
                    Parse::Done(head) => {
                        let mut tunnel = false;
                        match self.http.txs.iter_mut().find(|t| !t.responded) {
                            Some(tx) => {
                                tx.responded = true;
                                if let Some(ct) = head.content_type {
                                    let ct = text(ct);
                                    let ct = ct.split(';').next().unwrap_or("").trim().to_string();
                                    tx.fields.insert("http_content_type".into(), json!(ct));
                                }
                                tx.fields.insert("status".into(), json!(head.status));
                                tunnel = tx.connect && (200..300).contains(&head.status);
                            }
                            None => {
                                // A response to no request seen: libhtp makes it a transaction
                                // of its own with a placeholder URI, of which Suricata logs the
                                // length only.
                                self.anomaly("UNABLE_TO_MATCH_RESPONSE_TO_REQUEST", out);
                                let mut f = Map::new();
                                f.insert("http_port".into(), json!(0));
                                f.insert("url".into(), json!("/libhtp::request_uri_not_seen"));
                                self.http.push_tx(f, false, false);
                                if let Some(tx) = self.http.txs.back_mut() {
                                    tx.responded = true;
                                }
                            }
                        }
                        if tunnel {
                            // A CONNECT answered 2xx: the bytes from here on are the tunnel's,
                            // whose protocol is recognised afresh (TLS, mostly).
                            self.sides[1].consume(head.head_len);
                            self.finish_response(out);
                            self.app = App::Detecting;
                            return;
                        }
                        (head.head_len, head.body)
                    }
                    Parse::Partial => return,
                    Parse::Invalid => {
                        self.fail(d, "INVALID_RESPONSE_HEADER", out);
                        return;
                    }
                }
            };
            self.sides[d].consume(used);
            self.http.bodies[d] = Some(BodyDecoder::new(body));
        }
    }

    /// After a gap that took a response's head: drops the server's bytes before the next line
    /// that starts with `HTTP/`; true once one is at the front.
    fn resync_response(&mut self) -> bool {
        const START: &[u8] = b"HTTP/";
        let side = &mut self.sides[1];
        let bytes = side.bytes();
        let found =
            if bytes.starts_with(START) { Some(0) } else { memchr::memmem::find_iter(bytes, START).find(|&at| bytes[at - 1] == b'\n') };
        match found {
            Some(at) => {
                side.consume(at);
                self.http.resync = false;
                true
            }
            None => {
                // Keep a line start that could be a response line cut by the segment's end.
                let line_start = memchr::memrchr(b'\n', bytes).map_or(bytes.len(), |at| at + 1);
                let keep = if bytes.len() - line_start < START.len() { bytes.len() - line_start } else { 0 };
                side.consume(bytes.len() - keep);
                false
            }
        }
    }

    /// The response of the first answered request is complete: its record goes out.
    fn finish_response(&mut self, out: &mut dyn FnMut(AppRecord)) {
        if let Some(at) = self.http.txs.iter().position(|t| t.responded) {
            if let Some(tx) = self.http.txs.remove(at) {
                out(http_record(tx));
            }
        }
    }

    /// SMTP's STARTTLS: the server's reply, then TLS.
    fn start_tls(&mut self) {
        self.app = App::Known(AppProto::Tls);
        self.tls = TlsState { reply_first: true, ..TlsState::default() };
        self.sides[1].clear();
    }

    fn parse_tls(&mut self, d: usize, out: &mut dyn FnMut(AppRecord)) {
        if d == 1 && self.tls.reply_first {
            let bytes = self.sides[1].bytes();
            let Some(end) = memchr::memchr(b'\n', bytes) else { return };
            if !bytes.starts_with(b"2") {
                // The server refused STARTTLS: the session goes on in the clear.
                self.app = App::Known(AppProto::Smtp);
                self.sides[1].clear();
                return;
            }
            self.sides[1].consume(end + 1);
            self.tls.reply_first = false;
        }
        let bytes = self.sides[d].bytes();
        let decided = if d == 0 {
            match tls::client_hello(bytes) {
                Parse::Done(h) => {
                    self.tls.sni = h.sni.map(|s| text(&s));
                    true
                }
                Parse::Partial => false,
                Parse::Invalid => true,
            }
        } else {
            // The version as soon as the hello is whole, the certificates once they came (a
            // first flight beyond what is held leaves the bytes after it, which are not TLS's
            // start, or none: the record has the version alone).
            if self.tls.version.is_none() {
                if let Parse::Done(h) = tls::server_hello(bytes) {
                    self.tls.version = Some(h.version);
                }
            }
            match tls::server_flight(bytes) {
                Parse::Done(flight) => {
                    self.tls.certificate = flight.certificates.first().and_then(|der| x509::certificate_fields(der));
                    true
                }
                Parse::Partial => false,
                Parse::Invalid => true,
            }
        };
        if decided {
            self.tls.decided[d] = true;
            self.sides[d].clear();
        }
        if self.tls.decided == [true, true] && !self.tls.logged {
            self.tls.logged = true;
            out(AppRecord { event_type: "tls", body: self.tls_body(), tx_id: None });
        }
    }

    /// The `tls` object, its fields in Suricata's order.
    fn tls_body(&self) -> Value {
        let mut t = Map::new();
        let cert = self.tls.certificate.as_ref();
        if let Some(cert) = cert {
            t.insert("subject".into(), json!(cert.subject));
            t.insert("issuerdn".into(), json!(cert.issuer));
            t.insert("serial".into(), json!(cert.serial));
            t.insert("fingerprint".into(), json!(cert.fingerprint));
        }
        if let Some(sni) = &self.tls.sni {
            t.insert("sni".into(), json!(sni));
        }
        t.insert("version".into(), json!(self.tls.version.map_or("UNDETERMINED", tls::version_name)));
        if let Some(cert) = cert {
            t.insert("notbefore".into(), json!(cert.not_before));
            t.insert("notafter".into(), json!(cert.not_after));
        }
        Value::Object(t)
    }

    fn parse_ssh(&mut self, d: usize, out: &mut dyn FnMut(AppRecord)) {
        match ssh::banner(self.sides[d].bytes()) {
            Parse::Done(b) => {
                let side = json!({ "proto_version": text(b.proto_version), "software_version": text(b.software) });
                self.ssh.banners[d] = Some(side);
                self.sides[d].clear();
            }
            Parse::Partial => return,
            Parse::Invalid => {
                self.fail(d, "INVALID_BANNER", out);
                self.sides[d].clear();
            }
        }
        if self.ssh.banners.iter().all(Option::is_some) && !self.ssh.logged {
            out(self.ssh_record());
        }
    }

    fn ssh_record(&mut self) -> AppRecord {
        self.ssh.logged = true;
        let mut s = Map::new();
        for (name, banner) in ["client", "server"].into_iter().zip(&self.ssh.banners) {
            if let Some(b) = banner {
                s.insert(name.into(), b.clone());
            }
        }
        AppRecord { event_type: "ssh", body: Value::Object(s), tx_id: Some(0) }
    }

    fn parse_smtp(&mut self, out: &mut dyn FnMut(AppRecord)) {
        loop {
            let bytes = self.sides[0].bytes();
            if self.smtp.in_data {
                let Some(end) = smtp::data_end(bytes, true) else {
                    // Keep the last bytes, where the end may be starting.
                    let keep = bytes.len().min(4);
                    self.sides[0].consume(bytes.len() - keep);
                    return;
                };
                self.sides[0].consume(end);
                self.smtp.in_data = false;
                out(self.smtp_record());
                continue;
            }
            let Some((line, used)) = smtp::line(bytes) else {
                if bytes.len() >= smtp::MAX_LINE {
                    self.fail(0, "LINE_TOO_LONG", out);
                }
                return;
            };
            match smtp::command(line) {
                smtp::Command::Helo(name) => self.smtp.helo = Some(text(name)),
                smtp::Command::MailFrom(path) => self.smtp.mail_from = Some(text(path)),
                smtp::Command::RcptTo(path) => self.smtp.rcpt_to.push(text(path)),
                smtp::Command::Data => self.smtp.in_data = true,
                smtp::Command::Reset => {
                    self.smtp.mail_from = None;
                    self.smtp.rcpt_to.clear();
                }
                smtp::Command::StartTls => {
                    // The session so far is a transaction; TLS follows once the server agrees.
                    out(self.smtp_record());
                    self.sides[0].consume(used);
                    self.start_tls();
                    return;
                }
                smtp::Command::Quit | smtp::Command::Other => {}
            }
            self.sides[0].consume(used);
        }
    }

    fn smtp_record(&mut self) -> AppRecord {
        let s = &mut self.smtp;
        let mut m = Map::new();
        if let Some(h) = &s.helo {
            m.insert("helo".into(), json!(h));
        }
        if let Some(f) = s.mail_from.take() {
            m.insert("mail_from".into(), json!(f));
        }
        if !s.rcpt_to.is_empty() {
            m.insert("rcpt_to".into(), json!(std::mem::take(&mut s.rcpt_to)));
        }
        let id = s.next_tx;
        s.next_tx += 1;
        AppRecord { event_type: "smtp", body: Value::Object(m), tx_id: Some(id) }
    }

    /// The connection ended: transactions still open are logged as they stand.
    pub fn end(&mut self, out: &mut dyn FnMut(AppRecord)) {
        match self.app {
            App::Known(AppProto::Http) => {
                while let Some(tx) = self.http.txs.pop_front() {
                    out(http_record(tx));
                }
            }
            App::Known(AppProto::Tls) if !self.tls.logged => {
                self.tls.logged = true;
                out(AppRecord { event_type: "tls", body: self.tls_body(), tx_id: None });
            }
            App::Known(AppProto::Ssh) if !self.ssh.logged => out(self.ssh_record()),
            App::Known(AppProto::Smtp) => {
                let s = &self.smtp;
                if s.helo.is_some() || s.mail_from.is_some() || !s.rcpt_to.is_empty() {
                    out(self.smtp_record());
                }
            }
            _ => {}
        }
    }
}

/// The order Suricata writes an `http` object's fields in.
const HTTP_FIELDS: [&str; 9] =
    ["hostname", "http_port", "url", "http_user_agent", "http_content_type", "http_refer", "http_method", "protocol", "status"];

fn http_record(mut tx: HttpTx) -> AppRecord {
    let mut f = Map::new();
    for name in HTTP_FIELDS {
        if let Some(v) = tx.fields.remove(name) {
            f.insert(name.into(), v);
        }
    }
    f.insert("length".into(), json!(tx.length));
    AppRecord { event_type: "http", body: Value::Object(f), tx_id: Some(tx.id) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection fed whole messages, its records gathered.
    struct Wire {
        conn: Conn,
        offsets: [u64; 2],
        records: Vec<AppRecord>,
    }

    impl Wire {
        fn new(port: u16) -> Wire {
            Wire::with_depth(port, 1 << 20)
        }

        fn with_depth(port: u16, depth: u64) -> Wire {
            Wire { conn: Conn::new([40000, port], false, depth), offsets: [0; 2], records: Vec::new() }
        }

        fn send(&mut self, dir: usize, bytes: &[u8]) -> &mut Wire {
            let records = &mut self.records;
            self.conn.data(dir, self.offsets[dir], bytes, &mut |r| records.push(r));
            self.offsets[dir] += bytes.len() as u64;
            self
        }

        fn lose(&mut self, dir: usize, len: u64) -> &mut Wire {
            let records = &mut self.records;
            self.conn.gap(dir, len, false, &mut |r| records.push(r));
            self.offsets[dir] += len;
            self
        }

        fn end(&mut self) -> &mut Wire {
            let records = &mut self.records;
            self.conn.end(&mut |r| records.push(r));
            self
        }

        /// The records of `kind`, as JSON text.
        fn of(&self, kind: &str) -> Vec<String> {
            self.records.iter().filter(|r| r.event_type == kind).map(|r| r.body.to_string()).collect()
        }
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: t\r\n\r\n";

    #[test]
    fn requests_pair_with_their_responses_in_order_and_count_the_body_as_sent() {
        let mut w = Wire::new(80);
        w.send(0, GET).send(0, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        w.send(
            1,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/html; charset=x\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        w.send(1, b"5\r\nhello\r\n0\r\nX: y\r\n\r\n");
        w.send(1, b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc");
        let http = w.of("http");
        assert_eq!(http.len(), 2, "{http:?}");
        // The length counts the chunk framing but not the trailer, as libhtp's does.
        assert_eq!(
            http[0],
            r#"{"hostname":"example.com","http_port":8080,"url":"/a","http_user_agent":"t","http_content_type":"text/html","http_method":"GET","protocol":"HTTP/1.1","status":200,"length":13}"#
        );
        assert!(http[1].contains(r#""url":"/b""#) && http[1].contains(r#""status":404,"length":3"#), "{}", http[1]);
        assert_eq!(w.records.iter().map(|r| r.tx_id).collect::<Vec<_>>(), [Some(0), Some(1)]);
        assert_eq!(w.conn.app_proto(true), Some("http"));
    }

    #[test]
    fn a_gap_inside_a_body_is_skipped_and_one_that_took_a_head_resyncs_at_the_next_response() {
        let mut w = Wire::new(80);
        w.send(0, GET).send(0, GET).send(0, GET);
        w.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab").lose(1, 4).send(1, b"cdef");
        // The second response's head and part of its body are lost: it is logged unanswered,
        // and the third pairs with the next request.
        w.lose(1, 30).send(1, b"rest of a body\r\nHTTP/1.1 204 No Content\r\n\r\n");
        let http = w.of("http");
        assert_eq!(http.len(), 3, "{http:?}");
        assert!(http[0].contains(r#""status":200,"length":10"#), "{}", http[0]);
        assert!(!http[1].contains("status") && http[1].contains(r#""length":0"#), "{}", http[1]);
        assert!(http[2].contains(r#""status":204"#), "{}", http[2]);
        assert!(w.of("anomaly").is_empty(), "{:?}", w.of("anomaly"));
    }

    #[test]
    fn a_response_to_no_request_is_a_transaction_of_its_own() {
        let mut w = Wire::new(80);
        w.send(0, GET).send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
        w.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nxy");
        let http = w.of("http");
        assert_eq!(http[1], r#"{"http_port":0,"url":"/libhtp::request_uri_not_seen","length":2}"#);
        assert!(w.of("anomaly")[0].contains("UNABLE_TO_MATCH_RESPONSE_TO_REQUEST"));
    }

    #[test]
    fn a_connect_answered_2xx_becomes_a_tunnel() {
        let mut w = Wire::new(8080);
        w.send(0, b"CONNECT a.org:443 HTTP/1.1\r\nHost: a.org:443\r\n\r\n").send(1, b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (client, server) = hellos();
        w.send(0, &client).send(1, &server);
        let http = w.of("http");
        assert_eq!(http.len(), 1);
        assert!(http[0].contains(r#""http_method":"CONNECT","protocol":"HTTP/1.1","status":200,"length":0"#), "{}", http[0]);
        assert!(w.of("anomaly").is_empty(), "the tunnel's bytes are not HTTP errors: {:?}", w.of("anomaly"));
        assert_eq!(w.of("tls"), [r#"{"sni":"a.io","version":"TLS 1.2"}"#], "the tunnel's protocol is recognised");
        assert_eq!(w.conn.app_proto(true), Some("tls"));
    }

    #[test]
    fn a_bad_request_head_is_an_anomaly_and_ends_parsing_that_side() {
        let mut w = Wire::new(80);
        w.send(0, GET).send(0, b"\x00\x01 not a request\r\n\r\n").send(0, GET);
        assert_eq!(w.of("anomaly"), [r#"{"app_proto":"http","type":"applayer","event":"INVALID_REQUEST_HEADER","layer":"proto_parser"}"#]);
        w.end();
        assert_eq!(w.of("http").len(), 1, "only the request before the bad one");
    }

    #[test]
    fn bytes_past_the_depth_are_not_parsed() {
        let mut w = Wire::with_depth(80, GET.len() as u64 + 10);
        w.send(0, GET).send(0, GET);
        w.end();
        assert_eq!(w.of("http").len(), 1);
    }

    #[test]
    fn smtp_transactions_carry_the_helo_and_their_envelope() {
        let mut w = Wire::new(25);
        w.send(1, b"220 mx ESMTP\r\n").send(0, b"EHLO client.example\r\n").send(1, b"250 ok\r\n");
        w.send(0, b"MAIL FROM:<a@x.org> SIZE=10\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n");
        w.send(0, b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
        assert_eq!(w.conn.app_proto(true), Some("smtp"));
        assert_eq!(w.of("smtp")[0], r#"{"helo":"client.example","mail_from":"<a@x.org>","rcpt_to":["<b@y.org>","<c@y.org>"]}"#);
    }

    /// A ClientHello with an SNI of "a.io" and a TLS 1.2 ServerHello, each in its record.
    fn hellos() -> (Vec<u8>, Vec<u8>) {
        let sni = [0u8, 0, 0, 9, 0, 7, 0, 0, 4, b'a', b'.', b'i', b'o'];
        let mut body = vec![3, 3];
        body.extend([0; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend((sni.len() as u16).to_be_bytes());
        body.extend(sni);
        let record = |kind: u8, body: &[u8]| {
            let mut m = vec![kind, 0, (body.len() >> 8) as u8, body.len() as u8];
            m.extend(body);
            let mut r = vec![22, 3, 1, (m.len() >> 8) as u8, m.len() as u8];
            r.extend(m);
            r
        };
        let mut server = vec![3, 3];
        server.extend([0; 32]);
        server.extend([0, 0x13, 0x01, 0, 0, 0]);
        // The server's flight: its hello, then (no certificate) ServerHelloDone.
        (record(1, &body), [record(2, &server), record(14, &[])].concat())
    }

    #[test]
    fn tls_logs_the_sni_and_the_version_the_server_chose() {
        let (client, server) = hellos();
        let mut w = Wire::new(443);
        w.send(0, &client).send(1, &server);
        w.end();
        assert_eq!(w.of("tls"), [r#"{"sni":"a.io","version":"TLS 1.2"}"#]);
        // A hello alone waits for the rest of the flight (its certificates), or the end.
        let mut w = Wire::new(443);
        w.send(0, &client).send(1, &server[..server.len() - 9]);
        assert!(w.of("tls").is_empty(), "{:?}", w.of("tls"));
        w.end();
        assert_eq!(w.of("tls"), [r#"{"sni":"a.io","version":"TLS 1.2"}"#]);
    }

    #[test]
    fn tls_after_starttls_is_parsed_once_the_server_agrees() {
        let (client, server) = hellos();
        let mut w = Wire::new(25);
        w.send(1, b"220 mx ESMTP\r\n").send(0, b"EHLO c.example\r\n").send(1, b"250 ok\r\n").send(0, b"STARTTLS\r\n");
        w.send(1, b"220 2.0.0 Ready to start TLS\r\n").send(0, &client).send(1, &server);
        w.end();
        assert_eq!(w.of("smtp"), [r#"{"helo":"c.example"}"#]);
        assert_eq!(w.of("tls"), [r#"{"sni":"a.io","version":"TLS 1.2"}"#]);
        assert_eq!(w.conn.app_proto(true), Some("tls"));
        // Refused: the session stays SMTP.
        let mut w = Wire::new(25);
        w.send(1, b"220 mx\r\n").send(0, b"EHLO c\r\nSTARTTLS\r\n").send(1, b"454 not now\r\n");
        w.send(0, b"MAIL FROM:<a@x>\r\n");
        w.end();
        assert_eq!(w.conn.app_proto(true), Some("smtp"));
        assert!(w.of("smtp").last().unwrap().contains(r#""mail_from":"<a@x>""#), "{:?}", w.of("smtp"));
    }
}
