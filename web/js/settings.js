// settings: the Settings screen and blocking (PROTOCOL.md section 14): privacy (last seen,
// read receipts), blocked contacts, linked devices, password change and account deletion;
// and, in a 1:1 conversation, the header menu's Block / Unblock with the "You blocked this
// contact" line in place of the message box. Text goes in through el() (textContent) only.
import { el, lastSeenText } from './util.js';
import * as api from './api.js';
import { avatar, USER_RE } from './groupui.js';
import { soundEnabled, setSoundEnabled } from './sound.js';

const PASSWORD_MIN = 8;
const PASSWORD_MAX = 1024; // bytes, as the server counts

const SVGNS = 'http://www.w3.org/2000/svg';
const PATHS = {
  gear: { d: 'M12 15.2a3.2 3.2 0 1 0 0-6.4 3.2 3.2 0 0 0 0 6.4zM19.4 13.5l1.8 1.4-1.9 3.3-2.1-.9a7.4 7.4 0 0 1-2.1 1.2l-.3 2.3H11l-.3-2.3a7.4 7.4 0 0 1-2.1-1.2l-2.1.9-1.9-3.3 1.8-1.4a7.4 7.4 0 0 1 0-2.9L4.6 9.1l1.9-3.3 2.1.9a7.4 7.4 0 0 1 2.1-1.2L11 3.2h3.8l.3 2.3a7.4 7.4 0 0 1 2.1 1.2l2.1-.9 1.9 3.3-1.8 1.4a7.4 7.4 0 0 1 0 2.9z', stroke: 1.6 },
  dots: { d: 'M12 5.5v.01M12 12v.01M12 18.5v.01', stroke: 3.2 },
  back: { d: 'M20 11H7.8l5.6-5.6L12 4l-8 8 8 8 1.4-1.4L7.8 13H20z', fill: true },
};

function svg(name) {
  const spec = PATHS[name];
  const s = document.createElementNS(SVGNS, 'svg');
  s.setAttribute('viewBox', '0 0 24 24');
  s.setAttribute('aria-hidden', 'true');
  s.setAttribute('focusable', 'false');
  s.setAttribute('class', `icon icon-${name}`);
  const p = document.createElementNS(SVGNS, 'path');
  p.setAttribute('d', spec.d);
  if (spec.fill) p.setAttribute('fill', 'currentColor');
  else {
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke', 'currentColor');
    p.setAttribute('stroke-width', String(spec.stroke));
    p.setAttribute('stroke-linecap', 'round');
    p.setAttribute('stroke-linejoin', 'round');
  }
  s.append(p);
  return s;
}

// ---- HTTP ---------------------------------------------------------------------------------
const enc = encodeURIComponent;
export const getBlocks = (token) => api.call('GET', '/v1/blocks', { token, timeout: 15000 });
export const putBlock = (token, user) => api.call('PUT', `/v1/blocks/${enc(user)}`, { token });
export const deleteBlock = (token, user) => api.call('DELETE', `/v1/blocks/${enc(user)}`, { token });
export const getPrivacy = (token) => api.call('GET', '/v1/privacy', { token, timeout: 15000 });
export const patchPrivacy = (token, body) => api.call('PATCH', '/v1/privacy', { token, body });
export const changePassword = (token, old, nw) => api.call('POST', '/v1/me/password', { token, body: { old, new: nw } });
export const removeDevice = (token, id) => api.call('DELETE', `/v1/devices/${enc(id)}`, { token });
export const deleteAccount = (token, password) => api.call('DELETE', '/v1/me', { token, body: { password } });

const byteLength = (s) => new TextEncoder().encode(s).length;

