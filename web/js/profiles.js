// profiles: display names and avatars (PROTOCOL.md 15). Another user's come from
// GET /v1/users/{name} (once per session, when first shown) and then from the live `profile`
// frames of the users watched; this user's are set with PATCH /v1/me, the avatar uploaded with
// POST /v1/media?purpose=avatar. Avatar images are fetched with the token and kept in
// IndexedDB like any other image (media.js). A server without profiles (404/405 to PATCH
// /v1/me, no display_name in its answers) simply shows usernames.
import * as api from './api.js';
import { el } from './util.js';
import { avatar } from './groupui.js';
import { dimensions, scaleToFit } from './media.js';

const AVATAR_SIDE = 512; // an avatar is uploaded at most this large (it is shown at 40-96 px)
const NAME_MAX_BYTES = 64;

export class Profiles extends EventTarget {
  constructor(client, media) {
    super();
    this.client = client;
    this.media = media;
    this.map = new Map(); // user -> {display_name, avatar}
    this.asked = new Set();
    client.addEventListener('profile', (e) => this.set(e.detail.user, e.detail));
  }

  set(user, p) {
    const next = { display_name: typeof p.display_name === 'string' ? p.display_name : '', avatar: typeof p.avatar === 'string' ? p.avatar : null };
    const old = this.map.get(user);
    this.map.set(user, next);
    if (!old || old.display_name !== next.display_name || old.avatar !== next.avatar) this.dispatchEvent(new CustomEvent('change', { detail: { user } }));
  }

  /** What is known of a user now (and a fetch of it, the first time). */
  get(user) {
    if (!this.asked.has(user) && !user.startsWith('g:')) {
      this.asked.add(user);
      api.user(this.client.session.token, user).then((u) => {
        if (u && ('display_name' in u || 'avatar' in u)) this.set(user, u);
      }).catch((e) => { if (e.status === 0) this.asked.delete(user); }); // offline: asked again next time
    }
    return this.map.get(user) || null;
  }

  /** The name a user goes by: their display name, else the username. */
  name(user) {
    const p = this.get(user);
    return (p && p.display_name) || user;
  }

  /** The object URL of a user's avatar image, or null. */
  async avatarUrl(user) {
    const p = this.get(user);
    if (!p || !p.avatar) return null;
    const id = p.avatar;
    return this.media.urlFor(`avatar:${id}`, () => api.mediaBlob(this.client.session.token, id, false));
  }

  /** PATCH /v1/me: {display_name} and/or {avatar: media_id | null}. */
  async save(fields) {
    const r = await api.patchMe(this.client.session.token, fields);
    this.set(this.client.user, { ...(this.map.get(this.client.user) || {}), ...fields, ...(r || {}) });
    return r;
  }
}

/** A round avatar: the user's photo when they have one, else their initial on a colour. */
export function profileAvatar(profiles, user, extra = '') {
  const a = avatar(user, extra);
  if (profiles) fillAvatar(profiles, a, user);
  return a;
}

function fillAvatar(profiles, a, user) {
  profiles.avatarUrl(user).then((url) => {
    if (!url) return;
    a.replaceChildren(el('img', { src: url, alt: '', class: 'avatar-img' }));
    a.classList.add('has-photo');
  }).catch(() => { /* the initial stays */ });
}

/** The top of the Settings sheet: this user's avatar and display name, editable. */
export function profileEditor(profiles, { toast }) {
  const me = profiles.client.user;
  const pic = el('span', { class: 'st-avatar' }, profileAvatar(profiles, me, 'big'));
  const nameIn = el('input', { id: 'profile-name', autocomplete: 'nickname', maxlength: String(NAME_MAX_BYTES), placeholder: me });
  const save = el('button', { type: 'submit', class: 'secondary', id: 'profile-save' }, 'Save name');
  const status = el('p', { class: 'hint st-saved', id: 'profile-status', role: 'status' });
  const fileIn = el('input', { type: 'file', accept: 'image/jpeg,image/png,image/webp', class: 'visually-hidden', id: 'profile-file', tabindex: '-1', 'aria-hidden': 'true' });
  const pick = el('button', { type: 'button', class: 'link', id: 'profile-photo' }, 'Change photo');
  const remove = el('button', { type: 'button', class: 'link danger-link', id: 'profile-photo-remove' }, 'Remove photo');
  const form = el('form', { class: 'st-profile' },
    el('label', { for: 'profile-name' }, 'Your name'),
    el('div', { class: 'add-row' }, nameIn, save), status);
  const box = el('div', { class: 'st-me' }, pic, el('p', { class: 'gi-name', id: 'settings-user' }, me),
    el('div', { class: 'st-photo' }, pick, remove, fileIn), form);

  function refresh() {
    const p = profiles.map.get(me);
    if (document.activeElement !== nameIn) nameIn.value = (p && p.display_name) || '';
    remove.hidden = !(p && p.avatar);
    pic.replaceChildren(profileAvatar(profiles, me, 'big'));
  }
  profiles.addEventListener('change', (e) => { if (e.detail.user === me) refresh(); });
  profiles.get(me);
  refresh();

  const refused = (e) => (e.status === 404 || e.status === 405 ? 'This server does not keep profiles yet.' : e.message);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const display_name = nameIn.value.trim();
    if (new TextEncoder().encode(display_name).length > NAME_MAX_BYTES) {
      status.textContent = `A name is at most ${NAME_MAX_BYTES} bytes.`;
      return;
    }
    status.textContent = 'Saving…';
    try {
      await profiles.save({ display_name });
      status.textContent = 'Saved.';
    } catch (err) {
      status.textContent = refused(err);
    }
  });
  pick.addEventListener('click', () => fileIn.click());
  fileIn.addEventListener('change', async () => {
    const f = fileIn.files && fileIn.files[0];
    fileIn.value = '';
    if (!f) return;
    const dims = await dimensions(f);
    if (!dims) return toast(`“${f.name}” is not an image this browser can open.`);
    status.textContent = 'Uploading the photo…';
    try {
      const { blob } = await scaleToFit(f, dims, AVATAR_SIDE, AVATAR_SIDE * AVATAR_SIDE);
      const up = await api.uploadMedia(profiles.client.session.token, blob, null, 'avatar');
      await profiles.save({ avatar: up.media_id });
      status.textContent = 'Photo saved.';
    } catch (err) {
      status.textContent = refused(err);
    }
  });
  remove.addEventListener('click', async () => {
    try {
      await profiles.save({ avatar: null });
      status.textContent = 'Photo removed.';
    } catch (err) {
      status.textContent = refused(err);
    }
  });
  return box;
}
