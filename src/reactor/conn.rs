//! A connection's slot in the reactor's slab.
//!
//! An idle open connection is this struct and nothing else: the socket, the
//! protocol state ([`Connection`], 32 bytes), a few bytes of the reactor's
//! own, and the user's data. Buffers ([`Bufs`]) are borrowed from the
//! reactor's pool only while there is partial input or pending output, and
//! go back as soon as both are gone.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use socket2::SockRef;

use super::buf::Pool;
use super::bufs::{Bufs, account, trim};
use super::state::ReactorState;
use super::topics::TooManyTopics;
use crate::config::SlowConsumer;
use crate::message::{Frame, Message};
use crate::proto::CloseCode;
use crate::proto::connection::{Connection, Io, Tick, before, frame_len};
use crate::proto::deflate::InflateError;
use crate::pubsub::TopicName;
use crate::stats::Counter;

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

/// What the reactor notes about a connection, besides its protocol state:
/// one bit each in [`Flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Flag {
    /// `on_open` ran, and the connection counts toward `max_connections`.
    Opened = 1 << 0,
    /// `on_close` ran.
    Notified = 1 << 1,
    /// Not reading: the output queue is at its cap, or the memory budget has
    /// no room for the reply (or the publish) the next message may bring.
    ReadPaused = 1 << 2,
    /// The socket did not take all queued output; waiting for writability.
    WriteBlocked = 1 << 3,
    /// In the reactor's list of connections to read again without an event.
    ReadAgain = 1 << 4,
    /// In the reactor's list of connections to flush this turn.
    Dirty = 1 << 5,
    /// Our side of the TCP connection is shut down (FIN sent).
    ShutWrite = 1 << 6,
    /// The carry holds input set aside while reading was paused: process it
    /// even if the socket has nothing new.
    PendingInput = 1 << 7,
    /// The connection subscribed to topics (its sets are in the reactor's `Topics`).
    Subscriber = 1 << 8,
    /// The connection has published: what it sends may wait in the reactors'
    /// inboxes, so it reads only while the memory budget has room for that.
    Publisher = 1 << 9,
    /// In the reactor's list of connections paused for the memory budget.
    Starved = 1 << 10,
}

/// A set of [`Flag`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u16);

impl Flags {
    pub(crate) fn has(self, flag: Flag) -> bool {
        self.0 & flag as u16 != 0
    }

    pub(crate) fn set(&mut self, flag: Flag) {
        self.0 |= flag as u16;
    }

    pub(crate) fn clear(&mut self, flag: Flag) {
        self.0 &= !(flag as u16);
    }

    /// Sets `flag`; false if it was set already.
    pub(crate) fn insert(&mut self, flag: Flag) -> bool {
        let new = !self.has(flag);
        self.set(flag);
        new
    }
}

/// `timer_due` when the connection has no entry in the timer wheel.
pub(crate) const NO_TIMER: u32 = u32::MAX;

/// What happened to a message handed to [`Ctx::send`](crate::Ctx::send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a Dropped message was not sent"]
pub enum SendStatus {
    /// Queued; the connection is keeping up.
    Queued,
    /// Queued, but the peer is not reading fast enough: output from earlier
    /// turns is still waiting. Slow down until
    /// [`Handler::on_drain`](crate::Handler::on_drain).
    Backpressured,
    /// Not queued: the connection is closing, or the message would take its
    /// queue past `max_backpressure`.
    Dropped,
}

/// Counts a refused send.
pub(crate) fn dropped(st: &ReactorState) -> SendStatus {
    st.counters.inc(Counter::SendsDropped);
    SendStatus::Dropped
}

/// The output queue lent to a connection's protocol state: its buffers,
/// borrowed from the pool on first use.
pub(crate) struct Queue<'a> {
    pub(crate) bufs: &'a mut Option<Box<Bufs>>,
    pub(crate) pool: &'a mut Pool<Box<Bufs>>,
    pub(crate) chunks: &'a mut Pool<Vec<u8>>,
}

impl Io for Queue<'_> {
    #[inline]
    fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let b = self.bufs.get_or_insert_with(|| self.pool.take_or(Box::default));
        b.out.push_owned(self.chunks, len, write);
    }
}

/// Everything lent to a connection's protocol state while it handles
/// input: the output queue, the memory budget's room, the reactor's
/// inflaters.
pub(crate) struct Lent<'a> {
    pub(crate) bufs: &'a mut Option<Box<Bufs>>,
    pub(crate) st: &'a mut ReactorState,
    pub(crate) slot: usize,
}

