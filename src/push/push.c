/* push: the notification pipeline shared by every provider (see push.h and push_int.h).
 *
 * A notification is a job. Its life:
 *   tern_push_notify → provider queue (FIFO) → [a slot frees: inflight < push.max_inflight]
 *   → prepare (provider) → HTTP request on the shared curl multi handle → classify (provider)
 *   → ok / invalid / fail: the callback, once │ retry: the retry heap, then the queue again.
 * Dispatch never runs inside tern_push_notify: notify only queues and arms a zero-delay timer
 * ("kick"), so callers are never re-entered and a burst of notify calls is dispatched in one go.
 * Everything that waits (retries, coalescing windows) shares one timer per kind rather than one
 * per job, so a million queued notifications cost memory, not handles. */
#include "push/push.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "push/push_int.h"

typedef struct tern_push_window {
  char *device_id;                       /* owned */
  tern_push_reg reg;                     /* owned copy: where the notification goes */
  char *sender;                          /* owned: the latest sender */
  char *group;                           /* owned: its group's name, or NULL */
  char *group_id;                        /* owned: its id, or NULL */
  char *preview;                         /* owned or NULL: the latest preview */
  uint32_t count;                        /* messages in the window */
  uint64_t deadline;                     /* loop time (ms) at which it is sent */
  struct tern_push_window *prev, *next;  /* push->win_head list, by deadline */
} tern_push_window;

static const char *const PROVIDER_NAMES[TERN_PUSH_NPROVIDERS] = {"fcm", "apns", "webpush", "webhook"};
static const char *const RESULT_NAMES[TERN_PUSH_NRESULTS] = {"ok", "invalid_token", "failed", "dropped"};

const char *tern_push_provider_name(tern_push_provider provider) {
  return (unsigned)provider < TERN_PUSH_NPROVIDERS ? PROVIDER_NAMES[provider] : "unknown";
}

const char *tern_push_result_name(tern_push_result result) {
  return (unsigned)result < TERN_PUSH_NRESULTS ? RESULT_NAMES[result] : "unknown";
}

bool tern_push_configured(const tern_push *p, tern_push_provider provider) {
  return p && (unsigned)provider < TERN_PUSH_NPROVIDERS && p->pv[provider].ops != NULL;
}

int64_t tern_push_now_s(void) { return (int64_t)time(NULL); }

tern_push_outcome tern_push_classify_common(long status) {
  if (status >= 200 && status < 300) return TERN_PUSH_OUT_OK;
  if (status == 429 || status >= 500) return TERN_PUSH_OUT_RETRY;
  return TERN_PUSH_OUT_FAIL;
}

/* ---- small helpers ---- */

static uint64_t rng_next(tern_push *p) { /* xorshift64*: jitter needs spread, not secrecy */
  uint64_t x = p->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  p->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* A copy of s cut to at most max bytes without splitting a UTF-8 sequence. */
static char *utf8_dup_max(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
  }
  return tern_strndup(s, n);
}

static void free_job(tern_push_job *job) {
  tern_push_reg_free(&job->reg);
  tern_free(job->device_id);
  tern_free(job->sender);
  tern_free(job->group);
  tern_free(job->group_id);
  tern_free(job->preview);
  tern_free(job->url);
  curl_slist_free_all(job->headers);
  tern_buf_free(&job->body);
  tern_buf_free(&job->resp);
  tern_free(job);
}

static void clear_attempt(tern_push_job *job) {
  tern_free(job->url);
  job->url = NULL;
  curl_slist_free_all(job->headers);
  job->headers = NULL;
  tern_buf_reset(&job->body);
  tern_buf_reset(&job->resp);
  job->h2_prior = job->guard_private = job->host_listed = job->refused = false;
}

void tern_push_job_header(tern_push_job *job, const char *fmt, ...) {
  char line[8192]; /* the longest header is an authorization JWT of well under 2 KiB */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  job->headers = curl_slist_append(job->headers, line);
}

