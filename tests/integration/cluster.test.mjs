// Cluster mode under failure (issue 12, PROTOCOL.md 12): 3 ternd nodes on a real 3-server
// NATS JetStream cluster (R3), clients spread over the nodes by a round-robin proxy.
//   - clients on different nodes talk: messages, receipts, presence;
//   - a register race on two nodes: one name, one winner;
//   - a login race on two nodes for the last slots of devices.max_per_user: exactly that many;
//   - kill -9 of a ternd node under load: its clients reconnect to the others, and every
//     message answered `sent` is delivered once (after de-dup by msg_id), in order;
//   - kill -9 of one NATS server under load: /healthz says degraded, the same holds;
//   - kill -9 of everything, then a restart: the inboxes are intact.
// The plain suite runs this file; the cluster-label variant of the suite (TERN_TEST_CLUSTER)
// skips it, since it makes its own cluster either way.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { startCluster, waitFor, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { newUser, register, request, uniqueName, getUser, login, logout, me, goneEverywhere, PASSWORD } from './lib/api.mjs';
import { online, closeAll, ticksRound, tallyDelivered } from './lib/client.mjs';
import { startNats } from './lib/nats.mjs';
import { sender, receiver, attachReceiver, runSender, distinct, checkDelivered } from './lib/load.mjs';

const PAIRS = 3;
const PER_SENDER = Number(process.env.TERN_CLUSTER_LOAD || 1500);
const KILL_AFTER = Math.floor(PAIRS * PER_SENDER * 0.3); // `sent` answers before the kill

/** A node itself, reached directly rather than through the proxy (it has url and wsUrl). */
const direct = (node) => node;

async function healthz(node) {
  const r = await request(direct(node), 'GET', '/healthz');
  return { status: r.status, body: r.body };
}

/**
 * Runs PAIRS senders → receivers through srv until every sender has PER_SENDER messages
 * answered `sent`. Connections that die (a killed node) reconnect through the proxy, which
 * hands them to a live node, and send again what had no answer, with the same ids; a send
 * answered `unavailable` (no quorum for a moment) is sent again too. onSent(total) runs at
 * every `sent`. Returns the senders, the receivers and the ids each sender sent again.
 */
async function loadThrough(srv, prefix, onSent) {
  const senders = [];
  const receivers = [];
  for (let k = 0; k < PAIRS; k++) {
    const s = await newUser(srv, `${prefix}s${k}`);
    const r = await newUser(srv, `${prefix}r${k}`);
    senders.push(sender(s, r.user));
    receivers.push(receiver(r, s.user));
  }
  const conns = new Set();
  let stopped = false;
  // a connection through the proxy, or null after a short pause (its node just died)
  const tryOnline = (acct) => online(srv, acct).catch(() => new Promise((r) => setTimeout(() => r(null), 100)));
  // receivers stay online, reconnecting when their node dies
  const keepReceiving = async (rec) => {
    while (!stopped) {
      const c = await tryOnline(rec.acct);
      if (!c) continue;
      conns.add(c);
      rec.msgs.push(...c.initial.filter((e) => e.type === 'msg'));
      attachReceiver(c, rec);
      await c.closed;
      conns.delete(c);
    }
  };
  const receiving = receivers.map(keepReceiving);
  let total = 0;
  const all = Array.from({ length: PER_SENDER }, (_, i) => i);
  const retried = senders.map(() => new Set());
  await Promise.all(senders.map(async (st, k) => {
    let pause = 100;
    for (let round = 0; st.sent.size < PER_SENDER; round++) {
      assert.ok(round < 50, `${st.name}: still ${PER_SENDER - st.sent.size} unsent after 50 reconnects`);
      const c = await tryOnline(st.acct);
      if (!c) continue;
      conns.add(c);
      attachReceiver(c, st);
      const before = st.errors.length;
      const missing = all.filter((i) => !st.sent.has(i));
      if (round > 0) for (const i of missing) retried[k].add(i);
      await runSender(c, st, missing, () => onSent?.(++total));
      for (const e of st.errors.slice(before)) {
        assert.equal(e.code, 'unavailable', `${st.name}: error ${JSON.stringify(e)}`);
        retried[k].add(Number(e.id.slice(3)));
      }
      // as a client backs off: a resend can be answered unavailable for as long as another
      // node takes to roll back what a killed node left half committed (10 s)
      const refused = st.errors.length > before;
      st.errors.length = before;
      pause = refused ? Math.min(pause * 2, 1000) : 200;
      if (c.isOpen && st.sent.size < PER_SENDER) await new Promise((r) => setTimeout(r, pause));
      await c.close();
      conns.delete(c);
    }
  }));
  try {
    await waitFor(() => receivers.every((r) => distinct(r) >= PER_SENDER), {
      timeoutMs: 60000, intervalMs: 100, message: 'receivers to get every message',
    }).catch((e) => {
      throw new Error(`${e.message}: ${receivers.map((r) => `${r.name}=${distinct(r)}${missingOf(r)}`).join(' ')}`);
    });
  } finally {
    // the receivers stop reconnecting, pass or fail (a failure left them looping, and the file
    // then ran into ctest's timeout)
    stopped = true;
    await closeAll([...conns]);
    await Promise.allSettled(receiving);
  }
  return { senders, receivers, retried };
}

