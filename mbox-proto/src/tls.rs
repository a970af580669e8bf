//! TLS: the ClientHello at the start of a client's stream, and the server name (SNI) in it.
//! A ClientHello split over several records is put back together (in a small buffer: this is
//! once per connection).

use crate::Parse;

/// What a ClientHello tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `server_name` extension's host name, if any.
    pub sni: Option<Vec<u8>>,
    /// The highest version offered in the legacy field (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
}

/// Handshake bytes accepted in a ClientHello before it is taken for garbage.
const MAX_HELLO: usize = 1 << 16;

/// Parses the ClientHello at the start of `stream` (the client's first bytes).
pub fn client_hello(stream: &[u8]) -> Parse<ClientHello> {
    handshake(stream, CLIENT_HELLO, parse_hello)
}

/// Whether `stream` starts like a ClientHello (a handshake record of TLS or SSL 3 whose first
/// message is a ClientHello), however much of it has come: what protocol detection needs.
pub fn starts_client_hello(stream: &[u8]) -> bool {
    stream.len() >= 6 && stream[0] == 22 && stream[1] == 3 && stream[5] == CLIENT_HELLO
}

/// What a ServerHello tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    /// The version the server chose: its `supported_versions` extension (TLS 1.3), else the
    /// legacy field.
    pub version: u16,
}

/// Parses the ServerHello at the start of `stream` (the server's first bytes).
pub fn server_hello(stream: &[u8]) -> Parse<ServerHello> {
    handshake(stream, SERVER_HELLO, parse_server_hello)
}

/// A version's name as Suricata writes it in eve.json (`TLS 1.2`, `TLSv1`, ...).
pub fn version_name(version: u16) -> &'static str {
    match version {
        0x0200 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv1",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        0x7f1c => "TLS 1.3 draft-28",
        0x7f1b => "TLS 1.3 draft-27",
        0x7f1a => "TLS 1.3 draft-26",
        0x7f19 => "TLS 1.3 draft-25",
        0x7f18 => "TLS 1.3 draft-24",
        0x7f17 => "TLS 1.3 draft-23",
        0x7f16 => "TLS 1.3 draft-22",
        0x7f15 => "TLS 1.3 draft-21",
        0x7f14 => "TLS 1.3 draft-20",
        0x7f13 => "TLS 1.3 draft-19",
        0x7f12 => "TLS 1.3 draft-18",
        0x7f11 => "TLS 1.3 draft-17",
        0x7f10 => "TLS 1.3 draft-16",
        0x7f01..=0x7f0f => "TLS 1.3 draft-<16",
        0xfb14 => "TLS 1.3 draft-20-fb",
        0xfb15 => "TLS 1.3 draft-21-fb",
        0xfb16 => "TLS 1.3 draft-22-fb",
        0xfb17 => "TLS 1.3 draft-23-fb",
        0xfb1a => "TLS 1.3 draft-26-fb",
        _ => "UNDETERMINED",
    }
}

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;

/// The first handshake message of a side's stream, of type `kind`, gathered from the records
/// it is in and parsed by `parse` (its body, after the 4-byte handshake header).
fn handshake<T>(stream: &[u8], kind: u8, parse: fn(&[u8]) -> Option<T>) -> Parse<T> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut at = 0;
    let needed = loop {
        let Some(header) = stream.get(at..at + 5) else {
            // A header still partial is already not one when its first bytes say so.
            let start = &stream[at.min(stream.len())..];
            let bad = start.first().is_some_and(|&c| c != 22) || start.get(1).is_some_and(|&v| v != 3);
            return if bad { Parse::Invalid } else { Parse::Partial };
        };
        let (content, major, len) = (header[0], header[1], usize::from(u16::from_be_bytes([header[3], header[4]])));
        if content != 22 || major != 3 || len == 0 || len > 16_384 + 2048 {
            return Parse::Invalid;
        }
        let Some(payload) = stream.get(at + 5..at + 5 + len) else {
            // Use what has come so far to decide early that it is not the message looked for.
            let partial = &stream[at + 5..];
            if handshake.is_empty() && !partial.is_empty() && partial[0] != kind {
                return Parse::Invalid;
            }
            return Parse::Partial;
        };
        handshake.extend_from_slice(payload);
        at += 5 + len;
        // Not the message as soon as its type says so, as when the record is still partial.
        if handshake[0] != kind {
            return Parse::Invalid;
        }
        if handshake.len() >= 4 {
            let needed = 4 + (usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]));
            if needed > MAX_HELLO {
                return Parse::Invalid;
            }
            if handshake.len() >= needed {
                break needed;
            }
        }
    };
    match parse(&handshake[4..needed]) {
        Some(hello) => Parse::Done(hello),
        None => Parse::Invalid,
    }
}

