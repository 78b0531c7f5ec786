//! `summarize`: medians over repeated runs and ratios against a baseline server.
//!
//! Reads `SCENARIO__SERVER__RUN.json` reports (what `tools/compare.sh` writes),
//! prints one Markdown table (the median of each metric per server, with the
//! baseline / peer ratio beside each peer's figure, and in how many of the
//! runs paired by number the baseline did better) and draws one latency SVG
//! per scenario from each server's median run.

use std::collections::BTreeMap;

use crate::plot;
use crate::stats::Report;

/// Options of `summarize`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Directory of `SCENARIO__SERVER__RUN.json` reports.
    #[arg(long)]
    pub dir: String,
    /// The server the ratios are computed for (baseline / peer).
    #[arg(long, default_value = "wsreactor")]
    pub baseline: String,
    /// Write `SCENARIO.svg` latency charts here.
    #[arg(long)]
    pub svg_dir: Option<String>,
}

/// A metric of a scenario: its name, whether more is better, how to read it.
struct Metric {
    name: &'static str,
    /// `None`: not a score, no ratio (the CPU % rows tell which side was busy).
    higher_is_better: Option<bool>,
    get: fn(&Report) -> Option<f64>,
    fmt: fn(f64) -> String,
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn us(v: f64) -> String {
    if v >= 1000.0 { format!("{:.2} ms", v / 1000.0) } else { format!("{v:.0} us") }
}

fn metrics(mode: &str) -> Vec<Metric> {
    let cpu_per_msg = |r: &Report| r.cpu.server_cpu_us_per_msg;
    let cpu_fmt: fn(f64) -> String = |v| format!("{v:.2} us");
    let server_cpu = Metric {
        name: "server CPU % of its core",
        higher_is_better: None,
        get: |r| r.cpu.server_cpu_pct,
        fmt: |v| format!("{v:.0}%"),
    };
    let wsbench_cpu = Metric {
        name: "wsbench CPU % of its core",
        higher_is_better: None,
        get: |r| r.cpu.client_cpu_pct,
        fmt: |v| format!("{v:.0}%"),
    };
    match mode {
        "connect" => vec![
            Metric {
                name: "server RSS per connection",
                higher_is_better: Some(false),
                get: |r| r.connect.as_ref().and_then(|c| c.server_rss_per_conn),
                fmt: |v| format!("{v:.0} B"),
            },
            Metric {
                name: "handshakes/s",
                higher_is_better: Some(true),
                get: |r| r.connect.as_ref().map(|c| c.handshakes_per_s),
                fmt: si,
            },
            Metric {
                name: "server CPU per handshake",
                higher_is_better: Some(false),
                get: cpu_per_msg,
                fmt: cpu_fmt,
            },
            Metric {
                name: "connections opened",
                higher_is_better: Some(true),
                get: |r| r.connect.as_ref().map(|c| c.opened as f64),
                fmt: |v| format!("{v:.0}"),
            },
            server_cpu,
            wsbench_cpu,
        ],
        _ => vec![
            Metric {
                name: if mode == "fanout" { "deliveries/s" } else { "messages/s" },
                higher_is_better: Some(true),
                get: |r| Some(r.msgs_per_s),
                fmt: si,
            },
            Metric {
                name: "latency p50",
                higher_is_better: Some(false),
                get: |r| Some(r.latency.p50_us),
                fmt: us,
            },
            Metric {
                name: "latency p99",
                higher_is_better: Some(false),
                get: |r| Some(r.latency.p99_us),
                fmt: us,
            },
            Metric {
                name: if mode == "fanout" {
                    "server CPU per delivery"
                } else {
                    "server CPU per message"
                },
                higher_is_better: Some(false),
                get: cpu_per_msg,
                fmt: cpu_fmt,
            },
            Metric {
                name: "of which user space (the rest is the kernel's)",
                higher_is_better: Some(false),
                get: |r| r.cpu.server_user_us_per_msg,
                fmt: cpu_fmt,
            },
            server_cpu,
            wsbench_cpu,
        ],
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// In how many of the runs that both servers made under the same number
/// `mine` did better than `theirs` (`higher`: more is better), of how many.
fn wins(mine: &[(u32, f64)], theirs: &[(u32, f64)], higher: bool) -> (usize, usize) {
    let pairs: Vec<(f64, f64)> = mine
        .iter()
        .filter_map(|&(n, a)| theirs.iter().find(|&&(m, _)| m == n).map(|&(_, b)| (a, b)))
        .collect();
    let won = pairs.iter().filter(|&&(a, b)| if higher { a > b } else { a < b }).count();
    (won, pairs.len())
}

/// Runs `summarize`: prints the Markdown table on stdout.
pub fn main(args: &SummaryArgs) -> Result<(), String> {
    // scenario -> server -> runs (with their run numbers)
    let mut runs: BTreeMap<String, BTreeMap<String, Vec<Report>>> = BTreeMap::new();
    let mut numbers: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    let entries = std::fs::read_dir(&args.dir).map_err(|e| format!("{}: {e}", args.dir))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let Some(stem) = name.strip_suffix(".json") else { continue };
        let parts: Vec<&str> = stem.split("__").collect();
        let [scen, server, run] = parts[..] else { continue };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let Some(line) = text.lines().rev().find(|l| l.starts_with('{')) else { continue };
        let report: Report = serde_json::from_str(line).map_err(|e| format!("{name}: {e}"))?;
        if !order.iter().any(|s| s == scen) {
            order.push(scen.to_string());
        }
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_string());
        }
        runs.entry(scen.into()).or_default().entry(server.into()).or_default().push(report);
        let n = run.parse().unwrap_or(0);
        numbers.entry((scen.into(), server.into())).or_default().push(n);
    }
    // The baseline first.
    servers.sort_by_key(|s| (s != &args.baseline, servers_rank(s)));

