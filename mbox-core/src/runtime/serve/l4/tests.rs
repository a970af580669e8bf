//! The L4 NAT on a shard, packet by packet: every frame it sends or rewrites is compared with
//! the frame built from scratch (checksums in full) with the tuple and MACs it should have.

use super::super::tests::FakeShard;
use super::*;
use crate::runtime::stream_out::{stream_rings, SendCredits, StreamWriter};
use crate::sys::park::Waker;
use mbox_abi::{BindStatus, FlowRef};
use mbox_stack::flow_key::{shard_of, FlowKey};
use mbox_stack::wire::arp::{ArpPacket, ArpRepr, Operation};
use mbox_stack::wire::checksum::{finish, sum};
use mbox_stack::wire::ethernet::{ethertype, EthernetRepr, VlanTags};
use mbox_stack::wire::frame::{IpRepr, TcpFrame};
use mbox_stack::wire::tcp::{TcpOptions, TcpRepr};
use mbox_stack::wire::{parse_frame, LinkType, Packet, ParseOptions};
use std::sync::Arc;

const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc1]);
const BACKEND_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb1]);
const OURS: EthernetAddress = EthernetAddress(super::super::DEFAULT_MAC);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 80);
const SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 21);
const SEC: u64 = 1_000_000_000;

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn client(n: u16) -> SocketAddrV4 {
    sa(Ipv4Addr::new(198, 18, 1, 1), 40000 + n)
}

fn backend() -> SocketAddrV4 {
    sa(Ipv4Addr::new(198, 18, 1, 11), 8080)
}

/// A TCP frame with sequence number 1000 (and ACK 2000 where the flag is set), its checksums
/// computed in full.
fn tcp(macs: (EthernetAddress, EthernetAddress), from: SocketAddrV4, to: SocketAddrV4, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_at(macs, from, to, flags, (1000, if flags & ACK != 0 { 2000 } else { 0 }), payload)
}

/// A TCP frame with sequence and acknowledgment numbers `numbers`.
fn tcp_at(
    macs: (EthernetAddress, EthernetAddress),
    from: SocketAddrV4,
    to: SocketAddrV4,
    flags: u8,
    numbers: (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    let ip = IpRepr::new(IpAddr::V4(*from.ip()), IpAddr::V4(*to.ip()), ip_proto::TCP, 0, 64).unwrap();
    let tcp = TcpRepr {
        src_port: from.port(),
        dst_port: to.port(),
        seq: numbers.0,
        ack: numbers.1,
        flags,
        window: 512,
        urgent: 0,
        options: TcpOptions::default(),
        payload_len: payload.len(),
    };
    let frame = TcpFrame { src_mac: macs.0, dst_mac: macs.1, vlan: VlanTags::default(), ip, tcp };
    let mut buf = vec![0; frame.len()];
    let at = frame.payload_offset();
    buf[at..].copy_from_slice(payload);
    frame.emit(&mut buf).unwrap();
    buf
}

/// A UDP frame, its checksums computed in full.
fn udp(macs: (EthernetAddress, EthernetAddress), from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let ip = IpRepr::new(IpAddr::V4(*from.ip()), IpAddr::V4(*to.ip()), ip_proto::UDP, len, 64).unwrap();
    let mut buf = vec![0; 14 + 20 + len];
    let at = VlanTags::default().emit_header(&EthernetRepr { src: macs.0, dst: macs.1, ethertype: ethertype::IPV4 }, &mut buf);
    ip.emit(&mut buf[at..]);
    let u = at + 20;
    buf[u..u + 2].copy_from_slice(&from.port().to_be_bytes());
    buf[u + 2..u + 4].copy_from_slice(&to.port().to_be_bytes());
    buf[u + 4..u + 6].copy_from_slice(&(len as u16).to_be_bytes());
    buf[u + 8..].copy_from_slice(payload);
    let check = finish(ip.pseudo_header() + sum(&buf[u..]));
    buf[u + 6..u + 8].copy_from_slice(&check.to_be_bytes());
    buf
}

fn arp_reply(from: (Ipv4Addr, EthernetAddress), to: Ipv4Addr) -> Vec<u8> {
    let reply = ArpRepr { operation: Operation::Reply, sender_mac: from.1, sender_ip: from.0, target_mac: OURS, target_ip: to };
    let mut buf = vec![0; 14 + reply.buffer_len()];
    let at = VlanTags::default().emit_header(&EthernetRepr { src: from.1, dst: OURS, ethertype: ethertype::ARP }, &mut buf);
    reply.emit(&mut ArpPacket::new_unchecked(&mut buf[at..]));
    buf
}

/// The ARP request a frame is, if it is one: (asked for, asked from).
fn arp_request(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.get(14..)?).ok()?).ok()?;
    (arp.operation == Operation::Request).then_some((arp.target_ip, arp.sender_ip))
}

