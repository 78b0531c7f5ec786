//! The thread-safe door reaching single connections: `ServerHandle::send_to`
//! and `close` from other threads, and broadcasts that skip the sender
//! (`Ctx::broadcast_others`, `ServerHandle::broadcast_except`), over real
//! sockets on two reactors.

mod support;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{RawClient, TestServer, masked};
use wsreactor::{CloseCode, ConnId, Ctx, Frame, Handler, Message};

/// Reports each connection's id when it opens (and its close code when it
/// closes); relays what a client says to every other client.
struct Room {
    opened: Sender<ConnId>,
    closed: Arc<Mutex<Vec<(ConnId, u16, String)>>>,
}

impl Handler for Room {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Ctx<'_, ()>) {
        let _ = cx.send_text(&cx.id().to_string());
        let _ = self.opened.send(cx.id());
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        cx.broadcast_others(msg);
    }

    fn on_close(&mut self, cx: &mut Ctx<'_, ()>, code: CloseCode, reason: &str) {
        self.closed.lock().unwrap().push((cx.id(), code.0, reason.to_owned()));
    }
}

type Closed = Arc<Mutex<Vec<(ConnId, u16, String)>>>;

fn room() -> (TestServer, Receiver<ConnId>, Closed) {
    let (tx, rx) = mpsc::channel();
    let closed: Closed = Arc::default();
    let seen = Arc::clone(&closed);
    let tx = Mutex::new(tx);
    let server = TestServer::start(
        |b| b.reactors(2),
        move |_| Room { opened: tx.lock().unwrap().clone(), closed: Arc::clone(&seen) },
    );
    (server, rx, closed)
}

/// Connects clients until both reactors have at least two; each with its id.
fn clients(server: &TestServer, ids: &Receiver<ConnId>) -> Vec<(RawClient, ConnId)> {
    let mut out: Vec<(RawClient, ConnId)> = Vec::new();
    let on =
        |out: &[(RawClient, ConnId)], r| out.iter().filter(|(_, id)| id.reactor() == r).count();
    while on(&out, 0) < 2 || on(&out, 1) < 2 {
        assert!(out.len() < 200, "every connection landed on one reactor");
        let mut c = RawClient::connect(server.addr);
        let hello = c.read_frame().unwrap().payload;
        let id = ids.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(String::from_utf8(hello).unwrap(), id.to_string());
        out.push((c, id));
    }
    out
}

#[test]
fn send_to_reaches_exactly_the_connection_named_from_any_thread() {
    let (server, ids, _) = room();
    let mut clients = clients(&server, &ids);
    let handle = server.handle.clone();
    let targets: Vec<ConnId> = clients.iter().map(|(_, id)| *id).collect();
    std::thread::spawn(move || {
        for id in targets {
            assert!(handle.send_to(id, Message::Text(&format!("for {id}"))));
        }
    })
    .join()
    .unwrap();
    // Each gets its own and nothing else: a broadcast marker comes next.
    server.handle.broadcast(&Frame::new(Message::Text("marker")));
    for (c, id) in &mut clients {
        assert_eq!(c.read_frame().unwrap().payload, format!("for {id}").as_bytes());
        assert_eq!(c.read_frame().unwrap().payload, b"marker");
    }
}

