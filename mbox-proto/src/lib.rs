//! Application protocol parsers for NFs: HTTP/1 heads and bodies ([`http`]), the TLS
//! ClientHello and its server name ([`tls`]), SSH identification lines ([`ssh`]) and DNS
//! questions ([`dns`]). They read byte slices (a reassembled stream's start, a datagram),
//! return slices of them where they can, and never panic on any input.

pub mod dns;
pub mod http;
pub mod ssh;
pub mod tls;

/// The outcome of parsing a message at the start of a buffer that may still grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    Done(T),
    /// More bytes are needed.
    Partial,
    /// Not this protocol (or broken beyond repair).
    Invalid,
}
