//! `echo`: C connections, messages of S bytes, W in flight per connection;
//! every echoed payload is checked byte for byte.
//!
//! A payload is the message's sequence number (8 bytes, little endian, or 8
//! hex digits with `--text`; cut short for messages under 8 bytes) followed
//! by a fixed pattern (ASCII letters with `--text`). Echoes come
//! back in order on each connection, so the receiver knows which sequence
//! number to expect and compares every byte, piece by piece as fragments or
//! reads arrive. Send times live in a ring of W slots per connection.

use std::collections::VecDeque;
use std::sync::Arc;

use hdrhistogram::Histogram;
use wsreactor::proto::OpCode;

use crate::engine::{Behaviour, Conns, Cx, Phase};
use crate::run::{Common, Plan, run};
use crate::stats::{Report, new_histogram};
use crate::wire::put_hex;

/// Options of the echo mode.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    #[command(flatten)]
    /// Options every mode shares.
    pub common: Common,
    /// Connections.
    #[arg(short, long, default_value_t = 100)]
    pub conns: usize,
    /// Message size in bytes (e.g. 64, 16KiB).
    #[arg(short, long, default_value = "64", value_parser = crate::clock::parse_size)]
    pub size: usize,
    /// Messages in flight per connection.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub in_flight: usize,
    /// Fixed total send rate in messages/s (latency then counts from intended send times).
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Send each message as frames of at most this many bytes (0: one frame).
    #[arg(long, default_value = "0", value_parser = crate::clock::parse_size)]
    pub fragment: usize,
    /// Send text messages (ASCII payloads, the sequence number in hex) instead of binary.
    #[arg(long)]
    pub text: bool,
}

/// Per-connection echo state.
#[derive(Debug, Default)]
pub struct EchoConn {
    next_send: u64,
    next_recv: u64,
    /// Send (or intended send) times, indexed by sequence number modulo W.
    ring: Vec<u64>,
    /// Bytes of the current incoming message checked so far.
    msg_off: usize,
    /// Intended send times of messages waiting for a free in-flight slot (fixed rate).
    waiting: VecDeque<u64>,
    open: bool,
}

/// One thread's echo behaviour.
pub struct Echo {
    template: Arc<[u8]>,
    opcode: OpCode,
    w: usize,
    frag: usize,
    interval: Option<u64>,
    next_due: u64,
    rr: usize,
    open: Vec<usize>,
    started: bool,
    /// Round-trip times recorded in the window (ns).
    pub hist: Histogram<u64>,
    /// Round trips completed in the window.
    pub msgs: u64,
    /// Round trips completed in total.
    pub total: u64,
    /// Payloads that differed from what was sent.
    pub verify_errors: u64,
    /// Fixed-rate sends that found no connection to go to.
    pub unsent: u64,
    outstanding: u64,
}

impl Echo {
    fn new(size: usize, w: usize, frag: usize, interval: Option<u64>, text: bool) -> Echo {
        let byte = |i: usize| (i as u32).wrapping_mul(31).wrapping_add(7) as u8;
        let template: Vec<u8> = match text {
            true => (0..size).map(|i| b'a' + byte(i) % 26).collect(),
            false => (0..size).map(byte).collect(),
        };
        Echo {
            template: template.into(),
            opcode: if text { OpCode::Text } else { OpCode::Binary },
            w: w.max(1),
            frag,
            interval,
            next_due: 0,
            rr: 0,
            open: Vec::new(),
            started: false,
            hist: new_histogram(),
            msgs: 0,
            total: 0,
            verify_errors: 0,
            unsent: 0,
            outstanding: 0,
        }
    }

    fn send(&mut self, cx: &mut Cx<'_, EchoConn>, t: u64) {
        let st = &mut *cx.state;
        let seq = st.next_send;
        let slot = (seq % self.w as u64) as usize;
        st.ring[slot] = t;
        st.next_send += 1;
        self.outstanding += 1;
        let seq_bytes = self.seq_bytes(seq);
        let k = self.template.len().min(8);
        cx.tx().message(self.opcode, &[&seq_bytes[..k], &self.template[k..]], self.frag);
    }

    /// How message `seq` starts: its number in binary, or in hex for text.
    fn seq_bytes(&self, seq: u64) -> [u8; 8] {
        if self.opcode == OpCode::Binary {
            return seq.to_le_bytes();
        }
        let mut out = [0u8; 8];
        put_hex(&mut out, seq);
        out
    }

    fn in_flight(st: &EchoConn) -> usize {
        (st.next_send - st.next_recv) as usize
    }

    /// Checks `data`, found at `off` in the message with sequence number `seq`.
    fn matches(&self, seq: u64, off: usize, data: &[u8]) -> bool {
        let size = self.template.len();
        if off + data.len() > size {
            return false;
        }
        let seq_bytes = self.seq_bytes(seq);
        let head = size.min(8);
        let mut i = 0;
        while i < data.len() && off + i < head {
            if data[i] != seq_bytes[off + i] {
                return false;
            }
            i += 1;
        }
        data[i..] == self.template[off + i..off + data.len()]
    }
}

