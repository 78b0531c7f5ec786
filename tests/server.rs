//! Server behaviour: broadcast across reactors, shutdown, limits, isolation
//! of bad clients, backpressure; and the tungstenite crate as a real client.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Echo, RawClient, TestServer, frame, masked, upgrade_request};
use wsreactor::{CloseCode, Ctx, Frame, Handler, Message, SendStatus};

/// Tells each client its reactor on open, then broadcasts what it receives.
struct Broadcast;

impl Handler for Broadcast {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Ctx<'_, ()>) {
        let id = cx.reactor_id().to_string();
        let _ = cx.send_text(&id);
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        cx.broadcast(msg);
    }
}

#[test]
fn broadcast_reaches_every_client_on_every_reactor() {
    let server = TestServer::start(|b| b.reactors(2), |_| Broadcast);
    let mut clients = Vec::new();
    let mut reactors = HashSet::new();
    // SO_REUSEPORT hashes connections over the reactors: connect until both have some.
    while clients.len() < 6 || reactors.len() < 2 {
        assert!(clients.len() < 200, "every connection landed on one reactor");
        let mut c = RawClient::connect(server.addr);
        reactors.insert(c.read_frame().unwrap().payload);
        clients.push(c);
    }
    clients[0].send(&masked(true, 1, b"to everyone"));
    clients[1].send(&masked(true, 2, &[1, 2, 3]));
    for c in &mut clients {
        let mut got = [c.read_frame().unwrap(), c.read_frame().unwrap()];
        got.sort_by_key(|f| f.opcode);
        assert_eq!((got[0].opcode, got[0].payload.as_slice()), (1, &b"to everyone"[..]));
        assert_eq!((got[1].opcode, got[1].payload.as_slice()), (2, &[1u8, 2, 3][..]));
    }
    // And from another thread, through the handle.
    server.handle.broadcast(&Frame::new(Message::Text("from outside")));
    for c in &mut clients {
        assert_eq!(c.read_frame().unwrap().payload, b"from outside");
    }
}

