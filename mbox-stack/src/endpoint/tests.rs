//! The connection state machine driven segment by segment, each test naming the RFC rule it
//! checks. The peer is played by hand: segments in as fields, what mbox sends recorded.

use super::conn::{CloseReason, ConnEvent, Connection, State};
use super::segment::{SackBlocks, SegmentIn, SegmentOut, TcpOptions};
use super::{Config, ConnSink, Payload};
use crate::wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};

const MS: u64 = 1_000_000;
const PEER_ISN: u32 = 5_000;
const ISS: u32 = 90_000;

/// What a connection reported.
#[derive(Default)]
struct Recorder {
    sent: Vec<(SegmentOut, Vec<u8>)>,
    received: Vec<u8>,
    events: Vec<ConnEvent>,
}

impl ConnSink for Recorder {
    fn transmit(&mut self, seg: &SegmentOut, payload: Payload<'_>) {
        let mut bytes = Vec::new();
        payload.copy_to(&mut bytes);
        assert_eq!(bytes.len(), seg.payload_len as usize, "the payload handed over matches the segment");
        self.sent.push((*seg, bytes));
    }

    fn deliver(&mut self, offset: u64, bytes: &[u8]) {
        assert_eq!(offset, self.received.len() as u64, "bytes are delivered in order, once");
        self.received.extend_from_slice(bytes);
    }

    fn event(&mut self, event: ConnEvent) {
        self.events.push(event);
    }
}

impl Recorder {
    fn take(&mut self) -> Vec<(SegmentOut, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }

    fn last(&self) -> SegmentOut {
        self.sent.last().expect("something was sent").0
    }
}

/// A segment from the peer.
fn seg(seq: u32, ack: u32, flags: u8, payload: &[u8]) -> SegmentIn<'_> {
    SegmentIn { seq, ack, flags, window: 65_535, options: TcpOptions::default(), payload }
}

fn linux_syn_options() -> TcpOptions {
    TcpOptions { mss: Some(1460), window_scale: Some(7), sack_permitted: true, timestamps: Some((1_000, 0)), ..TcpOptions::default() }
}

/// A connection accepted from a SYN with `options` and established by the peer's ACK.
fn established(cfg: &Config, options: TcpOptions) -> (Connection, Recorder) {
    let mut rec = Recorder::default();
    let syn = SegmentIn { options, ..seg(PEER_ISN, 0, SYN, b"") };
    let mut c = Connection::accept(cfg, &syn, ISS, 0, &mut rec);
    let synack = rec.last();
    let mut ack = seg(PEER_ISN + 1, ISS + 1, ACK, b"");
    if options.timestamps.is_some() {
        ack.options.timestamps = Some((1_001, synack.options.timestamps.unwrap().0));
    }
    if options.window_scale.is_some() {
        ack.window = 512; // × 2^7 = 64 KiB
    }
    c.on_segment(&ack, MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    rec.take();
    rec.events.clear();
    (c, rec)
}

/// The peer acknowledges `ack` with its window field `window` (timestamps echoed when in use).
fn ack_from_peer(ack: u32, window: u16) -> SegmentIn<'static> {
    SegmentIn { window, ..seg(PEER_ISN + 1, ack, ACK, b"") }
}

fn plain() -> TcpOptions {
    TcpOptions { mss: Some(1460), ..TcpOptions::default() }
}

// ---- the handshake ----

/// RFC 9293 3.5 and RFC 7323 1.3: the SYN-ACK acknowledges the SYN and answers every option
/// the SYN offered (window scale, SACK-permitted, timestamps echoing the peer's TSval).
#[test]
fn rfc9293_3_5_a_syn_is_answered_with_the_options_it_offered() {
    let mut rec = Recorder::default();
    let syn = SegmentIn { options: linux_syn_options(), ..seg(PEER_ISN, 0, SYN, b"") };
    let c = Connection::accept(&Config::default(), &syn, ISS, 0, &mut rec);
    assert_eq!(c.state(), State::SynReceived);
    let synack = rec.last();
    assert_eq!((synack.seq, synack.ack, synack.flags), (ISS, PEER_ISN + 1, SYN | ACK));
    let o = synack.options;
    assert_eq!(o.mss, Some(1460));
    assert_eq!(o.window_scale, Some(3), "256 KiB receive window: the smallest shift that fits 16 bits");
    assert!(o.sack_permitted);
    assert_eq!(o.timestamps.map(|t| t.1), Some(1_000), "TSecr echoes the SYN's TSval");
    assert_eq!(synack.window, 65_535, "the window in a SYN is not scaled (RFC 7323 2.2)");
    assert_eq!(c.send_mss(), 1448, "the MSS less the timestamp option every segment carries (RFC 6691)");
}

/// RFC 7323 1.3, RFC 2018 2: options the SYN did not offer are not sent; RFC 9293 3.7.1: no
/// MSS option means 536.
#[test]
fn rfc7323_1_3_options_not_offered_are_not_answered_and_the_default_mss_is_536() {
    let mut rec = Recorder::default();
    let c = Connection::accept(&Config::default(), &seg(PEER_ISN, 0, SYN, b""), ISS, 0, &mut rec);
    let o = rec.last().options;
    assert_eq!((o.window_scale, o.sack_permitted, o.timestamps), (None, false, None));
    assert_eq!(c.send_mss(), 536);
}

/// RFC 9293 3.10.7.4 (SYN-RECEIVED): an ACK that does not acknowledge our SYN gets a reset; the
/// right one establishes the connection.
#[test]
fn rfc9293_3_10_7_4_a_wrong_ack_in_syn_received_is_reset_the_right_one_establishes() {
    let mut rec = Recorder::default();
    let mut c = Connection::accept(&Config::default(), &seg(PEER_ISN, 0, SYN, b""), ISS, 0, &mut rec);
    rec.take();
    c.on_segment(&seg(PEER_ISN + 1, ISS + 7, ACK, b""), MS, &mut rec);
    assert_eq!((rec.last().flags, rec.last().seq), (RST, ISS + 7));
    assert_eq!(c.state(), State::SynReceived);
    c.on_segment(&seg(PEER_ISN + 1, ISS + 1, ACK, b""), 2 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!(rec.events, vec![ConnEvent::Established]);
}

/// RFC 6298 2.1 and 5.5: a SYN-ACK not acknowledged is sent again after the initial RTO of one
/// second, then after two; a retransmitted SYN from the peer gets it at once.
#[test]
fn rfc6298_5_5_the_syn_ack_is_retransmitted_with_backoff() {
    let mut rec = Recorder::default();
    let syn = seg(PEER_ISN, 0, SYN, b"");
    let mut c = Connection::accept(&Config::default(), &syn, ISS, 0, &mut rec);
    assert_eq!(c.deadline(), Some(1_000 * MS));
    rec.take();
    c.on_timer(1_000 * MS, &mut rec);
    assert_eq!(rec.take().len(), 1);
    assert_eq!(c.deadline(), Some(3_000 * MS), "backed off to 2 s");
    c.on_segment(&syn, 1_500 * MS, &mut rec);
    assert_eq!(rec.last().flags, SYN | ACK, "the peer's SYN again: our SYN-ACK again");
}

/// RFC 6298 3 (Karn's algorithm): without timestamps an RTT sample never comes from a segment
/// sent more than once. A SYN-ACK sent again for the peer's SYN again is such a segment: the
/// ACK may answer either, so the handshake gives no sample (and RFC 6298 5.7's 3 s follows).
#[test]
fn rfc6298_3_karn_a_syn_ack_sent_again_for_a_duplicate_syn_gives_no_sample() {
    let mut rec = Recorder::default();
    let syn = seg(PEER_ISN, 0, SYN, b"");
    let mut c = Connection::accept(&Config::default(), &syn, ISS, 0, &mut rec);
    c.on_segment(&syn, 900 * MS, &mut rec);
    assert_eq!(rec.take().len(), 2, "a SYN-ACK for each SYN");
    // The ACK 10 ms after the second SYN-ACK may answer the first one, sent 910 ms before it.
    c.on_segment(&seg(PEER_ISN + 1, ISS + 1, ACK, b""), 910 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.rto_ns(), 3_000 * MS, "no 10 ms sample: the handshake's RTO is 3 s");
}

/// RFC 6298 3 (Karn), passive open: the SYN-ACK retransmitted at the RTO gives no sample either.
#[test]
fn rfc6298_3_karn_a_syn_ack_retransmitted_at_the_rto_gives_no_sample() {
    let mut rec = Recorder::default();
    let mut c = Connection::accept(&Config::default(), &seg(PEER_ISN, 0, SYN, b""), ISS, 0, &mut rec);
    c.on_timer(1_000 * MS, &mut rec);
    c.on_segment(&seg(PEER_ISN + 1, ISS + 1, ACK, b""), 1_050 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.rto_ns(), 3_000 * MS, "not an RTO from a 50 ms sample");
}

/// RFC 6298 3 (Karn), simultaneous open: our SYN went out twice (as the SYN, then in the
/// SYN-ACK), so the peer's SYN-ACK gives no sample.
#[test]
fn rfc6298_3_karn_a_simultaneous_open_gives_no_sample() {
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&Config::default(), ISS, 0, &mut rec);
    c.on_segment(&seg(PEER_ISN, 0, SYN, b""), 800 * MS, &mut rec);
    c.on_segment(&seg(PEER_ISN, ISS + 1, SYN | ACK, b""), 810 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.rto_ns(), 3_000 * MS);
}

