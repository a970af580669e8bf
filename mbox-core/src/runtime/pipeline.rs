//! Assembling a run from a config: load plugins, register their types, compile the service
//! graph, create NF instances, wire rings and lanes, start the threads, and collect reports.
//!
//! Threads: one input (dispatcher), one per shard, one per NF instance, and one output thread
//! when a pcap output is configured. The calling thread shows progress and joins them.

use super::lane::{lane, LaneRx, LaneTx};
use super::memory::{self, MemoryEstimate};
use super::nf_host::{NfControl, NfReport, NfWorker};
use super::shard::{Shard, ShardReport, ShardSetup};
use crate::config::{Config, ConfigError, KeepMode, NfConfig, TcpMonitor};
use crate::control::live::LiveView;
use crate::control::metrics::MetricsServer;
use crate::control::reload::{Declared, ReloadTarget, Reloader};
use crate::control::server::{ControlError, ControlServer, ControlState};
use crate::controller::{GraphError, NfSpec, ServiceGraph};
use crate::events::arena::EventArena;
use crate::events::registry::{RegistryError, TypeRegistry};
use crate::files::{FileClash, RunFiles};
use crate::io::capture::CaptureError;
use crate::io::dispatch::{Dispatcher, InputReport, Progress, Source, Steering};
use crate::io::output::{OutputStats, PcapOutput, Tx};
use crate::io::pool::{lending_pool, Allocator, PacketPool};
use crate::io::{RxPacket, ShardInput};
use crate::plugin::{default_plugin_dir, library_path, Plugin, PluginError};
use crate::runtime::live::Snapshot;
use crate::sys::clock::cpu_time;
use crate::sys::cores::{self, Affinity};
use crate::sys::park::{IdlePolicy, Waker};
use mbox_abi::{builtin, EventType, NfInit};
use mbox_stack::l23::StackConfig;
use mbox_stack::tcp::stream::StreamLimits;
use mbox_stack::tcp::Depth;
use mbox_stack::wire::ParseOptions;
use rtrb::{Producer, RingBuffer};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    #[error("{config}: [runtime] cores: {problem}")]
    Cores { config: PathBuf, problem: String },
    #[error("{config}: {clash}")]
    Files { config: PathBuf, clash: Box<FileClash> },
    #[error("{config}: [runtime] memory_limit: {problem}")]
    Memory { config: PathBuf, problem: String },
    #[error(transparent)]
    Control(#[from] ControlError),
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
    fn run(self, idle: IdlePolicy) -> (OutputStats, Option<crate::io::capture::CaptureError>) {
        match self {
            Output::Pcap(out) => out.run(idle),
            #[cfg(feature = "dpdk")]
            Output::Dpdk(out) => (out.run(idle), None),
        }
    }
}

/// The started DPDK ports of `[dpdk]` and how packets reach the shards.
#[cfg(feature = "dpdk")]
struct DpdkPlan {
    ports: Vec<crate::io::dpdk::Port>,
    mempool: Arc<crate::io::dpdk::Mempool>,
    /// Each shard polls its own RX queue and sends on its own TX queue; otherwise one input
    /// thread receives (queue 0) and steers in software, and one output thread sends.
    queues: bool,
    description: String,
}

