// Settings in the web client (issue 14, PROTOCOL.md section 14), through the UI in real
// browsers: blocking from a conversation's menu and from Settings, privacy (last seen, read
// receipts), linked devices, password change and account deletion. alice and bob in two
// browser contexts; the tests run in order and share one server.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, launchBrowser, screenshot, until } from './lib/harness.mjs';
import { PASSWORD, openPage, register, login, send, bubbles, statusOf, focus, newChat, openChat } from './lib/ui.mjs';

const env = serverAndBrowser();
const ctx = {}; // name -> {context, page, dialogs: [], errors: []}
const NEW_PASSWORD = 'a brand new secret';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// alice's second device and carol run in a browser of their own, as other devices would.
// Logging out another device from Linked devices is settings-devices.test.mjs.
let other = null;
async function otherBrowser() {
  if (!other) other = await launchBrowser();
  return other;
}
after(async () => { if (other) await other.close(); });

async function openAs(name, options, browser = env.browser) {
  ctx[name] = await openPage(browser, env.server.url, options);
  return ctx[name];
}

async function openSettings(page) {
  await page.click('#settings');
  await page.waitForSelector('#settings-dialog[open]');
}

async function closeSettings(page) {
  await page.click('#settings-close');
  await page.waitForSelector('#settings-dialog', { state: 'hidden' });
}

const texts = async (page) => (await bubbles(page)).map((b) => b.text);
const visible = (page, sel) => page.isVisible(sel);

async function blockedListed(page) {
  return page.$$eval('#blocked-list li', (els) => els.map((e) => e.dataset.user));
}

test('alice and bob register and write to each other', async () => {
  const { page: alice } = await openAs('alice');
  await register(alice, 'alice');
  const { page: bob } = await openAs('bob');
  await register(bob, 'bob');
  await newChat(alice, 'bob');
  await send(alice, 'hi bob');
  await bob.waitForSelector('#chat-list button[data-peer="alice"]');
  await openChat(bob, 'alice');
  await send(bob, 'hello alice');
  await until('alice has bob\'s message', async () => (await texts(alice)).includes('hello alice'));
  // the menu is there for a 1:1 chat
  assert.ok(await visible(alice, '#conv-menu'));
});

test('blocking from the conversation menu: bob\'s messages do not arrive; unblocking lets them through again', async () => {
  const alice = ctx.alice.page;
  const bob = ctx.bob.page;
  await until('bob sees alice online', async () => (await bob.textContent('#conv-status')) === 'online');
  await alice.click('#conv-menu');
  assert.equal(await alice.textContent('#conv-block'), 'Block bob');
  await alice.click('#conv-block');
  await alice.waitForSelector('#confirm-dialog[open]');
  await alice.click('#confirm-ok');
  await alice.waitForSelector('#blocked-bar', { state: 'visible' });
  assert.match(await alice.textContent('#blocked-bar'), /^You blocked this contact\. Unblock$/);
  assert.equal(await visible(alice, '#composer'), false, 'the message box gives way to the blocked line');
  await screenshot(alice, 'blocked-conversation.png');
  // bob sees alice as never online (the server's presence at the block)
  await until('bob no longer sees alice online', async () => (await bob.textContent('#conv-status')) === '');

  await send(bob, 'are you there?');
  await until('bob\'s message is sent', async () => (await statusOf(bob, 'are you there?')) === 'sent');
  await sleep(1500);
  assert.equal(await statusOf(bob, 'are you there?'), 'sent', 'never ✓✓');
  assert.ok(!(await texts(alice)).includes('are you there?'), 'nothing reaches alice');

  // the bar's Unblock brings the message box back
  await alice.click('#blocked-unblock');
  await alice.waitForSelector('#composer', { state: 'visible' });
  assert.equal(await visible(alice, '#blocked-bar'), false);
  await alice.click('#conv-menu');
  assert.equal(await alice.textContent('#conv-block'), 'Block bob');
  await alice.keyboard.press('Escape');
  assert.equal(await visible(alice, '#conv-menu-list'), false);
  await until('bob sees alice online again', async () => (await bob.textContent('#conv-status')) === 'online');

  await send(bob, 'back again');
  await until('alice gets bob\'s next message', async () => (await texts(alice)).includes('back again'));
  await until('bob\'s next message is delivered', async () => ['delivered', 'read'].includes(await statusOf(bob, 'back again')));
  assert.ok(!(await texts(alice)).includes('are you there?'), 'what was sent while blocked never comes');
  assert.equal(await statusOf(bob, 'are you there?'), 'sent');
  await send(alice, 'we are fine');
  await until('bob gets alice\'s message', async () => (await texts(bob)).includes('we are fine'));
});

