//! Hostile clients against the `wsreactor` binary: what they can make the
//! server hold, that the memory budget bounds it, and that memory goes back
//! when they leave. Each server is its own process, so its RSS is its own.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::{masked, upgrade_request};

const MIB: u64 = 1 << 20;

/// The binary on a free port, its log in a file.
struct Proc {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let bind = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("wsreactor-hostile-{}.log", free_port()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
            .args(args)
            .args(["--bind", &bind, "--log", "info", "--reactors", "2"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "{line}");
        Proc { child, addr: bind.parse().unwrap(), log }
    }

    /// The server's resident set, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        kib << 10
    }

    /// The RSS once the server has had a moment to finish what it was doing.
    fn settled_rss(&self) -> u64 {
        thread::sleep(Duration::from_millis(500));
        self.rss()
    }

    /// SIGTERM, then the log (which ends with the server's counters).
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The value of `name` in the `Stats { .. }` line the binary logs at exit.
fn stat(log: &str, name: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("Stats {"))?;
    let at = line.find(&format!(" {name}: "))? + name.len() + 3;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A handshake with `extra` header lines; the stream, blocking, with timeouts.
fn open(addr: SocketAddr, path: &str, extra: &str) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let req = upgrade_request(addr, extra).replacen("GET /chat", &format!("GET {path}"), 1);
    s.write_all(req.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        let status = head.lines().next().unwrap_or_default().to_owned();
        return Err(io::Error::other(status));
    }
    Ok(s)
}

/// The header of a masked frame declaring `len` payload bytes, with its key.
fn header(fin: bool, rsv1: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xFFFF => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&[0, 0, 0, 0]); // a zero mask key: the payload goes as it is
    h
}

/// A hostile connection and what it still has to send: `left` bytes of
/// `next()` repeated (the first message may be cut short, as `left` says).
struct Attacker {
    s: TcpStream,
    msg: Vec<u8>,
    at: usize,
    left: usize,
}

impl Attacker {
    /// `msg` over and over, `bytes` in all.
    fn new(s: TcpStream, msg: Vec<u8>, bytes: usize) -> Attacker {
        s.set_nonblocking(true).unwrap();
        Attacker { s, msg, at: 0, left: bytes }
    }

    /// Writes what the socket takes now; false once done or refused.
    fn push(&mut self) -> bool {
        while self.left > 0 {
            let end = self.msg.len().min(self.at + self.left);
            match self.s.write(&self.msg[self.at..end]) {
                Ok(n) => {
                    self.left -= n;
                    self.at = (self.at + n) % self.msg.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => self.left = 0,
            }
        }
        false
    }
}

/// Writes, round-robin and without blocking, what every attacker has to
/// send, for at most `time`; the streams, to be held open.
fn pump(mut all: Vec<Attacker>, time: Duration) -> Vec<TcpStream> {
    let deadline = Instant::now() + time;
    let mut busy: Vec<usize> = (0..all.len()).collect();
    while !busy.is_empty() && Instant::now() < deadline {
        busy.retain(|&i| all[i].push());
        thread::sleep(Duration::from_millis(5));
    }
    all.drain(..).map(|a| a.s).collect()
}

/// Reads one server frame: (opcode, payload); None on EOF, error or timeout.
fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => {
                    (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10)
                }
                126 | 127 => (usize::MAX, 0),
                n => (n as usize, 2),
            };
            if at > 0 && buf.len() >= at + len {
                let f = (buf[0] & 0xf, buf[at..at + len].to_vec());
                buf.drain(..at + len);
                return Some(f);
            }
        }
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads server frames until a close frame; its code (None on EOF or timeout).
fn close_code(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    loop {
        let (op, payload) = read_frame(s, &mut buf)?;
        if op == 8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
}

// ---------------------------------------------------------------------------
// The attacks. Each opens its connections and leaves them open, unread.

/// Messages declared `total` bytes long, of which `sent` arrive.
fn partial_messages(
    addr: SocketAddr,
    n: usize,
    total: u64,
    sent: usize,
    path: &str,
) -> Vec<Attacker> {
    let mut data = header(true, false, 2, total);
    data.resize(data.len() + sent, 0);
    let bytes = data.len();
    connections(addr, n, path, "", |s| Attacker::new(s, data.clone(), bytes))
}

/// `n` connections to `path`, those the server lets in, each made an
/// attacker by `arm`.
fn connections(
    addr: SocketAddr,
    n: usize,
    path: &str,
    extra: &str,
    arm: impl Fn(TcpStream) -> Attacker,
) -> Vec<Attacker> {
    (0..n).filter_map(|_| open(addr, path, extra).ok()).map(arm).collect()
}

/// Sends messages to echo, `bytes` in all, and never reads the echoes.
fn unread_echoes(addr: SocketAddr, n: usize, bytes: usize) -> Vec<Attacker> {
    let msg = masked(true, 2, &vec![7u8; 64 << 10]);
    connections(addr, n, "/", "", |s| Attacker::new(s, msg.clone(), bytes))
}

/// Sends pings, `bytes` in all, and never reads the pongs.
fn unread_pongs(addr: SocketAddr, n: usize, bytes: usize, path: &str) -> Vec<Attacker> {
    let pings = masked(true, 9, &[b'p'; 125]).repeat(64);
    connections(addr, n, path, "", |s| Attacker::new(s, pings.clone(), bytes))
}

/// A compressed first fragment that inflates to `inflated` bytes, and no more.
fn compressed_bombs(addr: SocketAddr, n: usize, inflated: usize, path: &str) -> Vec<Attacker> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; inflated]).unwrap();
    z.flush().unwrap();
    let deflated = z.get_ref().clone();
    let mut data = header(false, true, 2, deflated.len() as u64);
    data.extend_from_slice(&deflated);
    let bytes = data.len();
    let ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    connections(addr, n, path, ext, |s| Attacker::new(s, data.clone(), bytes))
}