fn spec(source: Option<Ipv4Addr>, max_connections: usize) -> Arc<[super::super::ServiceSpec]> {
    vec![super::super::ServiceSpec {
        name: "l4".into(),
        addrs: vec![IpAddr::V4(VIP)],
        ports: vec![80, 53],
        mac: None,
        nfs: 0b1,
        endpoint: mbox_stack::endpoint::Config::default(),
        max_connections,
        syn_backlog: max_connections,
        buffer_memory: 1 << 20,
        splicer: None,
        proxy: None,
        l4: Some(L4Spec { source, connect_timeout_ns: 3 * SEC, tcp_idle_ns: 60 * SEC, udp_idle_ns: 10 * SEC, linger_ns: 2 * SEC }),
    }]
    .into()
}

/// A shard's services with one l4 service, an NF's stream writer, and the fake shard.
struct World {
    served: Served,
    shard: FakeShard,
    writer: StreamWriter,
    now: u64,
}

impl World {
    fn new(source: Option<Ipv4Addr>, max_connections: usize) -> World {
        World::with_ports(source, max_connections, Vec::new())
    }

    /// A world whose run has ports with `macs` (two: a pair, a client side and a backend side).
    fn with_ports(source: Option<Ipv4Addr>, max_connections: usize, macs: Vec<[u8; 6]>) -> World {
        let specs = spec(source, max_connections);
        let credits = Arc::new(SendCredits::new(1000, Served::capacity(&specs)));
        let (writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let mut served = Served::new(0, specs, macs, credits, false);
        served.add_reader(reader);
        World { served, shard: FakeShard { room: true, ..FakeShard::default() }, writer, now: SEC }
    }

    /// Offers `frame` (arriving on `port`) and checks the tables after.
    fn take(&mut self, frame: &mut [u8], port: u16) -> Taken {
        let taken = self.served.take(frame, port, self.now, &mut self.shard);
        self.served.check_invariants().unwrap();
        taken
    }

    /// Moves the clock by `dt` and runs a round: requests, timers.
    fn poll(&mut self, dt: u64) {
        self.now += dt;
        self.served.poll(self.now, &mut Vec::new(), &mut self.shard);
        self.served.check_invariants().unwrap();
    }

    /// The flow the `k`th start told the NFs of.
    fn flow(&self, k: usize) -> FlowRef {
        let (slot, id, _) = self.shard.started[k];
        FlowRef { id, slot, shard: 0, dir: 0, _reserved: 0 }
    }

    fn bind(&mut self, k: usize, to: SocketAddrV4) -> BindStatus {
        let flow = self.flow(k);
        let status = self.writer.bind(&flow, SocketAddr::V4(to));
        self.poll(0);
        status
    }

    fn events(&self) -> Vec<(ConnEventKind, u8)> {
        self.shard.events.iter().map(|&(k, _, r)| (k, r)).collect()
    }

    /// Frames sent since the last look, and clears them.
    fn sent(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.shard.frames)
    }
}

