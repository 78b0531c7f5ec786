//! The opening handshake on the wire: 101, 400/405/426/431, the upgrade hook.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::{Echo, KEY, RawClient, TestServer, masked, upgrade_request};
use wsreactor::{Accept, Handler, Reject, Request};

fn response_to(server: &TestServer, request: &[u8]) -> String {
    let mut c = RawClient::connect_tcp(server.addr);
    c.send_lossy(request);
    String::from_utf8_lossy(&c.read_to_end()).into_owned()
}

#[test]
fn accepts_with_the_rfc_accept_key() {
    let server = TestServer::start(|b| b, |_| Echo);
    let mut c = RawClient::connect_tcp(server.addr);
    c.send(upgrade_request(server.addr, "").as_bytes());
    let head = c.read_http_head().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 switching protocols\r\n"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"));
    assert!(head.contains("\r\nconnection: upgrade\r\n"));
    assert!(head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"));
    assert!(!head.contains("sec-websocket-protocol"));
    assert!(!head.contains("sec-websocket-extensions"));
}

#[test]
fn wrong_version_gets_426_with_the_supported_version() {
    let server = TestServer::start(|b| b, |_| Echo);
    let req = upgrade_request(server.addr, "").replace("Version: 13", "Version: 8");
    let resp = response_to(&server, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");
}

#[test]
fn malformed_requests_get_400() {
    let server = TestServer::start(|b| b, |_| Echo);
    let a = server.addr;
    let cases = [
        upgrade_request(a, "").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        upgrade_request(a, "").replace(KEY, "c2hvcnQ="),
        upgrade_request(a, "").replace("Connection: Upgrade", "Connection: keep-alive"),
        upgrade_request(a, "").replace(&format!("Host: {a}\r\n"), ""),
        "GARBAGE\0\x01\x02 not http\r\n\r\n".to_string(),
    ];
    for req in cases {
        let resp = response_to(&server, req.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 400"), "{req:?} -> {resp}");
    }
}

#[test]
fn no_upgrade_header_gets_426_and_non_get_405() {
    let server = TestServer::start(|b| b, |_| Echo);
    let plain = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    assert!(response_to(&server, plain.as_bytes()).starts_with("HTTP/1.1 426"));
    let post = upgrade_request(server.addr, "").replacen("GET", "POST", 1);
    let resp = response_to(&server, post.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 405") && resp.contains("Allow: GET"), "{resp}");
}

#[test]
fn oversized_head_gets_431() {
    let server = TestServer::start(|b| b.max_request_head(1024), |_| Echo);
    let big = upgrade_request(server.addr, &format!("X-Pad: {}\r\n", "p".repeat(2000)));
    assert!(response_to(&server, big.as_bytes()).starts_with("HTTP/1.1 431"));
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let server = TestServer::start(|b| b, |_| Echo);
    let resp = response_to(&server, upgrade_request(server.addr, &many).as_bytes());
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
}

/// What the upgrade hook saw, for the test to inspect.
#[derive(Default, Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    origin: Option<String>,
    token: Option<String>,
    peer: Option<SocketAddr>,
}

struct Gate(Arc<Mutex<Vec<Seen>>>);

impl Handler for Gate {
    type Conn = String;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<String>, Reject> {
        self.0.lock().unwrap().push(Seen {
            method: req.method().into(),
            path: req.path().into(),
            query: req.query().map(Into::into),
            origin: req.origin().map(Into::into),
            token: req.header_str("x-token").map(Into::into),
            peer: req.peer_addr(),
        });
        if req.origin() == Some("http://evil.example") {
            return Err(Reject::new(403, "origin not allowed"));
        }
        if req.header_str("X-Token") != Some("s3cret") {
            return Err(Reject::new(401, "token required").header("WWW-Authenticate", "Token"));
        }
        let proto = req.protocols().find(|p| *p == "chat.v1" || *p == "chat.v2");
        Ok(Accept::new(format!("user@{}", req.path())).protocol(proto).header("X-Served-By", "gate"))
    }

    fn on_message(&mut self, cx: &mut wsreactor::Ctx<'_, String>, _msg: wsreactor::Message<'_>) {
        let who = cx.data().clone();
        let _ = cx.send_text(&who);
    }
}

#[test]
fn upgrade_hook_sees_the_request_and_decides() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let server = TestServer::start(|b| b, move |_| Gate(Arc::clone(&s2)));
    let a = server.addr;

    let evil = upgrade_request(a, "Origin: http://evil.example\r\nX-Token: s3cret\r\n");
    let resp = response_to(&server, evil.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 403") && resp.contains("origin not allowed"), "{resp}");

    let resp = response_to(&server, upgrade_request(a, "").as_bytes());
    assert!(resp.starts_with("HTTP/1.1 401") && resp.contains("WWW-Authenticate: Token"), "{resp}");

    let mut c = RawClient::connect_tcp(a);
    let req = upgrade_request(a, "X-Token: s3cret\r\nSec-WebSocket-Protocol: x, chat.v2\r\n")
        .replace("GET /chat ", "GET /room/7?since=42 ");
    c.send(req.as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: chat.v2\r\n"), "{head}");
    assert!(head.contains("X-Served-By: gate\r\n"), "{head}");
    c.send(&masked(true, 1, b"who am i"));
    assert_eq!(c.read_frame().unwrap().payload, b"user@/room/7");

    let seen = seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.method, "GET");
    assert_eq!(last.path, "/room/7");
    assert_eq!(last.query.as_deref(), Some("since=42"));
    assert_eq!(last.token.as_deref(), Some("s3cret"));
    assert_eq!(last.peer.map(|p| p.ip()), Some(c.stream.local_addr().unwrap().ip()));
    assert_eq!(last.peer.map(|p| p.port()), Some(c.stream.local_addr().unwrap().port()));
    assert_eq!(seen[0].origin.as_deref(), Some("http://evil.example"));
}
