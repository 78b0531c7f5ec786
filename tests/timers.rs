//! Timeouts on the wire: heartbeats, dead peers, slowloris, idle, close, write stalls.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{Echo, RawClient, TestServer, masked};
use wsreactor::{Ctx, Handler, Message};

const MS: Duration = Duration::from_millis(1);

fn fast(b: wsreactor::Builder<()>) -> wsreactor::Builder<()> {
    b.reactors(1)
        .timer_tick(10 * MS)
        .handshake_timeout(Duration::ZERO)
        .ping_interval(Duration::ZERO)
        .close_timeout(Duration::ZERO)
        .write_stall_timeout(Duration::ZERO)
}

#[test]
fn a_peer_that_does_not_answer_pings_is_dropped() {
    let server =
        TestServer::start(|b| fast(b).ping_interval(200 * MS).pong_timeout(200 * MS), |_| Echo);
    let mut c = RawClient::connect(server.addr);
    let start = Instant::now();
    let ping = c.read_frame().expect("no ping");
    assert_eq!(ping.opcode, 9);
    let pinged = start.elapsed();
    assert!(pinged >= 190 * MS && pinged < 600 * MS, "pinged after {pinged:?}");
    assert!(c.sees_eof(Duration::from_secs(3)), "dead peer not dropped");
    let dropped = start.elapsed();
    assert!(dropped >= 390 * MS && dropped < 1500 * MS, "dropped after {dropped:?}");
    let stats = server.handle.stats();
    assert_eq!((stats.pings_sent, stats.pong_timeouts), (1, 1));
}

#[test]
fn a_peer_that_answers_pings_stays() {
    let server =
        TestServer::start(|b| fast(b).ping_interval(100 * MS).pong_timeout(100 * MS), |_| Echo);
    let mut c = RawClient::connect(server.addr);
    let until = Instant::now() + Duration::from_millis(800);
    let mut pings = 0;
    while Instant::now() < until {
        let f = c.read_frame().expect("dropped although it answered");
        assert_eq!(f.opcode, 9);
        pings += 1;
        c.send(&masked(true, 10, &f.payload));
    }
    assert!(pings >= 4, "only {pings} pings in 800 ms");
    c.send(&masked(true, 1, b"alive"));
    let f = loop {
        let f = c.read_frame().unwrap();
        if f.opcode != 9 {
            break f;
        }
    };
    assert_eq!(f.payload, b"alive");
    assert_eq!(server.handle.stats().pong_timeouts, 0);
}

