// Message actions and profiles in the `tern` CLI (PROTOCOL.md 15) against a real ternd:
// send --reply, react, edit, delete (by msg_id alone, the conversation remembered from send and
// listen), shown by listen and chat; encrypted conversations carry reply_to, reaction and edit
// inside the ciphertext and the delete outside; tern profile sets and shows display names and
// avatars, and watchers (listen USER, chat) see the change.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { TERN, PASSWORD, tern, ternLive, until, uniq, tempHomes } from './lib/cli.mjs';
import { makePng } from './lib/media.mjs';

const ID = /^([0-9a-f]{44})$/m;

describe('tern CLI: replies, reactions, edits, deletes, profiles', { skip: !existsSync(TERN) && `tern not built at ${TERN}` }, () => {
  let srv, server;
  const homes = tempHomes();
  let alice, bob, aliceHome, bobHome;

  async function account(name) {
    const home = homes.make();
    const r = await tern(['register', name, '--password', PASSWORD, ...server], { home });
    assert.equal(r.code, 0, r.stderr);
    return home;
  }
  const as = (home, args, opts) => tern([...args, ...server], { home, ...opts });
  async function sent(home, args) {
    const r = await as(home, args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    const m = ID.exec(r.stdout);
    assert.ok(m, r.stdout);
    return m[1];
  }
  /** bob's listen until n messages, its lines. */
  async function listen(home, n) {
    const r = await as(home, ['listen', '--count', String(n), '--timeout', '10s']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean);
  }

  before(async () => {
    srv = await startServer({ args: [...FAST_LIMITS, '--limits-key-fetch-rate', '100000/s', '--limits-key-fetch-burst', '100000'] });
    server = ['--server', srv.url];
    alice = uniq('alice');
    bob = uniq('bob');
    aliceHome = await account(alice);
    bobHome = await account(bob);
  });
  after(async () => {
    await srv?.close();
    homes.cleanup();
  });

  test('--help for the new commands, and usage errors', async () => {
    for (const cmd of ['react', 'edit', 'delete', 'profile']) {
      const r = await tern([cmd, '--help']);
      assert.equal(r.code, 0, cmd);
      assert.match(r.stdout, new RegExp(`^usage: tern ${cmd}`), cmd);
    }
    assert.match((await tern(['send', '--help'])).stdout, /--reply MSG_ID/);
    assert.match((await tern(['--help'])).stdout, /react ID EMOJI/);
    let r = await as(bobHome, ['react', 'f'.repeat(44), '👍']);
    assert.equal(r.code, 2, 'a message this device never saw needs --to or --group');
    assert.match(r.stderr, /--to USER or --group GROUP/);
    r = await as(bobHome, ['react', 'f'.repeat(44), 'x'.repeat(33), '--to', alice]);
    assert.equal(r.code, 2);
    r = await as(bobHome, ['delete', 'f'.repeat(44), '--to', alice, '--e2e']);
    assert.equal(r.code, 2, 'a delete is never encrypted: --e2e does not apply');
    r = await as(bobHome, ['profile', alice, '--name', 'x']);
    assert.equal(r.code, 2, 'only one\'s own profile changes');
  });

  for (const mode of ['--plain', 'encrypted']) {
    test(`reply, react, edit and delete (${mode}), shown by listen`, async () => {
      const flag = mode === '--plain' ? ['--plain'] : [];
      const lock = mode === '--plain' ? '' : '🔒 ';
      const m = await sent(aliceHome, ['send', bob, `original ${mode}`, ...flag]);
      let lines = await listen(bobHome, 1);
      assert.ok(lines.some((l) => l.includes(`${lock}original ${mode} (msg_id ${m})`)), lines.join('\n'));
      // bob saw m in listen: react by msg_id alone
      const r = await sent(bobHome, ['react', m, '👍', ...flag]);
      assert.notEqual(r, m);
      const reply = await sent(aliceHome, ['send', bob, 'and more', '--reply', m, ...flag]);
      const edit = await sent(aliceHome, ['edit', m, `edited ${mode}`, ...flag]);
      lines = await listen(aliceHome, 1);
      assert.ok(lines.some((l) => l.includes(`${bob}: ${lock}reacted 👍 to ${m} (msg_id`)), lines.join('\n'));
      lines = await listen(bobHome, 2);
      assert.ok(lines.some((l) => l.includes(`${lock}(reply to ${m}) and more (msg_id ${reply})`)), lines.join('\n'));
      assert.ok(lines.some((l) => l.includes(`${lock}(edit of ${m}) edited ${mode} (msg_id ${edit})`)), lines.join('\n'));
      // the delete goes in plaintext, also in an encrypted conversation
      const d = await sent(aliceHome, ['delete', m]);
      lines = await listen(bobHome, 1);
      assert.ok(lines.some((l) => l.includes(`${alice}: deleted ${m} (This message was deleted) (msg_id ${d})`)), lines.join('\n'));
      // refusals come back as the server words them
      let x = await as(aliceHome, ['delete', m]);
      assert.equal(x.code, 1);
      assert.match(x.stderr, /already deleted \(not_found\)/);
      const m2 = await sent(aliceHome, ['send', bob, 'not yours', ...flag]);
      await listen(bobHome, 1);
      x = await as(bobHome, ['delete', m2]);
      assert.equal(x.code, 1);
      assert.match(x.stderr, /\(forbidden\)/);
    });
  }

  test('profile: set a name and an avatar, show yours and theirs, watchers see the change (listen USER, chat)', async () => {
    const img = path.join(homes.make(), 'me.png');
    writeFileSync(img, makePng(12, 12));
    let r = await as(aliceHome, ['profile', '--name', 'Alice A.', '--avatar', img]);
    assert.equal(r.code, 0, r.stderr);
    const av = /^avatar: ([a-z2-7]{26})$/m.exec(r.stdout)?.[1];
    assert.ok(av, r.stdout);
    assert.equal(r.stdout, `${alice}\ndisplay name: Alice A.\navatar: ${av}\n`);
    assert.equal((await as(aliceHome, ['profile'])).stdout, r.stdout);
    r = await as(bobHome, ['profile', alice]);
    assert.equal(r.stdout, `${alice}\ndisplay name: Alice A.\navatar: ${av}\n`);
    r = await as(bobHome, ['fetch', av, '-o', path.join(homes.make(), 'a.png')]);
    assert.equal(r.code, 0, `the avatar is readable by bob: ${r.stderr}`);
    assert.equal((await as(bobHome, ['profile', 'nobody_like_this'])).code, 1);
    assert.match((await as(bobHome, ['whois', alice])).stdout, /^display name: Alice A\.$/m);

    // listen on another device of bob's: one device has one connection (a second replaces it)
    const bob2Home = homes.make();
    assert.equal((await tern(['login', bob, '--password', PASSWORD, ...server], { home: bob2Home })).code, 0);
    const watch = ternLive(['listen', alice, '--timeout', '20s', ...server], { home: bob2Home });
    const chat = ternLive(['chat', alice, ...server], { home: bobHome });
    await until(() => chat.stdout.includes(`${alice} is`), 'chat to show alice\'s presence');
    await new Promise((res) => setTimeout(res, 300)); // listen's watch is in too
    r = await as(aliceHome, ['profile', '--name', 'Alice B.', '--no-avatar']);
    assert.equal(r.stdout, `${alice}\ndisplay name: Alice B.\navatar: (none)\n`);
    const line = `${alice} changed their profile: display name "Alice B.", no avatar`;
    await until(() => watch.stdout.includes(line), `listen ${alice} to show the change: ${watch.stdout}`);
    await until(() => chat.stdout.includes(line), `chat to show the change: ${chat.stdout}`);
    // chat shows actions too
    const m = await sent(aliceHome, ['send', bob, 'in the chat']);
    await until(() => chat.stdout.includes('in the chat'), 'chat to show the message');
    const e = await sent(aliceHome, ['edit', m, 'in the chat, edited']);
    await until(() => chat.stdout.includes(`🔒 (edit of ${m}) in the chat, edited`), `chat to show the edit: ${chat.stdout}`);
    await sent(aliceHome, ['delete', m]);
    await until(() => chat.stdout.includes(`deleted ${m} (This message was deleted)`), `chat to show the delete: ${chat.stdout}`);
    assert.ok(e);
    chat.proc.stdin.end();
    assert.equal((await chat.done).code, 0, chat.stderr);
    watch.proc.kill('SIGINT');
    await watch.done;
  });
});
