#!/usr/bin/env node
// Reference echo peer: Node `ws`.
// Usage: node echo_ws.js PORT   (PORT 0 = ephemeral)
// Prints exactly one line `listening on 127.0.0.1:<port>` once ready, echoes every
// text/binary message back with the same type, exits 0 on SIGTERM.
'use strict';

const { WebSocketServer } = require('ws');

const port = Number.parseInt(process.argv[2], 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write('usage: echo_ws.js PORT\n');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
});

wss.on('listening', () => {
  process.stdout.write(`listening on 127.0.0.1:${wss.address().port}\n`);
});

wss.on('connection', (ws) => {
  ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary }));
  // An abrupt client disconnect must not crash the peer mid-benchmark.
  ws.on('error', () => {});
});

process.on('SIGTERM', () => process.exit(0));
