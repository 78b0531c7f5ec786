//! Histograms, the run report (`--json`) and the human table.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// A latency histogram in nanoseconds: 1 ns to 100 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap_or_else(|_| {
        // The bounds above are constants that hdrhistogram accepts.
        unreachable!("valid histogram bounds")
    })
}

/// Encodes a histogram for a parent process (V2 format, base64).
pub fn histogram_to_string(h: &Histogram<u64>) -> String {
    use base64::Engine;
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes what [`histogram_to_string`] made.
pub fn histogram_from_string(s: &str) -> Option<Histogram<u64>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Smallest value.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// 99.99th percentile.
    pub p9999_us: f64,
    /// Largest value.
    pub max_us: f64,
    /// The percentile curve: (percentile, microseconds) points for plotting.
    pub curve: Vec<(f64, f64)>,
}

impl Latency {
    /// Summarizes `h` (values in ns).
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |v: u64| v as f64 / 1000.0;
        let q = |p: f64| us(h.value_at_quantile(p));
        // Points evenly spaced on a log scale of 1/(1-p), up to what the sample count supports.
        let mut curve = Vec::new();
        let max_nines = (h.len() as f64).log10().clamp(1.0, 6.0);
        let steps = 60;
        for i in 0..=steps {
            let nines = max_nines * i as f64 / steps as f64;
            let p = 1.0 - 10f64.powf(-nines);
            curve.push((p * 100.0, q(p)));
        }
        curve.push((100.0, us(h.max())));
        Latency {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: us(h.max()),
            curve,
        }
    }
}

/// CPU use on both sides over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// The server's PID, when given.
    pub server_pid: Option<u32>,
    /// Server CPU seconds (user + system) in the window.
    pub server_cpu_s: Option<f64>,
    /// Server CPU microseconds per message (echo: per round trip; fan-out: per delivery;
    /// connect: per handshake, and all CPU figures cover the opening phase).
    pub server_cpu_us_per_msg: Option<f64>,
    /// Server CPU as a percentage of one core over the window.
    pub server_cpu_pct: Option<f64>,
    /// The user-space part of `server_cpu_s` (the rest is the kernel's, which on
    /// loopback includes the receiving end's TCP work).
    #[serde(default)]
    pub server_user_s: Option<f64>,
    /// The user-space part of `server_cpu_us_per_msg`.
    #[serde(default)]
    pub server_user_us_per_msg: Option<f64>,
    /// wsbench CPU seconds in the window.
    pub client_cpu_s: Option<f64>,
    /// wsbench CPU as a percentage of one core over the window.
    pub client_cpu_pct: Option<f64>,
    /// wsbench threads (the ceiling of `client_cpu_pct` is 100 x threads).
    pub client_threads: usize,
}

/// Figures only the fan-out mode has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fanout {
    /// Subscribers.
    pub subscribers: usize,
    /// Messages published in the window.
    pub published: u64,
    /// Publish rate achieved (messages/s).
    pub publish_rate: f64,
    /// Target publish rate, if fixed.
    pub target_rate: Option<f64>,
    /// Deliveries to subscribers in the window.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_s: f64,
    /// Sequence numbers never delivered (counted over the whole run after the drain).
    pub gaps: u64,
    /// Messages delivered twice.
    pub duplicates: u64,
    /// Messages delivered after a later one.
    pub reorders: u64,
    /// Whether the server kept up (see `kept_up_why`).
    pub kept_up: bool,
    /// Why it did or did not.
    pub kept_up_why: String,
}

/// Figures only the connect mode has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connect {
    /// Connections asked for.
    pub target_conns: usize,
    /// Handshakes completed.
    pub opened: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Handshakes per second over the opening phase.
    pub handshakes_per_s: f64,
    /// Seconds the opening phase took.
    pub open_s: f64,
    /// Seconds the connections were held.
    pub held_s: f64,
    /// Connections closed by the server or the network while held.
    pub lost: u64,
    /// Handshake (connect to `101`) latency.
    pub handshake: Latency,
    /// Server RSS before opening, bytes.
    pub server_rss_before: Option<u64>,
    /// Server RSS with every connection open, bytes.
    pub server_rss_after: Option<u64>,
    /// (after - before) / opened.
    pub server_rss_per_conn: Option<f64>,
    /// Child processes used.
    pub procs: usize,
    /// A child's handshake histogram for its parent (V2, base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_hist: Option<String>,
}

