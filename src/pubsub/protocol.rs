//! The client control protocol: requests parsed from text (JSON) and binary
//! messages, replies and errors written as JSON. See the [module
//! docs](crate::pubsub) for the reference.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::store::StoreError;
use super::topic::{DEFAULT_MAX_TOPIC_LEN, TopicError, TopicName, validate_topic};
use super::wire::{
    BIN_PUBLISH_BINARY, BIN_PUBLISH_TEXT, Payload, WireError, split_topic, write_decimal,
    write_json_string,
};
use crate::message::Message;
use crate::proto::CloseCode;

/// The close code for a connection that keeps sending bad requests (see
/// [`ErrorStreak`]): 1008, policy violation.
pub const ABUSE_CLOSE_CODE: CloseCode = CloseCode::POLICY;

/// The close reason sent with [`ABUSE_CLOSE_CODE`].
pub const ABUSE_CLOSE_REASON: &str = "too many bad requests";

/// The longest request id echoed back, in bytes of JSON text.
pub const MAX_ID_LEN: usize = 64;

/// Per-connection limits of the control protocol.
///
/// ```
/// use wsreactor::pubsub::Limits;
/// let limits = Limits { max_topics_per_conn: 10_000, ..Limits::default() };
/// # let _ = limits;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest topic name, in bytes (at most 255). Default 128.
    pub max_topic_len: usize,
    /// The most topics in one subscribe or unsubscribe. Default 64.
    pub max_topics_per_op: usize,
    /// The most topics one connection may hold ([`ConnTopics`]). Default 256.
    pub max_topics_per_conn: usize,
    /// The longest text request (JSON), in bytes; longer ones are refused
    /// with `too_large` unparsed. This also caps the `data` of a JSON
    /// publish. Default 64 KiB. The topic server makes it the message size
    /// limit of each connection that may not publish
    /// ([`Ctx::set_max_message_size`](crate::Ctx::set_max_message_size)),
    /// so a longer message from one closes it with 1009 at its frame
    /// header, before the payload arrives.
    pub max_op_len: usize,
    /// The longest binary publish message, in bytes. Default 1 MiB. The
    /// larger of this and `max_op_len` is a publisher's message size limit.
    pub max_publish_len: usize,
    /// How many failed requests in a row are tolerated; one more and the
    /// connection is abusive ([`ErrorStreak`]). Default 16.
    pub max_errors_in_a_row: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_topic_len: DEFAULT_MAX_TOPIC_LEN,
            max_topics_per_op: 64,
            max_topics_per_conn: 256,
            max_op_len: 64 << 10,
            max_publish_len: 1 << 20,
            max_errors_in_a_row: 16,
        }
    }
}

/// The machine-readable kind of an [`OpError`], sent as its `"code"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `bad_json`: the text is not well-formed JSON.
    BadJson,
    /// `bad_request`: well-formed JSON of the wrong shape (not an object, a
    /// missing field, a field of the wrong type, a duplicate field), or a
    /// malformed binary message.
    BadRequest,
    /// `unknown_op`: the `"op"` is not one this server knows.
    UnknownOp,
    /// `bad_topic`: a topic name is empty or has a character outside the set.
    BadTopic,
    /// `topic_too_long`: a topic name is over the length cap.
    TopicTooLong,
    /// `too_many_topics`: too many topics in one request, or for one connection.
    TooManyTopics,
    /// `unauthorized`: publishing from a connection that may not publish.
    Unauthorized,
    /// `too_large`: the request is over its size cap.
    TooLarge,
    /// `store_full`: publishing would create a topic beyond the server's cap.
    StoreFull,
}

impl ErrorCode {
    /// The code as sent on the wire.
    ///
    /// ```
    /// use wsreactor::pubsub::ErrorCode;
    /// assert_eq!(ErrorCode::TooManyTopics.as_str(), "too_many_topics");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::TopicTooLong => "topic_too_long",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::StoreFull => "store_full",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request id as the client sent it: the raw JSON text of a string or a
/// number (at most [`MAX_ID_LEN`] bytes), echoed back verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId<'a>(&'a str);

impl<'a> RequestId<'a> {
    /// The id's JSON text, e.g. `"\"r1\""` or `"7"`.
    pub fn as_json(&self) -> &'a str {
        self.0
    }
}

/// A refused request: sent back as
/// `{"op":"error","id":..?,"code":"...","message":"...","topic":"..."?}`.
///
/// ```
/// use wsreactor::pubsub::{parse_client_op, ErrorCode, Limits};
///
/// let err = parse_client_op(r#"{"op":"jump","id":3}"#, &Limits::default()).unwrap_err();
/// assert_eq!(err.code(), ErrorCode::UnknownOp);
/// assert_eq!(err.to_json(), r#"{"op":"error","id":3,"code":"unknown_op","message":"unknown op \"jump\""}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    code: ErrorCode,
    message: Cow<'static, str>,
    topic: Option<String>,
    id: Option<Box<str>>,
}

/// How much of a client's string an error message quotes back.
const QUOTE_MAX: usize = 64;

