//! One reactor's event loop.
//!
//! A loop turn: poll; read every ready connection until the socket is
//! drained or its per-turn budget is spent (frames are parsed in place from
//! the shared buffer and handed to the handler), then flush its replies at
//! once; accept up to a slice of new connections, answering each upgrade
//! request on the spot (deferred accept hands a connection over with its
//! request); run inbox commands; fan out broadcasts and topic frames, flushing
//! each receiver as it is served; flush whatever else has output. A flush is
//! one `send` (small frames copied together) or `sendmsg` (big queues).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::conn::{Conn, Flag};
use super::connections::Connections;
use super::door::ServerHandle;
use super::fanout::Fanout;
use super::handler::Handler;
use super::inbox::{Command, Inbox, LocalId};
use super::state::ReactorState;
use super::timer;
use crate::config::Config;
use crate::proto::CloseCode;
use crate::proto::connection::State;
use crate::stats::Counter;

/// The token of a reactor's waker (its inbox).
pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections accepted (and their requests answered) per loop turn: a
/// reconnect storm is taken in slices, between which the open connections
/// are served, rather than all at once.
const ACCEPTS_PER_TURN: usize = 64;

/// What `Server::build` prepares for each reactor on the caller's thread:
/// its poller, its listener, and the inbox other threads post to.
pub(crate) struct Endpoints {
    pub(crate) poll: Poll,
    pub(crate) listener: TcpListener,
    pub(crate) inbox: Arc<Inbox>,
}

/// One event loop.
pub(crate) struct Reactor<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    inbox: Arc<Inbox>,
    conns: Connections<H>,
    fanout: Fanout,
    commands: Vec<Command>,
    /// Timer entries that came due this turn.
    fired: Vec<timer::Entry>,
    next_generation: u32,
    shutdown_at: Option<Instant>,
    accept_paused_until: Option<Instant>,
    /// The listener has (or may have) connections waiting: it was ready, or
    /// the last slice ended before `accept` said WouldBlock.
    accept_more: bool,
}

impl<H: Handler> Reactor<H> {
    pub(crate) fn new(
        id: usize,
        endpoints: Endpoints,
        handler: H,
        cfg: Arc<Config>,
        handle: ServerHandle,
    ) -> Self {
        Reactor {
            poll: endpoints.poll,
            listener: Some(endpoints.listener),
            inbox: endpoints.inbox,
            conns: Connections::new(handler, ReactorState::new(id, cfg, handle)),
            fanout: Fanout::default(),
            commands: Vec::new(),
            fired: Vec::new(),
            next_generation: 0,
            shutdown_at: None,
            accept_paused_until: None,
            accept_more: false,
        }
    }

