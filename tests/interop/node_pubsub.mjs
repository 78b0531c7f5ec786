#!/usr/bin/env node
// Topic server (pub/sub) checks for wsreactor, driven by the Node `ws` client.
//
// Usage:
//   node node_pubsub.mjs URL [--history URL] [--slow-close URL] [--slow-drop URL]
//                        [--slow-conflate URL] [--only NAME,...]
//
// Every URL is a wsreactor topic server (`PubSub` with the default limits and the publish token
// `tok`). URL has no history; --history has a history of 100 deliveries per topic; the --slow-*
// servers run one reactor with a 64 KiB output cap, that slow-consumer policy, and a close timeout
// well over a flood's length (the stuck client must resume reading within it to see the 1008).
// The checks that need a server not given are left out (the Rust side checks that every one
// ran). `ws` is loaded from $WSREACTOR_NODE_MODULES, else from node_modules beside this file.
//
// Prints `ok NAME` or `FAIL NAME: why` per check, then a summary line, and exits 1 if any check
// failed (2 on a usage or setup error). The whole run is bounded by RUN_BUDGET.

import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const modulesDir =
  process.env.WSREACTOR_NODE_MODULES || join(dirname(fileURLToPath(import.meta.url)), 'node_modules');
let WebSocket;
try {
  WebSocket = createRequire(import.meta.url)(join(modulesDir, 'ws'));
} catch (e) {
  console.error(`cannot load ws from ${modulesDir} (${e.message}); run tools/test.sh`);
  process.exit(2);
}

const TOKEN = 'tok';
const PUBLISHER = `/?token=${TOKEN}`;
const RECV_TIMEOUT = 10_000; // ms for one message; a healthy server answers in milliseconds
const CHECK_TIMEOUT = 30_000;
const RUN_BUDGET = 55_000; // the whole script, so that a hanging server still gives a report

// Server limits (Limits::default()) the checks probe.
const MAX_TOPIC_LEN = 128;
const MAX_TOPICS_PER_OP = 64;
const MAX_TOPICS_PER_CONN = 256;
const MAX_OP_LEN = 64 << 10;
const MAX_ERRORS_IN_A_ROW = 16;
const HISTORY = 100; // of the --history server

// The slow-consumer flood: messages of about 1 KiB, the publisher at most FLOOD_WINDOW messages
// ahead of the reader (about 30 KiB, under the 64 KiB cap), so the reader never falls behind.
// The paused client's kernel buffers and the server's socket buffer hold a few MiB before the
// server's queue fills, hence 12 MiB in all.
const FLOOD_MESSAGES = 12_000;
const FLOOD_WINDOW = 30;
const FLOOD_PAYLOAD = 'x'.repeat(1000);

class CheckFailed extends Error {}

/** The connection closed while a message was awaited. */
class Closed extends CheckFailed {
  constructor(code, reason, what) {
    super(`connection closed (code ${code}, reason '${reason}') while waiting for ${what}`);
    this.code = code;
    this.reason = reason;
  }
}

function expect(cond, why) {
  if (!cond) throw new CheckFailed(typeof why === 'function' ? why() : why);
}

function short(x, n = 80) {
  const s =
    typeof x === 'string'
      ? x
      : Buffer.isBuffer(x)
        ? `<${x.length} bytes ${x.subarray(0, 12).toString('hex')}>`
        : JSON.stringify(x);
  return s.length <= n ? s : `${s.slice(0, n)}...`;
}

function timeout(ms, what) {
  let timer;
  const p = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new CheckFailed(`nothing within ${ms / 1000}s while waiting for ${what}`)),
      ms,
    );
  });
  return { p, cancel: () => clearTimeout(timer) };
}

/** A `ws` connection: text messages as strings, binary ones as Buffers, read in order. */
class Peer {
  constructor(ws) {
    this.ws = ws;
    this.inbox = [];
    this.wake = null;
    this.closed = null; // { code, reason }
    this.errors = [];
    ws.on('message', (data, isBinary) => this.deliver(isBinary ? data : data.toString('utf8')));
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.deliver(null);
    });
    ws.on('error', (e) => this.errors.push(e.message));
  }

  deliver(msg) {
    if (msg !== null) this.inbox.push(msg);
    const wake = this.wake;
    this.wake = null;
    if (wake) wake();
  }

  /** The next message; fails on a close or after `ms`. */
  async next(what, ms = RECV_TIMEOUT) {
    const t = timeout(ms, what);
    try {
      while (this.inbox.length === 0) {
        if (this.closed) throw new Closed(this.closed.code, this.closed.reason, what);
        await Promise.race([new Promise((resolve) => (this.wake = resolve)), t.p]);
      }
      return this.inbox.shift();
    } finally {
      t.cancel();
    }
  }

  async nextJson(what) {
    return parseJson(await this.next(what), what);
  }

  send(data) {
    return new Promise((resolve, reject) => {
      const payload = typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data);
      this.ws.send(payload, { binary: Buffer.isBuffer(payload) }, (e) =>
        e ? reject(new CheckFailed(`send failed: ${e.message}`)) : resolve(),
      );
    });
  }
}

function parseJson(raw, what) {
  expect(
    typeof raw === 'string',
    () => `${what}: got a binary message of ${raw.length} bytes, expected text`,
  );
  try {
    return JSON.parse(raw);
  } catch {
    throw new CheckFailed(`${what}: not JSON: ${short(raw)}`);
  }
}

/** `msg` is the reply `op` to a request with id `rid` (undefined: sent without one). */
function checkReply(msg, op, rid, what) {
  if (msg.op === 'error' && op !== 'error')
    throw new CheckFailed(`${what}: error '${msg.code}' (${msg.message})`);
  expect(msg.op === op, () => `${what}: expected op '${op}', got ${short(msg)}`);
  const keys = Object.keys(msg);
  expect(keys[0] === 'op', () => `${what}: the first member is '${keys[0]}', not 'op'`);
  if (rid === undefined) {
    expect(!('id' in msg), () => `${what}: an id ${JSON.stringify(msg.id)} for a request without one`);
  } else {
    expect(
      msg.id === rid,
      () => `${what}: id ${JSON.stringify(msg.id)}, expected ${JSON.stringify(rid)} echoed`,
    );
    expect(keys[1] === 'id', () => `${what}: the id is member ${keys.indexOf('id') + 1}, not the second`);
  }
}

