//! What can go wrong with a request, and how much is allowed: the [`Limits`],
//! [`OpError`] with its [`ErrorCode`] and the [`RequestId`] it echoes, and
//! the [`ErrorStreak`] that closes an abusive connection.

use std::borrow::Cow;
use std::fmt;

use super::reply::{RequestId, open_reply};
use crate::proto::CloseCode;
use crate::pubsub::store::StoreError;
use crate::pubsub::topic::{DEFAULT_MAX_TOPIC_LEN, TopicError};
use crate::pubsub::wire::write_json_string;

/// The close code for a connection that keeps sending bad requests (see
/// [`ErrorStreak`]): 1008, policy violation.
pub const ABUSE_CLOSE_CODE: CloseCode = CloseCode::POLICY;

/// The close reason sent with [`ABUSE_CLOSE_CODE`].
pub const ABUSE_CLOSE_REASON: &str = "too many bad requests";

/// The longest request id echoed back, in bytes of JSON text.
pub const MAX_ID_LEN: usize = 64;

/// Per-connection limits of the control protocol.
///
/// ```
/// use wsreactor::pubsub::Limits;
/// let limits = Limits { max_topics_per_conn: 10_000, ..Limits::default() };
/// # let _ = limits;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest topic name, in bytes (at most 255). Default 128.
    pub max_topic_len: usize,
    /// The most topics in one subscribe or unsubscribe. Default 64.
    pub max_topics_per_op: usize,
    /// The most topics one connection may hold ([`ConnTopics`](super::ConnTopics)). Default 256.
    pub max_topics_per_conn: usize,
    /// The longest text request (JSON), in bytes; longer ones are refused
    /// with `too_large` unparsed. This also caps the `data` of a JSON
    /// publish. Default 64 KiB. The topic server makes it the message size
    /// limit of each connection that may not publish
    /// ([`Ctx::set_max_message_size`](crate::Ctx::set_max_message_size)),
    /// so a longer message from one closes it with 1009 at its frame
    /// header, before the payload arrives.
    pub max_op_len: usize,
    /// The longest binary publish message, in bytes. Default 1 MiB. The
    /// larger of this and `max_op_len` is a publisher's message size limit.
    pub max_publish_len: usize,
    /// How many failed requests in a row are tolerated; one more and the
    /// connection is abusive ([`ErrorStreak`]). Default 16.
    pub max_errors_in_a_row: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_topic_len: DEFAULT_MAX_TOPIC_LEN,
            max_topics_per_op: 64,
            max_topics_per_conn: 256,
            max_op_len: 64 << 10,
            max_publish_len: 1 << 20,
            max_errors_in_a_row: 16,
        }
    }
}

/// The machine-readable kind of an [`OpError`], sent as its `"code"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `bad_json`: the text is not well-formed JSON.
    BadJson,
    /// `bad_request`: well-formed JSON of the wrong shape (not an object, a
    /// missing field, a field of the wrong type, a duplicate field), or a
    /// malformed binary message.
    BadRequest,
    /// `unknown_op`: the `"op"` is not one this server knows.
    UnknownOp,
    /// `bad_topic`: a topic name is empty or has a character outside the set.
    BadTopic,
    /// `topic_too_long`: a topic name is over the length cap.
    TopicTooLong,
    /// `too_many_topics`: too many topics in one request, or for one connection.
    TooManyTopics,
    /// `unauthorized`: publishing from a connection that may not publish.
    Unauthorized,
    /// `too_large`: the request is over its size cap.
    TooLarge,
    /// `store_full`: publishing would create a topic beyond the server's cap.
    StoreFull,
}

impl ErrorCode {
    /// The code as sent on the wire.
    ///
    /// ```
    /// use wsreactor::pubsub::ErrorCode;
    /// assert_eq!(ErrorCode::TooManyTopics.as_str(), "too_many_topics");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::TopicTooLong => "topic_too_long",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::StoreFull => "store_full",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: sent back as
/// `{"op":"error","id":..?,"code":"...","message":"...","topic":"..."?}`.
///
/// ```
/// use wsreactor::pubsub::{parse_client_op, ErrorCode, Limits};
///
/// let err = parse_client_op(r#"{"op":"jump","id":3}"#, &Limits::default()).unwrap_err();
/// assert_eq!(err.code(), ErrorCode::UnknownOp);
/// assert_eq!(err.to_json(), r#"{"op":"error","id":3,"code":"unknown_op","message":"unknown op \"jump\""}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    code: ErrorCode,
    message: Cow<'static, str>,
    topic: Option<String>,
    id: Option<Box<str>>,
}

/// How much of a client's string an error message quotes back.
pub(super) const QUOTE_MAX: usize = 64;