/// RFC 6298 2.1: a handshake answered at once takes its sample; a cookie's connection sent no
/// SYN-ACK of its own and times nothing (it starts from the initial RTO of 1 s).
#[test]
fn rfc6298_2_1_a_handshake_sent_once_is_timed_a_cookie_one_is_not() {
    let mut rec = Recorder::default();
    let mut c = Connection::accept(&Config::default(), &seg(PEER_ISN, 0, SYN, b""), ISS, 0, &mut rec);
    c.on_segment(&seg(PEER_ISN + 1, ISS + 1, ACK, b""), 100 * MS, &mut rec);
    assert_eq!(c.rto_ns(), 300 * MS, "100 ms + 4 × 50 ms");
    let ack = seg(PEER_ISN + 1, ISS + 1, ACK, b"");
    let c = Connection::from_cookie(&Config::default(), &ack, ISS, 1460, 5_000 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.rto_ns(), 1_000 * MS, "no sample from a SYN-ACK the connection never sent");
}

/// RFC 6298 2.1 and 5.5, active open: an unanswered SYN is sent again after the initial RTO
/// of 1 s, then after 2, 4...; after the configured retries the connection is given up
/// (TimedOut) without a reset — nothing was synchronized to reset (RFC 9293 3.10.7.3).
#[test]
fn rfc6298_5_5_an_unanswered_syn_is_retransmitted_with_backoff_then_given_up_without_a_reset() {
    let cfg = Config { max_retries: 3, ..Config::default() };
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&cfg, ISS, 0, &mut rec);
    let first = rec.take();
    assert_eq!((first.len(), first[0].0.flags, first[0].0.seq), (1, SYN, ISS));
    let mut due = Vec::new();
    while let Some(at) = c.deadline() {
        due.push(at / MS);
        c.on_timer(at, &mut rec);
    }
    assert_eq!(due, [1_000, 3_000, 7_000, 15_000], "1 s, then doubled each time");
    let resent = rec.take();
    assert_eq!(resent.len(), 3, "one SYN per timeout but the last");
    assert!(resent.iter().all(|(s, _)| s.flags == SYN && s.seq == ISS && s.options.mss.is_some()), "the same SYN");
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events, vec![ConnEvent::Closed(CloseReason::TimedOut)]);
    assert_eq!(c.stats().retransmits, 3);
}

/// RFC 6298 5.7: once the SYN was retransmitted, the RTO when data transmission begins is 3 s
/// (not the backed-off one, not 1 s) unless the handshake gave a sample; with timestamps it
/// does (the echo names the SYN answered, RFC 7323 4).
#[test]
fn rfc6298_5_7_after_a_retransmitted_syn_the_rto_is_three_seconds_unless_a_sample_came() {
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&Config::default(), ISS, 0, &mut rec);
    c.on_timer(1_000 * MS, &mut rec);
    c.on_timer(3_000 * MS, &mut rec);
    assert_eq!(c.rto_ns(), 4_000 * MS, "backed off twice");
    c.on_segment(&seg(PEER_ISN, ISS + 1, SYN | ACK, b""), 3_100 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.rto_ns(), 3_000 * MS);
    // With timestamps: the SYN-ACK echoes the second SYN's TSval, 100 ms ago.
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&Config::default(), ISS, 0, &mut rec);
    c.on_timer(1_000 * MS, &mut rec);
    let tsval = rec.last().options.timestamps.unwrap().0;
    let mut synack = seg(PEER_ISN, ISS + 1, SYN | ACK, b"");
    synack.options = TcpOptions { mss: Some(1460), timestamps: Some((7, tsval)), ..TcpOptions::default() };
    c.on_segment(&synack, 1_100 * MS, &mut rec);
    assert_eq!(c.rto_ns(), 300 * MS, "the sample's RTO: 100 ms + 4 × 50 ms");
}

/// RFC 6298 5: the retries a handshake used do not count against the data that follows: each
/// segment gets the configured retransmissions.
#[test]
fn rfc6298_5_the_retries_of_the_syn_do_not_count_against_the_data() {
    let cfg = Config { max_retries: 3, ..Config::default() };
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&cfg, ISS, 0, &mut rec);
    c.on_timer(1_000 * MS, &mut rec);
    c.on_timer(3_000 * MS, &mut rec);
    c.on_segment(&seg(PEER_ISN, ISS + 1, SYN | ACK, b""), 3_100 * MS, &mut rec);
    c.write(b"request", 3_200 * MS, &mut rec);
    rec.take();
    for _ in 0..3 {
        let at = c.deadline().unwrap();
        c.on_timer(at, &mut rec);
        assert_eq!(c.state(), State::Established);
    }
    assert_eq!(rec.take().iter().filter(|(s, _)| s.payload_len == 7).count(), 3, "three retransmissions");
    c.on_timer(c.deadline().unwrap(), &mut rec);
    assert_eq!(c.state(), State::Closed);
}

/// RFC 9293 3.10.7.3: an active open; the SYN-ACK establishes it and is acknowledged, options
/// taken from the answer.
#[test]
fn rfc9293_3_10_7_3_an_active_open_completes_on_the_syn_ack() {
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&Config::default(), ISS, 0, &mut rec);
    let syn = rec.last();
    assert_eq!((syn.flags, syn.seq), (SYN, ISS));
    assert!(syn.options.sack_permitted && syn.options.window_scale.is_some() && syn.options.timestamps.is_some());
    let mut synack = seg(PEER_ISN, ISS + 1, SYN | ACK, b"");
    synack.options = TcpOptions { mss: Some(1000), ..TcpOptions::default() };
    c.on_segment(&synack, 10 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!((rec.last().flags, rec.last().ack), (ACK, PEER_ISN + 1));
    assert_eq!(c.send_mss(), 1000);
    assert_eq!(rec.events, vec![ConnEvent::Established]);
}