/// Starts the EAL and the ports of `[dpdk]`, with a queue pair per shard where every port can
/// spread flows symmetrically over that many queues (and `steering` allows).
#[cfg(feature = "dpdk")]
fn start_dpdk(d: &crate::config::DpdkConfig, shards: usize, packet_buffers: usize) -> Result<DpdkPlan, crate::io::dpdk::DpdkError> {
    use crate::config::DpdkSteering;
    use crate::io::dpdk::{rss_flows, DpdkError, Eal, Mempool, Port, MAX_PENDING, RING_SIZE};
    let eal = Eal::start(&d.eal)?;
    let mut infos = Vec::new();
    for &id in &d.ports {
        infos.push((id, Port::info(eal, id)?));
    }
    let n = shards as u16;
    // The RSS hash functions every RSS port shares: both directions of a flow must hash alike
    // on whichever port they arrive.
    let rss_hf = infos.iter().filter(|(_, i)| !i.is_af_packet()).fold(u64::MAX, |acc, (_, i)| acc & rss_flows(i));
    let reta_sizes: Vec<u16> = infos.iter().filter(|(_, i)| !i.is_af_packet()).map(|(_, i)| i.reta_size).collect();
    // Why a queue pair per shard is not possible, if it is not.
    let obstacle = infos.iter().find_map(|(id, info)| {
        if info.is_af_packet() && info.max_rx_queues != n {
            // Its sockets all join the kernel's fanout: each must have a shard reading it.
            Some((*id, format!("(net_af_packet) has qpairs={}, not one per shard ({shards})", info.max_rx_queues)))
        } else if info.max_rx_queues < n || info.max_tx_queues < n {
            Some((*id, format!("has {} RX / {} TX queues for {shards} shards", info.max_rx_queues, info.max_tx_queues)))
        } else if n > 1 && info.flow_hashing().is_none() {
            Some((*id, format!("({}) cannot spread flows over queues (no RSS)", info.driver)))
        } else if n > 1 && !info.is_af_packet() && rss_hf == 0 {
            Some((*id, "shares no RSS hash function with the other ports".to_string()))
        } else if n > 1 && !info.is_af_packet() && reta_sizes.iter().any(|&r| r != info.reta_size || r % n != 0) {
            Some((
                *id,
                format!(
                    "has an RSS redirection table of {} entries: the ports' tables ({reta_sizes:?}) do not split {shards} queues alike",
                    info.reta_size
                ),
            ))
        } else {
            None
        }
    });
    let queues = match (d.steering, &obstacle) {
        (DpdkSteering::Software, _) => false,
        (_, None) => true,
        (DpdkSteering::Queues, Some((port, reason))) => return Err(DpdkError::NoQueuePairs { port: *port, reason: reason.clone() }),
        (DpdkSteering::Auto, Some(_)) => false,
    };
    let per_port = if queues { n } else { 1 };
    if let Some((id, info)) = infos.iter().find(|(_, i)| i.is_af_packet() && i.max_rx_queues != per_port) {
        // The kernel would spread flows over sockets nobody reads: lost, and uncounted.
        return Err(DpdkError::Port {
            port: *id,
            what: "checking its queues",
            reason: format!(
                "net_af_packet with qpairs={} spreads flows over {} sockets, mbox reads {per_port}: set qpairs={per_port}{}",
                info.max_rx_queues,
                info.max_rx_queues,
                if queues { "" } else { " (software steering), or qpairs=<shards> with steering = \"queues\"" }
            ),
        });
    }
    // Every RX and TX ring full, every TX queue's backlog, every packet slot holding one, and
    // a receive burst per shard and port.
    let ports_queues = d.ports.len() * usize::from(per_port);
    let rings = ports_queues * 2 * usize::from(RING_SIZE);
    let slots = if queues { shards * slots_per_shard(packet_buffers, shards) } else { packet_buffers };
    let needed = rings + ports_queues * MAX_PENDING + slots + shards * d.ports.len() * 32;
    let mbufs = match d.mbufs {
        Some(m) if (m as usize) < rings => {
            return Err(DpdkError::Mempool {
                name: "mbox_rx".into(),
                mbufs: m,
                reason: format!("[dpdk] mbufs is below the {rings} the RX and TX rings hold alone (the default here is {needed})"),
            })
        }
        Some(m) => m,
        None => needed.min(u32::MAX as usize) as u32,
    };
    let mempool = Arc::new(Mempool::new(eal, "mbox_rx", mbufs)?);
    let mut ports = Vec::new();
    for (id, _) in &infos {
        ports.push(Port::start(eal, *id, per_port, per_port, &mempool, if queues { rss_hf } else { 0 })?);
    }
    let names: Vec<String> = infos.iter().map(|(id, info)| format!("{id} ({})", info.driver)).collect();
    let how = match (queues, &obstacle) {
        (true, _) if shards == 1 => "the shard polls a queue pair".to_string(),
        (true, _) => format!("a queue pair per shard, flows spread by {}", infos[0].1.flow_hashing().unwrap_or("the port")),
        (false, _) if shards == 1 => "one input thread".to_string(),
        (false, Some((port, reason))) => format!("an input thread steers in software: port {port} {reason}"),
        (false, None) => "an input thread steers in software".to_string(),
    };
    Ok(DpdkPlan { ports, mempool, queues, description: format!("DPDK ports {}; {how}", names.join(", ")) })
}

