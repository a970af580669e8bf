//! The dpi NF against nDPI's own reference classification (testdata/pcaps/EXPECTED-ndpi.tsv,
//! nDPI 4.11-dev on its test captures): every one of the 1,838 flows whose master protocol is
//! one dpi claims to know must get that protocol. Prints the confusion table.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// dpi's protocol names (mbox_abi::app::name) as nDPI names them.
const NAMES: &[(&str, &str)] = &[
    ("http", "HTTP"),
    ("tls", "TLS"),
    ("ssh", "SSH"),
    ("smtp", "SMTP"),
    ("smtps", "SMTPS"),
    ("imap", "IMAP"),
    ("imaps", "IMAPS"),
    ("pop3", "POP3"),
    ("pops", "POPS"),
    ("ftp", "FTP_CONTROL"),
    ("dns", "DNS"),
    ("bittorrent", "BitTorrent"),
    ("quic", "QUIC"),
    ("mdns", "MDNS"),
    ("llmnr", "LLMNR"),
    ("ssdp", "SSDP"),
    ("netbios", "NetBIOS"),
    ("dhcp", "DHCP"),
    ("dhcpv6", "DHCPV6"),
    ("stun", "STUN"),
    ("ntp", "NTP"),
    ("http_proxy", "HTTP_Proxy"),
    ("http_connect", "HTTP_Connect"),
    ("unknown", "Unknown"),
];

fn ndpi_name(ours: &str) -> String {
    NAMES.iter().find(|(a, _)| *a == ours).map_or_else(|| format!("?{ours}"), |(_, n)| n.to_string())
}

type Key = (String, String, (IpAddr, u64), (IpAddr, u64));

fn key(pcap: &str, l4: &str, a: (&str, u64), b: (&str, u64)) -> Key {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| panic!("bad address {s}"));
    let (a, b) = ((ip(a.0), a.1), (ip(b.0), b.1));
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    (pcap.to_string(), l4.to_ascii_uppercase(), a, b)
}

#[test]
fn dpi_agrees_with_ndpi_on_the_protocols_it_knows() {
    let rows = read_tsv(&pcaps().join("EXPECTED-ndpi.tsv"));
    let pcaps_used: BTreeSet<String> = rows.iter().map(|r| r["pcap"].clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut ours: HashMap<Key, Vec<String>> = HashMap::new();
    for pcap in &pcaps_used {
        let out = dir.path().join("types.jsonl");
        run_toml(&format!(
            "[input]\npcap = {}\n[[nf]]\nplugin = \"dpi\"\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TYPE\"]\nargs = {{ output = {} }}\n",
            toml_path(&pcaps().join(pcap)),
            toml_path(&out)
        ));
        for t in read_jsonl(&out) {
            let ep = |ip: &str, port: &str| (t[ip].as_str().unwrap(), t[port].as_u64().unwrap());
            let k = key(pcap, t["proto"].as_str().unwrap(), ep("src_ip", "src_port"), ep("dest_ip", "dest_port"));
            ours.entry(k).or_default().push(ndpi_name(t["app_proto"].as_str().unwrap()));
        }
    }
    let supported: BTreeSet<&str> = NAMES.iter().map(|(_, n)| *n).filter(|n| *n != "Unknown").collect();
    // Confusion table: nDPI's master -> ours -> flows.
    let mut table: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let (mut claimed, mut agreed) = (0u64, 0u64);
    for r in &rows {
        if r["l4"] != "TCP" && r["l4"] != "UDP" {
            continue;
        }
        let port = |k: &str| r[k].parse::<u64>().unwrap_or(0);
        let k = key(&r["pcap"], &r["l4"], (&r["src_ip"], port("src_port")), (&r["dst_ip"], port("dst_port")));
        let theirs = r["master"].clone();
        let mine =
            ours.get(&k).map(|v| if v.contains(&theirs) { theirs.clone() } else { v[0].clone() }).unwrap_or_else(|| "(no flow)".into());
        let row = if supported.contains(theirs.as_str()) { theirs.clone() } else { format!("other: {theirs}") };
        *table.entry(row).or_default().entry(mine.clone()).or_default() += 1;
        if supported.contains(theirs.as_str()) {
            claimed += 1;
            agreed += u64::from(mine == theirs);
            if mine != theirs {
                eprintln!(
                    "differs: {} {} {}:{} {}:{}: nDPI {theirs} ({}), dpi {mine}",
                    r["pcap"], r["l4"], r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["confidence"]
                );
            }
        }
    }
    eprintln!("\n| nDPI master | dpi: flows |\n|---|---|");
    for (theirs, cols) in &table {
        let cells: Vec<String> = cols.iter().map(|(m, n)| format!("{m} {n}")).collect();
        eprintln!("| {theirs} | {} |", cells.join(", "));
    }
    let share = agreed as f64 / claimed as f64;
    eprintln!("\nagreement on the supported protocols: {agreed} of {claimed} flows ({:.1}%)", share * 100.0);
    // Exactly: every flow of a protocol dpi knows gets nDPI's name for it (the CONNECT tunnel
    // of ndpi__http_connect among them), so any change in either shows.
    assert_eq!((agreed, claimed), (1838, 1838), "{:.1}% agreement", share * 100.0);
}
