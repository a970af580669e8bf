//! The control socket: a Unix socket (mode 0600) where `mboxctl` asks a running mbox for its
//! status, counters, service graph and subscriptions.
//!
//! One request per connection: a JSON line such as `{"command":"stats"}`, answered by one JSON
//! line, `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`. Requests are read by one
//! thread and each complete one is served on a thread of its own (`control::listen`); when
//! none is free, `status` is still answered, at once, and other requests are told to retry.

use super::listen::{write_now, Acceptor, Reading, MAX_WORKERS};
use super::live::LiveView;
use super::reload::Reloader;
use crate::controller::ServiceGraph;
use crate::events::registry::TypeRegistry;
use crate::summary;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// How requests are read: one line, within 10 s.
const READING: Reading = Reading { max_request: MAX_REQUEST, deadline: Duration::from_secs(10), complete: |b| b.contains(&b'\n') };

/// A request, as the client sends it.
#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Stats,
    Graph,
    Subscriptions {
        nf: String,
    },
    Reload {
        nf: String,
        path: Option<PathBuf>,
    },
    /// An operator's command for an NF (`NetworkFunction::command`).
    NfCommand {
        nf: String,
        line: String,
    },
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control socket {path}: another mbox is listening there")]
    InUse { path: PathBuf },
    #[error("control socket {path}: a file that is not a socket is there (choose another path)")]
    NotASocket { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
}

/// What the control thread answers from: fixed facts about the run, and the live counters.
pub struct ControlState {
    pub live: Arc<LiveView>,
    pub graph: Arc<ServiceGraph>,
    pub registry: Arc<TypeRegistry>,
    pub config_path: PathBuf,
    pub reloader: Arc<Reloader>,
    /// Where the metrics endpoint listens, if it does.
    pub metrics: Option<std::net::SocketAddr>,
}

impl ControlState {
    /// The state of a run with no NFs, no shards and no traffic yet (what tests and the fuzz
    /// targets answer from).
    pub fn idle() -> ControlState {
        let registry = Arc::new(TypeRegistry::with_builtins());
        let graph =
            ServiceGraph::compile(&registry, &crate::run::stack_publications(), vec![]).expect("the stack's own publications make a graph");
        let live = Arc::new(LiveView {
            started: std::time::Instant::now(),
            cpu_start: Duration::ZERO,
            input_description: "none".into(),
            progress: Arc::default(),
            missed: None,
            type_paths: vec![],
            shards: vec![],
            nfs: vec![],
            memory: Default::default(),
        });
        ControlState {
            live,
            graph: Arc::new(graph),
            registry: registry.clone(),
            config_path: "idle.toml".into(),
            reloader: Arc::new(Reloader::new(vec![], registry, 1, 16)),
            metrics: None,
        }
    }

    /// Answers one request.
    pub fn answer(&self, request: &Request) -> Result<Value, String> {
        match request {
            Request::Status => Ok(self.status()),
            Request::Stats => Ok(summary::json(&self.live.report())),
            Request::Graph => Ok(json!({ "dot": self.graph.to_dot(&self.registry) })),
            Request::Subscriptions { nf } => self.subscriptions(nf),
            Request::Reload { nf, path } => self.reloader.reload(nf, path.as_deref()),
            Request::NfCommand { nf, line } => self.reloader.command(nf, line),
        }
    }

    fn status(&self) -> Value {
        let report = self.live.report();
        let nfs: Vec<Value> = report
            .nfs
            .iter()
            .map(|nf| {
                json!({
                    "name": nf.name,
                    "plugin": nf.plugin,
                    "version": nf.version,
                    "read_only": nf.read_only,
                    "state": if nf.failure.is_some() { "disabled" } else { "running" },
                    "failure": nf.failure,
                    "events": nf.events,
                    "reloads": nf.reloads,
                })
            })
            .collect();
        json!({
            "pid": std::process::id(),
            "config": self.config_path,
            "metrics": self.metrics.map(|a| format!("http://{a}/metrics")),
            "uptime_s": report.wall.as_secs_f64(),
            "input": report.input.description,
            "packets": report.shards.iter().map(|s| s.stack.packets).sum::<u64>(),
            "shards": report.shards.len(),
            "nfs": nfs,
        })
    }

    fn subscriptions(&self, name: &str) -> Result<Value, String> {
        let nfs = self.graph.nfs();
        let Some(index) = nfs.iter().position(|nf| nf.name == name) else {
            let known: Vec<&str> = nfs.iter().map(|nf| nf.name.as_str()).collect();
            return Err(crate::hint::no_nf_named(name, &known));
        };
        let nf = &nfs[index];
        // Where the NF sits on each route that reaches it.
        let mut routes = Vec::new();
        for idx in 0..self.registry.len() {
            let route = self.graph.route(idx);
            if let Some(stage) = route.stages.iter().position(|s| s.contains(&(index as u16))) {
                routes.push(json!({ "type": self.registry.path(idx), "stage": stage + 1, "stages": route.stages.len() }));
            }
        }
        let report = self.live.report();
        Ok(json!({
            "name": nf.name,
            "read_only": nf.read_only,
            "subscribes": nf.subscribes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "subscribes_per_flow": nf.on_demand.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "publishes": nf.publishes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "routes": routes,
            "flow_unsubscriptions": report.nfs.get(index).map_or(0, |r| r.unsubscriptions),
            "flow_subscriptions": report.nfs.get(index).map_or(0, |r| r.subscriptions),
        }))
    }
}

