//! Topic publish/subscribe: the building blocks, free of sockets and reactors.
//!
//! - [`TopicName`] ([`topic`]): validated topic names.
//! - [`wire`]: deliveries encoded once per publish into one shared [`Frame`](crate::Frame).
//! - [`protocol`]: the client control protocol (requests, replies, errors, limits).
//! - [`TopicStore`] ([`store`]): sequence numbers, last values and history, shared by all threads.
//! - [`synthetic`]: a synthetic market-data feed (`--synthetic SYMBOLS:RATE`).
//!
//! ```
//! use std::time::Duration;
//! use wsreactor::pubsub::{parse_client_op, ClientOp, Limits, StoreConfig};
//! use wsreactor::{Handler, Message, Server};
//!
//! struct App;
//! impl Handler for App {
//!     type Conn = ();
//! }
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:0")?
//!     .reactors(1)
//!     .topics(StoreConfig { history: 1000, ..StoreConfig::default() })
//!     .handler(|_| App)
//!     .build()?;
//! let publisher = server.publisher();
//! let running = server.spawn()?;
//! // A publisher thread: numbered, encoded once (the frame is what every
//! // subscriber gets), kept in the store and handed to every reactor.
//! let seq = publisher.publish("md.BTC-USD", Message::Text(r#"{"bid":64000.5}"#))?;
//! assert_eq!(seq, 1);
//!
//! // A client's request, on its reactor.
//! let op = parse_client_op(r#"{"op":"subscribe","topics":["md.BTC-USD"]}"#, &Limits::default())?;
//! if let ClientOp::Subscribe { topics, .. } = op {
//!     // Reply "subscribed", then send each topic's last value.
//!     let store = publisher.store();
//!     assert!(store.snapshot(topics[0].topic.as_str()).is_some());
//! }
//! running.shutdown(Duration::from_secs(1))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Wire protocol reference
//!
//! All control messages and text deliveries are JSON objects in WebSocket
//! text messages. A control message's first member is always `"op"`; a
//! delivery's first member is always `"topic"`, so a client can tell them
//! apart by their first bytes: `{"op":` versus `{"topic":`.
//!
//! ## Topics
//! 1 to 128 bytes (the server may lower or raise the cap, never above 255)
//! of `A-Z a-z 0-9 . _ : / -`. Case-sensitive; no wildcards. Market data
//! uses `md.<SYMBOL>`, e.g. `md.BTC-USD`.
//!
//! ## Sequence numbers
//! Each topic numbers its publishes 1, 2, 3, … (`seq`, an unsigned 64-bit
//! integer) with no gaps. A client remembers the last `seq` it saw per topic:
//! - a `seq` more than one above it means deliveries were lost (e.g. dropped
//!   for a slow consumer): resubscribe with `since` to get them back;
//! - a `seq` at or below it is a duplicate and must be ignored. A new
//!   subscription gets none (its snapshot or replay is followed by the next
//!   seq exactly); subscribing again with `since` to a topic the connection
//!   still holds replays beside the live deliveries, and those may repeat.
//!
//! ## Epochs
//! Sequence numbers start over when the server restarts (more exactly: when
//! its [`TopicStore`] is made anew), so a `seq` means something only in the
//! **epoch** it was counted in. The epoch is a 64-bit number, chosen at
//! random at every start ([`TopicStore::epoch`]; an operator who persists
//! the store's state may keep it with [`StoreConfig::epoch`]), and the
//! `subscribed` reply gives it as a string of 16 lowercase hex digits:
//! `"epoch":"9f2c04e1d2a7b3c8"` (a string because JavaScript loses the
//! low digits of JSON numbers above 2^53).
//!
//! A client keeps, with the seqs it remembers, the epoch they were counted
//! in (that of the `subscribed` reply that came before them on the
//! connection), and sends both back when it resubscribes with `since`. If
//! the server's epoch is another one (it restarted in between), the
//! client's seqs mean nothing here, and every topic of its `since` is
//! answered with `resync` and the last value, whatever the seq: never with
//! deliveries of another numbering. Deliveries themselves carry no epoch;
//! the epoch is the same in every `subscribed` reply of one server run.
//!
//! A `since` without `epoch` is still accepted, as before epochs existed: its
//! seqs are taken to be of the current epoch. Then a `since` above the
//! topic's latest `seq` is answered with `resync`, but one at or below it
//! gets the deliveries after it **of the new numbering**, which are not the
//! ones the client missed. Clients should always send the epoch.
//!
//! ## Deliveries (server → client)
//! A text publish (from [`Publisher::publish`](crate::Publisher::publish)
//! with [`Message::Text`](crate::Message::Text), a `publish` op, or a `0x03`
//! binary publish) is delivered as a **text** message:
//!
//! ```text
//! {"topic":"md.BTC-USD","seq":42,"data":<payload>}
//! ```
//!
//! exactly in this member order and without whitespace. `<payload>` is the
//! published text verbatim when it is one valid JSON value (RFC 8259;
//! surrounding whitespace is kept), otherwise the text as a JSON string
//! (`"`, `\` and control characters escaped). A binary publish is delivered
//! as a **binary** message:
//!
//! ```text
//! [0x01][topic_len: u8][topic: topic_len bytes][seq: u64 big-endian][payload]
//! ```
//!
//! ([`wire::decode_binary_delivery`] decodes it.) Snapshots (last values)
//! and replays from history are **byte-identical** to the live delivery of
//! the same `seq`: the server keeps the encoded frame and sends it again,
//! so there is no `"snapshot"` flag. A client recognises them only by `seq`
//! (and drops duplicates by the rule above).
//!
//! ## Requests (client → server, text messages)
//! Members may come in any order; unknown members are ignored; a member
//! given twice is an error. Every request may carry an `"id"` (a JSON string
//! or number, at most 64 bytes of JSON text), echoed verbatim as the second
//! member of its reply or error.
//!
//! | request | reply |
//! |---|---|
//! | `{"op":"subscribe","topics":["a","b"]}` | `{"op":"subscribed","topics":["a","b"],"epoch":"<16 hex digits>"}`, then each topic's last value, if it has one |
//! | `{"op":"subscribe","topics":["a","b"],"since":{"a":41},"epoch":"<hex>"}` | `{"op":"subscribed","topics":["a","b"],"epoch":"<16 hex digits>"}`, then for `a` the deliveries after 41 (or, if the history no longer holds them all, or `epoch` is not the server's, `{"op":"resync","topic":"a","seq":<latest>}` followed by the last value), for `b` its last value |
//! | `{"op":"unsubscribe","topics":["a"]}` | `{"op":"unsubscribed","topics":["a"]}` |
//! | `{"op":"publish","topic":"a","data":<any JSON>}` | nothing, or with `"ack":true`: `{"op":"published","topic":"a","seq":43}` |
//! | `{"op":"ping"}` | `{"op":"pong"}` |
//!
//! - `topics`: 1 to 64 names per request (server limit); duplicates are
//!   merged, the reply lists each once in order of first appearance. One bad
//!   name fails the whole request.
//! - The `subscribed` reply's members come in this order: `op`, `id` (if
//!   the request had one), `topics`, `epoch`.
//! - `since`: an object mapping some of the `topics` to the last `seq` the
//!   client saw (`0`: none). When the client is up to date nothing is
//!   replayed. When `since` is exactly one behind, the last value serves even
//!   without history. With a history of N, up to N missed deliveries are
//!   replayed, oldest first.
//! - `epoch`: the epoch the `since` seqs were counted in, as the
//!   `subscribed` reply gave it: a string of 1 to 16 hex digits (either
//!   case; anything else is `bad_request`, `null` is as if absent). When it
//!   is not the server's epoch, every topic in `since` gets `resync` and its
//!   last value (a topic nothing was published on yet: `resync` with `seq`
//!   0 and nothing after it). Without `since` it is allowed and ignored;
//!   `since` without it is the old, unsafe form (see [Epochs](#epochs)).
//! - Subscribing to a topic nobody has published on yet is allowed; nothing
//!   is sent until the first publish.
//! - Unsubscribing from a topic not subscribed to is not an error.
//! - `publish` is only for connections the server authorized as publishers
//!   (e.g. by a token at the upgrade); `data` is delivered verbatim (text
//!   envelope), and is capped by the request size cap (64 KiB by default):
//!   bigger payloads go in binary publishes.
//! - Each connection holds at most 256 topics (server limit).
//!
//! ## Binary publishes (publisher connections, binary messages)
//! ```text
//! [0x02][topic_len: u8][topic][payload bytes]   delivered as a binary delivery
//! [0x03][topic_len: u8][topic][UTF-8 text]      delivered as a text delivery
//! ```
//! Capped at 1 MiB by default. No reply on success; errors are JSON error
//! replies (without `id`).
//!
//! ## Errors
//! ```text
//! {"op":"error","id":<id>?,"code":"<code>","message":"<for humans>","topic":"<name>"?}
//! ```
//! `topic` names the offending topic (cut to 64 bytes) when there is one.
//! The connection stays open after an error.
//!
//! | code | cause |
//! |---|---|
//! | `bad_json` | not well-formed JSON |
//! | `bad_request` | valid JSON of the wrong shape: not an object, a missing, mistyped or duplicate member, `since` naming a topic not in `topics`, an `epoch` that is not a string of 1 to 16 hex digits; a malformed binary message |
//! | `unknown_op` | an `"op"` this server does not know |
//! | `bad_topic` | an empty topic name or one with a character outside the set |
//! | `topic_too_long` | a topic name over the cap |
//! | `too_many_topics` | more topics in one request than allowed, or more than the connection may hold, or (with `topic`) a topic nothing was ever published on when the server holds the most such topics it may or its memory budget is nearly spent; nothing is subscribed then. A published topic can always be subscribed |
//! | `unauthorized` | `publish` (or a binary message) from a connection that may not publish |
//! | `too_large` | a publisher's request over its size cap (64 KiB text, 1 MiB binary by default), refused unparsed; from a connection that may not publish, a message over 64 KiB closes it with 1009 at its frame header instead |
//! | `store_full` | a publish on a new topic when the server holds its maximum number of topics |
//!
//! A connection whose requests fail more than 16 times in a row (server
//! limit) is abusive and is closed with code **1008** (policy violation),
//! reason `too many bad requests`; any successful request resets the count.
//!
//! ## Integration notes (for the reactor)
//! - Subscribe: read [`TopicStore::snapshot`] or [`TopicStore::since_in`]
//!   (with the request's epoch), add the connection to the subscriber set
//!   for the publishes *after* the last seq read
//!   ([`Ctx::subscribe_after`](crate::Ctx::subscribe_after)), reply
//!   `subscribed` (with [`TopicStore::epoch`]), then send what was read.
//!   Publishes up to that seq may still be on their way to the reactor; it
//!   passes the new subscriber over for them, so the client gets every seq
//!   once and in order, none missed.
//! - Publish with [`Publisher::publish`](crate::Publisher::publish) or
//!   [`Ctx::publish`](crate::Ctx::publish): they number and keep the message
//!   in the store before they return, and hand its frame to every reactor
//!   while the topic is still locked there, so frames from several
//!   publishing threads on one topic reach the reactors in seq order. The
//!   store itself has no public way to publish: a message numbered but
//!   delivered to no one would be a gap in every subscriber's seqs.
//! - [`ConnTopics`] is the per-connection set (cap, all-or-nothing
//!   subscribe, cleanup on close); [`ErrorStreak`] the error count.

