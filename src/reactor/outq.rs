//! A connection's output: a queue of owned and shared frames, flushed with
//! one write call per turn.
//!
//! Owned frames (echoes, pongs, per-connection sends) are appended into a
//! pooled chunk until it holds [`COALESCE_LIMIT`] bytes, so a burst of small
//! frames costs no allocation per frame and goes out in one piece.
//! Shared frames (broadcasts) are encoded once and referenced by every queue.
//!
//! A flush hands the kernel one contiguous buffer whenever it can: a single
//! chunk as it is, several small ones (up to [`GATHER_LIMIT`] bytes in all)
//! copied together first, since for small frames that copy costs less than
//! the kernel's per-segment work in a vectored write. Only bigger queues of
//! several chunks go out with a vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use super::buf::{Pool, recycle};
use crate::config::SlowConsumer;

/// Owned frames are packed into one chunk up to this many bytes.
const COALESCE_LIMIT: usize = 16 << 10;

/// The smallest allocation for a new owned chunk.
const MIN_CHUNK: usize = 256;

/// The most chunks handed to one vectored write.
const MAX_IOV: usize = 64;

/// Several chunks totalling at most this many bytes are copied into one
/// buffer and written with one plain write.
pub(crate) const GATHER_LIMIT: usize = 4096;

enum Chunk {
    Owned(Vec<u8>),
    /// A shared frame, tagged with its topic (0: none) for conflation, and
    /// the topic's slow-consumer policy (`Close` when untagged: it must not
    /// be lost), which says whether shedding may drop it.
    Shared(Arc<[u8]>, u32, SlowConsumer),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s, _, _) => s,
        }
    }
}

/// Frames waiting to be written, in order.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes queued and not yet written.
    queued: usize,
    /// Bytes of the front chunk already written.
    front_written: usize,
    /// Capacity the owned chunks hold beyond their frames.
    owned_spare: usize,
}

