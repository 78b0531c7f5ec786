//! Frames encoded once for many receivers (and [`Message`], re-exported
//! from the protocol layer).

use std::sync::{Arc, OnceLock};

use crate::proto::frame::{self, OpCode};
pub use crate::proto::message::Message;

/// A message encoded once as a complete server frame, cheap to clone and to
/// queue on any number of connections (they share the bytes).
///
/// With permessage-deflate in `shared` mode, the frame is also compressed
/// once, the first time a connection that negotiated compression needs it,
/// and that compressed frame is shared too.
///
/// ```
/// use wsreactor::{Frame, Message};
/// let tick = Frame::new(Message::Text(r#"{"px":101.5}"#));
/// let copy = tick.clone(); // no copy of the bytes
/// assert_eq!(copy.len(), tick.len());
/// ```
#[derive(Clone)]
pub struct Frame(Arc<Encoded>);

struct Encoded {
    /// Header and payload, uncompressed.
    plain: Arc<[u8]>,
    /// Where the payload starts in `plain`.
    header_len: u8,
    opcode: OpCode,
    /// The payload compressed without context (RSV1 set), made at most once;
    /// `None` inside when compressing is not worth it.
    deflated: OnceLock<Option<Arc<[u8]>>>,
}

impl Frame {
    /// Encodes `msg` as one unfragmented, unmasked frame.
    pub fn new(msg: Message<'_>) -> Frame {
        let mut v = Vec::new();
        frame::write_frame(&mut v, true, false, msg.opcode(), msg.as_bytes());
        let header_len = (v.len() - msg.len()) as u8;
        Frame(Arc::new(Encoded {
            plain: v.into(),
            header_len,
            opcode: msg.opcode(),
            deflated: OnceLock::new(),
        }))
    }

    /// The encoded size (header and payload) in bytes, uncompressed.
    pub fn len(&self) -> usize {
        self.0.plain.len()
    }

    /// Whether the frame has no bytes (never true for a valid frame).
    pub fn is_empty(&self) -> bool {
        self.0.plain.is_empty()
    }

    /// The message the frame carries.
    pub fn message(&self) -> Message<'_> {
        let payload = &self.0.plain[usize::from(self.0.header_len)..];
        match self.0.opcode {
            // Built from a `Message::Text`, so the payload is UTF-8.
            OpCode::Text => {
                std::str::from_utf8(payload).map_or(Message::Binary(payload), Message::Text)
            }
            _ => Message::Binary(payload),
        }
    }

    pub(crate) fn plain(&self) -> &Arc<[u8]> {
        &self.0.plain
    }

    /// The compressed frame, made by `compress` on first use (on whichever
    /// thread gets there first) and shared from then on.
    pub(crate) fn deflated(
        &self,
        compress: impl FnOnce(Message<'_>) -> Option<Arc<[u8]>>,
    ) -> Option<&Arc<[u8]>> {
        self.0.deflated.get_or_init(|| compress(self.message())).as_ref()
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.0.plain == other.0.plain
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("opcode", &self.0.opcode)
            .field("len", &self.len())
            .field("deflated", &self.0.deflated.get().map(|d| d.as_ref().map(|b| b.len())))
            .finish()
    }
}
