/* Unit tests for src/net/ws.c: every RFC 6455 framing rule the reader enforces, the writers,
 * and writer → reader round trips for both sides.
 *
 * Every input goes through feed(), which reads it whole and also in chunks of 1, 2, 3 and 7
 * bytes (keeping the unconsumed tail, as the server does) and checks that every split gives
 * the same events; so each test below also tests byte-at-a-time feeding. */
#include <stdlib.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "net/ws.h"
#include "t.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- recording events ---- */

#define MAX_EVENTS 64

typedef struct rec_ev {
  tern_ws_event_type type; /* event type */
  uint8_t opcode;          /* MESSAGE opcode */
  uint16_t code;           /* CLOSE / ERROR code */
  size_t len;              /* payload length */
  uint8_t *data;           /* owned copy of the payload */
} rec_ev;

typedef struct rec {
  rec_ev ev[MAX_EVENTS]; /* events in order */
  int n;                 /* events recorded */
  size_t consumed;       /* bytes consumed in total */
} rec;

static void rec_free(rec *r) {
  for (int i = 0; i < r->n; i++) tern_free(r->ev[i].data);
  r->n = 0;
}

static void record(rec *r, const tern_ws_event *ev) {
  if (r->n == MAX_EVENTS) return;
  rec_ev *e = &r->ev[r->n++];
  e->type = ev->type;
  e->opcode = ev->type == TERN_WS_EV_MESSAGE ? ev->opcode : 0;
  e->code = (ev->type == TERN_WS_EV_CLOSE || ev->type == TERN_WS_EV_ERROR) ? ev->close_code : 0;
  e->len = ev->type == TERN_WS_EV_ERROR ? 0 : ev->len;
  e->data = tern_memdup(ev->data ? ev->data : (const uint8_t *)"", e->len);
}

/* Feeds in[0..len) to a fresh reader, chunk bytes at a time (0: all at once), keeping the
 * unconsumed tail like the server's ws_process. Stops at the first ERROR, after checking that
 * the reader keeps reporting it without consuming. */
static void feed_chunked(rec *out, bool server, uint64_t max, const uint8_t *in, size_t len, size_t chunk) {
  memset(out, 0, sizeof *out);
  tern_ws_reader r;
  tern_ws_reader_init(&r, server, max);
  tern_buf pending = {0};
  size_t pos = 0;
  bool failed = false;
  if (!chunk) chunk = len ? len : 1;
  while (pos < len && !failed) {
    size_t n = TERN_MIN(chunk, len - pos);
    tern_buf_append(&pending, in + pos, n);
    pos += n;
    for (;;) {
      tern_ws_event ev;
      size_t used = tern_ws_read(&r, (uint8_t *)pending.data, pending.len, &ev);
      CHECK(used <= pending.len);
      out->consumed += used;
      if (ev.type != TERN_WS_EV_NONE) record(out, &ev); /* before consume moves the bytes */
      tern_buf_consume(&pending, used);
      if (ev.type == TERN_WS_EV_NONE) break;
      if (ev.type == TERN_WS_EV_ERROR) {
        CHECK(r.failed);
        tern_ws_event again;
        CHECK_EQ_INT(tern_ws_read(&r, (uint8_t *)pending.data, pending.len, &again), 0);
        CHECK_EQ_INT(again.type, TERN_WS_EV_ERROR);
        CHECK_EQ_INT(again.close_code, ev.close_code);
        CHECK(again.reason == ev.reason);
        failed = true;
        break;
      }
    }
  }
  tern_buf_free(&pending);
  tern_ws_reader_free(&r);
}

static bool rec_equal(const rec *a, const rec *b) {
  if (a->n != b->n) return false;
  for (int i = 0; i < a->n; i++) {
    const rec_ev *x = &a->ev[i], *y = &b->ev[i];
    if (x->type != y->type || x->opcode != y->opcode || x->code != y->code || x->len != y->len) return false;
    if (memcmp(x->data, y->data, x->len) != 0) return false;
  }
  return true;
}

/* Reads in whole into out, and checks that every chunking gives the same events. */
static void feed(rec *out, bool server, uint64_t max, const uint8_t *in, size_t len) {
  static const size_t chunks[] = {1, 2, 3, 7};
  feed_chunked(out, server, max, in, len, 0);
  for (size_t i = 0; i < TERN_ARRAY_LEN(chunks); i++) {
    rec other;
    feed_chunked(&other, server, max, in, len, chunks[i]);
    if (!rec_equal(out, &other)) {
      fprintf(stderr, "  chunk size %zu gives different events\n", chunks[i]);
      CHECK(rec_equal(out, &other));
    }
    rec_free(&other);
  }
}

/* Expects exactly one ERROR event with code. */
static void expect_error(bool server, const uint8_t *in, size_t len, uint16_t code, int line) {
  rec r;
  feed(&r, server, 1 << 20, in, len);
  bool ok = r.n >= 1 && r.ev[r.n - 1].type == TERN_WS_EV_ERROR && r.ev[r.n - 1].code == code;
  if (!ok) fprintf(stderr, "  (from line %d: %d events, last type %d code %u)\n", line, r.n,
                   r.n ? (int)r.ev[r.n - 1].type : -1, r.n ? r.ev[r.n - 1].code : 0);
  CHECK(ok);
  rec_free(&r);
}
#define EXPECT_ERROR(server, bytes, code) expect_error(server, bytes, sizeof bytes, code, __LINE__)

static void put_frame(tern_buf *b, uint8_t op, bool fin, const char *s, bool masked) {
  tern_ws_append_frame(b, op, fin, s, strlen(s), masked ? MASK : NULL);
}

