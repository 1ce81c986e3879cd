// The tern CLI's settings commands (PROTOCOL.md 14) against a real ternd: block, unblock,
// blocks, privacy, password, device remove, delete-account, and their refusals.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { PASSWORD, tern, uniq, tempHomes } from './lib/cli.mjs';

describe('tern CLI: settings', () => {
  let srv;
  const homes = tempHomes();
  let server;
  before(async () => {
    srv = await startServer();
    server = ['--server', srv.url];
  });
  after(async () => {
    await srv?.close();
    homes.cleanup();
  });

  async function account(prefix, device = 'cli') {
    const home = homes.make();
    const user = uniq(prefix);
    const r = await tern(['register', user, '--password', PASSWORD, '--device', device, ...server], { home });
    assert.equal(r.code, 0, r.stderr);
    return { home, user };
  }

  test('block, blocks, unblock; a blocked user cannot be messaged from the blocker', async () => {
    const a = await account('cba');
    const b = await account('cbb');
    let r = await tern(['blocks', ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /nobody blocked/);
    r = await tern(['block', b.user, ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`blocked ${b.user}`));
    assert.equal((await tern(['blocks', ...server], { home: a.home })).stdout.trim(), b.user);
    r = await tern(['send', b.user, 'hi', '--plain', ...server], { home: a.home });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /blocked/);
    r = await tern(['block', 'nobody-at-all', ...server], { home: a.home });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not_found/);
    r = await tern(['unblock', b.user, ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    assert.match((await tern(['blocks', ...server], { home: a.home })).stdout, /nobody blocked/);
    assert.equal((await tern(['block', ...server], { home: a.home })).code, 2, 'USER is required');
  });

  test('privacy shows and sets last seen and read receipts', async () => {
    const a = await account('cpr');
    let r = await tern(['privacy', ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'last seen: everyone\nread receipts: on\n');
    r = await tern(['privacy', 'last-seen', 'nobody', 'read-receipts', 'off', ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'last seen: nobody\nread receipts: off\n');
    r = await tern(['privacy', 'last-seen', 'friends', ...server], { home: a.home });
    assert.equal(r.code, 2);
    assert.equal((await tern(['privacy', 'last-seen', ...server], { home: a.home })).code, 2);
  });

  test('password: the current one checked, the new one from $TERN_NEW_PASSWORD or stdin', async () => {
    const a = await account('cpw');
    let r = await tern(['password', '--password', 'not the current one', ...server], { home: a.home, env: { TERN_NEW_PASSWORD: 'the second password' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad_credentials/);
    r = await tern(['password', '--password', PASSWORD, ...server], { home: a.home, env: { TERN_NEW_PASSWORD: 'the second password' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /password changed/);
    r = await tern(['password', ...server], { home: a.home, env: { TERN_PASSWORD: 'the second password' }, input: 'the third password\n' });
    assert.equal(r.code, 0, r.stderr);
    const other = homes.make();
    assert.equal((await tern(['login', a.user, '--password', 'the second password', ...server], { home: other })).code, 1);
    assert.equal((await tern(['login', a.user, '--password', 'the third password', ...server], { home: other })).code, 0);
    assert.equal((await tern(['me', ...server], { home: a.home })).code, 0, 'this device stays logged in');
  });

  test('device remove logs out another device; this one is refused with a hint', async () => {
    const a = await account('cdv', 'laptop');
    const phoneHome = homes.make();
    assert.equal((await tern(['login', a.user, '--password', PASSWORD, '--device', 'phone', ...server], { home: phoneHome })).code, 0);
    const me = await tern(['me', ...server], { home: a.home });
    const phoneId = /^\s+(\S+)\s+phone\b/m.exec(me.stdout)?.[1];
    const selfId = /^\s+(\S+) \(this device\)/m.exec(me.stdout)?.[1];
    assert.ok(phoneId && selfId, me.stdout);
    let r = await tern(['device', 'remove', selfId, ...server], { home: a.home });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /tern logout/);
    r = await tern(['device', 'remove', phoneId, ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    r = await tern(['me', ...server], { home: phoneHome });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unauthorized/);
    assert.equal((await tern(['device', 'remove', 'no-such-id', ...server], { home: a.home })).code, 1);
  });

  test('delete-account needs --yes and the password; then the name is taken but nobody can log in', async () => {
    const a = await account('cdel');
    let r = await tern(['delete-account', '--password', PASSWORD, ...server], { home: a.home });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--yes/);
    r = await tern(['delete-account', '--yes', '--password', 'wrong wrong wrong', ...server], { home: a.home });
    assert.equal(r.code, 1);
    r = await tern(['delete-account', '--yes', '--password', PASSWORD, ...server], { home: a.home });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted the account/);
    assert.equal((await tern(['me', ...server], { home: a.home })).code, 1, 'the credentials are gone');
    r = await tern(['register', a.user, '--password', PASSWORD, ...server], { home: homes.make() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /taken/);
  });

  test('--help of each command', async () => {
    for (const cmd of ['block', 'unblock', 'blocks', 'privacy', 'password', 'device', 'delete-account']) {
      const r = await tern([cmd, '--help']);
      assert.equal(r.code, 0, cmd);
      assert.match(r.stdout, new RegExp(`usage: tern ${cmd}`));
    }
  });
});
