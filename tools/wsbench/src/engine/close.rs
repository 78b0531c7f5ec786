//! Closing connections: the close handshake at the end of a run, and the
//! removal of a connection, whatever ended it.

use std::sync::atomic::Ordering::Relaxed;

use wsreactor::proto::CloseCode;

use super::behaviour::Behaviour;
use super::conn::State;
use super::event_loop::Engine;
use crate::wire;

impl<B: Behaviour> Engine<B> {
    /// Sends a close frame on every open connection (the end of the run).
    pub(super) fn start_closing(&mut self) {
        let keys: Vec<usize> = self.slab.iter().map(|(k, _)| k).collect();
        for k in keys {
            let c = &mut self.slab[k];
            match c.state {
                State::Open => {
                    wire::push_close(&mut c.out, CloseCode::NORMAL);
                    c.state = State::Closing { initiated: true };
                    if !c.queued {
                        c.queued = true;
                        self.flush.push(k);
                    }
                }
                State::Connecting | State::Handshaking(_) => {
                    self.fail_pending(k, "still connecting at the end".into());
                }
                State::Closing { .. } => {}
            }
        }
    }

    /// Removes a connection; `clean` when its close handshake completed.
    pub(super) fn drop_conn(&mut self, key: usize, clean: bool) {
        let mut c = self.slab.remove(key);
        let _ = self.poll.registry().deregister(&mut c.stream);
        match c.state {
            State::Connecting | State::Handshaking(_) => {
                self.pending -= 1;
                self.settle(false);
            }
            State::Open | State::Closing { .. } => {
                let lost = !matches!(c.state, State::Closing { initiated: true });
                self.progress.open_now.fetch_sub(1, Relaxed);
                if lost {
                    self.stats.lost += 1;
                    self.progress.lost.fetch_add(1, Relaxed);
                } else if clean {
                    self.stats.closed_clean += 1;
                }
                self.behaviour.closed(c.index, &mut c.user, lost);
            }
        }
    }
}
