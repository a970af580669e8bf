//! SSH: the identification line each side sends first, `SSH-protoversion-softwareversion
//! [comments]` (RFC 4253 4.2). A server may send other lines before it.

use crate::Parse;

/// An identification line's parts, as slices of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner<'a> {
    /// `2.0` (or `1.99`).
    pub proto_version: &'a [u8],
    /// `OpenSSH_8.9p1`: what Suricata's `ssh.software` holds.
    pub software: &'a [u8],
}

/// Bytes searched for the identification line before the stream is taken for not SSH.
const MAX_PREAMBLE: usize = 8192;
/// Longest identification line (RFC 4253: 255 characters with CR LF).
const MAX_LINE: usize = 255;

/// Finds the identification line at the start of one side's stream.
pub fn banner(stream: &[u8]) -> Parse<Banner<'_>> {
    let mut at = 0;
    while at < stream.len().min(MAX_PREAMBLE) {
        let rest = &stream[at..];
        let Some(end) = memchr_newline(rest) else {
            // An incomplete line: SSH if what there is could start an identification line (of
            // at most MAX_LINE bytes).
            let prefix = &rest[..rest.len().min(4)];
            let could_be = (b"SSH-".starts_with(prefix) || at > 0) && rest.len() <= MAX_LINE;
            return if could_be { Parse::Partial } else { Parse::Invalid };
        };
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        if let Some(id) = line.strip_prefix(b"SSH-") {
            if line.len() > MAX_LINE {
                return Parse::Invalid;
            }
            let Some(dash) = id.iter().position(|&b| b == b'-') else { return Parse::Invalid };
            let software = &id[dash + 1..];
            let software = &software[..software.iter().position(|&b| b == b' ').unwrap_or(software.len())];
            return Parse::Done(Banner { proto_version: &id[..dash], software });
        }
        if at == 0 && !line.is_ascii() {
            return Parse::Invalid;
        }
        at += end + 1;
    }
    if stream.len() >= MAX_PREAMBLE {
        Parse::Invalid
    } else {
        Parse::Partial
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identification_lines() {
        let Parse::Done(b) = banner(b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n\x00\x00") else { panic!() };
        assert_eq!((b.proto_version, b.software), (&b"2.0"[..], &b"OpenSSH_8.9p1"[..]));
        let Parse::Done(b) = banner(b"Welcome\r\nSSH-1.99-Cisco-1.25\n") else { panic!() };
        assert_eq!(b.software, b"Cisco-1.25");
        assert_eq!(banner(b"SSH-2.0-Open"), Parse::Partial);
        assert_eq!(banner(b"SS"), Parse::Partial);
        assert_eq!(banner(b"GET / HTTP/1.1\r\n"), Parse::Partial, "could still be a preamble line");
        assert_eq!(banner(b"\x16\x03\x01\x02\x00\x01"), Parse::Invalid);
        assert_eq!(banner(b"SSH-2.0\r\n"), Parse::Invalid);
        let mut endless = b"SSH-2.0-".to_vec();
        endless.extend(std::iter::repeat_n(b'x', 300));
        assert_eq!(banner(&endless), Parse::Invalid, "longer than an identification line may be");
    }
}
