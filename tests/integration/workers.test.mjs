// The workers setting (issue 15 §4): one ternd with two worker loops on one port (SO_REUSEPORT).
// The kernel picks the worker of each connection; the tests learn it from the per-worker
// gauge tern_worker_connections{worker} (a WebSocket opened while nothing else changes moves
// exactly one worker's count), and place each client on the worker they need by opening
// connections until one lands there. Everything that crosses workers is then checked from both
// sides: 1:1 messages and receipts, presence, last seen and typing, groups, push, media, the
// spread of connections, clean shutdown and kill -9.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, sleep, waitFor, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { newUser, newDevice, request, getUser, metricsText, metricValue } from './lib/api.mjs';
import { online, connect, closeAll } from './lib/client.mjs';
import { makePng, upload, getMedia, sha256 } from './lib/media.mjs';

const WORKERS = ['--workers', '2'];

async function perWorker(srv, name = 'tern_worker_connections') {
  const t = await metricsText(srv);
  return [0, 1].map((w) => metricValue(t, `${name}{worker="${w}"}`));
}

let devices = 0;

/**
 * A client of account on worker w, on a device of its own (c.account: a device connects in one
 * place, so each try logs one more in). Connections landing elsewhere are kept open, so that no
 * count moves while the next one is placed, and go to spare, for the caller to close.
 */
async function onWorker(srv, account, w, spare) {
  for (let i = 0; i < 60; i++) {
    const dev = await newDevice(srv, account, `w${w}d${++devices}`);
    const before = await perWorker(srv);
    const c = await online(srv, dev);
    const after = await perWorker(srv);
    const moved = [0, 1].filter((k) => after[k] !== before[k]);
    assert.equal(moved.length, 1, `one worker's count moves per connection: ${before} → ${after}`);
    if (moved[0] === w) {
      c.worker = w;
      c.account = dev;
      return c;
    }
    spare.push(c);
  }
  throw new Error(`no connection landed on worker ${w} in 60 tries`);
}