void tern_push_payload_json(const tern_push_job *job, tern_buf *b, const char *extra) {
  tern_buf_puts(b, "{\"type\":\"msg\",\"from\":");
  tern_buf_put_json_str(b, job->sender, strlen(job->sender));
  if (job->group) {
    tern_buf_puts(b, ",\"group\":");
    tern_buf_put_json_str(b, job->group, strlen(job->group));
  }
  if (job->group_id) {
    tern_buf_puts(b, ",\"group_id\":");
    tern_buf_put_json_str(b, job->group_id, strlen(job->group_id));
  }
  tern_buf_printf(b, ",\"count\":%u", job->count);
  if (job->preview) {
    tern_buf_puts(b, ",\"preview\":");
    tern_buf_put_json_str(b, job->preview, strlen(job->preview));
  }
  if (extra) tern_buf_puts(b, extra);
  tern_buf_putc(b, '}');
}

void tern_push_alert_title(const tern_push_job *job, tern_buf *b) {
  tern_buf_puts(b, job->group ? job->group : job->sender);
}

void tern_push_alert_body(const tern_push_job *job, tern_buf *b) {
  if (job->group) { /* the group is the title: the line says who wrote */
    tern_buf_puts(b, job->sender);
    tern_buf_puts(b, ": ");
  }
  if (job->preview) tern_buf_puts(b, job->preview);
  else if (job->count == 1) tern_buf_puts(b, "1 new message");
  else tern_buf_printf(b, "%u new messages", job->count);
}

/* ---- curl handles ---- */

CURL *tern_push_easy_get(tern_push *p) {
  CURL *e = p->easy_pool_len ? p->easy_pool[--p->easy_pool_len] : curl_easy_init();
  if (!e) {
    TERN_ERROR("push: curl_easy_init failed", "%s", "");
    abort();
  }
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)TERN_MIN(p->timeout_ms, 10000));
  /* Never follow redirects (curl's default) and speak only HTTP(S): a client-chosen endpoint
   * must not be able to point us at file:// or gopher://. */
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  /* No proxy, not even one from the environment (https_proxy...): requests go where the
   * allow-list and the connect guard say, and nowhere else. */
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L); /* wait to multiplex on a connecting h2 conn */
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "tern-push/1");
  if (p->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
  return e;
}

void tern_push_easy_release(tern_push *p, CURL *easy) {
  if (p->easy_pool_len < p->easy_pool_cap && !p->closing) {
    curl_easy_reset(easy);
    p->easy_pool[p->easy_pool_len++] = easy;
  } else {
    curl_easy_cleanup(easy);
  }
}

static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  tern_push_job *job = userp;
  size_t len = size * n;
  if (job->resp.len < TERN_PUSH_RESP_MAX) tern_buf_append(&job->resp, data, TERN_MIN(len, TERN_PUSH_RESP_MAX - job->resp.len));
  return len;
}

/* Web Push's connect guard: the endpoint's name passed the allow-list, but the address it
 * resolves to must not be private either, unless the host is listed exactly. */
