//! `wsreactor`: the command-line server.
//!
//! ```text
//! wsreactor echo --bind 127.0.0.1:9001        # echo every message back
//! wsreactor broadcast --bind 127.0.0.1:9001   # every message to every client
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use wsreactor::{Ctx, Handler, Message, Server};

#[derive(Parser)]
#[command(version, about = "A lean, fast WebSocket server on per-core mio reactors")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo every message back to its sender, with the same opcode.
    Echo(Opts),
    /// Send every message to every connected client on every reactor, sender included.
    Broadcast(Opts),
}

#[derive(clap::Args)]
struct Opts {
    /// Address to listen on (use 0.0.0.0:PORT to accept from other hosts).
    #[arg(long, default_value = "127.0.0.1:9001")]
    bind: String,
    /// Reactor threads, each with its own listener (default: one per CPU).
    #[arg(long)]
    reactors: Option<usize>,
    /// Largest message accepted, in bytes (suffixes K, M, G: powers of 1024);
    /// larger ones close the connection with 1009.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    max_message_size: usize,
    /// Most open WebSocket connections; further upgrades get HTTP 503.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Byte cap on each connection's output queue (suffixes K, M, G).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    max_backpressure: usize,
    /// Listen backlog of each reactor's listener.
    #[arg(long, default_value_t = 1024)]
    backlog: u32,
    /// Seconds to wait for close handshakes on SIGINT/SIGTERM before exiting.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    shutdown_timeout: f64,
    /// Log level: error, warn, info, debug, trace (RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    log: String,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: usize = digits.parse().map_err(|_| format!("not a size: {s:?} (e.g. 65536, 64K, 16M)"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size too large: {s:?}"))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("not a number of seconds: {s:?}")),
    }
}

/// Echoes every message back.
struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        let _ = cx.send(msg);
    }
}

/// Sends every message to everyone.
struct Broadcast;

impl Handler for Broadcast {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        cx.broadcast(msg);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, opts) = match &cli.mode {
        Mode::Echo(o) => ("echo", o),
        Mode::Broadcast(o) => ("broadcast", o),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(&opts.log)).init();
    let result = match cli.mode {
        Mode::Echo(ref o) => serve(name, o, |_| Echo),
        Mode::Broadcast(ref o) => serve(name, o, |_| Broadcast),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("wsreactor: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn serve<H: Handler>(
    name: &str,
    opts: &Opts,
    factory: impl Fn(usize) -> H + Send + Sync + 'static,
) -> Result<(), String> {
    let mut builder = Server::builder()
        .bind(opts.bind.as_str())
        .map_err(|e| format!("bad --bind {:?}: {e}", opts.bind))?
        .max_message_size(opts.max_message_size)
        .max_backpressure(opts.max_backpressure)
        .backlog(opts.backlog);
    if let Some(n) = opts.reactors {
        builder = builder.reactors(n);
    }
    if let Some(n) = opts.max_connections {
        builder = builder.max_connections(n);
    }
    let server = builder
        .handler(factory)
        .build()
        .map_err(|e| format!("cannot listen on {}: {e}", opts.bind))?;
    let handle = server.handle();
    let grace = Duration::from_secs_f64(opts.shutdown_timeout);
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            seen += 1;
            if seen > 1 {
                eprintln!("wsreactor: second signal, exiting now");
                std::process::exit(128 + sig);
            }
            log::info!("signal {sig}: closing connections (up to {grace:?}), again to force");
            handle.shutdown(grace);
        }
    });
    println!(
        "wsreactor {name}: listening on ws://{} with {} reactor(s), max message {} bytes",
        server.local_addr(),
        server.handle().reactors(),
        opts.max_message_size
    );
    let _ = std::io::stdout().flush();
    server.run().map_err(|e| format!("server error: {e}"))
}
