//! A synthetic traffic generator: realistic TCP conversations and UDP exchanges, deterministic
//! for a given seed.
//!
//! Each TCP conversation is a three-way handshake, an HTTP-like request of `request_bytes`, a
//! response with a body of `response_bytes` (segmented by the MSS, acknowledged every second
//! segment), then a FIN exchange or a RST. UDP flows are DNS-like query/answer pairs. Up to
//! `concurrency` conversations are interleaved at random. Impairments are applied as a tap
//! between the endpoints would see them: `loss` drops a packet in the network and the sender
//! retransmits it a few packets later, `tap_loss` drops it at the tap (a gap that never fills),
//! `reorder` delays a packet by one to three packets, `duplicate` repeats it.
//! Addresses come from 198.18.0.0/15 (clients in 198.18/16, servers in 198.19/16).

use mbox_stack::wire::ethernet::HEADER_LEN as ETHERNET_LEN;
use mbox_stack::wire::ipv4::Ipv4Packet;
use mbox_stack::wire::tcp::TcpPacket;
use mbox_stack::wire::udp::UdpPacket;
use mbox_stack::wire::{checksum, ip_proto, tcp_flags, LinkType};
use serde::Deserialize;
use std::collections::VecDeque;

/// What to generate. Every field has a default, so a config can name only what it changes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// TCP conversations.
    pub flows: u64,
    /// UDP query/answer flows.
    pub udp_flows: u64,
    /// Conversations in progress at once.
    pub concurrency: usize,
    pub request_bytes: u32,
    /// Body size of each response.
    pub response_bytes: u32,
    pub mss: u16,
    /// Probability that a packet is lost in the network (and retransmitted).
    pub loss: f64,
    /// Probability that the tap misses a packet (a gap in what mbox sees).
    pub tap_loss: f64,
    /// Probability that a packet arrives after the next one to three packets.
    pub reorder: f64,
    /// Probability that a packet is seen twice.
    pub duplicate: f64,
    /// Fraction of conversations that end with a RST instead of FINs.
    pub rst_fraction: f64,
    pub seed: u64,
    /// Time of the first packet, in ns since the epoch.
    pub start_ts_ns: u64,
    /// Mean gap between packets, in ns.
    pub packet_gap_ns: u64,
    /// Compute IP/TCP/UDP checksums (needed when the packets go to real endpoints).
    pub checksums: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            flows: 1000,
            udp_flows: 100,
            concurrency: 64,
            request_bytes: 200,
            response_bytes: 8192,
            mss: 1460,
            loss: 0.0,
            tap_loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            rst_fraction: 0.1,
            seed: 1,
            start_ts_ns: 1_700_000_000_000_000_000,
            packet_gap_ns: 10_000,
            checksums: true,
        }
    }
}

impl GeneratorConfig {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("loss", self.loss),
            ("tap_loss", self.tap_loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
            ("rst_fraction", self.rst_fraction),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability between 0 and 1, not {p}"));
            }
        }
        if self.loss >= 1.0 {
            return Err("loss must be below 1: every packet would be retransmitted forever".into());
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!(
                "concurrency must be between 1 and {MAX_CONCURRENCY} (each conversation in progress holds about {} bytes), not {}",
                std::mem::size_of::<Conversation>(),
                self.concurrency
            ));
        }
        if !(64..=9000).contains(&self.mss) {
            return Err(format!("mss must be between 64 and 9000, not {}", self.mss));
        }
        if self.request_bytes > 1 << 30 || self.response_bytes > 1 << 30 {
            return Err("request_bytes and response_bytes must be at most 1 GiB".into());
        }
        if self.packet_gap_ns > 3_600_000_000_000 {
            return Err(format!("packet_gap_ns must be at most an hour, not {}", self.packet_gap_ns));
        }
        Ok(())
    }
}

/// Most conversations interleaved at once: each one in progress holds a [`Conversation`]
/// (a few hundred bytes), so this bounds the generator's memory to a few hundred MB whatever
/// the config says.
pub const MAX_CONCURRENCY: usize = 1_000_000;

/// The generator's seeded randomness (the simulated network's, shared with `[input] impair`).
pub use mbox_stack::sim::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Syn,
    SynAck,
    HandshakeAck,
    Request,
    Response,
    ClientFin,
    ServerFin,
    LastAck,
    Rst,
    UdpQuery,
    UdpAnswer,
    Done,
}

