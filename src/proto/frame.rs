//! Frame headers (RFC 6455 §5.2): parse from and encode into byte slices.

use super::ProtoError;

/// The longest frame header: 2 bytes + 8-byte length + 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest control frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode defined by RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// A UTF-8 text message (or its first fragment).
    Text = 0x1,
    /// A binary message (or its first fragment).
    Binary = 0x2,
    /// Close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for a reserved one.
    ///
    /// Only the low four bits are meaningful; callers pass `byte & 0x0F`.
    #[inline]
    pub fn from_u8(v: u8) -> Option<OpCode> {
        match v {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    #[inline]
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit.
    pub fin: bool,
    /// RSV1 (permessage-deflate's "compressed" bit).
    pub rsv1: bool,
    /// RSV2 or RSV3 set (no extension here defines them).
    pub rsv23: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the mask bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
    /// How many bytes the header itself took (2..=14).
    pub header_len: usize,
}

/// The FIN bit in the first header byte.
const FIN: u8 = 0x80;
/// RSV1 in the first header byte.
const RSV1: u8 = 0x40;
/// RSV2 and RSV3 in the first header byte.
const RSV23: u8 = 0x30;
/// The MASK bit in the second header byte.
const MASK: u8 = 0x80;
/// The 7-bit length value announcing a 16-bit extended length.
const LEN_16: u8 = 126;
/// The 7-bit length value announcing a 64-bit extended length.
const LEN_64: u8 = 127;

/// Parses a frame header from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. Errors only for what makes the
/// header itself invalid: a reserved opcode, a 64-bit length with the top
/// bit set, or a length not in its shortest encoding (124 as `126, 0, 124`). Rules that depend on state (masking, RSV bits, control frame
/// limits) are checked by [`crate::proto::Decoder`].
///
/// Each error is reported as soon as the bytes that cause it are present: a
/// reserved opcode from the first byte on, a bad 64-bit length before the
/// mask key has arrived.
///
/// ```
/// use wsreactor::proto::frame::{parse_header, OpCode};
///
/// // A masked, final text frame with a 5-byte payload.
/// let bytes = [0x81, 0x85, 1, 2, 3, 4, b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1];
/// let h = parse_header(&bytes).unwrap().unwrap();
/// assert!(h.fin);
/// assert_eq!(h.opcode, OpCode::Text);
/// assert_eq!(h.mask, Some([1, 2, 3, 4]));
/// assert_eq!((h.payload_len, h.header_len), (5, 6));
///
/// // The mask key is not all there yet.
/// assert_eq!(parse_header(&bytes[..5]), Ok(None));
/// ```
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, ProtoError> {
    let Some(&b0) = buf.first() else { return Ok(None) };
    let Some(opcode) = OpCode::from_u8(b0 & 0x0F) else {
        return Err(ProtoError::UnknownOpcode(b0 & 0x0F));
    };
    let Some(&b1) = buf.get(1) else { return Ok(None) };
    let rest = &buf[2..];
    let (payload_len, ext_len) = match b1 & !MASK {
        // RFC 6455 §5.2: the length in its shortest encoding, and 63 bits at most.
        LEN_16 => match rest.first_chunk::<2>() {
            Some(b) => match u16::from_be_bytes(*b) {
                len @ 126.. => (u64::from(len), 2),
                _ => return Err(ProtoError::BadLength),
            },
            None => return Ok(None),
        },
        LEN_64 => match rest.first_chunk::<8>() {
            Some(b) => match u64::from_be_bytes(*b) {
                len @ 0x1_0000..=0x7FFF_FFFF_FFFF_FFFF => (len, 8),
                _ => return Err(ProtoError::BadLength),
            },
            None => return Ok(None),
        },
        len => (u64::from(len), 0),
    };
    let mask = if b1 & MASK != 0 {
        match rest.get(ext_len..).and_then(<[u8]>::first_chunk::<4>) {
            Some(key) => Some(*key),
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin: b0 & FIN != 0,
        rsv1: b0 & RSV1 != 0,
        rsv23: b0 & RSV23 != 0,
        opcode,
        mask,
        payload_len,
        header_len: 2 + ext_len + if mask.is_some() { 4 } else { 0 },
    }))
}

