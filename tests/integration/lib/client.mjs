// A WebSocket client wrapper on the independent `ws` package.
//
//   const c = await connect(srv.wsUrl);
//   const ready = await c.auth(token);          // waits for {type:"ready"}
//   const { envelopes, synced } = await c.untilSynced();
//   c.send({ type: 'send', id: 'c1', to: 'bob', body: 'hi' });
//   const sent = await c.next({ type: 'sent', id: 'c1' });
//   const { code } = await c.closed;
//
// Frames are buffered in arrival order; next() takes the first buffered (or future) frame
// that matches, leaving the others in place.
import WebSocket from 'ws';

const DEFAULT_TIMEOUT = 5000;

/** Turns a predicate spec into a function: a type string, an object of fields, or a function. */
export function matcher(spec) {
  if (spec === undefined || spec === null) return () => true;
  if (typeof spec === 'function') return spec;
  if (typeof spec === 'string') return (f) => f && f.type === spec;
  if (typeof spec === 'object') {
    return (f) => f && Object.entries(spec).every(([k, v]) => deepEq(f[k], v));
  }
  throw new TypeError('bad frame predicate');
}

function deepEq(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || !a || !b) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

function describe(spec) {
  if (typeof spec === 'function') return spec.name || spec.toString().slice(0, 120);
  return JSON.stringify(spec);
}

function short(f) {
  const s = JSON.stringify(f);
  return s.length > 200 ? s.slice(0, 200) + '…' : s;
}

