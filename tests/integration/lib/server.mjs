// Spawns a real ternd on a free port with a temp data dir, for the integration tests.
//
//   const srv = await startServer({ args: ['--inbox-ttl', '1s'] });
//   after(() => srv.close());
//
// srv.port/url/wsUrl are updated in place by restart(), so tests may keep the object.
//
// With TERN_TEST_WORKERS=N, every ternd runs N worker loops (--workers N; default 1).
//
// With TERN_TEST_CLUSTER=N (N >= 2) in the environment, startServer starts N ternd nodes on
// the NATS backend instead (one 3-server NATS cluster per test process, a namespace of their
// own per startServer), behind a TCP proxy that hands each new connection to the next node:
// srv.port/url/wsUrl are the proxy's, so every test's HTTP requests and WebSockets spread
// over the nodes, and srv.nodes are the nodes themselves. Tests that need one node's
// internals (its data dir's files, a v1 fixture) check CLUSTER_NODES and skip.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNats } from './nats.mjs';
import { assertNoSanitizerReport, SANITIZER_LOGS } from './sanitizer.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const TERND = process.env.TERND || path.join(REPO_ROOT, 'build', 'ternd');

const STDERR_KEEP = 1 << 20; // keep the last 1 MiB of each server's log
const live = new Set(); // servers not yet closed, killed on process exit
const tempDirs = new Set();

