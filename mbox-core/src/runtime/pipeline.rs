//! Assembling a run from a config: load plugins, register their types, compile the service
//! graph, create NF instances, wire rings and lanes, start the threads, and collect reports.
//!
//! Threads: one input (dispatcher), one per shard, one per NF instance, and one output thread
//! when a pcap output is configured. The calling thread shows progress and joins them.

use super::lane::{lane, LaneRx, LaneTx};
use super::nf_host::{NfReport, NfWorker};
use super::park::{IdlePolicy, Waker};
use super::shard::{Shard, ShardReport, ShardSetup};
use crate::config::{Config, ConfigError, KeepMode, NfConfig, TcpMonitor};
use crate::controller::{GraphError, NfSpec, ServiceGraph};
use crate::events::arena::EventArena;
use crate::events::registry::{RegistryError, TypeRegistry};
use crate::io::capture::CaptureError;
use crate::io::dispatch::{Dispatcher, InputReport, Progress, Source, Steering};
use crate::io::output::{OutputStats, PcapOutput, Tx};
use crate::io::pool::lending_pool;
use crate::io::RxPacket;
use crate::plugin::{default_plugin_dir, library_path, Plugin, PluginError};
use mbox_abi::{builtin, EventType, NfInit};
use mbox_stack::l23::StackConfig;
use mbox_stack::tcp::stream::StreamLimits;
use mbox_stack::tcp::Depth;
use mbox_stack::wire::ParseOptions;
use rtrb::RingBuffer;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a run could not start or finish.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{config}: {key}: {source}")]
    Types { config: PathBuf, key: String, source: RegistryError },
    #[error("{config}: {source}")]
    Graph { config: PathBuf, source: GraphError },
    #[error("input: {0}")]
    Input(CaptureError),
    #[error("output: {0}")]
    Output(CaptureError),
    #[error("a {0} thread failed: {1}")]
    Thread(String, String),
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] crate::io::dpdk::DpdkError),
}

/// Where forwarded packets go.
enum Output {
    Pcap(PcapOutput),
    #[cfg(feature = "dpdk")]
    Dpdk(crate::io::dpdk::DpdkOutput),
}

impl Output {
    fn run(self, idle: IdlePolicy) -> Result<OutputStats, crate::io::capture::CaptureError> {
        match self {
            Output::Pcap(out) => out.run(idle),
            #[cfg(feature = "dpdk")]
            Output::Dpdk(out) => Ok(out.run(idle)),
        }
    }
}

/// Starts the EAL and the ports of `[dpdk]`: the ports, the mempool their mbufs come from, and a
/// description for the summary.
#[cfg(feature = "dpdk")]
fn start_dpdk(
    d: &crate::config::DpdkConfig,
) -> Result<(Vec<crate::io::dpdk::Port>, Arc<crate::io::dpdk::Mempool>, String), crate::io::dpdk::DpdkError> {
    use crate::io::dpdk::{Eal, Mempool, Port};
    let eal = Eal::start(&d.eal)?;
    let pool = Arc::new(Mempool::new(eal, "mbox_rx", d.mbufs)?);
    let mut ports = Vec::new();
    let mut names = Vec::new();
    for &id in &d.ports {
        let info = Port::info(eal, id)?;
        ports.push(Port::start(eal, id, 1, 1, &pool)?);
        names.push(format!("{id} ({})", info.driver));
    }
    Ok((ports, pool, format!("DPDK ports {}", names.join(", "))))
}

/// Packet buffer size before any growth (a jumbo-free Ethernet frame fits).
const INITIAL_BUFFER: usize = 2048;
/// Capacity of each input-to-shard ring.
const RX_RING: usize = 1024;
/// Event slots per shard reserved for NF publications (when some NF publishes).
const PUBLICATION_SLOTS: usize = 4096;

/// A config whose plugins are loaded and whose graph is compiled, ready to run.
pub struct Prepared {
    pub config: Config,
    pub config_path: PathBuf,
    pub registry: TypeRegistry,
    pub graph: ServiceGraph,
    pub plugins: Vec<(NfConfig, Arc<Plugin>)>,
}

/// How deep the TCP monitor runs: as configured, or (auto) as deep as the subscriptions need.
pub fn tcp_depth(mode: TcpMonitor, registry: &TypeRegistry, graph: &ServiceGraph) -> Option<Depth> {
    let wanted = |ty: EventType| registry.index_of_type(ty).is_some_and(|i| graph.wants(i));
    match mode {
        TcpMonitor::Off => None,
        TcpMonitor::State => Some(Depth::State),
        TcpMonitor::Reassembly => Some(Depth::Reassembly),
        TcpMonitor::Auto if wanted(builtin::FLOW_TCP_DATA_RDY) || wanted(builtin::FLOW_TCP_GAP) => Some(Depth::Reassembly),
        TcpMonitor::Auto if graph.nfs().iter().any(|nf| nf.subscribes.iter().any(|(_, s)| s.is_a(builtin::PKT_TCP))) => Some(Depth::State),
        TcpMonitor::Auto => None,
    }
}

