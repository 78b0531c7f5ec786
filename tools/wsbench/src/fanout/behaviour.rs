//! One thread's fan-out behaviour: the publisher (at a fixed rate or bounded
//! by the messages in flight) and the subscribers (subscribing, verifying
//! each delivery, recording its latency, counting receipts).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use hdrhistogram::Histogram;
use mio::Waker;

use super::seq::SeqTracker;
use super::topology::{Control, Topology};
use crate::engine::{Behaviour, Conns, Cx, Phase};
use crate::wire::{get_hex, put_hex};

/// Bytes of the sequence number and timestamp at the start of each payload:
/// two little-endian u64, or with `--text` the two in 16 hex digits each.
pub(super) const HEAD: usize = 16;
pub(super) const TEXT_HEAD: usize = 32;
/// Sequence numbers use the low bits of their u64; the run's tag the rest.
pub(super) const SEQ_BITS: u32 = 40;
/// The publisher stops generating while this much output is queued on its socket.
const MAX_PUBLISHER_BACKLOG: usize = 4 << 20;
/// Bytes of a control message kept to tell what it says.
const CONTROL_KEEP: usize = 256;

/// Per-connection fan-out state.
#[derive(Debug, Default)]
pub struct FanConn {
    seqs: SeqTracker,
    /// The first bytes of the message being received (envelope + head, or a control message).
    head: Vec<u8>,
    off: usize,
    bad: bool,
    /// The message being received is a control message, not a delivery.
    control: bool,
    publisher: bool,
    /// The topic subscribed to.
    topic: u64,
}

/// Shared by every thread of one run.
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages published so far.
    pub published: AtomicU64,
    /// Messages every subscriber of their topic has received (in-flight bound only).
    pub completed: AtomicU64,
    /// Receipts so far of message `seq`, at `seq % ring.len()`: a slot is reused
    /// only after its message completed, since the ring is longer than `-w`.
    pub ring: Box<[AtomicU32]>,
    /// The waker of the publisher's loop, for the threads that complete messages.
    pub publisher_waker: OnceLock<Arc<Waker>>,
    /// Subscribers whose subscription the server confirmed.
    pub confirmed: AtomicU64,
    /// This run's tag, in the top bits of every sequence number.
    pub tag: u64,
}

/// One thread's fan-out behaviour.
pub struct FanoutB {
    pub(super) topo: Arc<dyn Topology>,
    pub(super) shared: Arc<Shared>,
    pub(super) template: Arc<[u8]>,
    pub(super) interval: Option<u64>,
    pub(super) w: u64,
    pub(super) next_due: u64,
    pub(super) publisher: Option<usize>,
    pub(super) seq: u64,
    pub(super) self_seen: u64,
    pub(super) started: bool,
    /// Receipts on this thread not yet added to the shared ring: counts by ring
    /// slot, and the sequence numbers that have some.
    pub(super) receipts: Vec<u32>,
    pub(super) touched: Vec<u64>,
    /// This loop's waker.
    pub(super) waker: Option<Arc<Waker>>,
    /// Subscribers in the whole run.
    pub(super) subscribers: u64,
    /// This thread's subscribers per topic.
    pub(super) subs_per_topic: Vec<u64>,
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
    /// Deliveries the subscribers that finished should have had.
    pub expected: u64,
    /// Messages of an earlier run (snapshots), ignored.
    pub stale: u64,
    /// Error replies from the server, and the first one's text.
    pub control_errors: u64,
    /// The first error reply.
    pub first_error: Option<String>,
    pub(super) finished_subs: u64,
}

/// How many of the messages `0..published` go to `topic` of `topics`.
fn published_on(topic: u64, topics: u64, published: u64) -> u64 {
    if published > topic { (published - topic).div_ceil(topics) } else { 0 }
}

