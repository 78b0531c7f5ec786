//! The client control protocol: requests parsed from text (JSON) and binary
//! messages, replies and errors written as JSON. See the [module
//! docs](crate::pubsub) for the reference.
//!
//! By job:
//! - `parse`: text requests ([`parse_client_op`], [`ClientOp`]);
//! - `binary`: binary publishes ([`parse_binary_publish`]);
//! - `reply`: the replies (`write_subscribed`, `write_resync`, ...) and the
//!   [`RequestId`] they echo;
//! - `errors`: [`OpError`] and its [`ErrorCode`], the
//!   [`Limits`], and the [`ErrorStreak`] that closes an abusive connection;
//! - `conn_topics`: the topics one connection holds ([`ConnTopics`]).

mod binary;
mod conn_topics;
mod errors;
mod parse;
mod reply;

pub use binary::{BinaryPublish, parse_binary_publish};
pub use conn_topics::ConnTopics;
pub use errors::{
    ABUSE_CLOSE_CODE, ABUSE_CLOSE_REASON, ErrorCode, ErrorStreak, Limits, MAX_ID_LEN, OpError,
};
pub use parse::{ClientOp, Subscription, parse_client_op};
pub use reply::{
    RequestId, write_pong, write_published, write_resync, write_subscribed, write_unsubscribed,
};
