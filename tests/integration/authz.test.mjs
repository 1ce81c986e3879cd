// The authorization matrix (issue 14): every HTTP endpoint and every WebSocket frame type, tried
// with no token, a malformed token, a revoked token, and another user's token naming the
// victim's ids (media, msg_ids, devices, groups, keys). Each case must get the documented
// refusal (PROTOCOL.md 1–15, docs/protocol.md), must change nothing of the victim's, and no
// answer may carry anything of the victim's (token, device ids, group name, media bytes...).
//
// The tables below are the list. Two checks keep them complete: every "/v1/..." route literal in
// src/core (where the routes are matched: api.c and the modules it hands paths to) must be
// covered by an ENDPOINTS entry, and every endpoint PROTOCOL.md names must be in ENDPOINTS (when
// the contract file is there: ../shared/PROTOCOL.md next to the repository, or
// $TERN_PROTOCOL). The frame types are compared with proto/frame.h's enum.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { startServer, FAST_LIMITS, REPO_ROOT, sleep } from './lib/server.mjs';
import { newUser, newDevice, request, logout, PASSWORD } from './lib/api.mjs';
import { connect, online, closeAll } from './lib/client.mjs';
import { upload, getMedia, makePng, httpBytes } from './lib/media.mjs';

const b64 = (buf) => buf.toString('base64');
const pubKey = () => b64(Buffer.concat([Buffer.from([5]), crypto.randomBytes(32)]));
const keysBody = () => ({
  identity_key: pubKey(),
  registration_id: 1 + crypto.randomInt(16380),
  signed_prekey: { key_id: 1, public_key: pubKey(), signature: b64(crypto.randomBytes(64)) },
  one_time_prekeys: [{ key_id: 1, public_key: pubKey() }, { key_id: 2, public_key: pubKey() }],
});

// ---------------------------------------------------------------------------------------------
// The tables

/**
 * Every HTTP endpoint: method, path template ({x} filled from the fixture by fill()), whether it
 * takes a Bearer token, a body for the tries, and `foreign`: mallory's token with the victim's
 * ids, the documented answer ([status, code] or a status alone), or null when the endpoint
 * names nothing of anyone else's (what it shows is then checked for leaks only). `unauth`: the
 * answer without a valid token when it is not 401 unauthorized.
 */
// docs/protocol.md ("Fetch"): on the media fetch paths alone a missing or bad token is 404,
// like an id the caller may not read, so that nothing about a media id is learnt without a grant
const MEDIA_UNAUTH = [404, 'not_found'];

