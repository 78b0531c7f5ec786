//! The built-in topic server: the control protocol of this module on a
//! [`Handler`], as `wsreactor pubsub` runs it.
//!
//! Subscribers send JSON requests (subscribe, unsubscribe, ping); publisher
//! connections, which present the publish token at the upgrade (the query
//! parameter `token=…` or the header `Authorization: Bearer …`), may also
//! publish with JSON requests or binary messages. See the module docs for
//! the wire format.

use std::sync::Arc;

use super::protocol::{
    ABUSE_CLOSE_CODE, ABUSE_CLOSE_REASON, ClientOp, ErrorCode, ErrorStreak, Limits, OpError,
    parse_binary_publish, parse_client_op, write_pong, write_published, write_resync,
    write_subscribed, write_unsubscribed,
};
use super::store::{Since, TopicStore};
use super::topic::TopicName;
use super::wire::Payload;
use crate::{Accept, Ctx, Frame, Handler, Message, Reject, Request};

/// The topic server's handler.
///
/// ```no_run
/// use wsreactor::pubsub::{Limits, PubSub};
/// use wsreactor::Server;
///
/// # fn main() -> std::io::Result<()> {
/// Server::builder()
///     .bind("127.0.0.1:9001")?
///     .handler(|_| PubSub::new(Limits::default(), Some("s3cret")))
///     .build()?
///     .run()
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PubSub {
    limits: Limits,
    token: Option<Arc<str>>,
    reply: String,
}

/// What a new subscriber of a topic is sent: the last value, or what it
/// missed since the seq it names (in the epoch it names, if any), or a
/// resync notice and the last value; `seq` is the last one of those.
struct CatchUp {
    seq: u64,
    resync: bool,
    frames: Vec<Frame>,
}

impl CatchUp {
    fn read(store: &TopicStore, topic: &TopicName, since: Option<(Option<u64>, u64)>) -> CatchUp {
        let (seq, resync, frames) = match since {
            None => match store.snapshot(topic.as_str()) {
                Some((seq, f)) => (seq, false, vec![f]),
                None => (0, false, Vec::new()),
            },
            Some((epoch, since)) => match store.since_in(topic.as_str(), epoch, since) {
                Since::UpToDate => (since, false, Vec::new()),
                Since::Frames(v) => {
                    let seq = v.last().map_or(since, |(seq, _)| *seq);
                    (seq, false, v.into_iter().map(|(_, f)| f).collect())
                }
                Since::Resync { latest, snapshot } => {
                    (latest, true, snapshot.into_iter().collect())
                }
            },
        };
        CatchUp { seq, resync, frames }
    }
}

/// What the topic server keeps per connection.
#[derive(Debug, Default)]
pub struct PubSubConn {
    publisher: bool,
    errors: ErrorStreak,
}

impl PubSubConn {
    /// Whether the connection presented the publish token.
    pub fn is_publisher(&self) -> bool {
        self.publisher
    }
}

impl PubSub {
    /// A topic server with these limits; with `publish_token`, connections
    /// that present it may publish (without one, nobody may).
    pub fn new(limits: Limits, publish_token: Option<&str>) -> PubSub {
        PubSub { limits, token: publish_token.map(Arc::from), reply: String::new() }
    }