#[test]
fn a_tcp_flow_is_offered_bound_and_translated_both_ways_destination_nat() {
    let mut w = World::new(None, 4);
    let vip = sa(VIP, 80);
    let mut syn = tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b"");
    assert_eq!(w.take(&mut syn, 0), Taken::Consumed, "the SYN waits for the bind");
    assert_eq!(w.events(), vec![(ConnEventKind::New, 0)]);
    assert_eq!(w.shard.started[0].2, 0b1, "only the service's NFs see the flow");
    assert_eq!(w.bind(0, backend()), BindStatus::Done);
    // The backend's MAC is asked for from the service's address (no source NAT).
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, arp_request(&sent[0].1)), (1, Some((*backend().ip(), VIP))));
    assert_eq!(w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), VIP), 1), Taken::Consumed);
    // The SYN goes to the backend: destination translated, source the client's.
    assert_eq!(w.sent(), vec![(1, tcp((OURS, BACKEND_MAC), client(1), backend(), SYN, b""))]);
    // The backend answers the client; mbox gives the answer the service's address.
    let mut syn_ack = tcp((BACKEND_MAC, CLIENT_MAC), backend(), client(1), SYN | ACK, b"");
    assert_eq!(w.take(&mut syn_ack, 1), Taken::Forward);
    assert_eq!(syn_ack, tcp((OURS, CLIENT_MAC), vip, client(1), SYN | ACK, b""));
    assert_eq!(w.events(), vec![(ConnEventKind::New, 0), (ConnEventKind::Bound, BIND_CONNECTED)]);
    let mut data = tcp((CLIENT_MAC, OURS), client(1), vip, ACK, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(w.take(&mut data, 0), Taken::Forward);
    assert_eq!(data, tcp((OURS, BACKEND_MAC), client(1), backend(), ACK, b"GET / HTTP/1.1\r\n\r\n"));
    // FINs both ways: the NFs are told at once; the flow lingers for late packets.
    assert_eq!(w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, FIN | ACK, b""), 0), Taken::Forward);
    assert_eq!(w.take(&mut tcp((BACKEND_MAC, CLIENT_MAC), backend(), client(1), FIN | ACK, b""), 1), Taken::Forward);
    assert_eq!(w.events().last(), Some(&(ConnEventKind::Terminate, REASON_FIN)));
    let mut late = tcp((CLIENT_MAC, OURS), client(1), vip, ACK, b"");
    assert_eq!(w.take(&mut late, 0), Taken::Forward, "still translated while it lingers");
    assert_eq!(w.served.connections(), 1);
    w.poll(2 * SEC);
    assert_eq!(w.served.connections(), 0, "gone after time_wait");
    assert_eq!(w.events().iter().filter(|e| e.0 == ConnEventKind::Terminate).count(), 1, "its NFs are told once");
    let s = w.served.stats;
    assert_eq!((s.l4_flows, s.l4_bound, s.l4_to_backend, s.l4_to_client, s.closed), (1, 1, 4, 2, 1));
    // A packet of the flow now is a new flow's first (and a stray RST starts none).
    assert_eq!(w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, RST, b""), 0), Taken::Consumed);
    assert_eq!(w.served.connections(), 0);
}

/// `frame` with an 802.1Q tag of VLAN `id` after its MACs.
fn tagged(frame: &[u8], id: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// The shard the input's software steering gives `frame` (as `io::dispatch` does it).
fn steered(frame: &[u8], shards: usize, vlan_in_key: bool) -> usize {
    let Ok(Packet::Ip(p)) = parse_frame(frame, frame.len() as u32, LinkType::Ethernet, ParseOptions::default()) else {
        panic!("an IP frame")
    };
    shard_of(FlowKey::from_parsed(&p, vlan_in_key).0.shard_hash(), shards)
}

#[test]
fn with_source_nat_the_backend_sees_a_port_that_steers_its_answers_to_the_binding_shard() {
    for (shard_count, vlan) in [(1, None), (2, None), (4, None), (4, Some(100)), (3, Some(7))] {
        let mut w = World::new(Some(SOURCE), 64);
        w.served.set_steering(shard_count, true);
        let tag = |f: Vec<u8>| vlan.map_or(f.clone(), |id| tagged(&f, id));
        // The MAC is known from the first flow on: later binds send at once.
        for n in 0..8u16 {
            let vip = sa(VIP, 80);
            assert_eq!(w.take(&mut tag(tcp((CLIENT_MAC, OURS), client(n), vip, SYN, b"")), 0), Taken::Consumed);
            assert_eq!(w.bind(n as usize, backend()), BindStatus::Done);
            if n == 0 {
                let sent = w.sent();
                assert_eq!(arp_request(&sent[0].1), Some((*backend().ip(), SOURCE)), "asked from the source address");
                assert_eq!(w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), SOURCE), 1), Taken::Consumed);
            }
            let sent = w.sent();
            assert_eq!(sent.len(), 1, "no second ARP request");
            let at = nat::locate(&sent[0].1).unwrap();
            assert_eq!((*at.src.ip(), at.dst), (SOURCE, backend()));
            assert_eq!(sent[0].1, tag(tcp((OURS, BACKEND_MAC), at.src, backend(), SYN, b"")), "the client's tags kept");
            // The backend answers the source address, on the client's VLAN: the input steers
            // the answer to this shard (0), and the client gets the service's address.
            let mut answer = tag(tcp((BACKEND_MAC, OURS), backend(), at.src, SYN | ACK, b""));
            assert_eq!(steered(&answer, shard_count, true), 0, "port {} steers elsewhere", at.src.port());
            assert_eq!(w.take(&mut answer, 1), Taken::Forward);
            assert_eq!(answer, tag(tcp((OURS, CLIENT_MAC), vip, client(n), SYN | ACK, b"")));
        }
        assert_eq!(w.served.stats.arp_requests_sent, 1);
    }
}