/// Where each shard's packets come from and go, and the threads that feed and drain them.
struct Io {
    /// Per shard: its input, the pool its packets live in, and its way out.
    shards: Vec<(ShardInput, Arc<PacketPool>, Tx)>,
    /// The input thread's source, allocator and rings to the shards; none when each shard
    /// polls its own queue.
    dispatcher: Option<(Source, Allocator, Vec<Producer<RxPacket>>)>,
    /// The output thread, when one writes or sends what the shards forward.
    output: Option<Output>,
    /// The DPDK ports, for their missed-packet counters at the end.
    #[cfg(feature = "dpdk")]
    ports: Vec<crate::io::dpdk::Port>,
    /// The input, for the summary when the shards read it themselves.
    description: String,
}

/// Builds the run's I/O: captures or the generator through an input thread, DPDK ports through
/// an input thread or a queue pair per shard; a pcap or the ports' other side as output.
fn build_io(config: &Config, shards: usize) -> Result<Io, PipelineError> {
    let rt = &config.runtime;
    #[cfg(feature = "dpdk")]
    let dpdk = match &config.dpdk {
        Some(d) => Some((d, start_dpdk(d, shards, rt.packet_buffers)?)),
        None => None,
    };
    #[cfg(feature = "dpdk")]
    if let Some((d, plan)) = &dpdk {
        if plan.queues {
            return Ok(queue_io(d, plan, shards, rt.packet_buffers));
        }
    }
    #[cfg(not(feature = "dpdk"))]
    let dpdk: Option<((), ())> = None;

    let source = match (&config.input.generator, &dpdk) {
        #[cfg(feature = "dpdk")]
        (_, Some((d, plan))) => Source::Dpdk(Box::new(crate::io::dpdk::DpdkInput::new(
            plan.ports.clone(),
            0,
            plan.mempool.clone(),
            plan.description.clone(),
            d.idle_stop,
            crate::io::dpdk::last_packet_clock(),
        ))),
        (Some(g), _) => Source::generator(g.clone()),
        _ => Source::captures(&config.input).map_err(PipelineError::Input)?,
    };
    // One releaser per shard, and one for the output thread when there is one.
    let has_output = config.output.pcap.is_some() || dpdk.is_some();
    let releasers = shards + usize::from(has_output);
    #[cfg(feature = "dpdk")]
    let give_back = dpdk.as_ref().map(|_| crate::io::dpdk::give_back as unsafe fn(*mut std::ffi::c_void));
    #[cfg(not(feature = "dpdk"))]
    let give_back = None;
    let (pool, alloc, mut releasers) = lending_pool(rt.packet_buffers, INITIAL_BUFFER, releasers, give_back);

    let link = source.link();
    let (output, txs): (Option<Output>, Vec<Tx>) = match (&config.output.pcap, &dpdk) {
        #[cfg(feature = "dpdk")]
        (_, Some((_, plan))) => {
            let own = releasers.pop().expect("a releaser for the output thread");
            let (out, txs) = crate::io::dpdk::DpdkOutput::new(plan.ports.clone(), pool.clone(), own, releasers);
            (Some(Output::Dpdk(out)), txs)
        }
        (Some(path), _) => {
            let own = releasers.pop().expect("a releaser for the output thread");
            let (out, txs) = PcapOutput::new(path.clone(), link, pool.clone(), own, releasers).map_err(PipelineError::Output)?;
            (Some(Output::Pcap(out)), txs)
        }
        _ => (None, releasers.into_iter().map(Tx::discard).collect()),
    };
    let mut producers = Vec::new();
    let mut shard_io = Vec::new();
    for tx in txs {
        let (producer, consumer) = RingBuffer::<RxPacket>::new(RX_RING);
        producers.push(producer);
        shard_io.push((ShardInput::Ring(consumer), pool.clone(), tx));
    }
    Ok(Io {
        shards: shard_io,
        description: source.describe(),
        dispatcher: Some((source, alloc, producers)),
        output,
        #[cfg(feature = "dpdk")]
        ports: dpdk.map(|(_, plan)| plan.ports).unwrap_or_default(),
    })
}