/// One conversation in progress.
#[derive(Debug, Clone)]
struct Conversation {
    id: u64,
    phase: Phase,
    client: [u8; 4],
    server: [u8; 4],
    client_port: u16,
    server_port: u16,
    client_seq: u32,
    server_seq: u32,
    /// Bytes of the request / response (headers + body) already sent.
    sent: u32,
    /// Segments sent since the receiver last acknowledged.
    unacked: u32,
    ack_due: bool,
    ends_with_rst: bool,
    /// The request line and headers, and the response headers, rendered once per conversation.
    request_head: ([u8; 192], usize),
    response_head: ([u8; 128], usize),
}

/// Total bytes the client sends: the head padded to `request_bytes`.
fn request_len(c: &Conversation, cfg: &GeneratorConfig) -> u32 {
    (c.request_head.1 as u32).max(cfg.request_bytes)
}

fn response_len(c: &Conversation, cfg: &GeneratorConfig) -> u32 {
    (c.response_head.1 as u32).saturating_add(cfg.response_bytes)
}

/// The byte at `offset` of a conversation's request (dir 0) or response (dir 1) stream of
/// `total` bytes: the rendered head, then padding (requests, ending with a blank line) or body.
pub fn stream_byte(conv_id: u64, dir: u8, head: &[u8], total: u32, offset: u32) -> u8 {
    if dir == 0 && offset.saturating_add(4) >= total {
        // The request's header block ends with an empty line.
        return b"\r\n\r\n"[(offset.saturating_add(4) - total).min(3) as usize];
    }
    if (offset as usize) < head.len() {
        return head[offset as usize];
    }
    if dir == 0 {
        return b'a' + (offset % 26) as u8;
    }
    // Body: a cheap hash of (conversation, offset), so bodies differ and are not compressible.
    let x = (conv_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(offset)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 56) as u8
}

/// A packet waiting in the impairment delay line.
struct Delayed {
    due: u64,
    ts_ns: u64,
    bytes: Vec<u8>,
}

/// The generator. Call [`Generator::next_packet`] until it returns `None`.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Rng,
    active: Vec<Conversation>,
    started_tcp: u64,
    started_udp: u64,
    clock_ns: u64,
    /// Packets handed out so far (the delay line counts in packets).
    emitted: u64,
    delayed: VecDeque<Delayed>,
    spare: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

