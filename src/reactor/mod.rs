//! The reactor layer: the only code that touches sockets, the clock and the
//! poller. One [`Reactor`] per thread, each with its own `mio::Poll`, its own
//! SO_REUSEPORT listener, a slab of connections, one shared read buffer, and
//! an inbox for the rest of the world. The protocol itself is
//! [`proto::Connection`](crate::proto::Connection); a reactor moves bytes
//! between sockets and connections, keeps the time, and calls the
//! [`Handler`](handler::Handler).
//!
//! The files, each knowing only those above it in this list:
//! - `buf`, `outq`, `bufs`, `timer`, `inbox`, `listener`, `budget`,
//!   `deflate`, `topics`: pools, the output queue, a connection's buffers,
//!   the timer wheel, the cross-thread inbox, listening sockets, the memory
//!   count, compression contexts, subscriber sets;
//! - `door`: the thread-safe [`ServerHandle`](door::ServerHandle) and
//!   [`Publisher`](door::Publisher);
//! - `state`: what a reactor holds besides its connections;
//! - `conn`: a connection's slot and the ways to send on it;
//! - `handler`: the callback contract, [`Handler`](handler::Handler) and
//!   [`Ctx`](handler::Ctx);
//! - `input`: from bytes read to callbacks;
//! - `connections`: the slab, reading, flushing, timeouts;
//! - `memory`, `fanout`: keeping to the memory budget; broadcasts and topics;
//! - `event_loop`: the loop.

pub(crate) mod budget;
pub(crate) mod buf;
mod bufs;
mod conn;
mod connections;
mod deflate;
pub(crate) mod door;
mod event_loop;
mod fanout;
pub(crate) mod handler;
pub(crate) mod inbox;
mod input;
pub(crate) mod listener;
mod memory;
mod outq;
mod state;
pub(crate) mod timer;
pub(crate) mod topics;

pub(crate) use self::event_loop::{Endpoints, Reactor, WAKER};
