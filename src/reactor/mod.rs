//! The reactor layer: the only code that touches sockets, the clock and the
//! poller. One [`Reactor`] per thread, each with its own `mio::Poll`, its own
//! SO_REUSEPORT listener, a slab of connections, one shared read buffer, and
//! an inbox for the rest of the world.
//!
//! A loop turn: poll; read every ready connection until the socket is
//! drained or its per-turn budget is spent (frames are parsed in place from
//! the shared buffer and handed to the handler), then flush its replies at
//! once; accept up to a slice of new connections, answering each upgrade
//! request on the spot (deferred accept hands a connection over with its
//! request); run inbox commands; fan out broadcasts and topic frames, flushing
//! each receiver as it is served; flush whatever else has output. A flush is
//! one `send` (small frames copied together) or `sendmsg` (big queues).

pub(crate) mod buf;
mod conn;
mod deflate;
pub(crate) mod door;
pub(crate) mod handler;
pub(crate) mod inbox;
mod input;
pub(crate) mod listener;
pub(crate) mod memory;
mod outq;
pub(crate) mod timer;
pub(crate) mod topics;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use self::buf::Pool;
pub(crate) use self::conn::Conn;
use self::conn::{
    AGAIN, Bufs, DEFLATE, DIRTY, NO_TIMER, NOTIFIED, OPENED, PENDING_INPUT, PING_OUT, READ_PAUSED,
    SHUT_WR, SocketWriter, State, TOPICS, Ticks, WRITE_BLOCKED, before,
};
use self::deflate::Deflate;
use self::door::ServerHandle;
use self::handler::{Ctx, Handler, SendStatus};
use self::inbox::{Command, Inbox};
use self::input::{notify_close, peer, process};
use self::timer::Wheel;
use self::topics::{Member, Topics};
use crate::config::{Config, SlowConsumer};
use crate::message::Frame;
use crate::proto::{CloseCode, DecoderConfig};
use crate::pubsub::TopicName;
use crate::stats::{Counter, Counters};

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// An empty ping from the server.
const PING: [u8; 2] = [0x89, 0x00];

/// How many bytes one connection may read per loop turn before the others get a go.
const READ_BUDGET_READS: usize = 4;

/// The smallest read, however little room the memory budget has left.
const MIN_READ: usize = 4096;
/// Slots in the timer wheel: with 100 ms ticks, one turn of the wheel is 102 s.
const WHEEL_SLOTS: usize = 1024;
/// Buffer sets kept for reuse: a publish to many subscribers borrows one per
/// subscriber for the turn, and giving most back to the allocator each turn
/// costs more than the ~350 bytes each keeps (at most ~1.4 MiB per reactor).
const POOLED_BUFS: usize = 4096;
/// The buffers those sets may keep in all (input, reassembly); past it, a set
/// goes back to the pool empty.
const POOLED_BUFS_BYTES: usize = 4 << 20;
/// Output chunks kept for reuse, and the bytes they may keep in all.
const POOLED_CHUNKS: usize = 256;
const POOLED_CHUNKS_BYTES: usize = 2 << 20;
/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections accepted (and their requests answered) per loop turn: a
/// reconnect storm is taken in slices, between which the open connections
/// are served, rather than all at once.
const ACCEPTS_PER_TURN: usize = 64;

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
    /// The decoder's limits for connections that negotiated compression.
    decoder_rsv1: DecoderConfig,
    pub(crate) deflate: Deflate,
    pub(crate) counters: Arc<Counters>,
    /// Timeouts: one entry per connection at most, re-armed lazily.
    wheel: Wheel,
    /// The timeouts in ticks.
    ticks: Ticks,
    /// The current tick of the wheel (a cheap clock for stamps).
    pub(crate) tick: u32,
    /// Frames broadcast by this reactor's handlers this turn.
    local_broadcasts: Vec<Frame>,
    /// This reactor's handlers published this turn: the frames wait in its
    /// own inbox (in seq order with everyone else's), not woken.
    pub(crate) posted_to_self: bool,
    /// This reactor's subscriber sets.
    pub(crate) topics: Topics,
    /// Scratch space for HTTP responses.
    scratch: Vec<u8>,
    /// Scratch space for copying small output chunks into one write.
    gather: Vec<u8>,
    /// Bytes this reactor's connections hold in buffers (the memory budget's count).
    pub(crate) held: usize,
    /// `held` (with compression contexts) as last posted to the budget.
    held_posted: usize,
    /// The heap bytes of the connection slab (it only grows).
    slab_bytes: usize,
    /// The tick of the last shedding (at most one per tick).
    last_shed: u32,
    /// Connections closed since the last warning because a message outgrew
    /// the memory budget.
    outgrown: u32,
    /// The tick of the last such warning (at most one per tick).
    last_warned: u32,
    /// Connections whose reading paused for want of room in the memory budget.
    pub(crate) starved: Vec<usize>,
    /// The highest count since malloc last gave memory back, and the tick then.
    trim_mark: usize,
    last_trim: u32,
}

