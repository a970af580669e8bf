//! A client and a backend, both mbox's own Endpoint, joined by a shard's Split Proxy and an NF
//! that passes each side's bytes to the other (as a plain proxy NF would), on a clean and a
//! lossy wire, with a slow reader, and with backends that refuse or cannot be found.

use super::super::splice_tests::{run_dropping, Peer, BACKEND, CLIENT, SERVICE, SOURCE};
use super::super::tests::FakeShard;
use super::*;
use crate::runtime::stream_out::{stream_rings, SendCredits, StreamWriter};
use crate::sys::park::Waker;
use mbox_abi::{BindStatus, FlowRef, StreamOp, StreamStatus, BIND_CONNECTED, DIR_ORIG};
use mbox_stack::endpoint::Config as EndpointConfig;
use std::sync::Arc;

const MS: u64 = 1_000_000;
/// Each side's buffers in the proxy: a receive window and a send buffer of 64 KiB.
const WINDOW: usize = 64 << 10;

fn proxy_spec() -> Arc<[super::super::ServiceSpec]> {
    let endpoint =
        EndpointConfig { recv_window: WINDOW as u32, send_buffer: WINDOW as u32, time_wait_ns: 2_000 * MS, ..EndpointConfig::default() };
    vec![super::super::ServiceSpec {
        name: "proxy".into(),
        addrs: vec![IpAddr::V4(SERVICE)],
        ports: vec![80],
        mac: None,
        nfs: 0b1,
        endpoint,
        max_connections: 8,
        syn_backlog: 8,
        buffer_memory: 1 << 30,
        splicer: None,
        l4: None,
        proxy: Some(ProxySpec { source: IpAddr::V4(SOURCE), connect_timeout_ns: 3_000 * MS }),
    }]
    .into()
}

/// The proxy's shard, its NF's stream writer, the two ends, and the NF's own state: bytes of
/// each direction passed on so far (index: `DIR_ORIG`, `DIR_REPLY`), the most it ever held
/// unpassed, and the sides it closed.
struct World {
    served: Served,
    shard: FakeShard,
    writer: StreamWriter,
    client: Peer,
    backend: Peer,
    now: u64,
    passed: [usize; 2],
    held_most: usize,
    closed: [bool; 2],
    /// Bytes the client's application reads per step (`None`: all), and has read.
    client_reads: Option<usize>,
    consumed_by_client: u64,
    /// Whether ARP requests for the backend are answered.
    arp: bool,
}

impl World {
    fn new(client_cfg: EndpointConfig, backend_cfg: EndpointConfig) -> World {
        let credits = Arc::new(SendCredits::new(100, 8));
        let (writer, reader) = stream_rings(credits.clone(), Arc::new(Waker::new()));
        let mut served = Served::new(0, proxy_spec(), vec![DEFAULT_MAC_PAIR, DEFAULT_MAC_PAIR], credits, false);
        served.add_reader(reader);
        let shard = FakeShard { room: true, hold_reads: true, ..Default::default() };
        let mut client = Peer::new(CLIENT, (SERVICE, 80), client_cfg);
        let backend = Peer::new(BACKEND, (SOURCE, 0), backend_cfg);
        let now = MS;
        client.with(|conn, sink| *conn = Some(Connection::connect(&client_cfg, u32::MAX - 100, now, sink)));
        let mut w = World {
            served,
            shard,
            writer,
            client,
            backend,
            now,
            passed: [0; 2],
            held_most: 0,
            closed: [false; 2],
            client_reads: None,
            consumed_by_client: 0,
            arp: true,
        };
        w.run(&mut |_| false);
        w
    }

    /// The flow as its events name it, on side `dir`.
    fn flow(&self, dir: u8) -> FlowRef {
        let (slot, id, _) = self.shard.started[0];
        FlowRef { id, slot, shard: 0, dir, _reserved: 0 }
    }

    fn bind(&mut self) -> BindStatus {
        let flow = self.flow(DIR_ORIG);
        self.writer.bind(&flow, SocketAddr::new(IpAddr::V4(BACKEND.0), BACKEND.1))
    }

    fn bound(&self) -> Vec<u8> {
        self.shard.events.iter().filter(|e| e.0 == ConnEventKind::Bound).map(|e| e.2).collect()
    }