impl Io for Lent<'_> {
    #[inline]
    fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let st = &mut *self.st;
        Queue { bufs: self.bufs, pool: &mut st.bufs, chunks: &mut st.chunks }.transmit(len, write);
    }

    fn room(&mut self) -> usize {
        // The reassembly buffer is out of `bufs` while it is lent, so what
        // is left is what it may hold in all.
        account(self.bufs, &mut self.st.held);
        self.st.memory_room()
    }

    fn inflate(
        &mut self,
        data: &[u8],
        fin: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        self.st.deflate.inflate(self.slot, data, fin, max, out)
    }
}

/// Output lent to a connection's protocol state from a timer: written to
/// the socket at once when nothing else is queued, so that a burst of pings
/// to many idle connections allocates nothing; what the socket does not
/// take is queued.
pub(crate) struct Direct<'a> {
    pub(crate) stream: &'a TcpStream,
    pub(crate) queue: Queue<'a>,
    pub(crate) scratch: &'a mut Vec<u8>,
    /// The socket failed: the connection must go.
    pub(crate) failed: bool,
    /// Something was left queued: flush it.
    pub(crate) queued: bool,
}

impl Io for Direct<'_> {
    fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if self.queue.bufs.as_ref().is_some_and(|b| !b.out.is_empty()) {
            self.queued = true;
            return self.queue.transmit(len, write);
        }
        self.scratch.clear();
        write(self.scratch);
        let mut stream = self.stream;
        let written = match stream.write(self.scratch) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                log::debug!("write: {e}");
                self.failed = true;
                return;
            }
        };
        if let Some(rest) = self.scratch.get(written..).filter(|r| !r.is_empty()) {
            self.queued = true;
            self.queue.transmit(rest.len(), |v| v.extend_from_slice(rest));
        }
    }
}

/// One connection.
pub(crate) struct Conn<C> {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    /// The tick at which this connection's timer wheel entry is due.
    pub(crate) timer_due: Tick,
    pub(crate) flags: Flags,
    /// The largest message this connection may send, in KiB, when its
    /// handler set one below the server's (0: the server's).
    pub(crate) max_message_kib: u16,
    /// The protocol state: RFC 6455 without the IO.
    pub(crate) proto: Connection,
    pub(crate) bufs: Option<Box<Bufs>>,
    pub(crate) data: C,
}

impl<C: Default> Conn<C> {
    pub(crate) fn new(stream: TcpStream, generation: u32, tick: Tick) -> Self {
        Conn {
            stream,
            generation,
            timer_due: NO_TIMER,
            flags: Flags::default(),
            max_message_kib: 0,
            proto: Connection::server(tick),
            bufs: None,
            data: C::default(),
        }
    }
}

impl<C> Conn<C> {
    pub(crate) fn is(&self, flag: Flag) -> bool {
        self.flags.has(flag)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.proto.is_open()
    }

    /// The peer's address, for log lines.
    pub(crate) fn peer(&self) -> String {
        self.stream.peer_addr().map_or_else(|_| "unknown peer".into(), |a| a.to_string())
    }

    /// The tick of the last write that made progress while output waits.
    fn output_since(&self) -> Option<Tick> {
        self.bufs.as_ref().filter(|b| !b.out.is_empty()).map(|b| b.last_progress)
    }