test('a send to a contact blocked on another device is refused with the server\'s "blocked"', async () => {
  const alice = ctx.alice.page;
  // the block comes from elsewhere (another device's request): this page does not know yet
  const st = await alice.evaluate(async () => {
    const s = JSON.parse(localStorage.getItem('tern.session'));
    const r = await fetch('/v1/blocks/bob', { method: 'PUT', headers: { Authorization: `Bearer ${s.token}` } });
    return r.status;
  });
  assert.equal(st, 204);
  assert.ok(await visible(alice, '#composer'));
  await send(alice, 'this one is refused');
  await until('the message fails', async () => (await statusOf(alice, 'this one is refused')) === 'failed');
  const note = await alice.textContent('#messages .msg[data-status="failed"] .failed-note');
  assert.match(note, /blocked this user/);
  assert.match(await alice.textContent('#toasts'), /Message not sent: you have blocked this user/);
  // the refusal makes the page learn the block
  await alice.waitForSelector('#blocked-bar', { state: 'visible' });
  assert.ok(!(await texts(ctx.bob.page)).includes('this one is refused'));
});

test('Settings lists the blocked contacts and unblocks them; blocking by name is checked', async () => {
  const alice = ctx.alice.page;
  await openSettings(alice);
  await until('bob listed', async () => (await blockedListed(alice)).join() === 'bob');
  assert.equal(await visible(alice, '#blocked-empty'), false);
  await alice.click('#blocked-list li[data-user="bob"] button');
  await until('the list is empty', async () => (await blockedListed(alice)).length === 0);
  assert.ok(await visible(alice, '#blocked-empty'));
  // an unknown name and oneself are refused in words
  await alice.fill('#block-user', 'nobody-here');
  await alice.click('#block-user-go');
  await until('refused', async () => /no user with that name/.test(await alice.textContent('#blocked-error')));
  await alice.fill('#block-user', 'alice');
  await alice.click('#block-user-go');
  assert.match(await alice.textContent('#blocked-error'), /cannot block yourself/);
  // blocking by name from Settings shows in the open conversation too
  await alice.fill('#block-user', 'bob');
  await alice.click('#block-user-go');
  await until('bob listed again', async () => (await blockedListed(alice)).join() === 'bob');
  await screenshot(alice, 'settings.png');
  await closeSettings(alice);
  await alice.waitForSelector('#blocked-bar', { state: 'visible' });
  await alice.click('#blocked-unblock');
  await alice.waitForSelector('#composer', { state: 'visible' });
  await openSettings(alice);
  await until('the list is empty again', async () => (await blockedListed(alice)).length === 0);
  await closeSettings(alice);
});

