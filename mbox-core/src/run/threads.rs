//! Starting and ending the run's threads: each with a name, pinned to its core when `[runtime]
//! cores` says so, and joined with a thread's panic turned into an error.

use super::error::RunError;
use crate::sys::cores::{self, Affinity};
use std::path::Path;
use std::thread::{self, JoinHandle};

/// `[runtime] cores`, checked against the cores this process may use.
pub(super) struct Cores<'a>(Option<&'a [usize]>);

impl<'a> Cores<'a> {
    pub(super) fn check(cores: Option<&'a [usize]>, config: &Path) -> Result<Cores<'a>, RunError> {
        if let Some(cores) = cores {
            let problem = |problem: String| RunError::Cores { config: config.to_path_buf(), problem };
            let allowed = Affinity::current().map_err(|e| problem(format!("reading this process's cores: {e}")))?;
            if let Some(c) = cores.iter().find(|&&c| !allowed.contains(c)) {
                return Err(problem(format!("core {c} is not one this process may run on ({})", allowed.describe())));
            }
        }
        Ok(Cores(cores))
    }

    /// Spawns a pipeline thread; the `slot`th (shards first, then NFs, input, output) is pinned
    /// to the `slot`th listed core, wrapping round.
    pub(super) fn spawn<T: Send + 'static>(
        &self,
        slot: usize,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, RunError> {
        let failed = |e: std::io::Error| RunError::Thread(name.to_string(), e.to_string());
        let handle = thread::Builder::new().name(name.to_string()).spawn(f).map_err(failed)?;
        if let Some(cores) = self.0 {
            cores::pin(&handle, cores[slot % cores.len()]).map_err(failed)?;
        }
        Ok(handle)
    }
}

pub(super) fn join<T>(what: &str, handle: JoinHandle<T>) -> Result<T, RunError> {
    handle.join().map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        RunError::Thread(what.to_string(), msg)
    })
}
