// actions: replies, reactions, edits and deletes (PROTOCOL.md 15), the part without DOM: what an
// action is, which ones may apply to which message, and what applying one does to a stored
// message record. The server checks plaintext edits and deletes; an encrypted reaction or edit
// it cannot see, so every client applies the same rules itself, and this is where they are.
//
// A message record (db.js) gains: reply_to (msg_id), reactions ({user: emoji}), edited (ts of
// the last edit), deleted (true: "This message was deleted", body and media gone).

export const EDIT_WINDOW_MS = 15 * 60000; // limits.edit_window's default
export const DELETE_WINDOW_MS = 48 * 3600000; // limits.delete_window's default
// The sender's clock and the server's differ a little: an edit stamped just inside the window
// by the server is still applied by a receiver that computes it from the two ts.
const CLOCK_SLACK_MS = 60000;
export const QUICK_EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
const EMOJI_MAX_BYTES = 32;

/** The action an envelope (or a decrypted inner object) carries, or null for a plain message:
 *  {kind: 'reaction', to, emoji} | {kind: 'edit', of, body} | {kind: 'delete', of}. */
export function actionOf(x, body) {
  if (!x) return null;
  const r = x.reaction;
  if (r && typeof r === 'object' && typeof r.to === 'string') {
    const emoji = typeof r.emoji === 'string' && new TextEncoder().encode(r.emoji).length <= EMOJI_MAX_BYTES ? r.emoji : '';
    return { kind: 'reaction', to: r.to, emoji };
  }
  if (x.edit && typeof x.edit === 'object' && typeof x.edit.of === 'string') return { kind: 'edit', of: x.edit.of, body: typeof body === 'string' ? body : '' };
  if (x.delete && typeof x.delete === 'object' && typeof x.delete.of === 'string') return { kind: 'delete', of: x.delete.of };
  return null;
}

/** The msg_id an action is about. */
export const targetOf = (a) => (a.kind === 'reaction' ? a.to : a.of);

/** Whether `from` may apply action a to message m, at time ts (the action's). isAdmin(user): a
 *  group admin, who may delete anyone's message. */
export function allowed(a, m, from, ts, isAdmin = () => false) {
  if (!m || m.kind === 'event' || m.kind === 'keys') return false;
  if (a.kind === 'reaction') return !m.deleted;
  if (m.deleted) return false;
  const age = (ts || 0) - (m.ts || 0);
  if (a.kind === 'edit') return m.from === from && age <= EDIT_WINDOW_MS + CLOCK_SLACK_MS;
  if (a.kind === 'delete') return (m.from === from || (!!m.group_id && isAdmin(from))) && age <= DELETE_WINDOW_MS + CLOCK_SLACK_MS;
  return false;
}

/** Applies an allowed action to message m in place (the caller stores it). */
export function apply(a, m, from, ts) {
  if (a.kind === 'reaction') {
    const r = { ...(m.reactions || {}) };
    if (a.emoji) r[from] = a.emoji;
    else delete r[from];
    if (Object.keys(r).length) m.reactions = r;
    else delete m.reactions;
  } else if (a.kind === 'edit') {
    m.body = a.body;
    m.edited = ts;
  } else if (a.kind === 'delete') {
    m.deleted = true;
    m.body = '';
    for (const k of ['media', 'reactions', 'reply_to', 'edited', 'undecryptable', 'mentions']) delete m[k];
  }
  return m;
}

/** What the user may do with a message now: the items of its menu. me: this user; admin:
 *  this user is an admin of the message's group. */
export function choices(m, me, now, admin = false) {
  const settled = !!m.msg_id && m.status !== 'failed';
  const mine = m.from === me;
  const live = settled && !m.deleted && !m.undecryptable;
  return {
    reply: live,
    react: live,
    edit: live && mine && now - m.ts <= EDIT_WINDOW_MS, // a text, or a photo's caption
    deleteAll: settled && !m.deleted && (mine || (!!m.group_id && admin)) && now - m.ts <= DELETE_WINDOW_MS,
    deleteMine: true,
  };
}

/** Reactions as shown under a bubble: [{emoji, count, mine}], most used first. */
export function reactionCounts(m, me) {
  const by = new Map();
  for (const [user, emoji] of Object.entries(m.reactions || {})) {
    const e = by.get(emoji) || { emoji, count: 0, mine: false, users: [] };
    e.count++;
    e.users.push(user);
    if (user === me) e.mine = true;
    by.set(emoji, e);
  }
  return [...by.values()].sort((a, b) => b.count - a.count || a.emoji.localeCompare(b.emoji));
}

/** The @names of a group message that are members (PROTOCOL 15 "mentions"), at most 64. */
export function mentionsIn(body, members) {
  const out = new Set();
  for (const m of body.matchAll(/(^|[^\w@])@([a-z0-9_.-]{3,32})/gi)) {
    const u = m[2].toLowerCase().replace(/[.]+$/, '');
    if (members.includes(u)) out.add(u);
  }
  return [...out].slice(0, 64);
}
