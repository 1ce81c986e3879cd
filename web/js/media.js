// media: images in the conversation. Thumbnails and originals are fetched with the Bearer
// token (an <img src> cannot send it) and kept in IndexedDB, because the server deletes a
// media object once every recipient device has fetched it; object URLs are cached per page.
import * as api from './api.js';

export class Media {
  constructor(client) {
    this.client = client;
    this.urls = new Map(); // blob key -> object URL
    this.loading = new Map(); // blob key -> promise of URL
  }

  async urlFor(key, fetcher) {
    if (this.urls.has(key)) return this.urls.get(key);
    if (this.loading.has(key)) return this.loading.get(key);
    const p = (async () => {
      let blob = await this.client.blob(key);
      if (!blob && fetcher) {
        blob = await fetcher();
        await this.client.saveBlob(key, blob);
      }
      if (!blob) return null;
      const url = URL.createObjectURL(blob);
      this.urls.set(key, url);
      return url;
    })();
    this.loading.set(key, p);
    try {
      return await p;
    } finally {
      this.loading.delete(key);
    }
  }

  /** The URL of what to show in the bubble: our own upload, else the server's thumbnail (for
   *  an encrypted image, the decrypted original: the server has no thumbnail of a blob). */
  thumb(m) {
    const md = m.media || {};
    if (md.local) return this.urlFor(md.local, null);
    if (!md.media_id) return Promise.resolve(null);
    if (md.key) return this.full(m);
    return this.urlFor(`thumb:${md.media_id}`, () => api.mediaBlob(this.client.session.token, md.media_id, true));
  }

  /** The full-size image: our own upload, an original fetched before, or fetched now. An
   *  encrypted one (PROTOCOL.md 11: key, iv and sha256 inside the message) is checked and
   *  decrypted here, and kept decrypted in this browser's storage like any other. */
  full(m) {
    const md = m.media || {};
    if (md.local) return this.urlFor(md.local, null);
    if (!md.media_id) return Promise.resolve(null);
    const token = this.client.session.token;
    if (md.key) {
      return this.urlFor(`full:${md.media_id}`, async () => {
        const blob = await api.mediaBlob(token, md.media_id, false);
        if (!this.client.secure) throw new Error('no E2E in this browser');
        const data = await this.client.secure.unseal(await blob.arrayBuffer(), md);
        return new Blob([data], { type: acceptable({ type: md.mime }) ? md.mime : 'application/octet-stream' });
      });
    }
    return this.urlFor(`full:${md.media_id}`, () => api.mediaBlob(token, md.media_id, false));
  }

  revokeAll() {
    for (const u of this.urls.values()) URL.revokeObjectURL(u);
    this.urls.clear();
  }
}

const ACCEPTED = ['image/jpeg', 'image/png', 'image/webp', 'image/gif'];

export function acceptable(file) {
  return file && ACCEPTED.includes(file.type);
}

export const ACCEPT_ATTR = ACCEPTED.join(',');

/** Width and height of an image blob, or null when the browser cannot decode it. */
export async function dimensions(blob) {
  try {
    const bmp = await createImageBitmap(blob);
    const d = { width: bmp.width, height: bmp.height };
    bmp.close();
    return d;
  } catch {
    return null;
  }
}

// What tern sends at most, as WhatsApp does: a bigger image is shrunk in the browser before the
// upload, so the server's own limits (media.max_dimension, media.max_pixels) are never what
// refuses a photo. 2560 px is sharper than a phone's screen and far under those defaults.
export const MAX_SIDE = 2560;
export const MAX_PIXELS = 2560 * 1920;

/** The image to upload and its size: the file itself when small enough, else a copy scaled
 *  to fit MAX_SIDE and MAX_PIXELS (PNG stays PNG for its transparency, the others become
 *  JPEG; an animated GIF keeps only its first frame, as a still). */
export function fitForUpload(file, dims) {
  return scaleToFit(file, dims, MAX_SIDE, MAX_PIXELS);
}

/** An image scaled down (never up) to fit maxSide and maxPixels: {blob, dims}. */
export async function scaleToFit(file, dims, maxSide, maxPixels) {
  const { width: w, height: h } = dims;
  const k = Math.min(1, maxSide / Math.max(w, h), Math.sqrt(maxPixels / (w * h)));
  if (k >= 1) return { blob: file, dims };
  try {
    const bmp = await createImageBitmap(file);
    const c = new OffscreenCanvas(Math.max(1, Math.round(w * k)), Math.max(1, Math.round(h * k)));
    const g = c.getContext('2d');
    g.imageSmoothingQuality = 'high';
    g.drawImage(bmp, 0, 0, c.width, c.height);
    bmp.close();
    const type = file.type === 'image/png' ? 'image/png' : 'image/jpeg';
    const blob = await c.convertToBlob(type === 'image/jpeg' ? { type, quality: 0.85 } : { type });
    return { blob, dims: { width: c.width, height: c.height } };
  } catch {
    return { blob: file, dims }; // no canvas here: the server decides
  }
}

/** A small JPEG of an image as base64, at most 8 KiB of it (PROTOCOL.md 11 "thumb"), or
 *  undefined when the browser cannot make one. */
export async function thumbOf(blob) {
  try {
    const bmp = await createImageBitmap(blob);
    for (const side of [64, 40]) {
      const k = Math.min(1, side / Math.max(bmp.width, bmp.height));
      const c = new OffscreenCanvas(Math.max(1, Math.round(bmp.width * k)), Math.max(1, Math.round(bmp.height * k)));
      c.getContext('2d').drawImage(bmp, 0, 0, c.width, c.height);
      const j = await c.convertToBlob({ type: 'image/jpeg', quality: 0.6 });
      const u = new Uint8Array(await j.arrayBuffer());
      let s = '';
      for (const x of u) s += String.fromCharCode(x);
      const b = btoa(s);
      if (b.length <= 8192) {
        bmp.close();
        return b;
      }
    }
    bmp.close();
  } catch { /* no decoder, no OffscreenCanvas */ }
  return undefined;
}
