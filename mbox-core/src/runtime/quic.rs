//! Which UDP datagrams are QUIC packets (`PKT/UDP/QUIC`), what their headers say, and what a
//! connection's first flight says (`FLOW/UDP/QUIC`).
//!
//! A long header carries its version and both connection IDs, so a datagram that starts with
//! one of an IETF version (v1, v2, drafts, greased) or of Google's (`Q0xx`, `T0xx`: Q046 on
//! share the IETF's invariant layout) is QUIC on any port. A short header (1-RTT) is one flag
//! bit and a destination connection ID of a length only the peers know: its receiver chose it,
//! as the source connection ID of its own long headers. So each UDP flow remembers, per
//! direction, the length of the source IDs its long headers gave; a short-header datagram is
//! QUIC only on a flow where the receiver's length is known, which keeps other UDP (DNS, RTP,
//! games) from passing for it. Google's versions up to Q043 use another header (the public
//! header) and are not recognised as packets here.
//!
//! The first flight: the client's Initial packets, decrypted as RFC 9001 says and gathered
//! over as many datagrams as its ClientHello takes (`mbox_proto::quic::ClientInitials`; at
//! most [`MAX_WAITING_FLIGHTS`] flights wait at once per shard, each at most its hello's
//! bytes), or Google's cleartext hello in the client's first datagram. Once per flow it is
//! decided: read (the server name and ALPN), or QUIC that cannot be read, or not QUIC at all
//! (nothing is reported then).

use mbox_abi::{
    PktEvent, PktQuicEvent, QuicHeader, QUIC_HANDSHAKE, QUIC_INITIAL, QUIC_MAX_CID, QUIC_RETRY, QUIC_SHORT, QUIC_VERSION_NEGOTIATION,
    QUIC_ZERO_RTT,
};
use mbox_proto::quic::{self, ClientInitials, PacketType, WaitingFlights};
use mbox_proto::tls::ClientHello;
use mbox_proto::Parse;

/// First flights waiting for their next datagram at once, per shard.
pub const MAX_WAITING_FLIGHTS: usize = 1024;

/// What one flow's long headers told: the version, and each direction's own connection ID
/// length (what a short header towards that side carries); and its first flight.
#[derive(Debug, Default)]
struct QuicFlow {
    /// The flow this slot describes; another id in the slot is a flow that came after.
    id: u64,
    version: u32,
    /// By direction of the long headers: their source ID's length, `None` until one is seen.
    cid_len: [Option<u8>; 2],
    /// The client's Initials while their ClientHello waits for a later datagram.
    flight: Option<Box<ClientInitials>>,
    /// The first flight was decided (read, unreadable, or not QUIC).
    decided: bool,
}

/// Per flow slot of a shard: what its QUIC long headers and first flight told.
#[derive(Debug)]
pub struct QuicFlows {
    slots: Vec<QuicFlow>,
    flights: WaitingFlights,
}

impl Default for QuicFlows {
    fn default() -> QuicFlows {
        QuicFlows { slots: Vec::new(), flights: WaitingFlights::new(MAX_WAITING_FLIGHTS) }
    }
}

/// What a QUIC connection's first flight said.
#[derive(Debug)]
pub enum FirstFlight {
    /// Its ClientHello, with the version of its long headers (0 for Google's public header).
    Read(ClientHello, u32),
    /// QUIC, but not readable (see `QUIC_HELLO_READ`), of this version.
    Unreadable(u32),
}

/// The `PKT/UDP/QUIC` event of a datagram whose `PKT` part is `pkt` (its size set) and whose
/// header says `quic`.
pub fn event(mut pkt: PktEvent, quic: QuicHeader) -> PktQuicEvent {
    pkt.header.size = std::mem::size_of::<PktQuicEvent>() as u32;
    PktQuicEvent { pkt, quic }
}

