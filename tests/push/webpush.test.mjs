// Web Push (src/push/webpush.c, ece.c, reg.c): RFC 8030 delivery with an RFC 8291 payload that
// the stand-in decrypts with the subscription's private key, an RFC 8292 VAPID JWT that it
// verifies with the k= key, the endpoint allow-list, and the shared behaviour.
import assert from 'node:assert/strict';
import dns from 'node:dns/promises';
import os from 'node:os';
import { after, before, test } from 'node:test';

import { runProbe } from './lib/probe.mjs';
import { makeKeys, makeSubscription, startWebPush, tempDir } from './lib/standins.mjs';
import { providerSuite } from './lib/suite.mjs';

const dir = tempDir();
const keys = makeKeys(dir);
const SUBJECT = 'mailto:ops@example.org';
const base = ['--push-webpush-vapid-key-file', keys.vapid.file, '--push-webpush-subject', SUBJECT];
// The stand-in listens on 127.0.0.1: listing it exactly is what lets a loopback http endpoint in.
const settings = () => [...base, '--push-webpush-allowed-hosts', '127.0.0.1'];
const shared = makeSubscription(); // every device of the suite uses this browser's keys
const sharedSubs = { get: () => shared };
const regFor = (endpoint, sub = shared) => ({ provider: 'webpush', endpoint, expirationTime: null,
  keys: { p256dh: sub.p256dh, auth: sub.authB64 } });

providerSuite({
  provider: 'webpush',
  start: ({ delayMs }) => startWebPush({ subs: sharedSubs, delayMs }),
  settings,
  reg: (s, kind) => regFor(`${s.url}/push/${kind}{i}`),
  sends: (s) => s.rec.requests,
  countOf: (req) => req.json.count,
});

let wp;
const subs = new Map();
before(async () => { wp = await startWebPush({ subs }); });
after(async () => { await wp?.close(); });

test('webpush: the exact request; the stand-in decrypts the payload and verifies VAPID', async () => {
  wp.rec.reset();
  const sub = makeSubscription();
  subs.set('browser1', sub);
  const now = Math.floor(Date.now() / 1000);
  const r = await runProbe({ regs: [regFor(`${wp.url}/push/browser1`, sub)], sender: 'erin', count: 4, preview: 'hidden',
    settings: settings() });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['ok']);
  assert.match(r.open.vapid, /^B[A-Za-z0-9_-]{86}$/, 'the VAPID key is a base64url uncompressed point');
  assert.equal(r.regs[0].stored, `webpush:${sub.p256dh}:${sub.authB64}:${wp.url}/push/browser1`);
  const [q] = wp.rec.requests;
  assert.equal(q.method, 'POST');
  assert.equal(q.headers.ttl, '86400');
  assert.equal(q.headers.urgency, 'high');
  assert.equal(q.headers['content-encoding'], 'aes128gcm');
  assert.equal(q.headers['content-type'], 'application/octet-stream');
  assert.equal(q.vapidK, r.open.vapid, 'k= is the key GET /v1/push/vapid serves');
  assert.ok(q.jwt.ok, 'the VAPID JWT verifies with k=');
  assert.equal(q.jwt.sigLen, 64);
  assert.deepEqual(q.jwt.header, { typ: 'JWT', alg: 'ES256' });
  assert.equal(q.jwt.claims.aud, q.expectedAud, 'aud is the origin of the endpoint');
  assert.equal(q.jwt.claims.sub, SUBJECT);
  assert.ok(q.jwt.claims.exp > now && q.jwt.claims.exp <= now + 86400 + 5, 'exp within 24 h');
  assert.deepEqual(q.json, { type: 'msg', from: 'erin', count: 4 }, 'decrypted with the subscription private key');
  assert.equal(q.paddedLength % 64, 0, 'padded to hide the length');
  assert.ok(!q.plaintext.includes('hidden'));
});

test('webpush: 404 from the push service is an invalid token', async () => {
  wp.rec.reset();
  const r = await runProbe({ regs: [regFor(`${wp.url}/nowhere`)], settings: settings() });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['invalid_token']);
});

