//! `fanout`: N subscribers and one publisher.
//!
//! Every published message starts with its sequence number and its send time
//! (both u64 little endian; at a fixed rate the send time is the *intended*
//! one, so a publisher held up by the server does not hide the delay), then a
//! fixed pattern that subscribers verify. Each subscriber tracks which
//! sequence numbers it saw in a sliding window, which tells gaps, duplicates
//! and reorders apart.
//!
//! How subscribing and publishing look on the wire is a [`Topology`]; the
//! only one so far is [`Broadcast`] (every message from any client goes to
//! every client, sender included), so a topic protocol can be added later
//! without touching the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;
use wsreactor::proto::OpCode;

use crate::deflate::Tx;
use crate::engine::{Behaviour, Conns, Cx, Phase};
use crate::run::{Common, Plan, run};
use crate::stats::{Fanout as FanoutReport, Report, new_histogram};

/// Bytes of the sequence number and timestamp at the start of each payload.
const HEAD: usize = 16;
/// The publisher stops generating while this much output is queued on its socket.
const MAX_PUBLISHER_BACKLOG: usize = 4 << 20;

/// How subscribers and the publisher talk to a particular kind of server.
pub trait Topology: Send + Sync {
    /// A name for reports.
    fn name(&self) -> &'static str;
    /// Frames a subscriber sends once open (a subscribe request, for instance).
    fn subscribe(&self, _tx: &mut Tx<'_>) {}
    /// Appends a published message whose payload is `parts`.
    fn publish(&self, tx: &mut Tx<'_>, parts: &[&[u8]]) {
        tx.message(OpCode::Binary, parts, 0);
    }
    /// Bytes of envelope before the payload in a delivered message.
    fn envelope_len(&self) -> usize {
        0
    }
    /// Whether the publisher receives its own messages (then it uses them to bound
    /// the messages in flight).
    fn echoes_to_publisher(&self) -> bool;
}

/// A server that sends every message to every client, sender included
/// (`wsreactor broadcast` and the peers' broadcast mode).
pub struct Broadcast;

impl Topology for Broadcast {
    fn name(&self) -> &'static str {
        "broadcast"
    }
    fn echoes_to_publisher(&self) -> bool {
        true
    }
}

/// Options of the fan-out mode.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    /// Options every mode shares.
    pub common: Common,
    /// Subscribers (the publisher is one more connection).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Message size in bytes (at least 16).
    #[arg(short, long, default_value = "64", value_parser = crate::clock::parse_size)]
    pub size: usize,
    /// Fixed publish rate in messages/s (default: as fast as the in-flight bound allows).
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Most messages in flight (published, not yet back at the publisher) when not at a fixed rate.
    #[arg(short = 'w', long, default_value_t = 16)]
    pub in_flight: u64,
}

/// Which sequence numbers a subscriber saw: a 1024-wide sliding window.
#[derive(Debug, Default)]
pub struct SeqTracker {
    next: u64,
    bits: [u64; 16],
    /// Distinct messages seen.
    pub unique: u64,
    /// Seen twice.
    pub duplicates: u64,
    /// Arrived after a later one.
    pub reorders: u64,
}

impl SeqTracker {
    const WINDOW: u64 = 1024;

