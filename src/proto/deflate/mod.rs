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

// One file per job: `grammar` reads `Sec-WebSocket-Extensions`, `negotiation`
// agrees on the parameters (both sides), `compress` and `inflate` are the codec.
mod compress;
mod grammar;
mod inflate;
mod negotiation;

pub use compress::Compressor;
pub use inflate::{Decompressor, InflateError};
pub use negotiation::{
    ClientOffer, Negotiated, NegotiationError, client_offer, negotiate, parse_client_response,
};

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

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

// ---------------------------------------------------------------------------
// Configuration.

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

/// Configurations, messages and helpers shared by the tests of the submodules.
#[cfg(test)]
mod fixtures {
    use super::{Compressor, Decompressor, DeflateConfig, InflateError, Mode, negotiate};
    use crate::testing::Rng;

    pub(super) fn cfg(mode: Mode) -> DeflateConfig {
        DeflateConfig { mode, ..DeflateConfig::default() }
    }

    /// The server's answer to `headers`: `Ok(None)` declined, `Err(())` malformed.
    pub(super) fn answer(headers: &[&str], cfg: &DeflateConfig) -> Result<Option<String>, ()> {
        negotiate(headers.iter().map(|h| h.as_bytes()), cfg)
            .map(|n| n.map(|n| n.response_header()))
            .map_err(|_| ())
    }

    pub(super) fn tick(i: u64) -> String {
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
    pub(super) fn json(len: usize) -> Vec<u8> {
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
    pub(super) fn mixed(len: usize, rng: &mut Rng) -> Vec<u8> {
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
    pub(super) fn inflate_in_pieces(
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

    pub(super) fn compressed(c: &mut Compressor, payload: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        c.compress(payload, &mut wire);
        wire
    }

    pub(super) fn inflated(d: &mut Decompressor, wire: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        d.decompress(wire, true, usize::MAX, &mut out).map(|()| out)
    }

    pub(super) const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
}

/// The configuration, and the codec's two halves together.
#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn config_helpers() {
        let on = DeflateConfig { mode: Mode::Dedicated, min_size: 64, ..DeflateConfig::default() };
        assert!(!on.compresses(63));
        assert!(on.compresses(64));
        assert!(!cfg(Mode::Disabled).compresses(1 << 20));
        assert_eq!(Negotiated::default().response_header(), "permessage-deflate");
    }

    // -- Codec: RFC 7692 §7.2.3 examples -----------------------------------
    // (§7.2.3.3 to §7.2.3.5 exercise only the inflater: see inflate.rs.)

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
}
