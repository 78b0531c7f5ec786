//! The `wsreactor` binary: startup line, errors, modes, signals.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{RawClient, masked};

/// Runs the binary on a free port and waits for its startup line.
struct Cli {
    child: Child,
    addr: SocketAddr,
    line: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        Cli::start_with(args, "warn", |_| {})
    }

    /// Like [`Cli::start`] with `--log LOG`, after `configure` (e.g. a piped stderr) runs on the
    /// command.
    fn start_with(args: &[&str], log: &str, configure: impl FnOnce(&mut Command)) -> Cli {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsreactor"));
        cmd.args(args)
            .args(["--bind", &bind, "--log", log])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Cli { child, addr: bind.parse().unwrap(), line }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child this test started.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }

    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn echo_prints_its_address_and_echoes() {
    let cli = Cli::start(&["echo", "--reactors", "2"]);
    assert!(cli.line.contains(&format!("ws://{}", cli.addr)), "{}", cli.line);
    assert!(cli.line.contains("echo") && cli.line.contains("2 reactor"), "{}", cli.line);
    let mut c = RawClient::connect(cli.addr);
    c.send(&masked(true, 1, b"hello"));
    assert_eq!(c.read_frame().unwrap().payload, b"hello");
}

#[test]
fn sigterm_closes_connections_with_1001_and_exits() {
    let mut cli = Cli::start(&["echo", "--shutdown-timeout", "5"]);
    let mut clients: Vec<RawClient> = (0..4).map(|_| RawClient::connect(cli.addr)).collect();
    cli.signal(libc::SIGTERM);
    for c in &mut clients {
        assert_eq!(c.expect_close(), Some(1001));
        c.send(&masked(true, 8, &1001u16.to_be_bytes()));
    }
    let status = cli.wait(Duration::from_secs(5)).expect("did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigint_exits_at_the_deadline_when_clients_do_not_answer() {
    let mut cli = Cli::start(&["echo", "--shutdown-timeout", "0.3"]);
    let mut silent = RawClient::connect(cli.addr);
    cli.signal(libc::SIGINT);
    assert_eq!(silent.expect_close(), Some(1001));
    assert!(cli.wait(Duration::from_secs(3)).is_some_and(|s| s.success()));
}

#[test]
fn broadcast_mode_sends_to_everyone_including_the_sender() {
    let cli = Cli::start(&["broadcast", "--reactors", "2"]);
    let mut clients: Vec<RawClient> = (0..6).map(|_| RawClient::connect(cli.addr)).collect();
    clients[2].send(&masked(true, 2, b"tick"));
    for c in &mut clients {
        assert_eq!(c.read_frame().unwrap().payload, b"tick");
    }
}

#[test]
fn max_connections_and_max_message_size_flags() {
    let cli = Cli::start(&["echo", "--max-connections", "1", "--max-message-size", "1K"]);
    let mut a = RawClient::connect(cli.addr);
    let mut b = RawClient::connect_tcp(cli.addr);
    b.send(support::upgrade_request(cli.addr, "").as_bytes());
    assert!(b.read_http_head().starts_with("HTTP/1.1 503"));
    a.send(&masked(true, 2, &[0; 1025]));
    assert_eq!(a.expect_close(), Some(1009));
}

fn run_to_end(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsreactor")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run_to_end(&["echo", "--bind", &addr]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot listen on") && err.contains(&addr), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_second_wsreactor_on_the_same_port_is_refused() {
    let first = Cli::start(&["echo"]);
    let (code, err) = run_to_end(&["echo", "--bind", &first.addr.to_string()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

#[test]
fn bad_flags_are_clear_errors() {
    for args in [
        &["echo", "--reactors", "many"][..],
        &["echo", "--max-message-size", "12Q"],
        &["echo", "--bind", "not an address"],
        &["serve"],
    ] {
        let (code, err) = run_to_end(args);
        assert_ne!(code, 0, "{args:?}");
        assert!(!err.is_empty() && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Runs the binary on a free port for up to 5 s: its exit status (`None`: still running, then
/// killed), its stderr, and whether anything was listening on that port meanwhile.
fn run_briefly(args: &[&str]) -> (Option<std::process::ExitStatus>, String, bool) {
    let bind = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsreactor"))
        .args(args)
        .args(["--bind", &bind])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut exited = false;
    while !exited && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        exited = child.try_wait().unwrap().is_some();
    }
    let listening = std::net::TcpStream::connect(&bind).is_ok();
    let _ = child.kill(); // a no-op if it exited
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (exited.then_some(status), err, listening)
}

#[test]
fn bad_log_levels_and_zero_reactors_are_refused_before_listening() {
    for (args, flag) in [
        (&["echo", "--log", "bogus"][..], "--log"),
        (&["pubsub", "--log", ""], "--log"),
        (&["broadcast", "--log", "warning"], "--log"),
        (&["echo", "--reactors", "0"], "--reactors"),
        (&["pubsub", "--reactors", "0"], "--reactors"),
    ] {
        let (status, err, listening) = run_briefly(args);
        assert!(!listening, "{args:?} started a server; stderr: {err}");
        let status = status.unwrap_or_else(|| panic!("{args:?} was accepted; stderr: {err}"));
        assert!(!status.success(), "{args:?}: {status:?}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: ") && first.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let (_, err, _) = run_briefly(&["echo", "--log", "bogus"]);
    assert!(err.contains("error, warn, info, debug, trace, off"), "{err}");
    let (_, err, _) = run_briefly(&["echo", "--reactors", "0"]);
    assert!(err.contains("at least 1"), "{err}");
}

/// `--log` takes a level in any case; RUST_LOG overrides it. The binary logs the open-file
/// limit at debug level before its startup line, and its counters at info level at exit.
#[test]
fn log_levels_in_any_case_start_and_rust_log_overrides_them() {
    for (log, rust_log, debug) in [
        ("debug", None, true),
        ("OFF", None, false),
        ("Trace", None, true),
        ("off", Some("debug"), true),
        ("DEBUG", Some("error"), false),
    ] {
        let mut cli = Cli::start_with(&["echo", "--shutdown-timeout", "1"], log, |c| {
            c.env_remove("RUST_LOG").stderr(Stdio::piped());
            if let Some(v) = rust_log {
                c.env("RUST_LOG", v);
            }
        });
        assert!(cli.line.contains("listening on"), "--log {log}: {}", cli.line);
        let mut c = RawClient::connect(cli.addr);
        c.send(&masked(true, 1, b"hello"));
        assert_eq!(c.read_frame().unwrap().payload, b"hello");
        drop(c);
        cli.signal(libc::SIGTERM);
        let status = cli.wait(Duration::from_secs(5)).expect("did not exit after SIGTERM");
        assert!(status.success(), "{status:?}");
        let mut err = String::new();
        cli.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let case = format!("--log {log}, RUST_LOG {rust_log:?}: {err}");
        assert_eq!(err.contains("open-file limit"), debug, "{case}");
        if log == "OFF" {
            assert!(err.is_empty(), "{case}");
        }
    }
}

#[test]
fn slow_consumer_for_rejects_malformed_rules_clearly() {
    for (value, says) in [
        ("md.", "no '='"),
        ("=close", "empty PREFIX"),
        ("md.=bogus", "unknown policy \"bogus\""),
        ("md x=drop", "no topic name can start with \"md x\""),
    ] {
        let (code, err) =
            run_to_end(&["pubsub", "--bind", "127.0.0.1:0", "--slow-consumer-for", value]);
        assert_ne!(code, 0, "{value:?} was accepted");
        assert!(err.contains("--slow-consumer-for") && err.contains(says), "{value:?}: {err}");
        assert!(err.contains("PREFIX=close|drop|conflate"), "{value:?}: {err}");
        assert!(!err.contains("panicked"), "{value:?}: {err}");
    }
}

/// Reads a text message as JSON.
fn recv_json(c: &mut RawClient) -> serde_json::Value {
    let f = c.read_frame().expect("connection closed");
    assert_eq!(f.opcode, 1, "expected a text message, got {f:?}");
    serde_json::from_slice(&f.payload).expect("not JSON")
}

#[test]
fn slow_consumer_for_applies_to_topics_with_the_prefix() {
    let cli = Cli::start(&[
        "pubsub",
        "--reactors",
        "1",
        "--publish-token",
        "tok",
        "--max-backpressure",
        "64K",
        "--slow-consumer",
        "close",
        "--slow-consumer-for",
        "md.=conflate",
        "--slow-consumer-for",
        "orders.=close",
    ]);
    assert!(cli.line.contains("pubsub"), "{}", cli.line);
    let mut stuck = RawClient::connect(cli.addr);
    stuck.send(&masked(true, 1, br#"{"op":"subscribe","topics":["md.X"]}"#));
    assert_eq!(recv_json(&mut stuck)["op"], "subscribed");
    let mut publisher = RawClient::connect_tcp(cli.addr);
    publisher.send(support::upgrade_request(cli.addr, "Authorization: Bearer tok\r\n").as_bytes());
    assert!(publisher.read_http_head().starts_with("HTTP/1.1 101"));
    // Far more than the socket buffers and the 64 KiB queue hold, while `stuck` reads nothing.
    let n = 12_000u64;
    let publish = format!(r#"{{"op":"publish","topic":"md.X","data":"{}"}}"#, "x".repeat(1000));
    let burst: Vec<u8> = (0..100).flat_map(|_| masked(true, 1, publish.as_bytes())).collect();
    for _ in 0..n / 100 {
        publisher.send(&burst);
    }
    // Under the server-wide policy it would be closed with 1008; md. conflates.
    let (mut seq, mut got) = (0, 0);
    while seq < n {
        let next = recv_json(&mut stuck)["seq"].as_u64().unwrap();
        assert!(next > seq, "conflation must never reorder");
        (seq, got) = (next, got + 1);
    }
    assert!(got < n, "conflated: fewer messages ({got}), the latest ({seq}) last");
}
