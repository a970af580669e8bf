//! DPDK behind a safe layer (feature `dpdk`): the EAL (started once per process), mempools of
//! mbufs, ports with their RX/TX queues, and bursts of owned mbufs. Errors say what to fix: a
//! failed EAL start with DPDK's reason, a missing port, and "EAL started but found 0 ports"
//! (what a vdev whose probe failed looks like — a missing interface, or no CAP_NET_RAW).

use super::device::DeviceLosses;
use crate::sys::cores::Affinity;
use crate::sys::packet_sockets::PacketSockets;
use dpdk_sys as sys;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};
use thiserror::Error;

/// What can go wrong with DPDK.
#[derive(Debug, Error)]
pub enum DpdkError {
    #[error("DPDK's EAL did not start ({args}): {reason}")]
    Eal { args: String, reason: String },
    #[error("DPDK's EAL was already started with other arguments ({0}); a process starts it once")]
    AlreadyStarted(String),
    #[error(
        "DPDK's EAL started but found 0 ports ({0}): a --vdev whose probe failed looks like this (a missing interface, or no CAP_NET_RAW and CAP_NET_ADMIN for af_packet)"
    )]
    NoPorts(String),
    #[error("DPDK port {port} does not exist ({count} ports found)")]
    NoSuchPort { port: u16, count: u16 },
    #[error("DPDK port {port}: {what} failed: {reason}")]
    Port { port: u16, what: &'static str, reason: String },
    #[error("[dpdk] steering = \"queues\": a queue pair per shard is not possible: port {port} {reason}")]
    NoQueuePairs { port: u16, reason: String },
    #[error("DPDK mempool `{name}` ({mbufs} mbufs): {reason}")]
    Mempool { name: String, mbufs: u32, reason: String },
}

/// DPDK's message for an error code (negative return values are `-errno`).
fn reason(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
    unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) }.to_string_lossy().into_owned()
}

/// The started EAL.
#[derive(Debug)]
pub struct Eal {
    args: String,
}

static EAL: OnceLock<Result<Eal, String>> = OnceLock::new();

impl Eal {
    /// Starts the EAL with `args` (as on a DPDK command line, without the program name). A
    /// process starts it once: a second call with the same arguments returns the same EAL, with
    /// other arguments an error.
    pub fn start(args: &[String]) -> Result<&'static Eal, DpdkError> {
        let joined = args.join(" ");
        let started = EAL.get_or_init(|| {
            let mut owned: Vec<CString> = vec![CString::new("mbox").expect("no NUL")];
            for a in args {
                owned.push(CString::new(a.as_str()).map_err(|_| format!("argument `{a}` contains a NUL byte"))?);
            }
            let mut argv: Vec<*mut std::ffi::c_char> = owned.iter().map(|a| a.as_ptr() as *mut _).collect();
            // The EAL pins this thread to its main lcore; mbox's threads, spawned from here,
            // would inherit that. They get the process's cores back (or `[runtime] cores`).
            let cores = Affinity::current().map_err(|e| format!("reading this thread's cores: {e}"))?;
            // SAFETY: argv holds valid NUL-terminated strings that outlive the call (EAL keeps
            // pointers into them: `owned` is leaked below on success).
            let rc = unsafe { sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
            if rc < 0 {
                let _ = cores.restore();
                // SAFETY: reads DPDK's thread-local errno.
                return Err(reason(unsafe { sys::mbox_rte_errno() }));
            }
            // The EAL keeps pointers into the arguments from now on.
            std::mem::forget(owned);
            cores.restore().map_err(|e| format!("restoring this thread's cores after the EAL's start: {e}"))?;
            Ok(Eal { args: joined.clone() })
        });
        match started {
            Ok(eal) if eal.args == joined => Ok(eal),
            Ok(eal) => Err(DpdkError::AlreadyStarted(eal.args.clone())),
            Err(reason) => Err(DpdkError::Eal { args: joined, reason: reason.clone() }),
        }
    }

