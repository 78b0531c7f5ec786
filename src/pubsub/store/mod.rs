//! The topic store: per topic the next sequence number, the last value and
//! an optional bounded history, shared by every reactor and publisher.
//!
//! By job: this file holds the store's layout, configuration and
//! construction; `publish` numbers, encodes and keeps a publish (creating
//! the topic if need be); `history` reads last values and histories back;
//! `evict` makes room at the topic cap (a CLOCK ring) and keeps the
//! numbering floors of evicted topics.

mod evict;
mod history;
mod publish;

use evict::FLOOR_BUCKETS;
pub use history::Since;
pub use publish::StoreError;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::topic::{BuildTopicHasher, DEFAULT_MAX_TOPIC_LEN, MAX_TOPIC_LEN, TopicName, topic_hash};
use crate::message::Frame;

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

/// Per-topic state.
struct Slot {
    /// The sequence number the next publish gets (the first is 1). Written
    /// only while `log` is locked; read without the lock as a guess.
    next: AtomicU64,
    /// The last deliveries, oldest first, contiguous in seq; at most
    /// `max(history, 1)`: the back is the last value.
    log: Mutex<VecDeque<(u64, Frame)>>,
}

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
/// Publishing is the server's: [`Publisher::publish`](crate::Publisher::publish)
/// and [`Ctx::publish`](crate::Ctx::publish) number and keep a publish here
/// before they return, and hand its frame to the reactors while the topic's
/// mutex is still held, so reactors receive a topic's frames in seq order
/// whichever threads published them. Outside the crate the store is read
/// only: a publish here alone would be numbered but delivered to no one.
///
/// # Memory
/// A topic costs about 130 bytes plus its name and up to `max(history, 1)`
/// frames, and there are at most `max_topics` of them: at the cap, a new
/// topic evicts the one published least recently. Subscribing creates
/// nothing here: only publishes do. Besides, 8 KiB of numbering floors
/// keep evicted topics' seqs from being used again.
///
/// ```
/// use std::time::Duration;
/// use wsreactor::pubsub::{Since, StoreConfig};
/// use wsreactor::{Handler, Message, Server};
///
/// struct App;
/// impl Handler for App {
///     type Conn = ();
/// }
///
/// let server = Server::builder()
///     .bind("127.0.0.1:0")?
///     .reactors(1)
///     .topics(StoreConfig { history: 100, ..StoreConfig::default() })
///     .handler(|_| App)
///     .build()?;
/// let publisher = server.publisher();
/// let running = server.spawn()?;
/// assert_eq!(publisher.publish("md.BTC-USD", Message::Text(r#"{"bid":1}"#))?, 1);
/// publisher.publish("md.BTC-USD", Message::Text(r#"{"bid":2}"#))?;
///
/// // The store is updated before `publish` returns.
/// let store = publisher.store();
/// // A new subscriber gets the last value at once.
/// let (seq, last) = store.snapshot("md.BTC-USD").expect("published");
/// assert_eq!(seq, 2);
/// // A client that saw seq 1 gets seq 2 from the history: the frame kept
/// // as the last value, shared, not copied.
/// match store.since("md.BTC-USD", 1) {
///     Since::Frames(frames) => assert_eq!(frames, [(2, last)]),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(store.since("md.BTC-USD", 2), Since::UpToDate);
/// running.shutdown(Duration::from_secs(1))?;
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
}

/// Helpers of the store's tests.
#[cfg(test)]
mod test_support {
    use super::*;
    use crate::message::Message;
    use crate::proto::frame::OpCode;
    use crate::pubsub::frame_body;
    use serde_json::Value;

    pub(super) fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    pub(super) fn json(frame: &Frame) -> Value {
        let (op, body) = frame_body(frame);
        assert_eq!(op, OpCode::Text);
        serde_json::from_slice(&body).unwrap()
    }

    pub(super) fn seqs(since: &Since) -> Vec<u64> {
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

    pub(super) fn store(history: usize) -> TopicStore {
        TopicStore::new(StoreConfig { history, ..StoreConfig::default() })
    }

    /// Publishes the numbers `range` on `topic`, as text.
    pub(super) fn publish_numbers(
        s: &TopicStore,
        topic: &TopicName,
        range: std::ops::RangeInclusive<u64>,
    ) {
        for i in range {
            s.publish(topic, Message::Text(&i.to_string())).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::store;

    #[test]
    fn send_sync() {
        fn check<T: Send + Sync>() {}
        check::<TopicStore>();
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
}
