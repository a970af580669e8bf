//! Recognising a flow's application protocol from its first bytes (both directions of a TCP
//! connection, or a UDP datagram), and, for flows that carried too little, from the port the
//! protocol is registered for — the order nDPI works in. Pure functions over byte slices.

use mbox_abi::app;
use mbox_proto::{dns, http, ssh, tls, Parse};

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The protocol, and its host name or SNI when it has one.
    Known(u8, Vec<u8>),
    /// Could still be one of the protocols: wait for more bytes.
    Undecided,
    /// None of the protocols this NF knows.
    Unknown,
}

/// Client bytes after which an undecided TCP connection is given up.
pub const TCP_LIMIT: usize = 4096;

/// A TCP connection from its first bytes: `client` (the originator's stream start), `server`
/// (the responder's), and the server's port.
pub fn tcp(client: &[u8], server: &[u8], server_port: u16) -> Verdict {
    for side in [client, server] {
        if side.starts_with(b"SSH-") && matches!(ssh::banner(side), Parse::Done(_)) {
            return Verdict::Known(app::SSH, Vec::new());
        }
    }
    if client.starts_with(b"\x13BitTorrent protocol") || server.starts_with(b"\x13BitTorrent protocol") {
        return Verdict::Known(app::BITTORRENT, Vec::new());
    }
    let mut undecided = false;
    if !client.is_empty() {
        match http::request_head(client) {
            Parse::Done(h) => return Verdict::Known(http_app(&h), h.host.unwrap_or_default().to_vec()),
            // A valid start of a request (what httparse and the lenient line parser call partial).
            Parse::Partial => undecided = true,
            _ => {}
        }
        match tls::client_hello(client) {
            Parse::Done(hello) => return Verdict::Known(tls_app(server_port), hello.sni.unwrap_or_default()),
            Parse::Partial => undecided = true,
            Parse::Invalid => {}
        }
        if server_port == 53 && client.len() >= 14 {
            let len = usize::from(u16::from_be_bytes([client[0], client[1]]));
            if len >= 12 && dns::header(&client[2..]).is_some_and(|h| h.questions > 0 && h.opcode <= 5) {
                return Verdict::Known(app::DNS, Vec::new());
            }
        }
    }
    if server.starts_with(b"HTTP/1.") {
        return Verdict::Known(app::HTTP, Vec::new());
    }
    if let Some(mail) = mail_or_ftp(client, server) {
        return mail;
    }
    // TLS picked up after its handshake: whole records of the record layer, either way.
    for side in [client, server] {
        match tls_records(side) {
            Some(true) => return Verdict::Known(tls_app(server_port), Vec::new()),
            Some(false) => undecided = true,
            None => {}
        }
    }
    // Still possible: a request or hello not yet complete, a server that has not spoken (or a
    // client that has not answered its greeting), within the limit.
    let waiting = undecided || client.is_empty() || server.is_empty();
    if waiting && client.len() < TCP_LIMIT && server.len() < TCP_LIMIT {
        Verdict::Undecided
    } else {
        Verdict::Unknown
    }
}

/// A request to a proxy is HTTP_Proxy (an absolute URI) or HTTP_Connect (a tunnel), as nDPI
/// names them; any other is HTTP.
fn http_app(h: &http::RequestHead<'_>) -> u8 {
    if h.method == b"CONNECT" {
        app::HTTP_CONNECT
    } else if h.uri.starts_with(b"http://") {
        app::HTTP_PROXY
    } else {
        app::HTTP
    }
}

/// TLS's record layer, as a connection picked up after its handshake shows it (nDPI's test):
/// `Some(true)` when `bytes` are whole records (a content type of 20 to 26, version 3.x, a
/// length a record can have) ending exactly where the bytes do, with at least one that is not
/// a handshake (change cipher spec, alert, application data: the handshake's own start is
/// `tls::client_hello`'s); or when the bytes reach [`TCP_LIMIT`] inside such records. `Some(false)`
/// while the last record is still coming, `None` when the bytes are not TLS records.
fn tls_records(bytes: &[u8]) -> Option<bool> {
    const MAX_RECORD: usize = (1 << 14) + 2048;
    let (mut at, mut not_handshake) = (0, false);
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 5) else {
            // A header still coming: of a record, as far as it has come.
            let part = &bytes[at..];
            let fits = (20..=26).contains(&part[0]) && part.get(1).is_none_or(|&v| v == 3) && part.get(2).is_none_or(|&v| v <= 4);
            return (fits && bytes.len() < TCP_LIMIT).then_some(false);
        };
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        if !(20..=26).contains(&head[0]) || head[1] != 3 || head[2] > 4 || len == 0 || len > MAX_RECORD {
            return None;
        }
        not_handshake |= head[0] != 22;
        at += 5 + len;
        if at > bytes.len() {
            // A record still coming: TLS once the bytes reach the limit inside it.
            return Some(not_handshake && bytes.len() >= TCP_LIMIT);
        }
    }
    (at > 0 && not_handshake).then_some(true)
}

