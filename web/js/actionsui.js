// actionsui: what a person does with one message (PROTOCOL.md 15, rules in actions.js): its
// menu (a row of quick reactions and a small picker, Reply, Edit, Delete for everyone,
// Delete for me, Message info), the quote above a reply and the reaction counts under a
// bubble, the bar over the message box while replying or editing, and swipe-to-reply on a
// touch screen (and a long press or right click for the menu). Text goes in through el() only.
import { el, icon } from './util.js';
import { QUICK_EMOJI, choices, reactionCounts } from './actions.js';
import { DELETED_TEXT, previewOf } from './client.js';
import { isAdmin } from './groups.js';

const MORE_EMOJI = ['😀', '😁', '😊', '😍', '😘', '😎', '🤔', '😅', '😭', '😡', '🥳', '😴', '👏', '🙌', '💪', '👀',
  '🔥', '🎉', '✅', '❌', '💯', '⭐', '🌹', '☕', '🍕', '⚽', '🚀', '💡', '👎', '🤝'];
const SWIPE_PX = 64; // a touch swipe to the right this long replies

/** sender(m): the name a message's author goes by (a display name, or "You"). */
export function actionsUi(client, { confirm, toast, composer, textIn, sender, showMessage, openInfo, onModeChange }) {
  const me = client.user;
  let mode = null; // {kind: 'reply' | 'edit', m, draft}

  // ---- the menu -----------------------------------------------------------------------------
  const quick = el('div', { class: 'react-row', role: 'group', 'aria-label': 'React' });
  const moreBtn = el('button', { type: 'button', class: 'emoji-btn more', 'aria-label': 'More reactions', 'aria-expanded': 'false' }, '+');
  const picker = el('div', { class: 'emoji-grid', role: 'group', 'aria-label': 'More reactions', hidden: true });
  const items = el('div', { class: 'msg-menu-items' });
  const menu = el('div', { class: 'msg-menu', id: 'msg-menu', role: 'menu', 'aria-label': 'Message', hidden: true }, quick, picker, items);
  let menuFor = null; // the message the menu is open for
  let opener = null;

  function emojiButton(emoji, m) {
    const mine = (m.reactions || {})[me] === emoji;
    const b = el('button', { type: 'button', class: `emoji-btn${mine ? ' mine' : ''}`, 'aria-label': mine ? `Remove your ${emoji} reaction` : `React with ${emoji}`, 'aria-pressed': mine ? 'true' : 'false' }, emoji);
    b.addEventListener('click', () => {
      closeMenu(true);
      react(m, mine ? '' : emoji);
    });
    return b;
  }

  function item(label, id, fn, cls = '') {
    const b = el('button', { type: 'button', role: 'menuitem', class: `menu-item ${cls}`.trim(), id }, label);
    b.addEventListener('click', () => {
      closeMenu(true);
      fn();
    });
    return b;
  }

  function openMenu(m, button) {
    const g = m.group_id && client.group(m.group_id);
    const can = choices(m, me, Date.now() + client.skew, isAdmin(g, me));
    quick.replaceChildren(...(can.react ? [...QUICK_EMOJI.map((e) => emojiButton(e, m)), moreBtn] : []));
    picker.replaceChildren(...MORE_EMOJI.map((e) => emojiButton(e, m)));
    picker.hidden = true;
    moreBtn.setAttribute('aria-expanded', 'false');
    quick.hidden = !can.react;
    const list = [];
    if (can.reply) list.push(item('Reply', 'mm-reply', () => startReply(m)));
    if (m.body && !m.deleted && navigator.clipboard) list.push(item('Copy text', 'mm-copy', () => navigator.clipboard.writeText(m.body).catch(() => {})));
    if (can.edit) list.push(item('Edit', 'mm-edit', () => startEdit(m)));
    if (openInfo && m.group_id && m.from === me && m.msg_id) list.push(item('Message info', 'mm-info', () => openInfo(m)));
    if (can.deleteAll) list.push(item('Delete for everyone', 'mm-delete-all', () => deleteAll(m), 'danger-text'));
    list.push(item('Delete for me', 'mm-delete-me', () => deleteMine(m), 'danger-text'));
    items.replaceChildren(...list);
    menuFor = m;
    opener = button;
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    place(button);
    (menu.querySelector('.emoji-btn') || menu.querySelector('.menu-item')).focus();
  }

  // Fixed to the screen beside the button, kept inside it (a phone is narrow).
  function place(button) {
    const r = button.getBoundingClientRect();
    const w = menu.offsetWidth;
    const h = menu.offsetHeight;
    let left = Math.min(r.right - w, innerWidth - w - 8);
    left = Math.max(8, left);
    let top = r.bottom + 4;
    if (top + h > innerHeight - 8) top = Math.max(8, r.top - h - 4);
    menu.style.left = `${Math.round(left)}px`; // CSSOM, allowed under style-src 'self'
    menu.style.top = `${Math.round(top)}px`;
  }

  function closeMenu(refocus) {
    if (menu.hidden) return;
    menu.hidden = true;
    if (opener) {
      opener.setAttribute('aria-expanded', 'false');
      if (refocus && opener.isConnected) opener.focus({ preventScroll: true });
    }
    menuFor = null;
  }
  moreBtn.addEventListener('click', () => {
    picker.hidden = !picker.hidden;
    moreBtn.setAttribute('aria-expanded', String(!picker.hidden));
    if (!picker.hidden) picker.querySelector('.emoji-btn').focus();
    if (opener) place(opener);
  });
  menu.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault(); // the chat stays open (app.js closes it on an Escape nobody took)
      closeMenu(true);
    }
  });
  const outside = (e) => { if (!menu.hidden && !menu.contains(e.target) && e.target !== opener && !(opener && opener.contains(e.target))) closeMenu(false); };
  document.addEventListener('pointerdown', outside, true);

  /** The ⌄ button of a bubble, which opens its menu. */
  function menuButton(m) {
    const b = el('button', { type: 'button', class: 'msg-more', 'aria-label': 'Message menu', title: 'Message menu', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': 'msg-menu' }, icon('down'));
    b.addEventListener('click', (e) => {
      e.stopPropagation();
      if (menuFor && menuFor.key === m.key) return closeMenu(false);
      openMenu(m, b);
    });
    return b;
  }

  // ---- doing it -----------------------------------------------------------------------------
  function react(m, emoji) {
    client.sendAction(m.peer, { kind: 'reaction', to: m.msg_id, emoji });
  }

  async function deleteAll(m) {
    const ok = await confirm.ask('Delete for everyone?', 'The message is deleted on every device it reached; they show “This message was deleted” in its place.', 'Delete for everyone');
    if (ok) client.sendAction(m.peer, { kind: 'delete', of: m.msg_id });
  }

  async function deleteMine(m) {
    const ok = await confirm.ask('Delete for me?', 'The message is deleted from this browser only. Others still have it.', 'Delete for me');
    if (ok) client.removeMessage(m.key);
  }

  // ---- replying and editing: the bar over the message box ---------------------------------
  const barTitle = el('p', { class: 'cb-title' });
  const barText = el('p', { class: 'cb-text', dir: 'auto' });
  const barCancel = el('button', { type: 'button', class: 'icon-btn small', id: 'composer-bar-cancel', 'aria-label': 'Cancel' }, icon('close'));
  const bar = el('div', { class: 'composer-bar', id: 'composer-bar', hidden: true }, el('div', { class: 'cb-main' }, barTitle, barText), barCancel);

  function setMode(next) {
    const was = mode;
    mode = next;
    bar.hidden = !mode;
    composer.classList.toggle('editing', !!mode && mode.kind === 'edit');
    if (mode) {
      barTitle.textContent = mode.kind === 'edit' ? 'Edit message' : `Replying to ${sender(mode.m)}`;
      barText.textContent = previewOf(mode.m);
    }
    if (was && was.kind === 'edit' && (!mode || mode.kind !== 'edit')) textIn.value = was.draft; // back to the draft
    if (onModeChange) onModeChange();
  }

  function startReply(m) {
    setMode({ kind: 'reply', m });
    textIn.focus();
  }

  function startEdit(m) {
    const draft = mode && mode.kind === 'edit' ? mode.draft : textIn.value;
    setMode({ kind: 'edit', m, draft });
    textIn.value = m.body || '';
    textIn.dispatchEvent(new Event('input'));
    textIn.focus();
  }

  barCancel.addEventListener('click', () => {
    setMode(null);
    textIn.dispatchEvent(new Event('input'));
    textIn.focus();
  });
  textIn.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && mode) {
      e.preventDefault();
      barCancel.click();
    }
  });

  /** The composer sends: what goes with the text ({reply_to} or {edit: m}), and the bar
   *  closes. null when neither. */
  function take() {
    const m = mode;
    if (!m) return null;
    mode = null;
    bar.hidden = true;
    composer.classList.remove('editing');
    if (onModeChange) onModeChange();
    return m.kind === 'edit' ? { edit: m.m, draft: m.draft } : { reply_to: m.m.msg_id };
  }

  /** Another chat opened: a reply or an edit does not follow it. */
  function reset() {
    if (mode) setMode(null);
    closeMenu(false);
  }

  // ---- in the bubble: the quote, the reactions ----------------------------------------------
  /** The quote at the top of a reply: who and what, a click shows the original. quoted: the
   *  original's record, or null when this browser does not have it. */
  function quote(m, quoted) {
    const q = el('button', { type: 'button', class: 'quote', 'aria-label': 'Show the quoted message' },
      el('span', { class: 'q-from' }, quoted ? sender(quoted) : 'A message'),
      el('span', { class: 'q-text', dir: 'auto' }, quoted ? previewOf(quoted) : 'not in this browser'));
    q.addEventListener('click', () => {
      if (quoted) showMessage(quoted.key);
      else toast('The quoted message is not in this browser.');
    });
    return q;
  }

  function reactions(m) {
    const counts = reactionCounts(m, me);
    if (!counts.length) return null;
    const row = el('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' });
    for (const c of counts) {
      const label = `${c.emoji} ${c.count}: ${c.users.map((u) => (u === me ? 'you' : u)).join(', ')}${c.mine ? ' (click to remove yours)' : ''}`;
      const chip = el('button', { type: 'button', class: `reaction${c.mine ? ' mine' : ''}`, 'aria-label': label, title: label }, c.emoji, c.count > 1 ? el('span', { class: 'r-count' }, String(c.count)) : null);
      chip.addEventListener('click', () => { if (m.msg_id && !m.deleted) react(m, c.mine ? '' : c.emoji); });
      row.append(chip);
    }
    return row;
  }

  /** "This message was deleted", with the spacer (its class from app.js) that keeps the time clear. */
  const deletedLine = (spacer = 'meta-spacer') => el('p', { class: 'text deleted', dir: 'auto' }, DELETED_TEXT, el('span', { class: spacer, 'aria-hidden': 'true' }));

  // ---- swipe to reply (touch) ---------------------------------------------------------------
  /** Swiping a bubble to the right starts a reply, as in WhatsApp. messageOf(node): its record. */
  function swipeToReply(list, messageOf) {
    let s = null;
    list.addEventListener('pointerdown', (e) => {
      if (e.pointerType !== 'touch') return;
      const node = e.target.closest('.msg');
      if (node) s = { node, x: e.clientX, y: e.clientY, id: e.pointerId, dx: 0 };
    }, { passive: true });
    list.addEventListener('pointermove', (e) => {
      if (!s || e.pointerId !== s.id) return;
      const dx = e.clientX - s.x;
      if (Math.abs(e.clientY - s.y) > 30) return end(false); // a scroll, not a swipe
      s.dx = Math.max(0, Math.min(dx, SWIPE_PX * 1.5));
      s.node.style.transform = `translateX(${s.dx}px)`;
    }, { passive: true });
    const end = (done) => {
      if (!s) return;
      const { node, dx } = s;
      s = null;
      node.style.transform = '';
      if (done && dx >= SWIPE_PX) {
        const m = messageOf(node);
        if (m && choices(m, me, Date.now()).reply) startReply(m);
      }
    };
    list.addEventListener('pointerup', () => end(true));
    list.addEventListener('pointercancel', () => end(false));
    // A long press (touch) or a right click opens the message's menu, as in WhatsApp; on a
    // link, or with text selected, the browser's own menu stays.
    list.addEventListener('contextmenu', (e) => {
      const node = e.target.closest('.msg');
      const button = node && node.querySelector('.msg-more');
      const m = node && messageOf(node);
      if (!button || !m || e.target.closest('a') || String(getSelection())) return;
      e.preventDefault();
      openMenu(m, button);
    });
  }

  return {
    menu, bar, menuButton, quote, reactions, deletedLine, take, reset, startReply, startEdit, swipeToReply,
    closeMenu,
    destroy() { document.removeEventListener('pointerdown', outside, true); },
  };
}
