//! Rules in a subset of Suricata's syntax, parsed into plain data: the header (action,
//! protocol, addresses, ports, direction) and the detection options that mbox supports.
//! Anything else makes the rule unsupported, with a reason, never silently changes what it
//! matches.

use crate::bytes::{parse_byte_jump, parse_byte_test, ByteJump, ByteTest};
use crate::net::{AddrSet, PortSet, Vars};
use crate::packet::{PacketOpts, StreamSize, TcpFlags};
use crate::pcre::{PcreFlags, PcreRegex};
use crate::ruleset::Classifications;
use crate::threshold::Threshold;
use std::sync::Arc;
use thiserror::Error;

/// Why a rule was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{line}{}: {reason}", file.as_ref().map(|f| format!("{f}:")).unwrap_or_else(|| "line ".into()), sid.map(|s| format!(" (sid {s})")).unwrap_or_default())]
pub struct RuleError {
    /// The rule file, when the rules came from one (see [`crate::RuleSet`]).
    pub file: Option<Arc<str>>,
    pub line: usize,
    pub sid: Option<u32>,
    /// The keyword (or header field) that could not be taken, for tallies such as `mbox rules
    /// check`'s: an option's name (`flowbits`, `pcre`), or `action`, `protocol`, `address`,
    /// `port`, `direction`, `sid`, `buffers`, `syntax`, `duplicate`.
    pub keyword: String,
    pub reason: String,
}

/// What a rule does when it matches. mbox's IDS reports: a `drop` rule alerts as Suricata's IDS
/// mode does (eve.json's `alert.action` is `allowed`: nothing was blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Alert,
    Drop,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Drop => "drop",
        }
    }
}

/// The protocol a rule applies to: a transport, or an application protocol the NF recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Http,
    Tls,
    Ssh,
    Smtp,
    Dns,
    Quic,
}

/// Where a content or pcre looks. The HTTP ones are Suricata's sticky buffers of the same
/// names, filled per request or response (see sig-match's `http_fields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buffer {
    /// The reassembled TCP stream of one direction (or a UDP payload).
    Stream,
    /// The request target as sent (mbox does not normalise it; `http.uri.raw` is the same).
    HttpUri,
    HttpUriRaw,
    /// The Host header, lower-cased.
    HttpHost,
    HttpMethod,
    HttpUserAgent,
    HttpReferer,
    HttpAccept,
    /// Cookie (requests) or Set-Cookie (responses).
    HttpCookie,
    HttpContentType,
    /// Every header but the cookies as `Name: value\r\n`.
    HttpHeader,
    /// `\r\n`, then every header's name followed by `\r\n`, then `\r\n`.
    HttpHeaderNames,
    /// `HTTP/1.1`.
    HttpProtocol,
    /// The request line, or the status line, without its line end.
    HttpRequestLine,
    HttpResponseLine,
    /// The status code (`200`) and reason phrase (`OK`).
    HttpStatCode,
    HttpStatMsg,
    /// A request's body (dechunked, up to the body limit).
    HttpRequestBody,
    /// An HTTP body (responses, and requests with a body).
    FileData,
    /// Single headers' values (the first of each): Accept-Encoding, Accept-Language (requests),
    /// Connection, Content-Length (both), Server, Location (responses).
    HttpAcceptEnc,
    HttpAcceptLang,
    HttpConnection,
    HttpContentLen,
    HttpServer,
    HttpLocation,
    /// The head as sent: its first line and header lines and the blank line (`http.start`),
    /// and the header lines and blank line alone (`http.header.raw`, cookies included).
    HttpStart,
    HttpHeaderRaw,
    /// `.` and the name (`dotprefix` after `dns.query`, `tls.sni` or `http.host`), so that
    /// `content:".example.com"; endswith;` matches the domain and its subdomains only.
    HttpHostDotted,
    TlsSni,
    TlsSniDotted,
    /// Each certificate of the server's chain (DER), one at a time.
    TlsCerts,
    /// The server certificate's subject and issuer (`C=US, O=..., CN=...`), serial
    /// (`0A:E1:...`) and SHA-1 fingerprint (`4a:a3:...`).
    TlsCertSubject,
    TlsCertIssuer,
    TlsCertSerial,
    TlsCertFingerprint,
    SshSoftware,
    DnsQuery,
    DnsQueryDotted,
    /// The server name of a QUIC connection's first flight (its Initial packets decrypted).
    QuicSni,
    /// A QUIC long header's version, its 4 bytes as sent.
    QuicVersion,
}

impl Buffer {
    /// Every buffer, in index order.
    pub const ALL: [Buffer; 40] = [
        Buffer::Stream,
        Buffer::HttpUri,
        Buffer::HttpUriRaw,
        Buffer::HttpHost,
        Buffer::HttpMethod,
        Buffer::HttpUserAgent,
        Buffer::HttpReferer,
        Buffer::HttpAccept,
        Buffer::HttpCookie,
        Buffer::HttpContentType,
        Buffer::HttpHeader,
        Buffer::HttpHeaderNames,
        Buffer::HttpProtocol,
        Buffer::HttpRequestLine,
        Buffer::HttpResponseLine,
        Buffer::HttpStatCode,
        Buffer::HttpStatMsg,
        Buffer::HttpRequestBody,
        Buffer::FileData,
        Buffer::HttpAcceptEnc,
        Buffer::HttpAcceptLang,
        Buffer::HttpConnection,
        Buffer::HttpContentLen,
        Buffer::HttpServer,
        Buffer::HttpLocation,
        Buffer::HttpStart,
        Buffer::HttpHeaderRaw,
        Buffer::HttpHostDotted,
        Buffer::TlsSni,
        Buffer::TlsSniDotted,
        Buffer::TlsCerts,
        Buffer::TlsCertSubject,
        Buffer::TlsCertIssuer,
        Buffer::TlsCertSerial,
        Buffer::TlsCertFingerprint,
        Buffer::SshSoftware,
        Buffer::DnsQuery,
        Buffer::DnsQueryDotted,
        Buffer::QuicSni,
        Buffer::QuicVersion,
    ];

    /// The application protocol a buffer belongs to (`None`: the stream itself).
    pub fn proto(self) -> Option<Proto> {
        match self {
            Buffer::Stream => None,
            Buffer::TlsSni
            | Buffer::TlsSniDotted
            | Buffer::TlsCerts
            | Buffer::TlsCertSubject
            | Buffer::TlsCertIssuer
            | Buffer::TlsCertSerial
            | Buffer::TlsCertFingerprint => Some(Proto::Tls),
            Buffer::SshSoftware => Some(Proto::Ssh),
            Buffer::DnsQuery | Buffer::DnsQueryDotted => Some(Proto::Dns),
            Buffer::QuicSni | Buffer::QuicVersion => Some(Proto::Quic),
            _ => Some(Proto::Http),
        }
    }

    /// Whether only the client's side (`Some(true)`) or only the server's (`Some(false)`) fills
    /// it, for the buffers whose rules Suricata holds to one direction.
    pub fn sent_by_client(self) -> Option<bool> {
        match self {
            Buffer::TlsSni | Buffer::TlsSniDotted | Buffer::QuicSni => Some(true),
            Buffer::TlsCerts | Buffer::TlsCertSubject | Buffer::TlsCertIssuer | Buffer::TlsCertSerial | Buffer::TlsCertFingerprint => {
                Some(false)
            }
            _ => None,
        }
    }

