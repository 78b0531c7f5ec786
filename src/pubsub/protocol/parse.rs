//! Text requests parsed from JSON: [`parse_client_op`] and the
//! [`ClientOp`] it returns.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::errors::{ErrorCode, Limits, MAX_ID_LEN, OpError, QUOTE_MAX, bad_request, cut};
use super::reply::{EPOCH_DIGITS, RequestId};
use crate::pubsub::topic::{TopicName, validate_topic};
use crate::pubsub::wire::{Payload, write_json_string};

/// One topic of a subscribe request, with the last seq the client saw on it
/// when it asked for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic.
    pub topic: TopicName,
    /// `Some(seq)`: replay what came after `seq` (see
    /// [`TopicStore::since`](crate::pubsub::TopicStore::since)); `None`: send the last
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
        /// [`TopicStore::since_in`](crate::pubsub::TopicStore::since_in). Parsed (and
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
    /// `{"op":"ping"}`: answer with [`write_pong`](super::write_pong).
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
/// ([`ConnTopics`](super::ConnTopics)) and the error streak ([`ErrorStreak`](super::ErrorStreak)).
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
        return Err(if crate::pubsub::wire::is_json(text) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::protocol::reply::{
        write_epoch_hex, write_pong, write_published, write_subscribed, write_unsubscribed,
    };
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
}
