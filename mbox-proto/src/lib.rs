//! Application protocol parsers for NFs: HTTP/1 heads and bodies ([`http`]), the TLS
//! ClientHello and its server name, the server's version and certificates ([`tls`], described
//! by [`x509`]), SSH
//! identification lines ([`ssh`]), DNS headers and questions ([`dns`]) and SMTP commands
//! ([`smtp`]), QUIC headers and the client's first flight, decrypted ([`quic`]), and recognising
//! which of them a connection speaks ([`detect`]). They read byte slices (a reassembled stream's start, a datagram),
//! return slices of them where they can, and never panic on any input.

pub mod detect;
pub mod dns;
pub mod http;
pub mod quic;
pub mod smtp;
pub mod ssh;
pub mod tls;
pub mod x509;

/// The outcome of parsing a message at the start of a buffer that may still grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    Done(T),
    /// More bytes are needed.
    Partial,
    /// Not this protocol (or broken beyond repair).
    Invalid,
}
