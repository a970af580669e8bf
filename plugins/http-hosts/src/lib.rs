//! http-hosts: counts HTTP requests per Host header over every connection and writes, at the
//! end, one line per host (`{"host":"example.com","requests":3}`), in the order of the hosts.
//! The example of an NF written with the kit (FlowMap, StreamBuffer, LineWriter) and
//! mbox-proto's HTTP parser, in under 60 lines; `tests/on_captures.rs` runs it inside mbox.

use mbox_abi::kit::{Args, FlowMap, LineWriter, StreamBuffer};
use mbox_abi::{export_nf, EventHeader, Host, NetworkFunction, NfInit, Plugin, PluginInfo, StreamDataEvent, Verdict, DIR_ORIG};
use mbox_proto::http::{request_head, BodyLength};
use mbox_proto::Parse;
use std::collections::BTreeMap;

pub struct HttpHosts {
    /// Each connection's client-to-server bytes not parsed yet.
    requests: FlowMap<StreamBuffer>,
    hosts: BTreeMap<String, u64>,
    out: LineWriter,
}

impl NetworkFunction for HttpHosts {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        let Some(data) = event.view::<StreamDataEvent>() else {
            self.requests.remove(&event.flow); // FLOW/TCP/TERMINATE: the connection is over
            return Verdict::Pass;
        };
        if event.flow.dir != DIR_ORIG {
            return Verdict::Pass; // the server's answers
        }
        let Some(buffer) = self.requests.get_or_insert_with(&event.flow, || StreamBuffer::new(64 << 10)) else { return Verdict::Pass };
        buffer.push(data);
        while let Parse::Done(head) = request_head(buffer.bytes()) {
            let host = String::from_utf8_lossy(head.host.unwrap_or(b"-")).to_ascii_lowercase();
            *self.hosts.entry(host).or_default() += 1;
            let (len, body) = (head.head_len, if let BodyLength::Length(n) = head.body { n } else { 0 });
            buffer.consume(len);
            buffer.skip(body);
        }
        Verdict::Pass
    }

    fn on_finish(&mut self) -> Result<(), String> {
        for (host, requests) in &self.hosts {
            self.out.line(&serde_json::json!({ "host": host, "requests": requests }).to_string());
        }
        self.out.finish()
    }

    fn reopen_outputs(&mut self) -> Result<String, String> {
        self.out.reopen()
    }
}

impl Plugin for HttpHosts {
    const INFO: PluginInfo = PluginInfo {
        name: "http-hosts",
        version: env!("CARGO_PKG_VERSION"),
        description: "counts HTTP requests per Host header",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        let path = Args::parse(init.args_json.as_str(), &["output"])?.string("output", "-")?;
        let out = LineWriter::open(&path, init.replacing).map_err(|e| format!("cannot open output `{path}`: {e}"))?;
        Ok(HttpHosts { requests: FlowMap::new(init.shards as usize, init.flow_slots as usize), hosts: BTreeMap::new(), out })
    }
}

export_nf!(HttpHosts);
