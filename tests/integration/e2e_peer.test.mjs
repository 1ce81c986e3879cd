// tern-e2e-peer, the C side of the E2E interop tests (docs/e2e.md): its JSON-lines protocol,
// driven from node as the web client's JS module will drive it. Here two C peers talk through
// it: a bundle from one's published keys, a prekey message, replies, messages out of order,
// safety numbers, and an AES-256-GCM blob. No server is involved.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { REPO_ROOT } from './lib/server.mjs';

const PEER = process.env.TERN_E2E_PEER || path.join(REPO_ROOT, 'build', 'tern-e2e-peer');

/** One peer process; call(cmd) sends a line and resolves with the answer line. */
function startPeer() {
  const proc = spawn(PEER, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: proc.stdout });
  const waiting = [];
  rl.on('line', (line) => waiting.shift()?.(JSON.parse(line)));
  return {
    call(cmd) {
      return new Promise((resolve) => {
        waiting.push(resolve);
        proc.stdin.write(`${JSON.stringify(cmd)}\n`);
      });
    },
    async quit() {
      await this.call({ cmd: 'quit' });
      await new Promise((r) => proc.on('close', r));
    },
  };
}

/** What GET /v1/keys/{user}/{device} would answer, from a published keys body (using up a prekey). */
function bundle(deviceId, keys) {
  return {
    device_id: deviceId,
    registration_id: keys.registration_id,
    identity_key: keys.identity_key,
    signed_prekey: keys.signed_prekey,
    one_time_prekey: keys.one_time_prekeys.shift() ?? null,
  };
}

describe('tern-e2e-peer', { skip: !existsSync(PEER) && `tern-e2e-peer not built at ${PEER}` }, () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'tern-e2e-peer-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  test('two peers: first contact, replies, out of order, safety numbers, blobs, state reopened', async () => {
    const a = startPeer();
    const b = startPeer();
    let r = await a.call({ cmd: 'init', dir: path.join(root, 'a'), user: 'alice', device_id: 'A1', tag: 7 });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.tag, 7);
    assert.equal(r.user, 'alice');
    const aIdentity = r.identity_key;
    r = await b.call({ cmd: 'init', dir: path.join(root, 'b'), user: 'bob.b', device_id: 'B1' });
    assert.equal(r.ok, true, r.error);
    const bIdentity = r.identity_key;
    const bKeys = (await b.call({ cmd: 'publish' })).keys;
    assert.equal(bKeys.one_time_prekeys.length, 100);
    assert.equal(bKeys.signed_prekey.key_id, 1);

    r = await a.call({ cmd: 'bundle', user: 'bob.b', device: bundle('B1', bKeys) });
    assert.deepEqual([r.ok, r.change], [true, 'first']);
    const c1 = await a.call({ cmd: 'encrypt', user: 'bob.b', device_id: 'B1', inner: { body: 'hello bob' } });
    assert.equal(c1.type, 'prekey');
    r = await b.call({ cmd: 'decrypt', user: 'alice', device_id: 'A1', type: c1.type, body: c1.body });
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.inner, { v: 1, body: 'hello bob' });
    assert.equal(Buffer.from(r.plaintext_b64, 'base64').length % 160, 0); // padded

    const reply = await b.call({ cmd: 'encrypt', user: 'alice', device_id: 'A1', inner: { body: 'hi', reply_to: 'm1' } });
    assert.equal(reply.type, 'message');
    r = await a.call({ cmd: 'decrypt', user: 'bob.b', device_id: 'B1', type: reply.type, body: reply.body });
    assert.equal(r.inner.reply_to, 'm1');

    const many = [];
    for (let i = 0; i < 8; i++) many.push(await a.call({ cmd: 'encrypt', user: 'bob.b', device_id: 'B1', inner: { body: `n${i}` } }));
    for (const i of [7, 2, 5, 0, 1, 6, 3, 4]) {
      r = await b.call({ cmd: 'decrypt', user: 'alice', device_id: 'A1', type: many[i].type, body: many[i].body });
      assert.equal(r.inner.body, `n${i}`);
    }
    r = await b.call({ cmd: 'decrypt', user: 'alice', device_id: 'A1', type: many[0].type, body: many[0].body });
    assert.equal(r.ok, false); // a replay

    const sa = await a.call({ cmd: 'safety', local_user: 'alice', local_keys: [aIdentity], remote_user: 'bob.b', remote_keys: [bIdentity] });
    const sb = await b.call({ cmd: 'safety', local_user: 'bob.b', local_keys: [bIdentity], remote_user: 'alice', remote_keys: [aIdentity] });
    assert.match(sa.number, /^\d{60}$/);
    assert.equal(sa.number, sb.number);

    const data = Buffer.from('an image, say');
    const sealed = await a.call({ cmd: 'seal', data: data.toString('base64') });
    r = await b.call({ cmd: 'unseal', blob: sealed.blob, key: sealed.key, iv: sealed.iv, sha256: sealed.sha256 });
    assert.equal(Buffer.from(r.data, 'base64').toString(), 'an image, say');
    const tampered = Buffer.from(sealed.blob, 'base64');
    tampered[0] ^= 1;
    r = await b.call({ cmd: 'unseal', blob: tampered.toString('base64'), key: sealed.key, iv: sealed.iv });
    assert.equal(r.ok, false);

    // The state survives a new process.
    await b.quit();
    const b2 = startPeer();
    r = await b2.call({ cmd: 'open', dir: path.join(root, 'b') });
    assert.equal(r.identity_key, bIdentity);
    const later = await a.call({ cmd: 'encrypt', user: 'bob.b', device_id: 'B1', inner: { body: 'after restart' } });
    r = await b2.call({ cmd: 'decrypt', user: 'alice', device_id: 'A1', type: later.type, body: later.body });
    assert.equal(r.inner.body, 'after restart');
    r = await b2.call({ cmd: 'frobnicate' });
    assert.equal(r.ok, false);
    await a.quit();
    await b2.quit();
  });
});
