//! Conditions on single TCP packets and on a connection's stream sizes: `flags`, TCP `dsize`
//! and `stream_size`, with Suricata's semantics. A TCP rule with `flags` or `dsize` (or the
//! protocol `tcp-pkt`) is a packet rule: it is checked on every packet of its flows, its
//! contents on the packet's payload, as Suricata's `SIG_FLAG_REQUIRE_PACKET` rules are.

use crate::rule::SizeRange;

/// How `flags:` compares the packet's flags with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagsModifier {
    /// Exactly these (after the ignored ones are masked off).
    #[default]
    Exact,
    /// `+`: at least these.
    Plus,
    /// `*`: any of these.
    Any,
    /// `!`: not all of these.
    Not,
}

/// `flags:[!+*]FLAGS[,IGNORED]`: letters `F S R P A U C E` (`1` and `2` are `C` and `E`,
/// `0` no flag at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlags {
    pub modifier: FlagsModifier,
    pub flags: u8,
    /// The bits that count (the ignored ones cleared).
    pub mask: u8,
}

impl TcpFlags {
    pub fn parse(value: &str) -> Result<TcpFlags, String> {
        let (wanted, ignored) = match value.split_once(',') {
            Some((w, i)) => (w.trim(), Some(i.trim())),
            None => (value.trim(), None),
        };
        let mut modifier = None;
        let mut flags = 0u8;
        let mut found = false;
        for c in wanted.chars() {
            let m = match c {
                '+' => Some(FlagsModifier::Plus),
                '*' => Some(FlagsModifier::Any),
                '!' => Some(FlagsModifier::Not),
                _ => None,
            };
            if let Some(m) = m {
                if modifier.replace(m).is_some() {
                    return Err("only one modifier (+, * or !)".into());
                }
                continue;
            }
            match c {
                '0' => flags = 0,
                c if c.is_whitespace() => continue,
                c => flags |= flag_bit(c).ok_or_else(|| format!("`{c}` is not a flag (F S R P A U C E 1 2 0)"))?,
            }
            found = true;
        }
        if !found {
            return Err(format!("`{value}` names no flag"));
        }
        let mut mask = 0xff;
        if let Some(ignored) = ignored {
            if ignored.is_empty() {
                return Err("nothing after the comma (the flags to ignore)".into());
            }
            for c in ignored.chars().filter(|c| !c.is_whitespace() && *c != '0') {
                mask &= !flag_bit(c).ok_or_else(|| format!("`{c}` is not a flag to ignore (F S R P A U C E 1 2)"))?;
            }
        }
        Ok(TcpFlags { modifier: modifier.unwrap_or_default(), flags, mask })
    }

    /// Whether a packet whose header carries `packet` matches.
    pub fn matches(&self, packet: u8) -> bool {
        // `flags:0` wants none at all (ignored ones included, as Suricata has it).
        if self.flags == 0 && packet != 0 {
            return self.modifier == FlagsModifier::Not;
        }
        let flags = packet & self.mask;
        match self.modifier {
            FlagsModifier::Exact => flags == self.flags,
            FlagsModifier::Plus => flags & self.flags == self.flags,
            FlagsModifier::Any => flags & self.flags != 0,
            FlagsModifier::Not => flags & self.flags != self.flags,
        }
    }
}

fn flag_bit(c: char) -> Option<u8> {
    use mbox_abi::tcp_flags::*;
    Some(match c.to_ascii_uppercase() {
        'F' => FIN,
        'S' => SYN,
        'R' => RST,
        'P' => PSH,
        'A' => ACK,
        'U' => URG,
        'C' | '1' => CWR,
        'E' | '2' => ECE,
        _ => return None,
    })
}

/// A TCP packet rule's own conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketOpts {
    pub flags: Option<TcpFlags>,
    /// The packet's payload length.
    pub dsize: Option<SizeRange>,
}

impl PacketOpts {
    /// Whether a packet with these header flags and this much payload passes.
    pub fn admits(&self, flags: u8, payload_len: usize) -> bool {
        self.flags.is_none_or(|f| f.matches(flags)) && self.dsize.is_none_or(|d| d.contains(payload_len))
    }
}

/// Which side's stream `stream_size` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSide {
    /// The connection's originator.
    Client,
    Server,
    /// Both must hold.
    Both,
    /// One must hold.
    Either,
}

/// `stream_size`'s comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
}

/// `stream_size:SIDE,OP,N`: a side's stream size as Suricata counts it, the next sequence
/// number less the initial one (the SYN and FIN count one each), compared with N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSize {
    pub side: StreamSide,
    pub cmp: Cmp,
    pub value: u32,
}

