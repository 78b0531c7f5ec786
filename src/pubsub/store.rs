//! The topic store: per topic the next sequence number, the last value and
//! an optional bounded history, shared by every reactor and publisher.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::topic::{
    BuildTopicHasher, DEFAULT_MAX_TOPIC_LEN, MAX_TOPIC_LEN, TopicError, TopicName, topic_hash,
};
use super::wire::{Payload, encode_delivery};
use crate::message::{Frame, Message};

/// How a [`TopicStore`] is sized.
///
/// ```
/// use wsreactor::pubsub::StoreConfig;
/// let config = StoreConfig { history: 1000, max_topics: 50_000, ..StoreConfig::default() };
/// // An operator who keeps the history across restarts keeps the epoch too.
/// let restored = StoreConfig { epoch: Some(0x5eed), ..config.clone() };
/// # let _ = restored;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Deliveries kept per topic for replay to reconnecting clients. `0` keeps
    /// none but the last value (which always serves a client exactly one
    /// message behind). Default 0.
    pub history: usize,
    /// The most topics the store holds. A publish that creates one more
    /// evicts the topic published least recently (approximately: each topic
    /// gets a second chance if it was published since the eviction scan last
    /// passed it), with its last value and history. Only publishes create
    /// topics here, so only publishers drive eviction. A topic evicted and
    /// published again continues its numbering: its seqs are never those of
    /// the evicted one, so a client resuming with `since` gets a resync,
    /// never deliveries of another numbering. With a cap of 0, every publish
    /// fails with [`StoreError::TooManyTopics`].
    ///
    /// The same number caps, across the server, the topics that subscribers
    /// hold and that were never published (see
    /// [`Ctx::subscribe_after`](crate::Ctx::subscribe_after)). Default 100 000.
    pub max_topics: usize,
    /// The longest topic name accepted, in bytes (at most 255). Default 128.
    pub max_topic_len: usize,
    /// The number of lock shards, rounded up to a power of two. Default 64.
    pub shards: usize,
    /// The store's epoch (see [`TopicStore::epoch`]): `None` (the default)
    /// picks an unpredictable one, different at every start. Give one only
    /// to a store whose sequence numbers carry on from an earlier store with
    /// that epoch (state persisted across a restart), or in tests.
    pub epoch: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history: 0,
            max_topics: 100_000,
            max_topic_len: DEFAULT_MAX_TOPIC_LEN,
            shards: 64,
            epoch: None,
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The topic is new and the store already holds `max` topics.
    TooManyTopics {
        /// [`StoreConfig::max_topics`].
        max: usize,
    },
    /// The topic name is not valid (or longer than [`StoreConfig::max_topic_len`]).
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

/// Per-topic state.
struct Slot {
    /// The sequence number the next publish gets (the first is 1). Written
    /// only while `log` is locked; read without the lock as a guess.
    next: AtomicU64,
    /// The last deliveries, oldest first, contiguous in seq; at most
    /// `max(history, 1)`: the back is the last value.
    log: Mutex<VecDeque<(u64, Frame)>>,
}

/// Buckets of [`TopicStore::floors`], by a hash of the topic name.
const FLOOR_BUCKETS: usize = 1024;

/// One lock shard, alone on its cache lines.
#[repr(align(128))]
struct Shard(RwLock<HashMap<TopicName, Slot, BuildTopicHasher>>);