/// `s` cut to at most `max` bytes on a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl OpError {
    /// An error with a code and a human-readable message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> OpError {
        OpError { code, message: message.into(), topic: None, id: None }
    }

    /// Names the topic at fault (cut to 64 bytes).
    pub fn with_topic(mut self, topic: &str) -> OpError {
        self.topic = Some(cut(topic, QUOTE_MAX).to_owned());
        self
    }

    /// Echoes the request's id.
    pub fn with_id(mut self, id: Option<RequestId<'_>>) -> OpError {
        self.id = id.map(|id| Box::from(id.0));
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The topic at fault, if one is.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The request's id, if it had one (and it was parsed before the error).
    pub fn id(&self) -> Option<RequestId<'_>> {
        self.id.as_deref().map(RequestId)
    }

    /// Appends the error reply to `out`.
    pub fn write_json(&self, out: &mut String) {
        open_reply(out, "error", self.id());
        out.push_str(",\"code\":\"");
        out.push_str(self.code.as_str());
        out.push_str("\",\"message\":");
        write_json_string(out, &self.message);
        if let Some(topic) = &self.topic {
            out.push_str(",\"topic\":");
            write_json_string(out, topic);
        }
        out.push('}');
    }

    /// The error reply.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(64 + self.message.len());
        self.write_json(&mut s);
        s
    }

    fn topic_error(e: TopicError, topic: &str) -> OpError {
        let code = match e {
            TopicError::TooLong { .. } => ErrorCode::TopicTooLong,
            TopicError::Empty | TopicError::BadByte { .. } => ErrorCode::BadTopic,
        };
        OpError::new(code, e.to_string()).with_topic(topic)
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(t) = &self.topic {
            write!(f, " (topic {t:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OpError {}

impl From<StoreError> for OpError {
    /// `store_full` or the topic error. Add the topic and id with
    /// [`OpError::with_topic`] and [`OpError::with_id`].
    fn from(e: StoreError) -> OpError {
        match e {
            StoreError::TooManyTopics { .. } => OpError::new(ErrorCode::StoreFull, e.to_string()),
            StoreError::BadTopic(TopicError::TooLong { .. }) => {
                OpError::new(ErrorCode::TopicTooLong, e.to_string())
            }
            StoreError::BadTopic(_) => OpError::new(ErrorCode::BadTopic, e.to_string()),
        }
    }
}

/// One topic of a subscribe request, with the last seq the client saw on it
/// when it asked for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic.
    pub topic: TopicName,
    /// `Some(seq)`: replay what came after `seq` (see
    /// [`TopicStore::since`](super::TopicStore::since)); `None`: send the last
    /// value.
    pub since: Option<u64>,
}

/// A parsed client request.
#[derive(Debug, Clone)]
pub enum ClientOp<'a> {
    /// `{"op":"subscribe","topics":[..],"since":{..}?,"epoch":".."?}`:
    /// topics deduplicated in order of first appearance.
    Subscribe {
        /// The request id to echo.
        id: Option<RequestId<'a>>,
        /// The topics (1..=`max_topics_per_op`), each with its `since`.
        topics: Vec<Subscription>,
        /// The epoch the `since` seqs were counted in (`"epoch"`, 1 to 16
        /// hex digits), if the client named one: answer them with
        /// [`TopicStore::since_in`](super::TopicStore::since_in). Parsed (and
        /// checked) even without `since`, where it means nothing.
        epoch: Option<u64>,
    },
    /// `{"op":"unsubscribe","topics":[..]}`: topics deduplicated.
    Unsubscribe {
        /// The request id to echo.
        id: Option<RequestId<'a>>,
        /// The topics (1..=`max_topics_per_op`).
        topics: Vec<TopicName>,
    },
    /// `{"op":"publish","topic":"..","data":<any JSON>,"ack":true?}`, for
    /// publisher connections only ([`ClientOp::requires_publisher`]).
    Publish {
        /// The request id to echo.
        id: Option<RequestId<'a>>,
        /// The topic.
        topic: TopicName,
        /// The `data` value's JSON text, borrowed and already validated.
        data: Payload<'a>,
        /// Whether the client wants a `published` reply.
        ack: bool,
    },
    /// `{"op":"ping"}`: answer with [`write_pong`].
    Ping {
        /// The request id to echo.
        id: Option<RequestId<'a>>,
    },
}

impl<'a> ClientOp<'a> {
    /// The request id, if any.
    pub fn id(&self) -> Option<RequestId<'a>> {
        match *self {
            ClientOp::Subscribe { id, .. }
            | ClientOp::Unsubscribe { id, .. }
            | ClientOp::Publish { id, .. }
            | ClientOp::Ping { id } => id,
        }
    }

    /// Whether only publisher connections may make this request. Answer
    /// others with [`OpError::unauthorized`].
    pub fn requires_publisher(&self) -> bool {
        matches!(self, ClientOp::Publish { .. })
    }
}

impl OpError {
    /// The `unauthorized` error for a publish from a connection that may not
    /// publish.
    pub fn unauthorized(id: Option<RequestId<'_>>) -> OpError {
        OpError::new(ErrorCode::Unauthorized, "this connection may not publish").with_id(id)
    }
}

/// Deserializes any field as its raw JSON text, `null` included (so that
/// `"data":null` is a value, and an absent field is `None`).
fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// A request, its fields still raw JSON. Unknown fields are ignored;
/// duplicate known fields are an error (serde's).
#[derive(Deserialize)]
struct RawOp<'a> {
    #[serde(default, borrow, deserialize_with = "raw")]
    op: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    topics: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    topic: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    since: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    epoch: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    ack: Option<&'a RawValue>,
}

/// A JSON string, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// The `since` object: topic → last seq seen, in order, duplicates kept.
struct SinceEntries<'a>(Vec<(Cow<'a, str>, u64)>);

impl<'de> Deserialize<'de> for SinceEntries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SinceEntries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of topic: seq")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((Str(k), seq)) = map.next_entry::<Str<'de>, u64>()? {
                    v.push((k, seq));
                }
                Ok(SinceEntries(v))
            }
        }
        d.deserialize_map(V)
    }
}

fn bad_request(message: impl Into<Cow<'static, str>>) -> OpError {
    OpError::new(ErrorCode::BadRequest, message)
}

/// Parses one text request.
///
/// Checks, in order: the size cap (`too_large`), JSON syntax (`bad_json`), the
/// shape (`bad_request`: an object with a string `"op"`, no duplicate
/// fields), the id, the op (`unknown_op`), then the op's fields. A topic
/// list is checked whole before anything is returned: one bad topic fails
/// the request. The error carries the request's id whenever the id itself
/// could be read.
///
/// Per-connection rules are the caller's: authorization
/// ([`ClientOp::requires_publisher`]), the per-connection topic cap
/// ([`ConnTopics`]) and the error streak ([`ErrorStreak`]).
///
/// ```
/// use wsreactor::pubsub::{parse_client_op, ClientOp, ErrorCode, Limits};
///
/// let limits = Limits::default();
/// let op = parse_client_op(
///     r#"{"op":"subscribe","id":"r1","topics":["md.BTC-USD","md.ETH-USD"],"since":{"md.BTC-USD":41}}"#,
///     &limits,
/// )?;
/// let ClientOp::Subscribe { id, topics, epoch } = op else { unreachable!() };
/// assert_eq!(id.map(|id| id.as_json()), Some(r#""r1""#));
/// assert_eq!(topics[0].since, Some(41));
/// assert_eq!(topics[1].since, None);
/// assert_eq!(epoch, None);
///
/// let op = parse_client_op(
///     r#"{"op":"subscribe","topics":["md.BTC-USD"],"since":{"md.BTC-USD":41},"epoch":"9f2c04e1d2a7b3c8"}"#,
///     &limits,
/// )?;
/// assert!(matches!(op, ClientOp::Subscribe { epoch: Some(0x9f2c_04e1_d2a7_b3c8), .. }));
///
/// let err = parse_client_op(r#"{"op":"subscribe","topics":["bad topic"]}"#, &limits).unwrap_err();
/// assert_eq!(err.code(), ErrorCode::BadTopic);
/// assert_eq!(err.topic(), Some("bad topic"));
/// # Ok::<(), wsreactor::pubsub::OpError>(())
/// ```
pub fn parse_client_op<'a>(text: &'a str, limits: &Limits) -> Result<ClientOp<'a>, OpError> {
    if text.len() > limits.max_op_len {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("request of {} bytes, the limit is {}", text.len(), limits.max_op_len),
        ));
    }
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !trimmed.starts_with('{') {
        return Err(if super::wire::is_json(text) {
            bad_request("a request is a JSON object")
        } else {
            OpError::new(ErrorCode::BadJson, "malformed JSON")
        });
    }
    let raw: RawOp<'a> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            bad_request(e.to_string())
        } else {
            OpError::new(ErrorCode::BadJson, format!("malformed JSON: {e}"))
        }
    })?;
    let id = parse_id(raw.id)?;
    let fail = |e: OpError| e.with_id(id);
    let Some(op) = raw.op else { return Err(fail(bad_request("missing field `op`"))) };
    let Ok(Str(op)) = serde_json::from_str::<Str<'a>>(op.get()) else {
        return Err(fail(bad_request("`op` must be a string")));
    };
    match &*op {
        "subscribe" => {
            let names = parse_topics(raw.topics, limits).map_err(fail)?;
            let since = parse_since(raw.since, &names, limits).map_err(fail)?;
            let epoch = parse_epoch(raw.epoch).map_err(fail)?;
            let topics = names
                .into_iter()
                .zip(since)
                .map(|(topic, since)| Subscription { topic, since })
                .collect();
            Ok(ClientOp::Subscribe { id, topics, epoch })
        }
        "unsubscribe" => {
            let topics = parse_topics(raw.topics, limits).map_err(fail)?;
            Ok(ClientOp::Unsubscribe { id, topics })
        }
        "publish" => {
            let topic = parse_topic(raw.topic, limits).map_err(fail)?;
            let Some(data) = raw.data else {
                return Err(fail(bad_request("missing field `data`")));
            };
            let ack = match raw.ack.map(|a| a.get()) {
                None | Some("null") | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(fail(bad_request("`ack` must be true or false"))),
            };
            // serde_json checked `data` (a RawValue is a validated value).
            Ok(ClientOp::Publish { id, topic, data: Payload::json_prevalidated(data.get()), ack })
        }
        "ping" => Ok(ClientOp::Ping { id }),
        other => Err(fail(OpError::new(ErrorCode::UnknownOp, {
            let mut m = String::from("unknown op ");
            write_json_string(&mut m, cut(other, QUOTE_MAX));
            m
        }))),
    }
}

