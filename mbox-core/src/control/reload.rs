//! Reloading an NF's plugin while traffic runs (`mboxctl reload NF [--path P]`), and handing
//! an NF an operator's command (`mboxctl nf NF WORDS...`) on its own thread.
//!
//! The rebuilt library is copied to a unique path first (dlopen hands back the library it
//! already loaded for a path it has seen), loaded there — abi_stable checks its mbox-abi
//! version and layouts before any of its code runs — and compared with the running NF's
//! declarations: the service graph was compiled from them, so a build that publishes other
//! types, subscribes to others, or changes whether it may drop is refused (restart mbox for
//! that). A new instance is then created (`NfInit::replacing`: it appends to its outputs) and
//! handed to the NF's thread, which swaps it in between two batches (`runtime::nf_host`). Any
//! refusal leaves the running instance as it was. Libraries are never unloaded (abi_stable's
//! design): each reload keeps its copy mapped, and the file itself is removed at once.

use crate::events::registry::TypeRegistry;
use crate::plugin::Plugin;
use crate::runtime::nf_host::{ControlRequest, NfCommand, NfControl, Reload};
use crate::sys::park::Waker;
use mbox_abi::{NfDescriptor, NfInit};
use serde_json::{json, Value};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long a reload waits for the NF thread to drain and swap.
const SWAP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a running NF was declared as, to compare a new build with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The plugin's own name (its descriptor's, not the instance's).
    pub plugin: String,
    pub subscribes: Vec<String>,
    pub publishes: Vec<String>,
    pub read_only: bool,
}

impl Declared {
    /// What a plugin's descriptor declares.
    pub fn of(d: &NfDescriptor) -> Declared {
        Declared {
            plugin: d.name.to_string(),
            subscribes: d.subscribes.iter().map(|s| s.to_string()).collect(),
            publishes: d.publishes.iter().map(|s| s.to_string()).collect(),
            read_only: d.read_only,
        }
    }
}

/// One NF instance that can be reloaded.
pub struct ReloadTarget {
    pub name: String,
    /// Its number in the config (1-based), as `NfInit::nf_number`.
    pub nf_number: u16,
    pub args_json: String,
    /// The config lists its subscriptions itself: the plugin's defaults may change.
    pub subscriptions_from_config: bool,
    pub declared: Declared,
    /// The library a plain `reload` loads: the config's, or the last `--path` that worked.
    pub library: Mutex<PathBuf>,
    /// The SHA-256 of the library the running instance came from (`None`: unreadable), to say
    /// when a reload loads the very same bytes (a rebuild of another profile than mbox loads).
    pub running_sha: Mutex<Option<[u8; 32]>>,
    pub control: Arc<NfControl>,
    pub waker: Arc<Waker>,
}

impl ReloadTarget {
    /// Hands the NF's thread `request` and waits for its `answer` (the `what`, for errors): a
    /// request the thread has not started on within [`SWAP_TIMEOUT`] is taken back, so that
    /// nothing changes behind the user's back; one under way ends with an answer.
    fn ask<T>(&self, request: ControlRequest, answer: &mpsc::Receiver<Result<T, String>>, what: &str) -> Result<T, String> {
        self.control.request(request, &self.waker)?;
        match answer.recv_timeout(SWAP_TIMEOUT) {
            Ok(outcome) => outcome,
            Err(_) if self.control.withdraw().is_some() => {
                Err(format!("the NF's thread did not get to the {what} within {} s (it is busy in the NF)", SWAP_TIMEOUT.as_secs()))
            }
            Err(_) => answer.recv().unwrap_or_else(|_| Err(format!("the NF's thread ended during the {what}"))),
        }
    }
}

