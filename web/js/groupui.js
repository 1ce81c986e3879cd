// groupui: the group screens (PROTOCOL.md section 10): New group, Group info (members, roles,
// rename, add, remove, admins, leave) and Message info (each member's delivered and read
// times), plus a confirm dialog and the username check New chat uses too. Text goes in through
// el() (textContent) only.
import { el, icon, colourIndex, whenText } from './util.js';
import * as api from './api.js';
import {
  GROUP_NAME_MAX, GROUP_DESC_MAX, byteLength, isAdmin, receiptRows,
} from './groups.js';

/** A username as the server accepts it (PROTOCOL 2), for the checks of the other screens too. */
export const USER_RE = /^[a-z0-9_.-]{3,32}$/;

export function avatar(name, extra = '') {
  return el('span', { class: `avatar c${colourIndex(name)} ${extra}`.trim(), 'aria-hidden': 'true' }, (name[0] || '?').toUpperCase());
}

export function groupAvatar(extra = '') {
  const a = el('span', { class: `avatar group ${extra}`.trim(), 'aria-hidden': 'true' });
  a.append(icon('group'));
  return a;
}

/** Checks a typed username with GET /v1/users/{name}: '' when it may be used, else why not.
 *  Offline, a name is let through (the server refuses unknown ones itself). */
export async function checkUser(client, name) {
  if (!USER_RE.test(name)) return 'A username is 3 to 32 characters: letters, digits, dot, underscore or dash.';
  if (name === client.user) return '';
  try {
    const u = await api.user(client.session.token, name);
    client.presence.set(name, { online: !!u.online, last_seen: u.last_seen ?? null });
    return '';
  } catch (err) {
    if (err.status === 404) return `There is no user named “${name}”.`;
    if (err.status === 401) {
      client.emit('ended', { code: 4001 });
      return 'Your session has ended.';
    }
    return '';
  }
}

/** Checks the username typed in `input` (checkUser, with `button` disabled meanwhile). A
 *  refusal is shown in errorBox and marks the field; returns the name, or null when refused. */
export async function checkField(client, input, errorBox, button) {
  const name = input.value.trim().toLowerCase();
  button.disabled = true;
  const why = await checkUser(client, name);
  button.disabled = false;
  errorBox.textContent = why;
  if (why) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return null;
  }
  input.removeAttribute('aria-invalid');
  return name;
}

/** The server's refusal of a group request, as a sentence. */
export function refusal(e, what) {
  if (e.status === 0) return `${what}: cannot reach the server. Check your connection.`;
  if (e.code === 'no_such_user') return `${what}: there is no user named “${e.user || '?'}”.`;
  if (e.status === 403 && e.user) return `${what}: ${e.user} cannot join more groups.`;
  if (e.status === 403) return `${what}: not allowed (${e.message}).`;
  if (e.status === 404) return `${what}: the group or that member is not there any more, or you are no longer in the group.`;
  if (e.status === 413) return `${what}: the group would have too many members.`;
  return `${what}: ${e.message}`;
}

function lengthError(name, desc) {
  const n = byteLength(name);
  if (!n) return 'The group needs a name.';
  if (n > GROUP_NAME_MAX) return `The name is too long (${GROUP_NAME_MAX} bytes at most).`;
  if (byteLength(desc) > GROUP_DESC_MAX) return `The description is too long (${GROUP_DESC_MAX} bytes at most).`;
  return '';
}

