// Local stand-ins for the push providers, on free loopback ports, for tests/push/*.test.mjs.
// Each one checks what a real provider would check (the JWT signature with the public key, the
// HMAC, the encryption: it decrypts the Web Push payload with the subscription's private key),
// records every request it receives, and tracks how many requests it holds at once.
//
// Behaviour is chosen by the device token (or the Web Push endpoint path):
//   contains "gone"   → the provider's "this token is dead" answer
//   contains "retry"  → the first request for that token gets 503 with Retry-After: 1
//   contains "down"   → (webhook) every request gets 503, without Retry-After
//   anything else     → success, after opts.delayMs (default 0), so a burst builds concurrency
// opts.fast (benchmarks only) skips the signature checks and the decryption, so that node's
// crypto, not the library under test, is not what gets measured.
// Only node built-ins are used (http, https, http2, crypto).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';

const tempDirs = new Set();
process.on('exit', () => {
  for (const d of tempDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

export function tempDir(prefix = 'tern-push-') {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

/** A self-signed TLS certificate for 127.0.0.1, made now with the openssl command line. */
export function makeCert(dir) {
  const key = path.join(dir, 'tls-key.pem');
  const cert = path.join(dir, 'tls-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { keyFile: key, certFile: cert, key: readFileSync(key), cert: readFileSync(cert) };
}

/** Writes key material the way an operator would have it on disk. */
export function makeKeys(dir) {
  const apns = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const apnsFile = path.join(dir, 'AuthKey_ABC123DEFG.p8');
  writeFileSync(apnsFile, apns.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const vapid = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const vapidFile = path.join(dir, 'vapid.pem');
  writeFileSync(vapidFile, vapid.privateKey.export({ type: 'sec1', format: 'pem' })); // openssl ecparam's format
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const sa = {
    type: 'service_account',
    project_id: 'tern-test-1',
    private_key_id: 'kid-0123456789',
    private_key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: 'tern-push@tern-test-1.iam.gserviceaccount.com',
    client_id: '1234567890',
    token_uri: 'https://oauth2.googleapis.com/token',
  };
  const saFile = path.join(dir, 'service-account.json');
  writeFileSync(saFile, JSON.stringify(sa, null, 2));
  return {
    apns: { file: apnsFile, publicKey: apns.publicKey, keyId: 'ABC123DEFG', teamId: 'TEAM123456', topic: 'org.tern.app' },
    vapid: { file: vapidFile, publicKey: vapid.publicKey },
    fcm: { file: saFile, publicKey: rsa.publicKey, sa },
  };
}

const b64u = (buf) => Buffer.from(buf).toString('base64url');

/** Splits and verifies a compact JWT. alg ES256 wants the raw 64-byte r||s (ieee-p1363). */
export function verifyJwt(jwt, publicKey, alg) {
  const parts = String(jwt).split('.');
  if (parts.length !== 3) return { ok: false, why: 'not three parts' };
  const [h, c, s] = parts;
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const claims = JSON.parse(Buffer.from(c, 'base64url').toString());
  const sig = Buffer.from(s, 'base64url');
  const data = Buffer.from(`${h}.${c}`);
  let ok;
  if (alg === 'ES256') {
    ok = sig.length === 64 && crypto.verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig);
  } else {
    ok = crypto.verify('sha256', data, publicKey, sig);
  }
  return { ok, header, claims, sigLen: sig.length };
}

/** A P-256 public KeyObject from an uncompressed point (65 bytes, base64url). */
export function p256FromRaw(b64) {
  const raw = Buffer.from(b64, 'base64url');
  if (raw.length !== 65 || raw[0] !== 4) throw new Error('not an uncompressed P-256 point');
  return crypto.createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33)) }, format: 'jwk' });
}

/** A browser's side of a Web Push subscription: key pair and auth secret. */
export function makeSubscription() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = crypto.randomBytes(16);
  return { ecdh, auth, p256dh: b64u(ecdh.getPublicKey()), authB64: b64u(auth) };
}

/** RFC 8291 decryption, as a user agent does it (HKDF from node's crypto, not ours). */
export function decryptAes128gcm(body, sub) {
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  if (idlen !== 65 || record.length > rs) throw new Error(`bad header idlen=${idlen} rs=${rs}`);
  const secret = sub.ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), sub.ecdh.getPublicKey(), asPublic]);
  const ikm = Buffer.from(crypto.hkdfSync('sha256', secret, sub.auth, keyInfo, 32));
  const cek = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const d = crypto.createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([d.update(record.subarray(0, record.length - 16)), d.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== 2) throw new Error('no last-record delimiter');
  return { plaintext: padded.subarray(0, end).toString(), paddedLength: padded.length };
}

