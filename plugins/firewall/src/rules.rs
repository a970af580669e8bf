//! The rule language and its matcher, apart from the NF glue: parsing a rule file into
//! [`Rule`]s with errors that name the line, and finding the first rule a [`Packet`] matches.
//!
//! One rule per line; `#` starts a comment; blank lines are skipped:
//!
//! ```text
//! ACTION PROTO from ADDR [port PORTS] to ADDR [port PORTS] [on N]
//! allow tcp from 198.18.1.0/24 to 198.18.1.2/32 port 80,443,8000-8080
//! deny udp from any to any port 53
//! allow icmp from any to any
//! deny any from 198.18.128.0/17 to any
//! allow tcp from any to any port 22 on 0
//! ```
//!
//! - ACTION: `allow` or `deny`.
//! - PROTO: `tcp`, `udp`, `icmp`, `icmpv6`, `any`, or an IP protocol number (0-255).
//! - ADDR: `any`, an IPv4 or IPv6 address (a single host), or a CIDR (`198.18.0.0/15`,
//!   `2001:db8::/32`) whose host bits are zero.
//! - PORTS (TCP and UDP only): a comma-separated list of ports and ranges (`80,443,8000-8080`);
//!   the source's after `from ADDR`, the destination's after `to ADDR`.
//! - `on N`: only packets that arrived on port (interface) N.
//!
//! Keywords are case-insensitive. The first rule that matches decides.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a rule does with the packets (and, statefully, the flows) it matches.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    /// The action as rules and counter names write it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// An address or network a rule matches.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Net {
    Any,
    V4 { addr: u32, mask: u32 },
    V6 { addr: u128, mask: u128 },
}

impl Net {
    #[inline]
    fn matches(self, a: Addr) -> bool {
        match (self, a) {
            (Net::Any, _) => true,
            (Net::V4 { addr, mask }, Addr::V4(a)) => a & mask == addr,
            (Net::V6 { addr, mask }, Addr::V6(a)) => a & mask == addr,
            _ => false,
        }
    }

    fn family(self) -> Option<u8> {
        match self {
            Net::Any => None,
            Net::V4 { .. } => Some(4),
            Net::V6 { .. } => Some(6),
        }
    }
}

/// A packet's address, as the matcher compares it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    V4(u32),
    V6(u128),
    /// Not readable (only `any` matches it).
    Unknown,
}

/// Inclusive port ranges; empty means any port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ports(pub Vec<(u16, u16)>);

impl Ports {
    #[inline]
    fn matches(&self, port: u16) -> bool {
        self.0.is_empty() || self.0.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }
}

/// One rule, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// The IP protocol number; `None` for `any`.
    pub proto: Option<u8>,
    pub src: Net,
    pub src_ports: Ports,
    pub dst: Net,
    pub dst_ports: Ports,
    /// The port (interface) the packet must have arrived on; `None` for any.
    pub on: Option<u16>,
}

/// What the matcher needs to know about a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// TCP and UDP ports (0 for other protocols).
    pub src_port: u16,
    pub dst_port: u16,
    /// The port (interface) it arrived on.
    pub on: u16,
}

impl Rule {
    /// True when the rule matches `p`.
    #[inline]
    pub fn matches(&self, p: &Packet) -> bool {
        self.proto.is_none_or(|proto| proto == p.proto)
            && self.on.is_none_or(|on| on == p.on)
            && self.src.matches(p.src)
            && self.dst.matches(p.dst)
            && self.src_ports.matches(p.src_port)
            && self.dst_ports.matches(p.dst_port)
    }
}

/// The index of the first rule that matches `p`.
#[inline]
pub fn first_match(rules: &[Rule], p: &Packet) -> Option<usize> {
    rules.iter().position(|r| r.matches(p))
}

/// A rule that could not be parsed: where (`rules.txt:12`, or `` `rule` item 2 ``) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub at: String,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The rules of a rule file's text; `source` names the file in errors (`source:LINE: ...`).
/// Every line is checked: the error lists every bad line.
pub fn parse_file(text: &str, source: &str) -> Result<Vec<Rule>, Vec<ParseError>> {
    collect(text.lines().enumerate().map(|(i, line)| (format!("{source}:{}", i + 1), line)))
}

/// The rules of a list given inline (the `rule` argument); errors say `` `rule` item N ``
/// (1-based).
pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Rule>, Vec<ParseError>> {
    collect(items.into_iter().enumerate().map(|(i, line)| (format!("`rule` item {}", i + 1), line)))
}