static curl_socket_t open_guarded(void *userp, curlsocktype purpose, struct curl_sockaddr *a) {
  tern_push_job *job = userp;
  if (!job->host_listed && tern_push_sockaddr_private(&a->addr)) {
    job->refused = true;
    return CURL_SOCKET_BAD;
  }
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- scheduling ---- */

static void kick_cb(uv_timer_t *t);

static void schedule_kick(tern_push *p) {
  if (p->kick_pending || p->closing) return;
  p->kick_pending = true;
  uv_timer_start(&p->kick_timer, kick_cb, 0, 0);
}

static void queue_push(tern_push_pv *pv, tern_push_job *job, bool front) {
  job->next = NULL;
  if (!pv->qhead) {
    pv->qhead = pv->qtail = job;
  } else if (front) {
    job->next = pv->qhead;
    pv->qhead = job;
  } else {
    pv->qtail->next = job;
    pv->qtail = job;
  }
}

static void heap_swap(tern_push *p, size_t a, size_t b) {
  tern_push_job *t = p->heap[a];
  p->heap[a] = p->heap[b];
  p->heap[b] = t;
  p->heap[a]->heap_idx = a;
  p->heap[b]->heap_idx = b;
}

static void heap_push(tern_push *p, tern_push_job *job) {
  if (p->heap_len == p->heap_cap) {
    p->heap_cap = p->heap_cap ? p->heap_cap * 2 : 64;
    p->heap = tern_realloc(p->heap, p->heap_cap * sizeof *p->heap);
  }
  size_t i = p->heap_len++;
  p->heap[i] = job;
  job->heap_idx = i;
  while (i > 0 && p->heap[(i - 1) / 2]->due > p->heap[i]->due) {
    heap_swap(p, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static tern_push_job *heap_pop(tern_push *p) {
  tern_push_job *top = p->heap[0];
  p->heap[0] = p->heap[--p->heap_len];
  p->heap[0]->heap_idx = 0;
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < p->heap_len && p->heap[l]->due < p->heap[m]->due) m = l;
    if (r < p->heap_len && p->heap[r]->due < p->heap[m]->due) m = r;
    if (m == i) break;
    heap_swap(p, i, m);
    i = m;
  }
  return top;
}

static void retry_cb(uv_timer_t *t);

static void arm_retry(tern_push *p) {
  if (!p->heap_len) {
    uv_timer_stop(&p->retry_timer);
    return;
  }
  uint64_t now = uv_now(p->loop), due = p->heap[0]->due;
  uv_timer_start(&p->retry_timer, retry_cb, due > now ? due - now : 0, 0);
}

static void device_count(tern_push *p, const char *device_id, int delta) {
  size_t kl = strlen(device_id);
  uintptr_t n = (uintptr_t)tern_map_get(&p->per_device, device_id, kl);
  n = (uintptr_t)((intptr_t)n + delta);
  if (n) tern_map_put(&p->per_device, device_id, kl, (void *)n);
  else tern_map_del(&p->per_device, device_id, kl);
}

/* The job's final result: count it, tell the owner, forget the job. */
static void finish(tern_push_job *job, tern_push_result res) {
  tern_push *p = job->push;
  tern_push_pv *pv = &p->pv[job->reg.provider];
  pv->results[res]++;
  if (job->all_prev) job->all_prev->all_next = job->all_next;
  else p->jobs = job->all_next;
  if (job->all_next) job->all_next->all_prev = job->all_prev;
  p->pending--;
  device_count(p, job->device_id, -1);
  if (res != TERN_PUSH_OK)
    TERN_DEBUG("push: notification not delivered", "provider=%s result=%s attempts=%d device=%s",
               PROVIDER_NAMES[job->reg.provider], RESULT_NAMES[res], job->attempts, job->device_id);
  if (job->cb) job->cb(job->arg, job->device_id, &job->reg, res);
  free_job(job);
}

static uint64_t backoff_ms(tern_push *p, int attempts) {
  uint64_t d = (uint64_t)p->retry_base_ms;
  for (int i = 1; i < attempts && d < (uint64_t)p->retry_max_ms; i++) d *= 2;
  if (d > (uint64_t)p->retry_max_ms) d = (uint64_t)p->retry_max_ms;
  /* "equal jitter": half fixed, half random, so retries of a burst spread out but never come
   * back sooner than half the backoff */
  return d / 2 + rng_next(p) % (d / 2 + 1);
}

/* Ends the current attempt of a job that holds an in-flight slot. */
static void attempt_done(tern_push_job *job, tern_push_outcome out, int64_t retry_after_ms) {
  tern_push *p = job->push;
  tern_push_pv *pv = &p->pv[job->reg.provider];
  pv->inflight--;
  if (job->easy) {
    tern_push_easy_release(p, job->easy);
    job->easy = NULL;
  }
  clear_attempt(job);
  schedule_kick(p); /* a slot is free */
  switch (out) {
    case TERN_PUSH_OUT_OK: finish(job, TERN_PUSH_OK); return;
    case TERN_PUSH_OUT_INVALID: finish(job, TERN_PUSH_INVALID_TOKEN); return;
    case TERN_PUSH_OUT_FAIL: finish(job, TERN_PUSH_FAILED); return;
    case TERN_PUSH_OUT_RETRY: break;
  }
  if (job->attempts >= p->max_attempts) {
    finish(job, TERN_PUSH_FAILED);
    return;
  }
  uint64_t delay;
  if (retry_after_ms > 0) {
    if (retry_after_ms > p->retry_max_ms) { /* the provider wants us gone for longer than a
                                               notification stays useful: give up */
      finish(job, TERN_PUSH_FAILED);
      return;
    }
    delay = (uint64_t)retry_after_ms + rng_next(p) % ((uint64_t)retry_after_ms / 10 + 1);
  } else {
    delay = backoff_ms(p, job->attempts);
  }
  pv->retries++;
  job->due = uv_now(p->loop) + delay;
  heap_push(p, job);
  if (job->heap_idx == 0) arm_retry(p);
}

void tern_push_job_outcome(tern_push_job *job, tern_push_outcome out, int64_t retry_after_ms) {
  attempt_done(job, out, retry_after_ms);
}

static void on_done(void *arg, CURL *easy, CURLcode res) {
  tern_push_job *job = arg;
  tern_push_pv *pv = &job->push->pv[job->reg.provider];
  long status = 0;
  curl_off_t ra = 0;
  tern_push_outcome out;
  if (res != CURLE_OK) {
    if (job->refused) {
      TERN_WARN("push: refused to connect to a private address", "provider=%s device=%s",
                PROVIDER_NAMES[job->reg.provider], job->device_id);
      out = TERN_PUSH_OUT_FAIL;
    } else if (res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL) {
      out = TERN_PUSH_OUT_FAIL;
    } else {
      TERN_DEBUG("push: request failed", "provider=%s error=%s", PROVIDER_NAMES[job->reg.provider],
                 tern_log_quote(curl_easy_strerror(res)));
      out = TERN_PUSH_OUT_RETRY;
    }
  } else {
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra);
    out = pv->ops->classify(pv, job, status);
  }
  attempt_done(job, out, out == TERN_PUSH_OUT_RETRY && ra > 0 ? (int64_t)ra * 1000 : 0);
}

/* Runs prepare and, when it says so, starts the request. The job holds a slot. */
static void run_attempt(tern_push_job *job) {
  tern_push *p = job->push;
  tern_push_pv *pv = &p->pv[job->reg.provider];
  clear_attempt(job);
  tern_push_prep prep = pv->ops->prepare(pv, job);
  if (prep == TERN_PUSH_PREP_WAIT) return;
  if (prep == TERN_PUSH_PREP_FAIL) {
    attempt_done(job, TERN_PUSH_OUT_FAIL, 0);
    return;
  }
  CURL *e = tern_push_easy_get(p);
  curl_easy_setopt(e, CURLOPT_URL, job->url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, job->headers);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)job->body.len);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->body.len ? job->body.data : "");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, job);
  if (job->h2_prior) curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
  if (job->guard_private) {
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_guarded);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, job);
  }
  job->easy = e;
  if (tern_push_cu_add(p->cu, e, on_done, job) < 0) attempt_done(job, TERN_PUSH_OUT_RETRY, 0);
}

