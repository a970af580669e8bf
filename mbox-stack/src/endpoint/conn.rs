//! One TCP connection of the Endpoint µStack: RFC 9293's state machine from a SYN (passive
//! open) or a connect (active open) to TIME-WAIT and CLOSED, with the options negotiated in the
//! handshake (MSS; window scale and timestamps, RFC 7323; SACK, RFC 2018), segment
//! acceptability and PAWS, RFC 5961's challenge ACKs, delayed ACKs, loss recovery (fast
//! retransmit with NewReno and the SACK scoreboard, RFC 6582 and 6675; the RTO, RFC 6298),
//! zero-window probes and a bounded TIME-WAIT.
//!
//! Sans-IO: [`Connection::on_segment`], [`Connection::on_timer`], [`Connection::write`] and
//! [`Connection::close`] take the time and report through a [`ConnSink`]; the caller arms one
//! timer at [`Connection::deadline`]. Sequence numbers compare on the circle (RFC 9293 3.4).

use super::buffers::{Keep, Payload, Reassembly, SendBuffer};
use super::cc::{NewReno, Reaction};
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::segment::{seq_diff, seq_ge, seq_gt, seq_le, seq_lt, SackBlocks, SegmentIn, SegmentOut, TcpOptions};
use super::{Config, ConnSink};
use crate::wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};

/// RFC 9293 3.3.2's states, less LISTEN (a listener is the host's, not a connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

impl State {
    /// The handshake completed and the connection is not closed (RFC 9293's synchronized
    /// states).
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }

    /// mbox may still send data: the application has not closed its side.
    pub fn can_send(self) -> bool {
        matches!(self, State::Established | State::CloseWait)
    }

    /// The peer may still send data: it has not closed its side.
    fn can_receive(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }
}

/// Why a connection reached CLOSED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides closed and TIME-WAIT (or LAST-ACK's final ACK) passed.
    Graceful,
    /// The peer reset it.
    PeerReset,
    /// mbox reset it ([`Connection::abort`]).
    LocalReset,
    /// A segment went unacknowledged through every retransmission (or the handshake did).
    TimedOut,
    /// The peer answered an active open with a reset (RFC 9293 3.10.7.3).
    Refused,
}

/// A connection as a Splicer sees it when it joins it to a backend's ([`Connection::splice_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceView {
    /// The peer's ISN, ours, and the next sequence number each side expects.
    pub irs: u32,
    pub iss: u32,
    pub rcv_nxt: u32,
    /// The highest sequence number we sent + 1 (`iss + 1`: nothing but the SYN-ACK sent).
    pub snd_nxt: u32,
    /// The MSS the peer's SYN announced (536 when none).
    pub peer_mss: u16,
    /// Window scale shifts in effect (`None`: no scaling on this connection), the peer's and ours.
    pub peer_window_scale: Option<u8>,
    pub our_window_scale: Option<u8>,
    pub sack: bool,
    /// With timestamps: the peer's latest TSval (TS.Recent) and our clock now.
    pub timestamps: Option<(u32, u32)>,
    /// The last window field the peer sent (in its scale).
    pub peer_window: u16,
    /// The peer's FIN was received (and taken in order).
    pub peer_closed: bool,
}

/// What a connection tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnEvent {
    /// The handshake completed: the connection can carry data.
    Established,
    /// The peer's FIN arrived: every byte it will send has been delivered.
    PeerClosed,
    /// A write found the send buffer full; it has room again.
    SendRoom,
    /// The connection is over; nothing more will be reported.
    Closed(CloseReason),
}

/// What a connection counted (reported per shard by the host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub segments_in: u64,
    pub segments_out: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    /// RFC 5961 challenge ACKs sent, and those the rate limit held back.
    pub challenge_acks: u64,
    pub challenge_acks_limited: u64,
    /// Segments dropped as unacceptable (outside the window, PAWS, an ACK of unsent data).
    pub unacceptable: u64,
    pub out_of_order: u64,
    /// Out-of-order segments the reassembly bound refused (the peer resends them).
    pub out_of_order_refused: u64,
    /// Out-of-order segments not kept (or kept only in part) because the receive ring would
    /// have grown past the connection's memory limit ([`Connection::set_memory_limits`]).
    pub out_of_order_refused_memory: u64,
    pub window_probes: u64,
}

/// Challenge ACKs a connection sends per second at most (RFC 5961 7).
const CHALLENGE_ACKS_PER_SECOND: u32 = 10;
/// Segments ACKed at once at the start of a connection and after idleness (Linux's quick ACK
/// mode): a request is answered without waiting for the delayed-ACK timer.
const QUICK_ACKS: u32 = 16;
/// The MSS assumed when the peer announces none (RFC 9293 3.7.1, IPv4's default).
const DEFAULT_MSS: u32 = 536;
/// The largest shift RFC 7323 2.3 allows.
const MAX_WINDOW_SHIFT: u8 = 14;
/// Bytes of the timestamp option in every segment once negotiated (with its NOP padding).
const TIMESTAMP_OPTION_LEN: u32 = 12;
/// The RTO once data transmission begins after a handshake that was retransmitted and gave
/// no RTT sample (RFC 6298 5.7).
const HANDSHAKE_RETRANSMITTED_RTO_NS: u64 = 3_000_000_000;

/// The timestamp state of a connection that negotiated them (RFC 7323 3, 4.3, 5).
#[derive(Debug, Clone, Copy)]
struct Timestamps {
    /// The peer's TSval to echo (TS.Recent).
    recent: u32,
    /// Our clock's offset (RFC 7323 5.4: per connection, not guessable across connections).
    offset: u32,
}

/// One TCP connection.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    state: State,
    // Send sequence space (RFC 9293 3.3.1).
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// The highest sequence number sent + 1 (SND.NXT goes back after a timeout; this does not).
    snd_max: u32,
    /// The peer's window in bytes (scaled), and the segment that last set it.
    snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    max_snd_wnd: u32,
    /// Sequence number of our FIN, once sent.
    fin_seq: Option<u32>,
    // Receive sequence space.
    irs: u32,
    rcv_nxt: u32,
    /// The right edge of the window last advertised (never moved left, RFC 9293 3.8.6.2.2).
    rcv_adv: u32,
    /// The acknowledgment number last sent (RFC 7323's Last.ACK.sent).
    last_ack_sent: u32,
    /// Stream offset of RCV.NXT: bytes delivered in order.
    delivered: u64,
    /// Stream offset of a FIN that arrived ahead of a hole (processed once the hole fills).
    fin_at: Option<u64>,
    /// Bytes delivered that the owner has not consumed yet ([`Connection::consumed`]).
    unread: u64,
    /// The most the receive window may be whatever the owner read (`set_window_cap`): a
    /// split proxy's side shows no more than the other side's send buffer can take.
    window_cap: u32,
    // Negotiated in the handshake.
    /// Payload bytes per segment (the peer's MSS, our bound, less the timestamp option).
    send_mss: u32,
    /// The MSS option of the peer's SYN as it sent it (536 when it sent none).
    peer_mss: u16,
    /// Shift applied to windows the peer sends, and to ours.
    snd_shift: u8,
    rcv_shift: u8,
    /// The peer's SYN offered window scaling (answered with ours only then, RFC 7323 1.3).
    ws_offered: bool,
    sack_ok: bool,
    ts: Option<Timestamps>,
    // Data.
    send: SendBuffer,
    /// The application closed its side: a FIN follows the data.
    fin_queued: bool,
    reasm: Reassembly,
    send_was_full: bool,
    // Recovery.
    rtt: RttEstimator,
    /// Without timestamps, one segment timed at a time (Karn: never a retransmitted one).
    timed: Option<(u32, u64)>,
    cc: NewReno,
    scoreboard: Scoreboard,
    /// In recovery, the next hole to retransmit is at or after this.
    rexmit_next: u32,
    retries: u32,
    /// Times our SYN (or SYN-ACK) was sent: more than once, the handshake's RTT is ambiguous
    /// without timestamps (Karn); none for a cookie's connection (the host answered the SYN).
    syn_sends: u32,
    // Timers (absolute times, ns).
    rto_at: Option<u64>,
    delack_at: Option<u64>,
    persist_at: Option<u64>,
    persist_backoff: u32,
    /// Window probes sent since the peer last sent an ACK.
    probes_unanswered: u32,
    time_wait_at: Option<u64>,
    /// FIN-WAIT-2 does not last for ever: a peer that acknowledged our FIN and never sends
    /// its own would hold the connection (Linux's tcp_fin_timeout).
    fin_wait2_at: Option<u64>,
    // ACK policy.
    ack_now: bool,
    unacked_segments: u32,
    quick_acks: u32,
    last_recv_ns: u64,
    last_send_ns: u64,
    challenge_window_ns: u64,
    challenges_in_window: u32,
    stats: ConnStats,
    /// Heap bytes the send ring and the receive ring may hold ([`Connection::set_memory_limits`]),
    /// and what they held when the limits were set (a lower limit frees nothing by itself).
    send_memory_limit: usize,
    receive_memory_limit: usize,
    memory_at_limit: (usize, usize),
}