    /// Which HTTP messages fill it: (requests, responses); neither for other buffers.
    pub fn http_sides(self) -> (bool, bool) {
        match self {
            Buffer::HttpUri
            | Buffer::HttpUriRaw
            | Buffer::HttpHost
            | Buffer::HttpMethod
            | Buffer::HttpUserAgent
            | Buffer::HttpReferer
            | Buffer::HttpAccept
            | Buffer::HttpAcceptEnc
            | Buffer::HttpAcceptLang
            | Buffer::HttpHostDotted
            | Buffer::HttpRequestLine
            | Buffer::HttpRequestBody => (true, false),
            Buffer::HttpResponseLine | Buffer::HttpStatCode | Buffer::HttpStatMsg | Buffer::HttpServer | Buffer::HttpLocation => {
                (false, true)
            }
            Buffer::HttpCookie
            | Buffer::HttpContentType
            | Buffer::HttpHeader
            | Buffer::HttpHeaderNames
            | Buffer::HttpProtocol
            | Buffer::HttpConnection
            | Buffer::HttpContentLen
            | Buffer::HttpStart
            | Buffer::HttpHeaderRaw => (true, true),
            Buffer::FileData => (true, true),
            Buffer::Stream
            | Buffer::TlsSni
            | Buffer::TlsSniDotted
            | Buffer::TlsCerts
            | Buffer::TlsCertSubject
            | Buffer::TlsCertIssuer
            | Buffer::TlsCertSerial
            | Buffer::TlsCertFingerprint
            | Buffer::SshSoftware
            | Buffer::DnsQuery
            | Buffer::DnsQueryDotted
            | Buffer::QuicSni
            | Buffer::QuicVersion => (false, false),
        }
    }
}

/// A `content` and its modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub pattern: Vec<u8>,
    pub nocase: bool,
    pub negated: bool,
    /// Absolute bounds: the match starts at or after `offset` and ends within `depth` bytes of
    /// it (from the buffer's start).
    pub offset: Option<u32>,
    pub depth: Option<u32>,
    /// Relative bounds, from the end of the previous match in the same buffer.
    pub distance: Option<i32>,
    pub within: Option<u32>,
    /// The match must end at the buffer's end.
    pub endswith: bool,
}

impl Content {
    /// Whether its position depends on the previous match.
    pub fn is_relative(&self) -> bool {
        self.distance.is_some() || self.within.is_some()
    }
}

/// A `pcre` (compiled with the regex crate, or PCRE2 for what it lacks: see [`PcreRegex`]).
#[derive(Debug, Clone)]
pub struct Pcre {
    pub source: String,
    pub regex: PcreRegex,
    /// `R`: searched from the end of the previous match.
    pub relative: bool,
    pub negated: bool,
    /// Every match starts at the subject's start (`^` without the `m` flag, or `\A`): against
    /// a window of a stream that no longer holds the stream's start, it cannot match.
    pub anchored: bool,
}

impl PartialEq for Pcre {
    fn eq(&self, other: &Self) -> bool {
        (&self.source, self.relative, self.negated) == (&other.source, other.relative, other.negated)
    }
}

impl Eq for Pcre {}

/// One detection step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Content(Content),
    Pcre(Pcre),
    /// `bsize` (or `urilen` on the URI): the buffer's length must lie in the range.
    Size(SizeRange),
    /// `isdataat`: whether the buffer has a byte at position `at`, or with `relative` at
    /// least `at` bytes after the end of the previous match; `negated`: it must not.
    IsDataAt {
        at: u32,
        relative: bool,
        negated: bool,
    },
    /// `byte_test`: a number read from the buffer, compared.
    ByteTest(ByteTest),
    /// `byte_jump`: a number read from the buffer moves where the next relative step counts from.
    ByteJump(ByteJump),
}

/// A length bound: `bsize:10`, `bsize:<10`, `bsize:>10`, `bsize:5<>10` (exclusive, as
/// Suricata's), and the inclusive `5<=>10` of Suricata 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Inclusive bounds.
    pub min: u64,
    pub max: u64,
}

impl SizeRange {
    pub fn contains(&self, len: usize) -> bool {
        (self.min..=self.max).contains(&(len as u64))
    }
}

/// Parses a `bsize` / `urilen` value (`urilen` may add `, raw` or `, norm`: the URI mbox has is
/// the raw one either way).
fn parse_size(text: &str) -> Result<SizeRange, String> {
    let text = text.split(',').next().unwrap_or("").trim();
    let num = |t: &str| -> Result<u64, String> { number(t) };
    if let Some((lo, hi)) = text.split_once("<=>") {
        return SizeRange { min: num(lo)?, max: num(hi)? }.checked(text);
    }
    if let Some((lo, hi)) = text.split_once("<>") {
        let (lo, hi) = (num(lo)?, num(hi)?);
        return SizeRange { min: lo.saturating_add(1), max: hi.saturating_sub(1) }.checked(text);
    }
    if let Some(n) = text.strip_prefix("<=") {
        return Ok(SizeRange { min: 0, max: num(n)? });
    }
    if let Some(n) = text.strip_prefix(">=") {
        return Ok(SizeRange { min: num(n)?, max: u64::MAX });
    }
    if let Some(n) = text.strip_prefix('<') {
        let n = num(n)?;
        return SizeRange { min: 0, max: n.checked_sub(1).ok_or(format!("`{text}`: no length is below 0"))? }.checked(text);
    }
    if let Some(n) = text.strip_prefix('>') {
        return Ok(SizeRange { min: num(n)?.saturating_add(1), max: u64::MAX });
    }
    let n = num(text)?;
    Ok(SizeRange { min: n, max: n })
}

impl SizeRange {
    fn checked(self, text: &str) -> Result<SizeRange, String> {
        if self.min > self.max {
            return Err(format!("`{text}` is an empty range"));
        }
        Ok(self)
    }
}

/// One `flowbits` option (Suricata's): a flow keeps named bits that rules set and test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flowbit {
    /// The rule applies only while one of the bits is set (`isset,a|b`).
    IsSet(Vec<String>),
    /// ... only while the bit is not set.
    IsNotSet(String),
    /// What a match does to a bit.
    Set(String),
    Unset(String),
    Toggle(String),
    /// A match sets its bits but raises no alert.
    NoAlert,
}

fn parse_flowbit(value: &str) -> Result<Flowbit, String> {
    let (op, name) = match value.split_once(',') {
        Some((op, name)) => (op.trim(), Some(name.trim())),
        None => (value.trim(), None),
    };
    let single = |name: Option<&str>| -> Result<String, String> {
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| format!("`{op}` needs a bit's name"))?;
        if name.contains(['|', '&']) {
            return Err(format!("`{op}` of several bits (`{name}`)"));
        }
        Ok(name.to_string())
    };
    Ok(match op {
        "isset" => Flowbit::IsSet(
            name.filter(|n| !n.is_empty() && !n.contains('&'))
                .ok_or_else(|| "`isset` needs bits' names, `|` between them".to_string())?
                .split('|')
                .map(|n| n.trim().to_string())
                .collect(),
        ),
        "isnotset" => Flowbit::IsNotSet(single(name)?),
        "set" => Flowbit::Set(single(name)?),
        "unset" => Flowbit::Unset(single(name)?),
        "toggle" => Flowbit::Toggle(single(name)?),
        "noalert" if name.is_none() => Flowbit::NoAlert,
        other => return Err(format!("`{other}` (set, unset, toggle, isset, isnotset, noalert)")),
    })
}

/// `flow:` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowOpts {
    /// `Some(true)`: only data from the client (`to_server`); `Some(false)`: only `to_client`.
    pub to_server: Option<bool>,
    /// `Some(true)`: only once the handshake completed; `Some(false)`: only before.
    pub established: Option<bool>,
}

/// What a rule says about itself, for alerts (eve.json's `alert` object, fast.log): read
/// without compiling its detection (see [`describe_rule`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleInfo {
    pub action: Action,
    /// Generator id: 1 unless the rule says (`gid`).
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    /// The whole message.
    pub msg: String,
    /// `classtype`, when given.
    pub classtype: Option<String>,
    /// The classtype's description (Suricata's `category`), empty without a classtype.
    pub category: String,
    /// `priority`, else the classtype's, else 3 (Suricata's `severity`).
    pub severity: u8,
    /// `metadata` pairs in rule order (`key value`).
    pub metadata: Vec<(String, String)>,
}

