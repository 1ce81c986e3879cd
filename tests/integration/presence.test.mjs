// PROTOCOL.md section 6: presence, last seen, typing.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep, waitFor, FAST_LIMITS } from './lib/server.mjs';
import { newUser, newDevice, getUser, uniqueName, request } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

const presenceOf = (user) => (f) => f.type === 'presence' && f.user === user;

describe('presence', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); });

  test('watch → the current presence of each user: online, offline with last_seen, never connected (null)', async () => {
    const w = await newUser(srv, 'watcher');
    const bob = await newUser(srv, 'on');
    const carol = await newUser(srv, 'off');
    const dave = await newUser(srv, 'never');
    const cb = await online(srv, bob);
    const tc0 = Date.now();
    const cc = await online(srv, carol);
    await cc.roundTrip();
    await cc.close();
    const tc1 = Date.now();
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [bob.user, carol.user, dave.user] });
    const pb = await cw.next(presenceOf(bob.user));
    assert.equal(pb.online, true, JSON.stringify(pb));
    const pc = await cw.next(presenceOf(carol.user));
    assert.equal(pc.online, false, JSON.stringify(pc));
    assert.equal(typeof pc.last_seen, 'number', JSON.stringify(pc));
    assert.ok(pc.last_seen >= tc0 - 50 && pc.last_seen <= tc1 + 50,
      `carol's last_seen ${pc.last_seen} outside her session [${tc0}, ${tc1}]`);
    const pd = await cw.next(presenceOf(dave.user));
    assert.equal(pd.online, false, JSON.stringify(pd));
    assert.ok('last_seen' in pd, `a never-connected user must have "last_seen":null: ${JSON.stringify(pd)}`);
    assert.equal(pd.last_seen, null);
    assert.deepEqual(await cw.quiet('presence', 300), [], 'exactly one presence per watched user');
    await closeAll(cb, cw);
  });

  test('live changes: connect and disconnect of the watched user; devices do not flap it', async () => {
    const w = await newUser(srv, 'watcher');
    const bob = await newUser(srv, 'flap', 'b1');
    const bob2 = await newDevice(srv, bob, 'b2');
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [bob.user] });
    const p0 = await cw.next(presenceOf(bob.user));
    assert.equal(p0.online, false);
    const cb1 = await online(srv, bob);
    assert.equal((await cw.next(presenceOf(bob.user))).online, true);
    const cb2 = await online(srv, bob2);
    assert.deepEqual(await cw.quiet(presenceOf(bob.user), 300), [], 'a second device connecting changes nothing');
    await cb1.close();
    assert.deepEqual(await cw.quiet(presenceOf(bob.user), 300), [], 'bob is still online through b2');
    await cb2.roundTrip();
    const tLast = Date.now();
    await cb2.close();
    const tClosed = Date.now();
    const off = await cw.next(presenceOf(bob.user));
    assert.equal(off.online, false);
    assert.equal(typeof off.last_seen, 'number', JSON.stringify(off));
    assert.ok(off.last_seen >= tLast - 50 && off.last_seen <= tClosed + 500,
      `last_seen ${off.last_seen} is not the time of bob's last frame (${tLast}..${tClosed})`);
    await cw.close();
  });

  test('last_seen is the last time the server heard from the user, including a plain ping', async () => {
    const w = await newUser(srv, 'watcher');
    const bob = await newUser(srv, 'ls');
    const cb = await online(srv, bob);
    await sleep(300);
    const tPing = Date.now();
    await cb.roundTrip();
    await cb.terminate(); // drop TCP without a close frame: the last frame heard is the ping
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [bob.user] });
    let p = await cw.next(presenceOf(bob.user));
    if (p.online) p = await cw.next(presenceOf(bob.user)); // the server may notice the drop late
    assert.equal(p.online, false);
    assert.ok(p.last_seen >= tPing - 50, `last_seen ${p.last_seen} is older than bob's last ping at ${tPing}`);
    await cw.close();
  });

  test('unwatch stops the events', async () => {
    const w = await newUser(srv, 'watcher');
    const bob = await newUser(srv, 'unw');
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [bob.user] });
    await cw.next(presenceOf(bob.user));
    cw.send({ type: 'unwatch', users: [bob.user] });
    await cw.roundTrip();
    const cb = await online(srv, bob);
    await cb.close();
    assert.deepEqual(await cw.quiet('presence', 400), [], 'no presence after unwatch');
    await cw.close();
  });

  test('an unknown user → its own error no_such_user with "user"; the others are still watched', async () => {
    const w = await newUser(srv, 'watcher');
    const bob = await newUser(srv, 'known');
    const ghost = uniqueName('ghost');
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [ghost, bob.user.toUpperCase(), 'b@d!'] });
    const e = await cw.next((f) => f.type === 'error' && f.user === ghost);
    assert.equal(e.code, 'no_such_user', JSON.stringify(e));
    const e2 = await cw.next((f) => f.type === 'error' && f.code === 'no_such_user' && f.user !== ghost);
    assert.ok(['b@d!', 'B@D!'].includes(e2.user), `invalid name's error: ${JSON.stringify(e2)}`);
    const p = await cw.next('presence');
    assert.equal(p.user, bob.user, 'watched names are lower-cased');
    assert.equal(p.online, false);
    const cb = await online(srv, bob);
    assert.equal((await cw.next(presenceOf(bob.user))).online, true);
    await closeAll(cb, cw);
  });

  test('presence is live only: a watcher that reconnects is not sent missed changes', async () => {
    const w = await newUser(srv, 'watcher');
    const bob = await newUser(srv, 'live');
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [bob.user] });
    await cw.next(presenceOf(bob.user));
    await cw.close();
    const cb = await online(srv, bob);
    await cb.close();
    const cw2 = await online(srv, w);
    assert.deepEqual(cw2.initial, []);
    assert.deepEqual(await cw2.quiet('presence', 300), [], 'presence must never be queued');
    await cw2.close();
  });

  test('GET /v1/users/{name} → {user, online, last_seen}; unknown or invalid → 404 not_found', async () => {
    const w = await newUser(srv, 'asker');
    const bob = await newUser(srv, 'whois');
    let r = await getUser(srv, w.token, bob.user);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { user: bob.user, online: false, last_seen: null, display_name: null, avatar: null });
    const cb = await online(srv, bob);
    r = await getUser(srv, w.token, bob.user.toUpperCase());
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.user, bob.user);
    assert.equal(r.body.online, true);
    assert.ok('last_seen' in r.body);
    const t = Date.now();
    await cb.roundTrip();
    await cb.close();
    r = await getUser(srv, w.token, bob.user);
    assert.equal(r.body.online, false);
    assert.ok(r.body.last_seen >= t - 50 && r.body.last_seen <= Date.now() + 50, JSON.stringify(r.body));
    for (const name of [uniqueName('ghost'), 'b@d!', 'ab']) {
      r = await getUser(srv, w.token, name);
      assert.equal(r.status, 404, `${name}: ${r.text}`);
      assert.equal(r.body?.error?.code, 'not_found', r.text);
    }
    r = await request(srv, 'GET', `/v1/users/${bob.user}`);
    assert.equal(r.status, 401, `without a token: ${r.text}`);
    assert.equal(r.body?.error?.code, 'unauthorized');
  });

  test('typing is relayed live to the recipient\'s connected devices and never stored', async () => {
    const alice = await newUser(srv, 'typ');
    const bob = await newUser(srv, 'typ', 'b1');
    const bob2 = await newDevice(srv, bob, 'b2');
    const bob3 = await newDevice(srv, bob, 'b3'); // offline
    const ca = await online(srv, alice);
    const cb1 = await online(srv, bob);
    const cb2 = await online(srv, bob2);
    ca.send({ type: 'typing', to: bob.user, state: 'composing' });
    for (const c of [cb1, cb2]) {
      assert.deepEqual(await c.next('typing'), { type: 'typing', from: alice.user, state: 'composing' });
    }
    ca.send({ type: 'typing', to: bob.user.toUpperCase(), state: 'paused' });
    for (const c of [cb1, cb2]) {
      assert.deepEqual(await c.next('typing'), { type: 'typing', from: alice.user, state: 'paused' });
    }
    await ca.roundTrip();
    assert.deepEqual(await ca.quiet(() => true, 200), [], 'typing gets no answer');
    const cb3 = await online(srv, bob3);
    assert.deepEqual(cb3.initial, [], 'typing is not an envelope');
    assert.deepEqual(await cb3.quiet('typing', 300), [], 'typing is never stored for a device that was offline');
    await closeAll(ca, cb1, cb2, cb3);
  });
});

