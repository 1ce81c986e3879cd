/* test_client: libtern-client without a tern server: URLs, frame building
 * and parsing, HTTP response parsing from canned bytes, and the WebSocket and HTTP state
 * machines against a small scripted server on loopback. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/util.h"
#include "client/client_int.h"
#include "net/ws.h"
#include "t.h"

/* ---- URLs ---- */

TEST(url_parse) {
  tern_client_url u;
  CHECK_EQ_INT(tern_client_url_parse("http://127.0.0.1:8080", &u), 0);
  CHECK_EQ_STR(u.host, "127.0.0.1");
  CHECK_EQ_INT(u.port, 8080);
  CHECK_EQ_STR(u.hostport, "127.0.0.1:8080");
  CHECK_EQ_INT(tern_client_url_parse("http://example.com/", &u), 0);
  CHECK_EQ_STR(u.host, "example.com");
  CHECK_EQ_INT(u.port, 80);
  CHECK_EQ_INT(tern_client_url_parse("localhost:9000", &u), 0);
  CHECK_EQ_STR(u.host, "localhost");
  CHECK_EQ_INT(u.port, 9000);
  CHECK_EQ_INT(tern_client_url_parse("HTTP://[::1]:8080/", &u), 0);
  CHECK_EQ_STR(u.host, "::1");
  CHECK_EQ_STR(u.hostport, "[::1]:8080");
  CHECK_EQ_INT(tern_client_url_parse("ws://h:1", &u), 0);
  CHECK_EQ_INT(tern_client_url_parse("https://example.com", &u), 0); /* TLS, default port 443 */
  CHECK(u.tls);
  CHECK_EQ_INT(u.port, 443);
  CHECK_EQ_INT(tern_client_url_parse("wss://example.com:8443", &u), 0);
  CHECK(u.tls);
  CHECK_EQ_INT(u.port, 8443);
  CHECK_EQ_INT(tern_client_url_parse("http://example.com", &u), 0);
  CHECK(!u.tls);
  CHECK_EQ_INT(tern_client_url_parse("ftp://example.com", &u), -EPROTONOSUPPORT);
  CHECK_EQ_INT(tern_client_url_parse("", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://h:0", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://h:65536", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://h:80x", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://h:", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://h/v1", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://a b:80", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://a\r\nX: y", &u), -EINVAL);
  CHECK_EQ_INT(tern_client_url_parse("http://[::1", &u), -EINVAL);
}

TEST(new_id_unique) {
  char a[TERN_CLIENT_ID_SIZE], b[TERN_CLIENT_ID_SIZE];
  tern_client_new_id(a);
  tern_client_new_id(b);
  CHECK(strncmp(a, "c-", 2) == 0);
  CHECK(strcmp(a, b) != 0);
  CHECK(strlen(a) < TERN_CLIENT_ID_SIZE && strlen(a) <= 64);
  for (const char *p = a; *p; p++) CHECK(*p > 0x20 && *p < 0x7f);
}

/* ---- frames ---- */

static cJSON *parse_buf(tern_buf *b) {
  cJSON *o = cJSON_ParseWithLength(b->data, b->len);
  tern_buf_reset(b);
  return o;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The client's frames are written by proto (tern_frame_encode, which tern_client_send and the
 * other senders call); enc builds what each v1 sender sends. */
static void enc(tern_buf *b, tern_frame f) {
  tern_frame_error e;
  CHECK_EQ_INT(tern_frame_encode(b, &f, NULL, &e), 0);
}

TEST(frames_build) {
  tern_buf b = {0};
  enc(&b, (tern_frame){.type = TERN_FRAME_AUTH, .token = "tok"});
  cJSON *o = parse_buf(&b);
  CHECK_EQ_STR(jstr(o, "type"), "auth");
  CHECK_EQ_STR(jstr(o, "token"), "tok");
  cJSON_Delete(o);

  const char body[] = "he said \"hi\"\n\\ ✓";
  enc(&b, (tern_frame){.type = TERN_FRAME_SEND, .id = "c-1", .to = "bob", .body = (char *)body, .body_len = strlen(body)});
  o = parse_buf(&b);
  CHECK_EQ_STR(jstr(o, "type"), "send");
  CHECK_EQ_STR(jstr(o, "id"), "c-1");
  CHECK_EQ_STR(jstr(o, "to"), "bob");
  CHECK_EQ_STR(jstr(o, "body"), body);
  CHECK(cJSON_GetObjectItem(o, "media") == NULL);
  cJSON_Delete(o);

  enc(&b, (tern_frame){.type = TERN_FRAME_SEND, .id = "c-2", .to = "bob", .media_id = "m1"});
  o = parse_buf(&b);
  CHECK(cJSON_GetObjectItem(o, "body") == NULL);
  CHECK_EQ_STR(jstr(cJSON_GetObjectItem(o, "media"), "media_id"), "m1");
  cJSON_Delete(o);

  enc(&b, (tern_frame){.type = TERN_FRAME_ACK, .seq = 18446744073709551615ull});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"ack\",\"seq\":18446744073709551615}");
  tern_buf_reset(&b);

  const char *ids[] = {"m1", "m2"};
  enc(&b, (tern_frame){.type = TERN_FRAME_READ, .peer = "alice", .ids = (char **)ids, .nids = 2});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m1\",\"m2\"]}");
  tern_buf_reset(&b);

  const char *users[] = {"bob", "carol"};
  enc(&b, (tern_frame){.type = TERN_FRAME_WATCH, .users = (char **)users, .nusers = 2});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"watch\",\"users\":[\"bob\",\"carol\"]}");
  tern_buf_reset(&b);
  enc(&b, (tern_frame){.type = TERN_FRAME_UNWATCH, .users = (char **)users, .nusers = 0});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"unwatch\",\"users\":[]}");
  tern_buf_reset(&b);

  enc(&b, (tern_frame){.type = TERN_FRAME_TYPING, .to = "bob", .composing = true});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"composing\"}");
  tern_buf_reset(&b);
  enc(&b, (tern_frame){.type = TERN_FRAME_TYPING, .to = "bob", .composing = false});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"paused\"}");
  tern_buf_reset(&b);
  enc(&b, (tern_frame){.type = TERN_FRAME_PING});
  CHECK_EQ_STR(tern_buf_cstr(&b), "{\"type\":\"ping\"}");
  tern_buf_free(&b);
}

static void parse_str(const char *s, tern_client_event *ev) { tern_client_event_parse(s, strlen(s), ev); }

