// mentionpick: the @mention picker of the message box in a group (PROTOCOL 15 "mentions").
// Typing "@" then the start of a name, at the start of the text or after a space, lists the
// group's other members whose username or display name starts with it; ↑/↓ move, Enter or
// Tab picks, Escape closes, a click or tap picks. The pick writes "@username " in place of
// what was typed, which is the form mentionsIn (actions.js) finds when the message is sent.
// The list is an ARIA listbox tied to the textarea (aria-activedescendant), so a screen
// reader follows the highlighted name while the focus stays in the message box.
import { el } from './util.js';

const MAX_SHOWN = 8;

/** The "@word" being typed just before the caret, or null. */
export function mentionAt(text, caret) {
  const m = /(^|\s)@([^\s@]{0,32})$/.exec(text.slice(0, caret));
  return m ? { start: caret - m[2].length - 1, query: m[2].toLowerCase() } : null;
}

/** Members to offer for a query: username or display name starts with it, at most 8. */
export function mentionChoices(members, query, nameOf) {
  const starts = (s) => s.toLowerCase().startsWith(query);
  return members.filter((u) => starts(u) || starts(nameOf(u))).sort().slice(0, MAX_SHOWN);
}

/** Attaches the picker to textIn. members(): the other members of the open chat when it is
 *  a group, else null. nameOf(user): the display name. Returns the list element to place. */
export function mentionPicker(textIn, { members, nameOf }) {
  const list = el('ul', { id: 'mention-list', class: 'mention-list', role: 'listbox', 'aria-label': 'Mention a member', hidden: true });
  textIn.setAttribute('aria-autocomplete', 'list');
  textIn.setAttribute('aria-controls', 'mention-list');
  let shown = []; // usernames in the list
  let at = null; // {start, query} of the word being completed
  let sel = 0;

  function close() {
    if (list.hidden) return;
    list.hidden = true;
    shown = [];
    textIn.removeAttribute('aria-activedescendant');
    textIn.setAttribute('aria-expanded', 'false');
  }

  function highlight(i) {
    sel = i;
    [...list.children].forEach((li, k) => li.setAttribute('aria-selected', k === i ? 'true' : 'false'));
    if (list.children[i]) {
      textIn.setAttribute('aria-activedescendant', list.children[i].id);
      list.children[i].scrollIntoView({ block: 'nearest' });
    }
  }

  function update() {
    const mem = members();
    at = mem && textIn.selectionStart === textIn.selectionEnd ? mentionAt(textIn.value, textIn.selectionStart) : null;
    const choices = at ? mentionChoices(mem, at.query, nameOf) : [];
    if (!choices.length) return close();
    shown = choices;
    list.replaceChildren(...choices.map((u, i) => {
      const name = nameOf(u);
      return el('li', { id: `mention-opt-${i}`, role: 'option', class: 'mention-opt', dataset: { user: u } },
        el('span', { class: 'mo-name', dir: 'auto' }, name), name !== u ? el('span', { class: 'mo-user' }, `@${u}`) : null);
    }));
    list.hidden = false;
    textIn.setAttribute('aria-expanded', 'true');
    highlight(Math.min(sel, choices.length - 1));
  }

  function pick(user) {
    if (!at) return close();
    const v = textIn.value;
    const end = textIn.selectionStart;
    const ins = `@${user} `;
    textIn.value = v.slice(0, at.start) + ins + v.slice(end);
    const caret = at.start + ins.length;
    textIn.setSelectionRange(caret, caret);
    close();
    textIn.focus();
    textIn.dispatchEvent(new Event('input', { bubbles: true })); // the draft and the box's height follow
  }

  textIn.addEventListener('input', () => {
    if (!list.hidden || /@/.test(textIn.value)) update();
  });
  textIn.addEventListener('click', update);
  textIn.addEventListener('blur', () => setTimeout(close, 150)); // after a click on the list
  // capture: the picker sees Enter before the message box sends
  textIn.addEventListener('keydown', (e) => {
    if (list.hidden || e.isComposing) return;
    const n = shown.length;
    let handled = true;
    if (e.key === 'ArrowDown') highlight((sel + 1) % n);
    else if (e.key === 'ArrowUp') highlight((sel + n - 1) % n);
    else if (e.key === 'Enter' || e.key === 'Tab') pick(shown[sel]);
    else if (e.key === 'Escape') close();
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, { capture: true });
  // pointerdown, not click: the textarea keeps its focus and its caret
  list.addEventListener('pointerdown', (e) => {
    const li = e.target.closest('.mention-opt');
    if (!li) return;
    e.preventDefault();
    pick(li.dataset.user);
  });
  return { list, close };
}