function checkError(msg, code, rid, what) {
  checkReply(msg, 'error', rid, what);
  expect(msg.code === code, () => `${what}: error code '${msg.code}', expected '${code}'`);
  expect(typeof msg.message === 'string', `${what}: the error has no message`);
}

/**
 * A delivery: text `{"topic":..,"seq":..,"data":..}`, or binary
 * `[0x01][topic_len][topic][seq u64 BE][payload]` (data: the payload Buffer).
 */
function decode(raw, what = 'a delivery') {
  if (Buffer.isBuffer(raw)) {
    expect(raw.length >= 2 && raw[0] === 0x01, () => `${what}: binary message ${short(raw)} is no delivery`);
    const n = raw[1];
    expect(raw.length >= 10 + n, () => `${what}: binary delivery of ${raw.length} bytes is cut short`);
    const seq = Number(raw.readBigUInt64BE(2 + n));
    return { topic: raw.subarray(2, 2 + n).toString('utf8'), seq, data: raw.subarray(10 + n) };
  }
  expect(raw.startsWith('{"topic":'), () => `${what}: expected a delivery, got ${short(raw)}`);
  const msg = parseJson(raw, what);
  expect(Object.keys(msg).join() === 'topic,seq,data', () => `${what}: members ${Object.keys(msg)}`);
  return msg;
}

/** The exact text of a delivery whose data is the JSON text `dataJson` (verbatim). */
function textDelivery(topic, seq, dataJson) {
  return `{"topic":${JSON.stringify(topic)},"seq":${seq},"data":${dataJson}}`;
}

function binaryPublish(topic, payload, kind = 0x02) {
  const t = Buffer.from(topic, 'utf8');
  return Buffer.concat([Buffer.from([kind, t.length]), t, payload]);
}

