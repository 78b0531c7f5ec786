//! Inflating received compressed messages (RFC 7692 §7.2.2), fed in pieces,
//! with the inflated size capped. Window bits 8 and the memory a
//! [`Decompressor`] holds are explained in the docs of the parent module
//! (`mod.rs`).

use std::fmt;

use flate2::{Decompress, FlushDecompress, Status};

use super::{Negotiated, TAIL, ZLIB_MIN_WINDOW_BITS, clamp_bits};
use crate::proto::CloseCode;

/// Bytes inflated through a stack buffer when `out` has more spare capacity
/// than the cap allows to use.
const SCRATCH_LEN: usize = 1024;

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
    use crate::proto::deflate::Compressor;
    use crate::proto::deflate::fixtures::*;
    use crate::testing::Rng;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test fixture is hex"))
            .collect()
    }

    // -- Codec: RFC 7692 §7.2.3 examples -----------------------------------

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