const MAX_DELAYED: usize = 256;

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Generator {
        let rng = Rng::new(cfg.seed);
        let clock_ns = cfg.start_ts_ns;
        // Room for what can actually be in progress, reserved as it is needed rather than up
        // front: no more conversations than the config has, and a few thousand at first.
        let most = cfg.concurrency.min(usize::try_from(cfg.flows.saturating_add(cfg.udp_flows)).unwrap_or(usize::MAX));
        Generator {
            active: Vec::with_capacity(most.min(4096)),
            cfg,
            rng,
            started_tcp: 0,
            started_udp: 0,
            clock_ns,
            emitted: 0,
            delayed: VecDeque::with_capacity(MAX_DELAYED),
            spare: Vec::new(),
            scratch: Vec::with_capacity(16384),
        }
    }

    /// The link type of every generated packet.
    pub fn link(&self) -> LinkType {
        LinkType::Ethernet
    }

    /// Conversations started, and the total the config asks for (for progress bars).
    pub fn progress(&self) -> (u64, u64) {
        (self.started_tcp + self.started_udp, self.cfg.flows + self.cfg.udp_flows)
    }

    /// Writes the next packet into `buf`; returns its timestamp, or `None` when done.
    pub fn next_packet(&mut self, buf: &mut Vec<u8>) -> Option<u64> {
        loop {
            if let Some(front) = self.delayed.front() {
                if front.due <= self.emitted || (self.active.is_empty() && !self.can_start()) {
                    let d = self.delayed.pop_front()?;
                    buf.clear();
                    buf.extend_from_slice(&d.bytes);
                    self.spare.push(d.bytes);
                    self.emitted += 1;
                    return Some(d.ts_ns.max(self.tick()));
                }
            }
            while self.active.len() < self.cfg.concurrency && self.can_start() {
                self.start_conversation();
            }
            if self.active.is_empty() {
                return None;
            }
            let pick = self.rng.below(self.active.len() as u64) as usize;
            let mut scratch = std::mem::take(&mut self.scratch);
            let produced = self.step(pick, &mut scratch);
            if self.active[pick].phase == Phase::Done {
                self.active.swap_remove(pick);
            }
            let ts = self.tick();
            let outcome = if produced { self.impair(&scratch, ts) } else { Impairment::None };
            match outcome {
                Impairment::None if produced => {
                    buf.clear();
                    buf.extend_from_slice(&scratch);
                    self.scratch = scratch;
                    self.emitted += 1;
                    return Some(ts);
                }
                _ => self.scratch = scratch,
            }
        }
    }

    fn can_start(&self) -> bool {
        self.started_tcp < self.cfg.flows || self.started_udp < self.cfg.udp_flows
    }

    fn tick(&mut self) -> u64 {
        let gap = self.cfg.packet_gap_ns;
        self.clock_ns = self.clock_ns.saturating_add(gap / 2 + self.rng.below(gap.max(1)));
        self.clock_ns
    }

    /// Decides what the network and the tap do to a packet; queues delayed copies.
    fn impair(&mut self, pkt: &[u8], ts: u64) -> Impairment {
        if self.delayed.len() >= MAX_DELAYED - 2 {
            return Impairment::None;
        }
        if self.rng.chance(self.cfg.tap_loss) {
            return Impairment::Gone;
        }
        if self.rng.chance(self.cfg.loss) {
            // Retransmitted after a timeout's worth of other packets.
            let after = 4 + self.rng.below(8);
            self.delay(pkt, ts, after);
            return Impairment::Gone;
        }
        if self.rng.chance(self.cfg.reorder) {
            let after = 1 + self.rng.below(3);
            self.delay(pkt, ts, after);
            return Impairment::Gone;
        }
        if self.rng.chance(self.cfg.duplicate) {
            self.delay(pkt, ts, 0);
        }
        Impairment::None
    }

    fn delay(&mut self, pkt: &[u8], ts: u64, after: u64) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(pkt);
        let due = self.emitted + after + 1;
        // Keep the line ordered by due time so the front is always the next to release.
        let at = self.delayed.iter().position(|d| d.due > due).unwrap_or(self.delayed.len());
        self.delayed.insert(at, Delayed { due, ts_ns: ts, bytes });
    }

    fn start_conversation(&mut self) {
        let udp = self.started_udp < self.cfg.udp_flows
            && (self.started_tcp >= self.cfg.flows || self.rng.below(self.cfg.flows + self.cfg.udp_flows) < self.cfg.udp_flows);
        let id = self.started_tcp + self.started_udp;
        if udp {
            self.started_udp += 1;
        } else {
            self.started_tcp += 1;
        }
        // Client address and port from the conversation number: unique 5-tuples for 2^32 flows.
        let client = [198, 18, (id >> 8) as u8, id as u8];
        let client_port = 10_000 + ((id >> 16) % 50_000) as u16;
        let server = [198, 19, 0, 1 + (id % 16) as u8];
        let mut c = Conversation {
            id,
            phase: if udp { Phase::UdpQuery } else { Phase::Syn },
            client,
            server,
            client_port,
            server_port: if udp { 53 } else { 80 },
            client_seq: self.rng.next_u64() as u32,
            server_seq: self.rng.next_u64() as u32,
            sent: 0,
            unacked: 0,
            ack_due: false,
            ends_with_rst: self.rng.chance(self.cfg.rst_fraction),
            request_head: ([0; 192], 0),
            response_head: ([0; 128], 0),
        };
        let req = format!("GET /object/{id} HTTP/1.1\r\nHost: gen{}.mbox.test\r\nUser-Agent: mbox-gen/1\r\nX-Pad: ", id % 16);
        let n = req.len().min(192);
        c.request_head.0[..n].copy_from_slice(&req.as_bytes()[..n]);
        c.request_head.1 = n;
        let resp =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", self.cfg.response_bytes);
        let n = resp.len().min(128);
        c.response_head.0[..n].copy_from_slice(&resp.as_bytes()[..n]);
        c.response_head.1 = n;
        self.active.push(c);
    }

    /// Emits the next packet of conversation `i` into `out`; false if it produced none.
    fn step(&mut self, i: usize, out: &mut Vec<u8>) -> bool {
        let cfg = &self.cfg;
        let checksums = cfg.checksums;
        let c = &mut self.active[i];
        let mss = u32::from(cfg.mss);
        use tcp_flags::*;
        match c.phase {
            Phase::Syn => {
                tcp_packet(out, c, true, SYN, c.client_seq, 0, &[], checksums);
                c.client_seq = c.client_seq.wrapping_add(1);
                c.phase = Phase::SynAck;
            }
            Phase::SynAck => {
                tcp_packet(out, c, false, SYN | ACK, c.server_seq, c.client_seq, &[], checksums);
                c.server_seq = c.server_seq.wrapping_add(1);
                c.phase = Phase::HandshakeAck;
            }
            Phase::HandshakeAck => {
                tcp_packet(out, c, true, ACK, c.client_seq, c.server_seq, &[], checksums);
                c.phase = Phase::Request;
            }
            Phase::Request | Phase::Response => {
                let from_client = c.phase == Phase::Request;
                let total = if from_client { request_len(c, cfg) } else { response_len(c, cfg) };
                if c.ack_due {
                    // The receiver acknowledges what it has.
                    let (seq, ack) = if from_client { (c.server_seq, c.client_seq) } else { (c.client_seq, c.server_seq) };
                    tcp_packet(out, c, !from_client, ACK, seq, ack, &[], checksums);
                    c.ack_due = false;
                    c.unacked = 0;
                    if c.sent >= total {
                        c.sent = 0;
                        c.phase = if from_client {
                            Phase::Response
                        } else if c.ends_with_rst {
                            Phase::Rst
                        } else {
                            Phase::ClientFin
                        };
                    }
                    return true;
                }
                let len = (total - c.sent).min(mss);
                let mut payload = [0u8; 9000];
                let (head, dir): (&[u8], u8) =
                    if from_client { (&c.request_head.0[..c.request_head.1], 0) } else { (&c.response_head.0[..c.response_head.1], 1) };
                for (k, b) in payload[..len as usize].iter_mut().enumerate() {
                    *b = stream_byte(c.id, dir, head, total, c.sent + k as u32);
                }
                let (seq, ack) = if from_client { (c.client_seq, c.server_seq) } else { (c.server_seq, c.client_seq) };
                tcp_packet(out, c, from_client, ACK | PSH, seq, ack, &payload[..len as usize], checksums);
                if from_client {
                    c.client_seq = c.client_seq.wrapping_add(len);
                } else {
                    c.server_seq = c.server_seq.wrapping_add(len);
                }
                c.sent += len;
                c.unacked += 1;
                c.ack_due = c.unacked >= 2 || c.sent >= total;
            }
            Phase::ClientFin => {
                tcp_packet(out, c, true, FIN | ACK, c.client_seq, c.server_seq, &[], checksums);
                c.client_seq = c.client_seq.wrapping_add(1);
                c.phase = Phase::ServerFin;
            }
            Phase::ServerFin => {
                tcp_packet(out, c, false, FIN | ACK, c.server_seq, c.client_seq, &[], checksums);
                c.server_seq = c.server_seq.wrapping_add(1);
                c.phase = Phase::LastAck;
            }
            Phase::LastAck => {
                tcp_packet(out, c, true, ACK, c.client_seq, c.server_seq, &[], checksums);
                c.phase = Phase::Done;
            }
            Phase::Rst => {
                tcp_packet(out, c, true, RST | ACK, c.client_seq, c.server_seq, &[], checksums);
                c.phase = Phase::Done;
            }
            Phase::UdpQuery | Phase::UdpAnswer => {
                let query = c.phase == Phase::UdpQuery;
                let mut dns = [0u8; 512];
                let len = dns_message(&mut dns, c.id as u16, query);
                udp_packet(out, c, query, &dns[..len], checksums);
                c.phase = if query { Phase::UdpAnswer } else { Phase::Done };
            }
            Phase::Done => return false,
        }
        true
    }
}