/// The event types the stack publishes.
pub fn stack_publications() -> Vec<EventType> {
    builtin::ALL.iter().map(|(_, t)| *t).filter(|t| t.is_a(builtin::PKT) || t.is_a(builtin::FLOW)).collect()
}

/// Loads the plugins of `config` and compiles its service graph.
pub fn prepare(config: Config, config_path: &Path) -> Result<Prepared, PipelineError> {
    let plugin_dir = config.plugin_dir.clone().unwrap_or_else(default_plugin_dir);
    let mut registry = TypeRegistry::with_builtins();
    let mut plugins = Vec::new();
    let mut loaded: Vec<Arc<Plugin>> = Vec::new();
    for nf in &config.nfs {
        let name = nf.display_name();
        let path = match (&nf.path, &nf.plugin) {
            (Some(p), _) => p.clone(),
            (None, Some(plugin)) => library_path(&plugin_dir, plugin),
            (None, None) => unreachable!("validated: plugin or path"),
        };
        // Several instances of one library share its loaded module.
        let plugin = match loaded.iter().find(|p| p.path == path) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(Plugin::load(&name, &path)?);
                loaded.push(p.clone());
                p
            }
        };
        plugins.push((nf.clone(), plugin));
    }
    // Publications first, so that an NF may subscribe to a type a later NF registers.
    let key_of = |i: usize, nf: &NfConfig| format!("[[nf]] #{} ({})", i + 1, nf.display_name());
    let types_err = |key: String, source| PipelineError::Types { config: config_path.to_path_buf(), key, source };
    let mut publications = Vec::new();
    for (i, (nf, plugin)) in plugins.iter().enumerate() {
        let mut publishes = Vec::new();
        for path in plugin.descriptor.publishes.iter() {
            let idx = registry.register(path).map_err(|e| types_err(format!("{} (the plugin's publications)", key_of(i, nf)), e))?;
            publishes.push((path.to_string(), registry.types()[idx].ty));
        }
        publications.push(publishes);
    }
    let mut specs = Vec::new();
    for (i, ((nf, plugin), publishes)) in plugins.iter().zip(publications).enumerate() {
        let subscribe: Vec<String> = match &nf.subscribe {
            Some(list) => list.clone(),
            None => plugin.descriptor.subscribes.iter().map(|s| s.to_string()).collect(),
        };
        let mut subscribes = Vec::new();
        for path in &subscribe {
            let ty = registry.type_of(path).map_err(|e| types_err(format!("{} subscribe", key_of(i, nf)), e))?;
            subscribes.push((path.clone(), ty));
        }
        let name = nf.name.clone().unwrap_or_else(|| plugin.descriptor.name.to_string());
        specs.push(NfSpec { name, read_only: plugin.descriptor.read_only, subscribes, publishes });
    }
    let graph = ServiceGraph::compile(&registry, &stack_publications(), specs)
        .map_err(|source| PipelineError::Graph { config: config_path.to_path_buf(), source })?;
    if tcp_depth(config.tcp.monitor, &registry, &graph) == Some(Depth::Reassembly) {
        config.validate_reassembly(config_path)?;
    }
    Ok(Prepared { config, config_path: config_path.to_path_buf(), registry, graph, plugins })
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub input: InputReport,
    pub shards: Vec<ShardReport>,
    pub nfs: Vec<NfReport>,
    pub output: Option<OutputStats>,
    /// Type paths by dense index (for `ShardReport::events_by_type`).
    pub type_paths: Vec<String>,
    pub wall: Duration,
    /// CPU time (user + system) of the whole process during the run.
    pub cpu: Duration,
}

