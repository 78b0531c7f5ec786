//! The application layer's view of a connection: [`Handler`] callbacks and
//! the [`Ctx`] they act through. Nothing here touches a socket.

use super::conn::Conn;
pub use super::conn::SendStatus;
use super::door::{ConnId, ServerHandle};
use super::inbox::LocalId;
use super::state::ReactorState;
use crate::message::{Frame, Message};
use crate::proto::CloseCode;
use crate::proto::handshake::Request;
use crate::pubsub::wire::Payload;
use crate::pubsub::{StoreError, TopicName, TopicStore};

/// Application callbacks, one handler value per reactor thread.
///
/// Every callback runs on the reactor that owns the connection, so a handler
/// needs no locks and need not be `Send`. Callbacks must not block: the
/// reactor serves thousands of other connections in between.
///
/// ```
/// use wsreactor::{Ctx, Handler, Message};
///
/// /// Echoes every message and counts them per connection.
/// struct Echo;
///
/// impl Handler for Echo {
///     type Conn = u64; // per-connection data, stored in the connection's slot
///
///     fn on_message(&mut self, cx: &mut Ctx<'_, u64>, msg: Message<'_>) {
///         *cx.data_mut() += 1;
///         cx.send(msg);
///     }
/// }
/// ```
pub trait Handler: 'static {
    /// Per-connection user data, stored inline in the connection's slot.
    type Conn: Default;

    /// Decides on an upgrade request: accept (with per-connection data, a
    /// subprotocol and extra response headers) or reject with an HTTP status.
    /// This is where origin checks and authentication go.
    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<Self::Conn>, Reject> {
        let _ = req;
        Ok(Accept::default())
    }

    /// The connection is open; the 101 response is queued ahead of anything sent here.
    fn on_open(&mut self, cx: &mut Ctx<'_, Self::Conn>) {
        let _ = cx;
    }

    /// A complete message arrived. It borrows the read buffer: zero-copy.
    fn on_message(&mut self, cx: &mut Ctx<'_, Self::Conn>, msg: Message<'_>) {
        let _ = (cx, msg);
    }

    /// The connection's output queue, which had filled up
    /// ([`SendStatus::Backpressured`]), has been written out completely.
    fn on_drain(&mut self, cx: &mut Ctx<'_, Self::Conn>) {
        let _ = cx;
    }

    /// The connection closed; called once. `code` is the peer's close code
    /// when the peer closed first (with its reason), ours when we did (the
    /// reason is then empty), and [`CloseCode::ABNORMAL`] (1006) when the TCP
    /// connection ended without a close handshake. Nothing can be sent now.
    fn on_close(&mut self, cx: &mut Ctx<'_, Self::Conn>, code: CloseCode, reason: &str) {
        let _ = (cx, code, reason);
    }
}