mod app;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;
mod json;
pub mod protocol;
pub mod store;
pub mod synthetic;
pub mod topic;
pub mod wire;

pub use app::{PubSub, PubSubConn};
pub use protocol::{
    ABUSE_CLOSE_CODE, ABUSE_CLOSE_REASON, BinaryPublish, ClientOp, ConnTopics, ErrorCode,
    ErrorStreak, Limits, OpError, RequestId, Subscription, parse_binary_publish, parse_client_op,
    write_pong, write_published, write_resync, write_subscribed, write_unsubscribed,
};
pub use store::{Since, StoreConfig, StoreError, TopicStore};
pub use synthetic::{SpecError, SyntheticFeed, SyntheticSpec};
pub use topic::{TopicError, TopicName};

/// The opcode and payload of an encoded frame (tests only).
#[cfg(test)]
pub(crate) fn frame_body(frame: &crate::Frame) -> (crate::proto::frame::OpCode, Vec<u8>) {
    let bytes = frame.plain();
    let h = crate::proto::frame::parse_header(bytes).unwrap().unwrap();
    assert!(h.fin && !h.rsv1 && h.mask.is_none());
    assert_eq!(bytes.len(), h.header_len + h.payload_len as usize);
    (h.opcode, bytes[h.header_len..].to_vec())
}
