// TLS on the listener (PROTOCOL.md 13): HTTPS and wss:// on one port, TLS 1.2 and 1.3 only,
// ALPN http/1.1, Mozilla's intermediate ciphers, plaintext refused with a clear answer, and
// SIGHUP reloading the certificate without dropping connections (a bad pair keeps the old).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync, copyFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { startServer, makeTempDir, BASE_ARGS, TERND } from './lib/server.mjs';
import { Client } from './lib/client.mjs';
import { tern, tempHomes } from './lib/cli.mjs';
import { PASSWORD, uniqueName } from './lib/api.mjs';

const dir = makeTempDir('tern-tls-');
const f = (n) => path.join(dir, n);

/** A CA and a certificate for 127.0.0.1 signed by it (cn names the certificate). */
function makeCert(cn) {
  const ossl = (...a) => execFileSync('openssl', a, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (!cn.startsWith('x')) {
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=tern test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  }
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ossl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f(`${cn}.key`), '-out', f(`${cn}.csr`));
  ossl('x509', '-req', '-in', f(`${cn}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('ext.cnf'), '-out', f(`${cn}.pem`));
}

let srv;
let ca;
before(async () => {
  makeCert('one');
  makeCert('xtwo');
  copyFileSync(f('one.pem'), f('live.pem'));
  copyFileSync(f('one.key'), f('live.key'));
  ca = execFileSync('cat', [f('ca.pem')]);
  // a real hash cost: a login takes long enough for the pipelining test's client to get ahead
  srv = await startServer({ args: ['--tls-cert', f('live.pem'), '--tls-key', f('live.key'), '--auth-hash-cost', 'interactive'] });
});
after(() => srv?.close());

/** One HTTPS request; resolves {status, body, socket facts}. */
function req(method, p, { body, token, tlsOpts = {} } = {}) {
  return new Promise((resolve, reject) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    let payload;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const r = https.request({ host: '127.0.0.1', port: srv.port, method, path: p, headers, ca, agent: false, ...tlsOpts }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({
          status: res.statusCode, body: json, text,
          version: res.socket.getProtocol?.(), alpn: res.socket.alpnProtocol,
          cert: res.socket.getPeerCertificate?.()?.subject?.CN, cipher: res.socket.getCipher?.()?.name,
        });
      });
    });
    r.on('error', reject);
    r.end(payload);
  });
}

test('HTTPS: TLS 1.3 by default, ALPN http/1.1, the certificate verifies', async () => {
  const r = await req('GET', '/healthz', { tlsOpts: { ALPNProtocols: ['h2', 'http/1.1'] } });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'ok');
  assert.equal(r.version, 'TLSv1.3');
  assert.equal(r.alpn, 'http/1.1');
  assert.equal(r.cert, 'one');
});

/**
 * openssl s_client with stdin at EOF; resolves {status, stdout}. Not spawnSync: in a cluster
 * the TCP proxy in front of the nodes runs in this process and must keep running meanwhile.
 */
function sClient(args, timeoutMs = 10000) {
  return new Promise((resolve) => {
    const p = spawn('openssl', ['s_client', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout }); });
  });
}

test('TLS 1.2 with an intermediate cipher works; weak ciphers and old versions are refused', async () => {
  const r = await req('GET', '/healthz', { tlsOpts: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' } });
  assert.equal(r.status, 200);
  assert.equal(r.version, 'TLSv1.2');
  assert.equal(r.cipher, 'ECDHE-RSA-AES128-GCM-SHA256');
  // Outside Mozilla's intermediate list: CBC suites and plain RSA key exchange.
  await assert.rejects(req('GET', '/healthz', { tlsOpts: { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA256:AES128-SHA' } }));
  // TLS 1.0 and 1.1, offered by a client that permits them (security level 0).
  for (const v of ['-tls1', '-tls1_1']) {
    const s = await sClient(['-connect', `127.0.0.1:${srv.port}`, v, '-cipher', 'DEFAULT@SECLEVEL=0']);
    assert.notEqual(s.status, 0, `${v} must fail:\n${s.stdout}`);
    assert.match(s.stdout, /Cipher is \(NONE\)/);
  }
});

test('plain HTTP on the TLS port gets a 400 saying so', async () => {
  const text = await new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1', () => sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
  });
  assert.match(text, /^HTTP\/1\.1 400 /);
  assert.match(text, /"code":"bad_request"/);
  assert.match(text, /https:\/\/ or wss:\/\//);
  // the same request a byte at a time (the first read holds only "G")
  const split = await new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1', async () => {
      for (const ch of 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n') {
        if (sock.destroyed) break;
        sock.write(ch);
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.on('close', () => resolve(got));
    sock.on('error', () => resolve(got));
  });
  assert.match(split, /^HTTP\/1\.1 400 /, JSON.stringify(split.slice(0, 80)));
  // garbage that is neither TLS nor HTTP is just closed; the server goes on
  await new Promise((resolve) => {
    const sock = net.connect(srv.port, '127.0.0.1', () => sock.write(Buffer.alloc(600, 0x16)));
    sock.on('close', resolve);
    sock.on('error', resolve);
  });
  assert.equal((await req('GET', '/healthz')).status, 200);
});

test('pipelined requests over many TLS records in one read are all answered, in order', async () => {
  // A login is answered after its password hash; the client goes on pushing requests, and past
  // http.max_header + http.max_body of them the server pauses reading, then resumes once the
  // login is answered. Nothing decrypted meanwhile may be lost or handed over early. Each
  // write() below is a TLS record of its own; cork() sends them together.
  const { connect } = await import('node:tls');
  const login = JSON.stringify({ username: uniqueName('nobody'), password: 'wrong password' });
  const text = await new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port: srv.port, ca, servername: 'localhost' }, () => {
      sock.cork();
      sock.write(`POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${login.length}\r\n\r\n${login}`);
      for (let r = 0; r < 400; r++) {
        let batch = '';
        for (let i = 0; i < 20; i++) batch += `GET /v1/nope${r}x${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
        sock.write(batch);
      }
      sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      sock.uncork();
    });
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.on('end', () => resolve(got));
    sock.on('error', reject);
  });
  const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
  assert.deepEqual(statuses, ['401', ...Array(8000).fill('404'), '200']);
});