process.on('exit', () => {
  for (const s of live) {
    try { s.proc?.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const d of tempDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

/**
 * Per-address abuse limits out of the way: every test connects from 127.0.0.1, and a suite
 * opens far more than 20 connections a second. abuse.test.mjs tests the limits themselves.
 */
export const NO_ADDRESS_LIMITS = ['--limits-conn-per-ip', '1000000', '--limits-conn-rate-per-ip', '1000000/1s',
  '--limits-auth-rate-per-ip', '1000000/1s', '--limits-login-fail', '1000000/1s', '--limits-typing-rate', '1000000/1s'];

/**
 * The flags every test server gets: fast password hashing, no per-address limits, and room for
 * a suite's bursts of registrations in the hash queue.
 */
export const BASE_ARGS = ['--auth-hash-cost', 'test', '--allow-insecure-test-settings', ...NO_ADDRESS_LIMITS,
  '--auth-hash-queue', '100000'];

/** The same with the limits of PROTOCOL.md 14 at their defaults. */
export const BASE_ARGS_LIMITED = ['--auth-hash-cost', 'test', '--allow-insecure-test-settings'];

/** Generous send limits, for tests that are not about rate limiting. */
export const FAST_LIMITS = ['--limits-send-rate', '1000000/s', '--limits-send-burst', '1000000'];

export function makeTempDir(prefix = 'tern-integ-') {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

function spawnTernd(srv, startTimeoutMs) {
  if (!existsSync(TERND)) {
    throw new Error(`ternd binary not found at ${TERND} (build it, or set TERND)`);
  }
  const argv = ['--listen', '127.0.0.1:0', '--data-dir', srv.dataDir, '--workers', String(WORKERS), ...srv.baseArgs,
    ...srv.args];
  const env = srv.env ? { ...process.env, ...srv.env } : process.env;
  const proc = spawn(TERND, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
  srv.proc = proc;
  if (proc.pid) srv.pids.push(proc.pid);
  srv.exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  let buf = '';
  let resolved = false;
  return new Promise((resolve, reject) => {
    // a node of a cluster says what its NATS servers said too (startCluster's explain)
    const fail = (msg) => Promise.resolve(srv.explain ? srv.explain().catch((e) => `(no NATS state: ${e.message})`) : '')
      .then((extra) => reject(new Error(extra ? `${msg}\n${extra}` : msg)));
    const timer = setTimeout(() => {
      if (resolved) return;
      resolved = true;
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
      fail(`ternd did not log msg="listening" within ${startTimeoutMs} ms\n` +
        `command: ${TERND} ${argv.join(' ')}\nstderr:\n${srv.stderr()}`);
    }, startTimeoutMs);
    proc.on('error', (err) => {
      if (resolved) return;
      resolved = true;
      clearTimeout(timer);
      reject(new Error(`cannot spawn ${TERND}: ${err.message}`));
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      srv._log += chunk;
      if (srv._log.length > STDERR_KEEP) srv._log = srv._log.slice(-STDERR_KEEP);
      if (resolved) return;
      buf += chunk;
      const m = /msg="?listening"?.*?\baddr="?([0-9.]+):(\d+)/.exec(buf);
      if (m && buf.slice(m.index).includes('\n')) {
        resolved = true;
        clearTimeout(timer);
        srv.port = Number(m[2]);
        srv.host = m[1];
        srv.url = `http://${m[1]}:${m[2]}`;
        srv.wsUrl = `ws://${m[1]}:${m[2]}/v1/ws`;
        resolve(srv);
      }
    });
    proc.on('exit', (code, signal) => {
      if (resolved) return;
      resolved = true;
      clearTimeout(timer);
      fail(`ternd exited (code ${code}, signal ${signal}) before listening\n` +
        `command: ${TERND} ${argv.join(' ')}\nstderr:\n${srv.stderr()}`);
    });
  });
}

/**
 * Worker loops per ternd (--workers): TERN_TEST_WORKERS, else 1, so that the suite runs the
 * same on any machine (the setting's default is one per core). Tests that set --workers
 * themselves win: their flags come later.
 */
export const WORKERS = Number(process.env.TERN_TEST_WORKERS || 0) >= 1 ? Number(process.env.TERN_TEST_WORKERS) : 1;

/** Nodes per test server (0: a single ternd on RocksDB). */
export const CLUSTER_NODES = Number(process.env.TERN_TEST_CLUSTER || 0) >= 2 ? Number(process.env.TERN_TEST_CLUSTER) : 0;

/**
 * Starts ternd. Options: args (extra flags), dataDir (reuse a directory; default a new temp
 * dir removed by close()), env (extra environment variables), baseArgs (default BASE_ARGS),
 * startTimeoutMs.
 */
export async function startServer(opts = {}) {
  return CLUSTER_NODES ? startCluster(CLUSTER_NODES, opts) : startNode(opts);
}

let sharedNats = null; // one NATS cluster per test process
let clusters = 0;

/**
 * n ternd nodes on one NATS namespace, behind a round-robin TCP proxy. opts.nats: a NATS
 * cluster of the caller's (startNats) instead of the process's shared one; opts.urlsFor(i):
 * node i's --nats-urls instead of every server's (a node behind a test's own proxy).
 */
export async function startCluster(n, { args = [], env, baseArgs = BASE_ARGS, startTimeoutMs = 30000, nats: given, urlsFor } = {}) {
  if (!given && !sharedNats) sharedNats = startNats({ servers: 3 });
  const nats = given || await sharedNats;
  const ns = `t${process.pid}x${++clusters}`;
  const nodes = [];
  try {
    for (let i = 0; i < n; i++) {
      const o = {
        args: [...args, '--store-backend', 'nats', '--nats-urls', urlsFor ? urlsFor(i) : nats.urls, '--nats-namespace', ns, '--nats-node', `n${i + 1}`],
        env, baseArgs, startTimeoutMs, explain: () => nats.describe(),
      };
      // a loaded machine can time out the first stream creations (JetStream's 2 s): once more
      nodes.push(await startNode(o).catch(() => startNode(o)));
    }
  } catch (e) {
    await Promise.all(nodes.map((x) => x.close())); // a live node would keep the test process alive
    throw e;
  }
  const srv = await proxyTo(nodes);
  Object.assign(srv, { nats, namespace: ns, cluster: true });
  return srv;
}

/**
 * A round-robin TCP proxy in front of nodes (a load balancer in small: a new connection goes
 * to the next node that accepts). Returns a server-like object: port/url/wsUrl are the
 * proxy's, nodes the nodes; stop/kill9/restart/close act on every node (close also closes
 * the proxy).
 */
export async function proxyTo(nodes) {
  let next = 0;
  const sockets = new Set();
  const proxy = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    const tryNode = (left) => {
      const node = nodes[next++ % nodes.length];
      const up = net.connect(node.port, '127.0.0.1');
      up.once('connect', () => {
        sockets.add(up);
        up.on('close', () => sockets.delete(up));
        client.pipe(up);
        up.pipe(client);
        client.resume();
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
        up.on('close', () => client.destroy());
        client.on('close', () => up.destroy());
      });
      up.once('error', () => (left > 1 ? tryNode(left - 1) : client.destroy()));
    };
    tryNode(nodes.length);
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const port = proxy.address().port;
  const all = (fn) => Promise.all(nodes.map(fn));
  const srv = {
    nodes,
    port, host: '127.0.0.1', url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    dataDir: nodes[0].dataDir,
    get proc() { return nodes[0].proc; },
    stderr() { return nodes.map((x, i) => `----- node ${i + 1} -----\n${x.stderr()}`).join('\n'); },
    async stop(timeoutMs) { const codes = await all((x) => x.stop(timeoutMs)); return codes.find((c) => c !== 0) ?? codes[0]; },
    async kill9() { await all((x) => x.kill9()); },
    async restart(o) {
      // After heavy load a NATS cluster can take a while to be healthy again (a CI run saw
      // JetStream answer "temporarily unavailable" for over 30 s after a kill -9 under 20,000
      // sends): the nodes start once it is, or after 60 s, when their own wait begins.
      if (srv.nats && !(await srv.nats.healthy(60000))) {
        console.error(`# the NATS cluster was not healthy 60 s after the nodes stopped\n${await srv.nats.describe()}`);
      }
      for (const x of nodes) await x.restart(o);
      return srv;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
      await all((x) => x.close());
    },
  };
  return srv;
}

async function startNode({ args = [], dataDir, env, baseArgs = BASE_ARGS, startTimeoutMs = 15000, explain } = {}) {
  const srv = {
    explain,
    args: [...args],
    baseArgs: [...baseArgs],
    env,
    dataDir: dataDir || makeTempDir(),
    port: 0, host: '127.0.0.1', url: '', wsUrl: '',
    proc: null,
    pids: [], // every ternd this server ran (restarts included), for their sanitizer reports
    exited: null,
    _log: '',
    closed: false,
    /** Everything the server logged so far (the last MiB). */
    stderr() { return this._log; },
    /** SIGTERM, then waits for the exit; returns the exit code (null if killed by a signal). */
    async stop(timeoutMs = 10000) {
      if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) {
        return this.proc?.exitCode ?? null;
      }
      this.proc.kill('SIGTERM');
      let timer;
      const res = await Promise.race([
        this.exited,
        new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); }),
      ]);
      clearTimeout(timer);
      if (res === null) {
        this.proc.kill('SIGKILL');
        await this.exited;
        throw new Error(`ternd did not exit within ${timeoutMs} ms of SIGTERM\nstderr:\n${this.stderr()}`);
      }
      assertNoSanitizerReport(this.proc.pid, 'ternd', this._log);
      return res.code;
    },
    /** kill -9 and wait for the process to be gone. */
    async kill9() {
      if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
      this.proc.kill('SIGKILL');
      await this.exited;
    },
    /** Starts a new ternd on the same data dir (a new port); extraArgs replace nothing, they append. */
    async restart({ extraArgs = [] } = {}) {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
        throw new Error('restart() while the server is still running: stop() or kill9() it first');
      }
      this._log += '\n----- restart -----\n';
      const args = this.args;
      this.args = [...args, ...extraArgs];
      try {
        await spawnTernd(this, startTimeoutMs);
      } finally {
        this.args = args;
      }
      return this;
    },
    /** Stops the server (SIGKILL if SIGTERM does not work) and removes its temp dir. */
    async close() {
      if (this.closed) return;
      this.closed = true;
      try {
        if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
          this.proc.kill('SIGTERM');
          let timer;
          // a sanitized ternd checks its heap for leaks on the way out
          const r = await Promise.race([this.exited,
            new Promise((resolve) => { timer = setTimeout(() => resolve(null), SANITIZER_LOGS ? 20000 : 5000); })]);
          clearTimeout(timer);
          if (r === null) { this.proc.kill('SIGKILL'); await this.exited; }
        }
      } finally {
        live.delete(this);
        if (!dataDir) {
          try { rmSync(this.dataDir, { recursive: true, force: true }); } catch { /* best effort */ }
          tempDirs.delete(this.dataDir);
        }
      }
      for (const pid of this.pids) assertNoSanitizerReport(pid, 'ternd');
      assertNoSanitizerReport(null, 'ternd', this._log);
    },
  };
  live.add(srv);
  try {
    await spawnTernd(srv, startTimeoutMs);
  } catch (err) {
    live.delete(srv);
    if (!dataDir) rmSync(srv.dataDir, { recursive: true, force: true });
    throw err;
  }
  return srv;
}

/** Waits ms milliseconds (only for timers the protocol defines: ttl, expiry, intervals). */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; throws with message (and the last value) on timeout. */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message} (last value: ${JSON.stringify(last)})`);
    }
    await sleep(intervalMs);
  }
}

/** Resolves with promise's value, or with fallback after ms (the timer is cleared either way). */
export async function within(promise, ms, fallback = null) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((r) => { timer = setTimeout(() => r(fallback), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs ternd with exactly these arguments until it exits (or timeoutMs, then SIGKILL).
 * Resolves with { code, signal, stdout, stderr, timedOut }.
 */
export function runTernd(argv, { env, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    if (!existsSync(TERND)) { reject(new Error(`ternd binary not found at ${TERND}`)); return; }
    const proc = spawn(TERND, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    proc.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    proc.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); }, timeoutMs);
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      try { assertNoSanitizerReport(proc.pid, 'ternd', stderr); } catch (e) { reject(e); return; }
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}
