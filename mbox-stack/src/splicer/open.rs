//! The backend half of a splice before the splice carries it: mbox's SYN to the backend (from
//! the client's ISN, with the client's options), sent again until answered or given up, the
//! backend's SYN-ACK, and the client bytes mbox holds — acknowledged to the client already, so
//! only mbox can send them again — sent and resent until the backend acknowledges them.
//!
//! Sans-IO as the Endpoint: segments go out through a [`ConnSink`] (only `transmit` is used),
//! time comes in. Once the backend's SYN-ACK is in, [`Opener::bind`] gives the facts a
//! [`SpliceMap`](super::SpliceMap) is made from; from then on the caller translates every
//! segment of both connections and shows the opener the backend's ([`Opener::on_backend`])
//! until the held bytes are acknowledged ([`Opener::is_done`]), and the client's TSvals and
//! ACKs ([`Opener::note_client`]) so that what it resends is never older than what the
//! backend saw (RFC 7323 5's PAWS drops a segment whose TSval went back).

use super::map::{BackendSource, Bind, TsClocks, WindowScales};
use crate::endpoint::{ConnSink, Payload, SegmentIn, SegmentOut, SpliceView};
use crate::wire::tcp::TcpOptions;
use crate::wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use std::net::SocketAddr;

/// How an opener waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenConfig {
    /// The first wait for the SYN-ACK (RFC 6298 2.1's 1 s), doubled on each try.
    pub syn_rto_ns: u64,
    /// The backend is given up when it has not answered the SYN in this long.
    pub connect_timeout_ns: u64,
    /// The first wait for the held bytes' acknowledgment, doubled on each try.
    pub data_rto_ns: u64,
    /// Tries of the held bytes before the splice is given up.
    pub max_retries: u32,
}

impl Default for OpenConfig {
    fn default() -> OpenConfig {
        OpenConfig { syn_rto_ns: 1_000_000_000, connect_timeout_ns: 5_000_000_000, data_rto_ns: 300_000_000, max_retries: 8 }
    }
}

/// Where an opener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenPhase {
    /// The SYN is out; no answer yet.
    SynSent,
    /// The backend answered: the splice carries the connections; held bytes may be in flight.
    Established,
    /// Every held byte (and a held FIN) is acknowledged: the opener has nothing left to do.
    Done,
    /// Given up: the backend refused (RST), did not answer in time, or did not acknowledge the
    /// held bytes through every retry.
    Failed(OpenFailure),
}

/// Why an opener gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// A RST answered the SYN (nothing listens there).
    Refused,
    /// No SYN-ACK within the connect timeout.
    TimedOut,
    /// The held bytes went unacknowledged through every retry (or a RST came after the
    /// SYN-ACK, before they were in).
    Lost,
}

/// What the backend's SYN-ACK said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BackendSyn {
    isn: u32,
    tsval: Option<u32>,
    window_scale: Option<u8>,
    mss: u16,
}

/// The backend side of one splice being opened. See the module documentation.
#[derive(Debug)]
pub struct Opener {
    cfg: OpenConfig,
    client: SpliceView,
    /// The client's addresses, the backend, mbox's source toward it.
    client_addr: SocketAddr,
    service: SocketAddr,
    backend: SocketAddr,
    source: BackendSource,
    /// TSval of mbox's SYN to the backend: the client's latest at bind time, so that the
    /// client's clock reaches the backend unshifted.
    syn_tsval: u32,
    /// The client's bytes mbox took before the bind (`client.irs + 1` on), and whether its FIN
    /// followed them.
    held: Vec<u8>,
    held_fin: bool,
    phase: OpenPhase,
    backend_syn: Option<BackendSyn>,
    /// How many held bytes (and the FIN, as one more) the backend acknowledged.
    acked: u32,
    /// The client's latest TSval, ACK (in the backend's sequence space) and window field.
    client_tsval: u32,
    client_ack: u32,
    client_window: u16,
    started_ns: u64,
    rto_ns: u64,
    retries: u32,
    timer_at: Option<u64>,
}

