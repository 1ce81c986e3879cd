// Crash durability (issue 2): kill -9 while 4 clients send 20,000 messages; every message that
// got `sent` is delivered exactly once (after de-dup by msg_id) and in order. And a clean
// SIGTERM shutdown: 1001 closes, every send answered, exit 0.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, waitFor, within, FAST_LIMITS } from './lib/server.mjs';
import { newUser, metric } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';
import { sender, receiver, attachReceiver, runSender, distinct, checkDelivered } from './lib/load.mjs';

const SENDERS = 4;
const PER_SENDER = 5000;
const KILL_AFTER = 8000; // total `sent` answers seen before kill -9

describe('crash durability', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); });

  test('kill -9 during 20,000 sends: every sent message is delivered exactly once, in order', { timeout: 240000 }, async () => {
    const senders = [];
    const receivers = [];
    for (let k = 0; k < SENDERS; k++) {
      const s = await newUser(srv, `crs${k}`);
      const r = await newUser(srv, `crr${k}`);
      senders.push(sender(s, r.user));
      receivers.push(receiver(r, s.user));
    }
    // phase 1: everyone online, senders blast, kill -9 part-way
    const rc1 = await Promise.all(receivers.map((r) => online(srv, r.acct)));
    rc1.forEach((c, k) => { receivers[k].msgs.push(...c.initial); attachReceiver(c, receivers[k]); });
    const sc1 = await Promise.all(senders.map((s) => online(srv, s.acct)));
    sc1.forEach((c, k) => attachReceiver(c, senders[k]));
    let total = 0;
    let killing = null;
    const onSent = () => {
      if (++total >= KILL_AFTER && !killing) killing = srv.kill9();
    };
    const all = Array.from({ length: PER_SENDER }, (_, i) => i);
    const outcomes = await Promise.all(sc1.map((c, k) => runSender(c, senders[k], all, onSent)));
    assert.ok(killing, `the senders finished (${outcomes}) before ${KILL_AFTER} sent answers: ${total}`);
    await killing;
    await Promise.all([...sc1, ...rc1].map((c) => c.closed));
    const sentBefore = senders.map((s) => new Map(s.sent));
    const nBefore = sentBefore.reduce((n, m) => n + m.size, 0);
    assert.ok(nBefore >= KILL_AFTER && nBefore < SENDERS * PER_SENDER,
      `kill -9 happened after ${nBefore} sent answers: not part-way`);
    for (const s of senders) assert.deepEqual(s.errors.slice(0, 3), [], `${s.name}: errors before the crash`);

    // phase 2: restart on the same data dir, receivers drain, senders resend what had no answer
    await srv.restart();
    const rc2 = await Promise.all(receivers.map((r) => online(srv, r.acct)));
    rc2.forEach((c, k) => { receivers[k].msgs.push(...c.initial); attachReceiver(c, receivers[k]); });
    const sc2 = await Promise.all(senders.map((s) => online(srv, s.acct)));
    sc2.forEach((c, k) => { senders[k].receipts.push(...c.initial.filter((e) => e.type === 'receipt')); attachReceiver(c, senders[k]); });
    const results = await Promise.all(sc2.map((c, k) => {
      const missing = all.filter((i) => !senders[k].sent.has(i));
      return runSender(c, senders[k], missing);
    }));
    assert.deepEqual(results, ['done', 'done', 'done', 'done'], 'a sender connection died during the resend');
    for (const s of senders) {
      assert.deepEqual(s.errors.slice(0, 3), [], `${s.name}: errors on resend`);
      assert.equal(s.sent.size, PER_SENDER, `${s.name}: ${s.sent.size} of ${PER_SENDER} sent`);
      assert.deepEqual(s.conflicts.slice(0, 3), [], `${s.name}: one id answered with two msg_ids`);
    }
    await waitFor(() => receivers.every((r) => distinct(r) >= PER_SENDER), {
      timeoutMs: 60000, intervalMs: 100,
      message: 'receivers to get every message',
    }).catch((e) => {
      throw new Error(`${e.message}: ${receivers.map((r) => `${r.name}=${distinct(r)}`).join(' ')}`);
    });

    for (let k = 0; k < SENDERS; k++) {
      const dups = checkDelivered(senders[k], receivers[k], sentBefore[k], PER_SENDER);
      if (dups) console.log(`# ${receivers[k].name}: ${dups} redelivered duplicates (dropped by msg_id; delivery is at least once)`);
    }
    // every envelope acked everywhere (receivers' msgs, senders' receipts) → the store is empty
    await waitFor(async () => (await metric(srv, 'tern_inbox_envelopes')) === 0, {
      timeoutMs: 20000, intervalMs: 100, message: 'tern_inbox_envelopes 0 after every envelope was acked',
    });
    await closeAll(rc2, sc2);
  });
});

