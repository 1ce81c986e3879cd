// Privacy (PROTOCOL.md 14): blocking with exactly its stated effects (sends, receipts,
// presence, last seen, typing, keys and groups untouched), last_seen "nobody" both ways,
// read_receipts false both ways for 1:1 (groups keep theirs), and the API's refusals.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, FAST_LIMITS, sleep, waitFor } from './lib/server.mjs';
import { newUser, newDevice, request, getUser } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

const presenceOf = (user) => (f) => f.type === 'presence' && f.user === user;
const block = (srv, who, name) => request(srv, 'PUT', `/v1/blocks/${encodeURIComponent(name)}`, { token: who.token });
const unblock = (srv, who, name) => request(srv, 'DELETE', `/v1/blocks/${encodeURIComponent(name)}`, { token: who.token });
const patch = (srv, who, body) => request(srv, 'PATCH', '/v1/privacy', { token: who.token, body });

async function sendOk(c, id, to, body) {
  c.send({ type: 'send', id, to, body });
  const a = await c.next((f) => (f.type === 'sent' || f.type === 'error') && f.id === id);
  assert.equal(a.type, 'sent', `send ${id} → ${JSON.stringify(a)}`);
  return a;
}

describe('privacy', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(() => srv?.close());

  test('blocking: the blocked sender is answered sent but nothing is delivered; presence, typing hidden; groups and keys stay', async () => {
    const alice = await newUser(srv, 'ba');
    const alice2 = await newDevice(srv, alice, 'a2');
    const bob = await newUser(srv, 'bb');
    const [ca, ca2] = await Promise.all([online(srv, alice), online(srv, alice2)]);
    let cb = await online(srv, bob);
    const before = await sendOk(ca, 'b0', bob.user, 'before the block');
    const got = await cb.next('msg');
    assert.equal(got.msg_id, before.msg_id);
    await ca2.next('msg'); // alice's copy
    // alice watches bob: online
    ca.send({ type: 'watch', users: [bob.user] });
    assert.equal((await ca.next(presenceOf(bob.user))).online, true);

    assert.equal((await block(srv, bob, alice.user)).status, 204);
    assert.deepEqual((await request(srv, 'GET', '/v1/blocks', { token: bob.token })).body, { users: [alice.user] });
    assert.equal((await block(srv, bob, alice.user)).status, 204, 'blocking twice is fine');
    // alice now sees bob as never seen, live and on request
    const hidden = await ca.next(presenceOf(bob.user));
    assert.deepEqual([hidden.online, hidden.last_seen], [false, null]);
    const gu = await getUser(srv, alice.token, bob.user);
    assert.deepEqual([gu.body.online, gu.body.last_seen], [false, null]);
    assert.equal((await getUser(srv, bob.token, alice.user)).body.online, true, 'bob still sees alice');

    // her sends: sent as usual, her own other device gets its copy, bob nothing, no receipt
    const dropped = await sendOk(ca, 'b1', bob.user, 'you will never see this');
    assert.equal((await ca2.next('msg')).msg_id, dropped.msg_id);
    ca.send({ type: 'typing', to: bob.user, state: 'composing' });
    assert.deepEqual(await cb.quiet((f) => f.type === 'msg' || f.type === 'typing', 400), []);
    assert.deepEqual(await ca.quiet((f) => f.type === 'receipt' && f.msg_ids.includes(dropped.msg_id), 200), []);
    // a resend of the same id answers the same
    ca.send({ type: 'send', id: 'b1', to: bob.user, body: 'again' });
    assert.equal((await ca.next({ type: 'sent', id: 'b1' })).msg_id, dropped.msg_id);
    // bob's sends to alice are refused
    cb.send({ type: 'send', id: 'x1', to: alice.user, body: 'hi' });
    const e = await cb.next({ type: 'error', id: 'x1' });
    assert.equal(e.code, 'blocked');
    // keys and groups are not affected
    assert.equal((await request(srv, 'GET', `/v1/keys/${bob.user}`, { token: alice.token })).status, 200);
    const g = await request(srv, 'POST', '/v1/groups', { token: alice.token, body: { name: 'Both', members: [bob.user] } });
    assert.equal(g.status, 201, g.text);
    ca.send({ type: 'send', id: 'g1', group_id: g.body.group_id, body: 'in the group' });
    await ca.next({ type: 'sent', id: 'g1' });
    assert.equal((await cb.next((f) => f.type === 'msg' && f.group_id)).body, 'in the group');
    // what bob had received stays: a new connection drains it again (he never acked)
    await cb.close();
    cb = await online(srv, bob);
    assert.ok(cb.initial.some((f) => f.msg_id === before.msg_id), 'the message from before the block stays');
    assert.ok(!cb.initial.some((f) => f.msg_id === dropped.msg_id));

    // unblocking: delivered again, presence back
    assert.equal((await unblock(srv, bob, alice.user)).status, 204);
    await waitFor(async () => (await getUser(srv, alice.token, bob.user)).body.online === true, { message: 'bob online to alice again' });
    const after2 = await sendOk(ca, 'b2', bob.user, 'after the unblock');
    assert.equal((await cb.next((f) => f.type === 'msg' && !f.group_id)).msg_id, after2.msg_id);
    assert.deepEqual((await request(srv, 'GET', '/v1/blocks', { token: bob.token })).body, { users: [] });
    await closeAll(ca, ca2, cb);
  });

  test('blocks and settings are stored: they survive a restart', { skip: process.env.TERN_TEST_CLUSTER ? 'restarts one node' : false }, async () => {
    const [u, v] = await Promise.all([newUser(srv, 'st'), newUser(srv, 'st')]);
    assert.equal((await block(srv, u, v.user)).status, 204);
    assert.equal((await patch(srv, u, { last_seen: 'nobody', read_receipts: false })).status, 204);
    await srv.kill9(); // what was answered 204 is durable
    await srv.restart();
    assert.deepEqual((await request(srv, 'GET', '/v1/blocks', { token: u.token })).body, { users: [v.user] });
    assert.deepEqual((await request(srv, 'GET', '/v1/privacy', { token: u.token })).body, { last_seen: 'nobody', read_receipts: false });
    assert.equal((await getUser(srv, v.token, u.user)).body.online, false);
  });

  test('block refusals: unknown user 404, yourself 400, unblocking someone not blocked is fine', async () => {
    const u = await newUser(srv, 'br');
    const r = await block(srv, u, 'no-such-user-here');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');
    assert.equal((await block(srv, u, u.user)).status, 400);
    assert.equal((await unblock(srv, u, 'anyone')).status, 204);
    assert.equal((await request(srv, 'POST', '/v1/blocks', { token: u.token })).status, 405);
    assert.equal((await request(srv, 'GET', '/v1/blocks')).status, 401);
  });

  test('last_seen "nobody": others see null, and the user sees nobody\'s; online still shown', async () => {
    const quiet = await newUser(srv, 'ls');
    const other = await newUser(srv, 'ls');
    const cq0 = await online(srv, quiet);
    await cq0.close();
    const co0 = await online(srv, other);
    await co0.close();
    const viewer = await newUser(srv, 'ls');
    assert.deepEqual((await request(srv, 'GET', '/v1/privacy', { token: quiet.token })).body, { last_seen: 'everyone', read_receipts: true });
    assert.equal(typeof (await getUser(srv, viewer.token, quiet.user)).body.last_seen, 'number');
    assert.equal((await patch(srv, quiet, { last_seen: 'nobody' })).status, 204);
    assert.deepEqual((await request(srv, 'GET', '/v1/privacy', { token: quiet.token })).body, { last_seen: 'nobody', read_receipts: true });
    assert.equal((await getUser(srv, viewer.token, quiet.user)).body.last_seen, null);
    // and quiet sees nobody's last seen
    assert.equal((await getUser(srv, quiet.token, other.user)).body.last_seen, null);
    const cv = await online(srv, viewer);
    cv.send({ type: 'watch', users: [quiet.user] });
    assert.equal((await cv.next(presenceOf(quiet.user))).last_seen, null);
    // online is still shown
    const cq = await online(srv, quiet);
    assert.equal((await cv.next(presenceOf(quiet.user))).online, true);
    await closeAll(cq, cv);
    assert.equal((await patch(srv, quiet, { last_seen: 'everyone' })).status, 204);
    assert.equal(typeof (await getUser(srv, viewer.token, quiet.user)).body.last_seen, 'number');
    for (const bad of [{ last_seen: 'friends' }, { read_receipts: 'no' }, { last_seen: 1 }]) {
      assert.equal((await patch(srv, quiet, bad)).status, 400, JSON.stringify(bad));
    }
  });

  test('read_receipts false: no 1:1 read receipts either way, the reader\'s devices still sync; groups keep theirs', async () => {
    const alice = await newUser(srv, 'rr');
    const carol = await newUser(srv, 'rr');
    const carol2 = await newDevice(srv, carol, 'c2');
    assert.equal((await patch(srv, carol, { read_receipts: false })).status, 204);
    const [ca, cc, cc2] = await Promise.all([online(srv, alice), online(srv, carol), online(srv, carol2)]);
    const m = await sendOk(ca, 'r1', carol.user, 'read me');
    await cc.next('msg');
    await cc2.next('msg');
    cc.send({ type: 'read', peer: alice.user, msg_ids: [m.msg_id] });
    const mine = await cc2.next((f) => f.type === 'receipt' && f.status === 'read');
    assert.deepEqual(mine.msg_ids, [m.msg_id], 'carol\'s other device hears of her read');
    assert.deepEqual(await ca.quiet((f) => f.type === 'receipt' && f.status === 'read', 400), []);
    // carol gets no read receipts from others either
    const back = await sendOk(cc, 'r2', alice.user, 'and you?');
    const got = await ca.next((f) => f.type === 'msg' && f.msg_id === back.msg_id);
    ca.send({ type: 'read', peer: carol.user, msg_ids: [got.msg_id] });
    assert.deepEqual(await cc.quiet((f) => f.type === 'receipt' && f.status === 'read', 400), []);
    // groups always send theirs
    const g = await request(srv, 'POST', '/v1/groups', { token: alice.token, body: { name: 'RR', members: [carol.user] } });
    ca.send({ type: 'send', id: 'g1', group_id: g.body.group_id, body: 'group' });
    const gs = await ca.next({ type: 'sent', id: 'g1' });
    await cc.next((f) => f.type === 'msg' && f.group_id);
    cc.send({ type: 'read', group_id: g.body.group_id, peer: alice.user, msg_ids: [gs.msg_id] });
    const gr = await ca.next((f) => f.type === 'receipt' && f.status === 'read' && f.group_id);
    assert.deepEqual(gr.by, [carol.user]);
    await closeAll(ca, cc, cc2);
    await sleep(0);
  });
});
