//! Building, running and stopping a server; the thread-safe [`ServerHandle`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{Config, SlowConsumer};
use crate::proto::deflate::{DeflateConfig, Mode as Compression};
use crate::pubsub::{StoreConfig, TopicStore};
use crate::reactor::door::{Publisher, ServerHandle, Shared};
use crate::reactor::handler::Handler;
use crate::reactor::inbox::Inbox;
use crate::reactor::{self, Reactor};

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

    /// The listen backlog of each reactor's listener (default 4096; the
    /// kernel caps it at `net.core.somaxconn`).
    pub fn backlog(mut self, n: u32) -> Self {
        self.cfg.backlog = i32::try_from(n).unwrap_or(i32::MAX);
        self
    }

    /// How long the kernel may hold a new connection that has not sent
    /// anything yet before handing it to a reactor (TCP_DEFER_ACCEPT, whole
    /// seconds; default 1 s; zero turns it off).
    ///
    /// A WebSocket client speaks first, so a reactor is woken once per
    /// connection, when the upgrade request is there, and answers it in the
    /// same turn. A client that connects and stays silent costs the server
    /// nothing until then; after it, the handshake timeout applies as usual.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = wsreactor::Server::builder().defer_accept(Duration::ZERO);
    /// # let _ = builder;
    /// ```
    pub fn defer_accept(mut self, wait: Duration) -> Self {
        self.cfg.defer_accept = wait;
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

    /// The memory budget: the most bytes the server holds for its
    /// connections in all (output queues, partial input, reassembly and
    /// inflate buffers, compression contexts, subscriber sets, publishes on
    /// their way to the reactors), whatever its clients send or fail to
    /// read. Buffers grow only into what it has left: a message that would
    /// outgrow that is closed with 1009, a connection whose reply (or
    /// publish) would not fit is not read until it does, and a slow
    /// subscriber's deliveries meet its topic's slow-consumer policy. From
    /// 80% of it on, upgrades are refused with HTTP 503. Seven eighths of it
    /// go to buffers, the rest to the allocator's overhead, so the process's
    /// resident memory stays under the budget plus what it uses with no
    /// connections. Nothing panics or aborts on allocation.
    ///
    /// The default is half the memory this process may use: the machine's
    /// physical memory, or the cgroup's `memory.max` when that is lower.
    /// What the server needs besides (the topic store, each reactor's read
    /// buffer) is not counted: see the README for what a connection costs.
    ///
    /// ```
    /// # struct App; impl wsreactor::Handler for App { type Conn = (); }
    /// # fn main() -> std::io::Result<()> {
    /// let server = wsreactor::Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .max_memory(512 << 20)
    ///     .handler(|_| App)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.cfg.max_memory = bytes;
        self
    }

    /// How long a new connection may take to send its upgrade request
    /// (default 10 s); slower ones (e.g. slowloris) are dropped.
    /// `Duration::ZERO` turns the timeout off.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.cfg.timeouts.handshake = d;
        self
    }

    /// After this long without receiving anything (default 30 s) the server
    /// pings the connection; see [`Builder::pong_timeout`]. `ZERO`: no pings.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.cfg.timeouts.ping_interval = d;
        self
    }

    /// How long a pinged connection may stay silent before it is dropped as
    /// dead (default 10 s). Anything received counts as an answer.
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.cfg.timeouts.pong = d;
        self
    }

    /// Close (1001, "idle timeout") a connection after this long without a
    /// data message in either direction (default: off). Pings do not count.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.timeouts.idle = d;
        self
    }

    /// How long to wait for the peer to finish the close handshake after we
    /// close, or after an HTTP refusal (default 5 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.cfg.timeouts.close = d;
        self
    }

    /// Drop a connection whose queued output makes no progress at all for
    /// this long (default 30 s).
    pub fn write_stall_timeout(mut self, d: Duration) -> Self {
        self.cfg.timeouts.write_stall = d;
        self
    }

    /// permessage-deflate (RFC 7692); off by default.
    ///
    /// - [`Compression::Shared`]: the server answers every offer with
    ///   `server_no_context_takeover` and asks for `client_no_context_takeover`,
    ///   so a broadcast frame is compressed once for every connection, and
    ///   compressors and inflaters are shared per reactor: no compression
    ///   memory per idle connection.
    /// - [`Compression::Dedicated`]: per-connection contexts both ways (best
    ///   ratio, roughly 300 KiB per connection that has compressed or
    ///   inflated a message).
    ///
    /// ```
    /// use wsreactor::{Compression, Server};
    /// # struct App; impl wsreactor::Handler for App { type Conn = (); }
    /// # fn main() -> std::io::Result<()> {
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .compression(Compression::Shared)
    ///     .compression_min_size(128)
    ///     .handler(|_| App)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn compression(mut self, mode: Compression) -> Self {
        self.cfg.deflate.mode = mode;
        self.cfg.deflate.client_no_context_takeover = mode == Compression::Shared;
        self
    }

    /// The deflate level, 0-9 (default 1: fastest; see `benches/deflate.rs`).
    pub fn compression_level(mut self, level: u32) -> Self {
        self.cfg.deflate.level = level.min(9);
        self
    }

    /// Messages shorter than this many bytes go out uncompressed (default 64).
    pub fn compression_min_size(mut self, bytes: usize) -> Self {
        self.cfg.deflate.min_size = bytes;
        self
    }

    /// Every permessage-deflate setting at once (window sizes included).
    pub fn deflate(mut self, cfg: DeflateConfig) -> Self {
        self.cfg.deflate = cfg;
        self
    }

    /// Topic settings: history kept per topic for reconnecting clients, the
    /// most topics, the longest topic name (see [`StoreConfig`]).
    pub fn topics(mut self, cfg: StoreConfig) -> Self {
        self.cfg.topics = cfg;
        self
    }

    /// What to do with a subscriber that cannot keep up (default: close
    /// it), on every topic that no [`Builder::slow_consumer_for`] rule
    /// matches.
    ///
    /// ```
    /// use wsreactor::{Server, SlowConsumer};
    /// # struct App; impl wsreactor::Handler for App { type Conn = (); }
    /// # fn main() -> std::io::Result<()> {
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .slow_consumer(SlowConsumer::Drop)
    ///     .handler(|_| App)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.cfg.slow_consumer.set_default(policy);
        self
    }

    /// Topics whose name starts with `prefix` use `policy` for their slow
    /// consumers instead of the server-wide [`Builder::slow_consumer`].
    /// Call it once per prefix; when several prefixes match a topic the
    /// longest wins, and a second call for the same prefix replaces the
    /// first. A topic name may serve as a prefix: it matches itself (and
    /// any longer name that starts with it).
    ///
    /// A prefix must be able to start a topic name: 1 to
    /// [`StoreConfig::max_topic_len`] bytes of `A-Z a-z 0-9 . _ : / -`.
    /// [`Builder::build`] fails with [`io::ErrorKind::InvalidInput`] for
    /// one that cannot.
    ///
    /// ```
    /// use wsreactor::{Server, SlowConsumer};
    /// # struct App; impl wsreactor::Handler for App { type Conn = (); }
    /// # fn main() -> std::io::Result<()> {
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .slow_consumer(SlowConsumer::Close)
    ///     .slow_consumer_for("md.", SlowConsumer::Conflate)
    ///     .slow_consumer_for("md.trades.", SlowConsumer::Drop) // longer: wins over "md."
    ///     .handler(|_| App)
    ///     .build()?;
    ///
    /// let bad = Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .slow_consumer_for("md prices", SlowConsumer::Drop) // a space: no topic has one
    ///     .handler(|_| App)
    ///     .build();
    /// assert_eq!(bad.err().map(|e| e.kind()), Some(std::io::ErrorKind::InvalidInput));
    /// # Ok(())
    /// # }
    /// ```
    pub fn slow_consumer_for(mut self, prefix: &str, policy: SlowConsumer) -> Self {
        self.cfg.slow_consumer.add(prefix, policy);
        self
    }

    /// The granularity of every timeout (default 100 ms); timeouts fire up
    /// to one tick late, never early.
    pub fn timer_tick(mut self, d: Duration) -> Self {
        self.cfg.timeouts.tick = d.max(Duration::from_millis(1));
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
    /// in use (even by another process using SO_REUSEPORT), and with
    /// [`io::ErrorKind::InvalidInput`] for a [`Builder::slow_consumer_for`]
    /// prefix that no topic name can start with.
    pub fn build(self) -> io::Result<Server<H>> {
        let mut cfg = self.cfg;
        cfg.slow_consumer.validate(cfg.topics.max_topic_len)?;
        cfg.read_buffer_size = cfg.read_buffer_size.max(cfg.max_head_size * 2);
        let listeners =
            reactor::listener::bind_group(cfg.addr, cfg.reactors, cfg.backlog, cfg.defer_accept)?;
        let local_addr = listeners[0].local_addr()?;
        let mut parts = Vec::with_capacity(cfg.reactors);
        let mut inboxes = Vec::with_capacity(cfg.reactors);
        for listener in listeners {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), reactor::WAKER)?;
            let inbox = Arc::new(Inbox::new(waker));
            inboxes.push(Arc::clone(&inbox));
            parts.push(reactor::Endpoints { poll, listener, inbox });
        }
        let store = Arc::new(TopicStore::new(cfg.topics.clone()));
        let shared = Arc::new(Shared::new(&cfg, inboxes, store));
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
    parts: Vec<reactor::Endpoints>,
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

    /// A handle to publish on topics from any thread.
    pub fn publisher(&self) -> Publisher {
        self.handle.publisher()
    }

    /// Starts reactors `first..` on their own threads.
    fn spawn_reactors(
        &self,
        parts: impl Iterator<Item = (usize, reactor::Endpoints)>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::topic::DEFAULT_MAX_TOPIC_LEN;

    #[test]
    fn build_refuses_a_prefix_no_topic_can_start_with() {
        let long = "p".repeat(DEFAULT_MAX_TOPIC_LEN + 1);
        for bad in ["", "md prices", "md.é", "md.\"", long.as_str()] {
            let built = Server::builder()
                .slow_consumer_for("md.", SlowConsumer::Conflate)
                .slow_consumer_for(bad, SlowConsumer::Drop)
                .bind("127.0.0.1:0")
                .and_then(|b| b.handler(|_| App).build());
            let err = built.err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("slow_consumer_for"), "{err}");
        }
        // As long as the store's cap allows: a longer cap admits the long prefix.
        let cap =
            StoreConfig { max_topic_len: DEFAULT_MAX_TOPIC_LEN + 1, ..StoreConfig::default() };
        let built = Server::builder()
            .slow_consumer_for(&long, SlowConsumer::Drop)
            .topics(cap)
            .bind("127.0.0.1:0")
            .and_then(|b| b.handler(|_| App).build());
        assert!(built.is_ok(), "{:?}", built.err());
    }

    struct App;
    impl Handler for App {
        type Conn = ();
    }
}