impl Opener {
    /// Starts opening: the SYN goes out through `sink`. `held` are the client's bytes from
    /// `client.irs + 1` that mbox took (acknowledged), `held_fin` whether its FIN followed.
    #[allow(clippy::too_many_arguments)]
    pub fn start<S: ConnSink + ?Sized>(
        cfg: OpenConfig,
        client: SpliceView,
        addrs: (SocketAddr, SocketAddr, SocketAddr),
        source: BackendSource,
        held: Vec<u8>,
        held_fin: bool,
        now_ns: u64,
        sink: &mut S,
    ) -> Opener {
        let (client_addr, service, backend) = addrs;
        let syn_tsval = client.timestamps.map_or(0, |(recent, _)| recent);
        let mut o = Opener {
            cfg,
            client,
            client_addr,
            service,
            backend,
            source,
            syn_tsval,
            held,
            held_fin,
            phase: OpenPhase::SynSent,
            backend_syn: None,
            acked: 0,
            client_tsval: syn_tsval,
            client_ack: 0,
            client_window: client.peer_window,
            started_ns: now_ns,
            rto_ns: cfg.syn_rto_ns,
            retries: 0,
            timer_at: None,
        };
        o.send_syn(now_ns, sink);
        o
    }

    pub fn phase(&self) -> OpenPhase {
        self.phase
    }

    /// Whether nothing is left for the opener (every held byte acknowledged).
    pub fn is_done(&self) -> bool {
        self.phase == OpenPhase::Done
    }

    /// When [`Opener::on_timer`] wants to run next.
    pub fn deadline(&self) -> Option<u64> {
        self.timer_at
    }

    /// Held bytes (kept until acknowledged).
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Whether the client's FIN is among what it holds (sent on after the held bytes): once
    /// the opener is done, the backend has acknowledged it, and the FIN has crossed.
    pub fn held_fin(&self) -> bool {
        self.held_fin
    }

    /// The facts of the splice, once the backend answered.
    pub fn bind(&self) -> Option<Bind> {
        let b = self.backend_syn?;
        let c = &self.client;
        let (client_ts, mbox_ts_to_client) = c.timestamps.unzip();
        Some(Bind {
            client: self.client_addr,
            service: self.service,
            backend: self.backend,
            source: self.source,
            client_isn: c.irs,
            mbox_isn_to_client: c.iss,
            backend_isn: b.isn,
            mbox_isn_to_backend: c.irs,
            clocks: TsClocks {
                client_syn_tsval: client_ts.map_or(0, |_| self.syn_tsval),
                mbox_syn_tsval: self.syn_tsval,
                mbox_tsval_to_client: mbox_ts_to_client.unwrap_or(0),
                backend_syn_ack_tsval: b.tsval.unwrap_or(0),
            },
            window_scales: WindowScales {
                client_syn: c.peer_window_scale,
                mbox_syn_ack: c.our_window_scale,
                mbox_syn: c.peer_window_scale,
                backend_syn_ack: b.window_scale,
            },
        })
    }

    /// Before the backend answers: the client's connection as it is now (its clock and
    /// window move on), `more` bytes it sent since, and whether its FIN came.
    pub fn hold(&mut self, view: SpliceView, more: &[u8], fin: bool) {
        if self.phase != OpenPhase::SynSent {
            return;
        }
        self.client.timestamps = view.timestamps.map(|(_, ours)| (self.syn_tsval, ours));
        if let Some((recent, _)) = view.timestamps {
            self.note_client(Some(recent), None, view.peer_window);
        }
        self.client_window = view.peer_window;
        self.held.extend_from_slice(more);
        self.held_fin |= fin;
    }

    /// The client sent a segment (after the splice): its TSval and, with ACK, its
    /// acknowledgment number as the backend sees it, and its window field.
    pub fn note_client(&mut self, tsval: Option<u32>, ack_to_backend: Option<u32>, window: u16) {
        if let Some(v) = tsval {
            if (v.wrapping_sub(self.client_tsval) as i32) > 0 {
                self.client_tsval = v;
            }
        }
        if let Some(a) = ack_to_backend {
            if (a.wrapping_sub(self.client_ack) as i32) > 0 {
                self.client_ack = a;
            }
        }
        self.client_window = window;
    }