/** The client ids a receiver lacks, as ranges (" missing 12-36,40"), for a failure's message. */
function missingOf(rec) {
  const have = new Set(rec.msgs.map((m) => Number(m.body.split(':')[1])));
  const runs = [];
  for (let i = 0; i < PER_SENDER; i++) {
    if (have.has(i)) continue;
    let j = i;
    while (j + 1 < PER_SENDER && !have.has(j + 1)) j++;
    runs.push(i === j ? `${i}` : `${i}-${j}`);
    i = j;
  }
  return runs.length ? ` missing ${runs.slice(0, 8).join(',')}` : '';
}

/** The load's checks: every `sent` delivered once with its msg_id, in order (a resent id is a
 * later send, so the order check covers the others). */
function checkLoad({ senders, receivers, retried }) {
  for (let k = 0; k < PAIRS; k++) {
    assert.deepEqual(senders[k].conflicts.slice(0, 3), [], `${senders[k].name}: one id answered with two msg_ids`);
    const dups = checkDelivered(senders[k], receivers[k], new Map(), PER_SENDER, retried[k]);
    if (dups) console.log(`# ${receivers[k].name}: ${dups} redelivered duplicates (dropped by msg_id)`);
  }
}

/** Runs fn; a failure carries the end of every node's log. */
async function withLogs(srv, fn) {
  try {
    await fn();
  } catch (e) {
    // TERN_TEST_LOGS=<dir> keeps every node's whole log too (a failure hunt's loop)
    if (process.env.TERN_TEST_LOGS) {
      srv.nodes.forEach((n, i) => writeFileSync(`${process.env.TERN_TEST_LOGS}/node${i + 1}.log`, n.stderr()));
    }
    e.message += `\n${srv.nodes.map((n, i) => `----- node ${i + 1} -----\n${n.stderr().slice(-3000)}`).join('\n')}`;
    throw e;
  }
}

