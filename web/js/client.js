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
//  - Groups (section 10): a group's events change its record and add a system line in one
//    transaction with the seq. A group met for the first time in anything but its "created"
//    event is fetched (GET /v1/groups/{id}) before that envelope is stored, in the queue, so
//    the events after it apply on top. HTTP answers (the group object) are applied through the
//    queue too, and only when no event of that group came in meanwhile: the events are the
//    order of record, an answer may be older than an event already applied.
//
// Events: 'state' (connection), 'chats', 'messages' {peer}, 'presence' {user},
// 'typing' {peer, user}, 'group' {group_id}, 'progress' {key, peer, fraction}, 'toast' {text},
// 'notify' {msg, title}, 'ended' {code}.
import { openDb, write, read, reqP, getMeta, loadMessages, lastMessage, allChats, getBlob, putBlob, nextOrder } from './db.js';
import { Conn } from './conn.js';
import * as api from './api.js';
import { newClientId } from './util.js';
import { openSecure } from './secure.js';
import { thumbOf } from './media.js';
import {
  GROUP_ID_RE, isGroupPeer, groupPeer, groupIdOf, blankGroup, fromObject, applyEvent, eventText, othersIn,
  noteReceipt, mergeRcpt, groupTick, isAdmin,
} from './groups.js';
import { actionOf, targetOf, allowed, apply } from './actions.js';

const RANK = { failed: -1, queued: 0, sent: 1, delivered: 2, read: 3 };
const rank = (s) => (s in RANK ? RANK[s] : 0);
const TYPING_SEND_EVERY_MS = 3000; // at most one "composing" per 3 s while typing
const TYPING_PAUSE_AFTER_MS = 4000; // "paused" after 4 s without a keystroke
const TYPING_SHOW_MS = 7000; // a peer's "typing…" fades if no update arrives
const READ_CHUNK = 1000; // PROTOCOL: 1-1000 msg_ids per read frame
const PENDING_TTL_MS = 31 * 86400000;
const LONG_TEXT_BYTES = 32768; // longer encrypted texts go as attachments, as the CLI's do
const TEXT_MIME = 'text/plain; charset=utf-8';

export const DELETED_TEXT = 'This message was deleted';

export function previewOf(m) {
  if (m.deleted) return DELETED_TEXT;
  if (m.undecryptable) return 'Waiting for this message…';
  if (m.media) return m.body ? `Photo: ${m.body}` : 'Photo';
  return m.body || '';
}

/** The chat list's line for a message: a group's incoming ones name the sender. */
export function chatPreview(m, me) {
  if (m.kind === 'event') return eventText(m, me);
  return m.group_id && m.dir === 'in' ? `${m.from}: ${previewOf(m)}` : previewOf(m);
}

const higher = (a, b) => (rank(b) > rank(a) ? b : a);

