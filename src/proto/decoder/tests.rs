//! The decoder against every framing rule of RFC 6455 §5.

use super::*;
use crate::proto::frame::{MAX_HEADER_LEN, encode_header};
use crate::testing::Rng;

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// One frame; masked with `mask`, the payload as the peer would send it.
fn frame(fin: bool, rsv1: bool, op: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut header, fin, rsv1, op, payload.len() as u64, mask);
    let mut out = header[..n].to_vec();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[n..], key, 0);
    }
    out
}

/// A client frame (masked).
fn c(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    frame(fin, false, op, payload, Some(KEY))
}

/// A whole client message in one frame.
fn whole(op: OpCode, payload: &[u8]) -> Vec<u8> {
    c(true, op, payload)
}

/// A client frame with raw bits or'ed into its first byte (RSV2/3, reserved opcodes).
fn with_bits(mut f: Vec<u8>, bits: u8) -> Vec<u8> {
    f[0] |= bits;
    f
}

/// What the caller reassembles.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Compressed { text: bool, data: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// A message being assembled from fragments: text, compressed, bytes.
type Assembly = Option<(bool, bool, Vec<u8>)>;

/// Plays the caller: buffers input, decodes until `NeedMore`, drains what
/// was consumed and assembles fragments into messages.
struct Caller {
    dec: Decoder,
    cfg: DecoderConfig,
    pending: Vec<u8>,
    assembly: Assembly,
    msgs: Vec<Msg>,
    error: Option<ProtoError>,
}

impl Caller {
    fn new(cfg: DecoderConfig) -> Self {
        Caller {
            dec: Decoder::new(),
            cfg,
            pending: Vec::new(),
            assembly: None,
            msgs: Vec::new(),
            error: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            let consumed = match self.dec.decode(&mut self.pending, &self.cfg) {
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Progress { consumed, event }) => {
                    assert!(consumed > 0, "no progress: {event:?}");
                    if let Some(msg) = event.and_then(|e| assemble(&mut self.assembly, e)) {
                        self.msgs.push(msg);
                    }
                    consumed
                }
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            };
            self.pending.drain(..consumed);
        }
        // What a caller must keep: part of a header, or of a control frame.
        assert!(self.pending.len() < MAX_HEADER_LEN + 125, "kept {}", self.pending.len());
        assert_eq!(self.dec.in_message(), self.assembly.is_some());
    }
}

/// Applies one event to the message being assembled; returns a finished message.
fn assemble(assembly: &mut Assembly, event: Event<'_>) -> Option<Msg> {
    match event {
        Event::Text(s) => {
            assert!(assembly.is_none(), "whole message inside another");
            Some(Msg::Text(s.to_owned()))
        }
        Event::Binary(b) => {
            assert!(assembly.is_none(), "whole message inside another");
            Some(Msg::Binary(b.to_vec()))
        }
        Event::Fragment { data, first, fin, text, compressed } => {
            let buf = match assembly {
                None => {
                    assert!(first, "a message must start with its first piece");
                    &mut assembly.insert((text, compressed, Vec::new())).2
                }
                Some((t, z, buf)) => {
                    assert!(!first, "first piece of a message inside another");
                    assert_eq!((*t, *z), (text, compressed), "flags changed mid-message");
                    buf
                }
            };
            buf.extend_from_slice(data);
            if !fin {
                return None;
            }
            let (text, compressed, data) = assembly.take()?;
            Some(match (text, compressed) {
                (_, true) => Msg::Compressed { text, data },
                (true, false) => Msg::Text(String::from_utf8(data).expect("validated")),
                (false, false) => Msg::Binary(data),
            })
        }
        Event::Ping(p) => Some(Msg::Ping(p.to_vec())),
        Event::Pong(p) => Some(Msg::Pong(p.to_vec())),
        Event::Close(code, reason) => Some(Msg::Close(code.0, reason.to_owned())),
    }
}