/// A loaded rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub sid: u32,
    pub rev: u32,
    pub msg: String,
    /// Action, gid, classtype, severity and metadata.
    pub info: RuleInfo,
    pub proto: Proto,
    pub src: AddrSet,
    pub src_ports: PortSet,
    pub dst: AddrSet,
    pub dst_ports: PortSet,
    /// `<>`: either way round.
    pub bidirectional: bool,
    pub flow: FlowOpts,
    /// `threshold` or `detection_filter`: which of its matches alert.
    pub threshold: Option<Threshold>,
    /// `flowbits`, in rule order: conditions on the flow's named bits, what a match does to
    /// them, and `noalert`.
    pub flowbits: Vec<Flowbit>,
    /// Detection steps in rule order, each with the buffer it looks at.
    pub items: Vec<(Buffer, Item)>,
    /// A TCP packet rule's conditions (`flags`, `dsize`; also for `tcp-pkt`): such a rule is
    /// checked on each packet, its stream steps on the packet's payload (see [`crate::packet`]).
    pub packet: Option<PacketOpts>,
    /// `stream_size`: checked when the rule matches, on the sizes of the moment.
    pub stream_size: Option<StreamSize>,
    /// 1-based line in its file.
    pub line: usize,
    /// The file, when the rules came from one.
    pub file: Option<Arc<str>>,
}

impl Rule {
    /// How far into a stream this rule can look: every stream byte that can decide whether it
    /// matches lies before this offset (`None`: anywhere). An absolute content is bounded by
    /// `offset + depth`, a relative one by `distance + within` after the match before it; a
    /// content without either bound, `endswith` and pcres reach anywhere.
    pub fn stream_reach(&self) -> Option<u64> {
        let (mut reach, mut prev_end) = (0u64, 0u64);
        for (buffer, item) in &self.items {
            if *buffer != Buffer::Stream {
                continue;
            }
            let Item::Content(c) = item else { return None };
            if c.endswith {
                return None;
            }
            let absolute = c.depth.map(|d| u64::from(c.offset.unwrap_or(0)) + u64::from(d));
            let relative = match (c.is_relative(), c.within) {
                (true, Some(within)) => Some(prev_end + c.distance.unwrap_or(0).max(0) as u64 + u64::from(within)),
                _ => None,
            };
            let end = match (absolute, relative) {
                (Some(a), Some(r)) => a.min(r),
                (Some(a), None) => a,
                (None, Some(r)) => r,
                (None, None) => return None,
            };
            // A negated content constrains the bytes it looks at, but the next relative step
            // still counts from the last positive match.
            if !c.negated {
                prev_end = end;
            }
            reach = reach.max(end);
        }
        Some(reach)
    }

    /// The application protocol a flow must have for this rule (from its protocol or its
    /// buffers).
    pub fn app_proto(&self) -> Option<Proto> {
        match self.proto {
            Proto::Tcp | Proto::Udp => self.items.iter().find_map(|(b, _)| b.proto()),
            p => Some(p),
        }
    }
}

/// The outcome of loading rules: the rules, and those refused with their reasons.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rules: Vec<Rule>,
    pub refused: Vec<RuleError>,
}

/// Parses every rule in `text` (one per line; `#` comments and blank lines skipped; a line
/// ending in `\` continues on the next), with the stock classifications. A later rule with a
/// sid already loaded is refused. [`crate::RuleSet`] loads several files.
pub fn parse_rules(text: &str, vars: &Vars) -> Loaded {
    let mut set = crate::RuleSet::new(vars.clone(), Classifications::stock());
    set.add_text(None, text);
    set.finish()
}

/// Each rule of a rule file's text with its first line (comments and blank lines skipped,
/// continued lines joined), or an error for a file that ends inside a continued line.
pub(crate) fn rule_lines(text: &str, mut each: impl FnMut(&str, usize)) -> Result<(), usize> {
    let mut pending = String::new();
    let mut first_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            first_line = i + 1;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        each(&pending, first_line);
        pending.clear();
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(first_line)
    }
}

/// A rule's text split into its header fields and options.
struct Parts<'a> {
    header: Vec<&'a str>,
    options: Vec<(&'a str, Option<&'a str>)>,
}

/// Splits a rule into header and options; the error names the keyword group (`syntax`).
fn split_rule(text: &str) -> Result<Parts<'_>, (&'static str, String)> {
    let open = text.find('(').ok_or(("syntax", "no option list `( ... )`".to_string()))?;
    let close = text.rfind(')').filter(|&c| c > open).ok_or(("syntax", "the option list is not closed".to_string()))?;
    if !text[close + 1..].trim().is_empty() {
        return Err(("syntax", "text after the option list".into()));
    }
    let options = split_options(&text[open + 1..close]).map_err(|e| ("syntax", e))?;
    Ok(Parts { header: text[..open].split_whitespace().collect(), options })
}

/// The options that describe a rule rather than what it matches.
const DESCRIPTIVE: &[&str] = &["msg", "sid", "rev", "gid", "classtype", "priority", "metadata", "reference", "target"];

/// Reads what a rule says about itself (action, ids, message, classtype, severity, metadata)
/// without compiling its detection: for an output that names the rules alerts came from.
/// `Err` holds the keyword and reason when even that cannot be read.
pub fn describe_rule(text: &str, classes: &Classifications) -> Result<RuleInfo, (String, String)> {
    let parts = split_rule(text).map_err(|(k, r)| (k.to_string(), r))?;
    describe(&parts, classes)
}

fn describe(parts: &Parts<'_>, classes: &Classifications) -> Result<RuleInfo, (String, String)> {
    let fail = |keyword: &str, reason: String| (keyword.to_string(), reason);
    let action = match parts.header.first().copied() {
        Some("alert") => Action::Alert,
        Some("drop") => Action::Drop,
        Some(other @ ("pass" | "reject" | "rejectsrc" | "rejectdst" | "rejectboth")) => {
            return Err(fail("action", format!("action `{other}` (mbox's IDS reports; `alert` and `drop`, which alerts, are supported)")))
        }
        Some(other) => return Err(fail("action", format!("action `{other}`"))),
        None => return Err(fail("syntax", "no header".into())),
    };
    let mut info = RuleInfo { action, gid: 1, ..RuleInfo::default() };
    let (mut have_sid, mut priority) = (false, None);
    for &(name, value) in &parts.options {
        if !DESCRIPTIVE.contains(&name) {
            continue;
        }
        let value = value.map(str::trim).ok_or_else(|| fail(name, format!("`{name}` needs a value")))?;
        let num = |v: &str| -> Result<u32, (String, String)> { number(v).map_err(|e| fail(name, format!("{name}: {e}"))) };
        match name {
            "msg" => info.msg = unquote_text(value),
            "sid" => {
                info.sid = num(value)?;
                have_sid = true;
            }
            "rev" => info.rev = num(value)?,
            "gid" => info.gid = num(value)?,
            "priority" => {
                let p = num(value)?;
                priority = Some(u8::try_from(p).ok().filter(|&p| p >= 1).ok_or_else(|| fail(name, format!("priority {p} (1 to 255)")))?);
            }
            "classtype" => info.classtype = Some(value.to_string()),
            "metadata" => {
                for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (key, val) = pair.split_once(char::is_whitespace).unwrap_or((pair, ""));
                    info.metadata.push((key.to_string(), val.trim().to_string()));
                }
            }
            _ => {} // reference, target: nothing an alert reports here
        }
    }
    if !have_sid {
        return Err(fail("sid", "no sid".into()));
    }
    let class = match &info.classtype {
        Some(name) => Some(
            classes.get(name).ok_or_else(|| fail("classtype", format!("unknown classtype `{name}` (not in the classification file)")))?,
        ),
        None => None,
    };
    info.category = class.map(|c| c.description.clone()).unwrap_or_default();
    info.severity = priority.or(class.map(|c| c.priority)).unwrap_or(3);
    Ok(info)
}

