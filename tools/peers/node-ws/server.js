// Node `ws` peer server for wsbench comparisons: `node server.js echo|broadcast PORT`.
// Listens on 127.0.0.1 only. Echo sends every message back to its sender; broadcast sends
// every message to every open client, sender included. No compression.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const mode = process.argv[2] || 'echo';
const port = Number(process.argv[3] || 9001);
if (mode !== 'echo' && mode !== 'broadcast') {
  console.error('usage: node server.js echo|broadcast PORT');
  process.exit(2);
}
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 64 << 20 });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const c of wss.clients) {
        if (c.readyState === WebSocket.OPEN) c.send(data, { binary: isBinary });
      }
    });
  }
});
wss.on('listening', () => console.error(`node-ws ${mode} listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
