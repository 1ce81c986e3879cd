// A minimal raw WebSocket client over net.Socket, for frames `ws` refuses to produce
// (lying length headers, half frames). Handshake checks Sec-WebSocket-Accept (RFC 6455 4.2.2).
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Encodes one client frame (masked unless mask:false). declaredLength lies about the length. */
export function encodeFrame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, declaredLength } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = declaredLength ?? data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, masked]);
}

/**
 * Opens a TCP connection, performs the upgrade and returns
 * { sock, frames, write(buf), send(opcode, payload, opts), next(pred, ms), closeFrame, ended }.
 * closeFrame resolves with { code, reason } when the server sends a close frame, or null if the
 * TCP connection ends without one.
 */
export function rawWs(srv, { path = '/v1/ws', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    const expect = createHash('sha1').update(key + GUID).digest('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const frames = [];
    const waiters = [];
    let closeResolve;
    const closeFrame = new Promise((r) => { closeResolve = r; });
    let endResolve;
    const ended = new Promise((r) => { endResolve = r; });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('raw ws handshake timeout')); }, timeoutMs);

    const parse = () => {
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf[1] & 0x80) off += 4; // servers must not mask, but be tolerant while parsing
        if (buf.length < off + len) return;
        const f = { fin: !!(buf[0] & 0x80), opcode: buf[0] & 0x0f, masked: !!(buf[1] & 0x80), payload: buf.subarray(off, off + len) };
        buf = buf.subarray(off + len);
        if (f.opcode === 8) {
          const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
          closeResolve({ code, reason: f.payload.subarray(2).toString('utf8') });
        }
        if (f.opcode === 1) { try { f.json = JSON.parse(f.payload.toString('utf8')); } catch { /* not JSON */ } }
        const w = waiters.findIndex((x) => x.pred(f));
        if (w >= 0) { const [x] = waiters.splice(w, 1); clearTimeout(x.t); x.resolve(f); } else frames.push(f);
      }
    };

    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString('latin1');
        buf = buf.subarray(i + 4);
        clearTimeout(timer);
        if (!/^HTTP\/1\.1 101/.test(head)) { sock.destroy(); reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`)); return; }
        const acc = /\r\nsec-websocket-accept:\s*(\S+)/i.exec(head);
        if (!acc || acc[1] !== expect) { sock.destroy(); reject(new Error(`bad Sec-WebSocket-Accept in:\n${head}`)); return; }
        upgraded = true;
        resolve(api);
      }
      parse();
    });
    sock.on('error', () => { /* resets are expected in these tests */ });
    sock.on('close', () => { closeResolve(null); endResolve(); for (const w of waiters.splice(0)) { clearTimeout(w.t); w.reject(new Error('raw ws: connection closed')); } });
    sock.on('connect', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });

    const api = {
      sock,
      frames,
      closeFrame,
      ended,
      write: (b) => new Promise((r) => sock.write(b, () => r())),
      send: (opcode, payload, opts) => api.write(encodeFrame(opcode, payload, opts)),
      sendJson: (obj) => api.write(encodeFrame(1, JSON.stringify(obj))),
      next(pred = () => true, ms = 5000) {
        const i = frames.findIndex(pred);
        if (i >= 0) return Promise.resolve(frames.splice(i, 1)[0]);
        return new Promise((res, rej) => {
          const w = { pred, resolve: res, reject: rej };
          w.t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error(`raw ws: no matching frame in ${ms} ms`)); }, ms);
          waiters.push(w);
        });
      },
      destroy: () => sock.destroy(),
    };
  });
}
