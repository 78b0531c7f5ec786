//! Server counters: each reactor counts into its own cache line; a
//! [`ServerHandle::stats`](crate::ServerHandle::stats) call sums them.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one reactor counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Accepted,
    Upgraded,
    Rejected,
    ProtocolErrors,
    HandshakeTimeouts,
    PingsSent,
    PongTimeouts,
    IdleTimeouts,
    CloseTimeouts,
    WriteStalls,
    MessagesReceived,
    SendsDropped,
    Compressions,
    SlowConsumers,
    /// Connections closed to bring the memory budget back under its cap.
    MemoryShed,
    /// Upgrades refused (HTTP 503) because the memory budget was nearly spent.
    MemoryRefused,
    /// A gauge: topics with subscribers on the reactor.
    Topics,
    /// A gauge: bytes the reactor holds for its connections (the budget's count).
    MemoryHeld,
}

const COUNTERS: usize = Counter::MemoryHeld as usize + 1;

/// One reactor's counters, written only by that reactor.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Counters([AtomicU64; COUNTERS]);

impl Counters {
    pub(crate) fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        // Only the owning reactor writes, so a load and a store suffice: no
        // locked read-modify-write on the per-message path.
        let cell = &self.0[c as usize];
        cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub(crate) fn set(&self, c: Counter, n: u64) {
        self.0[c as usize].store(n, Ordering::Relaxed);
    }

    fn get(&self, c: Counter) -> u64 {
        self.0[c as usize].load(Ordering::Relaxed)
    }
}

/// Counters of a running server, summed over its reactors.
///
/// ```
/// # use wsreactor::{Handler, Server};
/// # struct App; impl Handler for App { type Conn = (); }
/// # fn main() -> std::io::Result<()> {
/// let server = Server::builder().bind("127.0.0.1:0")?.reactors(1).handler(|_| App).build()?;
/// let handle = server.handle();
/// let running = server.spawn()?;
/// assert_eq!(handle.stats().upgraded, 0);
/// running.shutdown(std::time::Duration::from_secs(1))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Upgrades to WebSocket (101 sent).
    pub upgraded: u64,
    /// Upgrade requests refused: malformed (4xx), by the handler, or at `max_connections` (503).
    pub rejected: u64,
    /// Connections failed for breaking RFC 6455 (close 1002, 1007 or 1009).
    pub protocol_errors: u64,
    /// Connections dropped for not completing the handshake in time (slowloris).
    pub handshake_timeouts: u64,
    /// Pings sent to connections that had been silent for the ping interval.
    pub pings_sent: u64,
    /// Connections dropped because a ping went unanswered (dead peers).
    pub pong_timeouts: u64,
    /// Connections closed (1001) after the idle timeout without messages.
    pub idle_timeouts: u64,
    /// Connections dropped because the peer never finished the close handshake.
    pub close_timeouts: u64,
    /// Connections dropped because their output made no progress for the write-stall timeout.
    pub write_stalls: u64,
    /// Data messages received.
    pub messages_received: u64,
    /// Sends refused ([`crate::SendStatus::Dropped`]) because the connection was closing or full.
    pub sends_dropped: u64,
    /// Messages compressed (permessage-deflate). In `shared` mode a broadcast
    /// counts once however many connections receive it.
    pub compressions: u64,
    /// Subscribers closed (1008) for not keeping up with their topics.
    pub slow_consumers: u64,
    /// Connections shed to bring the memory budget
    /// ([`Builder::max_memory`](crate::Builder::max_memory)) back under its cap.
    pub memory_shed: u64,
    /// Upgrades refused with HTTP 503 because the memory budget was nearly spent.
    pub memory_refused: u64,
    /// Now: topics with subscribers, summed over the reactors (a topic with
    /// subscribers on two reactors counts twice). A topic nobody holds costs
    /// nothing here.
    pub topics: u64,
    /// Now: bytes held for connections (output queues, partial input,
    /// reassembly and inflate buffers, codec state), as the memory budget
    /// counts them.
    pub memory_held: u64,
}

impl Stats {
    pub(crate) fn sum<'a>(all: impl Iterator<Item = &'a Counters>) -> Stats {
        let mut s = Stats::default();
        for c in all {
            s.accepted += c.get(Counter::Accepted);
            s.upgraded += c.get(Counter::Upgraded);
            s.rejected += c.get(Counter::Rejected);
            s.protocol_errors += c.get(Counter::ProtocolErrors);
            s.handshake_timeouts += c.get(Counter::HandshakeTimeouts);
            s.pings_sent += c.get(Counter::PingsSent);
            s.pong_timeouts += c.get(Counter::PongTimeouts);
            s.idle_timeouts += c.get(Counter::IdleTimeouts);
            s.close_timeouts += c.get(Counter::CloseTimeouts);
            s.write_stalls += c.get(Counter::WriteStalls);
            s.messages_received += c.get(Counter::MessagesReceived);
            s.sends_dropped += c.get(Counter::SendsDropped);
            s.compressions += c.get(Counter::Compressions);
            s.slow_consumers += c.get(Counter::SlowConsumers);
            s.memory_shed += c.get(Counter::MemoryShed);
            s.memory_refused += c.get(Counter::MemoryRefused);
            s.topics += c.get(Counter::Topics);
            s.memory_held += c.get(Counter::MemoryHeld);
        }
        s
    }
}
