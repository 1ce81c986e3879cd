#!/usr/bin/env node
// The soak (issue 14): pairs of users send to each other at half of saturation for a set time,
// while ternd is killed with -9 and restarted at random intervals, clients drop their
// connections and come back (resending every send that had no answer, with the same id), and
// some receivers stop reading for seconds at a time. At the end every message that got `sent`
// must have been delivered exactly once after de-dup by msg_id, in per-pair order, and every
// inbox must be empty again. RSS of ternd (and of nats-server) is sampled every second.
//
//   node bench/soak/soak.mjs [--duration 60] [--backend rocksdb|nats] [--rate N] ...
//   (--help lists every option and its default)
//
// Exit 0 when nothing was lost, duplicated or reordered and the inboxes are back to 0;
// 1 otherwise; 2 for bad options.
//
// Why not lib/load.mjs's checkDelivered: it keeps every frame of the run to check at the end,
// which a 30-minute run at thousands of messages a second does not fit in memory. Here each
// pair keeps one byte per message (answered, delivered) and the msg_ids of the messages not yet
// matched, and checks as frames arrive. The servers, the WebSocket client and the HTTP calls
// are the integration tests' (tests/integration/lib).
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { startServer, startCluster, FAST_LIMITS, sleep } from '../../tests/integration/lib/server.mjs';
import { startNats } from '../../tests/integration/lib/nats.mjs';
import { newUser, metric, metricsText, metricValue } from '../../tests/integration/lib/api.mjs';
import { connect } from '../../tests/integration/lib/client.mjs';

const OPTIONS = {
  duration: { type: 'string', default: '60', help: 'seconds of load after calibration' },
  backend: { type: 'string', default: 'rocksdb', help: 'rocksdb, or nats (starts its own nats-server)' },
  pairs: { type: 'string', default: '8', help: 'sender → receiver pairs (two users each)' },
  rate: { type: 'string', default: '', help: 'messages/s over all pairs (default: half of the calibrated saturation)' },
  calibrate: { type: 'string', default: '5', help: 'seconds of unpaced sending to find saturation' },
  'kill-min': { type: 'string', default: '8', help: 'least seconds between two kill -9 of ternd' },
  'kill-max': { type: 'string', default: '25', help: 'most seconds between two kill -9 of ternd (0: never kill)' },
  'drop-every': { type: 'string', default: '12', help: 'mean seconds between two dropped connections of one client' },
  stallers: { type: 'string', default: '2', help: 'receivers that stop reading now and then' },
  'stall-max': { type: 'string', default: '6', help: 'most seconds one stall lasts (1 s at least)' },
  'max-outbound': { type: 'string', default: '256KiB', help: 'ternd --ws-max-outbound (small, so stalls reach 1008)' },
  window: { type: 'string', default: '500', help: 'most unanswered sends per sender connection' },
  report: { type: 'string', default: '5', help: 'seconds between progress lines' },
  seed: { type: 'string', default: '', help: 'random seed (default: from the clock; printed)' },
  help: { type: 'boolean', default: false },
};

function usage() {
  const lines = ['usage: node bench/soak/soak.mjs [options]'];
  for (const [k, o] of Object.entries(OPTIONS)) if (o.help) lines.push(`  --${k.padEnd(14)} ${o.help} (default: ${o.default || 'see text'})`);
  return lines.join('\n');
}

let opts;
try {
  opts = parseArgs({ options: Object.fromEntries(Object.entries(OPTIONS).map(([k, o]) => [k, { type: o.type, default: o.default }])) }).values;
} catch (e) {
  console.error(`${e.message}\n${usage()}`);
  process.exit(2);
}
if (opts.help) { console.log(usage()); process.exit(0); }
const num = (k) => {
  const v = Number(opts[k]);
  if (!Number.isFinite(v) || v < 0) { console.error(`--${k}: not a number: ${opts[k]}\n${usage()}`); process.exit(2); }
  return v;
};
const DURATION = num('duration');
const PAIRS = Math.max(1, Math.floor(num('pairs')));
const CALIBRATE = num('calibrate');
const KILL_MIN = num('kill-min');
const KILL_MAX = num('kill-max');
const DROP_EVERY = num('drop-every');
const STALLERS = Math.min(PAIRS, Math.floor(num('stallers')));
const STALL_MAX = Math.max(1, num('stall-max'));
const WINDOW = Math.max(1, Math.floor(num('window')));
const REPORT = Math.max(1, num('report'));
if (!['rocksdb', 'nats'].includes(opts.backend)) { console.error(`--backend: rocksdb or nats\n${usage()}`); process.exit(2); }
if (!opts.rate && CALIBRATE <= 1) { console.error('--calibrate must be > 1 s when --rate is not given'); process.exit(2); }

