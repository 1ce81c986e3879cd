/* libFuzzer target for the client side's reader of server frames (proto's tern_event_decode,
 * which libtern-client runs on every frame it receives). Any input must decode or fail
 * cleanly with a sentence; a decoded frame must keep the reader's promises (strings valid
 * UTF-8 without NUL, and NUL-terminated where they end; numbers within 2^53; enumerated
 * values in range), and writing it with the server's writer and reading that again must give
 * the same frame. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "proto/event.h"
#include "proto/wire.h"
#include "fuzz.h"

static void check_str(tern_str s) {
  if (!s.p) return;
  REQUIRE(s.p[s.n] == '\0' && strlen(s.p) == s.n);
  REQUIRE(tern_utf8_valid(s.p, s.n) && !memchr(s.p, 0xFF, s.n));
}

static void check_strs(const tern_strs *l) {
  for (size_t i = 0; (l->v || l->c) && i < l->n; i++) check_str(tern_strs_at(l, i));
}

static void check_event(const tern_event *ev) {
  const tern_envelope *e = &ev->env;
  const tern_str strs[] = {ev->id,   ev->msg_id, ev->code,   ev->message, ev->user,   ev->device_id, ev->from,
                           ev->group_id, ev->display_name, ev->avatar, e->msg_id, e->from, e->from_device,
                           e->to,    e->group_id, e->body,   e->media.media_id, e->media.mime, e->media.sha256,
                           e->e2e_body, e->media_ref, e->reply_to, e->reaction_to, e->reaction_emoji, e->edit_of,
                           e->delete_of, e->by, e->name, e->description};
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) check_str(strs[i]);
  check_strs(&ev->skipped);
  check_strs(&e->mentions);
  check_strs(&e->by_list);
  check_strs(&e->msg_ids);
  check_strs(&e->users);
  for (size_t i = 0; ev->missing && i < ev->n_missing; i++) check_str(ev->missing[i].user);
  for (size_t i = 0; ev->extra && i < ev->n_extra; i++) check_str(ev->extra[i].device_id);
  REQUIRE(ev->seq <= (1ull << 53) && e->seq <= (1ull << 53));
  REQUIRE(ev->last_seen >= -1);
  if (ev->online) REQUIRE(ev->last_seen == -1);
  REQUIRE(ev->state <= TERN_TYPING_PAUSED);
  if (!e->type) return; /* not an envelope: env is all zero */
  REQUIRE(e->type == ev->type);
  REQUIRE(e->media.size >= -1 && e->media.width >= -1 && e->media.height >= -1);
  REQUIRE(e->status <= TERN_RECEIPT_READ && e->event <= TERN_GROUP_DEMOTED && e->e2e_type <= TERN_CIPHER_MESSAGE);
  if (!e->media.media_id.p) REQUIRE(!e->media.mime.p && e->media.size == -1);
  if (!e->reaction_to.p) REQUIRE(!e->reaction_emoji.p);
  if (e->e2e_type == TERN_CIPHER_NONE) REQUIRE(!e->e2e_body.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_proto_init();
  /* A private copy with no NUL after it, so ASan sees any read past size. */
  char *json = tern_memdup(data, size);
  tern_event ev;
  tern_event_doc doc;
  char msg[160];
  int rc = tern_event_decode(json, size, &ev, &doc, msg, sizeof msg);
  if (rc != 0) {
    REQUIRE(rc == -EBADMSG && msg[0] != '\0');
  } else if (ev.type != TERN_EV_UNKNOWN) {
    check_event(&ev);
    /* The server's writer and the client's reader agree. */
    tern_buf out = {0};
    tern_event_encode(&out, &ev);
    REQUIRE(out.len > 0);
    tern_event again;
    tern_event_doc doc2;
    REQUIRE(tern_event_decode(out.data, out.len, &again, &doc2, msg, sizeof msg) == 0);
    REQUIRE(tern_event_same(&ev, &again));
    /* And writing it again gives the same bytes. */
    tern_buf out2 = {0};
    tern_event_encode(&out2, &again);
    REQUIRE(out2.len == out.len && memcmp(out2.data, out.data, out.len) == 0);
    tern_buf_free(&out2);
    tern_event_doc_free(&doc2);
    tern_buf_free(&out);
  }
  tern_event_doc_free(&doc);
  tern_free(json);
  return 0;
}
