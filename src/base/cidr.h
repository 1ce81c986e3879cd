/* cidr: lists of IPv4 and IPv6 networks ("127.0.0.0/8,::1/128,10.1.2.3"), for the settings
 * that name peers (http.trusted_proxies, metrics.allow), and IP addresses as text. An
 * IPv4-mapped IPv6 address (::ffff:1.2.3.4) matches the IPv4 networks. A list is immutable
 * once parsed and may be read from any thread. */
#ifndef TERN_BASE_CIDR_H
#define TERN_BASE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_ip {
  uint8_t b[16]; /* IPv4 in the last 4 bytes, as ::ffff:a.b.c.d */
  bool v4;
} tern_ip;

typedef struct tern_cidr {
  tern_ip net;
  unsigned bits; /* prefix length over the 128-bit form */
} tern_cidr;

typedef struct tern_cidr_list {
  tern_cidr *v;
  size_t n;
} tern_cidr_list;

/* Parses one address (no port, no brackets, no zone). */
bool tern_ip_parse(const char *s, size_t n, tern_ip *out);
/* Parses a comma-separated list (spaces allowed around items; empty: no networks). Returns 0,
 * or -EINVAL with the offending item in err. */
int tern_cidr_parse(const char *s, tern_cidr_list *out, char *err, size_t errlen);
bool tern_cidr_match(const tern_cidr_list *l, const tern_ip *ip);
void tern_cidr_free(tern_cidr_list *l);
/* The address of "ip:port", "[ip6]:port" or a bare address. */
bool tern_ip_of_peer(const char *peer, tern_ip *out);

#endif
