//! A synthetic market-data feed: realistic JSON ticks for many symbols, a
//! random walk per symbol, published at a steady rate. Behind the
//! command-line flag `--synthetic SYMBOLS:RATE`.
//!
//! Everything but [`run`] and [`spawn`] is pure and deterministic for a seed
//! (integer arithmetic only; the timestamp is passed in).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::topic::TopicName;
use super::wire::write_decimal;

/// The most symbols a feed simulates.
pub const MAX_SYMBOLS: usize = 1_000_000;

/// The highest rate a feed runs at, in ticks per second (all symbols together).
pub const MAX_RATE: f64 = 10_000_000.0;

/// The lowest rate: one tick in about 17 minutes.
pub const MIN_RATE: f64 = 0.001;

/// A parsed `SYMBOLS:RATE` flag: how many symbols, and how many ticks per
/// second in total across them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticSpec {
    /// Number of symbols (1..=[`MAX_SYMBOLS`]).
    pub symbols: usize,
    /// Ticks per second over all symbols ([`MIN_RATE`]..=[`MAX_RATE`]).
    pub rate_per_sec: f64,
}

/// Why a `SYMBOLS:RATE` flag does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// Not of the form `SYMBOLS:RATE`.
    Format,
    /// `SYMBOLS` is not an integer in 1..=[`MAX_SYMBOLS`].
    Symbols(String),
    /// `RATE` is not a number in [`MIN_RATE`]..=[`MAX_RATE`].
    Rate(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Format => f.write_str(
                "expected SYMBOLS:RATE, e.g. 100:5000 (100 symbols, 5000 ticks/s in all)",
            ),
            SpecError::Symbols(s) => {
                write!(f, "SYMBOLS must be an integer from 1 to {MAX_SYMBOLS}, not {s:?}")
            }
            SpecError::Rate(s) => write!(
                f,
                "RATE must be a number of ticks per second from {MIN_RATE} to {MAX_RATE}, not {s:?}"
            ),
        }
    }
}

impl std::error::Error for SpecError {}

/// Parses `SYMBOLS:RATE`: `100:5000` is 100 symbols and 5000 ticks per
/// second in total; the rate may have a fraction (`10:0.5`).
///
/// ```
/// use wsreactor::pubsub::synthetic::{parse_spec, SpecError};
///
/// let spec = parse_spec("100:5000")?;
/// assert_eq!((spec.symbols, spec.rate_per_sec), (100, 5000.0));
/// assert_eq!(parse_spec("100"), Err(SpecError::Format));
/// assert!(matches!(parse_spec("0:10"), Err(SpecError::Symbols(_))));
/// assert!(matches!(parse_spec("5:-1"), Err(SpecError::Rate(_))));
/// # Ok::<(), SpecError>(())
/// ```
pub fn parse_spec(spec: &str) -> Result<SyntheticSpec, SpecError> {
    let (symbols, rate) = spec.trim().split_once(':').ok_or(SpecError::Format)?;
    let cut = |s: &str| s.chars().take(32).collect::<String>();
    let symbols = match symbols.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SYMBOLS).contains(&n) => n,
        _ => return Err(SpecError::Symbols(cut(symbols))),
    };
    let rate_per_sec = match rate.trim().parse::<f64>() {
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => r,
        _ => return Err(SpecError::Rate(cut(rate))),
    };
    Ok(SyntheticSpec { symbols, rate_per_sec })
}

impl FromStr for SyntheticSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        parse_spec(s)
    }
}

/// SplitMix64: small, fast, and good enough for simulated prices.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `-k..=k`.
    fn symmetric(&mut self, k: u64) -> i64 {
        self.below(2 * k + 1) as i64 - k as i64
    }
}