    /// Moves frames until nothing moves (the frames `drop` says are lost not delivered).
    fn run(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) {
        run_dropping(&mut self.served, &mut self.shard, &mut self.client, &mut self.backend, self.arp, self.now, drop);
    }

    /// The NF's part, as its handler of `DATA_RDY` would do it: each side's new bytes written
    /// to the other side as far as it takes them (the rest kept for later, as an NF does with
    /// a short `Host::send`), then the events done with; each side closed once the other has
    /// ended and all its bytes are passed on.
    fn pass_on(&mut self) {
        for (from, to) in [(DIR_ORIG, DIR_REPLY), (DIR_REPLY, DIR_ORIG)] {
            let data = if from == DIR_ORIG { &self.shard.data } else { &self.shard.server_data };
            let k = usize::from(from);
            if self.passed[k] < data.len() {
                let flow = self.flow(to);
                let (status, n) = self.writer.request(&flow, StreamOp::Send, &data[self.passed[k]..]);
                assert!(matches!(status, StreamStatus::Done | StreamStatus::Partial | StreamStatus::Ended), "{status:?}");
                self.passed[k] += n as usize;
            }
            let ended = if from == DIR_ORIG { !self.shard.ends.is_empty() } else { !self.shard.server_ends.is_empty() };
            let data_len = if from == DIR_ORIG { self.shard.data.len() } else { self.shard.server_data.len() };
            if ended && self.passed[k] == data_len && !self.closed[usize::from(to)] {
                let (status, _) = self.writer.request(&self.flow(to), StreamOp::Close, &[]);
                self.closed[usize::from(to)] = status == StreamStatus::Done;
            }
        }
        // Done with the events: the bytes it did not pass on are its own to keep.
        let done = std::mem::take(&mut self.shard.held_reads);
        self.shard.reads.extend(done);
        let held = self.shard.data.len() - self.passed[0] + self.shard.server_data.len() - self.passed[1];
        self.held_most = self.held_most.max(held);
    }

    /// `dt` later: the ends' timers run and the client's application reads, frames move, the
    /// NF passes bytes on, frames move again.
    fn step(&mut self, dt: u64, drop: &mut dyn FnMut(&[u8]) -> bool) {
        self.now += dt;
        let (now, reads) = (self.now, self.client_reads);
        for p in [&mut self.client, &mut self.backend] {
            p.with(|conn, sink| {
                if let Some(c) = conn.as_mut() {
                    c.on_timer(now, sink)
                }
            });
        }
        let unread = self.client.received.len() as u64 - self.consumed_by_client;
        let n = reads.map_or(unread, |r| unread.min(r as u64));
        self.client.with(|conn, sink| {
            if let Some(c) = conn.as_mut() {
                c.consumed(n, now, sink)
            }
        });
        self.consumed_by_client += n;
        self.run(drop);
        // The NF writes again as room comes (its `SEND_ROOM`), until it has nothing to pass.
        for _ in 0..100 {
            let before = self.passed;
            self.pass_on();
            self.run(drop);
            if self.passed == before {
                break;
            }
        }
        self.served.check_invariants().unwrap();
    }

    /// Steps of `dt` until `done` or `limit` ns: whether it is done.
    fn step_until(&mut self, dt: u64, limit: u64, drop: &mut dyn FnMut(&[u8]) -> bool, done: impl Fn(&World) -> bool) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return false;
            }
            self.step(dt, drop);
        }
        true
    }
}

const DEFAULT_MAC_PAIR: [u8; 6] = super::super::DEFAULT_MAC;