const ENDPOINTS = [
  { m: 'GET', p: '/healthz', auth: false },
  { m: 'GET', p: '/metrics', auth: false }, // metrics.allow, not a token (abuse.test.mjs)
  { m: 'POST', p: '/v1/register', auth: false },
  { m: 'POST', p: '/v1/login', auth: false },
  { m: 'GET', p: '/v1/push/vapid', auth: false },
  { m: 'GET', p: '/v1/ws', auth: false }, // the WebSocket: its frames are FRAMES below
  { m: 'POST', p: '/v1/logout', auth: true, foreign: null },
  { m: 'GET', p: '/v1/me', auth: true, foreign: null },
  { m: 'PATCH', p: '/v1/me', auth: true, body: { display_name: 'x' },
    foreign: { body: (f) => ({ avatar: f.avatar }), want: [400, 'bad_request'] } },
  { m: 'DELETE', p: '/v1/me', auth: true, body: { password: PASSWORD },
    foreign: { body: () => ({ password: 'alice has another password' }), want: [401, 'bad_credentials'] } },
  { m: 'POST', p: '/v1/me/password', auth: true, body: { old: PASSWORD, new: 'another long password' },
    foreign: { body: () => ({ old: 'alice has another password', new: 'another long password' }), want: [401, 'bad_credentials'] } },
  { m: 'DELETE', p: '/v1/devices/{device}', auth: true, foreign: { want: [404, 'not_found'] } },
  { m: 'GET', p: '/v1/users/{user}', auth: true, foreign: null },
  { m: 'POST', p: '/v1/media', auth: true, foreign: null },
  { m: 'GET', p: '/v1/media/{media}', auth: true, unauth: MEDIA_UNAUTH, foreign: { want: [404, 'not_found'] } },
  { m: 'GET', p: '/v1/media/{media}/thumb', auth: true, unauth: MEDIA_UNAUTH, foreign: { want: [404, 'not_found'] } },
  { m: 'GET', p: '/v1/media/{blob}', auth: true, unauth: MEDIA_UNAUTH, foreign: { want: [404, 'not_found'] } },
  { m: 'GET', p: '/v1/media/{avatar}', auth: true, unauth: MEDIA_UNAUTH, foreign: { want: 200 } }, // an avatar is for every signed-in user (§15)
  { m: 'PUT', p: '/v1/push', auth: true, body: { provider: 'fcm', token: 'x' }, foreign: null },
  { m: 'DELETE', p: '/v1/push', auth: true, foreign: null },
  { m: 'POST', p: '/v1/groups', auth: true, body: { name: 'g', members: [] }, foreign: null },
  { m: 'GET', p: '/v1/groups', auth: true, foreign: null },
  { m: 'GET', p: '/v1/groups/{group}', auth: true, foreign: { want: [404, 'not_found'] } },
  { m: 'PATCH', p: '/v1/groups/{group}', auth: true, body: { name: 'taken over' }, foreign: { want: [404, 'not_found'] } },
  { m: 'POST', p: '/v1/groups/{group}/members', auth: true, body: (f) => ({ users: [f.mallory.user] }), foreign: { want: [404, 'not_found'] } },
  { m: 'DELETE', p: '/v1/groups/{group}/members/{peer}', auth: true, foreign: { want: [404, 'not_found'] } },
  { m: 'PUT', p: '/v1/groups/{group}/admins/{me}', auth: true, foreign: { want: [404, 'not_found'] } },
  { m: 'DELETE', p: '/v1/groups/{group}/admins/{user}', auth: true, foreign: { want: [404, 'not_found'] } },
  { m: 'PUT', p: '/v1/keys', auth: true, body: () => keysBody(), foreign: null },
  { m: 'GET', p: '/v1/keys', auth: true, foreign: null },
  { m: 'GET', p: '/v1/keys/{user}', auth: true, foreign: { want: 200 } }, // public keys are for everyone (§11)
  { m: 'GET', p: '/v1/keys/{user}/{keydevice}', auth: true, foreign: { want: 200 } },
  { m: 'GET', p: '/v1/keys/{peer}/{keydevice}', auth: true, foreign: { want: [404, 'not_found'] } }, // alice's device under carol's name
  { m: 'GET', p: '/v1/blocks', auth: true, foreign: null },
  { m: 'PUT', p: '/v1/blocks/{user}', auth: true, foreign: null },
  { m: 'DELETE', p: '/v1/blocks/{blocked}', auth: true, foreign: { want: 204 } }, // mallory's own list: alice's stays
  { m: 'PUT', p: '/v1/blocks/{ghost}', auth: true, foreign: { want: [404, 'not_found'] } },
  { m: 'GET', p: '/v1/privacy', auth: true, foreign: null },
  { m: 'PATCH', p: '/v1/privacy', auth: true, body: { last_seen: 'everyone' }, foreign: null },
  { m: 'GET', p: '/v1/mutes', auth: true, foreign: null },
  { m: 'PUT', p: '/v1/mutes/{peer}', auth: true, body: { until: null }, foreign: null },
  { m: 'DELETE', p: '/v1/mutes/{peer}', auth: true, foreign: { want: 204 } }, // mallory's own list: alice's stays
  { m: 'PUT', p: '/v1/mutes/{ghost}', auth: true, body: { until: null }, foreign: { want: [404, 'not_found'] } },
  { m: 'PUT', p: '/v1/mutes/group/{group}', auth: true, body: { until: null }, foreign: { want: [404, 'not_found'] } },
  { m: 'DELETE', p: '/v1/mutes/group/{group}', auth: true, foreign: { want: 204 } },
];

/**
 * Every client → server frame type (PROTOCOL.md 3–15), with a frame for the unauthenticated tries
 * and, for mallory, frames naming the victim's ids with the documented answer (an error code,
 * or null: no answer at all) — and, in every case, nothing reaching alice or carol.
 */
