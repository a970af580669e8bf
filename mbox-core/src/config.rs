//! The run configuration: one TOML file naming the input, the output, the runtime sizes, the
//! flow table and the NF chain. Every error names the file, the key and the problem.
//!
//! Relative paths are taken from the current directory, as the shell gave them.

use crate::io::generator::GeneratorConfig;
use mbox_stack::flow_table::Timeouts;
use mbox_stack::l23::events_per_packet;
use mbox_stack::tcp::Depth;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// A configuration problem, with enough context to fix it.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: more than {MAX_CONFIG_BYTES} bytes: not a config (a config is a few KB; is this the right file?)")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {key}: {problem}")]
    Invalid { path: PathBuf, key: String, problem: String },
}

/// The largest config file read (1 MiB). More is refused unread: a config is a few KB, and a
/// path such as /dev/zero or a pipe that never ends would otherwise be read forever.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Most NF instances in one config (the shard tracks per-event NF sets as 64-bit masks).
pub const MAX_NFS: usize = 64;

/// What to do when an NF's ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RingFullPolicy {
    /// The shard waits (and stops taking packets) until the NF catches up: nothing is lost.
    #[default]
    Backpressure,
    /// The event is not delivered to that NF, and counted.
    Drop,
}

/// How idle threads wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IdleMode {
    /// Spin briefly, then park: shares cores with other processes.
    #[default]
    Park,
    /// Always spin: lowest latency on dedicated cores.
    Spin,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub input: InputConfig,
    /// DPDK ports instead of `[input]` (a build with the `dpdk` feature).
    #[serde(default)]
    pub dpdk: Option<DpdkConfig>,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub flow: FlowConfig,
    #[serde(default)]
    pub tcp: TcpConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// Directory holding plugins named by `plugin = "..."`; default: the mbox binary's directory.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    #[serde(default, rename = "nf")]
    pub nfs: Vec<NfConfig>,
    /// Addresses and ports mbox serves itself (the Endpoint µStack), and the NFs that answer.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
}

/// `[dpdk]`: packets from DPDK ports, each pair of ports a wire (what comes in on one goes out
/// of the other, unless an NF drops it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    /// EAL arguments, e.g. `["--no-huge", "-m", "256", "--vdev=net_af_packet0,iface=veth0"]`.
    pub eal: Vec<String>,
    /// Port ids in pairs: `[0, 1]` forwards 0 -> 1 and 1 -> 0.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Mbufs in the pool; default: enough for every RX and TX ring full and every packet
    /// buffer holding one.
    pub mbufs: Option<u32>,
    /// How packets reach the shards: a queue pair per shard (the port spreads flows), an
    /// input thread steering in software, or (auto) the first where every port can.
    #[serde(default)]
    pub steering: DpdkSteering,
    /// Stop once no packet came for this long ("500ms"; for replays through `net_pcap`).
    /// Default: run until interrupted (Ctrl-C).
    #[serde(default, deserialize_with = "some_duration")]
    pub idle_stop: Option<Duration>,
    /// Also write every frame received to this pcap (with a queue pair per shard, one file per
    /// shard: `NAME.shardN.pcap`).
    pub trace: Option<PathBuf>,
}

fn default_ports() -> Vec<u16> {
    vec![0, 1]
}

/// `[dpdk] steering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DpdkSteering {
    /// A queue pair per shard where every port can spread flows over that many queues
    /// symmetrically (RSS, af_packet's fanout), else software.
    #[default]
    Auto,
    /// A queue pair per shard, or an error naming the port that cannot.
    Queues,
    /// One input thread receives and steers by the software flow hash; one output thread sends.
    Software,
}

/// `[input]`: exactly one of `pcap` or `generator` (or a `[dpdk]` section instead).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Captures read one after the other (`pcap = "FILE"` or `pcap = ["A", "B"]`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub pcap: Vec<PathBuf>,
    pub generator: Option<GeneratorConfig>,
    /// Read the captures this many times (a bigger input from small captures).
    #[serde(default = "one")]
    pub repeat: u32,
    /// Move each capture in time to start this long after the previous one's last packet, so
    /// one capture's flows end (idle timeout) before the next begins: repeated captures then
    /// give new flows instead of old data on the previous pass's connections.
    #[serde(default, deserialize_with = "some_duration")]
    pub retime: Option<Duration>,
    /// Send the input's frames across a simulated bad wire first (seeded: the same frames in
    /// the same order every run).
    pub impair: Option<ImpairConfig>,
    /// Also write every frame the shards get (after `impair`) to this pcap.
    pub trace: Option<PathBuf>,
}

/// `[input] impair`: what the simulated wire does to the input's frames.
#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ImpairConfig {
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame arrives after the next one to three.
    pub reorder: f64,
    /// Probability a frame arrives twice.
    pub duplicate: f64,
    /// Each frame arrives up to this much later ("1ms"), uniformly: close frames overtake.
    #[serde(deserialize_with = "duration")]
    pub delay: Duration,
    pub seed: u64,
}

impl ImpairConfig {
    /// The wire's settings.
    pub fn impairment(&self) -> mbox_stack::sim::Impairment {
        mbox_stack::sim::Impairment {
            loss: self.loss,
            reorder: self.reorder,
            duplicate: self.duplicate,
            delay_ns: u64::try_from(self.delay.as_nanos()).unwrap_or(u64::MAX),
            seed: self.seed,
        }
    }
}

fn one() -> u32 {
    1
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig { pcap: Vec::new(), generator: None, repeat: 1, retime: None, impair: None, trace: None }
    }
}

/// Checks `[dpdk]`: returns the key and the problem.
fn validate_dpdk(d: &DpdkConfig) -> Result<(), (&'static str, String)> {
    if !cfg!(feature = "dpdk") {
        return Err((
            "[dpdk]",
            "this mbox was built without DPDK: build it with `--features mbox-core/dpdk` (needs the system DPDK)".into(),
        ));
    }
    if d.ports.is_empty() || d.ports.len() % 2 != 0 {
        return Err(("[dpdk] ports", format!("must be pairs of port ids (each pair a wire), not {:?}", d.ports)));
    }
    let mut seen = d.ports.clone();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(("[dpdk] ports", format!("a port appears twice in {:?}", d.ports)));
    }
    if let Some(mbufs) = d.mbufs.filter(|&m| m < 1024) {
        return Err(("[dpdk] mbufs", format!("must be at least 1024, not {mbufs}")));
    }
    Ok(())
}

/// A path or a list of paths.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

