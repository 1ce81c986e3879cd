// secure: what the web client does with e2e.js (PROTOCOL.md 11, docs/web.md "End-to-end
// encryption"), the network half: publishing and topping up keys, the devices a send must
// reach, devices_changed, decryption on arrival, decrypt_error and resends, attachments, safety
// numbers. The same rules as the CLI (docs/e2e.md "Sending"): sessions we have are used as they
// are, a user we know no device of is fetched once (GET /v1/keys/{user}), and the server's exact
// device check tells us of new and removed devices. A failed key fetch is an error that keeps
// the message in the outbox, never a reason to send it in plaintext.
//
// e2e.js and the bundle are loaded with a dynamic import, so the client still works (in
// plaintext) when web/vendor/vendor.js was not built.
import * as api from './api.js';

const NO_KEYS_TTL_MS = 60000; // a user without keys is asked again after this
const MAX_ROUNDS = 3; // devices_changed rounds per message

export async function openSecure(session) {
  let mod;
  try {
    mod = await import('./e2e.js');
  } catch (e) {
    console.warn('tern: end-to-end encryption is not available (web/vendor not built?)', e);
    return null;
  }
  const kv = await mod.IdbKV.open(session.user, session.device_id);
  const e = new mod.E2E(kv, session.user, session.device_id);
  await e.init();
  return new Secure(session, mod, e);
}

/** Logout: this device's keys go with it. */
export async function dropSecure(session) {
  try {
    const mod = await import('./e2e.js');
    await mod.IdbKV.drop(session.user, session.device_id);
  } catch { /* never opened */ }
}

export class Secure {
  constructor(session, mod, e) {
    this.session = session;
    this.token = session.token;
    this.me = session.user;
    this.mod = mod;
    this.e = e;
    this.enabled = true; // false once the server shows it has no key directory
    this.ready = false; // our keys are published
    this.noKeys = new Map(); // user -> when the directory listed no device for them
    this.rounds = new Map(); // client id -> devices_changed rounds
    this.onChange = null; // (user, device, change) when a known contact's keys change
  }

  call(method, path, body) {
    return api.call(method, path, { token: this.token, body, timeout: 15000 });
  }

  async put(body) {
    const { _ids, ...b } = body;
    await this.call('PUT', '/v1/keys', b);
    await this.e.published(body);
  }

  /** Publishes this device's keys (the first time) or tops up its one-time prekeys. Called at
   *  every 'ready'; errors are logged and tried again at the next one. */
  async publish() {
    if (!this.enabled) return;
    try {
      let st = null;
      if (this.e.meta.published) {
        try {
          st = await this.call('GET', '/v1/keys');
        } catch (err) {
          if (err.status !== 404) throw err;
          this.e.meta.published = false; // nothing there for this device: publish in full
        }
      }
      if (!this.e.meta.published) {
        try {
          await this.put(await this.e.keysBody({ full: true }));
        } catch (err) {
          if (err.status === 404 || err.status === 405) this.enabled = false; // no key directory
          throw err;
        }
      } else if (st && st.one_time_prekeys < this.mod.PREKEY_LOW) {
        await this.put(await this.e.keysBody({ full: false, count: this.mod.PREKEY_BATCH }));
      }
      this.ready = true;
    } catch (err) {
      if (this.enabled) console.warn('tern: keys not published', err);
    }
  }

  /** Sessions with every device the directory lists for a user; returns the change of each. */
  async fetchUser(user) {
    const r = await this.call('GET', `/v1/keys/${encodeURIComponent(user)}`);
    const devs = Array.isArray(r && r.devices) ? r.devices : [];
    for (const d of devs) {
      if (d.device_id === this.session.device_id) continue;
      try {
        const change = await this.e.addBundle(user, d);
        this.noteChange(user, d.device_id, change);
      } catch (err) {
        console.warn(`tern: a bundle of ${user} refused`, err);
      }
    }
    if (!devs.length) this.noKeys.set(user, Date.now());
    else this.noKeys.delete(user);
    return devs.length;
  }

  async fetchDevice(user, device) {
    const r = await this.call('GET', `/v1/keys/${encodeURIComponent(user)}/${encodeURIComponent(device)}`);
    const d = r && Array.isArray(r.devices) ? r.devices[0] : r;
    if (!d || !d.identity_key) return;
    const change = await this.e.addBundle(user, { ...d, device_id: d.device_id || device });
    this.noteChange(user, device, change);
  }

  noteChange(user, device, change) {
    if (user !== this.me && (change === 'new_device' || change === 'key_changed') && this.onChange) this.onChange(user, device, change);
  }

  /** Whether a user has devices with keys: sessions we have, else the directory (cached). */
  async capable(user) {
    if ((await this.e.devices(user)).length) return true;
    if (user === this.me) return false;
    const t = this.noKeys.get(user);
    if (t && Date.now() - t < NO_KEYS_TTL_MS) return false;
    return (await this.fetchUser(user)) > 0;
  }