/// A subscribe request for `names`.
fn subscribe(names: &[String]) -> Vec<u8> {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    masked(true, 1, format!(r#"{{"op":"subscribe","topics":[{}]}}"#, list.join(",")).as_bytes())
}

fn unsubscribe(names: &[String]) -> Vec<u8> {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    masked(true, 1, format!(r#"{{"op":"unsubscribe","topics":[{}]}}"#, list.join(",")).as_bytes())
}

/// Names nobody publishes: `prefix.0`, `prefix.1`, ...
fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}.{i}")).collect()
}

/// Reads `n` frames (replies), failing on EOF.
fn read_replies(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) {
    for _ in 0..n {
        let (op, _) = read_frame(s, buf).expect("a reply");
        assert_eq!(op, 1, "a text reply");
    }
}

// ---------------------------------------------------------------------------
// The three holes, each as it was found.

/// Hole 1: one connection subscribes to and unsubscribes from 100,000
/// names nobody publishes. The registry forgets each, so nothing is left.
#[test]
fn churning_through_100k_topic_names_leaves_no_topic_and_no_memory() {
    let p = Proc::start(&["pubsub"]);
    let mut s = open(p.addr, "/", "").unwrap();
    let mut buf = Vec::new();
    // Warm up: the first requests size the reactor's scratch space.
    s.write_all(&subscribe(&names("warm", 0..64))).unwrap();
    s.write_all(&unsubscribe(&names("warm", 0..64))).unwrap();
    read_replies(&mut s, &mut buf, 2);
    let before = p.settled_rss();
    let rounds = 100_000usize.div_ceil(64);
    for batch in (0..rounds).collect::<Vec<_>>().chunks(16) {
        for &r in batch {
            let n = names("churn", r * 64..r * 64 + 64);
            s.write_all(&subscribe(&n)).unwrap();
            s.write_all(&unsubscribe(&n)).unwrap();
        }
        read_replies(&mut s, &mut buf, batch.len() * 2);
    }
    drop(s);
    let after = p.settled_rss();
    let log = p.stop();
    eprintln!("RSS before {} KiB, after 100,032 names {} KiB", before >> 10, after >> 10);
    assert!(after <= before + 4 * MIB, "RSS grew from {before} to {after}");
    assert_eq!(stat(&log, "topics"), Some(0), "topics left in the registry: {log}");
}

/// Hole 2: 20 subscribers each start a 15 MiB message. The topic server's
/// limit for them is its 64 KiB request cap, enforced at the frame header:
/// each is closed with 1009 before any payload arrives.
#[test]
fn parked_messages_to_the_topic_server_are_refused_at_the_header() {
    let p = Proc::start(&["pubsub", "--publish-token", "tok"]);
    let before = p.settled_rss();
    let mut conns: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = open(p.addr, "/", "").unwrap();
            s.write_all(&header(true, false, 2, 15 * MIB - 1)).unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        assert_eq!(close_code(s), Some(1009));
    }
    // A publisher's limit is the publish cap (1 MiB): over it, refused too.
    let mut publisher = open(p.addr, "/?token=tok", "").unwrap();
    publisher.write_all(&header(true, false, 2, MIB + 1)).unwrap();
    assert_eq!(close_code(&mut publisher), Some(1009));
    // Up to the cap, requests work as before.
    let mut s = open(p.addr, "/", "").unwrap();
    let ping = r#"{"op":"ping","pad":""}"#;
    let padded =
        ping.replace(r#""pad":"""#, &format!(r#""pad":"{}""#, "p".repeat((64 << 10) - ping.len())));
    assert_eq!(padded.len(), 64 << 10);
    s.write_all(&masked(true, 1, padded.as_bytes())).unwrap();
    let (op, reply) = read_frame(&mut s, &mut Vec::new()).unwrap();
    assert_eq!((op, &reply[..]), (1, &br#"{"op":"pong"}"#[..]));
    let after = p.settled_rss();
    assert!(after <= before + 2 * MIB, "RSS grew from {before} to {after}");
}

/// Sends, on each of `n` new connections, all but the last byte of a
/// message of `len` bytes, then closes them all.
fn big_message_round(addr: SocketAddr, n: usize, len: u64) {
    let body = vec![0u8; 1 << 20];
    let conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = open(addr, "/", "").unwrap();
            s.write_all(&header(true, false, 2, len)).unwrap();
            let mut left = len as usize - 1;
            while left > 0 {
                let k = left.min(body.len());
                s.write_all(&body[..k]).unwrap();
                left -= k;
            }
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(300)); // the server reads the rest
    drop(conns);
}

/// Hole 3: five rounds of 20 connections that each send 15 MiB but the
/// last byte and leave. What they held goes back: after round 5 the RSS is
/// at most round 1's plus 2 MiB.
#[test]
fn memory_held_for_big_messages_goes_back_round_after_round() {
    let p = Proc::start(&["echo"]);
    let start = p.settled_rss();
    let curve: Vec<u64> = (0..5)
        .map(|_| {
            big_message_round(p.addr, 20, 15 * MIB);
            p.settled_rss()
        })
        .collect();
    let mib: Vec<String> = curve.iter().map(|r| format!("{:.1}", *r as f64 / MIB as f64)).collect();
    eprintln!(
        "RSS: start {:.1} MiB, after each round {} MiB",
        start as f64 / MIB as f64,
        mib.join(", ")
    );
    assert!(curve[4] <= curve[0] + 2 * MIB, "RSS crept: {mib:?}");
}

// ---------------------------------------------------------------------------
// The budget: many attackers at once, and a healthy client beside them.

/// Samples a process's RSS every 50 ms until stopped; the highest seen.
struct RssWatch {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(&path).unwrap_or_default();
                let kib: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0);
                max = max.max(kib << 10);
                thread::sleep(Duration::from_millis(50));
            }
            max
        });
        RssWatch { stop, thread }
    }

    fn max(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A healthy client in its own thread, for as long as `run` is set: `step`
/// sends a request and reads until its answer; the count of answers, and of
/// requests that took longer than `patience`. It must never be cut off.
fn healthy(
    mut s: TcpStream,
    run: Arc<AtomicBool>,
    patience: Duration,
    step: impl Fn(&mut TcpStream, &mut Vec<u8>) -> bool + Send + 'static,
) -> thread::JoinHandle<(u32, u32)> {
    thread::spawn(move || {
        let (mut ok, mut slow) = (0, 0);
        let mut buf = Vec::new();
        while run.load(Ordering::Relaxed) {
            let t = Instant::now();
            assert!(step(&mut s, &mut buf), "the healthy client was cut off after {ok} answers");
            ok += 1;
            slow += u32::from(t.elapsed() > patience);
            thread::sleep(Duration::from_millis(20));
        }
        (ok, slow)
    })
}

/// What a budget run saw.
struct Outcome {
    baseline: u64,
    max_rss: u64,
    answers: u32,
    slow: u32,
    log: String,
}

/// Starts `args` with a 64 MiB budget, measures its RSS with no connection,
/// starts the healthy client, opens the connections of `attack`, lets them
/// all send for up to 4 s, holds them open 2 s more, and reports.
fn budget_run(
    args: &[&str],
    healthy_client: impl FnOnce(SocketAddr, Arc<AtomicBool>) -> thread::JoinHandle<(u32, u32)>,
    attack: impl FnOnce(SocketAddr) -> Vec<Attacker>,
) -> Outcome {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--max-memory", "64M"]);
    let p = Proc::start(&all);
    let baseline = p.settled_rss();
    let watch = RssWatch::start(p.child.id());
    let run = Arc::new(AtomicBool::new(true));
    let client = healthy_client(p.addr, Arc::clone(&run));
    let attackers = attack(p.addr);
    eprintln!("{} hostile connections open", attackers.len());
    let held = pump(attackers, Duration::from_secs(4));
    thread::sleep(Duration::from_secs(2));
    run.store(false, Ordering::Relaxed);
    let (answers, slow) = client.join().unwrap();
    let max_rss = watch.max();
    drop(held);
    let log = p.stop();
    eprintln!(
        "RSS with no connections {:.1} MiB, highest {:.1} MiB; {answers} answers, {slow} slow; \
         shed {:?}, refused {:?}",
        baseline as f64 / MIB as f64,
        max_rss as f64 / MIB as f64,
        stat(&log, "memory_shed"),
        stat(&log, "memory_refused"),
    );
    Outcome { baseline, max_rss, answers, slow, log }
}

fn check_budget(o: &Outcome) {
    let limit = 64 * MIB + o.baseline + o.baseline / 10;
    assert!(o.max_rss <= limit, "RSS reached {} (limit {limit})", o.max_rss);
    assert!(stat(&o.log, "memory_shed").unwrap_or(0) > 0, "the budget shed nobody: {}", o.log);
    assert!(o.answers >= 20, "the healthy client got {} answers", o.answers);
    assert!(o.slow * 10 <= o.answers, "{} of {} answers were slow", o.slow, o.answers);
}

/// An echo client: a 1 KiB message, then its echo.
fn echo_step(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let msg = vec![b'h'; 1024];
    if s.write_all(&masked(true, 2, &msg)).is_err() {
        return false;
    }
    matches!(read_frame(s, buf), Some((2, echo)) if echo == msg)
}

/// 800 connections, 200 for each attack the echo server can meet (its
/// limit is 16 MiB a message): partial messages, unread output, unread
/// pongs, compressed data inflating towards the limit. Together they ask
/// for gigabytes; the budget holds the server to 64 MiB and the healthy
/// client keeps its echo.
#[test]
fn eight_hundred_hostile_connections_stay_under_the_echo_servers_budget() {
    let o = budget_run(
        &["echo", "--compression", "shared"],
        |addr, run| {
            let s = open(addr, "/", "").unwrap();
            healthy(s, run, Duration::from_secs(1), echo_step)
        },
        |addr| {
            let mut held = partial_messages(addr, 200, 8 * MIB, 1 << 20, "/");
            held.extend(unread_echoes(addr, 200, 4 << 20));
            held.extend(unread_pongs(addr, 200, 2 << 20, "/"));
            held.extend(compressed_bombs(addr, 200, 8 << 20, "/"));
            held
        },
    );
    check_budget(&o);
}

/// 1,000 connections against the topic server, 200 for each of five
/// attacks: partial messages and compressed data (from publishers, whose
/// limit is 1 MiB), unread deliveries, unread pongs, and subscriptions to
/// 256 made-up names each. The healthy subscriber keeps its deliveries and
/// its pongs.
#[test]
fn a_thousand_hostile_connections_stay_under_the_topic_servers_budget() {
    let args =
        ["pubsub", "--publish-token", "tok", "--compression", "shared", "--synthetic", "10:200"];
    let o = budget_run(
        &args,
        |addr, run| {
            let mut s = open(addr, "/", "").unwrap();
            s.write_all(&subscribe(&["md.SYM0000-USD".to_owned()])).unwrap();
            // Each step: a ping op, then read (deliveries included) to its pong.
            healthy(s, run, Duration::from_secs(1), |s, buf| {
                if s.write_all(&masked(true, 1, br#"{"op":"ping"}"#)).is_err() {
                    return false;
                }
                loop {
                    match read_frame(s, buf) {
                        Some((1, m)) if m == br#"{"op":"pong"}"# => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
            })
        },
        |addr| {
            // A publisher of a busy topic, 32 MiB of 16 KiB publishes...
            let mut publish = vec![2u8, 3];
            publish.extend_from_slice(b"hot");
            publish.extend_from_slice(&[1u8; 16 << 10]);
            let publisher = open(addr, "/?token=tok", "").unwrap();
            let mut held = vec![Attacker::new(publisher, masked(true, 2, &publish), 32 << 20)];
            // ... to 200 subscribers that never read.
            let hot = subscribe(&["hot".to_owned()]);
            held.extend(connections(addr, 200, "/", "", |s| {
                Attacker::new(s, hot.clone(), hot.len())
            }));
            held.extend(partial_messages(addr, 200, MIB, (1 << 20) - 1, "/?token=tok"));
            held.extend(compressed_bombs(addr, 200, 1 << 20, "/?token=tok"));
            held.extend(unread_pongs(addr, 200, 2 << 20, "/"));
            // Subscriptions to 256 made-up names each, 51,200 in all.
            let next = std::cell::Cell::new(0);
            held.extend(connections(addr, 200, "/", "", |s| {
                let k = next.replace(next.get() + 256);
                let ops: Vec<u8> = (0..4)
                    .flat_map(|op| subscribe(&names("made.up", k + op * 64..k + op * 64 + 64)))
                    .collect();
                let len = ops.len();
                Attacker::new(s, ops, len)
            }));
            held
        },
    );
    check_budget(&o);
}
