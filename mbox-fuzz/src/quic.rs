//! QUIC (mbox_proto::quic, and the shard's mbox_core::runtime::quic over it): packet headers
//! and the client's first flight, from datagrams.
//!
//! The input's first byte says how many more datagrams follow the first (0 to 3); the rest is
//! cut into that many equal pieces, each a datagram of one connection's client, pushed in
//! order. Whatever they hold: a header's connection IDs lie within its datagram; the flight is
//! decided at most once (after `Done` or `Invalid`, every push is `Invalid`); a server name
//! read is no longer than the bytes pushed. The same datagrams also go through a shard's
//! `QuicFlows`, each sent by the side bit 2 + i of the first byte names: a short header's
//! destination ID lies within its datagram, and a flow's first flight is reported at most
//! once, and only from the client.

use mbox_core::runtime::quic::QuicFlows;
use mbox_proto::quic::{header, ClientInitials};
use mbox_proto::Parse;

pub fn fuzz_quic(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let pieces = usize::from(first % 4) + 1;
    let size = rest.len().div_ceil(pieces).max(1);
    let mut flight = ClientInitials::default();
    let mut decided = false;
    let (mut flows, mut reported) = (QuicFlows::default(), false);
    for (i, datagram) in rest.chunks(size).enumerate() {
        let dir = (first >> (2 + i)) & 1;
        let quic = flows.recognise(0, 1, dir, datagram);
        if let Some(q) = &quic {
            assert!(usize::from(q.dcid_len) < datagram.len(), "a destination ID longer than its datagram");
        }
        if flows.first_flight(0, 1, dir, datagram, quic.as_ref()).is_some() {
            assert!(!reported && dir == 0, "a first flight reported twice, or from the server");
            reported = true;
        }
        if let Some(h) = header(datagram) {
            assert!(crate::is_within(h.dcid, datagram) && crate::is_within(h.scid, datagram), "connection IDs outside the datagram");
        }
        let parsed = flight.push(datagram);
        if decided {
            assert_eq!(parsed, Parse::Invalid, "a flight decided twice");
        }
        if let Parse::Done(hello) = &parsed {
            assert!(hello.sni.as_ref().is_none_or(|s| s.len() < rest.len()), "a server name longer than the datagrams");
        }
        decided |= !matches!(parsed, Parse::Partial);
    }
}
