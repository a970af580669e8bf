//! What the kernel counted at this process's packet sockets on an interface, which DPDK's
//! af_packet driver leaves unread: frames dropped, and frames rolled over to another queue.
//!
//! An af_packet port receives through a packet socket with a memory-mapped ring; when the ring
//! is full (mbox reads too slowly) the kernel drops the frame and counts it in the socket's
//! `PACKET_STATISTICS` (`tp_drops`). DPDK 22.11's af_packet driver never reads that counter (its
//! `imissed` stays 0), so without this a flood mbox cannot keep up with is lost silently. The
//! driver does not expose its sockets either: they are found as the process's file descriptors
//! whose socket inode `/proc/net/packet` lists as bound to the interface.
//!
//! With `qpairs=N` the driver joins its sockets to a fanout group that spreads flows by hash,
//! with `PACKET_FANOUT_FLAG_ROLLOVER` (hard-wired in the driver): a frame whose socket's ring is
//! nearly full (under a quarter free, for a flow that takes most of the socket's recent frames)
//! or full goes to another socket, so another shard than its flow's sees it and the flow's own
//! shard has a hole where it was. `PACKET_ROLLOVER_STATS` (`tp_all`) counts them per socket they
//! were meant for; the kernel answers it only where rollover is on.
//!
//! Reading `PACKET_STATISTICS` resets the kernel's counters, so the drops read are added up
//! here, and any number of readers (the control plane's metrics, the end-of-run report) see
//! one running total. The rollover counters are never reset: they are read as they are.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// The packet sockets of this process bound to one interface, and the drops read from them.
#[derive(Debug)]
pub struct PacketSockets {
    sockets: Vec<RawFd>,
    dropped: AtomicU64,
}

impl PacketSockets {
    /// The process's packet sockets bound to interface `if_index` (of the process's network
    /// namespace); none found is not an error (the counter then stays 0).
    pub fn find(if_index: u32) -> io::Result<PacketSockets> {
        let table = std::fs::read_to_string("/proc/net/packet")?;
        let inodes = socket_inodes(&table, if_index);
        let mut sockets = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let entry = entry?;
            let (Ok(target), Some(fd)) = (std::fs::read_link(entry.path()), entry.file_name().to_str().and_then(|n| n.parse().ok())) else {
                continue; // a descriptor closed while the directory was read
            };
            if socket_inode(&target.to_string_lossy()).is_some_and(|inode| inodes.contains(&inode)) {
                sockets.push(fd);
            }
        }
        sockets.sort_unstable();
        Ok(PacketSockets { sockets, dropped: AtomicU64::new(0) })
    }

    /// How many sockets were found.
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// Frames dropped since [`PacketSockets::find`]: what the sockets counted since the last read,
    /// added to the total.
    pub fn dropped(&self) -> u64 {
        let mut new = 0;
        for &fd in &self.sockets {
            let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
            let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
            // SAFETY: `stats` is a buffer of `len` bytes for the kernel to fill; a descriptor
            // that is no longer a packet socket only makes the call fail.
            let rc = unsafe {
                libc::getsockopt(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, (&mut stats as *mut libc::tpacket_stats).cast(), &mut len)
            };
            if rc == 0 {
                new += u64::from(stats.tp_drops);
            }
        }
        self.dropped.fetch_add(new, Ordering::Relaxed) + new
    }

    /// Frames the kernel's fanout put on another of the sockets than the one their flow hashes
    /// to, since the sockets were made (0 where the sockets do not roll over).
    pub fn rolled_over(&self) -> u64 {
        let mut total = 0;
        for &fd in &self.sockets {
            let mut stats = libc::tpacket_rollover_stats { tp_all: 0, tp_huge: 0, tp_failed: 0 };
            let mut len = std::mem::size_of::<libc::tpacket_rollover_stats>() as libc::socklen_t;
            // SAFETY: as in `dropped`; a socket without rollover makes the call fail (EINVAL).
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_ROLLOVER_STATS,
                    (&mut stats as *mut libc::tpacket_rollover_stats).cast(),
                    &mut len,
                )
            };
            if rc == 0 {
                total += stats.tp_all;
            }
        }
        total
    }
}

/// The inodes of the sockets `/proc/net/packet` (`table`) lists as bound to `if_index`.
fn socket_inodes(table: &str, if_index: u32) -> Vec<u64> {
    // Columns: sk RefCnt Type Proto Iface R Rmem User Inode.
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let iface: u32 = cols.get(4)?.parse().ok()?;
            (iface == if_index).then(|| cols.get(8)?.parse().ok())?
        })
        .collect()
}

/// The inode of a descriptor's link target `socket:[N]`, if it is a socket.
fn socket_inode(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sockets_bound_to_an_interface_are_picked_from_the_kernels_table() {
        let table = "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n\
                     ffff8f0c4a5b2000 3      3    0003   7     1 0      0      81234\n\
                     ffff8f0c4a5b3000 3      3    0003   12    1 0      0      81240\n\
                     ffff8f0c4a5b4000 3      3    0003   7     1 0      0      81299\n\
                     garbage\n";
        assert_eq!(socket_inodes(table, 7), vec![81234, 81299]);
        assert_eq!(socket_inodes(table, 12), vec![81240]);
        assert!(socket_inodes(table, 3).is_empty());
        assert_eq!(socket_inode("socket:[81234]"), Some(81234));
        assert_eq!(socket_inode("pipe:[81234]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn an_interface_without_packet_sockets_counts_nothing() {
        // Loopback's index is 1 in every namespace; this process has no packet socket on it.
        let drops = PacketSockets::find(1).unwrap();
        assert_eq!((drops.sockets(), drops.dropped(), drops.rolled_over()), (0, 0, 0));
    }
}
