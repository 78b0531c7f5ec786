//! Building, running and stopping a server; the thread-safe [`ServerHandle`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::handler::Handler;
use crate::message::Frame;
use crate::reactor::inbox::{Command, Inbox};
use crate::reactor::{self, Reactor};

/// Settings shared by every reactor.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) addr: SocketAddr,
    pub(crate) reactors: usize,
    pub(crate) backlog: i32,
    pub(crate) max_message_size: usize,
    pub(crate) max_head_size: usize,
    pub(crate) max_backpressure: usize,
    pub(crate) max_connections: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) read_buffer_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            reactors: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backlog: 1024,
            max_message_size: 16 << 20,
            max_head_size: 8 << 10,
            max_backpressure: 1 << 20,
            max_connections: usize::MAX,
            close_timeout: Duration::from_secs(5),
            read_buffer_size: 256 << 10,
        }
    }
}

/// Configures a [`Server`]. Start with [`Server::builder`].
///
/// ```
/// use std::time::Duration;
/// use wsreactor::{Ctx, Handler, Message, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Conn = ();
///     fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
///         let _ = cx.send(msg);
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let server = Server::builder()
///     .bind("127.0.0.1:0")?
///     .reactors(2)
///     .max_message_size(1 << 20)
///     .handler(|_reactor_id| Echo)
///     .build()?;
/// println!("listening on {}", server.local_addr());
/// let running = server.spawn()?;
/// running.shutdown(Duration::from_secs(1))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Builder<F = ()> {
    cfg: Config,
    factory: F,
}

impl Builder<()> {
    /// Sets the handler factory: called once on each reactor thread with the
    /// reactor's index, so each reactor has its own handler and no locks.
    pub fn handler<H, F>(self, factory: F) -> Builder<F>
    where
        H: Handler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        Builder { cfg: self.cfg, factory }
    }
}

impl<F> Builder<F> {
    /// The address to listen on (default `127.0.0.1:9001`). Port 0 picks a free port.
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        self.cfg.addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the bind address resolved to nothing")
        })?;
        Ok(self)
    }

    /// How many reactor threads (default: the number of CPUs). Each has its
    /// own listener on the same port (SO_REUSEPORT).
    pub fn reactors(mut self, n: usize) -> Self {
        self.cfg.reactors = n.max(1);
        self
    }

    /// The listen backlog of each reactor's listener (default 1024).
    pub fn backlog(mut self, n: u32) -> Self {
        self.cfg.backlog = i32::try_from(n).unwrap_or(i32::MAX);
        self
    }

    /// The largest message accepted, in bytes (default 16 MiB); a larger one
    /// closes the connection with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.cfg.max_message_size = bytes;
        self
    }

    /// The largest HTTP upgrade request head (default 8 KiB); larger gets 431.
    pub fn max_request_head(mut self, bytes: usize) -> Self {
        self.cfg.max_head_size = bytes.max(256);
        self
    }

    /// The byte cap on each connection's output queue (default 1 MiB). A
    /// send that would pass it is dropped ([`crate::SendStatus::Dropped`]),
    /// and a connection whose queue is full is not read from until it drains.
    pub fn max_backpressure(mut self, bytes: usize) -> Self {
        self.cfg.max_backpressure = bytes.max(1);
        self
    }

    /// The most open WebSocket connections across all reactors (default: no
    /// limit); upgrades beyond it are refused with 503.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.cfg.max_connections = n;
        self
    }

    /// How long to wait for the peer after we close (default 5 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.cfg.close_timeout = d;
        self
    }

    /// The size of each reactor's shared read buffer (default 256 KiB).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.cfg.read_buffer_size = bytes.max(4096);
        self
    }
}

impl<H, F> Builder<F>
where
    H: Handler,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
    /// Binds the listeners and prepares the reactors. Fails if the address is
    /// in use (even by another process using SO_REUSEPORT).
    pub fn build(self) -> io::Result<Server<H>> {
        let mut cfg = self.cfg;
        cfg.read_buffer_size = cfg.read_buffer_size.max(cfg.max_head_size * 2);
        let listeners = reactor::listener::bind_group(cfg.addr, cfg.reactors, cfg.backlog)?;
        let local_addr = listeners[0].local_addr()?;
        let mut parts = Vec::with_capacity(cfg.reactors);
        let mut inboxes = Vec::with_capacity(cfg.reactors);
        for listener in listeners {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), reactor::WAKER)?;
            let inbox = Arc::new(Inbox::new(waker));
            inboxes.push(Arc::clone(&inbox));
            parts.push(reactor::Parts { poll, listener, inbox });
        }
        let shared = Arc::new(Shared {
            inboxes,
            open: AtomicUsize::new(0),
            max_connections: cfg.max_connections,
        });
        let factory: Arc<dyn Fn(usize) -> H + Send + Sync> = Arc::new(self.factory);
        Ok(Server {
            cfg: Arc::new(cfg),
            handle: ServerHandle { shared },
            parts,
            factory,
            local_addr,
        })
    }
}

