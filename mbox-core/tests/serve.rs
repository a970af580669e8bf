//! `[[service]]` offline: what mbox answers itself goes to the `[output]` pcap (ARP replies,
//! the Endpoint's SYN-ACKs, on the VLAN a SYN came from, and RSTs) beside what it forwards, and a service naming an NF the
//! config lacks is refused. (Live clients are served in `testbed.rs`.)

mod common;

use common::{toml_path, try_run_toml};
use mbox_core::io::capture::{CaptureReader, PcapWriter};
use mbox_stack::wire::arp::{ArpPacket, ArpRepr, Operation};
use mbox_stack::wire::ethernet::{ethertype, EthernetAddress, EthernetFrame, EthernetRepr, VlanTags, HEADER_LEN};
use mbox_stack::wire::frame::{Checksums, IpRepr, TcpFrame};
use mbox_stack::wire::tcp::{TcpOptions, TcpRepr};
use mbox_stack::wire::tcp_flags::{ACK, RST, SYN};
use mbox_stack::wire::{ip_proto, LinkType};
use std::net::{IpAddr, Ipv4Addr};

const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc1]);
const SERVICE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x50]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVICE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 80);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn syn(dst: Ipv4Addr, dst_port: u16, src_port: u16) -> Vec<u8> {
    tagged_syn(dst, dst_port, src_port, VlanTags::NONE)
}

fn tagged_syn(dst: Ipv4Addr, dst_port: u16, src_port: u16, vlan: VlanTags) -> Vec<u8> {
    let frame = TcpFrame {
        src_mac: CLIENT_MAC,
        dst_mac: SERVICE_MAC,
        vlan,
        ip: IpRepr::new(IpAddr::V4(CLIENT), IpAddr::V4(dst), ip_proto::TCP, 0, 64).unwrap(),
        tcp: TcpRepr {
            src_port,
            dst_port,
            seq: 1000,
            ack: 0,
            flags: SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions { mss: Some(1460), sack_permitted: true, window_scale: Some(7), ..TcpOptions::default() },
            payload_len: 0,
        },
    };
    let mut buf = vec![0; frame.len()];
    frame.emit(&mut buf).unwrap();
    buf
}

fn arp_request() -> Vec<u8> {
    let arp = ArpRepr {
        operation: Operation::Request,
        sender_mac: CLIENT_MAC,
        sender_ip: CLIENT,
        target_mac: EthernetAddress([0; 6]),
        target_ip: SERVICE,
    };
    let mut buf = vec![0; HEADER_LEN + arp.buffer_len()];
    EthernetRepr { src: CLIENT_MAC, dst: EthernetAddress::BROADCAST, ethertype: ethertype::ARP }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[HEADER_LEN..]));
    buf
}

