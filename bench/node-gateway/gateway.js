'use strict';
// The benchmark's reference peer (issue 12, `python -m bench.run stream-redis`): the seed's
// design, a Node `ws` gateway that forwards each Redis `market-data:updates` message to the
// clients watching its symbols. A measuring stick, not part of the app.
//
//   PORT=8080 REDIS_URL=redis://127.0.0.1:6379/0 node gateway.js
//
// Clients connect to /ws?symbols=A,B,... and get {"type":"subscribed",...}, then a
// {"type":"snapshot","quotes":[...]} from the `quotes:last` hash (as the app does), then live
// frames: {"type":"quote","quote":{...}} or {"type":"batch","quotes":[...]}. GET /ready answers
// 200 once the Redis subscription is in place.
//
// Fan-out: one frame per client per Redis message, holding that message's quotes the client
// watches. Each quote is JSON.stringify'd once per message; each distinct frame (a single quote,
// or one set of quotes) is built and turned into a Buffer once, and that same Buffer is written
// to every client that gets it (with 10 of 100 symbols per client and ~3 quotes per message,
// almost every frame is a single quote's, shared by all its watchers). A client more than
// MAX_BUFFERED bytes behind is dropped, as a real gateway must.
const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 8080);
const HOST = process.env.HOST || '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const CHANNEL = process.env.CHANNEL || 'market-data:updates';
const SNAPSHOT_KEY = process.env.SNAPSHOT_KEY || 'quotes:last';
const MAX_SYMBOLS = 50;
const MAX_BUFFERED = 1 << 20;

const watchers = new Map(); // symbol -> Set of sockets
let ready = false;

function subscribed(symbols) {
  return JSON.stringify({ type: 'subscribed', id: null, accepted: symbols, rejected: [], symbols });
}

function fanOut(raw) {
  let quotes;
  try {
    quotes = JSON.parse(raw).quotes;
  } catch {
    return;
  }
  if (!Array.isArray(quotes) || quotes.length === 0) return;
  const texts = quotes.map((q) => JSON.stringify(q));
  const pending = new Map(); // socket -> indices of its quotes in this message
  quotes.forEach((q, i) => {
    const set = watchers.get(q.symbol);
    if (!set) return;
    for (const ws of set) {
      const list = pending.get(ws);
      if (list) list.push(i);
      else pending.set(ws, [i]);
    }
  });
  const frames = new Map(); // "i,j,..." -> Buffer
  for (const [ws, list] of pending) {
    if (ws.readyState !== WebSocket.OPEN) continue;
    if (ws.bufferedAmount > MAX_BUFFERED) {
      ws.terminate();
      continue;
    }
    const key = list.join(',');
    let frame = frames.get(key);
    if (frame === undefined) {
      const text = list.length === 1
        ? `{"type":"quote","quote":${texts[list[0]]}}`
        : `{"type":"batch","quotes":[${list.map((i) => texts[i]).join(',')}]}`;
      frame = Buffer.from(text);
      frames.set(key, frame);
    }
    ws.send(frame, { binary: false });
  }
}

async function main() {
  const client = createClient({ url: REDIS_URL });
  client.on('error', (err) => console.error('redis:', err.message));
  await client.connect();
  const listener = client.duplicate();
  listener.on('error', (err) => console.error('redis listener:', err.message));
  await listener.connect();
  await listener.subscribe(CHANNEL, fanOut);
  ready = true;

  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/ready' && ready ? 200 : 404).end();
  });
  const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, maxPayload: 65536 });
  wss.on('connection', (ws, req) => {
    const raw = new URL(req.url, 'http://gateway').searchParams.get('symbols') || '';
    const symbols = [...new Set(raw.split(',').filter(Boolean))].slice(0, MAX_SYMBOLS);
    for (const s of symbols) {
      if (!watchers.has(s)) watchers.set(s, new Set());
      watchers.get(s).add(ws);
    }
    ws.on('close', () => {
      for (const s of symbols) {
        const set = watchers.get(s);
        set.delete(ws);
        if (set.size === 0) watchers.delete(s);
      }
    });
    ws.on('error', () => ws.terminate());
    ws.send(subscribed(symbols));
    if (symbols.length === 0) return;
    client.hmGet(SNAPSHOT_KEY, symbols).then((values) => {
      const known = values.filter((v) => v !== null);
      if (known.length && ws.readyState === WebSocket.OPEN) {
        ws.send(`{"type":"snapshot","quotes":[${known.join(',')}]}`);
      }
    }, (err) => console.error('snapshot:', err.message));
  });
  server.listen(PORT, HOST, () => console.log(`gateway on ${HOST}:${PORT}`));
  const stop = () => {
    wss.clients.forEach((ws) => ws.terminate());
    server.close();
    Promise.allSettled([listener.quit(), client.quit()]).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
