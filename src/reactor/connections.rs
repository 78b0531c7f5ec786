//! A reactor's connections and what serves them: the slab, the handler, the
//! shared read buffer, and the lists of connections to read again and to
//! flush. Reading (edge-triggered, a bounded number of reads per turn),
//! flushing, timeouts and the end of a connection live here; the loop
//! (`event_loop`) decides when each happens.

use std::io::{self, Read};
use std::net::Shutdown;

use slab::Slab;

use super::conn::{Conn, Direct, Flag, NO_TIMER, Queue, SocketWriter};
use super::handler::{Ctx, Handler};
use super::input::{notify_close, process};
use super::state::ReactorState;
use super::timer;
use crate::proto::CloseCode;
use crate::proto::connection::{Expiry, State, Timeout};
use crate::stats::Counter;

/// How many reads one connection may make per loop turn before the others get a go.
const READ_BUDGET_READS: usize = 4;

/// The smallest read, however little room the memory budget has left.
const MIN_READ: usize = 4096;

/// A reactor's connections, their handler, and the state they share.
pub(crate) struct Connections<H: Handler> {
    pub(crate) slab: Slab<Conn<H::Conn>>,
    pub(crate) handler: H,
    pub(crate) st: ReactorState,
    /// The one read buffer: input is parsed in place from here.
    rbuf: Box<[u8]>,
    /// Connections to read again without waiting for an event.
    pub(crate) again: Vec<usize>,
    /// Connections to flush at the end of this turn.
    pub(crate) dirty: Vec<usize>,
}

impl<H: Handler> Connections<H> {
    pub(crate) fn new(handler: H, st: ReactorState) -> Self {
        let rbuf = vec![0u8; st.cfg.read_buffer_size].into_boxed_slice();
        Connections { slab: Slab::new(), handler, st, rbuf, again: Vec::new(), dirty: Vec::new() }
    }

