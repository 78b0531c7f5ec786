//! The thread-safe door into a running server: [`ServerHandle`] and
//! [`Publisher`], the only ways other threads reach the reactors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::budget::Budget;
use super::inbox::{Command, Inbox, LocalId};
use super::topics::Unpublished;
use crate::config::Config;
use crate::message::{Frame, Message};
use crate::proto::CloseCode;
use crate::pubsub::wire::Payload;
use crate::pubsub::{StoreError, TopicName, TopicStore};
use crate::stats::{Counters, Stats};

pub(crate) struct Shared {
    pub(crate) inboxes: Vec<Arc<Inbox>>,
    /// Topics: sequence numbers, last values, history.
    pub(crate) store: Arc<TopicStore>,
    /// Topics subscribed to that the store does not hold, and their cap.
    pub(crate) unpublished: Arc<Unpublished>,
    /// What connections hold, against `max_memory`.
    pub(crate) budget: Budget,
    /// One set per reactor, each on its own cache line.
    pub(crate) counters: Vec<Arc<Counters>>,
    open: AtomicUsize,
    max_connections: usize,
}

impl Shared {
    /// What the reactors of a server built with `cfg` share, around their
    /// `inboxes` and the topic `store`.
    pub(crate) fn new(cfg: &Config, inboxes: Vec<Arc<Inbox>>, store: Arc<TopicStore>) -> Self {
        Shared {
            store,
            unpublished: Arc::new(Unpublished::new(cfg.topics.max_topics)),
            budget: Budget::new(cfg.max_memory),
            counters: (0..cfg.reactors).map(|_| Arc::default()).collect(),
            inboxes,
            open: AtomicUsize::new(0),
            max_connections: cfg.max_connections,
        }
    }
}