/// Feeds `stream` whole, one byte at a time and in random-sized chunks;
/// asserts all give the same messages and error, and returns them.
fn decode_all(stream: &[u8], cfg: DecoderConfig) -> (Vec<Msg>, Option<ProtoError>) {
    let mut whole = Caller::new(cfg);
    whole.push(stream);
    let mut bytes = Caller::new(cfg);
    for b in stream {
        bytes.push(std::slice::from_ref(b));
    }
    assert_eq!((&bytes.msgs, bytes.error), (&whole.msgs, whole.error), "one byte at a time");
    for seed in 1..6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut chunks = Caller::new(cfg);
        let mut rest = stream;
        while !rest.is_empty() {
            let max = [3, 20, 200, 5000][rng.next() as usize % 4];
            let (chunk, tail) = rest.split_at((rng.next() % max) as usize % (rest.len() + 1));
            chunks.push(chunk);
            rest = tail;
        }
        assert_eq!((&chunks.msgs, chunks.error), (&whole.msgs, whole.error), "seed {seed}");
    }
    (whole.msgs, whole.error)
}

fn server() -> DecoderConfig {
    DecoderConfig::default()
}

fn ok(stream: &[u8]) -> Vec<Msg> {
    let (msgs, err) = decode_all(stream, server());
    assert_eq!(err, None);
    msgs
}

fn err(stream: &[u8]) -> ProtoError {
    err_with(stream, server())
}

fn err_with(stream: &[u8], cfg: DecoderConfig) -> ProtoError {
    decode_all(stream, cfg).1.expect("should fail")
}

