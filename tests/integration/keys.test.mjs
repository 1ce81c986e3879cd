// End-to-end encryption, the server's side (PROTOCOL.md 11), against a real ternd: the key
// directory and its refusals, one-time prekeys handed out once, the key fetch rate, encrypted
// sends with exact device lists (devices_changed, no_keys), per-device delivery, group sends,
// decrypt_error, opaque attachments, logout, e2e.required, silent sends and push, and a
// black-box check that a ciphertext leaves no trace in the data dir or the debug log.
//
// The server never decrypts anything, so the "ciphertexts" here are random base64 strings: the
// server must relay each one to its device alone, whatever it holds.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { startServer, sleep, makeTempDir, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { newUser, newDevice, request, logout, metricValue, metricsText } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';
import { upload, getMedia, makePng } from './lib/media.mjs';

const b64 = (buf) => buf.toString('base64');
const pubKey = () => b64(Buffer.concat([Buffer.from([5]), crypto.randomBytes(32)]));
const signature = () => b64(crypto.randomBytes(64));
const cipher = (n = 48) => b64(crypto.randomBytes(n));

/** A first PUT body: identity, registration id, signed prekey and n one-time prekeys from id `from`. */
function firstKeys(n = 5, from = 1) {
  return {
    identity_key: pubKey(),
    registration_id: 1 + crypto.randomInt(16380),
    signed_prekey: { key_id: 1, public_key: pubKey(), signature: signature() },
    one_time_prekeys: prekeys(n, from),
  };
}
function prekeys(n, from = 1) {
  return Array.from({ length: n }, (_, i) => ({ key_id: from + i, public_key: pubKey() }));
}

const putKeys = (srv, acct, body) => request(srv, 'PUT', '/v1/keys', { token: acct.token, body });
const ownKeys = (srv, acct) => request(srv, 'GET', '/v1/keys', { token: acct.token });
const fetchKeys = (srv, acct, user, device) =>
  request(srv, 'GET', `/v1/keys/${user}${device ? `/${device}` : ''}`, { token: acct.token });

function assertError(r, status, code) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.body?.error?.code, code, r.text);
}

/** Publishes keys for a device and returns the body it published. */
async function publish(srv, acct, n = 5) {
  const body = firstKeys(n);
  const r = await putKeys(srv, acct, body);
  assert.equal(r.status, 204, r.text);
  return body;
}

/** A webhook push gateway that records what it is sent. */
async function gateway() {
  const g = { hits: [] };
  g.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      g.hits.push({ raw: body, body: JSON.parse(body) });
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => g.server.listen(0, '127.0.0.1', r));
  g.url = `http://127.0.0.1:${g.server.address().port}/hook`;
  return g;
}

const refs = (list) => list.map((x) => `${x.user}/${x.device_id}`).sort();