impl OutQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// The heap bytes of the (empty) queue's own list of chunks.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    /// The heap bytes the queue holds: its frames (a shared one counted in
    /// full, as if this queue alone held it), the spare capacity of its
    /// owned chunks, and its list of chunks.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.queued + self.front_written + self.owned_spare + self.capacity_bytes()
    }

    /// Appends `len` bytes produced by `encode` as an owned frame.
    pub(crate) fn push_owned(
        &mut self,
        pool: &mut Pool<Vec<u8>>,
        len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let fits_back = matches!(self.chunks.back(),
            Some(Chunk::Owned(v)) if v.len() + len <= COALESCE_LIMIT);
        if !fits_back {
            // Start small (a pong must not pin 16 KiB on a blocked connection);
            // appends grow the chunk by doubling, and pooled chunks keep theirs.
            let mut v = pool.take_or(Vec::new);
            v.reserve(len.max(MIN_CHUNK));
            self.owned_spare += v.capacity();
            self.chunks.push_back(Chunk::Owned(v));
        }
        let Some(Chunk::Owned(v)) = self.chunks.back_mut() else {
            unreachable!("an owned chunk was just ensured at the back");
        };
        let (len_before, spare_before) = (v.len(), v.capacity() - v.len());
        encode(v);
        self.queued += v.len() - len_before;
        self.owned_spare = self.owned_spare - spare_before + (v.capacity() - v.len());
    }

    /// Appends a shared, already encoded frame.
    pub(crate) fn push_shared(&mut self, frame: Arc<[u8]>) {
        self.push_tagged(frame, 0, SlowConsumer::Close);
    }

    /// Appends a shared frame of topic `tag` (non-zero), which
    /// [`OutQueue::conflate`] may later replace, and which
    /// [`OutQueue::shed`] may drop as the topic's `policy` allows.
    pub(crate) fn push_tagged(&mut self, frame: Arc<[u8]>, tag: u32, policy: SlowConsumer) {
        self.queued += frame.len();
        self.chunks.push_back(Chunk::Shared(frame, tag, policy));
    }

    /// Drops the queued, not yet started frames that their topics'
    /// slow-consumer policies let go: every frame of a `Drop` topic, every
    /// frame of a `Conflate` topic but its newest. Returns the bytes dropped.
    pub(crate) fn shed(&mut self) -> usize {
        let started = usize::from(self.front_written > 0);
        let mut newest: Vec<u32> = Vec::new();
        let mut dropped = 0;
        // From the back, so the newest frame of each conflated topic is seen first.
        let mut i = self.chunks.len();
        while i > started {
            i -= 1;
            let drop = match &self.chunks[i] {
                Chunk::Shared(_, _, SlowConsumer::Drop) => true,
                Chunk::Shared(_, tag, SlowConsumer::Conflate) if *tag != 0 => {
                    let seen = newest.contains(tag);
                    if !seen {
                        newest.push(*tag);
                    }
                    seen
                }
                _ => false,
            };
            if drop {
                if let Some(c) = self.chunks.remove(i) {
                    dropped += c.bytes().len();
                }
            }
        }
        self.queued -= dropped;
        dropped
    }

    /// Drops everything queued but the part of the front chunk already
    /// started (a frame cut in the middle would corrupt the stream), so that
    /// a close frame queued next goes out right after it.
    pub(crate) fn discard_unstarted(&mut self, pool: &mut Pool<Vec<u8>>) {
        let keep = usize::from(self.front_written > 0);
        let mut rest = self.chunks.split_off(keep.min(self.chunks.len()));
        for chunk in rest.drain(..) {
            self.give_back(chunk, pool);
        }
        self.queued = self.chunks.front().map_or(0, |c| c.bytes().len() - self.front_written);
        if self.chunks.capacity() > 64 {
            self.chunks.shrink_to_fit();
        }
    }

    /// Replaces the newest queued, not yet started frame of topic `tag` with
    /// `frame`, so a slow reader gets the latest value instead of a stale
    /// one. False if there is none (or the replacement would not fit under
    /// `cap`). The frame keeps its place in the queue.
    pub(crate) fn conflate(&mut self, tag: u32, frame: Arc<[u8]>, cap: usize) -> bool {
        // The front chunk may be partly written: it cannot change.
        let started = usize::from(self.front_written > 0);
        let found = self.chunks.iter_mut().skip(started).rev().find_map(|c| match c {
            Chunk::Shared(old, t, _) if *t == tag && tag != 0 => Some(old),
            _ => None,
        });
        match found {
            Some(old) if self.queued - old.len() + frame.len() <= cap => {
                self.queued = self.queued - old.len() + frame.len();
                *old = frame;
                true
            }
            _ => false,
        }
    }

    /// Writes as much as the socket takes. `Ok(true)`: everything was
    /// written; `Ok(false)`: the socket is full (wait for writability).
    /// `gather` is scratch space for copying small chunks together.
    pub(crate) fn flush<W: Write>(
        &mut self,
        w: &mut W,
        pool: &mut Pool<Vec<u8>>,
        gather: &mut Vec<u8>,
    ) -> io::Result<bool> {
        while self.queued > 0 {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            let mut offered = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { self.front_written } else { 0 };
                let bytes = &chunk.bytes()[skip..];
                offered += bytes.len();
                iov[n_iov] = IoSlice::new(bytes);
                n_iov += 1;
            }
            let result = if n_iov == 1 {
                w.write(&iov[0])
            } else if offered <= GATHER_LIMIT {
                gather.clear();
                for s in &iov[..n_iov] {
                    gather.extend_from_slice(s);
                }
                w.write(gather)
            } else {
                w.write_vectored(&iov[..n_iov])
            };
            let written = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(written, pool);
            if written < offered {
                // A short write means the send buffer is full; the next
                // writable edge tells us when to go on.
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize, pool: &mut Pool<Vec<u8>>) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else { break };
            let left = front.bytes().len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.front_written = 0;
            if let Some(chunk) = self.chunks.pop_front() {
                self.give_back(chunk, pool);
            }
        }
    }

    /// A chunk leaving the queue: an owned one goes back to the pool.
    fn give_back(&mut self, chunk: Chunk, pool: &mut Pool<Vec<u8>>) {
        if let Chunk::Owned(mut v) = chunk {
            self.owned_spare -= v.capacity() - v.len();
            if recycle(&mut v) {
                pool.give(v);
            }
        }
    }

    /// Drops everything queued, returning owned chunks to the pool.
    pub(crate) fn clear(&mut self, pool: &mut Pool<Vec<u8>>) {
        while let Some(chunk) = self.chunks.pop_front() {
            self.give_back(chunk, pool);
        }
        self.queued = 0;
        self.front_written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then blocks.
    struct Sink {
        got: Vec<u8>,
        per_call: usize,
        calls_left: usize,
        /// Calls of `write_vectored` (the others were plain writes).
        vectored: usize,
    }

    impl Sink {
        fn new(per_call: usize, calls_left: usize) -> Sink {
            Sink { got: Vec::new(), per_call, calls_left, vectored: 0 }
        }
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.write_vectored(&[IoSlice::new(buf)]);
            self.vectored -= 1;
            n
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.vectored += 1;
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.per_call - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.per_call {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn queue_with(pool: &mut Pool<Vec<u8>>, parts: &[&[u8]]) -> OutQueue {
        let mut q = OutQueue::default();
        for (i, p) in parts.iter().enumerate() {
            if i % 2 == 0 {
                q.push_owned(pool, p.len(), |v| v.extend_from_slice(p));
            } else {
                q.push_shared(Arc::from(*p));
            }
        }
        q
    }

    #[test]
    fn partial_writes_keep_order_and_count() {
        let mut pool = Pool::new(4);
        let parts: [&[u8]; 4] = [b"hello ", b"shared ", b"world ", b"again"];
        let mut q = queue_with(&mut pool, &parts);
        assert_eq!(q.queued(), 24);
        let mut sink = Sink::new(5, 2);
        // A short write means the socket is full: one call, then wait.
        assert!(!q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap());
        assert_eq!((q.queued(), sink.calls_left), (19, 1));
        assert!(!q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap());
        assert_eq!(q.queued(), 14);
        sink.calls_left = 100;
        let mut flushes = 0;
        while !q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap() {
            flushes += 1;
        }
        assert_eq!(flushes, 2);
        assert_eq!(sink.got, b"hello shared world again");
        assert!(q.is_empty());
    }

    #[test]
    fn small_owned_frames_coalesce() {
        let mut pool = Pool::new(4);
        let mut q = OutQueue::default();
        for _ in 0..100 {
            q.push_owned(&mut pool, 10, |v| v.extend_from_slice(&[7; 10]));
        }
        assert_eq!(q.chunks.len(), 1);
        assert_eq!(q.queued(), 1000);
        q.clear(&mut pool);
        assert!(q.is_empty());
    }

    #[test]
    fn conflation_replaces_the_latest_unstarted_frame_of_a_topic() {
        let mut pool = Pool::new(4);
        let mut q = OutQueue::default();
        let frame = |s: &str| -> Arc<[u8]> { Arc::from(s.as_bytes()) };
        q.push_tagged(frame("a1"), 1, SlowConsumer::Conflate);
        q.push_tagged(frame("b1"), 2, SlowConsumer::Conflate);
        q.push_tagged(frame("a2"), 1, SlowConsumer::Conflate);
        assert!(q.conflate(1, frame("a3!"), 100));
        assert_eq!(q.queued(), 7);
        assert!(!q.conflate(3, frame("c1"), 100), "no frame of topic 3");
        assert!(!q.conflate(2, frame(&"x".repeat(200)), 100), "over the cap");
        // A started frame is never replaced.
        let mut sink = Sink::new(1, 1);
        assert!(!q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap());
        let mut q2 = OutQueue::default();
        q2.push_tagged(frame("a1"), 1, SlowConsumer::Conflate);
        let mut sink2 = Sink::new(1, 1);
        assert!(!q2.flush(&mut sink2, &mut pool, &mut Vec::new()).unwrap());
        assert!(!q2.conflate(1, frame("a2"), 100));
        sink.calls_left = 100;
        while !q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap() {}
        assert_eq!(sink.got, b"a1b1a3!");
    }

    #[test]
    fn many_chunks_flush_in_several_writev_calls() {
        let mut pool = Pool::new(4);
        let mut q = OutQueue::default();
        let frame: Arc<[u8]> = Arc::from(&[1u8, 2, 3][..]);
        for _ in 0..200 {
            q.push_shared(frame.clone());
        }
        let mut sink = Sink::new(usize::MAX, 10);
        assert!(q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap());
        assert_eq!(sink.got.len(), 600);
        assert_eq!(sink.calls_left, 10 - 200usize.div_ceil(MAX_IOV));
        assert_eq!(sink.vectored, 0, "small chunks are gathered into plain writes");
    }

    #[test]
    fn only_big_queues_of_several_chunks_use_vectored_writes() {
        let mut pool = Pool::new(4);
        let small: Arc<[u8]> = Arc::from(vec![1u8; 100]);
        let big: Arc<[u8]> = Arc::from(vec![2u8; GATHER_LIMIT]);
        let mut gather = Vec::new();
        let mut flush = |frames: &[&Arc<[u8]>]| {
            let mut q = OutQueue::default();
            for f in frames {
                q.push_shared(Arc::clone(f));
            }
            let mut sink = Sink::new(usize::MAX, 10);
            assert!(q.flush(&mut sink, &mut pool, &mut gather).unwrap());
            let want: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
            assert_eq!(sink.got, want);
            (10 - sink.calls_left, sink.vectored)
        };
        assert_eq!(flush(&[&big]), (1, 0), "one chunk: a plain write");
        assert_eq!(flush(&[&small, &small, &small]), (1, 0), "small chunks: gathered");
        assert_eq!(flush(&[&small, &big]), (1, 1), "over the gather limit: vectored");
    }

    #[test]
    fn shedding_drops_what_each_policy_lets_go_and_keeps_the_rest_in_order() {
        let mut pool = Pool::new(4);
        let mut q = OutQueue::default();
        let frame = |s: &str| -> Arc<[u8]> { Arc::from(s.as_bytes()) };
        q.push_tagged(frame("d1"), 1, SlowConsumer::Drop);
        q.push_owned(&mut pool, 3, |v| v.extend_from_slice(b"own"));
        q.push_tagged(frame("c1"), 2, SlowConsumer::Conflate);
        q.push_tagged(frame("k1"), 3, SlowConsumer::Close);
        q.push_tagged(frame("c2"), 2, SlowConsumer::Conflate);
        q.push_tagged(frame("d2"), 1, SlowConsumer::Drop);
        q.push_shared(frame("bc"));
        // The first frame is started: it stays whatever its policy.
        let mut sink = Sink::new(1, 1);
        assert!(!q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap());
        assert_eq!(q.shed(), 4, "c1 and d2");
        assert_eq!(q.queued(), 1 + 3 + 2 + 2 + 2);
        sink.calls_left = 100;
        while !q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap() {}
        assert_eq!(sink.got, b"d1ownk1c2bc");
    }

    #[test]
    fn discarding_keeps_only_the_started_part() {
        let mut pool = Pool::new(4);
        let mut q = queue_with(&mut pool, &[b"hello ", b"shared ", b"world "]);
        let mut sink = Sink::new(2, 1);
        assert!(!q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap());
        q.discard_unstarted(&mut pool);
        assert_eq!(q.queued(), 4);
        q.push_owned(&mut pool, 5, |v| v.extend_from_slice(b"CLOSE"));
        sink.calls_left = 100;
        while !q.flush(&mut sink, &mut pool, &mut Vec::new()).unwrap() {}
        assert_eq!(sink.got, b"hello CLOSE");
        // Nothing started: nothing kept.
        let mut q = queue_with(&mut pool, &[b"a", b"b"]);
        q.discard_unstarted(&mut pool);
        assert!(q.is_empty());
    }
}
