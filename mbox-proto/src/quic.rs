//! QUIC: a datagram's packet header (long headers of every version: version, connection IDs,
//! packet type), and the server name and ALPN of the client's first flight — its Initial
//! packets decrypted as RFC 9001 section 5 says (QUIC v1, v2 of RFC 9369 and the drafts from
//! 23 on; the keys come from the connection ID alone), or Google QUIC's cleartext `CHLO`
//! (versions Q024 to Q043). A ClientHello spread over several Initial packets or datagrams is
//! put back together by [`ClientInitials`] (bounded: this is once per connection).

use crate::tls::{self, ClientHello};
use crate::Parse;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::{AeadInPlace, Nonce, Tag};
use aes_gcm::Aes128Gcm;

/// A packet's type, from its first byte (and, for long headers, its version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
    /// Version 0: the server's list of versions it speaks.
    VersionNegotiation,
    /// A short header (1-RTT): no version, connection ID lengths known only to the peers.
    Short,
}

/// What a QUIC packet's header says (long header: all of it; short header: the type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub packet_type: PacketType,
    /// 0 for a short header (and for version negotiation).
    pub version: u32,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
}

/// The long header's fields up to its payload, for the Initial packets this module opens.
struct Long<'a> {
    header: Header<'a>,
    /// Where the packet number starts, and the end of this packet in the datagram (after it, a
    /// coalesced packet may follow).
    pn_offset: usize,
    end: usize,
}

/// Connection IDs are at most 20 bytes in QUIC v1 (RFC 9000 section 17.2).
const MAX_CID: usize = 20;

/// Parses the header of the QUIC packet at the start of `datagram`. `None` when it is not one:
/// a short header needs the fixed bit, a long one a sane layout for its version.
pub fn header(datagram: &[u8]) -> Option<Header<'_>> {
    let &first = datagram.first()?;
    if first & 0x80 == 0 {
        return (first & 0x40 != 0 && datagram.len() > 1).then_some(Header {
            packet_type: PacketType::Short,
            version: 0,
            dcid: &[],
            scid: &[],
        });
    }
    long(datagram).map(|l| l.header)
}

/// A long header at the start of `datagram`.
fn long(datagram: &[u8]) -> Option<Long<'_>> {
    let mut r = Reader { bytes: datagram, at: 1 };
    let first = datagram[0];
    let version = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
    let dcid_len = usize::from(r.u8()?);
    let dcid = r.take(dcid_len)?;
    let scid_len = usize::from(r.u8()?);
    let scid = r.take(scid_len)?;
    if version == 0 {
        let header = Header { packet_type: PacketType::VersionNegotiation, version, dcid, scid };
        return Some(Long { header, pn_offset: datagram.len(), end: datagram.len() });
    }
    // Versions of the IETF's QUIC bound the connection IDs; Google's own had fixed ones.
    if is_ietf_version(version) && (dcid_len > MAX_CID || scid_len > MAX_CID) {
        return None;
    }
    let bits = (first >> 4) & 3;
    // QUIC v2 numbers the long packet types otherwise (RFC 9369 section 3.2).
    let packet_type = match (version == VERSION_2, bits) {
        (false, 0) | (true, 1) => PacketType::Initial,
        (false, 1) | (true, 2) => PacketType::ZeroRtt,
        (false, 2) | (true, 3) => PacketType::Handshake,
        _ => PacketType::Retry,
    };
    let header = Header { packet_type, version, dcid, scid };
    if packet_type == PacketType::Retry {
        return Some(Long { header, pn_offset: datagram.len(), end: datagram.len() });
    }
    if packet_type == PacketType::Initial {
        let token = usize::try_from(r.varint()?).ok()?;
        r.take(token)?;
    }
    let length = usize::try_from(r.varint()?).ok()?;
    let pn_offset = r.at;
    let end = pn_offset.checked_add(length).filter(|&e| e <= datagram.len())?;
    Some(Long { header, pn_offset, end })
}

const VERSION_1: u32 = 0x0000_0001;
const VERSION_2: u32 = 0x6b33_43cf;

/// Whether `version` is one of the IETF's (v1, v2, drafts, or a reserved one), not Google's
/// (`Q0xx`, `T0xx`) nor another vendor's.
pub fn is_ietf_version(version: u32) -> bool {
    matches!(version, VERSION_1 | VERSION_2) || version >> 8 == 0x00ff_0000 || version & 0x0f0f_0f0f == 0x0a0a_0a0a
}

