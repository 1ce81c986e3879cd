// FCM HTTP v1 (src/push/fcm.c): the OAuth2 service-account flow (RS256 JWT verified with the
// service account's public key), the send request over HTTP/2 + TLS, and the shared behaviour.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { runProbe } from './lib/probe.mjs';
import { makeCert, makeKeys, startFcm, tempDir } from './lib/standins.mjs';
import { providerSuite } from './lib/suite.mjs';

const dir = tempDir();
const tls = makeCert(dir);
const keys = makeKeys(dir);
const settings = (s) => ['--push-ca-file', tls.certFile, '--push-fcm-service-account', keys.fcm.file,
  '--push-fcm-url', s.url, '--push-fcm-token-url', s.tokenUrl];

providerSuite({
  provider: 'fcm',
  start: ({ delayMs }) => startFcm({ tls, keys, delayMs }),
  settings,
  reg: (s, kind) => ({ provider: 'fcm', token: `${kind}-fcm:APA91b{i}` }),
  sends: (s) => s.sends(),
  countOf: (req) => Number(req.json.message.data.count),
});

let fcm;
before(async () => { fcm = await startFcm({ tls, keys }); });
after(async () => { await fcm?.close(); });

test('fcm: the exact token request and send, over HTTP/2', async () => {
  fcm.rec.reset();
  fcm.rec.tokenRequests = [];
  const t0 = Math.floor(Date.now() / 1000);
  const r = await runProbe({ regs: [{ provider: 'fcm', token: 'dGVzdA:APA91bE-x_y' }, { provider: 'fcm', token: 'second-device' }],
    sender: 'bob', count: 3, preview: 'never sent', settings: settings(fcm) });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['ok', 'ok']);
  assert.equal(r.regs[0].stored, 'fcm:dGVzdA:APA91bE-x_y');

  // one access token serves both sends
  assert.equal(fcm.rec.tokenRequests.length, 1);
  const tq = fcm.rec.tokenRequests[0];
  assert.equal(tq.httpVersion, '2.0');
  assert.equal(tq.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.equal(tq.form.grant_type, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
  assert.ok(tq.jwt.ok, 'RS256 signature verifies with the service account public key');
  assert.deepEqual(tq.jwt.header, { alg: 'RS256', typ: 'JWT', kid: 'kid-0123456789' });
  const c = tq.jwt.claims;
  assert.equal(c.iss, keys.fcm.sa.client_email);
  assert.equal(c.scope, 'https://www.googleapis.com/auth/firebase.messaging');
  assert.equal(c.aud, 'https://oauth2.googleapis.com/token', 'aud is the token_uri even when the POST goes elsewhere');
  assert.ok(c.iat >= t0 - 5 && c.iat <= t0 + 5);
  assert.equal(c.exp, c.iat + 3600);

  const sends = fcm.sends();
  assert.equal(sends.length, 2);
  const q = sends.find((x) => x.json.message.token === 'dGVzdA:APA91bE-x_y');
  assert.equal(q.httpVersion, '2.0');
  assert.equal(q.method, 'POST');
  assert.equal(q.path, '/v1/projects/tern-test-1/messages:send');
  assert.equal(q.headers.authorization, 'Bearer ya29.stand-in-1');
  assert.equal(q.headers['content-type'], 'application/json');
  assert.deepEqual(q.json, { message: {
    token: 'dGVzdA:APA91bE-x_y',
    notification: { title: 'bob', body: '3 new messages' },
    data: { type: 'msg', from: 'bob', count: '3' },
    android: { priority: 'HIGH', ttl: '86400s' },
  } });
  assert.ok(!q.body.toString().includes('never sent'), 'no message text without push.previews');
});

test('fcm: an expired access token is fetched again', async () => {
  const short = await startFcm({ tls, keys, tokenLifetime: 2 });
  try {
    // tokens that live 2 s are used for 1 s; the second notification comes after that
    const r = await runProbe({ regs: [{ provider: 'fcm', token: 'a' }], offline: 2, every: 1500,
      settings: [...settings(short), '--push-coalesce', '100ms'] });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.results.map((x) => x.result), ['ok', 'ok']);
    assert.equal(short.rec.tokenRequests.length, 2);
  } finally {
    await short.close();
  }
});

test('fcm: a token endpoint that refuses the assertion fails the waiting notifications', async () => {
  const other = makeKeys(tempDir()); // a service account whose key the stand-in does not know
  const r = await runProbe({ regs: [{ provider: 'fcm', token: 'a' }, { provider: 'fcm', token: 'b' }],
    settings: ['--push-ca-file', tls.certFile, '--push-fcm-service-account', other.fcm.file,
      '--push-fcm-url', fcm.url, '--push-fcm-token-url', fcm.tokenUrl] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['failed', 'failed']);
});

test('fcm: an untrusted certificate is not accepted', async () => {
  fcm.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'fcm', token: 'a' }],
    settings: ['--push-fcm-service-account', keys.fcm.file, '--push-fcm-url', fcm.url, '--push-fcm-token-url', fcm.tokenUrl,
      '--push-max-attempts', '2', '--push-retry-base', '20ms'] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['failed']);
  assert.equal(fcm.rec.requests.length, 0);
});