/** A modal yes/no question. ask() resolves true for the confirming button. */
export function confirmDialog() {
  const title = el('h2', { id: 'cf-title' });
  const text = el('p', {});
  const ok = el('button', { type: 'button', class: 'danger', id: 'confirm-ok' });
  const cancel = el('button', { type: 'button', class: 'secondary', id: 'confirm-cancel' }, 'Cancel');
  const dialog = el('dialog', { class: 'dialog', id: 'confirm-dialog', 'aria-labelledby': 'cf-title' },
    el('div', { class: 'dialog-form' }, title, text, el('div', { class: 'buttons' }, cancel, ok)));
  let answer = null;
  ok.addEventListener('click', () => { answer = true; dialog.close(); });
  cancel.addEventListener('click', () => dialog.close());
  return {
    dialog,
    ask(t, body, okLabel) {
      title.textContent = t;
      text.textContent = body;
      ok.textContent = okLabel;
      answer = false;
      const back = document.activeElement;
      dialog.showModal();
      cancel.focus();
      return new Promise((resolve) => {
        dialog.addEventListener('close', () => {
          if (back && back.isConnected) back.focus();
          resolve(answer);
        }, { once: true });
      });
    },
  };
}

/** New group: a name, an optional description, members added one by one (each checked). */
export function newGroupDialog(client, { onCreated }) {
  const nameIn = el('input', { id: 'group-name', autocomplete: 'off', required: true, maxlength: String(GROUP_NAME_MAX) });
  const descIn = el('textarea', { id: 'group-desc', rows: 2, maxlength: String(GROUP_DESC_MAX) });
  const memberIn = el('input', { id: 'group-member', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '32', placeholder: 'Username', 'aria-describedby': 'group-member-hint' });
  const addBtn = el('button', { type: 'button', class: 'secondary', id: 'group-member-add' }, 'Add');
  const chips = el('ul', { class: 'chips', id: 'group-members', 'aria-label': 'Members' });
  const error = el('p', { class: 'form-error', id: 'new-group-error', role: 'alert' });
  const go = el('button', { type: 'submit', class: 'primary', id: 'new-group-go' }, 'Create group');
  const cancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const form = el('form', { class: 'dialog-form', novalidate: true },
    el('h2', { id: 'ng-title' }, 'New group'),
    el('label', { for: 'group-name' }, 'Group name'), nameIn,
    el('label', { for: 'group-desc' }, 'Description (optional)'), descIn,
    el('label', { for: 'group-member' }, 'Members'),
    el('div', { class: 'add-row' }, memberIn, addBtn),
    el('p', { class: 'hint', id: 'group-member-hint' }, 'Type a username and press Enter. You are in the group too.'),
    chips, error,
    el('div', { class: 'buttons' }, cancel, go));
  const dialog = el('dialog', { class: 'dialog', id: 'new-group-dialog', 'aria-labelledby': 'ng-title' }, form);
  let members = [];

  function drawChips() {
    chips.replaceChildren(...members.map((u) => {
      const x = el('button', { type: 'button', class: 'chip-x', 'aria-label': `Remove ${u}` }, icon('close'));
      x.addEventListener('click', () => {
        members = members.filter((m) => m !== u);
        drawChips();
        memberIn.focus();
      });
      return el('li', { class: 'chip', dataset: { user: u } }, avatar(u, 'small'), el('span', {}, u), x);
    }));
  }

  /** Adds what the member field holds; false when it was refused. */
  async function addTyped() {
    if (!memberIn.value.trim()) return true;
    const name = await checkField(client, memberIn, error, addBtn);
    if (!name) return false;
    if (name !== client.user && !members.includes(name)) members.push(name);
    memberIn.value = '';
    drawChips();
    return true;
  }

  addBtn.addEventListener('click', () => { addTyped().then(() => memberIn.focus()); });
  // Enter adds the name typed; in an empty field it submits (creates the group).
  memberIn.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing && memberIn.value.trim()) {
      e.preventDefault();
      addTyped();
    }
  });
  cancel.addEventListener('click', () => dialog.close());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!(await addTyped())) return;
    const name = nameIn.value.trim();
    const description = descIn.value.trim();
    const bad = lengthError(name, description);
    if (bad) {
      error.textContent = bad;
      nameIn.setAttribute('aria-invalid', 'true');
      nameIn.focus();
      return;
    }
    nameIn.removeAttribute('aria-invalid');
    go.disabled = true;
    try {
      const peer = await client.createGroup(name, description, members);
      dialog.close();
      onCreated(peer);
    } catch (err) {
      error.textContent = refusal(err, 'The group was not created');
      if (err.user) members = members.filter((m) => m !== err.user);
      drawChips();
    } finally {
      go.disabled = false;
    }
  });

  return {
    dialog,
    open() {
      members = [];
      nameIn.value = descIn.value = memberIn.value = '';
      error.textContent = '';
      nameIn.removeAttribute('aria-invalid');
      memberIn.removeAttribute('aria-invalid');
      go.disabled = false;
      drawChips();
      dialog.showModal();
      nameIn.focus();
    },
  };
}

