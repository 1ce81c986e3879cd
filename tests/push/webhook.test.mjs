// Webhook: the signed JSON POST to the operator's gateway (src/push/webhook.c), plus the
// queue limits that every provider shares (src/push/push.c).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { metric, runProbe } from './lib/probe.mjs';
import { startWebhook } from './lib/standins.mjs';
import { providerSuite } from './lib/suite.mjs';

const SECRET = 'a-webhook-secret-of-some-length';
const settings = (s) => ['--push-webhook-url', s.url, '--push-webhook-secret', SECRET];

providerSuite({
  provider: 'webhook',
  start: ({ delayMs }) => startWebhook({ secret: SECRET, delayMs }),
  settings,
  reg: (s, kind) => ({ provider: 'webhook', token: `${kind}-{i}` }),
  sends: (s) => s.rec.requests,
  countOf: (req) => req.json.count,
});

let hook;
before(async () => { hook = await startWebhook({ secret: SECRET }); });
after(async () => { await hook?.close(); });

test('webhook: the exact request, signed with HMAC-SHA256', async () => {
  hook.rec.reset();
  const before_ = Date.now();
  const r = await runProbe({ regs: [{ provider: 'webhook', token: 'gw-device-42' }], sender: 'carol', count: 3,
    preview: 'the secret text', settings: settings(hook) });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['ok']);
  assert.equal(r.regs[0].stored, 'webhook:gw-device-42');
  const [q] = hook.rec.requests;
  assert.equal(q.method, 'POST');
  assert.equal(q.path, '/hook');
  assert.equal(q.headers['content-type'], 'application/json');
  assert.ok(q.signatureOk, 'X-Tern-Signature is sha256=<hex HMAC of the body>');
  assert.match(q.headers['x-tern-signature'], /^sha256=[0-9a-f]{64}$/);
  const ts = Number(q.headers['x-tern-timestamp']);
  assert.ok(ts >= before_ - 1000 && ts <= Date.now() + 1000);
  // no text without push.previews
  assert.deepEqual(q.json, { type: 'msg', from: 'carol', count: 3, token: 'gw-device-42', ts });
  assert.ok(!q.body.toString().includes('secret text'));
});

test('webhook: the preview is carried only with push.previews', async () => {
  hook.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'webhook', token: 'gw-1' }], preview: 'hello there',
    settings: [...settings(hook), '--push-previews'] });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(hook.rec.requests[0].json.preview, 'hello there');
});

test('webhook: gives up after push.max_attempts', async () => {
  hook.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'webhook', token: 'down-1' }],
    settings: [...settings(hook), '--push-max-attempts', '3', '--push-retry-base', '50ms'] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['failed']);
  assert.equal(hook.rec.requests.length, 3);
  assert.equal(metric(r, 'webhook', 'retry'), 2);
  assert.equal(metric(r, 'webhook', 'failed'), 1);
});

test('webhook: push.queue_max and push.queue_per_device refuse the excess, counted as dropped', async () => {
  hook.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'webhook', token: 't{i}' }], repeat: 10,
    settings: [...settings(hook), '--push-queue-max', '4'] });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.refused.length, 6);
  assert.equal(r.done.ok, 4);
  assert.equal(metric(r, 'webhook', 'dropped'), 6);
  assert.equal(hook.rec.requests.length, 4);

  hook.rec.reset();
  const d = await runProbe({ regs: [{ provider: 'webhook', token: 't{i}' }], repeat: 2, times: 5,
    settings: [...settings(hook), '--push-queue-per-device', '3'] });
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(d.refused.map((x) => x.device).sort(), ['d0', 'd0', 'd1', 'd1']);
  assert.equal(d.done.ok, 6);
  assert.equal(metric(d, 'webhook', 'dropped'), 4);
});

test('webhook: a Retry-After longer than push.retry_max gives up at once', async () => {
  hook.rec.reset();
  const r = await runProbe({ regs: [{ provider: 'webhook', token: 'retry-long' }],
    settings: [...settings(hook), '--push-retry-max', '500ms'] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.results.map((x) => x.result), ['failed']);
  assert.equal(hook.rec.requests.length, 1);
});
