//! The memory a run preallocates before its first packet, estimated from the config, and the
//! limit it must fit (`[runtime] memory_limit`).
//!
//! Every size that is allocated up front — packet buffers, flow tables, event slots and the
//! rings and queues sized by them, fragment slots — is computed by the module that allocates
//! it (`footprint` functions), so the estimate follows the code. What grows later is not in it:
//! TCP state as flows arrive, kept out-of-order copies (up to `[tcp] max_copied_bytes` per
//! shard), fragment buffers on first use, and NFs' own memory. A config whose preallocation
//! alone exceeds the limit is refused before anything is allocated, instead of the kernel
//! killing mbox (or the machine swapping) later.

use crate::config::{Config, MemoryLimit};
use crate::controller::NfSpec;
use crate::events::arena::EventArena;
use crate::io::pool;
use crate::io::RxPacket;
use crate::runtime::lane;
use crate::runtime::shard::Shard;
use mbox_stack::flow_table::FlowTable;
use mbox_stack::fragments::Reassembler;

/// One kind of preallocated memory: what it is, the config keys that size it, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub what: &'static str,
    pub keys: &'static str,
    pub bytes: u64,
}

/// A run's preallocated memory, by part, and the limit it was checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub parts: Vec<Part>,
    /// The limit in bytes and where it came from; none when unlimited or unknown.
    pub limit: Option<(u64, String)>,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// One line for people: the total and its parts, largest first.
    pub fn describe(&self) -> String {
        let mut parts = self.parts.clone();
        parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
        let list: Vec<String> = parts.iter().map(|p| format!("{} {}", p.what, size(p.bytes))).collect();
        format!("about {} preallocated ({})", size(self.total()), list.join(", "))
    }

    /// Refuses an estimate over its limit; the message names the keys to lower: those of the
    /// largest parts, as many as must shrink for the others alone to fit.
    pub fn check(&self) -> Result<(), String> {
        let Some((limit, source)) = &self.limit else { return Ok(()) };
        if self.total() <= *limit {
            return Ok(());
        }
        let mut parts = self.parts.clone();
        parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
        // The largest parts, as many as it takes for the rest alone to fit.
        let mut rest = self.total();
        let mut keys = Vec::new();
        for p in &parts {
            if rest <= *limit {
                break;
            }
            rest -= p.bytes;
            keys.push(p.keys);
        }
        Err(format!(
            "the run would need {} before its first packet, more than the limit of {} ({source}): lower {}, or raise [runtime] memory_limit",
            self.describe(),
            size(*limit),
            keys.join(" and ")
        ))
    }
}

/// Bytes for people: "512 B", "1.5 KiB", "8.0 GiB".
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a run of `config` with the NFs `nfs` preallocates, by part (sizes as
/// `run` makes them).
pub fn estimate(config: &Config, nfs: &[NfSpec], limit: Option<(u64, String)>) -> MemoryEstimate {
    use crate::io::output::TX_RING;
    use crate::io::pool::INITIAL_BUFFER;
    use crate::io::RX_RING;
    use crate::runtime::shard::PUBLICATION_SLOTS;
    let rt = &config.runtime;
    let shards = rt.shards;
    let dpdk = config.dpdk.is_some();
    let has_output = config.output.pcap.is_some() || dpdk;
    let publishers = nfs.iter().filter(|nf| !nf.publishes.is_empty()).count();
    let slots = rt.event_slots + if publishers > 0 { PUBLICATION_SLOTS } else { 0 };
    let per_shard = |bytes: usize| (bytes as u64).saturating_mul(shards as u64);
    // DPDK ports lend their mbufs (the EAL's memory, bounded by its -m or hugepages): the pool
    // only keeps their bookkeeping.
    let packet_buffers = pool::footprint(rt.packet_buffers, INITIAL_BUFFER, shards + usize::from(has_output), dpdk) as u64;
    let backlogs = nfs.len() * lane::backlog_footprint(slots);
    let rings: usize = nfs.iter().map(|nf| lane::footprint(rt.ring_capacity, !nf.publishes.is_empty())).sum();
    let io_rings = (RX_RING + if has_output { TX_RING } else { 0 }) * std::mem::size_of::<RxPacket>();
    let parts = vec![
        Part { what: "packet buffers", keys: "[runtime] packet_buffers", bytes: packet_buffers },
        Part { what: "flow tables", keys: "[flow] table_size (per shard)", bytes: per_shard(FlowTable::footprint(config.flow.table_size)) },
        Part {
            what: "event slots",
            keys: "[runtime] event_slots (per shard, and per NF in each shard's queues)",
            bytes: per_shard(EventArena::footprint(slots) + Shard::footprint(slots, rt.event_slots) + backlogs),
        },
        Part { what: "rings", keys: "[runtime] ring_capacity (per shard and NF)", bytes: per_shard(rings + io_rings) },
        Part {
            what: "fragment slots",
            keys: "[flow] max_fragmented_datagrams (per shard)",
            bytes: per_shard(Reassembler::footprint(config.flow.max_fragmented_datagrams)),
        },
    ];
    let mut parts = parts;
    if !config.services.is_empty() {
        use crate::runtime::stream_out;
        let connections: usize = config.services.iter().map(|s| s.max_connections).sum();
        let serving = config.services.iter().map(|s| s.nfs.len()).sum::<usize>();
        // A shard's own buffers for what it builds, its connection table (send credits, timers,
        // the index) and a pair of stream rings per serving NF. Send buffers and out-of-order
        // copies grow with use, up to each service's buffer_memory per shard.
        let table = connections * (stream_out::SendCredits::footprint(1) + 2 * std::mem::size_of::<u64>() + 64);
        let bytes =
            pool::footprint(crate::io::origin::ORIGIN_BUFFERS, INITIAL_BUFFER, 1, false) + table + serving * stream_out::footprint();
        parts.push(Part { what: "services", keys: "[[service]] max_connections (per shard)", bytes: per_shard(bytes) });
        let buffers: u64 = config.services.iter().map(|s| s.buffer_memory).sum();
        parts.push(Part {
            what: "connection buffers",
            keys: "[[service]] buffer_memory (per shard)",
            bytes: buffers.saturating_mul(shards as u64),
        });
    }
    MemoryEstimate { parts, limit }
}

/// The limit `[runtime] memory_limit` sets: bytes and where they come from, or none.
pub fn limit(setting: MemoryLimit) -> Option<(u64, String)> {
    match setting {
        MemoryLimit::Unlimited => None,
        MemoryLimit::Bytes(b) => Some((b, "[runtime] memory_limit".into())),
        MemoryLimit::Available => available(),
    }
}

/// The memory this process may still use: the kernel's estimate of what is available without
/// swapping, or its cgroup's headroom if that is less. None when neither can be read.
pub fn available() -> Option<(u64, String)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((kib * 1024, "the memory available now, /proc/meminfo".to_string()))
    });
    let cgroup = cgroup_headroom().map(|b| (b, "what this process's cgroup still allows, memory.max".to_string()));
    match (meminfo, cgroup) {
        (Some(m), Some(c)) => Some(if c.0 < m.0 { c } else { m }),
        (m, c) => m.or(c),
    }
}

