//! The connection against RFC 6455 and RFC 7692 on plain byte slices, with
//! a virtual clock: no socket, no sleep.

use super::*;
use crate::proto::deflate::{Compressor, Decompressor};
use crate::proto::frame::encode_header;
use crate::testing::Rng;

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// What a test lends: output, a memory room, an inflater.
struct Wire {
    out: Vec<u8>,
    room: usize,
    inflater: Option<Decompressor>,
}

impl Wire {
    fn new() -> Self {
        Wire { out: Vec::new(), room: usize::MAX, inflater: None }
    }

    /// The frames sent so far (server frames, unmasked), taken.
    fn frames(&mut self) -> Vec<(OpCode, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.out);
        let mut dec = Decoder::new();
        let cfg =
            DecoderConfig { role: Role::Client, allow_rsv1: true, ..DecoderConfig::default() };
        let mut frames = Vec::new();
        let mut buf = &mut out[..];
        while let Ok(Decoded::Progress { consumed, event }) = dec.decode(buf, &cfg) {
            match event {
                Some(super::super::Event::Text(t)) => frames.push((OpCode::Text, t.into())),
                Some(super::super::Event::Binary(b)) => frames.push((OpCode::Binary, b.into())),
                Some(super::super::Event::Ping(p)) => frames.push((OpCode::Ping, p.into())),
                Some(super::super::Event::Pong(p)) => frames.push((OpCode::Pong, p.into())),
                Some(super::super::Event::Close(c, r)) => {
                    let mut p =
                        if c == CloseCode::NO_STATUS { vec![] } else { c.0.to_be_bytes().to_vec() };
                    p.extend_from_slice(r.as_bytes());
                    frames.push((OpCode::Close, p));
                }
                other => panic!("unexpected output {other:?}"),
            }
            buf = &mut buf[consumed..];
        }
        frames
    }
}

impl Io for Wire {
    fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.out.transmit(len, write);
    }
    fn room(&mut self) -> usize {
        self.room
    }
    fn inflate(
        &mut self,
        d: &[u8],
        fin: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        match self.inflater.as_mut() {
            Some(i) => i.decompress(d, fin, max, out),
            None => Err(InflateError::Corrupt),
        }
    }
}

/// An event, owned.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Request(String),
    BadHandshake(u16),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    Failed(u16, bool),
}

fn own(e: Event<'_>) -> Got {
    match e {
        Event::Request(r) => Got::Request(r.path().into()),
        Event::BadHandshake(e) => Got::BadHandshake(e.status),
        Event::Message(Message::Text(t)) => Got::Text(t.into()),
        Event::Message(Message::Binary(b)) => Got::Binary(b.into()),
        Event::Ping(p) => Got::Ping(p.into()),
        Event::Pong(p) => Got::Pong(p.into()),
        Event::Close(c, r) => Got::Close(c.0, r.into()),
        Event::Failed(f) => Got::Failed(f.code.0, f.over_budget),
    }
}

/// Feeds `input` as one buffer; returns the events and what was left.
fn feed(conn: &mut Connection, input: &[u8], wire: &mut Wire, now: Tick) -> (Vec<Got>, usize) {
    feed_with(conn, input, wire, now, &Limits::default(), &mut Vec::new())
}

fn feed_with(
    conn: &mut Connection,
    input: &[u8],
    wire: &mut Wire,
    now: Tick,
    limits: &Limits,
    message: &mut Vec<u8>,
) -> (Vec<Got>, usize) {
    let mut buf = input.to_vec();
    let mut pos = 0;
    let mut got = Vec::new();
    loop {
        match conn.handle_input(&mut buf[pos..], message, limits, now, wire) {
            Input::NeedMore => return (got, buf.len() - pos),
            Input::Progress { consumed, event } => {
                pos += consumed;
                if let Some(e) = event {
                    got.push(own(e));
                }
            }
        }
    }
}

/// A client frame, masked.
fn frame(opcode: u8, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut h = [0u8; 14];
    let op = OpCode::from_u8(opcode).unwrap_or(OpCode::Binary);
    let n = encode_header(&mut h, fin, rsv1, op, payload.len() as u64, Some(key));
    let mut v = h[..n].to_vec();
    if OpCode::from_u8(opcode).is_none() {
        v[0] = (v[0] & 0xf0) | opcode;
    }
    let start = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[start..], key, 0);
    v
}