    /// Ports the EAL found.
    pub fn port_count(&self) -> u16 {
        // SAFETY: the EAL is started.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// Checks that port `port` exists (and that there is any port at all).
    pub fn require_port(&self, port: u16) -> Result<(), DpdkError> {
        match self.port_count() {
            0 => Err(DpdkError::NoPorts(self.args.clone())),
            n if port >= n => Err(DpdkError::NoSuchPort { port, count: n }),
            _ => Ok(()),
        }
    }
}

/// A pool of mbufs (freed when the process ends: DPDK pools live as long as the EAL).
#[derive(Debug)]
pub struct Mempool(NonNull<sys::rte_mempool>);

// SAFETY: DPDK mempools are thread-safe (per-lcore caches and a lock-free ring behind them).
unsafe impl Send for Mempool {}
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `mbufs` packet buffers of DPDK's default size (2 KiB of data after the headroom).
    pub fn new(_eal: &Eal, name: &str, mbufs: u32) -> Result<Mempool, DpdkError> {
        let err = |reason: String| DpdkError::Mempool { name: name.to_string(), mbufs, reason };
        let cname = CString::new(name).map_err(|_| err("the name contains a NUL byte".into()))?;
        // SAFETY: the EAL is started (the `_eal` witness); the name is a valid C string.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                256.min(mbufs / 2),
                0,
                (sys::RTE_MBUF_DEFAULT_BUF_SIZE) as u16,
                sys::rte_socket_id() as i32,
            )
        };
        // SAFETY: reads DPDK's thread-local errno.
        NonNull::new(pool).map(Mempool).ok_or_else(|| err(reason(unsafe { sys::mbox_rte_errno() })))
    }

    /// An empty mbuf from the pool (`None` when the pool is exhausted).
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the process's life.
        NonNull::new(unsafe { sys::mbox_rte_pktmbuf_alloc(self.0.as_ptr()) }).map(Mbuf)
    }
}

/// A packet buffer owned by mbox (freed back to its pool when dropped).
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf belongs to whoever holds its pointer; freeing it from any thread is allowed.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// The packet's bytes (first segment).
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len valid bytes of the mbuf, which we own.
        unsafe {
            let m = self.0.as_ptr();
            std::slice::from_raw_parts(sys::mbox_rte_pktmbuf_mtod(m) as *const u8, usize::from(sys::mbox_rte_pktmbuf_data_len(m)))
        }
    }

    /// Appends `bytes` (`false` when the mbuf has no room for them).
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let Ok(len) = u16::try_from(bytes.len()) else { return false };
        // SAFETY: append returns room for `len` more bytes inside the mbuf, or NULL.
        let at = unsafe { sys::mbox_rte_pktmbuf_append(self.0.as_ptr(), len) };
        if at.is_null() {
            return false;
        }
        // SAFETY: `at` has room for `len` bytes, and `bytes` does not overlap the mbuf.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
        true
    }

    /// The RSS hash the NIC computed (0 when it computed none).
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::mbox_rte_mbuf_rss_hash(self.0.as_ptr()) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool.
        unsafe { sys::mbox_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// What a port is and can do.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// Hash functions the port can spread packets over RX queues with (`RTE_ETH_RSS_*`);
    /// 0 when it has no RSS (mbox then steers in software).
    pub rss_offloads: u64,
    /// The RSS key length the port takes (0: it did not say; 40 bytes then), and the size of
    /// its redirection table (hash -> queue).
    pub hash_key_size: u8,
    pub reta_size: u16,
    /// The kernel interface behind the port (af_packet's), 0 when there is none.
    pub if_index: u32,
}

/// The flow types mbox spreads over queues: IPv4 and IPv6, by addresses and (TCP, UDP) ports.
/// Fragments hash on addresses only (`RTE_ETH_RSS_FRAG_*`), as every RSS NIC does.
const RSS_FLOWS: u64 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 13);

/// The symmetric Toeplitz key of `len` bytes: repeating 0x6d5a makes the hash of (a, b) equal
/// that of (b, a), so both directions of a flow land in one queue (Woo and Park, "Scalable TCP
/// Session Monitoring with Symmetric Receive-side Scaling", 2012).
fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len).map(|i| if i % 2 == 0 { 0x6d } else { 0x5a }).collect()
}

/// The flow types mbox spreads over queues that `port` can hash.
pub fn rss_flows(info: &PortInfo) -> u64 {
    info.rss_offloads & RSS_FLOWS
}

impl PortInfo {
    /// Whether the port is an af_packet vdev: its `qpairs` sockets all join one kernel fanout
    /// group, so flows are spread whether or not anybody reads a socket.
    pub fn is_af_packet(&self) -> bool {
        self.driver == "net_af_packet"
    }

    /// How the port spreads flows over its RX queues so that both directions of a flow meet in
    /// one, or `None` when it cannot (mbox then steers in software). af_packet's queues are
    /// one PACKET_FANOUT group, which the kernel fills by a symmetric flow hash.
    pub fn flow_hashing(&self) -> Option<&'static str> {
        if self.is_af_packet() {
            Some("the kernel's symmetric fanout hash")
        } else if self.rss_offloads & RSS_FLOWS != 0 {
            Some("RSS with a symmetric key")
        } else {
            None
        }
    }
}

