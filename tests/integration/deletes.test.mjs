// Delete for everyone (PROTOCOL.md 15), on both store backends: every envelope of the message
// still waiting in an inbox is replaced, in place and under its seq, by the delete; devices that
// already had it get the delete as a new envelope; the grants of its media end; a second delete
// is not_found; and the refusals come in §15's order. Each describe runs once on RocksDB and
// once on NATS JetStream (one local nats-server, one ternd), or, in the cluster suite, once
// on its 2 nodes.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, FAST_LIMITS, CLUSTER_NODES, sleep } from './lib/server.mjs';
import { startNats } from './lib/nats.mjs';
import { newUser, newDevice, request, metric, metricSum } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';
import { makePng, upload, getMedia } from './lib/media.mjs';

async function answer(c, frame) {
  c.send(frame);
  return c.next((f) => (f.type === 'sent' || f.type === 'error') && f.id === frame.id);
}

/** Waits until a gauge reaches want (the store counts a commit a moment after `sent`). */
async function gauge(srv, name, want) {
  let v;
  for (let i = 0; i < 100; i++) {
    v = await count(srv, name);
    if (v === want) return v;
    await sleep(50);
  }
  assert.equal(v, want, `${name}`);
  return v;
}

// In a cluster (TERN_TEST_CLUSTER) the describes run once, on its nodes.
const backends = CLUSTER_NODES ? ['cluster'] : ['rocksdb', 'nats'];

/**
 * A gauge's value for the whole service: on NATS, tern_inbox_envelopes is the inbox stream's
 * count, the same on every node; the shared bodies are counted by each node that stores or
 * releases one (PROTOCOL.md 12: sum them).
 */
const count = (srv, name) => (srv.cluster && name === 'tern_shared_bodies' ? metricSum(srv, name) : metric(srv, name));