/// TLS is reported under the mail protocol its port is for (nDPI's IMAPS, POPS, SMTPS).
fn tls_app(server_port: u16) -> u8 {
    match server_port {
        465 => app::SMTPS,
        993 => app::IMAPS,
        995 => app::POPS,
        _ => app::TLS,
    }
}

/// Server-first protocols: SMTP, POP3, IMAP, FTP (their greetings, and the client's reply), and
/// their switch to TLS.
fn mail_or_ftp(client: &[u8], server: &[u8]) -> Option<Verdict> {
    let starts = |s: &[u8], w: &[u8]| s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w);
    // The client may speak first to SMTP (some captures miss the greeting). SMTP becomes SMTPS
    // when the client asks for STARTTLS, so wait for its next command.
    if starts(client, b"EHLO ") || starts(client, b"HELO ") {
        let lines = client.iter().filter(|&&b| b == b'\n').count();
        if contains_line(client, b"STARTTLS") {
            return Some(Verdict::Known(app::SMTPS, Vec::new()));
        }
        return Some(if lines >= 2 { Verdict::Known(app::SMTP, Vec::new()) } else { Verdict::Undecided });
    }
    if starts(server, b"+OK") {
        let tls = contains_line(client, b"STLS");
        return Some(Verdict::Known(if tls { app::POPS } else { app::POP3 }, Vec::new()));
    }
    if starts(server, b"* OK") || starts(client, b"A001 ") || starts(client, b"a001 ") {
        let tls = client.windows(8).any(|w| w.eq_ignore_ascii_case(b"STARTTLS"));
        return Some(Verdict::Known(if tls { app::IMAPS } else { app::IMAP }, Vec::new()));
    }
    if starts(server, b"220") {
        if starts(client, b"USER ") || starts(client, b"AUTH TLS") || starts(client, b"FEAT") || starts(client, b"SYST") {
            return Some(Verdict::Known(app::FTP, Vec::new()));
        }
        if client.is_empty() {
            // A greeting; the client's first command tells SMTP from FTP.
            let line = &server[..server.iter().position(|&b| b == b'\n').unwrap_or(server.len())];
            let text = line.to_ascii_uppercase();
            if text.windows(3).any(|w| w == b"FTP") {
                return Some(Verdict::Known(app::FTP, Vec::new()));
            }
            return Some(Verdict::Undecided);
        }
    }
    None
}

/// Whether a line of `text` starts with `word` (case-insensitive).
fn contains_line(text: &[u8], word: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|l| l.len() >= word.len() && l[..word.len()].eq_ignore_ascii_case(word))
}

/// A UDP datagram, sent from `sport` to `dport`.
pub fn udp(payload: &[u8], sport: u16, dport: u16) -> Verdict {
    let port = |p: u16| sport == p || dport == p;
    let known = |a: u8| Verdict::Known(a, Vec::new());
    if dns_like(payload) {
        if port(5353) {
            return known(app::MDNS);
        }
        if port(5355) {
            return known(app::LLMNR);
        }
        if port(53) {
            return known(app::DNS);
        }
    }
    if port(1900)
        && (payload.starts_with(b"M-SEARCH * HTTP/1.1")
            || payload.starts_with(b"NOTIFY * HTTP/1.1")
            || payload.starts_with(b"HTTP/1.1 200"))
    {
        return known(app::SSDP);
    }
    if (port(67) || port(68)) && payload.len() >= 240 && payload[236..240] == [0x63, 0x82, 0x53, 0x63] {
        return known(app::DHCP);
    }
    if (port(546) || port(547)) && !payload.is_empty() && (1..=13).contains(&payload[0]) {
        return known(app::DHCPV6);
    }
    if (sport == 137 || sport == 138) && (dport == 137 || dport == 138) && payload.len() >= 12 {
        return known(app::NETBIOS);
    }
    if is_stun(payload) {
        return known(app::STUN);
    }
    // A QUIC connection's first flight (IETF Initials, Google's cleartext hello) is named by
    // the stack's FLOW/UDP/QUIC; a long header without one (a connection picked up late).
    if is_quic(payload) {
        return known(app::QUIC);
    }
    if payload.starts_with(b"d1:ad2:id20:") || payload.starts_with(b"d1:rd2:id20:") || payload.starts_with(b"d1:e") && port(6881) {
        return known(app::BITTORRENT);
    }
    if port(123) && payload.len() >= 48 && (1..=4).contains(&((payload[0] >> 3) & 7)) && (1..=5).contains(&(payload[0] & 7)) {
        return known(app::NTP);
    }
    Verdict::Unknown
}

