//! The publish path: a publish is numbered, encoded once and kept as the
//! topic's last value (and in its history), creating the topic if it is new.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Slot, TopicStore, lock, read, write};
use crate::message::{Frame, Message};
use crate::pubsub::topic::{TopicError, TopicName};
use crate::pubsub::wire::{Payload, encode_delivery};

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The topic is new and the store already holds `max` topics.
    TooManyTopics {
        /// [`StoreConfig::max_topics`](super::StoreConfig::max_topics).
        max: usize,
    },
    /// The topic name is not valid (or longer than
    /// [`StoreConfig::max_topic_len`](super::StoreConfig::max_topic_len)).
    BadTopic(TopicError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TooManyTopics { max } => {
                write!(f, "the server already holds its maximum of {max} topics")
            }
            StoreError::BadTopic(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<TopicError> for StoreError {
    fn from(e: TopicError) -> Self {
        StoreError::BadTopic(e)
    }
}

// The publish methods are crate-private: each numbers and keeps a message
// but delivers it to no one, so a caller outside the server would leave a
// gap in the seqs subscribers see. The public way to publish is
// `Publisher::publish` or `Ctx::publish`, which go through `publish_with`;
// only the tests and `pubsub::bench_internals` use the others.
impl TopicStore {
    /// Publishes `payload` on `topic`: assigns the next sequence number,
    /// encodes the delivery once, and keeps it as the last value (and in the
    /// history). Returns the seq and the shared frame to fan out; delivers it
    /// to no one.
    #[cfg_attr(not(any(test, feature = "bench-internals")), allow(dead_code))]
    pub(crate) fn publish(
        &self,
        topic: &TopicName,
        payload: Message<'_>,
    ) -> Result<(u64, Frame), StoreError> {
        self.publish_payload(topic, &Payload::new(payload))
    }

    /// [`publish`](Self::publish) with a topic given as a string, validated
    /// against the store's rules. No allocation unless the topic is new.
    #[cfg_attr(not(any(test, feature = "bench-internals")), allow(dead_code))]
    pub(crate) fn publish_str(
        &self,
        topic: &str,
        payload: Message<'_>,
    ) -> Result<(u64, Frame), StoreError> {
        self.publish_inner(topic, None, &Payload::new(payload), |seq, f| (seq, f.clone()))
    }

    /// [`publish`](Self::publish) with a payload already inspected (see
    /// [`Payload`]), e.g. the `data` of a parsed publish op.
    #[cfg_attr(not(any(test, feature = "bench-internals")), allow(dead_code))]
    pub(crate) fn publish_payload(
        &self,
        topic: &TopicName,
        payload: &Payload<'_>,
    ) -> Result<(u64, Frame), StoreError> {
        self.publish_inner(topic.as_str(), Some(topic), payload, |seq, f| (seq, f.clone()))
    }

    /// Publishes like [`publish_payload`](Self::publish_payload) and calls
    /// `deliver(seq, &frame)` while the topic is still locked, so that
    /// concurrent publishers of one topic hand their frames on (e.g. to the
    /// reactors' inboxes) in seq order. Keep `deliver` short: it holds up
    /// other publishers of this topic, and must not publish to it.
    ///
    /// This is how the server publishes (`ServerHandle::publish_payload`,
    /// behind [`Publisher`](crate::Publisher) and
    /// [`Ctx::publish`](crate::Ctx::publish)): `deliver` posts the frame to
    /// every reactor's inbox.
    pub(crate) fn publish_with<R>(
        &self,
        topic: &TopicName,
        payload: &Payload<'_>,
        deliver: impl FnOnce(u64, &Frame) -> R,
    ) -> Result<R, StoreError> {
        self.publish_inner(topic.as_str(), Some(topic), payload, deliver)
    }

    fn publish_inner<R>(
        &self,
        name: &str,
        owned: Option<&TopicName>,
        payload: &Payload<'_>,
        deliver: impl FnOnce(u64, &Frame) -> R,
    ) -> Result<R, StoreError> {
        let shard = self.shard(name);
        {
            let map = read(shard);
            if let Some((topic, slot)) = map.get_key_value(name) {
                return Ok(self.publish_slot(topic, slot, payload, deliver));
            }
        }
        // A new topic (or a bad name: validate before counting anything).
        let topic = match owned {
            Some(t) if t.len() <= self.config.max_topic_len => t.clone(),
            Some(t) => {
                return Err(
                    TopicError::TooLong { len: t.len(), max: self.config.max_topic_len }.into()
                );
            }
            None => TopicName::with_max_len(name, self.config.max_topic_len)?,
        };
        let max = self.config.max_topics;
        loop {
            let mut map = write(shard);
            if !map.contains_key(name) {
                if self.topics.fetch_add(1, Ordering::Relaxed) >= max {
                    self.topics.fetch_sub(1, Ordering::Relaxed);
                    // Evict with no shard locked (it locks the victim's), then retry.
                    drop(map);
                    if self.evict_one() {
                        continue;
                    }
                    return Err(StoreError::TooManyTopics { max });
                }
                let next = self.floor(name).load(Ordering::Relaxed) + 1;
                let log = VecDeque::with_capacity(self.log_cap.min(64));
                map.insert(
                    topic.clone(),
                    Slot { next: AtomicU64::new(next), log: Mutex::new(log) },
                );
                // Marked as of after this first publish: only later ones
                // count as use.
                lock(&self.ring).push_back((topic.clone(), next + 1));
            }
            // Publish under the write lock: this happens once per topic.
            return match map.get_key_value(name) {
                Some((topic, slot)) => Ok(self.publish_slot(topic, slot, payload, deliver)),
                None => unreachable!("topic inserted under this lock"),
            };
        }
    }

    fn publish_slot<R>(
        &self,
        topic: &TopicName,
        slot: &Slot,
        payload: &Payload<'_>,
        deliver: impl FnOnce(u64, &Frame) -> R,
    ) -> R {
        // Optimistic: encode with the seq we expect, outside the mutex.
        let guess = slot.next.load(Ordering::Relaxed);
        let mut frame = encode_delivery(topic, guess, payload);
        let mut log = lock(&slot.log);
        let seq = slot.next.load(Ordering::Relaxed);
        let stale = if seq != guess {
            // Another publisher of this topic got in first: encode again, in order.
            Some(std::mem::replace(&mut frame, encode_delivery(topic, seq, payload)))
        } else {
            None
        };
        slot.next.store(seq + 1, Ordering::Relaxed);
        let evicted = if log.len() >= self.log_cap { log.pop_front() } else { None };
        log.push_back((seq, frame.clone()));
        let r = deliver(seq, &frame);
        drop(log);
        // Frees (if these were the last references) after unlocking.
        drop((stale, evicted));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::OpCode;
    use crate::pubsub::frame_body;
    use crate::pubsub::store::test_support::*;
    use crate::pubsub::store::{Since, StoreConfig};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn seqs_start_at_one_per_topic() {
        let s = store(0);
        let (a, b) = (t("a"), t("b"));
        assert_eq!(s.publish(&a, Message::Text("1")).unwrap().0, 1);
        assert_eq!(s.publish(&a, Message::Text("2")).unwrap().0, 2);
        assert_eq!(s.publish(&b, Message::Text("1")).unwrap().0, 1);
        assert_eq!(s.publish_str("a", Message::Text("3")).unwrap().0, 3);
        assert_eq!((s.latest_seq("a"), s.latest_seq("b"), s.latest_seq("c")), (3, 1, 0));
        assert_eq!(s.len(), 2);
        assert!(!s.is_empty());
        assert!(store(0).is_empty());
    }

    #[test]
    fn frame_is_the_delivery() {
        let s = store(0);
        let (seq, f) = s.publish(&t("md.X"), Message::Text(r#"{"p":1}"#)).unwrap();
        let v = json(&f);
        assert_eq!(v, serde_json::json!({"topic":"md.X","seq":seq,"data":{"p":1}}));
        let (seq, f) = s.publish(&t("md.X"), Message::Binary(&[5])).unwrap();
        let (op, body) = frame_body(&f);
        assert_eq!(op, OpCode::Binary);
        let d = crate::pubsub::wire::decode_binary_delivery(&body).unwrap();
        assert_eq!((d.topic, d.seq, d.payload), ("md.X", seq, &[5][..]));
    }

    #[test]
    fn topic_names_checked() {
        let s = TopicStore::new(StoreConfig { max_topic_len: 4, ..StoreConfig::default() });
        assert_eq!(
            s.publish(&t("abcde"), Message::Text("1")),
            Err(StoreError::BadTopic(TopicError::TooLong { len: 5, max: 4 }))
        );
        assert_eq!(
            s.publish_str("abcde", Message::Text("1")),
            Err(StoreError::BadTopic(TopicError::TooLong { len: 5, max: 4 }))
        );
        assert_eq!(
            s.publish_str("", Message::Text("1")),
            Err(StoreError::BadTopic(TopicError::Empty))
        );
        assert_eq!(
            s.publish_str("a b", Message::Text("1")),
            Err(StoreError::BadTopic(TopicError::BadByte { at: 1 }))
        );
        assert!(s.is_empty());
        let big =
            TopicStore::new(StoreConfig { max_topic_len: 1000, shards: 3, ..Default::default() });
        assert_eq!(big.config().max_topic_len, 255);
        assert_eq!(big.config().shards, 4);
        assert!(format!("{big:?}").contains("TopicStore"));
    }

    #[test]
    fn publish_with_runs_in_order() {
        let s = store(0);
        let a = t("a");
        let p = Payload::new(Message::Text("1"));
        let got = s.publish_with(&a, &p, |seq, f| (seq, f.len())).unwrap();
        assert_eq!(got.0, 1);
        assert!(got.1 > 0);
    }

    #[test]
    fn concurrent_publishes_keep_seq_order() {
        // Four threads on one topic, plus one thread per own topic.
        let s = Arc::new(store(10_000));
        let shared = t("shared");
        let per_thread = 2_000;
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = Arc::clone(&s);
                let shared = shared.clone();
                thread::spawn(move || {
                    let own = t(&format!("own.{i}"));
                    let mut delivered = Vec::new();
                    for n in 0..per_thread {
                        let data = format!("{{\"t\":{i},\"n\":{n}}}");
                        let p = Payload::text(&data);
                        let seq = s.publish_with(&shared, &p, |seq, f| {
                            delivered.push((seq, f.clone()));
                            seq
                        });
                        assert!(seq.is_ok());
                        let (own_seq, _) = s.publish(&own, Message::Text(&data)).unwrap();
                        assert_eq!(own_seq, n + 1);
                    }
                    delivered
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let delivered = h.join().unwrap();
            // Each thread's own seqs rise, and every frame embeds its seq.
            assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0));
            for (seq, f) in &delivered {
                assert_eq!(json(f)["seq"], *seq);
            }
            all.extend(delivered.into_iter().map(|(s, _)| s));
        }
        all.sort_unstable();
        let n = 4 * per_thread;
        assert_eq!(all, (1..=n).collect::<Vec<_>>(), "seqs are dense and unique");
        // The history is contiguous and each thread's messages are in its order.
        let Since::Frames(hist) = s.since("shared", 0) else { panic!("history") };
        assert_eq!(hist.len() as u64, n);
        let mut last_n = [-1i64; 4];
        for (i, (seq, f)) in hist.iter().enumerate() {
            let v = json(f);
            assert_eq!(v["seq"], *seq);
            assert_eq!(*seq, i as u64 + 1);
            let (th, k) =
                (v["data"]["t"].as_u64().unwrap() as usize, v["data"]["n"].as_i64().unwrap());
            assert!(k > last_n[th]);
            last_n[th] = k;
        }
        assert_eq!(s.snapshot("shared").map(|(q, _)| q), Some(n));
    }
}
