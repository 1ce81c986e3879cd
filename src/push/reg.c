/* reg: push registrations (the PUT /v1/push bodies of PROTOCOL.md section 8): parsing and
 * validation, the Web Push endpoint allow-list, and the compact string the core stores.
 *
 * Web Push endpoints are URLs a client chooses, and the server will POST to them: without care
 * that makes the server a request forger into the operator's own network (SSRF). So an endpoint
 * must be https, its host must be on push.webpush.allowed_hosts, and loopback / private /
 * link-local / unspecified addresses are refused unless the host is listed exactly (which is
 * how tests reach a local stand-in). The same rule is applied again at connect time to the
 * address the name resolved to (see tern_push_sockaddr_private in push.c's connect guard). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "push/jwt.h"
#include "push/push_int.h"

#define FCM_TOKEN_MAX 4096
#define WEBHOOK_TOKEN_MAX 512
#define APNS_TOKEN_MIN 16  /* hex digits */
#define APNS_TOKEN_MAX 200 /* Apple's tokens are 64 hex digits today, and may grow */

static bool v4_private(uint32_t a) { /* a in host order */
  uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16), b2 = (uint8_t)(a >> 8);
  return b0 == 0 ||                              /* 0.0.0.0/8 "this network", unspecified */
         b0 == 10 ||                             /* 10/8 */
         b0 == 127 ||                            /* loopback */
         (b0 == 100 && (b1 & 0xc0) == 64) ||     /* 100.64/10 carrier-grade NAT */
         (b0 == 169 && b1 == 254) ||             /* link-local, cloud metadata services */
         (b0 == 172 && (b1 & 0xf0) == 16) ||     /* 172.16/12 */
         (b0 == 192 && b1 == 168) ||             /* 192.168/16 */
         (b0 == 192 && b1 == 0 && b2 == 0) ||    /* 192.0.0/24 protocol assignments */
         (b0 == 198 && (b1 & 0xfe) == 18) ||     /* 198.18/15 benchmarking */
         b0 >= 224;                              /* multicast, reserved, broadcast */
}