/// Parses one rule (`file`, `line`: where it is, for errors). `Ok(None)` for rules that never
/// alert by design (none here yet).
pub fn parse_rule<'a>(
    text: &'a str,
    file: Option<&Arc<str>>,
    line: usize,
    vars: &Vars,
    classes: &Classifications,
) -> Result<Option<Rule>, RuleError> {
    let sid = find_sid(text);
    let err = |keyword: &str, reason: String| RuleError { file: file.cloned(), line, sid, keyword: keyword.to_string(), reason };
    let parts = split_rule(text).map_err(|(k, r)| err(k, r))?;
    let info = describe(&parts, classes).map_err(|(k, r)| err(&k, r))?;
    let [_, proto, src, sport, dir, dst, dport] = parts.header[..] else {
        return Err(err(
            "syntax",
            format!("the header needs 7 fields (action proto src sport -> dst dport), found {}", parts.header.len()),
        ));
    };
    let packet_only = proto == "tcp-pkt";
    let proto = match proto {
        "tcp" | "tcp-pkt" => Proto::Tcp,
        "udp" => Proto::Udp,
        "http" | "http1" => Proto::Http,
        "tls" => Proto::Tls,
        "ssh" => Proto::Ssh,
        "smtp" => Proto::Smtp,
        "dns" => Proto::Dns,
        "quic" => Proto::Quic,
        other => return Err(err("protocol", format!("protocol `{other}`"))),
    };
    let bidirectional = match dir {
        "->" => false,
        "<>" => true,
        other => return Err(err("direction", format!("direction `{other}` (use -> or <>)"))),
    };
    let src = AddrSet::parse(src, vars).map_err(|e| err("address", format!("source address: {e}")))?;
    let src_ports = PortSet::parse(sport, vars).map_err(|e| err("port", format!("source port: {e}")))?;
    let dst = AddrSet::parse(dst, vars).map_err(|e| err("address", format!("destination address: {e}")))?;
    let dst_ports = PortSet::parse(dport, vars).map_err(|e| err("port", format!("destination port: {e}")))?;

    let mut rule = Rule {
        sid: info.sid,
        rev: info.rev,
        msg: info.msg.clone(),
        info,
        proto,
        src,
        src_ports,
        dst,
        dst_ports,
        bidirectional,
        flow: FlowOpts::default(),
        threshold: None,
        flowbits: Vec::new(),
        items: Vec::new(),
        packet: packet_only.then(PacketOpts::default),
        stream_size: None,
        line,
        file: file.cloned(),
    };
    let mut buffer = Buffer::Stream;
    for &(name, value) in &parts.options {
        let value = value.map(str::trim);
        let need = |v: Option<&'a str>| -> Result<&'a str, RuleError> { v.ok_or_else(|| err(name, format!("`{name}` needs a value"))) };
        match name {
            // What describes the rule was read above; these change nothing it matches.
            _ if DESCRIPTIVE.contains(&name) => {}
            "fast_pattern" | "rawbytes" => {}
            "flow" => {
                let (flow, packets_only) = parse_flow(need(value)?).map_err(|e| err(name, e))?;
                rule.flow = flow;
                match packets_only {
                    false => {}
                    true if rule.proto == Proto::Tcp => {
                        rule.packet.get_or_insert_default();
                    }
                    true => return Err(err(name, format!("flow option `no_stream` in a {:?} rule (TCP packets)", rule.proto))),
                }
            }
            "flowbits" => rule.flowbits.push(parse_flowbit(need(value)?).map_err(|e| err(name, format!("flowbits: {e}")))?),
            "threshold" | "detection_filter" => {
                if rule.threshold.is_some() {
                    return Err(err(name, "a second threshold or detection_filter".into()));
                }
                let t = Threshold::parse(need(value)?, name == "detection_filter").map_err(|e| err(name, format!("{name}: {e}")))?;
                rule.threshold = Some(t);
            }
            "content" => {
                let (negated, pattern) = parse_content(need(value)?).map_err(|e| err(name, format!("content: {e}")))?;
                let content =
                    Content { pattern, nocase: false, negated, offset: None, depth: None, distance: None, within: None, endswith: false };
                rule.items.push((buffer, Item::Content(content)));
            }
            "nocase" | "offset" | "depth" | "distance" | "within" | "startswith" | "endswith" => {
                // The content just before (a legacy modifier may have moved it to its buffer),
                // or the last in the current buffer whatever came after it (`bsize`,
                // `isdataat`), as Suricata finds it.
                let just_before = buffer == Buffer::Stream && matches!(rule.items.last(), Some((_, Item::Content(_))));
                let last = rule.items.iter_mut().rev().take_while(|(b, _)| just_before || *b == buffer).find_map(|(_, item)| match item {
                    Item::Content(c) => Some(c),
                    _ => None,
                });
                let Some(c) = last else {
                    return Err(err(name, format!("`{name}` without a content before it")));
                };
                apply_modifier(c, name, value).map_err(|e| err(name, format!("{name}: {e}")))?;
            }
            "pcre" => {
                let (pcre, forced) = parse_pcre(need(value)?).map_err(|e| err(name, format!("pcre: {e}")))?;
                rule.items.push((forced.unwrap_or(buffer), Item::Pcre(pcre)));
            }
            "byte_test" => {
                let t = parse_byte_test(need(value)?).map_err(|e| err(name, format!("byte_test: {e}")))?;
                rule.items.push((buffer, Item::ByteTest(t)));
            }
            "byte_jump" => {
                let j = parse_byte_jump(need(value)?).map_err(|e| err(name, format!("byte_jump: {e}")))?;
                rule.items.push((buffer, Item::ByteJump(j)));
            }
            "isdataat" => {
                let (item, b) = parse_isdataat(need(value)?, buffer).map_err(|e| err(name, format!("isdataat: {e}")))?;
                rule.items.push((b, item));
            }
            "bsize" => {
                if buffer == Buffer::Stream {
                    return Err(err(name, "`bsize` needs a sticky buffer before it".into()));
                }
                let size = parse_size(need(value)?).map_err(|e| err(name, format!("bsize: {e}")))?;
                rule.items.push((buffer, Item::Size(size)));
            }
            // A packet's payload size: a UDP datagram's is what the stream buffer holds; a TCP
            // rule with it is checked per packet.
            "dsize" if rule.proto == Proto::Udp => {
                let size = parse_size(need(value)?).map_err(|e| err(name, format!("dsize: {e}")))?;
                rule.items.push((Buffer::Stream, Item::Size(size)));
            }
            "dsize" if rule.proto == Proto::Tcp => {
                let size = parse_size(need(value)?).map_err(|e| err(name, format!("dsize: {e}")))?;
                rule.packet.get_or_insert_default().dsize = Some(size);
            }
            "flags" | "tcp.flags" if rule.proto == Proto::Tcp => {
                let flags = TcpFlags::parse(need(value)?).map_err(|e| err(name, format!("flags: {e}")))?;
                rule.packet.get_or_insert_default().flags = Some(flags);
            }
            "dsize" | "flags" | "tcp.flags" => {
                return Err(err(name, format!("`{name}` in a {:?} rule (a TCP packet's or a UDP datagram's)", rule.proto)))
            }
            "stream_size" if rule.proto != Proto::Udp => {
                rule.stream_size = Some(StreamSize::parse(need(value)?).map_err(|e| err(name, format!("stream_size: {e}")))?);
            }
            "urilen" => {
                let size = parse_size(need(value)?).map_err(|e| err(name, format!("urilen: {e}")))?;
                rule.items.push((Buffer::HttpUri, Item::Size(size)));
            }
            // Legacy content modifiers: the content before them looks in that buffer.
            _ if value.is_none() && legacy_modifier(name).is_some() => {
                let Some((b, Item::Content(_))) = rule.items.last_mut() else {
                    return Err(err(name, format!("`{name}` without a content before it")));
                };
                *b = legacy_modifier(name).expect("checked above");
            }
            // A transform of the sticky buffer: the contents after it look at the dotted name.
            "dotprefix" => {
                // A transform comes before the contents it transforms.
                if rule.items.last().is_some_and(|(b, _)| *b == buffer) {
                    return Err(err(name, "`dotprefix` after contents in its buffer".into()));
                }
                buffer = match buffer {
                    Buffer::DnsQuery => Buffer::DnsQueryDotted,
                    Buffer::TlsSni => Buffer::TlsSniDotted,
                    Buffer::HttpHost => Buffer::HttpHostDotted,
                    other => return Err(err(name, format!("`dotprefix` on {other:?} (mbox has it on dns.query, tls.sni and http.host)"))),
                };
            }
            // Sticky buffers: the contents after them look there.
            _ if value.is_none() && sticky_buffer(name).is_some() => buffer = sticky_buffer(name).expect("checked above"),
            other => return Err(err(other, format!("unsupported keyword `{other}`"))),
        }
    }
    anchor_first_relatives(&mut rule);
    check_buffers(&rule).map_err(|e| err("buffers", e))?;
    Ok(Some(rule))
}