/// The SHA-256 of the file at `path` (`None` when it cannot be read).
pub fn library_sha256(path: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// Reloads the run's NFs.
pub struct Reloader {
    pub targets: Vec<ReloadTarget>,
    pub registry: Arc<TypeRegistry>,
    pub shards: u32,
    pub flow_slots: u32,
    /// Numbers the unique copies.
    copies: AtomicU64,
}

impl Reloader {
    pub fn new(targets: Vec<ReloadTarget>, registry: Arc<TypeRegistry>, shards: u32, flow_slots: u32) -> Reloader {
        Reloader { targets, registry, shards, flow_slots, copies: AtomicU64::new(0) }
    }

    /// Reloads NF `name` from `path` (default: where it was loaded from). Returns what the
    /// swap did, or why nothing changed.
    pub fn reload(&self, name: &str, path: Option<&Path>) -> Result<Value, String> {
        let target = self.target(name)?;
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => target.library.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        let kept = "the running instance is unchanged";
        let sha = library_sha256(&path);
        let identical = sha.is_some() && *target.running_sha.lock().unwrap_or_else(|e| e.into_inner()) == sha;
        let plugin = self.load_copy(name, &path).map_err(|e| format!("{e}; {kept}"))?;
        let d = &plugin.descriptor;
        if let Some(change) = incompatible(&target.declared, &Declared::of(d), target.subscriptions_from_config) {
            return Err(format!(
                "{} {change}: the service graph was compiled for the old declarations (restart mbox to change them); {kept}",
                path.display()
            ));
        }
        let bindings = self.registry.bindings();
        let init = NfInit {
            instance: name.into(),
            args_json: target.args_json.as_str().into(),
            nf_number: target.nf_number,
            shards: self.shards,
            flow_slots: self.flow_slots,
            types: bindings.as_slice().into(),
            replacing: true,
        };
        let nf = plugin.create(&init).map_err(|e| format!("{e}; {kept}"))?;
        let version = d.version.to_string();
        let (reply, answer) = mpsc::channel();
        let request = Reload { nf, plugin: path.display().to_string(), version: version.clone(), reply };
        let outcome = target.ask(ControlRequest::Reload(request), &answer, "swap").map_err(|e| format!("{e}; {kept}"));
        let reloaded = match outcome {
            Ok(r) => r,
            Err(e) => {
                log::warn!("reload of NF `{name}` from {} failed: {e}", path.display());
                return Err(e);
            }
        };
        log::info!(
            "reloaded NF `{name}` from {} (version {version}; {} events drained, paused {:.1} ms)",
            path.display(),
            reloaded.drained,
            reloaded.pause.as_secs_f64() * 1e3
        );
        *target.library.lock().unwrap_or_else(|e| e.into_inner()) = path.clone();
        *target.running_sha.lock().unwrap_or_else(|e| e.into_inner()) = sha;
        if identical {
            log::warn!("reload of NF `{name}`: {} is byte for byte the library that was running", path.display());
        }
        Ok(json!({
            "nf": name,
            "plugin": path,
            "version": version,
            "drained": reloaded.drained,
            "state_bytes": reloaded.state_bytes,
            "replaced_failed": reloaded.replaced_failed,
            "finish_error": reloaded.finish_error,
            "pause_ms": reloaded.pause.as_secs_f64() * 1e3,
            // The same bytes as before: the same code, its arguments and files read again (a
            // rebuild of the debug profile while mbox loads release ones leaves them so).
            "identical": identical,
        }))
    }

    /// Hands NF `name` the command `line` (`NetworkFunction::command`) and returns its answer.
    pub fn command(&self, name: &str, line: &str) -> Result<Value, String> {
        let target = self.target(name)?;
        let (reply, answer) = mpsc::channel();
        let outcome = target.ask(ControlRequest::Command(NfCommand { line: line.to_string(), reply }), &answer, "command")?;
        log::info!("NF `{name}` command `{line}`: {outcome}");
        Ok(json!({ "nf": name, "command": line, "answer": outcome }))
    }

    /// Has every NF reopen its output files (SIGHUP: `NetworkFunction::reopen_outputs`), one
    /// after another, each on its own thread; logged, a failure as a warning. A plugin built
    /// before the call existed answers that it takes no commands: it has nothing reopened.
    pub fn reopen_outputs(&self) {
        for t in &self.targets {
            let (reply, answer) = mpsc::channel();
            let line = mbox_abi::REOPEN_COMMAND.to_string();
            match t.ask(ControlRequest::Command(NfCommand { line, reply }), &answer, "reopening of its outputs") {
                Ok(what) => log::info!("SIGHUP: NF `{}` reopened {what}", t.name),
                Err(e) if e.contains("takes no commands") => {
                    log::info!("SIGHUP: NF `{}` reopens nothing (built before reopen_outputs)", t.name)
                }
                Err(e) => log::warn!("SIGHUP: NF `{}` could not reopen its outputs: {e}", t.name),
            }
        }
    }

    fn target(&self, name: &str) -> Result<&ReloadTarget, String> {
        self.targets.iter().find(|t| t.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
            crate::hint::no_nf_named(name, &known)
        })
    }

    /// Loads a unique copy of `path`, made next to it (a directory the libraries are already
    /// trusted and allowed to run from, unlike a shared /tmp that others can write to or that
    /// may be mounted noexec) as a new file; the copy is removed once it is mapped, or refused
    /// (a copy that differs in length from its source, or that is not a whole library).
    fn load_copy(&self, name: &str, path: &Path) -> Result<Plugin, String> {
        if !path.is_file() {
            return Err(format!("no library at {}{}", path.display(), crate::plugin::not_found_hint(path)));
        }
        let serial = self.copies.fetch_add(1, Ordering::Relaxed);
        let file = path.file_name().map_or_else(|| "plugin.so".into(), |f| f.to_string_lossy().into_owned());
        let copy = path.with_file_name(format!(".mbox-reload-{}-{serial}-{file}", std::process::id()));
        let copied = (|| {
            let mut from = std::fs::File::open(path)?;
            let mut to = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o700).open(&copy)?;
            let bytes = std::io::copy(&mut from, &mut to)?;
            // Lengths compared after copying: a library still being written (cargo, cp) has
            // grown meanwhile, and a copy of part of it must not be mapped.
            Ok::<_, std::io::Error>((bytes, from.metadata()?.len(), to.metadata()?.len()))
        })();
        let problem = match copied {
            Err(e) => Some(format!("copying {} to {} (the loader needs a new file): {e}", path.display(), copy.display())),
            Ok((bytes, source, written)) if bytes != source || written != source => Some(format!(
                "{} changed while it was copied (still being written?): {bytes} bytes copied, it has {source} now; try again once the build or copy is done",
                path.display()
            )),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            let _ = std::fs::remove_file(&copy);
            return Err(problem);
        }
        let loaded = Plugin::load(name, &copy);
        let _ = std::fs::remove_file(&copy);
        // Messages name the file the user gave, not the copy.
        loaded.map_err(|e| e.to_string().replace(&copy.display().to_string(), &path.display().to_string()))
    }
}