impl Connection {
    fn new(cfg: &Config, iss: u32, now_ns: u64) -> Connection {
        let send_mss = u32::from(cfg.mss).max(64);
        Connection {
            cfg: *cfg,
            state: State::Closed,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            max_snd_wnd: 0,
            fin_seq: None,
            irs: 0,
            rcv_nxt: 0,
            rcv_adv: 0,
            last_ack_sent: 0,
            delivered: 0,
            fin_at: None,
            unread: 0,
            window_cap: u32::MAX,
            send_mss,
            peer_mss: DEFAULT_MSS as u16,
            snd_shift: 0,
            rcv_shift: 0,
            ws_offered: false,
            sack_ok: false,
            ts: None,
            send: SendBuffer::with_capacity(cfg.send_buffer as usize),
            fin_queued: false,
            reasm: Reassembly::with_capacity(cfg.recv_window as usize),
            send_was_full: false,
            rtt: RttEstimator::new(cfg.min_rto_ns, cfg.max_rto_ns),
            timed: None,
            cc: NewReno::new(send_mss),
            scoreboard: Scoreboard::default(),
            rexmit_next: iss,
            retries: 0,
            syn_sends: 0,
            rto_at: None,
            delack_at: None,
            persist_at: None,
            persist_backoff: 0,
            probes_unanswered: 0,
            time_wait_at: None,
            fin_wait2_at: None,
            ack_now: false,
            unacked_segments: 0,
            quick_acks: QUICK_ACKS,
            last_recv_ns: now_ns,
            last_send_ns: now_ns,
            challenge_window_ns: now_ns,
            challenges_in_window: 0,
            stats: ConnStats::default(),
            send_memory_limit: usize::MAX,
            receive_memory_limit: usize::MAX,
            memory_at_limit: (0, 0),
        }
    }

    /// Passive open (RFC 9293 3.10.7.2, LISTEN): `syn` arrived for an address and port mbox
    /// serves; the connection answers with a SYN-ACK from `iss` and enters SYN-RECEIVED.
    pub fn accept<S: ConnSink + ?Sized>(cfg: &Config, syn: &SegmentIn<'_>, iss: u32, now_ns: u64, sink: &mut S) -> Connection {
        let mut c = Connection::new(cfg, iss, now_ns);
        c.state = State::SynReceived;
        c.take_peer_syn(syn);
        c.snd_nxt = iss.wrapping_add(1);
        c.snd_max = c.snd_nxt;
        c.send_syn(now_ns, sink);
        c
    }

    /// A connection whose SYN was answered with a SYN cookie (RFC 4987) instead of state: `ack`
    /// completes the handshake (it acknowledges the cookie, `iss`), `mss` is what the cookie
    /// carried. What else the SYN offered is not known, so such a connection has no window
    /// scaling, SACK or timestamps (the cookie's SYN-ACK offered none), as with Linux's
    /// cookies without timestamps.
    pub fn from_cookie<S: ConnSink + ?Sized>(
        cfg: &Config,
        ack: &SegmentIn<'_>,
        iss: u32,
        mss: u16,
        now_ns: u64,
        sink: &mut S,
    ) -> Connection {
        let mut c = Connection::new(cfg, iss, now_ns);
        c.state = State::SynReceived;
        let options = TcpOptions { mss: Some(mss), ..TcpOptions::default() };
        let syn = SegmentIn { seq: ack.seq.wrapping_sub(1), ack: 0, flags: SYN, window: ack.window, options, payload: &[] };
        c.take_peer_syn(&syn);
        c.snd_nxt = iss.wrapping_add(1);
        c.snd_max = c.snd_nxt;
        c.rcv_adv = c.rcv_nxt.wrapping_add(c.cfg.recv_window.min(u32::from(u16::MAX)));
        c.on_segment(ack, now_ns, sink);
        c
    }

    /// The SYN-ACK a cookie answers `syn` with: from `cookie`, the MSS only, an unscaled window.
    pub fn cookie_syn_ack(cfg: &Config, syn: &SegmentIn<'_>, cookie: u32) -> SegmentOut {
        SegmentOut {
            seq: cookie,
            ack: syn.seq.wrapping_add(1),
            flags: SYN | ACK,
            window: cfg.recv_window.min(u32::from(u16::MAX)) as u16,
            options: TcpOptions { mss: Some(cfg.mss), ..TcpOptions::default() },
            payload_len: 0,
        }
    }

    /// Active open (RFC 9293 3.10.1): a SYN from `iss`, SYN-SENT.
    pub fn connect<S: ConnSink + ?Sized>(cfg: &Config, iss: u32, now_ns: u64, sink: &mut S) -> Connection {
        let mut c = Connection::new(cfg, iss, now_ns);
        c.state = State::SynSent;
        c.snd_nxt = iss.wrapping_add(1);
        c.snd_max = c.snd_nxt;
        c.send_syn(now_ns, sink);
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// What a Splicer joining this connection to a backend's needs of it, at `now_ns`.
    pub fn splice_view(&self, now_ns: u64) -> SpliceView {
        SpliceView {
            irs: self.irs,
            iss: self.iss,
            rcv_nxt: self.rcv_nxt,
            snd_nxt: self.snd_max,
            peer_mss: self.peer_mss,
            peer_window_scale: self.ws_offered.then_some(self.snd_shift),
            our_window_scale: self.ws_offered.then_some(self.rcv_shift),
            sack: self.sack_ok,
            timestamps: self.ts.map(|ts| (ts.recent, self.ts_now(now_ns, ts))),
            peer_window: (self.snd_wnd >> self.snd_shift).min(0xffff) as u16,
            peer_closed: self.fin_at.is_none()
                && matches!(self.state, State::CloseWait | State::LastAck | State::Closing | State::TimeWait),
        }
    }

    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// Whether `syn`, a SYN for this connection's addresses and ports, may open a new
    /// connection in its place (RFC 9293 3.10.7.4 and RFC 6191: in TIME-WAIT, a SYN whose
    /// sequence number lies beyond what this connection received — or whose timestamp is newer
    /// — is a new incarnation, not an old duplicate; clients reuse ports faster than 2 MSL).
    pub fn reopened_by(&self, syn: &SegmentIn<'_>) -> bool {
        if self.state != State::TimeWait || !syn.has(SYN) || syn.has(ACK) || syn.has(RST) {
            return false;
        }
        match (self.ts, syn.options.timestamps) {
            (Some(ts), Some((tsval, _))) => seq_gt(tsval, ts.recent),
            _ => seq_gt(syn.seq, self.rcv_nxt),
        }
    }

    /// Bytes a [`Connection::write`] would take now (all of them): the send buffer's free room,
    /// within the send ring's memory limit ([`Connection::set_memory_limits`]) — what the ring
    /// holds allocated, or may grow to within it. Nothing but writes and a lower limit makes it
    /// shrink: a host that hands it out as credit keeps the limit at or above what it promised.
    pub fn send_room(&self) -> usize {
        if self.can_write() {
            self.send.room_within(self.send_memory_limit)
        } else {
            0
        }
    }

    /// Bytes the send buffer could take within its configured size, whatever the memory limit:
    /// what a host weighs against its budget before it raises the limit.
    pub fn send_buffer_free(&self) -> usize {
        if self.can_write() {
            self.send.free()
        } else {
            0
        }
    }

    /// Whether the connection takes writes still (no FIN queued, not closed): once it does
    /// not, writes are refused however much room there was.
    pub fn can_write(&self) -> bool {
        self.state.can_send() && !self.fin_queued
    }

    /// Heap bytes the connection's buffers hold: the send ring and the receive ring (with its
    /// list of out-of-order ranges). What a host adds up against a memory budget.
    pub fn buffer_bytes(&self) -> usize {
        self.send.allocated() + self.reasm.allocated()
    }

    /// Heap bytes the send ring holds.
    pub fn send_allocated(&self) -> usize {
        self.send.allocated()
    }

    /// Bounds the buffers' heap (default: no bound): the send ring never grows past `send`
    /// bytes and the receive ring (with its range list) never past `receive`. Beyond them a
    /// write takes only what fits (as [`Connection::send_room`] says) and out-of-order data
    /// that would need the receive ring to grow is not kept (counted in
    /// [`ConnStats::out_of_order_refused_memory`]; the peer sends it again). In-order data is
    /// never buffered: receiving in order never fails for memory. Two limits, not one shared:
    /// out-of-order data arriving can never take room a host already promised to its writers.
    /// A limit below what is held frees nothing by itself (see
    /// [`Connection::release_idle_memory`]); the buffers just do not grow.
    pub fn set_memory_limits(&mut self, send: usize, receive: usize) {
        (self.send_memory_limit, self.receive_memory_limit) = (send, receive);
        self.memory_at_limit = (self.send.allocated(), self.reasm.allocated());
    }

    /// Frees the buffers that hold nothing (an empty send ring, a receive ring with no
    /// out-of-order data); returns the bytes freed. They are allocated again when needed.
    pub fn release_idle_memory(&mut self) -> usize {
        self.send.release() + self.reasm.release()
    }

    /// Bytes written and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.send.len()
    }

