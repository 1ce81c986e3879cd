// drafts: what was typed in a chat's message box and not sent, per chat, kept across chat
// switches and reloads. localStorage (synchronous, so a reload right after a keystroke keeps
// it), one entry per signed-in user, deleted with the rest of the user's data on logout.
const key = (user) => `tern.drafts:${user}`;

export class Drafts {
  constructor(user) {
    this.user = user;
    try {
      this.map = JSON.parse(localStorage.getItem(key(user)) || '{}') || {};
    } catch {
      this.map = {}; // corrupt: start again
    }
  }

  get(peer) {
    return typeof this.map[peer] === 'string' ? this.map[peer] : '';
  }

  set(peer, text) {
    if (text) this.map[peer] = text;
    else delete this.map[peer];
    try {
      localStorage.setItem(key(this.user), JSON.stringify(this.map));
    } catch { /* storage full: the draft lives until the page closes */ }
  }
}

/** Logout: the user's drafts go with their history. */
export function dropDrafts(user) {
  localStorage.removeItem(key(user));
}
