//! A reactor's subscriber sets: which of its connections take which topics.
//!
//! Each topic has a vector of members (slot and generation) that a publish
//! walks once; each connection has the list of its topics with its position
//! in each vector, so unsubscribing and closing are O(1) per topic
//! (swap-remove), never a scan of a topic's subscribers.
//!
//! A topic's slow-consumer policy is resolved from the prefix rules once,
//! when the topic first gets a subscriber here, and kept with its members.
//!
//! A subscription starts *after* a sequence number (the topic's latest
//! when it was made, or the seq of the snapshot or replay its subscriber
//! was sent). Publishes up to it may still be on their way through this
//! reactor's inbox; a new member is passed over for those, so that it never
//! gets a delivery older than what it was already sent. Only members that
//! joined ahead of this reactor's deliveries are remembered for that
//! (`joiners`), and only until the deliveries catch up.

use std::collections::HashMap;

use crate::pubsub::TopicName;
use crate::server::{SlowConsumer, SlowConsumerRules};

/// A subscriber: a connection's slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Member {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

struct Topic {
    members: Vec<Member>,
    /// What to do with a member whose queue is full.
    policy: SlowConsumer,
    /// The seq of the last publish delivered here (0: none yet).
    delivered: u64,
    /// Members whose subscription starts after a seq not yet delivered here.
    joiners: Vec<(Member, u64)>,
}

/// The subscriber sets of one reactor.
#[derive(Default)]
pub(crate) struct Topics {
    /// Topic ids (1-based; also the tag of queued frames for conflation).
    ids: HashMap<TopicName, u32>,
    topics: Vec<Topic>,
    /// Per connection: (topic id, position in that topic's members).
    by_conn: HashMap<usize, Vec<(u32, u32)>>,
    /// Where a new topic's slow-consumer policy comes from.
    rules: SlowConsumerRules,
}

impl Topics {
    /// Empty sets whose topics take their slow-consumer policy from `rules`.
    pub(crate) fn new(rules: SlowConsumerRules) -> Self {
        Topics { rules, ..Topics::default() }
    }

    /// The id of `name` on this reactor, if anyone here ever subscribed.
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// How many topics the connection in `slot` holds.
    pub(crate) fn count(&self, slot: usize) -> usize {
        self.by_conn.get(&slot).map_or(0, Vec::len)
    }

    /// Whether the connection in `slot` is subscribed to `name`.
    pub(crate) fn is_subscribed(&self, slot: usize, name: &str) -> bool {
        let Some(id) = self.id(name) else { return false };
        self.by_conn.get(&slot).is_some_and(|mine| mine.iter().any(|&(t, _)| t == id))
    }

    /// Subscribes to the publishes after seq `after`; false if it already
    /// was subscribed.
    pub(crate) fn subscribe(
        &mut self,
        slot: usize,
        generation: u32,
        name: &TopicName,
        after: u64,
    ) -> bool {
        let next = self.topics.len() as u32 + 1;
        let id = *self.ids.entry(name.clone()).or_insert(next);
        if id == next {
            let policy = self.rules.policy_for(name.as_str());
            let topic = Topic { members: Vec::new(), policy, delivered: 0, joiners: Vec::new() };
            self.topics.push(topic);
        }
        let mine = self.by_conn.entry(slot).or_default();
        if mine.iter().any(|&(t, _)| t == id) {
            return false;
        }
        let topic = &mut self.topics[id as usize - 1];
        let member = Member { slot: slot as u32, generation };
        mine.push((id, topic.members.len() as u32));
        topic.members.push(member);
        if after > topic.delivered {
            topic.joiners.push((member, after));
        }
        true
    }