enum Impairment {
    None,
    /// Not emitted now (dropped, or queued for later).
    Gone,
}

/// A DNS query for `gen.mbox.test` A, or its answer with one address.
fn dns_message(out: &mut [u8; 512], id: u16, query: bool) -> usize {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        out[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    put(&id.to_be_bytes());
    put(if query { &[0x01, 0x00] } else { &[0x81, 0x80] });
    put(&[0, 1, 0, if query { 0 } else { 1 }, 0, 0, 0, 0]);
    put(b"\x03gen\x04mbox\x04test\x00");
    put(&[0, 1, 0, 1]);
    if !query {
        put(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 19, 0, 1]);
    }
    len
}

fn ethernet_ipv4(out: &mut Vec<u8>, c: &Conversation, from_client: bool, proto: u8, l4_len: usize) {
    out.clear();
    let (src_mac, dst_mac) = if from_client { ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]) } else { ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]) };
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    let (src, dst) = if from_client { (c.client, c.server) } else { (c.server, c.client) };
    let total = (20 + l4_len) as u16;
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
}

#[allow(clippy::too_many_arguments)]
fn tcp_packet(out: &mut Vec<u8>, c: &Conversation, from_client: bool, flags: u8, seq: u32, ack: u32, payload: &[u8], checksums: bool) {
    ethernet_ipv4(out, c, from_client, ip_proto::TCP, 20 + payload.len());
    let (sport, dport) = if from_client { (c.client_port, c.server_port) } else { (c.server_port, c.client_port) };
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&(if flags & tcp_flags::ACK != 0 { ack } else { 0 }).to_be_bytes());
    out.extend_from_slice(&[5 << 4, flags]);
    out.extend_from_slice(&65_535u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    if checksums {
        fill_checksums(out);
    }
}

