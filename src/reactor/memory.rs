//! The memory budget: one number that bounds what a server holds for its
//! connections (their slots, output queues, partial input, reassembly and
//! inflate buffers, compression contexts, subscriber sets, and the frames
//! waiting in reactors' inboxes, and the pools), whatever its clients do.
//!
//! Each reactor counts what its connections hold as their buffers change
//! (a few additions per connection and read, no atomics), posts its count
//! to the server-wide one whenever it has moved by 256 KiB and at the end
//! of each loop turn, and holds growth to what the budget has left:
//! - a message (being reassembled or inflated) grows only into the room
//!   left; one that would outgrow it is closed with 1009;
//! - a connection is not read while the room left could not take the reply
//!   its next message may bring (a publisher: the publish), so it meets TCP
//!   backpressure; as the budget fills, each read takes at most an eighth
//!   of the room left;
//! - a delivery to a subscriber whose queue is not empty needs room too,
//!   or its topic's slow-consumer policy applies.
//!
//! Buffers grow into seven eighths of the cap; the allocator's overhead and
//! fragmentation take the rest. From 80% on, new upgrades are refused with
//! HTTP 503 (and subscriptions to topics never published, which cost memory
//! too, with `too_many_topics`). Should the count pass the cap all the same,
//! each reactor sheds, at most once per timer tick, its share of the excess
//! down to 80%, pools first, then the biggest holders:
//! - a connection holding mostly partial input is closed with 1009 and its
//!   buffers freed;
//! - one holding mostly output first loses the queued deliveries its topics'
//!   slow-consumer policies let go (every frame of a `drop` topic, all but
//!   the newest of a `conflate` topic); if that does not halve what it
//!   holds, its unwritten output is dropped and it is closed with 1008
//!   ("slow consumer").
//!
//! A frame shared by many queues is counted in each (an upper bound on what
//! it costs), so the count never understates. With glibc, once half the
//! budget is held, a reactor whose count has fallen by 4 MiB asks malloc to
//! give the freed pages back.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::conn::{AGAIN, DISCARD, READ_PAUSED, STARVED, State};
use super::handler::Handler;
use super::input::peer;
use super::{Env, Reactor};
use crate::proto::CloseCode;
use crate::stats::Counter;

/// A reactor posts its count when it has moved by more than this since its
/// last post, as well as at the end of each loop turn.
const POST_EVERY: usize = 256 << 10;

/// Under memory pressure, a reactor asks malloc to give freed memory back to
/// the system once its count has fallen by this much since it last did.
const TRIM_AFTER: usize = 4 << 20;

