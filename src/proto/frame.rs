//! Frame headers (RFC 6455 §5.2): parse from and encode into byte slices.

use super::ProtoError;

/// The longest frame header: 2 bytes + 8-byte length + 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest control frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode defined by RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// A UTF-8 text message (or its first fragment).
    Text = 0x1,
    /// A binary message (or its first fragment).
    Binary = 0x2,
    /// Close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for a reserved one.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        let _ = v;
        todo!()
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        todo!()
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit.
    pub fin: bool,
    /// RSV1 (permessage-deflate's "compressed" bit).
    pub rsv1: bool,
    /// RSV2 or RSV3 set (no extension here defines them).
    pub rsv23: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the mask bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
    /// How many bytes the header itself took (2..=14).
    pub header_len: usize,
}

/// Parses a frame header from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. Errors only for what makes the
/// header itself meaningless: a reserved opcode or a 64-bit length with the
/// top bit set. Rules that depend on state (masking, RSV bits, control frame
/// limits) are checked by [`crate::proto::Decoder`].
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, ProtoError> {
    let _ = buf;
    todo!()
}

/// Encodes a frame header into `out`, returning how many bytes were written.
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    let _ = (out, fin, rsv1, opcode, payload_len, mask);
    todo!()
}

/// Appends a whole unmasked (server-to-client) frame to `out`.
pub fn write_frame(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) {
    let _ = (out, fin, rsv1, opcode, payload);
    todo!()
}
