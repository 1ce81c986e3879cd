// PROTOCOL.md sections 1 and 9: HTTP basics, error shape, keep-alive, limits, metrics.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startServer, FAST_LIMITS } from './lib/server.mjs';
import { request, newUser, metricsText, metricValue, metricSum, PASSWORD, uniqueName } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

/** A request with node's http module (agent control, chunked bodies). */
function rawRequest(srv, { method = 'GET', path = '/', headers = {}, body, chunks, agent } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: srv.port, method, path, headers, agent }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, body: json, reused: req.reusedSocket, localPort: res.socket?.localPort });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (chunks) {
      (async () => {
        for (const c of chunks) { req.write(c); await new Promise((r) => setImmediate(r)); }
        req.end();
      })();
    } else req.end(body);
  });
}

/** Writes bytes on a raw TCP socket and resolves with everything read until the server closes. */
function rawExchange(srv, data, { timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1');
    const parts = [];
    let done = false;
    const finish = (how) => { if (done) return; done = true; clearTimeout(t); s.destroy(); resolve({ text: Buffer.concat(parts).toString('latin1'), how }); };
    const t = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('data', (d) => parts.push(d));
    s.on('end', () => finish('end'));
    s.on('close', () => finish('close'));
    s.on('error', () => { /* EPIPE/ECONNRESET while writing: keep what was read */ });
    s.on('connect', () => s.write(data));
  });
}

