//! The server side of the opening handshake: parsing and validating the
//! client's upgrade request (RFC 6455 §4.2.1).

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Fields, HandshakeError, HeadErrors, MAX_HEADERS, Multiplicity, head_len, tokens};

const REQUEST_ERRORS: HeadErrors = HeadErrors {
    too_large: HandshakeError::new(431, "request head too large"),
    too_many: HandshakeError::new(431, "too many headers"),
    malformed: HandshakeError::new(400, "malformed request"),
};

/// A parsed upgrade request, borrowing the read buffer.
///
/// Every accessor returns slices of the buffer given to [`parse_request`].
/// Header names are matched case-insensitively; values are as sent, minus
/// surrounding whitespace.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a str,
    host: &'a str,
    key: &'a str,
    fields: Fields<'a>,
    peer: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// The request method; always `GET` for a request that passed [`parse_request`].
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The raw request target, e.g. `/chat?room=1`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The target up to (not including) the first `?`.
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(path, _)| path)
    }

    /// The target after the first `?`, if there is one (possibly empty).
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.first(name)
    }

    /// Like [`Request::header`], but `None` also when the value is not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.fields.first_str(name)
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.fields.iter()
    }

    /// The `Host` header (present exactly once and UTF-8, or the request was refused).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The `Origin` header, if present and UTF-8 (browsers always send it).
    pub fn origin(&self) -> Option<&'a str> {
        self.fields.first_str("origin")
    }

    /// The `Sec-WebSocket-Key` header: 24 base64 characters encoding 16 bytes.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// Every subprotocol the client offers, in order: all `Sec-WebSocket-Protocol`
    /// headers, split at commas, trimmed, empty elements skipped.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.fields
            .all("sec-websocket-protocol")
            .flat_map(tokens)
            .filter_map(|t| std::str::from_utf8(t).ok())
    }

    /// Whether the client offers the subprotocol `name` (compared exactly, case-sensitive).
    pub fn offers_protocol(&self, name: &str) -> bool {
        self.protocols().any(|p| p == name)
    }

    /// The raw value of every `Sec-WebSocket-Extensions` header, in order.
    pub fn extensions(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.fields.all("sec-websocket-extensions")
    }

    /// The peer's address, if the caller recorded it with [`Request::with_peer_addr`].
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Records the peer's address (this layer never sees the socket).
    pub fn with_peer_addr(mut self, addr: SocketAddr) -> Self {
        self.peer = Some(addr);
        self
    }
}

