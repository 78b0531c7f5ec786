//! Micro-benchmarks of the reactor's timing wheel against a binary heap of
//! `(deadline, key)` (the usual baseline), both measured in the same run on
//! a virtual clock that moves 100 ms per step, as a reactor's would.
//!
//! - `arm_fire`: arm N timers spread over the next 60 s, then advance step
//!   by step until all of them have fired. Reported per batch of N.
//! - `churn`: a resident population of N timers; every timer that fires is
//!   armed again up to 60 s ahead (a ping interval coming round). Reported
//!   per timer fired and re-armed.
//!
//! `cargo bench --bench timer` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a quick run).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

// The wheel is crate-private; the benchmark compiles its source file as a
// module of its own (it depends on nothing but std and, in its unit tests,
// the crate's test Rng). It uses only part of it, and `clippy --all-targets`
// builds benches with `cfg(test)` but without a test harness, which leaves
// the file's test helpers unused.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../src/testing.rs"]
mod testing;

#[allow(dead_code, unused_imports)]
#[path = "../src/reactor/timer.rs"]
mod timer;

use timer::{Entry, Wheel};

const TICK: Duration = Duration::from_millis(100);
/// Deadlines fall within this many ticks (60 s).
const HORIZON: u64 = 600;
/// 1024 slots of 100 ms: one rotation is 102.4 s, longer than the horizon.
const SLOTS: usize = 1024;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A delay between 1 ns and the horizon.
    fn delay(&mut self) -> Duration {
        let max = (TICK * HORIZON as u32).as_nanos() as u64;
        Duration::from_nanos(1 + self.next() % max)
    }
}

/// The two contestants behind one interface.
trait Timers {
    fn arm(&mut self, key: u32, deadline: Instant);
    /// Advances to `now` and calls `fire` with each expired key.
    fn expire(&mut self, now: Instant, fire: &mut dyn FnMut(u32));
    fn len(&self) -> usize;
}

struct WheelTimers {
    wheel: Wheel,
    fired: Vec<Entry>,
}

impl Timers for WheelTimers {
    fn arm(&mut self, key: u32, deadline: Instant) {
        let due = self.wheel.tick_at(deadline);
        self.wheel.arm(key, 0, due);
    }

    fn expire(&mut self, now: Instant, fire: &mut dyn FnMut(u32)) {
        self.wheel.advance(now, &mut self.fired);
        for e in self.fired.drain(..) {
            fire(e.key);
        }
    }

    fn len(&self) -> usize {
        self.wheel.len()
    }
}

struct HeapTimers {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl Timers for HeapTimers {
    fn arm(&mut self, key: u32, deadline: Instant) {
        self.heap.push(Reverse((deadline, key)));
    }

    fn expire(&mut self, now: Instant, fire: &mut dyn FnMut(u32)) {
        while let Some(&Reverse((deadline, key))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            fire(key);
        }
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

fn contestants(start: Instant) -> [(&'static str, Box<dyn Timers>); 2] {
    [
        (
            "wheel",
            Box::new(WheelTimers { wheel: Wheel::new(TICK, SLOTS, start), fired: Vec::new() }),
        ),
        ("heap", Box::new(HeapTimers { heap: BinaryHeap::new() })),
    ]
}

/// Arm `n` timers, then step the clock until all have fired.
fn arm_fire(c: &mut Criterion) {
    let mut group = c.benchmark_group("arm_fire");
    for n in [1_000u32, 100_000] {
        group.throughput(Throughput::Elements(u64::from(n)));
        let start = Instant::now();
        for (name, mut t) in contestants(start) {
            let mut now = start;
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter(|| {
                    for key in 0..n {
                        t.arm(key, now + rng.delay());
                    }
                    let mut fired = 0u32;
                    while t.len() > 0 {
                        now += TICK;
                        t.expire(now, &mut |key| fired = fired.wrapping_add(black_box(key)));
                    }
                    fired
                });
            });
        }
    }
    group.finish();
}

/// `n` resident timers; each one that fires is armed again.
fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("churn");
    group.throughput(Throughput::Elements(1));
    for n in [10_000u32, 1_000_000] {
        let start = Instant::now();
        for (name, mut t) in contestants(start) {
            let mut now = start;
            let mut rng = Rng(0x2545_F491_4F6C_DD1D);
            for key in 0..n {
                t.arm(key, now + rng.delay());
            }
            // One iteration is one timer fired and re-armed.
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut done = 0u64;
                    let mut rearm = Vec::new();
                    let began = Instant::now();
                    while done < iters {
                        now += TICK;
                        t.expire(now, &mut |key| rearm.push(key));
                        done += rearm.len() as u64;
                        for key in rearm.drain(..) {
                            t.arm(key, now + rng.delay());
                        }
                    }
                    // A step fires a whole tick's worth: scale to `iters`.
                    began.elapsed().mul_f64(iters as f64 / done as f64)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, arm_fire, churn);
criterion_main!(benches);
