// One gRPC call (grpc-js, plaintext HTTP/2 with prior knowledge, 5 s deadline), run by
// tests/support/grpc.rs. Usage:
//   node grpc_client.mjs <host:port> <Say|Ticks|Check> <text> [cookie]
// `cookie` is sent as the `cookie` metadata (the gateway's session cookie). Prints exactly
// one JSON line:
//   Say, Check: {"code":N,"details":"..","reply":{..}|null,"headers":{..},"trailers":{..}}
//   Ticks:      {"code":N,"details":"..","replies":N,"ended_after_ms":N,"headers":{..},
//                "trailers":{..}}  (the client cancels after 2 s: code 1, CANCELLED)
// `headers` is the response's initial metadata, `trailers` its trailing metadata (values of
// a repeated key joined with ", ", binary values base64).
import { Echo, Health, grpc } from './protos.mjs';

const [target, method, text = '', cookie] = process.argv.slice(2);
if (!target || !['Say', 'Ticks', 'Check'].includes(method)) {
  console.error('usage: node grpc_client.mjs <host:port> <Say|Ticks|Check> <text> [cookie]');
  process.exit(2);
}

function toObject(metadata) {
  const out = {};
  if (!metadata) return out;
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    out[key] = values
      .map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : String(v)))
      .join(', ');
  }
  return out;
}

const credentials = grpc.credentials.createInsecure();
const client = method === 'Check' ? new Health(target, credentials) : new Echo(target, credentials);
const metadata = new grpc.Metadata();
if (cookie) metadata.set('cookie', cookie);
const started = Date.now();
const deadline = new Date(started + 5000);

function finish(line) {
  process.stdout.write(JSON.stringify(line) + '\n', () => {
    client.close();
    process.exit(0);
  });
}

let headers = {};

if (method === 'Ticks') {
  let replies = 0;
  const call = client.Ticks({ text }, metadata, { deadline });
  const stop = setTimeout(() => call.cancel(), 2000);
  call.on('metadata', (md) => { headers = toObject(md); });
  call.on('data', () => { replies += 1; });
  call.on('error', () => {});
  call.on('status', (status) => {
    clearTimeout(stop);
    finish({
      code: status.code,
      details: status.details,
      replies,
      ended_after_ms: Date.now() - started,
      headers,
      trailers: toObject(status.metadata),
    });
  });
} else {
  let reply = null;
  const request = method === 'Check' ? { service: text } : { text };
  const call = client[method](request, metadata, { deadline }, (err, value) => {
    if (!err) reply = value;
  });
  call.on('metadata', (md) => { headers = toObject(md); });
  call.on('status', (status) => {
    // The unary callback runs before 'status' is emitted; setImmediate makes sure of it.
    setImmediate(() => finish({
      code: status.code,
      details: status.details,
      reply,
      headers,
      trailers: toObject(status.metadata),
    }));
  });
}
