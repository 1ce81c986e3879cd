// richtext: a message body as DOM nodes, with its web addresses as links and its @mentions
// marked. Text only: the client never fetches a link's page for a preview, and neither does
// the server. Everything goes in as text nodes; a link's href is only ever http(s).
import { el } from './util.js';

// An address starts with http:// or https:// (or www.), and runs to a space; trailing
// punctuation that usually ends a sentence is not part of it, nor an unmatched ')'.
const TOKEN = /\b(https?:\/\/|www\.)[^\s<>"]+|(^|[^\w@])@([a-z0-9_.-]{3,32})/gi;
const TRAILING = /[.,;:!?'"»”’]+$/;

function trimUrl(u) {
  let out = u.replace(TRAILING, '');
  while (out.endsWith(')') && (out.match(/\(/g) || []).length < (out.match(/\)/g) || []).length) out = out.slice(0, -1).replace(TRAILING, '');
  return out;
}

/** The nodes of a body: text, <a> for addresses, <span class="mention"> for @names that are
 *  in `names` (a group's members; none in a 1:1 chat), the one of `me` marked as such. */
export function richText(body, { names = [], me = '' } = {}) {
  const out = [];
  let last = 0;
  for (const m of body.matchAll(TOKEN)) {
    let start = m.index;
    let text = m[0];
    let node = null;
    if (m[1]) {
      text = trimUrl(text);
      const href = /^www\./i.test(text) ? `https://${text}` : text;
      let ok = false;
      try {
        ok = /^https?:$/.test(new URL(href).protocol);
      } catch { /* not an address after all */ }
      if (ok) node = el('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow', class: 'link-out' }, text);
    } else {
      start += m[2].length; // the character before the @ stays text
      const raw = m[3].replace(/[.]+$/, ''); // "@bob." ends a sentence
      const user = raw.toLowerCase();
      text = `@${raw}`;
      if (names.includes(user)) node = el('span', { class: `mention${user === me ? ' me' : ''}`, dataset: { user } }, text);
    }
    if (!node) continue;
    if (start > last) out.push(body.slice(last, start));
    out.push(node);
    last = start + text.length;
  }
  if (last < body.length) out.push(body.slice(last));
  return out;
}
