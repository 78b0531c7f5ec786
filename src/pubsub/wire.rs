//! Deliveries on the wire: each publish is encoded once, with its topic and
//! sequence number, into one shared [`Frame`]. See the [module
//! docs](crate::pubsub) for the formats.

use std::cell::RefCell;
use std::fmt;
use std::thread::LocalKey;

use super::topic::{MAX_TOPIC_LEN, TopicError, TopicName, is_topic_byte};
use crate::message::{Frame, Message};

/// First byte of a binary delivery: `[0x01][topic_len][topic][seq: u64 BE][payload]`.
pub const BIN_DELIVERY: u8 = 0x01;
/// First byte of a binary publish whose payload is delivered as binary:
/// `[0x02][topic_len][topic][payload]`.
pub const BIN_PUBLISH_BINARY: u8 = 0x02;
/// First byte of a binary publish whose payload is UTF-8 text, delivered in
/// the JSON envelope like any text publish: `[0x03][topic_len][topic][text]`.
pub const BIN_PUBLISH_TEXT: u8 = 0x03;

/// The fixed part of a binary delivery: type, topic length, and the 8-byte seq.
pub const BIN_DELIVERY_OVERHEAD: usize = 1 + 1 + 8;

/// A publish payload, inspected once: text that is valid JSON (embedded raw),
/// other text (embedded as a JSON string), or binary.
///
/// Building one from text runs the JSON check; do it once per publish, not
/// once per subscriber (the store does it outside its locks).
///
/// ```
/// use wsreactor::Message;
/// use wsreactor::pubsub::wire::Payload;
///
/// assert!(Payload::new(Message::Text(r#"{"bid":1.5}"#)).is_json());
/// assert!(!Payload::new(Message::Text("plain words")).is_json());
/// assert!(Payload::new(Message::Binary(&[1, 2, 3])).is_binary());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    kind: Kind<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    /// Valid JSON, embedded as is.
    Json(&'a str),
    /// Other text, embedded as a JSON string of `quoted_len` bytes (quotes included).
    Text { text: &'a str, quoted_len: usize },
    /// Bytes for a binary delivery.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// Inspects a message: text is checked for JSON, binary stays binary.
    pub fn new(msg: Message<'a>) -> Payload<'a> {
        match msg {
            Message::Text(t) => Payload::text(t),
            Message::Binary(b) => Payload::binary(b),
        }
    }

    /// Text: embedded raw if it is one valid JSON value (RFC 8259, surrounding
    /// whitespace allowed), else as a JSON string.
    pub fn text(text: &'a str) -> Payload<'a> {
        if is_json(text) {
            Payload { kind: Kind::Json(text) }
        } else {
            Payload { kind: Kind::Text { text, quoted_len: json_string_len(text) } }
        }
    }

    /// Bytes, delivered as a binary frame.
    pub fn binary(bytes: &'a [u8]) -> Payload<'a> {
        Payload { kind: Kind::Binary(bytes) }
    }

    /// JSON text that has already been validated (e.g. a `&RawValue` that
    /// serde_json parsed). Passing anything else breaks the envelope.
    pub(crate) fn json_prevalidated(json: &'a str) -> Payload<'a> {
        debug_assert!(is_json(json), "not JSON: {json:?}");
        Payload { kind: Kind::Json(json) }
    }

    /// Text that the caller guarantees is one valid JSON value (a feed that
    /// formats its own JSON, say), embedded raw without the check (about
    /// 100 ns for a 150-byte tick). Checked in debug builds only: in release
    /// builds anything else makes a delivery that clients cannot parse.
    ///
    /// ```
    /// use wsreactor::pubsub::wire::Payload;
    /// assert!(Payload::json_trusted(r#"{"bid":1.5}"#).is_json());
    /// ```
    pub fn json_trusted(json: &'a str) -> Payload<'a> {
        Payload::json_prevalidated(json)
    }

    /// Whether the payload is embedded raw as JSON.
    pub fn is_json(&self) -> bool {
        matches!(self.kind, Kind::Json(_))
    }

    /// Whether the payload goes out as a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self.kind, Kind::Binary(_))
    }

    /// The payload's own bytes (before any envelope or escaping).
    pub fn as_bytes(&self) -> &'a [u8] {
        match self.kind {
            Kind::Json(s) | Kind::Text { text: s, .. } => s.as_bytes(),
            Kind::Binary(b) => b,
        }
    }

    /// The length of the delivery message (the WebSocket payload, without the
    /// frame header) for `topic` and `seq`.
    pub fn delivery_len(&self, topic: &TopicName, seq: u64) -> usize {
        match self.kind {
            Kind::Json(s) => text_envelope_len(topic, seq) + s.len(),
            Kind::Text { quoted_len, .. } => text_envelope_len(topic, seq) + quoted_len,
            Kind::Binary(b) => BIN_DELIVERY_OVERHEAD + topic.len() + b.len(),
        }
    }
}

/// Whether `text` is exactly one JSON value (surrounding whitespace allowed).
///
/// A syntax check only: numbers are not converted, strings not unescaped
/// (so numbers of any size pass, and so do `\u` escapes of lone
/// surrogates, which the grammar allows). It is iterative: any depth of
/// nesting passes without growing the call stack (levels past 64 cost one
/// heap byte each). It agrees with serde_json (tested on random documents)
/// and runs about a quarter fewer instructions. Producers that always emit
/// JSON can skip it with [`Payload::json_trusted`].
///
/// ```
/// use wsreactor::pubsub::wire::is_json;
/// assert!(is_json(r#" {"a":[1,2.5e10,null,"x\n"]} "#));
/// assert!(is_json("123456789012345678901234567890"));
/// assert!(!is_json("{'a':1}") && !is_json("[1,]") && !is_json("") && !is_json("1 2"));
/// ```
pub fn is_json(text: &str) -> bool {
    super::json::is_json(text)
}

/// `{"topic":` + `,"seq":` + `,"data":` + `}`.
const ENVELOPE_FIXED: usize = 9 + 7 + 8 + 1;

fn text_envelope_len(topic: &TopicName, seq: u64) -> usize {
    ENVELOPE_FIXED + json_string_len(topic.as_str()) + decimal_len(seq)
}

/// Encodes one delivery of `payload` on `topic` with sequence number `seq`
/// as a complete server frame, shared by every subscriber.
///
/// Text payloads become the text frame
/// `{"topic":"<topic>","seq":<seq>,"data":<payload>}`; binary ones the binary
/// frame `[0x01][topic_len][topic][seq: u64 BE][payload]`.
///
/// ```
/// use wsreactor::Message;
/// use wsreactor::pubsub::TopicName;
/// use wsreactor::pubsub::wire::{encode_delivery, text_delivery, Payload};
///
/// let topic = TopicName::new("md.BTC-USD")?;
/// let tick = Payload::new(Message::Text(r#"{"bid":101.5}"#));
/// let frame = encode_delivery(&topic, 42, &tick);
/// assert_eq!(
///     text_delivery(&topic, 42, &tick).as_deref(),
///     Some(r#"{"topic":"md.BTC-USD","seq":42,"data":{"bid":101.5}}"#)
/// );
/// # let _ = frame;
/// # Ok::<(), wsreactor::pubsub::TopicError>(())
/// ```
pub fn encode_delivery(topic: &TopicName, seq: u64, payload: &Payload<'_>) -> Frame {
    match payload.kind {
        Kind::Binary(bytes) => with_scratch(&BYTES_SCRATCH, |buf: &mut Vec<u8>| {
            write_binary_delivery(buf, topic, seq, bytes);
            Frame::new(Message::Binary(buf))
        }),
        _ => with_scratch(&TEXT_SCRATCH, |buf: &mut String| {
            buf.reserve(payload.delivery_len(topic, seq));
            write_text_delivery(buf, topic, seq, payload);
            Frame::new(Message::Text(buf))
        }),
    }
}

/// The text of a text delivery, as [`encode_delivery`] frames it; `None` for a
/// binary payload. For tests, logs and clients that build their own frames.
pub fn text_delivery(topic: &TopicName, seq: u64, payload: &Payload<'_>) -> Option<String> {
    if payload.is_binary() {
        return None;
    }
    let mut s = String::with_capacity(payload.delivery_len(topic, seq));
    write_text_delivery(&mut s, topic, seq, payload);
    Some(s)
}

fn write_text_delivery(out: &mut String, topic: &TopicName, seq: u64, payload: &Payload<'_>) {
    out.push_str("{\"topic\":");
    write_json_string(out, topic.as_str());
    out.push_str(",\"seq\":");
    write_decimal(out, seq);
    out.push_str(",\"data\":");
    match payload.kind {
        Kind::Json(s) => out.push_str(s),
        Kind::Text { text, .. } => write_json_string(out, text),
        Kind::Binary(_) => unreachable!("binary payloads have no text envelope"),
    }
    out.push('}');
}

fn write_binary_delivery(out: &mut Vec<u8>, topic: &TopicName, seq: u64, payload: &[u8]) {
    out.reserve(BIN_DELIVERY_OVERHEAD + topic.len() + payload.len());
    out.push(BIN_DELIVERY);
    // A TopicName is at most MAX_TOPIC_LEN (255) bytes.
    out.push(topic.len() as u8);
    out.extend_from_slice(topic.as_str().as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Why a binary message does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The message is empty.
    Empty,
    /// The first byte is not the expected type.
    UnknownType(u8),
    /// The message ends inside its header.
    Truncated,
    /// The topic in the header is not a valid topic name.
    BadTopic(TopicError),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Empty => f.write_str("empty binary message"),
            WireError::UnknownType(t) => write!(f, "unknown binary message type 0x{t:02x}"),
            WireError::Truncated => f.write_str("binary message ends inside its header"),
            WireError::BadTopic(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WireError {}

/// A decoded binary delivery, borrowing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryDelivery<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The per-topic sequence number.
    pub seq: u64,
    /// The published bytes.
    pub payload: &'a [u8],
}

/// Decodes a binary delivery (the WebSocket message payload a client
/// received): `[0x01][topic_len][topic][seq: u64 BE][payload]`.
///
/// ```
/// use wsreactor::pubsub::wire::{decode_binary_delivery, WireError};
///
/// let msg = [&[0x01, 3][..], b"a.b", &7u64.to_be_bytes(), &[0xDE, 0xAD]].concat();
/// let d = decode_binary_delivery(&msg)?;
/// assert_eq!((d.topic, d.seq, d.payload), ("a.b", 7, &[0xDE, 0xAD][..]));
/// assert_eq!(decode_binary_delivery(&msg[..6]), Err(WireError::Truncated));
/// # Ok::<(), WireError>(())
/// ```
pub fn decode_binary_delivery(msg: &[u8]) -> Result<BinaryDelivery<'_>, WireError> {
    let rest = match msg.split_first() {
        None => return Err(WireError::Empty),
        Some((&BIN_DELIVERY, rest)) => rest,
        Some((&t, _)) => return Err(WireError::UnknownType(t)),
    };
    let (topic, rest) = split_topic(rest)?;
    let (seq, payload) = rest.split_first_chunk::<8>().ok_or(WireError::Truncated)?;
    Ok(BinaryDelivery { topic, seq: u64::from_be_bytes(*seq), payload })
}

/// Splits `[topic_len][topic]` off the front of `bytes`, validating the topic
/// against the charset and [`MAX_TOPIC_LEN`].
pub(crate) fn split_topic(bytes: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let (&len, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
    let len = usize::from(len);
    if len == 0 {
        return Err(WireError::BadTopic(TopicError::Empty));
    }
    if rest.len() < len {
        return Err(WireError::Truncated);
    }
    let (topic, rest) = rest.split_at(len);
    if let Some(at) = topic.iter().position(|&b| !is_topic_byte(b)) {
        return Err(WireError::BadTopic(TopicError::BadByte { at }));
    }
    debug_assert!(len <= MAX_TOPIC_LEN);
    // Only ASCII is left, so this cannot fail.
    let topic = std::str::from_utf8(topic).map_err(|_| WireError::BadTopic(TopicError::Empty))?;
    Ok((topic, rest))
}

/// Appends a binary publish message (what a publisher connection sends) for
/// `topic` to `out`: `[0x02][topic_len][topic][bytes]` for a binary payload,
/// `[0x03][topic_len][topic][text]` for a text payload.
///
/// ```
/// use wsreactor::Message;
/// use wsreactor::pubsub::TopicName;
/// use wsreactor::pubsub::wire::encode_binary_publish;
///
/// let mut out = Vec::new();
/// encode_binary_publish(&mut out, &TopicName::new("a.b")?, Message::Binary(&[9]));
/// assert_eq!(out, [0x02, 3, b'a', b'.', b'b', 9]);
/// # Ok::<(), wsreactor::pubsub::TopicError>(())
/// ```
pub fn encode_binary_publish(out: &mut Vec<u8>, topic: &TopicName, payload: Message<'_>) {
    let kind = if payload.is_text() { BIN_PUBLISH_TEXT } else { BIN_PUBLISH_BINARY };
    out.reserve(2 + topic.len() + payload.len());
    out.push(kind);
    out.push(topic.len() as u8);
    out.extend_from_slice(topic.as_str().as_bytes());
    out.extend_from_slice(payload.as_bytes());
}

/// Which bytes need escaping inside a JSON string: `"`, `\` and controls.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The length of `s` written as a JSON string, quotes included.
pub(crate) fn json_string_len(s: &str) -> usize {
    s.bytes().fold(2, |n, b| {
        n + match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0C => 2,
            0..0x20 => 6,
            _ => 1,
        }
    })
}

/// Appends `s` as a JSON string (quotes included): `"` and `\` and the
/// control characters are escaped, everything else (all non-ASCII
/// included) is copied as is.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // Every byte that needs escaping is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The number of decimal digits of `v`.
pub(crate) fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Appends `v` in decimal.
pub(crate) fn write_decimal(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// Scratch buffers bigger than this are dropped after use rather than kept
/// by the thread.
const SCRATCH_KEEP: usize = 64 << 10;

thread_local! {
    static TEXT_SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    static BYTES_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A reusable buffer.
trait Scratch: Default {
    fn clear(&mut self);
    fn capacity(&self) -> usize;
}

impl Scratch for String {
    fn clear(&mut self) {
        String::clear(self);
    }
    fn capacity(&self) -> usize {
        String::capacity(self)
    }
}

impl Scratch for Vec<u8> {
    fn clear(&mut self) {
        Vec::clear(self);
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
}

/// Runs `f` on this thread's scratch buffer in `key`, emptied (on a fresh
/// buffer if that one is busy or gone), so building a frame costs no
/// allocation of its own. A buffer that grew past [`SCRATCH_KEEP`] is freed.
fn with_scratch<B: Scratch + 'static, R>(
    key: &'static LocalKey<RefCell<B>>,
    f: impl FnOnce(&mut B) -> R,
) -> R {
    let mut f = Some(f);
    let reused = key.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        let f = f.take()?;
        buf.clear();
        let r = f(&mut buf);
        if buf.capacity() > SCRATCH_KEEP {
            *buf = B::default();
        }
        Some(r)
    });
    match (reused, f) {
        (Ok(Some(r)), _) => r,
        (_, Some(f)) => f(&mut B::default()),
        // `f` was taken only to produce `Some(r)`.
        (_, None) => unreachable!("scratch closure consumed without a result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::OpCode;
    use serde::de::IgnoredAny;
    use serde_json::Value;

    fn topic(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    use crate::pubsub::frame_body as open;

    fn text_of(t: &TopicName, seq: u64, data: &str) -> String {
        let p = Payload::text(data);
        let frame = encode_delivery(t, seq, &p);
        let (op, body) = open(&frame);
        assert_eq!(op, OpCode::Text);
        let s = String::from_utf8(body).unwrap();
        assert_eq!(s.len(), p.delivery_len(t, seq), "{s}");
        assert_eq!(text_delivery(t, seq, &p).as_deref(), Some(&s[..]));
        s
    }

    #[test]
    fn json_payload_is_embedded_raw() {
        let t = topic("md.BTC-USD");
        let tick = r#"{"type":"tick","symbol":"BTC-USD","bid":64123.5,"ask":64124.0}"#;
        let s = text_of(&t, 42, tick);
        assert_eq!(s, format!(r#"{{"topic":"md.BTC-USD","seq":42,"data":{tick}}}"#));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["data"]["bid"], 64123.5);
        // Scalars, whitespace, huge numbers, unicode and escapes stay byte-identical.
        for data in [
            "1",
            "-0.5e-300",
            "true",
            "null",
            "\"\"",
            " [ 1 , 2 ] \n",
            "123456789012345678901234567890123456789",
            "1e999",
            r#""caf\u00e9 😀 \"q\" \\ \n""#,
            r#"{"k":"é","k":"dup keys are valid JSON"}"#,
            r#""\ud800""#,
        ] {
            let s = text_of(&t, 1, data);
            assert!(s.ends_with(&format!(",\"data\":{data}}}")), "{s}");
            serde_json::from_str::<IgnoredAny>(&s).unwrap();
        }
    }

    #[test]
    fn other_text_becomes_a_json_string() {
        let t = topic("chat/room:1");
        for data in [
            "",
            "hello",
            "{'a':1}",
            "[1,]",
            "1 2",
            "NaN",
            "\"unterminated",
            "tab\there \"quoted\" back\\slash\nnl\r\u{0}\u{1f}\u{7f}\u{8}\u{c}",
            "ünïcödé 😀 \u{2028}",
            "{\"a\":\"raw\ncontrol\"}",
            "// comment\n1",
        ] {
            let p = Payload::text(data);
            assert!(!p.is_json(), "{data:?}");
            let s = text_of(&t, 7, data);
            let v: Value = serde_json::from_str(&s).unwrap();
            assert_eq!(v["data"], Value::String(data.to_owned()), "{s}");
            assert_eq!(v["topic"], "chat/room:1");
            assert_eq!(v["seq"], 7);
        }
        let s = text_of(&t, 0, "a\u{1}\"");
        assert_eq!(s, r#"{"topic":"chat/room:1","seq":0,"data":"a\u0001\""}"#);
    }

    #[test]
    fn deep_nesting_is_json_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(is_json(&deep));
        let s = text_of(&topic("a"), 1, &deep);
        assert!(s.starts_with(r#"{"topic":"a","seq":1,"data":[[["#));
        assert!(is_json(&s));
        let unbalanced = format!("{}{}", "[".repeat(100_000), "]".repeat(99_999));
        assert!(!is_json(&unbalanced));
    }

    #[test]
    fn seq_extremes() {
        let t = topic("a");
        for seq in [0, 1, 9, 10, 99, 100, 12345, u64::MAX / 10, u64::MAX] {
            let s = text_of(&t, seq, "1");
            assert_eq!(s, format!(r#"{{"topic":"a","seq":{seq},"data":1}}"#));
            assert_eq!(decimal_len(seq), seq.to_string().len());
        }
    }

    #[test]
    fn large_payload_frames_and_scratch_release() {
        let t = topic("big");
        let data = format!("\"{}\"", "x".repeat(200_000));
        let s = text_of(&t, 3, &data);
        assert_eq!(s.len(), 200_002 + r#"{"topic":"big","seq":3,"data":}"#.len());
        // The big scratch buffer was not kept.
        TEXT_SCRATCH.with(|c| assert!(c.borrow().capacity() <= SCRATCH_KEEP));
        let bytes = vec![7u8; 100_000];
        let f = encode_delivery(&t, 3, &Payload::binary(&bytes));
        assert_eq!(open(&f).1.len(), BIN_DELIVERY_OVERHEAD + 3 + 100_000);
        BYTES_SCRATCH.with(|c| assert!(c.borrow().capacity() <= SCRATCH_KEEP));
    }

    #[test]
    fn binary_round_trip() {
        let t = TopicName::with_max_len(&"t.".repeat(128)[..255], 255).unwrap();
        assert_eq!(t.len(), 255);
        for payload in [&[][..], &[0u8][..], &[1, 2, 3, 0xFF][..]] {
            for seq in [0, 1, 0x0102_0304_0506_0708, u64::MAX] {
                let p = Payload::new(Message::Binary(payload));
                let f = encode_delivery(&t, seq, &p);
                let (op, body) = open(&f);
                assert_eq!(op, OpCode::Binary);
                assert_eq!(body.len(), p.delivery_len(&t, seq));
                assert_eq!(body[0], BIN_DELIVERY);
                assert_eq!(usize::from(body[1]), t.len());
                let d = decode_binary_delivery(&body).unwrap();
                assert_eq!((d.topic, d.seq, d.payload), (t.as_str(), seq, payload));
                assert_eq!(text_delivery(&t, seq, &p), None);
            }
        }
        let body = {
            let f = encode_delivery(&topic("a.b"), 0x0102_0304_0506_0708, &Payload::binary(b"xy"));
            open(&f).1
        };
        assert_eq!(body, [1, 3, b'a', b'.', b'b', 1, 2, 3, 4, 5, 6, 7, 8, b'x', b'y']);
    }

    #[test]
    fn binary_decode_errors() {
        assert_eq!(decode_binary_delivery(&[]), Err(WireError::Empty));
        assert_eq!(decode_binary_delivery(&[2, 1, b'a']), Err(WireError::UnknownType(2)));
        assert_eq!(decode_binary_delivery(&[1]), Err(WireError::Truncated));
        assert_eq!(decode_binary_delivery(&[1, 0]), Err(WireError::BadTopic(TopicError::Empty)));
        assert_eq!(decode_binary_delivery(&[1, 3, b'a']), Err(WireError::Truncated));
        assert_eq!(
            decode_binary_delivery(&[1, 2, b'a', b' ', 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadTopic(TopicError::BadByte { at: 1 }))
        );
        assert_eq!(
            decode_binary_delivery(&[1, 2, b'a', 0xC3, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadTopic(TopicError::BadByte { at: 1 }))
        );
        assert_eq!(decode_binary_delivery(&[1, 1, b'a', 0, 0, 0]), Err(WireError::Truncated));
        let ok = [1, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(decode_binary_delivery(&ok).map(|d| d.seq), Ok(9));
        assert!(WireError::UnknownType(0x7f).to_string().contains("0x7f"));
    }

    #[test]
    fn binary_publish_encoding() {
        let t = topic("md.X");
        let mut out = Vec::new();
        encode_binary_publish(&mut out, &t, Message::Text("{}"));
        assert_eq!(out, [&[BIN_PUBLISH_TEXT, 4][..], b"md.X{}"].concat());
        out.clear();
        encode_binary_publish(&mut out, &t, Message::Binary(&[]));
        assert_eq!(out, [&[BIN_PUBLISH_BINARY, 4][..], b"md.X"].concat());
    }

    #[test]
    fn json_string_escaping_matches_serde() {
        let mut all = String::new();
        for c in (0u32..0x300).chain([0x2028, 0x2029, 0xFFFF, 0x1F600]) {
            if let Some(c) = char::from_u32(c) {
                all.push(c);
            }
        }
        for s in ["", "plain", &all, "\"\\", "\u{7f}"] {
            let mut out = String::new();
            write_json_string(&mut out, s);
            assert_eq!(out.len(), json_string_len(s));
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn decimal_writer() {
        for v in [0, 7, 10, 1_000_000, u64::MAX] {
            let mut s = String::new();
            write_decimal(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn payload_accessors() {
        let p = Payload::new(Message::Text("[1]"));
        assert_eq!((p.is_json(), p.is_binary(), p.as_bytes()), (true, false, &b"[1]"[..]));
        let p = Payload::new(Message::Text("x"));
        assert_eq!((p.is_json(), p.is_binary(), p.as_bytes()), (false, false, &b"x"[..]));
        let p = Payload::binary(b"x");
        assert_eq!((p.is_json(), p.is_binary(), p.as_bytes()), (false, true, &b"x"[..]));
        let p = Payload::json_prevalidated("{}");
        assert!(p.is_json());
    }
}