/// One simulated instrument. Prices are integers in units of the tick size
/// `10^-decimals`.
#[derive(Debug, Clone)]
struct Symbol {
    topic: TopicName,
    name: Box<str>,
    decimals: u32,
    /// The bid, in ticks.
    bid: i64,
    /// The bid-ask spread, in ticks.
    spread: i64,
    /// The largest step of one random-walk component, in ticks.
    step: u64,
    /// The lowest bid the walk reflects off, in ticks.
    floor: i64,
}

/// A deterministic stream of realistic ticks over `symbols` instruments
/// named `SYM0000-USD`, `SYM0001-USD`, … on topics `md.SYM0000-USD`, ….
///
/// Each symbol starts at a price of a random magnitude (1 to 10 000) times
/// a random mantissa (1 to 5), quoted with five significant digits, and
/// moves by a random walk of at most 2 basis points a step; the spread is 1
/// to 3 price ticks, the size spread over magnitudes from 0.0001 to 5. Each
/// tick picks a symbol at random.
///
/// ```
/// use wsreactor::pubsub::SyntheticFeed;
///
/// let mut feed = SyntheticFeed::new(100, 5000.0, 42);
/// let (topic, json) = feed.next_tick(1_767_225_600_000);
/// assert!(topic.as_str().starts_with("md.SYM00"));
/// assert!(json.starts_with(r#"{"type":"tick","symbol":"SYM00"#));
/// assert!(json.ends_with(r#","ts":1767225600000}"#));
/// ```
#[derive(Debug, Clone)]
pub struct SyntheticFeed {
    rng: Rng,
    symbols: Vec<Symbol>,
    rate_per_sec: f64,
    buf: String,
}

/// The cumulative powers of ten that price formatting uses.
const POW10: [i64; 6] = [1, 10, 100, 1_000, 10_000, 100_000];

impl SyntheticFeed {
    /// A feed of `symbols` instruments (clamped to 1..=[`MAX_SYMBOLS`]) at
    /// `rate_per_sec` ticks per second in all (clamped to
    /// [`MIN_RATE`]..=[`MAX_RATE`]; NaN counts as the minimum), seeded with
    /// `seed`: the same seed gives the same ticks.
    pub fn new(symbols: usize, rate_per_sec: f64, seed: u64) -> SyntheticFeed {
        let n = symbols.clamp(1, MAX_SYMBOLS);
        let rate_per_sec =
            if rate_per_sec.is_nan() { MIN_RATE } else { rate_per_sec.clamp(MIN_RATE, MAX_RATE) };
        let mut rng = Rng(seed);
        let symbols = (0..n)
            .map(|i| {
                // log-uniform over 1..50_000: pick the magnitude, then the mantissa.
                let magnitude = rng.below(5) as u32; // 10^0 .. 10^4
                let decimals = 4 - magnitude + 1; // five significant digits
                let unit = POW10[magnitude as usize] * POW10[decimals as usize];
                let bid = unit + rng.below(4 * unit as u64) as i64; // 1.0 .. 5.0 × 10^magnitude
                let name: Box<str> = format!("SYM{i:04}-USD").into();
                let topic = match TopicName::new(&format!("md.{name}")) {
                    Ok(t) => t,
                    Err(e) => unreachable!("generated topic name is valid: {e}"),
                };
                Symbol {
                    topic,
                    name,
                    decimals,
                    bid,
                    spread: 1 + rng.below(3) as i64,
                    // Two basis points: four components of up to half a bp each.
                    step: (bid as u64 / 20_000).max(1),
                    floor: (bid / 100).max(10),
                }
            })
            .collect();
        SyntheticFeed { rng, symbols, rate_per_sec, buf: String::with_capacity(160) }
    }

    /// A feed for a parsed `--synthetic` flag.
    pub fn from_spec(spec: &SyntheticSpec, seed: u64) -> SyntheticFeed {
        SyntheticFeed::new(spec.symbols, spec.rate_per_sec, seed)
    }

    /// The number of symbols.
    pub fn symbols(&self) -> usize {
        self.symbols.len()
    }

    /// The total rate, in ticks per second.
    pub fn rate_per_sec(&self) -> f64 {
        self.rate_per_sec
    }

