//! Random input from many clients at once: frames of every kind, valid and
//! not (bad opcodes, RSV bits, unmasked, oversized control frames, broken
//! fragmentation, invalid UTF-8, corrupt compressed data, non-minimal
//! lengths, truncated streams), written in random pieces. The server must
//! answer each with well-formed frames and only the RFC's close codes, and a
//! healthy client must be served throughout, with every echo right.
//!
//! Deterministic: each client's input comes from a seed (printed on failure).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::{Echo, RawClient, TestServer, masked, upgrade_request};
use wsreactor::Compression;

/// A small, seedable generator (xorshift64*): the same seed, the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One frame with random header bits, length encoding and payload; true if
/// it is a whole compressed message (see [`compressed_frame`]).
fn random_frame(rng: &mut Rng, out: &mut Vec<u8>) -> bool {
    let opcode = match rng.below(20) {
        0..=5 => 1,
        6..=10 => 2,
        11..=13 => 0,
        14 => 8,
        15 => 9,
        16 => 10,
        _ => [3, 4, 5, 6, 7, 0xB, 0xC, 0xF][rng.below(8) as usize],
    };
    if (1..=2).contains(&opcode) && rng.chance(15) {
        compressed_frame(rng, opcode, out);
        return true;
    }
    let fin = rng.chance(80);
    let rsv = if rng.chance(90) { 0 } else { 1 << rng.below(3) };
    let len = match rng.below(20) {
        0..=13 => rng.below(126) as usize,
        14..=17 => 126 + rng.below(3000) as usize,
        18 => rng.below(70_000) as usize,
        _ => 200_000 + rng.below(100_000) as usize,
    };
    let payload = if opcode == 1 && rng.chance(70) {
        // Text, some of it multi-byte (cut at `len` bytes: sometimes mid-character).
        let text: String = "wsreactor é ✓ 🦀 ".chars().cycle().take(len).collect();
        text.into_bytes()[..len].to_vec()
    } else if opcode == 8 && len >= 2 && rng.chance(60) {
        let mut p = [1000u16, 1001, 1002, 1003, 1007, 1008, 1011, 3000, 4999, 999, 1005, 1016]
            [rng.below(12) as usize]
            .to_be_bytes()
            .to_vec();
        p.extend(std::iter::repeat_n(b'r', len.min(123) - 2));
        p
    } else {
        rng.bytes(len)
    };
    out.push((u8::from(fin) << 7) | (rsv << 4) | opcode);
    let masked = rng.chance(95);
    let m = if masked { 0x80 } else { 0 };
    let len = payload.len();
    match (len, rng.chance(5)) {
        (0..=125, false) => out.push(m | len as u8),
        (0..=0xFFFF, false) if len > 125 => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (0..=0xFFFF, true) => {
            // Not the shortest encoding.
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let key = [rng.next() as u8, rng.next() as u8, rng.next() as u8, rng.next() as u8];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(&payload);
    }
    false
}

/// A whole message compressed as permessage-deflate sends it (RSV1, raw
/// deflate without the 00 00 FF FF tail): valid where the extension was
/// agreed, a protocol error where it was not.
fn compressed_frame(rng: &mut Rng, opcode: u8, out: &mut Vec<u8>) {
    use flate2::{Compress, Compression as Level, FlushCompress};
    let text: String = "tick bid ask ✓ ".chars().cycle().take(rng.below(5000) as usize).collect();
    let mut z = Compress::new(Level::fast(), false);
    let mut deflated = Vec::with_capacity(text.len() + 64);
    z.compress_vec(text.as_bytes(), &mut deflated, FlushCompress::Sync).expect("deflate");
    deflated.truncate(deflated.len().saturating_sub(4));
    let mut frame = support::frame(true, 4, opcode, Some([9, 8, 7, 6]), &deflated);
    out.append(&mut frame);
}

/// What a fuzzing client saw.
struct Seen {
    frames: usize,
    close: Option<u16>,
    /// Whether the answer to a compressed first message was checked.
    compressed_checked: bool,
}

/// Upgrades (offering permessage-deflate), writes `seed`'s frames in random
/// pieces, then reads the server's frames until EOF, checking each is
/// well-formed. A first frame that is a whole compressed message must be
/// echoed where the extension was agreed (`deflate`), and closed with 1002
/// where it was not. Panics with the seed on anything wrong.
fn fuzz_client(addr: SocketAddr, seed: u64, deflate: bool) -> Seen {
    let mut rng = Rng(seed | 1);
    let ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut c = RawClient::connect_tcp(addr);
    c.send(upgrade_request(addr, ext).as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101"), "seed {seed}: {head}");
    let mut input = Vec::new();
    let compressed_first = random_frame(&mut rng, &mut input);
    for _ in 0..rng.below(12) {
        random_frame(&mut rng, &mut input);
    }
    if rng.chance(20) {
        input.truncate(rng.below(input.len() as u64 + 1) as usize); // ends mid-frame
    }
    let mut at = 0;
    while at < input.len() {
        let n = (1 + rng.below(4096) as usize).min(input.len() - at);
        if c.stream.write_all(&input[at..at + n]).is_err() {
            break; // the server closed: fine, it says why below
        }
        at += n;
        if rng.chance(10) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    // Stop sending: a server waiting for more of a message then times out
    // nothing here, so close our side if it has not closed yet.
    c.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut seen = Seen { frames: 0, close: None, compressed_checked: false };
    while let Some(f) = c.read_frame() {
        if seen.frames == 0 && compressed_first && at == input.len() {
            let expected = if deflate { "an echo" } else { "close 1002" };
            let ok = if deflate { f.opcode <= 2 } else { f.close_code() == Some(1002) };
            assert!(ok, "seed {seed}: a compressed first message got {f:?}, not {expected}");
            seen.compressed_checked = true;
        }
        seen.frames += 1;
        assert!(f.opcode <= 2 || (8..=10).contains(&f.opcode), "seed {seed}: opcode {f:?}");
        assert!(f.rsv == 0 || f.rsv == 4, "seed {seed}: rsv {}", f.rsv);
        if f.opcode == 8 {
            let code = f.close_code();
            // Our verdicts, or an echo of a valid code the client sent.
            let ours = [1002, 1007, 1009];
            let echoable = |c: u16| matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999);
            assert!(
                code.is_none_or(|c| ours.contains(&c) || echoable(c)),
                "seed {seed}: close code {code:?}"
            );
            seen.close = code;
            break;
        }
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    seen
}

/// A client that keeps echoing while the others fuzz; every echo must be right.
fn healthy_client(addr: SocketAddr, until: Instant) -> u64 {
    let mut c = RawClient::connect(addr);
    let mut n = 0u64;
    while Instant::now() < until {
        let msg = format!("healthy {n}");
        c.send(&masked(true, 1, msg.as_bytes()));
        let f = c.read_frame().expect("the healthy client lost its connection");
        assert_eq!(f.payload, msg.as_bytes(), "the healthy client got a wrong echo");
        n += 1;
    }
    n
}

fn run(compression: Compression, seeds: std::ops::Range<u64>) {
    let server =
        TestServer::start(|b| b.compression(compression).max_message_size(256 << 10), |_| Echo);
    let addr = server.addr;
    let deflate = compression != Compression::Disabled;
    let until = Instant::now() + Duration::from_secs(3);
    let healthy = thread::spawn(move || healthy_client(addr, until));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let seeds = seeds.clone();
            thread::spawn(move || {
                let (mut closes, mut compressed) = (0, 0);
                for seed in seeds.filter(|s| s % 4 == w) {
                    let seen = fuzz_client(addr, seed, deflate);
                    closes += usize::from(seen.close.is_some());
                    compressed += usize::from(seen.compressed_checked);
                }
                (closes, compressed)
            })
        })
        .collect();
    let (mut closes, mut compressed) = (0, 0);
    for w in workers {
        let (c, z) = w.join().expect("a fuzz client failed");
        (closes, compressed) = (closes + c, compressed + z);
    }
    assert!(compressed > 0, "no compressed first message was checked");
    let echoes = healthy.join().expect("the healthy client failed");
    assert!(echoes > 100, "the healthy client got only {echoes} echoes in 3 s");
    assert!(closes > 0, "no fuzz client was ever closed: the input is not reaching the checks");
    let stats = server.handle.stats();
    assert!(stats.protocol_errors > 0, "{stats:?}");
    // Still serving new connections.
    let mut after = RawClient::connect(addr);
    after.send(&masked(true, 2, b"after"));
    assert_eq!(after.read_frame().expect("echo").payload, b"after");
    let mut raw = TcpStream::connect(addr).expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut resp = [0u8; 12];
    raw.read_exact(&mut resp).expect("an HTTP answer");
    assert_eq!(&resp, b"HTTP/1.1 400");
}

#[test]
fn random_frames_from_many_clients_get_the_rfc_answer_and_harm_no_one() {
    run(Compression::Disabled, 0..160);
}

#[test]
fn random_frames_with_compression_negotiated() {
    run(Compression::Shared, 1000..1160);
}
