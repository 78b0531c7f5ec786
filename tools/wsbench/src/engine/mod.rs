//! One client event loop per thread: a `mio::Poll`, a slab of connections,
//! one shared read buffer, and output batched into one write per connection
//! per loop turn.
//!
//! The engine owns sockets, the WebSocket client protocol (handshake, pong
//! replies, the close handshake, decoding) and connection pacing. What a
//! connection *does* — which messages it sends and how it checks what comes
//! back — is a [`Behaviour`], one per mode.

mod behaviour;
mod close;
mod conn;
mod control;
mod event_loop;
mod open;
mod read;
mod write;

pub use behaviour::{Behaviour, Conns, Cx};
pub use control::{Control, EngineConfig, EngineStats, Phase};
pub use event_loop::Engine;
