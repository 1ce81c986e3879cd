// PROTOCOL.md section 7 and issue 3: image sharing end to end against a real ternd. Uploads
// (streamed, validated, refused early), send with media, fetches (ETag, 304, Range, thumbnails),
// access control, lifetime (fetch counting, TTL sweep), restart consistency, quota, metrics,
// and a concurrency / throughput measurement that prints figures without asserting them.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { unlinkSync } from 'node:fs';
import path from 'node:path';
import { startServer, FAST_LIMITS, waitFor, sleep, CLUSTER_NODES } from './lib/server.mjs';
import { request, newUser, newDevice, metric, register, uniqueName } from './lib/api.mjs';
import { online, closeAll } from './lib/client.mjs';
import {
  makePng, samples, sha256, jpegSize, httpBytes, upload, getMedia, rawUpload, mediaFiles, objectBytes,
  objectFilesOf, percentile,
} from './lib/media.mjs';

const ID_RE = /^[a-z2-7]{26}$/;
const MiB = 1 << 20;

function assertError(r, status, code) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${r.body?.toString('utf8').slice(0, 300)}`);
  assert.equal(r.json?.error?.code, code, r.body?.toString('utf8'));
}

/** Sends one message with media and waits for its answer (sent or error frame). */
async function sendMedia(c, id, to, mediaId, body) {
  const f = { type: 'send', id, to, media: { media_id: mediaId } };
  if (body !== undefined) f.body = body;
  c.send(f);
  return c.next((x) => x.id === id && (x.type === 'sent' || x.type === 'error'), 10000);
}

/** The four types with their bytes and expected dimensions. */
function fourTypes() {
  const s = samples();
  return [
    { name: 'JPEG', ...s.jpeg },
    { name: 'PNG', mime: 'image/png', bytes: makePng(800, 600), width: 800, height: 600 },
    { name: 'WebP', ...s.webp },
    { name: 'GIF', ...s.gif },
  ];
}

describe('media', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS] }); });
  after(async () => { await srv?.close(); });

  test('round trip for JPEG, PNG, WebP and GIF: upload, send, receive, fetch, thumb, 304, Range', async () => {
    const alice = await newUser(srv, 'rt_a');
    const bob = await newUser(srv, 'rt_b');
    const ca = await online(srv, alice);
    const cb = await online(srv, bob);
    try {
      for (const [i, t] of fourTypes().entries()) {
        const up = await upload(srv, alice.token, t.bytes, t.mime);
        assert.equal(up.status, 201, `${t.name}: ${up.body}`);
        assert.deepEqual(Object.keys(up.json), ['media_id', 'mime', 'size', 'sha256', 'width', 'height']);
        assert.match(up.json.media_id, ID_RE);
        assert.equal(up.json.mime, t.mime);
        assert.equal(up.json.size, t.bytes.length);
        assert.equal(up.json.sha256, sha256(t.bytes));
        assert.notEqual(up.json.media_id, up.json.sha256);
        assert.equal(up.json.width, t.width, t.name);
        assert.equal(up.json.height, t.height, t.name);
        const id = up.json.media_id;

        // send: with a caption for the first two, media only for the others
        const caption = i < 2 ? `look ${t.name}` : undefined;
        const sent = await sendMedia(ca, `m-${i}`, bob.user, id, caption);
        assert.equal(sent.type, 'sent', JSON.stringify(sent));
        const msg = await cb.next({ type: 'msg', msg_id: sent.msg_id });
        assert.deepEqual(msg.media, up.json, `${t.name}: the envelope carries the metadata`);
        if (caption) assert.equal(msg.body, caption);
        else assert.equal(msg.body, undefined);
        cb.send({ type: 'ack', seq: msg.seq });

        // thumbnail: a JPEG at most 320 px on its longer side (these samples are larger)
        const th = await getMedia(srv, bob.token, id, { thumb: true });
        assert.equal(th.status, 200);
        assert.equal(th.headers['content-type'], 'image/jpeg');
        const dims = jpegSize(th.body);
        assert.ok(dims, `${t.name}: thumb is not a JPEG`);
        assert.equal(Math.max(dims.width, dims.height), 320, `${t.name}: thumb ${dims.width}x${dims.height}`);
        assert.ok(Math.abs(dims.width / dims.height - t.width / t.height) < 0.02, 'aspect ratio kept');
        assert.equal(th.headers.etag, `"${up.json.sha256}-t"`);

        // 304 with If-None-Match (original and thumb), also in a list and weak
        let r = await getMedia(srv, bob.token, id, { headers: { 'if-none-match': `"${up.json.sha256}"` } });
        assert.equal(r.status, 304);
        assert.equal(r.body.length, 0);
        assert.equal(r.headers.etag, `"${up.json.sha256}"`);
        r = await getMedia(srv, bob.token, id, { thumb: true, headers: { 'if-none-match': `"x", W/"${up.json.sha256}-t"` } });
        assert.equal(r.status, 304);
        // the thumb's tag does not match the original: a complete 200, which is bob's only
        // device fetching it, so this media is gone now; upload again for the rest
        r = await getMedia(srv, bob.token, id, { headers: { 'if-none-match': `"${up.json.sha256}-t"` } });
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(t.bytes));

        const up2 = await upload(srv, alice.token, t.bytes, t.mime);
        assert.equal(up2.status, 201);
        assert.equal(up2.json.sha256, up.json.sha256, 'same bytes, same hash');
        assert.notEqual(up2.json.media_id, id, 'a new id per upload');
        const id2 = up2.json.media_id;
        const sent2 = await sendMedia(ca, `m2-${i}`, bob.user, id2);
        assert.equal(sent2.type, 'sent');

        // Range: 206 with Content-Range; suffix and open-ended; past the end → 416
        r = await getMedia(srv, bob.token, id2, { headers: { range: 'bytes=0-99' } });
        assert.equal(r.status, 206);
        assert.equal(r.headers['content-range'], `bytes 0-99/${t.bytes.length}`);
        assert.equal(r.headers['content-length'], '100');
        assert.ok(r.body.equals(t.bytes.subarray(0, 100)));
        r = await getMedia(srv, bob.token, id2, { headers: { range: 'bytes=-10' } });
        assert.equal(r.status, 206);
        assert.ok(r.body.equals(t.bytes.subarray(t.bytes.length - 10)));
        r = await getMedia(srv, bob.token, id2, { headers: { range: `bytes=100-` } });
        assert.equal(r.status, 206);
        assert.ok(r.body.equals(t.bytes.subarray(100)));
        r = await getMedia(srv, bob.token, id2, { headers: { range: `bytes=${t.bytes.length}-` } });
        assert.equal(r.status, 416);
        assert.equal(r.headers['content-range'], `bytes */${t.bytes.length}`);
        assert.equal(r.json?.error?.code, 'range_not_satisfiable');
        // several ranges are ignored: the whole body (asked by the owner: a 200 from bob's
        // only device would count as his fetch and delete the media)
        r = await getMedia(srv, alice.token, id2, { headers: { range: 'bytes=0-1,5-6' } });
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(t.bytes));

        // the owner reads too (never counted); then bob's complete fetch: bytes and headers
        r = await getMedia(srv, alice.token, id2);
        assert.equal(r.status, 200);
        r = await getMedia(srv, bob.token, id2);
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(t.bytes), `${t.name}: bytes differ`);
        assert.equal(sha256(r.body), up.json.sha256);
        assert.equal(r.headers['content-type'], t.mime);
        assert.equal(r.headers['content-length'], String(t.bytes.length));
        assert.equal(r.headers.etag, `"${up.json.sha256}"`);
        assert.equal(r.headers['cache-control'], 'private, max-age=31536000, immutable');
        assert.equal(r.headers['accept-ranges'], 'bytes');
        assert.equal(r.headers['x-content-type-options'], 'nosniff');
        assert.equal(r.headers['content-security-policy'], 'sandbox');
      }
    } finally {
      await closeAll(ca, cb);
    }
  });

  test('HEAD gives the headers without the body and does not count as a fetch', async () => {
    const alice = await newUser(srv, 'hd_a');
    const bob = await newUser(srv, 'hd_b');
    const img = makePng(64, 64, { fill: 'noise' });
    const up = await upload(srv, alice.token, img, 'image/png');
    const ca = await online(srv, alice);
    try {
      assert.equal((await sendMedia(ca, 'h1', bob.user, up.json.media_id)).type, 'sent');
    } finally { await closeAll(ca); }
    const r = await httpBytes(srv, 'HEAD', `/v1/media/${up.json.media_id}`, { token: bob.token });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(img.length));
    assert.equal(r.body.length, 0);
    assert.equal((await getMedia(srv, bob.token, up.json.media_id)).status, 200, 'still there after HEAD');
  });

  test('bad input: mismatched type, truncated, corrupt, bomb, wrong Content-Type, no token → refused, temp dir clean', async () => {
    const alice = await newUser(srv, 'bad');
    const s = samples();
    const png = makePng(300, 200, { fill: 'noise' });

    // a PNG declared as image/jpeg (and a JPEG as image/png)
    assertError(await upload(srv, alice.token, png, 'image/jpeg'), 415, 'unsupported_media_type');
    assertError(await upload(srv, alice.token, s.jpeg.bytes, 'image/png'), 415, 'unsupported_media_type');
    assertError(await upload(srv, alice.token, s.gif.bytes, 'image/webp'), 415, 'unsupported_media_type');
    // truncated: inside the header, and half of the file
    assertError(await upload(srv, alice.token, png.subarray(0, 20), 'image/png'), 415, 'unsupported_media_type');
    for (const t of fourTypes()) {
      const half = t.bytes.subarray(0, t.bytes.length >> 1);
      assertError(await upload(srv, alice.token, half, t.mime), 415, 'unsupported_media_type');
    }
    // corrupt: the PNG's compressed data overwritten (its CRC no longer matches); a JPEG
    // with a bogus Huffman table; a WebP whose data after the header is garbage
    // (a compressible image: noise compresses to stored deflate blocks, which may decode
    // fine with other pixels, so a random image made this case pass now and then)
    const bad = Buffer.from(makePng(300, 200));
    bad.fill(0x5a, 100, 400);
    assertError(await upload(srv, alice.token, bad, 'image/png'), 415, 'unsupported_media_type');
    const badj = Buffer.from(s.jpeg.bytes);
    const dht = badj.indexOf(Buffer.from([0xff, 0xc4]));
    assert.ok(dht > 0);
    badj.fill(0xff, dht + 5, dht + 21);
    assertError(await upload(srv, alice.token, badj, 'image/jpeg'), 415, 'unsupported_media_type');
    const badw = Buffer.from(s.webp.bytes);
    for (let i = 30; i < badw.length; i++) badw[i] = (i * 17) & 0xff;
    assertError(await upload(srv, alice.token, badw, 'image/webp'), 415, 'unsupported_media_type');
    // text pretending to be an image
    assertError(await upload(srv, alice.token, Buffer.from('hello, not an image at all'), 'image/gif'), 415, 'unsupported_media_type');
    // a decompression bomb: a tiny PNG declaring 100000 x 100000 → 413 from the header alone
    const bomb = makePng(16, 16, { declared: { width: 100000, height: 100000 } });
    assert.ok(bomb.length < 1000);
    assertError(await upload(srv, alice.token, bomb, 'image/png'), 413, 'too_large');
    // 16385 px wide (over media.max_dimension) but tiny in pixels: also 413
    assertError(await upload(srv, alice.token, makePng(4, 4, { declared: { width: 16385, height: 1 } }), 'image/png'), 413, 'too_large');
    // Content-Types outside the four (and v1.1's opaque application/octet-stream, keys.test.mjs), or none
    assertError(await upload(srv, alice.token, png, 'image/svg+xml'), 415, 'unsupported_media_type');
    assertError(await upload(srv, alice.token, png, 'application/pdf'), 415, 'unsupported_media_type');
    assertError(await upload(srv, alice.token, png, undefined), 415, 'unsupported_media_type');
    // parameters and case in the Content-Type are fine
    assert.equal((await upload(srv, alice.token, png, 'Image/PNG; charset=binary')).status, 201);
    // no token, a bad token: 401 (before the body)
    assertError(await upload(srv, undefined, png, 'image/png'), 401, 'unauthorized');
    assertError(await upload(srv, 'not-a-token', png, 'image/png'), 401, 'unauthorized');
    // GET /v1/media and PUT on an id: 405
    assertError(await httpBytes(srv, 'GET', '/v1/media', { token: alice.token }), 405, 'method_not_allowed');
    assertError(await httpBytes(srv, 'PUT', '/v1/media', { token: alice.token, body: makePng(8, 8), headers: { 'content-type': 'image/png' } }), 405, 'method_not_allowed');

    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 0, { message: 'an empty media/tmp' });
    assert.equal((await request(srv, 'GET', '/healthz')).status, 200);
  });

  test('401 and 413 come before the body is read; 16 MiB + 1 byte → 413 and the server still serves', async () => {
    const alice = await newUser(srv, 'big');
    const head = (len, token, extra = '') => `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n` +
      `${token ? `Authorization: Bearer ${token}\r\n` : ''}Content-Length: ${len}\r\n${extra}\r\n`;
    // Only the head is sent: the answer must come without any body byte.
    let r = await rawUpload(srv, head(16 * MiB + 1, alice.token), [], { timeoutMs: 5000 });
    assert.equal(r.status, 413, r.text);
    assert.match(r.text, /"too_large"/);
    assert.notEqual(r.how, 'timeout');
    r = await rawUpload(srv, head(1000), [], { timeoutMs: 5000 });
    assert.equal(r.status, 401, r.text);
    // Exactly 16 MiB + 1 byte with node's http client sending all of it: it sees the 413.
    const body = Buffer.concat([makePng(8, 8), Buffer.alloc(16 * MiB + 1 - makePng(8, 8).length)]);
    assert.equal(body.length, 16 * MiB + 1);
    const big = await upload(srv, alice.token, body, 'image/png').catch((e) => ({ status: 0, error: e.message }));
    assert.equal(big.status, 413, JSON.stringify(big.error ?? big.json));
    // Chunked, past the limit: 413 as soon as it passes (the rest is never needed)
    const chunks = [makePng(8, 8)];
    for (let n = chunks[0].length; n <= 17 * MiB; n += 256 * 1024) chunks.push(Buffer.alloc(256 * 1024));
    const enc = chunks.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]));
    enc.push(Buffer.from('0\r\n\r\n'));
    r = await rawUpload(srv, `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nTransfer-Encoding: chunked\r\n\r\n`, enc, { timeoutMs: 20000 });
    assert.equal(r.status, 413, r.text.slice(0, 300));
    assert.equal((await request(srv, 'GET', '/healthz')).status, 200);
    // a normal upload still works
    assert.equal((await upload(srv, alice.token, makePng(50, 50), 'image/png')).status, 201);
    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 0, { message: 'an empty media/tmp' });
  });

  test('a chunked upload within the limit works', async () => {
    const alice = await newUser(srv, 'chunk');
    const img = makePng(400, 300, { fill: 'noise' });
    const parts = [];
    for (let i = 0; i < img.length; i += 7000) parts.push(img.subarray(i, i + 7000));
    const enc = parts.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]));
    enc.push(Buffer.from('0\r\n\r\n'));
    const r = await rawUpload(srv, `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, enc, { gapMs: 1 });
    assert.equal(r.status, 201, r.text.slice(0, 300));
    const j = JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4));
    assert.equal(j.sha256, sha256(img));
    assert.equal(j.size, img.length);
  });

  test('keep-alive: pipelined media GETs, and requests after an upload on the same connection', async () => {
    const alice = await newUser(srv, 'ka');
    const img = makePng(500, 400, { fill: 'noise' }); // several chunks
    const small = makePng(20, 20, { fill: 'noise' });
    // an upload, then a GET of /healthz on the same connection, sent back to back
    const head = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${small.length}\r\n\r\n`;
    let r = await rawUpload(srv, Buffer.concat([Buffer.from(head), small, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]), [], { timeoutMs: 5000 });
    assert.equal(r.status, 201, r.text);
    assert.match(r.text, /\r\n\r\n\{"media_id":[^]*HTTP\/1\.1 200 OK[^]*\{"status":"ok"\}$/);
    const up = await upload(srv, alice.token, img, 'image/png');
    const id = up.json.media_id;
    // three requests in one write: the original, a range of it, the thumbnail
    const get = (extra = '') => `GET /v1/media/${id}${extra} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\n`;
    r = await rawUpload(srv, `${get()}\r\n${get()}Range: bytes=10-19\r\n\r\n${get('/thumb')}Connection: close\r\n\r\n`, [], { timeoutMs: 5000 });
    const raw = Buffer.from(r.text, 'latin1');
    const first = raw.indexOf('\r\n\r\n') + 4;
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(raw.subarray(first, first + img.length).equals(img), 'the first body');
    const rest = raw.subarray(first + img.length).toString('latin1');
    assert.match(rest, /^HTTP\/1\.1 206 [^]*Content-Range: bytes 10-19\/\d+\r\n[^]*\r\n\r\n/);
    const second = raw.indexOf('\r\n\r\n', first + img.length) + 4;
    assert.ok(raw.subarray(second, second + 10).equals(img.subarray(10, 20)), 'the range');
    assert.match(raw.subarray(second + 10).toString('latin1'), /^HTTP\/1\.1 200 [^]*Content-Type: image\/jpeg/);
    assert.equal(r.how !== 'timeout', true, 'closed after the last (Connection: close)');
  });

  test('path tricks, no token, a bad token and someone else\'s media → 404', async () => {
    const alice = await newUser(srv, 'acl_a');
    const carol = await newUser(srv, 'acl_c');
    const img = makePng(40, 30, { fill: 'noise' });
    const up = await upload(srv, alice.token, img, 'image/png');
    assert.equal(up.status, 201);
    const id = up.json.media_id;
    assert.equal((await getMedia(srv, alice.token, id)).status, 200, 'the owner reads it');
    const tricks = [
      `/v1/media/../v1/me`, `/v1/media/..%2f..%2fetc%2fpasswd`, `/v1/media/%2e%2e/%2e%2e/etc/passwd`,
      `/v1/media/${id}/../${id}`, `/v1/media/${id}%00`, `/v1/media/${id}%00/thumb`, `/v1/media/%00`,
      `/v1/media/${id.toUpperCase()}`, `/v1/media/${up.json.sha256}`, `/v1/media/${id}/thumb/x`,
      `/v1/media/${id}/`, `/v1/media/${id}x`, `/v1/media/${id.slice(1)}`, `/v1/media//${id}`,
      `/v1/media/${id}/..`, `/v1/media/${encodeURIComponent(id)}%2fthumb`,
    ];
    for (const p of tricks) {
      const r = await httpBytes(srv, 'GET', p, { token: alice.token });
      assertError(r, 404, 'not_found');
    }
    // a raw NUL byte in the request line is not HTTP at all: 400 from the parser, never a file
    for (const p of [`/v1/media/${id}\0`, `/v1/media/${id}\0/thumb`, `/v1/media/\0${id}`]) {
      const raw = await rawUpload(srv, `GET ${p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\n\r\n`);
      assert.equal(raw.status, 400, raw.text);
    }
    // a query string is ignored
    assert.equal((await httpBytes(srv, 'GET', `/v1/media/${id}?x=1`, { token: alice.token })).status, 200);

    // no token, a bad token, someone else: the same 404 as an unknown id
    for (const token of [undefined, 'nope', carol.token]) {
      assertError(await getMedia(srv, token, id), 404, 'not_found');
      assertError(await getMedia(srv, token, id, { thumb: true }), 404, 'not_found');
    }
    assertError(await getMedia(srv, alice.token, 'aaaaaaaaaaaaaaaaaaaaaaaaaa'), 404, 'not_found');
  });

  test('send: someone else\'s media → no_such_media; a granted user may forward it', async () => {
    const alice = await newUser(srv, 'fw_a');
    const bob = await newUser(srv, 'fw_b');
    const carol = await newUser(srv, 'fw_c');
    const up = await upload(srv, alice.token, makePng(32, 32, { fill: 'noise' }), 'image/png');
    const id = up.json.media_id;
    const cb = await online(srv, bob);
    const cc = await online(srv, carol);
    try {
      let a = await sendMedia(cc, 'x1', bob.user, id, 'mine now?');
      assert.equal(a.type, 'error');
      assert.equal(a.code, 'no_such_media');
      a = await sendMedia(cb, 'x2', carol.user, id);
      assert.equal(a.code, 'no_such_media', 'bob has no grant yet');
      a = await sendMedia(cb, 'x3', carol.user, 'aaaaaaaaaaaaaaaaaaaaaaaaaa');
      assert.equal(a.code, 'no_such_media');
      // alice sends it to bob; now bob may forward it to carol
      const ca = await online(srv, alice);
      assert.equal((await sendMedia(ca, 'x4', bob.user, id)).type, 'sent');
      await closeAll(ca);
      assert.equal((await getMedia(srv, carol.token, id)).status, 404);
      a = await sendMedia(cb, 'x5', carol.user, id, 'fwd');
      assert.equal(a.type, 'sent', JSON.stringify(a));
      const m = await cc.next({ type: 'msg', msg_id: a.msg_id });
      assert.equal(m.media.media_id, id);
      assert.equal((await getMedia(srv, carol.token, id, { thumb: true })).status, 200);
    } finally {
      await closeAll(cb, cc);
    }
  });

  test('lifetime: deleted once every recipient device fetched (not by thumb, 206, 304, HEAD or the owner)', async () => {
    const alice = await newUser(srv, 'lt_a');
    const bob = await newUser(srv, 'lt_b', 'phone');
    const bob2 = await newDevice(srv, bob, 'laptop');
    const img = makePng(120, 90, { fill: 'noise' }); // unique bytes: no other test shares the object
    // in a cluster (TERN_TEST_CLUSTER) the gauge and the files are per node: only the
    // lifetime is checked there, through the answers
    const local = !CLUSTER_NODES;
    const before = local ? await metric(srv, 'tern_media_bytes') : 0;
    const up = await upload(srv, alice.token, img, 'image/png');
    const id = up.json.media_id;
    const sha = up.json.sha256;
    if (local) {
      assert.deepEqual(objectFilesOf(srv.dataDir, sha), [sha, `${sha}.thumb.jpg`]);
      const grown = await metric(srv, 'tern_media_bytes');
      assert.ok(grown > before + img.length, `tern_media_bytes ${before} → ${grown}`);
    }

    const ca = await online(srv, alice);
    try { assert.equal((await sendMedia(ca, 'l1', bob.user, id, 'two devices')).type, 'sent'); } finally { await closeAll(ca); }

    const full = async (tok) => { const r = await getMedia(srv, tok, id); assert.equal(r.status, 200); assert.ok(r.body.equals(img)); };
    await full(bob.token);
    await full(bob.token); // the same device twice counts once
    await full(alice.token); // the owner never counts
    assert.equal((await getMedia(srv, bob2.token, id, { thumb: true })).status, 200);
    assert.equal((await getMedia(srv, bob2.token, id, { headers: { range: 'bytes=0-' } })).status, 206);
    assert.equal((await getMedia(srv, bob2.token, id, { headers: { 'if-none-match': `"${sha}"` } })).status, 304);
    assert.equal((await httpBytes(srv, 'HEAD', `/v1/media/${id}`, { token: bob2.token })).status, 200);
    await sleep(100);
    if (local) assert.deepEqual(objectFilesOf(srv.dataDir, sha), [sha, `${sha}.thumb.jpg`], 'still on disk: bob2 has not fetched');
    else assert.equal((await getMedia(srv, alice.token, id)).status, 200, 'still there: bob2 has not fetched');
    await full(bob2.token);
    if (local) await waitFor(() => objectFilesOf(srv.dataDir, sha).length === 0, { message: 'the object files to go' });
    await waitFor(async () => (await getMedia(srv, alice.token, id)).status === 404, { message: 'deleted' });
    assertError(await getMedia(srv, alice.token, id), 404, 'not_found');
    if (local) await waitFor(async () => (await metric(srv, 'tern_media_bytes')) <= before, { message: 'tern_media_bytes back down' });
  });

  test('a message to a user with no device: the first device to log in may fetch it', async () => {
    const alice = await newUser(srv, 'nd_a');
    const bob = await newUser(srv, 'nd_b');
    assert.equal((await request(srv, 'POST', '/v1/logout', { token: bob.token })).status, 204);
    const img = makePng(30, 30, { fill: 'noise' });
    const up = await upload(srv, alice.token, img, 'image/png');
    const ca = await online(srv, alice);
    try { assert.equal((await sendMedia(ca, 'n1', bob.user, up.json.media_id)).type, 'sent'); } finally { await closeAll(ca); }
    const b2 = await newDevice(srv, bob, 'new');
    const cb = await online(srv, b2);
    try {
      assert.equal(cb.initial.find((e) => e.type === 'msg')?.media?.media_id, up.json.media_id);
    } finally { await closeAll(cb); }
    const r = await getMedia(srv, b2.token, up.json.media_id);
    assert.equal(r.status, 200);
    await waitFor(() => objectFilesOf(srv.dataDir, up.json.sha256).length === 0, { message: 'deleted after the one fetch' });
  });

  test('identical bytes are stored once; the files go with the last record', { skip: CLUSTER_NODES ? 'files and the gauge are per node (PROTOCOL.md 12)' : false }, async () => {
    const alice = await newUser(srv, 'dd_a');
    const img = makePng(70, 50, { fill: 'noise' });
    const [u1, u2] = await Promise.all([upload(srv, alice.token, img, 'image/png'), upload(srv, alice.token, img, 'image/png')]);
    assert.equal(u1.status, 201);
    assert.equal(u2.status, 201);
    assert.notEqual(u1.json.media_id, u2.json.media_id);
    assert.deepEqual(objectFilesOf(srv.dataDir, u1.json.sha256), [u1.json.sha256, `${u1.json.sha256}.thumb.jpg`]);
  });

  test('tern_media_bytes equals the bytes under media/objects', { skip: CLUSTER_NODES ? 'files and the gauge are per node (PROTOCOL.md 12)' : false }, async () => {
    await waitFor(async () => (await metric(srv, 'tern_media_bytes')) === objectBytes(srv.dataDir),
      { message: 'tern_media_bytes == du media/objects' });
  });
});