function typingFrame(peer, state) {
  const gid = groupIdOf(peer);
  return gid ? { type: 'typing', group_id: gid, state } : { type: 'typing', to: peer, state };
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
    this.typingIn = new Map(); // chat peer -> Map(user -> timer): who is typing there
    this.groupCache = new Map(); // group_id -> record, as stored (loaded at start)
    this.evCounts = new Map(); // group_id -> events applied this session (see applyObject)
    this.groupsSynced = false;
    this.watched = new Set();
    this.activePeer = null; // the conversation on screen
    this.skew = 0; // server clock - local clock (ms), from "ready"
    this.myTyping = { peer: null, sentAt: 0, timer: null };
    this.secure = null; // E2E (secure.js), null when unavailable
    this.keysP = Promise.resolve(); // this connection's key publication, awaited before sends
    this.mutes = new Map(); // chat peer -> until (MS, or null: forever), from GET /v1/mutes
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async start() {
    this.db = await openDb(this.user);
    this.db.onclose = () => this.emit('ended', { code: 'db' });
    this.lastSeq = await getMeta(this.db, `seq:${this.session.device_id}`, 0);
    for (const g of await read(this.db, ['groups'], (s) => reqP(s.groups.getAll()))) this.groupCache.set(g.group_id, g);
    this.purgeOldPending().catch(() => {});
    try {
      this.secure = await openSecure(this.session);
    } catch (e) {
      console.warn('tern: E2E state not opened', e);
    }
    if (this.secure) this.secure.onChange = (user) => this.keyChangeLine(user);
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
    for (const m of this.typingIn.values()) for (const t of m.values()) clearTimeout(t);
    if (this.secure && this.secure.e.kv.close) this.secure.e.kv.close();
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
        if (this.secure) this.keysP = this.secure.publish();
        this.pump();
        return;
      case 'synced':
        this.flushReads();
        this.loadMutes();
        if (!this.groupsSynced) {
          this.groupsSynced = true;
          this.syncGroups().catch((e) => console.warn('tern: groups not listed', e));
        }
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
      case 'group':
        return this.onGroup(f);
      case 'profile':
        // live only, like presence: a watched user's new display name or avatar (PROTOCOL 15)
        if (typeof f.user === 'string') this.emit('profile', f);
        return;
      case 'decrypt_error':
        return this.onDecryptError(f);
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
    const gid = typeof f.group_id === 'string' && GROUP_ID_RE.test(f.group_id) ? f.group_id : null;
    // A new device, or one logged in after the group was made, meets groups in their messages.
    if (gid) await this.ensureGroup(gid, true);
    const mine = f.from === this.user;
    const peer = gid ? groupPeer(gid) : mine ? f.to : f.from;
    let sec = null; // {inner} or {error} of an encrypted message
    if (f.e2e) {
      // A repeat (a lost ack) is not decrypted again: its keys are spent.
      const have = await read(this.db, ['messages'], (s) => reqP(s.messages.index('msg_id').getKey(f.msg_id)));
      if (have === undefined) sec = this.secure ? await this.secure.decrypt(f) : { error: 'this browser has no keys' };
      if (sec && sec.error) {
        console.warn('tern: could not decrypt', f.msg_id, sec.error);
        if (typeof f.from_device === 'string') this.conn.send({ type: 'decrypt_error', peer: f.from, device_id: f.from_device, msg_id: f.msg_id });
      }
    }
    const inner = sec && sec.inner;
    if (inner && !inner.body && inner.media && /^text\/plain/i.test(inner.media.mime || '')) {
      // A long text sent as an encrypted attachment: fetched and shown in place.
      try {
        const blob = await api.mediaBlob(this.session.token, inner.media.media_id, false);
        inner.body = new TextDecoder().decode(await this.secure.unseal(await blob.arrayBuffer(), inner.media));
        delete inner.media;
      } catch (e) {
        console.warn('tern: a long message could not be fetched', e);
        inner.body = '[a long message that could not be downloaded]';
        delete inner.media;
      }
    }
    // A reaction, edit or delete (PROTOCOL 15): inside the ciphertext when encrypted, but a
    // delete is always outside. It changes the message it names and has no bubble of its own.
    const action = actionOf({ delete: f.delete }) || (f.e2e ? actionOf(inner, inner && inner.body) : actionOf(f, f.body));
    const rec = await write(this.db, ['messages', 'chats', 'pending', 'meta', 'blobs'], async (s) => {
      this.putSeq(s, f.seq);
      const have = await reqP(s.messages.index('msg_id').getKey(f.msg_id));
      if (have !== undefined) return null; // at-least-once delivery: a repeat
      if (action) {
        // An action sent again after our decrypt_error: the placeholder its first copy left
        // ("Waiting for this message") goes, and the action applies as it would have.
        if (inner && inner.resend_of) await this.dropPlaceholder(s, inner.resend_of);
        return this.applyAction(s, action, { peer, from: f.from, ts: f.ts, msg_id: f.msg_id, gid });
      }
      if (inner && inner.resend_of) {
        // Sent again after our decrypt_error: it takes the placeholder's place.
        const oldKey = await reqP(s.messages.index('msg_id').getKey(inner.resend_of));
        const old = oldKey !== undefined && (await reqP(s.messages.get(oldKey)));
        if (old) {
          const was = !!old.undecryptable;
          if (was) {
            delete old.undecryptable;
            old.body = inner.body || '';
            if (inner.media) old.media = inner.media;
            old.e2e = true;
            s.messages.put(old);
            await this.touchChat(s, old);
          }
          // Its own id stays known (a repeat is dropped), out of every conversation.
          s.messages.put({ key: f.msg_id, n: 0, msg_id: f.msg_id, peer: '\u0000resent', ts: 0, dir: 'in' });
          return was ? old : null;
        }
      }
      const m = { key: f.msg_id, n: nextOrder(), msg_id: f.msg_id, peer, from: f.from, to: f.to, dir: mine ? 'out' : 'in', ts: f.ts, body: f.body || '' };
      if (gid) m.group_id = gid;
      if (f.media && f.media.media_id) m.media = f.media;
      if (typeof f.reply_to === 'string') m.reply_to = f.reply_to;
      // mentions are outside the ciphertext too (the server pushes on them)
      if (gid && Array.isArray(f.mentions) && f.mentions.includes(this.user)) m.mentioned = true;
      if (f.e2e) {
        m.e2e = true;
        if (f.from_device) m.from_device = f.from_device;
        if (inner) {
          m.body = inner.body || '';
          if (inner.media && inner.media.media_id) m.media = inner.media;
          else delete m.media;
          if (inner.reply_to) m.reply_to = inner.reply_to;
          if (inner.reaction) m.reaction = inner.reaction;
          if (inner.edit) m.edit = inner.edit;
        } else {
          m.undecryptable = true;
          m.body = '';
          delete m.media;
        }
      }
      if (mine) m.status = 'sent';
      else m.unread = 1;
      if (gid && mine) {
        // Sent from another of my devices: its 'sent' (and recipients) went there; count the
        // other members as this device knows them.
        m.members = othersIn(this.groupCache.get(gid), this.user);
        m.recipients = m.members.length;
      }
      const p = await reqP(s.pending.get(f.msg_id));
      if (p) {
        this.applyPending(m, p);
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
    if (!mine && !action) this.stopTypingOf(peer, f.from);
    this.emit('messages', { peer });
    this.emit('chats');
    if (action) return; // no notification, no read receipt of its own
    if (!mine) {
      if (peer === this.activePeer && this.attentive()) this.markSeen(peer);
      // A muted chat stays quiet, unless the message mentions this user (PROTOCOL 15).
      else if (!this.isMuted(peer) || rec.mentioned) this.emit('notify', { msg: rec, title: gid ? this.groupName(gid) : f.from });
    }
  }

  /** Applies a reaction, edit or delete (inside a write transaction over messages, chats and
   *  blobs): to the message it names, when it is of this conversation and the rules of
   *  actions.js allow it. A delete whose message never came (the server replaced it, waiting
   *  in the inbox, by the delete: PROTOCOL 15) leaves a "deleted" bubble in its place. The
   *  action's own msg_id is kept, out of every conversation, so that a repeat is dropped.
   *  Returns the changed message or null. */
  async applyAction(s, a, { peer, from, ts, msg_id, gid }) {
    if (msg_id) s.messages.put({ key: msg_id, n: 0, msg_id, peer: '\u0000action', ts: 0, dir: 'in' });
    const id = targetOf(a);
    const key = await reqP(s.messages.index('msg_id').getKey(id));
    let m = key === undefined ? null : await reqP(s.messages.get(key));
    if (!m) {
      if (a.kind !== 'delete') return null; // a reaction or edit of a message not here: nothing to show
      m = { key: id, n: nextOrder(), msg_id: id, peer, from, dir: from === this.user ? 'out' : 'in', ts, body: '', deleted: true };
      if (gid) m.group_id = gid;
      if (from === this.user) m.status = 'sent';
      s.messages.put(m);
      await this.bumpChat(s, m, 0);
      return m;
    }
    const g = m.group_id && this.groupCache.get(m.group_id);
    if (m.peer !== peer || !allowed(a, m, from, ts, (u) => isAdmin(g, u))) return null;
    if (a.kind === 'delete' && m.media && m.media.media_id) {
      // what this browser kept of its media goes too (the server ends its grants)
      s.blobs.delete(`thumb:${m.media.media_id}`);
      s.blobs.delete(`full:${m.media.media_id}`);
    }
    const wasUnread = !!m.unread;
    apply(a, m, from, ts);
    if (a.kind === 'delete') {
      delete m.unread;
      delete m.rr;
    }
    s.messages.put(m);
    await this.touchChat(s, m);
    if (wasUnread && !m.unread) await this.recountUnread(s, m.peer);
    return m;
  }

  /** Removes the undecryptable placeholder of msg_id (its id stays known, out of every
   *  conversation, so that a repeat is dropped), mending the chat's line and unread count. */
  async dropPlaceholder(s, msgId) {
    const key = await reqP(s.messages.index('msg_id').getKey(msgId));
    const old = key === undefined ? null : await reqP(s.messages.get(key));
    if (!old || !old.undecryptable) return;
    s.messages.put({ key: old.key, n: 0, msg_id: msgId, peer: '\u0000resent', ts: 0, dir: 'in' });
    const c = await reqP(s.chats.get(old.peer));
    if (c && c.last_key === old.key) {
      const prev = await lastMessage(s, old.peer);
      if (prev) this.setLast(c, prev);
      else c.last_key = null;
      s.chats.put(c);
    }
    await this.recountUnread(s, old.peer);
  }

  putSeq(s, seq) {
    s.meta.put({ k: `seq:${this.session.device_id}`, v: seq });
  }

  /** A receipt kept for a message that was not here yet, applied to it now. */
  applyPending(m, p) {
    if (m.dir !== 'out') return;
    if (m.group_id) {
      if (p.rcpt) m.rcpt = mergeRcpt(m.rcpt, p.rcpt);
      m.status = higher(m.status, groupTick(m));
    } else m.status = higher(m.status, p.status);
  }

  async onReceipt(f) {
    if (!(f.seq > this.lastSeq)) return this.ack(f.seq);
    const ids = Array.isArray(f.msg_ids) ? f.msg_ids : [];
    // `by` is a name in 1:1 receipts and a list in group ones.
    const by = Array.isArray(f.by) ? f.by.filter((u) => typeof u === 'string') : typeof f.by === 'string' ? [f.by] : [];
    const others = by.filter((u) => u !== this.user);
    const group = typeof f.group_id === 'string';
    const ts = Number.isFinite(f.ts) ? f.ts : Date.now() + this.skew;
    const outgoing = f.from === this.user && others.length > 0; // ticks on what I sent
    const readHere = by.includes(this.user) && f.from !== this.user && f.status === 'read'; // I read it elsewhere
    const peers = new Set();
    await write(this.db, ['messages', 'chats', 'pending', 'meta'], async (s) => {
      this.putSeq(s, f.seq);
      if (!outgoing && !readHere) return;
      for (const id of ids) {
        const key = await reqP(s.messages.index('msg_id').getKey(id));
        if (key === undefined) {
          // The receipt overtook the message ('sent' not seen yet, e.g. after a reconnect):
          // keep it until the message is stored.
          const old = await reqP(s.pending.get(id));
          const p = old || { msg_id: id, status: f.status };
          p.status = higher(p.status, f.status);
          p.at = Date.now();
          if (group && outgoing) p.rcpt = noteReceipt(p.rcpt, others, f.status, ts);
          s.pending.put(p);
          continue;
        }
        const m = await reqP(s.messages.get(key));
        if (outgoing && m.dir === 'out' && m.group_id) {
          // Each member's times are kept (the message info view), the ticks follow from them.
          m.rcpt = noteReceipt(m.rcpt, others, f.status, ts);
          m.status = higher(m.status, groupTick(m));
          s.messages.put(m);
          await this.touchChat(s, m);
          peers.add(m.peer);
        } else if (outgoing && m.dir === 'out' && rank(f.status) > rank(m.status)) {
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
    if (this.secure && f.msg_id) await this.secure.noteSent(f.id, f.msg_id).catch(() => {});
    const rec = await write(this.db, ['messages', 'outbox', 'chats', 'pending', 'blobs'], async (s) => {
      const it = await this.outboxItem(s, f.id);
      await this.deleteFromOutbox(s, f.id);
      const action = it && actionOf(it, it.body);
      if (action) {
        // Applied here once the server took it: it says, for a delete or an edit, whether it may.
        if (!f.msg_id) return null;
        return this.applyAction(s, action, { peer: it.group_id ? groupPeer(it.group_id) : it.to, from: this.user, ts: f.ts || Date.now() + this.skew, msg_id: f.msg_id });
      }
      const m = await reqP(s.messages.get(f.id));
      if (!m) return null;
      if (m.msg_id === f.msg_id && rank(m.status) >= rank('sent')) return null; // a repeated answer
      m.msg_id = f.msg_id;
      m.ts = f.ts || m.ts;
      if (rank(m.status) < rank('sent')) m.status = 'sent';
      if (m.group_id) {
        // Who it is for: the members as this device knows them now (the server counts them at
        // acceptance, which is a moment ago); how many the server reached, and who it skipped.
        m.members = othersIn(this.groupCache.get(m.group_id), this.user);
        m.recipients = Number.isInteger(f.recipients) ? f.recipients : m.members.length;
        if (Array.isArray(f.skipped) && f.skipped.length) m.skipped = f.skipped.filter((u) => typeof u === 'string');
      }
      const p = await reqP(s.pending.get(f.msg_id));
      if (p) {
        this.applyPending(m, p);
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
    if (f.code === 'devices_changed' && this.secure) {
      // Sessions for the missing devices, none for the extra ones, then the same id again.
      let again = false;
      try {
        again = await this.secure.devicesChanged(f);
      } catch (e) {
        console.warn('tern: devices_changed', e);
        setTimeout(() => this.pump(), 3000); // the key fetch failed: try again later
        return;
      }
      if (again) {
        this.pump();
        return;
      }
      return this.failMessage(f.id, 'the recipient\'s devices kept changing');
    }
    if (f.code === 'no_keys') {
      // The recipient has no device with keys: a text goes in plaintext, as the CLI does;
      // an encrypted attachment cannot.
      const plain = await write(this.db, ['outbox', 'messages'], async (s) => {
        const all = await reqP(s.outbox.getAll());
        const it = all.find((o) => o.id === f.id);
        if (!it || it.media_e2e) return false;
        it.plain = true;
        s.outbox.put(it);
        const m = await reqP(s.messages.get(f.id));
        if (m) {
          delete m.e2e;
          s.messages.put(m);
        }
        return true;
      });
      if (plain) {
        if (this.secure) this.secure.noKeys.set(f.to, Date.now());
        this.pump();
        return;
      }
    }
    const text = f.code === 'no_such_user' ? 'There is no user with that name.'
      : f.code === 'no_such_group' ? 'you are not a member of this group' : f.message || f.code;
    await this.failMessage(f.id, text);
  }

  async failMessage(id, text) {
    let action = null;
    const rec = await write(this.db, ['messages', 'outbox', 'chats'], async (s) => {
      const it = await this.outboxItem(s, id);
      action = it && actionOf(it, it.body);
      await this.deleteFromOutbox(s, id);
      const m = await reqP(s.messages.get(id));
      if (!m) return null;
      m.status = 'failed';
      m.error = text;
      s.messages.put(m);
      await this.touchChat(s, m);
      return m;
    });
    const what = action && { reaction: 'The reaction was not sent', edit: 'The message was not edited', delete: 'The message was not deleted' }[action.kind];
    this.emit('toast', { text: `${what || 'Message not sent'}: ${text}` });
    if (rec) {
      this.emit('messages', { peer: rec.peer });
      this.emit('chats');
    }
  }

  onTyping(f) {
    const u = f.from;
    if (typeof u !== 'string' || u === this.user) return;
    const peer = typeof f.group_id === 'string' ? groupPeer(f.group_id) : u;
    if (f.state !== 'composing') return this.stopTypingOf(peer, u);
    let here = this.typingIn.get(peer);
    if (!here) this.typingIn.set(peer, (here = new Map()));
    clearTimeout(here.get(u));
    here.set(u, setTimeout(() => this.stopTypingOf(peer, u), TYPING_SHOW_MS));
    this.emit('typing', { peer, user: u });
  }

  stopTypingOf(peer, u) {
    const here = this.typingIn.get(peer);
    if (!here || !here.has(u)) return;
    clearTimeout(here.get(u));
    here.delete(u);
    if (!here.size) this.typingIn.delete(peer);
    this.emit('typing', { peer, user: u });
  }

  /** Who is typing in a conversation now (for a 1:1 chat, the peer or nobody). */
  typers(peer) {
    const here = this.typingIn.get(peer);
    return here ? [...here.keys()] : [];
  }

  isTyping(u) {
    return this.typers(u).includes(u);
  }

  // ---------------------------------------------------------------------------------------
  // groups

  /** A `group` envelope: the record changes and a system line joins the conversation, with
   *  the seq, in one transaction. */
  async onGroup(f) {
    if (!(f.seq > this.lastSeq)) return this.ack(f.seq);
    const gid = typeof f.group_id === 'string' && GROUP_ID_RE.test(f.group_id) ? f.group_id : null;
    if (gid && f.event !== 'created') await this.ensureGroup(gid);
    const peer = gid && groupPeer(gid);
    const res = await write(this.db, ['groups', 'messages', 'chats', 'meta'], async (s) => {
      this.putSeq(s, f.seq);
      if (!gid) return null; // malformed: stored as seen, so that it is acked
      const prev = (await reqP(s.groups.get(gid))) || blankGroup(gid);
      const { group, line } = applyEvent(prev, f, this.user);
      s.groups.put(group);
      if (!line) return { group, line: null };
      // "created" has one line per group: the creator's device wrote it from the HTTP answer.
      line.key = f.event === 'created' ? `ev:${gid}:created` : `ev:${this.session.device_id}:${f.seq}`;
      if (f.event === 'created' && (await reqP(s.messages.get(line.key)))) return { group, line: null };
      line.n = nextOrder();
      line.peer = peer;
      s.messages.put(line);
      await this.bumpChat(s, line, 0);
      return { group, line };
    });
    this.lastSeq = f.seq;
    this.ack(f.seq);
    if (!res) return;
    this.groupCache.set(gid, res.group);
    this.evCounts.set(gid, (this.evCounts.get(gid) || 0) + 1);
    if (f.event === 'removed' || f.event === 'left') for (const u of res.line ? res.line.users : []) this.stopTypingOf(peer, u);
    this.emit('group', { group_id: gid });
    this.emit('messages', { peer });
    this.emit('chats');
  }

  /** Makes sure a group has a record, fetching it when this device has never heard of it
   *  (runs in the frame queue: nothing else is stored meanwhile). member: a message came from
   *  it, so this user was in it then. */
  async ensureGroup(gid, member = false) {
    if (this.groupCache.has(gid)) return;
    let obj = null;
    let gone = false;
    try {
      obj = await api.group(this.session.token, gid);
    } catch (e) {
      // 404: no longer a member (or gone); offline: later. Either way the events still apply.
      gone = e.status === 404;
      if (!gone && e.status !== 0) console.warn('tern: group', gid, e);
    }
    let g;
    if (obj && obj.group_id === gid) g = fromObject(obj, this.user);
    else {
      g = blankGroup(gid);
      g.partial = true; // fetched again after the next sync (syncGroups)
      g.member = member && !gone;
    }
    await write(this.db, ['groups'], async (s) => {
      if (!(await reqP(s.groups.get(gid)))) s.groups.put(g);
    });
    this.groupCache.set(gid, g);
  }

  /** Applies a group object from the server (an HTTP answer) through the frame queue, unless an
   *  event of that group was applied since `since` (evCounts at the request): then the events
   *  have the last word. newChat: give it a chat list entry when it has none. */
  applyObject(obj, since, { newChat = false } = {}) {
    return this.enqueue(async () => {
      const gid = obj && obj.group_id;
      if (!gid || !GROUP_ID_RE.test(gid) || (this.evCounts.get(gid) || 0) !== since) return null;
      const g = await write(this.db, ['groups', 'chats'], async (s) => {
        const next = fromObject(obj, this.user, await reqP(s.groups.get(gid)));
        s.groups.put(next);
        const peer = groupPeer(gid);
        if (newChat && !(await reqP(s.chats.get(peer)))) s.chats.put({ peer, group_id: gid, unread: 0, last_ts: next.created_at, preview: '' });
        return next;
      });
      this.groupCache.set(gid, g);
      this.emit('group', { group_id: gid });
      this.emit('chats');
      return g;
    });
  }

  /** Runs fn after every frame received so far has been handled, in the same queue. */
  enqueue(fn) {
    const p = this.q.then(fn);
    this.q = p.catch(() => {});
    return p;
  }

  /** Once per session: the groups the server has this user in that this device has never
   *  seen (a device logged in after they were made) join the chat list. */
  async syncGroups() {
    let after = null;
    for (let page = 0; page < 100; page++) {
      const r = await api.groups(this.session.token, after);
      for (const item of r.groups || []) {
        if (!item || !GROUP_ID_RE.test(item.group_id || '')) continue;
        const known = this.groupCache.get(item.group_id);
        if (known && !known.partial) continue;
        const since = this.evCounts.get(item.group_id) || 0;
        try {
          await this.applyObject(await api.group(this.session.token, item.group_id), since, { newChat: true });
        } catch { /* left meanwhile, or offline: its events will say */ }
      }
      if (!r.next) break;
      after = r.next;
    }
  }

  group(gid) {
    return this.groupCache.get(gid) || null;
  }

  groupName(gid) {
    const g = this.groupCache.get(gid);
    return (g && g.name) || 'Group';
  }

  /** POST /v1/groups; the group and its "created" line are stored from the answer (the event
   *  follows on the WebSocket and finds them). Returns the chat id. */
  async createGroup(name, description, members) {
    const obj = await api.createGroup(this.session.token, { name, description, members });
    const gid = obj.group_id;
    const since = this.evCounts.get(gid) || 0;
    await this.enqueue(async () => {
      const peer = groupPeer(gid);
      const g = await write(this.db, ['groups', 'messages', 'chats'], async (s) => {
        const next = fromObject(obj, this.user, await reqP(s.groups.get(gid)));
        if ((this.evCounts.get(gid) || 0) === since) s.groups.put(next);
        const key = `ev:${gid}:created`;
        if (!(await reqP(s.messages.get(key)))) {
          const line = { key, n: nextOrder(), kind: 'event', peer, group_id: gid, ts: next.created_at, event: 'created', by: this.user, users: next.members.map((m) => m.user), name: next.name };
          s.messages.put(line);
          await this.bumpChat(s, line, 0);
        }
        return (this.evCounts.get(gid) || 0) === since ? next : null;
      });
      if (g) this.groupCache.set(gid, g);
    });
    this.emit('group', { group_id: gid });
    this.emit('chats');
    return groupPeer(gid);
  }

  /** An admin action or a refresh: the answer's group object is applied (see applyObject). */
  async groupCall(gid, fn) {
    const since = this.evCounts.get(gid) || 0;
    const obj = await fn(this.session.token);
    if (obj && obj.group_id) await this.applyObject(obj, since);
    return obj;
  }

  refreshGroup(gid) {
    return this.groupCall(gid, (t) => api.group(t, gid));
  }

  renameGroup(gid, fields) {
    return this.groupCall(gid, (t) => api.patchGroup(t, gid, fields));
  }

  addMembers(gid, users) {
    return this.groupCall(gid, (t) => api.addMembers(t, gid, users));
  }

  removeMember(gid, user) {
    return this.groupCall(gid, (t) => api.removeMember(t, gid, user));
  }

  setAdmin(gid, user, on) {
    return this.groupCall(gid, (t) => api.setAdmin(t, gid, user, on));
  }

  /** Leaving answers 204; the "left" event does the rest. */
  leaveGroup(gid) {
    return api.removeMember(this.session.token, gid, this.user);
  }

  // ---------------------------------------------------------------------------------------
  // chats (inside write transactions)

  async bumpChat(s, m, unreadDelta) {
    const c = (await reqP(s.chats.get(m.peer))) || { peer: m.peer, unread: 0, last_ts: 0 };
    if (m.group_id) c.group_id = m.group_id;
    if (!c.last_key || m.ts >= c.last_ts || c.last_key === m.key) this.setLast(c, m);
    c.unread = Math.max(0, (c.unread || 0) + unreadDelta);
    s.chats.put(c);
  }

  setLast(c, m) {
    if (m.kind !== 'event') c.e2e = !!m.e2e; // the lock in the header
    c.last_ts = m.ts;
    c.last_key = m.key;
    c.preview = chatPreview(m, this.user);
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

  async outboxItem(s, id) {
    const all = await reqP(s.outbox.getAll());
    return all.find((it) => it.id === id) || null;
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

  message(key) {
    return read(this.db, ['messages'], (s) => reqP(s.messages.get(key)));
  }

  /** A message by the server's msg_id (a quote's original), or null. */
  messageByMsgId(id) {
    return read(this.db, ['messages'], async (s) => {
      const key = await reqP(s.messages.index('msg_id').getKey(id));
      return key === undefined ? null : reqP(s.messages.get(key));
    });
  }

  /** The position of a message in its conversation, counted from the newest (0): how many
   *  messages must be loaded to show it. */
  async messageAge(m) {
    return read(this.db, ['messages'], (s) => reqP(s.messages.index('peer_ts').count(IDBKeyRange.bound([m.peer, m.ts, m.n], [m.peer, Infinity, Infinity], true, false))));
  }

  blob(key) {
    return getBlob(this.db, key);
  }

  saveBlob(key, blob) {
    return putBlob(this.db, key, blob);
  }

  /** A new outgoing message's record and outbox entry: to a user, or to a group's chat id. */
  outgoing(peer, body, media) {
    const id = newClientId();
    const m = { key: id, n: nextOrder(), id, peer, from: this.user, dir: 'out', ts: Date.now() + this.skew, body, status: 'queued' };
    const out = { id };
    const gid = groupIdOf(peer);
    if (gid) m.group_id = out.group_id = gid;
    else m.to = out.to = peer;
    if (media) m.media = media;
    return { id, m, out };
  }

  /** opts: reply_to (a msg_id of this conversation), mentions (group members named). */
  async sendText(peer, body, { reply_to, mentions } = {}) {
    const { id, m, out } = this.outgoing(peer, body);
    if (reply_to) m.reply_to = out.reply_to = reply_to;
    if (mentions && mentions.length) out.mentions = mentions;
    // A long text goes, when encrypted, as an encrypted text/plain attachment (docs/e2e.md):
    // the upload step decides (and sends it as a plain body when it will not be encrypted).
    const long = this.secure && new TextEncoder().encode(body).length > LONG_TEXT_BYTES;
    await write(this.db, ['messages', 'outbox', 'chats', 'blobs'], async (s) => {
      s.messages.put(m);
      if (long) {
        s.blobs.put({ key: `up:${id}`, blob: new Blob([body], { type: TEXT_MIME }) });
        s.outbox.put({ ...out, upload: true, long_text: true });
      } else s.outbox.put({ ...out, body });
      await this.bumpChat(s, m, 0);
    });
    this.emit('messages', { peer });
    this.emit('chats');
    this.pump();
  }

  async sendImage(peer, blob, caption, dims) {
    const media = { mime: blob.type, size: blob.size };
    if (dims) Object.assign(media, dims);
    const { id, m, out } = this.outgoing(peer, caption || '', media);
    const local = `up:${id}`;
    media.local = local;
    await write(this.db, ['messages', 'outbox', 'chats', 'blobs'], async (s) => {
      s.blobs.put({ key: local, blob });
      s.messages.put(m);
      s.outbox.put({ ...out, body: caption || undefined, upload: true });
      await this.bumpChat(s, m, 0);
    });
    this.emit('messages', { peer });
    this.emit('chats');
    this.pump();
  }

  /** A reaction ({kind:'reaction', to, emoji}), an edit ({kind:'edit', of, body}) or a delete for
   *  everyone ({kind:'delete', of}) in a conversation: an outbox item with no bubble of its own,
   *  applied to its message when the server answers 'sent' (onSent). */
  async sendAction(peer, a) {
    const { out } = this.outgoing(peer, '');
    if (a.kind === 'reaction') out.reaction = { to: a.to, emoji: a.emoji };
    else if (a.kind === 'edit') {
      out.edit = { of: a.of };
      out.body = a.body;
    } else out.delete = { of: a.of };
    await write(this.db, ['outbox'], (s) => reqP(s.outbox.put(out)));
    this.pump();
  }

  /** Deletes a conversation from this browser: its messages, its blobs and its chat list entry
   *  (a group's record stays: the user may still be in it, and its next message brings it back). */
  async deleteChat(peer) {
    await write(this.db, ['messages', 'chats', 'blobs', 'outbox'], async (s) => {
      const range = IDBKeyRange.bound([peer, -Infinity, -Infinity], [peer, Infinity, Infinity]);
      const all = await reqP(s.messages.index('peer_ts').getAll(range));
      for (const m of all) {
        s.messages.delete(m.key);
        const md = m.media;
        if (md) for (const k of [md.local, md.media_id && `thumb:${md.media_id}`, md.media_id && `full:${md.media_id}`]) if (k) s.blobs.delete(k);
        if (m.status === 'queued') await this.deleteFromOutbox(s, m.key);
      }
      s.chats.delete(peer);
    });
    this.emit('messages', { peer });
    this.emit('chats');
  }

  /** A failed message goes again as a new message (a new client id: the old one was refused). */
  async retry(key) {
    const m = await read(this.db, ['messages'], (s) => reqP(s.messages.get(key)));
    if (!m || m.status !== 'failed') return;
    await this.removeMessage(key, { quiet: true });
    if (m.media && m.media.local && !m.media.media_id) {
      const blob = await this.blob(m.media.local);
      if (blob) return this.sendImage(m.peer, blob, m.body, { width: m.media.width, height: m.media.height });
    }
    return this.sendText(m.peer, m.body, { reply_to: m.reply_to });
  }

  /** Deletes a message from this browser only (a failed one, or "Delete for me"): its record,
   *  its upload, and the chat list's line when it was the last one (the one before it then). */
  async removeMessage(key, { quiet = false } = {}) {
    const peer = await write(this.db, ['messages', 'chats', 'blobs', 'outbox'], async (s) => {
      const m = await reqP(s.messages.get(key));
      if (!m) return null;
      s.messages.delete(key);
      if (m.media && m.media.local) s.blobs.delete(m.media.local);
      await this.deleteFromOutbox(s, key);
      const c = await reqP(s.chats.get(m.peer));
      if (c && c.last_key === key) {
        const prev = await lastMessage(s, m.peer);
        if (prev) this.setLast(c, prev);
        else {
          c.last_key = null;
          c.preview = '';
        }
        s.chats.put(c);
      }
      return m.peer;
    });
    if (peer && !quiet) {
      this.emit('messages', { peer });
      this.emit('chats');
    }
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
          let frame;
          try {
            frame = await this.frameFor(it);
          } catch (e) {
            // Keys could not be fetched (offline, rate limited): never a plaintext downgrade.
            console.warn('tern: not sent yet', e);
            if (e && e.status && e.status !== 429 && e.status >= 400 && e.status < 500) {
              await this.failMessage(it.id, e.message);
              this.pumpAgain = true;
              break;
            }
            setTimeout(() => this.pump(), 3000);
            blocked = true;
            break;
          }
          if (!frame) {
            await this.failMessage(it.id, 'the recipient has no keys for end-to-end encryption');
            this.pumpAgain = true;
            break;
          }
          if (!this.conn || !this.conn.send(frame)) {
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

  /** The users an outbox item is for (a group's other members), for E2E. */
  usersOf(it) {
    if (it.group_id) return othersIn(this.groupCache.get(it.group_id), this.user);
    return it.to === this.user ? [] : [it.to];
  }

  /** The send frame of an outbox item: encrypted when everyone involved has keys
   *  (PROTOCOL.md 11), else plaintext; null when it cannot go (an encrypted attachment to
   *  someone without keys). Throws when keys could not be fetched. */
  async frameFor(it) {
    // A delete always goes in plaintext, so that the server can act on it (PROTOCOL 15).
    if (this.secure && !it.plain && !it.delete) {
      await this.keysP;
      const f = await this.secure.frame(it, this.usersOf(it));
      if (f) {
        if (!it.hidden) await this.markE2e(it.id);
        return f;
      }
    }
    if (it.media_e2e || it.hidden) return null;
    const frame = { type: 'send', id: it.id };
    if (it.group_id) frame.group_id = it.group_id;
    else frame.to = it.to;
    if (it.body) frame.body = it.body;
    if (it.media_id) frame.media = { media_id: it.media_id };
    for (const k of ['reply_to', 'reaction', 'edit', 'delete']) if (it[k]) frame[k] = it[k];
    if (it.mentions && it.mentions.length) frame.mentions = it.mentions;
    return frame;
  }

  async markE2e(id) {
    const m = await write(this.db, ['messages', 'chats'], async (s) => {
      const m = await reqP(s.messages.get(id));
      if (!m || m.e2e) return null;
      m.e2e = true;
      s.messages.put(m);
      await this.touchChat(s, m);
      return m;
    });
    if (m) {
      this.emit('messages', { peer: m.peer });
      this.emit('chats');
    }
  }

  /** A decrypt_error envelope: a new session with that device, and the message again, with a
   *  new id and resend_of (an outbox item with no bubble of its own). */
  async onDecryptError(f) {
    if (!(f.seq > this.lastSeq)) return this.ack(f.seq);
    let rec = null;
    if (this.secure && typeof f.from === 'string' && typeof f.from_device === 'string' && typeof f.msg_id === 'string') {
      try {
        rec = await this.secure.recover(f);
        // A resend that failed too is not sent a third time: no loop between two devices.
        if (rec && rec.inner.resend_of) rec = null;
      } catch (e) {
        console.warn('tern: decrypt_error not answered', e);
      }
    }
    await write(this.db, ['outbox', 'meta'], async (s) => {
      this.putSeq(s, f.seq);
      if (!rec) return;
      const it = { id: newClientId(), hidden: true, resend_of: f.msg_id };
      if (rec.group_id) it.group_id = rec.group_id;
      else it.to = rec.to;
      if (rec.inner.body) it.body = rec.inner.body;
      if (rec.inner.media) it.media_e2e = rec.inner.media;
      for (const k of ['reply_to', 'reaction', 'edit']) if (rec.inner[k]) it[k] = rec.inner[k]; // a reply, reaction or edit stays one
      s.outbox.put(it);
    });
    this.lastSeq = f.seq;
    this.ack(f.seq);
    if (rec) this.pump();
  }

  /** "bob's security code changed": a line in the conversation with a contact whose keys
   *  changed (a new device, or another identity key). */
  async keyChangeLine(user) {
    const key = `keys:${user}:${Date.now()}`;
    await write(this.db, ['messages', 'chats'], async (s) => {
      if (!(await reqP(s.chats.get(user)))) return; // no conversation yet: nothing to warn about
      s.messages.put({ key, n: nextOrder(), peer: user, kind: 'keys', user, ts: Date.now() + this.skew, dir: 'in' });
    });
    this.emit('messages', { peer: user });
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
    const peer = msg ? msg.peer : it.to || groupPeer(it.group_id);
    const progress = (fraction) => {
      this.progress.set(it.id, fraction);
      this.emit('progress', { key: it.id, peer, fraction });
    };
    let media;
    let sealed = null;
    try {
      // Encrypted when the message will be (PROTOCOL.md 11): AES-256-GCM, sent as octet-stream.
      if (this.secure && !it.plain) {
        await this.keysP;
        if (await this.secure.shouldEncrypt(this.usersOf(it))) {
          sealed = await this.secure.seal(await blob.arrayBuffer());
          if (!it.long_text) sealed.thumb = await thumbOf(blob);
        }
      }
      if (it.long_text && !sealed) {
        // Not encrypted after all: the text goes as a plain body.
        const text = await blob.text();
        await write(this.db, ['outbox'], async (s) => {
          for (const o of await reqP(s.outbox.getAll())) {
            if (o.id !== it.id) continue;
            o.body = text;
            delete o.upload;
            delete o.long_text;
            s.outbox.put(o);
          }
        });
        return 'done';
      }
      if (!it.long_text) progress(0);
      const body = sealed ? new Blob([sealed.blob], { type: 'application/octet-stream' }) : blob;
      media = await api.uploadMedia(this.session.token, body, progress);
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
      const m = await reqP(s.messages.get(it.id));
      let inner = null;
      if (sealed) {
        const md = (m && m.media) || {};
        inner = { media_id: media.media_id, key: sealed.key, iv: sealed.iv, sha256: sealed.sha256, mime: it.long_text ? TEXT_MIME : blob.type, size: blob.size };
        if (md.width) inner.width = md.width;
        if (md.height) inner.height = md.height;
        if (sealed.thumb) inner.thumb = sealed.thumb;
      }
      for (const o of all) {
        if (o.id !== it.id) continue;
        if (inner) o.media_e2e = inner;
        else o.media_id = media.media_id;
        delete o.upload;
        s.outbox.put(o);
      }
      if (m && !it.long_text) {
        m.media = inner ? { ...m.media, ...inner, local } : { ...m.media, ...media, local };
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
    // One read frame per conversation, and in a group per sender (`peer` is whom it tells).
    const byPeer = new Map();
    const sent = [];
    for (const m of owed) {
      const gid = groupIdOf(m.rr);
      if (gid && !(this.groupCache.get(gid) || {}).member) {
        sent.push(m); // no longer in the group: the server would refuse it (no_such_group)
        continue;
      }
      const k = gid ? `${m.rr}\n${m.from}` : m.rr;
      if (!byPeer.has(k)) byPeer.set(k, { frame: gid ? { type: 'read', group_id: gid, peer: m.from } : { type: 'read', peer: m.rr }, ms: [] });
      byPeer.get(k).ms.push(m);
    }
    for (const { frame, ms } of byPeer.values()) {
      for (let i = 0; i < ms.length; i += READ_CHUNK) {
        const chunk = ms.slice(i, i + READ_CHUNK);
        if (!this.conn.send({ ...frame, msg_ids: chunk.map((m) => m.msg_id) })) break;
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
      if (this.conn && this.conn.send(typingFrame(peer, 'composing'))) t.sentAt = now;
    }
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.stoppedTyping(), TYPING_PAUSE_AFTER_MS);
  }

  stoppedTyping() {
    const t = this.myTyping;
    clearTimeout(t.timer);
    t.timer = null;
    if (t.peer && t.sentAt && this.conn) this.conn.send(typingFrame(t.peer, 'paused'));
    t.peer = null;
    t.sentAt = 0;
  }

  watch(user) {
    if (isGroupPeer(user) || this.watched.has(user)) return;
    this.watched.add(user);
    if (this.conn) this.conn.send({ type: 'watch', users: [user] });
  }

  unwatch(user) {
    if (!this.watched.delete(user)) return;
    if (this.conn) this.conn.send({ type: 'unwatch', users: [user] });
  }

  // ---------------------------------------------------------------------------------------
  // mutes (PROTOCOL 15): kept on the server, so that the user's phones stop buzzing too

  async loadMutes() {
    try {
      const r = await api.mutes(this.session.token);
      const next = new Map();
      for (const x of (r && r.mutes) || []) {
        const peer = typeof x.group_id === 'string' ? groupPeer(x.group_id) : typeof x.user === 'string' ? x.user : null;
        if (peer) next.set(peer, Number.isFinite(x.until) ? x.until : null);
      }
      this.mutes = next;
      this.emit('mutes');
    } catch (e) {
      if (e.status !== 404) console.warn('tern: mutes not loaded', e);
    }
  }

  isMuted(peer) {
    if (!this.mutes.has(peer)) return false;
    const until = this.mutes.get(peer);
    return until === null || until > Date.now() + this.skew;
  }

  /** Mutes a chat until a time (MS) or forever (null); unmutes with until === false. */
  async setMute(peer, until) {
    const gid = groupIdOf(peer);
    const who = gid ? { group_id: gid } : { user: peer };
    if (until === false) {
      await api.unmute(this.session.token, who);
      this.mutes.delete(peer);
    } else {
      await api.mute(this.session.token, who, until);
      this.mutes.set(peer, until);
    }
    this.emit('mutes');
  }

  async outboxSize() {
    return read(this.db, ['outbox'], (s) => reqP(s.outbox.count()));
  }
}
