// The web client's rules for message actions (web/js/actions.js, PROTOCOL.md 15), checked in
// node without a browser: the server cannot see encrypted reactions and edits, so these are
// what keeps another member from editing your message, or an edit from coming days later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { actionOf, allowed, apply, choices, reactionCounts, mentionsIn, EDIT_WINDOW_MS, DELETE_WINDOW_MS } from '../../web/js/actions.js';

const T = 1_800_000_000_000;
const msg = (over = {}) => ({ key: 'k', msg_id: 'm1', peer: 'bob', from: 'bob', dir: 'in', ts: T, body: 'hi', ...over });

test('actionOf reads reactions, edits and deletes, and nothing else', () => {
  assert.deepEqual(actionOf({ reaction: { to: 'm1', emoji: '👍' } }), { kind: 'reaction', to: 'm1', emoji: '👍' });
  assert.deepEqual(actionOf({ reaction: { to: 'm1', emoji: 'x'.repeat(33) } }).emoji, '', 'over 32 bytes: a removal');
  assert.deepEqual(actionOf({ edit: { of: 'm1' } }, 'new'), { kind: 'edit', of: 'm1', body: 'new' });
  assert.deepEqual(actionOf({ delete: { of: 'm1' } }), { kind: 'delete', of: 'm1' });
  assert.equal(actionOf({ body: 'plain', reply_to: 'm1' }), null);
  assert.equal(actionOf({ edit: { of: 7 } }), null);
  assert.equal(actionOf(null), null);
});

test('edits: only the sender, only within the window, never a deleted message', () => {
  const e = { kind: 'edit', of: 'm1', body: 'x' };
  assert.ok(allowed(e, msg(), 'bob', T + 60000));
  assert.ok(!allowed(e, msg(), 'carol', T + 60000), 'another user');
  assert.ok(!allowed(e, msg(), 'bob', T + EDIT_WINDOW_MS + 5 * 60000), 'past the window');
  assert.ok(!allowed(e, msg({ deleted: true }), 'bob', T + 1000));
  assert.ok(!allowed(e, msg({ kind: 'event' }), 'bob', T + 1000), 'a system line');
});

test('deletes: the sender within 48 h, and a group admin for anyone', () => {
  const d = { kind: 'delete', of: 'm1' };
  assert.ok(allowed(d, msg(), 'bob', T + DELETE_WINDOW_MS - 1000));
  assert.ok(!allowed(d, msg(), 'bob', T + DELETE_WINDOW_MS + 5 * 60000));
  assert.ok(!allowed(d, msg(), 'carol', T + 1000), 'not in a 1:1 chat');
  const g = msg({ group_id: 'g1', peer: 'g:g1' });
  assert.ok(allowed(d, g, 'carol', T + 1000, (u) => u === 'carol'), 'an admin');
  assert.ok(!allowed(d, g, 'dave', T + 1000, (u) => u === 'carol'), 'a member');
});

test('applying: reactions replace and remove, an edit marks, a delete empties', () => {
  const m = msg({ media: { media_id: 'x' }, reply_to: 'm0' });
  apply({ kind: 'reaction', to: 'm1', emoji: '👍' }, m, 'alice', T);
  apply({ kind: 'reaction', to: 'm1', emoji: '😂' }, m, 'alice', T);
  apply({ kind: 'reaction', to: 'm1', emoji: '😂' }, m, 'carol', T);
  assert.deepEqual(m.reactions, { alice: '😂', carol: '😂' });
  assert.deepEqual(reactionCounts(m, 'alice').map((c) => [c.emoji, c.count, c.mine]), [['😂', 2, true]]);
  apply({ kind: 'reaction', to: 'm1', emoji: '' }, m, 'alice', T);
  assert.deepEqual(m.reactions, { carol: '😂' });
  apply({ kind: 'edit', of: 'm1', body: 'hello' }, m, 'bob', T + 5);
  assert.equal(m.body, 'hello');
  assert.equal(m.edited, T + 5);
  apply({ kind: 'delete', of: 'm1' }, m, 'bob', T + 9);
  assert.equal(m.deleted, true);
  assert.equal(m.body, '');
  for (const k of ['media', 'reactions', 'reply_to', 'edited']) assert.equal(m[k], undefined, k);
  assert.ok(!allowed({ kind: 'reaction', to: 'm1', emoji: '👍' }, m, 'alice', T + 10), 'no reaction to a deleted message');
});

test("the menu's choices follow the same rules", () => {
  const mine = msg({ from: 'alice', dir: 'out', status: 'sent' });
  assert.deepEqual(choices(mine, 'alice', T + 1000), { reply: true, react: true, edit: true, deleteAll: true, deleteMine: true });
  assert.equal(choices(mine, 'alice', T + EDIT_WINDOW_MS + 1).edit, false);
  assert.equal(choices(msg(), 'alice', T + 1000).deleteAll, false, "bob's message in a 1:1 chat");
  assert.equal(choices(msg({ group_id: 'g1' }), 'alice', T + 1000, true).deleteAll, true, 'as a group admin');
  const queued = msg({ from: 'alice', msg_id: undefined, status: 'queued' });
  assert.deepEqual(choices(queued, 'alice', T), { reply: false, react: false, edit: false, deleteAll: false, deleteMine: true });
});

test('mentions name members only, once each', () => {
  assert.deepEqual(mentionsIn('@Bob and @carol, @bob again; mail@bob.example @nobody', ['bob', 'carol']), ['bob', 'carol']);
  assert.deepEqual(mentionsIn('thanks @bob.', ['bob']), ['bob']);
  assert.deepEqual(mentionsIn('no one here', ['bob']), []);
});

test('the @mention picker completes the word before the caret, by username or display name', async () => {
  const { mentionAt, mentionChoices } = await import('../../web/js/mentionpick.js');
  assert.deepEqual(mentionAt('hi @bo', 6), { start: 3, query: 'bo' });
  assert.deepEqual(mentionAt('@', 1), { start: 0, query: '' });
  assert.equal(mentionAt('mail@bo', 7), null, 'inside a word: an address, not a mention');
  assert.equal(mentionAt('hi @bob there', 13), null, 'the caret is past the word');
  assert.deepEqual(mentionAt('hi @bob there', 7), { start: 3, query: 'bob' });
  const names = { bob: 'Bob', carol: 'Zoe', dave: 'dave' };
  const nameOf = (u) => names[u] || u;
  assert.deepEqual(mentionChoices(['dave', 'carol', 'bob'], '', nameOf), ['bob', 'carol', 'dave'], 'sorted');
  assert.deepEqual(mentionChoices(['dave', 'carol', 'bob'], 'z', nameOf), ['carol'], 'by display name');
  assert.deepEqual(mentionChoices(['dave', 'carol', 'bob'], 'ca', nameOf), ['carol'], 'by username');
  assert.equal(mentionChoices(Array.from({ length: 20 }, (_, i) => `user${i}`), 'u', nameOf).length, 8, 'at most 8');
});