/// What differs between a running NF's declarations and a new build's, if it matters.
fn incompatible(old: &Declared, new: &Declared, subscriptions_from_config: bool) -> Option<String> {
    if old.plugin != new.plugin {
        return Some(format!("is plugin `{}`, not `{}` (a build of the same plugin replaces it)", new.plugin, old.plugin));
    }
    if old.read_only != new.read_only {
        return Some(format!("is {} (the running NF is not)", if new.read_only { "read-only" } else { "not read-only" }));
    }
    if old.publishes != new.publishes {
        return Some(format!("publishes [{}] instead of [{}]", new.publishes.join(", "), old.publishes.join(", ")));
    }
    if !subscriptions_from_config && old.subscribes != new.subscribes {
        return Some(format!("subscribes to [{}] instead of [{}]", new.subscribes.join(", "), old.subscribes.join(", ")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_the_graph_depends_on_refuse_a_build() {
        let old = Declared { plugin: "x".into(), subscribes: vec!["PKT".into()], publishes: vec![], read_only: true };
        let other = Declared { plugin: "y".into(), ..old.clone() };
        assert!(incompatible(&old, &other, true).unwrap().contains("is plugin `y`, not `x`"));
        assert_eq!(incompatible(&old, &old.clone(), false), None);
        let other_subs = Declared { subscribes: vec!["FLOW".into()], ..old.clone() };
        assert!(incompatible(&old, &other_subs, false).unwrap().contains("subscribes to [FLOW] instead of [PKT]"));
        // The config chose the subscriptions: the plugin's defaults do not matter.
        assert_eq!(incompatible(&old, &other_subs, true), None);
        let publishing = Declared { publishes: vec!["ALERT/X".into()], ..old.clone() };
        assert!(incompatible(&old, &publishing, true).unwrap().contains("publishes [ALERT/X]"));
        let dropping = Declared { read_only: false, ..old.clone() };
        assert!(incompatible(&old, &dropping, true).unwrap().contains("not read-only"));
    }
}
