// client: the messaging logic, independent of the DOM. It owns the connection, the history in
// IndexedDB, the outbox, acks, receipts, presence and typing, and tells the UI what changed.
//
// Invariants (PROTOCOL sections 4-6):
//  - Every frame from the server is handled in arrival order through one promise queue, so
//    envelopes are stored in seq order and a 'sent' never races the message it answers.
//  - An envelope is acked only after the IndexedDB transaction that stores its effect has
//    committed: a crash or reload between the two makes the server send it again, and it is
//    then dropped by seq (and by msg_id) and acked.
//  - The outbox is sent in order on every (re)connection with the same client ids; the server
//    answers a repeated id with the original 'sent', so nothing is delivered twice.
//
// Events: 'state' (connection), 'chats', 'messages' {peer}, 'presence' {user}, 'typing' {user},
// 'progress' {key, peer, fraction}, 'toast' {text}, 'notify' {msg}, 'ended' {code}.
import { openDb, write, read, reqP, getMeta, loadMessages, allChats, getBlob, putBlob, nextOrder } from './db.js';
import { Conn } from './conn.js';
import * as api from './api.js';
import { newClientId } from './util.js';

const RANK = { failed: -1, queued: 0, sent: 1, delivered: 2, read: 3 };
const rank = (s) => (s in RANK ? RANK[s] : 0);
const TYPING_SEND_EVERY_MS = 3000; // at most one "composing" per 3 s while typing
const TYPING_PAUSE_AFTER_MS = 4000; // "paused" after 4 s without a keystroke
const TYPING_SHOW_MS = 7000; // a peer's "typing…" fades if no update arrives
const READ_CHUNK = 1000; // PROTOCOL: 1-1000 msg_ids per read frame
const PENDING_TTL_MS = 31 * 86400000;

export function previewOf(m) {
  if (m.media) return m.body ? `Photo: ${m.body}` : 'Photo';
  return m.body || '';
}

