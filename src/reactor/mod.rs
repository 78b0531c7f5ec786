//! The reactor layer: the only code that touches sockets, the clock and the
//! poller. One [`Reactor`] per thread, each with its own `mio::Poll`, its own
//! SO_REUSEPORT listener, a slab of connections, one shared read buffer, and
//! an inbox for the rest of the world.
//!
//! A loop turn: poll; read every ready connection until the socket is
//! drained or its per-turn budget is spent (frames are parsed in place from
//! the shared buffer and handed to the handler); run inbox commands; fan out
//! broadcasts; flush every connection that has output, once, with `writev`.

pub(crate) mod buf;
mod conn;
pub(crate) mod inbox;
pub(crate) mod listener;
mod outq;

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use self::buf::Pool;
pub(crate) use self::conn::Conn;
use self::conn::{
    AGAIN, Bufs, DIRTY, DISCARD, NOTIFIED, OPENED, READ_PAUSED, SHUT_WR, State, WRITE_BLOCKED,
};
use self::inbox::{Command, Inbox};
use crate::handler::{Accept, Ctx, Handler, Reject};
use crate::message::{Frame, Message};
use crate::proto::frame::OpCode;
use crate::proto::handshake::{self, Request};
use crate::proto::{CloseCode, Decoded, DecoderConfig, Event, ProtoError};
use crate::server::{Config, ServerHandle};

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// How many bytes one connection may read per loop turn before the others get a go.
const READ_BUDGET_READS: usize = 4;
/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What `Server::build` prepares for each reactor on the caller's thread.
pub(crate) struct Parts {
    pub(crate) poll: Poll,
    pub(crate) listener: TcpListener,
    pub(crate) inbox: Arc<Inbox>,
}

/// The reactor state that callbacks may touch through [`Ctx`]: pools, the
/// clock reading of this turn, timeouts to arm, broadcasts to fan out.
pub(crate) struct Env {
    pub(crate) reactor_id: usize,
    pub(crate) cfg: Arc<Config>,
    pub(crate) handle: ServerHandle,
    pub(crate) bufs: Pool<Box<Bufs>>,
    pub(crate) chunks: Pool<Vec<u8>>,
    decoder: DecoderConfig,
    now: Instant,
    /// Close timeouts, in deadline order (they all have the same length).
    closing: VecDeque<(Instant, usize, u32)>,
    /// Frames broadcast by this reactor's handlers this turn.
    local_broadcasts: Vec<Arc<[u8]>>,
    /// Scratch space for HTTP responses.
    scratch: Vec<u8>,
}

impl Env {
    pub(crate) fn broadcast_local(&mut self, frame: Frame) {
        self.local_broadcasts.push(Arc::clone(frame.shared()));
    }

    pub(crate) fn arm_close_timeout(&mut self, slot: usize, generation: u32) {
        self.closing.push_back((self.now + self.cfg.close_timeout, slot, generation));
    }
}

/// One event loop.
pub(crate) struct Reactor<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    inbox: Arc<Inbox>,
    conns: Slab<Conn<H::Conn>>,
    handler: H,
    env: Env,
    rbuf: Box<[u8]>,
    /// Connections to read again without waiting for an event.
    again: Vec<usize>,
    /// Connections to flush at the end of this turn.
    dirty: Vec<usize>,
    /// Broadcast frames that arrived through the inbox this turn.
    remote_broadcasts: Vec<Arc<[u8]>>,
    commands: Vec<Command>,
    next_generation: u32,
    shutdown_at: Option<Instant>,
    accept_paused_until: Option<Instant>,
}

