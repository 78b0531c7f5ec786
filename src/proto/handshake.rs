//! The opening handshake (RFC 6455 §4), server and client side, on byte slices.

/// The most request headers accepted; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The GUID of RFC 6455 §1.3, appended to the key for `Sec-WebSocket-Accept`.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A failed handshake: the HTTP status to answer with and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    /// 400, 405, 426 or 431.
    pub status: u16,
    /// A short reason for the response body and the log.
    pub reason: &'static str,
}

/// A parsed upgrade request, borrowing the read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    _todo: std::marker::PhantomData<&'a ()>,
}

/// Parses and validates an upgrade request from the start of `buf`.
///
/// `Ok(None)`: the head is incomplete (and shorter than `max_head`).
/// `Ok(Some((req, n)))`: the head is the first `n` bytes; the rest are frames.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(Request<'_>, usize)>, HandshakeError> {
    let _ = (buf, max_head);
    todo!()
}
