// PROTOCOL.md section 3: the WebSocket session (auth, ready, synced, heartbeats, close codes).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { newUser } from './lib/api.mjs';
import { connect, online, closeAll } from './lib/client.mjs';

const SESSION_ARGS = [
  '--ws-ping-interval', '200ms',
  '--ws-idle-timeout', '1s',
  '--ws-auth-timeout', '300ms',
  '--ws-max-message', '64KiB',
];

/** Resolves with the close info, or rejects after ms with a clear message. */
async function closedWithin(c, ms, what) {
  let timer;
  const r = await Promise.race([c.closed, new Promise((res) => { timer = setTimeout(() => res(null), ms); })]);
  clearTimeout(timer);
  if (!r) throw new Error(`${what}: the connection was still open after ${ms} ms`);
  return r;
}

describe('websocket session', () => {
  let srv;
  before(async () => { srv = await startServer({ args: SESSION_ARGS }); });
  after(async () => { await srv?.close(); });

  test('auth → ready {user, device_id, server_time}, then synced 0 on a new device', async () => {
    const a = await newUser(srv, 'ready');
    const c = await connect(srv);
    const t0 = Date.now();
    c.send({ type: 'auth', token: a.token });
    const ready = await c.next(() => true);
    assert.equal(ready.type, 'ready', `first answer to auth: ${JSON.stringify(ready)}`);
    assert.equal(ready.user, a.user);
    assert.equal(ready.device_id, a.device_id);
    assert.equal(typeof ready.server_time, 'number');
    assert.ok(Number.isInteger(ready.server_time), 'server_time must be integer milliseconds');
    assert.ok(Math.abs(ready.server_time - t0) < 5000, `server_time ${ready.server_time} is not near now ${t0}`);
    const synced = await c.next(() => true);
    assert.deepEqual(synced, { type: 'synced', seq: 0 });
    await c.close();
  });

  test('a bad token → error unauthorized, then close 4001', async () => {
    const c = await connect(srv);
    c.send({ type: 'auth', token: 'definitely-not-a-valid-token' });
    const err = await c.next(() => true);
    assert.equal(err.type, 'error');
    assert.equal(err.code, 'unauthorized');
    assert.equal((await closedWithin(c, 3000, 'bad token')).code, 4001);
  });

  test('an auth frame without a token, or with a non-string token → unauthorized + 4001', async () => {
    for (const frame of [{ type: 'auth' }, { type: 'auth', token: 42 }, { type: 'auth', token: '' }]) {
      const c = await connect(srv);
      c.send(frame);
      const err = await c.next('error');
      assert.equal(err.code, 'unauthorized', `${JSON.stringify(frame)} → ${JSON.stringify(err)}`);
      assert.equal((await closedWithin(c, 3000, JSON.stringify(frame))).code, 4001);
    }
  });

  test('any other frame before auth → error unauthorized + close 4001', async () => {
    const a = await newUser(srv, 'preauth');
    for (const frame of [{ type: 'ping' }, { type: 'send', id: 'x', to: a.user, body: 'hi' }, { type: 'ack', seq: 1 }, { type: 'nonsense' }]) {
      const c = await connect(srv);
      c.send(frame);
      const err = await c.next(() => true);
      assert.equal(err.type, 'error', `${frame.type} before auth answered ${JSON.stringify(err)}`);
      assert.equal(err.code, 'unauthorized', `${frame.type} before auth: ${JSON.stringify(err)}`);
      assert.equal((await closedWithin(c, 3000, `${frame.type} before auth`)).code, 4001);
    }
  });

  test('malformed JSON before auth → an error frame and close 4001', async () => {
    const c = await connect(srv);
    await c.sendRaw('{"type":"auth",');
    const err = await c.next(() => true);
    assert.equal(err.type, 'error', JSON.stringify(err));
    assert.equal((await closedWithin(c, 3000, 'malformed JSON before auth')).code, 4001);
  });

  test('no auth within ws.auth_timeout (300ms) → close 4001', async () => {
    const t0 = Date.now();
    const c = await connect(srv);
    const closed = await closedWithin(c, 3000, 'silent unauthenticated connection');
    const elapsed = Date.now() - t0;
    assert.equal(closed.code, 4001);
    assert.ok(elapsed >= 250, `closed after ${elapsed} ms, before the 300 ms auth timeout`);
  });

  test('{"type":"ping"} → {"type":"pong","server_time":MS}', async () => {
    const a = await newUser(srv, 'ping');
    const c = await online(srv, a);
    const t0 = Date.now();
    const pong = await c.roundTrip();
    assert.equal(pong.type, 'pong');
    assert.equal(typeof pong.server_time, 'number');
    assert.ok(Math.abs(pong.server_time - t0) < 5000, `server_time ${pong.server_time} not near ${t0}`);
    await c.close();
  });

  test('the server sends a WebSocket ping every ws.ping_interval (200ms)', async () => {
    const a = await newUser(srv, 'srvping');
    const c = await online(srv, a);
    const n0 = c.pings.length;
    await sleep(1100);
    const n = c.pings.length - n0;
    assert.ok(n >= 3 && n <= 12, `expected about 5 pings in 1.1 s at a 200 ms interval, got ${n}`);
    assert.ok(c.isOpen, 'a client answering pings must stay connected');
    await c.close();
  });

  test('a client that answers pings stays connected past ws.idle_timeout without sending frames', async () => {
    const a = await newUser(srv, 'alive');
    const c = await online(srv, a);
    await sleep(2500);
    assert.ok(c.isOpen, `closed after ${JSON.stringify(c.closeInfo)} although it answered every ping`);
    await c.roundTrip();
    await c.close();
  });

  test('a silent client (no pongs, no frames) is closed with 4000 after ws.idle_timeout (1s)', async () => {
    const a = await newUser(srv, 'idle');
    const c = await connect(srv, { wsOptions: { autoPong: false } });
    await c.auth(a.token);
    await c.untilSynced();
    const t0 = Date.now();
    const closed = await closedWithin(c, 5000, 'silent client');
    const elapsed = Date.now() - t0;
    assert.equal(closed.code, 4000);
    assert.ok(elapsed >= 700, `closed ${elapsed} ms after its last frame, well before the 1 s idle timeout`);
    assert.ok(c.pings.length >= 1, 'the server never pinged the silent client');
  });

  test('a second connection with the same token replaces the first (close 4003)', async () => {
    const a = await newUser(srv, 'dup');
    const c1 = await online(srv, a, { name: 'first' });
    const c2 = await online(srv, a, { name: 'second' });
    const closed = await closedWithin(c1, 3000, 'replaced connection');
    assert.equal(closed.code, 4003);
    assert.equal(c2.ready.device_id, a.device_id);
    await c2.roundTrip();
    assert.ok(c2.isOpen);
    await c2.close();
  });

  test('a binary frame → close 1003', async () => {
    const a = await newUser(srv, 'bin');
    const c = await online(srv, a);
    await c.sendRaw(Buffer.from(JSON.stringify({ type: 'ping' })), { binary: true });
    assert.equal((await closedWithin(c, 3000, 'binary frame')).code, 1003);
  });

  test('invalid UTF-8 in a text frame → close 1007', async () => {
    const a = await newUser(srv, 'utf8');
    const c = await online(srv, a);
    const bad = Buffer.concat([Buffer.from('{"type":"send","id":"u1","to":"x","body":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    await c.sendRaw(bad, { binary: false });
    assert.equal((await closedWithin(c, 3000, 'invalid UTF-8')).code, 1007);
  });

  test('a message over ws.max_message (64KiB) → close 1009', async () => {
    const a = await newUser(srv, 'big');
    const c = await online(srv, a);
    c.send({ type: 'ping', pad: 'x'.repeat(70 * 1024) });
    assert.equal((await closedWithin(c, 3000, 'oversized message')).code, 1009);
  });

  test('the reassembled message counts: fragments of 40KiB + 40KiB → close 1009', async () => {
    const a = await newUser(srv, 'frag');
    const c = await online(srv, a);
    const text = JSON.stringify({ type: 'ping', pad: 'y'.repeat(80 * 1024) });
    const half = Math.floor(text.length / 2);
    await c.sendRaw(text.slice(0, half), { fin: false });
    await c.sendRaw(text.slice(half), { fin: true });
    assert.equal((await closedWithin(c, 3000, 'oversized fragmented message')).code, 1009);
  });

  test('a message just under ws.max_message is accepted; a fragmented one too', async () => {
    const a = await newUser(srv, 'under');
    const c = await online(srv, a);
    c.send({ type: 'ping', pad: 'z'.repeat(60 * 1024) });
    const p1 = await c.next(() => true);
    // unknown fields are ignored (the contract grows by adding fields)
    assert.equal(p1.type, 'pong', JSON.stringify(p1).slice(0, 200));
    const text = JSON.stringify({ type: 'ping' });
    await c.sendRaw(text.slice(0, 5), { fin: false });
    await c.sendRaw(text.slice(5, 9), { fin: false });
    await c.sendRaw(text.slice(9), { fin: true });
    assert.equal((await c.next(() => true)).type, 'pong');
    assert.ok(c.isOpen);
    await c.close();
  });

  test('an unknown type → error unknown_type, and the connection still works', async () => {
    const a = await newUser(srv, 'unk');
    const c = await online(srv, a);
    c.send({ type: 'teleport', to: 'mars' });
    const err = await c.next(() => true);
    assert.equal(err.type, 'error');
    assert.equal(err.code, 'unknown_type');
    await c.roundTrip();
    assert.ok(c.isOpen);
    await c.close();
  });

  test('malformed JSON → error bad_request without an id, and the connection still works', async () => {
    const a = await newUser(srv, 'badjson');
    const c = await online(srv, a);
    await c.sendRaw('{"type":"send","id":"j1",');
    const err = await c.next(() => true);
    assert.equal(err.type, 'error');
    assert.equal(err.code, 'bad_request');
    assert.ok(!('id' in err) || err.id === null, `a malformed frame has no id to echo: ${JSON.stringify(err)}`);
    assert.equal(typeof err.message, 'string');
    await c.roundTrip();
    await c.close();
  });

  test('a client close is answered and the server keeps serving others', async () => {
    const a = await newUser(srv, 'bye');
    const c = await online(srv, a);
    const info = await c.close();
    assert.equal(info.code, 1000, `normal close echoed as ${JSON.stringify(info)}`);
    const c2 = await online(srv, a);
    await c2.roundTrip();
    await closeAll(c2);
  });
});
