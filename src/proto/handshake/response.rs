//! The server's answers to an upgrade request (RFC 6455 §4.2.2): the accept
//! key, the `101 Switching Protocols` response, the reject responses, and the
//! header-writing helpers that refuse header injection.

use std::fmt;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest as _, Sha1};

use super::{GUID, InvalidHeader};

/// A `Sec-WebSocket-Accept` value: 28 base64 characters. See [`accept_key`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptKey([u8; 28]);

impl AcceptKey {
    /// The value as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: base64 of
/// SHA-1(key + [`GUID`]) (RFC 6455 §4.2.2).
///
/// ```
/// use wsreactor::proto::handshake::accept_key;
///
/// // The example of RFC 6455 §1.3.
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").as_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> AcceptKey {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 characters, so this cannot fail.
    let _ = STANDARD.encode_slice(&digest[..], &mut out);
    AcceptKey(out)
}

/// Appends a `101 Switching Protocols` response accepting a request whose
/// `Sec-WebSocket-Key` is `req_key` (see [`Request::key`](super::Request::key)).
///
/// `protocol` is the chosen subprotocol (an HTTP token; choose one the client
/// offers, see [`Request::offers_protocol`](super::Request::offers_protocol));
/// `extensions` the negotiated `Sec-WebSocket-Extensions` value; `extra` more
/// headers, written in order.
/// Invalid names or values are refused with nothing written.
///
/// ```
/// use wsreactor::proto::handshake::write_accept_response;
///
/// let mut out = Vec::new();
/// write_accept_response(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), None, &[])?;
/// assert_eq!(
///     out,
///     b"HTTP/1.1 101 Switching Protocols\r\n\
///       Upgrade: websocket\r\n\
///       Connection: Upgrade\r\n\
///       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
///       Sec-WebSocket-Protocol: chat\r\n\
///       \r\n"
/// );
///
/// // Header injection is refused.
/// let bad = write_accept_response(&mut out, b"k", None, None, &[("X-A", "1\r\nX-B: 2")]);
/// assert!(bad.is_err());
/// # Ok::<(), wsreactor::proto::handshake::InvalidHeader>(())
/// ```
pub fn write_accept_response(
    out: &mut Vec<u8>,
    req_key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<(), InvalidHeader> {
    if protocol.is_some_and(|p| !is_token(p)) {
        return Err(InvalidHeader::Value);
    }
    check_value(extensions.unwrap_or(""))?;
    check_extra(extra)?;
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    put_header(out, "Upgrade", "websocket");
    put_header(out, "Connection", "Upgrade");
    put_header(out, "Sec-WebSocket-Accept", accept_key(req_key).as_str());
    put_optional(out, "Sec-WebSocket-Protocol", protocol);
    put_optional(out, "Sec-WebSocket-Extensions", extensions);
    put_extra_and_end(out, extra);
    Ok(())
}

/// Appends a response refusing the upgrade: the status line with the standard
/// reason phrase, `Content-Type: text/plain; charset=utf-8`, `Content-Length`,
/// `Connection: close`, then `Allow: GET` for 405 and `Upgrade: websocket` +
/// `Sec-WebSocket-Version: 13` for 426, the `extra` headers, and the body
/// `reason` followed by a newline.
///
/// Refuses, with nothing written, a `status` outside 100..=999 and invalid
/// extra header names or values. The caller closes the connection after it.
///
/// ```
/// use wsreactor::proto::handshake::write_reject_response;
///
/// let mut out = Vec::new();
/// write_reject_response(&mut out, 403, "origin not allowed", &[])?;
/// assert_eq!(
///     out,
///     b"HTTP/1.1 403 Forbidden\r\n\
///       Content-Type: text/plain; charset=utf-8\r\n\
///       Content-Length: 19\r\n\
///       Connection: close\r\n\
///       \r\n\
///       origin not allowed\n"
/// );
/// # Ok::<(), wsreactor::proto::handshake::InvalidHeader>(())
/// ```
pub fn write_reject_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
) -> Result<(), InvalidHeader> {
    if !(100..=999).contains(&status) {
        return Err(InvalidHeader::Status);
    }
    check_extra(extra)?;
    put_reject(out, status, reason, extra);
    Ok(())
}