/* ---- writers ---- */

TEST(accept_key_rfc_example) {
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  tern_ws_accept_key(key, strlen(key), out);
  CHECK_EQ_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  /* a key longer than the stack buffer takes the heap path and still hashes all of it */
  char longkey[300];
  memset(longkey, 'a', sizeof longkey);
  char a[29], b2[29];
  tern_ws_accept_key(longkey, sizeof longkey, a);
  tern_ws_accept_key(longkey, sizeof longkey - 1, b2);
  CHECK_EQ_INT(strlen(a), 28);
  CHECK(strcmp(a, b2) != 0);
}

TEST(frame_header_lengths) {
  uint8_t h[14];
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_TEXT, true, 0, NULL), 2);
  CHECK(h[0] == 0x81 && h[1] == 0x00);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_TEXT, true, 125, NULL), 2);
  CHECK(h[1] == 125);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_BINARY, false, 126, NULL), 4);
  CHECK(h[0] == 0x02 && h[1] == 126 && h[2] == 0 && h[3] == 126);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_BINARY, true, 65535, NULL), 4);
  CHECK(h[1] == 126 && h[2] == 0xff && h[3] == 0xff);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_BINARY, true, 65536, NULL), 10);
  static const uint8_t want64[] = {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0};
  CHECK_MEM(h, want64, 10);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_PING, true, 5, MASK), 6);
  CHECK(h[0] == 0x89 && h[1] == 0x85);
  CHECK_MEM(h + 2, MASK, 4);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_BINARY, true, 65536, MASK), 14);
  CHECK(h[1] == (0x80 | 127));
  CHECK_MEM(h + 10, MASK, 4);
  CHECK_EQ_INT(tern_ws_frame_header(h, TERN_WS_OP_TEXT, true, 0x0102030405060708ull, NULL), 10);
  static const uint8_t wantbig[] = {0x81, 127, 1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_MEM(h, wantbig, 10);
}

/* RFC 6455 5.7's example frames, byte for byte, from our writers. */
TEST(writer_rfc_examples) {
  tern_buf b = {0};
  tern_ws_append_frame(&b, TERN_WS_OP_TEXT, true, "Hello", 5, NULL);
  static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  CHECK_EQ_INT(b.len, sizeof hello);
  CHECK_MEM(b.data, hello, sizeof hello);
  tern_buf_reset(&b);
  tern_ws_append_frame(&b, TERN_WS_OP_TEXT, true, "Hello", 5, MASK);
  static const uint8_t mhello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  CHECK_EQ_INT(b.len, sizeof mhello);
  CHECK_MEM(b.data, mhello, sizeof mhello);
  tern_buf_reset(&b);
  tern_ws_append_frame(&b, TERN_WS_OP_TEXT, false, "Hel", 3, NULL);
  tern_ws_append_frame(&b, TERN_WS_OP_CONT, true, "lo", 2, NULL);
  static const uint8_t frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
  CHECK_EQ_INT(b.len, sizeof frag);
  CHECK_MEM(b.data, frag, sizeof frag);
  tern_buf_free(&b);
}

static void mask_naive(uint8_t *d, size_t n, const uint8_t m[4], uint64_t off) {
  for (size_t i = 0; i < n; i++) d[i] ^= m[(off + i) & 3];
}

TEST(mask_matches_bytewise_at_every_alignment) {
  uint8_t src[200], a[216], b[216];
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 31 + 7);
  for (size_t align = 0; align < 16; align++)
    for (uint64_t off = 0; off < 8; off++)
      for (size_t n = 0; n <= sizeof src; n += (n < 40 ? 1 : 13)) {
        memcpy(a + align, src, n);
        memcpy(b + align, src, n);
        tern_ws_mask(a + align, n, MASK, off);
        mask_naive(b + align, n, MASK, off);
        CHECK_MEM(a + align, b + align, n);
      }
  /* masking in pieces with the running offset equals masking at once, and it is an involution */
  memcpy(a, src, sizeof src);
  memcpy(b, src, sizeof src);
  tern_ws_mask(a, sizeof src, MASK, 0);
  tern_ws_mask(b, 3, MASK, 0);
  tern_ws_mask(b + 3, 50, MASK, 3);
  tern_ws_mask(b + 53, sizeof src - 53, MASK, 53);
  CHECK_MEM(a, b, sizeof src);
  tern_ws_mask(a, sizeof src, MASK, 0);
  CHECK_MEM(a, src, sizeof src);
}

