//! The stack per packet, module by module: header parsing alone; the L2/3 µStack (parsing,
//! flow lookup/creation, counters, expiry); plus TCP state tracking; plus stream reassembly
//! (the stack reporting into a sink that does nothing but keep packets it is asked to).
//!
//! Inputs: every packet of the bundled real captures (testdata/pcaps, 56k packets), and
//! generated HTTP-like conversations. `cargo bench -p mbox-core --bench l23_stack`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mbox_abi::TcpSnapshot;
use mbox_core::io::capture::read_all;
use mbox_core::io::generator::{Generator, GeneratorConfig};
use mbox_stack::flow_table::{FlowEntry, FlowTable};
use mbox_stack::l23::{L23Stack, StackConfig, StackPacket, StackSink, StreamContext};
use mbox_stack::tcp::stream::{Source, StreamLimits};
use mbox_stack::tcp::Depth;
use mbox_stack::wire::{parse_frame, LinkType, ParseOptions};
use std::hint::black_box;
use std::path::Path;

struct Packet {
    link: LinkType,
    wire_len: u32,
    ts_ns: u64,
    bytes: Vec<u8>,
}

fn real_captures() -> Vec<Packet> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcaps");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        for (meta, bytes) in read_all(&path).unwrap() {
            out.push(Packet { link: meta.link, wire_len: meta.wire_len, ts_ns: meta.ts_ns, bytes });
        }
    }
    out
}

fn generated() -> Vec<Packet> {
    let mut g = Generator::new(GeneratorConfig { flows: 2000, udp_flows: 200, checksums: false, ..Default::default() });
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(ts_ns) = g.next_packet(&mut buf) {
        out.push(Packet { link: LinkType::Ethernet, wire_len: buf.len() as u32, ts_ns, bytes: buf.clone() });
    }
    out
}

/// Accepts every report and touches what an event would carry.
struct NullSink(u64);

impl StackSink for NullSink {
    fn has_room(&self, _events: usize) -> bool {
        true
    }
    fn flow_started(&mut self, flow: &FlowEntry, _slot: u32, _ts: u64) {
        self.0 += flow.id;
    }
    fn flow_ended(&mut self, flow: &FlowEntry, _slot: u32, _reason: u8, _ts: u64, _tcp: Option<&TcpSnapshot>) {
        self.0 += flow.stats[0].pkts;
    }
    fn packet(&mut self, pkt: &StackPacket<'_>, _flows: &FlowTable) {
        self.0 += u64::from(pkt.wire_len);
    }
    fn keep(&mut self) -> Option<u32> {
        Some(0) // the host holds the packet (a refcount); nothing is copied
    }
    fn stream_data(&mut self, _ctx: &StreamContext<'_>, _dir: u8, offset: u64, len: u32, _source: Source) {
        self.0 += offset + u64::from(len);
    }
}

fn stack(tcp: Option<Depth>) -> L23Stack {
    let flow = mbox_core::config::FlowConfig::default();
    L23Stack::new(
        StackConfig {
            flow_slots: 65_536,
            timeouts: flow.timeouts(),
            vlan_in_key: true,
            parse: ParseOptions::default(),
            max_fragmented_datagrams: 256,
            fragment_timeout_ns: 30_000_000_000,
            tcp,
            stream_limits: StreamLimits::default(),
            verify_tcp_checksums: false,
            midstream_client: Default::default(),
        },
        0,
    )
}

fn bench(c: &mut Criterion) {
    for (name, packets) in [("captures", real_captures()), ("generated", generated())] {
        let mut group = c.benchmark_group(format!("l23/{name}"));
        group.throughput(Throughput::Elements(packets.len() as u64));
        group.bench_function("parse", |b| {
            b.iter(|| {
                for p in &packets {
                    let _ = black_box(parse_frame(&p.bytes, p.wire_len, p.link, ParseOptions::default()));
                }
            })
        });
        for (module, tcp) in [("stack", None), ("stack+tcp_state", Some(Depth::State)), ("stack+tcp_reassembly", Some(Depth::Reassembly))] {
            group.bench_function(module, |b| {
                b.iter_batched(
                    || stack(tcp),
                    |mut s| {
                        let mut sink = NullSink(0);
                        for p in &packets {
                            black_box(s.process(&p.bytes, p.link, p.wire_len, p.ts_ns, &mut sink));
                        }
                        s.drain(&mut sink);
                        black_box(sink.0)
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
