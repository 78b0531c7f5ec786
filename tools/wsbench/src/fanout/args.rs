//! The options of the fan-out mode.

use crate::run::Common;

/// Options of the fan-out mode.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    /// Options every mode shares.
    pub common: Common,
    /// Subscribers (the publisher is one more connection).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Message size in bytes (at least 16).
    #[arg(short, long, default_value = "64", value_parser = crate::clock::parse_size)]
    pub size: usize,
    /// Fixed publish rate in messages/s (default: as fast as the in-flight bound allows).
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Most messages in flight (published, not yet received by every subscriber of their topic)
    /// when not at a fixed rate.
    #[arg(short = 'w', long, default_value_t = 16)]
    pub in_flight: u64,
    /// Speak wsreactor's topic protocol with this many topics (`bench.0`, ...):
    /// subscriber k joins topic k mod N, messages go round-robin over the topics.
    /// Without it, the server is expected to broadcast every message to everyone.
    /// The publisher must be allowed to publish (`?token=...` in the URL for
    /// `wsreactor pubsub --publish-token`).
    #[arg(long, value_name = "N")]
    pub topics: Option<u64>,
    /// Publish text messages (ASCII payloads; the sequence number and send time in hex)
    /// to a broadcast server, for servers that only take text. Not with --topics.
    #[arg(long)]
    pub text: bool,
}
