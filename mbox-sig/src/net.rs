//! Addresses and ports of rule headers: `any`, single values, CIDR blocks, port ranges, lists,
//! negation and variables (`$HOME_NET`, `$HTTP_PORTS`), resolved when the rules load.

use std::collections::HashMap;
use std::net::IpAddr;

/// An address group, as Suricata reads one: a list matches when one of its positive members
/// matches (or it has none) and none of its negated members does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrSet {
    Any,
    Block(Cidr),
    Not(Box<AddrSet>),
    List(Vec<AddrSet>),
}

/// An address block: the address as 128 bits (IPv4 in the low 32), its family and prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    v6: bool,
    bits: u128,
    prefix: u8,
}

/// A port group, with the same list semantics as [`AddrSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSet {
    Any,
    Range(u16, u16),
    Not(Box<PortSet>),
    List(Vec<PortSet>),
}

/// Address and port variables, by name without the `$`.
#[derive(Debug, Clone)]
pub struct Vars {
    pub addresses: HashMap<String, String>,
    pub ports: HashMap<String, String>,
}

impl Default for Vars {
    /// Suricata's stock values (suricata.yaml), so that rule sets load as they do there.
    fn default() -> Self {
        let home = "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]";
        let mut addresses: HashMap<String, String> = [("HOME_NET", home), ("EXTERNAL_NET", "!$HOME_NET"), ("AIM_SERVERS", "$EXTERNAL_NET")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for name in [
            "HTTP_SERVERS",
            "SMTP_SERVERS",
            "SQL_SERVERS",
            "DNS_SERVERS",
            "TELNET_SERVERS",
            "DC_SERVERS",
            "DNP3_SERVER",
            "DNP3_CLIENT",
            "MODBUS_CLIENT",
            "MODBUS_SERVER",
            "ENIP_CLIENT",
            "ENIP_SERVER",
        ] {
            addresses.insert(name.to_string(), "$HOME_NET".to_string());
        }
        let ports = [
            ("HTTP_PORTS", "80"),
            ("SHELLCODE_PORTS", "!80"),
            ("ORACLE_PORTS", "1521"),
            ("SSH_PORTS", "22"),
            ("DNP3_PORTS", "20000"),
            ("MODBUS_PORTS", "502"),
            ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
            ("FTP_PORTS", "21"),
            ("GENEVE_PORTS", "6081"),
            ("VXLAN_PORTS", "4789"),
            ("TEREDO_PORTS", "3544"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Vars { addresses, ports }
    }
}

/// Nesting of variables, negations and lists; deeper than this is taken for a cycle (or abuse).
const MAX_VAR_DEPTH: usize = 32;

impl AddrSet {
    pub fn parse(text: &str, vars: &Vars) -> Result<AddrSet, String> {
        parse_group(text.trim(), &mut |t, depth| parse_addr_atom(t, vars, depth), 0)
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match self {
            AddrSet::Any => true,
            AddrSet::Block(c) => c.contains(addr),
            AddrSet::Not(inner) => !inner.contains(addr),
            AddrSet::List(items) => list_matches(items, |i| matches!(i, AddrSet::Not(_)), |i| i.contains(addr)),
        }
    }
}

impl PortSet {
    pub fn parse(text: &str, vars: &Vars) -> Result<PortSet, String> {
        parse_group(text.trim(), &mut |t, depth| parse_port_atom(t, vars, depth), 0)
    }

    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortSet::Any => true,
            PortSet::Range(lo, hi) => (*lo..=*hi).contains(&port),
            PortSet::Not(inner) => !inner.contains(port),
            PortSet::List(items) => list_matches(items, |i| matches!(i, PortSet::Not(_)), |i| i.contains(port)),
        }
    }
}

/// A list matches when one of its positive members does (or it has none) and no negated one
/// fails (a negated member "matches" when the value is outside it).
fn list_matches<T>(items: &[T], negated: impl Fn(&T) -> bool, matches: impl Fn(&T) -> bool) -> bool {
    let mut positives = items.iter().filter(|i| !negated(i)).peekable();
    let positive_ok = positives.peek().is_none() || positives.any(&matches);
    positive_ok && items.iter().filter(|i| negated(i)).all(matches)
}

/// What both kinds of group have in common: `Any`, negation and lists.
trait Group: Sized {
    fn any() -> Self;
    fn not(inner: Self) -> Self;
    fn list(items: Vec<Self>) -> Self;
}

impl Group for AddrSet {
    fn any() -> Self {
        AddrSet::Any
    }
    fn not(inner: Self) -> Self {
        AddrSet::Not(Box::new(inner))
    }
    fn list(items: Vec<Self>) -> Self {
        AddrSet::List(items)
    }
}

impl Group for PortSet {
    fn any() -> Self {
        PortSet::Any
    }
    fn not(inner: Self) -> Self {
        PortSet::Not(Box::new(inner))
    }
    fn list(items: Vec<Self>) -> Self {
        PortSet::List(items)
    }
}

/// Parses `any`, `!x`, `[a, b, ...]` (nested), and hands anything else to `atom`.
fn parse_group<T: Group>(text: &str, atom: &mut dyn FnMut(&str, usize) -> Result<T, String>, depth: usize) -> Result<T, String> {
    if depth > MAX_VAR_DEPTH {
        return Err("variables, negations or lists nest too deep (a cycle?)".into());
    }
    let text = text.trim();
    if text.is_empty() {
        return Err("empty address or port".into());
    }
    if text.eq_ignore_ascii_case("any") {
        return Ok(T::any());
    }
    // Negations and brackets nest like variables do: bounded, so a hostile header is an error,
    // not a stack overflow.
    if let Some(rest) = text.strip_prefix('!') {
        return Ok(T::not(parse_group(rest, atom, depth + 1)?));
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| format!("unbalanced brackets in `{text}`"))?;
        let items = split_top_level(inner)?.into_iter().map(|item| parse_group(item, atom, depth + 1)).collect::<Result<Vec<_>, _>>()?;
        return Ok(T::list(items));
    }
    atom(text, depth)
}