    /// Every topic the feed publishes on, in symbol order.
    pub fn topics(&self) -> impl Iterator<Item = &TopicName> {
        self.symbols.iter().map(|s| &s.topic)
    }

    /// The next tick, stamped `ts_ms` (Unix milliseconds): its topic and JSON
    /// `{"type":"tick","symbol":"SYM0042-USD","bid":101.25,"ask":101.27,"size":0.35,"ts":<ts_ms>}`.
    /// The text is valid until the next call.
    pub fn next_tick(&mut self, ts_ms: u64) -> (&TopicName, &str) {
        let i = self.rng.below(self.symbols.len() as u64) as usize;
        let rng = &mut self.rng;
        let sym = &mut self.symbols[i];
        let walk: i64 = (0..4).map(|_| rng.symmetric(sym.step)).sum();
        sym.bid += walk;
        if sym.bid < sym.floor {
            sym.bid = 2 * sym.floor - sym.bid;
        }
        if rng.below(8) == 0 {
            sym.spread = 1 + rng.below(3) as i64;
        }
        // log-uniform size in 1..50_000 units of 0.0001.
        let size = {
            let magnitude = rng.below(5) as usize;
            POW10[magnitude] + rng.below((9 * POW10[magnitude]) as u64) as i64
        }
        .min(50_000);

        let buf = &mut self.buf;
        buf.clear();
        buf.push_str("{\"type\":\"tick\",\"symbol\":\"");
        buf.push_str(&sym.name);
        buf.push_str("\",\"bid\":");
        write_fixed(buf, sym.bid, sym.decimals);
        buf.push_str(",\"ask\":");
        write_fixed(buf, sym.bid + sym.spread, sym.decimals);
        buf.push_str(",\"size\":");
        write_fixed(buf, size, 4);
        buf.push_str(",\"ts\":");
        write_decimal(buf, ts_ms);
        buf.push('}');
        (&sym.topic, buf)
    }
}

/// Appends `value × 10^-decimals` (`value >= 0`, `decimals <= 5`) with
/// exactly `decimals` fraction digits.
fn write_fixed(out: &mut String, value: i64, decimals: u32) {
    let value = value.max(0) as u64;
    let scale = POW10[decimals as usize] as u64;
    write_decimal(out, value / scale);
    if decimals > 0 {
        out.push('.');
        let frac = value % scale;
        let digits = super::wire::decimal_len(frac);
        for _ in digits..decimals as usize {
            out.push('0');
        }
        write_decimal(out, frac);
    }
}

/// What a [`run`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Ticks handed to the sink.
    pub sent: u64,
    /// Ticks skipped because the sink fell more than a second behind.
    pub skipped: u64,
}

/// The longest single sleep, so that a stop request is noticed quickly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Runs `feed` on this thread, calling `sink(topic, json)` at the feed's
/// rate until `stop` is set.
///
/// Tick `n` is due at `start + n / rate`, computed from one start instant,
/// so the rate does not drift however long it runs. Between due times the
/// thread sleeps (no spinning); ticks that fell due during a sleep go out
/// together, so at high rates they leave in small bursts, each burst
/// stamped with one timestamp. If the sink falls more than a second behind
/// (it blocks), the backlog beyond one second is skipped and counted.
pub fn run<F>(mut feed: SyntheticFeed, stop: &AtomicBool, mut sink: F) -> RunStats
where
    F: FnMut(&TopicName, &str),
{
    let rate = feed.rate_per_sec();
    let max_backlog = (rate as u64).max(1);
    let mut stats = RunStats::default();
    // `index`: the next tick's position in the schedule.
    let mut index: u64 = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
        if due.saturating_sub(index) > max_backlog {
            stats.skipped += due - max_backlog - index;
            index = due - max_backlog;
        }
        if index < due {
            let ts = unix_ms();
            while index < due && !stop.load(Ordering::Relaxed) {
                let (topic, json) = feed.next_tick(ts);
                sink(topic, json);
                index += 1;
                stats.sent += 1;
            }
            continue;
        }
        let next_at = start + Duration::from_secs_f64(index as f64 / rate);
        thread::sleep(next_at.saturating_duration_since(now).min(MAX_SLEEP));
    }
    stats
}