/// Parses and validates an upgrade request from the start of `buf`.
///
/// `Ok(None)`: the head is incomplete (and shorter than `max_head`).
/// `Ok(Some((req, n)))`: the head is the first `n` bytes; the rest are frames.
///
/// Looks at no more than `max_head` bytes and never allocates. Refusals, in
/// the order checked:
///
/// | status | when |
/// | --- | --- |
/// | 431 | the head is longer than `max_head`, or has more than [`MAX_HEADERS`] headers |
/// | 400 | the head is not valid HTTP/1.x |
/// | 405 | the method is not `GET` |
/// | 400 | the version is not HTTP/1.1 |
/// | 400 | `Host` is missing, repeated or not UTF-8 |
/// | 426 | no `Upgrade` header lists `websocket` |
/// | 400 | no `Connection` header lists `upgrade` |
/// | 426 | `Sec-WebSocket-Version` is missing or any is not exactly `13` |
/// | 400 | `Sec-WebSocket-Key` is missing, repeated, or not base64 of 16 bytes |
///
/// ```
/// use wsreactor::proto::handshake::parse_request;
///
/// let buf = b"GET /chat?room=1 HTTP/1.1\r\n\
///     Host: example.com\r\n\
///     Upgrade: websocket\r\n\
///     Connection: Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\n\
///     \r\n\
///     \x81\x80";
/// let (req, n) = parse_request(buf, 8192)?.expect("complete");
/// assert_eq!((req.path(), req.query()), ("/chat", Some("room=1")));
/// assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&buf[n..], b"\x81\x80"); // the first frame, for the caller to keep
///
/// // Incomplete: read more and call again.
/// assert!(parse_request(&buf[..20], 8192)?.is_none());
/// // A plain HTTP request gets 426 Upgrade Required.
/// let err = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 8192).unwrap_err();
/// assert_eq!(err.status, 426);
/// # Ok::<(), wsreactor::proto::handshake::HandshakeError>(())
/// ```
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(Request<'_>, usize)>, HandshakeError> {
    let buf = buf.get(..max_head).unwrap_or(buf);
    let mut list = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut list);
    let status = parsed.parse(buf);
    let (method, target, version) =
        (parsed.method.unwrap_or(""), parsed.path.unwrap_or(""), parsed.version);
    let len = parsed.headers.len();
    let Some(n) = head_len(status, buf.len(), max_head, &REQUEST_ERRORS)? else {
        return Ok(None);
    };
    let fields = Fields { list, len };

    if method != "GET" {
        return Err(HandshakeError::new(405, "method must be GET"));
    }
    if version != Some(1) {
        return Err(HandshakeError::new(400, "HTTP version must be 1.1"));
    }
    let host = match fields.single("host") {
        Ok(v) => std::str::from_utf8(v).map_err(|_| HandshakeError::new(400, "invalid Host"))?,
        Err(Multiplicity::Missing) => return Err(HandshakeError::new(400, "missing Host")),
        Err(Multiplicity::Repeated) => return Err(HandshakeError::new(400, "repeated Host")),
    };
    if !fields.has_token("upgrade", "websocket") {
        return Err(HandshakeError::new(426, "Upgrade must list websocket"));
    }
    if !fields.has_token("connection", "upgrade") {
        return Err(HandshakeError::new(400, "Connection must list upgrade"));
    }
    let mut versions = fields.all("sec-websocket-version").peekable();
    if versions.peek().is_none() || versions.any(|v| v != b"13") {
        return Err(HandshakeError::new(426, "Sec-WebSocket-Version must be 13"));
    }
    let key = match fields.single("sec-websocket-key") {
        Ok(v) => valid_key(v).ok_or(HandshakeError::new(400, "invalid Sec-WebSocket-Key"))?,
        Err(Multiplicity::Missing) => {
            return Err(HandshakeError::new(400, "missing Sec-WebSocket-Key"));
        }
        Err(Multiplicity::Repeated) => {
            return Err(HandshakeError::new(400, "repeated Sec-WebSocket-Key"));
        }
    };
    Ok(Some((Request { method, target, host, key, fields, peer: None }, n)))
}