/// Encodes a frame header into `out`, returning how many bytes were written.
///
/// The length takes the shortest of the three encodings. `payload_len` must be
/// below 2^63 (any real payload is); larger values are a caller bug.
///
/// ```
/// use wsreactor::proto::frame::{encode_header, OpCode, MAX_HEADER_LEN};
///
/// let mut out = [0u8; MAX_HEADER_LEN];
/// let n = encode_header(&mut out, true, false, OpCode::Binary, 300, None);
/// assert_eq!(&out[..n], &[0x82, 126, 0x01, 0x2C]);
///
/// let n = encode_header(&mut out, true, false, OpCode::Text, 5, Some([9, 8, 7, 6]));
/// assert_eq!(&out[..n], &[0x81, 0x85, 9, 8, 7, 6]);
/// ```
#[inline]
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    debug_assert!(payload_len >> 63 == 0, "payload length {payload_len} cannot be encoded");
    out[0] = if fin { FIN } else { 0 } | if rsv1 { RSV1 } else { 0 } | opcode as u8;
    let mask_bit = if mask.is_some() { MASK } else { 0 };
    let mut n = if payload_len < u64::from(LEN_16) {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = mask_bit | LEN_16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | LEN_64;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Appends a whole unmasked (server-to-client) frame to `out`.
///
/// Reserves room for header and payload once, then copies both.
///
/// ```
/// use wsreactor::proto::frame::{write_frame, OpCode};
///
/// let mut out = Vec::new();
/// write_frame(&mut out, true, false, OpCode::Text, b"hi");
/// assert_eq!(out, [0x81, 2, b'h', b'i']);
/// ```
#[inline]
pub fn write_frame(out: &mut Vec<u8>, fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut header, fin, rsv1, opcode, payload.len() as u64, None);
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_OPS: [OpCode; 6] = [
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ];

    fn encode(fin: bool, rsv1: bool, op: OpCode, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut out, fin, rsv1, op, len, mask);
        out[..n].to_vec()
    }

    #[test]
    fn opcodes() {
        for v in 0u8..=0xFF {
            match OpCode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op as u8, v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                None => assert!(!matches!(v, 0 | 1 | 2 | 8 | 9 | 0xA), "{v}"),
            }
        }
        assert_eq!(ALL_OPS.map(|op| OpCode::from_u8(op as u8)), ALL_OPS.map(Some));
    }

    #[test]
    fn parses_each_length_form() {
        let cases: [(&[u8], u64, usize); 6] = [
            (&[0x82, 0x05], 5, 2),
            (&[0x82, 0x7D], 125, 2),
            (&[0x82, 0x7E, 0x00, 0x7E], 126, 4),
            (&[0x82, 0x7E, 0xFF, 0xFF], 65535, 4),
            (&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0], 65536, 10),
            (&[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], (1 << 63) - 1, 10),
        ];
        for (bytes, len, header_len) in cases {
            let h = parse_header(bytes).unwrap().unwrap();
            assert_eq!((h.payload_len, h.header_len, h.mask), (len, header_len, None));
            // Masked: same length, four more header bytes.
            let mut masked = bytes.to_vec();
            masked[1] |= 0x80;
            masked.extend_from_slice(&[1, 2, 3, 4]);
            let h = parse_header(&masked).unwrap().unwrap();
            assert_eq!((h.payload_len, h.header_len), (len, header_len + 4));
            assert_eq!(h.mask, Some([1, 2, 3, 4]));
            // Trailing payload bytes are not looked at.
            masked.extend_from_slice(&[0xFF; 20]);
            assert_eq!(parse_header(&masked).unwrap().unwrap().header_len, header_len + 4);
        }
    }

    #[test]
    fn needs_more_for_every_short_prefix() {
        for len in [0, 125, 126, 65535, 65536] {
            for mask in [None, Some([0xA, 0xB, 0xC, 0xD])] {
                let bytes = encode(true, false, OpCode::Binary, len, mask);
                for cut in 0..bytes.len() {
                    assert_eq!(parse_header(&bytes[..cut]), Ok(None), "len {len} cut {cut}");
                }
                let h = parse_header(&bytes).unwrap().unwrap();
                assert_eq!((h.payload_len, h.mask, h.header_len), (len, mask, bytes.len()));
            }
        }
    }

    #[test]
    fn flags_are_reported_not_judged() {
        let h = parse_header(&[0x0A, 0x00]).unwrap().unwrap();
        assert_eq!((h.fin, h.rsv1, h.rsv23, h.opcode), (false, false, false, OpCode::Pong));
        let h = parse_header(&[0xC9, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.fin, h.rsv1, h.rsv23, h.opcode), (true, true, false, OpCode::Ping));
        assert_eq!(h.payload_len, 256); // an over-long ping is the decoder's business
        for b0 in [0x20, 0x10, 0x30, 0x70] {
            let h = parse_header(&[b0, 0x00]).unwrap().unwrap();
            assert!(h.rsv23 && !h.fin && h.opcode == OpCode::Continuation);
        }
    }

    #[test]
    fn reserved_opcodes_fail_from_the_first_byte() {
        for op in (3..=7).chain(0xB..=0xF) {
            for b0 in [op, 0x80 | op, 0xF0 | op] {
                assert_eq!(parse_header(&[b0]), Err(ProtoError::UnknownOpcode(op)));
                assert_eq!(
                    parse_header(&[b0, 0x85, 1, 2, 3, 4]),
                    Err(ProtoError::UnknownOpcode(op))
                );
            }
        }
    }

    #[test]
    fn top_bit_of_64_bit_length_is_bad() {
        let mut bytes = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        // Reported before the mask key arrives.
        assert_eq!(parse_header(&bytes), Err(ProtoError::BadLength));
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(parse_header(&bytes), Err(ProtoError::BadLength));
        bytes[2] = 0xFF;
        assert_eq!(parse_header(&bytes), Err(ProtoError::BadLength));
        // But not before the length itself is complete.
        assert_eq!(parse_header(&bytes[..9]), Ok(None));
    }

    #[test]
    fn lengths_not_in_their_shortest_encoding_are_bad() {
        for (bytes, ok) in [
            (&[0x82, 126, 0, 125][..], false),
            (&[0x82, 126, 0, 0][..], false),
            (&[0x82, 126, 0, 126][..], true),
            (&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF][..], false),
            (&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5][..], false),
            (&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0][..], true),
        ] {
            let got = parse_header(bytes);
            assert_eq!(got.is_ok(), ok, "{bytes:?}: {got:?}");
        }
    }

    #[test]
    fn encodes_the_shortest_length() {
        assert_eq!(encode(true, false, OpCode::Text, 0, None), [0x81, 0]);
        assert_eq!(encode(true, false, OpCode::Text, 125, None), [0x81, 125]);
        assert_eq!(encode(false, false, OpCode::Binary, 126, None), [0x02, 126, 0, 126]);
        assert_eq!(encode(true, false, OpCode::Binary, 65535, None), [0x82, 126, 0xFF, 0xFF]);
        assert_eq!(
            encode(true, true, OpCode::Binary, 65536, None),
            [0xC2, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            encode(true, false, OpCode::Close, 2, Some([1, 2, 3, 4])),
            [0x88, 0x82, 1, 2, 3, 4]
        );
        assert_eq!(encode(true, false, OpCode::Ping, (1 << 63) - 1, Some([9; 4])).len(), 14);
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let lens = [0, 1, 125, 126, 127, 65535, 65536, u64::from(u32::MAX) + 1, (1 << 63) - 1];
        for op in ALL_OPS {
            for len in lens {
                for (fin, rsv1) in [(false, false), (true, false), (false, true), (true, true)] {
                    for mask in [None, Some([0x37, 0xFA, 0x21, 0x3D])] {
                        let bytes = encode(fin, rsv1, op, len, mask);
                        let h = parse_header(&bytes).unwrap().unwrap();
                        let expect = FrameHeader {
                            fin,
                            rsv1,
                            rsv23: false,
                            opcode: op,
                            mask,
                            payload_len: len,
                            header_len: bytes.len(),
                        };
                        assert_eq!(h, expect);
                    }
                }
            }
        }
    }

    #[test]
    fn write_frame_appends_header_and_payload() {
        let mut out = b"old".to_vec();
        write_frame(&mut out, true, false, OpCode::Text, b"Hello");
        assert_eq!(out, b"old\x81\x05Hello");

        for len in [0, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            write_frame(&mut out, false, true, OpCode::Binary, &payload);
            let h = parse_header(&out).unwrap().unwrap();
            assert_eq!((h.fin, h.rsv1, h.opcode, h.mask), (false, true, OpCode::Binary, None));
            assert_eq!(h.payload_len, len as u64);
            assert_eq!(&out[h.header_len..], &payload[..]);
        }
    }
}
