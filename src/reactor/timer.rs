//! A hashed timing wheel with lazy cancellation, for connection deadlines.
//!
//! Time is cut into ticks of a fixed length (100 ms to 1 s suits
//! WebSocket timeouts), counted as `u32` from the instant the wheel was made.
//! The wheel is a ring of `slots` vectors (a power of two); a deadline due at
//! tick `d` waits in slot `d % slots`. Arming is a push onto that vector;
//! advancing the clock visits only the slots whose ticks have passed and
//! takes out the entries that are due, leaving those of later rotations.
//!
//! There is no cancel operation: the caller keeps, per connection, the one
//! due tick it cares about and ignores entries that no longer match it (see
//! [`Wheel`]). An idle connection therefore costs one 12-byte [`Entry`] here
//! and a `u32` in its slot, and a connection that is busy costs nothing more:
//! activity updates a time stamp that is looked at when the deadline fires.

use std::time::{Duration, Instant};

/// The most slots a wheel will have: 2^20 slots are 24 MiB of empty vectors,
/// far more than a deadline horizon of minutes needs at 100 ms a tick.
const MAX_SLOTS: usize = 1 << 20;

/// How far past the wheel's current tick a due tick may lie (2^31 - 1).
/// Ticks wrap around, so "has tick `d` been reached?" is answered with
/// wrapping (serial number) arithmetic, which needs every live tick to be
/// within half the `u32` range of the current one.
const MAX_AHEAD: u32 = (1 << 31) - 1;

/// Entries a slot may keep room for after it is processed (768 bytes).
const KEEP_CAPACITY: usize = 64;

/// Roomy vectors kept for reuse (see [`Wheel::advance`]).
const MAX_SPARES: usize = 4;

/// One armed deadline: which connection, which incarnation of it, and when.
///
/// 12 bytes, so a million idle connections cost 12 MB of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The connection's slab key.
    pub(crate) key: u32,
    /// The connection's generation when the entry was armed, so that an
    /// entry for a closed connection does not act on the next one to get the
    /// same slab key.
    pub(crate) generation: u32,
    /// The tick the entry was armed for (as given to [`Wheel::arm`]).
    pub(crate) due: u32,
}

/// Whether tick `due` has been reached when the wheel is at tick `now`:
/// `due` is at most 2^31 - 1 ticks before `now` (wrapping), anything else
/// is in the future.
fn reached(due: u32, now: u32) -> bool {
    now.wrapping_sub(due) <= MAX_AHEAD
}

/// A hashed timing wheel: O(1) arm, lazy cancel, and an advance that costs
/// the entries of the slots it passes.
///
/// # The caller's contract (lazy cancellation)
///
/// The wheel never forgets an entry except by firing it. Cancelling and
/// re-arming are the caller's business:
///
/// - The caller stores, next to each connection, the due tick of its one
///   pending deadline (or none), and its `generation`.
/// - To arm or re-arm, it stores the new due tick and calls [`Wheel::arm`]
///   with it. The old entry stays in the wheel and becomes stale.
/// - To cancel, it clears (or changes) the stored due tick.
/// - When [`Wheel::advance`] hands out an [`Entry`], the caller acts on it
///   **only if** the connection at `key` still exists, has the same
///   `generation`, and has `due` as its stored due tick; everything else is
///   stale and is dropped. After acting, the caller clears the stored due
///   tick or re-arms (which changes it), so that a second entry with the same
///   key and due tick (from arming the same tick twice) is seen as stale.
///
/// Stale entries leave the wheel when their tick comes, so the wheel holds at
/// most the live deadlines plus the re-arms of the last longest timeout.
///
/// # Ticks and wrap-around
///
/// Ticks are `u32`, counted from the `now` given to [`Wheel::new`]; tick `n`
/// starts at `now + n * tick`. They wrap after 2^32 ticks: about 13.6 years
/// at 100 ms a tick, 136 years at 1 s, but only 49.7 days at 1 ms. The wheel
/// is wrap-safe: it keeps its own position in 64 bits and compares due ticks
/// with wrapping arithmetic, which holds while every due tick is within 2^31
/// ticks of the current one. [`Wheel::tick_at`] clamps its answers to that
/// window (at most `2^31 - 1` ticks ahead: 6.8 years at 100 ms), and
/// [`Wheel::advance`] must run at least once per 2^31 ticks, which a reactor
/// polling with [`Wheel::next_wakeup`] as its timeout does many times over.
pub(crate) struct Wheel {
    /// The instant of tick 0.
    start: Instant,
    /// The length of a tick in nanoseconds (at least 1).
    tick_nanos: u64,
    /// The ring; its length is a power of two.
    slots: Box<[Vec<Entry>]>,
    /// `slots.len() - 1`.
    mask: usize,
    /// The last tick processed by `advance`, not wrapped.
    current: u64,
    /// When tick `current + 1` starts (`None` past what `Instant` or 2^64
    /// nanoseconds, 584 years, can represent: the wheel then stands still).
    next_at: Option<Instant>,
    /// Entries held, stale ones included.
    len: usize,
    /// Roomy vectors from emptied slots, handed to the next slot that fills
    /// up, so a herd of entries moving round the ring reuses one allocation.
    spare: Vec<Vec<Entry>>,
}