/** Shared bookkeeping: the requests seen and the most held at once. */
class Recorder {
  constructor(opts = {}) {
    this.requests = [];
    this.active = 0;
    this.maxActive = 0;
    this.delayMs = opts.delayMs ?? 0;
    this.fast = opts.fast ?? false;
    this.retried = new Set();
  }
  begin() { this.active++; if (this.active > this.maxActive) this.maxActive = this.active; }
  end() { this.active--; }
  reset() { this.requests = []; this.maxActive = 0; this.retried.clear(); }
  /** 'gone' | 'retry' | 'ok' for this token; a "retry" token fails only its first time. */
  behaviour(token) {
    if (token.includes('gone')) return 'gone';
    if (token.includes('retry') && !this.retried.has(token)) { this.retried.add(token); return 'retry'; }
    return 'ok';
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

function closer(server) {
  return () => new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
    // http2 sessions keep the server open until they end
    for (const s of server.__sessions ?? []) s.destroy();
  });
}

function trackSessions(server) {
  server.__sessions = new Set();
  server.on('session', (s) => { server.__sessions.add(s); s.on('close', () => server.__sessions.delete(s)); });
}

/** A handler wrapper: counts concurrency, records, and answers with what fn returns. */
function handler(rec, fn) {
  return async (req, res) => {
    rec.begin();
    const entry = { t: Date.now(), method: req.method, path: req.url, headers: req.headers, httpVersion: req.httpVersion };
    try {
      entry.body = await readBody(req);
      const ans = await fn(req, entry);
      if (ans.delay) await sleep(ans.delay);
      rec.requests.push(entry);
      res.writeHead(ans.status, ans.headers ?? {});
      res.end(ans.body ?? '');
    } catch (e) {
      entry.error = String(e?.stack ?? e);
      rec.requests.push(entry);
      res.writeHead(500);
      res.end(entry.error);
    } finally {
      rec.end();
    }
  };
}

/**
 * FCM: the OAuth2 token endpoint (POST /token) and POST /v1/projects/{id}/messages:send, over
 * TLS with HTTP/2 (HTTP/1.1 allowed too, as Google's front ends do).
 */
export async function startFcm({ tls, keys, delayMs, fast, tokenLifetime = 3600 }) {
  const rec = new Recorder({ delayMs, fast });
  rec.tokenRequests = [];
  let issued = 0;
  const valid = new Set();
  const server = http2.createSecureServer({ key: tls.key, cert: tls.cert, allowHTTP1: true });
  trackSessions(server);
  server.on('request', handler(rec, async (req, e) => {
    if (req.method === 'POST' && req.url === '/token') {
      const form = new URLSearchParams(e.body.toString());
      e.form = Object.fromEntries(form);
      e.jwt = verifyJwt(form.get('assertion'), keys.fcm.publicKey, 'RS256');
      rec.tokenRequests.push(e);
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer' || !e.jwt.ok) {
        return { status: 400, body: JSON.stringify({ error: 'invalid_grant' }), headers: { 'content-type': 'application/json' } };
      }
      const tok = `ya29.stand-in-${++issued}`;
      valid.add(tok);
      return { status: 200, headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ access_token: tok, expires_in: tokenLifetime, token_type: 'Bearer' }) };
    }
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url);
    if (req.method !== 'POST' || !m) return { status: 404 };
    e.project = m[1];
    const auth = req.headers.authorization ?? '';
    e.bearer = auth.replace(/^Bearer /, '');
    if (!valid.has(e.bearer)) return { status: 401 };
    e.json = JSON.parse(e.body.toString());
    const b = rec.behaviour(e.json.message.token);
    if (b === 'gone') {
      return { status: 404, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: {
        code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND',
        details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }] } }) };
    }
    if (b === 'retry') return { status: 503, headers: { 'retry-after': '1' } };
    return { status: 200, delay: rec.delayMs, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `projects/${e.project}/messages/${rec.requests.length}` }) };
  }));
  const port = await listen(server);
  return { rec, port, url: `https://127.0.0.1:${port}`, tokenUrl: `https://127.0.0.1:${port}/token`, close: closer(server),
    sends: () => rec.requests.filter((r) => r.path !== '/token') };
}

