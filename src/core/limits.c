/* limits: abuse limits and client addresses (see limits.h). */
#include "core/limits.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/map.h"
#include "base/util.h"
#include "proto/frame.h"

static const char *const NAMES[TERN_LIMIT__COUNT] = {
    "conn_per_ip", "conn_rate_per_ip", "auth_rate_per_ip", "login_fail", "typing_rate", "hash_queue", "send_rate",
    "fanout_rate", "key_fetch_rate",
};

typedef struct tern_user_bucket {
  tern_rate_bucket b;      /* the bucket */
  double rate, burst;      /* its limit, for the sweep */
} tern_user_bucket;

typedef struct addr_ent {
  uint32_t ws_open;        /* WebSockets through a trusted proxy, open */
  tern_rate_bucket conns;  /* their new ones */
  tern_rate_bucket auth;   /* register and login attempts */
} addr_ent;

/* The lists are set once and only read; mu guards the tables and the counts, which every worker
 * of the process uses (limits.h). Held for a map look-up or two, never across a call out. */
struct tern_limits {
  const tern_config *cfg;
  pthread_mutex_t mu;      /* guards addrs, fails, their iterators and counts */
  tern_cidr_list trusted;  /* http.trusted_proxies */
  tern_cidr_list metrics;  /* metrics.allow */
  tern_map addrs;          /* ip bytes -> addr_ent */
  tern_map fails;          /* user NUL ip bytes -> tern_rate_bucket */
  tern_map users;          /* kind byte, user -> tern_user_bucket (tern_limits_user_take) */
  tern_map_iter users_it;
  tern_map_iter addrs_it, fails_it;
  uint64_t counts[TERN_LIMIT__COUNT];
};

int tern_limits_new(const tern_config *cfg, tern_limits **out, char *err, size_t errlen) {
  *out = NULL;
  tern_limits *l = TERN_NEW(tern_limits);
  l->cfg = cfg;
  char why[200];
  if (tern_cidr_parse(cfg->http_trusted_proxies, &l->trusted, why, sizeof why) < 0) {
    snprintf(err, errlen, "http.trusted_proxies: %s", why);
    tern_free(l);
    return -EINVAL;
  }
  if (tern_cidr_parse(cfg->metrics_allow, &l->metrics, why, sizeof why) < 0) {
    snprintf(err, errlen, "metrics.allow: %s", why);
    tern_cidr_free(&l->trusted);
    tern_free(l);
    return -EINVAL;
  }
  pthread_mutex_init(&l->mu, NULL);
  *out = l;
  return 0;
}

static bool free_val(const char *k, size_t kl, void *v, void *arg) {
  tern_free(v);
  return true;
}

void tern_limits_free(tern_limits *l) {
  if (!l) return;
  tern_map_each(&l->addrs, free_val, NULL);
  tern_map_each(&l->fails, free_val, NULL);
  tern_map_each(&l->users, free_val, NULL);
  tern_map_free(&l->users);
  tern_map_free(&l->addrs);
  tern_map_free(&l->fails);
  tern_cidr_free(&l->trusted);
  tern_cidr_free(&l->metrics);
  pthread_mutex_destroy(&l->mu);
  tern_free(l);
}

const tern_cidr_list *tern_limits_trusted(const tern_limits *l) { return &l->trusted; }

bool tern_limits_client(const tern_limits *l, const tern_http_req *req, tern_ip *out, bool *via_proxy) {
  *via_proxy = false;
  if (!req->conn || !tern_ip_of_peer(tern_conn_peer(req->conn), out)) return false;
  if (!l->trusted.n || !tern_cidr_match(&l->trusted, out) || !req->forwarded_for) return true;
  /* Right to left: each proxy appends the address it got the request from. The first entry
   * that is not one of ours is the client; everything left of it is the client's say-so. */
  const char *s = req->forwarded_for;
  size_t end = strlen(s);
  while (end > 0) {
    size_t start = end;
    while (start > 0 && s[start - 1] != ',') start--;
    size_t a = start, b = end;
    while (a < b && (s[a] == ' ' || s[a] == '\t')) a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
    tern_ip ip;
    if (!tern_ip_parse(s + a, b - a, &ip)) return true; /* garbage: the proxy itself is what we know */
    *out = ip;
    *via_proxy = true;
    if (!tern_cidr_match(&l->trusted, &ip)) return true;
    end = start ? start - 1 : 0;
  }
  return true;
}

