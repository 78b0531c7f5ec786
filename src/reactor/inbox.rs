//! The one thread-safe door into a reactor: a command queue and a waker.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use mio::Waker;

/// What other threads can ask of a reactor.
pub(crate) enum Command {
    /// Send these encoded frames to every open connection.
    Broadcast(Vec<Arc<[u8]>>),
    /// Stop accepting, close every connection with 1001, exit by the deadline.
    Shutdown(Instant),
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

    /// Moves every posted command into `into`.
    pub(crate) fn drain(&self, into: &mut Vec<Command>) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *q, into);
    }
}
