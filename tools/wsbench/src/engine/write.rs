//! Writing: each connection's queued output, batched into one write per loop
//! turn, and the trimming of its buffer.

use std::io::{self, Write};

use super::behaviour::Behaviour;
use super::conn::State;
use super::event_loop::Engine;

impl<B: Behaviour> Engine<B> {
    pub(super) fn flush_all(&mut self) {
        let list = std::mem::take(&mut self.flush);
        for key in list.iter().copied() {
            if let Some(c) = self.slab.get_mut(key) {
                c.queued = false;
                if !c.blocked {
                    self.flush_one(key);
                }
            }
        }
        let mut list = list;
        list.clear();
        if self.flush.is_empty() {
            self.flush = list;
        }
    }

    /// Writes as much of a connection's output as the socket takes.
    pub(super) fn flush_one(&mut self, key: usize) {
        let c = &mut self.slab[key];
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(0) => break,
                Ok(n) => {
                    c.out_pos += n;
                    self.stats.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let lost = !matches!(c.state, State::Closing { .. });
                    if lost {
                        self.stats.error(format!("write: {e}"));
                    }
                    self.drop_conn(key, false);
                    return;
                }
            }
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
            // Idle connections keep no large buffers.
            if c.out.capacity() > 1 << 20 {
                c.out = Vec::new();
            }
        } else if c.out_pos > 1 << 16 && c.out_pos * 2 > c.out.len() {
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
    }
}