impl<H: Handler> Reactor<H> {
    pub(crate) fn new(
        id: usize,
        parts: Parts,
        handler: H,
        cfg: Arc<Config>,
        handle: ServerHandle,
    ) -> Self {
        let rbuf = vec![0u8; cfg.read_buffer_size].into_boxed_slice();
        let decoder = DecoderConfig {
            max_message_size: cfg.max_message_size,
            ..DecoderConfig::default()
        };
        Reactor {
            poll: parts.poll,
            listener: Some(parts.listener),
            inbox: parts.inbox,
            conns: Slab::new(),
            handler,
            env: Env {
                reactor_id: id,
                cfg,
                handle,
                bufs: Pool::new(1024),
                chunks: Pool::new(256),
                decoder,
                now: Instant::now(),
                closing: VecDeque::new(),
                local_broadcasts: Vec::new(),
                scratch: Vec::new(),
            },
            rbuf,
            again: Vec::new(),
            dirty: Vec::new(),
            remote_broadcasts: Vec::new(),
            commands: Vec::new(),
            next_generation: 0,
            shutdown_at: None,
            accept_paused_until: None,
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
            self.env.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.run_commands(),
                    Token(slot) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.pump(slot);
                        }
                        if event.is_writable() {
                            self.mark_dirty(slot);
                        }
                    }
                }
            }
            self.turn_end();
            if self.finished() {
                self.drop_all();
                return Ok(());
            }
        }
    }

    /// The work after the events of a turn: leftover reads, broadcasts,
    /// flushes, timeouts.
    fn turn_end(&mut self) {
        let mut again = std::mem::take(&mut self.again);
        for slot in again.drain(..) {
            if let Some(c) = self.conns.get_mut(slot) {
                c.flags &= !AGAIN;
                self.pump(slot);
            }
        }
        self.again = again;
        if self.accept_paused_until.is_some_and(|t| t <= self.env.now) {
            self.accept_paused_until = None;
            self.accept();
        }
        self.fan_out();
        let mut dirty = std::mem::take(&mut self.dirty);
        for slot in dirty.drain(..) {
            self.flush(slot);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        self.expire_closing();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        [
            self.env.closing.front().map(|c| c.0),
            self.shutdown_at,
            self.accept_paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    fn finished(&self) -> bool {
        self.shutdown_at.is_some_and(|t| self.conns.is_empty() || t <= self.env.now)
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            if !c.has(DIRTY) {
                c.flags |= DIRTY;
                self.dirty.push(slot);
            }
        }
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let Some(listener) = self.listener.as_ref() else { return };
        loop {
            match listener.accept() {
                Ok((mut stream, _peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        log::debug!("set_nodelay: {e}");
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                        log::warn!("could not register a connection: {e}");
                        continue;
                    }
                    self.next_generation = self.next_generation.wrapping_add(1);
                    entry.insert(Conn::new(stream, self.next_generation));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_fds(&e) => {
                    log::warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused_until = Some(self.env.now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    fn run_commands(&mut self) {
        let mut commands = std::mem::take(&mut self.commands);
        self.inbox.drain(&mut commands);
        for cmd in commands.drain(..) {
            match cmd {
                Command::Broadcast(frames) => self.remote_broadcasts.extend(frames),
                Command::Shutdown(deadline) => self.begin_shutdown(deadline),
            }
        }
        self.commands = commands;
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown_at.is_some() {
            return;
        }
        log::debug!("reactor {}: shutting down", self.env.reactor_id);
        self.shutdown_at = Some(deadline);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let Some(conn) = self.conns.get_mut(slot) else { continue };
            match conn.state {
                State::Handshake => self.remove(slot),
                State::Open => {
                    conn.begin_close(&mut self.env, slot, CloseCode::GOING_AWAY, "server shutdown");
                    self.settle(slot);
                    self.mark_dirty(slot);
                }
                State::Closing | State::Draining => {}
            }
        }
    }

    /// Reads and processes input for `slot` until the socket is drained, the
    /// turn's budget is spent, or reading is paused.
    fn pump(&mut self, slot: usize) {
        let mut reads = 0;
        loop {
            let Some(conn) = self.conns.get_mut(slot) else { return };
            if conn.has(READ_PAUSED) || conn.state == State::Draining {
                break;
            }
            let carry_len = conn.bufs.as_ref().map_or(0, |b| b.carry.len());
            let room = self.rbuf.len() - carry_len;
            let (n, eof) = if room == 0 {
                (0, false)
            } else {
                match conn.stream.read(&mut self.rbuf[carry_len..]) {
                    Ok(0) => (0, true),
                    Ok(n) => (n, false),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if carry_len == 0 || !conn.has(AGAIN) {
                            break;
                        }
                        (0, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("read: {e}");
                        self.remove(slot);
                        return;
                    }
                }
            };
            if let Some(b) = conn.bufs.as_mut() {
                self.rbuf[..carry_len].copy_from_slice(&b.carry);
                b.carry.clear();
            }
            let input = &mut self.rbuf[..carry_len + n];
            let consumed = process(conn, &mut self.env, &mut self.handler, slot, input);
            if consumed < input.len() {
                let rest = &input[consumed..];
                conn.bufs_mut(&mut self.env).carry.extend_from_slice(rest);
            }
            if eof {
                self.on_eof(slot);
                return;
            }
            reads += 1;
            if n < room || (consumed == 0 && n == 0) {
                break; // a short read: the socket is drained
            }
            if reads == READ_BUDGET_READS {
                if !conn.has(AGAIN) {
                    conn.flags |= AGAIN;
                    self.again.push(slot);
                }
                break;
            }
        }
        self.settle(slot);
        self.mark_dirty(slot);
    }

    fn on_eof(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if conn.state == State::Open {
                log::debug!("connection {slot} closed without a close frame");
            }
        }
        self.remove(slot);
    }

    /// Calls `on_close` once the connection is no longer open.
    fn settle(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.state != State::Open && conn.has(OPENED) && !conn.has(NOTIFIED) {
            let code = CloseCode(conn.close_code);
            notify_close(conn, &mut self.env, &mut self.handler, slot, code, "");
        }
    }

    fn fan_out(&mut self) {
        if self.env.local_broadcasts.is_empty() && self.remote_broadcasts.is_empty() {
            return;
        }
        let local = std::mem::take(&mut self.env.local_broadcasts);
        if !local.is_empty() {
            let me = self.env.reactor_id;
            for (i, inbox) in self.env.handle.shared.inboxes.iter().enumerate() {
                if i != me {
                    self.env.handle.post(inbox, Command::Broadcast(local.clone()));
                }
            }
        }
        let remote = std::mem::take(&mut self.remote_broadcasts);
        for (slot, conn) in self.conns.iter_mut() {
            if conn.state != State::Open {
                continue;
            }
            for frame in local.iter().chain(remote.iter()) {
                let _ = conn.send_shared(&mut self.env, frame);
            }
            if !conn.has(DIRTY) {
                conn.flags |= DIRTY;
                self.dirty.push(slot);
            }
        }
        // Keep the allocations for the next turn.
        let (mut local, mut remote) = (local, remote);
        local.clear();
        remote.clear();
        self.env.local_broadcasts = local;
        self.remote_broadcasts = remote;
    }

    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        conn.flags &= !DIRTY;
        let drained = match conn.bufs.as_mut() {
            Some(b) if !b.out.is_empty() => match b.out.flush(&mut conn.stream, &mut self.env.chunks) {
                Ok(drained) => drained,
                Err(e) => {
                    log::debug!("write: {e}");
                    self.remove(slot);
                    return;
                }
            },
            _ => true,
        };
        if !drained {
            conn.flags |= WRITE_BLOCKED;
        } else if conn.has(WRITE_BLOCKED) {
            conn.flags &= !WRITE_BLOCKED;
            if conn.state == State::Open {
                let mut cx = Ctx::new(conn, &mut self.env, slot);
                self.handler.on_drain(&mut cx);
                // Anything sent from on_drain goes out next turn.
                self.settle(slot);
                self.mark_dirty(slot);
            }
        }
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.has(READ_PAUSED) && conn.queued() < self.env.cfg.max_backpressure {
            conn.flags &= !READ_PAUSED;
            if !conn.has(AGAIN) {
                conn.flags |= AGAIN;
                self.again.push(slot);
            }
        }
        match conn.state {
            State::Draining if drained => {
                self.remove(slot);
                return;
            }
            State::Closing if drained && !conn.has(SHUT_WR) => {
                conn.flags |= SHUT_WR;
                if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                    log::debug!("shutdown: {e}");
                }
            }
            _ => {}
        }
        conn.release_if_idle(&mut self.env);
    }

    fn expire_closing(&mut self) {
        while let Some(&(deadline, slot, generation)) = self.env.closing.front() {
            if deadline > self.env.now {
                break;
            }
            self.env.closing.pop_front();
            let expired = self.conns.get(slot).is_some_and(|c| {
                c.generation == generation && matches!(c.state, State::Closing | State::Draining)
            });
            if expired {
                log::debug!("connection {slot}: close timeout");
                self.remove(slot);
            }
        }
    }

    /// Ends a connection: `on_close` (1006) if it was never told, then the
    /// socket is closed and the slot freed.
    fn remove(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.has(OPENED) && !conn.has(NOTIFIED) {
            notify_close(conn, &mut self.env, &mut self.handler, slot, CloseCode::ABNORMAL, "");
        }
        let mut conn = self.conns.remove(slot);
        if conn.has(OPENED) {
            self.env.handle.closed();
        }
        conn.release_all(&mut self.env);
    }

    fn drop_all(&mut self) {
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.remove(slot);
        }
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_emfile) if libc_emfile == 24 || libc_emfile == 23)
}

fn notify_close<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    code: CloseCode,
    reason: &str,
) {
    conn.flags |= NOTIFIED;
    let mut cx = Ctx::new(conn, env, slot);
    handler.on_close(&mut cx, code, reason);
}