describe('cluster: 3 ternd nodes on a 3-server NATS cluster', { skip: CLUSTER_NODES ? 'the plain suite runs it' : false }, () => {
  let srv;
  before(async () => { srv = await startCluster(3, { args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); await srv?.nats?.close(); });

  test('clients on three nodes: a message, its receipts and presence cross the nodes', async () => {
    const alice = await newUser(direct(srv.nodes[0]), 'cla');
    const bob = await newUser(direct(srv.nodes[1]), 'clb');
    const ca = await online(direct(srv.nodes[2]), alice);
    const cb = await online(direct(srv.nodes[1]), bob);
    // bob, connected on node 2, is online as node 1 sees it
    await waitFor(async () => (await getUser(direct(srv.nodes[0]), alice.token, bob.user)).body.online === true, {
      timeoutMs: 5000, message: 'bob online as seen from node 1',
    });
    await ticksRound(ca, cb, { to: bob.user, from: alice.user, id: 'x1', body: 'across nodes' });
    await closeAll(ca, cb);
  });

  test('a register race on two nodes: one name, one winner', async () => {
    for (let i = 0; i < 8; i++) {
      const name = uniqueName('race');
      const [a, b] = await Promise.all([
        register(direct(srv.nodes[0]), name, undefined, 'a'),
        register(direct(srv.nodes[1]), name, undefined, 'b'),
      ]);
      const codes = [a.status, b.status].sort();
      assert.deepEqual(codes, [201, 409], `${name}: ${a.status} ${a.text} / ${b.status} ${b.text}`);
    }
  });

  test('kill -9 of a ternd node under load: clients reconnect elsewhere, every sent message delivered once, in order', { timeout: 300000 }, async () => {
    const victim = srv.nodes[1];
    let killing = null;
    // st.sent keeps every answer, those before the kill included: a resend answered with
    // another msg_id is a conflict, and each one must be delivered with its msg_id
    try {
      const load = await loadThrough(srv, 'kn', (total) => {
        if (total >= KILL_AFTER && !killing) killing = victim.kill9();
      });
      assert.ok(killing, 'the node was killed part-way');
      await killing;
      checkLoad(load);
    } finally {
      // the others still serve, the dead node is replaced by a restart (also after a
      // failure: the next tests send through every node)
      if (killing) {
        await killing;
        await victim.restart();
      }
    }
    assert.equal((await healthz(victim)).status, 200);
  });

  test('kill -9 of one NATS server under load: /healthz degraded, every sent message delivered once, in order', { timeout: 300000 }, () => withLogs(srv, async () => {
    let killing = null;
    const load = await loadThrough(srv, 'kq', (total) => {
      if (total >= KILL_AFTER && !killing) killing = srv.nats.kill(2);
    });
    assert.ok(killing, 'the NATS server was killed part-way');
    await killing;
    checkLoad(load);
    await waitFor(async () => (await healthz(srv.nodes[0])).body?.status === 'degraded', {
      timeoutMs: 20000, intervalMs: 200, message: '/healthz degraded with one NATS server of three gone',
    });
    await srv.nats.restart(2);
    for (const node of srv.nodes) {
      await waitFor(async () => (await healthz(node)).body?.status === 'ok', {
        timeoutMs: 30000, intervalMs: 200, message: '/healthz ok again on every node once the server is back',
      });
    }
  }));

  test('kill -9 of every node and NATS server, then a restart: inboxes intact', { timeout: 180000 }, () => withLogs(srv, async () => {
    const pairs = [];
    for (let k = 0; k < 3; k++) pairs.push([await newUser(srv, 'rsa'), await newUser(srv, 'rsb')]);
    const want = new Map();
    for (const [a, b] of pairs) {
      const c = await online(srv, a);
      const ids = [];
      for (let i = 0; i < 20; i++) {
        c.send({ type: 'send', id: `r${i}`, to: b.user, body: `kept ${i}` });
        // 15 s: the first commits after a NATS server rejoined can wait for its streams to
        // catch up (a 5 s wait timed out once on a loaded CI machine)
        ids.push((await c.next('sent', 15000)).msg_id);
      }
      want.set(b.user, ids);
      await c.close();
    }
    await Promise.all(srv.nodes.map((n) => n.kill9()));
    await Promise.all([0, 1, 2].map((i) => srv.nats.kill(i)));
    await Promise.all([0, 1, 2].map((i) => srv.nats.restart(i)));
    for (const n of srv.nodes) await n.restart();
    for (const [, b] of pairs) {
      const c = await online(srv, b);
      assert.deepEqual(c.initial.filter((e) => e.type === 'msg').map((e) => e.msg_id), want.get(b.user),
        `${b.user}: the inbox after the restart`);
      await c.close();
    }
  }));
});

// devices.max_per_user across nodes (issue 12): each node's directory learns the other's
// logins only through the feed, so logins racing on two nodes all found room there and the
// user got more devices than the limit. The store settles it now (the user's device index,
// written conditionally in the login's group): exactly MAX of the racing logins get 200.
describe('cluster: a login race for devices.max_per_user on 2 nodes', { skip: CLUSTER_NODES ? 'the plain suite runs it' : false }, () => {
  const MAX = 3;
  const PER_NODE = 4; // 8 logins at once for 3 slots
  let srv;
  let nats;
  // its own NATS (one server: the race is the same), since the suite above closes the shared one
  before(async () => {
    nats = await startNats({ servers: 1 });
    srv = await startCluster(2, { nats, args: [...FAST_LIMITS, '--devices-max-per-user', String(MAX)] });
  });
  after(async () => { await srv?.close(); await nats?.close(); });

  test('logins racing on two nodes: exactly max get 200, the rest 403 too_many_devices, max devices listed', async () => {
    await withLogs(srv, async () => {
      for (let round = 0; round < 3; round++) {
        // a user with no device left: every racing login is a first device on its node (the
        // user-level inbox moves with it)
        const u = await newUser(direct(srv.nodes[0]), 'dlim');
        assert.equal((await logout(direct(srv.nodes[0]), u.token)).status, 204);
        await goneEverywhere(srv, u.token);
        const tries = [];
        for (let i = 0; i < PER_NODE; i++)
          for (const node of srv.nodes) tries.push(login(direct(node), u.user, PASSWORD, `d${tries.length}`));
        const answers = await Promise.all(tries);
        const ok = answers.filter((r) => r.status === 200);
        const refused = answers.filter((r) => r.status === 403 && r.body?.error?.code === 'too_many_devices');
        const codes = answers.map((r) => r.status).join(' ');
        assert.equal(ok.length, MAX, `round ${round}: ${codes}`);
        assert.equal(refused.length, answers.length - MAX, `round ${round}: ${codes}`);
        // every node lists the winners, and only them (a refused login left no device)
        const winners = ok.map((r) => r.body.device_id).sort();
        for (const node of srv.nodes) {
          let listed;
          await waitFor(async () => {
            const m = await me(direct(node), ok[0].body.token);
            listed = m.status === 200 ? m.body.devices.map((d) => d.device_id).sort() : null;
            return JSON.stringify(listed) === JSON.stringify(winners);
          }, { timeoutMs: 10000, intervalMs: 100, message: `round ${round}: devices on ${node.url}: ${JSON.stringify(listed)} vs ${JSON.stringify(winners)}` });
        }
        // full in the store too: one more login on either node is refused
        const more = await login(direct(srv.nodes[round % 2]), u.user, PASSWORD, 'one more');
        assert.equal(more.status, 403, more.text);
      }
    });
  });
});

// A node that never comes back leaves the delivered group receipt parts its acks queued
// (~rq/<node>/<worker>, docs/architecture.md step 6) with nobody to read them: the live
// writer first by name adopts the queue once the node times out, and sends them.
describe('cluster: a node gone for good inside receipts.merge_window', { skip: CLUSTER_NODES ? 'the plain suite runs it' : false }, () => {
  let srv;
  let nats;
  before(async () => {
    nats = await startNats({ servers: 1 });
    srv = await startCluster(2, { nats, args: [...FAST_LIMITS, '--receipts-merge-window', '30s', '--cluster-node-timeout', '2s'] });
  });
  after(async () => { await srv?.close(); await nats?.close(); });

  test('its queued group delivered receipts reach the sender through the other node, once', async () => {
    await withLogs(srv, async () => {
      const [n1, n2] = srv.nodes.map(direct);
      const [a, b, c] = await Promise.all([newUser(n2, 'gq'), newUser(n1, 'gq'), newUser(n1, 'gq')]);
      const r = await request(n2, 'POST', '/v1/groups', { token: a.token, body: { name: 'gone', members: [b.user, c.user] } });
      assert.equal(r.status, 201, r.text);
      const g = r.body;
      const ca = await online(n2, a);
      const [cb, cc] = await Promise.all([online(n1, b), online(n1, c)]);
      const ids = [];
      for (let i = 0; i < 2; i++) {
        ca.send({ type: 'send', id: `q${i}`, group_id: g.group_id, body: `q${i}` });
        ids.push((await ca.next({ type: 'sent', id: `q${i}` })).msg_id);
      }
      for (const cl of [cb, cc]) {
        let last = 0;
        for (let i = 0; i < 2; i++) last = (await cl.next((f) => f.type === 'msg' && f.group_id === g.group_id)).seq;
        cl.ack(last);
        await cl.roundTrip();
      }
      await new Promise((res) => setTimeout(res, 500)); // the acks' store step (they answer nothing)
      await srv.nodes[0].kill9(); // and it stays down
      const by = new Map();
      await waitFor(async () => {
        tallyDelivered(by, ca.take((f) => f.type === 'receipt' && f.status === 'delivered'), g.group_id);
        return [b.user, c.user].every((u) => (by.get(u) ?? []).length === ids.length);
      }, { timeoutMs: 20000, intervalMs: 100, message: `delivered receipts of the gone node's members: ${JSON.stringify([...by])}` });
      for (const u of [b.user, c.user]) assert.deepEqual([...by.get(u)].sort(), [...ids].sort());
      assert.ok(n2.stderr().includes('group receipts of a queue no worker reads sent'), 'node 2 adopted the queue');
      await closeAll(ca, cb, cc);
    });
  });
});
