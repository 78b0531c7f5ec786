#!/usr/bin/env node
// permessage-deflate (RFC 7692) checks for wsreactor, driven by the Node `ws` client.
//
// Usage: node node_deflate.mjs ws://127.0.0.1:PORT shared|dedicated
//
// `ws` is loaded from $WSREACTOR_NODE_MODULES when set, else from node_modules beside this file.
// The server under test echoes every message with the same opcode (tests/support/mod.rs, `Echo`),
// runs with `--compression MODE`, default window sizes (15 bits) and `min_size` at most 200
// bytes, and a max message size of exactly 2 MiB (SERVER_MAX below).
//
// The checks (see py_deflate.py for the same list in more words):
// - negotiate_OFFER: for each client offer, the Sec-WebSocket-Extensions answer is exactly what
//   the server must answer in MODE, ws accepted it, and text and binary echoes of every size up
//   to 64 KiB come back byte for byte on that connection (contexts running on across messages);
// - echo_{text,binary}_N, stream_OFFER (300 messages without waiting), fragmented_* (compressed
//   messages in several frames);
// - server_compresses, server_context_OFFER: what the server's frames look like on the wire
//   (RSV1 set, smaller; repeats far smaller with context takeover, alike without);
// - max_size_inflated_ok, over_max_by_one_1009, deflate_bomb_1009: the limit applies to the
//   inflated size.
// ws cannot send corrupt compressed data; the Rust tests cover that.
//
// To see what the server's frames look like, the checks wrap the decompress() of ws's
// PerMessageDeflate instance for the connection (ws internals, pinned by package-lock.json).
//
// Prints one line per check, `ok NAME` or `FAIL NAME: why`, then a summary line, and exits 1 if
// any check failed (2 on a usage or setup error).

import {
  CheckFailed, describe, expect, firstDifference, loadWs, sleep, summarize, withTimeout,
} from './harness.mjs';

const { WebSocket, wsVersion } = loadWs();

const KIB = 1 << 10;
const MIB = 1 << 20;
const SERVER_MAX = 2 * MIB;
const SIZES = [0, 1, 63, 64, 200, 64 * KIB, MIB];
const BOMB = 10_000_000;
const CHECK_TIMEOUT = 60_000;
const RECV_TIMEOUT = 20_000;

// ---- payloads ---------------------------------------------------------------------------------

/** A small seeded PRNG (mulberry32): the same payloads on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The first n bytes of UTF-8 `buf`, cut back to a character boundary and padded with spaces. */
function exactText(buf, n) {
  let end = Math.min(n, buf.length);
  while (end > 0 && end < buf.length && (buf[end] & 0xc0) === 0x80) end--;
  return Buffer.concat([buf.subarray(0, end), Buffer.alloc(n - end, ' ')]);
}

/** JSON-ish UTF-8 text of exactly n bytes (some multi-byte) that compresses well. */
function jsonText(n, seed = 7) {
  const rnd = prng(seed);
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const int = (k) => Math.floor(rnd() * k);
  const parts = [];
  let size = 0;
  while (size < n) {
    const rec =
      `{"id":${int(1e6)},"sym":"${pick(['ABC', 'XYZ', 'QQQ', 'ÉTÉ'])}",` +
      `"px":${int(1e4)}.${String(int(100)).padStart(2, '0')},"qty":${int(500)},` +
      `"side":"${pick(['buy', 'sell'])}","note":"ok ✓"},`;
    parts.push(rec);
    size += Buffer.byteLength(rec);
  }
  return exactText(Buffer.from(parts.join(''), 'utf8'), n);
}

function randomBytes(n, seed = 11) {
  const rnd = prng(seed);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rnd() * 256);
  return out;
}

/** n bytes of text that deflate to a tiny fraction: one 16 KiB block, repeated. */
function bomb(n) {
  const block = jsonText(16 * KIB, 3);
  const reps = Math.ceil(n / block.length) + 1;
  return exactText(Buffer.concat(Array(reps).fill(block)), n);
}

// ---- offers and the answers they must get -----------------------------------------------------

/**
 * A client offer: ws's perMessageDeflate options. `threshold: 0` makes ws compress every
 * message (by default it skips those under 1 KiB when client_no_context_takeover is agreed);
 * `default` keeps ws's defaults, so in shared mode it sends small messages uncompressed and
 * large ones compressed on one connection; `eager` is the same offer with threshold 0, for the
 * checks that want every client message compressed.
 */
