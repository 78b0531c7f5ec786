//! The client side of the opening handshake (RFC 6455 §4.1), for the load
//! generator and tests: the key, the upgrade request, and checking the
//! server's response.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::response::{
    accept_key, check_extra, check_value, is_token, put_extra_and_end, put_header, put_optional,
};
use super::{Fields, HandshakeError, HeadErrors, InvalidHeader, MAX_HEADERS, head_len};

const RESPONSE_ERRORS: HeadErrors = HeadErrors {
    too_large: HandshakeError::new(0, "response head too large"),
    too_many: HandshakeError::new(0, "too many headers in response"),
    malformed: HandshakeError::new(0, "malformed response"),
};

/// A client's `Sec-WebSocket-Key`: 24 base64 characters. See [`generate_key`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 24]);

impl ClientKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Sec-WebSocket-Key` from 16 random bytes the caller supplies (RFC 6455
/// §4.1 asks for a fresh random nonce per connection).
///
/// ```
/// use wsreactor::proto::handshake::generate_key;
///
/// assert_eq!(generate_key(*b"the sample nonce").as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
/// ```
pub fn generate_key(nonce: [u8; 16]) -> ClientKey {
    let mut out = [0u8; 24];
    // 16 bytes always encode to exactly 24 characters, so this cannot fail.
    let _ = STANDARD.encode_slice(nonce, &mut out);
    ClientKey(out)
}

/// Appends a client upgrade request for `path_and_query` on `host`.
///
/// `key` comes from [`generate_key`]; `protocols` (HTTP tokens) are offered in
/// one `Sec-WebSocket-Protocol` header; `extensions` is sent as is; `extra`
/// headers follow in order. Invalid input is refused with nothing written.
///
/// ```
/// use wsreactor::proto::handshake::{generate_key, write_client_request};
///
/// let key = generate_key([7; 16]);
/// let mut out = Vec::new();
/// write_client_request(&mut out, "localhost:9001", "/chat", key.as_str(), &["v1"], None, &[])?;
/// assert!(out.starts_with(b"GET /chat HTTP/1.1\r\nHost: localhost:9001\r\n"));
/// assert!(out.ends_with(b"Sec-WebSocket-Protocol: v1\r\n\r\n"));
/// # Ok::<(), wsreactor::proto::handshake::InvalidHeader>(())
/// ```
pub fn write_client_request(
    out: &mut Vec<u8>,
    host: &str,
    path_and_query: &str,
    key: &str,
    protocols: &[&str],
    extensions: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<(), InvalidHeader> {
    if path_and_query.is_empty() || !path_and_query.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidHeader::Target);
    }
    check_value(host)?;
    check_value(key)?;
    if !protocols.iter().all(|p| is_token(p)) {
        return Err(InvalidHeader::Value);
    }
    check_value(extensions.unwrap_or(""))?;
    check_extra(extra)?;
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    put_header(out, "Host", host);
    put_header(out, "Upgrade", "websocket");
    put_header(out, "Connection", "Upgrade");
    put_header(out, "Sec-WebSocket-Key", key);
    put_header(out, "Sec-WebSocket-Version", "13");
    if let Some((first, rest)) = protocols.split_first() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(first.as_bytes());
        for p in rest {
            out.extend_from_slice(b", ");
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    put_optional(out, "Sec-WebSocket-Extensions", extensions);
    put_extra_and_end(out, extra);
    Ok(())
}

/// A server's `101 Switching Protocols` response, validated by [`parse_response`].
#[derive(Debug, Clone)]
pub struct Response<'a> {
    status: u16,
    fields: Fields<'a>,
}

impl<'a> Response<'a> {
    /// The status code: always 101 for a response that passed [`parse_response`].
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The subprotocol the server chose, if any. Check that it is one you offered.
    pub fn protocol(&self) -> Option<&'a str> {
        self.fields.first_str("sec-websocket-protocol")
    }

    /// The raw value of every `Sec-WebSocket-Extensions` header, in order.
    pub fn extensions(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.fields.all("sec-websocket-extensions")
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.first(name)
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.fields.iter()
    }
}