TEST(append_close_truncates_at_char_boundary) {
  tern_buf b = {0};
  /* ASCII reason over 123 bytes: cut to exactly 123 */
  char longr[300];
  memset(longr, 'x', sizeof longr - 1);
  longr[sizeof longr - 1] = 0;
  tern_ws_append_close(&b, 1000, longr, NULL);
  CHECK_EQ_INT(b.len, 2 + 125);
  CHECK_EQ_INT((uint8_t)b.data[1], 125);
  rec r;
  feed(&r, false, 1000, (const uint8_t *)b.data, b.len);
  CHECK_EQ_INT(r.n, 1);
  CHECK_EQ_INT(r.ev[0].type, TERN_WS_EV_CLOSE);
  CHECK_EQ_INT(r.ev[0].code, 1000);
  CHECK_EQ_INT(r.ev[0].len, 123);
  rec_free(&r);
  /* "€" is 3 bytes: 122 ASCII bytes then "€" would need 125 bytes of reason; cut before it */
  char mb[200];
  memset(mb, 'y', 122);
  strcpy(mb + 122, "\xe2\x82\xac tail");
  tern_buf_reset(&b);
  tern_ws_append_close(&b, 4001, mb, MASK);
  feed(&r, true, 1000, (const uint8_t *)b.data, b.len);
  CHECK_EQ_INT(r.n, 1);
  CHECK_EQ_INT(r.ev[0].type, TERN_WS_EV_CLOSE);
  CHECK_EQ_INT(r.ev[0].code, 4001);
  CHECK_EQ_INT(r.ev[0].len, 122);
  rec_free(&r);
  /* every cut position of a reason made of 2-, 3- and 4-byte characters stays valid UTF-8 */
  for (size_t pre = 0; pre < 8; pre++) {
    char s[256];
    memset(s, 'z', pre);
    size_t n = pre;
    while (n < 200) {
      static const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
      const char *c = chars[n % 3];
      memcpy(s + n, c, strlen(c));
      n += strlen(c);
    }
    s[n] = 0;
    tern_buf_reset(&b);
    tern_ws_append_close(&b, 1001, s, NULL);
    CHECK(b.len >= 2 + 2 + 120 && b.len <= 2 + 125);
    CHECK(tern_utf8_valid(b.data + 4, b.len - 4));
  }
  /* code 0: no payload at all; the peer sees 1005 */
  tern_buf_reset(&b);
  tern_ws_append_close(&b, 0, "ignored", NULL);
  CHECK_EQ_INT(b.len, 2);
  feed(&r, false, 1000, (const uint8_t *)b.data, b.len);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_CLOSE && r.ev[0].code == 1005 && r.ev[0].len == 0);
  rec_free(&r);
  /* NULL reason: just the code */
  tern_buf_reset(&b);
  tern_ws_append_close(&b, 1000, NULL, NULL);
  CHECK_EQ_INT(b.len, 4);
  tern_buf_free(&b);
}

/* ---- reader: the RFC's examples ---- */

TEST(read_rfc_examples) {
  rec r;
  static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  feed(&r, false, 1000, hello, sizeof hello);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].opcode == TERN_WS_OP_TEXT);
  CHECK(r.ev[0].len == 5 && memcmp(r.ev[0].data, "Hello", 5) == 0);
  CHECK_EQ_INT(r.consumed, sizeof hello);
  rec_free(&r);

  static const uint8_t mhello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  feed(&r, true, 1000, mhello, sizeof mhello);
  CHECK(r.n == 1 && r.ev[0].len == 5 && memcmp(r.ev[0].data, "Hello", 5) == 0);
  rec_free(&r);

  static const uint8_t frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
  feed(&r, false, 1000, frag, sizeof frag);
  CHECK(r.n == 1 && r.ev[0].opcode == TERN_WS_OP_TEXT && r.ev[0].len == 5 && memcmp(r.ev[0].data, "Hello", 5) == 0);
  rec_free(&r);

  static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  feed(&r, false, 1000, ping, sizeof ping);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_PING && r.ev[0].len == 5 && memcmp(r.ev[0].data, "Hello", 5) == 0);
  rec_free(&r);

  static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  feed(&r, true, 1000, pong, sizeof pong);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_PONG && r.ev[0].len == 5 && memcmp(r.ev[0].data, "Hello", 5) == 0);
  rec_free(&r);
}

/* ---- reader: lengths, zero copy, masking ---- */

TEST(read_length_boundaries_both_sides) {
  static const size_t sizes[] = {0, 1, 124, 125, 126, 127, 65535, 65536, 65537, 200000};
  uint8_t *payload = tern_malloc(200000);
  for (size_t i = 0; i < 200000; i++) payload[i] = (uint8_t)(i * 7 + (i >> 8));
  for (int side = 0; side < 2; side++) {
    bool server = side == 0; /* server reads masked client frames */
    for (size_t k = 0; k < TERN_ARRAY_LEN(sizes); k++) {
      size_t n = sizes[k];
      tern_buf b = {0};
      tern_ws_append_frame(&b, TERN_WS_OP_BINARY, true, payload, n, server ? MASK : NULL);
      size_t hl = (n <= 125 ? 2 : n <= 65535 ? 4 : 10) + (server ? 4 : 0);
      CHECK_EQ_INT(b.len, hl + n);
      CHECK_EQ_INT(tern_ws_frame_need((const uint8_t *)b.data, b.len), hl + n);
      if (server && n > 8) CHECK(memcmp(b.data + hl, payload, 8) != 0); /* really masked */
      /* zero copy: the payload is delivered in place, unmasked */
      tern_ws_reader r;
      tern_ws_reader_init(&r, server, 1 << 20);
      tern_ws_event ev;
      /* one byte short: nothing consumed, nothing modified */
      tern_buf copy = {0};
      tern_buf_append(&copy, b.data, b.len);
      CHECK_EQ_INT(tern_ws_read(&r, (uint8_t *)b.data, b.len - 1, &ev), 0);
      CHECK_EQ_INT(ev.type, TERN_WS_EV_NONE);
      CHECK_MEM(b.data, copy.data, b.len);
      CHECK_EQ_INT(tern_ws_read(&r, (uint8_t *)b.data, b.len, &ev), b.len);
      CHECK_EQ_INT(ev.type, TERN_WS_EV_MESSAGE);
      CHECK_EQ_INT(ev.opcode, TERN_WS_OP_BINARY);
      CHECK_EQ_INT(ev.len, n);
      if (n) CHECK(ev.data == (const uint8_t *)b.data + hl);
      CHECK_MEM(ev.data, payload, n);
      tern_ws_reader_free(&r);
      tern_buf_free(&copy);
      if (n <= 65537) { /* all splits for the moderately sized ones */
        rec rr;
        feed(&rr, server, 1 << 20, (const uint8_t *)copy.data, 0); /* empty input: no events */
        CHECK_EQ_INT(rr.n, 0);
        tern_buf_reset(&b);
        tern_ws_append_frame(&b, TERN_WS_OP_BINARY, true, payload, n, server ? MASK : NULL);
        feed(&rr, server, 1 << 20, (const uint8_t *)b.data, b.len);
        CHECK(rr.n == 1 && rr.ev[0].len == n && memcmp(rr.ev[0].data, payload, n) == 0);
        rec_free(&rr);
      }
      tern_buf_free(&b);
    }
  }
  tern_free(payload);
}

