//! A complete WebSocket message as the protocol layer hands it out.

use super::frame::OpCode;

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

    /// The opcode of a frame carrying this message.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}
