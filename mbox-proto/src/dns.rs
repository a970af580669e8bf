//! DNS messages (RFC 1035): the header and the question names, decoded without allocating.
//! Over TCP each message has a two-byte length before it.

/// The parts of a message header NFs look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    /// The flags word (bytes 2 and 3: QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    pub flags: u16,
    /// The response code (the flags' low four bits).
    pub rcode: u8,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
}

/// Longest name (RFC 1035 3.1), and compression pointers followed before giving up on a name.
pub const MAX_NAME: usize = 255;
const MAX_POINTERS: usize = 16;

/// The header of `msg`, or `None` when it is too short to be DNS.
pub fn header(msg: &[u8]) -> Option<Header> {
    let h = msg.get(..12)?;
    Some(Header {
        id: u16::from_be_bytes([h[0], h[1]]),
        is_response: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0x0f,
        flags: u16::from_be_bytes([h[2], h[3]]),
        rcode: h[3] & 0x0f,
        questions: u16::from_be_bytes([h[4], h[5]]),
        answers: u16::from_be_bytes([h[6], h[7]]),
        authorities: u16::from_be_bytes([h[8], h[9]]),
    })
}

/// Calls `f` with each question's name (dotted, no trailing dot, lower case as sent); false
/// when the message is malformed (the names before the fault were still reported).
pub fn for_each_question(msg: &[u8], mut f: impl FnMut(&[u8])) -> bool {
    for_each_typed_question(msg, |name, _| f(name))
}

/// [`for_each_question`] with each question's QTYPE.
pub fn for_each_typed_question(msg: &[u8], mut f: impl FnMut(&[u8], u16)) -> bool {
    let Some(h) = header(msg) else { return false };
    let mut at = 12;
    let mut name = [0u8; MAX_NAME];
    for _ in 0..h.questions {
        let Some((len, next)) = read_name(msg, at, &mut name) else { return false };
        let Some(qtype) = msg.get(next..next + 2) else { return false };
        f(&name[..len], u16::from_be_bytes([qtype[0], qtype[1]]));
        // QTYPE and QCLASS.
        at = next + 4;
        if at > msg.len() {
            return false;
        }
    }
    true
}

/// Reads the name at `at` into `out`; returns its length and where the record continues.
fn read_name(msg: &[u8], mut at: usize, out: &mut [u8; MAX_NAME]) -> Option<(usize, usize)> {
    let (mut len, mut next, mut pointers) = (0usize, None, 0);
    loop {
        let label = usize::from(*msg.get(at)?);
        match label >> 6 {
            0 if label == 0 => return Some((len, next.unwrap_or(at + 1))),
            0 => {
                let bytes = msg.get(at + 1..at + 1 + label)?;
                let dot = usize::from(len > 0);
                if len + dot + label > MAX_NAME {
                    return None;
                }
                if dot == 1 {
                    out[len] = b'.';
                }
                out[len + dot..len + dot + label].copy_from_slice(bytes);
                len += dot + label;
                at += 1 + label;
            }
            3 => {
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return None;
                }
                let target = (label & 0x3f) << 8 | usize::from(*msg.get(at + 1)?);
                next.get_or_insert(at + 2);
                at = target;
            }
            _ => return None,
        }
    }
}

/// A record type's mnemonic as Suricata writes it (`A`, `AAAA`, ...), or its number.
pub fn type_name(rrtype: u16) -> std::borrow::Cow<'static, str> {
    let name = match rrtype {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAPPTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        other => return std::borrow::Cow::Owned(other.to_string()),
    };
    std::borrow::Cow::Borrowed(name)
}

/// A response code's name as Suricata writes it.
pub fn rcode_name(rcode: u8) -> std::borrow::Cow<'static, str> {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        other => return std::borrow::Cow::Owned(other.to_string()),
    };
    std::borrow::Cow::Borrowed(name)
}

/// Splits a DNS-over-TCP stream into messages: calls `f` with each complete one, and returns
/// the bytes consumed (the rest is an incomplete message).
pub fn tcp_messages(stream: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut at = 0;
    while let Some(len) = stream.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) {
        let Some(msg) = stream.get(at + 2..at + 2 + len) else { break };
        f(msg);
        at += 2 + len;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(names: &[&str]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, names.len() as u8, 0, 0, 0, 0, 0, 0];
        for n in names {
            for label in n.split('.') {
                m.push(label.len() as u8);
                m.extend_from_slice(label.as_bytes());
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        m
    }

    fn names(msg: &[u8]) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        let ok = for_each_question(msg, |n| out.push(String::from_utf8_lossy(n).into_owned()));
        (out, ok)
    }

    #[test]
    fn questions_and_compression() {
        let q = query(&["www.example.com", "a.b"]);
        assert_eq!(names(&q), (vec!["www.example.com".to_string(), "a.b".to_string()], true));
        let h = header(&q).unwrap();
        assert!(!h.is_response && h.questions == 2 && h.id == 0x1234);
        // A second question pointing back at "example.com" of the first.
        let mut p = query(&["www.example.com"]);
        p[5] = 2;
        p.extend_from_slice(&[3, b'f', b't', b'p', 0xc0, 16, 0, 1, 0, 1]);
        assert_eq!(names(&p).0, ["www.example.com", "ftp.example.com"]);
    }

    #[test]
    fn malformed_messages_fail_without_panicking() {
        assert!(!names(b"\x00\x01").1);
        let mut q = query(&["abc"]);
        q.truncate(q.len() - 3);
        assert!(!names(&q).1);
        // A pointer loop.
        let mut l = query(&[]);
        l[5] = 1;
        l.extend_from_slice(&[0xc0, 12]);
        assert!(!names(&l).1);
        for cut in 0..40 {
            let q = query(&["www.example.com"]);
            let _ = names(&q[..cut.min(q.len())]);
        }
    }

    #[test]
    fn tcp_framing() {
        let q = query(&["x.y"]);
        let mut stream = (q.len() as u16).to_be_bytes().to_vec();
        stream.extend_from_slice(&q);
        stream.extend_from_slice(&[0, 40, 1]);
        let mut seen = 0;
        assert_eq!(tcp_messages(&stream, |m| seen += usize::from(m == q.as_slice())), q.len() + 2);
        assert_eq!(seen, 1);
    }
}