/// Identifies a connection across the whole server. Ids are never reused
/// while a server runs (a slot's generation changes with each connection).
/// Get one from [`Ctx::id`](crate::Ctx::id); use it from any thread with
/// [`ServerHandle::send_to`] and [`ServerHandle::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) reactor: u32,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The reactor (thread) that owns the connection.
    pub fn reactor(&self) -> usize {
        self.reactor as usize
    }

    fn local(&self) -> LocalId {
        LocalId { slot: self.slot as usize, generation: self.generation }
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.reactor, self.slot, self.generation)
    }
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
            self.post(inbox, Command::Broadcast(vec![frame.clone()], None));
        }
    }

    /// Sends `frame` to every open connection on every reactor but `skip`
    /// (the sender, in a chat room).
    pub fn broadcast_except(&self, frame: &Frame, skip: ConnId) {
        for (i, inbox) in self.shared.inboxes.iter().enumerate() {
            let skip = (i == skip.reactor()).then(|| skip.local());
            self.post(inbox, Command::Broadcast(vec![frame.clone()], skip));
        }
    }

    /// Sends `msg` to the connection `to`, from any thread: it is encoded
    /// here and queued by the connection's reactor on its next turn, under
    /// the connection's backpressure cap like [`Ctx::send`](crate::Ctx::send).
    /// False if `to` names no reactor of this server. Whether it was queued
    /// is not reported: a connection that has closed meanwhile (or whose
    /// queue is full) does not get it, and the reactor counts it in
    /// [`Stats::sends_dropped`].
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use wsreactor::{ConnId, Ctx, Handler, Message, Server};
    ///
    /// /// Tells another thread who connected; that thread may push to them.
    /// struct App(mpsc::Sender<ConnId>);
    ///
    /// impl Handler for App {
    ///     type Conn = ();
    ///     fn on_open(&mut self, cx: &mut Ctx<'_, ()>) {
    ///         let _ = self.0.send(cx.id());
    ///     }
    /// }
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let (tx, rx) = mpsc::channel();
    /// let server =
    ///     Server::builder().bind("127.0.0.1:0")?.reactors(1).handler(move |_| App(tx.clone())).build()?;
    /// let handle = server.handle();
    /// let running = server.spawn()?;
    /// std::thread::spawn(move || {
    ///     for id in rx {
    ///         handle.send_to(id, Message::Text("welcome"));
    ///     }
    /// });
    /// running.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_to(&self, to: ConnId, msg: Message<'_>) -> bool {
        let Some(inbox) = self.shared.inboxes.get(to.reactor()) else { return false };
        self.post(inbox, Command::SendTo(to.local(), Frame::new(msg)));
        true
    }

    /// Starts closing the connection `to` with `code` and `reason` (cut to
    /// 123 bytes), from any thread, as [`Ctx::close`](crate::Ctx::close)
    /// does on its reactor's next turn. False if `to` names no reactor of
    /// this server; a connection already gone is left alone.
    pub fn close(&self, to: ConnId, code: CloseCode, reason: &str) -> bool {
        let Some(inbox) = self.shared.inboxes.get(to.reactor()) else { return false };
        self.post(inbox, Command::Close(to.local(), code, reason.into()));
        true
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

    /// A handle to publish on topics from any thread.
    pub fn publisher(&self) -> Publisher {
        Publisher { handle: self.clone() }
    }

    /// Encodes a publish once, numbers it, and hands it to every reactor's
    /// inbox under the topic's lock, so each inbox holds a topic's frames in
    /// sequence order whichever thread published them. From reactor `own`'s
    /// thread, its own inbox is not woken (it drains it before its turn ends).
    pub(crate) fn publish_payload(
        &self,
        topic: &TopicName,
        payload: &Payload,
        own: Option<usize>,
    ) -> Result<u64, StoreError> {
        let shared = &self.shared;
        shared.store.publish_with(topic, payload, |seq, frame| {
            for (i, inbox) in shared.inboxes.iter().enumerate() {
                let cmd = Command::Publish(topic.clone(), seq, frame.clone());
                if Some(i) == own {
                    shared.budget.posted(frame.len());
                    inbox.post_quiet(cmd);
                } else {
                    self.post(inbox, cmd);
                }
            }
            seq
        })
    }

    /// The server's counters, summed over its reactors.
    pub fn stats(&self) -> Stats {
        Stats::sum(self.shared.counters.iter().map(|c| &**c))
    }

    /// How many reactors the server runs.
    pub fn reactors(&self) -> usize {
        self.shared.inboxes.len()
    }

    pub(crate) fn post(&self, inbox: &Inbox, cmd: Command) {
        self.shared.budget.posted(cmd.bytes());
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

/// Publishes on topics from any thread: cheap to clone, `Send + Sync`.
///
/// A publish is numbered (per topic, from 1), encoded once into a frame that
/// every subscriber's queue shares, kept as the topic's last value (and in
/// its history), and handed to every reactor.
///
/// ```
/// # use wsreactor::{Handler, Message, Server};
/// # struct App; impl Handler for App { type Conn = (); }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::builder().bind("127.0.0.1:0")?.reactors(1).handler(|_| App).build()?;
/// let publisher = server.publisher();
/// let running = server.spawn()?;
/// let seq = publisher.publish("md.BTC-USD", Message::Text(r#"{"bid":64000.5}"#))?;
/// assert_eq!(seq, 1);
/// running.shutdown(std::time::Duration::from_secs(1))?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Publisher {
    handle: ServerHandle,
}

impl Publisher {
    /// Publishes `msg` on `topic`; returns its sequence number. Fails for a
    /// bad topic name or when the server holds its maximum number of topics.
    pub fn publish(&self, topic: &str, msg: Message<'_>) -> Result<u64, StoreError> {
        let name = TopicName::with_max_len(topic, self.store().config().max_topic_len)
            .map_err(StoreError::from)?;
        self.publish_to(&name, &Payload::new(msg))
    }

    /// Publishes an already validated payload (e.g. trusted JSON that skips
    /// the syntax check: [`Payload::json_trusted`]).
    pub fn publish_to(&self, topic: &TopicName, payload: &Payload) -> Result<u64, StoreError> {
        self.handle.publish_payload(topic, payload, None)
    }

    /// The topic store, to read: last values, history, sequence numbers
    /// (publishing goes through [`Publisher::publish`], which delivers too).
    pub fn store(&self) -> &TopicStore {
        &self.handle.shared.store
    }
}