describe('E2E: the key directory and encrypted sends', () => {
  let srv;
  let gw;
  before(async () => {
    gw = await gateway();
    srv = await startServer({
      args: [...FAST_LIMITS, '--e2e-max-prekeys', '150', '--limits-key-fetch-rate', '100000/1s', '--push-webhook-url', gw.url, '--push-webhook-secret', 'an operator secret of some length', '--push-coalesce', '300ms',
        '--log-level', 'debug'],
    });
  });
  after(async () => {
    await srv?.close();
    gw?.server.close();
  });

  test('PUT /v1/keys refuses bad input with 400 and stores nothing', async () => {
    const a = await newUser(srv, 'kbad');
    const good = firstKeys(3);
    const bad = [
      [{ one_time_prekeys: prekeys(2) }, 'first PUT without identity'],
      [{ ...good, identity_key: 'not base64!!' }, 'bad base64'],
      [{ ...good, identity_key: b64(Buffer.concat([Buffer.from([5]), crypto.randomBytes(31)])) }, '32-byte key'],
      [{ ...good, identity_key: b64(Buffer.concat([Buffer.from([6]), crypto.randomBytes(32)])) }, 'type byte 0x06'],
      [{ ...good, signed_prekey: { ...good.signed_prekey, signature: signature().replace(/=+$/, '') } }, 'unpadded base64'],
      [{ ...good, identity_key: b64(Buffer.concat([Buffer.from([5]), Buffer.alloc(32, 0xff)])).replace(/\//g, '_') }, 'base64url'],
      [{ ...good, registration_id: 0 }, 'registration id 0'],
      [{ ...good, registration_id: 16381 }, 'registration id 16381'],
      [{ ...good, registration_id: 1.5 }, 'fractional registration id'],
      [{ ...good, registration_id: undefined }, 'identity without registration id'],
      [{ ...good, signed_prekey: { ...good.signed_prekey, signature: b64(crypto.randomBytes(63)) } }, '63-byte signature'],
      [{ ...good, signed_prekey: { ...good.signed_prekey, key_id: 0 } }, 'key id 0'],
      [{ ...good, signed_prekey: { ...good.signed_prekey, key_id: 16777216 } }, 'key id 2^24'],
      [{ ...good, signed_prekey: 'x' }, 'signed prekey not an object'],
      [{ ...good, one_time_prekeys: [{ key_id: 1, public_key: pubKey() }, { key_id: -1, public_key: pubKey() }] }, 'negative prekey id'],
      [{ ...good, one_time_prekeys: [{ key_id: 7 }] }, 'prekey without key'],
      [{ ...good, one_time_prekeys: {} }, 'prekeys not a list'],
      [{ identity_key: good.identity_key, registration_id: good.registration_id }, 'no signed prekey on the first PUT'],
      [{}, 'nothing at all'],
      ['{"identity_key":', 'malformed JSON'],
      [JSON.stringify(good).replace(/"registration_id"/, '"x":"a\\u0000b","registration_id"'), 'an escaped NUL'],
    ];
    for (const [body, what] of bad) {
      const r = await putKeys(srv, a, body);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.equal(r.body?.error?.code, 'bad_request', what);
    }
    assertError(await putKeys(srv, a, { ...good, one_time_prekeys: prekeys(101) }), 413, 'too_large');
    // nothing of all that was stored: the device has no keys, and nobody sees any
    assertError(await ownKeys(srv, a), 404, 'not_found');
    const b = await newUser(srv, 'kbadb');
    assert.deepEqual((await fetchKeys(srv, b, a.user)).body, { user: a.user, devices: [] });
    // no token
    assert.equal((await request(srv, 'PUT', '/v1/keys', { body: good })).status, 401);
    assert.equal((await request(srv, 'GET', `/v1/keys/${a.user}`)).status, 401);
    assert.equal((await request(srv, 'DELETE', '/v1/keys', { token: a.token })).status, 405);
  });

  test('publishing, topping up, replacing the signed prekey, and the identity set once (409)', async () => {
    const a = await newUser(srv, 'kpub');
    const body = await publish(srv, a, 5);
    let own = await ownKeys(srv, a);
    assert.equal(own.status, 200, own.text);
    assert.deepEqual(own.body, { identity_key: body.identity_key, signed_prekey_id: 1, one_time_prekeys: 5 });
    // top up (ids 4 and 5 sent again replace those keys: still 10, not 12)
    assert.equal((await putKeys(srv, a, { one_time_prekeys: prekeys(7, 4) })).status, 204);
    assert.equal((await ownKeys(srv, a)).body.one_time_prekeys, 10);
    // a new signed prekey replaces the old one
    const spk = { key_id: 9, public_key: pubKey(), signature: signature() };
    assert.equal((await putKeys(srv, a, { signed_prekey: spk })).status, 204);
    own = await ownKeys(srv, a);
    assert.equal(own.body.signed_prekey_id, 9);
    const b = await newUser(srv, 'kpubb');
    const got = await fetchKeys(srv, b, a.user);
    assert.equal(got.body.devices.length, 1);
    assert.deepEqual(got.body.devices[0].signed_prekey, spk);
    assert.equal(got.body.devices[0].identity_key, body.identity_key);
    assert.equal(got.body.devices[0].registration_id, body.registration_id);
    assert.equal(got.body.devices[0].device_id, a.device_id);
    // the same identity again is fine; another one is 409, and changes nothing
    assert.equal((await putKeys(srv, a, { identity_key: body.identity_key, registration_id: body.registration_id,
      one_time_prekeys: prekeys(1, 100) })).status, 204);
    assertError(await putKeys(srv, a, { identity_key: pubKey(), registration_id: body.registration_id,
      one_time_prekeys: prekeys(1, 200) }), 409, 'identity_exists');
    assertError(await putKeys(srv, a, { ...firstKeys(1), registration_id: body.registration_id }), 409, 'identity_exists');
    own = await ownKeys(srv, a);
    assert.equal(own.body.identity_key, body.identity_key);
    assert.equal(own.body.one_time_prekeys, 10); // 10 - 1 fetched + 1 added
  });

  test('past e2e.max_prekeys a PUT is 413 and adds nothing', async () => {
    const a = await newUser(srv, 'kmax');
    await publish(srv, a, 100);
    assert.equal((await putKeys(srv, a, { one_time_prekeys: prekeys(50, 101) })).status, 204); // 150: the limit
    assertError(await putKeys(srv, a, { one_time_prekeys: prekeys(1, 151) }), 413, 'too_large');
    // ids already stored do not count again
    assert.equal((await putKeys(srv, a, { one_time_prekeys: prekeys(10, 1) })).status, 204);
    assert.equal((await ownKeys(srv, a)).body.one_time_prekeys, 150);
  });

  test('GET /v1/keys/{user}: every device with keys, each one-time prekey once, then null', async () => {
    const bob = await newUser(srv, 'kfb');
    const bob2 = await newDevice(srv, bob, 'tablet');
    const bob3 = await newDevice(srv, bob, 'no-keys');
    const k1 = await publish(srv, bob, 2);
    await publish(srv, bob2, 1);
    const alice = await newUser(srv, 'kfa');
    assertError(await fetchKeys(srv, alice, 'nobody_here_at_all'), 404, 'not_found');
    const seen = new Set();
    let r = await fetchKeys(srv, alice, bob.user);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.user, bob.user);
    assert.deepEqual(r.body.devices.map((d) => d.device_id).sort(), [bob.device_id, bob2.device_id].sort());
    for (const d of r.body.devices) {
      assert.ok(d.one_time_prekey, 'a key is left for each');
      seen.add(`${d.device_id}/${d.one_time_prekey.key_id}`);
    }
    r = await fetchKeys(srv, alice, bob.user);
    const d1 = r.body.devices.find((d) => d.device_id === bob.device_id);
    const d2 = r.body.devices.find((d) => d.device_id === bob2.device_id);
    assert.ok(d1.one_time_prekey && !seen.has(`${bob.device_id}/${d1.one_time_prekey.key_id}`), 'the second key, not the first again');
    assert.ok(k1.one_time_prekeys.some((k) => k.key_id === d1.one_time_prekey.key_id && k.public_key === d1.one_time_prekey.public_key));
    assert.equal(d2.one_time_prekey, null, 'bob2 had one key, taken by the first fetch');
    // one device: the same shape; bob's device without keys, or alice's device under bob: 404
    r = await fetchKeys(srv, alice, bob.user, bob.device_id);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.devices.map((d) => [d.device_id, d.one_time_prekey]), [[bob.device_id, null]]);
    assertError(await fetchKeys(srv, alice, bob.user, bob3.device_id), 404, 'not_found');
    assertError(await fetchKeys(srv, alice, bob.user, alice.device_id), 404, 'not_found');
    assert.equal((await ownKeys(srv, bob)).body.one_time_prekeys, 0);
  });

  test('two callers at once never get the same one-time prekey', async () => {
    const bob = await newUser(srv, 'kcb');
    await publish(srv, bob, 6);
    const callers = await Promise.all([newUser(srv, 'kc1'), newUser(srv, 'kc2'), newUser(srv, 'kc3')]);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => fetchKeys(srv, callers[i % 3], bob.user)));
    const ids = answers.map((r) => {
      assert.equal(r.status, 200, r.text);
      return r.body.devices[0].one_time_prekey?.key_id ?? null;
    });
    const given = ids.filter((x) => x !== null);
    if (CLUSTER_NODES) {
      // On two nodes a claim can find a key that another node's claim holds for a moment (a
      // claim that may still lose its race and be undone): it answers without that key, and
      // the key stays for a later claim. No key is used up without being handed out (before,
      // 1 of 6 was handed out and none left, in 1 run of 10).
      const left = (await ownKeys(srv, bob)).body.one_time_prekeys;
      assert.ok(given.length >= 1, `keys handed out: ${ids}`);
      assert.equal(given.length + left, 6, `handed out ${given.length} (${ids}), ${left} left`);
    } else {
      assert.equal(given.length, 6, `six keys handed out: ${ids}`);
    }
    assert.equal(new Set(given).size, given.length, `all different: ${ids}`);
  });

  test('encrypted 1:1 send: devices_changed with missing and extra, nothing stored, then each device gets only its own ciphertext', async () => {
    const alice = await newUser(srv, 'ea');
    const alice2 = await newDevice(srv, alice, 'laptop');
    const bob = await newUser(srv, 'eb');
    const bob2 = await newDevice(srv, bob, 'tablet');
    const bob3 = await newDevice(srv, bob, 'old-phone'); // no keys: gets nothing
    for (const d of [alice, alice2, bob, bob2]) await publish(srv, d, 2);
    const [ca, ca2, cb, cb2, cb3] = await Promise.all([alice, alice2, bob, bob2, bob3].map((x) => online(srv, x)));
    const bodies = { [bob.device_id]: cipher(), [bob2.device_id]: cipher(), [alice2.device_id]: cipher() };
    const entry = (dev, type = 'prekey') => ({ device_id: dev, type, body: bodies[dev] ?? cipher() });

    // bob2 and alice2 missing, a stranger's id extra
    ca.send({ type: 'send', id: 'e1', to: bob.user, e2e: [entry(bob.device_id), { device_id: 'f'.repeat(24), type: 'message', body: cipher() }] });
    let err = await ca.next({ type: 'error', id: 'e1' });
    assert.equal(err.code, 'devices_changed', JSON.stringify(err));
    assert.deepEqual(refs(err.missing), refs([{ user: bob.user, device_id: bob2.device_id }, { user: alice.user, device_id: alice2.device_id }]));
    assert.deepEqual(refs(err.extra), refs([{ user: bob.user, device_id: 'f'.repeat(24) }]));
    // a device without keys is extra too, with its owner
    ca.send({ type: 'send', id: 'e1', to: bob.user, e2e: [entry(bob.device_id), entry(bob2.device_id), entry(alice2.device_id), entry(bob3.device_id)] });
    err = await ca.next({ type: 'error', id: 'e1' });
    assert.equal(err.code, 'devices_changed');
    assert.deepEqual(err.missing, []);
    assert.deepEqual(refs(err.extra), [`${bob.user}/${bob3.device_id}`]);
    // the sender's own device is never listed
    ca.send({ type: 'send', id: 'e1', to: bob.user, e2e: [entry(bob.device_id), entry(bob2.device_id), entry(alice2.device_id), entry(alice.device_id)] });
    err = await ca.next({ type: 'error', id: 'e1' });
    assert.deepEqual(refs(err.extra), [`${alice.user}/${alice.device_id}`]);
    await cb.quiet('msg', 200); // nothing was stored
    // the same id, now right
    ca.send({ type: 'send', id: 'e1', to: bob.user, e2e: [entry(bob.device_id), entry(bob2.device_id, 'message'), entry(alice2.device_id)] });
    const sent = await ca.next({ type: 'sent', id: 'e1' });
    for (const [c, dev, type] of [[cb, bob.device_id, 'prekey'], [cb2, bob2.device_id, 'message'], [ca2, alice2.device_id, 'prekey']]) {
      const m = await c.next('msg');
      assert.equal(m.msg_id, sent.msg_id);
      assert.equal(m.from, alice.user);
      assert.equal(m.from_device, alice.device_id);
      assert.equal(m.to, bob.user);
      assert.deepEqual(m.e2e, { type, body: bodies[dev] }, 'only its own ciphertext');
      assert.equal(m.body, undefined);
      for (const other of Object.keys(bodies)) if (other !== dev) assert.ok(!JSON.stringify(m).includes(bodies[other]));
    }
    await cb3.quiet('msg', 300);
    // de-dup: the same id again is the same answer, delivered once
    ca.send({ type: 'send', id: 'e1', to: bob.user, e2e: [entry(bob.device_id), entry(bob2.device_id), entry(alice2.device_id)] });
    assert.equal((await ca.next({ type: 'sent', id: 'e1' })).msg_id, sent.msg_id);
    await cb.quiet('msg', 200);
    // a repeat of a stored id is answered `sent` even when its list no longer matches (bob has
    // a new device meanwhile): PROTOCOL.md 4, the content of a repeat is ignored
    const bob4 = await newDevice(srv, bob, 'new-tablet');
    await publish(srv, bob4, 1);
    ca.send({ type: 'send', id: 'e1', to: bob.user, e2e: [entry(bob.device_id)] });
    assert.equal((await ca.next({ type: 'sent', id: 'e1' })).msg_id, sent.msg_id);
    // receipts work as for plaintext: bob's ack makes it delivered
    cb.ack(1);
    const rc = await ca.next('receipt');
    assert.equal(rc.status, 'delivered');
    assert.deepEqual(rc.msg_ids, [sent.msg_id]);
    // oversize ciphertext
    const huge = b64(crypto.randomBytes(75 * 1024)); // > 96 KiB of base64
    ca.send({ type: 'send', id: 'e2', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'message', body: huge }, entry(bob2.device_id), entry(alice2.device_id)] });
    assert.equal((await ca.next({ type: 'error', id: 'e2' })).code, 'too_large');
    // bad base64, mixed with plaintext
    ca.send({ type: 'send', id: 'e3', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'message', body: 'no!' }] });
    assert.equal((await ca.next({ type: 'error', id: 'e3' })).code, 'bad_request');
    ca.send({ type: 'send', id: 'e4', to: bob.user, body: 'hi', e2e: [entry(bob.device_id)] });
    assert.equal((await ca.next({ type: 'error', id: 'e4' })).code, 'bad_request');
    await closeAll(ca, ca2, cb, cb2, cb3);
  });

  test('no_keys for a recipient without keys; notes to self go to the other devices with keys', async () => {
    const alice = await newUser(srv, 'nka');
    const alice2 = await newDevice(srv, alice, 'two');
    const carol = await newUser(srv, 'nkc');
    await publish(srv, alice, 1);
    await publish(srv, alice2, 1);
    const ca = await online(srv, alice);
    const ca2 = await online(srv, alice2);
    ca.send({ type: 'send', id: 'n1', to: carol.user, e2e: [{ device_id: alice2.device_id, type: 'message', body: cipher() }] });
    assert.equal((await ca.next({ type: 'error', id: 'n1' })).code, 'no_keys');
    const body = cipher();
    ca.send({ type: 'send', id: 'n2', to: alice.user, e2e: [{ device_id: alice2.device_id, type: 'message', body }] });
    await ca.next({ type: 'sent', id: 'n2' });
    assert.deepEqual((await ca2.next('msg')).e2e, { type: 'message', body });
    await closeAll(ca, ca2);
  });

  test('encrypted group send: every other member\'s devices with keys, each its own; members without keys get nothing', async () => {
    const [alice, bob, carol] = await Promise.all([newUser(srv, 'ga'), newUser(srv, 'gb'), newUser(srv, 'gc')]);
    const bob2 = await newDevice(srv, bob, 'two');
    for (const d of [alice, bob, bob2]) await publish(srv, d, 1);
    const g = await request(srv, 'POST', '/v1/groups', { token: alice.token, body: { name: 'e2e', members: [bob.user, carol.user] } });
    assert.equal(g.status, 201, g.text);
    const gid = g.body.group_id;
    const [ca, cb, cb2, cc] = await Promise.all([alice, bob, bob2, carol].map((x) => online(srv, x)));
    ca.send({ type: 'send', id: 'g1', group_id: gid, e2e: [{ device_id: bob.device_id, type: 'prekey', body: cipher() }] });
    const err = await ca.next({ type: 'error', id: 'g1' });
    assert.equal(err.code, 'devices_changed');
    assert.deepEqual(refs(err.missing), [`${bob.user}/${bob2.device_id}`]);
    const b1 = cipher(), b2 = cipher();
    ca.send({ type: 'send', id: 'g1', group_id: gid, e2e: [{ device_id: bob.device_id, type: 'prekey', body: b1 }, { device_id: bob2.device_id, type: 'message', body: b2 }] });
    const sent = await ca.next({ type: 'sent', id: 'g1' });
    assert.equal(sent.recipients, 1, 'bob only: carol has no keys');
    const m1 = await cb.next('msg');
    const m2 = await cb2.next('msg');
    assert.equal(m1.group_id, gid);
    assert.equal(m1.to, undefined);
    assert.deepEqual(m1.e2e, { type: 'prekey', body: b1 });
    assert.deepEqual(m2.e2e, { type: 'message', body: b2 });
    await cc.quiet('msg', 300);
    // a non-member's device is extra
    const dave = await newUser(srv, 'gd');
    await publish(srv, dave, 1);
    ca.send({ type: 'send', id: 'g2', group_id: gid, e2e: [{ device_id: bob.device_id, type: 'message', body: cipher() }, { device_id: bob2.device_id, type: 'message', body: cipher() }, { device_id: dave.device_id, type: 'message', body: cipher() }] });
    const err2 = await ca.next({ type: 'error', id: 'g2' });
    assert.deepEqual(refs(err2.extra), [`${dave.user}/${dave.device_id}`]);
    // receipts: bob's first ack makes bob delivered
    cb.ack(m1.seq);
    const rc = await ca.next('receipt');
    assert.deepEqual(rc.by, [bob.user]);
    // an opaque attachment: readable by the members who got the message (bob), not by carol,
    // who has no keys and got nothing; gone once both of bob's devices fetched it
    const up = await upload(srv, alice.token, crypto.randomBytes(2000), 'application/octet-stream');
    ca.send({ type: 'send', id: 'g3', group_id: gid, media_ref: up.json.media_id,
      e2e: [{ device_id: bob.device_id, type: 'message', body: cipher() }, { device_id: bob2.device_id, type: 'message', body: cipher() }] });
    await ca.next({ type: 'sent', id: 'g3' });
    assert.equal((await cb.next('msg')).media_ref, up.json.media_id);
    assert.equal((await getMedia(srv, carol.token, up.json.media_id)).status, 404);
    assert.equal((await getMedia(srv, bob.token, up.json.media_id)).status, 200);
    assert.equal((await getMedia(srv, alice.token, up.json.media_id)).status, 200, 'one of two devices fetched: still there');
    assert.equal((await getMedia(srv, bob2.token, up.json.media_id)).status, 200);
    let gone = 200;
    for (let i = 0; i < 50 && gone !== 404; i++) {
      gone = (await getMedia(srv, alice.token, up.json.media_id)).status;
      if (gone !== 404) await sleep(50);
    }
    assert.equal(gone, 404);
    await closeAll(ca, cb, cb2, cc);
  });

  test('an encrypted send to someone who blocked the sender: sent as usual, only the sender\'s devices get it', async () => {
    const alice = await newUser(srv, 'bla');
    const alice2 = await newDevice(srv, alice, 'two');
    const bob = await newUser(srv, 'blb');
    for (const d of [alice, alice2, bob]) await publish(srv, d, 1);
    assert.equal((await request(srv, 'PUT', `/v1/blocks/${alice.user}`, { token: bob.token })).status, 204);
    const [ca, ca2, cb] = await Promise.all([alice, alice2, bob].map((x) => online(srv, x)));
    // the list is checked as always (alice must not learn she is blocked)
    ca.send({ type: 'send', id: 'b1', to: bob.user, e2e: [{ device_id: alice2.device_id, type: 'message', body: cipher() }] });
    assert.equal((await ca.next({ type: 'error', id: 'b1' })).code, 'devices_changed');
    const mine = cipher();
    ca.send({ type: 'send', id: 'b1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'prekey', body: cipher() }, { device_id: alice2.device_id, type: 'message', body: mine }] });
    await ca.next({ type: 'sent', id: 'b1' });
    assert.equal((await ca2.next('msg')).e2e.body, mine);
    await cb.quiet('msg', 300);
    await closeAll(ca, ca2, cb);
  });

  test('decrypt_error reaches the named sender device as an envelope', async () => {
    const alice = await newUser(srv, 'dea');
    const alice2 = await newDevice(srv, alice, 'other');
    const bob = await newUser(srv, 'deb');
    const [ca, ca2, cb] = await Promise.all([alice, alice2, bob].map((x) => online(srv, x)));
    cb.send({ type: 'decrypt_error', peer: alice.user, device_id: alice.device_id, msg_id: 'm-123' });
    const e = await ca.next('decrypt_error');
    assert.equal(e.from, bob.user);
    assert.equal(e.from_device, bob.device_id);
    assert.equal(e.msg_id, 'm-123');
    assert.ok(e.seq >= 1 && e.ts > 0);
    await ca2.quiet('decrypt_error', 200); // only the named device
    cb.send({ type: 'decrypt_error', peer: 'no_such_person_x', device_id: alice.device_id, msg_id: 'm-1' });
    assert.equal((await cb.next('error')).code, 'no_such_user');
    cb.send({ type: 'decrypt_error', peer: alice.user, device_id: bob.device_id, msg_id: 'm-1' });
    assert.equal((await cb.next('error')).code, 'not_found');
    await closeAll(ca, ca2, cb);
  });

  test('octet-stream media: opaque, no thumbnail, named by media_ref with grants and fetch counts', async () => {
    const alice = await newUser(srv, 'ma');
    const bob = await newUser(srv, 'mb');
    const carol = await newUser(srv, 'mc');
    await publish(srv, bob, 1);
    const blob = crypto.randomBytes(5000);
    const up = await upload(srv, alice.token, blob, 'application/octet-stream');
    assert.equal(up.status, 201, up.body.toString());
    assert.deepEqual(Object.keys(up.json).sort(), ['media_id', 'mime', 'sha256', 'size']);
    assert.equal(up.json.mime, 'application/octet-stream');
    assert.equal(up.json.size, 5000);
    assert.equal(up.json.sha256, crypto.createHash('sha256').update(blob).digest('hex'));
    assert.equal((await getMedia(srv, alice.token, up.json.media_id, { thumb: true })).status, 404);
    assert.equal((await getMedia(srv, bob.token, up.json.media_id)).status, 404, 'not sent yet');
    const ca = await online(srv, alice);
    const cb = await online(srv, bob);
    ca.send({ type: 'send', id: 'x1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'prekey', body: cipher() }], media_ref: 'aaaaaaaaaaaaaaaaaaaaaaaaaa' });
    assert.equal((await ca.next({ type: 'error', id: 'x1' })).code, 'no_such_media');
    ca.send({ type: 'send', id: 'x1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'prekey', body: cipher() }], media_ref: up.json.media_id });
    await ca.next({ type: 'sent', id: 'x1' });
    const m = await cb.next('msg');
    assert.equal(m.media_ref, up.json.media_id);
    assert.equal(m.media, undefined);
    const got = await getMedia(srv, bob.token, up.json.media_id);
    assert.equal(got.status, 200);
    assert.equal(got.headers['content-type'], 'application/octet-stream');
    assert.ok(got.body.equals(blob));
    assert.equal((await getMedia(srv, carol.token, up.json.media_id)).status, 404);
    // bob's only device fetched it: it is gone (PROTOCOL.md 7's lifetime)
    let after = 200;
    for (let i = 0; i < 50 && after !== 404; i++) {
      after = (await getMedia(srv, alice.token, up.json.media_id)).status;
      if (after !== 404) await sleep(50);
    }
    assert.equal(after, 404, 'deleted once every recipient device fetched it');
    // media_ref needs e2e
    ca.send({ type: 'send', id: 'x2', to: bob.user, body: 'hi', media_ref: up.json.media_id });
    assert.equal((await ca.next({ type: 'error', id: 'x2' })).code, 'bad_request');
    await closeAll(ca, cb);
  });

  test('logout deletes the device\'s keys', async () => {
    const bob = await newUser(srv, 'lob');
    const bob2 = await newDevice(srv, bob, 'two');
    await publish(srv, bob, 3);
    await publish(srv, bob2, 3);
    const alice = await newUser(srv, 'loa');
    assert.equal((await fetchKeys(srv, alice, bob.user)).body.devices.length, 2);
    assert.equal((await logout(srv, bob2.token)).status, 204);
    const r = await fetchKeys(srv, alice, bob.user);
    assert.deepEqual(r.body.devices.map((d) => d.device_id), [bob.device_id]);
    assertError(await fetchKeys(srv, alice, bob.user, bob2.device_id), 404, 'not_found');
    // DELETE /v1/devices/{id} (PROTOCOL.md 14) logs a device out the same way
    const bob3 = await newDevice(srv, bob, 'three');
    await publish(srv, bob3, 1);
    assert.equal((await fetchKeys(srv, alice, bob.user)).body.devices.length, 2);
    assert.equal((await request(srv, 'DELETE', `/v1/devices/${bob3.device_id}`, { token: bob.token })).status, 204);
    assert.deepEqual((await fetchKeys(srv, alice, bob.user)).body.devices.map((d) => d.device_id), [bob.device_id]);
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'l1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'message', body: cipher() }, { device_id: bob2.device_id, type: 'message', body: cipher() }] });
    const err = await ca.next({ type: 'error', id: 'l1' });
    assert.equal(err.code, 'devices_changed');
    assert.deepEqual(err.extra.map((x) => x.device_id), [bob2.device_id]);
    await closeAll(ca);
  });

  test('deleting the account deletes every device\'s keys', async () => {
    const bob = await newUser(srv, 'dab');
    const bob2 = await newDevice(srv, bob, 'two');
    await publish(srv, bob, 2);
    await publish(srv, bob2, 2);
    const alice = await newUser(srv, 'daa');
    assert.equal((await fetchKeys(srv, alice, bob.user)).body.devices.length, 2);
    const del = await request(srv, 'DELETE', '/v1/me', { token: bob.token, body: { password: bob.password } });
    assert.equal(del.status, 204, del.text);
    assertError(await fetchKeys(srv, alice, bob.user), 404, 'not_found');
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'd1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'message', body: cipher() }] });
    assert.equal((await ca.next({ type: 'error', id: 'd1' })).code, 'no_such_user');
    await closeAll(ca);
  });

  test('silent sends make no push; a push never carries the ciphertext', async () => {
    const alice = await newUser(srv, 'pa');
    const bob = await newUser(srv, 'pb');
    await publish(srv, bob, 1);
    assert.equal((await request(srv, 'PUT', '/v1/push', { token: bob.token, body: { provider: 'webhook', token: 'bob-e2e' } })).status, 204);
    const ca = await online(srv, alice);
    const mine = () => gw.hits.filter((h) => h.body.token === 'bob-e2e');
    ca.send({ type: 'send', id: 's1', to: bob.user, silent: true, e2e: [{ device_id: bob.device_id, type: 'prekey', body: cipher() }] });
    await ca.next({ type: 'sent', id: 's1' });
    ca.send({ type: 'send', id: 's2', to: bob.user, silent: true, body: 'a plaintext reaction, say' });
    await ca.next({ type: 'sent', id: 's2' });
    await sleep(800);
    assert.equal(mine().length, 0, 'silent: no push');
    const body = cipher(64);
    ca.send({ type: 'send', id: 's3', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'message', body }] });
    await ca.next({ type: 'sent', id: 's3' });
    for (let i = 0; i < 60 && !mine().length; i++) await sleep(50);
    assert.equal(mine().length, 1, 'an encrypted message pushes like any other');
    assert.equal(mine()[0].body.from, alice.user);
    assert.ok(!mine()[0].raw.includes(body), 'no ciphertext in the push payload');
    await closeAll(ca);
  });
});

describe('E2E: limits.key_fetch_rate', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--limits-key-fetch-rate', '3/1m'] }); });
  after(async () => { await srv?.close(); });

  // each node keeps its own buckets: behind the cluster's round-robin proxy no node sees four
  test('past the rate a fetch is 429 rate_limited with Retry-After, per calling user', { skip: CLUSTER_NODES > 1 && 'buckets are per node' }, async () => {
    const bob = await newUser(srv, 'rb');
    await publish(srv, bob, 10);
    const alice = await newUser(srv, 'ra');
    const carol = await newUser(srv, 'rc');
    for (let i = 0; i < 3; i++) assert.equal((await fetchKeys(srv, alice, bob.user)).status, 200);
    const r = await fetchKeys(srv, alice, bob.user);
    assertError(r, 429, 'rate_limited');
    assert.ok(Number(r.headers.get('retry-after')) >= 1, r.headers.get('retry-after'));
    assert.ok((await metricValue(await metricsText(srv), 'tern_limited_total{limit="key_fetch_rate"}')) >= 1);
    assert.equal((await fetchKeys(srv, carol, bob.user)).status, 200, 'another caller has its own budget');
    // the refused fetch took no key: 10 - 3 - 1
    assert.equal((await ownKeys(srv, bob)).body.one_time_prekeys, 6);
  });
});

describe('E2E: e2e.required', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--e2e-required'] }); });
  after(async () => { await srv?.close(); });

  test('plaintext sends and image uploads are refused; encrypted ones and opaque blobs pass', async () => {
    const alice = await newUser(srv, 'qa');
    const bob = await newUser(srv, 'qb');
    await publish(srv, bob, 1);
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'q1', to: bob.user, body: 'plain' });
    assert.equal((await ca.next({ type: 'error', id: 'q1' })).code, 'e2e_required');
    const g = await request(srv, 'POST', '/v1/groups', { token: alice.token, body: { name: 'q', members: [bob.user] } });
    ca.send({ type: 'send', id: 'q2', group_id: g.body.group_id, body: 'plain' });
    assert.equal((await ca.next({ type: 'error', id: 'q2' })).code, 'e2e_required');
    const img = await upload(srv, alice.token, makePng(8, 8), 'image/png');
    assert.equal(img.status, 403);
    assert.equal(img.json?.error?.code, 'e2e_required');
    const blob = await upload(srv, alice.token, crypto.randomBytes(100), 'application/octet-stream');
    assert.equal(blob.status, 201);
    ca.send({ type: 'send', id: 'q3', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'prekey', body: cipher() }], media_ref: blob.json.media_id });
    await ca.next({ type: 'sent', id: 'q3' });
    ca.send({ type: 'send', id: 'q4', group_id: g.body.group_id, e2e: [{ device_id: bob.device_id, type: 'message', body: cipher() }] });
    assert.equal((await ca.next({ type: 'sent', id: 'q4' })).recipients, 1);
    await closeAll(ca);
  });
});