#[test]
fn udp_flows_wait_with_their_newest_datagram_and_end_after_silence() {
    let mut w = World::new(None, 4);
    let dns = sa(VIP, 53);
    let to = sa(*backend().ip(), 53);
    assert_eq!(w.take(&mut udp((CLIENT_MAC, OURS), client(1), dns, b"first"), 0), Taken::Consumed);
    assert_eq!(w.take(&mut udp((CLIENT_MAC, OURS), client(1), dns, b"again"), 0), Taken::Consumed);
    assert_eq!(w.served.stats.l4_dropped_before_bind, 1);
    assert_eq!(w.bind(0, to), BindStatus::Done);
    w.sent();
    assert_eq!(w.take(&mut arp_reply((*to.ip(), BACKEND_MAC), VIP), 1), Taken::Consumed);
    assert_eq!(w.sent(), vec![(1, udp((OURS, BACKEND_MAC), client(1), to, b"again"))]);
    let mut answer = udp((BACKEND_MAC, CLIENT_MAC), to, client(1), b"answer");
    assert_eq!(w.take(&mut answer, 1), Taken::Forward);
    assert_eq!(answer, udp((OURS, CLIENT_MAC), dns, client(1), b"answer"));
    // No BOUND for UDP: only the start so far.
    assert_eq!(w.events(), vec![(ConnEventKind::New, 0)]);
    // A datagram 6 s later keeps it: silence is counted from the last one.
    w.poll(6 * SEC);
    assert_eq!(w.take(&mut udp((CLIENT_MAC, OURS), client(1), dns, b"more"), 0), Taken::Forward);
    w.poll(6 * SEC);
    assert_eq!(w.served.connections(), 1, "6 s after its last datagram");
    w.poll(5 * SEC);
    assert_eq!(w.served.connections(), 0);
    assert_eq!(w.events().last(), Some(&(ConnEventKind::Terminate, REASON_TIMEOUT)));
    assert_eq!(w.served.stats.l4_idle_timeouts, 1);
}

#[test]
fn a_bind_that_never_comes_a_refusing_backend_and_a_silent_one_end_the_flow_counted() {
    let vip = sa(VIP, 80);
    // No bind in connect_timeout.
    let mut w = World::new(None, 4);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
    w.poll(3 * SEC);
    assert_eq!(w.events(), vec![(ConnEventKind::New, 0), (ConnEventKind::Terminate, REASON_TIMEOUT)]);
    assert_eq!((w.served.stats.l4_bind_timeouts, w.served.connections()), (1, 0));
    assert_eq!(w.bind(0, backend()), BindStatus::Ended, "a bind for a flow that ended");

    // The backend answers the SYN with a RST: the bind failed, the client gets the RST.
    let mut w = World::new(None, 4);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
    w.bind(0, backend());
    w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), VIP), 1);
    let mut rst = tcp_at((BACKEND_MAC, CLIENT_MAC), backend(), client(1), RST | ACK, (0, 1001), b"");
    assert_eq!(w.take(&mut rst, 1), Taken::Forward);
    assert_eq!(rst, tcp_at((OURS, CLIENT_MAC), vip, client(1), RST | ACK, (0, 1001), b""));
    assert_eq!(&w.events()[1..], [(ConnEventKind::Bound, BIND_REFUSED), (ConnEventKind::Terminate, REASON_RST)]);
    assert_eq!(w.served.stats.backends_refused, 1);

    // A backend that never answers, and one whose MAC nobody gives.
    for (arp, why) in [(true, BIND_TIMED_OUT), (false, BIND_UNRESOLVED)] {
        let mut w = World::new(None, 4);
        w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
        w.bind(0, backend());
        if arp {
            w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), VIP), 1);
        }
        for _ in 0..4 {
            w.poll(SEC);
        }
        assert_eq!(&w.events()[1..], [(ConnEventKind::Bound, why), (ConnEventKind::Terminate, REASON_TIMEOUT)], "arp {arp}");
        assert_eq!(w.served.connections(), 0);
        if !arp {
            let asked = w.sent().iter().filter(|(_, f)| arp_request(f).is_some()).count();
            assert!(asked >= 3, "asked again each second: {asked}");
        }
    }
}