const OFFERS = [
  ['default', true],
  ['eager', { threshold: 0 }],
  ['bare', { clientMaxWindowBits: false, threshold: 0 }],
  ['client_no_context_takeover', { clientNoContextTakeover: true, threshold: 0 }],
  ['server_no_context_takeover', { serverNoContextTakeover: true, threshold: 0 }],
  ['both_no_context_takeover', { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 }],
  ['client_max_window_bits_8', { clientMaxWindowBits: 8, threshold: 0 }],
  ['client_max_window_bits_9', { clientMaxWindowBits: 9, threshold: 0 }],
  ['client_max_window_bits_12', { clientMaxWindowBits: 12, threshold: 0 }],
  ['client_max_window_bits_15', { clientMaxWindowBits: 15, threshold: 0 }],
  ['server_max_window_bits_8', { serverMaxWindowBits: 8, threshold: 0 }],
  ['server_max_window_bits_9', { serverMaxWindowBits: 9, threshold: 0 }],
  ['server_max_window_bits_12', { serverMaxWindowBits: 12, threshold: 0 }],
  ['server_max_window_bits_15', { serverMaxWindowBits: 15, threshold: 0 }],
  ['mixed_10_11_no_takeover', { serverMaxWindowBits: 10, clientMaxWindowBits: 11, serverNoContextTakeover: true, threshold: 0 }],
].map(([name, options]) => ({ name, options }));
const OFFER = Object.fromEntries(OFFERS.map((o) => [o.name, o]));

/** The parameters wsreactor must answer to `offer` in `mode`, in order, as [name, value|null]. */
function expectedAnswer(offer, mode) {
  const o = offer.options === true ? {} : offer.options;
  const want = [];
  if (o.serverNoContextTakeover || mode === 'shared') want.push(['server_no_context_takeover', null]);
  if (o.clientNoContextTakeover || mode === 'shared') want.push(['client_no_context_takeover', null]);
  if (o.serverMaxWindowBits) want.push(['server_max_window_bits', String(o.serverMaxWindowBits)]);
  if (typeof o.clientMaxWindowBits === 'number' && o.clientMaxWindowBits < 15) {
    want.push(['client_max_window_bits', String(o.clientMaxWindowBits)]);
  }
  return want;
}

function formatAnswer(params) {
  return ['permessage-deflate', ...params.map(([k, v]) => (v === null ? k : `${k}=${v}`))].join('; ');
}

/** [[name, [[param, value|null]]]] from a Sec-WebSocket-Extensions value. */
function parseExtensions(value) {
  return value
    .split(',')
    .filter((e) => e.trim())
    .map((element) => {
      const [name, ...params] = element.split(';').map((p) => p.trim());
      return [
        name.toLowerCase(),
        params.map((p) => {
          const at = p.indexOf('=');
          if (at < 0) return [p.toLowerCase(), null];
          return [p.slice(0, at).trim().toLowerCase(), p.slice(at + 1).trim().replace(/^"|"$/g, '')];
        }),
      ];
    });
}

// ---- a connection -----------------------------------------------------------------------------

/** A client connection with a message queue, close information and a view of the wire. */
class Conn {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closeInfo = null;
    this.error = null;
    this.response = null;
    this.wire = []; // per data message received: { compressed, bytes } (payload bytes on the wire)
    this.pending = { compressed: false, bytes: 0 };
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (ev) => {
        this.closeInfo = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
        for (const w of this.waiters.splice(0)) w.reject(this.closedError());
        resolve(this.closeInfo);
      });
    });
    ws.on('upgrade', (res) => {
      this.response = res;
    });
    ws.on('message', (data, isBinary) => {
      this.wire.push(this.pending);
      this.pending = { compressed: false, bytes: 0 };
      const item = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(item);
      else this.queue.push(item);
    });
    ws.on('error', (e) => {
      this.error = e;
    });
  }

  /** Checks that permessage-deflate was agreed and starts watching compressed frames. */
  deflate() {
    const header = this.response?.headers['sec-websocket-extensions'];
    expect(this.ws.extensions === 'permessage-deflate', `ws agreed on '${this.ws.extensions}'; server answered '${header}'`);
    const ext = this.ws._extensions?.['permessage-deflate'];
    expect(ext && typeof ext.decompress === 'function', `ws ${wsVersion} internals changed: no PerMessageDeflate instance`);
    const decompress = ext.decompress.bind(ext);
    ext.decompress = (data, fin, cb) => {
      this.pending.compressed = true;
      this.pending.bytes += data.length;
      decompress(data, fin, cb);
    };
    return ext;
  }

  closedError() {
    const c = this.closeInfo;
    const err = this.error ? ` (error: ${this.error.message})` : '';
    return new CheckFailed(`connection closed unexpectedly: code ${c.code} reason '${c.reason}'${err}`);
  }

  recv() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(this.closedError());
    return withTimeout(
      new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
      RECV_TIMEOUT,
      'waiting for a message',
    );
  }

  send(data, options = {}) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, options, (err) => (err ? reject(err) : resolve()));
    });
  }

  async expectMessage(expected, isBinary, what = 'echo') {
    const got = await this.recv();
    const gotBuf = Buffer.isBuffer(got.data) ? got.data : Buffer.concat(got.data);
    expect(
      got.isBinary === isBinary,
      `${what}: sent ${describe(isBinary, expected.length)}, got back ${describe(got.isBinary, gotBuf.length)} (opcode changed)`,
    );
    if (!gotBuf.equals(expected)) {
      throw new CheckFailed(
        `${what}: sent ${describe(isBinary, expected.length)}, got back ${describe(got.isBinary, gotBuf.length)} ` +
          `differing at index ${firstDifference(gotBuf, expected)}`,
      );
    }
  }

  async roundtrip(data, isBinary, what) {
    await this.send(data, { binary: isBinary });
    await this.expectMessage(data, isBinary, what);
  }

  lastWire() {
    expect(this.wire.length, 'no data message was seen');
    return this.wire[this.wire.length - 1];
  }
}

