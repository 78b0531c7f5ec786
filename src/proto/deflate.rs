//! permessage-deflate (RFC 7692): negotiation and the codec, on byte slices.
//!
//! Negotiation, server side: [`negotiate`] reads every `Sec-WebSocket-Extensions`
//! value of the request ([`Request::extensions`](super::handshake::Request::extensions))
//! and picks the first acceptable `permessage-deflate` offer; answer with
//! [`Negotiated::response_header`]. Client side (the load generator, tests):
//! [`client_offer`] and [`parse_client_response`].
//!
//! The codec: a [`Compressor`] turns a message payload into the payload of a
//! frame with RSV1 set (§7.2.1), a [`Decompressor`] inflates a received
//! compressed message fed in pieces as they arrive (§7.2.2), with the inflated
//! size capped so a deflate bomb fails with [`InflateError::TooBig`] after
//! allocating at most the cap.
//!
//! # Window bits 8
//!
//! zlib (and zlib-rs, which flate2 uses here) cannot run a raw deflate stream
//! with an 8-bit (256-byte) window. This module negotiates 8 like any other
//! value and runs both sides with 9 bits internally, which is safe both ways:
//!
//! - Inflating: a 9-bit (512-byte) window decodes every stream an 8-bit one does.
//! - Deflating: zlib never emits a match farther back than the window size
//!   minus 262 bytes (`MAX_DIST`), so a 9-bit deflater never refers more than
//!   250 bytes back, and its output decodes with a 256-byte window.
//!
//! So a client asking `server_max_window_bits=8` gets exactly that answer (a
//! larger value would break RFC 7692 §7.1.2.1 and make the client fail the
//! connection).
//!
//! # Memory
//!
//! A deflater holds its window (2 × 2^bits), its chain table (2 × 2^bits), a
//! fixed 128 KiB hash table and a 64 KiB symbol buffer; an inflater holds a
//! few KiB of tables and its window (2^bits, allocated on first use).
//! `cargo bench --bench deflate` prints the measured bytes for every window
//! size. [`Compressor::reset`] and [`Decompressor::reset`] let a reactor keep
//! a small pool of them and lend one out only while a message is being
//! (de)compressed, when no context is taken over between messages.
//!
//! # Example
//!
//! ```
//! use wsreactor::proto::deflate::{
//!     Compressor, DeflateConfig, Decompressor, Mode, negotiate, parse_client_response,
//!     ClientOffer, client_offer,
//! };
//!
//! // The client offers, the server answers, the client checks the answer.
//! let offer = client_offer(&ClientOffer::default());
//! let cfg = DeflateConfig { mode: Mode::Dedicated, ..DeflateConfig::default() };
//! let server = negotiate([offer.as_bytes()], &cfg).unwrap().expect("accepted");
//! let answer = server.response_header();
//! let client = parse_client_response([answer.as_bytes()], &ClientOffer::default())
//!     .unwrap()
//!     .expect("accepted");
//! assert_eq!(client, server);
//!
//! // The server compresses, the client inflates.
//! let mut deflater = Compressor::for_server(&server, cfg.level);
//! let mut inflater = Decompressor::for_client(&client);
//! let (mut wire, mut text) = (Vec::new(), Vec::new());
//! deflater.compress(b"Hello", &mut wire);
//! inflater.decompress(&wire, true, 1 << 20, &mut text).unwrap();
//! assert_eq!(text, b"Hello");
//! ```

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::CloseCode;
use super::handshake::HandshakeError;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The smallest window size a peer may ask for (2^8 bytes).
pub const MIN_WINDOW_BITS: u8 = 8;

/// The largest (and default) window size, 2^15 = 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The empty stored block that a sync flush ends with; stripped by the sender
/// and put back by the receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib runs a raw deflate stream with (see the module docs).
const ZLIB_MIN_WINDOW_BITS: u8 = 9;

/// The most bytes one stored deflate block carries.
const STORED_BLOCK_MAX: usize = 0xffff;

/// Bytes inflated through a stack buffer when `out` has more spare capacity
/// than the cap allows to use.
const SCRATCH_LEN: usize = 1024;

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

// ---------------------------------------------------------------------------
// Configuration and the negotiated parameters.

