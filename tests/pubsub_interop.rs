//! The topic server against pub/sub clients nobody here wrote: `tests/interop/py_pubsub.py`
//! (Python `websockets`) and `tests/interop/node_pubsub.mjs` (Node `ws`), the same named checks
//! in each (see [`CHECKS`]): subscribe replies, ordered deliveries to several subscribers,
//! snapshots, `since` with and without history and in the server's or another epoch,
//! unsubscribe, publisher tokens, binary publishes, error replies, the abuse close, and each
//! slow-consumer policy.
//!
//! Each run gets five fresh `PubSub` servers (publish token `tok`, default limits): one plain,
//! one with a history of 100, and one per slow-consumer policy with one reactor, a 64 KiB
//! output cap and a 30 s close timeout. The scripts print `ok NAME` / `FAIL NAME: why` and must
//! finish within [`RUN_LIMIT`]. The clients come from `tools/test.sh` (see
//! `tests/support/clients.rs`); a missing one fails the test.

#[path = "support/clients.rs"]
mod clients;
mod support;

use std::process::Command;
use std::time::Duration;

use clients::Outcome;
use support::TestServer;
use wsreactor::pubsub::{ClientOp, Limits, PubSub, PubSubConn, StoreConfig, parse_client_op};
use wsreactor::{Accept, Builder, CloseCode, Ctx, Handler, Message, Reject, Request, SlowConsumer};

/// Every check each script runs when given all five servers, in order, and whether it needs a
/// `subscribed` reply: those that do fail against [`SilentSubscribe`], the others pass.
const CHECKS: [(&str, bool); 28] = [
    ("subscribe_reply_echoes_id", true),
    ("deliveries_in_order_3x2000", true),
    ("snapshot_on_subscribe", true),
    ("join_mid_stream_no_older_than_snapshot", true),
    ("since_without_history", true),
    ("since_wrong_epoch_resyncs", true),
    ("history_since_replays_missed", true),
    ("history_too_old_resyncs", true),
    ("unsubscribe_stops_deliveries", true),
    ("unauthorized_publish", true),
    ("wrong_token_403", false),
    ("token_query_and_bearer_publish", true),
    ("binary_publish_delivery", true),
    ("binary_text_publish_delivery", true),
    ("binary_publish_malformed", false),
    ("error_bad_json", false),
    ("error_bad_request", false),
    ("error_unknown_op", false),
    ("error_bad_topic", false),
    ("error_bad_topic_subscribes_nothing", false),
    ("error_too_many_topics", false),
    ("error_too_many_topics_per_connection", true),
    ("too_large_closes_1009", false),
    ("publisher_too_large_error", false),
    ("bad_requests_17_close_1008", false),
    ("slow_consumer_close", true),
    ("slow_consumer_drop", true),
    ("slow_consumer_conflate", true),
];

fn check_names() -> impl Iterator<Item = &'static str> {
    CHECKS.into_iter().map(|(name, _)| name)
}

/// A whole script run (the scripts budget 55 s themselves and report what they did not reach).
const RUN_LIMIT: Duration = Duration::from_secs(60);

const POLICIES: [(SlowConsumer, &str); 3] = [
    (SlowConsumer::Close, "close"),
    (SlowConsumer::Drop, "drop"),
    (SlowConsumer::Conflate, "conflate"),
];

fn pubsub() -> PubSub {
    PubSub::new(Limits::default(), Some("tok"))
}

/// The servers of one script run.
struct Servers {
    plain: TestServer,
    history: TestServer,
    /// One per entry of [`POLICIES`], in that order.
    slow: Vec<TestServer>,
}

impl Servers {
    fn start<H: Handler>(handler: fn() -> H) -> Servers {
        let start = |configure: &dyn Fn(Builder<()>) -> Builder<()>| {
            TestServer::start(configure, move |_| handler())
        };
        Servers {
            plain: start(&|b| b),
            history: start(&|b| b.topics(StoreConfig { history: 100, ..StoreConfig::default() })),
            // The close timeout starts when the 1008 is queued behind the stuck client's backlog,
            // and a close frame still queued when it fires is lost: the stuck client must resume
            // within it, after the rest of the flood. 5 s (the default) is tight on a busy machine.
            slow: POLICIES
                .iter()
                .map(|&(policy, _)| {
                    start(&move |b| {
                        b.reactors(1)
                            .slow_consumer(policy)
                            .max_backpressure(64 << 10)
                            .close_timeout(Duration::from_secs(30))
                    })
                })
                .collect(),
        }
    }

    /// The script's command line: `URL --history URL --slow-close URL ...`.
    fn args(&self) -> Vec<String> {
        self.command_line(&self.history, [0, 1, 2])
    }

    /// A command line with `history` as the history server and, for each entry of
    /// [`POLICIES`], the slow-consumer server `slow[i]`.
    fn command_line(&self, history: &TestServer, slow: [usize; 3]) -> Vec<String> {
        let mut args = vec![self.plain.url(), "--history".into(), history.url()];
        for ((_, name), i) in POLICIES.iter().zip(slow) {
            args.extend([format!("--slow-{name}"), self.slow[i].url()]);
        }
        args
    }

    /// What the slow-consumer servers counted agrees with the policy each applied.
    fn assert_policies_applied(&self, report: &str) {
        for ((policy, name), server) in POLICIES.iter().zip(&self.slow) {
            let stats = server.handle.stats();
            let (closed, dropped) = (stats.slow_consumers, stats.sends_dropped);
            let agrees = match policy {
                SlowConsumer::Close => closed == 1,
                SlowConsumer::Drop => closed == 0 && dropped > 0,
                SlowConsumer::Conflate => closed == 0,
            };
            assert!(
                agrees,
                "{name}: {closed} slow consumers closed, {dropped} sends dropped\n{report}"
            );
        }
    }
}

