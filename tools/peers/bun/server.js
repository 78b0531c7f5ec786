// Bun peer server for wsbench comparisons (Bun's WebSocket server is uWebSockets):
// `bun server.js echo|broadcast|pubsub PORT`. Listens on 127.0.0.1 only. Echo sends
// every message back to its sender; broadcast publishes every message to every client,
// sender included (server.publish, unlike ws.publish, does not skip the sender).
// Pubsub speaks the subset of wsreactor's topic protocol that wsbench uses: text
// {"op":"subscribe"|"unsubscribe","topics":[..]} requests, binary publishes
// [0x02][topic_len][topic][payload], and binary deliveries
// [0x01][topic_len][topic][seq: u64 BE][payload], encoded once per publish and
// handed to uWebSockets' pub/sub (server.publish) for every subscriber.
const mode = process.argv[2] || "echo";
const port = Number(process.argv[3] || 9001);
if (!["echo", "broadcast", "pubsub"].includes(mode)) {
  console.error("usage: bun server.js echo|broadcast|pubsub PORT");
  process.exit(2);
}

const seqs = new Map(); // topic -> last seq published on it
const utf8 = new TextDecoder("utf-8", { fatal: true });

function error(ws, message) {
  ws.send(JSON.stringify({ op: "error", code: "bad_request", message }));
}

// {"op":"subscribe"|"unsubscribe","topics":[...]}: joins or leaves the topics and
// replies with them, in order, duplicates merged.
function request(ws, text) {
  let req;
  try {
    req = JSON.parse(text);
  } catch (e) {
    return error(ws, e.message);
  }
  const op = req?.op;
  if (op !== "subscribe" && op !== "unsubscribe") {
    return error(ws, typeof op === "string" ? `unknown op \`${op}\`` : "a request is an object with a string `op`");
  }
  const list = req.topics;
  const ok = (t) => typeof t === "string" && t.length > 0 && Buffer.byteLength(t) <= 255;
  if (!Array.isArray(list) || list.length === 0 || !list.every(ok)) {
    return error(ws, "`topics` must be a non-empty array of 1 to 255 byte strings");
  }
  const topics = [...new Set(list)];
  for (const t of topics) {
    if (op === "subscribe") ws.subscribe(t);
    else ws.unsubscribe(t);
  }
  ws.send(JSON.stringify({ op: op + "d", topics }));
}

// [0x02][topic_len][topic][payload] -> one [0x01][topic_len][topic][seq][payload]
// delivery to every subscriber of the topic.
function publish(ws, msg) {
  if (msg.length < 2 || msg[0] !== 0x02) {
    return error(ws, "a binary message is a publish: 0x02, topic length, topic, payload");
  }
  const len = msg[1];
  if (msg.length < 2 + len) return error(ws, "binary publish ends inside its header");
  let topic;
  try {
    topic = utf8.decode(msg.subarray(2, 2 + len));
  } catch {}
  if (!topic) return error(ws, "the topic must be 1 to 255 bytes of UTF-8");
  const seq = (seqs.get(topic) || 0) + 1;
  seqs.set(topic, seq);
  const out = new Uint8Array(msg.length + 8);
  out[0] = 0x01;
  out.set(msg.subarray(1, 2 + len), 1); // topic_len and topic
  const view = new DataView(out.buffer);
  view.setUint32(2 + len, Math.floor(seq / 2 ** 32));
  view.setUint32(6 + len, seq >>> 0);
  out.set(msg.subarray(2 + len), 10 + len);
  server.publish(topic, out);
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (server.upgrade(req)) return;
    return new Response("WebSocket only", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 64 << 20,
    backpressureLimit: 64 << 20,
    idleTimeout: 0,
    open(ws) {
      if (mode === "broadcast") ws.subscribe("all");
    },
    message(ws, msg) {
      if (mode === "echo") ws.send(msg);
      else if (mode === "broadcast") server.publish("all", msg);
      else if (typeof msg === "string") request(ws, msg);
      else publish(ws, msg);
    },
  },
});
console.error(`bun ${mode} listening on 127.0.0.1:${server.port}`);
process.on("SIGTERM", () => process.exit(0));