fn parse_id(raw: Option<&RawValue>) -> Result<Option<RequestId<'_>>, OpError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    let ok = text.len() <= MAX_ID_LEN
        && matches!(text.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'));
    match (text, ok) {
        ("null", _) => Ok(None),
        (_, true) => Ok(Some(RequestId(text))),
        (_, false) => Err(bad_request(format!(
            "`id` must be a string or a number of at most {MAX_ID_LEN} bytes of JSON"
        ))),
    }
}

fn parse_topic(raw: Option<&RawValue>, limits: &Limits) -> Result<TopicName, OpError> {
    let Some(raw) = raw else { return Err(bad_request("missing field `topic`")) };
    let Ok(Str(name)) = serde_json::from_str::<Str<'_>>(raw.get()) else {
        return Err(bad_request("`topic` must be a string"));
    };
    TopicName::with_max_len(&name, limits.max_topic_len).map_err(|e| OpError::topic_error(e, &name))
}

fn parse_topics(raw: Option<&RawValue>, limits: &Limits) -> Result<Vec<TopicName>, OpError> {
    let Some(raw) = raw else { return Err(bad_request("missing field `topics`")) };
    let Ok(names) = serde_json::from_str::<Vec<Str<'_>>>(raw.get()) else {
        return Err(bad_request("`topics` must be an array of strings"));
    };
    if names.is_empty() {
        return Err(bad_request("`topics` is empty"));
    }
    if names.len() > limits.max_topics_per_op {
        return Err(OpError::new(
            ErrorCode::TooManyTopics,
            format!(
                "{} topics in one request, the limit is {}",
                names.len(),
                limits.max_topics_per_op
            ),
        ));
    }
    // Validate all before allocating any.
    for Str(name) in &names {
        validate_topic(name, limits.max_topic_len).map_err(|e| OpError::topic_error(e, name))?;
    }
    let mut topics: Vec<TopicName> = Vec::with_capacity(names.len());
    for Str(name) in &names {
        if !topics.iter().any(|t| t.as_str() == name) {
            topics.push(
                TopicName::with_max_len(name, limits.max_topic_len)
                    .map_err(|e| OpError::topic_error(e, name))?,
            );
        }
    }
    Ok(topics)
}

fn parse_since(
    raw: Option<&RawValue>,
    topics: &[TopicName],
    limits: &Limits,
) -> Result<Vec<Option<u64>>, OpError> {
    let mut since = vec![None; topics.len()];
    let Some(raw) = raw.filter(|r| r.get() != "null") else { return Ok(since) };
    let Ok(SinceEntries(entries)) = serde_json::from_str::<SinceEntries<'_>>(raw.get()) else {
        return Err(bad_request(
            "`since` must be an object mapping topics to sequence numbers (integers 0..2^64)",
        ));
    };
    for (name, seq) in entries {
        validate_topic(&name, limits.max_topic_len).map_err(|e| OpError::topic_error(e, &name))?;
        let Some(i) = topics.iter().position(|t| t.as_str() == name) else {
            return Err(
                bad_request("`since` names a topic that is not in `topics`").with_topic(&name)
            );
        };
        if since[i].replace(seq).is_some() {
            return Err(bad_request("`since` names a topic twice").with_topic(&name));
        }
    }
    Ok(since)
}

/// The longest epoch, in hex digits.
const EPOCH_DIGITS: usize = 16;

/// `"epoch"`: a JSON string of 1 to 16 hex digits (either case); `null` is
/// as good as absent.
fn parse_epoch(raw: Option<&RawValue>) -> Result<Option<u64>, OpError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else { return Ok(None) };
    let hex = serde_json::from_str::<Str<'_>>(raw.get()).ok().filter(|Str(s)| {
        (1..=EPOCH_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    });
    // 1 to 16 hex digits always fit.
    match hex.map(|Str(s)| u64::from_str_radix(&s, 16)) {
        Some(Ok(epoch)) => Ok(Some(epoch)),
        _ => Err(bad_request(
            "`epoch` must be a string of 1 to 16 hex digits, as the `subscribed` reply gives it",
        )),
    }
}

/// Appends `epoch` as 16 lowercase hex digits.
fn write_epoch_hex(out: &mut String, epoch: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..EPOCH_DIGITS).rev().map(|i| 4 * i) {
        out.push(char::from(DIGITS[((epoch >> shift) & 0xf) as usize]));
    }
}

/// A publish received as a binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryPublish<'a> {
    /// The topic, validated (use it with
    /// [`TopicStore::publish_str`](super::TopicStore::publish_str)).
    pub topic: &'a str,
    /// The payload: binary for `0x02`, text (UTF-8 checked) for `0x03`.
    pub payload: Message<'a>,
}

