//! Messages as handlers see them, and frames encoded once for many receivers.

use std::sync::Arc;

use crate::proto::frame::{self, OpCode};

/// A complete WebSocket message, borrowed for the duration of a callback.
///
/// Text messages are already validated UTF-8. The bytes live in the reactor's
/// read buffer (or the connection's reassembly buffer for fragmented
/// messages): copy them if you need them after the callback returns.
///
/// ```
/// use wsreactor::Message;
/// let m = Message::Text("hi");
/// assert_eq!(m.as_bytes(), b"hi");
/// assert!(m.is_text());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// A message encoded once as a complete server frame, cheap to clone and to
/// queue on any number of connections (they share the bytes).
///
/// ```
/// use wsreactor::{Frame, Message};
/// let tick = Frame::new(Message::Text(r#"{"px":101.5}"#));
/// let copy = tick.clone(); // no copy of the bytes
/// assert_eq!(copy.len(), tick.len());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Arc<[u8]>,
}

impl Frame {
    /// Encodes `msg` as one unfragmented, unmasked frame.
    pub fn new(msg: Message<'_>) -> Frame {
        let mut v = Vec::new();
        frame::write_frame(&mut v, true, false, msg.opcode(), msg.as_bytes());
        Frame { bytes: v.into() }
    }

    /// The encoded size (header and payload) in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the frame has no bytes (never true for a valid frame).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn shared(&self) -> &Arc<[u8]> {
        &self.bytes
    }
}