void tern_push_job_resume(tern_push_job *job) { run_attempt(job); }

static void dispatch(tern_push_pv *pv) {
  tern_push *p = pv->push;
  while (pv->ops && pv->qhead && pv->inflight < (size_t)p->max_inflight && !p->closing) {
    tern_push_job *job = pv->qhead;
    pv->qhead = job->next;
    if (!pv->qhead) pv->qtail = NULL;
    job->next = NULL;
    job->attempts++;
    if (++pv->inflight > pv->max_seen) pv->max_seen = pv->inflight;
    run_attempt(job);
  }
}

static void kick_cb(uv_timer_t *t) {
  tern_push *p = t->data;
  p->kick_pending = false;
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) dispatch(&p->pv[i]);
}

static void retry_cb(uv_timer_t *t) {
  tern_push *p = t->data;
  uint64_t now = uv_now(p->loop);
  while (p->heap_len && p->heap[0]->due <= now) {
    tern_push_job *job = heap_pop(p);
    /* ahead of fresh work: it has waited already */
    queue_push(&p->pv[job->reg.provider], job, true);
  }
  arm_retry(p);
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) dispatch(&p->pv[i]);
}

int tern_push_notify(tern_push *p, const char *device_id, const tern_push_reg *reg, const tern_push_note *note,
                     tern_push_cb cb, void *arg) {
  if (p->closing) return -EIO;
  if (!tern_push_configured(p, reg->provider) || !reg->token) return -ENOTSUP;
  tern_push_pv *pv = &p->pv[reg->provider];
  uintptr_t dev = (uintptr_t)tern_map_gets(&p->per_device, device_id);
  if (p->pending >= (uint64_t)p->queue_max || dev >= (uintptr_t)p->queue_per_device) {
    pv->results[TERN_PUSH_DROPPED]++;
    return -ENOBUFS;
  }
  tern_push_job *job = TERN_NEW(tern_push_job);
  job->push = p;
  tern_push_reg_copy(&job->reg, reg);
  job->device_id = tern_strdup(device_id);
  job->sender = utf8_dup_max(note->sender ? note->sender : "", TERN_PUSH_SENDER_MAX);
  job->group = note->group ? utf8_dup_max(note->group, TERN_PUSH_GROUP_MAX) : NULL;
  job->group_id = note->group_id ? utf8_dup_max(note->group_id, TERN_PUSH_GROUP_MAX) : NULL;
  if (p->previews && note->preview) job->preview = utf8_dup_max(note->preview, TERN_PUSH_PREVIEW_MAX);
  job->count = note->count ? note->count : 1;
  job->cb = cb;
  job->arg = arg;
  job->all_next = p->jobs;
  if (p->jobs) p->jobs->all_prev = job;
  p->jobs = job;
  p->pending++;
  device_count(p, device_id, +1);
  queue_push(pv, job, false);
  schedule_kick(p);
  return 0;
}

