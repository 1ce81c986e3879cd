// conn: the one WebSocket to /v1/ws (PROTOCOL section 3), kept open: auth first, a
// {"type":"ping"} heartbeat (browsers cannot send WebSocket pings, and the server idles out
// silent connections), and reconnection with exponential backoff and jitter.
//
// Events (an EventTarget): 'state' {detail: state}, 'frame' {detail: object},
// 'ended' {detail: {code, reason}} when reconnecting would not help (4001/4002/4003).
// States: 'connecting' (socket or auth under way, or waiting to retry), 'ready' (after
// {"type":"ready"}), 'synced' (after {"type":"synced"}), 'stopped'.

const PING_EVERY_MS = 25000; // a ping after this much silence: well inside ws.idle_timeout (90s)
const PONG_WAIT_MS = 10000; // a ping unanswered this long: the connection is dead, start over
const TICK_MS = 5000; // how often the heartbeat looks (background tabs may stretch it to 1 min)
const CONNECT_TIMEOUT_MS = 15000; // socket + auth must reach "ready" within this
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
    this.tickTimer = null;
    this.connectTimer = null;
    this.lastRx = 0; // when the server was last heard (ms)
    this.pingAt = 0; // when our unanswered ping went out, 0 when none is
    this.lastPing = 0; // when the last ping went out
    this.stopped = false;
    this.onOnline = () => this.retryNow();
    this.onOffline = () => { if (this.ws) this.drop(); };
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
    // navigator.onLine is only a hint (it can say offline on a LAN-only machine), so try anyway.
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/ws';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    this.connectTimer = setTimeout(() => { if (!this.open) this.drop(); }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'auth', token: this.token }));
    };
    ws.onmessage = (ev) => {
      this.lastRx = Date.now();
      this.pingAt = 0;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f.type === 'ready') {
        this.attempt = 0;
        clearTimeout(this.connectTimer);
        this.setState('ready');
        this.startHeartbeat();
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

  // Browsers cannot send WebSocket pings, and cannot see the server's: a {"type":"ping"} every
  // PING_EVERY_MS keeps the server's idle timer happy, and one left unanswered (no frame at all) for
  // PONG_WAIT_MS means the connection is gone even if the browser has not noticed (a laptop
  // that slept, a network that vanished without a FIN). Timers only ever fire late (background
  // tabs are throttled), so the check compares clock times instead of trusting timer order.
  startHeartbeat() {
    clearInterval(this.tickTimer);
    this.lastRx = this.lastPing = Date.now();
    this.pingAt = 0;
    this.tickTimer = setInterval(() => this.beat(), TICK_MS);
  }

  beat() {
    const now = Date.now();
    if (this.pingAt && now - this.pingAt > PONG_WAIT_MS) {
      this.drop();
      return;
    }
    if (!this.pingAt && now - this.lastPing >= PING_EVERY_MS && this.send({ type: 'ping' })) this.pingAt = this.lastPing = now;
  }

  cleanup() {
    clearInterval(this.tickTimer);
    clearTimeout(this.connectTimer);
    this.tickTimer = this.connectTimer = null;
    this.pingAt = 0;
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
