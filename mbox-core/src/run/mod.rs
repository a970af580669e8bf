//! Running a config, step by step:
//!
//! 1. [`prepare`]: load the plugins, register their event types, compile the service graph,
//!    check the files (everything that can be refused before anything is allocated).
//! 2. [`assemble`]: check the memory the run preallocates, build its I/O (captures or the
//!    generator in `offline`, DPDK ports in `live`), create the NF instances, the event arenas
//!    and the lanes between every shard and every NF. Nothing runs yet.
//! 3. [`Assembled::start`]: the live view, the control socket and the metrics endpoint, then
//!    the threads — one per NF instance, the output, one per shard, the input.
//! 4. [`Running::wait`]: the progress bar while the input is read, then every thread joined
//!    and their reports collected into the run's report.
//!
//! Threads: one input (dispatcher) unless the shards read their own devices, one per shard,
//! one per NF instance, and one output thread when the shards' packets go somewhere.

mod error;
mod io;
#[cfg(feature = "dpdk")]
mod live;
pub mod memory;
mod offline;
mod prepare;
mod progress;
mod threads;

pub use error::RunError;
pub use prepare::{prepare, stack_publications, tcp_depth, Prepared};

use crate::config::{Config, IdleMode, KeepMode, NfConfig};
use crate::control::live::LiveView;
use crate::control::metrics::MetricsServer;
use crate::control::reload::{Declared, ReloadTarget, Reloader};
use crate::control::server::{ControlError, ControlServer, ControlState};
use crate::controller::ServiceGraph;
use crate::events::arena::EventArena;
use crate::events::registry::TypeRegistry;
use crate::io::device::{InputReport, OutputStats};
use crate::io::dispatch::{Dispatcher, Progress, Steering};
use crate::io::origin::{Origin, ORIGIN_BUFFERS};
use crate::plugin::Plugin;
use crate::report::RunReport;
use crate::runtime::lane::{lane, LaneRx, LaneTx};
use crate::runtime::live::Snapshot;
use crate::runtime::nf_host::{NfControl, NfReport, NfWorker};
use crate::runtime::serve::{Served, ServiceSpec};
use crate::runtime::shard::{Shard, ShardReport, ShardSetup, PUBLICATION_SLOTS};
use crate::runtime::stream_out::{stream_rings, SendCredits};
use crate::sys::clock::cpu_time;
use crate::sys::park::{IdlePolicy, Waker};
use mbox_abi::{NfBox, NfInit};
use mbox_stack::l23::StackConfig;
use mbox_stack::tcp::stream::StreamLimits;
use mbox_stack::wire::ParseOptions;
use memory::MemoryEstimate;
use progress::ProgressDisplay;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use threads::{join, Cores};

/// Options of a run that are not in the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// Runs a prepared pipeline to the end of its input.
pub fn run(prepared: Prepared, opts: RunOptions) -> Result<RunReport, RunError> {
    assemble(prepared)?.start()?.wait(opts)
}

/// A run built and ready to start: its I/O, NF instances and lanes.
pub struct Assembled {
    config: Config,
    config_path: PathBuf,
    registry: Arc<TypeRegistry>,
    graph: Arc<ServiceGraph>,
    plugins: Vec<(NfConfig, Arc<Plugin>)>,
    memory: MemoryEstimate,
    io: io::Io,
    instances: Vec<NfBox>,
    nf_wakers: Vec<Arc<Waker>>,
    shard_wakers: Vec<Arc<Waker>>,
    nf_lanes: Vec<Vec<LaneRx>>,
    shard_lanes: Vec<Vec<LaneTx>>,
    arenas: Vec<Arc<EventArena>>,
    stack: StackConfig,
    services: Vec<ServiceSpec>,
}