/// Processes `input` for one connection; returns how many bytes were used.
/// The rest (a partial head or frame, or input left while reading is paused)
/// is the caller's to keep.
fn process<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    input: &mut [u8],
) -> usize {
    let mut pos = 0;
    loop {
        match conn.state {
            State::Handshake => match handshake::parse_request(&input[pos..], env.cfg.max_head_size)
            {
                Ok(None) => return pos,
                Ok(Some((req, n))) => {
                    upgrade(conn, env, handler, slot, req);
                    pos += n;
                }
                Err(e) => {
                    log::info!("{}: bad upgrade request: {} {}", peer(conn), e.status, e.reason);
                    env.scratch.clear();
                    e.write_response(&mut env.scratch);
                    refuse(conn, env, slot);
                    return input.len();
                }
            },
            State::Draining => return input.len(),
            State::Open | State::Closing => {
                if conn.has(DISCARD) {
                    return input.len();
                }
                if conn.state == State::Open && conn.queued() >= env.cfg.max_backpressure {
                    conn.flags |= READ_PAUSED;
                    return pos;
                }
                match conn.decoder.decode(&mut input[pos..], &env.decoder) {
                    Ok(Decoded::NeedMore) => return pos,
                    Ok(Decoded::Progress { consumed, event }) => {
                        pos += consumed;
                        if let Some(event) = event {
                            on_event(conn, env, handler, slot, event);
                        }
                    }
                    Err(e) => {
                        fail(conn, env, handler, slot, e);
                        return input.len();
                    }
                }
            }
        }
    }
}

