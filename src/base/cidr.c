/* cidr: network lists and addresses (see cidr.h). */
#include "base/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"

bool tern_ip_parse(const char *s, size_t n, tern_ip *out) {
  char buf[64];
  if (!n || n >= sizeof buf || memchr(s, '\0', n)) return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  memset(out, 0, sizeof *out);
  struct in_addr a4;
  if (inet_pton(AF_INET, buf, &a4) == 1) {
    out->b[10] = out->b[11] = 0xff;
    memcpy(out->b + 12, &a4, 4);
    out->v4 = true;
    return true;
  }
  if (inet_pton(AF_INET6, buf, out->b) == 1) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    out->v4 = memcmp(out->b, mapped, sizeof mapped) == 0;
    return true;
  }
  return false;
}

static bool parse_item(const char *s, size_t n, tern_cidr *c) {
  const char *slash = memchr(s, '/', n);
  size_t an = slash ? (size_t)(slash - s) : n;
  if (!tern_ip_parse(s, an, &c->net)) return false;
  unsigned max = c->net.v4 ? 32 : 128, bits = max;
  if (slash) {
    const char *p = slash + 1, *end = s + n;
    if (p == end || end - p > 3) return false;
    bits = 0;
    for (; p < end; p++) {
      if (*p < '0' || *p > '9') return false;
      bits = bits * 10 + (unsigned)(*p - '0');
    }
    if (bits > max) return false;
  }
  c->bits = c->net.v4 ? bits + 96 : bits;
  /* keep only the network part, so that matching is a masked compare */
  for (unsigned i = 0; i < 16; i++) {
    unsigned keep = c->bits > i * 8 ? (c->bits - i * 8 >= 8 ? 8 : c->bits - i * 8) : 0;
    c->net.b[i] &= (uint8_t)(0xff00 >> keep);
  }
  return true;
}

int tern_cidr_parse(const char *s, tern_cidr_list *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  size_t cap = 0;
  const char *p = s ? s : "";
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    const char *e = p;
    while (*e && *e != ',' && *e != ' ') e++;
    tern_cidr c;
    if (!parse_item(p, (size_t)(e - p), &c)) {
      snprintf(err, errlen, "\"%.*s\" is not an address or a network (such as 10.0.0.0/8 or ::1/128)", (int)(e - p), p);
      tern_cidr_free(out);
      return -EINVAL;
    }
    if (out->n == cap) {
      cap = cap ? cap * 2 : 4;
      out->v = tern_realloc(out->v, cap * sizeof *out->v);
    }
    out->v[out->n++] = c;
    p = e;
  }
  return 0;
}

bool tern_cidr_match(const tern_cidr_list *l, const tern_ip *ip) {
  for (size_t k = 0; k < l->n; k++) {
    const tern_cidr *c = &l->v[k];
    bool ok = true;
    for (unsigned i = 0; i < 16 && ok; i++) {
      unsigned keep = c->bits > i * 8 ? (c->bits - i * 8 >= 8 ? 8 : c->bits - i * 8) : 0;
      ok = (ip->b[i] & (uint8_t)(0xff00 >> keep)) == c->net.b[i];
    }
    if (ok) return true;
  }
  return false;
}

void tern_cidr_free(tern_cidr_list *l) {
  tern_free(l->v);
  memset(l, 0, sizeof *l);
}

bool tern_ip_of_peer(const char *peer, tern_ip *out) {
  if (!peer) return false;
  size_t n = strlen(peer);
  if (peer[0] == '[') {
    const char *close = strchr(peer, ']');
    return close && tern_ip_parse(peer + 1, (size_t)(close - peer - 1), out);
  }
  if (tern_ip_parse(peer, n, out)) return true; /* bare v4 or v6 */
  const char *colon = strrchr(peer, ':');
  return colon && tern_ip_parse(peer, (size_t)(colon - peer), out);
}
