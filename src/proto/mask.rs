//! Payload masking (RFC 6455 §5.3), a machine word at a time.

/// XORs `buf` in place with `key`, where `buf` begins `offset` bytes into the
/// masked payload (so a payload can be unmasked in pieces as it arrives).
///
/// Masking and unmasking are the same operation. The bulk is done eight bytes
/// at a time (which the compiler turns into vector instructions); only a tail
/// of fewer than eight bytes goes byte by byte.
///
/// ```
/// use wsreactor::proto::mask::apply_mask;
///
/// let key = [0x37, 0xFA, 0x21, 0x3D];
/// let mut payload = *b"Hello";
/// apply_mask(&mut payload, key, 0);
/// assert_eq!(payload, [0x7F, 0x9F, 0x4D, 0x51, 0x58]); // RFC 6455 §5.7
///
/// // Unmask the same bytes in two pieces: the second starts at offset 3.
/// let (head, tail) = payload.split_at_mut(3);
/// apply_mask(head, key, 0);
/// apply_mask(tail, key, 3);
/// assert_eq!(&payload, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // `key` rotated so that its byte 0 applies to `buf[0]`.
    let key = u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32).to_le_bytes();
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // Every chunk starts at a multiple of 8, so `word` lines up with it.
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    /// A xorshift64 generator: deterministic "random" test input, no dependency.
    /// Shared by the other proto tests. The seed must not be zero.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        /// The next pseudo-random number.
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check(data: &[u8], key: [u8; 4], offset: usize) {
        let mut ours = data.to_vec();
        let mut theirs = data.to_vec();
        apply_mask(&mut ours, key, offset);
        naive(&mut theirs, key, offset);
        assert_eq!(ours, theirs, "len {} offset {offset}", data.len());
    }

    #[test]
    fn matches_the_byte_loop_for_small_lengths_and_offsets() {
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..100 {
            for offset in 0..8 {
                // Also at each start alignment inside the allocation.
                for start in 0..8.min(100 - len + 1) {
                    check(&data[start..start + len], key, offset);
                }
            }
        }
    }

    #[test]
    fn matches_the_byte_loop_on_random_input() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let len = (rng.next() % 5000) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let key = (rng.next() as u32).to_ne_bytes();
            let offset = rng.next() as usize;
            check(&data, key, offset);
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let mut rng = Rng(42);
        let key = [0xDE, 0xAD, 0xBE, 0xEF];
        let data: Vec<u8> = (0..3000).map(|_| rng.next() as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut at = 0;
        while at < pieces.len() {
            let n = ((rng.next() % 70) as usize).min(pieces.len() - at);
            apply_mask(&mut pieces[at..at + n], key, at);
            at += n;
        }
        assert_eq!(pieces, whole);
        // Masking twice restores the input.
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, data);
    }
}
