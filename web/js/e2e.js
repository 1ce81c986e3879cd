// e2e: end-to-end encryption for the web client (PROTOCOL.md 11, docs/e2e.md), on the Signal
// protocol library @privacyresearch/libsignal-protocol-typescript (bundled into
// web/vendor/vendor.js by scripts/build-web-vendor.mjs). Glue only: every Signal operation is the
// library's, AES-256-GCM and SHA-256 are WebCrypto's, the safety number is the library's
// FingerprintGenerator. Independent of the DOM and of the network, so that node runs it against
// the C side (tests/integration/web_e2e.test.mjs).
//
// State is a key-value store (`kv`: get/put/del, async): IndexedDB in the browser (IdbKV), a Map
// under node (MemKV). Keys:
//   id                 {pub, priv, reg}: this device's identity key pair and registration id
//   spk:<id>           {keyId, keyPair, signature}: the signed prekey
//   pk:<id>            {keyPair}: a one-time prekey not used yet
//   meta               {nextPk, spkId, nextAddr, published: bool, pkPending: [ids not published]}
//   addr:<user>\n<dev> n: the local integer of a (tern user, tern device id) pair
//   addrn:<n>          {user, device}
//   devs:<user>        [tern device ids we have sessions with]
//   idk:<n>            the identity key (ArrayBuffer) seen for that device
//   sess:<n>           the library's session record
//   sent:<id>          {inner, at, to|group_id}: what we sent, to answer a decrypt_error
//
// Addresses: the library keys sessions by an address (name, int). We give it
// ('n' + n, n) where n is the local integer of the (user, device) pair, so no username (which
// may hold '.') is ever split from a string, and its per-name trust check is per device.
import { KeyHelper, SessionBuilder, SessionCipher, SignalProtocolAddress, FingerprintGenerator } from '../vendor/vendor.js';

const subtle = globalThis.crypto.subtle;
const PAD = 160; // the inner JSON is padded with spaces to a multiple of this (docs/e2e.md)
export const PREKEY_BATCH = 100;
export const PREKEY_LOW = 20;
const SENT_KEEP = 100;

// --------------------------------------------------------------------------------------------
// bytes

export function b64(buf) {
  const u = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
  return btoa(s);
}

export function unb64(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4) throw new Error('bad base64');
  const bin = atob(s);
  const u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return u.buffer;
}

const binToBuf = (s) => {
  const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i) & 0xff;
  return u.buffer;
};

const hex = (buf) => Array.from(new Uint8Array(buf), (x) => x.toString(16).padStart(2, '0')).join('');

function bytesEqual(a, b) {
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// --------------------------------------------------------------------------------------------
// the inner format (PROTOCOL.md 11 "What is inside")

const INNER_FIELDS = ['body', 'media', 'reply_to', 'reaction', 'edit', 'group_id', 'resend_of'];
const MEDIA_FIELDS = ['media_id', 'key', 'iv', 'sha256', 'mime', 'size', 'width', 'height', 'thumb'];

/** The padded UTF-8 plaintext of an inner object: {"v":1,...} with only the fields in use. */
export function encodeInner(inner) {
  const o = { v: 1 };
  for (const f of INNER_FIELDS) {
    if (inner[f] === undefined || inner[f] === null || inner[f] === '') continue;
    if (f === 'media') {
      const m = {};
      for (const k of MEDIA_FIELDS) if (inner.media[k] !== undefined && inner.media[k] !== null) m[k] = inner.media[k];
      o.media = m;
    } else o[f] = inner[f];
  }
  const bytes = new TextEncoder().encode(JSON.stringify(o));
  const len = Math.ceil((bytes.length + 1) / PAD) * PAD;
  const out = new Uint8Array(len).fill(0x20);
  out.set(bytes);
  return out;
}

/** The inner object of a decrypted plaintext, or null when it is not one. */
export function decodeInner(buf) {
  let o;
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf));
  } catch {
    return null;
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return null;
  const inner = { v: o.v };
  for (const f of ['body', 'reply_to', 'group_id', 'resend_of']) if (typeof o[f] === 'string') inner[f] = o[f];
  // PROTOCOL.md 15: "reaction":{"to","emoji"} ("" removes), "edit":{"of"}
  const r = o.reaction;
  if (r && typeof r === 'object' && typeof r.to === 'string') inner.reaction = { to: r.to, emoji: typeof r.emoji === 'string' ? r.emoji : '' };
  if (o.edit && typeof o.edit === 'object' && typeof o.edit.of === 'string') inner.edit = { of: o.edit.of };
  if (o.media && typeof o.media === 'object') {
    const m = {};
    for (const k of ['media_id', 'key', 'iv', 'sha256', 'mime', 'thumb']) if (typeof o.media[k] === 'string') m[k] = o.media[k];
    for (const k of ['size', 'width', 'height']) if (Number.isInteger(o.media[k])) m[k] = o.media[k];
    if (m.media_id) inner.media = m;
  }
  return inner;
}