/// The result of one run, as printed by `--json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// A label (server name in comparisons).
    pub label: String,
    /// `echo`, `fanout` or `connect`.
    pub mode: String,
    /// The URL.
    pub url: String,
    /// The command line's parameters, for the record.
    pub params: String,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Connections open at the start of the window.
    pub conns: usize,
    /// Messages completed in the window (echo: round trips; fan-out: deliveries).
    pub messages: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) per second received.
    pub mb_per_s: f64,
    /// Round-trip (echo) or one-way (fan-out) latency.
    pub latency: Latency,
    /// Whether latency is measured from intended send times (fixed rate: corrected for
    /// coordinated omission).
    pub latency_from_intended: bool,
    /// Payloads that did not match what was sent (echo) or was published (fan-out).
    pub verify_errors: u64,
    /// Connections lost during the run.
    pub lost: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// Protocol errors in the server's frames.
    pub protocol_errors: u64,
    /// Errors by description.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// CPU use on both sides.
    pub cpu: Cpu,
    /// Fan-out figures.
    pub fanout: Option<Fanout>,
    /// Connect figures.
    pub connect: Option<Connect>,
    /// permessage-deflate, when it was offered (`--deflate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deflate: Option<Deflate>,
}

/// permessage-deflate figures of a run that offered it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deflate {
    /// Connections that negotiated it (every connection that opened: the
    /// others failed their handshake).
    pub negotiated: u64,
    /// What the server agreed to, as its `Sec-WebSocket-Extensions` said it.
    pub agreed: String,
}

fn fmt_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.2} s", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1e3)
    } else {
        format!("{v:.1} us")
    }
}

fn fmt_bytes(v: f64) -> String {
    if v.abs() >= 1_048_576.0 {
        format!("{:.1} MiB", v / 1_048_576.0)
    } else if v.abs() >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

fn fmt_count(v: f64) -> String {
    let s = format!("{:.0}", v);
    let neg = s.starts_with('-');
    let digits: Vec<char> = s.trim_start_matches('-').chars().collect();
    let mut out = String::new();
    for (i, ch) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(*ch);
    }
    if neg { format!("-{out}") } else { out }
}