/// Whether and how the server compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No compression: [`negotiate`] declines every offer without reading it.
    #[default]
    Disabled,
    /// Every accepted offer is answered with `server_no_context_takeover`, so
    /// the server's messages are independent of each other and one compressed
    /// frame can go to many connections.
    ///
    /// One frame fits every connection whose negotiated
    /// [`Negotiated::server_max_window_bits`] is at least the window it was
    /// compressed with. A client may ask for a smaller server window than
    /// [`DeflateConfig::server_max_window_bits`]; such a connection needs a
    /// frame compressed with that smaller window (or its own).
    Shared,
    /// Each connection keeps its own compression context across messages
    /// (unless the client asks otherwise): better ratios, more memory.
    Dedicated,
}

/// What the server accepts and asks for; see [`negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Disabled, shared or dedicated.
    pub mode: Mode,
    /// The largest window the server compresses with, 8..=15 (values outside
    /// are clamped). Below 15 it is announced in every answer, which is how
    /// the server saves memory; a client's smaller `server_max_window_bits`
    /// wins.
    pub server_max_window_bits: u8,
    /// The window asked of clients that allow it (they send
    /// `client_max_window_bits`), 8..=15 (clamped). A client that does not
    /// allow it compresses with up to 15 bits and is inflated with 15.
    pub client_max_window_bits: u8,
    /// Answer every offer with `client_no_context_takeover`, so a client's
    /// messages are independent and the server can lend inflaters from a pool
    /// instead of keeping one per connection (RFC 7692 §7.1.1.2 lets the
    /// server add it on its own).
    pub client_no_context_takeover: bool,
    /// The deflate level, 0..=9 (clamped). Level 1 is zlib-rs's fastest and,
    /// for small sync-flushed messages, many times faster than 2 and up at a
    /// slightly worse ratio (see `benches/deflate.rs`).
    pub level: u32,
    /// Messages shorter than this go out uncompressed (RSV1 clear); see
    /// [`DeflateConfig::compresses`].
    pub min_size: usize,
}

impl Default for DeflateConfig {
    /// Disabled; windows of 15 bits; level 1; messages under 64 bytes uncompressed.
    fn default() -> Self {
        DeflateConfig {
            mode: Mode::Disabled,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            client_no_context_takeover: false,
            level: 1,
            min_size: 64,
        }
    }
}

impl DeflateConfig {
    /// Whether a message of `len` bytes should be compressed on a connection
    /// that negotiated the extension: compression is enabled and the message
    /// is at least [`DeflateConfig::min_size`] long.
    pub fn compresses(&self, len: usize) -> bool {
        self.mode != Mode::Disabled && len >= self.min_size
    }
}

/// The agreed parameters of a permessage-deflate connection (RFC 7692 §7.1).
///
/// Window sizes are the values in effect, 8..=15, with 15 where the
/// handshake did not mention them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server starts every message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window.
    pub client_no_context_takeover: bool,
    /// The server's compression window, base-2 logarithm.
    pub server_max_window_bits: u8,
    /// The client's compression window, base-2 logarithm.
    pub client_max_window_bits: u8,
    /// `server_max_window_bits` appears in the answer even at 15: the offer
    /// had it, so the answer must too (§7.1.2.1).
    echo_server_max_window_bits: bool,
}

impl Default for Negotiated {
    /// The extension with no parameters: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        Negotiated {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            echo_server_max_window_bits: false,
        }
    }
}

impl Negotiated {
    /// The server's `Sec-WebSocket-Extensions` value, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_max_window_bits=12`.
    ///
    /// Window sizes below 15 are always written; `server_max_window_bits=15`
    /// only when the offer had the parameter.
    pub fn response_header(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        let server_bits = clamp_bits(self.server_max_window_bits);
        if server_bits < MAX_WINDOW_BITS || self.echo_server_max_window_bits {
            push_param(&mut out, "server_max_window_bits", server_bits);
        }
        let client_bits = clamp_bits(self.client_max_window_bits);
        if client_bits < MAX_WINDOW_BITS {
            push_param(&mut out, "client_max_window_bits", client_bits);
        }
        out
    }
}

fn push_param(out: &mut String, name: &str, bits: u8) {
    out.push_str("; ");
    out.push_str(name);
    out.push('=');
    if bits >= 10 {
        out.push('1');
    }
    out.push(char::from(b'0' + bits % 10));
}

/// A `Sec-WebSocket-Extensions` header that could not be used.
///
/// On the server side it means a syntactically malformed header: answer
/// HTTP 400 (see the `From` conversion to [`HandshakeError`]). On the client
/// side it means the server's answer breaks RFC 7692 §5.1 or RFC 6455 §9.1:
/// fail the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiationError {
    reason: &'static str,
}

impl NegotiationError {
    const fn new(reason: &'static str) -> Self {
        NegotiationError { reason }
    }