describe('media: media.min_upload_rate', () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--media-upload-timeout', '1s', '--media-min-upload-rate', '50KiB'] }); });
  after(async () => { await srv?.close(); });

  test('a trickle under the minimum average rate is cut with 408 once upload_timeout old; a normal upload is not', async () => {
    const alice = await newUser(srv, 'trk');
    const img = makePng(300, 300, { fill: 'noise' });
    const head = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${img.length}\r\n\r\n`;
    // 1,000 bytes every 100 ms (10 KB/s): never idle for media.upload_timeout, but slow
    const parts = [];
    for (let i = 0; i < 60; i++) parts.push(img.subarray(i * 1000, (i + 1) * 1000));
    const started = Date.now();
    const r = await rawUpload(srv, head, parts, { gapMs: 100, timeoutMs: 15000 });
    const took = Date.now() - started;
    assert.equal(r.status, 408, r.text);
    assert.match(r.text, /"request_timeout"/);
    assert.ok(took >= 900 && took < 5000, `cut at ${took} ms: after media.upload_timeout, well before the last byte`);
    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 0, { message: 'the temp file to go' });
    const ok = await upload(srv, alice.token, img, 'image/png');
    assert.equal(ok.status, 201, ok.text);
  });
});

describe('media: slow uploads and timeouts', () => {
  let srv;
  // http.request_timeout shorter than media.upload_timeout: an upload is timed by the latter
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--media-upload-timeout', '700ms', '--http-request-timeout', '300ms'] }); });
  after(async () => { await srv?.close(); });

  test('an upload that stops sending times out: 408, closed, temp file removed', { skip: CLUSTER_NODES ? 'the temp file is on the node that took the upload' : false }, async () => {
    const alice = await newUser(srv, 'slow');
    const img = makePng(300, 300, { fill: 'noise' });
    const head = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${img.length}\r\n\r\n`;
    const started = Date.now();
    const p = rawUpload(srv, head, [img.subarray(0, 5000)], { timeoutMs: 10000 });
    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 1, { message: 'the temp file of the upload' });
    const r = await p;
    assert.equal(r.status, 408, r.text);
    assert.match(r.text, /"request_timeout"/);
    assert.match(r.text, /Connection: close/i);
    assert.notEqual(r.how, 'timeout', 'the server closes the connection');
    assert.ok(Date.now() - started >= 600, 'not before media.upload_timeout');
    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 0, { message: 'the temp file to go' });
    // a head with no body byte at all times out the same way
    const r2 = await rawUpload(srv, head, [], { timeoutMs: 10000 });
    assert.equal(r2.status, 408);
    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 0, { message: 'the temp file to go' });
  });

  test('a slow upload that keeps sending is not cut', async () => {
    const alice = await newUser(srv, 'slow2');
    const img = makePng(200, 200, { fill: 'noise' });
    const head = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${img.length}\r\nConnection: close\r\n\r\n`;
    const parts = [];
    for (let i = 0; i < img.length; i += Math.ceil(img.length / 6)) parts.push(img.subarray(i, i + Math.ceil(img.length / 6)));
    // 3 s in all, idle 500 ms at a time: over http.request_timeout, under media.upload_timeout
    const r = await rawUpload(srv, head, parts, { gapMs: 500, timeoutMs: 15000 });
    assert.equal(r.status, 201, r.text);
  });

  test('a client that goes away mid-upload leaves no temp file', async () => {
    const alice = await newUser(srv, 'gone');
    const img = makePng(300, 300, { fill: 'noise' });
    const head = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${img.length}\r\n\r\n`;
    const r = await rawUpload(srv, head, [img.subarray(0, 10000)], { timeoutMs: 300 });
    assert.equal(r.how, 'timeout'); // we hung up first
    await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length === 0, { message: 'the temp file to go' });
  });
});

