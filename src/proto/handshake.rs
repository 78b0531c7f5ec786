//! The opening handshake (RFC 6455 §4), server and client side, on byte slices.
//!
//! Server side: [`parse_request`] validates an upgrade request and returns a
//! [`Request`] borrowing the read buffer; answer it with
//! [`write_accept_response`], or refuse it with [`write_reject_response`] (or
//! [`HandshakeError::write_response`] when parsing failed).
//!
//! Client side (for the load generator and tests): [`generate_key`],
//! [`write_client_request`], then [`parse_response`].
//!
//! Parsing never allocates: headers go into a fixed array of [`MAX_HEADERS`]
//! entries inside [`Request`] / [`Response`]. The writers append to a
//! caller-owned `Vec<u8>` and refuse header names and values that would let a
//! caller inject extra header lines.

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest as _, Sha1};

/// The most request headers accepted; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The GUID of RFC 6455 §1.3, appended to the key for `Sec-WebSocket-Accept`.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A failed handshake: the HTTP status to answer with and why.
///
/// From [`parse_request`], `status` is 400, 405, 426 or 431, ready for
/// [`HandshakeError::write_response`]. From [`parse_response`] (client side),
/// `status` is the server's status code when it was not 101, and 0 when the
/// response itself was unusable (malformed, too large, wrong headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    /// 400, 405, 426 or 431 (server side); see the type's docs for the client side.
    pub status: u16,
    /// A short reason for the response body and the log.
    pub reason: &'static str,
}

impl HandshakeError {
    const fn new(status: u16, reason: &'static str) -> Self {
        HandshakeError { status, reason }
    }

    /// Appends the matching reject response (see [`write_reject_response`]) to `out`.
    ///
    /// A `status` outside 100..=999 (only possible for a hand-made value) is
    /// written as 400.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let status = if (100..=999).contains(&self.status) { self.status } else { 400 };
        put_reject(out, status, self.reason, &[]);
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HandshakeError {}

/// A header that the writers refuse to put on the wire; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidHeader {
    /// A header name that is not an HTTP token (RFC 9110 §5.1).
    Name,
    /// A header value with CR, LF, NUL or another control character (tab is
    /// allowed), or a subprotocol that is not an HTTP token.
    Value,
    /// A request target that is empty or has bytes outside visible ASCII.
    Target,
    /// A status code outside 100..=999.
    Status,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidHeader::Name => "header name is not an HTTP token",
            InvalidHeader::Value => "header value has a control character or is not a token",
            InvalidHeader::Target => "request target is empty or not visible ASCII",
            InvalidHeader::Status => "status code is not three digits",
        })
    }
}

impl std::error::Error for InvalidHeader {}

// ---------------------------------------------------------------------------
// Header storage shared by `Request` and `Response`.

/// The parsed headers of a head, in a fixed array (no allocation).
#[derive(Clone, Copy)]
struct Fields<'a> {
    list: [httparse::Header<'a>; MAX_HEADERS],
    len: usize,
}

impl<'a> Fields<'a> {
    fn as_slice(&self) -> &[httparse::Header<'a>] {
        self.list.get(..self.len).unwrap_or(&[])
    }

    /// Every value of the header `name` (case-insensitive), in order.
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.as_slice().iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    fn first(&self, name: &str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    fn first_str(&self, name: &str) -> Option<&'a str> {
        self.first(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.as_slice().iter().map(|h| (h.name, h.value))
    }

    /// The value of `name`, which must appear exactly once.
    fn single(&self, name: &str) -> Result<&'a [u8], Multiplicity> {
        let mut values = self.all(name);
        match (values.next(), values.next()) {
            (None, _) => Err(Multiplicity::Missing),
            (Some(v), None) => Ok(v),
            (Some(_), Some(_)) => Err(Multiplicity::Repeated),
        }
    }

    /// Whether any `name` header lists `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name).flat_map(tokens).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }
}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.iter() {
            map.entry(&name, &String::from_utf8_lossy(value));
        }
        map.finish()
    }
}

enum Multiplicity {
    Missing,
    Repeated,
}

/// The elements of a comma-separated header value, trimmed, empties skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// Runs httparse's result through the `max_head` rules shared by both sides.
fn head_len(
    parsed: httparse::Result<usize>,
    buf_len: usize,
    max_head: usize,
    errors: &HeadErrors,
) -> Result<Option<usize>, HandshakeError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf_len < max_head => Ok(None),
        Ok(httparse::Status::Partial) => Err(errors.too_large),
        Err(httparse::Error::TooManyHeaders) => Err(errors.too_many),
        Err(_) => Err(errors.malformed),
    }
}

struct HeadErrors {
    too_large: HandshakeError,
    too_many: HandshakeError,
    malformed: HandshakeError,
}

// ---------------------------------------------------------------------------
// Server side.

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
fn valid_key(key: &[u8]) -> Option<&str> {
    let mut nonce = [0u8; 18];
    if key.len() != 24 || STANDARD.decode_slice(key, &mut nonce) != Ok(16) {
        return None;
    }
    std::str::from_utf8(key).ok()
}

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
/// `Sec-WebSocket-Key` is `req_key` (see [`Request::key`]).
///
/// `protocol` is the chosen subprotocol (an HTTP token; choose one the client
/// offers, see [`Request::offers_protocol`]); `extensions` the negotiated
/// `Sec-WebSocket-Extensions` value; `extra` more headers, written in order.
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
fn put_reject(out: &mut Vec<u8>, status: u16, reason: &str, extra: &[(&str, &str)]) {
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

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
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
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------
// Writing helpers.

/// An HTTP token (RFC 9110 §5.6.2): one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value may hold visible characters, spaces, tabs and non-ASCII
/// bytes, but no control character (CR, LF and NUL above all).
fn check_value(value: &str) -> Result<(), InvalidHeader> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(InvalidHeader::Value);
    }
    Ok(())
}

fn check_extra(extra: &[(&str, &str)]) -> Result<(), InvalidHeader> {
    for (name, value) in extra {
        if !is_token(name) {
            return Err(InvalidHeader::Name);
        }
        check_value(value)?;
    }
    Ok(())
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn put_optional(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        put_header(out, name, value);
    }
}

fn put_extra_and_end(out: &mut Vec<u8>, extra: &[(&str, &str)]) {
    for (name, value) in extra {
        put_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------
// Client side.

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
