// ui: what the browser tests do in the web client as a person would (log in, send, read the
// bubbles), shared by the test files.
import assert from 'node:assert/strict';
import { until } from './harness.mjs';

export const PASSWORD = 'correct horse battery';

/** Keeps a page's dialogs (dismissed: the client never opens one), script errors and CSP
 *  violations in rec.dialogs and rec.errors. */
export function watchPage(page, rec) {
  page.on('dialog', (d) => {
    rec.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => rec.errors.push(e.message));
  page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) rec.errors.push(m.text()); });
}

/** A new browser context with one page on the client: {context, page, dialogs, errors}. */
export async function openPage(browser, baseURL, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 }, baseURL, ...options });
  const page = await context.newPage();
  const rec = { context, page, dialogs: [], errors: [] };
  watchPage(page, rec);
  await page.goto('/');
  return rec;
}

export async function register(page, user) {
  await page.click('#login-switch');
  await page.fill('#username', user);
  await page.fill('#password', PASSWORD);
  await page.click('#login-submit');
  await page.waitForSelector('#me-name');
  assert.equal(await page.textContent('#me-name'), user);
}

export async function login(page, user) {
  await page.fill('#username', user);
  await page.fill('#password', PASSWORD);
  await page.click('#login-submit');
  await page.waitForSelector('#me-name');
}

export async function send(page, text) {
  await page.fill('#composer-text', text);
  await page.press('#composer-text', 'Enter');
}

/** The bubbles in the open conversation: [{dir, status, text}]. */
export function bubbles(page) {
  return page.$$eval('#messages .msg', (els) => els.map((e) => ({
    dir: e.classList.contains('out') ? 'out' : 'in',
    status: e.dataset.status,
    text: e.querySelector('.text')?.textContent ?? '',
  })));
}

export async function statusOf(page, text) {
  const all = await bubbles(page);
  const b = all.find((x) => x.text === text);
  return b ? b.status : null;
}

// A page is only "attended" (read receipts go out) when visible and focused.
export async function focus(page) {
  await page.bringToFront();
  await page.evaluate(() => window.dispatchEvent(new Event('focus')));
}

/** Keys only: types text into the message box (which must have focus), sends it with Enter,
 *  waits for its tick and checks that the bubble fits a screen `width` px wide. */
export async function sendByKeys(page, text, width) {
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-text');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
  await until('sent', async () => ['sent', 'delivered', 'read'].includes(await statusOf(page, text)));
  const right = await page.locator('#messages .msg.out', { hasText: text }).locator('.bubble').evaluate((e) => e.getBoundingClientRect().right);
  assert.ok(right <= width, `the bubble fits the screen (${right} px)`);
}

/** Sends a width x height PNG of one colour (made by the browser itself) with a caption, from
 *  the open conversation, and waits until the server took it (a refused upload turns the
 *  bubble "failed" with a toast). Returns the preview dialog's title. */
export async function sendImage(page, { width, height, colour, caption, name = 'image.png' }) {
  const png = await page.evaluate(async ([w, h, fill]) => {
    const c = new OffscreenCanvas(w, h);
    const g = c.getContext('2d');
    g.fillStyle = fill;
    g.fillRect(0, 0, w, h);
    const b = await c.convertToBlob({ type: 'image/png' });
    return [...new Uint8Array(await b.arrayBuffer())];
  }, [width, height, colour]);
  await page.setInputFiles('#file', { name, mimeType: 'image/png', buffer: Buffer.from(png) });
  await page.waitForSelector('#preview-dialog[open]');
  const title = await page.textContent('#pv-title');
  await page.fill('#preview-caption', caption);
  await page.click('#preview-send');
  const st = await until('image sent or refused', async () => {
    const s = await statusOf(page, caption);
    return s && s !== 'queued' ? s : null;
  }, 20000);
  assert.notEqual(st, 'failed', `upload refused: ${await page.textContent('#toasts')}`);
  return title;
}

/**
 * The open conversation's header names peer: as its text, or, once a display name replaced the
 * username there (PROTOCOL.md 15 profiles), as its title.
 */
const isTitled = (p) => {
  const t = document.querySelector('#conv-title');
  return !!t && (t.textContent === p || t.title === p);
};

/** Starts a conversation with peer from the chat list's + and waits for its header. */
export async function newChat(page, peer) {
  await page.click('#new-chat');
  await page.fill('#new-chat-user', peer);
  await page.click('#new-chat-go');
  await page.waitForFunction(isTitled, peer);
}

/** Opens the existing conversation with peer from the chat list. */
export async function openChat(page, peer) {
  await page.click(`#chat-list button[data-peer="${peer}"]`);
  await page.waitForFunction(isTitled, peer);
}

/** A user made over HTTP (no browser): {user, token}, for the other side of a conversation. */
export async function apiUser(baseURL, user) {
  const r = await fetch(`${baseURL}/v1/register`, { method: 'POST', body: JSON.stringify({ username: user, password: PASSWORD, device: 'test' }) });
  assert.equal(r.status, 201, `register ${user}`);
  return r.json();
}

/** An authenticated HTTP call of a test's own user: the JSON answer (null for 204), or throws. */
export async function apiCall(baseURL, token, method, path, body) {
  const r = await fetch(`${baseURL}${path}`, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw Object.assign(new Error(`${method} ${path}: ${r.status} ${await r.text()}`), { status: r.status });
  return r.status === 204 ? null : r.json();
}

/** Whether the page scrolls sideways (something wider than the screen). */
export function overflowsX(page) {
  return page.evaluate(() => document.documentElement.scrollWidth > innerWidth || document.body.scrollWidth > innerWidth);
}

/** The rectangle of the first element matching sel, as a plain object (null when none). */
export function rectOf(page, sel) {
  return page.evaluate((s) => {
    const e = document.querySelector(s);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
  }, sel);
}

export const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

/** The two sizes every issue-16 browser test runs at. */
export const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
export const DESKTOP = { viewport: { width: 1366, height: 768 } };

/** A plain WebSocket client of an HTTP-made user (apiUser): send(frame) resolves to its answer
 *  (sent or error); got holds every other frame; next(pred) waits for one. */
export async function wsClient(baseURL, token) {
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`${baseURL.replace(/^http/, 'ws')}/v1/ws`);
  const waiting = new Map();
  const got = [];
  await new Promise((resolve, reject) => {
    ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token })));
    ws.on('error', reject);
    ws.on('message', (data) => {
      const f = JSON.parse(data);
      if (f.type === 'ready') return resolve();
      if ((f.type === 'sent' || f.type === 'error') && waiting.has(f.id)) {
        waiting.get(f.id)(f);
        waiting.delete(f.id);
        return;
      }
      got.push(f);
      if (f.seq) ws.send(JSON.stringify({ type: 'ack', seq: f.seq }));
    });
  });
  let n = 0;
  return {
    got,
    send(frame) {
      const id = frame.id || `t-${Date.now()}-${n++}`;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        ws.send(JSON.stringify({ type: 'send', ...frame, id }));
      });
    },
    next(pred, what = 'a frame') {
      const have = got.find(pred);
      if (have) return Promise.resolve(have);
      return until(what, () => got.find(pred), 10000);
    },
    close() { ws.close(); },
  };
}
