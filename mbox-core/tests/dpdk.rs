//! The DPDK layer on real PMDs without hardware or hugepages (feature `dpdk`): the EAL starts,
//! null ports receive and send bursts of mbufs, and what goes wrong says so. Each test runs in
//! its own process, which matters: a process starts the EAL once. nextest gives every test a
//! process; under `cargo test` (one process, tests as threads) each test runs itself again as a
//! child process.
#![cfg(feature = "dpdk")]

use mbox_core::io::dpdk::{DpdkError, Eal, Mempool, Port};
use mbox_core::sys::cores::Affinity;

/// Runs `body` in a process of its own (see the module documentation).
fn own_process(name: &str, body: fn()) {
    const CHILD: &str = "MBOX_DPDK_TEST_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) || std::env::var_os("NEXTEST_EXECUTION_MODE").is_some_and(|m| m == "process-per-test") {
        return body();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("running the test binary again");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{name}, in its own process:\n{text}");
}

/// EAL arguments that need no hugepages, no PCI and no shared files.
fn eal_args(vdevs: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--no-huge", "-m", "128", "--no-pci", "--no-shconf", "--no-telemetry", "-l", "0", "--log-level", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    args
}

fn null_ports_receive_and_send_bursts_body() {
    let eal = Eal::start(&eal_args(&["net_null0", "net_null1"])).unwrap();
    assert_eq!(eal.port_count(), 2);
    let info = Port::info(eal, 0).unwrap();
    assert_eq!(info.driver, "net_null");
    let pool = Mempool::new(eal, "test_pool", 4095).unwrap();
    let (rx, tx) = (Port::start(eal, 0, 1, 1, &pool, 0).unwrap(), Port::start(eal, 1, 1, 1, &pool, 0).unwrap());
    let mut burst = Vec::new();
    let mut received = 0;
    for _ in 0..100 {
        received += rx.rx_burst(0, &mut burst, 32);
        while !burst.is_empty() {
            tx.tx_burst(0, &mut burst);
        }
    }
    assert!(received >= 1000, "the null PMD makes a packet whenever asked: {received}");
    assert_eq!(tx.stats().tx_packets, received as u64);
    // mbufs go back to the pool: it never ran dry although 100 bursts came through.
    let mut m = pool.alloc().expect("a free mbuf");
    assert!(m.append(b"hello") && m.data() == b"hello");
    // Queues a port does not have are refused with the numbers.
    let e = Port::start(eal, 0, 60_000, 1, &pool, 0).unwrap_err().to_string();
    assert!(e.contains("queues asked"), "{e}");
    assert!(matches!(eal.require_port(5), Err(DpdkError::NoSuchPort { port: 5, count: 2 })));
    assert!(matches!(Eal::start(&eal_args(&["net_null0"])), Err(DpdkError::AlreadyStarted(_))));
}

fn an_eal_without_ports_says_so_body() {
    // The EAL pins its thread to the main lcore (`-l 0`); mbox takes that back, or every
    // thread it spawns afterwards would share core 0.
    let before = Affinity::current().unwrap().describe();
    let eal = Eal::start(&eal_args(&[])).unwrap();
    assert_eq!(Affinity::current().unwrap().describe(), before);
    assert_eq!(std::thread::spawn(|| Affinity::current().unwrap().describe()).join().unwrap(), before);
    let e = eal.require_port(0).unwrap_err().to_string();
    assert!(e.contains("found 0 ports"), "{e}");
}

fn bad_eal_arguments_are_an_error_not_an_abort_body() {
    let e = Eal::start(&["--no-such-option".to_string()]).unwrap_err().to_string();
    assert!(e.contains("EAL did not start"), "{e}");
}

mod common;

/// flow-stats lines reduced to what a replay through DPDK keeps: the counters (times are the
/// wall clock's there, and so are the flows' end reasons).
fn counters(path: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = common::read_jsonl(path)
        .into_iter()
        .map(|v| {
            format!(
                "{} {}:{} {}:{} {} {}",
                v["proto"], v["client_ip"], v["client_port"], v["server_ip"], v["server_port"], v["c2s"], v["s2c"]
            )
        })
        .collect();
    lines.sort();
    lines
}

