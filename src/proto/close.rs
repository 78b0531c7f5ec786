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
    /// 1013: try again later, the server is overloaded (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether a peer may send this code in a close frame.
    ///
    /// Valid: 1000-1003 and 1007-1014 (defined or registered), 3000-4999
    /// (libraries, frameworks and applications). Everything else is not:
    /// 0-999 are unused, 1004 is reserved, 1005, 1006 and 1015 must never be
    /// sent, and 1016-2999 and 5000 and up are not assigned.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl std::fmt::Display for CloseCode {
    /// The number, as it appears on the wire.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// The longest close reason: a control payload is at most 125 bytes, two of
/// which are the code.
pub const MAX_REASON_LEN: usize = 123;

/// Parses a received (already unmasked) close payload.
///
/// An empty payload gives [`CloseCode::NO_STATUS`] and an empty reason.
/// A one-byte payload is [`ProtoError::BadClosePayload`], a code that may not
/// be sent is [`ProtoError::InvalidCloseCode`] and a reason that is not UTF-8
/// is [`ProtoError::InvalidUtf8`].
///
/// ```
/// use wsreactor::proto::close::parse_close_payload;
/// use wsreactor::proto::{CloseCode, ProtoError};
///
/// assert_eq!(parse_close_payload(b"\x03\xE8bye"), Ok((CloseCode::NORMAL, "bye")));
/// assert_eq!(parse_close_payload(b""), Ok((CloseCode::NO_STATUS, "")));
/// assert_eq!(parse_close_payload(b"\x03\xED"), Err(ProtoError::InvalidCloseCode(1005)));
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<(CloseCode, &str), ProtoError> {
    match payload {
        [] => Ok((CloseCode::NO_STATUS, "")),
        [_] => Err(ProtoError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtoError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtoError::InvalidUtf8)?;
            Ok((code, reason))
        }
    }
}

/// Writes a close payload (code, then the reason cut to fit 125 bytes at a
/// character boundary) into `out`, returning its length.
///
/// [`CloseCode::NO_STATUS`] means "no code", so it is written as the empty
/// payload (the reason is dropped); this makes echoing a received close
/// correct. Other codes are written as given: sending only codes that are
/// [valid on the wire](CloseCode::is_valid_on_wire) is up to the caller.
///
/// ```
/// use wsreactor::proto::close::encode_close_payload;
/// use wsreactor::proto::CloseCode;
///
/// let mut out = [0u8; 125];
/// let n = encode_close_payload(CloseCode::GOING_AWAY, "restarting", &mut out);
/// assert_eq!(&out[..n], b"\x03\xE9restarting");
/// ```
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    if code == CloseCode::NO_STATUS {
        return 0;
    }
    let mut len = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(len) {
        len -= 1;
    }
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    out[2..2 + len].copy_from_slice(&reason.as_bytes()[..len]);
    2 + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_codes_on_the_wire() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| CloseCode(c).is_valid_on_wire()).collect();
        let expect: Vec<u16> = (1000..=1003).chain(1007..=1014).chain(3000..=4999).collect();
        assert_eq!(valid, expect);
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
    }

    #[test]
    fn conversions_and_display() {
        assert_eq!(CloseCode::from(1001), CloseCode::GOING_AWAY);
        assert_eq!(u16::from(CloseCode::TOO_BIG), 1009);
        assert_eq!(CloseCode::PROTOCOL_ERROR.to_string(), "1002");
        assert_eq!(format!("{:>5}", CloseCode(3000)), " 3000");
    }

    #[test]
    fn parses_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok((CloseCode::NO_STATUS, "")));
        assert_eq!(parse_close_payload(&[0x03, 0xE8]), Ok((CloseCode::NORMAL, "")));
        assert_eq!(parse_close_payload(&[0x0F, 0xA0, b'x']), Ok((CloseCode(4000), "x")));
        let mut long = vec![0x0B, 0xB8];
        long.extend("é".repeat(61).as_bytes()); // 122 bytes of reason
        assert_eq!(parse_close_payload(&long), Ok((CloseCode(3000), "é".repeat(61).as_str())));
    }

    #[test]
    fn rejects_bad_payloads() {
        for byte in [0x00, 0x03, 0xFF] {
            assert_eq!(parse_close_payload(&[byte]), Err(ProtoError::BadClosePayload));
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            let payload = code.to_be_bytes();
            assert_eq!(parse_close_payload(&payload), Err(ProtoError::InvalidCloseCode(code)));
        }
        // The code is judged before the reason.
        assert_eq!(parse_close_payload(b"\x00\x00\xFF"), Err(ProtoError::InvalidCloseCode(0)));
        for reason in [&b"\xFF"[..], b"ok\xC0\xAF", b"\xED\xA0\x80", b"cut \xE2\x82"] {
            let mut payload = vec![0x03, 0xE8];
            payload.extend_from_slice(reason);
            assert_eq!(parse_close_payload(&payload), Err(ProtoError::InvalidUtf8), "{reason:x?}");
        }
    }

    #[test]
    fn encodes_payloads() {
        let mut out = [0u8; 125];
        let n = encode_close_payload(CloseCode::NORMAL, "", &mut out);
        assert_eq!(&out[..n], [0x03, 0xE8]);
        let n = encode_close_payload(CloseCode(4321), "done", &mut out);
        assert_eq!(parse_close_payload(&out[..n]), Ok((CloseCode(4321), "done")));
        assert_eq!(encode_close_payload(CloseCode::NO_STATUS, "ignored", &mut out), 0);
    }

    #[test]
    fn truncates_reasons_at_a_char_boundary() {
        let mut out = [0u8; 125];
        let ascii = "a".repeat(200);
        assert_eq!(encode_close_payload(CloseCode::NORMAL, &ascii, &mut out), 125);
        assert_eq!(&out[2..], "a".repeat(123).as_bytes());
        // 2-, 3- and 4-byte characters straddling byte 123 of the reason.
        for (prefix, ch) in [(122, "é"), (122, "€"), (121, "€"), (120, "😀"), (122, "😀")]
        {
            let reason = format!("{}{}", "a".repeat(prefix), ch.repeat(3));
            let n = encode_close_payload(CloseCode::NORMAL, &reason, &mut out);
            let (code, parsed) = parse_close_payload(&out[..n]).unwrap();
            assert_eq!(code, CloseCode::NORMAL);
            assert!(parsed.len() <= MAX_REASON_LEN && reason.starts_with(parsed));
            assert!(MAX_REASON_LEN - parsed.len() < ch.len(), "{prefix} {ch}: cut too much");
        }
    }
}