/// `[control]`: how to reach the running mbox.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The Unix socket `mboxctl` talks to (created with mode 0600, removed at the end).
    pub socket: Option<PathBuf>,
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`): `127.0.0.1:9464`,
    /// `[::1]:9464`, `localhost:9464` (a host name, resolved at start), or `:9464` (every
    /// interface, as Prometheus exporters write it).
    #[serde(default, deserialize_with = "listen_address")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// A listen address: see [`ControlConfig::metrics`].
fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen_address(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Parses `host:port`, `[v6]:port`, `ip:port` or `:port` (every interface).
pub fn parse_listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let with_host = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_string() };
    if let Ok(addr) = with_host.parse() {
        return Ok(addr);
    }
    let Some((_, port)) = with_host.rsplit_once(':') else {
        return Err(format!("`{text}` is not a listen address: give HOST:PORT, IP:PORT or :PORT"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("`{text}` is not a listen address: `{port}` is not a port"));
    }
    match with_host.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("`{text}`: the host name has no address")),
        Err(e) => Err(format!("`{text}`: cannot resolve the host name: {e}")),
    }
}

/// `[output]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Write the packets that pass every NF to this pcap.
    pub pcap: Option<PathBuf>,
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    pub shards: usize,
    /// Capacity of each shard-to-NF ring, in events.
    pub ring_capacity: usize,
    pub ring_full: RingFullPolicy,
    pub idle: IdleMode,
    /// Event slots per shard for stack events.
    pub event_slots: usize,
    /// Packet buffers shared by the input and the shards.
    pub packet_buffers: usize,
    /// Cores to pin the pipeline's threads to, one thread per core in order: the shards, the
    /// NFs, the input thread, the output thread (wrapping round when there are more threads).
    /// None: the kernel places them.
    pub cores: Option<Vec<usize>>,
    /// The most memory the run may preallocate before its first packet (an estimate from the
    /// sizes above); a config needing more is refused at start.
    #[serde(deserialize_with = "memory_limit")]
    pub memory_limit: MemoryLimit,
}

/// `[runtime] memory_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryLimit {
    /// The memory available when the run starts (`MemAvailable` in /proc/meminfo, or what the
    /// process's cgroup still allows, whichever is less).
    #[default]
    Available,
    /// No limit ("none").
    Unlimited,
    Bytes(u64),
}

/// A memory limit: "auto", "none", a size such as "512MiB", "8GiB", "2G", or a number of bytes.
fn memory_limit<'de, D: Deserializer<'de>>(d: D) -> Result<MemoryLimit, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(0) => Err(serde::de::Error::custom("0 bytes: give a size such as \"8GiB\", \"auto\" or \"none\"")),
        Raw::Bytes(b) => Ok(MemoryLimit::Bytes(b)),
        Raw::Text(t) if t.trim().eq_ignore_ascii_case("auto") => Ok(MemoryLimit::Available),
        Raw::Text(t) if t.trim().eq_ignore_ascii_case("none") => Ok(MemoryLimit::Unlimited),
        Raw::Text(t) => parse_size(&t).map(MemoryLimit::Bytes).map_err(serde::de::Error::custom),
    }
}

/// Parses a size: a number with an optional unit, binary (KiB, MiB, GiB, TiB; K, M, G, T
/// likewise) or decimal (kB, MB, GB, TB), e.g. "512MiB", "1.5G", "4096".
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a size (try \"512MiB\", \"8GiB\", \"auto\", \"none\")"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KiB" => 1024.0,
        "M" | "MiB" => 1024f64.powi(2),
        "G" | "GiB" => 1024f64.powi(3),
        "T" | "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, TiB, or kB, MB, GB, TB)")),
    };
    let bytes = value * scale;
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: 1,
            ring_capacity: 1024,
            ring_full: RingFullPolicy::Backpressure,
            idle: IdleMode::Park,
            event_slots: 4096,
            packet_buffers: 8192,
            cores: None,
            memory_limit: MemoryLimit::Available,
        }
    }
}

/// `[flow]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Flows per shard.
    pub table_size: usize,
    #[serde(deserialize_with = "duration")]
    pub tcp_idle_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub tcp_closed_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub udp_idle_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub other_idle_timeout: Duration,
    /// Tell flows apart by their outermost VLAN ID.
    pub vlan_in_key: bool,
    /// Key tunnelled packets (GTP-U, VXLAN, GRE, IP-in-IP) by their innermost headers.
    pub decap_tunnels: bool,
    pub max_fragmented_datagrams: usize,
    #[serde(deserialize_with = "duration")]
    pub fragment_timeout: Duration,
    /// Who is the client of a TCP connection picked up mid-stream.
    pub midstream_client: MidstreamClientConfig,
}

/// `[flow] midstream_client`: `"first"` (the sender of the first packet seen) or `"detect"`
/// (the side that does not look like the server: `mbox_stack::l23::MidstreamClient`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MidstreamClientConfig {
    #[default]
    First,
    Detect,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            table_size: 65_536,
            tcp_idle_timeout: Duration::from_secs(600),
            tcp_closed_timeout: Duration::from_secs(10),
            udp_idle_timeout: Duration::from_secs(120),
            other_idle_timeout: Duration::from_secs(60),
            vlan_in_key: true,
            decap_tunnels: true,
            max_fragmented_datagrams: 256,
            fragment_timeout: Duration::from_secs(30),
            midstream_client: MidstreamClientConfig::First,
        }
    }
}

impl FlowConfig {
    /// The timeouts as the flow table takes them (0 = never).
    pub fn timeouts(&self) -> Timeouts {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timeouts {
            tcp_open_ns: ns(self.tcp_idle_timeout),
            tcp_closed_ns: ns(self.tcp_closed_timeout),
            udp_ns: ns(self.udp_idle_timeout),
            other_ns: ns(self.other_idle_timeout),
        }
    }
}

/// How much of the TCP monitor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TcpMonitor {
    /// What the subscriptions need: reassembly when an NF subscribes to `FLOW/TCP/DATA_RDY` or
    /// `FLOW/TCP/GAP`, state tracking when one subscribes to `PKT/TCP` or below, else nothing.
    #[default]
    Auto,
    Off,
    State,
    Reassembly,
}

/// `[tcp]`: the TCP monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    pub monitor: TcpMonitor,
    /// Out-of-order segments kept per direction of a connection.
    pub max_kept_segments_per_flow: usize,
    /// Out-of-order segments kept per shard (each holds a packet buffer); default a quarter of
    /// `[runtime] packet_buffers`, so held segments can never starve the input.
    pub max_kept_segments: Option<usize>,
    /// How far (bytes) beyond the next expected byte a segment may start and still be kept.
    pub max_out_of_order_distance: u32,
    /// How out-of-order segments are kept until the hole before them fills.
    pub out_of_order: KeepMode,
    /// Bytes of buffers for copied out-of-order payload, per shard (copy mode).
    pub max_copied_bytes: usize,
    /// Leave TCP segments with a wrong checksum out of the monitor (their receiver drops them:
    /// a decoy with a bad checksum is an IDS evasion). Off by default: captures taken on a host
    /// that offloads checksums carry wrong ones on everything it sent.
    pub verify_checksums: bool,
}

