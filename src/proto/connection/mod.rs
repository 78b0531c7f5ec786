//! The whole WebSocket connection as a state machine, without IO.
//!
//! A [`Connection`] is RFC 6455 (with RFC 7692's compressed messages) for
//! one peer: the opening handshake, frames, fragmented messages, UTF-8, the
//! close handshake, pings, and the handshake, pong, idle and close
//! timeouts. It reads no socket and no clock, and owns no heap memory:
//!
//! - **bytes in**: [`Connection::handle_input`] takes the start of the
//!   caller's input buffer and returns one [`Event`] and how many bytes it
//!   used; a message that arrived whole borrows the input (zero-copy), one
//!   reassembled from fragments borrows the reassembly buffer the caller
//!   lends it;
//! - **bytes out**: whatever the connection must send (a pong, a close echo,
//!   the 101 or an HTTP refusal, a ping) goes to [`Io::transmit`], the
//!   caller's queue; [`Connection::send`] frames the caller's own messages;
//! - **time in**: the caller passes `now` in ticks of its own clock, asks
//!   [`Connection::poll_timeout`] when to call back, and calls
//!   [`Connection::handle_timeout`] then;
//! - **limits in**: every size and duration is a parameter ([`Limits`],
//!   [`Timeouts`]), and what a message may grow into is asked of
//!   [`Io::room`] as it grows.
//!
//! Everything a connection holds between calls is 32 bytes of plain state,
//! so a server keeps one in each connection's slot; buffers, inflaters and
//! limits are lent per call.
//!
//! ```
//! use wsreactor::proto::connection::{Connection, Event, Input, Limits, Upgrade};
//! use wsreactor::proto::mask::apply_mask;
//! use wsreactor::Message;
//!
//! let limits = Limits::default();
//! let mut conn = Connection::server(0);
//! let mut out = Vec::new(); // what the connection sends (a `Vec<u8>` is an `Io`)
//! let mut message = Vec::new(); // lent for messages that arrive in pieces
//!
//! let mut input = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n".to_vec();
//! let len = input.len();
//! let Input::Progress { consumed, event: Some(Event::Request(req)) } =
//!     conn.handle_input(&mut input, &mut message, &limits, 0, &mut out)
//! else {
//!     panic!("a request")
//! };
//! assert_eq!((consumed, req.path()), (len, "/chat"));
//! let key = req.key().to_owned();
//! conn.accept(&Upgrade { key: &key, ..Upgrade::default() }, 0, &mut out)?;
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//!
//! // A masked text frame from the client comes out as a borrowed message.
//! let mut frame = vec![0x81, 0x82, 1, 2, 3, 4, b'h', b'i'];
//! apply_mask(&mut frame[6..], [1, 2, 3, 4], 0);
//! let step = conn.handle_input(&mut frame, &mut message, &limits, 1, &mut out);
//! assert!(matches!(step, Input::Progress { consumed: 8, event: Some(Event::Message(Message::Text("hi"))) }));
//! # Ok::<(), wsreactor::proto::handshake::InvalidHeader>(())
//! ```

mod events;

pub use events::{
    Event, Expiry, Failure, Input, Io, Limits, State, Tick, Timeout, Timeouts, Upgrade, before,
};

use super::close::{MAX_REASON_LEN, encode_close_payload};
use super::deflate::InflateError;
use super::frame::{self, OpCode};
use super::handshake::{self, HandshakeError, InvalidHeader, Response};
use super::mask::apply_mask;
use super::{CloseCode, Decoded, Decoder, DecoderConfig, Message, ProtoError, Role};

/// `Connection::flags`: we pinged and have received nothing since.
const PING_OUT: u8 = 1 << 0;
/// `Connection::flags`: input is ignored (the peer broke the protocol, or
/// was refused).
const DISCARD: u8 = 1 << 1;
/// `Connection::flags`: compressed messages (RSV1) were agreed.
const COMPRESSION: u8 = 1 << 2;
/// `Connection::flags`: the client side (sends masked, receives unmasked).
const CLIENT: u8 = 1 << 3;

