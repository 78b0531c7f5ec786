//! Fan-out at the end of a loop turn: broadcasts to every open connection,
//! and topic frames to their subscribers under each topic's slow-consumer
//! policy. Each receiver is flushed as soon as it is served, so a fan-out
//! to N connections never holds N buffer sets at once.

use super::conn::SendStatus;
use super::connections::Connections;
use super::handler::Handler;
use super::inbox::{Command, LocalId};
use super::topics::Member;
use crate::config::SlowConsumer;
use crate::message::Frame;
use crate::proto::CloseCode;
use crate::pubsub::TopicName;
use crate::stats::Counter;

/// What a reactor fans out this turn, and its scratch space.
#[derive(Default)]
pub(crate) struct Fanout {
    /// Broadcast frames that arrived through the inbox this turn, each with
    /// the connection it skips.
    pub(crate) broadcasts: Vec<(Frame, Option<LocalId>)>,
    /// Topic frames that arrived through the inbox this turn (this reactor's
    /// own publishes too), each topic's in seq order.
    pub(crate) publishes: Vec<(TopicName, u64, Frame)>,
    /// Scratch copy of a topic's members (they may change during delivery).
    members: Vec<Member>,
    /// Scratch: the members a publish passes over (they joined after it).
    skip: Vec<Member>,
    /// Scratch list of slots (reused to avoid an allocation per fan-out).
    slots: Vec<usize>,
}

impl Fanout {
    /// Hands this turn's broadcasts to every open connection here (this
    /// reactor's own are posted to the others first).
    pub(crate) fn broadcast<H: Handler>(&mut self, conns: &mut Connections<H>) {
        if conns.st.local_broadcasts.is_empty() && self.broadcasts.is_empty() {
            return;
        }
        let mut local = std::mem::take(&mut conns.st.local_broadcasts);
        if !local.is_empty() {
            let me = conns.st.reactor_id;
            let frames: Vec<Frame> = local.iter().map(|(f, _)| f.clone()).collect();
            for (i, inbox) in conns.st.handle.shared.inboxes.iter().enumerate() {
                if i != me {
                    conns.st.handle.post(inbox, Command::Broadcast(frames.clone(), None));
                }
            }
        }
        let mut slots = std::mem::take(&mut self.slots);
        slots.extend(conns.slab.iter().filter(|(_, c)| c.is_open()).map(|(s, _)| s));
        for &slot in &slots {
            let Some(conn) = conns.slab.get_mut(slot) else { continue };
            let me = Some(LocalId { slot, generation: conn.generation });
            for (frame, skip) in local.iter().chain(self.broadcasts.iter()) {
                if *skip != me {
                    let _ = conn.send_shared(&mut conns.st, slot, frame);
                }
            }
            // Flush now rather than at the end of the turn, so the buffers go
            // back to the pool one connection at a time.
            conns.flush(slot);
        }
        slots.clear();
        self.slots = slots;
        // Keep the allocations for the next turn.
        local.clear();
        conns.st.local_broadcasts = local;
        self.broadcasts.clear();
    }

    /// Hands this turn's topic frames to the topics' subscribers here, in
    /// publish order, applying each topic's slow-consumer policy. A member
    /// whose subscription starts after a publish's seq is passed over for it.
    pub(crate) fn deliver_topics<H: Handler>(&mut self, conns: &mut Connections<H>) {
        if self.publishes.is_empty() {
            return;
        }
        let publishes = std::mem::take(&mut self.publishes);
        let mut members = std::mem::take(&mut self.members);
        let (first, first_seq, _) = &publishes[0];
        let topics = &conns.st.topics;
        // One topic this turn and nobody to pass over (the common case)?
        let one_pass = match publishes.iter().all(|(t, _, _)| t == first) {
            true => topics.id(first.as_str()),
            false => None,
        }
        .filter(|&id| !topics.has_joiners_until(id, *first_seq));
        if let Some(id) = one_pass {
            // Each subscriber gets all of its frames and is flushed at once, in
            // one pass over the members, so its buffers go back to the pool
            // before the next one's are taken.
            let last_seq = publishes.iter().map(|p| p.1).max().unwrap_or(0);
            conns.st.topics.start_delivery(id, last_seq, &mut self.skip);
            let (policy, tag) = conns.st.topics.policy(id);
            members.extend_from_slice(conns.st.topics.members(id));
            for m in members.drain(..) {
                let slot = m.slot as usize;
                let live = publishes.iter().all(|(_, _, frame)| {
                    queue_topic_frame(conns, slot, m.generation, frame, tag, policy)
                });
                if live {
                    conns.flush(slot);
                }
            }
        } else {
            let mut skip = std::mem::take(&mut self.skip);
            for (topic, seq, frame) in &publishes {
                let Some(id) = conns.st.topics.id(topic.as_str()) else { continue };
                conns.st.topics.start_delivery(id, *seq, &mut skip);
                let (policy, tag) = conns.st.topics.policy(id);
                members.extend_from_slice(conns.st.topics.members(id));
                for m in members.drain(..) {
                    if !skip.is_empty() && skip.binary_search(&m).is_ok() {
                        continue;
                    }
                    let slot = m.slot as usize;
                    if queue_topic_frame(conns, slot, m.generation, frame, tag, policy) {
                        conns.mark_dirty(slot);
                    }
                }
            }
            self.skip = skip;
        }
        let mut publishes = publishes;
        publishes.clear();
        self.publishes = publishes;
        self.members = members;
    }
}

/// Queues a topic's frame (tagged `tag`) for the connection in `slot` (if
/// it is still generation `generation`) under the topic's slow-consumer
/// `policy`; false if nothing more can go to it this turn.
fn queue_topic_frame<H: Handler>(
    conns: &mut Connections<H>,
    slot: usize,
    generation: u32,
    frame: &Frame,
    tag: u32,
    policy: SlowConsumer,
) -> bool {
    let Some(conn) = conns.slab.get_mut(slot) else { return false };
    if conn.generation != generation {
        return false;
    }
    let status = conn.send_topic(&mut conns.st, slot, frame, tag, policy);
    if status == SendStatus::Dropped && conn.is_open() && policy == SlowConsumer::Close {
        log::info!("{}: slow consumer; closing with 1008", conn.peer());
        conns.st.counters.inc(Counter::SlowConsumers);
        conn.begin_close(&mut conns.st, slot, CloseCode::POLICY, "slow consumer");
        conns.settle(slot);
    }
    true
}