/// A decision to accept an upgrade.
///
/// ```
/// use wsreactor::Accept;
/// let accept = Accept::new(42u32).protocol(Some("chat.v2")).header("X-Server", "wsreactor");
/// # let _ = accept;
/// ```
#[derive(Debug, Default)]
pub struct Accept<C> {
    pub(crate) data: C,
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl<C> Accept<C> {
    /// Accepts with this per-connection data.
    pub fn new(data: C) -> Self {
        Accept { data, protocol: None, headers: Vec::new() }
    }

    /// Selects one of the subprotocols the client offered (`None`: no subprotocol).
    pub fn protocol(mut self, name: Option<&str>) -> Self {
        self.protocol = name.map(str::to_owned);
        self
    }

    /// Adds a header to the 101 response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A decision to refuse an upgrade with an HTTP status.
///
/// ```
/// use wsreactor::Reject;
/// let no = Reject::new(403, "origin not allowed");
/// assert_eq!(no.status(), 403);
/// ```
#[derive(Debug, Clone)]
pub struct Reject {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Reject {
    /// Refuses with `status` (e.g. 401, 403, 404, 429) and a short reason for the body.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Reject { status, reason: reason.into(), headers: Vec::new() }
    }

    /// Adds a header to the response (e.g. `WWW-Authenticate`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// A connection as a callback sees it: its data, and the ways to send and close.
pub struct Ctx<'a, C> {
    pub(crate) conn: &'a mut Conn<C>,
    pub(crate) st: &'a mut ReactorState,
    pub(crate) slot: usize,
}

impl<'a, C> Ctx<'a, C> {
    pub(crate) fn new(conn: &'a mut Conn<C>, st: &'a mut ReactorState, slot: usize) -> Self {
        Ctx { conn, st, slot }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        ConnId {
            reactor: self.st.reactor_id as u32,
            slot: self.slot as u32,
            generation: self.conn.generation,
        }
    }

    /// The per-connection data.
    pub fn data(&self) -> &C {
        &self.conn.data
    }

    /// The per-connection data, mutably.
    pub fn data_mut(&mut self) -> &mut C {
        &mut self.conn.data
    }

    /// Queues a message for this connection. It is written at the end of the
    /// reactor's loop turn, batched with everything else queued in the turn.
    pub fn send(&mut self, msg: Message<'_>) -> SendStatus {
        self.conn.send_message(self.st, self.slot, msg)
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) -> SendStatus {
        self.send(Message::Binary(bytes))
    }

    /// Queues a frame encoded once elsewhere (shared, not copied).
    pub fn send_frame(&mut self, frame: &Frame) -> SendStatus {
        self.conn.send_shared(self.st, self.slot, frame)
    }

    /// Sends `msg` to every open connection on every reactor, this one
    /// included. It is encoded once; every queue shares the bytes.
    pub fn broadcast(&mut self, msg: Message<'_>) {
        self.st.broadcast_local(Frame::new(msg), None);
    }

    /// Sends `msg` to every open connection on every reactor but this one,
    /// as a chat room relays what one member says to the others. Encoded
    /// once, like [`Ctx::broadcast`].
    ///
    /// ```
    /// use wsreactor::{Ctx, Handler, Message};
    ///
    /// /// Everything a client says goes to everyone else.
    /// struct Room;
    ///
    /// impl Handler for Room {
    ///     type Conn = ();
    ///
    ///     fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
    ///         cx.broadcast_others(msg);
    ///     }
    /// }
    /// ```
    pub fn broadcast_others(&mut self, msg: Message<'_>) {
        let me = LocalId { slot: self.slot, generation: self.conn.generation };
        self.st.broadcast_local(Frame::new(msg), Some(me));
    }

    /// Subscribes this connection to `topic` from the next publish on: every
    /// message published on it after this call is queued here (the frame
    /// shared with every other subscriber), and none from before, not even
    /// one still on its way to this reactor. `Ok(false)` if it already was
    /// subscribed; fails like [`Ctx::subscribe_after`].
    ///
    /// To send the topic's last value (or what a client missed) as well, use
    /// [`Ctx::subscribe_after`] with the seq of what you send.
    pub fn subscribe(&mut self, topic: &TopicName) -> Result<bool, StoreError> {
        let after = self.topics().latest_seq(topic.as_str());
        self.subscribe_after(topic, after)
    }

    /// Subscribes this connection to the publishes on `topic` numbered after
    /// `seq`, typically the seq of the last value or history replay that
    /// this callback sends, read from [`Ctx::topics`] just before. Publishes
    /// up to `seq` that are still on their way to this reactor are not
    /// delivered here, so the client gets every seq once and in order:
    /// nothing older after its snapshot, and no gap. `Ok(false)` if it
    /// already was subscribed.
    ///
    /// A topic costs the server memory only while somebody holds it or the
    /// store keeps its last value. Topics on which nothing was ever published
    /// count against a server-wide cap ([`StoreConfig::max_topics`](crate::pubsub::StoreConfig::max_topics)): at the cap,
    /// subscribing to one more such name fails with
    /// [`StoreError::TooManyTopics`]. Subscribing to a published topic never
    /// fails, so clients subscribing to made-up names cannot lock others out.
    ///
    /// ```
    /// use wsreactor::pubsub::TopicName;
    /// use wsreactor::{Ctx, Handler};
    ///
    /// /// Every client watches one topic: its last value, then each publish.
    /// struct Watch(TopicName);
    ///
    /// impl Handler for Watch {
    ///     type Conn = ();
    ///
    ///     fn on_open(&mut self, cx: &mut Ctx<'_, ()>) {
    ///         let last = cx.topics().snapshot(self.0.as_str());
    ///         let seq = last.as_ref().map_or(0, |(seq, _)| *seq);
    ///         let _ = cx.subscribe_after(&self.0, seq);
    ///         if let Some((_, frame)) = last {
    ///             let _ = cx.send_frame(&frame);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn subscribe_after(&mut self, topic: &TopicName, seq: u64) -> Result<bool, StoreError> {
        self.conn
            .subscribe(self.st, self.slot, topic, seq)
            .map_err(|e| StoreError::TooManyTopics { max: e.max })
    }

    /// Unsubscribes from `topic`; false if not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.st.topics.unsubscribe(self.slot, topic)
    }

