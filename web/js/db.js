// db: the browser-side store. The server forgets a message once this device has acked it, so
// this IndexedDB database *is* the history. One database per signed-in user ("tern:alice"),
// deleted on logout.
//
// Object stores:
//   messages  key 'key' (client id for what we sent from here, else the server's msg_id;
//             'ev:...' for a group's system line, see groups.js)
//             { key, n, id?, msg_id?, peer, from, to, group_id?, dir:'in'|'out', ts, body, media?,
//               status?: 'queued'|'sent'|'delivered'|'read'|'failed' (outgoing),
//               unread?: 1 (incoming, not yet seen), rr?: peer (read receipt owed), error?,
//               group messages of mine: recipients?, skipped?, members? (who should get it),
//               rcpt?: {user: {d, r}} (each member's delivered and read times),
//               PROTOCOL 15 (actions.js): reply_to?, reactions?: {user: emoji}, edited?: ts,
//               deleted?: true, mentioned?: true (a group message naming this user) }
//             the msg_ids of reactions, edits, deletes and resends are kept as records of
//             their own with peer '\u0000action' or '\u0000resent' (never shown), so that a
//             repeat is dropped
//             indexes: peer_ts [peer, ts, n] (n: local arrival order, see nextOrder);
//             msg_id (unique); unread [peer, unread]; rr
//             peer is the other user, or "g:<group_id>" for a group
//   chats     key 'peer' { peer, group_id?, last_ts, last_key, preview, last_dir, last_status, unread }
//   outbox    autoincrement key 'n' { n, id, to | group_id, body?, media_id?, upload?: true }: sent
//             in n order
//   pending   key 'msg_id' { msg_id, status, at, rcpt? }: receipts for messages not here yet
//   groups    key 'group_id': the groups this user is or was in (groups.js)
//   blobs     key 'key' { key, blob }: 'up:<client id>' (an image we sent), 'thumb:<media_id>',
//             'full:<media_id>' (fetched once: the server deletes media after delivery)
//   meta      key 'k' { k, v }: 'seq:<device_id>' the highest seq stored

const VERSION = 3;

let lastOrder = 0;
/** A local, increasing number stored with each message as `n`: it orders messages with the same
 *  ts (the server's clock has millisecond resolution) by when they were sent or arrived, which
 *  PROTOCOL keeps in order per pair. Microseconds since the epoch, so it keeps increasing
 *  across reloads too. */
export function nextOrder() {
  lastOrder = Math.max(lastOrder + 1, Date.now() * 1000);
  return lastOrder;
}

export function dbName(user) {
  return `tern:${user}`;
}

export function reqP(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export function txDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
    tx.onerror = () => reject(tx.error);
  });
}

export async function openDb(user) {
  const req = indexedDB.open(dbName(user), VERSION);
  req.onupgradeneeded = (ev) => {
    const db = req.result;
    if (ev.oldVersion < 1) {
      const m = db.createObjectStore('messages', { keyPath: 'key' });
      m.createIndex('msg_id', 'msg_id', { unique: true });
      m.createIndex('unread', ['peer', 'unread']);
      m.createIndex('rr', 'rr');
      db.createObjectStore('chats', { keyPath: 'peer' });
      db.createObjectStore('outbox', { keyPath: 'n', autoIncrement: true });
      db.createObjectStore('pending', { keyPath: 'msg_id' });
      db.createObjectStore('blobs', { keyPath: 'key' });
      db.createObjectStore('meta', { keyPath: 'k' });
    }
    const m = req.transaction.objectStore('messages');
    if (ev.oldVersion === 1) {
      // v1 ordered equal timestamps by key (random); v2 by arrival: number what is there.
      m.deleteIndex('peer_ts');
      const c = m.openCursor();
      let i = 0;
      c.onsuccess = () => {
        const cur = c.result;
        if (!cur) return;
        cur.update({ ...cur.value, n: cur.value.ts * 1000 + (i++ % 1000) });
        cur.continue();
      };
    }
    if (ev.oldVersion < 2) m.createIndex('peer_ts', ['peer', 'ts', 'n']);
    if (ev.oldVersion < 3) db.createObjectStore('groups', { keyPath: 'group_id' });
  };
  const db = await reqP(req);
  // Another tab deleting this database (logout there) must not be blocked by us.
  db.onversionchange = () => db.close();
  return db;
}

export async function deleteDb(user) {
  await new Promise((resolve) => {
    const r = indexedDB.deleteDatabase(dbName(user));
    r.onsuccess = r.onerror = r.onblocked = () => resolve();
  });
}

/** Runs fn(stores) in one readwrite transaction over names and resolves when it commits. */
export async function write(db, names, fn) {
  const tx = db.transaction(names, 'readwrite');
  const stores = Object.fromEntries(names.map((n) => [n, tx.objectStore(n)]));
  const done = txDone(tx);
  let result;
  try {
    result = await fn(stores, tx);
  } catch (e) {
    try { tx.abort(); } catch { /* already finished */ }
    await done.catch(() => {});
    throw e;
  }
  await done;
  return result;
}

export async function read(db, names, fn) {
  const tx = db.transaction(names, 'readonly');
  const stores = Object.fromEntries(names.map((n) => [n, tx.objectStore(n)]));
  return fn(stores, tx);
}

export async function getMeta(db, k, dflt = undefined) {
  const r = await read(db, ['meta'], (s) => reqP(s.meta.get(k)));
  return r ? r.v : dflt;
}

/** The last `limit` messages of a conversation, oldest first. */
export async function loadMessages(db, peer, limit) {
  return read(db, ['messages'], (s) => new Promise((resolve, reject) => {
    const out = [];
    const range = IDBKeyRange.bound([peer, -Infinity, -Infinity], [peer, Infinity, Infinity]);
    const c = s.messages.index('peer_ts').openCursor(range, 'prev');
    c.onsuccess = () => {
      const cur = c.result;
      if (cur && out.length < limit) {
        out.push(cur.value);
        cur.continue();
      } else resolve({ messages: out.reverse(), more: !!cur });
    };
    c.onerror = () => reject(c.error);
  }));
}

/** Inside a transaction over messages: a conversation's newest message, or null. */
export function lastMessage(s, peer) {
  const range = IDBKeyRange.bound([peer, -Infinity, -Infinity], [peer, Infinity, Infinity]);
  return reqP(s.messages.index('peer_ts').openCursor(range, 'prev')).then((cur) => (cur ? cur.value : null));
}

export async function allChats(db) {
  const chats = await read(db, ['chats'], (s) => reqP(s.chats.getAll()));
  return chats.sort((a, b) => (b.last_ts || 0) - (a.last_ts || 0));
}

export async function getBlob(db, key) {
  const r = await read(db, ['blobs'], (s) => reqP(s.blobs.get(key)));
  return r ? r.blob : null;
}

export async function putBlob(db, key, blob) {
  await write(db, ['blobs'], (s) => reqP(s.blobs.put({ key, blob })));
}
