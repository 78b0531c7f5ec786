//! The streaming frame decoder: enforces every RFC 6455 framing rule.
//!
//! The caller owns the bytes. [`Decoder::decode`] looks at the start of a
//! buffer, unmasks payload in place and returns what it found together with
//! how many bytes it consumed. A data frame does not have to be complete to
//! make progress: its payload is handed out in pieces as it arrives, so the
//! caller never buffers more than one control frame of raw input.

use super::{CloseCode, OpCode, ProtoError};

/// Which side of the connection this decoder is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Decodes client frames: they must be masked.
    #[default]
    Server,
    /// Decodes server frames: they must not be masked.
    Client,
}

/// Limits and negotiated options for a [`Decoder`].
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    /// Which side we are.
    pub role: Role,
    /// The largest message (sum of its frames' payloads) accepted.
    pub max_message_size: usize,
    /// RSV1 marks compressed messages (permessage-deflate was negotiated).
    pub allow_rsv1: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig { role: Role::Server, max_message_size: 16 << 20, allow_rsv1: false }
    }
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message that arrived as one frame in this buffer (validated).
    Text(&'a str),
    /// A whole binary message that arrived as one frame in this buffer.
    Binary(&'a [u8]),
    /// A piece of a message that spans frames or reads; append it to the
    /// message being assembled. Text pieces are validated incrementally
    /// (unless compressed) so invalid UTF-8 fails on the first bad byte.
    Fragment {
        /// The unmasked bytes.
        data: &'a [u8],
        /// The first piece of a message.
        first: bool,
        /// The last piece of the message.
        fin: bool,
        /// The message is text.
        text: bool,
        /// The message is compressed (RSV1 on its first frame).
        compressed: bool,
    },
    /// A ping with its payload.
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A close frame, validated.
    Close(CloseCode, &'a str),
}

/// The result of a call to [`Decoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Nothing can be done until more bytes arrive; nothing was consumed.
    NeedMore,
    /// `consumed` bytes were used up; `event` is what they produced, if anything
    /// (a data frame header on its own produces none).
    Progress {
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
        /// What the bytes produced.
        event: Option<Event<'a>>,
    },
}

/// Per-connection framing state. Small and heap-free.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    _todo: (),
}

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Decodes from the start of `buf`, unmasking payload in place.
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
        cfg: &DecoderConfig,
    ) -> Result<Decoded<'a>, ProtoError> {
        let _ = (buf, cfg, OpCode::Text);
        todo!()
    }

    /// Whether a fragmented message is open (some of it was delivered).
    pub fn in_message(&self) -> bool {
        todo!()
    }
}
