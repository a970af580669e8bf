//! Accepting connections on a thread of its own until stopped, each client served by a thread
//! of its own (at most [`MAX_CLIENTS`] at once), so that a slow client delays nobody. Shared by
//! the control socket and the metrics endpoint.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
                        let (serve, done) = (serve.clone(), clients.clone());
                        let spawned = thread::Builder::new().name(client_name.clone()).spawn(move || {
                            serve(stream);
                            done.fetch_sub(1, Ordering::AcqRel);
                        });
                        if spawned.is_err() {
                            clients.fetch_sub(1, Ordering::AcqRel);
                        }
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