fn udp_packet(out: &mut Vec<u8>, c: &Conversation, from_client: bool, payload: &[u8], checksums: bool) {
    ethernet_ipv4(out, c, from_client, ip_proto::UDP, 8 + payload.len());
    let (sport, dport) = if from_client { (c.client_port, c.server_port) } else { (c.server_port, c.client_port) };
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    if checksums {
        fill_checksums(out);
    }
}

/// Fills the IPv4 header checksum and the TCP/UDP checksum of an Ethernet/IPv4 frame.
pub fn fill_checksums(frame: &mut [u8]) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_LEN..]);
    ip.fill_checksum();
    let (proto, start, end) = (ip.protocol(), ETHERNET_LEN + ip.header_len(), ETHERNET_LEN + usize::from(ip.total_len()));
    let pseudo = checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), proto, (end - start) as u32);
    // Exactly the IP payload: padding after it is not covered.
    let l4 = &mut frame[start..end];
    match proto {
        ip_proto::TCP => TcpPacket::new_unchecked(l4).fill_checksum(pseudo),
        ip_proto::UDP => UdpPacket::new_unchecked(l4).fill_checksum(pseudo),
        _ => {}
    }
}

impl super::device::Source for Generator {
    fn next_into(&mut self, pool: &super::pool::PacketPool, idx: u32) -> Result<super::device::Next, super::capture::CaptureError> {
        // SAFETY: the caller holds `idx` and has not handed it on.
        let buf = unsafe { pool.buf_mut(idx) };
        Ok(match self.next_packet(buf) {
            Some(ts_ns) => {
                let len = buf.len() as u32;
                super::device::Next::Packet { link: self.link(), len, wire_len: len, ts_ns, port: 0 }
            }
            None => super::device::Next::End,
        })
    }

    fn describe(&self) -> String {
        "generator".to_string()
    }

    fn link(&self) -> LinkType {
        Generator::link(self)
    }

