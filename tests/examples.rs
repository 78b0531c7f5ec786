//! The examples' handlers, served by a test server and checked with a raw
//! client (the examples themselves are built by `cargo clippy --all-targets`).

mod support;

#[path = "../examples/ticker.rs"]
mod ticker;

use std::time::Duration;

use support::{RawClient, TestServer, upgrade_request};
use wsreactor::Message;

fn delivery(c: &mut RawClient) -> serde_json::Value {
    let frame = c.read_frame().expect("a tick");
    assert_eq!(frame.opcode, 1);
    serde_json::from_slice(&frame.payload).expect("JSON")
}

#[test]
fn ticker_routes_by_path_sends_the_last_tick_then_every_tick() {
    let server = TestServer::start(|b| b, |_| ticker::Ticker);
    let publisher = server.handle.publisher();
    for n in 1..=3 {
        publisher.publish("md.ETH-USD", Message::Text(&format!(r#"{{"bid":{n}}}"#))).unwrap();
        publisher.publish("md.BTC-USD", Message::Text(r#"{"bid":1}"#)).unwrap();
    }

    let mut c = RawClient::connect_tcp(server.addr);
    c.send(
        upgrade_request(server.addr, "").replace("GET /chat ", "GET /ticks/ETH-USD ").as_bytes(),
    );
    assert!(c.read_http_head().starts_with("HTTP/1.1 101"));
    let last = delivery(&mut c);
    assert_eq!((last["topic"].as_str(), last["seq"].as_u64()), (Some("md.ETH-USD"), Some(3)));
    assert_eq!(last["data"]["bid"], 3);

    std::thread::sleep(Duration::from_millis(50)); // the subscription is in place
    publisher.publish("md.BTC-USD", Message::Text(r#"{"bid":2}"#)).unwrap();
    publisher.publish("md.ETH-USD", Message::Text(r#"{"bid":4}"#)).unwrap();
    let next = delivery(&mut c);
    assert_eq!((next["topic"].as_str(), next["seq"].as_u64()), (Some("md.ETH-USD"), Some(4)));
}

#[test]
fn ticker_refuses_an_unknown_symbol_with_404() {
    let server = TestServer::start(|b| b, |_| ticker::Ticker);
    for path in ["/ticks/XRP-USD", "/", "/ticks/"] {
        let mut c = RawClient::connect_tcp(server.addr);
        let request =
            upgrade_request(server.addr, "").replace("GET /chat ", &format!("GET {path} "));
        c.send(request.as_bytes());
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }
    assert!(ticker::SYMBOLS.contains(&"BTC-USD"));
}
