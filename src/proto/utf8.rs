//! Incremental UTF-8 validation that fails on the first invalid byte, even
//! when a code point is split across frames or reads (RFC 6455 §8.1).

/// Validates UTF-8 fed in arbitrary pieces. Four bytes of state.
///
/// Each piece is checked with [`std::str::from_utf8`] (which is fast on ASCII
/// and long runs); only a code point split between two pieces is finished
/// byte by byte. A piece fails as soon as one of its bytes cannot continue a
/// valid sequence, so a text message is rejected at the first bad byte rather
/// than at its end.
///
/// ```
/// use wsreactor::proto::utf8::Utf8Validator;
///
/// let euro = "€".as_bytes(); // E2 82 AC
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"price: ").is_ok());
/// assert!(v.feed(&euro[..1]).is_ok()); // a split code point is kept pending
/// assert!(v.feed(&euro[1..]).is_ok());
/// assert!(v.finish().is_ok());
///
/// // An encoded surrogate fails on its second byte, across pieces too.
/// assert!(v.feed(&[0xED]).is_ok());
/// assert!(v.feed(&[0xA0]).is_err());
///
/// // A message may not end inside a code point.
/// assert!(v.feed(&euro[..2]).is_ok());
/// assert!(v.finish().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    pending: [u8; 3],
    pending_len: u8,
}

