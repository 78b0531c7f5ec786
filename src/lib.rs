#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod handler;
mod message;
pub mod proto;
pub mod pubsub;
mod reactor;
mod server;

pub use handler::{Accept, ConnId, Ctx, Handler, Reject, SendStatus};
pub use message::{Frame, Message};
pub use proto::CloseCode;
pub use proto::handshake::Request;
pub use server::{Builder, NoHandler, Running, Server, ServerHandle};
