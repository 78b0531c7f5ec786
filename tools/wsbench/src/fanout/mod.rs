//! `fanout`: N subscribers and one publisher.
//!
//! Every published message starts with its sequence number and its send time
//! (both u64 little endian; at a fixed rate the send time is the *intended*
//! one, so a publisher held up by the server does not hide the delay), then a
//! fixed pattern that subscribers verify. The top bits of the sequence number
//! are a random tag of the run, so messages of an earlier run (a topic
//! server's last-value snapshots) are told apart and ignored.
//!
//! Without `--rate` the publisher keeps at most `-w` messages in flight, where
//! a message is in flight until *every* subscriber of its topic has received it
//! (counted per message in a small shared ring), so the slowest subscriber
//! paces the publisher and queues in the server stay bounded. Each subscriber tracks which
//! sequence numbers it saw in a sliding window, which tells gaps, duplicates
//! and reorders apart.
//!
//! How subscribing and publishing look on the wire is a [`Topology`]:
//! [`Broadcast`] (every message from any client goes to every client, sender
//! included) or [`Topics`] (wsreactor's topic protocol: JSON subscribe,
//! binary publish and binary deliveries that name their topic and carry a
//! per-topic sequence number).
//!
//! [`Topology`]: topology::Topology
//! [`Broadcast`]: topology::Broadcast
//! [`Topics`]: topology::Topics

mod args;
mod behaviour;
mod report;
mod scenario;
mod seq;
mod topology;

pub use args::FanoutArgs;
pub use scenario::main;