// mulberry32: a small seeded generator, so that a failing run's chaos can be replayed (--seed)
const SEED = opts.seed ? Number(opts.seed) >>> 0 : (Date.now() & 0xffffffff) >>> 0;
let rs = SEED;
function rand() {
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (a, b) => a + (b - a) * rand();

const T0 = Date.now();
const log = (s) => console.log(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(7)} s] ${s}`);

// ---------------------------------------------------------------------------------------------
// Per-pair bookkeeping

/** A growable byte array indexed by message index. */
class Bytes {
  constructor() { this.a = new Uint8Array(1 << 16); }
  get(i) { return i < this.a.length ? this.a[i] : 0; }
  set(i, v) {
    if (i >= this.a.length) {
      let n = this.a.length;
      while (n <= i) n *= 2;
      const b = new Uint8Array(n);
      b.set(this.a);
      this.a = b;
    }
    this.a[i] = v;
  }
}

const SEEN_KEEP = 100000; // msg_ids remembered per pair to tell a redelivery from a duplicate

const problems = []; // every loss, duplicate, reordering or leak, as a sentence (first 50 kept)
const counts = { dups: 0, outOfOrder: 0, mismatches: 0, leaks: 0, conflicts: 0, oldRedeliveries: 0 };
function problem(kind, s) {
  counts[kind]++;
  if (problems.length < 50) problems.push(`${kind}: ${s}`);
}

function newPair(k, s, r) {
  return {
    k, s, r,
    next: 0, // the next fresh message index
    unanswered: new Set(), // indices sent and not answered `sent` yet
    onConn: 0, // of those, sent on the current connection
    retry: [], // indices answered with an error: sent again
    retryAt: 0, // not before this time
    unordered: new Set(), // indices sent again after an error (so after later ones): no order check
    answered: new Bytes(),
    nAnswered: 0,
    delivered: new Bytes(),
    nDelivered: 0,
    lastNew: -1, // highest index delivered so far (order check)
    sentIds: new Map(), // index → msg_id from `sent`, until the delivery is seen
    gotIds: new Map(), // index → msg_id delivered, until the `sent` answer is seen
    seen: new Map(), // msg_id → index, the last SEEN_KEEP deliveries
    redelivered: 0,
    errors: new Map(), // error code → count
    receipts: 0,
    tokens: 0, // pacing: fresh sends allowed now
    sender: null, // actor
    receiver: null,
  };
}

function onSentAnswer(p, f) {
  const i = Number(f.id.slice(2));
  if (!p.unanswered.has(i) && !p.answered.get(i)) { problem('leaks', `pair ${p.k}: answer for id ${f.id} never sent`); return; }
  if (p.unanswered.delete(i)) p.onConn--;
  if (f.type === 'error') {
    p.errors.set(f.code, (p.errors.get(f.code) || 0) + 1);
    p.unordered.add(i);
    p.retry.push(i);
    p.retryAt = Date.now() + 200;
    return;
  }
  const before = p.answered.get(i);
  if (before) {
    // the same id answered twice (a resend): must be the same msg_id
    const known = p.sentIds.get(i);
    if (known && known !== f.msg_id) problem('conflicts', `pair ${p.k} id ${f.id}: sent ${known}, then ${f.msg_id}`);
    return;
  }
  p.answered.set(i, 1);
  p.nAnswered++;
  const got = p.gotIds.get(i);
  if (got !== undefined) {
    if (got !== f.msg_id) problem('mismatches', `pair ${p.k} message ${i}: sent as ${f.msg_id}, delivered as ${got}`);
    p.gotIds.delete(i);
  } else p.sentIds.set(i, f.msg_id);
}

function onMsg(p, m) {
  const [who, idx] = String(m.body).split(':');
  const i = Number(idx);
  if (m.from !== p.s.user || m.to !== p.r.user || who !== p.s.user || !Number.isInteger(i) || i < 0 || i >= p.next) {
    problem('leaks', `${p.r.user} got ${JSON.stringify(m).slice(0, 200)}`);
    return;
  }
  const prev = p.seen.get(m.msg_id);
  if (prev !== undefined) {
    if (prev !== i) problem('leaks', `pair ${p.k}: msg_id ${m.msg_id} carried message ${prev}, then ${i}`);
    p.redelivered++;
    return;
  }
  if (p.delivered.get(i)) {
    // a msg_id not seen lately for an index already delivered: a second stored copy, unless it
    // is a redelivery older than SEEN_KEEP deliveries (told apart by the sent answer if known)
    problem('dups', `pair ${p.k}: message ${i} delivered again as ${m.msg_id}`);
    return;
  }
  p.delivered.set(i, 1);
  p.nDelivered++;
  p.seen.set(m.msg_id, i);
  if (p.seen.size > SEEN_KEEP) p.seen.delete(p.seen.keys().next().value);
  if (i < p.lastNew && !p.unordered.has(i)) problem('outOfOrder', `pair ${p.k}: message ${i} arrived after ${p.lastNew}`);
  if (i > p.lastNew) p.lastNew = i;
  const sent = p.sentIds.get(i);
  if (sent !== undefined) {
    if (sent !== m.msg_id) problem('mismatches', `pair ${p.k} message ${i}: sent as ${sent}, delivered as ${m.msg_id}`);
    p.sentIds.delete(i);
  } else p.gotIds.set(i, m.msg_id);
}

// ---------------------------------------------------------------------------------------------
// Clients: one connection at a time per user, reconnecting until told to stop

const stats = { connects: 0, connectFails: 0, drops: 0, stalls: 0, closes: new Map(), kills: 0, restartMs: [] };
let srv;
let stopping = false; // end of the run: actors leave once their connection closes
let chaos = true; // kills, drops and stalls happen only while this holds
let paced = false; // false while calibrating: senders keep their window full
let finished = false; // the final checks are done: actors stop reconnecting

function sendOne(a, i) {
  a.c.send({ type: 'send', id: `c-${i}`, to: a.pair.r.user, body: `${a.pair.s.user}:${i}` });
  a.pair.unanswered.add(i);
  a.pair.onConn++;
}

/** After ready: every send that had no answer goes again, same id, lowest first. */
function resendUnanswered(a) {
  const p = a.pair;
  const all = [...p.unanswered].sort((x, y) => x - y);
  p.onConn = 0;
  for (const i of all) sendOne(a, i);
}

function pump(a) {
  const p = a.pair;
  if (!a.ready || !a.c?.isOpen) return;
  // errors are sent again a moment later (a rate_limited answer would otherwise spin)
  while (p.retry.length && p.onConn < WINDOW && Date.now() >= p.retryAt) sendOne(a, p.retry.shift());
  while (p.onConn < WINDOW && (!paced || p.tokens >= 1) && !stopping) {
    if (paced) p.tokens--;
    sendOne(a, p.next++);
  }
}

function newActor(pair, role) {
  return { pair, role, acct: role === 'sender' ? pair.s : pair.r, c: null, ready: false, stalled: false, done: null };
}

async function runActor(a) {
  while (!finished) {
    let c;
    try {
      c = await connect(srv.wsUrl, { name: a.acct.user, timeoutMs: 3000 });
    } catch {
      stats.connectFails++;
      await sleep(between(50, 250));
      continue;
    }
    stats.connects++;
    a.c = c;
    a.ready = false;
    let top = 0;
    let acked = 0;
    c.tap = (f) => {
      if (typeof f.seq === 'number' && f.type !== 'synced') top = Math.max(top, f.seq);
      switch (f.type) {
        case 'ready':
          a.ready = true;
          if (a.role === 'sender') { resendUnanswered(a); pump(a); }
          break;
        case 'msg': onMsg(a.pair, f); break;
        case 'receipt': a.pair.receipts += f.msg_ids.length; break;
        case 'sent': onSentAnswer(a.pair, f); pump(a); break;
        case 'error':
          if (f.id) { onSentAnswer(a.pair, f); pump(a); } else problem('leaks', `${a.acct.user}: error ${JSON.stringify(f)}`);
          break;
        default: break;
      }
      if (top - acked >= 100 && !a.stalled) { c.ack(top); acked = top; }
      return true;
    };
    const timer = setInterval(() => { if (top > acked && c.isOpen) { c.ack(top); acked = top; } }, 50);
    c.send({ type: 'auth', token: a.acct.token });
    const info = await c.closed;
    clearInterval(timer);
    a.c = null;
    a.ready = false;
    a.stalled = false;
    const key = String(info.code);
    stats.closes.set(key, (stats.closes.get(key) || 0) + 1);
    await sleep(between(20, 300));
  }
}

// ---------------------------------------------------------------------------------------------
// Chaos

async function killer() {
  if (KILL_MAX <= 0) return;
  for (;;) {
    const wait = between(KILL_MIN, Math.max(KILL_MIN, KILL_MAX)) * 1000;
    const until = Date.now() + wait;
    while (chaos && Date.now() < until) await sleep(100);
    if (!chaos) return;
    await srv.kill9();
    stats.kills++;
    const t = Date.now();
    await restartTernd();
    stats.restartMs.push(Date.now() - t);
    log(`kill -9 #${stats.kills}, restarted in ${Date.now() - t} ms`);
    // a slow start: what ternd said while starting (its log's timestamps tell where the time went)
    if (Date.now() - t > SLOW_START_MS) {
      const life = srv.stderr().split('----- restart -----').pop();
      for (const line of life.split('\n').filter(Boolean).slice(0, 12)) log(`  ternd: ${line.slice(0, 220)}`);
    }
  }
}

