// notify: desktop notifications while the tab is in the background (Notification API), and
// Web Push through the service worker when the server offers a VAPID key (PROTOCOL section 8).
import * as api from './api.js';
import { previewOf } from './client.js';

let swReg = null;

/** Registers web/sw.js (push, notification clicks, offline app shell). Never throws. */
export async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return null;
  try {
    swReg = await navigator.serviceWorker.register('sw.js', { scope: './' });
    return swReg;
  } catch (e) {
    console.warn('tern: service worker not registered', e);
    return null;
  }
}

export function supported() {
  return 'Notification' in window;
}

export function permission() {
  return supported() ? Notification.permission : 'denied';
}

/** Asks for permission (must run from a user gesture). Returns the new permission. */
export async function ask() {
  if (!supported()) return 'denied';
  try {
    return await Notification.requestPermission();
  } catch {
    return Notification.permission;
  }
}

/** Shows a notification for an incoming message when the page is not in view. title: the
 *  sender, or the group's name (the line then says who wrote). */
export function messageArrived(m, onClick, title = m.from) {
  if (document.visibilityState === 'visible' || permission() !== 'granted') return;
  const body = m.group_id ? `${m.from}: ${previewOf(m)}` : previewOf(m);
  const opts = { body: body.slice(0, 200), tag: `tern:${m.peer}`, renotify: true, icon: 'icon.svg', data: { peer: m.peer } };
  try {
    const n = new Notification(title, opts);
    n.onclick = () => {
      window.focus();
      onClick(m.peer);
      n.close();
    };
  } catch {
    // Android Chrome allows notifications only through the service worker.
    if (swReg) swReg.showNotification(title, opts).catch(() => {});
  }
}

function b64urlToBytes(s) {
  const pad = '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob((s + pad).replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Subscribes to Web Push when the server has a VAPID key (404 today: silently nothing). */
export async function setupPush(token) {
  if (!swReg || !('PushManager' in window) || permission() !== 'granted') return false;
  let key;
  try {
    key = (await api.vapidKey()).public_key;
  } catch {
    return false; // 404: Web Push is not configured on this server
  }
  if (!key) return false;
  try {
    let sub = await swReg.pushManager.getSubscription();
    const want = b64urlToBytes(key);
    const have = sub && sub.options && sub.options.applicationServerKey ? new Uint8Array(sub.options.applicationServerKey) : null;
    if (sub && (!have || have.length !== want.length || have.some((b, i) => b !== want[i]))) {
      await sub.unsubscribe(); // the server's key changed
      sub = null;
    }
    if (!sub) sub = await swReg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: want });
    await api.pushRegister(token, sub.toJSON());
    return true;
  } catch (e) {
    console.warn('tern: web push not set up', e);
    return false;
  }
}

/** On logout: drop the server's registration and the browser's subscription. */
export async function teardownPush(token) {
  try {
    await api.pushUnregister(token);
  } catch { /* not registered, or push not offered */ }
  try {
    const sub = swReg && (await swReg.pushManager.getSubscription());
    if (sub) await sub.unsubscribe();
  } catch { /* nothing to undo */ }
}
