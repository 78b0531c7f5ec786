//! A connection's slot in the reactor's slab.
//!
//! An idle open connection is this struct and nothing else: the socket, a
//! few bytes of state, the frame decoder, and the user's data. Buffers
//! ([`Bufs`]) are borrowed from the reactor's pool only while there is
//! partial input or pending output, and go back as soon as both are gone.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use socket2::SockRef;

use super::Env;
use super::buf::{Pooled, recycle};
use super::outq::OutQueue;
use super::topics::TooManyTopics;
use crate::config::SlowConsumer;
use crate::message::{Frame, Message};
use crate::proto::close::encode_close_payload;
use crate::proto::frame::{self, OpCode};
use crate::proto::utf8::Utf8Validator;
use crate::proto::{CloseCode, Decoder};
use crate::pubsub::TopicName;

/// Writes to a connection's socket with the socket calls `send` and
/// `sendmsg` (both with `MSG_NOSIGNAL`), not `write`/`writev`, which go
/// through the file layer and take its position lock on every call.
pub(crate) struct SocketWriter<'a>(pub(crate) &'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // std's `TcpStream::write` is `send(fd, buf, MSG_NOSIGNAL)`.
        let mut stream = self.0;
        stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(self.0).send_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// Open: messages flow both ways.
    Open,
    /// We sent a close frame (or an HTTP error): flush, half-close, and wait
    /// for the peer's close frame or EOF, up to the close timeout.
    Closing,
    /// The peer closed first and our reply is queued: flush, then close TCP.
    Draining,
}

/// `on_open` ran and the connection counts toward `max_connections`.
pub(crate) const OPENED: u16 = 1;
/// `on_close` ran.
pub(crate) const NOTIFIED: u16 = 1 << 1;
/// Not reading: the output queue is at its cap, or the memory budget has
/// no room for the reply (or the publish) the next message may bring.
pub(crate) const READ_PAUSED: u16 = 1 << 2;
/// The socket did not take all queued output; waiting for writability.
pub(crate) const WRITE_BLOCKED: u16 = 1 << 3;
/// In the reactor's list of connections to read again without an event.
pub(crate) const AGAIN: u16 = 1 << 4;
/// In the reactor's list of connections to flush this turn.
pub(crate) const DIRTY: u16 = 1 << 5;
/// Our side of the TCP connection is shut down (FIN sent).
pub(crate) const SHUT_WR: u16 = 1 << 6;
/// Input is ignored: the peer broke the protocol and is being dropped.
pub(crate) const DISCARD: u16 = 1 << 7;
/// The carry holds input set aside while reading was paused: process it
/// even if the socket has nothing new.
pub(crate) const PENDING_INPUT: u16 = 1 << 8;
/// We pinged the connection and have received nothing since.
pub(crate) const PING_OUT: u16 = 1 << 9;
/// permessage-deflate was negotiated (its state is in the reactor's `Deflate`).
pub(crate) const DEFLATE: u16 = 1 << 10;
/// The connection subscribed to topics (its sets are in the reactor's `Topics`).
pub(crate) const TOPICS: u16 = 1 << 11;
/// The connection has published: what it sends may wait in the reactors'
/// inboxes, so it reads only while the memory budget has room for that.
pub(crate) const PUBLISHER: u16 = 1 << 12;
/// In the reactor's list of connections paused for the memory budget.
pub(crate) const STARVED: u16 = 1 << 13;

/// `timer_due` when the connection has no entry in the timer wheel.
pub(crate) const NO_TIMER: u32 = u32::MAX;

/// Whether tick `a` comes before tick `b` (wrap-around safe).
pub(crate) fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The timeouts in ticks of the reactor's wheel (0: off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ticks {
    pub(crate) handshake: u32,
    pub(crate) ping: u32,
    pub(crate) pong: u32,
    pub(crate) idle: u32,
    pub(crate) close: u32,
    pub(crate) write_stall: u32,
}