TEST(read_accepts_non_minimal_lengths) {
  /* "abc" with a 16-bit length, and with a 64-bit length (RFC 6455 lets readers accept these) */
  static const uint8_t l16[] = {0x81, 126, 0, 3, 'a', 'b', 'c'};
  static const uint8_t l64[] = {0x81, 127, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'};
  /* a ping whose 16-bit length is <= 125 is still a legal control frame */
  static const uint8_t ping16[] = {0x89, 126, 0, 2, 'h', 'i'};
  rec r;
  feed(&r, false, 100, l16, sizeof l16);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].len == 3);
  rec_free(&r);
  feed(&r, false, 100, l64, sizeof l64);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].len == 3 && memcmp(r.ev[0].data, "abc", 3) == 0);
  rec_free(&r);
  feed(&r, false, 100, ping16, sizeof ping16);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_PING && r.ev[0].len == 2);
  rec_free(&r);
}

TEST(frame_need) {
  tern_buf b = {0};
  uint8_t big[300] = {0};
  tern_ws_append_frame(&b, TERN_WS_OP_BINARY, true, big, sizeof big, MASK); /* 2+2+4 header */
  for (size_t i = 0; i < 8; i++) CHECK_EQ_INT(tern_ws_frame_need((const uint8_t *)b.data, i), 0);
  CHECK_EQ_INT(tern_ws_frame_need((const uint8_t *)b.data, 8), 308);
  CHECK_EQ_INT(tern_ws_frame_need((const uint8_t *)b.data, b.len), 308);
  static const uint8_t huge[] = {0x82, 127, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0};
  CHECK_EQ_INT(tern_ws_frame_need(huge, 9), 0);
  CHECK(tern_ws_frame_need(huge, sizeof huge) == (size_t)10 + ((size_t)1 << 40));
  static const uint8_t tiny[] = {0x89, 0x00};
  CHECK_EQ_INT(tern_ws_frame_need(tiny, 2), 2);
  tern_buf_free(&b);
}

/* ---- reader: several frames, fragmentation, control frames between fragments ---- */

TEST(read_multiple_frames_in_one_buffer) {
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_TEXT, true, "one", true);
  tern_ws_append_frame(&b, TERN_WS_OP_BINARY, true, "\x00\x01\x02", 3, MASK);
  put_frame(&b, TERN_WS_OP_PING, true, "p", true);
  put_frame(&b, TERN_WS_OP_PONG, true, "", true);
  tern_ws_append_close(&b, 1000, "bye", MASK);
  rec r;
  feed(&r, true, 1000, (const uint8_t *)b.data, b.len);
  CHECK_EQ_INT(r.n, 5);
  CHECK_EQ_INT(r.consumed, b.len);
  CHECK(r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].opcode == TERN_WS_OP_TEXT && r.ev[0].len == 3 &&
        memcmp(r.ev[0].data, "one", 3) == 0);
  CHECK(r.ev[1].type == TERN_WS_EV_MESSAGE && r.ev[1].opcode == TERN_WS_OP_BINARY && r.ev[1].len == 3 &&
        memcmp(r.ev[1].data, "\x00\x01\x02", 3) == 0);
  CHECK(r.ev[2].type == TERN_WS_EV_PING && r.ev[2].len == 1 && r.ev[2].data[0] == 'p');
  CHECK(r.ev[3].type == TERN_WS_EV_PONG && r.ev[3].len == 0);
  CHECK(r.ev[4].type == TERN_WS_EV_CLOSE && r.ev[4].code == 1000 && r.ev[4].len == 3 &&
        memcmp(r.ev[4].data, "bye", 3) == 0);
  rec_free(&r);

  /* one call per event: the consumed counts add up frame by frame */
  tern_ws_reader rd;
  tern_ws_reader_init(&rd, true, 1000);
  tern_buf c = {0};
  put_frame(&c, TERN_WS_OP_TEXT, true, "one", true);
  size_t first = c.len;
  put_frame(&c, TERN_WS_OP_TEXT, true, "two", true);
  tern_ws_event ev;
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)c.data, c.len, &ev), first);
  CHECK(ev.type == TERN_WS_EV_MESSAGE && ev.len == 3 && memcmp(ev.data, "one", 3) == 0);
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)c.data + first, c.len - first, &ev), c.len - first);
  CHECK(ev.type == TERN_WS_EV_MESSAGE && ev.len == 3 && memcmp(ev.data, "two", 3) == 0);
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)c.data + c.len, 0, &ev), 0);
  CHECK_EQ_INT(ev.type, TERN_WS_EV_NONE);
  tern_ws_reader_free(&rd);
  tern_buf_free(&c);
  tern_buf_free(&b);
}

