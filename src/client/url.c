/* url.c: server URLs, client message ids and close-code names. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "client/client.h"

int tern_client_url_parse(const char *s, tern_client_url *out) {
  memset(out, 0, sizeof *out);
  if (!s || !*s) return -EINVAL;
  const char *p = strstr(s, "://");
  if (p) {
    size_t slen = (size_t)(p - s);
    if (slen == 5 && strncasecmp(s, "https", 5) == 0) {
      out->tls = true;
    } else if (slen == 2 && (strncasecmp(s, "ws", 2) == 0)) { /* a WebSocket URL names the same server */
    } else if (slen == 3 && strncasecmp(s, "wss", 3) == 0) {
      out->tls = true;
    } else if (!(slen == 4 && strncasecmp(s, "http", 4) == 0)) {
      return -EPROTONOSUPPORT;
    }
    p += 3;
  } else {
    p = s;
  }
  /* host: [v6] or up to ':' or '/' */
  const char *host = p, *host_end;
  bool v6 = false;
  if (*p == '[') {
    host = ++p;
    host_end = strchr(p, ']');
    if (!host_end) return -EINVAL;
    p = host_end + 1;
    v6 = true;
  } else {
    while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#') p++;
    host_end = p;
  }
  size_t hlen = (size_t)(host_end - host);
  if (hlen == 0 || hlen > TERN_CLIENT_HOST_MAX) return -EINVAL;
  for (const char *q = host; q < host_end; q++) {
    unsigned char c = (unsigned char)*q;
    /* Host names, IPv4 and (inside brackets) IPv6 literals: nothing that could break a header. */
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_' || (v6 && (c == ':' || c == '%'));
    if (!ok) return -EINVAL;
  }
  unsigned long port = out->tls ? 443 : 80;
  if (*p == ':') {
    p++;
    if (*p < '0' || *p > '9') return -EINVAL;
    port = 0;
    while (*p >= '0' && *p <= '9') {
      port = port * 10 + (unsigned long)(*p - '0');
      if (port > 65535) return -EINVAL;
      p++;
    }
    if (port == 0) return -EINVAL;
  }
  /* Only the root path: the API lives at fixed paths below it. */
  if (*p == '/') p++;
  if (*p) return -EINVAL;
  bool tls = out->tls;
  memcpy(out->host, host, hlen);
  out->host[hlen] = '\0';
  out->tls = tls;
  out->port = (uint16_t)port;
  snprintf(out->hostport, sizeof out->hostport, v6 ? "[%s]:%u" : "%s:%u", out->host, (unsigned)out->port);
  return 0;
}

void tern_client_new_id(char out[TERN_CLIENT_ID_SIZE]) {
  uint8_t r[8];
  char hex[17];
  tern_random(r, sizeof r);
  tern_hex(hex, r, sizeof r);
  snprintf(out, TERN_CLIENT_ID_SIZE, "c-%lld-%s", (long long)tern_now_ms(), hex);
}

const char *tern_client_close_code_name(uint16_t code) {
  switch (code) {
    case 1000: return "normal closure";
    case 1001: return "server shutting down";
    case 1002: return "protocol error";
    case 1003: return "binary frame refused";
    case 1005: return "no close code";
    case 1006: return "connection lost";
    case 1007: return "invalid UTF-8";
    case 1008: return "outbound backlog overflow";
    case 1009: return "message too big";
    case 1011: return "server error";
    case 4000: return "idle timeout";
    case 4001: return "not authenticated";
    case 4002: return "device logged out";
    case 4003: return "replaced by a newer connection";
    default: return "";
  }
}