test('privacy: "Last seen: Nobody" hides it from bob, read receipts off keeps his ticks grey; both persist over a reload', async () => {
  const alice = ctx.alice.page;
  const bob = ctx.bob.page;
  await openSettings(alice);
  await until('privacy loaded', async () => !(await alice.isDisabled('#privacy-last-seen')));
  assert.equal(await alice.inputValue('#privacy-last-seen'), 'everyone');
  assert.equal(await alice.isChecked('#privacy-read-receipts'), true);
  await alice.selectOption('#privacy-last-seen', 'nobody');
  await until('saved', async () => (await alice.textContent('#privacy-status')) === 'Saved.');
  await alice.uncheck('#privacy-read-receipts');
  await until('saved again', async () => (await alice.textContent('#privacy-status')) === 'Saved.' && !(await alice.isDisabled('#privacy-read-receipts')));

  // a reload shows what the server keeps
  await alice.reload();
  await alice.waitForSelector('#me-name');
  await openSettings(alice);
  await until('privacy loaded after the reload', async () => !(await alice.isDisabled('#privacy-last-seen')));
  assert.equal(await alice.inputValue('#privacy-last-seen'), 'nobody');
  assert.equal(await alice.isChecked('#privacy-read-receipts'), false);
  await closeSettings(alice);

  // read receipts off: bob's message reaches alice, on screen and attended, and stays ✓✓ grey
  await openChat(alice, 'bob');
  await focus(alice);
  await send(bob, 'did you read this?');
  await until('alice has it', async () => (await texts(alice)).includes('did you read this?'));
  await focus(alice);
  await until('delivered', async () => (await statusOf(bob, 'did you read this?')) === 'delivered');
  await sleep(1500);
  assert.equal(await statusOf(bob, 'did you read this?'), 'delivered', 'no blue ticks');

  // last seen nobody: alice leaves; bob's header goes from online to nothing (not "last seen")
  assert.equal(await bob.textContent('#conv-status'), 'online');
  await alice.close();
  await until('alice offline at bob\'s', async () => (await bob.textContent('#conv-status')) !== 'online');
  await sleep(500);
  assert.equal(await bob.textContent('#conv-status'), '');

  // back to the defaults: now bob sees "last seen"
  const page = await ctx.alice.context.newPage();
  ctx.alice.page = page;
  page.on('pageerror', (e) => ctx.alice.errors.push(e.message));
  await page.goto('/');
  await page.waitForSelector('#me-name');
  await openSettings(page);
  await until('privacy loaded', async () => !(await page.isDisabled('#privacy-last-seen')));
  await page.selectOption('#privacy-last-seen', 'everyone');
  await until('saved', async () => (await page.textContent('#privacy-status')) === 'Saved.');
  await page.check('#privacy-read-receipts');
  await until('saved again', async () => (await page.textContent('#privacy-status')) === 'Saved.' && !(await page.isDisabled('#privacy-read-receipts')));
  await closeSettings(page);
  await until('bob sees alice online', async () => (await bob.textContent('#conv-status')) === 'online');
  await page.close();
  await until('bob sees alice\'s last seen', async () => /^last seen today at \d\d:\d\d$/.test(await bob.textContent('#conv-status')));
  ctx.alice.page = await ctx.alice.context.newPage();
  ctx.alice.page.on('pageerror', (e) => ctx.alice.errors.push(e.message));
  await ctx.alice.page.goto('/');
  await ctx.alice.page.waitForSelector('#me-name');
});

async function devices(page) {
  return page.$$eval('#device-list li', (els) => els.map((e) => ({ self: e.dataset.self === '1', text: e.textContent })));
}

test('linked devices: a second login is listed, this device marked', async () => {
  const alice = ctx.alice.page;
  const { page: second } = await openAs('alice2', {}, await otherBrowser());
  await login(second, 'alice');
  await openSettings(alice);
  await until('two devices', async () => (await devices(alice)).length === 2);
  const list = await devices(alice);
  assert.equal(list.filter((d) => d.self).length, 1);
  assert.match(list.find((d) => d.self).text, /This device/);
  assert.match(list.find((d) => !d.self).text, /Web: Chrome.*(Active now|Last active)/);
  assert.equal(await alice.$$eval('#device-list li[data-self="1"] button', (b) => b.length), 0, 'no Log out for this device');
  assert.equal(await alice.$$eval('#device-list li[data-self=""] button', (b) => b.map((x) => x.textContent).join()), 'Log out');
  // Log out asks first; Cancel keeps it
  await alice.click('#device-list li[data-self=""] button');
  await alice.waitForSelector('#confirm-dialog[open]');
  await alice.click('#confirm-cancel');
  await sleep(300);
  assert.equal((await devices(alice)).length, 2);
  assert.ok(await visible(second, '#me-name'), 'the second device is still logged in');
  await closeSettings(alice);
});

