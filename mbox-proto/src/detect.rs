//! Recognising a TCP connection's application protocol from the first bytes of both
//! directions, the way Suricata's probing parsers do: by content, with the port only for DNS
//! over TCP. One recogniser for every NF that parses protocols (sig-match, eve-log), so that
//! they agree on what a connection is.

use crate::{dns, http, ssh, tls, Parse};

/// Client bytes looked at before a connection is taken for none of the protocols.
pub const DETECT_LIMIT: usize = 8192;

/// A protocol recognised here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppProto {
    Http,
    Tls,
    Ssh,
    Smtp,
    Dns,
}

impl AppProto {
    /// The name Suricata's eve.json gives it (`app_proto`).
    pub fn name(self) -> &'static str {
        match self {
            AppProto::Http => "http",
            AppProto::Tls => "tls",
            AppProto::Ssh => "ssh",
            AppProto::Smtp => "smtp",
            AppProto::Dns => "dns",
        }
    }
}

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Proto(AppProto),
    /// Not decided: more bytes may tell.
    Wait,
    /// None of the protocols here.
    Other,
}

/// Recognises the protocol from the starts of the client's and the server's streams (each as
/// much as has come, from its first byte) and the connection's ports.
pub fn tcp(client: &[u8], server: &[u8], ports: [u16; 2]) -> Detected {
    for side in [client, server] {
        if side.starts_with(b"SSH-") && matches!(ssh::banner(side), Parse::Done(_)) {
            return Detected::Proto(AppProto::Ssh);
        }
    }
    if !client.is_empty() {
        // A valid start of a request or hello: wait for the rest, within the limit.
        let wait = client.len() < DETECT_LIMIT;
        match http::request_head(client) {
            Parse::Done(_) => return Detected::Proto(AppProto::Http),
            Parse::Partial if wait => return Detected::Wait,
            _ => {}
        }
        match tls::client_hello(client) {
            Parse::Done(_) => return Detected::Proto(AppProto::Tls),
            // A hello longer than the detection limit is TLS all the same.
            Parse::Partial if tls::starts_client_hello(client) => return Detected::Proto(AppProto::Tls),
            Parse::Partial if wait => return Detected::Wait,
            _ => {}
        }
        let word = |s: &[u8], w: &[u8]| s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w);
        if word(client, b"EHLO") || word(client, b"HELO") {
            return Detected::Proto(AppProto::Smtp);
        }
        if ports.contains(&53) && client.len() >= 14 {
            let len = usize::from(u16::from_be_bytes([client[0], client[1]]));
            if len >= 12 && dns::header(&client[2..]).is_some_and(|h| !h.is_response && h.questions > 0) {
                return Detected::Proto(AppProto::Dns);
            }
        }
    }
    // A response without its request (a connection picked up after it): HTTP all the same, as
    // Suricata's detection takes "HTTP/1." from the server.
    if server.starts_with(b"HTTP/1.") {
        return Detected::Proto(AppProto::Http);
    }
    if server.starts_with(b"220") && client.is_empty() {
        // An SMTP (or FTP) greeting: wait for the client's first command.
        return Detected::Wait;
    }
    if client.len() >= DETECT_LIMIT || (!client.is_empty() && !server.is_empty()) {
        Detected::Other
    } else {
        Detected::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_from_their_first_bytes() {
        assert_eq!(tcp(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", [1, 80]), Detected::Proto(AppProto::Http));
        assert_eq!(tcp(b"GET / HTTP/1.1\r\nHo", b"", [1, 80]), Detected::Wait);
        assert_eq!(tcp(b"", b"SSH-2.0-OpenSSH_8.9\r\n", [1, 22]), Detected::Proto(AppProto::Ssh));
        assert_eq!(tcp(b"EHLO x\r\n", b"220 hi\r\n", [1, 25]), Detected::Proto(AppProto::Smtp));
        assert_eq!(tcp(b"", b"220 hi\r\n", [1, 25]), Detected::Wait);
        assert_eq!(tcp(b"\x01\x02\x03", b"\x04", [1, 9999]), Detected::Other);
        // The first record of a ClientHello is enough, however long the hello.
        assert_eq!(tcp(b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc\x03\x03", b"", [1, 443]), Detected::Proto(AppProto::Tls));
        assert_eq!(tcp(b"\x16\x03", b"", [1, 443]), Detected::Wait);
        assert_eq!(tcp(b"\x17\x03", b"x", [1, 443]), Detected::Other);
        assert_eq!(tcp(b"", b"HTTP/1.1 200 OK\r\n", [1, 80]), Detected::Proto(AppProto::Http), "a response, its request not seen");
    }
}