impl Report {
    /// Fills the message figures: `messages` of `size` bytes completed in the window,
    /// their latencies in `hist`, and the server's CPU time per message.
    pub fn set_messages(
        &mut self,
        messages: u64,
        size: usize,
        hist: &Histogram<u64>,
        from_intended: bool,
    ) {
        self.messages = messages;
        self.msgs_per_s = messages as f64 / self.window_s.max(1e-9);
        self.mb_per_s = self.msgs_per_s * size as f64 / 1e6;
        self.latency = Latency::from_histogram(hist);
        self.latency_from_intended = from_intended;
        if messages > 0 {
            let per = |s: Option<f64>| s.map(|s| s * 1e6 / messages as f64);
            self.cpu.server_cpu_us_per_msg = per(self.cpu.server_cpu_s);
            self.cpu.server_user_us_per_msg = per(self.cpu.server_user_s);
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        row("mode", format!("{} {}", self.mode, self.params));
        row("target", self.url.clone());
        row("window", format!("{:.2} s, {} connections", self.window_s, self.conns));
        if let Some(d) = &self.deflate {
            let v = if d.negotiated == 0 {
                "offered, not negotiated".to_string()
            } else {
                format!("negotiated on {} connections ({})", d.negotiated, d.agreed)
            };
            row("deflate", v);
        }
        if self.mode != "connect" {
            row(
                "messages",
                format!("{} ({}/s)", fmt_count(self.messages as f64), fmt_count(self.msgs_per_s)),
            );
            row("throughput", format!("{:.2} MB/s of payload received", self.mb_per_s));
        }
        let l = &self.latency;
        if l.count > 0 {
            let kind = if self.mode == "fanout" { "one-way" } else { "round trip" };
            let co = if self.latency_from_intended { ", from intended send times" } else { "" };
            row(
                "latency",
                format!(
                    "{kind}{co}: p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
                    fmt_us(l.p50_us),
                    fmt_us(l.p90_us),
                    fmt_us(l.p99_us),
                    fmt_us(l.p999_us),
                    fmt_us(l.p9999_us),
                    fmt_us(l.max_us)
                ),
            );
        }
        if let Some(f) = &self.fanout {
            let target =
                f.target_rate.map(|r| format!(" (target {})", fmt_count(r))).unwrap_or_default();
            row(
                "publisher",
                format!(
                    "{} published, {}/s{target}",
                    fmt_count(f.published as f64),
                    fmt_count(f.publish_rate)
                ),
            );
            row(
                "deliveries",
                format!(
                    "{} to {} subscribers, {}/s",
                    fmt_count(f.deliveries as f64),
                    f.subscribers,
                    fmt_count(f.deliveries_per_s)
                ),
            );
            row(
                "order",
                format!("gaps {}  duplicates {}  reorders {}", f.gaps, f.duplicates, f.reorders),
            );
            row("kept up", format!("{} ({})", if f.kept_up { "yes" } else { "NO" }, f.kept_up_why));
        }
        if let Some(c) = &self.connect {
            row(
                "handshakes",
                format!(
                    "{} of {} in {:.2} s: {}/s, {} failed",
                    c.opened,
                    c.target_conns,
                    c.open_s,
                    fmt_count(c.handshakes_per_s),
                    c.failed
                ),
            );
            let h = &c.handshake;
            if h.count > 0 {
                row(
                    "handshake time",
                    format!(
                        "p50 {}  p99 {}  max {}",
                        fmt_us(h.p50_us),
                        fmt_us(h.p99_us),
                        fmt_us(h.max_us)
                    ),
                );
            }
            row("held", format!("{:.2} s, {} connections lost", c.held_s, c.lost));
            if let (Some(b), Some(a)) = (c.server_rss_before, c.server_rss_after) {
                let per = c.server_rss_per_conn.map(fmt_bytes).unwrap_or_else(|| "-".into());
                row(
                    "server RSS",
                    format!(
                        "{} -> {}: {per} per connection",
                        fmt_bytes(b as f64),
                        fmt_bytes(a as f64)
                    ),
                );
            }
            if c.procs > 1 {
                row("processes", c.procs.to_string());
            }
        }
        row(
            "checks",
            format!(
                "verify errors {}  protocol errors {}  lost {}  failed {}",
                self.verify_errors, self.protocol_errors, self.lost, self.failed
            ),
        );
        let cpu = &self.cpu;
        if let Some(s) = cpu.server_cpu_s {
            let unit = if self.mode == "connect" { "handshake, while opening" } else { "message" };
            let split = cpu
                .server_user_us_per_msg
                .zip(cpu.server_cpu_us_per_msg)
                .map(|(u, t)| format!(" (user {u:.3}, kernel {:.3})", t - u))
                .unwrap_or_default();
            let per = cpu
                .server_cpu_us_per_msg
                .map(|v| format!(", {v:.3} us per {unit}{split}"))
                .unwrap_or_default();
            row(
                "server CPU",
                format!("{s:.2} s ({:.0}% of a core){per}", cpu.server_cpu_pct.unwrap_or(0.0)),
            );
        }
        if let Some(s) = cpu.client_cpu_s {
            row(
                "wsbench CPU",
                format!(
                    "{s:.2} s ({:.0}% of a core, {} thread{})",
                    cpu.client_cpu_pct.unwrap_or(0.0),
                    cpu.client_threads,
                    if cpu.client_threads == 1 { "" } else { "s" }
                ),
            );
        }
        for (e, n) in &self.errors {
            row("error", format!("{n} x {e}"));
        }
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:>w$}  {v}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_roundtrip() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 10_000);
        assert!((l.p50_us - 5000.0).abs() < 10.0);
        assert!(l.curve.len() > 10);
        let s = histogram_to_string(&h);
        let back = histogram_from_string(&s).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn counts() {
        assert_eq!(fmt_count(1234567.0), "1,234,567");
        assert_eq!(fmt_count(12.0), "12");
        assert_eq!(fmt_us(1500.0), "1.50 ms");
    }

    #[test]
    fn table_renders() {
        let r = Report { mode: "echo".into(), ..Default::default() };
        assert!(r.table().contains("echo"));
    }
}
