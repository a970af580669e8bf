//! QUIC on the bundled captures: the server name of each connection's first flight (IETF QUIC
//! Initial packets decrypted per RFC 9001, Google QUIC's cleartext hello), against nDPI's
//! reference (testdata/pcaps/EXPECTED-ndpi.tsv, `hostname_sni` of its QUIC flows): as
//! mbox-proto reads it, and as dpi publishes it in `FLOW/TYPE`.

mod common;

use common::*;
use mbox_core::io::capture::read_all;
use mbox_proto::quic::ClientInitials;
use mbox_proto::Parse;
use mbox_stack::wire::dissect::{parse_frame, Packet, ParseOptions};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// A UDP conversation seen from its client: (client, client port, server, server port).
type Conversation = (IpAddr, u16, IpAddr, u16);

fn addr(bytes: [u8; 16], version: u8) -> IpAddr {
    match version {
        4 => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
        _ => IpAddr::from(bytes),
    }
}

/// The server name of each UDP conversation to port 443 in `capture` whose client's first
/// flight names one.
fn server_names(capture: &str) -> HashMap<Conversation, String> {
    let mut flights: HashMap<Conversation, ClientInitials> = HashMap::new();
    let mut names = HashMap::new();
    for (meta, frame) in read_all(&pcaps().join(capture)).unwrap() {
        let Ok(Packet::Ip(p)) = parse_frame(&frame, meta.wire_len, meta.link, ParseOptions::default()) else { continue };
        if p.ip_proto != 17 || p.dst_port != 443 || p.fragment.is_some() {
            continue;
        }
        let key = (addr(p.src, p.ip_version), p.src_port, addr(p.dst, p.ip_version), p.dst_port);
        let payload = &frame[p.payload_offset as usize..(p.payload_offset + p.payload_len) as usize];
        if let Parse::Done(hello) = flights.entry(key).or_default().push(payload) {
            if let Some(sni) = hello.sni {
                names.insert(key, String::from_utf8_lossy(&sni).into_owned());
            }
        }
    }
    names
}

/// nDPI's QUIC flows with a server name, by capture.
fn ndpi_quic_names() -> BTreeMap<String, Vec<(Conversation, String)>> {
    let mut expected: BTreeMap<String, Vec<(Conversation, String)>> = BTreeMap::new();
    for r in read_tsv(&pcaps().join("EXPECTED-ndpi.tsv")) {
        if r["master"] != "QUIC" && !r["ndpi_proto"].starts_with("QUIC") || r["hostname_sni"].is_empty() {
            continue;
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let port = |s: &str| s.parse::<u16>().unwrap();
        let key = (ip(&r["src_ip"]), port(&r["src_port"]), ip(&r["dst_ip"]), port(&r["dst_port"]));
        expected.entry(r["pcap"].clone()).or_default().push((key, r["hostname_sni"].clone()));
    }
    expected
}

#[test]
fn the_first_flight_of_every_bundled_quic_connection_names_ndpis_server() {
    let expected = ndpi_quic_names();
    let mut found = 0;
    for (capture, flows) in &expected {
        let ours = server_names(capture);
        for (key, sni) in flows {
            assert_eq!(ours.get(key), Some(sni), "{capture} {key:?}: ours {ours:?}");
            found += 1;
        }
    }
    // IETF QUIC v1 (ndpi__sites: 4 connections), Google QUIC Q025 and Q035 (http_ipv6, wechat).
    assert_eq!(found, 8, "{expected:?}");
    assert_eq!(expected.len(), 3);
}

#[test]
fn dpi_names_the_server_of_every_bundled_quic_connection() {
    let dir = tempfile::tempdir().unwrap();
    for (capture, flows) in ndpi_quic_names() {
        let out = dir.path().join("types.jsonl");
        run_toml(&format!(
            "[input]\npcap = {}\n[[nf]]\nplugin = \"dpi\"\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TYPE\"]\nargs = {{ output = {} }}\n",
            toml_path(&pcaps().join(&capture)),
            toml_path(&out)
        ));
        let ours: HashMap<Conversation, (String, String)> = read_jsonl(&out)
            .iter()
            .map(|t| {
                let ip = |k: &str| t[k].as_str().unwrap().parse::<IpAddr>().unwrap();
                let port = |k: &str| t[k].as_u64().unwrap() as u16;
                let sni = t["quic"]["sni"].as_str().unwrap_or("").to_string();
                ((ip("src_ip"), port("src_port"), ip("dest_ip"), port("dest_port")), (t["app_proto"].as_str().unwrap().to_string(), sni))
            })
            .collect();
        for (key, sni) in flows {
            assert_eq!(ours.get(&key), Some(&("quic".to_string(), sni)), "{capture} {key:?}");
        }
    }
}

/// A raw IPv4 frame of a UDP datagram (checksum left out, as IPv4 allows).
fn udp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}

