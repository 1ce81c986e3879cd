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

/** Starts a conversation with peer from the chat list's + and waits for its header. */
export async function newChat(page, peer) {
  await page.click('#new-chat');
  await page.fill('#new-chat-user', peer);
  await page.click('#new-chat-go');
  await page.waitForFunction((p) => document.querySelector('#conv-title')?.textContent === p, peer);
}

/** Opens the existing conversation with peer from the chat list. */
export async function openChat(page, peer) {
  await page.click(`#chat-list button[data-peer="${peer}"]`);
  await page.waitForFunction((p) => document.querySelector('#conv-title')?.textContent === p, peer);
}