/// The initial salt and the labels of a version's Initial keys (RFC 9001 section 5.2, RFC 9369
/// section 3.3.1, and the drafts'); `None` for versions whose Initial packets this module
/// cannot open.
fn initial_keys_of(version: u32) -> Option<(&'static [u8; 20], &'static str)> {
    const SALT_V1: [u8; 20] = hex20("38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
    const SALT_V2: [u8; 20] = hex20("0dede3def700a6db819381be6e269dcbf9bd2ed9");
    const SALT_29: [u8; 20] = hex20("afbfec289993d24c9e9786f19c6111e04390a899");
    const SALT_23: [u8; 20] = hex20("c3eef712c72ebb5a11a7d2432bb46365bef9f502");
    match version {
        VERSION_1 | 0xff00_0021 | 0xff00_0022 => Some((&SALT_V1, "quic ")),
        VERSION_2 => Some((&SALT_V2, "quicv2 ")),
        0xff00_001d..=0xff00_0020 => Some((&SALT_29, "quic ")),
        0xff00_0017..=0xff00_001c => Some((&SALT_23, "quic ")),
        _ => None,
    }
}

/// 40 hex digits as 20 bytes, at compile time.
const fn hex20(text: &str) -> [u8; 20] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }
    let b = text.as_bytes();
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = digit(b[2 * i]) << 4 | digit(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// The client's Initial keys for a connection whose client chose `dcid`.
struct InitialKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: aes::Aes128,
}

impl InitialKeys {
    fn new(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
        let (salt, prefix) = initial_keys_of(version)?;
        let (initial, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(salt), dcid);
        let initial = hkdf::Hkdf::<sha2::Sha256>::from_prk(&initial).ok()?;
        let mut client = [0u8; 32];
        expand_label(&initial, "client in", &mut client)?;
        let client = hkdf::Hkdf::<sha2::Sha256>::from_prk(&client).ok()?;
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        for (label, out) in [("key", &mut key[..]), ("iv", &mut iv[..]), ("hp", &mut hp[..])] {
            expand_label(&client, &format!("{prefix}{label}"), out)?;
        }
        Some(InitialKeys { aead: Aes128Gcm::new(&key.into()), iv, hp: aes::Aes128::new(&hp.into()) })
    }

    /// Removes header protection from the Initial packet `packet[..end]` (in place) and decrypts
    /// its payload in place; returns the plaintext's range in `packet`.
    fn open(&self, packet: &mut [u8], pn_offset: usize, end: usize) -> Option<std::ops::Range<usize>> {
        // The sample starts 4 bytes after the packet number's start (RFC 9001 section 5.4.2).
        let sample = packet.get(pn_offset + 4..pn_offset + 20)?;
        let mut mask = aes::Block::clone_from_slice(sample);
        self.hp.encrypt_block(&mut mask);
        packet[0] ^= mask[0] & 0x0f;
        let pn_len = usize::from(packet[0] & 3) + 1;
        let mut pn = 0u64;
        for i in 0..pn_len {
            packet[pn_offset + i] ^= mask[1 + i];
            pn = pn << 8 | u64::from(packet[pn_offset + i]);
        }
        // A client's first packets have small numbers: the truncated one is the whole one.
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let payload = pn_offset + pn_len;
        let tag_at = end.checked_sub(16).filter(|&t| t >= payload)?;
        let (aad, rest) = packet.split_at_mut(payload);
        let (ciphertext, tag) = rest[..end - payload].split_at_mut(tag_at - payload);
        let tag = Tag::<Aes128Gcm>::clone_from_slice(tag);
        self.aead.decrypt_in_place_detached(Nonce::<Aes128Gcm>::from_slice(&nonce), aad, ciphertext, &tag).ok()?;
        Some(payload..tag_at)
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1) with an empty context.
fn expand_label(prk: &hkdf::Hkdf<sha2::Sha256>, label: &str, out: &mut [u8]) -> Option<()> {
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    prk.expand(&info, out).ok()
}

/// Crypto stream bytes an Initial flight may carry before it is taken for garbage.
const MAX_CRYPTO: usize = 16 << 10;

/// The client's first flight of one QUIC connection, gathered from its Initial packets (or
/// Google QUIC's cleartext hello) as datagrams come, until its ClientHello is whole.
#[derive(Debug, Default)]
pub struct ClientInitials {
    /// CRYPTO frame bytes by offset, and which of them came.
    crypto: Vec<u8>,
    have: Vec<bool>,
    /// Decided: a hello was read, or the flight is not one this module can read.
    decided: bool,
}

impl ClientInitials {
    /// Takes one client datagram: `Done` with the ClientHello once it is whole (then nothing
    /// more is needed), `Partial` while it is not, `Invalid` when the datagram (or the
    /// flight) is not a client's first flight this module can open.
    pub fn push(&mut self, datagram: &[u8]) -> Parse<ClientHello> {
        if self.decided {
            return Parse::Invalid;
        }
        let parsed = match datagram.first() {
            Some(first) if first & 0x80 != 0 && long(datagram).is_some_and(|l| is_ietf_version(l.header.version)) => {
                self.push_ietf(datagram)
            }
            _ => google_client_hello(datagram),
        };
        if !matches!(parsed, Parse::Partial) {
            self.decided = true;
        }
        parsed
    }