const FRAMES = {
  auth: { frame: () => ({ type: 'auth', token: 'x' }), foreign: [] }, // tried below with every bad token
  send: {
    frame: () => ({ type: 'send', id: 'z1', to: 'nobody', body: 'x' }),
    foreign: [
      [(f) => ({ type: 'send', id: 'f1', to: f.carol.user, body: 'x', media: { media_id: f.media } }), 'no_such_media'],
      [(f) => ({ type: 'send', id: 'f2', to: f.carol.user, body: 'x', media: { media_id: f.blob } }), 'no_such_media'],
      [(f) => ({ type: 'send', id: 'f3', group_id: f.group, body: 'in your group' }), 'no_such_group'],
      [(f) => ({ type: 'send', id: 'f4', to: f.carol.user, delete: { of: f.msgId } }), 'not_found'],
      [(f) => ({ type: 'send', id: 'f5', to: f.carol.user, body: 'edited', edit: { of: f.msgId } }), 'not_found'],
      [(f) => ({ type: 'send', id: 'f6', to: f.alice.user, delete: { of: f.msgId } }), 'not_found'],
      [(f) => ({ type: 'send', id: 'f7', to: f.carol.user, body: 'edited', edit: { of: f.carolToMallory } }), 'forbidden'],
      [(f) => ({ type: 'send', id: 'f8', to: f.carol.user, delete: { of: f.carolToMallory } }), 'forbidden'],
      [(f) => ({ type: 'send', id: 'f9', to: f.alice.user,
        e2e: [{ device_id: f.alice.device_id, type: 'message', body: b64(crypto.randomBytes(32)) }], media_ref: f.blob }), 'no_such_media'],
      // alice's device passed off as carol's: the list must match carol's devices exactly
      [(f) => ({ type: 'send', id: 'f10', to: f.carol.user,
        e2e: [{ device_id: f.alice.device_id, type: 'message', body: b64(crypto.randomBytes(32)) }] }), 'devices_changed'],
    ],
  },
  ack: { frame: () => ({ type: 'ack', seq: 1 }), foreign: [[() => ({ type: 'ack', seq: 1e9 }), null]] },
  read: {
    frame: () => ({ type: 'read', peer: 'nobody', msg_ids: ['x'] }),
    foreign: [
      [(f) => ({ type: 'read', peer: f.alice.user, msg_ids: [f.msgId] }), 'bad_request'],
      [(f) => ({ type: 'read', peer: f.alice.user, group_id: f.group, msg_ids: [f.groupMsgId] }), 'no_such_group'],
    ],
  },
  watch: { frame: () => ({ type: 'watch', users: ['nobody'] }), foreign: [] },
  unwatch: { frame: () => ({ type: 'unwatch', users: ['nobody'] }), foreign: [] },
  typing: {
    frame: () => ({ type: 'typing', to: 'nobody', state: 'composing' }),
    foreign: [[(f) => ({ type: 'typing', group_id: f.group, state: 'composing' }), 'no_such_group']],
  },
  ping: { frame: () => ({ type: 'ping' }), foreign: [] },
  decrypt_error: {
    frame: () => ({ type: 'decrypt_error', peer: 'nobody', device_id: 'x', msg_id: 'x' }),
    foreign: [
      // alice's device named under carol's name
      [(f) => ({ type: 'decrypt_error', peer: f.carol.user, device_id: f.alice.device_id, msg_id: f.msgId }), 'not_found'],
    ],
  },
};

const BAD_TOKENS = {
  none: undefined,
  malformed: ['not-a-token', 'x'.repeat(300), '%00', 'Bearer'],
  revoked: 'revoked', // filled from the fixture
};

// ---------------------------------------------------------------------------------------------

function fill(p, f) {
  return p.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent({
    device: f.alice2.device_id, keydevice: f.alice.device_id, user: f.alice.user, peer: f.carol.user, me: f.mallory.user, media: f.media,
    blob: f.blob, avatar: f.avatar, group: f.group, blocked: f.blockedName, ghost: 'ghost_nobody_here',
  }[k] ?? assert.fail(`no fixture value for {${k}}`)));
}

function bodyOf(e, f, which = e.body) {
  return typeof which === 'function' ? which(f) : which;
}

