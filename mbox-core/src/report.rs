//! What a run produced: the input's, every shard's, every NF's and the output's counters, as
//! the run's end reports them (and `mboxctl stats` while it runs, shaped the same).

use crate::io::device::{InputReport, OutputStats};
use crate::run::memory::MemoryEstimate;
use crate::runtime::nf_host::NfReport;
use crate::runtime::shard::ShardReport;
use std::time::Duration;

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
