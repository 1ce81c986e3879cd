// api: the HTTP half of PROTOCOL.md (sections 1, 2, 6, 7, 8, 10). Same origin, JSON bodies,
// errors as {"error":{"code","message"}} turned into ApiError.

export class ApiError extends Error {
  constructor(status, code, message, user) {
    super(message || code || `HTTP ${status}`);
    this.status = status; // 0: the network failed
    this.code = code;
    if (user) this.user = user; // the user an error is about (group create and add)
  }
}

async function errorOf(res) {
  let code = 'http_' + res.status;
  let message = `The server answered ${res.status}`;
  let user;
  try {
    const j = await res.json();
    if (j && j.error) ({ code, message, user } = j.error);
  } catch { /* not JSON */ }
  const e = new ApiError(res.status, code, message, typeof user === 'string' ? user : undefined);
  const ra = parseInt(res.headers.get('Retry-After') || '', 10);
  if (ra >= 0) e.retryAfter = ra; // seconds, on 429 and 503
  return e;
}

/** timeout (ms), when given, makes a request that takes longer fail as a network error. */
export async function call(method, path, { token, body, headers = {}, timeout = 0 } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const signal = timeout ? AbortSignal.timeout(timeout) : undefined;
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', signal });
  } catch (e) {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  return ct.includes('json') ? res.json() : res;
}

export const register = (username, password, device) => call('POST', '/v1/register', { body: { username, password, device } });
export const login = (username, password, device) => call('POST', '/v1/login', { body: { username, password, device } });
export const logout = (token) => call('POST', '/v1/logout', { token });
export const me = (token) => call('GET', '/v1/me', { token });
export const user = (token, name) => call('GET', `/v1/users/${encodeURIComponent(name)}`, { token });
export const vapidKey = () => call('GET', '/v1/push/vapid');
export const pushRegister = (token, sub) => call('PUT', '/v1/push', { token, body: { provider: 'webpush', ...sub } });
export const pushUnregister = (token) => call('DELETE', '/v1/push', { token });

// Groups (section 10). Each change answers the group object, except leaving (204).
const gpath = (id, rest = '') => `/v1/groups/${encodeURIComponent(id)}${rest}`;
export const createGroup = (token, body) => call('POST', '/v1/groups', { token, body });
export const groups = (token, after) => call('GET', `/v1/groups${after ? `?after=${encodeURIComponent(after)}` : ''}`, { token, timeout: 15000 });
export const group = (token, id) => call('GET', gpath(id), { token, timeout: 15000 });
export const patchGroup = (token, id, body) => call('PATCH', gpath(id), { token, body });
export const addMembers = (token, id, users) => call('POST', gpath(id, '/members'), { token, body: { users } });
export const removeMember = (token, id, user) => call('DELETE', gpath(id, `/members/${encodeURIComponent(user)}`), { token });
export const setAdmin = (token, id, user, on) => call(on ? 'PUT' : 'DELETE', gpath(id, `/admins/${encodeURIComponent(user)}`), { token });

// Mutes (PROTOCOL.md 15): a user, or a group as group/{id}; until is MS or null (forever).
const mpath = (peer) => (peer.group_id ? `/v1/mutes/group/${encodeURIComponent(peer.group_id)}` : `/v1/mutes/${encodeURIComponent(peer.user)}`);
export const mutes = (token) => call('GET', '/v1/mutes', { token, timeout: 15000 });
export const mute = (token, peer, until) => call('PUT', mpath(peer), { token, body: { until } });
export const unmute = (token, peer) => call('DELETE', mpath(peer), { token });

// Profiles (PROTOCOL.md 15): PATCH /v1/me {display_name, avatar}.
export const patchMe = (token, body) => call('PATCH', '/v1/me', { token, body });

/** GET of a media object (or its thumbnail) with the token: a Blob. */
export async function mediaBlob(token, mediaId, thumb) {
  let res;
  try {
    res = await fetch(`/v1/media/${encodeURIComponent(mediaId)}${thumb ? '/thumb' : ''}`, { headers: { Authorization: `Bearer ${token}` } });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server.');
  }
  if (!res.ok) throw await errorOf(res);
  return res.blob();
}

/** POST /v1/media with upload progress (fetch has none): resolves to the media object.
 *  onProgress(fraction); purpose 'avatar' for a profile photo (PROTOCOL 15); the returned
 *  promise has .abort(). */
export function uploadMedia(token, blob, onProgress, purpose = '') {
  const xhr = new XMLHttpRequest();
  const p = new Promise((resolve, reject) => {
    xhr.open('POST', purpose ? `/v1/media?purpose=${encodeURIComponent(purpose)}` : '/v1/media');
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', blob.type);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      if (xhr.status === 201 || xhr.status === 200) return resolve(xhr.response);
      const err = xhr.response && xhr.response.error;
      reject(new ApiError(xhr.status, err ? err.code : 'http_' + xhr.status, err ? err.message : `The server answered ${xhr.status}`));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'Cannot reach the server.'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'Upload cancelled.'));
    xhr.send(blob);
  });
  p.abort = () => xhr.abort();
  return p;
}