    fn handle_text(&mut self, cx: &mut Ctx<'_, PubSubConn>, text: &str) -> Result<(), OpError> {
        let op = parse_client_op(text, &self.limits)?;
        if op.requires_publisher() && !cx.data().publisher {
            return Err(OpError::unauthorized(op.id()));
        }
        self.reply.clear();
        match op {
            ClientOp::Subscribe { id, topics, epoch } => {
                let new = topics.iter().filter(|s| !is_subscribed(cx, &s.topic)).count();
                if cx.subscriptions() + new > self.limits.max_topics_per_conn {
                    let msg = format!(
                        "at most {} topics per connection",
                        self.limits.max_topics_per_conn
                    );
                    return Err(OpError::new(ErrorCode::TooManyTopics, msg).with_id(id));
                }
                // Read what each topic's new subscriber should see first, then
                // subscribe after exactly its seq: every seq once, in order.
                let catch_ups: Vec<CatchUp> = topics
                    .iter()
                    .map(|s| {
                        let since = s.since.map(|seq| (epoch, seq));
                        let up = CatchUp::read(cx.topics(), &s.topic, since);
                        cx.subscribe_after(&s.topic, up.seq);
                        up
                    })
                    .collect();
                let here = cx.topics().epoch();
                write_subscribed(&mut self.reply, id, topics.iter().map(|s| &s.topic), here);
                let _ = cx.send_text(&self.reply);
                for (s, up) in topics.iter().zip(&catch_ups) {
                    if up.resync {
                        self.reply.clear();
                        write_resync(&mut self.reply, None, s.topic.as_str(), up.seq);
                        let _ = cx.send_text(&self.reply);
                    }
                    for f in &up.frames {
                        let _ = cx.send_frame(f);
                    }
                }
            }
            ClientOp::Unsubscribe { id, topics } => {
                for t in &topics {
                    cx.unsubscribe(t.as_str());
                }
                write_unsubscribed(&mut self.reply, id, &topics);
                let _ = cx.send_text(&self.reply);
            }
            ClientOp::Publish { id, topic, data, ack } => {
                let seq = cx.publish(&topic, &data).map_err(|e| OpError::from(e).with_id(id))?;
                if ack {
                    write_published(&mut self.reply, id, topic.as_str(), seq);
                    let _ = cx.send_text(&self.reply);
                }
            }
            ClientOp::Ping { id } => {
                write_pong(&mut self.reply, id);
                let _ = cx.send_text(&self.reply);
            }
        }
        Ok(())
    }

    fn handle_binary(&mut self, cx: &mut Ctx<'_, PubSubConn>, bytes: &[u8]) -> Result<(), OpError> {
        if !cx.data().publisher {
            return Err(OpError::unauthorized(None));
        }
        let p = parse_binary_publish(bytes, &self.limits)?;
        let topic = TopicName::with_max_len(p.topic, self.limits.max_topic_len)
            .map_err(|e| OpError::from(super::StoreError::from(e)))?;
        cx.publish(&topic, &Payload::new(p.payload))?;
        Ok(())
    }
}

fn is_subscribed(cx: &Ctx<'_, PubSubConn>, topic: &TopicName) -> bool {
    cx.is_subscribed(topic.as_str())
}

/// The token a request presents: `?token=…` or `Authorization: Bearer …`.
fn presented_token<'a>(req: &Request<'a>) -> Option<&'a str> {
    let from_query =
        req.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    from_query.or_else(|| req.header_str("authorization")?.strip_prefix("Bearer ").map(str::trim))
}

/// Compares without an early exit, so response timing says nothing about
/// how much of a guessed token was right.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Handler for PubSub {
    type Conn = PubSubConn;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<PubSubConn>, Reject> {
        let publisher = match (presented_token(req), self.token.as_deref()) {
            (None, _) => false,
            (Some(given), Some(token)) if same_secret(given, token) => true,
            (Some(_), _) => return Err(Reject::new(403, "bad publish token")),
        };
        Ok(Accept::new(PubSubConn { publisher, errors: ErrorStreak::default() }))
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, PubSubConn>, msg: Message<'_>) {
        let result = match msg {
            Message::Text(text) => self.handle_text(cx, text),
            Message::Binary(bytes) => self.handle_binary(cx, bytes),
        };
        match result {
            Ok(()) => cx.data_mut().errors.succeeded(),
            Err(e) => {
                self.reply.clear();
                e.write_json(&mut self.reply);
                let _ = cx.send_text(&self.reply);
                if cx.data_mut().errors.failed(&self.limits) {
                    cx.close(ABUSE_CLOSE_CODE, ABUSE_CLOSE_REASON);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