test('password change: refusals in words, then the new password logs in and the old one does not', async () => {
  const alice = ctx.alice.page;
  await openSettings(alice);
  await alice.fill('#pw-old', 'not my password');
  await alice.fill('#pw-new', NEW_PASSWORD);
  await alice.fill('#pw-new2', NEW_PASSWORD);
  await alice.click('#pw-go');
  await until('wrong current password', async () => (await alice.textContent('#pw-error')) === 'Wrong current password.');
  await alice.fill('#pw-old', PASSWORD);
  await alice.fill('#pw-new', 'short');
  await alice.fill('#pw-new2', 'short');
  await alice.click('#pw-go');
  assert.match(await alice.textContent('#pw-error'), /at least 8 characters/);
  await alice.fill('#pw-new', NEW_PASSWORD);
  await alice.fill('#pw-new2', NEW_PASSWORD + 'x');
  await alice.click('#pw-go');
  assert.match(await alice.textContent('#pw-error'), /not the same/);
  await alice.fill('#pw-new2', NEW_PASSWORD);
  await alice.click('#pw-go');
  await until('changed', async () => /Password changed/.test(await alice.textContent('#pw-status')));
  assert.equal(await alice.inputValue('#pw-old'), '');
  await closeSettings(alice);
  assert.ok(await visible(alice, '#me-name'), 'this device stays logged in');

  const { page: second } = await openAs('alice3', {}, await otherBrowser());
  await second.fill('#username', 'alice');
  await second.fill('#password', PASSWORD);
  await second.click('#login-submit');
  await until('the old password is refused', async () => (await second.textContent('#login-error')) === 'Wrong username or password.');
  await second.fill('#password', NEW_PASSWORD);
  await second.click('#login-submit');
  await second.waitForSelector('#me-name');
  assert.equal(await second.textContent('#me-name'), 'alice');
});

test('too many wrong current passwords: "Try again in N s" from Retry-After', async () => {
  const { page: erin } = await openAs('erin');
  await register(erin, 'erin');
  await openSettings(erin);
  let last = '';
  for (let i = 0; i < 8 && !/Try again in/.test(last); i++) {
    await erin.fill('#pw-old', `wrong password ${i}`);
    await erin.fill('#pw-new', NEW_PASSWORD);
    await erin.fill('#pw-new2', NEW_PASSWORD);
    await erin.click('#pw-go');
    await until('an answer', async () => !(await erin.isDisabled('#pw-go')) && (await erin.textContent('#pw-error')) !== '');
    last = await erin.textContent('#pw-error');
    if (!/Try again in/.test(last)) assert.equal(last, 'Wrong current password.');
  }
  assert.match(last, /^Password not changed: too many attempts\. Try again in \d+ s\.$/);
  await closeSettings(erin);
});

