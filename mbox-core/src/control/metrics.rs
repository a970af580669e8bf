//! The metrics endpoint: `GET /metrics` on `[control] metrics` (an address such as
//! `127.0.0.1:9464`) answers with the run's counters in Prometheus' text exposition format —
//! the same numbers `mboxctl stats` shows.

use super::listen::{write_now, Acceptor, Reading, MAX_WORKERS};
use super::live::LiveView;
use crate::report::RunReport;
use mbox_abi::{reason_name, REASON_END_OF_INPUT, REASON_EVICTED, REASON_FIN, REASON_RST, REASON_TIMEOUT};
use mbox_stack::wire::ParseError;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How requests are read: a head (ended by an empty line) within 5 s.
const READING: Reading = Reading {
    max_request: MAX_HEAD,
    deadline: Duration::from_secs(5),
    complete: |b| b.windows(4).any(|w| w == b"\r\n\r\n") || b.windows(2).any(|w| w == b"\n\n"),
};

/// The listening metrics endpoint.
pub struct MetricsServer {
    pub addr: SocketAddr,
    _acceptor: Acceptor,
}

impl MetricsServer {
    /// Binds `addr` and starts serving `live`'s counters.
    pub fn start(addr: SocketAddr, live: Arc<LiveView>) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let acceptor = Acceptor::start(
            "mbox-metrics",
            listener,
            READING,
            move |stream, head| handle(stream, &head, &live),
            |stream, _head| {
                // Only when every serving thread is busy with a complete request: slow or idle
                // clients never take one.
                let text = response("503 Service Unavailable", &format!("busy: {MAX_WORKERS} scrapes are being served\n"));
                write_now(stream.as_raw_fd(), text.as_bytes());
            },
        )?;
        Ok(MetricsServer { addr, _acceptor: acceptor })
    }
}

/// Answers a request head on a serving thread (only its request line matters here).
fn handle(mut stream: TcpStream, head: &[u8], live: &LiveView) {
    let request_line = head.split(|&b| b == b'\n').next().map(String::from_utf8_lossy).unwrap_or_default();
    // A client that does not read its answer holds the thread no longer than this.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut words = request_line.split_whitespace();
    let text = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => response("200 OK", &render(&live.report())),
        (Some("GET"), Some(_)) => response("404 Not Found", "mbox serves its metrics at /metrics\n"),
        _ => response("405 Method Not Allowed", "GET /metrics\n"),
    };
    let _ = stream.write_all(text.as_bytes());
}

/// A whole HTTP response.
fn response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A label value, escaped as the format wants.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes metric families: `# HELP`, `# TYPE`, then samples.
struct Families {
    out: String,
}

impl Families {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP mbox_{name} {help}\n# TYPE mbox_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "mbox_{name}");
        if !labels.is_empty() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.out, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one sample per item.
    fn each<T>(&mut self, name: &str, kind: &str, help: &str, items: &[T], sample: impl Fn(&mut Families, &T)) {
        self.family(name, kind, help);
        for item in items {
            sample(self, item);
        }
    }
}

