//! What the coordinating thread and the loop threads share: the phase of the
//! run and each loop's live counters, what a loop is asked to do, and what it
//! measured.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use mio::Waker;

use crate::deflate::DeflateOpts;
use crate::wire::Target;

/// The phases of a run, moved forward by the coordinating thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Opening connections.
    Connect = 0,
    /// Load is on, nothing is recorded.
    Warmup = 1,
    /// Load is on and recorded.
    Measure = 2,
    /// No new load; outstanding messages may still arrive (not recorded).
    Drain = 3,
    /// Close handshakes, then the loops exit.
    Close = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Connect,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Close,
        }
    }
}

/// Live counters of one loop thread, read by the progress line and the coordinator.
#[derive(Debug, Default)]
pub struct ThreadProgress {
    /// Messages completed (echoes or deliveries), whatever the phase.
    pub msgs: AtomicU64,
    /// Bytes read from sockets.
    pub bytes_in: AtomicU64,
    /// Connections whose handshake completed.
    pub opened: AtomicUsize,
    /// Connection attempts that finished, opened or failed.
    pub settled: AtomicUsize,
    /// Connections currently open.
    pub open_now: AtomicUsize,
    /// Open connections closed by the server or the network.
    pub lost: AtomicUsize,
    /// The behaviour has nothing outstanding (used in [`Phase::Drain`]).
    pub drained: AtomicBool,
    /// The loop has exited.
    pub finished: AtomicBool,
}

/// State shared by the coordinator and every loop thread.
#[derive(Debug)]
pub struct Control {
    phase: AtomicU8,
    pub(super) wakers: Mutex<Vec<Arc<Waker>>>,
    /// One entry per loop thread.
    pub threads: Vec<Arc<ThreadProgress>>,
}

impl Control {
    /// Control for `n` loop threads, starting in [`Phase::Connect`].
    pub fn new(n: usize) -> Control {
        Control {
            phase: AtomicU8::new(Phase::Connect as u8),
            wakers: Mutex::new(Vec::new()),
            threads: (0..n).map(|_| Arc::new(ThreadProgress::default())).collect(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    /// Moves to `p` and wakes every loop.
    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
        if let Ok(w) = self.wakers.lock() {
            for waker in w.iter() {
                let _ = waker.wake();
            }
        }
    }

    /// Sum of a counter over the threads.
    pub fn sum(&self, f: impl Fn(&ThreadProgress) -> u64) -> u64 {
        self.threads.iter().map(|t| f(t)).sum()
    }
}

/// What one loop thread is asked to do.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where to connect.
    pub target: Arc<Target>,
    /// How many connections this thread opens.
    pub conns: usize,
    /// The global index of this thread's first connection.
    pub first_index: usize,
    /// Connections per second for this thread (`None`: as fast as possible).
    pub connect_rate: Option<f64>,
    /// Most handshakes in progress at once on this thread.
    pub max_pending: usize,
    /// Source addresses to spread connections over (empty: let the kernel choose).
    pub src_ips: Vec<IpAddr>,
    /// Largest message accepted from the server.
    pub max_message: usize,
    /// Size of the thread's shared read buffer.
    pub read_buf: usize,
    /// Offer permessage-deflate (and fail connections whose server declines it).
    pub deflate: Option<DeflateOpts>,
}

/// What one loop thread measured itself (the behaviour keeps its own figures).
#[derive(Debug)]
pub struct EngineStats {
    /// Connect-to-101 times of successful handshakes, in ns.
    pub handshake: Histogram<u64>,
    /// Handshakes completed.
    pub opened: u64,
    /// Connection attempts that failed (connect error, refused handshake, timeout).
    pub failed: u64,
    /// Open connections closed by the server or the network.
    pub lost: u64,
    /// Connections whose close handshake completed at the end.
    pub closed_clean: u64,
    /// Protocol errors detected in the server's frames.
    pub protocol_errors: u64,
    /// Bytes read and written.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Errors by description, with counts.
    pub errors: BTreeMap<String, u64>,
    /// Connections that negotiated permessage-deflate.
    pub deflate_conns: u64,
    /// The parameters the server agreed to (the first such connection's).
    pub deflate_agreed: Option<String>,
    /// When the first connect started and when the last attempt settled (ns).
    pub connect_window: (u64, u64),
}

impl EngineStats {
    pub(super) fn error(&mut self, what: String) {
        *self.errors.entry(what).or_insert(0) += 1;
    }
}
