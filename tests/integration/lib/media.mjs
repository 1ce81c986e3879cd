// Helpers for the media tests: images made at test time (PNG, with node's zlib), the committed
// JPEG/WebP/GIF samples (tests/media/samples, made by tests/media/make_samples.c), byte-exact
// HTTP requests, raw-socket uploads, and the media directories of a server's data dir.
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './server.mjs';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/**
 * An RGB PNG of w x h. fill: 'gradient' (compresses well), 'noise' (random: unique bytes,
 * hardly compressible). level: zlib level (0 = stored). declared: {width, height} written in
 * IHDR instead of the real size (a decompression bomb when larger).
 */
export function makePng(w, h, { fill = 'gradient', level = 6, declared } = {}) {
  const row = 1 + w * 3;
  const raw = fill === 'noise' ? randomBytes(row * h) : Buffer.alloc(row * h);
  for (let y = 0; y < h; y++) {
    raw[y * row] = 0; // filter: none
    if (fill !== 'noise') {
      for (let x = 0; x < w; x++) {
        const o = y * row + 1 + x * 3;
        raw[o] = (x * 255 / w) | 0;
        raw[o + 1] = (y * 255 / h) | 0;
        raw[o + 2] = (x % 64) * 4;
      }
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(declared?.width ?? w, 0);
  ihdr.writeUInt32BE(declared?.height ?? h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw, { level })), chunk('IEND', Buffer.alloc(0))]);
}

/** The committed samples: { jpeg, webp, gif } with their bytes and dimensions. */
export function samples() {
  const dir = path.join(REPO_ROOT, 'tests', 'media', 'samples');
  return {
    jpeg: { mime: 'image/jpeg', bytes: readFileSync(path.join(dir, 'sample.jpg')), width: 640, height: 480 },
    webp: { mime: 'image/webp', bytes: readFileSync(path.join(dir, 'sample.webp')), width: 500, height: 400 },
    gif: { mime: 'image/gif', bytes: readFileSync(path.join(dir, 'sample.gif')), width: 400, height: 300 },
  };
}

export const sha256 = (b) => createHash('sha256').update(b).digest('hex');

/** Width and height from a JPEG's SOF marker, or null. */
export function jpegSize(b) {
  if (b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const m = b[i + 1];
    if (m === 0xff) { i++; continue; }
    const len = b.readUInt16BE(i + 2);
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      return { height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
    }
    i += 2 + len;
  }
  return null;
}

/**
 * One HTTP request on a fresh connection, the body kept as bytes. Resolves with
 * { status, headers (plain object), body (Buffer), json (parsed or null) }.
 */
export function httpBytes(srv, method, urlPath, { token, headers = {}, body } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-length'] = body.length;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: srv.port, method, path: urlPath, headers: h, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const b = Buffer.concat(parts);
        let json = null;
        try { json = b.length ? JSON.parse(b.toString('utf8')) : null; } catch { json = null; }
        resolve({ status: res.statusCode, headers: res.headers, body: b, json });
      });
    });
    req.on('error', (e) => reject(new Error(`${method} ${urlPath}: ${e.message}`)));
    req.end(body);
  });
}

export const upload = (srv, token, bytes, mime, headers = {}) =>
  httpBytes(srv, 'POST', '/v1/media', { token, body: bytes, headers: mime ? { 'content-type': mime, ...headers } : headers });

export const getMedia = (srv, token, id, { thumb = false, headers } = {}) =>
  httpBytes(srv, 'GET', `/v1/media/${id}${thumb ? '/thumb' : ''}`, { token, headers });

/**
 * A raw TCP exchange: writes head (a string), then each of chunks (Buffers) with gapMs between
 * them (stopping early once the server answers or closes), and resolves with { text (latin1),
 * status, how ('end' | 'close' | 'timeout'), ms (until the answer started) }.
 */
export function rawUpload(srv, head, chunks = [], { gapMs = 0, timeoutMs = 10000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1');
    const parts = [];
    let done = false;
    let firstAt = 0;
    const t0 = Date.now();
    const finish = (how) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const text = Buffer.concat(parts).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, how, ms: firstAt ? firstAt - t0 : -1 });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('data', (d) => { if (!firstAt) firstAt = Date.now(); parts.push(d); });
    s.on('end', () => finish('end'));
    s.on('close', () => finish('close'));
    s.on('error', () => { /* a reset after the answer: keep what was read */ });
    s.on('connect', async () => {
      s.write(head);
      for (const c of chunks) {
        if (done || firstAt) break;
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
        if (done || firstAt) break;
        await new Promise((r) => s.write(c, () => r()));
      }
    });
  });
}

/** Files (relative paths) under <dataDir>/media/<sub>, recursively. */
export function mediaFiles(dataDir, sub) {
  const root = path.join(dataDir, 'media', sub);
  const out = [];
  const walk = (d, rel) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name), path.join(rel, e.name));
      else out.push(path.join(rel, e.name));
    }
  };
  walk(root, '');
  return out.sort();
}

/** Total bytes of the files under <dataDir>/media/objects. */
export function objectBytes(dataDir) {
  const root = path.join(dataDir, 'media', 'objects');
  return mediaFiles(dataDir, 'objects').reduce((n, f) => n + statSync(path.join(root, f)).size, 0);
}

/** The object files of one content (original and thumbnail) that exist. */
export function objectFilesOf(dataDir, sha) {
  const dir = path.join(dataDir, 'media', 'objects', sha.slice(0, 2));
  return [sha, `${sha}.thumb.jpg`].filter((f) => existsSync(path.join(dir, f)));
}

/** p-th percentile (0..100) of numbers. */
export function percentile(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
