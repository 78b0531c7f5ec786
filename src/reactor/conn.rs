//! A connection's slot in the reactor's slab.
//!
//! An idle open connection is this struct and nothing else: the socket, a
//! few bytes of state, the frame decoder, and the user's data. Buffers
//! ([`Bufs`]) are borrowed from the reactor's pool only while there is
//! partial input or pending output, and go back as soon as both are gone.

use std::sync::Arc;

use mio::net::TcpStream;

use super::Env;
use super::buf::recycle;
use super::outq::OutQueue;
use crate::handler::SendStatus;
use crate::message::Message;
use crate::proto::close::encode_close_payload;
use crate::proto::frame::{self, OpCode};
use crate::proto::{CloseCode, Decoder};

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
pub(crate) const OPENED: u8 = 1;
/// `on_close` ran.
pub(crate) const NOTIFIED: u8 = 1 << 1;
/// Not reading: the output queue is at its cap.
pub(crate) const READ_PAUSED: u8 = 1 << 2;
/// The socket did not take all queued output; waiting for writability.
pub(crate) const WRITE_BLOCKED: u8 = 1 << 3;
/// In the reactor's list of connections to read again without an event.
pub(crate) const AGAIN: u8 = 1 << 4;
/// In the reactor's list of connections to flush this turn.
pub(crate) const DIRTY: u8 = 1 << 5;
/// Our side of the TCP connection is shut down (FIN sent).
pub(crate) const SHUT_WR: u8 = 1 << 6;
/// Input is ignored: the peer broke the protocol and is being dropped.
pub(crate) const DISCARD: u8 = 1 << 7;

/// Buffers a connection holds only while it needs them.
#[derive(Default)]
pub(crate) struct Bufs {
    /// Input not consumed yet: a partial request head, frame header or
    /// control frame, or input set aside while reading is paused.
    pub(crate) carry: Vec<u8>,
    /// A message being reassembled from fragments or from several reads.
    pub(crate) message: Vec<u8>,
    /// Output waiting for the socket.
    pub(crate) out: OutQueue,
}

impl Bufs {
    fn is_idle(&self) -> bool {
        self.carry.is_empty() && self.message.is_empty() && self.out.is_empty()
    }
}

/// Frees a buffer that grew past what is worth keeping in a pool.
fn trim(v: &mut Vec<u8>) {
    if !recycle(v) {
        *v = Vec::new();
    }
}

/// One connection.
pub(crate) struct Conn<C> {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    pub(crate) state: State,
    pub(crate) flags: u8,
    /// The code we closed with (reported by `on_close`).
    pub(crate) close_code: u16,
    pub(crate) decoder: Decoder,
    pub(crate) bufs: Option<Box<Bufs>>,
    pub(crate) data: C,
}

impl<C: Default> Conn<C> {
    pub(crate) fn new(stream: TcpStream, generation: u32) -> Self {
        Conn {
            stream,
            generation,
            state: State::Handshake,
            flags: 0,
            close_code: 0,
            decoder: Decoder::new(),
            bufs: None,
            data: C::default(),
        }
    }
}

impl<C> Conn<C> {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.out.queued())
    }

    /// The connection's buffers, borrowed from the pool if it has none.
    pub(crate) fn bufs_mut(&mut self, env: &mut Env) -> &mut Bufs {
        self.bufs.get_or_insert_with(|| env.bufs.take_or(Box::default))
    }

    /// Gives the buffers back to the pool once nothing is pending.
    pub(crate) fn release_if_idle(&mut self, env: &mut Env) {
        if self.bufs.as_ref().is_some_and(|b| b.is_idle()) {
            if let Some(mut b) = self.bufs.take() {
                trim(&mut b.carry);
                trim(&mut b.message);
                env.bufs.give(b);
            }
        }
    }

    /// Drops all buffers (the connection is going away).
    pub(crate) fn release_all(&mut self, env: &mut Env) {
        if let Some(mut b) = self.bufs.take() {
            b.out.clear(&mut env.chunks);
            trim(&mut b.carry);
            trim(&mut b.message);
            env.bufs.give(b);
        }
    }

    /// Whether a frame of `len` bytes fits under the backpressure cap. An
    /// empty queue takes any frame, so no message size is unsendable.
    fn admits(&self, env: &Env, len: usize) -> bool {
        let queued = self.queued();
        queued == 0 || queued + len <= env.cfg.max_backpressure
    }

    fn status(&self) -> SendStatus {
        if self.has(WRITE_BLOCKED) { SendStatus::Backpressured } else { SendStatus::Queued }
    }

    pub(crate) fn send_message(&mut self, env: &mut Env, msg: Message<'_>) -> SendStatus {
        let payload = msg.as_bytes();
        let len = frame_len(payload.len());
        if !self.is_open() || !self.admits(env, len) {
            return SendStatus::Dropped;
        }
        self.push_frame(env, msg.opcode(), payload, len);
        self.status()
    }

    pub(crate) fn send_shared(&mut self, env: &mut Env, frame: &Arc<[u8]>) -> SendStatus {
        if !self.is_open() || !self.admits(env, frame.len()) {
            return SendStatus::Dropped;
        }
        self.bufs_mut(env).out.push_shared(Arc::clone(frame));
        self.status()
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
    pub(crate) fn begin_close(&mut self, env: &mut Env, slot: usize, code: CloseCode, reason: &str) {
        if self.state != State::Open {
            return;
        }
        let mut payload = [0u8; 125];
        let n = encode_close_payload(code, reason, &mut payload);
        self.send_control(env, OpCode::Close, &payload[..n]);
        self.state = State::Closing;
        self.close_code = code.0;
        env.arm_close_timeout(slot, self.generation);
    }
}

/// The size of an unmasked frame carrying `payload` bytes.
pub(crate) fn frame_len(payload: usize) -> usize {
    payload
        + match payload {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_slot_is_small() {
        // Socket, generation, state, flags, close code, decoder, one pointer.
        let size = std::mem::size_of::<Conn<()>>();
        assert!(size <= 64, "Conn<()> grew to {size} bytes");
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