/// `[tcp] out_of_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeepMode {
    /// Copy for live inputs (DPDK), hold otherwise.
    #[default]
    Auto,
    /// Hold the packet (zero-copy; the packet leaves once the hole is filled and NFs are done).
    Hold,
    /// Copy the payload and let the packet go on at once.
    Copy,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            monitor: TcpMonitor::Auto,
            max_kept_segments_per_flow: 256,
            max_kept_segments: None,
            max_out_of_order_distance: 1 << 24,
            out_of_order: KeepMode::Auto,
            max_copied_bytes: 64 << 20,
            verify_checksums: false,
        }
    }
}

/// One `[[nf]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NfConfig {
    /// Instance name (unique); defaults to the plugin's name.
    pub name: Option<String>,
    /// A plugin name, looked up as `lib<name>.so` (dashes as underscores) in `plugin_dir`.
    pub plugin: Option<String>,
    /// Or the plugin library's path.
    pub path: Option<PathBuf>,
    /// Event types to subscribe to, replacing the plugin's defaults.
    pub subscribe: Option<Vec<String>>,
    /// Event types the NF gets only for the flows it asks for (`Host::subscribe`), e.g.
    /// `["FLOW/TCP/DATA_RDY"]` for an IDS that inspects the bytes of flows a classifier names.
    #[serde(default)]
    pub subscribe_per_flow: Vec<String>,
    /// Arguments handed to the plugin (as JSON).
    #[serde(default)]
    pub args: BTreeMap<String, toml::Value>,
}

/// One `[[service]]`: addresses and ports mbox terminates TCP for itself, the µStack that does
/// it, and the NFs that get its connections' events (and answer through `Host::send`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// A name for reports; defaults to the first address and port.
    pub name: Option<String>,
    /// The addresses served, IPv4 (mbox answers ARP for them) or IPv6: one or a list.
    #[serde(deserialize_with = "one_or_many_of")]
    pub address: Vec<std::net::IpAddr>,
    /// The TCP ports served: one or a list. A SYN to another port of the addresses gets a RST.
    #[serde(deserialize_with = "one_or_many_of")]
    pub port: Vec<u16>,
    /// The µStack that serves them.
    #[serde(default)]
    pub stack: ServiceStack,
    /// The `[[nf]]` instances (by name) that get the service's events; only they do, and they
    /// get no other flow's.
    pub nfs: Vec<String>,
    /// The MAC address mbox answers ARP with, "02:00:00:00:00:01"; default: the port's (an
    /// offline run has none and uses 02:00:00:00:00:01).
    pub mac: Option<String>,
    /// Connections per shard at most (half-open ones included); a SYN beyond gets a RST,
    /// counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Half-open connections per shard at most: a SYN beyond is answered with a SYN cookie
    /// (RFC 4987), which keeps no state until the client's ACK comes back. Unset: 1,024, or
    /// `max_connections` where that is smaller ([`ServiceConfig::syn_backlog`]).
    #[serde(default, rename = "syn_backlog")]
    pub syn_backlog_set: Option<usize>,
    /// Bytes an NF may have sent on a connection that the client has not acknowledged.
    #[serde(default = "default_send_buffer", deserialize_with = "size")]
    pub send_buffer: u64,
    /// Bytes a connection accepts ahead of what its NFs have read (its receive window).
    #[serde(default = "default_receive_window", deserialize_with = "size")]
    pub receive_window: u64,
    /// How long a connection mbox closed first stays in TIME-WAIT (RFC 9293's 2 MSL).
    #[serde(default = "default_time_wait", deserialize_with = "duration")]
    pub time_wait: Duration,
    /// Bytes the service's connections may hold in send buffers and out-of-order copies, per
    /// shard, all together (each connection also within send_buffer and receive_window). At
    /// the bound NFs' sends wait (`SEND_ROOM` once memory is free again) and out-of-order
    /// segments are not kept (the client sends them again); both counted.
    #[serde(default = "default_buffer_memory", deserialize_with = "size")]
    pub buffer_memory: u64,
    /// Splicer: the address mbox connects to backends from (source NAT; mbox answers ARP for
    /// it on the backends' side). Required with `stack = "splicer"`. L4: optional; with it,
    /// forwarded packets leave from this address (source NAT, a port of mbox's choosing), so
    /// that backends need no route back through mbox; without it only the destination is
    /// translated and backends answer clients directly (through mbox: it must be on the path).
    pub source: Option<std::net::IpAddr>,
    /// Splicer: the client bytes held before an NF binds the connection (the client's window
    /// until then); an NF that needs more to decide never gets it.
    #[serde(default = "default_hold_bytes", deserialize_with = "size")]
    pub hold_bytes: u64,
    /// Splicer: how long a connection may wait for its NF's bind after the handshake; past it
    /// the client is refused (`refuse`), counted.
    #[serde(default = "default_hold_timeout", deserialize_with = "duration")]
    pub hold_timeout: Duration,
    /// Splicer: how long a backend may take to answer mbox's SYN before it is given up. L4:
    /// how long a new flow may wait for its NF's bind and the backend's MAC, and a TCP
    /// backend for answering the client's SYN.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Splicer: a spliced connection silent this long both ways is forgotten (its later
    /// segments get a RST). L4: a TCP flow silent this long is forgotten.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// L4: a UDP flow silent this long is forgotten (its next datagram is a new flow).
    #[serde(default = "default_udp_idle_timeout", deserialize_with = "duration")]
    pub udp_idle_timeout: Duration,
    /// Splicer: how a client is answered when its backend refuses or does not answer, or no
    /// bind comes in time: "http-503" (an HTTP/1.1 503 answer and a FIN) or "rst".
    #[serde(default)]
    pub refuse: Refusal,
}

/// `[[service]] refuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    #[default]
    Http503,
    Rst,
}

/// `[[service]] stack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceStack {
    /// mbox terminates TCP (the Endpoint µStack): its NFs are the server.
    #[default]
    Endpoint,
    /// mbox completes the client's handshake, holds its first bytes for the NFs, and once one
    /// binds the connection to a backend splices the two (the TCP Splicer µStack).
    Splicer,
    /// An L4 load balancer's NAT, no TCP state: each new TCP or UDP flow to the addresses and
    /// ports is offered to the NFs (`FLOW/TCP/NEW`, `FLOW/UDP/NEW`), and once one binds it to
    /// a backend every packet of both directions is translated in place and sent on.
    L4,
    /// mbox holds two connections per flow (the TCP Split Proxy µStack): the client's, as the
    /// Endpoint, and one to the backend an NF binds it to; NFs get both sides' bytes and
    /// write each side's (possibly transformed) with `Host::send`. Each side's receive window
    /// follows the other's free send buffer.
    Proxy,
}

