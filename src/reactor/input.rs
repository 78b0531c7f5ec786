//! From bytes read to the handler's callbacks: input goes through the
//! connection's protocol state ([`Connection::handle_input`]), and what
//! comes out (an upgrade request, a message, a close, a failure) is decided
//! on, counted, logged and handed to the [`Handler`]. Flow control (reading
//! only what a reply can be queued for) and the memory budget's room are
//! applied here. Nothing here touches the poller; the socket only for the
//! peer's address in log lines.
//!
//! [`Connection::handle_input`]: crate::proto::Connection::handle_input

use super::conn::{Conn, Flag, Lent, Queue};
use super::handler::{Accept, Ctx, Handler, Reject};
use super::state::ReactorState;
use crate::proto::CloseCode;
use crate::proto::connection::{Event, Failure, Input, Limits, Upgrade, frame_len};
use crate::proto::handshake::{HandshakeError, Request};
use crate::stats::Counter;

/// Tells the handler the connection is closed (once; `Notified` marks it).
pub(super) fn notify_close<H: Handler>(
    conn: &mut Conn<H::Conn>,
    st: &mut ReactorState,
    handler: &mut H,
    slot: usize,
    code: CloseCode,
    reason: &str,
) {
    conn.flags.set(Flag::Notified);
    let mut cx = Ctx::new(conn, st, slot);
    handler.on_close(&mut cx, code, reason);
}

/// Processes `input` for one connection; returns how many bytes were used.
/// The rest (a partial head or frame, or input left while reading is paused)
/// is the caller's to keep.
pub(super) fn process<H: Handler>(
    conn: &mut Conn<H::Conn>,
    st: &mut ReactorState,
    handler: &mut H,
    slot: usize,
    input: &mut [u8],
) -> usize {
    let mut pos = 0;
    let mut message = conn.take_message();
    loop {
        if conn.is_open() && !can_take_next(conn, st, slot, &input[pos..]) {
            conn.flags.set(Flag::ReadPaused);
            break;
        }
        let limits = Limits {
            max_message_size: conn.max_message_size(st),
            max_head_size: st.cfg.max_head_size,
        };
        let tick = st.tick;
        let mut lent = Lent { bufs: &mut conn.bufs, st: &mut *st, slot };
        match conn.proto.handle_input(&mut input[pos..], &mut message, &limits, tick, &mut lent) {
            Input::NeedMore => break,
            Input::Progress { consumed, event } => {
                pos += consumed;
                if let Some(event) = event {
                    on_event(conn, st, handler, slot, event);
                }
            }
        }
    }
    conn.put_message(st, message);
    pos
}

/// Whether the output queue could take a reply as large as the next
/// message, under its cap and in the memory budget. Reading stops before a
/// handler would have to drop a reply, so a client that sends faster than
/// it reads meets TCP backpressure instead of losing messages (and the
/// queue stays under its cap). A publisher meets it too while the budget
/// has no room for its next publish (the reactors' inboxes hold them until
/// they are fanned out). A connection paused for the budget is listed in
/// `st.starved`, to read again once there is room.
fn can_take_next<C>(conn: &mut Conn<C>, st: &mut ReactorState, slot: usize, input: &[u8]) -> bool {
    let queued = conn.queued();
    if queued == 0 && !conn.is(Flag::Publisher) {
        return true;
    }
    let cap = st.cfg.max_backpressure;
    let next = conn.proto.next_message_len(input);
    let Some(message) = next.filter(|_| queued < cap) else { return queued < cap };
    let reply = usize::try_from(message).map_or(usize::MAX, frame_len);
    if queued > 0 && queued.saturating_add(reply) > cap {
        return false;
    }
    conn.account(st);
    if reply <= st.memory_room() {
        return true;
    }
    if conn.flags.insert(Flag::Starved) {
        st.starved.push(slot);
    }
    false
}

fn on_event<H: Handler>(
    conn: &mut Conn<H::Conn>,
    st: &mut ReactorState,
    handler: &mut H,
    slot: usize,
    event: Event<'_>,
) {
    match event {
        Event::Request(req) => upgrade(conn, st, handler, slot, *req),
        Event::BadHandshake(e) => {
            log::info!("{}: bad upgrade request: {} {}", conn.peer(), e.status, e.reason);
            refused(conn, st, slot);
        }
        Event::Message(msg) => {
            st.counters.inc(Counter::MessagesReceived);
            let mut cx = Ctx::new(conn, st, slot);
            handler.on_message(&mut cx, msg);
        }
        Event::Close(code, reason) => {
            conn.schedule(slot, st);
            notify_close(conn, st, handler, slot, code, reason);
        }
        Event::Failed(failure) => failed(conn, st, handler, slot, failure),
        // Pings are answered by the protocol state.
        Event::Ping(_) | Event::Pong(_) => {}
    }
}