TEST(read_text_over_three_fragments) {
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_TEXT, false, "Hello, ", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "fragmented ", true);
  put_frame(&b, TERN_WS_OP_CONT, true, "world", true);
  rec r;
  feed(&r, true, 1000, (const uint8_t *)b.data, b.len);
  CHECK_EQ_INT(r.n, 1);
  CHECK(r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].opcode == TERN_WS_OP_TEXT);
  CHECK(r.ev[0].len == 23 && memcmp(r.ev[0].data, "Hello, fragmented world", 23) == 0);
  CHECK_EQ_INT(r.consumed, b.len);
  rec_free(&r);

  /* non-final fragments give no event but are consumed; NONE then means "need more bytes" */
  tern_ws_reader rd;
  tern_ws_reader_init(&rd, true, 1000);
  tern_ws_event ev;
  size_t last = tern_ws_frame_need((const uint8_t *)b.data, b.len);
  last += tern_ws_frame_need((const uint8_t *)b.data + last, b.len - last); /* two fragments */
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data, b.len - 1, &ev), last);
  CHECK_EQ_INT(ev.type, TERN_WS_EV_NONE);
  CHECK_EQ_INT(rd.msg_opcode, TERN_WS_OP_TEXT);
  CHECK_EQ_INT(rd.msg.len, 18);
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data + last, b.len - last, &ev), b.len - last);
  CHECK(ev.type == TERN_WS_EV_MESSAGE && ev.len == 23);
  CHECK(ev.data == (const uint8_t *)rd.msg.data); /* reassembled in the reader */
  /* the reassembly buffer is released by the next call: an idle reader holds no memory */
  CHECK_EQ_INT(tern_ws_read(&rd, NULL, 0, &ev), 0);
  CHECK(rd.msg.data == NULL && rd.msg.cap == 0);
  tern_ws_reader_free(&rd);
  tern_buf_free(&b);
}

TEST(read_control_frames_between_fragments) {
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_BINARY, false, "ab", false);
  put_frame(&b, TERN_WS_OP_PING, true, "ping1", false);
  put_frame(&b, TERN_WS_OP_CONT, false, "cd", false);
  put_frame(&b, TERN_WS_OP_PONG, true, "pong", false);
  put_frame(&b, TERN_WS_OP_PING, true, "", false);
  put_frame(&b, TERN_WS_OP_CONT, true, "ef", false);
  put_frame(&b, TERN_WS_OP_TEXT, true, "next", false);
  put_frame(&b, TERN_WS_OP_TEXT, false, "x", false);
  tern_ws_append_close(&b, 1001, "going", NULL); /* close in the middle of a message is reported */
  rec r;
  feed(&r, false, 1000, (const uint8_t *)b.data, b.len);
  CHECK_EQ_INT(r.n, 6);
  CHECK(r.ev[0].type == TERN_WS_EV_PING && r.ev[0].len == 5 && memcmp(r.ev[0].data, "ping1", 5) == 0);
  CHECK(r.ev[1].type == TERN_WS_EV_PONG && r.ev[1].len == 4 && memcmp(r.ev[1].data, "pong", 4) == 0);
  CHECK(r.ev[2].type == TERN_WS_EV_PING && r.ev[2].len == 0);
  CHECK(r.ev[3].type == TERN_WS_EV_MESSAGE && r.ev[3].opcode == TERN_WS_OP_BINARY && r.ev[3].len == 6 &&
        memcmp(r.ev[3].data, "abcdef", 6) == 0);
  CHECK(r.ev[4].type == TERN_WS_EV_MESSAGE && r.ev[4].opcode == TERN_WS_OP_TEXT && r.ev[4].len == 4);
  CHECK(r.ev[5].type == TERN_WS_EV_CLOSE && r.ev[5].code == 1001 && r.ev[5].len == 5);
  CHECK_EQ_INT(r.consumed, b.len);
  rec_free(&r);
  tern_buf_free(&b);
}

TEST(read_empty_fragments) {
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_TEXT, false, "", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "", true);
  put_frame(&b, TERN_WS_OP_CONT, true, "", true);
  put_frame(&b, TERN_WS_OP_TEXT, true, "", true);
  rec r;
  feed(&r, true, 0, (const uint8_t *)b.data, b.len); /* max 0 still allows empty messages */
  CHECK_EQ_INT(r.n, 2);
  CHECK(r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].opcode == TERN_WS_OP_TEXT && r.ev[0].len == 0);
  CHECK(r.ev[1].type == TERN_WS_EV_MESSAGE && r.ev[1].len == 0);
  rec_free(&r);
  tern_buf_free(&b);
}

/* ---- reader: UTF-8 ---- */

TEST(read_utf8_split_across_fragments) {
  /* "é" (C3 A9) split between two fragments, "€" (E2 82 AC) over three, "😀" over four */
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_TEXT, false, "caf\xc3", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "\xa9 \xe2", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "\x82", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "\xac \xf0", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "\x9f", true);
  put_frame(&b, TERN_WS_OP_CONT, false, "\x98", true);
  put_frame(&b, TERN_WS_OP_CONT, true, "\x80", true);
  rec r;
  feed(&r, true, 1000, (const uint8_t *)b.data, b.len);
  const char *want = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].len == strlen(want) &&
        memcmp(r.ev[0].data, want, strlen(want)) == 0);
  rec_free(&r);
  tern_buf_free(&b);
}

