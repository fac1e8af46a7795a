// A real OpenID provider for AuthFlow's integration tests: panva's `oidc-provider` (OpenID
// certified), started by `tests/support/oidc.rs` on a loopback port. Only the tests run it.
//
// Input (environment, all required except the port):
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET   the one static client (confidential,
//                                        `client_secret_basic` at the token endpoint)
//   OIDC_REDIRECT_URIS                   its redirect URIs, comma-separated (they carry the auth
//                                        service's port, so the harness passes them in)
//   OIDC_PORT                            optional; 0 (default) lets the kernel pick a free port
//
// Output: one line on stdout when it accepts connections, `oidc-provider ready port=<port>`;
// it exits when its stdin closes (the harness holds it open), so a killed test leaves no node;
// the issuer is then `http://127.0.0.1:<port>` (plain HTTP on loopback needs no `proxy`
// setting: cookies are simply not marked Secure; `proxy` only matters behind TLS offload).
//
// What it serves:
//   - Discovery, JWKS (one RS256 key, kid "test-rs256"), authorize, token, userinfo: the
//     library's own endpoints. Discovery builds endpoint URLs from the request's Host, so
//     reach it as 127.0.0.1 (as the issuer says), not `localhost`. Code flow only, PKCE
//     (S256) required, scopes `openid email profile`; the ID token carries the scope's claims
//     (`conformIdTokenClaims` off, as Google and Entra do), so an RP needs no userinfo call.
//     The authorization response carries `iss` (RFC 9207). A code is single use; a wrong
//     PKCE verifier does not spend it.
//   - The login form of `devInteractions`: GET /interaction/<uid> renders a form that posts
//     `prompt=login&login=<account>&password=<anything>` to /interaction/<uid>; the password
//     is not checked. GET /interaction/<uid>/abort (the page's cancel link) ends the flow at
//     the redirect URI with `error=access_denied`. Consent is implied for the static client
//     (first-party), so the login post redirects straight back to the client with `code`,
//     `state` and `iss`.
//   - Accounts (the account id is the login and the `sub`, stable across runs):
//       alice  alice@example.com  email_verified true
//       bob    bob@example.com    email_verified true
//       eve    eve@example.com    email_verified false
//     An unknown login ends the flow with `error=access_denied` at the redirect URI.
//
// The bad-token contract (attack tests; not part of any real provider):
//   POST /__test/next-id-token  with a JSON body {"kind": "<kind>"}  -> 204
//     queues a forgery: the next successful authorization-code exchange (POST /token,
//     grant_type=authorization_code) answers as usual except that `id_token` is replaced. The
//     queue is first in, first out; each exchange takes one. Unknown kinds answer 400.
//     Kinds (all keep the real token's other claims, so only the named property is wrong):
//       hs256-client-secret  HS256 signed with the client secret as the key (alg confusion)
//       alg-none             header {"alg":"none"}, empty signature
//       unknown-key          RS256 by a key the JWKS does not publish (kid "unknown-key")
//       wrong-audience       aud and azp "another-client", signed with the real key
//       wrong-issuer         iss "http://127.0.0.1:<port>/mix-up", signed with the real key
//       expired              iat two hours ago, exp one hour ago, signed with the real key
//       wrong-nonce          nonce replaced by a random value, signed with the real key
//       previous-nonce       nonce of the ID token issued by the exchange before, re-signed
//                            (a nonce replay in a fresh, valid-looking token)
//       replay-previous      the previous exchange's ID token, byte for byte
//       email-unverified     email_verified false, signed with the real key
//       new-key              RS256 by a new key (kid "rotated-<n>") that is published in the
//                            JWKS from this moment on: a key rotation the RP has not seen yet
//   DELETE /__test/next-id-token -> 204, empties the queue.
//   GET /__test/id-tokens -> 200 JSON array of every ID token answered so far, in order.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
};

const clientId = env('OIDC_CLIENT_ID');
const clientSecret = env('OIDC_CLIENT_SECRET');
const redirectUris = env('OIDC_REDIRECT_URIS').split(',').map((u) => u.trim()).filter(Boolean);

const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example' },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob Example' },
  eve: { email: 'eve@example.com', email_verified: false, name: 'Eve Example' },
};

const BAD_KINDS = new Set([
  'hs256-client-secret', 'alg-none', 'unknown-key', 'wrong-audience', 'wrong-issuer',
  'expired', 'wrong-nonce', 'previous-nonce', 'replay-previous', 'email-unverified', 'new-key',
  // Not a forgery: the provider says it asked for a second factor (amr ["pwd", "otp"]).
  'amr-otp',
]);

async function rsaKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