/// A connection ID's length and its first [`QUIC_MAX_CID`] bytes.
fn cid(id: &[u8]) -> (u8, [u8; QUIC_MAX_CID]) {
    let mut out = [0; QUIC_MAX_CID];
    let n = id.len().min(QUIC_MAX_CID);
    out[..n].copy_from_slice(&id[..n]);
    (id.len().min(usize::from(u8::MAX)) as u8, out)
}

/// Whether a long header's version is one QUIC is spoken with (not a random first byte): the
/// IETF's, or Google's `Q0dd` / `T0dd`.
fn known_version(version: u32) -> bool {
    let [tag, zero, tens, units] = version.to_be_bytes();
    quic::is_ietf_version(version) || (matches!(tag, b'Q' | b'T') && zero == b'0' && tens.is_ascii_digit() && units.is_ascii_digit())
}

impl QuicFlows {
    /// The QUIC header `payload` (a datagram of the flow `flow_id` in `slot`, sent in direction
    /// `dir`) starts with, if it is one; long headers teach the flow their lengths.
    pub fn recognise(&mut self, slot: u32, flow_id: u64, dir: u8, payload: &[u8]) -> Option<QuicHeader> {
        let dir = usize::from(dir.min(1));
        let flow = self.flow(slot, flow_id);
        let header = quic::header(payload)?;
        let packet_type = match header.packet_type {
            PacketType::Initial => QUIC_INITIAL,
            PacketType::ZeroRtt => QUIC_ZERO_RTT,
            PacketType::Handshake => QUIC_HANDSHAKE,
            PacketType::Retry => QUIC_RETRY,
            PacketType::VersionNegotiation => QUIC_VERSION_NEGOTIATION,
            PacketType::Short => {
                // The receiver's own ID, if its long headers gave its length.
                let len = usize::from(flow.cid_len[dir ^ 1]?);
                let id = payload.get(1..1 + len)?;
                let (dcid_len, dcid) = cid(id);
                return Some(QuicHeader {
                    version: flow.version,
                    packet_type: QUIC_SHORT,
                    dcid_len,
                    scid_len: 0,
                    _reserved: 0,
                    dcid,
                    scid: [0; QUIC_MAX_CID],
                });
            }
        };
        // A version negotiation answers a long header the other side sent: without one, a
        // datagram with a high first bit and four zero bytes is anything (LLMNR, for one).
        let answers_a_long_header = header.version == 0 && flow.cid_len[dir ^ 1].is_some();
        if !(known_version(header.version) || answers_a_long_header) {
            return None;
        }
        if header.version != 0 {
            // A version negotiation lists versions; it teaches neither the version nor lengths.
            flow.version = header.version;
            flow.cid_len[dir] = Some(header.scid.len().min(usize::from(u8::MAX)) as u8);
        }
        let ((dcid_len, dcid), (scid_len, scid)) = (cid(header.dcid), cid(header.scid));
        Some(QuicHeader { version: header.version, packet_type, dcid_len, scid_len, _reserved: 0, dcid, scid })
    }

