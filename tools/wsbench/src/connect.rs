//! `connect`: open C connections as fast as possible (or at a rate), hold
//! them (answering pings), then close them; report handshakes/s, failures,
//! connections lost and, with `--server-pid`, the server's memory per
//! connection.
//!
//! `--procs P` spreads the connections over P child processes (each a
//! `wsbench connect --child`), for when one process's open-file limit is too
//! low. Children say `READY` on stdout once their connections are open, wait
//! for a line on stdin (sent when every child is ready and the server's
//! memory was read), hold, close, and print their report as JSON.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::{Behaviour, Conns, Cx, Phase};
use crate::run::{Common, Plan, run};
use crate::stats::{
    Connect, Latency, Report, histogram_from_string, histogram_to_string, new_histogram,
};
use crate::sys::{CpuSnapshot, rss_bytes};

/// Options of the connect mode.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    /// Options every mode shares (`--duration` is how long connections are held).
    pub common: Common,
    /// Connections to open.
    #[arg(short, long, default_value_t = 1000)]
    pub conns: usize,
    /// Connections per second (default: as fast as possible).
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Child processes to spread the connections over.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Longest time to wait for every connection to open.
    #[arg(long, default_value = "120s", value_parser = crate::clock::parse_duration)]
    pub open_timeout: Duration,
    /// Internal: run as a child of `--procs`.
    #[arg(long, hide = true)]
    pub child: bool,
}

/// The connect behaviour: holds connections; the engine answers pings.
#[derive(Debug, Default)]
pub struct Hold;

