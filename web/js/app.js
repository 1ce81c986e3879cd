// app: the signed-in screens: chat list, conversation (1:1 and group), dialogs (new chat, log
// out, image preview and viewer; the group ones are in groupui.js), the connection bar and the
// notification banner. All text goes in with textContent (via el()); nothing user-supplied is
// ever parsed as HTML.
import { el, icon, hhmm, dayKey, dayLabel, listTime, lastSeenText, colourIndex, placeChildren, textDir } from './util.js';
import { Media, acceptable, ACCEPT_ATTR, dimensions, fitForUpload } from './media.js';
import { Drafts } from './drafts.js';
import * as notify from './notify.js';
import { isGroupPeer, groupIdOf, eventText, typingText, memberLine } from './groups.js';
import { safetyDialog } from './safety.js';
import { groupAvatar, checkField, checkUser, USER_RE, confirmDialog, newGroupDialog, groupInfoDialog, messageInfoDialog } from './groupui.js';
import { settingsUi } from './settings.js';
import { actionsUi } from './actionsui.js';
import { mentionsIn } from './actions.js';
import { richText } from './richtext.js';
import { searchUi } from './search.js';
import { Profiles, profileAvatar, profileEditor } from './profiles.js';
import { ping } from './sound.js';
import { mentionPicker } from './mentionpick.js';

const PAGE = 200; // messages shown per conversation, more on request
const MAX_BODY_BYTES = 65536;
const THUMB_BOX = 260; // the longest side of a thumbnail in a bubble, CSS px
const NOTIF_DISMISSED = 'tern.notif.dismissed';
const NEAR_BOTTOM_PX = 120; // closer than this to the end counts as "at the newest message"

const TICK = {
  queued: { icon: 'clock', label: 'Pending' },
  sent: { icon: 'check', label: 'Sent' },
  delivered: { icon: 'dcheck', label: 'Delivered' },
  read: { icon: 'dcheck', label: 'Read' },
  failed: { icon: 'alert', label: 'Not sent' },
};

function ticks(status) {
  const t = TICK[status] || TICK.queued;
  const s = el('span', { class: `ticks tick-${status}`, role: 'img', 'aria-label': t.label, title: t.label });
  s.append(icon(t.icon));
  return s;
}