    /// A short reason for a response body or a log line.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for NegotiationError {}

impl From<NegotiationError> for HandshakeError {
    /// A 400 Bad Request with the error's reason.
    fn from(err: NegotiationError) -> Self {
        HandshakeError { status: 400, reason: err.reason }
    }
}

// ---------------------------------------------------------------------------
// The header grammar (RFC 6455 §9.1, RFC 9110 §5.6).

/// A parameter value as sent: a token, or the inside of a quoted string with
/// its backslash escapes still in.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl Value<'_> {
    /// The value's bytes with quoted-pair escapes removed.
    fn bytes(self) -> impl Iterator<Item = u8> {
        let (raw, quoted) = match self {
            Value::Token(raw) => (raw, false),
            Value::Quoted(raw) => (raw, true),
        };
        let mut escaped = false;
        raw.iter().copied().filter(move |&b| {
            if quoted && !escaped && b == b'\\' {
                escaped = true;
                false
            } else {
                escaped = false;
                true
            }
        })
    }

    /// A window size: a decimal integer 8..=15 without leading zeros (§7.1.2).
    fn window_bits(self) -> Option<u8> {
        let mut digits = [0u8; 2];
        let mut n = 0;
        for b in self.bytes() {
            *digits.get_mut(n)? = b;
            n += 1;
        }
        match digits.get(..n)? {
            [d @ b'8'..=b'9'] => Some(d - b'0'),
            [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
            _ => None,
        }
    }
}

/// The parameters of one permessage-deflate element, folded as they are
/// parsed; `problem` is the first reason the element cannot be accepted.
#[derive(Debug, Default, Clone, Copy)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
    problem: Option<&'static str>,
}

impl Params {
    fn add(&mut self, name: &[u8], value: Option<Value<'_>>) {
        if self.problem.is_some() {
            return;
        }
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        let problem = if is("server_no_context_takeover") {
            flag(&mut self.server_no_context_takeover, value)
        } else if is("client_no_context_takeover") {
            flag(&mut self.client_no_context_takeover, value)
        } else if is("server_max_window_bits") {
            match (self.server_max_window_bits, value.and_then(Value::window_bits)) {
                (Some(_), _) => Err("duplicate parameter"),
                (None, None) => Err("invalid server_max_window_bits"),
                (None, bits) => {
                    self.server_max_window_bits = bits;
                    Ok(())
                }
            }
        } else if is("client_max_window_bits") {
            match (self.client_max_window_bits, value.map(Value::window_bits)) {
                (Some(_), _) => Err("duplicate parameter"),
                (None, Some(None)) => Err("invalid client_max_window_bits"),
                (None, bits) => {
                    self.client_max_window_bits = Some(bits.flatten());
                    Ok(())
                }
            }
        } else {
            Err("unknown parameter")
        };
        self.problem = problem.err();
    }
}

/// A parameter without a value, given at most once.
fn flag(seen: &mut bool, value: Option<Value<'_>>) -> Result<(), &'static str> {
    if *seen {
        Err("duplicate parameter")
    } else if value.is_some() {
        Err("no_context_takeover with a value")
    } else {
        *seen = true;
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.i += 1;
        }
        found
    }

    fn token(&mut self) -> Result<&'a [u8], NegotiationError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        match self.s.get(start..self.i) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(NegotiationError::new("malformed Sec-WebSocket-Extensions: expected a token")),
        }
    }

    /// The inside of a quoted string; the opening quote is already eaten.
    fn quoted(&mut self) -> Result<&'a [u8], NegotiationError> {
        const BAD: NegotiationError =
            NegotiationError::new("malformed Sec-WebSocket-Extensions: bad quoted string");
        let start = self.i;
        loop {
            match self.peek().ok_or(BAD)? {
                b'"' => {
                    let inner = self.s.get(start..self.i).ok_or(BAD)?;
                    self.i += 1;
                    return Ok(inner);
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek().ok_or(BAD)? {
                        b'\t' | b' '..=b'~' | 0x80..=0xff => self.i += 1,
                        _ => return Err(BAD),
                    }
                }
                b'\t' | b' ' | b'!' | b'#'..=b'[' | b']'..=b'~' | 0x80..=0xff => self.i += 1,
                _ => return Err(BAD),
            }
        }
    }
}

