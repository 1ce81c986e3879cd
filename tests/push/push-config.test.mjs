// Start-up configuration of the push layer (tern_push_open): a missing, unreadable or malformed
// key file is a clear error naming the setting and the file; incomplete provider settings are
// refused; providers left empty are off, and registrations for them are refused (400).
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { runProbe } from './lib/probe.mjs';
import { makeKeys, tempDir } from './lib/standins.mjs';

const dir = tempDir();
const keys = makeKeys(dir);
const apns = (file) => ['--push-apns-key-file', file, '--push-apns-key-id', 'ABC123DEFG', '--push-apns-team-id', 'TEAM123456',
  '--push-apns-topic', 'org.tern.app'];

async function openError(settings) {
  const r = await runProbe({ settings });
  assert.equal(r.code, 2, `expected exit 2, got ${r.code}: ${JSON.stringify(r.lines)}`);
  assert.equal(r.open.ok, false);
  return r.open.error;
}

test('config: a missing key file names the setting and the file', async () => {
  const missing = path.join(dir, 'no-such-AuthKey.p8');
  let e = await openError(apns(missing));
  assert.match(e, /push\.apns\.key_file/);
  assert.ok(e.includes(missing), e);
  assert.match(e, /No such file/);

  e = await openError(['--push-webpush-vapid-key-file', path.join(dir, 'nope.pem'), '--push-webpush-subject', 'mailto:a@b.c']);
  assert.match(e, /push\.webpush\.vapid_key_file: cannot read .*nope\.pem/);

  e = await openError(['--push-fcm-service-account', path.join(dir, 'nope.json')]);
  assert.match(e, /push\.fcm\.service_account: cannot read .*nope\.json/);

  e = await openError(apns(dir)); // a directory is not a key file either
  assert.ok(e.includes(dir) && /not a regular file/.test(e), e);

  e = await openError(['--push-ca-file', path.join(dir, 'nope-ca.pem')]);
  assert.match(e, /push\.ca_file: cannot read .*nope-ca\.pem/);
});

test('config: an unreadable key file names the file', async (t) => {
  if (process.getuid?.() === 0) {
    t.skip('root reads files whatever their mode');
    return;
  }
  const f = path.join(dir, 'unreadable.p8');
  writeFileSync(f, 'x');
  chmodSync(f, 0o000);
  const e = await openError(apns(f));
  assert.ok(e.includes(f) && /Permission denied/.test(e), e);
});

test('config: a file that is not a key, or the wrong kind of key, is refused', async () => {
  const junk = path.join(dir, 'junk.p8');
  writeFileSync(junk, 'this is not a PEM key\n');
  let e = await openError(apns(junk));
  assert.ok(e.includes(junk) && /does not hold a PEM private key/.test(e), e);

  const rsaPem = path.join(dir, 'rsa.pem');
  writeFileSync(rsaPem, keys.fcm.sa.private_key);
  e = await openError(apns(rsaPem));
  assert.match(e, /not a P-256/);
  e = await openError(['--push-webpush-vapid-key-file', rsaPem, '--push-webpush-subject', 'mailto:a@b.c']);
  assert.match(e, /push\.webpush\.vapid_key_file: .* is not a P-256 key/);

  const notJson = path.join(dir, 'sa.txt');
  writeFileSync(notJson, 'nope');
  e = await openError(['--push-fcm-service-account', notJson]);
  assert.match(e, /is not a JSON service account/);

  const noEmail = path.join(dir, 'sa-no-email.json');
  writeFileSync(noEmail, JSON.stringify({ ...keys.fcm.sa, client_email: undefined }));
  e = await openError(['--push-fcm-service-account', noEmail]);
  assert.match(e, /has no client_email/);
});

test('config: incomplete provider settings are refused', async () => {
  let e = await openError(['--push-apns-key-file', keys.apns.file]);
  assert.match(e, /push\.apns\.key_id must be set/);
  e = await openError(['--push-webpush-vapid-key-file', keys.vapid.file]);
  assert.match(e, /push\.webpush\.subject/);
  e = await openError(['--push-webhook-url', 'http://127.0.0.1:9/hook']);
  assert.match(e, /push\.webhook\.secret/);
  e = await openError(['--push-webhook-url', 'gopher://x', '--push-webhook-secret', 'x'.repeat(20)]);
  assert.match(e, /push\.webhook\.url/);
});

test('config: nothing configured → every provider is off and refused at registration', async () => {
  const r = await runProbe({ parseOnly: true, regs: [
    { provider: 'fcm', token: 'a' }, { provider: 'apns', token: 'ab'.repeat(32) },
    { provider: 'webhook', token: 'a' }, { provider: 'carrier-pigeon', token: 'a' }, 'not json',
  ] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.open.configured, []);
  assert.deepEqual(r.regs.map((x) => x.ok), [false, false, false, false, false]);
  assert.match(r.regs[0].error, /push provider fcm is not configured/);
  assert.match(r.regs[1].error, /push provider apns is not configured/);
  assert.match(r.regs[2].error, /push provider webhook is not configured/);
  assert.match(r.regs[3].error, /provider must be one of/);
  assert.match(r.regs[4].error, /JSON object/);
});

test('config: every provider configured at once', async () => {
  const r = await runProbe({ parseOnly: true, settings: [
    ...apns(keys.apns.file), '--push-fcm-service-account', keys.fcm.file,
    '--push-webpush-vapid-key-file', keys.vapid.file, '--push-webpush-subject', 'https://tern.example/contact',
    '--push-webhook-url', 'https://gw.example/hook', '--push-webhook-secret', 'x'.repeat(32)] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.open.configured, ['fcm', 'apns', 'webpush', 'webhook']);
  assert.ok(r.open.vapid);
});
