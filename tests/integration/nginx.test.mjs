// nginx in front of a cluster (issue 12, docs/operations.md "nginx in front"): the nginx
// blocks of docs/operations.md, cut out between their marker comments, with loopback ports in
// place of the addresses, in front of 3 ternd nodes on a real 3-server NATS cluster:
//   - /healthz through nginx; /metrics is not served;
//   - register, then chat over WebSockets through nginx between two users whose connections
//     land on different nodes: messages and receipts both ways;
//   - kill -9 of one node: its client reconnects through nginx to a live node and loses
//     nothing, new connections and requests go to the live nodes;
//   - drain as the page says: the node marked `down` and nginx reloaded, then SIGTERM: open
//     connections stay until the 1001, new ones go elsewhere, nothing is lost.
// docs/examples/nginx-tern.conf (the TLS variant) must have the same upstream and locations.
// nginx runs unprivileged in a temp dir (-p, its own error log and pid file). Skipped only
// when nginx is not installed (scripts/install-deps installs it).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startCluster, waitFor, makeTempDir, FAST_LIMITS, REPO_ROOT } from './lib/server.mjs';
import { startNats, freePort } from './lib/nats.mjs';
import { newUser, request, metricsText, metricValue } from './lib/api.mjs';
import { online, closeAll, ticksRound } from './lib/client.mjs';

const NGINX = [process.env.NGINX, '/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => p && existsSync(p));
const DOC = path.join(REPO_ROOT, 'docs', 'operations.md');
const EXAMPLE = path.join(REPO_ROOT, 'docs', 'examples', 'nginx-tern.conf');

/** The nginx block of docs/operations.md between its markers. */
function docBlock() {
  const text = readFileSync(DOC, 'utf8');
  const m = /<!-- nginx-tern:begin[^>]*-->\s*```nginx\n([\s\S]*?)```\s*<!-- nginx-tern:end -->/.exec(text);
  assert.ok(m, `${DOC}: no nginx block between <!-- nginx-tern:begin --> and <!-- nginx-tern:end -->`);
  return m[1];
}

/** A block `head { ... }` of an nginx config (braces counted), comments and blank lines gone. */
function section(conf, head) {
  const clean = conf.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean).join('\n');
  const i = clean.indexOf(head + ' {');
  assert.ok(i >= 0, `no "${head} {" block`);
  let depth = 0;
  for (let j = i; j < clean.length; j++) {
    if (clean[j] === '{') depth++;
    if (clean[j] === '}' && --depth === 0) return clean.slice(i, j + 1);
  }
  throw new Error(`"${head} {" is not closed`);
}

