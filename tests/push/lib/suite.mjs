// The behaviour every provider must show, run against each provider's stand-in:
// token invalidation, retry on 503 with Retry-After, the in-flight cap under a burst of 1,000
// notifications, coalescing (5 messages in 2 s make one push with count 5) and no push when
// the device comes online within the window.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { metric, runProbe } from './probe.mjs';

/**
 * p.provider   'fcm' | 'apns' | 'webpush' | 'webhook'
 * p.start({delayMs}) → a started stand-in (with .rec and .close())
 * p.settings(s) → the push settings that point the library at stand-in s
 * p.reg(s, kind) → a PUT /v1/push body; kind 'ok' | 'gone' | 'retry' ("{i}" = device index)
 * p.sends(s) → the notification requests s received (not token requests)
 * p.countOf(req) → the count a received notification carries
 */
export function providerSuite(p) {
  let s;
  let slow;
  before(async () => {
    s = await p.start({ delayMs: 0 });
    slow = await p.start({ delayMs: 20 });
  });
  after(async () => {
    await s?.close();
    await slow?.close();
  });

  test(`${p.provider}: a dead token is reported as invalid_token`, async () => {
    s.rec.reset();
    const r = await runProbe({ regs: [p.reg(s, 'gone')], settings: p.settings(s) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.results.map((x) => [x.device, x.result]), [['d0', 'invalid_token']]);
    assert.equal(p.sends(s).length, 1, 'one request, no retry of a dead token');
    assert.equal(metric(r, p.provider, 'invalid_token'), 1);
  });

  test(`${p.provider}: 503 with Retry-After is retried after the delay`, async () => {
    s.rec.reset();
    const r = await runProbe({ regs: [p.reg(s, 'retry')], settings: p.settings(s) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.results.map((x) => x.result), ['ok']);
    const sends = p.sends(s);
    assert.equal(sends.length, 2);
    const gap = sends[1].t - sends[0].t;
    assert.ok(gap >= 950 && gap < 5000, `second attempt ${gap} ms after the first (Retry-After: 1)`);
    assert.equal(metric(r, p.provider, 'retry'), 1);
    assert.equal(metric(r, p.provider, 'ok'), 1);
  });

  test(`${p.provider}: a burst of 1,000 notifications keeps to push.max_inflight`, async () => {
    slow.rec.reset();
    const cap = 10;
    const r = await runProbe({ regs: [p.reg(slow, 'ok')], repeat: 1000, settings: [...p.settings(slow), '--push-max-inflight', String(cap)] });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.done.ok, 1000, JSON.stringify(r.done));
    assert.equal(p.sends(slow).length, 1000);
    assert.ok(slow.rec.maxActive <= cap, `stand-in saw ${slow.rec.maxActive} requests at once, cap ${cap}`);
    assert.equal(slow.rec.maxActive, cap, 'the cap is also reached: requests do run in parallel');
    assert.ok(r.done.max_inflight[p.provider] <= cap);
  });

  test(`${p.provider}: 5 messages in 2 s make one push with count 5`, async () => {
    s.rec.reset();
    const r = await runProbe({ regs: [p.reg(s, 'ok')], offline: 5, every: 400, settings: [...p.settings(s), '--push-coalesce', '2500ms'] });
    assert.equal(r.code, 0, r.stderr);
    const sends = p.sends(s);
    assert.equal(sends.length, 1);
    assert.equal(p.countOf(sends[0]), 5);
    assert.deepEqual(r.results.map((x) => x.result), ['ok']);
    assert.ok(r.results[0].ms >= 2400, `sent when the window ended (${r.results[0].ms} ms)`);
  });

  test(`${p.provider}: no push when the device connects during the window`, async () => {
    s.rec.reset();
    const r = await runProbe({ regs: [p.reg(s, 'ok')], offline: 5, every: 400, onlineAt: 1800,
      settings: [...p.settings(s), '--push-coalesce', '2500ms'] });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.lines.some((l) => l.event === 'online'));
    assert.equal(p.sends(s).length, 0);
    assert.equal(r.results.length, 0);
  });
}