fn collect<'a>(lines: impl Iterator<Item = (String, &'a str)>) -> Result<Vec<Rule>, Vec<ParseError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (at, line) in lines {
        match parse_line(line) {
            Ok(Some(rule)) => rules.push(rule),
            Ok(None) => {}
            Err(message) => errors.push(ParseError { at, message }),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

const PROTOCOLS: &str = "tcp, udp, icmp, icmpv6, any or a protocol number 0-255";
const ADDRESSES: &str = "any, an IPv4 or IPv6 address, or a CIDR such as 198.18.0.0/15 or 2001:db8::/32";

/// One line: `Ok(None)` when it holds no rule (blank, or only a comment).
pub fn parse_line(line: &str) -> Result<Option<Rule>, String> {
    let code = line.split('#').next().unwrap_or("");
    let mut t = Tokens { words: code.split_whitespace().peekable(), last: "" };
    let Some(action) = t.next() else { return Ok(None) };
    let action = if keyword(action, "allow") {
        Action::Allow
    } else if keyword(action, "deny") {
        Action::Deny
    } else {
        return Err(format!("unknown action {action:?} (expected allow or deny)"));
    };
    let proto = t.next().ok_or_else(|| format!("the rule ends after {:?} (expected a protocol: {PROTOCOLS})", t.last))?;
    let proto = protocol(proto)?;
    t.expect("from", "after the protocol")?;
    let src = t.addr()?;
    let src_ports = t.ports_if_any()?;
    t.expect("to", "after the source")?;
    let dst = t.addr()?;
    let dst_ports = t.ports_if_any()?;
    let mut on = None;
    if t.peek_is("on") {
        t.next();
        let n = t.next().ok_or("the rule ends after \"on\" (expected a port (interface) number 0-65535)")?;
        on = Some(n.parse::<u16>().map_err(|_| format!("{n:?} is not a port (interface) number (expected 0-65535)"))?);
    }
    let before = t.last;
    if let Some(extra) = t.next() {
        let expected = match (on, dst_ports.0.is_empty()) {
            (Some(_), _) => "the end of the rule",
            (None, false) => "on or the end of the rule",
            (None, true) => "port, on or the end of the rule",
        };
        return Err(format!("unexpected {extra:?} after {before:?} (expected {expected})"));
    }
    let ported = matches!(proto, Some(6) | Some(17));
    let has_ports = !src_ports.0.is_empty() || !dst_ports.0.is_empty();
    if has_ports && !ported {
        return Err(match proto {
            None => "ports need protocol tcp or udp, not any (write one rule for tcp and one for udp)".into(),
            Some(p) => format!("ports need protocol tcp or udp, not {}", protocol_name(p)),
        });
    }
    match (src.family(), dst.family()) {
        (Some(4), Some(6)) => return Err("the source is IPv4 and the destination IPv6: the rule could never match".into()),
        (Some(6), Some(4)) => return Err("the source is IPv6 and the destination IPv4: the rule could never match".into()),
        _ => {}
    }
    let family = src.family().or(dst.family());
    match (proto, family) {
        (Some(1), Some(6)) => return Err("icmp is IPv4's ICMP; with IPv6 addresses write icmpv6".into()),
        (Some(58), Some(4)) => return Err("icmpv6 is IPv6's ICMP; with IPv4 addresses write icmp".into()),
        _ => {}
    }
    Ok(Some(Rule { action, proto, src, src_ports, dst, dst_ports, on }))
}

fn keyword(word: &str, expected: &str) -> bool {
    word.eq_ignore_ascii_case(expected)
}

fn protocol(word: &str) -> Result<Option<u8>, String> {
    let named = [("any", None), ("tcp", Some(6)), ("udp", Some(17)), ("icmp", Some(1)), ("icmpv6", Some(58))];
    if let Some(&(_, proto)) = named.iter().find(|(name, _)| keyword(word, name)) {
        return Ok(proto);
    }
    if word.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = word.parse::<u8>() {
            return Ok(Some(n));
        }
    }
    Err(format!("unknown protocol {word:?} (expected {PROTOCOLS})"))
}

/// The protocol's name as rules write it.
pub fn protocol_name(proto: u8) -> String {
    match proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

struct Tokens<'a, I: Iterator<Item = &'a str>> {
    words: std::iter::Peekable<I>,
    /// The word taken last (for messages).
    last: &'a str,
}

impl<'a, I: Iterator<Item = &'a str>> Tokens<'a, I> {
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.next()?;
        self.last = w;
        Some(w)
    }

    fn peek_is(&mut self, word: &str) -> bool {
        self.words.peek().is_some_and(|w| keyword(w, word))
    }

    fn expect(&mut self, word: &str, after: &str) -> Result<(), String> {
        match self.next() {
            Some(w) if keyword(w, word) => Ok(()),
            Some(w) => Err(format!("expected {word:?} {after}, not {w:?}")),
            None => Err(format!("the rule ends after {:?} (expected {word:?})", self.last)),
        }
    }

    fn addr(&mut self) -> Result<Net, String> {
        let after = self.last;
        let w = self.next().ok_or_else(|| format!("the rule ends after {after:?} (expected an address: {ADDRESSES})"))?;
        net(w)
    }

    /// `port PORTS` when the next word is `port`; a list may have spaces after its commas.
    fn ports_if_any(&mut self) -> Result<Ports, String> {
        if !self.peek_is("port") {
            return Ok(Ports::default());
        }
        self.next();
        let mut list = String::new();
        while let Some(&w) = self.words.peek() {
            if !(list.is_empty() || list.ends_with(',') || w.starts_with(',')) {
                break;
            }
            list.push_str(w);
            self.next();
        }
        if list.is_empty() {
            return Err("the rule ends after \"port\" (expected ports such as 80,443,8000-8080)".into());
        }
        ports(&list)
    }
}