/// Step 2: everything the run needs, built in the order that refuses a bad config soonest.
pub fn assemble(prepared: Prepared) -> Result<Assembled, RunError> {
    let Prepared { config, config_path, registry, graph, plugins, services, .. } = prepared;
    let rt = &config.runtime;
    let shards = rt.shards;
    // Before anything big is allocated (or any output file created): a config that cannot fit
    // is refused now, not killed by the kernel later.
    let memory = memory::estimate(&config, graph.nfs(), memory::limit(rt.memory_limit));
    memory.check().map_err(|problem| RunError::Memory { config: config_path.clone(), problem })?;
    log::info!("{}", memory.describe());
    let io = build_io(&config, shards)?;
    let registry = Arc::new(registry);
    let graph = Arc::new(graph);
    let instances = create_nfs(&config, &registry, &graph, &plugins, flow_slots(&config, &services))?;
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
    let stack = StackConfig {
        flow_slots: config.flow.table_size,
        timeouts: config.flow.timeouts(),
        vlan_in_key: config.flow.vlan_in_key,
        parse: ParseOptions { decap_tunnels: config.flow.decap_tunnels },
        max_fragmented_datagrams: config.flow.max_fragmented_datagrams,
        fragment_timeout_ns: u64::try_from(config.flow.fragment_timeout.as_nanos()).unwrap_or(u64::MAX),
        tcp: tcp_depth(config.tcp.monitor, &registry, &graph),
        stream_limits: StreamLimits { max_kept: config.tcp.max_kept_segments_per_flow, max_distance: config.tcp.max_out_of_order_distance },
        verify_tcp_checksums: config.tcp.verify_checksums,
        midstream_client: match config.flow.midstream_client {
            crate::config::MidstreamClientConfig::First => mbox_stack::l23::MidstreamClient::First,
            crate::config::MidstreamClientConfig::Detect => mbox_stack::l23::MidstreamClient::Detect,
        },
    };
    Ok(Assembled {
        config,
        config_path,
        registry,
        graph,
        plugins,
        memory,
        io,
        instances,
        nf_wakers,
        shard_wakers,
        nf_lanes,
        shard_lanes,
        arenas,
        stack,
        services,
    })
}

/// The run's I/O: DPDK ports when the config has a `[dpdk]` section (an mbox built with the
/// `dpdk` feature), otherwise its captures or the generator.
fn build_io(config: &Config, shards: usize) -> Result<io::Io, RunError> {
    #[cfg(feature = "dpdk")]
    if let Some(d) = &config.dpdk {
        let picks_ports = config.services.iter().any(|s| s.source.is_some());
        return live::build(d, shards, config.runtime.packet_buffers, picks_ports);
    }
    offline::build(config, shards)
}

/// Flow slots NFs may see (`NfInit::flow_slots`): the flow table's, then the services'
/// connections' (a shard numbers its connections' flows after its table's).
fn flow_slots(config: &Config, services: &[ServiceSpec]) -> u32 {
    (config.flow.table_size + Served::capacity(services)).min(u32::MAX as usize) as u32
}

/// Creates the NF instances before anything starts, so that a failing constructor stops the
/// run cleanly.
fn create_nfs(
    config: &Config,
    registry: &TypeRegistry,
    graph: &ServiceGraph,
    plugins: &[(NfConfig, Arc<Plugin>)],
    flow_slots: u32,
) -> Result<Vec<NfBox>, RunError> {
    let bindings = registry.bindings();
    let mut instances = Vec::new();
    for (i, ((nf_cfg, plugin), spec)) in plugins.iter().zip(graph.nfs()).enumerate() {
        let args = nf_cfg.args_json();
        let init = NfInit {
            instance: spec.name.as_str().into(),
            args_json: args.as_str().into(),
            nf_number: (i + 1) as u16,
            shards: config.runtime.shards as u32,
            flow_slots,
            types: bindings.as_slice().into(),
            replacing: false,
        };
        instances.push(plugin.create(&init)?);
    }
    Ok(instances)
}

/// A started run: its threads, and what reading their reports at the end needs.
pub struct Running {
    started: Instant,
    cpu_start: Duration,
    progress: Arc<Progress>,
    type_paths: Vec<String>,
    memory: MemoryEstimate,
    description: String,
    input_thread: Option<JoinHandle<InputReport>>,
    shard_threads: Vec<JoinHandle<ShardReport>>,
    nf_threads: Vec<JoinHandle<NfReport>>,
    output_thread: Option<JoinHandle<(OutputStats, Option<crate::io::capture::CaptureError>)>>,
    missed: Option<crate::io::device::MissedFrames>,
    /// Served while the run goes on; stopped when this is dropped.
    /// The NFs as SIGHUP reaches them (and the control socket, where there is one).
    reloader: Arc<Reloader>,
    _control: Option<ControlServer>,
    _metrics: Option<MetricsServer>,
}