/// An empty ping.
const PING: [u8; 2] = [0x89, 0x00];

/// One WebSocket connection's protocol state. See the [module](self) docs.
#[derive(Debug, Clone)]
pub struct Connection {
    decoder: Decoder,
    /// The tick of the last input (proof of life for pings).
    last_read: Tick,
    /// While handshaking, the tick of the start; while open, of the last
    /// data message either way; while closing, of when the close began.
    last_msg: Tick,
    /// The code we closed with.
    close_code: u16,
    state: State,
    /// `PING_OUT`, `DISCARD`, `COMPRESSION`, `CLIENT`.
    flags: u8,
}

impl Connection {
    /// A server's connection, accepted at `now`, waiting for the upgrade request.
    pub fn server(now: Tick) -> Self {
        Connection {
            decoder: Decoder::new(),
            last_read: now,
            last_msg: now,
            close_code: 0,
            state: State::Handshake,
            flags: 0,
        }
    }

    /// A client's connection, whose upgrade request went out at `now`,
    /// waiting for the response ([`Connection::handle_response`]).
    pub fn client(now: Tick) -> Self {
        Connection { flags: CLIENT, ..Connection::server(now) }
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether messages can be sent: the connection is open.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether compressed messages were agreed.
    pub fn compression(&self) -> bool {
        self.flags & COMPRESSION != 0
    }

    /// The code we closed with (0 until we close).
    pub fn close_code(&self) -> CloseCode {
        CloseCode(self.close_code)
    }

    /// Whether we pinged and have heard nothing since.
    pub fn awaiting_pong(&self) -> bool {
        self.flags & PING_OUT != 0
    }

    /// Whether a fragmented message is open: its pieces so far are in the
    /// reassembly buffer, which the caller must lend again as it was.
    pub fn in_message(&self) -> bool {
        self.decoder.in_message()
    }

    fn role(&self) -> Role {
        if self.flags & CLIENT != 0 { Role::Client } else { Role::Server }
    }

    /// An upper bound on the size of the message the next frame in `input`
    /// belongs to (what is assembled of it so far and the frame's payload),
    /// for flow control before reading it; `None` inside a frame's payload.
    /// A control frame or a partial header counts as nothing more.
    #[inline]
    pub fn next_message_len(&self, input: &[u8]) -> Option<u64> {
        if !self.decoder.at_frame_start() {
            return None;
        }
        // The common case, a small frame, from its second byte alone.
        let next = match input.get(1).map(|b| b & 0x7f) {
            Some(len @ 0..=125) => u64::from(len),
            _ => match frame::parse_header(input) {
                Ok(Some(h)) if !h.opcode.is_control() => h.payload_len,
                _ => 0,
            },
        };
        Some(self.decoder.message_len().saturating_add(next))
    }

    /// Handles input from the front of `input`, unmasking frames in place.
    ///
    /// Call it in a loop, dropping `consumed` bytes after each
    /// [`Input::Progress`] and acting on its event, until it returns
    /// [`Input::NeedMore`]; keep what is left and call again when more
    /// arrives. `message` is the reassembly buffer: lend the same one (or
    /// its contents) for as long as [`Connection::in_message`]; a message
    /// handed out from it stays in it until the next call.
    ///
    /// Any input counts as proof of life: it answers an outstanding ping.
    #[inline]
    pub fn handle_input<'a, I: Io>(
        &mut self,
        input: &'a mut [u8],
        message: &'a mut Vec<u8>,
        limits: &Limits,
        now: Tick,
        io: &mut I,
    ) -> Input<'a> {
        if input.is_empty() {
            return Input::NeedMore;
        }
        self.received(now);
        if self.flags & DISCARD != 0 || self.state == State::Closed {
            return Input::Progress { consumed: input.len(), event: None };
        }
        match self.state {
            State::Handshake if self.role() == Role::Server => self.request(input, limits, now, io),
            // A client's input waits for `handle_response`; a request for its answer.
            State::Handshake | State::Deciding => Input::NeedMore,
            State::Open | State::Closing | State::Closed => {
                self.frames(input, message, limits, now, io)
            }
        }
    }

    /// Notes that input arrived at `now`, proof that the peer is alive: it
    /// answers an outstanding ping. [`Connection::handle_input`] does this
    /// itself; call it for input read but not handed over yet.
    #[inline]
    pub fn received(&mut self, now: Tick) {
        self.last_read = now;
        self.flags &= !PING_OUT;
    }

    fn request<'a, I: Io>(
        &mut self,
        input: &'a [u8],
        limits: &Limits,
        now: Tick,
        io: &mut I,
    ) -> Input<'a> {
        match handshake::parse_request(input, limits.max_head_size) {
            Ok(None) => Input::NeedMore,
            Ok(Some((req, consumed))) => {
                self.state = State::Deciding;
                Input::Progress { consumed, event: Some(Event::Request(Box::new(req))) }
            }
            Err(e) => {
                self.refuse(&e, now, io);
                Input::Progress { consumed: input.len(), event: Some(Event::BadHandshake(e)) }
            }
        }
    }

    #[inline]
    fn frames<'a, I: Io>(
        &mut self,
        input: &'a mut [u8],
        message: &'a mut Vec<u8>,
        limits: &Limits,
        now: Tick,
        io: &mut I,
    ) -> Input<'a> {
        let cfg = DecoderConfig {
            role: self.role(),
            max_message_size: limits.max_message_size,
            allow_rsv1: self.compression(),
        };
        let len = input.len();
        let (consumed, event) = match self.decoder.decode(input, &cfg) {
            Ok(Decoded::NeedMore) => return Input::NeedMore,
            Ok(Decoded::Progress { consumed, event }) => (consumed, event),
            Err(e) => {
                *message = Vec::new();
                let event = self.fail(e.close_code(), e.reason(), false, now, io);
                return Input::Progress { consumed: len, event: Some(event) };
            }
        };
        let event = match event {
            None => None,
            Some(super::Event::Text(text)) => self.message(Message::Text(text), now),
            Some(super::Event::Binary(bytes)) => self.message(Message::Binary(bytes), now),
            Some(super::Event::Fragment { data, first, fin, text, compressed }) => {
                let piece = Piece { data, first, fin, text, compressed };
                match self.fragment(&piece, message, limits, io) {
                    Ok(false) => None,
                    Ok(true) => {
                        let whole: &'a Vec<u8> = message;
                        let msg = match text {
                            // Checked as it arrived (`fragment`), to its end.
                            true => std::str::from_utf8(whole)
                                .map_or(Message::Binary(whole), Message::Text),
                            false => Message::Binary(whole),
                        };
                        self.message(msg, now)
                    }
                    Err(failure) => {
                        *message = Vec::new();
                        Some(self.fail(failure.code, failure.reason, failure.over_budget, now, io))
                    }
                }
            }
            Some(super::Event::Ping(payload)) => {
                if self.is_open() {
                    self.control(OpCode::Pong, payload, io);
                }
                Some(Event::Ping(payload))
            }
            Some(super::Event::Pong(payload)) => Some(Event::Pong(payload)),
            Some(super::Event::Close(code, reason)) => self.peer_closed(code, reason, now, io),
        };
        Input::Progress { consumed, event }
    }

    /// A whole message, handed out while the connection is open.
    #[inline]
    fn message<'a>(&mut self, msg: Message<'a>, now: Tick) -> Option<Event<'a>> {
        if !self.is_open() {
            return None;
        }
        self.last_msg = now;
        Some(Event::Message(msg))
    }

    /// Adds a piece to the message in `message`; true once it is whole
    /// (and, if text, valid UTF-8 to its end).
    fn fragment<I: Io>(
        &mut self,
        p: &Piece<'_>,
        message: &mut Vec<u8>,
        limits: &Limits,
        io: &mut I,
    ) -> Result<bool, Failure> {
        if !self.is_open() {
            return Ok(false); // closing: only the framing is checked
        }
        if p.first {
            message.clear();
        }
        let room = io.room();
        if p.compressed {
            let before = message.len();
            // The inflater never lets the buffer's capacity pass its cap.
            let cap = limits.max_message_size.min(room.max(message.capacity()));
            if let Err(e) = io.inflate(p.data, p.fin, cap, message) {
                let over_budget = e == InflateError::TooBig && cap < limits.max_message_size;
                return Err(failure(e.close_code(), e.reason(), over_budget));
            }
            // Invalid UTF-8 fails as soon as it is inflated, not at the end.
            if p.text {
                let utf8 = self.decoder.inflated_text();
                let inflated = message.get(before..).unwrap_or_default();
                if utf8.feed(inflated).is_err() || (p.fin && utf8.finish().is_err()) {
                    let e = ProtoError::InvalidUtf8;
                    return Err(failure(e.close_code(), e.reason(), false));
                }
            }
        } else if reserve_within(message, p.data.len(), room.saturating_sub(message.capacity())) {
            // (The decoder holds the message to its limit, and checks its text.)
            message.extend_from_slice(p.data);
        } else {
            return Err(failure(CloseCode::TOO_BIG, "server memory limit", true));
        }
        Ok(p.fin)
    }

    fn peer_closed<'a, I: Io>(
        &mut self,
        code: CloseCode,
        reason: &'a str,
        now: Tick,
        io: &mut I,
    ) -> Option<Event<'a>> {
        match self.state {
            State::Open => {
                // Echo the code (RFC 6455 §5.5.1); an empty close gets an empty reply.
                let echo = code.0.to_be_bytes();
                let echo = if code == CloseCode::NO_STATUS { &[][..] } else { &echo[..] };
                self.control(OpCode::Close, echo, io);
                self.state = State::Closed;
                self.last_msg = now;
                Some(Event::Close(code, reason))
            }
            State::Closing => {
                // The answer to ours: the close handshake is complete.
                self.state = State::Closed;
                None
            }
            State::Handshake | State::Deciding | State::Closed => None,
        }
    }

    /// Fails the connection: the close frame goes out (if the connection
    /// was open) and further input is ignored.
    fn fail<I: Io>(
        &mut self,
        code: CloseCode,
        reason: &'static str,
        over_budget: bool,
        now: Tick,
        io: &mut I,
    ) -> Event<'static> {
        self.close(code, reason, now, io);
        self.flags |= DISCARD;
        Event::Failed(Failure { code, reason, over_budget })
    }

    /// Drops further input (the caller's own reasons, e.g. memory pressure):
    /// only the close handshake's timeout is left to run.
    pub fn discard_input(&mut self) {
        self.flags |= DISCARD;
    }

    /// Accepts the upgrade request handed out as [`Event::Request`]: the 101
    /// response goes out and the connection is open. Fails, with nothing
    /// sent and the request still waiting for an answer, for a subprotocol,
    /// extension or header that is not a valid header value.
    pub fn accept<I: Io>(
        &mut self,
        up: &Upgrade<'_>,
        now: Tick,
        io: &mut I,
    ) -> Result<(), InvalidHeader> {
        let mut result = Ok(());
        let key = up.key.as_bytes();
        io.transmit(160 + up.key.len(), |v| {
            // On error nothing is written.
            result =
                handshake::write_accept_response(v, key, up.protocol, up.extension, up.headers);
        });
        result?;
        self.state = State::Open;
        if up.extension.is_some() {
            self.flags |= COMPRESSION;
        }
        self.last_msg = now;
        Ok(())
    }

    /// Refuses the upgrade request with an HTTP `status`, a short `reason`
    /// for the body, and more headers (invalid ones make it a plain 500);
    /// the connection closes after it.
    pub fn reject<I: Io>(
        &mut self,
        status: u16,
        reason: &str,
        headers: &[(&str, &str)],
        now: Tick,
        io: &mut I,
    ) {
        io.transmit(160 + reason.len(), |v| {
            if handshake::write_reject_response(v, status, reason, headers).is_err() {
                let _ = handshake::write_reject_response(v, 500, "internal error", &[]);
            }
        });
        self.refused(now);
    }

    /// Refuses the upgrade request for `error` (e.g. a bad extension offer,
    /// found by the caller's negotiation); the connection closes after it.
    pub fn refuse<I: Io>(&mut self, error: &HandshakeError, now: Tick, io: &mut I) {
        io.transmit(160 + error.reason.len(), |v| error.write_response(v));
        self.refused(now);
    }

    fn refused(&mut self, now: Tick) {
        self.state = State::Closing;
        self.flags |= DISCARD;
        self.last_msg = now;
    }

    /// Client: handles the server's response to the upgrade request sent
    /// with `key`. `Ok(None)`: incomplete, call again with more; `Ok(Some)`:
    /// the connection is open (with compression if `compression`, which
    /// the caller decides from the response's extensions) and the bytes
    /// after the response head are frames. An error leaves it closed.
    pub fn handle_response<'a>(
        &mut self,
        input: &'a [u8],
        key: &str,
        limits: &Limits,
        now: Tick,
    ) -> Result<Option<(Response<'a>, usize)>, HandshakeError> {
        if self.state != State::Handshake || self.role() != Role::Client {
            return Ok(None);
        }
        self.last_read = now;
        match handshake::parse_response(input, key, limits.max_head_size) {
            Ok(Some((resp, n))) => {
                self.state = State::Open;
                self.last_msg = now;
                Ok(Some((resp, n)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.state = State::Closed;
                Err(e)
            }
        }
    }

    /// Client: turns compressed messages on, as the server's response agreed.
    pub fn set_compression(&mut self, on: bool) {
        if on { self.flags |= COMPRESSION } else { self.flags &= !COMPRESSION }
    }

    /// Queues a data message as one frame (`compressed`: the payload is the
    /// caller's permessage-deflate of it, RSV1 set). False, with nothing
    /// queued, unless the connection is open.
    #[inline]
    pub fn send<I: Io>(
        &mut self,
        opcode: OpCode,
        compressed: bool,
        payload: &[u8],
        now: Tick,
        io: &mut I,
    ) -> bool {
        if !self.is_open() {
            return false;
        }
        self.put_frame(opcode, compressed, payload, io);
        self.last_msg = now;
        true
    }

    /// Notes that the caller queued a data message of its own (a frame
    /// encoded once for many connections): it counts against the idle
    /// timeout. False unless the connection is open.
    pub fn sent(&mut self, now: Tick) -> bool {
        if !self.is_open() {
            return false;
        }
        self.last_msg = now;
        true
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123
    /// bytes at a character boundary): the close frame goes out and nothing
    /// more can be sent. False if the connection was not open.
    pub fn close<I: Io>(&mut self, code: CloseCode, reason: &str, now: Tick, io: &mut I) -> bool {
        if !self.is_open() {
            return false;
        }
        let mut payload = [0u8; 2 + MAX_REASON_LEN];
        let n = encode_close_payload(code, reason, &mut payload);
        self.control(OpCode::Close, &payload[..n], io);
        self.state = State::Closing;
        self.close_code = code.0;
        self.last_msg = now;
        true
    }

    fn control<I: Io>(&mut self, opcode: OpCode, payload: &[u8], io: &mut I) {
        self.put_frame(opcode, false, payload, io);
    }

    #[inline]
    fn put_frame<I: Io>(&mut self, opcode: OpCode, rsv1: bool, payload: &[u8], io: &mut I) {
        if self.role() == Role::Server {
            let len = frame_len(payload.len());
            io.transmit(len, |v| frame::write_frame(v, true, rsv1, opcode, payload));
            return;
        }
        let key = io.mask_key();
        io.transmit(frame_len(payload.len()) + 4, |v| {
            let mut header = [0u8; frame::MAX_HEADER_LEN];
            let n = frame::encode_header(
                &mut header,
                true,
                rsv1,
                opcode,
                payload.len() as u64,
                Some(key),
            );
            v.extend_from_slice(&header[..n]);
            let start = v.len();
            v.extend_from_slice(payload);
            apply_mask(&mut v[start..], key, 0);
        });
    }

    /// The tick of the next deadline, if any: call
    /// [`Connection::handle_timeout`] then (or later). `output_since` is the
    /// tick of the transport's last write that made progress while output
    /// is waiting (`None` when nothing is): a slow reader still taking a
    /// backlog ahead of our close frame is not cut off by the close timeout.
    pub fn poll_timeout(&self, t: &Timeouts, output_since: Option<Tick>) -> Option<Tick> {
        let mut due: Option<Tick> = None;
        let mut consider = |timeout: Tick, from: Tick| {
            if timeout > 0 {
                let at = from.wrapping_add(timeout);
                due = Some(due.map_or(at, |d| if before(d, at) { d } else { at }));
            }
        };
        match self.state {
            State::Handshake | State::Deciding => consider(t.handshake, self.last_msg),
            State::Open => {
                if self.awaiting_pong() {
                    consider(t.pong, self.last_read.wrapping_add(t.ping));
                } else {
                    consider(t.ping, self.last_read);
                }
                consider(t.idle, self.last_msg);
            }
            State::Closing | State::Closed => consider(t.close, self.closing_since(output_since)),
        }
        due
    }

    /// Where the close timeout counts from: when the close began, or the
    /// last write that made progress if that is later.
    fn closing_since(&self, output_since: Option<Tick>) -> Tick {
        match output_since {
            Some(t) if before(self.last_msg, t) => t,
            _ => self.last_msg,
        }
    }

    /// Acts on whichever deadline has passed at `now` (see
    /// [`Connection::poll_timeout`] for `output_since`).
    pub fn handle_timeout<I: Io>(
        &mut self,
        now: Tick,
        t: &Timeouts,
        output_since: Option<Tick>,
        io: &mut I,
    ) -> Timeout {
        let elapsed = |since: Tick| now.wrapping_sub(since);
        match self.state {
            State::Handshake | State::Deciding
                if t.handshake > 0 && elapsed(self.last_msg) >= t.handshake =>
            {
                Timeout::Expired(Expiry::Handshake)
            }
            State::Closing | State::Closed
                if t.close > 0 && elapsed(self.closing_since(output_since)) >= t.close =>
            {
                Timeout::Expired(Expiry::Close)
            }
            State::Open => {
                if self.awaiting_pong() && elapsed(self.last_read) >= t.ping + t.pong {
                    return Timeout::Expired(Expiry::Pong);
                }
                if t.idle > 0 && elapsed(self.last_msg) >= t.idle {
                    self.close(CloseCode::GOING_AWAY, "idle timeout", now, io);
                    return Timeout::Idle;
                }
                if t.ping > 0 && !self.awaiting_pong() && elapsed(self.last_read) >= t.ping {
                    self.flags |= PING_OUT;
                    if self.role() == Role::Server {
                        io.transmit(PING.len(), |v| v.extend_from_slice(&PING));
                    } else {
                        self.control(OpCode::Ping, &[], io);
                    }
                    return Timeout::Ping;
                }
                Timeout::Nothing
            }
            _ => Timeout::Nothing,
        }
    }
}

/// A piece of a message as the decoder handed it out.
struct Piece<'a> {
    data: &'a [u8],
    first: bool,
    fin: bool,
    text: bool,
    compressed: bool,
}

fn failure(code: CloseCode, reason: &'static str, over_budget: bool) -> Failure {
    Failure { code, reason, over_budget }
}

/// The size of an unmasked frame carrying `payload` bytes.
pub fn frame_len(payload: usize) -> usize {
    payload.saturating_add(match payload {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    })
}

/// Makes room in `v` for `extra` more bytes if what that allocates fits in
/// `room`: doubling as a `Vec` does while it fits, only what is needed when
/// that alone fits; false if not even that does.
pub fn reserve_within(v: &mut Vec<u8>, extra: usize, room: usize) -> bool {
    let need = v.len().saturating_add(extra);
    let cap = v.capacity();
    if need <= cap {
        return true;
    }
    let doubled = need.max(cap.saturating_mul(2));
    if doubled - cap <= room {
        v.reserve_exact(doubled - v.len());
    } else if need - cap <= room {
        v.reserve_exact(extra);
    } else {
        return false;
    }
    true
}

#[cfg(test)]
mod tests;