const publicPart = ({ d, p, q, dp, dq, qi, ...pub }) => pub;

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.OIDC_PORT || 0), '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const signingKey = await rsaKey('test-rs256');
// Keys published after start (kind `new-key`); the JWKS route below appends them.
const rotatedKeys = [];

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: [randomUUID()] },
  // Lifetimes set explicitly (the library nags about its defaults): a code lives one minute,
  // as RFC 6749 advises at most ten.
  ttl: {
    AccessToken: 3600, AuthorizationCode: 60, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600,
  },
  async findAccount(_ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, ...account };
      },
    };
  },
  // The static client is first-party: its consent is implied, so the login post is the only
  // form in the flow (the recipe "skip consent" of oidc-provider's docs).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

const queue = [];
const issued = [];

async function forge(kind, real) {
  const header = jose.decodeProtectedHeader(real);
  const claims = jose.decodeJwt(real);
  const now = Math.floor(Date.now() / 1000);
  const sign = (payload, key, protectedHeader) => new jose.SignJWT(payload)
    .setProtectedHeader(protectedHeader).sign(key);
  const realKey = () => jose.importJWK(signingKey, 'RS256');
  const previous = issued.length > 0 ? issued[issued.length - 1] : undefined;
  switch (kind) {
    case 'hs256-client-secret':
      return sign(claims, new TextEncoder().encode(clientSecret), { alg: 'HS256', typ: 'JWT' });
    case 'alg-none': {
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    }
    case 'unknown-key': {
      const jwk = await rsaKey('unknown-key');
      return sign(claims, await jose.importJWK(jwk, 'RS256'), { alg: 'RS256', kid: jwk.kid });
    }
    case 'wrong-audience':
      return sign({ ...claims, aud: 'another-client', azp: 'another-client' }, await realKey(), header);
    case 'wrong-issuer':
      return sign({ ...claims, iss: `${issuer}/mix-up` }, await realKey(), header);
    case 'expired':
      return sign({ ...claims, iat: now - 7200, exp: now - 3600 }, await realKey(), header);
    case 'wrong-nonce':
      return sign({ ...claims, nonce: randomUUID() }, await realKey(), header);
    case 'previous-nonce': {
      const nonce = previous ? jose.decodeJwt(previous).nonce : randomUUID();
      return sign({ ...claims, nonce }, await realKey(), header);
    }
    case 'replay-previous':
      return previous ?? real;
    case 'email-unverified':
      return sign({ ...claims, email_verified: false }, await realKey(), header);
    case 'amr-otp':
      return sign({ ...claims, amr: ['pwd', 'otp'] }, await realKey(), header);
    case 'new-key': {
      const jwk = await rsaKey(`rotated-${rotatedKeys.length + 1}`);
      rotatedKeys.push(jwk);
      return sign(claims, await jose.importJWK(jwk, 'RS256'), { alg: 'RS256', kid: jwk.kid });
    }
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(req) {
  try {
    return JSON.parse((await readBody(req)) || '{}');
  } catch {
    return {};
  }
}

// The test-only routes, and the token and JWKS endpoints' post-processing, as one Koa
// middleware in front of the provider's own routes.
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/next-id-token') {
    if (ctx.method === 'POST') {
      const { kind } = await readJson(ctx.req);
      if (!BAD_KINDS.has(kind)) {
        ctx.status = 400;
        ctx.body = { error: `unknown kind ${JSON.stringify(kind)}`, kinds: [...BAD_KINDS] };
        return;
      }
      queue.push(kind);
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'DELETE') {
      queue.length = 0;
      ctx.status = 204;
      return;
    }
  }
  // The login post of devInteractions, answered here so that an unknown login ends the flow
  // with `error=access_denied` at the redirect URI (the library's own handler would take any
  // login as an account id, and an unknown one fails later as a server error).
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const form = new URLSearchParams(await readBody(ctx.req));
    if (form.get('prompt') === 'login') {
      const login = form.get('login');
      const result = Object.hasOwn(ACCOUNTS, login)
        ? { login: { accountId: login } }
        : { error: 'access_denied', error_description: 'unknown account' };
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
        mergeWithLastSubmission: false,
      });
      ctx.status = 303;
      ctx.set('Location', returnTo);
      ctx.body = '';
      return;
    }
  }
  if (ctx.path === '/__test/id-tokens' && ctx.method === 'GET') {
    ctx.body = issued;
    return;
  }
  await next();
  if (ctx.path === '/jwks' && ctx.status === 200 && rotatedKeys.length > 0) {
    const body = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : ctx.body;
    ctx.body = { keys: [...body.keys, ...rotatedKeys.map(publicPart)] };
  }
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
    const kind = queue.shift();
    if (kind) {
      ctx.body = { ...ctx.body, id_token: await forge(kind, ctx.body.id_token) };
    }
    issued.push(ctx.body.id_token);
  }
});

server.on('request', provider.callback());
// The harness holds our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
console.log(`oidc-provider ready port=${port}`);