/// Parses and validates the server's answer to a request sent with `key`.
///
/// `Ok(None)`: the head is incomplete (and shorter than `max_head`).
/// `Ok(Some((resp, n)))`: the head is the first `n` bytes; the rest are frames.
/// A complete response with a status other than 101 is an error carrying that
/// status; a 101 without `Upgrade: websocket`, `Connection: upgrade` or the
/// right `Sec-WebSocket-Accept`, or a head that is malformed or longer than
/// `max_head`, is an error with status 0.
///
/// ```
/// use wsreactor::proto::handshake::parse_response;
///
/// let buf = b"HTTP/1.1 101 Switching Protocols\r\n\
///     Upgrade: websocket\r\n\
///     Connection: Upgrade\r\n\
///     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
///     \r\n";
/// let (resp, n) = parse_response(buf, "dGhlIHNhbXBsZSBub25jZQ==", 4096)?.expect("complete");
/// assert_eq!((resp.status(), resp.protocol(), n), (101, None, buf.len()));
///
/// let refused = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
/// let err = parse_response(refused, "dGhlIHNhbXBsZSBub25jZQ==", 4096).unwrap_err();
/// assert_eq!(err.status, 403);
/// # Ok::<(), wsreactor::proto::handshake::HandshakeError>(())
/// ```
pub fn parse_response<'a>(
    buf: &'a [u8],
    key: &str,
    max_head: usize,
) -> Result<Option<(Response<'a>, usize)>, HandshakeError> {
    let buf = buf.get(..max_head).unwrap_or(buf);
    let mut list = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut list);
    let status = parsed.parse(buf);
    let (code, version) = (parsed.code.unwrap_or(0), parsed.version);
    let len = parsed.headers.len();
    let Some(n) = head_len(status, buf.len(), max_head, &RESPONSE_ERRORS)? else {
        return Ok(None);
    };
    let fields = Fields { list, len };

    if code != 101 {
        return Err(HandshakeError::new(code, "server did not switch protocols"));
    }
    if version != Some(1) {
        return Err(HandshakeError::new(0, "HTTP version must be 1.1"));
    }
    if !fields.has_token("upgrade", "websocket") {
        return Err(HandshakeError::new(0, "Upgrade must list websocket"));
    }
    if !fields.has_token("connection", "upgrade") {
        return Err(HandshakeError::new(0, "Connection must list upgrade"));
    }
    match fields.single("sec-websocket-accept") {
        Ok(v) if v == accept_key(key.as_bytes()).as_str().as_bytes() => {}
        _ => return Err(HandshakeError::new(0, "wrong Sec-WebSocket-Accept")),
    }
    if fields.all("sec-websocket-protocol").nth(1).is_some() {
        return Err(HandshakeError::new(0, "repeated Sec-WebSocket-Protocol"));
    }
    Ok(Some((Response { status: code, fields }, n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::fixtures::*;
    use crate::proto::handshake::request::valid_key;

    #[test]
    fn generate_key_encodes_the_nonce() {
        let key = generate_key(*b"the sample nonce");
        assert_eq!((key.as_str(), key.to_string()), (KEY, KEY.to_string()));
        for nonce in [[0u8; 16], [0xff; 16], *b"0123456789abcdef"] {
            let key = generate_key(nonce);
            assert_eq!(key.as_str().len(), 24);
            assert!(valid_key(key.as_str().as_bytes()).is_some());
            let mut decoded = [0u8; 18];
            assert_eq!(STANDARD.decode_slice(key.as_str(), &mut decoded), Ok(16));
            assert_eq!(decoded[..16], nonce);
        }
    }

    #[test]
    fn client_request_exact_text() {
        let mut out = Vec::new();
        write_client_request(&mut out, "localhost:9001", "/chat?x=1", KEY, &[], None, &[])
            .expect("valid");
        assert_eq!(
            text(&out),
            "GET /chat?x=1 HTTP/1.1\r\n\
            Host: localhost:9001\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\n\
            \r\n"
        );

        let mut out = Vec::new();
        write_client_request(
            &mut out,
            "example.com",
            "/",
            KEY,
            &["v2.chat", "v1.chat"],
            Some("permessage-deflate"),
            &[("Origin", "http://example.com")],
        )
        .expect("valid");
        assert_eq!(
            text(&out),
            "GET / HTTP/1.1\r\n\
            Host: example.com\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Protocol: v2.chat, v1.chat\r\n\
            Sec-WebSocket-Extensions: permessage-deflate\r\n\
            Origin: http://example.com\r\n\
            \r\n"
        );
    }

    #[test]
    fn client_request_injection_is_refused_with_nothing_written() {
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Option<&'a str>, InvalidHeader);
        let cases: [Case<'_>; 9] = [
            ("a\r\nX: 1", "/", KEY, &[], None, InvalidHeader::Value),
            ("a", "/a b", KEY, &[], None, InvalidHeader::Target),
            ("a", "", KEY, &[], None, InvalidHeader::Target),
            ("a", "/\r\nX: 1", KEY, &[], None, InvalidHeader::Target),
            ("a", "/é", KEY, &[], None, InvalidHeader::Target),
            ("a", "/", "k\n", &[], None, InvalidHeader::Value),
            ("a", "/", KEY, &["ok", "a b"], None, InvalidHeader::Value),
            ("a", "/", KEY, &[""], None, InvalidHeader::Value),
            ("a", "/", KEY, &[], Some("x\r\n"), InvalidHeader::Value),
        ];
        for (host, target, key, protocols, extensions, expected) in cases {
            let mut out = Vec::new();
            let result =
                write_client_request(&mut out, host, target, key, protocols, extensions, &[]);
            assert_eq!(result, Err(expected), "{host:?} {target:?} {key:?} {protocols:?}");
            assert!(out.is_empty());
        }
        let mut out = Vec::new();
        let result = write_client_request(&mut out, "a", "/", KEY, &[], None, &[("X Y", "1")]);
        assert_eq!(result, Err(InvalidHeader::Name));
        assert!(out.is_empty());
    }

    fn response(lines: &[&str]) -> Vec<u8> {
        head("HTTP/1.1 101 Switching Protocols", lines)
    }

    const RESPONSE: [&str; 3] = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    ];

    fn response_error(buf: &[u8]) -> HandshakeError {
        parse_response(buf, KEY, MAX).expect_err("refused")
    }

    #[test]
    fn parse_response_valid_and_incremental() {
        let mut buf = response(&[
            "upgrade: WebSocket",
            "CONNECTION: keep-alive, upgrade",
            "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "Sec-WebSocket-Protocol: chat",
            "Sec-WebSocket-Extensions: permessage-deflate",
            "Server: test",
        ]);
        let head_len = buf.len();
        buf.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        for i in 0..head_len {
            assert!(matches!(parse_response(&buf[..i], KEY, MAX), Ok(None)), "prefix of {i}");
        }
        let (resp, n) = parse_response(&buf, KEY, MAX).expect("accepted").expect("complete");
        assert_eq!(n, head_len);
        assert_eq!(&buf[n..], b"\x81\x02hi");
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.protocol(), Some("chat"));
        assert_eq!(resp.extensions().collect::<Vec<_>>(), [b"permessage-deflate"]);
        assert_eq!(resp.header("server"), Some(&b"test"[..]));
        assert_eq!(resp.headers().count(), 6);
    }

    #[test]
    fn parse_response_refusals() {
        let refused = head("HTTP/1.1 403 Forbidden", &["Content-Length: 3"]);
        assert_eq!(
            response_error(&refused),
            HandshakeError::new(403, "server did not switch protocols")
        );
        let upgrade_required =
            head("HTTP/1.1 426 Upgrade Required", &["Sec-WebSocket-Version: 13"]);
        assert_eq!(response_error(&upgrade_required).status, 426);
        let wrong_accept = "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==";
        for (buf, reason) in [
            (response(&RESPONSE[1..]), "Upgrade must list websocket"),
            (response(&["Upgrade: h2c", RESPONSE[1], RESPONSE[2]]), "Upgrade must list websocket"),
            (response(&[RESPONSE[0], RESPONSE[2]]), "Connection must list upgrade"),
            (
                response(&[RESPONSE[0], "Connection: close", RESPONSE[2]]),
                "Connection must list upgrade",
            ),
            (response(&RESPONSE[..2]), "wrong Sec-WebSocket-Accept"),
            (response(&[RESPONSE[0], RESPONSE[1], wrong_accept]), "wrong Sec-WebSocket-Accept"),
            (
                response(&[RESPONSE[0], RESPONSE[1], RESPONSE[2], RESPONSE[2]]),
                "wrong Sec-WebSocket-Accept",
            ),
            (
                response(&[
                    RESPONSE[0],
                    RESPONSE[1],
                    RESPONSE[2],
                    "Sec-WebSocket-Protocol: a",
                    "Sec-WebSocket-Protocol: b",
                ]),
                "repeated Sec-WebSocket-Protocol",
            ),
            (head("HTTP/1.0 101 Switching Protocols", &RESPONSE), "HTTP version must be 1.1"),
            (b"HTTP/1.1 1O1 Switching\r\n\r\n".to_vec(), "malformed response"),
            (b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), "malformed response"),
        ] {
            assert_eq!(response_error(&buf), HandshakeError::new(0, reason));
        }
        // The accept value belongs to the key that was sent.
        let buf = response(&RESPONSE);
        let other_key = generate_key([1; 16]);
        assert!(parse_response(&buf, other_key.as_str(), MAX).is_err());
        // The head cap.
        let len = buf.len();
        assert!(parse_response(&buf, KEY, len).is_ok());
        assert_eq!(
            parse_response(&buf, KEY, len - 1).expect_err("over").reason,
            "response head too large"
        );
        assert!(matches!(parse_response(&buf[..len - 1], KEY, len), Ok(None)));
    }
}
