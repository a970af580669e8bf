//! Accepting clients and reading their requests on one thread, then serving each complete
//! request on a thread of its own. Shared by the control socket and the metrics endpoint.
//!
//! Requests are read by a single `poll(2)` loop over non-blocking sockets, so a client that
//! sends nothing, or a byte at a time, costs a file descriptor for a while and never holds a
//! serving thread: only complete requests reach the [`MAX_WORKERS`] serving threads. Clients
//! are bounded in time — the first byte within [`FIRST_BYTE`], the whole request within the
//! protocol's deadline — and in number: at most [`MAX_WAITING_PER_PEER`] incomplete requests
//! per peer (the peer's process on the Unix socket, by `SO_PEERCRED`; its address over TCP) and
//! [`MAX_WAITING`] in all, a newcomer displacing the oldest. So idle or slow clients cannot keep
//! a prompt one out. When every serving thread is busy (or the peer has its share,
//! [`MAX_WORKERS_PER_PEER`]), the protocol's `busy` answers on the loop's thread without
//! blocking: the control socket still answers `status` there.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Requests served at once, each on a thread of its own.
pub const MAX_WORKERS: usize = 16;
/// Serving threads one peer may hold at once: others always find some free.
pub const MAX_WORKERS_PER_PEER: usize = MAX_WORKERS / 2;
/// Connections whose request is not complete yet; a newcomer beyond this closes the oldest.
pub const MAX_WAITING: usize = 256;
/// Incomplete requests one peer may have; its newcomer beyond this closes its oldest.
pub const MAX_WAITING_PER_PEER: usize = 8;
/// How long a new connection may stay silent: clients send their request at once.
pub const FIRST_BYTE: Duration = Duration::from_secs(1);
/// Connections accepted per round of the loop, so that reading keeps up during a flood.
const ACCEPT_BURST: usize = 64;

/// Who is at the other end of a connection, as far as the socket tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A local process (Unix socket), by pid.
    Process(i32),
    /// A remote address (TCP).
    Address(IpAddr),
    Unknown,
}

/// A non-blocking listener.
pub trait Listener: AsRawFd + Send + 'static {
    type Stream: Conn;
    fn accept_one(&self) -> io::Result<(Self::Stream, Peer)>;
}

/// A client connection.
pub trait Conn: AsRawFd + Send + 'static {
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    fn accept_one(&self) -> io::Result<(UnixStream, Peer)> {
        let (stream, _) = self.accept()?;
        let peer = peer_process(stream.as_raw_fd()).map_or(Peer::Unknown, Peer::Process);
        Ok((stream, peer))
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn accept_one(&self) -> io::Result<(TcpStream, Peer)> {
        let (stream, addr) = self.accept()?;
        Ok((stream, Peer::Address(addr.ip())))
    }
}

impl Conn for UnixStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self;
        s.read(buf)
    }
}

impl Conn for TcpStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self;
        s.read(buf)
    }
}

/// The pid of the process at the other end of a Unix socket.
fn peer_process(fd: RawFd) -> Option<i32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// How a protocol's requests are read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// The longest request read; a longer one is served as far as it was read.
    pub max_request: usize,
    /// The whole request must arrive within this (the first byte within [`FIRST_BYTE`]).
    pub deadline: Duration,
    /// Whether the bytes so far are a whole request.
    pub complete: fn(&[u8]) -> bool,
}

/// A connection whose request is being read.
struct Waiting<S> {
    stream: S,
    peer: Peer,
    accepted: Instant,
    request: Vec<u8>,
}

/// Serving threads in use, in all and per peer; given back however a thread ends.
#[derive(Default)]
struct Workers {
    busy: Mutex<(usize, HashMap<Peer, usize>)>,
}

impl Workers {
    /// Takes a serving thread for `peer`, if one is free and the peer has not its share.
    fn take(self: &Arc<Self>, peer: Peer) -> Option<WorkerSlot> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let (all, per_peer) = &mut *busy;
        let mine = per_peer.entry(peer).or_insert(0);
        if *all >= MAX_WORKERS || *mine >= MAX_WORKERS_PER_PEER {
            if *mine == 0 {
                per_peer.remove(&peer);
            }
            return None;
        }
        *all += 1;
        *mine += 1;
        Some(WorkerSlot { workers: self.clone(), peer })
    }
}

