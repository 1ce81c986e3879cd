// Push notifications through ternd (PROTOCOL.md section 8), end to end with the webhook
// provider against a local stand-in gateway: registration, coalescing, no push for connected
// devices or receipts, dead tokens, and refused registrations.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { startServer, sleep, FAST_LIMITS } from './lib/server.mjs';
import { newUser, request, metricSum } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

const SECRET = 'an operator secret of some length';

/** A webhook gateway on a free loopback port that records every POST and answers `status`. */
async function gateway() {
  const g = { hits: [], status: 200 };
  g.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const mac = crypto.createHmac('sha256', SECRET).update(body).digest('hex');
      g.hits.push({ headers: req.headers, body: JSON.parse(body), signed: req.headers['x-tern-signature'] === `sha256=${mac}` });
      res.writeHead(g.status).end();
    });
  });
  await new Promise((r) => g.server.listen(0, '127.0.0.1', r));
  g.url = `http://127.0.0.1:${g.server.address().port}/hook`;
  return g;
}

describe('push (webhook provider, end to end)', () => {
  let srv;
  let gw;
  before(async () => {
    gw = await gateway();
    srv = await startServer({
      args: [...FAST_LIMITS, '--push-webhook-url', gw.url, '--push-webhook-secret', SECRET, '--push-coalesce', '1500ms',
        '--push-retry-base', '50ms'],
    });
  });
  after(async () => {
    await srv?.close();
    gw?.server.close();
  });

  const register = (acct, body) => request(srv, 'PUT', '/v1/push', { token: acct.token, body });

  test('5 messages to an offline device within the window make one push with the count, signed, without text', async () => {
    const alice = await newUser(srv, 'pa');
    const bob = await newUser(srv, 'pb');
    const r = await register(bob, { provider: 'webhook', token: 'bob-phone' });
    assert.equal(r.status, 204, r.text);
    gw.hits.length = 0;
    const ca = await online(srv, alice);
    for (let i = 0; i < 5; i++) {
      ca.send({ type: 'send', id: `m${i}`, to: bob.user, body: `secret text ${i}` });
      await ca.next('sent');
      await sleep(100); // spread over well under the 1.5 s window even on a loaded machine
    }
    await sleep(2500);
    const mine = gw.hits.filter((h) => h.body.token === 'bob-phone');
    assert.equal(mine.length, 1, JSON.stringify(gw.hits));
    assert.equal(mine[0].body.count, 5);
    assert.equal(mine[0].body.from, alice.user);
    assert.ok(mine[0].signed, 'X-Tern-Signature is the HMAC of the body');
    assert.ok(!JSON.stringify(mine[0].body).includes('secret text'), 'no message text without push.previews');
    // per node in a cluster: the push went out from whichever node held bob's window
    assert.ok((await metricSum(srv, 'tern_push_total{provider="webhook",result="ok"}')) >= 1);
    await closeAll(ca);
  });

  test('mutes (PROTOCOL.md 15): a muted user or group makes no push (until it ends); a mention in a muted group still does', async () => {
    const [alice, bob, carol] = await Promise.all([newUser(srv, 'ma'), newUser(srv, 'mb'), newUser(srv, 'mc')]);
    assert.equal((await register(bob, { provider: 'webhook', token: 'bob-mute' })).status, 204);
    const g = await request(srv, 'POST', '/v1/groups', { token: alice.token, body: { name: 'Muted', members: [bob.user, carol.user] } });
    const mute = (path, body) => request(srv, 'PUT', `/v1/mutes/${path}`, { token: bob.token, body });
    assert.equal((await mute(alice.user, { until: null })).status, 204);
    assert.equal((await mute(`group/${g.body.group_id}`, { until: Date.now() + 3600e3 })).status, 204);
    const list = (await request(srv, 'GET', '/v1/mutes', { token: bob.token })).body.mutes;
    assert.deepEqual(list.map((m) => m.user ?? m.group_id).sort(), [alice.user, g.body.group_id].sort());
    assert.equal(list.find((m) => m.user).until, null);
    assert.equal((await mute('nobody-here', {})).status, 404);
    assert.equal((await mute(alice.user, { until: 'soon' })).status, 400);
    gw.hits.length = 0;
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'm1', to: bob.user, body: 'muted 1:1' });
    await ca.next({ id: 'm1' });
    ca.send({ type: 'send', id: 'm2', group_id: g.body.group_id, body: 'muted group' });
    await ca.next({ id: 'm2' });
    await sleep(2500);
    assert.deepEqual(gw.hits.filter((h) => h.body.token === 'bob-mute'), [], 'nothing pushed for muted conversations');
    ca.send({ type: 'send', id: 'm3', group_id: g.body.group_id, body: '@bob look', mentions: [bob.user] });
    await ca.next({ id: 'm3' });
    await sleep(2500);
    assert.equal(gw.hits.filter((h) => h.body.token === 'bob-mute').length, 1, 'a mention pushes through the mute');
    // unmuting the user: pushes again
    assert.equal((await request(srv, 'DELETE', `/v1/mutes/${alice.user}`, { token: bob.token })).status, 204);
    gw.hits.length = 0;
    ca.send({ type: 'send', id: 'm4', to: bob.user, body: 'not muted' });
    await ca.next({ id: 'm4' });
    await sleep(2500);
    assert.equal(gw.hits.filter((h) => h.body.token === 'bob-mute').length, 1);
    await closeAll(ca);
  });

  test('a group message pushes the members who are offline, naming the group', async () => {
    const [alice, bob, carol] = await Promise.all([newUser(srv, 'ga'), newUser(srv, 'gb'), newUser(srv, 'gc')]);
    assert.equal((await register(bob, { provider: 'webhook', token: 'bob-group' })).status, 204);
    assert.equal((await register(carol, { provider: 'webhook', token: 'carol-group' })).status, 204);
    const g = await request(srv, 'POST', '/v1/groups', { token: alice.token, body: { name: 'Book club', members: [bob.user, carol.user] } });
    assert.equal(g.status, 201);
    const cc = await online(srv, carol); // connected: no push
    gw.hits.length = 0;
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'g1', group_id: g.body.group_id, body: 'chapter 3 tonight' });
    await ca.next('sent');
    ca.send({ type: 'send', id: 'g2', group_id: g.body.group_id, body: 'quiet', silent: true });
    await ca.next('sent');
    await sleep(2500);
    const bobs = gw.hits.filter((h) => h.body.token === 'bob-group');
    assert.equal(bobs.length, 1, JSON.stringify(gw.hits));
    assert.equal(bobs[0].body.group, 'Book club');
    assert.equal(bobs[0].body.group_id, g.body.group_id);
    assert.equal(bobs[0].body.from, alice.user);
    assert.equal(bobs[0].body.count, 1, 'the silent send makes no push');
    assert.equal(gw.hits.filter((h) => h.body.token === 'carol-group').length, 0);
    await closeAll(ca, cc);
  });

  test('no push for a connected device, nor for receipts or copies to the sender', async () => {
    const alice = await newUser(srv, 'qa');
    const bob = await newUser(srv, 'qb');
    assert.equal((await register(bob, { provider: 'webhook', token: 'bob-online' })).status, 204);
    assert.equal((await register(alice, { provider: 'webhook', token: 'alice-sender' })).status, 204);
    gw.hits.length = 0;
    const cb = await online(srv, bob);
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'x1', to: bob.user, body: 'hi' });
    await ca.next('sent');
    const m = await cb.next('msg');
    cb.ack(m.seq); // a delivered receipt goes to alice, who then disconnects before it arrives
    await ca.close();
    await sleep(2500);
    assert.deepEqual(gw.hits.filter((h) => ['bob-online', 'alice-sender'].includes(h.body.token)), []);
    await closeAll(cb);
  });

  test('a device that connects during the window cancels it', async () => {
    const alice = await newUser(srv, 'ra');
    const bob = await newUser(srv, 'rb');
    assert.equal((await register(bob, { provider: 'webhook', token: 'bob-wakes' })).status, 204);
    gw.hits.length = 0;
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'w1', to: bob.user, body: 'hi' });
    await ca.next('sent');
    const cb = await online(srv, bob);
    await sleep(2500);
    assert.deepEqual(gw.hits.filter((h) => h.body.token === 'bob-wakes'), []);
    await closeAll(ca, cb);
  });

  test('a dead token (410) removes the registration', async () => {
    const alice = await newUser(srv, 'sa');
    const bob = await newUser(srv, 'sb');
    assert.equal((await register(bob, { provider: 'webhook', token: 'bob-dead' })).status, 204);
    gw.hits.length = 0;
    gw.status = 410;
    const ca = await online(srv, alice);
    try {
      ca.send({ type: 'send', id: 'd1', to: bob.user, body: 'one' });
      await ca.next('sent');
      await sleep(2500);
      assert.equal(gw.hits.filter((h) => h.body.token === 'bob-dead').length, 1);
      gw.status = 200;
      ca.send({ type: 'send', id: 'd2', to: bob.user, body: 'two' });
      await ca.next('sent');
      await sleep(2500);
      assert.equal(gw.hits.filter((h) => h.body.token === 'bob-dead').length, 1, 'no push after the token died');
    } finally {
      gw.status = 200;
      await closeAll(ca);
    }
  });

  test('registration errors: unconfigured provider, bad body, no token; DELETE works', async () => {
    const bob = await newUser(srv, 'tb');
    let r = await register(bob, { provider: 'fcm', token: 'x' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'bad_request');
    r = await register(bob, { provider: 'carrier-pigeon', token: 'x' });
    assert.equal(r.status, 400);
    r = await request(srv, 'PUT', '/v1/push', { token: bob.token, body: 'not json' });
    assert.equal(r.status, 400);
    r = await request(srv, 'PUT', '/v1/push', { body: { provider: 'webhook', token: 'x' } });
    assert.equal(r.status, 401);
    r = await register(bob, { provider: 'webhook', token: 'tb' });
    assert.equal(r.status, 204);
    r = await request(srv, 'DELETE', '/v1/push', { token: bob.token });
    assert.equal(r.status, 204);
    r = await request(srv, 'GET', '/v1/push/vapid', { token: bob.token });
    assert.equal(r.status, 404, 'no VAPID key when Web Push is not configured');
  });

  test('a registration survives a restart', async () => {
    const alice = await newUser(srv, 'ua');
    const bob = await newUser(srv, 'ub');
    assert.equal((await register(bob, { provider: 'webhook', token: 'bob-restart' })).status, 204);
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    gw.hits.length = 0;
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'r1', to: bob.user, body: 'after restart' });
    await ca.next('sent');
    await sleep(2500);
    assert.equal(gw.hits.filter((h) => h.body.token === 'bob-restart').length, 1);
    await closeAll(ca);
  });
});
