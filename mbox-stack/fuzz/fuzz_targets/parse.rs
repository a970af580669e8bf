//! The header parser on arbitrary bytes, every link type, any wire length: it must return a
//! result (a parse or a counted error), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mbox_stack::wire::{parse_frame, LinkType, ParseOptions};

const LINKS: [LinkType; 7] =
    [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Ipv4, LinkType::Ipv6, LinkType::Null];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else { return };
    let link = LINKS[usize::from(selector % 7)];
    let decap = selector & 0x80 != 0;
    let wire = data.len() as u32 + u32::from(selector >> 3);
    if let Ok(mbox_stack::wire::Packet::Ip(p)) = parse_frame(data, wire, link, ParseOptions { decap_tunnels: decap }) {
        // Offsets the parser reports never run backwards.
        assert!(p.l3_offset <= p.l4_offset && p.l4_offset <= p.payload_offset);
    }
});
