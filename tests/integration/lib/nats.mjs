// Real nats-server processes for the cluster tests: a temp dir, free ports on 127.0.0.1,
// JetStream file storage, one server or a cluster of three with routes between them.
//
//   const nats = await startNats({ servers: 3 });
//   nats.urls            // "nats://127.0.0.1:P1,nats://127.0.0.1:P2,nats://127.0.0.1:P3"
//   await nats.kill(1);  // kill -9 of the second server
//   await nats.restart(1);
//   await nats.close();
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const live = new Set();
process.on('exit', () => {
  for (const c of live) {
    for (const s of c.servers) { try { s.proc?.kill('SIGKILL'); } catch { /* gone */ } }
    try { rmSync(c.dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

/*
 * Listening ports come from below the kernel's ephemeral range (ip_local_port_range). A port
 * the kernel picked for a bind to port 0 is an ephemeral one, and the outgoing connections of
 * every test running meanwhile (ternd to NATS, the clients, the routes) take theirs from the
 * same range: one of them could take it before nats-server bound it, and the server exited
 * ("address already in use"; ctest -L cluster -j2 saw it fail three test files at once).
 * Below the range only another listener can clash, which the bind check and startNats's one
 * retry cover.
 */
function ephemeralLow() {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch { return 0; }
}
const PORT_LOW = 10000;

function bindable(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port nothing listens on right now, outside the ephemeral range when there is room. */
export async function freePort() {
  const high = ephemeralLow() - 1;
  for (let i = 0; high - PORT_LOW > 1000 && i < 50; i++) {
    const port = PORT_LOW + Math.floor(Math.random() * (high - PORT_LOW + 1));
    if (await bindable(port)) return port;
  }
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Resolves once server s answers ready. Its monitor port must be its own: a port picked free
 * can be taken by another process before the server binds it, and then the server exits
 * ("address already in use") while another test's nats-server answers 200 on that port (CI:
 * ternd then never found its third JetStream peer). So a server that exited fails at once,
 * and /varz must name s's own client port.
 */
async function jetstreamReady(s, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = s.proc;
    if (p && (p.exitCode !== null || p.signalCode)) {
      throw new Error(`nats-server (port ${s.port}) exited (${p.exitCode ?? p.signalCode}) while starting`);
    }
    try {
      const v = await (await fetch(`http://127.0.0.1:${s.httpPort}/varz`, { signal: AbortSignal.timeout(2000) })).json();
      // 200 once JetStream is up and, in a cluster, has its meta leader and current streams
      const r = v.port === s.port ? await fetch(`http://127.0.0.1:${s.httpPort}/healthz`, { signal: AbortSignal.timeout(2000) }) : null;
      if (r && r.ok) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`nats-server (monitor port ${s.httpPort}) not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function launch(c, i) {
  const s = c.servers[i];
  const proc = spawn('nats-server', ['-c', s.conf, '-l', s.log], { stdio: 'ignore' });
  // The NATS cluster lives as long as the test process and no longer: unref'd, it does not
  // keep the process alive once the tests are done, and the exit handler kills it.
  proc.unref();
  s.proc = proc;
  s.exited = new Promise((resolve) => proc.on('exit', () => resolve()));
  proc.on('error', (err) => { s.error = err; });
}

/**
 * Starts `servers` (1 or 3) nats-servers with JetStream; resolves once each answers. A cluster
 * not ready in timeoutMs is stopped and started once more on fresh ports (CI once saw a
 * 3-server cluster's JetStream never come up: a port taken between its pick and its bind,
 * or a meta leader election that stalled), with what its logs said.
 */
export async function startNats(opts = {}) {
  try {
    return await startNatsOnce(opts);
  } catch (e) {
    if (!e.nats) throw e;
    const tail = e.nats.servers.map((s, i) => {
      try { return `n${i + 1}: ${readFileSync(s.log, 'utf8').split('\n').slice(-4).join(' | ')}`; } catch { return `n${i + 1}: no log`; }
    }).join('\n');
    console.error(`# ${e.message}; starting the NATS cluster again\n${tail}`);
    await e.nats.close();
    return startNatsOnce(opts);
  }
}

async function startNatsOnce({ servers = 3, timeoutMs = 30000 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tern-nats-'));
  const c = { dir, servers: [], urls: '' };
  live.add(c);
  for (let i = 0; i < servers; i++) {
    c.servers.push({ port: await freePort(), routePort: await freePort(), httpPort: await freePort() });
  }
  c.urls = c.servers.map((s) => `nats://127.0.0.1:${s.port}`).join(',');
  c.servers.forEach((s, i) => {
    const lines = [
      `server_name: n${i + 1}`,
      `listen: 127.0.0.1:${s.port}`,
      `http: 127.0.0.1:${s.httpPort}`,
      `jetstream { store_dir: "${path.join(dir, `n${i + 1}`)}", max_memory_store: 256MB, max_file_store: 4GB }`,
    ];
    if (servers > 1) {
      const routes = c.servers.map((r) => `nats-route://127.0.0.1:${r.routePort}`).join(', ');
      lines.push(`cluster { name: terntest, listen: 127.0.0.1:${s.routePort}, routes: [${routes}] }`);
    }
    s.conf = path.join(dir, `n${i + 1}.conf`);
    s.log = path.join(dir, `n${i + 1}.log`);
    writeFileSync(s.conf, lines.join('\n') + '\n');
  });
  c.servers.forEach((_, i) => launch(c, i));
  const ready = Promise.all(c.servers.map((s) => jetstreamReady(s, timeoutMs)));
  Object.assign(c, {
    /** kill -9 of server i. */
    async kill(i) {
      const s = c.servers[i];
      if (!s.proc || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
      s.proc.kill('SIGKILL');
      await s.exited;
    },
    /** Starts server i again (same ports and store dir). */
    async restart(i) {
      launch(c, i);
      await jetstreamReady(c.servers[i], timeoutMs);
    },
    /**
     * Waits until every running server's /healthz answers 200 (a meta leader known, its
     * streams current). Resolves false if that took longer than timeoutMs.
     */
    async healthy(timeoutMs = 60000) {
      const up = c.servers.filter((s) => s.proc && s.proc.exitCode === null && !s.proc.signalCode);
      return Promise.all(up.map((s) => jetstreamReady(s, timeoutMs))).then(() => true, () => false);
    },
    /**
     * What each server is doing, for a failure message: alive or how it exited, its meta
     * leader as its monitor port tells it, and the last lines of its log.
     */
    async describe(lines = 8) {
      const out = [];
      for (const [i, s] of c.servers.entries()) {
        const p = s.proc;
        const state = !p ? 'not started' : p.exitCode !== null ? `exited ${p.exitCode}` : p.signalCode ? `killed by ${p.signalCode}` : 'running';
        let meta = '';
        try {
          const r = await fetch(`http://127.0.0.1:${s.httpPort}/jsz`, { signal: AbortSignal.timeout(2000) });
          const j = await r.json();
          meta = ` meta leader ${j.meta_cluster?.leader ?? 'none'}, ${j.streams ?? '?'} streams, ${j.messages ?? '?'} messages`;
        } catch (e) { meta = ` (monitor port: ${e.message})`; }
        let tail = '';
        try { tail = readFileSync(s.log, 'utf8').split('\n').slice(-lines - 1).join('\n'); } catch { tail = '(no log)'; }
        out.push(`----- nats-server n${i + 1}: ${state}${meta} -----\n${tail}`);
      }
      return out.join('\n');
    },
    /** Stops every server and removes the temp dir. */
    async close() {
      for (const s of c.servers) { try { s.proc?.kill('SIGTERM'); } catch { /* gone */ } }
      await Promise.race([Promise.all(c.servers.map((s) => s.exited)), new Promise((r) => setTimeout(r, 5000))]);
      for (const s of c.servers) { try { s.proc?.kill('SIGKILL'); } catch { /* gone */ } }
      live.delete(c);
      rmSync(dir, { recursive: true, force: true });
    },
  });
  try {
    await ready;
  } catch (e) {
    e.nats = c;
    throw e;
  }
  return c;
}
