//! The coordinator: starts one loop per thread, moves the run through its
//! phases, prints the progress line and samples CPU time at the window edges.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{parse_duration, parse_size};
use crate::deflate::DeflateOpts;
use crate::engine::{Behaviour, Control, Engine, EngineConfig, EngineStats, Phase};
use crate::stats::{Cpu, Report};
use crate::sys::CpuSnapshot;
use crate::wire::{Target, parse_header};

/// Options every mode shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The server (loopback only).
    #[arg(short, long, default_value = "ws://127.0.0.1:9001/")]
    pub url: String,
    /// Event-loop threads.
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Length of the measured window (e.g. 10s, 500ms, 2m).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before the measured window, not recorded.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The server's PID: report its CPU time per message (and RSS in `connect`).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw the latency percentile curve into this SVG file.
    #[arg(long)]
    pub plot: Option<String>,
    /// No progress line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// A name for this run in reports and plots.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Source addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    pub src_ips: Vec<IpAddr>,
    /// An extra request header for every upgrade, `NAME: VALUE` (repeatable), e.g.
    /// --header 'Authorization: Bearer abc'.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// A subprotocol to offer (repeatable, most preferred first); a server that
    /// chooses one not offered fails the connection.
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// Largest message accepted from the server.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub max_message: usize,
    /// Most handshakes in progress at once per thread.
    #[arg(long, default_value_t = 256)]
    pub max_pending: usize,
    /// Longest wait for outstanding messages after the window.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Offer permessage-deflate (with client_max_window_bits), compress every message
    /// sent and inflate compressed ones; a connection whose server declines fails.
    #[arg(long)]
    pub deflate: bool,
    /// With --deflate: offer client_ and server_no_context_takeover.
    #[arg(long, requires = "deflate")]
    pub deflate_no_context_takeover: bool,
    /// With --deflate: the compression level of our messages (0-9).
    #[arg(long, default_value_t = 1, requires = "deflate",
          value_parser = clap::value_parser!(u32).range(0..=9))]
    pub deflate_level: u32,
}

/// How a run moves through its phases.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Connections per second over all threads (`None`: as fast as possible).
    pub connect_rate: Option<f64>,
    /// Longest time to wait for every connection attempt to settle.
    pub connect_timeout: Duration,
    /// Unrecorded load time.
    pub warmup: Duration,
    /// Recorded window.
    pub window: Duration,
    /// Longest drain.
    pub drain: Duration,
}

impl Plan {
    /// The plan of a load mode (echo, fan-out): connect as fast as possible, then
    /// warm up, measure and drain as `common` says.
    pub fn load(common: &Common) -> Plan {
        Plan {
            connect_rate: None,
            connect_timeout: Duration::from_secs(30),
            warmup: common.warmup,
            window: common.duration,
            drain: common.drain,
        }
    }
}

/// What the coordinator hands back to a mode to build its report.
pub struct Outcome<B> {
    /// Each loop's own figures.
    pub engines: Vec<EngineStats>,
    /// Each loop's behaviour, with its figures.
    pub behaviours: Vec<B>,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// CPU on both sides over the window.
    pub cpu: Cpu,
    /// Connections open when the window started.
    pub open_at_start: usize,
    /// Seconds from the first connect to the last settled attempt.
    pub connect_s: f64,
    /// Whether every thread drained before the drain timeout.
    pub drained: bool,
}

impl<B> Outcome<B> {
    /// Fills the report fields every mode shares.
    pub fn base_report(&self, mode: &str, common: &Common, mut params: String) -> Report {
        if common.deflate {
            params.push_str(" --deflate");
            if common.deflate_no_context_takeover {
                params.push_str(" --deflate-no-context-takeover");
            }
        }
        let mut r = Report {
            label: common.label.clone(),
            mode: mode.into(),
            url: common.url.clone(),
            params,
            window_s: self.window_s,
            conns: self.open_at_start,
            cpu: self.cpu.clone(),
            ..Default::default()
        };
        for e in &self.engines {
            r.lost += e.lost;
            r.failed += e.failed;
            r.protocol_errors += e.protocol_errors;
            if common.deflate {
                let d = r.deflate.get_or_insert_with(Default::default);
                d.negotiated += e.deflate_conns;
                if d.agreed.is_empty() {
                    d.agreed = e.deflate_agreed.clone().unwrap_or_default();
                }
            }
            for (k, v) in &e.errors {
                *r.errors.entry(k.clone()).or_insert(0) += v;
            }
        }
        r
    }
}

