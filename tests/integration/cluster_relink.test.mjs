// A node's link to NATS cut and back (issue 12, docs/cluster-layout.md 10 "Envelope events"):
// envelope events are core NATS messages, so those of the moment a link is down are lost.
// Node B reaches NATS only through a TCP proxy of the test's, which can swallow what the
// server sends (a link that hangs: B still believes it is connected) and then cut the link
// (B reconnects through the proxy). A message committed on node A while B's link hangs is
// `sent`, and its event never reaches B; bob, live on B, must still get it once B is back
// (its reconnect rereads every live session's inbox). Before that reread, he never did.
// It makes its own cluster; the cluster-label run of the suite (TERN_TEST_CLUSTER) skips it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startCluster, sleep, FAST_LIMITS, CLUSTER_NODES } from './lib/server.mjs';
import { startNats } from './lib/nats.mjs';
import { newUser } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';

/**
 * A TCP proxy to one NATS server. hang(): from now on what the server sends is dropped (the
 * client's bytes still go through). cut(): every proxied connection is closed, and new ones
 * pass again.
 */
async function hangableProxy(port) {
  const links = new Set();
  let hanging = false;
  const proxy = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    const link = { client, up };
    links.add(link);
    client.pipe(up);
    up.on('data', (b) => { if (!hanging) client.write(b); });
    const end = () => { links.delete(link); client.destroy(); up.destroy(); };
    for (const s of [client, up]) { s.on('error', end); s.on('close', end); }
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `nats://127.0.0.1:${proxy.address().port}`,
    links: () => links.size,
    hang() { hanging = true; },
    cut() {
      hanging = false;
      for (const l of [...links]) { l.client.destroy(); l.up.destroy(); }
    },
    close() { for (const l of [...links]) { l.client.destroy(); l.up.destroy(); } return new Promise((r) => proxy.close(r)); },
  };
}

describe('cluster relink', { skip: CLUSTER_NODES ? 'makes its own cluster' : false }, () => {
  let nats, proxy, srv, nA, nB;
  before(async () => {
    nats = await startNats({ servers: 3 });
    proxy = await hangableProxy(nats.servers[0].port);
    srv = await startCluster(2, { args: FAST_LIMITS, nats, urlsFor: (i) => (i === 0 ? nats.urls : proxy.url) });
    [nA, nB] = srv.nodes;
  });
  after(async () => {
    await srv?.close();
    await proxy?.close();
    await nats?.close();
  });

  test('a message committed while a node\'s link hangs reaches its live session once the link is back', async () => {
    const [alice, bob] = await Promise.all([newUser(nA, 'ra'), newUser(nA, 'rb')]);
    const cb = await online(nB, bob);
    const ca = await online(nA, alice);
    // live delivery across the nodes works first (and bob's session on B is live)
    ca.send({ type: 'send', id: 'w1', to: bob.user, body: 'warm' });
    assert.equal((await ca.next((f) => f.type === 'sent' && f.id === 'w1')).type, 'sent');
    const w = await cb.next((f) => f.type === 'msg', 10000);
    assert.equal(w.body, 'warm');
    cb.send({ type: 'ack', seq: w.seq });
    assert.ok(proxy.links() >= 1, 'node B talks to NATS through the proxy');
    await sleep(300); // the ack's commit done (a request of B's during the hang waits its timeout)

    proxy.hang();
    ca.send({ type: 'send', id: 'm1', to: bob.user, body: 'while B hung' });
    const sent = await ca.next((f) => (f.type === 'sent' || f.type === 'error') && f.id === 'm1');
    assert.equal(sent.type, 'sent', JSON.stringify(sent));
    await sleep(500); // the event is out, and swallowed by the proxy
    const early = cb.frames.find((f) => f.type === 'msg' && f.body === 'while B hung');
    assert.ok(!early, 'the hang held the event back (else this test shows nothing)');
    proxy.cut();
    console.log(`# cut at ${new Date().toISOString()}`);
    const t0 = Date.now();
    const m = await cb.next((f) => f.type === 'msg' && f.body === 'while B hung', 10000);
    console.log(`# reached bob ${Date.now() - t0} ms after the cut; node B said:\n` +
      nB.stderr().split('\n').filter((l) => /nats:|cluster:|drain/.test(l)).map((l) => `#   ${l}`).join('\n'));
    assert.equal(m.from, alice.user);
    cb.send({ type: 'ack', seq: m.seq });
    // and live delivery goes on after the relink (B may be on another server now: a NATS
    // client learns the cluster's other servers from the first)
    ca.send({ type: 'send', id: 'm2', to: bob.user, body: 'after' });
    await ca.next((f) => f.type === 'sent' && f.id === 'm2');
    const m2 = await cb.next((f) => f.type === 'msg' && f.body === 'after', 10000);
    assert.equal(m2.seq, m.seq + 1);
    await closeAll([ca, cb]);
  });
});
