//! Stopping a run from outside: SIGINT (Ctrl-C) and SIGTERM ask the input to stop reading,
//! after which the run ends as at the end of a capture (NFs finish, the summary is printed). A
//! second signal ends the process at once.
//!
//! SIGHUP depends on where mbox runs. Under a service manager or in the background (stderr is
//! not a terminal) it is the conventional "logs were rotated": the run goes on and every NF
//! reopens its output files ([`take_reopen`]; logrotate's `postrotate`, as Suricata takes it).
//! From a terminal it is the terminal going away, and stops the run as SIGTERM does: its
//! default would kill mbox with every result unwritten, and a run left behind would write its
//! progress and summary to a terminal that is gone.
//!
//! During start-up — loading plugins, creating NFs (an IDS may take seconds over its rules),
//! opening outputs — no input is being read yet, and plugin code cannot be interrupted: a
//! [`Startup`] guard's watcher thread then ends the process itself, promptly, with status
//! 128 + the signal's number, after removing the outputs start-up had already created or
//! truncated (so that none is left looking like a run's complete result).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// SIGHUP asks for outputs to be reopened (set at install), and it came.
static HUP_REOPENS: AtomicBool = AtomicBool::new(false);
static REOPEN: AtomicBool = AtomicBool::new(false);
/// The first signal's number.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Where a guarded start-up is: [`NO_GUARD`] (nobody watches: a library user's run),
/// [`STARTING`], [`RUNNING`] or [`ABORTING`].
static PHASE: AtomicU8 = AtomicU8::new(NO_GUARD);
const NO_GUARD: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const ABORTING: u8 = 3;

/// How often the start-up watcher looks for a signal.
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// Whether a stop was asked for.
#[inline]
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Asks for a stop (what the signal handler does).
pub fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Whether a SIGHUP asked for the outputs to be reopened since the last look (then cleared).
pub fn take_reopen() -> bool {
    REOPEN.swap(false, Ordering::Relaxed)
}

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: atomics, and _exit on the second signal.
    if signal == libc::SIGHUP && HUP_REOPENS.load(Ordering::Relaxed) {
        REOPEN.store(true, Ordering::Relaxed);
        return;
    }
    if REQUESTED.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    SIGNAL.store(signal, Ordering::Relaxed);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP; `hup_reopens`: SIGHUP reopens the
/// outputs instead of stopping the run (see the module documentation).
pub fn install(hup_reopens: bool) {
    HUP_REOPENS.store(hup_reopens, Ordering::Relaxed);
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches atomics and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGHUP, handler);
    }
}

/// What an output file was before start-up: whether it existed, and as which inode, size and
/// modification time. Devices and other non-files are never removed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Before {
    Absent,
    File { dev: u64, ino: u64, len: u64, mtime_ns: i128 },
    NotAFile,
}

impl Before {
    fn of(path: &std::path::Path) -> Before {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Before::File {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            },
            Ok(_) => Before::NotAFile,
            Err(_) => Before::Absent,
        }
    }
}

/// Watches for a stop signal during start-up (see the module documentation); [`started`]
/// ends its watch.
pub struct Startup {
    outputs: Arc<Mutex<Vec<(PathBuf, Before)>>>,
}

impl Startup {
    /// Starts watching (call right after [`install`]).
    pub fn watch() -> Startup {
        let outputs: Arc<Mutex<Vec<(PathBuf, Before)>>> = Arc::default();
        PHASE.store(STARTING, Ordering::SeqCst);
        let watched = outputs.clone();
        let spawned = std::thread::Builder::new().name("mbox-startup".into()).spawn(move || loop {
            if PHASE.load(Ordering::SeqCst) != STARTING {
                return;
            }
            if requested() && PHASE.compare_exchange(STARTING, ABORTING, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                let removed = remove_begun(&watched.lock().unwrap_or_else(|e| e.into_inner()));
                let signal = SIGNAL.load(Ordering::Relaxed);
                let name = if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                let note =
                    if removed.is_empty() { String::new() } else { format!("; removed the outputs it had begun: {}", removed.join(", ")) };
                eprintln!("mbox: stopped by {name} during start-up, before any packet was read{note}");
                // SAFETY: ends the process at once, whatever the other threads (plugin code
                // creating an NF) are doing; nothing of theirs is needed any more.
                unsafe { libc::_exit(128 + signal) };
            }
            std::thread::sleep(WATCH_EVERY);
        });
        if let Err(e) = spawned {
            // Without the watcher a signal still ends the run, once start-up is over.
            log::warn!("no start-up watcher ({e}): a signal during start-up takes effect when the run starts");
            PHASE.store(NO_GUARD, Ordering::SeqCst);
        }
        Startup { outputs }
    }

    /// Files start-up may create or truncate: removed if a signal ends start-up after they
    /// changed (what they were now is noted, so that an untouched file is kept).
    pub fn outputs(&self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        for path in paths {
            let before = Before::of(&path);
            outputs.push((path, before));
        }
    }
}

/// Removes the files that changed since they were noted; returns their paths.
fn remove_begun(outputs: &[(PathBuf, Before)]) -> Vec<String> {
    let mut removed = Vec::new();
    for (path, before) in outputs {
        let now = Before::of(path);
        if matches!(now, Before::File { .. }) && now != *before && std::fs::remove_file(path).is_ok() {
            removed.push(path.display().to_string());
        }
    }
    removed
}

/// Start-up is over: from here a signal stops the run the usual way. Called by the pipeline
/// once its NFs exist, before it starts its threads. If the watcher is already ending the
/// process, this waits for that.
pub fn started() {
    if PHASE.compare_exchange(STARTING, RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_err() && PHASE.load(Ordering::SeqCst) == ABORTING {
        loop {
            std::thread::park();
        }
    }
}