/** The victim's strings that no answer to mallory (or to nobody) may contain. */
function secrets(f) {
  return [f.alice.token, f.alice2.token, f.alice2.device_id, f.groupName, f.blockedName, f.mediaSha, f.secretBody];
}

function assertNoLeak(text, f, what) {
  for (const s of secrets(f)) assert.ok(!text.includes(s), `${what}: the answer carries alice's ${JSON.stringify(s.slice(0, 20))}: ${text.slice(0, 300)}`);
}

function assertAnswer(r, want, what) {
  const [status, code] = Array.isArray(want) ? want : [want];
  assert.equal(r.status, status, `${what} → ${r.status} ${r.text.slice(0, 200)}`);
  if (code) assert.equal(r.body?.error?.code, code, `${what} → ${r.text.slice(0, 200)}`);
}

/** An HTTP request with a raw Authorization header (or none). */
function call(srv, e, f, auth, body) {
  const headers = auth === undefined ? {} : { authorization: auth };
  const b = body === undefined ? bodyOf(e, f) : body;
  return request(srv, e.m, fill(e.p, f), { body: b, headers });
}

/** What alice (both devices) and carol can see about themselves, to compare before and after. */
async function victimState(srv, f) {
  const g = async (token, p) => (await request(srv, 'GET', p, { token })).text;
  return {
    me: (await request(srv, 'GET', '/v1/me', { token: f.alice.token })).body?.devices?.map((d) => d.device_id).sort(),
    me2: (await request(srv, 'GET', '/v1/me', { token: f.alice2.token })).status,
    group: await g(f.alice.token, `/v1/groups/${f.group}`),
    blocks: await g(f.alice.token, '/v1/blocks'),
    mutes: await g(f.alice.token, '/v1/mutes'),
    privacy: await g(f.alice.token, '/v1/privacy'),
    keys: (await request(srv, 'GET', '/v1/keys', { token: f.alice.token })).body?.identity_key,
    // thumbnails: a full fetch by carol would count as her download and end the media's life (§7)
    media: (await getMedia(srv, f.alice.token, f.media, { thumb: true })).status,
    carolMedia: (await getMedia(srv, f.carol.token, f.media, { thumb: true })).status,
  };
}

