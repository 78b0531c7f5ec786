//! The loop itself: a `mio::Poll`, a slab of connections, and one turn after
//! another of opening, the behaviour's timers, flushing, sleeping and
//! dispatching readiness events.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use mio::{Events, Poll, Token, Waker};
use slab::Slab;
use wsreactor::proto::{DecoderConfig, Role};

use super::behaviour::{Behaviour, Conns};
use super::conn::{Conn, State};
use super::control::{Control, EngineConfig, EngineStats, Phase, ThreadProgress};
use crate::clock::now_ns;
use crate::stats::new_histogram;

/// The token of each loop's waker.
const WAKER: Token = Token(usize::MAX);
/// How long the close handshake may take at the end of a run.
const CLOSE_TIMEOUT_NS: u64 = 2_000_000_000;

/// A loop thread: run it with [`Engine::run`].
pub struct Engine<B: Behaviour> {
    pub(super) cfg: EngineConfig,
    pub(super) poll: Poll,
    pub(super) slab: Slab<Conn<B::State>>,
    pub(super) rbuf: Vec<u8>,
    pub(super) flush: Vec<usize>,
    pub(super) again: Vec<usize>,
    /// Inflated payload pieces (reused).
    pub(super) inflated: Vec<u8>,
    pub(super) dcfg: DecoderConfig,
    pub(super) stats: EngineStats,
    pub(super) progress: Arc<ThreadProgress>,
    pub(super) started_conns: usize,
    pub(super) pending: usize,
    pub(super) next_connect: u64,
    pub(super) stop_opening: bool,
    pub(super) behaviour: B,
}

impl<B: Behaviour> Engine<B> {
    /// A loop for thread `thread` of `ctl`, registering its waker there.
    pub fn new(
        cfg: EngineConfig,
        mut behaviour: B,
        ctl: &Control,
        thread: usize,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        behaviour.attach(&waker);
        if let Ok(mut w) = ctl.wakers.lock() {
            w.push(waker);
        }
        let dcfg = DecoderConfig {
            role: Role::Client,
            max_message_size: cfg.max_message,
            allow_rsv1: cfg.deflate.is_some(),
        };
        Ok(Engine {
            rbuf: vec![0; cfg.read_buf.max(4096)],
            poll,
            slab: Slab::with_capacity(cfg.conns.min(1 << 16)),
            flush: Vec::new(),
            again: Vec::new(),
            inflated: Vec::new(),
            dcfg,
            stats: EngineStats {
                handshake: new_histogram(),
                opened: 0,
                failed: 0,
                lost: 0,
                closed_clean: 0,
                protocol_errors: 0,
                bytes_in: 0,
                bytes_out: 0,
                errors: BTreeMap::new(),
                deflate_conns: 0,
                deflate_agreed: None,
                connect_window: (0, 0),
            },
            progress: ctl.threads[thread].clone(),
            started_conns: 0,
            pending: 0,
            next_connect: 0,
            stop_opening: false,
            behaviour,
            cfg,
        })
    }

    /// Runs until the coordinator reaches [`Phase::Close`] and every connection is closed
    /// (or the close timeout passed); returns the engine's and the behaviour's figures.
    pub fn run(mut self, ctl: &Control) -> (EngineStats, B) {
        let mut events = Events::with_capacity(1024);
        let mut close_deadline: Option<u64> = None;
        let mut last_scan = 0u64;
        self.stats.connect_window.0 = now_ns();
        loop {
            let now = now_ns();
            let phase = ctl.phase();

            // Open connections (paced), until the run is past its measured window.
            if phase <= Phase::Measure {
                self.open_more(now);
            }
            if now.saturating_sub(last_scan) > 100_000_000 {
                last_scan = now;
                self.expire_handshakes(now);
            }

            // The mode's own timers and sends.
            let mut wake_at = {
                let mut conns = Conns { slab: &mut self.slab, flush: &mut self.flush, now, phase };
                self.behaviour.turn(&mut conns, now, phase)
            };

            if phase == Phase::Close {
                let deadline = *close_deadline.get_or_insert_with(|| {
                    self.start_closing();
                    now + CLOSE_TIMEOUT_NS
                });
                if self.slab.is_empty() {
                    break;
                }
                if now >= deadline {
                    let keys: Vec<usize> = self.slab.iter().map(|(k, _)| k).collect();
                    for k in keys {
                        self.stats.error("close handshake timed out".into());
                        self.drop_conn(k, false);
                    }
                    break;
                }
                wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
            }

            self.flush_all();
            self.publish_progress(phase);

            // How long to sleep.
            let mut timeout = Duration::from_millis(100);
            if !self.again.is_empty() {
                timeout = Duration::ZERO;
            }
            if phase <= Phase::Measure
                && !self.stop_opening
                && self.started_conns < self.cfg.conns
                && self.pending < self.cfg.max_pending
            {
                let d = Duration::from_nanos(self.next_connect.saturating_sub(now));
                timeout = timeout.min(d);
            }
            if let Some(w) = wake_at {
                timeout = timeout.min(Duration::from_nanos(w.saturating_sub(now)));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                self.stats.error(format!("poll: {e}"));
                break;
            }

            let again = std::mem::take(&mut self.again);
            for key in again {
                if self.slab.contains(key) {
                    self.on_readable(key, phase);
                }
            }
            for ev in events.iter() {
                let key = ev.token().0;
                if ev.token() == WAKER || !self.slab.contains(key) {
                    continue;
                }
                if matches!(self.slab[key].state, State::Connecting) {
                    if !self.on_connected(key) {
                        continue;
                    }
                } else if ev.is_writable() {
                    self.slab[key].blocked = false;
                    self.flush_one(key);
                    if !self.slab.contains(key) {
                        continue;
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    if ev.is_read_closed() || ev.is_error() {
                        self.slab[key].hup = true;
                    }
                    self.on_readable(key, phase);
                }
            }
        }
        self.flush_all();
        self.publish_progress(Phase::Close);
        self.progress.finished.store(true, Relaxed);
        (self.stats, self.behaviour)
    }

    fn publish_progress(&mut self, phase: Phase) {
        let p = &self.progress;
        p.msgs.store(self.behaviour.progress(), Relaxed);
        p.bytes_in.store(self.stats.bytes_in, Relaxed);
        // Only the drain waits for it (and a behaviour may need a while to tell).
        if phase >= Phase::Drain {
            p.drained.store(self.behaviour.drained(), Relaxed);
        }
    }
}
