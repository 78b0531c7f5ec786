//! Every setting of a server, shared by the builder, the command line and the reactors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::deflate::DeflateConfig;
use crate::pubsub::StoreConfig;
use crate::pubsub::topic::validate_topic;

/// Settings shared by every reactor.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) addr: SocketAddr,
    pub(crate) reactors: usize,
    pub(crate) backlog: i32,
    pub(crate) defer_accept: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_head_size: usize,
    pub(crate) max_backpressure: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_memory: usize,
    pub(crate) read_buffer_size: usize,
    pub(crate) timeouts: Timeouts,
    pub(crate) deflate: DeflateConfig,
    pub(crate) topics: StoreConfig,
    pub(crate) slow_consumer: SlowConsumerRules,
}

/// What happens to a subscriber whose output queue is full
/// (`max_backpressure`) when a topic message arrives for it.
///
/// One policy serves every topic ([`Builder::slow_consumer`](crate::Builder::slow_consumer)) except those
/// whose name starts with a prefix given its own
/// ([`Builder::slow_consumer_for`](crate::Builder::slow_consumer_for); the longest matching prefix wins).
/// Each reactor resolves a topic's policy once, when the topic gets its
/// first subscriber there.
///
/// ```
/// use wsreactor::{Server, SlowConsumer};
/// # struct App; impl wsreactor::Handler for App { type Conn = (); }
/// # fn main() -> std::io::Result<()> {
/// let server = Server::builder()
///     .bind("127.0.0.1:0")?
///     .max_backpressure(256 << 10)
///     .slow_consumer(SlowConsumer::Close) // alerts, orders, ...: never a gap
///     .slow_consumer_for("md.", SlowConsumer::Conflate) // market data: the latest price
///     .handler(|_| App)
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumer {
    /// Close it with 1008 ("slow consumer") after its queued output (default).
    #[default]
    Close,
    /// Drop the new message for it (counted in `Stats::sends_dropped`); the
    /// gap shows in the topic's sequence numbers.
    Drop,
    /// Replace its newest queued, unsent message of the same topic with the
    /// new one: it gets fewer, newer messages, never stale ones (drop if it
    /// has none queued for that topic).
    Conflate,
}

/// The slow-consumer policy of every topic: per-prefix rules over a default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlowConsumerRules {
    /// For topics that no rule matches.
    default: SlowConsumer,
    /// (prefix, policy), longest prefix first, at most one rule per prefix.
    rules: Vec<(Box<str>, SlowConsumer)>,
}

impl SlowConsumerRules {
    /// Sets the policy of topics that no prefix rule matches.
    pub(crate) fn set_default(&mut self, policy: SlowConsumer) {
        self.default = policy;
    }

    /// Topics starting with `prefix` use `policy`; replaces an earlier rule
    /// for the same prefix.
    pub(crate) fn add(&mut self, prefix: &str, policy: SlowConsumer) {
        self.rules.retain(|(p, _)| &**p != prefix);
        // After every longer or equally long prefix: the first match is the longest.
        let at = self.rules.partition_point(|(p, _)| p.len() >= prefix.len());
        self.rules.insert(at, (prefix.into(), policy));
    }

    /// The policy of `topic`: that of the longest prefix it starts with, or
    /// the default. A scan of the rules: resolve once per topic, not per
    /// message.
    pub(crate) fn policy_for(&self, topic: &str) -> SlowConsumer {
        self.rules
            .iter()
            .find(|(prefix, _)| topic.starts_with(&**prefix))
            .map_or(self.default, |&(_, policy)| policy)
    }

    /// Fails for a prefix that no topic name of at most `max_len` bytes can
    /// start with: empty, too long, or holding a byte topic names cannot.
    pub(crate) fn validate(&self, max_len: usize) -> io::Result<()> {
        for (prefix, _) in &self.rules {
            validate_topic(prefix, max_len).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("slow_consumer_for: no topic name can start with {prefix:?} ({e})"),
                )
            })?;
        }
        Ok(())
    }
}