  /** The users a send must reach: the peer, or the other members of a group. */
  async shouldEncrypt(users) {
    // Our own keys need not be published yet (a failed PUT is tried again at the next ready):
    // what a recipient needs is ours inside the prekey message.
    if (!this.enabled || !users.length) return false;
    for (const u of users) if (!(await this.capable(u))) return false;
    return true;
  }

  /** One ciphertext per device of the users and of our own other devices, for an inner object. */
  async ciphertexts(users, inner) {
    const out = [];
    const targets = [];
    for (const u of new Set([...users, this.me])) {
      for (const d of await this.e.devices(u)) if (!(u === this.me && d === this.session.device_id)) targets.push([u, d]);
    }
    for (const [u, d] of targets) {
      let c;
      try {
        c = await this.e.encrypt(u, d, inner);
      } catch (err) {
        // A session that cannot encrypt (damaged state): a fresh one from the directory, else
        // the device is left out and the server's devices_changed brings it back (bounded).
        console.warn(`tern: no session with ${u} ${d}`, err);
        await this.e.forget(u, d);
        try {
          await this.fetchDevice(u, d);
          c = await this.e.encrypt(u, d, inner);
        } catch {
          continue;
        }
      }
      out.push({ device_id: d, type: c.type, body: c.body });
    }
    return out;
  }

  /** The encrypted send frame for an outbox item, or null when it goes in plaintext. */
  async frame(it, users) {
    if (it.plain) return null;
    if (!(await this.shouldEncrypt(users))) return null;
    const inner = {};
    if (it.body) inner.body = it.body;
    if (it.media_e2e) inner.media = it.media_e2e;
    if (it.group_id) inner.group_id = it.group_id;
    if (it.resend_of) inner.resend_of = it.resend_of;
    // PROTOCOL 15: a reply's quote, a reaction and an edit go inside; the server cannot see
    // them, so reactions and edits are sent silent (no push for them).
    for (const k of ['reply_to', 'reaction', 'edit']) if (it[k]) inner[k] = it[k];
    const e2e = await this.ciphertexts(users, inner);
    const f = { type: 'send', id: it.id, e2e };
    if (it.reaction || it.edit) f.silent = true;
    if (it.mentions && it.mentions.length) f.mentions = it.mentions; // outside: the server pushes on them
    if (it.group_id) f.group_id = it.group_id;
    else f.to = it.to;
    if (it.media_e2e) f.media_ref = it.media_e2e.media_id;
    await this.e.keepSent(it.id, { inner, to: it.to, group_id: it.group_id, media_id: it.media_e2e && it.media_e2e.media_id });
    return f;
  }

  async noteSent(id, msgId) {
    if (await this.e.sent(id)) await this.e.kv.put(`sentid:${msgId}`, id);
  }

  /** devices_changed: forget the extra devices, fetch the missing ones. False after too many
   *  rounds for the same message. */
  async devicesChanged(f) {
    const n = (this.rounds.get(f.id) || 0) + 1;
    this.rounds.set(f.id, n);
    if (n > MAX_ROUNDS) return false;
    for (const x of Array.isArray(f.extra) ? f.extra : []) if (x && x.user && x.device_id) await this.e.forget(x.user, x.device_id);
    for (const x of Array.isArray(f.missing) ? f.missing : []) if (x && x.user && x.device_id) await this.fetchDevice(x.user, x.device_id);
    return true;
  }

  /** Decrypts an incoming e2e envelope: {inner} or {error}. */
  async decrypt(f) {
    const c = f.e2e;
    try {
      if (!c || typeof c.body !== 'string') throw new Error('no ciphertext for this device');
      const r = await this.e.decrypt(f.from, f.from_device, c.type, c.body);
      if (!r.inner) throw new Error('not a tern message');
      this.noteChange(f.from, f.from_device, r.change);
      return { inner: r.inner };
    } catch (err) {
      return { error: String((err && err.message) || err) };
    }
  }

  /** A decrypt_error for a message of ours: a new session with that device, and the inner
   *  object to send again ({inner, to | group_id}), or null when we no longer have it. */
  async recover(f) {
    const id = await this.e.kv.get(`sentid:${f.msg_id}`);
    const rec = id && (await this.e.sent(id));
    await this.e.forget(f.from, f.from_device);
    try {
      await this.fetchDevice(f.from, f.from_device);
    } catch (err) {
      console.warn('tern: no fresh bundle after a decrypt_error', err);
    }
    return rec || null;
  }

  /** The safety number with a user, as `tern safety` computes it: over every identity key the
   *  directory lists for each of the two users. */
  async safety(user) {
    const keysOf = async (u) => {
      const r = await this.call('GET', `/v1/keys/${encodeURIComponent(u)}`);
      return (r && Array.isArray(r.devices) ? r.devices : []).map((d) => d.identity_key);
    };
    const mine = await keysOf(this.me);
    const theirs = await keysOf(user);
    if (!mine.length || !theirs.length) return null;
    return this.mod.safetyNumber(this.me, mine, user, theirs);
  }

  seal(data) { return this.mod.seal(data); }
  unseal(blob, md) { return this.mod.unseal(blob, md); }
  qr(text) {
    const q = this.mod.qrcode(0, 'M');
    q.addData(text);
    q.make();
    return q;
  }
}
