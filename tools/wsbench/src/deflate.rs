//! permessage-deflate (RFC 7692) on the client side of a connection: what is
//! offered, and the per-connection compressor and inflater, both created on
//! first use (a connection that never sends or never receives a compressed
//! message carries neither).

use wsreactor::proto::OpCode;
use wsreactor::proto::deflate::{ClientOffer, Compressor, Decompressor, InflateError, Negotiated};

use crate::wire::{push_message, push_message_rsv1};

/// What a run offers and how hard it compresses.
#[derive(Debug, Clone, Copy)]
pub struct DeflateOpts {
    /// The offer sent in every handshake.
    pub offer: ClientOffer,
    /// The zlib level of our compressor.
    pub level: u32,
}

impl DeflateOpts {
    /// `permessage-deflate; client_max_window_bits`, plus both
    /// `*_no_context_takeover` parameters when `no_context_takeover`.
    pub fn new(no_context_takeover: bool, level: u32) -> DeflateOpts {
        DeflateOpts {
            offer: ClientOffer {
                server_no_context_takeover: no_context_takeover,
                client_no_context_takeover: no_context_takeover,
                ..ClientOffer::default()
            },
            level,
        }
    }
}

/// One connection's deflate state.
pub struct ConnDeflate {
    agreed: Negotiated,
    level: u32,
    comp: Option<Compressor>,
    decomp: Option<Decompressor>,
    /// The message's payload parts joined (reused).
    plain: Vec<u8>,
    /// The compressed payload (reused).
    packed: Vec<u8>,
}

impl ConnDeflate {
    /// State for a connection that agreed on `agreed`.
    pub fn new(agreed: Negotiated, level: u32) -> ConnDeflate {
        ConnDeflate {
            agreed,
            level,
            comp: None,
            decomp: None,
            plain: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// Appends the message `parts`, compressed, with RSV1 on its first frame and
    /// split into frames of at most `frag` compressed bytes (0: one frame).
    pub fn push_message(
        &mut self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        parts: &[&[u8]],
        frag: usize,
    ) {
        let (agreed, level) = (self.agreed, self.level);
        let comp = self.comp.get_or_insert_with(|| Compressor::for_client(&agreed, level));
        self.packed.clear();
        if let [one] = parts {
            comp.compress(one, &mut self.packed);
        } else {
            self.plain.clear();
            for p in parts {
                self.plain.extend_from_slice(p);
            }
            comp.compress(&self.plain, &mut self.packed);
        }
        push_message_rsv1(out, opcode, &[&self.packed], frag, true);
    }

    /// Inflates one payload piece of a compressed message into `out` (appended).
    pub fn inflate(
        &mut self,
        chunk: &[u8],
        fin: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let agreed = self.agreed;
        self.decomp
            .get_or_insert_with(|| Decompressor::for_client(&agreed))
            .decompress(chunk, fin, max, out)
    }

    /// The agreed parameters, as the server's header would say them.
    pub fn agreed(&self) -> String {
        self.agreed.response_header()
    }
}

/// Where a behaviour's messages go: a connection's output, compressed when
/// the connection negotiated permessage-deflate.
pub struct Tx<'a> {
    /// The connection's output buffer.
    pub out: &'a mut Vec<u8>,
    /// The connection's deflate state, when negotiated.
    pub deflate: Option<&'a mut ConnDeflate>,
}

impl Tx<'_> {
    /// Appends a message of `parts` in frames of at most `frag` bytes (0: one frame).
    #[inline]
    pub fn message(&mut self, opcode: OpCode, parts: &[&[u8]], frag: usize) {
        match self.deflate.as_deref_mut() {
            None => push_message(self.out, opcode, parts, frag),
            Some(d) => d.push_message(self.out, opcode, parts, frag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsreactor::proto::{Decoded, Decoder, DecoderConfig, Event, Role};

    /// What we send decodes (server role) and inflates back to the payload,
    /// fragmented or not, message after message (context takeover).
    #[test]
    fn round_trip() {
        let agreed = Negotiated::default();
        let mut ours = ConnDeflate::new(agreed, 1);
        let mut theirs = Decompressor::for_server(&agreed);
        let cfg = DecoderConfig { role: Role::Server, max_message_size: 1 << 20, allow_rsv1: true };
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        for frag in [0, 100] {
            for _ in 0..3 {
                let mut out = Vec::new();
                let mut tx = Tx { out: &mut out, deflate: Some(&mut ours) };
                tx.message(OpCode::Binary, &[&payload[..8], &payload[8..]], frag);
                assert!(out.len() < payload.len() / 4, "{}", out.len());
                assert_eq!(out[0] & 0x40, 0x40, "RSV1 on the first frame");
                let mut dec = Decoder::new();
                let mut got = Vec::new();
                let mut off = 0;
                while off < out.len() {
                    let Decoded::Progress { consumed, event } =
                        dec.decode(&mut out[off..], &cfg).unwrap()
                    else {
                        panic!("need more")
                    };
                    off += consumed;
                    if let Some(Event::Fragment { data, fin, compressed, .. }) = event {
                        assert!(compressed);
                        theirs.decompress(data, fin, 1 << 20, &mut got).unwrap();
                    }
                }
                assert_eq!(got, payload);
            }
        }
    }
}
