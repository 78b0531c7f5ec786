#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod handler;
mod message;
pub mod proto;
pub mod pubsub;
mod reactor;
mod server;
mod stats;
#[cfg(test)]
mod testing;

pub use handler::{Accept, ConnId, Ctx, Handler, Reject, SendStatus};
pub use message::{Frame, Message};
pub use proto::CloseCode;
pub use proto::deflate::{DeflateConfig, Mode as Compression};
pub use proto::handshake::Request;
pub use server::{Builder, NoHandler, Publisher, Running, Server, ServerHandle, SlowConsumer};
pub use stats::Stats;
