//! The built-in topic server: the control protocol of this module on a
//! [`Handler`], as `wsreactor pubsub` runs it.
//!
//! Subscribers send JSON requests (subscribe, unsubscribe, ping); publisher
//! connections, which present the publish token at the upgrade (the query
//! parameter `token=…` or the header `Authorization: Bearer …`), may also
//! publish with JSON requests or binary messages. See the module docs for
//! the wire format.

use std::borrow::Cow;
use std::sync::Arc;

use super::protocol::{
    ABUSE_CLOSE_CODE, ABUSE_CLOSE_REASON, ClientOp, ErrorCode, ErrorStreak, Limits, OpError,
    parse_binary_publish, parse_client_op, write_pong, write_published, write_resync,
    write_subscribed, write_unsubscribed,
};
use super::store::{Since, TopicStore};
use super::topic::TopicName;
use super::wire::Payload;
use crate::message::{Frame, Message};
use crate::proto::handshake::Request;
use crate::reactor::handler::{Accept, Ctx, Handler, Reject};

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
    /// The subscription is new (not one the connection held already).
    added: bool,
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
        CatchUp { seq, resync, frames, added: false }
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
                let mut catch_ups: Vec<CatchUp> = Vec::with_capacity(topics.len());
                for (i, s) in topics.iter().enumerate() {
                    let since = s.since.map(|seq| (epoch, seq));
                    let up = CatchUp::read(cx.topics(), &s.topic, since);
                    match cx.subscribe_after(&s.topic, up.seq) {
                        Ok(added) => catch_ups.push(CatchUp { added, ..up }),
                        Err(e) => {
                            // All or nothing: undo what this request added.
                            for (s, up) in topics[..i].iter().zip(&catch_ups) {
                                if up.added {
                                    cx.unsubscribe(s.topic.as_str());
                                }
                            }
                            let e = OpError::new(ErrorCode::TooManyTopics, e.to_string());
                            return Err(e.with_topic(s.topic.as_str()).with_id(id));
                        }
                    }
                }
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

/// A `?token=` whose percent-escapes do not decode to UTF-8 text.
#[derive(Debug, PartialEq, Eq)]
struct MalformedToken;

/// The token a request presents, if any: `?token=…` (percent-decoded), or else
/// `Authorization: Bearer …` (the scheme in any case, then one or more spaces).
fn presented_token<'a>(req: &Request<'a>) -> Result<Option<Cow<'a, str>>, MalformedToken> {
    let from_query =
        req.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    if let Some(raw) = from_query {
        return percent_decode(raw).map(Some).ok_or(MalformedToken);
    }
    Ok(req.header_str("authorization").and_then(bearer).map(Cow::Borrowed))
}