fn text(s: &str) -> Msg {
    Msg::Text(s.to_owned())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// Frames of every kind, each with the message it must give.
fn every_kind() -> Vec<(Vec<u8>, Vec<Msg>)> {
    let mut kinds = vec![
        (whole(OpCode::Text, b"Hello"), vec![text("Hello")]),
        (whole(OpCode::Text, "κόσμε €𝄞".as_bytes()), vec![text("κόσμε €𝄞")]),
        (whole(OpCode::Binary, &[0, 1, 2, 0xFF]), vec![Msg::Binary(vec![0, 1, 2, 0xFF])]),
        (whole(OpCode::Text, b""), vec![text("")]),
        (whole(OpCode::Binary, b""), vec![Msg::Binary(vec![])]),
        (whole(OpCode::Ping, b""), vec![Msg::Ping(vec![])]),
        (whole(OpCode::Ping, b"are you there"), vec![Msg::Ping(b"are you there".to_vec())]),
        (whole(OpCode::Pong, &pattern(125)), vec![Msg::Pong(pattern(125))]),
        (whole(OpCode::Close, b""), vec![Msg::Close(1005, String::new())]),
        (whole(OpCode::Close, b"\x03\xE8"), vec![Msg::Close(1000, String::new())]),
        (whole(OpCode::Close, b"\x0F\xA0bye \xE2\x82\xAC"), vec![Msg::Close(4000, "bye €".into())]),
    ];
    for len in [125, 126, 127, 65535, 65536, 70000] {
        let bin = pattern(len);
        kinds.push((whole(OpCode::Binary, &bin), vec![Msg::Binary(bin)]));
        let s: String = "ab€".chars().cycle().take(len).collect();
        kinds.push((whole(OpCode::Text, s.as_bytes()), vec![text(&s)]));
    }
    // Fragmented text, split inside multi-byte characters, pings between fragments.
    let s = "fragmented: κόσμε, 日本語, 😀 and the end";
    let b = s.as_bytes();
    let mut stream = c(false, OpCode::Text, &b[..14]);
    stream.extend(whole(OpCode::Ping, b"1"));
    stream.extend(c(false, OpCode::Continuation, &b[14..27]));
    stream.extend(whole(OpCode::Ping, b"2"));
    stream.extend(whole(OpCode::Pong, b""));
    stream.extend(c(false, OpCode::Continuation, &b[27..]));
    stream.extend(c(true, OpCode::Continuation, b""));
    let pings = [Msg::Ping(b"1".to_vec()), Msg::Ping(b"2".to_vec()), Msg::Pong(vec![])];
    kinds.push((stream, [&pings[..], &[text(s)]].concat()));
    // Fragmented binary starting with an empty frame, a close in between.
    let bin = pattern(70000);
    let mut stream = c(false, OpCode::Binary, b"");
    stream.extend(c(false, OpCode::Continuation, &bin[..126]));
    stream.extend(whole(OpCode::Close, b"\x03\xE9"));
    stream.extend(c(false, OpCode::Continuation, &bin[126..65662]));
    stream.extend(c(true, OpCode::Continuation, &bin[65662..]));
    kinds.push((stream, vec![Msg::Close(1001, String::new()), Msg::Binary(bin)]));
    // A message of one empty fragment... and of one non-empty FIN continuation.
    let mut stream = c(false, OpCode::Text, b"");
    stream.extend(c(true, OpCode::Continuation, b""));
    stream.extend(c(false, OpCode::Binary, b"x"));
    stream.extend(c(true, OpCode::Continuation, b"y"));
    kinds.push((stream, vec![text(""), Msg::Binary(b"xy".to_vec())]));
    kinds
}

#[test]
fn every_frame_kind_decodes_the_same_however_it_is_fed() {
    let mut all = (Vec::new(), Vec::new());
    for (stream, expect) in every_kind() {
        assert_eq!(ok(&stream), expect);
        all.0.extend(stream);
        all.1.extend(expect);
    }
    assert_eq!(ok(&all.0), all.1);
}

#[test]
fn mask_key_changes_per_frame() {
    let mut stream = frame(true, false, OpCode::Text, b"one", Some([0; 4]));
    stream.extend(frame(false, false, OpCode::Binary, b"two", Some([1, 2, 3, 4])));
    stream.extend(frame(true, false, OpCode::Continuation, b"three", Some([0xFF; 4])));
    assert_eq!(ok(&stream), [text("one"), Msg::Binary(b"twothree".to_vec())]);
}

#[test]
fn client_role_takes_unmasked_frames() {
    let cfg = DecoderConfig { role: Role::Client, ..server() };
    let mut stream = frame(true, false, OpCode::Text, b"hi", None);
    stream.extend(frame(false, false, OpCode::Binary, &pattern(300), None));
    stream.extend(frame(true, false, OpCode::Ping, b"p", None));
    stream.extend(frame(true, false, OpCode::Continuation, b"!", None));
    stream.extend(frame(true, false, OpCode::Close, b"\x03\xE8", None));
    let (msgs, err) = decode_all(&stream, cfg);
    let bin = [pattern(300), b"!".to_vec()].concat();
    let expect =
        [text("hi"), Msg::Ping(b"p".to_vec()), Msg::Binary(bin), Msg::Close(1000, "".into())];
    assert_eq!((msgs, err), (expect.to_vec(), None));
    // A masked frame from a server is an error.
    assert_eq!(err_with(&whole(OpCode::Text, b"hi"), cfg), ProtoError::BadMask);
}

#[test]
fn whole_frames_take_the_zero_copy_path() {
    let cfg = server();
    let mut dec = Decoder::new();
    let mut buf = whole(OpCode::Text, b"hello");
    buf.extend(whole(OpCode::Binary, b"bin"));
    let r = dec.decode(&mut buf, &cfg);
    assert_eq!(r, Ok(Decoded::Progress { consumed: 11, event: Some(Event::Text("hello")) }));
    let r = dec.decode(&mut buf[11..], &cfg);
    assert_eq!(r, Ok(Decoded::Progress { consumed: 9, event: Some(Event::Binary(b"bin")) }));
    assert_eq!(dec.decode(&mut [], &cfg), Ok(Decoded::NeedMore));
    assert!(!dec.in_message());
}

#[test]
fn partial_frames_stream() {
    let cfg = server();
    let mut dec = Decoder::new();
    let mut buf = whole(OpCode::Binary, &pattern(1000));
    // Part of the header: nothing consumed.
    assert_eq!(dec.decode(&mut buf[..7], &cfg), Ok(Decoded::NeedMore));
    // The header alone is consumed without an event.
    assert_eq!(dec.decode(&mut buf[..8], &cfg), Ok(Decoded::Progress { consumed: 8, event: None }));
    assert!(!dec.in_message(), "nothing of the message delivered yet");
    assert_eq!(dec.decode(&mut [], &cfg), Ok(Decoded::NeedMore));
    let expect =
        |data, first, fin| Event::Fragment { data, first, fin, text: false, compressed: false };
    let want = pattern(1000);
    let r = dec.decode(&mut buf[8..508], &cfg);
    let event = Some(expect(&want[..500], true, false));
    assert_eq!(r, Ok(Decoded::Progress { consumed: 500, event }));
    assert!(dec.in_message());
    // More bytes than the frame: only the frame's are taken.
    buf.extend(whole(OpCode::Ping, b""));
    let r = dec.decode(&mut buf[508..], &cfg);
    let event = Some(expect(&want[500..], false, true));
    assert_eq!(r, Ok(Decoded::Progress { consumed: 500, event }));
    assert!(!dec.in_message());
    let r = dec.decode(&mut buf[1008..], &cfg);
    assert_eq!(r, Ok(Decoded::Progress { consumed: 6, event: Some(Event::Ping(b"")) }));
}

#[test]
fn empty_fragments_carry_first_and_fin() {
    let cfg = server();
    let mut dec = Decoder::new();
    let mut buf = c(false, OpCode::Text, b"");
    let r = dec.decode(&mut buf, &cfg);
    let event =
        Event::Fragment { data: b"", first: true, fin: false, text: true, compressed: false };
    assert_eq!(r, Ok(Decoded::Progress { consumed: 6, event: Some(event) }));
    let mut buf = c(true, OpCode::Continuation, b"");
    let r = dec.decode(&mut buf, &cfg);
    let event =
        Event::Fragment { data: b"", first: false, fin: true, text: true, compressed: false };
    assert_eq!(r, Ok(Decoded::Progress { consumed: 6, event: Some(event) }));
}

#[test]
fn control_frames_wait_until_whole() {
    let cfg = server();
    let mut dec = Decoder::new();
    let frame = whole(OpCode::Ping, &pattern(125));
    for cut in 0..frame.len() {
        let mut buf = frame[..cut].to_vec();
        assert_eq!(dec.decode(&mut buf, &cfg), Ok(Decoded::NeedMore));
        assert_eq!(buf, frame[..cut], "not unmasked before it is whole");
    }
    let mut buf = frame.clone();
    let want = pattern(125);
    let r = dec.decode(&mut buf, &cfg);
    assert_eq!(r, Ok(Decoded::Progress { consumed: 131, event: Some(Event::Ping(&want)) }));
}

#[test]
fn masking_by_role() {
    let unmasked = frame(true, false, OpCode::Text, b"hi", None);
    assert_eq!(err(&unmasked), ProtoError::BadMask);
    assert_eq!(err(&frame(true, false, OpCode::Ping, b"", None)), ProtoError::BadMask);
    let client = DecoderConfig { role: Role::Client, ..server() };
    assert_eq!(err_with(&whole(OpCode::Close, b""), client), ProtoError::BadMask);
}

#[test]
fn reserved_bits() {
    for bits in [0x10, 0x20, 0x30, 0x70] {
        assert_eq!(err(&with_bits(whole(OpCode::Text, b"x"), bits)), ProtoError::ReservedBits);
        assert_eq!(err(&with_bits(whole(OpCode::Ping, b""), bits)), ProtoError::ReservedBits);
    }
    let deflate = DecoderConfig { allow_rsv1: true, ..server() };
    // RSV1 without permessage-deflate.
    let compressed = frame(true, true, OpCode::Text, b"x", Some(KEY));
    assert_eq!(err(&compressed), ProtoError::ReservedBits);
    // RSV2/3 even with it.
    assert_eq!(err_with(&with_bits(compressed, 0x20), deflate), ProtoError::ReservedBits);
    // RSV1 on a control frame or a continuation, even with it.
    let ping = frame(true, true, OpCode::Ping, b"", Some(KEY));
    assert_eq!(err_with(&ping, deflate), ProtoError::ReservedBits);
    let close = frame(true, true, OpCode::Close, b"", Some(KEY));
    assert_eq!(err_with(&close, deflate), ProtoError::ReservedBits);
    let mut stream = frame(false, true, OpCode::Binary, b"a", Some(KEY));
    stream.extend(frame(true, true, OpCode::Continuation, b"b", Some(KEY)));
    assert_eq!(err_with(&stream, deflate), ProtoError::ReservedBits);
}

#[test]
fn reserved_opcodes_and_lengths() {
    for op in (3..=7).chain(0xB..=0xF) {
        let f = with_bits(whole(OpCode::Continuation, b"x"), op);
        assert_eq!(err(&f), ProtoError::UnknownOpcode(op));
    }
    let bad_len = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_eq!(err(&bad_len), ProtoError::BadLength);
}

#[test]
fn control_frame_rules() {
    // 126 bytes, sent with the 16-bit length: failed on the header.
    let long = whole(OpCode::Ping, &pattern(126));
    assert_eq!(err(&long[..8]), ProtoError::ControlTooLong);
    assert_eq!(err(&whole(OpCode::Close, &pattern(200))), ProtoError::ControlTooLong);
    assert_eq!(err(&c(false, OpCode::Ping, b"")), ProtoError::ControlFragmented);
    assert_eq!(err(&c(false, OpCode::Pong, b"x")), ProtoError::ControlFragmented);
    assert_eq!(err(&c(false, OpCode::Close, b"")), ProtoError::ControlFragmented);
}

#[test]
fn continuation_rules() {
    assert_eq!(err(&c(true, OpCode::Continuation, b"x")), ProtoError::UnexpectedContinuation);
    assert_eq!(err(&c(false, OpCode::Continuation, b"")), ProtoError::UnexpectedContinuation);
    // A finished fragmented message does not leave one open.
    let mut stream = c(false, OpCode::Text, b"a");
    stream.extend(c(true, OpCode::Continuation, b"b"));
    stream.extend(c(true, OpCode::Continuation, b"c"));
    let (msgs, error) = decode_all(&stream, server());
    assert_eq!((msgs, error), (vec![text("ab")], Some(ProtoError::UnexpectedContinuation)));
    for op in [OpCode::Text, OpCode::Binary] {
        for fin in [false, true] {
            let mut stream = c(false, OpCode::Binary, b"a");
            stream.extend(c(fin, op, b"b"));
            assert_eq!(err(&stream), ProtoError::ExpectedContinuation);
        }
    }
}

#[test]
fn close_payload_rules() {
    assert_eq!(err(&whole(OpCode::Close, b"\x03")), ProtoError::BadClosePayload);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let f = whole(OpCode::Close, &code.to_be_bytes());
        assert_eq!(err(&f), ProtoError::InvalidCloseCode(code));
    }
    assert_eq!(
        err(&whole(OpCode::Close, b"\x03\xE8\xCE\xBA\xED\xA0\x80")),
        ProtoError::InvalidUtf8
    );
}