/** APNs: HTTP/2 over TLS only, like Apple's. */
export async function startApns({ tls, keys, delayMs, fast }) {
  const rec = new Recorder({ delayMs, fast });
  const server = http2.createSecureServer({ key: tls.key, cert: tls.cert });
  trackSessions(server);
  server.on('request', handler(rec, async (req, e) => {
    const m = /^\/3\/device\/([0-9a-f]+)$/.exec(req.url);
    if (req.method !== 'POST' || !m) return { status: 404, body: JSON.stringify({ reason: 'BadPath' }) };
    e.token = m[1];
    e.jwt = rec.fast ? { ok: true } : verifyJwt((req.headers.authorization ?? '').replace(/^bearer /, ''), keys.apns.publicKey, 'ES256');
    if (!e.jwt.ok) return { status: 403, body: JSON.stringify({ reason: 'InvalidProviderToken' }) };
    e.json = JSON.parse(e.body.toString());
    // behaviour markers must be hex: "dead" → 410, "bad0" → 400 BadDeviceToken, "5030" → one 503
    if (e.token.startsWith('dead')) return { status: 410, body: JSON.stringify({ reason: 'Unregistered', timestamp: Date.now() }) };
    if (e.token.startsWith('bad0')) return { status: 400, body: JSON.stringify({ reason: 'BadDeviceToken' }) };
    if (e.token.startsWith('5030') && rec.behaviour(`retry-${e.token}`) === 'retry') {
      return { status: 503, headers: { 'retry-after': '1' }, body: JSON.stringify({ reason: 'ServiceUnavailable' }) };
    }
    return { status: 200, delay: rec.delayMs, headers: { 'apns-id': crypto.randomUUID() } };
  }));
  const port = await listen(server);
  return { rec, port, url: `https://127.0.0.1:${port}`, close: closer(server) };
}

/**
 * A Web Push service on plain http (its host, 127.0.0.1, is listed exactly in
 * push.webpush.allowed_hosts, which is what permits http and a loopback address). Subscriptions
 * live at /push/<id>; subs maps id → makeSubscription(). Every request is decrypted and its
 * VAPID JWT verified with the k= key.
 */
export async function startWebPush({ subs, delayMs, fast }) {
  const rec = new Recorder({ delayMs, fast });
  let port;
  const server = http.createServer(handler(rec, async (req, e) => {
    const m = /^\/push\/([A-Za-z0-9_-]+)$/.exec(req.url);
    if (req.method !== 'POST' || !m) return { status: 404 };
    e.id = m[1];
    const sub = subs.get(e.id);
    const b = rec.behaviour(e.id);
    if (b === 'gone' || !sub) return { status: 410 };
    const auth = req.headers.authorization ?? '';
    const am = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(auth);
    if (!am) return { status: 401, body: 'no vapid' };
    if (rec.fast) return { status: 201 };
    e.vapidK = am[2];
    e.jwt = verifyJwt(am[1], p256FromRaw(am[2]), 'ES256');
    e.expectedAud = `http://127.0.0.1:${port}`;
    if (!e.jwt.ok) return { status: 403, body: 'bad vapid signature' };
    const dec = decryptAes128gcm(e.body, sub);
    e.plaintext = dec.plaintext;
    e.paddedLength = dec.paddedLength;
    e.json = JSON.parse(dec.plaintext);
    if (b === 'retry') return { status: 503, headers: { 'retry-after': '1' } };
    return { status: 201, delay: rec.delayMs, headers: { location: `/msg/${rec.requests.length}` } };
  }));
  port = await listen(server);
  return { rec, port, url: `http://127.0.0.1:${port}`, close: closer(server) };
}

/** The operator's webhook gateway: checks X-Tern-Signature against the shared secret. */
export async function startWebhook({ secret, delayMs, fast }) {
  const rec = new Recorder({ delayMs, fast });
  const server = http.createServer(handler(rec, async (req, e) => {
    if (rec.fast) return { status: 204 };
    const want = 'sha256=' + crypto.createHmac('sha256', secret).update(e.body).digest('hex');
    e.signatureOk = req.headers['x-tern-signature'] === want;
    if (!e.signatureOk) return { status: 401 };
    e.json = JSON.parse(e.body.toString());
    const b = rec.behaviour(e.json.token);
    if (b === 'gone') return { status: 410 };
    if (b === 'retry') return { status: 503, headers: { 'retry-after': '1' } };
    if (e.json.token.includes('down')) return { status: 503 };
    return { status: 204, delay: rec.delayMs };
  }));
  const port = await listen(server);
  return { rec, port, url: `http://127.0.0.1:${port}/hook`, close: closer(server) };
}