const SLOW_START_MS = 3000;

async function restartTernd() {
  for (let tries = 1; ; tries++) {
    try { await srv.restart(); return; } catch (e) {
      if (tries >= 3) throw e;
      log(`restart failed (${e.message.split('\n')[0]}), again`);
      await sleep(500);
    }
  }
}

async function dropper(actors) {
  if (DROP_EVERY <= 0) return;
  // every client drops about once per DROP_EVERY s: one of them every DROP_EVERY/n s
  while (chaos) {
    await sleep(between(0, 2 * DROP_EVERY * 1000 / actors.length));
    if (!chaos) return;
    const a = actors[Math.floor(rand() * actors.length)];
    if (!a.c || !a.c.isOpen) continue;
    stats.drops++;
    if (rand() < 0.5) a.c.terminate(); else a.c.close().catch(() => {});
  }
}

async function staller(a) {
  while (chaos) {
    await sleep(between(2000, 10000));
    if (!chaos) return;
    const c = a.c;
    if (!c || !c.isOpen) continue;
    stats.stalls++;
    a.stalled = true;
    c.ws.pause();
    const until = Date.now() + between(1000, STALL_MAX * 1000);
    while (chaos && Date.now() < until) await sleep(100);
    c.ws.resume();
    if (a.c === c) a.stalled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// RSS

const rss = { ternd: [], nats: [] }; // [ms since start, KiB]
function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
let natsProc = null;
const lifeStart = new Map(); // ternd pid → first time it was sampled
const STEADY_MS = 5000; // samples this soon after a (re)start are the process loading, not its size
function sampleRss() {
  const t = Date.now() - T0;
  const p = srv.proc;
  if (p && p.exitCode === null && p.signalCode === null) {
    const v = rssOf(p.pid);
    if (!lifeStart.has(p.pid)) lifeStart.set(p.pid, t);
    if (v) rss.ternd.push([t, v, t - lifeStart.get(p.pid) >= STEADY_MS]);
  }
  if (natsProc) { const v = rssOf(natsProc.pid); if (v) rss.nats.push([t, v]); }
}
const mib = (kib) => (kib / 1024).toFixed(1);
function minMax(samples, from = 0) {
  let lo = Infinity;
  let hi = 0;
  for (const [t, v, steady = true] of samples) if (t >= from && steady) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return hi ? `${mib(lo)}–${mib(hi)} MiB` : 'n/a';
}

// ---------------------------------------------------------------------------------------------

const sum = (pairs, f) => pairs.reduce((n, p) => n + f(p), 0);

async function inboxEnvelopes() {
  try { return await metric(srv, 'tern_inbox_envelopes'); } catch { return NaN; }
}

// Where ternd's memory is, as its /metrics says (RocksDB: memtables, block cache, envelope
// cache; a NATS node shows none), for the progress lines and the summary: "" if unknown.
async function storeMemory() {
  try {
    const t = await metricsText(srv.nodes ? srv.nodes[0] : srv);
    const part = (p) => metricValue(t, `tern_store_memory_bytes{part="${p}"}`);
    if (part('memtables') === undefined) return '';
    return `memtables ${mib(part('memtables') / 1024)}, block cache ${mib(part('block_cache') / 1024)}, ` +
      `envelope cache ${mib(part('envelope_cache') / 1024)} MiB`;
  } catch { return ''; }
}

async function waitUntil(fn, ms, what) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await sleep(100);
  }
  log(`timed out after ${ms / 1000} s waiting for ${what}`);
  return false;
}

