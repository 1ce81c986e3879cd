// Message actions (PROTOCOL.md 15): reactions, edits and deletes travel as messages with one
// extra field each; edits and deletes are checked against the msg_id (own message, this
// conversation, within the window); plaintext actions make no delivered receipt.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, FAST_LIMITS, sleep } from './lib/server.mjs';
import { newUser, request } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

async function answer(c, frame) {
  c.send(frame);
  return c.next((f) => (f.type === 'sent' || f.type === 'error') && f.id === frame.id);
}

describe('message actions', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--limits-edit-window', '2s'] }); });
  after(() => srv?.close());

  test('a reaction is relayed and makes no delivered receipt; an empty emoji removes it', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'ra'), newUser(srv, 'rb')]);
    const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
    const m = await answer(ca, { type: 'send', id: 'm1', to: b.user, body: 'hi' });
    assert.equal(m.type, 'sent');
    cb.ack((await cb.next('msg')).seq);
    await ca.next((f) => f.type === 'receipt' && f.status === 'delivered');
    const r = await answer(cb, { type: 'send', id: 'r1', to: a.user, reaction: { to: m.msg_id, emoji: '👍' } });
    assert.equal(r.type, 'sent', JSON.stringify(r));
    const got = await ca.next((f) => f.type === 'msg' && f.reaction);
    assert.deepEqual(got.reaction, { to: m.msg_id, emoji: '👍' });
    assert.equal(got.body, undefined);
    ca.ack(got.seq);
    assert.deepEqual(await cb.quiet((f) => f.type === 'receipt' && f.msg_ids.includes(r.msg_id), 400), [],
      'a reaction makes no delivered receipt');
    const rm = await answer(cb, { type: 'send', id: 'r2', to: a.user, reaction: { to: m.msg_id, emoji: '' } });
    assert.equal(rm.type, 'sent');
    assert.equal((await ca.next((f) => f.type === 'msg' && f.reaction)).reaction.emoji, '');
    await closeAll(ca, cb);
  });

  test('edit: own message within limits.edit_window; another\'s → forbidden; unknown → not_found; late → forbidden', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'ea'), newUser(srv, 'eb')]);
    const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
    const m = await answer(ca, { type: 'send', id: 'm1', to: b.user, body: 'helo' });
    await cb.next('msg');
    const e = await answer(ca, { type: 'send', id: 'e1', to: b.user, body: 'hello', edit: { of: m.msg_id } });
    assert.equal(e.type, 'sent', JSON.stringify(e));
    const got = await cb.next((f) => f.type === 'msg' && f.edit);
    assert.deepEqual([got.edit.of, got.body], [m.msg_id, 'hello']);
    assert.equal((await answer(cb, { type: 'send', id: 'e2', to: a.user, body: 'x', edit: { of: m.msg_id } })).code, 'forbidden');
    assert.equal((await answer(ca, { type: 'send', id: 'e3', to: b.user, body: 'x', edit: { of: '01a2371507fd000000dc01bb46d9e9d2ab413e33de77' } })).code, 'not_found');
    // an id of another conversation
    const c = await newUser(srv, 'ec');
    const other = await answer(ca, { type: 'send', id: 'm2', to: c.user, body: 'to c' });
    assert.equal((await answer(ca, { type: 'send', id: 'e4', to: b.user, body: 'x', edit: { of: other.msg_id } })).code, 'not_found');
    await sleep(2200);
    assert.equal((await answer(ca, { type: 'send', id: 'e5', to: b.user, body: 'late', edit: { of: m.msg_id } })).code, 'forbidden');
    await closeAll(ca, cb);
  });

  test('delete: own message (any time in the window); another\'s → forbidden; in a group an admin may delete any member\'s', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'da'), newUser(srv, 'db'), newUser(srv, 'dc')]);
    const [ca, cb, cc] = await Promise.all([online(srv, a), online(srv, b), online(srv, c)]);
    const m = await answer(ca, { type: 'send', id: 'm1', to: b.user, body: 'oops' });
    await cb.next('msg');
    assert.equal((await answer(cb, { type: 'send', id: 'd0', to: a.user, delete: { of: m.msg_id } })).code, 'forbidden');
    const d = await answer(ca, { type: 'send', id: 'd1', to: b.user, delete: { of: m.msg_id } });
    assert.equal(d.type, 'sent', JSON.stringify(d));
    assert.equal((await cb.next((f) => f.type === 'msg' && f.delete)).delete.of, m.msg_id);
    // groups: a (creator, admin), b and c members
    const g = (await request(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'Del', members: [b.user, c.user] } })).body;
    const gm = await answer(cb, { type: 'send', id: 'g1', group_id: g.group_id, body: 'by b' });
    await cc.next((f) => f.type === 'msg' && f.group_id);
    assert.equal((await answer(cc, { type: 'send', id: 'g2', group_id: g.group_id, delete: { of: gm.msg_id } })).code, 'not_found',
      'a member who is not an admin cannot delete another member\'s message');
    const ad = await answer(ca, { type: 'send', id: 'g3', group_id: g.group_id, delete: { of: gm.msg_id } });
    assert.equal(ad.type, 'sent', JSON.stringify(ad));
    assert.equal((await cc.next((f) => f.type === 'msg' && f.delete)).delete.of, gm.msg_id);
    const own = await answer(cb, { type: 'send', id: 'g4', group_id: g.group_id, body: 'mine' });
    assert.equal((await answer(cb, { type: 'send', id: 'g5', group_id: g.group_id, delete: { of: own.msg_id } })).type, 'sent');
    await closeAll(ca, cb, cc);
  });
});