/// [`write_reject_response`] without the checks.
pub(super) fn put_reject(out: &mut Vec<u8>, status: u16, reason: &str, extra: &[(&str, &str)]) {
    // Writing to a Vec<u8> cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    put_header(out, "Content-Type", "text/plain; charset=utf-8");
    let _ = write!(out, "Content-Length: {}\r\n", reason.len() + 1);
    put_header(out, "Connection", "close");
    match status {
        405 => put_header(out, "Allow", "GET"),
        426 => {
            put_header(out, "Upgrade", "websocket");
            put_header(out, "Sec-WebSocket-Version", "13");
        }
        _ => {}
    }
    put_extra_and_end(out, extra);
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// The standard reason phrase, or a generic one for the status class.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

// ---------------------------------------------------------------------------
// Writing helpers.

/// An HTTP token (RFC 9110 §5.6.2): one or more tchar.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value may hold visible characters, spaces, tabs and non-ASCII
/// bytes, but no control character (CR, LF and NUL above all).
pub(super) fn check_value(value: &str) -> Result<(), InvalidHeader> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(InvalidHeader::Value);
    }
    Ok(())
}

pub(super) fn check_extra(extra: &[(&str, &str)]) -> Result<(), InvalidHeader> {
    for (name, value) in extra {
        if !is_token(name) {
            return Err(InvalidHeader::Name);
        }
        check_value(value)?;
    }
    Ok(())
}

pub(super) fn put_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(super) fn put_optional(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        put_header(out, name, value);
    }
}