/// Topics, their sequence numbers, last values and histories, shared by all
/// reactors and publisher threads (`Send + Sync`; put it in an `Arc`).
///
/// A publish is encoded once into a [`Frame`] that every subscriber's queue
/// shares, and that also serves as the topic's last value and history entry.
///
/// # Locking and order
/// Topics are spread over `shards` read-write locks by a hash of the name;
/// publishing to an existing topic takes its shard's lock for reading
/// (publishers of different topics never wait for each other, even in one
/// shard) and then the topic's own mutex. Only creating a topic takes a
/// shard's write lock.
///
/// Sequence numbers start at 1 and are assigned under the topic's mutex, so
/// they are dense and the history is in order. The frame embeds its seq,
/// yet it is encoded *outside* the mutex: the publisher reads the next seq
/// without the lock, encodes with it, then locks and checks that the seq is
/// still the next one. With one publishing thread per topic (the usual
/// case) it always is, and the critical section is a compare, an increment
/// and a queue push. When another thread published in between, the frame is
/// encoded again under the lock with the right seq: still correct, just
/// serialized. The JSON check of the payload always happens outside.
///
/// Hand the frame to the reactors with [`TopicStore::publish_with`] when
/// several threads may publish to one topic: its callback runs under the
/// topic's mutex, so reactors receive the frames in seq order.
///
/// # Memory
/// A topic costs about 130 bytes plus its name and up to `max(history, 1)`
/// frames, and there are at most `max_topics` of them: at the cap, a new
/// topic evicts the one published least recently. Subscribing creates
/// nothing here: only publishes do. Besides, 8 KiB of numbering floors
/// keep evicted topics' seqs from being used again.
///
/// ```
/// use wsreactor::Message;
/// use wsreactor::pubsub::{Since, StoreConfig, TopicName, TopicStore};
///
/// let store = TopicStore::new(StoreConfig { history: 100, ..StoreConfig::default() });
/// let topic = TopicName::new("md.BTC-USD")?;
/// let (seq, frame) = store.publish(&topic, Message::Text(r#"{"bid":1}"#))?;
/// assert_eq!(seq, 1);
/// store.publish(&topic, Message::Text(r#"{"bid":2}"#))?;
///
/// // A new subscriber gets the last value at once.
/// assert_eq!(store.snapshot("md.BTC-USD").map(|(seq, _)| seq), Some(2));
/// // A client that saw seq 1 gets seq 2 from the history; the first frame
/// // published is shared, not copied.
/// match store.since("md.BTC-USD", 0) {
///     Since::Frames(frames) => assert_eq!(frames[0], (1, frame)),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(store.since("md.BTC-USD", 2), Since::UpToDate);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TopicStore {
    shards: Box<[Shard]>,
    /// `shards.len() - 1`.
    mask: usize,
    /// How many topics exist (or are being created).
    topics: AtomicUsize,
    /// The topics in the order the eviction scan visits them, each with the
    /// `next` seq it had when last visited (or created): a topic whose `next`
    /// moved since was published, and gets a second chance.
    ring: Mutex<VecDeque<(TopicName, u64)>>,
    /// Per bucket of names, the highest seq any evicted topic of the bucket
    /// had: a topic created again starts above it, so a numbering is never
    /// reused within the epoch.
    floors: Box<[AtomicU64]>,
    /// `max(history, 1)`.
    log_cap: usize,
    /// Names this store's numbering of sequence numbers.
    epoch: u64,
    config: StoreConfig,
}

impl fmt::Debug for TopicStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicStore")
            .field("topics", &self.len())
            .field("epoch", &format_args!("{:016x}", self.epoch))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // The maps are consistent at every point a panic could leave them.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A publish callback may panic with the log locked; the log is complete
    // before the callback runs.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An epoch nobody can predict and no other store is likely to have: the
/// standard library's per-process random hash keys (different in every
/// process, and per call) over the time, the process id and a counter of
/// the stores made in this process.
fn fresh_epoch() -> u64 {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    MADE.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    h.finish()
}

impl TopicStore {
    /// An empty store, with the configured epoch or a fresh one.
    ///
    /// ```
    /// use wsreactor::pubsub::{StoreConfig, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig { history: 10, ..StoreConfig::default() });
    /// assert!(store.is_empty());
    /// assert_eq!(store.config().epoch, Some(store.epoch()));
    /// ```
    pub fn new(mut config: StoreConfig) -> TopicStore {
        config.shards = config.shards.clamp(1, 1 << 16).next_power_of_two();
        config.max_topic_len = config.max_topic_len.min(MAX_TOPIC_LEN);
        let epoch = *config.epoch.get_or_insert_with(fresh_epoch);
        let shards = (0..config.shards).map(|_| Shard(RwLock::default())).collect();
        TopicStore {
            shards,
            mask: config.shards - 1,
            topics: AtomicUsize::new(0),
            ring: Mutex::new(VecDeque::new()),
            floors: (0..FLOOR_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            log_cap: config.history.max(1),
            epoch,
            config,
        }
    }

    /// The configuration in force (shards rounded, topic length capped,
    /// `epoch` always `Some`: the one in use).
    ///
    /// ```
    /// use wsreactor::pubsub::{StoreConfig, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig { shards: 5, ..StoreConfig::default() });
    /// assert_eq!(store.config().shards, 8);
    /// ```
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The store's epoch: a name for its numbering of sequence numbers.
    /// Every topic of a store counts from 1; a new store (a restarted
    /// server) counts from 1 again, so a sequence number means something
    /// only together with the epoch it was counted in. Chosen at random
    /// when the store is made, unless [`StoreConfig::epoch`] gives it.
    ///
    /// The topic protocol sends it as 16 lowercase hex digits in the
    /// `subscribed` reply; a client that names another epoch in its
    /// `since` request is told to resync (see [`since_in`](Self::since_in)).
    ///
    /// ```
    /// use wsreactor::pubsub::{StoreConfig, TopicStore};
    ///
    /// let a = TopicStore::new(StoreConfig::default());
    /// let b = TopicStore::new(StoreConfig::default());
    /// assert_ne!(a.epoch(), b.epoch());
    /// let kept = TopicStore::new(StoreConfig { epoch: Some(a.epoch()), ..StoreConfig::default() });
    /// assert_eq!(kept.epoch(), a.epoch());
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many topics the store holds.
    pub fn len(&self) -> usize {
        self.topics.load(Ordering::Relaxed).min(self.config.max_topics)
    }

    /// Whether no topic was ever published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, name: &str) -> &RwLock<HashMap<TopicName, Slot, BuildTopicHasher>> {
        // The low bits pick the shard; the map's own buckets use the high ones.
        &self.shards[topic_hash(name) as usize & self.mask].0
    }