test('delete account: the password is asked again, then the login screen; the name cannot log in', async () => {
  const { page: carol } = await openAs('carol', {}, await otherBrowser());
  await register(carol, 'carol');
  await newChat(carol, 'alice');
  await send(carol, 'bye soon');
  await until('sent', async () => ['sent', 'delivered', 'read'].includes(await statusOf(carol, 'bye soon')));
  await openSettings(carol);
  await carol.click('#delete-go');
  assert.match(await carol.textContent('#delete-error'), /Type your password/);
  await carol.fill('#delete-password', 'not the password');
  await carol.click('#delete-go');
  await carol.waitForSelector('#confirm-dialog[open]');
  await carol.click('#confirm-ok');
  await until('wrong password', async () => (await carol.textContent('#delete-error')) === 'Wrong password.');
  // cancel keeps the account
  await carol.fill('#delete-password', PASSWORD);
  await carol.click('#delete-go');
  await carol.waitForSelector('#confirm-dialog[open]');
  await carol.click('#confirm-cancel');
  assert.ok(await visible(carol, '#settings-dialog'));
  await carol.click('#delete-go');
  await carol.waitForSelector('#confirm-dialog[open]');
  assert.match(await carol.textContent('#cf-title'), /Delete the account “carol”/);
  await carol.click('#confirm-ok');
  await carol.waitForSelector('#login-title');
  assert.match(await carol.textContent('.login'), /The account “carol” was deleted/);
  // the local data went: the stored session and the IndexedDB history
  assert.equal(await carol.evaluate(() => localStorage.getItem('tern.session')), null);
  await until('history deleted', async () => !(await carol.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))).includes('tern:carol'));
  // the name no longer logs in, and cannot be registered again yet
  await carol.fill('#username', 'carol');
  await carol.fill('#password', PASSWORD);
  // The server's answer is checked first, so that a failure says whether the server let the
  // deleted name log in or the page lost its login screen (seen once in CI, not reproduced).
  const answer = carol.waitForResponse((r) => r.url().endsWith('/v1/login') && r.request().method() === 'POST');
  await carol.click('#login-submit');
  const r = await answer;
  assert.equal(r.status(), 401, `a login as the deleted "carol" was answered ${r.status()}: ${(await r.text()).slice(0, 200)}`);
  try {
    await until('refused', async () => (await carol.textContent('#login-error', { timeout: 2000 })) === 'Wrong username or password.');
  } catch (e) {
    const shown = await carol.evaluate(() => document.getElementById('root').innerText).catch((x) => x.message);
    throw new Error(`${e.message}; the page shows: ${String(shown).slice(0, 300)}`);
  }
  await carol.click('#login-switch');
  await carol.fill('#username', 'carol');
  await carol.fill('#password', PASSWORD);
  await carol.click('#login-submit');
  await until('name held', async () => /taken/.test(await carol.textContent('#login-error')));
});

test('at phone width the Settings screen fills it, and Escape closes it', async () => {
  const { page: bob } = ctx.bob;
  await bob.setViewportSize({ width: 390, height: 780 });
  await bob.click('#back');
  await openSettings(bob);
  const box = await bob.locator('#settings-dialog').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390, `fits: ${JSON.stringify(box)}`);
  const wide = await bob.$$eval('#settings-dialog *', (els) => els.filter((e) => e.getBoundingClientRect().right > 391).map((e) => e.id || e.className));
  assert.deepEqual(wide, [], 'nothing sticks out');
  await screenshot(bob, 'settings-phone.png');
  await bob.keyboard.press('Escape');
  await bob.waitForSelector('#settings-dialog', { state: 'hidden' });
  assert.equal(await bob.evaluate(() => document.activeElement.id), 'settings');
  // the conversation's menu fits too, and works from the keyboard
  await openChat(bob, 'alice');
  await bob.focus('#conv-menu');
  await bob.keyboard.press('Enter');
  await bob.waitForSelector('#conv-menu-list', { state: 'visible' });
  assert.equal(await bob.evaluate(() => document.activeElement.id), 'conv-block');
  assert.equal(await bob.textContent('#conv-block'), 'Block alice');
  const menu = await bob.locator('#conv-menu-list').boundingBox();
  assert.ok(menu.x >= 0 && menu.x + menu.width <= 390, `the menu fits: ${JSON.stringify(menu)}`);
  await bob.keyboard.press('Escape');
  await bob.waitForSelector('#conv-menu-list', { state: 'hidden' });
  assert.equal(await bob.evaluate(() => document.activeElement.id), 'conv-menu');
  assert.ok(await visible(bob, '#conv'), 'Escape in the menu does not leave the conversation');
});

test('no script errors, CSP violations or browser dialogs', () => {
  for (const [name, r] of Object.entries(ctx)) {
    assert.deepEqual(r.errors, [], `${name}: errors`);
    assert.deepEqual(r.dialogs, [], `${name}: dialogs`);
  }
});