/// The credentials of an `Authorization` value in the Bearer scheme (RFC 6750, 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Decodes the `%XX` escapes of a query value (RFC 3986; `+` stays a plus):
/// `None` for a `%` without two hex digits or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut bytes = s.bytes();
    let mut out = Vec::with_capacity(s.len());
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
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
            (Ok(None), _) => false,
            (Ok(Some(given)), Some(token)) if same_secret(&given, token) => true,
            (Ok(Some(_)) | Err(MalformedToken), _) => {
                return Err(Reject::new(403, "bad publish token"));
            }
        };
        Ok(Accept::new(PubSubConn { publisher, errors: ErrorStreak::default() }))
    }

    fn on_open(&mut self, cx: &mut Ctx<'_, PubSubConn>) {
        // The largest request each may make, enforced at the frame header: a
        // subscriber cannot make the server hold more than a JSON request.
        let limit = match cx.data().publisher {
            true => self.limits.max_op_len.max(self.limits.max_publish_len),
            false => self.limits.max_op_len,
        };
        cx.set_max_message_size(limit);
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

    /// Runs an upgrade to `target` with `extra` header lines past a server whose token is
    /// `token`: whether it is a publisher, or the refusal's status.
    fn upgrade(token: &str, target: &str, extra: &str) -> Result<bool, u16> {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        );
        let (req, _) = crate::proto::handshake::parse_request(head.as_bytes(), 8192)
            .expect("a valid upgrade")
            .expect("complete");
        let mut app = PubSub::new(Limits::default(), Some(token));
        app.on_upgrade(&req).map(|a| a.data.publisher).map_err(|r| r.status())
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in [
            "Authorization: Bearer tok",
            "authorization: bearer tok",
            "AUTHORIZATION: BEARER tok",
            "Authorization: bEaReR tok",
        ] {
            assert_eq!(upgrade("tok", "/", &format!("{header}\r\n")), Ok(true), "{header}");
        }
        assert_eq!(upgrade("tok", "/", "Authorization: BEARER nope\r\n"), Err(403));
    }

    #[test]
    fn one_or_more_spaces_follow_the_scheme() {
        for header in ["Bearer   tok", "bearer tok  ", "Bearer  tok \t"] {
            let extra = format!("Authorization: {header}\r\n");
            assert_eq!(upgrade("tok", "/", &extra), Ok(true), "{header:?}");
        }
        // No space: not the Bearer scheme at all, so no token is presented.
        assert_eq!(upgrade("tok", "/", "Authorization: Bearertok\r\n"), Ok(false));
        assert_eq!(upgrade("tok", "/", "Authorization: Bearer\r\n"), Ok(false));
    }

    #[test]
    fn other_schemes_are_not_bearer_tokens() {
        for header in ["Basic xyz", "Basic tok", "Token tok", "Bearerx tok"] {
            let extra = format!("Authorization: {header}\r\n");
            assert_eq!(upgrade("tok", "/", &extra), Ok(false), "{header:?}");
            assert_eq!(upgrade("xyz", "/", &extra), Ok(false), "{header:?}");
        }
    }

    #[test]
    fn the_query_token_is_percent_decoded() {
        let token = "a b&c=";
        assert_eq!(upgrade(token, "/?token=a%20b%26c%3D", ""), Ok(true));
        assert_eq!(upgrade(token, "/feed?x=1&token=a%20b%26c%3d&y=2", ""), Ok(true));
        // Not a form: `+` is a plus, not a space.
        assert_eq!(upgrade(token, "/?token=a+b%26c%3D", ""), Err(403));
        assert_eq!(upgrade("a+b", "/?token=a+b", ""), Ok(true));
        assert_eq!(upgrade("a+b", "/?token=a%2Bb", ""), Ok(true));
        // UTF-8 escapes, either case of hex digit.
        assert_eq!(upgrade("caf\u{e9}", "/?token=caf%C3%A9", ""), Ok(true));
        assert_eq!(upgrade("caf\u{e9}", "/?token=caf%c3%a9", ""), Ok(true));
        // The escape itself is not the token.
        assert_eq!(upgrade("a%20b", "/?token=a%20b", ""), Err(403));
        assert_eq!(upgrade("tok", "/?token=tok", ""), Ok(true));
    }

    #[test]
    fn percent_decode_borrows_unless_it_must_allocate() {
        assert!(matches!(percent_decode("tok+1"), Some(Cow::Borrowed("tok+1"))));
        assert_eq!(percent_decode("a%20b%26c%3D").as_deref(), Some("a b&c="));
        assert_eq!(percent_decode("%e2%82%AC").as_deref(), Some("\u{20ac}"));
        assert_eq!(percent_decode("%25zz").as_deref(), Some("%zz"));
        for bad in ["%", "%4", "a%zz", "%\u{e9}9", "%C3", "%80"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
        assert_eq!(bearer("bearer  tok "), Some("tok"));
        assert_eq!(bearer("Basic xyz"), None);
    }

    #[test]
    fn bad_escapes_are_a_bad_token() {
        for query in ["%zz", "tok%", "tok%4", "%4g", "%%41", "%C3", "%FF%FE", "%C3%28"] {
            // Even when the server's token is the raw text, it is refused, never a panic.
            let target = format!("/?token={query}");
            assert_eq!(upgrade(query, &target, ""), Err(403), "{query:?}");
            assert_eq!(upgrade("tok", &target, ""), Err(403), "{query:?}");
        }
    }
}
