#!/usr/bin/env node
// Reference broker peer: the Achex subset the broker benchmark uses, on Node `ws`,
// written the usual way (JSON.parse/JSON.stringify per message, a loop over the
// group calling ws.send).
// Usage: node achex_ws.js PORT   (PORT 0 = ephemeral)
// Prints exactly one line `listening on 127.0.0.1:<port>` once ready, exits 0 on SIGTERM.
//
// Supported (PROTOCOLS.md §2): {"SID":n} on open; {"setID":name,"passwd":p} ->
// {"auth":"ok"} (open mode: the first holder of a name sets its password);
// {"cmd":"register_broadcast","bid":g} (no reply); {"bc":g,...} to every member
// of g, the sender included; {"to":name,...} to every session of that name.
// Delivered messages drop client FROM/sID and get "FROM":name,"sID":sid appended.
'use strict';

const { WebSocketServer } = require('ws');

const port = Number.parseInt(process.argv[2], 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write('usage: achex_ws.js PORT\n');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
});

let nextSid = 1;
const names = new Map(); // name -> { passwd, sessions: Set<ws> }
const groups = new Map(); // group name -> Set<ws>

function reply(ws, obj) {
  ws.send(JSON.stringify(obj));
}

function stamp(ws, msg) {
  delete msg.FROM;
  delete msg.sID;
  msg.FROM = ws.name;
  msg.sID = ws.sid;
  return JSON.stringify(msg);
}

function release(ws) {
  if (ws.name === undefined) return;
  const n = names.get(ws.name);
  if (n) {
    n.sessions.delete(ws);
    if (n.sessions.size === 0) names.delete(ws.name);
  }
  ws.name = undefined;
}

function login(ws, msg) {
  const name = msg.setID;
  const passwd = msg.passwd === undefined ? '' : msg.passwd;
  if (typeof name !== 'string' || name === '') {
    return reply(ws, { auth: 'failed', error: 'invalid name' });
  }
  if (typeof passwd !== 'string') {
    return reply(ws, { auth: 'failed', error: 'invalid password' });
  }
  const held = names.get(name);
  if (held && held.passwd !== passwd) {
    return reply(ws, { auth: 'failed', error: 'wrong password' });
  }
  if (ws.name !== name) {
    release(ws);
    if (held) held.sessions.add(ws);
    else names.set(name, { passwd, sessions: new Set([ws]) });
    ws.name = name;
  }
  reply(ws, { auth: 'ok' });
}

function groupName(v) {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return undefined;
}

function onMessage(ws, data, isBinary) {
  if (isBinary) return reply(ws, { error: 'binary frames are not supported' });
  let msg;
  try {
    msg = JSON.parse(data.toString());
  } catch {
    msg = undefined;
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return reply(ws, { error: 'invalid message: expected a JSON object' });
  }
  if ('to' in msg) {
    if (ws.name === undefined) return reply(ws, { error: 'not authenticated' });
    const target = typeof msg.to === 'string' ? msg.to : JSON.stringify(msg.to);
    const n = names.get(target);
    if (!n) return reply(ws, { error: `no such user: ${target}` });
    const out = stamp(ws, msg);
    for (const peer of n.sessions) peer.send(out);
    return;
  }
  if ('bc' in msg) {
    if (ws.name === undefined) return reply(ws, { error: 'not authenticated' });
    const g = groupName(msg.bc);
    if (g === undefined) return reply(ws, { error: 'invalid value for bc' });
    const members = groups.get(g);
    if (!members) return;
    const out = stamp(ws, msg);
    for (const peer of members) peer.send(out);
    return;
  }
  if ('setID' in msg) return login(ws, msg);
  if ('cmd' in msg) {
    if (ws.name === undefined) return reply(ws, { error: 'not authenticated' });
    if (msg.cmd !== 'register_broadcast' && msg.cmd !== 'unregister_broadcast') {
      const c = typeof msg.cmd === 'string' ? msg.cmd : JSON.stringify(msg.cmd);
      return reply(ws, { error: `unknown cmd: ${c}` });
    }
    if (!('bid' in msg)) return reply(ws, { error: 'missing bid' });
    const g = groupName(msg.bid);
    if (g === undefined) return reply(ws, { error: 'invalid value for bid' });
    if (msg.cmd === 'register_broadcast') {
      let members = groups.get(g);
      if (!members) groups.set(g, (members = new Set()));
      members.add(ws);
      ws.groups.add(g);
    } else {
      leaveGroup(ws, g);
    }
    return;
  }
  reply(ws, { error: 'no routing key in message' });
}

function leaveGroup(ws, g) {
  const members = groups.get(g);
  if (members) {
    members.delete(ws);
    if (members.size === 0) groups.delete(g);
  }
  ws.groups.delete(g);
}

wss.on('listening', () => {
  process.stdout.write(`listening on 127.0.0.1:${wss.address().port}\n`);
});

wss.on('connection', (ws) => {
  ws.sid = nextSid++;
  ws.name = undefined;
  ws.groups = new Set();
  reply(ws, { SID: ws.sid });
  ws.on('message', (d, isBinary) => onMessage(ws, d, isBinary));
  ws.on('close', () => {
    for (const g of [...ws.groups]) leaveGroup(ws, g);
    release(ws);
  });
  // An abrupt client disconnect must not crash the peer mid-benchmark.
  ws.on('error', () => {});
});

process.on('SIGTERM', () => process.exit(0));