    /// Publishes `payload` on `topic`: assigns the next sequence number,
    /// encodes the delivery once, and keeps it as the last value (and in the
    /// history). Returns the seq and the shared frame to fan out.
    ///
    /// ```
    /// use wsreactor::Message;
    /// use wsreactor::pubsub::{StoreConfig, TopicName, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig::default());
    /// let t = TopicName::new("md.ETH-USD")?;
    /// assert_eq!(store.publish(&t, Message::Text("1"))?.0, 1);
    /// assert_eq!(store.publish(&t, Message::Binary(&[1, 2]))?.0, 2);
    /// # Ok::<(), wsreactor::pubsub::StoreError>(())
    /// ```
    pub fn publish(
        &self,
        topic: &TopicName,
        payload: Message<'_>,
    ) -> Result<(u64, Frame), StoreError> {
        self.publish_payload(topic, &Payload::new(payload))
    }

    /// [`publish`](Self::publish) with a topic given as a string, validated
    /// against the store's rules. No allocation unless the topic is new.
    ///
    /// ```
    /// use wsreactor::Message;
    /// use wsreactor::pubsub::{StoreConfig, StoreError, TopicError, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig::default());
    /// assert!(store.publish_str("md.SOL-USD", Message::Text("1")).is_ok());
    /// assert_eq!(
    ///     store.publish_str("bad topic", Message::Text("1")),
    ///     Err(StoreError::BadTopic(TopicError::BadByte { at: 3 }))
    /// );
    /// ```
    pub fn publish_str(
        &self,
        topic: &str,
        payload: Message<'_>,
    ) -> Result<(u64, Frame), StoreError> {
        self.publish_inner(topic, None, &Payload::new(payload), |seq, f| (seq, f.clone()))
    }