    let mut out = String::new();
    out.push_str(&format!("| scenario | metric | {} |\n", servers.join(" | ")));
    out.push_str(&format!("|---|---|{}\n", "---|".repeat(servers.len())));
    for scen in &order {
        let by_server = &runs[scen];
        let Some(first) = by_server.values().flat_map(|v| v.first()).next() else { continue };
        let title = format!("{scen}: {} {}", first.mode, first.params);
        for (i, m) in metrics(&first.mode).iter().enumerate() {
            let med = |s: &str| {
                by_server
                    .get(s)
                    .and_then(|rs| median(rs.iter().filter_map(|r| (m.get)(r)).collect()))
            };
            let base = med(&args.baseline);
            // Each run's figure with its number.
            let numbered = |s: &str| -> Vec<(u32, f64)> {
                let (Some(rs), Some(ns)) =
                    (by_server.get(s), numbers.get(&(scen.clone(), s.to_string())))
                else {
                    return Vec::new();
                };
                ns.iter().zip(rs).filter_map(|(&n, r)| Some((n, (m.get)(r)?))).collect()
            };
            let mine = numbered(&args.baseline);
            let mut cells = Vec::new();
            for s in &servers {
                let n = by_server.get(s).map_or(0, |v| v.len());
                let cell = match med(s) {
                    None => "-".to_string(),
                    Some(v) if s == &args.baseline => (m.fmt)(v),
                    Some(v) => match (base, m.higher_is_better) {
                        (Some(b), Some(higher)) if v > 0.0 => {
                            let (won, of) = wins(&mine, &numbered(s), higher);
                            format!("{} ({:.2}x; {won}/{of})", (m.fmt)(v), b / v)
                        }
                        _ => (m.fmt)(v),
                    },
                };
                cells.push(if n > 0 { cell } else { "-".into() });
            }
            let arrow = match m.higher_is_better {
                Some(true) => "higher is better",
                Some(false) => "lower is better",
                None => "which side was busy",
            };
            let label =
                if i == 0 { format!("**{}**", title.replace('|', "/")) } else { String::new() };
            out.push_str(&format!("| {label} | {} ({arrow}) | {} |\n", m.name, cells.join(" | ")));
        }
        // Failures and checks, so a fast wrong answer does not go unnoticed.
        let mut notes = Vec::new();
        for (s, rs) in by_server {
            let bad: u64 =
                rs.iter().map(|r| r.verify_errors + r.protocol_errors + r.lost + r.failed).sum();
            if bad > 0 {
                notes
                    .push(format!("{s}: {bad} verify/protocol errors, lost or failed connections"));
            }
            if let Some(f) = rs.iter().filter_map(|r| r.fanout.as_ref()).find(|f| !f.kept_up) {
                notes.push(format!("{s}: did not keep up ({})", f.kept_up_why));
            }
        }
        if !notes.is_empty() {
            out.push_str(&format!("| | notes | {} |\n", notes.join("; ").replace('|', "/")));
        }
        if let Some(dir) = &args.svg_dir {
            if first.mode == "connect" {
                continue;
            }
            let picks: Vec<Report> = servers
                .iter()
                .filter_map(|s| {
                    let mut rs = by_server.get(s)?.clone();
                    rs.sort_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
                    let mut r = rs.get(rs.len() / 2)?.clone();
                    r.label = s.clone();
                    Some(r)
                })
                .collect();
            let refs: Vec<&Report> = picks.iter().collect();
            let path = format!("{dir}/{scen}.svg");
            std::fs::write(&path, plot::svg(&format!("{title} (median run)"), &refs))
                .map_err(|e| format!("{path}: {e}"))?;
        }
    }
    out.push_str(&format!(
        "\nCells are medians; (N.NNx; W/R) is {0} / peer for that metric, and the number of \
         runs, paired by run number (interleaved in time), in which {0} did better. The CPU \
         rows say which side was the bottleneck: a run where neither side is near 100% was \
         slowed by something else (another process on the same core).\n",
        args.baseline
    ));
    print!("{out}");
    Ok(())
}

/// A stable order for the usual servers.
fn servers_rank(s: &str) -> usize {
    ["wsreactor", "tokio-tungstenite", "fastwebsockets", "bun", "node-ws"]
        .iter()
        .position(|x| *x == s)
        .unwrap_or(99)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn wins_pair_runs_by_number() {
        let mine = [(1, 10.0), (2, 5.0), (3, 7.0), (4, 1.0)];
        let theirs = [(1, 9.0), (2, 6.0), (3, 7.0)];
        assert_eq!(super::wins(&mine, &theirs, true), (1, 3));
        assert_eq!(super::wins(&mine, &theirs, false), (1, 3));
        assert_eq!(super::wins(&mine, &[], true), (0, 0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