TEST(frames_parse) {
  tern_client_event ev;
  parse_str("{\"type\":\"ready\",\"user\":\"alice\",\"device_id\":\"d1\",\"server_time\":1795468495123}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_READY);
  CHECK_EQ_STR(ev.user, "alice");
  CHECK_EQ_STR(ev.device_id, "d1");
  CHECK_EQ_INT(ev.server_time, 1795468495123);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"synced\",\"seq\":42}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_SYNCED);
  CHECK_EQ_INT(ev.seq, 42);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m7\",\"from\":\"alice\",\"from_device\":\"d1\",\"to\":\"bob\","
            "\"ts\":1795468495000,\"body\":\"hi \\u2713\",\"media\":{\"media_id\":\"x9\",\"mime\":\"image/png\"}}",
            &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_MSG);
  CHECK_EQ_INT(ev.seq, 7);
  CHECK_EQ_STR(ev.msg_id, "m7");
  CHECK_EQ_STR(ev.from, "alice");
  CHECK_EQ_STR(ev.from_device, "d1");
  CHECK_EQ_STR(ev.to, "bob");
  CHECK_EQ_INT(ev.ts, 1795468495000);
  CHECK_EQ_STR(ev.body, "hi ✓");
  CHECK_EQ_INT(ev.body_len, strlen("hi ✓"));
  CHECK_EQ_STR(ev.media_id, "x9");
  CHECK(ev.json != NULL);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"receipt\",\"seq\":8,\"status\":\"delivered\",\"from\":\"alice\",\"by\":\"bob\","
            "\"msg_ids\":[\"a\",\"b\",\"c\"],\"ts\":5}",
            &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_RECEIPT);
  CHECK(!ev.read);
  CHECK_EQ_STR(ev.from, "alice");
  CHECK_EQ_STR(ev.by, "bob");
  CHECK_EQ_INT(ev.n_msg_ids, 3);
  if (ev.n_msg_ids == 3) CHECK_EQ_STR(ev.msg_ids[2], "c");
  tern_client_event_clear(&ev);
  parse_str("{\"type\":\"receipt\",\"seq\":9,\"status\":\"read\",\"from\":\"alice\",\"by\":\"bob\",\"msg_ids\":[]}",
            &ev);
  CHECK(ev.read);
  CHECK_EQ_INT(ev.n_msg_ids, 0);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"sent\",\"id\":\"c-1\",\"msg_id\":\"m1\",\"ts\":3}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_SENT);
  CHECK_EQ_STR(ev.id, "c-1");
  CHECK_EQ_STR(ev.msg_id, "m1");
  CHECK_EQ_INT(ev.ts, 3);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"error\",\"id\":\"c-1\",\"code\":\"no_such_user\",\"message\":\"nobody\"}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_ERROR);
  CHECK_EQ_STR(ev.id, "c-1");
  CHECK_EQ_STR(ev.code, "no_such_user");
  CHECK_EQ_STR(ev.message, "nobody");
  tern_client_event_clear(&ev);
  parse_str("{\"type\":\"error\",\"code\":\"no_such_user\",\"user\":\"zed\"}", &ev);
  CHECK(ev.id == NULL);
  CHECK_EQ_STR(ev.user, "zed");
  CHECK_EQ_STR(ev.message, "");
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"presence\",\"user\":\"bob\",\"online\":true}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_PRESENCE);
  CHECK(ev.online);
  CHECK_EQ_INT(ev.last_seen, -1);
  tern_client_event_clear(&ev);
  parse_str("{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":99}", &ev);
  CHECK(!ev.online);
  CHECK_EQ_INT(ev.last_seen, 99);
  tern_client_event_clear(&ev);
  parse_str("{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":null}", &ev);
  CHECK_EQ_INT(ev.last_seen, -1);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"typing\",\"from\":\"alice\",\"state\":\"composing\"}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_TYPING);
  CHECK(ev.composing);
  CHECK_EQ_STR(ev.from, "alice");
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"pong\",\"server_time\":12}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_PONG);
  CHECK_EQ_INT(ev.server_time, 12);
  tern_client_event_clear(&ev);

  parse_str("{\"type\":\"future\",\"x\":1}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_UNKNOWN);
  CHECK(ev.json != NULL);
  tern_client_event_clear(&ev);
  parse_str("not json", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_UNKNOWN);
  CHECK(ev.json == NULL);
  CHECK_EQ_INT(ev.raw_len, 8);
  tern_client_event_clear(&ev);
  parse_str("[1,2]", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_UNKNOWN);
  tern_client_event_clear(&ev);
}

/* ---- HTTP response parsing ---- */

static ssize_t feed_bytewise(tern_client_http_parser *hp, const char *s, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n && !hp->done; i++) {
    ssize_t r = tern_client_hp_feed(hp, s + i, 1);
    if (r < 0) return r;
    total += (size_t)r;
  }
  return (ssize_t)total;
}

TEST(http_response_ok) {
  const char body[] = "{\"user\":\"alice\",\"device_id\":\"d1\",\"token\":\"t0k\"}";
  char resp[512];
  snprintf(resp, sizeof resp,
           "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
           body);
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(feed_bytewise(&hp, resp, strlen(resp)), strlen(resp));
  CHECK(hp.done);
  CHECK_EQ_INT(hp.status, 201);
  tern_client_response r;
  tern_client_response_from_parser(&r, &hp);
  CHECK(r.ok);
  CHECK_EQ_STR(r.code, "");
  CHECK_EQ_STR(r.body, body);
  tern_client_account a;
  CHECK_EQ_INT(tern_client_parse_account(&r, &a), 0);
  CHECK_EQ_STR(a.user, "alice");
  CHECK_EQ_STR(a.device_id, "d1");
  CHECK_EQ_STR(a.token, "t0k");
  tern_client_response moved;
  tern_client_response_move(&moved, &r);
  CHECK(r.body == NULL && r.json == NULL);
  tern_client_response_free(&r);
  CHECK_EQ_STR(moved.body, body);
  tern_client_response_free(&moved);
  tern_client_hp_free(&hp);
}

TEST(http_response_error) {
  const char body[] = "{\"error\":{\"code\":\"rate_limited\",\"message\":\"slow down, please.....\"}}";
  char resp[256];
  snprintf(resp, sizeof resp, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: %zu\r\n\r\n%s",
           strlen(body), body);
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp, strlen(resp)), strlen(resp));
  CHECK(hp.done);
  tern_client_response r;
  tern_client_response_from_parser(&r, &hp);
  CHECK(!r.ok);
  CHECK_EQ_INT(r.status, 429);
  CHECK_EQ_STR(r.code, "rate_limited");
  CHECK_EQ_STR(r.message, "slow down, please.....");
  CHECK_EQ_STR(r.retry_after, "3");
  tern_client_response_free(&r);
  tern_client_hp_free(&hp);

  /* Not a tern error body. */
  const char resp2[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\noops";
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp2, strlen(resp2)), strlen(resp2));
  tern_client_response_from_parser(&r, &hp);
  CHECK(!r.ok);
  CHECK_EQ_STR(r.code, "bad_response");
  CHECK(r.json == NULL);
  tern_client_response_free(&r);
  tern_client_hp_free(&hp);

  /* 204: no body at all. */
  const char resp3[] = "HTTP/1.1 204 No Content\r\n\r\n";
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp3, strlen(resp3)), strlen(resp3));
  CHECK(hp.done);
  tern_client_response_from_parser(&r, &hp);
  CHECK(r.ok);
  CHECK_EQ_INT(r.body_len, 0);
  CHECK(r.body != NULL);
  tern_client_response_free(&r);
  tern_client_hp_free(&hp);
}