/// A ClientHello too big for one datagram (as post-quantum key shares make them) comes in two
/// Initial packets, the second first here, with a server datagram between: dpi waits for the
/// whole hello and names its server, on a port that is not QUIC's.
#[test]
fn dpi_puts_a_client_hello_over_two_datagrams_back_together() {
    use mbox_proto::quic::testing::{client_initial, crypto_frame};
    let hello = mbox_proto::tls::testing::client_hello_message(0x0303, Some(b"two.example"), 1500);
    let dcid = [9u8; 8];
    let (client, server) = ([198, 18, 0, 1], [198, 18, 1, 1]);
    let datagrams = [
        udp_frame(client, 50000, server, 8443, &client_initial(&dcid, 1, &crypto_frame(1000, &hello[1000..]))),
        udp_frame(server, 8443, client, 50000, &[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        udp_frame(client, 50000, server, 8443, &client_initial(&dcid, 0, &crypto_frame(0, &hello[..1000]))),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("quic.pcap"), dir.path().join("types.jsonl"));
    let mut w = mbox_core::io::capture::PcapWriter::create(&input, mbox_stack::wire::LinkType::RawIp).unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        w.write(1_000_000_000 + i as u64 * 1_000_000, d.len() as u32, d).unwrap();
    }
    w.finish().unwrap();
    run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nplugin = \"dpi\"\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TYPE\"]\nargs = {{ output = {} }}\n",
        toml_path(&input),
        toml_path(&out)
    ));
    let types = read_jsonl(&out);
    assert_eq!(types.len(), 1, "{types:?}");
    assert_eq!((types[0]["app_proto"].as_str(), types[0]["quic"]["sni"].as_str()), (Some("quic"), Some("two.example")), "{types:?}");
    assert_eq!(types[0]["confidence"], "dpi");
}

/// What the logger writes of the events of type `subscribe` on each bundled capture that
/// nDPI found UDP flows in, by capture.
fn logged_on_udp_captures(ndpi: &[HashMap<String, String>], subscribe: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    let dir = tempfile::tempdir().unwrap();
    let captures: std::collections::BTreeSet<&String> = ndpi.iter().filter(|r| r["l4"] == "UDP").map(|r| &r["pcap"]).collect();
    let out = dir.path().join("events.jsonl");
    captures
        .into_iter()
        .map(|capture| {
            run_toml(&format!(
                "[input]\npcap = {}\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"{subscribe}\"]\nargs = {{ output = {} }}\n",
                toml_path(&pcaps().join(capture)),
                toml_path(&out)
            ));
            (capture.clone(), read_jsonl(&out))
        })
        .collect()
}