    pub(crate) fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.slab.get_mut(slot) {
            if c.flags.insert(Flag::Dirty) {
                self.dirty.push(slot);
            }
        }
    }

    /// Lists the connection in `slot` to be read again this turn.
    pub(crate) fn read_again(&mut self, slot: usize) {
        if let Some(c) = self.slab.get_mut(slot) {
            if c.flags.insert(Flag::ReadAgain) {
                self.again.push(slot);
            }
        }
    }

    /// Reads and processes input for `slot` until the socket is drained, the
    /// turn's budget is spent, or reading is paused.
    pub(crate) fn pump(&mut self, slot: usize) {
        let mut reads = 0;
        loop {
            let Some(conn) = self.slab.get_mut(slot) else { return };
            if conn.is(Flag::ReadPaused) || conn.proto.state() == State::Closed {
                break;
            }
            let carry_len = conn.bufs.as_ref().map_or(0, |b| b.carry.len());
            // Input that cannot be processed yet (reading paused) is set aside
            // in the connection's carry: as the memory budget fills, each read
            // may take only an eighth of what is left, so all those carries
            // together stay within it.
            let allowance = (self.st.memory_room() / 8).max(MIN_READ);
            let room = (self.rbuf.len() - carry_len).min(allowance);
            let (n, eof) = if room == 0 {
                (0, false)
            } else {
                match conn.stream.read(&mut self.rbuf[carry_len..carry_len + room]) {
                    Ok(0) => (0, true),
                    Ok(n) => {
                        let pinged = conn.proto.awaiting_pong();
                        conn.proto.received(self.st.tick);
                        if pinged {
                            // Answered: the next ping is due a ping interval
                            // from now, earlier than the pong deadline armed.
                            conn.schedule(slot, &mut self.st);
                        }
                        (n, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !conn.is(Flag::PendingInput) {
                            break;
                        }
                        (0, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("read: {e}");
                        self.remove(slot);
                        return;
                    }
                }
            };
            if let Some(b) = conn.bufs.as_mut() {
                self.rbuf[..carry_len].copy_from_slice(&b.carry);
                b.carry.clear();
            }
            conn.flags.clear(Flag::PendingInput);
            let input = &mut self.rbuf[..carry_len + n];
            let consumed = process(conn, &mut self.st, &mut self.handler, slot, input);
            if consumed < input.len() {
                let rest = &input[consumed..];
                conn.bufs_mut(&mut self.st).carry.extend_from_slice(rest);
                if conn.is(Flag::ReadPaused) {
                    conn.flags.set(Flag::PendingInput);
                }
            }
            if eof {
                self.on_eof(slot);
                return;
            }
            reads += 1;
            if n < room || (consumed == 0 && n == 0) {
                break; // a short read: the socket is drained
            }
            if reads == READ_BUDGET_READS {
                self.read_again(slot);
                break;
            }
        }
        self.settle(slot);
        // Replies go out now, not at the end of the turn: the same one write,
        // without waiting for the other connections' reads.
        self.flush(slot);
    }

    fn on_eof(&mut self, slot: usize) {
        if let Some(conn) = self.slab.get_mut(slot) {
            if conn.is_open() {
                log::debug!("connection {slot} closed without a close frame");
            }
        }
        self.remove(slot);
    }

    /// Calls `on_close` once the connection is no longer open.
    pub(crate) fn settle(&mut self, slot: usize) {
        let Some(conn) = self.slab.get_mut(slot) else { return };
        if !conn.is_open() && conn.is(Flag::Opened) && !conn.is(Flag::Notified) {
            let code = conn.proto.close_code();
            notify_close(conn, &mut self.st, &mut self.handler, slot, code, "");
        }
    }

    /// Starts closing the connection in `slot` with `code` and `reason`;
    /// `on_close` runs now, and the close frame goes out this turn.
    pub(crate) fn close(&mut self, slot: usize, code: CloseCode, reason: &str) {
        let Some(conn) = self.slab.get_mut(slot) else { return };
        conn.begin_close(&mut self.st, slot, code, reason);
        self.settle(slot);
        self.mark_dirty(slot);
    }

    /// Writes what the connection in `slot` has queued; half-closes or ends
    /// it once a close is sent; lets it read again once its queue has room.
    pub(crate) fn flush(&mut self, slot: usize) {
        let Some(conn) = self.slab.get_mut(slot) else { return };
        conn.flags.clear(Flag::Dirty);
        let was_blocked = conn.is(Flag::WriteBlocked);
        let drained = match conn.bufs.as_mut() {
            Some(b) if !b.out.is_empty() => {
                let before = b.out.queued();
                let mut sock = SocketWriter(&conn.stream);
                match b.out.flush(&mut sock, &mut self.st.chunks, &mut self.st.gather) {
                    Ok(drained) => {
                        if b.out.queued() < before || !was_blocked {
                            b.last_progress = self.st.tick;
                        }
                        drained
                    }
                    Err(e) => {
                        log::debug!("write: {e}");
                        self.remove(slot);
                        return;
                    }
                }
            }
            _ => true,
        };
        if !drained {
            conn.flags.set(Flag::WriteBlocked);
            if !was_blocked {
                conn.schedule(slot, &mut self.st);
            }
        } else if was_blocked {
            conn.flags.clear(Flag::WriteBlocked);
            if conn.is_open() {
                let mut cx = Ctx::new(conn, &mut self.st, slot);
                self.handler.on_drain(&mut cx);
                // Anything sent from on_drain goes out next turn.
                self.settle(slot);
                self.mark_dirty(slot);
            }
        }
        let Some(conn) = self.slab.get_mut(slot) else { return };
        if conn.is(Flag::ReadPaused) && conn.queued() < self.st.cfg.max_backpressure {
            conn.flags.clear(Flag::ReadPaused);
            self.read_again(slot);
        }
        let Some(conn) = self.slab.get_mut(slot) else { return };
        match conn.proto.state() {
            State::Closed if drained => {
                self.remove(slot);
                return;
            }
            State::Closing if drained && !conn.is(Flag::ShutWrite) => {
                conn.flags.set(Flag::ShutWrite);
                if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                    log::debug!("shutdown: {e}");
                }
            }
            _ => {}
        }
        conn.account(&mut self.st);
        conn.release_if_idle(&mut self.st);
    }

    /// A timer entry came due: act on whichever of the connection's
    /// deadlines has passed, then arm the next one.
    pub(crate) fn on_timer(&mut self, entry: timer::Entry) {
        let slot = entry.key as usize;
        let Some(conn) = self.slab.get_mut(slot) else { return };
        if conn.generation != entry.generation || conn.timer_due != entry.due {
            return; // cancelled or re-armed since
        }
        conn.timer_due = NO_TIMER;
        if conn.is_open() && conn.stalled(&self.st) {
            log::info!("{}: output stalled; dropping the connection", conn.peer());
            self.st.counters.inc(Counter::WriteStalls);
            self.remove(slot);
            return;
        }
        let st = &mut self.st;
        let output_since =
            conn.bufs.as_ref().filter(|b| !b.out.is_empty()).map(|b| b.last_progress);
        let queue = Queue { bufs: &mut conn.bufs, pool: &mut st.bufs, chunks: &mut st.chunks };
        let mut out = Direct {
            stream: &conn.stream,
            queue,
            scratch: &mut st.scratch,
            failed: false,
            queued: false,
        };
        let timeout = conn.proto.handle_timeout(st.tick, &st.timeouts, output_since, &mut out);
        let (failed, queued) = (out.failed, out.queued);
        let expired = |counter: Counter, what: &str| {
            log::debug!("{}: {what}", conn.peer());
            st.counters.inc(counter);
        };
        match timeout {
            Timeout::Expired(Expiry::Handshake) => {
                expired(Counter::HandshakeTimeouts, "handshake timeout")
            }
            Timeout::Expired(Expiry::Close) => expired(Counter::CloseTimeouts, "close timeout"),
            Timeout::Expired(Expiry::Pong) => {
                expired(Counter::PongTimeouts, "no answer to a ping; dropping the connection")
            }
            Timeout::Ping => st.counters.inc(Counter::PingsSent),
            Timeout::Idle => st.counters.inc(Counter::IdleTimeouts),
            Timeout::Nothing => {}
        }
        if failed || matches!(timeout, Timeout::Expired(_)) {
            self.remove(slot);
            return;
        }
        if timeout == Timeout::Idle {
            self.settle(slot);
            self.mark_dirty(slot);
        } else if queued {
            self.mark_dirty(slot);
        }
        if let Some(conn) = self.slab.get_mut(slot) {
            conn.schedule(slot, &mut self.st);
        }
    }

    /// Ends a connection: `on_close` (1006) if it was never told, then the
    /// socket is closed and the slot freed.
    pub(crate) fn remove(&mut self, slot: usize) {
        let Some(conn) = self.slab.get_mut(slot) else { return };
        if conn.is(Flag::Opened) && !conn.is(Flag::Notified) {
            notify_close(conn, &mut self.st, &mut self.handler, slot, CloseCode::ABNORMAL, "");
        }
        let mut conn = self.slab.remove(slot);
        if conn.is(Flag::Opened) {
            self.st.handle.closed();
        }
        if conn.proto.compression() {
            self.st.deflate.close(slot);
        }
        if conn.is(Flag::Subscriber) {
            self.st.topics.remove_conn(slot);
        }
        conn.release_all(&mut self.st);
    }

    /// Ends every connection.
    pub(crate) fn drop_all(&mut self) {
        let slots: Vec<usize> = self.slab.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.remove(slot);
        }
    }
}