/// The ServerHello body: version, random, session id, cipher, compression, extensions.
fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let mut version = r.u16()?;
    r.skip(32)?; // random
    let session = usize::from(r.u8()?);
    r.skip(session)?;
    r.skip(3)?; // cipher suite, compression
    extensions(&mut r, |kind, data| {
        if kind == 43 && data.len() == 2 {
            version = u16::from_be_bytes([data[0], data[1]]); // supported_versions
        }
    })?;
    Some(ServerHello { version })
}

/// Hands each extension of a hello's extension block (its kind and data) to `each`: `None`
/// when the block overruns the hello. A hello without a block has none.
fn extensions(r: &mut Reader<'_>, mut each: impl FnMut(u16, &[u8])) -> Option<()> {
    if r.0.is_empty() {
        return Some(());
    }
    let len = usize::from(r.u16()?);
    let mut ext = Reader(r.take(len)?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let len = usize::from(ext.u16()?);
        each(kind, ext.take(len)?);
    }
    Some(())
}

/// The ClientHello body: version, random, session id, ciphers, compression, extensions.
fn parse_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.skip(32)?; // random
    let session = usize::from(r.u8()?);
    r.skip(session)?;
    let ciphers = usize::from(r.u16()?);
    r.skip(ciphers)?;
    let compression = usize::from(r.u8()?);
    r.skip(compression)?;
    let mut sni = None;
    extensions(&mut r, |kind, data| {
        if kind == 0 {
            sni = server_name(data);
        }
    })?;
    Some(ClientHello { sni, legacy_version })
}

/// The host name in a `server_name` extension.
fn server_name(data: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader(data);
    let list = usize::from(r.u16()?);
    let mut names = Reader(r.take(list)?);
    while !names.0.is_empty() {
        let kind = names.u8()?;
        let len = usize::from(names.u16()?);
        let name = names.take(len)?;
        if kind == 0 {
            return Some(name.to_vec());
        }
    }
    None
}

/// A cursor over bytes that fails (None) instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello record with the given server name (and a padding extension of `pad`
    /// bytes, to make it as big as needed).
    pub(crate) fn hello_record(sni: &[u8], pad: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        let mut name = vec![0u8];
        name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        name.extend_from_slice(sni);
        let mut list = (name.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&name);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        ext.extend_from_slice(&21u16.to_be_bytes());
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, pad));
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        hs
    }

    fn records(handshake: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in handshake.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn the_server_name_in_one_record_or_several() {
        let hs = hello_record(b"www.netflix.com", 3000);
        for max in [16_384, 1000, 7] {
            let stream = records(&hs, max);
            let Parse::Done(h) = client_hello(&stream) else { panic!("max {max}") };
            assert_eq!(h.sni.as_deref(), Some(&b"www.netflix.com"[..]));
            assert_eq!(client_hello(&stream[..stream.len() - 1]), Parse::Partial);
        }
    }

    #[test]
    fn a_server_hello_names_the_chosen_version() {
        // TLS 1.3: legacy 1.2, supported_versions 1.3.
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 0x13, 0x01, 0]);
        body.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        let mut hs = vec![2, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let Parse::Done(h) = server_hello(&records(&hs, 16_384)) else { panic!() };
        assert_eq!(version_name(h.version), "TLS 1.3");
        assert_eq!(server_hello(&records(&hello_record(b"a", 0), 16_384)), Parse::Invalid, "a ClientHello");
        assert_eq!(version_name(0x0301), "TLSv1");
        assert_eq!(version_name(0x1234), "UNDETERMINED");
    }

    #[test]
    fn not_tls_and_broken_hellos() {
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Parse::Invalid);
        assert_eq!(client_hello(b"\x16\x03\x01\x00\x05\x02\x00"), Parse::Invalid, "a ServerHello");
        let mut hs = hello_record(b"a.b", 0);
        hs.truncate(hs.len() - 3);
        hs[3] -= 3; // consistent lengths, but the extensions run out
        assert_eq!(client_hello(&records(&hs, 16_384)), Parse::Invalid);
    }

    #[test]
    fn another_handshake_type_is_refused_before_its_header_is_whole() {
        // Found by the tls_hello fuzz target: a first record holding 3 bytes of a handshake
        // whose type is not ClientHello was Partial once complete, though Invalid while cut
        // (a stream's verdict must not go back from Invalid as it grows).
        let stream = b"\x16\x03\x16\x00\x03\xe3\xfc\x26\x00";
        assert_eq!(client_hello(&stream[..6]), Parse::Invalid);
        assert_eq!(client_hello(stream), Parse::Invalid);
        assert_eq!(client_hello(b"\x16\x03\x01\x00\x02\x01\x00"), Parse::Partial, "a ClientHello's first two bytes");
    }
}