// --------------------------------------------------------------------------------------------
// attachments: AES-256-GCM, the blob is ciphertext || 16-byte tag (WebCrypto's layout)

export async function seal(data) {
  const key = globalThis.crypto.getRandomValues(new Uint8Array(32));
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
  const k = await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt']);
  const blob = await subtle.encrypt({ name: 'AES-GCM', iv }, k, data);
  const sha256 = hex(await subtle.digest('SHA-256', blob));
  return { key: b64(key), iv: b64(iv), sha256, blob };
}

export async function unseal(blob, { key, iv, sha256 }) {
  if (sha256 && hex(await subtle.digest('SHA-256', blob)) !== String(sha256).toLowerCase()) throw new Error('the attachment does not match its digest');
  const kb = unb64(key);
  const ivb = unb64(iv);
  if (kb.byteLength !== 32 || ivb.byteLength !== 12) throw new Error('bad attachment key');
  const k = await subtle.importKey('raw', kb, 'AES-GCM', false, ['decrypt']);
  try {
    return await subtle.decrypt({ name: 'AES-GCM', iv: ivb }, k, blob);
  } catch {
    throw new Error('the attachment does not decrypt');
  }
}

// --------------------------------------------------------------------------------------------
// safety numbers

/** Signal's 60-digit numeric fingerprint (version 2 display, 5200 iterations of SHA-512) over
 *  each user's identity keys (base64, 33 bytes), each list sorted by byte value and joined, with
 *  the usernames as stable identifiers: what `tern safety` prints (docs/e2e.md).
 *
 *  The library's FingerprintGenerator computes exactly this, but on its pure-JS SHA-512, whose
 *  5200 chained rounds take tens of seconds in a browser (each round waits on a timer). So the
 *  same steps run here on WebCrypto's SHA-512: per user, hash = SHA-512(version 0 as 2 bytes ||
 *  keys || id || keys), then 5199 times hash = SHA-512(hash || keys); the first 30 bytes give six
 *  5-byte chunks, each mod 100000 as 5 digits; the two users' 30 digits sorted and joined.
 *  tests/integration/web_e2e.test.mjs checks it against the library's and the C side's. */
export async function safetyNumber(localUser, localKeys, remoteUser, remoteKeys) {
  const a = await displayPart(localUser, joinedKeys(localKeys));
  const b = await displayPart(remoteUser, joinedKeys(remoteKeys));
  return [a, b].sort().join('');
}

/** The same with the library's FingerprintGenerator (slow in browsers: for the tests). */
export async function librarySafetyNumber(localUser, localKeys, remoteUser, remoteKeys) {
  const fg = new FingerprintGenerator(5200);
  return fg.createFor(localUser, joinedKeys(localKeys).buffer, remoteUser, joinedKeys(remoteKeys).buffer);
}

function joinedKeys(keys) {
  const list = keys.map((k) => new Uint8Array(unb64(k))).sort(compareBytes);
  const out = new Uint8Array(list.reduce((n, k) => n + k.length, 0));
  let o = 0;
  for (const k of list) {
    out.set(k, o);
    o += k.length;
  }
  return out;
}

function cat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function displayPart(id, keys) {
  // The library encodes the identifier one byte per character (usernames are ASCII).
  const idb = Uint8Array.from(id, (ch) => ch.charCodeAt(0) & 0xff);
  let h = cat(new Uint8Array(2), keys, idb);
  for (let i = 0; i < 5200; i++) h = new Uint8Array(await subtle.digest('SHA-512', cat(h, keys)));
  let s = '';
  for (let off = 0; off < 30; off += 5) {
    const v = (h[off] * 2 ** 32 + h[off + 1] * 2 ** 24 + h[off + 2] * 2 ** 16 + h[off + 3] * 2 ** 8 + h[off + 4]) % 100000;
    s += String(v).padStart(5, '0');
  }
  return s;
}