/// Parses a binary message from a publisher connection:
/// `[0x02][topic_len: u8][topic][bytes]` (delivered as binary) or
/// `[0x03][topic_len: u8][topic][UTF-8 text]` (delivered in the JSON
/// envelope, raw if the text is JSON). Authorization is the caller's.
///
/// ```
/// use wsreactor::Message;
/// use wsreactor::pubsub::{parse_binary_publish, Limits};
///
/// let msg = [&[0x03, 4][..], b"md.X", br#"{"bid":1}"#].concat();
/// let p = parse_binary_publish(&msg, &Limits::default())?;
/// assert_eq!(p.topic, "md.X");
/// assert_eq!(p.payload, Message::Text(r#"{"bid":1}"#));
/// # Ok::<(), wsreactor::pubsub::OpError>(())
/// ```
pub fn parse_binary_publish<'a>(
    msg: &'a [u8],
    limits: &Limits,
) -> Result<BinaryPublish<'a>, OpError> {
    if msg.len() > limits.max_publish_len {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("publish of {} bytes, the limit is {}", msg.len(), limits.max_publish_len),
        ));
    }
    let (text, rest) = match msg.split_first() {
        Some((&BIN_PUBLISH_BINARY, rest)) => (false, rest),
        Some((&BIN_PUBLISH_TEXT, rest)) => (true, rest),
        Some(_) | None => {
            return Err(bad_request(
                "a binary message is a publish: 0x02 (binary) or 0x03 (text), topic length, topic, payload",
            ));
        }
    };
    let (topic, payload) = split_topic(rest).map_err(|e| match e {
        WireError::BadTopic(te) => {
            let raw = rest.get(1..).unwrap_or_default();
            let len = usize::from(rest.first().copied().unwrap_or(0)).min(raw.len());
            OpError::topic_error(te, &String::from_utf8_lossy(&raw[..len]))
        }
        _ => bad_request("binary publish ends inside its header"),
    })?;
    if topic.len() > limits.max_topic_len {
        let e = TopicError::TooLong { len: topic.len(), max: limits.max_topic_len };
        return Err(OpError::topic_error(e, topic));
    }
    let payload = if text {
        match std::str::from_utf8(payload) {
            Ok(s) => Message::Text(s),
            Err(_) => {
                return Err(bad_request("text publish payload is not UTF-8").with_topic(topic));
            }
        }
    } else {
        Message::Binary(payload)
    };
    Ok(BinaryPublish { topic, payload })
}

/// Starts a reply object: `{"op":"<op>"` and the id if any.
fn open_reply(out: &mut String, op: &str, id: Option<RequestId<'_>>) {
    out.push_str("{\"op\":\"");
    out.push_str(op);
    out.push('"');
    if let Some(id) = id {
        out.push_str(",\"id\":");
        out.push_str(id.0);
    }
}

/// Appends `,"topics":[...]` (the object stays open).
fn write_topic_list<'t>(out: &mut String, topics: impl IntoIterator<Item = &'t TopicName>) {
    out.push_str(",\"topics\":[");
    for (i, t) in topics.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, t.as_str());
    }
    out.push(']');
}

/// Appends `{"op":"subscribed","id":..?,"topics":[...],"epoch":"<16 hex>"}`
/// to `out`: `epoch` is the store's ([`TopicStore::epoch`](super::TopicStore::epoch)),
/// as 16 lowercase hex digits in a string (a JSON number above 2^53 would
/// lose digits in JavaScript). A client sends it back with its next `since`.
///
/// ```
/// use wsreactor::pubsub::{write_subscribed, TopicName};
/// let mut out = String::new();
/// let topics = [TopicName::new("a")?, TopicName::new("b")?];
/// write_subscribed(&mut out, None, &topics, 0x2a);
/// assert_eq!(out, r#"{"op":"subscribed","topics":["a","b"],"epoch":"000000000000002a"}"#);
/// # Ok::<(), wsreactor::pubsub::TopicError>(())
/// ```
pub fn write_subscribed<'t>(
    out: &mut String,
    id: Option<RequestId<'_>>,
    topics: impl IntoIterator<Item = &'t TopicName>,
    epoch: u64,
) {
    open_reply(out, "subscribed", id);
    write_topic_list(out, topics);
    out.push_str(",\"epoch\":\"");
    write_epoch_hex(out, epoch);
    out.push_str("\"}");
}

/// Appends `{"op":"unsubscribed","id":..?,"topics":[...]}` to `out`.
pub fn write_unsubscribed<'t>(
    out: &mut String,
    id: Option<RequestId<'_>>,
    topics: impl IntoIterator<Item = &'t TopicName>,
) {
    open_reply(out, "unsubscribed", id);
    write_topic_list(out, topics);
    out.push('}');
}

/// Appends `{"op":"published","id":..?,"topic":"..","seq":N}` to `out`.
pub fn write_published(out: &mut String, id: Option<RequestId<'_>>, topic: &str, seq: u64) {
    open_reply(out, "published", id);
    write_topic_seq(out, topic, seq);
}

/// Appends `{"op":"resync","id":..?,"topic":"..","seq":<latest>}` to `out`.
///
/// ```
/// use wsreactor::pubsub::write_resync;
/// let mut out = String::new();
/// write_resync(&mut out, None, "a", 57);
/// assert_eq!(out, r#"{"op":"resync","topic":"a","seq":57}"#);
/// ```
pub fn write_resync(out: &mut String, id: Option<RequestId<'_>>, topic: &str, latest: u64) {
    open_reply(out, "resync", id);
    write_topic_seq(out, topic, latest);
}

fn write_topic_seq(out: &mut String, topic: &str, seq: u64) {
    out.push_str(",\"topic\":");
    write_json_string(out, topic);
    out.push_str(",\"seq\":");
    write_decimal(out, seq);
    out.push('}');
}

/// Appends `{"op":"pong","id":..?}` to `out`.
pub fn write_pong(out: &mut String, id: Option<RequestId<'_>>) {
    open_reply(out, "pong", id);
    out.push('}');
}

/// Counts a connection's failed requests in a row. The connection is
/// abusive once more than [`Limits::max_errors_in_a_row`] fail in a row:
/// close it with [`ABUSE_CLOSE_CODE`] (1008) and [`ABUSE_CLOSE_REASON`].
/// Until then each failure is answered with its error reply and the
/// connection stays open.
///
/// ```
/// use wsreactor::pubsub::{ErrorStreak, Limits};
///
/// let limits = Limits { max_errors_in_a_row: 2, ..Limits::default() };
/// let mut streak = ErrorStreak::default();
/// assert!(!streak.failed(&limits));
/// streak.succeeded(); // a good request resets the count
/// assert!(!streak.failed(&limits));
/// assert!(!streak.failed(&limits));
/// assert!(streak.failed(&limits)); // the third in a row: close with 1008
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorStreak(u32);