fn default_max_connections() -> usize {
    8192
}

/// `syn_backlog` where none is set and `max_connections` allows it.
const DEFAULT_SYN_BACKLOG: usize = 1024;

fn default_send_buffer() -> u64 {
    64 << 10
}

fn default_receive_window() -> u64 {
    64 << 10
}

fn default_buffer_memory() -> u64 {
    256 << 20
}

fn default_hold_bytes() -> u64 {
    16 << 10
}

fn default_hold_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_udp_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_time_wait() -> Duration {
    Duration::from_secs(30)
}

/// One value or a list of them.
fn one_or_many_of<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

/// A size in bytes: a number, or a string [`parse_size`] reads ("64KiB").
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(b) => Ok(b),
        Raw::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// Events one operation on a served connection causes at most (see `runtime::serve`).
pub const SERVICE_EVENTS_PER_OPERATION: usize = 72;

/// Copy bytes a shard keeps free before it takes a segment for a served connection whose
/// receive window is `window`: the window delivered in pieces, each copy rounded up to a power
/// of two (so up to twice the window) and at least 2 KiB.
pub fn copy_room(window: usize) -> usize {
    2 * window + SERVICE_EVENTS_PER_OPERATION * 2048
}

/// Parses a MAC address written "02:00:00:00:00:01" (or with dashes).
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("`{text}` is not a MAC address (six hex bytes, \"02:00:00:00:00:01\")"));
    }
    for (byte, part) in mac.iter_mut().zip(&parts) {
        *byte = u8::from_str_radix(part, 16).map_err(|_| format!("`{text}` is not a MAC address: `{part}` is not a hex byte"))?;
    }
    Ok(mac)
}

impl ServiceConfig {
    /// Half-open connections per shard at most: as set, else 1,024 or `max_connections`,
    /// whichever is smaller (so that a small table needs no second key).
    pub fn syn_backlog(&self) -> usize {
        self.syn_backlog_set.unwrap_or(DEFAULT_SYN_BACKLOG.min(self.max_connections))
    }

    /// The name reports use.
    pub fn display_name(&self) -> String {
        match (&self.name, self.address.first(), self.port.first()) {
            (Some(n), ..) => n.clone(),
            (None, Some(std::net::IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
            (None, Some(a), Some(p)) => format!("{a}:{p}"),
            _ => "service".into(),
        }
    }

    /// Checks one service's own values; `Err((key, problem))`.
    fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str| format!("[[service]] {} {k}", self.display_name());
        if self.address.is_empty() {
            return Err((key("address"), "lists no address".into()));
        }
        if self.port.is_empty() || self.port.contains(&0) {
            return Err((key("port"), "give one or more ports from 1 to 65535".into()));
        }
        if self.nfs.is_empty() {
            return Err((key("nfs"), "names no NF: who would answer its connections?".into()));
        }
        if let Some(mac) = &self.mac {
            let m = parse_mac(mac).map_err(|p| (key("mac"), p))?;
            if m[0] & 1 != 0 {
                return Err((key("mac"), format!("`{mac}` is a multicast address")));
            }
        }
        if !(1..=1 << 20).contains(&self.max_connections) {
            return Err((key("max_connections"), format!("must be between 1 and 1048576, not {}", self.max_connections)));
        }
        if !(1..=self.max_connections).contains(&self.syn_backlog()) {
            return Err((
                key("syn_backlog"),
                format!("must be between 1 and max_connections ({}), not {}", self.max_connections, self.syn_backlog()),
            ));
        }
        if !(4096..=64 << 20).contains(&self.send_buffer) {
            return Err((key("send_buffer"), format!("must be between 4 KiB and 64 MiB, not {} bytes", self.send_buffer)));
        }
        if !(1024..=1 << 30).contains(&self.receive_window) {
            return Err((key("receive_window"), format!("must be between 1 KiB and 1 GiB, not {} bytes", self.receive_window)));
        }
        match (self.stack, self.source) {
            (ServiceStack::Splicer | ServiceStack::Proxy, None) => {
                return Err((
                    key("source"),
                    "a splicer or a proxy needs the address it connects to backends from (source = \"198.18.1.20\")".into(),
                ))
            }
            (ServiceStack::Splicer | ServiceStack::Proxy, Some(src)) if self.address.iter().any(|a| a.is_ipv4() != src.is_ipv4()) => {
                return Err((key("source"), format!("{src} is not of the service's address family (a splice keeps the family)")))
            }
            (ServiceStack::Splicer | ServiceStack::Proxy, Some(src)) if self.address.contains(&src) => {
                return Err((key("source"), format!("{src} is a service address; give an address of its own")))
            }
            (ServiceStack::L4, Some(src)) if !src.is_ipv4() || self.address.contains(&src) => {
                return Err((key("source"), format!("{src} must be an IPv4 address of its own (not a service address)")))
            }
            (ServiceStack::Endpoint, Some(_)) => {
                return Err((key("source"), "only a splicer, a proxy or an l4 service connects to backends".into()))
            }
            _ => {}
        }
        if self.stack == ServiceStack::L4 {
            if let Some(a) = self.address.iter().find(|a| !a.is_ipv4()) {
                return Err((key("address"), format!("{a}: an l4 service translates IPv4 only (IPv6 NAT is not built)")));
            }
        }
        if !(1024..=self.receive_window.max(1024)).contains(&self.hold_bytes) {
            return Err((
                key("hold_bytes"),
                format!("must be between 1 KiB and receive_window ({}), not {}", self.receive_window, self.hold_bytes),
            ));
        }
        for (k, d) in [
            ("hold_timeout", self.hold_timeout),
            ("connect_timeout", self.connect_timeout),
            ("idle_timeout", self.idle_timeout),
            ("udp_idle_timeout", self.udp_idle_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(86_400) {
                return Err((key(k), format!("must be between 100 ms and a day, not {d:?}")));
            }
        }
        // One connection must be able to fill its send buffer and its window.
        let one = self.send_buffer + self.receive_window;
        if !(one..=1 << 40).contains(&self.buffer_memory) {
            return Err((
                key("buffer_memory"),
                format!("must be between send_buffer + receive_window ({one} bytes) and 1 TiB, not {} bytes", self.buffer_memory),
            ));
        }
        Ok(())
    }
}

/// A duration: a string such as "30s", "5m", "250ms", "2h", "0" or "none" (never), or a
/// number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// An optional duration: "none" or "0" mean none.
fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(|t| Some(t).filter(|t| !t.is_zero()))
}

/// Parses the duration strings [`duration`] accepts.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" || t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("never") {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (try \"30s\", \"5m\", \"none\")"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use ns, us, ms, s, m, h or d)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("`{text}` is out of range"))
}

