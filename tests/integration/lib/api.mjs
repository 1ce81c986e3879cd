// The HTTP API of PROTOCOL.md sections 1, 2, 6 and 9, via fetch.
// Every call returns { status, body, text, headers }; body is parsed JSON or null.
import { randomBytes } from 'node:crypto';
import http from 'node:http';

/** A unique valid username: prefix + random suffix, at most 32 chars of [a-z0-9_.-]. */
export function uniqueName(prefix = 'u') {
  const suffix = randomBytes(6).toString('hex');
  return `${prefix.toLowerCase().slice(0, 32 - suffix.length - 1)}_${suffix}`;
}

export const PASSWORD = 'correct horse battery';

function baseOf(srv) { return typeof srv === 'string' ? srv : srv.url; }

/**
 * One HTTP request, on a fresh connection (no keep-alive races with short server timeouts;
 * keep-alive itself is tested in http.test.mjs). opts: body (object → JSON; string/Buffer sent
 * as is), token, headers.
 */
export function request(srv, method, path, { body, token, headers = {} } = {}) {
  const h = { ...headers };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string' || Buffer.isBuffer(body)) payload = body;
    else payload = JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
    h['content-length'] = Buffer.byteLength(payload);
  }
  if (token) h.authorization = `Bearer ${token}`;
  const url = new URL(baseOf(srv) + path);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: url.pathname + url.search, headers: h, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let parsed = null;
        try { parsed = text.length ? JSON.parse(text) : null; } catch { parsed = null; }
        const hdrs = new Headers();
        for (const [k, v] of Object.entries(res.headers)) hdrs.set(k, Array.isArray(v) ? v.join(', ') : String(v));
        resolve({ status: res.statusCode, body: parsed, text, headers: hdrs });
      });
    });
    req.on('error', (e) => reject(new Error(`${method} ${path}: ${e.message}`)));
    req.end(payload);
  });
}

export const register = (srv, username, password = PASSWORD, device) =>
  request(srv, 'POST', '/v1/register', { body: device === undefined ? { username, password } : { username, password, device } });
export const login = (srv, username, password = PASSWORD, device) =>
  request(srv, 'POST', '/v1/login', { body: device === undefined ? { username, password } : { username, password, device } });
export const logout = (srv, token) => request(srv, 'POST', '/v1/logout', { token });
export const me = (srv, token) => request(srv, 'GET', '/v1/me', { token });
export const getUser = (srv, token, name) => request(srv, 'GET', `/v1/users/${encodeURIComponent(name)}`, { token });

/** Registers a fresh user and returns { user, device_id, token, password }; throws unless 201. */
export async function newUser(srv, prefix = 'u', device = 'dev1') {
  const name = uniqueName(prefix);
  const r = await register(srv, name, PASSWORD, device);
  if (r.status !== 201) throw new Error(`register ${name} → ${r.status} ${r.text}`);
  await knownEverywhere(srv, r.body.token);
  return { ...r.body, password: PASSWORD };
}

/**
 * In a cluster, every node learns a new device from the change feed a moment after it is
 * stored. Requests with a token a node does not know yet catch up and run again (uploads
 * too); a GET /v1/me on each node makes each one catch up before the test goes on, so that
 * tests start from a state every node has (media's "a token made a moment ago" test
 * registers without it, on purpose).
 */
async function knownEverywhere(srv, token) {
  for (const node of (srv.cluster && srv.nodes) || []) { // (a front such as nginx has no nodes)
    // a node a test killed and has not restarted is skipped: it learns the rest when it starts;
    // one whose feed lags (a NATS server just rejoined) gets up to 30 s
    let m;
    for (const end = Date.now() + 30000; ;) {
      m = await me(node, token).catch((e) => (/ECONNREFUSED/.test(e.message) ? null : Promise.reject(e)));
      if (!m || m.status === 200 || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (m && m.status !== 200) throw new Error(`GET /v1/me on a node → ${m.status} ${m.text}`);
  }
}

/**
 * In a cluster, the reverse: every node has learned that token's device is gone (a GET /v1/me
 * catches up first, so one 401 per node is enough). A send through a node that has not yet
 * learned a logout still goes to the old device's inbox (docs/cluster-layout.md, known gaps).
 */
export async function goneEverywhere(srv, token) {
  for (const node of (srv.cluster && srv.nodes) || []) {
    let m;
    for (const end = Date.now() + 30000; ;) {
      m = await me(node, token).catch((e) => (/ECONNREFUSED/.test(e.message) ? null : Promise.reject(e)));
      if (!m || m.status === 401 || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (m && m.status !== 401) throw new Error(`GET /v1/me on a node after the logout → ${m.status} ${m.text}`);
  }
}

/** Logs in one more device of an existing user; returns { user, device_id, token }. */
export async function newDevice(srv, user, device = 'dev') {
  const r = await login(srv, user.user ?? user, PASSWORD, device);
  if (r.status !== 200) throw new Error(`login ${user.user ?? user} → ${r.status} ${r.text}`);
  await knownEverywhere(srv, r.body.token);
  return { ...r.body, password: PASSWORD };
}

/** GET /metrics as text. */
export async function metricsText(srv) {
  const r = await request(srv, 'GET', '/metrics');
  if (r.status !== 200) throw new Error(`/metrics → ${r.status} ${r.text}`);
  return r.text;
}

/** The value of one sample (name with labels as written, e.g. 'tern_receipts_total{status="read"}'), or undefined. */
export function metricValue(text, sample) {
  const want = normLabels(sample);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    if (normLabels(m[1] + (m[2] || '')) === want) return Number(m[3]);
  }
  return undefined;
}

function normLabels(key) {
  const i = key.indexOf('{');
  if (i < 0) return key;
  if (key.slice(i) === '{}') return key.slice(0, i);
  const labels = key.slice(i + 1, key.lastIndexOf('}')).split(',').map((s) => s.trim()).filter(Boolean).sort();
  return key.slice(0, i) + '{' + labels.join(',') + '}';
}

/**
 * A sample summed over every node of a cluster (PROTOCOL.md 12: gauges, and counters too, are
 * per node), or the one server's value; undefined if no node has it.
 */
export async function metricSum(srv, sample) {
  let sum;
  for (const n of srv.nodes || [srv]) {
    const v = metricValue(await metricsText(n), sample);
    if (v !== undefined) sum = (sum ?? 0) + v;
  }
  return sum;
}

/** Current value of a metric sample (number), throws if absent. */
export async function metric(srv, sample) {
  const t = await metricsText(srv);
  const v = metricValue(t, sample);
  if (v === undefined) throw new Error(`metric ${sample} not found in /metrics:\n${t}`);
  return v;
}