/* ---- coalescing ---- */

static void free_window(tern_push_window *w) {
  tern_free(w->device_id);
  tern_push_reg_free(&w->reg);
  tern_free(w->sender);
  tern_free(w->group);
  tern_free(w->group_id);
  tern_free(w->preview);
  tern_free(w);
}

static void unlink_window(tern_push *p, tern_push_window *w) {
  if (w->prev) w->prev->next = w->next;
  else p->win_head = w->next;
  if (w->next) w->next->prev = w->prev;
  else p->win_tail = w->prev;
  tern_map_dels(&p->windows, w->device_id);
}

static void coalesced_done(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result res) {
  tern_push *p = arg;
  if (p->result_cb) p->result_cb(p->result_arg, device_id, reg, res);
}

static void win_cb(uv_timer_t *t);

static void arm_windows(tern_push *p) {
  if (!p->win_head) {
    uv_timer_stop(&p->win_timer);
    return;
  }
  uint64_t now = uv_now(p->loop), d = p->win_head->deadline;
  uv_timer_start(&p->win_timer, win_cb, d > now ? d - now : 0, 0);
}

static void win_cb(uv_timer_t *t) {
  tern_push *p = t->data;
  uint64_t now = uv_now(p->loop);
  while (p->win_head && p->win_head->deadline <= now) {
    tern_push_window *w = p->win_head;
    unlink_window(p, w);
    tern_push_note note = {
        .sender = w->sender, .group = w->group, .group_id = w->group_id, .count = w->count, .preview = w->preview};
    if (tern_push_notify(p, w->device_id, &w->reg, &note, coalesced_done, p) < 0) {
      TERN_DEBUG("push: notification dropped", "device=%s provider=%s", w->device_id,
                 PROVIDER_NAMES[w->reg.provider]);
      if (p->result_cb) p->result_cb(p->result_arg, w->device_id, &w->reg, TERN_PUSH_DROPPED);
    }
    free_window(w);
  }
  arm_windows(p);
}

