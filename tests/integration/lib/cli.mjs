// Runs the real `tern` binary for the CLI's integration tests (cli.test.mjs, cli_groups.test.mjs):
// one-shot runs with their output, and live ones (listen, chat) whose output can be watched.
// Every run gets HOME (the credentials live below it) and TZ=UTC; XDG_CONFIG_HOME, TERN_SERVER and
// TERN_PASSWORD from the test runner's environment are dropped unless env sets them.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './server.mjs';
import { assertNoSanitizerReport } from './sanitizer.mjs';

export const TERN = process.env.TERN_CLI || path.join(REPO_ROOT, 'build', 'tern');
export const PASSWORD = 'correct horse battery';

/** Runs tern to its end. Resolves with { code, signal, stdout, stderr }. */
export function tern(args, { home, input, env = {}, timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const e = { ...process.env, ...env };
    delete e.XDG_CONFIG_HOME;
    if (!('TERN_SERVER' in env)) delete e.TERN_SERVER;
    if (!('TERN_PASSWORD' in env)) delete e.TERN_PASSWORD;
    if (home) e.HOME = home;
    e.TZ = 'UTC';
    const proc = spawn(TERN, args, { env: e, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    proc.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', (err) => { clearTimeout(timer); reject(err); });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      try { assertNoSanitizerReport(proc.pid, 'tern', stderr); } catch (err) { reject(err); return; }
      resolve({ code, signal, stdout, stderr });
    });
    if (input !== undefined) proc.stdin.end(input);
    else proc.stdin.end();
  });
}

/** Starts tern and returns the process plus a live view of its output (for listen/chat). */
export function ternLive(args, { home, timeoutMs = 30000 } = {}) {
  const e = { ...process.env, HOME: home, TZ: 'UTC' };
  delete e.XDG_CONFIG_HOME;
  delete e.TERN_SERVER;
  const proc = spawn(TERN, args, { env: e, stdio: ['pipe', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '', proc };
  proc.stdout.setEncoding('utf8').on('data', (d) => { out.stdout += d; });
  proc.stderr.setEncoding('utf8').on('data', (d) => { out.stderr += d; });
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  out.done = new Promise((resolve, reject) => {
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      try { assertNoSanitizerReport(proc.pid, 'tern', out.stderr); } catch (err) { reject(err); return; }
      resolve({ code, signal });
    });
  });
  return out;
}

export async function until(fn, what, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const uniq = (p) => `${p}${process.pid % 10000}${Math.floor(Math.random() * 1e6)}`;

/** Temporary HOME directories: make() one, cleanup() removes them all. */
export function tempHomes() {
  const made = [];
  return {
    make() {
      const h = mkdtempSync(path.join(os.tmpdir(), 'tern-cli-home-'));
      made.push(h);
      return h;
    },
    cleanup() {
      for (const h of made.splice(0)) rmSync(h, { recursive: true, force: true });
    },
  };
}
