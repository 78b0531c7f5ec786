//! Binary requests: publishes from publisher connections
//! ([`parse_binary_publish`]).

use super::errors::{ErrorCode, Limits, OpError, bad_request};
use crate::message::Message;
use crate::pubsub::topic::TopicError;
use crate::pubsub::wire::{BIN_PUBLISH_BINARY, BIN_PUBLISH_TEXT, WireError, split_topic};

/// A publish received as a binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryPublish<'a> {
    /// The topic, validated (publish on it with
    /// [`Publisher::publish`](crate::Publisher::publish)).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::topic::TopicName;

    fn limits() -> Limits {
        Limits::default()
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
        crate::pubsub::wire::encode_binary_publish(&mut enc, &topic, Message::Text("{}"));
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
}
