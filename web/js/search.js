// search: over the history in this browser (IndexedDB; the server keeps none), from the chat
// list's search box. Every word of the query must appear in a message's text or caption,
// ignoring case and accents; the newest matches come first, and a click opens the chat at the
// message. The whole store is scanned with a cursor: history is one person's, and a scan of
// tens of thousands of short records takes a moment, without an index to keep up to date.
import { el, icon, listTime } from './util.js';
import { read } from './db.js';

const MAX_RESULTS = 50;
const DEBOUNCE_MS = 150;

/** Lower case, no accents: "Café" and "cafe" match. */
export function fold(s) {
  return s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

/** The newest messages matching every word of query: [{m, at}] (at: where the first word
 *  starts in the body, for the snippet). */
export async function searchMessages(db, query, limit = MAX_RESULTS) {
  const words = fold(query).split(/\s+/).filter(Boolean);
  if (!words.length) return [];
  const found = [];
  await read(db, ['messages'], (s) => new Promise((resolve, reject) => {
    const c = s.messages.openCursor();
    c.onsuccess = () => {
      const cur = c.result;
      if (!cur) return resolve();
      const m = cur.value;
      // system lines, tombstones of actions ('\0' peers), deleted and undecrypted messages: no text
      if (m.body && !m.kind && !m.deleted && m.peer && m.peer[0] !== '\u0000') {
        const text = fold(m.body);
        if (words.every((w) => text.includes(w))) found.push({ m, at: text.indexOf(words[0]), len: words[0].length });
      }
      cur.continue();
    };
    c.onerror = () => reject(c.error);
  }));
  found.sort((a, b) => b.m.ts - a.m.ts || b.m.n - a.m.n);
  return found.slice(0, limit);
}

/** A stretch of the body around the match, the match in <mark>. (Folding keeps the length of
 *  most text; where it does not, the snippet is still the right words, marked roughly.) */
function snippet(body, at, len) {
  const start = Math.max(0, at - 24);
  const pre = (start > 0 ? '…' : '') + body.slice(start, at);
  const hit = body.slice(at, at + len);
  const post = body.slice(at + len, at + len + 80);
  return [pre, el('mark', {}, hit), post];
}

/** The search box and its results, for the sidebar. name(peer): a chat's name; onPick(peer,
 *  key): open the chat at that message. */
export function searchUi(client, { name, onPick }) {
  const button = el('button', { type: 'button', class: 'icon-btn', id: 'search-open', 'aria-label': 'Search messages', title: 'Search messages', 'aria-expanded': 'false', 'aria-controls': 'search-box' }, icon('search'));
  const input = el('input', { type: 'search', id: 'search-input', placeholder: 'Search messages', 'aria-label': 'Search messages', autocomplete: 'off', enterkeyhint: 'search' });
  const close = el('button', { type: 'button', class: 'icon-btn small', id: 'search-close', 'aria-label': 'Close search' }, icon('close'));
  const status = el('p', { class: 'search-status', id: 'search-status', role: 'status' });
  const results = el('ul', { class: 'search-results', id: 'search-results', 'aria-label': 'Messages found' });
  const box = el('div', { class: 'search-box', id: 'search-box', hidden: true }, el('div', { class: 'search-row' }, input, close), status, results);
  let timer = null;
  let seq = 0;

  function open() {
    box.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    input.focus();
    box.dispatchEvent(new Event('toggle'));
  }
  function shut(refocus = true) {
    if (box.hidden) return;
    box.hidden = true;
    input.value = '';
    results.replaceChildren();
    status.textContent = '';
    button.setAttribute('aria-expanded', 'false');
    box.dispatchEvent(new Event('toggle'));
    if (refocus) button.focus();
  }
  button.addEventListener('click', () => (box.hidden ? open() : shut()));
  close.addEventListener('click', () => shut());
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault(); // the open chat, if any, stays (app.js)
      shut();
    } else if (e.key === 'ArrowDown') {
      const first = results.querySelector('button');
      if (first) {
        e.preventDefault();
        first.focus();
      }
    }
  });
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, DEBOUNCE_MS);
  });

  async function run() {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      results.replaceChildren();
      status.textContent = '';
      return;
    }
    const found = await searchMessages(client.db, q);
    if (mine !== seq) return; // typed on meanwhile
    status.textContent = found.length ? `${found.length}${found.length === MAX_RESULTS ? '+' : ''} message${found.length === 1 ? '' : 's'} found` : 'No messages found in this browser.';
    results.replaceChildren(...found.map(({ m, at, len }) => {
      const who = m.dir === 'out' ? 'You' : m.group_id ? m.from : '';
      const b = el('button', { type: 'button', class: 'search-hit', dataset: { key: m.key, peer: m.peer } },
        el('span', { class: 'sh-top' }, el('span', { class: 'sh-chat' }, name(m.peer)), el('time', { class: 'sh-time', datetime: new Date(m.ts).toISOString() }, listTime(m.ts))),
        el('span', { class: 'sh-text', dir: 'auto' }, who ? `${who}: ` : '', ...snippet(m.body, at, len)));
      b.addEventListener('click', () => {
        shut(false); // the chat list again behind the chat, which has the focus now
        onPick(m.peer, m.key);
      });
      return el('li', {}, b);
    }));
  }

  return { button, box, open, shut, isOpen: () => !box.hidden };
}
