//! What a mode plugs into the engine: a [`Behaviour`], and the views of the
//! connections it is given ([`Cx`], [`Conns`]).

use std::sync::Arc;

use mio::Waker;
use slab::Slab;

use super::conn::{Conn, State};
use super::control::Phase;
use crate::deflate::{ConnDeflate, Tx};

/// A connection's user-facing view inside a [`Behaviour`] callback.
pub struct Cx<'a, S> {
    /// The global index of the connection (0-based over all threads).
    pub index: usize,
    /// The slab key (stable while the connection lives).
    pub key: usize,
    /// Per-connection state of the behaviour.
    pub state: &'a mut S,
    /// The connection's output buffer: frames appended here are written at the end of the turn.
    pub out: &'a mut Vec<u8>,
    /// Bytes queued but not yet written (including what `out` held before this callback).
    pub backlog: usize,
    /// The time of the read that produced this callback.
    pub now: u64,
    /// The phase at the start of this turn.
    pub phase: Phase,
    /// The connection's permessage-deflate state, when negotiated.
    pub deflate: Option<&'a mut ConnDeflate>,
}

impl<S> Cx<'_, S> {
    /// Where to send messages: [`Cx::out`], through the compressor when deflate
    /// was negotiated. Use it for data messages rather than writing to `out`.
    #[inline]
    pub fn tx(&mut self) -> Tx<'_> {
        Tx { out: self.out, deflate: self.deflate.as_deref_mut() }
    }
}

/// What a mode does with its connections.
pub trait Behaviour {
    /// Per-connection state.
    type State: Default + Send;

    /// The handshake of a connection completed.
    fn opened(&mut self, cx: Cx<'_, Self::State>);

    /// A piece of a data message arrived: a whole message when `first && fin`.
    fn data(&mut self, cx: Cx<'_, Self::State>, data: &[u8], first: bool, fin: bool);

    /// A connection that had opened is gone; `lost` when we did not ask for it.
    fn closed(&mut self, index: usize, state: &mut Self::State, lost: bool);

    /// Called once per loop turn; returns the next time (ns) it wants to run, if any.
    fn turn(&mut self, conns: &mut Conns<'_, Self::State>, now: u64, phase: Phase) -> Option<u64>;

    /// Messages completed so far (for the progress line).
    fn progress(&self) -> u64;

    /// Nothing outstanding any more (checked in [`Phase::Drain`]).
    fn drained(&self) -> bool;

    /// The waker of this behaviour's loop, given once before the loop starts
    /// (for another thread to interrupt this loop's sleep).
    fn attach(&mut self, _waker: &Arc<Waker>) {}
}

impl<S> Conn<S> {
    /// The behaviour's view of this connection.
    pub(super) fn cx(&mut self, key: usize, now: u64, phase: Phase) -> Cx<'_, S> {
        Cx {
            index: self.index,
            key,
            backlog: self.out.len() - self.out_pos,
            state: &mut self.user,
            out: &mut self.out,
            now,
            phase,
            deflate: self.deflate.as_deref_mut(),
        }
    }
}

/// The behaviour's access to all of a thread's connections from [`Behaviour::turn`].
pub struct Conns<'a, S> {
    pub(super) slab: &'a mut Slab<Conn<S>>,
    pub(super) flush: &'a mut Vec<usize>,
    pub(super) now: u64,
    pub(super) phase: Phase,
}

impl<S> Conns<'_, S> {
    /// Runs `f` on open connection `key`; `None` if it is not open.
    pub fn with<R>(&mut self, key: usize, f: impl FnOnce(Cx<'_, S>) -> R) -> Option<R> {
        let c = self.slab.get_mut(key)?;
        if !matches!(c.state, State::Open) {
            return None;
        }
        let r = f(c.cx(key, self.now, self.phase));
        if c.out.len() > c.out_pos && !c.queued {
            c.queued = true;
            self.flush.push(key);
        }
        Some(r)
    }
}