describe('workers: one ternd, two loops', { skip: CLUSTER_NODES ? 'one node\'s workers' : false }, () => {
  let srv;
  const spare = [];
  before(async () => {
    srv = await startServer({ args: [...FAST_LIMITS, ...WORKERS] });
  });
  after(async () => {
    await closeAll(spare);
    await srv?.close();
  });

  test('the listening line names the workers, and /metrics has a series per worker', async () => {
    assert.match(srv.stderr(), /msg="?listening"?.* workers=2/);
    const t = await metricsText(srv);
    for (const w of [0, 1]) {
      assert.notEqual(metricValue(t, `tern_worker_connections{worker="${w}"}`), undefined, t);
      assert.notEqual(metricValue(t, `tern_worker_messages_sent_total{worker="${w}"}`), undefined, t);
    }
  });

  test('connections spread over both workers, and /metrics reports the process\'s total on any connection', async () => {
    const base = await perWorker(srv);
    const users = await Promise.all(Array.from({ length: 48 }, () => newUser(srv, 'sp')));
    const clients = [];
    for (const u of users) clients.push(await online(srv, u));
    const counts = await perWorker(srv);
    const added = counts.map((c, i) => c - base[i]);
    assert.equal(added[0] + added[1], 48, `per worker ${added}`);
    // binomial(48, 1/2): below 10 on one side happens about once in 10^5 runs
    assert.ok(added[0] >= 10 && added[1] >= 10, `both workers take connections: ${added}`);
    // every scrape (each on a fresh connection, so on either worker) sees all of them
    for (let i = 0; i < 6; i++) {
      const t = await metricsText(srv);
      const total = metricValue(t, 'tern_connections');
      assert.equal(total, base[0] + base[1] + 48, `scrape ${i}: tern_connections ${total}`);
    }
    await closeAll(clients);
  });

  test('1:1 message, delivered and read receipts between devices on different workers, both ways', async () => {
    const alice = await newUser(srv, 'xa');
    const bob = await newUser(srv, 'xb');
    const ca = await onWorker(srv, alice, 0, spare);
    const cb = await onWorker(srv, bob, 1, spare);
    for (const [from, to, cf, ct] of [[alice, bob, ca, cb], [bob, alice, cb, ca]]) {
      cf.send({ type: 'send', id: `m-${from.user}`, to: to.user, body: `hello from worker ${cf.worker}` });
      const sent = await cf.next('sent');
      const msg = await ct.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id);
      assert.equal(msg.from, from.user);
      assert.equal(msg.body, `hello from worker ${cf.worker}`);
      ct.ack(msg.seq);
      const dr = await cf.next((f) => f.type === 'receipt' && f.status === 'delivered');
      assert.deepEqual(dr.msg_ids, [sent.msg_id]);
      ct.send({ type: 'read', peer: from.user, msg_ids: [sent.msg_id] });
      const rr = await cf.next((f) => f.type === 'receipt' && f.status === 'read');
      assert.deepEqual(rr.msg_ids, [sent.msg_id]);
    }
    // the messages were counted by the sender's worker, delivered by the recipient's
    const t = await metricsText(srv);
    for (const w of [0, 1]) assert.ok(metricValue(t, `tern_worker_messages_sent_total{worker="${w}"}`) >= 1, t);
    await closeAll(ca, cb);
  });

  test('a message to a user with a device on each worker reaches both, and the sender\'s other device', async () => {
    const alice = await newUser(srv, 'ma');
    const bob = await newUser(srv, 'mb');
    const ca = await onWorker(srv, alice, 0, spare);
    const ca2 = await onWorker(srv, alice, 1, spare);
    const cb = await onWorker(srv, bob, 0, spare);
    const cb2 = await onWorker(srv, bob, 1, spare);
    ca.send({ type: 'send', id: 'multi', to: bob.user, body: 'to every device' });
    const sent = await ca.next('sent');
    for (const c of [cb, cb2]) assert.equal((await c.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id)).body, 'to every device');
    const copy = await ca2.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id);
    assert.equal(copy.to, bob.user, JSON.stringify(copy));
    await closeAll(ca, ca2, cb, cb2);
  });

  test('presence, last seen and typing across workers; GET /v1/users on either worker', async () => {
    const watcher = await newUser(srv, 'pw');
    const bob = await newUser(srv, 'pb');
    const cw = await onWorker(srv, watcher, 0, spare);
    const cb = await onWorker(srv, bob, 1, spare);
    cw.send({ type: 'watch', users: [bob.user] });
    const p1 = await cw.next((f) => f.type === 'presence' && f.user === bob.user);
    assert.equal(p1.online, true, JSON.stringify(p1));
    // each request is a fresh connection: over a dozen, both workers answer
    for (let i = 0; i < 12; i++) {
      const r = await getUser(srv, watcher.token, bob.user);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.online, true, `request ${i}: ${r.text}`);
    }
    cb.send({ type: 'typing', to: watcher.user, state: 'composing' });
    const ty = await cw.next((f) => f.type === 'typing');
    assert.equal(ty.from, bob.user, JSON.stringify(ty));
    await closeAll(spare.splice(0)); // bob's other devices: only cb keeps him online
    const t0 = Date.now();
    await cb.close();
    const p2 = await cw.next((f) => f.type === 'presence' && f.user === bob.user && f.online === false);
    assert.equal(typeof p2.last_seen, 'number', JSON.stringify(p2));
    assert.ok(Math.abs(p2.last_seen - t0) < 5000, `last_seen ${p2.last_seen} near ${t0}`);
    for (let i = 0; i < 8; i++) {
      const r = await getUser(srv, watcher.token, bob.user);
      assert.equal(r.body.online, false, `request ${i}: ${r.text}`);
      assert.equal(r.body.last_seen, p2.last_seen, `request ${i}: ${r.text}`);
    }
    await closeAll(cw);
  });

  test('a group message fans out to members on both workers', async () => {
    const owner = await newUser(srv, 'go');
    const m1 = await newUser(srv, 'g1');
    const m2 = await newUser(srv, 'g2');
    const g = await request(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'workers', members: [m1.user, m2.user] } });
    assert.equal(g.status, 201, g.text);
    const co = await onWorker(srv, owner, 0, spare);
    const c1 = await onWorker(srv, m1, 1, spare);
    const c2 = await onWorker(srv, m2, 0, spare);
    co.send({ type: 'send', id: 'g', group_id: g.body.group_id, body: 'to the group' });
    const sent = await co.next('sent');
    for (const c of [c1, c2]) {
      const m = await c.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id);
      assert.equal(m.group_id, g.body.group_id);
      assert.equal(m.body, 'to the group');
      c.ack(m.seq);
    }
    await closeAll(co, c1, c2);
  });

  test('media: uploads on either worker, sent and fetched across workers', async () => {
    const alice = await newUser(srv, 'mda');
    const bob = await newUser(srv, 'mdb');
    const ca = await onWorker(srv, alice, 1, spare);
    const cb = await onWorker(srv, bob, 0, spare);
    const ids = [];
    // every upload is a fresh connection; go on until each worker has taken at least one
    for (let i = 0; i < 40 && !(/media uploaded.* worker=0/.test(srv.stderr()) && /media uploaded.* worker=1/.test(srv.stderr())); i++) {
      const img = makePng(24 + i, 24, { fill: 'noise' });
      const r = await upload(srv, alice.token, img, 'image/png');
      assert.equal(r.status, 201, r.body.toString());
      assert.equal(r.json.sha256, sha256(img));
      ids.push({ id: r.json.media_id, bytes: img });
    }
    assert.match(srv.stderr(), /media uploaded.* worker=0/);
    assert.match(srv.stderr(), /media uploaded.* worker=1/);
    for (const { id, bytes } of ids) {
      ca.send({ type: 'send', id: `p-${id}`, to: bob.user, media: { media_id: id } });
      const sent = await ca.next('sent');
      const m = await cb.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id);
      assert.equal(m.media.media_id, id);
      // bob may read it now, on whichever worker his request lands (the grant is ahead of it)
      const thumb = await getMedia(srv, bob.token, id, { thumb: true });
      assert.equal(thumb.status, 200);
      const etag = thumb.headers.etag;
      assert.ok(etag);
      const nm = await getMedia(srv, bob.token, id, { thumb: true, headers: { 'if-none-match': etag } });
      assert.equal(nm.status, 304);
      const got = await getMedia(srv, bob.token, id);
      assert.equal(got.status, 200);
      assert.ok(got.body.equals(bytes), 'the bytes uploaded');
      // a stranger never can
      const carol = await newUser(srv, 'mdc');
      assert.equal((await getMedia(srv, carol.token, id)).status, 404);
    }
    await closeAll(ca, cb);
  });

  test('an upload refused by the media worker (quota) says so with Retry-After, from either worker', async () => {
    const s2 = await startServer({ args: [...FAST_LIMITS, ...WORKERS, '--media-quota-bytes-per-hour', '10KiB'] });
    try {
      const alice = await newUser(s2, 'qa');
      const img = makePng(64, 64, { fill: 'noise', level: 0 }); // about 12 KiB
      assert.equal((await upload(s2, alice.token, img, 'image/png')).status, 201);
      for (let i = 0; i < 10; i++) {
        const r = await upload(s2, alice.token, makePng(64, 64, { fill: 'noise', level: 0 }), 'image/png');
        assert.equal(r.status, 429, r.body.toString());
        assert.equal(r.json.error.code, 'rate_limited');
        assert.ok(Number(r.headers['retry-after']) >= 1, JSON.stringify(r.headers));
      }
    } finally {
      await s2.close();
    }
  });
});