impl Assembled {
    /// Step 3: the control plane, then the threads (NFs first, so that no shard waits for an
    /// NF that is not there yet; the input last).
    pub fn start(self) -> Result<Running, RunError> {
        let Assembled {
            config,
            config_path,
            registry,
            graph,
            plugins,
            memory,
            io,
            instances,
            nf_wakers,
            shard_wakers,
            mut nf_lanes,
            shard_lanes,
            arenas,
            stack,
            services,
        } = self;
        let rt = &config.runtime;
        let (shards, nfs) = (rt.shards, graph.nfs().len());
        let io::Io { shards: mut shard_io, dispatcher, mut output, description, missed, macs } = io;
        let names: Vec<&str> = graph.nfs().iter().map(|nf| nf.name.as_str()).collect();
        log::info!(
            "starting {}: {description}; {shards} shard(s); NFs: {}; {} service(s)",
            config_path.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") },
            services.len()
        );
        // Whether the threads fit the cores decides whether idle ones spin.
        let threads = usize::from(dispatcher.is_some()) + shards + nfs + usize::from(output.is_some());
        let idle = IdlePolicy::new(rt.idle == IdleMode::Spin, threads);
        let cores = Cores::check(rt.cores.as_deref(), &config_path)?;

        let cpu_start = cpu_time();
        let started = Instant::now();
        let progress = Arc::new(Progress::default());
        let type_paths: Vec<String> = registry.types().iter().map(|t| t.path.clone()).collect();
        let live = Arc::new(LiveView {
            started,
            cpu_start,
            input_description: description.clone(),
            progress: progress.clone(),
            missed: missed.clone(),
            type_paths: type_paths.clone(),
            shards: (0..shards).map(|s| Arc::new(Snapshot::new(ShardReport::new(s as u16, registry.len(), nfs)))).collect(),
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
        let nf_controls: Vec<Arc<NfControl>> = graph.nfs().iter().map(|_| Arc::default()).collect();
        let metrics = match config.control.metrics {
            Some(addr) => Some(MetricsServer::start(addr, live.clone()).map_err(|source| ControlError::Metrics { addr, source })?),
            None => None,
        };
        // The NFs as the control socket and SIGHUP reach them.
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
                // Only a reload compares libraries: no hashing without a socket to ask for one.
                running_sha: Mutex::new(config.control.socket.as_ref().and_then(|_| crate::control::reload::library_sha256(&plugin.path))),
                control: nf_controls[i].clone(),
                waker: nf_wakers[i].clone(),
            })
            .collect();
        let reloader = Arc::new(Reloader::new(targets, registry.clone(), shards as u32, flow_slots(&config, &services)));
        // The socket comes up before the threads, so a bad path stops the run before it starts.
        let control = match &config.control.socket {
            Some(path) => {
                let state = ControlState {
                    live: live.clone(),
                    graph: graph.clone(),
                    registry: registry.clone(),
                    config_path: config_path.clone(),
                    reloader: reloader.clone(),
                    metrics: metrics.as_ref().map(|m| m.addr),
                };
                Some(ControlServer::start(path, Arc::new(state))?)
            }
            None => None,
        };

        // What the shards serve: each gets its connection table, its NFs' stream rings and a
        // pool for the packets it builds (their way out: the output thread's ring, or the
        // shard's own sink).
        let services: Arc<[ServiceSpec]> = services.into();
        let mut served: Vec<Option<Served>> = (0..shards).map(|_| None).collect();
        if !services.is_empty() {
            let connections = Served::capacity(&services);
            let serving = graph.serving_nfs();
            // Backends' MACs: an ARP reply reaches one shard, connections waiting for it are on any.
            let neighbors = crate::runtime::serve::Neighbors::new();
            for (s, (_, _, tx)) in shard_io.iter_mut().enumerate() {
                let credits = Arc::new(SendCredits::new(config.flow.table_size as u32, connections));
                let mut shard_served = Served::new(s as u16, services.clone(), macs.clone(), credits.clone(), config.dpdk.is_some());
                shard_served.set_steering(shards, config.flow.vlan_in_key);
                shard_served.share_neighbors(neighbors.clone());
                for (_, lanes) in nf_lanes.iter_mut().enumerate().filter(|(n, _)| serving & (1 << n) != 0) {
                    let (writer, reader) = stream_rings(credits.clone(), shard_wakers[s].clone());
                    lanes[s].streams = Some(writer);
                    shard_served.add_reader(reader);
                }
                let (origin, mut releasers) = Origin::new(ORIGIN_BUFFERS, usize::from(output.is_some()));
                let ring = match (output.as_mut(), releasers.pop()) {
                    (Some(out), Some(releaser)) => Some(out.add_origin(origin.pool().clone(), releaser)),
                    _ => None,
                };
                tx.set_origin(origin, ring);
                served[s] = Some(shard_served);
            }
        }

        let mut nf_threads = Vec::new();
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
                live: live.nfs[i].clone(),
                control: nf_controls[i].clone(),
            };
            nf_threads.push(cores.spawn(shards + i, &format!("nf-{}", spec.name), move || worker.run())?);
        }

        let output_thread = match output {
            Some(out) => Some(cores.spawn(shards + nfs + 1, "mbox-output", move || out.run(idle))?),
            None => None,
        };

        let max_kept = config.tcp.max_kept_segments.unwrap_or(rt.packet_buffers / 4).max(1);
        let copy_kept = match config.tcp.out_of_order {
            KeepMode::Auto => config.dpdk.is_some(),
            KeepMode::Hold => false,
            KeepMode::Copy => true,
        };
        let mut shard_threads = Vec::new();
        for (s, (((lanes, (rx, pool, tx)), arena), served)) in shard_lanes.into_iter().zip(shard_io).zip(arenas).zip(served).enumerate() {
            let setup = ShardSetup {
                id: s as u16,
                rx,
                pool,
                tx,
                stack,
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
                live: live.shards[s].clone(),
                copy_kept,
                served,
            };
            shard_threads.push(cores.spawn(s, &format!("mbox-shard-{s}"), move || Shard::new(setup).run())?);
        }

        let input_thread = match dispatcher {
            Some(io::InputThread { source, alloc, rings }) => {
                let dispatcher = Dispatcher {
                    source,
                    alloc,
                    rings,
                    shard_wakers: shard_wakers.clone(),
                    steering: Steering { vlan_in_key: config.flow.vlan_in_key, parse: stack.parse },
                    progress: progress.clone(),
                    stop: Arc::new(AtomicBool::new(false)),
                    idle,
                };
                Some(cores.spawn(shards + nfs, "mbox-input", move || dispatcher.run())?)
            }
            None => None,
        };
        Ok(Running {
            started,
            cpu_start,
            progress,
            type_paths,
            memory,
            description,
            input_thread,
            shard_threads,
            nf_threads,
            output_thread,
            missed,
            reloader,
            _control: control,
            _metrics: metrics,
        })
    }
}

