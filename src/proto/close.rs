//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::ProtoError;

/// A WebSocket close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload data inconsistent with the message type (e.g. invalid UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: unexpected server condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether a peer may send this code in a close frame.
    pub fn is_valid_on_wire(self) -> bool {
        todo!()
    }
}

/// Parses a received (already unmasked) close payload.
///
/// An empty payload gives [`CloseCode::NO_STATUS`] and an empty reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<(CloseCode, &str), ProtoError> {
    let _ = payload;
    todo!()
}

/// Writes a close payload (code, then the reason cut to fit 125 bytes at a
/// character boundary) into `out`, returning its length.
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    let _ = (code, reason, out);
    todo!()
}
