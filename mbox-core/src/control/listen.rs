//! Accepting connections on a thread of its own until stopped, each client served by a thread
//! of its own (at most [`MAX_CLIENTS`] at once), so that a slow client delays nobody. Shared by
//! the control socket and the metrics endpoint.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Connections served at once; more are answered with `busy` and closed.
pub const MAX_CLIENTS: usize = 16;

/// A non-blocking listener.
pub trait Listener: Send + 'static {
    type Stream: Send + 'static;
    fn accept_one(&self) -> io::Result<Self::Stream>;
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    fn accept_one(&self) -> io::Result<UnixStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn accept_one(&self) -> io::Result<TcpStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// A stream whose reads and writes can be given timeouts.
pub trait Timed {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()>;
}

impl Timed for UnixStream {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
}

impl Timed for TcpStream {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
}

/// Reads from a client until a deadline for the whole request, not per read: a client that
/// trickles a byte at a time cannot hold its thread for longer.
pub struct Deadline<'a, S> {
    stream: &'a S,
    deadline: Instant,
}

impl<'a, S: Timed> Deadline<'a, S> {
    /// Reading must end within `limit`; a write (the answer) may take as long again.
    pub fn new(stream: &'a S, limit: Duration) -> Deadline<'a, S> {
        let _ = stream.set_timeouts(Some(limit), Some(limit));
        Deadline { stream, deadline: Instant::now() + limit }
    }
}

impl<S: Timed> Read for Deadline<'_, S>
where
    for<'s> &'s S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the request took too long"));
        }
        self.stream.set_timeouts(Some(left), Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Gives a client's slot back however its thread ends (a panic included).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The accepting thread; dropping it stops accepting (clients already connected finish).
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts on `listener` (made non-blocking here, so that the thread notices the stop),
    /// handing each client to `serve` on a thread of its own, or to `busy` when too many are
    /// connected.
    pub fn start<L: Listener, S, B>(name: &str, listener: L, serve: S, busy: B) -> io::Result<Acceptor>
    where
        S: Fn(L::Stream) + Send + Sync + 'static,
        B: Fn(L::Stream) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let client_name = format!("{name}-client");
        let thread = thread::Builder::new().name(name.to_string()).spawn(move || {
            let serve = Arc::new(serve);
            let clients = Arc::new(AtomicUsize::new(0));
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept_one() {
                    Ok(stream) => {
                        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                            clients.fetch_sub(1, Ordering::AcqRel);
                            busy(stream);
                            continue;
                        }
                        let (serve, slot) = (serve.clone(), Slot(clients.clone()));
                        // A thread that cannot be spawned drops its closure, and the slot with it.
                        let _ = thread::Builder::new().name(client_name.clone()).spawn(move || {
                            let _slot = slot;
                            serve(stream);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        log::warn!("{}: accept failed: {e}", thread::current().name().unwrap_or("listener"));
                        thread::sleep(Duration::from_millis(100));
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn a_trickling_client_is_cut_off_at_the_deadline_not_per_read() {
        let (server, mut client) = UnixStream::pair().unwrap();
        // A byte every 20 ms, never a newline: each read succeeds, the request never ends.
        let trickle = thread::spawn(move || {
            for _ in 0..100 {
                if client.write_all(b"x").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        let mut line = String::new();
        let read = BufReader::new(Deadline::new(&server, Duration::from_millis(300))).read_line(&mut line);
        assert!(read.is_err(), "{read:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "cut off after {took:?}");
        drop(server);
        trickle.join().unwrap();
    }
}
