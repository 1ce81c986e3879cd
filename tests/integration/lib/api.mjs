// The HTTP API of PROTOCOL.md sections 1, 2, 6 and 9, via fetch.
// Every call returns { status, body, text, headers }; body is parsed JSON or null.
import { randomBytes } from 'node:crypto';

/** A unique valid username: prefix + random suffix, at most 32 chars of [a-z0-9_.-]. */
export function uniqueName(prefix = 'u') {
  const suffix = randomBytes(6).toString('hex');
  return `${prefix.toLowerCase().slice(0, 32 - suffix.length - 1)}_${suffix}`;
}

export const PASSWORD = 'correct horse battery';

function baseOf(srv) { return typeof srv === 'string' ? srv : srv.url; }

/**
 * One HTTP request. opts: body (object → JSON; string/Buffer sent as is), token, headers.
 */
export async function request(srv, method, path, { body, token, headers = {} } = {}) {
  const h = { ...headers };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string' || Buffer.isBuffer(body)) payload = body;
    else payload = JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  }
  if (token) h.authorization = `Bearer ${token}`;
  const res = await fetch(baseOf(srv) + path, { method, headers: h, body: payload });
  const text = await res.text();
  let parsed = null;
  try { parsed = text.length ? JSON.parse(text) : null; } catch { parsed = null; }
  return { status: res.status, body: parsed, text, headers: res.headers };
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
  return { ...r.body, password: PASSWORD };
}

/** Logs in one more device of an existing user; returns { user, device_id, token }. */
export async function newDevice(srv, user, device = 'dev') {
  const r = await login(srv, user.user ?? user, PASSWORD, device);
  if (r.status !== 200) throw new Error(`login ${user.user ?? user} → ${r.status} ${r.text}`);
  return { ...r.body, password: PASSWORD };
}

/** GET /metrics as text. */
export async function metricsText(srv) {
  const r = await fetch(baseOf(srv) + '/metrics');
  const t = await r.text();
  if (r.status !== 200) throw new Error(`/metrics → ${r.status} ${t}`);
  return t;
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

/** Current value of a metric sample (number), throws if absent. */
export async function metric(srv, sample) {
  const t = await metricsText(srv);
  const v = metricValue(t, sample);
  if (v === undefined) throw new Error(`metric ${sample} not found in /metrics:\n${t}`);
  return v;
}