/** A JSON ping (with id `rid` if given) padded with p's to exactly `size` bytes. */
function paddedPing(size, rid = undefined) {
  const head = `{"op":"ping",${rid === undefined ? '' : `"id":${JSON.stringify(rid)},`}"pad":"`;
  const tail = '"}';
  const text = head + 'p'.repeat(size - head.length - tail.length) + tail;
  if (Buffer.byteLength(text) !== size) throw new Error(`a ping cannot be ${size} bytes`);
  return text;
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Where `seqs` first fails to increase, or null. */
function firstDecrease(seqs) {
  const k = seqs.findIndex((s, i) => i > 0 && s <= seqs[i - 1]);
  return k < 0 ? null : `seq ${seqs[k]} after ${seqs[k - 1]} (delivery ${k + 1})`;
}

function expectResync(rest, topic, latest) {
  expect(rest.length === 2, () => `expected a resync and the last value, got ${short(rest)}`);
  const msg = parseJson(rest[0], 'the resync');
  checkReply(msg, 'resync', undefined, 'the resync notice');
  expect(msg.topic === topic && msg.seq === latest, () => `resync ${short(msg)}, expected seq ${latest}`);
  const d = decode(rest[1], 'the last value after the resync');
  expect(d.topic === topic && d.seq === latest, () => `after the resync: ${short(d)}`);
}

class Checks {
  constructor(base, history, slow, only) {
    this.base = base.replace(/\/+$/, '');
    this.history = history?.replace(/\/+$/, '');
    this.slow = slow;
    this.only = only;
    this.results = [];
    this.peers = [];
    this.ids = 0;
    this.deadline = Date.now() + RUN_BUDGET;
    // Topics of this run, so that a rerun against the same server starts from seq 1.
    this.tag = randomBytes(4).toString('hex');
  }

  topic(name) {
    return `${name}.${this.tag}`;
  }

  nextId() {
    return ++this.ids;
  }

  async run(name, fn) {
    if (this.only && !this.only.has(name)) return;
    const left = this.deadline - Date.now();
    let result;
    if (left <= 1000) {
      result = `not started: the run's ${RUN_BUDGET / 1000}s budget is spent`;
    } else {
      const t = timeout(Math.min(CHECK_TIMEOUT, left), 'the whole check');
      try {
        await Promise.race([fn(), t.p]);
      } catch (e) {
        result = e instanceof CheckFailed ? e.message : `${e.name}: ${e.message}`;
      } finally {
        t.cancel();
        await this.closeAll();
      }
    }
    this.results.push([name, result === undefined]);
    console.log(result === undefined ? `ok ${name}` : `FAIL ${name}: ${result}`);
  }

  /** Cleanup, not part of the result: close what the check opened, then drop it. */
  async closeAll() {
    const peers = this.peers.splice(0);
    for (const p of peers) {
      if (p.ws.readyState === WebSocket.OPEN) p.ws.close(1000);
      if (p.ws.isPaused) p.ws.resume();
    }
    const deadline = Date.now() + 1000;
    while (peers.some((p) => !p.closed) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const p of peers) if (!p.closed) p.ws.terminate();
  }

  /** Opens a connection; rejects with `status` set when the server refuses the upgrade. */
  open(path = '/', { base = this.base, headers } = {}) {
    const ws = new WebSocket(base + path, { perMessageDeflate: false, handshakeTimeout: 10_000, headers });
    const peer = new Peer(ws);
    this.peers.push(peer);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(peer));
      ws.once('unexpected-response', (req, res) => {
        res.resume();
        req.destroy();
        const e = new CheckFailed(`handshake refused with HTTP ${res.statusCode}`);
        e.status = res.statusCode;
        reject(e);
      });
      ws.once('error', (e) => reject(new CheckFailed(`handshake failed: ${e.message}`)));
    });
  }

  publisher(base = this.base, headers = undefined) {
    return this.open(PUBLISHER, { base, headers });
  }

  // ---- request helpers ---------------------------------------------------------------------

  /** The raw messages received before the pong with id `syncId`. */
  async untilPong(peer, syncId) {
    const got = [];
    for (;;) {
      const raw = await peer.next(`the pong '${syncId}'`);
      if (typeof raw === 'string' && raw.startsWith('{"op":')) {
        const msg = parseJson(raw, 'a reply');
        if (msg.op === 'pong' && msg.id === syncId) return got;
        if (msg.op === 'error') throw new CheckFailed(`unexpected error ${short(raw)}`);
      }
      got.push(raw);
    }
  }

  /** Pings and returns what arrived before the pong (the server answers in order). */
  async sync(peer) {
    const syncId = `sync-${this.nextId()}`;
    await peer.send({ op: 'ping', id: syncId });
    return this.untilPong(peer, syncId);
  }

  /**
   * Sends `req` then a ping; returns the first reply (parsed) and the raw messages between it and
   * the pong. A pong first means `req` got no reply: fail at once, not on a timeout.
   */
  async request(peer, req) {
    const syncId = `sync-${this.nextId()}`;
    await peer.send(req);
    await peer.send({ op: 'ping', id: syncId });
    const first = await peer.nextJson(`the reply to ${short(req)}`);
    if (first.op === 'pong' && first.id === syncId) {
      throw new CheckFailed(`no reply to ${short(req)}: the pong to a later ping came first`);
    }
    return [first, await this.untilPong(peer, syncId)];
  }

  /**
   * Subscribes (with `since` and `epoch` if given); checks the `subscribed` reply and returns its
   * epoch and the catch-up (raw messages).
   */
  async subscribed(peer, topics, { since, epoch, rid = `sub-${this.nextId()}` } = {}) {
    const req = { op: 'subscribe', id: rid, topics };
    if (since !== undefined) req.since = since;
    if (epoch !== undefined) req.epoch = epoch;
    const [reply, rest] = await this.request(peer, req);
    checkReply(reply, 'subscribed', rid, 'the subscribe reply');
    const want = [...new Set(topics)];
    expect(same(reply.topics, want), () => `subscribed ${short(reply.topics)}, expected ${short(want)}`);
    const members = Object.keys(reply).join();
    expect(members === 'op,id,topics,epoch', () => `the reply's members are ${members}, not op,id,topics,epoch`);
    expect(
      typeof reply.epoch === 'string' && /^[0-9a-f]{16}$/.test(reply.epoch),
      () => `the epoch ${JSON.stringify(reply.epoch)} is not a string of 16 lowercase hex digits`,
    );
    return [reply.epoch, rest];
  }

  /** Subscribes; checks the `subscribed` reply and returns the catch-up (raw messages). */
  async subscribe(peer, topics, options = {}) {
    return (await this.subscribed(peer, topics, options))[1];
  }

  /**
   * The epoch a `subscribed` reply of the server at `base` gives (the session before a
   * reconnection, in which the client learnt it).
   */
  async serverEpoch(base = this.base) {
    const [epoch] = await this.subscribed(await this.open('/', { base }), [this.topic('epoch.probe')]);
    return epoch;
  }

  /** A JSON publish with `ack` (data given as JSON text); returns the acknowledged seq. */
  async publish(pub, topic, dataJson) {
    const rid = this.nextId();
    await pub.send(
      `{"op":"publish","id":${rid},"topic":${JSON.stringify(topic)},"ack":true,"data":${dataJson}}`,
    );
    const ack = await pub.nextJson(`the ack of a publish on ${topic}`);
    checkReply(ack, 'published', rid, 'the publish ack');
    expect(ack.topic === topic, () => `ack for topic '${ack.topic}', expected '${topic}'`);
    return ack.seq;
  }

  async publishMany(pub, topic, count, dataOf = (i) => String(i)) {
    for (let i = 1; i <= count; i++) {
      const seq = await this.publish(pub, topic, dataOf(i));
      expect(seq === i, () => `publish ${i} on ${topic} acknowledged with seq ${seq}`);
    }
  }

  // ---- subscribe and deliveries --------------------------------------------------------------

  async subscribeReply() {
    const ws = await this.open();
    // Duplicates are merged, in order of first appearance.
    const [epoch] = await this.subscribed(ws, ['sr.b', 'sr.a', 'sr.b'], { rid: 's-1' });
    const [again] = await this.subscribed(ws, ['sr.c'], { rid: 7 });
    expect(again === epoch, () => `the epoch changed from ${epoch} to ${again} within a run`);
    const [reply, rest] = await this.request(ws, { op: 'unsubscribe', id: 7.5, topics: ['sr.a'] });
    checkReply(reply, 'unsubscribed', 7.5, 'the unsubscribe reply');
    expect(same(reply.topics, ['sr.a']), () => `unsubscribed ${short(reply.topics)}`);
    expect(rest.length === 0, () => `unexpected messages ${short(rest)}`);
    await ws.send('{"op":"ping"}');
    checkReply(await ws.nextJson('the pong'), 'pong', undefined, 'a ping without id');
  }

  async orderedDeliveries() {
    const topic = this.topic('md.ORDER');
    const n = 2000;
    const data = (i) => `{"px":${i}, "tag":"p${i}"}`; // a space that a verbatim copy keeps
    const subs = [];
    for (let k = 0; k < 3; k++) {
      const s = await this.open();
      const rest = await this.subscribe(s, [topic]);
      expect(rest.length === 0, () => `a topic nobody published on sent ${short(rest)}`);
      subs.push(s);
    }
    const pub = await this.publisher();
    const sendAll = async () => {
      for (let i = 1; i <= n; i++)
        await pub.send(`{"op":"publish","topic":"${topic}","data":${data(i)},"ack":true,"id":${i}}`);
    };
    const acks = async () => {
      for (let i = 1; i <= n; i++) {
        const ack = await pub.nextJson(`ack ${i}`);
        checkReply(ack, 'published', i, `ack ${i}`);
        expect(ack.seq === i, () => `publish ${i} acknowledged with seq ${ack.seq}`);
      }
    };
    const read = async (k, s) => {
      for (let i = 1; i <= n; i++) {
        const raw = await s.next(`delivery ${i} at subscriber ${k}`);
        if (raw !== textDelivery(topic, i, data(i))) {
          const d = decode(raw, `subscriber ${k}`);
          expect(d.seq === i, () => `subscriber ${k}: seq ${d.seq} where ${i} was due`);
          throw new CheckFailed(`subscriber ${k}: delivery ${i} is ${short(raw)}, data not verbatim`);
        }
      }
    };
    // The first failure is raised; the check's cleanup closes what the others wait on.
    await Promise.all([sendAll(), acks(), ...subs.map((s, k) => read(k, s))]);
  }

  async snapshot() {
    const topic = this.topic('md.SNAP');
    const live = await this.open();
    const pub = await this.publisher();
    await this.subscribe(live, [topic]);
    await this.publishMany(pub, topic, 3, (i) => `{"px":${i}}`);
    const seen = [];
    for (let i = 1; i <= 3; i++) {
      const raw = await live.next(`live delivery ${i}`);
      expect(decode(raw).seq === i, () => `the live subscriber got ${short(raw)} as delivery ${i}`);
      seen.push(raw);
    }
    const late = await this.open();
    const rest = await this.subscribe(late, [topic, this.topic('md.SNAP.none')]);
    expect(
      rest.length === 1,
      () => `expected the last value only, got ${rest.length} messages ${short(rest)}`,
    );
    const d = decode(rest[0], 'the snapshot');
    expect(d.seq === 3 && same(d.data, { px: 3 }), () => `snapshot ${short(rest[0])}, expected seq 3`);
    expect(rest[0] === seen[2], () => `snapshot ${short(rest[0])} differs from the live ${short(seen[2])}`);
  }

  /**
   * Subscribers join a topic while it is published on without pause: each sees its snapshot and
   * then the next seqs exactly, never one older than the snapshot.
   */
  async joinMidStream() {
    const topic = this.topic('md.MID');
    const [rounds, reads] = [20, 25];
    const pub = await this.publisher();
    await pub.send(binaryPublish(topic, Buffer.from('0'))); // so that every join has a snapshot
    let stop = false;
    const feed = async () => {
      for (let i = 1; !stop; i++) {
        await pub.send(binaryPublish(topic, Buffer.from(String(i))));
        // Long bursts, with pauses for the subscribers to read.
        if (i % 200 === 0) await new Promise((r) => setTimeout(r, 5));
      }
    };
    const joins = async () => {
      try {
        for (let r = 0; r < rounds; r++) {
          const ws = await this.open();
          // The snapshot, and maybe live deliveries before the pong.
          const rest = await this.subscribe(ws, [topic]);
          expect(rest.length > 0, () => `join ${r}: no snapshot`);
          const seqs = rest.map((raw) => decode(raw, `join ${r}: the catch-up`).seq);
          for (let k = 0; k < reads; k++) seqs.push(decode(await ws.next(`join ${r}: delivery ${k + 1}`)).seq);
          expect(
            seqs.every((seq, k) => seq === seqs[0] + k),
            () => `join ${r}: seqs ${seqs.join(',')}, not consecutive from the snapshot`,
          );
          ws.ws.terminate();
        }
      } finally {
        stop = true;
      }
    };
    await Promise.all([feed(), joins()]);
  }

  async sinceWithoutHistory() {
    const topic = this.topic('md.SINCE0');
    const pub = await this.publisher();
    await this.publishMany(pub, topic, 3);
    const epoch = await this.serverEpoch();
    const rest = await this.subscribe(await this.open(), [topic], { since: { [topic]: 2 }, epoch });
    expect(same(rest.map((r) => decode(r).seq), [3]), () => `one behind: got ${short(rest)}`);
    expectResync(
      await this.subscribe(await this.open(), [topic], { since: { [topic]: 1 }, epoch }),
      topic,
      3,
    );
    // Without the epoch: the seq is taken at its word (the form from before epochs).
    const bare = await this.subscribe(await this.open(), [topic], { since: { [topic]: 2 } });
    expect(same(bare.map((r) => decode(r).seq), [3]), () => `no epoch, one behind: ${short(bare)}`);
  }

  /**
   * A since counted in another epoch (an earlier run of the server) gets a resync and the last
   * value, whatever the seq; the right epoch, in either case, the deliveries after it.
   */
  async sinceWrongEpoch() {
    const topic = this.topic('ep.t');
    const never = this.topic('ep.never');
    const pub = await this.publisher();
    await this.publishMany(pub, topic, 3);
    const epoch = await this.serverEpoch();
    const wrong = epoch.slice(0, -1) + (epoch.endsWith('0') ? '1' : '0');
    for (const seq of [2, 3, 0]) {
      const rest = await this.subscribe(await this.open(), [topic], { since: { [topic]: seq }, epoch: wrong });
      expectResync(rest, topic, 3);
    }
    // A topic nothing was published on: the resync notice alone, at seq 0.
    const alone = await this.subscribe(await this.open(), [never], { since: { [never]: 5 }, epoch: wrong });
    expect(alone.length === 1, () => `expected the resync alone, got ${short(alone)}`);
    const msg = parseJson(alone[0], 'the resync');
    checkReply(msg, 'resync', undefined, 'the resync notice');
    expect(msg.topic === never && msg.seq === 0, () => `resync ${short(msg)}`);
    const ws = await this.open();
    const right = await this.subscribe(ws, [topic], { since: { [topic]: 2 }, epoch: epoch.toUpperCase() });
    expect(same(right.map((r) => decode(r).seq), [3]), () => `the right epoch: got ${short(right)}`);
    const current = await this.subscribe(ws, [topic], { since: { [topic]: 3 }, epoch });
    expect(current.length === 0, () => `up to date, yet got ${short(current)}`);
  }

  // ---- history -------------------------------------------------------------------------------

  async historyReplay() {
    const topic = this.topic('h.replay');
    const other = this.topic('h.other');
    const pub = await this.publisher(this.history);
    await this.publishMany(pub, topic, 150, (i) => `{"v":${i}}`);
    await this.publishMany(pub, other, 5);
    const epoch = await this.serverEpoch(this.history);
    const ws = await this.open('/', { base: this.history });
    const got = (await this.subscribe(ws, [topic, other], { since: { [topic]: 120 }, epoch })).map((r) =>
      decode(r),
    );
    expect(got.length === 31, () => `expected 30 replayed and 1 last value, got ${got.length}`);
    got.slice(0, 30).forEach((d, k) => {
      expect(
        d.topic === topic && d.seq === 121 + k,
        () => `replay ${k + 1}: ${short(d)}, expected seq ${121 + k}`,
      );
      expect(same(d.data, { v: d.seq }), () => `seq ${d.seq} carries ${short(d.data)}`);
    });
    expect(
      same(got[30], { topic: other, seq: 5, data: 5 }),
      () => `then ${short(got[30])}, expected the last value of ${other}`,
    );
    // Up to date: nothing; `since` applies per topic.
    const rest = await this.subscribe(ws, [topic], { since: { [topic]: 150 }, epoch });
    expect(rest.length === 0, () => `up to date, yet got ${short(rest)}`);
  }

  async historyResync() {
    const topic = this.topic('h.resync');
    const pub = await this.publisher(this.history);
    await this.publishMany(pub, topic, 150);
    const oldest = 150 - HISTORY;
    const epoch = await this.serverEpoch(this.history);
    const fresh = () => this.open('/', { base: this.history });
    expectResync(
      await this.subscribe(await fresh(), [topic], { since: { [topic]: oldest - 1 }, epoch }),
      topic,
      150,
    );
    // A since past the latest seq: resync too (even without an epoch).
    expectResync(await this.subscribe(await fresh(), [topic], { since: { [topic]: 1000 } }), topic, 150);
    // Exactly what history holds: all of it, no resync.
    const rest = await this.subscribe(await fresh(), [topic], { since: { [topic]: oldest }, epoch });
    const seqs = rest.map((r) => decode(r).seq);
    expect(
      seqs.length === HISTORY && seqs[0] === oldest + 1,
      () => `replayed ${seqs.length} from ${seqs[0]}, history holds ${HISTORY}`,
    );
    expect(
      seqs.every((s, k) => s === oldest + 1 + k),
      () => `the replay: ${short(seqs)}`,
    );
  }

  // ---- unsubscribe ---------------------------------------------------------------------------

  async unsubscribe() {
    const [a, b, never] = ['un.a', 'un.b', 'un.never'].map((t) => this.topic(t));
    const ws = await this.open();
    const pub = await this.publisher();
    await this.subscribe(ws, [a, b]);
    await this.publish(pub, a, '1');
    const first = decode(await ws.next('the first delivery'));
    expect(same(first, { topic: a, seq: 1, data: 1 }), () => `first delivery ${short(first)}`);
    const [reply, rest] = await this.request(ws, { op: 'unsubscribe', id: 'u', topics: [a, never] });
    checkReply(reply, 'unsubscribed', 'u', 'the unsubscribe reply');
    expect(same(reply.topics, [a, never]), () => `unsubscribed ${short(reply.topics)}`);
    expect(rest.length === 0, () => `unexpected ${short(rest)}`);
    await this.publish(pub, a, '2');
    await this.publish(pub, b, '3');
    const d = decode(await ws.next('the delivery on b'));
    expect(same(d, { topic: b, seq: 1, data: 3 }), () => `after unsubscribing ${a}: got ${short(d)}`);
    const after = await this.sync(ws);
    expect(after.length === 0, () => `deliveries after unsubscribing: ${short(after)}`);
  }

  // ---- publishers ----------------------------------------------------------------------------

  async unauthorizedPublish() {
    const topic = this.topic('auth.t');
    const sub = await this.open();
    const anon = await this.open();
    await this.subscribe(sub, [topic]);
    let [reply] = await this.request(anon, { op: 'publish', id: 3, topic, data: 1 });
    checkError(reply, 'unauthorized', 3, 'a JSON publish without the token');
    [reply] = await this.request(anon, binaryPublish(topic, Buffer.from('raw')));
    checkError(reply, 'unauthorized', undefined, 'a binary publish without the token');
    [reply] = await this.request(anon, binaryPublish(topic, Buffer.from('"t"'), 0x03));
    checkError(reply, 'unauthorized', undefined, 'a 0x03 publish without the token');
    const rest = await this.sync(sub);
    expect(rest.length === 0, () => `an unauthorized publish was delivered: ${short(rest)}`);
  }

  async wrongToken() {
    for (const [path, headers] of [
      ['/?token=nope', undefined],
      ['/', { Authorization: 'Bearer nope' }],
    ]) {
      const status = await this.open(path, { headers }).then(
        () => 'open',
        (e) => e.status ?? e.message,
      );
      expect(
        status === 403,
        () => `${path} ${short(headers ?? {})}: ${status === 'open' ? 'let in' : status}, expected HTTP 403`,
      );
    }
  }

  async tokenPublishes() {
    const topic = this.topic('auth.ok');
    const sub = await this.open();
    const query = await this.publisher();
    const bearer = await this.open('/', { headers: { Authorization: `Bearer ${TOKEN}` } });
    await this.subscribe(sub, [topic]);
    expect((await this.publish(query, topic, '"query"')) === 1, 'the ?token= publish');
    expect((await this.publish(bearer, topic, '"bearer"')) === 2, 'the Bearer publish');
    const got = [decode(await sub.next('a delivery')), decode(await sub.next('a delivery'))];
    const want = [
      { topic, seq: 1, data: 'query' },
      { topic, seq: 2, data: 'bearer' },
    ];
    expect(same(got, want), () => `got ${short(got, 200)}`);
  }

  // ---- binary --------------------------------------------------------------------------------

  async binaryPublish() {
    const topic = this.topic('bin.raw');
    const big = Buffer.alloc(100_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const payloads = [Buffer.from([...Array(256).keys()]), Buffer.alloc(0), big];
    const sub = await this.open();
    const pub = await this.publisher();
    await this.subscribe(sub, [topic]);
    for (const p of payloads) await pub.send(binaryPublish(topic, p));
    expect((await this.sync(pub)).length === 0, 'a binary publish was answered');
    for (let seq = 1; seq <= payloads.length; seq++) {
      const raw = await sub.next(`binary delivery ${seq}`);
      expect(Buffer.isBuffer(raw), () => `delivery ${seq} came as text: ${short(raw)}`);
      const d = decode(raw);
      expect(
        d.topic === topic && d.seq === seq,
        () => `delivery ${seq} decoded as '${d.topic}' seq ${d.seq}`,
      );
      const p = payloads[seq - 1];
      expect(
        d.data.equals(p),
        () => `delivery ${seq}: ${d.data.length} payload bytes, sent ${p.length} (or differing)`,
      );
    }
    const rest = await this.subscribe(await this.open(), [topic]);
    expect(rest.length === 1 && Buffer.isBuffer(rest[0]), () => `snapshot ${short(rest)}`);
    const d = decode(rest[0]);
    expect(
      d.seq === 3 && d.data.equals(big),
      () => `the binary snapshot is seq ${d.seq}, ${d.data.length} bytes`,
    );
  }

  async binaryTextPublish() {
    const topic = this.topic('bin.text');
    const texts = ['{"a":[1, 2]}', 'hé "quoted"\n\\ not json', ' 42 '];
    const sub = await this.open();
    const pub = await this.publisher();
    await this.subscribe(sub, [topic]);
    for (const t of texts) await pub.send(binaryPublish(topic, Buffer.from(t, 'utf8'), 0x03));
    for (let seq = 1; seq <= texts.length; seq++) {
      const t = texts[seq - 1];
      const raw = await sub.next(`text delivery ${seq}`);
      expect(typeof raw === 'string', () => `a 0x03 publish delivered as binary: ${short(raw)}`);
      const asJson = isJson(t) ? t : JSON.stringify(t);
      if (raw !== textDelivery(topic, seq, asJson)) {
        const d = decode(raw);
        expect(same(d.data, JSON.parse(asJson)), () => `${JSON.stringify(t)} delivered as ${short(raw)}`);
      }
    }
  }

  async binaryMalformed() {
    const pub = await this.publisher();
    const bad = [
      Buffer.concat([Buffer.from([0x02, 200]), Buffer.from('abc')]),
      Buffer.from([0x09, 1, 0x74]),
      Buffer.from([0x02]),
    ];
    for (const b of bad) {
      const [reply] = await this.request(pub, b);
      checkError(reply, 'bad_request', undefined, `binary ${short(b)}`);
    }
    const [reply] = await this.request(pub, binaryPublish('bad topic', Buffer.from('x')));
    checkError(reply, 'bad_topic', undefined, "a binary publish on 'bad topic'");
  }

  // ---- errors --------------------------------------------------------------------------------

  /** Each request gets an error reply with its code and id; the connection stays open. */
  errorCheck(requests) {
    return async () => {
      const ws = await this.open();
      for (const [req, code, rid, topic] of requests) {
        const [reply, rest] = await this.request(ws, req);
        checkError(reply, code, rid, short(req));
        if (topic !== undefined)
          expect(reply.topic === topic, () => `error topic '${reply.topic}', expected '${topic}'`);
        expect(rest.length === 0, () => `more than the error: ${short(rest)}`);
      }
    };
  }

  /** One bad name fails the whole subscribe: the good one is not subscribed either. */
  async allOrNothing() {
    const topic = this.topic('err.good');
    const ws = await this.open();
    const pub = await this.publisher();
    const [reply] = await this.request(ws, { op: 'subscribe', id: 1, topics: [topic, 'bad topic!'] });
    checkError(reply, 'bad_topic', 1, 'subscribe with one bad name');
    await this.publish(pub, topic, '1');
    expect((await this.sync(ws)).length === 0, `${topic} was subscribed by a failed request`);
  }

  async tooManyTopicsPerConn() {
    const ws = await this.open();
    for (let k = 0; k < MAX_TOPICS_PER_CONN / MAX_TOPICS_PER_OP; k++) {
      await this.subscribe(
        ws,
        Array.from({ length: MAX_TOPICS_PER_OP }, (_, i) => `many.${k}.${i}`),
      );
    }
    const [reply] = await this.request(ws, { op: 'subscribe', id: 'more', topics: ['many.0.0', 'many.x'] });
    checkError(reply, 'too_many_topics', 'more', `topic ${MAX_TOPICS_PER_CONN + 1}`);
    // Topics already held do not count again.
    await this.subscribe(ws, ['many.0.0', 'many.3.63']);
  }

  /**
   * A subscriber's message over MAX_OP_LEN is refused at its frame header: a 1009 close. One of
   * exactly MAX_OP_LEN bytes is answered (the limit is inclusive).
   */
  async tooLargeCloses() {
    const over = MAX_OP_LEN + 1;
    const ws = await this.open();
    // `ws`'s maxPayload bounds what it receives only: the send goes out whole. Not awaited: the
    // server may close before the last of it is written.
    ws.ws.send(paddedPing(over), (e) => e && ws.errors.push(`send: ${e.message}`));
    const closed = await ws.next(`the close after a message of ${over} bytes`).then(
      (got) => {
        throw new CheckFailed(`still open after a message of ${over} bytes: got ${short(got)}`);
      },
      (e) => {
        if (e instanceof Closed) return e;
        throw e;
      },
    );
    expect(closed.code !== 1006, () => `dropped without a close frame (${ws.errors.join('; ')})`);
    expect(closed.code === 1009, () => `close code ${closed.code}, expected 1009`);
    const atLimit = await this.open();
    await atLimit.send(paddedPing(MAX_OP_LEN, 'at-limit'));
    const msg = await atLimit.nextJson(`the pong to a ping of ${MAX_OP_LEN} bytes`);
    checkReply(msg, 'pong', 'at-limit', `a ping of exactly ${MAX_OP_LEN} bytes`);
  }

  /**
   * A publisher may send up to 1 MiB, but a JSON request over MAX_OP_LEN gets a `too_large` error
   * reply, and the connection stays open.
   */
  async publisherTooLarge() {
    const over = MAX_OP_LEN + 1;
    const pub = await this.publisher();
    const [reply, rest] = await this.request(pub, paddedPing(over));
    checkError(reply, 'too_large', undefined, `a publisher's JSON request of ${over} bytes`);
    expect(rest.length === 0, () => `more than the error: ${short(rest)}`);
    await pub.send('{"op":"ping"}');
    const msg = await pub.nextJson('the pong after the too_large error');
    checkReply(msg, 'pong', undefined, 'a ping after the too_large error');
  }

  async abuse() {
    const bad = '{not json';
    const ws = await this.open();
    const expectErrors = async (count) => {
      for (let i = 1; i <= count; i++)
        checkError(await ws.nextJson(`error ${i}`), 'bad_json', undefined, `bad request ${i}`);
    };
    for (let round = 0; round < 2; round++) {
      // 16 failures in a row are tolerated; a success resets the count.
      for (let i = 0; i < MAX_ERRORS_IN_A_ROW; i++) ws.ws.send(bad);
      await expectErrors(MAX_ERRORS_IN_A_ROW);
      expect((await this.sync(ws)).length === 0, 'extra messages');
    }
    for (let i = 0; i <= MAX_ERRORS_IN_A_ROW; i++) ws.ws.send(bad);
    await expectErrors(MAX_ERRORS_IN_A_ROW + 1);
    const closed = await ws.next('the close after 17 bad requests').then(
      (got) => {
        throw new CheckFailed(`still open after 17 bad requests in a row: got ${short(got)}`);
      },
      (e) => {
        if (e instanceof Closed) return e;
        throw e;
      },
    );
    expect(closed.code !== 1006, `dropped without a close frame`);
    expect(closed.code === 1008, () => `close code ${closed.code}, expected 1008`);
    expect(closed.reason === 'too many bad requests', () => `close reason '${closed.reason}'`);
  }

  // ---- slow consumers ------------------------------------------------------------------------

  /**
   * The stuck client (subscribed, then `ws.pause()`: its socket is no longer read), a reader that
   * gets every delivery in order, and a publisher paced to the reader. Returns the stuck client,
   * still paused.
   */
  async flood(base, topic) {
    const stuck = await this.open('/', { base });
    await this.subscribe(stuck, [topic]);
    stuck.ws.pause();
    const reader = await this.open('/', { base });
    await this.subscribe(reader, [topic]);
    const pub = await this.publisher(base);
    const [head, tail] = textDelivery(topic, 0, JSON.stringify(FLOOD_PAYLOAD)).split('"seq":0');
    let seen = 0;
    let failure = null;
    let wake = null;
    const reading = (async () => {
      for (let i = 1; i <= FLOOD_MESSAGES; i++) {
        const raw = await reader.next(`delivery ${i} at the reader`);
        if (raw !== `${head}"seq":${i}${tail}`) {
          throw new CheckFailed(`the reader lost or reordered: ${short(raw)} where seq ${i} was due`);
        }
        seen = i;
        if (wake) wake();
      }
    })().catch((e) => {
      failure = e;
      if (wake) wake();
    });
    const request = `{"op":"publish","topic":"${topic}","data":${JSON.stringify(FLOOD_PAYLOAD)}}`;
    for (let i = 1; i <= FLOOD_MESSAGES; i++) {
      while (i > seen + FLOOD_WINDOW && !failure) await new Promise((resolve) => (wake = resolve));
      if (failure) throw failure;
      pub.ws.send(request);
    }
    await reading;
    if (failure) throw failure;
    return stuck;
  }

  /**
   * Resumes the stuck client: its deliveries up to the pong to a ping must increase (conflate: up
   * to the latest seq); then one more publish reaches it: it is still open, and its seqs show the
   * gap of what it missed.
   */
  async resumeStuck(stuck, base, topic, policy) {
    stuck.ws.resume();
    await stuck.send({ op: 'ping', id: 'after-flood' });
    const got = (await this.untilPong(stuck, 'after-flood')).map((r) => decode(r, 'the stuck client'));
    const seqs = got.map((d) => d.seq);
    expect(
      got.every((d) => d.topic === topic),
      'a delivery on another topic',
    );
    expect(seqs[0] === 1, () => `the first delivery is seq ${seqs[0]}, expected 1`);
    const decrease = firstDecrease(seqs);
    expect(decrease === null, () => `seqs not increasing: ${decrease}`);
    expect(seqs.length < FLOOD_MESSAGES, 'the stuck client got every message: it was never slow');
    if (policy === 'conflate') {
      expect(
        seqs.at(-1) === FLOOD_MESSAGES,
        () => `the last seq is ${seqs.at(-1)}, not the latest ${FLOOD_MESSAGES}`,
      );
    }
    await this.publish(await this.publisher(base), topic, '"after"');
    const d = decode(await stuck.next('a publish after the flood'), 'the stuck client');
    expect(d.seq === FLOOD_MESSAGES + 1 && d.data === 'after', () => `after the flood: ${short(d)}`);
    seqs.push(d.seq);
    expect(seqs.length < d.seq, 'no gap in the seqs');
    console.log(
      `# slow_consumer_${policy}: the stuck client got ${seqs.length} of ${d.seq} deliveries, ` +
        `the last of the flood seq ${seqs.at(-2)}`,
    );
  }

  /**
   * The stuck client, resumed: consecutive deliveries from seq 1 (nothing is dropped before the
   * close), then a 1008 close. It sends nothing: should the server have given up waiting for the
   * close handshake, data sent to its closed socket would draw a reset, and the reset would discard
   * the close frame still unread here.
   */
  async expectSlowClose(stuck) {
    stuck.ws.resume();
    const seqs = [];
    for (;;) {
      let raw;
      try {
        raw = await stuck.next('the close');
      } catch (e) {
        if (!(e instanceof Closed)) throw e;
        expect(
          e.code !== 1006,
          () => `dropped without a close frame after ${seqs.length} deliveries (${stuck.errors.join('; ')})`,
        );
        expect(e.code === 1008, () => `close code ${e.code}, expected 1008`);
        expect(e.reason === 'slow consumer', () => `close reason '${e.reason}'`);
        break;
      }
      const d = decode(raw, 'the stuck client');
      expect(d.seq === seqs.length + 1, () => `seq ${d.seq} after ${seqs.length}: dropped, not closed`);
      seqs.push(d.seq);
      expect(d.seq < FLOOD_MESSAGES, 'got every message and no close');
    }
    console.log(
      `# slow_consumer_close: the stuck client got ${seqs.length} of ${FLOOD_MESSAGES}, then a 1008 close`,
    );
  }

  slowConsumer(policy) {
    return async () => {
      const base = this.slow[policy];
      const topic = this.topic(`slow.${policy}`);
      const stuck = await this.flood(base, topic);
      if (policy === 'close') await this.expectSlowClose(stuck);
      else await this.resumeStuck(stuck, base, topic, policy);
    };
  }

  // ---- driver --------------------------------------------------------------------------------

  async runAll() {
    await this.run('subscribe_reply_echoes_id', () => this.subscribeReply());
    await this.run('deliveries_in_order_3x2000', () => this.orderedDeliveries());
    await this.run('snapshot_on_subscribe', () => this.snapshot());
    await this.run('join_mid_stream_no_older_than_snapshot', () => this.joinMidStream());
    await this.run('since_without_history', () => this.sinceWithoutHistory());
    await this.run('since_wrong_epoch_resyncs', () => this.sinceWrongEpoch());
    if (this.history) {
      await this.run('history_since_replays_missed', () => this.historyReplay());
      await this.run('history_too_old_resyncs', () => this.historyResync());
    }
    await this.run('unsubscribe_stops_deliveries', () => this.unsubscribe());
    await this.run('unauthorized_publish', () => this.unauthorizedPublish());
    await this.run('wrong_token_403', () => this.wrongToken());
    await this.run('token_query_and_bearer_publish', () => this.tokenPublishes());
    await this.run('binary_publish_delivery', () => this.binaryPublish());
    await this.run('binary_text_publish_delivery', () => this.binaryTextPublish());
    await this.run('binary_publish_malformed', () => this.binaryMalformed());
    await this.run(
      'error_bad_json',
      this.errorCheck([
        ['{not json', 'bad_json'],
        ['{"op":"ping"} trailing', 'bad_json'],
      ]),
    );
    await this.run(
      'error_bad_request',
      this.errorCheck([
        [{ op: 'subscribe', id: 5 }, 'bad_request', 5],
        ['[1,2]', 'bad_request'],
        [{ op: 'subscribe', id: 's', topics: ['a'], since: { b: 1 } }, 'bad_request', 's'],
        ['{"op":"ping","id":1,"id":2}', 'bad_request'],
        [{ op: 'subscribe', id: 'e', topics: ['a'], epoch: '0x2a' }, 'bad_request', 'e'],
      ]),
    );
    await this.run(
      'error_unknown_op',
      this.errorCheck([[{ op: 'frobnicate', id: 'u1' }, 'unknown_op', 'u1']]),
    );
    const longName = 'L'.repeat(MAX_TOPIC_LEN + 1);
    await this.run(
      'error_bad_topic',
      this.errorCheck([
        [{ op: 'subscribe', id: 1, topics: ['ok', 'bad topic!'] }, 'bad_topic', 1, 'bad topic!'],
        [{ op: 'subscribe', id: 2, topics: [''] }, 'bad_topic', 2],
        [{ op: 'subscribe', id: 3, topics: [longName] }, 'topic_too_long', 3, longName.slice(0, 64)],
      ]),
    );
    await this.run('error_bad_topic_subscribes_nothing', () => this.allOrNothing());
    const tooMany = Array.from({ length: MAX_TOPICS_PER_OP + 1 }, (_, i) => `t${i}`);
    await this.run(
      'error_too_many_topics',
      this.errorCheck([[{ op: 'subscribe', id: 9, topics: tooMany }, 'too_many_topics', 9]]),
    );
    await this.run('error_too_many_topics_per_connection', () => this.tooManyTopicsPerConn());
    await this.run('too_large_closes_1009', () => this.tooLargeCloses());
    await this.run('publisher_too_large_error', () => this.publisherTooLarge());
    await this.run('bad_requests_17_close_1008', () => this.abuse());
    for (const policy of ['close', 'drop', 'conflate']) {
      if (this.slow[policy]) await this.run(`slow_consumer_${policy}`, this.slowConsumer(policy));
    }
  }
}

