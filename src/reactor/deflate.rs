//! A reactor's permessage-deflate state (RFC 7692): who negotiated what, and
//! the compressors and inflaters lent to connections.
//!
//! Memory is the point. A connection that negotiated compression costs a
//! side-table entry here (its slot keeps one flag bit); a compression context
//! exists per connection only where context takeover requires it, and
//! everything contextless is shared: one compressor per window size per
//! reactor, and inflaters lent from a pool for the length of one message.

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::{Frame, Message};
use crate::proto::deflate::{
    self, Compressor, Decompressor, DeflateConfig, InflateError, MIN_WINDOW_BITS, Mode, Negotiated,
    NegotiationError,
};
use crate::proto::frame;
use crate::proto::handshake::Request;
use crate::stats::{Counter, Counters};

/// One connection's agreement and contexts: 24 bytes while idle (the
/// codecs are boxed; their states, 250-380 KiB and 46 KiB, only exist while
/// context takeover or a message in progress needs them).
struct PerConn {
    agreed: Negotiated,
    /// Our compressor, kept only with server context takeover.
    compressor: Option<Box<Compressor>>,
    /// The inflater: kept with client context takeover, otherwise lent for
    /// the length of one message.
    inflater: Option<Box<Decompressor>>,
}

/// What a reactor knows about compression.
pub(crate) struct Deflate {
    pub(crate) cfg: DeflateConfig,
    conns: HashMap<usize, PerConn>,
    /// Contextless compressors, by window bits - 8.
    contextless: [Option<Compressor>; 8],
    /// Contextless inflaters to lend, by window bits - 8. Boxed because the
    /// same boxes are lent to connections and come back.
    #[allow(clippy::vec_box)]
    inflaters: [Vec<Box<Decompressor>>; 8],
    /// Compressed payloads are written here before they are framed.
    scratch: Vec<u8>,
    counters: Arc<Counters>,
    /// What the contexts held by connections (not the pooled or contextless
    /// ones) cost, by [`context_bytes`].
    held: usize,
}

/// Roughly what one context costs: a compressor's window, hash chains and
/// buffers (zlib's `(1 << (bits + 2)) + (1 << (mem_level + 9))`, mem_level
/// 8), or an inflater's window and tables.
fn context_bytes(compressor: bool, bits: u8) -> usize {
    let window = 1usize << bits.clamp(MIN_WINDOW_BITS, 15);
    if compressor { 4 * window + (128 << 10) + (6 << 10) } else { window + (7 << 10) }
}

impl PerConn {
    /// What this connection's own contexts cost.
    fn held(&self) -> usize {
        let a = &self.agreed;
        let compressor =
            self.compressor.as_ref().map_or(0, |_| context_bytes(true, a.server_max_window_bits));
        let inflater =
            self.inflater.as_ref().map_or(0, |_| context_bytes(false, a.client_max_window_bits));
        compressor + inflater
    }
}

/// A compression scratch buffer bigger than this is freed after a message
/// much smaller than it, so one huge message does not pin its size.
const MAX_KEPT_SCRATCH: usize = 256 << 10;

/// How many idle contextless inflaters a reactor keeps per window size.
const POOLED_INFLATERS: usize = 16;

fn index(bits: u8) -> usize {
    usize::from(bits.clamp(MIN_WINDOW_BITS, 15) - MIN_WINDOW_BITS)
}

impl Deflate {
    pub(crate) fn new(cfg: DeflateConfig, counters: Arc<Counters>) -> Self {
        Deflate {
            cfg,
            conns: HashMap::new(),
            contextless: Default::default(),
            inflaters: Default::default(),
            scratch: Vec::new(),
            counters,
            held: 0,
        }
    }

    /// What the compression contexts of this reactor's connections cost.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Answers the request's permessage-deflate offers (`None`: decline or
    /// disabled); a malformed header is an error, to be answered with 400.
    pub(crate) fn negotiate(
        &self,
        req: &Request<'_>,
    ) -> Result<Option<Negotiated>, NegotiationError> {
        if self.cfg.mode == Mode::Disabled {
            return Ok(None);
        }
        deflate::negotiate(req.extensions(), &self.cfg)
    }

    /// The connection in `slot` agreed on `agreed`.
    pub(crate) fn open(&mut self, slot: usize, agreed: Negotiated) {
        self.conns.insert(slot, PerConn { agreed, compressor: None, inflater: None });
    }

