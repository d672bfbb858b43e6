#!/usr/bin/env node
// Node `ws` peer for the interop tests; pytest runs it and judges what it prints.
//
//   node ws_client.js echo URL text|binary IN_FILE OUT_FILE
//       send IN_FILE's bytes as one message, write the echo's bytes to OUT_FILE,
//       then close with 1000.
//   node ws_client.js close URL CODE REASON
//       close from the client side with CODE and REASON.
//   node ws_client.js command URL TEXT
//       send TEXT and wait for the server to close the connection.
//
// Every mode prints one JSON line on stdout describing what happened, so the
// Python side holds all the assertions. Exit status 0 means the script ran to
// the end; 2 means a timeout or a transport error.
'use strict';

const fs = require('fs');
const path = require('path');

// The package lives at the repository root, two levels up from this file.
const WebSocket = require(path.join(__dirname, '..', '..', 'node_modules', 'ws'));

const TIMEOUT_MS = 30000;

function finish(result, status) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(status));
}

function main() {
  const [mode, url, ...rest] = process.argv.slice(2);
  if (!mode || !url) {
    process.stderr.write('usage: ws_client.js echo|close|command URL ...\n');
    process.exit(64);
  }
  const result = { mode, opened: false, messages: [], closeCode: null, closeReason: null };
  // ws caps incoming messages at 100 MiB by default; the largest echo here is 4 MiB.
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10000 });
  const timer = setTimeout(() => {
    result.error = 'timeout';
    ws.terminate();
    finish(result, 2);
  }, TIMEOUT_MS);

  ws.on('error', (err) => {
    result.error = String(err && err.message ? err.message : err);
  });

  ws.on('close', (code, reason) => {
    clearTimeout(timer);
    result.closeCode = code;
    result.closeReason = reason.toString('utf8');
    finish(result, result.error ? 2 : 0);
  });

  ws.on('message', (data, isBinary) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    result.messages.push({ binary: isBinary, length: buf.length });
    if (mode === 'echo') {
      fs.writeFileSync(rest[2], buf);
      ws.close(1000);
    }
  });

  ws.on('open', () => {
    result.opened = true;
    if (mode === 'echo') {
      const [kind, inFile] = rest;
      const payload = fs.readFileSync(inFile);
      // Send the file's bytes untouched; a text frame carries them as UTF-8 as-is.
      ws.send(payload, { binary: kind === 'binary' });
    } else if (mode === 'close') {
      ws.close(Number(rest[0]), rest[1] || '');
    } else if (mode === 'command') {
      ws.send(rest[0], { binary: false });
    } else {
      result.error = 'unknown mode ' + mode;
      ws.terminate();
    }
  });
}

main();