#[test]
fn answers_go_to_the_output_pcap_beside_what_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.pcap"), dir.path().join("out.pcap"));
    let mut w = PcapWriter::create(&input, LinkType::Ethernet).unwrap();
    let vlan = VlanTags::new(&[(ethertype::VLAN, 42)]).unwrap();
    let frames =
        [arp_request(), syn(SERVICE, 80, 40000), syn(SERVICE, 81, 40001), syn(ELSEWHERE, 80, 40002), tagged_syn(SERVICE, 80, 40003, vlan)];
    for (i, f) in frames.iter().enumerate() {
        w.write(1_000_000_000 + i as u64 * 1000, f.len() as u32, f).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let report = try_run_toml(&format!(
        "[input]\npcap = {}\n[output]\npcap = {}\n[[nf]]\nplugin = \"flow-stats\"\n\
         [[service]]\naddress = \"{SERVICE}\"\nport = 80\nnfs = [\"flow-stats\"]\nmac = \"02:00:00:00:00:50\"\n",
        toml_path(&input),
        toml_path(&output)
    ))
    .unwrap();
    let served = report.shards[0].serve.expect("the shard serves");
    assert_eq!((served.arp_replies, served.accepted, served.resets_sent), (1, 2, 1));
    assert_eq!(report.shards[0].forwarded, 1, "only the SYN to another address is forwarded");

    let mut reader = CaptureReader::open(&output).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while reader.next_packet(&mut buf).unwrap().is_some() {
        out.push(buf.clone());
    }
    assert_eq!(out.len(), 5, "the ARP reply, two SYN-ACKs, the RST and the forwarded SYN");
    let arp_reply = out.iter().find(|f| f[12..14] == ethertype::ARP.to_be_bytes()).expect("an ARP reply");
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&arp_reply[HEADER_LEN..]).unwrap()).unwrap();
    assert_eq!((arp.operation, arp.sender_mac, arp.sender_ip, arp.target_ip), (Operation::Reply, SERVICE_MAC, SERVICE, CLIENT));
    let tcp: Vec<TcpFrame> = out.iter().filter_map(|f| TcpFrame::parse(f, Checksums::Verify).ok()).map(|(t, _)| t).collect();
    let syn_ack = tcp.iter().find(|t| t.tcp.flags == SYN | ACK && t.tcp.dst_port == 40000).expect("a SYN-ACK, checksums right");
    assert_eq!(syn_ack.vlan, VlanTags::NONE);
    let tagged = tcp.iter().find(|t| t.tcp.flags == SYN | ACK && t.tcp.dst_port == 40003).expect("the tagged SYN's SYN-ACK");
    assert_eq!(tagged.vlan, vlan, "on the VLAN the SYN came from");
    assert_eq!((syn_ack.tcp.src_port, syn_ack.tcp.dst_port, syn_ack.tcp.ack), (80, 40000, 1001));
    assert_eq!((syn_ack.src_mac, syn_ack.dst_mac), (SERVICE_MAC, CLIENT_MAC));
    assert!(syn_ack.tcp.options.mss.is_some() && syn_ack.tcp.options.sack_permitted && syn_ack.tcp.options.window_scale.is_some());
    let rst = tcp.iter().find(|t| t.tcp.flags & RST != 0).expect("a RST for the port not served");
    assert_eq!((rst.tcp.src_port, rst.tcp.ack), (81, 1001));
    assert!(tcp.iter().any(|t| t.tcp.flags == SYN && t.ip.dst() == IpAddr::V4(ELSEWHERE)), "forwarded as it came");
}

#[test]
fn a_service_must_name_nfs_of_the_config() {
    let e = try_run_toml(
        "[input]\npcap = \"nope.pcap\"\n[[nf]]\nplugin = \"flow-stats\"\n[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"web\"]\n",
    )
    .unwrap_err();
    assert!(e.contains("[[service]] 198.18.0.80:80 nfs") && e.contains("`web` is not an [[nf]]") && e.contains("flow-stats"), "{e}");
}

#[test]
fn a_service_lists_its_nfs_in_the_order_they_run() {
    // A cache listed before the balancer it must come first for, but whose [[nf]] table is
    // after it: refused, naming both, rather than run the other way round.
    let nfs =
        "[input]\npcap = \"nope.pcap\"\n[[nf]]\nname = \"lb\"\nplugin = \"l7-lb\"\n[[nf]]\nname = \"cache\"\nplugin = \"http-cache\"\n";
    let service = "[[service]]\naddress = \"198.18.0.80\"\nport = 80\nstack = \"splicer\"\nsource = \"198.18.1.20\"\n";
    let e = try_run_toml(&format!("{nfs}{service}nfs = [\"cache\", \"lb\"]\n")).unwrap_err();
    assert!(e.contains("`lb` is listed after `cache` but runs before it") && e.contains("[[nf]] table"), "{e}");
    let e = try_run_toml(&format!("{nfs}{service}nfs = [\"lb\", \"lb\"]\n")).unwrap_err();
    assert!(e.contains("`lb` is listed twice"), "{e}");
    // In their order, the config goes on (to the missing capture).
    let e = try_run_toml(&format!("{nfs}{service}nfs = [\"lb\", \"cache\"]\n")).unwrap_err();
    assert!(!e.contains("nfs") && e.contains("nope.pcap"), "{e}");
}
