//! A reactor's subscriber sets: which of its connections take which topics.
//!
//! Each topic has a vector of members (slot and generation) that a publish
//! walks once; each connection has the list of its topics with its position
//! in each vector, so unsubscribing and closing are O(1) per topic
//! (swap-remove), never a scan of a topic's subscribers.
//!
//! A topic exists here only while it has members: the last one to leave
//! removes it, and the maps shrink as they empty, so a client that churns
//! through names leaves nothing behind. A topic that the store does not
//! hold (nothing was ever published on it) counts against a server-wide cap
//! ([`Unpublished`]) while it exists here; subscribing to a published topic
//! never fails on that cap, so clients subscribing to made-up names cannot
//! lock others out of real ones.
//!
//! A topic's slow-consumer policy is resolved from the prefix rules once,
//! when the topic first gets a subscriber here, and kept with its members.
//! Its queued frames are tagged (for conflation) with a number no other
//! topic here had before it, so a topic removed and another created in its
//! place never conflate each other's frames.
//!
//! A subscription starts *after* a sequence number (the topic's latest
//! when it was made, or the seq of the snapshot or replay its subscriber
//! was sent). Publishes up to it may still be on their way through this
//! reactor's inbox; a new member is passed over for those, so that it never
//! gets a delivery older than what it was already sent. Only members that
//! joined ahead of this reactor's deliveries are remembered for that
//! (`joiners`), and only until the deliveries catch up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use slab::Slab;

use crate::config::{SlowConsumer, SlowConsumerRules};
use crate::pubsub::TopicName;

/// A subscriber: a connection's slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Member {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// The server-wide count of topics that subscribers hold and the store
/// does not (names never published), with its cap. Shared by the reactors;
/// a name held on two reactors counts twice.
#[derive(Debug)]
pub(crate) struct Unpublished {
    held: AtomicUsize,
    max: usize,
}

impl Unpublished {
    pub(crate) fn new(max: usize) -> Self {
        Unpublished { held: AtomicUsize::new(0), max }
    }

    /// Counts one more; false (and nothing counted) at the cap.
    fn take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    fn give_back(&self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }

    /// How many are held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// A subscription refused: the topic is new here, nothing was ever
/// published on it, and the server already holds [`Unpublished::max`] such
/// topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyTopics {
    pub(crate) max: usize,
}

struct Topic {
    name: TopicName,
    members: Vec<Member>,
    /// What to do with a member whose queue is full.
    policy: SlowConsumer,
    /// The tag of this topic's queued frames (unique on this reactor).
    tag: u32,
    /// Counted in [`Unpublished`].
    counted: bool,
    /// The seq of the last publish delivered here (0: none yet).
    delivered: u64,
    /// Members whose subscription starts after a seq not yet delivered here.
    joiners: Vec<(Member, u64)>,
}

/// The subscriber sets of one reactor.
pub(crate) struct Topics {
    /// Topic ids: keys of `topics`.
    ids: HashMap<TopicName, u32>,
    topics: Slab<Topic>,
    /// Per connection: (topic id, position in that topic's members).
    by_conn: HashMap<usize, Vec<(u32, u32)>>,
    /// Where a new topic's slow-consumer policy comes from.
    rules: SlowConsumerRules,
    /// The server-wide cap on topics held that were never published.
    unpublished: Arc<Unpublished>,
    /// The tag the next topic gets (never 0: untagged frames).
    next_tag: u32,
    /// Roughly the heap bytes all this takes (for the memory budget).
    bytes: usize,
}

/// Roughly what a topic costs here besides its name: its entry in the slab
/// and in the map of names.
const TOPIC_BYTES: usize = std::mem::size_of::<Topic>() + 48;
/// Roughly what one subscription costs: the member, and the connection's
/// entry for it (with the vectors' slack).
const SUBSCRIPTION_BYTES: usize = 32;

impl Default for Topics {
    fn default() -> Self {
        Topics::new(SlowConsumerRules::default(), Arc::new(Unpublished::new(usize::MAX)))
    }
}

