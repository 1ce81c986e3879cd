// Load for the crash tests: senders that keep a window of sends in flight and record every
// `sent` answer, receivers that record and ack what arrives, and the check that every message
// answered `sent` was delivered exactly once (after de-dup by msg_id), in per-pair order.
//
//   const st = sender(acct, to);  const rec = receiver(acct, from);
//   attachReceiver(c, rec); await runSender(c, st, ids, onSent);
//   checkDelivered(st, rec, sentBefore, n);
import assert from 'node:assert/strict';

/** A sender's record: what it sent and what came back. */
export function sender(acct, to) {
  return { acct, name: acct.user, to, sent: new Map(), errors: [], conflicts: [], receipts: [], msgs: [] };
}

/** A receiver's record. */
export function receiver(acct, from) {
  return { acct, name: acct.user, from, msgs: [], receipts: [] };
}

/** Records every msg and receipt on c and acks as it goes (every 100 envelopes and on a timer). */
export function attachReceiver(c, rec) {
  let top = 0;
  let acked = 0;
  c.tap = (f) => {
    if (f.type === 'msg' || f.type === 'receipt') {
      if (f.type === 'msg') rec.msgs.push(f);
      if (f.type === 'receipt') rec.receipts.push(f);
      top = Math.max(top, f.seq);
      if (top - acked >= 100) { c.ack(top); acked = top; }
      return true;
    }
    return false;
  };
  const timer = setInterval(() => { if (top > acked && c.isOpen) { c.ack(top); acked = top; } }, 50);
  c.closed.then(() => clearInterval(timer));
  return () => clearInterval(timer);
}

/**
 * Sends the client ids in queue from c, window sends in flight, recording answers in st.
 * Resolves 'done' when the queue is answered, or 'closed' when the connection dies first.
 */
export function runSender(c, st, queue, onSent, window = 400) {
  return new Promise((resolve) => {
    let next = 0;
    let inflight = 0;
    const pump = () => {
      while (inflight < window && next < queue.length && c.isOpen) {
        const i = queue[next++];
        c.send({ type: 'send', id: `id-${i}`, to: st.to, body: `${st.name}:${i}` });
        inflight++;
      }
      if (inflight === 0 && next >= queue.length) resolve('done');
    };
    const prevTap = c.tap;
    c.tap = (f) => {
      if (f.type === 'sent' || f.type === 'error') {
        inflight--;
        const i = Number(f.id.slice(3));
        if (f.type === 'sent') {
          if (st.sent.has(i) && st.sent.get(i) !== f.msg_id) st.conflicts.push(`${f.id}: ${st.sent.get(i)} then ${f.msg_id}`);
          st.sent.set(i, f.msg_id);
          onSent?.();
        } else st.errors.push(f);
        pump();
        return true;
      }
      return prevTap ? prevTap(f) : false;
    };
    c.closed.then(() => resolve('closed'));
    pump();
  });
}

/** Distinct msg_ids a receiver has. */
export function distinct(rec) { return new Set(rec.msgs.map((m) => m.msg_id)).size; }

/**
 * Every message st got `sent` for (sentBefore: those answered before the crash, a subset) was
 * delivered to rec with that msg_id, once after de-dup, in the order sent; n messages in all.
 * Ids in unordered (sent again after an error, so sent later) are left out of the order check.
 * Returns the count of redelivered duplicates (delivery is at least once).
 */
export function checkDelivered(st, rec, sentBefore, n, unordered = new Set()) {
  const idToMsg = new Map(); // client index → msg_id at the receiver
  const firstOrder = [];
  const seen = new Set();
  let dups = 0;
  for (const m of rec.msgs) {
    assert.equal(m.from, st.name);
    assert.equal(m.to, rec.name);
    const [who, idx] = m.body.split(':');
    assert.equal(who, st.name);
    const i = Number(idx);
    if (seen.has(m.msg_id)) { dups++; continue; }
    seen.add(m.msg_id);
    if (idToMsg.has(i)) assert.fail(`${rec.name}: client id ${i} delivered as two messages (${idToMsg.get(i)} and ${m.msg_id})`);
    idToMsg.set(i, m.msg_id);
    if (!unordered.has(i)) firstOrder.push(i);
  }
  for (const [i, msgId] of sentBefore) {
    assert.ok(idToMsg.has(i), `${rec.name}: message ${i} got "sent" before the crash but was never delivered`);
    assert.equal(idToMsg.get(i), msgId, `${rec.name}: message ${i} delivered with another msg_id than its sent answer`);
  }
  for (const [i, msgId] of st.sent) assert.equal(idToMsg.get(i), msgId, `message ${i}: sent ${msgId}, delivered ${idToMsg.get(i)}`);
  assert.equal(idToMsg.size, n);
  for (let j = 1; j < firstOrder.length; j++) {
    if (firstOrder[j] < firstOrder[j - 1]) {
      assert.fail(`${rec.name}: per-pair order broken: message ${firstOrder[j]} arrived after ${firstOrder[j - 1]}`);
    }
  }
  return dups;
}