pub(super) fn put_extra_and_end(out: &mut Vec<u8>, extra: &[(&str, &str)]) {
    for (name, value) in extra {
        put_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::HandshakeError;
    use crate::proto::handshake::fixtures::*;

    // --- accept key ---------------------------------------------------------

    #[test]
    fn accept_key_matches_rfc_example() {
        let accept = accept_key(KEY.as_bytes());
        assert_eq!(accept.as_str(), ACCEPT);
        assert_eq!(accept.to_string(), ACCEPT);
        assert_eq!(format!("{accept:?}"), format!("{ACCEPT:?}"));
    }

    // --- responses --------------------------------------------------------------

    #[test]
    fn accept_response_exact_text() {
        let mut out = b"before|".to_vec();
        write_accept_response(&mut out, KEY.as_bytes(), None, None, &[]).expect("valid");
        assert_eq!(
            text(&out),
            "before|HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            \r\n"
        );

        let mut out = Vec::new();
        write_accept_response(
            &mut out,
            KEY.as_bytes(),
            Some("chat"),
            Some("permessage-deflate; server_no_context_takeover"),
            &[("Server", "wsreactor"), ("X-Trace", "a\tb ü")],
        )
        .expect("valid");
        assert_eq!(
            text(&out),
            "HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            Sec-WebSocket-Protocol: chat\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
            Server: wsreactor\r\n\
            X-Trace: a\tb ü\r\n\
            \r\n"
        );
    }

    #[test]
    fn reject_response_exact_texts() {
        let cases: [(u16, &str, &str); 4] = [
            (
                400,
                "invalid Sec-WebSocket-Key",
                "HTTP/1.1 400 Bad Request\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\
                Content-Length: 26\r\n\
                Connection: close\r\n\
                \r\n\
                invalid Sec-WebSocket-Key\n",
            ),
            (
                405,
                "method must be GET",
                "HTTP/1.1 405 Method Not Allowed\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\
                Content-Length: 19\r\n\
                Connection: close\r\n\
                Allow: GET\r\n\
                \r\n\
                method must be GET\n",
            ),
            (
                426,
                "Sec-WebSocket-Version must be 13",
                "HTTP/1.1 426 Upgrade Required\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\
                Content-Length: 33\r\n\
                Connection: close\r\n\
                Upgrade: websocket\r\n\
                Sec-WebSocket-Version: 13\r\n\
                \r\n\
                Sec-WebSocket-Version must be 13\n",
            ),
            (
                431,
                "",
                "HTTP/1.1 431 Request Header Fields Too Large\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\
                Content-Length: 1\r\n\
                Connection: close\r\n\
                \r\n\
                \n",
            ),
        ];
        for (status, reason, expected) in cases {
            let mut out = Vec::new();
            write_reject_response(&mut out, status, reason, &[]).expect("valid");
            assert_eq!(text(&out), expected);
            // The error type writes the same bytes.
            let mut from_error = Vec::new();
            HandshakeError { status, reason: "" }.write_response(&mut from_error);
            let mut plain = Vec::new();
            write_reject_response(&mut plain, status, "", &[]).expect("valid");
            assert_eq!(from_error, plain);
        }
    }

    #[test]
    fn reject_response_with_extras_and_a_utf8_body() {
        let mut out = b"before|".to_vec();
        write_reject_response(&mut out, 429, "naïve", &[("Retry-After", "5")]).expect("valid");
        assert_eq!(
            text(&out),
            "before|HTTP/1.1 429 Too Many Requests\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Length: 7\r\n\
            Connection: close\r\n\
            Retry-After: 5\r\n\
            \r\n\
            naïve\n"
        );
    }

    #[test]
    fn reason_phrases() {
        for (status, phrase) in [
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (426, "Upgrade Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (302, "Redirection"),
            (418, "Client Error"),
            (504, "Server Error"),
            (101, "Informational"),
            (200, "Success"),
            (999, "Unknown"),
        ] {
            let mut out = Vec::new();
            write_reject_response(&mut out, status, "x", &[]).expect("valid");
            let expected = format!("HTTP/1.1 {status} {phrase}\r\n");
            assert!(text(&out).starts_with(&expected), "{status}");
        }
        for status in [0, 99, 1000, u16::MAX] {
            let mut out = Vec::new();
            assert_eq!(
                write_reject_response(&mut out, status, "x", &[]),
                Err(InvalidHeader::Status)
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn every_parse_error_writes_a_parseable_response() {
        for buf in [
            head("POST /chat HTTP/1.1", &VALID),
            with("upgrade", &[]),
            with("sec-websocket-key", &[]),
            b"\x16\x03\x01".repeat(2),
        ] {
            let err = refused(&buf);
            let mut out = Vec::new();
            err.write_response(&mut out);
            let mut list = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut list);
            let n = match resp.parse(&out) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("{other:?}"),
            };
            assert_eq!(resp.code, Some(err.status));
            assert_eq!(&out[n..], format!("{}\n", err.reason).as_bytes());
        }
        let mut out = Vec::new();
        HandshakeError { status: 7, reason: "odd" }.write_response(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn header_injection_is_refused_with_nothing_written() {
        let bad_values = ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\0b", "a\x01b", "a\x7fb"];
        let bad_names = ["", "X Bad", "X:Bad", "X\r\nY", "Ümlaut", "X(1)", "X/Y"];
        let key = KEY.as_bytes();
        for value in bad_values {
            let mut out = b"before".to_vec();
            let extra = [("X-Ok", "1"), ("X-Bad", value)];
            assert_eq!(
                write_accept_response(&mut out, key, None, None, &extra),
                Err(InvalidHeader::Value)
            );
            assert_eq!(
                write_accept_response(&mut out, key, None, Some(value), &[]),
                Err(InvalidHeader::Value)
            );
            assert_eq!(
                write_reject_response(&mut out, 403, "no", &extra),
                Err(InvalidHeader::Value)
            );
            assert_eq!(out, b"before");
        }
        for name in bad_names {
            let mut out = b"before".to_vec();
            let extra = [(name, "1")];
            assert_eq!(
                write_accept_response(&mut out, key, None, None, &extra),
                Err(InvalidHeader::Name)
            );
            assert_eq!(
                write_reject_response(&mut out, 403, "no", &extra),
                Err(InvalidHeader::Name)
            );
            assert_eq!(out, b"before");
        }
        for protocol in ["", "a b", "a,b", "chat\r\nX: 1", "a\"b"] {
            let mut out = Vec::new();
            let result = write_accept_response(&mut out, key, Some(protocol), None, &[]);
            assert_eq!(result, Err(InvalidHeader::Value), "{protocol:?}");
            assert!(out.is_empty());
        }
        // Every token character is allowed in a name.
        let mut out = Vec::new();
        let extra = [("!#$%&'*+-.^_`|~0aZ", "v")];
        write_accept_response(&mut out, key, None, None, &extra).expect("token name");
    }
}