/// RFC 9293 3.8.6.2: an active opener whose owner never reads takes no more than its window,
/// whatever half of the sequence space the peer's ISN lies in (the advertised edge starts at
/// RCV.NXT, not at 0).
#[test]
fn rfc9293_3_8_6_2_an_active_opener_takes_no_more_than_its_window_for_any_peer_isn() {
    for peer_isn in [1_000, 0x7fff_ff00, 0x8000_0100, 0xd880_0000, u32::MAX - 10] {
        let cfg = Config { recv_window: 4096, window_scaling: false, ..Config::default() };
        let mut rec = Recorder::default();
        let mut c = Connection::connect(&cfg, ISS, 0, &mut rec);
        let mut synack = seg(peer_isn, ISS + 1, SYN | ACK, b"");
        synack.options = TcpOptions { mss: Some(1000), ..TcpOptions::default() };
        c.on_segment(&synack, MS, &mut rec);
        let mut seq = peer_isn.wrapping_add(1);
        for k in 0..10u64 {
            c.on_segment(&seg(seq, ISS + 1, ACK, &[7; 1000]), (2 + k) * MS, &mut rec);
            seq = seq.wrapping_add(1000);
        }
        assert_eq!(rec.received.len(), 4096, "peer ISN {peer_isn:#x}: a 4 KiB window takes 4 KiB");
        assert_eq!(rec.last().window, 0, "peer ISN {peer_isn:#x}");
    }
}

/// RFC 9293 3.10.7.3: a RST acknowledging our SYN refuses the connection; one with a wrong ACK
/// is ignored, and a SYN-ACK with a wrong ACK gets a reset.
#[test]
fn rfc9293_3_10_7_3_a_reset_answer_refuses_the_active_open() {
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&Config::default(), ISS, 0, &mut rec);
    rec.take();
    c.on_segment(&seg(0, ISS + 9, RST | ACK, b""), MS, &mut rec);
    assert_eq!(c.state(), State::SynSent);
    c.on_segment(&seg(PEER_ISN, ISS + 9, SYN | ACK, b""), MS, &mut rec);
    assert_eq!((rec.last().flags, rec.last().seq), (RST, ISS + 9));
    c.on_segment(&seg(0, ISS + 1, RST | ACK, b""), 2 * MS, &mut rec);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events, vec![ConnEvent::Closed(CloseReason::Refused)]);
}

/// RFC 9293 3.10.7.3, simultaneous open: a bare SYN in SYN-SENT moves to SYN-RECEIVED with a
/// SYN-ACK; the peer's SYN-ACK then establishes.
#[test]
fn rfc9293_3_5_simultaneous_open() {
    let mut rec = Recorder::default();
    let mut c = Connection::connect(&Config::default(), ISS, 0, &mut rec);
    c.on_segment(&seg(PEER_ISN, 0, SYN, b""), MS, &mut rec);
    assert_eq!(c.state(), State::SynReceived);
    assert_eq!(rec.last().flags, SYN | ACK);
    rec.take();
    // The peer answers our SYN with its SYN-ACK, sequence number its ISN again.
    c.on_segment(&seg(PEER_ISN, ISS + 1, SYN | ACK, b""), 2 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!((rec.last().flags, rec.last().ack), (ACK, PEER_ISN + 1), "the handshake's last ACK");
}

// ---- receiving ----

/// RFC 5681 4.2 / RFC 9293 3.8.6.3: in-order data is acknowledged at once at the start (quick
/// ACKs), then every second segment, a lone one after the delayed-ACK timeout.
#[test]
fn rfc5681_4_2_acks_are_quick_first_then_every_second_segment_or_delayed() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    let mut seq = PEER_ISN + 1;
    let chunk = [7u8; 1000];
    let mut now = 2 * MS;
    for _ in 0..16 {
        c.on_segment(&seg(seq, ISS + 1, ACK, &chunk), now, &mut rec);
        seq += 1000;
        now += MS;
    }
    assert_eq!(rec.take().len(), 16, "quick ACKs: one per segment");
    c.on_segment(&seg(seq, ISS + 1, ACK, &chunk), now, &mut rec);
    assert!(rec.sent.is_empty(), "the 17th waits");
    assert_eq!(c.deadline(), Some(now + 40 * MS));
    seq += 1000;
    c.on_segment(&seg(seq, ISS + 1, ACK, &chunk), now + MS, &mut rec);
    assert_eq!(rec.take().len(), 1, "the second segment: ACK now");
    seq += 1000;
    c.on_segment(&seg(seq, ISS + 1, ACK, &chunk), now + 2 * MS, &mut rec);
    c.on_timer(now + 42 * MS, &mut rec);
    assert_eq!(rec.last().ack, seq + 1000, "the delayed ACK");
    assert_eq!(rec.received.len(), 19_000);
}

/// RFC 2018 4 and RFC 5681 4.2: an out-of-order segment is acknowledged at once, with a SACK
/// block for it; when the hole fills, everything is delivered in order and acknowledged.
#[test]
fn rfc2018_4_out_of_order_data_is_sacked_and_delivered_when_the_hole_fills() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base + 100, ISS + 1, ACK, &[2; 100]), 2 * MS, &mut rec);
    let dup = rec.last();
    assert_eq!(dup.ack, base);
    assert_eq!(dup.options.sack.as_slice(), &[(base + 100, base + 200)]);
    c.on_segment(&seg(base + 300, ISS + 1, ACK, &[4; 100]), 3 * MS, &mut rec);
    assert_eq!(rec.last().options.sack.as_slice(), &[(base + 300, base + 400), (base + 100, base + 200)], "the latest block first");
    assert!(rec.received.is_empty());
    c.on_segment(&seg(base, ISS + 1, ACK, &[1; 100]), 4 * MS, &mut rec);
    assert_eq!(rec.received.len(), 200);
    assert_eq!(rec.last().ack, base + 200);
    assert_eq!(rec.last().options.sack.as_slice(), &[(base + 300, base + 400)]);
    c.on_segment(&seg(base + 200, ISS + 1, ACK, &[3; 100]), 5 * MS, &mut rec);
    assert_eq!(rec.received, [[1u8; 100], [2; 100], [3; 100], [4; 100]].concat());
    assert!(rec.last().options.sack.is_empty());
}

/// RFC 2018 4: the first SACK block holds the segment that triggered the ACK; the others
/// repeat the most recently reported blocks (each block's last first report, newest first),
/// not the blocks in order of sequence number.
#[test]
fn rfc2018_4_sack_blocks_repeat_the_most_recently_reported_first() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    let base = PEER_ISN + 1;
    let block = |at: u32, len: u32| (base + at, base + at + len);
    let mut blocks_after = |at: u32, len: usize, now: u64| {
        c.on_segment(&seg(base + at, ISS + 1, ACK, &vec![1; len]), now * MS, &mut rec);
        rec.last().options.sack.as_slice().to_vec()
    };
    assert_eq!(blocks_after(900, 100, 2), [block(900, 100)]);
    assert_eq!(blocks_after(100, 100, 3), [block(100, 100), block(900, 100)]);
    assert_eq!(blocks_after(500, 100, 4), [block(500, 100), block(100, 100), block(900, 100)], "not the highest first");
    assert_eq!(blocks_after(300, 100, 5), [block(300, 100), block(500, 100), block(100, 100), block(900, 100)]);
    // Four fit: the block reported longest ago is the one left out.
    assert_eq!(blocks_after(700, 100, 6), [block(700, 100), block(300, 100), block(500, 100), block(100, 100)]);
    // A segment joining two blocks: the joined block first.
    assert_eq!(blocks_after(200, 100, 7), [block(100, 300), block(700, 100), block(500, 100), block(900, 100)]);
    // A duplicate of a kept segment still reports its block first.
    assert_eq!(blocks_after(500, 100, 8), [block(500, 100), block(100, 300), block(700, 100), block(900, 100)]);
}

