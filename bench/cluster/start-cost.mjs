#!/usr/bin/env node
// bench/cluster/start-cost.mjs: how long a fresh ternd node on a 3-server NATS cluster takes
// to start, and then how long a first register and connect (drain to `synced`) take right
// after it is listening, while its start-up reads (the receipt queues of workers it does not
// have, core/receipts.c) still run on its commit thread. It prints figures and never fails on
// a time. Compare two builds by running it with TERND=OLD/ternd and TERND=NEW/ternd.
//
//   TERND=build/ternd node bench/cluster/start-cost.mjs [--starts 4]
import { startCluster, FAST_LIMITS } from '../../tests/integration/lib/server.mjs';
import { startNats } from '../../tests/integration/lib/nats.mjs';
import { newUser } from '../../tests/integration/lib/api.mjs';
import { online } from '../../tests/integration/lib/client.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
if (process.argv.includes('--help')) {
  console.log('usage: TERND=PATH node bench/cluster/start-cost.mjs [--starts N (4)]');
  process.exit(0);
}
const starts = arg('--starts', 4);
const nats = await startNats({ servers: 3 });
try {
  for (let i = 0; i < starts; i++) {
    const t0 = Date.now();
    const srv = await startCluster(1, { nats, args: [...FAST_LIMITS, '--receipts-merge-window', '1s'] });
    const t1 = Date.now();
    const u = await newUser(srv.nodes[0], 'sc');
    const c = await online(srv.nodes[0], u);
    const t2 = Date.now();
    console.log(`start ${i + 1}/${starts}: listening after ${t1 - t0} ms (new namespace: streams created), ` +
      `first register + connect to synced ${t2 - t1} ms`);
    await c.close();
    await srv.close();
  }
} finally {
  await nats.close();
}
