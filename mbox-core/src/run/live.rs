//! The run's I/O from DPDK ports (`[dpdk]`, an mbox built with the `dpdk` feature): the EAL and
//! the ports started, and either a queue pair per shard — each shard reads its own RX queue and
//! sends on its own TX queue, where every port spreads flows symmetrically — or one input
//! thread that receives and steers in software and one output thread that sends.

use super::error::RunError;
use super::io::{through_threads, Io};
use crate::config::{DpdkConfig, DpdkSteering};
use crate::io::device::{OwnInput, Source};
use crate::io::dpdk::{
    give_back, last_packet_clock, missed, rss_flows, DpdkError, DpdkInput, Eal, Mempool, Port, PortOutput, MAX_PENDING, RING_SIZE,
};
use crate::io::output::Tx;
use crate::io::pool::{lending_pool, INITIAL_BUFFER};
use crate::io::trace::Traced;
use crate::io::ShardInput;
use std::path::Path;
use std::sync::Arc;

/// Builds the I/O of `[dpdk]` for `shards` shards. `picks_ports`: a service picks source ports
/// whose answers must reach the shard that picked them (a splicer, source NAT), which only the
/// software flow hash can promise.
pub(super) fn build(d: &DpdkConfig, shards: usize, packet_buffers: usize, picks_ports: bool) -> Result<Io, RunError> {
    let plan = start(d, shards, packet_buffers, picks_ports)?;
    if plan.queues {
        return queue_pairs(d, &plan, shards, packet_buffers);
    }
    let input = DpdkInput::new(plan.ports.clone(), 0, plan.mempool.clone(), plan.description.clone(), d.idle_stop, last_packet_clock());
    let input = traced(Box::new(input), d.trace.as_deref(), None)?;
    let output = PortOutput::new(plan.ports.clone(), 0, plan.mempool.clone());
    let mut io = through_threads(input, Some(Box::new(output)), packet_buffers, shards, Some(give_back));
    io.macs = plan.ports.iter().map(Port::mac).collect();
    let ports = plan.ports.clone();
    io.missed = Some(Arc::new(move || missed(&ports)));
    Ok(io)
}

/// `input`, traced into `path` when one is given (per shard: `NAME.shardN.pcap`).
fn traced(input: Box<dyn Source>, path: Option<&Path>, shard: Option<usize>) -> Result<Box<dyn Source>, RunError> {
    let Some(path) = path else { return Ok(input) };
    let path = match shard {
        Some(s) => path.with_extension(format!("shard{s}.pcap")),
        None => path.to_path_buf(),
    };
    let link = input.link();
    Ok(Box::new(Traced::new(input, &path, link).map_err(RunError::Output)?))
}

/// The started DPDK ports of `[dpdk]` and how packets reach the shards.
struct DpdkPlan {
    ports: Vec<Port>,
    mempool: Arc<Mempool>,
    /// Each shard polls its own RX queue and sends on its own TX queue; otherwise one input
    /// thread receives (queue 0) and steers in software, and one output thread sends.
    queues: bool,
    description: String,
}

