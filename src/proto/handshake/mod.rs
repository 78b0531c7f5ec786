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

use response::put_reject;

// One file per job: `request` parses the client's upgrade request, `response`
// writes the server's answers, `client` is the client side.
mod client;
mod request;
mod response;

pub use client::{ClientKey, Response, generate_key, parse_response, write_client_request};
pub use request::{Request, parse_request};
pub use response::{AcceptKey, accept_key, write_accept_response, write_reject_response};

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

/// Requests, responses and helpers shared by the tests of the submodules.
#[cfg(test)]
mod fixtures {
    use super::{HandshakeError, Request, parse_request};

    /// The key and accept value of RFC 6455 §1.3.
    pub(super) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    pub(super) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    pub(super) const MAX: usize = 8192;
    /// The masked "Hello" frame of RFC 6455 §5.7.
    pub(super) const FRAME: &[u8] =
        &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];

    pub(super) const VALID: [&str; 5] = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    pub(super) fn head(request_line: &str, lines: &[&str]) -> Vec<u8> {
        let mut out = format!("{request_line}\r\n");
        for line in lines {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// A valid request with every header called `name` replaced by `lines`.
    pub(super) fn with(name: &str, lines: &[&str]) -> Vec<u8> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let mut all: Vec<&str> = VALID
            .iter()
            .copied()
            .filter(|l| !l.to_ascii_lowercase().starts_with(&prefix))
            .collect();
        all.extend_from_slice(lines);
        head("GET /chat HTTP/1.1", &all)
    }

    pub(super) fn valid() -> Vec<u8> {
        with("none", &[])
    }

    pub(super) fn accepted(buf: &[u8]) -> (Request<'_>, usize) {
        parse_request(buf, MAX).expect("accepted").expect("complete")
    }

    pub(super) fn refused(buf: &[u8]) -> HandshakeError {
        parse_request(buf, MAX).expect_err("refused")
    }

    pub(super) fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).expect("UTF-8")
    }
}

/// Both sides together: this client against this server, and each against tungstenite.
#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

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