/// RFC 9293 3.10.7.4 (first check): a segment outside the window is not accepted; it gets an
/// ACK, and nothing of it is delivered. Bytes already received are trimmed, not redelivered.
#[test]
fn rfc9293_3_10_7_4_segments_outside_the_window_get_an_ack_and_overlaps_are_trimmed() {
    let (mut c, mut rec) = established(&Config { recv_window: 4096, ..Config::default() }, plain());
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base + 10_000, ISS + 1, ACK, b"far"), 2 * MS, &mut rec);
    assert_eq!(rec.last().ack, base);
    assert_eq!(c.stats().unacceptable, 1);
    c.on_segment(&seg(base, ISS + 1, ACK, b"hello"), 3 * MS, &mut rec);
    c.on_segment(&seg(base + 3, ISS + 1, ACK, b"lo world"), 4 * MS, &mut rec);
    assert_eq!(rec.received, b"hello world");
}

/// RFC 9293 3.8.6.2.2: the receive window is what the owner has not consumed; it closes to zero
/// and a window update follows the owner consuming (never a right edge moved left).
#[test]
fn rfc9293_3_8_6_2_the_window_closes_when_the_owner_lags_and_reopens() {
    let (mut c, mut rec) = established(&Config { recv_window: 2000, ..Config::default() }, plain());
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base, ISS + 1, ACK, &[0; 1000]), 2 * MS, &mut rec);
    assert_eq!(rec.last().window, 1000);
    c.on_segment(&seg(base + 1000, ISS + 1, ACK, &[0; 1000]), 3 * MS, &mut rec);
    assert_eq!(rec.last().window, 0);
    c.on_segment(&seg(base + 2000, ISS + 1, ACK, b"x"), 4 * MS, &mut rec);
    assert_eq!((rec.last().ack, rec.received.len()), (base + 2000, 2000), "nothing taken beyond a zero window");
    rec.take();
    c.consumed(2000, 5 * MS, &mut rec);
    assert_eq!(rec.last().window, 2000, "a window update once the owner read");
}

/// RFC 9293 3.10.7.4: at a zero window a segment's data is refused but its ACK is taken.
#[test]
fn rfc9293_3_10_7_4_at_a_zero_window_the_ack_of_a_data_segment_still_counts() {
    let (mut c, mut rec) = established(&Config { recv_window: 1000, ..Config::default() }, plain());
    let base = PEER_ISN + 1;
    c.write(&[7; 500], 2 * MS, &mut rec);
    c.on_segment(&seg(base, ISS + 1, ACK, &[0; 1000]), 3 * MS, &mut rec);
    assert_eq!(rec.last().window, 0, "the owner has not read: the window is closed");
    assert_eq!(c.unacknowledged(), 500);
    // The peer's next data segment acknowledges our 500 bytes: not its data, but its ACK.
    c.on_segment(&seg(base + 1000, ISS + 501, ACK, b"more"), 4 * MS, &mut rec);
    assert_eq!((c.unacknowledged(), rec.received.len()), (0, 1000), "the ACK taken, the data not");
    assert_eq!((rec.last().ack, rec.last().window), (base + 1000, 0), "answered: still nothing beyond");
    c.check_invariants().unwrap();
}

/// RFC 9293 3.8.6.2.2: the update comes however small the reads that reopened the window.
#[test]
fn rfc9293_3_8_6_2_2_a_window_reopened_by_small_reads_is_announced() {
    let (mut c, mut rec) = established(&Config { recv_window: 4000, ..Config::default() }, plain());
    let base = PEER_ISN + 1;
    for i in 0..4u32 {
        c.on_segment(&seg(base + i * 1000, ISS + 1, ACK, &[0; 1000]), (2 + u64::from(i)) * MS, &mut rec);
    }
    assert_eq!(rec.last().window, 0);
    rec.take();
    for i in 0..4 {
        c.consumed(500, (10 + i) * MS, &mut rec);
    }
    let update = rec.sent.first().expect("a window update").0;
    assert!(update.window >= 1460, "announced once an MSS fits: {}", update.window);
}

/// A data segment that carries SACK blocks carries as much less payload: the frame never
/// outgrows the MSS the peer announced (Linux's tcp_current_mss).
#[test]
fn segments_with_sack_blocks_stay_within_the_mss() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    c.on_segment(&seg(PEER_ISN + 1 + 500, ISS + 1, ACK, &[1; 100]), 2 * MS, &mut rec);
    rec.take();
    c.write(&[7u8; 5000], 3 * MS, &mut rec);
    for (s, _) in rec.take() {
        let options = s.options.len() as u32;
        assert!(!s.options.sack.is_empty());
        assert!(s.payload_len + options <= 1460, "{} payload + {options} option bytes", s.payload_len);
    }
}

/// RFC 9293 3.8.6.2.1 (sender silly-window avoidance): a segment as large as the MSS allows
/// with the SACK option riding along is a full one, not a short one held back: while
/// out-of-order data is held, the window still fills at once.
#[test]
fn rfc9293_3_8_6_2_1_a_full_segment_less_its_sack_option_is_not_held_back() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    c.on_segment(&seg(PEER_ISN + 1 + 500, ISS + 1, ACK, &[1; 100]), 2 * MS, &mut rec);
    rec.take();
    c.write(&[7u8; 5000], 3 * MS, &mut rec);
    let sent: u32 = rec.take().iter().map(|(s, _)| s.payload_len).sum();
    assert_eq!(sent, 5000, "all of it within the initial window");
}

// ---- RFC 5961 ----

/// RFC 5961 3.2: a RST resets only when its sequence number is exactly RCV.NXT; elsewhere in
/// the window it gets a challenge ACK; outside, it is dropped silently.
#[test]
fn rfc5961_3_2_only_an_exact_reset_resets() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base + 1000, 0, RST, b""), 2 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    assert_eq!((rec.last().flags, rec.last().ack), (ACK, base), "a challenge ACK");
    rec.take();
    c.on_segment(&seg(base + 1_000_000, 0, RST, b""), 3 * MS, &mut rec);
    assert!(rec.sent.is_empty(), "out of window: silently dropped");
    c.on_segment(&seg(base, 0, RST, b""), 4 * MS, &mut rec);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events, vec![ConnEvent::Closed(CloseReason::PeerReset)]);
    c.on_segment(&seg(base, ISS + 1, ACK, b"late"), 5 * MS, &mut rec);
    assert!(rec.received.is_empty(), "nothing after CLOSED");
}

/// RFC 5961 4.2: a SYN on an established connection gets a challenge ACK whatever its sequence
/// number, and RFC 5961 7 limits them.
#[test]
fn rfc5961_4_2_a_syn_gets_a_challenge_ack_and_they_are_rate_limited() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    for i in 0..15u32 {
        c.on_segment(&seg(PEER_ISN + 1 + i * 10, 0, SYN, b""), 2 * MS, &mut rec);
    }
    assert_eq!(c.state(), State::Established);
    assert_eq!(rec.take().len(), 10, "ten a second");
    assert_eq!((c.stats().challenge_acks, c.stats().challenge_acks_limited), (10, 5));
    c.on_segment(&seg(PEER_ISN + 1, 0, SYN, b""), 1_100 * MS, &mut rec);
    assert_eq!(rec.take().len(), 1, "a new second");
}

