// util: small DOM and time helpers shared by the client's modules.
// Text always goes into the DOM through textContent (never innerHTML), so a message body
// like <img src=x onerror=...> is shown as the characters it is.

/** Creates an element: el('div', {class: 'x', text: 'hi', onclick: fn, attrs}, ...children). */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Makes parent's children exactly `nodes`, in order, moving only what is out of place (a
 *  moved node loses its focus, and a click in progress on it). */
export function placeChildren(parent, nodes) {
  const kids = parent.children;
  nodes.forEach((n, i) => {
    if (kids[i] !== n) parent.insertBefore(n, kids[i] || null);
  });
  while (kids.length > nodes.length) parent.lastElementChild.remove();
}

const SVGNS = 'http://www.w3.org/2000/svg';

// Icon paths (24x24 unless noted). Drawn with DOM calls, so the CSP needs no inline anything.
const ICONS = {
  send: { d: 'M3.4 20.4 21 12 3.4 3.6 3.4 10.2 15 12 3.4 13.8z', fill: true },
  clip: { d: 'M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5', stroke: 1.8 },
  back: { d: 'M20 11H7.8l5.6-5.6L12 4l-8 8 8 8 1.4-1.4L7.8 13H20z', fill: true },
  newchat: { d: 'M12 5v14M5 12h14', stroke: 2.2 },
  group: { d: 'M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7zM2.5 20a6.5 6.5 0 0 1 13 0M15.5 4.4a3.5 3.5 0 0 1 0 6.2M17.5 13.8a6.5 6.5 0 0 1 4 6.2', stroke: 1.9 },
  logout: { d: 'M10 4H5v16h5M15 8l4 4-4 4M9 12h10', stroke: 2 },
  close: { d: 'M6 6l12 12M18 6 6 18', stroke: 2.2 },
  bell: { d: 'M6 17V11a6 6 0 0 1 12 0v6l2 2H4zM10 21h4', stroke: 1.8 },
  down: { d: 'M6 9l6 6 6-6', stroke: 2.2 },
  search: { d: 'M10.5 17a6.5 6.5 0 1 0 0-13 6.5 6.5 0 0 0 0 13zM15.5 15.5 20 20', stroke: 2 },
  muted: { d: 'M6 17V11a6 6 0 0 1 9.5-4.9M18 11v6l2 2H8M10 21h4M3 3l18 18', stroke: 1.8 },
  lock: { d: 'M6 11h12v9H6zM8.5 11V8a3.5 3.5 0 0 1 7 0v3', stroke: 1.9 },
  // ticks: 18x12 viewBox
  check: { d: 'M2.5 6.5l3.5 3.5L13.5 2.5', stroke: 1.6, vb: '0 0 18 12' },
  dcheck: { d: 'M1 6.5l3.5 3.5L12 2.5M7.5 9.2l.8.8L15.8 2.5', stroke: 1.6, vb: '0 0 18 12' },
  clock: { d: 'M9 1.5a5 5 0 1 0 0 10 5 5 0 0 0 0-10zM9 3.8v2.9l2 1.2', stroke: 1.3, vb: '0 0 18 12' },
  alert: { d: 'M9 1.2 17 11H1zM9 4.8v3M9 9.2v.4', stroke: 1.4, vb: '0 0 18 12' },
};

/** An aria-hidden SVG icon; the control around it carries the accessible name. */
export function icon(name, cls = '') {
  const spec = ICONS[name];
  const svg = document.createElementNS(SVGNS, 'svg');
  svg.setAttribute('viewBox', spec.vb || '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon icon-${name} ${cls}`.trim());
  const p = document.createElementNS(SVGNS, 'path');
  p.setAttribute('d', spec.d);
  if (spec.fill) p.setAttribute('fill', 'currentColor');
  else {
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke', 'currentColor');
    p.setAttribute('stroke-width', String(spec.stroke || 2));
    p.setAttribute('stroke-linecap', 'round');
    p.setAttribute('stroke-linejoin', 'round');
  }
  svg.append(p);
  return svg;
}

const pad2 = (n) => String(n).padStart(2, '0');

/** "14:02": the 24-hour clock, as the "last seen today at 14:02". */
export function hhmm(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** Whole calendar days between two instants, in local time (0: same day, 1: yesterday). */
export function dayDiff(ms, now = Date.now()) {
  return Math.round((startOfDay(now) - startOfDay(ms)) / 86400000);
}

export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/** The label of a day separator: Today, Yesterday, a weekday within the week, else a date. */
export function dayLabel(ms, now = Date.now()) {
  const n = dayDiff(ms, now);
  if (n === 0) return 'Today';
  if (n === 1) return 'Yesterday';
  const d = new Date(ms);
  if (n > 1 && n < 7) return d.toLocaleDateString(undefined, { weekday: 'long' });
  return d.toLocaleDateString(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
}

/** The time shown in the chat list: 14:02 today, Yesterday, a weekday, else a short date. */
export function listTime(ms, now = Date.now()) {
  const n = dayDiff(ms, now);
  if (n === 0) return hhmm(ms);
  if (n === 1) return 'Yesterday';
  const d = new Date(ms);
  if (n > 1 && n < 7) return d.toLocaleDateString(undefined, { weekday: 'long' });
  return d.toLocaleDateString(undefined, { day: '2-digit', month: '2-digit', year: 'numeric' });
}

/** "Today at 14:02", "Yesterday at 09:10", "Monday at …", "3 March 2025 at …". */
export function whenText(ms, now = Date.now()) {
  return `${dayLabel(ms, now)} at ${hhmm(ms)}`;
}

/** A stable one of 8 colours for a name (avatars, senders' names in groups). */
export function colourIndex(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 8;
}

/** "last seen today at 14:02" / "yesterday at" / "on 3 March at"; '' when never seen. */
export function lastSeenText(ms, now = Date.now()) {
  if (!ms) return '';
  const n = dayDiff(ms, now);
  const t = hhmm(ms);
  if (n <= 0) return `last seen today at ${t}`;
  if (n === 1) return `last seen yesterday at ${t}`;
  const d = new Date(ms);
  return `last seen ${d.toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: n > 300 ? 'numeric' : undefined })} at ${t}`;
}

const STRONG = /[\p{L}]/u;
const RTL = /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Adlam}]/u;

/** 'rtl' or 'ltr' from a text's first strong letter, as dir=auto decides (Unicode's P2/P3). */
export function textDir(text) {
  for (const ch of text) if (STRONG.test(ch)) return RTL.test(ch) ? 'rtl' : 'ltr';
  return 'ltr';
}

/** A client message id: printable ASCII, unique per device (PROTOCOL section 4). */
export function newClientId() {
  return 'c-' + crypto.randomUUID();
}

/** A label for this browser as a device ("Chrome on Linux"), at most 64 chars. */
export function deviceLabel() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom/.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS/.test(ua) ? 'macOS' : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : '';
  return `Web: ${browser}${os ? ' on ' + os : ''}`.slice(0, 64);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