    /// The Initial packets coalesced in an IETF QUIC datagram.
    fn push_ietf(&mut self, datagram: &[u8]) -> Parse<ClientHello> {
        let mut packet = datagram.to_vec();
        let mut at = 0;
        let mut opened_any = false;
        while at < packet.len() {
            let Some(l) = long(&packet[at..]) else { break };
            if l.header.packet_type != PacketType::Initial {
                break;
            }
            let Some(keys) = InitialKeys::new(l.header.version, l.header.dcid) else { return Parse::Invalid };
            let (pn_offset, end) = (l.pn_offset, l.end);
            let this = &mut packet[at..at + end];
            let Some(plain) = keys.open(this, pn_offset, end) else { return Parse::Invalid };
            if self.frames(&this[plain]).is_none() {
                return Parse::Invalid;
            }
            opened_any = true;
            at += end;
        }
        if !opened_any {
            return Parse::Invalid;
        }
        // The hello from the crypto stream's start, as far as it has come in order.
        let whole = self.have.iter().take_while(|&&h| h).count();
        match tls::client_hello_message(&self.crypto[..whole]) {
            Parse::Partial if whole == MAX_CRYPTO => Parse::Invalid,
            parsed => parsed,
        }
    }

    /// Takes the CRYPTO frames of a decrypted Initial payload; `None` for a frame an Initial
    /// packet may not carry, or a malformed one.
    fn frames(&mut self, mut payload: &[u8]) -> Option<()> {
        while let Some((&kind, rest)) = payload.split_first() {
            let mut r = Reader { bytes: rest, at: 0 };
            match kind {
                0x00 | 0x01 => {} // PADDING, PING
                0x02 | 0x03 => {
                    // ACK: largest, delay, range count, first range, then (gap, range) pairs,
                    // and with 0x03 the three ECN counts.
                    r.varint()?;
                    r.varint()?;
                    let ranges = r.varint()?;
                    r.varint()?;
                    for _ in 0..ranges.min(1 << 16) * 2 + if kind == 0x03 { 3 } else { 0 } {
                        r.varint()?;
                    }
                }
                0x06 => {
                    let offset = usize::try_from(r.varint()?).ok()?;
                    let len = usize::try_from(r.varint()?).ok()?;
                    let data = r.take(len)?;
                    self.crypto_at(offset, data);
                }
                0x1c => {
                    // CONNECTION_CLOSE: error code, frame type, reason.
                    r.varint()?;
                    r.varint()?;
                    let reason = usize::try_from(r.varint()?).ok()?;
                    r.take(reason)?;
                }
                _ => return None,
            }
            payload = &rest[r.at..];
        }
        Some(())
    }

