//! The whole stack (parsing, fragments, flows, TCP monitor with reassembly) on arbitrary packet
//! sequences: flows that start end, kept segments are let go, nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mbox_abi::TcpSnapshot;
use mbox_stack::flow_table::{FlowEntry, FlowTable, Timeouts};
use mbox_stack::l23::{L23Stack, StackConfig, StackPacket, StackSink};
use mbox_stack::tcp::stream::StreamLimits;
use mbox_stack::tcp::Depth;
use mbox_stack::wire::{LinkType, ParseOptions};

#[derive(Default)]
struct Counter {
    started: u64,
    ended: u64,
    kept: i64,
}

impl StackSink for Counter {
    fn has_room(&self, _events: usize) -> bool {
        true
    }
    fn flow_started(&mut self, _: &FlowEntry, _: u32, _: u64) {
        self.started += 1;
    }
    fn flow_ended(&mut self, _: &FlowEntry, _: u32, _: u8, _: u64, _: Option<&TcpSnapshot>) {
        self.ended += 1;
    }
    fn packet(&mut self, _: &StackPacket<'_>, _: &FlowTable) {}
    fn keep(&mut self) -> Option<u32> {
        self.kept += 1;
        Some(0)
    }
    fn unkeep(&mut self, _: u32) {
        self.kept -= 1;
    }
}

fuzz_target!(|input: &[u8]| {
    let mut stack = L23Stack::new(
        StackConfig {
            flow_slots: 8,
            timeouts: Timeouts { tcp_open_ns: 1000, tcp_closed_ns: 10, udp_ns: 100, other_ns: 100 },
            vlan_in_key: true,
            parse: ParseOptions::default(),
            max_fragmented_datagrams: 2,
            fragment_timeout_ns: 100,
            tcp: Some(Depth::Reassembly),
            stream_limits: StreamLimits { max_kept: 4, max_distance: 1 << 20 },
            verify_tcp_checksums: false,
        },
        0,
    );
    let mut sink = Counter::default();
    // Packets are length-prefixed (one byte); the byte after the prefix picks the link type.
    let mut rest = input;
    let mut ts = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (pkt, after) = tail.split_at(n);
        rest = after;
        let Some((&sel, bytes)) = pkt.split_first() else { continue };
        let link = if sel & 1 == 0 { LinkType::Ethernet } else { LinkType::RawIp };
        ts += u64::from(sel) * 7;
        let _ = stack.process(bytes, link, bytes.len() as u32, ts, &mut sink);
    }
    assert!(stack.drain(&mut sink));
    assert_eq!(sink.started, sink.ended);
    assert_eq!(sink.kept, 0);
});