impl FanoutB {
    fn publish(&mut self, cx: &mut Cx<'_, FanConn>, t: u64) {
        let seq = self.seq;
        self.seq += 1;
        self.shared.published.store(self.seq, Relaxed);
        if cx.phase == Phase::Measure {
            self.published_window += 1;
        }
        let tagged = self.shared.tag << SEQ_BITS | seq;
        let mut head = [0u8; TEXT_HEAD];
        let head = match self.topo.text() {
            true => {
                put_hex(&mut head[..16], tagged);
                put_hex(&mut head[16..], t);
                &head[..]
            }
            false => {
                head[..8].copy_from_slice(&tagged.to_le_bytes());
                head[8..16].copy_from_slice(&t.to_le_bytes());
                &head[..HEAD]
            }
        };
        let topic = seq % self.topo.topics();
        self.topo.publish(&mut cx.tx(), topic, &[head, &self.template[head.len()..]]);
    }

    fn in_flight(&self) -> u64 {
        self.seq.saturating_sub(self.shared.completed.load(Relaxed))
    }

    /// Subscribers of message `seq`'s topic.
    fn receivers(&self, seq: u64) -> u32 {
        let topics = self.topo.topics();
        (self.subscribers / topics + u64::from(seq % topics < self.subscribers % topics)) as u32
    }

    /// Counts a receipt of message `seq` (added to the shared ring at the end of the turn).
    fn receipt(&mut self, seq: u64) {
        let slot = (seq % self.receipts.len() as u64) as usize;
        if self.receipts[slot] == 0 {
            self.touched.push(seq);
        }
        self.receipts[slot] += 1;
    }

    /// Adds this turn's receipts to the shared ring; messages that now have every
    /// receipt complete (and the publisher's loop is woken to send more).
    fn settle_receipts(&mut self) {
        let mut completed = 0;
        let mut touched = std::mem::take(&mut self.touched);
        for seq in touched.drain(..) {
            let slot = (seq % self.receipts.len() as u64) as usize;
            let n = std::mem::take(&mut self.receipts[slot]);
            let shared = &self.shared.ring[slot];
            if shared.fetch_add(n, AcqRel) + n >= self.receivers(seq) {
                shared.store(0, Relaxed);
                completed += 1;
            }
        }
        self.touched = touched;
        if completed > 0 {
            self.shared.completed.fetch_add(completed, AcqRel);
            if self.publisher.is_none()
                && let Some(w) = self.shared.publisher_waker.get()
            {
                let _ = w.wake();
            }
        }
    }

    fn publishing(phase: Phase) -> bool {
        matches!(phase, Phase::Warmup | Phase::Measure)
    }

    /// Whether every subscriber is in place (confirmed, where the server confirms).
    fn subscribed(&self) -> bool {
        !self.topo.confirms_subscribe() || self.shared.confirmed.load(Relaxed) >= self.subscribers
    }