    /// A segment from the backend (as it arrived, before any translation). In SYN-SENT its
    /// SYN-ACK establishes (the ACK completing the handshake and the held bytes go out) and a
    /// RST acknowledging the SYN refuses; later its ACKs take the held bytes off.
    pub fn on_backend<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, now_ns: u64, sink: &mut S) {
        let syn_next = self.client.irs.wrapping_add(1);
        match self.phase {
            OpenPhase::SynSent => {
                if seg.has(ACK) && seg.ack != syn_next {
                    return; // not about our SYN (RFC 9293 3.10.7.3: RST it? the caller drops it)
                }
                if seg.has(RST) {
                    if seg.has(ACK) {
                        self.fail(OpenFailure::Refused);
                    }
                    return;
                }
                if !(seg.has(SYN) && seg.has(ACK)) {
                    return;
                }
                let o = &seg.options;
                self.backend_syn = Some(BackendSyn {
                    isn: seg.seq,
                    tsval: o.timestamps.map(|(v, _)| v),
                    window_scale: o.window_scale,
                    mss: o.mss.unwrap_or(536),
                });
                self.client_ack = seg.seq.wrapping_add(1);
                self.phase = OpenPhase::Established;
                self.retries = 0;
                self.rto_ns = self.cfg.data_rto_ns;
                self.send_held(now_ns, sink);
            }
            OpenPhase::Established => {
                if seg.has(RST) {
                    self.fail(OpenFailure::Lost);
                    return;
                }
                if seg.has(SYN) {
                    // Our ACK of its SYN-ACK was lost: it sends the SYN-ACK again.
                    self.send_held(now_ns, sink);
                    return;
                }
                if !seg.has(ACK) {
                    return;
                }
                let total = self.held_seq_len();
                let acked = seg.ack.wrapping_sub(syn_next);
                if acked <= total && acked > self.acked {
                    self.acked = acked;
                    self.retries = 0;
                    self.rto_ns = self.cfg.data_rto_ns;
                    self.timer_at = Some(now_ns + self.rto_ns);
                }
                if self.acked == total {
                    self.phase = OpenPhase::Done;
                    self.held = Vec::new();
                    self.timer_at = None;
                }
            }
            OpenPhase::Done | OpenPhase::Failed(_) => {}
        }
    }

    /// The timer ran out: the SYN or the unacknowledged held bytes go again, or the opener
    /// gives up.
    pub fn on_timer<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        if self.timer_at.is_none_or(|t| now_ns < t) {
            return;
        }
        match self.phase {
            OpenPhase::SynSent => {
                if now_ns.saturating_sub(self.started_ns) >= self.cfg.connect_timeout_ns {
                    return self.fail(OpenFailure::TimedOut);
                }
                self.rto_ns = self.rto_ns.saturating_mul(2);
                self.send_syn(now_ns, sink);
            }
            OpenPhase::Established => {
                self.retries += 1;
                if self.retries > self.cfg.max_retries {
                    return self.fail(OpenFailure::Lost);
                }
                self.rto_ns = self.rto_ns.saturating_mul(2);
                self.send_held(now_ns, sink);
            }
            OpenPhase::Done | OpenPhase::Failed(_) => self.timer_at = None,
        }
    }

    /// The RST that tells the backend a connection it accepted is gone (the client left
    /// before the splice could carry it).
    pub fn reset_segment(&self) -> Option<SegmentOut> {
        self.backend_syn?;
        let seq = self.client.irs.wrapping_add(1).wrapping_add(self.acked);
        Some(SegmentOut { seq, ack: 0, flags: RST, window: 0, options: TcpOptions::default(), payload_len: 0 })
    }

    fn fail(&mut self, why: OpenFailure) {
        self.phase = OpenPhase::Failed(why);
        self.held = Vec::new();
        self.timer_at = None;
    }

    /// Held bytes, and the FIN as one more.
    fn held_seq_len(&self) -> u32 {
        self.held.len() as u32 + u32::from(self.held_fin)
    }

    /// mbox's SYN to the backend: the client's ISN, its MSS, window scale, SACK-permitted and
    /// timestamps (its clock), its window.
    fn send_syn<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        let c = &self.client;
        let options = TcpOptions {
            mss: Some(c.peer_mss),
            window_scale: c.peer_window_scale,
            sack_permitted: c.sack,
            timestamps: c.timestamps.map(|_| (self.syn_tsval, 0)),
            ..TcpOptions::default()
        };
        let seg = SegmentOut { seq: c.irs, ack: 0, flags: SYN, window: c.peer_window, options, payload_len: 0 };
        sink.transmit(&seg, Payload::EMPTY);
        self.timer_at = Some(now_ns + self.rto_ns);
    }

    /// The ACK of the backend's SYN-ACK with the held bytes not yet acknowledged, in segments
    /// of the backend's MSS (its timestamp option counted), the FIN on the last.
    fn send_held<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        let Some(b) = self.backend_syn else { return };
        let ts = self.client.timestamps.and(b.tsval).map(|echo| (self.client_tsval, echo));
        let mss = usize::from(b.mss.max(64)) - if ts.is_some() { 12 } else { 0 };
        let base = self.client.irs.wrapping_add(1);
        let mut at = (self.acked as usize).min(self.held.len());
        let options = TcpOptions { timestamps: ts, ..TcpOptions::default() };
        loop {
            let end = (at + mss).min(self.held.len());
            let last = end == self.held.len();
            let fin = last && self.held_fin && self.acked < self.held_seq_len();
            let mut flags = ACK;
            if end > at {
                flags |= PSH;
            }
            if fin {
                flags |= FIN;
            }
            let seg = SegmentOut {
                seq: base.wrapping_add(at as u32),
                ack: self.client_ack,
                flags,
                window: self.client_window,
                options,
                payload_len: (end - at) as u32,
            };
            sink.transmit(&seg, Payload { first: &self.held[at..end], second: &[] });
            if last {
                break;
            }
            at = end;
        }
        self.timer_at = (self.acked < self.held_seq_len()).then(|| now_ns + self.rto_ns);
        if self.timer_at.is_none() {
            self.phase = OpenPhase::Done;
            self.held = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::ConnEvent;

    #[derive(Default)]
    struct Wire {
        sent: Vec<(SegmentOut, Vec<u8>)>,
    }

    impl ConnSink for Wire {
        fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>) {
            let mut bytes = payload.first.to_vec();
            bytes.extend_from_slice(payload.second);
            self.sent.push((*seg, bytes));
        }
        fn deliver(&mut self, _: u64, _: &[u8]) {}
        fn event(&mut self, _: ConnEvent) {}
    }

    fn view() -> SpliceView {
        SpliceView {
            irs: u32::MAX - 10,
            iss: 5000,
            rcv_nxt: 0,
            snd_nxt: 5001,
            peer_mss: 1400,
            peer_window_scale: Some(7),
            our_window_scale: Some(9),
            sack: true,
            timestamps: Some((700, 3_000_000)),
            peer_window: 500,
            peer_closed: false,
        }
    }

    fn start(held: &[u8], fin: bool, wire: &mut Wire) -> Opener {
        let addrs = ("192.0.2.10:40000".parse().unwrap(), "198.51.100.1:80".parse().unwrap(), "10.0.0.5:8080".parse().unwrap());
        let source = BackendSource::Snat("10.0.0.1:61000".parse().unwrap());
        Opener::start(OpenConfig::default(), view(), addrs, source, held.to_vec(), fin, 0, wire)
    }

    fn syn_ack(isn: u32, ack: u32, mss: u16) -> SegmentIn<'static> {
        let options = TcpOptions { mss: Some(mss), window_scale: Some(2), timestamps: Some((50, 700)), ..TcpOptions::default() };
        SegmentIn { seq: isn, ack, flags: SYN | ACK, window: 1000, options, payload: &[] }
    }

    fn ack(n: u32) -> SegmentIn<'static> {
        SegmentIn { seq: 9001, ack: n, flags: ACK, window: 1000, options: TcpOptions::default(), payload: &[] }
    }

    #[test]
    fn the_syn_carries_the_clients_isn_and_options_and_is_sent_again_until_the_timeout() {
        let mut wire = Wire::default();
        let mut o = start(b"GET / HTTP/1.1\r\n\r\n", false, &mut wire);
        let (syn, _) = wire.sent[0];
        assert_eq!((syn.seq, syn.flags, syn.window), (u32::MAX - 10, SYN, 500));
        let opt = syn.options;
        assert_eq!((opt.mss, opt.window_scale, opt.sack_permitted, opt.timestamps), (Some(1400), Some(7), true, Some((700, 0))));
        let mut now = 0;
        while o.phase() == OpenPhase::SynSent {
            now = o.deadline().unwrap();
            o.on_timer(now, &mut wire);
        }
        assert_eq!(o.phase(), OpenPhase::Failed(OpenFailure::TimedOut));
        assert_eq!(wire.sent.len(), 3, "at 0 s, 1 s and 3 s; given up at 7 s (past 5 s)");
        assert_eq!(now, 7_000_000_000);
        assert!(o.deadline().is_none());
    }

    #[test]
    fn a_reset_acknowledging_the_syn_refuses_and_one_that_does_not_is_ignored() {
        let mut wire = Wire::default();
        let mut o = start(b"x", false, &mut wire);
        let rst = |ack| SegmentIn { seq: 0, ack, flags: RST | ACK, window: 0, options: TcpOptions::default(), payload: &[] };
        o.on_backend(&rst(12345), 1, &mut wire);
        assert_eq!(o.phase(), OpenPhase::SynSent, "RFC 9293 3.10.7.3: a RST whose ACK is not our SYN's is not ours");
        o.on_backend(&rst(u32::MAX - 9), 1, &mut wire);
        assert_eq!(o.phase(), OpenPhase::Failed(OpenFailure::Refused));
    }

    #[test]
    fn the_held_bytes_go_in_backend_mss_segments_with_the_fin_and_again_until_acknowledged() {
        let mut wire = Wire::default();
        let held: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut o = start(&held, true, &mut wire);
        // The sequence numbers wrap: the client's ISN is 2^32 - 11.
        o.on_backend(&syn_ack(9000, u32::MAX - 9, 1012), 1_000, &mut wire);
        assert_eq!(o.phase(), OpenPhase::Established);
        let data: Vec<_> = wire.sent[1..].to_vec();
        assert_eq!(data.len(), 3, "1000-byte segments (MSS 1012 less the timestamp option)");
        let mut got = Vec::new();
        for (k, (seg, bytes)) in data.iter().enumerate() {
            assert_eq!(seg.seq, (u32::MAX - 9).wrapping_add(1000 * k as u32));
            assert_eq!((seg.ack, seg.options.timestamps), (9001, Some((700, 50))));
            assert_eq!(seg.has(FIN), k == 2);
            got.extend_from_slice(bytes);
        }
        assert_eq!(got, held);
        let bind = o.bind().unwrap();
        assert_eq!((bind.client_isn, bind.mbox_isn_to_backend, bind.backend_isn), (u32::MAX - 10, u32::MAX - 10, 9000));
        assert_eq!((bind.clocks.mbox_syn_tsval, bind.clocks.mbox_tsval_to_client, bind.clocks.backend_syn_ack_tsval), (700, 3_000_000, 50));
        // Half acknowledged; the rest again at the timer, with the client's newer TSval.
        o.on_backend(&ack((u32::MAX - 9).wrapping_add(1500)), 2_000, &mut wire);
        o.note_client(Some(800), Some(9001), 600);
        wire.sent.clear();
        o.on_timer(o.deadline().unwrap(), &mut wire);
        assert_eq!(wire.sent.len(), 2);
        assert_eq!(wire.sent[0].0.seq, (u32::MAX - 9).wrapping_add(1500));
        assert_eq!((wire.sent[0].0.options.timestamps, wire.sent[0].0.window), (Some((800, 50)), 600));
        assert_eq!(wire.sent[0].1, held[1500..2500]);
        // Everything and the FIN.
        o.on_backend(&ack((u32::MAX - 9).wrapping_add(3001)), 3_000, &mut wire);
        assert!(o.is_done());
        assert_eq!((o.deadline(), o.held_len()), (None, 0));
    }

    #[test]
    fn held_bytes_never_acknowledged_give_the_splice_up() {
        let mut wire = Wire::default();
        let mut o = start(b"hello", false, &mut wire);
        o.on_backend(&syn_ack(9000, u32::MAX - 9, 1460), 0, &mut wire);
        while let Some(t) = o.deadline() {
            o.on_timer(t, &mut wire);
        }
        assert_eq!(o.phase(), OpenPhase::Failed(OpenFailure::Lost));
        assert_eq!(wire.sent.len(), 2 + 8, "the SYN, the first send and 8 retries");
    }
}
