//! permessage-deflate: heap bytes per compressor/inflater, compression ratios,
//! and compress/inflate throughput for market-data JSON.
//!
//! `cargo bench --bench deflate` (add `-- --warm-up-time 1 --measurement-time 2`
//! for a quick run). Before the timings it prints, once, the heap bytes a
//! `Compressor` and a `Decompressor` hold at every window size (counted by a
//! global allocator in this binary) and the compression ratios.
//!
//! Payloads: a ~110-byte JSON tick (1024 of them, numbers varying, sent in
//! turn) and a 64 KiB JSON batch of ticks (8 different ones in turn); with
//! context takeover (one context across the messages) and without (each
//! message on its own, the `Shared` mode), at levels 1 and 6.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput};
use wsreactor::proto::deflate::{Compressor, Decompressor};

/// Counts the bytes currently allocated, to measure what the codec holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a
// counter is updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn tick(i: u64) -> String {
    format!(
        "{{\"type\":\"tick\",\"symbol\":\"BTC-USD\",\"bid\":{}.{},\"ask\":{}.{},\"size\":0.{},\"seq\":{},\"ts\":{}}}",
        64000 + (i * 7919) % 300,
        i % 10,
        64001 + (i * 7919) % 300,
        (i * 3) % 10,
        1 + i % 97,
        123_456 + i,
        1_732_240_000_123 + i * 37
    )
}

/// A JSON array of ticks, just under 64 KiB, starting at sequence `from`.
fn batch(from: u64) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = from;
    while out.len() < (64 << 10) - 200 {
        if i > from {
            out.push(b',');
        }
        out.extend_from_slice(tick(i).as_bytes());
        i += 1;
    }
    out.push(b']');
    out
}

struct Workload {
    name: &'static str,
    messages: Vec<Vec<u8>>,
}

impl Workload {
    fn bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}

fn workloads() -> [Workload; 2] {
    [
        Workload { name: "tick", messages: (0..1024).map(|i| tick(i * 13).into_bytes()).collect() },
        Workload { name: "batch64k", messages: (0..8).map(|i| batch(i * 10_000)).collect() },
    ]
}

/// Every message compressed in turn by one compressor.
fn compress_all(w: &Workload, level: u32, no_context_takeover: bool) -> Vec<Vec<u8>> {
    let mut c = Compressor::new(15, level, no_context_takeover);
    w.messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            c.compress(m, &mut out);
            out
        })
        .collect()
}

fn print_memory() {
    let sample = batch(0);
    println!("heap bytes held (window bits: new / after a 64 KiB message)");
    for bits in 8..=15u8 {
        let wire = {
            let mut wire = Vec::new();
            Compressor::new(bits, 1, false).compress(&sample, &mut wire);
            wire
        };
        let base = live();
        let mut c = Compressor::new(bits, 1, false);
        let c_new = live() - base;
        let mut scratch = Vec::new();
        c.compress(&sample, &mut scratch);
        drop(scratch);
        let c_used = live() - base;

        let base = live();
        let mut d = Decompressor::new(bits, false);
        let d_new = live() - base;
        let mut out = Vec::new();
        d.decompress(&wire, true, usize::MAX, &mut out).expect("round trip");
        assert_eq!(out, sample);
        drop(out);
        let d_used = live() - base;
        println!(
            "  {bits:2}: Compressor {c_new:6} / {c_used:6} B, Decompressor {d_new:5} / {d_used:5} B"
        );
        drop((c, d));
    }
    println!(
        "  inline: Compressor {} B, Decompressor {} B",
        size_of::<Compressor>(),
        size_of::<Decompressor>()
    );
}

fn print_ratios(workloads: &[Workload]) {
    println!("compression ratio (compressed / original bytes, 15-bit window)");
    for w in workloads {
        for level in [1, 6] {
            for no_context_takeover in [false, true] {
                let out: usize =
                    compress_all(w, level, no_context_takeover).iter().map(Vec::len).sum();
                println!(
                    "  {:8} level {level} {:19}: {:.3}",
                    w.name,
                    if no_context_takeover { "no context takeover" } else { "context takeover" },
                    out as f64 / w.bytes() as f64
                );
            }
        }
    }
}

fn label(level: u32, no_context_takeover: bool) -> String {
    format!("level{level}/{}", if no_context_takeover { "no_takeover" } else { "takeover" })
}

fn compress(c: &mut Criterion, workloads: &[Workload]) {
    let mut group = c.benchmark_group("compress");
    for w in workloads {
        // One message per iteration; the throughput is the average size.
        group.throughput(Throughput::Bytes((w.bytes() / w.messages.len()) as u64));
        for level in [1, 6] {
            for no_context_takeover in [false, true] {
                let mut deflater = Compressor::new(15, level, no_context_takeover);
                let mut out = Vec::with_capacity(64 << 10);
                let mut next = w.messages.iter().cycle();
                group.bench_function(
                    BenchmarkId::new(w.name, label(level, no_context_takeover)),
                    |b| {
                        b.iter(|| {
                            out.clear();
                            let message = next.next().expect("cycle never ends");
                            deflater.compress(black_box(message), &mut out);
                            black_box(out.len())
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

fn inflate(c: &mut Criterion, workloads: &[Workload]) {
    let mut group = c.benchmark_group("inflate");
    for w in workloads {
        // Throughput in inflated bytes, like the compress group.
        group.throughput(Throughput::Bytes((w.bytes() / w.messages.len()) as u64));
        for level in [1, 6] {
            for no_context_takeover in [false, true] {
                // Inflated in the order compressed; going round again is fine,
                // since the first message refers to nothing before it.
                let wires = compress_all(w, level, no_context_takeover);
                let mut inflater = Decompressor::new(15, no_context_takeover);
                let mut out = Vec::with_capacity(64 << 10);
                let mut next = wires.iter().cycle();
                group.bench_function(
                    BenchmarkId::new(w.name, label(level, no_context_takeover)),
                    |b| {
                        b.iter(|| {
                            out.clear();
                            let wire = next.next().expect("cycle never ends");
                            inflater
                                .decompress(black_box(wire), true, 1 << 20, &mut out)
                                .expect("valid stream");
                            black_box(out.len())
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

fn main() {
    let workloads = workloads();
    print_memory();
    print_ratios(&workloads);
    let mut c = Criterion::default().configure_from_args();
    compress(&mut c, &workloads);
    inflate(&mut c, &workloads);
    c.final_summary();
}
