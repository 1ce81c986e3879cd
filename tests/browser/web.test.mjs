// The web client in a real browser (issue 5): Debian's chromium, headless, driven by
// playwright-core against a spawned ternd, with two browser contexts as alice and bob.
// The tests run in order and share one server: each step builds on the previous one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { serverAndBrowser, screenshot, until } from './lib/harness.mjs';
import { PASSWORD, watchPage, openPage, register, login, send, sendByKeys, sendImage, bubbles, statusOf, focus, newChat, openChat } from './lib/ui.mjs';

const env = serverAndBrowser();
const ctx = {}; // name -> {context, page, dialogs: [], errors: []}

async function openAs(name) {
  ctx[name] = await openPage(env.browser, env.server.url);
  return ctx[name];
}

async function headerStatus(page) {
  return page.textContent('#conv-status');
}


test('serves the client with CSP, nosniff, ETag and gzip', async () => {
  const res = await fetch(`${env.server.url}/`, { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/html/);
  assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('content-encoding'), 'gzip');
  const etag = res.headers.get('etag');
  assert.ok(etag);
  await res.text();
  const again = await fetch(`${env.server.url}/`, { headers: { 'Accept-Encoding': 'gzip', 'If-None-Match': etag } });
  assert.equal(again.status, 304);
  const js = await fetch(`${env.server.url}/js/main.js`);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  await js.text();
  const api = await fetch(`${env.server.url}/healthz`);
  assert.deepEqual(await api.json(), { status: 'ok' });
  const trav = await fetch(`${env.server.url}/js/%2e%2e/%2e%2e/CMakeLists.txt`);
  assert.equal(trav.status, 404);
  await trav.text();
});

test('register both; alice messages bob while he is offline; bob logs in and sees it', async () => {
  const { page: bob } = await openAs('bob');
  await register(bob, 'bob');
  // bob leaves: logging out deletes his only device, so he is offline with no device at all
  await bob.click('#logout');
  await bob.click('#logout-confirm');
  await bob.waitForSelector('#login-submit');

  const { page: alice } = await openAs('alice');
  await register(alice, 'alice');
  await newChat(alice, 'bob');
  await send(alice, 'Hi Bob, are you there?');
  // one tick: durable on the server, not delivered
  await until('sent tick', async () => (await statusOf(alice, 'Hi Bob, are you there?')) === 'sent');

  await login(bob, 'bob');
  const chat = bob.locator('#chat-list button[data-peer="alice"]');
  await chat.waitFor();
  assert.equal(await chat.locator('.badge').textContent(), '1');
  assert.match(await chat.locator('.preview-text').textContent(), /Hi Bob, are you there\?/);
});

test("alice's ticks go ✓ → ✓✓ → blue", async () => {
  const { page: alice } = ctx.alice;
  const { page: bob } = ctx.bob;
  // bob's device has stored and acked the message: delivered
  await until('delivered', async () => (await statusOf(alice, 'Hi Bob, are you there?')) === 'delivered');
  assert.equal(await alice.getAttribute('#messages .msg.out .ticks', 'aria-label'), 'Delivered');
  // bob opens the conversation with the window focused: read (blue)
  await focus(bob);
  await openChat(bob, 'alice');
  await until('bob sees the message', async () => JSON.stringify((await bubbles(bob)).map((b) => [b.dir, b.text])) === JSON.stringify([['in', 'Hi Bob, are you there?']]));
  await until('read', async () => (await statusOf(alice, 'Hi Bob, are you there?')) === 'read');
  assert.equal(await alice.getAttribute('#messages .msg.out .ticks', 'aria-label'), 'Read');
  const color = await alice.$eval('#messages .msg.out .ticks', (e) => getComputedStyle(e).color);
  assert.equal(color, 'rgb(10, 124, 191)'); // the blue of read ticks
  await until('unread badge gone', async () => (await bob.locator('#chat-list button[data-peer="alice"] .badge').count()) === 0);

  // a live one: ✓✓ then blue at once, since bob is looking
  await focus(bob);
  await send(bob, 'Yes! Here.');
  await until('alice gets it', async () => (await statusOf(alice, 'Yes! Here.')) !== null);
  await focus(alice);
  await until('bob sees read', async () => (await statusOf(bob, 'Yes! Here.')) === 'read');
});