impl Behaviour for Hold {
    type State = ();
    fn opened(&mut self, _cx: Cx<'_, ()>) {}
    fn data(&mut self, _cx: Cx<'_, ()>, _data: &[u8], _first: bool, _fin: bool) {}
    fn closed(&mut self, _index: usize, _state: &mut (), _lost: bool) {}
    fn turn(&mut self, _conns: &mut Conns<'_, ()>, _now: u64, _phase: Phase) -> Option<u64> {
        None
    }
    fn progress(&self) -> u64 {
        0
    }
    fn drained(&self) -> bool {
        true
    }
}

fn params(args: &ConnectArgs) -> String {
    let mut p = format!("-c {} -t {}", args.conns, args.common.threads);
    if let Some(r) = args.rate {
        p.push_str(&format!(" --rate {r}"));
    }
    if args.procs > 1 {
        p.push_str(&format!(" --procs {}", args.procs));
    }
    if !args.common.src_ips.is_empty() {
        let ips: Vec<String> = args.common.src_ips.iter().map(|i| i.to_string()).collect();
        p.push_str(&format!(" --src-ips {}", ips.join(",")));
    }
    p
}

/// Fills the server-memory fields from readings before and after opening.
fn memory(c: &mut Connect, before: Option<u64>, after: Option<u64>) {
    c.server_rss_before = before;
    c.server_rss_after = after;
    if let (Some(b), Some(a)) = (before, after)
        && c.opened > 0
    {
        c.server_rss_per_conn = Some((a as f64 - b as f64) / c.opened as f64);
    }
}

/// CPU use on both sides over the opening phase (`a` to `b`, `secs` long).
fn open_phase_cpu(
    c: &Common,
    a: &CpuSnapshot,
    b: &CpuSnapshot,
    secs: f64,
    opened: u64,
    threads: usize,
) -> crate::stats::Cpu {
    let diff = |x: Option<f64>, y: Option<f64>| Some(y? - x?);
    let server = diff(a.server, b.server);
    let client = diff(a.client, b.client);
    let pct = |s: Option<f64>| s.map(|s| 100.0 * s / secs.max(1e-9));
    crate::stats::Cpu {
        server_pid: c.server_pid,
        server_cpu_s: server,
        server_cpu_us_per_msg: server.filter(|_| opened > 0).map(|s| s * 1e6 / opened as f64),
        server_cpu_pct: pct(server),
        server_user_s: diff(a.server_user, b.server_user),
        server_user_us_per_msg: diff(a.server_user, b.server_user)
            .filter(|_| opened > 0)
            .map(|s| s * 1e6 / opened as f64),
        client_cpu_s: client,
        client_cpu_pct: pct(client),
        client_threads: threads,
    }
}

/// Runs the connect mode (in this process, or over `--procs` children).
pub fn main(args: &ConnectArgs) -> Result<Report, String> {
    if args.procs > 1 && !args.child {
        return parent(args);
    }
    let c = &args.common;
    let pid = c.server_pid.map(|p| p.to_string());
    let rss_before = pid.as_deref().and_then(rss_bytes);
    let cpu0 = CpuSnapshot::take(c.server_pid);
    let mut rss_after = None;
    let mut cpu1 = CpuSnapshot::default();
    let threads = c.threads.clamp(1, args.conns.max(1));
    let plan = Plan {
        connect_rate: args.rate,
        connect_timeout: args.open_timeout,
        warmup: Duration::ZERO,
        window: c.duration,
        drain: Duration::ZERO,
    };
    let child = args.child;
    let out = run(c, args.conns, (0..threads).map(|_| Hold).collect(), plan, &mut |_| {
        cpu1 = CpuSnapshot::take(c.server_pid);
        // Let the server settle its buffers before reading its memory.
        std::thread::sleep(Duration::from_millis(300));
        rss_after = pid.as_deref().and_then(rss_bytes);
        if child {
            println!("READY");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
    })?;
    let mut report = out.base_report("connect", c, params(args));
    let mut hs = new_histogram();
    let mut conn = Connect { target_conns: args.conns, procs: 1, ..Default::default() };
    for e in &out.engines {
        let _ = hs.add(&e.handshake);
        conn.opened += e.opened;
        conn.failed += e.failed;
    }
    conn.lost = report.lost;
    conn.open_s = out.connect_s;
    conn.held_s = out.window_s;
    conn.handshakes_per_s = conn.opened as f64 / out.connect_s.max(1e-9);
    conn.handshake = Latency::from_histogram(&hs);
    memory(&mut conn, rss_before, rss_after);
    report.cpu = open_phase_cpu(c, &cpu0, &cpu1, out.connect_s, conn.opened, threads);
    if child {
        conn.handshake_hist = Some(histogram_to_string(&hs));
    }
    report.connect = Some(conn);
    Ok(report)
}

/// Runs `--procs` children and adds up their reports.
fn parent(args: &ConnectArgs) -> Result<Report, String> {
    let c = &args.common;
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let pid = c.server_pid.map(|p| p.to_string());
    let rss_before = pid.as_deref().and_then(rss_bytes);
    let cpu0 = CpuSnapshot::take(c.server_pid);
    let shares = crate::run::split(args.conns, args.procs);
    let mut children = Vec::new();
    for (n, _) in shares.iter().filter(|(n, _)| *n > 0) {
        let mut cmd = Command::new(&exe);
        cmd.arg("connect")
            .arg("--child")
            .arg("--json")
            .arg("--quiet")
            .args(["--conns", &n.to_string()])
            .args(["--url", &c.url])
            .args(["--threads", &c.threads.to_string()])
            .args(["--duration", &format!("{}ms", c.duration.as_millis())])
            .args(["--open-timeout", &format!("{}ms", args.open_timeout.as_millis())])
            .args(["--max-pending", &c.max_pending.to_string()]);
        if let Some(r) = args.rate {
            cmd.args(["--rate", &(r / args.procs as f64).to_string()]);
        }
        if !c.src_ips.is_empty() {
            let ips: Vec<String> = c.src_ips.iter().map(|i| i.to_string()).collect();
            cmd.args(["--src-ips", &ips.join(",")]);
        }
        let mut ch = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = ch.stdout.take().ok_or("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        children.push((ch, rx));
    }
    // Wait for every child to be READY.
    let t0 = Instant::now();
    let deadline = t0 + args.open_timeout + Duration::from_secs(5);
    for (_, rx) in &children {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.trim() == "READY" => {}
            Ok(l) => return Err(format!("child said {l:?} instead of READY")),
            Err(_) => return Err("a child did not get its connections open in time".into()),
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    let cpu1 = CpuSnapshot::take(c.server_pid);
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = pid.as_deref().and_then(rss_bytes);
    for (ch, _) in &mut children {
        if let Some(stdin) = ch.stdin.as_mut() {
            let _ = stdin.write_all(b"GO\n");
            let _ = stdin.flush();
        }
    }
    let w0 = Instant::now();
    let cpu_w0 = CpuSnapshot::take(c.server_pid);
    let mut reports = Vec::new();
    for (mut ch, rx) in children {
        let limit = c.duration + Duration::from_secs(30);
        let line = rx.recv_timeout(limit).map_err(|_| "a child did not report".to_string())?;
        let _ = ch.wait();
        let r: Report = serde_json::from_str(&line).map_err(|e| format!("child report: {e}"))?;
        reports.push(r);
    }
    let cpu_w1 = CpuSnapshot::take(c.server_pid);
    let held_s = w0.elapsed().as_secs_f64();

    let mut report = Report {
        label: c.label.clone(),
        mode: "connect".into(),
        url: c.url.clone(),
        params: params(args),
        window_s: held_s,
        ..Default::default()
    };
    let mut conn = Connect { target_conns: args.conns, procs: reports.len(), ..Default::default() };
    let mut hs = new_histogram();
    let mut client_cpu = 0.0;
    for r in &reports {
        report.conns += r.conns;
        report.lost += r.lost;
        report.failed += r.failed;
        report.protocol_errors += r.protocol_errors;
        for (k, v) in &r.errors {
            *report.errors.entry(k.clone()).or_insert(0) += v;
        }
        client_cpu += r.cpu.client_cpu_s.unwrap_or(0.0);
        if let Some(cr) = &r.connect {
            conn.opened += cr.opened;
            conn.failed += cr.failed;
            if let Some(h) = cr.handshake_hist.as_deref().and_then(histogram_from_string) {
                let _ = hs.add(&h);
            }
        }
    }
    conn.lost = report.lost;
    conn.open_s = open_s;
    conn.held_s = held_s;
    conn.handshakes_per_s = conn.opened as f64 / open_s.max(1e-9);
    conn.handshake = Latency::from_histogram(&hs);
    memory(&mut conn, rss_before, rss_after);
    let _ = (cpu_w0, cpu_w1);
    report.cpu = open_phase_cpu(c, &cpu0, &cpu1, open_s, conn.opened, c.threads * reports.len());
    report.cpu.client_cpu_s = Some(client_cpu);
    report.cpu.client_cpu_pct = Some(100.0 * client_cpu / open_s.max(1e-9));
    report.connect = Some(conn);
    Ok(report)
}
