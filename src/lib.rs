//! wsreactor: a lean, fast RFC 6455 WebSocket server on per-core mio reactors.
#![deny(missing_docs)]

mod handler;
mod message;
pub mod proto;
mod reactor;
mod server;

pub use handler::{Accept, ConnId, Ctx, Handler, Reject, SendStatus};
pub use message::{Frame, Message};
pub use proto::CloseCode;
pub use proto::handshake::Request;
pub use server::{Builder, NoHandler, Running, Server, ServerHandle};