export function renderApp(root, client, { onLogout }) {
  const me = client.user;
  const media = new Media(client);
  const profiles = new Profiles(client, media);
  const userAvatar = (u, extra) => profileAvatar(profiles, u, extra);
  let active = null; // peer on screen
  let limit = PAGE;
  const bubbles = new Map(); // message key -> {node, sig}
  const days = new Map(); // day key -> its separator, kept like the bubbles
  let chatsCache = [];
  const drafts = new Drafts(me);

  // ---- skeleton ---------------------------------------------------------------------------
  const connText = el('span', { class: 'conn-text' }, 'Connecting…');
  const connBtn = el('button', { type: 'button', class: 'link conn-retry' }, 'Retry now');
  const connBar = el('div', { class: 'conn-bar', id: 'conn-bar', role: 'status', 'aria-live': 'polite', hidden: true }, connText, ' ', connBtn);

  const notifBtn = el('button', { type: 'button', class: 'link', id: 'notif-enable' }, 'Turn on desktop notifications');
  const notifDismiss = el('button', { type: 'button', class: 'icon-btn small', 'aria-label': 'Dismiss' }, icon('close'));
  const notifBanner = el('div', { class: 'notif-banner', hidden: true },
    el('span', { class: 'notif-icon' }, icon('bell')),
    el('div', {}, el('p', { class: 'notif-title' }, 'Get notified of new messages'), notifBtn),
    notifDismiss);

  const chatList = el('ul', { class: 'chat-list', id: 'chat-list', 'aria-label': 'Chats' });
  const emptyList = el('p', { class: 'empty-list', hidden: true }, 'No chats yet. Use “New chat” to message someone by their username.');
  const newChatBtn = el('button', { type: 'button', class: 'icon-btn', id: 'new-chat', 'aria-label': 'New chat', title: 'New chat' }, icon('newchat'));
  const newGroupBtn = el('button', { type: 'button', class: 'icon-btn', id: 'new-group', 'aria-label': 'New group', title: 'New group' }, icon('group'));
  const logoutBtn = el('button', { type: 'button', class: 'icon-btn', id: 'logout', 'aria-label': 'Log out', title: 'Log out' }, icon('logout'));
  // Search over the history in this browser (search.js): its box takes the chat list's place.
  const search = searchUi(client, { name: (peer) => chatName(peer), onPick: (peer, key) => openChat(peer).then(() => showMessage(key)) });
  const meAvatar = el('span', { class: 'avatar-slot' }, userAvatar(me));
  const sidebar = el('nav', { class: 'sidebar', 'aria-label': 'Chats' },
    el('header', { class: 'side-head' }, meAvatar, el('h1', { class: 'me', id: 'me-name' }, me), el('div', { class: 'actions' }, search.button, newChatBtn, newGroupBtn, logoutBtn)),
    notifBanner,
    search.box,
    emptyList,
    chatList);
  search.box.addEventListener('toggle', () => {
    chatList.hidden = search.isOpen();
    if (search.isOpen()) emptyList.hidden = true;
    else refreshChats();
  });

  // conversation pane
  const backBtn = el('button', { type: 'button', class: 'icon-btn back', id: 'back', 'aria-label': 'Back to chats' }, icon('back'));
  const convAvatar = el('span', { class: 'avatar-slot' });
  const convTitle = el('h2', { id: 'conv-title' });
  const convStatus = el('p', { id: 'conv-status', class: 'status', 'aria-live': 'polite' });
  // In a group the header opens Group info: a button laid over the name and status.
  const infoBtn = el('button', { type: 'button', class: 'head-hit', id: 'conv-info', 'aria-label': 'Group info', hidden: true });
  // End-to-end encrypted: a lock that opens the safety number (1:1 chats).
  const lockBtn = el('button', { type: 'button', class: 'icon-btn lock', id: 'conv-lock', 'aria-label': 'End-to-end encrypted: verify safety number', title: 'End-to-end encrypted', hidden: true }, icon('lock'));
  const convHead = el('header', { class: 'conv-head' }, backBtn, convAvatar, el('div', { class: 'who' }, convTitle, convStatus), infoBtn, lockBtn);
  const earlierBtn = el('button', { type: 'button', class: 'earlier' }, 'Show earlier messages');
  const msgList = el('div', { class: 'messages', id: 'messages', role: 'log', tabindex: '0', 'aria-labelledby': 'conv-title' });
  // Shown while the newest message is out of view; counts what arrived meanwhile.
  const jumpCount = el('span', { class: 'jump-count', hidden: true });
  const jumpBtn = el('button', { type: 'button', class: 'jump-latest', id: 'jump-latest', 'aria-label': 'Jump to the latest message', title: 'Jump to the latest message', hidden: true }, icon('down'), jumpCount);
  // "3 unread messages": before the first message that was unread when the chat was opened.
  const unreadMarker = el('div', { class: 'unread-marker', role: 'separator' }, el('span', {}));
  const fileIn = el('input', { type: 'file', accept: ACCEPT_ATTR, class: 'visually-hidden', id: 'file', tabindex: '-1', 'aria-hidden': 'true' });
  const attachBtn = el('button', { type: 'button', class: 'icon-btn attach', id: 'attach', 'aria-label': 'Attach an image', title: 'Attach an image' }, icon('clip'));
  const textIn = el('textarea', { id: 'composer-text', rows: 1, placeholder: 'Type a message', 'aria-label': 'Type a message', autocomplete: 'off' });
  const sendBtn = el('button', { type: 'submit', class: 'icon-btn send', id: 'send', 'aria-label': 'Send', title: 'Send' }, icon('send'));
  const composer = el('form', { class: 'composer', id: 'composer' }, attachBtn, fileIn, textIn, sendBtn);
  const notMember = el('p', { class: 'not-member', id: 'not-member', hidden: true }, 'You are no longer a member of this group.');
  const dropHint = el('div', { class: 'drop-hint', 'aria-hidden': 'true' }, 'Drop an image to send it');
  const convBody = el('section', { class: 'conv-body', 'aria-label': 'Conversation' }, convHead, msgList, jumpBtn, composer, notMember, dropHint);
  const welcome = el('div', { class: 'welcome' },
    el('img', { src: 'icon.svg', alt: '', width: 72, height: 72 }),
    el('h2', {}, 'tern for the web'),
    el('p', {}, 'Send and receive messages from your browser. Pick a chat on the left, or start a new one.'),
    el('p', { class: 'fine' }, 'History is kept in this browser only.'));
  const main = el('main', { class: 'conv', id: 'conv' }, welcome, convBody);
  convBody.hidden = true;

  // dialogs
  const ncInput = el('input', { id: 'new-chat-user', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', required: true, maxlength: '32' });
  const ncError = el('p', { class: 'form-error', role: 'alert' });
  const ncGo = el('button', { type: 'submit', class: 'primary', id: 'new-chat-go' }, 'Start chat');
  const ncCancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const ncForm = el('form', { class: 'dialog-form' },
    el('h2', { id: 'nc-title' }, 'New chat'),
    el('label', { for: 'new-chat-user' }, 'Username'),
    ncInput, ncError,
    el('div', { class: 'buttons' }, ncCancel, ncGo));
  const ncDialog = el('dialog', { class: 'dialog', id: 'new-chat-dialog', 'aria-labelledby': 'nc-title' }, ncForm);

  const loDialogGo = el('button', { type: 'button', class: 'danger', id: 'logout-confirm' }, 'Log out');
  const loDialogCancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const loNote = el('p', {});
  const loDialog = el('dialog', { class: 'dialog', id: 'logout-dialog', 'aria-labelledby': 'lo-title' },
    el('div', { class: 'dialog-form' }, el('h2', { id: 'lo-title' }, 'Log out?'), loNote, el('div', { class: 'buttons' }, loDialogCancel, loDialogGo)));

  const pvImg = el('img', { class: 'preview-img', alt: 'The image to send' });
  const pvCaption = el('input', { id: 'preview-caption', autocomplete: 'off', placeholder: 'Add a caption' });
  const pvSend = el('button', { type: 'submit', class: 'primary', id: 'preview-send' }, 'Send');
  const pvCancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const pvTitle = el('h2', { id: 'pv-title' }, 'Send an image');
  const pvDialog = el('dialog', { class: 'dialog preview', id: 'preview-dialog', 'aria-labelledby': 'pv-title' },
    el('form', { class: 'dialog-form' }, pvTitle, pvImg,
      el('label', { for: 'preview-caption' }, 'Caption (optional)'), pvCaption,
      el('div', { class: 'buttons' }, pvCancel, pvSend)));
  let pvFile = null;
  let pvUrl = null;

  const vwImg = el('img', { class: 'viewer-img', alt: '' });
  const vwClose = el('button', { type: 'button', class: 'icon-btn viewer-close', 'aria-label': 'Close' }, icon('close'));
  const vwDialog = el('dialog', { class: 'viewer', id: 'viewer', 'aria-label': 'Photo' }, vwClose, vwImg);

  const confirm = confirmDialog();
  const newGroup = newGroupDialog(client, { onCreated: (peer) => openChat(peer) });
  const groupInfo = groupInfoDialog(client, { confirm, toast, onVerify: (user) => safety.open(user) });
  const msgInfo = messageInfoDialog(client);
  const safety = safetyDialog(client);

  const app = el('div', { class: 'app', id: 'app' }, connBar, el('div', { class: 'panes' }, sidebar, main));
  root.replaceChildren(app, ncDialog, loDialog, pvDialog, vwDialog, newGroup.dialog, groupInfo.dialog, msgInfo.dialog, confirm.dialog, safety.dialog);

  // Settings (settings.js): the button beside log-out, the sheet, and a 1:1 chat's Block menu.
  const settings = settingsUi(client, { confirm, toast, onLogout: (opts) => onLogout(opts), composer, onChange: () => { if (active) updateGroupPane(); }, meSection: profileEditor(profiles, { toast }) });
  logoutBtn.before(settings.button);

  // Replies, reactions, edits and deletes of one message (actionsui.js).
  const actions = actionsUi(client, {
    confirm, toast, composer, textIn,
    sender: (m) => (m.from === me ? 'You' : profiles.name(m.from)),
    showMessage: (key) => showMessage(key),
    openInfo: (m) => msgInfo.open(m.key),
    onModeChange: () => autosize(),
  });
  composer.before(actions.bar);
  root.append(actions.menu);
  actions.swipeToReply(msgList, (node) => { const b = bubbles.get(node.dataset.key); return b && b.m; });

  // The chat's menu (settings.js) also mutes the chat, on the server, so that the user's phones
  // stop buzzing too (PROTOCOL 15), and deletes it from this browser.
  const MUTE_FOR = [['8 hours', 8 * 3600000], ['1 week', 7 * 86400000], ['Always', null]];
  settings.addMenuItem('conv-mute', (chat) => (chat === me ? null : client.isMuted(chat) ? 'Unmute notifications' : 'Mute notifications'), async (chat) => {
    try {
      if (client.isMuted(chat)) {
        await client.setMute(chat, false);
        toast(`${chatName(chat)}: notifications on.`);
        return;
      }
      const choice = await muteDialog.ask(chatName(chat));
      if (choice === undefined) return;
      await client.setMute(chat, choice === null ? null : Date.now() + client.skew + choice);
      toast(`${chatName(chat)} muted.`);
    } catch (e) {
      toast(`Could not change the mute: ${e.message}`);
    }
  });
  settings.addMenuItem('conv-delete-chat', () => 'Delete chat', async (chat) => {
    const ok = await confirm.ask(`Delete the chat with ${chatName(chat)}?`, 'Its messages are deleted from this browser only. Nobody else loses anything.', 'Delete chat');
    if (!ok) return;
    closeChat();
    await client.deleteChat(chat);
  });
  client.addEventListener('mutes', () => { refreshChats(); updateHeader(); });

  // "Mute for how long?": three choices, as in WhatsApp.
  const muteDialog = (() => {
    const radios = MUTE_FOR.map(([label], i) => el('label', { class: 'radio-row' }, el('input', { type: 'radio', name: 'mute-for', value: String(i), checked: i === 0 }), ` ${label}`));
    const title = el('h2', { id: 'mute-title' });
    const go = el('button', { type: 'submit', class: 'primary', id: 'mute-go' }, 'Mute');
    const cancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const form = el('form', { class: 'dialog-form', method: 'dialog' }, title, el('p', {}, 'No notifications on any of your devices, except when you are mentioned.'), ...radios, el('div', { class: 'buttons' }, cancel, go));
    const dialog = el('dialog', { class: 'dialog', id: 'mute-dialog', 'aria-labelledby': 'mute-title' }, form);
    root.append(dialog);
    let done = null;
    cancel.addEventListener('click', () => dialog.close());
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const i = Number(form.elements['mute-for'].value);
      const r = done;
      done = null;
      dialog.close();
      if (r) r(MUTE_FOR[i][1]);
    });
    dialog.addEventListener('close', () => { if (done) { done(undefined); done = null; } });
    return {
      ask(name) {
        title.textContent = `Mute ${name}?`;
        dialog.showModal();
        go.focus();
        return new Promise((r) => { done = r; });
      },
    };
  })();
  convHead.append(settings.menuWrap);
  notMember.before(settings.bar);
  root.append(settings.dialog);

  // ---- connection bar ---------------------------------------------------------------------
  let barTimer = null;
  let replaced = false;
  function updateBar() {
    const st = client.state;
    if (replaced) {
      connText.textContent = 'tern is open in another window.';
      connBtn.textContent = 'Use here';
      connBar.hidden = false;
      connBar.classList.add('warn');
      return;
    }
    connBar.classList.remove('warn');
    connBtn.textContent = 'Retry now';
    if (st === 'ready' || st === 'synced') {
      clearTimeout(barTimer);
      barTimer = null;
      connBar.hidden = true;
      return;
    }
    connText.textContent = navigator.onLine === false ? 'Connecting… You are offline; messages will be sent when you are back.' : 'Connecting…';
    // A short grace period, so a quick reconnect does not flash the bar.
    if (connBar.hidden && !barTimer) barTimer = setTimeout(() => {
      barTimer = null;
      if (client.state !== 'ready' && client.state !== 'synced') connBar.hidden = false;
    }, 400);
  }
  connBtn.addEventListener('click', () => {
    if (replaced) {
      replaced = false;
      client.conn.start();
    } else client.conn.retryNow();
    updateBar();
  });
  client.addEventListener('state', updateBar);
  addEventListener('online', updateBar);
  addEventListener('offline', updateBar);
  updateBar();

  // ---- notifications ----------------------------------------------------------------------
  function updateNotifBanner() {
    notifBanner.hidden = !notify.supported() || notify.permission() !== 'default' || localStorage.getItem(NOTIF_DISMISSED) === '1';
  }
  notifBtn.addEventListener('click', async () => {
    const p = await notify.ask();
    updateNotifBanner();
    if (p === 'granted') notify.setupPush(client.session.token);
  });
  notifDismiss.addEventListener('click', () => {
    localStorage.setItem(NOTIF_DISMISSED, '1'); // kept across browser restarts: asked once
    updateNotifBanner();
  });
  updateNotifBanner();
  client.addEventListener('notify', (e) => {
    notify.messageArrived(e.detail.msg, (peer) => openChat(peer), e.detail.title);
    ping(); // the new-message sound (sound.js), for a chat that is not muted, or a mention
  });

  // ---- chat list --------------------------------------------------------------------------
  /** The name a conversation goes by: the peer, "bob (you)", or the group's name. */
  function chatName(peer) {
    if (isGroupPeer(peer)) return client.groupName(groupIdOf(peer));
    return peer === me ? `${profiles.name(me)} (you)` : profiles.name(peer);
  }

  // Rows are kept per chat and rebuilt only when what they show changes (rows: peer -> {li, sig}).
  const rows = new Map();
  async function refreshChats() {
    const chats = (await client.chats()).filter((c) => c.last_key || c.group_id);
    chatsCache = chats;
    const focusedPeer = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.peer : null;
    const items = chats.map((c) => {
      const name = chatName(c.peer);
      const muted = client.isMuted(c.peer);
      const p = !c.group_id && profiles.get(c.peer);
      const sig = JSON.stringify([name, c.preview, c.last_dir, c.last_status, c.unread, c.last_ts, listTime(c.last_ts), !!c.group_id, muted, p && p.avatar]);
      const row = rows.get(c.peer);
      if (row && row.sig === sig) {
        if (c.peer === active) row.btn.setAttribute('aria-current', 'true');
        else row.btn.removeAttribute('aria-current');
        return row.li;
      }
      const preview = el('span', { class: 'chat-preview' });
      if (c.last_dir === 'out') preview.append(ticks(c.last_status || 'sent'), ' ');
      preview.append(el('span', { class: 'preview-text', dir: 'auto' }, c.preview || ''));
      const btn = el('button', { type: 'button', class: 'chat', dataset: { peer: c.peer }, 'aria-current': c.peer === active ? 'true' : null },
        c.group_id ? groupAvatar() : userAvatar(c.peer),
        el('span', { class: 'chat-main' },
          el('span', { class: 'chat-top' }, el('span', { class: 'chat-name' }, name), el('time', { class: 'chat-time', datetime: new Date(c.last_ts).toISOString() }, listTime(c.last_ts))),
          el('span', { class: 'chat-bottom' }, preview,
            muted ? el('span', { class: 'muted-icon', role: 'img', 'aria-label': 'Muted', title: 'Muted' }, icon('muted')) : null,
            c.unread ? el('span', { class: 'badge', 'aria-label': `${c.unread} unread message${c.unread === 1 ? '' : 's'}` }, String(c.unread)) : null)));
      if (c.unread) btn.classList.add('has-unread');
      btn.addEventListener('click', () => openChat(c.peer));
      const li = el('li', {}, btn);
      rows.set(c.peer, { li, btn, sig });
      return li;
    });
    for (const p of [...rows.keys()]) if (!chats.some((c) => c.peer === p)) rows.delete(p);
    placeChildren(chatList, items);
    emptyList.hidden = items.length > 0 || search.isOpen();
    if (focusedPeer && document.activeElement?.dataset?.peer !== focusedPeer) {
      const b = chatList.querySelector(`button[data-peer="${CSS.escape(focusedPeer)}"]`);
      if (b) b.focus();
    }
    const unread = chats.reduce((n, c) => n + (c.unread || 0), 0);
    document.title = unread ? `(${unread}) tern` : 'tern';
    updateLock();
  }

  /** The lock shows while the conversation's last message was end-to-end encrypted. */
  function updateLock() {
    const c = active && chatsCache.find((x) => x.peer === active);
    const on = !!(c && c.e2e);
    lockBtn.hidden = !on;
  }
  // In a group the lock opens Group info, as the rest of the header does.
  lockBtn.addEventListener('click', () => {
    if (!active) return;
    if (isGroupPeer(active)) groupInfo.open(groupIdOf(active));
    else safety.open(active);
  });
  client.addEventListener('chats', () => refreshChats());

  // ---- conversation -----------------------------------------------------------------------
  function statusText(peer) {
    if (isGroupPeer(peer)) {
      const typing = client.typers(peer);
      return typing.length ? typingText(typing) : memberLine(client.group(groupIdOf(peer)), me);
    }
    if (peer === me) return 'Message yourself';
    if (client.isTyping(peer)) return 'typing…';
    const p = client.presence.get(peer);
    if (!p) return '';
    if (p.unknown) return 'not on this server';
    if (p.online) return 'online';
    return lastSeenText(p.last_seen);
  }

  function updateHeader() {
    if (!active) return;
    const t = statusText(active);
    if (convStatus.textContent !== t) convStatus.textContent = t;
    convStatus.classList.toggle('typing', t.endsWith('typing…'));
  }
  client.addEventListener('presence', (e) => { if (e.detail.user === active) updateHeader(); });
  client.addEventListener('typing', (e) => { if (e.detail.peer === active) updateHeader(); });

  /** The parts of the conversation pane that depend on the group: name, members, whether
   *  this user may still write. */
  function updateGroupPane() {
    const gid = groupIdOf(active);
    infoBtn.hidden = !gid;
    const g = gid && client.group(gid);
    const readOnly = !!(g && !g.member);
    if (readOnly && composer.contains(document.activeElement)) msgList.focus();
    composer.hidden = readOnly;
    notMember.hidden = !readOnly;
    settings.update(active, !!gid);
    if (gid) convTitle.textContent = chatName(active);
    updateHeader();
  }
  client.addEventListener('group', (e) => {
    if (active && groupIdOf(active) === e.detail.group_id) updateGroupPane();
  });
  infoBtn.addEventListener('click', () => groupInfo.open(groupIdOf(active)));
  // "last seen today" becomes "yesterday" at midnight.
  const headerTimer = setInterval(updateHeader, 60000);

  // What a bubble shows, but its ticks: when only those change (sent → delivered → read), they
  // are swapped in place (updateTicks), so that a click on them in progress is not lost.
  function bubbleSig(m) {
    if (m.kind === 'event') return JSON.stringify([m.kind, eventText(m, me)]);
    if (m.kind === 'keys') return JSON.stringify([m.kind, m.user]);
    const settled = m.status === 'sent' || m.status === 'delivered' || m.status === 'read';
    const q = m.reply_to && quoteOf(m);
    return JSON.stringify([settled || m.status, m.body, m.media && m.media.media_id, m.media && m.media.local, m.error, m.ts, m.msg_id, !!m.undecryptable,
      m.reactions || null, m.edited || 0, !!m.deleted, m.reply_to || null, q ? [q.key, q.body, !!q.deleted, q.from] : null, m.group_id && m.dir === 'in' ? profiles.name(m.from) : 0]);
  }

  const infoLabel = (m) => `Message info (${(TICK[m.status] || TICK.sent).label})`;

  function updateTicks(node, m) {
    if (node.dataset.status === (m.status || '')) return;
    node.dataset.status = m.status || '';
    const old = node.querySelector('.meta .ticks');
    if (old) old.replaceWith(ticks(m.status || 'sent'));
    const btn = node.querySelector('.info-btn');
    if (btn) btn.setAttribute('aria-label', infoLabel(m));
  }


  function buildBubble(m) {
    if (m.kind === 'event') return systemLine(m);
    if (m.kind === 'keys') return keysLine(m);
    const node = el('div', { class: `msg ${m.dir}`, dataset: { key: m.key, status: m.status || '' } });
    fillBubble(node, m);
    return node;
  }

  /** A group event among the messages: "alice added carol". */
  function systemLine(m) {
    return el('div', { class: 'sys', dataset: { key: m.key, event: m.event } }, el('span', { dir: 'auto' }, eventText(m, me)));
  }

  /** A contact's keys changed (a new device, or a new identity key): PROTOCOL.md 11. */
  function keysLine(m) {
    const verify = el('button', { type: 'button' }, 'Verify');
    verify.addEventListener('click', () => safety.open(m.user));
    return el('div', { class: 'sys keys', dataset: { key: m.key } },
      el('span', { dir: 'auto' }, `${m.user}'s security code changed (a new device or new keys). `, verify));
  }

  // The original of a reply, when this browser has it: among the messages on screen, else
  // looked up once (quotes) and the bubble redrawn when it comes.
  const quotes = new Map(); // msg_id -> record | null, for the chat on screen
  function quoteOf(m) {
    const b = byMsgId.get(m.reply_to);
    if (b) return b;
    if (!quotes.has(m.reply_to)) {
      quotes.set(m.reply_to, null);
      const peer = active;
      client.messageByMsgId(m.reply_to).then((q) => {
        if (q && q.peer === peer && peer === active) {
          quotes.set(m.reply_to, q);
          refreshMessages();
        }
      }).catch(() => {});
    }
    return quotes.get(m.reply_to) || null;
  }
  const byMsgId = new Map(); // msg_id -> record, of the messages on screen

  function fillBubble(node, m) {
    node.className = `msg ${m.dir}${m.media ? ' has-media' : ''}${m.deleted ? ' deleted' : ''}${m.mentioned ? ' mentions-me' : ''}`;
    node.dataset.status = m.status || '';
    if (m.msg_id) node.dataset.msgId = m.msg_id;
    const bubble = el('div', { class: 'bubble' });
    if (m.group_id && m.dir === 'in') {
      node.dataset.from = m.from;
      bubble.append(el('span', { class: `sender c${colourIndex(m.from)}`, dir: 'auto' }, profiles.name(m.from), el('span', { class: 'visually-hidden' }, ': ')));
    } else bubble.append(el('span', { class: 'visually-hidden' }, m.dir === 'out' ? 'You: ' : `${m.from}: `));
    if (m.reply_to && !m.deleted) bubble.append(actions.quote(m, quoteOf(m)));
    if (m.media && !m.deleted) bubble.append(mediaBox(m));
    const meta = el('span', { class: 'meta' }, el('time', { datetime: new Date(m.ts).toISOString() }, hhmm(m.ts)));
    if (m.edited && !m.deleted) meta.prepend(el('span', { class: 'edited' }, 'edited'));
    let withTicks = false;
    if (m.dir === 'out' && m.from === me && m.group_id && m.msg_id) {
      // The ticks of my group messages open Message info (who has it, who has read it).
      const btn = el('button', { type: 'button', class: 'info-btn', title: 'Message info' }, ticks(m.status || 'sent'));
      btn.setAttribute('aria-label', infoLabel(m));
      btn.addEventListener('click', () => msgInfo.open(m.key));
      meta.append(btn);
    } else if (m.dir === 'out' && m.from === me && m.peer !== me) meta.append(ticks(m.status || 'sent'));
    else if (m.dir === 'out' && m.status === 'queued') meta.append(ticks('queued'));
    withTicks = meta.childElementCount > 1;
    // The time sits at the bubble's bottom right; an invisible spacer of its width ends the
    // text, so the last line wraps only when the time would not fit beside it.
    if (m.undecryptable) bubble.append(el('p', { class: 'placeholder' }, '🔒 Waiting for this message. It could not be decrypted; the sender was asked to send it again.', el('span', { class: 'meta-spacer', 'aria-hidden': 'true' })));
    // The direction is set from the text's first strong letter (what dir=auto does), so that
    // the time can go on the side where the last line ends (.bubble.rtl).
    const dir = m.body ? textDir(m.body) : 'ltr';
    if (dir === 'rtl') bubble.classList.add('rtl');
    // Addresses are links, and a group's @members are marked (richtext.js); the spacer is
    // wider by the "edited" label.
    const g = m.group_id && client.group(m.group_id);
    const names = g ? g.members.map((x) => x.user) : [];
    const spacer = `meta-spacer${withTicks ? ' wide' : ''}${m.edited ? ' edited-space' : ''}`;
    if (m.deleted) bubble.append(actions.deletedLine(spacer));
    else if (m.body) bubble.append(el('p', { class: 'text', dir }, ...richText(m.body, { names, me }), el('span', { class: spacer, 'aria-hidden': 'true' })));
    bubble.append(meta);
    // The menu (reply, react, edit, delete): not on a message still on its way (its id is not
    // known yet) but for "Delete for me" of a failed one, which its note offers already.
    if (m.status !== 'failed' && m.status !== 'queued') bubble.append(actions.menuButton(m));
    if (m.status === 'failed') {
      const retry = el('button', { type: 'button', class: 'link retry' }, 'Retry');
      retry.addEventListener('click', () => client.retry(m.key));
      const del = el('button', { type: 'button', class: 'link delete-failed' }, 'Delete');
      del.addEventListener('click', () => client.removeMessage(m.key));
      bubble.append(el('p', { class: 'failed-note' }, `Not sent: ${m.error || 'refused by the server'}. `, retry, ' · ', del));
    }
    node.replaceChildren(bubble);
    if (!m.deleted) {
      const r = actions.reactions(m);
      if (r) node.append(r);
    }
  }

  function fitBox(w, h) {
    if (!w || !h) return { width: THUMB_BOX, height: Math.round(THUMB_BOX * 0.75) };
    const s = Math.min(1, THUMB_BOX / Math.max(w, h));
    return { width: Math.max(40, Math.round(w * s)), height: Math.max(40, Math.round(h * s)) };
  }

  function mediaBox(m) {
    const md = m.media;
    const box = fitBox(md.width, md.height);
    const img = el('img', { class: 'thumb', alt: m.body ? `Photo: ${m.body}` : 'Photo', width: box.width, height: box.height });
    const btn = el('button', { type: 'button', class: 'thumb-btn', 'aria-label': 'Open photo' }, img);
    btn.addEventListener('click', () => openViewer(m));
    const wrap = el('div', { class: 'media' }, btn);
    const frac = client.progress.get(m.key);
    if (frac !== undefined) wrap.append(progressBar(frac));
    else if (m.status === 'queued' && !md.media_id) wrap.append(progressBar(0));
    media.thumb(m).then((url) => {
      if (url) img.src = url;
      else wrap.classList.add('missing');
    }).catch((e) => {
      wrap.classList.add('missing');
      img.alt = e.status === 404 ? 'Photo (no longer on the server)' : 'Photo (could not be loaded)';
    });
    return wrap;
  }

  function progressBar(frac) {
    const pct = Math.round((frac || 0) * 100);
    const bar = el('div', { class: 'progress', role: 'progressbar', 'aria-label': 'Uploading', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct) },
      el('span', { class: 'progress-fill' }));
    bar.firstChild.style.width = `${pct}%`; // CSSOM, allowed under style-src 'self'
    return bar;
  }

  client.addEventListener('progress', (e) => {
    const { key, fraction } = e.detail;
    const b = bubbles.get(key);
    if (!b) return;
    const wrap = b.node.querySelector('.media');
    if (!wrap) return;
    const old = wrap.querySelector('.progress');
    if (fraction === null) {
      if (old) old.remove();
      return;
    }
    const pct = Math.round(fraction * 100);
    if (old) {
      old.setAttribute('aria-valuenow', String(pct));
      old.firstChild.style.width = `${pct}%`;
    } else wrap.append(progressBar(fraction));
  });

  // The same node for a day on every refresh, so that the reconcile below moves nothing: a
  // node moved between a mousedown and its mouseup loses the click, and a moved node its focus.
  function daySep(ts) {
    const k = dayKey(ts);
    const label = dayLabel(ts);
    let d = days.get(k);
    if (!d) days.set(k, (d = el('div', { class: 'day', role: 'separator' }, el('span', {}, label))));
    else if (d.textContent !== label) d.firstChild.textContent = label; // "Today" turns "Yesterday"
    return d;
  }

  let renderSeq = 0;
  async function refreshMessages(scrollToEnd = false) {
    const peer = active;
    if (!peer) return;
    const mySeq = ++renderSeq;
    const { messages, more } = await client.messages(peer, limit);
    if (peer !== active || mySeq !== renderSeq) return;
    byMsgId.clear();
    for (const m of messages) if (m.msg_id) byMsgId.set(m.msg_id, m);
    const nearBottom = atBottom();
    const nodes = [];
    if (marker.key === undefined) {
      // First render of this chat: the marker goes before its first unread message.
      const first = messages.find((m) => m.unread && m.dir === 'in');
      const n = messages.filter((m) => m.unread && m.dir === 'in').length;
      marker.key = first ? first.key : null;
      unreadMarker.firstChild.textContent = `${n} unread message${n === 1 ? '' : 's'}`;
    }
    let arrived = 0; // incoming messages newer than what was shown (not older ones paged in)
    const shownUpTo = newestTs;
    if (more) nodes.push(earlierBtn);
    let lastDay = null;
    const seen = new Set();
    for (const m of messages) {
      const dk = dayKey(m.ts);
      if (dk !== lastDay) {
        nodes.push(daySep(m.ts));
        lastDay = dk;
      }
      seen.add(m.key);
      const sig = bubbleSig(m);
      let b = bubbles.get(m.key);
      if (m.key === marker.key) nodes.push(unreadMarker);
      if (!b) {
        if (shownUpTo && m.dir === 'in' && m.ts > shownUpTo) arrived++;
        b = { node: buildBubble(m), sig };
        bubbles.set(m.key, b);
      } else if (b.sig !== sig) {
        if (m.kind === 'event' || m.kind === 'keys') b.node = buildBubble(m);
        else fillBubble(b.node, m);
        b.sig = sig;
      } else if (m.kind !== 'event' && m.kind !== 'keys') updateTicks(b.node, m);
      b.m = m;
      nodes.push(b.node);
    }
    for (const k of [...bubbles.keys()]) if (!seen.has(k)) bubbles.delete(k);
    for (const [k, d] of [...days]) if (!nodes.includes(d)) days.delete(k);
    if (messages.length) newestTs = Math.max(newestTs, messages[messages.length - 1].ts);
    placeChildren(msgList, nodes);
    if (scrollToEnd && marker.key && nodes.includes(unreadMarker)) {
      // Opened with unread messages: the first of them at the top, the marker above it.
      msgList.scrollTop = unreadMarker.offsetTop - msgList.offsetTop - 8;
      stuck = atBottom();
    } else if (scrollToEnd || nearBottom) toBottom();
    else if (arrived) jumpNew += arrived;
    updateJump();
  }

  // ---- staying at the newest message ------------------------------------------------------
  // While the newest message is in view it stays there, whatever changes the list's size: the
  // connection bar, a growing message box, an image that loads. `stuck` follows the user's own
  // scrolling; a resize never changes it.
  let stuck = true;
  let jumpNew = 0; // messages that arrived while scrolled up
  let newestTs = 0; // the newest message's time on screen
  const marker = { key: undefined }; // the unread marker's message, per opened chat
  function atBottom() {
    return msgList.scrollHeight - msgList.scrollTop - msgList.clientHeight < NEAR_BOTTOM_PX;
  }
  function toBottom() {
    msgList.scrollTop = msgList.scrollHeight;
    stuck = true;
    jumpNew = 0;
  }
  function updateJump() {
    jumpBtn.hidden = stuck;
    jumpCount.hidden = !jumpNew;
    jumpCount.textContent = jumpNew ? String(jumpNew) : '';
    jumpBtn.setAttribute('aria-label', jumpNew ? `Jump to the latest message (${jumpNew} new)` : 'Jump to the latest message');
  }
  let lastTop = 0;
  msgList.addEventListener('scroll', () => {
    // A scroll up is the user's; one that reaches the end (theirs or ours) sticks again.
    if (atBottom()) {
      stuck = true;
      jumpNew = 0;
    } else if (msgList.scrollTop < lastTop) stuck = false;
    lastTop = msgList.scrollTop;
    updateJump();
  }, { passive: true });
  const keepBottom = () => { if (stuck && active) msgList.scrollTop = msgList.scrollHeight; };
  const sizes = new ResizeObserver(() => {
    keepBottom();
    // Toasts go above the message box while it is on screen (it grows with the text).
    const h = convBody.hidden || composer.hidden ? 0 : composer.getBoundingClientRect().height;
    document.documentElement.style.setProperty('--toast-bottom', `${Math.round(h ? h + 12 : 20)}px`);
    convBody.style.setProperty('--composer-h', `${Math.round(h)}px`);
  });
  sizes.observe(msgList);
  sizes.observe(composer);
  msgList.addEventListener('load', keepBottom, true); // an image decoded to a new height
  jumpBtn.addEventListener('click', () => {
    toBottom();
    updateJump();
    textIn.focus({ preventScroll: true });
  });
  client.addEventListener('messages', (e) => { if (e.detail.peer === active) refreshMessages(); });
  // A new display name or avatar (profiles.js): the list, the header and the senders' names.
  profiles.addEventListener('change', (e) => {
    const u = e.detail.user;
    refreshChats();
    if (u === me) meAvatar.replaceChildren(userAvatar(me));
    if (active && !isGroupPeer(active) && (u === active || active === me)) {
      convTitle.textContent = chatName(active);
      convAvatar.replaceChildren(userAvatar(active));
    }
    if (active && isGroupPeer(active)) refreshMessages();
  });

  earlierBtn.addEventListener('click', async () => {
    const before = msgList.scrollHeight - msgList.scrollTop;
    limit += PAGE;
    await refreshMessages(false);
    msgList.scrollTop = msgList.scrollHeight - before;
  });

  function openChat(peer, { focus = true } = {}) {
    if (!isGroupPeer(peer)) peer = peer.toLowerCase(); // group ids are case-sensitive
    if (active && active !== peer) {
      client.stoppedTyping();
      if (active !== me) client.unwatch(active);
      for (const d of [groupInfo.dialog, msgInfo.dialog]) if (d.open) d.close();
    }
    if (active !== peer) {
      active = peer;
      limit = PAGE;
      bubbles.clear();
      days.clear();
      msgList.replaceChildren();
      marker.key = undefined;
      quotes.clear();
      actions.reset();
      newestTs = 0;
      stuck = true;
      jumpNew = 0;
      textIn.value = drafts.get(peer) || '';
      autosize();
    }
    client.activePeer = peer;
    welcome.hidden = true;
    convBody.hidden = false;
    app.classList.add('in-chat');
    convAvatar.replaceChildren(isGroupPeer(peer) ? groupAvatar() : userAvatar(peer));
    convTitle.textContent = chatName(peer);
    convTitle.title = isGroupPeer(peer) ? '' : peer; // the username, under a display name
    if (peer !== me) client.watch(peer); // users only: groups have no presence
    updateGroupPane();
    updateLock();
    if (location.hash !== `#chat=${encodeURIComponent(peer)}`) history.replaceState(null, '', `#chat=${encodeURIComponent(peer)}`);
    for (const b of chatList.querySelectorAll('button.chat')) {
      if (b.dataset.peer === peer) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
    if (focus) (composer.hidden ? msgList : textIn).focus();
    return refreshMessages(true).then(() => { client.markSeen(peer); });
  }

  /** Scrolls a message of the open chat into view and flashes it (a quote's original, a
   *  search result), loading earlier pages until it is among them. */
  async function showMessage(key) {
    const peer = active;
    const m = await client.message(key);
    if (!m || m.peer !== peer) return toast('That message is no longer in this browser.');
    if (!bubbles.has(key)) {
      const age = await client.messageAge(m);
      if (age >= limit) {
        limit = Math.ceil((age + 1) / PAGE) * PAGE;
        await refreshMessages(false);
      }
    }
    const b = bubbles.get(key);
    if (!b || peer !== active) return;
    stuck = false;
    b.node.scrollIntoView({ block: 'center' });
    b.node.classList.remove('flash');
    void b.node.offsetWidth; // restart the animation
    b.node.classList.add('flash');
    setTimeout(() => b.node.classList.remove('flash'), 2000);
    updateJump();
  }

  function closeChat() {
    const was = active;
    if (active) {
      client.stoppedTyping();
      if (active !== me) client.unwatch(active);
    }
    active = null;
    client.activePeer = null;
    app.classList.remove('in-chat');
    convBody.hidden = true;
    welcome.hidden = false;
    history.replaceState(null, '', location.pathname);
    refreshChats().then(() => {
      const b = was && chatList.querySelector(`button[data-peer="${CSS.escape(was)}"]`);
      (b || newChatBtn).focus();
    });
  }
  backBtn.addEventListener('click', closeChat);

  // Reading: the conversation counts as read only while it is visible and the window focused.
  const seenCheck = () => { if (active) client.markSeen(active); };
  addEventListener('focus', seenCheck);
  document.addEventListener('visibilitychange', seenCheck);
  client.addEventListener('state', (e) => { if (e.detail === 'synced') seenCheck(); });

  // ---- composer ---------------------------------------------------------------------------
  function autosize() {
    textIn.style.height = 'auto';
    textIn.style.height = `${Math.min(textIn.scrollHeight, 160)}px`;
  }
  // @mentions in a group: the picker's keys come before the box's own (Enter sends)
  const mentionUi = mentionPicker(textIn, {
    members: () => {
      const g = active && isGroupPeer(active) && client.group(groupIdOf(active));
      return g ? g.members.map((x) => x.user).filter((u) => u !== me) : null;
    },
    nameOf: (u) => profiles.name(u),
  });
  composer.append(mentionUi.list);
  textIn.addEventListener('input', () => {
    autosize();
    // (while a message is being edited, the box holds its text, not the draft: kept aside)
    if (active && !composer.classList.contains('editing')) drafts.set(active, textIn.value);
    if (active && active !== me && textIn.value && !composer.hidden) client.typed(active);
    else if (!textIn.value) client.stoppedTyping();
  });
  textIn.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  textIn.addEventListener('blur', () => client.stoppedTyping());
  composer.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = textIn.value.replace(/^\s+|\s+$/g, '');
    if (!active || !body) return;
    if (new TextEncoder().encode(body).length > MAX_BODY_BYTES) {
      toast('That message is too long (64 KiB at most).');
      return;
    }
    const peer = active;
    const extra = actions.take(); // a reply's quote, or the message being edited
    if (extra && extra.edit) {
      // An edit goes as an action; the message box gets back what was typed before it.
      textIn.value = extra.draft || '';
      drafts.set(peer, textIn.value);
      autosize();
      if (body !== extra.edit.body) await client.sendAction(peer, { kind: 'edit', of: extra.edit.msg_id, body });
      return;
    }
    textIn.value = '';
    drafts.set(peer, '');
    autosize();
    client.stoppedTyping();
    marker.key = null; // answered: the unread marker has done its job, as in WhatsApp
    toBottom();
    const g = isGroupPeer(peer) && client.group(groupIdOf(peer));
    const mentions = g ? mentionsIn(body, g.members.map((x) => x.user).filter((u) => u !== me)) : [];
    await client.sendText(peer, body, { reply_to: extra && extra.reply_to, mentions });
    toBottom();
  });

  // ---- images: pick, paste, drop ----------------------------------------------------------
  attachBtn.addEventListener('click', () => fileIn.click());
  fileIn.addEventListener('change', () => {
    const f = fileIn.files && fileIn.files[0];
    fileIn.value = '';
    if (f) offerImage(f);
  });
  textIn.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    const img = files.find((f) => f.type.startsWith('image/'));
    if (img) {
      e.preventDefault();
      offerImage(img);
    }
  });
  let dragDepth = 0;
  convBody.addEventListener('dragenter', (e) => {
    if (!e.dataTransfer || ![...e.dataTransfer.types].includes('Files')) return;
    dragDepth++;
    convBody.classList.add('dropping');
  });
  convBody.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) convBody.classList.remove('dropping');
  });
  convBody.addEventListener('dragover', (e) => {
    if (e.dataTransfer && [...e.dataTransfer.types].includes('Files')) e.preventDefault();
  });
  convBody.addEventListener('drop', (e) => {
    dragDepth = 0;
    convBody.classList.remove('dropping');
    const f = e.dataTransfer && [...e.dataTransfer.files].find((x) => x.type.startsWith('image/'));
    if (!f) return;
    e.preventDefault();
    offerImage(f);
  });

  async function offerImage(file) {
    if (!active || composer.hidden) return; // no chat, or a group this user has left
    if (!acceptable(file)) {
      toast('Only JPEG, PNG, WebP and GIF images can be sent.');
      return;
    }
    if (file.size > 16 * 1024 * 1024) {
      toast('That image is too large (16 MiB at most).');
      return;
    }
    // The type comes from the name: a text file called .png is found out here, by decoding
    // it, before a preview with a broken image is offered.
    if (!(await dimensions(file))) {
      toast(`“${file.name || 'That file'}” is not an image this browser can open.`);
      return;
    }
    pvFile = file;
    if (pvUrl) URL.revokeObjectURL(pvUrl);
    pvUrl = URL.createObjectURL(file);
    pvImg.src = pvUrl;
    pvTitle.textContent = `Send an image to ${chatName(active)}`;
    pvCaption.value = textIn.value;
    pvDialog.showModal();
    pvSend.focus();
  }
  pvCancel.addEventListener('click', () => pvDialog.close());
  pvDialog.addEventListener('close', () => {
    // 'close' is dispatched later, as a task: the dialog may already show the next image.
    if (pvDialog.open) return;
    pvFile = null;
    if (pvUrl) URL.revokeObjectURL(pvUrl);
    pvUrl = null;
    pvImg.removeAttribute('src');
    if (active) textIn.focus();
  });
  pvDialog.querySelector('form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = pvFile;
    const caption = pvCaption.value.trim();
    if (!file || !active) return pvDialog.close();
    const peer = active;
    pvDialog.close();
    if (caption && caption === textIn.value.trim()) {
      textIn.value = '';
      autosize();
    }
    const dims = await dimensions(file);
    if (!dims) {
      toast('That file is not an image this browser can read.');
      return;
    }
    // Larger than tern sends, it is made smaller here, as WhatsApp does (media.fitForUpload).
    const fit = await fitForUpload(file, dims);
    await client.sendImage(peer, fit.blob, caption, fit.dims);
    toBottom();
  });

  async function openViewer(m) {
    vwImg.removeAttribute('src');
    vwImg.alt = m.body ? `Photo: ${m.body}` : 'Photo';
    vwDialog.showModal();
    vwClose.focus();
    try {
      const url = await media.full(m);
      if (url) vwImg.src = url;
    } catch (e) {
      vwDialog.close();
      toast(e.status === 404 ? 'This photo is no longer available on the server.' : `Could not open the photo: ${e.message}`);
    }
  }
  vwClose.addEventListener('click', () => vwDialog.close());
  vwDialog.addEventListener('click', (e) => { if (e.target === vwDialog) vwDialog.close(); });

  // ---- new chat ---------------------------------------------------------------------------
  newChatBtn.addEventListener('click', () => {
    ncInput.value = '';
    ncError.textContent = '';
    ncInput.removeAttribute('aria-invalid');
    ncGo.disabled = false;
    ncDialog.showModal();
    ncInput.focus();
  });
  ncCancel.addEventListener('click', () => ncDialog.close());
  ncForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    // Offline, a name is let through: the outbox sends later (or reports no_such_user).
    const name = await checkField(client, ncInput, ncError, ncGo);
    if (!name) return;
    ncDialog.close();
    openChat(name);
  });

  newGroupBtn.addEventListener('click', () => newGroup.open());

  // ---- logout -----------------------------------------------------------------------------
  logoutBtn.addEventListener('click', async () => {
    const n = await client.outboxSize().catch(() => 0);
    loNote.textContent = `Your chat history in this browser will be deleted.${n ? ` ${n} message${n === 1 ? ' has' : 's have'} not been sent yet and will be lost.` : ''}`;
    loDialog.showModal();
    loDialogCancel.focus();
  });
  loDialogCancel.addEventListener('click', () => loDialog.close());
  loDialogGo.addEventListener('click', async () => {
    loDialogGo.disabled = true;
    loDialog.close();
    await onLogout();
  });

  // ---- misc -------------------------------------------------------------------------------
  function toast(text) {
    const box = document.getElementById('toasts');
    const t = el('div', { class: 'toast' }, text);
    box.append(t);
    setTimeout(() => t.remove(), 6000);
  }
  client.addEventListener('toast', (e) => toast(e.detail.text));

  let ended = false;
  function endSession(text) {
    if (ended) return;
    ended = true;
    onLogout({ local: true, notice: text });
  }
  client.addEventListener('ended', (e) => {
    const code = e.detail.code;
    if (settings.deleting()) return; // the account's deletion logs out by itself
    if (code === 4003) {
      replaced = true;
      updateBar();
    } else if (code === 'db') {
      endSession('You were logged out in another window.');
    } else endSession(code === 4002 ? 'This browser was logged out.' : 'Your session has ended. Please log in again.');
  });

  // Escape leaves a conversation, as in WhatsApp (menus and dialogs take their Escape first).
  const onKey = (e) => {
    if (e.key === 'Escape' && !e.defaultPrevented && active && !document.querySelector('dialog[open]')) closeChat();
  };
  document.addEventListener('keydown', onKey);

  // Deep links (#chat=bob) from a reload or a notification click.
  // Only a chat that exists opens: a group this device knows, or a user the server knows; any
  // other #chat= is dropped from the address, with no conversation made for it.
  async function fromHash() {
    const m = /^#chat=(.+)$/.exec(location.hash);
    if (!m) return;
    let peer;
    try {
      peer = decodeURIComponent(m[1]);
    } catch {
      peer = '';
    }
    if (!isGroupPeer(peer)) peer = peer.toLowerCase();
    let ok;
    if (isGroupPeer(peer)) ok = !!client.group(groupIdOf(peer));
    else ok = USER_RE.test(peer) && (chatsCache.some((c) => c.peer === peer) || !(await checkUser(client, peer)));
    if (location.hash !== m[0]) return; // another link meanwhile
    if (ok) return openChat(peer, { focus: true });
    history.replaceState(null, '', location.pathname);
    toast('That link does not lead to a chat.');
  }
  addEventListener('hashchange', fromHash);
  if (navigator.serviceWorker) navigator.serviceWorker.addEventListener('message', (e) => {
    if (e.data && e.data.type === 'open' && e.data.peer) openChat(e.data.peer);
  });

  refreshChats().then(async () => {
    await fromHash();
    // After login (or a reload) the keyboard starts on the chat screen, not the page body.
    if (!active && (document.activeElement === document.body || !document.activeElement)) newChatBtn.focus();
  });

  return {
    destroy() {
      settings.destroy();
      media.revokeAll();
      clearInterval(headerTimer);
      clearTimeout(barTimer);
      document.removeEventListener('keydown', onKey);
      removeEventListener('focus', seenCheck);
      removeEventListener('online', updateBar);
      removeEventListener('offline', updateBar);
      document.removeEventListener('visibilitychange', seenCheck);
      removeEventListener('hashchange', fromHash);
      sizes.disconnect();
      actions.destroy();
    },
    toast,
  };
}
