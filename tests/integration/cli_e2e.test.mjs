// End-to-end encryption in the `tern` CLI (PROTOCOL.md 11) against a real ternd: keys
// published at register and login, encrypted 1:1 sends that listen decrypts, a new device
// (devices_changed), safety numbers equal on both sides, the plaintext fallback for a user
// without keys (and --e2e refusing it), an encrypted image and a long text as attachments,
// a group of three, and the decrypt_error → resend_of recovery.
// Skips, saying so, when the server has no key directory (404 on /v1/keys).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { startServer, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { request, register as apiRegister } from './lib/api.mjs';
import { TERN, PASSWORD, tern, ternLive, until, uniq, tempHomes } from './lib/cli.mjs';

const SAFETY = /^(\d{5} ){11}\d{5}$/m;

describe('tern CLI end-to-end encryption', { skip: !existsSync(TERN) && `tern not built at ${TERN}` }, () => {
  let srv, server, noDirectory;
  const homes = tempHomes();
  const users = {};

  const credsOf = (home) => JSON.parse(readFileSync(path.join(home, '.config', 'tern', `127.0.0.1-${srv.port}.json`), 'utf8'));
  const stateDir = (home) => path.join(home, '.config', 'tern', `127.0.0.1-${srv.port}.e2e`);

  async function account(name, { login = false } = {}) {
    const home = homes.make();
    const r = await tern([login ? 'login' : 'register', name, '--password', PASSWORD, ...server], { home });
    assert.equal(r.code, 0, r.stderr);
    return home;
  }

  before(async () => {
    srv = await startServer({ args: [...FAST_LIMITS, '--log-level', 'debug', '--limits-key-fetch-rate', '100000/s', '--limits-key-fetch-burst', '100000'] });
    server = ['--server', srv.url];
    const probe = await apiRegister(srv, uniq('probe'));
    noDirectory = (await request(srv, 'GET', '/v1/keys', { token: probe.body.token })).status === 404 &&
      (await request(srv, 'PUT', '/v1/keys', { token: probe.body.token, body: {} })).status === 404;
    if (noDirectory) return;
    for (const n of ['alice', 'bob', 'carol']) users[n] = uniq(n);
    users.aliceHome = await account(users.alice);
    users.bobHome = await account(users.bob);
    users.carolHome = await account(users.carol);
  });
  after(async () => {
    await srv?.close();
    homes.cleanup();
  });

  const skip = (t) => {
    if (noDirectory) t.skip('the server answers 404 on /v1/keys: no key directory (server side of PROTOCOL.md 11 missing)');
    return noDirectory;
  };

  test('register publishes keys: the state is 0600 in a 0700 directory, the server holds 100 prekeys', async (t) => {
    if (skip(t)) return;
    const dir = stateDir(users.aliceHome);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(path.join(dir, 'e2e.json')).mode & 0o777, 0o600);
    const creds = credsOf(users.aliceHome);
    const own = await request(srv, 'GET', '/v1/keys', { token: creds.token });
    assert.equal(own.status, 200, own.text);
    assert.equal(own.body.one_time_prekeys, 100);
    const state = JSON.parse(readFileSync(path.join(dir, 'e2e.json'), 'utf8'));
    assert.equal(state.user, users.alice);
    assert.equal(state.device_id, creds.device_id);
    assert.equal(own.body.identity_key.length, 44);
  });

  test('an encrypted send: listen decrypts it; the reply too', async (t) => {
    if (skip(t)) return;
    const marker = `secret-${uniq('m')}`;
    const listen = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.bobHome });
    await until(() => listen.stdout.length || listen.proc.exitCode !== null || true, 'listen up');
    await new Promise((r) => setTimeout(r, 300));
    let r = await tern(['send', users.bob, `hello ${marker}`, '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    const msgId = r.stdout.trim();
    assert.ok(msgId);
    assert.equal((await listen.done).code, 0, listen.stderr);
    assert.match(listen.stdout, new RegExp(`${users.alice}: 🔒 hello ${marker} \\(msg_id ${msgId}\\)`));

    const back = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.aliceHome });
    await new Promise((res) => setTimeout(res, 300));
    r = await tern(['send', users.alice, 'hi back', ...server], { home: users.bobHome });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await back.done).code, 0, back.stderr);
    assert.match(back.stdout, /🔒 hi back/);
  });

  test('later sends use the sessions they have: no one-time prekey of the recipient is used up', async (t) => {
    if (skip(t)) return;
    const bobCreds = credsOf(users.bobHome);
    const count = async () => (await request(srv, 'GET', '/v1/keys', { token: bobCreds.token })).body.one_time_prekeys;
    const before = await count();
    for (let i = 0; i < 3; i++) {
      const r = await tern(['send', users.bob, `again ${i}`, '--e2e', ...server], { home: users.aliceHome });
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(await count(), before);
  });

  test('chat encrypts the lines typed, and shows what arrives decrypted', async (t) => {
    if (skip(t)) return;
    const listen = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.aliceHome });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['chat', users.alice, '--e2e', ...server], { home: users.bobHome, input: 'typed in chat\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await listen.done).code, 0, listen.stderr);
    assert.match(listen.stdout, /🔒 typed in chat/);
  });

  test('safety numbers: 12 groups of 5, the same on both sides', async (t) => {
    if (skip(t)) return;
    const a = await tern(['safety', users.bob, ...server], { home: users.aliceHome });
    const b = await tern(['safety', users.alice, ...server], { home: users.bobHome });
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(a.stdout, SAFETY);
    assert.equal(a.stdout.trim(), b.stdout.trim());
    const other = await tern(['safety', users.carol, ...server], { home: users.aliceHome });
    assert.notEqual(other.stdout.trim(), a.stdout.trim());
  });

  test('a new device of the recipient: devices_changed is fixed, both devices decrypt, the safety number changes', async (t) => {
    if (skip(t)) return;
    const before = (await tern(['safety', users.bob, ...server], { home: users.aliceHome })).stdout.trim();
    const bob2 = await account(users.bob, { login: true });
    const l1 = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.bobHome });
    const l2 = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: bob2 });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['send', users.bob, 'to all of you', '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /new device/); // the warning line
    assert.equal((await l1.done).code, 0, l1.stderr);
    assert.equal((await l2.done).code, 0, l2.stderr);
    assert.match(l1.stdout, /🔒 to all of you/);
    assert.match(l2.stdout, /🔒 to all of you/);
    const after = (await tern(['safety', users.bob, ...server], { home: users.aliceHome })).stdout.trim();
    assert.notEqual(after, before);
    assert.equal((await tern(['safety', users.alice, ...server], { home: bob2 })).stdout.trim(), after);
    users.bob2Home = bob2;
  });

  test('a user without keys: plaintext with a note by default, refused with --e2e', async (t) => {
    if (skip(t)) return;
    const dave = uniq('dave');
    const d = await apiRegister(srv, dave); // through the API: no keys published
    assert.equal(d.status, 201);
    let r = await tern(['send', dave, 'plain hello', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /has no end-to-end keys: sending in plaintext/);
    r = await tern(['send', dave, 'must be secret', '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no end-to-end keys/);
    r = await tern(['safety', dave, ...server], { home: users.aliceHome });
    assert.equal(r.code, 1);
  });

  test('an encrypted image: uploaded as octet-stream, listen shows it, fetch decrypts it', async (t) => {
    if (skip(t)) return;
    // A tiny PNG (the CLI sniffs the type from the bytes).
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');
    const file = path.join(users.aliceHome, 'dot.png');
    writeFileSync(file, png);
    const listen = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.carolHome });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['send', users.carol, '--image', file, 'a dot', '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await listen.done).code, 0, listen.stderr);
    const m = listen.stdout.match(/🔒 \[image 1×1[^\]]*\] ([a-z0-9]+) a dot/);
    assert.ok(m, listen.stdout);
    const out = path.join(users.carolHome, 'got.png');
    const f = await tern(['fetch', m[1], '-o', out, ...server], { home: users.carolHome });
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(readFileSync(out), png);
  });

  test('a text too long for one frame goes as an encrypted attachment and arrives whole', async (t) => {
    if (skip(t)) return;
    const long = 'x'.repeat(40000) + 'END';
    const listen = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.carolHome });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['send', users.carol, '-', '--e2e', ...server], { home: users.aliceHome, input: long });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await listen.done).code, 0, listen.stderr);
    assert.ok(listen.stdout.includes(`🔒 ${long}`), listen.stdout.slice(0, 200));
  });

  test('a group of three: pairwise encryption to every member device', async (t) => {
    if (skip(t)) return;
    const g = await tern(['group', 'create', 'Secret club', users.bob, users.carol, ...server], { home: users.aliceHome });
    assert.equal(g.code, 0, g.stderr);
    const gid = g.stdout.split('\n')[0].trim();
    const lb = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.bobHome });
    const lc = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.carolHome });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['send', '--group', gid, 'club news', '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await lb.done).code, 0, lb.stderr);
    assert.equal((await lc.done).code, 0, lc.stderr);
    assert.match(lb.stdout, /#Secret club: 🔒 club news/);
    assert.match(lc.stdout, /#Secret club: 🔒 club news/);
  });

  test('a message that does not decrypt: placeholder, decrypt_error, and a resend with resend_of', async (t) => {
    if (skip(t)) return;
    // Carol's device loses its session with alice's device (a restored backup, say).
    const file = path.join(stateDir(users.carolHome), 'e2e.json');
    const state = JSON.parse(readFileSync(file, 'utf8'));
    state.items = state.items.filter((it) => !(it.k === 'session' && it.u === users.alice));
    writeFileSync(file, JSON.stringify(state), { mode: 0o600 });
    const lc = ternLive(['listen', '--count', '2', '--timeout', '25s', ...server], { home: users.carolHome });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['send', users.carol, 'do you read me', '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    await until(() => /could not decrypt/.test(lc.stdout), 'the placeholder', 15000);
    // One connection per device: alice's device hears of it once it connects again.
    const la = ternLive(['listen', '--timeout', '8s', ...server], { home: users.aliceHome });
    await until(() => la.stderr.includes(`sent ${id} again`), 'the resend', 15000).catch((err) => {
      throw new Error(`${err.message}\nalice's listen: ${la.stdout}${la.stderr}\ncarol's listen: ${lc.stdout}${lc.stderr}`);
    });
    assert.equal((await lc.done).code, 0, lc.stderr);
    assert.match(lc.stdout, new RegExp(`🔒 \\(resent in place of ${id}\\) do you read me`));
    la.proc.kill('SIGINT');
    await la.done;
  });

  test("a new device of the sender: it gets its own copy of what the first device sends", async (t) => {
    if (skip(t)) return;
    const alice2 = await account(users.alice, { login: true });
    const mine = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: alice2 });
    const theirs = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: users.carolHome });
    await new Promise((r) => setTimeout(r, 300));
    const r = await tern(['send', users.carol, 'copied to my other device', '--e2e', ...server], { home: users.aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await mine.done).code, 0, mine.stderr);
    assert.equal((await theirs.done).code, 0, theirs.stderr);
    assert.match(mine.stdout, new RegExp(`${users.alice} → ${users.carol}: 🔒 copied to my other device`));
    assert.match(theirs.stdout, /🔒 copied to my other device/);
  });

  test('one-time prekeys are topped up once few are left', async (t) => {
    if (skip(t)) return;
    const creds = credsOf(users.bobHome);
    const own = () => request(srv, 'GET', '/v1/keys', { token: creds.token });
    const before = (await own()).body.one_time_prekeys;
    const asker = credsOf(users.carolHome).token;
    for (let i = 0; i < before - 5; i++) await request(srv, 'GET', `/v1/keys/${users.bob}/${creds.device_id}`, { token: asker });
    assert.ok((await own()).body.one_time_prekeys <= 5);
    const r = await tern(['send', users.alice, 'topping up', ...server], { home: users.bobHome });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await own()).body.one_time_prekeys >= 100);
  });

  test('black box: a text sent encrypted is nowhere on the server (data dir, debug log), one sent plain is', async (t) => {
    if (skip(t)) return;
    const [dave, erin] = [uniq('dave'), uniq('erin')];
    const daveHome = await account(dave);
    const erinHome = await account(erin); // keys published; erin stays offline
    const plain = `PLAINMARK${uniq('p')}`, secret = `E2EMARK${uniq('s')}`;
    let r = await tern(['send', erin, `plain ${plain}`, '--plain', ...server], { home: daveHome });
    assert.equal(r.code, 0, r.stderr);
    r = await tern(['send', erin, `hello ${secret}`, '--e2e', ...server], { home: daveHome });
    assert.equal(r.code, 0, r.stderr);
    const filesUnder = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : e.isFile() ? [path.join(dir, e.name)] : []));
    const inDataDir = (m) => filesUnder(srv.dataDir).filter((f) => readFileSync(f).includes(m));
    // both wait in erin's inbox now; the store's files hold the plain one (the control) only
    if (!CLUSTER_NODES) { // in a cluster the store is NATS's, not a data dir of ours
      assert.ok(inDataDir(plain).length > 0, 'the plain text is in the data dir while it waits');
      assert.deepEqual(inDataDir(secret), [], 'the encrypted text is in the data dir');
    }
    assert.ok(!srv.stderr().includes(secret), 'the encrypted text is in the debug log');
    const got = await tern(['listen', '--count', '2', '--timeout', '20s', ...server], { home: erinHome });
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, new RegExp(`🔒 hello ${secret}`));
    assert.match(got.stdout, new RegExp(`plain ${plain}`));
    if (!CLUSTER_NODES) assert.deepEqual(inDataDir(secret), []);
    assert.ok(!srv.stderr().includes(secret), 'the encrypted text is in the debug log');
  });

  test('logout removes the state; the server deletes the keys', async (t) => {
    if (skip(t)) return;
    const creds = credsOf(users.bob2Home);
    const r = await tern(['logout', ...server], { home: users.bob2Home });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(path.join(stateDir(users.bob2Home), 'e2e.json')));
    const keys = await request(srv, 'GET', `/v1/keys/${users.bob}`, { token: credsOf(users.aliceHome).token });
    assert.ok(!keys.body.devices.some((d) => d.device_id === creds.device_id));
  });
});
