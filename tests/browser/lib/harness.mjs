// harness for the browser tests: a real ternd on a free port with a temp data dir, and
// Debian's chromium driven by playwright-core (headless).
import { spawn } from 'node:child_process';
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const WEB_DIR = join(REPO, 'web');
export const BUILD = process.env.TERN_BUILD || join(REPO, 'build');
export const TERND = process.env.TERND || join(BUILD, 'ternd');
export const SHOTS = join(BUILD, 'screenshots');

/** Spawns ternd and resolves once it logs msg="listening". */
export async function startServer(extraArgs = []) {
  const dir = await mkdtemp(join(tmpdir(), 'tern-browser-'));
  const args = ['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--auth-hash-cost', 'test',
    '--allow-insecure-test-settings', '--web-dir', WEB_DIR,
    // every browser connects from 127.0.0.1: the per-address limits are abuse.test.mjs's
    '--limits-conn-rate-per-ip', '1000000/1s', '--limits-auth-rate-per-ip', '1000000/1s', '--auth-hash-queue', '100000',
    ...extraArgs];
  const proc = spawn(TERND, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`ternd did not start in 15 s:\n${log}`)), 15000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      if (process.env.TERN_TEST_VERBOSE) process.stderr.write(chunk);
      const m = /msg="listening".*?addr=127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${TERND}: ${e.message}`));
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ternd exited with ${code} before listening:\n${log}`));
    });
  });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    dataDir: join(dir, 'data'),
    log: () => log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
        const r = await exited;
        clearTimeout(t);
        await rm(dir, { recursive: true, force: true });
        return r;
      }
      await rm(dir, { recursive: true, force: true });
      return { code: proc.exitCode, sig: proc.signalCode };
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

export async function screenshot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  const path = join(SHOTS, name);
  await page.screenshot({ path });
  return path;
}

/** Polls fn (async, returns truthy when done) until timeout; the error names what. */
export async function until(what, fn, timeout = 10000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** For a test file: ternd (with extra args) and chromium started before its tests and stopped
 *  after them, ternd's exit checked. The returned object has .server and .browser by then. */
export function serverAndBrowser(extraArgs = []) {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer(extraArgs);
    env.browser = await launchBrowser();
  });
  after(async () => {
    if (env.browser) await env.browser.close();
    if (env.server) {
      const r = await env.server.stop();
      assert.equal(r.code, 0, `ternd exit: ${JSON.stringify(r)}\n${env.server.log().slice(-2000)}`);
    }
  });
  return env;
}