/// The buffer a sticky-buffer keyword selects for the options after it.
fn sticky_buffer(name: &str) -> Option<Buffer> {
    Some(match name {
        "http.uri" => Buffer::HttpUri,
        "http.uri.raw" => Buffer::HttpUriRaw,
        "http.host" => Buffer::HttpHost,
        "http.method" => Buffer::HttpMethod,
        "http.user_agent" => Buffer::HttpUserAgent,
        "http.referer" => Buffer::HttpReferer,
        "http.accept" => Buffer::HttpAccept,
        "http.cookie" => Buffer::HttpCookie,
        "http.content_type" => Buffer::HttpContentType,
        "http.header" => Buffer::HttpHeader,
        "http.header_names" => Buffer::HttpHeaderNames,
        "http.protocol" => Buffer::HttpProtocol,
        "http.request_line" => Buffer::HttpRequestLine,
        "http.response_line" => Buffer::HttpResponseLine,
        "http.stat_code" => Buffer::HttpStatCode,
        "http.stat_msg" => Buffer::HttpStatMsg,
        "http.request_body" => Buffer::HttpRequestBody,
        "file.data" | "file_data" | "http.response_body" => Buffer::FileData,
        "http.accept_enc" => Buffer::HttpAcceptEnc,
        "http.accept_lang" => Buffer::HttpAcceptLang,
        "http.connection" => Buffer::HttpConnection,
        "http.content_len" => Buffer::HttpContentLen,
        "http.server" => Buffer::HttpServer,
        "http.location" => Buffer::HttpLocation,
        "http.start" => Buffer::HttpStart,
        "http.header.raw" => Buffer::HttpHeaderRaw,
        "tls.sni" | "tls_sni" => Buffer::TlsSni,
        "tls.certs" => Buffer::TlsCerts,
        "tls.cert_subject" | "tls_cert_subject" => Buffer::TlsCertSubject,
        "tls.cert_issuer" | "tls_cert_issuer" => Buffer::TlsCertIssuer,
        "tls.cert_serial" | "tls_cert_serial" => Buffer::TlsCertSerial,
        "tls.cert_fingerprint" | "tls_cert_fingerprint" => Buffer::TlsCertFingerprint,
        "ssh.software" => Buffer::SshSoftware,
        "dns.query" | "dns_query" => Buffer::DnsQuery,
        "quic.sni" => Buffer::QuicSni,
        "quic.version" => Buffer::QuicVersion,
        _ => return None,
    })
}

/// The buffer a legacy content modifier (`content:"x"; http_uri;`) moves its content to.
fn legacy_modifier(name: &str) -> Option<Buffer> {
    Some(match name {
        "http_uri" => Buffer::HttpUri,
        "http_raw_uri" => Buffer::HttpUriRaw,
        "http_host" => Buffer::HttpHost,
        "http_method" => Buffer::HttpMethod,
        "http_user_agent" => Buffer::HttpUserAgent,
        "http_cookie" => Buffer::HttpCookie,
        "http_header" => Buffer::HttpHeader,
        "http_client_body" => Buffer::HttpRequestBody,
        "http_stat_code" => Buffer::HttpStatCode,
        "http_stat_msg" => Buffer::HttpStatMsg,
        _ => return None,
    })
}

/// A relative step with nothing before it in its buffer counts from the buffer's start, as
/// Suricata takes it: a content's `distance` becomes its `offset` and its `within` its `depth`,
/// a pcre's `R` goes. (Made absolute so that a stream window that no longer starts at the
/// stream's start still counts from there.) One that also has an absolute bound stays, and is
/// refused.
fn anchor_first_relatives(rule: &mut Rule) {
    for i in 0..rule.items.len() {
        let buffer = rule.items[i].0;
        if rule.items[..i].iter().any(|(b, _)| *b == buffer) {
            continue;
        }
        match &mut rule.items[i].1 {
            Item::Content(c) if c.is_relative() && c.offset.is_none() && c.depth.is_none() => {
                c.offset = c.distance.map(|d| d.max(0) as u32);
                c.depth = c.within;
                (c.distance, c.within) = (None, None);
            }
            Item::Pcre(p) if p.relative => p.relative = false,
            Item::IsDataAt { relative, .. } => *relative = false,
            Item::ByteTest(ByteTest { reading, .. }) | Item::ByteJump(ByteJump { reading, .. }) => reading.relative = false,
            _ => {}
        }
    }
}

/// `isdataat:[!]N[,relative][,rawbytes]`, on the sticky buffer (or the stream), relative to
/// the previous match where it says so.
fn parse_isdataat(value: &str, buffer: Buffer) -> Result<(Item, Buffer), String> {
    let mut parts = value.split(',').map(str::trim);
    let first = parts.next().unwrap_or("");
    let (negated, at) = match first.strip_prefix('!') {
        Some(n) => (true, n.trim()),
        None => (false, first),
    };
    let at: u32 = number(at)?;
    let mut relative = false;
    for p in parts {
        match p {
            "relative" => relative = true,
            "rawbytes" => {}
            other => return Err(format!("`{other}` (relative, rawbytes)")),
        }
    }
    Ok((Item::IsDataAt { at, relative, negated }, buffer))
}

/// A rule's buffers must belong to its protocol (`alert tls ... http.uri` can never match).
fn check_buffers(rule: &Rule) -> Result<(), String> {
    if rule.packet.is_some() {
        if let Some(p) = rule.items.iter().find_map(|(b, _)| b.proto()) {
            // A packet's payload is not a protocol's buffer (Suricata refuses these too).
            return Err(format!("a {p:?} buffer in a packet rule (flags, dsize or tcp-pkt)"));
        }
    }
    let mut apps = rule.items.iter().filter_map(|(b, _)| b.proto());
    let on_stream = rule.items.iter().any(|(b, _)| *b == Buffer::Stream);
    if let Some(first) = apps.next() {
        if on_stream {
            // The stream and a protocol buffer are inspected at different moments (the stream as
            // it grows, a URI when its request is parsed): such a rule could never see both.
            return Err(format!("contents in both the stream and a {first:?} buffer"));
        }
        if let Some(other) = apps.find(|p| *p != first) {
            return Err(format!("buffers of two protocols ({first:?} and {other:?})"));
        }
        let fits = match rule.proto {
            // A tcp rule may look into any TCP application's buffers (DNS over TCP included).
            Proto::Tcp => true,
            Proto::Udp => first == Proto::Dns || first == Proto::Quic,
            p => p == first,
        };
        if !fits {
            return Err(format!("a {first:?} buffer in a {:?} rule", rule.proto));
        }
    }
    // As Suricata: a client's buffer and a server's cannot be in one rule, nor either against the
    // rule's flow direction.
    let sides: Vec<bool> = rule.items.iter().filter_map(|(b, _)| b.sent_by_client()).collect();
    if let Some(&first) = sides.first() {
        if sides.iter().any(|&s| s != first) || rule.flow.to_server.is_some_and(|t| t != first) {
            return Err("keywords with conflicting directions".into());
        }
    }
    for (buffer, item) in &rule.items {
        if let (Buffer::TlsCertFingerprint, Item::Content(c)) = (buffer, item) {
            if c.pattern.len() != 59 {
                return Err("a tls.cert_fingerprint content is a whole fingerprint (59 characters)".into());
            }
        }
    }
    for (i, (buffer, item)) in rule.items.iter().enumerate() {
        let relative = match item {
            Item::Content(c) => c.is_relative(),
            Item::Pcre(p) => p.relative,
            Item::Size(_) => false,
            Item::IsDataAt { relative, .. } => *relative,
            Item::ByteTest(t) => t.reading.relative,
            Item::ByteJump(j) => j.reading.relative,
        };
        if relative && !rule.items[..i].iter().any(|(b, _)| b == buffer) {
            return Err("a relative match (distance/within/R) with nothing before it in its buffer".into());
        }
    }
    Ok(())
}