test('webpush: loopback, private, metadata and unlisted endpoints are refused; the stand-in sees nothing', async () => {
  wp.rec.reset();
  const port = wp.port;
  const cases = [
    // [endpoint, allowed_hosts (undefined = the default list), expected error]
    [`http://127.0.0.1:${port}/push/a`, undefined, /not an allowed push service/],
    [`https://127.0.0.1:${port}/push/a`, '*', /loopback or private/],
    ['https://10.1.2.3/push/a', '*', /loopback or private/],
    ['https://10.1.2.3/push/a', '*.notify.windows.com', /not an allowed/],
    ['https://169.254.169.254/latest/meta-data/', '*', /loopback or private/],
    ['https://192.168.1.1/push', '*', /loopback or private/],
    ['https://172.20.0.1/push', '*', /loopback or private/],
    ['https://0.0.0.0/push', '*', /loopback or private/],
    [`https://2130706433:${port}/push/a`, '*', /loopback or private/], // 127.0.0.1 in decimal
    [`https://127.1:${port}/push/a`, '*', /loopback or private/],
    [`https://[::1]:${port}/push/a`, '*', /loopback or private/],
    ['https://[fd00::1]/push/a', '*', /loopback or private/],
    ['https://[fe80::1]/push/a', '*', /loopback or private/],
    ['https://[::ffff:127.0.0.1]/push/a', '*', /loopback or private/],
    [`https://localhost:${port}/push/a`, '*', /loopback or private/],
    ['https://evil.example.com/push', undefined, /not an allowed push service/],
    ['https://fcm.googleapis.com.evil.example/fcm/send/x', undefined, /not an allowed/],
    ['https://notify.windows.com/w/x', undefined, /not an allowed/], // "*.x" needs a subdomain
    ['http://fcm.googleapis.com/fcm/send/x', undefined, /https/],
    ['https://user:pw@fcm.googleapis.com/fcm/send/x', undefined, /user name/],
    ['ftp://fcm.googleapis.com/x', undefined, /https/],
  ];
  for (const [endpoint, hosts, want] of cases) {
    const r = await runProbe({ regs: [regFor(endpoint)],
      settings: [...base, ...(hosts === undefined ? [] : ['--push-webpush-allowed-hosts', hosts])] });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.regs[0].ok, false, `${endpoint} with allowed_hosts=${hosts} must be refused`);
    assert.match(r.regs[0].error, want, endpoint);
    assert.equal(r.results.length, 0);
  }
  assert.equal(wp.rec.requests.length, 0, 'the stand-in saw nothing');
});

test('webpush: the default list admits the major browsers\' push services', async () => {
  const ok = ['https://fcm.googleapis.com/fcm/send/dGVzdA:APA91b', 'https://updates.push.services.mozilla.com/wpush/v2/gAAAA',
    'https://wns2-par02p.notify.windows.com/w/?token=BQYAAA', 'https://web.push.apple.com/QGuQyavXutnMH6Ig2uYOJDwA',
    'https://FCM.GoogleAPIs.com./fcm/send/x'];
  const r = await runProbe({ regs: ok.map((e) => regFor(e)), parseOnly: true, settings: base });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.regs.map((x) => [x.ok, x.error]), ok.map(() => [true, undefined]));
});

test('webpush: bad subscription keys are refused', async () => {
  const s = makeSubscription();
  const ep = `${wp.url}/push/x`;
  const bad = [
    { provider: 'webpush', endpoint: ep },
    { provider: 'webpush', endpoint: ep, keys: { p256dh: s.p256dh } },
    { provider: 'webpush', endpoint: ep, keys: { p256dh: s.p256dh.slice(0, 40), auth: s.authB64 } },
    { provider: 'webpush', endpoint: ep, keys: { p256dh: `B${'A'.repeat(86)}`, auth: s.authB64 } }, // not on the curve
    { provider: 'webpush', endpoint: ep, keys: { p256dh: s.p256dh, auth: 'c2hvcnQ' } },
    { provider: 'webpush', keys: { p256dh: s.p256dh, auth: s.authB64 } },
  ];
  const r = await runProbe({ regs: bad, parseOnly: true, settings: settings() });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.regs.map((x) => x.ok), bad.map(() => false));
});

test('webpush: a name that resolves to a private address is refused at connect time', async (t) => {
  const host = os.hostname().toLowerCase();
  let addr;
  try { addr = (await dns.lookup(host)).address; } catch { /* not resolvable */ }
  const isPrivate = addr && (/^(127|10|192\.168|169\.254)\./.test(addr) || /^172\.(1[6-9]|2\d|3[01])\./.test(addr) || addr === '::1');
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(host) || host === 'localhost' || !isPrivate) {
    t.skip(`this machine's name (${host}) does not resolve to a private address (${addr})`);
    return;
  }
  wp.rec.reset();
  // "*" admits any public-looking name; the address it resolves to is what gets refused
  const r = await runProbe({ regs: [regFor(`https://${host}:${wp.port}/push/x`)],
    settings: [...base, '--push-webpush-allowed-hosts', '*'] });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.regs[0].ok, true);
  assert.deepEqual(r.results.map((x) => x.result), ['failed']);
  assert.match(r.stderr, /refused to connect to a private address/);
  assert.equal(wp.rec.requests.length, 0);
});

test('webpush: not configured → registration refused and no VAPID key', async () => {
  const r = await runProbe({ regs: [regFor('https://fcm.googleapis.com/fcm/send/x')], parseOnly: true, settings: [] });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.open.vapid, undefined);
  assert.equal(r.regs[0].ok, false);
  assert.match(r.regs[0].error, /webpush is not configured/);
});
