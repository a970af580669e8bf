//! Stopping a run from outside: SIGINT (Ctrl-C) and SIGTERM ask the input to stop reading, after
//! which the run ends as at the end of a capture (NFs finish, the summary is printed).
//! A second signal ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether a stop was asked for.
#[inline]
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Asks for a stop (what the signal handler does).
pub fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap, and _exit on the second signal.
    if REQUESTED.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}