/// `memory.max - memory.current` of this process's cgroup (v2), when it has a limit.
fn cgroup_headroom() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok().and_then(|t| t.trim().parse::<u64>().ok());
    // "max" does not parse: no limit.
    let max = read("memory.max")?;
    Some(max.saturating_sub(read("memory.current").unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(&format!("[input]\npcap = \"x\"\n{text}"), Path::new("t.toml")).unwrap()
    }

    fn spec(publishes: bool) -> NfSpec {
        NfSpec {
            name: "nf".into(),
            read_only: true,
            subscribes: vec![],
            on_demand: vec![],
            publishes: if publishes { vec![("ALERT/X".into(), mbox_abi::builtin::ALERT)] } else { vec![] },
        }
    }

    #[test]
    fn the_estimate_grows_with_each_size_and_names_its_keys() {
        let base = estimate(&config(""), &[spec(false)], None);
        let part = |e: &MemoryEstimate, what: &str| e.parts.iter().find(|p| p.what == what).unwrap().bytes;
        // The defaults: 8192 buffers of 2 KiB dominate, a few tens of MiB in all.
        assert!(part(&base, "packet buffers") >= 8192 * 2048, "{}", base.describe());
        assert!((16 << 20..128 << 20).contains(&base.total()), "{}", base.describe());
        let doubled = estimate(&config("[runtime]\nshards = 2\n"), &[spec(false)], None);
        assert!(part(&doubled, "flow tables") == 2 * part(&base, "flow tables"));
        assert_eq!(part(&doubled, "packet buffers") - part(&base, "packet buffers"), 8192 * 4, "one more release ring");
        let publishing = estimate(&config(""), &[spec(true)], None);
        assert!(part(&publishing, "event slots") > part(&base, "event slots") + (1 << 20), "publication slots and ring");

        // The accepted maxima: far beyond any machine, refused with the keys to lower.
        let huge = config("[runtime]\nshards = 64\nevent_slots = 4194304\npacket_buffers = 4194304\n[flow]\ntable_size = 67108864\n");
        let e = estimate(&huge, &[spec(false), spec(false)], Some((16 << 30, "test".into())));
        assert!(e.total() > 1 << 40, "{}", e.describe());
        let err = e.check().unwrap_err();
        assert!(err.contains("more than the limit of 16.0 GiB (test)"), "{err}");
        assert!(err.contains("[flow] table_size") && err.contains("[runtime] event_slots"), "{err}");
        assert!(estimate(&huge, &[], None).check().is_ok(), "no limit, no refusal");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(8 << 30), "8.0 GiB");
        assert!(available().is_some_and(|(b, _)| b > 0), "this machine has /proc/meminfo");
    }
}