fn peer<C>(conn: &Conn<C>) -> String {
    conn.stream.peer_addr().map_or_else(|_| "unknown peer".into(), |a| a.to_string())
}

/// Decides an upgrade request and queues the 101 (or the refusal).
fn upgrade<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    req: Request<'_>,
) {
    let req = match conn.stream.peer_addr() {
        Ok(addr) => req.with_peer_addr(addr),
        Err(_) => req,
    };
    if !env.handle.try_open() {
        log::info!("{}: refused: at max connections", peer(conn));
        reject(conn, env, slot, &Reject::new(503, "server is at its connection limit"));
        return;
    }
    let accept: Accept<H::Conn> = match handler.on_upgrade(&req) {
        Ok(accept) => accept,
        Err(no) => {
            env.handle.closed();
            log::debug!("{}: upgrade rejected by the handler: {}", peer(conn), no.status);
            reject(conn, env, slot, &no);
            return;
        }
    };
    let protocol = accept.protocol.as_deref().filter(|p| {
        let offered = req.offers_protocol(p);
        if !offered {
            log::error!("the handler chose subprotocol {p:?}, which the client did not offer");
        }
        offered
    });
    let headers: Vec<(&str, &str)> =
        accept.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    env.scratch.clear();
    let written =
        handshake::write_accept_response(&mut env.scratch, req.key().as_bytes(), protocol, None, &headers);
    if let Err(e) = written {
        env.handle.closed();
        log::error!("the handler gave an invalid response header: {e:?}");
        reject(conn, env, slot, &Reject::new(500, "internal error"));
        return;
    }
    let Env { scratch, .. } = env;
    let response = std::mem::take(scratch);
    conn.send_raw(env, &response);
    env.scratch = response;
    conn.data = accept.data;
    conn.state = State::Open;
    conn.flags |= OPENED;
    let mut cx = Ctx::new(conn, env, slot);
    handler.on_open(&mut cx);
}