/** Group info: what the group is and who is in it; admins change it, everyone may leave. */
/** onVerify(user): opens the safety number of a member (end-to-end encryption, PROTOCOL 11):
 *  a group is pairwise-encrypted, so each member is verified as in a 1:1 chat. */
export function groupInfoDialog(client, { confirm, toast, onVerify = null }) {
  const me = client.user;
  const close = el('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close' }, icon('close'));
  const nameH = el('h3', { class: 'gi-name', id: 'gi-name' });
  const countP = el('p', { class: 'gi-count', id: 'gi-count' });
  const descP = el('p', { class: 'gi-desc', id: 'gi-desc', dir: 'auto' });
  const editBtn = el('button', { type: 'button', class: 'link', id: 'gi-edit' }, 'Edit name and description');
  const nameIn = el('input', { id: 'gi-name-in', autocomplete: 'off', maxlength: String(GROUP_NAME_MAX) });
  const descIn = el('textarea', { id: 'gi-desc-in', rows: 3, maxlength: String(GROUP_DESC_MAX) });
  const saveBtn = el('button', { type: 'submit', class: 'primary', id: 'gi-save' }, 'Save');
  const editCancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const editForm = el('form', { class: 'gi-edit-form', id: 'gi-edit-form', hidden: true, novalidate: true },
    el('label', { for: 'gi-name-in' }, 'Group name'), nameIn,
    el('label', { for: 'gi-desc-in' }, 'Description'), descIn,
    el('div', { class: 'buttons' }, editCancel, saveBtn));
  const error = el('p', { class: 'form-error', id: 'gi-error', role: 'alert' });
  const leftNote = el('p', { class: 'notice', id: 'gi-left', hidden: true }, 'You are no longer a member of this group.');
  const membersH = el('h3', { class: 'gi-section', id: 'gi-members-title' });
  const addIn = el('input', { id: 'gi-add-user', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '32', placeholder: 'Username' });
  const addBtn = el('button', { type: 'submit', class: 'secondary', id: 'gi-add' }, 'Add');
  const addForm = el('form', { class: 'gi-add-form', id: 'gi-add-form', novalidate: true },
    el('label', { for: 'gi-add-user' }, 'Add a member'), el('div', { class: 'add-row' }, addIn, addBtn));
  const list = el('ul', { class: 'gi-members', id: 'gi-members', 'aria-labelledby': 'gi-members-title' });
  const leaveBtn = el('button', { type: 'button', class: 'danger', id: 'gi-leave' }, 'Leave group');
  const dialog = el('dialog', { class: 'dialog sheet', id: 'group-info', 'aria-labelledby': 'gi-title' },
    el('header', { class: 'sheet-head' }, close, el('h2', { id: 'gi-title' }, 'Group info')),
    el('div', { class: 'sheet-body' },
      el('div', { class: 'gi-top' }, groupAvatar('big'), nameH, countP, descP, editBtn, editForm),
      error, leftNote,
      el('section', { class: 'gi-people' }, membersH, addForm, list),
      leaveBtn));
  let gid = null;
  let back = null;

  const group = () => client.group(gid);

  function render() {
    const g = group();
    if (!g) return;
    const admin = g.member && isAdmin(g, me);
    nameH.textContent = g.name || 'Unnamed group';
    countP.textContent = `Group · ${g.members.length} member${g.members.length === 1 ? '' : 's'}`;
    descP.textContent = g.description || (admin ? 'No description yet.' : '');
    descP.classList.toggle('muted', !g.description);
    editBtn.hidden = !admin || !editForm.hidden;
    if (!admin) editForm.hidden = true;
    leftNote.hidden = g.member;
    addForm.hidden = !admin;
    leaveBtn.hidden = !g.member;
    membersH.textContent = `${g.members.length} member${g.members.length === 1 ? '' : 's'}`;
    // You first, then in the order they joined.
    const rows = [...g.members].sort((a, b) => (b.user === me) - (a.user === me));
    list.replaceChildren(...rows.map((m) => memberRow(g, m, admin)));
  }

  function memberRow(g, m, admin) {
    const you = m.user === me;
    const li = el('li', { class: 'gi-member', dataset: { user: m.user, role: m.role } },
      avatar(m.user),
      el('span', { class: 'gi-who' }, el('span', { class: 'gi-user' }, you ? 'You' : m.user),
        m.role === 'admin' ? el('span', { class: 'admin-badge' }, 'Group admin') : null));
    const actions = [];
    if (!you && onVerify && client.secure) {
      const verify = el('button', { type: 'button', class: 'link gi-verify', 'aria-label': `Verify the safety number of ${m.user}` }, 'Verify safety number');
      verify.addEventListener('click', () => onVerify(m.user));
      actions.push(verify);
    }
    if (admin && !you) {
      const promote = el('button', { type: 'button', class: 'link gi-role' }, m.role === 'admin' ? 'Dismiss as admin' : 'Make group admin');
      promote.addEventListener('click', () => act(promote, m.role === 'admin' ? `Dismissing ${m.user} as admin` : `Making ${m.user} an admin`,
        () => client.setAdmin(gid, m.user, m.role !== 'admin')));
      const remove = el('button', { type: 'button', class: 'link danger-link gi-remove' }, 'Remove');
      remove.addEventListener('click', async () => {
        if (!(await confirm.ask(`Remove ${m.user}?`, `${m.user} will be removed from “${g.name}” and get no more of its messages.`, 'Remove'))) return;
        act(remove, `Removing ${m.user}`, () => client.removeMember(gid, m.user));
      });
      actions.push(promote, remove);
    }
    if (actions.length) li.append(el('span', { class: 'gi-actions' }, ...actions));
    return li;
  }

  /** Runs an HTTP action, showing the server's refusal in the panel. */
  async function act(btn, what, fn) {
    error.textContent = '';
    if (btn) btn.disabled = true;
    try {
      await fn();
      return true;
    } catch (e) {
      error.textContent = refusal(e, `${what} failed`);
      return false;
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  editBtn.addEventListener('click', () => {
    const g = group();
    nameIn.value = g.name;
    descIn.value = g.description;
    editForm.hidden = false;
    editBtn.hidden = true;
    nameIn.focus();
  });
  editCancel.addEventListener('click', () => {
    editForm.hidden = true;
    render();
    editBtn.focus();
  });
  editForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const g = group();
    const name = nameIn.value.trim();
    const description = descIn.value.trim();
    const bad = lengthError(name, description);
    if (bad) {
      error.textContent = bad;
      nameIn.focus();
      return;
    }
    const fields = {};
    if (name !== g.name) fields.name = name;
    if (description !== g.description) fields.description = description;
    if (Object.keys(fields).length && !(await act(saveBtn, 'Renaming the group', () => client.renameGroup(gid, fields)))) return;
    editForm.hidden = true;
    render();
    editBtn.focus();
  });
  addForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const typed = addIn.value.trim().toLowerCase();
    if (!typed) return;
    if (group().members.some((m) => m.user === typed)) {
      error.textContent = `${typed} is in the group already.`;
      return;
    }
    const name = await checkField(client, addIn, error, addBtn);
    if (!name) return;
    if (await act(addBtn, `Adding ${name}`, () => client.addMembers(gid, [name]))) {
      addIn.value = '';
      addIn.focus();
    }
  });
  leaveBtn.addEventListener('click', async () => {
    const g = group();
    if (!(await confirm.ask(`Leave “${g.name}”?`, 'You will get no more of its messages. The chat stays in this browser.', 'Leave group'))) return;
    if (await act(leaveBtn, 'Leaving the group', () => client.leaveGroup(gid))) toast(`You left “${g.name}”.`);
  });
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    gid = null;
    if (back && back.isConnected) back.focus();
  });
  client.addEventListener('group', (e) => { if (gid && e.detail.group_id === gid && dialog.open) render(); });

  return {
    dialog,
    open(id) {
      gid = id;
      back = document.activeElement;
      error.textContent = '';
      editForm.hidden = true;
      addIn.value = '';
      render();
      dialog.showModal();
      close.focus();
      // What the server says now (someone may have changed it from a device that was offline).
      if (group() && group().member) client.refreshGroup(id).catch(() => {});
    },
  };
}

