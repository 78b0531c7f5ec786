//! The sans-IO protocol layer: bytes in, events and bytes out.
//!
//! Nothing in here touches a socket, a clock, a thread or a logger, and every
//! allocation is bounded by a limit passed in by the caller. That makes each
//! piece testable (and fuzzable) on plain byte slices, and lets a client such
//! as `wsbench` reuse the same code as the server.
//!
//! - [`frame`]: frame header parse/encode (RFC 6455 §5.2)
//! - [`mask`]: word-at-a-time (un)masking (§5.3)
//! - [`utf8`]: incremental, fail-fast UTF-8 validation (§8.1)
//! - [`close`]: close codes and close payloads (§5.5.1, §7.4)
//! - [`handshake`]: the opening handshake, both sides (§4)
//! - [`decoder`]: the streaming frame decoder that enforces every framing rule
//! - [`message`]: a whole message as it is handed out
//! - [`connection`]: the whole connection as a state machine: handshake,
//!   messages, the close handshake, pings and timeouts

#![forbid(unsafe_code)]

pub mod close;
pub mod connection;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::CloseCode;
pub use connection::Connection;
pub use decoder::{Decoded, Decoder, DecoderConfig, Event, Role};
pub use frame::{FrameHeader, OpCode};
pub use message::Message;

/// A violation of RFC 6455 by the peer; the connection must be failed with
/// [`ProtoError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// A client frame without the mask bit (or, for a client, a masked server frame).
    BadMask,
    /// RSV1/2/3 set without an extension that defines them.
    ReservedBits,
    /// An opcode RFC 6455 does not define (3-7, 0xB-0xF).
    UnknownOpcode(u8),
    /// A 64-bit payload length with the most significant bit set, or a
    /// length not in its shortest encoding.
    BadLength,
    /// A control frame with a payload over 125 bytes.
    ControlTooLong,
    /// A control frame without FIN.
    ControlFragmented,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is still open.
    ExpectedContinuation,
    /// A close frame with a 1-byte payload.
    BadClosePayload,
    /// A close frame carrying a code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message or a close reason.
    InvalidUtf8,
    /// A message larger than the configured maximum.
    MessageTooBig,
}

impl ProtoError {
    /// The close code RFC 6455 prescribes for this failure.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtoError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtoError::MessageTooBig => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short human-readable reason, suitable for a close frame and a log line.
    pub fn reason(self) -> &'static str {
        match self {
            ProtoError::BadMask => "bad frame masking",
            ProtoError::ReservedBits => "reserved bits set",
            ProtoError::UnknownOpcode(_) => "unknown opcode",
            ProtoError::BadLength => "invalid payload length",
            ProtoError::ControlTooLong => "control frame too long",
            ProtoError::ControlFragmented => "fragmented control frame",
            ProtoError::UnexpectedContinuation => "continuation without a message",
            ProtoError::ExpectedContinuation => "expected a continuation frame",
            ProtoError::BadClosePayload => "close payload of one byte",
            ProtoError::InvalidCloseCode(_) => "invalid close code",
            ProtoError::InvalidUtf8 => "invalid UTF-8",
            ProtoError::MessageTooBig => "message too big",
        }
    }
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            ProtoError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ProtoError {}
