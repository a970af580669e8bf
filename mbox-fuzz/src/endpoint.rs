//! An Endpoint connection driven by arbitrary input: a SYN whose TCP header (options
//! included) is fuzz bytes, then steps — segments from raw TCP headers and payloads, timers,
//! writes, reads, closes, resets — placed around what the connection expects. Whatever
//! arrives: no panic, its invariants hold after every step, bytes are delivered in order
//! once, and a closed connection stays silent. (Moved from mbox-stack/fuzz.)

use mbox_stack::endpoint::{Config, ConnEvent, ConnSink, Connection, Payload, SegmentIn, SegmentOut, State};
use mbox_stack::wire::tcp::{TcpPacket, TcpRepr};

#[derive(Default)]
struct Sink {
    sent: usize,
    received: u64,
    closed: usize,
    last: Option<SegmentOut>,
}

impl ConnSink for Sink {
    fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>) {
        assert_eq!(payload.len(), seg.payload_len as usize);
        self.sent += 1;
        self.last = Some(*seg);
    }
    fn deliver(&mut self, offset: u64, bytes: &[u8]) {
        assert_eq!(offset, self.received, "in order, once");
        self.received += bytes.len() as u64;
    }
    fn event(&mut self, event: ConnEvent) {
        if matches!(event, ConnEvent::Closed(_)) {
            self.closed += 1;
            assert_eq!(self.closed, 1, "closed twice");
        }
    }
}

/// A segment from `bytes` read as a TCP header and payload; `seq` and `ack` moved near what the
/// connection expects by the header's own fields (small offsets either way), so most segments
/// land in or near the window.
fn segment<'a>(bytes: &'a [u8], expect: (u32, u32)) -> Option<SegmentIn<'a>> {
    let packet = TcpPacket::new_checked(bytes).ok()?;
    let repr = TcpRepr::parse(&packet).ok()?;
    let near = |base: u32, field: u32| base.wrapping_add((field as i32 >> 16) as u32);
    Some(SegmentIn {
        seq: near(expect.0, repr.seq),
        ack: near(expect.1, repr.ack),
        flags: repr.flags & 0x3f,
        window: repr.window,
        options: repr.options,
        payload: &bytes[packet.header_len()..],
    })
}

/// Input: the SYN's header length (one byte) and header, then steps: an opcode byte (`% 6`:
/// 0-1 a segment, with its length byte and bytes; 2 the clock moves and timers run; 3 a write;
/// 4 the application consumes; 5 a close, or an abort when `& 0x80`).
pub fn fuzz_endpoint(input: &[u8]) {
    let Some((&syn_len, rest)) = input.split_first() else { return };
    let (syn_bytes, mut rest) = rest.split_at(usize::from(syn_len).min(rest.len()));
    let cfg = Config { send_buffer: 8192, recv_window: 16_384, ..Config::default() };
    let mut sink = Sink::default();
    let Some(mut syn) = segment(syn_bytes, (1000, 0)) else { return };
    syn.flags = mbox_stack::wire::tcp_flags::SYN;
    syn.payload = &[];
    let mut c = Connection::accept(&cfg, &syn, 0xffff_ff00, 0, &mut sink);
    let data = [0x42u8; 20_000];
    let mut now = 1_000_000u64;
    let (mut rcv, mut snd) = (syn.seq.wrapping_add(1), 0xffff_ff01u32);
    while let Some((&op, tail)) = rest.split_first() {
        let was_closed = c.state() == State::Closed;
        let sent_before = sink.sent;
        rest = tail;
        match op % 6 {
            0 | 1 => {
                let Some((&len, tail)) = rest.split_first() else { break };
                let (bytes, tail) = tail.split_at(usize::from(len).min(tail.len()));
                rest = tail;
                if let Some(seg) = segment(bytes, (rcv, snd)) {
                    c.on_segment(&seg, now, &mut sink);
                }
            }
            2 => {
                now += u64::from(op) * 10_000_000;
                if c.deadline().is_some_and(|d| d <= now) {
                    c.on_timer(now, &mut sink);
                }
            }
            3 => {
                c.write(&data[..(usize::from(op) * 80).min(data.len())], now, &mut sink);
            }
            4 => c.consumed(u64::from(op) * 100, now, &mut sink),
            _ => {
                if op & 0x80 != 0 {
                    c.abort(&mut sink);
                } else {
                    c.close(now, &mut sink);
                }
            }
        }
        if let Err(e) = c.check_invariants() {
            panic!("{e}");
        }
        if was_closed {
            assert_eq!(sink.sent, sent_before, "a closed connection sent something");
        }
        if let Some(last) = sink.last {
            rcv = last.ack;
            snd = last.seq.wrapping_add(last.payload_len);
        }
    }
}