#[test]
fn message_size_is_checked_on_the_header() {
    let cfg = DecoderConfig { max_message_size: 1000, ..server() };
    let (msgs, e) = decode_all(&whole(OpCode::Binary, &pattern(1000)), cfg);
    assert_eq!((msgs, e), (vec![Msg::Binary(pattern(1000))], None));
    // Only the header of a too-big frame: fails before its payload.
    let big = whole(OpCode::Binary, &pattern(1001));
    assert_eq!(err_with(&big[..8], cfg), ProtoError::MessageTooBig);
    assert_eq!(err_with(&big, cfg), ProtoError::MessageTooBig);
    let huge = [0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4];
    assert_eq!(err_with(&huge, cfg), ProtoError::MessageTooBig);
    // Across fragments: the sum of the frames counts.
    let mut stream = c(false, OpCode::Text, &[b'a'; 600]);
    stream.extend(whole(OpCode::Ping, b""));
    stream.extend(c(false, OpCode::Continuation, &[b'b'; 400]));
    stream.extend(c(true, OpCode::Continuation, b""));
    let (msgs, e) = decode_all(&stream, cfg);
    let s = "a".repeat(600) + &"b".repeat(400);
    assert_eq!((msgs, e), (vec![Msg::Ping(vec![]), text(&s)], None));
    let mut stream = c(false, OpCode::Text, &[b'a'; 600]);
    stream.extend(c(true, OpCode::Continuation, &[b'b'; 401]));
    assert_eq!(err_with(&stream[..616], cfg), ProtoError::MessageTooBig);
    // The count starts again with the next message.
    let mut stream = c(false, OpCode::Binary, &[1; 600]);
    stream.extend(c(true, OpCode::Continuation, &[2; 400]));
    stream.extend(c(false, OpCode::Binary, &[3; 1000]));
    stream.extend(c(true, OpCode::Continuation, b""));
    assert_eq!(decode_all(&stream, cfg).1, None);
    // Compressed messages count their compressed size, against the limit
    // plus what deflate may add to data that does not compress (1000 +
    // 1000 / 8192 + 64 = 1064 here), across their frames too.
    let deflate = DecoderConfig { allow_rsv1: true, ..cfg };
    let mut stream = frame(false, true, OpCode::Binary, &[0; 999], Some(KEY));
    stream.extend(c(true, OpCode::Continuation, &[0; 66]));
    assert_eq!(err_with(&stream, deflate), ProtoError::MessageTooBig);
}

