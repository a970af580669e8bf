//! Which CPU cores threads run on: `[runtime] cores` pins pipeline threads to dedicated cores,
//! and the DPDK EAL's own pinning is kept to the EAL's thread.
//!
//! `rte_eal_init` pins the calling thread to the main lcore (`-l 0`: core 0), and threads a
//! thread spawns inherit its mask: without [`Affinity::restore`] every shard and NF would
//! share that one core.

use std::io;
use std::mem;
use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;

/// A set of cores, as the kernel's `cpu_set_t`.
#[derive(Clone, Copy)]
pub struct Affinity(libc::cpu_set_t);

/// The largest core number a `cpu_set_t` holds, plus one.
pub const MAX_CORES: usize = libc::CPU_SETSIZE as usize;

impl Affinity {
    /// The cores the calling thread may run on.
    pub fn current() -> io::Result<Affinity> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set; the kernel fills it.
        let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; `set` is a valid buffer of the given size.
        if unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Affinity(set))
    }

    /// Makes this the calling thread's set again (after a library changed it).
    pub fn restore(&self) -> io::Result<()> {
        // SAFETY: pid 0 is the calling thread; the set is valid.
        if unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &self.0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether `core` is in the set.
    pub fn contains(&self, core: usize) -> bool {
        // SAFETY: CPU_ISSET reads the set; out-of-range cores are excluded first.
        core < MAX_CORES && unsafe { libc::CPU_ISSET(core, &self.0) }
    }

    /// The set's cores, as "0-3,6" for messages.
    pub fn describe(&self) -> String {
        let cores: Vec<usize> = (0..MAX_CORES).filter(|&c| self.contains(c)).collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < cores.len() {
            let start = cores[i];
            while i + 1 < cores.len() && cores[i + 1] == cores[i] + 1 {
                i += 1;
            }
            parts.push(if cores[i] == start { start.to_string() } else { format!("{start}-{}", cores[i]) });
            i += 1;
        }
        parts.join(",")
    }
}

/// Pins the thread of `handle` to `core` alone.
pub fn pin<T>(handle: &JoinHandle<T>, core: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET stays in range (checked).
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    if core >= MAX_CORES {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("core {core} is out of range")));
    }
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: the handle's thread is joinable (not yet joined), so its pthread_t is valid.
    let rc = unsafe { libc::pthread_setaffinity_np(handle.as_pthread_t(), mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_on_its_core_and_restore_undoes_a_change() {
        let before = Affinity::current().unwrap();
        let core = (0..MAX_CORES).find(|&c| before.contains(c)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            rx.recv().unwrap();
            Affinity::current().unwrap().describe()
        });
        pin(&handle, core).unwrap();
        tx.send(()).unwrap();
        assert_eq!(handle.join().unwrap(), core.to_string());

        // A library narrowing this thread's set (as rte_eal_init does), then undone.
        std::thread::spawn(move || {
            let mine = Affinity::current().unwrap();
            let mut one = Affinity(unsafe { mem::zeroed() });
            unsafe { libc::CPU_SET(core, &mut one.0) };
            one.restore().unwrap();
            assert_eq!(Affinity::current().unwrap().describe(), core.to_string());
            mine.restore().unwrap();
            assert_eq!(Affinity::current().unwrap().describe(), before.describe());
        })
        .join()
        .unwrap();
        assert!(pin(&std::thread::spawn(|| ()), MAX_CORES).is_err());
    }
}