#[test]
fn binds_that_cannot_be_carried_out_and_a_full_table_are_refused_counted() {
    let vip = sa(VIP, 80);
    let mut w = World::new(None, 2);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
    // Another family than the flow's.
    let v6: SocketAddr = "[2001:db8::11]:80".parse().unwrap();
    assert_eq!(w.writer.bind(&w.flow(0), v6), BindStatus::Done);
    w.poll(0);
    assert_eq!(&w.events()[1..], [(ConnEventKind::Bound, BIND_NOT_DONE), (ConnEventKind::Terminate, REASON_TIMEOUT)]);
    assert_eq!(w.served.stats.binds_refused, 1);
    // Two flows fill the table; a third is dropped, counted, and its NFs never hear of it.
    w.take(&mut tcp((CLIENT_MAC, OURS), client(2), vip, SYN, b""), 0);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(3), vip, SYN, b""), 0);
    assert_eq!(w.take(&mut tcp((CLIENT_MAC, OURS), client(4), vip, SYN, b""), 0), Taken::Consumed);
    assert_eq!((w.served.stats.refused_full, w.served.connections(), w.shard.started.len()), (1, 2, 3));
    // A second bind of a bound flow is refused by the NF's own call.
    assert_eq!(w.bind(1, backend()), BindStatus::Done);
    assert_eq!(w.bind(1, backend()), BindStatus::Ended);
}

#[test]
fn fragments_to_a_service_address_are_dropped_counted_others_pass_untouched() {
    let mut w = World::new(None, 4);
    let mut frag = udp((CLIENT_MAC, OURS), client(1), sa(VIP, 53), b"part");
    frag[14 + 6] = 0x20; // more fragments
    assert_eq!(w.take(&mut frag, 0), Taken::Consumed);
    assert_eq!(w.served.stats.l4_fragments_dropped, 1);
    // Neither to a service address nor a bound flow's: the stack handles it as usual.
    let other = udp((CLIENT_MAC, OURS), client(1), sa(Ipv4Addr::new(198, 18, 1, 2), 53), b"x");
    let mut copy = other.clone();
    assert_eq!(w.take(&mut copy, 0), Taken::No);
    assert_eq!(copy, other);
    // A port the service does not serve is not the l4 service's either.
    assert_eq!(w.take(&mut udp((CLIENT_MAC, OURS), client(1), sa(VIP, 5000), b"x"), 0), Taken::No);
    assert_eq!(w.served.stats.l4_flows, 0);
}

#[test]
fn a_full_table_makes_room_by_ending_its_oldest_lingering_flow() {
    let vip = sa(VIP, 80);
    let mut w = World::new(None, 2);
    // Two flows fill the table; the first closes (FINs both ways) and lingers.
    for n in 1..=2 {
        w.take(&mut tcp((CLIENT_MAC, OURS), client(n), vip, SYN, b""), 0);
        w.bind(usize::from(n - 1), backend());
    }
    w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), VIP), 1);
    w.take(&mut tcp((BACKEND_MAC, CLIENT_MAC), backend(), client(1), SYN | ACK, b""), 1);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, FIN | ACK, b""), 0);
    w.take(&mut tcp((BACKEND_MAC, CLIENT_MAC), backend(), client(1), FIN | ACK, b""), 1);
    let terminated = |w: &World| w.events().iter().filter(|e| e.0 == ConnEventKind::Terminate).count();
    assert_eq!((w.served.connections(), terminated(&w)), (2, 1));
    // A third client: the lingering flow makes room (its NFs were told already), the open one stays.
    assert_eq!(w.take(&mut tcp((CLIENT_MAC, OURS), client(3), vip, SYN, b""), 0), Taken::Consumed);
    let s = w.served.stats;
    assert_eq!((s.refused_full, s.time_wait_recycled, s.closed), (0, 1, 1));
    assert_eq!((w.served.connections(), w.shard.started.len(), terminated(&w)), (2, 3, 1));
    let mut late = tcp((CLIENT_MAC, OURS), client(2), vip, ACK, b"");
    assert_eq!(w.take(&mut late, 0), Taken::Forward, "the second flow is kept, still translated");
    // No flow lingers now: a fourth is refused, counted.
    assert_eq!(w.take(&mut tcp((CLIENT_MAC, OURS), client(4), vip, SYN, b""), 0), Taken::Consumed);
    assert_eq!((w.served.stats.refused_full, w.shard.started.len()), (1, 3));
}