test('"typing…" and "online" / "last seen" in the header', async () => {
  const { page: alice } = ctx.alice;
  const { page: bob } = ctx.bob;
  await until('bob online', async () => (await headerStatus(alice)) === 'online');
  await focus(bob);
  await bob.click('#composer-text');
  await bob.keyboard.type('Just got back', { delay: 20 });
  await until('typing… at alice', async () => (await headerStatus(alice)) === 'typing…');
  await bob.keyboard.type(' from the climbing gym. Saturday still on?');
  await bob.press('#composer-text', 'Enter');
  await until('typing cleared by the message', async () => (await headerStatus(alice)) === 'online');
  await until('message shown', async () => (await statusOf(alice, 'Just got back from the climbing gym. Saturday still on?')) !== null);
  await focus(alice);
  await send(alice, 'Saturday works. 10:00 at the usual place?');
  await until('read by bob', async () => (await statusOf(alice, 'Saturday works. 10:00 at the usual place?')) === 'read');
  // bob starts an answer: alice sees typing…, and stops: it goes away ("paused" after 4 s)
  await focus(bob);
  await bob.click('#composer-text');
  await bob.keyboard.type('Perfect, I will', { delay: 20 });
  await until('typing… again', async () => (await headerStatus(alice)) === 'typing…');
  await screenshot(alice, 'conversation.png');
  await until('paused', async () => (await headerStatus(alice)) === 'online', 12000);
  await bob.fill('#composer-text', '');

  // bob goes away (closes the tab): last seen today
  await bob.close();
  await until('last seen', async () => /^last seen today at \d\d:\d\d$/.test(await headerStatus(alice)));
  ctx.bob.page = await ctx.bob.context.newPage();
  watchPage(ctx.bob.page, ctx.bob);
  await ctx.bob.page.goto('/#chat=alice');
  await until('online again', async () => (await headerStatus(alice)) === 'online');
});

test('an image is sent and its thumbnail shown', async () => {
  const { page: alice } = ctx.alice;
  const { page: bob } = ctx.bob;
  // a 64x48 PNG made by the browser itself; a refused upload would turn the bubble "failed"
  await sendImage(alice, { width: 64, height: 48, colour: '#00796b', caption: 'a green square', name: 'square.png' });
  await until('thumbnail at bob', () => bob.$eval('#messages .msg.in.has-media img.thumb', (img) => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:')), 20000);
  await bob.click('#messages .msg.in.has-media .thumb-btn');
  await until('full size', () => bob.$eval('#viewer .viewer-img', (img) => img.complete && img.naturalWidth === 64));
  await bob.keyboard.press('Escape');
});

test('a reload keeps history', async () => {
  const { page: alice } = ctx.alice;
  const before = await bubbles(alice);
  assert.ok(before.length >= 3);
  await alice.reload();
  await alice.waitForSelector('#me-name');
  // the open conversation comes back from IndexedDB (its hash is in the URL), ticks included
  await until('history back', async () => JSON.stringify(await bubbles(alice)) === JSON.stringify(before));
  const list = await alice.$$eval('#chat-list button.chat', (els) => els.map((e) => e.dataset.peer));
  assert.deepEqual(list, ['bob']);
});

test('a message sent while offline goes out once on reconnect', async () => {
  const { page: alice, context } = ctx.alice;
  const bob = ctx.bob.page;
  await focus(alice);
  await openChat(alice, 'bob');
  await until('connected', async () => (await alice.isHidden('#conn-bar')));
  await context.setOffline(true);
  try {
    await until('connecting bar', async () => (await alice.isVisible('#conn-bar')) && /Connecting…/.test(await alice.textContent('#conn-bar')));
    await send(alice, 'sent while offline');
    await send(alice, 'and a second one');
    await until('both queued', async () => (await statusOf(alice, 'sent while offline')) === 'queued' && (await statusOf(alice, 'and a second one')) === 'queued');
    assert.equal(await alice.getAttribute('#messages .msg.out:last-child .ticks', 'aria-label'), 'Pending');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await statusOf(alice, 'sent while offline'), 'queued');
  } finally {
    await context.setOffline(false);
  }
  await until('sent after reconnect', async () => (await statusOf(alice, 'and a second one')) !== 'queued', 20000);
  await until('bar gone', async () => alice.isHidden('#conn-bar'));
  await focus(bob);
  await until('bob has both, in order', async () => {
    const t = (await bubbles(bob)).map((b) => b.text);
    return t.indexOf('sent while offline') >= 0 && t.indexOf('and a second one') > t.indexOf('sent while offline');
  }, 20000);
  // a reconnect more: the outbox is empty, nothing goes again
  await context.setOffline(true);
  try {
    await until('offline', async () => alice.isVisible('#conn-bar'));
  } finally {
    await context.setOffline(false);
  }
  await until('online', async () => alice.isHidden('#conn-bar'), 20000);
  await new Promise((r) => setTimeout(r, 1000));
  const t = (await bubbles(bob)).map((b) => b.text);
  assert.equal(t.filter((x) => x === 'sent while offline').length, 1);
  assert.equal(t.filter((x) => x === 'and a second one').length, 1);
  const a = (await bubbles(alice)).map((b) => b.text);
  assert.equal(a.filter((x) => x === 'sent while offline').length, 1);
});

test('a message of <img src=x onerror=alert(1)> renders as text', async () => {
  const { page: alice } = ctx.alice;
  const { page: bob } = ctx.bob;
  const evil = '<img src=x onerror=alert(1)>';
  await focus(alice);
  await send(alice, evil);
  await until('bob gets it', async () => (await bubbles(bob)).some((b) => b.text === evil));
  await bob.reload(); // and once more from IndexedDB
  await until('after reload', async () => (await bubbles(bob)).some((b) => b.text === evil));
  for (const p of [alice, bob]) {
    assert.equal(await p.locator('#messages img:not(.thumb)').count(), 0);
    assert.equal(await p.locator('#chat-list img').count(), 0);
  }
  assert.match(await bob.textContent('#chat-list button[data-peer="alice"] .preview-text'), /<img src=x onerror=alert\(1\)>/);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(ctx.alice.dialogs, []);
  assert.deepEqual(ctx.bob.dialogs, []);
});

test('chat list with several conversations (screenshot)', async () => {
  const { page: alice } = ctx.alice;
  // carol talks to alice from a plain WebSocket client, as any other client would
  const reg = await fetch(`${env.server.url}/v1/register`, { method: 'POST', body: JSON.stringify({ username: 'carol', password: PASSWORD }) });
  assert.equal(reg.status, 201);
  const { token } = await reg.json();
  const ws = new WebSocket(`ws://127.0.0.1:${env.server.port}/v1/ws`);
  const sent = [];
  await new Promise((resolve, reject) => {
    ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token })));
    ws.on('message', (data) => {
      const f = JSON.parse(data);
      if (f.type === 'ready') {
        ws.send(JSON.stringify({ type: 'send', id: 'c1', to: 'alice', body: 'Are you coming to the book club tonight?' }));
        ws.send(JSON.stringify({ type: 'send', id: 'c2', to: 'alice', body: 'I can bring the snacks.' }));
      } else if (f.type === 'sent') {
        sent.push(f.id);
        if (sent.length === 2) resolve();
      } else if (f.type === 'error') reject(new Error(JSON.stringify(f)));
    });
    ws.on('error', reject);
  });
  const carol = alice.locator('#chat-list button[data-peer="carol"]');
  await until('carol in the list', async () => (await carol.count()) === 1 && (await carol.locator('.badge').textContent()) === '2');
  const order = await alice.$$eval('#chat-list button.chat', (els) => els.map((e) => e.dataset.peer));
  assert.deepEqual(order, ['carol', 'bob']); // sorted by last message
  await screenshot(alice, 'chat-list.png');
  ws.close();
});

