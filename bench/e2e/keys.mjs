// Key-directory requests/s (PROTOCOL.md 11), on one ternd: the three requests a client makes,
// each in its own phase, from CONNS keep-alive HTTP connections kept busy for SECONDS:
//   top-up  PUT /v1/keys with BATCH one-time prekeys (each device's count is kept below
//           e2e.max_prekeys by the claims of the fetch phase and a large --e2e-max-prekeys);
//   fetch   GET /v1/keys/{user}: every device's bundle, one one-time prekey claimed and deleted
//           per device (the compare-and-set that hands each prekey out once);
//   count   GET /v1/keys: the caller's own count, what a client asks before it tops up.
// Each phase prints requests/s and ternd's CPU per request (utime + stime of every thread
// from /proc/PID/stat over the phase): the CPU figure is the one to compare across runs on a
// shared machine, the rate also depends on what the load generator gets of the 2 cores.
//
//   node bench/e2e/keys.mjs [--users 200] [--conns 16] [--seconds 5] [--batch 10]
//                           [--prekeys 100] [--backend rocksdb|nats] [--rounds 2]
//   (TERND=build/ternd by default; it starts its own ternd, and for --backend nats its own
//    nats-server, on free ports)
import http from 'node:http';
import { readFileSync } from 'node:fs';
import crypto from 'node:crypto';
import { startServer, FAST_LIMITS } from '../../tests/integration/lib/server.mjs';
import { startNats } from '../../tests/integration/lib/nats.mjs';
import { newUser, request } from '../../tests/integration/lib/api.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return typeof def === 'number' ? Number(v) : v;
};
if (process.argv.includes('--help')) {
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('\nimport ')[0].replace(/^\/\/ ?/gm, ''));
  process.exit(0);
}
const USERS = arg('users', 200), CONNS = arg('conns', 16), SECONDS = arg('seconds', 5);
const BATCH = arg('batch', 10), PREKEYS = arg('prekeys', 100), ROUNDS = arg('rounds', 2);
const BACKEND = arg('backend', 'rocksdb');

const b64 = (buf) => buf.toString('base64');
const pubKey = () => b64(Buffer.concat([Buffer.from([5]), crypto.randomBytes(32)]));
const prekeys = (n, from) => Array.from({ length: n }, (_, i) => ({ key_id: from + i, public_key: pubKey() }));

let nats;
const args = [...FAST_LIMITS, '--limits-key-fetch-rate', '100000000/1s', '--e2e-max-prekeys', '100000'];
if (BACKEND === 'nats') {
  nats = await startNats({ servers: 1 });
  args.push('--store-backend', 'nats', '--nats-urls', nats.urls, '--nats-namespace', `k${process.pid}`);
}
const srv = await startServer({ args });
const pid = srv.proc.pid;
const TICK = 100; // USER_HZ on Linux
const cpu = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK; // utime, stime (fields 14, 15)
};

console.log(`# ${USERS} users with ${PREKEYS} one-time prekeys each, ${CONNS} keep-alive connections, ${SECONDS} s per phase, ${BACKEND}`);
const users = [];
for (let i = 0; i < USERS; i += 20) {
  users.push(...await Promise.all(Array.from({ length: Math.min(20, USERS - i) }, () => newUser(srv, 'k'))));
}
const nextId = new Map();
await Promise.all(users.map(async (u, i) => {
  const r = await request(srv, 'PUT', '/v1/keys', { token: u.token, body: {
    identity_key: pubKey(), registration_id: 1 + (i % 16380),
    signed_prekey: { key_id: 1, public_key: pubKey(), signature: b64(crypto.randomBytes(64)) },
    one_time_prekeys: prekeys(PREKEYS, 1) } });
  if (r.status !== 204) throw new Error(`PUT /v1/keys: ${r.status} ${r.text}\n${srv.stderr().split('\n').filter((l) => !/ (debug|info) /.test(l)).slice(-20).join('\n')}`);
  nextId.set(u.user, PREKEYS + 1);
}));

const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });
const url = new URL(srv.baseUrl ?? srv.url);
function call(method, path, token, body) {
  const data = body ? JSON.stringify(body) : null;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, agent, headers: {
      authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

const phases = {
  topup: (k) => {
    const u = users[k % USERS];
    const from = nextId.get(u.user);
    nextId.set(u.user, from + BATCH > 16_000_000 ? 1 : from + BATCH);
    return ['PUT', '/v1/keys', u.token, { one_time_prekeys: prekeys(BATCH, from) }, 204];
  },
  fetch: (k) => {
    const u = users[k % USERS], peer = users[(k * 7 + 1) % USERS];
    return ['GET', `/v1/keys/${encodeURIComponent(peer.user)}`, u.token, null, 200];
  },
  count: (k) => ['GET', '/v1/keys', users[k % USERS].token, null, 200],
};

async function phase(name) {
  const make = phases[name];
  let done = 0, k = 0, bad = 0, firstBad = '', empty = 0;
  const end = Date.now() + SECONDS * 1000;
  const c0 = cpu(), t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONNS }, async () => {
    while (Date.now() < end) {
      const [m, p, token, body, want] = make(k++);
      const r = await call(m, p, token, body);
      if (r.status !== want) { bad++; firstBad ||= `${m} ${p}: ${r.status} ${r.text.slice(0, 120)}`; }
      if (name === 'fetch' && r.text.includes('"one_time_prekey":null')) empty++;
      done++;
    }
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9, used = cpu() - c0;
  console.log(`${name.padEnd(6)} ${String(Math.round(done / secs)).padStart(7)} req/s  ${(used * 1e6 / done).toFixed(1).padStart(7)} µs ternd CPU/req  (${done} requests, ${bad} refused${firstBad ? `: ${firstBad}` : ''}${name === 'fetch' ? `, ${empty} without a one-time prekey` : ''})`);
  return bad;
}

let refused = 0;
for (let r = 0; r < ROUNDS; r++) {
  console.log(`round ${r + 1}`);
  for (const name of ['topup', 'fetch', 'count']) refused += await phase(name);
}
agent.destroy();
await srv.close();
await nats?.close();
process.exit(refused ? 1 : 0);
