//! End-to-end tests: each mode against an in-process wsreactor server.

use std::time::Duration;

use clap::Parser;
use wsreactor::pubsub::{Limits, PubSub, StoreConfig};
use wsreactor::{Builder, Ctx, Handler, Message, Server};

use crate::stats::{Fanout, Report};
use crate::{Cli, Mode};

struct Echo;

impl Handler for Echo {
    type Conn = ();
    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        let _ = cx.send(msg);
    }
}

struct Broadcast;

impl Handler for Broadcast {
    type Conn = ();
    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        cx.broadcast(msg);
    }
}

/// Starts a one-reactor server on an ephemeral loopback port, set up further by
/// `configure`; returns its URL.
fn serve<H: Handler + Send>(
    configure: impl FnOnce(Builder<()>) -> Builder<()>,
    h: impl Fn(usize) -> H + Send + Sync + 'static,
) -> (String, wsreactor::Running) {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .and_then(|b| configure(b.reactors(1).max_message_size(4 << 20)).handler(h).build())
        .expect("server");
    let url = format!("ws://{}/", server.local_addr());
    (url, server.spawn().expect("spawn"))
}

fn start<H: Handler + Send>(
    h: impl Fn(usize) -> H + Send + Sync + 'static,
) -> (String, wsreactor::Running) {
    serve(|b| b, h)
}

fn parse(args: &[&str]) -> Mode {
    let mut v = vec!["wsbench"];
    v.extend_from_slice(args);
    Cli::parse_from(v).mode
}

/// Runs `wsbench echo ARGS`.
fn echo(args: &[&str]) -> Result<Report, String> {
    let Mode::Echo(a) = parse(&[&["echo"], args].concat()) else { unreachable!() };
    crate::echo::main(&a)
}

/// Runs `wsbench fanout ARGS`; returns the report and its fan-out figures.
fn fanout(args: &[&str]) -> (Report, Fanout) {
    let Mode::Fanout(a) = parse(&[&["fanout"], args].concat()) else { unreachable!() };
    let r = crate::fanout::main(&a).expect("run");
    let f = r.fanout.clone().expect("fanout figures");
    (r, f)
}

/// Every delivery arrived once, in order, with the right bytes.
fn assert_every_delivery(r: &Report, f: &Fanout) {
    assert_eq!((f.gaps, f.duplicates, f.reorders, r.verify_errors), (0, 0, 0, 0), "{f:?}");
}