static bool v6_private(const uint8_t *a) {
  static const uint8_t zero[16];
  if (!memcmp(a, zero, 15) && (a[15] == 0 || a[15] == 1)) return true; /* :: and ::1 */
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12) || !memcmp(a, zero, 12)) /* embedded IPv4 */
    return v4_private((uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 | (uint32_t)a[14] << 8 | a[15]);
  return (a[0] & 0xfe) == 0xfc ||                /* fc00::/7 unique local */
         (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || /* fe80::/10 link-local */
         (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) || /* fec0::/10 old site-local */
         a[0] == 0xff;                           /* multicast */
}

bool tern_push_sockaddr_private(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) return v4_private(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
  if (sa->sa_family == AF_INET6) return v6_private(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
  return true; /* anything else (unix sockets...) is never a push service */
}

static bool localhost_name(const char *h) {
  size_t n = strlen(h);
  return !strcmp(h, "localhost") || (n > 10 && !strcmp(h + n - 10, ".localhost"));
}

int tern_push_url_parse(const char *url, tern_push_url *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  for (const unsigned char *c = (const unsigned char *)url; *c; c++) {
    if (*c <= 0x20 || *c >= 0x7f) {
      snprintf(err, errlen, "endpoint must be a URL without spaces or control characters");
      return -EINVAL;
    }
  }
  const char *rest;
  if (!strncasecmp(url, "https://", 8)) {
    out->https = true;
    rest = url + 8;
  } else if (!strncasecmp(url, "http://", 7)) {
    rest = url + 7;
  } else {
    snprintf(err, errlen, "endpoint must be an https URL");
    return -EINVAL;
  }
  size_t alen = strcspn(rest, "/?#");
  if (memchr(rest, '@', alen)) {
    snprintf(err, errlen, "endpoint must not carry a user name or password");
    return -EINVAL;
  }
  const char *host = rest, *hend, *port = NULL;
  if (*host == '[') {
    hend = memchr(host, ']', alen);
    if (!hend) goto bad;
    host++;
    if (hend + 1 < rest + alen) {
      if (hend[1] != ':') goto bad;
      port = hend + 2;
    }
  } else {
    hend = memchr(host, ':', alen);
    if (hend) port = hend + 1;
    else hend = rest + alen;
  }
  size_t hl = (size_t)(hend - host);
  if (hl == 0 || hl >= sizeof out->host) goto bad;
  for (size_t i = 0; i < hl; i++) out->host[i] = (char)tolower((unsigned char)host[i]);
  out->host[hl] = '\0';
  if (hl > 1 && out->host[hl - 1] == '.') out->host[--hl] = '\0'; /* "example.com." is example.com */
  if (port) {
    const char *pend = rest + alen;
    if (port == pend || pend - port > 5) goto bad;
    int v = 0;
    for (const char *c = port; c < pend; c++) {
      if (!isdigit((unsigned char)*c)) goto bad;
      v = v * 10 + (*c - '0');
    }
    if (v < 1 || v > 65535) goto bad;
    out->port = v;
  }
  struct in6_addr a6;
  struct in_addr a4;
  if (inet_pton(AF_INET6, out->host, &a6) == 1) {
    out->ip = true;
    out->private_ip = v6_private(a6.s6_addr);
  } else if (inet_aton(out->host, &a4)) {
    /* inet_aton, not inet_pton: the resolver also takes "127.1", "0x7f000001" or "2130706433"
     * as IPv4, so they must be classified as the address they are. */
    out->ip = true;
    out->private_ip = v4_private(ntohl(a4.s_addr));
  } else {
    for (const char *c = out->host; *c; c++) {
      if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_') goto bad;
    }
    out->private_ip = localhost_name(out->host);
  }
  return 0;
bad:
  snprintf(err, errlen, "endpoint is not a valid URL");
  return -EINVAL;
}

void tern_push_url_origin(const tern_push_url *u, tern_buf *b) {
  tern_buf_puts(b, u->https ? "https://" : "http://");
  bool v6 = strchr(u->host, ':') != NULL;
  if (v6) tern_buf_putc(b, '[');
  tern_buf_puts(b, u->host);
  if (v6) tern_buf_putc(b, ']');
  if (u->port && u->port != (u->https ? 443 : 80)) tern_buf_printf(b, ":%d", u->port);
}

int tern_push_endpoint_check(const tern_push *p, const char *endpoint, bool *listed, char *err, size_t errlen) {
  *listed = false;
  if (strlen(endpoint) > TERN_PUSH_ENDPOINT_MAX) {
    snprintf(err, errlen, "endpoint is longer than %d bytes", TERN_PUSH_ENDPOINT_MAX);
    return -EINVAL;
  }
  tern_push_url u;
  if (tern_push_url_parse(endpoint, &u, err, errlen) < 0) return -EINVAL;
  bool matched = false;
  for (size_t i = 0; i < p->nallowed; i++) {
    const char *a = p->allowed_hosts[i];
    if (!strcmp(a, u.host)) {
      *listed = matched = true;
      break;
    }
    if (!strcmp(a, "*")) {
      matched = true;
    } else if (a[0] == '*' && a[1] == '.') {
      size_t al = strlen(a + 1), hl = strlen(u.host); /* ".domain" must end the host */
      if (hl > al && !strcmp(u.host + hl - al, a + 1)) matched = true;
    }
  }
  if (!matched) {
    snprintf(err, errlen, "endpoint host %s is not an allowed push service", u.host);
    return -EINVAL;
  }
  if (u.private_ip && !*listed) {
    snprintf(err, errlen, "endpoint host %s is a loopback or private address", u.host);
    return -EINVAL;
  }
  /* Plain http only for a listed local stand-in or gateway: a public push service is always
   * reached over TLS. */
  if (!u.https && !(*listed && u.private_ip)) {
    snprintf(err, errlen, "endpoint must be an https URL");
    return -EINVAL;
  }
  return 0;
}

static bool printable_token(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (; *s; s++) {
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return false;
  }
  return true;
}

static bool hex_token(const char *s) {
  size_t n = strlen(s);
  if (n < APNS_TOKEN_MIN || n > APNS_TOKEN_MAX || n % 2) return false;
  for (; *s; s++) {
    if (!isxdigit((unsigned char)*s)) return false;
  }
  return true;
}

static const char *json_str(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_provider(const char *s, tern_push_provider *out) {
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    if (!strcmp(s, tern_push_provider_name((tern_push_provider)i))) {
      *out = (tern_push_provider)i;
      return 0;
    }
  }
  return -EINVAL;
}

/* Decodes a subscription key and checks it: p256dh must be a point on P-256 (ECDH with
 * anything else is unsafe), auth exactly 16 bytes. */
static int webpush_keys(const char *p256dh, const char *auth, tern_push_reg *r, char *err, size_t errlen) {
  if (!p256dh || !auth) {
    snprintf(err, errlen, "webpush needs keys.p256dh and keys.auth");
    return -EINVAL;
  }
  if (tern_push_b64url_decode(p256dh, strlen(p256dh), r->p256dh, sizeof r->p256dh) != 65) {
    snprintf(err, errlen, "keys.p256dh must be a base64url P-256 public key (65 bytes)");
    return -EINVAL;
  }
  EVP_PKEY *k = tern_push_p256_from_public(r->p256dh);
  if (!k) {
    snprintf(err, errlen, "keys.p256dh is not a point on P-256");
    return -EINVAL;
  }
  EVP_PKEY_free(k);
  if (tern_push_b64url_decode(auth, strlen(auth), r->auth, sizeof r->auth) != 16) {
    snprintf(err, errlen, "keys.auth must be 16 bytes in base64url");
    return -EINVAL;
  }
  return 0;
}

int tern_push_reg_parse(const tern_push *p, const char *body, size_t len, tern_push_reg *out, char *err,
                        size_t errlen) {
  memset(out, 0, sizeof *out);
  cJSON *j = cJSON_ParseWithLength(body, len);
  int rc = -EINVAL;
  if (!cJSON_IsObject(j)) {
    snprintf(err, errlen, "body must be a JSON object");
    goto done;
  }
  const char *prov = json_str(j, "provider");
  if (!prov || parse_provider(prov, &out->provider) < 0) {
    snprintf(err, errlen, "provider must be one of fcm, apns, webpush, webhook");
    goto done;
  }
  if (!tern_push_configured(p, out->provider)) {
    snprintf(err, errlen, "push provider %s is not configured on this server", prov);
    goto done;
  }
  if (out->provider == TERN_PUSH_WEBPUSH) {
    const char *ep = json_str(j, "endpoint");
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(j, "keys");
    bool listed;
    if (!ep) {
      snprintf(err, errlen, "webpush needs an endpoint");
      goto done;
    }
    if (!cJSON_IsObject(keys)) {
      snprintf(err, errlen, "webpush needs keys.p256dh and keys.auth");
      goto done;
    }
    if (tern_push_endpoint_check(p, ep, &listed, err, errlen) < 0) goto done;
    if (webpush_keys(json_str(keys, "p256dh"), json_str(keys, "auth"), out, err, errlen) < 0) goto done;
    out->token = tern_strdup(ep);
  } else {
    const char *tok = json_str(j, "token");
    if (!tok) {
      snprintf(err, errlen, "%s needs a token", prov);
      goto done;
    }
    if (out->provider == TERN_PUSH_APNS) {
      if (!hex_token(tok)) {
        snprintf(err, errlen, "an APNs token is %d to %d hex digits", APNS_TOKEN_MIN, APNS_TOKEN_MAX);
        goto done;
      }
      out->token = tern_strdup(tok);
      for (char *c = out->token; *c; c++) *c = (char)tolower((unsigned char)*c);
    } else {
      size_t max = out->provider == TERN_PUSH_FCM ? FCM_TOKEN_MAX : WEBHOOK_TOKEN_MAX;
      if (!printable_token(tok, max)) {
        snprintf(err, errlen, "token must be 1 to %zu printable ASCII characters without spaces", max);
        goto done;
      }
      out->token = tern_strdup(tok);
    }
  }
  rc = 0;
done:
  cJSON_Delete(j);
  if (rc < 0) tern_push_reg_free(out);
  return rc;
}

char *tern_push_reg_serialize(const tern_push_reg *r, size_t *len) {
  tern_buf b = {0};
  tern_buf_puts(&b, tern_push_provider_name(r->provider));
  tern_buf_putc(&b, ':');
  if (r->provider == TERN_PUSH_WEBPUSH) {
    tern_push_b64url_encode(&b, r->p256dh, sizeof r->p256dh);
    tern_buf_putc(&b, ':');
    tern_push_b64url_encode(&b, r->auth, sizeof r->auth);
    tern_buf_putc(&b, ':');
  }
  tern_buf_puts(&b, r->token ? r->token : "");
  return tern_buf_steal(&b, len);
}

int tern_push_reg_deserialize(const char *s, size_t len, tern_push_reg *out) {
  memset(out, 0, sizeof *out);
  const char *colon = memchr(s, ':', len);
  if (!colon || colon - s > 16) return -EINVAL;
  char name[17];
  memcpy(name, s, (size_t)(colon - s));
  name[colon - s] = '\0';
  if (parse_provider(name, &out->provider) < 0) return -EINVAL;
  const char *rest = colon + 1, *end = s + len;
  if (out->provider == TERN_PUSH_WEBPUSH) {
    const char *c1 = memchr(rest, ':', (size_t)(end - rest));
    const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
    if (!c2 || tern_push_b64url_decode(rest, (size_t)(c1 - rest), out->p256dh, 65) != 65 ||
        tern_push_b64url_decode(c1 + 1, (size_t)(c2 - c1 - 1), out->auth, 16) != 16)
      return -EINVAL;
    rest = c2 + 1;
  }
  if (rest == end || memchr(rest, '\0', (size_t)(end - rest))) return -EINVAL;
  out->token = tern_strndup(rest, (size_t)(end - rest));
  bool ok;
  switch (out->provider) {
    case TERN_PUSH_APNS: ok = hex_token(out->token); break;
    case TERN_PUSH_FCM: ok = printable_token(out->token, FCM_TOKEN_MAX); break;
    case TERN_PUSH_WEBHOOK: ok = printable_token(out->token, WEBHOOK_TOKEN_MAX); break;
    default: ok = printable_token(out->token, TERN_PUSH_ENDPOINT_MAX); break;
  }
  if (!ok) {
    tern_push_reg_free(out);
    return -EINVAL;
  }
  return 0;
}

void tern_push_reg_copy(tern_push_reg *dst, const tern_push_reg *src) {
  *dst = *src;
  dst->token = src->token ? tern_strdup(src->token) : NULL;
}

bool tern_push_reg_equal(const tern_push_reg *a, const tern_push_reg *b) {
  if (a->provider != b->provider || !a->token || !b->token || strcmp(a->token, b->token)) return false;
  if (a->provider != TERN_PUSH_WEBPUSH) return true;
  return !memcmp(a->p256dh, b->p256dh, sizeof a->p256dh) && !memcmp(a->auth, b->auth, sizeof a->auth);
}

void tern_push_reg_free(tern_push_reg *r) {
  tern_free(r->token);
  r->token = NULL;
}
