// Bad input (issue 2): every case is followed by a proof that the server still serves.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, FAST_LIMITS, within } from './lib/server.mjs';
import { newUser, request } from './lib/api.mjs';
import { connect, online, closeAll } from './lib/client.mjs';
import { rawWs } from './lib/rawws.mjs';

/** Proof of service: a fresh register, a send and its delivery, an ack, /healthz. */
async function proveServes(srv) {
  const h = await request(srv, 'GET', '/healthz');
  assert.equal(h.status, 200, 'GET /healthz after the bad input');
  const a = await newUser(srv, 'proof');
  const b = await newUser(srv, 'proof');
  const cb = await online(srv, b);
  const ca = await online(srv, a);
  ca.send({ type: 'send', id: 'proof', to: b.user, body: 'still serving' });
  const sent = await ca.next((f) => f.id === 'proof');
  assert.equal(sent.type, 'sent', `proof send: ${JSON.stringify(sent)}`);
  const m = await cb.next('msg');
  assert.equal(m.msg_id, sent.msg_id);
  cb.ack(m.seq);
  await ca.next('receipt');
  await closeAll(ca, cb);
}

function closedWithin(c, ms, what) {
  let timer;
  return Promise.race([c.closed, new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: still open after ${ms} ms`)), ms);
  })]).finally(() => clearTimeout(timer));
}

/** Writes data on a raw TCP connection; resolves with what was read until the server closed (or timeout). */
function rawExchange(srv, data, { timeoutMs = 5000, keepWriting } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1');
    const parts = [];
    let done = false;
    const t0 = Date.now();
    const finish = (how) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ text: Buffer.concat(parts).toString('latin1'), how, ms: Date.now() - t0 });
    };
    const t = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('data', (d) => parts.push(d));
    s.on('end', () => finish('end'));
    s.on('close', () => finish('close'));
    s.on('error', () => { /* EPIPE / ECONNRESET: keep what was read */ });
    s.on('connect', () => { if (data) s.write(data); keepWriting?.(s); });
  });
}

describe('bad input on the WebSocket', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); });

  test('malformed JSON frames → bad_request error frames, the connection lives on', async () => {
    const a = await newUser(srv, 'mal');
    const c = await online(srv, a);
    const bad = ['{', '}', '{"type":"send"', 'nope', '{"type":"ping",}', "{'type':'ping'}", '{"type":"ping"}}', '', ' ', '\u0000'];
    for (const s of bad) {
      await c.sendRaw(s);
      const e = await c.next(() => true);
      assert.equal(e.type, 'error', `${JSON.stringify(s)} → ${JSON.stringify(e)}`);
      assert.equal(e.code, 'bad_request', `${JSON.stringify(s)} → ${JSON.stringify(e)}`);
    }
    await c.roundTrip();
    await c.close();
    await proveServes(srv);
  });

  test('JSON that is not an object, or lacks a string type → bad_request', async () => {
    const a = await newUser(srv, 'nonobj');
    const c = await online(srv, a);
    for (const s of ['[]', '[{"type":"ping"}]', '"ping"', '42', 'null', 'true', '{}', '{"type":42}', '{"type":null}', '{"type":["ping"]}']) {
      await c.sendRaw(s);
      const e = await c.next(() => true);
      assert.equal(e.type, 'error', `${s} → ${JSON.stringify(e)}`);
      assert.equal(e.code, 'bad_request', `${s} → ${JSON.stringify(e)}`);
    }
    await c.roundTrip();
    await c.close();
    await proveServes(srv);
  });

  test('unknown types and wrong field types → error frames, the connection lives on', async () => {
    const a = await newUser(srv, 'unk');
    const c = await online(srv, a);
    c.send({ type: 'launch_missiles' });
    assert.equal((await c.next(() => true)).code, 'unknown_type');
    c.send({ type: 'PING' });
    assert.equal((await c.next(() => true)).code, 'unknown_type', 'types are case-sensitive');
    c.send({ type: 'ack', seq: 'lots' });
    assert.equal((await c.next(() => true)).code, 'bad_request', 'ack with a non-numeric seq');
    c.send({ type: 'ack', seq: -1 });
    assert.equal((await c.next(() => true)).code, 'bad_request', 'ack with a negative seq');
    c.send({ type: 'watch', users: 'bob' });
    assert.equal((await c.next(() => true)).code, 'bad_request', 'watch with a string instead of a list');
    c.send({ type: 'typing', to: a.user, state: 'dancing' });
    assert.equal((await c.next(() => true)).code, 'bad_request', 'typing with an unknown state');
    await c.roundTrip();
    await c.close();
    await proveServes(srv);
  });

  test('deeply nested JSON → bad_request (no crash, no stack overflow)', async () => {
    const a = await newUser(srv, 'deep');
    const c = await online(srv, a);
    const n = 100000;
    await c.sendRaw('['.repeat(n) + ']'.repeat(n));
    let e = await c.next(() => true, 10000);
    assert.equal(e.code, 'bad_request', JSON.stringify(e));
    await c.sendRaw('{"a":'.repeat(n) + '1' + '}'.repeat(n));
    e = await c.next(() => true, 10000);
    assert.equal(e.code, 'bad_request', JSON.stringify(e));
    // nesting inside an otherwise valid send: exactly one answer, whatever it is
    await c.sendRaw(`{"type":"send","id":"deep","to":"${a.user}","body":"x","extra":${'['.repeat(n)}${']'.repeat(n)}}`);
    e = await c.next(() => true, 10000);
    assert.ok(e.type === 'sent' || (e.type === 'error' && e.code === 'bad_request'), JSON.stringify(e));
    await c.roundTrip();
    await c.close();
    await proveServes(srv);
  });

  test('a frame over ws.max_message (2 MiB against 1 MiB) → close 1009', async () => {
    const a = await newUser(srv, 'huge');
    const c = await online(srv, a);
    c.send({ type: 'send', id: 'huge', to: a.user, body: 'h'.repeat(2 << 20) });
    assert.equal((await closedWithin(c, 5000, 'huge frame')).code, 1009);
    await proveServes(srv);
  });

  test('before ready a WebSocket may hold at most ws.max_auth_frame (8 KiB): a larger message → 1009 at its header', async () => {
    // announced as 1 MiB (under ws.max_message), only the header sent: refused at once
    const r = await rawWs(srv);
    await r.send(1, Buffer.from('{"type":"auth"'), { declaredLength: 1 << 20 });
    const cf = await within(r.closeFrame, 5000, 'timeout');
    assert.notEqual(cf, 'timeout', 'the server waited for the bytes of an unauthenticated 1 MiB frame');
    assert.equal(cf?.code, 1009);
    r.destroy();
    // an auth frame padded past 8 KiB is refused; one under it works, and after ready the
    // usual ws.max_message applies
    const a = await newUser(srv, 'authcap');
    const big = await connect(srv);
    big.send({ type: 'auth', token: a.token, pad: 'p'.repeat(9000) });
    assert.equal((await closedWithin(big, 5000, 'padded auth')).code, 1009);
    const ok = await connect(srv);
    ok.send({ type: 'auth', token: a.token, pad: 'p'.repeat(7000) });
    assert.equal((await ok.next('ready')).user, a.user);
    ok.send({ type: 'send', id: 'after', to: a.user, body: 'b'.repeat(20000) });
    assert.equal((await ok.next({ id: 'after' })).type, 'sent');
    await ok.close();
    await proveServes(srv);
  });

  test('a frame header announcing 2^62 bytes → close 1009 without waiting for the bytes', async () => {
    const a = await newUser(srv, 'lie');
    const r = await rawWs(srv);
    await r.sendJson({ type: 'auth', token: a.token });
    assert.equal((await r.next((f) => f.json?.type === 'ready')).json.user, a.user);
    await r.send(1, Buffer.from('{"type":"ping"'), { declaredLength: 2 ** 62 });
    const cf = await within(r.closeFrame, 5000, 'timeout');
    assert.notEqual(cf, 'timeout', 'the server waited for 2^62 bytes');
    assert.ok(cf, 'the connection was dropped without a close frame');
    assert.equal(cf.code, 1009);
    r.destroy();
    await proveServes(srv);
  });

  test('invalid UTF-8 in text frames → close 1007 (several kinds)', async () => {
    const a = await newUser(srv, 'utf');
    const cases = {
      'lone 0xff': [0xff],
      'overlong "/"': [0xc0, 0xaf],
      'UTF-16 surrogate': [0xed, 0xa0, 0x80],
      'truncated sequence': [0xe2, 0x82],
      'above U+10FFFF': [0xf4, 0x90, 0x80, 0x80],
      'continuation byte alone': [0x80],
    };
    for (const [what, bytes] of Object.entries(cases)) {
      const c = await online(srv, a);
      const frame = Buffer.concat([Buffer.from('{"type":"typing","to":"x","state":"'), Buffer.from(bytes), Buffer.from('"}')]);
      await c.sendRaw(frame, { binary: false });
      assert.equal((await closedWithin(c, 3000, what)).code, 1007, what);
    }
    await proveServes(srv);
  });

  test('valid UTF-8 split across fragments is fine', async () => {
    const a = await newUser(srv, 'split');
    const b = await newUser(srv, 'split');
    const ca = await online(srv, a);
    const cb = await online(srv, b);
    const text = Buffer.from(JSON.stringify({ type: 'send', id: 's1', to: b.user, body: 'café ☕ 😀' }));
    const cut1 = text.indexOf(Buffer.from('é')) + 1; // inside the 2-byte é
    const cut2 = text.indexOf(Buffer.from('😀')) + 2; // inside the 4-byte emoji
    await ca.sendRaw(text.subarray(0, cut1), { fin: false, binary: false });
    await ca.sendRaw(text.subarray(cut1, cut2), { fin: false, binary: false });
    await ca.sendRaw(text.subarray(cut2), { fin: true, binary: false });
    const sent = await ca.next(() => true);
    assert.equal(sent.type, 'sent', JSON.stringify(sent));
    assert.equal((await cb.next('msg')).body, 'café ☕ 😀');
    await closeAll(ca, cb);
  });

  test('a binary frame → close 1003, also before auth', async () => {
    const a = await newUser(srv, 'bin');
    const c = await online(srv, a);
    await c.sendRaw(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal((await closedWithin(c, 3000, 'binary after auth')).code, 1003);
    const c2 = await connect(srv);
    await c2.sendRaw(Buffer.from([1, 2, 3]), { binary: true });
    const info = await closedWithin(c2, 3000, 'binary before auth');
    assert.ok([1003, 4001].includes(info.code), `binary before auth closed with ${info.code}`);
    await proveServes(srv);
  });

  test('a flood of 2,000 malformed frames → 2,000 error frames, the connection lives on', async () => {
    const a = await newUser(srv, 'garbflood');
    const c = await online(srv, a);
    for (let i = 0; i < 2000; i++) await c.sendRaw(`{"garbage":${i}`);
    const errs = await c.collect(2000, 'error', 20000);
    assert.ok(errs.every((e) => e.code === 'bad_request'));
    await c.roundTrip();
    await c.close();
    await proveServes(srv);
  });

  test('connections dropped mid-frame and mid-handshake do not disturb the server', async () => {
    const a = await newUser(srv, 'drop');
    for (let i = 0; i < 20; i++) {
      const r = await rawWs(srv);
      await r.sendJson({ type: 'auth', token: a.token });
      await r.write(Buffer.from([0x81, 0xfe, 0x10])); // half a frame header
      r.destroy();
    }
    for (let i = 0; i < 20; i++) {
      const s = net.connect(srv.port, '127.0.0.1');
      await new Promise((res) => s.on('connect', res));
      s.write('GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n');
      s.resetAndDestroy();
    }
    await proveServes(srv);
  });
});

describe('send floods', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--limits-send-rate', '5/s', '--limits-send-burst', '10'] }); });
  after(async () => { await srv?.close(); });

  test('500 sends at once → one answer each, mostly rate_limited, the connection lives on', async () => {
    const a = await newUser(srv, 'flood');
    const b = await newUser(srv, 'flood');
    const c = await online(srv, a);
    for (let i = 0; i < 500; i++) c.send({ type: 'send', id: `f${i}`, to: b.user, body: 'spam' });
    const answers = await c.collect(500, (f) => f.type === 'sent' || f.type === 'error', 20000);
    assert.equal(new Set(answers.map((x) => x.id)).size, 500, 'one answer per send');
    const limited = answers.filter((x) => x.type === 'error' && x.code === 'rate_limited').length;
    const sent = answers.filter((x) => x.type === 'sent').length;
    assert.equal(limited + sent, 500, 'only sent or rate_limited');
    assert.ok(limited >= 480, `${limited} rate_limited of 500`);
    await c.roundTrip();
    assert.ok(c.isOpen);
    await c.close();
    await proveServes(srv);
  });
});

describe('slow consumer', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--ws-max-outbound', '64KiB'] }); });
  after(async () => { await srv?.close(); });

  test('a client that never reads is closed with 1008 and its inbox keeps everything', { timeout: 120000 }, async () => {
    const alice = await newUser(srv, 'fast');
    const bob = await newUser(srv, 'slow');
    const w = await newUser(srv, 'watch');
    const cb = await online(srv, bob, { name: 'bob (paused, never reads)' });
    const cw = await online(srv, w);
    cw.send({ type: 'watch', users: [bob.user] });
    assert.equal((await cw.next('presence')).online, true);
    cb.ws.pause(); // stop reading: the kernel buffers fill, then the server's queue grows
    const ca = await online(srv, alice, { name: 'alice (the sender, reads everything)' });
    const body = 'x'.repeat(8000);
    let sentCount = 0;
    let bobGone = false;
    cw.next((f) => f.type === 'presence' && f.user === bob.user && f.online === false, 100000)
      .then(() => { bobGone = true; }, () => {});
    const MAX = 20000; // 160 MB: far more than any socket buffer
    while (!bobGone && sentCount < MAX) {
      const batch = 4; // 32 KB per round trip: below ws.max_outbound even for a reading client
      for (let i = 0; i < batch; i++) ca.send({ type: 'send', id: `s${sentCount + i}`, to: bob.user, body: `${sentCount + i}:${body}` });
      const answers = await ca.collect(batch, (f) => f.type === 'sent' || f.type === 'error', 20000);
      for (const x of answers) assert.equal(x.type, 'sent', JSON.stringify(x));
      sentCount += batch;
    }
    assert.ok(bobGone, `bob was never disconnected after ${sentCount} messages of 8 KB he did not read`);
    cb.ws.resume();
    const info = await closedWithin(cb, 20000, 'slow consumer after resume');
    assert.equal(info.code, 1008, `the slow consumer was closed with ${info.code}, not 1008`);
    // a reading client now gets every message, in order
    const c2 = await connect(srv);
    await c2.auth(bob.token);
    const got = [];
    const seqs = [];
    c2.tap = (f) => {
      if (f.type !== 'msg') return false;
      got.push(Number(f.body.slice(0, f.body.indexOf(':'))));
      seqs.push(f.seq);
      if (got.length % 200 === 0) c2.ack(f.seq);
      return true;
    };
    const synced = await c2.next('synced', 60000);
    assert.equal(seqs[0], 1, 'bob never acked: the drain must start at seq 1');
    const atSync = got.length;
    const late = await c2.quiet('msg', 300); // nothing should follow: no one sends any more
    const missing = [];
    for (let i = 0, have = new Set(got); i < sentCount; i++) if (!have.has(i)) missing.push(i);
    assert.equal(atSync, sentCount, `the drain before synced (seq ${synced.seq}) had ${atSync} of ${sentCount} messages; ` +
      `missing ${JSON.stringify(missing.slice(0, 20))}; after synced came ` +
      `${JSON.stringify(seqs.slice(atSync).map((q, k) => `seq ${q} = message ${got[atSync + k]}`).slice(0, 10))}; ` +
      `seqs before synced ${seqs[0]}..${seqs[atSync - 1]}`);
    got.forEach((v, i) => { if (v !== i) assert.fail(`message ${i} is ${v}`); });
    await closeAll(c2, ca, cw);
    await proveServes(srv);
  });
});

describe('bad input on HTTP', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--http-request-timeout', '500ms'] }); });
  after(async () => { await srv?.close(); });

  test('"GARBAGE\\r\\n\\r\\n" → 400 and the connection is closed', async () => {
    const r = await rawExchange(srv, 'GARBAGE\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 400/, `got ${JSON.stringify(r.text.slice(0, 120))}`);
    assert.notEqual(r.how, 'timeout', 'the connection stayed open after a 400');
    await proveServes(srv);
  });

  test('binary noise → 400 or a close, never a hang', async () => {
    const noise = Buffer.alloc(4096);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) & 0xff;
    const r = await rawExchange(srv, noise);
    assert.notEqual(r.how, 'timeout');
    if (r.text) assert.match(r.text, /^HTTP\/1\.1 400/);
    await proveServes(srv);
  });

  test('oversize headers (64 KiB) → 431 (or 400) and close', async () => {
    const req = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`;
    const r = await rawExchange(srv, req);
    assert.match(r.text, /^HTTP\/1\.1 (431|400)/, `got ${JSON.stringify(r.text.slice(0, 120))}`);
    assert.notEqual(r.how, 'timeout');
    const many = 'GET /healthz HTTP/1.1\r\nHost: x\r\n' + Array.from({ length: 5000 }, (_, i) => `X-H${i}: v\r\n`).join('') + '\r\n';
    const r2 = await rawExchange(srv, many);
    assert.match(r2.text, /^HTTP\/1\.1 (431|400)/, `5000 headers: got ${JSON.stringify(r2.text.slice(0, 120))}`);
    await proveServes(srv);
  });

  test('a partial request then silence is closed after http.request_timeout, and others are served meanwhile', async () => {
    const pending = rawExchange(srv, 'POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"user', { timeoutMs: 8000 });
    const pending2 = rawExchange(srv, 'GET /healthz HTTP/1.1\r\nHost: x\r\n', { timeoutMs: 8000 });
    await proveServes(srv);
    const [r1, r2] = await Promise.all([pending, pending2]);
    assert.notEqual(r1.how, 'timeout', 'a half-sent body was kept open for 8 s (request timeout 500 ms)');
    assert.notEqual(r2.how, 'timeout', 'half-sent headers were kept open for 8 s (request timeout 500 ms)');
    assert.ok(r1.ms >= 300, `closed after ${r1.ms} ms, before the request timeout`);
    // PROTOCOL.md 1 (v1.1): 408 request_timeout, for a half-sent body and half-sent headers alike
    for (const r of [r1, r2]) {
      assert.match(r.text, /^HTTP\/1\.1 408/, JSON.stringify(r.text.slice(0, 120)));
      assert.match(r.text, /"code":"request_timeout"/);
    }
    await proveServes(srv);
  });

  test('http.request_timeout is a deadline for the whole request, not an idle timer', async () => {
    // a byte of header every 150 ms never lets the connection idle past 500 ms, yet the
    // request is answered 408 once it has taken longer than that
    const s = net.connect(srv.port, '127.0.0.1');
    await new Promise((res) => s.once('connect', res));
    let text = '';
    s.on('data', (d) => { text += d; });
    const closed = new Promise((res) => s.once('close', res));
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const t0 = Date.now();
    const timer = setInterval(() => { if (!s.destroyed) s.write('a'); }, 150);
    await Promise.race([closed, new Promise((res) => setTimeout(res, 6000))]);
    clearInterval(timer);
    s.destroy();
    const ms = Date.now() - t0;
    assert.match(text, /^HTTP\/1\.1 408/, `after ${ms} ms: ${JSON.stringify(text.slice(0, 120))}`);
    assert.ok(ms < 4000, `a trickling request was kept ${ms} ms`);
    await proveServes(srv);
  });

  test('a body shorter than its Content-Length, or chunks without the last one, get 408 at the deadline', async () => {
    for (const [what, req] of [
      ['short body', 'POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"a"'],
      ['no last chunk', 'POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n'],
      ['head cut off', 'POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Ty'],
    ]) {
      const { text } = await rawExchange(srv, req, { timeoutMs: 6000 });
      assert.match(text, /^HTTP\/1\.1 408 /, `${what}: ${JSON.stringify(text.slice(0, 80))}`);
    }
    await proveServes(srv);
  });

  test('Content-Length of 2^63 and more is refused 413 at once, never read as negative', async () => {
    for (const cl of ['9223372036854775808', '18446744073709551615', '9223372036854775807']) {
      const { text } = await rawExchange(srv, `POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${cl}\r\n\r\n{`, { timeoutMs: 3000 });
      assert.match(text, /^HTTP\/1\.1 (413|400) /, `Content-Length ${cl}: ${JSON.stringify(text.slice(0, 80))}`);
    }
    await proveServes(srv);
  });

  test('a WebSocket upgrade without a key or with a wrong version is refused', async () => {
    const noKey = await rawExchange(srv, 'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n', { timeoutMs: 2000 });
    assert.match(noKey.text, /^HTTP\/1\.1 4\d\d/, `no key: ${JSON.stringify(noKey.text.slice(0, 120))}`);
    const badVer = await rawExchange(srv, 'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n', { timeoutMs: 2000 });
    assert.match(badVer.text, /^HTTP\/1\.1 4\d\d/, `version 8: ${JSON.stringify(badVer.text.slice(0, 120))}`);
    // a key that is not 16 bytes of base64, and HTTP/1.0, are refused with 400 (RFC 6455 4.1)
    const up = (ver, key) => `GET /v1/ws HTTP/${ver}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    for (const [what, req] of [['a 3-byte key', up('1.1', 'YWJj')], ['a 17-byte key', up('1.1', 'MDEyMzQ1Njc4OWFiY2RlZmc=')],
      ['a key that is not base64', up('1.1', '!!!!!!!!!!!!!!!!!!!!!!==')], ['HTTP/1.0', up('1.0', 'dGhlIHNhbXBsZSBub25jZQ==')]]) {
      const r = await rawExchange(srv, req, { timeoutMs: 2000 });
      assert.match(r.text, /^HTTP\/1\.[01] 400/, `${what}: ${JSON.stringify(r.text.slice(0, 120))}`);
    }
    const good = await rawExchange(srv, up('1.1', 'dGhlIHNhbXBsZSBub25jZQ=='), { timeoutMs: 1000 });
    assert.match(good.text, /^HTTP\/1\.1 101/, 'the RFC\'s own example key upgrades');
    await proveServes(srv);
  });
});