export const groupDigits = (n) => n.match(/.{1,5}/g).join(' ');

// --------------------------------------------------------------------------------------------
// stores

export class MemKV {
  constructor() { this.m = new Map(); }
  async get(k) { return this.m.get(k); }
  async put(k, v) { this.m.set(k, v); }
  async del(k) { this.m.delete(k); }
}

/** A key-value store in its own IndexedDB database (one per login: a login is a new device). */
export class IdbKV {
  static name(user, device) { return `tern-e2e:${user}:${device}`; }
  static async open(user, device) {
    const req = indexedDB.open(IdbKV.name(user, device), 1);
    req.onupgradeneeded = () => req.result.createObjectStore('kv');
    const db = await new Promise((resolve, reject) => {
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    db.onversionchange = () => db.close();
    return new IdbKV(db);
  }
  static async drop(user, device) {
    await new Promise((resolve) => {
      const r = indexedDB.deleteDatabase(IdbKV.name(user, device));
      r.onsuccess = r.onerror = r.onblocked = () => resolve();
    });
  }
  constructor(db) { this.db = db; }
  op(mode, fn) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction('kv', mode);
      const r = fn(tx.objectStore('kv'));
      tx.oncomplete = () => resolve(r.result);
      tx.onabort = tx.onerror = () => reject(tx.error);
    });
  }
  get(k) { return this.op('readonly', (s) => s.get(k)); }
  put(k, v) { return this.op('readwrite', (s) => s.put(v, k)); }
  del(k) { return this.op('readwrite', (s) => s.delete(k)); }
  close() { this.db.close(); }
}

// --------------------------------------------------------------------------------------------
// the device's E2E state

export class E2E {
  /** kv: the store; user and deviceId: this login (tern's device id). */
  constructor(kv, user, deviceId) {
    this.kv = kv;
    this.user = user;
    this.deviceId = deviceId;
    this.meta = null;
    this.ident = null;
    this.lock = Promise.resolve(); // one operation at a time: ratchet steps never interleave
    this.store = this.storage();
  }

  /** Runs fn after every operation before it (the library's own lock is per address). */
  serial(fn) {
    const p = this.lock.then(fn);
    this.lock = p.catch(() => {});
    return p;
  }

  /** Loads the state, or makes a fresh identity (signed prekey 1, 100 one-time prekeys). */
  async init() {
    this.ident = await this.kv.get('id');
    this.meta = await this.kv.get('meta');
    if (this.ident && this.meta) return { fresh: false };
    const kp = await KeyHelper.generateIdentityKeyPair();
    let reg = 0;
    while (reg < 1 || reg > 16380) reg = KeyHelper.generateRegistrationId();
    this.ident = { pub: kp.pubKey, priv: kp.privKey, reg };
    const spk = await KeyHelper.generateSignedPreKey(kp, 1);
    const start = 1 + (globalThis.crypto.getRandomValues(new Uint32Array(1))[0] % 8000000);
    this.meta = { nextPk: start, spkId: 1, nextAddr: 1, published: false, pkPending: [] };
    await this.kv.put('id', this.ident);
    await this.kv.put('spk:1', spk);
    await this.newPrekeys(PREKEY_BATCH);
    return { fresh: true };
  }

  get identityKey() { return b64(this.ident.pub); }
  get registrationId() { return this.ident.reg; }

  async saveMeta() { await this.kv.put('meta', this.meta); }

  async newPrekeys(count) {
    for (let i = 0; i < count; i++) {
      let id = this.meta.nextPk++;
      if (id > 16777215) id = this.meta.nextPk = 1;
      const pk = await KeyHelper.generatePreKey(id);
      await this.kv.put(`pk:${id}`, { keyPair: pk.keyPair });
      this.meta.pkPending.push(id);
    }
    await this.saveMeta();
  }

