// groups: group chats (PROTOCOL.md section 10) as this client keeps them, without the DOM:
// the chat id of a group, the group record and how each event changes it, the system line an
// event shows, and a group message's ticks from its per-member receipts.
//
// A group's conversation is stored like a 1:1 one under the chat id "g:<group_id>" (a username
// cannot contain ':', so the two never collide). Group records (the `groups` store):
//   { group_id, name, description, created_by, created_at, members: [{user, role, since}],
//     member: bool (am I in it), ev_name, ev_description (as the events last said, so that a
//     "renamed" line can tell what changed even after an HTTP answer updated name),
//     partial?: true (known by its id only: its details could not be fetched yet) }
// A system line is a message record with kind 'event': { key, n, kind, peer, group_id, ts,
// event, by, users, name?, description?, changed?: {name, description}, auto?: true }.

const PREFIX = 'g:';
export const GROUP_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const GROUP_NAME_MAX = 100; // bytes of UTF-8
export const GROUP_DESC_MAX = 512;

export const isGroupPeer = (peer) => typeof peer === 'string' && peer.startsWith(PREFIX);
export const groupPeer = (id) => PREFIX + id;
export const groupIdOf = (peer) => (isGroupPeer(peer) ? peer.slice(PREFIX.length) : null);

export const byteLength = (s) => new TextEncoder().encode(s).length;

const strings = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);

/** A group known only by its id (its details could not be fetched). */
export function blankGroup(id) {
  return { group_id: id, name: '', description: '', created_by: null, created_at: 0, members: [], member: false };
}

/** The record for the server's group object; prev keeps what the events said. */
export function fromObject(o, me, prev = null) {
  const members = (Array.isArray(o.members) ? o.members : [])
    .filter((m) => m && typeof m.user === 'string')
    .map((m) => ({ user: m.user, role: m.role === 'admin' ? 'admin' : 'member', since: Number(m.since) || 0 }));
  const g = {
    ...(prev || blankGroup(o.group_id)),
    group_id: o.group_id,
    name: typeof o.name === 'string' ? o.name : '',
    description: typeof o.description === 'string' ? o.description : '',
    created_by: o.created_by || null,
    created_at: Number(o.created_at) || 0,
    members,
    member: members.some((m) => m.user === me),
  };
  delete g.partial; // known in full now
  if (g.ev_name === undefined) g.ev_name = g.name;
  if (g.ev_description === undefined) g.ev_description = g.description;
  return g;
}

export function isAdmin(g, user) {
  return !!(g && g.members.some((m) => m.user === user && m.role === 'admin'));
}

/** Everyone in the group but me, in join order. */
export function othersIn(g, me) {
  return g ? g.members.map((m) => m.user).filter((u) => u !== me) : [];
}

const KNOWN = new Set(['created', 'added', 'removed', 'left', 'renamed', 'promoted', 'demoted']);

/** Applies a `group` envelope to the record (a new object; g is not changed) and returns it
 *  with the system line to show, or line null for an event this client does not know. */
export function applyEvent(g, f, me) {
  const group = { ...g, members: g.members.map((m) => ({ ...m })) };
  if (!KNOWN.has(f.event)) return { group, line: null };
  const ts = Number(f.ts) || 0;
  const by = typeof f.by === 'string' ? f.by : '';
  const users = strings(f.users);
  const line = { kind: 'event', group_id: g.group_id, ts, event: f.event, by, users };
  const has = (u) => group.members.some((m) => m.user === u);
  switch (f.event) {
    case 'created':
      group.name = group.ev_name = typeof f.name === 'string' ? f.name : group.name;
      group.description = group.ev_description = typeof f.description === 'string' ? f.description : '';
      group.created_by = by;
      group.created_at = ts;
      group.members = users.map((u) => ({ user: u, role: u === by ? 'admin' : 'member', since: ts }));
      line.name = group.name;
      break;
    case 'added':
      for (const u of users) if (!has(u)) group.members.push({ user: u, role: 'member', since: ts });
      break;
    case 'removed':
    case 'left':
      group.members = group.members.filter((m) => !users.includes(m.user));
      break;
    case 'renamed': {
      const name = typeof f.name === 'string' ? f.name : group.ev_name;
      const description = typeof f.description === 'string' ? f.description : group.ev_description;
      line.changed = { name: name !== group.ev_name, description: description !== group.ev_description };
      line.name = name;
      line.description = description;
      group.name = group.ev_name = name;
      group.description = group.ev_description = description;
      break;
    }
    case 'promoted':
    case 'demoted':
      for (const m of group.members) if (users.includes(m.user)) m.role = f.event === 'promoted' ? 'admin' : 'member';
      // The last admin's leaving hands the role on, "by" the leaver (who is gone by now).
      if (f.event === 'promoted' && !has(by)) line.auto = true;
      break;
    default:
      break;
  }
  group.member = has(me);
  return { group, line };
}