impl ErrorStreak {
    /// Records a failed request; `true` if the connection is now abusive.
    pub fn failed(&mut self, limits: &Limits) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 > limits.max_errors_in_a_row
    }

    /// Records a request that succeeded: the streak starts over.
    pub fn succeeded(&mut self) {
        self.0 = 0;
    }

    /// Failed requests in a row so far.
    pub fn count(&self) -> u32 {
        self.0
    }
}

/// The topics one connection is subscribed to, kept sorted (binary search;
/// no allocation while empty), bounded by [`Limits::max_topics_per_conn`].
///
/// The reactor keeps one per connection, to update its per-reactor
/// subscriber sets with what actually changed and to clean up on close.
///
/// ```
/// use wsreactor::pubsub::{ConnTopics, ErrorCode, Limits, TopicName};
///
/// let limits = Limits { max_topics_per_conn: 2, ..Limits::default() };
/// let (a, b, c) = (TopicName::new("a")?, TopicName::new("b")?, TopicName::new("c")?);
/// let mut mine = ConnTopics::new();
/// assert_eq!(mine.subscribe([&a, &b], &limits).unwrap(), [a.clone(), b.clone()]);
/// assert!(mine.subscribe([&a], &limits).unwrap().is_empty()); // already held
/// let err = mine.subscribe([&c], &limits).unwrap_err();
/// assert_eq!(err.code(), ErrorCode::TooManyTopics);
/// assert_eq!(mine.unsubscribe([&a, &c]), [a]);
/// assert_eq!(mine.take_all(), [b]);
/// # Ok::<(), wsreactor::pubsub::TopicError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnTopics {
    topics: Vec<TopicName>,
}

impl ConnTopics {
    /// No topics.
    pub fn new() -> ConnTopics {
        ConnTopics::default()
    }

    /// How many topics are held.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Whether `topic` is held.
    pub fn contains(&self, topic: &str) -> bool {
        self.find(topic).is_ok()
    }