/// A started port with `rx_queues` RX and `tx_queues` TX queues.
#[derive(Debug, Clone)]
pub struct Port {
    pub id: u16,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// An af_packet port's sockets, whose kernel drops and rollovers its driver does not count.
    sockets: Option<Arc<PacketSockets>>,
}

/// Descriptors per queue.
pub const RING_SIZE: u16 = 1024;

impl Port {
    /// What port `id` is.
    pub fn info(eal: &Eal, id: u16) -> Result<PortInfo, DpdkError> {
        eal.require_port(id)?;
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: the port exists; `info` is a valid struct to fill.
        let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(DpdkError::Port { port: id, what: "reading its info", reason: reason(rc) });
        }
        // SAFETY: driver_name is a static string of the driver.
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            hash_key_size: info.hash_key_size,
            reta_size: info.reta_size,
            if_index: info.if_index,
        })
    }

    /// Configures and starts port `id` with the given queues, receiving into `pool`. With more
    /// than one RX queue and `rss_hf` (the hash functions every port of the run shares), flows
    /// are spread by the symmetric key, and the redirection table sends hash `h` to queue
    /// `h mod rx_queues`.
    pub fn start(eal: &Eal, id: u16, rx_queues: u16, tx_queues: u16, pool: &Mempool, rss_hf: u64) -> Result<Port, DpdkError> {
        let info = Port::info(eal, id)?;
        if rx_queues > info.max_rx_queues || tx_queues > info.max_tx_queues {
            return Err(DpdkError::Port {
                port: id,
                what: "configuring queues",
                reason: format!(
                    "{rx_queues} RX / {tx_queues} TX queues asked, {} ({}) has {} / {}",
                    info.driver, id, info.max_rx_queues, info.max_tx_queues
                ),
            });
        }
        let fail = |what: &'static str, rc: i32| DpdkError::Port { port: id, what, reason: reason(rc) };
        let mut conf = sys::rte_eth_conf::default();
        let rss = rx_queues > 1 && rss_hf & info.rss_offloads != 0;
        let mut key = symmetric_rss_key(if info.hash_key_size == 0 { 40 } else { usize::from(info.hash_key_size) });
        if rss {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            // DPDK copies the key during configure.
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf & info.rss_offloads;
        }
        // SAFETY: the port exists and is stopped; `conf` is a valid configuration.
        let rc = unsafe { sys::rte_eth_dev_configure(id, rx_queues, tx_queues, &conf) };
        if rc != 0 {
            return Err(fail("configure", rc));
        }
        // SAFETY: as above; queues are set up before the start.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..rx_queues {
            // SAFETY: the pool outlives the port (it lives as long as the process).
            let rc = unsafe { sys::rte_eth_rx_queue_setup(id, q, RING_SIZE, socket, std::ptr::null(), pool.0.as_ptr()) };
            if rc != 0 {
                return Err(fail("setting up an RX queue", rc));
            }
        }
        for q in 0..tx_queues {
            // SAFETY: as above.
            let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, RING_SIZE, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(fail("setting up a TX queue", rc));
            }
        }
        // SAFETY: the port is configured.
        let rc = unsafe { sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(fail("start", rc));
        }
        if rss && info.reta_size > 0 {
            // Hash h -> queue h mod n on every port, so that both directions of a flow (one
            // hash, by the symmetric key) meet in one queue number whatever the driver's
            // default table.
            let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
            let mut table: Vec<sys::rte_eth_rss_reta_entry64> = (0..usize::from(info.reta_size).div_ceil(group))
                .map(|g| {
                    let mut entry = sys::rte_eth_rss_reta_entry64 { mask: u64::MAX, reta: [0; 64] };
                    for (i, q) in entry.reta.iter_mut().enumerate() {
                        *q = ((g * group + i) % usize::from(rx_queues)) as u16;
                    }
                    entry
                })
                .collect();
            // SAFETY: `table` holds reta_size entries in groups of 64, as the call wants.
            let rc = unsafe { sys::rte_eth_dev_rss_reta_update(id, table.as_mut_ptr(), info.reta_size) };
            // A driver without a settable table spreads round robin already.
            if rc != 0 && rc != -(libc::ENOTSUP) {
                return Err(fail("programming the RSS redirection table", rc));
            }
        }
        // The driver made its sockets when the EAL probed the vdev.
        let sockets = match info.is_af_packet() && info.if_index != 0 {
            true => Some(Arc::new(PacketSockets::find(info.if_index).map_err(|e| DpdkError::Port {
                port: id,
                what: "finding its packet sockets (to count what the kernel drops)",
                reason: e.to_string(),
            })?)),
            false => None,
        };
        Ok(Port { id, rx_queues, tx_queues, sockets })
    }

    /// Receives up to `max` packets from RX queue `queue` into `out`; returns how many came.
    pub fn rx_burst(&self, queue: u16, out: &mut Vec<Mbuf>, max: u16) -> usize {
        let mut raw: [*mut sys::rte_mbuf; 64] = [std::ptr::null_mut(); 64];
        let max = max.min(64);
        // SAFETY: `raw` has room for `max` pointers; the queue was set up.
        let n = unsafe { sys::mbox_rte_eth_rx_burst(self.id, queue, raw.as_mut_ptr(), max) };
        out.extend(raw[..usize::from(n)].iter().filter_map(|&m| NonNull::new(m)).map(Mbuf));
        usize::from(n)
    }

    /// Sends (up to 64 of) the packets of `pkts` on TX queue `queue`; the sent ones leave `pkts`
    /// (the port owns and frees them), those it could not take stay, oldest first.
    pub fn tx_burst(&self, queue: u16, pkts: &mut Vec<Mbuf>) -> usize {
        let mut raw: [*mut sys::rte_mbuf; 64] = [std::ptr::null_mut(); 64];
        let n = pkts.len().min(raw.len());
        for (slot, m) in raw.iter_mut().zip(pkts.iter()) {
            *slot = m.0.as_ptr();
        }
        let n = n as u16;
        // SAFETY: `raw` holds `n` valid mbufs we own; the sent ones pass to the driver.
        let sent = usize::from(unsafe { sys::mbox_rte_eth_tx_burst(self.id, queue, raw.as_mut_ptr(), n) });
        for m in pkts.drain(..sent) {
            std::mem::forget(m); // the driver frees it after sending
        }
        sent
    }

    /// The port's MAC address (what mbox answers ARP with for the addresses it serves there).
    pub fn mac(&self) -> [u8; 6] {
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: the port exists; `addr` is a valid struct to fill.
        let rc = unsafe { sys::rte_eth_macaddr_get(self.id, &mut addr) };
        if rc == 0 {
            addr.addr_bytes
        } else {
            [0; 6]
        }
    }

    /// Packets received and sent, and what the port missed or failed: for an af_packet port
    /// the frames the kernel dropped at its full rings too (which its driver does not count),
    /// and those its fanout put on another queue than their flow's.
    pub fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: the port exists; `s` is a valid struct to fill.
        unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        let kernel_drops = self.sockets.as_ref().map_or(0, |k| k.dropped());
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_missed: s.imissed + kernel_drops,
            rx_errors: s.ierrors,
            rx_rolled_over: self.sockets.as_ref().map_or(0, |k| k.rolled_over()),
            tx_errors: s.oerrors,
        }
    }

    /// How many kernel sockets the port's drops are read from (af_packet: one per queue pair).
    pub fn kernel_sockets(&self) -> usize {
        self.sockets.as_ref().map_or(0, |k| k.sockets())
    }
}