function names(list) {
  if (list.length <= 1) return list.join('');
  return `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]}`;
}

/** The text of a system line, from the reader's point of view. */
export function eventText(line, me) {
  const subject = (u) => (u === me ? 'You' : u);
  const object = (u) => (u === me ? 'you' : u);
  const by = subject(line.by);
  const users = line.users || [];
  switch (line.event) {
    case 'created':
      return `${by} created the group “${line.name || ''}”`;
    case 'added':
      return `${by} added ${names(users.map(object))}`;
    case 'removed':
      if (users.includes(me)) return `You were removed by ${line.by}`;
      return `${by} removed ${names(users.map(object))}`;
    case 'left':
      return `${names(users.map(subject))} left`;
    case 'renamed': {
      const c = line.changed || { name: true };
      if (c.name && c.description) return `${by} changed the group name to “${line.name}” and the description`;
      if (c.name) return `${by} changed the group name to “${line.name}”`;
      if (c.description) return line.description ? `${by} changed the group description` : `${by} removed the group description`;
      return `${by} changed the group info`;
    }
    case 'promoted':
      if (line.auto) return users.includes(me) && users.length === 1 ? 'You are now an admin' : `${names(users)} ${users.length > 1 ? 'are now admins' : 'is now an admin'}`;
      return `${by} made ${names(users.map(object))} ${users.length > 1 ? 'admins' : 'an admin'}`;
    case 'demoted':
      return `${by} removed ${names(users.map(object))} as admin`;
    default:
      return '';
  }
}

// ---- receipts: rcpt is {user: {d: ms delivered, r: ms read}} ----

/** Notes a receipt of `status` at `ts` by each of users (read implies delivered). */
export function noteReceipt(rcpt, users, status, ts) {
  const out = { ...(rcpt || {}) };
  for (const u of users) {
    const x = { ...(out[u] || {}) };
    if (status === 'delivered' || status === 'read') x.d = x.d ? Math.min(x.d, ts) : ts;
    if (status === 'read') x.r = x.r ? Math.min(x.r, ts) : ts;
    out[u] = x;
  }
  return out;
}

/** Both receipt maps in one, the earlier time of each kept. */
export function mergeRcpt(a, b) {
  let out = { ...(a || {}) };
  for (const [u, x] of Object.entries(b || {})) {
    if (x.d) out = noteReceipt(out, [u], 'delivered', x.d);
    if (x.r) out = noteReceipt(out, [u], 'read', x.r);
  }
  return out;
}

/** A group message's ticks: delivered once the distinct members who delivered reach
 *  `recipients` (from `sent`), read once those who read do. No recipients: one tick. */
export function groupTick(m) {
  const n = m.recipients || 0;
  if (!n) return 'sent';
  let d = 0;
  let r = 0;
  for (const [u, x] of Object.entries(m.rcpt || {})) {
    if (u === m.from) continue;
    if (x.d || x.r) d++;
    if (x.r) r++;
  }
  if (r >= n) return 'read';
  return d >= n ? 'delivered' : 'sent';
}

/** Who should get a group message of mine, and what each has done with it:
 *  [{user, d, r, skipped}] in the member order at sending (then anyone else who answered). */
export function receiptRows(m) {
  const seen = new Set();
  const rows = [];
  const add = (u) => {
    if (seen.has(u) || u === m.from) return;
    seen.add(u);
    const x = (m.rcpt || {})[u] || {};
    rows.push({ user: u, d: x.d || x.r || 0, r: x.r || 0, skipped: (m.skipped || []).includes(u) });
  };
  for (const u of m.members || []) add(u);
  for (const u of Object.keys(m.rcpt || {})) add(u);
  return rows;
}

/** "alice is typing…", "alice and bob are typing…", "alice, bob and 2 others are typing…". */
export function typingText(users) {
  if (!users.length) return '';
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  const rest = users.length - 2;
  return `${users[0]}, ${users[1]} and ${rest} other${rest === 1 ? '' : 's'} are typing…`;
}

/** The header line of a group: its members, "You" last, as WhatsApp writes it. */
export function memberLine(g, me) {
  if (!g) return '';
  const others = othersIn(g, me);
  return g.member ? [...others, 'You'].join(', ') : others.join(', ');
}
