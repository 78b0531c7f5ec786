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
//! - Inflating: a 9-bit (512-byte) window decodes every stream an 8-bit one
//!   does (and zlib-rs keeps a 32 KiB inflate window whatever it is asked for).
//! - Deflating: zlib and zlib-rs never emit a match farther back than the
//!   window size minus 262 bytes (`MAX_DIST`), so a 9-bit deflater never
//!   refers more than 250 bytes back, and its output decodes with a 256-byte
//!   window. (Checked against zlib 1.2.13 inflating with an 8-bit window:
//!   it decoded our 8-bit messages whose repeats lay 300 and 480 bytes back,
//!   and rejected a 15-bit stream of the same data.)
//!
//! So a client asking `server_max_window_bits=8` gets exactly that answer (a
//! larger value would break RFC 7692 §7.1.2.1 and make the client fail the
//! connection).
//!
//! # Memory
//!
//! Measured with zlib-rs 0.6 (`cargo bench --bench deflate` prints them): a
//! [`Compressor`] holds 245 KiB at 8-10 window bits, 252 KiB at 11, 259 KiB
//! at 12, 275 KiB at 13, 307 KiB at 14 and 371 KiB at 15 (its window and
//! chain table grow with the bits; a 128 KiB hash table and a 64 KiB symbol
//! buffer do not). A [`Decompressor`] holds 46 KiB whatever the window bits:
//! zlib-rs allocates its state and a 32 KiB window at once. So asking clients
//! for a small `client_max_window_bits` saves *their* memory, not ours.
//!
//! Neither belongs to an idle connection. [`Compressor::reset`] and
//! [`Decompressor::reset`] let a reactor keep a small pool per reactor and
//! lend one out only while a message is being (de)compressed, when no context
//! is taken over between messages. A reset is not free: the compressor clears
//! its 128 KiB hash table, so a 110-byte tick takes 2.8 µs to compress
//! without context takeover against 0.33 µs with (level 1, 2 shared cores).
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
    /// allow it compresses with up to 15 bits and is inflated with 15. A
    /// smaller window saves the client's memory; our inflater's is the same
    /// at every size (see the module docs).
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
    ///
    /// With context takeover even a 110-byte JSON tick shrinks to about a
    /// quarter (it refers to earlier ticks); without (every message in
    /// [`Mode::Shared`]) a lone tick shrinks by only 4%, two ticks in one
    /// message (210 bytes) by 40%. So for `Shared`, 128 or more makes sense.
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
/// handshake did not mention them. Made by [`negotiate`] or
/// [`parse_client_response`]; by hand, start from `Negotiated::default()`
/// (no parameters) and set the fields.
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
                Some(if cur.eat(b'"') {
                    Value::Quoted(cur.quoted()?)
                } else {
                    Value::Token(cur.token()?)
                })
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
        echo_server_max_window_bits: offered.server_max_window_bits.is_some(),
    }))
}

// ---------------------------------------------------------------------------
// Compression.