/// `key` as a `&str` if it is canonical, padded base64 of exactly 16 bytes.
pub(super) fn valid_key(key: &[u8]) -> Option<&str> {
    let mut nonce = [0u8; 18];
    if key.len() != 24 || STANDARD.decode_slice(key, &mut nonce) != Ok(16) {
        return None;
    }
    std::str::from_utf8(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::fixtures::*;

    // --- parse_request: valid requests and accessors --------------------------

    #[test]
    fn rfc_example_request() {
        let buf = b"GET /chat HTTP/1.1\r\n\
            Host: server.example.com\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Origin: http://example.com\r\n\
            Sec-WebSocket-Protocol: chat, superchat\r\n\
            Sec-WebSocket-Version: 13\r\n\
            \r\n";
        let (req, n) = accepted(buf);
        assert_eq!(n, buf.len());
        assert_eq!(req.method(), "GET");
        assert_eq!((req.target(), req.path(), req.query()), ("/chat", "/chat", None));
        assert_eq!(req.host(), "server.example.com");
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.key(), KEY);
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        assert!(req.offers_protocol("chat") && req.offers_protocol("superchat"));
        assert!(!req.offers_protocol("Chat") && !req.offers_protocol("chat, superchat"));
        assert_eq!(req.extensions().count(), 0);
        assert_eq!(req.peer_addr(), None);
        assert_eq!(req.headers().count(), 7);
        assert_eq!(req.headers().next(), Some(("Host", &b"server.example.com"[..])));
    }

    #[test]
    fn path_and_query_split_at_first_question_mark() {
        for (target, path, query) in [
            ("/chat?room=1&x=2", "/chat", Some("room=1&x=2")),
            ("/", "/", None),
            ("/a?", "/a", Some("")),
            ("/a?b?c", "/a", Some("b?c")),
            ("/a%20b?q=%3F", "/a%20b", Some("q=%3F")),
        ] {
            let buf = head(&format!("GET {target} HTTP/1.1"), &VALID);
            let (req, _) = accepted(&buf);
            assert_eq!((req.target(), req.path(), req.query()), (target, path, query));
        }
    }

    #[test]
    fn head_length_is_exact_when_frames_follow() {
        let mut buf = valid();
        let head_len = buf.len();
        buf.extend_from_slice(FRAME);
        buf.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let (_, n) = accepted(&buf);
        assert_eq!(n, head_len);
        assert!(buf[n..].starts_with(FRAME));
    }

    #[test]
    fn byte_at_a_time_is_incomplete_until_the_last_byte() {
        let mut buf = valid();
        let head_len = buf.len();
        buf.extend_from_slice(FRAME);
        for i in 0..head_len {
            assert!(matches!(parse_request(&buf[..i], MAX), Ok(None)), "prefix of {i} bytes");
        }
        for i in head_len..=buf.len() {
            assert_eq!(accepted(&buf[..i]).1, head_len, "prefix of {i} bytes");
        }
    }

    #[test]
    fn leading_empty_lines_belong_to_the_head() {
        let mut buf = b"\r\n".to_vec();
        buf.extend_from_slice(&valid());
        assert_eq!(accepted(&buf).1, buf.len());
    }

    #[test]
    fn header_accessors() {
        let mut buf = with("x", &["Origin: https://app.example", "X-Bin: "]);
        let at = buf.len() - 4;
        buf.insert(at, 0xff); // a non-UTF-8 value
        let (req, _) = accepted(&buf);
        assert_eq!(req.header("ORIGIN"), Some(&b"https://app.example"[..]));
        assert_eq!(req.header_str("origin"), Some("https://app.example"));
        assert_eq!(req.header("x-bin"), Some(&[0xff][..]));
        assert_eq!(req.header_str("x-bin"), None);
        assert_eq!(req.header("X-Absent"), None);
        let names: Vec<&str> = req.headers().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "Host",
                "Upgrade",
                "Connection",
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Version",
                "Origin",
                "X-Bin"
            ]
        );
    }

    #[test]
    fn protocols_come_from_every_header_split_trimmed() {
        let buf = with(
            "x",
            &[
                "Sec-WebSocket-Protocol: a, ,b",
                "sec-websocket-protocol: c,",
                "Sec-WebSocket-Protocol:",
                "SEC-WEBSOCKET-PROTOCOL:   d\t,  e  ",
            ],
        );
        let (req, _) = accepted(&buf);
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
        assert!(req.offers_protocol("c") && req.offers_protocol("e"));
        assert!(!req.offers_protocol("") && !req.offers_protocol("a, "));
    }

    #[test]
    fn extensions_are_raw_header_values() {
        let buf = with(
            "x",
            &[
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                "sec-websocket-extensions: x-foo, x-bar",
            ],
        );
        let (req, _) = accepted(&buf);
        let values: Vec<&[u8]> = req.extensions().collect();
        assert_eq!(values, [&b"permessage-deflate; client_max_window_bits"[..], b"x-foo, x-bar"]);
    }

    #[test]
    fn peer_addr_is_plain_data() {
        let buf = valid();
        let (req, _) = accepted(&buf);
        let addr: SocketAddr = "192.0.2.7:50000".parse().expect("address");
        assert_eq!(req.with_peer_addr(addr).peer_addr(), Some(addr));
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let lower = head(
            "GET /chat HTTP/1.1",
            &[
                "host: example.com",
                "upgrade: WebSocket",
                "connection: UPGRADE",
                "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
                "sec-websocket-version: 13",
            ],
        );
        let upper = head(
            "GET /chat HTTP/1.1",
            &[
                "HOST: example.com",
                "UPGRADE: WEBSOCKET",
                "CONNECTION: upgrade",
                "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==",
                "SEC-WEBSOCKET-VERSION: 13",
            ],
        );
        // Go's net/http canonicalizes names this way.
        let go = head(
            "GET /chat HTTP/1.1",
            &[
                "Host: example.com",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-Websocket-Version: 13",
            ],
        );
        for buf in [lower, upper, go] {
            let (req, _) = accepted(&buf);
            assert_eq!((req.host(), req.key()), ("example.com", KEY));
        }
    }

    // --- parse_request: refusals ---------------------------------------------

    #[test]
    fn head_over_max_head_is_431_exactly_at_the_cap() {
        let buf = valid();
        let len = buf.len();
        assert_eq!(parse_request(&buf, len).expect("at the cap").expect("complete").1, len);
        // Complete, but one byte longer than the cap.
        assert_eq!(parse_request(&buf, len - 1).expect_err("over"), REQUEST_ERRORS.too_large);
        // Incomplete below the cap: wait; incomplete at the cap: refuse.
        assert!(matches!(parse_request(&buf[..len - 1], len), Ok(None)));
        let err = parse_request(&buf[..len - 1], len - 1).expect_err("at the cap");
        assert_eq!((err.status, err.reason), (431, "request head too large"));
        // Frames after the head do not count toward the cap.
        let mut more = buf.clone();
        more.extend_from_slice(&[0x81; 100]);
        assert_eq!(parse_request(&more, len).expect("fits").expect("complete").1, len);
        // A header line that never ends.
        let mut endless = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        endless.resize(10_000, b'a');
        assert!(matches!(parse_request(&endless[..4095], 4096), Ok(None)));
        assert_eq!(parse_request(&endless, 4096).expect_err("endless").status, 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let pad: Vec<String> =
            (0..MAX_HEADERS - VALID.len()).map(|i| format!("X-Pad-{i}: {i}")).collect();
        let mut lines: Vec<&str> = pad.iter().map(String::as_str).collect();
        let buf = with("x", &lines);
        assert_eq!(accepted(&buf).0.headers().count(), MAX_HEADERS);
        lines.push("X-One-Too-Many: 1");
        let err = refused(&with("x", &lines));
        assert_eq!((err.status, err.reason), (431, "too many headers"));
    }

    #[test]
    fn syntax_errors_are_400() {
        for buf in [
            &b"GET /chat HTTP/1.1\r\nHost example.com\r\n\r\n"[..],
            b"GET /chat HTTP/1.1\r\nHo st: example.com\r\n\r\n",
            b"GET /chat HTTP/1.1\r\nX: a\0b\r\n\r\n",
            b"GET /chat HTTP/1.1\rHost: x\r\n\r\n",
            b"GET /chat FOO/1.1\r\n\r\n",
            b"GET /chat HTTP/2.0\r\n\r\n",
            b"GET /ch\x01at HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
        ] {
            let err = refused(buf);
            assert_eq!((err.status, err.reason), (400, "malformed request"), "{buf:?}");
        }
    }

    #[test]
    fn method_must_be_get() {
        for method in ["POST", "get", "HEAD", "OPTIONS", "CONNECT"] {
            let err = refused(&head(&format!("{method} /chat HTTP/1.1"), &VALID));
            assert_eq!((err.status, err.reason), (405, "method must be GET"), "{method}");
        }
        // The method is checked before the headers.
        assert_eq!(refused(b"POST /chat HTTP/1.1\r\n\r\n").status, 405);
    }

    #[test]
    fn version_must_be_1_1() {
        let err = refused(&head("GET /chat HTTP/1.0", &VALID));
        assert_eq!((err.status, err.reason), (400, "HTTP version must be 1.1"));
    }

    #[test]
    fn host_is_required_once() {
        let err = refused(&with("host", &[]));
        assert_eq!((err.status, err.reason), (400, "missing Host"));
        let err = refused(&with("host", &["Host: a.example", "host: b.example"]));
        assert_eq!((err.status, err.reason), (400, "repeated Host"));
        let mut buf = with("host", &["Host: a"]);
        let at = buf.len() - 4;
        buf.insert(at, 0xff);
        assert_eq!(refused(&buf).reason, "invalid Host");
    }

    /// Replaces the `name` headers of a valid request with each set of lines:
    /// every `good` set is accepted, every `bad` set refused with `expected`.
    fn rule(name: &str, good: &[&[&str]], bad: &[&[&str]], expected: (u16, &str)) {
        for lines in good {
            let buf = with(name, lines);
            let result = parse_request(&buf, MAX);
            assert!(matches!(result, Ok(Some(_))), "{lines:?}: {result:?}");
        }
        for lines in bad {
            let err = refused(&with(name, lines));
            assert_eq!((err.status, err.reason), expected, "{lines:?}");
        }
    }

    #[test]
    fn upgrade_must_list_websocket() {
        rule(
            "upgrade",
            &[
                &["Upgrade: websocket"],
                &["Upgrade: WebSocket"],
                &["Upgrade: h2c, websocket"],
                &["Upgrade: websocket,h2c"],
                &["Upgrade: foo,,websocket"],
                &["Upgrade: h2c", "upgrade: websocket"],
            ],
            &[
                &[],
                &["Upgrade: h2c"],
                &["Upgrade: websockets"],
                &["Upgrade: web socket"],
                &["Upgrade: websocket/13"],
                &["Upgrade:"],
                &["Upgrade: h2c, foo", "Upgrade: HTTP/2.0"],
            ],
            (426, "Upgrade must list websocket"),
        );
    }

    #[test]
    fn connection_must_list_upgrade() {
        rule(
            "connection",
            &[
                &["Connection: Upgrade"],
                &["Connection: upgrade"],
                &["Connection: keep-alive, Upgrade"],
                &["Connection: Upgrade, keep-alive"],
                &["Connection: a,,UPGRADE"],
                &["Connection: keep-alive", "connection: Upgrade"],
            ],
            &[
                &[],
                &["Connection: keep-alive"],
                &["Connection: close"],
                &["Connection: upgraded"],
                &["Connection: keep-alive upgrade"],
                &["Connection: keep-alive", "Connection: close"],
            ],
            (400, "Connection must list upgrade"),
        );
    }

    #[test]
    fn version_must_be_13() {
        rule(
            "sec-websocket-version",
            &[
                &["Sec-WebSocket-Version: 13"],
                &["Sec-WebSocket-Version:   13  "],
                &["Sec-WebSocket-Version: 13", "sec-websocket-version: 13"],
            ],
            &[
                &[],
                &["Sec-WebSocket-Version: 8"],
                &["Sec-WebSocket-Version: 013"],
                &["Sec-WebSocket-Version: 13, 8"],
                &["Sec-WebSocket-Version: 13.0"],
                &["Sec-WebSocket-Version:"],
                &["Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"],
            ],
            (426, "Sec-WebSocket-Version must be 13"),
        );
    }

    #[test]
    fn key_must_be_base64_of_16_bytes_once() {
        rule(
            "sec-websocket-key",
            &[
                &["Sec-WebSocket-Key: OgtVcI/wtOrUEas3yUVJwQ=="],
                &["sec-websocket-key:   ac3Dod6yqwocp3Hy3R+NfA==  "],
            ],
            &[
                &["Sec-WebSocket-Key: SGVsbG8sIHdvcmxkIQ=="], // 13 bytes
                &["Sec-WebSocket-Key: IBVbEQUm1yGGnQ2zP9kWYD8="], // 17 bytes
                &["Sec-WebSocket-Key: FUBE2SLfPGaobu86KrLg"], // 15 bytes
                &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"], // unpadded
                &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!=="], // not base64
                &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="], // non-zero trailing bits
                &["Sec-WebSocket-Key: dGhl-HNhbXBsZSBub25jZQ=="], // URL-safe alphabet
                &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="],
                &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="],
                &["Sec-WebSocket-Key:"],
            ],
            (400, "invalid Sec-WebSocket-Key"),
        );
        let missing = (400, "missing Sec-WebSocket-Key");
        rule("sec-websocket-key", &[], &[&[]], missing);
        let repeated = (400, "repeated Sec-WebSocket-Key");
        rule(
            "sec-websocket-key",
            &[],
            &[&[VALID[3], "sec-websocket-key: OgtVcI/wtOrUEas3yUVJwQ=="]],
            repeated,
        );
        rule("sec-websocket-key", &[], &[&[VALID[3]; 2]], repeated);
    }

    // --- requests as real clients send them ------------------------------------

    fn real_client<'a>(request: &'a str, key: &str) -> Request<'a> {
        let (req, n) = accepted(request.as_bytes());
        assert_eq!(n, request.len());
        assert_eq!((req.path(), req.key()), ("/chat", key));
        req
    }

    #[test]
    fn chrome() {
        let req = real_client(
            "GET /chat HTTP/1.1\r\n\
            Host: localhost:9001\r\n\
            Connection: Upgrade\r\n\
            Pragma: no-cache\r\n\
            Cache-Control: no-cache\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                Chrome/131.0.0.0 Safari/537.36\r\n\
            Upgrade: websocket\r\n\
            Origin: http://localhost:8080\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Accept-Encoding: gzip, deflate, br, zstd\r\n\
            Accept-Language: en-US,en;q=0.9\r\n\
            Sec-WebSocket-Key: OgtVcI/wtOrUEas3yUVJwQ==\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
            \r\n",
            "OgtVcI/wtOrUEas3yUVJwQ==",
        );
        assert_eq!(req.origin(), Some("http://localhost:8080"));
        assert_eq!(req.host(), "localhost:9001");
    }

    #[test]
    fn firefox() {
        let req = real_client(
            "GET /chat HTTP/1.1\r\n\
            Host: localhost:9001\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n\
            Accept: */*\r\n\
            Accept-Language: en-US,en;q=0.5\r\n\
            Accept-Encoding: gzip, deflate, br, zstd\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Origin: http://localhost:8080\r\n\
            Sec-WebSocket-Protocol: graphql-ws\r\n\
            Sec-WebSocket-Extensions: permessage-deflate\r\n\
            Sec-WebSocket-Key: Z1iPMSgNLEacVFuZVeyUqA==\r\n\
            Connection: keep-alive, Upgrade\r\n\
            Sec-Fetch-Dest: empty\r\n\
            Sec-Fetch-Mode: websocket\r\n\
            Sec-Fetch-Site: same-site\r\n\
            Pragma: no-cache\r\n\
            Cache-Control: no-cache\r\n\
            Upgrade: websocket\r\n\
            \r\n",
            "Z1iPMSgNLEacVFuZVeyUqA==",
        );
        assert!(req.offers_protocol("graphql-ws"));
        assert_eq!(req.extensions().collect::<Vec<_>>(), [b"permessage-deflate"]);
    }

    #[test]
    fn python_websockets() {
        real_client(
            "GET /chat HTTP/1.1\r\n\
            Host: localhost:9001\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: xwx1fPLlNIEtx8U0oW8GGg==\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
            User-Agent: Python/3.12 websockets/13.1\r\n\
            \r\n",
            "xwx1fPLlNIEtx8U0oW8GGg==",
        );
    }

    #[test]
    fn node_ws() {
        let req = real_client(
            "GET /chat HTTP/1.1\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: GGeyUR2SHzs5xNds6YERyg==\r\n\
            Connection: Upgrade\r\n\
            Upgrade: websocket\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
            Host: localhost:9001\r\n\
            \r\n",
            "GGeyUR2SHzs5xNds6YERyg==",
        );
        assert_eq!(req.host(), "localhost:9001");
        assert_eq!(req.origin(), None);
    }

    #[test]
    fn curl() {
        // curl's own ws:// support.
        real_client(
            "GET /chat HTTP/1.1\r\n\
            Host: localhost:9001\r\n\
            User-Agent: curl/8.11.1\r\n\
            Accept: */*\r\n\
            Upgrade: websocket\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: beGwIiE7KrVUZNFs2qnCKQ==\r\n\
            Connection: Upgrade\r\n\
            \r\n",
            "beGwIiE7KrVUZNFs2qnCKQ==",
        );
        // The widely copied `curl -H ...` recipe: its key decodes to 13 bytes.
        let recipe = "GET /chat HTTP/1.1\r\n\
            Host: localhost\r\n\
            User-Agent: curl/8.5.0\r\n\
            Accept: */*\r\n\
            Connection: Upgrade\r\n\
            Upgrade: websocket\r\n\
            Origin: http://localhost\r\n\
            Sec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: SGVsbG8sIHdvcmxkIQ==\r\n\
            \r\n";
        assert_eq!(refused(recipe.as_bytes()).reason, "invalid Sec-WebSocket-Key");
        real_client(&recipe.replace("SGVsbG8sIHdvcmxkIQ==", KEY), KEY);
    }
}
