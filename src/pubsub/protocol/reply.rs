//! Replies written as JSON: `subscribed`, `unsubscribed`, `published`,
//! `resync` and `pong` (errors are [`OpError::write_json`](super::OpError::write_json)).

use crate::pubsub::topic::TopicName;
use crate::pubsub::wire::{write_decimal, write_json_string};

/// A request id as the client sent it: the raw JSON text of a string or a
/// number (at most [`MAX_ID_LEN`](super::MAX_ID_LEN) bytes), echoed back verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId<'a>(pub(super) &'a str);

impl<'a> RequestId<'a> {
    /// The id's JSON text, e.g. `"\"r1\""` or `"7"`.
    pub fn as_json(&self) -> &'a str {
        self.0
    }
}

/// The longest epoch, in hex digits.
pub(super) const EPOCH_DIGITS: usize = 16;

/// Appends `epoch` as 16 lowercase hex digits.
pub(super) fn write_epoch_hex(out: &mut String, epoch: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..EPOCH_DIGITS).rev().map(|i| 4 * i) {
        out.push(char::from(DIGITS[((epoch >> shift) & 0xf) as usize]));
    }
}

/// Starts a reply object: `{"op":"<op>"` and the id if any.
pub(super) fn open_reply(out: &mut String, op: &str, id: Option<RequestId<'_>>) {
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
/// to `out`: `epoch` is the store's ([`TopicStore::epoch`](crate::pubsub::TopicStore::epoch)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_reply() {
        let mut out = String::new();
        write_resync(&mut out, Some(RequestId("5")), "md.X", 0);
        assert_eq!(out, r#"{"op":"resync","id":5,"topic":"md.X","seq":0}"#);
    }
}
