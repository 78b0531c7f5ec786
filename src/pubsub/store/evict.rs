//! Room at the topic cap: the eviction of the topic published least
//! recently (a CLOCK ring with second chances), and the numbering floors
//! that keep an evicted topic's seqs from being used again.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{TopicStore, lock, write};
use crate::pubsub::topic::topic_hash;

/// Buckets of [`TopicStore::floors`], by a hash of the topic name.
pub(super) const FLOOR_BUCKETS: usize = 1024;

impl TopicStore {
    pub(super) fn floor(&self, name: &str) -> &AtomicU64 {
        // The shard and the map use the low and high bits; these are others.
        &self.floors[(topic_hash(name) >> 24) as usize % FLOOR_BUCKETS]
    }

    /// Evicts the topic published least recently, roughly (a clock scan:
    /// a topic published since the scan last saw it goes round once more).
    /// False if there is none. Takes the ring's lock and a shard's, never
    /// both at once in that order (creating a topic holds a shard's, then
    /// the ring's).
    pub(super) fn evict_one(&self) -> bool {
        // Past one full round every topic's mark is fresh: take the next.
        let mut chances = lock(&self.ring).len();
        loop {
            let Some((name, seen)) = lock(&self.ring).pop_front() else { return false };
            let mut map = write(self.shard(name.as_str()));
            let Some(slot) = map.get(name.as_str()) else { continue };
            let next = {
                let _log = lock(&slot.log);
                slot.next.load(Ordering::Relaxed)
            };
            if next != seen && chances > 0 {
                chances -= 1;
                lock(&self.ring).push_back((name, next));
                continue;
            }
            self.floor(name.as_str()).fetch_max(next - 1, Ordering::Relaxed);
            let evicted = map.remove(name.as_str());
            self.topics.fetch_sub(1, Ordering::Relaxed);
            drop(map);
            drop(evicted); // its frames are freed with no lock held
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::pubsub::store::test_support::*;
    use crate::pubsub::store::{Since, StoreConfig, StoreError};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_cap_of_zero_refuses_every_topic() {
        let s = TopicStore::new(StoreConfig { max_topics: 0, ..StoreConfig::default() });
        let err = s.publish(&t("a"), Message::Text("1")).unwrap_err();
        assert_eq!(err, StoreError::TooManyTopics { max: 0 });
        assert!(err.to_string().contains("maximum of 0 topics"));
        assert_eq!(s.publish_str("a", Message::Text("1")), Err(err));
        assert!(s.is_empty());
    }

    #[test]
    fn at_the_cap_the_topic_published_least_recently_is_evicted() {
        let s = TopicStore::new(StoreConfig { max_topics: 3, history: 4, ..Default::default() });
        for name in ["a", "b", "c"] {
            publish_numbers(&s, &t(name), 1..=1);
        }
        // "a" and "c" are published again: "b" is the one to go.
        publish_numbers(&s, &t("a"), 2..=2);
        publish_numbers(&s, &t("c"), 2..=2);
        assert_eq!(s.publish(&t("d"), Message::Text("1")).unwrap().0, 1);
        assert_eq!(s.len(), 3);
        assert!(!s.contains("b") && s.snapshot("b").is_none());
        assert!(s.contains("a") && s.contains("c") && s.contains("d"));
        // Nothing published since the scan passed them: the oldest goes next.
        assert_eq!(s.publish(&t("e"), Message::Text("1")).unwrap().0, 1);
        assert_eq!(s.len(), 3);
        assert_eq!(["a", "c", "d", "e"].map(|n| s.contains(n)), [false, true, true, true]);
    }

    #[test]
    fn a_topic_evicted_and_made_again_never_reuses_its_seqs() {
        let s = TopicStore::new(StoreConfig { max_topics: 1, history: 10, ..Default::default() });
        let a = t("a");
        publish_numbers(&s, &a, 1..=5);
        publish_numbers(&s, &t("b"), 1..=1); // evicts "a" at seq 5
        assert_eq!(s.since("a", 3), Since::Resync { latest: 0, snapshot: None });
        // "a" again (evicting "b"): it carries on above 5, so a client that
        // saw 3 is told to resync, and one that saw 5 missed nothing.
        assert_eq!(s.publish(&a, Message::Text("new")).unwrap().0, 6);
        assert!(matches!(s.since("a", 3), Since::Resync { latest: 6, snapshot: Some(_) }));
        assert_eq!(seqs(&s.since("a", 5)), [6]);
        assert_eq!(s.latest_seq("a"), 6);
        // "b" comes back above its own last seq too.
        assert!(s.publish(&t("b"), Message::Text("x")).unwrap().0 >= 2);
    }

    #[test]
    fn concurrent_topic_creation_stays_within_the_cap() {
        let s = Arc::new(TopicStore::new(StoreConfig { max_topics: 50, ..StoreConfig::default() }));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    (0..100)
                        .filter(|n| {
                            s.publish_str(&format!("t{}", (n * 4 + i) % 120), Message::Text("1"))
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 400, "at the cap, publishes evict rather than fail");
        assert_eq!(s.len(), 50);
        let held = (0..120).filter(|i| s.snapshot(&format!("t{i}")).is_some()).count();
        assert_eq!(held, 50);
        assert_eq!(lock(&s.ring).len(), 50);
    }
}
