// The two services of the test peers, loaded once for the server and the client.
// keepCase: the fields keep their proto names (`user_id`), as the Rust side reads them.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const dir = path.dirname(fileURLToPath(import.meta.url));
const definition = protoLoader.loadSync(
  [path.join(dir, 'echo.proto'), path.join(dir, 'health.proto')],
  { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const loaded = grpc.loadPackageDefinition(definition);

export const Echo = loaded.authflow.test.Echo;
export const Health = loaded.grpc.health.v1.Health;
export { grpc };
