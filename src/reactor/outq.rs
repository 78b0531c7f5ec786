//! A connection's output: a queue of owned and shared frames, flushed with
//! vectored writes.
//!
//! Owned frames (echoes, pongs, per-connection sends) are appended into a
//! pooled chunk until it holds [`COALESCE_LIMIT`] bytes, so a burst of small
//! frames costs no allocation per frame and goes out in one `writev` entry.
//! Shared frames (broadcasts) are encoded once and referenced by every queue.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use super::buf::{Pool, recycle};

/// Owned frames are packed into one chunk up to this many bytes.
const COALESCE_LIMIT: usize = 16 << 10;

/// The most chunks handed to one `writev` call.
const MAX_IOV: usize = 64;

enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
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
}

impl OutQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.queued
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
            let mut v = pool.take_or(Vec::new);
            v.reserve(len.max(if len < COALESCE_LIMIT { COALESCE_LIMIT } else { 0 }));
            self.chunks.push_back(Chunk::Owned(v));
        }
        let Some(Chunk::Owned(v)) = self.chunks.back_mut() else {
            unreachable!("an owned chunk was just ensured at the back");
        };
        let before = v.len();
        encode(v);
        self.queued += v.len() - before;
    }

    /// Appends a shared, already encoded frame.
    pub(crate) fn push_shared(&mut self, frame: Arc<[u8]>) {
        self.queued += frame.len();
        self.chunks.push_back(Chunk::Shared(frame));
    }

    /// Writes as much as the socket takes. `Ok(true)`: everything was
    /// written; `Ok(false)`: the socket is full (wait for writability).
    pub(crate) fn flush<W: Write>(
        &mut self,
        w: &mut W,
        pool: &mut Pool<Vec<u8>>,
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
            let written = match w.write_vectored(&iov[..n_iov]) {
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
            if let Some(Chunk::Owned(mut v)) = self.chunks.pop_front() {
                if recycle(&mut v) {
                    pool.give(v);
                }
            }
        }
    }

    /// Drops everything queued, returning owned chunks to the pool.
    pub(crate) fn clear(&mut self, pool: &mut Pool<Vec<u8>>) {
        for chunk in self.chunks.drain(..) {
            if let Chunk::Owned(mut v) = chunk {
                if recycle(&mut v) {
                    pool.give(v);
                }
            }
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
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
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
        let mut sink = Sink { got: Vec::new(), per_call: 5, calls_left: 2 };
        assert!(!q.flush(&mut sink, &mut pool).unwrap());
        assert_eq!(q.queued(), 14);
        sink.calls_left = 100;
        assert!(q.flush(&mut sink, &mut pool).unwrap());
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
    fn many_chunks_flush_in_several_writev_calls() {
        let mut pool = Pool::new(4);
        let mut q = OutQueue::default();
        let frame: Arc<[u8]> = Arc::from(&[1u8, 2, 3][..]);
        for _ in 0..200 {
            q.push_shared(frame.clone());
        }
        let mut sink = Sink { got: Vec::new(), per_call: usize::MAX, calls_left: 10 };
        assert!(q.flush(&mut sink, &mut pool).unwrap());
        assert_eq!(sink.got.len(), 600);
        assert_eq!(sink.calls_left, 10 - 200usize.div_ceil(MAX_IOV));
    }
}