impl Config {
    /// Checks what only matters once it is known that TCP streams are reassembled: a packet
    /// may cause up to six times a flow's kept segments in events
    /// (`mbox_stack::l23::events_per_packet`), and the arena must hold that many, or the shard
    /// could never proceed.
    pub fn validate_reassembly(&self, path: &Path) -> Result<(), ConfigError> {
        let per_packet = events_per_packet(Some(Depth::Reassembly), self.tcp.max_kept_segments_per_flow);
        if self.runtime.event_slots < per_packet {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "[runtime] event_slots".into(),
                problem: format!(
                    "must be at least {per_packet} (6 x [tcp] max_kept_segments_per_flow + 11) when TCP streams are reassembled, not {}",
                    self.runtime.event_slots
                ),
            });
        }
        Ok(())
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let mut bytes = Vec::new();
        // One byte past the limit tells a file at the limit from a longer one.
        std::fs::File::open(path).and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)).map_err(read)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: path.to_path_buf() });
        }
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: format!("not UTF-8 text (byte {}): not a TOML config", e.utf8_error().valid_up_to()),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid { path: path.to_path_buf(), key: key.to_string(), problem };
        if self.dpdk.is_some() && (self.input.impair.is_some() || self.input.trace.is_some()) {
            return Err(invalid(
                "[input]",
                "with DPDK ports there is no `[input]`: trace them with `[dpdk] trace`; a live wire is impaired outside mbox (tools/testbed.sh impair)".into(),
            ));
        }
        match (self.input.pcap.is_empty(), &self.input.generator, &self.dpdk) {
            (true, None, Some(d)) => validate_dpdk(d).map_err(|(k, p)| invalid(k, p))?,
            (_, _, Some(_)) => return Err(invalid("[dpdk]", "DPDK ports are the input: leave `[input]` out".into())),
            (false, Some(_), None) => return Err(invalid("[input]", "give either `pcap` or `generator`, not both".into())),
            (true, None, None) => {
                return Err(invalid(
                    "[input]",
                    "give `pcap = \"FILE\"` (or a list of files), a `generator` table, or a `[dpdk]` section".into(),
                ))
            }
            (true, Some(g), None) => g.validate().map_err(|p| invalid("[input] generator", p))?,
            (false, None, None) => {}
        }
        if let Some(i) = &self.input.impair {
            i.impairment().validate().map_err(|p| invalid("[input] impair", p))?;
        }
        if self.dpdk.is_some() && self.output.pcap.is_some() {
            return Err(invalid("[output] pcap", "with DPDK ports, forwarded packets leave through the ports, not to a file".into()));
        }
        if self.input.generator.is_some() && (self.input.repeat != 1 || self.input.retime.is_some()) {
            return Err(invalid("[input]", "`repeat` and `retime` apply to captures, not to the generator".into()));
        }
        if self.input.repeat == 0 {
            return Err(invalid("[input] repeat", "must be at least 1".into()));
        }
        let r = &self.runtime;
        if !(1..=64).contains(&r.shards) {
            return Err(invalid("[runtime] shards", format!("must be between 1 and 64, not {}", r.shards)));
        }
        if !(2..=1 << 20).contains(&r.ring_capacity) {
            return Err(invalid("[runtime] ring_capacity", format!("must be between 2 and 1048576, not {}", r.ring_capacity)));
        }
        if !(64..=1 << 22).contains(&r.event_slots) {
            return Err(invalid("[runtime] event_slots", format!("must be between 64 and 4194304, not {}", r.event_slots)));
        }
        if !(64..=1 << 22).contains(&r.packet_buffers) {
            return Err(invalid("[runtime] packet_buffers", format!("must be between 64 and 4194304, not {}", r.packet_buffers)));
        }
        if let Some(cores) = &r.cores {
            let max = crate::sys::cores::MAX_CORES;
            if cores.is_empty() {
                return Err(invalid("[runtime] cores", "is empty: list cores, or leave it out to let the kernel place threads".into()));
            }
            if let Some(c) = cores.iter().find(|&&c| c >= max) {
                return Err(invalid("[runtime] cores", format!("core {c} is out of range (0..{max})")));
            }
            if let Some((_, c)) = cores.iter().enumerate().find(|(i, c)| cores[..*i].contains(c)) {
                return Err(invalid("[runtime] cores", format!("core {c} is listed twice")));
            }
        }
        let f = &self.flow;
        if !(1..=1 << 26).contains(&f.table_size) {
            return Err(invalid("[flow] table_size", format!("must be between 1 and 67108864, not {}", f.table_size)));
        }
        let t = &self.tcp;
        if !(1..=1024).contains(&t.max_kept_segments_per_flow) {
            return Err(invalid(
                "[tcp] max_kept_segments_per_flow",
                format!("must be between 1 and 1024, not {}", t.max_kept_segments_per_flow),
            ));
        }
        if let Some(n) = t.max_kept_segments {
            if n > r.packet_buffers / 2 {
                return Err(invalid(
                    "[tcp] max_kept_segments",
                    format!(
                        "must be at most half of [runtime] packet_buffers ({}), not {n}: held segments would starve the input",
                        r.packet_buffers / 2
                    ),
                ));
            }
        }
        if !(64 << 10..=1 << 40).contains(&t.max_copied_bytes) {
            return Err(invalid(
                "[tcp] max_copied_bytes",
                format!("must be between 65536 (one kept range) and 2^40, not {}", t.max_copied_bytes),
            ));
        }
        if !(1..=65_536).contains(&f.max_fragmented_datagrams) {
            return Err(invalid(
                "[flow] max_fragmented_datagrams",
                format!("must be between 1 and 65536, not {}", f.max_fragmented_datagrams),
            ));
        }
        for (i, svc) in self.services.iter().enumerate() {
            svc.validate().map_err(|(k, p)| invalid(&k, p))?;
            if svc.stack == ServiceStack::L4 && svc.source.is_none() && self.runtime.shards > 1 {
                // A backend's answer goes from the backend to the client: the input steers it by
                // that pair, not by the client's and the service's, so another shard would get it.
                return Err(invalid(
                    &format!("[[service]] {} source", svc.display_name()),
                    format!(
                        "without source NAT an l4 service needs [runtime] shards = 1 (not {}): give `source` so that backends' answers come back to the shard that bound the flow",
                        self.runtime.shards
                    ),
                ));
            }
            if let Some(src) = svc.source {
                // A splice and an l4 flow keep their source ports in tables of their own: on one
                // address the two could pick the same port toward the same backend.
                if let Some(other) = self.services[..i].iter().find(|o| o.source == Some(src) && o.stack != svc.stack) {
                    return Err(invalid(
                        &format!("[[service]] {} source", svc.display_name()),
                        format!(
                            "{src} is the source of {} too: services of different stacks (splicer, proxy, l4) each need an address of their own",
                            other.display_name()
                        ),
                    ));
                }
                if let Some(other) = self.services.iter().find(|o| o.address.contains(&src)) {
                    return Err(invalid(
                        &format!("[[service]] {} source", svc.display_name()),
                        format!("{src} is an address of {}; give an address of its own", other.display_name()),
                    ));
                }
                if self.runtime.shards > 1 && self.dpdk.as_ref().is_some_and(|d| d.steering == DpdkSteering::Queues) {
                    // The port is picked so that mbox's own flow hash brings the backend's
                    // answers to the shard that picked it; a NIC's hash cannot be told to.
                    return Err(invalid(
                        "[dpdk] steering",
                        format!(
                            "\"queues\" with {} shards cannot serve {}: its source ports are picked so that the backends' answers reach the shard that picked them, which only mbox's own steering can promise; use steering = \"software\" (or \"auto\", which picks it)",
                            self.runtime.shards,
                            svc.display_name()
                        ),
                    ));
                }
            }
            // A segment waits until a window's copies fit in half the copy buffers (the other
            // half may be idle buffers kept for reuse): they must fit at all.
            let room = copy_room(svc.receive_window as usize);
            if room > self.tcp.max_copied_bytes / 2 {
                return Err(invalid(
                    &format!("[[service]] {} receive_window", svc.display_name()),
                    format!(
                        "{} bytes needs [tcp] max_copied_bytes of at least {} (twice the window and 144 KiB, twice over), not {}",
                        svc.receive_window,
                        2 * room,
                        self.tcp.max_copied_bytes
                    ),
                ));
            }
            for other in &self.services[..i] {
                let shared = svc.address.iter().find(|a| other.address.contains(a));
                if let (Some(a), Some(p)) = (shared, svc.port.iter().find(|p| other.port.contains(p))) {
                    return Err(invalid(
                        &format!("[[service]] {}", svc.display_name()),
                        format!("{a} port {p} is served by [[service]] {} already", other.display_name()),
                    ));
                }
                if let Some(nf) = svc.nfs.iter().find(|n| other.nfs.contains(n)) {
                    return Err(invalid(
                        &format!("[[service]] {} nfs", svc.display_name()),
                        format!("`{nf}` answers [[service]] {} already: an NF serves one service", other.display_name()),
                    ));
                }
            }
        }
        if self.nfs.len() > MAX_NFS {
            return Err(invalid("[[nf]]", format!("at most {MAX_NFS} NF instances, not {}", self.nfs.len())));
        }
        for (i, nf) in self.nfs.iter().enumerate() {
            let key = format!("[[nf]] #{} ({})", i + 1, nf.display_name());
            match (&nf.plugin, &nf.path) {
                (Some(_), Some(_)) => return Err(invalid(&key, "give either `plugin` or `path`, not both".into())),
                (None, None) => return Err(invalid(&key, "give `plugin = \"NAME\"` or `path = \"LIB.so\"`".into())),
                _ => {}
            }
            if let Some(name) = &nf.name {
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(invalid(&format!("{key} name"), format!("`{name}` is not a usable instance name")));
                }
            }
        }
        Ok(())
    }
}