impl Behaviour for Echo {
    type State = EchoConn;

    fn opened(&mut self, cx: Cx<'_, EchoConn>) {
        cx.state.ring = vec![0; self.w];
        cx.state.open = true;
        self.open.push(cx.key);
        if self.started
            && self.interval.is_none()
            && matches!(cx.phase, Phase::Warmup | Phase::Measure)
        {
            let mut cx = cx;
            for _ in 0..self.w {
                let now = cx.now;
                self.send(&mut cx, now);
            }
        }
    }

    fn data(&mut self, mut cx: Cx<'_, EchoConn>, data: &[u8], first: bool, fin: bool) {
        let st = &mut *cx.state;
        if first {
            st.msg_off = 0;
        }
        let seq = st.next_recv;
        if st.next_recv >= st.next_send || !self.matches(seq, st.msg_off, data) {
            self.verify_errors += 1;
        }
        st.msg_off += data.len();
        if !fin {
            return;
        }
        if st.msg_off != self.template.len() {
            self.verify_errors += 1;
        }
        if st.next_recv < st.next_send {
            let sent = st.ring[(seq % self.w as u64) as usize];
            st.next_recv += 1;
            self.outstanding -= 1;
            self.total += 1;
            if cx.phase == Phase::Measure {
                self.msgs += 1;
                self.hist.saturating_record(cx.now.saturating_sub(sent).max(1));
            }
        }
        if !matches!(cx.phase, Phase::Warmup | Phase::Measure) {
            cx.state.waiting.clear();
            return;
        }
        if self.interval.is_none() {
            let now = cx.now;
            self.send(&mut cx, now);
        } else if let Some(t) = cx.state.waiting.pop_front() {
            self.send(&mut cx, t);
        }
    }

    fn closed(&mut self, _index: usize, state: &mut EchoConn, _lost: bool) {
        if state.open {
            self.outstanding -= Echo::in_flight(state) as u64;
            state.open = false;
        }
    }

    fn turn(&mut self, conns: &mut Conns<'_, EchoConn>, now: u64, phase: Phase) -> Option<u64> {
        if !matches!(phase, Phase::Warmup | Phase::Measure) {
            return None;
        }
        // Forget connections that are gone.
        self.open.retain(|&k| conns.with(k, |_| ()).is_some());
        if !self.started {
            self.started = true;
            self.next_due = now;
            if self.interval.is_none() {
                for k in self.open.clone() {
                    conns.with(k, |mut cx| {
                        for _ in 0..self.w {
                            self.send(&mut cx, now);
                        }
                    });
                }
            }
        }
        let interval = self.interval?;
        if self.open.is_empty() {
            return Some(now + 1_000_000);
        }
        let mut budget = 4096;
        while self.next_due <= now && budget > 0 {
            budget -= 1;
            let t = self.next_due;
            self.next_due += interval;
            let k = self.open[self.rr % self.open.len()];
            self.rr = self.rr.wrapping_add(1);
            let sent = conns.with(k, |mut cx| {
                if Echo::in_flight(cx.state) < self.w {
                    self.send(&mut cx, t);
                } else {
                    cx.state.waiting.push_back(t);
                }
            });
            if sent.is_none() {
                self.unsent += 1;
            }
        }
        Some(self.next_due)
    }

    fn progress(&self) -> u64 {
        self.total
    }

    fn drained(&self) -> bool {
        self.outstanding == 0
    }
}

/// Runs the echo mode and returns its report.
pub fn main(args: &EchoArgs) -> Result<Report, String> {
    let c = &args.common;
    if args.size == 0 {
        return Err("--size must be at least 1".into());
    }
    if args.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    let threads = c.threads.clamp(1, args.conns);
    let interval = args.rate.map(|r| (1e9 * threads as f64 / r.max(1e-3)) as u64);
    let behaviours: Vec<Echo> = (0..threads)
        .map(|_| Echo::new(args.size, args.in_flight, args.fragment, interval, args.text))
        .collect();
    let plan = Plan::load(c);
    let out = run(c, args.conns, behaviours, plan, &mut |_| {})?;
    let mut params =
        format!("-c {} -s {} -w {} -t {}", args.conns, args.size, args.in_flight, threads);
    if let Some(r) = args.rate {
        params.push_str(&format!(" --rate {r}"));
    }
    if args.fragment > 0 {
        params.push_str(&format!(" --fragment {}", args.fragment));
    }
    if args.text {
        params.push_str(" --text");
    }
    let mut report = out.base_report("echo", c, params);
    let mut hist = new_histogram();
    for b in &out.behaviours {
        report.messages += b.msgs;
        report.verify_errors += b.verify_errors;
        let _ = hist.add(&b.hist);
        if b.unsent > 0 {
            *report.errors.entry("fixed-rate sends with no open connection".into()).or_insert(0) +=
                b.unsent;
        }
    }
    report.set_messages(report.messages, args.size, &hist, args.rate.is_some());
    if !out.drained {
        *report.errors.entry("echoes still outstanding after the drain".into()).or_insert(0) += 1;
    }
    Ok(report)
}