    /// [`publish`](Self::publish) with a payload already inspected (see
    /// [`Payload`]), e.g. the `data` of a parsed publish op.
    pub fn publish_payload(
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
    /// ```
    /// use wsreactor::Message;
    /// use wsreactor::pubsub::{StoreConfig, TopicName, TopicStore, wire::Payload};
    ///
    /// let store = TopicStore::new(StoreConfig::default());
    /// let t = TopicName::new("md.ADA-USD")?;
    /// let mut outbox = Vec::new();
    /// store.publish_with(&t, &Payload::new(Message::Text("1")), |seq, frame| {
    ///     outbox.push((seq, frame.clone()))
    /// })?;
    /// assert_eq!(outbox[0].0, 1);
    /// # Ok::<(), wsreactor::pubsub::StoreError>(())
    /// ```
    pub fn publish_with<R>(
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

    fn floor(&self, name: &str) -> &AtomicU64 {
        // The shard and the map use the low and high bits; these are others.
        &self.floors[(topic_hash(name) >> 24) as usize % FLOOR_BUCKETS]
    }

    /// Evicts the topic published least recently, roughly (a clock scan:
    /// a topic published since the scan last saw it goes round once more).
    /// False if there is none. Takes the ring's lock and a shard's, never
    /// both at once in that order (creating a topic holds a shard's, then
    /// the ring's).
    fn evict_one(&self) -> bool {
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

    /// Whether `topic` is in the store: something was published on it and it
    /// was not evicted since.
    ///
    /// ```
    /// use wsreactor::Message;
    /// use wsreactor::pubsub::{StoreConfig, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig::default());
    /// assert!(!store.contains("md.BTC-USD"));
    /// store.publish_str("md.BTC-USD", Message::Text("1"))?;
    /// assert!(store.contains("md.BTC-USD"));
    /// # Ok::<(), wsreactor::pubsub::StoreError>(())
    /// ```
    pub fn contains(&self, topic: &str) -> bool {
        read(self.shard(topic)).contains_key(topic)
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
    /// use wsreactor::Message;
    /// use wsreactor::pubsub::{Since, StoreConfig, TopicName, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig { history: 2, ..StoreConfig::default() });
    /// let t = TopicName::new("a")?;
    /// for i in 1..=5 {
    ///     store.publish(&t, Message::Text(&i.to_string()))?;
    /// }
    /// // Seqs 4 and 5 are held.
    /// assert!(matches!(store.since("a", 3), Since::Frames(f) if f.len() == 2));
    /// assert!(matches!(store.since("a", 2), Since::Resync { latest: 5, snapshot: Some(_) }));
    /// assert!(matches!(store.since("a", 9), Since::Resync { latest: 5, .. }));
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
    /// use wsreactor::Message;
    /// use wsreactor::pubsub::{Since, StoreConfig, TopicName, TopicStore};
    ///
    /// let store = TopicStore::new(StoreConfig { history: 100, ..StoreConfig::default() });
    /// let t = TopicName::new("a")?;
    /// for i in 1..=50 {
    ///     store.publish(&t, Message::Text(&i.to_string()))?;
    /// }
    /// let here = Some(store.epoch());
    /// assert!(matches!(store.since_in("a", here, 41), Since::Frames(f) if f.len() == 9));
    /// // Seq 41 of another epoch says nothing about this store's seq 42.
    /// let elsewhere = Some(store.epoch() ^ 1);
    /// assert!(matches!(store.since_in("a", elsewhere, 41), Since::Resync { latest: 50, .. }));
    /// assert!(matches!(store.since_in("a", elsewhere, 50), Since::Resync { latest: 50, .. }));
    /// // Without an epoch the seq is taken at its word.
    /// assert!(matches!(store.since_in("a", None, 41), Since::Frames(f) if f.len() == 9));
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
    use crate::proto::frame::OpCode;
    use crate::pubsub::frame_body;
    use serde_json::Value;
    use std::sync::Arc;
    use std::thread;

    fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn json(frame: &Frame) -> Value {
        let (op, body) = frame_body(frame);
        assert_eq!(op, OpCode::Text);
        serde_json::from_slice(&body).unwrap()
    }

    fn seqs(since: &Since) -> Vec<u64> {
        match since {
            Since::Frames(f) => f
                .iter()
                .map(|(s, fr)| {
                    assert_eq!(json(fr)["seq"], *s);
                    *s
                })
                .collect(),
            other => panic!("not frames: {other:?}"),
        }
    }

    fn store(history: usize) -> TopicStore {
        TopicStore::new(StoreConfig { history, ..StoreConfig::default() })
    }

    /// Publishes the numbers `range` on `topic`, as text.
    fn publish_numbers(s: &TopicStore, topic: &TopicName, range: std::ops::RangeInclusive<u64>) {
        for i in range {
            s.publish(topic, Message::Text(&i.to_string())).unwrap();
        }
    }

    #[test]
    fn send_sync() {
        fn check<T: Send + Sync>() {}
        check::<TopicStore>();
    }

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
    fn epochs_are_fresh_unless_configured() {
        let epochs: Vec<u64> = (0..64).map(|_| store(0).epoch()).collect();
        let mut distinct = epochs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), epochs.len(), "two stores share an epoch: {epochs:x?}");
        // Not a counter: the high bits vary too.
        assert!(epochs.iter().any(|e| e >> 32 != epochs[0] >> 32));
        for e in [0, 1, 0xdead_beef, u64::MAX] {
            let s = TopicStore::new(StoreConfig { epoch: Some(e), ..StoreConfig::default() });
            assert_eq!((s.epoch(), s.config().epoch), (e, Some(e)));
        }
        let s = store(0);
        assert_eq!(s.config().epoch, Some(s.epoch()));
        let shown = format!(
            "{:?}",
            TopicStore::new(StoreConfig { epoch: Some(0xab), ..Default::default() })
        );
        assert!(shown.contains("epoch: 00000000000000ab"), "{shown}");
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