#[test]
fn invalid_utf8_in_a_whole_frame() {
    assert_eq!(err(&whole(OpCode::Text, b"bad \xC0\xAF")), ProtoError::InvalidUtf8);
    assert_eq!(err(&whole(OpCode::Text, b"cut \xE2\x82")), ProtoError::InvalidUtf8);
    // Binary is not checked.
    assert_eq!(ok(&whole(OpCode::Binary, b"\xC0\xAF")), [Msg::Binary(b"\xC0\xAF".to_vec())]);
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_byte_mid_frame() {
    // "κόσμε" then U+110000 (F4 90 80 80) then more text, in a 1000-byte frame.
    let mut payload = b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90\x80\x80".to_vec();
    payload.resize(1000, b'x');
    let f = whole(OpCode::Text, &payload);
    let header = 8;
    // Up to the F4 the stream is fine; the byte after it fails, long before the frame ends.
    let mut caller = Caller::new(server());
    caller.push(&f[..header + 12]);
    assert_eq!(caller.error, None);
    caller.push(&f[header + 12..header + 13]);
    assert_eq!(caller.error, Some(ProtoError::InvalidUtf8));
    assert_eq!(err(&f), ProtoError::InvalidUtf8);
}

#[test]
fn utf8_across_fragments() {
    let euro = "€".as_bytes();
    // A code point split between frames, with a ping between the halves.
    let mut stream = c(false, OpCode::Text, &euro[..1]);
    stream.extend(whole(OpCode::Ping, b""));
    stream.extend(c(false, OpCode::Continuation, &euro[1..2]));
    stream.extend(c(true, OpCode::Continuation, &euro[2..]));
    assert_eq!(ok(&stream), [Msg::Ping(vec![]), text("€")]);
    // A surrogate split between frames fails on the continuation's first byte.
    let mut stream = c(false, OpCode::Text, b"\xED");
    stream.extend(c(true, OpCode::Continuation, b"\xA0\x80"));
    let mut caller = Caller::new(server());
    caller.push(&stream[..stream.len() - 2]);
    assert_eq!(caller.error, None);
    caller.push(&stream[stream.len() - 2..stream.len() - 1]);
    assert_eq!(caller.error, Some(ProtoError::InvalidUtf8));
    // A message may not end inside a code point.
    let mut stream = c(false, OpCode::Text, b"ok");
    stream.extend(c(true, OpCode::Continuation, &euro[..2]));
    assert_eq!(err(&stream), ProtoError::InvalidUtf8);
    // Nor a single streamed frame.
    let mut payload = vec![b'a'; 300];
    payload.extend_from_slice(&euro[..1]);
    let f = whole(OpCode::Text, &payload);
    let mut caller = Caller::new(server());
    caller.push(&f[..100]);
    assert_eq!(caller.error, None);
    caller.push(&f[100..]);
    assert_eq!(caller.error, Some(ProtoError::InvalidUtf8));
}

#[test]
fn compressed_messages_are_not_validated_here() {
    let deflate = DecoderConfig { allow_rsv1: true, ..server() };
    let mut stream = frame(true, true, OpCode::Text, b"\xFF\x00", Some(KEY));
    stream.extend(frame(false, true, OpCode::Text, b"\xC0", Some(KEY)));
    stream.extend(whole(OpCode::Pong, b""));
    stream.extend(c(true, OpCode::Continuation, b"\xAF"));
    stream.extend(frame(true, true, OpCode::Binary, b"", Some(KEY)));
    stream.extend(whole(OpCode::Text, b"plain"));
    let (msgs, e) = decode_all(&stream, deflate);
    let expect = [
        Msg::Compressed { text: true, data: vec![0xFF, 0] },
        Msg::Pong(vec![]),
        Msg::Compressed { text: true, data: vec![0xC0, 0xAF] },
        Msg::Compressed { text: false, data: vec![] },
        text("plain"),
    ];
    assert_eq!((msgs, e), (expect.to_vec(), None));
    // A whole compressed frame is still a fragment, flagged as such.
    let mut dec = Decoder::new();
    let mut buf = frame(true, true, OpCode::Binary, b"z", Some(KEY));
    let event =
        Event::Fragment { data: b"z", first: true, fin: true, text: false, compressed: true };
    assert_eq!(
        dec.decode(&mut buf, &deflate),
        Ok(Decoded::Progress { consumed: 7, event: Some(event) })
    );
}

#[test]
fn validation_order() {
    let deflate = DecoderConfig { allow_rsv1: true, ..server() };
    // Unmasked + RSV2 + too-long ping: masking first.
    let f = with_bits(frame(false, true, OpCode::Ping, &pattern(200), None), 0x20);
    assert_eq!(err(&f), ProtoError::BadMask);
    // RSV bits before control-frame limits.
    let f = frame(false, true, OpCode::Ping, &pattern(200), Some(KEY));
    assert_eq!(err_with(&f, deflate), ProtoError::ReservedBits);
    // Too long before not-FIN.
    assert_eq!(err(&c(false, OpCode::Pong, &pattern(126))), ProtoError::ControlTooLong);
    // Continuation rules before the size.
    let tiny = DecoderConfig { max_message_size: 1, ..server() };
    assert_eq!(
        err_with(&c(true, OpCode::Continuation, b"xx"), tiny),
        ProtoError::UnexpectedContinuation
    );
}

#[test]
fn garbage_never_panics_nor_stalls() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let valid: Vec<u8> =
        every_kind().into_iter().flat_map(|(stream, _)| stream).take(20_000).collect();
    for round in 0..300 {
        let mut input = if round % 2 == 0 {
            (0..rng.next() % 3000).map(|_| rng.next() as u8).collect()
        } else {
            let mut v = valid.clone();
            for _ in 0..1 + rng.next() % 8 {
                let i = rng.next() as usize % v.len();
                v[i] = rng.next() as u8;
            }
            v
        };
        for role in [Role::Server, Role::Client] {
            let cfg = DecoderConfig { role, max_message_size: 4096, allow_rsv1: round % 3 == 0 };
            let mut dec = Decoder::new();
            let mut at = 0;
            // Keep calling after errors too: no panic, and progress or NeedMore.
            for _ in 0..input.len() + 10 {
                let left = input.len() - at;
                match dec.decode(&mut input[at..], &cfg) {
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::Progress { consumed, event }) => {
                        assert!(consumed > 0 && consumed <= left, "{event:?}");
                        at += consumed;
                    }
                    Err(_) => at += 1,
                }
                if at >= input.len() {
                    break;
                }
            }
        }
    }
}