/// Buffers a connection holds only while it needs them.
#[derive(Default)]
pub(crate) struct Bufs {
    /// Input not consumed yet: a partial request head, frame header or
    /// control frame, or input set aside while reading is paused.
    pub(crate) carry: Vec<u8>,
    /// A message being reassembled from fragments or from several reads.
    pub(crate) message: Vec<u8>,
    /// UTF-8 checked so far of a compressed text `message`, as it is inflated
    /// (the decoder checks uncompressed text itself).
    pub(crate) utf8: Utf8Validator,
    /// Output waiting for the socket.
    pub(crate) out: OutQueue,
    /// The tick of the last write that made progress (for the write-stall timeout).
    pub(crate) last_progress: u32,
    /// What the reactor's memory count holds for these buffers.
    pub(crate) accounted: usize,
}

impl Bufs {
    fn is_idle(&self) -> bool {
        self.carry.is_empty() && self.message.is_empty() && self.out.is_empty()
    }

    /// What the memory budget counts for these buffers: partial input,
    /// reassembly, queued output, and the buffers' own box.
    pub(crate) fn holding(&self) -> usize {
        std::mem::size_of::<Bufs>()
            + self.carry.capacity()
            + self.message.capacity()
            + self.out.heap_bytes()
    }
}

impl Pooled for Box<Bufs> {
    fn weight(&self) -> usize {
        std::mem::size_of::<Bufs>()
            + self.carry.capacity()
            + self.message.capacity()
            + self.out.capacity_bytes()
    }

    fn lighten(&mut self) {
        let last_progress = self.last_progress;
        **self = Bufs { last_progress, ..Bufs::default() };
    }
}

/// Frees a buffer that grew past what is worth keeping in a pool.
fn trim(v: &mut Vec<u8>) {
    if !recycle(v) {
        *v = Vec::new();
    }
}

/// What happened to a message handed to [`Ctx::send`](crate::Ctx::send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a Dropped message was not sent"]
pub enum SendStatus {
    /// Queued; the connection is keeping up.
    Queued,
    /// Queued, but the peer is not reading fast enough: output from earlier
    /// turns is still waiting. Slow down until [`Handler::on_drain`](super::handler::Handler::on_drain).
    Backpressured,
    /// Not queued: the connection is closing, or the message would take its
    /// queue past `max_backpressure`.
    Dropped,
}

/// One connection.
pub(crate) struct Conn<C> {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    pub(crate) state: State,
    pub(crate) flags: u16,
    /// The code we closed with (reported by `on_close`).
    pub(crate) close_code: u16,
    /// The largest message this connection may send, in KiB, when its
    /// handler set one below the server's (0: the server's).
    pub(crate) max_message_kib: u16,
    /// The tick at which this connection's timer wheel entry is due.
    pub(crate) timer_due: u32,
    /// The tick of the last bytes received (proof of life for pings).
    pub(crate) last_read: u32,
    /// While handshaking, the tick of the accept; while open, of the last
    /// data message either way; while closing, of when the close began.
    pub(crate) last_msg: u32,
    pub(crate) decoder: Decoder,
    pub(crate) bufs: Option<Box<Bufs>>,
    pub(crate) data: C,
}

impl<C: Default> Conn<C> {
    pub(crate) fn new(stream: TcpStream, generation: u32, tick: u32) -> Self {
        Conn {
            stream,
            generation,
            state: State::Handshake,
            flags: 0,
            close_code: 0,
            max_message_kib: 0,
            timer_due: NO_TIMER,
            last_read: tick,
            last_msg: tick,
            decoder: Decoder::new(),
            bufs: None,
            data: C::default(),
        }
    }
}

