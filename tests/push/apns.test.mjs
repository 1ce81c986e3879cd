// APNs (src/push/apns.c): HTTP/2 over TLS with an ES256 provider token verified with the .p8
// key's public half, the exact headers and payload, and the shared behaviour.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { metric, runProbe } from './lib/probe.mjs';
import { makeCert, makeKeys, startApns, tempDir } from './lib/standins.mjs';
import { providerSuite } from './lib/suite.mjs';

const dir = tempDir();
const tls = makeCert(dir);
const keys = makeKeys(dir);
const settings = (s) => ['--push-ca-file', tls.certFile, '--push-apns-key-file', keys.apns.file,
  '--push-apns-key-id', keys.apns.keyId, '--push-apns-team-id', keys.apns.teamId,
  '--push-apns-topic', keys.apns.topic, '--push-apns-url', s.url];
// hex tokens; the stand-in reads "dead…" as 410 and "5030…" as one 503
const TOKEN = { ok: 'a1b2c3d4{i}e5f60718{i}', gone: 'dead{i}0000{i}0000', retry: '5030{i}0000{i}0000' };

providerSuite({
  provider: 'apns',
  start: ({ delayMs }) => startApns({ tls, keys, delayMs }),
  settings,
  reg: (s, kind) => ({ provider: 'apns', token: TOKEN[kind] }),
  sends: (s) => s.rec.requests,
  countOf: (req) => req.json.count,
});

let apns;
before(async () => { apns = await startApns({ tls, keys }); });
after(async () => { await apns?.close(); });

test('apns: the exact request over HTTP/2 with an ES256 provider token', async () => {
  apns.rec.reset();
  const t0 = Math.floor(Date.now() / 1000);
  const token = 'ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789';
  const r = await runProbe({ regs: [{ provider: 'apns', token }], sender: 'dave', count: 2, preview: 'private words',
    settings: settings(apns) });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['ok']);
  assert.equal(r.regs[0].stored, `apns:${token.toLowerCase()}`, 'tokens are stored lower-case');
  const [q] = apns.rec.requests;
  assert.equal(q.httpVersion, '2.0');
  assert.equal(q.method, 'POST');
  assert.equal(q.path, `/3/device/${token.toLowerCase()}`);
  assert.ok(q.jwt.ok, 'ES256 signature (64 raw bytes) verifies with the .p8 public key');
  assert.equal(q.jwt.sigLen, 64);
  assert.deepEqual(q.jwt.header, { alg: 'ES256', kid: 'ABC123DEFG' });
  assert.equal(q.jwt.claims.iss, 'TEAM123456');
  assert.ok(Math.abs(q.jwt.claims.iat - t0) <= 5);
  assert.deepEqual(Object.keys(q.jwt.claims).sort(), ['iat', 'iss']);
  assert.equal(q.headers['apns-topic'], 'org.tern.app');
  assert.equal(q.headers['apns-push-type'], 'alert');
  assert.equal(q.headers['apns-priority'], '10');
  assert.equal(q.headers['apns-collapse-id'], 'tern.dave');
  const exp = Number(q.headers['apns-expiration']);
  assert.ok(Math.abs(exp - (t0 + 86400)) <= 5, 'apns-expiration is now + push.ttl');
  assert.deepEqual(q.json, {
    aps: { alert: { title: 'dave', body: '2 new messages' }, sound: 'default', 'thread-id': 'dave' },
    from: 'dave', count: 2,
  });
  assert.ok(!q.body.toString().includes('private words'));
});

test('apns: 400 BadDeviceToken is an invalid token too', async () => {
  apns.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'apns', token: 'bad0{i}0000{i}0000' }], settings: settings(apns) });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['invalid_token']);
  assert.equal(metric(r, 'apns', 'invalid_token'), 1);
});

test('apns: the provider token is signed once and reused across notifications', async () => {
  apns.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'apns', token: 'a1b2c3d4{i}e5f60718{i}' }], repeat: 20, settings: settings(apns) });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.done.ok, 20);
  assert.equal(new Set(apns.rec.requests.map((q) => q.headers.authorization)).size, 1);
});

test('apns: tokens that are not hex are refused at registration', async () => {
  const r = await runProbe({ regs: [{ provider: 'apns', token: 'not-hex-at-all-not-hex' }, { provider: 'apns', token: 'abc' },
    { provider: 'apns' }], settings: settings(apns) });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.regs.map((x) => x.ok), [false, false, false]);
  assert.match(r.regs[0].error, /hex/);
});
