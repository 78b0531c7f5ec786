//! Reading back: whether a topic is held, its last value and latest seq,
//! and what a client that last saw a given seq has missed ([`Since`]).

use std::sync::atomic::Ordering;

use super::{TopicStore, lock, read};
use crate::message::Frame;

/// What a client that last saw sequence number `seq` on a topic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Nothing: `seq` is the latest.
    UpToDate,
    /// The deliveries after `seq`, oldest first, with their sequence numbers.
    Frames(Vec<(u64, Frame)>),
    /// The history does not reach back to `seq + 1`, or `seq` is ahead of the
    /// topic (the client saw an earlier run of the server): the client must
    /// start over from `latest`, whose delivery is `snapshot` (`None` when
    /// nothing was ever published, `latest` then being 0).
    Resync {
        /// The topic's latest sequence number.
        latest: u64,
        /// The latest delivery (the last value).
        snapshot: Option<Frame>,
    },
}

impl TopicStore {
    /// Whether `topic` is in the store: something was published on it and it
    /// was not evicted since.
    ///
    /// ```
    /// use wsreactor::{Message, Server};
    /// # struct App;
    /// # impl wsreactor::Handler for App {
    /// #     type Conn = ();
    /// # }
    ///
    /// let server = Server::builder().bind("127.0.0.1:0")?.reactors(1).handler(|_| App).build()?;
    /// let publisher = server.publisher();
    /// let running = server.spawn()?;
    /// let store = publisher.store();
    /// assert!(!store.contains("md.BTC-USD"));
    /// publisher.publish("md.BTC-USD", Message::Text("1"))?;
    /// assert!(store.contains("md.BTC-USD"));
    /// running.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains(&self, topic: &str) -> bool {
        read(self.shard(topic)).contains_key(topic)
    }

    /// The topic's latest delivery (its last value) and its seq, for a new
    /// subscriber; `None` if nothing was ever published on it.
    pub fn snapshot(&self, topic: &str) -> Option<(u64, Frame)> {
        let map = read(self.shard(topic));
        let slot = map.get(topic)?;
        lock(&slot.log).back().cloned()
    }

    /// The topic's latest sequence number (0: nothing published yet).
    pub fn latest_seq(&self, topic: &str) -> u64 {
        let map = read(self.shard(topic));
        map.get(topic).map_or(0, |slot| {
            let _log = lock(&slot.log);
            slot.next.load(Ordering::Relaxed) - 1
        })
    }

    /// What a client that last saw `seq` on `topic` (0: none) has missed.
    ///
    /// `Frames` when the history (or, with no history, the last value) holds
    /// every delivery after `seq`; `UpToDate` when `seq` is the latest;
    /// `Resync` when deliveries after `seq` are gone, or when `seq` is ahead of
    /// the topic (a seq from an earlier run of the server).
    ///
    /// ```
    /// use wsreactor::pubsub::{Since, StoreConfig};
    /// use wsreactor::{Message, Server};
    /// # struct App;
    /// # impl wsreactor::Handler for App {
    /// #     type Conn = ();
    /// # }
    ///
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .reactors(1)
    ///     .topics(StoreConfig { history: 2, ..StoreConfig::default() })
    ///     .handler(|_| App)
    ///     .build()?;
    /// let publisher = server.publisher();
    /// let running = server.spawn()?;
    /// for i in 1..=5 {
    ///     publisher.publish("a", Message::Text(&i.to_string()))?;
    /// }
    /// let store = publisher.store();
    /// // Seqs 4 and 5 are held.
    /// assert!(matches!(store.since("a", 3), Since::Frames(f) if f.len() == 2));
    /// assert!(matches!(store.since("a", 2), Since::Resync { latest: 5, snapshot: Some(_) }));
    /// assert!(matches!(store.since("a", 9), Since::Resync { latest: 5, .. }));
    /// running.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn since(&self, topic: &str, seq: u64) -> Since {
        let map = read(self.shard(topic));
        let Some(slot) = map.get(topic) else {
            return if seq == 0 {
                Since::UpToDate
            } else {
                Since::Resync { latest: 0, snapshot: None }
            };
        };
        let log = lock(&slot.log);
        let latest = slot.next.load(Ordering::Relaxed) - 1;
        if seq == latest {
            return Since::UpToDate;
        }
        let resync = || Since::Resync { latest, snapshot: log.back().map(|(_, f)| f.clone()) };
        if seq > latest {
            return resync();
        }
        // seq < latest, so the log is not empty; it is contiguous up to latest.
        match log.front() {
            Some(&(oldest, _)) if oldest <= seq + 1 => {
                let skip = usize::try_from(seq + 1 - oldest).unwrap_or(usize::MAX);
                Since::Frames(log.iter().skip(skip).cloned().collect())
            }
            _ => resync(),
        }
    }
    /// [`since`](Self::since) for a client that counted `seq` in `epoch`
    /// (`None`: it did not say). A known epoch other than this store's means
    /// the client's numbers come from another numbering (an earlier run of
    /// the server): whatever `seq` is, the answer is [`Since::Resync`] with
    /// the topic's latest seq and last value (`latest` 0 and no snapshot if
    /// nothing was published here). With this store's epoch, or none, it is
    /// [`since`](Self::since).
    ///
    /// ```
    /// use wsreactor::pubsub::{Since, StoreConfig};
    /// use wsreactor::{Message, Server};
    /// # struct App;
    /// # impl wsreactor::Handler for App {
    /// #     type Conn = ();
    /// # }
    ///
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")?
    ///     .reactors(1)
    ///     .topics(StoreConfig { history: 100, ..StoreConfig::default() })
    ///     .handler(|_| App)
    ///     .build()?;
    /// let publisher = server.publisher();
    /// let running = server.spawn()?;
    /// for i in 1..=50 {
    ///     publisher.publish("a", Message::Text(&i.to_string()))?;
    /// }
    /// let store = publisher.store();
    /// let here = Some(store.epoch());
    /// assert!(matches!(store.since_in("a", here, 41), Since::Frames(f) if f.len() == 9));
    /// // Seq 41 of another epoch says nothing about this store's seq 42.
    /// let elsewhere = Some(store.epoch() ^ 1);
    /// assert!(matches!(store.since_in("a", elsewhere, 41), Since::Resync { latest: 50, .. }));
    /// assert!(matches!(store.since_in("a", elsewhere, 50), Since::Resync { latest: 50, .. }));
    /// // Without an epoch the seq is taken at its word.
    /// assert!(matches!(store.since_in("a", None, 41), Since::Frames(f) if f.len() == 9));
    /// running.shutdown(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn since_in(&self, topic: &str, epoch: Option<u64>, seq: u64) -> Since {
        match epoch {
            Some(e) if e != self.epoch => self.resync(topic),
            _ => self.since(topic, seq),
        }
    }

    /// The topic's latest seq and last value, read together.
    fn resync(&self, topic: &str) -> Since {
        let map = read(self.shard(topic));
        let Some(slot) = map.get(topic) else {
            return Since::Resync { latest: 0, snapshot: None };
        };
        let log = lock(&slot.log);
        let latest = slot.next.load(Ordering::Relaxed) - 1;
        Since::Resync { latest, snapshot: log.back().map(|(_, f)| f.clone()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::pubsub::store::test_support::*;
    use std::sync::Arc;

    #[test]
    fn last_value_cache() {
        let s = store(0);
        assert_eq!(s.snapshot("a"), None);
        let a = t("a");
        let (_, f1) = s.publish(&a, Message::Text("1")).unwrap();
        assert_eq!(s.snapshot("a"), Some((1, f1)));
        let (_, f2) = s.publish(&a, Message::Text("\"two\"")).unwrap();
        let snap = s.snapshot("a").unwrap();
        assert_eq!(snap, (2, f2.clone()));
        // The same shared bytes, not a copy.
        assert!(Arc::ptr_eq(snap.1.plain(), f2.plain()));
        assert_eq!(json(&snap.1)["data"], "two");
        assert_eq!(s.snapshot("b"), None);
    }

    #[test]
    fn since_without_history_uses_the_last_value() {
        let s = store(0);
        let a = t("a");
        assert_eq!(s.since("a", 0), Since::UpToDate);
        assert_eq!(s.since("a", 5), Since::Resync { latest: 0, snapshot: None });
        for i in 1..=3 {
            s.publish(&a, Message::Text(&i.to_string())).unwrap();
        }
        assert_eq!(seqs(&s.since("a", 2)), [3]);
        assert_eq!(s.since("a", 3), Since::UpToDate);
        let snap = s.snapshot("a").map(|(_, f)| f);
        assert_eq!(s.since("a", 1), Since::Resync { latest: 3, snapshot: snap.clone() });
        assert_eq!(s.since("a", 0), Since::Resync { latest: 3, snapshot: snap.clone() });
        assert_eq!(s.since("a", 4), Since::Resync { latest: 3, snapshot: snap });
    }

    #[test]
    fn history_replay_and_resync_boundaries() {
        let s = store(5);
        let a = t("a");
        // Fewer than `history` published: all replayable from 0.
        publish_numbers(&s, &a, 1..=3);
        assert_eq!(seqs(&s.since("a", 0)), [1, 2, 3]);
        publish_numbers(&s, &a, 4..=12);
        // Held: 8..=12.
        assert_eq!(
            seqs(&s.since("a", 7)),
            [8, 9, 10, 11].into_iter().chain([12]).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&s.since("a", 8)), [9, 10, 11, 12]);
        assert_eq!(seqs(&s.since("a", 11)), [12]);
        assert_eq!(s.since("a", 12), Since::UpToDate);
        assert!(matches!(s.since("a", 6), Since::Resync { latest: 12, snapshot: Some(_) }));
        assert!(matches!(s.since("a", 0), Since::Resync { latest: 12, .. }));
        assert!(matches!(s.since("a", 13), Since::Resync { latest: 12, .. }));
        assert!(matches!(s.since("a", u64::MAX), Since::Resync { latest: 12, .. }));
        // The replayed frames carry their data.
        if let Since::Frames(f) = s.since("a", 10) {
            assert_eq!(json(&f[0].1)["data"], 11);
        }
    }

    #[test]
    fn history_of_one() {
        let s = store(1);
        let a = t("a");
        s.publish(&a, Message::Text("1")).unwrap();
        s.publish(&a, Message::Text("2")).unwrap();
        assert_eq!(seqs(&s.since("a", 1)), [2]);
        assert!(matches!(s.since("a", 0), Since::Resync { latest: 2, .. }));
    }

    #[test]
    fn another_epoch_always_resyncs() {
        let s = store(100);
        publish_numbers(&s, &t("a"), 1..=50);
        let (here, other) = (Some(s.epoch()), Some(!s.epoch()));
        let last = s.snapshot("a").map(|(_, f)| f);
        assert_eq!(seqs(&s.since_in("a", here, 41)), (42..=50).collect::<Vec<_>>());
        assert_eq!(seqs(&s.since_in("a", None, 41)), (42..=50).collect::<Vec<_>>());
        assert_eq!(s.since_in("a", here, 50), Since::UpToDate);
        assert!(matches!(s.since_in("a", here, 51), Since::Resync { latest: 50, .. }));
        for seq in [0, 1, 41, 49, 50, 51, u64::MAX] {
            assert_eq!(
                s.since_in("a", other, seq),
                Since::Resync { latest: 50, snapshot: last.clone() },
                "seq {seq}"
            );
        }
        // A topic never published here: nothing to send but the notice.
        assert_eq!(s.since_in("b", other, 0), Since::Resync { latest: 0, snapshot: None });
        assert_eq!(s.since_in("b", here, 0), Since::UpToDate);
    }
}
