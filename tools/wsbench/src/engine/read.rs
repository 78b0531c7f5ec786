//! Reading: bounded reads into the thread's shared buffer, the end of the
//! handshake, and the server's frames (data to the behaviour, pings answered,
//! the close handshake, protocol errors).

use std::io::{self, Read};

use wsreactor::proto::{CloseCode, Decoded, Event, OpCode};

use super::behaviour::Behaviour;
use super::conn::State;
use super::control::Phase;
use super::event_loop::Engine;
use crate::clock::now_ns;
use crate::deflate::ConnDeflate;
use crate::wire::{self, MAX_RESPONSE_HEAD};

/// How many reads one connection may do per loop turn before others get a go.
const MAX_READS_PER_TURN: usize = 8;

impl<B: Behaviour> Engine<B> {
    /// Reads what the socket has (a bounded number of reads) and handles it.
    pub(super) fn on_readable(&mut self, key: usize, phase: Phase) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        self.read_into(key, phase, &mut rbuf);
        self.rbuf = rbuf;
    }

    fn read_into(&mut self, key: usize, phase: Phase, rbuf: &mut Vec<u8>) {
        for _ in 0..MAX_READS_PER_TURN {
            let Some(c) = self.slab.get_mut(key) else { return };
            let kept = c.inbuf.len();
            if kept + 4096 > rbuf.len() {
                rbuf.resize(kept + 65536, 0);
            }
            rbuf[..kept].copy_from_slice(&c.inbuf);
            c.inbuf.clear();
            let room = rbuf.len() - kept;
            match c.stream.read(&mut rbuf[kept..]) {
                Ok(0) => {
                    // End of stream: clean if our close handshake was under way.
                    let clean = matches!(c.state, State::Closing { .. });
                    if !clean && !matches!(c.state, State::Connecting | State::Handshaking(_)) {
                        self.stats
                            .error("server closed the connection without a close frame".into());
                    } else if !clean {
                        self.stats
                            .error("server closed the connection during the handshake".into());
                    }
                    self.drop_conn(key, clean);
                    return;
                }
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    let now = now_ns();
                    let end = kept + n;
                    if !self.process(key, &mut rbuf[..end], now, phase) {
                        return;
                    }
                    // A short read means the socket is drained, and new data brings a new
                    // edge; a FIN that came with this data does not, so read on then.
                    let hup = self.slab.get(key).is_some_and(|c| c.hup);
                    if n < room && !hup {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.inbuf.extend_from_slice(&rbuf[..kept]);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    c.inbuf.extend_from_slice(&rbuf[..kept]);
                }
                Err(e) => {
                    let quiet = matches!(c.state, State::Closing { .. });
                    if !quiet {
                        self.stats.error(format!("read: {e}"));
                    }
                    self.drop_conn(key, false);
                    return;
                }
            }
        }
        self.again.push(key);
    }

    /// Handles `buf` for connection `key`; keeps what cannot be used yet.
    /// Returns whether the connection is still there.
    fn process(&mut self, key: usize, buf: &mut [u8], now: u64, phase: Phase) -> bool {
        let end = buf.len();
        let c = &mut self.slab[key];
        let mut off = 0;
        if let State::Handshaking(hs) = &c.state {
            match hs.finish(buf, &self.cfg.target) {
                Ok(Some((n, agreed))) => {
                    off = n;
                    if let (Some(agreed), Some(opts)) = (agreed, &self.cfg.deflate) {
                        let d = ConnDeflate::new(agreed, opts.level);
                        self.stats.deflate_conns += 1;
                        if self.stats.deflate_agreed.is_none() {
                            self.stats.deflate_agreed = Some(d.agreed());
                        }
                        c.deflate = Some(Box::new(d));
                    }
                    c.state = State::Open;
                    self.pending -= 1;
                    self.stats.handshake.saturating_record(now.saturating_sub(c.started).max(1));
                    self.settle(true);
                    self.behaviour.opened(self.slab[key].cx(key, now, phase));
                }
                Ok(None) if buf.len() < MAX_RESPONSE_HEAD => {
                    c.inbuf.extend_from_slice(buf);
                    return true;
                }
                Ok(None) => {
                    self.fail_pending(key, "handshake: response head too large".into());
                    return false;
                }
                Err(e) => {
                    self.fail_pending(key, format!("handshake: {e}"));
                    return false;
                }
            }
        }
        let c = &mut self.slab[key];
        let mut failed: Option<(String, CloseCode)> = None;
        while off < end {
            let decoded = match c.decoder.decode(&mut buf[off..], &self.dcfg) {
                Ok(d) => d,
                Err(e) => {
                    failed = Some((format!("protocol: {e}"), e.close_code()));
                    break;
                }
            };
            let Decoded::Progress { consumed, event } = decoded else { break };
            off += consumed;
            let Some(event) = event else {
                if consumed == 0 {
                    break;
                }
                continue;
            };
            let piece = match event {
                Event::Binary(d) => Some((d, true, true)),
                Event::Text(s) => Some((s.as_bytes(), true, true)),
                Event::Fragment { data, first, fin, compressed: false, .. } => {
                    Some((data, first, fin))
                }
                Event::Fragment { data, first, fin, compressed: true, .. } => {
                    self.inflated.clear();
                    let res = match c.deflate.as_deref_mut() {
                        Some(d) => d
                            .inflate(data, fin, self.cfg.max_message, &mut self.inflated)
                            .map_err(|e| (format!("inflate: {}", e.reason()), e.close_code())),
                        None => Err((
                            "protocol: compressed message without permessage-deflate".into(),
                            CloseCode::PROTOCOL_ERROR,
                        )),
                    };
                    if let Err(e) = res {
                        failed = Some(e);
                        break;
                    }
                    Some((&self.inflated[..], first, fin))
                }
                Event::Ping(p) => {
                    if matches!(c.state, State::Open) {
                        wire::push_frame(&mut c.out, OpCode::Pong, true, &[p]);
                    }
                    None
                }
                Event::Pong(_) => None,
                Event::Close(code, _) => {
                    if matches!(c.state, State::Open) {
                        // The server started the close: answer, then wait for it to hang up.
                        let reply =
                            if code == CloseCode::NO_STATUS { CloseCode::NORMAL } else { code };
                        wire::push_close(&mut c.out, reply);
                        c.state = State::Closing { initiated: false };
                        *self
                            .stats
                            .errors
                            .entry(format!("server sent close {}", code.0))
                            .or_insert(0) += 1;
                    }
                    None
                }
            };
            if let Some((data, first, fin)) = piece
                && matches!(c.state, State::Open)
            {
                self.behaviour.data(c.cx(key, now, phase), data, first, fin);
            }
        }
        if let Some((why, code)) = failed {
            self.stats.protocol_errors += 1;
            self.stats.error(why);
            if matches!(c.state, State::Open) {
                wire::push_close(&mut c.out, code);
                c.state = State::Closing { initiated: false };
            }
            off = end; // nothing after a protocol error is trusted
        }
        if off < end {
            c.inbuf.extend_from_slice(&buf[off..end]);
        }
        if c.out.len() > c.out_pos && !c.queued {
            c.queued = true;
            self.flush.push(key);
        }
        true
    }
}