impl Wheel {
    /// Makes an empty wheel whose tick 0 is `now`.
    ///
    /// `slots` is rounded up to a power of two, between 1 and 2^20; a zero
    /// `tick` is taken as 1 ns. A wheel of `slots` slots covers
    /// `slots * tick` in one rotation: deadlines further away than that wait
    /// in their slot for later rotations, and cost a look each time their
    /// slot comes round.
    pub(crate) fn new(tick: Duration, slots: usize, now: Instant) -> Self {
        let slots = slots.clamp(1, MAX_SLOTS).next_power_of_two();
        let tick_nanos = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
        let mut wheel = Wheel {
            start: now,
            tick_nanos,
            slots: (0..slots).map(|_| Vec::new()).collect(),
            mask: slots - 1,
            current: 0,
            next_at: None,
            len: 0,
            spare: Vec::new(),
        };
        wheel.next_at = wheel.start_of(1);
        wheel
    }

    /// The length of a tick.
    #[cfg_attr(not(test), allow(dead_code))] // tests and benches/timer.rs
    pub(crate) fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_nanos)
    }

    /// The number of slots (a power of two).
    #[cfg_attr(not(test), allow(dead_code))] // tests and benches/timer.rs
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The tick the wheel is at: the last one [`Wheel::advance`] processed
    /// (wrapping).
    pub(crate) fn now_tick(&self) -> u32 {
        // Truncation is the wrap-around.
        self.current as u32
    }

    /// The first tick that starts at or after `t`: a deadline armed for it
    /// never fires before `t`, and at most one tick after.
    ///
    /// The answer is clamped to `now_tick() ..= now_tick() + 2^31 - 1`: an
    /// instant already passed gives the current tick (armed, it fires on the
    /// next tick), and one more than 2^31 - 1 ticks away gives the furthest
    /// tick the wrapping arithmetic can tell from the past.
    #[cfg_attr(not(test), allow(dead_code))] // tests and benches/timer.rs
    pub(crate) fn tick_at(&self, t: Instant) -> u32 {
        let ticks = self.nanos_since(t).div_ceil(self.tick_nanos);
        let ticks = ticks.clamp(self.current, self.current.saturating_add(u64::from(MAX_AHEAD)));
        // Truncation is the wrap-around.
        ticks as u32
    }

    /// The instant tick `tick` (wrapping, within 2^31 of the current tick)
    /// starts: the earliest time a deadline armed for it can fire. `None` if
    /// that is beyond what `Instant` can represent.
    #[cfg_attr(not(test), allow(dead_code))] // tests and benches/timer.rs
    pub(crate) fn instant_of(&self, tick: u32) -> Option<Instant> {
        let now = self.now_tick();
        let ticks = if reached(tick, now) {
            self.current.checked_sub(u64::from(now.wrapping_sub(tick)))?
        } else {
            self.current.checked_add(u64::from(tick.wrapping_sub(now)))?
        };
        self.start_of(ticks)
    }

    /// The instant unwrapped tick `ticks` starts.
    fn start_of(&self, ticks: u64) -> Option<Instant> {
        let nanos = ticks.checked_mul(self.tick_nanos)?;
        self.start.checked_add(Duration::from_nanos(nanos))
    }

    /// Nanoseconds from tick 0 to `t` (0 before it), saturating after 584
    /// years. Ticks are computed in `u64`: a `u128` division would cost
    /// more than the rest of `arm`.
    fn nanos_since(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Arms a deadline for connection `key` (incarnation `generation`) at
    /// tick `due`, usually from [`Wheel::tick_at`]. O(1): one push onto the
    /// slot's vector, which keeps its capacity, so arming allocates only
    /// while a slot grows past its largest size so far.
    ///
    /// A `due` at or before the current tick (up to 2^31 - 1 ticks back,
    /// wrapping) goes into the next slot to be processed and fires on the
    /// next tick; the entry keeps the `due` it was given, so the caller's
    /// check still matches.
    pub(crate) fn arm(&mut self, key: u32, generation: u32, due: u32) {
        let now = self.now_tick();
        let at = if reached(due, now) { now.wrapping_add(1) } else { due };
        // `mask` is below 2^20, so only the low bits of the tick matter.
        let slot = &mut self.slots[at as usize & self.mask];
        if slot.len() == slot.capacity() {
            if let Some(mut roomy) = self.spare.pop() {
                roomy.extend_from_slice(slot);
                *slot = roomy;
            }
        }
        slot.push(Entry { key, generation, due });
        self.len += 1;
    }

    /// Moves the wheel to the tick `now` is in, appending to `fired` every
    /// entry due at or before it (in no particular order), stale ones
    /// included: the caller filters them (see [`Wheel`]).
    ///
    /// Visits each slot between the last processed tick and the new one
    /// once; entries due in later rotations stay. If `now` is a whole
    /// rotation or more ahead, every slot is visited once, not once per tick.
    /// The cost is the entries of the visited slots plus one look per slot.
    /// An earlier `now` than last time does nothing.
    pub(crate) fn advance(&mut self, now: Instant, fired: &mut Vec<Entry>) {
        // Most calls (a reactor woken for I/O) stay within the current tick.
        if self.next_at.is_none_or(|next| now < next) {
            return;
        }
        let target = self.nanos_since(now) / self.tick_nanos;
        if target <= self.current {
            return;
        }
        let behind = target - self.current;
        self.current = target;
        self.next_at = self.start_of(target.saturating_add(1));
        if self.len == 0 {
            return;
        }
        let tick = self.now_tick();
        let ring = self.slots.len() as u64;
        let (first, count) = if behind >= ring { (0, ring) } else { (target - behind + 1, behind) };
        let before = fired.len();
        for i in 0..count {
            // Masked below 2^20, so the cast keeps every bit that matters.
            let slot = &mut self.slots[(first.wrapping_add(i) as usize) & self.mask];
            if slot.is_empty() {
                continue;
            }
            slot.retain(|e| {
                let due = reached(e.due, tick);
                if due {
                    fired.push(*e);
                }
                !due
            });
            // Connections opened together have deadlines together: a herd
            // of entries passes through every slot in turn, and if each slot
            // kept the capacity it once needed, the wheel would hold
            // slots x herd entries. An emptied roomy slot gives its vector to
            // the spares (for the slot the herd fills next); others shrink.
            if slot.capacity() > KEEP_CAPACITY && slot.len() < slot.capacity() / 4 {
                if slot.is_empty() && self.spare.len() < MAX_SPARES {
                    self.spare.push(std::mem::take(slot));
                } else {
                    slot.shrink_to(KEEP_CAPACITY.max(slot.len() * 2));
                }
            }
        }
        self.len -= fired.len() - before;
    }

    /// When the reactor must wake up next for the wheel: the start of the
    /// next tick while the wheel holds any entry (stale ones included), or
    /// `None` when it is empty. O(1); use it as (a bound on) the poll
    /// timeout. With entries held, a reactor wakes once a tick, which is the
    /// price of not tracking the earliest due tick.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        self.next_at
    }

    /// The entries held, stale ones included.
    #[cfg_attr(not(test), allow(dead_code))] // tests and benches/timer.rs
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no entry.
    #[cfg_attr(not(test), allow(dead_code))] // tests and benches/timer.rs
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    const TICK: Duration = Duration::from_millis(100);

    /// The caller's side: each connection's stored due tick and generation.
    struct Caller {
        due: Vec<Option<u32>>,
        generation: Vec<u32>,
    }

    impl Caller {
        fn new(n: usize) -> Self {
            Caller { due: vec![None; n], generation: vec![0; n] }
        }

        fn arm(&mut self, wheel: &mut Wheel, key: u32, due: u32) {
            self.due[key as usize] = Some(due);
            wheel.arm(key, self.generation[key as usize], due);
        }

        fn cancel(&mut self, key: u32) {
            self.due[key as usize] = None;
        }

        /// Keeps the live entries of `fired` (and clears their stored due).
        fn live(&mut self, fired: &mut Vec<Entry>) -> Vec<Entry> {
            let mut live = Vec::new();
            for e in fired.drain(..) {
                let k = e.key as usize;
                if self.generation[k] == e.generation && self.due[k] == Some(e.due) {
                    self.due[k] = None;
                    live.push(e);
                }
            }
            live
        }
    }

    fn at(start: Instant, d: Duration) -> Instant {
        start + d
    }

    fn ticks(n: u32) -> Duration {
        TICK * n
    }

    #[test]
    fn entry_is_12_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 12);
    }

    #[test]
    fn slots_round_up_to_a_power_of_two() {
        let start = Instant::now();
        assert_eq!(Wheel::new(TICK, 1000, start).slots(), 1024);
        assert_eq!(Wheel::new(TICK, 512, start).slots(), 512);
        assert_eq!(Wheel::new(TICK, 0, start).slots(), 1);
        assert_eq!(Wheel::new(TICK, usize::MAX, start).slots(), MAX_SLOTS);
        assert_eq!(Wheel::new(Duration::ZERO, 8, start).tick(), Duration::from_nanos(1));
    }

    #[test]
    fn tick_at_rounds_up() {
        let start = Instant::now();
        let w = Wheel::new(TICK, 64, start);
        assert_eq!(w.tick_at(start), 0);
        assert_eq!(w.tick_at(at(start, Duration::from_nanos(1))), 1);
        assert_eq!(w.tick_at(at(start, TICK)), 1);
        assert_eq!(w.tick_at(at(start, TICK + Duration::from_nanos(1))), 2);
        assert_eq!(w.tick_at(at(start, Duration::from_secs(60))), 600);
        assert_eq!(w.instant_of(600), Some(at(start, Duration::from_secs(60))));
    }

    #[test]
    fn tick_at_clamps_past_and_far_future() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 64, start);
        let mut fired = Vec::new();
        w.advance(at(start, ticks(10)), &mut fired);
        assert_eq!(w.now_tick(), 10);
        assert_eq!(w.tick_at(start), 10, "the past is the current tick");
        let far = at(start, Duration::from_secs(100 * 365 * 24 * 3600));
        assert_eq!(w.tick_at(far), 10 + MAX_AHEAD);
    }

    #[test]
    fn fires_at_the_due_tick_and_never_early() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 16, start);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // Deadlines at odd instants, up to three rotations away.
        let deadlines: Vec<Instant> = (0..500)
            .map(|_| at(start, Duration::from_micros(1 + rng.below(3 * 16 * 100_000) as u64)))
            .collect();
        for (key, &d) in deadlines.iter().enumerate() {
            w.arm(key as u32, 0, w.tick_at(d));
        }
        let mut fired = Vec::new();
        let mut seen = vec![false; deadlines.len()];
        // Walk the clock in 7 ms steps.
        let mut now = start;
        while now < at(start, Duration::from_secs(6)) {
            now += Duration::from_millis(7);
            w.advance(now, &mut fired);
            for e in fired.drain(..) {
                let d = deadlines[e.key as usize];
                assert!(now >= d, "entry {} fired early", e.key);
                assert!(now - d < TICK + Duration::from_millis(7), "entry {} fired late", e.key);
                assert_eq!(e.due, w.now_tick());
                assert!(!seen[e.key as usize]);
                seen[e.key as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert!(w.is_empty());
    }

    #[test]
    fn past_due_fires_on_the_next_tick() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        let mut fired = Vec::new();
        w.advance(at(start, ticks(20)), &mut fired);
        w.arm(1, 0, 5);
        w.arm(2, 0, 20);
        w.arm(3, 0, w.tick_at(start));
        w.advance(at(start, ticks(20) + Duration::from_millis(99)), &mut fired);
        assert!(fired.is_empty());
        w.advance(at(start, ticks(21)), &mut fired);
        fired.sort_by_key(|e| e.key);
        let dues: Vec<(u32, u32)> = fired.iter().map(|e| (e.key, e.due)).collect();
        assert_eq!(dues, [(1, 5), (2, 20), (3, 20)], "entries keep the due they were given");
    }

    #[test]
    fn later_rounds_survive_rotations() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        let due = 3 + 8 * 5;
        w.arm(7, 0, due);
        w.arm(8, 0, 3);
        let mut fired = Vec::new();
        for t in 1..=60 {
            w.advance(at(start, ticks(t)), &mut fired);
            for e in fired.drain(..) {
                assert_eq!(e.due, t, "fired at tick {t}");
            }
        }
        assert!(w.is_empty());
    }

    #[test]
    fn lazy_cancel_drops_stale_entries() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        let mut c = Caller::new(4);
        for key in 0..4 {
            c.arm(&mut w, key, 5);
        }
        c.cancel(1);
        c.cancel(3);
        assert_eq!(w.len(), 4, "cancel does not touch the wheel");
        let mut fired = Vec::new();
        w.advance(at(start, ticks(5)), &mut fired);
        assert_eq!(fired.len(), 4, "stale entries come out too");
        let mut live: Vec<u32> = c.live(&mut fired).iter().map(|e| e.key).collect();
        live.sort_unstable();
        assert_eq!(live, [0, 2]);
        assert!(w.is_empty(), "stale entries are gone once fired");
    }

    #[test]
    fn rearm_later_and_earlier() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        let mut c = Caller::new(2);
        c.arm(&mut w, 0, 4);
        c.arm(&mut w, 0, 30); // later: the entry at 4 is stale
        c.arm(&mut w, 1, 20);
        c.arm(&mut w, 1, 2); // earlier: the entry at 20 is stale
        let mut fired = Vec::new();
        let mut log = Vec::new();
        for t in 1..=40 {
            w.advance(at(start, ticks(t)), &mut fired);
            for e in c.live(&mut fired) {
                log.push((t, e.key));
            }
        }
        assert_eq!(log, [(2, 1), (30, 0)]);
        assert!(w.is_empty());
    }

    #[test]
    fn rearm_to_the_same_tick_acts_once() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        let mut c = Caller::new(1);
        c.arm(&mut w, 0, 3);
        c.arm(&mut w, 0, 6);
        c.arm(&mut w, 0, 3); // back to 3: two entries (0, 3) in the wheel
        let mut fired = Vec::new();
        w.advance(at(start, ticks(10)), &mut fired);
        assert_eq!(fired.len(), 3);
        assert_eq!(c.live(&mut fired).len(), 1, "the caller clears its due after acting");
    }

    #[test]
    fn a_reused_key_ignores_the_old_generation() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        let mut c = Caller::new(1);
        c.arm(&mut w, 0, 5);
        // The connection closes; a new one gets the same key and arms the same tick.
        c.generation[0] += 1;
        c.arm(&mut w, 0, 5);
        let mut fired = Vec::new();
        w.advance(at(start, ticks(5)), &mut fired);
        let live = c.live(&mut fired);
        assert_eq!(live, [Entry { key: 0, generation: 1, due: 5 }]);
    }

    #[test]
    fn a_jump_of_many_rotations_visits_each_slot_once() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        // One entry per tick over 10 rotations.
        for due in 1..=80 {
            w.arm(due, 0, due);
        }
        let mut fired = Vec::new();
        // Jump 6.5 rotations: ticks 1..=52 are due, the rest stay.
        w.advance(at(start, ticks(52) + Duration::from_millis(50)), &mut fired);
        let mut keys: Vec<u32> = fired.drain(..).map(|e| e.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, (1..=52).collect::<Vec<u32>>());
        assert_eq!(w.len(), 28);
        assert_eq!(w.now_tick(), 52);
        // Then tick by tick again.
        for t in 53..=80 {
            w.advance(at(start, ticks(t)), &mut fired);
            assert_eq!(fired.drain(..).map(|e| e.key).collect::<Vec<u32>>(), [t]);
        }
        // A jump of a million rotations with nothing due moves the clock.
        w.arm(1, 0, 81 + 8 * 2_000_000);
        w.advance(at(start, ticks(8 * 1_000_000)), &mut fired);
        assert!(fired.is_empty());
        assert_eq!(w.now_tick(), 8_000_000);
        w.advance(at(start, ticks(81 + 8 * 2_000_000)), &mut fired);
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn many_timers_in_one_slot() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 64, start);
        for key in 0..100_000 {
            w.arm(key, 0, 7);
        }
        // And as many two rotations later in the same slot.
        for key in 100_000..200_000 {
            w.arm(key, 0, 7 + 128);
        }
        assert_eq!(w.len(), 200_000);
        let mut fired = Vec::new();
        w.advance(at(start, ticks(7)), &mut fired);
        assert_eq!(fired.len(), 100_000);
        assert!(fired.iter().all(|e| e.key < 100_000 && e.due == 7));
        assert_eq!(w.len(), 100_000);
        assert!(w.slots[7].capacity() >= 200_000, "the slot keeps its capacity");
        fired.clear();
        w.advance(at(start, ticks(7 + 128)), &mut fired);
        assert_eq!(fired.len(), 100_000);
        assert!(w.is_empty());
        assert!(w.slots[7].capacity() <= KEEP_CAPACITY, "an emptied slot keeps little room");
    }

    #[test]
    fn a_herd_passing_through_every_slot_leaves_no_room_behind() {
        // 10,000 connections opened together, re-armed together every 3 ticks.
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 1024, start);
        let mut fired = Vec::new();
        let mut due = 3;
        for key in 0..10_000 {
            w.arm(key, 0, due);
        }
        for _ in 0..2_000 {
            fired.clear();
            w.advance(at(start, ticks(due)), &mut fired);
            assert_eq!(fired.len(), 10_000);
            due += 3;
            for e in &fired {
                w.arm(e.key, 0, due);
            }
        }
        let room: usize = w.slots.iter().chain(&w.spare).map(Vec::capacity).sum();
        let bound = (MAX_SPARES + 2) * 16_384 + 1024 * KEEP_CAPACITY;
        assert!(room <= bound, "the wheel keeps room for {room} entries");
    }

    #[test]
    fn many_timers_spread_out() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 256, start);
        let mut c = Caller::new(100_000);
        let mut rng = Rng(42);
        for key in 0..100_000 {
            // Up to four rotations ahead.
            c.arm(&mut w, key, 1 + rng.below(1024) as u32);
        }
        // Re-arm a third of them, cancel a tenth.
        for key in 0..100_000u32 {
            match key % 30 {
                0..=9 => c.arm(&mut w, key, 1 + rng.below(1024) as u32),
                10..=12 => c.cancel(key),
                _ => {}
            }
        }
        let expected = c.due.iter().filter(|d| d.is_some()).count();
        let mut fired = Vec::new();
        let mut acted = 0;
        for t in 1..=1100 {
            w.advance(at(start, ticks(t)), &mut fired);
            for e in c.live(&mut fired) {
                assert_eq!(e.due, t);
                acted += 1;
            }
        }
        assert_eq!(acted, expected);
        assert!(c.due.iter().all(Option::is_none));
        assert!(w.is_empty());
    }

    #[test]
    fn ticks_wrap_around() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 16, start);
        let mut fired = Vec::new();
        // 2^32 - 3 ticks later: 13.6 years at 100 ms.
        let near_wrap = u64::from(u32::MAX) - 2;
        let t0 = at(start, Duration::from_nanos(100_000_000 * near_wrap));
        w.advance(t0, &mut fired);
        assert_eq!(w.now_tick(), u32::MAX - 2);
        // Armed 10 ticks ahead: the due tick wraps to 7.
        let due = w.tick_at(t0 + ticks(10));
        assert_eq!(due, 7);
        assert_eq!(w.instant_of(due), Some(t0 + ticks(10)));
        w.arm(1, 0, due);
        // And one just before the wrap, and one in the past across it later.
        w.arm(2, 0, u32::MAX);
        for step in 1..=10 {
            w.advance(t0 + ticks(step), &mut fired);
            let tick = w.now_tick();
            for e in fired.drain(..) {
                assert_eq!(e.due, tick, "entry {} at step {step}", e.key);
                match e.key {
                    1 => assert_eq!(step, 10),
                    2 => assert_eq!(step, 2),
                    _ => unreachable!(),
                }
            }
        }
        assert_eq!(w.now_tick(), 7);
        assert!(w.is_empty());
        // A due tick from before the wrap is in the past.
        w.arm(3, 0, u32::MAX - 1);
        w.advance(t0 + ticks(11), &mut fired);
        assert_eq!(fired, [Entry { key: 3, generation: 0, due: u32::MAX - 1 }]);
    }

    #[test]
    fn next_wakeup_is_the_next_tick_while_anything_is_held() {
        let start = Instant::now();
        let mut w = Wheel::new(TICK, 8, start);
        assert_eq!(w.next_wakeup(), None);
        w.arm(1, 0, 30);
        assert_eq!(w.next_wakeup(), Some(at(start, ticks(1))));
        let mut fired = Vec::new();
        w.advance(at(start, ticks(12) + Duration::from_millis(30)), &mut fired);
        assert_eq!(w.next_wakeup(), Some(at(start, ticks(13))));
        w.advance(at(start, ticks(30)), &mut fired);
        assert_eq!(fired.len(), 1);
        assert_eq!(w.next_wakeup(), None);
    }

    #[test]
    fn time_standing_still_or_going_back_does_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut w = Wheel::new(TICK, 8, start);
        w.arm(1, 0, 0);
        let mut fired = Vec::new();
        w.advance(start - Duration::from_millis(500), &mut fired);
        w.advance(start, &mut fired);
        w.advance(at(start, Duration::from_millis(99)), &mut fired);
        assert!(fired.is_empty());
        assert_eq!(w.now_tick(), 0);
        w.advance(at(start, TICK), &mut fired);
        assert_eq!(fired.len(), 1);
        w.advance(start, &mut fired);
        assert_eq!(w.now_tick(), 1);
    }
}