export class Client {
  constructor(ws, name = 'client') {
    this.ws = ws;
    this.name = name;
    this.frames = []; // unmatched frames, arrival order
    this.waiters = []; // { pred, resolve, reject, timer }
    this.all = 0; // frames received in total
    this.pings = []; // arrival times of server WebSocket pings
    this._tap = null; // optional (frame) => boolean: true consumes the frame (bulk tests)
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(`${this.name}: connection closed (code ${code} ${reason}) while waiting for ${w.what}; ` +
            `unmatched frames: ${this.frames.slice(-10).map(short).join(' | ') || 'none'}`));
        }
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (err) => { this.lastError = err; });
    ws.on('ping', () => { this.pings.push(Date.now()); });
    ws.on('message', (data, isBinary) => {
      let f;
      if (isBinary) f = { type: '__binary__', data };
      else {
        try { f = JSON.parse(data.toString('utf8')); } catch { f = { type: '__invalid_json__', raw: data.toString('utf8') }; }
      }
      this.all++;
      if (this._tap && this._tap(f)) return;
      for (let i = 0; i < this.waiters.length; i++) {
        const w = this.waiters[i];
        if (w.pred(f)) {
          this.waiters.splice(i, 1);
          clearTimeout(w.timer);
          w.resolve(f);
          return;
        }
      }
      this.frames.push(f);
    });
  }

  /** The bulk-consumer hook: (frame) => true consumes it. Setting it replays buffered frames. */
  get tap() { return this._tap; }

  set tap(fn) {
    this._tap = fn;
    if (fn && this.frames.length) {
      const keep = [];
      for (const f of this.frames) if (!fn(f)) keep.push(f);
      this.frames = keep;
    }
  }

  get isOpen() { return this.ws.readyState === WebSocket.OPEN; }

  /** Sends one object as a JSON text frame. */
  send(obj) { this.ws.send(JSON.stringify(obj)); }

  /** Sends raw data (string or Buffer) with ws options ({binary, fin, ...}). */
  sendRaw(data, opts = {}) {
    return new Promise((resolve) => this.ws.send(data, opts, (err) => resolve(err)));
  }

  /** Resolves with the next frame matching spec (buffered first), or rejects after timeoutMs. */
  next(spec, timeoutMs = DEFAULT_TIMEOUT) {
    const pred = matcher(spec);
    const i = this.frames.findIndex((f) => pred(f));
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]);
    const what = describe(spec);
    if (this.closeInfo) {
      return Promise.reject(new Error(`${this.name}: connection already closed (code ${this.closeInfo.code}) ` +
        `while waiting for ${what}; unmatched: ${this.frames.slice(-10).map(short).join(' | ') || 'none'}`));
    }
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject, what };
      w.timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`${this.name}: no frame matching ${what} within ${timeoutMs} ms; ` +
          `unmatched frames: ${this.frames.slice(-10).map(short).join(' | ') || 'none'}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** The next n frames matching spec, in order. */
  async collect(n, spec, timeoutMs = DEFAULT_TIMEOUT) {
    const out = [];
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < n; i++) {
      try {
        out.push(await this.next(spec, Math.max(1, deadline - Date.now())));
      } catch (e) {
        e.message = `${e.message} (collected ${out.length} of ${n})`;
        throw e;
      }
    }
    return out;
  }

  /** Waits ms and returns (and removes) every buffered frame matching spec that arrived meanwhile. */
  async quiet(spec, ms = 300) {
    await new Promise((r) => setTimeout(r, ms));
    const pred = matcher(spec);
    const got = this.frames.filter(pred);
    this.frames = this.frames.filter((f) => !pred(f));
    return got;
  }

  /** Removes and returns every buffered frame matching spec, without waiting. */
  take(spec) {
    const pred = matcher(spec);
    const got = this.frames.filter(pred);
    this.frames = this.frames.filter((f) => !pred(f));
    return got;
  }

  /** Sends auth and resolves with the ready frame; rejects on anything else first. */
  async auth(token, timeoutMs = DEFAULT_TIMEOUT) {
    this.send({ type: 'auth', token });
    const f = await this.next((x) => x.type === 'ready' || x.type === 'error', timeoutMs);
    if (f.type !== 'ready') throw new Error(`${this.name}: auth answered ${short(f)}`);
    this.ready = f;
    return f;
  }

  /**
   * Reads every frame until {type:"synced"}: returns { envelopes (msg, receipt, group and
   * decrypt_error, in order),
   * others, synced }.
   */
  async untilSynced(timeoutMs = DEFAULT_TIMEOUT) {
    const deadline = Date.now() + timeoutMs;
    const envelopes = [];
    const others = [];
    const t0 = Date.now();
    let last = t0;
    for (;;) {
      let f;
      try {
        f = await this.next(() => true, Math.max(1, deadline - Date.now()));
      } catch (e) {
        // how far the drain got tells a slow drain from a stalled one
        e.message += ` (untilSynced: ${envelopes.length} envelopes and ${others.length} other frames, ` +
          `the last ${last - t0} ms after the start)`;
        throw e;
      }
      last = Date.now();
      if (f.type === 'synced') { this.synced = f; return { envelopes, others, synced: f }; }
      if (f.type === 'msg' || f.type === 'receipt' || f.type === 'group' || f.type === 'decrypt_error') envelopes.push(f);
      else others.push(f);
    }
  }

  /** Sends a ping frame and waits for the pong: proves the connection is alive and in sync. */
  async roundTrip(timeoutMs = DEFAULT_TIMEOUT) {
    this.send({ type: 'ping' });
    return this.next('pong', timeoutMs);
  }

  ack(seq) { this.send({ type: 'ack', seq }); }

  /** Closes normally and waits for the close to finish. */
  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closeInfo;
    if (this.ws.readyState !== WebSocket.CLOSING) this.ws.close(1000);
    let timer;
    const r = await Promise.race([this.closed, new Promise((res) => { timer = setTimeout(() => res(null), 3000); })]);
    clearTimeout(timer);
    if (r === null) this.ws.terminate();
    return this.closed;
  }

  /** Drops the TCP connection without a close handshake. */
  terminate() { this.ws.terminate(); return this.closed; }
}

/** Opens a WebSocket to url (srv.wsUrl or a server object); resolves once open. */
export function connect(url, { name, wsOptions = {}, timeoutMs = DEFAULT_TIMEOUT } = {}) {
  const target = typeof url === 'string' ? url : url.wsUrl;
  const ws = new WebSocket(target, { perMessageDeflate: false, ...wsOptions });
  const c = new Client(ws, name);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`connect ${target}: timeout`)); }, timeoutMs);
    ws.once('open', () => { clearTimeout(timer); resolve(c); });
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(timer);
      reject(new Error(`connect ${target}: HTTP ${res.statusCode} instead of an upgrade`));
    });
    ws.once('error', (err) => { clearTimeout(timer); reject(new Error(`connect ${target}: ${err.message}`)); });
  });
}

/**
 * Connects, authenticates and reads the initial drain. Returns the client with .ready,
 * .synced and .initial (the drained envelopes).
 */
export async function online(srv, account, { name, wsOptions, syncMs } = {}) {
  const c = await connect(srv, { name: name || account.user, wsOptions });
  await c.auth(account.token);
  const { envelopes } = await c.untilSynced(syncMs);
  c.initial = envelopes;
  return c;
}

/**
 * online(), but it connects again (up to 2 s) until ok(envelopes) holds. An ack has no answer,
 * and what it causes comes within moments, not at once: in a cluster the next connection may
 * reach another node before the ack's commit, and anywhere the delivered receipt an ack makes
 * is a write of its own, submitted when the ack's commit completes, so a connection made
 * meanwhile can drain before it (the likely cause of a CI failure of the inbox cap's receipt
 * count in the sanitized workers2/messaging, whose output did not say).
 */
export async function onlineAfterAck(srv, account, ok) {
  let c = await online(srv, account);
  for (let i = 0; !ok(c.initial) && i < 20; i++) {
    await c.close();
    await new Promise((r) => setTimeout(r, 100));
    c = await online(srv, account);
  }
  return c;
}

/**
 * One message's whole round from sender to recipient (two online clients, maybe on other
 * nodes): send → `sent`, the `msg` with its body, the recipient's ack → a delivered receipt,
 * its read → a read receipt, each naming the msg_id. Returns the `sent` frame.
 */
export async function ticksRound(sender, recipient, { to, from, id, body }) {
  sender.send({ type: 'send', id, to, body });
  const sent = await sender.next({ type: 'sent', id });
  const m = await recipient.next((f) => f.type === 'msg' && f.msg_id === sent.msg_id);
  if (m.body !== body) throw new Error(`${recipient.name}: body ${JSON.stringify(m.body)}, not ${JSON.stringify(body)}`);
  recipient.ack(m.seq);
  const d = await sender.next((f) => f.type === 'receipt' && f.status === 'delivered');
  if (JSON.stringify(d.msg_ids) !== JSON.stringify([sent.msg_id])) throw new Error(`delivered names ${JSON.stringify(d.msg_ids)}`);
  recipient.send({ type: 'read', peer: from, msg_ids: [sent.msg_id] });
  const r = await sender.next((f) => f.type === 'receipt' && f.status === 'read');
  if (JSON.stringify(r.msg_ids) !== JSON.stringify([sent.msg_id])) throw new Error(`read names ${JSON.stringify(r.msg_ids)}`);
  return sent;
}

/** Closes every client given (ignores those already closed). */
export async function closeAll(...clients) {
  await Promise.all(clients.flat().filter(Boolean).map((c) => c.close().catch(() => {})));
}

/**
 * Adds the group `delivered` receipts among frames to by (member → the msg_ids delivered):
 * each must name groupId, and no member may be delivered one id twice (it throws).
 */
export function tallyDelivered(by, frames, groupId) {
  for (const r of frames.filter((f) => f.type === 'receipt' && f.status === 'delivered')) {
    if (r.group_id !== groupId) throw new Error(`a delivered receipt of group ${r.group_id}, not ${groupId}`);
    for (const u of r.by) {
      const got = by.get(u) ?? [];
      for (const id of r.msg_ids) {
        if (got.includes(id)) throw new Error(`${u} delivered ${id} twice`);
        got.push(id);
      }
      by.set(u, got);
    }
  }
  return by;
}
