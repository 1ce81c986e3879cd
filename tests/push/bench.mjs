// Push throughput benchmark: how many notifications/s the push library delivers to the local
// stand-ins at the in-flight cap, per provider. A benchmark prints numbers; it never fails on a
// time. Not run by ctest.
//
//   node tests/push/bench.mjs [N per provider, default 20000] [cap, default 100] [--fast]
//
// With PUSH_PROBE set (or build/push_probe). The stand-ins run in this node process and the
// probe in its own; on a 2-core machine pin them apart, e.g.
//   taskset -c 1 node tests/push/bench.mjs   (the probe is pinned to core 0 below when taskset exists)
// Output: one line per provider with notifications/s (wall clock, first notify → last result)
// and the probe's CPU time per notification. Note that the stand-ins are node, single-threaded:
// they (especially the Web Push one, which does ECDH + AES-GCM per request) are usually the
// bottleneck, so these are floors for the library, not ceilings; --fast takes their crypto out.
import { execFileSync } from 'node:child_process';

import { PUSH_PROBE, runProbe } from './lib/probe.mjs';
import { makeCert, makeKeys, makeSubscription, startApns, startFcm, startWebhook, startWebPush, tempDir } from './lib/standins.mjs';

const N = Number(process.argv[2] ?? 20000);
const CAP = Number(process.argv[3] ?? 100);
const FAST = process.argv.includes('--fast'); // stand-ins skip their crypto checks
const dir = tempDir();
const tls = makeCert(dir);
const keys = makeKeys(dir);
const SECRET = 'benchmark-webhook-secret';
const sub = makeSubscription();

let pin = [];
try { execFileSync('taskset', ['-c', '0', 'true']); pin = ['taskset', '-c', '0']; } catch { /* no taskset */ }

const fcm = await startFcm({ tls, keys, fast: FAST });
const apns = await startApns({ tls, keys, fast: FAST });
const wp = await startWebPush({ subs: { get: () => sub }, fast: FAST });
const hook = await startWebhook({ secret: SECRET, fast: FAST });
// the stand-ins keep every request for the tests; a benchmark only needs the counts
for (const s of [fcm, apns, wp, hook]) s.rec.requests = { push() {}, filter: () => [], length: 0 };

const runs = [
  ['fcm', { provider: 'fcm', token: 'bench-{i}' }, ['--push-ca-file', tls.certFile, '--push-fcm-service-account', keys.fcm.file,
    '--push-fcm-url', fcm.url, '--push-fcm-token-url', fcm.tokenUrl]],
  ['apns', { provider: 'apns', token: 'a1b2c3d4{i}e5f60718{i}' }, ['--push-ca-file', tls.certFile, '--push-apns-key-file', keys.apns.file,
    '--push-apns-key-id', keys.apns.keyId, '--push-apns-team-id', keys.apns.teamId, '--push-apns-topic', keys.apns.topic,
    '--push-apns-url', apns.url]],
  ['webpush', { provider: 'webpush', endpoint: `${wp.url}/push/b{i}`, keys: { p256dh: sub.p256dh, auth: sub.authB64 } },
    ['--push-webpush-vapid-key-file', keys.vapid.file, '--push-webpush-subject', 'mailto:bench@example.org',
      '--push-webpush-allowed-hosts', '127.0.0.1']],
  ['webhook', { provider: 'webhook', token: 'bench-{i}' }, ['--push-webhook-url', hook.url, '--push-webhook-secret', SECRET]],
];

console.log(`push_probe: ${PUSH_PROBE}; ${N} notifications per provider, push.max_inflight=${CAP}${pin.length ? ', probe pinned to core 0' : ''}` +
  `, stand-ins ${FAST ? 'fast (no crypto checks)' : 'verifying every request'}`);
for (const [name, reg, settings] of runs) {
  const r = await runProbe({ regs: [reg], repeat: N, timeout: 600000, wrap: pin,
    settings: [...settings, '--push-max-inflight', String(CAP), '--push-queue-max', String(N + 1)] });
  const d = r.done ?? {};
  console.log(`${name.padEnd(8)} ${String(d.ok).padStart(6)} ok of ${N}  ${String(d.per_sec).padStart(8)} notifications/s  ` +
    `${d.cpu_us_per_result} µs probe CPU per notification  max in flight ${d.max_inflight?.[name]}`);
}
for (const s of [fcm, apns, wp, hook]) await s.close();
