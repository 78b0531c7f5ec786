//! How subscribing and publishing look on the wire, per kind of server.

use wsreactor::proto::OpCode;
use wsreactor::pubsub::wire::{
    BIN_DELIVERY, BIN_DELIVERY_OVERHEAD, BIN_PUBLISH_BINARY, decode_binary_delivery,
};

use crate::deflate::Tx;

/// How subscribers and the publisher talk to a particular kind of server.
///
/// Topics are numbered `0..topics()`; subscriber `k` (0-based) joins topic
/// `k % topics()` and message `seq` is published on topic `seq % topics()`,
/// so each subscriber sees every `topics()`-th sequence number.
pub trait Topology: Send + Sync {
    /// A name for reports.
    fn name(&self) -> String;
    /// How many topics messages are spread over.
    fn topics(&self) -> u64 {
        1
    }
    /// Frames a subscriber of `topic` sends once open (a subscribe request, for instance).
    fn subscribe(&self, _tx: &mut Tx<'_>, _topic: u64) {}
    /// Whether a subscriber must wait for the server's confirmation (a control
    /// message, see [`Topology::control`]) before the publisher may start.
    fn confirms_subscribe(&self) -> bool {
        false
    }
    /// Appends a message on `topic` whose payload is `parts`.
    fn publish(&self, tx: &mut Tx<'_>, _topic: u64, parts: &[&[u8]]) {
        tx.message(OpCode::Binary, parts, 0);
    }
    /// Bytes of envelope before the payload in a delivered message.
    fn envelope_len(&self) -> usize {
        0
    }
    /// Whether `envelope` is right for a delivery on `topic`.
    fn envelope_ok(&self, _envelope: &[u8], _topic: u64) -> bool {
        true
    }
    /// Whether a message starting with `first` is a control message (an
    /// answer or an error from the server) rather than a delivery.
    fn is_control(&self, _first: &[u8]) -> bool {
        false
    }
    /// What a control message means.
    fn control(&self, _msg: &[u8]) -> Control {
        Control::Other
    }
    /// Whether the publisher receives its own messages.
    fn echoes_to_publisher(&self) -> bool;
    /// Whether messages are text (payload heads in hex) rather than binary.
    fn text(&self) -> bool {
        false
    }
}

/// What a control message from the server means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A subscription was confirmed.
    Subscribed,
    /// The server reported an error (its text).
    Error(String),
    /// Anything else (ignored).
    Other,
}

/// A server that sends every message to every client, sender included
/// (`wsreactor broadcast` and the peers' broadcast mode); with `text`, the
/// messages are text messages.
pub struct Broadcast {
    /// Send text messages rather than binary ones.
    pub text: bool,
}

impl Topology for Broadcast {
    fn name(&self) -> String {
        if self.text { "broadcast, text" } else { "broadcast" }.into()
    }
    fn publish(&self, tx: &mut Tx<'_>, _topic: u64, parts: &[&[u8]]) {
        tx.message(if self.text { OpCode::Text } else { OpCode::Binary }, parts, 0);
    }
    fn echoes_to_publisher(&self) -> bool {
        true
    }
    fn text(&self) -> bool {
        self.text
    }
}

/// wsreactor's topic protocol (`wsreactor pubsub`; the peers' pubsub mode
/// speaks the same subset): a subscriber sends
/// `{"op":"subscribe","topics":["bench.0042"]}` and waits for
/// `{"op":"subscribed",...}`; the publisher sends binary publishes
/// `[0x02][topic_len][topic][payload]`; subscribers receive binary deliveries
/// `[0x01][topic_len][topic][seq: u64 BE][payload]`.
///
/// Topic names are `bench.` and a zero-padded number, so every envelope has the
/// same length. The publisher must be allowed to publish: for
/// `wsreactor pubsub --publish-token T` put `?token=T` in the URL.
pub struct Topics {
    names: Vec<String>,
}

impl Topics {
    /// `n` topics (at least 1).
    pub fn new(n: u64) -> Topics {
        let n = n.max(1);
        let width = (n - 1).to_string().len();
        Topics { names: (0..n).map(|t| format!("bench.{t:0width$}")).collect() }
    }

    fn topic(&self, t: u64) -> &[u8] {
        self.names[(t % self.names.len() as u64) as usize].as_bytes()
    }
}

impl Topology for Topics {
    fn name(&self) -> String {
        format!("topics {}", self.names.len())
    }
    fn topics(&self) -> u64 {
        self.names.len() as u64
    }
    fn subscribe(&self, tx: &mut Tx<'_>, topic: u64) {
        let name = &self.names[topic as usize];
        let req = format!(r#"{{"op":"subscribe","topics":["{name}"]}}"#);
        tx.message(OpCode::Text, &[req.as_bytes()], 0);
    }
    fn confirms_subscribe(&self) -> bool {
        true
    }
    fn publish(&self, tx: &mut Tx<'_>, topic: u64, parts: &[&[u8]]) {
        let name = self.topic(topic);
        let head = [BIN_PUBLISH_BINARY, name.len() as u8];
        let mut all: Vec<&[u8]> = Vec::with_capacity(2 + parts.len());
        all.extend([&head[..], name]);
        all.extend_from_slice(parts);
        tx.message(OpCode::Binary, &all, 0);
    }
    fn envelope_len(&self) -> usize {
        BIN_DELIVERY_OVERHEAD + self.names[0].len()
    }
    fn envelope_ok(&self, env: &[u8], topic: u64) -> bool {
        // The envelope alone decodes as a delivery with an empty payload.
        decode_binary_delivery(env)
            .is_ok_and(|d| d.topic.as_bytes() == self.topic(topic) && d.payload.is_empty())
    }
    fn is_control(&self, first: &[u8]) -> bool {
        first.first() != Some(&BIN_DELIVERY)
    }
    fn control(&self, msg: &[u8]) -> Control {
        if msg.starts_with(br#"{"op":"subscribed""#) {
            Control::Subscribed
        } else if msg.starts_with(br#"{"op":"error""#) {
            Control::Error(String::from_utf8_lossy(msg).into_owned())
        } else {
            Control::Other
        }
    }
    fn echoes_to_publisher(&self) -> bool {
        false
    }
}
