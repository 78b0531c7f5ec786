//! wsreactor: a lean, fast RFC 6455 WebSocket server on per-core mio reactors.
#![deny(missing_docs)]

pub mod proto;
