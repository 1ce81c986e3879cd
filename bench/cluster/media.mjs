#!/usr/bin/env node
// bench/cluster/media.mjs: media upload → 201 on one ternd with the embedded RocksDB store
// against a node of 3 ternd nodes on a 3-server NATS JetStream cluster (R3), where the bytes
// also go to JetStream as 256 KiB chunks before the 201 (issue 12, docs/cluster-layout.md 10);
// then, in the cluster, the first read on another node (its fetch from JetStream) and a later
// read there (its local copy). New noise PNGs each time (no dedup, full decode). It prints
// figures and never fails on a time.
//
//   TERND=build/ternd node bench/cluster/media.mjs [--size 600x600] [--rounds 7]
//
// One client, one request at a time, node's http client (slow on large bodies: the read rows
// include that; docs/media.md measures downloads with a raw socket and curl).
import { startCluster, startServer } from '../../tests/integration/lib/server.mjs';
import { newUser } from '../../tests/integration/lib/api.mjs';
import { online, closeAll } from '../../tests/integration/lib/client.mjs';
import { makePng, upload, getMedia } from '../../tests/integration/lib/media.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [W, H] = arg('size', '600x600').split('x').map(Number);
const ROUNDS = Number(arg('rounds', 7));

const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;
const median = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];
const fmt = (v) => `median ${median(v).toFixed(1)} ms (min ${Math.min(...v).toFixed(1)}, max ${Math.max(...v).toFixed(1)})`;

async function run(label, srv, reader) {
  const up = [], first = [], later = [];
  const a = await newUser(srv.nodes ? srv.nodes[0] : srv, 'ma');
  const b = await newUser(srv.nodes ? srv.nodes[0] : srv, 'mb');
  const node = srv.nodes ? srv.nodes[0] : srv;
  const ca = await online(node, a);
  let bytes = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const png = makePng(W, H, { fill: 'noise', level: 0 });
    bytes = png.length;
    let t = process.hrtime.bigint();
    const u = await upload(node, a.token, png, 'image/png');
    up.push(ms(t));
    if (u.status !== 201) throw new Error(`upload: ${u.status} ${u.body}`);
    ca.send({ type: 'send', id: `s${i}`, to: b.user, media: { media_id: u.json.media_id } });
    await ca.next((f) => f.id === `s${i}` && (f.type === 'sent' || f.type === 'error'));
    if (!reader) continue;
    // a range, so that the read never counts as the fetch that deletes the media
    t = process.hrtime.bigint();
    if ((await getMedia(reader, b.token, u.json.media_id, { headers: { range: 'bytes=0-' } })).status !== 206) throw new Error('read');
    first.push(ms(t));
    t = process.hrtime.bigint();
    await getMedia(reader, b.token, u.json.media_id, { headers: { range: 'bytes=0-' } });
    later.push(ms(t));
  }
  await closeAll(ca);
  console.log(`${label}: ${(bytes / 1048576).toFixed(2)} MiB PNG, ${ROUNDS} rounds`);
  console.log(`  upload → 201: ${fmt(up)}`);
  if (reader) {
    console.log(`  first read on another node (fetch from JetStream): ${fmt(first)}`);
    console.log(`  later read there (local copy): ${fmt(later)}`);
  }
}

const one = await startServer({});
try { await run('rocksdb, one node', one, null); } finally { await one.close(); }
const cl = await startCluster(3, {});
try { await run('nats R3, 3 nodes', cl, cl.nodes[1]); } finally { await cl.close(); }
process.exit(0);