/// Splits a list's contents at the commas outside brackets.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let (mut items, mut level, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' => level += 1,
            ']' => level -= 1,
            ',' if level == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if level < 0 {
            return Err(format!("unbalanced brackets in `[{text}]`"));
        }
    }
    if level != 0 {
        return Err(format!("unbalanced brackets in `[{text}]`"));
    }
    items.push(&text[start..]);
    Ok(items)
}

fn parse_addr_atom(text: &str, vars: &Vars, depth: usize) -> Result<AddrSet, String> {
    if let Some(name) = text.strip_prefix('$') {
        let value = vars.addresses.get(name).ok_or_else(|| format!("unknown address variable `${name}`"))?;
        return parse_group(value, &mut |t, d| parse_addr_atom(t, vars, d), depth + 1);
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| format!("`{text}` is not an address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        // Suricata also takes a netmask (a.b.c.d/255.255.0.0).
        Some(p) => match p.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => match p.trim().parse::<std::net::Ipv4Addr>() {
                Ok(mask) if ip.is_ipv4() && u32::from(mask).leading_ones() == u32::from(mask).count_ones() => {
                    u32::from(mask).count_ones() as u8
                }
                _ => return Err(format!("`{text}` has a bad prefix")),
            },
        },
        None => max,
    };
    Ok(AddrSet::Block(Cidr::new(ip, prefix)))
}

fn parse_port_atom(text: &str, vars: &Vars, depth: usize) -> Result<PortSet, String> {
    if let Some(name) = text.strip_prefix('$') {
        let value = vars.ports.get(name).ok_or_else(|| format!("unknown port variable `${name}`"))?;
        return parse_group(value, &mut |t, d| parse_port_atom(t, vars, d), depth + 1);
    }
    let port = |s: &str| s.trim().parse::<u16>().map_err(|_| format!("`{text}` is not a port"));
    match text.split_once(':') {
        Some((lo, hi)) => {
            let lo = if lo.trim().is_empty() { 0 } else { port(lo)? };
            let hi = if hi.trim().is_empty() { u16::MAX } else { port(hi)? };
            if lo > hi {
                return Err(format!("port range `{text}` runs backwards"));
            }
            Ok(PortSet::Range(lo, hi))
        }
        None => {
            let p = port(text)?;
            Ok(PortSet::Range(p, p))
        }
    }
}