/// Parses one `Sec-WebSocket-Extensions` value (RFC 6455 §9.1), calling
/// `each(name, params)` for every extension in it; `params` are only folded
/// for `permessage-deflate`. Empty list elements are skipped (RFC 9110 §5.6.1).
fn parse_extensions(
    value: &[u8],
    mut each: impl FnMut(&[u8], Params),
) -> Result<(), NegotiationError> {
    const SEPARATOR: NegotiationError =
        NegotiationError::new("malformed Sec-WebSocket-Extensions: expected ',' or ';'");
    let mut cur = Cursor { s: value, i: 0 };
    loop {
        cur.skip_ows();
        if cur.peek().is_none() {
            return Ok(());
        }
        if cur.eat(b',') {
            continue;
        }
        let name = cur.token()?;
        let deflate = name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes());
        let mut params = Params::default();
        cur.skip_ows();
        while cur.eat(b';') {
            cur.skip_ows();
            let param = cur.token()?;
            cur.skip_ows();
            let value = if cur.eat(b'=') {
                cur.skip_ows();
                Some(if cur.eat(b'"') { Value::Quoted(cur.quoted()?) } else { Value::Token(cur.token()?) })
            } else {
                None
            };
            if deflate {
                params.add(param, value);
            }
            cur.skip_ows();
        }
        each(name, params);
        match cur.peek() {
            None => return Ok(()),
            Some(b',') => cur.i += 1,
            Some(_) => return Err(SEPARATOR),
        }
    }
}

// ---------------------------------------------------------------------------
// Server side.

/// Picks the first acceptable `permessage-deflate` offer (RFC 7692 §5, §7.1).
///
/// `offers` are the raw `Sec-WebSocket-Extensions` values of the request, in
/// order (as [`Request::extensions`](super::handshake::Request::extensions)
/// yields them); each may hold several comma-separated offers. Other
/// extensions are skipped. Every value is parsed to the end, and any syntax
/// error is an `Err` (answer HTTP 400). `Ok(None)`: compression is
/// [`Mode::Disabled`] (the header is then not even read) or no offer was
/// acceptable.
///
/// An offer is declined, and the next one tried, when it has an unknown or a
/// repeated parameter, a `*_no_context_takeover` with a value, or a window
/// size that is not 8..=15 (`server_max_window_bits` also needs one). The
/// answer to an accepted offer:
///
/// - `server_no_context_takeover` when offered, and always in [`Mode::Shared`];
/// - `client_no_context_takeover` when offered or when
///   [`DeflateConfig::client_no_context_takeover`] is set (§7.1.1.2 allows
///   the server to add it);
/// - `server_max_window_bits` = the smaller of the offered value and the
///   configured one, written when offered or when below 15 (§7.1.2.1 lets the
///   server add it on its own; clients must accept any value);
/// - `client_max_window_bits` = the smaller of the offered value (15 when
///   given without one) and the configured one, written when below 15, and
///   never when the offer lacks the parameter: that client compresses with
///   up to 15 bits, and [`Negotiated::client_max_window_bits`] says 15.
///
/// Names are compared case-insensitively. A value may be a token or a quoted
/// string (`client_max_window_bits="10"`).
///
/// ```
/// use wsreactor::proto::deflate::{DeflateConfig, Mode, negotiate};
///
/// let cfg = DeflateConfig { mode: Mode::Shared, server_max_window_bits: 12, ..Default::default() };
/// let headers: [&[u8]; 2] = [
///     b"x-webkit-deflate-frame, permessage-deflate; foo=1",
///     b"permessage-deflate; client_max_window_bits",
/// ];
/// let agreed = negotiate(headers, &cfg).unwrap().expect("the second offer is acceptable");
/// assert_eq!(
///     agreed.response_header(),
///     "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
/// );
/// assert_eq!((agreed.server_max_window_bits, agreed.client_max_window_bits), (12, 15));
///
/// // Malformed syntax is an error, to be answered with 400.
/// assert!(negotiate([&b"permessage-deflate; ;"[..]], &cfg).is_err());
/// ```
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a [u8]>,
    cfg: &DeflateConfig,
) -> Result<Option<Negotiated>, NegotiationError> {
    if cfg.mode == Mode::Disabled {
        return Ok(None);
    }
    let mut chosen = None;
    for value in offers {
        parse_extensions(value, |name, params| {
            if chosen.is_none()
                && params.problem.is_none()
                && name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes())
            {
                chosen = Some(accept(&params, cfg));
            }
        })?;
    }
    Ok(chosen)
}