impl Running {
    /// Step 4: waits for the input to end (drawing progress), then for every thread, and puts
    /// their reports together.
    pub fn wait(self, opts: RunOptions) -> Result<RunReport, RunError> {
        // Until the input ends: the progress bar, and SIGHUP's reopening of the NFs' outputs
        // (on a thread of its own: an NF busy in a long batch must not hold the rest up).
        let bar = opts.progress.then(ProgressDisplay::new).flatten().filter(|_| self.input_thread.is_some());
        let reading = || match &self.input_thread {
            Some(t) => !t.is_finished(),
            None => self.shard_threads.iter().any(|t| !t.is_finished()),
        };
        let mut reopening: Option<thread::JoinHandle<()>> = None;
        // Looks often at first (a short run ends within milliseconds), then every 100 ms.
        let mut pause = Duration::from_millis(1);
        while reading() {
            if let Some(bar) = &bar {
                bar.update(&self.progress);
            }
            // A SIGHUP during a reopening waits for it to end, then reopens again.
            if reopening.as_ref().is_none_or(|t| t.is_finished()) && crate::sys::stop::take_reopen() {
                let reloader = self.reloader.clone();
                reopening = thread::Builder::new().name("mbox-reopen".into()).spawn(move || reloader.reopen_outputs()).ok();
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        if let Some(t) = reopening {
            let _ = t.join();
        }
        let input = match self.input_thread {
            Some(input_thread) => {
                let input = join("input", input_thread)?;
                if let Some(bar) = bar {
                    bar.update(&self.progress);
                    bar.finish();
                }
                input
            }
            // The shards read their own devices: their reports are summed below.
            None => InputReport { description: self.description, ..Default::default() },
        };
        let mut report = RunReport { input, type_paths: self.type_paths, memory: self.memory, ..Default::default() };
        for t in self.shard_threads {
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
        if let Some(missed) = self.missed {
            // The devices' own total, read last (an input thread's read came a little earlier,
            // and shards reading their own queues read none).
            let losses = missed();
            (report.input.missed, report.input.rolled_over) = (losses.missed, losses.rolled_over);
        }
        for t in self.nf_threads {
            report.nfs.push(join("NF", t)?);
        }
        if let Some(t) = self.output_thread {
            let (stats, error) = join("output", t)?;
            report.output = Some(stats);
            report.output_error = error.map(|e| e.to_string());
        }
        report.wall = self.started.elapsed();
        report.cpu = cpu_time().saturating_sub(self.cpu_start);
        log::info!("stopped: {} packets read", report.input.packets);
        Ok(report)
    }
}
