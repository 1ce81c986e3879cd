/* libFuzzer target for the address parsers of base/cidr.h (http.trusted_proxies, metrics.allow
 * and X-Forwarded-For entries are parsed with them). Any input must parse or be refused; a
 * parsed list must match its own networks, and a parsed address must match a list made of it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/cidr.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = tern_strndup((const char *)data, size); /* settings are C strings */
  tern_cidr_list l;
  char err[160];
  if (tern_cidr_parse(s, &l, err, sizeof err) == 0) {
    for (size_t i = 0; i < l.n; i++) REQUIRE(tern_cidr_match(&l, &l.v[i].net));
    tern_cidr_free(&l);
  } else {
    REQUIRE(l.n == 0 && l.v == NULL && err[0]);
  }
  tern_ip ip;
  if (tern_ip_parse((const char *)data, size, &ip)) {
    char one[80];
    char text[64];
    memcpy(text, data, size); /* tern_ip_parse refused anything of 64 bytes or more */
    text[size] = '\0';
    snprintf(one, sizeof one, "%s", text);
    tern_cidr_list self;
    if (!strchr(one, ',') && !strchr(one, ' ') && tern_cidr_parse(one, &self, err, sizeof err) == 0) {
      REQUIRE(self.n == 1 && tern_cidr_match(&self, &ip));
      tern_cidr_free(&self);
    }
  }
  tern_ip_of_peer(s, &ip);
  tern_free(s);
  return 0;
}