fn reject<C>(conn: &mut Conn<C>, env: &mut Env, slot: usize, no: &Reject) {
    let headers: Vec<(&str, &str)> =
        no.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    env.scratch.clear();
    if handshake::write_reject_response(&mut env.scratch, no.status, &no.reason, &headers).is_err()
    {
        env.scratch.clear();
        let _ = handshake::write_reject_response(&mut env.scratch, 500, "internal error", &[]);
    }
    refuse(conn, env, slot);
}

/// Queues the HTTP response in `env.scratch` and closes after it.
fn refuse<C>(conn: &mut Conn<C>, env: &mut Env, slot: usize) {
    let response = std::mem::take(&mut env.scratch);
    conn.send_raw(env, &response);
    env.scratch = response;
    conn.state = State::Closing;
    conn.flags |= DISCARD;
    env.arm_close_timeout(slot, conn.generation);
}

/// Fails the connection: close with the RFC's code and ignore further input.
fn fail<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    e: ProtoError,
) {
    let code = e.close_code();
    log::info!("{}: {e}; closing with {}", peer(conn), code.0);
    if let Some(b) = conn.bufs.as_mut() {
        b.message.clear();
    }
    conn.begin_close(env, slot, code, e.reason());
    conn.flags |= DISCARD;
    if conn.has(OPENED) && !conn.has(NOTIFIED) {
        notify_close(conn, env, handler, slot, code, "");
    }
}

fn on_event<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    event: Event<'_>,
) {
    match event {
        Event::Text(text) => deliver(conn, env, handler, slot, Message::Text(text)),
        Event::Binary(bytes) => deliver(conn, env, handler, slot, Message::Binary(bytes)),
        Event::Fragment { data, first, fin, text, compressed: _ } => {
            if conn.state != State::Open {
                return;
            }
            let b = conn.bufs_mut(env);
            if first {
                b.message.clear();
            }
            b.message.extend_from_slice(data);
            if !fin {
                return;
            }
            let whole = std::mem::take(&mut b.message);
            if text {
                match std::str::from_utf8(&whole) {
                    Ok(s) => deliver(conn, env, handler, slot, Message::Text(s)),
                    Err(_) => fail(conn, env, handler, slot, ProtoError::InvalidUtf8),
                }
            } else {
                deliver(conn, env, handler, slot, Message::Binary(&whole));
            }
            let mut whole = whole;
            whole.clear();
            if let Some(b) = conn.bufs.as_mut() {
                if b.message.capacity() == 0 {
                    b.message = whole;
                }
            }
        }
        Event::Ping(payload) => {
            if conn.state == State::Open {
                conn.send_control(env, OpCode::Pong, payload);
            }
        }
        Event::Pong(_) => {}
        Event::Close(code, reason) => match conn.state {
            State::Open => {
                // Echo the code (RFC 6455 §5.5.1); an empty close gets an empty reply.
                let echo = if code == CloseCode::NO_STATUS { &[][..] } else { &code.0.to_be_bytes()[..] };
                conn.send_control(env, OpCode::Close, echo);
                conn.state = State::Draining;
                notify_close(conn, env, handler, slot, code, reason);
            }
            State::Closing => conn.state = State::Draining,
            State::Handshake | State::Draining => {}
        },
    }
}

fn deliver<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    msg: Message<'_>,
) {
    if conn.state != State::Open {
        return;
    }
    let mut cx = Ctx::new(conn, env, slot);
    handler.on_message(&mut cx, msg);
}