    /// The state of the flow `flow_id` in `slot` (a new one if the slot held another).
    fn flow(&mut self, slot: u32, flow_id: u64) -> &mut QuicFlow {
        let slot = slot as usize;
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, QuicFlow::default);
        }
        let flow = &mut self.slots[slot];
        if flow.id != flow_id {
            self.flights.release(&mut flow.flight);
            *flow = QuicFlow { id: flow_id, ..QuicFlow::default() };
        }
        flow
    }

    /// A datagram of the flow `flow_id` in `slot` in direction `dir`, whose QUIC header (as
    /// [`QuicFlows::recognise`] found it) is `header`: what the first flight said, once the
    /// datagram decides it (the client's datagrams only; `None` before and after).
    pub fn first_flight(&mut self, slot: u32, flow_id: u64, dir: u8, payload: &[u8], header: Option<&QuicHeader>) -> Option<FirstFlight> {
        if dir != 0 {
            return None;
        }
        let QuicFlows { slots, flights } = self;
        let flow = slots.get_mut(slot as usize).filter(|f| f.id == flow_id)?;
        if flow.decided {
            return None;
        }
        let initial = header.is_some_and(|h| h.packet_type == QUIC_INITIAL);
        let (parsed, quic) = match header {
            _ if initial || flow.flight.is_some() => (flights.push(&mut flow.flight, payload), true),
            // Google's public header (no long header of its own): its cleartext hello, in the
            // client's first datagram or not at all; anything else is not QUIC.
            None => (quic::google_client_hello(payload), false),
            // Another QUIC packet before an Initial (a connection picked up late): wait.
            Some(_) => return None,
        };
        let version = header.map_or(0, |h| h.version);
        match parsed {
            Parse::Partial => None,
            Parse::Done(hello) => {
                flow.decided = true;
                Some(FirstFlight::Read(hello, version))
            }
            Parse::Invalid => {
                flow.decided = true;
                quic.then_some(FirstFlight::Unreadable(version))
            }
        }
    }

    /// The flow in `slot` ended: its waiting flight is let go.
    pub fn ended(&mut self, slot: u32) {
        if let Some(flow) = self.slots.get_mut(slot as usize) {
            self.flights.release(&mut flow.flight);
            flow.decided = true;
        }
    }

    /// First flights refused because too many waited at once.
    pub fn flights_refused(&self) -> u64 {
        self.flights.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_proto::quic::testing::client_initial;

    #[test]
    fn short_headers_are_quic_only_once_the_receivers_id_length_is_known() {
        let mut flows = QuicFlows::default();
        let short = [0x43, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        assert_eq!(flows.recognise(0, 7, 1, &short), None, "no long header seen: any UDP could look like this");
        let initial = client_initial(&[0xaa; 8], 0, b"hello");
        let h = flows.recognise(0, 7, 0, &initial).expect("an Initial");
        assert_eq!((h.version, h.packet_type, h.dcid_len), (1, QUIC_INITIAL, 8));
        // The client's long headers gave its own ID's length: what the server's short headers carry.
        let scid_len = usize::from(h.scid_len);
        let h = flows.recognise(0, 7, 1, &short).expect("a short header to the client");
        assert_eq!((h.packet_type, h.version, usize::from(h.dcid_len)), (QUIC_SHORT, 1, scid_len));
        assert_eq!(h.dcid(), &short[1..1 + scid_len]);
        assert_eq!(flows.recognise(0, 7, 0, &short), None, "the server's ID length is not known yet");
        assert_eq!(flows.recognise(0, 8, 1, &short), None, "another flow in the slot starts over");
    }

    #[test]
    fn a_long_header_of_an_unknown_version_is_not_quic() {
        let mut flows = QuicFlows::default();
        let mut initial = client_initial(&[0xaa; 8], 0, b"hello");
        initial[1..5].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert_eq!(flows.recognise(0, 1, 0, &initial), None);
        initial[1..5].copy_from_slice(b"Q050");
        assert_eq!(flows.recognise(0, 1, 0, &initial).map(|h| h.version), Some(u32::from_be_bytes(*b"Q050")));
        assert_eq!(flows.recognise(0, 1, 0, &[]), None);
        initial[1..5].copy_from_slice(b"Qabc");
        assert_eq!(flows.recognise(0, 1, 0, &initial), None, "not a Google version number");
    }

    #[test]
    fn a_version_negotiation_counts_only_as_an_answer() {
        let mut flows = QuicFlows::default();
        // Version 0, an 8-byte DCID, no SCID, one version listed.
        let vn = [0x80, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 1];
        assert_eq!(flows.recognise(0, 1, 1, &vn), None, "nothing asked for it");
        assert!(flows.recognise(0, 1, 0, &client_initial(&[0xaa; 8], 0, b"hello")).is_some());
        let h = flows.recognise(0, 1, 1, &vn).expect("the server's answer");
        assert_eq!((h.packet_type, h.version, h.dcid_len), (QUIC_VERSION_NEGOTIATION, 0, 8));
    }
}
