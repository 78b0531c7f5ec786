#!/usr/bin/env node
// Interoperability checks for wsreactor, driven by the Node `ws` client.
//
// Usage: node node_client.mjs ws://127.0.0.1:PORT
//
// `ws` is loaded from $WSREACTOR_NODE_MODULES when set, else from node_modules beside this file
// (`npm ci --prefix tests/interop`). The server under test must follow the contract in
// tests/interop.rs (echo with the same opcode up to 16 MiB, pongs, close-code echo,
// `close:<code>:<reason>` command, subprotocols chat.v1/chat.v2 in the client's order,
// /reject -> 403, version 8 -> 426, 16 MiB + 1 -> 1009).
//
// Prints one line per check, `ok NAME` or `FAIL NAME: why`, then a summary line, and exits 1 if
// any check failed (2 on a usage or setup error).

import {
  CheckFailed, describe, expect, firstDifference, loadWs, sleep, summarize, withTimeout,
} from './harness.mjs';

const { WebSocket, wsVersion } = loadWs();

const MIB = 1 << 20;
const SERVER_MAX = 16 * MIB;
const ECHO_SIZES = [0, 1, 125, 126, 127, 65535, 65536, MIB, SERVER_MAX];
const CHECK_TIMEOUT = 60_000; // ms per check, including the 16 MiB ones on a busy 2-core machine
const RECV_TIMEOUT = 20_000;

// One repeating unit of 1-, 2-, 3- and 4-byte UTF-8 sequences.
const TEXT_UNIT = 'wsreactor é ß ✓ 漢字 𝄞 😀 ';

/** A UTF-8 Buffer of exactly n bytes mixing multi-byte characters (valid text). */
function textOfSize(n) {
  const unit = Buffer.from(TEXT_UNIT, 'utf8');
  const reps = Math.floor(n / unit.length);
  const rest = n % unit.length;
  return Buffer.concat([Buffer.from(TEXT_UNIT.repeat(reps), 'utf8'), Buffer.alloc(rest, 'x')]);
}

/** n bytes covering every byte value, with a position-dependent pattern. */
function binaryOfSize(n) {
  const block = Buffer.alloc(65536);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7 + (i >> 8)) & 0xff;
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += block.length) block.copy(out, off, 0, Math.min(block.length, n - off));
  return out;
}

