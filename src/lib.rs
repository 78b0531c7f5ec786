#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod message;
pub mod proto;
pub mod pubsub;
mod reactor;
mod server;
mod stats;
#[cfg(test)]
mod testing;

pub use config::SlowConsumer;
pub use message::{Frame, Message};
pub use proto::CloseCode;
pub use proto::deflate::{DeflateConfig, Mode as Compression};
pub use proto::handshake::Request;
pub use reactor::door::{ConnId, Publisher, ServerHandle};
pub use reactor::handler::{Accept, Ctx, Handler, Reject, SendStatus};
pub use server::{Builder, NoHandler, Running, Server};
pub use stats::Stats;