/// RFC 9293 3.10.7.4 (fifth check) and RFC 5961 5.2: an ACK of data never sent gets an ACK and
/// is dropped; one from far before SND.UNA is a blind injection and gets a challenge ACK; its
/// data is not taken.
#[test]
fn rfc5961_5_2_acks_outside_what_was_sent_are_refused() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base, ISS + 50_000, ACK, b"injected"), 2 * MS, &mut rec);
    assert_eq!(rec.last().ack, base);
    c.on_segment(&seg(base, ISS.wrapping_sub(1_000_000), ACK, b"injected"), 3 * MS, &mut rec);
    assert_eq!(c.stats().challenge_acks, 1);
    assert!(rec.received.is_empty());
}

/// RFC 7323 5.3 (PAWS): a segment whose timestamp is older than TS.Recent is an old duplicate:
/// dropped, with an ACK.
#[test]
fn rfc7323_5_3_old_timestamps_are_rejected() {
    let (mut c, mut rec) = established(&Config::default(), linux_syn_options());
    let base = PEER_ISN + 1;
    let mut fresh = seg(base, ISS + 1, ACK, b"new");
    fresh.options.timestamps = Some((2_000, 0));
    c.on_segment(&fresh, 2 * MS, &mut rec);
    let mut old = seg(base + 3, ISS + 1, ACK, b"old");
    old.options.timestamps = Some((1_500, 0));
    c.on_segment(&old, 3 * MS, &mut rec);
    assert_eq!(rec.received, b"new");
    assert_eq!(c.stats().unacceptable, 1);
    assert_eq!(rec.last().options.timestamps.map(|t| t.1), Some(2_000), "TS.Recent is the newer one");
}

// ---- sending ----

/// RFC 6928: the first flight is ten segments; no Nagle: a short write goes out at once.
#[test]
fn rfc6928_the_initial_window_is_ten_segments_and_short_writes_go_at_once() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    assert_eq!(c.write(b"hi", 2 * MS, &mut rec), 2);
    assert_eq!(rec.last().flags, ACK | PSH);
    c.on_segment(&ack_from_peer(ISS + 3, 65_535), 3 * MS, &mut rec);
    rec.take();
    let big = vec![9u8; 100_000];
    assert_eq!(c.write(&big, 4 * MS, &mut rec), 100_000);
    let flight = rec.take();
    assert_eq!(flight.len(), 10);
    assert!(flight.iter().all(|(s, _)| s.payload_len == 1460));
}

/// RFC 9293 3.7.4 (the sender may coalesce what it queues): writes queued together leave in
/// full segments on the flush, not a short segment each (an answer's head and its body).
#[test]
fn rfc9293_3_7_4_writes_queued_together_leave_in_full_segments() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    assert_eq!(c.queue(&[1; 100]), 100);
    assert_eq!(c.queue(&[2; 2900]), 2900);
    assert!(rec.take().is_empty(), "nothing sent before the flush");
    c.flush(2 * MS, &mut rec);
    let sent: Vec<u32> = rec.take().iter().map(|(s, _)| s.payload_len).collect();
    assert_eq!(sent, [1460, 1460, 80], "3,000 bytes in three segments, the first two full");
    // Written one by one instead, the head goes alone.
    let (mut c, mut rec) = established(&Config::default(), plain());
    c.write(&[1; 100], 2 * MS, &mut rec);
    c.write(&[2; 2900], 2 * MS, &mut rec);
    assert_eq!(rec.take().iter().map(|(s, _)| s.payload_len).collect::<Vec<_>>(), [100, 1460, 1440]);
}

/// RFC 7323 2.3: the peer's window field is scaled by the shift it offered; ours is sent
/// scaled by ours.
#[test]
fn rfc7323_2_3_windows_are_scaled_both_ways() {
    let (mut c, mut rec) = established(&Config { recv_window: 1 << 20, ..Config::default() }, linux_syn_options());
    let big = vec![1u8; 200_000];
    c.write(&big, 2 * MS, &mut rec);
    // 512 << 7 = 65,536 bytes of peer window, but the congestion window (10 segments) binds.
    assert_eq!(rec.take().len(), 10);
    let mut ack = ack_from_peer(ISS + 1 + 10 * 1448, 1); // 1 << 7 = 128 bytes
    ack.options.timestamps = Some((1_002, 0));
    c.on_segment(&ack, 3 * MS, &mut rec);
    let sent: u32 = rec.take().iter().map(|(s, _)| s.payload_len).sum();
    assert_eq!(sent, 128, "what a window of 1 << 7 allows");
    let mut data = seg(PEER_ISN + 1, ISS + 1, ACK, b"abc");
    data.options.timestamps = Some((1_003, 0));
    c.on_segment(&data, 4 * MS, &mut rec);
    // 1 MiB was promised; 3 bytes later the field is rounded down (RFC 7323 appendix F): the
    // window it names ends 29 bytes short of the edge promised, which is still accepted.
    assert_eq!(u32::from(rec.last().window), ((1u32 << 20) - 3) >> 5, "sent with shift 5");
}

/// RFC 7323 appendix F: with a scale, rounding each ACK's window up to keep the last edge
/// would move it past the buffer a little with every ACK. A peer that sends small segments
/// to an owner that never reads gets no more than the configured window taken, however many
/// ACKs it draws; and what it sent up to an edge advertised before is still taken.
#[test]
fn rfc7323_appendix_f_small_segments_never_grow_the_window_past_the_buffer() {
    let window = 64 << 10;
    let (mut c, mut rec) = established(&Config { recv_window: window, scale_window: 8 << 20, ..Config::default() }, linux_syn_options());
    let mut seq = PEER_ISN + 1;
    let mut taken = 0u32;
    for k in 0..2_000u32 {
        // 100 bytes at a time, each within what was last advertised (or a byte beyond).
        let mut data = seg(seq, ISS + 1, ACK, &[7; 100]);
        data.options.timestamps = Some((1_003 + k, 0));
        let now = (4 + u64::from(k)) * MS;
        c.on_segment(&data, now, &mut rec);
        let view = c.splice_view(now);
        taken = view.rcv_nxt.wrapping_sub(PEER_ISN + 1);
        seq = PEER_ISN + 1 + taken;
        rec.take();
    }
    assert_eq!(taken, window, "the owner read nothing: the buffer's window, and not a byte more");
}

/// RFC 6298 5.4-5.7: with no ACK, the first unacknowledged segment is retransmitted at the
/// RTO, the RTO doubles, and the window restarts at one segment (RFC 5681 3.1); after the
/// configured retries the connection is reset.
#[test]
fn rfc6298_5_unacknowledged_data_is_retransmitted_with_backoff_then_given_up() {
    let cfg = Config { max_retries: 3, ..Config::default() };
    let (mut c, mut rec) = established(&cfg, plain());
    c.write(&[5u8; 5000], 2 * MS, &mut rec);
    rec.take();
    let first = c.deadline().unwrap();
    c.on_timer(first, &mut rec);
    let resent = rec.take();
    assert_eq!(resent.len(), 1, "one segment: cwnd is back to one");
    assert_eq!(resent[0].0.seq, ISS + 1);
    let second = c.deadline().unwrap();
    assert_eq!((second - first, c.rto_ns()), (400 * MS, 400 * MS), "the RTO doubled from 200 ms");
    c.on_timer(second, &mut rec);
    let third = c.deadline().unwrap();
    c.on_timer(third, &mut rec);
    c.on_timer(c.deadline().unwrap(), &mut rec);
    assert_eq!(rec.last().flags, RST);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events, vec![ConnEvent::Closed(CloseReason::TimedOut)]);
}