void tern_push_set_result_cb(tern_push *p, tern_push_cb cb, void *arg) {
  p->result_cb = cb;
  p->result_arg = arg;
}

void tern_push_offline_message(tern_push *p, const char *device_id, const tern_push_reg *reg, const char *sender,
                               const char *group_id, const char *group, const char *preview) {
  if (p->closing || !tern_push_configured(p, reg->provider)) return;
  tern_push_window *w = tern_map_gets(&p->windows, device_id);
  if (w) {
    if (w->count < UINT32_MAX) w->count++;
    tern_free(w->sender);
    w->sender = utf8_dup_max(sender ? sender : "", TERN_PUSH_SENDER_MAX);
    tern_free(w->group);
    w->group = group ? utf8_dup_max(group, TERN_PUSH_GROUP_MAX) : NULL;
    tern_free(w->group_id);
    w->group_id = group_id ? utf8_dup_max(group_id, TERN_PUSH_GROUP_MAX) : NULL;
    tern_free(w->preview);
    w->preview = p->previews && preview ? utf8_dup_max(preview, TERN_PUSH_PREVIEW_MAX) : NULL;
    if (!tern_push_reg_equal(&w->reg, reg)) {
      tern_push_reg_free(&w->reg);
      tern_push_reg_copy(&w->reg, reg);
    }
    return;
  }
  w = TERN_NEW(tern_push_window);
  w->device_id = tern_strdup(device_id);
  tern_push_reg_copy(&w->reg, reg);
  w->sender = utf8_dup_max(sender ? sender : "", TERN_PUSH_SENDER_MAX);
  w->group = group ? utf8_dup_max(group, TERN_PUSH_GROUP_MAX) : NULL;
  w->group_id = group_id ? utf8_dup_max(group_id, TERN_PUSH_GROUP_MAX) : NULL;
  w->preview = p->previews && preview ? utf8_dup_max(preview, TERN_PUSH_PREVIEW_MAX) : NULL;
  w->count = 1;
  /* Every window has the same length, so appending keeps the list sorted by deadline. */
  w->deadline = uv_now(p->loop) + (uint64_t)p->coalesce_ms;
  w->prev = p->win_tail;
  if (p->win_tail) p->win_tail->next = w;
  else p->win_head = w;
  p->win_tail = w;
  tern_map_puts(&p->windows, w->device_id, w);
  if (p->win_head == w) arm_windows(p);
}

void tern_push_device_online(tern_push *p, const char *device_id) {
  tern_push_window *w = tern_map_gets(&p->windows, device_id);
  if (!w) return;
  bool was_head = p->win_head == w;
  unlink_window(p, w);
  free_window(w);
  if (was_head) arm_windows(p);
}

/* ---- metrics, stats ---- */

const char *tern_push_vapid_public_key(const tern_push *p) { return p->vapid_public_b64; }

void tern_push_metrics_render(const tern_push *p, tern_buf *b) { tern_push_metrics_render_sum(&p, 1, b); }

/* Relaxed atomic loads: each instance's counters have one writer, its loop, and the scrape may
 * run on another worker's. */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