TEST(read_invalid_utf8_is_1007) {
  static const char *bad[] = {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\x80"};
  for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
    tern_buf b = {0};
    put_frame(&b, TERN_WS_OP_TEXT, true, bad[i], true);
    expect_error(true, (const uint8_t *)b.data, b.len, 1007, __LINE__);
    tern_buf_reset(&b);
    /* the same bytes in a fragmented message: the first fragment alone is not judged */
    put_frame(&b, TERN_WS_OP_TEXT, false, "fine ", false);
    put_frame(&b, TERN_WS_OP_CONT, true, bad[i], false);
    expect_error(false, (const uint8_t *)b.data, b.len, 1007, __LINE__);
    tern_buf_free(&b);
  }
  /* a character cut short at the end of the message */
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_TEXT, false, "x\xe2\x82", false);
  put_frame(&b, TERN_WS_OP_CONT, true, "", false);
  expect_error(false, (const uint8_t *)b.data, b.len, 1007, __LINE__);
  /* binary messages are not checked */
  tern_buf_reset(&b);
  tern_ws_append_frame(&b, TERN_WS_OP_BINARY, true, "\xff\xfe", 2, NULL);
  rec r;
  feed(&r, false, 1000, (const uint8_t *)b.data, b.len);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_MESSAGE);
  rec_free(&r);
  tern_buf_free(&b);
}

/* ---- reader: close frames ---- */

TEST(read_close_frames) {
  rec r;
  tern_buf b = {0};
  tern_ws_append_close(&b, 1000, "normal \xc3\xa9", MASK);
  feed(&r, true, 1000, (const uint8_t *)b.data, b.len);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_CLOSE && r.ev[0].code == 1000 && r.ev[0].len == 9 &&
        memcmp(r.ev[0].data, "normal \xc3\xa9", 9) == 0);
  rec_free(&r);

  static const uint8_t empty[] = {0x88, 0x00};
  feed(&r, false, 1000, empty, sizeof empty);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_CLOSE && r.ev[0].code == 1005 && r.ev[0].len == 0);
  rec_free(&r);

  static const uint8_t one[] = {0x88, 0x01, 0x03};
  EXPECT_ERROR(false, one, 1002);
  /* the next frame's first byte would complete code 1000: it must not be borrowed */
  static const uint8_t one_then[] = {0x88, 0x01, 0x03, 0xe8, 0x00};
  EXPECT_ERROR(false, one_then, 1002);

  static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999};
  for (size_t i = 0; i < TERN_ARRAY_LEN(ok); i++) {
    tern_buf_reset(&b);
    tern_ws_append_close(&b, ok[i], "", NULL);
    feed(&r, false, 1000, (const uint8_t *)b.data, b.len);
    CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_CLOSE && r.ev[0].code == ok[i] && r.ev[0].len == 0);
    rec_free(&r);
  }
  static const uint16_t bad[] = {1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
    tern_buf_reset(&b);
    tern_ws_append_close(&b, bad[i], "why", NULL);
    expect_error(false, (const uint8_t *)b.data, b.len, 1002, __LINE__);
  }
  static const uint8_t badreason[] = {0x88, 0x04, 0x03, 0xe8, 0xc3, 0x28};
  EXPECT_ERROR(false, badreason, 1007);
  static const uint8_t code0[] = {0x88, 0x02, 0x00, 0x00};
  EXPECT_ERROR(false, code0, 1002);
  tern_buf_free(&b);
}

/* ---- reader: protocol errors and their close codes ---- */

TEST(read_protocol_errors) {
  /* RSV1, RSV2, RSV3 without an extension */
  static const uint8_t rsv1[] = {0xc1, 0x00}, rsv2[] = {0xa1, 0x00}, rsv3[] = {0x91, 0x00};
  EXPECT_ERROR(false, rsv1, 1002);
  EXPECT_ERROR(false, rsv2, 1002);
  EXPECT_ERROR(false, rsv3, 1002);
  /* reserved opcodes, data and control */
  for (uint8_t op = 3; op <= 0xF; op++) {
    if (op >= 8 && op <= 0xA) continue;
    uint8_t f[2] = {(uint8_t)(0x80 | op), 0x00};
    expect_error(false, f, 2, 1002, __LINE__);
  }
  /* masking rules: server needs masked frames, client refuses them */
  static const uint8_t unmasked[] = {0x81, 0x01, 'a'};
  EXPECT_ERROR(true, unmasked, 1002);
  static const uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'a' ^ 1};
  EXPECT_ERROR(false, masked, 1002);
  /* control frames: over 125 bytes (by 16-bit length), not FIN */
  uint8_t bigping[4 + 126] = {0x89, 126, 0, 126};
  EXPECT_ERROR(false, bigping, 1002);
  static const uint8_t bigping2[] = {0x89, 126, 0, 126}; /* refused from the header alone */
  EXPECT_ERROR(false, bigping2, 1002);
  static const uint8_t fragping[] = {0x09, 0x00};
  EXPECT_ERROR(false, fragping, 1002);
  static const uint8_t fragclose[] = {0x08, 0x02, 0x03, 0xe8};
  EXPECT_ERROR(false, fragclose, 1002);
  /* continuation without a message; new message inside a fragmented one */
  static const uint8_t lonecont[] = {0x80, 0x01, 'a'};
  EXPECT_ERROR(false, lonecont, 1002);
  static const uint8_t lonecont2[] = {0x00, 0x00};
  EXPECT_ERROR(false, lonecont2, 1002);
  static const uint8_t newmsg[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'};
  EXPECT_ERROR(false, newmsg, 1002);
  static const uint8_t newbin[] = {0x01, 0x01, 'a', 0x02, 0x01, 'b'};
  EXPECT_ERROR(false, newbin, 1002);
  /* after a complete fragmented message, a lone continuation is again an error */
  static const uint8_t after[] = {0x01, 0x01, 'a', 0x80, 0x01, 'b', 0x80, 0x00};
  rec r;
  feed(&r, false, 1000, after, sizeof after);
  CHECK(r.n == 2 && r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[1].type == TERN_WS_EV_ERROR && r.ev[1].code == 1002);
  CHECK_EQ_INT(r.consumed, 6);
  rec_free(&r);
  /* 64-bit length with the top bit set: refused, not taken as "too big" */
  static const uint8_t top[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_ERROR(false, top, 1002);
  static const uint8_t topmax[] = {0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_ERROR(false, topmax, 1002);
}

TEST(errors_are_sticky) {
  tern_ws_reader rd;
  tern_ws_reader_init(&rd, false, 1000);
  tern_buf b = {0};
  put_frame(&b, TERN_WS_OP_TEXT, true, "good", false);
  size_t good = b.len;
  tern_buf_append(&b, "\xc1\x00", 2); /* RSV1 */
  put_frame(&b, TERN_WS_OP_TEXT, true, "after", false);
  tern_ws_event ev;
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data, b.len, &ev), good);
  CHECK_EQ_INT(ev.type, TERN_WS_EV_MESSAGE);
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data + good, b.len - good, &ev), 0); /* before the bad frame */
  CHECK(ev.type == TERN_WS_EV_ERROR && ev.close_code == 1002 && ev.reason != NULL);
  CHECK(rd.failed);
  const char *why = ev.reason;
  for (int i = 0; i < 3; i++) {
    /* even a perfectly good frame is not read any more */
    CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data, good, &ev), 0);
    CHECK(ev.type == TERN_WS_EV_ERROR && ev.close_code == 1002 && ev.reason == why);
  }
  tern_ws_reader_free(&rd);
  /* an error after consumed fragments reports the fragments' bytes as consumed */
  tern_ws_reader_init(&rd, false, 1000);
  tern_buf_reset(&b);
  put_frame(&b, TERN_WS_OP_TEXT, false, "frag", false);
  size_t frag = b.len;
  put_frame(&b, TERN_WS_OP_TEXT, true, "oops", false);
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data, b.len, &ev), frag);
  CHECK(ev.type == TERN_WS_EV_ERROR && ev.close_code == 1002);
  CHECK(rd.msg.data == NULL); /* the partial message is released at once */
  tern_ws_reader_free(&rd);
  tern_buf_free(&b);
}