// ---- the checks -------------------------------------------------------------------------------

class Checks {
  constructor(base, mode) {
    this.base = base.replace(/\/+$/, '');
    this.mode = mode;
    this.results = [];
    this.conns = [];
  }

  /** Opens a connection with `offer`; resolves once open and permessage-deflate is agreed. */
  open(offer) {
    const ws = new WebSocket(`${this.base}/`, undefined, {
      perMessageDeflate: offer.options,
      maxPayload: 4 * SERVER_MAX,
      handshakeTimeout: 10_000,
      closeTimeout: 5_000,
    });
    const conn = new Conn(ws);
    this.conns.push(conn);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(conn));
      ws.once('error', (e) => {
        const header = conn.response?.headers['sec-websocket-extensions'];
        reject(new CheckFailed(`handshake failed: ${e.message} (server answered extensions '${header}')`));
      });
    });
  }

  async run(name, fn, timeout = CHECK_TIMEOUT) {
    try {
      await withTimeout(fn(), timeout, 'for the whole check');
      this.results.push([name, true]);
      console.log(`ok ${name}`);
    } catch (e) {
      this.results.push([name, false]);
      const why = e instanceof CheckFailed ? e.message : `${e.name}: ${e.message}`;
      console.log(`FAIL ${name}: ${why}`);
    } finally {
      const conns = this.conns.splice(0);
      const live = conns.filter((c) => [WebSocket.OPEN, WebSocket.CLOSING].includes(c.ws.readyState));
      for (const c of live) if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
      await Promise.race([Promise.all(live.map((c) => c.closed)), sleep(2000)]);
      for (const c of conns) if (c.ws.readyState !== WebSocket.CLOSED) c.ws.terminate();
    }
  }

  /** Text and binary of every size but 1 MiB (64 KiB is already twice the largest window). */
  *allSizes() {
    for (const n of SIZES.slice(0, -1)) {
      yield [jsonText(n, n), false];
      yield [randomBytes(n, n), true];
    }
  }

  negotiate(offer) {
    return async () => {
      const c = await this.open(offer);
      const value = c.response.headers['sec-websocket-extensions'] ?? '';
      const want = expectedAnswer(offer, this.mode);
      expect(
        JSON.stringify(parseExtensions(value)) === JSON.stringify([['permessage-deflate', want]]),
        `offer ${offer.name} in ${this.mode} mode: server answered '${value}', expected '${formatAnswer(want)}'`,
      );
      c.deflate();
      let i = 0;
      for (const [msg, isBinary] of this.allSizes()) await c.roundtrip(msg, isBinary, `message ${i++}`);
    };
  }

  echo(make, isBinary) {
    return async () => {
      const c = await this.open(OFFER.eager);
      c.deflate();
      await c.roundtrip(make(), isBinary);
    };
  }

  stream(offer, count = 300) {
    return async () => {
      const rnd = prng(99);
      const sizes = [0, 1, 63, 64, 65, 100, 200, 1000, 4096, 8192];
      const msgs = [];
      for (let i = 0; i < count; i++) {
        const n = sizes[Math.floor(rnd() * sizes.length)];
        msgs.push(i % 3 ? [jsonText(n, i), false] : [randomBytes(n, i), true]);
      }
      const c = await this.open(offer);
      c.deflate();
      const sent = Promise.all(msgs.map(([m, isBinary]) => c.send(m, { binary: isBinary })));
      for (let i = 0; i < count; i++) await c.expectMessage(msgs[i][0], msgs[i][1], `message ${i} of ${count}`);
      await sent;
    };
  }

  /** `parts` sent as one compressed message in several frames, three times over. */
  fragmented(parts, isBinary) {
    return async () => {
      const c = await this.open(OFFER.eager);
      c.deflate();
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < parts.length; i++) {
          await c.send(parts[i], { binary: isBinary, fin: i === parts.length - 1, compress: true });
        }
        await c.expectMessage(Buffer.concat(parts), isBinary);
      }
    };
  }

  async serverCompresses() {
    const c = await this.open(OFFER.default);
    c.deflate();
    for (const [msg, isBinary] of [[jsonText(64 * KIB), false], [jsonText(200), false], [randomBytes(64 * KIB), true]]) {
      await c.roundtrip(msg, isBinary);
      const { compressed, bytes } = c.lastWire();
      expect(compressed, `${describe(isBinary, msg.length)} came back uncompressed (RSV1 clear)`);
      if (!isBinary && msg.length > KIB) {
        expect(bytes < msg.length / 2, `${describe(isBinary, msg.length)} took ${bytes} bytes on the wire`);
      }
    }
  }

  serverContext(offer) {
    return async () => {
      const c = await this.open(offer);
      const ext = c.deflate();
      const msg = jsonText(4 * KIB, 5);
      const sizes = [];
      for (let i = 0; i < 3; i++) {
        await c.roundtrip(msg, false);
        const { compressed, bytes } = c.lastWire();
        expect(compressed, `${describe(false, msg.length)} came back uncompressed`);
        sizes.push(bytes);
      }
      const want = this.mode === 'shared' || Boolean(offer.options.serverNoContextTakeover);
      expect(
        Boolean(ext.params.server_no_context_takeover) === want,
        `offer ${offer.name} in ${this.mode} mode: server_no_context_takeover should ${want ? '' : 'not '}be agreed`,
      );
      const takeover = !ext.params.server_no_context_takeover;
      if (takeover) {
        expect(
          sizes[1] * 4 < sizes[0] && sizes[2] * 4 < sizes[0],
          `with context takeover the repeats should be far smaller: sizes ${sizes}`,
        );
      } else {
        expect(sizes[0] === sizes[1] && sizes[1] === sizes[2], `without context takeover every repeat should compress alike: sizes ${sizes}`);
      }
    };
  }

  tooBig(n) {
    return async () => {
      const c = await this.open(OFFER.eager);
      c.deflate();
      c.ws.send(bomb(n), { binary: false }, () => {});
      const msg = await withTimeout(
        Promise.race([c.closed.then(() => null), c.recv().catch(() => null)]),
        RECV_TIMEOUT,
        'waiting for the server to close with 1009',
      );
      expect(msg === null, `sent text of ${n} bytes: server echoed ${describe(msg?.isBinary, msg?.data.length)} instead of closing with 1009`);
      const info = await withTimeout(c.closed, RECV_TIMEOUT, 'waiting for the close');
      expect(info.code !== 1006, `connection dropped without a close frame${c.error ? ` (${c.error.message})` : ''}`);
      expect(info.code === 1009, `close code ${info.code}, expected 1009`);
    };
  }

  async maxSizeOk() {
    const c = await this.open(OFFER.eager);
    c.deflate();
    await c.roundtrip(bomb(SERVER_MAX), false);
  }

  async runAll() {
    for (const offer of OFFERS) await this.run(`negotiate_${offer.name}`, this.negotiate(offer));
    for (const n of SIZES) await this.run(`echo_text_${n}`, this.echo(() => jsonText(n), false));
    for (const n of SIZES) await this.run(`echo_binary_${n}`, this.echo(() => randomBytes(n), true));
    for (const name of ['default', 'client_no_context_takeover', 'server_max_window_bits_9']) {
      await this.run(`stream_${name}`, this.stream(OFFER[name]));
    }
    const text = ['Frag', 'mented ', jsonText(300), '', jsonText(70000, 2), ' end ✓'].map((p) => Buffer.from(p));
    await this.run('fragmented_text', this.fragmented(text, false));
    const binary = [Buffer.from([0, 1]), randomBytes(125), Buffer.alloc(0), Buffer.alloc(65536), randomBytes(3000)];
    await this.run('fragmented_binary', this.fragmented(binary, true));
    await this.run('server_compresses', () => this.serverCompresses());
    for (const name of ['default', 'server_no_context_takeover']) {
      await this.run(`server_context_${name}`, this.serverContext(OFFER[name]));
    }
    await this.run('max_size_inflated_ok', () => this.maxSizeOk());
    await this.run('over_max_by_one_1009', this.tooBig(SERVER_MAX + 1));
    await this.run('deflate_bomb_1009', this.tooBig(BOMB));
  }
}

async function main() {
  const [base, mode] = process.argv.slice(2);
  if (process.argv.length !== 4 || !base.startsWith('ws://') || !['shared', 'dedicated'].includes(mode)) {
    console.error('usage: node node_deflate.mjs ws://HOST:PORT shared|dedicated');
    return 2;
  }
  console.log(`# node ${process.version}, ws ${wsVersion}`);
  const checks = new Checks(base, mode);
  await checks.runAll();
  return summarize('node_deflate', checks.results);
}

process.exitCode = await main();