/// Frees a map's spare room once it is mostly empty (the rehash is paid for
/// by the removals that emptied it).
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

impl Topics {
    /// Empty sets whose topics take their slow-consumer policy from `rules`
    /// and count against `unpublished` while nothing was published on them.
    pub(crate) fn new(rules: SlowConsumerRules, unpublished: Arc<Unpublished>) -> Self {
        Topics {
            ids: HashMap::new(),
            topics: Slab::new(),
            by_conn: HashMap::new(),
            rules,
            unpublished,
            next_tag: 1,
            bytes: 0,
        }
    }

    /// Roughly the heap bytes the subscriber sets take.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The id of `name` on this reactor, if anyone here is subscribed.
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// How many topics exist on this reactor.
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// How many topics the connection in `slot` holds.
    pub(crate) fn count(&self, slot: usize) -> usize {
        self.by_conn.get(&slot).map_or(0, Vec::len)
    }

    /// Whether the connection in `slot` is subscribed to `name`.
    pub(crate) fn is_subscribed(&self, slot: usize, name: &str) -> bool {
        self.id(name).is_some_and(|id| self.is_member(slot, id))
    }

    /// Subscribes to the publishes after seq `after`; `Ok(false)` if it
    /// already was subscribed. A topic new here is created: `published`
    /// says whether the store holds it (`Some(true)`), or not, and then it
    /// counts against the server-wide cap, or that no such topic may be
    /// created now (`None`: the memory budget is nearly spent); at the cap,
    /// or then, the subscription is refused.
    pub(crate) fn subscribe(
        &mut self,
        slot: usize,
        generation: u32,
        name: &TopicName,
        after: u64,
        published: impl FnOnce(&str) -> Option<bool>,
    ) -> Result<bool, TooManyTopics> {
        let id = match self.ids.get(name.as_str()) {
            Some(&id) => {
                if self.is_member(slot, id) {
                    return Ok(false);
                }
                id
            }
            None => self.create(name, published)?,
        };
        let mine = self.by_conn.entry(slot).or_default();
        let topic = &mut self.topics[id as usize];
        let member = Member { slot: slot as u32, generation };
        mine.push((id, topic.members.len() as u32));
        topic.members.push(member);
        self.bytes += SUBSCRIPTION_BYTES;
        if after > topic.delivered {
            topic.joiners.push((member, after));
        }
        Ok(true)
    }

    fn is_member(&self, slot: usize, id: u32) -> bool {
        self.by_conn.get(&slot).is_some_and(|mine| mine.iter().any(|&(t, _)| t == id))
    }

    fn create(
        &mut self,
        name: &TopicName,
        published: impl FnOnce(&str) -> Option<bool>,
    ) -> Result<u32, TooManyTopics> {
        let refused = TooManyTopics { max: self.unpublished.max };
        let counted = !published(name.as_str()).ok_or(refused)?;
        if counted && !self.unpublished.take() {
            return Err(refused);
        }
        self.bytes += TOPIC_BYTES + name.len();
        let tag = self.next_tag;
        self.next_tag = self.next_tag.checked_add(1).unwrap_or(1);
        let policy = self.rules.policy_for(name.as_str());
        let id = self.topics.insert(Topic {
            name: name.clone(),
            members: Vec::new(),
            policy,
            tag,
            counted,
            delivered: 0,
            joiners: Vec::new(),
        }) as u32;
        self.ids.insert(name.clone(), id);
        Ok(id)
    }

    /// Removes topic `id` if nobody is subscribed any more.
    fn remove_if_unused(&mut self, id: u32) {
        let unused = self.topics.get(id as usize).is_some_and(|t| t.members.is_empty());
        if !unused {
            return;
        }
        let topic = self.topics.remove(id as usize);
        self.bytes -= TOPIC_BYTES + topic.name.len();
        self.ids.remove(topic.name.as_str());
        if topic.counted {
            self.unpublished.give_back();
        }
        shrink(&mut self.ids);
        if self.topics.capacity() > 64 && self.topics.len() * 4 < self.topics.capacity() {
            self.topics.shrink_to_fit();
        }
    }

