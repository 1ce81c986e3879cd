// sw: tern's service worker. It shows Web Push notifications (PROTOCOL section 8: the payload
// names the sender and, unless the operator enables previews, carries no text), focuses the
// app when one is clicked, and keeps a copy of the app shell so a reload works offline
// (history itself is in IndexedDB). The shell is fetched network-first, so an update on the
// server is seen on the next load.
const CACHE = 'tern-shell-v5';
const SHELL = ['./', 'index.html', 'app.css', 'icon.svg', 'manifest.webmanifest', 'js/main.js', 'js/app.js', 'js/login.js', 'js/client.js',
  'js/conn.js', 'js/db.js', 'js/api.js', 'js/util.js', 'js/media.js', 'js/notify.js', 'js/groups.js', 'js/groupui.js',
  'js/e2e.js', 'js/secure.js', 'js/safety.js', 'js/settings.js', 'js/drafts.js', 'js/actions.js', 'js/actionsui.js',
  'js/richtext.js', 'js/search.js', 'js/profiles.js', 'js/sound.js', 'js/mentionpick.js', 'vendor/vendor.js'];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).catch(() => {}).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (e) => {
  const req = e.request;
  const url = new URL(req.url);
  // Only the app's own static files; the API and media (with tokens) always go to the network.
  if (req.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/v1/') ||
      url.pathname === '/healthz' || url.pathname === '/metrics') return;
  e.respondWith((async () => {
    try {
      const res = await fetch(req);
      if (res.ok) {
        const copy = res.clone();
        caches.open(CACHE).then((c) => c.put(req, copy)).catch(() => {});
      }
      return res;
    } catch (err) {
      const hit = await caches.match(req, { ignoreSearch: true });
      if (hit) return hit;
      if (req.mode === 'navigate') {
        const shell = await caches.match('index.html');
        if (shell) return shell;
      }
      throw err;
    }
  })());
});

self.addEventListener('push', (e) => {
  let data = {};
  try {
    data = e.data ? e.data.json() : {};
  } catch {
    data = { body: e.data ? e.data.text() : '' };
  }
  const from = data.from || data.sender || '';
  const count = data.count || 1;
  // ternd's payload: {"type":"msg","from":"alice","group"?:"Trip","count":N,"preview"?:"text"}
  // (src/push/push.c). A group's is titled with its name; the line says who wrote. It names
  // the group but not its id, so a click opens the app, not that chat.
  const group = typeof data.group === 'string' ? data.group : '';
  const title = data.title || group || from || 'tern';
  let body = data.preview || data.body || (count > 1 ? `${count} new messages` : 'New message');
  if (group && from) body = `${from}: ${body}`;
  e.waitUntil((async () => {
    // Nothing to show when the app is open and focused: it shows the message itself. (A
    // push must still show something, but the server only pushes to devices without a live
    // connection, so this is rare.)
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    if (wins.some((w) => w.focused && w.visibilityState === 'visible')) return;
    const tag = group ? `tern:group:${group}` : from ? `tern:${from}` : 'tern';
    await self.registration.showNotification(title, { body, tag, icon: 'icon.svg', data: { peer: group ? '' : from } });
  })());
});

self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  const peer = e.notification.data && e.notification.data.peer;
  e.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of wins) {
      if (new URL(w.url).origin === self.location.origin) {
        await w.focus();
        if (peer) w.postMessage({ type: 'open', peer });
        return;
      }
    }
    await self.clients.openWindow(peer ? `./#chat=${encodeURIComponent(peer)}` : './');
  })());
});