TEST(http_response_eof_and_garbage) {
  /* A body delimited by the end of the connection. */
  const char resp[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}";
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp, strlen(resp)), strlen(resp));
  CHECK(!hp.done);
  CHECK_EQ_INT(tern_client_hp_eof(&hp), 0);
  CHECK(hp.done);
  CHECK_EQ_INT(hp.body.len, 15);
  tern_client_hp_free(&hp);

  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, "SSH-2.0-OpenSSH\r\n", 17), -EBADMSG);
  tern_client_hp_free(&hp);

  /* Cut off in the head. */
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, "HTTP/1.1 200 OK\r\nConte", 22), 22);
  CHECK_EQ_INT(tern_client_hp_eof(&hp), -EBADMSG);
  tern_client_hp_free(&hp);

  /* A body larger than allowed is refused from its Content-Length. */
  tern_client_hp_init(&hp, 10);
  const char big[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
  CHECK_EQ_INT(tern_client_hp_feed(&hp, big, strlen(big)), -EBADMSG);
  tern_client_hp_free(&hp);
}

/* ---- media: sniffing, the 201 body, msg media fields, the listen line, streamed bodies ---- */

typedef struct sink_rec {
  tern_buf got;  /* bytes the sink received */
  int calls;
  int fail_at;   /* return an error on this call (1-based), 0 never */
} sink_rec;

static int rec_sink(const char *p, size_t n, void *arg) {
  sink_rec *r = arg;
  if (++r->calls == r->fail_at) return -EIO;
  tern_buf_append(&r->got, p, n);
  return 0;
}

TEST(image_size) {
  int64_t w, h;
  static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                      0, 0, 0x05, 0x00, 0, 0, 0x02, 0xd0, 8, 6, 0, 0, 0};
  CHECK_EQ_INT(tern_client_image_size(png, sizeof png, &w, &h), 0);
  CHECK_EQ_INT(w, 1280);
  CHECK_EQ_INT(h, 720);
  static const unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 0x90, 0x01, 0x2c, 0x01, 0, 0};
  CHECK_EQ_INT(tern_client_image_size(gif, sizeof gif, &w, &h), 0);
  CHECK_EQ_INT(w, 400);
  CHECK_EQ_INT(h, 300);
  /* JPEG: an APP0 segment, then SOF0 with height 480 and width 640. */
  static const unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 6, 'J', 'F', 'I', 'F', 0xff, 0xc0, 0, 17, 8,
                                      0x01, 0xe0, 0x02, 0x80, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1};
  CHECK_EQ_INT(tern_client_image_size(jpg, sizeof jpg, &w, &h), 0);
  CHECK_EQ_INT(w, 640);
  CHECK_EQ_INT(h, 480);
  static const unsigned char webp[] = {'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X',
                                       10, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0x02, 0, 0xdf, 0x01, 0};
  CHECK_EQ_INT(tern_client_image_size(webp, sizeof webp, &w, &h), 0);
  CHECK_EQ_INT(w, 640);
  CHECK_EQ_INT(h, 480);
  CHECK_EQ_INT(tern_client_image_size("<svg>", 5, &w, &h), -EINVAL);
  CHECK_EQ_INT(w, -1);
  CHECK(tern_client_image_size(jpg, 12, &w, &h) < 0); /* cut before the frame header */
}

TEST(media_client) {
  static const unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0}, png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  CHECK_EQ_STR(tern_client_sniff_image(jpg, sizeof jpg), "image/jpeg");
  CHECK_EQ_STR(tern_client_sniff_image(png, sizeof png), "image/png");
  CHECK_EQ_STR(tern_client_sniff_image("GIF89a..", 8), "image/gif");
  CHECK_EQ_STR(tern_client_sniff_image("GIF87a", 6), "image/gif");
  CHECK_EQ_STR(tern_client_sniff_image("RIFF\x10\0\0\0WEBPVP8 ", 16), "image/webp");
  CHECK(tern_client_sniff_image("RIFF\x10\0\0\0WAVE", 12) == NULL);
  CHECK(tern_client_sniff_image(png, 7) == NULL);
  CHECK(tern_client_sniff_image("<svg", 4) == NULL);
  CHECK(tern_client_sniff_image("", 0) == NULL);

  const char body[] = "{\"media_id\":\"abcdefghijklmnopqrstuvwxyz\",\"mime\":\"image/png\",\"size\":215040,"
                      "\"sha256\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\",\"width\":1280,\"height\":720}";
  char resp[512];
  snprintf(resp, sizeof resp, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 1 << 20);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp, strlen(resp)), strlen(resp));
  tern_client_response r;
  tern_client_response_from_parser(&r, &hp);
  tern_client_media md;
  CHECK_EQ_INT(tern_client_parse_media(&r, &md), 0);
  CHECK_EQ_STR(md.media_id, "abcdefghijklmnopqrstuvwxyz");
  CHECK_EQ_STR(md.mime, "image/png");
  CHECK_EQ_INT(md.size, 215040);
  CHECK_EQ_INT(md.width, 1280);
  CHECK_EQ_INT(md.height, 720);
  CHECK_EQ_INT(strlen(md.sha256), 64);
  tern_client_response_free(&r);
  tern_client_hp_free(&hp);

  tern_client_event ev;
  parse_str("{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"m\",\"from\":\"a\",\"to\":\"b\",\"ts\":1,\"media\":"
            "{\"media_id\":\"abcdefghijklmnopqrstuvwxyz\",\"mime\":\"image/jpeg\",\"size\":215040,\"sha256\":\"x\","
            "\"width\":1280,\"height\":720}}",
            &ev);
  CHECK(ev.body == NULL);
  CHECK_EQ_STR(ev.media_mime, "image/jpeg");
  CHECK_EQ_INT(ev.media_size, 215040);
  CHECK_EQ_INT(ev.media_width, 1280);
  CHECK_EQ_INT(ev.media_height, 720);
  char line[160];
  tern_client_format_media(&ev, line, sizeof line);
  CHECK_EQ_STR(line, "[image 1280×720, 210 KiB] abcdefghijklmnopqrstuvwxyz");
  ev.media_size = 3 << 20;
  tern_client_format_media(&ev, line, sizeof line);
  CHECK_EQ_STR(line, "[image 1280×720, 3.0 MiB] abcdefghijklmnopqrstuvwxyz");
  ev.media_size = 900;
  ev.media_width = -1;
  tern_client_format_media(&ev, line, sizeof line);
  CHECK_EQ_STR(line, "[image 900 B] abcdefghijklmnopqrstuvwxyz");
  tern_client_event_clear(&ev);
  parse_str("{\"type\":\"msg\",\"seq\":2,\"body\":\"hi\"}", &ev);
  CHECK(ev.media_id == NULL && ev.media_mime == NULL);
  CHECK_EQ_INT(ev.media_size, -1);
  tern_client_event_clear(&ev);

  /* A 2xx body goes to the sink, byte for byte, however it is split and however large. */
  sink_rec sr = {0};
  tern_client_hp_init(&hp, 4);
  hp.sink = rec_sink;
  hp.sink_arg = &sr;
  const char ok[] = "HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 11\r\n\r\nhello world";
  CHECK_EQ_INT(feed_bytewise(&hp, ok, strlen(ok)), strlen(ok));
  CHECK(hp.done);
  CHECK_EQ_INT(sr.got.len, 11);
  CHECK(memcmp(sr.got.data, "hello world", 11) == 0);
  CHECK_EQ_INT(hp.body.len, 0);
  tern_client_response_from_parser(&r, &hp);
  CHECK_EQ_STR(r.etag, "\"abc\"");
  tern_client_response_free(&r);
  tern_client_hp_free(&hp);
  tern_buf_free(&sr.got);
  /* An error answer is buffered as usual, never handed to the sink. */
  sr = (sink_rec){0};
  tern_client_hp_init(&hp, 1 << 20);
  hp.sink = rec_sink;
  hp.sink_arg = &sr;
  const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
  CHECK_EQ_INT(tern_client_hp_feed(&hp, nf, strlen(nf)), strlen(nf));
  CHECK_EQ_INT(sr.calls, 0);
  CHECK_EQ_INT(hp.body.len, 2);
  tern_client_hp_free(&hp);
  /* A sink that fails stops the parse with its code. */
  sr = (sink_rec){.fail_at = 2};
  tern_client_hp_init(&hp, 1 << 20);
  hp.sink = rec_sink;
  hp.sink_arg = &sr;
  CHECK_EQ_INT(feed_bytewise(&hp, ok, strlen(ok)), -EBADMSG);
  CHECK_EQ_INT(hp.sink_err, -EIO);
  tern_client_hp_free(&hp);
  tern_buf_free(&sr.got);
}

