//! From bytes read to protocol events: the upgrade request and its answer,
//! frames decoded in place from the reactor's read buffer, messages
//! reassembled (and inflated) and handed to the handler, and the RFC's
//! answer to bad input. Nothing here touches the poller; the socket only for
//! the peer's address in log lines.

use super::handler::{Accept, Ctx, Handler, Reject};
use crate::message::Message;
use crate::proto::deflate::InflateError;
use crate::proto::frame::{self, OpCode};
use crate::proto::handshake::{self, HandshakeError, Request};
use crate::proto::utf8::Utf8Validator;
use crate::proto::{CloseCode, Decoded, Event, ProtoError};
use crate::stats::Counter;

use super::Env;
use super::conn::{
    self, Conn, DEFLATE, DISCARD, NOTIFIED, OPENED, PUBLISHER, READ_PAUSED, STARVED, State,
};
use super::memory::reserve_within;

/// Tells the handler the connection is closed (once; `NOTIFIED` marks it).
pub(super) fn notify_close<H: Handler>(
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
pub(super) fn process<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    input: &mut [u8],
) -> usize {
    let mut pos = 0;
    loop {
        match conn.state {
            State::Handshake => {
                match handshake::parse_request(&input[pos..], env.cfg.max_head_size) {
                    Ok(None) => return pos,
                    Ok(Some((req, n))) => {
                        upgrade(conn, env, handler, slot, req);
                        pos += n;
                    }
                    Err(e) => {
                        log::info!(
                            "{}: bad upgrade request: {} {}",
                            peer(conn),
                            e.status,
                            e.reason
                        );
                        env.scratch.clear();
                        e.write_response(&mut env.scratch);
                        refuse(conn, env, slot);
                        return input.len();
                    }
                }
            }
            State::Draining => return input.len(),
            State::Open | State::Closing => {
                if conn.has(DISCARD) {
                    return input.len();
                }
                if conn.state == State::Open && !can_take_next(conn, env, slot, &input[pos..]) {
                    conn.flags |= READ_PAUSED;
                    return pos;
                }
                let mut limits = if conn.has(DEFLATE) { env.decoder_rsv1 } else { env.decoder };
                if conn.max_message_kib != 0 {
                    limits.max_message_size = conn.max_message_size(env);
                }
                match conn.decoder.decode(&mut input[pos..], &limits) {
                    Ok(Decoded::NeedMore) => return pos,
                    Ok(Decoded::Progress { consumed, event }) => {
                        pos += consumed;
                        if let Some(event) = event {
                            on_event(conn, env, handler, slot, event);
                        }
                    }
                    Err(e) => {
                        fail(conn, env, handler, slot, e.close_code(), e.reason());
                        return input.len();
                    }
                }
            }
        }
    }
}

/// Whether the output queue could take a reply as large as the next
/// message, under its cap and in the memory budget. Reading stops before a
/// handler would have to drop a reply, so a client that sends faster than
/// it reads meets TCP backpressure instead of losing messages (and the
/// queue stays under its cap). A publisher meets it too while the budget
/// has no room for its next publish (the reactors' inboxes hold them until
/// they are fanned out). A connection paused for the budget is listed in
/// `env.starved`, to read again once there is room.
fn can_take_next<C>(conn: &mut Conn<C>, env: &mut Env, slot: usize, input: &[u8]) -> bool {
    let queued = conn.queued();
    let publisher = conn.has(PUBLISHER);
    if queued == 0 && !publisher {
        return true;
    }
    let cap = env.cfg.max_backpressure;
    if queued >= cap || !conn.decoder.at_frame_start() {
        return queued < cap;
    }
    // The common case, a small frame, from its second byte alone (a control
    // frame or a partial header only makes this a little conservative).
    let next = match input.get(1).map(|b| b & 0x7f) {
        Some(len @ 0..=125) => u64::from(len),
        _ => match frame::parse_header(input) {
            Ok(Some(h)) if !h.opcode.is_control() => h.payload_len,
            _ => 0,
        },
    };
    let message = conn.decoder.message_len().saturating_add(next);
    let reply = usize::try_from(message).map_or(usize::MAX, conn::frame_len);
    if queued > 0 && queued.saturating_add(reply) > cap {
        return false;
    }
    conn.account(env);
    if reply <= env.memory_room() {
        return true;
    }
    if !conn.has(STARVED) {
        conn.flags |= STARVED;
        env.starved.push(slot);
    }
    false
}