static addr_ent *addr_of(tern_limits *l, const tern_ip *ip) {
  addr_ent *e = tern_map_get(&l->addrs, (const char *)ip->b, sizeof ip->b);
  if (!e) {
    e = TERN_NEW(addr_ent);
    tern_map_put(&l->addrs, (const char *)ip->b, sizeof ip->b, e);
  }
  return e;
}

/* Seconds until the bucket has a token again (at least 1). */
static int retry_after(const tern_rate_bucket *b, double rate) {
  double s = rate > 0 ? (1.0 - b->tokens) / rate : 60;
  return s < 1 ? 1 : s > 86400 ? 86400 : (int)ceil(s);
}

bool tern_limits_auth_attempt(tern_limits *l, const tern_ip *ip, int *retry_s) {
  const tern_limit *lim = &l->cfg->limits_auth_rate_per_ip;
  pthread_mutex_lock(&l->mu);
  addr_ent *e = addr_of(l, ip);
  bool ok = tern_bucket_take(&e->auth, lim->rate, lim->burst, 1);
  if (!ok) {
    *retry_s = retry_after(&e->auth, lim->rate);
    l->counts[TERN_LIMIT_AUTH_RATE_PER_IP]++;
  }
  pthread_mutex_unlock(&l->mu);
  return ok;
}

static size_t fail_key(char *k, size_t cap, const char *user, const tern_ip *ip) {
  size_t ul = strnlen(user, cap - sizeof ip->b - 1);
  memcpy(k, user, ul);
  k[ul] = '\0';
  memcpy(k + ul + 1, ip->b, sizeof ip->b);
  return ul + 1 + sizeof ip->b;
}

bool tern_limits_login_allowed(tern_limits *l, const char *user, const tern_ip *ip, int *retry_s) {
  const tern_limit *lim = &l->cfg->limits_login_fail;
  char k[128];
  size_t kl = fail_key(k, sizeof k, user, ip);
  bool ok = true;
  pthread_mutex_lock(&l->mu);
  tern_rate_bucket *b = tern_map_get(&l->fails, k, kl);
  /* look without taking: refill, and allowed while a whole token is left */
  if (b && (!tern_bucket_take(b, lim->rate, lim->burst, 0) || b->tokens < 1)) {
    *retry_s = retry_after(b, lim->rate);
    l->counts[TERN_LIMIT_LOGIN_FAIL]++;
    ok = false;
  }
  pthread_mutex_unlock(&l->mu);
  return ok;
}

void tern_limits_login_failed(tern_limits *l, const char *user, const tern_ip *ip) {
  const tern_limit *lim = &l->cfg->limits_login_fail;
  char k[128];
  size_t kl = fail_key(k, sizeof k, user, ip);
  pthread_mutex_lock(&l->mu);
  tern_rate_bucket *b = tern_map_get(&l->fails, k, kl);
  if (!b) {
    b = TERN_NEW(tern_rate_bucket);
    tern_map_put(&l->fails, k, kl, b);
  }
  (void)tern_bucket_take(b, lim->rate, lim->burst, 1);
  pthread_mutex_unlock(&l->mu);
}

bool tern_limits_ws_open(tern_limits *l, const tern_ip *ip) {
  const tern_config *c = l->cfg;
  bool ok = false;
  pthread_mutex_lock(&l->mu);
  addr_ent *e = addr_of(l, ip);
  if (!tern_bucket_take(&e->conns, c->limits_conn_rate_per_ip.rate, c->limits_conn_rate_per_ip.burst, 1)) {
    l->counts[TERN_LIMIT_CONN_RATE_PER_IP]++;
  } else if (e->ws_open >= (uint64_t)c->limits_conn_per_ip) {
    l->counts[TERN_LIMIT_CONN_PER_IP]++;
  } else {
    e->ws_open++;
    ok = true;
  }
  pthread_mutex_unlock(&l->mu);
  return ok;
}

void tern_limits_ws_closed(tern_limits *l, const tern_ip *ip) {
  pthread_mutex_lock(&l->mu);
  addr_ent *e = tern_map_get(&l->addrs, (const char *)ip->b, sizeof ip->b);
  if (e && e->ws_open) e->ws_open--;
  pthread_mutex_unlock(&l->mu);
}