/// The connection failed: count it, log it (one line; a message that
/// outgrew the memory budget at debug, as the reactor logs how many at
/// warn, at most once a tick), and tell the handler.
fn failed<H: Handler>(
    conn: &mut Conn<H::Conn>,
    st: &mut ReactorState,
    handler: &mut H,
    slot: usize,
    f: Failure,
) {
    if f.over_budget {
        log::debug!("{}: a message outgrew the memory budget; closing with 1009", conn.peer());
        st.counters.inc(Counter::MemoryShed);
        st.outgrown += 1;
    } else {
        log::info!("{}: {}; closing with {}", conn.peer(), f.reason, f.code.0);
        st.counters.inc(Counter::ProtocolErrors);
    }
    conn.schedule(slot, st);
    if conn.is(Flag::Opened) && !conn.is(Flag::Notified) {
        notify_close(conn, st, handler, slot, f.code, "");
    }
}

/// Decides an upgrade request and queues the 101 (or the refusal).
fn upgrade<H: Handler>(
    conn: &mut Conn<H::Conn>,
    st: &mut ReactorState,
    handler: &mut H,
    slot: usize,
    req: Request<'_>,
) {
    let req = match conn.stream.peer_addr() {
        Ok(addr) => req.with_peer_addr(addr),
        Err(_) => req,
    };
    let agreed = match st.deflate.negotiate(&req) {
        Ok(agreed) => agreed,
        Err(e) => {
            let e = HandshakeError::from(e);
            log::info!("{}: bad upgrade request: {} {}", conn.peer(), e.status, e.reason);
            let mut queue =
                Queue { bufs: &mut conn.bufs, pool: &mut st.bufs, chunks: &mut st.chunks };
            conn.proto.refuse(&e, st.tick, &mut queue);
            refused(conn, st, slot);
            return;
        }
    };
    if st.handle.shared.budget.nearly_spent() {
        log::info!("{}: refused: the memory budget is nearly spent", conn.peer());
        st.counters.inc(Counter::MemoryRefused);
        reject(conn, st, slot, &Reject::new(503, "server is at its memory limit"));
        return;
    }
    if !st.handle.try_open() {
        log::info!("{}: refused: at max connections", conn.peer());
        reject(conn, st, slot, &Reject::new(503, "server is at its connection limit"));
        return;
    }
    let accept: Accept<H::Conn> = match handler.on_upgrade(&req) {
        Ok(accept) => accept,
        Err(no) => {
            st.handle.closed();
            log::debug!("{}: upgrade rejected by the handler: {}", conn.peer(), no.status);
            reject(conn, st, slot, &no);
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
    let up =
        Upgrade { key: req.key(), protocol, extension: extension.as_deref(), headers: &headers };
    let mut queue = Queue { bufs: &mut conn.bufs, pool: &mut st.bufs, chunks: &mut st.chunks };
    if let Err(e) = conn.proto.accept(&up, st.tick, &mut queue) {
        st.handle.closed();
        log::error!("the handler gave an invalid response header: {e:?}");
        reject(conn, st, slot, &Reject::new(500, "internal error"));
        return;
    }
    conn.data = accept.data;
    conn.flags.set(Flag::Opened);
    if let Some(agreed) = agreed {
        st.deflate.open(slot, agreed);
    }
    st.counters.inc(Counter::Upgraded);
    conn.schedule(slot, st);
    let mut cx = Ctx::new(conn, st, slot);
    handler.on_open(&mut cx);
}

fn reject<C>(conn: &mut Conn<C>, st: &mut ReactorState, slot: usize, no: &Reject) {
    let headers: Vec<(&str, &str)> =
        no.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut queue = Queue { bufs: &mut conn.bufs, pool: &mut st.bufs, chunks: &mut st.chunks };
    conn.proto.reject(no.status, &no.reason, &headers, st.tick, &mut queue);
    refused(conn, st, slot);
}

/// The upgrade was refused (its HTTP response is queued): count it and arm
/// the close timeout.
fn refused<C>(conn: &mut Conn<C>, st: &mut ReactorState, slot: usize) {
    st.counters.inc(Counter::Rejected);
    conn.schedule(slot, st);
}
