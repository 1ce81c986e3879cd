// The abuse limits of PROTOCOL.md 14, each at a low setting so a test can cross it: open and
// new connections per address, register/login attempts per address, failed logins per
// username, typing, X-Forwarded-For from trusted proxies only, /metrics for metrics.allow
// only, and the password hash queue. Each refusal is counted in tern_limited_total{limit}.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, BASE_ARGS_LIMITED, NO_ADDRESS_LIMITS, CLUSTER_NODES, sleep } from './lib/server.mjs';
import { request, register, login, newUser, uniqueName, PASSWORD, metricsText, metricValue } from './lib/api.mjs';
import { online, connect, closeAll } from './lib/client.mjs';

const servers = [];
after(() => Promise.all(servers.map((s) => s.close())));
async function server(args, baseArgs = BASE_ARGS_LIMITED) {
  const s = await startServer({ args, baseArgs });
  servers.push(s);
  return s;
}
/** Everything but the limit under test out of the way. */
const except = (...names) => {
  const out = [];
  for (let i = 0; i < NO_ADDRESS_LIMITS.length; i += 2) {
    if (!names.includes(NO_ADDRESS_LIMITS[i])) out.push(NO_ADDRESS_LIMITS[i], NO_ADDRESS_LIMITS[i + 1]);
  }
  return out;
};
const limited = async (srv, name) => metricValue(await metricsText(srv), `tern_limited_total{limit="${name}"}`);

/** Opens a TCP connection; resolves with whether the server closed it within ms. */
function tcpOpen(srv, ms = 300) {
  return new Promise((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1');
    let closed = false;
    s.on('close', () => { closed = true; });
    s.on('error', () => { closed = true; });
    setTimeout(() => resolve({ sock: s, closed }), ms);
  });
}

