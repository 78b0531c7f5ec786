//! `fanout`: N subscribers and one publisher.
//!
//! Every published message starts with its sequence number and its send time
//! (both u64 little endian; at a fixed rate the send time is the *intended*
//! one, so a publisher held up by the server does not hide the delay), then a
//! fixed pattern that subscribers verify. The top bits of the sequence number
//! are a random tag of the run, so messages of an earlier run (a topic
//! server's last-value snapshots) are told apart and ignored.
//!
//! Without `--rate` the publisher keeps at most `-w` messages in flight, where
//! a message is in flight until *every* subscriber of its topic has received it
//! (counted per message in a small shared ring), so the slowest subscriber
//! paces the publisher and queues in the server stay bounded. Each subscriber tracks which
//! sequence numbers it saw in a sliding window, which tells gaps, duplicates
//! and reorders apart.
//!
//! How subscribing and publishing look on the wire is a [`Topology`]:
//! [`Broadcast`] (every message from any client goes to every client, sender
//! included) or [`Topics`] (wsreactor's topic protocol: JSON subscribe,
//! binary publish and binary deliveries that name their topic and carry a
//! per-topic sequence number).

mod args;
mod behaviour;
mod seq;
mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::run::{Plan, run};
use crate::stats::{Fanout as FanoutReport, Report, new_histogram};

pub use args::FanoutArgs;
use behaviour::{FanoutB, HEAD, SEQ_BITS, Shared, TEXT_HEAD};
use topology::{Broadcast, Topics, Topology};

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
    let mut params = format!("-n {} -s {} -t {threads}", args.subscribers, args.size);
    match args.rate {
        Some(r) => params.push_str(&format!(" --rate {r}")),
        None => params.push_str(&format!(" -w {}", args.in_flight)),
    }
    params.push_str(&format!(" ({})", topo.name()));
    let mut report = out.base_report("fanout", c, params);
    let mut hist = new_histogram();
    let mut f = FanoutReport {
        subscribers: args.subscribers,
        target_rate: args.rate,
        ..Default::default()
    };
    let mut subs_closed = 0;
    let mut stalls = 0;
    let mut control_errors = 0;
    let mut first_error = None;
    for b in &out.behaviours {
        control_errors += b.control_errors;
        if first_error.is_none() {
            first_error = b.first_error.clone();
        }
        let _ = hist.add(&b.hist);
        f.deliveries += b.deliveries;
        f.published += b.published_window;
        f.duplicates += b.duplicates;
        f.reorders += b.reorders;
        report.verify_errors += b.verify_errors;
        subs_closed += b.finished_subs;
        stalls += b.stalls;
        f.gaps += b.expected.saturating_sub(b.unique);
    }
    let w = out.window_s.max(1e-9);
    f.publish_rate = f.published as f64 / w;
    f.deliveries_per_s = f.deliveries as f64 / w;
    report.set_messages(f.deliveries, args.size, &hist, args.rate.is_some());
    let mut why = Vec::new();
    if subs_closed < args.subscribers as u64 {
        why.push(format!(
            "{} subscribers not accounted for",
            args.subscribers as u64 - subs_closed
        ));
    }
    let confirmed = shared.confirmed.load(Relaxed);
    if topo.confirms_subscribe() && confirmed < args.subscribers as u64 {
        why.push(format!(
            "only {confirmed} of {} subscriptions confirmed (nothing was published)",
            args.subscribers
        ));
    }
    if let Some(e) = first_error {
        why.push(format!("{control_errors} error replies, the first: {e}"));
    }
    if f.gaps > 0 {
        why.push(format!("{} deliveries missing", f.gaps));
    }
    if !out.drained {
        why.push("messages still in flight after the drain".into());
    }
    if let Some(r) = args.rate {
        if f.publish_rate < 0.99 * r {
            why.push(format!(
                "published {:.0}/s of {r:.0}/s ({stalls} stalls on backpressure)",
                f.publish_rate
            ));
        }
        let offered = f.publish_rate * args.subscribers as f64;
        if f.deliveries_per_s < 0.99 * offered {
            why.push(format!(
                "delivered {:.0}/s of the {offered:.0}/s published x subscribers",
                f.deliveries_per_s
            ));
        }
        if report.latency.p99_us > 1e6 {
            why.push("p99 latency over 1 s".into());
        }
    }
    if report.lost > 0 {
        why.push(format!("{} connections lost", report.lost));
    }
    f.kept_up = why.is_empty();
    f.kept_up_why = if why.is_empty() {
        match args.rate {
            Some(_) => "target rate held, every delivery arrived".into(),
            None => "every delivery arrived".into(),
        }
    } else {
        why.join("; ")
    };
    report.fanout = Some(f);
    Ok(report)
}