/// A serving thread's place, given back when dropped (a panic included).
struct WorkerSlot {
    workers: Arc<Workers>,
    peer: Peer,
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        let mut busy = self.workers.busy.lock().unwrap_or_else(|e| e.into_inner());
        let (all, per_peer) = &mut *busy;
        *all -= 1;
        if let Some(mine) = per_peer.get_mut(&self.peer) {
            *mine -= 1;
            if *mine == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

/// The accepting thread; dropping it stops accepting (requests being served finish).
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts on `listener` (made non-blocking here), reads each client's request as
    /// `reading` says, and hands it with its stream (blocking again) to `serve` on a thread of
    /// its own — or, when no serving thread is free for it, to `busy` on this thread with the
    /// stream still non-blocking (`busy` must not wait).
    pub fn start<L: Listener, S, B>(name: &str, listener: L, reading: Reading, serve: S, busy: B) -> io::Result<Acceptor>
    where
        S: Fn(L::Stream, Vec<u8>) + Send + Sync + 'static,
        B: Fn(&L::Stream, &[u8]) + Send + 'static,
    {
        listener_nonblocking(listener.as_raw_fd())?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let client_name = format!("{name}-client");
        let thread = thread::Builder::new().name(name.to_string()).spawn(move || {
            let mut lp =
                Loop { listener, reading, serve: Arc::new(serve), busy, workers: Arc::default(), waiting: VecDeque::new(), client_name };
            let mut fds = Vec::new();
            while !thread_stop.load(Ordering::Relaxed) {
                lp.round(&mut fds);
            }
        })?;
        Ok(Acceptor { stop, thread: Some(thread) })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listener_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the listener owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The accepting thread's state.
struct Loop<L: Listener, S, B> {
    listener: L,
    reading: Reading,
    serve: Arc<S>,
    busy: B,
    workers: Arc<Workers>,
    /// Oldest first.
    waiting: VecDeque<Waiting<L::Stream>>,
    client_name: String,
}

impl<L, S, B> Loop<L, S, B>
where
    L: Listener,
    S: Fn(L::Stream, Vec<u8>) + Send + Sync + 'static,
    B: Fn(&L::Stream, &[u8]),
{
    /// Waits (at most 100 ms, so that a stop is noticed) for a connection or request bytes,
    /// then accepts, reads, serves and expires what is due.
    fn round(&mut self, fds: &mut Vec<libc::pollfd>) {
        let now = Instant::now();
        let next_deadline = self.waiting.iter().map(|w| self.deadline_of(w)).min();
        let wait = next_deadline.map_or(Duration::from_millis(100), |d| d.saturating_duration_since(now)).min(Duration::from_millis(100));
        fds.clear();
        fds.push(libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(self.waiting.iter().map(|w| libc::pollfd { fd: w.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis().max(1) as libc::c_int) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("{}: poll failed: {e}", thread::current().name().unwrap_or("listener"));
                thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        // Read before accepting: the connections polled are the first `fds.len() - 1`.
        let readable: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        let mut index = 0;
        while i < self.waiting.len() {
            if !(index < readable.len() && readable[index] && self.settle(i)) {
                i += 1;
            }
            index += 1;
        }
        if fds[0].revents != 0 {
            self.accept();
        }
        let now = Instant::now();
        self.waiting.retain(|w| {
            let deadline = if w.request.is_empty() { w.accepted + FIRST_BYTE } else { w.accepted + self.reading.deadline };
            deadline > now
        });
    }

    fn deadline_of(&self, w: &Waiting<L::Stream>) -> Instant {
        w.accepted + if w.request.is_empty() { FIRST_BYTE } else { self.reading.deadline }
    }

    /// Accepts what is waiting, displacing the oldest incomplete requests (the peer's own
    /// first) beyond the bounds.
    fn accept(&mut self) {
        for _ in 0..ACCEPT_BURST {
            match self.listener.accept_one() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let own: Vec<usize> = self.waiting.iter().enumerate().filter(|(_, w)| w.peer == peer).map(|(i, _)| i).collect();
                    // The oldest goes, unless its request has come whole meanwhile (a prompt
                    // client among slow ones from its address): then it is served.
                    let oldest =
                        if own.len() >= MAX_WAITING_PER_PEER { Some(own[0]) } else { (self.waiting.len() >= MAX_WAITING).then_some(0) };
                    if let Some(oldest) = oldest {
                        if !self.settle(oldest) {
                            self.waiting.remove(oldest);
                        }
                    }
                    self.waiting.push_back(Waiting { stream, peer, accepted: Instant::now(), request: Vec::new() });
                    // A client whose request came with its connection is served now, before
                    // newer connections could displace it.
                    self.settle(self.waiting.len() - 1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, most likely: the connection waits in the backlog.
                    log::warn!("{}: accept failed: {e}", thread::current().name().unwrap_or("listener"));
                    thread::sleep(Duration::from_millis(20));
                    return;
                }
            }
        }
    }

    /// Reads what waiting client `i` sent: a complete request is served (or answered busy) and
    /// a client gone is dropped, either leaving `waiting` (true); otherwise it stays (false).
    fn settle(&mut self, i: usize) -> bool {
        match self.read(i) {
            Progress::More => false,
            Progress::Done => {
                let w = self.waiting.remove(i).expect("index in range");
                self.dispatch(w);
                true
            }
            Progress::Gone => {
                self.waiting.remove(i);
                true
            }
        }
    }

    /// Reads what a client sent.
    fn read(&mut self, i: usize) -> Progress {
        let max = self.reading.max_request;
        let w = &mut self.waiting[i];
        let mut buf = [0u8; 4096];
        loop {
            let room = (max - w.request.len()).min(buf.len());
            if room == 0 {
                return Progress::Done;
            }
            match w.stream.read_some(&mut buf[..room]) {
                // The client finished writing: serve what came, if anything.
                Ok(0) if w.request.is_empty() => return Progress::Gone,
                Ok(0) => return Progress::Done,
                Ok(n) => {
                    w.request.extend_from_slice(&buf[..n]);
                    if (self.reading.complete)(&w.request) {
                        return Progress::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::More,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Gone,
            }
        }
    }

    /// Serves a complete request on a thread of its own, or answers busy.
    fn dispatch(&mut self, w: Waiting<L::Stream>) {
        let Some(slot) = self.workers.take(w.peer) else {
            (self.busy)(&w.stream, &w.request);
            return;
        };
        if w.stream.set_nonblocking(false).is_err() {
            return;
        }
        let serve = self.serve.clone();
        // A thread that cannot be spawned drops its closure, and the slot with it.
        let _ = thread::Builder::new().name(self.client_name.clone()).spawn(move || {
            let _slot = slot;
            serve(w.stream, w.request);
        });
    }
}

/// What reading a client's bytes came to.
enum Progress {
    More,
    Done,
    Gone,
}

/// Writes `bytes` to a non-blocking stream as far as it takes them now (an answer from the
/// loop's thread, which must not wait); false if it did not take them all.
pub fn write_now(fd: RawFd, bytes: &[u8]) -> bool {
    let mut sent = 0;
    while sent < bytes.len() {
        // SAFETY: send from a live buffer on a descriptor the caller owns; MSG_NOSIGNAL keeps a
        // closed peer from raising SIGPIPE.
        let n = unsafe { libc::send(fd, bytes[sent..].as_ptr().cast(), bytes.len() - sent, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n <= 0 {
            return false;
        }
        sent += n as usize;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line_done(b: &[u8]) -> bool {
        b.contains(&b'\n')
    }

    /// An echo server: answers each line with "ok LINE", or "busy" when no thread is free.
    fn echo(dir: &std::path::Path, hold: Duration) -> (std::path::PathBuf, Acceptor) {
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let reading = Reading { max_request: 1024, deadline: Duration::from_millis(500), complete: line_done };
        let acceptor = Acceptor::start(
            "test",
            listener,
            reading,
            move |mut s: UnixStream, req: Vec<u8>| {
                thread::sleep(hold);
                let _ = s.write_all(&[b"ok ", req.as_slice()].concat());
            },
            |s: &UnixStream, _req: &[u8]| {
                write_now(s.as_raw_fd(), b"busy\n");
            },
        )
        .unwrap();
        (path, acceptor)
    }

    fn ask(path: &std::path::Path, line: &str) -> String {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn idle_and_trickling_clients_do_not_keep_a_prompt_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _acceptor) = echo(dir.path(), Duration::ZERO);
        // Far more silent connections than threads, from this process.
        let idle: Vec<UnixStream> = (0..100).map(|_| UnixStream::connect(&path).unwrap()).collect();
        // A trickler: a byte every 50 ms, never a newline.
        let trickler = UnixStream::connect(&path).unwrap();
        let t = {
            let mut t = trickler.try_clone().unwrap();
            thread::spawn(move || {
                for _ in 0..40 {
                    if t.write_all(b"x").is_err() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let started = Instant::now();
        // From another process it would have a budget of its own; this one shares the test's,
        // and displaces its oldest silent connections.
        assert_eq!(ask(&path, "hello\n"), "ok hello\n");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        // The trickler is cut off at the request deadline, not fed forever.
        let mut rest = String::new();
        trickler.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = (&trickler).read_to_string(&mut rest);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        t.join().unwrap();
        drop(idle);
    }

    #[test]
    fn a_silent_connection_is_closed_after_the_first_byte_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _acceptor) = echo(dir.path(), Duration::ZERO);
        let started = Instant::now();
        let mut silent = UnixStream::connect(&path).unwrap();
        silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(silent.read(&mut buf).unwrap(), 0, "closed without an answer");
        let took = started.elapsed();
        assert!(took >= FIRST_BYTE - Duration::from_millis(50) && took < FIRST_BYTE * 2, "{took:?}");
    }

    #[test]
    fn with_every_thread_busy_the_busy_answer_comes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _acceptor) = echo(dir.path(), Duration::from_millis(1500));
        // One peer may hold half the threads: this process's ninth request is answered busy.
        let held: Vec<_> = (0..MAX_WORKERS_PER_PEER)
            .map(|i| {
                let path = path.clone();
                thread::spawn(move || ask(&path, &format!("slow {i}\n")))
            })
            .collect();
        thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(ask(&path, "one more\n"), "busy\n");
        assert!(started.elapsed() < Duration::from_millis(500));
        for h in held {
            assert!(h.join().unwrap().starts_with("ok slow"));
        }
    }
}
