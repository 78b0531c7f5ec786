//! wsbench: a WebSocket load generator that is never the bottleneck.
//!
//! Modes: `echo` (round trips, every payload verified), `fanout` (one
//! publisher, N subscribers, one-way latency and ordering), `connect` (many
//! idle connections, handshake rate and server memory per connection), and
//! `plot` (draws the latency curves of saved `--json` reports into one SVG)
//! and `summarize` (medians and ratios of `tools/compare.sh` runs).
//! Each run prints a table, or `--json`. Exit status: 0 for a completed run,
//! 1 when the run could not be made (no connection, bad options), 3 when the
//! server sent a wrong payload or broke the protocol (the report is still printed).

mod clock;
mod connect;
mod deflate;
#[cfg(test)]
mod e2e;
mod echo;
mod engine;
mod fanout;
mod plot;
mod run;
mod stats;
mod summary;
mod sys;
mod wire;

use clap::{Parser, Subcommand};

use crate::stats::Report;

/// A WebSocket load generator that is never the bottleneck.
#[derive(Debug, Parser)]
#[command(name = "wsbench", version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// C connections echo messages of S bytes with W in flight each; every payload is verified.
    Echo(echo::EchoArgs),
    /// One publisher, N subscribers: deliveries/s, one-way latency, gaps, duplicates, reorders.
    Fanout(fanout::FanoutArgs),
    /// Open C connections, hold them, close them: handshakes/s, losses, server memory per connection.
    Connect(connect::ConnectArgs),
    /// Draw the latency curves of saved `--json` reports into one SVG.
    Plot(PlotArgs),
    /// Medians of repeated runs and ratios to a baseline server, as Markdown (for compare.sh).
    Summarize(summary::SummaryArgs),
}

/// Options of `plot`.
#[derive(Debug, clap::Args)]
struct PlotArgs {
    /// Output SVG file.
    #[arg(short, long)]
    out: String,
    /// Chart title (default: the first report's mode and parameters).
    #[arg(long)]
    title: Option<String>,
    /// Report files written by `--json`.
    #[arg(required = true)]
    reports: Vec<String>,
}

fn finish(report: &Report, common: &run::Common) -> Result<(), String> {
    if common.json {
        let s = serde_json::to_string(report).map_err(|e| format!("json: {e}"))?;
        println!("{s}");
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &common.plot {
        let title = format!("{} {}", report.mode, report.params);
        std::fs::write(path, plot::svg(&title, &[report])).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

fn plot_main(args: &PlotArgs) -> Result<(), String> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        // A file may hold one report, or several lines of them: take the last.
        let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
        let mut r: Report = serde_json::from_str(line).map_err(|e| format!("{path}: {e}"))?;
        if r.label.is_empty() {
            r.label = path.clone();
        }
        reports.push(r);
    }
    let title = args.title.clone().unwrap_or_else(|| {
        reports.first().map(|r| format!("{} {}", r.mode, r.params)).unwrap_or_default()
    });
    let refs: Vec<&Report> = reports.iter().collect();
    std::fs::write(&args.out, plot::svg(&title, &refs)).map_err(|e| format!("{}: {e}", args.out))
}

fn main() {
    let cli = Cli::parse();
    let report = match &cli.mode {
        Mode::Echo(a) => echo::main(a).and_then(|r| finish(&r, &a.common).map(|_| Some(r))),
        Mode::Fanout(a) => fanout::main(a).and_then(|r| finish(&r, &a.common).map(|_| Some(r))),
        Mode::Connect(a) => connect::main(a).and_then(|r| finish(&r, &a.common).map(|_| Some(r))),
        Mode::Plot(a) => plot_main(a).map(|_| None),
        Mode::Summarize(a) => summary::main(a).map(|_| None),
    };
    match report {
        Err(e) => {
            eprintln!("wsbench: {e}");
            std::process::exit(1);
        }
        // A wrong answer from the server is a failed run, whatever its speed.
        Ok(Some(r)) if r.verify_errors > 0 || r.protocol_errors > 0 => std::process::exit(3),
        Ok(_) => {}
    }
}