    /// The payload bytes a segment carries at most.
    pub fn send_mss(&self) -> u32 {
        self.send_mss
    }

    /// The current retransmission timeout.
    pub fn rto_ns(&self) -> u64 {
        self.rtt.rto_ns()
    }

    /// The congestion window, in bytes.
    pub fn congestion_window(&self) -> u32 {
        self.cc.window()
    }

    /// In fast recovery (RFC 6582).
    pub fn in_recovery(&self) -> bool {
        self.cc.in_recovery()
    }

    /// When [`Connection::on_timer`] should run next; `None` when no timer is armed.
    pub fn deadline(&self) -> Option<u64> {
        [self.rto_at, self.delack_at, self.persist_at, self.time_wait_at, self.fin_wait2_at].into_iter().flatten().min()
    }

    // ---- the application's side ----

    /// Queues as much of `bytes` as the send buffer takes and sends what the windows allow;
    /// returns how much was taken. A short write is followed by [`ConnEvent::SendRoom`] once
    /// the peer acknowledges enough.
    pub fn write<S: ConnSink + ?Sized>(&mut self, bytes: &[u8], now_ns: u64, sink: &mut S) -> usize {
        let n = self.queue(bytes);
        self.output(now_ns, sink);
        n
    }

    /// [`Connection::write`] without sending yet: writes that come together (an answer's head
    /// and its body) leave in full segments once [`Connection::flush`] runs, as Linux's
    /// autocorking sends them, instead of a short segment for each. Returns how much was taken.
    pub fn queue(&mut self, bytes: &[u8]) -> usize {
        if !self.can_write() {
            return 0;
        }
        let n = self.send.write_within(bytes, self.send_memory_limit);
        if n < bytes.len() {
            self.send_was_full = true;
        }
        n
    }