    /// The tick of this connection's next deadline, if any: the protocol's,
    /// or the write-stall timeout's.
    pub(crate) fn next_deadline(&self, st: &ReactorState) -> Option<Tick> {
        let due = self.proto.poll_timeout(&st.timeouts, self.output_since());
        let stall = match &self.bufs {
            Some(b) if st.write_stall > 0 && self.is_open() && self.is(Flag::WriteBlocked) => {
                Some(b.last_progress.wrapping_add(st.write_stall))
            }
            _ => None,
        };
        match (due, stall) {
            (Some(a), Some(b)) => Some(if before(a, b) { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Whether the queued output has made no progress for the write-stall timeout.
    pub(crate) fn stalled(&self, st: &ReactorState) -> bool {
        self.is(Flag::WriteBlocked)
            && st.write_stall > 0
            && self
                .bufs
                .as_ref()
                .is_some_and(|b| st.tick.wrapping_sub(b.last_progress) >= st.write_stall)
    }

    /// Makes sure the wheel holds an entry for the connection's next
    /// deadline. A later deadline needs no new entry: the earlier one fires,
    /// finds nothing due, and re-arms.
    pub(crate) fn schedule(&mut self, slot: usize, st: &mut ReactorState) {
        let Some(due) = self.next_deadline(st) else { return };
        if self.timer_due == NO_TIMER || before(due, self.timer_due) {
            self.timer_due = due;
            st.wheel.arm(slot as u32, self.generation, due);
        }
    }

    /// The largest message this connection may send now.
    pub(crate) fn max_message_size(&self, st: &ReactorState) -> usize {
        match self.max_message_kib {
            0 => st.cfg.max_message_size,
            kib => st.cfg.max_message_size.min(usize::from(kib) << 10),
        }
    }

    /// Sets the largest message this connection may send: `bytes` rounded up
    /// to a whole KiB (at least 1 KiB), never above the server's limit.
    pub(crate) fn set_max_message_size(&mut self, st: &ReactorState, bytes: usize) {
        let kib = bytes.div_ceil(1 << 10).max(1);
        self.max_message_kib = match u16::try_from(kib) {
            Ok(kib) if usize::from(kib) << 10 < st.cfg.max_message_size => kib,
            _ => 0,
        };
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.out.queued())
    }

    /// The connection's buffers, borrowed from the pool if it has none.
    pub(crate) fn bufs_mut(&mut self, st: &mut ReactorState) -> &mut Bufs {
        self.bufs.get_or_insert_with(|| st.bufs.take_or(Box::default))
    }

    /// The reassembly buffer, taken out to be lent to the protocol state.
    pub(crate) fn take_message(&mut self) -> Vec<u8> {
        self.bufs.as_mut().map_or_else(Vec::new, |b| std::mem::take(&mut b.message))
    }

    /// Puts the reassembly buffer back (a delivered message is cleared).
    pub(crate) fn put_message(&mut self, st: &mut ReactorState, mut message: Vec<u8>) {
        if !self.proto.in_message() {
            message.clear();
        }
        if message.capacity() > 0 {
            self.bufs_mut(st).message = message;
        }
        self.account(st);
    }

    /// Brings the reactor's memory count up to date with what the buffers
    /// hold now.
    pub(crate) fn account(&mut self, st: &mut ReactorState) {
        account(&mut self.bufs, &mut st.held);
    }

    /// Gives the buffers back to the pool once nothing is pending.
    pub(crate) fn release_if_idle(&mut self, st: &mut ReactorState) {
        if self.bufs.as_ref().is_some_and(|b| b.is_idle()) {
            if let Some(mut b) = self.bufs.take() {
                st.held -= std::mem::take(&mut b.accounted);
                trim(&mut b.carry);
                trim(&mut b.message);
                st.bufs.give(b);
            }
        }
    }

    /// Drops all buffers (the connection is going away).
    pub(crate) fn release_all(&mut self, st: &mut ReactorState) {
        if let Some(mut b) = self.bufs.take() {
            st.held -= std::mem::take(&mut b.accounted);
            b.out.clear(&mut st.chunks);
            trim(&mut b.carry);
            trim(&mut b.message);
            st.bufs.give(b);
        }
    }

    /// Marks the connection as one that publishes (see [`Flag::Publisher`]).
    pub(crate) fn mark_publisher(&mut self) {
        self.flags.set(Flag::Publisher);
    }

    /// Whether a frame of `len` bytes fits under the backpressure cap. An
    /// empty queue takes any frame, so no message size is unsendable.
    /// (Replies to input were admitted to the memory budget before the input
    /// was read; what else grows a queue is held to the cap and shed.)
    fn admits(&self, st: &ReactorState, len: usize) -> bool {
        let queued = self.queued();
        queued == 0 || queued + len <= st.cfg.max_backpressure
    }

    /// Whether a delivery of `len` bytes fits under the backpressure cap and
    /// in what the memory budget has left; if not, the topic's slow-consumer
    /// policy applies. A queue under a sixteenth of its cap needs no room,
    /// so a subscriber that keeps up never loses a frame to the budget.
    fn admits_delivery(&mut self, st: &mut ReactorState, len: usize) -> bool {
        if !self.admits(st, len) {
            return false;
        }
        if self.queued() < st.cfg.max_backpressure / 16 {
            // A few frames behind, as one that keeps up may be.
            return true;
        }
        self.account(st);
        len <= st.memory_room()
    }

    fn status(&self) -> SendStatus {
        if self.is(Flag::WriteBlocked) { SendStatus::Backpressured } else { SendStatus::Queued }
    }

    /// Queues a message, compressed if the connection agreed to it. The cap
    /// is checked against the uncompressed size, before compressing: a
    /// message compressed with context takeover must not then be dropped.
    pub(crate) fn send_message(
        &mut self,
        st: &mut ReactorState,
        slot: usize,
        msg: Message<'_>,
    ) -> SendStatus {
        if !self.is_open() || !self.admits(st, frame_len(msg.len())) {
            return dropped(st);
        }
        let ReactorState { deflate, bufs, chunks, tick, .. } = st;
        let compressed = if self.proto.compression() { deflate.compress(slot, msg) } else { None };
        let (rsv1, payload) = match compressed {
            Some(z) => (true, z),
            None => (false, msg.as_bytes()),
        };
        let mut queue = Queue { bufs: &mut self.bufs, pool: bufs, chunks };
        self.proto.send(msg.opcode(), rsv1, payload, *tick, &mut queue);
        self.status()
    }

    /// Queues a frame encoded once for many connections; in `shared`
    /// compression mode its compressed form, also made once.
    pub(crate) fn send_shared(
        &mut self,
        st: &mut ReactorState,
        slot: usize,
        frame: &Frame,
    ) -> SendStatus {
        if !self.is_open() || !self.admits(st, frame.len()) {
            return dropped(st);
        }
        let bytes = if self.proto.compression() {
            if st.deflate.dedicated() {
                return self.send_message(st, slot, frame.message());
            }
            st.deflate.shared(slot, frame).unwrap_or_else(|| Arc::clone(frame.plain()))
        } else {
            Arc::clone(frame.plain())
        };
        self.bufs_mut(st).out.push_shared(bytes);
        self.proto.sent(st.tick);
        self.status()
    }

    /// Adds the connection to `topic`'s subscribers on this reactor, for
    /// the publishes after seq `after`; `Ok(false)` if it already was one.
    pub(crate) fn subscribe(
        &mut self,
        st: &mut ReactorState,
        slot: usize,
        topic: &TopicName,
        after: u64,
    ) -> Result<bool, TooManyTopics> {
        let shared = &st.handle.shared;
        let published = |t: &str| match shared.store.contains(t) {
            true => Some(true),
            // A new name costs memory that no connection's buffers show.
            false => (!shared.budget.nearly_spent()).then_some(false),
        };
        let added = st.topics.subscribe(slot, self.generation, topic, after, published)?;
        self.flags.set(Flag::Subscriber);
        Ok(added)
    }

    /// Queues a topic's frame, tagged (`tag`: the topic's on this reactor) for
    /// conflation. `Dropped` when the queue is full and conflation (if that
    /// is the topic's `policy`) found nothing to replace: the caller applies
    /// the rest of the policy.
    pub(crate) fn send_topic(
        &mut self,
        st: &mut ReactorState,
        slot: usize,
        frame: &Frame,
        tag: u32,
        policy: SlowConsumer,
    ) -> SendStatus {
        if !self.is_open() {
            return dropped(st);
        }
        if self.proto.compression() && st.deflate.dedicated() {
            return self.send_message(st, slot, frame.message());
        }
        let bytes = match self.proto.compression() {
            true => st.deflate.shared(slot, frame).unwrap_or_else(|| Arc::clone(frame.plain())),
            false => Arc::clone(frame.plain()),
        };
        if self.admits_delivery(st, bytes.len()) {
            self.bufs_mut(st).out.push_tagged(bytes, tag, policy);
            self.proto.sent(st.tick);
            return self.status();
        }
        let cap = st.cfg.max_backpressure;
        if policy == SlowConsumer::Conflate {
            if let Some(b) = self.bufs.as_mut() {
                if b.out.conflate(tag, bytes, cap) {
                    return SendStatus::Backpressured;
                }
            }
        }
        dropped(st)
    }

    /// Starts a server-initiated close: queue the close frame, stop
    /// accepting sends, and arm the close timeout.
    pub(crate) fn begin_close(
        &mut self,
        st: &mut ReactorState,
        slot: usize,
        code: CloseCode,
        reason: &str,
    ) {
        let mut queue = Queue { bufs: &mut self.bufs, pool: &mut st.bufs, chunks: &mut st.chunks };
        if self.proto.close(code, reason, st.tick, &mut queue) {
            self.schedule(slot, st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_slot_is_small() {
        // Socket, generation, timer, flags, protocol state, one pointer.
        // (mio adds a selector id to each socket in debug builds.)
        let size = std::mem::size_of::<Conn<()>>();
        let limit = if cfg!(debug_assertions) { 72 } else { 64 };
        println!("size_of::<Conn<()>>() = {size}");
        assert!(size <= limit, "Conn<()> grew to {size} bytes");
    }

    #[test]
    fn flags_are_independent_bits() {
        let mut f = Flags::default();
        assert!(f.insert(Flag::Dirty));
        assert!(!f.insert(Flag::Dirty));
        f.set(Flag::Starved);
        assert!(f.has(Flag::Dirty) && f.has(Flag::Starved) && !f.has(Flag::Opened));
        f.clear(Flag::Dirty);
        assert!(!f.has(Flag::Dirty) && f.has(Flag::Starved));
    }
}