/// A port's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    /// Frames received on another queue than their flow's (af_packet's fanout rolls a frame
    /// over when its own queue's ring is nearly full): another shard saw them.
    pub rx_rolled_over: u64,
    pub tx_errors: u64,
}

impl Mbuf {
    /// Gives up ownership: the raw pointer, for a pool slot to carry.
    pub fn into_raw(self) -> *mut std::ffi::c_void {
        let p = self.0.as_ptr() as *mut std::ffi::c_void;
        std::mem::forget(self);
        p
    }

    /// Takes ownership back of what [`Mbuf::into_raw`] gave.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and not have been taken back before.
    pub unsafe fn from_raw(raw: *mut std::ffi::c_void) -> Mbuf {
        Mbuf(NonNull::new(raw as *mut sys::rte_mbuf).expect("a pointer from Mbuf::into_raw"))
    }

    /// Length of the packet (all segments).
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::mbox_rte_pktmbuf_pkt_len(self.0.as_ptr()) }
    }
}

/// What `ports` lost on arrival: dropped (an RX ring was full) or received with errors, and
/// put on another queue than their flow's.
pub fn missed(ports: &[Port]) -> DeviceLosses {
    ports.iter().map(|p| p.stats()).fold(DeviceLosses::default(), |sum, s| DeviceLosses {
        missed: sum.missed + s.rx_missed + s.rx_errors,
        rolled_over: sum.rolled_over + s.rx_rolled_over,
    })
}

