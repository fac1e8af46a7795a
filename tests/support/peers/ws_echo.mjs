// A WebSocket echo server (`ws`) on 127.0.0.1:<port>, started by tests/support/websocket.rs.
// Usage: node ws_echo.mjs <port>
//
// - An upgrade on any path is accepted; every message is echoed back as it came (text as
//   text). The text message `__close__` makes the server close with 1000 "asked".
// - A plain HTTP request (no upgrade) answers 200 "plain".
//
// Stdout: `listening <port>` once bound, then one JSON line per event:
//   {"event":"open","path":"/ws?x=1","x-user-id":..|null,"x-user-roles":..|null,
//    "cookie":..|null,"headers":{..}}
//   {"event":"close","path":..,"code":N}
//   {"event":"plain","path":..}
// Exits when stdin closes, so a test killed without unwinding leaves no node behind.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node ws_echo.mjs <port>');
  process.exit(2);
}

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

const server = http.createServer((req, res) => {
  emit({ event: 'plain', path: req.url });
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('plain');
});

const wss = new WebSocketServer({ server });
wss.on('connection', (socket, req) => {
  const path = req.url;
  emit({
    event: 'open',
    path,
    'x-user-id': req.headers['x-user-id'] ?? null,
    'x-user-roles': req.headers['x-user-roles'] ?? null,
    cookie: req.headers.cookie ?? null,
    headers: req.headers,
  });
  socket.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === '__close__') {
      socket.close(1000, 'asked');
      return;
    }
    socket.send(data, { binary: isBinary });
  });
  socket.on('close', (code) => emit({ event: 'close', path, code }));
  socket.on('error', () => {});
});

server.on('error', (err) => {
  console.error(`listen 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
