#!/usr/bin/env node
// bench/cluster/nodes.mjs: messages/s, p99 and CPU per message with 1, 2 and 3 ternd nodes
// on a 3-server NATS JetStream cluster (R3), against one ternd on the embedded RocksDB store,
// in one run (issue 12, "Measure and report"). It prints figures and never fails on a time.
//
//   node bench/cluster/nodes.mjs [--users 200] [--messages 20000] [--window 8] [--rounds 2]
//
// Every configuration runs the same closed-loop tern-bench scenario (pairs, receipts on)
// through a round-robin TCP proxy in this process (the cluster tests' one, lib/server.mjs),
// also in front of the single RocksDB node, so each configuration pays the same proxy. The
// CPU of every ternd and nats-server comes from /proc/PID/stat around the run. Rounds are
// interleaved (A B C D, A B C D, ...) so the shared machine's drift spreads over all.
import { execFile } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startCluster, startServer, proxyTo, REPO_ROOT } from '../../tests/integration/lib/server.mjs';
import { startNats } from '../../tests/integration/lib/nats.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
if (argv.includes('--help')) {
  console.log('usage: node bench/cluster/nodes.mjs [--users N] [--messages N] [--window N] [--rounds N]');
  process.exit(0);
}
const USERS = Number(opt('users', 200));
const MESSAGES = Number(opt('messages', 20000));
const WINDOW = Number(opt('window', 8));
const ROUNDS = Number(opt('rounds', 2));
const BENCH = process.env.TERN_BENCH || path.join(REPO_ROOT, 'build', 'tern-bench');
const run = promisify(execFile);
const HZ = 100; // USER_HZ

function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / HZ; // utime + stime
  } catch { return 0; }
}

async function measure(label, srv, ternPids, natsPids, tmp) {
  const json = path.join(tmp, `${label}.json`);
  const cpu = (pids) => pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const t0 = cpu(ternPids);
  const n0 = cpu(natsPids);
  const r = await run(BENCH, ['--server', srv.url, '--users', String(USERS), '--messages', String(MESSAGES),
    '--window', String(WINDOW), '--prefix', `c${label.replace(/[^a-z0-9]/g, '').slice(0, 8)}${Date.now() % 100000}_`, '--json', json, '--quiet'],
  { maxBuffer: 1 << 24 }).catch((e) => e);
  const t1 = cpu(ternPids);
  const n1 = cpu(natsPids);
  let j = null;
  try { j = JSON.parse(readFileSync(json, 'utf8')); } catch { /* reported below */ }
  if (!j) return { label, error: `tern-bench: ${r.stderr || r.message}` };
  const sent = j.counts.answered || 1;
  return {
    label,
    rate: j.throughput.sent_per_s,
    p99_sent_ms: j.latency_us.send_to_sent.p99 / 1000,
    p99_receipt_ms: j.latency_us.send_to_receipt.p99 / 1000,
    ternd_us: ((t1 - t0) / sent) * 1e6,
    nats_us: ((n1 - n0) / sent) * 1e6,
    ok: /verification: OK/.test(r.stdout || ''),
    errors: JSON.stringify(j.errors),
  };
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tern-cluster-bench-'));
const nats = await startNats({ servers: 3 });
const natsPids = nats.servers.map((s) => s.proc.pid);
const configs = [];
const rocks = await proxyTo([await startServer({})]);
configs.push({ label: 'rocksdb, 1 node', srv: rocks, tern: [rocks.proc.pid], nats: [] });
for (const n of [1, 2, 3]) {
  const c = await startCluster(n, { nats });
  configs.push({ label: `nats R3, ${n} node${n > 1 ? 's' : ''}`, srv: c, tern: c.nodes.map((x) => x.proc.pid), nats: natsPids });
}

console.log(`# ${USERS} users in pairs, closed loop, window ${WINDOW}, ${MESSAGES} messages, receipts on; ${ROUNDS} rounds, interleaved`);
console.log(`# loadavg ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${os.cpus().length} cores`);
const results = configs.map(() => []);
for (let round = 0; round < ROUNDS; round++) {
  for (let i = 0; i < configs.length; i++) {
    const c = configs[i];
    const m = await measure(c.label, c.srv, c.tern, c.nats, tmp);
    results[i].push(m);
    console.log(`round ${round + 1} ${c.label.padEnd(18)} ${m.error || `${m.rate.toFixed(0).padStart(7)} msg/s  p99 sent ${m.p99_sent_ms.toFixed(1)} ms  p99 receipt ${m.p99_receipt_ms.toFixed(1)} ms  ternd ${m.ternd_us.toFixed(1)} µs/msg  nats-server ${m.nats_us.toFixed(1)} µs/msg  ${m.ok ? 'verified' : `NOT verified ${m.errors}`}`}`);
  }
}
console.log('\n| configuration | best msg/s | median msg/s | p99 send→sent (best run) | ternd CPU µs/msg | nats-server CPU µs/msg |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (let i = 0; i < configs.length; i++) {
  const ok = results[i].filter((m) => !m.error);
  if (!ok.length) { console.log(`| ${configs[i].label} | failed | | | | |`); continue; }
  const rates = ok.map((m) => m.rate).sort((a, b) => a - b);
  const best = ok.reduce((a, b) => (b.rate > a.rate ? b : a));
  console.log(`| ${configs[i].label} | ${best.rate.toFixed(0)} | ${rates[Math.floor(rates.length / 2)].toFixed(0)} | ${best.p99_sent_ms.toFixed(1)} ms | ${best.ternd_us.toFixed(1)} | ${best.nats_us.toFixed(1)} |`);
}
for (const c of configs) await c.srv.close();
await nats.close();
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