    /// Conversations done and in all.
    fn progress(&self) -> (u64, u64) {
        Generator::progress(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbox_stack::wire::{parse, Packet, ParseOptions};
    use std::collections::HashMap;

    fn run(cfg: GeneratorConfig) -> Vec<(u64, Vec<u8>)> {
        let mut g = Generator::new(cfg);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(ts) = g.next_packet(&mut buf) {
            out.push((ts, buf.clone()));
        }
        out
    }

    #[test]
    fn same_seed_same_traffic_and_timestamps_never_go_back() {
        let cfg = GeneratorConfig { flows: 20, udp_flows: 5, reorder: 0.1, duplicate: 0.05, loss: 0.05, ..Default::default() };
        let a = run(cfg.clone());
        assert_eq!(a, run(cfg.clone()));
        assert_ne!(a, run(GeneratorConfig { seed: 2, ..cfg }));
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn conversations_carry_the_configured_bytes_with_valid_checksums() {
        let cfg = GeneratorConfig { flows: 10, udp_flows: 0, response_bytes: 5000, rst_fraction: 0.0, ..Default::default() };
        let pkts = run(cfg);
        let mut payload_by_flow: HashMap<([u8; 16], bool), u64> = HashMap::new();
        let mut fins = 0;
        for (_, p) in &pkts {
            let Ok(Packet::Ip(parsed)) = parse(p, LinkType::Ethernet, ParseOptions::default()) else { panic!("unparsable") };
            assert!(Ipv4Packet::new_checked(&p[14..]).unwrap().verify_checksum(), "IP checksum");
            let from_server = parsed.src_port == 80;
            let client = if from_server { parsed.dst } else { parsed.src };
            *payload_by_flow.entry((client, from_server)).or_default() += u64::from(parsed.payload_len);
            if parsed.tcp.flags & tcp_flags::FIN != 0 {
                fins += 1;
            }
        }
        assert_eq!(fins, 20);
        let responses: Vec<u64> = payload_by_flow.iter().filter(|(k, _)| k.1).map(|(_, v)| *v).collect();
        assert_eq!(responses.len(), 10);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5000\r\n\r\n".len() as u64;
        assert!(responses.iter().all(|&n| n == 5000 + head), "{responses:?}");
    }

    #[test]
    fn loss_retransmits_and_tap_loss_leaves_gaps() {
        let base = GeneratorConfig { flows: 30, udp_flows: 0, ..Default::default() };
        let clean = run(base.clone()).len();
        let lossy = run(GeneratorConfig { loss: 0.2, ..base.clone() }).len();
        assert_eq!(clean, lossy, "network loss is retransmitted: same packet count");
        let tapped = run(GeneratorConfig { tap_loss: 0.2, ..base.clone() }).len();
        assert!(tapped < clean * 9 / 10);
        let dup = run(GeneratorConfig { duplicate: 0.2, ..base }).len();
        assert!(dup > clean * 11 / 10);
    }

    #[test]
    fn requests_end_with_a_blank_line_whatever_their_size() {
        for request_bytes in [0, 1, 83, 1460, 1461, 1463, 3000] {
            let cfg = GeneratorConfig { flows: 1, udp_flows: 0, request_bytes, response_bytes: 10, ..Default::default() };
            let mut request = Vec::new();
            for (_, p) in run(cfg) {
                let Ok(Packet::Ip(parsed)) = parse(&p, LinkType::Ethernet, ParseOptions::default()) else { panic!() };
                if parsed.dst_port == 80 {
                    request.extend_from_slice(&p[parsed.payload_offset as usize..]);
                }
            }
            assert!(request.starts_with(b"GET /object/0 HTTP/1.1\r\n"), "{request_bytes}");
            assert!(request.ends_with(b"\r\n\r\n"), "{request_bytes}");
            assert!(request.len() >= request_bytes as usize);
        }
    }

    #[test]
    fn validation_names_the_field() {
        let err = GeneratorConfig { reorder: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(err.contains("reorder"));
        for concurrency in [0, MAX_CONCURRENCY + 1, usize::MAX] {
            let err = GeneratorConfig { concurrency, ..Default::default() }.validate().unwrap_err();
            assert!(err.contains(&format!("concurrency must be between 1 and {MAX_CONCURRENCY}")), "{err}");
        }
    }

    #[test]
    fn the_largest_concurrency_reserves_only_what_the_flows_need() {
        // Allowed, and a few flows under it start with room for those few.
        let cfg = GeneratorConfig { flows: 3, udp_flows: 1, concurrency: MAX_CONCURRENCY, ..Default::default() };
        cfg.validate().unwrap();
        let g = Generator::new(cfg.clone());
        assert!(g.active.capacity() < 64, "{}", g.active.capacity());
        assert_eq!(run(cfg.clone()), run(GeneratorConfig { concurrency: 4, ..cfg }), "the same traffic as just enough");
    }
}