describe('authorization matrix', () => {
  let srv;
  const f = {};
  before(async () => {
    srv = await startServer({ args: [...FAST_LIMITS, '--limits-key-fetch-rate', '100000/1m'] });
    f.alice = await newUser(srv, 'az_alice');
    f.alice2 = await newDevice(srv, f.alice, 'second');
    f.carol = await newUser(srv, 'az_carol');
    f.mallory = await newUser(srv, 'az_mallory');
    const gone = await newDevice(srv, f.mallory, 'gone');
    assert.equal((await logout(srv, gone.token)).status, 204);
    BAD_TOKENS.revoked = gone.token;
    const blocked = await newUser(srv, 'az_blocked');
    f.blockedName = blocked.user;
    for (const who of [f.alice, f.carol, f.mallory]) {
      assert.equal((await request(srv, 'PUT', '/v1/keys', { token: who.token, body: keysBody() })).status, 204);
    }
    // alice's things: a group with carol, a photo sent to carol, an unsent blob, an avatar,
    // a block, a mute, privacy settings, a message to carol and one in the group
    f.groupName = `secret-group-${crypto.randomBytes(4).toString('hex')}`;
    const g = await request(srv, 'POST', '/v1/groups', { token: f.alice.token, body: { name: f.groupName, members: [f.carol.user] } });
    assert.equal(g.status, 201, g.text);
    f.group = g.body.group_id;
    const png = makePng(40, 30);
    const up = await upload(srv, f.alice.token, png, 'image/png');
    assert.equal(up.status, 201, up.body.toString());
    f.media = up.json.media_id;
    f.mediaSha = up.json.sha256;
    const blob = await upload(srv, f.alice.token, crypto.randomBytes(500), 'application/octet-stream');
    assert.equal(blob.status, 201);
    f.blob = blob.json.media_id;
    const av = await httpBytes(srv, 'POST', '/v1/media?purpose=avatar', { token: f.alice.token, body: makePng(20, 20), headers: { 'content-type': 'image/png' } });
    assert.equal(av.status, 201, av.body.toString());
    f.avatar = av.json.media_id;
    assert.equal((await request(srv, 'PATCH', '/v1/me', { token: f.alice.token, body: { avatar: f.avatar } })).status, 200);
    assert.equal((await request(srv, 'PUT', `/v1/blocks/${f.blockedName}`, { token: f.alice.token })).status, 204);
    assert.equal((await request(srv, 'PUT', `/v1/mutes/${f.carol.user}`, { token: f.alice.token, body: { until: null } })).status, 204);
    assert.equal((await request(srv, 'PUT', `/v1/mutes/group/${f.group}`, { token: f.alice.token, body: { until: null } })).status, 204);
    assert.equal((await request(srv, 'PATCH', '/v1/privacy', { token: f.alice.token, body: { read_receipts: false } })).status, 204);
    f.secretBody = `for carol only ${crypto.randomBytes(4).toString('hex')}`;
    const ca = await online(srv, f.alice);
    ca.send({ type: 'send', id: 'a1', to: f.carol.user, body: f.secretBody, media: { media_id: f.media } });
    f.msgId = (await ca.next({ type: 'sent', id: 'a1' })).msg_id;
    ca.send({ type: 'send', id: 'a2', group_id: f.group, body: f.secretBody });
    f.groupMsgId = (await ca.next({ type: 'sent', id: 'a2' })).msg_id;
    await ca.close();
    // carol → mallory, so that mallory has a real conversation with a message not his
    const cc = await online(srv, f.carol);
    cc.send({ type: 'send', id: 'c1', to: f.mallory.user, body: 'hi mallory' });
    f.carolToMallory = (await cc.next({ type: 'sent', id: 'c1' })).msg_id;
    await cc.close();
  });
  after(() => srv?.close());

  test('the endpoint table covers every route in src/core', () => {
    const dir = path.join(REPO_ROOT, 'src', 'core');
    const literals = new Set();
    for (const file of readdirSync(dir).filter((x) => x.endsWith('.c'))) {
      for (const m of readFileSync(path.join(dir, file), 'utf8').matchAll(/"(\/v1\/[A-Za-z0-9_/-]*|\/healthz|\/metrics)"/g)) literals.add(m[1]);
    }
    assert.ok(literals.size >= 10, `only ${literals.size} route literals found in src/core: the scan is broken`);
    const templates = ENDPOINTS.map((e) => e.p.replace(/\{\w+\}/g, 'X'));
    const missing = [...literals].filter((lit) => !templates.some((t) => t === lit || t.startsWith(lit)));
    assert.deepEqual(missing, [], 'routes in src/core with no ENDPOINTS entry (add them to the matrix)');
  });

  test('the endpoint table covers every endpoint PROTOCOL.md names', (t) => {
    const file = process.env.TERN_PROTOCOL || path.join(REPO_ROOT, '..', 'shared', 'PROTOCOL.md');
    if (!existsSync(file)) { t.skip(`${file} not found (set TERN_PROTOCOL)`); return; }
    const text = readFileSync(file, 'utf8');
    const named = new Set();
    for (const m of text.matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s[?]*)/g)) named.add(`${m[1]} ${m[2].replace(/\{\w+\}/g, '{}')}`);
    // "`DELETE` the same" (mutes, §15)
    if (/`DELETE` the same/.test(text)) { named.add('DELETE /v1/mutes/{}'); named.add('DELETE /v1/mutes/group/{}'); }
    // "(watch, presence, `GET /v1/users`)" (§14) names GET /v1/users/{name}, not a list
    if (named.delete('GET /v1/users')) named.add('GET /v1/users/{}');
    assert.ok(named.size >= 30, `only ${named.size} endpoints parsed from ${file}: the parse is broken`);
    const have = new Set(ENDPOINTS.map((e) => `${e.m} ${e.p.replace(/\{\w+\}/g, '{}')}`));
    const missing = [...named].filter((x) => !have.has(x));
    assert.deepEqual(missing, [], 'endpoints of PROTOCOL.md with no ENDPOINTS entry');
  });

  test('the frame table covers every frame type of proto/frame.h', () => {
    const h = readFileSync(path.join(REPO_ROOT, 'src', 'proto', 'frame.h'), 'utf8');
    const types = [...h.matchAll(/TERN_FRAME_([A-Z_]+)\s*[,=]/g)].map((m) => m[1].toLowerCase());
    assert.ok(types.length >= 9, `frame.h: ${types}`);
    assert.deepEqual(types.filter((x) => !(x in FRAMES)).sort(), [], 'frame types with no FRAMES entry');
  });

  test('HTTP: no token, malformed tokens and a revoked token get 401 unauthorized (or the documented 404) on every Bearer endpoint', async () => {
    const before = await victimState(srv, f);
    const auths = [undefined, ...BAD_TOKENS.malformed.map((x) => `Bearer ${x}`), 'Basic YWxpY2U6cHc=', `Bearer ${BAD_TOKENS.revoked}`,
      `bearer  ${BAD_TOKENS.revoked}`];
    const fails = [];
    for (const e of ENDPOINTS.filter((x) => x.auth)) {
      await Promise.all(auths.map(async (auth) => {
        const r = await call(srv, e, f, auth);
        const [status, code] = e.unauth || [401, 'unauthorized'];
        if (r.status !== status || r.body?.error?.code !== code) fails.push(`${e.m} ${e.p} with ${auth ?? 'no token'} → ${r.status} ${r.text.slice(0, 120)}`);
        assertNoLeak(r.text, f, `${e.m} ${e.p}`);
      }));
    }
    assert.deepEqual(fails, []);
    assert.deepEqual(await victimState(srv, f), before, 'an unauthenticated request changed something of alice\'s');
  });

  test('HTTP: another user\'s token with the victim\'s ids gets the documented refusal and changes nothing', async () => {
    const before = await victimState(srv, f);
    const fails = [];
    for (const e of ENDPOINTS.filter((x) => x.auth && x.foreign)) {
      const body = e.foreign.body ? e.foreign.body(f) : bodyOf(e, f);
      const r = await call(srv, e, f, `Bearer ${f.mallory.token}`, body);
      const [status, code] = Array.isArray(e.foreign.want) ? e.foreign.want : [e.foreign.want];
      if (r.status !== status || (code && r.body?.error?.code !== code)) fails.push(`${e.m} ${e.p} as mallory → ${r.status} ${r.text.slice(0, 160)}`);
      assertNoLeak(r.text, f, `${e.m} ${e.p} as mallory`);
    }
    assert.deepEqual(fails, []);
    // the endpoints that name nothing of alice's show mallory only mallory's
    for (const e of ENDPOINTS.filter((x) => x.auth && x.foreign === null && x.m === 'GET')) {
      const r = await call(srv, e, f, `Bearer ${f.mallory.token}`);
      assert.ok(r.status < 400, `${e.m} ${e.p} as mallory → ${r.status} ${r.text}`);
      assertNoLeak(r.text, f, `${e.m} ${e.p} as mallory`);
      if (e.p === '/v1/me') assert.equal(r.body.user, f.mallory.user);
      if (e.p === '/v1/groups') assert.ok(!r.text.includes(f.group), 'alice\'s group is in mallory\'s list');
    }
    // the thumbnail and the media bytes: alice and carol still have them, mallory gets 404
    const bytes = await getMedia(srv, f.mallory.token, f.media);
    assert.equal(bytes.status, 404);
    assert.deepEqual(await victimState(srv, f), before, 'mallory changed something of alice\'s');
    // and alice's second device, which mallory tried to delete, still works
    assert.equal((await request(srv, 'GET', '/v1/me', { token: f.alice2.token })).status, 200);
  });

  test('HTTP: a member who is not an admin gets 403 forbidden for the admin-only group endpoints, and the group is unchanged', async () => {
    const before = await victimState(srv, f);
    const tries = [
      ['PATCH', `/v1/groups/${f.group}`, { name: 'renamed by carol' }],
      ['POST', `/v1/groups/${f.group}/members`, { users: [f.mallory.user] }],
      ['DELETE', `/v1/groups/${f.group}/members/${f.alice.user}`],
      ['PUT', `/v1/groups/${f.group}/admins/${f.carol.user}`],
      ['DELETE', `/v1/groups/${f.group}/admins/${f.alice.user}`],
    ];
    for (const [m, p, body] of tries) assertAnswer(await request(srv, m, p, { token: f.carol.token, body }), [403, 'forbidden'], `${m} ${p} as carol`);
    assert.deepEqual(await victimState(srv, f), before);
  });

  test('WebSocket: every frame type before auth, and auth with a malformed or revoked token, is unauthorized and closed 4001', async () => {
    const tries = [];
    for (const [type, t] of Object.entries(FRAMES)) if (type !== 'auth') tries.push([`${type} before auth`, t.frame()]);
    for (const tok of [...BAD_TOKENS.malformed, '', BAD_TOKENS.revoked]) tries.push([`auth with ${tok.slice(0, 12) || 'an empty token'}`, { type: 'auth', token: tok }]);
    tries.push(['auth without a token', { type: 'auth' }]);
    tries.push(['auth with a number', { type: 'auth', token: 12 }]);
    await Promise.all(tries.map(async ([what, frame]) => {
      const c = await connect(srv, { name: what });
      c.send(frame);
      const e = await c.next((x) => x.type !== 'pong', 3000).catch((err) => ({ type: 'none', err: err.message }));
      const info = await c.closed;
      assert.equal(e.type, 'error', `${what}: ${JSON.stringify(e)}`);
      assert.equal(e.code, 'unauthorized', `${what}: ${JSON.stringify(e)}`);
      assert.equal(info.code, 4001, `${what}: closed ${info.code}`);
      assert.equal(c.frames.length, 0, `${what}: more frames: ${JSON.stringify(c.frames)}`);
    }));
    // a token revoked while its socket is open closes it 4002, and it cannot come back
    const d = await newDevice(srv, f.mallory, 'short');
    const c = await online(srv, d);
    assert.equal((await logout(srv, d.token)).status, 204);
    assert.equal((await c.closed).code, 4002);
    const again = await connect(srv);
    again.send({ type: 'auth', token: d.token });
    assert.equal((await again.next('error')).code, 'unauthorized');
    assert.equal((await again.closed).code, 4001);
  });

  test('WebSocket: mallory\'s frames naming the victim\'s ids get the documented refusal, and nothing reaches the victims', async () => {
    const [ca, ca2, cc] = await Promise.all([online(srv, f.alice), online(srv, f.alice2), online(srv, f.carol)]);
    const cm = await online(srv, f.mallory);
    const fails = [];
    for (const [type, t] of Object.entries(FRAMES)) {
      for (const [make, code] of t.foreign) {
        const frame = make(f);
        cm.send(frame);
        if (code === null) {
          const got = await cm.quiet((x) => x.type === 'error', 200);
          if (got.length) fails.push(`${type} ${JSON.stringify(frame).slice(0, 100)} → ${JSON.stringify(got[0])}`);
          continue;
        }
        const e = await cm.next((x) => x.type === 'error' || x.type === 'sent', 3000).catch((err) => ({ type: 'none', err: err.message }));
        if (e.type !== 'error' || e.code !== code) fails.push(`${type} ${JSON.stringify(frame).slice(0, 120)} → ${JSON.stringify(e).slice(0, 200)} (want ${code})`);
        assertNoLeak(JSON.stringify(e), f, `${type} as mallory`);
      }
    }
    // still the same connection, in sync
    await cm.roundTrip();
    assert.deepEqual(fails, []);
    // nothing of it reached alice's devices or carol: no message, receipt, typing or decrypt_error
    for (const [c, who] of [[ca, 'alice'], [ca2, 'alice2'], [cc, 'carol']]) {
      // mallory's ack (seq 1e9, clamped) delivers carol's own message to him: that receipt is his to make
      const mine = (x) => x.type === 'receipt' && x.status === 'delivered' && x.msg_ids.every((id) => id === f.carolToMallory);
      const got = await c.quiet((x) => ['msg', 'receipt', 'typing', 'decrypt_error', 'group'].includes(x.type) && !mine(x), 300);
      assert.deepEqual(got, [], `${who} got frames from mallory's tries`);
    }
    await closeAll(ca, ca2, cc, cm);
  });
});
