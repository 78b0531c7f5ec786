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
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The key and accept value of RFC 6455 §1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    const MAX: usize = 8192;
    /// The masked "Hello" frame of RFC 6455 §5.7.
    const FRAME: &[u8] = &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];

    const VALID: [&str; 5] = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    fn head(request_line: &str, lines: &[&str]) -> Vec<u8> {
        let mut out = format!("{request_line}\r\n");
        for line in lines {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// A valid request with every header called `name` replaced by `lines`.
    fn with(name: &str, lines: &[&str]) -> Vec<u8> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let mut all: Vec<&str> = VALID
            .iter()
            .copied()
            .filter(|l| !l.to_ascii_lowercase().starts_with(&prefix))
            .collect();
        all.extend_from_slice(lines);
        head("GET /chat HTTP/1.1", &all)
    }

    fn valid() -> Vec<u8> {
        with("none", &[])
    }

    fn accepted(buf: &[u8]) -> (Request<'_>, usize) {
        parse_request(buf, MAX).expect("accepted").expect("complete")
    }

    fn refused(buf: &[u8]) -> HandshakeError {
        parse_request(buf, MAX).expect_err("refused")
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).expect("UTF-8")
    }

    // --- accept key ---------------------------------------------------------

    #[test]
    fn accept_key_matches_rfc_example() {
        let accept = accept_key(KEY.as_bytes());
        assert_eq!(accept.as_str(), ACCEPT);
        assert_eq!(accept.to_string(), ACCEPT);
        assert_eq!(format!("{accept:?}"), format!("{ACCEPT:?}"));
    }

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

    // --- client side -------------------------------------------------------------

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

    #[test]
    fn round_trip_client_server_client() {
        let key =
            generate_key(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f");
        let mut request = Vec::new();
        write_client_request(
            &mut request,
            "localhost:9001",
            "/feed?topic=btc-usd",
            key.as_str(),
            &["v2.feed", "v1.feed"],
            Some("permessage-deflate; client_max_window_bits"),
            &[("Origin", "http://localhost"), ("User-Agent", "wsbench/0.1")],
        )
        .expect("valid");
        let head_len = request.len();
        request.extend_from_slice(FRAME);

        let (req, n) = accepted(&request);
        assert_eq!(n, head_len);
        assert_eq!(
            (req.host(), req.path(), req.query()),
            ("localhost:9001", "/feed", Some("topic=btc-usd"))
        );
        assert_eq!((req.key(), req.origin()), (key.as_str(), Some("http://localhost")));
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["v2.feed", "v1.feed"]);
        assert_eq!(req.header_str("user-agent"), Some("wsbench/0.1"));
        let chosen = ["v1.feed", "v3.feed"].into_iter().find(|p| req.offers_protocol(p));
        assert_eq!(chosen, Some("v1.feed"));

        let mut reply = Vec::new();
        write_accept_response(&mut reply, req.key().as_bytes(), chosen, None, &[]).expect("valid");
        let reply_len = reply.len();
        reply.extend_from_slice(b"\x81\x02hi");
        let (resp, n) =
            parse_response(&reply, key.as_str(), MAX).expect("accepted").expect("complete");
        assert_eq!(n, reply_len);
        assert_eq!((resp.status(), resp.protocol()), (101, Some("v1.feed")));
        assert_eq!(resp.extensions().count(), 0);
    }

    // --- interoperability with tungstenite --------------------------------------

    /// An in-memory stream: reads from `inbox` (WouldBlock when empty), writes to `outbox`.
    #[derive(Clone, Default)]
    struct Pipe {
        inbox: std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<u8>>>,
        outbox: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    }

    impl std::io::Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let mut inbox = self.inbox.borrow_mut();
            if inbox.is_empty() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            inbox.read(buf)
        }
    }

    impl std::io::Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.outbox.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tungstenite_client_against_this_server() {
        let pipe = Pipe::default();
        let mid = match tungstenite::client("ws://localhost:9001/chat?x=1", pipe.clone()) {
            Err(tungstenite::HandshakeError::Interrupted(mid)) => mid,
            other => panic!("expected to wait for the response: {:?}", other.map(|_| ())),
        };
        let request = pipe.outbox.take();
        let (req, n) = accepted(&request);
        assert_eq!((n, req.host(), req.target()), (request.len(), "localhost:9001", "/chat?x=1"));

        let mut reply = Vec::new();
        write_accept_response(&mut reply, req.key().as_bytes(), None, None, &[]).expect("valid");
        reply.extend_from_slice(b"\x81\x02hi");
        pipe.inbox.borrow_mut().extend(reply);
        let (mut ws, _) = mid.handshake().map_err(|e| e.to_string()).expect("handshake");
        assert_eq!(ws.read().expect("frame").to_text().expect("text"), "hi");
    }

    #[test]
    fn this_client_against_tungstenite_server() {
        let pipe = Pipe::default();
        let key = generate_key([42; 16]);
        let mut request = Vec::new();
        write_client_request(&mut request, "localhost:9001", "/chat", key.as_str(), &[], None, &[])
            .expect("valid");
        pipe.inbox.borrow_mut().extend(request);
        let mut ws = tungstenite::accept(pipe.clone()).map_err(|e| e.to_string()).expect("accept");
        // tungstenite's server refuses bytes after the request head ("Junk after client
        // request"), so the first frame goes in only after its handshake.
        pipe.inbox.borrow_mut().extend(FRAME);
        assert_eq!(ws.read().expect("frame").to_text().expect("text"), "Hello");

        let reply = pipe.outbox.take();
        let (resp, n) =
            parse_response(&reply, key.as_str(), MAX).expect("accepted").expect("complete");
        assert_eq!((resp.status(), n), (101, reply.len()));
    }
}