describe('SIGTERM shutdown', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); });

  test('SIGTERM: every send is answered before close 1001 on every connection, exit 0, nothing unanswered is delivered', async () => {
    const alice = await newUser(srv, 'term');
    const bob = await newUser(srv, 'term');
    const carol = await newUser(srv, 'idle');
    // In a cluster, the three connect to the node that is stopped; bob comes back on any node.
    const node = srv.nodes ? srv.nodes[0] : srv;
    const cb = await online(node, bob);
    const cc = await online(node, carol);
    const ca = await online(node, alice);
    const bobMsgs = [];
    cb.tap = (f) => { if (f.type === 'msg') { bobMsgs.push(f); return true; } return false; };
    const answers = [];
    let signalled = false;
    ca.tap = (f) => {
      if (f.type !== 'sent' && f.type !== 'error') return false;
      answers.push(f);
      if (answers.length === 100 && !signalled) { signalled = true; node.proc.kill('SIGTERM'); }
      return true;
    };
    const N = 20000;
    for (let i = 0; i < N; i++) ca.send({ type: 'send', id: `t${i}`, to: bob.user, body: `term ${i}` });
    const exit = await within(node.exited, 15000, 'timeout');
    assert.notEqual(exit, 'timeout', 'ternd did not exit within 15 s of SIGTERM');
    assert.ok(signalled, `the server answered only ${answers.length} sends before it was signalled`);
    assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}\n${node.stderr().slice(-2000)}`);
    for (const [c, who] of [[ca, 'sender'], [cb, 'receiver'], [cc, 'idle client']]) {
      const info = await c.closed;
      assert.equal(info.code, 1001, `${who} closed with ${info.code}, not 1001`);
    }
    const ids = answers.map((a) => a.id);
    assert.equal(new Set(ids).size, ids.length, 'a send was answered twice');
    const errs = answers.filter((a) => a.type !== 'sent');
    assert.deepEqual(errs.slice(0, 3), [], 'errors during shutdown');
    // sends are handled in order, so the answered ones are a prefix of what was sent
    ids.forEach((id, k) => assert.equal(id, `t${k}`, `answer ${k} is for ${id}`));
    console.log(`# ${answers.length} of ${N} sends answered before the shutdown`);

    await node.restart();
    // Up to 20,000 stored messages: on a cluster a drain batch whose ordered consumer does
    // not start waits for it (up to 4 s, then direct gets); what is checked is that nothing
    // is lost, so the drain gets 30 s (CI once saw 5 s pass at 929 ms into it).
    const t0 = Date.now();
    const cb2 = await online(srv, bob, { syncMs: 30000 });
    console.log(`# ${cb2.initial.length} messages drained after the restart in ${Date.now() - t0} ms`);
    const delivered = new Map();
    for (const m of [...bobMsgs, ...cb2.initial]) delivered.set(m.msg_id, m);
    const sentIds = new Map(answers.filter((a) => a.type === 'sent').map((a) => [a.msg_id, a.id]));
    for (const [msgId, id] of sentIds) assert.ok(delivered.has(msgId), `${id} got sent but was lost by the shutdown`);
    for (const [msgId, m] of delivered) {
      assert.ok(sentIds.has(msgId), `${m.body} was stored (delivered as ${msgId}) but its send was never answered`);
    }
    await cb2.close();
  });
});
