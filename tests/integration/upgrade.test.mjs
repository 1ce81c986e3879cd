// Upgrades lose nothing: a data dir written by the v1 ternd (tests/fixtures/v1-datadir, made by
// tests/fixtures/make-v1-datadir.mjs before the store split) opens with today's ternd. Every
// undelivered envelope is delivered with its old seq, new envelopes continue the seqs, the
// user-level inbox goes to the next login, remembered client ids still de-duplicate, and the
// media is readable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, makeTempDir, REPO_ROOT } from './lib/server.mjs';
import { login, me } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';
import { getMedia, sha256 } from './lib/media.mjs';

const FIX = path.join(REPO_ROOT, 'tests', 'fixtures');
const facts = JSON.parse(readFileSync(path.join(FIX, 'v1-datadir.json'), 'utf8'));
const msgId = (id) => facts.sent.find((s) => s.id === id).msg_id;
// The fixture's envelopes, ids and media were written on a fixed day: keep them from expiring.
const FOREVER = ['--inbox-ttl', '36500d', '--dedup-ttl', '36500d', '--media-ttl', '36500d',
  '--media-unsent-ttl', '36500d', '--devices-idle-expiry', '36500d'];

let srv;
before(async () => {
  const dir = makeTempDir('tern-upgrade-');
  cpSync(path.join(FIX, 'v1-datadir'), dir, { recursive: true });
  srv = await startServer({ dataDir: dir, args: FOREVER });
});
after(() => srv?.close());

test('v1 data dir: devices and tokens survive', async () => {
  const r = await me(srv, facts.bob.token);
  assert.equal(r.status, 200);
  assert.equal(r.body.user, 'bob');
  assert.equal(r.body.device_id, facts.bob.device_id);
  const ra = await me(srv, facts.alice.phone.token);
  assert.equal(ra.status, 200);
  assert.equal(ra.body.devices.length, 2);
});

test('v1 data dir: undelivered envelopes arrive with their seqs, and new ones go on', async () => {
  const b = await online(srv, facts.bob);
  const msgs = b.initial.filter((e) => e.type === 'msg');
  assert.deepEqual(msgs.map((m) => m.msg_id), [msgId('c2'), msgId('c3'), msgId('c4')]);
  assert.deepEqual(msgs.map((m) => m.seq), [2, 3, 4]);
  assert.equal(msgs[0].body, 'hello bob 2');
  assert.equal(msgs[0].from, 'alice');
  assert.equal(msgs[0].to, 'bob');
  assert.equal(msgs[0].from_device, facts.alice.laptop.device_id);
  assert.equal(msgs[0].ts, facts.sent.find((s) => s.id === 'c2').ts);
  assert.equal(msgs[2].media.media_id, facts.media_id);
  assert.equal(msgs[2].media.mime, 'image/jpeg');
  assert.equal(msgs[2].media.sha256, facts.media_sha256);
  assert.equal(b.synced.seq, 4);

  // the media sent in v1 is readable by its recipient
  const m = await getMedia(srv, facts.bob.token, facts.media_id);
  assert.equal(m.status, 200);
  assert.equal(sha256(m.body), facts.media_sha256);

  // acking them makes delivered receipts for alice; a new message continues bob's seqs
  const a = await online(srv, facts.alice.laptop);
  b.ack(4);
  const rc = await a.next((f) => f.type === 'receipt' && f.status === 'delivered');
  assert.deepEqual(new Set(rc.msg_ids), new Set([msgId('c2'), msgId('c3'), msgId('c4')]));
  a.send({ type: 'send', id: 'after-upgrade', to: 'bob', body: 'new' });
  await a.next({ type: 'sent', id: 'after-upgrade' });
  const nm = await b.next('msg');
  assert.equal(nm.seq, 5);
  await closeAll(a, b);
});

test('v1 data dir: remembered client ids still de-duplicate', async () => {
  const a = await online(srv, facts.alice.laptop);
  a.send({ type: 'send', id: 'c1', to: 'bob', body: 'a resend after the upgrade' });
  const s = await a.next({ type: 'sent', id: 'c1' });
  assert.equal(s.msg_id, msgId('c1'));
  await a.close();
});

test('v1 data dir: the other device drains its copies and receipts', async () => {
  const p = await online(srv, facts.alice.phone);
  const copies = p.initial.filter((e) => e.type === 'msg').map((e) => e.msg_id);
  for (const id of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']) assert.ok(copies.includes(msgId(id)), `copy of ${id}`);
  const receipts = p.initial.filter((e) => e.type === 'receipt');
  assert.ok(receipts.some((r) => r.status === 'delivered' && r.by === 'bob' && r.msg_ids.includes(msgId('c1'))));
  assert.ok(receipts.some((r) => r.status === 'read' && r.by === 'bob' && r.msg_ids.includes(msgId('c1'))));
  const seqs = p.initial.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
  await p.close();
});

test('v1 data dir: the user-level inbox goes to the next login', async () => {
  const r = await login(srv, 'carol', facts.password, 'new');
  assert.equal(r.status, 200);
  const c = await online(srv, r.body);
  const msgs = c.initial.filter((e) => e.type === 'msg');
  assert.deepEqual(msgs.map((m) => m.msg_id), [msgId('c5'), msgId('c6')]);
  assert.deepEqual(msgs.map((m) => m.seq), [1, 2]);
  await c.close();
});