impl<C> Conn<C> {
    pub(crate) fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The tick of this connection's next deadline, if any.
    pub(crate) fn next_deadline(&self, t: &Ticks) -> Option<u32> {
        let mut due: Option<u32> = None;
        let mut consider = |timeout: u32, from: u32| {
            if timeout > 0 {
                let at = from.wrapping_add(timeout);
                due = Some(due.map_or(at, |d| if before(d, at) { d } else { at }));
            }
        };
        match self.state {
            State::Handshake => consider(t.handshake, self.last_msg),
            State::Open => {
                if self.has(PING_OUT) {
                    consider(t.pong, self.last_read.wrapping_add(t.ping));
                } else {
                    consider(t.ping, self.last_read);
                }
                consider(t.idle, self.last_msg);
                if self.has(WRITE_BLOCKED) {
                    if let Some(b) = &self.bufs {
                        consider(t.write_stall, b.last_progress);
                    }
                }
            }
            State::Closing | State::Draining => consider(t.close, self.closing_since()),
        }
        due
    }

    /// Where the close timeout counts from: when the close began, or the
    /// last write that made progress if that is later. A slow reader still
    /// draining a backlog ahead of our close frame is not cut off (a
    /// backlog that does not move is the write-stall timeout's business).
    pub(crate) fn closing_since(&self) -> u32 {
        match &self.bufs {
            Some(b) if !b.out.is_empty() && before(self.last_msg, b.last_progress) => {
                b.last_progress
            }
            _ => self.last_msg,
        }
    }

    /// The largest message this connection may send now.
    pub(crate) fn max_message_size(&self, env: &Env) -> usize {
        match self.max_message_kib {
            0 => env.cfg.max_message_size,
            kib => env.cfg.max_message_size.min(usize::from(kib) << 10),
        }
    }