impl Env {
    pub(crate) fn broadcast_local(&mut self, frame: Frame) {
        self.local_broadcasts.push(frame);
    }

    /// Makes sure the wheel holds an entry for the connection's next
    /// deadline. A later deadline needs no new entry: the earlier one fires,
    /// finds nothing due, and re-arms.
    pub(crate) fn schedule<C>(&mut self, slot: usize, conn: &mut Conn<C>) {
        let Some(due) = conn.next_deadline(&self.ticks) else { return };
        if conn.timer_due == NO_TIMER || before(due, conn.timer_due) {
            conn.timer_due = due;
            self.wheel.arm(slot as u32, conn.generation, due);
        }
    }

    /// Counts a refused send.
    pub(crate) fn dropped(&self) -> SendStatus {
        self.counters.inc(Counter::SendsDropped);
        SendStatus::Dropped
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
    remote_broadcasts: Vec<Frame>,
    /// Topic frames that arrived through the inbox this turn (this reactor's
    /// own publishes too), each topic's in seq order.
    publishes: Vec<(TopicName, u64, Frame)>,
    /// Scratch copy of a topic's members (they may change during delivery).
    members: Vec<Member>,
    /// Scratch: the members a publish passes over (they joined after it).
    skip: Vec<Member>,
    /// Scratch list of slots (reused to avoid an allocation per fan-out).
    slots: Vec<usize>,
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
        parts: Parts,
        handler: H,
        cfg: Arc<Config>,
        handle: ServerHandle,
    ) -> Self {
        let rbuf = vec![0u8; cfg.read_buffer_size].into_boxed_slice();
        let decoder =
            DecoderConfig { max_message_size: cfg.max_message_size, ..DecoderConfig::default() };
        let t = cfg.timeouts;
        let in_ticks = |d: Duration| -> u32 {
            if d.is_zero() {
                return 0;
            }
            let n = d.as_nanos().div_ceil(t.tick.as_nanos()).max(1);
            // Keep far below the wrap-around horizon of tick arithmetic.
            u32::try_from(n).unwrap_or(u32::MAX).min(u32::MAX / 4)
        };
        let ticks = Ticks {
            handshake: in_ticks(t.handshake),
            ping: in_ticks(t.ping_interval),
            pong: in_ticks(t.pong),
            idle: in_ticks(t.idle),
            close: in_ticks(t.close),
            write_stall: in_ticks(t.write_stall),
        };
        let counters = Arc::clone(&handle.shared.counters[id]);
        let deflate = Deflate::new(cfg.deflate, Arc::clone(&counters));
        let topics = Topics::new(cfg.slow_consumer.clone(), Arc::clone(&handle.shared.unpublished));
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
                bufs: Pool::with_byte_cap(POOLED_BUFS, POOLED_BUFS_BYTES),
                chunks: Pool::with_byte_cap(POOLED_CHUNKS, POOLED_CHUNKS_BYTES),
                decoder,
                decoder_rsv1: DecoderConfig { allow_rsv1: true, ..decoder },
                deflate,
                counters,
                wheel: Wheel::new(t.tick, WHEEL_SLOTS, Instant::now()),
                ticks,
                tick: 0,
                local_broadcasts: Vec::new(),
                posted_to_self: false,
                topics,
                scratch: Vec::new(),
                gather: Vec::with_capacity(outq::GATHER_LIMIT),
                held: 0,
                held_posted: 0,
                slab_bytes: 0,
                outgrown: 0,
                last_warned: u32::MAX,
                starved: Vec::new(),
                trim_mark: 0,
                last_trim: u32::MAX,
                last_shed: u32::MAX,
            },
            rbuf,
            again: Vec::new(),
            dirty: Vec::new(),
            remote_broadcasts: Vec::new(),
            publishes: Vec::new(),
            skip: Vec::new(),
            members: Vec::new(),
            slots: Vec::new(),
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
            self.env.wheel.advance(now, &mut self.fired);
            self.env.tick = self.env.wheel.now_tick();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_more = true,
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
            // New connections after the ready ones: a slice per turn.
            if std::mem::take(&mut self.accept_more) {
                self.accept();
            }
            self.turn_end(now);
            if self.finished(now) {
                self.drop_all();
                return Ok(());
            }
        }
    }

    /// The work after the events of a turn: leftover reads, broadcasts,
    /// flushes, timeouts.
    fn turn_end(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        for entry in fired.drain(..) {
            self.on_timer(entry);
        }
        self.fired = fired;
        let mut again = std::mem::take(&mut self.again);
        for slot in again.drain(..) {
            if let Some(c) = self.conns.get_mut(slot) {
                c.flags &= !AGAIN;
                self.pump(slot);
            }
        }
        if self.again.is_empty() {
            self.again = again; // keep the allocation
        }
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.accept();
        }
        if std::mem::take(&mut self.env.posted_to_self) {
            self.run_commands();
        }
        self.fan_out();
        self.deliver_topics();
        let mut dirty = std::mem::take(&mut self.dirty);
        for slot in dirty.drain(..) {
            self.flush(slot);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        self.check_memory();
        self.feed_starved();
        self.env.counters.set(Counter::Topics, self.env.topics.len() as u64);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty()
            || !self.dirty.is_empty()
            || self.env.posted_to_self
            || self.accept_more
        {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        [self.env.wheel.next_wakeup(), self.shutdown_at, self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn finished(&self, now: Instant) -> bool {
        self.shutdown_at.is_some_and(|t| self.conns.is_empty() || t <= now)
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
        let deferred = !self.env.cfg.defer_accept.is_zero();
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((mut stream, _peer)) => {
                    // TCP_NODELAY comes from the listener.
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                        log::warn!("could not register a connection: {e}");
                        continue;
                    }
                    self.next_generation = self.next_generation.wrapping_add(1);
                    entry.insert(Conn::new(stream, self.next_generation, self.env.tick));
                    self.env.slab_bytes = self.conns.capacity() * size_of::<Conn<H::Conn>>();
                    let Some(conn) = self.conns.get_mut(token.0) else { continue };
                    self.env.schedule(token.0, conn);
                    self.env.counters.inc(Counter::Accepted);
                    if deferred {
                        // The request is most likely here already: answer it
                        // now rather than after another trip through poll.
                        self.pump(token.0);
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
        self.env.handle.shared.budget.taken(bytes);
        for cmd in commands.drain(..) {
            match cmd {
                Command::Broadcast(frames) => self.remote_broadcasts.extend(frames),
                Command::Publish(topic, seq, frame) => self.publishes.push((topic, seq, frame)),
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
            // Input that cannot be processed yet (reading paused) is set aside
            // in the connection's carry: as the memory budget fills, each read
            // may take only an eighth of what is left, so all those carries
            // together stay within it.
            let allowance = (self.env.memory_room() / 8).max(MIN_READ);
            let room = (self.rbuf.len() - carry_len).min(allowance);
            let (n, eof) = if room == 0 {
                (0, false)
            } else {
                match conn.stream.read(&mut self.rbuf[carry_len..carry_len + room]) {
                    Ok(0) => (0, true),
                    Ok(n) => {
                        conn.last_read = self.env.tick;
                        if conn.has(PING_OUT) {
                            // Answered: the next ping is due a ping interval
                            // from now, earlier than the pong deadline armed.
                            conn.flags &= !PING_OUT;
                            self.env.schedule(slot, conn);
                        }
                        (n, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !conn.has(PENDING_INPUT) {
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
            conn.flags &= !PENDING_INPUT;
            let input = &mut self.rbuf[..carry_len + n];
            let consumed = process(conn, &mut self.env, &mut self.handler, slot, input);
            if consumed < input.len() {
                let rest = &input[consumed..];
                conn.bufs_mut(&mut self.env).carry.extend_from_slice(rest);
                if conn.has(READ_PAUSED) {
                    conn.flags |= PENDING_INPUT;
                }
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
        // Replies go out now, not at the end of the turn: the same one write,
        // without waiting for the other connections' reads.
        self.flush(slot);
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
        let mut slots = std::mem::take(&mut self.slots);
        slots.extend(self.conns.iter().filter(|(_, c)| c.state == State::Open).map(|(s, _)| s));
        for &slot in &slots {
            let Some(conn) = self.conns.get_mut(slot) else { continue };
            for frame in local.iter().chain(remote.iter()) {
                let _ = conn.send_shared(&mut self.env, slot, frame);
            }
            // Flush now rather than at the end of the turn, so the buffers go
            // back to the pool one connection at a time: a broadcast to N
            // connections never holds N buffer sets at once.
            self.flush(slot);
        }
        slots.clear();
        self.slots = slots;
        // Keep the allocations for the next turn.
        let (mut local, mut remote) = (local, remote);
        local.clear();
        remote.clear();
        self.env.local_broadcasts = local;
        self.remote_broadcasts = remote;
    }

    /// Hands this turn's topic frames to the topics' subscribers here, in
    /// publish order, applying each topic's slow-consumer policy. A member
    /// whose subscription starts after a publish's seq is passed over for it.
    fn deliver_topics(&mut self) {
        if self.publishes.is_empty() {
            return;
        }
        let mut publishes = std::mem::take(&mut self.publishes);
        let mut members = std::mem::take(&mut self.members);
        let (first, first_seq, _) = &publishes[0];
        // One topic this turn and nobody to pass over (the common case)?
        let one_pass = match publishes.iter().all(|(t, _, _)| t == first) {
            true => self.env.topics.id(first.as_str()),
            false => None,
        }
        .filter(|&id| !self.env.topics.has_joiners_until(id, *first_seq));
        if let Some(id) = one_pass {
            // Each subscriber gets all of its frames and is flushed at once, in
            // one pass over the members, so its buffers go back to the pool
            // before the next one's are taken.
            let last_seq = publishes.iter().map(|p| p.1).max().unwrap_or(0);
            self.env.topics.start_delivery(id, last_seq, &mut self.skip);
            let (policy, tag) = self.env.topics.policy(id);
            members.extend_from_slice(self.env.topics.members(id));
            for m in members.drain(..) {
                let slot = m.slot as usize;
                let live = publishes.iter().all(|(_, _, frame)| {
                    self.queue_topic_frame(slot, m.generation, frame, tag, policy)
                });
                if live {
                    self.flush(slot);
                }
            }
        } else {
            let mut skip = std::mem::take(&mut self.skip);
            for (topic, seq, frame) in &publishes {
                let Some(id) = self.env.topics.id(topic.as_str()) else { continue };
                self.env.topics.start_delivery(id, *seq, &mut skip);
                let (policy, tag) = self.env.topics.policy(id);
                members.extend_from_slice(self.env.topics.members(id));
                for m in members.drain(..) {
                    if !skip.is_empty() && skip.binary_search(&m).is_ok() {
                        continue;
                    }
                    let slot = m.slot as usize;
                    if self.queue_topic_frame(slot, m.generation, frame, tag, policy) {
                        self.mark_dirty(slot);
                    }
                }
            }
            self.skip = skip;
        }
        publishes.clear();
        self.publishes = publishes;
        self.members = members;
    }

    /// Queues a topic's frame (tagged `tag`) for the connection in `slot` (if
    /// it is still generation `generation`) under the topic's slow-consumer
    /// `policy`; false if nothing more can go to it this turn.
    fn queue_topic_frame(
        &mut self,
        slot: usize,
        generation: u32,
        frame: &Frame,
        tag: u32,
        policy: SlowConsumer,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(slot) else { return false };
        if conn.generation != generation {
            return false;
        }
        let status = conn.send_topic(&mut self.env, slot, frame, tag, policy);
        if status == SendStatus::Dropped && conn.is_open() && policy == SlowConsumer::Close {
            log::info!("{}: slow consumer; closing with 1008", peer(conn));
            self.env.counters.inc(Counter::SlowConsumers);
            conn.begin_close(&mut self.env, slot, CloseCode::POLICY, "slow consumer");
            self.settle(slot);
        }
        true
    }

    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        conn.flags &= !DIRTY;
        let was_blocked = conn.has(WRITE_BLOCKED);
        let drained = match conn.bufs.as_mut() {
            Some(b) if !b.out.is_empty() => {
                let before = b.out.queued();
                let mut sock = SocketWriter(&conn.stream);
                match b.out.flush(&mut sock, &mut self.env.chunks, &mut self.env.gather) {
                    Ok(drained) => {
                        if b.out.queued() < before || !was_blocked {
                            b.last_progress = self.env.tick;
                        }
                        drained
                    }
                    Err(e) => {
                        log::debug!("write: {e}");
                        self.remove(slot);
                        return;
                    }
                }
            }
            _ => true,
        };
        if !drained {
            conn.flags |= WRITE_BLOCKED;
            if !was_blocked {
                self.env.schedule(slot, conn);
            }
        } else if was_blocked {
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
        conn.account(&mut self.env);
        conn.release_if_idle(&mut self.env);
    }

    /// A timer entry came due: act on whichever of the connection's
    /// deadlines has passed, then arm the next one.
    fn on_timer(&mut self, entry: timer::Entry) {
        let slot = entry.key as usize;
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.generation != entry.generation || conn.timer_due != entry.due {
            return; // cancelled or re-armed since
        }
        conn.timer_due = NO_TIMER;
        let t = self.env.ticks;
        let now = self.env.tick;
        let elapsed = |since: u32| now.wrapping_sub(since);
        match conn.state {
            State::Handshake if elapsed(conn.last_msg) >= t.handshake => {
                log::debug!("{}: handshake timeout", peer(conn));
                self.env.counters.inc(Counter::HandshakeTimeouts);
                self.remove(slot);
                return;
            }
            State::Closing | State::Draining if elapsed(conn.closing_since()) >= t.close => {
                log::debug!("{}: close timeout", peer(conn));
                self.env.counters.inc(Counter::CloseTimeouts);
                self.remove(slot);
                return;
            }
            State::Open => {
                let stalled = conn.has(WRITE_BLOCKED)
                    && t.write_stall > 0
                    && conn
                        .bufs
                        .as_ref()
                        .is_some_and(|b| elapsed(b.last_progress) >= t.write_stall);
                if stalled {
                    log::info!("{}: output stalled; dropping the connection", peer(conn));
                    self.env.counters.inc(Counter::WriteStalls);
                    self.remove(slot);
                    return;
                }
                if conn.has(PING_OUT) && elapsed(conn.last_read) >= t.ping + t.pong {
                    log::debug!("{}: no answer to a ping; dropping the connection", peer(conn));
                    self.env.counters.inc(Counter::PongTimeouts);
                    self.remove(slot);
                    return;
                }
                if t.idle > 0 && elapsed(conn.last_msg) >= t.idle {
                    self.env.counters.inc(Counter::IdleTimeouts);
                    conn.begin_close(&mut self.env, slot, CloseCode::GOING_AWAY, "idle timeout");
                    self.settle(slot);
                    self.mark_dirty(slot);
                    return;
                }
                if t.ping > 0 && !conn.has(PING_OUT) && elapsed(conn.last_read) >= t.ping {
                    conn.flags |= PING_OUT;
                    self.env.counters.inc(Counter::PingsSent);
                    if !self.write_now(slot, &PING) {
                        return;
                    }
                }
            }
            State::Handshake | State::Closing | State::Draining => {}
        }
        if let Some(conn) = self.conns.get_mut(slot) {
            self.env.schedule(slot, conn);
        }
    }

    /// Writes `bytes` at once when nothing else is queued, so that a burst of
    /// pings to many idle connections allocates nothing; queues what the
    /// socket does not take. False if the connection failed and is gone.
    fn write_now(&mut self, slot: usize, bytes: &[u8]) -> bool {
        let Some(conn) = self.conns.get_mut(slot) else { return false };
        let written = if conn.queued() == 0 {
            match conn.stream.write(bytes) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    log::debug!("write: {e}");
                    self.remove(slot);
                    return false;
                }
            }
        } else {
            0
        };
        if written < bytes.len() {
            conn.send_raw(&mut self.env, &bytes[written..]);
            self.mark_dirty(slot);
        }
        true
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
        if conn.has(DEFLATE) {
            self.env.deflate.close(slot);
        }
        if conn.has(TOPICS) {
            self.env.topics.remove_conn(slot);
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

/// EMFILE or ENFILE: the process or the system is out of file descriptors.
fn is_out_of_fds(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}