/// A queue pair per shard: each shard receives into, and sends from, a pool of its own.
#[cfg(feature = "dpdk")]
fn queue_io(d: &crate::config::DpdkConfig, plan: &DpdkPlan, shards: usize, packet_buffers: usize) -> Io {
    use crate::io::dpdk::{give_back, last_packet_clock, DpdkInput, QueueInput, QueueTx};
    let slots = slots_per_shard(packet_buffers, shards);
    // One clock of the last packet for all queues: `idle_stop` ends the run, not one shard.
    let last_packet = last_packet_clock();
    let mut shard_io = Vec::new();
    for s in 0..shards {
        let (pool, alloc, mut releasers) = lending_pool(slots, INITIAL_BUFFER, 1, Some(give_back));
        let input =
            DpdkInput::new(plan.ports.clone(), s as u16, plan.mempool.clone(), plan.description.clone(), d.idle_stop, last_packet.clone());
        let tx = Tx::queue(QueueTx::new(plan.ports.clone(), s as u16, pool.clone()), releasers.pop().expect("one releaser"));
        shard_io.push((ShardInput::Queue(Box::new(QueueInput::new(input, alloc))), pool, tx));
    }
    Io { shards: shard_io, dispatcher: None, output: None, ports: plan.ports.clone(), description: plan.description.clone() }
}

/// Packet slots of each shard's own pool with a queue pair per shard: `[runtime]
/// packet_buffers` split between the shards, at least 1024 each (a RX ring's worth).
#[cfg(feature = "dpdk")]
fn slots_per_shard(packet_buffers: usize, shards: usize) -> usize {
    (packet_buffers / shards).max(1024)
}

/// Packet buffer size before any growth (a jumbo-free Ethernet frame fits).
pub(crate) const INITIAL_BUFFER: usize = 2048;
/// Capacity of each input-to-shard ring.
pub(crate) const RX_RING: usize = 1024;
/// Event slots per shard reserved for NF publications (when some NF publishes).
pub(crate) const PUBLICATION_SLOTS: usize = 4096;

/// A config whose plugins are loaded and whose graph is compiled, ready to run.
pub struct Prepared {
    pub config: Config,
    pub config_path: PathBuf,
    pub registry: TypeRegistry,
    pub graph: ServiceGraph,
    pub plugins: Vec<(NfConfig, Arc<Plugin>)>,
    /// The files the run reads and writes (checked: no output is an input or has two writers).
    pub files: RunFiles,
}