describe('workers: push, limits, shutdown, kill -9', { skip: CLUSTER_NODES ? 'one node\'s workers' : false }, () => {
  test('no push while the device is connected on the other worker; one once it is offline', async () => {
    const hits = [];
    const gw = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => { hits.push(JSON.parse(body)); res.writeHead(200).end(); });
    });
    await new Promise((r) => gw.listen(0, '127.0.0.1', r));
    const srv = await startServer({
      args: [...FAST_LIMITS, ...WORKERS, '--push-webhook-url', `http://127.0.0.1:${gw.address().port}/hook`,
        '--push-webhook-secret', 'a secret of some length', '--push-coalesce', '200ms'],
    });
    const spare = [];
    try {
      const alice = await newUser(srv, 'pua');
      const bob = await newUser(srv, 'pub');
      const ca = await onWorker(srv, alice, 0, spare);
      const cb = await onWorker(srv, bob, 1, spare);
      const reg = await request(srv, 'PUT', '/v1/push', { token: cb.account.token, body: { provider: 'webhook', token: 'bob-phone' } });
      assert.equal(reg.status, 204, reg.text);
      ca.send({ type: 'send', id: 'on', to: bob.user, body: 'bob is online' });
      await ca.next('sent');
      await cb.next('msg');
      await sleep(800);
      assert.equal(hits.length, 0, `no push for a connected device: ${JSON.stringify(hits)}`);
      await closeAll(spare.splice(0)); // bob's other devices: only cb keeps him online
      await cb.close();
      await waitFor(async () => (await getUser(srv, alice.token, bob.user)).body.online === false, { message: 'bob offline' });
      ca.send({ type: 'send', id: 'off', to: bob.user, body: 'bob is away' });
      await ca.next('sent');
      await waitFor(() => hits.length >= 1, { timeoutMs: 5000, message: 'a push to the offline device' });
      await closeAll(ca);
    } finally {
      await closeAll(spare);
      await srv.close();
      gw.close();
    }
  });

  test('per-address connection limits hold for the process, not per worker', async () => {
    const srv = await startServer({ args: [...FAST_LIMITS, ...WORKERS, '--limits-conn-per-ip', '6'] });
    const socks = [];
    try {
      const results = [];
      for (let i = 0; i < 10; i++) {
        try {
          socks.push(await connect(srv));
          results.push('open');
        } catch {
          results.push('refused');
        }
      }
      await sleep(300);
      const open = socks.filter((c) => c.ws.readyState === 1).length;
      assert.equal(open, 6, `6 of 10 stay open across both workers: ${results} / open ${open}`);
      await closeAll(socks.splice(0));
      await sleep(300);
      const t = await metricsText(srv);
      assert.equal(metricValue(t, 'tern_limited_total{limit="conn_per_ip"}'), 4, t);
    } finally {
      await closeAll(socks);
      await srv.close();
    }
  });

  test('SIGTERM closes the clients of every worker (1001) and exits 0; what was sent survives', async () => {
    const srv = await startServer({ args: [...FAST_LIMITS, ...WORKERS] });
    const spare = [];
    const alice = await newUser(srv, 'sa');
    const bob = await newUser(srv, 'sb');
    const ca = await onWorker(srv, alice, 0, spare);
    const cb = await onWorker(srv, bob, 1, spare);
    for (let i = 0; i < 5; i++) ca.send({ type: 'send', id: `s${i}`, to: bob.user, body: `before stop ${i}` });
    await ca.collect(5, (f) => f.type === 'sent');
    await cb.collect(5, (f) => f.type === 'msg'); // not acked: stays stored
    const code = await srv.stop(15000);
    assert.equal(code, 0, srv.stderr());
    for (const c of [ca, cb, ...spare]) {
      await c.closed;
      assert.equal(c.closeInfo.code, 1001, JSON.stringify(c.closeInfo));
    }
    assert.equal((srv.stderr().match(/msg="?shutting down"?/g) || []).length, 2, 'each worker shuts down');
    await srv.restart();
    const cb2 = await online(srv, bob);
    assert.deepEqual(cb2.initial.map((m) => m.body), [0, 1, 2, 3, 4].map((i) => `before stop ${i}`));
    await closeAll(cb2);
    await srv.close();
  });

  test('kill -9 with senders on both workers: every message answered "sent" is there after a restart', async () => {
    const srv = await startServer({ args: [...FAST_LIMITS, ...WORKERS] });
    const spare = [];
    const alice = await newUser(srv, 'ka');
    const carol = await newUser(srv, 'kc');
    const bob = await newUser(srv, 'kb');
    const ca = await onWorker(srv, alice, 0, spare);
    const cc = await onWorker(srv, carol, 1, spare);
    const sentIds = new Set();
    const sendMany = async (c, tag) => {
      for (let i = 0; i < 100; i++) c.send({ type: 'send', id: `${tag}${i}`, to: bob.user, body: `${tag} ${i}` });
      const answers = await c.collect(100, (f) => f.type === 'sent');
      for (const a of answers) sentIds.add(a.msg_id);
    };
    await Promise.all([sendMany(ca, 'a'), sendMany(cc, 'c')]);
    await srv.kill9();
    await srv.restart();
    const cb = await online(srv, bob);
    const got = new Set(cb.initial.map((m) => m.msg_id));
    assert.equal(sentIds.size, 200);
    for (const id of sentIds) assert.ok(got.has(id), `message ${id} answered sent is stored`);
    await closeAll(cb, spare);
    await srv.close();
  });
});
