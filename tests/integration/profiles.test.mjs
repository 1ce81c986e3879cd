// Profiles (PROTOCOL.md 15): PATCH /v1/me sets a display name and an avatar uploaded with
// POST /v1/media?purpose=avatar; GET /v1/users/{name} shows them (not to someone the user
// blocked); watchers get a live {"type":"profile"} frame; an avatar is readable by any
// signed-in user while it is set, and deleted media.avatar_grace after it stops being one;
// profiles survive a restart.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, FAST_LIMITS, CLUSTER_NODES, sleep, waitFor } from './lib/server.mjs';
import { newUser, request, getUser, me } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';
import { makePng, upload, getMedia, httpBytes } from './lib/media.mjs';

/** In a cluster, waits until every node shows ok(the user's profile as `token` reads it):
 * another node learns a profile change from the feed a moment later (another user's state is
 * not read-your-writes, docs/protocol.md's cluster notes). On one node it must hold at once. */
async function onEveryNode(srv, token, user, ok, what) {
  for (const node of srv.cluster ? srv.nodes : []) {
    await waitFor(async () => ok((await getUser(node, token, user)).body ?? {}), { message: `${what} on every node` });
  }
}

const patchMe = (srv, who, body) => request(srv, 'PATCH', '/v1/me', { token: who.token, body });
const uploadAvatar = (srv, who, bytes = makePng(16, 16), mime = 'image/png') =>
  httpBytes(srv, 'POST', '/v1/media?purpose=avatar', { token: who.token, body: bytes, headers: { 'content-type': mime } });