/// The request, the answer and both closes through the proxy, the frames `drop` says are lost
/// not delivered; every byte checked both ways, the NF told each side's start and end.
fn proxy_through(answer_len: usize, client_reads: Option<usize>, drop: &mut dyn FnMut(&[u8]) -> bool) -> World {
    let cfg = EndpointConfig::default();
    let mut w = World::new(cfg, cfg);
    w.client_reads = client_reads;
    let request: Vec<u8> = b"GET /big HTTP/1.1\r\nHost: example\r\n\r\n".iter().copied().cycle().take(3000).collect();
    let now = w.now;
    w.client.with(|conn, sink| conn.as_mut().unwrap().write(&request, now, sink));
    assert!(w.step_until(MS, 5_000 * MS, drop, |w| w.shard.data.len() >= request.len()), "the NF reads the request");
    assert!(w.backend.conn.is_none(), "no server side before the bind");
    assert_eq!(w.bind(), BindStatus::Done);
    assert!(w.step_until(MS, 5_000 * MS, drop, |w| !w.bound().is_empty()), "{:?}", w.served.stats);
    assert_eq!(w.bound(), [BIND_CONNECTED]);
    assert!(w.step_until(MS, 10_000 * MS, drop, |w| w.backend.received.len() >= request.len()), "{:?}", w.served.stats);
    assert!(w.backend.received == request, "the request reached the backend byte-exact");
    let answer: Vec<u8> = (0..answer_len as u32).map(|i| (i * 7 + i / 251) as u8).collect();
    // The backend's application writes as its send buffer takes it.
    let mut sent = 0;
    while w.client.received.len() < answer.len() {
        assert!(
            w.now < 600_000 * MS,
            "the answer never arrived: {} of {} bytes, {:?}",
            w.client.received.len(),
            answer.len(),
            w.served.stats
        );
        let now = w.now;
        if sent < answer.len() {
            sent += w.backend.with(|conn, sink| conn.as_mut().expect("accepted").write(&answer[sent..], now, sink));
            if sent == answer.len() {
                w.backend.with(|conn, sink| conn.as_mut().unwrap().close(now, sink));
            }
        }
        w.step(MS, drop);
    }
    assert!(w.client.received == answer, "the answer reached the client byte-exact");
    // The backend's FIN ends the server's stream; the NF then closes the client's side, and
    // the client closes its own.
    assert!(w.step_until(MS, 10_000 * MS, drop, |w| w.client.closed.is_some() || w.closed[0]), "{:?}", w.served.stats);
    let now = w.now;
    w.client.with(|conn, sink| conn.as_mut().unwrap().close(now, sink));
    let terminated = |w: &World| w.shard.events.iter().any(|e| e.0 == ConnEventKind::Terminate);
    assert!(w.step_until(MS, 10_000 * MS, drop, terminated), "{:?}", w.served.stats);
    assert_eq!(w.shard.server_ends.len(), 1, "the server's stream ended once");
    assert_eq!(w.shard.server_ends[0], (answer.len() as u64, mbox_abi::END_FIN));
    assert_eq!(w.shard.ends, [(request.len() as u64, mbox_abi::END_FIN)], "the client's stream ended once");
    w.now += 10_000 * MS;
    w.step(MS, drop);
    assert_eq!(w.served.connections(), 0, "both sides gone: {:?}", w.served.stats);
    assert_eq!(w.shard.events.iter().filter(|e| e.0 == ConnEventKind::Terminate).count(), 1, "{:?}", w.shard.events);
    let s = w.served.stats;
    assert_eq!((s.proxy_connects, s.proxy_connected, s.proxy_server_closes, s.proxy_server_aborts), (1, 1, 1, 0), "{s:?}");
    assert_eq!((s.accepted, s.closed, s.aborted), (1, 1, 0), "{s:?}");
    w
}

#[test]
fn a_request_and_its_answer_cross_the_proxy_byte_exact_and_both_sides_close() {
    proxy_through(300_000, None, &mut |_| false);
}

#[test]
fn a_lossy_wire_on_both_sides_loses_no_byte_either_way() {
    let mut n = 0u32;
    let w = proxy_through(300_000, None, &mut |f| {
        // Every 9th frame with data, either way, is lost.
        let data = mbox_stack::wire::frame::TcpFrame::parse(f, mbox_stack::wire::frame::Checksums::Trust).is_ok_and(|(_, p)| !p.is_empty());
        n += u32::from(data);
        data && n % 9 == 0
    });
    assert!(w.served.stats.segments_out > 100);
}

#[test]
fn a_slow_client_slows_the_backend_and_no_buffer_grows() {
    // The client's application reads 2 KiB a millisecond, the backend writes 2 MB as fast as
    // its windows let it: what the NF holds unpassed stays within one side's buffers.
    let w = proxy_through(2 << 20, Some(2 << 10), &mut |_| false);
    assert!(w.held_most <= 2 * WINDOW, "the NF held {} bytes unpassed", w.held_most);
    assert!(w.served.stats.buffer_bytes_peak <= 6 * WINDOW as u64, "{:?}", w.served.stats);
}