/** A client connection with a message queue and close information. */
class Conn {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closeInfo = null; // { code, reason, wasClean }
    this.error = null;
    this.response = null; // the 101 response (headers)
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
      const item = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(item);
      else this.queue.push(item);
    });
    ws.on('error', (e) => {
      this.error = e;
    });
  }

  closedError() {
    const c = this.closeInfo;
    const err = this.error ? ` (error: ${this.error.message})` : '';
    return new CheckFailed(`connection closed unexpectedly: code ${c.code} reason '${c.reason}'${err}`);
  }

  /** The next message, or a failure if the connection closes first. */
  recv() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(this.closedError());
    const p = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    return withTimeout(p, RECV_TIMEOUT, 'waiting for a message');
  }

  /** Send and wait until the data is handed to the socket (errors reject). */
  send(data, options = {}) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, options, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Send a message and expect it back byte for byte with the same opcode. */
  async roundtrip(data, isBinary) {
    await this.send(data, { binary: isBinary });
    await this.expectMessage(Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8'), isBinary);
  }

  async expectMessage(expected, isBinary) {
    const got = await this.recv();
    const gotBuf = Buffer.isBuffer(got.data) ? got.data : Buffer.concat(got.data);
    expect(
      got.isBinary === isBinary,
      `sent ${describe(isBinary, expected.length)}, got back ${describe(got.isBinary, gotBuf.length)} (opcode changed)`,
    );
    if (!gotBuf.equals(expected)) {
      throw new CheckFailed(
        `sent ${describe(isBinary, expected.length)}, got back ${describe(got.isBinary, gotBuf.length)} ` +
          `differing at index ${firstDifference(gotBuf, expected)}`,
      );
    }
  }

  terminate() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

class Checks {
  constructor(base) {
    this.base = base.replace(/\/+$/, '');
    this.results = [];
    this.conns = [];
  }

  /** Open a connection; resolves once open, rejects on a failed handshake. */
  open(path = '/', { protocols, ...options } = {}) {
    const ws = new WebSocket(this.base + path, protocols, {
      perMessageDeflate: false,
      maxPayload: 2 * SERVER_MAX,
      handshakeTimeout: 10_000,
      closeTimeout: 5_000,
      ...options,
    });
    const conn = new Conn(ws);
    this.conns.push(conn);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(conn));
      ws.once('error', (e) => reject(new CheckFailed(`handshake failed: ${e.message}`)));
    });
  }

  /** Connect to `path` expecting an HTTP error response; resolves with that response. */
  openExpectingRefusal(path, options = {}) {
    const ws = new WebSocket(this.base + path, undefined, { handshakeTimeout: 10_000, ...options });
    const conn = new Conn(ws);
    this.conns.push(conn);
    return new Promise((resolve, reject) => {
      ws.on('unexpected-response', (req, res) => {
        res.resume();
        req.destroy();
        resolve(res);
      });
      ws.once('open', () => reject(new CheckFailed(`handshake to ${path} succeeded`)));
      ws.once('error', (e) => reject(new CheckFailed(`handshake error: ${e.message}`)));
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
      // Cleanup, not part of the result: close what is still open, then drop it.
      const conns = this.conns.splice(0);
      const live = conns.filter((c) => [WebSocket.OPEN, WebSocket.CLOSING].includes(c.ws.readyState));
      for (const c of live) if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
      await Promise.race([Promise.all(live.map((c) => c.closed)), sleep(2000)]);
      for (const c of conns) c.terminate();
    }
  }

  // ---- echo --------------------------------------------------------------------------------

  echo(make, isBinary) {
    return async () => {
      const c = await this.open();
      await c.roundtrip(make(), isBinary);
    };
  }

  /** Send `parts` as one fragmented message with `{ fin: false }` and expect it back whole. */
  async fragmented(parts, isBinary) {
    const c = await this.open();
    for (let i = 0; i < parts.length; i++) {
      await c.send(parts[i], { binary: isBinary, fin: i === parts.length - 1 });
    }
    await c.expectMessage(Buffer.concat(parts), isBinary);
  }

  async fragmentedText() {
    const parts = ['Frag', 'mented ', 'text '.repeat(30), '', 'x'.repeat(70000), ' end'];
    await this.fragmented(parts.map((p) => Buffer.from(p, 'utf8')), false);
  }

  async fragmentedBinary() {
    const parts = [Buffer.from([0, 1]), binaryOfSize(125), Buffer.alloc(0), binaryOfSize(65536), Buffer.alloc(3, 0xff)];
    await this.fragmented(parts, true);
  }

  async nonAsciiText() {
    const c = await this.open();
    await c.roundtrip('héllo wörld — ✓ 漢字テスト 𝄞 😀 Ωμέγα', false);
  }

  async fragmentedUtf8Split() {
    const data = Buffer.from('ünïcødé ✓ 漢字 𝄞😀 end', 'utf8');
    // Cut inside a 2-byte (ü), a 3-byte (✓) and a 4-byte (𝄞) sequence.
    const cuts = [1, data.indexOf(Buffer.from('✓')) + 1, data.indexOf(Buffer.from('𝄞')) + 2];
    const parts = [];
    let prev = 0;
    for (const cut of cuts) {
      parts.push(data.subarray(prev, cut));
      prev = cut;
    }
    parts.push(data.subarray(prev));
    await this.fragmented(parts, false);
  }

  // ---- control frames ----------------------------------------------------------------------

  ping(payload) {
    return async () => {
      const c = await this.open();
      const pong = new Promise((resolve) => c.ws.once('pong', resolve));
      c.ws.ping(payload);
      const got = await withTimeout(pong, RECV_TIMEOUT, 'waiting for the pong');
      expect(got.equals(payload), `pong payload ${got.toString('hex')}, expected ${payload.toString('hex')}`);
      await c.roundtrip('after ping', false);
    };
  }

  async pipelined() {
    const c = await this.open();
    const msgs = [];
    for (let i = 0; i < 50; i++) msgs.push(i % 2 === 0 ? [`msg-${i}`, false] : [Buffer.from(`bin-${i}`), true]);
    for (const [m, isBinary] of msgs) c.ws.send(m, { binary: isBinary });
    for (let i = 0; i < msgs.length; i++) {
      const [m, isBinary] = msgs[i];
      const got = await c.recv();
      const expected = Buffer.isBuffer(m) ? m : Buffer.from(m);
      expect(
        got.isBinary === isBinary && Buffer.from(got.data).equals(expected),
        `message ${i}: expected ${describe(isBinary, expected.length)} '${expected}', ` +
          `got ${describe(got.isBinary, got.data.length)} '${got.data}'`,
      );
    }
  }

  // ---- closing -----------------------------------------------------------------------------

  clientClose(code, reason) {
    return async () => {
      const c = await this.open();
      await c.roundtrip('before close', false);
      c.ws.close(code, reason);
      const info = await withTimeout(c.closed, RECV_TIMEOUT, 'waiting for the close handshake');
      // ws reports the code of the close frame it received (1006 when none came).
      expect(info.code !== 1006, 'closing handshake did not complete: no close frame from the server');
      expect(info.code === code, `server replied with close code ${info.code}, expected ${code}`);
      expect(info.wasClean, 'close was not clean');
    };
  }

  /** Resolves with the close info, or fails at once if a message arrives instead. */
  async expectClose(c, what) {
    const msg = await withTimeout(
      Promise.race([c.closed.then(() => null), c.recv().catch(() => null)]),
      RECV_TIMEOUT,
      `waiting for ${what}`,
    );
    expect(msg === null, `expected a close frame, got a ${describe(msg?.isBinary, msg?.data.length)} message`);
    return withTimeout(c.closed, RECV_TIMEOUT, `waiting for ${what}`);
  }

  async serverClose() {
    const c = await this.open();
    await c.send('close:4001:bye', { binary: false });
    const info = await this.expectClose(c, 'the server to close');
    expect(info.code === 4001, `close code ${info.code}, expected 4001`);
    expect(info.reason === 'bye', `close reason '${info.reason}', expected 'bye'`);
    expect(info.wasClean, 'close was not clean');
  }

  // ---- handshake ---------------------------------------------------------------------------

  /**
   * ws (unlike RFC 6455, which lets the server pick none) aborts the handshake when it offered
   * subprotocols and the 101 names none; so check the 101 itself and that ws gave that reason.
   */
  async subprotocolNoneMatch() {
    const opened = this.open('/', { protocols: ['x'] });
    const c = this.conns[this.conns.length - 1];
    const err = await opened.then(
      () => null,
      (e) => e,
    );
    expect(c.response !== null, `no 101 response (${err?.message})`);
    expect(c.response.statusCode === 101, `HTTP ${c.response.statusCode}`);
    const header = c.response.headers['sec-websocket-protocol'];
    expect(header === undefined, `offered ["x"], server selected '${header}', expected none`);
    expect(/no subprotocol/.test(err?.message), `ws did not refuse as expected: ${err?.message}`);
  }

  subprotocol(offer, expected) {
    return async () => {
      const c = await this.open('/', { protocols: offer });
      const got = c.ws.protocol === '' ? null : c.ws.protocol;
      expect(got === expected, `offered ${JSON.stringify(offer)}, server selected ${got}, expected ${expected}`);
      const header = c.response.headers['sec-websocket-protocol'] ?? null;
      expect(header === expected, `Sec-WebSocket-Protocol header is ${header}`);
      await c.roundtrip('with subprotocol', false);
    };
  }

  async reject() {
    const res = await this.openExpectingRefusal('/reject');
    expect(res.statusCode === 403, `handshake refused with HTTP ${res.statusCode}, expected 403`);
  }

  async version8() {
    // ws itself speaks versions 8 and 13; the server must answer 426 with the versions it supports.
    const res = await this.openExpectingRefusal('/', { protocolVersion: 8 });
    expect(res.statusCode === 426, `HTTP ${res.statusCode}, expected 426`);
    const versions = (res.headers['sec-websocket-version'] ?? '').split(',').map((v) => v.trim());
    expect(versions.includes('13'), `426 response has Sec-WebSocket-Version '${res.headers['sec-websocket-version']}', no 13`);
  }

  // ---- limits ------------------------------------------------------------------------------

  async expect1009(c) {
    const info = await this.expectClose(c, 'the server to close with 1009');
    expect(info.code !== 1006, `connection dropped without a close frame${c.error ? ` (${c.error.message})` : ''}`);
    expect(info.code === 1009, `close code ${info.code}, expected 1009`);
  }

  async tooBig() {
    const c = await this.open();
    c.ws.send(binaryOfSize(SERVER_MAX + 1), { binary: true }, () => {});
    await this.expect1009(c);
  }

  async tooBigFragmented() {
    const c = await this.open();
    const mib = binaryOfSize(MIB);
    for (let i = 0; i < 16; i++) c.ws.send(mib, { binary: true, fin: false }, () => {});
    c.ws.send(Buffer.from('!'), { binary: true, fin: true }, () => {});
    await this.expect1009(c);
  }

  // ---- compression -------------------------------------------------------------------------

  /** `perMessageDeflate: true` is ws's default: it offers permessage-deflate. */
  compression(perMessageDeflate) {
    return async () => {
      const c = await this.open('/', { perMessageDeflate });
      await c.roundtrip('small', false);
      await c.roundtrip(textOfSize(70000), false);
      await c.roundtrip(Buffer.alloc(MIB, 'a'), false);
      await c.roundtrip(binaryOfSize(200000), true);
    };
  }

  async deflateNotNegotiated() {
    const c = await this.open('/', { perMessageDeflate: true });
    const ext = c.response.headers['sec-websocket-extensions'];
    expect(ext === undefined, `server negotiated '${ext}'; compression should be off by default`);
  }

  // ---- concurrency -------------------------------------------------------------------------

  async concurrent() {
    const one = async (i) => {
      const c = await this.open();
      for (let j = 0; j < 20; j++) await c.roundtrip(`conn ${i} msg ${j}`, false);
    };
    await Promise.all([...Array(8).keys()].map(one));
  }

  // ---- driver ------------------------------------------------------------------------------

  async runAll() {
    for (const n of ECHO_SIZES) await this.run(`echo_text_${n}`, this.echo(() => textOfSize(n), false));
    for (const n of ECHO_SIZES) await this.run(`echo_binary_${n}`, this.echo(() => binaryOfSize(n), true));
    await this.run('fragmented_text', () => this.fragmentedText());
    await this.run('fragmented_binary', () => this.fragmentedBinary());
    await this.run('non_ascii_text', () => this.nonAsciiText());
    await this.run('fragmented_utf8_split', () => this.fragmentedUtf8Split());
    await this.run('ping_pong', this.ping(Buffer.from('wsreactor-ping')));
    await this.run('ping_pong_125', this.ping(binaryOfSize(125)));
    await this.run('ping_pong_empty', this.ping(Buffer.alloc(0)));
    await this.run('pipelined_50', () => this.pipelined());
    await this.run('client_close_1000', this.clientClose(1000, ''));
    await this.run('client_close_4000_reason', this.clientClose(4000, 'client says bye ✓'));
    await this.run('server_close_4001', () => this.serverClose());
    await this.run('subprotocol_first_offered', this.subprotocol(['chat.v2', 'chat.v1'], 'chat.v2'));
    await this.run('subprotocol_skip_unknown', this.subprotocol(['x', 'chat.v1'], 'chat.v1'));
    await this.run('subprotocol_none_match', () => this.subprotocolNoneMatch());
    await this.run('subprotocol_not_offered', this.subprotocol(undefined, null));
    await this.run('reject_403', () => this.reject());
    await this.run('version_8_426', () => this.version8());
    await this.run('too_big_1009', () => this.tooBig());
    await this.run('too_big_fragmented_1009', () => this.tooBigFragmented());
    await this.run('compression_none', this.compression(false));
    await this.run('compression_default_offer', this.compression(true));
    await this.run('deflate_not_negotiated', () => this.deflateNotNegotiated());
    await this.run('concurrent_connections_8', () => this.concurrent());
  }
}

async function main() {
  const base = process.argv[2];
  if (process.argv.length !== 3 || !base.startsWith('ws://')) {
    console.error('usage: node node_client.mjs ws://HOST:PORT');
    return 2;
  }
  console.log(`# node ${process.version}, ws ${wsVersion}`);
  const checks = new Checks(base);
  await checks.runAll();
  return summarize('node_client', checks.results);
}

process.exitCode = await main();