    /// Called before delivering topic `id`'s publish `seq` here: fills
    /// `skip` (sorted) with the members whose subscription starts at or
    /// after `seq`, and counts `seq` as delivered.
    pub(crate) fn start_delivery(&mut self, id: u32, seq: u64, skip: &mut Vec<Member>) {
        skip.clear();
        let Some(topic) = self.topics.get_mut(id as usize) else { return };
        topic.delivered = topic.delivered.max(seq);
        if topic.joiners.is_empty() {
            return;
        }
        skip.extend(topic.joiners.iter().filter(|&&(_, after)| after >= seq).map(|&(m, _)| m));
        skip.sort_unstable();
        topic.joiners.retain(|&(_, after)| after > seq);
    }

    /// Whether a delivery of topic `id` up to `seq` would pass over a member
    /// (so it needs [`Topics::start_delivery`]'s list).
    pub(crate) fn has_joiners_until(&self, id: u32, seq: u64) -> bool {
        self.topic(id).is_some_and(|t| t.joiners.iter().any(|&(_, after)| after >= seq))
    }

    /// Unsubscribes; false if it was not subscribed.
    pub(crate) fn unsubscribe(&mut self, slot: usize, name: &str) -> bool {
        let Some(id) = self.id(name) else { return false };
        let Some(mine) = self.by_conn.get_mut(&slot) else { return false };
        let Some(i) = mine.iter().position(|&(t, _)| t == id) else { return false };
        let (_, pos) = mine.swap_remove(i);
        if mine.is_empty() {
            self.by_conn.remove(&slot);
            shrink(&mut self.by_conn);
        }
        self.remove_member(id, pos);
        true
    }

    /// Drops every subscription of the connection in `slot`.
    pub(crate) fn remove_conn(&mut self, slot: usize) {
        let Some(mine) = self.by_conn.remove(&slot) else { return };
        shrink(&mut self.by_conn);
        for (id, pos) in mine {
            self.remove_member(id, pos);
        }
    }

    fn remove_member(&mut self, id: u32, pos: u32) {
        let topic = &mut self.topics[id as usize];
        let member = topic.members.swap_remove(pos as usize);
        self.bytes -= SUBSCRIPTION_BYTES;
        if !topic.joiners.is_empty() {
            // A later subscription of this connection starts afresh.
            topic.joiners.retain(|&(m, _)| m != member);
        }
        // The last member moved into `pos`: tell its connection.
        if let Some(moved) = topic.members.get(pos as usize) {
            if let Some(theirs) = self.by_conn.get_mut(&(moved.slot as usize)) {
                if let Some(entry) = theirs.iter_mut().find(|(t, _)| *t == id) {
                    entry.1 = pos;
                }
            }
        }
        self.remove_if_unused(id);
    }

    /// The members of topic `id`.
    pub(crate) fn members(&self, id: u32) -> &[Member] {
        self.topic(id).map_or(&[], |t| &t.members)
    }

    /// The slow-consumer policy of topic `id` and the tag of its queued frames.
    pub(crate) fn policy(&self, id: u32) -> (SlowConsumer, u32) {
        self.topic(id).map_or((SlowConsumer::default(), 0), |t| (t.policy, t.tag))
    }