void tern_push_metrics_render_sum(const tern_push *const *ps, size_t n, tern_buf *b) {
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    uint64_t results[TERN_PUSH_NRESULTS] = {0}, retries = 0;
    bool on = false;
    for (size_t k = 0; k < n; k++) {
      if (!ps[k]) continue;
      const tern_push_pv *pv = &ps[k]->pv[i];
      if (!pv->ops) continue;
      on = true;
      for (int r = 0; r < TERN_PUSH_NRESULTS; r++) results[r] += LOAD(pv->results[r]);
      retries += LOAD(pv->retries);
    }
    if (!on) continue;
    for (int r = 0; r < TERN_PUSH_NRESULTS; r++)
      tern_buf_printf(b, "tern_push_total{provider=\"%s\",result=\"%s\"} %llu\n", PROVIDER_NAMES[i],
                      RESULT_NAMES[r], (unsigned long long)results[r]);
    tern_buf_printf(b, "tern_push_total{provider=\"%s\",result=\"retry\"} %llu\n", PROVIDER_NAMES[i],
                    (unsigned long long)retries);
  }
}

void tern_push_get_stats(const tern_push *p, tern_push_stats *out) {
  memset(out, 0, sizeof *out);
  out->pending = p->pending;
  out->windows = p->windows.count;
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    out->inflight[i] = p->pv[i].inflight;
    out->max_inflight[i] = p->pv[i].max_seen;
    memcpy(out->results[i], p->pv[i].results, sizeof out->results[i]);
    out->retries[i] = p->pv[i].retries;
  }
}

/* ---- open / close ---- */

static void parse_allowed(tern_push *p, const char *list) {
  const char *s = list;
  while (*s) {
    size_t n = strcspn(s, ",");
    const char *a = s, *e = s + n;
    while (a < e && (*a == ' ' || *a == '\t')) a++;
    while (e > a && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '.')) e--;
    if (e > a) {
      char *h = tern_strndup(a, (size_t)(e - a));
      for (char *c = h; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
      if (h[0] == '[' && h[strlen(h) - 1] == ']') { /* "[::1]" lists the IPv6 address ::1 */
        memmove(h, h + 1, strlen(h));
        h[strlen(h) - 1] = '\0';
      }
      p->allowed_hosts = tern_realloc(p->allowed_hosts, (p->nallowed + 1) * sizeof *p->allowed_hosts);
      p->allowed_hosts[p->nallowed++] = h;
    }
    s += n;
    if (*s == ',') s++;
  }
}

static void free_settings(tern_push *p) {
  for (size_t i = 0; i < p->nallowed; i++) tern_free(p->allowed_hosts[i]);
  tern_free(p->allowed_hosts);
  tern_free(p->ca_file);
  tern_free(p->vapid_public_b64);
}

static void close_providers(tern_push *p) {
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    if (p->pv[i].ops && p->pv[i].ops->close) p->pv[i].ops->close(&p->pv[i]);
    p->pv[i].ops = NULL;
  }
}