async function main() {
  let args;
  try {
    args = parseArgs({
      allowPositionals: true,
      options: {
        history: { type: 'string' },
        'slow-close': { type: 'string' },
        'slow-drop': { type: 'string' },
        'slow-conflate': { type: 'string' },
        only: { type: 'string' },
      },
    });
  } catch (e) {
    console.error(e.message);
    return 2;
  }
  const { values, positionals } = args;
  const urls = [
    positionals[0],
    values.history,
    values['slow-close'],
    values['slow-drop'],
    values['slow-conflate'],
  ];
  if (positionals.length !== 1 || urls.some((u) => u !== undefined && !u.startsWith('ws://'))) {
    console.error(
      'usage: node node_pubsub.mjs URL [--history URL] [--slow-close URL] [--slow-drop URL] ' +
        '[--slow-conflate URL] [--only NAME,...]',
    );
    return 2;
  }
  const wsVersion = createRequire(import.meta.url)(join(modulesDir, 'ws', 'package.json')).version;
  console.log(`# node ${process.version}, ws ${wsVersion}`);
  const slow = { close: values['slow-close'], drop: values['slow-drop'], conflate: values['slow-conflate'] };
  const only = values.only ? new Set(values.only.split(',')) : null;
  const checks = new Checks(positionals[0], values.history, slow, only);
  const started = Date.now();
  await checks.runAll();
  const failed = checks.results.filter(([, ok]) => !ok).map(([name]) => name);
  const took = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `# node_pubsub summary: ${checks.results.length - failed.length} ok, ${failed.length} FAIL in ${took}s`,
  );
  if (failed.length) console.log(`# failed: ${failed.join(' ')}`);
  return failed.length ? 1 : 0;
}

process.exitCode = await main();
