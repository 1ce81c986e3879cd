// conn: the one WebSocket to /v1/ws (PROTOCOL section 3), kept open: auth first, a
// {"type":"ping"} heartbeat (browsers cannot send WebSocket pings, and the server idles out
// silent connections), and reconnection with exponential backoff and jitter.
//
// Events (an EventTarget): 'state' {detail: state}, 'frame' {detail: object},
// 'ended' {detail: {code, reason}} when reconnecting would not help (4001/4002/4003).
// States: 'connecting' (socket or auth under way, or waiting to retry), 'ready' (after
// {"type":"ready"}), 'synced' (after {"type":"synced"}), 'stopped'.

const PING_EVERY_MS = 25000; // well inside ws.idle_timeout (90s by default)
const PONG_WAIT_MS = 10000; // no answer by then: the connection is dead, start over
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;

export class Conn extends EventTarget {
  constructor(token) {
    super();
    this.token = token;
    this.ws = null;
    this.state = 'connecting';
    this.attempt = 0;
    this.retryAt = 0; // when the next attempt starts (for "retrying in 5s")
    this.timer = null;
    this.pingTimer = null;
    this.deadTimer = null;
    this.stopped = false;
    this.onOnline = () => this.retryNow();
    this.onOffline = () => { if (this.ws) this.drop('offline'); };
    this.onVisible = () => { if (document.visibilityState === 'visible' && !this.ws) this.retryNow(); };
    addEventListener('online', this.onOnline);
    addEventListener('offline', this.onOffline);
    document.addEventListener('visibilitychange', this.onVisible);
  }

  get open() {
    return this.state === 'ready' || this.state === 'synced';
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: s }));
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.ws) return;
    this.setState('connecting');
    if (navigator.onLine === false) {
      this.schedule();
      return;
    }
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/ws';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'auth', token: this.token }));
      this.armDeadline();
    };
    ws.onmessage = (ev) => {
      this.armDeadline();
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f.type === 'ready') {
        this.attempt = 0;
        this.setState('ready');
        this.startPings();
      } else if (f.type === 'synced') {
        this.setState('synced');
      } else if (f.type === 'pong') {
        return;
      }
      this.dispatchEvent(new CustomEvent('frame', { detail: f }));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.cleanup();
      if (ev.code === 4001 || ev.code === 4002 || ev.code === 4003) {
        // Unauthorized / logged out / replaced by a newer connection: retrying cannot help
        // (and two tabs would take turns replacing each other).
        this.stopped = true;
        this.setState('stopped');
        this.dispatchEvent(new CustomEvent('ended', { detail: { code: ev.code, reason: ev.reason } }));
        return;
      }
      this.schedule();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  /** Sends one frame; false when not connected (the caller keeps it for later). */
  send(obj) {
    if (!this.ws || !this.open || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  startPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_EVERY_MS);
  }

  // Any frame from the server proves the connection alive; silence longer than a ping period
  // plus the pong wait means it is gone even if the browser has not noticed (e.g. a laptop
  // that slept, or a network that dropped without a FIN).
  armDeadline() {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => this.drop('timeout'), PING_EVERY_MS + PONG_WAIT_MS);
  }

  cleanup() {
    clearInterval(this.pingTimer);
    clearTimeout(this.deadTimer);
    this.pingTimer = this.deadTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
  }

  /** Closes this connection and reconnects with backoff. */
  drop() {
    if (!this.ws) return;
    this.cleanup();
    this.schedule();
  }

  schedule() {
    if (this.stopped) return;
    this.setState('connecting');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = this.attempt === 0 ? 0 : base / 2 + Math.random() * (base / 2);
    this.attempt++;
    this.retryAt = Date.now() + delay;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
    this.dispatchEvent(new CustomEvent('state', { detail: 'connecting' }));
  }

  /** Skips the backoff wait (the network came back, or the user asked). */
  retryNow() {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.cleanup();
    removeEventListener('online', this.onOnline);
    removeEventListener('offline', this.onOffline);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.setState('stopped');
  }
}
