// Group chat (PROTOCOL.md section 10): the API and its rules, events as envelopes, fan-out,
// per-member receipts, ordering, storage that scales, bad input. A real ternd; node's ws.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, waitFor, sleep, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { newUser, newDevice, request, metric, uniqueName } from './lib/api.mjs';
import { online, closeAll, tallyDelivered } from './lib/client.mjs';
import { upload, getMedia, samples } from './lib/media.mjs';

const MERGE = ['--receipts-merge-window', '200ms'];

const api = {
  create: (srv, t, body) => request(srv, 'POST', '/v1/groups', { token: t, body }),
  list: (srv, t, q = '') => request(srv, 'GET', `/v1/groups${q}`, { token: t }),
  get: (srv, t, g) => request(srv, 'GET', `/v1/groups/${g}`, { token: t }),
  patch: (srv, t, g, body) => request(srv, 'PATCH', `/v1/groups/${g}`, { token: t, body }),
  add: (srv, t, g, users) => request(srv, 'POST', `/v1/groups/${g}/members`, { token: t, body: { users } }),
  remove: (srv, t, g, u) => request(srv, 'DELETE', `/v1/groups/${g}/members/${u}`, { token: t }),
  admin: (srv, t, g, u, on) => request(srv, on ? 'PUT' : 'DELETE', `/v1/groups/${g}/admins/${u}`, { token: t }),
};

function errCode(r) { return r.body?.error?.code; }

async function makeGroup(srv, owner, members, name = 'Trip') {
  const r = await api.create(srv, owner.token, { name, members: members.map((m) => m.user) });
  assert.equal(r.status, 201, r.text);
  return r.body;
}