/// Splits `total` connections over `threads` and returns each thread's (count, first index).
pub fn split(total: usize, threads: usize) -> Vec<(usize, usize)> {
    let threads = threads.max(1);
    let mut first = 0;
    (0..threads)
        .map(|t| {
            let n = total / threads + usize::from(t < total % threads);
            let r = (n, first);
            first += n;
            r
        })
        .collect()
}

/// Runs `behaviours` (one per thread, each with its share of `total` connections)
/// through the phases of `plan`. `at_open` runs once every connection attempt has
/// settled, before the warmup (the connect mode samples memory there).
pub fn run<B>(
    common: &Common,
    total: usize,
    behaviours: Vec<B>,
    plan: Plan,
    at_open: &mut dyn FnMut(&Control),
) -> Result<Outcome<B>, String>
where
    B: Behaviour + Send + 'static,
{
    let target = Target::parse(&common.url)?
        .with_request(common.protocols.clone(), common.headers.clone())?;
    let target = Arc::new(target);
    let threads = behaviours.len();
    let ctl = Arc::new(Control::new(threads));
    let shares = split(total, threads);
    let mut handles = Vec::new();
    for (t, (b, (n, first))) in behaviours.into_iter().zip(shares).enumerate() {
        let cfg = EngineConfig {
            target: target.clone(),
            conns: n,
            first_index: first,
            connect_rate: plan.connect_rate.map(|r| r / threads as f64),
            max_pending: common.max_pending.max(1),
            src_ips: common.src_ips.clone(),
            max_message: common.max_message,
            read_buf: 256 * 1024,
            deflate: common.deflate.then(|| {
                DeflateOpts::new(common.deflate_no_context_takeover, common.deflate_level)
            }),
        };
        let engine = Engine::new(cfg, b, &ctl, t).map_err(|e| format!("event loop: {e}"))?;
        let ctl2 = ctl.clone();
        let h = std::thread::Builder::new()
            .name(format!("wsbench-{t}"))
            .spawn(move || engine.run(&ctl2))
            .map_err(|e| format!("thread: {e}"))?;
        handles.push(h);
    }

    let progress = Progress::new(common.quiet);
    let t0 = Instant::now();

    // Connect: until every attempt settled (opened or failed).
    let total_u64 = total as u64;
    while ctl.sum(|t| t.settled.load(std::sync::atomic::Ordering::Relaxed) as u64) < total_u64 {
        if t0.elapsed() > plan.connect_timeout
            || ctl.threads.iter().all(|t| t.finished.load(RELAXED))
        {
            break;
        }
        progress.tick(&ctl, "connect", t0);
        std::thread::sleep(Duration::from_millis(10));
    }
    let connect_s = t0.elapsed().as_secs_f64();
    at_open(&ctl);
    let open_at_start = ctl.sum(|t| t.open_now.load(RELAXED) as u64) as usize;
    if open_at_start == 0 && total > 0 {
        // Nothing to measure: stop the loops and say why.
        ctl.set_phase(Phase::Close);
        progress.done();
        let mut errors = std::collections::BTreeMap::new();
        for h in handles {
            if let Ok((e, _)) = h.join() {
                for (k, v) in e.errors {
                    *errors.entry(k).or_insert(0u64) += v;
                }
            }
        }
        let why: Vec<String> = errors.iter().map(|(k, v)| format!("{v} x {k}")).collect();
        return Err(format!("no connection opened ({})", why.join("; ")));
    }

    // Warmup, then the measured window.
    sleep_with_progress(&ctl, &progress, Phase::Warmup, plan.warmup, "warmup");
    let before = CpuSnapshot::take(common.server_pid);
    let w0 = Instant::now();
    sleep_with_progress(&ctl, &progress, Phase::Measure, plan.window, "measure");
    ctl.set_phase(Phase::Drain);
    let window_s = w0.elapsed().as_secs_f64();
    let after = CpuSnapshot::take(common.server_pid);

    // Drain outstanding messages (not recorded).
    let d0 = Instant::now();
    let mut drained = false;
    while d0.elapsed() < plan.drain {
        if ctl.threads.iter().all(|t| t.drained.load(RELAXED)) {
            drained = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    ctl.set_phase(Phase::Close);
    progress.done();

    let mut engines = Vec::new();
    let mut behaviours = Vec::new();
    for h in handles {
        let (e, b) = h.join().map_err(|_| "an event-loop thread panicked".to_string())?;
        engines.push(e);
        behaviours.push(b);
    }
    let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    let server_cpu_s = diff(before.server, after.server);
    let client_cpu_s = diff(before.client, after.client);
    let pct = |s: Option<f64>| s.map(|s| 100.0 * s / window_s.max(1e-9));
    Ok(Outcome {
        engines,
        behaviours,
        window_s,
        cpu: Cpu {
            server_pid: common.server_pid,
            server_cpu_s,
            server_cpu_us_per_msg: None,
            server_cpu_pct: pct(server_cpu_s),
            server_user_s: diff(before.server_user, after.server_user),
            server_user_us_per_msg: None,
            client_cpu_s,
            client_cpu_pct: pct(client_cpu_s),
            client_threads: threads,
        },
        open_at_start,
        connect_s,
        drained,
    })
}

const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

fn sleep_with_progress(ctl: &Control, progress: &Progress, phase: Phase, d: Duration, name: &str) {
    ctl.set_phase(phase);
    let start = Instant::now();
    while start.elapsed() < d {
        progress.tick(ctl, name, start);
        let left = d.saturating_sub(start.elapsed());
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The once-a-second progress line on stderr.
struct Progress {
    quiet: bool,
    state: std::cell::Cell<(Instant, u64, u64)>,
    printed: std::cell::Cell<bool>,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            state: std::cell::Cell::new((Instant::now(), 0, 0)),
            printed: std::cell::Cell::new(false),
        }
    }

    fn tick(&self, ctl: &Control, phase: &str, phase_start: Instant) {
        if self.quiet {
            return;
        }
        let (last, msgs0, bytes0) = self.state.get();
        let dt = last.elapsed().as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let msgs = ctl.sum(|t| t.msgs.load(RELAXED));
        let bytes = ctl.sum(|t| t.bytes_in.load(RELAXED));
        let open = ctl.sum(|t| t.open_now.load(RELAXED) as u64);
        let lost = ctl.sum(|t| t.lost.load(RELAXED) as u64);
        let line = format!(
            "[{phase} {:>5.1}s] {:>10.0} msg/s {:>8.1} MB/s in  open {open}  lost {lost}",
            phase_start.elapsed().as_secs_f64(),
            (msgs - msgs0.min(msgs)) as f64 / dt,
            (bytes - bytes0.min(bytes)) as f64 / dt / 1e6,
        );
        let mut err = std::io::stderr().lock();
        // On a terminal the line rewrites itself; in a log it is one line every 5 s.
        if std::io::IsTerminal::is_terminal(&err) {
            let _ = write!(err, "\r{line}\x1b[K");
        } else if dt >= 5.0 || !self.printed.get() {
            let _ = writeln!(err, "{line}");
        } else {
            return;
        }
        let _ = err.flush();
        self.printed.set(true);
        self.state.set((Instant::now(), msgs, bytes));
    }

    fn done(&self) {
        if self.printed.get() && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly() {
        assert_eq!(split(10, 3), vec![(4, 0), (3, 4), (3, 7)]);
        assert_eq!(split(1, 2), vec![(1, 0), (0, 1)]);
    }
}