#[test]
fn an_id_outlives_its_connection_but_never_reaches_the_next_in_its_slot() {
    let (tx, ids) = mpsc::channel();
    let tx = Mutex::new(tx);
    let closed: Closed = Arc::default();
    let seen = Arc::clone(&closed);
    let server = TestServer::start(
        |b| b.reactors(1),
        move |_| Room { opened: tx.lock().unwrap().clone(), closed: Arc::clone(&seen) },
    );
    let mut first = RawClient::connect(server.addr);
    first.read_frame().unwrap();
    let gone = ids.recv_timeout(Duration::from_secs(5)).unwrap();
    first.send(&masked(true, 8, &1000u16.to_be_bytes()));
    assert_eq!(first.expect_close(), Some(1000));
    drop(first);
    // The slot is free again: the next connection most likely takes it.
    let mut next = RawClient::connect(server.addr);
    next.read_frame().unwrap();
    let now = ids.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_ne!(gone, now, "ids are never reused");
    let dropped = server.handle.stats().sends_dropped;
    assert!(server.handle.send_to(gone, Message::Text("for the old one")));
    assert!(server.handle.send_to(now, Message::Text("for the new one")));
    assert_eq!(next.read_frame().unwrap().payload, b"for the new one");
    assert_eq!(server.handle.stats().sends_dropped, dropped + 1, "counted as dropped");
    // An id from no reactor of this server.
    let stranger: ConnId = {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let other = TestServer::start(
            |b| b.reactors(2),
            move |_| Room { opened: tx.lock().unwrap().clone(), closed: Arc::default() },
        );
        let mut far = Vec::new();
        loop {
            let mut c = RawClient::connect(other.addr);
            c.read_frame().unwrap();
            let id = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            far.push(c);
            if id.reactor() == 1 {
                break id;
            }
        }
    };
    assert!(
        !server.handle.send_to(stranger, Message::Text("x")),
        "reactor 1 of a 1-reactor server"
    );
    assert!(!server.handle.close(stranger, CloseCode::NORMAL, ""));
}

#[test]
fn close_from_another_thread_closes_with_the_code_and_reason() {
    let (server, ids, closed) = room();
    let mut clients = clients(&server, &ids);
    let (mut victim, id) = clients.remove(0);
    let handle = server.handle.clone();
    std::thread::spawn(move || assert!(handle.close(id, CloseCode(4000), "kicked")))
        .join()
        .unwrap();
    let f = loop {
        let f = victim.read_frame().expect("a close frame");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(f.payload, [&4000u16.to_be_bytes()[..], b"kicked"].concat());
    victim.send(&masked(true, 8, &4000u16.to_be_bytes()));
    assert!(victim.sees_eof(Duration::from_secs(5)));
    assert!(closed.lock().unwrap().iter().any(|(c, code, _)| *c == id && *code == 4000));
    // The others are untouched.
    server.handle.broadcast(&Frame::new(Message::Text("still here")));
    for (c, _) in &mut clients {
        assert_eq!(c.read_frame().unwrap().payload, b"still here");
    }
}

#[test]
fn broadcast_others_reaches_every_client_but_the_sender_on_every_reactor() {
    let (server, ids, _) = room();
    let mut clients = clients(&server, &ids);
    clients[0].0.send(&masked(true, 1, b"hello room"));
    let (sender, others) = clients.split_at_mut(1);
    for (c, _) in others.iter_mut() {
        assert_eq!(c.read_frame().unwrap().payload, b"hello room");
    }
    // Everyone has it: whatever the sender gets next came after it.
    server.handle.broadcast(&Frame::new(Message::Text("marker")));
    for (c, _) in others {
        assert_eq!(c.read_frame().unwrap().payload, b"marker");
    }
    assert_eq!(sender[0].0.read_frame().unwrap().payload, b"marker", "not echoed to the sender");
}

#[test]
fn broadcast_except_from_the_handle_skips_one_connection() {
    let (server, ids, _) = room();
    let mut clients = clients(&server, &ids);
    // Skip one on reactor 1, so the skip must travel to the right reactor.
    let skip = clients.iter().position(|(_, id)| id.reactor() == 1).unwrap();
    let skipped = clients[skip].1;
    server.handle.broadcast_except(&Frame::new(Message::Binary(&[7, 7])), skipped);
    server.handle.broadcast(&Frame::new(Message::Text("marker")));
    for (c, id) in &mut clients {
        if *id != skipped {
            assert_eq!(c.read_frame().unwrap().payload, [7, 7]);
        }
        assert_eq!(c.read_frame().unwrap().payload, b"marker", "{id}");
    }
}
