//! mbox-http: HTTP/1.x for NFs on mbox's split proxy (`[[service]] stack = "proxy"`).
//!
//! - [`request`]: a request head parsed where it lies, for routing rules (host, path,
//!   headers).
//! - [`exchange`]: the per-request exchange an HTTP proxy NF runs on each client connection:
//!   a head read and routed (by the NF's [`exchange::Route`]), a server side bound, the request
//!   passed on and the response passed back, the server side closed; the next request routed
//!   on its own (HAProxy's `http-server-close`).
//! - [`gzip`]: the transcoding an exchange may apply to a response: its body gzip-compressed
//!   for a client that accepts it, its head's framing rewritten to chunked.
//!
//! The l7-lb NF (full proxy mode) and the transcoder NF are both an [`exchange::Proxy`] with a
//! router of their own.

pub mod exchange;
pub mod gzip;
pub mod request;

pub use exchange::{Proxy, ProxyStats, Refused, Route, Target};
