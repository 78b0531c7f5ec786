//! The buffers a connection holds only while it needs them: partial input,
//! a message being reassembled, and queued output. They come from a
//! reactor's pool and go back to it.

use super::buf::{Pooled, recycle};
use super::outq::OutQueue;
use crate::proto::connection::Tick;

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
    /// The tick of the last write that made progress (for the write-stall timeout).
    pub(crate) last_progress: Tick,
    /// What the reactor's memory count holds for these buffers.
    pub(crate) accounted: usize,
}

impl Bufs {
    pub(crate) fn is_idle(&self) -> bool {
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
pub(crate) fn trim(v: &mut Vec<u8>) {
    if !recycle(v) {
        *v = Vec::new();
    }
}

/// Brings the reactor's memory count (`held`) up to date with what `bufs` hold now.
pub(crate) fn account(bufs: &mut Option<Box<Bufs>>, held: &mut usize) {
    if let Some(b) = bufs.as_mut() {
        let now = b.holding();
        *held = *held - b.accounted + now;
        b.accounted = now;
    }
}