    /// Keeps crypto stream bytes at `offset` (those beyond [`MAX_CRYPTO`] are let go).
    fn crypto_at(&mut self, offset: usize, data: &[u8]) {
        let end = offset.saturating_add(data.len()).min(MAX_CRYPTO);
        if offset >= end {
            return;
        }
        if self.crypto.len() < end {
            self.crypto.resize(end, 0);
            self.have.resize(end, false);
        }
        self.crypto[offset..end].copy_from_slice(&data[..end - offset]);
        self.have[offset..end].fill(true);
    }
}

/// The first flights of many connections of one reader that wait for their next datagram,
/// each kept by its connection (`Option<Box<ClientInitials>>`, `None` while none waits): at
/// most `max` wait at once (each with at most its ClientHello's bytes), so that half-sent
/// hellos cannot take memory without bound.
#[derive(Debug)]
pub struct WaitingFlights {
    waiting: usize,
    max: usize,
    /// Flights not kept because `max` were waiting (their hellos go unread).
    pub refused: u64,
}

impl WaitingFlights {
    pub fn new(max: usize) -> WaitingFlights {
        WaitingFlights { waiting: 0, max, refused: 0 }
    }

    /// Pushes a client datagram into the connection's flight (`slot`; a new one if none
    /// waits): `Done` with the ClientHello once whole, `Partial` while it waits in `slot`,
    /// `Invalid` when it cannot be read or too many wait already. `slot` is empty unless
    /// `Partial`.
    pub fn push(&mut self, slot: &mut Option<Box<ClientInitials>>, datagram: &[u8]) -> Parse<ClientHello> {
        let had = slot.is_some();
        let mut flight = slot.take().unwrap_or_default();
        let parsed = flight.push(datagram);
        if matches!(parsed, Parse::Partial) {
            if !had && self.waiting >= self.max {
                self.refused += 1;
                return Parse::Invalid;
            }
            *slot = Some(flight);
            self.waiting += usize::from(!had);
        } else {
            self.waiting -= usize::from(had);
        }
        parsed
    }

    /// Lets go of a connection's flight that will not be finished (the connection ended).
    pub fn release(&mut self, slot: &mut Option<Box<ClientInitials>>) {
        if slot.take().is_some() {
            self.waiting -= 1;
        }
    }
}

/// Google QUIC's cleartext client hello, in one datagram: a public header with a `Q0xx`
/// version (the version flag 0x01 set), then somewhere in the first frame a `CHLO` message —
/// tag, entry count, padding, (tag, end offset) pairs, values — whose `SNI` value is the
/// server name (and `VER` the protocol, in `alpn`).
pub fn google_client_hello(datagram: &[u8]) -> Parse<ClientHello> {
    let Some(&flags) = datagram.first() else { return Parse::Invalid };
    // Version flag, and an 8-byte connection ID (the only length clients sent).
    if flags & 0x81 != 0x01 || flags & 0x08 == 0 {
        return Parse::Invalid;
    }
    let Some(version) = datagram.get(9..13) else { return Parse::Invalid };
    // Versions from Q044 on use IETF long headers, from Q050 on encrypt their hello.
    let cleartext = version[0] == b'Q' && version[1..].iter().all(u8::is_ascii_digit) && &version[1..] <= b"043";
    if !cleartext {
        return Parse::Invalid;
    }
    // The message starts within the first frames; its tag is found rather than reaching it
    // through every version's framing.
    let search = &datagram[13..datagram.len().min(13 + 64)];
    let Some(at) = search.windows(4).position(|w| w == b"CHLO") else { return Parse::Invalid };
    let message = &datagram[13 + at..];
    let mut r = Reader { bytes: message, at: 4 };
    let (Some(count), Some(_)) = (r.u16_le(), r.u16_le()) else { return Parse::Invalid };
    let count = usize::from(count);
    let Some(index) = r.take(count * 8) else { return Parse::Invalid };
    let values = &message[r.at..];
    let (mut start, mut sni, mut alpn) = (0usize, None, Vec::new());
    for entry in index.chunks_exact(8) {
        let end = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]) as usize;
        let Some(value) = values.get(start..end) else { return Parse::Invalid };
        match &entry[..4] {
            b"SNI\0" => sni = Some(value.to_vec()),
            // The protocol version it asks for stands in for ALPN.
            b"VER\0" => alpn.push(value.to_vec()),
            _ => {}
        }
        start = end;
    }
    Parse::Done(ClientHello { sni, legacy_version: 0, alpn })
}

/// A cursor over bytes that fails (None) instead of reading past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16_le(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// A variable-length integer (RFC 9000 section 16).
    fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let len = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for &b in self.take(len - 1)? {
            v = v << 8 | u64::from(b);
        }
        Some(v)
    }
}

/// Client Initial packets as a client seals them, for tests (here and of the NFs that read
/// QUIC) and fuzzing.
pub mod testing {
    use super::*;

