//! The fan-out report: every thread's figures summed, and whether the server
//! kept up (and if not, why).

use std::sync::atomic::Ordering::Relaxed;

use super::args::FanoutArgs;
use super::behaviour::{FanoutB, Shared};
use super::topology::Topology;
use crate::run::Outcome;
use crate::stats::{Fanout as FanoutReport, Report, new_histogram};

/// The report of a finished run of `threads` loops over `topo`.
pub(super) fn report(
    args: &FanoutArgs,
    threads: usize,
    topo: &dyn Topology,
    shared: &Shared,
    out: &Outcome<FanoutB>,
) -> Report {
    let c = &args.common;
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
    report
}
