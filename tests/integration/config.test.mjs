// PROTOCOL.md section 0: processes, flags, settings in three spellings, exit status 2.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, chmodSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { startServer, runTernd, makeTempDir, BASE_ARGS } from './lib/server.mjs';
import { newUser } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

// Every setting PROTOCOL.md names in section 0 (media.* and push.* come with their issues).
const SETTINGS = [
  'ws.ping_interval', 'ws.idle_timeout', 'ws.auth_timeout', 'ws.max_message', 'ws.max_outbound',
  'limits.send_rate', 'limits.send_burst', 'inbox.max_envelopes', 'inbox.ttl',
  'devices.max_per_user', 'devices.idle_expiry', 'auth.hash_cost',
];
const flagOf = (key) => '--' + key.replace(/[._]/g, '-');

/** How many sends to an offline device succeed before rate_limited (i.e. its inbox cap, up to 10). */
async function inboxCap(srv) {
  const alice = await newUser(srv, 'cfg');
  const bob = await newUser(srv, 'cfg');
  const ca = await online(srv, alice);
  let ok = 0;
  for (let i = 0; i < 10; i++) {
    ca.send({ type: 'send', id: `c${i}`, to: bob.user, body: 'x' });
    const a = await ca.next((f) => f.id === `c${i}`);
    if (a.type === 'sent') ok++;
    else { assert.equal(a.code, 'rate_limited', JSON.stringify(a)); break; }
  }
  await closeAll(ca);
  return ok;
}

function assertExit2(r, what) {
  assert.equal(r.timedOut, false, `${what}: ternd kept running`);
  assert.equal(r.signal, null, `${what}: ternd died of ${r.signal} (a crash)`);
  assert.equal(r.code, 2, `${what}: exit ${r.code}, stderr:\n${r.stderr}`);
  // ordinary info/debug log lines may surround it; the reason itself is one line
  const reason = r.stderr.split('\n').filter((l) => l.trim() && !/^ts=\S+ level=(debug|info) /.test(l));
  assert.equal(reason.length, 1, `${what}: expected a one-line reason on stderr, got:\n${r.stderr}`);
}