/// The report in Prometheus' text format.
pub fn render(r: &RunReport) -> String {
    let mut f = Families { out: String::new() };
    f.family("uptime_seconds", "gauge", "Seconds since the run started.");
    f.sample("uptime_seconds", &[], r.wall.as_secs_f64());
    f.family("cpu_seconds_total", "counter", "CPU seconds (user and system) the run used.");
    f.sample("cpu_seconds_total", &[], r.cpu.as_secs_f64());
    f.family("build_info", "gauge", "1, labelled with mbox's version, its commit, the plugin ABI's and whether DPDK is built in.");
    let dpdk = if cfg!(feature = "dpdk") { "true" } else { "false" };
    let labels =
        [("version", env!("CARGO_PKG_VERSION")), ("commit", env!("MBOX_COMMIT")), ("abi", mbox_abi::ABI_CRATE_VERSION), ("dpdk", dpdk)];
    f.sample("build_info", &labels, 1);
    f.family("input_packets_total", "counter", "Packets the input delivered.");
    f.sample("input_packets_total", &[], r.input.packets);
    f.family("input_bytes_total", "counter", "Bytes of the packets the input delivered.");
    f.sample("input_bytes_total", &[], r.input.bytes);
    f.family(
        "input_missed_total",
        "counter",
        "Frames the ports dropped on arrival: mbox read too slowly (a full RX ring), or they came with errors.",
    );
    f.sample("input_missed_total", &[], r.input.missed);
    f.family(
        "input_rolled_over_total",
        "counter",
        "Frames a port put on another queue than their flow's (af_packet's fanout, when a queue's ring is nearly full): their flow's shard did not see them.",
    );
    f.sample("input_rolled_over_total", &[], r.input.rolled_over);

    let shards = &r.shards;
    let id = |s: &crate::runtime::shard::ShardReport| s.id.to_string();
    f.each("shard_packets_total", "counter", "Packets a shard's stack processed.", shards, |f, s| {
        f.sample("shard_packets_total", &[("shard", &id(s))], s.stack.packets)
    });
    f.each("shard_forwarded_total", "counter", "Packets a shard forwarded.", shards, |f, s| {
        f.sample("shard_forwarded_total", &[("shard", &id(s))], s.forwarded)
    });
    f.each("shard_dropped_by_nf_total", "counter", "Packets dropped by an NF's verdict.", shards, |f, s| {
        f.sample("shard_dropped_by_nf_total", &[("shard", &id(s))], s.dropped_by_nf)
    });
    f.each(
        "shard_quic_flights_total",
        "counter",
        "QUIC first flights not read for a bound: refused (too many waited at once: reported unreadable), or read but not reported (no copy budget).",
        shards,
        |f, s| {
            for (outcome, n) in [("refused", s.quic_flights_refused), ("unreported", s.quic_flights_unreported)] {
                f.sample("shard_quic_flights_total", &[("shard", &id(s)), ("outcome", outcome)], n);
            }
        },
    );
    f.each("shard_flows_total", "counter", "Flows a shard saw start, by protocol.", shards, |f, s| {
        for (proto, n) in [("tcp", s.stack.flows_tcp), ("udp", s.stack.flows_udp), ("other", s.stack.flows_other)] {
            f.sample("shard_flows_total", &[("shard", &id(s)), ("proto", proto)], n);
        }
    });
    // Every reason and cause from the first scrape on, so that no series appears late.
    f.each("shard_flows_ended_total", "counter", "Flows that ended, by reason.", shards, |f, s| {
        for reason in [REASON_FIN, REASON_RST, REASON_TIMEOUT, REASON_EVICTED, REASON_END_OF_INPUT] {
            let n = s.stack.ended[usize::from(reason)];
            f.sample("shard_flows_ended_total", &[("shard", &id(s)), ("reason", reason_name(reason))], n);
        }
    });
    f.each("shard_flows_active", "gauge", "Flows in a shard's flow table.", shards, |f, s| {
        f.sample("shard_flows_active", &[("shard", &id(s))], s.stack.active_flows)
    });
    f.each("shard_malformed_total", "counter", "Packets a shard dropped as malformed, by cause.", shards, |f, s| {
        for (cause, &n) in ParseError::ALL.iter().zip(&s.stack.malformed) {
            f.sample("shard_malformed_total", &[("shard", &id(s)), ("cause", cause.name())], n);
        }
    });
    f.each("shard_stream_bytes_total", "counter", "TCP stream bytes of ended connections, by what became of them.", shards, |f, s| {
        let st = &s.stack.streams;
        for (kind, n) in [("delivered", st.delivered), ("gap", st.gap_bytes), ("old", st.old_bytes)] {
            f.sample("shard_stream_bytes_total", &[("shard", &id(s)), ("kind", kind)], n);
        }
    });
    f.each("shard_stream_gaps_total", "counter", "Gaps in TCP streams of ended connections.", shards, |f, s| {
        f.sample("shard_stream_gaps_total", &[("shard", &id(s))], s.stack.streams.gaps)
    });
    f.each("shard_events_total", "counter", "Events a shard emitted (the stack's and NFs' publications), by type.", shards, |f, s| {
        for (path, &n) in r.type_paths.iter().zip(&s.events_by_type).filter(|(_, n)| **n > 0) {
            f.sample("shard_events_total", &[("shard", &id(s)), ("type", path)], n);
        }
    });

    let serving: Vec<_> = shards.iter().filter(|s| s.serve.is_some()).collect();
    if !serving.is_empty() {
        f.each("shard_service_connections", "gauge", "Connections a shard's services hold (the Endpoint's).", &serving, |f, s| {
            f.sample("shard_service_connections", &[("shard", &id(s))], s.connections)
        });
        f.each(
            "shard_service_total",
            "counter",
            "What a shard's services did and refused, by what (docs/control.md).",
            &serving,
            |f, s| {
                for (what, n) in s.serve.map(|sv| sv.named()).unwrap_or_default() {
                    f.sample("shard_service_total", &[("shard", &id(s)), ("what", what)], n);
                }
            },
        );
    }

    let nfs: Vec<(usize, &crate::runtime::nf_host::NfReport)> = r.nfs.iter().enumerate().collect();
    f.each("nf_up", "gauge", "1 while the NF runs, 0 once it was disabled by a failure.", &nfs, |f, (_, nf)| {
        f.sample("nf_up", &[("nf", &nf.name)], u8::from(nf.failure.is_none()))
    });
    f.each("nf_events_total", "counter", "Events the NF handled.", &nfs, |f, (_, nf)| {
        f.sample("nf_events_total", &[("nf", &nf.name)], nf.events)
    });
    f.each("nf_events_in_total", "counter", "Events delivered to the NF, by type.", &nfs, |f, (i, nf)| {
        for (path, n) in r.type_paths.iter().zip(r.nf_events_in(*i)).filter(|(_, n)| *n > 0) {
            f.sample("nf_events_in_total", &[("nf", &nf.name), ("type", path)], n);
        }
    });
    f.each("nf_events_out_total", "counter", "Events the NF published, by type.", &nfs, |f, (_, nf)| {
        for (path, &n) in r.type_paths.iter().zip(&nf.published_by_type).filter(|(_, n)| **n > 0) {
            f.sample("nf_events_out_total", &[("nf", &nf.name), ("type", path)], n);
        }
    });
    f.each("nf_dropped_total", "counter", "Events the NF did not see or stopped, by cause.", &nfs, |f, (i, nf)| {
        let ring_full: u64 = shards.iter().filter_map(|s| s.ring_full_drops.get(*i)).sum();
        for (cause, n) in [("verdict", nf.verdict_drops), ("ring_full", ring_full), ("disabled", nf.dropped_disabled)] {
            f.sample("nf_dropped_total", &[("nf", &nf.name), ("cause", cause)], n);
        }
    });
    f.each("nf_publish_refused_total", "counter", "Publications the host refused, by reason.", &nfs, |f, (_, nf)| {
        for (reason, n) in [
            ("not_declared", nf.publish_not_declared),
            ("bad_size", nf.publish_bad_size),
            ("no_subscriber", nf.publish_no_subscriber),
            ("full", nf.publish_full),
        ] {
            f.sample("nf_publish_refused_total", &[("nf", &nf.name), ("reason", reason)], n);
        }
    });
    f.each("nf_busy_seconds_total", "counter", "Seconds spent inside the NF's code.", &nfs, |f, (_, nf)| {
        f.sample("nf_busy_seconds_total", &[("nf", &nf.name)], nf.busy_ns as f64 / 1e9)
    });
    f.each("nf_ring_used", "gauge", "Events waiting in the ring from a shard to the NF.", &nfs, |f, (i, nf)| {
        for s in shards {
            f.sample("nf_ring_used", &[("nf", &nf.name), ("shard", &id(s))], s.ring_used.get(*i).copied().unwrap_or(0));
        }
    });
    f.each("nf_ring_capacity", "gauge", "Events the ring from a shard to the NF holds at most.", &nfs, |f, (i, nf)| {
        for s in shards {
            f.sample("nf_ring_capacity", &[("nf", &nf.name), ("shard", &id(s))], s.ring_capacity.get(*i).copied().unwrap_or(0));
        }
    });
    f.each("nf_reloads_total", "counter", "Times a rebuilt plugin replaced the NF.", &nfs, |f, (_, nf)| {
        f.sample("nf_reloads_total", &[("nf", &nf.name)], nf.reloads)
    });
    f.each("nf_stat", "gauge", "The NF's own counters, by name (the NF's docs say what each counts).", &nfs, |f, (_, nf)| {
        for (name, value) in &nf.counters {
            f.sample("nf_stat", &[("nf", &nf.name), ("name", name)], *value);
        }
    });
    process_metrics(&mut f.out);
    f.out
}

/// The process's resident memory and open files, under Prometheus' standard names.
fn process_metrics(out: &mut String) {
    // SAFETY: sysconf reads a constant of the system.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let rss = std::fs::read_to_string("/proc/self/statm").ok().and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok());
    if let Some(pages) = rss {
        let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.");
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}", pages * page);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# HELP process_open_fds Number of open file descriptors.");
        let _ = writeln!(out, "# TYPE process_open_fds gauge\nprocess_open_fds {}", fds.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a "b" \c"#), r#"a \"b\" \\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        let mut f = Families { out: String::new() };
        f.sample("x_total", &[("nf", "q\"")], 3);
        assert_eq!(f.out, "mbox_x_total{nf=\"q\\\"\"} 3\n");
    }
}