/// RFC 9293 3.10.7.4 (the peer's first check: a zero-length segment is acceptable only from
/// its RCV.NXT on): after a timeout sent SND.NXT back, an ACK carries the highest sequence
/// number sent, as BSD's and Linux's do; one from the rewound SND.NXT would be dropped by a
/// peer that had received more (its ACK, window and timestamp lost with it).
#[test]
fn rfc9293_3_10_7_4_an_ack_after_a_timeout_carries_the_highest_sequence_number_sent() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    c.write(&[5u8; 4000], 2 * MS, &mut rec);
    c.on_timer(c.deadline().unwrap(), &mut rec);
    let resent = rec.last();
    assert_eq!((resent.seq, resent.payload_len), (ISS + 1, 1460), "the first segment again");
    rec.take();
    c.on_segment(&seg(PEER_ISN + 1, ISS + 1, ACK, b"data"), 1_500 * MS, &mut rec);
    let ack = rec.last();
    assert_eq!((ack.payload_len, ack.ack), (0, PEER_ISN + 5));
    assert_eq!(ack.seq, ISS + 1 + 4000, "SND.MAX, not SND.NXT ({})", ISS + 1 + 1460);
    // Within the peer's window only (Linux's tcp_acceptable_seq): the window shrank to 1000.
    c.on_segment(&SegmentIn { window: 1000, ..seg(PEER_ISN + 5, ISS + 1, ACK, b"more") }, 1_600 * MS, &mut rec);
    assert_eq!(rec.last().seq, ISS + 1 + 1000);
}

/// RFC 5681 3.2 and RFC 6582: three duplicate ACKs retransmit the lost segment at once, before
/// the RTO; the ACK that covers the flight ends recovery.
#[test]
fn rfc5681_3_2_three_duplicate_acks_retransmit_the_lost_segment() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    c.write(&[5u8; 14_600], 2 * MS, &mut rec);
    assert_eq!(rec.take().len(), 10);
    for i in 0..3 {
        c.on_segment(&ack_from_peer(ISS + 1, 65_535), (3 + i) * MS, &mut rec);
    }
    let resent = rec.take();
    assert_eq!(resent.first().map(|(s, _)| s.seq), Some(ISS + 1), "fast retransmit of the first segment");
    assert!(c.in_recovery());
    c.on_segment(&ack_from_peer(ISS + 1 + 14_600, 65_535), 10 * MS, &mut rec);
    assert_eq!(c.unacknowledged(), 0);
    assert!(c.deadline().is_none(), "nothing in flight: no timer");
    // RFC 6582 3.2 step 3: an ACK of everything sent is a full ACK: recovery ends with
    // cwnd = ssthresh (half the flight), not a partial ACK's deflated window.
    assert!(!c.in_recovery(), "the ACK of all that was sent ends recovery");
    assert!(c.congestion_window() >= 2 * 1460, "{}", c.congestion_window());
}

/// RFC 6675: with SACK, recovery retransmits the holes the scoreboard shows and not what the
/// peer holds.
#[test]
fn rfc6675_sack_recovery_resends_only_the_holes() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    c.write(&[5u8; 14_600], 2 * MS, &mut rec);
    rec.take();
    let s = |i: u32| ISS + 1 + i * 1460;
    // Segments 0 and 3 lost; the peer holds 1-2 and 4-9.
    let mut sack = SackBlocks::default();
    sack.push((s(4), s(10)));
    sack.push((s(1), s(3)));
    let mut dup = ack_from_peer(s(0), 65_535);
    dup.options.sack = sack;
    c.on_segment(&dup, 3 * MS, &mut rec);
    c.on_segment(&dup, 4 * MS, &mut rec);
    let resent: Vec<u32> = rec.take().iter().filter(|(s, _)| s.payload_len > 0).map(|(s, _)| s.seq).collect();
    assert_eq!(resent, vec![s(0), s(3)], "both holes, nothing the peer SACKed");
    c.on_segment(&ack_from_peer(s(10), 65_535), 10 * MS, &mut rec);
    assert_eq!(c.unacknowledged(), 0);
}

/// RFC 9293 3.8.6.1: a zero window is probed with backoff and never given up on while the
/// peer answers; data flows when it opens.
#[test]
fn rfc9293_3_8_6_1_a_zero_window_is_probed_and_never_given_up() {
    let cfg = Config { max_retries: 3, ..Config::default() };
    let (mut c, mut rec) = established(&cfg, plain());
    c.on_segment(&ack_from_peer(ISS + 1, 0), 2 * MS, &mut rec);
    c.write(&[1u8; 3000], 3 * MS, &mut rec);
    assert!(rec.take().is_empty(), "nothing fits a zero window");
    let mut now = 3 * MS;
    for _ in 0..8 {
        now = c.deadline().expect("a probe is scheduled");
        c.on_timer(now, &mut rec);
        // The peer answers each probe: still zero, nothing taken.
        c.on_segment(&ack_from_peer(ISS + 1, 0), now + MS, &mut rec);
    }
    assert_eq!(c.state(), State::Established, "a peer that answers is never given up on");
    assert!(c.stats().window_probes >= 4);
    rec.take();
    c.on_segment(&ack_from_peer(ISS + 1, 65_535), now + 2 * MS, &mut rec);
    let sent: u32 = rec.take().iter().map(|(s, _)| s.payload_len).sum();
    assert!(sent >= 2999, "the window opened: the data went ({sent} bytes)");
}

/// RFC 9293 3.8.6.1: a peer that shrinks its window to zero with data outstanding, and answers
/// every retransmission, is not given up on however many timeouts pass.
#[test]
fn rfc9293_3_8_6_1_a_live_peer_at_a_zero_window_is_not_given_up() {
    let cfg = Config { max_retries: 3, ..Config::default() };
    let (mut c, mut rec) = established(&cfg, plain());
    c.write(&[1u8; 3000], 2 * MS, &mut rec);
    c.on_segment(&ack_from_peer(ISS + 1, 0), 3 * MS, &mut rec);
    for _ in 0..10 {
        let due = c.deadline().expect("a timer");
        c.on_timer(due, &mut rec);
        c.on_segment(&ack_from_peer(ISS + 1, 0), due + MS, &mut rec);
    }
    assert_eq!(c.state(), State::Established, "{:?}", rec.events);
    c.on_segment(&ack_from_peer(ISS + 1, 65_535), c.deadline().unwrap_or(0), &mut rec);
    let now = c.deadline().unwrap_or(0);
    c.on_timer(now, &mut rec);
    c.on_segment(&ack_from_peer(ISS + 1 + 3000, 65_535), now + MS, &mut rec);
    assert_eq!(c.unacknowledged(), 0, "the data went once the window opened");
}

/// A write beyond the send buffer takes what fits; [`ConnEvent::SendRoom`] follows once ACKs
/// free a quarter of it.
#[test]
fn a_full_send_buffer_reports_room_again() {
    let (mut c, mut rec) = established(&Config { send_buffer: 8000, ..Config::default() }, plain());
    assert_eq!(c.write(&[0u8; 10_000], 2 * MS, &mut rec), 8000);
    c.on_segment(&ack_from_peer(ISS + 1 + 2920, 65_535), 3 * MS, &mut rec);
    assert_eq!(rec.events, vec![ConnEvent::SendRoom]);
    assert_eq!(c.send_room(), 2920);
}

