//! Live counters of a running pipeline, the control plane's side: the copies the shard and NF
//! threads publish (`runtime::live`), put together as the run's report so far.

use crate::io::device::{InputReport, MissedFrames};
use crate::io::dispatch::Progress;
use crate::report::RunReport;
use crate::run::memory::MemoryEstimate;
use crate::runtime::live::Snapshot;
use crate::runtime::nf_host::NfReport;
use crate::runtime::shard::ShardReport;
use crate::sys::clock::cpu_time;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a control client can read about the run while it runs.
pub struct LiveView {
    pub started: Instant,
    pub cpu_start: Duration,
    /// The input's description and packet count (the input thread's, or the shards' own
    /// queues, whose counts are in the shard reports).
    pub input_description: String,
    pub progress: Arc<Progress>,
    /// The frames the devices dropped on arrival so far, where the input is a device.
    pub missed: Option<MissedFrames>,
    pub type_paths: Vec<String>,
    pub shards: Vec<Arc<Snapshot<ShardReport>>>,
    pub nfs: Vec<Arc<Snapshot<NfReport>>>,
    pub memory: MemoryEstimate,
}

impl LiveView {
    /// The run so far, shaped as the report at its end (so `summary::json` serves both).
    pub fn report(&self) -> RunReport {
        let shards: Vec<ShardReport> = self.shards.iter().map(|s| s.get()).collect();
        let mut input = InputReport { description: self.input_description.clone(), ..Default::default() };
        input.packets = self.progress.packets.load(Ordering::Relaxed);
        input.bytes = self.progress.bytes.load(Ordering::Relaxed);
        let losses = self.missed.as_ref().map(|missed| missed()).unwrap_or_default();
        (input.missed, input.rolled_over) = (losses.missed, losses.rolled_over);
        for s in &shards {
            if let Some(i) = &s.input {
                input.packets += i.packets;
                input.bytes += i.bytes;
            }
        }
        RunReport {
            input,
            shards,
            nfs: self.nfs.iter().map(|n| n.get()).collect(),
            output: None,
            type_paths: self.type_paths.clone(),
            wall: self.started.elapsed(),
            cpu: cpu_time().saturating_sub(self.cpu_start),
            memory: self.memory.clone(),
            output_error: None,
        }
    }
}