/// `PKT/UDP/QUIC` on the bundled captures with UDP: every datagram of nDPI's QUIC connections
/// on the IETF header is one, both ways (a short header's destination ID must be one its
/// receiver gave in its long headers); Google's versions before Q046 (their own public header:
/// `http_ipv6`, `wechat`, `weibo`) and every other UDP flow (DNS, LLMNR, STUN, RTP, ...) are
/// plain `PKT/UDP`. The captures' IETF QUIC is 6 datagrams (the Initials of `ndpi__sites`' 4
/// connections); short headers are covered by `runtime::quic`'s unit tests.
#[test]
fn every_datagram_of_an_ietf_quic_connection_is_a_quic_packet_and_no_other_udp_is() {
    let ndpi = read_tsv(&pcaps().join("EXPECTED-ndpi.tsv"));
    let (mut quic_datagrams, mut other_datagrams) = (0, 0);
    for (capture, lines) in logged_on_udp_captures(&ndpi, "PKT/UDP") {
        let capture = &capture;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let port = |s: &str| s.parse::<u16>().unwrap();
        // nDPI's UDP flows, either way round: QUIC or not.
        let mut is_quic: HashMap<Conversation, bool> = HashMap::new();
        for r in ndpi.iter().filter(|r| r["pcap"] == *capture && r["l4"] == "UDP") {
            let quic = r["master"] == "QUIC" || r["ndpi_proto"].starts_with("QUIC");
            let (a, b) = ((ip(&r["src_ip"]), port(&r["src_port"])), (ip(&r["dst_ip"]), port(&r["dst_port"])));
            is_quic.insert((a.0, a.1, b.0, b.1), quic);
            is_quic.insert((b.0, b.1, a.0, a.1), quic);
        }
        // Per conversation: its datagrams, and the source IDs each side's long headers gave.
        let mut conversations: HashMap<Conversation, Vec<serde_json::Value>> = HashMap::new();
        for line in lines.into_iter().filter(|l| l["src_ip"].is_string()) {
            let key = (
                ip(line["src_ip"].as_str().unwrap()),
                line["src_port"].as_u64().unwrap() as u16,
                ip(line["dest_ip"].as_str().unwrap()),
                line["dest_port"].as_u64().unwrap() as u16,
            );
            conversations.entry(key).or_default().push(line);
        }
        for (key, datagrams) in &conversations {
            let back = (key.2, key.3, key.0, key.1);
            let ietf = conversations
                .get(key)
                .into_iter()
                .chain(conversations.get(&back))
                .flatten()
                .any(|d| d["quic"]["packet_type"] == "initial" && d["quic"]["version"] == "00000001");
            match is_quic.get(key) {
                Some(true) if ietf => {
                    let ours: Vec<&str> =
                        conversations.get(&back).into_iter().flatten().filter_map(|d| d["quic"]["scid"].as_str()).collect();
                    for d in datagrams {
                        assert_eq!(d["mbox_type"], "PKT/UDP/QUIC", "{capture} {key:?}: {d}");
                        if d["quic"]["packet_type"] == "short" {
                            let dcid = d["quic"]["dcid"].as_str().unwrap();
                            assert!(ours.contains(&dcid), "{capture} {key:?}: a short header to an ID its receiver never gave: {d}");
                        }
                        quic_datagrams += 1;
                    }
                }
                _ => {
                    for d in datagrams {
                        assert_eq!(d["mbox_type"], "PKT/UDP", "{capture} {key:?} ({:?} in nDPI): {d}", is_quic.get(key));
                        other_datagrams += 1;
                    }
                }
            }
        }
    }
    eprintln!("{quic_datagrams} QUIC datagrams, {other_datagrams} other UDP datagrams");
    assert!(quic_datagrams >= 6 && other_datagrams > 1000, "{quic_datagrams} QUIC, {other_datagrams} other");
}

/// `FLOW/UDP/QUIC` on the bundled captures: once per QUIC connection, the server name nDPI
/// found for each (IETF Initials decrypted, Google's cleartext hello), the hello read, and for
/// the IETF ones the ALPN list the client offered (`h3` among it); no other UDP flow has one.
#[test]
fn the_stack_reports_each_quic_connections_first_flight_once_with_ndpis_server_name() {
    let expected = ndpi_quic_names();
    let ndpi = read_tsv(&pcaps().join("EXPECTED-ndpi.tsv"));
    let mut named = 0;
    for (capture, lines) in logged_on_udp_captures(&ndpi, "FLOW/UDP/QUIC") {
        let capture = &capture;
        let mut ours: HashMap<Conversation, Vec<serde_json::Value>> = HashMap::new();
        for q in lines {
            let ip = |k: &str| q[k].as_str().unwrap().parse::<IpAddr>().unwrap();
            let port = |k: &str| q[k].as_u64().unwrap() as u16;
            ours.entry((ip("src_ip"), port("src_port"), ip("dest_ip"), port("dest_port"))).or_default().push(q["quic"].clone());
        }
        let want = expected.get(capture).cloned().unwrap_or_default();
        assert_eq!(ours.len(), want.len(), "{capture}: ours {ours:?}, nDPI's {want:?}");
        for (key, sni) in want {
            let events = ours.get(&key).unwrap_or_else(|| panic!("{capture} {key:?}: no FLOW/UDP/QUIC"));
            assert_eq!(events.len(), 1, "{capture} {key:?}: {events:?}");
            let q = &events[0];
            assert_eq!((q["sni"].as_str(), q["hello_read"].as_bool()), (Some(sni.as_str()), Some(true)), "{capture} {key:?}");
            if q["version"] == "00000001" {
                assert!(q["alpn"].as_array().unwrap().iter().any(|a| a == "h3"), "{capture} {key:?}: {q}");
            }
            named += 1;
        }
    }
    assert_eq!(named, 8);
}