/// The answer to an acceptable offer.
fn accept(offer: &Params, cfg: &DeflateConfig) -> Negotiated {
    let mut server_bits = clamp_bits(cfg.server_max_window_bits);
    if let Some(offered) = offer.server_max_window_bits {
        server_bits = server_bits.min(offered);
    }
    let client_bits = match offer.client_max_window_bits {
        None => MAX_WINDOW_BITS,
        Some(offered) => {
            clamp_bits(cfg.client_max_window_bits).min(offered.unwrap_or(MAX_WINDOW_BITS))
        }
    };
    Negotiated {
        server_no_context_takeover: offer.server_no_context_takeover || cfg.mode == Mode::Shared,
        client_no_context_takeover: offer.client_no_context_takeover
            || cfg.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        echo_server_max_window_bits: offer.server_max_window_bits.is_some(),
    }
}

// ---------------------------------------------------------------------------
// Client side.

/// What a client offers; see [`client_offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server to compress every message with an empty window.
    pub server_no_context_takeover: bool,
    /// Promise to compress every message with an empty window.
    pub client_no_context_takeover: bool,
    /// Ask the server for at most this window, 8..=15 (clamped).
    pub server_max_window_bits: Option<u8>,
    /// Let the server pick our window: `Some(15)` sends the parameter without
    /// a value (any window), `Some(n)` with `n` < 15 caps it at `n`, `None`
    /// leaves it out (we compress with 15 bits).
    pub client_max_window_bits: Option<u8>,
}

impl Default for ClientOffer {
    /// `permessage-deflate; client_max_window_bits`, as browsers offer.
    fn default() -> Self {
        ClientOffer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: Some(MAX_WINDOW_BITS),
        }
    }
}

impl ClientOffer {
    fn clamped(&self) -> ClientOffer {
        ClientOffer {
            server_max_window_bits: self.server_max_window_bits.map(clamp_bits),
            client_max_window_bits: self.client_max_window_bits.map(clamp_bits),
            ..*self
        }
    }
}

/// The client's `Sec-WebSocket-Extensions` value for `offer`.
///
/// ```
/// use wsreactor::proto::deflate::{ClientOffer, client_offer};
///
/// let offer = ClientOffer {
///     client_no_context_takeover: true,
///     server_max_window_bits: Some(10),
///     ..ClientOffer::default()
/// };
/// assert_eq!(
///     client_offer(&offer),
///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
/// );
/// ```
pub fn client_offer(offer: &ClientOffer) -> String {
    let offer = offer.clamped();
    let mut out = String::with_capacity(128);
    out.push_str(EXTENSION_NAME);
    if offer.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if offer.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = offer.server_max_window_bits {
        push_param(&mut out, "server_max_window_bits", bits);
    }
    match offer.client_max_window_bits {
        Some(MAX_WINDOW_BITS) => out.push_str("; client_max_window_bits"),
        Some(bits) => push_param(&mut out, "client_max_window_bits", bits),
        None => {}
    }
    out
}

/// Checks the server's `Sec-WebSocket-Extensions` values against what was
/// offered (RFC 7692 §5.1, §7.1; RFC 6455 §9.1).
///
/// `Ok(None)`: the server declined (no extension in its answer). An `Err`
/// means the client must fail the connection: malformed syntax, an extension
/// that was not offered (anything but one `permessage-deflate`), an unknown,
/// repeated or invalid parameter, `client_max_window_bits` not offered or
/// without a value or above the offered one, `server_max_window_bits` missing
/// or above the offered one when it was offered, or
/// `server_no_context_takeover` missing when it was offered.
///
/// `client_no_context_takeover` in the result is also set when the client
/// offered it (the client promised it); `client_max_window_bits` is the
/// answered value, else the offered one, else 15.
///
/// ```
/// use wsreactor::proto::deflate::{ClientOffer, parse_client_response};
///
/// let offer = ClientOffer { server_max_window_bits: Some(10), ..ClientOffer::default() };
/// let answer = b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=12";
/// let agreed = parse_client_response([&answer[..]], &offer).unwrap().unwrap();
/// assert_eq!((agreed.server_max_window_bits, agreed.client_max_window_bits), (9, 12));
///
/// let too_big = b"permessage-deflate; server_max_window_bits=11";
/// assert!(parse_client_response([&too_big[..]], &offer).is_err());
/// ```
pub fn parse_client_response<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    offered: &ClientOffer,
) -> Result<Option<Negotiated>, NegotiationError> {
    let offered = offered.clamped();
    let mut answer: Option<Params> = None;
    let mut problem = None;
    for value in values {
        parse_extensions(value, |name, params| {
            if problem.is_some() {
                return;
            }
            if !name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes()) {
                problem = Some("the server answered with an extension that was not offered");
            } else if answer.is_some() {
                problem = Some("the server answered permessage-deflate twice");
            } else if let Some(reason) = params.problem {
                problem = Some(reason);
            } else {
                answer = Some(params);
            }
        })?;
    }
    if let Some(reason) = problem {
        return Err(NegotiationError::new(reason));
    }
    let Some(answer) = answer else {
        return Ok(None);
    };
    if offered.server_no_context_takeover && !answer.server_no_context_takeover {
        return Err(NegotiationError::new("server_no_context_takeover missing from the answer"));
    }
    let server_bits = match (offered.server_max_window_bits, answer.server_max_window_bits) {
        (Some(_), None) => {
            return Err(NegotiationError::new("server_max_window_bits missing from the answer"));
        }
        (Some(asked), Some(got)) if got > asked => {
            return Err(NegotiationError::new("server_max_window_bits above the offered value"));
        }
        (_, got) => got.unwrap_or(MAX_WINDOW_BITS),
    };
    let client_bits = match (offered.client_max_window_bits, answer.client_max_window_bits) {
        (_, None) => offered.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        (None, Some(_)) => {
            return Err(NegotiationError::new("client_max_window_bits was not offered"));
        }
        (Some(_), Some(None)) => {
            return Err(NegotiationError::new("client_max_window_bits without a value"));
        }
        (Some(limit), Some(Some(got))) if got > limit => {
            return Err(NegotiationError::new("client_max_window_bits above the offered value"));
        }
        (Some(_), Some(Some(got))) => got,
    };
    Ok(Some(Negotiated {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover
            || offered.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        echo_server_max_window_bits: answer.server_max_window_bits.is_some(),
    }))
}

