//! The end-of-run summary: packets, flows, events per type, drops by cause, per-NF counts and
//! CPU seconds per million packets — as text for people and as JSON for scripts and tests.

use crate::report::RunReport;
use crate::run::memory;
use mbox_abi::reason_name;
use mbox_stack::tcp::stream::StreamStats;
use mbox_stack::wire::ParseError;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// Totals over all shards.
#[derive(Debug, Default)]
struct Totals {
    forwarded: u64,
    dropped_by_nf: u64,
    malformed: Vec<(&'static str, u64)>,
    non_ip: u64,
    flows: [u64; 3],
    ended: Vec<(&'static str, u64)>,
    port_reuse: u64,
    tcp_bad_checksums: u64,
    events: Vec<(String, u64)>,
    delivered: Vec<u64>,
    ring_full: Vec<u64>,
    fragments: [u64; 5],
    fragments_forwarded: u64,
    publications: u64,
    lost_to_dead_nf: u64,
    events_without_slot: u64,
    /// QUIC first flights refused (too many waiting) and read but not reported (no copy room).
    quic_flights: [u64; 2],
    /// Both directions of every TCP connection reassembled, summed.
    streams: StreamStats,
    /// What the shards' services did (none when nothing is served), and the packets built.
    serve: Option<crate::runtime::serve::ServeStats>,
    originated: crate::io::origin::OriginStats,
}

fn totals(r: &RunReport) -> Totals {
    let mut t = Totals::default();
    let mut malformed = [0u64; ParseError::ALL.len()];
    let mut ended = [0u64; 8];
    let mut events = vec![0u64; r.type_paths.len()];
    t.delivered = vec![0; r.nfs.len()];
    t.ring_full = vec![0; r.nfs.len()];
    for s in &r.shards {
        t.forwarded += s.forwarded;
        t.dropped_by_nf += s.dropped_by_nf;
        t.non_ip += s.stack.non_ip;
        t.flows[0] += s.stack.flows_tcp;
        t.flows[1] += s.stack.flows_udp;
        t.flows[2] += s.stack.flows_other;
        t.port_reuse += s.stack.port_reuse;
        t.tcp_bad_checksums += s.stack.tcp_bad_checksums;
        t.fragments_forwarded += s.fragments_forwarded;
        t.publications += s.publications;
        t.lost_to_dead_nf += s.lost_to_dead_nf;
        t.events_without_slot += s.events_without_slot;
        t.quic_flights[0] += s.quic_flights_refused;
        t.quic_flights[1] += s.quic_flights_unreported;
        t.streams += s.stack.streams;
        if let Some(sv) = &s.serve {
            t.serve.get_or_insert_with(Default::default).add(sv);
        }
        t.originated.add(&s.originated);
        let f = &s.stack.fragments;
        for (acc, v) in t.fragments.iter_mut().zip([f.fragments, f.reassembled, f.timed_out, f.no_slot, f.invalid]) {
            *acc += v;
        }
        for (acc, v) in malformed.iter_mut().zip(s.stack.malformed) {
            *acc += v;
        }
        for (acc, v) in ended.iter_mut().zip(s.stack.ended) {
            *acc += v;
        }
        for (acc, v) in events.iter_mut().zip(&s.events_by_type) {
            *acc += v;
        }
        for (i, (d, f)) in s.delivered.iter().zip(&s.ring_full_drops).enumerate() {
            t.delivered[i] += d;
            t.ring_full[i] += f;
        }
    }
    t.malformed = ParseError::ALL.iter().zip(malformed).filter(|(_, n)| *n > 0).map(|(e, n)| (e.name(), n)).collect();
    t.ended = ended.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (reason_name(i as u8), *n)).collect();
    t.events = r.type_paths.iter().cloned().zip(events).filter(|(_, n)| *n > 0).collect();
    t
}

/// Thousands separators, for counts people read.
pub fn n(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cpu_per_mpkt(r: &RunReport) -> f64 {
    if r.input.packets == 0 {
        return 0.0;
    }
    r.cpu.as_secs_f64() / r.input.packets as f64 * 1e6
}

/// The summary as text.
pub fn text(r: &RunReport) -> String {
    let t = totals(r);
    let mut s = String::new();
    let _ = writeln!(s, "input     {}: {} packets, {} bytes on the wire", r.input.description, n(r.input.packets), n(r.input.bytes));
    if let Some(e) = &r.input.error {
        let _ = writeln!(s, "          INPUT ERROR (the packets before it were processed): {e}");
    }
    if r.input.skipped > 0 {
        let _ = writeln!(s, "          skipped {} packets on interfaces of unsupported link types", n(r.input.skipped));
    }
    if let Some(w) = &r.input.impaired {
        let _ = writeln!(
            s,
            "          impaired wire: {} frames in, {} lost, {} reordered, {} duplicated, {} overtaken by delay",
            n(w.sent),
            n(w.lost),
            n(w.reordered),
            n(w.duplicated),
            n(w.overtaken)
        );
    }
    if r.input.missed > 0 {
        let _ = writeln!(s, "          MISSED {} packets: the ports dropped them on arrival (input too slow)", n(r.input.missed));
    }
    if r.input.rolled_over > 0 {
        let _ = writeln!(
            s,
            "          ROLLED OVER {} packets to another shard's queue than their flow's (a ring nearly full: raise af_packet's framecnt); their flows have holes",
            n(r.input.rolled_over)
        );
    }
    let malformed: u64 = t.malformed.iter().map(|(_, v)| v).sum();
    let _ = writeln!(
        s,
        "packets   {} forwarded, {} dropped by NFs, {} malformed, {} non-IP",
        n(t.forwarded),
        n(t.dropped_by_nf),
        n(malformed),
        n(t.non_ip)
    );
    if !t.malformed.is_empty() {
        let causes: Vec<String> = t.malformed.iter().map(|(c, v)| format!("{c} {}", n(*v))).collect();
        let _ = writeln!(s, "          malformed by cause: {}", causes.join(", "));
    }
    if t.tcp_bad_checksums > 0 {
        let _ = writeln!(s, "          {} TCP segments with a wrong checksum left out of the monitor", n(t.tcp_bad_checksums));
    }
    if t.fragments[0] > 0 {
        let f = &t.fragments;
        let _ = writeln!(
            s,
            "fragments {} received, {} datagrams reassembled, {} timed out, {} refused (no slot {}, invalid {}), {} unsteered",
            n(f[0]),
            n(f[1]),
            n(f[2]),
            n(f[3] + f[4]),
            n(f[3]),
            n(f[4]),
            n(r.input.fragments_unsteered)
        );
    }
    let _ =
        writeln!(s, "flows     {} TCP, {} UDP, {} other IP; port reuse {}", n(t.flows[0]), n(t.flows[1]), n(t.flows[2]), n(t.port_reuse));
    if !t.ended.is_empty() {
        let ended: Vec<String> = t.ended.iter().map(|(c, v)| format!("{c} {}", n(*v))).collect();
        let _ = writeln!(s, "          ended by: {}", ended.join(", "));
    }
    let st = &t.streams;
    if st.delivered + st.gap_bytes + st.kept > 0 {
        let _ = writeln!(
            s,
            "streams   {} bytes reassembled, {} gaps ({} bytes, {} acknowledged by the receiver), {} repeated or old bytes, {} not accepted by the receiver; {} segments kept out of order, {} not kept (bounds)",
            n(st.delivered),
            n(st.gaps),
            n(st.gap_bytes),
            n(st.gaps_acknowledged),
            n(st.old_bytes),
            n(st.not_accepted),
            n(st.kept),
            n(st.not_kept)
        );
    }
    if let Some(sv) = &t.serve {
        let _ = writeln!(
            s,
            "services  {} connections accepted ({} established, {} closed, {} reset or timed out), {} refused (full), {} RSTs to strangers; {} bytes received, {} sent; {} ARP requests answered",
            n(sv.accepted),
            n(sv.established),
            n(sv.closed),
            n(sv.aborted),
            n(sv.refused_full),
            n(sv.resets_sent),
            n(sv.bytes_received),
            n(sv.bytes_sent),
            n(sv.arp_replies)
        );
        let o = &t.originated;
        let _ = writeln!(
            s,
            "          {} packets built ({} bytes), {} not built for want of a buffer, {} not sent; {} malformed dropped; {} writes to ended connections",
            n(o.packets),
            n(o.bytes),
            n(o.no_buffer),
            n(o.dropped),
            n(sv.malformed),
            n(sv.writes_to_ended)
        );
    }
    let _ = writeln!(s, "events    {} published by NFs", n(t.publications));
    if t.lost_to_dead_nf > 0 {
        let _ = writeln!(s, "          {} events lost because an NF thread died (see the error below)", n(t.lost_to_dead_nf));
    }
    if t.events_without_slot > 0 {
        let _ =
            writeln!(s, "          {} events lost for want of an event slot (a bug in mbox: please report it)", n(t.events_without_slot));
    }
    if t.quic_flights.iter().any(|&v| v > 0) {
        let _ = writeln!(
            s,
            "          QUIC first flights: {} refused (too many waited at once: reported unreadable), {} read but not reported (no copy budget)",
            n(t.quic_flights[0]),
            n(t.quic_flights[1])
        );
    }
    for (path, count) in &t.events {
        let _ = writeln!(s, "          {path:<22} {:>12}", n(*count));
    }
    if !r.nfs.is_empty() {
        let _ = writeln!(
            s,
            "NFs       {:<16} {:>12} {:>9} {:>10} {:>10} {:>10} {:>9}",
            "name", "events", "batches", "dropped", "verdict", "published", "busy s"
        );
    }
    for (i, nf) in r.nfs.iter().enumerate() {
        let dropped = t.ring_full[i] + nf.dropped_disabled;
        let _ = writeln!(
            s,
            "          {:<16} {:>12} {:>9} {:>10} {:>10} {:>10} {:>9.3}",
            nf.name,
            n(nf.events),
            n(nf.batches),
            n(dropped),
            n(nf.verdict_drops),
            n(nf.published),
            nf.busy_ns as f64 / 1e9
        );
        if t.ring_full[i] > 0 {
            let _ = writeln!(s, "            {} events dropped: ring full", n(t.ring_full[i]));
        }
        if let Some(f) = &nf.failure {
            let _ = writeln!(s, "            DISABLED: {f} ({} events dropped since)", n(nf.dropped_disabled));
        } else if nf.failures > 0 {
            let _ = writeln!(s, "            disabled {} time(s) during the run, revived by reload", n(nf.failures));
        }
        if let Some(f) = &nf.finish_error {
            let _ = writeln!(s, "            failed to finish: {f}");
        }
        if !nf.counters.is_empty() {
            let counters: Vec<String> = nf.counters.iter().map(|(name, v)| format!("{name} {}", n(*v))).collect();
            let _ = writeln!(s, "            {}", counters.join(", "));
        }
        let rejected = nf.publish_not_declared + nf.publish_bad_size + nf.publish_full;
        if rejected > 0 {
            let _ = writeln!(
                s,
                "            {} publish attempts refused (undeclared type {}, bad size {}, queue full {}: an NF that retries, as kit::PublishQueue does, may still deliver these)",
                n(rejected),
                n(nf.publish_not_declared),
                n(nf.publish_bad_size),
                n(nf.publish_full)
            );
        }
    }
    if let Some(o) = &r.output {
        let _ = writeln!(
            s,
            "output    {} packets out{}{}",
            n(o.packets),
            if o.link_mismatch > 0 { format!(", {} of another link type skipped", n(o.link_mismatch)) } else { String::new() },
            if o.tx_dropped > 0 { format!(", {} the port would not take (dropped)", n(o.tx_dropped)) } else { String::new() }
        );
        if let Some(e) = &r.output_error {
            let _ = writeln!(s, "          OUTPUT ERROR (what came after it is not in the file): {e}");
        }
    }
    if !r.memory.parts.is_empty() {
        let limit = r.memory.limit.as_ref().map_or_else(|| "no limit".to_string(), |(b, _)| format!("limit {}", memory::size(*b)));
        let _ = writeln!(s, "memory    {}; {limit}", r.memory.describe());
    }
    let secs = r.wall.as_secs_f64();
    let rate = if secs > 0.0 { r.input.packets as f64 / secs } else { 0.0 };
    let _ = writeln!(
        s,
        "cost      {:.3} s CPU ({:.3} s reading the input), {:.3} s wall, {:.2} CPU-s per million packets, {:.0} packets/s",
        r.cpu.as_secs_f64(),
        r.input.cpu.as_secs_f64(),
        secs,
        cpu_per_mpkt(r),
        rate
    );
    s
}

/// The summary as JSON.
pub fn json(r: &RunReport) -> Value {
    let t = totals(r);
    let to_map = |items: &[(&'static str, u64)]| items.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>();
    // Non-zero counts by type path (counts by dense type index).
    let by_type = |counts: &[u64]| {
        r.type_paths.iter().zip(counts).filter(|(_, n)| **n > 0).map(|(p, n)| (p.clone(), json!(n))).collect::<Map<_, _>>()
    };
    let nfs: Vec<Value> = r
        .nfs
        .iter()
        .enumerate()
        .map(|(i, nf)| {
            let events_in = by_type(&r.nf_events_in(i));
            let events_out = by_type(&nf.published_by_type);
            json!({
                "name": nf.name,
                "plugin": nf.plugin,
                "version": nf.version,
                "read_only": nf.read_only,
                "delivered": t.delivered[i],
                "events_in": events_in,
                "events_out": events_out,
                "ring_used": r.shards.iter().map(|s| s.ring_used.get(i).copied().unwrap_or(0)).sum::<u64>(),
                "ring_capacity": r.shards.iter().map(|s| s.ring_capacity.get(i).copied().unwrap_or(0)).sum::<u64>(),
                "service_ns_per_event": if nf.events > 0 { nf.busy_ns as f64 / nf.events as f64 } else { 0.0 },
                "events": nf.events,
                "batches": nf.batches,
                "dropped_ring_full": t.ring_full[i],
                "dropped_disabled": nf.dropped_disabled,
                "verdict_drops": nf.verdict_drops,
                "published": nf.published,
                "publish_refused": nf.publish_not_declared + nf.publish_bad_size + nf.publish_full,
                "publish_full": nf.publish_full,
                "publish_no_subscriber": nf.publish_no_subscriber,
                "busy_s": nf.busy_ns as f64 / 1e9,
                "failure": nf.failure,
                "failures": nf.failures,
                "log_lines": nf.log_lines,
                "log_lines_dropped": nf.log_lines_dropped,
                "finish_error": nf.finish_error,
                "reloads": nf.reloads,
                "counters": nf.counters.iter().map(|(name, v)| (name.clone(), json!(v))).collect::<serde_json::Map<String, Value>>(),
            })
        })
        .collect();
    json!({
        "input": {
            "source": r.input.description,
            "packets": r.input.packets,
            "bytes": r.input.bytes,
            "skipped": r.input.skipped,
            "missed": r.input.missed,
            "rolled_over": r.input.rolled_over,
            "impaired": r.input.impaired.map(|w| json!({ "sent": w.sent, "lost": w.lost, "reordered": w.reordered, "duplicated": w.duplicated, "overtaken": w.overtaken })),
            "pool_waits": r.input.pool_waits,
            "ring_waits": r.input.ring_waits,
            "error": r.input.error,
            "cpu_s": r.input.cpu.as_secs_f64(),
        },
        "packets": {
            "forwarded": t.forwarded,
            "dropped_by_nf": t.dropped_by_nf,
            "non_ip": t.non_ip,
            "malformed": to_map(&t.malformed),
            "tcp_bad_checksums": t.tcp_bad_checksums,
        },
        "fragments": {
            "received": t.fragments[0],
            "reassembled": t.fragments[1],
            "timed_out": t.fragments[2],
            "no_slot": t.fragments[3],
            "invalid": t.fragments[4],
            "forwarded_unreassembled": t.fragments_forwarded,
            "unsteered": r.input.fragments_unsteered,
        },
        "streams": {
            "delivered_bytes": t.streams.delivered,
            "gaps": t.streams.gaps,
            "gap_bytes": t.streams.gap_bytes,
            "gaps_acknowledged": t.streams.gaps_acknowledged,
            "old_bytes": t.streams.old_bytes,
            "kept_segments": t.streams.kept,
            "not_kept_segments": t.streams.not_kept,
            "not_accepted_bytes": t.streams.not_accepted,
        },
        "services": t.serve.map(|sv| {
            let mut m: Map<String, Value> = sv.named().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let o = &t.originated;
            m.insert("originated".into(), json!({ "packets": o.packets, "bytes": o.bytes, "no_buffer": o.no_buffer, "dropped": o.dropped }));
            Value::Object(m)
        }),
        "flows": { "tcp": t.flows[0], "udp": t.flows[1], "other": t.flows[2], "port_reuse": t.port_reuse, "ended": to_map(&t.ended) },
        "events": t.events.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
        "publications": t.publications,
        "lost_to_dead_nf": t.lost_to_dead_nf,
        "events_without_slot": t.events_without_slot,
        "quic_flights": { "refused": t.quic_flights[0], "unreported": t.quic_flights[1] },
        "nfs": nfs,
        "shards": r.shards.iter().map(|s| json!({
            "id": s.id,
            "packets": s.stack.packets,
            "forwarded": s.forwarded,
            "dropped_by_nf": s.dropped_by_nf,
            "tcp_flows": s.stack.flows_tcp,
            "udp_flows": s.stack.flows_udp,
            "other_flows": s.stack.flows_other,
            "ring_used": s.ring_used,
            "ring_capacity": s.ring_capacity,
            "ring_full_drops": s.ring_full_drops,
        })).collect::<Vec<_>>(),
        "output": r.output.map(|o| json!({
            "packets": o.packets,
            "bytes": o.bytes,
            "link_mismatch": o.link_mismatch,
            "tx_dropped": o.tx_dropped,
            "error": r.output_error,
        })),
        "lost_output": r.lost_output(),
        "memory": {
            "preallocated_bytes": r.memory.total(),
            "parts": r.memory.parts.iter().map(|p| (p.what.replace(' ', "_"), json!(p.bytes))).collect::<Map<_, _>>(),
            "limit_bytes": r.memory.limit.as_ref().map(|(b, _)| b),
            "limit_source": r.memory.limit.as_ref().map(|(_, s)| s),
        },
        "cpu_s": r.cpu.as_secs_f64(),
        "wall_s": r.wall.as_secs_f64(),
        "cpu_s_per_mpkt": cpu_per_mpkt(r),
    })
}

#[cfg(test)]
mod tests {
    use super::n;

    #[test]
    fn thousands() {
        assert_eq!(n(0), "0");
        assert_eq!(n(999), "999");
        assert_eq!(n(1000), "1,000");
        assert_eq!(n(1234567), "1,234,567");
    }
}