/// What the pool calls to give a lent mbuf back: it is freed to its mempool.
///
/// # Safety
/// `token` must come from `Mbuf::into_raw` (as `DpdkInput::next_into` lends them) and be given
/// back once.
pub unsafe fn give_back(token: *mut std::ffi::c_void) {
    drop(unsafe { Mbuf::from_raw(token) });
}

/// The ports mbox receives from (one RX queue of each), polled in turn, their mbufs lent to
/// pool slots.
pub struct DpdkInput {
    ports: Vec<Port>,
    queue: u16,
    /// The pool the ports receive into (kept with the input that depends on it).
    _pool: std::sync::Arc<Mempool>,
    burst: std::collections::VecDeque<(u16, Mbuf)>,
    scratch: Vec<Mbuf>,
    next_port: usize,
    description: String,
    /// `idle_stop`: the input ends once nothing came for this long — on any queue: with a
    /// queue pair per shard, the inputs share the time of the last packet (a quiet queue alone
    /// must not end its shard while flows still reach the others).
    idle_stop: Option<std::time::Duration>,
    last_packet: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A port and its index among the configured ports (what `RxPacket::port` carries).
impl DpdkInput {
    /// Receives from RX queue `queue` of every port. `last_packet` (wall-clock ns, see
    /// [`last_packet_clock`]) is shared by the inputs of all queues.
    pub fn new(
        ports: Vec<Port>,
        queue: u16,
        pool: std::sync::Arc<Mempool>,
        description: String,
        idle_stop: Option<std::time::Duration>,
        last_packet: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> DpdkInput {
        DpdkInput {
            ports,
            queue,
            _pool: pool,
            burst: Default::default(),
            scratch: Vec::with_capacity(32),
            next_port: 0,
            description,
            idle_stop,
            last_packet,
        }
    }
}

impl super::device::Source for DpdkInput {
    fn describe(&self) -> String {
        self.description.clone()
    }

    /// Packets the ports dropped on arrival (RX ring full) or received with errors.
    fn missed(&self) -> DeviceLosses {
        missed(&self.ports)
    }