/// Starts [`run`] on a new thread named `wsreactor-synthetic`; set `stop`
/// and join the handle to end it.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use wsreactor::pubsub::SyntheticFeed;
/// use wsreactor::pubsub::synthetic::spawn;
///
/// let stop = Arc::new(AtomicBool::new(false));
/// let feed = SyntheticFeed::new(10, 1000.0, 7);
/// let handle = spawn(feed, Arc::clone(&stop), |_topic, _json| { /* publish */ })?;
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// stop.store(true, Ordering::Relaxed);
/// let stats = handle.join().expect("feed thread");
/// assert!(stats.sent > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn<F>(
    feed: SyntheticFeed,
    stop: Arc<AtomicBool>,
    sink: F,
) -> std::io::Result<JoinHandle<RunStats>>
where
    F: FnMut(&TopicName, &str) + Send + 'static,
{
    thread::Builder::new().name("wsreactor-synthetic".into()).spawn(move || run(feed, &stop, sink))
}

/// The wall clock in Unix milliseconds (0 before 1970).
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;

    #[test]
    fn spec_parsing() {
        let ok = |s: &str| parse_spec(s).unwrap();
        assert_eq!(ok("100:5000"), SyntheticSpec { symbols: 100, rate_per_sec: 5000.0 });
        assert_eq!(ok(" 1:0.5 "), SyntheticSpec { symbols: 1, rate_per_sec: 0.5 });
        assert_eq!(ok("1000000:1e7").rate_per_sec, 1e7);
        assert_eq!(ok("3 : 2").symbols, 3);
        assert_eq!("7:70".parse::<SyntheticSpec>().unwrap().symbols, 7);
        for bad in ["", "100", "100-5000", ":", "100:"] {
            let e = parse_spec(bad).unwrap_err();
            assert!(
                matches!(e, SpecError::Format | SpecError::Symbols(_) | SpecError::Rate(_)),
                "{bad}: {e:?}"
            );
        }
        for bad in ["0:1", "-1:1", "x:1", "1000001:1", "1.5:1", "99999999999999999999999:1", ":5"] {
            assert!(matches!(parse_spec(bad), Err(SpecError::Symbols(_))), "{bad}");
        }
        for bad in ["1:0", "1:-5", "1:NaN", "1:inf", "1:1e8", "1:abc", "1:5:6", "1:0.0001"] {
            assert!(matches!(parse_spec(bad), Err(SpecError::Rate(_))), "{bad}");
        }
        let msg = parse_spec(&format!("{}:1", "9".repeat(100))).unwrap_err().to_string();
        assert!(msg.len() < 120, "{msg}");
        assert!(SpecError::Format.to_string().contains("100:5000"));
    }

    #[test]
    fn ticks_are_realistic_json() {
        let mut feed = SyntheticFeed::new(50, 1000.0, 1);
        assert_eq!(feed.symbols(), 50);
        assert_eq!(feed.rate_per_sec(), 1000.0);
        let topics: Vec<String> = feed.topics().map(|t| t.to_string()).collect();
        assert_eq!(topics[0], "md.SYM0000-USD");
        assert_eq!(topics[42], "md.SYM0042-USD");
        let mut first: HashMap<String, f64> = HashMap::new();
        let mut last: HashMap<String, f64> = HashMap::new();
        for n in 0..20_000u64 {
            let ts = 1_767_225_600_000 + n;
            let (topic, json) = feed.next_tick(ts);
            let topic = topic.to_string();
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["type"], "tick");
            let sym = v["symbol"].as_str().unwrap();
            assert_eq!(format!("md.{sym}"), topic);
            let (bid, ask) = (v["bid"].as_f64().unwrap(), v["ask"].as_f64().unwrap());
            let size = v["size"].as_f64().unwrap();
            assert!(bid > 0.0 && ask > bid, "{json}");
            assert!((ask - bid) / bid < 0.01, "spread: {json}");
            assert!((0.0001..=5.0).contains(&size), "{json}");
            assert_eq!(v["ts"], ts);
            // Prices have the symbol's fixed number of decimals.
            let bid_text = json.split("\"bid\":").nth(1).unwrap().split(',').next().unwrap();
            let ask_text = json.split("\"ask\":").nth(1).unwrap().split(',').next().unwrap();
            assert_eq!(
                bid_text.split('.').nth(1).map(str::len),
                ask_text.split('.').nth(1).map(str::len)
            );
            assert!(json.len() < 160, "{json}");
            first.entry(topic.clone()).or_insert(bid);
            last.insert(topic, bid);
        }
        // Every symbol ticked, and prices moved, but not wildly.
        assert_eq!(first.len(), 50);
        let moved = first.iter().filter(|(k, v)| last[*k] != **v).count();
        assert!(moved > 40);
        for (k, v) in &first {
            let ratio = last[k] / v;
            assert!((0.5..2.0).contains(&ratio), "{k}: {v} -> {}", last[k]);
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let run = |seed| {
            let mut f = SyntheticFeed::new(20, 100.0, seed);
            (0..500)
                .map(|i| {
                    let (t, j) = f.next_tick(i);
                    format!("{t} {j}")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn clamps() {
        let f = SyntheticFeed::new(0, f64::NAN, 0);
        assert_eq!((f.symbols(), f.rate_per_sec()), (1, MIN_RATE));
        let f = SyntheticFeed::new(3, 1e12, 0);
        assert_eq!(f.rate_per_sec(), MAX_RATE);
        let f = SyntheticFeed::from_spec(&SyntheticSpec { symbols: 2, rate_per_sec: 3.0 }, 0);
        assert_eq!((f.symbols(), f.rate_per_sec()), (2, 3.0));
    }

    #[test]
    fn fixed_point_formatting() {
        for (v, d, s) in [
            (12345, 2, "123.45"),
            (5, 4, "0.0005"),
            (100_000, 5, "1.00000"),
            (7, 0, "7"),
            (-3, 1, "0.0"),
        ] {
            let mut out = String::new();
            write_fixed(&mut out, v, d);
            assert_eq!(out, s);
        }
    }

    #[test]
    fn runner_paces_without_drift() {
        let stop = Arc::new(AtomicBool::new(false));
        let rate = 2000.0;
        let feed = SyntheticFeed::new(10, rate, 3);
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = Arc::clone(&count);
        let start = Instant::now();
        let handle = spawn(feed, Arc::clone(&stop), move |t, j| {
            assert!(j.contains(&t.as_str()[3..]));
            c.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let stats = handle.join().unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(stats.sent, count.load(Ordering::Relaxed));
        assert_eq!(stats.skipped, 0);
        // Never ahead of the schedule; behind by at most a little (a loaded machine).
        let expected_max = rate * elapsed + 1.0;
        assert!((stats.sent as f64) <= expected_max, "{stats:?} in {elapsed}s");
        assert!((stats.sent as f64) >= rate * 0.25, "{stats:?} in {elapsed}s");
    }

    #[test]
    fn runner_skips_a_stalled_backlog() {
        let stop = AtomicBool::new(false);
        let feed = SyntheticFeed::new(1, 100.0, 3);
        let mut calls = 0;
        let stats = run(feed, &stop, |_, _| {
            calls += 1;
            if calls == 1 {
                thread::sleep(Duration::from_millis(1300)); // stall: 130 ticks fall due
            }
            if calls >= 110 {
                stop.store(true, Ordering::Relaxed);
            }
        });
        assert!(stats.skipped >= 20, "{stats:?}");
        assert!(stats.sent >= 100, "{stats:?}");
    }
}
