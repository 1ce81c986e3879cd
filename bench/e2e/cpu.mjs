// Server CPU per message, encrypted against plaintext, in one ternd run (tern-bench does not
// speak e2e). PAIRS senders each keep WINDOW sends in flight to their own recipient, who acks
// every message; phases alternate plaintext and e2e (P, E, P, E, ...). Server CPU is ternd's
// own utime + stime from /proc/PID/stat (every thread: loop, commit thread, RocksDB) over the
// phase, divided by the messages delivered in it. The plaintext body is BODY bytes of text;
// the e2e ciphertext is what the Signal protocol makes of such a text, about CIPHER bytes
// (padding, header and MAC), sent as base64, to one device with keys.
//
//   node bench/e2e/cpu.mjs [--pairs 100] [--messages 300] [--window 8] [--body 100]
//                          [--cipher 180] [--rounds 2]
//   (TERND=build/ternd by default; it starts its own ternd on a free port; run it with
//    `taskset -c 1` and pin ternd with TERN_BENCH_SERVER_CPU=0 to keep them apart)
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { startServer } from '../../tests/integration/lib/server.mjs';
import { newUser, request } from '../../tests/integration/lib/api.mjs';
import { online, closeAll } from '../../tests/integration/lib/client.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const PAIRS = arg('pairs', 100), M = arg('messages', 300), WINDOW = arg('window', 8);
const BODY = arg('body', 100), CIPHER = arg('cipher', 180), ROUNDS = arg('rounds', 2);

const srv = await startServer({ args: ['--limits-send-rate', '1000000/s', '--limits-send-burst', '1000000'] });
const pid = srv.proc.pid;
if (process.env.TERN_BENCH_SERVER_CPU) execFileSync('taskset', ['-a', '-p', '-c', process.env.TERN_BENCH_SERVER_CPU, String(pid)]);
const TICK = 100; // USER_HZ on Linux
const cpu = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK; // utime, stime (fields 14, 15)
};

const key = () => Buffer.concat([Buffer.from([5]), crypto.randomBytes(32)]).toString('base64');
const pairs = [];
for (let i = 0; i < PAIRS; i++) {
  const [a, b] = await Promise.all([newUser(srv, 'ca'), newUser(srv, 'cb')]);
  const r = await request(srv, 'PUT', '/v1/keys', { token: b.token, body: {
    identity_key: key(), registration_id: 1 + i,
    signed_prekey: { key_id: 1, public_key: key(), signature: crypto.randomBytes(64).toString('base64') } } });
  if (r.status !== 204) throw new Error(r.text);
  pairs.push({ a, b });
}
for (const p of pairs) {
  p.ca = await online(srv, p.a);
  p.cb = await online(srv, p.b);
}

const text = 'x'.repeat(BODY);
const cipher = crypto.randomBytes(CIPHER).toString('base64');

async function phase(e2e, tag) {
  let delivered = 0;
  const total = PAIRS * M;
  const t0 = cpu(), w0 = process.hrtime.bigint();
  await Promise.all(pairs.map((p, k) => new Promise((done) => {
    let sent = 0, got = 0;
    const frame = (n) => (e2e
      ? { type: 'send', id: `${tag}-${n}`, to: p.b.user, e2e: [{ device_id: p.b.device_id, type: 'message', body: cipher }] }
      : { type: 'send', id: `${tag}-${n}`, to: p.b.user, body: text });
    p.ca.tap = (f) => {
      if (f.type === 'sent' && sent < M) p.ca.send(frame(sent++));
      if (f.type === 'error') throw new Error(JSON.stringify(f));
      return f.type === 'sent' || f.type === 'receipt';
    };
    p.cb.tap = (f) => {
      if (f.type !== 'msg') return false;
      p.cb.ack(f.seq);
      got++;
      delivered++;
      if (got === M) done();
      return true;
    };
    for (; sent < Math.min(WINDOW, M);) p.ca.send(frame(sent++));
  })));
  const s = cpu() - t0, wall = Number(process.hrtime.bigint() - w0) / 1e9;
  return { kind: e2e ? 'e2e' : 'plain', messages: delivered, cpu_s: s, wall_s: wall, us_per_msg: (s / delivered) * 1e6,
    msgs_per_s: delivered / wall, of: total };
}

await phase(false, 'warm'); // warm-up: caches, RocksDB memtables
const rows = [];
for (let r = 0; r < ROUNDS; r++) {
  rows.push(await phase(false, `p${r}`));
  rows.push(await phase(true, `e${r}`));
}
for (const x of rows)
  console.log(`${x.kind.padEnd(5)} messages=${x.messages} server_cpu=${x.cpu_s.toFixed(2)}s wall=${x.wall_s.toFixed(2)}s ` +
    `rate=${x.msgs_per_s.toFixed(0)}/s cpu_per_msg=${x.us_per_msg.toFixed(1)}us`);
const avg = (k) => { const xs = rows.filter((x) => x.kind === k); return xs.reduce((s, x) => s + x.cpu_s, 0) / xs.reduce((s, x) => s + x.messages, 0) * 1e6; };
console.log(`plaintext ${avg('plain').toFixed(1)} us/msg, e2e ${avg('e2e').toFixed(1)} us/msg, ratio ${(avg('e2e') / avg('plain')).toFixed(2)}`);
await closeAll(pairs.flatMap((p) => [p.ca, p.cb]));
await srv.close();