    /// Whether this connection is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.st.topics.is_subscribed(self.slot, topic)
    }

    /// How many topics this connection is subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.st.topics.count(self.slot)
    }

    /// Publishes on `topic` to its subscribers on every reactor (see
    /// [`crate::Publisher::publish`]); returns the sequence number.
    pub fn publish(&mut self, topic: &TopicName, payload: &Payload) -> Result<u64, StoreError> {
        self.st.posted_to_self = true;
        self.conn.mark_publisher();
        self.st.handle.publish_payload(topic, payload, Some(self.st.reactor_id))
    }

    /// The topic store, to read: last values, history and sequence numbers
    /// (publishing goes through [`Ctx::publish`], which delivers too).
    pub fn topics(&self) -> &TopicStore {
        &self.st.handle.shared.store
    }

    /// Sets the largest message this connection may send from now on, below
    /// the server's [`max_message_size`](crate::Builder::max_message_size):
    /// `bytes` rounded up to a whole KiB (at least 1 KiB; a limit at or above
    /// the server's, or above 64 MiB, means the server's). Like the server's,
    /// it is enforced at each frame header, before the payload arrives: a
    /// message that would pass it closes the connection with 1009, and a
    /// client can never make the server hold more than this for a message in
    /// progress. Call it in [`Handler::on_open`] and again when the
    /// connection's role changes (e.g. once it has authenticated as a
    /// publisher).
    ///
    /// ```
    /// use wsreactor::{Ctx, Handler, Message};
    ///
    /// /// Clients send short commands; the one that sends `upload` may send 1 MiB.
    /// struct Commands;
    ///
    /// impl Handler for Commands {
    ///     type Conn = ();
    ///
    ///     fn on_open(&mut self, cx: &mut Ctx<'_, ()>) {
    ///         cx.set_max_message_size(4 << 10);
    ///         assert_eq!(cx.max_message_size(), 4 << 10);
    ///     }
    ///
    ///     fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
    ///         if msg.as_bytes() == b"upload" {
    ///             cx.set_max_message_size(1 << 20);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.conn.set_max_message_size(self.st, bytes);
    }

    /// The largest message this connection may send now (see
    /// [`Ctx::set_max_message_size`]).
    pub fn max_message_size(&self) -> usize {
        self.conn.max_message_size(self.st)
    }

    /// Bytes queued for this connection and not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.conn.queued()
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes).
    /// Messages already queued go out first; nothing more can be sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.conn.begin_close(self.st, self.slot, code, reason);
    }

    /// Whether the connection is open for sending.
    pub fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    /// The index of the reactor running this callback.
    pub fn reactor_id(&self) -> usize {
        self.st.reactor_id
    }

    /// A handle to the whole server (broadcast, shutdown, counts).
    pub fn server(&self) -> &ServerHandle {
        &self.st.handle
    }
}