#[test]
fn decoder_is_small() {
    assert!(std::mem::size_of::<Decoder>() <= 20, "{}", std::mem::size_of::<Decoder>());
}

#[test]
fn a_compressed_message_may_be_a_little_bigger_on_the_wire_than_the_limit() {
    let cfg =
        DecoderConfig { max_message_size: 1000, allow_rsv1: true, ..DecoderConfig::default() };
    let mut h = [0u8; MAX_HEADER_LEN];
    let key = Some([1, 2, 3, 4]);
    // 1,010 bytes of deflate can carry 1,000 bytes of random data.
    let n = encode_header(&mut h, true, true, OpCode::Binary, 1010, key);
    assert!(matches!(Decoder::new().decode(&mut h[..n], &cfg), Ok(Decoded::Progress { .. })));
    let n = encode_header(&mut h, true, true, OpCode::Binary, 1100, key);
    assert_eq!(Decoder::new().decode(&mut h[..n], &cfg), Err(ProtoError::MessageTooBig));
    // Uncompressed, the limit is exact.
    let n = encode_header(&mut h, true, false, OpCode::Binary, 1001, key);
    assert_eq!(Decoder::new().decode(&mut h[..n], &cfg), Err(ProtoError::MessageTooBig));
}

#[test]
fn messages_past_4_gib_are_too_big_whatever_the_config() {
    let cfg = DecoderConfig { max_message_size: usize::MAX, ..DecoderConfig::default() };
    let mut d = Decoder::new();
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, false, OpCode::Binary, 1 << 32, Some([1, 2, 3, 4]));
    assert_eq!(d.decode(&mut h[..n], &cfg), Err(ProtoError::MessageTooBig));
}
