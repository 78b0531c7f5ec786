//! permessage-deflate (RFC 7692) on the wire, with exact bytes: negotiation
//! per mode, RSV1 rules, compressed echo, bombs, corrupt data, and one
//! compression per broadcast in shared mode.

mod support;

use std::time::Duration;

use support::{Echo, RawClient, RawFrame, TestServer, frame, upgrade_request};
use wsreactor::proto::deflate::{Compressor, Decompressor};
use wsreactor::{Compression, Ctx, Handler, Message};

const KEY: [u8; 4] = [9, 8, 7, 6];

fn server(mode: Compression) -> TestServer {
    TestServer::start(|b| b.compression(mode).max_message_size(1 << 20), |_| Echo)
}

/// Connects offering `offer`; returns the client and the server's answer.
fn connect(server: &TestServer, offer: &str) -> (RawClient, Option<String>) {
    let mut c = RawClient::connect_tcp(server.addr);
    let ext = format!("Sec-WebSocket-Extensions: {offer}\r\n");
    c.send(upgrade_request(server.addr, &ext).as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answer =
        head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: ")).map(str::to_owned);
    (c, answer)
}

fn compressed(c: &mut Compressor, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    c.compress(payload, &mut out);
    out
}

fn inflate(d: &mut Decompressor, f: &RawFrame) -> Vec<u8> {
    if f.rsv & 4 == 0 {
        return f.payload.clone();
    }
    let mut out = Vec::new();
    d.decompress(&f.payload, true, 64 << 20, &mut out).expect("server sent bad deflate data");
    out
}

#[test]
fn each_mode_answers_as_documented() {
    let offer = "permessage-deflate; client_max_window_bits";
    let (_, none) = connect(&server(Compression::Disabled), offer);
    assert_eq!(none, None);
    let (_, shared) = connect(&server(Compression::Shared), offer);
    assert_eq!(
        shared.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let (_, dedicated) = connect(&server(Compression::Dedicated), offer);
    assert_eq!(dedicated.as_deref(), Some("permessage-deflate"));
    let (_, small) = connect(
        &server(Compression::Dedicated),
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10; client_max_window_bits=11",
    );
    assert_eq!(
        small.as_deref(),
        Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11")
    );
}

#[test]
fn a_malformed_extension_header_gets_400() {
    let s = server(Compression::Shared);
    let mut c = RawClient::connect_tcp(s.addr);
    let req = upgrade_request(s.addr, "Sec-WebSocket-Extensions: permessage-deflate; ;\r\n");
    c.send(req.as_bytes());
    let resp = String::from_utf8_lossy(&c.read_to_end()).into_owned();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[test]
fn compressed_messages_echo_in_both_modes_whole_and_fragmented() {
    for mode in [Compression::Shared, Compression::Dedicated] {
        let s = server(mode);
        let (mut c, answer) = connect(&s, "permessage-deflate");
        let no_context =
            answer.as_deref().is_some_and(|a| a.contains("client_no_context_takeover"));
        let mut deflater = Compressor::new(15, 1, no_context);
        let server_no_context = mode == Compression::Shared;
        let mut inflater = Decompressor::new(15, server_no_context);
        let tick = br#"{"type":"tick","symbol":"BTC-USD","bid":64123.5,"ask":64124.0,"size":0.25}"#;
        for round in 0..5 {
            let z = compressed(&mut deflater, tick);
            c.send(&frame(true, 4, 1, Some(KEY), &z));
            let f = c.read_frame().unwrap();
            assert_eq!(f.opcode, 1);
            assert_eq!(f.rsv & 4, 4, "{mode:?} round {round}: a 74-byte echo goes out compressed");
            assert_eq!(inflate(&mut inflater, &f), tick);
        }
        // A compressed message in three frames: RSV1 only on the first.
        let big: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        let z = compressed(&mut deflater, &big);
        let (a, rest) = z.split_at(z.len() / 3);
        let (b, tail) = rest.split_at(rest.len() / 2);
        c.send(
            &[
                frame(false, 4, 2, Some(KEY), a),
                frame(false, 0, 0, Some(KEY), b),
                frame(true, 0, 0, Some(KEY), tail),
            ]
            .concat(),
        );
        let f = c.read_frame().unwrap();
        assert_eq!((f.opcode, f.rsv), (2, 4));
        assert_eq!(inflate(&mut inflater, &f), big);
        // Small messages go out as they are.
        c.send(&frame(true, 4, 1, Some(KEY), &compressed(&mut deflater, b"hi")));
        let f = c.read_frame().unwrap();
        assert_eq!((f.rsv, f.payload.as_slice()), (0, &b"hi"[..]));
        assert!(s.handle.stats().compressions >= 6);
    }
}

#[test]
fn rsv1_rules_hold_with_the_extension() {
    let s = server(Compression::Dedicated);
    let cases: [(&str, Vec<u8>); 3] = [
        ("RSV1 on a ping", frame(true, 4, 9, Some(KEY), b"")),
        (
            "RSV1 on a continuation",
            [frame(false, 0, 1, Some(KEY), b"a"), frame(true, 4, 0, Some(KEY), b"b")].concat(),
        ),
        ("RSV2", frame(true, 2, 1, Some(KEY), b"x")),
    ];
    for (name, bytes) in cases {
        let (mut c, _) = connect(&s, "permessage-deflate");
        c.send_lossy(&bytes);
        assert_eq!(c.expect_close(), Some(1002), "{name}");
    }
}

#[test]
fn a_deflate_bomb_closes_with_1009_and_corrupt_data_with_1007() {
    let s = server(Compression::Shared);
    let (mut c, _) = connect(&s, "permessage-deflate");
    let bomb = compressed(&mut Compressor::new(15, 9, true), &vec![0u8; 10 << 20]);
    assert!(bomb.len() < 64 << 10, "the bomb is {} bytes", bomb.len());
    c.send_lossy(&frame(true, 4, 2, Some(KEY), &bomb));
    assert_eq!(c.expect_close(), Some(1009));

    let (mut c, _) = connect(&s, "permessage-deflate");
    c.send_lossy(&frame(true, 4, 2, Some(KEY), &[0xff, 0xff, 0xff, 0x00]));
    assert_eq!(c.expect_close(), Some(1007));

    let (mut c, _) = connect(&s, "permessage-deflate");
    let bad_text = compressed(&mut Compressor::new(15, 1, true), &[b'o', b'k', 0xC0, 0xAF]);
    c.send_lossy(&frame(true, 4, 1, Some(KEY), &bad_text));
    assert_eq!(c.expect_close(), Some(1007));

    let (mut good, _) = connect(&s, "permessage-deflate");
    good.send(&frame(
        true,
        4,
        1,
        Some(KEY),
        &compressed(&mut Compressor::new(15, 1, true), b"fine"),
    ));
    assert_eq!(good.read_frame().unwrap().payload, b"fine");
}

/// Broadcasts whatever it receives.
struct Fanout;

impl Handler for Fanout {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        cx.broadcast(msg);
    }
}

#[test]
fn shared_mode_compresses_a_broadcast_to_1000_connections_once() {
    let s = TestServer::start(|b| b.reactors(2).compression(Compression::Shared), |_| Fanout);
    let mut clients: Vec<RawClient> =
        (0..1000).map(|_| connect(&s, "permessage-deflate").0).collect();
    let mut plain = RawClient::connect(s.addr); // did not offer the extension
    let before = s.handle.stats().compressions;
    let tick =
        br#"{"type":"tick","symbol":"ETH-USD","bid":3123.5,"ask":3124.0,"size":1.5,"seq":1}"#
            .repeat(3);
    plain.send(&support::masked(true, 1, &tick));
    let mut bytes = None;
    for c in &mut clients {
        let f = c.read_frame().unwrap();
        assert_eq!(f.rsv, 4);
        assert_eq!(inflate(&mut Decompressor::new(15, true), &f), tick);
        // Every connection got the very same compressed bytes.
        assert!(bytes.get_or_insert_with(|| f.payload.clone()) == &f.payload);
    }
    let f = plain.read_frame().unwrap();
    assert_eq!((f.rsv, f.payload.as_slice()), (0, tick.as_slice()));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        s.handle.stats().compressions - before,
        1,
        "one compression for 1,000 compressed receivers"
    );
}

/// Compressed text is checked for UTF-8 as it is inflated: invalid bytes in
/// the first fragment fail the connection before the message ends, and valid
/// text split anywhere across fragments (inside code points too) is echoed.
#[test]
fn compressed_text_is_utf8_checked_as_it_is_inflated() {
    let s = server(Compression::Shared);
    let (mut c, _) = connect(&s, "permessage-deflate");
    c.stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut bad = b"ok ".repeat(100);
    bad.extend_from_slice(&[0xC0, 0xAF]);
    let bad = compressed(&mut Compressor::new(15, 1, true), &bad);
    c.send(&frame(false, 4, 1, Some(KEY), &bad)); // the final fragment never comes
    assert_eq!(c.expect_close(), Some(1007));

    let text = "tick é ✓ 🦀 ".repeat(40);
    let z = compressed(&mut Compressor::new(15, 1, true), text.as_bytes());
    let (mut c, _) = connect(&s, "permessage-deflate");
    let mut d = Decompressor::new(15, true);
    for cut in [1, z.len() / 3, z.len() / 2, z.len() - 1] {
        c.send(&frame(false, 4, 1, Some(KEY), &z[..cut]));
        c.send(&frame(true, 0, 0, Some(KEY), &z[cut..]));
        let echo = c.read_frame().expect("an echo");
        assert_eq!(inflate(&mut d, &echo), text.as_bytes(), "cut at {cut}");
    }
}
