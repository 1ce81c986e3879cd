#!/usr/bin/env node
// bench/cluster/conns.mjs: 3 ternd nodes × 19,000 idle authenticated WebSockets (the
// per-process file cap) on a 3-server NATS JetStream cluster, and a message round trip
// between two clients on different nodes while all of them are connected (issue 12,
// "Measure and report"). It prints figures and never fails on a size or a time.
//
//   node bench/cluster/conns.mjs [--nodes 3] [--conns 19000] [--rtt 200]
//
// One tern-bench --idle process per node, each connected straight to its node (a proxy in
// front would need two descriptors per connection and hit its own 20,000 cap), all three at
// once. tern-bench samples its node's RSS after the registrations and again once every
// connection is up; this script samples every ternd and nats-server again while all the
// connections are held, then times --rtt sends from a client on node 1 to one on node 2:
// send → `sent`, send → the `msg` on node 2, and send → the `delivered` receipt back on
// node 1 after the recipient's ack.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startCluster, REPO_ROOT } from '../../tests/integration/lib/server.mjs';
import { startNats } from '../../tests/integration/lib/nats.mjs';
import { newUser } from '../../tests/integration/lib/api.mjs';
import { online } from '../../tests/integration/lib/client.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
if (argv.includes('--help')) {
  console.log('usage: node bench/cluster/conns.mjs [--nodes N] [--conns N per node] [--rtt N sends]');
  process.exit(0);
}
const NODES = Number(opt('nodes', 3));
const CONNS = Number(opt('conns', 19000));
const RTT = Number(opt('rtt', 200));
const BENCH = process.env.TERN_BENCH || path.join(REPO_ROOT, 'build', 'tern-bench');

function rssKib(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}
function fds(pid) {
  try { return readdirSync(`/proc/${pid}/fd`).length; } catch { return 0; }
}
const mib = (kib) => (kib / 1024).toFixed(1);
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor((a.length * p) / 100))];

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tern-conns-bench-'));
const nats = await startNats({ servers: 3 });
const natsPids = nats.servers.map((s) => s.proc.pid);
const natsBefore = natsPids.map(rssKib);
// room above CONNS for the two round-trip clients and the odd health check
const cluster = await startCluster(NODES, { nats, args: ['--http-max-connections', String(CONNS + 50)] });
const nodes = cluster.nodes;
console.log(`# ${NODES} ternd nodes × ${CONNS} idle connections, 3-server NATS cluster (R3), ${os.cpus().length} cores, ` +
  `loadavg ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(`# ternd RSS at start: ${nodes.map((n) => `${mib(rssKib(n.proc.pid))} MiB`).join(', ')}; ` +
  `nats-server RSS at start: ${natsBefore.map((k) => `${mib(k)} MiB`).join(', ')}`);