describe('media: TTL sweep, quota', () => {
  test('media.unsent_ttl and media.ttl expire media; the sweep frees the bytes', async () => {
    const srv = await startServer({ args: [...FAST_LIMITS, '--media-ttl', '2500ms', '--media-unsent-ttl', '800ms', '--media-sweep-interval', '100ms'] });
    try {
      const alice = await newUser(srv, 'ttl_a');
      const bob = await newUser(srv, 'ttl_b');
      const unsent = await upload(srv, alice.token, makePng(50, 50, { fill: 'noise' }), 'image/png');
      const sent = await upload(srv, alice.token, makePng(60, 50, { fill: 'noise' }), 'image/png');
      const t0 = Date.now();
      const ca = await online(srv, alice);
      try { assert.equal((await sendMedia(ca, 't1', bob.user, sent.json.media_id)).type, 'sent'); } finally { await closeAll(ca); }
      await waitFor(() => objectFilesOf(srv.dataDir, unsent.json.sha256).length === 0, { timeoutMs: 5000, message: 'the unsent media to expire' });
      assertError(await getMedia(srv, alice.token, unsent.json.media_id), 404, 'not_found');
      if (Date.now() - t0 < 2000) {
        assert.equal((await getMedia(srv, bob.token, sent.json.media_id, { thumb: true })).status, 200, 'a sent media lives for media.ttl');
      }
      await waitFor(() => objectFilesOf(srv.dataDir, sent.json.sha256).length === 0, { timeoutMs: 6000, message: 'the sent media to expire' });
      assertError(await getMedia(srv, bob.token, sent.json.media_id), 404, 'not_found');
      assert.equal(await metric(srv, 'tern_media_bytes'), 0);
      assert.deepEqual(mediaFiles(srv.dataDir, 'objects'), []);
    } finally {
      await srv.close();
    }
  });

  test('quota: past media.quota_bytes_per_hour → 429 rate_limited with Retry-After', { skip: CLUSTER_NODES ? 'the quota is counted per node (PROTOCOL.md 12)' : false }, async () => {
    const srv = await startServer({ args: [...FAST_LIMITS, '--media-quota-bytes-per-hour', '100KiB'] });
    try {
      const alice = await newUser(srv, 'q_a');
      const bob = await newUser(srv, 'q_b');
      const img = makePng(120, 120, { fill: 'noise', level: 0 }); // about 43 KiB
      assert.equal((await upload(srv, alice.token, img, 'image/png')).status, 201);
      assert.equal((await upload(srv, alice.token, makePng(120, 120, { fill: 'noise', level: 0 }), 'image/png')).status, 201);
      const r = await upload(srv, alice.token, makePng(120, 120, { fill: 'noise', level: 0 }), 'image/png');
      assertError(r, 429, 'rate_limited');
      const ra = Number(r.headers['retry-after']);
      assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 3600, `Retry-After: ${r.headers['retry-after']}`);
      // per user: bob is not affected
      assert.equal((await upload(srv, bob.token, img, 'image/png')).status, 201);
    } finally {
      await srv.close();
    }
  });
});