#[test]
fn shutdown_closes_every_connection_with_1001_and_returns() {
    let server = TestServer::start(|b| b.reactors(2), |_| Echo);
    let addr = server.addr;
    let mut clients: Vec<RawClient> = (0..8).map(|_| RawClient::connect(addr)).collect();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        server.shutdown(Duration::from_secs(10)).unwrap();
        start.elapsed()
    });
    for c in &mut clients {
        assert_eq!(c.expect_close(), Some(1001));
        c.send(&masked(true, 8, &1001u16.to_be_bytes()));
        assert!(c.sees_eof(Duration::from_secs(5)));
    }
    let took = waiter.join().unwrap();
    assert!(took < Duration::from_secs(5), "shutdown waited {took:?} though every client answered");
    assert!(std::net::TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

#[test]
fn shutdown_gives_up_on_silent_clients_at_the_deadline() {
    let server = TestServer::start(|b| b.reactors(1), |_| Echo);
    let mut silent = RawClient::connect(server.addr);
    let start = Instant::now();
    server.shutdown(Duration::from_millis(300)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(silent.expect_close(), Some(1001));
}

#[test]
fn connections_beyond_the_maximum_get_503() {
    let server = TestServer::start(|b| b.max_connections(2), |_| Echo);
    let mut a = RawClient::connect(server.addr);
    let _b = RawClient::connect(server.addr);
    let mut c = RawClient::connect_tcp(server.addr);
    c.send(upgrade_request(server.addr, "").as_bytes());
    assert!(c.read_http_head().starts_with("HTTP/1.1 503"));
    // The others keep working, and a slot frees up when one leaves.
    a.send(&masked(true, 1, b"still here"));
    assert_eq!(a.read_frame().unwrap().payload, b"still here");
    a.send(&masked(true, 8, &1000u16.to_be_bytes()));
    a.expect_close();
    assert!(a.sees_eof(Duration::from_secs(2)));
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.handle.connections() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut d = RawClient::connect(server.addr);
    d.send(&masked(true, 1, b"in"));
    assert_eq!(d.read_frame().unwrap().payload, b"in");
}

#[test]
fn bad_clients_get_their_answer_while_others_keep_working() {
    let server = TestServer::start(|b| b.reactors(1).max_request_head(2048), |_| Echo);
    let mut good = RawClient::connect(server.addr);
    let mut check_good = |round: u8| {
        good.send(&masked(true, 2, &[round; 1000]));
        assert_eq!(good.read_frame().unwrap().payload, vec![round; 1000]);
    };

    let mut garbage = RawClient::connect_tcp(server.addr);
    garbage.send_lossy(&[0xFF; 300]);
    garbage.send_lossy(b"\r\n\r\n");
    let resp = String::from_utf8_lossy(&garbage.read_to_end()).into_owned();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    check_good(1);

    let mut big = RawClient::connect_tcp(server.addr);
    big.send_lossy(
        upgrade_request(server.addr, &format!("X: {}\r\n", "y".repeat(4000))).as_bytes(),
    );
    assert!(String::from_utf8_lossy(&big.read_to_end()).starts_with("HTTP/1.1 431"));
    check_good(2);

    let mut unmasked = RawClient::connect(server.addr);
    unmasked.send(&frame(true, 0, 1, None, b"hello"));
    assert_eq!(unmasked.expect_close(), Some(1002));
    check_good(3);

    let mut bad_text = RawClient::connect(server.addr);
    bad_text.send(&masked(true, 1, &[0xC3, 0x28]));
    assert_eq!(bad_text.expect_close(), Some(1007));
    check_good(4);

    let mut junk_frames = RawClient::connect(server.addr);
    junk_frames.send_lossy(&[0x8F; 64]);
    assert_eq!(junk_frames.expect_close(), Some(1002));
    check_good(5);
}

/// Sends `burst` messages of `size` bytes on open, records each status.
struct Flood {
    statuses: Arc<Mutex<Vec<SendStatus>>>,
    drained: Arc<AtomicUsize>,
}

impl Handler for Flood {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, _msg: Message<'_>) {
        let chunk = vec![b'z'; 64 << 10];
        let mut statuses = self.statuses.lock().unwrap();
        for _ in 0..64 {
            statuses.push(cx.send_binary(&chunk));
        }
        assert!(cx.buffered_bytes() <= 256 << 10, "queue passed the cap");
    }

    fn on_drain(&mut self, _cx: &mut Ctx<'_, ()>) {
        self.drained.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_output_cap_is_strict_and_drain_is_reported() {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let drained = Arc::new(AtomicUsize::new(0));
    let (s, d) = (Arc::clone(&statuses), Arc::clone(&drained));
    let server = TestServer::start(
        |b| b.reactors(1).max_backpressure(256 << 10),
        move |_| Flood { statuses: Arc::clone(&s), drained: Arc::clone(&d) },
    );
    let mut c = RawClient::connect(server.addr);
    c.send(&masked(true, 1, b"go"));
    // Read everything the server queued; it must be at most the cap's worth.
    let mut got = 0;
    c.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while let Some(f) = c.read_frame() {
        got += f.payload.len();
    }
    let statuses = statuses.lock().unwrap();
    let queued = statuses.iter().filter(|s| **s != SendStatus::Dropped).count();
    assert!((3..64).contains(&queued), "queued {queued} of 64 with a 256 KiB cap");
    assert!(statuses.contains(&SendStatus::Dropped));
    assert_eq!(got, queued * (64 << 10));
}

#[test]
fn a_client_that_does_not_read_is_not_read_from_and_loses_nothing() {
    let server = TestServer::start(|b| b.reactors(1).max_backpressure(64 << 10), |_| Echo);
    let mut c = RawClient::connect(server.addr);
    // Pipeline far more than the cap plus the socket buffers without reading.
    let msg = masked(true, 2, &[9; 4000]);
    let total = 4000;
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for _ in 0..total {
                stream.write_all(&msg).unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut n = 0;
    while n < total {
        let f = c.read_frame().expect("echo lost");
        assert_eq!(f.payload.len(), 4000);
        n += 1;
    }
    writer.join().unwrap();
}

#[test]
fn closing_from_a_handler_reports_on_close_once() {
    struct Closer(Arc<Mutex<Vec<(u16, String)>>>);
    impl Handler for Closer {
        type Conn = ();
        fn on_message(&mut self, cx: &mut Ctx<'_, ()>, _m: Message<'_>) {
            cx.close(CloseCode(4002), "done");
            assert_eq!(cx.send_text("too late"), SendStatus::Dropped);
        }
        fn on_close(&mut self, _cx: &mut Ctx<'_, ()>, code: CloseCode, reason: &str) {
            self.0.lock().unwrap().push((code.0, reason.to_owned()));
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    let server = TestServer::start(|b| b.reactors(1), move |_| Closer(Arc::clone(&l)));
    let mut a = RawClient::connect(server.addr);
    a.send(&masked(true, 1, b"x"));
    assert_eq!(a.expect_close(), Some(4002));
    a.send(&masked(true, 8, &4002u16.to_be_bytes()));
    assert!(a.sees_eof(Duration::from_secs(2)));
    let mut b = RawClient::connect(server.addr);
    b.send(&masked(true, 8, &[&3000u16.to_be_bytes()[..], b"client says"].concat()));
    b.expect_close();
    let c = RawClient::connect(server.addr);
    drop(c.stream.try_clone());
    c.stream.shutdown(std::net::Shutdown::Both).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while log.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut log = log.lock().unwrap().clone();
    log.sort();
    assert_eq!(
        log,
        vec![(1006, String::new()), (3000, "client says".into()), (4002, String::new())]
    );
}

#[test]
fn tungstenite_client_echo() {
    use tungstenite::{Message as TMsg, connect};
    let server = TestServer::start(|b| b, |_| Echo);
    let (mut ws, resp) = connect(format!("ws://{}/", server.addr)).unwrap();
    assert_eq!(resp.status(), 101);
    for len in [0usize, 10, 200, 70_000, 3 << 20] {
        let text: String = "ab€".chars().cycle().take(len).collect();
        ws.send(TMsg::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), TMsg::text(text));
        let bin = vec![0xA5u8; len];
        ws.send(TMsg::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), TMsg::binary(bin));
    }
    ws.send(TMsg::Ping(b"hi".to_vec().into())).unwrap();
    assert_eq!(ws.read().unwrap(), TMsg::Pong(b"hi".to_vec().into()));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(TMsg::Close(_)) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Echoes, and takes 2 ms over each `on_open`, so that connections pile up
/// in the listener's queue faster than the reactor takes them.
struct SlowOpen;

impl Handler for SlowOpen {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Ctx<'_, ()>) {
        std::thread::sleep(Duration::from_millis(2));
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        let _ = cx.send(msg);
    }
}

/// A reconnect storm is accepted a slice per loop turn: an open connection
/// is served between slices (64 x 2 ms) rather than after the whole queue
/// (at least 400 x 2 ms), and every queued connection is still accepted and
/// upgraded.
#[test]
fn a_connection_storm_is_accepted_in_slices_and_nobody_waits_for_all_of_it() {
    const STORM: usize = 400;
    let server = TestServer::start(|b| b.reactors(1), |_| SlowOpen);
    let mut early = RawClient::connect(server.addr);
    let addr = server.addr;
    let storm = std::thread::spawn(move || {
        (0..STORM)
            .map(|_| {
                let mut c = RawClient::connect_tcp(addr);
                c.send(upgrade_request(addr, "").as_bytes());
                c
            })
            .collect::<Vec<_>>()
    });
    let mut clients = storm.join().unwrap();
    let start = Instant::now();
    early.send(&masked(true, 1, b"still here"));
    assert_eq!(early.read_frame().unwrap().payload, b"still here");
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_millis(600),
        "an open connection waited {waited:?} behind the accept queue"
    );
    for c in &mut clients {
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "handshake failed: {head}");
    }
    for c in clients.iter_mut().step_by(37) {
        c.send(&masked(true, 2, b"ok"));
        assert_eq!(c.read_frame().unwrap().payload, b"ok");
    }
    assert_eq!(server.handle.stats().upgraded, STORM as u64 + 1);
}