    /// The next packet, lent to pool slot `idx`.
    fn next_into(&mut self, pool: &super::pool::PacketPool, idx: u32) -> Result<super::device::Next, super::capture::CaptureError> {
        Ok(self.next_lent(pool, idx))
    }
}

impl DpdkInput {
    /// The next packet, lent to pool slot `idx`.
    fn next_lent(&mut self, pool: &super::pool::PacketPool, idx: u32) -> super::device::Next {
        if self.burst.is_empty() {
            // One burst from the next port that has packets.
            for _ in 0..self.ports.len() {
                let i = self.next_port;
                self.next_port = (self.next_port + 1) % self.ports.len();
                if self.ports[i].rx_burst(self.queue, &mut self.scratch, 32) > 0 {
                    self.burst.extend(self.scratch.drain(..).map(|m| (i as u16, m)));
                    if self.idle_stop.is_some() {
                        self.last_packet.store(now_ns(), std::sync::atomic::Ordering::Relaxed);
                    }
                    break;
                }
            }
        }
        let Some((port, mbuf)) = self.burst.pop_front() else {
            let last = self.last_packet.load(std::sync::atomic::Ordering::Relaxed);
            if self.idle_stop.is_some_and(|limit| now_ns().saturating_sub(last) >= limit.as_nanos() as u64) {
                return super::device::Next::End;
            }
            return super::device::Next::Idle;
        };
        let (len, wire_len) = (mbuf.data().len() as u32, mbuf.pkt_len());
        let data = mbuf.data().as_ptr();
        // SAFETY: the caller holds `idx`; the mbuf stays valid until the pool gives it back or
        // an output takes it.
        unsafe { pool.lend(idx, super::pool::Lent { data, len, token: mbuf.into_raw() }) };
        super::device::Next::Packet { link: mbox_stack::wire::LinkType::Ethernet, len, wire_len, ts_ns: now_ns(), port }
    }
}

/// A clock for [`DpdkInput::new`]'s `last_packet`, starting now.
pub fn last_packet_clock() -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    std::sync::Arc::new(std::sync::atomic::AtomicU64::new(now_ns()))
}

/// Wall-clock time in ns since the epoch (live packets carry the time they were received).
fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Transmits what waits for each port on its TX queue `queue`; with `drain`, retries a little
/// and drops (counted) what a port will not take.
fn send(ports: &[Port], queue_id: u16, pending: &mut [Vec<Mbuf>], stats: &mut super::device::OutputStats, drain: bool) {
    {
        for (i, port) in ports.iter().enumerate() {
            let queue = &mut pending[i];
            let mut tries = 0;
            while !queue.is_empty() {
                let sent = port.tx_burst(queue_id, queue);
                stats.packets += sent as u64;
                if sent == 0 {
                    tries += 1;
                    if !drain || tries > 100 {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            if drain && !queue.is_empty() {
                stats.tx_dropped += queue.len() as u64;
                queue.clear();
            } else if queue.len() > MAX_PENDING {
                // The port takes nothing (link down, or a ring that stays full): drop what
                // comes on top, counted, rather than let waiting mbufs empty the mempool and
                // stop every port's receiving.
                stats.tx_dropped += (queue.len() - MAX_PENDING) as u64;
                queue.truncate(MAX_PENDING);
            }
        }
    }
}

/// The way out of a DPDK wire, as a sink: what the shards forward leaves on TX queue `queue`
/// of the other port of its pair, as the very mbuf it came in (nothing is copied); what a shard
/// built itself is copied into an mbuf from `mempool` and leaves by the port it names. The
/// output thread drives it for every shard (queue 0), or each shard drives its own (a queue
/// pair per shard).
pub struct PortOutput {
    ports: Vec<Port>,
    queue: u16,
    mempool: std::sync::Arc<Mempool>,
    pending: Vec<Vec<Mbuf>>,
    stats: super::device::OutputStats,
}

/// Mbufs gathered for a port before a burst goes out.
const TX_BURST: usize = 32;

/// Mbufs waiting for one port's TX queue at most (a ring's worth); more are dropped, counted.
pub const MAX_PENDING: usize = RING_SIZE as usize;

impl PortOutput {
    pub fn new(ports: Vec<Port>, queue: u16, mempool: std::sync::Arc<Mempool>) -> PortOutput {
        let pending = ports.iter().map(|_| Vec::with_capacity(64)).collect();
        PortOutput { ports, queue, mempool, pending, stats: Default::default() }
    }

    /// Queues `mbuf` for port index `out`, sending a burst once enough wait.
    fn queue(&mut self, out: usize, mbuf: Mbuf) {
        if out < self.pending.len() {
            self.pending[out].push(mbuf);
            if self.pending[out].len() >= TX_BURST {
                send(&self.ports, self.queue, &mut self.pending, &mut self.stats, false);
            }
        }
    }
}

impl super::device::Sink for PortOutput {
    /// Takes the packet's mbuf for its way out (the caller gives the slot back).
    fn send(&mut self, pool: &super::pool::PacketPool, pkt: &super::RxPacket) {
        // SAFETY: the caller gives up the slot with the packet.
        let Some(lent) = (unsafe { pool.take_lent(pkt.buf) }) else { return };
        // SAFETY: the token came from Mbuf::into_raw in the input.
        let mbuf = unsafe { Mbuf::from_raw(lent.token) };
        self.stats.bytes += u64::from(mbuf.pkt_len());
        // Pairs are (0,1), (2,3), ...: the other port of the pair.
        self.queue(usize::from(pkt.port) ^ 1, mbuf);
    }

    /// Copies a packet a shard built into a fresh mbuf for port `pkt.port` (the caller keeps
    /// its buffer); a mempool that is out of mbufs drops it, counted.
    fn originate(&mut self, pool: &super::pool::PacketPool, pkt: &super::RxPacket) {
        // SAFETY: the caller holds the slot until this returns.
        let bytes = unsafe { pool.bytes(pkt.buf, pkt.len) };
        let Some(mut mbuf) = self.mempool.alloc() else {
            self.stats.tx_dropped += 1;
            return;
        };
        if !mbuf.append(bytes) {
            self.stats.tx_dropped += 1;
            return;
        }
        self.stats.bytes += u64::from(pkt.len);
        self.queue(usize::from(pkt.port), mbuf);
    }

    fn flush(&mut self, drain: bool) {
        send(&self.ports, self.queue, &mut self.pending, &mut self.stats, drain);
    }

    fn stats(&self) -> super::device::OutputStats {
        self.stats
    }
}