/** The server's refusal as a sentence: what failed, then why. */
export function errorText(e, what) {
  if (e.status === 0) return `${what}: cannot reach the server. Check your connection.`;
  if (e.status === 429) return `${what}: too many attempts. Try again in ${e.retryAfter ?? 60} s.`;
  if (e.status === 503) return `${what}: the server is busy. Try again in ${e.retryAfter ?? 1} s.`;
  if (e.code === 'no_such_user') return `${what}: there is no user with that name.`;
  return `${what}: ${e.message}`;
}

/** The users this account blocked, as the server last said (GET /v1/blocks). Events
 *  (an EventTarget): 'change'. */
export class Blocks extends EventTarget {
  constructor(client) {
    super();
    this.client = client;
    this.users = new Set();
    this.loaded = false;
  }

  has(user) { return this.users.has(user); }

  set(list) {
    const next = new Set(list);
    const same = next.size === this.users.size && [...next].every((u) => this.users.has(u));
    this.users = next;
    this.loaded = true;
    if (!same) this.dispatchEvent(new Event('change'));
  }

  async load() {
    const r = await getBlocks(this.client.session.token);
    this.set(Array.isArray(r && r.users) ? r.users : []);
    return [...this.users];
  }

  async block(user) {
    await putBlock(this.client.session.token, user);
    this.set([...this.users, user]);
  }

  async unblock(user) {
    await deleteBlock(this.client.session.token, user);
    this.set([...this.users].filter((u) => u !== user));
  }
}

/** A 401 that is not a wrong password means the token is gone: the session has ended. */
function sessionGone(client, e) {
  if (e.status === 401 && e.code !== 'bad_credentials') {
    client.emit('ended', { code: 4001 });
    return true;
  }
  return false;
}

/** Everything the app needs: the Settings button and sheet, and the conversation's Block /
 *  Unblock. me: the user; confirm: the shared confirm dialog; toast(text); onLogout(opts) ends
 *  the session (opts.notice for the login screen); composer: the message form, hidden in a
 *  blocked contact's conversation; onChange(): the blocked set changed. */