#[test]
fn echo_verifies_every_payload() {
    let (url, running) = start(|_| Echo);
    let r = echo(&[
        "-u", &url, "-c", "8", "-s", "100", "-w", "4", "-d", "300ms", "--warmup", "100ms", "-q",
    ])
    .expect("run");
    assert!(r.messages > 100, "{r:?}");
    assert_eq!(
        (r.verify_errors, r.protocol_errors, r.lost, r.failed),
        (0, 0, 0, 0),
        "{:?}",
        r.errors
    );
    assert!(r.latency.count > 0 && r.latency.p50_us > 0.0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    // Fragmented sends of large messages, two threads, at a fixed rate.
    let r = echo(&[
        "-u",
        &url,
        "-c",
        "4",
        "-t",
        "2",
        "-s",
        "200KiB",
        "--fragment",
        "70000",
        "--rate",
        "400",
        "-d",
        "300ms",
        "--warmup",
        "100ms",
        "-q",
    ])
    .expect("run");
    assert!(r.messages > 50, "{r:?}");
    assert!(r.latency_from_intended);
    assert_eq!((r.verify_errors, r.protocol_errors, r.lost), (0, 0, 0), "{:?}", r.errors);
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

#[test]
fn fanout_counts_every_delivery() {
    let (url, running) = start(|_| Broadcast);
    let (r, f) = fanout(&[
        "-u", &url, "-n", "20", "-s", "64", "-w", "8", "-d", "300ms", "--warmup", "100ms", "-q",
    ]);
    assert!(f.published > 10 && f.deliveries >= f.published * 19, "{f:?}");
    assert_every_delivery(&r, &f);
    assert!(f.kept_up, "{}", f.kept_up_why);
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

#[test]
fn connect_opens_holds_and_closes() {
    let (url, running) = start(|_| Echo);
    let Mode::Connect(a) = parse(&[
        "connect",
        "-u",
        &url,
        "-c",
        "300",
        "-d",
        "200ms",
        "-q",
        "--src-ips",
        "127.0.0.2,127.0.0.3",
    ]) else {
        unreachable!()
    };
    let r = crate::connect::main(&a).expect("run");
    let c = r.connect.clone().expect("connect figures");
    assert_eq!((c.opened, c.failed, c.lost), (300, 0, 0), "{:?}", r.errors);
    assert!(c.handshakes_per_s > 0.0 && c.handshake.count == 300);
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

#[test]
fn echo_and_fanout_verify_with_deflate() {
    use wsreactor::Compression::{Dedicated, Shared};
    for mode in [Shared, Dedicated] {
        let (url, running) = serve(|b| b.compression(mode), |_| Echo);
        // Small messages, then large fragmented ones (RSV1 on the first frame only),
        // with and without context takeover.
        for extra in [
            &["-s", "300", "-w", "4"][..],
            &["-s", "200KiB", "--fragment", "70000", "--deflate-no-context-takeover"][..],
        ] {
            let mut args =
                vec!["-u", &url, "-c", "4", "-d", "300ms", "--warmup", "100ms", "-q", "--deflate"];
            args.extend_from_slice(extra);
            let r = echo(&args).expect("run");
            assert!(r.messages > 10, "{mode:?} {extra:?}: {r:?}");
            assert_eq!(
                (r.verify_errors, r.protocol_errors, r.lost, r.failed),
                (0, 0, 0, 0),
                "{mode:?} {extra:?}: {:?}",
                r.errors
            );
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            let d = r.deflate.clone().expect("deflate figures");
            assert_eq!(d.negotiated, 4, "{d:?}");
            assert!(d.agreed.starts_with("permessage-deflate"), "{d:?}");
        }
        let stats = running.handle().stats();
        assert!(stats.compressions > 0, "{mode:?}: {stats:?}");
        running.shutdown(Duration::from_secs(1)).expect("shutdown");

        let (url, running) = serve(|b| b.compression(mode), |_| Broadcast);
        let (r, f) = fanout(&[
            "-u",
            &url,
            "-n",
            "10",
            "-s",
            "256",
            "-w",
            "8",
            "-d",
            "300ms",
            "--warmup",
            "100ms",
            "-q",
            "--deflate",
        ]);
        assert!(f.published > 10 && f.deliveries >= f.published * 9, "{f:?}");
        assert_every_delivery(&r, &f);
        assert_eq!(r.deflate.as_ref().map(|d| d.negotiated), Some(11));
        assert!(running.handle().stats().compressions > 0);
        running.shutdown(Duration::from_secs(1)).expect("shutdown");
    }
}

#[test]
fn deflate_declined_fails_the_run() {
    let (url, running) = start(|_| Echo);
    let err = echo(&["-u", &url, "-c", "2", "-d", "100ms", "--warmup", "0ms", "-q", "--deflate"])
        .expect_err("the server has no compression");
    assert!(err.contains("did not accept permessage-deflate"), "{err}");
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

#[test]
fn refuses_non_loopback_targets() {
    assert!(echo(&["-u", "ws://192.0.2.1:80/", "-d", "10ms", "-q"]).is_err());
}

#[test]
fn fanout_speaks_the_topic_protocol() {
    // A topic server whose publish token is `tk`.
    let (url, running) =
        serve(|b| b.topics(StoreConfig::default()), |_| PubSub::new(Limits::default(), Some("tk")));
    let with_token = format!("{url}?token=tk");
    // Two threads: messages complete on either, the publisher's loop is woken.
    for (topics, threads) in [("1", "1"), ("5", "2")] {
        let (r, f) = fanout(&[
            "-u",
            &with_token,
            "-n",
            "20",
            "--topics",
            topics,
            "-t",
            threads,
            "-s",
            "64",
            "-w",
            "8",
            "-d",
            "300ms",
            "--warmup",
            "100ms",
            "-q",
        ]);
        let per_topic = 20 / topics.parse::<u64>().unwrap();
        // Each message reaches the subscribers of its topic only (the window
        // also counts deliveries of messages published just before it).
        let expect = (f.published * per_topic) as f64;
        assert!(f.published > 10, "{f:?}");
        assert!((f.deliveries as f64 - expect).abs() < 0.1 * expect, "{f:?}");
        assert_every_delivery(&r, &f);
        assert!(f.kept_up, "{}", f.kept_up_why);
    }

    // Without the token the server refuses the publishes, and the report says so.
    let (_, f) = fanout(&[
        "-u", &url, "-n", "4", "--topics", "2", "-s", "64", "-d", "200ms", "--warmup", "100ms",
        "-q",
    ]);
    assert!(!f.kept_up && f.kept_up_why.contains("unauthorized"), "{}", f.kept_up_why);
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

/// Takes only upgrades that carry `X-Token: abc`, and chooses subprotocol
/// `bench.v1` when it is offered.
struct Gated;

impl Handler for Gated {
    type Conn = ();
    fn on_upgrade(
        &mut self,
        req: &wsreactor::Request<'_>,
    ) -> Result<wsreactor::Accept<()>, wsreactor::Reject> {
        if req.header_str("x-token") != Some("abc") {
            return Err(wsreactor::Reject::new(401, "token required"));
        }
        let chosen = req.protocols().find(|p| *p == "bench.v1");
        Ok(wsreactor::Accept::new(()).protocol(chosen))
    }
    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        let _ = cx.send(msg);
    }
}

#[test]
fn echo_sends_headers_and_offers_subprotocols() {
    let (url, running) = start(|_| Gated);
    let base = ["-u", &url, "-c", "4", "-w", "2", "-d", "200ms", "--warmup", "50ms", "-q"];
    let with = |extra: &[&str]| echo(&[&base[..], extra].concat());
    let r = with(&["--header", "X-Token: abc", "--protocol", "bench.v2", "--protocol", "bench.v1"])
        .expect("run");
    assert!(r.messages > 10, "{r:?}");
    assert_eq!((r.failed, r.verify_errors), (0, 0), "{:?}", r.errors);

    let refused = with(&["--protocol", "bench.v1"]).expect_err("no token, no connection");
    assert!(refused.contains("status 401"), "{refused}");
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

/// Echoes text (or broadcasts it); closes with 1003 on a binary message.
struct TextOnly {
    broadcast: bool,
}

impl Handler for TextOnly {
    type Conn = ();
    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        match msg {
            Message::Text(_) if self.broadcast => cx.broadcast(msg),
            Message::Text(_) => {
                let _ = cx.send(msg);
            }
            Message::Binary(_) => cx.close(wsreactor::CloseCode(1003), "text only"),
        }
    }
}

#[test]
fn echo_sends_text_when_asked() {
    let (url, running) = start(|_| TextOnly { broadcast: false });
    for size in ["5", "64", "100KiB"] {
        let r = echo(&[
            "-u",
            &url,
            "-c",
            "4",
            "-w",
            "4",
            "-s",
            size,
            "--fragment",
            "30000",
            "--text",
            "-d",
            "200ms",
            "--warmup",
            "50ms",
            "-q",
        ])
        .expect("run");
        assert!(r.messages > 10, "{size}: {r:?}");
        assert_eq!((r.failed, r.lost, r.verify_errors), (0, 0, 0), "{size}: {:?}", r.errors);
    }
    // Binary messages are what this server refuses.
    let r = echo(&["-u", &url, "-c", "2", "-d", "200ms", "--warmup", "50ms", "-q"]);
    let r = r.expect("run");
    assert_eq!((r.messages, r.lost), (0, 2), "{r:?}");
    assert_eq!(r.errors.get("server sent close 1003"), Some(&2), "{:?}", r.errors);
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}

#[test]
fn fanout_publishes_text_when_asked() {
    let (url, running) = start(|_| TextOnly { broadcast: true });
    let base = ["-u", &url, "-n", "10", "-w", "8", "-d", "300ms", "--warmup", "100ms", "-q"];
    for size in ["32", "300"] {
        let (r, f) = fanout(&[&base[..], &["--text", "-s", size]].concat());
        assert!(f.published > 10 && f.deliveries >= f.published * 9, "{size}: {f:?}");
        assert_every_delivery(&r, &f);
        assert!(r.params.contains("(broadcast, text)"), "{}", r.params);
    }
    let Mode::Fanout(a) = parse(&[&["fanout"], &base[..], &["--text", "-s", "31"]].concat()) else {
        unreachable!()
    };
    let short = crate::fanout::main(&a).expect_err("too short for the text head");
    assert!(short.contains("at least 32"), "{short}");
    let Mode::Fanout(a) = parse(&[&["fanout"], &base[..], &["--text", "--topics", "2"]].concat())
    else {
        unreachable!()
    };
    assert!(crate::fanout::main(&a).is_err(), "--text with --topics");
    running.shutdown(Duration::from_secs(1)).expect("shutdown");
}