TEST(http_upgrade_answer) {
  char key[25];
  tern_buf req = {0};
  tern_client_upgrade_request(&req, "127.0.0.1:8080", key);
  CHECK_EQ_INT(strlen(key), 24);
  CHECK(strstr(tern_buf_cstr(&req), "GET /v1/ws HTTP/1.1\r\n") == req.data);
  CHECK(strstr(req.data, "Host: 127.0.0.1:8080\r\n") != NULL);
  CHECK(strstr(req.data, "Sec-WebSocket-Version: 13\r\n") != NULL);
  CHECK(strstr(req.data, key) != NULL);
  CHECK(req.len > 4 && memcmp(req.data + req.len - 4, "\r\n\r\n", 4) == 0);
  tern_buf_free(&req);

  char accept[29];
  tern_ws_accept_key(key, strlen(key), accept);
  char resp[512];
  /* The answer is followed at once by a server frame, which must be left unparsed. */
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n\x81\x02{}",
                   accept);
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 4096);
  ssize_t used = tern_client_hp_feed(&hp, resp, (size_t)n);
  CHECK(hp.done);
  CHECK(hp.upgrade);
  CHECK_EQ_INT(used, n - 4);
  const char *why = NULL;
  CHECK_EQ_INT(tern_client_upgrade_check(&hp, key, &why), 0);
  CHECK_EQ_INT(tern_client_upgrade_check(&hp, "AAAAAAAAAAAAAAAAAAAAAA==", &why), -EPROTO);
  tern_client_hp_free(&hp);

  const char refused[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}";
  tern_client_hp_init(&hp, 4096);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, refused, strlen(refused)), strlen(refused));
  CHECK_EQ_INT(tern_client_upgrade_check(&hp, key, &why), -EPROTO);
  tern_client_hp_free(&hp);
}

/* ---- a scripted server on loopback ---- */

typedef enum {
  SCRIPT_CHAT,
  SCRIPT_SERVER_CLOSE,
  SCRIPT_REFUSE,
  SCRIPT_HTTP,
  SCRIPT_GROUPS,       /* the group API: two list pages, a refusal for anything else */
  SCRIPT_GROUPS_STUCK, /* a list whose "next" never moves */
  SCRIPT_GROUP_CHAT,   /* as SCRIPT_CHAT, but the client answers with group frames */
} script_kind;

typedef struct fake {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_tcp_t *peer;         /* the latest client (one at a time); freed when closed */
  script_kind kind;
  uint16_t port;
  tern_buf in;            /* bytes from the client */
  bool upgraded;
  tern_ws_reader reader;  /* client frames (must be masked) */
  char frames[16][256];   /* text messages received, "pong:<payload>", "close:<code>" */
  int nframes;
  char request[2048];     /* the HTTP request head */
  char lines[8][160];     /* SCRIPT_GROUPS*: the request lines, in order */
  int nlines;
} fake;

static void fake_write(fake *f, const void *p, size_t n) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  uv_try_write((uv_stream_t *)f->peer, &b, 1); /* loopback, small: it fits */
}

static void fake_frame(fake *f, uint8_t op, bool fin, const char *s) {
  tern_buf b = {0};
  tern_ws_append_frame(&b, op, fin, s, strlen(s), NULL);
  fake_write(f, b.data, b.len);
  tern_buf_free(&b);
}

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  buf->base = tern_malloc(65536);
  buf->len = 65536;
}

/* The group API as SCRIPT_GROUPS plays it: the list in two pages (A1, B2 | C3), and a 403
 * naming a user for every other request. SCRIPT_GROUPS_STUCK answers every list request with
 * the first page. */
static void fake_groups_answer(fake *f) {
  const char *eol = strstr(f->request, "\r\n");
  if (f->nlines < 8) snprintf(f->lines[f->nlines++], sizeof f->lines[0], "%.*s", (int)(eol - f->request), f->request);
  const char *page1 = "{\"groups\":[{\"group_id\":\"A1\",\"name\":\"Trip\",\"role\":\"admin\",\"members\":3},"
                      "{\"group_id\":\"B2\",\"name\":\"Trip\",\"role\":\"member\",\"members\":2}],\"next\":\"B2\"}";
  const char *page2 = "{\"groups\":[{\"group_id\":\"C3\",\"name\":\"Book club\",\"members\":9}],\"next\":null}";
  const char *refusal = "{\"error\":{\"code\":\"forbidden\",\"message\":\"no\",\"user\":\"bob\"}}";
  const char *body = refusal, *status = "403 Forbidden";
  if (strncmp(f->request, "GET /v1/groups?", 15) == 0) {
    status = "200 OK";
    body = f->kind == SCRIPT_GROUPS && strstr(f->request, "after=B2") ? page2 : page1;
  }
  char resp[1024];
  int n = snprintf(resp, sizeof resp, "HTTP/1.1 %s\r\nContent-Length: %zu\r\n\r\n%s", status, strlen(body), body);
  fake_write(f, resp, (size_t)n);
}