/// A bound server, ready to run. See [`Builder`] for an example.
pub struct Server<H: Handler> {
    cfg: Arc<Config>,
    handle: ServerHandle,
    parts: Vec<reactor::Parts>,
    factory: Arc<dyn Fn(usize) -> H + Send + Sync>,
    local_addr: SocketAddr,
}

impl Server<NoHandler> {
    /// Starts configuring a server.
    pub fn builder() -> Builder<()> {
        Builder { cfg: Config::default(), factory: () }
    }
}

/// The placeholder handler type of [`Server::builder`]; never instantiated.
#[derive(Debug)]
pub enum NoHandler {}

impl Handler for NoHandler {
    type Conn = ();
}

impl<H: Handler> Server<H> {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for other threads: broadcast, shut down, count connections.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Starts reactors `first..` on their own threads.
    fn spawn_reactors(
        &self,
        parts: impl Iterator<Item = (usize, reactor::Parts)>,
    ) -> io::Result<Running> {
        let mut threads = Vec::new();
        for (id, p) in parts {
            let (cfg, handle, factory) =
                (Arc::clone(&self.cfg), self.handle.clone(), Arc::clone(&self.factory));
            let thread = std::thread::Builder::new()
                .name(format!("wsreactor-{id}"))
                .spawn(move || Reactor::new(id, p, factory(id), cfg, handle).run());
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Stop the reactors already started before reporting.
                    let started = Running { handle: self.handle.clone(), threads };
                    let _ = started.shutdown(Duration::ZERO);
                    return Err(e);
                }
            }
        }
        Ok(Running { handle: self.handle.clone(), threads })
    }

    /// Runs the server on this thread (reactor 0) and on `reactors - 1` more
    /// threads, until it is shut down through a [`ServerHandle`].
    pub fn run(mut self) -> io::Result<()> {
        let mut parts = std::mem::take(&mut self.parts).into_iter().enumerate();
        let first = parts.next();
        let others = self.spawn_reactors(parts)?;
        let result = match first {
            Some((id, p)) => {
                Reactor::new(id, p, (self.factory)(id), Arc::clone(&self.cfg), self.handle.clone())
                    .run()
            }
            None => Ok(()),
        };
        if result.is_err() {
            self.handle.shutdown(Duration::ZERO);
        }
        let rest = others.join();
        result.and(rest)
    }

    /// Runs the server on background threads, one per reactor.
    pub fn spawn(mut self) -> io::Result<Running> {
        let parts = std::mem::take(&mut self.parts);
        self.spawn_reactors(parts.into_iter().enumerate())
    }
}

/// A server running on background threads. Dropping it does not stop the
/// server; call [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    handle: ServerHandle,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Shuts down gracefully (see [`ServerHandle::shutdown`]) and waits for
    /// every reactor to finish.
    pub fn shutdown(self, grace: Duration) -> io::Result<()> {
        self.handle.shutdown(grace);
        self.join()
    }

    /// Waits for every reactor thread to finish.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            let r = t.join().unwrap_or_else(|_| Err(io::Error::other("a reactor thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

pub(crate) struct Shared {
    pub(crate) inboxes: Vec<Arc<Inbox>>,
    open: AtomicUsize,
    max_connections: usize,
}

/// The thread-safe door into a running server: cheap to clone, `Send + Sync`.
/// Each call posts into the reactors' inboxes and wakes them.
///
/// ```
/// # use wsreactor::{Handler, Server, Message, Frame};
/// # struct App; impl Handler for App { type Conn = (); }
/// # fn main() -> std::io::Result<()> {
/// let server = Server::builder().bind("127.0.0.1:0")?.reactors(1).handler(|_| App).build()?;
/// let handle = server.handle();
/// let running = server.spawn()?;
/// handle.broadcast(&Frame::new(Message::Text("hello, everyone")));
/// assert_eq!(handle.connections(), 0);
/// running.shutdown(std::time::Duration::from_secs(1))?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("reactors", &self.shared.inboxes.len())
            .field("connections", &self.connections())
            .finish()
    }
}

impl ServerHandle {
    /// Sends `frame` to every open connection on every reactor.
    pub fn broadcast(&self, frame: &Frame) {
        for inbox in &self.shared.inboxes {
            self.post(inbox, Command::Broadcast(vec![Arc::clone(frame.shared())]));
        }
    }

    /// Starts a graceful shutdown and returns at once: every reactor stops
    /// accepting, closes its connections with 1001 (going away), waits up to
    /// `grace` for the close handshakes, then drops what is left and exits.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for inbox in &self.shared.inboxes {
            self.post(inbox, Command::Shutdown(deadline));
        }
    }

    /// How many WebSocket connections are open across all reactors.
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// How many reactors the server runs.
    pub fn reactors(&self) -> usize {
        self.shared.inboxes.len()
    }

    pub(crate) fn post(&self, inbox: &Inbox, cmd: Command) {
        if let Err(e) = inbox.post(cmd) {
            log::error!("could not wake a reactor: {e}");
        }
    }

    /// Counts a new connection; false if that would pass `max_connections`.
    pub(crate) fn try_open(&self) -> bool {
        let max = self.shared.max_connections;
        self.shared
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn closed(&self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}