// ---------------------------------------------------------------------------
// Compression.

/// Compresses message payloads for one direction of one connection (or, with
/// no context takeover, for any number of them).
///
/// Holds a deflate state of roughly 200-330 KiB depending on the window (see
/// the module docs); create it when compression is needed, not per idle
/// connection.
pub struct Compressor {
    inner: Compress,
    window_bits: u8,
    no_context_takeover: bool,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor with a window of `window_bits` (8..=15, clamped; 8 runs
    /// as 9, see the module docs) at `level` (0..=9, clamped). With
    /// `no_context_takeover`, every message is compressed on its own.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        let window_bits = clamp_bits(window_bits);
        let zlib_bits = window_bits.max(ZLIB_MIN_WINDOW_BITS);
        Compressor {
            inner: Compress::new_with_window_bits(Compression::new(level.min(9)), false, zlib_bits),
            window_bits,
            no_context_takeover,
        }
    }

    /// The server's compressor for a connection that agreed on `agreed`.
    pub fn for_server(agreed: &Negotiated, level: u32) -> Self {
        Compressor::new(agreed.server_max_window_bits, level, agreed.server_no_context_takeover)
    }

    /// The client's compressor for a connection that agreed on `agreed`.
    pub fn for_client(agreed: &Negotiated, level: u32) -> Self {
        Compressor::new(agreed.client_max_window_bits, level, agreed.client_no_context_takeover)
    }

    /// The negotiated window size it compresses within.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether every message starts with an empty window.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Appends the compressed form of the message `payload` to `out`: the
    /// payload of a frame (or frames) with RSV1 set on the first (RFC 7692 §7.2.1).
    ///
    /// The deflate stream is sync-flushed and its trailing `00 00 ff ff`
    /// removed. An empty payload gives the single byte `00` (§7.2.3.6). With
    /// context takeover the window carries over to the next message, so the
    /// messages of a connection must go out in the order they were
    /// compressed; without, the state is reset afterwards.
    ///
    /// `out` grows by about the compressed size (at most the payload size
    /// plus 5 bytes per 64 KiB plus a few). If the deflater ever failed, the
    /// message is written as stored (uncompressed) deflate blocks instead,
    /// which every receiver decodes, and the state is reset.
    ///
    /// ```
    /// use wsreactor::proto::deflate::Compressor;
    ///
    /// let mut deflater = Compressor::new(15, 1, false);
    /// let mut payload = Vec::new();
    /// deflater.compress(b"Hello", &mut payload);
    /// assert_eq!(payload, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]); // RFC 7692 §7.2.3.1
    /// payload.clear();
    /// deflater.compress(b"Hello", &mut payload); // a match into the first message
    /// assert!(payload.len() < 7); // zlib says f2 00 11 00 00 (§7.2.3.2), zlib-rs 02 13 00 00
    /// ```
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            // The start of an empty stored block; the stream is untouched.
            out.push(0x00);
            return;
        }
        let start = out.len();
        if self.deflate(payload, out).is_err() {
            out.truncate(start);
            self.inner.reset();
            write_stored(payload, out);
            return;
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
    }

    /// Sync-flushes `payload` into `out` and strips the tail; `Err` leaves
    /// `out` and the state to be cleaned up by the caller.
    fn deflate(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        let start = out.len();
        out.reserve(payload.len() / 4 + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 32 {
                out.reserve(input.len() / 2 + 64);
            }
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            self.inner.compress_vec(input, out, FlushCompress::Sync).map_err(|_| ())?;
            let consumed = usize::try_from(self.inner.total_in() - in_before).map_err(|_| ())?;
            let produced = self.inner.total_out() - out_before;
            input = input.get(consumed..).ok_or(())?;
            // The flush is complete once a call returns with output space left.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if consumed == 0 && produced == 0 {
                return Err(());
            }
        }
        if out.len() - start < TAIL.len() || !out.ends_with(&TAIL) {
            return Err(());
        }
        out.truncate(out.len() - TAIL.len());
        Ok(())
    }

    /// Starts over with an empty window, keeping the allocations; call it
    /// before lending a pooled compressor to another connection whose context
    /// is not this one's.
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Writes `payload` as stored deflate blocks, then the first byte of an empty
/// stored block (whose other four bytes the receiver appends).
fn write_stored(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + payload.len() / STORED_BLOCK_MAX * 5 + 6);
    for block in payload.chunks(STORED_BLOCK_MAX) {
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX).to_le_bytes();
        let nlen = [!len[0], !len[1]];
        out.extend_from_slice(&[0x00, len[0], len[1], nlen[0], nlen[1]]);
        out.extend_from_slice(block);
    }
    out.push(0x00);
}

