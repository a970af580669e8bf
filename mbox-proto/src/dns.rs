//! DNS messages (RFC 1035): the header and the question names, decoded without allocating.
//! Over TCP each message has a two-byte length before it.

/// The parts of a message header NFs look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub questions: u16,
    pub answers: u16,
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
        questions: u16::from_be_bytes([h[4], h[5]]),
        answers: u16::from_be_bytes([h[6], h[7]]),
    })
}

/// Calls `f` with each question's name (dotted, no trailing dot, lower case as sent); false
/// when the message is malformed (the names before the fault were still reported).
pub fn for_each_question(msg: &[u8], mut f: impl FnMut(&[u8])) -> bool {
    let Some(h) = header(msg) else { return false };
    let mut at = 12;
    let mut name = [0u8; MAX_NAME];
    for _ in 0..h.questions {
        let Some((len, next)) = read_name(msg, at, &mut name) else { return false };
        f(&name[..len]);
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