describe('profiles', () => {
  let srv;
  before(async () => {
    srv = await startServer({ args: [...FAST_LIMITS, '--media-avatar-grace', '1s', '--media-unsent-ttl', '1s', '--media-sweep-interval', '100ms'] });
  });
  after(() => srv?.close());

  test('PATCH /v1/me sets the display name; GET /v1/me and /v1/users show it; bad input is 400', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'pa'), newUser(srv, 'pb')]);
    assert.deepEqual([(await getUser(srv, b.token, a.user)).body.display_name, (await getUser(srv, b.token, a.user)).body.avatar],
      [null, null], 'nothing set yet');
    const r = await patchMe(srv, a, { display_name: 'Alice Ä.' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.user, a.user);
    assert.equal(r.body.device_id, a.device_id);
    assert.ok(Array.isArray(r.body.devices));
    assert.equal(r.body.display_name, 'Alice Ä.');
    assert.equal(r.body.avatar, null);
    assert.equal((await me(srv, a.token)).body.display_name, 'Alice Ä.');
    await onEveryNode(srv, b.token, a.user, (u) => u.display_name === 'Alice Ä.', 'the name');
    const u = (await getUser(srv, b.token, a.user)).body;
    assert.deepEqual([u.user, u.display_name, u.avatar], [a.user, 'Alice Ä.', null]);
    for (const body of [{ display_name: 'x'.repeat(65) }, { display_name: 7 }, {}, { avatar: 12 }, { avatar: 'nosuchmediaid' }]) {
      const bad = await patchMe(srv, a, body);
      assert.equal(bad.status, 400, JSON.stringify(body));
      assert.equal(bad.body.error.code, 'bad_request');
    }
    assert.equal((await patchMe(srv, a, { display_name: 'é'.repeat(32) })).status, 200, '64 bytes of UTF-8');
    assert.equal((await patchMe(srv, a, { display_name: '' })).body.display_name, null, 'an empty name clears it');
  });

  test('an avatar: uploaded with purpose=avatar, set, readable by others, hidden from the blocked', async () => {
    const [a, b, c] = await Promise.all([newUser(srv, 'aa'), newUser(srv, 'ab'), newUser(srv, 'ac')]);
    const up = await uploadAvatar(srv, a);
    assert.equal(up.status, 201, up.body.toString());
    const id = up.json.media_id;
    assert.equal((await getMedia(srv, b.token, id)).status, 404, 'not readable before it is set');
    const plain = await upload(srv, a.token, makePng(8, 8), 'image/png');
    assert.equal((await patchMe(srv, a, { avatar: plain.json.media_id })).status, 400, 'a message upload is no avatar');
    const bav = (await uploadAvatar(srv, b)).json.media_id;
    assert.equal((await patchMe(srv, a, { avatar: bav })).status, 400, 'another user\'s avatar');
    const r = await patchMe(srv, a, { avatar: id, display_name: 'A' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.avatar, id);
    await onEveryNode(srv, b.token, a.user, (u) => u.avatar === id, 'the avatar');
    assert.equal((await getUser(srv, b.token, a.user)).body.avatar, id);
    const got = await getMedia(srv, b.token, id);
    assert.equal(got.status, 200, 'any signed-in user reads it');
    assert.equal((await getMedia(srv, b.token, id, { thumb: true })).status, 200);
    assert.equal((await getMedia(srv, c.token, id)).status, 200);
    assert.equal((await getMedia(srv, b.token, id)).status, 200, 'fetching does not use it up');
    assert.equal((await getMedia(srv, undefined, id)).status, 404, 'not without a token');
    assert.equal((await request(srv, 'PUT', `/v1/blocks/${c.user}`, { token: a.token })).status, 204);
    await onEveryNode(srv, c.token, a.user, (u) => u.display_name === null, 'the block');
    const seen = (await getUser(srv, c.token, a.user)).body;
    assert.deepEqual([seen.display_name, seen.avatar], [null, null], 'c, blocked by a, sees no profile');
    assert.equal((await getMedia(srv, c.token, id)).status, 404, 'nor the avatar');
    // validated as §7
    const bad = await uploadAvatar(srv, a, Buffer.from('not a png at all'), 'image/png');
    assert.equal(bad.status, 415);
    assert.equal((await uploadAvatar(srv, a, Buffer.from('opaque'), 'application/octet-stream')).status, 415);
    const other = await httpBytes(srv, 'POST', '/v1/media?purpose=banner', { token: a.token, body: makePng(8, 8), headers: { 'content-type': 'image/png' } });
    assert.equal(other.status, 400);
  });

  test('an avatar replaced is deleted media.avatar_grace later', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'ga'), newUser(srv, 'gb')]);
    const first = (await uploadAvatar(srv, a)).json.media_id;
    assert.equal((await patchMe(srv, a, { avatar: first })).status, 200);
    const second = (await uploadAvatar(srv, a, makePng(20, 20))).json.media_id;
    assert.equal((await patchMe(srv, a, { avatar: second })).status, 200);
    // in a cluster the other node learns the revoked avatar from the feed a moment later
    for (const node of srv.cluster ? srv.nodes : []) {
      await waitFor(async () => (await getMedia(node, b.token, first)).status === 404, { message: 'the old avatar refused on every node' });
    }
    assert.equal((await getMedia(srv, b.token, first)).status, 404, 'no longer the avatar: others cannot read it');
    assert.equal((await getMedia(srv, a.token, first)).status, 200, 'its owner still can, for the grace');
    await sleep(1600);
    assert.equal((await getMedia(srv, a.token, first)).status, 404, 'deleted after media.avatar_grace');
    assert.equal((await getMedia(srv, b.token, second)).status, 200, 'the avatar in use stays (no media.unsent_ttl)');
    assert.equal((await patchMe(srv, a, { avatar: null })).body.avatar, null);
    assert.equal((await getMedia(srv, b.token, second)).status, 404);
  });

  test('a watcher gets a profile frame on every change', async () => {
    const [a, b] = await Promise.all([newUser(srv, 'wa'), newUser(srv, 'wb')]);
    const cb = await online(srv, b);
    cb.send({ type: 'watch', users: [a.user] });
    await cb.next((f) => f.type === 'presence' && f.user === a.user);
    assert.equal((await patchMe(srv, a, { display_name: 'Watched' })).status, 200);
    const f = await cb.next((x) => x.type === 'profile');
    assert.deepEqual(f, { type: 'profile', user: a.user, display_name: 'Watched', avatar: null });
    const av = (await uploadAvatar(srv, a)).json.media_id;
    assert.equal((await patchMe(srv, a, { avatar: av })).status, 200);
    assert.deepEqual(await cb.next((x) => x.type === 'profile'), { type: 'profile', user: a.user, display_name: 'Watched', avatar: av });
    // an unchanged PATCH tells nobody
    assert.equal((await patchMe(srv, a, { display_name: 'Watched' })).status, 200);
    assert.deepEqual(await cb.quiet((x) => x.type === 'profile', 300), []);
    cb.send({ type: 'unwatch', users: [a.user] });
    await cb.roundTrip();
    assert.equal((await patchMe(srv, a, { display_name: 'Gone' })).status, 200);
    assert.deepEqual(await cb.quiet((x) => x.type === 'profile', 300), [], 'not after unwatch');
    await closeAll(cb);
  });

  test('profiles survive a restart', { skip: CLUSTER_NODES ? 'restarts one node' : false }, async () => {
    const [a, b] = await Promise.all([newUser(srv, 'sa'), newUser(srv, 'sb')]);
    const av = (await uploadAvatar(srv, a)).json.media_id;
    assert.equal((await patchMe(srv, a, { display_name: 'Kept', avatar: av })).status, 200);
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    const u = (await getUser(srv, b.token, a.user)).body;
    assert.deepEqual([u.display_name, u.avatar], ['Kept', av]);
    assert.equal((await getMedia(srv, b.token, av)).status, 200);
  });
});

describe('profiles with e2e.required', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--e2e-required'] }); });
  after(() => srv?.close());

  test('an avatar is a plaintext image even where messages must be encrypted', async () => {
    const a = await newUser(srv, 'ea');
    const plain = await upload(srv, a.token, makePng(8, 8), 'image/png');
    assert.equal(plain.status, 403, 'a message image is refused');
    assert.equal(plain.json.error.code, 'e2e_required');
    const up = await uploadAvatar(srv, a);
    assert.equal(up.status, 201, up.body.toString());
    assert.equal((await patchMe(srv, a, { avatar: up.json.media_id })).status, 200);
  });
});