describe('settings', () => {
  const servers = [];
  after(async () => { await Promise.all(servers.map((s) => s.close())); });

  test('--help lists every setting as a flag with its default, and exits 0', async () => {
    const r = await runTernd(['--help']);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout + r.stderr;
    for (const key of SETTINGS) assert.ok(text.includes(flagOf(key)), `--help does not list ${flagOf(key)}`);
    for (const def of ['30s', '90s', '10s', '1MiB', '8MiB', '20/s', '1000', '100000', '30d', '16', 'interactive']) {
      assert.ok(text.includes(def), `--help does not show the default ${def}`);
    }
  });

  test('a config file (key = value, # comments) sets a setting', async () => {
    const dir = makeTempDir();
    const file = path.join(dir, 'tern.conf');
    writeFileSync(file, '# test config\n\ninbox.max_envelopes = 2   # a tiny inbox\nlimits.send_burst = 1000\n');
    const srv = await startServer({ args: ['--config', file] });
    servers.push(srv);
    assert.equal(await inboxCap(srv), 2);
  });

  test('precedence: flag > environment > file', async () => {
    const dir = makeTempDir();
    const file = path.join(dir, 'tern.conf');
    writeFileSync(file, 'inbox.max_envelopes = 2\n');
    const envOnly = await startServer({ args: ['--config', file], env: { TERN_INBOX_MAX_ENVELOPES: '3' } });
    servers.push(envOnly);
    assert.equal(await inboxCap(envOnly), 3, 'the environment must override the file');
    const flag = await startServer({ args: ['--config', file, '--inbox-max-envelopes', '4'], env: { TERN_INBOX_MAX_ENVELOPES: '3' } });
    servers.push(flag);
    assert.equal(await inboxCap(flag), 4, 'a flag must override the environment');
  });

  test('auth.hash_cost = test is refused without --allow-insecure-test-settings (exit 2)', async () => {
    const dir = makeTempDir();
    const r = await runTernd(['--listen', '127.0.0.1:0', '--data-dir', dir, '--auth-hash-cost', 'test']);
    assertExit2(r, '--auth-hash-cost test alone');
  });

  test('bad flags → exit 2 with a one-line reason, never a crash', async () => {
    const dir = makeTempDir();
    const base = ['--listen', '127.0.0.1:0', '--data-dir', dir, ...BASE_ARGS];
    const cases = {
      'unknown flag': ['--no-such-setting', '1'],
      'duration without a unit': ['--inbox-ttl', '30'],
      'bad size': ['--ws-max-message', 'lots'],
      'bad rate': ['--limits-send-rate', 'fast'],
      'negative count': ['--inbox-max-envelopes', '-5'],
      'missing value': ['--inbox-ttl'],
      'bad listen address': ['--listen', 'not-an-address'],
      'bad hash cost': ['--auth-hash-cost', 'extreme'],
      'stray argument': ['serve'],
    };
    for (const [what, extra] of Object.entries(cases)) {
      const r = await runTernd([...base, ...extra]);
      assertExit2(r, what);
    }
    const badEnv = await runTernd(base, { env: { TERN_INBOX_TTL: 'forever' } });
    assertExit2(badEnv, 'bad environment value');
    const file = path.join(dir, 'bad.conf');
    writeFileSync(file, 'inbox.no_such_key = 3\n');
    assertExit2(await runTernd([...base, '--config', file]), 'unknown key in the config file');
    assertExit2(await runTernd([...base, '--config', path.join(dir, 'missing.conf')]), 'missing config file');
  });

  test('an unusable data dir → exit 2 with a one-line reason', async () => {
    const dir = makeTempDir();
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'not a directory');
    assertExit2(await runTernd(['--listen', '127.0.0.1:0', '--data-dir', file, ...BASE_ARGS]), 'data dir is a file');
    assertExit2(await runTernd(['--listen', '127.0.0.1:0', '--data-dir', path.join(file, 'sub'), ...BASE_ARGS]), 'data dir under a file');
  });

  test('what ternd writes in its data dir is its own: files 0600, directories 0700; a readable data dir is warned about', { skip: process.env.TERN_TEST_CLUSTER ? 'one node\'s files' : false }, async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const srv = await startServer({ dataDir: dir });
    servers.push(srv);
    await newUser(srv, 'modes');
    assert.match(srv.stderr(), /the data dir can be read by other users/);
    const bad = [];
    const walk = (d) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        const mode = statSync(p).mode & 0o777;
        if (e.isDirectory()) {
          if (mode !== 0o700) bad.push(`${p} ${mode.toString(8)}`);
          walk(p);
        } else if (mode !== 0o600) {
          bad.push(`${p} ${mode.toString(8)}`);
        }
      }
    };
    walk(dir);
    assert.deepEqual(bad, []);
  });

  test('a port already in use → exit 2', async () => {
    const srv = await startServer();
    servers.push(srv);
    const r = await runTernd(['--listen', `127.0.0.1:${srv.port}`, '--data-dir', makeTempDir(), ...BASE_ARGS]);
    assertExit2(r, 'port in use');
  });

  test('logs are logfmt lines on stderr', async () => {
    const srv = await startServer();
    servers.push(srv);
    await newUser(srv, 'log');
    const lines = srv.stderr().trim().split('\n').filter(Boolean);
    assert.ok(lines.length >= 1);
    for (const l of lines) {
      assert.match(l, /^ts=\S+ level=(debug|info|warn|error) msg=("[^"]*"|\S+)/, `not a logfmt line: ${l}`);
    }
  });

  test('SIGINT is a clean shutdown too: close 1001, exit 0', async () => {
    const srv = await startServer();
    servers.push(srv);
    const a = await newUser(srv, 'sigint');
    const c = await online(srv, a);
    srv.proc.kill('SIGINT');
    const exit = await srv.exited;
    assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}`);
    assert.equal((await c.closed).code, 1001);
  });
});