/// The sid, if the text has one, for error messages about rules that fail before it is read.
fn find_sid(text: &str) -> Option<u32> {
    let at = text.find("sid:")?;
    let rest = text[at + 4..].trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Splits `name:value; name; ...` at semicolons outside quotes (and not escaped).
fn split_options(body: &str) -> Result<Vec<(&str, Option<&str>)>, String> {
    let mut options = Vec::new();
    let bytes = body.as_bytes();
    let (mut start, mut in_quotes, mut i) = (0, false, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1, // the next byte is escaped
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => {
                push_option(&body[start..i], &mut options)?;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        return Err("a quoted value is not closed".into());
    }
    if !body[start..].trim().is_empty() {
        return Err(format!("the last option `{}` lacks its `;`", body[start..].trim()));
    }
    Ok(options)
}

fn push_option<'a>(text: &'a str, options: &mut Vec<(&'a str, Option<&'a str>)>) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    match text.split_once(':') {
        Some((name, value)) => options.push((name.trim(), Some(value))),
        None => options.push((text, None)),
    }
    Ok(())
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim().parse().map_err(|_| format!("`{text}` is not a number"))
}

/// A quoted option value without its quotes and escapes (for `msg`).
fn unquote_text(text: &str) -> String {
    let inner = text.trim().strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `"abc|0d 0a|def"` or `!"..."`: the bytes, with `|hex|` runs and `\` escapes decoded.
fn parse_content(value: &str) -> Result<(bool, Vec<u8>), String> {
    let (negated, quoted) = match value.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, value),
    };
    let inner = quoted.strip_prefix('"').and_then(|t| t.strip_suffix('"')).ok_or("the pattern must be in double quotes")?;
    let mut out = Vec::with_capacity(inner.len());
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let next = *bytes.get(i + 1).ok_or("a trailing backslash")?;
                out.push(next);
                i += 2;
            }
            b'|' => {
                let end = inner[i + 1..].find('|').ok_or("an unclosed |hex| run")? + i + 1;
                let hex: String = inner[i + 1..end].chars().filter(|c| !c.is_whitespace()).collect();
                if hex.len() % 2 != 0 {
                    return Err(format!("odd number of hex digits in `|{}|`", &inner[i + 1..end]));
                }
                for pair in hex.as_bytes().chunks(2) {
                    let digit = |b: u8| (b as char).to_digit(16).ok_or_else(|| format!("`{}` is not hex", String::from_utf8_lossy(pair)));
                    out.push((digit(pair[0])? * 16 + digit(pair[1])?) as u8);
                }
                i = end + 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if out.is_empty() {
        return Err("an empty pattern".into());
    }
    Ok((negated, out))
}

fn apply_modifier(c: &mut Content, name: &str, value: Option<&str>) -> Result<(), String> {
    let int = |v: Option<&str>| -> Result<i64, String> {
        let v = v.ok_or("needs a value")?;
        // A name instead of a number is a byte_extract variable: not supported.
        v.parse::<i64>().map_err(|_| format!("`{v}` is not a number"))
    };
    let unsigned = |v: Option<&str>| -> Result<u32, String> { u32::try_from(int(v)?).map_err(|_| "must be 0 or more".to_string()) };
    match name {
        "nocase" => c.nocase = true,
        "offset" => c.offset = Some(unsigned(value)?),
        "depth" | "within" => {
            // Shorter than the pattern, it could never match (Suricata refuses it too).
            let n = unsigned(value)?;
            if (n as usize) < c.pattern.len() {
                return Err(format!("{n} is shorter than the pattern ({} bytes)", c.pattern.len()));
            }
            if name == "depth" {
                c.depth = Some(n);
            } else {
                c.within = Some(n);
            }
        }
        "distance" => c.distance = Some(i32::try_from(int(value)?).map_err(|_| "out of range")?),
        "startswith" => {
            c.offset = Some(0);
            c.depth = Some(c.pattern.len() as u32);
        }
        "endswith" => c.endswith = true,
        _ => unreachable!("only the modifiers matched by the caller"),
    }
    Ok(())
}

/// `"/regex/flags"` (or `!"..."`). Returns the pcre and, for the legacy buffer flags, the
/// buffer it forces.
fn parse_pcre(value: &str) -> Result<(Pcre, Option<Buffer>), String> {
    let (negated, quoted) = match value.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, value),
    };
    let inner = quoted.strip_prefix('"').and_then(|t| t.strip_suffix('"')).ok_or("the expression must be in double quotes")?;
    let body = inner.strip_prefix('/').ok_or("the expression must start with `/`")?;
    let end = body.rfind('/').ok_or("the expression must end with `/` and flags")?;
    let (pattern, flags) = (&body[..end], &body[end + 1..]);
    let mut builder = PcreFlags::default();
    let mut relative = false;
    let mut forced = None;
    for f in flags.chars() {
        match f {
            'i' => builder.caseless = true,
            's' => builder.dotall = true,
            'm' => builder.multiline = true,
            'x' => builder.extended = true,
            'R' => relative = true,
            'U' => forced = Some(Buffer::HttpUri),
            'W' => forced = Some(Buffer::HttpHost),
            'M' => forced = Some(Buffer::HttpMethod),
            'V' => forced = Some(Buffer::HttpUserAgent),
            // Suricata's other legacy buffer flags.
            'I' => forced = Some(Buffer::HttpUriRaw),
            'P' => forced = Some(Buffer::HttpRequestBody),
            'Q' => forced = Some(Buffer::FileData),
            'H' => forced = Some(Buffer::HttpHeader),
            'C' => forced = Some(Buffer::HttpCookie),
            'S' => forced = Some(Buffer::HttpStatCode),
            'Y' => forced = Some(Buffer::HttpStatMsg),
            other => return Err(format!("flag `{other}`")),
        }
    }
    let regex = PcreRegex::new(pattern, &builder)?;
    let anchored = starts_anchored(pattern, &builder);
    Ok((Pcre { source: inner.to_string(), regex, relative, negated, anchored }, forced))
}

/// Whether every match of `pattern` must begin at the start of the subject.
fn starts_anchored(pattern: &str, flags: &PcreFlags) -> bool {
    let parsed = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(flags.caseless)
        .dot_matches_new_line(flags.dotall)
        .multi_line(flags.multiline)
        .ignore_whitespace(flags.extended)
        .build()
        .parse(pattern);
    match parsed {
        Ok(hir) => hir.properties().look_set_prefix().contains(regex_syntax::hir::Look::Start),
        // A pattern only PCRE2 takes: anchored when it plainly starts so.
        Err(_) => pattern.starts_with("\\A") || (pattern.starts_with('^') && !flags.multiline),
    }
}

/// `flow:` options, and whether they say `no_stream` (packets only: a packet rule).
fn parse_flow(value: &str) -> Result<(FlowOpts, bool), String> {
    let mut flow = FlowOpts::default();
    let mut no_stream = false;
    for part in value.split(',').map(str::trim) {
        match part {
            "no_stream" => no_stream = true,
            "to_server" | "from_client" => flow.to_server = Some(true),
            "to_client" | "from_server" => flow.to_server = Some(false),
            "established" => flow.established = Some(true),
            "not_established" => flow.established = Some(false),
            // Match on reassembled streams (what mbox does anyway), or without state (ignored).
            "only_stream" | "stateless" => {}
            other => return Err(format!("flow option `{other}`")),
        }
    }
    Ok((flow, no_stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<Rule, RuleError> {
        parse_rule(text, None, 1, &Vars::default(), &Classifications::stock()).map(|r| r.unwrap())
    }

    #[test]
    fn a_header_and_content_with_modifiers() {
        let r = rule(r#"alert tcp $HOME_NET any -> $EXTERNAL_NET [80,8080] (msg:"x \"y\""; flow:established,to_server; content:"GET |20|/a\;b"; nocase; offset:0; depth:10; content:!"zz"; distance:1; within:5; sid:7; rev:2;)"#).unwrap();
        assert_eq!((r.sid, r.rev, r.msg.as_str(), r.proto), (7, 2, "x \"y\"", Proto::Tcp));
        assert_eq!(r.flow, FlowOpts { to_server: Some(true), established: Some(true) });
        let (Buffer::Stream, Item::Content(c)) = &r.items[0] else { panic!() };
        assert_eq!((c.pattern.as_slice(), c.nocase, c.offset, c.depth), (&b"GET  /a;b"[..], true, Some(0), Some(10)));
        let (_, Item::Content(c)) = &r.items[1] else { panic!() };
        assert!(c.negated && c.distance == Some(1) && c.within == Some(5));
        assert!(r.dst_ports.contains(8080) && !r.dst_ports.contains(443));
    }

    #[test]
    fn sticky_buffers_and_pcre() {
        let r = rule(
            r#"alert http any any -> any any (msg:"m"; http.uri; content:"union"; nocase; content:"select"; distance:0; pcre:"/(cmd\.exe|\/bin\/sh)/i"; tls.sni; content:"x"; sid:1;)"#,
        );
        assert!(r.unwrap_err().reason.contains("two protocols"));
        let r = rule(r#"alert http any any -> any any (msg:"m"; http.uri; content:"union"; nocase; content:"select"; distance:0; pcre:"/(cmd\.exe|\/bin\/sh)/iR"; sid:1;)"#).unwrap();
        assert!(r.items.iter().all(|(b, _)| *b == Buffer::HttpUri));
        let (_, Item::Pcre(p)) = &r.items[2] else { panic!() };
        assert!(p.relative && p.regex.is_match(b"x/BIN/SH") == Ok(true));
        // Anchoring is known for patterns only PCRE2 takes too.
        for (pcre, anchored) in [(r"/^(a)\1/", true), (r"/^(a)\1/m", false), (r"/x(a)\1/", false), (r"/\A(?=a)/", true)] {
            let r = rule(&format!(r#"alert tcp any any -> any any (msg:"m"; pcre:"{pcre}"; sid:1;)"#)).unwrap();
            let (_, Item::Pcre(p)) = &r.items[0] else { panic!() };
            assert_eq!((p.anchored, p.regex.is_linear()), (anchored, false), "{pcre}");
        }
        assert_eq!(r.app_proto(), Some(Proto::Http));
    }

    #[test]
    fn a_modifier_after_isdataat_or_bsize_is_its_contents() {
        let r = rule(r#"alert tls any any -> any any (msg:"m"; tls_sni; content:"Example.cn"; isdataat:!1,relative; nocase; bsize:10; endswith; sid:1;)"#).unwrap();
        let (Buffer::TlsSni, Item::Content(c)) = &r.items[0] else { panic!() };
        assert!(c.nocase && c.endswith);
        // A legacy modifier's content takes the modifiers after it.
        let r = rule(r#"alert http any any -> any any (msg:"m"; content:"get"; http_method; nocase; sid:1;)"#).unwrap();
        assert!(matches!(&r.items[0], (Buffer::HttpMethod, Item::Content(c)) if c.nocase));
        // But not one of another buffer.
        let r = rule(r#"alert http any any -> any any (msg:"m"; http.uri; content:"a"; http.host; nocase; sid:1;)"#);
        assert!(r.unwrap_err().reason.contains("without a content"));
    }

    #[test]
    fn dotprefix_and_single_headers() {
        let r = rule(r#"alert dns any any -> any any (msg:"m"; dns.query; dotprefix; content:".example.com"; endswith; sid:1;)"#).unwrap();
        assert_eq!(r.items[0].0, Buffer::DnsQueryDotted);
        let r =
            rule(r#"alert http any any -> any any (msg:"m"; http.server; content:"nginx"; http.location; content:"/x"; sid:1;)"#).unwrap();
        assert_eq!([r.items[0].0, r.items[1].0], [Buffer::HttpServer, Buffer::HttpLocation]);
        let on_uri = rule(r#"alert http any any -> any any (msg:"m"; http.uri; dotprefix; content:".a"; sid:1;)"#);
        assert!(on_uri.unwrap_err().reason.contains("dotprefix"));
        let late = rule(r#"alert dns any any -> any any (msg:"m"; dns.query; content:"a"; dotprefix; content:".b"; sid:1;)"#);
        assert!(late.unwrap_err().reason.contains("after contents"));
    }

    #[test]
    fn certificate_buffers_are_the_servers_side() {
        let r = rule(r#"alert tls any any -> any any (msg:"m"; flow:established,to_client; tls.certs; content:"|06 03 55 04 03|"; content:"x"; distance:0; tls.cert_subject; content:"CN=a"; tls_cert_issuer; content:"O=b"; sid:1;)"#).unwrap();
        let buffers: Vec<Buffer> = r.items.iter().map(|(b, _)| *b).collect();
        assert_eq!(buffers, [Buffer::TlsCerts, Buffer::TlsCerts, Buffer::TlsCertSubject, Buffer::TlsCertIssuer]);
        assert_eq!(r.app_proto(), Some(Proto::Tls));
        // As Suricata: the client's name and the server's certificates are not one rule's, and
        // a certificate rule is not a client's.
        for text in [
            r#"alert tls any any -> any any (msg:"m"; tls.sni; content:"a"; tls.cert_subject; content:"b"; sid:1;)"#,
            r#"alert tls any any -> any any (msg:"m"; flow:to_server; tls.cert_serial; content:"0A"; sid:1;)"#,
            r#"alert tls any any -> any any (msg:"m"; flow:to_client; tls.sni; content:"a"; sid:1;)"#,
        ] {
            assert!(rule(text).unwrap_err().reason.contains("conflicting directions"), "{text}");
        }
        // A fingerprint is matched whole (Suricata: "Invalid length ... will never match").
        let fp = "db:a7:e4:3e:6d:bb:21:ab:68:47:35:e8:0b:8f:15:df:db:c7:c9:6f";
        assert!(rule(&format!(r#"alert tls any any -> any any (msg:"m"; tls.cert_fingerprint; content:"{fp}"; sid:1;)"#)).is_ok());
        let short = rule(r#"alert tls any any -> any any (msg:"m"; tls.cert_fingerprint; content:"db:a7"; sid:1;)"#);
        assert!(short.unwrap_err().reason.contains("59 characters"));
    }

    #[test]
    fn every_buffer_is_listed_at_its_index() {
        // The engine's per-buffer tables are indexed by `buffer as usize`.
        assert!(Buffer::ALL.iter().enumerate().all(|(i, b)| *b as usize == i));
        assert_eq!(Buffer::ALL.len(), Buffer::QuicVersion as usize + 1);
    }

    #[test]
    fn http_buffers_sizes_and_thresholds() {
        let r = rule(r#"alert http any any -> any any (msg:"m"; http.header_names; content:"|0d 0a|Host"; http.stat_code; content:"200"; bsize:3; content:"x"; http_cookie; urilen:>5; pcre:"/a/P"; threshold:type limit, track by_src, count 1, seconds 60; sid:1;)"#).unwrap();
        let buffers: Vec<Buffer> = r.items.iter().map(|(b, _)| *b).collect();
        assert_eq!(
            buffers,
            [
                Buffer::HttpHeaderNames,
                Buffer::HttpStatCode,
                Buffer::HttpStatCode,
                Buffer::HttpCookie,
                Buffer::HttpUri,
                Buffer::HttpRequestBody
            ]
        );
        assert!(matches!(r.items[2].1, Item::Size(SizeRange { min: 3, max: 3 })));
        assert!(matches!(r.items[4].1, Item::Size(SizeRange { min: 6, max: u64::MAX })));
        assert_eq!(r.threshold.map(|t| (t.count, t.seconds)), Some((1, 60)));
        let size = |t: &str| parse_size(t).map(|r| (r.min, r.max));
        assert_eq!(size("<10"), Ok((0, 9)));
        assert_eq!(size("5<>10"), Ok((6, 9)));
        assert_eq!(size("5<=>10"), Ok((5, 10)));
        assert_eq!(size(">=4"), Ok((4, u64::MAX)));
        assert_eq!(size("12, raw"), Ok((12, 12)));
        assert!(size("<0").is_err() && size("9<>10").is_err() && size("x").is_err());
        // dsize is a UDP datagram's size; on TCP it makes a packet rule, as flags and tcp-pkt do.
        let r = rule(r#"alert udp any any -> any 57621 (msg:"m"; dsize:44; content:"Spot"; depth:4; sid:2;)"#).unwrap();
        assert!(matches!(r.items[0], (Buffer::Stream, Item::Size(SizeRange { min: 44, max: 44 }))));
        assert!(r.packet.is_none());
        let r = rule(r#"alert tcp any any -> any any (msg:"m"; stream_size:server,<,5; dsize:14; content:"|30 0c|"; startswith; sid:3;)"#)
            .unwrap();
        let packet = r.packet.unwrap();
        assert_eq!((packet.dsize, packet.flags), (Some(SizeRange { min: 14, max: 14 }), None));
        assert!(r.stream_size.is_some_and(|s| s.holds([1, 4]) && !s.holds([1, 5])));
        assert!(rule(r#"alert tcp any any -> any 5432 (msg:"m"; flow:to_server; flags:S,12; sid:5;)"#)
            .unwrap()
            .packet
            .unwrap()
            .flags
            .is_some());
        assert!(rule(r#"alert tcp-pkt any any -> any 22 (msg:"m"; content:"SSH-"; sid:6;)"#).unwrap().packet.is_some());
        assert!(rule(r#"alert tcp any any -> any 22 (msg:"m"; flow:established,no_stream; content:"SSH-"; sid:9;)"#)
            .unwrap()
            .packet
            .is_some());
        // A stream rule may have stream_size; a packet's payload holds no protocol buffer.
        assert!(rule(r#"alert tcp any any -> any any (msg:"m"; stream_size:client,<,10000; content:"x"; sid:7;)"#)
            .unwrap()
            .packet
            .is_none());
        let e = rule(r#"alert tcp any any -> any any (msg:"m"; dsize:>10; http.uri; content:"x"; sid:8;)"#).unwrap_err();
        assert!(e.reason.contains("packet rule"), "{e}");
        assert!(rule(r#"alert http any any -> any any (msg:"m"; flags:S; sid:10;)"#)
            .unwrap_err()
            .reason
            .contains("`flags` in a Http rule"));
        assert!(rule(r#"alert tcp any any -> any any (msg:"m"; bsize:4; sid:4;)"#).unwrap_err().reason.contains("sticky buffer"));
        // A relative first content counts from its buffer's start.
        let r = rule(r#"alert http any any -> any any (msg:"m"; file.data; content:"root:x"; distance:2; within:27; pcre:"/^a/R"; http.uri; pcre:"/b/R"; sid:9;)"#).unwrap();
        let (_, Item::Content(c)) = &r.items[0] else { panic!() };
        assert_eq!((c.offset, c.depth, c.distance, c.within), (Some(2), Some(27), None, None));
        let (Item::Pcre(second), Item::Pcre(first_in_uri)) = (&r.items[1].1, &r.items[2].1) else { panic!() };
        assert!(second.relative && !first_in_uri.relative);
        let r = rule(r#"alert http any any -> any any (msg:"m"; flowbits:isset,a|b; flowbits:set,c; flowbits:noalert; http.uri; content:"x"; sid:6;)"#).unwrap();
        assert_eq!(r.flowbits, [Flowbit::IsSet(vec!["a".into(), "b".into()]), Flowbit::Set("c".into()), Flowbit::NoAlert]);
        assert!(rule(r#"alert http any any -> any any (msg:"m"; flowbits:set,a|b; sid:7;)"#).unwrap_err().reason.contains("several bits"));
        assert!(rule(r#"alert http any any -> any any (msg:"m"; flowbits:flip,a; sid:8;)"#).unwrap_err().reason.contains("`flip`"));
        let e = rule(
            r#"alert tcp any any -> any any (msg:"m"; threshold:type limit, track by_src, count 1, seconds 9; detection_filter:track by_src, count 1, seconds 9; sid:5;)"#,
        );
        assert!(e.unwrap_err().reason.contains("a second threshold"));
    }

    #[test]
    fn unsupported_rules_say_why() {
        let cases = [
            (r#"reject tcp any any -> any any (msg:"m"; sid:1;)"#, "action `reject`"),
            (r#"alert icmp any any -> any any (msg:"m"; sid:1;)"#, "protocol `icmp`"),
            (r#"alert tcp any any -> any any (msg:"m"; byte_extract:1,0,x; sid:1;)"#, "unsupported keyword `byte_extract`"),
            (r#"alert tcp any any -> any any (msg:"m"; byte_test:1,~,2,0; sid:1;)"#, "operator `~`"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"a"; within:$x; sid:1;)"#, "not a number"),
            (r#"alert tcp any any -> any any (msg:"m"; pcre:"/a(b/"; sid:1;)"#, "nor PCRE2"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"a"; sid:1)"#, "lacks its `;`"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"|4|"; sid:1;)"#, "odd number"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"a"; offset:1; distance:0; sid:1;)"#, "nothing before it"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"a";)"#, "no sid"),
            (r#"alert tcp any any -> $NOPE any (msg:"m"; sid:1;)"#, "unknown address variable"),
            (r#"alert tcp any any <- any any (msg:"m"; sid:1;)"#, "direction"),
            (r#"alert udp any any -> any any (msg:"m"; http.uri; content:"a"; sid:1;)"#, "Http buffer in a Udp rule"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"|+1 +2|"; sid:1;)"#, "not hex"),
            (r#"alert tcp any any -> any any (msg:"m"; content:"abc"; depth:2; sid:1;)"#, "shorter than the pattern"),
            (r#"alert http any any -> any any (msg:"m"; content:"a"; http.uri; content:"b"; sid:1;)"#, "both the stream and"),
        ];
        for (text, why) in cases {
            let e = rule(text).unwrap_err();
            assert!(e.reason.contains(why), "{text}: {e}");
            assert!(e.sid.is_some() || why == "no sid", "{e}");
        }
    }

    #[test]
    fn stream_reach_follows_depth_and_within() {
        let reach = |opts: &str| rule(&format!("alert tcp any any -> any any (msg:\"m\"; {opts} sid:1;)")).unwrap().stream_reach();
        assert_eq!(reach(r#"content:"GET"; depth:3;"#), Some(3));
        assert_eq!(reach(r#"content:"GET"; offset:10; depth:3;"#), Some(13));
        assert_eq!(reach(r#"content:"GET"; depth:3; content:"x"; distance:2; within:5;"#), Some(10));
        assert_eq!(reach(r#"content:"GET"; depth:3; content:!"x"; within:5; content:"y"; distance:0; within:4;"#), Some(8));
        assert_eq!(reach(r#"content:"GET"; depth:3; content:"x"; distance:0;"#), None, "x may lie anywhere after GET");
        assert_eq!(reach(r#"content:"GET";"#), None);
        assert_eq!(reach(r#"content:"GET"; depth:3; pcre:"/x/R";"#), None);
        assert_eq!(reach(r#"content:"GET"; depth:3; content:"x"; endswith;"#), None);
        assert_eq!(reach(r#"http.uri; content:"GET";"#), Some(0), "no stream steps");
    }

    #[test]
    fn a_file_with_comments_continuations_and_bad_lines() {
        let text = "# a comment\n\nalert tcp any any -> any any (msg:\"a\"; \\\n content:\"x\"; sid:1;)\nnonsense\nalert udp any any -> any 53 (msg:\"b\"; dns.query; content:\".\"; sid:2;)\n";
        let loaded = parse_rules(text, &Vars::default());
        assert_eq!(loaded.rules.iter().map(|r| (r.sid, r.line)).collect::<Vec<_>>(), [(1, 3), (2, 6)]);
        assert_eq!(loaded.refused.len(), 1);
        assert_eq!(loaded.refused[0].line, 5);
    }
}
