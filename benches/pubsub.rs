//! Micro-benchmarks of topic pub/sub: encoding a delivery once per publish,
//! and the topic store's own publish path (`TopicStore::publish`, which is
//! crate-private: reached through `wsreactor::pubsub::bench_internals`) on
//! one and two threads.
//!
//! `cargo bench --bench pubsub --features bench-internals` (add
//! `-- --warm-up-time 1 --measurement-time 2` for a quick run).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wsreactor::pubsub::bench_internals;
use wsreactor::pubsub::wire::{Payload, encode_delivery, is_json};
use wsreactor::pubsub::{StoreConfig, SyntheticFeed, TopicName, TopicStore};
use wsreactor::{Frame, Message};

/// A quote tick of 150 bytes, as a feed would publish it.
const TICK: &str = r#"{"type":"tick","symbol":"BTC-USD","bid":64123.50,"ask":64124.00,"bid_size":1.2500,"ask_size":0.7500,"size":0.0350,"venue":"XNAS12","ts":1767225600123}"#;

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("valid topic")
}

fn encode(c: &mut Criterion) {
    assert_eq!(TICK.len(), 150);
    let t = topic("md.BTC-USD");
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    // The baseline: a frame of the bare payload, no envelope, no JSON check.
    g.bench_function("bare_frame_150B", |b| b.iter(|| Frame::new(Message::Text(black_box(TICK)))));
    g.bench_function("json_check_150B", |b| b.iter(|| is_json(black_box(TICK))));
    // The baseline for the JSON check: serde_json skipping the value.
    g.bench_function("json_check_150B_serde_json", |b| {
        b.iter(|| serde_json::from_str::<serde::de::IgnoredAny>(black_box(TICK)).is_ok())
    });
    let checked = Payload::text(TICK);
    g.bench_function("envelope_frame_prechecked_150B", |b| {
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            encode_delivery(&t, seq, black_box(&checked))
        })
    });
    // What a publish pays: the JSON check plus the envelope frame.
    g.bench_function("delivery_150B_tick", |b| {
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            encode_delivery(&t, seq, &Payload::text(black_box(TICK)))
        })
    });
    // A producer that vouches for its JSON skips the check.
    g.bench_function("delivery_150B_tick_trusted", |b| {
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            encode_delivery(&t, seq, &Payload::json_trusted(black_box(TICK)))
        })
    });
    let text = "not json: a plain \"quoted\" line\n".repeat(4);
    g.bench_function("delivery_132B_escaped_text", |b| {
        b.iter(|| encode_delivery(&t, 42, &Payload::text(black_box(&text))))
    });
    let bytes = vec![0xA5u8; 150];
    g.bench_function("delivery_150B_binary", |b| {
        b.iter(|| encode_delivery(&t, 42, &Payload::binary(black_box(&bytes))))
    });
    g.finish();
}

fn publish_single(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    for history in [0usize, 1000] {
        let store = TopicStore::new(StoreConfig { history, ..StoreConfig::default() });
        let t = topic("md.BTC-USD");
        g.bench_function(format!("1_thread_history_{history}"), |b| {
            b.iter(|| bench_internals::publish(&store, &t, Message::Text(black_box(TICK))))
        });
    }
    // Round-robin over the topics of a 1000-symbol synthetic feed (str lookups).
    let store = TopicStore::new(StoreConfig::default());
    let feed = SyntheticFeed::new(1000, 1.0, 1);
    let names: Vec<String> = feed.topics().map(|t| t.to_string()).collect();
    g.bench_function("1_thread_1000_topics_by_str", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % names.len();
            bench_internals::publish_str(&store, &names[i], Message::Text(black_box(TICK)))
        })
    });
    g.finish();
}

/// `threads` threads publishing `iters` ticks each, at once; the time until
/// the last one finishes, per publish of one thread.
fn run_threads(store: &Arc<TopicStore>, topics: &[TopicName], iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(topics.len() + 1));
    let handles: Vec<_> = topics
        .iter()
        .cloned()
        .map(|t| {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    let _ = black_box(bench_internals::publish(
                        &store,
                        &t,
                        Message::Text(black_box(TICK)),
                    ));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("publisher thread");
    }
    start.elapsed()
}

fn publish_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    // Elements: publishes by one thread; the others run alongside.
    g.throughput(Throughput::Elements(1));
    let store = Arc::new(TopicStore::new(StoreConfig::default()));
    let different = [topic("md.BTC-USD"), topic("md.ETH-USD")];
    g.bench_function("2_threads_different_topics", |b| {
        b.iter_custom(|iters| run_threads(&store, &different, iters))
    });
    let same = [topic("md.SOL-USD"), topic("md.SOL-USD")];
    g.bench_function("2_threads_same_topic", |b| {
        b.iter_custom(|iters| run_threads(&store, &same, iters))
    });
    g.finish();
}

criterion_group!(benches, encode, publish_single, publish_threads);
criterion_main!(benches);