export class Client extends EventTarget {
  constructor(session) {
    super();
    this.session = session; // {user, device_id, token}
    this.user = session.user;
    this.db = null;
    this.conn = null;
    this.lastSeq = 0;
    this.ackSeq = 0; // highest seq stored, to ack
    this.ackTimer = null;
    this.q = Promise.resolve();
    this.gen = 0; // connection generation: bumped when a connection ends
    this.inflight = new Set(); // client ids sent on this connection, awaiting 'sent'
    this.pumping = false;
    this.pumpAgain = false;
    this.progress = new Map(); // client id -> upload fraction
    this.presence = new Map(); // user -> {online, last_seen}
    this.typingFrom = new Map(); // user -> expiry ms
    this.typingTimers = new Map();
    this.watched = new Set();
    this.activePeer = null; // the conversation on screen
    this.skew = 0; // server clock - local clock (ms), from "ready"
    this.myTyping = { peer: null, sentAt: 0, timer: null };
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async start() {
    this.db = await openDb(this.user);
    this.db.onclose = () => this.emit('ended', { code: 'db' });
    this.lastSeq = await getMeta(this.db, `seq:${this.session.device_id}`, 0);
    this.purgeOldPending().catch(() => {});
    this.conn = new Conn(this.session.token);
    this.conn.addEventListener('state', (e) => {
      if (e.detail === 'connecting') {
        this.inflight.clear();
        this.gen++;
      }
      this.emit('state', e.detail);
    });
    this.conn.addEventListener('ended', (e) => this.emit('ended', e.detail));
    this.conn.addEventListener('frame', (e) => {
      const f = e.detail;
      const gen = this.gen;
      this.q = this.q.then(() => {
        // Frames of a connection that has been dropped are not handled: an ack of a later seq
        // would also acknowledge one that failed to store.
        if (gen === this.gen) return this.handle(f);
      }).catch((err) => {
        console.error('tern: frame', f.type, err);
        if (f.seq !== undefined && gen === this.gen) {
          // Not stored, so not acked: drop the connection, and the server sends it again.
          this.gen++;
          this.conn.attempt = Math.max(this.conn.attempt, 4); // retry in seconds, not at once
          this.conn.drop();
          this.emit('toast', { text: 'A message could not be saved in this browser (is its storage full?). Retrying.' });
        }
      });
    });
    this.conn.start();
  }

  stop() {
    if (this.conn) this.conn.stop();
    clearTimeout(this.ackTimer);
    clearTimeout(this.myTyping.timer);
    for (const t of this.typingTimers.values()) clearTimeout(t);
    if (this.db) {
      this.db.onclose = null;
      this.db.close();
    }
  }

  get state() {
    return this.conn ? this.conn.state : 'connecting';
  }

  // ---------------------------------------------------------------------------------------
  // frames from the server

  async handle(f) {
    switch (f.type) {
      case 'ready':
        // Queued messages are stamped with the server's clock, so they sort among the others.
        if (Number.isFinite(f.server_time)) this.skew = f.server_time - Date.now();
        this.inflight.clear();
        for (const u of this.watched) this.conn.send({ type: 'watch', users: [u] });
        this.pump();
        return;
      case 'synced':
        this.flushReads();
        return;
      case 'msg':
        return this.onMsg(f);
      case 'receipt':
        return this.onReceipt(f);
      case 'sent':
        return this.onSent(f);
      case 'error':
        return this.onError(f);
      case 'presence':
        this.presence.set(f.user, { online: !!f.online, last_seen: f.last_seen ?? null });
        this.emit('presence', { user: f.user });
        return;
      case 'typing':
        return this.onTyping(f);
      default:
        return;
    }
  }

  ack(seq) {
    if (seq > this.ackSeq) this.ackSeq = seq;
    // One ack per burst (it is cumulative), sent once the queue has drained.
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.conn.send({ type: 'ack', seq: this.ackSeq });
    }, 0);
  }

  async onMsg(f) {
    if (!(f.seq > this.lastSeq)) return this.ack(f.seq);
    const mine = f.from === this.user;
    const peer = mine ? f.to : f.from;
    const seqKey = `seq:${this.session.device_id}`;
    const rec = await write(this.db, ['messages', 'chats', 'pending', 'meta'], async (s) => {
      s.meta.put({ k: seqKey, v: f.seq });
      const have = await reqP(s.messages.index('msg_id').getKey(f.msg_id));
      if (have !== undefined) return null; // at-least-once delivery: a repeat
      const m = { key: f.msg_id, n: nextOrder(), msg_id: f.msg_id, peer, from: f.from, to: f.to, dir: mine ? 'out' : 'in', ts: f.ts, body: f.body || '' };
      if (f.media && f.media.media_id) m.media = f.media;
      if (mine) m.status = 'sent';
      else m.unread = 1;
      const p = await reqP(s.pending.get(f.msg_id));
      if (p) {
        if (mine && rank(p.status) > rank(m.status)) m.status = p.status;
        if (!mine && p.status === 'read') delete m.unread; // read on another of my devices
        s.pending.delete(f.msg_id);
      }
      s.messages.put(m);
      await this.bumpChat(s, m, m.unread ? 1 : 0);
      return m;
    });
    this.lastSeq = f.seq;
    this.ack(f.seq);
    if (!rec) return;
    if (!mine) this.stopTypingOf(f.from);
    this.emit('messages', { peer });
    this.emit('chats');
    if (!mine) {
      if (peer === this.activePeer && this.attentive()) this.markSeen(peer);
      else this.emit('notify', { msg: rec });
    }
  }

  async onReceipt(f) {
    if (!(f.seq > this.lastSeq)) return this.ack(f.seq);
    const seqKey = `seq:${this.session.device_id}`;
    const ids = Array.isArray(f.msg_ids) ? f.msg_ids : [];
    const outgoing = f.from === this.user && f.by !== this.user; // ticks on what I sent
    const readHere = f.by === this.user && f.from !== this.user && f.status === 'read'; // I read it elsewhere
    const peers = new Set();
    await write(this.db, ['messages', 'chats', 'pending', 'meta'], async (s) => {
      s.meta.put({ k: seqKey, v: f.seq });
      if (!outgoing && !readHere) return;
      for (const id of ids) {
        const key = await reqP(s.messages.index('msg_id').getKey(id));
        if (key === undefined) {
          // The receipt overtook the message ('sent' not seen yet, e.g. after a reconnect):
          // keep it until the message is stored.
          const p = await reqP(s.pending.get(id));
          if (!p || rank(f.status) > rank(p.status)) s.pending.put({ msg_id: id, status: f.status, at: Date.now() });
          continue;
        }
        const m = await reqP(s.messages.get(key));
        if (outgoing && m.dir === 'out' && rank(f.status) > rank(m.status)) {
          m.status = f.status;
          s.messages.put(m);
          await this.touchChat(s, m);
          peers.add(m.peer);
        } else if (readHere && m.dir === 'in' && (m.unread || m.rr)) {
          delete m.unread;
          delete m.rr;
          s.messages.put(m);
          peers.add(m.peer);
        }
      }
      if (readHere) for (const p of peers) await this.recountUnread(s, p);
    });
    this.lastSeq = f.seq;
    this.ack(f.seq);
    for (const p of peers) this.emit('messages', { peer: p });
    if (peers.size) this.emit('chats');
  }

  async onSent(f) {
    this.inflight.delete(f.id);
    const rec = await write(this.db, ['messages', 'outbox', 'chats', 'pending'], async (s) => {
      await this.deleteFromOutbox(s, f.id);
      const m = await reqP(s.messages.get(f.id));
      if (!m) return null;
      if (m.msg_id === f.msg_id && rank(m.status) >= rank('sent')) return null; // a repeated answer
      m.msg_id = f.msg_id;
      m.ts = f.ts || m.ts;
      if (rank(m.status) < rank('sent')) m.status = 'sent';
      const p = await reqP(s.pending.get(f.msg_id));
      if (p) {
        if (rank(p.status) > rank(m.status)) m.status = p.status;
        s.pending.delete(f.msg_id);
      }
      delete m.error;
      s.messages.put(m);
      await this.touchChat(s, m);
      return m;
    });
    if (rec) {
      this.emit('messages', { peer: rec.peer });
      this.emit('chats');
    }
  }

  async onError(f) {
    if (f.code === 'no_such_user' && f.user) {
      this.presence.set(f.user, { online: false, last_seen: null, unknown: true });
      this.emit('presence', { user: f.user });
      return;
    }
    if (!f.id) return; // e.g. a refused typing/read frame: nothing the user can act on
    this.inflight.delete(f.id);
    if (f.code === 'rate_limited') {
      // Stays in the outbox; try again shortly, in order.
      setTimeout(() => this.pump(), 2000);
      return;
    }
    const text = f.code === 'no_such_user' ? 'There is no user with that name.' : f.message || f.code;
    await this.failMessage(f.id, text);
  }

  async failMessage(id, text) {
    const rec = await write(this.db, ['messages', 'outbox', 'chats'], async (s) => {
      await this.deleteFromOutbox(s, id);
      const m = await reqP(s.messages.get(id));
      if (!m) return null;
      m.status = 'failed';
      m.error = text;
      s.messages.put(m);
      await this.touchChat(s, m);
      return m;
    });
    this.emit('toast', { text: `Message not sent: ${text}` });
    if (rec) {
      this.emit('messages', { peer: rec.peer });
      this.emit('chats');
    }
  }

  onTyping(f) {
    const u = f.from;
    if (!u) return;
    if (f.state === 'composing') {
      this.typingFrom.set(u, Date.now() + TYPING_SHOW_MS);
      clearTimeout(this.typingTimers.get(u));
      this.typingTimers.set(u, setTimeout(() => this.stopTypingOf(u), TYPING_SHOW_MS));
      this.emit('typing', { user: u });
    } else this.stopTypingOf(u);
  }

  stopTypingOf(u) {
    clearTimeout(this.typingTimers.get(u));
    this.typingTimers.delete(u);
    if (this.typingFrom.delete(u)) this.emit('typing', { user: u });
  }

  isTyping(u) {
    return (this.typingFrom.get(u) || 0) > Date.now();
  }

  // ---------------------------------------------------------------------------------------
  // chats (inside write transactions)

  async bumpChat(s, m, unreadDelta) {
    const c = (await reqP(s.chats.get(m.peer))) || { peer: m.peer, unread: 0, last_ts: 0 };
    if (!c.last_key || m.ts >= c.last_ts || c.last_key === m.key) this.setLast(c, m);
    c.unread = Math.max(0, (c.unread || 0) + unreadDelta);
    s.chats.put(c);
  }

  setLast(c, m) {
    c.last_ts = m.ts;
    c.last_key = m.key;
    c.preview = previewOf(m);
    c.last_dir = m.dir;
    c.last_status = m.status;
  }

  /** Refreshes the chat's last-message line when m is (or now is) its last message. */
  async touchChat(s, m) {
    const c = await reqP(s.chats.get(m.peer));
    if (!c) return this.bumpChat(s, m, 0);
    if (c.last_key === m.key || m.ts >= c.last_ts) {
      this.setLast(c, m);
      s.chats.put(c);
    }
  }

  async recountUnread(s, peer) {
    const c = await reqP(s.chats.get(peer));
    if (!c) return;
    c.unread = await reqP(s.messages.index('unread').count(IDBKeyRange.only([peer, 1])));
    s.chats.put(c);
  }

  async deleteFromOutbox(s, id) {
    const all = await reqP(s.outbox.getAll());
    for (const it of all) if (it.id === id) s.outbox.delete(it.n);
  }

  async purgeOldPending() {
    const cutoff = Date.now() - PENDING_TTL_MS;
    await write(this.db, ['pending'], async (s) => {
      const all = await reqP(s.pending.getAll());
      for (const p of all) if (!(p.at > cutoff)) s.pending.delete(p.msg_id);
    });
  }

  // ---------------------------------------------------------------------------------------
  // what the UI asks for

  chats() {
    return allChats(this.db);
  }

  messages(peer, limit) {
    return loadMessages(this.db, peer, limit);
  }

  blob(key) {
    return getBlob(this.db, key);
  }

  saveBlob(key, blob) {
    return putBlob(this.db, key, blob);
  }

  async sendText(peer, body) {
    const id = newClientId();
    const m = { key: id, n: nextOrder(), id, peer, from: this.user, to: peer, dir: 'out', ts: Date.now() + this.skew, body, status: 'queued' };
    await write(this.db, ['messages', 'outbox', 'chats'], async (s) => {
      s.messages.put(m);
      s.outbox.put({ id, to: peer, body });
      await this.bumpChat(s, m, 0);
    });
    this.emit('messages', { peer });
    this.emit('chats');
    this.pump();
  }

  async sendImage(peer, blob, caption, dims) {
    const id = newClientId();
    const local = `up:${id}`;
    const media = { mime: blob.type, size: blob.size, local };
    if (dims) Object.assign(media, dims);
    const m = { key: id, n: nextOrder(), id, peer, from: this.user, to: peer, dir: 'out', ts: Date.now() + this.skew, body: caption || '', media, status: 'queued' };
    await write(this.db, ['messages', 'outbox', 'chats', 'blobs'], async (s) => {
      s.blobs.put({ key: local, blob });
      s.messages.put(m);
      s.outbox.put({ id, to: peer, body: caption || undefined, upload: true });
      await this.bumpChat(s, m, 0);
    });
    this.emit('messages', { peer });
    this.emit('chats');
    this.pump();
  }

  /** A failed message goes again as a new message (a new client id: the old one was refused). */
  async retry(key) {
    const m = await read(this.db, ['messages'], (s) => reqP(s.messages.get(key)));
    if (!m || m.status !== 'failed') return;
    await write(this.db, ['messages', 'chats'], async (s) => {
      s.messages.delete(key);
      const c = await reqP(s.chats.get(m.peer));
      if (c && c.last_key === key) {
        c.last_key = null;
        s.chats.put(c);
      }
    });
    if (m.media && m.media.local && !m.media.media_id) {
      const blob = await this.blob(m.media.local);
      if (blob) return this.sendImage(m.peer, blob, m.body, { width: m.media.width, height: m.media.height });
    }
    return this.sendText(m.peer, m.body);
  }

  /** Sends the outbox in order. Re-entrant calls fold into one more pass. */
  async pump() {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        if (!this.conn || !this.conn.open) break;
        const items = await read(this.db, ['outbox'], (s) => reqP(s.outbox.getAll()));
        let blocked = false;
        for (const it of items) {
          if (this.inflight.has(it.id)) continue;
          if (it.upload) {
            // An image holds the queue until it is uploaded, so that order is kept.
            const ok = await this.upload(it);
            if (ok === 'retry') {
              blocked = true;
              break;
            }
            this.pumpAgain = true; // re-read the outbox: the item changed or left
            break;
          }
          const frame = { type: 'send', id: it.id, to: it.to };
          if (it.body) frame.body = it.body;
          if (it.media_id) frame.media = { media_id: it.media_id };
          if (!this.conn.send(frame)) {
            blocked = true;
            break;
          }
          this.inflight.add(it.id);
        }
        if (blocked) break;
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  /** Uploads an outbox item's image. Returns 'done', 'failed' or 'retry' (network). */
  async upload(it) {
    const local = `up:${it.id}`;
    const blob = await this.blob(local);
    if (!blob) {
      await this.failMessage(it.id, 'the image is no longer available');
      return 'failed';
    }
    const msg = await read(this.db, ['messages'], (s) => reqP(s.messages.get(it.id)));
    const peer = msg ? msg.peer : it.to;
    const progress = (fraction) => {
      this.progress.set(it.id, fraction);
      this.emit('progress', { key: it.id, peer, fraction });
    };
    progress(0);
    let media;
    try {
      media = await api.uploadMedia(this.session.token, blob, progress);
    } catch (e) {
      this.progress.delete(it.id);
      this.emit('progress', { key: it.id, peer, fraction: null });
      if (e.status === 0) return 'retry';
      if (e.status === 401) {
        this.emit('ended', { code: 4001 });
        return 'retry';
      }
      const text = e.status === 404 || e.status === 405 ? "this server doesn't accept images yet" : e.message;
      await this.failMessage(it.id, text);
      return 'failed';
    }
    this.progress.delete(it.id);
    await write(this.db, ['messages', 'outbox'], async (s) => {
      const all = await reqP(s.outbox.getAll());
      for (const o of all) {
        if (o.id !== it.id) continue;
        o.media_id = media.media_id;
        delete o.upload;
        s.outbox.put(o);
      }
      const m = await reqP(s.messages.get(it.id));
      if (m) {
        m.media = { ...m.media, ...media, local };
        s.messages.put(m);
      }
    });
    this.emit('progress', { key: it.id, peer, fraction: null });
    this.emit('messages', { peer });
    return 'done';
  }

  // ---------------------------------------------------------------------------------------
  // reading, typing, presence

  /** The user can see the conversation: the tab is visible and the window focused. */
  attentive() {
    return document.visibilityState === 'visible' && document.hasFocus();
  }

  /** Marks a conversation's incoming messages seen (when it is on screen and attended) and
   *  sends the read receipts now or as soon as the connection is back. */
  async markSeen(peer) {
    if (!peer || !this.attentive()) return;
    const changed = await write(this.db, ['messages', 'chats'], async (s) => {
      const unread = await reqP(s.messages.index('unread').getAll(IDBKeyRange.only([peer, 1])));
      for (const m of unread) {
        delete m.unread;
        if (m.msg_id && m.from !== this.user) m.rr = peer;
        s.messages.put(m);
      }
      const c = await reqP(s.chats.get(peer));
      const had = !!(c && c.unread);
      if (had) {
        c.unread = 0;
        s.chats.put(c);
      }
      return unread.length > 0 || had;
    });
    if (changed) this.emit('chats');
    this.flushReads();
  }

  async flushReads() {
    if (!this.conn || !this.conn.open) return;
    const owed = await read(this.db, ['messages'], (s) => reqP(s.messages.index('rr').getAll()));
    if (!owed.length) return;
    const byPeer = new Map();
    for (const m of owed) {
      if (!byPeer.has(m.rr)) byPeer.set(m.rr, []);
      byPeer.get(m.rr).push(m);
    }
    const sent = [];
    for (const [peer, ms] of byPeer) {
      for (let i = 0; i < ms.length; i += READ_CHUNK) {
        const chunk = ms.slice(i, i + READ_CHUNK);
        if (!this.conn.send({ type: 'read', peer, msg_ids: chunk.map((m) => m.msg_id) })) break;
        sent.push(...chunk);
      }
    }
    if (!sent.length) return;
    await write(this.db, ['messages'], async (s) => {
      for (const m of sent) {
        const cur = await reqP(s.messages.get(m.key));
        if (cur && cur.rr) {
          delete cur.rr;
          s.messages.put(cur);
        }
      }
    });
  }

  /** Call on every keystroke in the composer: sends "composing" at most every 3 s and
   *  "paused" 4 s after the last keystroke. */
  typed(peer) {
    const t = this.myTyping;
    const now = Date.now();
    if (t.peer !== peer) {
      if (t.peer) this.stoppedTyping();
      t.peer = peer;
      t.sentAt = 0;
    }
    if (now - t.sentAt >= TYPING_SEND_EVERY_MS) {
      if (this.conn && this.conn.send({ type: 'typing', to: peer, state: 'composing' })) t.sentAt = now;
    }
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.stoppedTyping(), TYPING_PAUSE_AFTER_MS);
  }

  stoppedTyping() {
    const t = this.myTyping;
    clearTimeout(t.timer);
    t.timer = null;
    if (t.peer && t.sentAt && this.conn) this.conn.send({ type: 'typing', to: t.peer, state: 'paused' });
    t.peer = null;
    t.sentAt = 0;
  }

  watch(user) {
    if (this.watched.has(user)) return;
    this.watched.add(user);
    if (this.conn) this.conn.send({ type: 'watch', users: [user] });
  }

  unwatch(user) {
    if (!this.watched.delete(user)) return;
    if (this.conn) this.conn.send({ type: 'unwatch', users: [user] });
  }

  async outboxSize() {
    return read(this.db, ['outbox'], (s) => reqP(s.outbox.count()));
  }
}
