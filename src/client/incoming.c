/* incoming: server frames as libtern-client hands them to its callers. proto decodes the frame
 * (tern_event_decode: the same tables the server writes with); this file only lays the result
 * out as the flat tern_client_event of client.h, which the CLI and tern-bench read. It parses
 * no JSON of its own. */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "client/client_int.h"
#include "proto/wire.h"

void tern_client_json_hooks(void) { tern_proto_init(); }

/* A view's pointer: proto's decoded strings are NUL-terminated, so it is a C string. */
static const char *cs(tern_str s) { return s.p; }

static const struct {
  tern_event_type proto;       /* what proto decoded */
  tern_client_event_type type; /* what the caller sees */
} types[] = {
    {TERN_EV_READY, TERN_CLIENT_EV_READY},     {TERN_EV_SYNCED, TERN_CLIENT_EV_SYNCED},
    {TERN_EV_PONG, TERN_CLIENT_EV_PONG},       {TERN_EV_SENT, TERN_CLIENT_EV_SENT},
    {TERN_EV_ERROR, TERN_CLIENT_EV_ERROR},     {TERN_EV_PRESENCE, TERN_CLIENT_EV_PRESENCE},
    {TERN_EV_TYPING, TERN_CLIENT_EV_TYPING},   {TERN_EV_PROFILE, TERN_CLIENT_EV_PROFILE},
    {TERN_EV_MSG, TERN_CLIENT_EV_MSG},         {TERN_EV_RECEIPT, TERN_CLIENT_EV_RECEIPT},
    {TERN_EV_GROUP, TERN_CLIENT_EV_GROUP},     {TERN_EV_DECRYPT_ERROR, TERN_CLIENT_EV_DECRYPT_ERROR},
};

/* The envelope fields every envelope type shares, and those of its type. */
static void flat_envelope(tern_client_event *ev, const tern_envelope *e) {
  ev->seq = e->seq;
  ev->ts = e->ts;
  ev->msg_id = cs(e->msg_id);
  ev->from = cs(e->from);
  ev->from_device = cs(e->from_device);
  ev->to = cs(e->to);
  ev->group_id = cs(e->group_id);
  ev->by = cs(e->by);
  ev->body = cs(e->body);
  ev->body_len = e->body.n;
  ev->media_id = cs(e->media.media_id);
  ev->media_mime = cs(e->media.mime);
  ev->media_size = e->media.size;
  ev->media_width = e->media.width;
  ev->media_height = e->media.height;
  ev->read = e->status == TERN_RECEIPT_READ;
  if (e->type == TERN_EV_RECEIPT && e->msg_ids.n) {
    /* The v1 API's msg_ids is an array of C strings. */
    const char **v = tern_calloc(e->msg_ids.n, sizeof *v);
    for (size_t i = 0; i < e->msg_ids.n; i++) v[i] = cs(tern_strs_at(&e->msg_ids, i));
    ev->msg_ids = v;
    ev->n_msg_ids = e->msg_ids.n;
  }
}

void tern_client_event_parse(const char *json, size_t len, tern_client_event *ev) {
  memset(ev, 0, sizeof *ev);
  ev->type = TERN_CLIENT_EV_UNKNOWN;
  ev->raw = json;
  ev->raw_len = len;
  ev->last_seen = -1;
  ev->media_size = ev->media_width = ev->media_height = -1;
  tern_proto_init();
  tern_event *f = &ev->frame;
  int rc = tern_event_decode(json, len, f, &ev->doc, ev->why, sizeof ev->why);
  ev->json = ev->doc.root;
  if (rc) {
    /* Unknown to the caller, but an envelope's seq stays so that it can still be acked. */
    if (f->type != TERN_EV_UNKNOWN) ev->malformed = ev->why;
    ev->seq = f->env.seq;
    return;
  }
  for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
    if (types[i].proto == f->type) ev->type = types[i].type;
  }
  if (f->env.type) flat_envelope(ev, &f->env);
  switch (f->type) {
    case TERN_EV_SYNCED: ev->seq = f->seq; break;
    case TERN_EV_SENT:
      ev->id = cs(f->id);
      ev->msg_id = cs(f->msg_id);
      ev->ts = f->ts;
      break;
    case TERN_EV_READY:
      ev->user = cs(f->user);
      ev->device_id = cs(f->device_id);
      ev->server_time = f->server_time;
      break;
    case TERN_EV_PONG: ev->server_time = f->server_time; break;
    case TERN_EV_ERROR:
      ev->id = cs(f->id);
      ev->user = cs(f->user);
      ev->code = f->code.p ? cs(f->code) : "unknown";
      ev->message = f->message.p ? cs(f->message) : "";
      break;
    case TERN_EV_PRESENCE:
      ev->user = cs(f->user);
      ev->online = f->online;
      ev->last_seen = f->online ? -1 : f->last_seen;
      break;
    case TERN_EV_TYPING:
      ev->from = cs(f->from);
      ev->group_id = cs(f->group_id);
      ev->composing = f->state == TERN_TYPING_COMPOSING;
      break;
    case TERN_EV_PROFILE: ev->user = cs(f->user); break;
    default: break;
  }
}

void tern_client_event_clear(tern_client_event *ev) {
  tern_event_doc_free(&ev->doc);
  tern_free((void *)ev->msg_ids);
  memset(ev, 0, sizeof *ev);
}

void tern_client_format_media(const tern_client_event *ev, char *out, size_t cap) {
  char dims[48] = "", size[32] = "";
  if (ev->media_width > 0 && ev->media_height > 0)
    snprintf(dims, sizeof dims, " %lld×%lld", (long long)ev->media_width, (long long)ev->media_height);
  int64_t n = ev->media_size;
  if (n >= 1 << 20) snprintf(size, sizeof size, "%s%.1f MiB", dims[0] ? ", " : " ", (double)n / (1 << 20));
  else if (n >= 1024) snprintf(size, sizeof size, "%s%lld KiB", dims[0] ? ", " : " ", (long long)((n + 512) / 1024));
  else if (n >= 0) snprintf(size, sizeof size, "%s%lld B", dims[0] ? ", " : " ", (long long)n);
  snprintf(out, cap, "[image%s%s] %s", dims, size, ev->media_id ? ev->media_id : "?");
}
