//! The L4 load balancer's address translation (`mbox_stack::nat`) on arbitrary frames with an
//! arbitrary new tuple (the first 12 input bytes: source address and port, destination
//! address and port; the rest is the frame). Whatever arrives: `locate` errs or finds a
//! tuple, never panics; a rewrite writes only the tuple and the two checksums; the frame then
//! locates to the new tuple with the same protocol and flags; a checksum that verified still
//! verifies; and the inverse rewrite gives the original tuple and checksum validity back.

use mbox_stack::nat::{locate, rewrite, Located};
use mbox_stack::wire::checksum::{pseudo_header_v4, sum, verifies};
use mbox_stack::wire::ip_proto;
use std::net::{Ipv4Addr, SocketAddrV4};

const TUPLE_LEN: usize = 12;

fn addr(b: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_be_bytes([b[4], b[5]]))
}

/// Whether the IPv4 header's checksum and the TCP or UDP checksum verify (`None` for a UDP
/// datagram sent without one, or a segment cut short of its IP length).
fn checks(frame: &[u8], at: &Located) -> (bool, Option<bool>) {
    let (l3, l4) = (at.l3_offset(), at.l4_offset());
    let ip = verifies(sum(&frame[l3..l4]));
    let end = l3 + usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    let Some(segment) = frame.get(l4..end) else { return (ip, None) };
    if at.proto == ip_proto::UDP && segment[6..8] == [0, 0] {
        return (ip, None);
    }
    let pseudo = pseudo_header_v4(*at.src.ip(), *at.dst.ip(), at.proto, segment.len() as u32);
    (ip, Some(verifies(pseudo + sum(segment))))
}

/// The byte offsets a rewrite may write: addresses, ports and the two checksums.
fn writable(at: &Located) -> impl Fn(usize) -> bool {
    let (l3, l4) = (at.l3_offset(), at.l4_offset());
    let l4_check = l4 + if at.proto == ip_proto::TCP { 16 } else { 6 };
    // The IPv4 checksum and both addresses are contiguous (bytes 10 to 19).
    move |i| (l3 + 10..l3 + 20).contains(&i) || (l4..l4 + 4).contains(&i) || (l4_check..l4_check + 2).contains(&i)
}

/// The target: a new tuple, then a frame.
pub fn fuzz_nat(input: &[u8]) {
    if input.len() < TUPLE_LEN {
        return;
    }
    let (tuple, frame) = input.split_at(TUPLE_LEN);
    let (src, dst) = (addr(&tuple[..6]), addr(&tuple[6..]));
    let Ok(at) = locate(frame) else { return };
    let before = checks(frame, &at);
    let mut bytes = frame.to_vec();
    rewrite(&mut bytes, &at, src, dst);
    let may_write = writable(&at);
    for (i, (a, b)) in frame.iter().zip(&bytes).enumerate() {
        assert!(a == b || may_write(i), "byte {i} changed outside the tuple and checksums");
    }
    let after = locate(&bytes).expect("a translated frame still locates");
    assert_eq!((after.proto, after.src, after.dst, after.tcp_flags), (at.proto, src, dst, at.tcp_flags));
    let now = checks(&bytes, &after);
    assert!(!before.0 || now.0, "the IP checksum verified and no longer does");
    if before.1 == Some(true) {
        assert_eq!(now.1, Some(true), "the {} checksum verified and no longer does", at.proto);
    }
    // And back: the original tuple, and each checksum as valid as it was.
    rewrite(&mut bytes, &after, at.src, at.dst);
    let back = locate(&bytes).expect("translated back, it still locates");
    assert_eq!((back.src, back.dst), (at.src, at.dst));
    assert_eq!(checks(&bytes, &back), before, "translated back, the checksums verify as they did");
}