/// A DNS-format message: a header and its first question.
fn dns_like(payload: &[u8]) -> bool {
    let Some(h) = dns::header(payload) else { return false };
    if h.opcode > 5 || (h.questions == 0 && h.answers == 0) || h.questions > 64 {
        return false;
    }
    let mut ok = true;
    if h.questions > 0 {
        let mut names = 0;
        ok = dns::for_each_question(payload, |_| names += 1) && names > 0;
    }
    ok
}

/// STUN (RFC 5389): a message type with the top two bits clear, a length that fits, and the
/// magic cookie.
fn is_stun(p: &[u8]) -> bool {
    p.len() >= 20
        && p[0] & 0xc0 == 0
        && usize::from(u16::from_be_bytes([p[2], p[3]])) + 20 == p.len()
        && p[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// A QUIC long-header packet (Initial, 0-RTT, Handshake) of a known version: 1, 2, or an IETF
/// draft.
pub fn is_quic(p: &[u8]) -> bool {
    if p.len() < 7 || p[0] & 0xc0 != 0xc0 {
        return false;
    }
    let version = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
    let known = version == 1 || version == 0x6b33_43cf || (version >> 8) == 0xff_0000 || version & 0x0f0f_0f0f == 0x0a0a_0a0a;
    let dcid = usize::from(p[5]);
    known && dcid <= 20 && p.len() > 6 + dcid
}

/// The protocol registered for a port, for flows whose content said nothing (nDPI's guess).
pub fn by_port(tcp: bool, ports: [u16; 2]) -> u8 {
    // The responder's port first: it is the service's.
    for port in [ports[1], ports[0]] {
        let app = if tcp {
            match port {
                80 | 81 | 8181 => app::HTTP,
                443 => app::TLS,
                8080 | 3128 => app::HTTP_PROXY,
                22 => app::SSH,
                25 | 587 => app::SMTP,
                465 => app::SMTPS,
                143 => app::IMAP,
                993 => app::IMAPS,
                110 => app::POP3,
                995 => app::POPS,
                21 => app::FTP,
                53 => app::DNS,
                139 => app::NETBIOS,
                _ => app::UNKNOWN,
            }
        } else {
            match port {
                53 => app::DNS,
                5353 => app::MDNS,
                5355 => app::LLMNR,
                1900 => app::SSDP,
                137 | 138 => app::NETBIOS,
                67 | 68 => app::DHCP,
                546 | 547 => app::DHCPV6,
                3478 => app::STUN,
                443 => app::QUIC,
                123 => app::NTP,
                _ => app::UNKNOWN,
            }
        };
        if app != app::UNKNOWN {
            return app;
        }
    }
    app::UNKNOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(v: Verdict) -> u8 {
        match v {
            Verdict::Known(a, _) => a,
            _ => app::UNKNOWN,
        }
    }

    #[test]
    fn tcp_protocols_from_their_first_bytes() {
        assert_eq!(tcp(b"GET / HTTP/1.1\r\nHost: a.b\r\n\r\n", b"", 80), Verdict::Known(app::HTTP, b"a.b".to_vec()));
        assert_eq!(tcp(b"GET / HT", b"", 80), Verdict::Undecided);
        assert_eq!(known(tcp(b"", b"SSH-2.0-OpenSSH_9.0\r\n", 22)), app::SSH);
        assert_eq!(known(tcp(b"EHLO x\r\nSTARTTLS\r\n", b"220 mail\r\n", 25)), app::SMTPS);
        assert_eq!(known(tcp(b"EHLO x\r\nMAIL FROM:<a@b>\r\n", b"220 mail\r\n", 25)), app::SMTP);
        assert_eq!(tcp(b"EHLO x\r\n", b"220 mail\r\n250-STARTTLS\r\n", 25), Verdict::Undecided, "STARTTLS may come next");
        assert_eq!(known(tcp(b"GET /x;cat /etc/passwd HTTP/1.1\r\n\r\n", b"", 8080)), app::HTTP, "a lenient request line");
        assert_eq!(known(tcp(b"USER anonymous\r\n", b"220 Welcome\r\n", 21)), app::FTP);
        assert_eq!(tcp(b"", b"220 Welcome\r\n", 21), Verdict::Undecided);
        assert_eq!(known(tcp(b"", b"220 ProFTPD Server\r\n", 21)), app::FTP);
        assert_eq!(known(tcp(b"CAPA\r\n", b"+OK POP3 ready\r\n", 110)), app::POP3);
        assert_eq!(known(tcp(b"a001 CAPABILITY\r\n", b"* OK IMAP4rev1\r\n", 143)), app::IMAP);
        assert_eq!(known(tcp(b"\x13BitTorrent protocol\x00\x00", b"", 6881)), app::BITTORRENT);
        assert_eq!(tcp(b"\x00\x01\x02garbage that is nothing", b"\x05\x06 more", 9999), Verdict::Unknown);
    }

    #[test]
    fn requests_to_proxies_are_named_as_ndpi_names_them() {
        let proxy = b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(tcp(proxy, b"", 12345), Verdict::Known(app::HTTP_PROXY, b"example.com".to_vec()), "an absolute URI, any port");
        let connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        assert_eq!(known(tcp(connect, b"", 8080)), app::HTTP_CONNECT);
        assert_eq!(known(tcp(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", b"", 8080)), app::HTTP, "an origin-form URI is plain HTTP");
    }

    #[test]
    fn tls_picked_up_after_its_handshake_is_known_by_its_records() {
        let record = |ty: u8, len: usize| {
            let mut r = vec![ty, 3, 3, (len >> 8) as u8, len as u8];
            r.extend(std::iter::repeat_n(0xa5, len));
            r
        };
        let data = record(23, 100);
        assert_eq!(known(tcp(&data, b"", 8443)), app::TLS, "application data, on no TLS port");
        let mut two = record(23, 40);
        two.extend(record(21, 2));
        assert_eq!(known(tcp(b"", &two, 993)), app::IMAPS, "the server's records; the port's TLS name");
        assert_eq!(tcp(&data[..60], b"", 8443), Verdict::Undecided, "a record still coming");
        assert_eq!(known(tcp(&record(23, 9000)[..TCP_LIMIT], b"", 8443)), app::TLS, "a record longer than the bytes kept");
        assert_eq!(tcp(b"\x00\x01", &record(22, 100), 8443), Verdict::Unknown, "a handshake record alone says nothing here");
        let mut bad = record(23, 10);
        bad[2] = 9;
        assert_eq!(tcp(&bad, b"\x00", 8443), Verdict::Unknown, "not a TLS version");
    }

    #[test]
    fn udp_protocols() {
        let mut dns_query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        assert_eq!(known(udp(&dns_query, 5000, 53)), app::DNS);
        assert_eq!(known(udp(&dns_query, 5353, 5353)), app::MDNS);
        assert_eq!(known(udp(&dns_query, 50000, 5355)), app::LLMNR);
        dns_query.truncate(14);
        assert_eq!(known(udp(&dns_query, 5000, 53)), app::UNKNOWN, "a cut question");
        assert_eq!(known(udp(b"M-SEARCH * HTTP/1.1\r\n", 5000, 1900)), app::SSDP);
        let mut stun = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        assert_eq!(known(udp(&stun, 5000, 3478)), app::STUN);
        let mut quic = vec![0xc3, 0, 0, 0, 1, 8];
        quic.extend_from_slice(&[9; 1200]);
        assert_eq!(known(udp(&quic, 5000, 443)), app::QUIC);
        assert_eq!(known(udp(b"d1:ad2:id20:abcdefghij0123456789e", 5000, 6881)), app::BITTORRENT);
    }

    #[test]
    fn ports_when_the_content_said_nothing() {
        assert_eq!(by_port(true, [36050, 993]), app::IMAPS);
        assert_eq!(by_port(true, [80, 40000]), app::HTTP, "the other side's port when the responder's says nothing");
        assert_eq!(by_port(false, [443, 49361]), app::QUIC);
        assert_eq!(by_port(true, [40000, 40001]), app::UNKNOWN);
    }
}