static void fake_handshake(fake *f) {
  char *end = strstr(tern_buf_cstr(&f->in), "\r\n\r\n");
  if (!end) return;
  size_t head = (size_t)(end - f->in.data) + 4;
  snprintf(f->request, sizeof f->request, "%.*s", (int)head, f->in.data);
  if (f->kind == SCRIPT_GROUPS || f->kind == SCRIPT_GROUPS_STUCK) {
    fake_groups_answer(f);
    tern_buf_consume(&f->in, head);
    return;
  }
  if (f->kind == SCRIPT_HTTP) {
    const char *b = "{\"error\":{\"code\":\"username_taken\",\"message\":\"that name is taken\"}}";
    char resp[256];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 409 Conflict\r\nContent-Length: %zu\r\n\r\n%s", strlen(b), b);
    fake_write(f, resp, (size_t)n);
    tern_buf_consume(&f->in, head);
    return;
  }
  if (f->kind == SCRIPT_REFUSE) {
    const char *b = "{\"error\":{\"code\":\"bad_request\",\"message\":\"no\"}}";
    char resp[256];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 400 Bad Request\r\nContent-Length: %zu\r\n\r\n%s", strlen(b), b);
    fake_write(f, resp, (size_t)n);
    tern_buf_consume(&f->in, head);
    return;
  }
  const char *k = strstr(f->request, "Sec-WebSocket-Key: ");
  char key[25] = "";
  if (k) snprintf(key, sizeof key, "%.24s", k + 19);
  char accept[29];
  tern_ws_accept_key(key, strlen(key), accept);
  char resp[256];
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  /* The 101 and the first frames in one write: the client must split them itself. */
  tern_buf out = {0};
  tern_buf_append(&out, resp, (size_t)n);
  const char *ready = "{\"type\":\"ready\",\"user\":\"alice\",\"device_id\":\"d1\"}";
  tern_ws_append_frame(&out, TERN_WS_OP_TEXT, true, ready, strlen(ready), NULL);
  fake_write(f, out.data, out.len);
  tern_buf_free(&out);
  tern_buf_consume(&f->in, head);
  f->upgraded = true;
  if (f->kind == SCRIPT_GROUP_CHAT) {
    fake_frame(f, TERN_WS_OP_TEXT, true,
               "{\"type\":\"msg\",\"seq\":6,\"msg_id\":\"m6\",\"group_id\":\"G1\",\"from\":\"bob\",\"ts\":1,"
               "\"body\":\"all\"}");
  } else if (f->kind == SCRIPT_CHAT) {
    fake_frame(f, TERN_WS_OP_PING, true, "hi");
    /* A message in two fragments with a ping between them. */
    fake_frame(f, TERN_WS_OP_TEXT, false, "{\"type\":\"msg\",\"seq\":5,\"msg_id\":\"m5\",");
    fake_frame(f, TERN_WS_OP_PING, true, "x");
    fake_frame(f, TERN_WS_OP_CONT, true, "\"from\":\"bob\",\"to\":\"alice\",\"ts\":1,\"body\":\"yo\"}");
  } else if (f->kind == SCRIPT_SERVER_CLOSE) {
    tern_buf c = {0};
    tern_ws_append_close(&c, 4002, "logged out", NULL);
    fake_write(f, c.data, c.len);
    tern_buf_free(&c);
  }
}

static void fake_peer_closed(uv_handle_t *h) {
  fake *f = h->data;
  if (f->peer == (uv_tcp_t *)h) f->peer = NULL;
  tern_free(h);
}

static void fake_close_peer(uv_stream_t *s) {
  if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, fake_peer_closed);
}

static void fake_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  fake *f = s->data;
  if (nread > 0) tern_buf_append(&f->in, buf->base, (size_t)nread);
  tern_free(buf->base);
  if (nread < 0) {
    fake_close_peer(s);
    return;
  }
  if (!f->upgraded) fake_handshake(f);
  if (!f->upgraded) return;
  for (;;) {
    tern_ws_event ev;
    size_t used = tern_ws_read(&f->reader, (uint8_t *)f->in.data, f->in.len, &ev);
    if (ev.type == TERN_WS_EV_NONE) {
      tern_buf_consume(&f->in, used);
      if (!used) break;
      continue;
    }
    if (f->nframes >= 16) break;
    char *slot = f->frames[f->nframes++];
    if (ev.type == TERN_WS_EV_MESSAGE) {
      snprintf(slot, 256, "%.*s", (int)ev.len, (const char *)ev.data);
    } else if (ev.type == TERN_WS_EV_PONG) {
      snprintf(slot, 256, "pong:%.*s", (int)ev.len, (const char *)ev.data);
    } else if (ev.type == TERN_WS_EV_CLOSE) {
      snprintf(slot, 256, "close:%u", ev.close_code);
      if (f->kind == SCRIPT_CHAT || f->kind == SCRIPT_GROUP_CHAT) {
        tern_buf c = {0};
        tern_ws_append_close(&c, ev.close_code, "", NULL);
        fake_write(f, c.data, c.len);
        tern_buf_free(&c);
      }
      fake_close_peer(s);
      tern_buf_consume(&f->in, used);
      break;
    } else {
      snprintf(slot, 256, "event:%d", ev.type);
    }
    /* ev.data points into f->in: consume only after copying it. */
    tern_buf_consume(&f->in, used);
  }
}

static void fake_on_conn(uv_stream_t *l, int status) {
  fake *f = l->data;
  f->peer = TERN_NEW(uv_tcp_t);
  uv_tcp_init(f->loop, f->peer);
  f->peer->data = f;
  /* One request per connection: what is left of the one before is not part of this one. */
  if (f->kind == SCRIPT_GROUPS || f->kind == SCRIPT_GROUPS_STUCK) tern_buf_reset(&f->in);
  uv_accept(l, (uv_stream_t *)f->peer);
  uv_read_start((uv_stream_t *)f->peer, fake_alloc, fake_on_read);
}

static void fake_start(fake *f, uv_loop_t *loop, script_kind kind) {
  memset(f, 0, sizeof *f);
  f->loop = loop;
  f->kind = kind;
  tern_ws_reader_init(&f->reader, true, 1 << 20);
  uv_tcp_init(loop, &f->listener);
  f->listener.data = f;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_bind(&f->listener, (const struct sockaddr *)&a, 0);
  uv_listen((uv_stream_t *)&f->listener, 8, fake_on_conn);
  struct sockaddr_in got;
  int len = sizeof got;
  uv_tcp_getsockname(&f->listener, (struct sockaddr *)&got, &len);
  f->port = ntohs(got.sin_port);
}

static void fake_stop(fake *f) {
  uv_close((uv_handle_t *)&f->listener, NULL);
  if (f->peer) fake_close_peer((uv_stream_t *)f->peer);
  tern_ws_reader_free(&f->reader);
  tern_buf_free(&f->in);
}

typedef struct observer {
  tern_client_event_type types[32]; /* events seen, in order */
  int n;
  char msg_body[64];
  uint64_t msg_seq;
  tern_client_event closed;         /* copy of the CLOSED event (pointers not kept) */
  char closed_message[256];
  bool send_rc_checked;
  int send_rc;
  size_t queued;                    /* outbound bytes right after queuing ack + send */
} observer;

