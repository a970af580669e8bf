//! The Splicer's frame rewrite on arbitrary bytes with an arbitrary rewrite (the first 55
//! input bytes: family, addresses, ports, the four offsets, window shifts, SACK on or off;
//! the rest is the frame). Whatever arrives: no panic; an error leaves the frame as it was;
//! a frame spliced still parses as a TCP frame, its checksums still verify if they did, and
//! the inverse rewrite gives the original bytes back (where the window was not rounded, and
//! no checksum was the 0xffff that a rewrite writes as the 0x0000 it equals).

use mbox_stack::splicer::{Addrs, Rewrite, Tuple, WindowRescale};
use mbox_stack::wire::frame::{Checksums, TcpFrame};
use mbox_stack::wire::tcp_flags::SYN;
use std::net::{Ipv4Addr, Ipv6Addr};

const MAP_LEN: usize = 55;

fn rewrite(m: &[u8], v6: bool) -> Rewrite {
    let b16 = |at: usize| -> [u8; 16] { m[at..at + 16].try_into().unwrap() };
    let addrs = if v6 {
        Addrs::V6 { src: Ipv6Addr::from(b16(1)), dst: Ipv6Addr::from(b16(17)) }
    } else {
        Addrs::V4 { src: Ipv4Addr::new(m[1], m[2], m[3], m[4]), dst: Ipv4Addr::new(m[17], m[18], m[19], m[20]) }
    };
    let u16_at = |at: usize| u16::from_be_bytes([m[at], m[at + 1]]);
    let u32_at = |at: usize| u32::from_be_bytes(m[at..at + 4].try_into().unwrap());
    Rewrite {
        tuple: Tuple { addrs, src_port: u16_at(33), dst_port: u16_at(35) },
        seq_delta: u32_at(37),
        ack_delta: u32_at(41),
        ts_val_delta: u32_at(45),
        ts_ecr_delta: u32_at(49),
        window: WindowRescale::new(m[53], m[54]),
        shift_sack: m[0] & 2 != 0,
    }
}

/// The frame's tuple, flags, window and where its IP header starts, when it parses.
fn facts(frame: &[u8]) -> Option<(Tuple, u8, u16, usize)> {
    let (f, _) = TcpFrame::parse(frame, Checksums::Trust).ok()?;
    let tuple = Tuple { addrs: Addrs::new(f.ip.src(), f.ip.dst()).ok()?, src_port: f.tcp.src_port, dst_port: f.tcp.dst_port };
    Some((tuple, f.tcp.flags, f.tcp.window, f.l2_len()))
}

fn get16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// The target: the first 55 bytes a rewrite, the rest a frame.
pub fn fuzz_splice(input: &[u8]) {
    if input.len() < MAP_LEN {
        return;
    }
    let (m, frame) = input.split_at(MAP_LEN);
    // Mostly the frame's own family (bit 0 flips it), so that most rewrites get past it.
    let frame_v6 = [12, 16, 20].iter().any(|&at| frame.get(at..at + 2) == Some(&[0x86, 0xdd][..]));
    let rw = rewrite(m, frame_v6 ^ (m[0] & 1 != 0));
    let mut bytes = frame.to_vec();
    let verified = TcpFrame::parse(frame, Checksums::Verify).is_ok();
    let before = facts(frame);
    match rw.apply(&mut bytes) {
        Err(_) => assert_eq!(bytes, frame, "an error leaves the frame as it was"),
        Ok(done) => {
            let (f, payload) = TcpFrame::parse(&bytes, Checksums::Trust).expect("a spliced frame parses");
            assert_eq!((f.tcp.seq, f.tcp.flags, payload.len()), (done.seq, done.flags, done.payload_len));
            assert!(!verified || TcpFrame::parse(&bytes, Checksums::Verify).is_ok(), "checksums that verified still do");
            let (original, flags, window, l3) = before.expect("what splices parses");
            let exact = flags & SYN != 0 || rw.window.inverse().apply(rw.window.apply(window)) == window;
            let ipv4 = matches!(original.addrs, Addrs::V4 { .. });
            let has_ffff = get16(frame, done.tcp_offset + 16) == 0xffff || (ipv4 && get16(frame, l3 + 10) == 0xffff);
            rw.inverse(original).apply(&mut bytes).expect("the inverse applies");
            if exact && !has_ffff {
                assert_eq!(bytes, frame, "the inverse gives the original back");
            }
        }
    }
}