async function main() {
  log(`soak: backend ${opts.backend}, ${PAIRS} pairs, ${DURATION} s, kill -9 every ${KILL_MIN}–${KILL_MAX} s, ` +
    `drops every ~${DROP_EVERY} s per client, ${STALLERS} stalling receivers (≤ ${STALL_MAX} s), seed ${SEED}`);
  const args = [...FAST_LIMITS, '--ws-max-outbound', opts['max-outbound']];
  let nats = null;
  if (opts.backend === 'nats') {
    nats = await startNats({ servers: 1 });
    natsProc = nats.servers[0].proc;
    srv = await startCluster(1, { args, nats });
  } else {
    srv = await startServer({ args });
  }
  const rssTimer = setInterval(sampleRss, 1000);
  sampleRss();

  const pairs = [];
  for (let k = 0; k < PAIRS; k++) pairs.push(newPair(k, await newUser(srv, `soaks${k}`), await newUser(srv, `soakr${k}`)));
  const actors = [];
  for (const p of pairs) {
    p.sender = newActor(p, 'sender');
    p.receiver = newActor(p, 'receiver');
    actors.push(p.sender, p.receiver);
  }
  const running = actors.map((a) => runActor(a));

  // calibration: every sender keeps its window full; saturation = deliveries/s after the first second
  let rate = Number(opts.rate);
  if (!opts.rate) {
    await sleep(1000);
    const d0 = sum(pairs, (p) => p.nDelivered);
    const t0 = Date.now();
    await sleep((CALIBRATE - 1) * 1000);
    const sat = (sum(pairs, (p) => p.nDelivered) - d0) / ((Date.now() - t0) / 1000);
    rate = Math.max(PAIRS, Math.round(sat / 2));
    log(`calibration: ${Math.round(sat)} msg/s delivered with ${WINDOW} sends in flight per sender (saturation); soak rate ${rate} msg/s`);
  } else log(`soak rate ${rate} msg/s (--rate)`);
  paced = true;
  // the calibration's backlog is delivered before the clock starts
  await waitUntil(() => sum(pairs, (p) => p.nDelivered) >= sum(pairs, (p) => p.nAnswered), 60000, 'the calibration backlog');
  const perPair = rate / PAIRS;

  const tStart = Date.now();
  const dStart = sum(pairs, (p) => p.nDelivered);
  const rssFrom = tStart - T0;
  let last = Date.now();
  const pacer = setInterval(() => {
    const now = Date.now();
    const dt = (now - last) / 1000;
    last = now;
    for (const p of pairs) {
      p.tokens = Math.min(p.tokens + perPair * dt, Math.max(1, perPair)); // at most 1 s of backlog
      pump(p.sender);
    }
  }, 10);
  const chaosRuns = [killer(), dropper(actors), ...pairs.slice(0, STALLERS).map((p) => staller(p.receiver))];

  let lastD = dStart;
  let lastT = tStart;
  while (Date.now() - tStart < DURATION * 1000) {
    await sleep(Math.min(REPORT * 1000, DURATION * 1000 - (Date.now() - tStart)));
    const d = sum(pairs, (p) => p.nDelivered);
    const now = Date.now();
    const cur = rss.ternd.length ? rss.ternd[rss.ternd.length - 1][1] : 0;
    const mem = await storeMemory();
    log(`sent ${sum(pairs, (p) => p.nAnswered)}, delivered ${d} (${Math.round((d - lastD) / ((now - lastT) / 1000))} msg/s), ` +
      `unanswered ${sum(pairs, (p) => p.unanswered.size)}, kills ${stats.kills}, drops ${stats.drops}, stalls ${stats.stalls}, ` +
      `reconnects ${stats.connects - actors.length}, ternd RSS ${mib(cur)} MiB${mem ? ` (store: ${mem})` : ''}, problems ${problems.length}`);
    lastD = d;
    lastT = now;
  }
  const elapsed = (Date.now() - tStart) / 1000;
  const deliveredInRun = sum(pairs, (p) => p.nDelivered) - dStart;

  // the end: no more chaos or fresh sends; every send answered, delivered, acked
  chaos = false;
  stopping = true;
  await Promise.all(chaosRuns); // the pacer keeps running: with stopping set it only sends retries
  const answeredOk = await waitUntil(() => pairs.every((p) => p.unanswered.size === 0 && p.retry.length === 0), 60000,
    'every send to be answered');
  const deliveredOk = await waitUntil(() => pairs.every((p) => p.nDelivered >= p.nAnswered), 60000,
    'every answered message to be delivered');
  const emptyOk = await waitUntil(async () => (await inboxEnvelopes()) === 0, 30000, 'tern_inbox_envelopes 0');
  const envelopesLeft = await inboxEnvelopes();
  let lost = 0;
  const lostSamples = [];
  for (const p of pairs) {
    for (let i = 0; i < p.next; i++) {
      if (p.answered.get(i) && !p.delivered.get(i)) { lost++; if (lostSamples.length < 10) lostSamples.push(`pair ${p.k} message ${i}`); }
    }
  }
  const unansweredLeft = sum(pairs, (p) => p.unanswered.size + p.retry.length);
  const errors = new Map();
  for (const p of pairs) for (const [code, n] of p.errors) errors.set(code, (errors.get(code) || 0) + n);

  const memEnd = await storeMemory();
  clearInterval(rssTimer);
  clearInterval(pacer);
  finished = true;
  for (const a of actors) a.c?.close().catch(() => {});
  await Promise.race([Promise.all(running), sleep(5000)]);
  await srv.close();
  if (nats) await nats.close();

  const rMs = stats.restartMs;
  const summary = [
    '---- soak summary ----',
    `backend ${opts.backend}, seed ${SEED}, ${PAIRS} pairs, rate ${rate} msg/s offered, ${elapsed.toFixed(0)} s of load ` +
      `(${(deliveredInRun / elapsed).toFixed(0)} msg/s delivered)`,
    `sent (answered)      ${sum(pairs, (p) => p.nAnswered)}`,
    `delivered (distinct) ${sum(pairs, (p) => p.nDelivered)}`,
    `lost                 ${lost}${lostSamples.length ? ` (${lostSamples.join(', ')})` : ''}`,
    `unanswered at end    ${unansweredLeft}`,
    `duplicates           ${counts.dups} (redeliveries of one msg_id, dropped by the client: ${sum(pairs, (p) => p.redelivered)})`,
    `out of order         ${counts.outOfOrder}`,
    `msg_id mismatches    ${counts.mismatches + counts.conflicts}`,
    `foreign frames       ${counts.leaks}`,
    `envelopes left       ${envelopesLeft}`,
    `send errors          ${errors.size ? [...errors].map(([c, n]) => `${c}=${n}`).join(' ') : 'none'}`,
    `kill -9              ${stats.kills} (restart ${rMs.length ? `${Math.min(...rMs)}–${Math.max(...rMs)} ms` : 'n/a'})`,
    `connections          ${stats.connects} (${stats.drops} dropped by the clients, ${stats.stalls} stalls, ` +
      `${stats.connectFails} failed connects; close codes ${[...stats.closes].map(([c, n]) => `${c}×${n}`).join(' ')})`,
    `ternd RSS            ${minMax(rss.ternd, rssFrom)} over the load (every process life from ${STEADY_MS / 1000} s after its start; samples every 1 s)`,
  ];
  if (memEnd) summary.push(`ternd store memory   ${memEnd} at the end of the load (its /metrics)`);
  if (natsProc) summary.push(`nats-server RSS      ${minMax(rss.nats, rssFrom)}`);
  // RSS over time: one figure per tenth of the run (the last sample at or before each point)
  const points = [];
  for (let j = 0; j <= 10; j++) {
    const at = rssFrom + (elapsed * 1000 * j) / 10;
    let v = null;
    for (const [t, x, steady] of rss.ternd) { if (t > at) break; if (steady) v = x; }
    if (v) points.push(`${Math.round((at - rssFrom) / 1000)}s:${mib(v)}`);
  }
  summary.push(`ternd RSS over time  ${points.join(' ')} (MiB)`);
  for (const s of problems) summary.push(`  ${s}`);
  const ok = lost === 0 && unansweredLeft === 0 && counts.dups === 0 && counts.outOfOrder === 0 &&
    counts.mismatches === 0 && counts.conflicts === 0 && counts.leaks === 0 && envelopesLeft === 0 &&
    answeredOk && deliveredOk && emptyOk;
  summary.push(ok ? 'RESULT ok' : 'RESULT FAILED');
  console.log(summary.join('\n'));
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  console.error(`soak: ${e.stack || e}`);
  if (srv) console.error(`ternd log (tail):\n${srv.stderr().slice(-3000)}`);
  process.exit(1);
});