/// Options of a run that are not in the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// Runs a prepared pipeline to the end of its input.
pub fn run(prepared: Prepared, opts: RunOptions) -> Result<RunReport, PipelineError> {
    let Prepared { config, registry, graph, plugins, .. } = prepared;
    let rt = &config.runtime;
    let shards = rt.shards;
    #[cfg(feature = "dpdk")]
    let dpdk_ports = match &config.dpdk {
        Some(d) => Some(start_dpdk(d)?),
        None => None,
    };
    #[cfg(not(feature = "dpdk"))]
    let dpdk_ports: Option<()> = None;
    let source = match (&config.input.generator, &dpdk_ports) {
        #[cfg(feature = "dpdk")]
        (_, Some((ports, pool, description))) => Source::Dpdk(Box::new(crate::io::dpdk::DpdkInput::new(
            ports.clone(),
            pool.clone(),
            description.clone(),
            config.dpdk.as_ref().and_then(|d| d.idle_stop),
        ))),
        (Some(g), _) => Source::generator(g.clone()),
        _ => Source::captures(&config.input).map_err(PipelineError::Input)?,
    };
    // One releaser per shard, and one for the output thread when there is one.
    let has_output = config.output.pcap.is_some() || dpdk_ports.is_some();
    let releasers = shards + usize::from(has_output);
    #[cfg(feature = "dpdk")]
    let give_back = dpdk_ports.as_ref().map(|_| crate::io::dpdk::give_back as unsafe fn(*mut std::ffi::c_void));
    #[cfg(not(feature = "dpdk"))]
    let give_back = None;
    let (pool, alloc, mut releasers) = lending_pool(rt.packet_buffers, INITIAL_BUFFER, releasers, give_back);
    let registry = Arc::new(registry);
    let graph = Arc::new(graph);

    // Create the NF instances before starting anything, so a failing constructor stops the run
    // cleanly.
    let bindings = registry.bindings();
    let mut instances = Vec::new();
    for (i, ((nf_cfg, plugin), spec)) in plugins.iter().zip(graph.nfs()).enumerate() {
        let args = nf_cfg.args_json();
        let init = NfInit {
            instance: spec.name.as_str().into(),
            args_json: args.as_str().into(),
            nf_number: (i + 1) as u16,
            shards: shards as u32,
            flow_slots: config.flow.table_size as u32,
            types: bindings.as_slice().into(),
        };
        instances.push(plugin.create(&init)?);
    }
    drop(bindings);

    let any_publisher = graph.nfs().iter().any(|nf| !nf.publishes.is_empty());
    let pub_slots = if any_publisher { PUBLICATION_SLOTS } else { 0 };
    let nf_wakers: Vec<Arc<Waker>> = graph.nfs().iter().map(|_| Arc::new(Waker::new())).collect();
    let shard_wakers: Vec<Arc<Waker>> = (0..shards).map(|_| Arc::new(Waker::new())).collect();
    let mut nf_lanes: Vec<Vec<LaneRx>> = graph.nfs().iter().map(|_| Vec::new()).collect();
    let mut shard_lanes: Vec<Vec<LaneTx>> = Vec::new();
    let mut arenas = Vec::new();
    for (shard, shard_waker) in shard_wakers.iter().enumerate() {
        let arena = Arc::new(EventArena::new(rt.event_slots + pub_slots));
        let mut lanes = Vec::new();
        for (n, spec) in graph.nfs().iter().enumerate() {
            let publishes = !spec.publishes.is_empty();
            let (tx, rx) =
                lane(rt.ring_capacity, arena.len(), arena.clone(), shard as u16, shard_waker.clone(), nf_wakers[n].clone(), publishes);
            lanes.push(tx);
            nf_lanes[n].push(rx);
        }
        shard_lanes.push(lanes);
        arenas.push(arena);
    }

    let link = source.link();
    let (output, txs): (Option<Output>, Vec<Tx>) = match (&config.output.pcap, &dpdk_ports) {
        #[cfg(feature = "dpdk")]
        (_, Some((ports, _, _))) => {
            let own = releasers.pop().expect("a releaser for the output thread");
            let (out, txs) = crate::io::dpdk::DpdkOutput::new(ports.clone(), pool.clone(), own, releasers);
            (Some(Output::Dpdk(out)), txs)
        }
        (Some(path), _) => {
            let own = releasers.pop().expect("a releaser for the output thread");
            let (out, txs) = PcapOutput::new(path.clone(), link, pool.clone(), own, releasers).map_err(PipelineError::Output)?;
            (Some(Output::Pcap(out)), txs)
        }
        _ => (None, releasers.into_iter().map(Tx::discard).collect()),
    };

    let stack_cfg = StackConfig {
        flow_slots: config.flow.table_size,
        timeouts: config.flow.timeouts(),
        vlan_in_key: config.flow.vlan_in_key,
        parse: ParseOptions { decap_tunnels: config.flow.decap_tunnels },
        max_fragmented_datagrams: config.flow.max_fragmented_datagrams,
        fragment_timeout_ns: u64::try_from(config.flow.fragment_timeout.as_nanos()).unwrap_or(u64::MAX),
        tcp: tcp_depth(config.tcp.monitor, &registry, &graph),
        stream_limits: StreamLimits { max_kept: config.tcp.max_kept_segments_per_flow, max_distance: config.tcp.max_out_of_order_distance },
    };
    let max_kept = config.tcp.max_kept_segments.unwrap_or(rt.packet_buffers / 4).max(1);

    // The input, the shards, the NFs and the output: whether they fit the cores decides whether
    // idle threads spin.
    let threads = 1 + shards + graph.nfs().len() + usize::from(output.is_some());
    let idle = IdlePolicy::new(rt.idle, threads);

    let cpu_start = cpu_time();
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));

    let mut nf_threads: Vec<JoinHandle<NfReport>> = Vec::new();
    for ((i, nf), (spec, lanes)) in instances.into_iter().enumerate().zip(graph.nfs().iter().zip(nf_lanes)) {
        let worker = NfWorker {
            name: spec.name.clone(),
            read_only: spec.read_only,
            nf,
            lanes,
            waker: nf_wakers[i].clone(),
            idle,
            publishes: spec.publishes.iter().map(|(_, t)| *t).collect(),
            registry: registry.clone(),
            graph: graph.clone(),
        };
        nf_threads.push(spawn(&format!("nf-{}", spec.name), move || worker.run())?);
    }

    let output_thread = match output {
        Some(out) => Some(spawn("mbox-output", move || out.run(idle))?),
        None => None,
    };

    let mut rx_producers = Vec::new();
    let mut shard_threads: Vec<JoinHandle<ShardReport>> = Vec::new();
    for (s, ((lanes, tx), arena)) in shard_lanes.into_iter().zip(txs).zip(arenas).enumerate() {
        let (producer, consumer) = RingBuffer::<RxPacket>::new(RX_RING);
        rx_producers.push(producer);
        let setup = ShardSetup {
            id: s as u16,
            rx: consumer,
            pool: pool.clone(),
            tx,
            stack: stack_cfg,
            graph: graph.clone(),
            registry: registry.clone(),
            arena,
            stack_slots: rt.event_slots,
            lanes,
            policy: rt.ring_full,
            waker: shard_wakers[s].clone(),
            idle,
            max_kept,
            max_copied_bytes: config.tcp.max_copied_bytes,
            copy_kept: match config.tcp.out_of_order {
                KeepMode::Auto => config.dpdk.is_some(),
                KeepMode::Hold => false,
                KeepMode::Copy => true,
            },
        };
        shard_threads.push(spawn(&format!("mbox-shard-{s}"), move || Shard::new(setup).run())?);
    }

    let dispatcher = Dispatcher {
        source,
        alloc,
        rings: rx_producers,
        shard_wakers: shard_wakers.clone(),
        steering: Steering { vlan_in_key: config.flow.vlan_in_key, parse: stack_cfg.parse },
        progress: progress.clone(),
        stop: stop.clone(),
        idle,
    };
    let input_thread = spawn("mbox-input", move || dispatcher.run())?;

    let bar = opts.progress.then(ProgressDisplay::new).flatten();
    if let Some(bar) = &bar {
        while !input_thread.is_finished() {
            bar.update(&progress);
            thread::sleep(Duration::from_millis(100));
        }
    }
    let input = join("input", input_thread)?;
    if let Some(bar) = bar {
        bar.update(&progress);
        bar.finish();
    }
    let mut report = RunReport { input, type_paths: registry.types().iter().map(|t| t.path.clone()).collect(), ..Default::default() };
    for t in shard_threads {
        report.shards.push(join("shard", t)?);
    }
    for t in nf_threads {
        report.nfs.push(join("NF", t)?);
    }
    if let Some(t) = output_thread {
        report.output = Some(join("output", t)?.map_err(PipelineError::Output)?);
    }
    report.wall = started.elapsed();
    report.cpu = cpu_time().saturating_sub(cpu_start);
    Ok(report)
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>, PipelineError> {
    thread::Builder::new().name(name.to_string()).spawn(f).map_err(|e| PipelineError::Thread(name.to_string(), e.to_string()))
}

fn join<T>(what: &str, handle: JoinHandle<T>) -> Result<T, PipelineError> {
    handle.join().map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        PipelineError::Thread(what.to_string(), msg)
    })
}

/// User plus system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime only writes the struct we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The progress bar on stderr (only when stderr is a terminal).
struct ProgressDisplay {
    bar: indicatif::ProgressBar,
}

impl ProgressDisplay {
    fn new() -> Option<ProgressDisplay> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Some(ProgressDisplay { bar })
    }

    fn update(&self, p: &Progress) {
        let total = p.total_units.load(Ordering::Relaxed);
        if total > 0 {
            self.bar.set_length(total);
        }
        self.bar.set_position(p.done_units.load(Ordering::Relaxed));
        self.bar.set_message(format!("{} packets", p.packets.load(Ordering::Relaxed)));
    }

    fn finish(self) {
        self.bar.finish_and_clear();
    }
}
