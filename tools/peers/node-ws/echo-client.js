// An independent echo client (Node `ws`), to cross-check wsbench's figures:
//   node echo-client.js URL CONNS SIZE IN_FLIGHT SECONDS [WARMUP_SECONDS]
// Opens CONNS connections, keeps IN_FLIGHT binary messages of SIZE bytes in flight
// on each, verifies every echo (sequence number + pattern), and prints one JSON line:
// messages/s and round-trip percentiles (microseconds) over the measured window.
'use strict';
const WebSocket = require('ws');

const [url, conns, size, inFlight, secs, warm] = [
  process.argv[2] || 'ws://127.0.0.1:9001/',
  Number(process.argv[3] || 10),
  Number(process.argv[4] || 64),
  Number(process.argv[5] || 1),
  Number(process.argv[6] || 5),
  Number(process.argv[7] || 1),
];
if (!/^ws:\/\/(127\.|localhost)/.test(url)) {
  console.error('loopback targets only');
  process.exit(2);
}
const pattern = Buffer.alloc(size);
for (let i = 0; i < size; i++) pattern[i] = (i * 7 + 3) & 0xff;

let measuring = false;
let count = 0;
let errors = 0;
const rtts = [];
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

function payload(seq) {
  const b = Buffer.from(pattern);
  if (size >= 4) b.writeUInt32LE(seq >>> 0, 0);
  return b;
}

let open = 0;
const sockets = [];
for (let c = 0; c < conns; c++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  let next = 0;
  let expect = 0;
  const sent = [];
  const send = () => {
    sent.push(nowUs());
    ws.send(payload(next++));
  };
  ws.on('open', () => {
    open++;
    if (open === conns) start();
  });
  ws.on('message', (data) => {
    const want = payload(expect++);
    if (!want.equals(data)) errors++;
    const t0 = sent.shift();
    if (measuring) {
      count++;
      rtts.push(nowUs() - t0);
    }
    if (running) send();
  });
  ws.on('error', (e) => {
    console.error('client error', e.message);
    process.exit(1);
  });
  ws.start = () => {
    for (let i = 0; i < inFlight; i++) send();
  };
  sockets.push(ws);
}

let running = false;
function start() {
  running = true;
  for (const ws of sockets) ws.start();
  setTimeout(() => {
    measuring = true;
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    setTimeout(() => {
      measuring = false;
      running = false;
      const window = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      rtts.sort((a, b) => a - b);
      const q = (p) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] : 0);
      console.log(JSON.stringify({
        client: 'node-ws', conns, size, inFlight, window_s: window,
        messages: count, msgs_per_s: count / window, verify_errors: errors,
        p50_us: q(0.5), p90_us: q(0.9), p99_us: q(0.99),
        cpu_pct: (100 * (cpu.user + cpu.system)) / 1e6 / window,
      }));
      for (const ws of sockets) ws.close(1000);
      setTimeout(() => process.exit(0), 500);
    }, secs * 1000);
  }, warm * 1000);
}