    /// Sends what the windows allow of what was queued.
    pub fn flush<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        self.output(now_ns, sink);
    }

    /// The owner consumed `n` delivered bytes: the receive window opens by as much.
    pub fn consumed<S: ConnSink + ?Sized>(&mut self, n: u64, now_ns: u64, sink: &mut S) {
        self.unread = self.unread.saturating_sub(n);
        // RFC 9293 3.8.6.2.2: tell the peer once the window it was told of (small: under an
        // MSS) can grow by an MSS or half the buffer (no silly window updates), however small
        // the reads that got it there.
        let advertised = if seq_gt(self.rcv_adv, self.rcv_nxt) { self.rcv_adv.wrapping_sub(self.rcv_nxt) } else { 0 };
        let grown = self.receive_window().saturating_sub(advertised);
        if self.state.can_receive() && advertised < self.send_mss && grown >= self.send_mss.min(self.cfg.recv_window / 2) {
            self.ack_now = true;
            self.output(now_ns, sink);
        }
    }

    /// Caps the receive window at `cap` bytes, what the owner has not consumed included
    /// (`u32::MAX`: no cap), for an owner that passes the bytes on and can take no more than
    /// `cap` (a split proxy: what it may still write on the other side). A window already advertised is honoured
    /// (its right edge never moves left); one that grows past an MSS is told at once.
    pub fn set_window_cap<S: ConnSink + ?Sized>(&mut self, cap: u32, now_ns: u64, sink: &mut S) {
        let grew = cap > self.window_cap;
        self.window_cap = cap;
        if grew {
            self.consumed(0, now_ns, sink);
        }
    }

    /// The receive window's cap (`u32::MAX`: none).
    pub fn window_cap(&self) -> u32 {
        self.window_cap
    }

    /// Closes mbox's side (RFC 9293 3.10.4): a FIN follows the queued data.
    pub fn close<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        match self.state {
            State::Established => self.state = State::FinWait1,
            State::CloseWait => self.state = State::LastAck,
            // Queued until the handshake completes.
            State::SynReceived => {}
            State::SynSent => return self.finish(CloseReason::LocalReset, sink),
            _ => return,
        }
        self.fin_queued = true;
        self.output(now_ns, sink);
    }

    /// Resets the connection (RFC 9293 3.10.5): a RST to the peer, CLOSED.
    pub fn abort<S: ConnSink + ?Sized>(&mut self, sink: &mut S) {
        if self.state == State::Closed {
            return;
        }
        if self.state != State::SynSent && self.state != State::TimeWait {
            let rst = SegmentOut { seq: self.snd_nxt, ack: 0, flags: RST, window: 0, options: TcpOptions::default(), payload_len: 0 };
            self.stats.segments_out += 1;
            sink.transmit(&rst, Payload::EMPTY);
        }
        self.finish(CloseReason::LocalReset, sink);
    }

    // ---- segments in ----

    /// Processes one segment from the peer (RFC 9293 3.10.7).
    pub fn on_segment<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, now_ns: u64, sink: &mut S) {
        if self.state == State::Closed {
            return;
        }
        self.stats.segments_in += 1;
        if self.state == State::SynSent {
            self.on_segment_syn_sent(seg, now_ns, sink);
            return;
        }
        if self.state == State::SynReceived && seg.has(SYN) && seg.seq == self.irs {
            if !seg.has(ACK) {
                // The peer's SYN again: our SYN-ACK was lost.
                return self.send_syn(now_ns, sink);
            }
            // Simultaneous open (RFC 9293 3.5): the peer's SYN-ACK acknowledges our SYN; its
            // SYN was taken already, the rest is the ACK that completes the handshake.
            let completing = SegmentIn { seq: seg.seq.wrapping_add(1), flags: seg.flags & !SYN, ..*seg };
            self.on_segment(&completing, now_ns, sink);
            if self.state.is_synchronized() {
                self.ack_now = true;
                self.output(now_ns, sink);
            }
            return;
        }
        if !self.acceptable(seg, now_ns) {
            if self.acceptance_window() == 0 && seg.seq == self.rcv_nxt && seg.has(ACK) && !seg.has(RST) && !seg.has(SYN) {
                // RFC 9293 3.10.7.4: at a zero window no data is taken, "but special allowance
                // should be made to accept valid ACKs": the segment's acknowledgement and window
                // count (a peer answering with data while we cannot read would otherwise stall
                // our sending until it sends a bare ACK).
                self.stats.unacceptable += 1;
                self.stats.segments_in -= 1;
                self.ack_now = true;
                let ack_only = SegmentIn { payload: &[], flags: seg.flags & !(FIN | PSH), ..*seg };
                return self.on_segment(&ack_only, now_ns, sink);
            }
            self.stats.unacceptable += 1;
            if !seg.has(RST) {
                if self.state == State::TimeWait && seg.has(FIN) && seg.seq.wrapping_add(seg.seq_len()) == self.rcv_nxt {
                    // The peer's FIN again (RFC 9293 3.10.7.4): our ACK was lost; acknowledge
                    // it and restart the 2 MSL timeout.
                    self.enter_time_wait(now_ns);
                }
                self.ack_now = true;
                self.output(now_ns, sink);
            }
            return;
        }
        if seg.has(RST) {
            return self.on_reset(seg, now_ns, sink);
        }
        if seg.has(SYN) {
            // RFC 5961 4.2: a SYN in a synchronized state (or SYN-RECEIVED, other than the
            // peer's own SYN again) gets a challenge ACK, whatever its sequence number.
            return self.challenge_ack(now_ns, sink);
        }
        if !seg.has(ACK) {
            return; // RFC 9293 3.10.7.4, fifth check: no ACK, drop
        }
        self.last_recv_ns = now_ns;
        self.probes_unanswered = 0;
        if self.state == State::FinWait2 {
            // A peer still sending is alive: the bound is on silence, not on half-closed time.
            self.fin_wait2_at = Some(now_ns + self.cfg.fin_wait2_ns);
        }
        self.update_timestamp(seg);
        if !self.on_ack(seg, now_ns, sink) {
            return;
        }
        if self.state == State::Closed {
            return;
        }
        self.on_data(seg, now_ns, sink);
        self.output(now_ns, sink);
    }

    /// RFC 9293 3.10.7.3: the answer to our SYN.
    fn on_segment_syn_sent<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, now_ns: u64, sink: &mut S) {
        let ack_ok = seg.has(ACK) && seq_gt(seg.ack, self.iss) && seq_le(seg.ack, self.snd_max);
        if seg.has(ACK) && !ack_ok {
            if !seg.has(RST) {
                self.send_reset_for(seg, sink);
            }
            return;
        }
        if seg.has(RST) {
            if ack_ok {
                self.finish(CloseReason::Refused, sink);
            }
            return;
        }
        if !seg.has(SYN) {
            return;
        }
        self.take_peer_syn(seg);
        if ack_ok {
            self.snd_una = seg.ack;
            self.snd_wnd = u32::from(seg.window); // never scaled in a SYN (RFC 7323 2.2)
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.rto_at = None;
            self.sample_handshake_rtt(seg, now_ns);
            self.state = State::Established;
            sink.event(ConnEvent::Established);
            self.ack_now = true;
            self.output(now_ns, sink);
        } else {
            // Simultaneous open: SYN-RECEIVED, answered with a SYN-ACK.
            self.state = State::SynReceived;
            self.send_syn(now_ns, sink);
        }
    }

    /// Reads the peer's SYN: its ISN and the options both sides will use.
    fn take_peer_syn(&mut self, syn: &SegmentIn<'_>) {
        self.irs = syn.seq;
        self.rcv_nxt = syn.seq.wrapping_add(1);
        // Nothing advertised yet: the edge starts at RCV.NXT. Left at 0, an edge compared
        // with a RCV.NXT half the sequence space away would look 2 GB ahead, and an active
        // opener whose peer's ISN lay there accepted bytes far past its window.
        self.rcv_adv = self.rcv_nxt;
        let o = &syn.options;
        self.peer_mss = o.mss.unwrap_or(DEFAULT_MSS as u16);
        let mut mss = u32::from(o.mss.unwrap_or(DEFAULT_MSS as u16)).clamp(64, u32::from(self.cfg.mss).max(64));
        // Scaling applies only when both SYNs carry the option (RFC 7323 2.2).
        (self.snd_shift, self.rcv_shift) = match (self.cfg.window_scaling, o.window_scale) {
            (true, Some(shift)) => {
                self.ws_offered = true;
                (shift.min(MAX_WINDOW_SHIFT), window_shift(self.cfg.recv_window.max(self.cfg.scale_window)))
            }
            _ => (0, 0),
        };
        self.sack_ok = self.cfg.sack && o.sack_permitted;
        if let (true, Some((tsval, _))) = (self.cfg.timestamps, o.timestamps) {
            self.ts = Some(Timestamps { recent: tsval, offset: self.iss.rotate_left(13) });
            // RFC 6691: the MSS does not count options; every segment carries 12 bytes of them.
            mss -= TIMESTAMP_OPTION_LEN;
        }
        self.send_mss = mss;
        self.cc = NewReno::new(mss);
        self.snd_wnd = u32::from(syn.window);
        self.max_snd_wnd = self.snd_wnd;
    }

    /// RFC 9293 3.10.7.4's first check (sequence number acceptability) and RFC 7323 5.3's PAWS.
    fn acceptable(&self, seg: &SegmentIn<'_>, now_ns: u64) -> bool {
        if let (Some(ts), Some((tsval, _))) = (self.ts, seg.options.timestamps) {
            // PAWS: a timestamp older than TS.Recent marks an old duplicate (RST excepted: it
            // may legitimately carry an old one).
            if !seg.has(RST) && seq_lt(tsval, ts.recent) && now_ns.saturating_sub(self.last_recv_ns) < PAWS_IDLE_NS {
                return false;
            }
        }
        let wnd = self.acceptance_window();
        let len = seg.seq_len();
        let in_window = |s: u32| seq_ge(s, self.rcv_nxt) && seq_lt(s, self.rcv_nxt.wrapping_add(wnd));
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => in_window(seg.seq),
            (_, 0) => false,
            (_, _) => in_window(seg.seq) || in_window(seg.seq.wrapping_add(len - 1)),
        }
    }

    /// RFC 5961 3.2: a RST resets only when its sequence number is exactly RCV.NXT; one
    /// elsewhere in the window gets a challenge ACK.
    fn on_reset<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, now_ns: u64, sink: &mut S) {
        if seg.seq != self.rcv_nxt {
            return self.challenge_ack(now_ns, sink);
        }
        match self.state {
            State::TimeWait => self.finish(CloseReason::Graceful, sink),
            State::Closing | State::LastAck => self.finish(CloseReason::Graceful, sink),
            _ => self.finish(CloseReason::PeerReset, sink),
        }
    }

    /// An ACK the attacker cannot have been meant to send gets an ACK back, at most
    /// [`CHALLENGE_ACKS_PER_SECOND`] a second (RFC 5961 7).
    fn challenge_ack<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        if now_ns.saturating_sub(self.challenge_window_ns) >= 1_000_000_000 {
            self.challenge_window_ns = now_ns;
            self.challenges_in_window = 0;
        }
        if self.challenges_in_window >= CHALLENGE_ACKS_PER_SECOND {
            self.stats.challenge_acks_limited += 1;
            return;
        }
        self.challenges_in_window += 1;
        self.stats.challenge_acks += 1;
        self.send_ack(now_ns, sink);
    }

    /// RFC 7323 4.3: TS.Recent follows the segment that covers the last ACK sent (SEG.SEQ <=
    /// Last.ACK.sent), so a delayed ACK echoes the earliest unacknowledged segment's time.
    fn update_timestamp(&mut self, seg: &SegmentIn<'_>) {
        if let (Some(ts), Some((tsval, _))) = (&mut self.ts, seg.options.timestamps) {
            if seq_le(seg.seq, self.last_ack_sent) && seq_ge(tsval, ts.recent) {
                ts.recent = tsval;
            }
        }
    }

    /// RFC 9293 3.10.7.4's fifth check, the ACK field. False when the segment is to be dropped.
    fn on_ack<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, now_ns: u64, sink: &mut S) -> bool {
        let ack = seg.ack;
        if self.state == State::SynReceived {
            if !(seq_gt(ack, self.snd_una) && seq_le(ack, self.snd_max)) {
                self.send_reset_for(seg, sink);
                return false;
            }
            self.snd_una = ack;
            self.snd_wnd = u32::from(seg.window) << self.snd_shift;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.rto_at = None;
            self.sample_handshake_rtt(seg, now_ns);
            self.state = if self.fin_queued { State::FinWait1 } else { State::Established };
            self.rexmit_next = self.snd_una;
            sink.event(ConnEvent::Established);
            return true;
        }
        if seq_gt(ack, self.snd_max) {
            // It acknowledges what was never sent: answer with an ACK, drop it.
            self.stats.unacceptable += 1;
            self.ack_now = true;
            self.output(now_ns, sink);
            return false;
        }
        // RFC 5961 5.2: an ACK further back than the largest window the peer ever offered
        // is a blind injection attempt.
        if seq_lt(ack, self.snd_una.wrapping_sub(self.max_snd_wnd.max(1))) {
            self.challenge_ack(now_ns, sink);
            return false;
        }
        if self.sack_ok {
            for &block in seg.options.sack.as_slice() {
                self.scoreboard.add(block, self.snd_una, self.snd_max);
            }
        }
        let flight = self.snd_max.wrapping_sub(self.snd_una);
        let window = u32::from(seg.window) << self.snd_shift;
        if seq_gt(ack, self.snd_una) {
            let acked = ack.wrapping_sub(self.snd_una);
            self.on_new_ack(ack, acked, seg, now_ns);
            let reaction = self.cc.on_ack(acked, ack, flight);
            self.update_window(seg, window);
            if reaction == Reaction::Retransmit {
                self.rexmit_next = if seq_gt(self.rexmit_next, self.snd_una) { self.rexmit_next } else { self.snd_una };
                self.retransmit_hole(now_ns, sink);
            }
            self.after_ack_progress(now_ns, sink);
        } else if ack == self.snd_una {
            let duplicate = seg.payload.is_empty() && !seg.has(FIN) && window == self.snd_wnd && flight > 0;
            self.update_window(seg, window);
            if duplicate {
                // RFC 6675 5: with SACK, DupThresh segments SACKed above SND.UNA mean it is
                // lost, however few duplicates arrived (reordering aside).
                let lost_by_sack = self.sack_ok && self.scoreboard.sacked_above(self.snd_una) >= 3 * self.send_mss;
                let mut reaction = self.cc.on_dupack(self.snd_una, self.snd_max, flight);
                if reaction.is_none() && lost_by_sack {
                    reaction = self.cc.on_loss(self.snd_una, self.snd_max, flight);
                }
                match reaction {
                    Some(Reaction::Retransmit) => {
                        self.rexmit_next = self.snd_una;
                        self.retransmit_hole(now_ns, sink);
                    }
                    Some(Reaction::Send) if self.sack_ok && self.cc.in_recovery() => {
                        // Each duplicate in recovery lets one more hole go out (RFC 6675 5 (C)).
                        self.retransmit_hole(now_ns, sink);
                    }
                    _ => {}
                }
            }
        }
        match self.state {
            State::FinWait1 if self.fin_acked() => {
                self.state = State::FinWait2;
                self.fin_wait2_at = Some(now_ns + self.cfg.fin_wait2_ns);
            }
            State::Closing if self.fin_acked() => self.enter_time_wait(now_ns),
            State::LastAck if self.fin_acked() => {
                self.finish(CloseReason::Graceful, sink);
                return false;
            }
            _ => {}
        }
        true
    }

    /// SND.UNA advances to `ack`: the acknowledged bytes leave the send buffer, the RTT is
    /// sampled, the retransmission timer restarts (RFC 6298 5.3).
    fn on_new_ack(&mut self, ack: u32, acked: u32, seg: &SegmentIn<'_>, now_ns: u64) {
        let data_acked = match self.fin_seq {
            Some(fin) if seq_gt(ack, fin) => acked - 1,
            _ => acked,
        };
        self.send.ack(data_acked as usize);
        if self.fin_queued && self.send.is_empty() {
            // Nothing more will be written: the ring's memory goes back.
            self.send.release();
        }
        self.snd_una = ack;
        if seq_lt(self.snd_nxt, ack) {
            self.snd_nxt = ack;
        }
        self.scoreboard.advance(ack);
        match (self.ts, seg.options.timestamps) {
            (Some(ts), Some((_, tsecr))) if tsecr != 0 => {
                let rtt_ms = self.ts_now(now_ns, ts).wrapping_sub(tsecr);
                if rtt_ms < 60_000 {
                    self.rtt.sample(u64::from(rtt_ms.max(1)) * 1_000_000);
                }
            }
            _ => {
                if let Some((seq, sent)) = self.timed {
                    if seq_gt(ack, seq) {
                        self.rtt.sample(now_ns.saturating_sub(sent));
                        self.timed = None;
                    }
                }
            }
        }
        self.retries = 0;
        self.persist_backoff = 0;
        self.rto_at = if self.snd_una == self.snd_max { None } else { Some(now_ns + self.rtt.rto_ns()) };
    }

    /// RFC 9293 3.10.7.4: the window follows the newest segment (SND.WL1, SND.WL2).
    fn update_window(&mut self, seg: &SegmentIn<'_>, window: u32) {
        if seq_lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && seq_le(self.snd_wl2, seg.ack)) {
            self.snd_wnd = window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            if window > 0 {
                self.persist_at = None;
            }
        }
    }

    fn after_ack_progress<S: ConnSink + ?Sized>(&mut self, _now_ns: u64, sink: &mut S) {
        let room = self.send.room_within(self.send_memory_limit);
        if self.send_was_full && room >= ((self.send.len() + room) / 4).max(1) && self.state.can_send() {
            self.send_was_full = false;
            sink.event(ConnEvent::SendRoom);
        }
    }

    /// RFC 9293 3.10.7.4's seventh and eighth checks: the segment's text and FIN.
    fn on_data<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, now_ns: u64, sink: &mut S) {
        if !self.state.can_receive() {
            // Data after the peer's FIN (CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT) is ignored;
            // a FIN again is acknowledged (TIME-WAIT restarts its timer).
            if seg.has(FIN) {
                if self.state == State::TimeWait {
                    self.enter_time_wait(now_ns);
                }
                self.ack_now = true;
            }
            return;
        }
        let mut payload = seg.payload;
        let mut seq = seg.seq;
        // Trim what was received already.
        let behind = seq_diff(self.rcv_nxt, seq);
        if behind > 0 {
            let skip = (behind as usize).min(payload.len());
            payload = &payload[skip..];
            seq = seq.wrapping_add(skip as u32);
        }
        // And what lies beyond the window.
        let room = self.acceptance_window() as usize;
        let ahead = seq_diff(seq, self.rcv_nxt).max(0) as usize;
        let fits = room.saturating_sub(ahead);
        let fin = seg.has(FIN) && payload.len() <= fits;
        payload = &payload[..payload.len().min(fits)];
        if !payload.is_empty() || seg.has(FIN) {
            if seq == self.rcv_nxt {
                if !payload.is_empty() {
                    sink.deliver(self.delivered, payload);
                    self.advance_receive(payload.len() as u32);
                }
                if !self.reasm.is_empty() {
                    // A hole filled: deliver what was waiting, acknowledge at once (RFC 5681 4.2).
                    let next = self.reasm.drain(self.delivered, &mut |offset, bytes| sink.deliver(offset, bytes));
                    let more = (next - self.delivered) as u32;
                    self.advance_receive(more);
                    self.ack_now = true;
                }
                // A FIN that came ahead of a hole counts once the bytes before it are in.
                let early_fin = self.fin_at.is_some_and(|at| at == self.delivered);
                if (fin || early_fin) && self.reasm.is_empty() {
                    self.on_fin(now_ns, sink);
                } else {
                    self.schedule_ack(payload.len(), now_ns);
                }
            } else {
                // Out of order: keep it (and where its FIN is), and send a duplicate ACK with
                // SACK at once.
                self.stats.out_of_order += 1;
                let start = self.delivered + ahead as u64;
                if !payload.is_empty() {
                    match self.reasm.keep_within(self.delivered, start, payload, room as u64, self.receive_memory_limit) {
                        Keep::Kept => {}
                        Keep::Refused => self.stats.out_of_order_refused += 1,
                        Keep::NoMemory => self.stats.out_of_order_refused_memory += 1,
                    }
                }
                if fin {
                    self.fin_at = Some(start + payload.len() as u64);
                }
                self.ack_now = true;
            }
        }
    }

    fn advance_receive(&mut self, n: u32) {
        self.rcv_nxt = self.rcv_nxt.wrapping_add(n);
        self.delivered += u64::from(n);
        self.unread += u64::from(n);
    }

    /// The ACK policy for `len` in-order bytes: at once in quick-ACK mode and for every
    /// second full segment, else after the delayed-ACK timeout (RFC 9293 3.8.6.3, RFC 5681 4.2).
    fn schedule_ack(&mut self, len: usize, now_ns: u64) {
        if len == 0 {
            return;
        }
        if now_ns.saturating_sub(self.last_send_ns) > self.rtt.rto_ns() {
            // Idle: the peer is likely waiting on us (a request); answer quickly again.
            self.quick_acks = self.quick_acks.max(QUICK_ACKS / 2);
        }
        self.unacked_segments += 1;
        if self.quick_acks > 0 {
            self.quick_acks -= 1;
            self.ack_now = true;
        } else if self.unacked_segments >= 2 {
            self.ack_now = true;
        } else if self.delack_at.is_none() {
            self.delack_at = Some(now_ns + self.cfg.delayed_ack_ns);
        }
    }

    /// The peer's FIN, in order (RFC 9293 3.10.7.4, eighth check).
    fn on_fin<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.reasm.release(); // empty (the FIN is in order): no more data will come
        self.ack_now = true;
        sink.event(ConnEvent::PeerClosed);
        match self.state {
            State::Established => self.state = State::CloseWait,
            State::FinWait1 if self.fin_acked() => self.enter_time_wait(now_ns),
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => self.enter_time_wait(now_ns),
            _ => {}
        }
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|fin| seq_gt(self.snd_una, fin))
    }

    fn enter_time_wait(&mut self, now_ns: u64) {
        self.state = State::TimeWait;
        self.fin_wait2_at = None;
        self.rto_at = None;
        self.persist_at = None;
        self.time_wait_at = Some(now_ns + self.cfg.time_wait_ns);
    }

    // ---- timers ----

    /// Runs the timers due at `now_ns`.
    pub fn on_timer<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        if self.state == State::Closed {
            return;
        }
        if self.time_wait_at.is_some_and(|t| t <= now_ns) {
            return self.finish(CloseReason::Graceful, sink);
        }
        if self.fin_wait2_at.is_some_and(|t| t <= now_ns) {
            return self.finish(CloseReason::TimedOut, sink);
        }
        if self.rto_at.is_some_and(|t| t <= now_ns) {
            self.on_retransmission_timeout(now_ns, sink);
            if self.state == State::Closed {
                return;
            }
        }
        if self.persist_at.is_some_and(|t| t <= now_ns) {
            self.send_window_probe(now_ns, sink);
        }
        if self.delack_at.is_some_and(|t| t <= now_ns) {
            self.ack_now = true;
            self.output(now_ns, sink);
        }
    }

    /// RFC 6298 5.4-5.7: retransmit the earliest unacknowledged segment, back off the RTO,
    /// restart from one segment (RFC 5681 3.1); give up after the configured retries.
    fn on_retransmission_timeout<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        self.rto_at = None;
        self.stats.timeouts += 1;
        // A peer that closed its window and still answers is alive: its timeouts are probes,
        // not failures (RFC 9293 3.8.6.1; Linux gives up only after the peer fell silent).
        let zero_window_alive =
            self.state.is_synchronized() && self.snd_wnd == 0 && now_ns.saturating_sub(self.last_recv_ns) < self.cfg.max_rto_ns;
        if !zero_window_alive {
            self.retries += 1;
        }
        if self.retries > self.cfg.max_retries {
            if self.state != State::SynSent {
                let rst = SegmentOut { seq: self.snd_nxt, ack: 0, flags: RST, window: 0, options: TcpOptions::default(), payload_len: 0 };
                self.stats.segments_out += 1;
                sink.transmit(&rst, Payload::EMPTY);
            }
            return self.finish(CloseReason::TimedOut, sink);
        }
        self.rtt.back_off();
        self.timed = None;
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.stats.retransmits += 1;
            return self.send_syn(now_ns, sink);
        }
        let flight = self.snd_max.wrapping_sub(self.snd_una);
        self.cc.on_timeout(flight, self.snd_max);
        // RFC 2018 8 / RFC 6675 5.1: after a timeout, SACK information is not trusted.
        self.scoreboard.clear();
        self.snd_nxt = self.snd_una;
        self.rexmit_next = self.snd_una;
        self.output(now_ns, sink);
        if self.rto_at.is_none() && self.snd_una != self.snd_max {
            self.rto_at = Some(now_ns + self.rtt.rto_ns());
        }
    }

    /// RFC 9293 3.8.6.1: a zero window is probed, with backoff, for as long as the peer
    /// answers (a zero window is never a reason to give up; a peer that answers no probe
    /// through the configured retries is). The probe is Linux's: an ACK below SND.UNA, which
    /// the receiver must answer with its window, and which puts nothing in flight.
    fn send_window_probe<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        self.persist_at = None;
        if self.snd_wnd > 0 || !self.has_unsent() {
            return;
        }
        if self.probes_unanswered >= self.cfg.max_retries {
            let rst = SegmentOut { seq: self.snd_nxt, ack: 0, flags: RST, window: 0, options: TcpOptions::default(), payload_len: 0 };
            self.stats.segments_out += 1;
            sink.transmit(&rst, Payload::EMPTY);
            return self.finish(CloseReason::TimedOut, sink);
        }
        self.probes_unanswered += 1;
        self.stats.window_probes += 1;
        let seg = self.segment(self.snd_una.wrapping_sub(1), ACK, 0, now_ns);
        self.transmit(&seg, 0, now_ns, sink);
        self.persist_backoff += 1;
        self.arm_persist(now_ns);
    }

    /// The next window probe: the RTO, doubled per probe already sent, at most the largest RTO.
    fn arm_persist(&mut self, now_ns: u64) {
        let backoff = 1u64 << self.persist_backoff.min(16);
        self.persist_at = Some(now_ns + self.rtt.rto_ns().saturating_mul(backoff).min(self.cfg.max_rto_ns));
    }

    // ---- segments out ----

    /// Sends what the windows allow, a FIN when it is due, and a pending ACK.
    fn output<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        if !self.state.is_synchronized() {
            return;
        }
        let mut sent = false;
        if matches!(self.state, State::Established | State::CloseWait | State::FinWait1 | State::LastAck | State::Closing) {
            if self.snd_una == self.snd_max && now_ns.saturating_sub(self.last_send_ns) > self.rtt.rto_ns() {
                self.cc.restart_after_idle(); // RFC 5681 4.1
            }
            loop {
                let data_end = self.snd_una.wrapping_add(self.send.len() as u32);
                let unsent = if seq_lt(self.snd_nxt, data_end) { data_end.wrapping_sub(self.snd_nxt) } else { 0 };
                // NewReno's window inflation already counts the segments that left the network
                // (each duplicate ACK adds one): SACKed bytes stay in the flight here, or they
                // would be counted twice.
                let flight = self.snd_nxt.wrapping_sub(self.snd_una);
                let window = self.snd_wnd.min(self.cc.window());
                let usable = window.saturating_sub(flight);
                if unsent > 0 && usable > 0 {
                    let full = self.payload_room();
                    let len = unsent.min(usable).min(full);
                    // Sender silly-window avoidance (RFC 9293 3.8.6.2.1): a short segment only
                    // when it is all there is, or the window is a fair share of the largest. A
                    // full segment is the MSS less the SACK blocks riding along.
                    if len < full && len < unsent && usable < self.max_snd_wnd / 2 && flight > 0 {
                        break;
                    }
                    let last = len == unsent;
                    let fin = last && self.fin_queued && self.fin_seq.is_none();
                    let flags = ACK | if last { PSH } else { 0 } | if fin { FIN } else { 0 };
                    let seq = self.snd_nxt;
                    let seg = self.segment(seq, flags, len, now_ns);
                    let offset = seq.wrapping_sub(self.snd_una) as usize;
                    let retransmission = seq_lt(seq, self.snd_max);
                    self.transmit(&seg, offset, now_ns, sink);
                    if retransmission {
                        self.stats.retransmits += 1;
                    } else if self.timed.is_none() && self.ts.is_none() {
                        self.timed = Some((seq, now_ns));
                    }
                    self.snd_nxt = seq.wrapping_add(len + u32::from(fin));
                    if fin {
                        self.fin_seq = Some(seq.wrapping_add(len));
                    }
                    self.advance_max();
                    sent = true;
                    continue;
                }
                if unsent == 0 && self.fin_queued && (self.fin_seq.is_none() || self.snd_nxt == self.fin_seq.unwrap_or(0)) {
                    // A FIN alone (or again, after a timeout sent SND.NXT back to it).
                    let seq = self.snd_nxt;
                    let seg = self.segment(seq, ACK | FIN, 0, now_ns);
                    let retransmission = self.fin_seq.is_some();
                    self.transmit(&seg, 0, now_ns, sink);
                    if retransmission {
                        self.stats.retransmits += 1;
                    }
                    self.fin_seq = Some(seq);
                    self.snd_nxt = seq.wrapping_add(1);
                    self.advance_max();
                    sent = true;
                }
                if unsent > 0 && self.snd_wnd == 0 && self.snd_nxt == self.snd_una && self.persist_at.is_none() {
                    // Nothing in flight to bring a window update: probe (RFC 9293 3.8.6.1).
                    self.arm_persist(now_ns);
                }
                break;
            }
        }
        if !sent && (self.ack_now || self.receive_window_opened()) {
            self.send_ack(now_ns, sink);
        }
    }

    fn advance_max(&mut self) {
        if seq_gt(self.snd_nxt, self.snd_max) {
            self.snd_max = self.snd_nxt;
        }
    }

    fn has_unsent(&self) -> bool {
        seq_lt(self.snd_nxt, self.snd_una.wrapping_add(self.send.len() as u32))
    }

    /// Retransmits the first hole at or after `rexmit_next` that the peer has not SACKed (at
    /// SND.UNA without SACK information): fast retransmit and recovery.
    fn retransmit_hole<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        let from = if seq_gt(self.rexmit_next, self.snd_una) { self.rexmit_next } else { self.snd_una };
        let (start, end) = match self.scoreboard.next_hole(from) {
            Some(hole) => hole,
            None if from == self.snd_una => (from, self.snd_max),
            None => return,
        };
        if !seq_lt(start, self.snd_max) {
            return;
        }
        let data_end = self.snd_una.wrapping_add(self.send.len() as u32);
        if self.fin_seq == Some(start) {
            let seg = self.segment(start, ACK | FIN, 0, now_ns);
            self.transmit(&seg, 0, now_ns, sink);
        } else {
            let limit = if seq_lt(end, data_end) { end } else { data_end };
            let len = limit.wrapping_sub(start).min(self.payload_room());
            if len == 0 || !seq_lt(start, data_end) {
                return;
            }
            let seg = self.segment(start, ACK | PSH, len, now_ns);
            self.transmit(&seg, start.wrapping_sub(self.snd_una) as usize, now_ns, sink);
            self.rexmit_next = start.wrapping_add(len);
        }
        self.stats.retransmits += 1;
        // Karn: the timed segment may be this one; its sample would be ambiguous.
        if self.timed.is_some_and(|(seq, _)| seq_le(start, seq)) {
            self.timed = None;
        }
        if self.rto_at.is_none() {
            self.rto_at = Some(now_ns + self.rtt.rto_ns());
        }
    }

    /// SACK blocks a segment carries now (none without SACK or out-of-order data).
    fn sack_blocks(&self) -> usize {
        if !self.sack_ok {
            return 0;
        }
        let max = if self.ts.is_some() { 3 } else { SackBlocks::MAX };
        self.reasm.ranges().min(max)
    }

    /// Payload bytes a segment may carry now: the MSS less the SACK option when it rides along
    /// (the timestamp option is already out of `send_mss`), so a frame never outgrows the MTU.
    fn payload_room(&self) -> u32 {
        let sack = match self.sack_blocks() {
            0 => 0,
            n => 4 + 8 * n as u32,
        };
        self.send_mss.saturating_sub(sack).max(1)
    }

    /// A segment from `seq` carrying `len` bytes with the current ACK, window and options.
    fn segment(&mut self, seq: u32, flags: u8, len: u32, now_ns: u64) -> SegmentOut {
        let window = self.advertise();
        let mut options = TcpOptions::default();
        if let Some(ts) = self.ts {
            options.timestamps = Some((self.ts_now(now_ns, ts), ts.recent));
        }
        let blocks = self.sack_blocks();
        if blocks > 0 {
            let rcv_nxt = self.rcv_nxt;
            let delivered = self.delivered;
            options.sack = self.reasm.sack(blocks, |offset| rcv_nxt.wrapping_add((offset - delivered) as u32));
        }
        SegmentOut { seq, ack: self.rcv_nxt, flags, window, options, payload_len: len }
    }

    /// Hands a segment to the sink with its payload (from send-buffer offset `offset`); an ACK
    /// rides on it, so pending ACK state clears.
    fn transmit<S: ConnSink + ?Sized>(&mut self, seg: &SegmentOut, offset: usize, now_ns: u64, sink: &mut S) {
        self.last_send_ns = now_ns;
        let payload = if seg.payload_len > 0 { self.send.slice(offset, seg.payload_len as usize) } else { Payload::EMPTY };
        self.stats.segments_out += 1;
        self.last_ack_sent = seg.ack;
        sink.transmit(seg, payload);
        self.ack_now = false;
        self.unacked_segments = 0;
        self.delack_at = None;
        if (seg.payload_len > 0 || seg.has(FIN)) && self.rto_at.is_none() {
            self.rto_at = Some(now_ns + self.rtt.rto_ns());
        }
    }

    /// A segment with no data or flag but the ACK. Its sequence number is the highest sent
    /// (SND.MAX), not SND.NXT: after a timeout SND.NXT goes back to SND.UNA, and a peer that
    /// received more than that finds a zero-length segment below its RCV.NXT unacceptable
    /// (RFC 9293 3.10.7.4's first check) and drops it, ACK, window and timestamp alike (BSD
    /// sends SND.MAX; Linux too, within the peer's window: tcp_acceptable_seq).
    fn send_ack<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        let window_end = self.snd_una.wrapping_add(self.snd_wnd);
        let seq = if seq_le(self.snd_max, window_end) { self.snd_max } else { window_end };
        let seg = self.segment(seq, ACK, 0, now_ns);
        self.transmit(&seg, 0, now_ns, sink);
    }

    /// Our SYN (active open) or SYN-ACK (passive), with the options negotiated.
    fn send_syn<S: ConnSink + ?Sized>(&mut self, now_ns: u64, sink: &mut S) {
        let passive = self.state == State::SynReceived;
        let mut options = TcpOptions { mss: Some(self.cfg.mss), ..TcpOptions::default() };
        if !passive {
            // Offer everything configured; the answer decides.
            if self.cfg.window_scaling {
                options.window_scale = Some(window_shift(self.cfg.recv_window.max(self.cfg.scale_window)));
            }
            options.sack_permitted = self.cfg.sack;
            if self.cfg.timestamps {
                let offset = self.iss.rotate_left(13);
                options.timestamps = Some(((now_ns / 1_000_000) as u32).wrapping_add(offset)).map(|v| (v, 0));
            }
        } else {
            if self.ws_offered {
                options.window_scale = Some(self.rcv_shift);
            }
            options.sack_permitted = self.sack_ok;
            if let Some(ts) = self.ts {
                options.timestamps = Some((self.ts_now(now_ns, ts), ts.recent));
            }
        }
        let flags = if passive { SYN | ACK } else { SYN };
        // The window in a SYN is never scaled (RFC 7323 2.2).
        let window = self.cfg.recv_window.min(0xffff) as u16;
        let seg = SegmentOut { seq: self.iss, ack: if passive { self.rcv_nxt } else { 0 }, flags, window, options, payload_len: 0 };
        self.stats.segments_out += 1;
        self.syn_sends += 1;
        self.last_send_ns = now_ns;
        self.rcv_adv = self.rcv_nxt.wrapping_add(u32::from(window));
        self.last_ack_sent = seg.ack;
        sink.transmit(&seg, Payload::EMPTY);
        self.rto_at = Some(now_ns + self.rtt.rto_ns());
    }

    /// An answer to a segment that should not have come (RFC 9293 3.10.7.1 / 3.10.7.3).
    fn send_reset_for<S: ConnSink + ?Sized>(&mut self, seg: &SegmentIn<'_>, sink: &mut S) {
        let rst = SegmentOut::reset_for(seg);
        self.stats.segments_out += 1;
        sink.transmit(&rst, Payload::EMPTY);
    }

    /// The receive window from RCV.NXT: the configured one (or the cap, if lower) less what
    /// the owner has not consumed. Out-of-order bytes held lie inside it (they do not move
    /// its right edge).
    fn receive_window(&self) -> u32 {
        u64::from(self.cfg.recv_window.min(self.window_cap)).saturating_sub(self.unread) as u32
    }

    /// The window segments are accepted in: at least what was advertised, whose right edge
    /// never moves left (RFC 9293 3.8.6.2.2), even when the owner fell behind since.
    fn acceptance_window(&self) -> u32 {
        let promised = if seq_gt(self.rcv_adv, self.rcv_nxt) { self.rcv_adv.wrapping_sub(self.rcv_nxt) } else { 0 };
        self.receive_window().max(promised)
    }

    /// The window field to send, scaled. Rounded down: rounding up to keep an edge advertised
    /// before would move the right edge past the buffer by up to 2^shift - 1 bytes with every
    /// ACK, without bound while the owner does not read (RFC 7323 appendix F; Linux lets the
    /// window shrink by the rounding for the same reason). Segments up to the furthest edge
    /// advertised are still accepted (`rcv_adv`, [`Connection::acceptance_window`]), so a peer
    /// that sent into it loses nothing.
    fn advertise(&mut self) -> u16 {
        let field = (self.acceptance_window() >> self.rcv_shift).min(0xffff);
        let edge = self.rcv_nxt.wrapping_add(field << self.rcv_shift);
        if seq_gt(edge, self.rcv_adv) {
            self.rcv_adv = edge;
        }
        field as u16
    }

    /// The window reopened from zero by enough to tell the peer.
    fn receive_window_opened(&self) -> bool {
        let advertised = self.rcv_adv.wrapping_sub(self.rcv_nxt);
        advertised == 0 && self.receive_window() >= self.send_mss.min(self.cfg.recv_window / 2) && self.state.can_receive()
    }

    /// Our timestamp clock: milliseconds plus the connection's offset.
    fn ts_now(&self, now_ns: u64, ts: Timestamps) -> u32 {
        ((now_ns / 1_000_000) as u32).wrapping_add(ts.offset)
    }

    /// The handshake completed: its RTT is the SYN's timestamp echoed, or the time since the
    /// SYN (SYN-ACK) if it was sent once (Karn's algorithm, RFC 6298 3: a SYN-ACK sent again
    /// for a duplicate SYN is as ambiguous as one sent at the RTO). If it was sent more than
    /// once and no sample came, the RTO is 3 s (RFC 6298 5.7), not the backed-off one. Its
    /// retries do not count against the data that follows.
    fn sample_handshake_rtt(&mut self, seg: &SegmentIn<'_>, now_ns: u64) {
        match (self.ts, seg.options.timestamps) {
            (Some(ts), Some((_, tsecr))) if tsecr != 0 => {
                let rtt_ms = self.ts_now(now_ns, ts).wrapping_sub(tsecr);
                if rtt_ms < 60_000 {
                    self.rtt.sample(u64::from(rtt_ms.max(1)) * 1_000_000);
                }
            }
            _ if self.syn_sends == 1 => self.rtt.sample(now_ns.saturating_sub(self.last_send_ns).max(1)),
            _ => {}
        }
        if self.syn_sends > 1 && self.rtt.srtt_ns().is_none() {
            self.rtt.reinitialize(HANDSHAKE_RETRANSMITTED_RTO_NS);
        }
        self.retries = 0;
    }

    fn finish<S: ConnSink + ?Sized>(&mut self, reason: CloseReason, sink: &mut S) {
        self.state = State::Closed;
        self.rto_at = None;
        self.delack_at = None;
        self.persist_at = None;
        self.time_wait_at = None;
        self.fin_wait2_at = None;
        // Nothing will be sent or delivered any more: the buffers' memory goes back.
        self.send.ack(self.send.len());
        self.send.release();
        self.reasm.clear();
        sink.event(ConnEvent::Closed(reason));
    }
}

