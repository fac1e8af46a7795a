// A real gRPC server (grpc-js, plaintext HTTP/2 with prior knowledge) on 127.0.0.1:<port>,
// started by tests/support/grpc.rs. Usage: node grpc_server.mjs <port>
//
// - authflow.test.Echo/Say: answers {text, user_id: metadata x-user-id, roles: metadata
//   x-user-roles} with the header `x-echo-header: sent` and the trailer
//   `x-echo-trailer: kept`; `text: "fail"` answers INVALID_ARGUMENT "asked to fail" (same
//   trailer).
// - authflow.test.Echo/Ticks: a Reply every 100 ms until the client cancels.
// - grpc.health.v1.Health/Check: SERVING, or NOT_SERVING while the file named by
//   $HEALTH_FILE contains NOT_SERVING.
//
// Stdout: `listening <port>` once bound, then one JSON line per event:
//   {"event":"call","method":"Say","x-user-id":..,"x-user-roles":..,"cookie":..}
//   {"event":"cancelled","method":"Ticks","sent":N}
// The line of a call is written (synchronously: stdout is a pipe) before its answer leaves.
// Exits when stdin closes, so a test killed without unwinding leaves no node behind.
import fs from 'node:fs';
import { Echo, Health, grpc } from './protos.mjs';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node grpc_server.mjs <port>');
  process.exit(2);
}

function first(metadata, key) {
  const values = metadata.get(key);
  return values.length > 0 ? String(values[0]) : '';
}

function record(method, call) {
  const md = call.metadata;
  const line = {
    event: 'call',
    method,
    'x-user-id': first(md, 'x-user-id') || null,
    'x-user-roles': first(md, 'x-user-roles') || null,
    cookie: first(md, 'cookie') || null,
    authorization: first(md, 'authorization') || null,
  };
  process.stdout.write(JSON.stringify(line) + '\n');
}

function reply(call, text) {
  return {
    text,
    user_id: first(call.metadata, 'x-user-id'),
    roles: first(call.metadata, 'x-user-roles'),
  };
}

function trailer() {
  const md = new grpc.Metadata();
  md.set('x-echo-trailer', 'kept');
  return md;
}

const echo = {
  Say(call, callback) {
    record('Say', call);
    const header = new grpc.Metadata();
    header.set('x-echo-header', 'sent');
    call.sendMetadata(header);
    if (call.request.text === 'fail') {
      callback({
        code: grpc.status.INVALID_ARGUMENT,
        details: 'asked to fail',
        metadata: trailer(),
      });
      return;
    }
    callback(null, reply(call, call.request.text), trailer());
  },

  Ticks(call) {
    record('Ticks', call);
    let sent = 0;
    const timer = setInterval(() => {
      sent += 1;
      call.write(reply(call, `${call.request.text} ${sent}`));
    }, 100);
    call.on('cancelled', () => {
      clearInterval(timer);
      process.stdout.write(JSON.stringify({ event: 'cancelled', method: 'Ticks', sent }) + '\n');
    });
  },
};

const health = {
  Check(call, callback) {
    record('Check', call);
    let status = 'SERVING';
    const file = process.env.HEALTH_FILE;
    if (file) {
      try {
        if (fs.readFileSync(file, 'utf8').includes('NOT_SERVING')) status = 'NOT_SERVING';
      } catch {
        // No file: serving.
      }
    }
    callback(null, { status });
  },
};

const server = new grpc.Server();
server.addService(Echo.service, echo);
server.addService(Health.service, health);
// With $TLS_CERT and $TLS_KEY (PEM files) it serves HTTP/2 over TLS instead of h2c.
const credentials = process.env.TLS_CERT
  ? grpc.ServerCredentials.createSsl(null, [{
    cert_chain: fs.readFileSync(process.env.TLS_CERT),
    private_key: fs.readFileSync(process.env.TLS_KEY),
  }], false)
  : grpc.ServerCredentials.createInsecure();
server.bindAsync(`127.0.0.1:${port}`, credentials, (err, bound) => {
  if (err) {
    console.error(`bind 127.0.0.1:${port}: ${err.message}`);
    process.exit(1);
  }
  process.stdout.write(`listening ${bound}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
