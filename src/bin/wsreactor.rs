//! `wsreactor`: the command-line server.
//!
//! ```text
//! wsreactor echo --bind 127.0.0.1:9001        # echo every message back
//! wsreactor broadcast --bind 127.0.0.1:9001   # every message to every client
//! wsreactor pubsub --slow-consumer close --slow-consumer-for md.=conflate   # topics
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wsreactor::pubsub::synthetic::{self, SyntheticFeed, parse_spec};
use wsreactor::pubsub::topic::validate_topic;
use wsreactor::pubsub::wire::Payload;
use wsreactor::pubsub::{Limits, PubSub, StoreConfig, TopicError};
use wsreactor::{Builder, Compression, Ctx, Handler, Message, Publisher, Server, SlowConsumer};

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
    /// The topic server: clients subscribe with JSON requests; publishers
    /// (with --publish-token) and the synthetic feed publish.
    Pubsub(PubsubOpts),
}

#[derive(clap::Args)]
struct PubsubOpts {
    #[command(flatten)]
    common: Opts,
    /// Connections presenting this token (?token=… or Authorization: Bearer …) may publish.
    #[arg(long)]
    publish_token: Option<String>,
    /// Deliveries kept per topic for clients that reconnect with `since`.
    #[arg(long, default_value_t = 0)]
    history: usize,
    /// Most topics the server holds.
    #[arg(long, default_value_t = 100_000)]
    max_topics: usize,
    /// A subscriber whose queue is full: close (1008), drop the message, or conflate per topic;
    /// on every topic that no --slow-consumer-for rule matches.
    #[arg(long, value_enum, default_value = "close")]
    slow_consumer: SlowConsumerArg,
    /// Topics whose name starts with PREFIX use this slow-consumer policy instead (repeatable;
    /// the longest matching PREFIX wins), e.g. --slow-consumer-for md.=conflate
    /// --slow-consumer-for orders.=close.
    #[arg(long, value_name = "PREFIX=close|drop|conflate", value_parser = parse_rule)]
    slow_consumer_for: Vec<(String, SlowConsumerArg)>,
    /// Publish synthetic market-data ticks: SYMBOLS:RATE (e.g. 100:5000 = 100 symbols,
    /// 5,000 ticks/s in all) on topics md.<SYMBOL>.
    #[arg(long)]
    synthetic: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SlowConsumerArg {
    Close,
    Drop,
    Conflate,
}

impl From<SlowConsumerArg> for SlowConsumer {
    fn from(p: SlowConsumerArg) -> SlowConsumer {
        match p {
            SlowConsumerArg::Close => SlowConsumer::Close,
            SlowConsumerArg::Drop => SlowConsumer::Drop,
            SlowConsumerArg::Conflate => SlowConsumer::Conflate,
        }
    }
}

/// `PREFIX=POLICY` for --slow-consumer-for; the prefix must be able to start a topic name.
fn parse_rule(s: &str) -> Result<(String, SlowConsumerArg), String> {
    let usage = "expected PREFIX=close|drop|conflate, e.g. md.=conflate";
    let (prefix, policy) = s.split_once('=').ok_or_else(|| format!("no '=': {usage}"))?;
    match validate_topic(prefix, StoreConfig::default().max_topic_len) {
        Ok(()) => {}
        Err(TopicError::Empty) => return Err(format!("empty PREFIX: {usage}")),
        Err(e) => return Err(format!("no topic name can start with {prefix:?}: {e}")),
    }
    let policy = <SlowConsumerArg as clap::ValueEnum>::from_str(policy, false)
        .map_err(|_| format!("unknown policy {policy:?}: {usage}"))?;
    Ok((prefix.to_owned(), policy))
}

#[derive(clap::Args)]
struct Opts {
    /// Address to listen on (use 0.0.0.0:PORT to accept from other hosts).
    #[arg(long, default_value = "127.0.0.1:9001")]
    bind: String,
    /// Reactor threads, each with its own listener (default: one per CPU).
    #[arg(long, value_parser = parse_reactors)]
    reactors: Option<usize>,
    /// Largest message accepted, in bytes (suffixes K, M, G: powers of 1024);
    /// larger ones close the connection with 1009.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    max_message_size: usize,
    /// Most open WebSocket connections; further upgrades get HTTP 503.
    #[arg(long)]
    max_connections: Option<usize>,
    /// The memory budget: most bytes held for connections in all (output queues, partial
    /// input, reassembly, compression); near it upgrades get HTTP 503 and the biggest
    /// holders are shed (suffixes K, M, G; default: half the machine's or cgroup's memory).
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<usize>,
    /// Byte cap on each connection's output queue (suffixes K, M, G).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    max_backpressure: usize,
    /// Listen backlog of each reactor's listener (the kernel caps it at net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Seconds the kernel may hold a new connection until its first bytes arrive, before
    /// handing it over (TCP_DEFER_ACCEPT, whole seconds; 0: off).
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    defer_accept: f64,
    /// Seconds to wait for close handshakes on SIGINT/SIGTERM before exiting.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    shutdown_timeout: f64,
    /// Seconds a new connection may take to send its upgrade request (0: off).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    handshake_timeout: f64,
    /// Ping a connection after this many seconds without receiving anything (0: no pings).
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    ping_interval: f64,
    /// Seconds a pinged connection may stay silent before it is dropped as dead.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pong_timeout: f64,
    /// Close (1001) a connection after this many seconds without a message either way (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = parse_seconds)]
    idle_timeout: f64,
    /// Seconds to wait for the peer to finish a close handshake we started.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    close_timeout: f64,
    /// Drop a connection whose output makes no progress for this many seconds (0: off).
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    write_stall_timeout: f64,
    /// permessage-deflate: disabled, shared (one compressed frame per broadcast,
    /// no per-connection contexts) or dedicated (per-connection contexts, best ratio).
    #[arg(long, value_enum, default_value = "disabled")]
    compression: CompressionArg,
    /// Deflate level 0-9 (1 is fastest).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=9))]
    compression_level: u32,
    /// Messages shorter than this go out uncompressed (suffixes K, M).
    #[arg(long, default_value = "64", value_parser = parse_size)]
    compression_min_size: usize,
    /// Log level, in any case (RUST_LOG overrides).
    #[arg(long, value_name = "LEVEL", value_enum, ignore_case = true, default_value = "info")]
    log: LogLevel,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

impl LogLevel {
    /// The level as an env_logger filter.
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
            LogLevel::Off => "off",
        }
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: usize =
        digits.parse().map_err(|_| format!("not a size: {s:?} (e.g. 65536, 64K, 16M)"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size too large: {s:?}"))
}

fn parse_reactors(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("not a number of threads: {s:?}")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("not a number of seconds: {s:?}")),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    Disabled,
    Shared,
    Dedicated,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Disabled => Compression::Disabled,
            CompressionArg::Shared => Compression::Shared,
            CompressionArg::Dedicated => Compression::Dedicated,
        }
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

/// Makes freed big buffers go back to the system at once. glibc's malloc
/// raises its mmap threshold each time a big mapped buffer is freed (up to
/// 32 MiB); from then on, buffers below it come from the heap, and what a
/// burst of big messages took stays with the process after they are gone
/// (measured: 20 clients sending 15 MiB each left 120 MiB behind, round
/// after round). A fixed threshold keeps every buffer of 128 KiB or more in
/// its own mapping, unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_big_buffers_to_the_system() {
    // SAFETY: mallopt only sets malloc's parameters; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_big_buffers_to_the_system() {}

fn main() -> ExitCode {
    return_big_buffers_to_the_system();
    let cli = Cli::parse();
    let (name, opts) = match &cli.mode {
        Mode::Echo(o) => ("echo", o),
        Mode::Broadcast(o) => ("broadcast", o),
        Mode::Pubsub(p) => ("pubsub", &p.common),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(opts.log.filter()))
        .init();
    let result = match cli.mode {
        Mode::Echo(ref o) => serve(name, o, |b| b, |_| Echo, |_| Ok(())),
        Mode::Broadcast(ref o) => serve(name, o, |b| b, |_| Broadcast, |_| Ok(())),
        Mode::Pubsub(ref p) => pubsub(p),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("wsreactor: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one: every connection is a
/// file descriptor. Returns the limit in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn pubsub(p: &PubsubOpts) -> Result<(), String> {
    let store =
        StoreConfig { history: p.history, max_topics: p.max_topics, ..StoreConfig::default() };
    let policy = SlowConsumer::from(p.slow_consumer);
    let rules = p.slow_consumer_for.clone();
    let feed = match &p.synthetic {
        Some(spec) => {
            let spec = parse_spec(spec).map_err(|e| format!("bad --synthetic {spec:?}: {e}"))?;
            Some(SyntheticFeed::from_spec(&spec, 1))
        }
        None => None,
    };
    let token = p.publish_token.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_feed = Arc::clone(&stop);
    let result = serve(
        "pubsub",
        &p.common,
        move |b| {
            let b = b.topics(store).slow_consumer(policy);
            rules.iter().fold(b, |b, (prefix, p)| b.slow_consumer_for(prefix, (*p).into()))
        },
        move |_| PubSub::new(Limits::default(), token.as_deref()),
        move |publisher: Publisher| {
            let Some(feed) = feed else { return Ok(()) };
            log::info!(
                "synthetic feed: {} symbols, {} ticks/s",
                feed.topics().count(),
                feed.rate_per_sec()
            );
            synthetic::spawn(feed, stop_feed, move |topic, tick| {
                if let Err(e) = publisher.publish_to(topic, &Payload::json_trusted(tick)) {
                    log::warn!("synthetic feed: {e}");
                }
            })
            .map(drop)
            .map_err(|e| format!("cannot start the synthetic feed: {e}"))
        },
    );
    stop.store(true, Ordering::Relaxed);
    result
}

fn serve<H: Handler>(
    name: &str,
    opts: &Opts,
    configure: impl FnOnce(Builder<()>) -> Builder<()>,
    factory: impl Fn(usize) -> H + Send + Sync + 'static,
    before_run: impl FnOnce(Publisher) -> Result<(), String>,
) -> Result<(), String> {
    let fds = raise_fd_limit();
    log::debug!("open-file limit: {fds}");
    if let Some(max) = opts.max_connections {
        if fds > 0 && max as u64 > fds {
            log::warn!("--max-connections {max} is above the open-file limit {fds}; see tuning/");
        }
    }
    let mut builder = Server::builder()
        .bind(opts.bind.as_str())
        .map_err(|e| format!("bad --bind {:?}: {e}", opts.bind))?
        .max_message_size(opts.max_message_size)
        .max_backpressure(opts.max_backpressure)
        .backlog(opts.backlog)
        .defer_accept(secs(opts.defer_accept))
        .handshake_timeout(secs(opts.handshake_timeout))
        .ping_interval(secs(opts.ping_interval))
        .pong_timeout(secs(opts.pong_timeout))
        .idle_timeout(secs(opts.idle_timeout))
        .close_timeout(secs(opts.close_timeout))
        .write_stall_timeout(secs(opts.write_stall_timeout))
        .compression(opts.compression.into())
        .compression_level(opts.compression_level)
        .compression_min_size(opts.compression_min_size);
    if let Some(n) = opts.reactors {
        builder = builder.reactors(n);
    }
    if let Some(n) = opts.max_connections {
        builder = builder.max_connections(n);
    }
    if let Some(bytes) = opts.max_memory {
        builder = builder.max_memory(bytes);
    }
    let server = configure(builder)
        .handler(factory)
        .build()
        .map_err(|e| format!("cannot listen on {}: {e}", opts.bind))?;
    let handle = server.handle();
    let grace = secs(opts.shutdown_timeout);
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
    before_run(server.publisher())?;
    let stats_handle = server.handle();
    let result = server.run().map_err(|e| format!("server error: {e}"));
    log::info!("{:?}", stats_handle.stats());
    result
}
