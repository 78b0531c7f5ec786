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

use super::conn::Flag;
use super::connections::Connections;
use super::handler::Handler;
use crate::proto::CloseCode;
use crate::stats::Counter;

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

impl<H: Handler> Connections<H> {
    /// At the end of a loop turn: posts what this reactor holds, and sheds
    /// if the server is over its cap.
    pub(crate) fn check_memory(&mut self) {
        let held = self.st.holding();
        let budget = &self.st.handle.shared.budget;
        if held != self.st.held_posted {
            budget.post(&mut self.st.held_posted, held);
        }
        self.st.counters.set(Counter::MemoryHeld, held as u64);
        // Under pressure (half the budget held), what connections let go of
        // goes back to the system, at most once a tick: glibc's malloc keeps
        // freed memory amid its heap otherwise.
        self.st.trim_mark = self.st.trim_mark.max(held);
        if self.st.trim_mark - held >= TRIM_AFTER
            && self.st.tick != self.st.last_trim
            && budget.held() > budget.max / 2
        {
            self.st.last_trim = self.st.tick;
            self.st.trim_mark = held;
            give_back_to_system();
        }
        let (total, max) = (budget.held(), budget.max);
        if self.st.outgrown > 0 && self.st.tick != self.st.last_warned {
            self.st.last_warned = self.st.tick;
            log::warn!(
                "reactor {}: closed {} connection(s) with 1009 whose messages outgrew the memory \
                 budget ({total} of {max} bytes held)",
                self.st.reactor_id,
                std::mem::take(&mut self.st.outgrown),
            );
        }
        if total <= max || self.st.tick == self.st.last_shed {
            return;
        }
        self.st.last_shed = self.st.tick;
        // This reactor's share of the way down to 80% of the cap.
        let excess = total - budget.floor();
        let goal = (excess as u128 * held as u128 / total as u128) as usize;
        self.shed(goal);
    }

    /// Lets the connections paused for want of room read again, once a
    /// thirty-second of the budget is free (less would have them pause again
    /// at once, turn after turn).
    pub(crate) fn feed_starved(&mut self) {
        if self.st.starved.is_empty()
            || self.st.memory_room() < self.st.handle.shared.budget.max / 32
        {
            return;
        }
        let mut starved = std::mem::take(&mut self.st.starved);
        for slot in starved.drain(..) {
            let Some(c) = self.slab.get_mut(slot) else { continue };
            c.flags.clear(Flag::Starved);
            if c.is(Flag::ReadPaused) {
                c.flags.clear(Flag::ReadPaused);
                self.read_again(slot);
            }
        }
        self.st.starved = starved;
    }

    /// Empties the pools, then sheds connections, biggest holders first,
    /// until `goal` bytes are freed.
    fn shed(&mut self, goal: usize) {
        let pooled = self.st.bufs.empty() + self.st.chunks.empty();
        let goal = goal.saturating_sub(pooled);
        let mut hogs: Vec<(usize, usize)> = self
            .slab
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
            self.st.reactor_id,
            self.st.handle.shared.budget.held(),
            self.st.handle.shared.budget.max
        );
    }

    /// Sheds one connection; returns the bytes freed.
    fn shed_one(&mut self, slot: usize) -> usize {
        let Some(conn) = self.slab.get_mut(slot) else { return 0 };
        let who = conn.peer();
        let open = conn.is_open();
        let Some(b) = conn.bufs.as_mut() else { return 0 };
        let before = b.holding();
        let input = b.carry.capacity() + b.message.capacity();
        if !open {
            // Closing already: nothing it holds is worth keeping.
            log::debug!("{who}: dropped under memory pressure ({before} bytes)");
            self.st.counters.inc(Counter::MemoryShed);
            self.remove(slot);
            return before;
        }
        if input >= b.out.queued() {
            log::debug!(
                "{who}: {input} bytes of partial input under memory pressure; closing with 1009"
            );
            b.carry = Vec::new();
            b.message = Vec::new();
            conn.begin_close(&mut self.st, slot, CloseCode::TOO_BIG, "server memory limit");
            conn.proto.discard_input();
        } else {
            let dropped = b.out.shed();
            if b.out.queued() * 2 > before {
                log::debug!(
                    "{who}: {before} bytes of unread output under memory pressure; closing with 1008"
                );
                b.out.discard_unstarted(&mut self.st.chunks);
                conn.begin_close(&mut self.st, slot, CloseCode::POLICY, "slow consumer");
            } else {
                log::debug!(
                    "{who}: dropped {dropped} bytes of queued deliveries under memory pressure"
                );
            }
        }
        self.st.counters.inc(Counter::MemoryShed);
        let after = conn.bufs.as_ref().map_or(0, |b| b.holding());
        conn.account(&mut self.st);
        self.settle(slot);
        self.mark_dirty(slot);
        before.saturating_sub(after)
    }
}