#[test]
fn a_backend_that_refuses_is_told_to_the_nf_and_the_flow_may_bind_again() {
    let cfg = EndpointConfig::default();
    let mut w = World::new(cfg, cfg);
    w.backend.refuses = true;
    let now = w.now;
    w.client.with(|conn, sink| conn.as_mut().unwrap().write(b"GET / HTTP/1.1\r\n\r\n", now, sink));
    w.step(MS, &mut |_| false);
    assert_eq!(w.bind(), BindStatus::Done);
    assert!(w.step_until(MS, 5_000 * MS, &mut |_| false, |w| !w.bound().is_empty()));
    assert_eq!(w.bound(), [mbox_abi::BIND_REFUSED]);
    assert_eq!(w.served.stats.backends_refused, 1);
    assert_eq!(w.served.connections(), 1, "the client's connection stays the NF's");
    // The NF answers the client itself.
    let flow = w.flow(DIR_ORIG);
    assert_eq!(w.writer.request(&flow, StreamOp::Send, b"HTTP/1.1 503 x\r\n\r\n").0, StreamStatus::Done);
    w.step(MS, &mut |_| false);
    assert_eq!(w.client.received, b"HTTP/1.1 503 x\r\n\r\n");
    // And may bind again: this time the backend listens.
    w.backend.refuses = false;
    assert_eq!(w.bind(), BindStatus::Done);
    assert!(w.step_until(MS, 5_000 * MS, &mut |_| false, |w| w.bound().len() == 2));
    assert_eq!(w.bound(), [mbox_abi::BIND_REFUSED, BIND_CONNECTED]);
    // Not while a server side the NF has not closed is open: taken, then refused by the shard.
    assert_eq!(w.bind(), BindStatus::Done);
    w.step(MS, &mut |_| false);
    assert_eq!(w.bound(), [mbox_abi::BIND_REFUSED, BIND_CONNECTED, mbox_abi::BIND_NOT_DONE]);
    assert_eq!((w.served.stats.binds_refused, w.served.stats.proxy_connects), (1, 2));
}

#[test]
fn a_backend_nobody_answers_arp_for_is_unresolved_at_the_connect_timeout() {
    let cfg = EndpointConfig::default();
    let mut w = World::new(cfg, cfg);
    w.arp = false;
    let now = w.now;
    w.client.with(|conn, sink| conn.as_mut().unwrap().write(b"GET / HTTP/1.1\r\n\r\n", now, sink));
    w.step(MS, &mut |_| false);
    assert_eq!(w.bind(), BindStatus::Done);
    assert!(w.step_until(100 * MS, 5_000 * MS, &mut |_| false, |w| !w.bound().is_empty()));
    assert_eq!(w.bound(), [mbox_abi::BIND_UNRESOLVED]);
    assert!(w.served.stats.arp_requests_sent >= 3, "{:?}", w.served.stats);
    assert!(w.now >= 3_000 * MS, "not before the connect timeout");
}

#[test]
fn the_server_side_is_reset_when_the_client_resets() {
    let cfg = EndpointConfig::default();
    let mut w = World::new(cfg, cfg);
    let now = w.now;
    w.client.with(|conn, sink| conn.as_mut().unwrap().write(b"GET / HTTP/1.1\r\n\r\n", now, sink));
    w.step(MS, &mut |_| false);
    assert_eq!(w.bind(), BindStatus::Done);
    assert!(w.step_until(MS, 5_000 * MS, &mut |_| false, |w| w.backend.received.len() >= 18));
    w.client.with(|conn, sink| conn.as_mut().unwrap().abort(sink));
    w.step(MS, &mut |_| false);
    assert!(matches!(w.backend.closed, Some(CloseReason::PeerReset)), "{:?}", w.backend.closed);
    assert_eq!(w.served.connections(), 0);
    assert_eq!(w.shard.events.iter().filter(|e| e.0 == ConnEventKind::Terminate).count(), 1);
}
