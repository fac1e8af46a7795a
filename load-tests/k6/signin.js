// k6: sign-ins at a constant arrival rate (open model), to find the auth service's sign-in
// capacity. Keep RATE below the argon2 ceiling (cores / hash time, see benches/README.md);
// above it, dropped_iterations and latency rise: that is the ceiling, not a bug.
//
//   k6 run -e BASE=http://localhost:8001 -e RATE=40 load-tests/k6/signin.js
//
// Sign in directly against the auth service, or through the gateway with its sign-in rate
// limit raised: the default config allows 10 sign-ins per minute per IP.
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://localhost:8001';
const EMAIL = __ENV.EMAIL || 'load@example.com';
const PASSWORD = __ENV.PASSWORD || 'correct horse battery';

export const options = {
  scenarios: {
    signin: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 20),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: 50,
      maxVUs: 200,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(99)<250'],
  },
};

export function setup() {
  http.post(`${BASE}/api/v1/simple_auth/signup`, JSON.stringify({ email: EMAIL, password: PASSWORD }), {
    headers: { 'Content-Type': 'application/json' },
  });
}

export default function () {
  const res = http.post(`${BASE}/api/v1/simple_auth/signin`, JSON.stringify({ email: EMAIL, password: PASSWORD }), {
    headers: { 'Content-Type': 'application/json', 'User-Agent': 'k6-authflow/1.0' },
  });
  check(res, { 'signed in': (r) => r.status === 200 });
}