describe('groups: API and rules', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, ...MERGE, '--groups-max-members', '6', '--groups-max-per-user', '3'] }); });
  after(() => srv?.close());

  test('create: the creator first and admin, members in the given order, duplicates ignored', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'ga'), newUser(srv, 'gb'), newUser(srv, 'gc')]);
    const r = await api.create(srv, a.token, { name: 'Trip ✈', description: 'to the sea', members: [c.user, b.user, c.user, a.user, b.user.toUpperCase()] });
    assert.equal(r.status, 201, r.text);
    const g = r.body;
    assert.match(g.group_id, /^[A-Za-z0-9_-]{1,64}$/);
    assert.equal(g.name, 'Trip ✈');
    assert.equal(g.description, 'to the sea');
    assert.equal(g.created_by, a.user);
    assert.ok(Math.abs(g.created_at - Date.now()) < 60000);
    assert.deepEqual(g.members.map((m) => [m.user, m.role]), [[a.user, 'admin'], [c.user, 'member'], [b.user, 'member']]);
    for (const m of g.members) assert.equal(typeof m.since, 'number');
    const got = await api.get(srv, b.token, g.group_id);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, g);
  });

  test('bad input: unknown member, too many, too long, bad types, NUL, bad UTF-8, not JSON; nothing half-applied', async () => {
    const a = await newUser(srv, 'bad');
    const b = await newUser(srv, 'bad');
    let r = await api.create(srv, a.token, { name: 'x', members: [b.user, 'nobody_here'] });
    assert.equal(r.status, 404);
    assert.equal(errCode(r), 'no_such_user');
    assert.equal(r.body.error.user, 'nobody_here');
    r = await api.create(srv, a.token, { name: 'x', members: ['Not Valid!'] });
    assert.equal(r.status, 404);
    assert.equal(errCode(r), 'no_such_user');
    const others = await Promise.all([1, 2, 3, 4, 5, 6].map(() => newUser(srv, 'many')));
    r = await api.create(srv, a.token, { name: 'x', members: others.map((o) => o.user) }); // 7 > 6
    assert.equal(r.status, 413);
    assert.equal(errCode(r), 'too_large');
    for (const body of [{}, { name: '' }, { name: 'x'.repeat(101) }, { name: 5 }, { name: 'x', description: 'd'.repeat(513) },
      { name: 'x', members: 'bob' }, { name: 'x', members: [5] }, { name: 'a\u0000b' }]) {
      r = await api.create(srv, a.token, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.text}`);
      assert.equal(errCode(r), 'bad_request');
    }
    r = await request(srv, 'POST', '/v1/groups', { token: a.token, body: Buffer.from([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]) });
    assert.equal(r.status, 400);
    r = await request(srv, 'POST', '/v1/groups', { token: a.token, body: 'not json' });
    assert.equal(r.status, 400);
    r = await api.create(srv, 'wrong-token', { name: 'x' });
    assert.equal(r.status, 401);
    const list = await api.list(srv, a.token);
    assert.deepEqual(list.body.groups, []);
  });

  test('groups.max_per_user: a member already in that many groups is refused by name', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'cap'), newUser(srv, 'cap')]);
    for (let i = 0; i < 3; i++) await makeGroup(srv, a, [b], `g${i}`);
    const c = await newUser(srv, 'cap');
    const r = await api.create(srv, c.token, { name: 'one more', members: [b.user] });
    assert.equal(r.status, 403);
    assert.equal(errCode(r), 'forbidden');
    assert.equal(r.body.error.user, b.user);
  });

  test('the list is paginated with after and limit, sorted by group id', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'pg'), newUser(srv, 'pg')]);
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await makeGroup(srv, a, [b], `p${i}`)).group_id);
    made.sort();
    const seen = [];
    let q = '?limit=2';
    for (;;) {
      const r = await api.list(srv, b.token, q);
      assert.equal(r.status, 200, r.text);
      for (const g of r.body.groups) {
        assert.equal(g.role, 'member');
        assert.equal(g.members, 2);
        seen.push(g.group_id);
      }
      if (!r.body.next) break;
      q = `?after=${r.body.next}&limit=2`;
    }
    assert.deepEqual(seen, made);
    assert.equal((await api.list(srv, b.token, '?limit=0')).status, 400);
    assert.equal((await api.list(srv, b.token, '?limit=x')).status, 400);
  });

  test('who may do what: outsiders get 404 everywhere, members 403 for admin actions', async () => {
    const [a, b, x] = await Promise.all([newUser(srv, 'who'), newUser(srv, 'who'), newUser(srv, 'who')]);
    const g = await makeGroup(srv, a, [b]);
    for (const r of [await api.get(srv, x.token, g.group_id), await api.patch(srv, x.token, g.group_id, { name: 'n' }),
      await api.add(srv, x.token, g.group_id, [x.user]), await api.remove(srv, x.token, g.group_id, b.user),
      await api.admin(srv, x.token, g.group_id, x.user, true), await api.get(srv, x.token, 'no-such-group'),
      await api.get(srv, a.token, 'no-such-group')]) {
      assert.equal(r.status, 404, r.text);
      assert.equal(errCode(r), 'not_found');
    }
    assert.equal((await api.patch(srv, b.token, g.group_id, { name: 'n' })).status, 403);
    assert.equal((await api.add(srv, b.token, g.group_id, [x.user])).status, 403);
    assert.equal((await api.remove(srv, b.token, g.group_id, a.user)).status, 403);
    assert.equal((await api.admin(srv, b.token, g.group_id, b.user, true)).status, 403);
    assert.equal((await api.remove(srv, a.token, g.group_id, x.user)).status, 404); // not a member
    assert.equal((await api.admin(srv, a.token, g.group_id, a.user, false)).status, 403); // the only admin
    assert.equal((await api.add(srv, a.token, g.group_id, ['ghost_user_zz'])).status, 404);
    const after = await api.get(srv, a.token, g.group_id);
    assert.deepEqual(after.body.members.map((m) => m.user), [a.user, b.user]);
  });

  test('events: created, added, renamed, promoted, demoted, removed and left reach the right devices', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'ev'), newUser(srv, 'ev'), newUser(srv, 'ev')]);
    const ca = await online(srv, a);
    const cb = await online(srv, b);
    const cc = await online(srv, c);
    const g = await makeGroup(srv, a, [b]);
    const created = await cb.next({ type: 'group', event: 'created' });
    assert.equal(created.group_id, g.group_id);
    assert.equal(created.by, a.user);
    assert.equal(created.name, 'Trip');
    assert.deepEqual(created.users, [a.user, b.user]);
    assert.equal(typeof created.seq, 'number');
    await ca.next({ type: 'group', event: 'created' }); // the creator's own devices too
    let r = await api.add(srv, a.token, g.group_id, [c.user, b.user]);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.members.map((m) => m.user), [a.user, b.user, c.user]);
    const added = await cc.next({ type: 'group', event: 'added' });
    assert.deepEqual(added.users, [c.user]);
    await cb.next({ type: 'group', event: 'added' });
    r = await api.patch(srv, a.token, g.group_id, { name: 'Trip 2' });
    assert.equal(r.body.name, 'Trip 2');
    assert.equal(r.body.description, '');
    const ren = await cc.next({ type: 'group', event: 'renamed' });
    assert.equal(ren.name, 'Trip 2');
    r = await api.admin(srv, a.token, g.group_id, b.user, true);
    assert.equal(r.body.members[1].role, 'admin');
    assert.deepEqual((await cc.next({ type: 'group', event: 'promoted' })).users, [b.user]);
    r = await api.admin(srv, a.token, g.group_id, b.user, false);
    assert.deepEqual((await cc.next({ type: 'group', event: 'demoted' })).users, [b.user]);
    r = await api.remove(srv, a.token, g.group_id, c.user);
    assert.equal(r.status, 200);
    const removed = await cc.next({ type: 'group', event: 'removed' }); // the removed user hears it
    assert.deepEqual(removed.users, [c.user]);
    await cb.next({ type: 'group', event: 'removed' });
    assert.equal((await api.get(srv, c.token, g.group_id)).status, 404);
    r = await api.remove(srv, b.token, g.group_id, b.user);
    assert.equal(r.status, 204);
    assert.deepEqual((await cb.next({ type: 'group', event: 'left' })).users, [b.user]);
    await ca.next({ type: 'group', event: 'left' });
    // seqs of every device rise by one with each envelope
    for (const cl of [ca, cb, cc]) {
      cl.ack(1000);
      await cl.roundTrip();
    }
    await closeAll(ca, cb, cc);
  });

  test('the last admin leaving promotes the oldest member; the last member leaving deletes the group', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'la'), newUser(srv, 'la'), newUser(srv, 'la')]);
    const g = await makeGroup(srv, a, [b]);
    await sleep(5);
    await api.add(srv, a.token, g.group_id, [c.user]);
    const cb = await online(srv, b);
    assert.equal((await api.remove(srv, a.token, g.group_id, a.user)).status, 204);
    const left = await cb.next({ type: 'group', event: 'left' });
    assert.deepEqual(left.users, [a.user]);
    const prom = await cb.next({ type: 'group', event: 'promoted' });
    assert.deepEqual(prom.users, [b.user]);
    assert.equal(prom.by, a.user);
    assert.ok(prom.seq > left.seq);
    const now = await api.get(srv, b.token, g.group_id);
    assert.deepEqual(now.body.members.map((m) => [m.user, m.role]), [[b.user, 'admin'], [c.user, 'member']]);
    assert.equal((await api.remove(srv, c.token, g.group_id, c.user)).status, 204);
    assert.equal((await api.remove(srv, b.token, g.group_id, b.user)).status, 204);
    // in a cluster the GET may reach the other node, which learns the deletion from the feed a
    // moment later (PROTOCOL.md 12): there it must be gone within moments, not at once
    for (const node of srv.cluster ? srv.nodes : []) {
      await waitFor(async () => (await api.get(node, b.token, g.group_id)).status === 404, { message: 'the group gone on every node' });
    }
    assert.equal((await api.get(srv, b.token, g.group_id)).status, 404);
    assert.equal((await cb.next({ type: 'group', event: 'left', users: [b.user] })).group_id, g.group_id);
    assert.equal(await metric(srv, 'tern_groups') >= 0, true);
    await cb.close();
  });
});

describe('groups: messages', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, ...MERGE, '--inbox-max-envelopes', '40'] }); });
  after(() => srv?.close());

  test('a group send fans out to every member device and the sender\'s other devices; sent carries recipients', async () => {
    const a = await newUser(srv, 'gm');
    const a2 = await newDevice(srv, a, 'phone');
    const [b, c] = await Promise.all([newUser(srv, 'gm'), newUser(srv, 'gm')]);
    const b2 = await newDevice(srv, b, 'phone');
    const g = await makeGroup(srv, a, [b, c]);
    const clients = await Promise.all([a, a2, b, b2, c].map((x) => online(srv, x)));
    const [ca, ca2, cb, cb2, cc] = clients;
    ca.send({ type: 'send', id: 's1', group_id: g.group_id, body: 'hello group' });
    const sent = await ca.next({ type: 'sent', id: 's1' });
    assert.equal(sent.recipients, 2);
    assert.equal(sent.skipped, undefined);
    for (const cl of [ca2, cb, cb2, cc]) {
      const m = await cl.next('msg');
      assert.equal(m.msg_id, sent.msg_id);
      assert.equal(m.group_id, g.group_id);
      assert.equal(m.from, a.user);
      assert.equal(m.from_device, a.device_id);
      assert.equal(m.body, 'hello group');
      assert.equal(m.to, undefined);
    }
    assert.deepEqual(ca.take('msg'), []);
    // a resend with the same id: the same answer, delivered once
    ca.send({ type: 'send', id: 's1', group_id: g.group_id, body: 'again' });
    const again = await ca.next({ type: 'sent', id: 's1' });
    assert.equal(again.msg_id, sent.msg_id);
    assert.deepEqual(await cc.quiet('msg', 200), []);
    await closeAll(clients);
  });

  test('per-member receipts: delivered by a list to the sender only, read with group_id, merged', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'rc'), newUser(srv, 'rc'), newUser(srv, 'rc')]);
    const b2 = await newDevice(srv, b, 'phone');
    const g = await makeGroup(srv, a, [b, c]);
    const [ca, cb, cb2, cc] = await Promise.all([a, b, b2, c].map((x) => online(srv, x)));
    ca.send({ type: 'send', id: 'r1', group_id: g.group_id, body: 'x' });
    const sent = await ca.next({ type: 'sent', id: 'r1' });
    const [mb, , mc] = [await cb.next('msg'), await cb2.next('msg'), await cc.next('msg')];
    cb.ack(mb.seq);
    cb2.ack(mb.seq + 10); // bob's second device: no second delivered for bob
    cc.ack(mc.seq);
    const byDelivered = new Set();
    await waitFor(async () => {
      for (const r of ca.take((f) => f.type === 'receipt' && f.status === 'delivered')) {
        assert.equal(r.group_id, g.group_id);
        assert.equal(r.from, a.user);
        assert.ok(Array.isArray(r.by));
        assert.deepEqual(r.msg_ids, [sent.msg_id]);
        for (const u of r.by) { assert.ok(!byDelivered.has(u), `${u} delivered twice`); byDelivered.add(u); }
      }
      return byDelivered.size === 2;
    }, { message: 'delivered by both members' });
    assert.deepEqual([...byDelivered].sort(), [b.user, c.user].sort());
    // nobody but the sender gets delivered receipts
    assert.deepEqual(await cc.quiet((f) => f.type === 'receipt', 300), []);
    cb.send({ type: 'read', group_id: g.group_id, peer: a.user, msg_ids: [sent.msg_id] });
    const read = await ca.next((f) => f.type === 'receipt' && f.status === 'read');
    assert.equal(read.group_id, g.group_id);
    assert.deepEqual(read.by, [b.user]);
    const mine = await cb2.next((f) => f.type === 'receipt' && f.status === 'read'); // the reader's other device
    assert.equal(mine.group_id, g.group_id);
    await closeAll(ca, cb, cb2, cc);
  });

  test('membership is taken at acceptance: a later member never gets earlier messages, a removed one nothing more', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'mt'), newUser(srv, 'mt'), newUser(srv, 'mt')]);
    const g = await makeGroup(srv, a, [b]);
    const [ca, cb, cc] = await Promise.all([a, b, c].map((x) => online(srv, x)));
    ca.send({ type: 'send', id: 'm1', group_id: g.group_id, body: 'before c' });
    const s1 = await ca.next({ type: 'sent', id: 'm1' });
    await api.add(srv, a.token, g.group_id, [c.user]);
    ca.send({ type: 'send', id: 'm2', group_id: g.group_id, body: 'with c' });
    const s2 = await ca.next({ type: 'sent', id: 'm2' });
    await api.remove(srv, a.token, g.group_id, b.user);
    ca.send({ type: 'send', id: 'm3', group_id: g.group_id, body: 'without b' });
    assert.equal((await ca.next({ type: 'sent', id: 'm3' })).recipients, 1);
    const bodies = async (cl, n) => (await cl.collect(n, (f) => f.type === 'msg' || f.type === 'group')).map((f) => f.body ?? `:${f.event}`);
    assert.deepEqual(await bodies(cc, 4), [':added', 'with c', ':removed', 'without b']);
    assert.deepEqual(cb.initial.map((e) => e.event), ['created']); // drained at connect
    assert.deepEqual(await bodies(cb, 4), ['before c', ':added', 'with c', ':removed']);
    assert.deepEqual(await cb.quiet('msg', 300), []);
    // a removed member's send, read and typing are refused
    cb.send({ type: 'send', id: 'x', group_id: g.group_id, body: 'let me in' });
    assert.equal((await cb.next({ type: 'error', id: 'x' })).code, 'no_such_group');
    cb.send({ type: 'read', group_id: g.group_id, peer: a.user, msg_ids: ['01'] });
    assert.equal((await cb.next('error')).code, 'no_such_group');
    // c, added after m1, cannot mark m1 read (it never received it); m2 it can
    cc.send({ type: 'read', group_id: g.group_id, peer: a.user, msg_ids: [s1.msg_id] });
    assert.equal((await cc.next('error')).code, 'bad_request');
    cc.send({ type: 'read', group_id: g.group_id, peer: a.user, msg_ids: [s1.msg_id, s2.msg_id] });
    const rd = await ca.next((f) => f.type === 'receipt' && f.status === 'read');
    assert.deepEqual([rd.by, rd.msg_ids], [[c.user], [s2.msg_id]]);
    cb.send({ type: 'typing', group_id: g.group_id, state: 'composing' });
    assert.equal((await cb.next('error')).code, 'no_such_group');
    cb.send({ type: 'send', id: 'y', group_id: 'no-such-group', body: 'x' });
    assert.equal((await cb.next({ type: 'error', id: 'y' })).code, 'no_such_group');
    await closeAll(ca, cb, cc);
  });

  test('typing is relayed to the other members with group_id', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'ty'), newUser(srv, 'ty'), newUser(srv, 'ty')]);
    const g = await makeGroup(srv, a, [b, c]);
    const [ca, cb, cc] = await Promise.all([a, b, c].map((x) => online(srv, x)));
    ca.send({ type: 'typing', group_id: g.group_id, state: 'composing' });
    for (const cl of [cb, cc]) assert.deepEqual(await cl.next('typing'), { type: 'typing', from: a.user, group_id: g.group_id, state: 'composing' });
    assert.deepEqual(await ca.quiet('typing', 200), []);
    await closeAll(ca, cb, cc);
  });

  test('a full inbox misses the message alone; a member all of whose devices missed it is in skipped', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'fu'), newUser(srv, 'fu'), newUser(srv, 'fu')]);
    const g = await makeGroup(srv, a, [b, c]);
    const cb = await online(srv, b);
    const ca = await online(srv, a);
    // fill c's inbox (40) with 1:1 messages from b; the group event took one place already
    for (let i = 0; i < 40; i++) cb.send({ type: 'send', id: `f${i}`, to: c.user, body: 'fill' });
    await waitFor(() => cb.take((f) => f.type === 'error' && f.code === 'rate_limited').length > 0 || null, { message: 'c full' });
    ca.send({ type: 'send', id: 'full1', group_id: g.group_id, body: 'partly' });
    const sent = await ca.next({ type: 'sent', id: 'full1' });
    assert.equal(sent.recipients, 1);
    assert.deepEqual(sent.skipped, [c.user]);
    assert.equal((await cb.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id)).body, 'partly');
    await closeAll(ca, cb);
  });

  test('media sent to a group may be read by every member', async () => {
    const [a, b, c, x] = await Promise.all([newUser(srv, 'md'), newUser(srv, 'md'), newUser(srv, 'md'), newUser(srv, 'md')]);
    const g = await makeGroup(srv, a, [b, c]);
    const up = await upload(srv, a.token, samples().jpeg.bytes, 'image/jpeg');
    assert.equal(up.status, 201);
    const ca = await online(srv, a);
    assert.equal((await getMedia(srv, b.token, up.json.media_id)).status, 404);
    ca.send({ type: 'send', id: 'p1', group_id: g.group_id, body: 'look', media: { media_id: up.json.media_id } });
    await ca.next({ type: 'sent', id: 'p1' });
    const cc = await online(srv, c);
    const m = cc.initial.find((e) => e.type === 'msg');
    assert.equal(m.media.media_id, up.json.media_id);
    assert.equal(m.media.mime, 'image/jpeg');
    assert.equal((await getMedia(srv, b.token, up.json.media_id)).status, 200);
    assert.equal((await getMedia(srv, x.token, up.json.media_id)).status, 404);
    await closeAll(ca, cc);
  });

  test('the body is stored once; envelopes and shared bodies are gone once every device acked', { skip: CLUSTER_NODES ? 'gauges are per node in a cluster (PROTOCOL.md 12)' : false }, async () => {
    const own = await startServer({ args: [...FAST_LIMITS, ...MERGE] }); // its metrics are this test's alone
    try {
      const [a, ...others] = await Promise.all([0, 1, 2, 3, 4].map(() => newUser(own, 'sb')));
      const g = await makeGroup(own, a, others);
      const clients = await Promise.all(others.map((o) => online(own, o)));
      const ca = await online(own, a);
      assert.equal(await metric(own, 'tern_shared_bodies'), 0);
      ca.send({ type: 'send', id: 'big', group_id: g.group_id, body: 'b'.repeat(60000) });
      await ca.next({ type: 'sent', id: 'big' });
      assert.equal(await metric(own, 'tern_shared_bodies'), 1);
      for (const cl of clients) {
        const m = await cl.next('msg');
        assert.equal(m.body.length, 60000);
        cl.ack(m.seq);
      }
      await waitFor(async () => (await metric(own, 'tern_shared_bodies')) === 0, { message: 'shared body released' });
      // the sender's delivered receipts (merged over the window) come before its ack covers them
      const by = new Set();
      await waitFor(async () => {
        for (const r of ca.take((f) => f.type === 'receipt' && f.status === 'delivered')) for (const u of r.by) by.add(u);
        return by.size === others.length;
      }, { message: 'delivered by every member' });
      for (const cl of [ca, ...clients]) { cl.ack(1000); await cl.roundTrip(); }
      await waitFor(async () => (await metric(own, 'tern_inbox_envelopes')) === 0, { message: 'inboxes empty' });
      assert.equal(await metric(own, 'tern_group_messages_total'), 1);
      assert.equal(await metric(own, 'tern_fanout_envelopes_total{kind="group"}'), 4);
      assert.equal(await metric(own, 'tern_groups'), 1);
      await closeAll(ca, clients);
    } finally { await own.close(); }
  });
});

describe('groups: durability and limits', () => {
  test('kill -9 right after sent: every member device gets the message after the restart', async () => {
    const srv = await startServer({ args: [...FAST_LIMITS, ...MERGE] });
    try {
      const [a, b, c] = await Promise.all([newUser(srv, 'kd'), newUser(srv, 'kd'), newUser(srv, 'kd')]);
      const b2 = await newDevice(srv, b, 'two');
      const g = await makeGroup(srv, a, [b, c]);
      const ca = await online(srv, a);
      const ids = [];
      for (let i = 0; i < 20; i++) ca.send({ type: 'send', id: `k${i}`, group_id: g.group_id, body: `n${i}` });
      for (let i = 0; i < 20; i++) ids.push((await ca.next({ type: 'sent', id: `k${i}` })).msg_id);
      await srv.kill9();
      await srv.restart();
      for (const x of [b, b2, c]) {
        const cl = await online(srv, x);
        const got = cl.initial.filter((e) => e.type === 'msg').map((e) => e.msg_id);
        assert.deepEqual(got, ids);
        await cl.close();
      }
      assert.equal((await api.get(srv, a.token, g.group_id)).status, 200); // the group itself survived
    } finally { await srv.close(); }
  });

  /**
   * Group messages acked by every member inside receipts.merge_window, then kill -9 and a
   * restart (with restartArgs): every member's delivered receipts still reach the sender, once.
   */
  async function receiptsSurviveKill9({ members, args = [], restartArgs = [] }) {
    // a long window, so that the kill surely falls inside it
    const srv = await startServer({ args: [...FAST_LIMITS, '--receipts-merge-window', '20s', ...args] });
    try {
      const [a, ...others] = await Promise.all(Array.from({ length: members + 1 }, () => newUser(srv, 'kr')));
      const g = await makeGroup(srv, a, others);
      const [ca, ...cm] = await Promise.all([a, ...others].map((x) => online(srv, x)));
      const ids = [];
      for (let i = 0; i < 3; i++) {
        ca.send({ type: 'send', id: `r${i}`, group_id: g.group_id, body: `n${i}` });
        ids.push((await ca.next({ type: 'sent', id: `r${i}` })).msg_id);
      }
      await ca.close();
      for (const cl of cm) {
        let last = 0;
        for (let i = 0; i < 3; i++) last = (await cl.next('msg')).seq;
        cl.ack(last);
        await cl.roundTrip();
      }
      await sleep(500); // the acks' store step (they answer nothing)
      await srv.kill9();
      await srv.restart({ extraArgs: restartArgs });
      const ca2 = await online(srv, a);
      const by = new Map(); // member → the ids delivered
      tallyDelivered(by, ca2.initial, g.group_id);
      await waitFor(async () => {
        tallyDelivered(by, ca2.take(() => true), g.group_id);
        return others.every((u) => (by.get(u.user) ?? []).length === ids.length);
      }, { timeoutMs: 10000, message: 'delivered receipts of every member after the restart' })
        .catch((e) => { throw new Error(`${e.message}: ${JSON.stringify([...by])}\n${srv.stderr().slice(-3000)}`); });
      for (const u of others) assert.deepEqual([...by.get(u.user)].sort(), [...ids].sort());
      assert.deepEqual(await ca2.quiet((f) => f.type === 'receipt', 500), []); // and no second copy
      // the queues of parts are acked: nothing is left to send again at the next start (the
      // gauge is the whole cluster's stream in cluster mode, other files' envelopes included)
      ca2.ack(1000);
      await ca2.roundTrip();
      if (!CLUSTER_NODES) await waitFor(async () => (await metric(srv, 'tern_inbox_envelopes')) === 0, { message: 'the parts queues acked' });
      await closeAll(ca2, ...cm);
    } finally { await srv.close(); }
  }

  test('kill -9 inside receipts.merge_window: the group delivered receipts still reach the sender, once', () =>
    receiptsSurviveKill9({ members: 2 }));

  // The members' connections spread over the two workers (SO_REUSEPORT): each worker queues
  // the parts of its own acks, and the restart with one worker must send worker 1's too. With
  // 8 members, all of them on worker 0 (nothing of the kind tested) has odds of 1 in 256.
  test('kill -9, then a restart with fewer workers: the parts of the worker it no longer has are sent too', () =>
    receiptsSurviveKill9({ members: 8, args: ['--workers', '2'], restartArgs: ['--workers', '1'] }));

  test('limits.fanout_rate counts recipient devices', async () => {
    const srv = await startServer({ args: ['--limits-fanout-rate', '1/s', '--limits-fanout-burst', '5', ...MERGE] });
    try {
      const [a, ...others] = await Promise.all([0, 1, 2, 3].map(() => newUser(srv, 'fr')));
      const g = await makeGroup(srv, a, others);
      const ca = await online(srv, a);
      ca.send({ type: 'send', id: 'f1', group_id: g.group_id, body: '3 devices' });
      assert.equal((await ca.next({ type: 'sent', id: 'f1' })).recipients, 3);
      ca.send({ type: 'send', id: 'f2', group_id: g.group_id, body: '3 more: over 5' });
      const e = await ca.next({ id: 'f2' });
      assert.equal(e.type, 'error');
      assert.equal(e.code, 'rate_limited');
      await ca.close();
    } finally { await srv.close(); }
  });
});
