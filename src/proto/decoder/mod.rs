//! The streaming frame decoder: enforces every RFC 6455 framing rule.
//!
//! The caller owns the bytes. [`Decoder::decode`] looks at the start of a
//! buffer, unmasks payload in place and returns what it found together with
//! how many bytes it consumed. A data frame does not have to be complete to
//! make progress: its payload is handed out in pieces as it arrives, so the
//! caller never buffers more than one control frame of raw input.

use super::close::parse_close_payload;
use super::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, parse_header};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{CloseCode, OpCode, ProtoError};

/// Which side of the connection this decoder is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Decodes client frames: they must be masked.
    #[default]
    Server,
    /// Decodes server frames: they must not be masked.
    Client,
}

/// The hard ceiling on a message's size (4 GiB - 1), which keeps the
/// decoder's lengths in 32 bits and its state small.
pub const MAX_MESSAGE_SIZE: usize = u32::MAX as usize;

/// Limits and negotiated options for a [`Decoder`].
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    /// Which side we are.
    pub role: Role,
    /// The largest message (sum of its frames' payloads) accepted; at most
    /// [`MAX_MESSAGE_SIZE`] whatever this says.
    pub max_message_size: usize,
    /// RSV1 marks compressed messages (permessage-deflate was negotiated).
    pub allow_rsv1: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig { role: Role::Server, max_message_size: 16 << 20, allow_rsv1: false }
    }
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message that arrived as one frame in this buffer (validated).
    Text(&'a str),
    /// A whole binary message that arrived as one frame in this buffer.
    Binary(&'a [u8]),
    /// A piece of a message that spans frames or reads; append it to the
    /// message being assembled. Text pieces are validated incrementally
    /// (unless compressed) so invalid UTF-8 fails on the first bad byte.
    Fragment {
        /// The unmasked bytes.
        data: &'a [u8],
        /// The first piece of a message.
        first: bool,
        /// The last piece of the message.
        fin: bool,
        /// The message is text.
        text: bool,
        /// The message is compressed (RSV1 on its first frame).
        compressed: bool,
    },
    /// A ping with its payload.
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A close frame, validated.
    Close(CloseCode, &'a str),
}

/// The result of a call to [`Decoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Nothing can be done until more bytes arrive; nothing was consumed.
    NeedMore,
    /// `consumed` bytes were used up; `event` is what they produced, if anything
    /// (a data frame header on its own produces none).
    Progress {
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
        /// What the bytes produced.
        event: Option<Event<'a>>,
    },
}

/// [`Decoder::flags`]: a message was started on the streaming path and its
/// last piece has not been handed out yet.
const IN_MESSAGE: u8 = 1 << 0;
/// [`Decoder::flags`]: the next piece handed out is the first of its message.
const FIRST: u8 = 1 << 1;
/// [`Decoder::flags`]: the current frame has FIN set.
const FIN: u8 = 1 << 2;
/// [`Decoder::flags`]: the open message is text.
const TEXT: u8 = 1 << 3;
/// [`Decoder::flags`]: the open message is compressed (RSV1 on its first frame).
const COMPRESSED: u8 = 1 << 4;

/// Per-connection framing state. Small and heap-free.
///
/// Between frames it remembers only whether a fragmented message is open (and
/// how big it is so far); inside a data frame, how much payload is left and
/// where the mask key stands.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// Payload bytes of the current data frame not handed out yet; non-zero
    /// exactly when the decoder is inside a frame.
    remaining: u32,
    /// Declared payload bytes of the open message, current frame included.
    message_len: u32,
    /// The current frame's mask key (all zero when unmasked: a no-op).
    key: [u8; 4],
    /// Validates the open text message across frames.
    utf8: Utf8Validator,
    /// Payload bytes of the current frame handed out so far, modulo 4.
    mask_offset: u8,
    /// `IN_MESSAGE`, `FIRST`, `FIN`, `TEXT`, `COMPRESSED`.
    flags: u8,
}

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Decodes from the start of `buf`, unmasking payload in place.
    ///
    /// Call it in a loop, dropping `consumed` bytes from the front of the
    /// buffer after each [`Decoded::Progress`], until it returns
    /// [`Decoded::NeedMore`]; then keep the unconsumed bytes (less than a
    /// header plus a control payload, 139 bytes) and read more.
    ///
    /// - A data frame that is whole in `buf`, not compressed and not part of a
    ///   fragmented message comes out as [`Event::Text`] or [`Event::Binary`],
    ///   borrowed from `buf` (zero-copy).
    /// - Any other data frame streams: its header is consumed at once and its
    ///   payload is handed out as [`Event::Fragment`]s as it arrives.
    /// - A control frame is handled once it is whole in `buf`; it may come
    ///   between the fragments of a message.
    ///
    /// Every framing rule is checked on the header, before the payload is
    /// waited for; a [`ProtoError`] means the connection must be failed, and
    /// the decoder must not be used again.
    ///
    /// ```
    /// use wsreactor::proto::frame::{encode_header, OpCode};
    /// use wsreactor::proto::mask::apply_mask;
    /// use wsreactor::proto::{Decoded, Decoder, DecoderConfig, Event};
    ///
    /// // A client's masked text frame.
    /// let (key, text) = ([1, 2, 3, 4], b"hello");
    /// let mut header = [0u8; 14];
    /// let n = encode_header(&mut header, true, false, OpCode::Text, 5, Some(key));
    /// let mut buf = header[..n].to_vec();
    /// buf.extend_from_slice(text);
    /// apply_mask(&mut buf[n..], key, 0);
    ///
    /// let cfg = DecoderConfig::default();
    /// let mut dec = Decoder::new();
    /// // Part of it: the header is taken and the payload starts streaming.
    /// let Decoded::Progress { consumed, event } = dec.decode(&mut buf[..8], &cfg)? else {
    ///     unreachable!()
    /// };
    /// assert_eq!(consumed, 8);
    /// assert!(matches!(event, Some(Event::Fragment { data: b"he", first: true, fin: false, .. })));
    /// let rest = &mut buf[8..];
    /// assert!(matches!(
    ///     dec.decode(rest, &cfg)?,
    ///     Decoded::Progress { consumed: 3, event: Some(Event::Fragment { data: b"llo", fin: true, .. }) }
    /// ));
    /// assert_eq!(dec.decode(&mut [], &cfg)?, Decoded::NeedMore);
    ///
    /// // The whole frame at once: one zero-copy event.
    /// let mut buf = header[..n].to_vec();
    /// buf.extend_from_slice(text);
    /// apply_mask(&mut buf[n..], key, 0);
    /// assert_eq!(
    ///     dec.decode(&mut buf, &cfg)?,
    ///     Decoded::Progress { consumed: 11, event: Some(Event::Text("hello")) }
    /// );
    /// # Ok::<(), wsreactor::proto::ProtoError>(())
    /// ```
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
        cfg: &DecoderConfig,
    ) -> Result<Decoded<'a>, ProtoError> {
        if self.remaining > 0 {
            return self.payload(buf, 0);
        }
        let Some(h) = parse_header(buf)? else { return Ok(Decoded::NeedMore) };
        let message_len = self.check(&h, cfg)?;
        let start = h.header_len;
        // `parse_header` saw the whole header, so `start <= buf.len()`.
        let whole = h.payload_len <= (buf.len() - start) as u64;
        if h.opcode.is_control() {
            return if whole { control(buf, &h) } else { Ok(Decoded::NeedMore) };
        }
        if whole && h.fin && !h.rsv1 && self.flags & IN_MESSAGE == 0 {
            // The fast path: a whole single-frame message, unmasked in place.
            let end = start + h.payload_len as usize;
            let payload = &mut buf[start..end];
            if let Some(key) = h.mask {
                apply_mask(payload, key, 0);
            }
            let payload = &*payload;
            let event = if h.opcode == OpCode::Text {
                Event::Text(std::str::from_utf8(payload).map_err(|_| ProtoError::InvalidUtf8)?)
            } else {
                Event::Binary(payload)
            };
            return Ok(Decoded::Progress { consumed: end, event: Some(event) });
        }
        self.start_frame(&h, message_len);
        self.payload(buf, start)
    }

    /// Whether a fragmented message is open (some of it was delivered).
    ///
    /// True from a message's first [`Event::Fragment`] until its last one has
    /// been handed out, exactly while the caller is assembling a message; never
    /// true for a message that came out as a single [`Event::Text`] or
    /// [`Event::Binary`].
    pub fn in_message(&self) -> bool {
        self.flags & (IN_MESSAGE | FIRST) == IN_MESSAGE
    }

    /// Whether the next input byte starts a frame header: no frame's payload
    /// is still being handed out.
    pub fn at_frame_start(&self) -> bool {
        self.remaining == 0
    }

    /// Payload bytes of the open fragmented message so far (0 when none is
    /// open). With the next frame's length this bounds the message's size
    /// before it arrives, e.g. for flow control.
    pub fn message_len(&self) -> u64 {
        if self.flags & IN_MESSAGE != 0 { u64::from(self.message_len) } else { 0 }
    }

    /// The UTF-8 validator, for the caller to check a compressed text
    /// message as it is inflated: the decoder checks only uncompressed text,
    /// so it leaves this one alone while the open message is compressed.
    pub(super) fn inflated_text(&mut self) -> &mut Utf8Validator {
        &mut self.utf8
    }

    /// Checks a header against the framing rules, in the documented order.
    /// For a data frame, returns the declared size of its message so far.
    fn check(&self, h: &FrameHeader, cfg: &DecoderConfig) -> Result<u32, ProtoError> {
        if h.mask.is_some() != (cfg.role == Role::Server) {
            return Err(ProtoError::BadMask);
        }
        let control = h.opcode.is_control();
        if h.rsv23 || h.rsv1 && (!cfg.allow_rsv1 || control || h.opcode == OpCode::Continuation) {
            return Err(ProtoError::ReservedBits);
        }
        if control {
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtoError::ControlTooLong);
            }
            if !h.fin {
                return Err(ProtoError::ControlFragmented);
            }
            return Ok(0);
        }
        // At a frame boundary a message is open exactly when some of it was delivered.
        let so_far = match (h.opcode == OpCode::Continuation, self.flags & IN_MESSAGE != 0) {
            (true, false) => return Err(ProtoError::UnexpectedContinuation),
            (false, true) => return Err(ProtoError::ExpectedContinuation),
            (true, true) => self.message_len,
            (false, false) => 0,
        };
        let total = u64::from(so_far).saturating_add(h.payload_len);
        let mut limit = cfg.max_message_size.min(MAX_MESSAGE_SIZE) as u64;
        let compressed = match h.opcode {
            OpCode::Continuation => self.flags & COMPRESSED != 0,
            _ => h.rsv1,
        };
        if compressed {
            // The limit is on the inflated message (the inflater enforces it
            // exactly); on the wire, allow what deflate adds to data that does
            // not compress: 5 bytes per 64 KiB stored block, and a little more.
            limit = (limit + limit / 8192 + 64).min(MAX_MESSAGE_SIZE as u64);
        }
        if total > limit {
            return Err(ProtoError::MessageTooBig);
        }
        // At most MAX_MESSAGE_SIZE, so it fits.
        Ok(total as u32)
    }

    /// Enters a data frame whose header passed [`Decoder::check`].
    fn start_frame(&mut self, h: &FrameHeader, message_len: u32) {
        // Checked: payload_len <= message_len <= MAX_MESSAGE_SIZE.
        self.remaining = h.payload_len as u32;
        self.message_len = message_len;
        self.key = h.mask.unwrap_or_default();
        self.mask_offset = 0;
        if h.opcode != OpCode::Continuation {
            self.utf8 = Utf8Validator::new();
            self.flags = IN_MESSAGE | FIRST;
            if h.opcode == OpCode::Text {
                self.flags |= TEXT;
            }
            if h.rsv1 {
                self.flags |= COMPRESSED;
            }
        }
        if h.fin {
            self.flags |= FIN;
        } else {
            self.flags &= !FIN;
        }
    }

    /// Hands out the current frame's payload present in `buf[start..]`;
    /// `start` bytes (a header) were already used up.
    fn payload<'a>(&mut self, buf: &'a mut [u8], start: usize) -> Result<Decoded<'a>, ProtoError> {
        let available = &mut buf[start..];
        // At most `available.len()`, so the cast is lossless.
        let n = (self.remaining as usize).min(available.len());
        if n == 0 && self.remaining > 0 {
            return Ok(match start {
                0 => Decoded::NeedMore,
                consumed => Decoded::Progress { consumed, event: None },
            });
        }
        let data = &mut available[..n];
        if self.key != [0; 4] {
            apply_mask(data, self.key, usize::from(self.mask_offset));
            self.mask_offset = ((usize::from(self.mask_offset) + n) % 4) as u8;
        }
        self.remaining -= n as u32;
        let flags = self.flags;
        let fin = self.remaining == 0 && flags & FIN != 0;
        let (text, compressed) = (flags & TEXT != 0, flags & COMPRESSED != 0);
        if text && !compressed {
            let valid =
                self.utf8.feed(data).and_then(|()| if fin { self.utf8.finish() } else { Ok(()) });
            valid.map_err(|_| ProtoError::InvalidUtf8)?;
        }
        self.flags = if fin { 0 } else { flags & !FIRST };
        let event = Event::Fragment { data, first: flags & FIRST != 0, fin, text, compressed };
        Ok(Decoded::Progress { consumed: start + n, event: Some(event) })
    }
}

/// Handles a control frame that passed [`Decoder::check`] and is whole in `buf`.
fn control<'a>(buf: &'a mut [u8], h: &FrameHeader) -> Result<Decoded<'a>, ProtoError> {
    let end = h.header_len + h.payload_len as usize;
    let payload = &mut buf[h.header_len..end];
    if let Some(key) = h.mask {
        apply_mask(payload, key, 0);
    }
    let payload = &*payload;
    let event = match h.opcode {
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        _ => {
            let (code, reason) = parse_close_payload(payload)?;
            Event::Close(code, reason)
        }
    };
    Ok(Decoded::Progress { consumed: end, event: Some(event) })
}

#[cfg(test)]
mod tests;
