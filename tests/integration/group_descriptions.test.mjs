// Group descriptions (PROTOCOL.md 10, used by issue 16's group info panel): set at create,
// changed alone by PATCH, carried by the created and renamed events, 0-512 bytes, admins only,
// kept across a restart.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, FAST_LIMITS } from './lib/server.mjs';
import { newUser, request } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

const create = (srv, t, body) => request(srv, 'POST', '/v1/groups', { token: t, body });
const patch = (srv, t, g, body) => request(srv, 'PATCH', `/v1/groups/${g}`, { token: t, body });
const get = (srv, t, g) => request(srv, 'GET', `/v1/groups/${g}`, { token: t });

describe('group descriptions', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(() => srv?.close());

  test('create, PATCH the description alone, the events, the limits, who may', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'da'), newUser(srv, 'db'), newUser(srv, 'dc')]);
    const cb = await online(srv, b);
    const g = (await create(srv, a.token, { name: 'Trip', description: 'to the sea 🌊', members: [b.user] })).body;
    assert.equal(g.description, 'to the sea 🌊');
    const created = await cb.next({ type: 'group', event: 'created' });
    assert.deepEqual([created.name, created.description], ['Trip', 'to the sea 🌊']);
    const noDesc = (await create(srv, a.token, { name: 'Plain', members: [b.user] })).body;
    assert.equal(noDesc.description, '', 'left out: empty');
    assert.equal((await cb.next({ type: 'group', event: 'created', group_id: noDesc.group_id })).description, '');

    let r = await patch(srv, a.token, g.group_id, { description: 'to the mountains' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual([r.body.name, r.body.description], ['Trip', 'to the mountains'], 'the name stays');
    const ren = await cb.next({ type: 'group', event: 'renamed' });
    assert.deepEqual([ren.name, ren.description, ren.by], ['Trip', 'to the mountains', a.user]);
    assert.equal((await get(srv, b.token, g.group_id)).body.description, 'to the mountains');
    r = await patch(srv, a.token, g.group_id, { name: 'Trip 2' });
    assert.deepEqual([r.body.name, r.body.description], ['Trip 2', 'to the mountains'], 'the description stays');
    await cb.next({ type: 'group', event: 'renamed', name: 'Trip 2' });
    r = await patch(srv, a.token, g.group_id, { description: '' });
    assert.equal(r.body.description, '', 'cleared');
    assert.equal((await cb.next({ type: 'group', event: 'renamed', name: 'Trip 2' })).description, '');
    r = await patch(srv, a.token, g.group_id, { description: 'é'.repeat(256) });
    assert.equal(r.status, 200, '512 bytes of UTF-8');
    for (const body of [{ description: 'd'.repeat(513) }, { description: 5 }, { description: 'a\u0000b' }]) {
      r = await patch(srv, a.token, g.group_id, body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 60));
      assert.equal(r.body.error.code, 'bad_request');
    }
    assert.equal((await patch(srv, b.token, g.group_id, { description: 'mine' })).status, 403, 'a member who is not an admin');
    assert.equal((await patch(srv, c.token, g.group_id, { description: 'x' })).status, 404, 'not a member');
    assert.equal((await get(srv, a.token, g.group_id)).body.description, 'é'.repeat(256), 'refusals changed nothing');
    await closeAll(cb);
  });

  test('a description survives a restart', async () => {
    const a = await newUser(srv, 'ra');
    const g = (await create(srv, a.token, { name: 'Kept', description: 'still here' })).body;
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    assert.equal((await get(srv, a.token, g.group_id)).body.description, 'still here');
  });
});