    /// The connection in `slot` is gone: lend its inflater to others.
    pub(crate) fn close(&mut self, slot: usize) {
        if let Some(c) = self.conns.remove(&slot) {
            self.held -= c.held();
            if let Some(d) = c.inflater {
                self.give_back(d);
            }
        }
    }

    fn give_back(&mut self, mut d: Box<Decompressor>) {
        if d.no_context_takeover() {
            let pool = &mut self.inflaters[index(d.window_bits())];
            if pool.len() < POOLED_INFLATERS {
                d.reset();
                pool.push(d);
            }
        }
    }

    /// Inflates the next piece of a compressed message into `out` (at most
    /// `max` bytes in all); `fin` ends the message.
    pub(crate) fn inflate(
        &mut self,
        slot: usize,
        data: &[u8],
        fin: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let Some(c) = self.conns.get_mut(&slot) else { return Err(InflateError::Corrupt) };
        let agreed = c.agreed;
        let cost = context_bytes(false, agreed.client_max_window_bits);
        let mut d = match c.inflater.take() {
            Some(d) => {
                self.held -= cost;
                d
            }
            None if agreed.client_no_context_takeover => {
                let pool = &mut self.inflaters[index(agreed.client_max_window_bits)];
                pool.pop().unwrap_or_else(|| Box::new(Decompressor::for_server(&agreed)))
            }
            None => Box::new(Decompressor::for_server(&agreed)),
        };
        let result = d.decompress(data, fin, max, out);
        if (fin || result.is_err()) && d.no_context_takeover() {
            self.give_back(d);
        } else if let Some(c) = self.conns.get_mut(&slot) {
            c.inflater = Some(d);
            self.held += cost;
        }
        result
    }

    /// The payload of `msg` compressed for the connection in `slot`, or
    /// `None` to send it as it is (too small, or no compression agreed).
    pub(crate) fn compress(&mut self, slot: usize, msg: Message<'_>) -> Option<&[u8]> {
        if !self.cfg.compresses(msg.len()) {
            return None;
        }
        let level = self.cfg.level;
        let c = self.conns.get_mut(&slot)?;
        let agreed = c.agreed;
        let compressor = if agreed.server_no_context_takeover {
            self.contextless[index(agreed.server_max_window_bits)]
                .get_or_insert_with(|| Compressor::for_server(&agreed, level))
        } else {
            if c.compressor.is_none() {
                self.held += context_bytes(true, agreed.server_max_window_bits);
            }
            c.compressor.get_or_insert_with(|| Box::new(Compressor::for_server(&agreed, level)))
        };
        if self.scratch.capacity() > MAX_KEPT_SCRATCH && msg.len() < self.scratch.capacity() / 4 {
            self.scratch = Vec::new();
        }
        self.scratch.clear();
        compressor.compress(msg.as_bytes(), &mut self.scratch);
        self.counters.inc(Counter::Compressions);
        Some(&self.scratch)
    }

    /// For `shared` mode: `frame` compressed once for every connection that
    /// can take it (the shared window fits the one it agreed on), or `None`
    /// when this connection must get it otherwise.
    pub(crate) fn shared(&mut self, slot: usize, frame: &Frame) -> Option<Arc<[u8]>> {
        if self.cfg.mode != Mode::Shared {
            return None;
        }
        let agreed = self.conns.get(&slot)?.agreed;
        let bits = self.cfg.server_max_window_bits;
        if agreed.server_max_window_bits < bits {
            return None;
        }
        if self.scratch.capacity() > MAX_KEPT_SCRATCH && frame.len() < self.scratch.capacity() / 4 {
            self.scratch = Vec::new();
        }
        let (cfg, counters) = (self.cfg, &self.counters);
        let compressor = self.contextless[index(bits)]
            .get_or_insert_with(|| Compressor::new(bits, cfg.level, true));
        let scratch = &mut self.scratch;
        frame
            .deflated(|msg| {
                if !cfg.compresses(msg.len()) {
                    return None;
                }
                scratch.clear();
                compressor.compress(msg.as_bytes(), scratch);
                counters.inc(Counter::Compressions);
                let mut out = Vec::with_capacity(scratch.len() + 10);
                frame::write_frame(&mut out, true, true, msg.opcode(), scratch);
                Some(out.into())
            })
            .cloned()
    }

    /// Whether the connection in `slot` compresses per connection (dedicated
    /// mode) rather than sharing frames.
    pub(crate) fn dedicated(&self) -> bool {
        self.cfg.mode == Mode::Dedicated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_costs_little() {
        assert!(std::mem::size_of::<PerConn>() <= 24, "{}", std::mem::size_of::<PerConn>());
    }
}
