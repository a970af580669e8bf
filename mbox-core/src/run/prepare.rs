//! The first step of a run: load the config's plugins, register the event types they publish,
//! compile the service graph from their subscriptions, and check the files the run will read
//! and write — everything that can be refused before anything is allocated or started.

use super::error::RunError;
use crate::config::{Config, ConfigError, NfConfig, TcpMonitor};
use crate::controller::{NfSpec, ServiceGraph};
use crate::events::registry::TypeRegistry;
use crate::files::RunFiles;
use crate::plugin::{default_plugin_dir, library_path, Plugin};
use crate::runtime::serve::ServiceSpec;
use mbox_abi::{builtin, EventType};
use mbox_stack::tcp::Depth;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A config whose plugins are loaded and whose graph is compiled, ready to run.
pub struct Prepared {
    pub config: Config,
    pub config_path: PathBuf,
    pub registry: TypeRegistry,
    pub graph: ServiceGraph,
    pub plugins: Vec<(NfConfig, Arc<Plugin>)>,
    /// The `[[service]]`s, their NFs resolved.
    pub services: Vec<ServiceSpec>,
    /// The files the run reads and writes (checked: no output is an input or has two writers).
    pub files: RunFiles,
}

/// How deep the TCP monitor runs: as configured, or (auto) as deep as the subscriptions need.
pub fn tcp_depth(mode: TcpMonitor, registry: &TypeRegistry, graph: &ServiceGraph) -> Option<Depth> {
    // A service's NFs read only its connections (the Endpoint's bytes, not the monitor's).
    let wanted = |ty: EventType| registry.index_of_type(ty).is_some_and(|i| graph.wants_beyond_services(i));
    match mode {
        TcpMonitor::Off => None,
        TcpMonitor::State => Some(Depth::State),
        TcpMonitor::Reassembly => Some(Depth::Reassembly),
        TcpMonitor::Auto if wanted(builtin::FLOW_TCP_DATA_RDY) || wanted(builtin::FLOW_TCP_GAP) => Some(Depth::Reassembly),
        TcpMonitor::Auto
            if wanted(builtin::FLOW_TCP_STREAM_END)
                || graph
                    .nfs()
                    .iter()
                    .enumerate()
                    .any(|(i, nf)| graph.serving_nfs() & (1 << i) == 0 && nf.routed().any(|(_, s)| s.is_a(builtin::PKT_TCP))) =>
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
pub fn prepare(config: Config, config_path: &Path) -> Result<Prepared, RunError> {
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
    let types_err = |key: String, source| RunError::Types { config: config_path.to_path_buf(), key, source };
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
        let mut on_demand = Vec::new();
        for path in &nf.subscribe_per_flow {
            let ty = registry.type_of(path).map_err(|e| types_err(format!("{} subscribe_per_flow", key_of(i, nf)), e))?;
            on_demand.push((path.clone(), ty));
        }
        let name = nf.name.clone().unwrap_or_else(|| plugin.descriptor.name.to_string());
        specs.push(NfSpec { name, read_only: plugin.descriptor.read_only, subscribes, on_demand, publishes });
    }
    let mut graph = ServiceGraph::compile(&registry, &stack_publications(), specs)
        .map_err(|source| RunError::Graph { config: config_path.to_path_buf(), source })?;
    let mut services = Vec::new();
    for svc in &config.services {
        let mut nfs = 0u64;
        let mut previous: Option<(usize, &str)> = None;
        for name in &svc.nfs {
            let Some(i) = graph.nfs().iter().position(|nf| &nf.name == name) else {
                let names: Vec<&str> = graph.nfs().iter().map(|nf| nf.name.as_str()).collect();
                return Err(ConfigError::Invalid {
                    path: config_path.to_path_buf(),
                    key: format!("[[service]] {} nfs", svc.display_name()),
                    problem: format!("`{name}` is not an [[nf]] of this config (they are: {})", names.join(", ")),
                }
                .into());
            };
            // NFs run in the order of their [[nf]] tables: a service listing them otherwise
            // (a cache after the balancer it must come before) would run them otherwise.
            if let Some((before, prev)) = previous.filter(|&(before, _)| before >= i) {
                let key = format!("[[service]] {} nfs", svc.display_name());
                let problem = if before == i {
                    format!("`{name}` is listed twice")
                } else {
                    format!(
                        "`{name}` is listed after `{prev}` but runs before it: NFs run in the order of their [[nf]] tables; list them here in that order, or move `{prev}`'s [[nf]] table before `{name}`'s"
                    )
                };
                return Err(ConfigError::Invalid { path: config_path.to_path_buf(), key, problem }.into());
            }
            previous = Some((i, name));
            nfs |= 1 << i;
        }
        let spec = ServiceSpec::new(svc, nfs);
        let addrs: Vec<String> = spec.addrs.iter().map(|a| a.to_string()).collect();
        let ports: Vec<String> = spec.ports.iter().map(|p| p.to_string()).collect();
        graph.add_service(spec.name.clone(), format!("{} port {}", addrs.join(", "), ports.join(", ")), nfs);
        services.push(spec);
    }
    if tcp_depth(config.tcp.monitor, &registry, &graph) == Some(Depth::Reassembly) {
        config.validate_reassembly(config_path)?;
    }
    let files = RunFiles::of(&config, config_path, plugins.iter().map(|(_, p)| p.as_ref()));
    files.check().map_err(|clash| RunError::Files { config: config_path.to_path_buf(), clash: Box::new(clash) })?;
    Ok(Prepared { config, config_path: config_path.to_path_buf(), registry, graph, plugins, services, files })
}
