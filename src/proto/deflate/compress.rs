//! Compressing message payloads (RFC 7692 §7.2.1). Window bits 8 and the
//! memory a [`Compressor`] holds are explained in the docs of the parent
//! module (`mod.rs`).

use std::fmt;

use flate2::{Compress, Compression, FlushCompress};

use super::{Negotiated, TAIL, ZLIB_MIN_WINDOW_BITS, clamp_bits};

/// The most bytes one stored deflate block carries.
const STORED_BLOCK_MAX: usize = 0xffff;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::deflate::Decompressor;
    use crate::proto::deflate::fixtures::*;
    use crate::testing::Rng;

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
}
