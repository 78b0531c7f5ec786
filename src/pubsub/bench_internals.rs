//! **Not part of the API.** Crate-private operations of the topic store,
//! exposed only so that `benches/pubsub.rs` can measure them; compiled only
//! with the cargo feature `bench-internals`, hidden from the docs, outside
//! any semver promise, and liable to change or go away in any release.
//!
//! They number and keep a message in a [`TopicStore`] but deliver it to no
//! one, so subscribers would see a gap in the topic's seqs. To publish,
//! use [`Publisher::publish`](crate::Publisher::publish) or
//! [`Ctx::publish`](crate::Ctx::publish).

use super::store::{StoreError, TopicStore};
use super::topic::TopicName;
use crate::message::{Frame, Message};

/// `TopicStore::publish`: numbers `payload`, encodes it once and keeps it as
/// the topic's last value (and in its history); returns the seq and frame.
/// Delivers it nowhere.
#[inline]
pub fn publish(
    store: &TopicStore,
    topic: &TopicName,
    payload: Message<'_>,
) -> Result<(u64, Frame), StoreError> {
    store.publish(topic, payload)
}

/// `TopicStore::publish_str`: [`publish`] with the topic given as a string,
/// validated against the store's rules. Delivers it nowhere.
#[inline]
pub fn publish_str(
    store: &TopicStore,
    topic: &str,
    payload: Message<'_>,
) -> Result<(u64, Frame), StoreError> {
    store.publish_str(topic, payload)
}