    /// A whole control message arrived.
    fn control(&mut self, msg: &[u8], subscriber: bool) {
        match self.topo.control(msg) {
            Control::Subscribed if subscriber => {
                self.shared.confirmed.fetch_add(1, Relaxed);
            }
            Control::Error(text) => {
                self.control_errors += 1;
                self.first_error.get_or_insert(text);
            }
            _ => {}
        }
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
            if let Some(w) = &self.waker {
                let _ = self.shared.publisher_waker.set(w.clone());
            }
        } else {
            self.subs += 1;
            let topic = (cx.index as u64 - 1) % self.topo.topics();
            self.subs_per_topic[topic as usize] += 1;
            let mut cx = cx;
            cx.state.topic = topic;
            self.topo.subscribe(&mut cx.tx(), topic);
        }
    }

    fn data(&mut self, cx: Cx<'_, FanConn>, data: &[u8], first: bool, fin: bool) {
        let head_len = if self.topo.text() { TEXT_HEAD } else { HEAD };
        let need = self.topo.envelope_len() + head_len;
        let st = &mut *cx.state;
        if first {
            st.head.clear();
            st.off = 0;
            st.bad = false;
            st.control = self.topo.is_control(data);
        }
        if st.control {
            let take = (CONTROL_KEEP - st.head.len()).min(data.len());
            st.head.extend_from_slice(&data[..take]);
            if fin {
                let msg = std::mem::take(&mut st.head);
                self.control(&msg, !st.publisher);
                cx.state.head = msg;
            }
            return;
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
        if st.bad || !self.topo.envelope_ok(&st.head[..pstart], st.topic) {
            self.verify_errors += 1;
            return;
        }
        let h = &st.head[pstart..pstart + head_len];
        let (tagged, ts) = match self.topo.text() {
            true => match (get_hex(&h[..16]), get_hex(&h[16..])) {
                (Some(tagged), Some(ts)) => (tagged, ts),
                _ => {
                    self.verify_errors += 1;
                    return;
                }
            },
            false => (
                u64::from_le_bytes(h[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(h[8..16].try_into().unwrap_or_default()),
            ),
        };
        if tagged >> SEQ_BITS != self.shared.tag {
            self.stale += 1;
            return;
        }
        let seq = tagged & ((1 << SEQ_BITS) - 1);
        if st.publisher {
            self.self_seen = self.self_seen.max(seq + 1);
            return;
        }
        if seq % self.topo.topics() != st.topic {
            self.verify_errors += 1;
            return;
        }
        // Each subscriber sees every topics()-th message: number them 0, 1, 2, ...
        if !st.seqs.see(seq / self.topo.topics()) {
            return;
        }
        if self.interval.is_none() {
            self.receipt(seq);
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
            let published = self.shared.published.load(Relaxed);
            self.expected += published_on(state.topic, self.topo.topics(), published);
            self.unique += state.seqs.unique;
            self.duplicates += state.seqs.duplicates;
            self.reorders += state.seqs.reorders;
        }
    }

    fn turn(&mut self, conns: &mut Conns<'_, FanConn>, now: u64, phase: Phase) -> Option<u64> {
        if !self.touched.is_empty() {
            self.settle_receipts();
        }
        let key = self.publisher?;
        if !FanoutB::publishing(phase) || (!self.started && !self.subscribed()) {
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

    fn attach(&mut self, waker: &Arc<Waker>) {
        self.waker = Some(waker.clone());
    }

    fn drained(&self) -> bool {
        // Every subscriber on this thread has everything published so far (publishing
        // starts once all are open), and so has the publisher when it gets its own copies.
        let published = self.shared.published.load(Relaxed);
        let topics = self.topo.topics();
        let expected: u64 = (0..topics)
            .map(|t| self.subs_per_topic[t as usize] * published_on(t, topics, published))
            .sum();
        let subs_done = self.total >= expected;
        match self.publisher {
            Some(_) if self.topo.echoes_to_publisher() => subs_done && self.self_seen >= published,
            _ => subs_done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::published_on;
    use crate::wire::{get_hex, put_hex};

    #[test]
    fn text_heads_round_trip() {
        for v in [0, 1, 0xdead_beef, u64::MAX] {
            let mut out = [0u8; 16];
            put_hex(&mut out, v);
            assert!(out.iter().all(u8::is_ascii_hexdigit));
            assert_eq!(get_hex(&out), Some(v));
        }
        assert_eq!(get_hex(b"000000000000000g"), None);
        let mut low = [0u8; 8];
        put_hex(&mut low, 0x1_0000_00ff); // the low 32 bits
        assert_eq!(&low, b"000000ff");
    }

    #[test]
    fn messages_and_subscribers_spread_round_robin() {
        // 7 messages over 3 topics: topic 0 gets 0, 3, 6; topic 2 gets 2, 5.
        assert_eq!([0, 1, 2].map(|t| published_on(t, 3, 7)), [3, 2, 2]);
        assert_eq!(published_on(5, 10, 3), 0);
    }
}