impl StreamSize {
    pub fn parse(value: &str) -> Result<StreamSize, String> {
        let parts: Vec<&str> = value.split(',').map(str::trim).collect();
        let [side, cmp, n] = parts[..] else { return Err("three parts: side, comparison, number".into()) };
        let side = match side {
            "client" => StreamSide::Client,
            "server" => StreamSide::Server,
            "both" => StreamSide::Both,
            "either" => StreamSide::Either,
            other => return Err(format!("side `{other}` (client, server, both, either)")),
        };
        let cmp = match cmp {
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            "=" => Cmp::Eq,
            "!=" => Cmp::Ne,
            ">=" => Cmp::Ge,
            ">" => Cmp::Gt,
            other => return Err(format!("comparison `{other}` (<, <=, =, !=, >=, >)")),
        };
        let value = n.parse().map_err(|_| format!("`{n}` is not a number"))?;
        Ok(StreamSize { side, cmp, value })
    }

    fn compare(&self, size: u32) -> bool {
        let v = self.value;
        match self.cmp {
            Cmp::Lt => size < v,
            Cmp::Le => size <= v,
            Cmp::Eq => size == v,
            Cmp::Ne => size != v,
            Cmp::Ge => size >= v,
            Cmp::Gt => size > v,
        }
    }

    /// Whether it holds for stream sizes `[client, server]`.
    pub fn holds(&self, sizes: [u32; 2]) -> bool {
        let [client, server] = sizes.map(|s| self.compare(s));
        match self.side {
            StreamSide::Client => client,
            StreamSide::Server => server,
            StreamSide::Both => client && server,
            StreamSide::Either => client || server,
        }
    }

    /// Whether it can hold at some later moment: sizes only grow, so an upper bound a side has
    /// passed stays passed.
    pub fn may_hold_later(&self, sizes: [u32; 2]) -> bool {
        let [client, server] = sizes.map(|s| match self.cmp {
            Cmp::Lt => s < self.value,
            Cmp::Le | Cmp::Eq => s <= self.value,
            Cmp::Ne | Cmp::Ge | Cmp::Gt => true,
        });
        match self.side {
            StreamSide::Client => client,
            StreamSide::Server => server,
            StreamSide::Both => client && server,
            StreamSide::Either => client || server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_abi::tcp_flags::*;

    #[test]
    fn flags_follow_suricatas_examples() {
        // `flags:S,12`: a SYN, with or without the ECN bits; nothing else set.
        let syn = TcpFlags::parse("S,12").unwrap();
        assert!(syn.matches(SYN) && syn.matches(SYN | ECE | CWR));
        assert!(!syn.matches(SYN | ACK) && !syn.matches(ACK));
        // Exact without the ignore mask: an ECN-setup SYN is not `flags:S`.
        assert!(!TcpFlags::parse("S").unwrap().matches(SYN | ECE | CWR));
        // `+` at least these, `*` any of them, `!` not all of them.
        let pa = TcpFlags::parse("+PA").unwrap();
        assert!(pa.matches(PSH | ACK) && pa.matches(PSH | ACK | FIN) && !pa.matches(ACK));
        let any = TcpFlags::parse("*SF").unwrap();
        assert!(any.matches(FIN | ACK) && !any.matches(ACK));
        let not = TcpFlags::parse("!R").unwrap();
        assert!(not.matches(ACK) && !not.matches(RST | ACK));
        // `0`: no flag set.
        let none = TcpFlags::parse("0").unwrap();
        assert!(none.matches(0) && !none.matches(ACK));
        assert!(TcpFlags::parse("SFU12").unwrap().matches(SYN | FIN | URG | CWR | ECE));
        for bad in ["G", "+*S", "", "S,", "S,X"] {
            assert!(TcpFlags::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_size_compares_each_side_and_knows_when_it_cannot_hold_again() {
        let s = StreamSize::parse("server, <, 5").unwrap();
        assert!(s.holds([100, 1]) && !s.holds([1, 5]));
        assert!(s.may_hold_later([100, 4]) && !s.may_hold_later([1, 5]));
        let both = StreamSize::parse("both,>=,10").unwrap();
        assert!(both.holds([10, 11]) && !both.holds([10, 9]) && both.may_hold_later([0, 0]));
        let either = StreamSize::parse("either,=,3").unwrap();
        assert!(either.holds([3, 9]) && either.may_hold_later([4, 2]) && !either.may_hold_later([4, 4]));
        for bad in ["server,<", "up,<,5", "client,~,5", "client,<,x"] {
            assert!(StreamSize::parse(bad).is_err(), "{bad}");
        }
    }
}
