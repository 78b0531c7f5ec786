//! The connection's vocabulary: what goes in (the time, limits, timeouts,
//! what the caller lends) and what comes out (events, what a timeout did).

use crate::proto::deflate::InflateError;
use crate::proto::handshake::{HandshakeError, Request};
use crate::proto::{CloseCode, Message};

/// A point in time, in ticks of the caller's clock (a wheel's ticks of
/// 100 ms, say). Tick arithmetic wraps around: keep timeouts below 2^30.
pub type Tick = u32;

/// Whether tick `a` comes before tick `b` (wrap-around safe).
pub fn before(a: Tick, b: Tick) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The connection's timeouts, in ticks (0 turns one off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the connection's start to a complete upgrade request (server)
    /// or response (client).
    pub handshake: Tick,
    /// After this long without receiving anything, ping the peer.
    pub ping: Tick,
    /// How long a pinged peer may stay silent before it is given up on.
    pub pong: Tick,
    /// Close with 1001 ("idle timeout") after this long without a data
    /// message either way.
    pub idle: Tick,
    /// How long the close handshake (or an HTTP refusal) may take.
    pub close: Tick,
}

/// The limits a connection's input is held to, lent per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message (the sum of its frames' payloads, and inflated)
    /// accepted; a larger one fails the connection with 1009.
    pub max_message_size: usize,
    /// The largest upgrade request (or response) head; larger gets 431.
    pub max_head_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_size: 16 << 20, max_head_size: 8 << 10 }
    }
}

/// What the caller lends a connection for one call: where its output goes,
/// what a message may grow into, and an inflater.
pub trait Io {
    /// Queues about `len` bytes that `write` appends to the buffer it is
    /// given: one whole frame or HTTP response.
    fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>));

    /// The most bytes the reassembly buffer may hold now, its present
    /// capacity included (a server's memory budget); a message that needs
    /// more fails the connection with 1009 ("server memory limit").
    fn room(&mut self) -> usize {
        usize::MAX
    }

    /// Inflates one piece of a compressed message (RFC 7692) into `out`,
    /// which may grow to `max` bytes; `fin` on its last piece. Only called
    /// on a connection accepted with compression.
    fn inflate(
        &mut self,
        data: &[u8],
        fin: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let _ = (data, fin, max, out);
        Err(InflateError::Corrupt)
    }

    /// A fresh masking key for a frame a client sends (RFC 6455 §5.3: from
    /// a strong source of entropy). Servers never mask; a client must
    /// override this.
    fn mask_key(&mut self) -> [u8; 4] {
        [0; 4]
    }
}

/// A `Vec<u8>` collects what the connection sends; no compression, no
/// memory limit beyond [`Limits`].
impl Io for Vec<u8> {
    fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.reserve(len);
        write(self);
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the upgrade request (server) or its response (client).
    Handshake,
    /// Server: the request was handed out ([`Event::Request`]); waiting for
    /// [`Connection::accept`](super::Connection::accept) or [`Connection::reject`](super::Connection::reject).
    Deciding,
    /// Messages flow both ways.
    Open,
    /// We sent a close frame, or refused the upgrade with an HTTP error:
    /// the transport sends what is queued, half-closes, and waits for the
    /// peer's close frame or end of stream, up to the close timeout.
    Closing,
    /// The close handshake is complete (the peer's close frame arrived; our
    /// reply, if one was due, is queued): send what is queued, then end.
    Closed,
}

/// Why a connection gave up on its peer (see [`Timeout::Expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete upgrade request (or response) in time.
    Handshake,
    /// No answer to a ping in time: the peer is gone.
    Pong,
    /// The close handshake (or an HTTP refusal) did not finish in time.
    Close,
}

/// What [`Connection::handle_timeout`](super::Connection::handle_timeout) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Nothing was due.
    Nothing,
    /// A ping went out.
    Ping,
    /// The connection was idle too long: a close frame (1001, "idle
    /// timeout") went out and the connection is closing.
    Idle,
    /// The peer is given up on: drop the transport without further ado.
    Expired(Expiry),
}

/// Why the connection failed (see [`Event::Failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The close code sent.
    pub code: CloseCode,
    /// The reason sent with it, for a log line.
    pub reason: &'static str,
    /// The message outgrew what [`Io::room`] allowed (the server's memory
    /// budget), not a limit the peer was told of.
    pub over_budget: bool,
}

/// What one call to [`Connection::handle_input`](super::Connection::handle_input) produced.
#[derive(Debug)]
pub enum Event<'a> {
    /// Server: a complete upgrade request. Answer it with
    /// [`Connection::accept`](super::Connection::accept) or [`Connection::reject`](super::Connection::reject) before handing the
    /// connection more input.
    /// (Boxed: a request holds its headers inline, parsed without
    /// allocating, and this keeps every other event small.)
    Request(Box<Request<'a>>),
    /// The upgrade request (or response) was malformed. A server has queued
    /// the HTTP error (400, 405, 426 or 431) and is closing; input from now
    /// on is ignored.
    BadHandshake(HandshakeError),
    /// A whole message: validated UTF-8 if text, inflated if compressed. It
    /// borrows the input when it arrived as one frame, the reassembly buffer
    /// otherwise.
    Message(Message<'a>),
    /// A ping; the pong is queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer closed with this code and reason; the echo is queued and
    /// the connection is [`State::Closed`].
    Close(CloseCode, &'a str),
    /// The peer broke the protocol or a limit: the close frame is queued,
    /// the connection is closing, and further input is ignored.
    Failed(Failure),
}

/// The result of one call to [`Connection::handle_input`](super::Connection::handle_input).
#[derive(Debug)]
pub enum Input<'a> {
    /// Nothing more can be done with this input: keep it (a partial request
    /// head or frame header, or a request waiting for its answer) and call
    /// again with more.
    NeedMore,
    /// `consumed` bytes were used from the front of the input; `event` is
    /// what they produced, if anything.
    Progress {
        /// Bytes to drop from the front of the input.
        consumed: usize,
        /// What they produced.
        event: Option<Event<'a>>,
    },
}

/// An upgrade accepted: what the 101 response says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrade<'a> {
    /// The request's `Sec-WebSocket-Key` ([`Request::key`]).
    pub key: &'a str,
    /// The subprotocol selected from those the client offered.
    pub protocol: Option<&'a str>,
    /// The `Sec-WebSocket-Extensions` answer: `Some` turns compressed
    /// messages on (the permessage-deflate agreement).
    pub extension: Option<&'a str>,
    /// More response headers.
    pub headers: &'a [(&'a str, &'a str)],
}