int tern_push_open(uv_loop_t *loop, const tern_config *cfg, tern_push **out, char *err, size_t errlen) {
  static bool curl_ready;
  *out = NULL;
  if (!curl_ready) {
    /* once per process, at start-up, before any other thread could use curl */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      snprintf(err, errlen, "push: libcurl failed to initialise");
      return -EINVAL;
    }
    curl_ready = true;
  }
  tern_push *p = TERN_NEW(tern_push);
  p->loop = loop;
  p->previews = cfg->push_previews;
  p->coalesce_ms = cfg->push_coalesce_ms;
  p->max_inflight = cfg->push_max_inflight;
  p->max_attempts = cfg->push_max_attempts;
  p->queue_max = cfg->push_queue_max;
  p->queue_per_device = cfg->push_queue_per_device;
  p->retry_base_ms = cfg->push_retry_base_ms;
  p->retry_max_ms = cfg->push_retry_max_ms;
  p->timeout_ms = cfg->push_request_timeout_ms;
  p->ttl_ms = cfg->push_ttl_ms;
  if (cfg->push_ca_file && *cfg->push_ca_file) {
    if (access(cfg->push_ca_file, R_OK) < 0) {
      snprintf(err, errlen, "push.ca_file: cannot read %s: %s", cfg->push_ca_file, strerror(errno));
      tern_free(p);
      return -EINVAL;
    }
    p->ca_file = tern_strdup(cfg->push_ca_file);
  }
  parse_allowed(p, cfg->push_webpush_allowed_hosts ? cfg->push_webpush_allowed_hosts : "");
  tern_random(&p->rng, sizeof p->rng);
  p->rng |= 1; /* xorshift must not start at 0 */
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    p->pv[i].push = p;
    p->pv[i].id = (tern_push_provider)i;
  }
  int (*const opens[TERN_PUSH_NPROVIDERS])(tern_push_pv *, const tern_config *, char *, size_t) = {
      tern_push_fcm_open, tern_push_apns_open, tern_push_webpush_open, tern_push_webhook_open};
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    if (opens[i](&p->pv[i], cfg, err, errlen) < 0) {
      close_providers(p);
      free_settings(p);
      tern_free(p);
      return -EINVAL;
    }
  }
  /* One connection per provider host carries up to max_inflight streams; the cache keeps one
   * HTTP/1.1 connection per in-flight request (webhook, plain-http stand-ins) for reuse. */
  long conns = (long)TERN_MIN(p->max_inflight * TERN_PUSH_NPROVIDERS + 8, 4096);
  p->cu = tern_push_cu_new(loop, (long)TERN_MAX(p->max_inflight, 100), conns);
  p->easy_pool_cap = (size_t)TERN_MIN(p->max_inflight * TERN_PUSH_NPROVIDERS, 4096);
  p->easy_pool = tern_calloc(p->easy_pool_cap, sizeof *p->easy_pool);
  uv_timer_init(loop, &p->retry_timer);
  uv_timer_init(loop, &p->kick_timer);
  uv_timer_init(loop, &p->win_timer);
  p->retry_timer.data = p->kick_timer.data = p->win_timer.data = p;
  TERN_INFO("push ready", "fcm=%s apns=%s webpush=%s webhook=%s max_inflight=%lld coalesce_ms=%lld",
            p->pv[0].ops ? "on" : "off", p->pv[1].ops ? "on" : "off", p->pv[2].ops ? "on" : "off",
            p->pv[3].ops ? "on" : "off", (long long)p->max_inflight, (long long)p->coalesce_ms);
  *out = p;
  return 0;
}

static void handle_closed(tern_push *p) {
  if (--p->open_handles > 0) return;
  free_settings(p);
  tern_free(p);
}

static void timer_closed(uv_handle_t *h) { handle_closed(h->data); }
static void cu_closed(void *arg) { handle_closed(arg); }

void tern_push_close(tern_push *p) {
  if (!p || p->closing) return;
  p->closing = true;
  while (p->win_head) {
    tern_push_window *w = p->win_head;
    unlink_window(p, w);
    free_window(w);
  }
  tern_map_free(&p->windows);
  close_providers(p); /* providers drop their own requests and wait lists, never jobs */
  size_t dropped = 0;
  while (p->jobs) {
    tern_push_job *job = p->jobs;
    p->jobs = job->all_next;
    if (job->easy) {
      tern_push_cu_remove(p->cu, job->easy);
      curl_easy_cleanup(job->easy);
    }
    free_job(job);
    dropped++;
  }
  if (dropped) TERN_INFO("push: dropped pending notifications at shutdown", "count=%zu", dropped);
  tern_free(p->heap);
  tern_map_free(&p->per_device);
  for (size_t i = 0; i < p->easy_pool_len; i++) curl_easy_cleanup(p->easy_pool[i]);
  tern_free(p->easy_pool);
  p->open_handles = 4;
  uv_close((uv_handle_t *)&p->retry_timer, timer_closed);
  uv_close((uv_handle_t *)&p->kick_timer, timer_closed);
  uv_close((uv_handle_t *)&p->win_timer, timer_closed);
  tern_push_cu_close(p->cu, cu_closed, p);
}