fn text(s: &str) -> Vec<u8> {
    frame(0x1, true, false, s.as_bytes())
}

/// A server connection, open at tick 0 (the 101 taken off the wire).
fn open(extension: Option<&str>) -> (Connection, Wire) {
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    let (got, left) = feed(&mut conn, REQUEST, &mut wire, 0);
    assert_eq!((got, left), (vec![Got::Request("/chat".into())], 0));
    let up = Upgrade { key: "dGhlIHNhbXBsZSBub25jZQ==", extension, ..Upgrade::default() };
    conn.accept(&up, 0, &mut wire).expect("a valid response");
    let response = std::mem::take(&mut wire.out);
    assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(
        response.windows(28).any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the accept key of RFC 6455 §1.3"
    );
    (conn, wire)
}

fn fails_with(input: &[u8], code: u16) {
    let (mut conn, mut wire) = open(None);
    let (got, _) = feed(&mut conn, input, &mut wire, 1);
    assert_eq!(got.last(), Some(&Got::Failed(code, false)), "{input:x?}");
    let frames = wire.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].0, &frames[0].1[..2]), (OpCode::Close, &code.to_be_bytes()[..]));
    assert_eq!(conn.state(), State::Closing);
    // Nothing more is read, not even a close.
    let (got, left) = feed(&mut conn, &frame(0x8, true, false, &[0x03, 0xe8]), &mut wire, 2);
    assert_eq!((got, left), (vec![], 0));
    assert!(wire.out.is_empty());
}

#[test]
fn a_request_is_handed_out_and_frames_after_it_wait_for_the_answer() {
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    let mut input = REQUEST.to_vec();
    input.extend_from_slice(&text("early"));
    let (got, left) = feed(&mut conn, &input, &mut wire, 0);
    assert_eq!(got, vec![Got::Request("/chat".into())]);
    assert_eq!(left, text("early").len(), "a frame waits for the answer");
    assert_eq!(conn.state(), State::Deciding);
    conn.accept(&Upgrade { key: "dGhlIHNhbXBsZSBub25jZQ==", ..Upgrade::default() }, 0, &mut wire)
        .expect("valid");
    let (got, _) = feed(&mut conn, &text("early"), &mut wire, 0);
    assert_eq!(got, vec![Got::Text("early".into())]);
}