/// Builds the command running a script of `tests/interop/` with arguments, under one of the
/// pinned clients.
type Client = dyn Fn(&str, &[&str]) -> Command;

/// The Python client (`websockets`), checked once.
fn python() -> Box<Client> {
    let python = clients::python();
    Box::new(move |script, args| clients::python_script(&python, script, args))
}

/// The Node client (`ws`), checked once.
fn node() -> Box<Client> {
    let (node, modules) = clients::node();
    Box::new(move |script, args| clients::node_script(&node, &modules, script, args))
}

/// Runs `script` with `args`; returns the outcome and its report (printed).
fn run(client: &Client, script: &str, args: &[String], what: &str) -> (Outcome, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = clients::run_script(client(script, &args), RUN_LIMIT);
    let report = outcome.report(&format!("{script} {what}"));
    println!("{report}");
    (outcome, report)
}

/// Runs `script` against a fresh set of `PubSub` servers: every check must pass.
fn passes(client: Box<Client>, script: &str) {
    let servers = Servers::start(pubsub);
    let (outcome, report) = run(&*client, script, &servers.args(), "against PubSub");
    assert!(outcome.success, "{report}");
    let (passed, failed) = outcome.checks();
    assert_eq!(failed, Vec::<&str>::new(), "{report}");
    let missing: Vec<&str> = check_names().filter(|c| !passed.contains(c)).collect();
    assert!(missing.is_empty(), "checks that did not pass: {missing:?}\n{report}");
    servers.assert_policies_applied(&report);
}

/// Breaks the protocol on purpose: a subscribe does subscribe, but gets no `subscribed` reply
/// (nor the last values); everything else is the real [`PubSub`].
struct SilentSubscribe(PubSub);

impl Handler for SilentSubscribe {
    type Conn = PubSubConn;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<PubSubConn>, Reject> {
        self.0.on_upgrade(req)
    }

    fn on_open(&mut self, cx: &mut Ctx<'_, PubSubConn>) {
        self.0.on_open(cx);
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, PubSubConn>, msg: Message<'_>) {
        if let Message::Text(text) = msg {
            if let Ok(ClientOp::Subscribe { topics, .. }) =
                parse_client_op(text, &Limits::default())
            {
                for s in &topics {
                    let _ = cx.subscribe(&s.topic);
                }
                return;
            }
        }
        self.0.on_message(cx, msg);
    }

    fn on_drain(&mut self, cx: &mut Ctx<'_, PubSubConn>) {
        self.0.on_drain(cx);
    }

    fn on_close(&mut self, cx: &mut Ctx<'_, PubSubConn>, code: CloseCode, reason: &str) {
        self.0.on_close(cx, code, reason);
    }
}

/// Exactly `should_fail` failed and `should_pass` passed, and the run failed.
fn assert_split(outcome: &Outcome, should_fail: &[&str], should_pass: &[&str], report: &str) {
    assert!(!outcome.success, "the script passed against a broken setup\n{report}");
    let (passed, failed) = outcome.checks();
    assert_eq!(failed, should_fail, "{report}");
    assert_eq!(passed, should_pass, "{report}");
}

/// The checks can fail: against [`SilentSubscribe`] exactly those that need a `subscribed`
/// reply fail, and quickly (each subscribe is followed by a ping, whose pong comes first).
fn detects_silent_subscribe(client: Box<Client>, script: &str) {
    let servers = Servers::start(|| SilentSubscribe(pubsub()));
    let what = "against a server that never says subscribed";
    let (outcome, report) = run(&*client, script, &servers.args(), what);
    let fail: Vec<&str> = CHECKS.iter().filter(|(_, needs)| *needs).map(|(c, _)| *c).collect();
    let pass: Vec<&str> = check_names().filter(|c| !fail.contains(c)).collect();
    assert_split(&outcome, &fail, &pass, &report);
    let no_reply = outcome.stdout.lines().filter(|l| l.contains("no reply to")).count();
    assert_eq!(no_reply, fail.len(), "each failure names the missing reply\n{report}");
}

/// The history and slow-consumer checks can fail too: with the plain server given as the
/// history server, and each policy's URL naming the next policy's server, they fail, but for
/// `slow_consumer_drop` on the conflating server (conflation keeps every promise of drop: the
/// connection stays open, seqs increase with gaps).
fn detects_mismatched_servers(client: Box<Client>, script: &str) {
    let servers = Servers::start(pubsub);
    let mut args = servers.command_line(&servers.plain, [1, 2, 0]);
    let fail = [
        "history_since_replays_missed",
        "history_too_old_resyncs",
        "slow_consumer_close",
        "slow_consumer_conflate",
    ];
    args.extend(["--only".into(), [&fail[..], &["slow_consumer_drop"]].concat().join(",")]);
    let (outcome, report) = run(&*client, script, &args, "against mismatched servers");
    assert_split(&outcome, &fail, &["slow_consumer_drop"], &report);
}

/// For each `scenario`, a test per client, named `<python test>` and `<node test>`.
macro_rules! per_client {
    ($($scenario:ident: $python:ident, $node:ident;)*) => {$(
        #[test]
        fn $python() {
            $scenario(python(), "py_pubsub.py");
        }

        #[test]
        fn $node() {
            $scenario(node(), "node_pubsub.mjs");
        }
    )*};
}

per_client! {
    passes: python_websockets_pubsub, node_ws_pubsub;
    detects_silent_subscribe:
        python_pubsub_detects_a_broken_server, node_pubsub_detects_a_broken_server;
    detects_mismatched_servers:
        python_pubsub_detects_mismatched_servers, node_pubsub_detects_mismatched_servers;
}