static void on_event(tern_client_conn *conn, const tern_client_event *ev, void *arg) {
  observer *o = arg;
  if (o->n < 32) o->types[o->n++] = ev->type;
  if (ev->type == TERN_CLIENT_EV_MSG && ev->group_id) {
    /* The group shorthands, and what they refuse before writing. */
    snprintf(o->msg_body, sizeof o->msg_body, "%s", ev->body ? ev->body : "");
    const char *ids[] = {ev->msg_id};
    o->send_rc = tern_client_read_group(conn, ev->group_id, ev->from, ids, 1) |
                 tern_client_typing_group(conn, ev->group_id, true) |
                 tern_client_send_group(conn, "c-2", ev->group_id, "to all", 6, NULL) |
                 tern_client_send_group(conn, "c-3", ev->group_id, NULL, 0, "m1");
    o->send_rc_checked = tern_client_send_group(conn, "c-4", "not a group", "x", 1, NULL) == -EINVAL &&
                         tern_client_send_group(conn, "c-5", ev->group_id, NULL, 0, NULL) == -EINVAL &&
                         tern_client_typing_group(conn, NULL, true) == -EINVAL &&
                         tern_client_read_group(conn, NULL, "bob", ids, 1) == -EINVAL;
    tern_client_close(conn, 0);
  } else if (ev->type == TERN_CLIENT_EV_MSG) {
    snprintf(o->msg_body, sizeof o->msg_body, "%s", ev->body ? ev->body : "");
    o->msg_seq = ev->seq;
    /* Three frames from one callback: they leave in one write, after the pong. */
    tern_client_ack(conn, ev->seq);
    o->send_rc = tern_client_send(conn, "c-1", "bob", "back", 4, NULL);
    /* Queued, not written yet: the flush happens once per loop iteration. */
    o->queued = tern_client_outbound(conn);
    tern_client_close(conn, 0);
    /* Closing: further frames are refused. */
    o->send_rc_checked = tern_client_ping(conn) == -ENOTCONN;
  } else if (ev->type == TERN_CLIENT_EV_CLOSED) {
    o->closed = *ev;
    snprintf(o->closed_message, sizeof o->closed_message, "%s", ev->message);
  }
}

static void run_conn(script_kind kind, observer *o, fake *f, const char *token) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_start(f, &loop, kind);
  tern_client *c = tern_client_new(&loop, NULL);
  tern_client_url url;
  char s[64];
  snprintf(s, sizeof s, "http://127.0.0.1:%u", f->port);
  tern_client_url_parse(s, &url);
  memset(o, 0, sizeof *o);
  tern_client_conn_options opts = {.url = &url, .token = token, .on_event = on_event, .arg = o};
  tern_client_conn *conn = NULL;
  CHECK_EQ_INT(tern_client_connect(c, &opts, &conn), 0);
  CHECK(!tern_client_is_open(conn));
  CHECK_EQ_INT(tern_client_ack(conn, 1), -ENOTCONN);
  /* Run until the connection is gone (the CLOSED event is the last). */
  while (o->n == 0 || o->types[o->n - 1] != TERN_CLIENT_EV_CLOSED) uv_run(&loop, UV_RUN_ONCE);
  fake_stop(f);
  tern_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* The frames the scripted server read, against want. */
static void check_frames(const fake *f, const char *const *want, int n) {
  CHECK_EQ_INT(f->nframes, n);
  for (int i = 0; i < n && i < f->nframes; i++) CHECK_EQ_STR(f->frames[i], want[i]);
}

TEST(ws_conn_chat) {
  observer o;
  fake f;
  run_conn(SCRIPT_CHAT, &o, &f, "secret-token");
  CHECK(strstr(f.request, "GET /v1/ws HTTP/1.1\r\n") == f.request);
  CHECK(strstr(f.request, "Upgrade: websocket") != NULL);
  CHECK_EQ_INT(o.n, 4);
  CHECK_EQ_INT(o.types[0], TERN_CLIENT_EV_OPEN);
  CHECK_EQ_INT(o.types[1], TERN_CLIENT_EV_READY);
  CHECK_EQ_INT(o.types[2], TERN_CLIENT_EV_MSG);
  CHECK_EQ_INT(o.types[3], TERN_CLIENT_EV_CLOSED);
  CHECK_EQ_STR(o.msg_body, "yo");
  CHECK_EQ_INT(o.msg_seq, 5);
  CHECK_EQ_INT(o.send_rc, 0);
  CHECK(o.send_rc_checked);
  CHECK(o.queued > 80); /* at least the ack (28 bytes) and the send (58), still queued */
  CHECK_EQ_INT(o.closed.close_code, 1000);
  CHECK_EQ_INT(o.closed.err, 0);
  /* What the server read: auth first, pongs echoing the pings, then ack, send, close. */
  static const char *const want[] = {
      "{\"type\":\"auth\",\"token\":\"secret-token\"}", "pong:hi", "pong:x", "{\"type\":\"ack\",\"seq\":5}",
      "{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"bob\",\"body\":\"back\"}", "close:1000"};
  check_frames(&f, want, (int)TERN_ARRAY_LEN(want));
}

TEST(ws_conn_group_frames) {
  observer o;
  fake f;
  run_conn(SCRIPT_GROUP_CHAT, &o, &f, "t");
  CHECK_EQ_STR(o.msg_body, "all");
  CHECK_EQ_INT(o.send_rc, 0);
  CHECK(o.send_rc_checked);
  static const char *const want[] = {
      "{\"type\":\"auth\",\"token\":\"t\"}",
      "{\"type\":\"read\",\"group_id\":\"G1\",\"peer\":\"bob\",\"msg_ids\":[\"m6\"]}",
      "{\"type\":\"typing\",\"group_id\":\"G1\",\"state\":\"composing\"}",
      "{\"type\":\"send\",\"id\":\"c-2\",\"group_id\":\"G1\",\"body\":\"to all\"}",
      "{\"type\":\"send\",\"id\":\"c-3\",\"group_id\":\"G1\",\"media\":{\"media_id\":\"m1\"}}",
      "close:1000"};
  check_frames(&f, want, (int)TERN_ARRAY_LEN(want));
}

TEST(ws_conn_server_close) {
  observer o;
  fake f;
  run_conn(SCRIPT_SERVER_CLOSE, &o, &f, NULL);
  CHECK_EQ_INT(o.n, 3);
  CHECK_EQ_INT(o.types[0], TERN_CLIENT_EV_OPEN);
  CHECK_EQ_INT(o.types[1], TERN_CLIENT_EV_READY);
  CHECK_EQ_INT(o.types[2], TERN_CLIENT_EV_CLOSED);
  CHECK_EQ_INT(o.closed.close_code, 4002);
  CHECK_EQ_STR(o.closed_message, "logged out");
  CHECK_EQ_STR(tern_client_close_code_name(4002), "device logged out");
  /* No token: nothing before the echo of the close. */
  CHECK(f.nframes >= 1);
  CHECK_EQ_STR(f.frames[0], "close:4002");
}

TEST(ws_conn_refused_upgrade) {
  observer o;
  fake f;
  run_conn(SCRIPT_REFUSE, &o, &f, "t");
  CHECK_EQ_INT(o.n, 1);
  CHECK_EQ_INT(o.types[0], TERN_CLIENT_EV_CLOSED);
  CHECK_EQ_INT(o.closed.err, -EPROTO);
  CHECK_EQ_INT(o.closed.http_status, 400);
  CHECK_EQ_INT(o.closed.close_code, 0);
  CHECK(strstr(o.closed_message, "bad_request") != NULL);
}

