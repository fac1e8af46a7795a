// k6: an open-model load on a protected route. Each virtual user signs in once (setup) and
// the scenario offers a constant arrival rate, so a slow gateway shows up as
// dropped_iterations instead of hiding behind a closed loop.
//
//   k6 run -e BASE=http://localhost:8000 -e RATE=2000 load-tests/k6/protected.js
//
// The account must exist and be verified (or run the stack with verification off).
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE = __ENV.BASE || 'http://localhost:8000';
const EMAIL = __ENV.EMAIL || 'load@example.com';
const PASSWORD = __ENV.PASSWORD || 'correct horse battery';
const UA = 'k6-authflow/1.0';

export const options = {
  scenarios: {
    protected: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 1000),
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: 100,
      maxVUs: 400,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{expected_response:true}': ['p(99)<50'],
    dropped_iterations: ['count==0'],
  },
};

export function setup() {
  const headers = { 'Content-Type': 'application/json', 'User-Agent': UA };
  const body = JSON.stringify({ email: EMAIL, password: PASSWORD });
  http.post(`${BASE}/api/v1/simple_auth/signup`, body, { headers });
  const res = http.post(`${BASE}/api/v1/simple_auth/signin`, body, { headers });
  if (res.status !== 200) fail(`sign-in failed: ${res.status} ${res.body}`);
  const cookie = res.cookies && Object.keys(res.cookies).find((k) => k.includes('authflow_session'));
  if (!cookie) fail('no session cookie');
  return { name: cookie, value: res.cookies[cookie][0].value };
}

export default function (session) {
  const res = http.get(`${BASE}/app/`, {
    headers: { 'User-Agent': UA, Cookie: `${session.name}=${session.value}` },
    redirects: 0,
  });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