#[test]
fn a_new_syn_on_a_lingering_flows_tuple_starts_a_new_flow() {
    let mut w = World::new(None, 4);
    let vip = sa(VIP, 80);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
    w.bind(0, backend());
    w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), VIP), 1);
    w.take(&mut tcp_at((BACKEND_MAC, CLIENT_MAC), backend(), client(1), SYN | ACK, (5000, 1001), b""), 1);
    w.take(&mut tcp_at((CLIENT_MAC, OURS), client(1), vip, RST, (1001, 0), b""), 0);
    assert_eq!(w.events().last(), Some(&(ConnEventKind::Terminate, REASON_RST)));
    assert_eq!(w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0), Taken::Consumed);
    assert_eq!(w.shard.started.len(), 2, "a second flow");
    assert_eq!(w.events().iter().filter(|e| e.0 == ConnEventKind::Terminate).count(), 1, "the first was told once");
    assert_eq!(w.bind(1, backend()), BindStatus::Done);
    assert_eq!(w.sent().last().map(|f| f.1.clone()), Some(tcp((OURS, BACKEND_MAC), client(1), backend(), SYN, b"")));
    assert_eq!(w.served.stats.aborted, 1);
}

#[test]
fn a_backends_mac_one_shard_learns_reaches_the_flows_waiting_on_another() {
    let (mut zero, mut one) = (World::new(Some(SOURCE), 4), World::new(Some(SOURCE), 4));
    let shared = super::super::Neighbors::new();
    zero.served.share_neighbors(shared.clone());
    one.served.share_neighbors(shared);
    let vip = sa(VIP, 80);
    one.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
    one.bind(0, backend());
    assert!(arp_request(&one.sent()[0].1).is_some());
    // The reply is steered to the other shard.
    assert_eq!(zero.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), SOURCE), 1), Taken::Consumed);
    assert!(one.sent().is_empty(), "nothing until the shard looks");
    one.poll(0);
    let sent = one.sent();
    assert_eq!(sent.len(), 1);
    let at = nat::locate(&sent[0].1).unwrap();
    assert_eq!(sent[0].1, tcp((OURS, BACKEND_MAC), at.src, backend(), SYN, b""));
}