describe('E2E: after a crash', () => {
  test('keys, the E2E-capable devices, queued ciphertexts and opaque blobs survive kill -9', async () => {
    const srv = await startServer({ args: FAST_LIMITS });
    try {
      const alice = await newUser(srv, 'ka');
      const bob = await newUser(srv, 'kb');
      const body = await publish(srv, bob, 3);
      assert.equal((await fetchKeys(srv, alice, bob.user)).body.devices[0].one_time_prekey.key_id, 1);
      const blob = crypto.randomBytes(3000);
      const up = await upload(srv, alice.token, blob, 'application/octet-stream');
      assert.equal(up.status, 201);
      const ca = await online(srv, alice);
      const c1 = cipher();
      ca.send({ type: 'send', id: 'k1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'prekey', body: c1 }], media_ref: up.json.media_id });
      const sent = await ca.next({ type: 'sent', id: 'k1' });
      await ca.close();
      await srv.kill9();
      await srv.restart();
      const own = await ownKeys(srv, bob);
      assert.deepEqual(own.body, { identity_key: body.identity_key, signed_prekey_id: 1, one_time_prekeys: 2 });
      // the directory knows bob's device is E2E-capable again (loaded from the bundle record)
      const ca2 = await online(srv, alice);
      const c2 = cipher();
      ca2.send({ type: 'send', id: 'k2', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'message', body: c2 }] });
      await ca2.next({ type: 'sent', id: 'k2' });
      const cb = await online(srv, bob);
      const msgs = [...cb.initial.filter((e) => e.type === 'msg')];
      if (msgs.length < 2) msgs.push(await cb.next('msg'));
      assert.deepEqual(msgs.map((m) => [m.msg_id === sent.msg_id, m.e2e.body]), [[true, c1], [false, c2]]);
      assert.equal(msgs[0].media_ref, up.json.media_id);
      const got = await getMedia(srv, bob.token, up.json.media_id);
      assert.equal(got.status, 200);
      assert.ok(got.body.equals(blob));
      await closeAll(ca2, cb);
    } finally {
      await srv.close();
    }
  });
});