TEST(ws_conn_connection_refused) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* A port nobody listens on: bind one, note it, close it. */
  fake f;
  fake_start(&f, &loop, SCRIPT_CHAT);
  uint16_t port = f.port;
  fake_stop(&f);
  uv_run(&loop, UV_RUN_DEFAULT);
  tern_client *c = tern_client_new(&loop, NULL);
  char s[64];
  snprintf(s, sizeof s, "127.0.0.1:%u", port);
  tern_client_url url;
  tern_client_url_parse(s, &url);
  observer o;
  memset(&o, 0, sizeof o);
  tern_client_conn_options opts = {.url = &url, .token = "t", .on_event = on_event, .arg = &o};
  tern_client_conn *conn;
  CHECK_EQ_INT(tern_client_connect(c, &opts, &conn), 0);
  CHECK_EQ_INT(o.n, 0); /* never a callback from inside the call */
  while (o.n == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK_EQ_INT(o.types[0], TERN_CLIENT_EV_CLOSED);
  CHECK_EQ_INT(o.closed.err, UV_ECONNREFUSED);
  CHECK_EQ_INT(o.closed.close_code, 0);
  /* Bad arguments fail at once, with no callback. */
  tern_client_conn_options bad = {.url = &url, .on_event = NULL};
  CHECK_EQ_INT(tern_client_connect(c, &bad, &conn), -EINVAL);
  tern_client_conn_options badip = {.url = &url, .on_event = on_event, .arg = &o, .bind_ip = "not-an-ip"};
  CHECK_EQ_INT(tern_client_connect(c, &badip, &conn), -EINVAL);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(o.n, 1);
  tern_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

typedef struct http_obs {
  bool called;
  tern_client_response r;
} http_obs;

static void on_http(tern_client_response *r, void *arg) {
  http_obs *h = arg;
  h->called = true;
  tern_client_response_move(&h->r, r);
}

/* Runs the loop until h is answered, and checks that the answer refuses with status and code. */
static void expect_refusal(uv_loop_t *loop, http_obs *h, int status, const char *code) {
  while (!h->called) uv_run(loop, UV_RUN_ONCE);
  CHECK(!h->r.ok);
  CHECK_EQ_INT(h->r.status, status);
  CHECK_EQ_STR(h->r.code, code);
}

TEST(http_request_roundtrip) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake f;
  fake_start(&f, &loop, SCRIPT_HTTP);
  tern_client *c = tern_client_new(&loop, NULL);
  char s[64];
  snprintf(s, sizeof s, "http://127.0.0.1:%u", f.port);
  tern_client_url url;
  tern_client_url_parse(s, &url);
  http_obs h;
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(tern_client_register(c, &url, "alice", "pass\"word", "lap", on_http, &h), 0);
  CHECK(!h.called);
  expect_refusal(&loop, &h, 409, "username_taken");
  CHECK_EQ_STR(h.r.message, "that name is taken");
  tern_client_response_free(&h.r);
  CHECK(strstr(f.request, "POST /v1/register HTTP/1.1\r\n") == f.request);
  CHECK(strstr(f.request, "Content-Type: application/json\r\n") != NULL);
  const char *cl = strstr(f.request, "Content-Length: ");
  CHECK(cl != NULL);
  /* The body that followed the head. */
  tern_buf_cstr(&f.in);
  CHECK_EQ_STR(f.in.data, "{\"username\":\"alice\",\"password\":\"pass\\\"word\",\"device\":\"lap\"}");
  if (cl) CHECK_EQ_INT(atoi(cl + 16), f.in.len);

  /* whois escapes the name into the path, and sends the token. */
  tern_buf_reset(&f.in);
  f.request[0] = '\0';
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(tern_client_whois(c, &url, "tok", "a b/c", on_http, &h), 0);
  while (!h.called) uv_run(&loop, UV_RUN_ONCE);
  tern_client_response_free(&h.r);
  CHECK(strstr(f.request, "GET /v1/users/a%20b%2Fc HTTP/1.1\r\n") == f.request);
  CHECK(strstr(f.request, "Authorization: Bearer tok\r\n") != NULL);
  CHECK_EQ_INT(tern_client_whois(c, &url, "tok\r\nX: y", "bob", on_http, &h), -EINVAL);

  fake_stop(&f);
  uv_run(&loop, UV_RUN_NOWAIT);
  /* Nobody listens now: a network error with code "network". */
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(tern_client_me(c, &url, "tok", on_http, &h), 0);
  while (!h.called) uv_run(&loop, UV_RUN_ONCE);
  CHECK(!h.r.ok);
  CHECK_EQ_INT(h.r.status, 0);
  CHECK_EQ_INT(h.r.err, UV_ECONNREFUSED);
  CHECK_EQ_STR(h.r.code, "network");
  tern_client_response_free(&h.r);

  /* A request still running when the context is freed gets no callback. */
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(tern_client_me(c, &url, "tok", on_http, &h), 0);
  tern_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(!h.called);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

typedef struct list_obs {
  bool called;
  tern_client_response r;    /* moved out of the callback */
  tern_client_group_list all; /* taken over from the callback */
  bool had_all;
} list_obs;

static void on_list(tern_client_response *r, tern_client_group_list *all, void *arg) {
  list_obs *o = arg;
  o->called = true;
  tern_client_response_move(&o->r, r);
  if (all) {
    o->had_all = true;
    o->all = *all;
    memset(all, 0, sizeof *all);
  }
}

/* Starts a scripted server of kind and a context on loop; url points at the server. */
static tern_client *groups_setup(uv_loop_t *loop, fake *f, script_kind kind, tern_client_url *url) {
  uv_loop_init(loop);
  fake_start(f, loop, kind);
  char s[64];
  snprintf(s, sizeof s, "http://127.0.0.1:%u", f->port);
  tern_client_url_parse(s, url);
  return tern_client_new(loop, NULL);
}

static void groups_teardown(uv_loop_t *loop, fake *f, tern_client *c) {
  fake_stop(f);
  tern_client_free(c);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(loop), 0);
}

/* Starts the i-th group call of group_requests. */
static int group_call(tern_client *c, const tern_client_url *url, int i, http_obs *h) {
  static const char *users[] = {"bob", "Carol \"C\""};
  switch (i) {
    case 0: return tern_client_group_create(c, url, "tok", "Trip ✈", "to \"the\" sea", users, 2, on_http, h);
    case 1: return tern_client_group_get(c, url, "tok", "A1", on_http, h);
    case 2: return tern_client_group_update(c, url, "tok", "A1", NULL, "", on_http, h);
    case 3: return tern_client_group_add(c, url, "tok", "A1", users, 1, on_http, h);
    case 4: return tern_client_group_remove(c, url, "tok", "A1", "a b/c", on_http, h);
    case 5: return tern_client_group_set_admin(c, url, "tok", "A1", "bob", true, on_http, h);
    case 6: return tern_client_group_set_admin(c, url, "tok", "A1", "bob", false, on_http, h);
    default: return tern_client_group_create(c, url, "tok", "solo", NULL, NULL, 0, on_http, h);
  }
}