/// The input is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// The length of the sequence that `lead` starts. `lead` is a byte that
/// `std::str::from_utf8` accepted as the start of an incomplete sequence, so
/// it is in `C2..=F4`.
fn sequence_len(lead: u8) -> usize {
    match lead {
        ..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Whether `b` may stand at index `pos` (1..=3) of a sequence led by `lead`.
/// The second byte's range excludes overlong forms, surrogates and code
/// points above U+10FFFF (RFC 3629 §4).
fn continues(lead: u8, pos: u8, b: u8) -> bool {
    let range = match (pos, lead) {
        (1, 0xE0) => 0xA0..=0xBF,
        (1, 0xED) => 0x80..=0x9F,
        (1, 0xF0) => 0x90..=0xBF,
        (1, 0xF4) => 0x80..=0x8F,
        _ => 0x80..=0xBF,
    };
    range.contains(&b)
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator { pending: [0; 3], pending_len: 0 }
    }

    /// Feeds the next piece. Errors as soon as a byte cannot continue a valid sequence.
    ///
    /// After an error the validator is reset, ready for a new message.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let rest = match self.finish_pending(bytes) {
            Ok(rest) => rest,
            Err(e) => {
                *self = Self::new();
                return Err(e);
            }
        };
        let Err(e) = std::str::from_utf8(rest) else { return Ok(()) };
        let tail = &rest[e.valid_up_to()..];
        match (e.error_len(), self.pending.get_mut(..tail.len())) {
            // The piece ends inside a code point that is valid so far (at most
            // three bytes): keep it for the next piece.
            (None, Some(pending)) => {
                pending.copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            _ => {
                *self = Self::new();
                Err(Utf8Error)
            }
        }
    }

    /// Ends the message: errors if a code point was left incomplete. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        *self = Self::new();
        if complete { Ok(()) } else { Err(Utf8Error) }
    }

    /// Completes a code point left pending by the previous piece with the
    /// first bytes of `bytes`, returning the bytes after it (empty if the code
    /// point is still incomplete).
    fn finish_pending<'b>(&mut self, mut bytes: &'b [u8]) -> Result<&'b [u8], Utf8Error> {
        if self.pending_len == 0 {
            return Ok(bytes);
        }
        let lead = self.pending[0];
        while let [b, rest @ ..] = bytes {
            if !continues(lead, self.pending_len, *b) {
                return Err(Utf8Error);
            }
            let len = usize::from(self.pending_len) + 1;
            if len == sequence_len(lead) {
                self.pending_len = 0;
                return Ok(rest);
            }
            // `len` < 4 here, so it indexes `pending`.
            if let Some(slot) = self.pending.get_mut(len - 1) {
                *slot = *b;
            }
            self.pending_len = len as u8;
            bytes = rest;
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mask::tests::Rng;

    const VALID: [&str; 10] = [
        "",
        "plain ASCII, nothing to see",
        "héllo wörld",
        "κόσμε",
        "日本語のテキスト",
        "music: 𝄞, emoji: 😀👍🏽",
        "\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFD}\u{FFFE}\u{FFFF}\u{10000}\u{10FFFF}",
        "a€b€c€d",
        "Ünïcödé mixed with ascii and 中文 and ελληνικά and עברית",
        "\0\x7F\u{C0}\u{1F600}",
    ];

    /// Invalid inputs and the index of their first bad byte (Autobahn 6.x style).
    const INVALID: [(&[u8], usize); 35] = [
        // Lone continuation bytes.
        (b"\x80", 0),
        (b"\xBF", 0),
        (b"\x80\xBF\x80", 0),
        (b"ab\xBFcd", 2),
        // Bytes that never appear in UTF-8.
        (b"\xC0", 0),
        (b"\xC1", 0),
        (b"\xF5", 0),
        (b"\xF8\x88\x80\x80\x80", 0),
        (b"\xFC\x84\x80\x80\x80\x80", 0),
        (b"\xFE", 0),
        (b"\xFF", 0),
        // Overlong forms.
        (b"\xC0\x80", 0),
        (b"\xC1\xBF", 0),
        (b"\xE0\x80\xAF", 1),
        (b"\xE0\x9F\xBF", 1),
        (b"\xF0\x80\x80\xAF", 1),
        (b"\xF0\x8F\xBF\xBF", 1),
        // Surrogates (U+D800..U+DFFF), alone and paired.
        (b"\xED\xA0\x80", 1),
        (b"\xED\xAD\xBF", 1),
        (b"\xED\xBF\xBF", 1),
        (b"\xED\xA0\x80\xED\xB0\x80", 1),
        // Above U+10FFFF.
        (b"\xF4\x90\x80\x80", 1),
        (b"\xF4\xBF\xBF\xBF", 1),
        // Truncated sequences followed by something else.
        (b"\xC2A", 1),
        (b"\xE1\x80A", 2),
        (b"\xF1\x80\x80A", 3),
        (b"\xC2\xC2\x80", 1),
        (b"\xE1\xE1\x80\x80", 1),
        (b"\xF1\x80\xF1\x80\x80\x80", 2),
        // Too many continuation bytes.
        (b"\xC2\x80\x80", 2),
        (b"\xE2\x82\xAC\xAC", 3),
        // In context: Autobahn 6.4.x-like, valid text then a bad byte.
        (b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90\x80\x80edited", 12),
        (b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited", 12),
        (b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\x80edited", 11),
        (b"hello\xC0\xAFworld", 5),
    ];

    /// Valid code point prefixes cut off by the end of the message.
    const TRUNCATED: [&[u8]; 8] = [
        b"\xC2",
        b"\xDF",
        b"\xE0\xA0",
        b"\xED\x9F",
        b"\xEF\xBF",
        b"\xF0\x90\x80",
        b"\xF4\x8F\xBF",
        b"valid so far \xF3",
    ];

    /// Feeds `bytes` split at `cuts` (ascending); returns the index of the piece that failed.
    fn feed_pieces(v: &mut Utf8Validator, bytes: &[u8], cuts: &[usize]) -> Option<usize> {
        let mut start = 0;
        for (i, &end) in cuts.iter().chain([bytes.len()].iter()).enumerate() {
            if v.feed(&bytes[start..end]).is_err() {
                return Some(i);
            }
            start = end;
        }
        None
    }

    #[test]
    fn valid_text_at_every_split() {
        for s in VALID {
            let b = s.as_bytes();
            for i in 0..=b.len() {
                let mut v = Utf8Validator::new();
                assert_eq!(feed_pieces(&mut v, b, &[i]), None, "{s:?} split at {i}");
                assert_eq!(v.finish(), Ok(()), "{s:?} split at {i}");
                for j in i..=b.len() {
                    let mut v = Utf8Validator::new();
                    assert_eq!(feed_pieces(&mut v, b, &[i, j]), None, "{s:?} at {i},{j}");
                    assert_eq!(v.finish(), Ok(()));
                }
            }
            // One byte at a time, with empty pieces in between.
            let mut v = Utf8Validator::new();
            for byte in b {
                assert_eq!(v.feed(&[]), Ok(()));
                assert_eq!(v.feed(&[*byte]), Ok(()), "{s:?}");
            }
            assert_eq!(v.finish(), Ok(()));
        }
    }

    #[test]
    fn invalid_fails_at_the_first_bad_byte_whole() {
        for (bytes, bad) in INVALID {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&bytes[..bad]), Ok(()), "{bytes:x?}: prefix before {bad}");
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&bytes[..=bad]), Err(Utf8Error), "{bytes:x?}: up to {bad}");
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(bytes), Err(Utf8Error), "{bytes:x?}: whole");
        }
    }

    #[test]
    fn invalid_fails_at_the_first_bad_byte_one_at_a_time() {
        for (bytes, bad) in INVALID {
            let mut v = Utf8Validator::new();
            let failed_at = bytes.iter().position(|b| v.feed(&[*b]).is_err());
            assert_eq!(failed_at, Some(bad), "{bytes:x?}");
        }
    }

    #[test]
    fn invalid_fails_in_the_piece_holding_the_bad_byte_at_every_split() {
        for (bytes, bad) in INVALID {
            for cut in 0..=bytes.len() {
                let mut v = Utf8Validator::new();
                let expect = if cut > bad { 0 } else { 1 };
                assert_eq!(feed_pieces(&mut v, bytes, &[cut]), Some(expect), "{bytes:x?} {cut}");
            }
        }
    }

    #[test]
    fn truncated_fails_at_finish_and_resets() {
        for bytes in TRUNCATED {
            let mut whole = Utf8Validator::new();
            assert_eq!(whole.feed(bytes), Ok(()));
            assert_eq!(whole.finish(), Err(Utf8Error), "{bytes:x?}");
            let mut v = Utf8Validator::new();
            for b in bytes {
                assert_eq!(v.feed(&[*b]), Ok(()));
            }
            assert_eq!(v.finish(), Err(Utf8Error), "{bytes:x?}");
            // Reset: the next message starts clean.
            assert_eq!(v, Utf8Validator::new());
            assert_eq!(v.feed("ok €".as_bytes()), Ok(()));
            assert_eq!(v.finish(), Ok(()));
        }
    }

    #[test]
    fn error_resets_the_state() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xE2\x82"), Ok(()));
        assert_eq!(v.feed(b"A"), Err(Utf8Error));
        assert_eq!(v, Utf8Validator::new());
    }

    /// The reference: the first index whose prefix std calls definitely invalid.
    fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len())
            .find(|&i| std::str::from_utf8(&bytes[..=i]).is_err_and(|e| e.error_len().is_some()))
    }

    #[test]
    fn agrees_with_std_on_random_sequences() {
        // Bytes at the edges of every UTF-8 range, so that random strings hit them.
        const ALPHABET: [u8; 24] = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
            0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5, 0xFF,
        ];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let len = (rng.next() % 9) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|_| ALPHABET[rng.next() as usize % ALPHABET.len()]).collect();
            let bad = first_bad_byte(&bytes);
            let mut v = Utf8Validator::new();
            assert_eq!(bytes.iter().position(|b| v.feed(&[*b]).is_err()), bad, "{bytes:x?}");
            let mut v = Utf8Validator::new();
            let whole = v.feed(&bytes).and_then(|()| v.finish());
            assert_eq!(whole.is_ok(), std::str::from_utf8(&bytes).is_ok(), "{bytes:x?}");
        }
    }

    #[test]
    fn agrees_with_std_on_every_two_byte_sequence() {
        for b0 in 0..=0xFFu8 {
            for b1 in 0..=0xFFu8 {
                let bytes = [b0, b1];
                let mut v = Utf8Validator::new();
                let failed_at = bytes.iter().position(|b| v.feed(&[*b]).is_err());
                assert_eq!(failed_at, first_bad_byte(&bytes), "{bytes:x?}");
            }
        }
    }

    #[test]
    fn four_bytes_of_state() {
        assert_eq!(std::mem::size_of::<Utf8Validator>(), 4);
    }
}
