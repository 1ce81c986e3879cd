// The `tern` CLI's groups (PROTOCOL.md section 10) against a real spawned ternd: tern group
// create/list/info/add/remove/leave/admin/rename with their outputs and refusals, GROUP by id
// or by unique name, send --group (text and image), listen on members' and on the sender's
// account (the group and sender, events, "delivered to N of M", "read by N of M"), and chat
// --group (names, events, typing, the ticks line). Pages of two groups, so that every list
// the CLI reads follows "next".
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT, FAST_LIMITS } from './lib/server.mjs';
import { newDevice } from './lib/api.mjs';
import { online } from './lib/client.mjs';
import { TERN, PASSWORD, tern, ternLive, until, uniq, tempHomes } from './lib/cli.mjs';

const GROUP_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SERVER_ARGS = [...FAST_LIMITS, '--receipts-merge-window', '100ms', '--groups-page-max', '2'];

describe('tern CLI: groups', { skip: !existsSync(TERN) && `tern not built at ${TERN}` }, () => {
  let srv, server;
  const homes = tempHomes();
  const users = {}; // name → { user, home }
  let tripId;

  /** Runs tern as one of the users. */
  const as = (who, args, opts = {}) => tern([...args, ...server], { home: users[who].home, ...opts });
  const live = (who, args, opts = {}) => ternLive([...args, ...server], { home: users[who].home, ...opts });
  const ok = (r) => assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}${r.stdout}`);
  const line = (text, re) => text.split('\n').find((l) => re.test(l));

  before(async () => {
    srv = await startServer({ args: SERVER_ARGS });
    server = ['--server', srv.url];
    for (const who of ['alice', 'bob', 'carol', 'dave']) {
      users[who] = { user: uniq(who.slice(0, 3)), home: homes.make() };
      ok(await as(who, ['register', users[who].user, '--password', PASSWORD]));
    }
  });
  after(async () => {
    await srv?.close();
    homes.cleanup();
  });

  test('create prints the id and the members; list and info show the group', async () => {
    const { bob, carol } = users;
    const r = await as('alice', ['group', 'create', 'Trip', bob.user, carol.user.toUpperCase(), '--description', 'to the sea']);
    ok(r);
    const [id, roster] = r.stdout.trimEnd().split('\n');
    assert.match(id, GROUP_ID);
    tripId = id;
    assert.equal(roster, `created Trip with 3 members: ${users.alice.user} (admin), ${bob.user}, ${carol.user}`);

    const list = await as('bob', ['group', 'list']);
    ok(list);
    assert.equal(list.stdout, `${tripId}  member    3 members  Trip\n`);

    for (const arg of ['Trip', 'trip', tripId]) {
      const info = await as('bob', ['group', 'info', arg]);
      ok(info);
      const lines = info.stdout.trimEnd().split('\n');
      assert.equal(lines[0], `Trip (group_id ${tripId})`);
      assert.equal(lines[1], 'description: to the sea');
      assert.match(lines[2], new RegExp(`^created by ${users.alice.user} on \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$`));
      assert.equal(lines[3], '3 members:');
      assert.match(lines[4], new RegExp(`^  ${users.alice.user} +admin   since \\d{4}-`));
      assert.match(lines[5], new RegExp(`^  ${bob.user} +member  since \\d{4}-.*  \\(you\\)$`));
      assert.match(lines[6], new RegExp(`^  ${carol.user} +member  since `));
    }
  });

  test('send --group → members\' listen shows the group and the sender; the sender\'s listen counts the receipts', async () => {
    const { alice, bob, carol } = users;
    // bob reads in a chat (which marks what it shows read); carol only listens (delivered)
    const bobChat = live('bob', ['chat', '--plain', '--group', 'Trip']);
    const carolListen = live('carol', ['listen', '--count', '1', '--timeout', '20s']);
    await until(() => bobChat.stdout.includes('created the group'), 'bob\'s chat to drain the group\'s creation');
    assert.match(bobChat.stdout, new RegExp(`#Trip: ${alice.user} created the group "Trip" with ${alice.user}, ${bob.user}, ${carol.user}`));

    const sent = await as('alice', ['send', '--plain', '--group', 'Trip', 'hello group']);
    ok(sent);
    const msgId = sent.stdout.trim();
    assert.match(msgId, /^[0-9a-f]{44}$/);
    assert.equal(sent.stderr, '✓ sent to 2 of 2 members of Trip\n');

    const { code } = await carolListen.done;
    assert.equal(code, 0, carolListen.stderr);
    assert.match(carolListen.stdout, new RegExp(`^\\[[^\\]]+\\] ${alice.user} → #Trip: hello group \\(msg_id ${msgId}\\)$`, 'm'));
    await until(() => bobChat.stdout.includes(`${alice.user}: hello group (msg_id ${msgId})`), 'bob\'s chat to show it');

    // alice's own listen: both delivered, then bob's read, counted per member
    const aliceListen = live('alice', ['listen', '--timeout', '20s']);
    await until(() => aliceListen.stdout.includes(`✓✓ delivered to 2 of 2 in #Trip`) &&
      aliceListen.stdout.includes(`read by 1 of 2 in #Trip (${bob.user}): ${msgId}`), 'alice to see delivered and read', 15000);
    const delivered = aliceListen.stdout.split('\n').filter((l) => l.includes('delivered to'));
    assert.ok(delivered.every((l) => l.endsWith(msgId)), aliceListen.stdout);
    assert.ok(delivered.some((l) => l.startsWith('✓✓ delivered to 2 of 2 in #Trip (')), aliceListen.stdout);
    aliceListen.proc.kill('SIGINT');
    assert.equal((await aliceListen.done).code, 0, aliceListen.stderr);
    bobChat.proc.stdin.end();
    assert.equal((await bobChat.done).code, 0, bobChat.stderr);
  });

  test('chat --group: each sender\'s name, typing, events as lines, and the ticks of own messages', async () => {
    const { alice, bob, carol, dave } = users;
    const bobChat = live('bob', ['chat', '--plain', '--group', tripId]);
    const carolChat = live('carol', ['chat', '--plain', '--group', 'Trip']);
    // typing from another device of alice's reaches both chats, once they are connected (typing is
    // live only: it is sent again until both show it)
    const phone = await online(srv, await newDevice(srv, alice.user, 'phone'));
    const typing = `${alice.user} is typing…`;
    const shown = () => bobChat.stdout.includes(typing) && carolChat.stdout.includes(typing);
    for (let i = 0; i < 50 && !shown(); i++) {
      phone.send({ type: 'typing', group_id: tripId, state: 'composing' });
      await until(shown, 'typing to show', 300).catch(() => {});
    }
    assert.ok(shown(), `bob: ${bobChat.stdout}\ncarol: ${carolChat.stdout}`);
    await phone.close();

    const a = await as('alice', ['chat', '--plain', '--group', 'Trip', '--timeout', '20s'], { input: 'hi all\n' });
    ok(a);
    const lines = a.stdout.split('\n');
    const sentLine = line(a.stdout, /you: hi all ✓ \(msg_id \S+\)$/);
    assert.ok(sentLine, a.stdout);
    const msgId = /\(msg_id (\S+)\)$/.exec(sentLine)[1];
    // every receipt moves the count on; the last says everyone has it and read it
    const ticks = lines.filter((l) => l.endsWith(`: hi all (msg_id ${msgId})`));
    assert.ok(ticks.length >= 2, a.stdout);
    assert.ok(ticks.some((l) => l.startsWith('✓✓ delivered to 2 of 2')), a.stdout);
    assert.equal(ticks.at(-1), `✓✓ delivered to 2 of 2, read by 2: hi all (msg_id ${msgId})`);
    for (const l of ticks) assert.match(l, /^✓(✓)? delivered to [12] of 2(, read by [12])?: /);

    await until(() => bobChat.stdout.includes(`${alice.user}: hi all (msg_id ${msgId})`) &&
      carolChat.stdout.includes(`${alice.user}: hi all (msg_id ${msgId})`), 'both chats to show it');
    // a change of the group is a line of its own in the open chats
    ok(await as('alice', ['group', 'add', 'Trip', dave.user]));
    await until(() => bobChat.stdout.includes(`#Trip: ${alice.user} added ${dave.user}`), 'bob to see dave added');
    await until(() => carolChat.stdout.includes(`#Trip: ${alice.user} added ${dave.user}`), 'carol to see dave added');
    for (const c of [bobChat, carolChat]) {
      c.proc.stdin.end();
      assert.equal((await c.done).code, 0, c.stderr);
    }
    ok(await as('alice', ['group', 'remove', 'Trip', dave.user]));
  });

  test('send --group --image: the members see the image, and may fetch it', async () => {
    const { alice } = users;
    const jpg = path.join(REPO_ROOT, 'tests', 'media', 'samples', 'sample.jpg');
    const listen = live('carol', ['listen', '--count', '1', '--timeout', '20s']);
    const r = await as('alice', ['send', '--plain', '--group', 'Trip', '--image', jpg, 'the beach']);
    ok(r);
    const msgId = r.stdout.trim();
    assert.match(r.stderr, /✓ sent to 2 of 2 members of Trip/);
    assert.equal((await listen.done).code, 0, listen.stderr);
    const l = line(listen.stdout, new RegExp(`\\(msg_id ${msgId}\\)$`));
    assert.match(l ?? '', new RegExp(`${alice.user} → #Trip: \\[image 640×480, 19 KiB\\] ([a-z2-7]{26}) the beach \\(msg_id `), listen.stdout);
    const mediaId = /\] ([a-z2-7]{26}) the beach/.exec(l)[1];
    const out = path.join(users.carol.home, 'beach.jpg');
    ok(await as('carol', ['fetch', mediaId, '-o', out]));
    assert.ok(readFileSync(out).equals(readFileSync(jpg)));
    // the image alone, no caption
    const alone = await as('alice', ['send', '--plain', '--image', jpg, '--group', tripId]);
    ok(alone);
  });

  test('admin, add, remove, leave, rename: their outputs, and each refusal as one line with exit 1', async () => {
    const { alice, bob, carol, dave } = users;
    let r = await as('bob', ['group', 'add', 'Trip', dave.user]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group add: forbidden: only an admin may add members\n');
    r = await as('alice', ['group', 'add', 'Trip', 'ghost_no_one']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group add: no_such_user: there is no user by that name: ghost_no_one\n');

    r = await as('alice', ['group', 'admin', 'Trip', bob.user]);
    ok(r);
    assert.equal(r.stdout, `${bob.user} is an admin of Trip\n`);
    r = await as('bob', ['group', 'add', 'Trip', dave.user, carol.user]);
    ok(r);
    assert.equal(r.stdout, `added ${dave.user} to Trip, now 4 members: ${alice.user} (admin), ${bob.user} (admin), ${carol.user}, ${dave.user}\n`);
    r = await as('bob', ['group', 'add', 'Trip', dave.user]);
    ok(r);
    assert.match(r.stdout, /^nobody added \(they are members already\); Trip has 4 members: /);
    r = await as('alice', ['group', 'admin', 'Trip', bob.user, '--off']);
    ok(r);
    assert.equal(r.stdout, `${bob.user} is not an admin of Trip\n`);
    r = await as('alice', ['group', 'admin', 'Trip', alice.user, '--off']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group admin: forbidden: the only admin cannot be demoted; promote another member first\n');
    r = await as('bob', ['group', 'remove', 'Trip', dave.user]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group remove: forbidden: only an admin may remove members\n');

    r = await as('alice', ['group', 'remove', 'Trip', dave.user]);
    ok(r);
    assert.equal(r.stdout, `removed ${dave.user} from Trip, now 3 members: ${alice.user} (admin), ${bob.user}, ${carol.user}\n`);
    r = await as('alice', ['group', 'remove', 'Trip', dave.user]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `tern: group remove: not_found: ${dave.user} is not a member of Trip\n`);

    // not a member: an id (or an id-like name) is the server's to refuse; other names are ours
    r = await as('dave', ['group', 'info', tripId]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group info: not_found: no such group\n');
    r = await as('dave', ['send', '--group', tripId, 'let me in']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tern: send: .*\(no_such_group\)\n$/);
    r = await as('dave', ['group', 'leave', 'Trip']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group leave: not_found: no such group\n');
    r = await as('dave', ['group', 'info', 'the trip!']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tern: group info: not_found: you are in no group called \'the trip!\'\n');

    r = await as('carol', ['group', 'leave', 'Trip']);
    ok(r);
    assert.equal(r.stdout, 'left Trip\n');
    r = await as('carol', ['group', 'list']);
    ok(r);
    assert.equal(r.stdout, '');

    // the events reached bob's inbox: his listen says what happened, one line each
    const bl = await as('bob', ['listen', '--timeout', '1500ms']);
    ok(bl);
    for (const want of [`#Trip: ${alice.user} made ${bob.user} an admin`, `#Trip: ${bob.user} added ${dave.user}`,
      `#Trip: ${alice.user} removed ${bob.user} as an admin`, `#Trip: ${alice.user} removed ${dave.user}`, `#Trip: ${carol.user} left`])
      assert.ok(bl.stdout.includes(want), `${want} in:\n${bl.stdout}`);

    r = await as('alice', ['group', 'rename', 'Trip', 'Trip 2', '--description', '']);
    ok(r);
    assert.equal(r.stdout, 'renamed Trip to "Trip 2"\ndescription of Trip 2 cleared\n');
    r = await as('bob', ['group', 'info', 'trip 2']);
    ok(r);
    assert.match(r.stdout, new RegExp(`^Trip 2 \\(group_id ${tripId}\\)\ncreated by `));
  });

  test('GROUP by name: a name two groups share is refused as ambiguous; the list follows every page', async () => {
    const { bob } = users;
    const ids = [tripId];
    for (const name of ['Trip 2', 'Book club', 'Chess', 'Dinner']) {
      const r = await as('alice', ['group', 'create', name, bob.user]);
      ok(r);
      ids.push(r.stdout.split('\n')[0]);
    }
    let r = await as('alice', ['group', 'info', 'Trip 2']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tern: group info: 'Trip 2' is ambiguous: 2 of your groups have that name \(.+\); give the group id\n$/);
    for (const id of [tripId, ids[1]]) assert.ok(r.stderr.includes(id), r.stderr);
    r = await as('alice', ['send', '--group', 'Trip 2', 'which one?']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ambiguous/);
    r = await as('alice', ['group', 'info', 'chess']); // a unique name, ignoring case
    ok(r);
    assert.match(r.stdout, /^Chess \(group_id /);

    // five groups in pages of two: the list has them all, in id order
    r = await as('bob', ['group', 'list']);
    ok(r);
    const listed = r.stdout.trimEnd().split('\n').map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(listed, [...ids].sort());
    assert.ok(r.stdout.split('\n').some((l) => new RegExp(`^${ids[3]}  member {4}2 members  Chess$`).test(l)), r.stdout);
  });

  test('usage errors exit 2; --help exits 0', async () => {
    for (const args of [['group'], ['group', 'frob'], ['group', 'add', 'Trip'], ['group', 'rename', 'Trip'],
      ['group', 'remove', 'Trip'], ['group', 'create'], ['group', 'create', ''], ['group', 'admin', 'Trip', 'x', '--off=yes'],
      ['send', '--group', 'Trip', 'a', 'b'], ['send', '--group', 'Trip'], ['chat', 'bob', '--group', 'Trip'], ['chat']]) {
      const r = await as('alice', args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^tern: /, args.join(' '));
    }
    const overview = await tern(['group', '--help']);
    assert.equal(overview.code, 0);
    for (const sub of ['create', 'add', 'remove', 'leave', 'admin', 'rename', 'info', 'list']) {
      assert.match(overview.stdout, new RegExp(`tern group ${sub}`));
      let r = await tern(['group', sub, '--help']);
      assert.equal(r.code, 0, sub);
      assert.match(r.stdout, new RegExp(`^usage: tern group ${sub}`));
      assert.match(r.stdout, /--server URL/);
      r = await tern(['help', 'group', sub]);
      assert.match(r.stdout, new RegExp(`^usage: tern group ${sub}`));
    }
    for (const cmd of ['send', 'chat']) {
      const r = await tern([cmd, '--help']);
      assert.match(r.stdout, /--group GROUP/);
    }
  });
});