    /// Sets the largest message this connection may send: `bytes` rounded up
    /// to a whole KiB (at least 1 KiB), never above the server's limit.
    pub(crate) fn set_max_message_size(&mut self, env: &Env, bytes: usize) {
        let kib = bytes.div_ceil(1 << 10).max(1);
        self.max_message_kib = match u16::try_from(kib) {
            Ok(kib) if usize::from(kib) << 10 < env.cfg.max_message_size => kib,
            _ => 0,
        };
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.out.queued())
    }

    /// The connection's buffers, borrowed from the pool if it has none.
    pub(crate) fn bufs_mut(&mut self, env: &mut Env) -> &mut Bufs {
        self.bufs.get_or_insert_with(|| env.bufs.take_or(Box::default))
    }

    /// Brings the reactor's memory count up to date with what the buffers
    /// hold now.
    pub(crate) fn account(&mut self, env: &mut Env) {
        if let Some(b) = self.bufs.as_mut() {
            let now = b.holding();
            env.held = env.held - b.accounted + now;
            b.accounted = now;
        }
    }

    /// Gives the buffers back to the pool once nothing is pending.
    pub(crate) fn release_if_idle(&mut self, env: &mut Env) {
        if self.bufs.as_ref().is_some_and(|b| b.is_idle()) {
            if let Some(mut b) = self.bufs.take() {
                env.held -= std::mem::take(&mut b.accounted);
                trim(&mut b.carry);
                trim(&mut b.message);
                env.bufs.give(b);
            }
        }
    }

    /// Drops all buffers (the connection is going away).
    pub(crate) fn release_all(&mut self, env: &mut Env) {
        if let Some(mut b) = self.bufs.take() {
            env.held -= std::mem::take(&mut b.accounted);
            b.out.clear(&mut env.chunks);
            trim(&mut b.carry);
            trim(&mut b.message);
            env.bufs.give(b);
        }
    }

    /// Marks the connection as one that publishes (see [`PUBLISHER`]).
    pub(crate) fn mark_publisher(&mut self) {
        self.flags |= PUBLISHER;
    }

    /// Whether a frame of `len` bytes fits under the backpressure cap. An
    /// empty queue takes any frame, so no message size is unsendable.
    /// (Replies to input were admitted to the memory budget before the input
    /// was read; what else grows a queue is held to the cap and shed.)
    fn admits(&self, env: &Env, len: usize) -> bool {
        let queued = self.queued();
        queued == 0 || queued + len <= env.cfg.max_backpressure
    }

    /// Whether a delivery of `len` bytes fits under the backpressure cap and
    /// in what the memory budget has left; if not, the topic's slow-consumer
    /// policy applies. A queue under a sixteenth of its cap needs no room,
    /// so a subscriber that keeps up never loses a frame to the budget.
    fn admits_delivery(&mut self, env: &mut Env, len: usize) -> bool {
        if !self.admits(env, len) {
            return false;
        }
        if self.queued() < env.cfg.max_backpressure / 16 {
            // A few frames behind, as one that keeps up may be.
            return true;
        }
        self.account(env);
        len <= env.memory_room()
    }

    fn status(&self) -> SendStatus {
        if self.has(WRITE_BLOCKED) { SendStatus::Backpressured } else { SendStatus::Queued }
    }

    /// Queues a message, compressed if the connection agreed to it. The cap
    /// is checked against the uncompressed size, before compressing: a
    /// message compressed with context takeover must not then be dropped.
    pub(crate) fn send_message(
        &mut self,
        env: &mut Env,
        slot: usize,
        msg: Message<'_>,
    ) -> SendStatus {
        let payload = msg.as_bytes();
        let len = frame_len(payload.len());
        if !self.is_open() || !self.admits(env, len) {
            return env.dropped();
        }
        let Env { deflate, bufs, chunks, .. } = env;
        let compressed = if self.has(DEFLATE) { deflate.compress(slot, msg) } else { None };
        let (rsv1, payload) = match compressed {
            Some(z) => (true, z),
            None => (false, payload),
        };
        let b = self.bufs.get_or_insert_with(|| bufs.take_or(Box::default));
        b.out.push_owned(chunks, frame_len(payload.len()), |v| {
            frame::write_frame(v, true, rsv1, msg.opcode(), payload)
        });
        self.last_msg = env.tick;
        self.status()
    }

    /// Queues a frame encoded once for many connections; in `shared`
    /// compression mode its compressed form, also made once.
    pub(crate) fn send_shared(&mut self, env: &mut Env, slot: usize, frame: &Frame) -> SendStatus {
        if !self.is_open() || !self.admits(env, frame.len()) {
            return env.dropped();
        }
        let bytes = if self.has(DEFLATE) {
            if env.deflate.dedicated() {
                return self.send_message(env, slot, frame.message());
            }
            env.deflate.shared(slot, frame).unwrap_or_else(|| Arc::clone(frame.plain()))
        } else {
            Arc::clone(frame.plain())
        };
        self.bufs_mut(env).out.push_shared(bytes);
        self.last_msg = env.tick;
        self.status()
    }

    /// Adds the connection to `topic`'s subscribers on this reactor, for
    /// the publishes after seq `after`; `Ok(false)` if it already was one.
    pub(crate) fn subscribe(
        &mut self,
        env: &mut Env,
        slot: usize,
        topic: &TopicName,
        after: u64,
    ) -> Result<bool, TooManyTopics> {
        let shared = &env.handle.shared;
        let published = |t: &str| match shared.store.contains(t) {
            true => Some(true),
            // A new name costs memory that no connection's buffers show.
            false => (!shared.budget.nearly_spent()).then_some(false),
        };
        let added = env.topics.subscribe(slot, self.generation, topic, after, published)?;
        self.flags |= TOPICS;
        Ok(added)
    }

    /// Queues a topic's frame, tagged (`tag`: the topic's on this reactor) for
    /// conflation. `Dropped` when the queue is full and conflation (if that
    /// is the topic's `policy`) found nothing to replace: the caller applies
    /// the rest of the policy.
    pub(crate) fn send_topic(
        &mut self,
        env: &mut Env,
        slot: usize,
        frame: &Frame,
        tag: u32,
        policy: SlowConsumer,
    ) -> SendStatus {
        if !self.is_open() {
            return env.dropped();
        }
        if self.has(DEFLATE) && env.deflate.dedicated() {
            return self.send_message(env, slot, frame.message());
        }
        let bytes = match self.has(DEFLATE) {
            true => env.deflate.shared(slot, frame).unwrap_or_else(|| Arc::clone(frame.plain())),
            false => Arc::clone(frame.plain()),
        };
        if self.admits_delivery(env, bytes.len()) {
            self.bufs_mut(env).out.push_tagged(bytes, tag, policy);
            self.last_msg = env.tick;
            return self.status();
        }
        let cap = env.cfg.max_backpressure;
        if policy == SlowConsumer::Conflate {
            if let Some(b) = self.bufs.as_mut() {
                if b.out.conflate(tag, bytes, cap) {
                    return SendStatus::Backpressured;
                }
            }
        }
        env.dropped()
    }

    /// Queues a control frame (pong, close); these bypass the cap.
    pub(crate) fn send_control(&mut self, env: &mut Env, opcode: OpCode, payload: &[u8]) {
        self.push_frame(env, opcode, payload, frame_len(payload.len()));
    }

    fn push_frame(&mut self, env: &mut Env, opcode: OpCode, payload: &[u8], len: usize) {
        let Env { bufs, chunks, .. } = env;
        let b = self.bufs.get_or_insert_with(|| bufs.take_or(Box::default));
        b.out.push_owned(chunks, len, |v| frame::write_frame(v, true, false, opcode, payload));
    }

    /// Queues raw bytes (an HTTP response).
    pub(crate) fn send_raw(&mut self, env: &mut Env, bytes: &[u8]) {
        let Env { bufs, chunks, .. } = env;
        let b = self.bufs.get_or_insert_with(|| bufs.take_or(Box::default));
        b.out.push_owned(chunks, bytes.len(), |v| v.extend_from_slice(bytes));
    }

    /// Starts a server-initiated close: queue the close frame, stop
    /// accepting sends, and arm the close timeout.
    pub(crate) fn begin_close(
        &mut self,
        env: &mut Env,
        slot: usize,
        code: CloseCode,
        reason: &str,
    ) {
        if self.state != State::Open {
            return;
        }
        let mut payload = [0u8; 125];
        let n = encode_close_payload(code, reason, &mut payload);
        self.send_control(env, OpCode::Close, &payload[..n]);
        self.state = State::Closing;
        self.close_code = code.0;
        self.last_msg = env.tick;
        env.schedule(slot, self);
    }
}

/// The size of an unmasked frame carrying `payload` bytes.
pub(crate) fn frame_len(payload: usize) -> usize {
    payload.saturating_add(match payload {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_slot_is_small() {
        // Socket, generation, state, flags, close code, decoder, one pointer.
        // (mio adds a selector id to each socket in debug builds.)
        let size = std::mem::size_of::<Conn<()>>();
        let limit = if cfg!(debug_assertions) { 72 } else { 64 };
        println!("size_of::<Conn<()>>() = {size}");
        assert!(size <= limit, "Conn<()> grew to {size} bytes");
    }

    #[test]
    fn tick_order_survives_wrap_around() {
        assert!(before(1, 2));
        assert!(!before(2, 1));
        assert!(!before(5, 5));
        assert!(before(u32::MAX - 1, 3));
        assert!(!before(3, u32::MAX - 1));
    }

    #[test]
    fn frame_len_matches_header_sizes() {
        assert_eq!(frame_len(0), 2);
        assert_eq!(frame_len(125), 127);
        assert_eq!(frame_len(126), 130);
        assert_eq!(frame_len(65535), 65539);
        assert_eq!(frame_len(65536), 65546);
    }
}