impl Connection {
    /// The relations that hold between any two calls; for the property tests and the fuzz
    /// target (not a run-time check).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let order = seq_le(self.snd_una, self.snd_nxt) && seq_le(self.snd_nxt, self.snd_max);
        if !order {
            return Err(format!("SND.UNA {} <= SND.NXT {} <= SND.MAX {} broken", self.snd_una, self.snd_nxt, self.snd_max));
        }
        if self.send.len() > self.send.capacity() || self.send.allocated() > self.send.capacity() {
            return Err("the send buffer holds more than its capacity".into());
        }
        let (send_held, receive_held) = self.memory_at_limit;
        if self.send.allocated() > self.send_memory_limit.max(send_held) {
            return Err(format!("a send ring of {} bytes past its memory limit {}", self.send.allocated(), self.send_memory_limit));
        }
        if self.reasm.allocated() > self.receive_memory_limit.max(receive_held) {
            return Err(format!("a receive ring of {} bytes past its memory limit {}", self.reasm.allocated(), self.receive_memory_limit));
        }
        if self.state == State::Closed && self.buffer_bytes() > 0 {
            return Err(format!("a closed connection holds {} bytes of buffers", self.buffer_bytes()));
        }
        let sent_span = self.snd_max.wrapping_sub(self.snd_una);
        // Data, and a SYN or FIN (a closed connection let its data go).
        let limit = self.send.len() as u32 + 2;
        if sent_span > limit && self.state != State::Closed {
            return Err(format!("{sent_span} bytes in flight but only {} in the send buffer", self.send.len()));
        }
        if self.reasm.bytes() as u64 > u64::from(self.cfg.recv_window) {
            return Err("out-of-order bytes beyond the receive window".into());
        }
        self.reasm.check()?;
        if self.reasm.first_kept().is_some_and(|first| first <= self.delivered) {
            return Err(format!("out-of-order data kept from {:?}, delivered up to {}", self.reasm.first_kept(), self.delivered));
        }
        let timers_armed = self.deadline().is_some();
        if self.state == State::Closed && timers_armed {
            return Err("a closed connection keeps a timer".into());
        }
        let unacked = self.snd_una != self.snd_max;
        if unacked && self.state != State::Closed && self.state != State::TimeWait && self.rto_at.is_none() && self.persist_at.is_none() {
            return Err(format!("{sent_span} unacknowledged in {:?} with no retransmission timer", self.state));
        }
        if self.state == State::TimeWait && self.time_wait_at.is_none() {
            return Err("TIME-WAIT without its timer".into());
        }
        Ok(())
    }
}

/// The smallest shift that lets `window` fit the 16-bit window field.
fn window_shift(window: u32) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (window >> shift) > 0xffff {
        shift += 1;
    }
    shift
}

/// PAWS does not apply after a connection idled this long: the peer's clock may have wrapped
/// (RFC 7323 5.5: 24 days).
const PAWS_IDLE_NS: u64 = 24 * 24 * 3600 * 1_000_000_000;
