// The `tern` CLI (built on libtern-client) against a real spawned ternd: accounts, send,
// listen, chat with its ticks, whois, logout, and the exit statuses. Messages here go with
// --plain (what they check is the plaintext path); cli_e2e.test.mjs covers encryption.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, readFileSync, mkdirSync, copyFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT, waitFor } from './lib/server.mjs';
import { jpegSize } from './lib/media.mjs';
import { TERN, PASSWORD, tern, ternLive, until, uniq, tempHomes } from './lib/cli.mjs';

describe('tern CLI', { skip: !existsSync(TERN) && `tern not built at ${TERN}` }, () => {
  let srv;
  const homes = tempHomes();
  const newHome = () => homes.make();
  let alice, bob, aliceHome, bobHome, server;

  before(async () => {
    srv = await startServer();
    server = ['--server', srv.url];
    aliceHome = newHome();
    bobHome = newHome();
    alice = uniq('alice');
    bob = uniq('bob');
  });
  after(async () => {
    await srv?.close();
    homes.cleanup();
  });

  test('usage errors exit 2; --help exits 0', async () => {
    let r = await tern([]);
    assert.equal(r.code, 2);
    r = await tern(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command/);
    r = await tern(['send', 'bob']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^tern: send: /);
    r = await tern(['listen', '--count', 'many']);
    assert.equal(r.code, 2);
    r = await tern(['whois', 'bob', '--server', 'ftp://example.com']);
    assert.equal(r.code, 2);
    for (const cmd of ['register', 'login', 'logout', 'me', 'whois', 'send', 'listen', 'chat', 'fetch']) {
      r = await tern([cmd, '--help']);
      assert.equal(r.code, 0, cmd);
      assert.match(r.stdout, new RegExp(`usage: tern ${cmd}`));
      assert.match(r.stdout, /--server URL/);
    }
  });

  test('register keeps the token in ~/.config/tern, 0600 in a 0700 directory', async () => {
    let r = await tern(['register', alice, '--password', PASSWORD, '--device', 'laptop', ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`registered ${alice}`));
    const dir = path.join(aliceHome, '.config', 'tern');
    const file = path.join(dir, `127.0.0.1-${srv.port}.json`);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const creds = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(creds.user, alice);
    assert.ok(creds.token.length >= 40);
    assert.ok(creds.device_id);

    // The password from stdin (not a terminal), the server from TERN_SERVER.
    r = await tern(['register', bob], { home: bobHome, input: `${PASSWORD}\n`, env: { TERN_SERVER: srv.url } });
    assert.equal(r.code, 0, r.stderr);

    // Taken: a server error, exit 1, one line with the protocol's code.
    r = await tern(['register', bob, ...server], { home: newHome(), env: { TERN_PASSWORD: PASSWORD } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /username_taken/);
    assert.equal(r.stderr.trim().split('\n').length, 1);

    r = await tern(['login', bob, '--password', 'wrong password', ...server], { home: newHome() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad_credentials/);
  });

  test('send → listen: the message arrives, the sender sees delivered', async () => {
    const listen = ternLive(['listen', '--count', '1', '--timeout', '20s', ...server], { home: bobHome });
    const sent = await tern(['send', '--plain', bob, 'hi', ...server], { home: aliceHome });
    assert.equal(sent.code, 0, sent.stderr);
    const msgId = sent.stdout.trim();
    assert.match(msgId, /^\S+$/);
    const { code } = await listen.done;
    assert.equal(code, 0, listen.stderr);
    const line = listen.stdout.split('\n').find((l) => l.includes(`${alice}: hi`));
    assert.ok(line, `no message line in: ${listen.stdout}`);
    assert.match(line, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] /);
    assert.ok(line.endsWith(`(msg_id ${msgId})`), line);

    // listen acked it, which made a delivered receipt for alice.
    const a = await tern(['listen', '--timeout', '1500ms', ...server], { home: aliceHome });
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, new RegExp(`✓✓ delivered to ${bob}: ${msgId}`));

    // Acked means gone: bob's next listen sees nothing, and times out short of --count.
    const again = await tern(['listen', '--count', '1', '--timeout', '1s', ...server], { home: bobHome });
    assert.equal(again.code, 1);
    assert.doesNotMatch(again.stdout, /: hi/);
    assert.match(again.stderr, /timed out/);
  });

  test('a message waits for an offline recipient', async () => {
    const sent = await tern(['send', '--plain', bob, 'while you were away', ...server], { home: aliceHome });
    assert.equal(sent.code, 0, sent.stderr);
    const r = await tern(['listen', '--count', '1', '--timeout', '10s', ...server], { home: bobHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${alice}: while you were away \\(msg_id ${sent.stdout.trim()}\\)`));
  });

  test('send errors: unknown user, not logged in, unreachable server', async () => {
    let r = await tern(['send', uniq('nobody'), 'hello', ...server], { home: aliceHome });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no_such_user/);
    r = await tern(['send', bob, 'hello', ...server], { home: newHome() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not logged in/);
    // Credentials for a server where nothing listens: a network error, exit 1.
    const home = newHome();
    const dir = path.join(home, '.config', 'tern');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    copyFileSync(path.join(aliceHome, '.config', 'tern', `127.0.0.1-${srv.port}.json`), path.join(dir, '127.0.0.1-1.json'));
    for (const args of [['whois', bob], ['send', bob, 'x'], ['listen']]) {
      r = await tern([...args, '--server', 'http://127.0.0.1:1'], { home });
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
    }
  });

  test('chat: ticks go ✓ → ✓✓ delivered → read; incoming lines are shown', async () => {
    const bobChat = ternLive(['chat', '--plain', alice, ...server], { home: bobHome });
    // alice's chat ends at end of input once every message is read (or after --timeout).
    const a = await tern(['chat', '--plain', bob, '--timeout', '20s', ...server], { home: aliceHome, input: 'hello chat\n' });
    assert.equal(a.code, 0, a.stderr);
    const lines = a.stdout.split('\n');
    const sentLine = lines.find((l) => /you: hello chat ✓ \(msg_id \S+\)$/.test(l));
    assert.ok(sentLine, a.stdout);
    const msgId = /\(msg_id (\S+)\)$/.exec(sentLine)[1];
    const iSent = lines.indexOf(sentLine);
    const iDelivered = lines.indexOf(`✓✓ delivered: hello chat (msg_id ${msgId})`);
    const iRead = lines.indexOf(`read: hello chat (msg_id ${msgId})`);
    assert.ok(iSent >= 0 && iDelivered > iSent && iRead > iDelivered, a.stdout);

    await until(() => bobChat.stdout.includes(`${alice}: hello chat (msg_id ${msgId})`), 'bob to show the message');
    bobChat.proc.stdin.end(); // Ctrl-D: bob has nothing outstanding, so chat ends
    const b = await bobChat.done;
    assert.equal(b.code, 0, bobChat.stderr);
  });

  test('whois: online, last seen, unknown', async () => {
    const listen = ternLive(['listen', '--timeout', '20s', ...server], { home: bobHome });
    let r;
    const end = Date.now() + 10000;
    for (;;) {
      r = await tern(['whois', bob, ...server], { home: aliceHome });
      if (r.stdout.includes('online') || Date.now() > end) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${bob} is online`);
    listen.proc.kill('SIGINT'); // Ctrl-C: a clean close, exit 0
    const l = await listen.done;
    assert.equal(l.code, 0, listen.stderr);
    r = await tern(['whois', bob.toUpperCase(), ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${bob} was last seen (just now|\\d+ seconds? ago) \\(\\d{4}-`));
    r = await tern(['whois', uniq('ghost'), ...server], { home: aliceHome });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such user/);
  });

  test('send --image → listen shows [image W×H, SIZE] media_id → fetch -o FILE, --thumb', async () => {
    const samples = path.join(REPO_ROOT, 'tests', 'media', 'samples');
    const jpg = path.join(samples, 'sample.jpg');
    const listen = ternLive(['listen', '--count', '2', '--timeout', '20s', ...server], { home: bobHome });
    let r = await tern(['send', '--plain', bob, '--image', jpg, 'a gradient', ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    const withCaption = r.stdout.trim();
    // the image alone, no caption; the option may come first
    r = await tern(['send', '--plain', '--image', path.join(samples, 'sample.gif'), bob, ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    const alone = r.stdout.trim();
    const { code } = await listen.done;
    assert.equal(code, 0, listen.stderr);
    const lines = listen.stdout.split('\n');
    const l1 = lines.find((l) => l.endsWith(`(msg_id ${withCaption})`));
    assert.match(l1 ?? '', new RegExp(`^\\[[^\\]]+\\] ${alice}: \\[image 640×480, 19 KiB\\] ([a-z2-7]{26}) a gradient \\(msg_id `), listen.stdout);
    const jpgId = /\] ([a-z2-7]{26}) a gradient/.exec(l1)[1];
    const l2 = lines.find((l) => l.endsWith(`(msg_id ${alone})`));
    assert.match(l2 ?? '', new RegExp(`${alice}: \\[image 400×300, 48 KiB\\] [a-z2-7]{26} \\(msg_id `), listen.stdout);
    const gifId = /\] ([a-z2-7]{26}) \(msg_id/.exec(l2)[1];

    const dir = newHome();
    // the thumbnail (does not count as a fetch), then the original, byte for byte
    r = await tern(['fetch', jpgId, '--thumb', '-o', path.join(dir, 'thumb.jpg'), ...server], { home: bobHome });
    assert.equal(r.code, 0, r.stderr);
    const dims = jpegSize(readFileSync(path.join(dir, 'thumb.jpg')));
    assert.deepEqual(dims, { width: 320, height: 240 });
    r = await tern(['fetch', jpgId, '-o', path.join(dir, 'full.jpg'), ...server], { home: bobHome });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(path.join(dir, 'full.jpg')).equals(readFileSync(jpg)));
    // bob's only device has fetched it: the server deleted it; no file, no temp file left
    // (the delete follows the fetch, and in a cluster it reaches the other nodes a moment
    // later, as media.test.mjs waits for it too)
    await waitFor(async () => {
      r = await tern(['fetch', jpgId, '-o', path.join(dir, 'again.jpg'), ...server], { home: bobHome });
      if (r.code === 0) rmSync(path.join(dir, 'again.jpg'), { force: true });
      return r.code !== 0;
    }, { timeoutMs: 5000, intervalMs: 100, message: 'the fetched media deleted' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tern: fetch: no media /);
    assert.deepEqual(readdirSync(dir).sort(), ['full.jpg', 'thumb.jpg']);
    // the owner reads the GIF (never counted)
    r = await tern(['fetch', gifId, '--output', path.join(dir, 'a.gif'), ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(path.join(dir, 'a.gif')).equals(readFileSync(path.join(samples, 'sample.gif'))));

    // usage errors: exit 2, nothing sent
    r = await tern(['send', bob, '--image', path.join(REPO_ROOT, 'CMakeLists.txt'), ...server], { home: aliceHome });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is not a JPEG, PNG, WebP or GIF image/);
    r = await tern(['send', bob, '--image', path.join(dir, 'missing.png'), ...server], { home: aliceHome });
    assert.equal(r.code, 2);
    r = await tern(['fetch', jpgId, ...server], { home: bobHome });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /-o FILE is required/);
    r = await tern(['fetch', '../../etc/passwd', '-o', path.join(dir, 'x'), ...server], { home: bobHome });
    assert.equal(r.code, 2);
    r = await tern(['fetch', jpgId, '--thumb=yes', '-o', path.join(dir, 'x'), ...server], { home: bobHome });
    assert.equal(r.code, 2);
    // someone else's media, or one never shared: 404, exit 1
    r = await tern(['fetch', 'aaaaaaaaaaaaaaaaaaaaaaaaaa', '-o', path.join(dir, 'x'), ...server], { home: bobHome });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no media/);
    assert.deepEqual(readdirSync(dir).sort(), ['a.gif', 'full.jpg', 'thumb.jpg']);
  });

  test('me lists the devices; logout removes the token', async () => {
    let r = await tern(['me', ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${alice} on `));
    assert.match(r.stdout, /\(this device\)\s+laptop/);

    r = await tern(['logout', ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`logged out ${alice}`));
    assert.equal(existsSync(path.join(aliceHome, '.config', 'tern', `127.0.0.1-${srv.port}.json`)), false);
    r = await tern(['send', bob, 'after logout', ...server], { home: aliceHome });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not logged in/);

    // Logging in again makes a new device that works.
    r = await tern(['login', alice, '--password', PASSWORD, ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
    r = await tern(['send', bob, 'back again', ...server], { home: aliceHome });
    assert.equal(r.code, 0, r.stderr);
  });
});
