// tern-bench smoke test (issue 6): short runs against a spawned ternd that must verify every
// message (no loss, no duplicates, no reordering) and write well-formed JSON; and the XMPP
// driver against a scripted stand-in XMPP server (lib/xmpp-standin.mjs: no XMPP server is
// installed here; bench/run-baseline measures the real ones). Nothing here asserts on speed: a
// benchmark prints numbers, it never fails on a time.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, REPO_ROOT, FAST_LIMITS } from './lib/server.mjs';
import { startXmppStandin } from './lib/xmpp-standin.mjs';

const BUILD = process.env.TERN_BUILD || path.join(REPO_ROOT, 'build');
const BENCH = path.join(BUILD, 'tern-bench');

/** Runs tern-bench to its end. Resolves with { code, signal, stdout, stderr }. */
function bench(args, { timeoutMs = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BENCH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    proc.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', (err) => { clearTimeout(timer); reject(err); });
    proc.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

const LAT_KEYS = ['n', 'p50', 'p90', 'p99', 'p99_9', 'p99_999', 'max', 'mean'];
const VERIFY_KEYS = ['ok', 'expected_deliveries', 'lost', 'duplicates', 'reordered', 'unanswered',
  'receipts_missing', 'receipt_duplicates', 'reads_missing', 'misrouted', 'corrupt', 'msgid_mismatch', 'redelivered'];

function assertNumber(v, what) {
  assert.equal(typeof v, 'number', `${what} is ${JSON.stringify(v)}`);
  assert.ok(Number.isFinite(v) && v >= 0, `${what} = ${v}`);
}

/** The checks every messaging run's JSON must pass. */
function assertCleanRun(j, r) {
  const ctx = `\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.equal(j.tool, 'tern-bench');
  assert.equal(j.mode, 'messaging');
  for (const k of ['scenario', 'phases', 'throughput', 'counts', 'latency_us', 'errors', 'verification', 'offline', 'server', 'bench']) {
    assert.ok(j[k] && typeof j[k] === 'object', `missing "${k}"${ctx}`);
  }
  for (const k of ['sent_per_s', 'delivered_per_s', 'receipts_per_s']) assertNumber(j.throughput[k], `throughput.${k}`);
  for (const stage of ['send_to_sent', 'send_to_msg', 'send_to_receipt']) {
    for (const k of LAT_KEYS) assertNumber(j.latency_us[stage][k], `latency_us.${stage}.${k}`);
    const l = j.latency_us[stage];
    assert.ok(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.p99_999 && l.p99_999 <= l.max,
      `${stage} percentiles out of order: ${JSON.stringify(l)}`);
  }
  for (const k of VERIFY_KEYS) assert.ok(k in j.verification, `verification.${k} missing`);
  const v = j.verification;
  assert.equal(v.ok, true, `verification failed: ${JSON.stringify(v)}${ctx}`);
  for (const k of ['lost', 'duplicates', 'reordered', 'unanswered', 'receipts_missing', 'receipt_duplicates', 'misrouted', 'corrupt', 'msgid_mismatch']) {
    assert.equal(v[k], 0, `verification.${k} = ${v[k]}${ctx}`);
  }
  assert.deepEqual(j.errors, {}, `errors: ${JSON.stringify(j.errors)}${ctx}`);
  assert.ok(j.counts.messages > 0, `no messages were sent${ctx}`);
  assert.equal(j.counts.answered, j.counts.messages, 'every send is answered');
  assert.ok(v.expected_deliveries >= j.counts.messages);
  // The server was sampled through /proc.
  assertNumber(j.server.cpu_s, 'server.cpu_s');
  assertNumber(j.server.peak_rss_kib, 'server.peak_rss_kib');
  assert.ok(j.server.peak_rss_kib > 0);
}

describe('tern-bench', { skip: !existsSync(BENCH) && `tern-bench not built at ${BENCH}` }, () => {
  let srv;
  let tmp;
  before(async () => {
    srv = await startServer({ args: FAST_LIMITS });
    tmp = mkdtempSync(path.join(os.tmpdir(), 'tern-bench-test-'));
  });
  after(async () => {
    await srv?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('pairs, open loop, receipts on: every message verified, JSON well-formed', async () => {
    const json = path.join(tmp, 'pairs.json');
    const r = await bench(['--server', srv.url, '--users', '20', '--total-rate', '200', '--duration', '2s',
      '--warmup', '500ms', '--receipts', 'on', '--server-pid', String(srv.proc.pid), '--prefix', 'bp_', '--json', json]);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    assertCleanRun(j, r);
    assert.equal(j.scenario.users, 20);
    assert.equal(j.scenario.peers, 'pairs');
    assert.equal(j.scenario.receipts, 'on');
    assert.equal(j.scenario.loop, 'open');
    assert.equal(j.counts.receipts, j.counts.messages, 'a delivered receipt for every message');
    assert.equal(j.verification.expected_deliveries, j.counts.messages);
    assert.match(r.stdout, /verification: OK/);
    assert.match(r.stdout, /send→receipt/);
  });

  test('devices, random peers, read receipts, offline recipients drained afterwards', async () => {
    const json = path.join(tmp, 'mixed.json');
    const r = await bench(['--server', srv.url, '--users', '12', '--devices', '2', '--peers', 'random',
      '--receipts', 'read', '--offline', '0.25', '--total-rate', '150', '--duration', '2s', '--warmup', '0',
      '--server-pid', String(srv.proc.pid), '--prefix', 'bm_', '--json', json]);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    assertCleanRun(j, r);
    assert.equal(j.verification.reads_missing, 0);
    assert.ok(j.counts.reads > 0, 'read receipts arrived');
    // Copies go to the sender's other device, so there are more deliveries than messages.
    assert.ok(j.verification.expected_deliveries > j.counts.messages);
    assert.ok(j.offline.stored > 0, 'some messages went to offline users');
    assert.ok(j.offline.drained >= j.offline.stored, `drained ${j.offline.drained} of ${j.offline.stored}`);
  });

  test('closed loop up to a message count', async () => {
    const json = path.join(tmp, 'count.json');
    const r = await bench(['--server', srv.url, '--users', '2', '--messages', '300', '--window', '8',
      '--server-pid', String(srv.proc.pid), '--prefix', 'bc_', '--json', json, '--quiet']);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    assertCleanRun(j, r);
    assert.equal(j.counts.messages, 300);
    assert.equal(j.throughput.window_sent, 300);
    assert.equal(j.scenario.loop, 'closed');
  });

  test('groups (issue 11), open loop: every member device gets every group message once, in order', async () => {
    const json = path.join(tmp, 'groups.json');
    const r = await bench(['--server', srv.url, '--users', '24', '--groups', '12', '--group-size', '6',
      '--total-rate', '300', '--duration', '2s', '--warmup', '500ms', '--server-pid', String(srv.proc.pid),
      '--prefix', 'bg_', '--json', json]);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    assertCleanRun(j, r);
    assert.equal(j.scenario.groups, 12);
    assert.equal(j.scenario.group_size, 6);
    assert.equal(j.groups.memberships_per_user, 3);
    // Every message goes to the 5 other members' single device, and each arrived exactly once.
    assert.equal(j.verification.expected_deliveries, j.counts.answered * 5);
    assert.equal(j.counts.deliveries, j.verification.expected_deliveries);
    assert.ok(j.groups.messages_per_s > 0 && j.groups.member_deliveries_per_s > j.groups.messages_per_s);
    assert.ok(j.groups.send_to_last_member_us.n > 0, 'send→last member measured');
    assert.ok(j.groups.send_to_last_member_us.p99 >= j.latency_us.send_to_msg.p50);
    assert.match(r.stdout, /group messages\/s \d+ +member deliveries\/s \d+/);
    assert.match(r.stdout, /send→last/);
  });

  test('groups, closed loop, two devices per user: the sender\'s other device gets it too', async () => {
    const r = await bench(['--server', srv.url, '--users', '10', '--devices', '2', '--groups', '3',
      '--group-size', '4', '--messages', '300', '--window', '4', '--server-pid', String(srv.proc.pid),
      '--prefix', 'bgd_', '--json', '-', '--quiet']);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    assertCleanRun(j, r);
    assert.equal(j.counts.messages, 300);
    assert.equal(j.verification.expected_deliveries, 300 * (4 * 2 - 1));
  });

  test('groups: a member device that misses messages fails the run (exit 1, counted as lost)', async () => {
    // Devices never ack (--receipts off) and hold at most 30 envelopes: past that, ternd skips
    // them (PROTOCOL.md 10), and the verification must say so.
    const small = await startServer({ args: [...FAST_LIMITS, '--inbox-max-envelopes', '30'] });
    try {
      const r = await bench(['--server', small.url, '--users', '6', '--groups', '2', '--group-size', '4',
        '--total-rate', '200', '--duration', '1s', '--warmup', '0', '--receipts', 'off', '--settle', '2s', '--prefix', 'bgl_',
        '--json', '-', '--quiet']);
      assert.equal(r.code, 1, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
      const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
      assert.equal(j.verification.ok, false);
      assert.ok(j.verification.lost > 0, `lost ${j.verification.lost}`);
      assert.match(r.stdout, /verification: FAILED/);
    } finally {
      await small.close();
    }
  });

  test('idle connections: connect rate and server memory', async () => {
    const json = path.join(tmp, 'idle.json');
    const r = await bench(['--server', srv.url, '--users', '50', '--idle', '--duration', '200ms',
      '--server-pid', String(srv.proc.pid), '--prefix', 'bi_', '--json', json, '--quiet']);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(j.mode, 'idle');
    assert.equal(j.idle.connected, 50);
    assert.equal(j.idle.failed, 0);
    assertNumber(j.idle.connect_per_s, 'idle.connect_per_s');
    assert.equal(typeof j.idle.kib_per_conn, 'number');
    assert.ok(j.idle.server_after.rss_kib > 0);
  });

  test('bad flags and an unreachable server exit 2', async () => {
    let r = await bench(['--users', '0']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--users/);
    r = await bench(['--groups', '2', '--group-size', '8', '--users', '4']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--group-size/);
    r = await bench(['--nonsense']);
    assert.equal(r.code, 2, r.stderr);
    r = await bench(['--server', 'http://127.0.0.1:1', '--users', '2', '--duration', '1s', '--quiet']);
    assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /registration failed/);
  });
});

describe('tern-bench --protocol xmpp', { skip: !existsSync(BENCH) && `tern-bench not built at ${BENCH}` }, () => {
  let xmpp;
  before(async () => { xmpp = await startXmppStandin(); });
  after(async () => { await xmpp?.close(); });

  test('registers, logs in, sends with acks and receipts: every message verified', async () => {
    const r = await bench(['--protocol', 'xmpp', '--server', `127.0.0.1:${xmpp.port}`, '--users', '10',
      '--messages', '400', '--window', '4', '--receipts', 'on', '--prefix', 'bx_', '--json', '-', '--quiet']);
    const ctx = `\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    assert.equal(r.code, 0, `exit ${r.code}${ctx}`);
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    assert.equal(j.verification.ok, true, `verification: ${JSON.stringify(j.verification)}${ctx}`);
    assert.deepEqual(j.errors, {}, `errors${ctx}`);
    assert.equal(j.counts.messages, 400);
    assert.equal(j.counts.answered, 400, 'every message acked (XEP-0198)');
    assert.equal(j.counts.receipts, 400, 'every message got its receipt (XEP-0184)');
    assert.equal(xmpp.stats.registered, 10);
    assert.equal(xmpp.stats.logins, 10);
    assert.ok(xmpp.stats.routed >= 800, `routed ${xmpp.stats.routed}`); // messages and receipts
  });

  test('users that exist already register as a conflict, and log in', async () => {
    const r = await bench(['--protocol', 'xmpp', '--server', `127.0.0.1:${xmpp.port}`, '--users', '10',
      '--messages', '50', '--window', '2', '--prefix', 'bx_', '--quiet']);
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /verification: OK/);
    assert.equal(xmpp.stats.conflicts, 10);
    assert.equal(xmpp.stats.logins, 20);
  });
  test('groups: rooms created and joined (XEP-0045), groupchat to every occupant verified', async () => {
    const r = await bench(['--protocol', 'xmpp', '--server', `127.0.0.1:${xmpp.port}`, '--users', '12',
      '--groups', '6', '--group-size', '4', '--messages', '300', '--window', '2', '--prefix', 'bxg_',
      '--json', '-', '--quiet']);
    const ctx = `\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    assert.equal(r.code, 0, `exit ${r.code}${ctx}`);
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    assert.equal(j.verification.ok, true, `verification: ${JSON.stringify(j.verification)}${ctx}`);
    assert.deepEqual(j.errors, {}, `errors${ctx}`);
    assert.equal(j.counts.answered, 300);
    assert.equal(j.verification.expected_deliveries, 300 * 3);
    assert.equal(j.counts.deliveries, 300 * 3);
    assert.equal(j.groups.reflected, 300, 'each message comes back once to its sender, not counted');
    assert.equal(xmpp.stats.rooms, 6);
    assert.equal(xmpp.stats.joins, 6 * 3);
    assert.equal(xmpp.stats.groupchat, 300);
  });

});
