// How long one send to a large group holds ternd's loop: K members online, one sends a group
// message with a body of B bytes; meanwhile a separate pair measures ping → pong round trips.
// Prints the send → sent time, the time until the last member has the message, and the worst
// ping round trip seen during the fan-out against the idle baseline. The pinging client runs
// in a process of its own, so that what it measures is ternd's loop, not this one (which
// reads every member's copy).
//
//   node bench/groups/fanout-stall.mjs [--members 1024] [--body 1000] [--rounds 5]
//   (TERND=build/ternd by default; it starts its own ternd on a free port)
import { startServer } from '../../tests/integration/lib/server.mjs';
import { newUser, request } from '../../tests/integration/lib/api.mjs';
import { online, closeAll } from '../../tests/integration/lib/client.mjs';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

if (process.argv[2] === '--probe') {
  // the child: ping as fast as answers come; report the worst round trip since the last ask
  const [, , , url, token] = process.argv;
  const c = await online({ wsUrl: url }, { token, user: 'probe' });
  let worst = 0, all = [];
  process.on('message', (m) => {
    if (m === 'reset') { worst = 0; all = []; }
    if (m === 'report') { all.sort((a, b) => a - b); process.send({ worst, median: all[all.length >> 1] ?? 0 }); }
    if (m === 'exit') { c.close().then(() => process.exit(0)); }
  });
  process.send('ready');
  for (;;) {
    const t = process.hrtime.bigint();
    await c.roundTrip(10000);
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    worst = Math.max(worst, ms);
    all.push(ms);
  }
}

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const K = arg('members', 1024), B = arg('body', 1000), ROUNDS = arg('rounds', 5);
const srv = await startServer({ args: ['--limits-send-rate', '1000000/s', '--limits-send-burst', '1000000',
  '--limits-fanout-rate', '100000000/s', '--limits-fanout-burst', '100000000', '--groups-max-members', String(K + 1),
  '--receipts-merge-window', '0ms', '--http-max-connections', '19000'] });
const users = [];
for (let i = 0; i < K; i += 64) users.push(...await Promise.all(Array.from({ length: Math.min(64, K - i) }, () => newUser(srv, 'f'))));
const owner = users[0];
const g = await request(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'big', members: users.slice(1).map((u) => u.user) } });
if (g.status !== 201) throw new Error(g.text);
const clients = [];
for (let i = 0; i < K; i += 64) clients.push(...await Promise.all(users.slice(i, i + 64).map((u) => online(srv, u))));
const p1 = await newUser(srv, 'p');
const child = fork(fileURLToPath(import.meta.url), ['--probe', srv.wsUrl, p1.token]);
await new Promise((r) => child.once('message', r));
const ask = (m) => new Promise((r) => { child.once('message', r); child.send(m); });
await new Promise((r) => setTimeout(r, 500));
const idle = await ask('report');
const sender = clients[0];
const body = 'x'.repeat(B);
for (let r = 0; r < ROUNDS; r++) {
  let got = 0, lastAt = 0n;
  const done = new Promise((res) => {
    for (const c of clients.slice(1)) {
      c.tap = (f) => { if (f.type === 'msg') { c.ack(f.seq); if (++got === K - 1) { lastAt = process.hrtime.bigint(); res(); } return true; } return f.type === 'receipt'; };
    }
  });
  child.send('reset');
  const t0 = process.hrtime.bigint();
  sender.send({ type: 'send', id: `r${r}`, group_id: g.body.group_id, body });
  const sent = await sender.next({ type: 'sent', id: `r${r}` });
  const tSent = process.hrtime.bigint();
  await done;
  const { worst } = await ask('report');
  console.log(`round ${r}: members ${K} body ${B} B: send→sent ${(Number(tSent - t0) / 1e6).toFixed(1)} ms, ` +
    `send→last member ${(Number(lastAt - t0) / 1e6).toFixed(1)} ms, recipients ${sent.recipients}, ` +
    `worst ping during fan-out ${worst.toFixed(1)} ms (idle: median ${idle.median.toFixed(2)} ms, worst ${idle.worst.toFixed(2)} ms)`);
}
child.send('exit');
await closeAll(clients);
await srv.close();
