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

  /** The URL of what to show in the bubble: our own upload, else the server's thumbnail. */
  thumb(m) {
    const md = m.media || {};
    if (md.local) return this.urlFor(md.local, null);
    if (!md.media_id) return Promise.resolve(null);
    return this.urlFor(`thumb:${md.media_id}`, () => api.mediaBlob(this.client.session.token, md.media_id, true));
  }

  /** The full-size image: our own upload, an original fetched before, or fetched now. */
  full(m) {
    const md = m.media || {};
    if (md.local) return this.urlFor(md.local, null);
    if (!md.media_id) return Promise.resolve(null);
    return this.urlFor(`full:${md.media_id}`, () => api.mediaBlob(this.client.session.token, md.media_id, false));
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
