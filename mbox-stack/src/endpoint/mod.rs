//! The TCP Endpoint µStack: mbox terminates TCP itself, so that an NF (a cache, a server)
//! answers clients on the same events and the same stack as the middlebox NFs.
//!
//! Sans-IO like the monitor: a segment (as fields, [`segment::SegmentIn`]) and the time go in;
//! segments to send, bytes received, connection events and the next timer deadline come out
//! through a [`ConnSink`]. No threads, no I/O. The send buffer is a ring that grows (doubling)
//! as writes need, up to its configured size. In-order data goes to the sink straight from the
//! segment; out-of-order data is copied once into a receive ring indexed by stream offset
//! (allocated when first needed, grown only as far as the data reaches, at most the receive
//! window) with a sorted list of at most 64 ranges, as smoltcp's assembler: a hole filled in
//! any order costs one copy per byte, and what it releases goes to the sink in at most two
//! pieces. A host bounds a connection's send and receive rings with
//! [`Connection::set_memory_limits`] (adding up [`Connection::buffer_bytes`] against a
//! budget): past them writes take what fits ([`Connection::send_room`] says how much) and
//! out-of-order data is not kept; buffers that can no longer be used give their memory back.
//!
//! - [`segment`]: segments as fields, sequence arithmetic.
//! - [`conn`]: one connection's state machine (RFC 9293) with window scaling and timestamps
//!   (RFC 7323), SACK (RFC 2018), challenge ACKs (RFC 5961), the retransmission timer
//!   ([`rtt`], RFC 6298), NewReno with an initial window of ten ([`cc`], RFC 5681, 6582, 6928).
//! - [`buffers`]: the send buffer and out-of-order data; [`scoreboard`]: what the peer SACKed.
//! - [`isn`]: initial sequence numbers (RFC 6528) and SYN cookies (RFC 4987).

pub mod buffers;
pub mod cc;
pub mod conn;
pub mod isn;
pub mod rtt;
pub mod scoreboard;
pub mod segment;
#[cfg(test)]
mod tests;

pub use buffers::Payload;
pub use conn::{CloseReason, ConnEvent, ConnStats, Connection, SpliceView, State};
pub use segment::{SegmentIn, SegmentOut};

/// How endpoint connections behave; from `[[service]]` in the host's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The largest segment mbox receives (announced in its SYN-ACK) and sends.
    pub mss: u16,
    /// Bytes a connection may have written and not yet acknowledged.
    pub send_buffer: u32,
    /// Bytes a connection accepts beyond the last in-order one (its receive window).
    pub recv_window: u32,
    /// Offer window scaling, SACK and timestamps to peers that offer them.
    pub window_scaling: bool,
    /// The window the offered window-scale shift is sized for, when larger than
    /// `recv_window` (0: `recv_window`). A splicer's connection offers the shift the backend's
    /// windows need once spliced, while its own window stays what it holds: sized for its
    /// `hold_bytes`, every spliced window would be capped at 64 KiB.
    pub scale_window: u32,
    pub sack: bool,
    pub timestamps: bool,
    /// Bounds of the retransmission timeout.
    pub min_rto_ns: u64,
    pub max_rto_ns: u64,
    /// Retransmissions of one segment before the connection is given up (reset).
    pub max_retries: u32,
    /// How long an ACK may wait for a second segment or data to ride on.
    pub delayed_ack_ns: u64,
    /// How long a connection stays in TIME-WAIT (RFC 9293's 2 MSL).
    pub time_wait_ns: u64,
    /// How long FIN-WAIT-2 waits for the peer's FIN once ours is acknowledged.
    pub fin_wait2_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mss: 1460,
            send_buffer: 1 << 20,
            recv_window: 256 << 10,
            window_scaling: true,
            scale_window: 0,
            sack: true,
            timestamps: true,
            min_rto_ns: 200_000_000,
            max_rto_ns: 60_000_000_000,
            max_retries: 12,
            delayed_ack_ns: 40_000_000,
            time_wait_ns: 60_000_000_000,
            fin_wait2_ns: 60_000_000_000,
        }
    }
}

/// Where a connection reports: what to send, what it received, what happened.
pub trait ConnSink {
    /// Sends `seg`, whose payload is `payload` (bytes of the send buffer).
    fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>);
    /// Received bytes, in order: `[offset, offset + bytes.len())` of the peer's stream.
    fn deliver(&mut self, offset: u64, bytes: &[u8]);
    /// Something happened to the connection.
    fn event(&mut self, event: ConnEvent);
}