for (const backend of backends) {
  describe(`delete for everyone (${backend})`, () => {
    const inPlace = backend === 'rocksdb';
    let srv, nats;
    before(async () => {
      const args = [...FAST_LIMITS, '--limits-delete-window', '3s', '--limits-edit-window', '2s'];
      if (backend === 'nats') {
        nats = await startNats({ servers: 1 });
        args.push('--store-backend', 'nats', '--nats-urls', nats.urls, '--nats-namespace', `d${process.pid}`);
      }
      srv = await startServer({ args });
    });
    after(async () => { await srv?.close(); await nats?.close(); });

    test('a delete reaching an offline device first takes its original\'s place: the original is never received', async () => {
      const [a, b] = await Promise.all([newUser(srv, 'oa'), newUser(srv, 'ob')]);
      const a2 = await newDevice(srv, a, 'a-phone'); // a's other device, offline too
      const base = await count(srv, 'tern_inbox_envelopes');
      const ca = await online(srv, a);
      const m0 = await answer(ca, { type: 'send', id: 'm0', to: b.user, body: 'keep me' });
      const m1 = await answer(ca, { type: 'send', id: 'm1', to: b.user, body: 'secret oops' });
      const m2 = await answer(ca, { type: 'send', id: 'm2', to: b.user, body: 'after' });
      assert.equal(m1.type, 'sent');
      // three messages, each waiting for b's device and for a's other device
      await gauge(srv, 'tern_inbox_envelopes', base + 6);
      const d = await answer(ca, { type: 'send', id: 'd1', to: b.user, delete: { of: m1.msg_id } });
      assert.equal(d.type, 'sent', JSON.stringify(d));
      // the delete took the original's places: nothing more is stored
      await gauge(srv, 'tern_inbox_envelopes', base + 6);

      for (const who of [b, a2]) {
        const c = await online(srv, who);
        const got = c.initial.filter((f) => f.type === 'msg');
        assert.ok(!JSON.stringify(c.initial).includes('secret oops'), 'the original body is never sent');
        if (inPlace) {
          assert.deepEqual(got.map((f) => f.msg_id), [m0.msg_id, d.msg_id, m2.msg_id], `${who.device_id}: in order, the delete in place`);
          assert.equal(got[1].seq, got[0].seq + 1, 'under the original\'s seq');
          assert.equal(got[2].seq, got[1].seq + 1);
        } else {
          // JetStream cannot overwrite: the original's seq is a hole, and the delete comes last
          assert.deepEqual(got.map((f) => f.msg_id), [m0.msg_id, m2.msg_id, d.msg_id], `${who.device_id}`);
          assert.equal(got[1].seq, got[0].seq + 2, 'the original\'s seq is skipped');
        }
        const del = got.find((f) => f.msg_id === d.msg_id);
        assert.deepEqual(del.delete, { of: m1.msg_id });
        assert.equal(del.body, undefined);
        let last = Math.max(...c.initial.map((f) => f.seq ?? 0));
        if (who === a2) {
          // b's ack sends a delivered receipt to each of a's devices; on another node of a
          // cluster it may reach a2's inbox after a2's drain: then it comes live (an event
          // that comes during the drain sends the session to the store once more)
          const isRc = (f) => f.type === 'receipt' && f.status === 'delivered';
          const rcpt = c.initial.find(isRc) ?? await c.next(isRc).catch(() => null);
          assert.ok(rcpt, 'the delivered receipt reaches a\'s other device');
          last = Math.max(last, rcpt.seq);
        }
        c.ack(last);
        await c.roundTrip();
        await closeAll(c);
      }
      const rc = await ca.next((f) => f.type === 'receipt' && f.status === 'delivered');
      assert.ok(!rc.msg_ids.includes(m1.msg_id), 'a deleted message is never delivered');
      ca.ack(rc.seq);
      await gauge(srv, 'tern_inbox_envelopes', base);
      // the same delete again: the same answer (de-dup); a new delete: already deleted
      assert.equal((await answer(ca, { type: 'send', id: 'd1', to: b.user, delete: { of: m1.msg_id } })).msg_id, d.msg_id);
      const again = await answer(ca, { type: 'send', id: 'd2', to: b.user, delete: { of: m1.msg_id } });
      assert.equal(again.code, 'not_found', JSON.stringify(again));
      await closeAll(ca);
    });

    test('a device that already had the message gets the delete as a new envelope', async () => {
      const [a, b] = await Promise.all([newUser(srv, 'na'), newUser(srv, 'nb')]);
      const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
      const m = await answer(ca, { type: 'send', id: 'm1', to: b.user, body: 'seen' });
      const orig = await cb.next((f) => f.type === 'msg' && f.msg_id === m.msg_id);
      assert.equal(orig.body, 'seen');
      // not acked yet: the original still waits, but this device has it
      const d = await answer(ca, { type: 'send', id: 'd1', to: b.user, delete: { of: m.msg_id } });
      assert.equal(d.type, 'sent');
      const del = await cb.next((f) => f.type === 'msg' && f.delete);
      assert.equal(del.delete.of, m.msg_id);
      assert.ok(del.seq > orig.seq, 'a new seq');
      cb.ack(del.seq);
      await closeAll(ca, cb);
    });

    test('refusals in §15\'s order: unknown, another conversation, past the window, already deleted → not_found; another\'s → forbidden', async () => {
      const [a, b, c] = await Promise.all([newUser(srv, 'fa'), newUser(srv, 'fb'), newUser(srv, 'fc')]);
      const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
      const unknown = '01a2371507fd000000dc01bb46d9e9d2ab413e33de77';
      assert.equal((await answer(ca, { type: 'send', id: 'u1', to: b.user, delete: { of: unknown } })).code, 'not_found');
      assert.equal((await answer(ca, { type: 'send', id: 'u2', to: b.user, delete: { of: 'nonsense' } })).code, 'not_found');
      const toC = await answer(ca, { type: 'send', id: 'c1', to: c.user, body: 'to c' });
      assert.equal((await answer(ca, { type: 'send', id: 'x1', to: b.user, delete: { of: toC.msg_id } })).code, 'not_found',
        'a message of another conversation');
      const m = await answer(ca, { type: 'send', id: 'm1', to: b.user, body: 'mine' });
      await cb.next((f) => f.msg_id === m.msg_id);
      assert.equal((await answer(cb, { type: 'send', id: 'o1', to: a.user, delete: { of: m.msg_id } })).code, 'forbidden',
        'another user\'s message');
      assert.equal((await answer(cb, { type: 'send', id: 'o2', to: a.user, body: 'x', edit: { of: m.msg_id } })).code, 'forbidden');
      assert.equal((await answer(ca, { type: 'send', id: 'd1', to: b.user, delete: { of: m.msg_id } })).type, 'sent');
      // already deleted comes before "another user's": b now gets not_found, for a delete and an edit
      assert.equal((await answer(cb, { type: 'send', id: 'o3', to: a.user, delete: { of: m.msg_id } })).code, 'not_found');
      assert.equal((await answer(ca, { type: 'send', id: 'e1', to: b.user, body: 'x', edit: { of: m.msg_id } })).code, 'not_found',
        'an edit of a deleted message');
      const old = await answer(ca, { type: 'send', id: 'm2', to: b.user, body: 'old' });
      await sleep(3300);
      assert.equal((await answer(ca, { type: 'send', id: 'd2', to: b.user, delete: { of: old.msg_id } })).code, 'not_found',
        'past limits.delete_window');
      assert.equal((await answer(cb, { type: 'send', id: 'o4', to: a.user, delete: { of: old.msg_id } })).code, 'not_found',
        'past the window comes before another user\'s');
      await closeAll(ca, cb);
    });

    test('a deleted message\'s media can no longer be read by its recipient', async () => {
      const [a, b] = await Promise.all([newUser(srv, 'ma'), newUser(srv, 'mb')]);
      const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
      const up = await upload(srv, a.token, makePng(8, 8), 'image/png');
      assert.equal(up.status, 201, up.body.toString());
      const id = up.json.media_id;
      const m = await answer(ca, { type: 'send', id: 'm1', to: b.user, media: { media_id: id } });
      assert.equal(m.type, 'sent', JSON.stringify(m));
      await cb.next((f) => f.msg_id === m.msg_id);
      assert.equal((await getMedia(srv, b.token, id, { thumb: true })).status, 200, 'granted while the message lives');
      assert.equal((await answer(ca, { type: 'send', id: 'd1', to: b.user, delete: { of: m.msg_id } })).type, 'sent');
      await cb.next((f) => f.type === 'msg' && f.delete);
      // the grant ends before the delete is stored: once it is seen, no node lets b read
      for (const node of srv.nodes || [srv]) {
        assert.equal((await getMedia(node, b.token, id)).status, 404, `the grant ended (${node.port})`);
        assert.equal((await getMedia(node, b.token, id, { thumb: true })).status, 404);
      }
      await closeAll(ca, cb);
    });

    test('groups: an admin\'s delete replaces the copy waiting for an offline member, and its shared body goes', async () => {
      const [a, b, c] = await Promise.all([newUser(srv, 'ga'), newUser(srv, 'gb'), newUser(srv, 'gc')]);
      const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
      const g = (await request(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'G', members: [b.user, c.user] } })).body;
      await ca.next((f) => f.type === 'group');
      await cb.next((f) => f.type === 'group');
      const bodies = await count(srv, 'tern_shared_bodies');
      const gm = await answer(cb, { type: 'send', id: 'g1', group_id: g.group_id, body: 'group oops' });
      assert.equal(gm.type, 'sent');
      const got = await ca.next((f) => f.msg_id === gm.msg_id);
      ca.ack(got.seq);
      await gauge(srv, 'tern_shared_bodies', bodies + 1);
      // another group's admin cannot delete it
      const other = (await request(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'H', members: [] } })).body;
      assert.equal((await answer(ca, { type: 'send', id: 'x1', group_id: other.group_id, delete: { of: gm.msg_id } })).code, 'not_found');
      const d = await answer(ca, { type: 'send', id: 'd1', group_id: g.group_id, delete: { of: gm.msg_id } });
      assert.equal(d.type, 'sent', JSON.stringify(d));
      cb.ack((await cb.next((f) => f.type === 'msg' && f.delete)).seq);
      // c's copy was the body's last reference: replaced, so the body is gone
      await gauge(srv, 'tern_shared_bodies', bodies);
      const cc = await online(srv, c);
      const msgs = cc.initial.filter((f) => f.type === 'msg');
      assert.deepEqual(msgs.map((f) => [f.msg_id, f.delete?.of]), [[d.msg_id, gm.msg_id]]);
      assert.ok(!JSON.stringify(cc.initial).includes('group oops'));
      assert.equal((await answer(cb, { type: 'send', id: 'd2', group_id: g.group_id, delete: { of: gm.msg_id } })).code, 'not_found',
        'already deleted');
      await closeAll(ca, cb, cc);
    });
  });
}