/// The connection timeouts; `Duration::ZERO` turns one off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Granularity of every timeout.
    pub(crate) tick: Duration,
    pub(crate) handshake: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) pong: Duration,
    pub(crate) idle: Duration,
    pub(crate) close: Duration,
    pub(crate) write_stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tick: Duration::from_millis(100),
            handshake: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            pong: Duration::from_secs(10),
            idle: Duration::ZERO,
            close: Duration::from_secs(5),
            write_stall: Duration::from_secs(30),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            reactors: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backlog: 4096,
            defer_accept: Duration::from_secs(1),
            max_message_size: 16 << 20,
            max_head_size: 8 << 10,
            max_backpressure: 1 << 20,
            max_connections: usize::MAX,
            max_memory: default_max_memory(),
            read_buffer_size: 256 << 10,
            timeouts: Timeouts::default(),
            deflate: DeflateConfig::default(),
            topics: StoreConfig::default(),
            slow_consumer: SlowConsumerRules::default(),
        }
    }
}

/// The default memory budget: half of what this process may use, the
/// machine's physical memory or the cgroup (v2) limit, whichever is lower.
pub(crate) fn default_max_memory() -> usize {
    // SAFETY: sysconf only reads system parameters.
    let (pages, page) =
        unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let physical = match (usize::try_from(pages), usize::try_from(page)) {
        (Ok(n), Ok(size)) if n > 0 && size > 0 => n.saturating_mul(size),
        _ => 4 << 30,
    };
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    physical.min(cgroup) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(default: SlowConsumer, list: &[(&str, SlowConsumer)]) -> SlowConsumerRules {
        let mut r = SlowConsumerRules::default();
        r.set_default(default);
        for &(prefix, policy) in list {
            r.add(prefix, policy);
        }
        r
    }

    #[test]
    fn the_longest_matching_prefix_wins_whatever_the_order_given() {
        use SlowConsumer::{Close, Conflate, Drop};
        let given = [("md.", Conflate), ("md.trades.", Drop), ("m", Close)];
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [2, 0, 1]] {
            let r = rules(Drop, &order.map(|i| given[i]));
            assert_eq!(r.policy_for("md.trades.BTC"), Drop, "{order:?}");
            assert_eq!(r.policy_for("md.BTC-USD"), Conflate, "{order:?}");
            assert_eq!(r.policy_for("md.trades"), Conflate, "{order:?}: one byte short");
            assert_eq!(r.policy_for("mx"), Close, "{order:?}");
        }
    }

    #[test]
    fn no_match_gets_the_default_and_a_name_is_its_own_prefix() {
        use SlowConsumer::{Conflate, Drop};
        let r = rules(Drop, &[("md.", Conflate), ("alerts.fire", Conflate)]);
        assert_eq!(r.policy_for("orders.1"), Drop);
        assert_eq!(r.policy_for("md"), Drop, "shorter than the prefix");
        assert_eq!(r.policy_for("MD.BTC"), Drop, "prefixes are case-sensitive");
        assert_eq!(r.policy_for("alerts.fire"), Conflate, "the exact name");
        assert_eq!(r.policy_for("alerts.fire2"), Conflate);
        assert_eq!(r.policy_for("alerts.fir"), Drop);
        assert_eq!(SlowConsumerRules::default().policy_for("anything"), SlowConsumer::Close);
    }

    #[test]
    fn a_second_rule_for_a_prefix_replaces_the_first() {
        use SlowConsumer::{Close, Conflate, Drop};
        let r = rules(Close, &[("md.", Conflate), ("a.", Close), ("md.", Drop)]);
        assert_eq!(r.policy_for("md.X"), Drop);
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r, rules(Close, &[("a.", Close), ("md.", Drop)]));
    }
}