impl Cidr {
    pub fn new(ip: IpAddr, prefix: u8) -> Cidr {
        let (v6, bits, max) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        let prefix = prefix.min(max);
        Cidr { v6, bits: bits & mask(prefix, max), prefix }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) if !self.v6 => u128::from(u32::from(a)) & mask(self.prefix, 32) == self.bits,
            IpAddr::V6(a) if self.v6 => u128::from(a) & mask(self.prefix, 128) == self.bits,
            _ => false,
        }
    }
}

/// The network mask of `prefix` bits in an address of `width` bits.
fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let all = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    all & !((1u128 << (width - prefix)) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn home_net_and_its_negation() {
        let vars = Vars::default();
        let home = AddrSet::parse("$HOME_NET", &vars).unwrap();
        let external = AddrSet::parse("$EXTERNAL_NET", &vars).unwrap();
        for (a, inside) in [("192.168.1.5", true), ("10.1.2.3", true), ("172.20.0.1", true), ("8.8.8.8", false), ("2001:db8::1", false)] {
            assert_eq!(home.contains(ip(a)), inside, "{a}");
            assert_eq!(external.contains(ip(a)), !inside, "{a}");
        }
    }

    #[test]
    fn lists_with_negated_members() {
        let vars = Vars::default();
        let set = AddrSet::parse("[10.0.0.0/8, !10.1.0.0/16, 2001:db8::/32]", &vars).unwrap();
        assert!(set.contains(ip("10.2.0.1")));
        assert!(!set.contains(ip("10.1.0.1")));
        assert!(set.contains(ip("2001:db8::5")));
        assert!(!set.contains(ip("192.168.0.1")));
        // Only negations: everything else.
        let set = AddrSet::parse("[!1.2.3.4]", &vars).unwrap();
        assert!(set.contains(ip("1.2.3.5")) && !set.contains(ip("1.2.3.4")));
        assert!(AddrSet::parse("1.2.3.0/255.255.255.0", &vars).unwrap().contains(ip("1.2.3.99")));
    }

    #[test]
    fn ports_ranges_lists_and_variables() {
        let vars = Vars::default();
        let p = PortSet::parse("[$HTTP_PORTS,8000:8080,!8008]", &vars).unwrap();
        assert!(p.contains(80) && p.contains(8000) && p.contains(8080) && !p.contains(8008) && !p.contains(443));
        assert!(PortSet::parse("1024:", &vars).unwrap().contains(65535));
        assert!(!PortSet::parse("$SHELLCODE_PORTS", &vars).unwrap().contains(80));
        assert!(PortSet::parse("$FILE_DATA_PORTS", &vars).unwrap().contains(143));
    }

    #[test]
    fn bad_groups_are_errors() {
        let vars = Vars::default();
        for bad in ["[1.2.3.4", "1.2.3.4/33", "$NOPE", "300.1.1.1", "", "[]"] {
            assert!(AddrSet::parse(bad, &vars).is_err(), "{bad}");
        }
        for bad in ["70000", "90:80", "$NOPE", "http"] {
            assert!(PortSet::parse(bad, &vars).is_err(), "{bad}");
        }
        let mut cyclic = Vars::default();
        cyclic.addresses.insert("A".into(), "$B".into());
        cyclic.addresses.insert("B".into(), "$A".into());
        assert!(AddrSet::parse("$A", &cyclic).unwrap_err().contains("cycle"));
        assert!(AddrSet::parse(&"!".repeat(10_000), &vars).unwrap_err().contains("too deep"));
        let nested = format!("{}1.2.3.4{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(AddrSet::parse(&nested, &vars).unwrap_err().contains("too deep"));
    }
}