describe('media: restart', () => {
  test('kill -9 during uploads, restart: 201\'d media still there, no orphans, no temp files, no dangling records', { skip: CLUSTER_NODES ? 'checks one node\'s disk (cluster_media.test.mjs kills a node)' : false }, async () => {
    const srv = await startServer({ args: [...FAST_LIMITS] });
    try {
      const alice = await newUser(srv, 'rs_a');
      const bob = await newUser(srv, 'rs_b');
      // some complete uploads, one of them sent to bob
      const done = [];
      for (let i = 0; i < 6; i++) {
        const img = makePng(100 + i, 80, { fill: 'noise' });
        const r = await upload(srv, alice.token, img, 'image/png');
        assert.equal(r.status, 201);
        done.push({ ...r.json, bytes: img });
      }
      const ca = await online(srv, alice);
      try { assert.equal((await sendMedia(ca, 'r1', bob.user, done[0].media_id)).type, 'sent'); } finally { await closeAll(ca); }
      // uploads in flight when the server dies: half-sent bodies and bigger ones being decoded
      const slow = [];
      for (let i = 0; i < 5; i++) {
        const img = makePng(600, 400, { fill: 'noise' });
        const head = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${img.length}\r\n\r\n`;
        slow.push(rawUpload(srv, head, [img.subarray(0, img.length >> 1)], { timeoutMs: 4000 }));
      }
      const racing = [];
      for (let i = 0; i < 6; i++) racing.push(upload(srv, alice.token, makePng(900, 700, { fill: 'noise' }), 'image/png').catch(() => null));
      await waitFor(() => mediaFiles(srv.dataDir, 'tmp').length >= 5, { message: 'uploads in flight' });
      await srv.kill9();
      const raced = (await Promise.all(racing)).filter((r) => r && r.status === 201).map((r) => r.json);
      await Promise.all(slow);

      await srv.restart();
      await waitFor(() => /msg="?media recovered"?/.test(srv.stderr().split('----- restart -----').pop()), { message: 'recovery to finish' });
      // every media answered 201 before the kill is still readable by its owner, byte for byte
      for (const m of done) {
        const r = await getMedia(srv, alice.token, m.media_id);
        assert.equal(r.status, 200, m.media_id);
        assert.ok(r.body.equals(m.bytes));
        assert.equal((await getMedia(srv, alice.token, m.media_id, { thumb: true })).status, 200);
      }
      for (const m of raced) assert.equal((await getMedia(srv, alice.token, m.media_id)).status, 200, 'a 201 that raced the kill');
      // the grant survived: bob reads the one sent to him
      assert.equal((await getMedia(srv, bob.token, done[0].media_id, { thumb: true })).status, 200);
      // No temp files. Every object file belongs to a record: files come in pairs (original and
      // thumbnail), one pair per record kept (every image here is unique), and the gauge counts
      // exactly what is on disk. An upload whose record became durable just before the kill,
      // without its 201 reaching us, is a legitimate extra pair (it expires as never sent).
      assert.deepEqual(mediaFiles(srv.dataDir, 'tmp'), []);
      const files = mediaFiles(srv.dataDir, 'objects');
      for (const m of [...done, ...raced]) {
        assert.ok(files.includes(path.join(m.sha256.slice(0, 2), m.sha256)), `original of ${m.media_id}`);
        assert.ok(files.includes(path.join(m.sha256.slice(0, 2), `${m.sha256}.thumb.jpg`)), `thumb of ${m.media_id}`);
      }
      const originals = files.filter((f) => !f.endsWith('.thumb.jpg'));
      assert.deepEqual(files, originals.flatMap((f) => [f, `${f}.thumb.jpg`]).sort(), 'files in pairs: no orphan');
      const kept = Number(/msg="?media recovered"? records=(\d+)/.exec(srv.stderr().split('----- restart -----').pop())[1]);
      assert.equal(kept, originals.length, 'one record per pair: no orphan, no dangling record');
      assert.ok(kept - done.length - raced.length <= racing.length);
      assert.equal(await metric(srv, 'tern_media_bytes'), objectBytes(srv.dataDir));

      // a record whose file was lost (removed by hand while the server was down) is dropped
      // at start-up with its other file: no dangling metadata
      await srv.stop();
      const lost = done[1];
      unlinkSync(path.join(srv.dataDir, 'media', 'objects', lost.sha256.slice(0, 2), lost.sha256));
      await srv.restart();
      await waitFor(() => /msg="?media recovered"?.*dropped=1/.test(srv.stderr().split('----- restart -----').pop()), { message: 'recovery to drop the record' });
      assertError(await getMedia(srv, alice.token, lost.media_id, { thumb: true }), 404, 'not_found');
      assert.deepEqual(objectFilesOf(srv.dataDir, lost.sha256), []);
      assert.equal((await getMedia(srv, alice.token, done[2].media_id)).status, 200);
      assert.equal(await metric(srv, 'tern_media_bytes'), objectBytes(srv.dataDir));
      // and it stays dropped on the next start (its KV record was deleted)
      await srv.stop();
      await srv.restart();
      await waitFor(() => /msg="?media recovered"?/.test(srv.stderr().split('----- restart -----').pop()), { message: 'recovery' });
      assert.match(srv.stderr().split('----- restart -----').pop(), /media recovered.*dropped=0/);
      assertError(await getMedia(srv, alice.token, lost.media_id), 404, 'not_found');
    } finally {
      await srv.close();
    }
  });
});

/**
 * One request on a raw socket, timed until its response is complete (by Content-Length): node's
 * http module reads a 5 MiB body an order of magnitude slower than the server sends it, so it
 * would measure itself. Resolves with { ms, status, body }.
 */
function timedRaw(srv, head, body) {
  return new Promise((resolve, reject) => {
    const s = net.connect(srv.port, '127.0.0.1');
    const parts = [];
    let n = 0;
    let need = -1;
    let t0;
    s.on('data', (d) => {
      parts.push(d);
      n += d.length;
      if (need < 0) {
        const all = Buffer.concat(parts);
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) return;
        const m = /\r\ncontent-length: (\d+)/i.exec(all.subarray(0, end).toString('latin1'));
        need = end + 4 + (m ? Number(m[1]) : 0);
      }
      if (n >= need) {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const all = Buffer.concat(parts);
        s.destroy();
        const hl = all.indexOf('\r\n\r\n');
        resolve({ ms, status: Number(all.subarray(9, 12).toString()), body: all.subarray(hl + 4, need) });
      }
    });
    s.on('error', reject);
    s.on('connect', () => {
      t0 = process.hrtime.bigint();
      s.write(body ? Buffer.concat([Buffer.from(head), body]) : head);
    });
  });
}

describe('media: measurements (printed, not asserted)', () => {
  test('100 uploads in flight while messages flow; 5 MiB upload/download throughput; thumbnail time', { timeout: 300000 }, async (t) => {
    // TERN_MEDIA_MEASURE_ARGS adds server flags (e.g. "--media-decode-jobs 1") for comparisons.
    const extra = (process.env.TERN_MEDIA_MEASURE_ARGS || '').split(/\s+/).filter(Boolean);
    const srv = await startServer({ args: [...FAST_LIMITS, ...extra] });
    try {
      const log = (s) => { t.diagnostic(s); console.log(`# ${s}`); };
      // a pair sending to each other, measuring send → sent at the client
      const a = await newUser(srv, 'ms_a');
      const b = await newUser(srv, 'ms_b');
      const ca = await online(srv, a);
      const cb = await online(srv, b);
      cb.tap = (f) => { if (f.type === 'msg') cb.send({ type: 'ack', seq: f.seq }); return true; };
      let n = 0;
      const flow = async (ms) => {
        const lat = [];
        const end = Date.now() + ms;
        while (Date.now() < end) {
          const id = `p${n++}`;
          const t0 = process.hrtime.bigint();
          ca.send({ type: 'send', id, to: b.user, body: 'ping' });
          await ca.next({ type: 'sent', id }, 10000);
          lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
          await sleep(2);
        }
        return lat;
      };
      const stats = (xs) => `n=${xs.length} p50=${percentile(xs, 50).toFixed(2)} ms p99=${percentile(xs, 99).toFixed(2)} ms max=${Math.max(...xs).toFixed(2)} ms`;
      await flow(500); // warm up
      const base = await flow(3000);

      // 100 users, each uploading one ~1 MiB PNG (noise) at once, while the pair keeps going
      const users = await Promise.all(Array.from({ length: 100 }, (_, i) => newUser(srv, `up${i}`)));
      const imgs = users.map(() => makePng(600, 580, { fill: 'noise' }));
      const t0 = Date.now();
      let uploadsDone = 0;
      const ups = Promise.all(users.map((u, i) => upload(srv, u.token, imgs[i], 'image/png').then((r) => { uploadsDone++; return r; })));
      const during = [];
      while (uploadsDone < 100) during.push(...await flow(200));
      const res = await ups;
      const upMs = Date.now() - t0;
      assert.ok(res.every((r) => r.status === 201), `uploads: ${res.map((r) => r.status).join(',')}`);
      log(`send→sent without uploads: ${stats(base)}`);
      log(`send→sent during 100 concurrent uploads (${(imgs[0].length / MiB).toFixed(2)} MiB PNG each, all done in ${upMs} ms): ${stats(during)}`);

      // 5 MiB PNG: upload (whole pipeline: stream, hash, fsync, decode, thumbnail) and download
      const big = [];
      for (let i = 0; i < 5; i++) big.push(makePng(1300, 1344, { fill: 'noise', level: 0 }));
      const size = big[0].length;
      const post = `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer ${a.token}\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`;
      const upTimes = [];
      const ids = [];
      for (const img of big) {
        const r = await timedRaw(srv, post, img);
        assert.equal(r.status, 201);
        upTimes.push(r.ms);
        ids.push(JSON.parse(r.body.toString()).media_id);
      }
      // the same bytes again: deduplicated, no decode → the difference is the decode + thumbnail
      const dupTimes = [];
      for (const img of big) {
        const r = await timedRaw(srv, post, img);
        assert.equal(r.status, 201);
        dupTimes.push(r.ms);
      }
      const downTimes = [];
      for (let k = 0; k < 4; k++) {
        for (const id of ids) {
          const r = await timedRaw(srv, `GET /v1/media/${id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}\r\nConnection: close\r\n\r\n`);
          assert.equal(r.status, 200);
          assert.equal(r.body.length, size);
          downTimes.push(r.ms);
        }
      }
      const med = (xs) => percentile(xs, 50);
      const mibs = (ms) => (size / MiB / (ms / 1000)).toFixed(0);
      log(`5 MiB upload (${(size / MiB).toFixed(2)} MiB 1300x1344 PNG, new content): median ${med(upTimes).toFixed(1)} ms = ${mibs(med(upTimes))} MiB/s; best ${Math.min(...upTimes).toFixed(1)} ms = ${mibs(Math.min(...upTimes))} MiB/s`);
      log(`5 MiB upload of bytes already stored (no decode): median ${med(dupTimes).toFixed(1)} ms = ${mibs(med(dupTimes))} MiB/s`);
      log(`validation + thumbnail per image (new − dedup, median): ${(med(upTimes) - med(dupTimes)).toFixed(1)} ms`);
      log(`5 MiB download: median ${med(downTimes).toFixed(1)} ms = ${mibs(med(downTimes))} MiB/s; best ${Math.min(...downTimes).toFixed(1)} ms = ${mibs(Math.min(...downTimes))} MiB/s`);
      const jpg = samples().jpeg.bytes;
      const jt = [];
      for (let i = 0; i < 10; i++) {
        // a JPEG re-uploaded with one byte appended after EOI is new content each time
        const b = Buffer.concat([jpg, Buffer.from([i])]);
        const r = await timedRaw(srv, `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nAuthorization: Bearer ${a.token}\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`, b);
        assert.equal(r.status, 201);
        jt.push(r.ms);
      }
      log(`640x480 JPEG (${(jpg.length / 1024).toFixed(0)} KiB) upload incl. validation + thumbnail: median ${med(jt).toFixed(1)} ms`);
      await closeAll(ca, cb);
    } catch (e) {
      // one sanitized CI run saw an upload here closed with no answer ("socket hang up"),
      // not seen again in runs by hand: say what ternd said
      e.message += `\nternd's last lines:\n${srv.stderr().split('\n').slice(-40).join('\n')}`;
      throw e;
    } finally {
      await srv.close();
    }
  });
});

// A node that learns other nodes' directory changes 300 ms late (nats.test_feed_delay, a
// test setting): an upload there with a token registered through the other node a moment
// before must wait for the token, not get 401 (without the wait, every case here is 401).
describe('media: a token made a moment ago on another node', { skip: CLUSTER_NODES ? false : 'needs a cluster (TERN_TEST_CLUSTER)' }, () => {
  let srv;
  before(async () => { srv = await startServer({ args: [...FAST_LIMITS, '--nats-test-feed-delay', '300ms'] }); });
  after(async () => { await srv?.close(); });

  test('an upload with a token the node has not learned yet is taken; a bad one is still 401', async () => {
    const nodes = srv.nodes;
    // register() alone (newUser waits until every node knows the token)
    const fresh = async (prefix) => {
      const r = await register(nodes[0], uniqueName(prefix));
      assert.equal(r.status, 201, r.text);
      return r.body;
    };
    for (let i = 0; i < 3; i++) {
      const u = await fresh('upnew');
      const r = await upload(nodes[1], u.token, makePng(8, 8, { fill: 'noise' }), 'image/png');
      assert.equal(r.status, 201, `upload ${i}: ${r.status} ${r.body.toString()}`);
    }
    // the head alone first, then the body in pieces: it waits, and goes on
    const img = makePng(300, 200, { fill: 'noise' });
    const u = await fresh('upraw');
    const parts = [];
    for (let i = 0; i < img.length; i += 20000) parts.push(img.subarray(i, i + 20000));
    const r = await rawUpload(nodes[1], `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n` +
      `Authorization: Bearer ${u.token}\r\nContent-Length: ${img.length}\r\nConnection: close\r\n\r\n`, parts, { gapMs: 5 });
    assert.equal(r.status, 201, r.text.slice(0, 300));
    assert.equal(JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).sha256, sha256(img));
    // a token nobody has: 401 once the node has looked again, with the body sent or not
    assertError(await upload(nodes[1], 'no-such-token-at-all', img, 'image/png'), 401, 'unauthorized');
    const h = await rawUpload(nodes[1], `POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n` +
      'Authorization: Bearer no-such-token\r\nContent-Length: 1000\r\n\r\n', [], { timeoutMs: 5000 });
    assert.equal(h.status, 401, h.text);
    assert.equal((await request(nodes[1], 'GET', '/healthz')).status, 200);
  });
});