    /// Called before delivering topic `id`'s publish `seq` here: fills
    /// `skip` (sorted) with the members whose subscription starts at or
    /// after `seq`, and counts `seq` as delivered.
    pub(crate) fn start_delivery(&mut self, id: u32, seq: u64, skip: &mut Vec<Member>) {
        skip.clear();
        let Some(topic) = self.topics.get_mut((id as usize).wrapping_sub(1)) else { return };
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
        }
        let topic = &mut self.topics[id as usize - 1];
        if !topic.joiners.is_empty() {
            // A later subscription of this connection starts afresh.
            let member = topic.members[pos as usize];
            topic.joiners.retain(|&(m, _)| m != member);
        }
        self.remove_member(id, pos);
        true
    }

    /// Drops every subscription of the connection in `slot`.
    pub(crate) fn remove_conn(&mut self, slot: usize) {
        for (id, pos) in self.by_conn.remove(&slot).unwrap_or_default() {
            self.remove_member(id, pos);
        }
    }

    fn remove_member(&mut self, id: u32, pos: u32) {
        let members = &mut self.topics[id as usize - 1].members;
        members.swap_remove(pos as usize);
        // The last member moved into `pos`: tell its connection.
        if let Some(moved) = members.get(pos as usize) {
            if let Some(theirs) = self.by_conn.get_mut(&(moved.slot as usize)) {
                if let Some(entry) = theirs.iter_mut().find(|(t, _)| *t == id) {
                    entry.1 = pos;
                }
            }
        }
    }

    /// The members of topic `id`.
    pub(crate) fn members(&self, id: u32) -> &[Member] {
        self.topic(id).map_or(&[], |t| &t.members)
    }

    /// The slow-consumer policy of topic `id`.
    pub(crate) fn policy(&self, id: u32) -> SlowConsumer {
        self.topic(id).map_or(SlowConsumer::default(), |t| t.policy)
    }

    fn topic(&self, id: u32) -> Option<&Topic> {
        self.topics.get((id as usize).wrapping_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
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
            assert!(t.subscribe(slot, 1, &name("a"), 0));
            if slot % 2 == 0 {
                assert!(t.subscribe(slot, 1, &name("b"), 0));
            }
        }
        assert!(!t.subscribe(3, 1, &name("a"), 0), "already subscribed");
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
        assert!(t.subscribe(0, 1, &name("a"), 0));
        assert_eq!(deliver(&mut t, 1..=2), [vec![0], vec![0]]);
        // Seqs 3..=5 are on their way here when slot 1 joins after 4, and
        // slot 2 after 2 (already delivered here: nothing to remember).
        assert!(t.subscribe(1, 1, &name("a"), 4));
        assert!(t.subscribe(2, 1, &name("a"), 2));
        assert!(t.has_joiners_until(t.id("a").unwrap(), 3));
        assert_eq!(deliver(&mut t, 3..=6), [vec![0, 2], vec![0, 2], vec![0, 1, 2], vec![0, 1, 2]]);
        assert!(t.topics[0].joiners.is_empty(), "forgotten once caught up");
        // Leaving and rejoining within the window: the later start counts.
        assert!(t.subscribe(3, 7, &name("a"), 9));
        assert!(t.unsubscribe(3, "a"));
        assert!(t.subscribe(3, 7, &name("a"), 7));
        assert_eq!(deliver(&mut t, 7..=8), [vec![0, 1, 2], vec![0, 1, 2, 3]]);
    }

    #[test]
    fn each_topic_keeps_the_policy_its_prefix_rule_gives() {
        let mut rules = SlowConsumerRules::default();
        rules.set_default(SlowConsumer::Drop);
        rules.add("md.", SlowConsumer::Conflate);
        rules.add("md.trades.", SlowConsumer::Close);
        let mut t = Topics::new(rules);
        for (slot, topic) in ["md.X", "alerts.Y", "md.trades.X", "md.X"].into_iter().enumerate() {
            t.subscribe(slot, 1, &name(topic), 0);
        }
        let policy = |t: &Topics, topic: &str| t.id(topic).map(|id| t.policy(id));
        assert_eq!(policy(&t, "md.X"), Some(SlowConsumer::Conflate));
        assert_eq!(policy(&t, "alerts.Y"), Some(SlowConsumer::Drop));
        assert_eq!(policy(&t, "md.trades.X"), Some(SlowConsumer::Close));
        // Still the topic's policy after its members come and go.
        t.remove_conn(0);
        t.remove_conn(3);
        assert!(t.subscribe(4, 1, &name("md.X"), 0));
        assert_eq!(policy(&t, "md.X"), Some(SlowConsumer::Conflate));
    }
}