/// The listening control socket.
pub struct ControlServer {
    path: PathBuf,
    acceptor: Option<Acceptor>,
}

impl ControlServer {
    /// Binds `path` (mode 0600; a stale socket left by a dead mbox is replaced, a live one is
    /// not) and starts answering.
    pub fn start(path: &Path, state: Arc<ControlState>) -> Result<ControlServer, ControlError> {
        let io = |source| ControlError::Io { path: path.to_path_buf(), source };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ControlError::NotASocket { path: path.to_path_buf() });
            }
            match UnixStream::connect(path) {
                Ok(_) => return Err(ControlError::InUse { path: path.to_path_buf() }),
                // Left by an mbox that ended: nobody listens.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::fs::remove_file(path).map_err(io)?,
                Err(e) => return Err(io(e)),
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let listener = bind_in_place(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::AddrInUse => ControlError::InUse { path: path.to_path_buf() },
            _ => io(source),
        })?;
        let busy_state = state.clone();
        let acceptor = Acceptor::start(
            "mbox-control",
            listener,
            READING,
            move |stream, request| handle(stream, &request, &state),
            move |stream, request| busy(stream, request, &busy_state),
        )
        .map_err(io)?;
        Ok(ControlServer { path: path.to_path_buf(), acceptor: Some(acceptor) })
    }
}

/// A socket listening at `path`, mode 0600. It is bound and listening under a name of its own
/// in the same folder, then linked into place: a client that waits for the path to appear never
/// finds it between bind and listen (where a connect is refused), and a path that another mbox
/// took meanwhile is not replaced. A folder whose names leave no room for the staging name
/// (sockets' paths are short) or no links binds `path` directly.
fn bind_in_place(path: &Path) -> std::io::Result<UnixListener> {
    let staging = path.with_file_name(format!(".mbox-{}.binding", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let Ok(listener) = bind_private(&staging) else { return bind_private(path) };
    let placed = std::fs::hard_link(&staging, path);
    let _ = std::fs::remove_file(&staging);
    match placed {
        Ok(()) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // A file system without links for sockets.
        Err(_) => bind_private(path),
    }
}

/// A socket bound at `path`, created 0600: no moment where others could connect. (umask is the
/// process's; no other mbox thread creates files yet.)
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file-creation mask.
    let umask = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(umask) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Stop accepting before the path goes.
        self.acceptor.take();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The request in a client's line.
fn parse(request: &[u8]) -> Result<Request, String> {
    let line = std::str::from_utf8(request).map_err(|_| "bad request: not UTF-8".to_string())?;
    serde_json::from_str::<Request>(line).map_err(|e| format!("bad request: {e}"))
}

/// The JSON line that answers the client's `request` bytes (whatever they are).
pub fn answer_line(state: &ControlState, request: &[u8]) -> String {
    reply(parse(request).and_then(|r| state.answer(&r)))
}

/// The JSON line that answers `request` when no serving thread is free: `status` (quick, and
/// what one asks first when something seems wrong) is answered all the same, anything else is
/// told to retry.
pub fn busy_line(state: &ControlState, request: &[u8]) -> String {
    let answer = match parse(request) {
        Ok(Request::Status) => Ok(state.status()),
        Ok(_) => Err(format!("busy: {MAX_WORKERS} requests are being served; try again (status is answered even so)")),
        Err(e) => Err(e),
    };
    reply(answer)
}

/// Answers one request on a serving thread.
fn handle(mut stream: UnixStream, request: &[u8], state: &ControlState) {
    let line = answer_line(state, request);
    // A client that does not read its answer holds the thread no longer than this.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(line.as_bytes());
}

/// Answers when no serving thread is free, without waiting (see [`busy_line`]). An answer the
/// socket does not take at once is dropped.
fn busy(stream: &UnixStream, request: &[u8], state: &ControlState) {
    write_now(stream.as_raw_fd(), busy_line(state, request).as_bytes());
}

/// The JSON line answering a request.
fn reply(answer: Result<Value, String>) -> String {
    let message = match answer {
        Ok(result) => json!({ "ok": true, "result": result }),
        Err(error) => json!({ "ok": false, "error": error }),
    };
    let mut text = message.to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_ones_are_refused() {
        assert!(matches!(serde_json::from_str::<Request>(r#"{"command":"stats"}"#), Ok(Request::Stats)));
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"command":"subscriptions","nf":"dpi"}"#),
            Ok(Request::Subscriptions { nf }) if nf == "dpi"
        ));
        assert!(serde_json::from_str::<Request>(r#"{"command":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"command":"subscriptions"}"#).is_err());
    }

    #[test]
    fn when_busy_status_is_still_answered_and_the_rest_told_to_retry() {
        let state = ControlState::idle();
        let answer = |request: &str| {
            let (server, client) = UnixStream::pair().unwrap();
            busy(&server, request.as_bytes(), &state);
            drop(server);
            let mut text = String::new();
            std::io::Read::read_to_string(&mut &client, &mut text).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        };
        let status = answer("{\"command\":\"status\"}\n");
        assert_eq!((&status["ok"], &status["result"]["pid"]), (&json!(true), &json!(std::process::id())), "{status}");
        let stats = answer("{\"command\":\"stats\"}\n");
        assert!(stats["error"].as_str().unwrap().starts_with("busy: 16 requests are being served"), "{stats}");
    }
}