    fn bit(&mut self, s: u64, on: bool) {
        let i = (s % Self::WINDOW) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    fn get(&self, s: u64) -> bool {
        let i = (s % Self::WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Records `s`; returns whether it is new.
    pub fn see(&mut self, s: u64) -> bool {
        if s >= self.next {
            if s - self.next >= Self::WINDOW {
                self.bits = [0; 16];
            } else {
                for x in self.next..s {
                    self.bit(x, false);
                }
            }
            self.bit(s, true);
            self.next = s + 1;
            self.unique += 1;
            true
        } else if self.next - s > Self::WINDOW {
            // Too old to tell: a very late arrival.
            self.reorders += 1;
            self.unique += 1;
            true
        } else if self.get(s) {
            self.duplicates += 1;
            false
        } else {
            self.bit(s, true);
            self.reorders += 1;
            self.unique += 1;
            true
        }
    }
}

/// Per-connection fan-out state.
#[derive(Debug, Default)]
pub struct FanConn {
    seqs: SeqTracker,
    /// The first bytes of the message being received (envelope + head).
    head: Vec<u8>,
    off: usize,
    bad: bool,
    publisher: bool,
}

/// Shared by every thread of one run.
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages published so far.
    pub published: AtomicU64,
    /// Highest sequence number + 1 seen by subscriber 1 (when the publisher does not
    /// receive its own messages, this bounds the messages in flight).
    pub acked: AtomicU64,
}

/// One thread's fan-out behaviour.
pub struct FanoutB {
    topo: Arc<dyn Topology>,
    shared: Arc<Shared>,
    template: Arc<[u8]>,
    interval: Option<u64>,
    w: u64,
    next_due: u64,
    publisher: Option<usize>,
    seq: u64,
    self_seen: u64,
    started: bool,
    /// One-way latencies recorded in the window (ns).
    pub hist: Histogram<u64>,
    /// Deliveries in the window.
    pub deliveries: u64,
    /// Deliveries in total.
    pub total: u64,
    /// Messages published in the window.
    pub published_window: u64,
    /// Payloads that differ from the pattern.
    pub verify_errors: u64,
    /// Times the publisher found its socket backlogged.
    pub stalls: u64,
    /// Subscribers on this thread and their trackers' figures, summed at close.
    pub subs: u64,
    /// Distinct deliveries over the whole run.
    pub unique: u64,
    /// Duplicates over the whole run.
    pub duplicates: u64,
    /// Reorders over the whole run.
    pub reorders: u64,
    finished_subs: u64,
}

impl FanoutB {
    fn publish(&mut self, cx: &mut Cx<'_, FanConn>, t: u64) {
        let seq = self.seq;
        self.seq += 1;
        self.shared.published.store(self.seq, Relaxed);
        if cx.phase == Phase::Measure {
            self.published_window += 1;
        }
        let mut head = [0u8; HEAD];
        head[..8].copy_from_slice(&seq.to_le_bytes());
        head[8..].copy_from_slice(&t.to_le_bytes());
        self.topo.publish(&mut cx.tx(), &[&head, &self.template[HEAD..]]);
    }

    fn in_flight(&self) -> u64 {
        let acked = if self.topo.echoes_to_publisher() {
            self.self_seen
        } else {
            self.shared.acked.load(Relaxed)
        };
        self.seq.saturating_sub(acked)
    }

    fn publishing(phase: Phase) -> bool {
        matches!(phase, Phase::Warmup | Phase::Measure)
    }

    /// Publishes while the in-flight bound allows (as-fast-as-possible mode).
    fn fill(&mut self, cx: &mut Cx<'_, FanConn>) {
        while self.in_flight() < self.w && cx.backlog + cx.out.len() < MAX_PUBLISHER_BACKLOG {
            let now = cx.now;
            self.publish(cx, now);
        }
    }
}

impl Behaviour for FanoutB {
    type State = FanConn;

    fn opened(&mut self, cx: Cx<'_, FanConn>) {
        if cx.index == 0 {
            cx.state.publisher = true;
            self.publisher = Some(cx.key);
        } else {
            self.subs += 1;
            let mut cx = cx;
            self.topo.subscribe(&mut cx.tx());
        }
    }

    fn data(&mut self, mut cx: Cx<'_, FanConn>, data: &[u8], first: bool, fin: bool) {
        let need = self.topo.envelope_len() + HEAD;
        let st = &mut *cx.state;
        if first {
            st.head.clear();
            st.off = 0;
            st.bad = false;
        }
        // Keep the envelope and head; check the pattern after it.
        if st.head.len() < need {
            let take = (need - st.head.len()).min(data.len());
            st.head.extend_from_slice(&data[..take]);
        }
        let pstart = self.topo.envelope_len();
        let body_from = need.max(st.off);
        let end = st.off + data.len();
        if end > body_from {
            let p0 = body_from - pstart;
            let p1 = end - pstart;
            if p1 > self.template.len() || data[body_from - st.off..] != self.template[p0..p1] {
                st.bad = true;
            }
        }
        st.off = end;
        if !fin {
            return;
        }
        if st.head.len() < need || st.off - pstart != self.template.len() {
            st.bad = true;
        }
        if st.bad {
            self.verify_errors += 1;
            return;
        }
        let h = &st.head[pstart..pstart + HEAD];
        let seq = u64::from_le_bytes(h[..8].try_into().unwrap_or_default());
        let ts = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
        if st.publisher {
            self.self_seen = self.self_seen.max(seq + 1);
            if self.interval.is_none() && self.started && FanoutB::publishing(cx.phase) {
                self.fill(&mut cx);
            }
            return;
        }
        if !st.seqs.see(seq) {
            return;
        }
        if cx.index == 1 && !self.topo.echoes_to_publisher() {
            self.shared.acked.fetch_max(st.seqs.next, Relaxed);
        }
        self.total += 1;
        if cx.phase == Phase::Measure {
            self.deliveries += 1;
            self.hist.saturating_record(cx.now.saturating_sub(ts).max(1));
        }
    }

    fn closed(&mut self, _index: usize, state: &mut FanConn, _lost: bool) {
        if !state.publisher {
            self.finished_subs += 1;
            self.unique += state.seqs.unique;
            self.duplicates += state.seqs.duplicates;
            self.reorders += state.seqs.reorders;
        }
    }

    fn turn(&mut self, conns: &mut Conns<'_, FanConn>, now: u64, phase: Phase) -> Option<u64> {
        let key = self.publisher?;
        if !FanoutB::publishing(phase) {
            return None;
        }
        if !self.started {
            self.started = true;
            self.next_due = now;
        }
        match self.interval {
            None => {
                conns.with(key, |mut cx| self.fill(&mut cx));
                None
            }
            Some(interval) => {
                conns.with(key, |mut cx| {
                    let mut budget = 1024;
                    while self.next_due <= now && budget > 0 {
                        if cx.backlog + cx.out.len() >= MAX_PUBLISHER_BACKLOG {
                            self.stalls += 1;
                            break;
                        }
                        budget -= 1;
                        let t = self.next_due;
                        self.next_due += interval;
                        self.publish(&mut cx, t);
                    }
                });
                Some(self.next_due.max(now + 50_000))
            }
        }
    }

    fn progress(&self) -> u64 {
        self.total
    }

    fn drained(&self) -> bool {
        // Every subscriber on this thread has everything published so far (publishing
        // starts once all are open), and so has the publisher when it gets its own copies.
        let published = self.shared.published.load(Relaxed);
        let subs_done = self.total >= self.subs * published;
        match self.publisher {
            Some(_) if self.topo.echoes_to_publisher() => subs_done && self.self_seen >= published,
            _ => subs_done,
        }
    }
}

/// Runs the fan-out mode and returns its report.
pub fn main(args: &FanoutArgs) -> Result<Report, String> {
    let c = &args.common;
    if args.size < HEAD {
        return Err(format!("--size must be at least {HEAD} (sequence number and timestamp)"));
    }
    let topo: Arc<dyn Topology> = Arc::new(Broadcast);
    let shared = Arc::new(Shared::default());
    let total = args.subscribers + 1;
    let threads = c.threads.clamp(1, total);
    let template: Arc<[u8]> =
        (0..args.size).map(|i| (i as u32).wrapping_mul(13).wrapping_add(5) as u8).collect();
    let behaviours: Vec<FanoutB> = (0..threads)
        .map(|_| FanoutB {
            topo: topo.clone(),
            shared: shared.clone(),
            template: template.clone(),
            interval: args.rate.map(|r| (1e9 / r.max(1e-3)) as u64),
            w: args.in_flight.max(1),
            next_due: 0,
            publisher: None,
            seq: 0,
            self_seen: 0,
            started: false,
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
    let published_total = shared.published.load(Relaxed);
    let mut subs_closed = 0;
    let mut stalls = 0;
    for b in &out.behaviours {
        let _ = hist.add(&b.hist);
        f.deliveries += b.deliveries;
        f.published += b.published_window;
        f.duplicates += b.duplicates;
        f.reorders += b.reorders;
        report.verify_errors += b.verify_errors;
        subs_closed += b.finished_subs;
        stalls += b.stalls;
        f.gaps += (b.finished_subs * published_total).saturating_sub(b.unique);
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

#[cfg(test)]
mod tests {
    use super::SeqTracker;

    #[test]
    fn tracker_tells_gaps_dups_reorders() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 2, 4, 3, 3, 5, 5000, 10] {
            t.see(s);
        }
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reorders, 2); // 3 after 4; 10 after 5000 (too old to tell)
        assert_eq!(t.unique, 8);
    }
}