// Limits are per node (PROTOCOL.md 12), and the cluster harness's proxy is every client's peer.
describe('abuse limits', { skip: CLUSTER_NODES ? 'limits are counted per node' : false }, () => {
  test('limits.conn_per_ip: past it a new connection is closed at once; closing one makes room', async () => {
    const srv = await server([...except('--limits-conn-per-ip'), '--limits-conn-per-ip', '4']);
    const open = [];
    for (let i = 0; i < 4; i++) {
      const r = await tcpOpen(srv, 50);
      assert.equal(r.closed, false, `connection ${i + 1} of 4`);
      open.push(r.sock);
    }
    const fifth = await tcpOpen(srv);
    assert.equal(fifth.closed, true, 'the fifth connection from one address stayed open');
    open.pop().destroy();
    await sleep(100);
    const again = await tcpOpen(srv);
    assert.equal(again.closed, false, 'a connection after one closed');
    open.push(again.sock);
    for (const s of open) s.destroy();
    await sleep(100);
    assert.ok((await limited(srv, 'conn_per_ip')) >= 1);
  });

  test('limits.conn_rate_per_ip: past N new connections per period the next is closed', async () => {
    const srv = await server([...except('--limits-conn-rate-per-ip'), '--limits-conn-rate-per-ip', '3/10s']);
    const socks = [];
    for (let i = 0; i < 3; i++) {
      const r = await tcpOpen(srv, 30);
      assert.equal(r.closed, false, `new connection ${i + 1} of 3`);
      socks.push(r.sock);
    }
    const fourth = await tcpOpen(srv);
    assert.equal(fourth.closed, true);
    for (const s of socks) s.destroy();
    // a fresh server to read the counter (this address is out of new connections here)
  });

  test('limits.auth_rate_per_ip: register and login attempts per address → 429 with Retry-After', async () => {
    const srv = await server([...except('--limits-auth-rate-per-ip'), '--limits-auth-rate-per-ip', '3/1m']);
    const name = uniqueName('ar');
    assert.equal((await register(srv, name)).status, 201);
    assert.equal((await login(srv, name)).status, 200);
    assert.equal((await login(srv, name, 'wrong password!')).status, 401);
    const r = await login(srv, name);
    assert.equal(r.status, 429, r.text);
    assert.equal(r.body.error.code, 'rate_limited');
    assert.ok(Number(r.headers.get('retry-after')) >= 1, `Retry-After: ${r.headers.get('retry-after')}`);
    assert.equal((await register(srv, uniqueName('ar'))).status, 429);
    assert.equal(await limited(srv, 'auth_rate_per_ip'), 2);
  });

  test('limits.login_fail: failures per username and address; unknown names the same; others unaffected', async () => {
    const srv = await server([...except('--limits-login-fail'), '--limits-login-fail', '2/15m']);
    const alice = await newUser(srv, 'lf');
    const bob = await newUser(srv, 'lf');
    for (let i = 0; i < 2; i++) assert.equal((await login(srv, alice.user, 'not the password')).status, 401);
    const blocked = await login(srv, alice.user); // even the right password, for now
    assert.equal(blocked.status, 429, blocked.text);
    assert.ok(Number(blocked.headers.get('retry-after')) > 60);
    assert.equal((await login(srv, bob.user)).status, 200, 'another username is not affected');
    const ghost = uniqueName('nobody');
    for (let i = 0; i < 2; i++) assert.equal((await login(srv, ghost, 'whatever pass')).status, 401);
    assert.equal((await login(srv, ghost, 'whatever pass')).status, 429, 'an unknown name answers the same');
    assert.equal(await limited(srv, 'login_fail'), 2);
  });

  test('limits.typing_rate: typing past it is dropped silently and counted', async () => {
    const srv = await server([...except('--limits-typing-rate'), '--limits-typing-rate', '2/10s']);
    const [a, b] = await Promise.all([newUser(srv, 'ty'), newUser(srv, 'ty')]);
    const [ca, cb] = await Promise.all([online(srv, a), online(srv, b)]);
    for (let i = 0; i < 10; i++) ca.send({ type: 'typing', to: b.user, state: i % 2 ? 'paused' : 'composing' });
    await ca.roundTrip();
    await sleep(300);
    const got = cb.take((f) => f.type === 'typing');
    assert.equal(got.length, 2, JSON.stringify(got));
    assert.deepEqual(ca.take((f) => f.type === 'error'), [], 'no error for dropped typing');
    assert.equal(await limited(srv, 'typing_rate'), 8);
    await closeAll(ca, cb);
  });

  test('http.trusted_proxies: X-Forwarded-For names the client only when the peer is a trusted proxy', async () => {
    const srv = await server([...except('--limits-auth-rate-per-ip'), '--limits-auth-rate-per-ip', '2/1m',
      '--http-trusted-proxies', '127.0.0.1/32, 10.9.0.0/16']);
    const from = (xff) => ({ headers: { 'x-forwarded-for': xff } });
    const reg = (xff) => request(srv, 'POST', '/v1/register', { body: { username: uniqueName('tp'), password: PASSWORD }, ...from(xff) });
    assert.equal((await reg('203.0.113.5')).status, 201);
    assert.equal((await reg('198.51.100.1, 203.0.113.5')).status, 201); // the left entry is the client's say-so
    assert.equal((await reg('203.0.113.5')).status, 429, 'the third attempt from 203.0.113.5');
    assert.equal((await reg('203.0.113.6')).status, 201, 'another client behind the proxy');
    // a chain of trusted proxies: the right-most untrusted entry is the client
    assert.equal((await reg('203.0.113.5, 10.9.1.1')).status, 429);
    // WebSockets through the proxy count against the client's address
    const srv2 = await server([...except('--limits-conn-per-ip'), '--limits-conn-per-ip', '2', '--http-trusted-proxies', '127.0.0.1']);
    const ws = (xff) => connect(srv2, { wsOptions: { headers: { 'x-forwarded-for': xff } } });
    const w1 = await ws('192.0.2.7');
    const w2 = await ws('192.0.2.7');
    await assert.rejects(ws('192.0.2.7'), /HTTP 429/);
    const w3 = await ws('192.0.2.8');
    await w1.close();
    await sleep(100);
    const w4 = await ws('192.0.2.7');
    await closeAll(w2, w3, w4);
  });

  test('metrics.allow: /metrics only for listed peers, never through a trusted proxy', async () => {
    const srv = await server(['--metrics-allow', '10.0.0.0/8'], [...BASE_ARGS_LIMITED, ...NO_ADDRESS_LIMITS]);
    const r = await request(srv, 'GET', '/metrics');
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'forbidden');
    const srv2 = await server(['--http-trusted-proxies', '127.0.0.1'], [...BASE_ARGS_LIMITED, ...NO_ADDRESS_LIMITS]);
    assert.equal((await request(srv2, 'GET', '/metrics')).status, 403, 'loopback is a proxy here');
    const srv3 = await server([], [...BASE_ARGS_LIMITED, ...NO_ADDRESS_LIMITS]);
    assert.equal((await request(srv3, 'GET', '/metrics')).status, 200, 'loopback by default');
  });

  test('auth.hash_queue: past the running and waiting hashes, register and login answer 503 with Retry-After', async () => {
    const srv = await server(['--auth-hash-cost', 'interactive', '--auth-max-concurrent-hashes', '1', '--auth-hash-queue', '1'],
      ['--allow-insecure-test-settings', ...NO_ADDRESS_LIMITS]);
    const rs = await Promise.all(Array.from({ length: 8 }, () => register(srv, uniqueName('hq'))));
    const by = (st) => rs.filter((r) => r.status === st);
    assert.ok(by(201).length >= 2, `registered: ${rs.map((r) => r.status)}`);
    assert.ok(by(503).length >= 1, `refused: ${rs.map((r) => r.status)}`);
    for (const r of by(503)) {
      assert.equal(r.body.error.code, 'unavailable');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
    assert.equal(by(201).length + by(503).length, 8);
    assert.equal(await limited(srv, 'hash_queue'), by(503).length);
  });
});
