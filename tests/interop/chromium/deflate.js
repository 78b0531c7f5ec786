// permessage-deflate checks for wsreactor, run by deflate.html in Chromium.
//
// The server under test echoes every message with the same opcode, runs with compression MODE
// (shared|dedicated, from the page's query string), default window sizes, and a max message
// size of exactly 2 MiB (as for py_deflate.py and node_deflate.mjs). Chromium offers
// `permessage-deflate; client_max_window_bits` and compresses what it sends.
//
// Checks:
// - negotiated: ws.extensions is exactly the server's answer for MODE;
// - echo_{text,binary}_N: JSON-ish text and random bytes of N bytes echoed byte for byte, one
//   after the other on that same connection (contexts running on across messages);
// - stream_300: 300 messages of mixed sizes and kinds sent without waiting, echoed in order;
// - max_size_inflated_ok, over_max_by_one_1009, deflate_bomb_1009: the limit applies to the
//   inflated size (a 10 MB message that deflates to a few KiB is closed with 1009).
'use strict';

(() => {
  const KIB = 1 << 10;
  const MIB = 1 << 20;
  const SERVER_MAX = 2 * MIB;
  const SIZES = [0, 1, 63, 64, 200, 64 * KIB, MIB];
  const BOMB = 10_000_000;
  const CHECK_TIMEOUT = 60_000;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  const params = new URLSearchParams(location.search);
  const url = params.get('url');
  const mode = params.get('mode');

  class CheckFailed extends Error {}

  function expect(cond, why) {
    if (!cond) throw new CheckFailed(why);
  }

  // ---- payloads (the same recipes as node_deflate.mjs) ----

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

  /** The first n bytes of UTF-8 `bytes` as a string, cut back to a character boundary and
   *  padded with spaces to exactly n bytes. */
  function exactText(bytes, n) {
    let end = Math.min(n, bytes.length);
    while (end > 0 && end < bytes.length && (bytes[end] & 0xc0) === 0x80) end--;
    return decoder.decode(bytes.subarray(0, end)) + ' '.repeat(n - end);
  }

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
      size += encoder.encode(rec).length;
    }
    return exactText(encoder.encode(parts.join('')), n);
  }

  function randomBytes(n, seed = 11) {
    const rnd = prng(seed);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(rnd() * 256);
    return out;
  }

  /** n bytes of text that deflate to a tiny fraction: one 16 KiB block, repeated. */
  function bomb(n) {
    const block = encoder.encode(jsonText(16 * KIB, 3));
    const all = new Uint8Array(n + block.length);
    for (let at = 0; at < all.length; at += block.length) all.set(block.subarray(0, all.length - at), at);
    return exactText(all, n);
  }

  function describe(data) {
    return typeof data === 'string'
      ? `text of ${encoder.encode(data).length} bytes`
      : `binary of ${data.byteLength} bytes`;
  }

  function firstDifference(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
    return n;
  }

  function withTimeout(promise, ms, what) {
    let timer;
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`timed out after ${ms / 1000}s ${what}`)), ms);
    });
    return Promise.race([promise, t]).finally(() => clearTimeout(timer));
  }

  // ---- a connection ----

  class Conn {
    static open(target) {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(target);
        ws.binaryType = 'arraybuffer';
        const c = new Conn(ws);
        ws.addEventListener('open', () => resolve(c), { once: true });
        c.closed.then((info) => reject(new CheckFailed(`handshake failed: close code ${info.code}`)));
      });
    }

    constructor(ws) {
      this.ws = ws;
      this.queue = [];
      this.waiters = [];
      this.closeInfo = null;
      this.closed = new Promise((resolve) => {
        ws.addEventListener('close', (ev) => {
          this.closeInfo = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
          for (const w of this.waiters.splice(0)) w.reject(this.closedError());
          resolve(this.closeInfo);
        });
      });
      ws.addEventListener('message', (ev) => {
        const data = typeof ev.data === 'string' ? ev.data : new Uint8Array(ev.data);
        const w = this.waiters.shift();
        if (w) w.resolve(data);
        else this.queue.push(data);
      });
    }

    closedError() {
      const c = this.closeInfo;
      return new CheckFailed(`connection closed unexpectedly: code ${c.code} reason '${c.reason}'`);
    }

    recv() {
      if (this.queue.length) return Promise.resolve(this.queue.shift());
      if (this.closeInfo) return Promise.reject(this.closedError());
      return withTimeout(
        new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
        20_000,
        'waiting for a message',
      );
    }

    async expectMessage(expected, what = 'echo') {
      const got = await this.recv();
      expect(
        typeof got === typeof expected,
        `${what}: sent ${describe(expected)}, got back ${describe(got)} (opcode changed)`,
      );
      const same =
        typeof got === 'string'
          ? got === expected
          : got.length === expected.length && firstDifference(got, expected) === got.length;
      if (!same) {
        const a = typeof got === 'string' ? encoder.encode(got) : got;
        const b = typeof expected === 'string' ? encoder.encode(expected) : expected;
        throw new CheckFailed(
          `${what}: sent ${describe(expected)}, got back ${describe(got)} differing at index ${firstDifference(a, b)}`,
        );
      }
    }

    async roundtrip(data, what) {
      this.ws.send(data);
      await this.expectMessage(data, what);
    }

    close() {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    }
  }

  // ---- the checks ----

  const results = [];
  const out = document.getElementById('results');

  async function check(name, fn) {
    let result;
    try {
      await withTimeout(fn(), CHECK_TIMEOUT, 'for the whole check');
      result = { name, ok: true, why: '' };
    } catch (e) {
      const why = e instanceof CheckFailed ? e.message : `${e.name}: ${e.message}`;
      result = { name, ok: false, why };
    }
    results.push(result);
    out.textContent += result.ok ? `ok ${name}\n` : `FAIL ${name}: ${result.why}\n`;
  }

  function expectedExtensions() {
    const answer = ['permessage-deflate'];
    if (mode === 'shared') answer.push('server_no_context_takeover', 'client_no_context_takeover');
    return answer;
  }

  async function negotiatedAndEchoes() {
    let c = null;
    await check('negotiated', async () => {
      c = await Conn.open(url);
      const got = c.ws.extensions.split(';').map((p) => p.trim());
      const want = expectedExtensions();
      expect(
        JSON.stringify(got) === JSON.stringify(want),
        `in ${mode} mode: ws.extensions is '${c.ws.extensions}', expected '${want.join('; ')}'`,
      );
    });
    for (const [kind, make] of [
      ['text', (n) => jsonText(n, n)],
      ['binary', (n) => randomBytes(n, n)],
    ]) {
      for (const n of SIZES) {
        await check(`echo_${kind}_${n}`, async () => {
          expect(c && !c.closeInfo, 'no open connection (see negotiated)');
          await c.roundtrip(make(n));
        });
      }
    }
    if (c) c.close();
  }

  async function stream(count = 300) {
    const rnd = prng(99);
    const sizes = [0, 1, 63, 64, 65, 100, 200, 1000, 4096, 8192];
    const msgs = [];
    for (let i = 0; i < count; i++) {
      const n = sizes[Math.floor(rnd() * sizes.length)];
      msgs.push(i % 3 ? jsonText(n, i) : randomBytes(n, i));
    }
    const c = await Conn.open(url);
    try {
      for (const m of msgs) c.ws.send(m);
      for (let i = 0; i < count; i++) await c.expectMessage(msgs[i], `message ${i} of ${count}`);
    } finally {
      c.close();
    }
  }

  async function maxSizeOk() {
    const c = await Conn.open(url);
    try {
      await c.roundtrip(bomb(SERVER_MAX));
    } finally {
      c.close();
    }
  }

  function tooBig(n) {
    return async () => {
      const c = await Conn.open(url);
      c.ws.send(bomb(n));
      const msg = await withTimeout(
        Promise.race([c.closed.then(() => null), c.recv().catch(() => null)]),
        20_000,
        'waiting for the server to close with 1009',
      );
      if (msg !== null) {
        throw new CheckFailed(`sent text of ${n} bytes: server echoed ${describe(msg)} instead of closing with 1009`);
      }
      const info = await withTimeout(c.closed, 20_000, 'waiting for the close');
      expect(info.code === 1009, `close code ${info.code}, expected 1009`);
    };
  }

  async function runAll() {
    if (!url || !['shared', 'dedicated'].includes(mode)) {
      results.push({ name: 'usage', ok: false, why: 'open as deflate.html?url=ws://HOST:PORT&mode=shared|dedicated' });
      return results;
    }
    await negotiatedAndEchoes();
    await check('stream_300', () => stream());
    await check('max_size_inflated_ok', maxSizeOk);
    await check('over_max_by_one_1009', tooBig(SERVER_MAX + 1));
    await check('deflate_bomb_1009', tooBig(BOMB));
    return results;
  }

  window.wsreactorResults = runAll().then((r) => {
    const failed = r.filter((x) => !x.ok).length;
    document.getElementById('status').textContent = `done: ${r.length - failed} ok, ${failed} FAIL`;
    return r;
  });
})();