async function account(name) {
  const reg = await req('POST', '/v1/register', { body: { username: name, password: PASSWORD, device: 'd1' } });
  assert.equal(reg.status, 201, reg.text);
  return { user: name, token: reg.body.token };
}

function wss(token, name) {
  const ws = new WebSocket(`wss://127.0.0.1:${srv.port}/v1/ws`, { ca, perMessageDeflate: false });
  const c = new Client(ws, name);
  return new Promise((resolve, reject) => {
    ws.once('open', async () => {
      try {
        await c.auth(token);
        await c.untilSynced();
        resolve(c);
      } catch (e) { reject(e); }
    });
    ws.once('error', reject);
  });
}

test('wss://: a conversation with receipts, and big frames both ways', async () => {
  const a = await account(uniqueName('tla'));
  const b = await account(uniqueName('tlb'));
  const ca1 = await wss(a.token, 'a');
  const cb1 = await wss(b.token, 'b');
  ca1.send({ type: 'send', id: 'c1', to: b.user, body: 'over TLS' });
  await ca1.next({ type: 'sent', id: 'c1' });
  const m = await cb1.next({ type: 'msg', from: a.user });
  assert.equal(m.body, 'over TLS');
  cb1.send({ type: 'ack', seq: m.seq });
  await ca1.next({ type: 'receipt', status: 'delivered' });
  // bodies larger than one TLS record (16 KiB) and than half the read buffer (32 KiB)
  const big = 'x'.repeat(60000);
  for (let i = 0; i < 5; i++) ca1.send({ type: 'send', id: `big${i}`, to: b.user, body: big + i });
  for (let i = 0; i < 5; i++) {
    const g = await cb1.next({ type: 'msg', body: big + i });
    cb1.send({ type: 'ack', seq: g.seq });
  }
  await ca1.close();
  await cb1.close();
});

test('SIGHUP reloads the certificate; open connections stay; a bad pair keeps the old one', async () => {
  const a = await account(uniqueName('tlh'));
  const live = await wss(a.token, 'h');
  copyFileSync(f('xtwo.pem'), f('live.pem'));
  copyFileSync(f('xtwo.key'), f('live.key'));
  const hup = () => { for (const n of srv.nodes || [srv]) n.proc.kill('SIGHUP'); }; // every node of a cluster
  hup();
  let cn;
  for (let i = 0; i < 50 && cn !== 'xtwo'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    cn = (await req('GET', '/healthz')).cert;
  }
  assert.equal(cn, 'xtwo');
  // the WebSocket opened before the reload still works
  live.send({ type: 'ping', id: 'p1' });
  await live.next({ type: 'pong' });
  // a key that does not match: logged, the old pair stays
  copyFileSync(f('one.key'), f('live.key'));
  hup();
  await new Promise((r) => setTimeout(r, 300));
  assert.match(srv.stderr(), /tls reload failed/);
  assert.equal((await req('GET', '/healthz')).cert, 'xtwo');
  await live.close();
});

test('the tern CLI speaks https:// and wss:// with --ca-file (or $TERN_CA_FILE), and refuses a certificate it cannot verify', async () => {
  const homes = tempHomes();
  const [ha, hb] = [homes.make(), homes.make()];
  const url = `https://127.0.0.1:${srv.port}`;
  const a = `tcli${process.pid % 1000}a`, b = `tcli${process.pid % 1000}b`;
  // without the CA the server's certificate does not verify: an error, nothing sent
  const bad = await tern(['register', a, '--password', 'correct horse battery', '--server', url], { home: ha });
  assert.notEqual(bad.code, 0, bad.stdout);
  assert.match(bad.stderr, /certificate|TLS|verif/i);
  for (const [h, u] of [[ha, a], [hb, b]]) {
    const r = await tern(['register', u, '--password', 'correct horse battery', '--server', url, '--ca-file', f('ca.pem')], { home: h });
    assert.equal(r.code, 0, r.stderr);
  }
  const sent = await tern(['send', b, 'over https', '--plain', '--server', url], { home: ha, env: { TERN_CA_FILE: f('ca.pem') } });
  assert.equal(sent.code, 0, sent.stderr);
  const got = await tern(['listen', '--count', '1', '--timeout', '10s', '--server', url, '--ca-file', f('ca.pem')], { home: hb });
  assert.equal(got.code, 0, got.stderr);
  assert.match(got.stdout, /over https/);
  assert.equal((await tern(['me', '--server', url, '--ca-file', f('nope.pem')], { home: ha })).code, 2);
  homes.cleanup();
});

test('a certificate that does not load stops start-up with a clear reason', async () => {
  const r = spawnSync(TERND,
    ['--listen', '127.0.0.1:0', '--data-dir', makeTempDir(), ...BASE_ARGS, '--tls-cert', f('nope.pem'), '--tls-key', f('one.key')],
    { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /cannot set up TLS.*nope\.pem/);
  const half = spawnSync(TERND,
    ['--listen', '127.0.0.1:0', '--data-dir', makeTempDir(), ...BASE_ARGS, '--tls-cert', f('one.pem')],
    { encoding: 'utf8', timeout: 10000 });
  assert.equal(half.status, 2);
  assert.match(half.stderr, /needs both tls\.cert and tls\.key/);
});