/** nginx's worker processes (pid → title), children of the master. */
function workers(master) {
  const out = new Map();
  let kids = [];
  try { kids = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/).filter(Boolean); } catch { /* none */ }
  for (const k of kids) {
    try { out.set(Number(k), readFileSync(`/proc/${k}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()); } catch { /* gone */ }
  }
  return out;
}

/** Open WebSockets per node, read from each node's /metrics directly. */
async function wsPerNode(nodes) {
  return Promise.all(nodes.map(async (n) => {
    if (n.proc.exitCode !== null || n.proc.signalCode !== null) return 0;
    return metricValue(await metricsText(n), 'tern_connections') ?? 0;
  }));
}

/** The warnings and errors at the end of every node's log, for a failure's message. */
function nodeLogs(srv) {
  return srv.nodes.map((n, i) => `----- node ${i + 1} -----\n${n.stderr().split('\n').filter((l) => /level=(warn|error)/.test(l)).slice(-30).join('\n')}`).join('\n');
}

describe('nginx in front of 3 ternd nodes (the config of docs/operations.md)', {
  skip: NGINX ? false : 'nginx is not installed (scripts/install-deps installs it)',
}, () => {
  let nats;
  let srv; // the cluster; srv.nodes are the nodes
  let dir;
  let conf;
  let nginx;
  let nginxLog = '';
  let front; // nginx, as a server object for lib/api.mjs and lib/client.mjs
  let site; // the docs' block with the ports filled in
  const sitePath = () => path.join(dir, 'tern.conf');

  /** nginx with these arguments after the common ones (-p, -c, -e, -g). */
  const nginxArgs = (...more) => ['-p', `${dir}/`, '-c', conf, '-e', path.join(dir, 'error.log'),
    '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`, ...more];

  /** Which node's WebSocket count went up between two wsPerNode() readings. */
  async function landedOn(beforeCounts) {
    return waitFor(async () => {
      const now = await wsPerNode(srv.nodes);
      const i = now.findIndex((v, k) => v > beforeCounts[k]);
      return i >= 0 ? { node: i } : null;
    }, { timeoutMs: 3000, message: 'a node with one WebSocket more' });
  }

  /** online() through nginx; returns the client and the index of the node it landed on. */
  async function onlineVia(acct) {
    const b = await wsPerNode(srv.nodes);
    const c = await online(front, acct);
    const { node } = await landedOn(b);
    return { c, node };
  }

  before(async () => {
    nats = await startNats({ servers: 3 });
    srv = await startCluster(3, { args: FAST_LIMITS, nats });
    dir = makeTempDir('tern-nginx-');
    const port = await freePort();
    let servers = 0;
    site = docBlock()
      .replace(/\bserver 10\.0\.0\.\d+:8080/g, (s) => {
        const n = srv.nodes[servers++];
        return n ? `server 127.0.0.1:${n.port}` : s;
      })
      .replace(/^(\s*)listen 80;/m, `$1listen 127.0.0.1:${port};`);
    assert.equal(servers, 3, 'the docs block names three nodes (server 10.0.0.x:8080 lines)');
    assert.ok(site.includes(`listen 127.0.0.1:${port};`), 'the docs block has "listen 80;"');
    writeFileSync(sitePath(), site);
    conf = path.join(dir, 'nginx.conf');
    writeFileSync(conf, [
      // as root (CI), nginx's workers would switch to nobody, who cannot read the temp dir
      process.getuid?.() === 0 ? 'user root root;' : '',
      'worker_processes 1;',
      'events { worker_connections 1024; }',
      'http {',
      `  access_log ${path.join(dir, 'access.log')};`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${path.join(dir, t)};`),
      `  include ${sitePath()};`,
      '}',
      '',
    ].join('\n'));
    const t = spawnSync(NGINX, nginxArgs('-t'), { encoding: 'utf8' });
    assert.equal(t.status, 0, `nginx -t refuses the docs' config:\n${t.stderr}\n${site}`);
    nginx = spawn(NGINX, nginxArgs(), { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr.setEncoding('utf8').on('data', (d) => { nginxLog += d; });
    process.on('exit', () => { try { nginx.kill('SIGKILL'); } catch { /* gone */ } });
    front = { url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/v1/ws`, cluster: true };
    await waitFor(async () => (await request(front, 'GET', '/healthz').catch(() => ({}))).status === 200, {
      timeoutMs: 10000, message: `nginx answering on ${port}`,
    });
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      const gone = new Promise((r) => nginx.once('exit', r));
      nginx.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
      try { nginx.kill('SIGKILL'); } catch { /* gone */ }
    }
    const errors = existsSync(path.join(dir || '/nonexistent', 'error.log'))
      ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
    if (nginxLog || /\[(emerg|alert|crit)\]/.test(errors)) console.log(`# nginx said:\n${nginxLog}\n${errors}`);
    await srv?.close();
    await nats?.close();
  });

  test('docs/examples/nginx-tern.conf has the same upstream and locations as the tested block', () => {
    const example = readFileSync(EXAMPLE, 'utf8');
    const doc = docBlock();
    for (const head of ['map $http_upgrade $tern_connection', 'upstream tern_nodes', 'location = /metrics',
      'location = /healthz', 'location /']) {
      assert.equal(section(example, head), section(doc, head), `${head}: docs/examples/nginx-tern.conf differs from docs/operations.md`);
    }
  });

  test('/healthz through nginx is 200 ok; /metrics is not served', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(front, 'GET', '/healthz');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.status, 'ok');
    }
    assert.equal((await request(front, 'GET', '/metrics')).status, 404);
  });

  let alice;
  let bob;
  let ca;
  let cb;

  test('register and chat through nginx, the two users on different nodes: messages and receipts', async () => {
    alice = await newUser(front, 'nga');
    bob = await newUser(front, 'ngb');
    const xa = await onlineVia(alice);
    ca = xa.c;
    ca.node = xa.node;
    for (let i = 0; i < 6; i++) {
      const x = await onlineVia(bob);
      cb = x.c;
      cb.node = x.node;
      if (cb.node !== ca.node) break;
      await cb.close(); // least_conn spreads them; this is only in case of a tie
    }
    assert.notEqual(cb.node, ca.node, 'bob landed on alice\'s node every time');
    await ticksRound(ca, cb, { to: bob.user, from: alice.user, id: 'h1', body: 'hello through nginx' });
    await ticksRound(cb, ca, { to: alice.user, from: bob.user, id: 'h2', body: 'and back' });
  });

  test('kill -9 of a node: its client reconnects through nginx and loses nothing; new connections go to live nodes', async () => {
    assert.ok(ca && cb, 'the chat test ran');
    const victim = cb.node;
    const N = 60;
    const KILL_AT = 20;
    const got = []; // msg_ids bob received, every connection, in order
    const onLive = new Set(); // those received (and acked) on his connection after the kill
    const receive = (c, live) => {
      c.tap = (f) => {
        if (f.type !== 'msg') return false;
        got.push(f.msg_id);
        if (live) onLive.add(f.msg_id);
        c.ack(f.seq);
        return true;
      };
    };
    receive(cb);
    const delivered = new Set();
    ca.tap = (f) => {
      if (f.type === 'receipt' && f.status === 'delivered') { for (const id of f.msg_ids) delivered.add(id); return true; }
      return false;
    };
    const ids = [];
    let killed = null;
    for (let i = 0; i < N; i++) {
      if (i === KILL_AT) killed = srv.nodes[victim].kill9();
      ca.send({ type: 'send', id: `k${i}`, to: bob.user, body: `m${i}` });
      const s = await ca.next({ type: 'sent', id: `k${i}` }, 10000);
      ids.push(s.msg_id);
    }
    await killed;
    await cb.closed; // bob's connection died with its node
    // bob comes back through nginx, which skips the dead node
    const b = await wsPerNode(srv.nodes);
    const cb2 = await online(front, bob);
    for (const e of cb2.initial) if (e.type === 'msg') { got.push(e.msg_id); onLive.add(e.msg_id); cb2.ack(e.seq); }
    receive(cb2, true);
    const { node } = await landedOn(b);
    assert.notEqual(node, victim, 'bob reconnected to the dead node?');
    await waitFor(() => ids.every((id) => got.includes(id)), {
      timeoutMs: 15000, message: 'bob to have every message alice was answered `sent` for',
    }).catch((e) => { throw new Error(`${e.message}: ${ids.filter((id) => !got.includes(id)).length} of ${N} missing`); });
    // in the order they were sent (a redelivered one after the kill counts where it came first)
    const firsts = [...new Set(got)].filter((id) => ids.includes(id));
    assert.deepEqual(firsts, ids, 'bob got them in order');
    // Every message acked on a live node has its delivered receipt. One acked on the killed
    // node just before the kill is checked less: its ack commits its receipt with it, but
    // the receipt then waits behind whatever that node left half committed in alice's
    // inbox (rolled by a live node after 10 s), so it is counted, not waited for.
    const want = ids.filter((id) => onLive.has(id));
    assert.ok(want.length >= N - KILL_AT, `bob acked ${want.length} messages after the kill`);
    await waitFor(() => want.every((id) => delivered.has(id)), {
      timeoutMs: 15000, message: 'alice to have a delivered receipt for every message acked on a live node',
    }).catch((e) => {
      throw new Error(`${e.message}: none for ${ids.map((id, i) => (delivered.has(id) || !onLive.has(id) ? -1 : i)).filter((i) => i >= 0)} (killed at ${KILL_AT})\n${nodeLogs(srv)}`);
    });
    const lost = ids.map((id, i) => (delivered.has(id) ? -1 : i)).filter((i) => i >= 0);
    if (lost.length) console.log(`# no delivered receipt for messages ${lost} (acked on the killed node just before the kill at ${KILL_AT})`);
    // new users, new requests and new connections all reach live nodes through nginx
    const before = await wsPerNode(srv.nodes);
    const extra = [];
    for (let k = 0; k < 4; k++) extra.push(await online(front, await newUser(front, `ngn${k}`)));
    const now = await wsPerNode(srv.nodes);
    const live = now.reduce((a, v, k) => a + (k === victim ? 0 : v - before[k]), 0);
    assert.equal(live, 4, `the 4 new connections on the live nodes (before ${before}, after ${now})`);
    for (let i = 0; i < 4; i++) assert.equal((await request(front, 'GET', '/healthz')).status, 200);
    await closeAll(extra);
    cb = cb2;
    cb.node = node;
  });

  test('drain: marked down and nginx reloaded, then SIGTERM: new connections elsewhere, nothing lost', async () => {
    assert.ok(ca && cb, 'the earlier tests ran');
    const dead = srv.nodes.findIndex((n) => n.proc.signalCode === 'SIGKILL');
    const drained = ca.node; // alice's node: the last one with both alive, dead and alice's apart
    assert.notEqual(drained, dead);
    const port = srv.nodes[drained].port;
    writeFileSync(sitePath(), site.replace(new RegExp(`server 127\\.0\\.0\\.1:${port} [^;]*;`), `server 127.0.0.1:${port} down;`));
    const old = workers(nginx.pid);
    assert.ok(old.size >= 1, 'nginx has a worker');
    const rl = spawnSync(NGINX, nginxArgs('-s', 'reload'), { encoding: 'utf8' });
    assert.equal(rl.status, 0, `nginx -s reload: ${rl.stderr}`);
    // reloaded once a new worker runs and the old one has closed its listener (it keeps its
    // open connections: "worker process is shutting down")
    await waitFor(() => {
      const now = workers(nginx.pid);
      const fresh = [...now.keys()].some((k) => !old.has(k));
      const oldDone = [...old.keys()].every((k) => !now.has(k) || /shutting down/.test(now.get(k)));
      return fresh && oldDone;
    }, { timeoutMs: 10000, message: 'nginx to reload' });
    // the old worker keeps alice's WebSocket; new connections go to the other live node. Each
    // check is a fresh user whose connection stays open until the end (a close landing
    // meanwhile would hide the count going up).
    const rest = srv.nodes.findIndex((_, k) => k !== dead && k !== drained);
    const probes = [];
    const probe = async () => {
      const acct = await newUser(front, 'ngd');
      const b = await wsPerNode(srv.nodes);
      const c = await online(front, acct);
      probes.push(c);
      return { ...(await landedOn(b)), b };
    };
    for (let i = 0; i < 5; i++) {
      const { node, b } = await probe();
      assert.equal(node, rest, `connection ${i} on node ${node}, not ${rest} (dead ${dead}, down ${drained}; counts before ${b})`);
    }
    await closeAll(probes);
    ca.tap = null;
    const seen = new Set(); // what bob receives from here on, on any connection
    const take = (c) => { c.tap = (f) => { if (f.type !== 'msg') return false; seen.add(f.msg_id); c.ack(f.seq); return true; }; };
    take(cb);
    ca.send({ type: 'send', id: 'd1', to: bob.user, body: 'still here' });
    const s1 = await ca.next({ type: 'sent', id: 'd1' }, 10000);
    // SIGTERM: the node closes alice's WebSocket with 1001 and exits 0
    const code = await srv.nodes[drained].stop();
    assert.equal(code, 0);
    assert.equal((await ca.closed).code, 1001);
    const ca2 = await online(front, alice);
    ca.close();
    ca = ca2;
    ca.send({ type: 'send', id: 'd2', to: bob.user, body: 'after the drain' });
    const s2 = await ca.next({ type: 'sent', id: 'd2' }, 10000);
    if (cb.node === drained) { // bob was there too: he comes back the same way
      await cb.closed;
      cb = await online(front, bob);
      for (const e of cb.initial) if (e.type === 'msg') { seen.add(e.msg_id); cb.ack(e.seq); }
      take(cb);
    }
    await waitFor(() => seen.has(s1.msg_id) && seen.has(s2.msg_id), {
      timeoutMs: 10000, message: 'bob to get the messages sent before and after the drain',
    }).catch((e) => {
      throw new Error(`${e.message}: d1 ${seen.has(s1.msg_id)}, d2 ${seen.has(s2.msg_id)} (dead ${dead}, drained ${drained}, bob on ${cb.node})\n${nodeLogs(srv)}`);
    });
    await closeAll(ca, cb);
  });
});
