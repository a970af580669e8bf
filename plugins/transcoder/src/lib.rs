//! transcoder: an HTTP proxy NF on the TCP Split Proxy (`[[service]] stack = "proxy"`) that
//! compresses responses for the clients that accept it. Each request of a client connection
//! goes to the backend (`backend`; several are taken in turn); a response that is an HTTP/1.1
//! 200 of a listed text type, not encoded already and not `no-transform`, goes to a client
//! whose `Accept-Encoding` takes gzip with its body gzip-compressed (flate2) and its framing
//! rewritten (chunked, `Content-Encoding: gzip`, `Vary: Accept-Encoding`, a strong ETag made
//! weak); every other response passes as it came. The exchange itself (requests routed one by
//! one, bodies framed, the server side closed after each response) is `mbox_http::exchange`'s.
//!
//! Counters: the exchanges' (`requests`, `responses`, `compressed`, `gzip_bytes_in`,
//! `gzip_bytes_out`, `not_compressed_busy`, `bad_responses`, ...; see docs/config.md).

use mbox_abi::{export_nf, Counters, EventHeader, Host, NetworkFunction, NfInit, Plugin, PluginInfo, Verdict};
use mbox_http::gzip::GzipConfig;
use mbox_http::request::Request;
use mbox_http::{Proxy, Refused, Route, Target};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// The default `max_head`.
const DEFAULT_MAX_HEAD: usize = 16 << 10;

pub struct Transcoder {
    proxy: Proxy,
    backends: Backends,
}

/// The backends, taken in turn.
struct Backends {
    addresses: Vec<SocketAddr>,
    next: usize,
}

impl Route for Backends {
    fn route(&mut self, _request: &Request<'_>, _client: IpAddr, _now_ns: u64) -> Result<Target, Refused> {
        let backend = self.next % self.addresses.len();
        self.next = self.next.wrapping_add(1);
        Ok(Target { backend, address: self.addresses[backend] })
    }

    fn outcome(&mut self, _backend: usize, _connected: bool, _now_ns: u64) {}

    fn closed(&mut self, _backend: usize) {}
}

impl Transcoder {
    /// The transcoder `args` (a JSON object) describe.
    pub fn new(args: &str, shards: usize, flow_slots: usize) -> Result<Transcoder, String> {
        let v: Value = serde_json::from_str(args).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
        let Some(o) = v.as_object() else { return Err("arguments must be a table".into()) };
        let known = ["backend", "backends", "level", "types", "min_size", "max_streams", "max_head"];
        if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown argument `{k}`: the transcoder takes {}", known.join(", ")));
        }
        let address = |v: &Value| -> Result<SocketAddr, String> {
            v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("a backend is an `IP:PORT` string, not {v}"))
        };
        let addresses: Vec<SocketAddr> = match (o.get("backend"), o.get("backends")) {
            (Some(b), None) => vec![address(b)?],
            (None, Some(Value::Array(list))) if !list.is_empty() => list.iter().map(address).collect::<Result<_, _>>()?,
            _ => return Err("give `backend = \"IP:PORT\"` or a non-empty `backends` list (not both)".into()),
        };
        let mut gzip = GzipConfig::default();
        let number = |key: &str, range: std::ops::RangeInclusive<u64>| -> Result<Option<u64>, String> {
            match o.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if range.contains(&n) => Ok(Some(n)),
                    _ => Err(format!("argument `{key}` must be a number from {} to {}, not {v}", range.start(), range.end())),
                },
            }
        };
        if let Some(n) = number("level", 1..=9)? {
            gzip.level = n as u32;
        }
        if let Some(n) = number("min_size", 0..=1 << 30)? {
            gzip.min_size = n;
        }
        if let Some(n) = number("max_streams", 1..=65_536)? {
            gzip.max_streams = n as usize;
        }
        let max_head = number("max_head", 256..=1 << 20)?.map_or(DEFAULT_MAX_HEAD, |n| n as usize);
        if let Some(types) = o.get("types") {
            let list = types.as_array().ok_or("argument `types` must be a list of content types")?;
            gzip.types = list
                .iter()
                .map(|t| {
                    t.as_str()
                        .filter(|s| s.contains('/'))
                        .map(str::to_ascii_lowercase)
                        .ok_or(format!("`{t}` is not a content type (`text/` or `type/subtype`)"))
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(Transcoder { proxy: Proxy::new(shards, flow_slots, max_head, Some(gzip)), backends: Backends { addresses, next: 0 } })
    }
}

impl Plugin for Transcoder {
    const INFO: PluginInfo = PluginInfo {
        name: "transcoder",
        version: env!("CARGO_PKG_VERSION"),
        description: "HTTP proxy on the TCP Split Proxy that gzip-compresses text responses for clients that accept it, framing rewritten",
        subscribes: &["FLOW/TCP/DATA_RDY", "FLOW/TCP/STREAM_END", "FLOW/TCP/BOUND", "FLOW/TCP/SEND_ROOM", "FLOW/TCP/TERMINATE"],
        publishes: &[],
        read_only: true,
    };

    fn create(init: &NfInit<'_>) -> Result<Self, String> {
        Transcoder::new(init.args_json.as_str(), init.shards as usize, init.flow_slots as usize)
    }
}

impl NetworkFunction for Transcoder {
    fn on_event(&mut self, event: &EventHeader, host: &mut Host<'_>) -> Verdict {
        self.proxy.on_event(event, host, &mut self.backends)
    }

    fn counters(&self, out: &mut Counters<'_>) {
        self.proxy.counters(out);
    }
}

export_nf!(Transcoder);

#[cfg(test)]
mod tests;