#[test]
fn tungstenite_answers_pings_and_is_kept() {
    let server =
        TestServer::start(|b| fast(b).ping_interval(50 * MS).pong_timeout(100 * MS), |_| Echo);
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/", server.addr)).unwrap();
    let until = Instant::now() + Duration::from_millis(600);
    let mut i = 0;
    while Instant::now() < until {
        std::thread::sleep(40 * MS);
        i += 1;
        ws.send(tungstenite::Message::text(format!("{i}"))).unwrap();
        loop {
            match ws.read().unwrap() {
                tungstenite::Message::Text(t) => {
                    assert_eq!(t.as_str(), i.to_string());
                    break;
                }
                tungstenite::Message::Ping(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(server.handle.stats().pong_timeouts, 0);
}

/// TCP_DEFER_ACCEPT holds a client that connects and says nothing in the
/// kernel, but only for the deferral: then it is accepted like any other and
/// the handshake timeout ends it, while clients that speak are served at once.
#[test]
fn a_silent_connection_is_handed_over_after_the_deferral_and_timed_out() {
    let server = TestServer::start(
        |b| fast(b).defer_accept(Duration::from_secs(1)).handshake_timeout(300 * MS),
        |_| Echo,
    );
    let start = Instant::now();
    let mut silent = RawClient::connect_tcp(server.addr);
    let mut good = RawClient::connect(server.addr);
    good.send(&masked(true, 1, b"served"));
    assert_eq!(good.read_frame().unwrap().payload, b"served");
    assert!(start.elapsed() < 500 * MS, "a speaking client waited {:?}", start.elapsed());
    assert!(silent.sees_eof(Duration::from_secs(8)), "silent client kept");
    let dropped = start.elapsed();
    assert!(dropped >= 1200 * MS, "dropped after {dropped:?}, before deferral and timeout");
    assert_eq!(server.handle.stats().handshake_timeouts, 1);
}

#[test]
fn slowloris_is_dropped_at_the_handshake_timeout_while_others_work() {
    let server = TestServer::start(|b| fast(b).handshake_timeout(300 * MS), |_| Echo);
    let mut slow = RawClient::connect_tcp(server.addr);
    let start = Instant::now();
    slow.send(b"GET / HTTP/1.1\r\n");
    let mut good = RawClient::connect(server.addr);
    let mut dropped = None;
    for i in 0..40 {
        std::thread::sleep(25 * MS);
        if slow.stream.write_all(format!("X-{i}: y\r\n").as_bytes()).is_err() {
            dropped = Some(start.elapsed());
            break;
        }
        good.send(&masked(true, 1, b"still fine"));
        assert_eq!(good.read_frame().unwrap().payload, b"still fine");
    }
    let dropped =
        dropped.or_else(|| slow.sees_eof(Duration::from_secs(2)).then(|| start.elapsed()));
    let dropped = dropped.expect("slowloris client kept");
    assert!(dropped >= 290 * MS && dropped < 1500 * MS, "dropped after {dropped:?}");
    assert_eq!(server.handle.stats().handshake_timeouts, 1);
    good.send(&masked(true, 1, b"after"));
    assert_eq!(good.read_frame().unwrap().payload, b"after");
}

#[test]
fn a_connection_without_messages_is_closed_at_the_idle_timeout() {
    let server = TestServer::start(
        |b| fast(b).idle_timeout(300 * MS).close_timeout(Duration::from_secs(1)),
        |_| Echo,
    );
    let mut c = RawClient::connect(server.addr);
    std::thread::sleep(150 * MS);
    c.send(&masked(true, 1, b"resets the idle clock"));
    assert_eq!(c.read_frame().unwrap().opcode, 1);
    let start = Instant::now();
    let close = c.read_frame().unwrap();
    let waited = start.elapsed();
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(&close.payload[2..], b"idle timeout");
    assert!(waited >= 280 * MS && waited < 1000 * MS, "closed after {waited:?}");
    assert_eq!(server.handle.stats().idle_timeouts, 1);
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped() {
    let server = TestServer::start(|b| fast(b).close_timeout(300 * MS), |_| Echo);
    let mut c = RawClient::connect(server.addr);
    c.send(&masked(true, 1, b"close:4001:bye"));
    let start = Instant::now();
    assert_eq!(c.expect_close(), Some(4001));
    // Our side got FIN right after the close frame; the server drops the
    // socket at the close timeout even though we never answer.
    assert!(c.sees_eof(Duration::from_secs(2)));
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.handle.stats().close_timeouts == 0 && Instant::now() < deadline {
        std::thread::sleep(10 * MS);
    }
    assert_eq!(server.handle.stats().close_timeouts, 1);
    assert!(start.elapsed() >= 290 * MS);
}

/// Floods each connection that says anything.
struct Flood;

impl Handler for Flood {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, _msg: Message<'_>) {
        let chunk = vec![1u8; 60_000];
        while cx.send_binary(&chunk) != wsreactor::SendStatus::Dropped {}
    }

    fn on_drain(&mut self, cx: &mut Ctx<'_, ()>) {
        self.on_message(cx, Message::Binary(b""));
    }
}

#[test]
fn output_that_makes_no_progress_is_dropped_at_the_write_stall_timeout() {
    let server = TestServer::start(
        |b| fast(b).write_stall_timeout(300 * MS).max_backpressure(32 << 20),
        |_| Flood,
    );
    let mut c = RawClient::connect(server.addr);
    c.send(&masked(true, 1, b"go"));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(3);
    while server.handle.stats().write_stalls == 0 && Instant::now() < deadline {
        std::thread::sleep(10 * MS);
    }
    let took = start.elapsed();
    assert_eq!(server.handle.stats().write_stalls, 1);
    assert!(took >= 290 * MS && took < 2000 * MS, "dropped after {took:?}");
    assert_eq!(server.handle.connections(), 0);
}

/// Queues a backlog, then closes behind it.
struct BacklogThenClose;

impl Handler for BacklogThenClose {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, _msg: Message<'_>) {
        let chunk = vec![7u8; 60_000];
        while cx.buffered_bytes() < 8 << 20 {
            let _ = cx.send_binary(&chunk);
        }
        cx.close(wsreactor::CloseCode(4003), "after the backlog");
    }
}

#[test]
fn a_slow_reader_draining_a_backlog_still_gets_the_close_frame() {
    let server = TestServer::start(
        |b| {
            fast(b)
                .close_timeout(300 * MS)
                .write_stall_timeout(Duration::from_secs(5))
                .max_backpressure(64 << 20)
        },
        |_| BacklogThenClose,
    );
    let mut c = RawClient::connect(server.addr);
    c.send(&masked(true, 1, b"go"));
    // Read slowly: the backlog takes well over the close timeout to drain.
    let start = Instant::now();
    let mut code = None;
    while let Some(f) = c.read_frame() {
        if f.opcode == 8 {
            code = f.close_code();
            break;
        }
        std::thread::sleep(5 * MS);
    }
    assert!(start.elapsed() > 600 * MS, "the backlog drained too fast to test anything");
    assert_eq!(code, Some(4003), "the close frame behind the backlog was lost");
}