  /** A PUT /v1/keys body: `full` with identity and signed prekey (the first publication), else
   *  `count` fresh one-time prekeys. Call published() once the server took it. */
  async keysBody({ full = !this.meta.published, count = PREKEY_BATCH } = {}) {
    return this.serial(async () => {
      if (!full) await this.newPrekeys(Math.min(count, PREKEY_BATCH));
      const body = {};
      if (full) {
        const spk = await this.kv.get(`spk:${this.meta.spkId}`);
        body.identity_key = b64(this.ident.pub);
        body.registration_id = this.ident.reg;
        body.signed_prekey = { key_id: spk.keyId, public_key: b64(spk.keyPair.pubKey), signature: b64(spk.signature) };
      }
      const ids = this.meta.pkPending.slice(0, PREKEY_BATCH);
      body.one_time_prekeys = [];
      for (const id of ids) {
        const pk = await this.kv.get(`pk:${id}`);
        if (pk) body.one_time_prekeys.push({ key_id: id, public_key: b64(pk.keyPair.pubKey) });
      }
      body._ids = ids;
      return body;
    });
  }

  async published(body) {
    return this.serial(async () => {
      const sent = new Set(body._ids || []);
      this.meta.pkPending = this.meta.pkPending.filter((id) => !sent.has(id));
      if (body.identity_key) this.meta.published = true;
      await this.saveMeta();
    });
  }

  // ------------------------------------------------------------------------------------------
  // addresses

  async addrOf(user, device, create = true) {
    const k = `addr:${user}\n${device}`;
    let n = await this.kv.get(k);
    if (n === undefined && create) {
      n = this.meta.nextAddr++;
      await this.saveMeta();
      await this.kv.put(k, n);
      await this.kv.put(`addrn:${n}`, { user, device });
    }
    return n;
  }

  address(n) { return new SignalProtocolAddress(`n${n}`, n); }

  /** The tern device ids of `user` we have sessions with. */
  async devices(user) { return (await this.kv.get(`devs:${user}`)) || []; }

  async noteDevice(user, device) {
    const d = await this.devices(user);
    if (!d.includes(device)) {
      d.push(device);
      await this.kv.put(`devs:${user}`, d);
    }
  }

  /** Compares a device's identity key with what we knew: 'first' (no device of the user known),
   *  'new_device', 'key_changed' or 'same'. */
  async changeFor(user, device, key) {
    const devs = await this.devices(user);
    if (!devs.includes(device)) return devs.length ? 'new_device' : 'first';
    const n = await this.addrOf(user, device, false);
    const old = n !== undefined ? await this.kv.get(`idk:${n}`) : undefined;
    if (!old) return 'new_device';
    return bytesEqual(old, key) ? 'same' : 'key_changed';
  }

  // ------------------------------------------------------------------------------------------
  // sessions

  /** Builds a session from one device entry of GET /v1/keys/{user}. Returns the change. */
  async addBundle(user, dev) {
    return this.serial(async () => {
      const idk = unb64(dev.identity_key);
      const change = await this.changeFor(user, dev.device_id, idk);
      const n = await this.addrOf(user, dev.device_id);
      if (change === 'key_changed') await this.kv.del(`sess:${n}`);
      const device = {
        identityKey: idk,
        registrationId: dev.registration_id,
        signedPreKey: { keyId: dev.signed_prekey.key_id, publicKey: unb64(dev.signed_prekey.public_key), signature: unb64(dev.signed_prekey.signature) },
      };
      if (dev.one_time_prekey) device.preKey = { keyId: dev.one_time_prekey.key_id, publicKey: unb64(dev.one_time_prekey.public_key) };
      await new SessionBuilder(this.store, this.address(n)).processPreKey(device);
      await this.kv.put(`idk:${n}`, idk);
      await this.noteDevice(user, dev.device_id);
      return change;
    });
  }

  async hasSession(user, device) {
    const n = await this.addrOf(user, device, false);
    if (n === undefined) return false;
    return new SessionCipher(this.store, this.address(n)).hasOpenSession();
  }

  /** Drops a device: its session, its identity key, and its place in the user's list. */
  async forget(user, device) {
    return this.serial(async () => {
      const n = await this.addrOf(user, device, false);
      if (n !== undefined) {
        await this.kv.del(`sess:${n}`);
        await this.kv.del(`idk:${n}`);
      }
      const d = (await this.devices(user)).filter((x) => x !== device);
      await this.kv.put(`devs:${user}`, d);
    });
  }