export function settingsUi(client, { confirm, toast, onLogout, composer, onChange, meSection = null }) {
  const me = client.user;
  const blocks = new Blocks(client);
  let deleting = false; // DELETE /v1/me under way: its 4002 close is expected

  const refreshBlocks = () => blocks.load().catch((e) => { if (!sessionGone(client, e)) console.warn('tern: blocks not loaded', e); });
  client.addEventListener('state', (e) => { if (e.detail === 'synced') refreshBlocks(); });
  refreshBlocks();
  // A send refused with `blocked` (the block was made on another device): learn it.
  if (client.conn) client.conn.addEventListener('frame', (e) => {
    if (e.detail && e.detail.type === 'error' && e.detail.code === 'blocked') refreshBlocks();
  });

  // ---- the Settings sheet -------------------------------------------------------------------
  const button = el('button', { type: 'button', class: 'icon-btn', id: 'settings', 'aria-label': 'Settings', title: 'Settings' }, svg('gear'));
  const close = el('button', { type: 'button', class: 'icon-btn', id: 'settings-close', 'aria-label': 'Close settings' }, svg('back'));

  // privacy
  const lastSeenSel = el('select', { id: 'privacy-last-seen' },
    el('option', { value: 'everyone' }, 'Everyone'), el('option', { value: 'nobody' }, 'Nobody'));
  const rrBox = el('input', { type: 'checkbox', id: 'privacy-read-receipts', 'aria-describedby': 'rr-hint' });
  const privError = el('p', { class: 'form-error', id: 'privacy-error', role: 'alert' });
  const privStatus = el('p', { class: 'hint st-saved', id: 'privacy-status', role: 'status' });
  const privacy = el('section', { class: 'st-section', 'aria-labelledby': 'st-privacy' },
    el('h3', { id: 'st-privacy' }, 'Privacy'),
    el('div', { class: 'st-row' },
      el('label', { for: 'privacy-last-seen' }, 'Last seen'), lastSeenSel),
    el('p', { class: 'hint' }, 'Who can see when you were last online. With “Nobody”, you do not see anyone’s last seen either. “online” is always shown.'),
    el('div', { class: 'st-row' },
      el('label', { for: 'privacy-read-receipts' }, 'Read receipts'), rrBox),
    el('p', { class: 'hint', id: 'rr-hint' }, 'When off, people do not see blue ticks for your reads in 1:1 chats, and you do not see theirs. Groups always send read receipts.'),
    privError, privStatus);

  // notifications: the sound is this browser's own choice (a mute is the server's, per chat)
  const soundBox = el('input', { type: 'checkbox', id: 'sound-on', 'aria-describedby': 'sound-hint' });
  soundBox.checked = soundEnabled();
  soundBox.addEventListener('change', () => setSoundEnabled(soundBox.checked));
  const notifications = el('section', { class: 'st-section', 'aria-labelledby': 'st-notifications' },
    el('h3', { id: 'st-notifications' }, 'Notifications'),
    el('div', { class: 'st-row' },
      el('label', { for: 'sound-on' }, 'Message sound'), soundBox),
    el('p', { class: 'hint', id: 'sound-hint' }, 'A short sound when a message arrives in this browser. Muted chats stay silent either way, except when you are mentioned.'));

  // blocked contacts
  const blockedList = el('ul', { class: 'st-list', id: 'blocked-list', 'aria-label': 'Blocked contacts' });
  const blockedEmpty = el('p', { class: 'hint', id: 'blocked-empty' }, 'No blocked contacts.');
  const blockIn = el('input', { id: 'block-user', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '32', placeholder: 'Username' });
  const blockGo = el('button', { type: 'submit', class: 'secondary', id: 'block-user-go' }, 'Block');
  const blockError = el('p', { class: 'form-error', id: 'blocked-error', role: 'alert' });
  const blockForm = el('form', { class: 'add-row', novalidate: true }, blockIn, blockGo);
  const blocked = el('section', { class: 'st-section', 'aria-labelledby': 'st-blocked' },
    el('h3', { id: 'st-blocked' }, 'Blocked contacts'),
    el('p', { class: 'hint' }, 'Blocked contacts cannot send you 1:1 messages or see your last seen and online, and you cannot message them. They are not told. Groups are not affected.'),
    blockedList, blockedEmpty,
    el('label', { for: 'block-user', class: 'visually-hidden' }, 'Block a user by username'),
    blockForm, blockError);

  // linked devices
  const devList = el('ul', { class: 'st-list', id: 'device-list', 'aria-label': 'Linked devices' });
  const devError = el('p', { class: 'form-error', id: 'device-error', role: 'alert' });
  const devices = el('section', { class: 'st-section', 'aria-labelledby': 'st-devices' },
    el('h3', { id: 'st-devices' }, 'Linked devices'),
    el('p', { class: 'hint' }, 'Every browser and app logged in to your account. Log out of one you do not recognise. To log out of this browser use the log-out button in the chat list.'),
    devList, devError);

  // password
  const pwOld = el('input', { type: 'password', id: 'pw-old', autocomplete: 'current-password', maxlength: '1024' });
  const pwNew = el('input', { type: 'password', id: 'pw-new', autocomplete: 'new-password', maxlength: '1024', 'aria-describedby': 'pw-hint' });
  const pwNew2 = el('input', { type: 'password', id: 'pw-new2', autocomplete: 'new-password', maxlength: '1024' });
  const pwError = el('p', { class: 'form-error', id: 'pw-error', role: 'alert' });
  const pwStatus = el('p', { class: 'hint st-saved', id: 'pw-status', role: 'status' });
  const pwGo = el('button', { type: 'submit', class: 'primary', id: 'pw-go' }, 'Change password');
  const pwForm = el('form', { class: 'st-form', novalidate: true },
    el('label', { for: 'pw-old' }, 'Current password'), pwOld,
    el('label', { for: 'pw-new' }, 'New password'), pwNew,
    el('p', { class: 'hint', id: 'pw-hint' }, 'At least 8 characters. Your other devices stay logged in.'),
    el('label', { for: 'pw-new2' }, 'New password again'), pwNew2,
    pwError, pwStatus,
    el('div', { class: 'buttons' }, pwGo));
  const password = el('section', { class: 'st-section', 'aria-labelledby': 'st-password' },
    el('h3', { id: 'st-password' }, 'Change password'), pwForm);

  // delete account
  const delPw = el('input', { type: 'password', id: 'delete-password', autocomplete: 'current-password', maxlength: '1024' });
  const delError = el('p', { class: 'form-error', id: 'delete-error', role: 'alert' });
  const delGo = el('button', { type: 'submit', class: 'danger', id: 'delete-go' }, 'Delete my account');
  const delForm = el('form', { class: 'st-form', novalidate: true },
    el('label', { for: 'delete-password' }, 'Your password'), delPw, delError,
    el('div', { class: 'buttons' }, delGo));
  const danger = el('section', { class: 'st-section st-danger', 'aria-labelledby': 'st-delete' },
    el('h3', { id: 'st-delete' }, 'Delete account'),
    el('p', {}, 'Deleting your account logs out every device, deletes the messages waiting for you, your blocks and settings, and takes you out of every group. The history in this browser is deleted too. This cannot be undone. Your username stays reserved for a while before anyone can take it again.'),
    delForm);

  const body = el('div', { class: 'sheet-body' },
    meSection || el('div', { class: 'st-me' }, avatar(me, 'big'), el('p', { class: 'gi-name', id: 'settings-user' }, me)),
    privacy, notifications, blocked, devices, password, danger);
  const dialog = el('dialog', { class: 'dialog sheet settings', id: 'settings-dialog', 'aria-labelledby': 'st-title' },
    el('header', { class: 'sheet-head' }, close, el('h2', { id: 'st-title' }, 'Settings')), body);

  let back = null;
  button.addEventListener('click', () => open());
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    if (back && back.isConnected) back.focus();
    else if (button.isConnected) button.focus();
  });

  function open() {
    back = document.activeElement;
    for (const e of [privError, privStatus, blockError, devError, pwError, pwStatus, delError]) e.textContent = '';
    soundBox.checked = soundEnabled();
    pwForm.reset();
    delForm.reset();
    blockIn.value = '';
    dialog.showModal();
    body.scrollTop = 0;
    close.focus();
    loadPrivacy();
    renderBlocked();
    blocks.load().catch((e) => { if (!sessionGone(client, e)) blockError.textContent = errorText(e, 'Could not load the blocked contacts'); });
    loadDevices();
  }

  // ---- privacy ----
  let privacyNow = null;
  async function loadPrivacy() {
    lastSeenSel.disabled = rrBox.disabled = true;
    try {
      const p = await getPrivacy(client.session.token);
      privacyNow = { last_seen: p.last_seen === 'nobody' ? 'nobody' : 'everyone', read_receipts: p.read_receipts !== false };
      lastSeenSel.value = privacyNow.last_seen;
      rrBox.checked = privacyNow.read_receipts;
      lastSeenSel.disabled = rrBox.disabled = false;
    } catch (e) {
      if (!sessionGone(client, e)) privError.textContent = errorText(e, 'Could not load the privacy settings');
    }
  }
  async function savePrivacy(field, value) {
    privError.textContent = '';
    privStatus.textContent = '';
    lastSeenSel.disabled = rrBox.disabled = true;
    try {
      await patchPrivacy(client.session.token, { [field]: value });
      privacyNow[field] = value;
      privStatus.textContent = 'Saved.';
    } catch (e) {
      if (sessionGone(client, e)) return;
      privError.textContent = errorText(e, 'Not saved');
      lastSeenSel.value = privacyNow.last_seen; // back to what the server has
      rrBox.checked = privacyNow.read_receipts;
    }
    lastSeenSel.disabled = rrBox.disabled = false;
  }
  lastSeenSel.addEventListener('change', () => savePrivacy('last_seen', lastSeenSel.value));
  rrBox.addEventListener('change', () => savePrivacy('read_receipts', rrBox.checked));

  // ---- blocked ----
  function renderBlocked() {
    const users = [...blocks.users].sort();
    blockedList.replaceChildren(...users.map((u) => {
      const btn = el('button', { type: 'button', class: 'link', dataset: { user: u }, 'aria-label': `Unblock ${u}` }, 'Unblock');
      btn.addEventListener('click', async () => {
        blockError.textContent = '';
        btn.disabled = true;
        try {
          await blocks.unblock(u);
          toast(`${u} unblocked.`);
          blockIn.focus();
        } catch (e) {
          btn.disabled = false;
          if (!sessionGone(client, e)) blockError.textContent = errorText(e, `Could not unblock ${u}`);
        }
      });
      return el('li', { class: 'st-item', dataset: { user: u } }, avatar(u, 'small'), el('span', { class: 'st-name' }, u), btn);
    }));
    blockedEmpty.hidden = users.length > 0;
  }
  blocks.addEventListener('change', () => {
    renderBlocked();
    onChange();
  });
  blockForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    blockError.textContent = '';
    const u = blockIn.value.trim().toLowerCase();
    if (!USER_RE.test(u)) {
      blockError.textContent = 'A username is 3 to 32 characters: letters, digits, dot, underscore or dash.';
      return blockIn.focus();
    }
    if (u === me) {
      blockError.textContent = 'You cannot block yourself.';
      return blockIn.focus();
    }
    blockGo.disabled = true;
    try {
      await blocks.block(u);
      blockIn.value = '';
    } catch (err) {
      // PUT /v1/blocks/{user} names the user in its URL: an unknown one is 404 not_found
      if (!sessionGone(client, err)) {
        blockError.textContent = err.code === 'not_found' ? `Could not block ${u}: there is no user with that name.`
          : errorText(err, `Could not block ${u}`);
      }
    }
    blockGo.disabled = false;
    blockIn.focus();
  });

  // ---- devices ----
  async function loadDevices() {
    devError.textContent = '';
    let r;
    try {
      r = await api.me(client.session.token);
    } catch (e) {
      if (!sessionGone(client, e)) devError.textContent = errorText(e, 'Could not load the devices');
      return;
    }
    const mine = client.session.device_id;
    const list = (Array.isArray(r.devices) ? r.devices : []).slice()
      .sort((a, b) => (b.device_id === mine) - (a.device_id === mine) || (b.last_seen || 0) - (a.last_seen || 0));
    devList.replaceChildren(...list.map((d) => {
      const self = d.device_id === mine;
      const when = self ? 'This device' : d.last_seen && Date.now() - d.last_seen < 120000 ? 'Active now' : (lastSeenText(d.last_seen) || 'never connected').replace(/^last seen/, 'Last active');
      const li = el('li', { class: 'st-item device', dataset: { device: d.device_id, self: self ? '1' : '' } },
        el('span', { class: 'st-main' },
          el('span', { class: 'st-name' }, d.label || 'Unnamed device'),
          el('span', { class: `st-when${self ? ' this-device' : ''}` }, when)));
      if (!self) {
        const btn = el('button', { type: 'button', class: 'link danger-link', 'aria-label': `Log out ${d.label || 'this device'} (${when})` }, 'Log out');
        btn.addEventListener('click', async () => {
          const ok = await confirm.ask('Log out this device?', `“${d.label || d.device_id}” will be logged out and its history in that browser deleted when it next opens.`, 'Log out');
          if (!ok) return;
          btn.disabled = true;
          try {
            await removeDevice(client.session.token, d.device_id);
            toast('Device logged out.');
          } catch (e) {
            if (sessionGone(client, e)) return;
            devError.textContent = e.status === 404 ? 'That device is already logged out.' : errorText(e, 'Could not log it out');
          }
          loadDevices();
        });
        li.append(btn);
      }
      return li;
    }));
  }

  // ---- password ----
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    pwError.textContent = '';
    pwStatus.textContent = '';
    for (const i of [pwOld, pwNew, pwNew2]) i.removeAttribute('aria-invalid');
    const bad = (input, text) => {
      pwError.textContent = text;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    };
    if (!pwOld.value) return bad(pwOld, 'Type your current password.');
    if (pwNew.value.length < PASSWORD_MIN) return bad(pwNew, 'The new password must have at least 8 characters.');
    if (byteLength(pwNew.value) > PASSWORD_MAX) return bad(pwNew, 'The new password is too long (1024 bytes at most).');
    if (pwNew.value !== pwNew2.value) return bad(pwNew2, 'The two new passwords are not the same.');
    pwGo.disabled = true;
    try {
      await changePassword(client.session.token, pwOld.value, pwNew.value);
      pwForm.reset();
      pwStatus.textContent = 'Password changed. Your devices stay logged in.';
      toast('Password changed.');
    } catch (err) {
      if (!sessionGone(client, err)) {
        if (err.code === 'bad_credentials') bad(pwOld, 'Wrong current password.');
        else if (err.status === 400) bad(pwNew, `The new password was refused: ${err.message}`);
        else pwError.textContent = errorText(err, 'Password not changed');
      }
    }
    pwGo.disabled = false;
  });

  // ---- delete account ----
  delForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    delError.textContent = '';
    delPw.removeAttribute('aria-invalid');
    if (!delPw.value) {
      delError.textContent = 'Type your password to delete the account.';
      delPw.setAttribute('aria-invalid', 'true');
      return delPw.focus();
    }
    const ok = await confirm.ask(`Delete the account “${me}”?`, 'Every device is logged out, your blocks, settings and waiting messages are deleted, and you leave every group. This cannot be undone.', 'Delete account');
    if (!ok) return;
    delGo.disabled = true;
    deleting = true;
    // This browser's WebSocket is closed first: ternd (as of this writing) frees the session
    // of a deleted device's open WebSocket and then uses it, which can crash it.
    const conn = client.conn;
    conn.stop();
    try {
      await deleteAccount(client.session.token, delPw.value);
    } catch (err) {
      deleting = false;
      delGo.disabled = false;
      // back online (stop() also removed the connection's network listeners)
      addEventListener('online', conn.onOnline);
      addEventListener('offline', conn.onOffline);
      document.addEventListener('visibilitychange', conn.onVisible);
      conn.start();
      if (sessionGone(client, err)) return;
      delError.textContent = err.code === 'bad_credentials' ? 'Wrong password.' : errorText(err, 'The account was not deleted');
      delPw.setAttribute('aria-invalid', 'true');
      delPw.focus();
      return;
    }
    if (dialog.open) dialog.close();
    // As a log-out: the local history (IndexedDB), the stored token and push go too.
    await onLogout({ notice: `The account “${me}” was deleted.` });
  });

  // ---- the conversation: header menu and the blocked line ---------------------------------
  const menuBtn = el('button', { type: 'button', class: 'icon-btn conv-menu-btn', id: 'conv-menu', 'aria-label': 'Chat menu', title: 'Menu', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': 'conv-menu-list' }, svg('dots'));
  const blockItem = el('button', { type: 'button', role: 'menuitem', class: 'menu-item', id: 'conv-block' });
  const menu = el('div', { class: 'menu', id: 'conv-menu-list', role: 'menu', 'aria-label': 'Chat', hidden: true }, blockItem);
  const menuWrap = el('div', { class: 'conv-menu', hidden: true }, menuBtn, menu);
  const unblockLink = el('button', { type: 'button', class: 'link', id: 'blocked-unblock' }, 'Unblock');
  const bar = el('p', { class: 'blocked-bar', id: 'blocked-bar', hidden: true }, 'You blocked this contact. ', unblockLink);
  let peer = null; // the 1:1 conversation on screen, or null
  let chat = null; // any conversation on screen (the menu's other items are for groups too)
  const extras = []; // [{item, label(chat) -> text, or null to hide}]: items of other modules

  function closeMenu(refocus) {
    if (menu.hidden) return;
    menu.hidden = true;
    menuBtn.setAttribute('aria-expanded', 'false');
    if (refocus) menuBtn.focus();
  }
  menuBtn.addEventListener('click', () => {
    if (!menu.hidden) return closeMenu(false);
    blockItem.hidden = !peer;
    if (peer) blockItem.textContent = blocks.has(peer) ? `Unblock ${peer}` : `Block ${peer}`;
    for (const x of extras) {
      const text = x.label(chat);
      x.item.hidden = !text;
      if (text) x.item.textContent = text;
    }
    menu.hidden = false;
    menuBtn.setAttribute('aria-expanded', 'true');
    const first = [...menu.children].find((b) => !b.hidden);
    if (first) first.focus();
  });
  menu.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      closeMenu(true);
    }
  });
  const outside = (e) => { if (!menuWrap.contains(e.target)) closeMenu(false); };
  document.addEventListener('pointerdown', outside);
  menuWrap.addEventListener('focusout', (e) => { if (!menuWrap.contains(e.relatedTarget)) closeMenu(false); });

  async function toggleBlock(user, wantBlocked) {
    try {
      if (wantBlocked) await blocks.block(user);
      else await blocks.unblock(user);
      toast(wantBlocked ? `${user} blocked.` : `${user} unblocked.`);
    } catch (e) {
      if (!sessionGone(client, e)) toast(errorText(e, wantBlocked ? `Could not block ${user}` : `Could not unblock ${user}`));
    }
  }
  blockItem.addEventListener('click', async () => {
    const user = peer;
    closeMenu(true);
    if (!user) return;
    if (blocks.has(user)) return toggleBlock(user, false);
    const ok = await confirm.ask(`Block ${user}?`, 'Blocked contacts cannot send you 1:1 messages or see your last seen and online. They are not told. Groups are not affected.', 'Block');
    if (ok) toggleBlock(user, true);
  });
  unblockLink.addEventListener('click', () => { if (peer) toggleBlock(peer, false); });

  /** The conversation on screen changed (or its group state): a 1:1 chat with someone else gets
   *  the menu; a blocked one the line in place of the message box. Call after the composer's
   *  own hidden state is set. */
  function update(active, isGroup) {
    peer = active && !isGroup && active !== me ? active : null;
    chat = active || null;
    menuWrap.hidden = !chat;
    closeMenu(false);
    const isBlocked = !!peer && blocks.has(peer);
    bar.hidden = !isBlocked;
    if (isBlocked) {
      if (composer.contains(document.activeElement)) unblockLink.focus();
      composer.hidden = true;
    }
  }

  /** Another module's item in the chat's menu (mute, delete chat): label(chat) names it when
   *  the menu opens, or hides it (null); onClick(chat) runs once the menu has closed. */
  function addMenuItem(id, label, onClick) {
    const item = el('button', { type: 'button', role: 'menuitem', class: 'menu-item', id });
    item.addEventListener('click', () => {
      const c = chat;
      closeMenu(true);
      if (c) onClick(c);
    });
    menu.append(item);
    extras.push({ item, label });
  }

  return {
    button, dialog, menuWrap, bar, blocks, update, open, addMenuItem,
    /** true while the account is being deleted: its 4002 close is no reason to log out here. */
    deleting: () => deleting,
    destroy() { document.removeEventListener('pointerdown', outside); },
  };
}