/// RFC 9293 3.9.1.2 (SEND: the buffer space is the implementation's to bound): under a memory
/// limit the send ring grows only within it; `send_room` is exactly what a write takes, and
/// out-of-order data arriving (under its own limit) does not take it away.
#[test]
fn rfc9293_3_9_1_2_a_memory_limit_bounds_the_send_ring_and_send_room_is_what_a_write_takes() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    assert_eq!(c.buffer_bytes(), 0, "nothing allocated before it is needed");
    assert_eq!(c.send_room(), 1 << 20, "no limit: the send buffer");
    c.set_memory_limits(5_000, 5_000);
    let room = c.send_room();
    assert_eq!((room, c.send_buffer_free()), (5_000, 1 << 20), "the limit, and what the buffer could take beyond it");
    // Out-of-order data takes the receive ring's share, not the room promised to writes.
    c.on_segment(&seg(PEER_ISN + 1 + 1000, ISS + 1, ACK, &[1; 500]), 2 * MS, &mut rec);
    assert_eq!(c.send_room(), room);
    assert_eq!(c.write(&[7; 5_000], 3 * MS, &mut rec), 5_000, "all the room");
    assert_eq!((c.send_room(), c.write(b"x", 3 * MS, &mut rec)), (0, 0));
    assert!(c.buffer_bytes() <= 10_000, "{}", c.buffer_bytes());
    // Acknowledged bytes free room in the ring as allocated.
    let first = rec.sent.iter().find(|s| s.0.payload_len > 0).unwrap().0.payload_len;
    c.on_segment(&seg(PEER_ISN + 1, ISS + 1 + first, ACK, b""), 4 * MS, &mut rec);
    assert_eq!(c.send_room(), first as usize);
    assert!(rec.events.contains(&ConnEvent::SendRoom), "{:?}", rec.events);
    assert_eq!(c.write(&vec![8; first as usize], 5 * MS, &mut rec), first as usize);
    c.check_invariants().unwrap();
}

/// RFC 9293 3.10.7.4 (segment text: data beyond a hole "SHOULD be held"; not a MUST): past the
/// memory limit out-of-order data is not kept (counted; the peer sends it again), while data
/// in order, never buffered, is always received.
#[test]
fn rfc9293_3_10_7_4_past_the_memory_limit_out_of_order_data_is_refused_and_in_order_data_is_not() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    c.set_memory_limits(5_000, 5_000);
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base + 1000, ISS + 1, ACK, &[2; 1000]), 2 * MS, &mut rec);
    assert_eq!(c.stats().out_of_order_refused_memory, 0);
    let held = c.buffer_bytes();
    assert!(held > 0 && held <= 5_000, "{held}");
    // Far beyond: the ring would have to grow past its limit.
    c.on_segment(&seg(base + 50_000, ISS + 1, ACK, &[3; 1000]), 3 * MS, &mut rec);
    assert_eq!(c.stats().out_of_order_refused_memory, 1);
    assert_eq!(c.buffer_bytes(), held, "not grown");
    assert_eq!(rec.last().options.sack.as_slice(), &[(base + 1000, base + 2000)], "only what was kept is SACKed");
    // In order, far more than the limit: delivered.
    let data = vec![1u8; 1000];
    c.on_segment(&seg(base, ISS + 1, ACK, &data), 4 * MS, &mut rec);
    assert_eq!(rec.received.len(), 2000, "the hole filled: what was kept follows");
    c.consumed(2000, 4 * MS, &mut rec);
    for i in 0..40 {
        c.on_segment(&seg(base + 2000 + i * 1000, ISS + 1, ACK, &data), (5 + u64::from(i)) * MS, &mut rec);
        c.consumed(1000, (5 + u64::from(i)) * MS, &mut rec);
    }
    assert_eq!(rec.received.len(), 42_000);
    assert!(c.buffer_bytes() <= held);
    c.check_invariants().unwrap();
}

/// The buffers' memory goes back when they can no longer be used: the send ring once
/// everything written before the FIN is acknowledged, both rings when the connection closes,
/// and idle ones on request.
#[test]
fn idle_buffers_give_their_memory_back() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    let base = PEER_ISN + 1;
    c.write(&[1; 3000], 2 * MS, &mut rec);
    c.on_segment(&seg(base + 500, ISS + 1, ACK, b"later"), 3 * MS, &mut rec);
    let both = c.buffer_bytes();
    assert!(both >= 4096 * 2, "{both}");
    assert_eq!(c.release_idle_memory(), 0, "neither is idle");
    c.on_segment(&seg(base, ISS + 1 + 3000, ACK, &[0; 500]), 4 * MS, &mut rec);
    assert_eq!(c.buffer_bytes(), both, "kept until asked (the owner may write again)");
    assert_eq!(c.release_idle_memory(), both);
    assert_eq!(c.buffer_bytes(), 0);
    // A write allocates again; the ACK of the last bytes before the FIN frees it for good.
    c.write(b"bye", 5 * MS, &mut rec);
    c.close(5 * MS, &mut rec);
    assert!(c.buffer_bytes() > 0);
    c.on_segment(&seg(base + 505, ISS + 1 + 3000 + 4, ACK, b""), 6 * MS, &mut rec);
    assert_eq!((c.state(), c.buffer_bytes()), (State::FinWait2, 0));
    // Closing frees what out-of-order data held.
    c.on_segment(&seg(base + 1000, ISS + 1 + 3004, ACK, b"beyond a hole"), 7 * MS, &mut rec);
    assert!(c.buffer_bytes() > 0);
    c.abort(&mut rec);
    assert_eq!(c.buffer_bytes(), 0);
    c.check_invariants().unwrap();
}

// ---- closing ----

/// RFC 9293 3.6, passive close: the peer's FIN delivers PeerClosed and CLOSE-WAIT; our close
/// sends a FIN (LAST-ACK), whose ACK closes the connection.
#[test]
fn rfc9293_3_6_passive_close() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base, ISS + 1, ACK | FIN, b"bye"), 2 * MS, &mut rec);
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(rec.events, vec![ConnEvent::PeerClosed]);
    assert_eq!(rec.last().ack, base + 4, "the FIN counts one");
    c.write(b"reply", 3 * MS, &mut rec);
    c.close(3 * MS, &mut rec);
    assert_eq!(c.state(), State::LastAck);
    let fin = rec.last();
    assert!(fin.has(FIN));
    c.on_segment(&seg(base + 4, ISS + 1 + 5 + 1, ACK, b""), 4 * MS, &mut rec);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events.last(), Some(&ConnEvent::Closed(CloseReason::Graceful)));
}

/// A FIN that overtakes a lost segment is kept with the data before it and takes effect when
/// the hole fills: the peer need not send it again.
#[test]
fn a_fin_ahead_of_a_hole_closes_once_the_hole_fills() {
    let (mut c, mut rec) = established(&Config::default(), TcpOptions { sack_permitted: true, ..plain() });
    let base = PEER_ISN + 1;
    c.on_segment(&seg(base + 100, ISS + 1, ACK | FIN, &[2; 50]), 2 * MS, &mut rec);
    assert_eq!(c.state(), State::Established);
    c.on_segment(&seg(base, ISS + 1, ACK, &[1; 100]), 3 * MS, &mut rec);
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(rec.received.len(), 150);
    assert_eq!(rec.events, vec![ConnEvent::PeerClosed]);
    assert_eq!(rec.last().ack, base + 151, "the data and the FIN acknowledged");
}

