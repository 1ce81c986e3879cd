// PROTOCOL.md section 5: delivered and read receipts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, FAST_LIMITS } from './lib/server.mjs';
import { newUser, newDevice } from './lib/api.mjs';
import { online, onlineAfterAck, closeAll } from './lib/client.mjs';

async function sendOk(c, id, to, body) {
  c.send({ type: 'send', id, to, body });
  const a = await c.next((f) => (f.type === 'sent' || f.type === 'error') && f.id === id);
  assert.equal(a.type, 'sent', `send ${id} → ${JSON.stringify(a)}`);
  return a;
}

const sorted = (a) => [...a].sort();
const isReceipt = (status) => (f) => f.type === 'receipt' && (!status || f.status === status);

function assertReceipt(r, { status, from, by, msgIds }) {
  assert.equal(r.type, 'receipt');
  assert.equal(typeof r.seq, 'number', `receipt without seq: ${JSON.stringify(r)}`);
  assert.equal(r.status, status);
  assert.equal(r.from, from);
  assert.equal(r.by, by);
  assert.ok(Array.isArray(r.msg_ids), `msg_ids: ${JSON.stringify(r)}`);
  assert.deepEqual(sorted(r.msg_ids), sorted(msgIds));
  assert.equal(typeof r.ts, 'number');
  assert.ok(Math.abs(r.ts - Date.now()) < 10000, `receipt ts ${r.ts} not near now`);
}

