//! Embedding wsreactor in a market-data service: one topic per symbol, the
//! topic chosen by the URL path, ticks published from the service's own
//! thread, and slow clients conflated to the newest tick.
//!
//! ```sh
//! cargo run --release --example ticker               # listens on 127.0.0.1:9001
//! python3 -m websockets ws://127.0.0.1:9001/ticks/BTC-USD
//! ```
//!
//! A client gets the symbol's last tick at once, then every tick as it is
//! published: `{"topic":"md.BTC-USD","seq":42,"data":{"bid":...,"ask":...}}`.
//! An unknown symbol is refused with HTTP 404 before the upgrade.

use std::time::{Duration, Instant};

use wsreactor::pubsub::TopicName;
use wsreactor::{Accept, CloseCode, Ctx, Handler, Message, Reject, Request, Server, SlowConsumer};

/// The symbols served, each on topic `md.<SYMBOL>`.
pub const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];

/// Per-connection data: the topic this connection watches.
#[derive(Default)]
pub struct Watch(Option<TopicName>);

/// Routes `/ticks/<SYMBOL>` to its topic (`tests/examples.rs` tests it).
pub struct Ticker;

impl Handler for Ticker {
    type Conn = Watch;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<Watch>, Reject> {
        let symbol = req.path().strip_prefix("/ticks/").unwrap_or_default();
        if !SYMBOLS.contains(&symbol) {
            return Err(Reject::new(404, "unknown symbol"));
        }
        let topic =
            TopicName::new(&format!("md.{symbol}")).map_err(|_| Reject::new(400, "bad symbol"))?;
        Ok(Accept::new(Watch(Some(topic))))
    }

    fn on_open(&mut self, cx: &mut Ctx<'_, Watch>) {
        let Some(topic) = cx.data().0.clone() else { return };
        // The last tick, then every tick after it: each seq once, in order.
        let last = cx.topics().snapshot(topic.as_str());
        if cx.subscribe_after(&topic, last.as_ref().map_or(0, |(seq, _)| *seq)).is_err() {
            // The server holds all the topics it may: come back later.
            return cx.close(CloseCode::TRY_AGAIN_LATER, "too many topics");
        }
        if let Some((_, frame)) = last {
            let _ = cx.send_frame(&frame);
        }
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, Watch>, _msg: Message<'_>) {
        let _ = cx.send_text(r#"{"error":"this feed is read-only"}"#);
    }
}

#[allow(dead_code)] // not called where tests/examples.rs includes this file
fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Server::builder()
        .bind(bind.as_str())?
        // A client that falls behind sees fewer, newer ticks, never stale ones,
        // and never holds more than 64 KiB of queued output.
        .slow_consumer(SlowConsumer::Conflate)
        .max_backpressure(64 << 10)
        .handler(|_reactor| Ticker)
        .build()?;
    println!("ticker: ws://{}/ticks/{{{}}}", server.local_addr(), SYMBOLS.join(","));

    // The service's own thread: 10 ticks per second per symbol.
    let publisher = server.publisher();
    std::thread::spawn(move || {
        let start = Instant::now();
        for n in 0u64.. {
            for (i, symbol) in SYMBOLS.iter().enumerate() {
                let mid = 100.0 * (i + 1) as f64 + (n % 50) as f64 * 0.25;
                let tick = format!(r#"{{"bid":{:.2},"ask":{:.2}}}"#, mid - 0.05, mid + 0.05);
                let topic = format!("md.{symbol}");
                if let Err(e) = publisher.publish(&topic, Message::Text(&tick)) {
                    eprintln!("ticker: cannot publish on {topic}: {e}");
                }
            }
            let next = start + Duration::from_millis(100 * (n + 1));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    server.run()
}