// ---------------------------------------------------------------------------
// Decompression.

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the allowed message size (a deflate bomb, or
    /// just too big): close with 1009.
    TooBig,
    /// It is not a valid deflate stream (or refers beyond the agreed window):
    /// close with 1007, as for invalid payload data.
    Corrupt,
}

impl InflateError {
    /// The close code to fail the connection with: 1009 for
    /// [`InflateError::TooBig`], 1007 for [`InflateError::Corrupt`].
    pub fn close_code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }

    /// A short reason for a close frame and a log line.
    pub fn reason(self) -> &'static str {
        match self {
            InflateError::TooBig => "message too big",
            InflateError::Corrupt => "invalid compressed data",
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for InflateError {}

/// Inflates compressed messages for one direction of one connection (or, with
/// no context takeover, for any number of them, one message at a time).
pub struct Decompressor {
    inner: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
    /// Bytes inflated for the current message so far.
    produced: usize,
    /// Compressed bytes were fed for the current message.
    fed: bool,
    /// The current message's deflate stream ended (a block with BFINAL set):
    /// the rest of the message is ignored and the state reset at its end.
    ended: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("in_message", &self.in_message())
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// An inflater for a peer compressing within `window_bits` (8..=15,
    /// clamped; 8 runs as 9, which decodes it). With `no_context_takeover`,
    /// the state is reset after every message.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let window_bits = clamp_bits(window_bits);
        Decompressor {
            inner: Decompress::new_with_window_bits(
                false,
                window_bits.max(ZLIB_MIN_WINDOW_BITS),
            ),
            window_bits,
            no_context_takeover,
            produced: 0,
            fed: false,
            ended: false,
        }
    }

    /// The server's inflater (for the client's messages) on a connection
    /// that agreed on `agreed`.
    pub fn for_server(agreed: &Negotiated) -> Self {
        Decompressor::new(agreed.client_max_window_bits, agreed.client_no_context_takeover)
    }

    /// The client's inflater (for the server's messages) on a connection
    /// that agreed on `agreed`.
    pub fn for_client(agreed: &Negotiated) -> Self {
        Decompressor::new(agreed.server_max_window_bits, agreed.server_no_context_takeover)
    }

    /// The negotiated window size of the peer it inflates.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the state is reset after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether a message has been fed in part (its last piece not yet).
    pub fn in_message(&self) -> bool {
        self.fed
    }

    /// Inflates the next `chunk` of a compressed message, appending to `out`;
    /// `fin` marks the message's last chunk (RFC 7692 §7.2.2).
    ///
    /// Feed the payload pieces of the message's frames as they arrive, in
    /// order, with `fin` on the last (an empty last chunk is fine). At most
    /// `max_message_size` inflated bytes of one message are appended over
    /// all its calls, and `out` is never grown beyond that: a message that
    /// would inflate to more fails with [`InflateError::TooBig`] as soon as
    /// the excess shows, so a deflate bomb costs at most the cap (plus a
    /// 1 KiB stack buffer). Invalid data fails with [`InflateError::Corrupt`].
    /// After an error the state is reset (the connection is to be failed
    /// anyway), so a pooled inflater can be reused.
    ///
    /// A message whose compressed payload is empty (not what RFC 7692
    /// produces, but sent by some peers for an empty message) inflates to
    /// nothing and leaves the window alone. A deflate block with BFINAL set
    /// ends the message's stream: whatever follows it in the message is
    /// ignored and the window is not carried over to the next message.
    ///
    /// ```
    /// use wsreactor::proto::deflate::{Decompressor, InflateError};
    ///
    /// let mut inflater = Decompressor::new(15, false);
    /// let mut text = Vec::new();
    /// // "Hello" from RFC 7692 §7.2.3.1, in two frames.
    /// inflater.decompress(&[0xf2, 0x48, 0xcd], false, 1024, &mut text).unwrap();
    /// inflater.decompress(&[0xc9, 0xc9, 0x07, 0x00], true, 1024, &mut text).unwrap();
    /// assert_eq!(text, b"Hello");
    ///
    /// // Over the cap: 1009. Corrupt: 1007.
    /// text.clear();
    /// let err = inflater.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, 4, &mut text);
    /// assert_eq!(err, Err(InflateError::TooBig));
    /// assert_eq!(err.unwrap_err().close_code().0, 1009);
    /// assert_eq!(inflater.decompress(&[0xff], true, 1024, &mut text), Err(InflateError::Corrupt));
    /// ```
    pub fn decompress(
        &mut self,
        chunk: &[u8],
        fin: bool,
        max_message_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let result = self.feed(chunk, fin, max_message_size, out);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn feed(
        &mut self,
        chunk: &[u8],
        fin: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        if !chunk.is_empty() {
            self.fed = true;
            self.inflate(chunk, max, out)?;
        }
        if !fin {
            return Ok(());
        }
        if self.fed {
            self.inflate(&TAIL, max, out)?;
        }
        if self.no_context_takeover || self.ended {
            self.inner.reset(false);
        }
        self.produced = 0;
        self.fed = false;
        self.ended = false;
        Ok(())
    }

    /// Runs `input` through the inflater, appending at most `max - produced`
    /// bytes to `out`.
    fn inflate(&mut self, mut input: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
        while !self.ended {
            let room = max.saturating_sub(self.produced);
            if room > 0 && out.capacity() == out.len() {
                let want = out.capacity().max(input.len().saturating_mul(4)).max(256);
                out.reserve_exact(want.min(room));
            }
            let spare = out.capacity() - out.len();
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let (status, limit) = if room == 0 {
                // At the cap: any further byte is one too many.
                let mut probe = [0u8; 1];
                (self.inner.decompress(input, &mut probe, FlushDecompress::Sync), 1)
            } else if spare <= room {
                (self.inner.decompress_vec(input, out, FlushDecompress::Sync), spare)
            } else {
                // `out` has more spare room than the cap allows: go through a
                // stack buffer of at most `room` bytes.
                let mut scratch = [0u8; SCRATCH_LEN];
                let limit = room.min(SCRATCH_LEN);
                let buf = scratch.get_mut(..limit).ok_or(InflateError::Corrupt)?;
                let status = self.inner.decompress(input, buf, FlushDecompress::Sync);
                let produced = usize::try_from(self.inner.total_out() - out_before)
                    .map_err(|_| InflateError::Corrupt)?;
                out.extend_from_slice(buf.get(..produced).ok_or(InflateError::Corrupt)?);
                (status, limit)
            };
            let status = status.map_err(|_| InflateError::Corrupt)?;
            let consumed = usize::try_from(self.inner.total_in() - in_before)
                .map_err(|_| InflateError::Corrupt)?;
            let produced = usize::try_from(self.inner.total_out() - out_before)
                .map_err(|_| InflateError::Corrupt)?;
            if room == 0 && produced > 0 {
                return Err(InflateError::TooBig);
            }
            self.produced += produced;
            input = input.get(consumed..).ok_or(InflateError::Corrupt)?;
            if status == Status::StreamEnd {
                self.ended = true;
            } else if (input.is_empty() && produced < limit) || (consumed == 0 && produced == 0) {
                // Everything inflatable so far is out, or no progress can be made.
                break;
            }
        }
        Ok(())
    }

    /// Forgets any message in progress and starts over with an empty window,
    /// keeping the allocations; call it before lending a pooled inflater to
    /// another connection whose context is not this one's.
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.produced = 0;
        self.fed = false;
        self.ended = false;
    }
}
