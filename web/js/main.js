// main: start-up. A saved session goes straight to the chats (history is local, so they show
// at once, even offline); otherwise the login screen. Logout revokes the device on the server,
// deletes this user's local history and forgets the token.
import { renderLogin } from './login.js';
import { renderApp } from './app.js';
import { Client } from './client.js';
import { deleteDb } from './db.js';
import { dropDrafts } from './drafts.js';
import { dropSecure } from './secure.js';
import * as notify from './notify.js';
import * as api from './api.js';

const KEY = 'tern.session';
const root = document.getElementById('root');
let current = null; // {client, ui, session}

function savedSession() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (s && s.user && s.token && s.device_id) return s;
  } catch { /* corrupt: treat as logged out */ }
  return null;
}

async function start(session) {
  localStorage.setItem(KEY, JSON.stringify(session));
  const client = new Client(session);
  try {
    await client.start();
  } catch (e) {
    root.replaceChildren(Object.assign(document.createElement('p'), { className: 'splash', textContent: `tern cannot open its storage in this browser (${e && e.message}). Private windows of some browsers do not allow it.` }));
    return;
  }
  const ui = renderApp(root, client, { onLogout: (opts) => logout(opts) });
  current = { client, ui, session };
  notify.registerServiceWorker().then(() => notify.setupPush(session.token));
}

async function logout({ local = false, notice = '' } = {}) {
  const c = current;
  current = null;
  if (!c) return;
  c.client.stop();
  c.ui.destroy();
  localStorage.removeItem(KEY);
  if (!local) {
    await notify.teardownPush(c.session.token);
    try {
      await api.logout(c.session.token);
    } catch { /* offline or already gone: the device expires on the server by itself */ }
    await deleteDb(c.session.user);
    dropDrafts(c.session.user);
    await dropSecure(c.session); // this device's E2E keys: the server deleted its public ones
  }
  history.replaceState(null, '', location.pathname);
  renderLogin(root, start, notice);
}

// Another tab logged in or out: follow it.
addEventListener('storage', (e) => {
  if (e.key !== KEY) return;
  const s = savedSession();
  if (!s && current) logout({ local: true, notice: 'You were logged out in another window.' });
  else if (s && !current) start(s);
});

const s = savedSession();
if (s) start(s);
else renderLogin(root, start);
