// k6: traffic that looks like real users, open model (arrival rates, so a slow gateway shows
// up as dropped_iterations and latency instead of hiding behind a closed loop).
//
//   k6 run -e BASE=http://gateway:8000 -e AUTH=http://auth:8001 load-tests/k6/protected.js
//
// Scenarios, each tagged with its name and held to its own thresholds:
//   public     anonymous GETs of a public route
//   protected  signed-in users: each has its own account, its own User-Agent and its own
//              client address (X-Forwarded-For), so sessions, fingerprints and per-IP limits
//              are spread as in production (no single hot key)
//   expired    cookies of sessions that were ended (logout): 401 / 302, never 200
//   limited    one abusive address over the per-IP limit: 429 with Retry-After
//   signins    a sign-in storm (argon2 at full tilt) alongside the rest
//
// The gateway must trust the load generator's address for X-Forwarded-For
// (`trusted_proxies = ["<k6 host>/32"]` in gateway.toml), or every user is one client to it.
// Accounts are created up front against the auth service (AUTH), which needs
// `[signup] require_email_verification = false` for load tests.
import http from 'k6/http';
import { check, fail } from 'k6';
import exec from 'k6/execution';

const BASE = __ENV.BASE || 'http://localhost:8000';
const AUTH = __ENV.AUTH || 'http://localhost:8001';
const ACCOUNTS = Number(__ENV.ACCOUNTS || 200);
const PASSWORD = 'correct horse battery';
const PEAK = Number(__ENV.RATE || 1000); // protected requests per second at the plateau
const API = '/api/v1/simple_auth';

// A documentation-range address (198.18.0.0/15) per user, so each is its own client.
const ipOf = (i) => `198.18.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`;
const uaOf = (i) => `Mozilla/5.0 (k6 user ${i}) AppleWebKit/537.36 Chrome/126.0 Safari/537.36`;
const json = { 'Content-Type': 'application/json' };

const ramp = (peak) => [
  { target: peak, duration: __ENV.RAMP || '30s' },
  { target: peak, duration: __ENV.HOLD || '2m' },
  { target: 0, duration: '15s' },
];

export const options = {
  scenarios: {
    public: {
      executor: 'ramping-arrival-rate', exec: 'anonymous', startRate: 0, timeUnit: '1s',
      preAllocatedVUs: 20, maxVUs: 200, stages: ramp(Math.ceil(PEAK / 4)),
      tags: { kind: 'public' },
    },
    protected: {
      executor: 'ramping-arrival-rate', exec: 'signedIn', startRate: 0, timeUnit: '1s',
      preAllocatedVUs: 50, maxVUs: 500, stages: ramp(PEAK),
      tags: { kind: 'protected' },
    },
    expired: {
      executor: 'ramping-arrival-rate', exec: 'endedSession', startRate: 0, timeUnit: '1s',
      preAllocatedVUs: 5, maxVUs: 50, stages: ramp(Math.ceil(PEAK / 20)),
      tags: { kind: 'expired' },
    },
    limited: {
      executor: 'constant-arrival-rate', exec: 'abusive', rate: Number(__ENV.ABUSE_RATE || 200),
      timeUnit: '1s', duration: __ENV.HOLD || '2m', startTime: '10s',
      preAllocatedVUs: 10, maxVUs: 100, tags: { kind: 'limited' },
    },
    signins: {
      executor: 'ramping-arrival-rate', exec: 'signInStorm', startRate: 0, timeUnit: '1s',
      preAllocatedVUs: 10, maxVUs: 100, stages: ramp(Number(__ENV.SIGNIN_RATE || 40)),
      tags: { kind: 'signin' },
    },
  },
  thresholds: {
    'checks{kind:public}': ['rate>0.999'],
    'checks{kind:protected}': ['rate>0.999'],
    'checks{kind:expired}': ['rate==1'],
    'checks{kind:limited}': ['rate>0.95'],
    'http_req_duration{kind:public}': ['p(99)<50'],
    'http_req_duration{kind:protected}': ['p(99)<50'],
    'http_req_duration{kind:signin}': ['p(95)<2000'],
    dropped_iterations: ['count<100'],
  },
};

