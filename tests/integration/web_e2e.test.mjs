// The web client's E2E module (web/js/e2e.js, on the bundled TS Signal library) against the C
// side (build/tern-e2e-peer, libsignal-protocol-c), both ways, under node (WebCrypto): first
// contact with a prekey message, replies, messages out of order, a new device on either side, a
// group of three, equal safety numbers, and AES-256-GCM attachments. No server is involved: the
// key directory is played by handing each side the other's published bundle.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { REPO_ROOT } from './lib/server.mjs';

const PEER = process.env.TERN_E2E_PEER || path.join(REPO_ROOT, 'build', 'tern-e2e-peer');
const VENDOR = path.join(REPO_ROOT, 'web', 'vendor', 'vendor.js');
const skip = (!existsSync(PEER) && `tern-e2e-peer not built at ${PEER}`) || (!existsSync(VENDOR) && `web/vendor/vendor.js not built (scripts/build)`);

function startPeer() {
  const proc = spawn(PEER, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: proc.stdout });
  const waiting = [];
  rl.on('line', (line) => waiting.shift()?.(JSON.parse(line)));
  return {
    async call(cmd) {
      const r = await new Promise((resolve) => {
        waiting.push(resolve);
        proc.stdin.write(`${JSON.stringify(cmd)}\n`);
      });
      return r;
    },
    async ok(cmd) {
      const r = await this.call(cmd);
      assert.equal(r.ok, true, `${cmd.cmd}: ${r.error}`);
      return r;
    },
    async quit() {
      await this.call({ cmd: 'quit' });
      await new Promise((r) => proc.on('close', r));
    },
  };
}

/** What GET /v1/keys/{user}/{device} answers, from a published keys body (using up a prekey). */
function bundle(deviceId, keys) {
  return {
    device_id: deviceId,
    registration_id: keys.registration_id,
    identity_key: keys.identity_key,
    signed_prekey: keys.signed_prekey,
    one_time_prekey: keys.one_time_prekeys.shift() ?? null,
  };
}

