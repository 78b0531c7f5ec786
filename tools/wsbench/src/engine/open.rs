//! Opening connections: paced connect attempts, the start of the handshake
//! once the socket is connected, and the end of attempts that fail or time out.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use mio::net::TcpStream;
use mio::{Interest, Token};
use wsreactor::proto::Decoder;

use super::behaviour::Behaviour;
use super::conn::{Conn, State};
use super::event_loop::Engine;
use crate::clock::now_ns;
use crate::wire::ClientHandshake;

/// How long a connection may take from `connect()` to the `101`.
const HANDSHAKE_TIMEOUT_NS: u64 = 10_000_000_000;

impl<B: Behaviour> Engine<B> {
    /// Starts new connection attempts as pacing and the pending cap allow.
    pub(super) fn open_more(&mut self, now: u64) {
        let interval = self.cfg.connect_rate.map(|r| (1e9 / r.max(1e-3)) as u64).unwrap_or(0);
        if self.next_connect == 0 {
            self.next_connect = now;
        }
        while !self.stop_opening
            && self.started_conns < self.cfg.conns
            && self.pending < self.cfg.max_pending
            && now >= self.next_connect
        {
            let index = self.cfg.first_index + self.started_conns;
            self.started_conns += 1;
            self.next_connect += interval;
            match self.connect(index, now) {
                Ok(()) => self.pending += 1,
                Err(e) => {
                    self.settle(false);
                    self.stats.error(format!("connect: {e}"));
                    // Out of descriptors or ports: more attempts would fail the same way.
                    if matches!(e.raw_os_error(), Some(24) | Some(99)) {
                        self.stop_opening = true;
                        let rest = self.cfg.conns - self.started_conns;
                        self.stats.failed += rest as u64;
                        self.progress.settled.fetch_add(rest, Relaxed);
                    }
                }
            }
        }
    }

    fn connect(&mut self, index: usize, now: u64) -> io::Result<()> {
        let addr = self.cfg.target.addr;
        let stream = if self.cfg.src_ips.is_empty() {
            TcpStream::connect(addr)?
        } else {
            let src = self.cfg.src_ips[index % self.cfg.src_ips.len()];
            let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
            let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            sock.set_nonblocking(true)?;
            sock.bind(&SocketAddr::new(src, 0).into())?;
            match sock.connect(&addr.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(115) => {} // EINPROGRESS
                Err(e) => return Err(e),
            }
            TcpStream::from_std(sock.into())
        };
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let mut stream = stream;
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn {
            stream,
            index,
            state: State::Connecting,
            started: now,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            blocked: false,
            queued: false,
            hup: false,
            decoder: Decoder::new(),
            deflate: None,
            user: B::State::default(),
        });
        Ok(())
    }

    /// A connect attempt finished (`ok`: the handshake completed).
    pub(super) fn settle(&mut self, ok: bool) {
        if ok {
            self.stats.opened += 1;
            self.progress.opened.fetch_add(1, Relaxed);
            self.progress.open_now.fetch_add(1, Relaxed);
        } else {
            self.stats.failed += 1;
        }
        self.progress.settled.fetch_add(1, Relaxed);
        self.stats.connect_window.1 = now_ns();
    }

    /// The socket of a connecting connection reported readiness. Returns whether it is
    /// still there (and in the handshake).
    pub(super) fn on_connected(&mut self, key: usize) -> bool {
        let c = &mut self.slab[key];
        match c.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.fail_pending(key, format!("connect: {e}"));
                return false;
            }
        }
        match c.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
            Err(e) => {
                self.fail_pending(key, format!("connect: {e}"));
                return false;
            }
        }
        let _ = c.stream.set_nodelay(true);
        let hs = match ClientHandshake::start(
            &self.cfg.target,
            &mut c.out,
            self.cfg.deflate.as_ref().map(|d| &d.offer),
        ) {
            Ok(hs) => hs,
            Err(e) => {
                self.fail_pending(key, format!("handshake: {e}"));
                return false;
            }
        };
        c.state = State::Handshaking(hs);
        self.flush_one(key);
        self.slab.contains(key)
    }

    pub(super) fn fail_pending(&mut self, key: usize, why: String) {
        self.stats.error(why);
        self.pending -= 1;
        self.settle(false);
        let mut c = self.slab.remove(key);
        let _ = self.poll.registry().deregister(&mut c.stream);
    }

    pub(super) fn expire_handshakes(&mut self, now: u64) {
        if self.pending == 0 {
            return;
        }
        let expired: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, c)| {
                matches!(c.state, State::Connecting | State::Handshaking(_))
                    && now.saturating_sub(c.started) > HANDSHAKE_TIMEOUT_NS
            })
            .map(|(k, _)| k)
            .collect();
        for k in expired {
            self.fail_pending(k, "handshake timed out".into());
        }
    }
}