// One tern-bench per node, all at once; each holds its connections until we interrupt it.
const t0 = Date.now();
const benches = nodes.map((n, i) => {
  const json = path.join(tmp, `node${i + 1}.json`);
  const args = ['--server', n.url, '--server-pid', String(n.proc.pid), '--users', String(CONNS), '--idle',
    '--duration', '1h', '--register-concurrency', '64', '--prefix', `k${i + 1}x${Date.now() % 100000}_`, '--json', json];
  const p = spawn(BENCH, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const b = { i, json, proc: p, log: '', holding: false, exited: null };
  let resolveHold;
  b.held = new Promise((r) => { resolveHold = r; });
  p.stderr.setEncoding('utf8').on('data', (d) => {
    b.log += d;
    if (b.log.length > 1 << 16) b.log = b.log.slice(-(1 << 15));
    if (!b.holding && /holding \d+ connections/.test(b.log)) {
      b.holding = true;
      b.heldAt = Date.now();
      resolveHold(true);
    }
  });
  b.exited = new Promise((r) => p.on('exit', (code) => { resolveHold(false); r(code); }));
  return b;
});
const progress = setInterval(() => {
  const up = nodes.map((n) => fds(n.proc.pid));
  console.log(`# ${((Date.now() - t0) / 1000).toFixed(0)} s: ternd descriptors ${up.join(', ')}`);
}, 15000);
const held = await Promise.all(benches.map((b) => b.held));
clearInterval(progress);
const failedBench = benches.filter((b, i) => !held[i]);
for (const b of failedBench) console.log(`# tern-bench for node ${b.i + 1} ended before holding:\n${b.log.slice(-2000)}`);

// Everything connected (or as far as it got): sample every process once more.
const during = {
  ternd: nodes.map((n) => ({ rss: rssKib(n.proc.pid), fds: fds(n.proc.pid) })),
  nats: natsPids.map(rssKib),
};

// The round trip, between node 1 and node 2, with all connections held.
let rtt = null;
if (NODES >= 2 && RTT > 0 && !failedBench.length) {
  const a = await newUser(nodes[0], 'rta');
  const b = await newUser(nodes[1], 'rtb');
  const ca = await online(nodes[0], a, { name: 'a@node1' });
  const cb = await online(nodes[1], b, { name: 'b@node2' });
  const sent = [];
  const msg = [];
  const rcpt = [];
  for (let k = 0; k < RTT; k++) {
    const id = `r${k}`;
    const s0 = process.hrtime.bigint();
    const ms = (t) => Number(t - s0) / 1e6;
    ca.send({ type: 'send', id, to: b.user, body: `rtt ${k}` });
    const got = cb.next({ type: 'msg', body: `rtt ${k}` }, 10000).then((m) => { msg.push(ms(process.hrtime.bigint())); return m; });
    const ans = await ca.next((f) => (f.type === 'sent' || f.type === 'error') && f.id === id, 10000);
    if (ans.type !== 'sent') throw new Error(`send ${id}: ${JSON.stringify(ans)}`);
    sent.push(ms(process.hrtime.bigint()));
    const m = await got;
    cb.ack(m.seq);
    await ca.next((f) => f.type === 'receipt' && f.status === 'delivered' && f.msg_ids.includes(ans.msg_id), 10000);
    rcpt.push(ms(process.hrtime.bigint()));
  }
  await ca.close();
  await cb.close();
  rtt = { sent, msg, rcpt };
}

// Let the benches report, then read their JSON.
for (const b of benches) b.proc.kill('SIGINT');
await Promise.all(benches.map((b) => b.exited));
const total = ((Date.now() - t0) / 1000).toFixed(0);

console.log('\n| node | connected | failed | register + connect (s) | connect phase (s) | connects/s | RSS before connecting | RSS with all held | KiB per connection | descriptors |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
let sumConn = 0;
for (const b of benches) {
  let j = null;
  try { j = JSON.parse(readFileSync(b.json, 'utf8')); } catch { /* below */ }
  const d = during.ternd[b.i];
  if (!j || !j.idle) {
    console.log(`| ${b.i + 1} | no report | | | | | | ${mib(d.rss)} MiB | | ${d.fds} |`);
    continue;
  }
  const id = j.idle;
  sumConn += id.connected;
  const before = id.server_before?.rss_kib ?? 0;
  const perConn = id.connected ? (d.rss - before) / id.connected : 0;
  console.log(`| ${b.i + 1} | ${id.connected} | ${id.failed} | ${b.heldAt ? ((b.heldAt - t0) / 1000).toFixed(0) : '-'} | ` +
    `${id.connect_s.toFixed(1)} | ${id.connect_per_s.toFixed(0)} | ${mib(before)} MiB | ${mib(d.rss)} MiB | ${perConn.toFixed(2)} | ${d.fds} |`);
}
console.log(`\ntotal connected: ${sumConn} of ${NODES * CONNS}; the run took ${total} s`);
console.log(`nats-server RSS: ${natsPids.map((p, i) => `n${i + 1} ${mib(natsBefore[i])} → ${mib(during.nats[i])} MiB`).join(', ')}`);
if (rtt) {
  for (const [name, a] of [['send → sent (node 1)', rtt.sent], ['send → msg (node 2)', rtt.msg], ['send → delivered receipt (node 1)', rtt.rcpt]]) {
    const s = [...a].sort((x, y) => x - y);
    console.log(`round trip, ${name}, ${s.length} sends one at a time: p50 ${pct(s, 50).toFixed(2)} ms, p99 ${pct(s, 99).toFixed(2)} ms, max ${s[s.length - 1].toFixed(2)} ms`);
  }
}
await cluster.close();
await nats.close();
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