/// Starts the EAL and the ports of `[dpdk]`, with a queue pair per shard where every port can
/// spread flows symmetrically over that many queues (and `steering` allows, and no service
/// picks source ports with more than one shard: see [`build`]).
fn start(d: &DpdkConfig, shards: usize, packet_buffers: usize, picks_ports: bool) -> Result<DpdkPlan, DpdkError> {
    let eal = Eal::start(&d.eal)?;
    let mut infos = Vec::new();
    for &id in &d.ports {
        infos.push((id, Port::info(eal, id)?));
    }
    let n = shards as u16;
    // The RSS hash functions every RSS port shares: both directions of a flow must hash alike
    // on whichever port they arrive.
    let rss_hf = infos.iter().filter(|(_, i)| !i.is_af_packet()).fold(u64::MAX, |acc, (_, i)| acc & rss_flows(i));
    let reta_sizes: Vec<u16> = infos.iter().filter(|(_, i)| !i.is_af_packet()).map(|(_, i)| i.reta_size).collect();
    // Why a queue pair per shard is not possible, if it is not.
    let obstacle = infos.iter().find_map(|(id, info)| {
        if n > 1 && picks_ports {
            Some((
                *id,
                "would spread the backends' answers by its own hash, and a service picks source ports for the software one".to_string(),
            ))
        } else if info.is_af_packet() && info.max_rx_queues != n {
            // Its sockets all join the kernel's fanout: each must have a shard reading it.
            Some((*id, format!("(net_af_packet) has qpairs={}, not one per shard ({shards})", info.max_rx_queues)))
        } else if info.max_rx_queues < n || info.max_tx_queues < n {
            Some((*id, format!("has {} RX / {} TX queues for {shards} shards", info.max_rx_queues, info.max_tx_queues)))
        } else if n > 1 && info.flow_hashing().is_none() {
            Some((*id, format!("({}) cannot spread flows over queues (no RSS)", info.driver)))
        } else if n > 1 && !info.is_af_packet() && rss_hf == 0 {
            Some((*id, "shares no RSS hash function with the other ports".to_string()))
        } else if n > 1 && !info.is_af_packet() && reta_sizes.iter().any(|&r| r != info.reta_size || r % n != 0) {
            Some((
                *id,
                format!(
                    "has an RSS redirection table of {} entries: the ports' tables ({reta_sizes:?}) do not split {shards} queues alike",
                    info.reta_size
                ),
            ))
        } else {
            None
        }
    });
    let queues = match (d.steering, &obstacle) {
        (DpdkSteering::Software, _) => false,
        (_, None) => true,
        (DpdkSteering::Queues, Some((port, reason))) => return Err(DpdkError::NoQueuePairs { port: *port, reason: reason.clone() }),
        (DpdkSteering::Auto, Some(_)) => false,
    };
    let per_port = if queues { n } else { 1 };
    if let Some((id, info)) = infos.iter().find(|(_, i)| i.is_af_packet() && i.max_rx_queues != per_port) {
        // The kernel would spread flows over sockets nobody reads: lost, and uncounted.
        return Err(DpdkError::Port {
            port: *id,
            what: "checking its queues",
            reason: format!(
                "net_af_packet with qpairs={} spreads flows over {} sockets, mbox reads {per_port}: set qpairs={per_port}{}",
                info.max_rx_queues,
                info.max_rx_queues,
                match (queues, picks_ports && n > 1) {
                    (true, _) => "",
                    (false, true) => " (software steering: a service picks source ports)",
                    (false, false) => " (software steering), or qpairs=<shards> with steering = \"queues\"",
                }
            ),
        });
    }
    // Every RX and TX ring full, every TX queue's backlog, every packet slot holding one, and
    // a receive burst per shard and port.
    let ports_queues = d.ports.len() * usize::from(per_port);
    let rings = ports_queues * 2 * usize::from(RING_SIZE);
    let slots = if queues { shards * slots_per_shard(packet_buffers, shards) } else { packet_buffers };
    let needed = rings + ports_queues * MAX_PENDING + slots + shards * d.ports.len() * 32;
    let mbufs = match d.mbufs {
        Some(m) if (m as usize) < rings => {
            return Err(DpdkError::Mempool {
                name: "mbox_rx".into(),
                mbufs: m,
                reason: format!("[dpdk] mbufs is below the {rings} the RX and TX rings hold alone (the default here is {needed})"),
            })
        }
        Some(m) => m,
        None => needed.min(u32::MAX as usize) as u32,
    };
    let mempool = Arc::new(Mempool::new(eal, "mbox_rx", mbufs)?);
    let mut ports = Vec::new();
    for (id, _) in &infos {
        ports.push(Port::start(eal, *id, per_port, per_port, &mempool, if queues { rss_hf } else { 0 })?);
    }
    let names: Vec<String> = infos.iter().map(|(id, info)| format!("{id} ({})", info.driver)).collect();
    let how = match (queues, &obstacle) {
        (true, _) if shards == 1 => "the shard polls a queue pair".to_string(),
        (true, _) => format!("a queue pair per shard, flows spread by {}", infos[0].1.flow_hashing().unwrap_or("the port")),
        (false, _) if shards == 1 => "one input thread".to_string(),
        (false, Some((port, reason))) => format!("an input thread steers in software: port {port} {reason}"),
        (false, None) => "an input thread steers in software".to_string(),
    };
    Ok(DpdkPlan { ports, mempool, queues, description: format!("DPDK ports {}; {how}", names.join(", ")) })
}

/// A queue pair per shard: each shard receives into, and sends from, a pool of its own.
fn queue_pairs(d: &DpdkConfig, plan: &DpdkPlan, shards: usize, packet_buffers: usize) -> Result<Io, RunError> {
    let slots = slots_per_shard(packet_buffers, shards);
    // One clock of the last packet for all queues: `idle_stop` ends the run, not one shard.
    let last_packet = last_packet_clock();
    let mut shard_io = Vec::new();
    for s in 0..shards {
        let (pool, alloc, mut releasers) = lending_pool(slots, INITIAL_BUFFER, 1, Some(give_back));
        let input =
            DpdkInput::new(plan.ports.clone(), s as u16, plan.mempool.clone(), plan.description.clone(), d.idle_stop, last_packet.clone());
        let tx = Tx::own(
            Box::new(PortOutput::new(plan.ports.clone(), s as u16, plan.mempool.clone())),
            pool.clone(),
            releasers.pop().expect("one releaser"),
        );
        let input = traced(Box::new(input), d.trace.as_deref(), Some(s))?;
        shard_io.push((ShardInput::Own(Box::new(OwnInput::new(input, alloc))), pool, tx));
    }
    let ports = plan.ports.clone();
    Ok(Io {
        shards: shard_io,
        dispatcher: None,
        output: None,
        macs: ports.iter().map(Port::mac).collect(),
        missed: Some(Arc::new(move || missed(&ports))),
        description: plan.description.clone(),
    })
}

/// Packet slots of each shard's own pool with a queue pair per shard: `[runtime]
/// packet_buffers` split between the shards, at least 1024 each (a RX ring's worth).
fn slots_per_shard(packet_buffers: usize, shards: usize) -> usize {
    (packet_buffers / shards).max(1024)
}