/// How deep the TCP monitor runs: as configured, or (auto) as deep as the subscriptions need.
pub fn tcp_depth(mode: TcpMonitor, registry: &TypeRegistry, graph: &ServiceGraph) -> Option<Depth> {
    let wanted = |ty: EventType| registry.index_of_type(ty).is_some_and(|i| graph.wants(i));
    match mode {
        TcpMonitor::Off => None,
        TcpMonitor::State => Some(Depth::State),
        TcpMonitor::Reassembly => Some(Depth::Reassembly),
        TcpMonitor::Auto if wanted(builtin::FLOW_TCP_DATA_RDY) || wanted(builtin::FLOW_TCP_GAP) => Some(Depth::Reassembly),
        TcpMonitor::Auto
            if wanted(builtin::FLOW_TCP_STREAM_END)
                || graph.nfs().iter().any(|nf| nf.subscribes.iter().any(|(_, s)| s.is_a(builtin::PKT_TCP))) =>
        {
            Some(Depth::State)
        }
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
    let files = RunFiles::of(&config, config_path, plugins.iter().map(|(_, p)| p.as_ref()));
    files.check().map_err(|clash| PipelineError::Files { config: config_path.to_path_buf(), clash: Box::new(clash) })?;
    Ok(Prepared { config, config_path: config_path.to_path_buf(), registry, graph, plugins, files })
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
    /// What the run preallocated before its first packet (an estimate from the config).
    pub memory: MemoryEstimate,
    /// Why the `[output] pcap` could not be written in full, if it could not.
    pub output_error: Option<String>,
}

impl RunReport {
    /// Output the run lost: the `[output] pcap`'s write error and every NF's failure to write
    /// its output (an error its `on_finish` returned), one line each naming what was lost.
    pub fn lost_output(&self) -> Vec<String> {
        let pcap = self.output_error.iter().map(|e| format!("[output] pcap: {e}"));
        let nfs = self.nfs.iter().filter_map(|nf| nf.finish_error.as_ref().map(|e| format!("NF `{}`: {e}", nf.name)));
        pcap.chain(nfs).collect()
    }

    /// Events delivered to NF `nf`, by dense type index, summed over the shards.
    pub fn nf_events_in(&self, nf: usize) -> Vec<u64> {
        let mut sums = vec![0u64; self.type_paths.len()];
        for counts in self.shards.iter().filter_map(|s| s.delivered_by_type.get(nf)) {
            for (sum, n) in sums.iter_mut().zip(counts) {
                *sum += n;
            }
        }
        sums
    }
}

/// Options of a run that are not in the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// Runs a prepared pipeline to the end of its input.
pub fn run(prepared: Prepared, opts: RunOptions) -> Result<RunReport, PipelineError> {
    let Prepared { config, config_path, registry, graph, plugins, .. } = prepared;
    let rt = &config.runtime;
    let shards = rt.shards;
    // Before anything big is allocated (or any output file created): a config that cannot fit
    // is refused now, not killed by the kernel later.
    let memory = memory::estimate(&config, graph.nfs(), memory::limit(rt.memory_limit));
    memory.check().map_err(|problem| PipelineError::Memory { config: config_path.clone(), problem })?;
    log::info!("{}", memory.describe());
    let io = build_io(&config, shards)?;
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
            replacing: false,
        };
        instances.push(plugin.create(&init)?);
    }
    drop(bindings);
    // The slow part of start-up is over (NFs load their rules in their constructors): from
    // here a signal stops the run the usual way, at its first packet.
    crate::sys::stop::started();

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
    let Io { shards: shard_io, dispatcher, output, description, .. } = io;
    #[cfg(feature = "dpdk")]
    let ports = io.ports;
    let threads = usize::from(dispatcher.is_some()) + shards + graph.nfs().len() + usize::from(output.is_some());
    let idle = IdlePolicy::new(rt.idle == crate::config::IdleMode::Spin, threads);
    let cores = Cores::check(rt.cores.as_deref(), &config_path)?;
    let nfs = graph.nfs().len();

    let cpu_start = cpu_time();
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(LiveView {
        started,
        cpu_start,
        input_description: description.clone(),
        progress: progress.clone(),
        type_paths: registry.types().iter().map(|t| t.path.clone()).collect(),
        shards: (0..shards).map(|s| Arc::new(Snapshot::new(ShardReport::new(s as u16, registry.len(), graph.nfs().len())))).collect(),
        nfs: graph
            .nfs()
            .iter()
            .zip(&plugins)
            .map(|(spec, (_, plugin))| {
                let (path, version) = (plugin.path.display().to_string(), plugin.descriptor.version.to_string());
                Arc::new(Snapshot::new(NfReport::new(&spec.name, spec.read_only, path, version, registry.len())))
            })
            .collect(),
        memory: memory.clone(),
    });
    let (shard_live, nf_live) = (live.shards.clone(), live.nfs.clone());
    let nf_controls: Vec<Arc<NfControl>> = graph.nfs().iter().map(|_| Arc::default()).collect();
    let metrics = match config.control.metrics {
        Some(addr) => Some(MetricsServer::start(addr, live.clone()).map_err(|source| ControlError::Metrics { addr, source })?),
        None => None,
    };
    // The socket comes up before the threads, so a bad path stops the run before it starts.
    let _control = match &config.control.socket {
        Some(path) => {
            let targets = plugins
                .iter()
                .enumerate()
                .map(|(i, (nf_cfg, plugin))| ReloadTarget {
                    name: graph.nfs()[i].name.clone(),
                    nf_number: (i + 1) as u16,
                    args_json: nf_cfg.args_json(),
                    subscriptions_from_config: nf_cfg.subscribe.is_some(),
                    declared: Declared::of(&plugin.descriptor),
                    library: Mutex::new(plugin.path.clone()),
                    control: nf_controls[i].clone(),
                    waker: nf_wakers[i].clone(),
                })
                .collect();
            let reloader = Reloader::new(targets, registry.clone(), shards as u32, config.flow.table_size as u32);
            let state = ControlState {
                live: live.clone(),
                graph: graph.clone(),
                registry: registry.clone(),
                config_path: config_path.clone(),
                reloader,
                metrics: metrics.as_ref().map(|m| m.addr),
            };
            Some(ControlServer::start(path, Arc::new(state))?)
        }
        None => None,
    };

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
            plugin: plugins[i].1.path.display().to_string(),
            version: plugins[i].1.descriptor.version.to_string(),
            live: nf_live[i].clone(),
            control: nf_controls[i].clone(),
        };
        nf_threads.push(cores.spawn(shards + i, &format!("nf-{}", spec.name), move || worker.run())?);
    }

    let output_thread = match output {
        Some(out) => Some(cores.spawn(shards + nfs + 1, "mbox-output", move || out.run(idle))?),
        None => None,
    };

    let mut shard_threads: Vec<JoinHandle<ShardReport>> = Vec::new();
    for (s, ((lanes, (rx, pool, tx)), arena)) in shard_lanes.into_iter().zip(shard_io).zip(arenas).enumerate() {
        let setup = ShardSetup {
            id: s as u16,
            rx,
            pool,
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
            live: shard_live[s].clone(),
            copy_kept: match config.tcp.out_of_order {
                KeepMode::Auto => config.dpdk.is_some(),
                KeepMode::Hold => false,
                KeepMode::Copy => true,
            },
        };
        shard_threads.push(cores.spawn(s, &format!("mbox-shard-{s}"), move || Shard::new(setup).run())?);
    }

    let input_thread = match dispatcher {
        Some((source, alloc, rings)) => {
            let dispatcher = Dispatcher {
                source,
                alloc,
                rings,
                shard_wakers: shard_wakers.clone(),
                steering: Steering { vlan_in_key: config.flow.vlan_in_key, parse: stack_cfg.parse },
                progress: progress.clone(),
                stop: stop.clone(),
                idle,
            };
            Some(cores.spawn(shards + nfs, "mbox-input", move || dispatcher.run())?)
        }
        None => None,
    };

    let input = match input_thread {
        Some(input_thread) => {
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
            input
        }
        // The shards read their own queues: their reports are summed below.
        None => InputReport { description, ..Default::default() },
    };
    let mut report =
        RunReport { input, type_paths: registry.types().iter().map(|t| t.path.clone()).collect(), memory, ..Default::default() };
    for t in shard_threads {
        let mut shard = join("shard", t)?;
        if let Some(input) = shard.input.take() {
            let r = &mut report.input;
            (r.packets, r.bytes, r.pool_waits) = (r.packets + input.packets, r.bytes + input.bytes, r.pool_waits + input.pool_waits);
        }
        if let Some(out) = shard.output.take() {
            let o = report.output.get_or_insert_with(OutputStats::default);
            (o.packets, o.bytes, o.tx_dropped) = (o.packets + out.packets, o.bytes + out.bytes, o.tx_dropped + out.tx_dropped);
        }
        report.shards.push(shard);
    }
    #[cfg(feature = "dpdk")]
    if report.input.missed == 0 {
        // Counted once for all queues of the ports (an input thread counted it already).
        report.input.missed = crate::io::dpdk::missed(&ports);
    }
    for t in nf_threads {
        report.nfs.push(join("NF", t)?);
    }
    if let Some(t) = output_thread {
        let (stats, error) = join("output", t)?;
        report.output = Some(stats);
        report.output_error = error.map(|e| e.to_string());
    }
    report.wall = started.elapsed();
    report.cpu = cpu_time().saturating_sub(cpu_start);
    Ok(report)
}