/** Message info for a group message of mine: each member's delivered and read times. */
export function messageInfoDialog(client) {
  const close = el('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close' }, icon('close'));
  const quote = el('p', { class: 'mi-quote', dir: 'auto' });
  const sections = {};
  const body = el('div', { class: 'sheet-body' }, quote);
  for (const [k, title] of [['read', 'Read by'], ['delivered', 'Delivered to'], ['waiting', 'Not received yet'], ['skipped', 'Not delivered (their inbox on the server was full)']]) {
    const ul = el('ul', { class: 'mi-list', 'aria-labelledby': `mi-${k}-title` });
    const sec = el('section', { class: 'mi-section', id: `mi-${k}` }, el('h3', { id: `mi-${k}-title` }, title), ul);
    sections[k] = { sec, ul };
    body.append(sec);
  }
  const dialog = el('dialog', { class: 'dialog sheet', id: 'msg-info', 'aria-labelledby': 'mi-title' },
    el('header', { class: 'sheet-head' }, close, el('h2', { id: 'mi-title' }, 'Message info')), body);
  let key = null;
  let back = null;

  const stamp = (label, ms, cls) => el('span', { class: cls }, `${label}: `,
    ms ? el('time', { datetime: new Date(ms).toISOString() }, whenText(ms)) : 'not yet');

  function render(m) {
    quote.textContent = m.body || (m.media ? 'Photo' : '');
    const groups = { read: [], delivered: [], waiting: [], skipped: [] };
    for (const r of receiptRows(m)) {
      const k = r.r ? 'read' : r.d ? 'delivered' : r.skipped ? 'skipped' : 'waiting';
      const li = el('li', { class: 'mi-row', dataset: { user: r.user } }, avatar(r.user, 'small'), el('span', { class: 'mi-user' }, r.user));
      if (k === 'read' || k === 'delivered') li.append(el('span', { class: 'mi-times' }, stamp('Delivered', r.d, 'mi-d'), stamp('Read', r.r, 'mi-r')));
      groups[k].push(li);
    }
    for (const [k, { sec, ul }] of Object.entries(sections)) {
      ul.replaceChildren(...groups[k]);
      sec.hidden = !groups[k].length;
    }
  }

  async function refresh() {
    if (!key) return;
    const m = await client.message(key);
    if (m && key === m.key) render(m);
  }

  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    key = null;
    if (back && back.isConnected) back.focus();
  });
  client.addEventListener('messages', () => { if (key && dialog.open) refresh(); });

  return {
    dialog,
    async open(k) {
      key = k;
      back = document.activeElement;
      const m = await client.message(k);
      if (!m) return;
      render(m);
      dialog.showModal();
      close.focus();
    },
  };
}
