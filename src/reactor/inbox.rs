//! The one thread-safe door into a reactor: a command queue and a waker.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use mio::Waker;

use crate::message::Frame;
use crate::proto::CloseCode;
use crate::pubsub::TopicName;

/// A connection of the receiving reactor: its slot, and the generation that
/// tells it from earlier connections in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalId {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
}

/// What other threads can ask of a reactor.
pub(crate) enum Command {
    /// Send these encoded frames to every open connection but the one given.
    Broadcast(Vec<Frame>, Option<LocalId>),
    /// Send this frame to one connection.
    SendTo(LocalId, Frame),
    /// Start closing one connection with this code and reason.
    Close(LocalId, CloseCode, Box<str>),
    /// Send this topic's frame (its publish number `seq`) to the topic's subscribers.
    Publish(TopicName, u64, Frame),
    /// Stop accepting, close every connection with 1001, exit by the deadline.
    Shutdown(Instant),
}

impl Command {
    /// The frame bytes it carries (what the memory budget counts while it
    /// waits in an inbox).
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Command::Broadcast(frames, _) => frames.iter().map(Frame::len).sum(),
            Command::SendTo(_, frame) => frame.len(),
            Command::Close(..) => 0,
            Command::Publish(_, _, frame) => frame.len(),
            Command::Shutdown(_) => 0,
        }
    }
}

/// A reactor's inbox. Posting wakes the reactor only when the queue was
/// empty, so a burst of posts costs one wake-up.
pub(crate) struct Inbox {
    queue: Mutex<Vec<Command>>,
    waker: Waker,
}

impl Inbox {
    pub(crate) fn new(waker: Waker) -> Self {
        Inbox { queue: Mutex::new(Vec::new()), waker }
    }

    pub(crate) fn post(&self, cmd: Command) -> io::Result<()> {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.push(cmd);
            q.len() == 1
        };
        if was_empty { self.waker.wake() } else { Ok(()) }
    }

    /// Posts without waking: for the reactor's own thread, which drains its
    /// inbox before the end of its turn. A post from elsewhere meanwhile finds
    /// the queue non-empty and does not wake it either, which is fine: the
    /// drain takes that command too.
    pub(crate) fn post_quiet(&self, cmd: Command) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(cmd);
    }

    /// Moves every posted command into `into`.
    pub(crate) fn drain(&self, into: &mut Vec<Command>) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *q, into);
    }
}