/// Compresses message payloads for one direction of one connection (or, with
/// no context takeover, for any number of them).
///
/// Holds 245-371 KiB of deflate state depending on the window (see the
/// module docs); create it when compression is needed, not per idle
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
    /// `out` grows by the compressed size, but first gets room for the worst
    /// case, 1.14 × the payload plus 64 bytes, so the flush completes in one
    /// pass: compress into a reused scratch buffer rather than one that is
    /// kept. If the deflater ever failed, the
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
        // Room for the worst case (9-bit codes for every byte, block headers,
        // the flush marker), so that the flush completes in one call with
        // room to spare: a call that fills the output exactly makes the next
        // one add a second marker (zlib's manual: keep avail_out above 6).
        out.reserve(deflate_bound(payload.len()));
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
            // The flush is complete once a call returns with output space
            // left, or (after one that filled it exactly) has nothing to add.
            if input.is_empty() && (out.len() < out.capacity() || produced == 0) {
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

/// More than the most a deflate stream of `len` input bytes takes, sync flush included.
fn deflate_bound(len: usize) -> usize {
    len.saturating_add(len >> 3).saturating_add(len >> 6).saturating_add(64)
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
    /// just too big): close with 1009, as for any message too big (RFC 6455 §7.4.1).
    TooBig,
    /// It is not a valid deflate stream (for example a match that refers to
    /// bytes before the start of the stream): close with 1007, as for invalid
    /// payload data. (RFC 7692 names no code; 1007 is what common
    /// implementations send.)
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
            inner: Decompress::new_with_window_bits(false, window_bits.max(ZLIB_MIN_WINDOW_BITS)),
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
    fn inflate(
        &mut self,
        mut input: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
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
            } else if input.is_empty() && (produced < limit || produced == 0) {
                // Everything inflatable so far is out.
                break;
            } else if consumed == 0 && produced == 0 {
                // Input left and room to write, yet no progress: never
                // happens with a valid stream; refuse rather than drop bytes.
                return Err(InflateError::Corrupt);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    fn cfg(mode: Mode) -> DeflateConfig {
        DeflateConfig { mode, ..DeflateConfig::default() }
    }

    /// The server's answer to `headers`: `Ok(None)` declined, `Err(())` malformed.
    fn answer(headers: &[&str], cfg: &DeflateConfig) -> Result<Option<String>, ()> {
        negotiate(headers.iter().map(|h| h.as_bytes()), cfg)
            .map(|n| n.map(|n| n.response_header()))
            .map_err(|_| ())
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test fixture is hex"))
            .collect()
    }

    fn tick(i: u64) -> String {
        format!(
            "{{\"type\":\"tick\",\"symbol\":\"BTC-USD\",\"bid\":{}.{},\"ask\":{}.{},\"size\":0.{},\"seq\":{},\"ts\":{}}}",
            64000 + (i * 7919) % 300,
            i % 10,
            64001 + (i * 7919) % 300,
            (i * 3) % 10,
            1 + i % 97,
            123_456 + i,
            1_732_240_000_123 + i * 37
        )
    }

    /// A JSON array of ticks of at least `len` bytes.
    fn json(len: usize) -> Vec<u8> {
        let mut out = b"[".to_vec();
        let mut i = 0;
        while out.len() < len {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(tick(i).as_bytes());
            i += 1;
        }
        out.push(b']');
        out
    }

    /// Half random bytes, half repeats at every distance up to 40 KiB.
    fn mixed(len: usize, rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if out.len() > 64 && rng.below(2) == 0 {
                let dist = 1 + rng.below(out.len().min(40_000));
                let n = 3 + rng.below(300);
                for _ in 0..n {
                    out.push(out[out.len() - dist]);
                }
            } else {
                for _ in 0..1 + rng.below(100) {
                    out.push(rng.next() as u8);
                }
            }
        }
        out.truncate(len);
        out
    }

    /// Feeds `wire` as one message in pieces of sizes drawn by `piece`.
    fn inflate_in_pieces(
        d: &mut Decompressor,
        wire: &[u8],
        mut piece: impl FnMut() -> usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let mut rest = wire;
        while !rest.is_empty() {
            let n = piece().clamp(1, rest.len());
            let (now, later) = rest.split_at(n);
            // Sometimes the last piece carries fin, sometimes an empty piece after it does.
            let fin = later.is_empty() && n % 2 == 0;
            d.decompress(now, fin, max, out)?;
            if fin {
                return Ok(());
            }
            rest = later;
        }
        d.decompress(&[], true, max, out)
    }

    fn compressed(c: &mut Compressor, payload: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        c.compress(payload, &mut wire);
        wire
    }

    fn inflated(d: &mut Decompressor, wire: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        d.decompress(wire, true, usize::MAX, &mut out).map(|()| out)
    }

    // -- Negotiation: grammar ----------------------------------------------

    #[test]
    fn grammar_accepts_tokens_quoted_strings_whitespace_and_case() {
        let dedicated = cfg(Mode::Dedicated);
        let ok = |headers: &[&str], expected: &str| {
            assert_eq!(answer(headers, &dedicated), Ok(Some(expected.to_owned())), "{headers:?}");
        };
        ok(&["permessage-deflate"], "permessage-deflate");
        ok(&["permessage-deflate; client_max_window_bits"], "permessage-deflate");
        ok(
            &["  permessage-deflate\t;client_max_window_bits  =  10 "],
            "permessage-deflate; client_max_window_bits=10",
        );
        ok(
            &["permessage-deflate; client_max_window_bits=\"10\""],
            "permessage-deflate; client_max_window_bits=10",
        );
        ok(
            &["permessage-deflate; client_max_window_bits=\"1\\0\""],
            "permessage-deflate; client_max_window_bits=10",
        );
        ok(
            &["permessage-deflate; client_max_window_bits=\"\\9\""],
            "permessage-deflate; client_max_window_bits=9",
        );
        ok(
            &["permessage-deflate;server_max_window_bits=\"8\""],
            "permessage-deflate; server_max_window_bits=8",
        );
        ok(
            &["PerMessage-Deflate; Server_No_Context_Takeover"],
            "permessage-deflate; server_no_context_takeover",
        );
        ok(&[", ,permessage-deflate ,,"], "permessage-deflate");
        ok(&["", "permessage-deflate"], "permessage-deflate");
        ok(
            &[
                "permessage-deflate; client_max_window_bits=9; client_no_context_takeover; server_max_window_bits=12; server_no_context_takeover",
            ],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=9",
        );
        // Other extensions are skipped, whatever their parameters.
        ok(
            &[
                "x-webkit-deflate-frame; no_context_takeover, foo; bar=\"a b,c;d\\\"\"",
                "permessage-deflate",
            ],
            "permessage-deflate",
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        let dedicated = cfg(Mode::Dedicated);
        for bad in [
            "permessage-deflate;",
            "permessage-deflate; ;",
            "permessage-deflate; =1",
            "permessage-deflate; a=",
            "permessage-deflate; a= ;",
            "permessage-deflate; a=\"unterminated",
            "permessage-deflate; a=\"bad\x01control\"",
            "permessage-deflate; a=\"bad escape\\\x01\"",
            "permessage-deflate; a=\"x\"y",
            "permessage-deflate; a=b c",
            "permessage-deflate; a==b",
            "permessage deflate",
            "permessage-deflate x",
            "perm@ssage-deflate",
            "\"permessage-deflate\"",
            ";permessage-deflate",
            "permessage-deflate; client_max_window_bits=1\x7f",
            "x-foo; a=\"",
            "=",
        ] {
            assert_eq!(answer(&[bad], &dedicated), Err(()), "{bad:?}");
        }
        // Every header is read to the end, even after an acceptable offer.
        assert_eq!(answer(&["permessage-deflate, x-foo;"], &dedicated), Err(()));
        assert_eq!(answer(&["permessage-deflate", "x;;"], &dedicated), Err(()));
        // The error converts to a 400 response.
        let err = negotiate([&b"permessage-deflate;"[..]], &dedicated).unwrap_err();
        assert_eq!(HandshakeError::from(err).status, 400);
        assert!(!err.to_string().is_empty());
        // Disabled: the header is not read at all.
        assert_eq!(answer(&["permessage-deflate;"], &cfg(Mode::Disabled)), Ok(None));
        assert_eq!(answer(&["permessage-deflate"], &cfg(Mode::Disabled)), Ok(None));
    }

    #[test]
    fn offers_that_are_declined() {
        let dedicated = cfg(Mode::Dedicated);
        for declined in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=150",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=\"1 5\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=9.0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover=\"\"",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; foo",
            "permessage-deflate; foo=bar",
            "permessage-deflate; server_max_window_bits=10; x",
            "x-webkit-deflate-frame",
            "deflate-frame, permessage-deflate-x",
        ] {
            assert_eq!(answer(&[declined], &dedicated), Ok(None), "{declined:?}");
        }
        // A declined offer does not stop a later one, in the same header or another.
        assert_eq!(
            answer(
                &["permessage-deflate; foo, permessage-deflate; server_no_context_takeover"],
                &dedicated
            ),
            Ok(Some("permessage-deflate; server_no_context_takeover".to_owned()))
        );
        assert_eq!(
            answer(
                &[
                    "permessage-deflate; server_max_window_bits=5",
                    "x-foo, permessage-deflate; client_max_window_bits=9"
                ],
                &dedicated
            ),
            Ok(Some("permessage-deflate; client_max_window_bits=9".to_owned()))
        );
        // The first acceptable offer wins, even when a later one is "better".
        assert_eq!(
            answer(
                &["permessage-deflate; client_max_window_bits=10", "permessage-deflate"],
                &dedicated
            ),
            Ok(Some("permessage-deflate; client_max_window_bits=10".to_owned()))
        );
    }

    #[test]
    fn what_the_server_adds_on_its_own() {
        let table: &[(DeflateConfig, &str, &str)] = &[
            // Shared: always server_no_context_takeover.
            (
                cfg(Mode::Shared),
                "permessage-deflate",
                "permessage-deflate; server_no_context_takeover",
            ),
            // A smaller server window is announced even when not asked about (§7.1.2.1) ...
            (
                DeflateConfig { server_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=10",
            ),
            // ... and the client's smaller value wins.
            (
                DeflateConfig { server_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; server_max_window_bits=9",
                "permessage-deflate; server_max_window_bits=9",
            ),
            (
                DeflateConfig { server_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; server_max_window_bits=12",
                "permessage-deflate; server_max_window_bits=10",
            ),
            // An offered 15 must be echoed.
            (
                cfg(Mode::Dedicated),
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
            ),
            // 8 is answered with 8 (the deflater runs with 9 internally).
            (
                cfg(Mode::Dedicated),
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
            ),
            (
                DeflateConfig { server_max_window_bits: 8, ..cfg(Mode::Dedicated) },
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=8",
            ),
            // The client's window only when the client allows it.
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate",
                "permessage-deflate",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; client_max_window_bits=12",
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; client_max_window_bits=8",
                "permessage-deflate; client_max_window_bits=8",
            ),
            (
                cfg(Mode::Dedicated),
                "permessage-deflate; client_max_window_bits=15",
                "permessage-deflate",
            ),
            // client_no_context_takeover by configuration.
            (
                DeflateConfig { client_no_context_takeover: true, ..cfg(Mode::Shared) },
                "permessage-deflate",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            // Out-of-range configuration is clamped.
            (
                DeflateConfig {
                    server_max_window_bits: 3,
                    client_max_window_bits: 0,
                    ..cfg(Mode::Dedicated)
                },
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
            ),
            (
                DeflateConfig {
                    server_max_window_bits: 200,
                    client_max_window_bits: 16,
                    ..cfg(Mode::Dedicated)
                },
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
            ),
        ];
        for (cfg, offer, expected) in table {
            assert_eq!(
                answer(&[offer], cfg),
                Ok(Some((*expected).to_owned())),
                "{cfg:?} {offer:?}"
            );
        }
        // Without client_max_window_bits in the offer, the client compresses with 15.
        let n = negotiate(
            [&b"permessage-deflate"[..]],
            &DeflateConfig { client_max_window_bits: 9, ..cfg(Mode::Dedicated) },
        )
        .unwrap()
        .unwrap();
        assert_eq!(n.client_max_window_bits, 15);
    }

    /// Every combination of offered parameters against every configuration:
    /// the answer follows the rules, and the client side agrees with it.
    #[test]
    fn every_parameter_combination() {
        let bits_or_absent = || std::iter::once(None).chain((8..=15).map(Some));
        let mut checked = 0;
        for snct in [false, true] {
            for cnct in [false, true] {
                for smwb in bits_or_absent() {
                    // None: absent; Some(None): no value; Some(Some(n)).
                    for cmwb in std::iter::once(None)
                        .chain(std::iter::once(Some(None)))
                        .chain((8..=15).map(|b| Some(Some(b))))
                    {
                        let mut params = Vec::new();
                        if snct {
                            params.push("server_no_context_takeover".to_owned());
                        }
                        if cnct {
                            params.push("client_no_context_takeover".to_owned());
                        }
                        if let Some(b) = smwb {
                            params.push(format!("server_max_window_bits={b}"));
                        }
                        match cmwb {
                            Some(None) => params.push("client_max_window_bits".to_owned()),
                            Some(Some(b)) => params.push(format!("client_max_window_bits=\"{b}\"")),
                            None => {}
                        }
                        for reversed in [false, true] {
                            if reversed {
                                params.reverse();
                            }
                            let mut offer = EXTENSION_NAME.to_owned();
                            for p in &params {
                                offer.push_str(" ; ");
                                offer.push_str(p);
                            }
                            for mode in [Mode::Shared, Mode::Dedicated] {
                                for cfg_server in 8..=15u8 {
                                    for cfg_client in 8..=15u8 {
                                        for cfg_cnct in [false, true] {
                                            let cfg = DeflateConfig {
                                                mode,
                                                server_max_window_bits: cfg_server,
                                                client_max_window_bits: cfg_client,
                                                client_no_context_takeover: cfg_cnct,
                                                ..DeflateConfig::default()
                                            };
                                            let n = negotiate([offer.as_bytes()], &cfg)
                                                .unwrap()
                                                .unwrap_or_else(|| panic!("{offer} declined"));
                                            assert_eq!(
                                                n.server_no_context_takeover,
                                                snct || mode == Mode::Shared
                                            );
                                            assert_eq!(
                                                n.client_no_context_takeover,
                                                cnct || cfg_cnct
                                            );
                                            assert_eq!(
                                                n.server_max_window_bits,
                                                smwb.unwrap_or(15).min(cfg_server)
                                            );
                                            let client = match cmwb {
                                                None => 15,
                                                Some(v) => v.unwrap_or(15).min(cfg_client),
                                            };
                                            assert_eq!(n.client_max_window_bits, client);
                                            let header = n.response_header();
                                            assert_eq!(
                                                header.contains("server_max_window_bits"),
                                                smwb.is_some() || cfg_server < 15
                                            );
                                            assert!(
                                                cmwb.is_some()
                                                    || !header.contains("client_max_window_bits")
                                            );
                                            // The client that made this offer accepts the answer
                                            // and reads the same parameters from it.
                                            let client_offer = ClientOffer {
                                                server_no_context_takeover: snct,
                                                client_no_context_takeover: cnct,
                                                server_max_window_bits: smwb,
                                                client_max_window_bits: cmwb
                                                    .map(|v| v.unwrap_or(15)),
                                            };
                                            let seen = parse_client_response(
                                                [header.as_bytes()],
                                                &client_offer,
                                            )
                                            .unwrap_or_else(|e| panic!("{offer} -> {header}: {e}"))
                                            .unwrap();
                                            assert_eq!(seen, n, "{offer} -> {header}");
                                            checked += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 9 * 10 * 2 * 2 * 8 * 8 * 2);
    }

    // -- Negotiation: client side ------------------------------------------

    #[test]
    fn client_offer_strings() {
        let table = [
            (ClientOffer::default(), "permessage-deflate; client_max_window_bits"),
            (
                ClientOffer { client_max_window_bits: None, ..ClientOffer::default() },
                "permessage-deflate",
            ),
            (
                ClientOffer {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    server_max_window_bits: Some(8),
                    client_max_window_bits: Some(12),
                },
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=12",
            ),
            (
                ClientOffer {
                    server_max_window_bits: Some(99),
                    client_max_window_bits: Some(2),
                    ..ClientOffer::default()
                },
                "permessage-deflate; server_max_window_bits=15; client_max_window_bits=8",
            ),
        ];
        for (offer, expected) in table {
            assert_eq!(client_offer(&offer), expected);
            // What a client offers, our server accepts.
            assert!(negotiate([expected.as_bytes()], &cfg(Mode::Dedicated)).unwrap().is_some());
        }
    }

    #[test]
    fn client_checks_the_answer() {
        let plain = ClientOffer::default();
        let strict = ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
        };
        let no_client_bits = ClientOffer { client_max_window_bits: None, ..ClientOffer::default() };
        let parse = |headers: &[&str], offer: &ClientOffer| {
            parse_client_response(headers.iter().map(|h| h.as_bytes()), offer)
        };
        // Declined: no extension at all.
        assert_eq!(parse(&[], &plain), Ok(None));
        assert_eq!(parse(&[" , "], &plain), Ok(None));
        // Accepted, with what the server may add on its own.
        let n = parse(&["permessage-deflate"], &plain).unwrap().unwrap();
        assert_eq!(n, Negotiated::default());
        let n = parse(&["permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8"], &plain)
            .unwrap()
            .unwrap();
        assert!(n.server_no_context_takeover && n.client_no_context_takeover);
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (8, 15));
        let n = parse(&["permessage-deflate; client_max_window_bits=9"], &plain).unwrap().unwrap();
        assert_eq!(n.client_max_window_bits, 9);
        let n = parse(
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=10"],
            &strict,
        )
        .unwrap()
        .unwrap();
        // The offered client window holds when the server does not answer it.
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (10, 12));
        let n = parse(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11"], &strict)
            .unwrap()
            .unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (9, 11));
        // A promised client_no_context_takeover holds.
        let promise = ClientOffer { client_no_context_takeover: true, ..ClientOffer::default() };
        assert!(
            parse(&["permessage-deflate"], &promise).unwrap().unwrap().client_no_context_takeover
        );

        for (headers, offer) in [
            (&["x-webkit-deflate-frame"][..], &plain),
            (&["permessage-deflate, x-foo"], &plain),
            (&["permessage-deflate", "permessage-deflate"], &plain),
            (&["permessage-deflate; foo"], &plain),
            (
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                &plain,
            ),
            (&["permessage-deflate; server_max_window_bits=16"], &plain),
            (&["permessage-deflate; server_max_window_bits"], &plain),
            (&["permessage-deflate; client_no_context_takeover=1"], &plain),
            (&["permessage-deflate; client_max_window_bits"], &plain),
            (&["permessage-deflate; client_max_window_bits=9"], &no_client_bits),
            (&["permessage-deflate; client_max_window_bits=13"], &strict),
            (&["permessage-deflate; server_max_window_bits=10"], &strict),
            (&["permessage-deflate; server_no_context_takeover"], &strict),
            (
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"],
                &strict,
            ),
            (&["permessage-deflate;"], &plain),
        ] {
            assert!(parse(headers, offer).is_err(), "{headers:?} for {offer:?}");
        }
    }

    #[test]
    fn config_helpers() {
        let on = DeflateConfig { mode: Mode::Dedicated, min_size: 64, ..DeflateConfig::default() };
        assert!(!on.compresses(63));
        assert!(on.compresses(64));
        assert!(!cfg(Mode::Disabled).compresses(1 << 20));
        assert_eq!(Negotiated::default().response_header(), "permessage-deflate");
    }

    // -- Codec: RFC 7692 §7.2.3 examples -----------------------------------

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rfc_7_2_3_1_a_message_compressed() {
        for level in [1, 6, 9] {
            for bits in 8..=15 {
                assert_eq!(
                    compressed(&mut Compressor::new(bits, level, true), b"Hello"),
                    HELLO,
                    "level {level}"
                );
            }
        }
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello");
        // Fragmented: f2 48 cd | c9 c9 07 00.
        let mut out = Vec::new();
        d.decompress(&HELLO[..3], false, 5, &mut out).unwrap();
        assert!(d.in_message());
        d.decompress(&HELLO[3..], true, 5, &mut out).unwrap();
        assert!(!d.in_message());
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_7_2_3_2_sharing_the_window() {
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello");
        assert_eq!(inflated(&mut d, &second).unwrap(), b"Hello");
        // Without context takeover the second message refers to nothing.
        let mut d = Decompressor::new(15, true);
        assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello");
        assert_eq!(inflated(&mut d, &second), Err(InflateError::Corrupt));
        // Our compressor: a shorter second message with takeover, the same
        // bytes again without.
        let mut c = Compressor::new(15, 1, false);
        assert_eq!(compressed(&mut c, b"Hello"), HELLO);
        let again = compressed(&mut c, b"Hello");
        assert!(again.len() < HELLO.len());
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello");
        assert_eq!(inflated(&mut d, &again).unwrap(), b"Hello");
        let mut c = Compressor::new(15, 1, true);
        assert_eq!(compressed(&mut c, b"Hello"), HELLO);
        assert_eq!(compressed(&mut c, b"Hello"), HELLO);
    }

    #[test]
    fn rfc_7_2_3_3_to_5_other_block_shapes() {
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let two_blocks =
            [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        for context_takeover in [true, false] {
            let mut d = Decompressor::new(15, !context_takeover);
            for wire in [&stored[..], &bfinal, &two_blocks, &HELLO, &bfinal, &stored] {
                assert_eq!(inflated(&mut d, wire).unwrap(), b"Hello", "{wire:02x?}");
            }
            // In pieces too, one byte at a time.
            for wire in [&stored[..], &bfinal, &two_blocks] {
                let mut out = Vec::new();
                inflate_in_pieces(&mut d, wire, || 1, 5, &mut out).unwrap();
                assert_eq!(out, b"Hello");
            }
        }
        // Bytes after a BFINAL block are ignored.
        let mut d = Decompressor::new(15, false);
        let mut trailing = bfinal.to_vec();
        trailing.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(inflated(&mut d, &trailing).unwrap(), b"Hello");
        assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7_2_3_6_empty_messages() {
        for context_takeover in [true, false] {
            let mut c = Compressor::new(15, 1, !context_takeover);
            let mut d = Decompressor::new(15, !context_takeover);
            assert_eq!(compressed(&mut c, b""), [0x00]);
            let first = compressed(&mut c, b"Hello");
            assert_eq!(compressed(&mut c, b""), [0x00]);
            let second = compressed(&mut c, b"Hello");
            assert_eq!(inflated(&mut d, &[0x00]).unwrap(), b"");
            assert_eq!(inflated(&mut d, &first).unwrap(), b"Hello");
            // The RFC's empty fragment, and an empty compressed payload (which
            // some peers send): both inflate to nothing and keep the window.
            assert_eq!(inflated(&mut d, &[0x00]).unwrap(), b"");
            assert_eq!(inflated(&mut d, &[]).unwrap(), b"");
            assert_eq!(inflated(&mut d, &second).unwrap(), b"Hello");
            // A message that ends with an empty fragment (§7.2.3.6): the first
            // fragment keeps its whole sync flush, the last is `00`.
            let mut out = Vec::new();
            let mut third = compressed(&mut c, b"Hello");
            third.extend_from_slice(&TAIL);
            d.decompress(&third, false, 5, &mut out).unwrap();
            d.decompress(&[0x00], true, 5, &mut out).unwrap();
            assert_eq!(out, b"Hello");
        }
    }

    // -- Codec: round trips ------------------------------------------------

    #[test]
    fn round_trips_at_every_window_with_and_without_context_takeover() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let big = mixed(1 << 20, &mut rng);
        let batch = json(64 << 10);
        let tick = tick(7).into_bytes();
        let messages: [&[u8]; 8] = [b"", b"a", b"Hello", &tick, &batch, &big, &tick, &batch];
        for bits in 8..=15 {
            for no_context_takeover in [false, true] {
                let mut c = Compressor::new(bits, 1, no_context_takeover);
                let mut d = Decompressor::new(bits, no_context_takeover);
                assert_eq!((c.window_bits(), d.window_bits()), (bits, bits));
                for (i, message) in messages.iter().enumerate() {
                    let wire = compressed(&mut c, message);
                    if *message == batch {
                        assert!(wire.len() < message.len() / 3, "{bits} {i}");
                    }
                    let mut out = Vec::new();
                    let pieces = match i % 3 {
                        0 => usize::MAX,
                        1 => 1 + rng.below(4096),
                        _ => 1 + rng.below(20),
                    };
                    inflate_in_pieces(
                        &mut d,
                        &wire,
                        || if pieces < 4096 { 1 + rng.below(pieces) } else { pieces },
                        message.len(),
                        &mut out,
                    )
                    .unwrap_or_else(|e| panic!("window {bits}, message {i}: {e}"));
                    assert!(out == *message, "window {bits}, message {i}");
                    assert!(!d.in_message());
                }
            }
        }
    }

    #[test]
    fn tiny_messages_in_single_byte_pieces() {
        let mut c = Compressor::new(12, 6, false);
        let mut d = Decompressor::new(12, false);
        for i in 0..50 {
            let message = tick(i);
            let wire = compressed(&mut c, message.as_bytes());
            let mut out = Vec::new();
            inflate_in_pieces(&mut d, &wire, || 1, message.len(), &mut out).unwrap();
            assert_eq!(out, message.as_bytes());
        }
    }

    #[test]
    fn levels_and_pooled_reuse() {
        let batch = json(20_000);
        for level in [0, 1, 2, 3, 6, 9, 42] {
            let mut c = Compressor::new(15, level, false);
            let mut d = Decompressor::new(15, false);
            for _ in 0..3 {
                let wire = compressed(&mut c, &batch);
                assert_eq!(inflated(&mut d, &wire).unwrap(), batch, "level {level}");
            }
            // Lent to another connection: reset both ends' state.
            c.reset();
            let mut other = Decompressor::new(15, false);
            let wire = compressed(&mut c, &batch);
            assert_eq!(inflated(&mut other, &wire).unwrap(), batch);
            // A half-fed message is forgotten by reset().
            d.decompress(&wire[..wire.len() / 2], false, usize::MAX, &mut Vec::new()).unwrap();
            assert!(d.in_message());
            d.reset();
            assert!(!d.in_message());
            let fresh = compressed(&mut Compressor::new(15, level, true), &batch);
            assert_eq!(inflated(&mut d, &fresh).unwrap(), batch);
        }
    }

    #[test]
    fn constructors_follow_the_agreement() {
        let n = Negotiated {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 9,
            client_max_window_bits: 12,
            ..Negotiated::default()
        };
        let c = Compressor::for_server(&n, 1);
        assert_eq!((c.window_bits(), c.no_context_takeover()), (9, true));
        let c = Compressor::for_client(&n, 1);
        assert_eq!((c.window_bits(), c.no_context_takeover()), (12, false));
        let d = Decompressor::for_server(&n);
        assert_eq!((d.window_bits(), d.no_context_takeover()), (12, false));
        let d = Decompressor::for_client(&n);
        assert_eq!((d.window_bits(), d.no_context_takeover()), (9, true));
        assert_eq!(Compressor::new(3, 1, false).window_bits(), 8);
        assert_eq!(Decompressor::new(99, false).window_bits(), 15);
        assert!(format!("{c:?} {d:?}").contains("window_bits"));
    }

    /// Whatever room `out` starts with, the output is the same: in
    /// particular no second flush marker when the flush would fill it exactly.
    #[test]
    fn output_does_not_depend_on_the_room_in_out() {
        let mut rng = Rng(3);
        for len in [1, 100, 1000, 5000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let reference = compressed(&mut Compressor::new(15, 1, false), &payload);
            for room in [0, reference.len(), reference.len() + TAIL.len(), 1 << 20] {
                let mut out = Vec::with_capacity(room);
                Compressor::new(15, 1, false).compress(&payload, &mut out);
                assert_eq!(out, reference, "{len} {room}");
            }
            // Inflating into exactly the room needed.
            let mut text = Vec::with_capacity(len);
            Decompressor::new(15, false).decompress(&reference, true, len, &mut text).unwrap();
            assert_eq!(text, payload);
            assert_eq!(text.capacity(), len);
        }
    }

    #[test]
    fn stored_fallback_decodes_and_keeps_the_stream_in_step() {
        let mut rng = Rng(7);
        let big = mixed(200_000, &mut rng);
        let mut c = Compressor::new(15, 1, false);
        let mut d = Decompressor::new(15, false);
        let first = compressed(&mut c, &big);
        assert_eq!(inflated(&mut d, &first).unwrap(), big);
        // What compress() does if the deflater fails: reset, stored blocks.
        c.reset();
        let mut stored = Vec::new();
        write_stored(&big, &mut stored);
        assert_eq!(stored.len(), big.len() + 4 * 5 + 1);
        assert_eq!(inflated(&mut d, &stored).unwrap(), big);
        let third = compressed(&mut c, &big[..1000]);
        assert_eq!(inflated(&mut d, &third).unwrap(), &big[..1000]);
    }

    // -- Codec: limits and bad input ---------------------------------------

    /// A hand-made raw deflate bomb: one fixed-Huffman block of a zero byte and
    /// `copies` matches of 258 bytes at distance 1, then the start of an empty
    /// stored block (what a sync flush minus its tail leaves).
    fn bomb(copies: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut n) = (0u32, 0u32);
        let mut put = |bits: u32, len: u32, out: &mut Vec<u8>| {
            acc |= bits << n;
            n += len;
            while n >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                n -= 8;
            }
        };
        // Huffman codes go most significant bit first.
        let code = |c: u32, len: u32| (0..len).fold(0, |r, i| r | ((c >> i) & 1) << (len - 1 - i));
        put(0b010, 3, &mut out); // BFINAL 0, BTYPE 01
        put(code(0x30, 8), 8, &mut out); // literal 0x00
        for _ in 0..copies {
            put(code(0xc5, 8), 8, &mut out); // length code 285: 258 bytes
            put(0, 5, &mut out); // distance code 0: 1 byte back
        }
        put(0, 7, &mut out); // end of block
        put(0, 3, &mut out); // BFINAL 0, BTYPE 00
        put(0, 7, &mut out); // pad to a byte
        out
    }

    /// A fixed-Huffman block that starts with a match: nothing to copy from.
    fn bomb_without_literal() -> Vec<u8> {
        let mut wire = bomb(1);
        // Rebuild without the literal: header 010, then length 285, distance 0.
        let bits: u32 = 0b010 | (0b1010_0011 << 3); // 0xc5 reversed is 0xa3
        wire.clear();
        wire.extend_from_slice(&[bits as u8, (bits >> 8) as u8, 0, 0]);
        wire
    }

    #[test]
    fn a_deflate_bomb_is_stopped_at_the_cap() {
        let wire = bomb(65_000); // ~106 KB that inflate to ~16 MiB
        assert!(wire.len() < 110_000);
        let cap = 1 << 20;
        // Whole, in pieces, into a fresh Vec or one with room to spare.
        for (pieces, initial_capacity) in
            [(usize::MAX, 0), (4096, 0), (1000, 8 << 20), (usize::MAX, 2 << 20)]
        {
            let mut d = Decompressor::new(15, false);
            let mut out = Vec::with_capacity(initial_capacity);
            let result = inflate_in_pieces(&mut d, &wire, || pieces, cap, &mut out);
            assert_eq!(result, Err(InflateError::TooBig));
            assert_eq!(result.unwrap_err().close_code(), CloseCode::TOO_BIG);
            assert!(out.len() <= cap, "{}", out.len());
            assert!(out.capacity() <= cap.max(initial_capacity), "{}", out.capacity());
            assert!(out.iter().all(|&b| b == 0));
            // The error reset the state: the next message is fine.
            assert!(!d.in_message());
            assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello");
        }
        // The same bomb under a big enough cap inflates completely.
        let small = bomb(100);
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        d.decompress(&small, true, 1 + 258 * 100, &mut out).unwrap();
        assert_eq!(out.len(), 1 + 258 * 100);
        assert!(out.capacity() <= 1 + 258 * 100);
    }

    #[test]
    fn the_cap_is_exact_and_counts_the_whole_message() {
        let message = json(10_000);
        let wire = compressed(&mut Compressor::new(15, 6, true), &message);
        let mut d = Decompressor::new(15, true);
        for pieces in [usize::MAX, 1, 7, 300] {
            let mut out = Vec::new();
            inflate_in_pieces(&mut d, &wire, || pieces, message.len(), &mut out).unwrap();
            assert_eq!(out, message);
            assert!(out.capacity() <= message.len());
            let mut out = Vec::new();
            let err = inflate_in_pieces(&mut d, &wire, || pieces, message.len() - 1, &mut out);
            assert_eq!(err, Err(InflateError::TooBig), "pieces of {pieces}");
            assert!(out.len() < message.len());
        }
        // Zero allowed: only an empty message passes.
        assert_eq!(d.decompress(&[0x00], true, 0, &mut Vec::new()), Ok(()));
        assert_eq!(d.decompress(&HELLO, true, 0, &mut Vec::new()), Err(InflateError::TooBig));
        // The cap applies per message, not to `out`.
        let mut out = b"previous".to_vec();
        d.decompress(&HELLO, true, 5, &mut out).unwrap();
        assert_eq!(out, b"previousHello");
    }

    #[test]
    fn corrupt_data_is_rejected() {
        let mut rng = Rng(99);
        for (what, wire) in [
            ("reserved block type", vec![0x07]),
            ("all ones", vec![0xff; 20]),
            ("bad stored length", vec![0x00, 0x05, 0x00, 0x00, 0x00, b'H']),
            ("a match before the first byte", bomb_without_literal()),
        ] {
            let mut d = Decompressor::new(15, false);
            let err = inflated(&mut d, &wire);
            assert_eq!(err, Err(InflateError::Corrupt), "{what}");
            assert_eq!(err.unwrap_err().close_code(), CloseCode::INVALID_PAYLOAD);
            assert_eq!(inflated(&mut d, &HELLO).unwrap(), b"Hello", "{what}");
        }
        // A match 1000 bytes back into the previous message: fine for a
        // 15-bit window, beyond a 9-bit one.
        let first = mixed(1000, &mut rng);
        let mut c = Compressor::new(15, 6, false);
        let (one, two) = (compressed(&mut c, &first), compressed(&mut c, &first[..200]));
        let mut wide = Decompressor::new(15, false);
        assert_eq!(inflated(&mut wide, &one).unwrap(), first);
        assert_eq!(inflated(&mut wide, &two).unwrap(), &first[..200]);
        // zlib-rs keeps a 32 KiB inflate window whatever the window bits, so
        // it decodes this too; never wrong data, whichever way.
        let mut narrow = Decompressor::new(9, false);
        assert_eq!(inflated(&mut narrow, &one).unwrap(), first);
        assert!(matches!(inflated(&mut narrow, &two).as_deref(), Ok(b) if b == &first[..200]));
        // Random garbage never panics, errs or not, and respects the cap.
        for _ in 0..500 {
            let len = rng.below(64);
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut d = Decompressor::new(8 + rng.below(8) as u8, rng.below(2) == 0);
            let mut out = Vec::new();
            let _ = inflate_in_pieces(&mut d, &junk, || 1 + rng.below(8), 4096, &mut out);
            assert!(out.len() <= 4096);
        }
        for e in [InflateError::TooBig, InflateError::Corrupt] {
            assert_eq!(e.to_string(), e.reason());
        }
    }

    // -- Interop: streams made by zlib 1.2.13 (Python's zlib module) -------

    /// `zlib.compressobj(6, zlib.DEFLATED, -15)`, each message followed by
    /// `flush(zlib.Z_SYNC_FLUSH)` minus its `00 00 ff ff`: three ticks, with
    /// context takeover.
    const ZLIB_TICKS: [&str; 3] = [
        "248bc10e40300043ffa5e75966866447fc013ec070581064bb20fe5d133db5afed83781d332ca21f1708846b73fbca5c7575d2b70d91f3136c61529dc95c6008cb9f8c549cfb9b6725359b309fb05c99bc108881beccb4368a227d3f00",
        "aa26c92603149b4c613619eaa158648e6191a9412d00",
        "c269916b8807b245c686461087832d02f310f618215b6381618d85452d00",
    ];

    /// The same with `zlib.compressobj(9, zlib.DEFLATED, -9)`: 300 bytes
    /// `(i * 37 + 11) % 251` followed by their first 100, then the 300 again.
    const ZLIB_WINDOW_9: [&str; 2] = [
        "e23608ad9a7fe4a5b0456cd3f2331fa51d52bbd65ff9a9ec913b69fb1d36ed80d259fb9ff01947d42e3afe46cc3aa175d5f92f72ce19bd9bae33aa79174cdd759f532fb862eea1e78266d10d4b4fbd97b44bee587be9bba25bf684adb75834fd8a67ec7dc4631856bde0e82b11cbb8e615673fc938a6756fb8fa4bc5336ff28ebbec3a8165b30f3ce53789ac5b7ce2adb84d62dbea0b5fe55d32fb36df6052f7299cb6fb01977e48e5bcc32f84cc631a979dfe20659fd2b9eef20f25f79c89db6eb36af997ccdcf798d728bc66e1b1d7a256f12d2bcf7d96754aefd9788d41d52b7fcace7b1cba41e5730e3e13308daa5f72f29d846d52fb9a8bdf145cb3fab7dc64d6f02d9abee721b74168d5fc232f852d629b969ff928ed90dab5feca4f658fdc49dbefb0690794cedaff84cf38a276d1f13762d609adabce7f912359837346efa6eb8c6ade055377dde7d40bae987be8b9a05974c3d253ef25ed923bd65efaaee8963d61eb2d164dbfe2197b1ff11886552f0000",
        "a2871d475f8958c635af38fb49c631ad7bc3d55f2a9e799377dc65d7092c9b7de029bf4964dde2136fc56d12db565ff82aef92d9b7f90693ba4fe1b4dd0fb8f4432ae71d7e21641ed3b8ecf40729fb94ce75977f28b9e74cdc769b55cbbf64e6bec7bc46e1350b8fbd16b58a6f5979eeb3ac537acfc66b0caa5ef95376dee3d00d2a9f73f099806954fd9293ef246c93dad75cfca6e09ad5bfe526b3866fd1f43d0fb90d42abe61f79296c11dbb4fccc476987d4aef5577e2a7be44eda7e874d3ba074d6fe277cc611b58b8ebf11b34e685d75fe8b1c00",
    ];

    #[test]
    fn inflates_streams_made_by_zlib() {
        let ticks = [
            r#"{"type":"tick","symbol":"BTC-USD","bid":64123.5,"ask":64124.0,"size":0.25,"seq":123456,"ts":1732240000123}"#,
            r#"{"type":"tick","symbol":"BTC-USD","bid":64123.0,"ask":64124.5,"size":1.5,"seq":123457,"ts":1732240000150}"#,
            r#"{"type":"tick","symbol":"ETH-USD","bid":3120.25,"ask":3120.5,"size":12,"seq":123458,"ts":1732240000188}"#,
        ];
        for pieces in [usize::MAX, 1, 5] {
            let mut d = Decompressor::new(15, false);
            for (wire, text) in ZLIB_TICKS.iter().zip(ticks) {
                let mut out = Vec::new();
                inflate_in_pieces(&mut d, &hex(wire), || pieces, 1 << 10, &mut out).unwrap();
                assert_eq!(out, text.as_bytes());
            }
        }
        let block: Vec<u8> = (0..300u32).map(|i| ((i * 37 + 11) % 251) as u8).collect();
        let mut first = block.clone();
        first.extend_from_slice(&block[..100]);
        for bits in [8, 9] {
            let mut d = Decompressor::new(bits, false);
            assert_eq!(inflated(&mut d, &hex(ZLIB_WINDOW_9[0])).unwrap(), first);
            assert_eq!(inflated(&mut d, &hex(ZLIB_WINDOW_9[1])).unwrap(), block);
        }
    }
}
