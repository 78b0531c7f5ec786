// Bun peer server for wsbench comparisons (Bun's WebSocket server is uWebSockets):
// `bun server.js echo|broadcast PORT`. Listens on 127.0.0.1 only. Echo sends every
// message back to its sender; broadcast publishes every message to every client,
// sender included (server.publish, unlike ws.publish, does not skip the sender).
const mode = process.argv[2] || "echo";
const port = Number(process.argv[3] || 9001);
if (mode !== "echo" && mode !== "broadcast") {
  console.error("usage: bun server.js echo|broadcast PORT");
  process.exit(2);
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
      else server.publish("all", msg);
    },
  },
});
console.error(`bun ${mode} listening on 127.0.0.1:${server.port}`);
process.on("SIGTERM", () => process.exit(0));