#[test]
fn forged_resets_and_packets_from_the_wrong_side_leave_a_flow_as_it_is() {
    // Ports in a pair: clients on 0, backends on 1.
    let mut w = World::with_ports(Some(SOURCE), 4, vec![super::super::DEFAULT_MAC; 2]);
    let vip = sa(VIP, 80);
    w.take(&mut tcp_at((CLIENT_MAC, OURS), client(1), vip, SYN, (1000, 0), b""), 0);
    w.bind(0, backend());
    w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), SOURCE), 1);
    let from = nat::locate(&w.sent().pop().unwrap().1).unwrap().src;
    // The backend's RST for another SYN than the client's (its ACK is not ISN + 1): sent on for
    // the client to judge, but the bind has not failed.
    let mut stray = tcp_at((BACKEND_MAC, OURS), backend(), from, RST | ACK, (0, 77), b"");
    assert_eq!(w.take(&mut stray, 1), Taken::Forward);
    assert_eq!(w.served.stats.backends_refused, 0);
    w.take(&mut tcp_at((BACKEND_MAC, OURS), backend(), from, SYN | ACK, (5000, 1001), b""), 1);
    w.take(&mut tcp_at((CLIENT_MAC, OURS), client(1), vip, ACK, (1001, 5001), b"GET /"), 0);
    w.take(&mut tcp_at((BACKEND_MAC, OURS), backend(), from, ACK, (5001, 1006), b""), 1);
    assert_eq!(w.events(), vec![(ConnEventKind::New, 0), (ConnEventKind::Bound, BIND_CONNECTED)]);

    // RSTs far from where their receivers' last ACKs point: sent on, the flow stays.
    let mut forged = tcp_at((CLIENT_MAC, OURS), client(1), vip, RST, (0x8000_0000, 0), b"");
    assert_eq!(w.take(&mut forged, 0), Taken::Forward);
    let mut forged = tcp_at((BACKEND_MAC, OURS), backend(), from, RST, (5001 + (64 << 20), 0), b"");
    assert_eq!(w.take(&mut forged, 1), Taken::Forward);
    assert_eq!(w.served.stats.l4_rsts_out_of_window, 3);
    // The backend side's key from the clients' port (a client that guessed the port), and the
    // client's from the backends': not translated, dropped.
    let mut spoofed = tcp_at((CLIENT_MAC, OURS), backend(), from, RST, (5001, 0), b"");
    assert_eq!(w.take(&mut spoofed, 0), Taken::Consumed);
    let mut looped = tcp_at((BACKEND_MAC, OURS), client(1), vip, RST, (1006, 0), b"");
    assert_eq!(w.take(&mut looped, 1), Taken::Consumed);
    assert_eq!(w.served.stats.l4_wrong_port, 2);
    assert_eq!(w.events().len(), 2, "the flow goes on");
    assert_eq!(w.served.connections(), 1);

    // The client's real RST, where the backend's ACK points: the flow ends.
    assert_eq!(w.take(&mut tcp_at((CLIENT_MAC, OURS), client(1), vip, RST, (1006, 0), b""), 0), Taken::Forward);
    assert_eq!(w.events().last(), Some(&(ConnEventKind::Terminate, REASON_RST)));
}

#[test]
fn only_arp_replies_to_what_mbox_asked_give_a_backends_mac() {
    let mut w = World::with_ports(Some(SOURCE), 4, vec![super::super::DEFAULT_MAC; 2]);
    let vip = sa(VIP, 80);
    // Unasked, and asked but on the clients' port: neither is taken.
    assert_eq!(w.take(&mut arp_reply((*backend().ip(), EthernetAddress([2, 0, 0, 0, 0, 0x66])), SOURCE), 1), Taken::Consumed);
    w.take(&mut tcp((CLIENT_MAC, OURS), client(1), vip, SYN, b""), 0);
    w.bind(0, backend());
    assert_eq!(w.sent().iter().filter(|(port, f)| *port == 1 && arp_request(f).is_some()).count(), 1, "asked on the backends' port");
    w.take(&mut arp_reply((*backend().ip(), EthernetAddress([2, 0, 0, 0, 0, 0x66])), SOURCE), 0);
    assert_eq!(w.served.stats.arp_replies_unasked, 2);
    assert!(w.sent().is_empty(), "the SYN still waits");
    w.take(&mut arp_reply((*backend().ip(), BACKEND_MAC), SOURCE), 1);
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    let at = nat::locate(&sent[0].1).unwrap();
    assert_eq!(sent[0].1, tcp((OURS, BACKEND_MAC), at.src, backend(), SYN, b""));
    assert_eq!(w.served.stats.arp_replies_taken, 1);
}

#[test]
fn what_comes_to_source_nats_address_untranslatable_is_dropped_counted() {
    let mut w = World::new(Some(SOURCE), 4);
    let mut frag = udp((BACKEND_MAC, OURS), backend(), sa(SOURCE, 5000), b"part");
    frag[14 + 6] = 0x20; // more fragments
    assert_eq!(w.take(&mut frag, 1), Taken::Consumed);
    let mut icmp = udp((BACKEND_MAC, OURS), backend(), sa(SOURCE, 5000), b"ping");
    icmp[14 + 9] = 1; // ICMP
    assert_eq!(w.take(&mut icmp, 1), Taken::Consumed);
    assert_eq!((w.served.stats.l4_fragments_dropped, w.served.stats.l4_untranslated), (1, 1));
}