  /** Encrypts an inner object (or, with raw, bytes as they are) for one device. */
  async encrypt(user, device, inner, raw = null) {
    return this.serial(async () => {
      const n = await this.addrOf(user, device, false);
      if (n === undefined) throw new Error(`no session with ${user} ${device}`);
      const pt = raw || encodeInner(inner);
      const c = await new SessionCipher(this.store, this.address(n)).encrypt(pt.buffer.slice(pt.byteOffset, pt.byteOffset + pt.byteLength));
      return { type: c.type === 3 ? 'prekey' : 'message', body: b64(binToBuf(c.body)) };
    });
  }

  /** Decrypts one ciphertext from a device: {inner (null when not an inner object), plaintext,
   *  change}. Throws when it cannot. */
  async decrypt(user, device, type, body) {
    return this.serial(async () => {
      const buf = unb64(body);
      let change = 'same';
      const n = await this.addrOf(user, device, type === 'prekey');
      if (n === undefined) throw new Error('no session with that device');
      const cipher = new SessionCipher(this.store, this.address(n));
      let pt;
      if (type === 'prekey') {
        const before = await this.kv.get(`idk:${n}`);
        pt = await cipher.decryptPreKeyWhisperMessage(buf, 'binary');
        const after = await this.kv.get(`idk:${n}`);
        const devs = await this.devices(user);
        if (!devs.includes(device)) change = devs.length ? 'new_device' : 'first';
        else if (before && after && !bytesEqual(before, after)) change = 'key_changed';
        await this.noteDevice(user, device);
      } else if (type === 'message') {
        pt = await cipher.decryptWhisperMessage(buf, 'binary');
      } else throw new Error('unknown ciphertext type');
      return { inner: decodeInner(pt), plaintext: pt, change };
    });
  }

  /** The identity keys (base64) of our sessions with a user's devices. */
  async identityKeys(user) {
    const out = [];
    for (const d of await this.devices(user)) {
      const n = await this.addrOf(user, d, false);
      const k = n !== undefined ? await this.kv.get(`idk:${n}`) : undefined;
      if (k) out.push(b64(k));
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // what we sent, for resends after a decrypt_error

  async keepSent(id, rec) {
    await this.kv.put(`sent:${id}`, { ...rec, at: Date.now() });
    const list = (await this.kv.get('sentlist')) || [];
    list.push(id);
    while (list.length > SENT_KEEP) await this.kv.del(`sent:${list.shift()}`);
    await this.kv.put('sentlist', list);
  }

  sent(id) { return this.kv.get(`sent:${id}`); }

  // ------------------------------------------------------------------------------------------
  // the library's storage interface

  storage() {
    const kv = this.kv;
    const self = this;
    return {
      async getIdentityKeyPair() { return { pubKey: self.ident.pub, privKey: self.ident.priv }; },
      async getLocalRegistrationId() { return self.ident.reg; },
      // Trust on first use; a change is shown to the user (changeFor), as Signal's clients do.
      async isTrustedIdentity() { return true; },
      async saveIdentity(encoded, key) {
        const n = Number(encoded.slice(encoded.lastIndexOf('.') + 1));
        const old = await kv.get(`idk:${n}`);
        await kv.put(`idk:${n}`, key);
        return !!old && !bytesEqual(old, key);
      },
      async loadPreKey(id) { const r = await kv.get(`pk:${id}`); return r ? r.keyPair : undefined; },
      async storePreKey(id, keyPair) { await kv.put(`pk:${id}`, { keyPair }); },
      async removePreKey(id) { await kv.del(`pk:${id}`); },
      async loadSignedPreKey(id) { const r = await kv.get(`spk:${id}`); return r ? r.keyPair : undefined; },
      async storeSignedPreKey(id, keyPair) { await kv.put(`spk:${id}`, { keyId: Number(id), keyPair }); },
      async removeSignedPreKey(id) { await kv.del(`spk:${id}`); },
      async loadSession(encoded) { return kv.get(`sess:${Number(encoded.slice(encoded.lastIndexOf('.') + 1))}`); },
      async storeSession(encoded, record) { await kv.put(`sess:${Number(encoded.slice(encoded.lastIndexOf('.') + 1))}`, record); },
    };
  }
}

export { qrcode } from '../vendor/vendor.js';