describe('web E2E module against tern-e2e-peer', { skip }, async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'tern-web-e2e-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const e2e = skip ? null : await import(path.join(REPO_ROOT, 'web', 'js', 'e2e.js'));

  async function webDevice(user, device) {
    const w = new e2e.E2E(new e2e.MemKV(), user, device);
    await w.init();
    const keys = await w.keysBody();
    await w.published(keys);
    delete keys._ids;
    return { w, keys };
  }

  test('keys body: the shape PROTOCOL.md 11 asks for', async () => {
    const { w, keys } = await webDevice('alice', 'W1');
    assert.equal(Buffer.from(keys.identity_key, 'base64').length, 33);
    assert.equal(Buffer.from(keys.identity_key, 'base64')[0], 5);
    assert.ok(keys.registration_id >= 1 && keys.registration_id <= 16380);
    assert.equal(keys.signed_prekey.key_id, 1);
    assert.equal(Buffer.from(keys.signed_prekey.public_key, 'base64').length, 33);
    assert.equal(Buffer.from(keys.signed_prekey.signature, 'base64').length, 64);
    assert.equal(keys.one_time_prekeys.length, 100);
    for (const k of keys.one_time_prekeys) assert.ok(k.key_id >= 1 && k.key_id <= 16777215);
    const top = await w.keysBody({ full: false, count: 100 });
    assert.equal(top.identity_key, undefined);
    assert.equal(top.one_time_prekeys.length, 100);
    assert.notEqual(top.one_time_prekeys[0].key_id, keys.one_time_prekeys[0].key_id);
  });

  test('web first, then C: prekey message, replies, out of order, safety number', async () => {
    const c = startPeer();
    try {
      const { w, keys: wKeys } = await webDevice('alice', 'W1');
      await c.ok({ cmd: 'init', dir: path.join(root, 'c1'), user: 'bob.b', device_id: 'C1' });
      const cKeys = (await c.ok({ cmd: 'publish' })).keys;

      assert.equal(await w.addBundle('bob.b', bundle('C1', cKeys)), 'first');
      const m1 = await w.encrypt('bob.b', 'C1', { body: 'hello bob', reply_to: 'x1' });
      assert.equal(m1.type, 'prekey');
      let r = await c.ok({ cmd: 'decrypt', user: 'alice', device_id: 'W1', type: m1.type, body: m1.body });
      assert.deepEqual(r.inner, { v: 1, body: 'hello bob', reply_to: 'x1' });
      assert.equal(Buffer.from(r.plaintext_b64, 'base64').length % 160, 0);
      assert.equal(r.change, 'first');

      // C replies; the web side decrypts with the session the prekey message built there.
      const rep = await c.ok({ cmd: 'encrypt', user: 'alice', device_id: 'W1', inner: { reaction: { to: 'm1', emoji: '👍' } } });
      assert.equal(rep.type, 'message');
      const d = await w.decrypt('bob.b', 'C1', rep.type, rep.body);
      assert.deepEqual(d.inner, { v: 1, reaction: { to: 'm1', emoji: '👍' } });
      const ed = await w.encrypt('bob.b', 'C1', { body: 'hello bob!', edit: { of: 'm0' } });
      r = await c.ok({ cmd: 'decrypt', user: 'alice', device_id: 'W1', type: ed.type, body: ed.body });
      assert.deepEqual(r.inner, { v: 1, body: 'hello bob!', edit: { of: 'm0' } });

      // Several each way, delivered out of order.
      const fromW = [];
      for (let i = 0; i < 5; i++) fromW.push(await w.encrypt('bob.b', 'C1', { body: `w${i}` }));
      for (const i of [3, 0, 4, 1, 2]) {
        r = await c.ok({ cmd: 'decrypt', user: 'alice', device_id: 'W1', type: fromW[i].type, body: fromW[i].body });
        assert.equal(r.inner.body, `w${i}`);
      }
      const fromC = [];
      for (let i = 0; i < 5; i++) fromC.push(await c.ok({ cmd: 'encrypt', user: 'alice', device_id: 'W1', inner: { body: `c${i}`, group_id: 'g1' } }));
      for (const i of [4, 2, 0, 3, 1]) {
        const x = await w.decrypt('bob.b', 'C1', fromC[i].type, fromC[i].body);
        assert.deepEqual(x.inner, { v: 1, body: `c${i}`, group_id: 'g1' });
      }
      // A replay is refused.
      await assert.rejects(w.decrypt('bob.b', 'C1', fromC[1].type, fromC[1].body));

      // Safety numbers: both sides, each passing its own view, agree.
      const webNum = await e2e.safetyNumber('alice', [wKeys.identity_key], 'bob.b', await w.identityKeys('bob.b'));
      assert.match(webNum, /^\d{60}$/);
      r = await c.ok({ cmd: 'safety', local_user: 'bob.b', local_keys: [cKeys.identity_key], remote_user: 'alice', remote_keys: [wKeys.identity_key] });
      assert.equal(r.number, webNum);
      assert.equal(await e2e.librarySafetyNumber('alice', [wKeys.identity_key], 'bob.b', await w.identityKeys('bob.b')), webNum);
    } finally {
      await c.quit();
    }
  });

  test('C first, then web; a new device on either side', async () => {
    const c = startPeer();
    const c2 = startPeer();
    try {
      const { w, keys: wKeys } = await webDevice('bob', 'W2');
      await c.ok({ cmd: 'init', dir: path.join(root, 'c2'), user: 'carol', device_id: 'C2' });
      const cKeys = (await c.ok({ cmd: 'publish' })).keys;
      let r = await c.ok({ cmd: 'bundle', user: 'bob', device: bundle('W2', wKeys) });
      assert.equal(r.change, 'first');
      const m = await c.ok({ cmd: 'encrypt', user: 'bob', device_id: 'W2', inner: { body: 'from C' } });
      assert.equal(m.type, 'prekey');
      let d = await w.decrypt('carol', 'C2', m.type, m.body);
      assert.equal(d.inner.body, 'from C');
      assert.equal(d.change, 'first');
      const back = await w.encrypt('carol', 'C2', { body: 'from web' });
      assert.equal(back.type, 'message');
      r = await c.ok({ cmd: 'decrypt', user: 'bob', device_id: 'W2', type: back.type, body: back.body });
      assert.equal(r.inner.body, 'from web');

      // carol logs in on a second C device: the web side learns it from a bundle (devices_changed).
      await c2.ok({ cmd: 'init', dir: path.join(root, 'c2b'), user: 'carol', device_id: 'C3' });
      const c2Keys = (await c2.ok({ cmd: 'publish' })).keys;
      assert.equal(await w.addBundle('carol', bundle('C3', c2Keys)), 'new_device');
      const to2 = await w.encrypt('carol', 'C3', { body: 'to the new one' });
      r = await c2.ok({ cmd: 'decrypt', user: 'bob', device_id: 'W2', type: to2.type, body: to2.body });
      assert.equal(r.inner.body, 'to the new one');
      assert.deepEqual((await w.devices('carol')).sort(), ['C2', 'C3']);

      // bob gets a second web device: C builds a session with it, and it decrypts.
      const { w: w3, keys: w3Keys } = await webDevice('bob', 'W3');
      r = await c.ok({ cmd: 'bundle', user: 'bob', device: bundle('W3', w3Keys) });
      assert.equal(r.change, 'new_device');
      const m3 = await c.ok({ cmd: 'encrypt', user: 'bob', device_id: 'W3', inner: { body: 'to W3' } });
      d = await w3.decrypt('carol', 'C2', m3.type, m3.body);
      assert.equal(d.inner.body, 'to W3');
      // And the old one still works.
      const m4 = await c.ok({ cmd: 'encrypt', user: 'bob', device_id: 'W2', inner: { body: 'still W2' } });
      d = await w.decrypt('carol', 'C2', m4.type, m4.body);
      assert.equal(d.inner.body, 'still W2');

      // Safety number over two devices on each side, in any order, equal on both sides.
      const bobKeys = [wKeys.identity_key, w3Keys.identity_key];
      const carolKeys = [cKeys.identity_key, c2Keys.identity_key];
      const webNum = await e2e.safetyNumber('bob', bobKeys, 'carol', await w.identityKeys('carol'));
      r = await c.ok({ cmd: 'safety', local_user: 'carol', local_keys: carolKeys.slice().reverse(), remote_user: 'bob', remote_keys: bobKeys.slice().reverse() });
      assert.equal(r.number, webNum);
      assert.equal(await e2e.safetyNumber('carol', carolKeys, 'bob', bobKeys.slice().reverse()), webNum);
      assert.equal(await e2e.librarySafetyNumber('carol', carolKeys, 'bob', bobKeys), webNum);

      // A lost session (forgotten): a fresh bundle starts a new one, and C accepts it.
      await w.forget('carol', 'C2');
      assert.equal(await w.hasSession('carol', 'C2'), false);
      await w.addBundle('carol', bundle('C2', cKeys));
      const fresh = await w.encrypt('carol', 'C2', { body: 'again', resend_of: 'm9' });
      assert.equal(fresh.type, 'prekey');
      r = await c.ok({ cmd: 'decrypt', user: 'bob', device_id: 'W2', type: fresh.type, body: fresh.body });
      assert.deepEqual(r.inner, { v: 1, body: 'again', resend_of: 'm9' });
    } finally {
      await c.quit();
      await c2.quit();
    }
  });

  test('a group of three: one web device, two C devices, each to the others', async () => {
    const b = startPeer();
    const c = startPeer();
    try {
      const { w, keys: aKeys } = await webDevice('alice', 'A1');
      await b.ok({ cmd: 'init', dir: path.join(root, 'gb'), user: 'bob', device_id: 'B1' });
      await c.ok({ cmd: 'init', dir: path.join(root, 'gc'), user: 'carol', device_id: 'C1' });
      const bKeys = (await b.ok({ cmd: 'publish' })).keys;
      const cKeys = (await c.ok({ cmd: 'publish' })).keys;
      await w.addBundle('bob', bundle('B1', bKeys));
      await w.addBundle('carol', bundle('C1', cKeys));
      await b.ok({ cmd: 'bundle', user: 'carol', device: bundle('C1', cKeys) });
      await b.ok({ cmd: 'bundle', user: 'alice', device: bundle('A1', aKeys) });
      await c.ok({ cmd: 'bundle', user: 'alice', device: bundle('A1', aKeys) });
      await c.ok({ cmd: 'bundle', user: 'bob', device: bundle('B1', bKeys) });

      const inner = { body: 'hi all', group_id: 'G1' };
      const toB = await w.encrypt('bob', 'B1', inner);
      const toC = await w.encrypt('carol', 'C1', inner);
      assert.deepEqual((await b.ok({ cmd: 'decrypt', user: 'alice', device_id: 'A1', type: toB.type, body: toB.body })).inner, { v: 1, ...inner });
      assert.deepEqual((await c.ok({ cmd: 'decrypt', user: 'alice', device_id: 'A1', type: toC.type, body: toC.body })).inner, { v: 1, ...inner });

      for (const [p, name, dev] of [[b, 'bob', 'B1'], [c, 'carol', 'C1']]) {
        const x = await p.ok({ cmd: 'encrypt', user: 'alice', device_id: 'A1', inner: { body: `from ${name}`, group_id: 'G1' } });
        const d = await w.decrypt(name, dev, x.type, x.body);
        assert.deepEqual(d.inner, { v: 1, body: `from ${name}`, group_id: 'G1' });
      }
      const bc = await b.ok({ cmd: 'encrypt', user: 'carol', device_id: 'C1', inner: { body: 'b to c', group_id: 'G1' } });
      assert.equal((await c.ok({ cmd: 'decrypt', user: 'bob', device_id: 'B1', type: bc.type, body: bc.body })).inner.body, 'b to c');
    } finally {
      await b.quit();
      await c.quit();
    }
  });

  test('attachments: AES-256-GCM both ways, tampering refused', async () => {
    const c = startPeer();
    try {
      await c.ok({ cmd: 'init', dir: path.join(root, 'm'), user: 'x', device_id: 'X' });
      const data = new Uint8Array(70000).map((_, i) => (i * 7) & 0xff);
      const s = await e2e.seal(data);
      const r = await c.ok({ cmd: 'unseal', blob: Buffer.from(s.blob).toString('base64'), key: s.key, iv: s.iv, sha256: s.sha256 });
      assert.deepEqual(Buffer.from(r.data, 'base64'), Buffer.from(data));
      const cs = await c.ok({ cmd: 'seal', data: Buffer.from('an image from C').toString('base64') });
      const out = await e2e.unseal(new Uint8Array(Buffer.from(cs.blob, 'base64')).buffer, cs);
      assert.equal(Buffer.from(out).toString(), 'an image from C');
      const bad = new Uint8Array(Buffer.from(cs.blob, 'base64'));
      bad[0] ^= 1;
      await assert.rejects(e2e.unseal(bad.buffer, cs), /digest/);
      await assert.rejects(e2e.unseal(bad.buffer, { key: cs.key, iv: cs.iv }), /decrypt/);
    } finally {
      await c.quit();
    }
  });

  test("safety numbers: libsignal's published vector", async () => {
    // libsignal's NumericFingerprintGeneratorTest keys and identifiers (docs/e2e.md).
    const alice = '0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868';
    const bob = '05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b';
    const b64k = (h) => Buffer.from(h, 'hex').toString('base64');
    const n = await e2e.safetyNumber('+14152222222', [b64k(alice)], '+14153333333', [b64k(bob)]);
    assert.equal(n, '300354477692869396892869876765458257569162576843440918079131');
  });

  test('inner format: padded, only the fields in use, and garbage is not an inner object', () => {
    const p = e2e.encodeInner({ body: 'x', media: { media_id: 'm', key: 'k', iv: 'i', sha256: 's', mime: 'image/png', size: 3, width: 1, height: 2 }, reply_to: '' });
    assert.equal(p.length % 160, 0);
    assert.deepEqual(JSON.parse(Buffer.from(p).toString()), { v: 1, body: 'x', media: { media_id: 'm', key: 'k', iv: 'i', sha256: 's', mime: 'image/png', size: 3, width: 1, height: 2 } });
    assert.equal(e2e.decodeInner(new TextEncoder().encode('not json').buffer), null);
    assert.equal(e2e.decodeInner(new TextEncoder().encode('[1]').buffer), null);
  });
});