/* ---- reader: message size limit ---- */

TEST(too_big_is_1009_before_payload) {
  tern_ws_reader rd;
  tern_ws_event ev;
  /* only the header of a 101-byte message has arrived; max is 100 */
  uint8_t h7[] = {0x82, 0x80 | 101, 1, 2, 3, 4};
  tern_ws_reader_init(&rd, true, 100);
  CHECK_EQ_INT(tern_ws_read(&rd, h7, 2, &ev), 0); /* two bytes are enough */
  CHECK(ev.type == TERN_WS_EV_ERROR && ev.close_code == 1009);
  tern_ws_reader_free(&rd);
  /* 16- and 64-bit lengths: refused as soon as the length is known, before the mask key */
  uint8_t h16[] = {0x82, 0x80 | 126, 0x10, 0x00};
  tern_ws_reader_init(&rd, true, 4095);
  CHECK_EQ_INT(tern_ws_read(&rd, h16, 3, &ev), 0);
  CHECK_EQ_INT(ev.type, TERN_WS_EV_NONE);
  CHECK_EQ_INT(tern_ws_read(&rd, h16, sizeof h16, &ev), 0);
  CHECK(ev.type == TERN_WS_EV_ERROR && ev.close_code == 1009);
  tern_ws_reader_free(&rd);
  static const uint8_t h64[] = {0x82, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_ERROR(true, h64, 1009);
  /* exactly max is fine */
  tern_buf b = {0};
  uint8_t p[100] = {0};
  tern_ws_append_frame(&b, TERN_WS_OP_BINARY, true, p, 100, MASK);
  rec r;
  feed(&r, true, 100, (const uint8_t *)b.data, b.len);
  CHECK(r.n == 1 && r.ev[0].type == TERN_WS_EV_MESSAGE && r.ev[0].len == 100);
  rec_free(&r);
  /* fragments count together: 60 + 40 fits in 100, a third byte does not, and the error
   * comes from the third fragment's header before its payload */
  tern_buf_reset(&b);
  tern_ws_append_frame(&b, TERN_WS_OP_BINARY, false, p, 60, MASK);
  tern_ws_append_frame(&b, TERN_WS_OP_CONT, false, p, 40, MASK);
  size_t before = b.len;
  tern_ws_append_frame(&b, TERN_WS_OP_CONT, true, p, 1, MASK);
  tern_ws_reader_init(&rd, true, 100);
  CHECK_EQ_INT(tern_ws_read(&rd, (uint8_t *)b.data, before + 2, &ev), before);
  CHECK(ev.type == TERN_WS_EV_ERROR && ev.close_code == 1009);
  tern_ws_reader_free(&rd);
  /* and the same message with an empty last fragment is accepted */
  tern_buf_reset(&b);
  tern_ws_append_frame(&b, TERN_WS_OP_BINARY, false, p, 60, MASK);
  tern_ws_append_frame(&b, TERN_WS_OP_CONT, false, p, 40, MASK);
  put_frame(&b, TERN_WS_OP_PING, true, "control frames do not count", true);
  tern_ws_append_frame(&b, TERN_WS_OP_CONT, true, p, 0, MASK);
  feed(&r, true, 100, (const uint8_t *)b.data, b.len);
  CHECK(r.n == 2 && r.ev[0].type == TERN_WS_EV_PING && r.ev[1].type == TERN_WS_EV_MESSAGE && r.ev[1].len == 100);
  rec_free(&r);
  tern_buf_free(&b);
}

/* ---- round trips ---- */

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

/* Random messages, some fragmented, with control frames between fragments, written by one
 * side and read by the other. */
static void round_trip(bool client_writes) {
  const bool server_reads = client_writes;
  tern_buf wire = {0};
  enum { N = 40 };
  tern_buf want[N];
  uint8_t want_op[N];
  int npings = 0;
  for (int i = 0; i < N; i++) {
    want[i] = (tern_buf){0};
    size_t len = rng() % 5 == 0 ? rng() % 70000 : rng() % 300;
    bool text = rng() & 1;
    want_op[i] = text ? TERN_WS_OP_TEXT : TERN_WS_OP_BINARY;
    for (size_t k = 0; k < len; k++) {
      char c = text ? (char)('a' + rng() % 26) : (char)rng();
      tern_buf_putc(&want[i], c);
    }
    size_t nfrag = 1 + rng() % 4;
    size_t pos = 0;
    for (size_t f = 0; f < nfrag; f++) {
      size_t take = f + 1 == nfrag ? len - pos : (len - pos) / 2;
      uint8_t mask[4] = {(uint8_t)rng(), (uint8_t)rng(), (uint8_t)rng(), (uint8_t)rng()};
      tern_ws_append_frame(&wire, f == 0 ? want_op[i] : TERN_WS_OP_CONT, f + 1 == nfrag, want[i].data ? want[i].data + pos : NULL, take,
                           client_writes ? mask : NULL);
      pos += take;
      if (f + 1 < nfrag && rng() % 2) {
        tern_ws_append_frame(&wire, TERN_WS_OP_PING, true, "hb", 2, client_writes ? mask : NULL);
        npings++;
      }
    }
  }
  tern_ws_append_close(&wire, 4003, "replaced", client_writes ? MASK : NULL);
  static const size_t chunks[] = {0, 1, 1000, 4096, 65536};
  for (size_t ci = 0; ci < TERN_ARRAY_LEN(chunks); ci++) {
    /* feed_chunked records at most MAX_EVENTS, which is enough for 40 messages + pings only
     * sometimes, so read here directly */
    tern_ws_reader rd;
    tern_ws_reader_init(&rd, server_reads, 1 << 20);
    tern_buf pending = {0};
    size_t pos = 0, chunk = chunks[ci] ? chunks[ci] : wire.len;
    int msgs = 0, pings = 0, closes = 0, errors = 0;
    while (pos < wire.len) {
      size_t n = TERN_MIN(chunk, wire.len - pos);
      tern_buf_append(&pending, wire.data + pos, n);
      pos += n;
      for (;;) {
        tern_ws_event ev;
        size_t used = tern_ws_read(&rd, (uint8_t *)pending.data, pending.len, &ev);
        if (ev.type == TERN_WS_EV_MESSAGE) {
          if (msgs < N) {
            CHECK_EQ_INT(ev.opcode, want_op[msgs]);
            CHECK_EQ_INT(ev.len, want[msgs].len);
            CHECK(ev.len == 0 || memcmp(ev.data, want[msgs].data, ev.len) == 0);
          }
          msgs++;
        } else if (ev.type == TERN_WS_EV_PING) {
          CHECK(ev.len == 2 && memcmp(ev.data, "hb", 2) == 0);
          pings++;
        } else if (ev.type == TERN_WS_EV_CLOSE) {
          CHECK(ev.close_code == 4003 && ev.len == 8 && memcmp(ev.data, "replaced", 8) == 0);
          closes++;
        } else if (ev.type == TERN_WS_EV_ERROR) {
          errors++;
        }
        tern_buf_consume(&pending, used);
        if (ev.type == TERN_WS_EV_NONE || ev.type == TERN_WS_EV_ERROR) break;
      }
      if (errors) break;
    }
    CHECK_EQ_INT(errors, 0);
    CHECK_EQ_INT(msgs, N);
    CHECK_EQ_INT(pings, npings);
    CHECK_EQ_INT(closes, 1);
    CHECK_EQ_INT(pending.len, 0);
    tern_buf_free(&pending);
    tern_ws_reader_free(&rd);
  }
  for (int i = 0; i < N; i++) tern_buf_free(&want[i]);
  tern_buf_free(&wire);
}

TEST(round_trip_client_to_server) { round_trip(true); }
TEST(round_trip_server_to_client) { round_trip(false); }

TEST(reader_is_small) {
  /* it lives in every connection; the idle budget is 2 KiB for everything */
  CHECK(sizeof(tern_ws_reader) <= 64);
  tern_ws_reader rd;
  tern_ws_reader_init(&rd, true, 1000);
  CHECK(rd.msg.data == NULL && !rd.failed && rd.msg_opcode == 0);
  tern_ws_reader_free(&rd);
}

int main(void) {
  RUN(accept_key_rfc_example);
  RUN(frame_header_lengths);
  RUN(writer_rfc_examples);
  RUN(mask_matches_bytewise_at_every_alignment);
  RUN(append_close_truncates_at_char_boundary);
  RUN(read_rfc_examples);
  RUN(read_length_boundaries_both_sides);
  RUN(read_accepts_non_minimal_lengths);
  RUN(frame_need);
  RUN(read_multiple_frames_in_one_buffer);
  RUN(read_text_over_three_fragments);
  RUN(read_control_frames_between_fragments);
  RUN(read_empty_fragments);
  RUN(read_utf8_split_across_fragments);
  RUN(read_invalid_utf8_is_1007);
  RUN(read_close_frames);
  RUN(read_protocol_errors);
  RUN(errors_are_sticky);
  RUN(too_big_is_1009_before_payload);
  RUN(round_trip_client_to_server);
  RUN(round_trip_server_to_client);
  RUN(reader_is_small);
  DONE();
}