fn a_capture_replayed_through_net_pcap_gives_what_the_reader_gives_body() {
    use common::*;
    let dir = tempfile::tempdir().unwrap();
    let capture = pcaps().join("ndpi__http_ipv6.pcap");
    // The pure-Rust reader.
    let reader_flows = dir.path().join("reader.jsonl");
    let report = run_toml(&format!(
        "[input]\npcap = {}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        toml_path(&capture),
        toml_path(&reader_flows)
    ));
    let packets = report.input.packets;
    // The same capture through DPDK's pcap PMD: port 0 replays it, port 1 receives nothing and
    // writes what mbox forwards.
    let empty = dir.path().join("empty.pcap");
    mbox_core::io::capture::PcapWriter::create(&empty, mbox_stack::wire::LinkType::Ethernet).unwrap().finish().unwrap();
    let (out0, out1) = (dir.path().join("out0.pcap"), dir.path().join("out1.pcap"));
    let mut eal = eal_args(&[
        &format!("net_pcap0,rx_pcap={},tx_pcap={}", capture.display(), out0.display()),
        &format!("net_pcap1,rx_pcap={},tx_pcap={}", empty.display(), out1.display()),
    ]);
    eal.push("--file-prefix=mbox-test".into());
    let eal_toml: Vec<String> = eal.iter().map(|a| format!("{a:?}")).collect();
    let dpdk_flows = dir.path().join("dpdk.jsonl");
    let report = run_toml(&format!(
        "[dpdk]\neal = [{}]\nports = [0, 1]\nidle_stop = \"300ms\"\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
        eal_toml.join(", "),
        toml_path(&dpdk_flows)
    ));
    assert_eq!(report.input.packets, packets, "every packet of the capture came in");
    assert!(report.input.description.contains("net_pcap"), "{}", report.input.description);
    assert_eq!(counters(&dpdk_flows), counters(&reader_flows));
    // What came in on port 0 went out of port 1, unchanged and in order.
    let forwarded = mbox_core::io::capture::read_all(&out1).unwrap();
    let original = mbox_core::io::capture::read_all(&capture).unwrap();
    assert_eq!(forwarded.len() as u64, packets);
    assert!(forwarded.iter().zip(&original).all(|((_, a), (_, b))| a == b));
    assert_eq!(report.output.unwrap().packets, packets);
}

fn a_mempool_smaller_than_the_rings_is_refused_with_the_default_named_body() {
    let eal: Vec<String> = eal_args(&["net_null0", "net_null1"]).iter().map(|a| format!("{a:?}")).collect();
    let e = common::try_run_toml(&format!("[dpdk]\neal = [{}]\nports = [0, 1]\nmbufs = 2048\n", eal.join(", "))).unwrap_err();
    assert!(e.contains("[dpdk] mbufs is below the 4096 the RX and TX rings hold alone"), "{e}");
}

/// An af_packet port nobody reads while traffic crosses its interface: the kernel drops what
/// its ring cannot hold, and the port's `rx_missed` counts it (DPDK's driver alone says 0).
fn an_af_packet_port_counts_the_frames_the_kernel_dropped_body() {
    if unsafe { libc::geteuid() } != 0 {
        return common::skip("an_af_packet_port_counts_the_frames_the_kernel_dropped", "af_packet sockets need root");
    }
    // Loopback: in every namespace, and each datagram crosses it on its way to `sink`.
    let eal = Eal::start(&eal_args(&["net_af_packet0,iface=lo,framecnt=64"])).unwrap();
    let pool = Mempool::new(eal, "test_pool", 4095).unwrap();
    let port = Port::start(eal, 0, 1, 1, &pool, 0).unwrap();
    assert_eq!(port.kernel_sockets(), 1);
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    const SENT: u64 = 2000;
    for _ in 0..SENT {
        sender.send_to(&[0; 100], sink.local_addr().unwrap()).unwrap();
    }
    let missed = port.stats().rx_missed;
    assert!(missed >= SENT - 64, "a 64-frame ring took {SENT} datagrams unread, {missed} counted missed");
    let (mut received, mut burst) = (0, Vec::new());
    while port.rx_burst(0, &mut burst, 64) > 0 {
        received += burst.len() as u64;
        burst.clear();
    }
    assert!(received <= 64 && received + missed >= SENT, "{received} received, {missed} missed");
    // The kernel's counter resets when read; the port's total stays.
    assert!(port.stats().rx_missed >= missed);
}

#[test]
fn an_af_packet_port_counts_the_frames_the_kernel_dropped() {
    own_process("an_af_packet_port_counts_the_frames_the_kernel_dropped", an_af_packet_port_counts_the_frames_the_kernel_dropped_body);
}

#[test]
fn null_ports_receive_and_send_bursts() {
    own_process("null_ports_receive_and_send_bursts", null_ports_receive_and_send_bursts_body);
}

#[test]
fn an_eal_without_ports_says_so() {
    own_process("an_eal_without_ports_says_so", an_eal_without_ports_says_so_body);
}

#[test]
fn bad_eal_arguments_are_an_error_not_an_abort() {
    own_process("bad_eal_arguments_are_an_error_not_an_abort", bad_eal_arguments_are_an_error_not_an_abort_body);
}

#[test]
fn a_capture_replayed_through_net_pcap_gives_what_the_reader_gives() {
    own_process(
        "a_capture_replayed_through_net_pcap_gives_what_the_reader_gives",
        a_capture_replayed_through_net_pcap_gives_what_the_reader_gives_body,
    );
}

#[test]
fn a_mempool_smaller_than_the_rings_is_refused_with_the_default_named() {
    own_process(
        "a_mempool_smaller_than_the_rings_is_refused_with_the_default_named",
        a_mempool_smaller_than_the_rings_is_refused_with_the_default_named_body,
    );
}