    /// The topics held, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &TopicName> {
        self.topics.iter()
    }

    fn find(&self, topic: &str) -> Result<usize, usize> {
        self.topics.binary_search_by(|t| t.as_str().cmp(topic))
    }

    /// Adds `topics`, all or none: fails with `too_many_topics` if the new
    /// ones would take the connection past its cap. Returns those that were
    /// not held before, in the order given (duplicates in `topics` count once).
    pub fn subscribe<'t, I>(
        &mut self,
        topics: I,
        limits: &Limits,
    ) -> Result<Vec<TopicName>, OpError>
    where
        I: IntoIterator<Item = &'t TopicName>,
    {
        let mut new: Vec<TopicName> = Vec::new();
        for t in topics {
            if !self.contains(t.as_str()) && !new.contains(t) {
                new.push(t.clone());
            }
        }
        let total = self.topics.len() + new.len();
        if total > limits.max_topics_per_conn {
            return Err(OpError::new(
                ErrorCode::TooManyTopics,
                format!(
                    "this would make {total} topics on this connection, the limit is {}",
                    limits.max_topics_per_conn
                ),
            ));
        }
        self.topics.reserve(new.len());
        for t in &new {
            if let Err(at) = self.find(t.as_str()) {
                self.topics.insert(at, t.clone());
            }
        }
        Ok(new)
    }

    /// Removes `topics`; returns those that were held, in the order given.
    pub fn unsubscribe<'t, I>(&mut self, topics: I) -> Vec<TopicName>
    where
        I: IntoIterator<Item = &'t TopicName>,
    {
        topics
            .into_iter()
            .filter_map(|t| self.find(t.as_str()).ok().map(|at| self.topics.remove(at)))
            .collect()
    }

    /// Removes and returns every topic (on close), freeing the storage.
    pub fn take_all(&mut self) -> Vec<TopicName> {
        std::mem::take(&mut self.topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(text: &str) -> Result<ClientOp<'_>, OpError> {
        parse_client_op(text, &limits())
    }

    fn err(text: &str) -> OpError {
        match parse(text) {
            Err(e) => {
                // Every error reply is valid JSON with the documented fields.
                let v: Value = serde_json::from_str(&e.to_json()).unwrap();
                assert_eq!(v["op"], "error");
                assert_eq!(v["code"], e.code().as_str());
                assert_eq!(v["message"], e.message());
                e
            }
            Ok(op) => panic!("{text} parsed: {op:?}"),
        }
    }

    fn names(subs: &[Subscription]) -> Vec<&str> {
        subs.iter().map(|s| s.topic.as_str()).collect()
    }

    #[test]
    fn subscribe() {
        let ClientOp::Subscribe { id, topics, epoch } =
            parse(r#"{"op":"subscribe","topics":["a","b"]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((id, epoch), (None, None));
        assert_eq!(names(&topics), ["a", "b"]);
        assert!(topics.iter().all(|s| s.since.is_none()));
        let mut out = String::new();
        write_subscribed(&mut out, id, topics.iter().map(|s| &s.topic), 0x0123_4567_89ab_cdef);
        assert_eq!(out, r#"{"op":"subscribed","topics":["a","b"],"epoch":"0123456789abcdef"}"#);
    }

    #[test]
    fn subscribe_with_since_id_dupes_whitespace_and_unknown_fields() {
        let text = " \n{ \"since\" : {\"b\":0, \"a\": 41} , \"topics\":[\"a\",\"b\",\"a\"],\
                    \"op\":\"subscribe\",\"id\":\"r\\\"1\",\"extra\":{\"x\":[1,2]}}\t";
        let op = parse(text).unwrap();
        assert!(!op.requires_publisher());
        assert_eq!(op.id().map(|i| i.as_json()), Some(r#""r\"1""#));
        let ClientOp::Subscribe { id, topics, epoch } = op else { panic!() };
        assert_eq!(names(&topics), ["a", "b"]);
        assert_eq!(topics[0].since, Some(41));
        assert_eq!(topics[1].since, Some(0));
        assert_eq!(epoch, None);
        let mut out = String::new();
        write_subscribed(&mut out, id, topics.iter().map(|s| &s.topic), u64::MAX);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"op":"subscribed","id":"r\"1","topics":["a","b"],"epoch":"ffffffffffffffff"})
        );
        // The members in their documented order: op, id, topics, epoch.
        assert!(out.starts_with(r#"{"op":"subscribed","id":"r\"1","topics":["#), "{out}");
        assert!(out.ends_with(r#"],"epoch":"ffffffffffffffff"}"#), "{out}");
    }

    fn epoch_of(text: &str) -> Option<u64> {
        match parse(text) {
            Ok(ClientOp::Subscribe { epoch, .. }) => epoch,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn subscribe_epoch() {
        let with = |epoch: &str| {
            format!(
                r#"{{"op":"subscribe","id":4,"topics":["a"],"since":{{"a":41}},"epoch":{epoch}}}"#
            )
        };
        for (given, value) in [
            (r#""0123456789abcdef""#, 0x0123_4567_89ab_cdef),
            (r#""FFFFFFFFFFFFFFFF""#, u64::MAX),
            (r#""0000000000000000""#, 0),
            (r#""0""#, 0),
            (r#""2a""#, 42),
            (r#""Ab""#, 0xab),
            (r#""\u0032a""#, 42),
        ] {
            assert_eq!(epoch_of(&with(given)), Some(value), "{given}");
        }
        // Written as it is read back.
        let mut out = String::new();
        write_epoch_hex(&mut out, 0x2a);
        assert_eq!(epoch_of(&with(&format!("\"{out}\""))), Some(0x2a));
        // Absent or null: none; without `since` it is still read (and checked).
        assert_eq!(epoch_of(&with("null")), None);
        assert_eq!(epoch_of(r#"{"op":"subscribe","topics":["a"],"epoch":"ff"}"#), Some(0xff));
        for bad in [
            r#""""#,
            r#""00000000000000000""#,
            r#""12345678901234567""#,
            r#""0x2a""#,
            r#""+2a""#,
            r#""-1""#,
            r#"" 2a""#,
            r#""2a ""#,
            r#""g""#,
            r#""é""#,
            "42",
            "true",
            r#"["2a"]"#,
            r#"{"e":"2a"}"#,
        ] {
            let e = err(&with(bad));
            assert_eq!(e.code(), ErrorCode::BadRequest, "{bad}");
            assert!(e.message().contains("`epoch`"), "{bad}: {}", e.message());
            assert_eq!(e.id().map(|i| i.as_json()), Some("4"), "{bad}");
        }
        let e = err(r#"{"op":"subscribe","topics":["a"],"epoch":"1","epoch":"1"}"#);
        assert_eq!(e.code(), ErrorCode::BadRequest);
        assert!(e.message().contains("duplicate field `epoch`"), "{}", e.message());
    }

    #[test]
    fn escaped_topic_names_are_decoded() {
        let ClientOp::Subscribe { topics, .. } =
            parse(r#"{"op":"subscribe","topics":["md\u002eBTC\/USD"]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(names(&topics), ["md.BTC/USD"]);
        assert_eq!(err(r#"{"op":"subscribe","topics":["a\u0000"]}"#).code(), ErrorCode::BadTopic);
    }

    #[test]
    fn since_rules() {
        let e = err(r#"{"op":"subscribe","topics":["a"],"since":{"b":1}}"#);
        assert_eq!((e.code(), e.topic()), (ErrorCode::BadRequest, Some("b")));
        let e = err(r#"{"op":"subscribe","topics":["a"],"since":{"a":1,"a":2}}"#);
        assert_eq!(e.code(), ErrorCode::BadRequest);
        assert!(e.message().contains("twice"));
        for since in ["-1", "1.5", "\"3\"", "18446744073709551616", "1e3", "true", "[1]"] {
            let text =
                format!(r#"{{"op":"subscribe","id":1,"topics":["a"],"since":{{"a":{since}}}}}"#);
            let e = err(&text);
            assert_eq!(e.code(), ErrorCode::BadRequest, "{since}");
            assert_eq!(e.id().map(|i| i.as_json()), Some("1"));
        }
        assert_eq!(
            err(r#"{"op":"subscribe","topics":["a"],"since":[["a",1]]}"#).code(),
            ErrorCode::BadRequest
        );
        let e = err(r#"{"op":"subscribe","topics":["a"],"since":{"a b":1}}"#);
        assert_eq!(e.code(), ErrorCode::BadTopic);
        // The largest seq, and a null since.
        let ClientOp::Subscribe { topics, .. } =
            parse(r#"{"op":"subscribe","topics":["a"],"since":{"a":18446744073709551615}}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(topics[0].since, Some(u64::MAX));
        assert!(parse(r#"{"op":"subscribe","topics":["a"],"since":null}"#).is_ok());
        assert!(parse(r#"{"op":"subscribe","topics":["a"],"since":{}}"#).is_ok());
    }

    #[test]
    fn unsubscribe() {
        let ClientOp::Unsubscribe { id, topics } =
            parse(r#"{"op":"unsubscribe","id":-7,"topics":["x","x","y"]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(topics.iter().map(TopicName::as_str).collect::<Vec<_>>(), ["x", "y"]);
        let mut out = String::new();
        write_unsubscribed(&mut out, id, &topics);
        assert_eq!(out, r#"{"op":"unsubscribed","id":-7,"topics":["x","y"]}"#);
    }

    #[test]
    fn publish() {
        let op = parse(
            r#"{"op":"publish","topic":"md.X","data":{"bid":1.5,"s":"é\n"},"ack":true,"id":9}"#,
        )
        .unwrap();
        assert!(op.requires_publisher());
        let ClientOp::Publish { id, topic, data, ack } = op else { panic!() };
        assert_eq!((topic.as_str(), ack), ("md.X", true));
        assert!(data.is_json());
        assert_eq!(data.as_bytes(), r#"{"bid":1.5,"s":"é\n"}"#.as_bytes());
        let mut out = String::new();
        write_published(&mut out, id, topic.as_str(), 12);
        assert_eq!(out, r#"{"op":"published","id":9,"topic":"md.X","seq":12}"#);
        // Any JSON value is data, null and huge numbers included; ack defaults to false.
        for data in ["null", "0", "\"s\"", "[]", "123456789012345678901234567890e400"] {
            let text = format!(r#"{{"op":"publish","topic":"t","data":{data}}}"#);
            let ClientOp::Publish { data: d, ack, .. } = parse(&text).unwrap() else { panic!() };
            assert_eq!((d.as_bytes(), ack), (data.as_bytes(), false));
        }
        assert!(parse(r#"{"op":"publish","topic":"t","data":1,"ack":null}"#).is_ok());
        assert_eq!(
            err(r#"{"op":"publish","topic":"t","data":1,"ack":1}"#).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(err(r#"{"op":"publish","topic":"t"}"#).message(), "missing field `data`");
        assert_eq!(err(r#"{"op":"publish","data":1}"#).message(), "missing field `topic`");
        assert_eq!(err(r#"{"op":"publish","topic":5,"data":1}"#).code(), ErrorCode::BadRequest);
        assert_eq!(err(r#"{"op":"publish","topic":"a b","data":1}"#).code(), ErrorCode::BadTopic);
        let e = OpError::unauthorized(Some(RequestId("\"p\"")));
        assert_eq!(
            e.to_json(),
            r#"{"op":"error","id":"p","code":"unauthorized","message":"this connection may not publish"}"#
        );
    }

    #[test]
    fn ping() {
        let op = parse(r#"{"op":"ping"}"#).unwrap();
        assert!(matches!(op, ClientOp::Ping { id: None }));
        let mut out = String::new();
        write_pong(&mut out, op.id());
        assert_eq!(out, r#"{"op":"pong"}"#);
        let op = parse(r#"{"op":"ping","id":"abc"}"#).unwrap();
        out.clear();
        write_pong(&mut out, op.id());
        assert_eq!(out, r#"{"op":"pong","id":"abc"}"#);
    }

    #[test]
    fn malformed_json() {
        for text in [
            "",
            "   ",
            "{",
            "{\"op\":\"ping\"",
            "{'op':'ping'}",
            "{\"op\":\"ping\",}",
            "nul",
            "{\"op\":\"ping\"} x",
            "{\"op\":\"ping\"}{}",
            "{\"op\":\"pi\nng\"}",
            "\u{feff}{}",
        ] {
            let e = err(text);
            assert_eq!(e.code(), ErrorCode::BadJson, "{text:?}");
            assert_eq!(e.id(), None);
        }
    }

    #[test]
    fn wrong_shapes() {
        for (text, code) in [
            ("[\"ping\"]", ErrorCode::BadRequest),
            ("\"ping\"", ErrorCode::BadRequest),
            ("42", ErrorCode::BadRequest),
            ("null", ErrorCode::BadRequest),
            ("{}", ErrorCode::BadRequest),
            ("{\"op\":null}", ErrorCode::BadRequest),
            ("{\"op\":1}", ErrorCode::BadRequest),
            ("{\"op\":[\"ping\"]}", ErrorCode::BadRequest),
            ("{\"op\":\"ping\",\"op\":\"ping\"}", ErrorCode::BadRequest),
            ("{\"op\":\"subscribe\"}", ErrorCode::BadRequest),
            ("{\"op\":\"subscribe\",\"topics\":\"a\"}", ErrorCode::BadRequest),
            ("{\"op\":\"subscribe\",\"topics\":[1]}", ErrorCode::BadRequest),
            ("{\"op\":\"subscribe\",\"topics\":[]}", ErrorCode::BadRequest),
            ("{\"op\":\"subscribe\",\"topics\":null}", ErrorCode::BadRequest),
            ("{\"op\":\"unsubscribe\",\"topics\":{}}", ErrorCode::BadRequest),
            ("{\"op\":\"Subscribe\",\"topics\":[\"a\"]}", ErrorCode::UnknownOp),
            ("{\"op\":\"\"}", ErrorCode::UnknownOp),
        ] {
            assert_eq!(err(text).code(), code, "{text}");
        }
        assert!(err("{\"op\":\"ping\",\"op\":\"x\"}").message().contains("duplicate field"));
    }

    #[test]
    fn unknown_op_is_quoted_safely() {
        let e = err(r#"{"op":"<\"x\">\u0001","id":"q"}"#);
        assert_eq!(e.code(), ErrorCode::UnknownOp);
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["message"], "unknown op \"<\\\"x\\\">\\u0001\"");
        assert_eq!(v["id"], "q");
        let long = format!(r#"{{"op":"{}é"}}"#, "x".repeat(63));
        let e = err(&long);
        assert!(e.message().len() < 90, "{}", e.message());
    }

    #[test]
    fn ids() {
        for (id, echoed) in
            [("1", "1"), ("-2.5e3", "-2.5e3"), ("\"\"", "\"\""), ("\"é\\n\"", "\"é\\n\"")]
        {
            let text = format!(r#"{{"op":"ping","id":{id}}}"#);
            assert_eq!(parse(&text).unwrap().id().map(|i| i.as_json()), Some(echoed));
        }
        assert_eq!(parse(r#"{"op":"ping","id":null}"#).unwrap().id(), None);
        for id in ["true", "{}", "[1]", &format!("\"{}\"", "x".repeat(63))] {
            let text = format!(r#"{{"op":"ping","id":{id}}}"#);
            let e = err(&text);
            assert_eq!((e.code(), e.id()), (ErrorCode::BadRequest, None), "{id}");
        }
        // The id rides along on later errors.
        let e = err(r#"{"id":"z","op":"subscribe","topics":["ok","not ok"]}"#);
        assert_eq!(e.id().map(|i| i.as_json()), Some("\"z\""));
        assert_eq!(e.topic(), Some("not ok"));
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["topic"], "not ok");
        assert_eq!(v["id"], "z");
    }

    #[test]
    fn topic_limits() {
        let l = Limits { max_topic_len: 8, max_topics_per_op: 3, ..limits() };
        let e = parse_client_op(r#"{"op":"subscribe","topics":["123456789"]}"#, &l).unwrap_err();
        assert_eq!((e.code(), e.topic()), (ErrorCode::TopicTooLong, Some("123456789")));
        let e =
            parse_client_op(r#"{"op":"subscribe","topics":["a","b","c","d"]}"#, &l).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooManyTopics);
        assert!(parse_client_op(r#"{"op":"subscribe","topics":["a","b","c"]}"#, &l).is_ok());
        // Duplicates count against the per-op cap as sent.
        assert!(parse_client_op(r#"{"op":"subscribe","topics":["a","a","a","a"]}"#, &l).is_err());
        let e =
            parse_client_op(r#"{"op":"publish","topic":"123456789","data":1}"#, &l).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TopicTooLong);
        // A huge topic name is quoted back cut short.
        let text = format!(r#"{{"op":"subscribe","topics":["{}"]}}"#, "y".repeat(5000));
        let e = err(&text);
        assert_eq!(e.code(), ErrorCode::TopicTooLong);
        assert_eq!(e.topic().map(str::len), Some(64));
        assert_eq!(err(r#"{"op":"subscribe","topics":[""]}"#).code(), ErrorCode::BadTopic);
        assert_eq!(err(r#"{"op":"subscribe","topics":["é"]}"#).code(), ErrorCode::BadTopic);
    }

    #[test]
    fn size_cap_and_deep_nesting() {
        let l = Limits { max_op_len: 100, ..limits() };
        let text = format!(r#"{{"op":"publish","topic":"t","data":"{}"}}"#, "x".repeat(100));
        let e = parse_client_op(&text, &l).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge);
        // Deep nesting inside the cap is fine: skipped and checked without recursion.
        let nested = format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000));
        let deep = format!(r#"{{"op":"publish","topic":"t","data":{nested}}}"#);
        let ClientOp::Publish { data, .. } = parse(&deep).unwrap() else { panic!() };
        assert_eq!(data.as_bytes(), nested.as_bytes());
        let deep =
            format!(r#"{{"op":"ping","x":{}1{}}}"#, "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert!(parse(&deep).is_ok());
        let bad = format!(r#"{{"op":"ping","x":{}}}"#, "[".repeat(10_000));
        assert_eq!(err(&bad).code(), ErrorCode::BadJson);
        let ok = format!(
            r#"{{"op":"publish","topic":"t","data":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn huge_numbers_and_unicode_elsewhere() {
        assert!(parse(r#"{"op":"ping","x":1e999999,"y":-123456789012345678901234567890}"#).is_ok());
        assert!(parse("{\"op\":\"ping\",\"😀\":\"\\ud83d\\ude00\"}").is_ok());
        // A lone surrogate in a string we decode is a syntax error of serde's.
        assert!(parse(r#"{"op":"subscribe","topics":["\ud800"]}"#).is_err());
    }

    #[test]
    fn error_display_and_from_store() {
        let e = OpError::new(ErrorCode::BadTopic, "nope").with_topic("a b");
        assert_eq!(e.to_string(), "bad_topic: nope (topic \"a b\")");
        let e: OpError = StoreError::TooManyTopics { max: 3 }.into();
        assert_eq!(e.code(), ErrorCode::StoreFull);
        let e: OpError = StoreError::BadTopic(TopicError::TooLong { len: 9, max: 8 }).into();
        assert_eq!(e.code(), ErrorCode::TopicTooLong);
        let e: OpError = StoreError::BadTopic(TopicError::Empty).into();
        assert_eq!(e.code(), ErrorCode::BadTopic);
        for code in [
            ErrorCode::BadJson,
            ErrorCode::BadRequest,
            ErrorCode::UnknownOp,
            ErrorCode::BadTopic,
            ErrorCode::TopicTooLong,
            ErrorCode::TooManyTopics,
            ErrorCode::Unauthorized,
            ErrorCode::TooLarge,
            ErrorCode::StoreFull,
        ] {
            assert_eq!(code.to_string(), code.as_str());
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn resync_reply() {
        let mut out = String::new();
        write_resync(&mut out, Some(RequestId("5")), "md.X", 0);
        assert_eq!(out, r#"{"op":"resync","id":5,"topic":"md.X","seq":0}"#);
    }

    #[test]
    fn binary_publish() {
        let l = limits();
        let msg = [&[BIN_PUBLISH_BINARY, 3][..], b"a.b", &[0, 1, 2]].concat();
        let p = parse_binary_publish(&msg, &l).unwrap();
        assert_eq!(p, BinaryPublish { topic: "a.b", payload: Message::Binary(&[0, 1, 2]) });
        let msg = [&[BIN_PUBLISH_TEXT, 1][..], b"t", "é".as_bytes()].concat();
        assert_eq!(parse_binary_publish(&msg, &l).unwrap().payload, Message::Text("é"));
        // An empty payload is allowed.
        let msg = [BIN_PUBLISH_BINARY, 1, b't'];
        assert_eq!(parse_binary_publish(&msg, &l).unwrap().payload, Message::Binary(&[]));
        // Round trip with the encoder.
        let mut enc = Vec::new();
        let topic = TopicName::new("md.BTC-USD").unwrap();
        super::super::wire::encode_binary_publish(&mut enc, &topic, Message::Text("{}"));
        let p = parse_binary_publish(&enc, &l).unwrap();
        assert_eq!((p.topic, p.payload), ("md.BTC-USD", Message::Text("{}")));
    }

    #[test]
    fn binary_publish_errors() {
        let l = Limits { max_topic_len: 4, max_publish_len: 32, ..limits() };
        let code = |msg: &[u8]| parse_binary_publish(msg, &l).map(|_| ()).unwrap_err().code();
        assert_eq!(code(&[]), ErrorCode::BadRequest);
        assert_eq!(code(&[0x01, 1, b'a']), ErrorCode::BadRequest);
        assert_eq!(code(&[0x02]), ErrorCode::BadRequest);
        assert_eq!(code(&[0x02, 5, b'a']), ErrorCode::BadRequest);
        assert_eq!(code(&[0x02, 0]), ErrorCode::BadTopic);
        assert_eq!(code(&[0x02, 2, b'a', b' ']), ErrorCode::BadTopic);
        assert_eq!(code(&[0x02, 2, 0xFF, 0xFE, 1]), ErrorCode::BadTopic);
        assert_eq!(code(&[0x02, 5, b'a', b'b', b'c', b'd', b'e']), ErrorCode::TopicTooLong);
        assert_eq!(code(&[0x03, 1, b'a', 0xC3]), ErrorCode::BadRequest);
        assert_eq!(code(&[0x02; 33]), ErrorCode::TooLarge);
        let e = parse_binary_publish(&[0x02, 2, b'a', b' '], &l).unwrap_err();
        assert_eq!(e.topic(), Some("a "));
        let e = parse_binary_publish(&[0x02, 2, 0xFF, b'x'], &l).unwrap_err();
        assert_eq!(e.topic(), Some("\u{fffd}x"));
    }

    #[test]
    fn error_streak() {
        let l = Limits { max_errors_in_a_row: 3, ..limits() };
        let mut s = ErrorStreak::default();
        assert!(!s.failed(&l) && !s.failed(&l) && !s.failed(&l));
        assert_eq!(s.count(), 3);
        assert!(s.failed(&l));
        s.succeeded();
        assert_eq!(s.count(), 0);
        let zero = Limits { max_errors_in_a_row: 0, ..limits() };
        assert!(ErrorStreak::default().failed(&zero));
        let mut s = ErrorStreak(u32::MAX);
        assert!(s.failed(&l));
        assert_eq!(ABUSE_CLOSE_CODE, CloseCode::POLICY);
        assert_eq!(u16::from(ABUSE_CLOSE_CODE), 1008);
    }

    #[test]
    fn conn_topics() {
        let l = Limits { max_topics_per_conn: 3, ..limits() };
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|s| TopicName::new(s).unwrap());
        let mut m = ConnTopics::new();
        assert!(m.is_empty());
        assert_eq!(m.subscribe([&c, &a, &c], &l).unwrap(), [c.clone(), a.clone()]);
        assert_eq!(m.iter().map(TopicName::as_str).collect::<Vec<_>>(), ["a", "c"]);
        assert!(m.contains("a") && !m.contains("b"));
        // All or nothing.
        assert_eq!(m.subscribe([&b, &d], &l).unwrap_err().code(), ErrorCode::TooManyTopics);
        assert_eq!(m.len(), 2);
        assert_eq!(m.subscribe([&a, &b], &l).unwrap(), std::slice::from_ref(&b));
        assert_eq!(m.len(), 3);
        assert_eq!(m.unsubscribe([&d, &b, &b]), std::slice::from_ref(&b));
        assert_eq!(m.take_all(), [a, c]);
        assert!(m.is_empty());
    }
}
