//! A fan-out run: its options checked, the topology, the shared state and
//! one behaviour per thread set up, the run, and its report.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use super::args::FanoutArgs;
use super::behaviour::{FanoutB, HEAD, SEQ_BITS, Shared, TEXT_HEAD};
use super::report::report;
use super::topology::{Broadcast, Topics, Topology};
use crate::run::{Plan, run};
use crate::stats::{Report, new_histogram};

/// A random tag for this run's sequence numbers (24 bits).
fn run_tag() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) >> SEQ_BITS
}

/// Runs the fan-out mode and returns its report.
pub fn main(args: &FanoutArgs) -> Result<Report, String> {
    let c = &args.common;
    let head = if args.text { TEXT_HEAD } else { HEAD };
    if args.size < head {
        return Err(format!("--size must be at least {head} (sequence number and timestamp)"));
    }
    if args.text && args.topics.is_some() {
        return Err("--text is for broadcast servers: the topic protocol publishes binary".into());
    }
    let topo: Arc<dyn Topology> = match args.topics {
        Some(0) => return Err("--topics must be at least 1".into()),
        Some(n) if n > args.subscribers as u64 => {
            return Err(format!("--topics {n} is more than the {} subscribers", args.subscribers));
        }
        Some(n) => Arc::new(Topics::new(n)),
        None => Arc::new(Broadcast { text: args.text }),
    };
    let w = args.in_flight.max(1);
    // Longer than the most messages in flight, so a slot is free before reuse.
    let ring_len = (w as usize + 1).next_power_of_two();
    let shared = Arc::new(Shared {
        tag: run_tag(),
        ring: (0..ring_len).map(|_| AtomicU32::new(0)).collect(),
        ..Shared::default()
    });
    let total = args.subscribers + 1;
    let threads = c.threads.clamp(1, total);
    let byte = |i: usize| (i as u32).wrapping_mul(13).wrapping_add(5) as u8;
    let template: Arc<[u8]> = match args.text {
        true => (0..args.size).map(|i| b'a' + byte(i) % 26).collect(),
        false => (0..args.size).map(byte).collect(),
    };
    let behaviours: Vec<FanoutB> = (0..threads)
        .map(|_| FanoutB {
            topo: topo.clone(),
            shared: shared.clone(),
            template: template.clone(),
            interval: args.rate.map(|r| (1e9 / r.max(1e-3)) as u64),
            w,
            next_due: 0,
            publisher: None,
            seq: 0,
            self_seen: 0,
            started: false,
            receipts: vec![0; ring_len],
            touched: Vec::new(),
            waker: None,
            subscribers: args.subscribers as u64,
            subs_per_topic: vec![0; topo.topics() as usize],
            hist: new_histogram(),
            deliveries: 0,
            total: 0,
            published_window: 0,
            verify_errors: 0,
            stalls: 0,
            subs: 0,
            unique: 0,
            duplicates: 0,
            reorders: 0,
            expected: 0,
            stale: 0,
            control_errors: 0,
            first_error: None,
            finished_subs: 0,
        })
        .collect();
    let plan = Plan::load(c);
    let out = run(c, total, behaviours, plan, &mut |_| {})?;
    Ok(report(args, threads, &*topo, &shared, &out))
}