impl NfConfig {
    /// The name to show for this entry before its plugin is loaded.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(p) = &self.plugin {
            return p.clone();
        }
        self.path.as_ref().and_then(|p| p.file_stem()).map_or("?".into(), |s| s.to_string_lossy().into_owned())
    }

    /// The arguments as a JSON object string.
    pub fn args_json(&self) -> String {
        serde_json::to_string(&self.args).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_minimal_config_takes_defaults() {
        let c = parse("[input]\npcap = \"x.pcap\"\n").unwrap();
        assert_eq!(c.runtime.shards, 1);
        assert!(c.nfs.is_empty());
        assert_eq!(c.flow.tcp_idle_timeout, Duration::from_secs(600));
    }

    #[test]
    fn metrics_listen_addresses_take_the_usual_forms() {
        assert_eq!(parse_listen_address("127.0.0.1:9464"), Ok("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(parse_listen_address(":9464"), Ok("0.0.0.0:9464".parse().unwrap()), "every interface");
        assert_eq!(parse_listen_address("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        assert!(parse_listen_address("localhost:9464").unwrap().ip().is_loopback());
        assert!(parse_listen_address("9464").unwrap_err().contains("give HOST:PORT"));
        assert!(parse_listen_address("localhost:http").unwrap_err().contains("`http` is not a port"));
        let c = parse("[input]\npcap = \"x\"\n[control]\nmetrics = \":9464\"\n").unwrap();
        assert_eq!(c.control.metrics, Some("0.0.0.0:9464".parse().unwrap()));
        let e = parse("[input]\npcap = \"x\"\n[control]\nmetrics = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("[control] metrics") || e.contains("metrics"), "{e}");
    }

    #[test]
    fn services_parse_with_defaults_and_refuse_what_cannot_work() {
        let base = "[input]\npcap = \"x\"\n[[nf]]\nplugin = \"http-server\"\n";
        let c = parse(&format!("{base}[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"http-server\"]\n")).unwrap();
        let svc = &c.services[0];
        assert_eq!((svc.address.len(), svc.port.as_slice(), svc.stack), (1, &[80][..], ServiceStack::Endpoint));
        assert_eq!((svc.max_connections, svc.send_buffer, svc.time_wait), (8192, 64 << 10, Duration::from_secs(30)));
        assert_eq!(svc.display_name(), "198.18.0.80:80");
        let c = parse(&format!(
            "{base}[[service]]\nname = \"web\"\naddress = [\"198.18.0.80\", \"2001:db8::80\"]\nport = [80, 8080]\nnfs = [\"http-server\"]\n\
             mac = \"02:00:00:00:00:50\"\nsend_buffer = \"1MiB\"\ntime_wait = \"2s\"\n"
        ))
        .unwrap();
        assert_eq!((c.services[0].address.len(), c.services[0].send_buffer), (2, 1 << 20));
        assert_eq!(parse_mac("02:00:00:00:00:50"), Ok([2, 0, 0, 0, 0, 0x50]));
        let bad = |extra: &str| {
            parse(&format!("{base}[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"http-server\"]\n{extra}"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("mac = \"zz:00:00:00:00:01\"").contains("not a hex byte"));
        assert!(bad("mac = \"01:00:00:00:00:01\"").contains("multicast"));
        assert!(bad("send_buffer = 10").contains("send_buffer: must be between"));
        assert!(bad("buffer_memory = \"64KiB\"").contains("buffer_memory: must be between send_buffer + receive_window"));
        assert_eq!(
            parse(&format!("{base}[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"http-server\"]\nbuffer_memory = \"1MiB\"\n"))
                .unwrap()
                .services[0]
                .buffer_memory,
            1 << 20
        );
        assert!(bad("max_connections = 0").contains("max_connections"));
        // A table smaller than the default backlog needs no second key; a backlog beyond it is refused.
        let syn_backlog = |extra: &str| {
            parse(&format!("{base}[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"a\"]\n{extra}")).unwrap().services[0]
                .syn_backlog()
        };
        assert_eq!((syn_backlog(""), syn_backlog("max_connections = 256"), syn_backlog("syn_backlog = 16")), (1024, 256, 16));
        assert!(
            bad("max_connections = 256\nsyn_backlog = 512").contains("syn_backlog: must be between 1 and max_connections (256), not 512")
        );
        assert!(bad("receive_window = \"40MiB\"").contains("needs [tcp] max_copied_bytes"), "the copy buffers must hold a window");
        assert!(bad("[[service]]\naddress = \"198.18.0.80\"\nport = [81, 80]\nnfs = [\"x\"]").contains("port 80 is served by"));
        let e = parse(&format!("{base}[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = []\n")).unwrap_err().to_string();
        assert!(e.contains("names no NF"), "{e}");
        let e = parse(&format!("{base}[[service]]\naddress = \"198.18.0.80\"\nport = 0\nnfs = [\"a\"]\n")).unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn proxy_services_need_a_source_of_their_own() {
        let base =
            "[input]\npcap = \"x\"\n[[nf]]\nplugin = \"l7-lb\"\n[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"l7-lb\"]\n";
        let proxy = |extra: &str| parse(&format!("{base}stack = \"proxy\"\n{extra}"));
        let c = proxy("source = \"198.18.1.20\"\n").unwrap();
        assert_eq!((c.services[0].stack, c.services[0].source), (ServiceStack::Proxy, Some("198.18.1.20".parse().unwrap())));
        let spec = crate::runtime::serve::ProxySpec::new(&c.services[0]).expect("a proxy's settings");
        assert_eq!(spec.connect_timeout_ns, 5_000_000_000);
        let err = |extra: &str| proxy(extra).unwrap_err().to_string();
        assert!(err("").contains("source: a splicer or a proxy needs"));
        assert!(err("source = \"198.18.0.80\"").contains("is a service address"));
    }

    #[test]
    fn splicer_services_need_a_source_of_their_own_and_bounded_holds() {
        let base =
            "[input]\npcap = \"x\"\n[[nf]]\nplugin = \"l7-lb\"\n[[service]]\naddress = \"198.18.0.80\"\nport = 80\nnfs = [\"l7-lb\"]\n";
        let splicer = |extra: &str| parse(&format!("{base}stack = \"splicer\"\n{extra}"));
        let c = splicer("source = \"198.18.1.20\"\n").unwrap();
        let svc = &c.services[0];
        assert_eq!((svc.stack, svc.source), (ServiceStack::Splicer, Some("198.18.1.20".parse().unwrap())));
        assert_eq!((svc.hold_bytes, svc.hold_timeout, svc.connect_timeout), (16 << 10, Duration::from_secs(10), Duration::from_secs(5)));
        assert_eq!((svc.idle_timeout, svc.refuse), (Duration::from_secs(600), Refusal::Http503));
        let c = splicer("source = \"198.18.1.20\"\nhold_bytes = \"4KiB\"\nconnect_timeout = \"250ms\"\nrefuse = \"rst\"\n").unwrap();
        assert_eq!(
            (c.services[0].hold_bytes, c.services[0].connect_timeout, c.services[0].refuse),
            (4096, Duration::from_millis(250), Refusal::Rst)
        );
        let err = |extra: &str| splicer(extra).unwrap_err().to_string();
        assert!(err("").contains("source: a splicer or a proxy needs"));
        assert!(err("source = \"2001:db8::20\"").contains("not of the service's address family"));
        assert!(err("source = \"198.18.0.80\"").contains("is a service address"));
        assert!(err("source = \"198.18.1.20\"\nhold_bytes = \"1MiB\"").contains("hold_bytes: must be between 1 KiB and receive_window"));
        assert!(err("source = \"198.18.1.20\"\nhold_timeout = \"10ms\"").contains("hold_timeout: must be between 100 ms"));
        assert!(err("source = \"198.18.1.20\"\nrefuse = \"drop\"").contains("unknown variant"));
        let e = parse(&format!("{base}source = \"198.18.1.20\"\n")).unwrap_err().to_string();
        assert!(e.contains("only a splicer, a proxy or an l4 service connects to backends"), "{e}");
    }

    #[test]
    fn l4_services_take_ipv4_a_source_of_their_own_and_one_shard_without_one() {
        let base = "[input]\npcap = \"x\"\n[[nf]]\nplugin = \"l4-lb\"\n[[service]]\nport = 80\nnfs = [\"l4-lb\"]\nstack = \"l4\"\n";
        let l4 = |extra: &str| parse(&format!("{base}{extra}"));
        let c = l4("address = \"198.18.1.80\"\n").unwrap();
        let svc = &c.services[0];
        assert_eq!((svc.stack, svc.source, svc.udp_idle_timeout), (ServiceStack::L4, None, Duration::from_secs(60)));
        let c = l4("address = \"198.18.1.80\"\nsource = \"198.18.1.21\"\n[runtime]\nshards = 2\n").unwrap();
        assert_eq!(c.services[0].source, Some("198.18.1.21".parse().unwrap()));
        let err = |extra: &str| l4(extra).unwrap_err().to_string();
        assert!(err("address = \"2001:db8::80\"").contains("translates IPv4 only"));
        assert!(err("address = \"198.18.1.80\"\nsource = \"198.18.1.80\"").contains("an IPv4 address of its own"));
        assert!(err("address = \"198.18.1.80\"\nudp_idle_timeout = \"1ms\"").contains("udp_idle_timeout: must be between"));
        let e = err("address = \"198.18.1.80\"\n[runtime]\nshards = 2\n");
        assert!(e.contains("source: without source NAT an l4 service needs [runtime] shards = 1 (not 2)"), "{e}");
    }

    #[test]
    fn a_source_address_is_one_services_own_and_needs_mbox_steering_across_shards() {
        let nfs = "[input]\npcap = \"x\"\n[[nf]]\nplugin = \"l4-lb\"\n[[nf]]\nplugin = \"l7-lb\"\n";
        let l4 = |source: &str| {
            format!("[[service]]\nname = \"l4\"\naddress = \"198.18.1.80\"\nport = 80\nnfs = [\"l4-lb\"]\nstack = \"l4\"\nsource = \"{source}\"\n")
        };
        let l7 = |source: &str| {
            format!("[[service]]\nname = \"l7\"\naddress = \"198.18.1.81\"\nport = 80\nnfs = [\"l7-lb\"]\nstack = \"splicer\"\nsource = \"{source}\"\n")
        };
        assert!(parse(&format!("{nfs}{}{}", l4("198.18.1.21"), l7("198.18.1.20"))).is_ok());
        let e = parse(&format!("{nfs}{}{}", l4("198.18.1.20"), l7("198.18.1.20"))).unwrap_err().to_string();
        assert!(e.contains("[[service]] l7 source: 198.18.1.20 is the source of l4 too"), "{e}");
        let e = parse(&format!("{nfs}{}{}", l4("198.18.1.81"), l7("198.18.1.20"))).unwrap_err().to_string();
        assert!(e.contains("[[service]] l4 source: 198.18.1.81 is an address of l7"), "{e}");
        if cfg!(feature = "dpdk") {
            let dpdk = "[dpdk]\neal = []\nsteering = \"queues\"\n[runtime]\nshards = 2\n";
            let nfs = nfs.replace("[input]\npcap = \"x\"\n", "");
            let e = parse(&format!("{nfs}{}{dpdk}", l4("198.18.1.21"))).unwrap_err().to_string();
            assert!(e.contains("[dpdk] steering: \"queues\" with 2 shards cannot serve l4"), "{e}");
            assert!(parse(&format!("{nfs}{}{}", l4("198.18.1.21"), dpdk.replace("queues", "auto"))).is_ok());
        }
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = parse("[input]\npcap = \"x\"\n[runtime]\nshards = 0\n").unwrap_err().to_string();
        assert_eq!(e, "test.toml: [runtime] shards: must be between 1 and 64, not 0");
        let e = parse("[input]\npcap = \"x\"\n[runtime]\nshard = 2\n").unwrap_err().to_string();
        assert!(e.starts_with("test.toml: ") && e.contains("unknown field `shard`") && e.contains("line 4"), "{e}");
        let e = parse("[input]\n").unwrap_err().to_string();
        assert!(e.contains("[input]") && e.contains("generator"), "{e}");
        let e = parse("[input]\npcap = \"x\"\n[flow]\nudp_idle_timeout = \"5 fortnights\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown unit") && e.contains("udp_idle_timeout"), "{e}");
        let e = parse("[input]\npcap = \"x\"\n[[nf]]\nname = \"a\"\n").unwrap_err().to_string();
        assert_eq!(e, "test.toml: [[nf]] #1 (a): give `plugin = \"NAME\"` or `path = \"LIB.so\"`");
        let e = parse("[input]\ngenerator = { loss = 2.0 }\n").unwrap_err().to_string();
        assert!(e.contains("[input] generator: loss"), "{e}");
        let e = parse("[input]\npcap = \"x\"\n[runtime]\nring_full = \"explode\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown variant `explode`"), "{e}");
        let e = parse("[input]\npcap = \"x\"\n[tcp]\nmax_copied_bytes = 1500\n").unwrap_err().to_string();
        assert!(e.contains("[tcp] max_copied_bytes: must be between 65536"), "{e}");
        let e = parse("[input]\npcap = \"x\"\n[tcp]\nout_of_order = \"later\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown variant `later`"), "{e}");
        for (cores, problem) in [("[]", "is empty"), ("[1, 2, 1]", "core 1 is listed twice"), ("[4096]", "core 4096 is out of range")] {
            let e = parse(&format!("[input]\npcap = \"x\"\n[runtime]\ncores = {cores}\n")).unwrap_err().to_string();
            assert!(e.contains(&format!("[runtime] cores: {problem}")), "{e}");
        }
        assert_eq!(parse("[input]\npcap = \"x\"\n[runtime]\ncores = [0, 1]\n").unwrap().runtime.cores, Some(vec![0, 1]));
    }

    #[test]
    fn dpdk_sections() {
        let e = |text: &str| parse(text).unwrap_err().to_string();
        if cfg!(feature = "dpdk") {
            assert!(parse("[dpdk]\neal = [\"--no-huge\"]\n").is_ok());
            assert!(e("[dpdk]\neal = []\nports = [0]\n").contains("pairs of port ids"));
            assert!(e("[dpdk]\neal = []\nports = [0, 0]\n").contains("appears twice"));
            assert!(e("[dpdk]\neal = []\nmbufs = 10\n").contains("at least 1024"));
        } else {
            assert!(e("[dpdk]\neal = []\n").contains("built without DPDK"));
        }
        assert!(e("[input]\npcap = \"x\"\n[dpdk]\neal = []\n").contains("leave `[input]` out"));
        assert!(e("").contains("or a `[dpdk]` section"));
    }

    #[test]
    fn memory_limits_and_sizes() {
        let limit = |v: &str| parse(&format!("[input]\npcap = \"x\"\n[runtime]\nmemory_limit = {v}\n")).map(|c| c.runtime.memory_limit);
        assert_eq!(parse("[input]\npcap = \"x\"\n").unwrap().runtime.memory_limit, MemoryLimit::Available);
        assert_eq!(limit("\"auto\"").unwrap(), MemoryLimit::Available);
        assert_eq!(limit("\"none\"").unwrap(), MemoryLimit::Unlimited);
        assert_eq!(limit("\"512MiB\"").unwrap(), MemoryLimit::Bytes(512 << 20));
        assert_eq!(limit("\"1.5G\"").unwrap(), MemoryLimit::Bytes(3 << 29));
        assert_eq!(limit("\"2GB\"").unwrap(), MemoryLimit::Bytes(2_000_000_000));
        assert_eq!(limit("4096").unwrap(), MemoryLimit::Bytes(4096));
        let e = limit("\"8 parsecs\"").unwrap_err().to_string();
        assert!(e.contains("memory_limit") && e.contains("unknown unit `parsecs`"), "{e}");
        assert!(limit("0").unwrap_err().to_string().contains("0 bytes"));
        assert!(parse_size("-1G").is_err() && parse_size("1e30").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("none").unwrap(), Duration::ZERO);
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e999s").is_err());
    }
}