test('phone width, keyboard only: log in, new chat, send, back to the list', async () => {
  const context = await env.browser.newContext({ viewport: { width: 390, height: 760 }, baseURL: env.server.url, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('/');
  await page.waitForSelector('#username');
  // the username field has focus on load; everything below is keys only
  assert.equal(await page.evaluate(() => document.activeElement.id), 'username');
  await page.keyboard.type('carol');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#me-name');
  assert.ok(await page.isVisible('#chat-list'));
  assert.ok(await page.isHidden('#conv'), 'one pane at a time');
  // the keyboard starts on the chat screen (issue 16), else New chat is a few Tabs away
  const focusable = [await page.evaluate(() => document.activeElement.id)];
  for (let i = 0; i < 6 && !focusable.includes('new-chat'); i++) {
    await page.keyboard.press('Tab');
    focusable.push(await page.evaluate(() => document.activeElement.id));
  }
  assert.ok(focusable.includes('new-chat'), `tab order: ${focusable}`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#new-chat-dialog[open]');
  await page.keyboard.type('alice');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#conv-title')?.textContent === 'alice');
  assert.ok(await page.isHidden('#chat-list'), 'the conversation takes the whole width');
  assert.ok(await page.isVisible('#back'));
  await sendByKeys(page, 'Typed on a phone, with keys only', 390);
  await screenshot(page, 'phone.png');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#chat-list button[data-peer="alice"]');
  assert.ok(await page.isVisible('#chat-list'));
  // The button existed before the conversation opened, so the wait above can return before
  // the list is refreshed and focus moved to it (asynchronously, after IndexedDB answers).
  await page.waitForFunction(() => document.activeElement?.dataset?.peer === 'alice', null, { timeout: 5000 })
    .catch(() => {});
  assert.equal(await page.evaluate(() => document.activeElement.dataset.peer), 'alice', 'focus returns to the chat');
  assert.deepEqual(errors, []);
  await context.close();
});

test('no script errors and no CSP violations', () => {
  assert.deepEqual(ctx.alice.errors, []);
  assert.deepEqual(ctx.bob.errors, []);
});
