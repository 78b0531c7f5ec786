//! Incremental UTF-8 validation that fails on the first invalid byte, even
//! when a code point is split across frames or reads (RFC 6455 §8.1).

/// Validates UTF-8 fed in arbitrary pieces. Four bytes of state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    pending: [u8; 3],
    pending_len: u8,
}

/// The input is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator { pending: [0; 3], pending_len: 0 }
    }

    /// Feeds the next piece. Errors as soon as a byte cannot continue a valid sequence.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let _ = bytes;
        todo!()
    }

    /// Ends the message: errors if a code point was left incomplete. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        todo!()
    }
}