/// The peer's address, for log lines.
pub(super) fn peer<C>(conn: &Conn<C>) -> String {
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
    let agreed = match env.deflate.negotiate(&req) {
        Ok(agreed) => agreed,
        Err(e) => {
            let e = HandshakeError::from(e);
            log::info!("{}: bad upgrade request: {} {}", peer(conn), e.status, e.reason);
            env.scratch.clear();
            e.write_response(&mut env.scratch);
            refuse(conn, env, slot);
            return;
        }
    };
    if env.handle.shared.budget.nearly_spent() {
        log::info!("{}: refused: the memory budget is nearly spent", peer(conn));
        env.counters.inc(Counter::MemoryRefused);
        reject(conn, env, slot, &Reject::new(503, "server is at its memory limit"));
        return;
    }
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
    let extension = agreed.map(|a| a.response_header());
    env.scratch.clear();
    let written = handshake::write_accept_response(
        &mut env.scratch,
        req.key().as_bytes(),
        protocol,
        extension.as_deref(),
        &headers,
    );
    if let Err(e) = written {
        env.handle.closed();
        log::error!("the handler gave an invalid response header: {e:?}");
        reject(conn, env, slot, &Reject::new(500, "internal error"));
        return;
    }
    let response = std::mem::take(&mut env.scratch);
    conn.send_raw(env, &response);
    env.scratch = response;
    conn.data = accept.data;
    conn.state = State::Open;
    conn.flags |= OPENED;
    if let Some(agreed) = agreed {
        env.deflate.open(slot, agreed);
        conn.flags |= DEFLATE;
    }
    conn.last_msg = env.tick;
    env.counters.inc(Counter::Upgraded);
    env.schedule(slot, conn);
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
    conn.last_msg = env.tick;
    env.counters.inc(Counter::Rejected);
    env.schedule(slot, conn);
}

/// Fails the connection: close with the RFC's code and ignore further input.
fn fail<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    code: CloseCode,
    reason: &str,
) {
    log::info!("{}: {reason}; closing with {}", peer(conn), code.0);
    env.counters.inc(Counter::ProtocolErrors);
    abort(conn, env, handler, slot, code, reason);
}

/// A message outgrew what the memory budget has left: 1009, as for any
/// message too big now. One line per connection at debug; the reactor logs
/// how many at warn, at most once a tick.
fn over_budget<H: Handler>(conn: &mut Conn<H::Conn>, env: &mut Env, handler: &mut H, slot: usize) {
    log::debug!("{}: a message outgrew the memory budget; closing with 1009", peer(conn));
    env.counters.inc(Counter::MemoryShed);
    env.outgrown += 1;
    abort(conn, env, handler, slot, CloseCode::TOO_BIG, "server memory limit");
}

/// Closes with `code`, ignores further input, and frees what the message held.
fn abort<H: Handler>(
    conn: &mut Conn<H::Conn>,
    env: &mut Env,
    handler: &mut H,
    slot: usize,
    code: CloseCode,
    reason: &str,
) {
    if let Some(b) = conn.bufs.as_mut() {
        // Nothing more is read: what the message held goes back at once.
        b.message = Vec::new();
    }
    conn.begin_close(env, slot, code, reason);
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
        Event::Fragment { data, first, fin, text, compressed } => {
            if conn.state != State::Open {
                return;
            }
            let max = conn.max_message_size(env);
            // The message grows only into what the memory budget has left.
            conn.account(env);
            let room = env.memory_room();
            let Env { bufs, deflate, .. } = env;
            let b = conn.bufs.get_or_insert_with(|| bufs.take_or(Box::default));
            if first {
                b.message.clear();
                b.utf8 = Utf8Validator::new();
            }
            if compressed {
                let before = b.message.len();
                // The inflater never lets the buffer's capacity pass its cap.
                let cap = max.min(b.message.capacity().saturating_add(room));
                let inflated = deflate.inflate(slot, data, fin, cap, &mut b.message);
                if let Err(e) = inflated {
                    b.message.clear();
                    if e == InflateError::TooBig && cap < max {
                        return over_budget(conn, env, handler, slot);
                    }
                    fail(conn, env, handler, slot, e.close_code(), e.reason());
                    return;
                }
                // Invalid UTF-8 fails the connection as soon as it is inflated,
                // not when the message ends.
                if text && b.utf8.feed(b.message.get(before..).unwrap_or_default()).is_err() {
                    b.message.clear();
                    let e = ProtoError::InvalidUtf8;
                    fail(conn, env, handler, slot, e.close_code(), e.reason());
                    return;
                }
            } else if reserve_within(&mut b.message, data.len(), room) {
                // (The decoder holds the message to its limit.)
                b.message.extend_from_slice(data);
            } else {
                return over_budget(conn, env, handler, slot);
            }
            if !fin {
                return;
            }
            let whole = std::mem::take(&mut b.message);
            if text {
                match std::str::from_utf8(&whole) {
                    Ok(s) => deliver(conn, env, handler, slot, Message::Text(s)),
                    Err(_) => {
                        let e = ProtoError::InvalidUtf8;
                        fail(conn, env, handler, slot, e.close_code(), e.reason());
                    }
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
                let echo =
                    if code == CloseCode::NO_STATUS { &[][..] } else { &code.0.to_be_bytes()[..] };
                conn.send_control(env, OpCode::Close, echo);
                conn.state = State::Draining;
                conn.last_msg = env.tick;
                env.schedule(slot, conn);
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
    conn.last_msg = env.tick;
    env.counters.inc(Counter::MessagesReceived);
    let mut cx = Ctx::new(conn, env, slot);
    handler.on_message(&mut cx, msg);
}
