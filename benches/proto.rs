//! Micro-benchmarks of the sans-IO protocol core, each against a naive
//! baseline written here, so the numbers say what the fast paths buy.
//!
//! `cargo bench --bench proto` (add `-- --warm-up-time 1 --measurement-time 2`
//! for a quick run).

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsreactor::proto::frame::{MAX_HEADER_LEN, OpCode, encode_header, parse_header};
use wsreactor::proto::mask::apply_mask;
use wsreactor::proto::utf8::Utf8Validator;
use wsreactor::proto::{Decoded, Decoder, DecoderConfig};

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// The baseline for `apply_mask`: one byte at a time.
fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

/// The baseline for `Utf8Validator`: a byte-at-a-time state machine
/// (continuation bytes still needed, and the range the next one must be in).
#[derive(Default)]
struct NaiveUtf8 {
    need: u8,
    lo: u8,
    hi: u8,
}

impl NaiveUtf8 {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.need > 0 {
                if b < self.lo || b > self.hi {
                    return false;
                }
                (self.need, self.lo, self.hi) = (self.need - 1, 0x80, 0xBF);
                continue;
            }
            (self.need, self.lo, self.hi) = match b {
                0x00..=0x7F => (0, 0x80, 0xBF),
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                0xED => (2, 0x80, 0x9F),
                0xE1..=0xEF => (2, 0x80, 0xBF),
                0xF0 => (3, 0x90, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                _ => return false,
            };
        }
        true
    }

    fn finish(&self) -> bool {
        self.need == 0
    }
}

/// A masked header whose length takes 7, 7+16 or 7+64 bits.
fn masked_header(payload_len: u64) -> Vec<u8> {
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut out, true, false, OpCode::Binary, payload_len, Some(KEY));
    out[..n].to_vec()
}

fn header_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("header_parse");
    for (name, len) in [("len7", 100u64), ("len16", 1000), ("len64", 100_000)] {
        let header = masked_header(len);
        for (unit, throughput) in [
            ("bytes", Throughput::Bytes(header.len() as u64)),
            ("headers", Throughput::Elements(1)),
        ] {
            group.throughput(throughput);
            group.bench_function(BenchmarkId::new(unit, name), |b| {
                b.iter(|| parse_header(black_box(&header)))
            });
        }
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (name, len) in [("64B", 64), ("1KiB", 1024), ("64KiB", 64 << 10)] {
        // One spare byte in front, so that the slice can start unaligned.
        let mut buf: Vec<u8> = (0..=len).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        // Offset 0 on an 8-byte-aligned slice (the allocator aligns to at
        // least 8 here); offset 3 on a slice starting one byte in.
        for (offset, start) in [(0, 0), (3, 1)] {
            let slice = &mut buf[start..start + len];
            let id = format!("{name}/off{offset}");
            group.bench_function(BenchmarkId::new("ours", &id), |b| {
                b.iter(|| apply_mask(black_box(&mut *slice), black_box(KEY), black_box(offset)))
            });
            group.bench_function(BenchmarkId::new("naive", &id), |b| {
                b.iter(|| naive_mask(black_box(&mut *slice), black_box(KEY), black_box(offset)))
            });
        }
    }
    group.finish();
}

/// 64 KiB of text in many scripts (1-, 2-, 3- and 4-byte code points).
fn multilingual() -> Vec<u8> {
    let sample = "The quick brown fox; Ünïcödé café; Ελληνικά κείμενα; Русский текст; \
                  日本語のテキスト; 中文文本; 한국어 텍스트; emoji 😀🚀👍🏽; ";
    let mut s = String::new();
    for ch in sample.chars().cycle() {
        if s.len() + ch.len_utf8() > 64 << 10 {
            break;
        }
        s.push(ch);
    }
    while s.len() < 64 << 10 {
        s.push(' ');
    }
    s.into_bytes()
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let ascii: Vec<u8> = (0..64 << 10).map(|i| b' ' + (i % 95) as u8).collect();
    for (name, text) in [("ascii_64KiB", ascii), ("mixed_64KiB", multilingual())] {
        assert!(std::str::from_utf8(&text).is_ok());
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::new("ours_whole", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(&text)).and_then(|()| v.finish())
            })
        });
        group.bench_function(BenchmarkId::new("ours_1KiB_pieces", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for piece in black_box(&text).chunks(1024) {
                    v.feed(piece)?;
                }
                v.finish()
            })
        });
        group.bench_function(BenchmarkId::new("naive_dfa", name), |b| {
            b.iter(|| {
                let mut v = NaiveUtf8::default();
                v.feed(black_box(&text)) && v.finish()
            })
        });
        group.bench_function(BenchmarkId::new("std_from_utf8", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(&text)).is_ok())
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let payload: Vec<u8> = (0..64).map(|i| b'a' + (i % 26) as u8).collect();
    let mut frame = masked_header(64);
    let header_len = frame.len();
    frame.extend_from_slice(&payload);
    apply_mask(&mut frame[header_len..], KEY, 0);
    let frame: [u8; 70] = frame.try_into().expect("a 6-byte header and 64 bytes");
    let cfg = DecoderConfig::default();
    let mut dec = Decoder::new();
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("text_64B_whole_frame", |b| {
        // Decoding unmasks in place, so every iteration gets a fresh copy
        // (made outside the timed part).
        b.iter_batched_ref(
            || frame,
            |buf| {
                let r = dec.decode(buf, &cfg);
                assert!(matches!(r, Ok(Decoded::Progress { consumed: 70, .. })));
                black_box(r).is_ok()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(proto, header_parse, unmask, utf8, decode);
criterion_main!(proto);
