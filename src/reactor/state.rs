//! What a reactor holds besides its connections, and lends to them and to
//! the callbacks ([`Ctx`](super::handler::Ctx)): the settings, the pools,
//! this turn's clock reading, the timer wheel, compression contexts, topic
//! subscriptions, and the memory count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::buf::Pool;
use super::bufs::Bufs;
use super::deflate::Deflate;
use super::door::ServerHandle;
use super::inbox::LocalId;
use super::outq;
use super::timer::Wheel;
use super::topics::Topics;
use crate::config::Config;
use crate::message::Frame;
use crate::proto::connection::{Tick, Timeouts};
use crate::stats::Counters;

/// A reactor posts its count when it has moved by more than this since its
/// last post, as well as at the end of each loop turn.
const POST_EVERY: usize = 256 << 10;

/// Slots in the timer wheel: with 100 ms ticks, one turn of the wheel is 102 s.
const WHEEL_SLOTS: usize = 1024;
/// Buffer sets kept for reuse: a publish to many subscribers borrows one per
/// subscriber for the turn, and giving most back to the allocator each turn
/// costs more than the ~350 bytes each keeps (at most ~1.4 MiB per reactor).
const POOLED_BUFS: usize = 4096;
/// The buffers those sets may keep in all (input, reassembly); past it, a set
/// goes back to the pool empty.
const POOLED_BUFS_BYTES: usize = 4 << 20;
/// Output chunks kept for reuse, and the bytes they may keep in all.
const POOLED_CHUNKS: usize = 256;
const POOLED_CHUNKS_BYTES: usize = 2 << 20;

/// A reactor's state other than its connections.
pub(crate) struct ReactorState {
    pub(crate) reactor_id: usize,
    pub(crate) cfg: Arc<Config>,
    pub(crate) handle: ServerHandle,
    pub(crate) bufs: Pool<Box<Bufs>>,
    pub(crate) chunks: Pool<Vec<u8>>,
    pub(crate) deflate: Deflate,
    pub(crate) counters: Arc<Counters>,
    /// Timeouts: one entry per connection at most, re-armed lazily.
    pub(crate) wheel: Wheel,
    /// The protocol's timeouts, in ticks of the wheel.
    pub(crate) timeouts: Timeouts,
    /// Queued output that makes no progress for this many ticks drops the
    /// connection (0: never).
    pub(crate) write_stall: Tick,
    /// The current tick of the wheel (a cheap clock for stamps).
    pub(crate) tick: Tick,
    /// Frames broadcast by this reactor's handlers this turn, each with the
    /// connection it skips, if any.
    pub(crate) local_broadcasts: Vec<(Frame, Option<LocalId>)>,
    /// This reactor's handlers published this turn: the frames wait in its
    /// own inbox (in seq order with everyone else's), not woken.
    pub(crate) posted_to_self: bool,
    /// This reactor's subscriber sets.
    pub(crate) topics: Topics,
    /// Scratch space for writing small frames straight to a socket.
    pub(crate) scratch: Vec<u8>,
    /// Scratch space for copying small output chunks into one write.
    pub(crate) gather: Vec<u8>,
    /// Bytes this reactor's connections hold in buffers (the memory budget's count).
    pub(crate) held: usize,
    /// `held` (with compression contexts) as last posted to the budget.
    pub(crate) held_posted: usize,
    /// The heap bytes of the connection slab (it only grows).
    pub(crate) slab_bytes: usize,
    /// The tick of the last shedding (at most one per tick).
    pub(crate) last_shed: Tick,
    /// Connections closed since the last warning because a message outgrew
    /// the memory budget.
    pub(crate) outgrown: u32,
    /// The tick of the last such warning (at most one per tick).
    pub(crate) last_warned: Tick,
    /// Connections whose reading paused for want of room in the memory budget.
    pub(crate) starved: Vec<usize>,
    /// The highest count since malloc last gave memory back, and the tick then.
    pub(crate) trim_mark: usize,
    pub(crate) last_trim: Tick,
}

impl ReactorState {
    pub(crate) fn new(id: usize, cfg: Arc<Config>, handle: ServerHandle) -> Self {
        let t = cfg.timeouts;
        let in_ticks = |d: Duration| -> Tick {
            if d.is_zero() {
                return 0;
            }
            let n = d.as_nanos().div_ceil(t.tick.as_nanos()).max(1);
            // Keep far below the wrap-around horizon of tick arithmetic.
            u32::try_from(n).unwrap_or(u32::MAX).min(u32::MAX / 4)
        };
        let timeouts = Timeouts {
            handshake: in_ticks(t.handshake),
            ping: in_ticks(t.ping_interval),
            pong: in_ticks(t.pong),
            idle: in_ticks(t.idle),
            close: in_ticks(t.close),
        };
        let counters = Arc::clone(&handle.shared.counters[id]);
        let deflate = Deflate::new(cfg.deflate, Arc::clone(&counters));
        let topics = Topics::new(cfg.slow_consumer.clone(), Arc::clone(&handle.shared.unpublished));
        ReactorState {
            reactor_id: id,
            bufs: Pool::with_byte_cap(POOLED_BUFS, POOLED_BUFS_BYTES),
            chunks: Pool::with_byte_cap(POOLED_CHUNKS, POOLED_CHUNKS_BYTES),
            deflate,
            counters,
            wheel: Wheel::new(t.tick, WHEEL_SLOTS, Instant::now()),
            timeouts,
            write_stall: in_ticks(t.write_stall),
            tick: 0,
            local_broadcasts: Vec::new(),
            posted_to_self: false,
            topics,
            scratch: Vec::new(),
            gather: Vec::with_capacity(outq::GATHER_LIMIT),
            held: 0,
            held_posted: 0,
            slab_bytes: 0,
            outgrown: 0,
            last_warned: u32::MAX,
            starved: Vec::new(),
            trim_mark: 0,
            last_trim: u32::MAX,
            last_shed: u32::MAX,
            cfg,
            handle,
        }
    }

    /// Queues `frame` for every open connection of every reactor at the end
    /// of this turn, but the one in `skip` (one of this reactor's).
    pub(crate) fn broadcast_local(&mut self, frame: Frame, skip: Option<LocalId>) {
        self.local_broadcasts.push((frame, skip));
    }

    /// What this reactor holds now: its connections (their slots, buffers,
    /// compression contexts and subscriptions), and its pools.
    pub(crate) fn holding(&self) -> usize {
        self.held
            + self.slab_bytes
            + self.deflate.held()
            + self.topics.bytes()
            + self.bufs.bytes()
            + self.chunks.bytes()
    }

    /// Bytes the server may still take before its budget is spent: the
    /// others' counts as last posted, and this reactor's as of now. A count
    /// that moved by more than [`POST_EVERY`] since it was last posted is
    /// posted now, so that reactors filling the budget at once see each
    /// other well before their turns end.
    pub(crate) fn memory_room(&mut self) -> usize {
        let mine = self.holding();
        let budget = &self.handle.shared.budget;
        if mine.abs_diff(self.held_posted) > POST_EVERY {
            budget.post(&mut self.held_posted, mine);
        }
        let others = budget.held().saturating_sub(self.held_posted);
        budget.usable().saturating_sub(others + mine)
    }
}