function signIn(i) {
  const res = http.post(`${BASE}${API}/signin`,
    JSON.stringify({ email: `k6-${i}@example.com`, password: PASSWORD }),
    { headers: { ...json, 'User-Agent': uaOf(i), 'X-Forwarded-For': ipOf(i) }, tags: { kind: 'setup' } });
  return res.status === 200 ? res.cookies : null;
}

function cookieHeader(cookies) {
  const name = Object.keys(cookies).find((k) => k.includes('session'));
  return name ? `${name}=${cookies[name][0].value}` : null;
}

// Accounts are created against the auth service, sessions through the gateway, so each
// session carries the fingerprint of its user's address and browser.
export function setup() {
  const users = [];
  for (let i = 0; i < ACCOUNTS; i++) {
    http.post(`${AUTH}${API}/signup`,
      JSON.stringify({ email: `k6-${i}@example.com`, password: PASSWORD }),
      { headers: json, tags: { kind: 'setup' } });
    const cookies = signIn(i);
    if (!cookies) fail(`sign-in ${i} failed`);
    users.push({ i, cookie: cookieHeader(cookies) });
  }
  // A few sessions that are then ended: their cookies must never work again.
  const ended = users.slice(0, Math.min(10, users.length)).map((u) => {
    const again = cookieHeader(signIn(u.i));
    http.post(`${BASE}${API}/logout`, '{}', {
      headers: { ...json, Cookie: again, 'User-Agent': uaOf(u.i), 'X-Forwarded-For': ipOf(u.i) },
      tags: { kind: 'setup' },
    });
    return { i: u.i, cookie: again };
  });
  return { users, ended };
}

export function anonymous() {
  const i = exec.scenario.iterationInTest;
  const res = http.get(`${BASE}/`, { headers: { 'User-Agent': uaOf(i), 'X-Forwarded-For': ipOf(i + 100000) } });
  check(res, { 'public: 200': (r) => r.status === 200 });
}

export function signedIn(data) {
  const u = data.users[exec.scenario.iterationInTest % data.users.length];
  const res = http.get(`${BASE}/app/`, {
    headers: { Cookie: u.cookie, 'User-Agent': uaOf(u.i), 'X-Forwarded-For': ipOf(u.i) },
    redirects: 0,
  });
  check(res, { 'protected: 200': (r) => r.status === 200 });
}

export function endedSession(data) {
  const u = data.ended[exec.scenario.iterationInTest % data.ended.length];
  const res = http.get(`${BASE}/app/`, {
    headers: { Cookie: u.cookie, 'User-Agent': uaOf(u.i), 'X-Forwarded-For': ipOf(u.i), Accept: 'application/json' },
    redirects: 0,
  });
  check(res, { 'ended session: refused': (r) => r.status === 401 || r.status === 302 });
}

export function abusive() {
  const res = http.get(`${BASE}/`, { headers: { 'User-Agent': 'abuser', 'X-Forwarded-For': '203.0.113.66' } });
  check(res, {
    'limited: 429 with Retry-After': (r) => r.status !== 429 || r.headers['Retry-After'] !== undefined,
    'limited: refused once over the limit': (r) => exec.scenario.iterationInTest < 1000 || r.status === 429,
  });
}

export function signInStorm() {
  const i = exec.scenario.iterationInTest % ACCOUNTS;
  const res = http.post(`${BASE}${API}/signin`,
    JSON.stringify({ email: `k6-${i}@example.com`, password: PASSWORD }),
    { headers: { ...json, 'User-Agent': uaOf(i), 'X-Forwarded-For': ipOf(i + 200000) } });
  check(res, { 'signin: 200 or limited': (r) => r.status === 200 || r.status === 429 });
}
