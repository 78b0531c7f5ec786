//! One connection as its loop keeps it: the socket, where it is in its
//! life, its buffers and decoder, and the behaviour's state for it.

use mio::net::TcpStream;
use wsreactor::proto::Decoder;

use crate::deflate::ConnDeflate;
use crate::wire::ClientHandshake;

pub(super) enum State {
    Connecting,
    Handshaking(ClientHandshake),
    Open,
    /// A close frame went out (`initiated`: we started it) and we wait for the peer.
    Closing {
        initiated: bool,
    },
}

pub(super) struct Conn<S> {
    pub(super) stream: TcpStream,
    pub(super) index: usize,
    pub(super) state: State,
    pub(super) started: u64,
    pub(super) inbuf: Vec<u8>,
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    /// The last write hit `WouldBlock`; wait for a writable event.
    pub(super) blocked: bool,
    /// In the flush list.
    pub(super) queued: bool,
    /// The peer's FIN (or an error) was reported: read to the end, not just to a short read.
    pub(super) hup: bool,
    pub(super) decoder: Decoder,
    /// permessage-deflate state, when negotiated.
    pub(super) deflate: Option<Box<ConnDeflate>>,
    pub(super) user: S,
}