/// Returns the free pages of malloc's heaps to the system (glibc only; other
/// allocators give memory back on their own terms).
fn give_back_to_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The server-wide count against the cap, shared by the reactors.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    /// Frames posted to reactors' inboxes and not yet taken out (a frame
    /// posted to several counts in each).
    in_flight: AtomicUsize,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Budget { held: AtomicUsize::new(0), in_flight: AtomicUsize::new(0), max }
    }

    /// Bytes held now: each reactor's count as last posted, and the frames
    /// waiting in inboxes.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Relaxed)
    }

    /// `bytes` of frames were posted to an inbox.
    pub(crate) fn posted(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` of frames were taken out of an inbox.
    pub(crate) fn taken(&self, bytes: usize) {
        self.in_flight.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// What buffers may grow into: seven eighths of the cap. The rest is
    /// for the allocator's own overhead and fragmentation (measured under
    /// the hostile tests at 2 to 8% of what is counted).
    fn usable(&self) -> usize {
        self.max - self.max / 8
    }

    /// Whether new connections are refused: 80% of the cap or more is held.
    pub(crate) fn nearly_spent(&self) -> bool {
        self.held() >= self.floor()
    }

    /// 80% of the cap: upgrades are refused from here on, and shedding
    /// frees down to here.
    fn floor(&self) -> usize {
        self.max / 10 * 8
    }

    /// Posts a reactor's new count (`now`), given the one it posted last.
    fn post(&self, posted: &mut usize, now: usize) {
        if now > *posted {
            self.held.fetch_add(now - *posted, Ordering::Relaxed);
        } else if now < *posted {
            self.held.fetch_sub(*posted - now, Ordering::Relaxed);
        }
        *posted = now;
    }
}

impl Env {
    /// What this reactor holds now: its connections (their slots, buffers,
    /// compression contexts and subscriptions), and its pools.
    fn holding(&self) -> usize {
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

/// Makes room in `v` for `extra` more bytes if what that allocates fits in
/// `room`: doubling as a `Vec` does while it fits, only what is needed when
/// that alone fits; false if not even that does.
pub(crate) fn reserve_within(v: &mut Vec<u8>, extra: usize, room: usize) -> bool {
    let need = v.len().saturating_add(extra);
    let cap = v.capacity();
    if need <= cap {
        return true;
    }
    let doubled = need.max(cap.saturating_mul(2));
    if doubled - cap <= room {
        v.reserve_exact(doubled - v.len());
    } else if need - cap <= room {
        v.reserve_exact(extra);
    } else {
        return false;
    }
    true
}

impl<H: Handler> Reactor<H> {
    /// At the end of a loop turn: posts what this reactor holds, and sheds
    /// if the server is over its cap.
    pub(super) fn check_memory(&mut self) {
        let held = self.env.holding();
        let budget = &self.env.handle.shared.budget;
        if held != self.env.held_posted {
            budget.post(&mut self.env.held_posted, held);
        }
        self.env.counters.set(Counter::MemoryHeld, held as u64);
        // Under pressure (half the budget held), what connections let go of
        // goes back to the system, at most once a tick: glibc's malloc keeps
        // freed memory amid its heap otherwise.
        self.env.trim_mark = self.env.trim_mark.max(held);
        if self.env.trim_mark - held >= TRIM_AFTER
            && self.env.tick != self.env.last_trim
            && budget.held() > budget.max / 2
        {
            self.env.last_trim = self.env.tick;
            self.env.trim_mark = held;
            give_back_to_system();
        }
        let (total, max) = (budget.held(), budget.max);
        if self.env.outgrown > 0 && self.env.tick != self.env.last_warned {
            self.env.last_warned = self.env.tick;
            log::warn!(
                "reactor {}: closed {} connection(s) with 1009 whose messages outgrew the memory \
                 budget ({total} of {max} bytes held)",
                self.env.reactor_id,
                std::mem::take(&mut self.env.outgrown),
            );
        }
        if total <= max || self.env.tick == self.env.last_shed {
            return;
        }
        self.env.last_shed = self.env.tick;
        // This reactor's share of the way down to 80% of the cap.
        let excess = total - budget.floor();
        let goal = (excess as u128 * held as u128 / total as u128) as usize;
        self.shed(goal);
    }

    /// Lets the connections paused for want of room read again, once a
    /// thirty-second of the budget is free (less would have them pause again
    /// at once, turn after turn).
    pub(super) fn feed_starved(&mut self) {
        if self.env.starved.is_empty()
            || self.env.memory_room() < self.env.handle.shared.budget.max / 32
        {
            return;
        }
        let mut starved = std::mem::take(&mut self.env.starved);
        for slot in starved.drain(..) {
            let Some(c) = self.conns.get_mut(slot) else { continue };
            c.flags &= !STARVED;
            if c.has(READ_PAUSED) {
                c.flags &= !READ_PAUSED;
                if !c.has(AGAIN) {
                    c.flags |= AGAIN;
                    self.again.push(slot);
                }
            }
        }
        self.env.starved = starved;
    }

    /// Empties the pools, then sheds connections, biggest holders first,
    /// until `goal` bytes are freed.
    fn shed(&mut self, goal: usize) {
        let pooled = self.env.bufs.empty() + self.env.chunks.empty();
        let goal = goal.saturating_sub(pooled);
        let mut hogs: Vec<(usize, usize)> = self
            .conns
            .iter()
            .filter_map(|(slot, c)| {
                let held = c.bufs.as_ref().map_or(0, |b| b.holding());
                (held > 0).then_some((held, slot))
            })
            .collect();
        hogs.sort_unstable_by(|a, b| b.cmp(a));
        let (mut freed, mut shed) = (0, 0);
        for (_, slot) in hogs {
            if freed >= goal {
                break;
            }
            freed += self.shed_one(slot);
            shed += 1;
        }
        // One line per shedding, at most one per tick; each connection's at debug.
        log::warn!(
            "reactor {}: over the memory budget ({} of {} bytes): shed {shed} connection(s), \
             freeing {freed} bytes",
            self.env.reactor_id,
            self.env.handle.shared.budget.held(),
            self.env.handle.shared.budget.max
        );
    }

    /// Sheds one connection; returns the bytes freed.
    fn shed_one(&mut self, slot: usize) -> usize {
        let Some(conn) = self.conns.get_mut(slot) else { return 0 };
        let who = peer(conn);
        let Some(b) = conn.bufs.as_mut() else { return 0 };
        let before = b.holding();
        let input = b.carry.capacity() + b.message.capacity();
        if conn.state != State::Open {
            // Closing already: nothing it holds is worth keeping.
            log::debug!("{who}: dropped under memory pressure ({before} bytes)");
            self.env.counters.inc(Counter::MemoryShed);
            self.remove(slot);
            return before;
        }
        if input >= b.out.queued() {
            log::debug!(
                "{who}: {input} bytes of partial input under memory pressure; closing with 1009"
            );
            b.carry = Vec::new();
            b.message = Vec::new();
            conn.begin_close(&mut self.env, slot, CloseCode::TOO_BIG, "server memory limit");
            conn.flags |= DISCARD;
        } else {
            let dropped = b.out.shed();
            if b.out.queued() * 2 > before {
                log::debug!(
                    "{who}: {before} bytes of unread output under memory pressure; closing with 1008"
                );
                b.out.discard_unstarted(&mut self.env.chunks);
                conn.begin_close(&mut self.env, slot, CloseCode::POLICY, "slow consumer");
            } else {
                log::debug!(
                    "{who}: dropped {dropped} bytes of queued deliveries under memory pressure"
                );
            }
        }
        self.env.counters.inc(Counter::MemoryShed);
        let after = conn.bufs.as_ref().map_or(0, |b| b.holding());
        conn.account(&mut self.env);
        self.settle(slot);
        self.mark_dirty(slot);
        before.saturating_sub(after)
    }
}