TEST(group_requests) {
  /* What each call of group_call sends: its request line and its body ("" for none). */
  static const struct {
    const char *line;
    const char *body;
  } want[] = {
      {"POST /v1/groups HTTP/1.1",
       "{\"name\":\"Trip ✈\",\"description\":\"to \\\"the\\\" sea\",\"members\":[\"bob\",\"Carol \\\"C\\\"\"]}"},
      {"GET /v1/groups/A1 HTTP/1.1", ""},
      {"PATCH /v1/groups/A1 HTTP/1.1", "{\"description\":\"\"}"},
      {"POST /v1/groups/A1/members HTTP/1.1", "{\"users\":[\"bob\"]}"},
      {"DELETE /v1/groups/A1/members/a%20b%2Fc HTTP/1.1", ""},
      {"PUT /v1/groups/A1/admins/bob HTTP/1.1", ""},
      {"DELETE /v1/groups/A1/admins/bob HTTP/1.1", ""},
      {"POST /v1/groups HTTP/1.1", "{\"name\":\"solo\",\"members\":[]}"},
  };
  uv_loop_t loop;
  fake f;
  tern_client_url url;
  tern_client *c = groups_setup(&loop, &f, SCRIPT_GROUPS, &url);
  http_obs h;
  /* One at a time: the scripted server serves one connection at once. */
  for (int i = 0; i < (int)TERN_ARRAY_LEN(want); i++) {
    memset(&h, 0, sizeof h);
    CHECK_EQ_INT(group_call(c, &url, i, &h), 0);
    /* The scripted server refuses them all: 403, naming bob. */
    expect_refusal(&loop, &h, 403, "forbidden");
    CHECK_EQ_STR(h.r.user, "bob");
    tern_client_response_free(&h.r);
    CHECK_EQ_INT(f.nlines, i + 1);
    if (f.nlines == i + 1) CHECK_EQ_STR(f.lines[i], want[i].line);
    CHECK(strstr(f.request, "Authorization: Bearer tok\r\n") != NULL);
    CHECK_EQ_INT(strstr(f.request, "Content-Type: application/json\r\n") != NULL, want[i].body[0] != '\0');
    /* The body left after the head (it may still be on its way when the answer has come). */
    for (int spins = 0; spins < 1000 && f.in.len < strlen(want[i].body); spins++) uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_STR(tern_buf_cstr(&f.in), want[i].body);
  }
  /* Bad arguments: -EINVAL and no request. */
  const char *users[] = {"bob", NULL};
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(tern_client_group_get(c, &url, "tok", "../admin", on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_get(c, &url, NULL, "A1", on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_create(c, &url, "tok", NULL, NULL, NULL, 0, on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_create(c, &url, "tok", "x", NULL, users, 2, on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_add(c, &url, "tok", "A1", users, 0, on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_update(c, &url, "tok", "A1", NULL, NULL, on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_remove(c, &url, "tok", "A1", "", on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_set_admin(c, &url, "tok", "A 1", "bob", true, on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_list_page(c, &url, "tok", "a&b", 0, on_http, &h), -EINVAL);
  CHECK_EQ_INT(tern_client_group_list_all(c, &url, NULL, NULL, NULL), -EINVAL);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(!h.called);
  CHECK_EQ_INT(f.nlines, 8);
  groups_teardown(&loop, &f, c);
}

TEST(group_list_all) {
  uv_loop_t loop;
  fake f;
  tern_client_url url;
  tern_client *c = groups_setup(&loop, &f, SCRIPT_GROUPS, &url);
  list_obs o;
  memset(&o, 0, sizeof o);
  CHECK_EQ_INT(tern_client_group_list_all(c, &url, "tok", on_list, &o), 0);
  CHECK(!o.called);
  while (!o.called) uv_run(&loop, UV_RUN_ONCE);
  CHECK(o.r.ok);
  CHECK(o.had_all);
  CHECK_EQ_INT(o.all.n, 3);
  if (o.all.n == 3) {
    CHECK_EQ_STR(o.all.groups[0].group_id, "A1");
    CHECK(o.all.groups[0].admin);
    CHECK_EQ_STR(o.all.groups[1].group_id, "B2");
    CHECK_EQ_STR(o.all.groups[2].name, "Book club");
    CHECK_EQ_INT(o.all.groups[2].members, 9);
  }
  CHECK_EQ_STR(o.all.next, "");
  CHECK_EQ_INT(f.nlines, 2);
  CHECK_EQ_STR(f.lines[0], "GET /v1/groups?limit=500 HTTP/1.1");
  CHECK_EQ_STR(f.lines[1], "GET /v1/groups?after=B2&limit=500 HTTP/1.1");
  tern_client_group_list_free(&o.all);
  tern_client_response_free(&o.r);

  /* One page by hand. */
  http_obs h;
  memset(&h, 0, sizeof h);
  CHECK_EQ_INT(tern_client_group_list_page(c, &url, "tok", "B2", 2, on_http, &h), 0);
  while (!h.called) uv_run(&loop, UV_RUN_ONCE);
  CHECK_EQ_STR(f.lines[2], "GET /v1/groups?after=B2&limit=2 HTTP/1.1");
  tern_client_group_list page;
  CHECK_EQ_INT(tern_client_parse_group_list(&h.r, &page), 0);
  CHECK_EQ_INT(page.n, 1);
  tern_client_group_list_free(&page);
  tern_client_response_free(&h.r);

  /* Freeing the context in the middle of the list frees it without a callback. */
  memset(&o, 0, sizeof o);
  CHECK_EQ_INT(tern_client_group_list_all(c, &url, "tok", on_list, &o), 0);
  groups_teardown(&loop, &f, c);
  CHECK(!o.called);

  /* A "next" that never moves ends the list with bad_response, not a loop. */
  c = groups_setup(&loop, &f, SCRIPT_GROUPS_STUCK, &url);
  memset(&o, 0, sizeof o);
  CHECK_EQ_INT(tern_client_group_list_all(c, &url, "tok", on_list, &o), 0);
  while (!o.called) uv_run(&loop, UV_RUN_ONCE);
  CHECK(!o.r.ok);
  CHECK(!o.had_all);
  CHECK_EQ_STR(o.r.code, "bad_response");
  CHECK(strstr(o.r.message, "next") != NULL);
  CHECK_EQ_INT(f.nlines, 2);
  tern_client_response_free(&o.r);
  groups_teardown(&loop, &f, c);
}

TEST(http_sync_unreachable) {
  tern_client_url url;
  tern_client_url_parse("http://127.0.0.1:1", &url);
  tern_client_request req = {.method = "GET", .path = "/healthz"};
  tern_client_response r;
  CHECK_EQ_INT(tern_client_http_sync(&url, &req, 5000, &r), -1);
  CHECK(!r.ok);
  CHECK_EQ_STR(r.code, "network");
  tern_client_response_free(&r);
}

int main(void) {
  RUN(url_parse);
  RUN(new_id_unique);
  RUN(frames_build);
  RUN(frames_parse);
  RUN(http_response_ok);
  RUN(http_response_error);
  RUN(http_response_eof_and_garbage);
  RUN(http_upgrade_answer);
  RUN(image_size);
  RUN(media_client);
  RUN(ws_conn_chat);
  RUN(ws_conn_group_frames);
  RUN(ws_conn_server_close);
  RUN(ws_conn_refused_upgrade);
  RUN(ws_conn_connection_refused);
  RUN(http_request_roundtrip);
  RUN(group_requests);
  RUN(group_list_all);
  RUN(http_sync_unreachable);
  DONE();
}