/// `[runtime] cores`, checked against the cores this process may use.
struct Cores<'a>(Option<&'a [usize]>);

impl<'a> Cores<'a> {
    fn check(cores: Option<&'a [usize]>, config: &Path) -> Result<Cores<'a>, PipelineError> {
        if let Some(cores) = cores {
            let problem = |problem: String| PipelineError::Cores { config: config.to_path_buf(), problem };
            let allowed = Affinity::current().map_err(|e| problem(format!("reading this process's cores: {e}")))?;
            if let Some(c) = cores.iter().find(|&&c| !allowed.contains(c)) {
                return Err(problem(format!("core {c} is not one this process may run on ({})", allowed.describe())));
            }
        }
        Ok(Cores(cores))
    }

    /// Spawns a pipeline thread; the `slot`th (shards first, then NFs, input, output) is pinned
    /// to the `slot`th listed core, wrapping round.
    fn spawn<T: Send + 'static>(
        &self,
        slot: usize,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, PipelineError> {
        let failed = |e: std::io::Error| PipelineError::Thread(name.to_string(), e.to_string());
        let handle = thread::Builder::new().name(name.to_string()).spawn(f).map_err(failed)?;
        if let Some(cores) = self.0 {
            cores::pin(&handle, cores[slot % cores.len()]).map_err(failed)?;
        }
        Ok(handle)
    }
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