    /// Runs until a shutdown completes.
    pub(crate) fn run(mut self) -> io::Result<()> {
        if let Some(l) = self.listener.as_mut() {
            self.poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let st = &mut self.conns.st;
            st.wheel.advance(now, &mut self.fired);
            st.tick = st.wheel.now_tick();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_more = true,
                    WAKER => self.run_commands(),
                    Token(slot) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.conns.pump(slot);
                        }
                        if event.is_writable() {
                            self.conns.mark_dirty(slot);
                        }
                    }
                }
            }
            // New connections after the ready ones: a slice per turn.
            if std::mem::take(&mut self.accept_more) {
                self.accept();
            }
            self.turn_end(now);
            if self.finished(now) {
                self.conns.drop_all();
                return Ok(());
            }
        }
    }

    /// The work after the events of a turn: timeouts, leftover reads,
    /// broadcasts, flushes, the memory count.
    fn turn_end(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        for entry in fired.drain(..) {
            self.conns.on_timer(entry);
        }
        self.fired = fired;
        let mut again = std::mem::take(&mut self.conns.again);
        for slot in again.drain(..) {
            if let Some(c) = self.conns.slab.get_mut(slot) {
                c.flags.clear(Flag::ReadAgain);
                self.conns.pump(slot);
            }
        }
        if self.conns.again.is_empty() {
            self.conns.again = again; // keep the allocation
        }
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.accept();
        }
        if std::mem::take(&mut self.conns.st.posted_to_self) {
            self.run_commands();
        }
        self.fanout.broadcast(&mut self.conns);
        self.fanout.deliver_topics(&mut self.conns);
        let mut dirty = std::mem::take(&mut self.conns.dirty);
        for slot in dirty.drain(..) {
            self.conns.flush(slot);
        }
        if self.conns.dirty.is_empty() {
            self.conns.dirty = dirty;
        }
        self.conns.check_memory();
        self.conns.feed_starved();
        let st = &self.conns.st;
        st.counters.set(Counter::Topics, st.topics.len() as u64);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.conns.again.is_empty()
            || !self.conns.dirty.is_empty()
            || self.conns.st.posted_to_self
            || self.accept_more
        {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        [self.conns.st.wheel.next_wakeup(), self.shutdown_at, self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn finished(&self, now: Instant) -> bool {
        self.shutdown_at.is_some_and(|t| self.conns.slab.is_empty() || t <= now)
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let deferred = !self.conns.st.cfg.defer_accept.is_zero();
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((mut stream, _peer)) => {
                    // TCP_NODELAY comes from the listener.
                    let entry = self.conns.slab.vacant_entry();
                    let slot = entry.key();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.poll.registry().register(&mut stream, Token(slot), interest)
                    {
                        log::warn!("could not register a connection: {e}");
                        continue;
                    }
                    self.next_generation = self.next_generation.wrapping_add(1);
                    let st = &mut self.conns.st;
                    entry.insert(Conn::new(stream, self.next_generation, st.tick));
                    st.slab_bytes = self.conns.slab.capacity() * size_of::<Conn<H::Conn>>();
                    let Some(conn) = self.conns.slab.get_mut(slot) else { continue };
                    conn.schedule(slot, st);
                    st.counters.inc(Counter::Accepted);
                    if deferred {
                        // The request is most likely here already: answer it
                        // now rather than after another trip through poll.
                        self.conns.pump(slot);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_fds(&e) => {
                    log::warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => log::debug!("accept: {e}"),
            }
        }
        // The slice is spent: the rest next turn (the listener is
        // edge-triggered, so poll would not say again).
        self.accept_more = true;
    }

    fn run_commands(&mut self) {
        let mut commands = std::mem::take(&mut self.commands);
        self.inbox.drain(&mut commands);
        let bytes = commands.iter().map(Command::bytes).sum();
        self.conns.st.handle.shared.budget.taken(bytes);
        for cmd in commands.drain(..) {
            match cmd {
                Command::Broadcast(frames, skip) => {
                    self.fanout.broadcasts.extend(frames.into_iter().map(|f| (f, skip)))
                }
                Command::Publish(topic, seq, frame) => {
                    self.fanout.publishes.push((topic, seq, frame))
                }
                Command::SendTo(to, frame) => {
                    let conns = &mut self.conns;
                    let found =
                        conns.slab.get_mut(to.slot).filter(|c| c.generation == to.generation);
                    match found {
                        Some(conn) => {
                            let _ = conn.send_shared(&mut conns.st, to.slot, &frame);
                            conns.mark_dirty(to.slot);
                        }
                        // Gone meanwhile: dropped, as a send to a closed connection is.
                        None => conns.st.counters.inc(Counter::SendsDropped),
                    }
                }
                Command::Close(to, code, reason) => {
                    if self.connection(to).is_some() {
                        self.conns.close(to.slot, code, &reason);
                    }
                }
                Command::Shutdown(deadline) => self.begin_shutdown(deadline),
            }
        }
        self.commands = commands;
    }

    /// The connection `id` names, if it is still there.
    fn connection(&mut self, id: LocalId) -> Option<&mut Conn<H::Conn>> {
        self.conns.slab.get_mut(id.slot).filter(|c| c.generation == id.generation)
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown_at.is_some() {
            return;
        }
        log::debug!("reactor {}: shutting down", self.conns.st.reactor_id);
        self.shutdown_at = Some(deadline);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let slots: Vec<usize> = self.conns.slab.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let Some(conn) = self.conns.slab.get_mut(slot) else { continue };
            match conn.proto.state() {
                State::Handshake | State::Deciding => self.conns.remove(slot),
                State::Open => self.conns.close(slot, CloseCode::GOING_AWAY, "server shutdown"),
                State::Closing | State::Closed => {}
            }
        }
    }
}

/// EMFILE or ENFILE: the process or the system is out of file descriptors.
fn is_out_of_fds(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}
