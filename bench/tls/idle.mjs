// bench/tls/idle.mjs: ternd's memory per idle authenticated WebSocket, over TLS and over plain
// TCP, in one run (issue 14: under 8 KiB per idle TLS connection). Prints figures; asserts
// nothing.
//
//   node bench/tls/idle.mjs [--conns 10000]
//   HEAP=1 node bench/tls/idle.mjs ...   also: malloc_trim, then glibc's heap in use (via gdb)
//
// For each transport it starts a ternd, registers N users, opens one authenticated WebSocket
// per user, waits for the server to settle, and reads ternd's VmRSS and its heap use
// (/proc/PID/status, smaps_rollup) before and after. Per connection = delta ÷ N.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { startServer, makeTempDir } from '../../tests/integration/lib/server.mjs';

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--conns') + 1] || 10000) || 10000;
const dir = makeTempDir('tern-tls-idle-');
const f = (n) => path.join(dir, n);
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', f('k.pem'), '-out', f('c.pem')], { stdio: 'ignore' });
const ca = readFileSync(f('c.pem'));

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(useTls) {
  const extra = useTls ? ['--tls-cert', f('c.pem'), '--tls-key', f('k.pem')] : [];
  const srv = await startServer({ args: [...extra, '--http-max-connections', String(N + 100), '--limits-send-rate', '1000000/s'] });
  const scheme = useTls ? 'https' : 'http';
  const base = `${scheme}://127.0.0.1:${srv.port}`;
  const agentOpts = useTls ? { ca } : {};
  const { default: httpMod } = await import(useTls ? 'node:https' : 'node:http');
  const agent = new httpMod.Agent({ keepAlive: true, maxSockets: 32, ...agentOpts });
  const post = (p, body) => new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const r = httpMod.request(`${base}${p}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let t = ''; res.on('data', (d) => { t += d; }); res.on('end', () => resolve(JSON.parse(t)));
    });
    r.on('error', reject);
    r.end(data);
  });
  const tokens = [];
  for (let i = 0; i < N; i += 64) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 64); j++) batch.push(post('/v1/register', { username: `idle${j}`, password: 'idle password 1' }));
    for (const r of await Promise.all(batch)) tokens.push(r.token);
  }
  agent.destroy();
  await sleep(1000);
  const before = rssKiB(srv.proc.pid);
  const socks = [];
  const t0 = Date.now();
  for (let i = 0; i < N; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 200); j++) {
      batch.push(new Promise((resolve, reject) => {
        const ws = new WebSocket(`${useTls ? 'wss' : 'ws'}://127.0.0.1:${srv.port}/v1/ws`, { ca, perMessageDeflate: false });
        ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token: tokens[j] })));
        ws.on('message', (m) => { if (JSON.parse(m).type === 'synced') resolve(ws); });
        ws.on('error', reject);
      }));
    }
    socks.push(...await Promise.all(batch));
    if ((i / 200) % 10 === 0) process.stderr.write(`\r${useTls ? 'tls' : 'tcp'}: ${socks.length}/${N} connected`);
  }
  const took = Date.now() - t0;
  process.stderr.write('\n');
  await sleep(3000); // let handshakes' and drains' transient buffers go
  const after = rssKiB(srv.proc.pid);
  if (process.env.HEAP) {
    execFileSync('gdb', ['-p', String(srv.proc.pid), '-batch', '-ex', 'call (int)malloc_trim(0)', '-ex', 'call (void)malloc_stats()'], { stdio: 'ignore' });
    await sleep(200);
    console.log(useTls ? 'tls' : 'tcp', 'after malloc_trim', rssKiB(srv.proc.pid), 'KiB; heap stats:', srv.stderr().split('\n').filter((l) => /in use|system bytes/.test(l)).slice(-2).join(' | '));
  }
  for (const ws of socks) ws.terminate();
  await srv.close();
  return { before, after, per: ((after - before) * 1024) / N, connectPerSec: (N * 1000) / took };
}

const tcp = await run(false);
const tls = await run(true);
const line = (name, r) => `${name.padEnd(5)} RSS before ${r.before} KiB, after ${r.after} KiB, per idle authenticated WebSocket ${(r.per / 1024).toFixed(2)} KiB; connect+auth ${r.connectPerSec.toFixed(0)}/s`;
console.log(`${N} connections (${new Date().toISOString()}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`);
console.log(line('tcp', tcp));
console.log(line('tls', tls));
console.log(`TLS costs ${((tls.per - tcp.per) / 1024).toFixed(2)} KiB more per idle connection than plain TCP`);