fn ports(list: &str) -> Result<Ports, String> {
    let port = |s: &str| -> Result<u16, String> {
        s.parse::<u16>().map_err(|_| format!("{s:?} is not a port number (expected 0-65535, or a range such as 8000-8080)"))
    };
    let mut ranges = Vec::new();
    for item in list.split(',') {
        if item.is_empty() {
            return Err(format!("an empty item in the port list {list:?}"));
        }
        let (lo, hi) = match item.split_once('-') {
            Some((lo, hi)) => (port(lo)?, port(hi)?),
            None => (port(item)?, port(item)?),
        };
        if lo > hi {
            return Err(format!("the port range {item} runs backwards (write {hi}-{lo})"));
        }
        ranges.push((lo, hi));
    }
    Ok(Ports(ranges))
}

fn net(w: &str) -> Result<Net, String> {
    if keyword(w, "any") {
        return Ok(Net::Any);
    }
    let (addr, prefix) = match w.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (w, None),
    };
    let prefix_len = |max: u32| -> Result<u32, String> {
        let Some(p) = prefix else { return Ok(max) };
        let n: u32 = p
            .parse()
            .ok()
            .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{p:?} in {w:?} is not a prefix length (expected 0-{max})"))?;
        if n > max {
            return Err(format!("the prefix length {n} in {w:?} is too long (IPv{} allows 0-{max})", if max == 32 { 4 } else { 6 }));
        }
        Ok(n)
    };
    if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let len = prefix_len(32)?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let a = u32::from(a);
        if a & mask != a {
            return Err(format!("{w:?} has host bits set (the network is {}/{len})", Ipv4Addr::from(a & mask)));
        }
        return Ok(Net::V4 { addr: a, mask });
    }
    if let Ok(a) = addr.parse::<Ipv6Addr>() {
        let len = prefix_len(128)?;
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
        let a = u128::from(a);
        if a & mask != a {
            return Err(format!("{w:?} has host bits set (the network is {}/{len})", Ipv6Addr::from(a & mask)));
        }
        return Ok(Net::V6 { addr: a, mask });
    }
    Err(format!("{w:?} is not an address (expected {ADDRESSES})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(line: &str) -> Rule {
        parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}")).expect("a rule")
    }

    fn err(line: &str) -> String {
        match parse_line(line) {
            Err(e) => e,
            Ok(r) => panic!("{line} parsed as {r:?}"),
        }
    }

    fn v4(s: &str) -> Addr {
        Addr::V4(u32::from(s.parse::<Ipv4Addr>().unwrap()))
    }

    fn v6(s: &str) -> Addr {
        Addr::V6(u128::from(s.parse::<Ipv6Addr>().unwrap()))
    }

    fn tcp(src: Addr, sport: u16, dst: Addr, dport: u16) -> Packet {
        Packet { proto: 6, src, dst, src_port: sport, dst_port: dport, on: 0 }
    }

    #[test]
    fn the_examples_parse() {
        let r = rule("allow tcp from 198.18.1.0/24 to 198.18.1.2/32 port 80,443,8000-8080");
        assert_eq!(r.action, Action::Allow);
        assert_eq!(r.proto, Some(6));
        assert_eq!(r.src, Net::V4 { addr: 0xc612_0100, mask: 0xffff_ff00 });
        assert_eq!(r.dst, Net::V4 { addr: 0xc612_0102, mask: u32::MAX });
        assert_eq!(r.src_ports, Ports::default());
        assert_eq!(r.dst_ports, Ports(vec![(80, 80), (443, 443), (8000, 8080)]));
        assert_eq!(r.on, None);
        let r = rule("deny udp from any to any port 53");
        assert_eq!((r.action, r.proto, r.src, r.dst, r.dst_ports), (Action::Deny, Some(17), Net::Any, Net::Any, Ports(vec![(53, 53)])));
        let r = rule("allow icmp from any to any");
        assert_eq!((r.proto, r.src, r.dst), (Some(1), Net::Any, Net::Any));
        let r = rule("deny any from 198.18.128.0/17 to any");
        assert_eq!((r.proto, r.src), (None, Net::V4 { addr: 0xc612_8000, mask: 0xffff_8000 }));
        let r = rule("allow tcp from any port 1024-65535 to 2001:db8::/32 port 22 on 1");
        assert_eq!(r.src_ports, Ports(vec![(1024, 65535)]));
        assert_eq!(r.dst, Net::V6 { addr: 0x2001_0db8 << 96, mask: u128::MAX << 96 });
        assert_eq!(r.on, Some(1));
        // A bare address is one host; keywords in any case; spaces after commas; comments.
        assert_eq!(rule("ALLOW TCP FROM 10.0.0.1 TO ANY").src, Net::V4 { addr: 0x0a00_0001, mask: u32::MAX });
        assert_eq!(rule("allow tcp from ::1 to any").src, Net::V6 { addr: 1, mask: u128::MAX });
        assert_eq!(rule("allow tcp from any to any port 80, 443 ,8080").dst_ports, Ports(vec![(80, 80), (443, 443), (8080, 8080)]));
        assert_eq!(rule("allow icmpv6 from any to any # ping6").proto, Some(58));
        assert_eq!(rule("allow 47 from any to any").proto, Some(47));
        assert_eq!(rule("allow any from ::/0 to ::/0").dst, Net::V6 { addr: 0, mask: 0 });
        assert_eq!(parse_line("   # only a comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
    }

    #[test]
    fn every_error_says_what_was_expected() {
        let cases = [
            ("alow tcp from any to any", r#"unknown action "alow" (expected allow or deny)"#),
            ("allow", r#"the rule ends after "allow" (expected a protocol: tcp, udp, icmp, icmpv6, any or a protocol number 0-255)"#),
            ("allow tcpp from any to any", r#"unknown protocol "tcpp" (expected tcp, udp, icmp, icmpv6, any or a protocol number 0-255)"#),
            ("allow 256 from any to any", r#"unknown protocol "256""#),
            ("allow tcp to any", r#"expected "from" after the protocol, not "to""#),
            ("allow tcp from", r#"the rule ends after "from" (expected an address: any, an IPv4"#),
            ("allow tcp from any", r#"the rule ends after "any" (expected "to")"#),
            ("allow tcp from any any", r#"expected "to" after the source, not "any""#),
            ("allow tcp from 10.0.0.256 to any", r#""10.0.0.256" is not an address (expected any, an IPv4 or IPv6 address"#),
            ("allow tcp from 10.0.0.0/33 to any", r#"the prefix length 33 in "10.0.0.0/33" is too long (IPv4 allows 0-32)"#),
            ("allow tcp from ::/129 to any", "(IPv6 allows 0-128)"),
            ("allow tcp from 10.0.0.0/x to any", r#""x" in "10.0.0.0/x" is not a prefix length (expected 0-32)"#),
            ("allow tcp from 10.0.0.0/+8 to any", "is not a prefix length"),
            ("allow tcp from 198.18.1.5/24 to any", r#""198.18.1.5/24" has host bits set (the network is 198.18.1.0/24)"#),
            ("allow tcp from 2001:db8::1/32 to any", "has host bits set (the network is 2001:db8::/32)"),
            ("allow tcp from any to any port", r#"the rule ends after "port" (expected ports such as 80,443,8000-8080)"#),
            ("allow tcp from any to any port 70000", r#""70000" is not a port number (expected 0-65535"#),
            ("allow tcp from any to any port http", r#""http" is not a port number"#),
            ("allow tcp from any to any port 80,,443", r#"an empty item in the port list "80,,443""#),
            ("allow tcp from any to any port 8080-8000", "the port range 8080-8000 runs backwards (write 8000-8080)"),
            ("allow tcp from any to any port 1-2-3", r#""2-3" is not a port number"#),
            ("allow icmp from any to any port 7", "ports need protocol tcp or udp, not icmp"),
            ("deny any from any to any port 53", "ports need protocol tcp or udp, not any (write one rule for tcp and one for udp)"),
            ("allow 132 from any to any port 9", "ports need protocol tcp or udp, not 132"),
            ("allow 6 from any to any port 9 to", r#"unexpected "to" after "9""#),
            ("allow tcp from 10.0.0.0/8 to ::1", "the source is IPv4 and the destination IPv6: the rule could never match"),
            ("allow tcp from ::1 to 10.0.0.0/8", "the source is IPv6 and the destination IPv4"),
            ("allow icmp from 2001:db8::/32 to any", "icmp is IPv4's ICMP; with IPv6 addresses write icmpv6"),
            ("allow icmpv6 from any to 10.0.0.0/8", "icmpv6 is IPv6's ICMP; with IPv4 addresses write icmp"),
            ("allow tcp from any to any on", r#"the rule ends after "on" (expected a port (interface) number"#),
            ("allow tcp from any to any on eth0", r#""eth0" is not a port (interface) number (expected 0-65535)"#),
            ("allow tcp from any to any port 80 443", r#"unexpected "443" after "80" (expected on or the end of the rule)"#),
            ("allow tcp from any to any port 80 port 81", r#"unexpected "port" after "80" (expected on or the end of the rule)"#),
            ("allow tcp from any to any extra", r#"unexpected "extra" after "any" (expected port, on or the end of the rule)"#),
            ("allow tcp from any to any on 1 port 80", r#"unexpected "port" after "1" (expected the end of the rule)"#),
            ("allow tcp from any to any in", r#"unexpected "in" after "any""#),
        ];
        for (line, expected) in cases {
            let e = err(line);
            assert!(e.contains(expected), "{line}\n got: {e}\nwant: {expected}");
        }
    }

    #[test]
    fn a_file_reports_every_bad_line_by_number() {
        let text = "# web\nallow tcp from any to any port 80\n\nallow tcpp from any to any\ndeny udp from any to any port 53\nallow tcp from any to any port 99999\n";
        let errors = parse_file(text, "rules.txt").unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2);
        assert!(shown[0].starts_with(r#"rules.txt:4: unknown protocol "tcpp" (expected tcp, udp"#), "{}", shown[0]);
        assert!(shown[1].starts_with(r#"rules.txt:6: "99999" is not a port number"#), "{}", shown[1]);
        let rules = parse_file("allow tcp from any to any\r\n\r\ndeny any from any to any\r\n", "r").unwrap();
        assert_eq!(rules.iter().map(|r| r.action).collect::<Vec<_>>(), [Action::Allow, Action::Deny], "CRLF lines");
        assert_eq!(parse_file("", "r").unwrap(), []);
        let e = parse_list(["allow tcp from any to any", "", "deny tcp from any to nowhere"]).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].to_string().starts_with(r#"`rule` item 3: "nowhere" is not an address"#), "{}", e[0]);
    }

    #[test]
    fn cidrs_match_up_to_their_edges() {
        let r = rule("allow any from 198.18.128.0/17 to any");
        let p = |src: &str| Packet { proto: 17, src: v4(src), dst: v4("1.1.1.1"), src_port: 1, dst_port: 2, on: 0 };
        assert!(!r.matches(&p("198.18.127.255")));
        assert!(r.matches(&p("198.18.128.0")));
        assert!(r.matches(&p("198.18.255.255")));
        assert!(!r.matches(&p("198.19.0.0")));
        let host = rule("allow any from any to 10.1.2.3/32");
        assert!(host.matches(&tcp(v4("9.9.9.9"), 1, v4("10.1.2.3"), 2)));
        assert!(!host.matches(&tcp(v4("9.9.9.9"), 1, v4("10.1.2.4"), 2)));
        let all4 = rule("allow any from 0.0.0.0/0 to any");
        assert!(all4.matches(&tcp(v4("255.255.255.255"), 1, v4("0.0.0.0"), 2)));
        assert!(!all4.matches(&tcp(v6("::1"), 1, v6("::2"), 2)), "an IPv4 network never matches IPv6");
        let r6 = rule("allow any from 2001:db8:8000::/33 to any");
        let p6 = |src: &str| tcp(v6(src), 1, v6("::1"), 2);
        assert!(!r6.matches(&p6("2001:db8:7fff:ffff:ffff:ffff:ffff:ffff")));
        assert!(r6.matches(&p6("2001:db8:8000::")));
        assert!(r6.matches(&p6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!r6.matches(&p6("2001:db9::")));
        assert!(!r6.matches(&tcp(v4("32.1.13.184"), 1, v4("1.1.1.1"), 2)), "an IPv6 network never matches IPv4");
        let h6 = rule("allow any from any to 2001:db8::1/128");
        assert!(h6.matches(&tcp(v6("::"), 1, v6("2001:db8::1"), 2)) && !h6.matches(&tcp(v6("::"), 1, v6("2001:db8::2"), 2)));
        let any = rule("allow any from any to any");
        assert!(any.matches(&Packet { proto: 99, src: Addr::Unknown, dst: Addr::Unknown, src_port: 0, dst_port: 0, on: 3 }));
        assert!(!all4.matches(&Packet { src: Addr::Unknown, ..tcp(v4("1.1.1.1"), 1, v4("1.1.1.1"), 1) }));
    }

    #[test]
    fn ports_protocols_and_arrival_ports_match() {
        let r = rule("allow tcp from any to any port 80,443,8000-8080");
        let a = v4("10.0.0.1");
        for (port, hit) in
            [(79, false), (80, true), (81, false), (443, true), (7999, false), (8000, true), (8042, true), (8080, true), (8081, false)]
        {
            assert_eq!(r.matches(&tcp(a, 40000, a, port)), hit, "port {port}");
        }
        assert!(!r.matches(&Packet { proto: 17, ..tcp(a, 40000, a, 80) }), "udp is not tcp");
        let src = rule("allow udp from any port 53 to any");
        assert!(src.matches(&Packet { proto: 17, ..tcp(a, 53, a, 5353) }) && !src.matches(&Packet { proto: 17, ..tcp(a, 5353, a, 53) }));
        let full = rule("allow tcp from any port 0-65535 to any port 0");
        assert!(full.matches(&tcp(a, 0, a, 0)) && full.matches(&tcp(a, 65535, a, 0)) && !full.matches(&tcp(a, 0, a, 1)));
        let any = rule("deny any from any to any");
        for proto in [0, 1, 6, 17, 58, 132, 255] {
            assert!(any.matches(&Packet { proto, ..tcp(a, 1, a, 2) }), "proto {proto}");
        }
        let icmp = rule("allow icmp from any to any");
        assert!(icmp.matches(&Packet { proto: 1, ..tcp(a, 0, a, 0) }) && !icmp.matches(&Packet { proto: 58, ..tcp(a, 0, a, 0) }));
        let on = rule("allow tcp from any to any on 1");
        assert!(on.matches(&Packet { on: 1, ..tcp(a, 1, a, 2) }) && !on.matches(&tcp(a, 1, a, 2)));
    }

    #[test]
    fn the_first_match_wins() {
        let rules = parse_file(
            "allow tcp from 10.0.0.5 to any port 80\n\
             deny tcp from 10.0.0.0/8 to any port 80\n\
             allow tcp from any to any port 80\n\
             deny any from any to any\n",
            "r",
        )
        .unwrap();
        let to80 = |src: &str| tcp(v4(src), 40000, v4("192.0.2.1"), 80);
        assert_eq!(first_match(&rules, &to80("10.0.0.5")), Some(0));
        assert_eq!(first_match(&rules, &to80("10.0.0.6")), Some(1));
        assert_eq!(first_match(&rules, &to80("11.0.0.6")), Some(2));
        assert_eq!(first_match(&rules, &tcp(v4("10.0.0.5"), 40000, v4("192.0.2.1"), 443)), Some(3));
        assert_eq!(first_match(&rules[..3], &tcp(v4("10.0.0.5"), 40000, v4("192.0.2.1"), 443)), None);
        assert_eq!(first_match(&[], &to80("10.0.0.5")), None);
    }
}