describe('last seen across restarts', () => {
  let srv;
  before(async () => {
    srv = await startServer({ args: [...FAST_LIMITS, '--presence-persist-interval', '500ms'] });
  });
  after(async () => { await srv?.close(); });

  test('last_seen survives a SIGTERM restart, also for a user connected at the signal', async () => {
    const w = await newUser(srv, 'asker');
    const bob = await newUser(srv, 'persist');
    const carol = await newUser(srv, 'persist');
    const cb = await online(srv, bob);
    await cb.roundTrip();
    await cb.close();
    // in a cluster the asker's request may reach the other node a moment before bob's close
    // does (the bus): wait for that, not for a time
    const before = await waitFor(async () => {
      const b = (await getUser(srv, w.token, bob.user)).body;
      return b.online === false && b;
    }, { message: 'bob offline to the asker' });
    assert.equal(typeof before.last_seen, 'number', JSON.stringify(before));
    const cc = await online(srv, carol);
    await cc.roundTrip();
    const tCarol = Date.now();
    assert.equal(await srv.stop(), 0);
    assert.equal((await cc.closed).code, 1001);
    await srv.restart();
    const afterB = await getUser(srv, w.token, bob.user);
    assert.equal(afterB.status, 200, afterB.text);
    assert.deepEqual(afterB.body, before, 'bob\'s last_seen must be unchanged by a restart');
    const afterC = await getUser(srv, w.token, carol.user);
    assert.equal(afterC.body.online, false);
    assert.ok(afterC.body.last_seen >= tCarol - 50, `carol, connected at SIGTERM: last_seen ${afterC.body.last_seen} < ${tCarol}`);
  });

  test('after kill -9, last_seen of a connected user is at most presence.persist_interval stale', async () => {
    const w = await newUser(srv, 'asker');
    const bob = await newUser(srv, 'crash');
    const cb = await online(srv, bob);
    for (let i = 0; i < 15; i++) { await cb.roundTrip(); await sleep(100); }
    const tKill = Date.now();
    await srv.kill9();
    await cb.closed;
    await srv.restart();
    const r = await getUser(srv, w.token, bob.user);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.online, false);
    assert.equal(typeof r.body.last_seen, 'number', `bob's last_seen was lost by kill -9: ${r.text}`);
    const stale = tKill - r.body.last_seen;
    assert.ok(stale <= 500 + 250, `last_seen is ${stale} ms stale after kill -9 (persist interval 500 ms)`);
    assert.ok(r.body.last_seen <= tKill + 50);
  });
});