bool tern_limits_metrics_ok(const tern_limits *l, const tern_http_req *req) {
  tern_ip ip;
  if (!req->conn || !tern_ip_of_peer(tern_conn_peer(req->conn), &ip)) return false;
  if (l->trusted.n && tern_cidr_match(&l->trusted, &ip)) return false; /* came through a proxy */
  return tern_cidr_match(&l->metrics, &ip);
}

bool tern_limits_user_take(tern_limits *l, tern_user_limit k, const char *user, double rate, double burst, double n,
                           double *tokens) {
  char key[TERN_USERNAME_MAX + 2];
  size_t ul = strnlen(user, TERN_USERNAME_MAX);
  key[0] = (char)('0' + k);
  memcpy(key + 1, user, ul);
  pthread_mutex_lock(&l->mu);
  tern_user_bucket *e = tern_map_get(&l->users, key, ul + 1);
  if (!e) {
    e = TERN_NEW(tern_user_bucket);
    tern_map_put(&l->users, key, ul + 1, e);
  }
  e->rate = rate;
  e->burst = burst;
  bool ok = tern_bucket_take(&e->b, rate, burst, n);
  if (tokens) *tokens = e->b.tokens;
  pthread_mutex_unlock(&l->mu);
  return ok;
}

void tern_limits_count(tern_limits *l, tern_limit_kind k) {
  if (k >= TERN_LIMIT__COUNT) return;
  pthread_mutex_lock(&l->mu);
  l->counts[k]++;
  pthread_mutex_unlock(&l->mu);
}

static bool refilled(const tern_rate_bucket *b, double rate, double burst, int64_t now) {
  return b->at == 0 || b->tokens + (double)(now - b->at) * rate / 1000.0 >= burst;
}

void tern_limits_sweep(tern_limits *l, int64_t now) {
  const tern_config *c = l->cfg;
  const char *k;
  size_t kl;
  void *v;
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < 4096 && tern_map_next(&l->addrs, &l->addrs_it, &k, &kl, &v); i++) {
    addr_ent *e = v;
    if (!e->ws_open && refilled(&e->conns, c->limits_conn_rate_per_ip.rate, c->limits_conn_rate_per_ip.burst, now) &&
        refilled(&e->auth, c->limits_auth_rate_per_ip.rate, c->limits_auth_rate_per_ip.burst, now)) {
      tern_map_del(&l->addrs, k, kl);
      tern_free(e);
    }
  }
  for (int i = 0; i < 4096 && tern_map_next(&l->users, &l->users_it, &k, &kl, &v); i++) {
    tern_user_bucket *e = v;
    if (refilled(&e->b, e->rate, e->burst, now)) {
      tern_map_del(&l->users, k, kl);
      tern_free(e);
    }
  }
  for (int i = 0; i < 4096 && tern_map_next(&l->fails, &l->fails_it, &k, &kl, &v); i++) {
    if (refilled(v, c->limits_login_fail.rate, c->limits_login_fail.burst, now)) {
      tern_map_del(&l->fails, k, kl);
      tern_free(v);
    }
  }
  pthread_mutex_unlock(&l->mu);
}

void tern_limits_render(tern_limits *l, const tern_net *net, tern_buf *out) {
  uint64_t netc[TERN_NET_LIMIT__COUNT] = {0};
  if (net) tern_net_limited(net, netc);
  uint64_t counts[TERN_LIMIT__COUNT];
  pthread_mutex_lock(&l->mu);
  memcpy(counts, l->counts, sizeof counts);
  pthread_mutex_unlock(&l->mu);
  tern_buf_puts(out, "# HELP tern_limited_total Requests, frames and connections refused by an abuse limit.\n"
                     "# TYPE tern_limited_total counter\n");
  for (int i = 0; i < TERN_LIMIT__COUNT; i++) {
    uint64_t n = counts[i];
    if (i == TERN_LIMIT_CONN_PER_IP) n += netc[TERN_NET_LIMIT_CONN_PER_IP];
    if (i == TERN_LIMIT_CONN_RATE_PER_IP) n += netc[TERN_NET_LIMIT_CONN_RATE];
    tern_buf_printf(out, "tern_limited_total{limit=\"%s\"} %llu\n", NAMES[i], (unsigned long long)n);
  }
}