function assertErrorShape(r, status, code) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${r.text}`);
  const ct = r.headers['content-type'] ?? r.headers.get?.('content-type') ?? '';
  assert.match(ct, /application\/json/, `error content-type: ${ct}`);
  assert.ok(r.body && typeof r.body === 'object', `error body is not JSON: ${r.text}`);
  assert.deepEqual(Object.keys(r.body), ['error'], `error body: ${r.text}`);
  assert.equal(r.body.error.code, code);
  assert.equal(typeof r.body.error.message, 'string');
  assert.ok(r.body.error.message.length > 0);
}

const METRICS = {
  tern_connections: 'gauge',
  tern_messages_sent_total: 'counter',
  tern_envelopes_delivered_total: 'counter',
  tern_inbox_envelopes: 'gauge',
  tern_receipts_total: 'counter',
  tern_media_bytes: 'gauge',
  tern_push_total: 'counter',
  tern_store_commit_seconds: 'histogram',
  tern_send_to_sent_seconds: 'histogram',
};

describe('http', () => {
  let srv;
  before(async () => { srv = await startServer({ args: FAST_LIMITS }); });
  after(async () => { await srv?.close(); });

  test('GET /healthz → 200 {"status":"ok"}', async () => {
    const r = await request(srv, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'ok' });
    assert.match(r.headers.get('content-type') || '', /application\/json/);
  });

  test('/metrics exposes every metric of section 9 with its type', async () => {
    // make some traffic first: a send, a delivery, a receipt
    const alice = await newUser(srv, 'met');
    const bob = await newUser(srv, 'met');
    const ca = await online(srv, alice);
    const cb = await online(srv, bob);
    ca.send({ type: 'send', id: 'm1', to: bob.user, body: 'count me' });
    await ca.next('sent');
    const m = await cb.next('msg');
    cb.ack(m.seq);
    await ca.next('receipt');
    const res = await request(srv, 'GET', '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') || '', /^text\/plain/);
    const text = res.text;
    for (const [name, type] of Object.entries(METRICS)) {
      const re = new RegExp(`^# TYPE ${name} ${type}$`, 'm');
      assert.match(text, re, `missing "# TYPE ${name} ${type}" in /metrics:\n${text}`);
    }
    // The values are per node in a cluster (PROTOCOL.md 12), and the send, the sockets and
    // this request may each have reached another node: they are summed over the nodes.
    const sum = (sample) => metricSum(srv, sample);
    for (const h of ['tern_store_commit_seconds', 'tern_send_to_sent_seconds']) {
      assert.match(text, new RegExp(`^${h}_bucket\\{[^}]*le="\\+Inf"[^}]*\\} \\d+`, 'm'), `${h}_bucket{le="+Inf"}`);
      assert.match(text, new RegExp(`^${h}_sum(\\{\\})? [0-9.eE+-]+`, 'm'), `${h}_sum`);
      assert.match(text, new RegExp(`^${h}_count(\\{\\})? \\d+`, 'm'), `${h}_count`);
      const count = metricValue(text, `${h}_count`);
      const inf = text.match(new RegExp(`^${h}_bucket\\{le="\\+Inf"\\} (\\d+)`, 'm'));
      if (inf) assert.equal(Number(inf[1]), count, `${h}: +Inf bucket must equal _count`);
      assert.ok(await sum(`${h}_count`) >= 1, `${h}_count must count the send`);
    }
    for (const g of ['tern_connections', 'tern_messages_sent_total', 'tern_envelopes_delivered_total', 'tern_inbox_envelopes', 'tern_media_bytes']) {
      assert.notEqual(metricValue(text, g), undefined, `no sample for ${g}`);
    }
    assert.ok(await sum('tern_connections') >= 2, 'two WebSockets are connected');
    assert.ok(await sum('tern_messages_sent_total') >= 1);
    assert.ok(await sum('tern_envelopes_delivered_total') >= 1);
    assert.ok(await sum('tern_receipts_total{status="delivered"}') >= 1, 'tern_receipts_total{status="delivered"}');
    const sent0 = await sum('tern_messages_sent_total');
    ca.send({ type: 'send', id: 'm2', to: bob.user, body: 'count me too' });
    await ca.next('sent');
    assert.equal(await sum('tern_messages_sent_total'), sent0 + 1);
    const conns = await sum('tern_connections');
    await closeAll(ca, cb);
    let now;
    for (let i = 0; i < 50; i++) {
      now = await sum('tern_connections');
      if (now <= conns - 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(now <= conns - 2, `tern_connections ${conns} → ${now} after two WebSockets closed`);
  });

  test('/metrics says where the memory is: the process resident set, and on RocksDB its parts', async () => {
    const node = srv.nodes ? srv.nodes[0] : srv; // per node: one process's figures
    const text = async () => (await request(node, 'GET', '/metrics')).text;
    const before = metricValue(await text(), 'tern_store_memory_bytes{part="memtables"}');
    const alice = await newUser(srv, 'mem');
    const bob = await newUser(srv, 'mem');
    const ca = await online(srv, alice);
    ca.send({ type: 'send', id: 'mm1', to: bob.user, body: 'x'.repeat(2000) });
    await ca.next('sent');
    await closeAll(ca);
    let t = await text();
    assert.match(t, /^# TYPE process_resident_memory_bytes gauge$/m);
    const rss = metricValue(t, 'process_resident_memory_bytes');
    assert.ok(rss > 2 ** 20 && rss < 2 ** 40, `process_resident_memory_bytes ${rss}`);
    if (srv.nodes) {
      assert.doesNotMatch(t, /tern_store_memory_bytes/, 'a NATS node has no store memory of its own to show');
      return;
    }
    assert.match(t, /^# TYPE tern_store_memory_bytes gauge$/m);
    // sampled on the commit thread at most once a second: the send above is in a memtable
    // once a commit a second later has taken a new sample
    let mem = 0;
    for (let i = 0; i < 40 && mem < before + 2000; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const c = await online(srv, bob); // its login and drain commit
      await closeAll(c);
      t = await text();
      mem = metricValue(t, 'tern_store_memory_bytes{part="memtables"}');
    }
    console.log(`# memtables ${before} → ${mem} bytes`);
    assert.ok(mem >= before + 2000, `tern_store_memory_bytes{part="memtables"} ${before} → ${mem} after a 2,000-byte message`);
    for (const part of ['block_cache', 'table_readers', 'envelope_cache']) {
      assert.ok(metricValue(t, `tern_store_memory_bytes{part="${part}"}`) >= 0, part);
    }
  });

  test('error bodies are {"error":{"code","message"}} with 400/401/404/405/413', async () => {
    assertErrorShape(await rawRequest(srv, { method: 'POST', path: '/v1/register', headers: { 'content-type': 'application/json' }, body: '{"username":' }), 400, 'bad_request');
    assertErrorShape(await rawRequest(srv, { path: '/v1/me', headers: { authorization: 'Bearer nope' } }), 401, 'unauthorized');
    assertErrorShape(await rawRequest(srv, { path: '/no/such/path' }), 404, 'not_found');
    assertErrorShape(await rawRequest(srv, { path: '/v1/register' }), 405, 'method_not_allowed');
    assertErrorShape(await rawRequest(srv, { method: 'PUT', path: '/v1/me' }), 405, 'method_not_allowed'); // DELETE is account deletion (v1.1)
    assertErrorShape(await rawRequest(srv, { method: 'POST', path: '/healthz' }), 405, 'method_not_allowed');
    const big = JSON.stringify({ username: uniqueName('big'), password: PASSWORD, device: 'x'.repeat(70 * 1024) });
    assertErrorShape(await rawRequest(srv, { method: 'POST', path: '/v1/register', headers: { 'content-type': 'application/json' }, body: big }), 413, 'too_large');
  });

  test('bad JSON and non-object JSON bodies → 400 bad_request', async () => {
    for (const body of ['{', 'not json', '[]', '"alice"', '42', 'null', '']) {
      const r = await rawRequest(srv, { method: 'POST', path: '/v1/login', headers: { 'content-type': 'application/json' }, body });
      assertErrorShape(r, 400, 'bad_request');
    }
    const bad = Buffer.concat([Buffer.from('{"username":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","password":"12345678"}')]);
    assertErrorShape(await rawRequest(srv, { method: 'POST', path: '/v1/register', headers: { 'content-type': 'application/json' }, body: bad }), 400, 'bad_request');
  });

  test('keep-alive: several requests over one connection, errors included', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const r1 = await rawRequest(srv, { path: '/healthz', agent });
      const r2 = await rawRequest(srv, { path: '/metrics', agent });
      const r3 = await rawRequest(srv, { path: '/nope', agent });
      const name = uniqueName('ka');
      const r4 = await rawRequest(srv, { method: 'POST', path: '/v1/register', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: name, password: PASSWORD }), agent });
      const r5 = await rawRequest(srv, { path: '/healthz', agent });
      assert.deepEqual([r1.status, r2.status, r3.status, r4.status, r5.status], [200, 200, 404, 201, 200]);
      assert.equal(r1.reused, false);
      for (const r of [r2, r3, r4, r5]) {
        assert.equal(r.reused, true, 'the connection was not kept alive');
        assert.equal(r.localPort, r1.localPort);
      }
    } finally {
      agent.destroy();
    }
  });

  test('keep-alive with pipelined requests on a raw socket', async () => {
    const one = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
    const last = 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { text } = await rawExchange(srv, one + one + last);
    const statuses = text.match(/HTTP\/1\.1 \d+/g) || [];
    assert.deepEqual(statuses, ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200'], text);
  });

  test('a body over http.max_body → 413, and the server still serves', async () => {
    const body = JSON.stringify({ username: uniqueName('huge'), password: 'x'.repeat(65 * 1024) });
    const r = await rawRequest(srv, { method: 'POST', path: '/v1/register', headers: { 'content-type': 'application/json' }, body });
    assertErrorShape(r, 413, 'too_large');
    // a much larger body (4 MiB): the 413 must arrive, not a reset (lingering close)
    const head = `POST /v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${4 << 20}\r\n\r\n`;
    const { text } = await rawExchange(srv, Buffer.concat([Buffer.from(head), Buffer.alloc(4 << 20, 0x61)]));
    assert.match(text, /^HTTP\/1\.1 413/, `4 MiB body: got ${JSON.stringify(text.slice(0, 200))}`);
    // the declared length alone is enough to refuse
    const { text: t2 } = await rawExchange(srv, `POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"a":1`);
    assert.match(t2, /^HTTP\/1\.1 413/, `declared 100 MB: got ${JSON.stringify(t2.slice(0, 200))}`);
    const ok = await request(srv, 'GET', '/healthz');
    assert.equal(ok.status, 200);
    const reg = await request(srv, 'POST', '/v1/register', { body: { username: uniqueName('after'), password: PASSWORD } });
    assert.equal(reg.status, 201, reg.text);
  });

  test('chunked request bodies are accepted, and limited like the others', async () => {
    const name = uniqueName('chunk');
    const json = JSON.stringify({ username: name, password: PASSWORD, device: 'chunky' });
    const r = await rawRequest(srv, {
      method: 'POST', path: '/v1/register',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      chunks: [json.slice(0, 7), json.slice(7, 20), json.slice(20)],
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.user, name);
    const big = JSON.stringify({ username: uniqueName('chunk'), password: PASSWORD, device: 'y'.repeat(80 * 1024) });
    const chunks = [];
    for (let i = 0; i < big.length; i += 8192) chunks.push(big.slice(i, i + 8192));
    const r2 = await rawRequest(srv, {
      method: 'POST', path: '/v1/register',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      chunks,
    }).catch((e) => ({ status: 0, text: String(e) }));
    assert.equal(r2.status, 413, `80 KiB chunked body: ${r2.status} ${r2.text}`);
    const ok = await request(srv, 'GET', '/healthz');
    assert.equal(ok.status, 200);
  });

  test('Expect: 100-continue gets "100 Continue" before the body, then the answer', async () => {
    const name = uniqueName('cont');
    const body = JSON.stringify({ username: name, password: PASSWORD });
    const sock = net.connect(srv.port, '127.0.0.1');
    let text = '';
    sock.setEncoding('latin1');
    const got = (re) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`waited for ${re}; got ${JSON.stringify(text)}`)), 5000);
      const check = () => { if (re.test(text)) { clearTimeout(timer); sock.off('data', onData); resolve(); } };
      const onData = (d) => { text += d; check(); };
      sock.on('data', onData);
      check();
    });
    sock.write(`POST /v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Expect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
    await got(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    sock.write(body);
    await got(/HTTP\/1\.1 201 /);
    sock.destroy();
    // a head refused at once (too large) is answered with the final status, not 100
    const s2 = net.connect(srv.port, '127.0.0.1');
    let t2 = '';
    s2.setEncoding('latin1');
    s2.on('data', (d) => { t2 += d; });
    s2.write('POST /v1/register HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 999999999\r\n\r\n');
    await new Promise((resolve) => s2.on('close', resolve));
    assert.match(t2, /^HTTP\/1\.1 413 /);
  });

  test('the WebSocket endpoint refuses a plain GET and non-upgrade methods', async () => {
    const r = await rawRequest(srv, { path: '/v1/ws' });
    assert.ok(r.status >= 400 && r.status < 500, `plain GET /v1/ws → ${r.status}`);
    const ok = await request(srv, 'GET', '/healthz');
    assert.equal(ok.status, 200);
  });
});