describe('receipts', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); });

  test('one ack of 3 messages → exactly one delivered receipt with the 3 msg_ids to every sender device', async () => {
    const alice = await newUser(srv, 'dl', 'a1');
    const alice2 = await newDevice(srv, alice, 'a2');
    const bob = await newUser(srv, 'dl', 'b1');
    const bob2 = await newDevice(srv, bob, 'b2');
    const [ca1, ca2, cb1, cb2] = await Promise.all([
      online(srv, alice, { name: 'a1' }), online(srv, alice2, { name: 'a2' }),
      online(srv, bob, { name: 'b1' }), online(srv, bob2, { name: 'b2' }),
    ]);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await sendOk(ca1, `d${i}`, bob.user, `deliver ${i}`)).msg_id);
    const got = await cb1.collect(3, 'msg');
    await cb2.collect(3, 'msg');
    const copies = await ca2.collect(3, 'msg');
    assert.deepEqual(copies.map((m) => m.msg_id), ids);
    assert.deepEqual(await ca1.quiet(isReceipt(), 200), [], 'no receipt before any ack');
    cb1.ack(got[2].seq);
    const r1 = await ca1.next(isReceipt());
    assertReceipt(r1, { status: 'delivered', from: alice.user, by: bob.user, msgIds: ids });
    const r2 = await ca2.next(isReceipt());
    assertReceipt(r2, { status: 'delivered', from: alice.user, by: bob.user, msgIds: ids });
    assert.equal(r2.seq, 4, 'a2 had 3 copies (seq 1-3): its receipt is seq 4');
    assert.equal(r1.seq, 1, 'a1 had no envelope before: its receipt is seq 1');
    // the second device's ack makes no second receipt; bob's devices get no delivered receipts
    const b2msgs = await cb2.quiet(() => false, 1);
    assert.deepEqual(b2msgs, []);
    cb2.ack(3);
    await cb2.roundTrip();
    assert.deepEqual(await ca1.quiet(isReceipt(), 400), [], 'a second device\'s ack must not make a second receipt');
    assert.deepEqual(await ca2.quiet(isReceipt(), 1), []);
    assert.deepEqual(await cb1.quiet(isReceipt(), 1), [], 'delivered receipts go to the sender only');
    assert.deepEqual(await cb2.quiet(isReceipt(), 1), []);
    await closeAll(ca1, ca2, cb1, cb2);
  });

  test('acking a copy on the sender\'s own device makes no receipt', async () => {
    const alice = await newUser(srv, 'cp', 'a1');
    const alice2 = await newDevice(srv, alice, 'a2');
    const bob = await newUser(srv, 'cp');
    const ca1 = await online(srv, alice);
    const ca2 = await online(srv, alice2);
    const s = await sendOk(ca1, 'c1', bob.user, 'copy');
    const copy = await ca2.next('msg');
    ca2.ack(copy.seq);
    await ca2.roundTrip();
    assert.deepEqual(await ca1.quiet(isReceipt(), 400), [], 'a copy acked by the sender\'s device is not a delivery');
    // bob's ack still makes the (first) delivered receipt
    const cb = await online(srv, bob);
    cb.ack(cb.initial[0].seq);
    const r = await ca1.next(isReceipt());
    assertReceipt(r, { status: 'delivered', from: alice.user, by: bob.user, msgIds: [s.msg_id] });
    await closeAll(ca1, ca2, cb);
  });

  test('one ack covering two senders → one delivered receipt per sender, with only their msg_ids', async () => {
    const alice = await newUser(srv, 'two');
    const carol = await newUser(srv, 'two');
    const bob = await newUser(srv, 'two');
    const ca = await online(srv, alice);
    const cc = await online(srv, carol);
    const a1 = await sendOk(ca, 'a1', bob.user, 'from alice 1');
    const c1 = await sendOk(cc, 'c1', bob.user, 'from carol 1');
    const a2 = await sendOk(ca, 'a2', bob.user, 'from alice 2');
    const cb = await online(srv, bob);
    assert.equal(cb.initial.length, 3);
    cb.ack(cb.initial.at(-1).seq);
    assertReceipt(await ca.next(isReceipt()), { status: 'delivered', from: alice.user, by: bob.user, msgIds: [a1.msg_id, a2.msg_id] });
    assertReceipt(await cc.next(isReceipt()), { status: 'delivered', from: carol.user, by: bob.user, msgIds: [c1.msg_id] });
    assert.deepEqual(await ca.quiet(isReceipt(), 300), []);
    assert.deepEqual(await cc.quiet(isReceipt(), 1), []);
    await closeAll(ca, cc, cb);
  });

  test('a later ack lists only the newly delivered msg_ids', async () => {
    const alice = await newUser(srv, 'inc');
    const bob = await newUser(srv, 'inc');
    const ca = await online(srv, alice);
    const cb = await online(srv, bob);
    const m1 = await sendOk(ca, 'i1', bob.user, 'one');
    const e1 = await cb.next('msg');
    cb.ack(e1.seq);
    assertReceipt(await ca.next(isReceipt()), { status: 'delivered', from: alice.user, by: bob.user, msgIds: [m1.msg_id] });
    const m2 = await sendOk(ca, 'i2', bob.user, 'two');
    const e2 = await cb.next('msg');
    cb.ack(e2.seq);
    assertReceipt(await ca.next(isReceipt()), { status: 'delivered', from: alice.user, by: bob.user, msgIds: [m2.msg_id] });
    cb.ack(e2.seq); // acking again: harmless, no receipt
    await cb.roundTrip();
    assert.deepEqual(await ca.quiet(isReceipt(), 300), []);
    await closeAll(ca, cb);
  });

  test('delivered and read receipts reach an offline sender later, as envelopes in seq order', async () => {
    const alice = await newUser(srv, 'offs', 'a1');
    const bob = await newUser(srv, 'offs');
    const ca = await online(srv, alice);
    const m1 = await sendOk(ca, 'o1', bob.user, 'while you were out 1');
    const m2 = await sendOk(ca, 'o2', bob.user, 'while you were out 2');
    await ca.close();
    // an observer device of alice, created after the sends: it sees the receipts live, which
    // tells us they exist (acks have no answer) before a1 comes back
    const observer = await online(srv, await newDevice(srv, alice, 'observer'), { name: 'observer' });
    const cb = await online(srv, bob);
    assert.deepEqual(cb.initial.map((m) => m.msg_id), [m1.msg_id, m2.msg_id]);
    cb.ack(cb.initial.at(-1).seq);
    cb.send({ type: 'read', peer: alice.user, msg_ids: [m1.msg_id, m2.msg_id] });
    await observer.next(isReceipt('delivered'));
    await observer.next(isReceipt('read'));
    await closeAll(cb, observer);
    const ca2 = await online(srv, alice);
    assert.equal(ca2.initial.length, 2, `alice's drain: ${JSON.stringify(ca2.initial)}`);
    const d = ca2.initial.find((e) => e.type === 'receipt' && e.status === 'delivered');
    const r = ca2.initial.find((e) => e.type === 'receipt' && e.status === 'read');
    assert.ok(d && r, `alice's drain must hold a delivered and a read receipt: ${JSON.stringify(ca2.initial)}`);
    assert.ok(d.seq < r.seq, `bob acked before he read, so the delivered receipt must come first: ` +
      `delivered seq ${d.seq}, read seq ${r.seq}`);
    assertReceipt(d, { status: 'delivered', from: alice.user, by: bob.user, msgIds: [m1.msg_id, m2.msg_id] });
    assertReceipt(r, { status: 'read', from: alice.user, by: bob.user, msgIds: [m1.msg_id, m2.msg_id] });
    assert.equal(r.seq, d.seq + 1);
    assert.deepEqual(ca2.synced, { type: 'synced', seq: r.seq });
    await ca2.close();
  });

  test('read → one read receipt to every sender device and to the reader\'s other devices', async () => {
    const alice = await newUser(srv, 'rd', 'a1');
    const alice2 = await newDevice(srv, alice, 'a2');
    const bob = await newUser(srv, 'rd', 'b1');
    const bob2 = await newDevice(srv, bob, 'b2');
    const [ca1, ca2, cb1, cb2] = await Promise.all([
      online(srv, alice, { name: 'a1' }), online(srv, alice2, { name: 'a2' }),
      online(srv, bob, { name: 'b1' }), online(srv, bob2, { name: 'b2' }),
    ]);
    const s1 = await sendOk(ca1, 'r1', bob.user, 'read me');
    const s2 = await sendOk(ca1, 'r2', bob.user, 'and me');
    const got = await cb1.collect(2, 'msg');
    await cb2.collect(2, 'msg');
    await ca2.collect(2, 'msg');
    cb1.ack(got[1].seq);
    await ca1.next(isReceipt('delivered'));
    await ca2.next(isReceipt('delivered'));
    cb1.send({ type: 'read', peer: alice.user.toUpperCase(), msg_ids: [s1.msg_id, s2.msg_id] }); // peer is lower-cased
    const want = { status: 'read', from: alice.user, by: bob.user, msgIds: [s1.msg_id, s2.msg_id] };
    assertReceipt(await ca1.next(isReceipt('read')), want);
    assertReceipt(await ca2.next(isReceipt('read')), want);
    assertReceipt(await cb2.next(isReceipt('read')), want);
    assert.deepEqual(await cb1.quiet(isReceipt(), 300), [], 'the reading device itself gets no receipt');
    for (const c of [ca1, ca2, cb2]) assert.deepEqual(await c.quiet(isReceipt(), 1), [], `${c.name}: more than one receipt`);
    await closeAll(ca1, ca2, cb1, cb2);
  });

  test('read with 0 ids or without peer → bad_request; the connection stays usable', async () => {
    const alice = await newUser(srv, 'rbad');
    const bob = await newUser(srv, 'rbad');
    const cb = await online(srv, bob);
    cb.send({ type: 'read', peer: alice.user, msg_ids: [] });
    let e = await cb.next(() => true);
    assert.equal(e.type, 'error', JSON.stringify(e));
    assert.equal(e.code, 'bad_request');
    cb.send({ type: 'read', peer: alice.user });
    e = await cb.next(() => true);
    assert.equal(e.code, 'bad_request', `read without msg_ids: ${JSON.stringify(e)}`);
    cb.send({ type: 'read', msg_ids: ['x'] });
    e = await cb.next(() => true);
    assert.equal(e.code, 'bad_request', `read without peer: ${JSON.stringify(e)}`);
    await cb.roundTrip();
    await cb.close();
  });

  test('a read may name only messages the reader received from peer: forged ids are dropped, none left → bad_request', async () => {
    const [alice, bob, mallory] = await Promise.all([newUser(srv, 'rf'), newUser(srv, 'rf'), newUser(srv, 'rf')]);
    const [ca, cb, cm] = await Promise.all([alice, bob, mallory].map((x) => online(srv, x)));
    const toBob = await sendOk(ca, 'f1', bob.user, 'for bob');
    const toMallory = await sendOk(ca, 'f2', mallory.user, 'for mallory');
    const mb = await cb.next('msg');
    await cm.next('msg');
    cb.ack(mb.seq);
    await ca.next(isReceipt('delivered'));
    ca.take(isReceipt());
    // made-up ids, markup, a real id of a message alice sent to somebody else, and alice's id
    // with its tag cut off: none of them was sent to mallory by alice
    const forged = ['01a2371507fd000000dc01bb46d9e9d2ab413e33de77', '<b>x</b>', toBob.msg_id,
      toBob.msg_id.slice(0, 28), 'x'.repeat(44)];
    cm.send({ type: 'read', peer: alice.user, msg_ids: forged });
    const e = await cm.next('error');
    assert.equal(e.code, 'bad_request', JSON.stringify(e));
    // bob cannot mark read as "by bob" what alice sent to mallory either
    cb.send({ type: 'read', peer: alice.user, msg_ids: [toMallory.msg_id] });
    assert.equal((await cb.next('error')).code, 'bad_request');
    assert.deepEqual(await ca.quiet(isReceipt('read'), 300), [], 'no read receipt for a forged read');
    // a real id among forged ones: only the real one is receipted
    cm.send({ type: 'read', peer: alice.user, msg_ids: [...forged, toMallory.msg_id] });
    const r = await ca.next(isReceipt('read'));
    assert.equal(r.by, mallory.user);
    assert.deepEqual(r.msg_ids, [toMallory.msg_id]);
    // an old message's read still works (the ids carry their own proof: nothing expires)
    cb.send({ type: 'read', peer: alice.user, msg_ids: [toBob.msg_id] });
    assert.deepEqual((await ca.next(isReceipt('read'))).msg_ids, [toBob.msg_id]);
    await closeAll(ca, cb, cm);
  });

  test('receipts are envelopes: redelivered until acked, gone after the ack', async () => {
    const alice = await newUser(srv, 'rack');
    const bob = await newUser(srv, 'rack');
    const ca = await online(srv, alice);
    const cb = await online(srv, bob);
    const s = await sendOk(ca, 'x1', bob.user, 'ack my receipt');
    const m = await cb.next('msg');
    cb.ack(m.seq);
    const r = await ca.next(isReceipt());
    await ca.close(); // without acking the receipt
    const ca2 = await online(srv, alice);
    assert.equal(ca2.initial.length, 1, `unacked receipt redelivered: ${JSON.stringify(ca2.initial)}`);
    assert.equal(ca2.initial[0].seq, r.seq);
    assert.deepEqual(ca2.initial[0].msg_ids, [s.msg_id]);
    ca2.ack(r.seq);
    await ca2.roundTrip();
    await ca2.close();
    const ca3 = await onlineAfterAck(srv, alice, (env) => env.length === 0);
    assert.deepEqual(ca3.initial, [], 'an acked receipt must not come back');
    await closeAll(ca3, cb);
  });
});