    /// A client Initial packet of QUIC v1 for `dcid`, number `pn` (in 4 bytes), carrying
    /// `payload` (frames; padded to 1162 bytes), sealed and header-protected as a client does.
    pub fn client_initial(dcid: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
        let mut header = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
        header.extend_from_slice(dcid);
        header.extend_from_slice(&[0, 0]); // no source connection ID, no token
        header.extend_from_slice(&(0x4000u16 | (4 + 1162 + 16)).to_be_bytes());
        header.extend_from_slice(&pn.to_be_bytes());
        let keys = InitialKeys::new(VERSION_1, dcid).expect("v1 has keys");
        let mut plain = payload.to_vec();
        plain.resize(plain.len().max(1162), 0);
        let mut nonce = keys.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[8 + i] ^= b;
        }
        let tag = keys.aead.encrypt_in_place_detached(Nonce::<Aes128Gcm>::from_slice(&nonce), &header, &mut plain).expect("sealed");
        let pn_offset = header.len() - 4;
        let mut sealed = [header, plain, tag.to_vec()].concat();
        let mut mask = aes::Block::clone_from_slice(&sealed[pn_offset + 4..pn_offset + 20]);
        keys.hp.encrypt_block(&mut mask);
        sealed[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            sealed[pn_offset + i] ^= mask[1 + i];
        }
        sealed
    }

    /// A CRYPTO frame of `data` (under 16 KiB) at `offset` (under 16 KiB).
    pub fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x4000u16 | offset as u16).to_be_bytes());
        f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{client_initial as seal, crypto_frame};
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        let t: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        t.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
    }

    #[test]
    fn a_client_hello_over_two_datagrams_is_put_back_together() {
        let hello = &rfc_crypto()[4..]; // the ClientHello of appendix A, without its frame header
        let dcid = [7u8; 8];
        // The second half first (datagrams reorder), behind an ACK frame and padding.
        let second = seal(&dcid, 1, &[&[0x02, 0, 0, 0, 0][..], &crypto_frame(100, &hello[100..])].concat());
        let first = seal(&dcid, 0, &[&[0x01][..], &crypto_frame(0, &hello[..100])].concat());
        let mut flight = ClientInitials::default();
        assert_eq!(flight.push(&second), Parse::Partial);
        let Parse::Done(h) = flight.push(&first) else { panic!("not whole") };
        assert_eq!(h.sni.as_deref(), Some(&b"example.com"[..]));
        assert_eq!(flight.push(&first), Parse::Invalid, "decided once");
        // Two packets coalesced in one datagram do it at once.
        let both = [seal(&dcid, 0, &crypto_frame(0, &hello[..100])), seal(&dcid, 1, &crypto_frame(100, &hello[100..]))].concat();
        assert!(matches!(ClientInitials::default().push(&both), Parse::Done(_)));
        // A frame an Initial may not carry (STREAM) is not a client's first flight.
        assert_eq!(ClientInitials::default().push(&seal(&dcid, 0, &[0x08, 0, 0])), Parse::Invalid);
    }

    /// RFC 9001 appendix A.2's CRYPTO frame (the ClientHello of appendix A).
    fn rfc_crypto() -> Vec<u8> {
        unhex(
            "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
             04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
             616d706c652e636f6dff01000100000a00080006001d00170018001000070005
             04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
             baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
             0d0010000e0403050306030203080408050806002d00020101001c0002400100
             3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
             75300901100f088394c8f03e51570806048000ffff",
        )
    }

    /// RFC 9001 appendix A.1: the client's Initial keys for DCID 0x8394c8f03e515708.
    #[test]
    fn initial_keys_are_rfc_9001s() {
        let dcid = unhex("8394c8f03e515708");
        let keys = InitialKeys::new(VERSION_1, &dcid).unwrap();
        assert_eq!(keys.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        let mut block = aes::Block::clone_from_slice(&unhex("d1b1c98dd7689fb8ec11d242b123dc9b"));
        keys.hp.encrypt_block(&mut block);
        // Appendix A.2: this sample's mask begins 437b9aec36.
        assert_eq!(block[..5].to_vec(), unhex("437b9aec36"));
    }

    /// RFC 9001 appendix A.2, the client's Initial packet (its first 45 bytes as the RFC has
    /// them): decrypted, and its CRYPTO frame (the ClientHello of appendix A) read for its
    /// server name and ALPN.
    #[test]
    fn the_rfc_9001_client_initial_opens_and_names_its_server() {
        let mut sealed = seal(&unhex("8394c8f03e515708"), 2, &rfc_crypto());
        assert_eq!(sealed.len(), 1200);
        let rfc = "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11d242b123dc9bd8bab936b47d92";
        assert_eq!(sealed[..45].to_vec(), unhex(rfc));
        assert_eq!(header(&sealed).map(|h| (h.packet_type, h.version, h.dcid.len())), Some((PacketType::Initial, 1, 8)));
        let Parse::Done(hello) = ClientInitials::default().push(&sealed) else { panic!("not opened") };
        assert_eq!(hello.sni.as_deref(), Some(&b"example.com"[..]));
        assert_eq!(hello.alpn, [b"alpn".to_vec()]);
        // Flipping a ciphertext byte fails the tag.
        sealed[100] ^= 1;
        assert_eq!(ClientInitials::default().push(&sealed), Parse::Invalid);
        assert!(header(&sealed[..5]).is_none(), "a long header cut short");
    }

    #[test]
    fn waiting_flights_are_bounded() {
        let hello = crate::tls::testing::client_hello_message(0x0303, Some(b"a.example"), 1500);
        let part = |dcid: u8| seal(&[dcid; 8], 0, &crypto_frame(0, &hello[..900]));
        let mut flights = WaitingFlights::new(1);
        let (mut a, mut b) = (None, None);
        assert_eq!(flights.push(&mut a, &part(1)), Parse::Partial);
        assert!(a.is_some());
        assert_eq!(flights.push(&mut b, &part(2)), Parse::Invalid, "one waits already");
        assert_eq!((b.is_none(), flights.refused), (true, 1));
        flights.release(&mut a);
        assert_eq!(flights.push(&mut b, &part(2)), Parse::Partial, "room again");
        let rest = seal(&[2; 8], 1, &crypto_frame(900, &hello[900..]));
        assert!(matches!(flights.push(&mut b, &rest), Parse::Done(_)));
        assert!(b.is_none() && flights.waiting == 0);
    }

    #[test]
    fn headers_of_each_kind_and_nonsense() {
        assert_eq!(header(&[0x40, 1, 2]).map(|h| h.packet_type), Some(PacketType::Short));
        assert_eq!(header(&[0x00, 1, 2]), None, "no fixed bit");
        let vn = [0x80, 0, 0, 0, 0, 1, 9, 1, 7, 0, 0, 0, 1];
        assert_eq!(header(&vn).map(|h| (h.packet_type, h.scid)), Some((PacketType::VersionNegotiation, &[7][..])));
        // A v2 long header's type bits 01 are its Initial.
        let mut v2 = vec![0xd0];
        v2.extend_from_slice(&VERSION_2.to_be_bytes());
        v2.extend_from_slice(&[0, 0, 0, 1, 0]);
        assert_eq!(header(&v2).map(|h| h.packet_type), Some(PacketType::Initial));
        let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
        long_cid.extend_from_slice(&[0; 40]);
        assert_eq!(header(&long_cid), None, "a 21-byte connection ID");
        for junk in [&b""[..], &[0xff][..], &[0xc0, 0, 0, 0, 1, 8][..]] {
            assert_eq!(ClientInitials::default().push(junk), Parse::Invalid);
        }
    }

    #[test]
    fn a_google_quic_hello_names_its_server() {
        let mut d = vec![0x0d];
        d.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        d.extend_from_slice(b"Q035");
        d.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0, 1, 0]);
        d.extend_from_slice(b"CHLO");
        d.extend_from_slice(&2u16.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(b"PAD\0");
        d.extend_from_slice(&3u32.to_le_bytes());
        d.extend_from_slice(b"SNI\0");
        d.extend_from_slice(&17u32.to_le_bytes());
        d.extend_from_slice(b"---www.google.com");
        let Parse::Done(hello) = ClientInitials::default().push(&d) else { panic!() };
        assert_eq!(hello.sni.as_deref(), Some(&b"www.google.com"[..]));
        d[12] = b'9'; // Q039 still cleartext, "Q05x" not
        assert!(matches!(ClientInitials::default().push(&d), Parse::Done(_)));
        d[11] = b'5';
        assert_eq!(ClientInitials::default().push(&d), Parse::Invalid);
    }
}
