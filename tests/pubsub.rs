//! The topic server on the wire: ordered consecutive deliveries across
//! reactors, snapshots, history replay and resync, unsubscribe, publisher
//! authorization, binary publishes, each slow-consumer policy, abuse.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{RawClient, TestServer, masked, upgrade_request};
use wsreactor::pubsub::wire::decode_binary_delivery;
use wsreactor::pubsub::{Limits, PubSub, StoreConfig};
use wsreactor::{Builder, Message, SlowConsumer};

fn start(configure: impl FnOnce(Builder<()>) -> Builder<()>) -> TestServer {
    TestServer::start(configure, |_| PubSub::new(Limits::default(), Some("tok")))
}

fn connect_to(addr: SocketAddr, target: &str) -> RawClient {
    let mut c = RawClient::connect_tcp(addr);
    c.send(upgrade_request(addr, "").replace("GET /chat ", &format!("GET {target} ")).as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c
}

fn send_json(c: &mut RawClient, v: Value) {
    c.send(&masked(true, 1, v.to_string().as_bytes()));
}

fn recv_json(c: &mut RawClient) -> Value {
    let f = c.read_frame().expect("connection closed");
    assert_eq!(f.opcode, 1, "expected a text message, got {f:?}");
    serde_json::from_slice(&f.payload).expect("not JSON")
}

/// Subscribes; returns the epoch of the `subscribed` reply.
fn subscribe(c: &mut RawClient, topics: &[&str], since: Option<Value>) -> String {
    subscribe_in(c, topics, since, None)
}

/// Subscribes with `since` and `epoch` when given; checks the `subscribed` reply (its members in
/// order, the epoch 16 lowercase hex digits) and returns its epoch.
fn subscribe_in(
    c: &mut RawClient,
    topics: &[&str],
    since: Option<Value>,
    epoch: Option<&str>,
) -> String {
    let mut req = json!({"op": "subscribe", "topics": topics});
    if let Some(s) = since {
        req["since"] = s;
    }
    if let Some(e) = epoch {
        req["epoch"] = e.into();
    }
    send_json(c, req);
    let f = c.read_frame().expect("connection closed");
    let reply = String::from_utf8(f.payload).expect("a text reply");
    // serde_json's objects are sorted: check the member order on the text.
    let rest = reply.strip_prefix(r#"{"op":"subscribed","topics":["#).expect(&reply);
    let (_, epoch) = rest.split_once(r#"],"epoch":""#).expect(&reply);
    let epoch = epoch.strip_suffix(r#""}"#).expect(&reply);
    let hex = epoch.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    assert!(epoch.len() == 16 && hex, "epoch {epoch:?} in {reply}");
    let v: Value = serde_json::from_str(&reply).expect(&reply);
    assert_eq!(
        v["topics"],
        json!(topics.iter().fold(Vec::new(), |mut seen, t| {
            if !seen.contains(t) {
                seen.push(*t);
            }
            seen
        }))
    );
    epoch.to_owned()
}

/// Pings and returns the messages that arrived before the pong.
fn until_pong(c: &mut RawClient) -> Vec<Value> {
    send_json(c, json!({"op": "ping", "id": "sync"}));
    let mut got = Vec::new();
    loop {
        let m = recv_json(c);
        if m["op"] == "pong" && m["id"] == "sync" {
            return got;
        }
        got.push(m);
    }
}

/// The seqs of `msgs`, all deliveries on `topic`.
fn seqs_on(topic: &str, msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| {
            assert_eq!(m["topic"], topic, "not a delivery on {topic}: {m}");
            m["seq"].as_u64().unwrap()
        })
        .collect()
}

/// `msgs` is a resync to `latest` on `topic`, then the last value (which carries `latest`).
fn assert_resync(topic: &str, latest: u64, msgs: &[Value]) {
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0], json!({"op": "resync", "topic": topic, "seq": latest}));
    assert_eq!(seqs_on(topic, &msgs[1..]), [latest]);
    assert_eq!(msgs[1]["data"], latest);
}

#[test]
fn every_subscriber_on_every_reactor_gets_every_publish_in_order() {
    let s = start(|b| b.reactors(2));
    let mut subs: Vec<RawClient> = (0..6).map(|_| connect_to(s.addr, "/")).collect();
    for c in &mut subs {
        subscribe(c, &["md.BTC-USD"], None);
    }
    let publisher = s.handle.publisher();
    let feed = thread::spawn(move || {
        for i in 1..=500u64 {
            let seq = publisher
                .publish("md.BTC-USD", Message::Text(&format!(r#"{{"px":{i}}}"#)))
                .unwrap();
            assert_eq!(seq, i);
        }
    });
    for c in &mut subs {
        for i in 1..=500u64 {
            let m = recv_json(c);
            assert_eq!((m["topic"].as_str(), m["seq"].as_u64()), (Some("md.BTC-USD"), Some(i)));
            assert_eq!(m["data"]["px"], i);
        }
    }
    feed.join().unwrap();
}

/// Publisher connections (on both reactors) and a `Publisher` thread race on one topic:
/// whichever reactor a publish comes from, every subscriber gets seq 1, 2, 3, ...
#[test]
fn publishes_from_reactors_and_threads_arrive_in_seq_order() {
    const EACH: u64 = 3000;
    let s = start(|b| b.reactors(2));
    let mut subs: Vec<RawClient> = (0..4).map(|_| connect_to(s.addr, "/")).collect();
    for c in &mut subs {
        subscribe(c, &["t"], None);
    }
    let mut publish = vec![0x02, 1, b't'];
    publish.extend_from_slice(b"x");
    let frame = masked(true, 2, &publish);
    let conns: Vec<thread::JoinHandle<()>> = (0..4)
        .map(|_| {
            let mut c = connect_to(s.addr, "/?token=tok");
            let frame = frame.clone();
            thread::spawn(move || {
                for _ in 0..EACH {
                    c.send(&frame);
                }
                // Keep the connection open until the subscribers are done.
                thread::sleep(Duration::from_secs(5));
            })
        })
        .collect();
    let publisher = s.handle.publisher();
    let feed = thread::spawn(move || {
        for _ in 0..EACH {
            publisher.publish("t", Message::Binary(b"y")).unwrap();
        }
    });
    for c in &mut subs {
        for want in 1..=5 * EACH {
            let f = c.read_frame().expect("connection closed");
            let d = decode_binary_delivery(&f.payload).expect("a binary delivery");
            assert_eq!(d.seq, want, "deliveries out of order");
        }
    }
    feed.join().unwrap();
    drop(conns);
}

#[test]
fn a_new_subscriber_gets_the_last_value_at_once() {
    let s = start(|b| b);
    let p = s.handle.publisher();
    for i in 1..=3 {
        p.publish("t", Message::Text(&i.to_string())).unwrap();
    }
    let mut c = connect_to(s.addr, "/");
    subscribe(&mut c, &["t", "empty"], None);
    let m = recv_json(&mut c);
    assert_eq!((m["seq"].as_u64(), m["data"].as_u64()), (Some(3), Some(3)));
}

#[test]
fn since_replays_what_history_holds_and_asks_for_a_resync_otherwise() {
    let s = start(|b| b.topics(StoreConfig { history: 5, ..StoreConfig::default() }));
    let p = s.handle.publisher();
    for i in 1..=10 {
        p.publish("t", Message::Text(&i.to_string())).unwrap();
    }
    let mut c = connect_to(s.addr, "/");
    subscribe(&mut c, &["t"], Some(json!({"t": 7})));
    let seqs: Vec<u64> = (0..3).map(|_| recv_json(&mut c)["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [8, 9, 10]);

    let mut late = connect_to(s.addr, "/");
    subscribe(&mut late, &["t"], Some(json!({"t": 2})));
    let resync = recv_json(&mut late);
    assert_eq!((resync["op"].as_str(), resync["seq"].as_u64()), (Some("resync"), Some(10)));
    assert_eq!(recv_json(&mut late)["seq"], 10);

    let mut current = connect_to(s.addr, "/");
    subscribe(&mut current, &["t"], Some(json!({"t": 10})));
    send_json(&mut current, json!({"op": "ping"}));
    assert_eq!(recv_json(&mut current)["op"], "pong", "nothing replayed when up to date");
}

/// Publishes `1..=n` as seqs 1..=n of `topic` on `s`.
fn publish_numbers(s: &TestServer, topic: &str, n: u64) {
    let p = s.handle.publisher();
    for i in 1..=n {
        assert_eq!(p.publish(topic, Message::Text(&i.to_string())).unwrap(), i);
    }
}

#[test]
fn since_counts_in_the_servers_epoch_and_a_restart_makes_a_new_one() {
    let history = || StoreConfig { history: 100, ..StoreConfig::default() };
    let s = start(|b| b.topics(history()));
    publish_numbers(&s, "t", 50);
    let mut first = connect_to(s.addr, "/");
    let epoch = subscribe(&mut first, &["t"], None);
    assert_eq!(epoch, format!("{:016x}", s.handle.publisher().store().epoch()));
    assert_eq!(seqs_on("t", &until_pong(&mut first)), [50], "the last value");
    // One epoch for the whole run, on either reactor.
    for _ in 0..4 {
        assert_eq!(subscribe(&mut connect_to(s.addr, "/"), &["x"], None), epoch);
    }

    // The right epoch (in either case): the deliveries after 41.
    let since = || Some(json!({"t": 41}));
    for given in [epoch.clone(), epoch.to_uppercase()] {
        let mut c = connect_to(s.addr, "/");
        subscribe_in(&mut c, &["t"], since(), Some(&given));
        assert_eq!(seqs_on("t", &until_pong(&mut c)), (42..=50).collect::<Vec<_>>());
    }
    // Another epoch: seq 41 means nothing here, whatever it is.
    let other = format!("{:016x}", u64::from_str_radix(&epoch, 16).unwrap() ^ 1);
    for seq in [41, 50, 0] {
        let mut c = connect_to(s.addr, "/");
        subscribe_in(&mut c, &["t", "never"], Some(json!({"t": seq, "never": 3})), Some(&other));
        let got = until_pong(&mut c);
        assert_resync("t", 50, &got[..2]);
        // A topic nothing was published on: the notice alone.
        assert_eq!(got[2..], [json!({"op": "resync", "topic": "never", "seq": 0})]);
    }
    // No epoch: taken at its word, as before epochs.
    let mut c = connect_to(s.addr, "/");
    subscribe(&mut c, &["t"], since());
    assert_eq!(seqs_on("t", &until_pong(&mut c)), (42..=50).collect::<Vec<_>>());
    // An epoch without since means nothing; a malformed one is refused.
    let mut c = connect_to(s.addr, "/");
    subscribe_in(&mut c, &["t"], None, Some(&other));
    assert_eq!(seqs_on("t", &until_pong(&mut c)), [50]);
    for bad in [json!("0x12"), json!(""), json!("12345678901234567"), json!(12)] {
        send_json(&mut c, json!({"op": "subscribe", "id": 1, "topics": ["t"], "epoch": bad}));
        let e = recv_json(&mut c);
        assert_eq!((e["op"].as_str(), e["code"].as_str()), (Some("error"), Some("bad_request")));
    }

    // A restart: a new store, a new epoch, and its own seqs 1..=100 on the same topic.
    drop(s);
    let restarted = start(|b| b.topics(history()));
    publish_numbers(&restarted, "t", 100);
    let mut stale = connect_to(restarted.addr, "/");
    let new_epoch = subscribe_in(&mut stale, &["t"], since(), Some(&epoch));
    assert_ne!(new_epoch, epoch, "the restarted server kept the epoch");
    assert_resync("t", 100, &until_pong(&mut stale));
    // What the epoch prevents: without it the stale client is fed 42..=100 of another numbering.
    let mut unsafe_client = connect_to(restarted.addr, "/");
    subscribe(&mut unsafe_client, &["t"], since());
    assert_eq!(seqs_on("t", &until_pong(&mut unsafe_client)), (42..=100).collect::<Vec<_>>());
    // After the resync the client counts in the new epoch.
    let mut resumed = connect_to(restarted.addr, "/");
    subscribe_in(&mut resumed, &["t"], Some(json!({"t": 97})), Some(&new_epoch));
    assert_eq!(seqs_on("t", &until_pong(&mut resumed)), [98, 99, 100]);
}

#[test]
fn an_operator_who_keeps_the_store_keeps_the_epoch() {
    let kept = StoreConfig { history: 10, epoch: Some(0x5eed), ..StoreConfig::default() };
    let s = start(|b| b.topics(kept));
    publish_numbers(&s, "t", 5);
    let mut c = connect_to(s.addr, "/");
    let epoch = subscribe_in(&mut c, &["t"], Some(json!({"t": 3})), Some("5EED"));
    assert_eq!(epoch, "0000000000005eed");
    assert_eq!(seqs_on("t", &until_pong(&mut c)), [4, 5]);
}

#[test]
fn unsubscribed_topics_stop_arriving() {
    let s = start(|b| b);
    let p = s.handle.publisher();
    let mut c = connect_to(s.addr, "/");
    subscribe(&mut c, &["a", "b"], None);
    p.publish("a", Message::Text("1")).unwrap();
    assert_eq!(recv_json(&mut c)["topic"], "a");
    send_json(&mut c, json!({"op": "unsubscribe", "topics": ["a"]}));
    assert_eq!(recv_json(&mut c)["op"], "unsubscribed");
    p.publish("a", Message::Text("2")).unwrap();
    p.publish("b", Message::Text("3")).unwrap();
    let m = recv_json(&mut c);
    assert_eq!((m["topic"].as_str(), m["data"].as_u64()), (Some("b"), Some(3)));
}

#[test]
fn only_token_holders_publish_and_binary_publishes_arrive_as_binary() {
    let s = start(|b| b.reactors(2));
    let mut sub = connect_to(s.addr, "/");
    subscribe(&mut sub, &["news", "raw"], None);

    let mut anon = connect_to(s.addr, "/");
    send_json(&mut anon, json!({"op": "publish", "topic": "news", "data": 1}));
    assert_eq!(recv_json(&mut anon)["code"], "unauthorized");

    let mut wrong = RawClient::connect_tcp(s.addr);
    wrong.send(upgrade_request(s.addr, "").replace("GET /chat ", "GET /?token=nope ").as_bytes());
    assert!(wrong.read_http_head().starts_with("HTTP/1.1 403"));

    let mut publisher = connect_to(s.addr, "/feed?token=tok");
    send_json(
        &mut publisher,
        json!({"op": "publish", "topic": "news", "data": {"h": "hi"}, "ack": true, "id": 9}),
    );
    let ack = recv_json(&mut publisher);
    assert_eq!(
        (ack["op"].as_str(), ack["id"].as_u64(), ack["seq"].as_u64()),
        (Some("published"), Some(9), Some(1))
    );
    let m = recv_json(&mut sub);
    assert_eq!(m["data"]["h"], "hi");

    let mut bin = vec![0x02, 3];
    bin.extend_from_slice(b"raw");
    bin.extend_from_slice(&[0, 1, 2, 255]);
    publisher.send(&masked(true, 2, &bin));
    let f = sub.read_frame().unwrap();
    assert_eq!(f.opcode, 2);
    let d = decode_binary_delivery(&f.payload).unwrap();
    assert_eq!((d.topic, d.seq, d.payload), ("raw", 1, &[0u8, 1, 2, 255][..]));

    let mut bearer = RawClient::connect_tcp(s.addr);
    bearer.send(upgrade_request(s.addr, "Authorization: Bearer tok\r\n").as_bytes());
    assert!(bearer.read_http_head().starts_with("HTTP/1.1 101"));
}

#[test]
fn a_lowercase_bearer_scheme_and_a_percent_encoded_query_token_publish() {
    let s = TestServer::start(|b| b, |_| PubSub::new(Limits::default(), Some("a b&c=")));
    let mut sub = connect_to(s.addr, "/");
    subscribe(&mut sub, &["news"], None);

    let mut bearer = RawClient::connect_tcp(s.addr);
    bearer.send(upgrade_request(s.addr, "authorization: bearer   a b&c=\r\n").as_bytes());
    assert!(bearer.read_http_head().starts_with("HTTP/1.1 101"));
    let mut query = connect_to(s.addr, "/feed?token=a%20b%26c%3D");
    for (i, publisher) in [&mut bearer, &mut query].into_iter().enumerate() {
        send_json(publisher, json!({"op": "publish", "topic": "news", "data": i, "ack": true}));
        let ack = recv_json(publisher);
        assert_eq!(
            (ack["op"].as_str(), ack["seq"].as_u64()),
            (Some("published"), Some(i as u64 + 1))
        );
        let m = recv_json(&mut sub);
        assert_eq!((m["seq"].as_u64(), m["data"].as_u64()), (Some(i as u64 + 1), Some(i as u64)));
    }

    // A truncated or invalid escape is refused like a wrong token; `+` is a plus, not a space.
    for target in ["/?token=a%20b%26c%3", "/?token=a%zzb", "/?token=a+b%26c%3D"] {
        let mut c = RawClient::connect_tcp(s.addr);
        c.send(
            upgrade_request(s.addr, "").replace("GET /chat ", &format!("GET {target} ")).as_bytes(),
        );
        assert!(c.read_http_head().starts_with("HTTP/1.1 403"), "{target}");
    }
}

#[test]
fn too_many_bad_requests_in_a_row_close_with_1008() {
    let s = start(|b| b);
    let mut c = connect_to(s.addr, "/");
    for _ in 0..16 {
        c.send(&masked(true, 1, b"{not json"));
        assert_eq!(recv_json(&mut c)["code"], "bad_json");
    }
    c.send(&masked(true, 1, b"{not json"));
    assert_eq!(recv_json(&mut c)["code"], "bad_json");
    assert_eq!(c.expect_close(), Some(1008));
}

/// Publishes `n` messages on each of `topics`, one on each in turn, paced
/// to a reader subscribed to all of them (at most 30 KiB ahead of it, under
/// the 64 KiB cap of the servers below): the reader gets every one, in
/// publish order with consecutive seqs, whatever the policies, and only
/// subscribers that do not read meet them.
fn paced_flood(s: &TestServer, topics: &'static [&'static str], n: u64) {
    let mut reader = connect_to(s.addr, "/");
    subscribe(&mut reader, topics, None);
    let per_round = topics.len() as u64;
    let progress = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&progress);
    let reading = thread::spawn(move || {
        for k in 0..n * per_round {
            let m = recv_json(&mut reader);
            let expected = (topics[(k % per_round) as usize], k / per_round + 1);
            assert_eq!(
                (m["topic"].as_str(), m["seq"].as_u64()),
                (Some(expected.0), Some(expected.1)),
                "the reader lost or reordered a message"
            );
            seen.store(k + 1, Ordering::Release);
        }
    });
    let p = s.handle.publisher();
    let payload = format!("\"{}\"", "x".repeat(1000));
    let deadline = Instant::now() + Duration::from_secs(60);
    for k in 1..=n * per_round {
        while k > progress.load(Ordering::Acquire) + 30 {
            assert!(Instant::now() < deadline && !reading.is_finished(), "the reader stalled");
            thread::yield_now();
        }
        p.publish(topics[((k - 1) % per_round) as usize], Message::Text(&payload)).unwrap();
    }
    reading.join().unwrap();
}

/// A subscriber that never reads, one that keeps up, and a flood of
/// publishes on one topic ([`paced_flood`]).
fn flood(policy: SlowConsumer) -> (TestServer, RawClient, u64) {
    let s = start(|b| b.reactors(1).slow_consumer(policy).max_backpressure(64 << 10));
    let mut stuck = connect_to(s.addr, "/");
    subscribe(&mut stuck, &["t"], None);
    let n = 12_000u64;
    paced_flood(&s, &["t"], n);
    (s, stuck, n)
}

/// Reads a conflated subscriber's deliveries of one topic up to seq `last`:
/// never reordered, and the latest value comes last. Returns how many.
fn read_conflated(c: &mut RawClient, last: u64) -> u64 {
    let (mut seq, mut got) = (0, 0);
    while seq < last {
        let next = recv_json(c)["seq"].as_u64().unwrap();
        assert!(next > seq, "conflation must never reorder");
        seq = next;
        got += 1;
    }
    assert_eq!(seq, last, "the latest value comes last");
    got
}

#[test]
fn slow_consumer_close() {
    let (s, mut stuck, _) = flood(SlowConsumer::Close);
    assert!(s.handle.stats().slow_consumers >= 1);
    stuck.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut code = None;
    while let Some(f) = stuck.read_frame() {
        if f.opcode == 8 {
            code = f.close_code();
            break;
        }
    }
    assert_eq!(code, Some(1008));
}

#[test]
fn slow_consumer_drop() {
    let (s, mut stuck, n) = flood(SlowConsumer::Drop);
    assert!(s.handle.stats().sends_dropped > 0);
    assert_eq!(s.handle.stats().slow_consumers, 0);
    // Still open: what it gets has increasing seqs with a gap.
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while last < n / 10 && Instant::now() < deadline {
        let m = recv_json(&mut stuck);
        let seq = m["seq"].as_u64().unwrap();
        assert!(seq > last);
        last = seq;
    }
    send_json(&mut stuck, json!({"op": "ping"}));
}

#[test]
fn slow_consumer_conflate_gets_the_latest_value() {
    let (_s, mut stuck, n) = flood(SlowConsumer::Conflate);
    assert!(read_conflated(&mut stuck, n) < n, "a slow reader sees fewer messages");
}

#[test]
fn slow_consumer_policy_per_topic_prefix() {
    let s = start(|b| {
        b.reactors(1)
            .slow_consumer(SlowConsumer::Close)
            .slow_consumer_for("md.", SlowConsumer::Conflate)
            .max_backpressure(64 << 10)
    });
    let mut stuck_md = connect_to(s.addr, "/");
    subscribe(&mut stuck_md, &["md.X"], None);
    let mut stuck_alerts = connect_to(s.addr, "/");
    subscribe(&mut stuck_alerts, &["alerts.Y"], None);
    let n = 12_000u64;
    paced_flood(&s, &["md.X", "alerts.Y"], n);

    // alerts.Y matches no rule: the server-wide policy closes its stalled subscriber.
    assert_eq!(stuck_alerts.expect_close(), Some(1008));
    assert_eq!(s.handle.stats().slow_consumers, 1, "only the alerts.Y subscriber is closed");
    // md.X is conflated: still open, fewer messages, the latest last.
    assert!(read_conflated(&mut stuck_md, n) < n, "a slow reader sees fewer messages");
    send_json(&mut stuck_md, json!({"op": "ping"}));
    assert_eq!(recv_json(&mut stuck_md)["op"], "pong");
}

/// While a topic is published on without pause, clients keep subscribing
/// (some with `since`). Publishes made before a subscription may still be in
/// a reactor's inbox when it is made; none of them may follow the snapshot or
/// replay: every client sees each seq once, consecutively, from where its
/// catch-up starts.
#[test]
fn a_subscriber_joining_mid_stream_gets_no_delivery_older_than_its_catch_up() {
    let history = StoreConfig { history: 1024, ..Default::default() };
    let server = start(|b| b.reactors(2).topics(history));
    let publisher = server.handle.publisher();
    let stop = Arc::new(AtomicU64::new(0));
    let feed = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut n = 0u64;
            while stop.load(Ordering::Relaxed) == 0 {
                n += 1;
                publisher.publish("md.MID", Message::Text(&format!("{{\"n\":{n}}}"))).unwrap();
                if n % 8 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    for round in 0..80 {
        let mut c = connect_to(server.addr, "/");
        let since = (round % 2 == 1).then(|| {
            let latest = server.handle.publisher().store().latest_seq("md.MID");
            json!({"md.MID": latest.saturating_sub(10)})
        });
        subscribe(&mut c, &["md.MID"], since);
        let (mut seqs, mut resync) = (Vec::new(), None);
        while seqs.len() < 30 {
            let d = recv_json(&mut c);
            assert_eq!(d["topic"], "md.MID", "{d}");
            let seq = d["seq"].as_u64().expect("a seq");
            match d["op"].as_str() {
                // The history moved past `since` before the subscribe arrived:
                // the notice names the seq of the last value that follows it.
                Some("resync") if seqs.is_empty() && resync.is_none() => resync = Some(seq),
                Some(op) => panic!("round {round}: unexpected {op}: {d}"),
                None => seqs.push(seq),
            }
        }
        assert!(resync.is_none_or(|r| r == seqs[0]), "round {round}: {resync:?} then {seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: seqs not consecutive: {seqs:?}"
        );
    }
    stop.store(1, Ordering::Relaxed);
    feed.join().unwrap();
}