/** Every regular file under dir, recursively. */
function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

describe('E2E: black box', () => {
  test('a ciphertext leaves no trace in the data dir or the debug log after delivery and ack', async () => {
    const dataDir = makeTempDir('tern-e2e-bb-'); // ours, so that it outlives the server
    const srv = await startServer({ args: [...FAST_LIMITS, '--log-level', 'debug'], dataDir });
    let closed = false;
    try {
      const alice = await newUser(srv, 'bba');
      const bob = await newUser(srv, 'bbb');
      await publish(srv, bob, 1);
      // a marker that is itself standard base64 (28 chars), so it is a valid ciphertext body
      const marker = `TERNMARK${crypto.randomBytes(10).toString('hex')}`;
      assert.equal(marker.length % 4, 0);
      const ca = await online(srv, alice);
      const cb = await online(srv, bob);
      ca.send({ type: 'send', id: 'b1', to: bob.user, e2e: [{ device_id: bob.device_id, type: 'prekey', body: marker }] });
      await ca.next({ type: 'sent', id: 'b1' });
      const m = await cb.next('msg');
      assert.equal(m.e2e.body, marker);
      cb.ack(m.seq);
      await ca.next('receipt');
      await closeAll(ca, cb);
      assert.ok(!srv.stderr().includes(marker), 'the marker is in the server log');
      if (CLUSTER_NODES) return; // the store is NATS's there: no data dir of ours to read
      const dir = srv.dataDir;
      await srv.close();
      closed = true;
      // the store's files after a clean stop: the memtable's put and its delete met in the
      // flush, and the write-ahead log that held the put is obsolete
      const hits = [];
      for (const f of filesUnder(dir)) if (readFileSync(f).includes(marker)) hits.push(path.relative(dir, f));
      assert.ok(filesUnder(dir).length > 0, 'the data dir was read');
      assert.deepEqual(hits, [], 'the marker is in the data dir');
    } finally {
      if (!closed) await srv.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