/// RFC 9293 3.6, active close: FIN-WAIT-1, FIN-WAIT-2 on its ACK, TIME-WAIT on the peer's FIN;
/// a retransmitted FIN there is acknowledged and restarts the timer; the timer closes.
#[test]
fn rfc9293_3_6_active_close_through_time_wait() {
    let cfg = Config { time_wait_ns: 1_000 * MS, ..Config::default() };
    let (mut c, mut rec) = established(&cfg, plain());
    let base = PEER_ISN + 1;
    c.close(2 * MS, &mut rec);
    assert_eq!((c.state(), rec.last().flags), (State::FinWait1, ACK | FIN));
    c.on_segment(&seg(base, ISS + 2, ACK, b""), 3 * MS, &mut rec);
    assert_eq!(c.state(), State::FinWait2);
    c.on_segment(&seg(base, ISS + 2, ACK | FIN, b""), 4 * MS, &mut rec);
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(c.deadline(), Some(1_004 * MS));
    c.on_segment(&seg(base, ISS + 2, ACK | FIN, b""), 500 * MS, &mut rec);
    assert_eq!(rec.last().ack, base + 1);
    assert_eq!(c.deadline(), Some(1_500 * MS), "the retransmitted FIN restarted 2 MSL");
    c.on_timer(1_500 * MS, &mut rec);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events.last(), Some(&ConnEvent::Closed(CloseReason::Graceful)));
}

/// FIN-WAIT-2 is bounded: a peer that acknowledged our FIN and never sends its own does not
/// hold the connection for ever (RFC 9293 leaves it open; Linux's tcp_fin_timeout).
#[test]
fn fin_wait_2_does_not_last_for_ever() {
    let cfg = Config { fin_wait2_ns: 5_000 * MS, ..Config::default() };
    let (mut c, mut rec) = established(&cfg, plain());
    c.close(2 * MS, &mut rec);
    c.on_segment(&seg(PEER_ISN + 1, ISS + 2, ACK, b""), 3 * MS, &mut rec);
    assert_eq!((c.state(), c.deadline()), (State::FinWait2, Some(5_003 * MS)));
    c.on_segment(&seg(PEER_ISN + 1, ISS + 2, ACK, b"late data"), 4 * MS, &mut rec);
    assert_eq!(rec.received, b"late data", "the peer may still send");
    assert_eq!(c.deadline(), Some(5_004 * MS), "a peer still sending pushes the bound back");
    c.on_timer(5_004 * MS, &mut rec);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events.last(), Some(&ConnEvent::Closed(CloseReason::TimedOut)));
}

/// RFC 9293 3.6, simultaneous close: FINs cross; CLOSING, then TIME-WAIT on the ACK of ours.
#[test]
fn rfc9293_3_6_simultaneous_close() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    let base = PEER_ISN + 1;
    c.close(2 * MS, &mut rec);
    c.on_segment(&seg(base, ISS + 1, ACK | FIN, b""), 3 * MS, &mut rec);
    assert_eq!(c.state(), State::Closing);
    c.on_segment(&seg(base + 1, ISS + 2, ACK, b""), 4 * MS, &mut rec);
    assert_eq!(c.state(), State::TimeWait);
}

/// RFC 9293 3.10.5: abort sends a RST and closes at once.
#[test]
fn rfc9293_3_10_5_abort_resets() {
    let (mut c, mut rec) = established(&Config::default(), plain());
    c.write(b"pending", 2 * MS, &mut rec);
    c.abort(&mut rec);
    assert_eq!(rec.last().flags, RST);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(rec.events, vec![ConnEvent::Closed(CloseReason::LocalReset)]);
    assert_eq!(c.write(b"more", 3 * MS, &mut rec), 0);
}

// ---- any interleaving ----

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Something that happens to a connection.
    #[derive(Debug, Clone)]
    enum Step {
        /// A segment from the peer: offsets from what mbox expects and acknowledges.
        Segment {
            seq_off: i32,
            ack_off: i32,
            flags: u8,
            len: usize,
            window: u16,
            ts: Option<u32>,
        },
        Timer {
            after_ms: u64,
        },
        Write {
            len: usize,
        },
        Consume {
            len: u64,
        },
        Close,
        Abort,
        Limit {
            send: usize,
            receive: usize,
        },
        Release,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (-3000i32..70_000, -3000i32..20_000, any::<u8>(), 0usize..3000, any::<u16>(), prop::option::of(0u32..5000))
                .prop_map(|(seq_off, ack_off, flags, len, window, ts)| Step::Segment { seq_off, ack_off, flags: flags & 0x3f, len, window, ts }),
            3 => (0u64..3000).prop_map(|after_ms| Step::Timer { after_ms }),
            2 => (0usize..20_000).prop_map(|len| Step::Write { len }),
            1 => (0u64..20_000).prop_map(|len| Step::Consume { len }),
            1 => Just(Step::Close),
            1 => Just(Step::Abort),
            1 => (0usize..60_000, 0usize..60_000).prop_map(|(send, receive)| Step::Limit { send, receive }),
            1 => Just(Step::Release),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Whatever the peer sends, whenever the timers run, whatever the owner does: no
        /// panic, the sequence variables stay ordered, bounds hold, a connection with data
        /// out has a timer, bytes are delivered in order once (the recorder checks), and a
        /// closed connection stays silent.
        #[test]
        fn any_interleaving_keeps_the_invariants(options in prop_oneof![Just(plain()), Just(linux_syn_options())], steps in prop::collection::vec(step(), 1..120)) {
            let cfg = Config { send_buffer: 16_384, recv_window: 32_768, ..Config::default() };
            let (mut c, mut rec) = established(&cfg, options);
            let mut now = 2 * MS;
            let payload = vec![0x5au8; 3000];
            let data = vec![0xa5u8; 20_000];
            // What mbox expects next and has sent, from what it told the peer.
            let (mut rcv, mut snd) = (PEER_ISN + 1, ISS + 1);
            for step in steps {
                let was_closed = c.state() == State::Closed;
                let sent_before = rec.sent.len();
                let room_before = c.send_room();
                match step.clone() {
                    Step::Segment { seq_off, ack_off, flags, len, window, ts } => {
                        let mut s = seg(rcv.wrapping_add(seq_off as u32), snd.wrapping_add(ack_off as u32), flags, &payload[..len]);
                        s.window = window;
                        s.options.timestamps = ts.map(|v| (1_000 + v, 0));
                        c.on_segment(&s, now, &mut rec);
                    }
                    Step::Timer { after_ms } => {
                        now += after_ms * MS;
                        if c.deadline().is_some_and(|d| d <= now) {
                            c.on_timer(now, &mut rec);
                        }
                    }
                    Step::Write { len } => {
                        let room = c.send_room();
                        let took = c.write(&data[..len], now, &mut rec);
                        prop_assert!(took >= len.min(room), "{took} of {len} taken, {room} of room");
                    }
                    Step::Consume { len } => c.consumed(len, now, &mut rec),
                    Step::Close => c.close(now, &mut rec),
                    Step::Abort => c.abort(&mut rec),
                    Step::Limit { send, receive } => c.set_memory_limits(send, receive),
                    Step::Release => {
                        c.release_idle_memory();
                    }
                }
                if let Err(e) = c.check_invariants() {
                    prop_assert!(false, "{e}");
                }
                // Room handed out as credit stays: only the owner's calls take it away (or
                // the connection's end).
                if matches!(step, Step::Segment { .. } | Step::Timer { .. } | Step::Consume { .. }) && c.state().can_send() {
                    prop_assert!(c.send_room() >= room_before, "{step:?} shrank the send room {room_before} -> {}", c.send_room());
                }
                if was_closed {
                    prop_assert_eq!(rec.sent.len(), sent_before, "a closed connection sent something");
                }
                if let Some((last, _)) = rec.sent.last() {
                    rcv = last.ack;
                    snd = last.seq.wrapping_add(last.payload_len);
                }
                let closes = rec.events.iter().filter(|e| matches!(e, ConnEvent::Closed(_))).count();
                prop_assert!(closes <= 1, "closed twice: {:?}", rec.events);
            }
        }
    }
}
