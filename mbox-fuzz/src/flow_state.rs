//! flow-stats' saved state (what one instance hands the next on a reload).
//!
//! Any bytes are refused or taken, never a panic nor an allocation past the run's flow
//! table; what is taken saves to bytes no longer than what was given, that restore to the
//! same.

/// Flow slots per shard of the run restoring the state.
const FLOW_SLOTS: usize = 64;

/// Saved state. The run has as many shards as it says (when 1 to 8), else one.
pub fn fuzz_flow_state(data: &[u8]) {
    let said = data.get(1..5).map_or(1, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let shards = if (1..=8).contains(&said) { said } else { 1 };
    let Ok(saved) = flow_stats::restore_then_save(data, shards, FLOW_SLOTS) else { return };
    assert!(saved.len() <= data.len(), "{} bytes saved from {}", saved.len(), data.len());
    assert_eq!(flow_stats::restore_then_save(&saved, shards, FLOW_SLOTS).as_ref(), Ok(&saved), "saved state restores to the same");
}