#[test]
fn a_partial_request_needs_more_and_a_bad_one_is_answered_and_closed() {
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    let (got, left) = feed(&mut conn, &REQUEST[..40], &mut wire, 0);
    assert_eq!((got, left), (vec![], 40));
    let (got, _) = feed(&mut conn, b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", &mut wire, 0);
    assert_eq!(got, vec![Got::BadHandshake(405)]);
    assert!(wire.out.starts_with(b"HTTP/1.1 405"));
    assert_eq!(conn.state(), State::Closing);
    wire.out.clear();
    assert_eq!(feed(&mut conn, REQUEST, &mut wire, 0), (vec![], 0), "ignored from now on");
    assert!(wire.out.is_empty());
}

#[test]
fn a_request_head_over_the_limit_gets_431() {
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    let limits = Limits { max_head_size: 64, ..Limits::default() };
    let (got, _) = feed_with(&mut conn, REQUEST, &mut wire, 0, &limits, &mut Vec::new());
    assert_eq!(got, vec![Got::BadHandshake(431)]);
}

#[test]
fn a_rejected_upgrade_answers_with_the_status_and_closes() {
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    feed(&mut conn, REQUEST, &mut wire, 0);
    conn.reject(403, "origin not allowed", &[("X-Why", "policy")], 0, &mut wire);
    assert!(wire.out.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(conn.state(), State::Closing);
    // Headers that would inject lines make it a plain 500.
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    feed(&mut conn, REQUEST, &mut wire, 0);
    conn.reject(403, "no", &[("X-A", "1\r\nX-B: 2")], 0, &mut wire);
    assert!(wire.out.starts_with(b"HTTP/1.1 500"));
    // An invalid 101 header leaves the request waiting for an answer.
    let mut conn = Connection::server(0);
    feed(&mut conn, REQUEST, &mut Wire::new(), 0);
    let bad = Upgrade { key: "k", protocol: Some("a b"), ..Upgrade::default() };
    assert!(conn.accept(&bad, 0, &mut wire).is_err());
    assert_eq!(conn.state(), State::Deciding);
}

#[test]
fn a_whole_frame_is_handed_out_borrowed_from_the_input() {
    let (mut conn, mut wire) = open(None);
    let mut buf = text("hello");
    let range = buf.as_ptr_range();
    let mut message = Vec::new();
    let step = conn.handle_input(&mut buf, &mut message, &Limits::default(), 1, &mut wire);
    let Input::Progress { consumed: 11, event: Some(Event::Message(Message::Text(t))) } = step
    else {
        panic!("{step:?}")
    };
    assert_eq!(t, "hello");
    assert!(range.contains(&t.as_ptr()), "zero-copy");
    let (got, _) = feed(&mut conn, &frame(0x2, true, false, &[0, 1, 2]), &mut wire, 1);
    assert_eq!(got, vec![Got::Binary(vec![0, 1, 2])]);
}

#[test]
fn fragments_are_reassembled_with_controls_between_them_at_every_cut() {
    let mut input = frame(0x1, false, false, "hé".as_bytes());
    input.extend(frame(0x9, true, false, b"p"));
    input.extend(frame(0x0, false, false, b"l"));
    input.extend(frame(0x0, true, false, b"lo"));
    for cut in 0..=input.len() {
        let (mut conn, mut wire) = open(None);
        let mut message = Vec::new();
        let limits = Limits::default();
        let (mut got, left) =
            feed_with(&mut conn, &input[..cut], &mut wire, 1, &limits, &mut message);
        let mut rest = input[cut - left..].to_vec();
        let (more, left) =
            feed_with(&mut conn, &rest.split_off(0), &mut wire, 1, &limits, &mut message);
        got.extend(more);
        assert_eq!(left, 0);
        assert_eq!(got, vec![Got::Ping(b"p".to_vec()), Got::Text("héllo".into())], "cut at {cut}");
        assert_eq!(
            wire.frames(),
            vec![(OpCode::Pong, b"p".to_vec())],
            "the pong echoes the payload"
        );
    }
}

#[test]
fn framing_violations_fail_with_1002() {
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    fails_with(&unmasked, 1002);
    fails_with(
        &frame(0x1, true, false, b"x")
            .iter()
            .enumerate()
            .map(|(i, b)| if i == 0 { b | 0x20 } else { *b })
            .collect::<Vec<_>>(),
        1002,
    );
    fails_with(&frame(0x1, true, true, b"x"), 1002); // RSV1 without compression
    fails_with(&frame(0x3, true, false, b""), 1002); // reserved opcode
    fails_with(&frame(0xb, true, false, b""), 1002);
    fails_with(&frame(0x9, true, false, &[0; 126]), 1002); // control frame too long
    fails_with(&frame(0x9, false, false, b""), 1002); // fragmented control frame
    fails_with(&frame(0x0, true, false, b"x"), 1002); // continuation of nothing
    let mut two = frame(0x1, false, false, b"a");
    two.extend(text("b"));
    fails_with(&two, 1002); // a new message inside a fragmented one
    fails_with(&frame(0x8, true, false, &[0x03]), 1002); // 1-byte close payload
    fails_with(&frame(0x8, true, false, &[0x03, 0xed]), 1002); // 1005 may not be sent
    fails_with(&frame(0x8, true, false, &[0x03, 0xe7]), 1002); // 999
}

#[test]
fn invalid_utf8_fails_with_1007_as_soon_as_it_arrives() {
    fails_with(&frame(0x1, true, false, &[0xff]), 1007);
    let mut close = vec![0x03, 0xe8];
    close.push(0xc3);
    fails_with(&frame(0x8, true, false, &close), 1007);
    // Fragmented: the first bad fragment fails, before the message ends.
    let (mut conn, mut wire) = open(None);
    let (got, _) = feed(&mut conn, &frame(0x1, false, false, &[b'a', 0xc0, 0x80]), &mut wire, 1);
    assert_eq!(got, vec![Got::Failed(1007, false)]);
    // A code point split across fragments is fine.
    let (mut conn, mut wire) = open(None);
    let mut input = frame(0x1, false, false, &"€".as_bytes()[..1]);
    input.extend(frame(0x0, true, false, &"€".as_bytes()[1..]));
    assert_eq!(feed(&mut conn, &input, &mut wire, 1).0, vec![Got::Text("€".into())]);
}

#[test]
fn a_message_over_the_limit_fails_with_1009_at_its_header() {
    let (mut conn, mut wire) = open(None);
    let limits = Limits { max_message_size: 10, ..Limits::default() };
    let header_only = &frame(0x2, true, false, &[0; 11])[..6];
    let (got, _) = feed_with(&mut conn, header_only, &mut wire, 1, &limits, &mut Vec::new());
    assert_eq!(got, vec![Got::Failed(1009, false)]);
    // Across fragments too.
    let (mut conn, mut wire) = open(None);
    let mut input = frame(0x2, false, false, &[0; 6]);
    input.extend(&frame(0x0, true, false, &[0; 5])[..6]);
    let (got, _) = feed_with(&mut conn, &input, &mut wire, 1, &limits, &mut Vec::new());
    assert_eq!(got, vec![Got::Failed(1009, false)]);
}

#[test]
fn a_message_outgrowing_the_room_fails_with_1009_and_frees_its_buffer() {
    let (mut conn, mut wire) = open(None);
    wire.room = 100;
    let mut message = Vec::new();
    let limits = Limits::default();
    let input = frame(0x2, false, false, &[7; 64]);
    assert_eq!(feed_with(&mut conn, &input, &mut wire, 1, &limits, &mut message).0, vec![]);
    let more = frame(0x0, true, false, &[7; 200]);
    let (got, _) = feed_with(&mut conn, &more, &mut wire, 1, &limits, &mut message);
    assert_eq!(got, vec![Got::Failed(1009, true)]);
    assert_eq!(message.capacity(), 0);
    assert_eq!(wire.frames()[0].1, [&[0x03, 0xf1][..], b"server memory limit"].concat());
}

#[test]
fn the_peer_closing_gets_its_code_echoed() {
    let (mut conn, mut wire) = open(None);
    let (got, _) = feed(&mut conn, &frame(0x8, true, false, b"\x03\xe8bye"), &mut wire, 1);
    assert_eq!(got, vec![Got::Close(1000, "bye".into())]);
    assert_eq!(wire.frames(), vec![(OpCode::Close, vec![0x03, 0xe8])]);
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.send(OpCode::Text, false, b"late", 1, &mut wire));
    // An empty close gets an empty reply.
    let (mut conn, mut wire) = open(None);
    let (got, _) = feed(&mut conn, &frame(0x8, true, false, b""), &mut wire, 1);
    assert_eq!(got, vec![Got::Close(1005, String::new())]);
    assert_eq!(wire.out, [0x88, 0x00]);
}

#[test]
fn our_close_waits_for_the_answer_and_delivers_nothing_meanwhile() {
    let (mut conn, mut wire) = open(None);
    assert!(conn.close(CloseCode::NORMAL, "done", 5, &mut wire));
    assert!(!conn.close(CloseCode::NORMAL, "again", 5, &mut wire));
    assert_eq!(wire.frames(), vec![(OpCode::Close, b"\x03\xe8done".to_vec())]);
    assert_eq!((conn.state(), conn.close_code()), (State::Closing, CloseCode::NORMAL));
    let mut input = text("late");
    input.extend(frame(0x9, true, false, b"p"));
    input.extend(frame(0x8, true, false, b"\x03\xe8"));
    let (got, _) = feed(&mut conn, &input, &mut wire, 6);
    assert_eq!(got, vec![Got::Ping(b"p".to_vec())], "no message, no close event");
    assert!(wire.out.is_empty(), "no pong while closing");
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn sends_are_server_frames_only_while_open() {
    let mut conn = Connection::server(0);
    let mut wire = Wire::new();
    assert!(!conn.send(OpCode::Text, false, b"x", 0, &mut wire));
    let (mut conn, mut wire) = open(None);
    assert!(conn.send(OpCode::Binary, false, &[1; 300], 1, &mut wire));
    assert_eq!(&wire.out[..4], &[0x82, 126, 0x01, 0x2c]);
    assert_eq!(wire.frames(), vec![(OpCode::Binary, vec![1; 300])]);
}

#[test]
fn compressed_messages_are_inflated_and_held_to_the_limits() {
    let agreed = crate::proto::deflate::Negotiated::default();
    let mut z = Compressor::for_client(&agreed, 6);
    let mut deflated = Vec::new();
    z.compress("compressed text, compressed text".as_bytes(), &mut deflated);
    let (mut conn, mut wire) = open(Some("permessage-deflate"));
    wire.inflater = Some(Decompressor::for_server(&agreed));
    let (got, _) = feed(&mut conn, &frame(0x1, true, true, &deflated), &mut wire, 1);
    assert_eq!(got, vec![Got::Text("compressed text, compressed text".into())]);
    // Split in two fragments.
    let mut input = frame(0x1, false, true, &deflated[..3]);
    input.extend(frame(0x0, true, false, &deflated[3..]));
    let mut z2 = Compressor::for_client(&agreed, 6);
    let mut d2 = Vec::new();
    z2.compress("compressed text, compressed text".as_bytes(), &mut d2);
    let mut input = frame(0x1, false, true, &d2[..3]);
    input.extend(frame(0x0, true, false, &d2[3..]));
    let (got, _) = feed(&mut conn, &input, &mut wire, 1);
    assert_eq!(got, vec![Got::Text("compressed text, compressed text".into())]);
    // Inflated past the limit: 1009; past the room: 1009, over budget.
    let limits = Limits { max_message_size: 8, ..Limits::default() };
    let mut z3 = Compressor::for_client(&agreed, 6);
    let mut d3 = Vec::new();
    z3.compress(&[b'a'; 64], &mut d3);
    let (got, _) =
        feed_with(&mut conn, &frame(0x2, true, true, &d3), &mut wire, 1, &limits, &mut Vec::new());
    assert_eq!(got, vec![Got::Failed(1009, false)]);
    let (mut conn, mut wire) = open(Some("permessage-deflate"));
    wire.inflater = Some(Decompressor::for_server(&agreed));
    wire.room = 16;
    let (got, _) = feed(&mut conn, &frame(0x2, true, true, &d3), &mut wire, 1);
    assert_eq!(got, vec![Got::Failed(1009, true)]);
    // Invalid UTF-8, once inflated: 1007.
    let (mut conn, mut wire) = open(Some("permessage-deflate"));
    wire.inflater = Some(Decompressor::for_server(&agreed));
    let mut z4 = Compressor::for_client(&agreed, 6);
    let mut d4 = Vec::new();
    z4.compress(&[0xff, 0xfe], &mut d4);
    assert_eq!(
        feed(&mut conn, &frame(0x1, true, true, &d4), &mut wire, 1).0,
        vec![Got::Failed(1007, false)]
    );
}

const T: Timeouts = Timeouts { handshake: 100, ping: 300, pong: 100, idle: 0, close: 50 };

#[test]
fn a_ping_goes_out_at_the_interval_and_silence_after_it_expires() {
    let (mut conn, mut wire) = open(None);
    assert_eq!(conn.poll_timeout(&T, None), Some(300));
    assert_eq!(conn.handle_timeout(299, &T, None, &mut wire), Timeout::Nothing);
    assert_eq!(conn.handle_timeout(300, &T, None, &mut wire), Timeout::Ping);
    assert_eq!(wire.out, [0x89, 0x00]);
    assert!(conn.awaiting_pong());
    assert_eq!(conn.poll_timeout(&T, None), Some(400), "the pong deadline");
    assert_eq!(conn.handle_timeout(399, &T, None, &mut wire), Timeout::Nothing);
    assert_eq!(conn.handle_timeout(400, &T, None, &mut wire), Timeout::Expired(Expiry::Pong));
}

#[test]
fn any_input_answers_a_ping() {
    let (mut conn, mut wire) = open(None);
    conn.handle_timeout(300, &T, None, &mut wire);
    let (got, _) = feed(&mut conn, &text("x"), &mut wire, 350);
    assert_eq!(got, vec![Got::Text("x".into())]);
    assert!(!conn.awaiting_pong());
    assert_eq!(conn.poll_timeout(&T, None), Some(650));
    assert_eq!(conn.handle_timeout(400, &T, None, &mut wire), Timeout::Nothing);
}

#[test]
fn the_idle_timeout_closes_with_1001_and_pings_do_not_count() {
    let t = Timeouts { idle: 500, ..T };
    let (mut conn, mut wire) = open(None);
    feed(&mut conn, &text("x"), &mut wire, 100);
    assert_eq!(conn.poll_timeout(&t, None), Some(400), "the ping comes first");
    conn.handle_timeout(400, &t, None, &mut wire);
    feed(&mut conn, &frame(0xa, true, false, b""), &mut wire, 450); // a pong: not a message
    assert_eq!(conn.poll_timeout(&t, None), Some(600));
    assert!(conn.sent(550)); // our own message counts
    assert_eq!(conn.handle_timeout(600, &t, None, &mut wire), Timeout::Nothing);
    wire.out.clear();
    assert_eq!(conn.handle_timeout(1050, &t, None, &mut wire), Timeout::Idle);
    assert_eq!(wire.frames(), vec![(OpCode::Close, b"\x03\xe9idle timeout".to_vec())]);
    assert_eq!(conn.state(), State::Closing);
}

#[test]
fn the_close_timeout_counts_from_the_close_or_from_output_progress() {
    let (mut conn, mut wire) = open(None);
    conn.close(CloseCode::NORMAL, "", 1000, &mut wire);
    assert_eq!(conn.poll_timeout(&T, None), Some(1050));
    assert_eq!(conn.poll_timeout(&T, Some(1030)), Some(1080), "a backlog still moving");
    assert_eq!(conn.handle_timeout(1050, &T, Some(1030), &mut wire), Timeout::Nothing);
    assert_eq!(
        conn.handle_timeout(1080, &T, Some(1030), &mut wire),
        Timeout::Expired(Expiry::Close)
    );
    // After the peer's close too, until the transport is done.
    let (mut conn, mut wire) = open(None);
    feed(&mut conn, &frame(0x8, true, false, b""), &mut wire, 10);
    assert_eq!(conn.poll_timeout(&T, None), Some(60));
}

#[test]
fn the_handshake_timeout_runs_until_the_answer() {
    let mut conn = Connection::server(u32::MAX - 10); // across the wrap-around
    let mut wire = Wire::new();
    assert_eq!(conn.poll_timeout(&T, None), Some(89));
    assert_eq!(conn.handle_timeout(88, &T, None, &mut wire), Timeout::Nothing);
    assert_eq!(conn.handle_timeout(89, &T, None, &mut wire), Timeout::Expired(Expiry::Handshake));
    let mut conn = Connection::server(0);
    feed(&mut conn, REQUEST, &mut wire, 0);
    assert_eq!(conn.handle_timeout(100, &T, None, &mut wire), Timeout::Expired(Expiry::Handshake));
    assert_eq!(Connection::server(0).poll_timeout(&Timeouts::default(), None), None, "all off");
}

#[test]
fn a_client_masks_what_it_sends_and_reads_unmasked_frames() {
    struct ClientWire(Vec<u8>);
    impl Io for ClientWire {
        fn transmit(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
            self.0.transmit(len, write);
        }
        fn mask_key(&mut self) -> [u8; 4] {
            [9, 8, 7, 6]
        }
    }
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut conn = Connection::client(0);
    let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let limits = Limits::default();
    assert_eq!(
        conn.handle_response(&response[..20], key, &limits, 0).ok().flatten().map(|r| r.1),
        None
    );
    let (_, n) = conn.handle_response(response, key, &limits, 0).ok().flatten().expect("accepted");
    assert_eq!((n, conn.state()), (response.len(), State::Open));
    let mut io = ClientWire(Vec::new());
    assert!(conn.send(OpCode::Text, false, b"hi", 1, &mut io));
    // The server's decoder reads it back.
    let mut dec = Decoder::new();
    let got = dec.decode(&mut io.0, &DecoderConfig::default());
    assert_eq!(
        got,
        Ok(Decoded::Progress { consumed: 8, event: Some(super::super::Event::Text("hi")) })
    );
    let mut from_server = vec![0x81, 0x02, b'o', b'k'];
    let mut message = Vec::new();
    let step = conn.handle_input(&mut from_server, &mut message, &limits, 1, &mut io);
    assert!(matches!(
        step,
        Input::Progress { event: Some(Event::Message(Message::Text("ok"))), .. }
    ));
    // A masked server frame fails the connection.
    let mut masked = text("no");
    let step = conn.handle_input(&mut masked, &mut message, &limits, 1, &mut io);
    assert!(matches!(step, Input::Progress { event: Some(Event::Failed(_)), .. }));
}

#[test]
fn a_stream_cut_anywhere_gives_the_messages_of_the_whole() {
    let mut rng = Rng(0x5eed);
    for round in 0..200 {
        let mut input = Vec::new();
        let mut want = Vec::new();
        for _ in 0..rng.below(8) + 1 {
            let len = rng.below(300);
            let payload: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
            if rng.below(3) == 0 {
                // Fragmented into up to four pieces, a ping among them.
                let cut = payload.len() / 2;
                input.extend(frame(0x2, false, false, &payload[..cut]));
                input.extend(frame(0x9, true, false, b"."));
                input.extend(frame(0x0, true, false, &payload[cut..]));
                want.push(Got::Ping(b".".to_vec()));
            } else {
                input.extend(frame(0x2, true, false, &payload));
            }
            want.push(Got::Binary(payload));
        }
        let (mut conn, mut wire) = open(None);
        let mut message = Vec::new();
        let limits = Limits::default();
        let mut got = Vec::new();
        let mut carry = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = (rng.below(64) + 1).min(rest.len());
            carry.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            let (events, left) = feed_with(&mut conn, &carry, &mut wire, 1, &limits, &mut message);
            got.extend(events);
            carry.drain(..carry.len() - left);
        }
        assert_eq!(got, want, "round {round}");
    }
}

#[test]
fn a_connection_is_small() {
    assert!(std::mem::size_of::<Connection>() <= 32, "{}", std::mem::size_of::<Connection>());
}

#[test]
fn every_length_class_arrives_whole_even_one_byte_at_a_time() {
    for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let input = frame(0x2, true, false, &payload);
        let (mut conn, mut wire) = open(None);
        assert_eq!(feed(&mut conn, &input, &mut wire, 1).0, vec![Got::Binary(payload.clone())]);
        if len > 200 {
            continue; // byte by byte: the small ones cover every header form
        }
        let (mut conn, mut wire) = open(None);
        let (mut message, limits, mut carry, mut got) =
            (Vec::new(), Limits::default(), Vec::new(), Vec::new());
        for b in &input {
            carry.push(*b);
            let (events, left) = feed_with(&mut conn, &carry, &mut wire, 1, &limits, &mut message);
            got.extend(events);
            carry.drain(..carry.len() - left);
        }
        assert_eq!(got, vec![Got::Binary(payload)], "{len} bytes, one at a time");
    }
}

#[test]
fn every_close_code_a_peer_may_send_is_echoed() {
    for code in
        [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
    {
        let (mut conn, mut wire) = open(None);
        let (got, _) = feed(&mut conn, &frame(0x8, true, false, &code.to_be_bytes()), &mut wire, 1);
        assert_eq!(got, vec![Got::Close(code, String::new())]);
        assert_eq!(wire.frames(), vec![(OpCode::Close, code.to_be_bytes().to_vec())]);
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        fails_with(&frame(0x8, true, false, &code.to_be_bytes()), 1002);
    }
}

#[test]
fn our_close_reason_is_cut_to_fit_a_control_frame() {
    let (mut conn, mut wire) = open(None);
    let long = "é".repeat(100); // 200 bytes
    conn.close(CloseCode::NORMAL, &long, 1, &mut wire);
    let frames = wire.frames();
    let payload = &frames[0].1;
    assert!(payload.len() <= 125, "{}", payload.len());
    assert!(std::str::from_utf8(&payload[2..]).is_ok(), "cut at a character boundary");
}