    fn topic(&self, id: u32) -> Option<&Topic> {
        self.topics.get(id as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    /// Subscribes to a published topic (no cap applies).
    fn sub(t: &mut Topics, slot: usize, generation: u32, topic: &str, after: u64) -> bool {
        t.subscribe(slot, generation, &name(topic), after, |_| Some(true)).unwrap()
    }

    fn slots(t: &Topics, topic: &str) -> Vec<u32> {
        let mut v: Vec<u32> =
            t.id(topic).map_or(vec![], |id| t.members(id).iter().map(|m| m.slot).collect());
        v.sort();
        v
    }

    #[test]
    fn subscribe_unsubscribe_and_close_keep_positions_right() {
        let mut t = Topics::default();
        for slot in 0..6 {
            assert!(sub(&mut t, slot, 1, "a", 0));
            if slot % 2 == 0 {
                assert!(sub(&mut t, slot, 1, "b", 0));
            }
        }
        assert!(!sub(&mut t, 3, 1, "a", 0), "already subscribed");
        assert_eq!(slots(&t, "a"), [0, 1, 2, 3, 4, 5]);
        assert!(t.unsubscribe(0, "a")); // member 5 moves into position 0
        assert!(!t.unsubscribe(0, "a"));
        t.remove_conn(5); // must find its new position
        assert_eq!(slots(&t, "a"), [1, 2, 3, 4]);
        t.remove_conn(2);
        assert_eq!(slots(&t, "a"), [1, 3, 4]);
        assert_eq!(slots(&t, "b"), [0, 4]);
        assert_eq!((t.count(4), t.count(2)), (2, 0));
        for slot in [1, 3, 4, 0] {
            t.remove_conn(slot);
        }
        assert!(slots(&t, "a").is_empty() && slots(&t, "b").is_empty());
        assert!(t.by_conn.is_empty());
    }

    /// Delivers publishes `seqs` of topic "a" and returns, per publish,
    /// the slots it reaches.
    fn deliver(t: &mut Topics, seqs: std::ops::RangeInclusive<u64>) -> Vec<Vec<u32>> {
        let id = t.id("a").unwrap();
        let mut skip = Vec::new();
        seqs.map(|seq| {
            t.start_delivery(id, seq, &mut skip);
            let mut reached: Vec<u32> = t
                .members(id)
                .iter()
                .filter(|m| skip.binary_search(m).is_err())
                .map(|m| m.slot)
                .collect();
            reached.sort();
            reached
        })
        .collect()
    }

    #[test]
    fn a_new_member_is_passed_over_for_publishes_up_to_its_start() {
        let mut t = Topics::default();
        assert!(sub(&mut t, 0, 1, "a", 0));
        assert_eq!(deliver(&mut t, 1..=2), [vec![0], vec![0]]);
        // Seqs 3..=5 are on their way here when slot 1 joins after 4, and
        // slot 2 after 2 (already delivered here: nothing to remember).
        assert!(sub(&mut t, 1, 1, "a", 4));
        assert!(sub(&mut t, 2, 1, "a", 2));
        assert!(t.has_joiners_until(t.id("a").unwrap(), 3));
        assert_eq!(deliver(&mut t, 3..=6), [vec![0, 2], vec![0, 2], vec![0, 1, 2], vec![0, 1, 2]]);
        assert!(t.topics[0].joiners.is_empty(), "forgotten once caught up");
        // Leaving and rejoining within the window: the later start counts.
        assert!(sub(&mut t, 3, 7, "a", 9));
        assert!(t.unsubscribe(3, "a"));
        assert!(sub(&mut t, 3, 7, "a", 7));
        assert_eq!(deliver(&mut t, 7..=8), [vec![0, 1, 2], vec![0, 1, 2, 3]]);
    }

    #[test]
    fn each_topic_keeps_the_policy_its_prefix_rule_gives() {
        let mut rules = SlowConsumerRules::default();
        rules.set_default(SlowConsumer::Drop);
        rules.add("md.", SlowConsumer::Conflate);
        rules.add("md.trades.", SlowConsumer::Close);
        let mut t = Topics::new(rules, Arc::new(Unpublished::new(usize::MAX)));
        for (slot, topic) in ["md.X", "alerts.Y", "md.trades.X", "md.X"].into_iter().enumerate() {
            sub(&mut t, slot, 1, topic, 0);
        }
        let policy = |t: &Topics, topic: &str| t.id(topic).map(|id| t.policy(id).0);
        assert_eq!(policy(&t, "md.X"), Some(SlowConsumer::Conflate));
        assert_eq!(policy(&t, "alerts.Y"), Some(SlowConsumer::Drop));
        assert_eq!(policy(&t, "md.trades.X"), Some(SlowConsumer::Close));
        // Still the topic's policy after its members come and go.
        t.remove_conn(0);
        t.remove_conn(3);
        assert!(sub(&mut t, 4, 1, "md.X", 0));
        assert_eq!(policy(&t, "md.X"), Some(SlowConsumer::Conflate));
    }

    #[test]
    fn a_topic_nobody_holds_is_forgotten_and_the_maps_shrink() {
        let mut t = Topics::default();
        for i in 0..10_000 {
            let topic = format!("churn.{i}");
            assert!(sub(&mut t, i % 7, 1, &topic, 0));
            if i % 3 == 0 {
                assert!(sub(&mut t, 100, 1, &topic, 0)); // a second member
            }
            assert!(t.unsubscribe(i % 7, &topic));
            t.remove_conn(100);
        }
        assert_eq!((t.len(), t.bytes()), (0, 0));
        assert!(t.ids.is_empty() && t.by_conn.is_empty());
        assert!(t.ids.capacity() <= 64, "ids kept room for {}", t.ids.capacity());
        assert!(t.topics.capacity() <= 64, "slab kept room for {}", t.topics.capacity());
        // Held topics keep working after others come and go.
        assert!(sub(&mut t, 1, 1, "kept", 0));
        for i in 0..1000 {
            assert!(sub(&mut t, 2, 1, &format!("x{i}"), 0));
        }
        t.remove_conn(2);
        assert_eq!(slots(&t, "kept"), [1]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn only_unpublished_topics_count_against_the_cap() {
        let cap = Arc::new(Unpublished::new(2));
        let mut t = Topics::new(SlowConsumerRules::default(), Arc::clone(&cap));
        let mut other = Topics::new(SlowConsumerRules::default(), Arc::clone(&cap));
        let unpublished = |_: &str| Some(false);
        assert_eq!(t.subscribe(0, 1, &name("a"), 0, unpublished), Ok(true));
        assert_eq!(t.subscribe(1, 1, &name("a"), 0, unpublished), Ok(true), "not a new topic");
        assert_eq!(other.subscribe(0, 1, &name("b"), 0, unpublished), Ok(true));
        assert_eq!(cap.held(), 2);
        // At the cap: a new unpublished name is refused, on any reactor...
        assert_eq!(t.subscribe(0, 1, &name("c"), 0, unpublished), Err(TooManyTopics { max: 2 }));
        assert_eq!(t.count(0), 1, "nothing half-done");
        // ... a published one never is.
        assert_eq!(t.subscribe(0, 1, &name("md.X"), 0, |_| Some(true)), Ok(true));
        // Near the memory cap no topic may be made, published or not.
        assert_eq!(t.subscribe(0, 1, &name("md.Y"), 0, |_| None), Err(TooManyTopics { max: 2 }));
        assert_eq!(cap.held(), 2);
        // Leaving gives the room back once the topic's last member is gone.
        t.remove_conn(0);
        assert_eq!(cap.held(), 2, "slot 1 still holds a");
        t.remove_conn(1);
        assert_eq!(cap.held(), 1);
        assert_eq!(t.subscribe(0, 1, &name("c"), 0, unpublished), Ok(true));
    }

    #[test]
    fn a_topic_made_again_gets_a_new_tag() {
        let mut t = Topics::default();
        assert!(sub(&mut t, 0, 1, "a", 0));
        let (_, first) = t.policy(t.id("a").unwrap());
        assert!(t.unsubscribe(0, "a"));
        assert!(sub(&mut t, 0, 1, "b", 0)); // may take a's id
        assert!(sub(&mut t, 0, 1, "a", 0));
        let tags = [first, t.policy(t.id("a").unwrap()).1, t.policy(t.id("b").unwrap()).1];
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2], "{tags:?}");
        assert!(tags.iter().all(|&tag| tag != 0));
    }
}