/// `s` cut to at most `max` bytes on a char boundary.
pub(super) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl OpError {
    /// An error with a code and a human-readable message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> OpError {
        OpError { code, message: message.into(), topic: None, id: None }
    }

    /// Names the topic at fault (cut to 64 bytes).
    pub fn with_topic(mut self, topic: &str) -> OpError {
        self.topic = Some(cut(topic, QUOTE_MAX).to_owned());
        self
    }

    /// Echoes the request's id.
    pub fn with_id(mut self, id: Option<RequestId<'_>>) -> OpError {
        self.id = id.map(|id| Box::from(id.0));
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The topic at fault, if one is.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The request's id, if it had one (and it was parsed before the error).
    pub fn id(&self) -> Option<RequestId<'_>> {
        self.id.as_deref().map(RequestId)
    }

    /// Appends the error reply to `out`.
    pub fn write_json(&self, out: &mut String) {
        open_reply(out, "error", self.id());
        out.push_str(",\"code\":\"");
        out.push_str(self.code.as_str());
        out.push_str("\",\"message\":");
        write_json_string(out, &self.message);
        if let Some(topic) = &self.topic {
            out.push_str(",\"topic\":");
            write_json_string(out, topic);
        }
        out.push('}');
    }

    /// The error reply.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(64 + self.message.len());
        self.write_json(&mut s);
        s
    }

    /// The `unauthorized` error for a publish from a connection that may not
    /// publish.
    pub fn unauthorized(id: Option<RequestId<'_>>) -> OpError {
        OpError::new(ErrorCode::Unauthorized, "this connection may not publish").with_id(id)
    }

    pub(super) fn topic_error(e: TopicError, topic: &str) -> OpError {
        let code = match e {
            TopicError::TooLong { .. } => ErrorCode::TopicTooLong,
            TopicError::Empty | TopicError::BadByte { .. } => ErrorCode::BadTopic,
        };
        OpError::new(code, e.to_string()).with_topic(topic)
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(t) = &self.topic {
            write!(f, " (topic {t:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OpError {}

impl From<StoreError> for OpError {
    /// `store_full` or the topic error. Add the topic and id with
    /// [`OpError::with_topic`] and [`OpError::with_id`].
    fn from(e: StoreError) -> OpError {
        match e {
            StoreError::TooManyTopics { .. } => OpError::new(ErrorCode::StoreFull, e.to_string()),
            StoreError::BadTopic(TopicError::TooLong { .. }) => {
                OpError::new(ErrorCode::TopicTooLong, e.to_string())
            }
            StoreError::BadTopic(_) => OpError::new(ErrorCode::BadTopic, e.to_string()),
        }
    }
}

/// A `bad_request` error.
pub(super) fn bad_request(message: impl Into<Cow<'static, str>>) -> OpError {
    OpError::new(ErrorCode::BadRequest, message)
}

/// Counts a connection's failed requests in a row. The connection is
/// abusive once more than [`Limits::max_errors_in_a_row`] fail in a row:
/// close it with [`ABUSE_CLOSE_CODE`] (1008) and [`ABUSE_CLOSE_REASON`].
/// Until then each failure is answered with its error reply and the
/// connection stays open.
///
/// ```
/// use wsreactor::pubsub::{ErrorStreak, Limits};
///
/// let limits = Limits { max_errors_in_a_row: 2, ..Limits::default() };
/// let mut streak = ErrorStreak::default();
/// assert!(!streak.failed(&limits));
/// streak.succeeded(); // a good request resets the count
/// assert!(!streak.failed(&limits));
/// assert!(!streak.failed(&limits));
/// assert!(streak.failed(&limits)); // the third in a row: close with 1008
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorStreak(u32);

impl ErrorStreak {
    /// Records a failed request; `true` if the connection is now abusive.
    pub fn failed(&mut self, limits: &Limits) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 > limits.max_errors_in_a_row
    }

    /// Records a request that succeeded: the streak starts over.
    pub fn succeeded(&mut self) {
        self.0 = 0;
    }

    /// Failed requests in a row so far.
    pub fn count(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn error_display_and_from_store() {
        let e = OpError::new(ErrorCode::BadTopic, "nope").with_topic("a b");
        assert_eq!(e.to_string(), "bad_topic: nope (topic \"a b\")");
        let e: OpError = StoreError::TooManyTopics { max: 3 }.into();
        assert_eq!(e.code(), ErrorCode::StoreFull);
        let e: OpError = StoreError::BadTopic(TopicError::TooLong { len: 9, max: 8 }).into();
        assert_eq!(e.code(), ErrorCode::TopicTooLong);
        let e: OpError = StoreError::BadTopic(TopicError::Empty).into();
        assert_eq!(e.code(), ErrorCode::BadTopic);
        for code in [
            ErrorCode::BadJson,
            ErrorCode::BadRequest,
            ErrorCode::UnknownOp,
            ErrorCode::BadTopic,
            ErrorCode::TopicTooLong,
            ErrorCode::TooManyTopics,
            ErrorCode::Unauthorized,
            ErrorCode::TooLarge,
            ErrorCode::StoreFull,
        ] {
            assert_eq!(code.to_string(), code.as_str());
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn error_streak() {
        let l = Limits { max_errors_in_a_row: 3, ..limits() };
        let mut s = ErrorStreak::default();
        assert!(!s.failed(&l) && !s.failed(&l) && !s.failed(&l));
        assert_eq!(s.count(), 3);
        assert!(s.failed(&l));
        s.succeeded();
        assert_eq!(s.count(), 0);
        let zero = Limits { max_errors_in_a_row: 0, ..limits() };
        assert!(ErrorStreak::default().failed(&zero));
        let mut s = ErrorStreak(u32::MAX);
        assert!(s.failed(&l));
        assert_eq!(ABUSE_CLOSE_CODE, CloseCode::POLICY);
        assert_eq!(u16::from(ABUSE_CLOSE_CODE), 1008);
    }
}
