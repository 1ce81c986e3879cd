// safety: the "Verify safety number" dialog (PROTOCOL.md 11 "Clients"). The 60 digits in 12
// groups of 5, as `tern safety USER` prints them, and a QR code of the same digits for the
// other person to scan or compare. The QR code is drawn with DOM calls (an SVG of rects): no
// markup is parsed, so the CSP needs nothing inline.
import { el } from './util.js';

const SVGNS = 'http://www.w3.org/2000/svg';

function qrSvg(q) {
  const n = q.getModuleCount();
  const quiet = 2;
  const svg = document.createElementNS(SVGNS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${n + 2 * quiet} ${n + 2 * quiet}`);
  svg.setAttribute('class', 'qr');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code of the safety number');
  const bg = document.createElementNS(SVGNS, 'rect');
  bg.setAttribute('width', String(n + 2 * quiet));
  bg.setAttribute('height', String(n + 2 * quiet));
  bg.setAttribute('fill', '#fff');
  svg.append(bg);
  let d = '';
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) if (q.isDark(r, c)) d += `M${c + quiet} ${r + quiet}h1v1h-1z`;
  const p = document.createElementNS(SVGNS, 'path');
  p.setAttribute('d', d);
  p.setAttribute('fill', '#000');
  svg.append(p);
  return svg;
}

export function safetyDialog(client) {
  const title = el('h2', { id: 'sf-title' }, 'Verify safety number');
  const intro = el('p', { class: 'fine' });
  const digits = el('p', { class: 'safety-digits', id: 'safety-number', 'aria-live': 'polite' });
  const qrSlot = el('div', { class: 'qr-slot' });
  const err = el('p', { class: 'form-error', role: 'alert' });
  const close = el('button', { type: 'button', class: 'primary', id: 'safety-close' }, 'Done');
  const dialog = el('dialog', { class: 'dialog safety', id: 'safety-dialog', 'aria-labelledby': 'sf-title' },
    el('div', { class: 'dialog-form' }, title, intro, digits, qrSlot, err, el('div', { class: 'buttons' }, close)));
  close.addEventListener('click', () => dialog.close());
  let back = null;
  dialog.addEventListener('close', () => { if (back && back.isConnected) back.focus(); });
  return {
    dialog,
    async open(user) {
      back = document.activeElement;
      intro.textContent = `Messages with ${user} are end-to-end encrypted. Compare these numbers with ${user}'s screen (or scan the code) to check that no one is in between.`;
      digits.textContent = 'Computing…';
      delete digits.dataset.number;
      qrSlot.replaceChildren();
      err.textContent = '';
      dialog.showModal();
      close.focus();
      try {
        if (!client.secure) throw new Error('This browser has no end-to-end encryption.');
        const n = await client.secure.safety(user);
        if (!n) throw new Error(`${user} has no device with keys yet.`);
        digits.dataset.number = n;
        digits.replaceChildren(...n.match(/.{5}/g).map((g) => el('span', {}, g)));
        qrSlot.append(qrSvg(client.secure.qr(n)));
      } catch (e) {
        digits.textContent = '';
        err.textContent = e.status === 0 || e.code === 'network' ? 'Cannot reach the server.' : e.message;
      }
    },
  };
}
